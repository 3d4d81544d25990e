//! Captions of a scene in several languages, from the same attributes.
//!
//! Every caption names every object's colour and shape, so a held-out
//! caption identifies its image; the four templates add size and/or
//! position and vary word order. The object order is shuffled per caption.

use rand::RngExt;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::{Colour, Object, Region, Shape, Size};

/// A caption language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// English.
    En,
    /// Chinese (simplified).
    Zh,
    /// German.
    De,
    /// French.
    Fr,
}

impl Language {
    /// Every language, English first.
    pub const ALL: [Language; 4] = [Language::En, Language::Zh, Language::De, Language::Fr];

    /// ISO 639-1 code.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Zh => "zh",
            Language::De => "de",
            Language::Fr => "fr",
        }
    }

    /// Parses an ISO 639-1 code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.code() == code)
    }
}

/// Grammatical gender of a noun (German and French agreement).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gender {
    Masculine,
    Feminine,
    Neuter,
}

fn shape_word(language: Language, shape: Shape) -> (&'static str, Gender) {
    use Gender::*;
    use Shape::*;
    match (language, shape) {
        (Language::En, Circle) => ("circle", Neuter),
        (Language::En, Square) => ("square", Neuter),
        (Language::En, Triangle) => ("triangle", Neuter),
        (Language::En, Diamond) => ("diamond", Neuter),
        (Language::En, Star) => ("star", Neuter),
        (Language::En, Hexagon) => ("hexagon", Neuter),
        (Language::En, Cross) => ("cross", Neuter),
        (Language::Zh, Circle) => ("圆形", Neuter),
        (Language::Zh, Square) => ("正方形", Neuter),
        (Language::Zh, Triangle) => ("三角形", Neuter),
        (Language::Zh, Diamond) => ("菱形", Neuter),
        (Language::Zh, Star) => ("星形", Neuter),
        (Language::Zh, Hexagon) => ("六边形", Neuter),
        (Language::Zh, Cross) => ("十字形", Neuter),
        (Language::De, Circle) => ("Kreis", Masculine),
        (Language::De, Square) => ("Quadrat", Neuter),
        (Language::De, Triangle) => ("Dreieck", Neuter),
        (Language::De, Diamond) => ("Raute", Feminine),
        (Language::De, Star) => ("Stern", Masculine),
        (Language::De, Hexagon) => ("Sechseck", Neuter),
        (Language::De, Cross) => ("Kreuz", Neuter),
        (Language::Fr, Circle) => ("cercle", Masculine),
        (Language::Fr, Square) => ("carré", Masculine),
        (Language::Fr, Triangle) => ("triangle", Masculine),
        (Language::Fr, Diamond) => ("losange", Masculine),
        (Language::Fr, Star) => ("étoile", Feminine),
        (Language::Fr, Hexagon) => ("hexagone", Masculine),
        (Language::Fr, Cross) => ("croix", Feminine),
    }
}

/// The colour word (German: the stem that takes an ending).
fn colour_word(language: Language, colour: Colour, gender: Gender) -> String {
    use Colour::*;
    let feminine = gender == Gender::Feminine;
    match language {
        Language::En => match colour {
            Red => "red",
            Green => "green",
            Blue => "blue",
            Yellow => "yellow",
            Purple => "purple",
            Orange => "orange",
            Cyan => "cyan",
            White => "white",
        }
        .to_owned(),
        Language::Zh => match colour {
            Red => "红色",
            Green => "绿色",
            Blue => "蓝色",
            Yellow => "黄色",
            Purple => "紫色",
            Orange => "橙色",
            Cyan => "青色",
            White => "白色",
        }
        .to_owned(),
        Language::De => {
            let stem = match colour {
                Red => "rot",
                Green => "grün",
                Blue => "blau",
                Yellow => "gelb",
                Purple => "violett",
                Orange => "orangefarben",
                Cyan => "türkis",
                White => "weiß",
            };
            format!("{stem}{}", german_ending(gender))
        }
        Language::Fr => match (colour, feminine) {
            (Red, _) => "rouge",
            (Green, false) => "vert",
            (Green, true) => "verte",
            (Blue, false) => "bleu",
            (Blue, true) => "bleue",
            (Yellow, _) => "jaune",
            (Purple, false) => "violet",
            (Purple, true) => "violette",
            (Orange, _) => "orange",
            (Cyan, _) => "cyan",
            (White, false) => "blanc",
            (White, true) => "blanche",
        }
        .to_owned(),
    }
}

/// Mixed declension, nominative, after `ein`/`eine`.
fn german_ending(gender: Gender) -> &'static str {
    match gender {
        Gender::Masculine => "er",
        Gender::Feminine => "e",
        Gender::Neuter => "es",
    }
}

fn size_word(language: Language, size: Size, gender: Gender) -> String {
    let feminine = gender == Gender::Feminine;
    match (language, size) {
        (Language::En, Size::Small) => "small".into(),
        (Language::En, Size::Large) => "large".into(),
        (Language::Zh, Size::Small) => "小的".into(),
        (Language::Zh, Size::Large) => "大的".into(),
        (Language::De, Size::Small) => format!("klein{}", german_ending(gender)),
        (Language::De, Size::Large) => format!("groß{}", german_ending(gender)),
        (Language::Fr, Size::Small) => if feminine { "petite" } else { "petit" }.into(),
        (Language::Fr, Size::Large) => if feminine { "grande" } else { "grand" }.into(),
    }
}

fn article(language: Language, gender: Gender) -> &'static str {
    match (language, gender) {
        (Language::En, _) => "a",
        (Language::Zh, _) => "一个",
        (Language::De, Gender::Feminine) => "eine",
        (Language::De, _) => "ein",
        (Language::Fr, Gender::Feminine) => "une",
        (Language::Fr, _) => "un",
    }
}

fn position(language: Language, region: Region) -> &'static str {
    const EN: [&str; 9] = [
        "at the top left",
        "at the top",
        "at the top right",
        "on the left",
        "in the center",
        "on the right",
        "at the bottom left",
        "at the bottom",
        "at the bottom right",
    ];
    const ZH: [&str; 9] = [
        "左上角",
        "上方",
        "右上角",
        "左边",
        "中间",
        "右边",
        "左下角",
        "下方",
        "右下角",
    ];
    const DE: [&str; 9] = [
        "oben links",
        "oben",
        "oben rechts",
        "links",
        "in der Mitte",
        "rechts",
        "unten links",
        "unten",
        "unten rechts",
    ];
    const FR: [&str; 9] = [
        "en haut à gauche",
        "en haut",
        "en haut à droite",
        "à gauche",
        "au centre",
        "à droite",
        "en bas à gauche",
        "en bas",
        "en bas à droite",
    ];
    let i = region.row as usize * 3 + region.column as usize;
    match language {
        Language::En => EN[i],
        Language::Zh => ZH[i],
        Language::De => DE[i],
        Language::Fr => FR[i],
    }
}

/// The English position phrase of a region ("at the top left").
pub fn position_en(region: Region) -> &'static str {
    position(Language::En, region)
}

/// "a large red circle" with or without the size.
fn noun_phrase(language: Language, object: &Object, with_size: bool) -> String {
    let (noun, gender) = shape_word(language, object.shape);
    let colour = colour_word(language, object.colour, gender);
    let size = size_word(language, object.size, gender);
    let article = article(language, gender);
    match (language, with_size) {
        (Language::En, true) => format!("{} {size} {colour} {noun}", english_article(&size)),
        (Language::En, false) => format!("{} {colour} {noun}", english_article(&colour)),
        (Language::De, true) => format!("{article} {size} {colour} {noun}"),
        (Language::De, false) => format!("{article} {colour} {noun}"),
        (Language::Zh, true) => format!("{article}{size}{colour}{noun}"),
        (Language::Zh, false) => format!("{article}{colour}{noun}"),
        (Language::Fr, true) => format!("{article} {size} {noun} {colour}"),
        (Language::Fr, false) => format!("{article} {noun} {colour}"),
    }
}

/// Zero-shot prompts of the class (colour, shape) in `language`: the noun
/// phrase without a size and with each size ("a red circle", "a small red
/// circle", "a large red circle"), the wordings the captions use.
pub fn class_prompts(language: Language, colour: Colour, shape: Shape) -> Vec<String> {
    let object = |size| Object {
        shape,
        colour,
        size,
        region: Region { column: 1, row: 1 },
        bbox: [0.0; 4],
    };
    vec![
        noun_phrase(language, &object(Size::Small), false),
        noun_phrase(language, &object(Size::Small), true),
        noun_phrase(language, &object(Size::Large), true),
    ]
}

/// "a" or "an" before `word`.
fn english_article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Joins phrases as the language lists things ("a, b and c").
fn join(language: Language, phrases: &[String]) -> String {
    let (comma, and) = match language {
        Language::En => (", ", " and "),
        Language::Zh => ("、", "和"),
        Language::De => (", ", " und "),
        Language::Fr => (", ", " et "),
    };
    match phrases {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{}{and}{last}", init.join(comma)),
    }
}

fn count_phrase(language: Language, n: usize) -> String {
    let i = n.clamp(1, 4) - 1;
    match language {
        Language::En => [
            "there is one shape",
            "there are two shapes",
            "there are three shapes",
            "there are four shapes",
        ][i]
            .into(),
        Language::Zh => [
            "图中有一个图形",
            "图中有两个图形",
            "图中有三个图形",
            "图中有四个图形",
        ][i]
            .into(),
        Language::De => ["eine Form", "zwei Formen", "drei Formen", "vier Formen"][i].into(),
        Language::Fr => ["une forme", "deux formes", "trois formes", "quatre formes"][i].into(),
    }
}

/// Caption `template` (0..4) of the objects, in `language`; the object
/// order is drawn from `rng`.
pub fn caption(
    objects: &[Object],
    language: Language,
    template: usize,
    rng: &mut impl RngExt,
) -> String {
    let mut order: Vec<&Object> = objects.iter().collect();
    order.shuffle(rng);
    let l = language;
    match template % 4 {
        // Size, colour, shape.
        0 => join(
            l,
            &order
                .iter()
                .map(|o| noun_phrase(l, o, true))
                .collect::<Vec<_>>(),
        ),
        // Colour, shape, position.
        1 => {
            let parts: Vec<String> = order
                .iter()
                .map(|o| match l {
                    Language::Zh => {
                        format!("{}有{}", position(l, o.region), noun_phrase(l, o, false))
                    }
                    _ => format!("{} {}", noun_phrase(l, o, false), position(l, o.region)),
                })
                .collect();
            match l {
                Language::Zh => parts.join("，"),
                _ => join(l, &parts),
            }
        }
        // Count, then everything.
        2 => {
            let parts: Vec<String> = order
                .iter()
                .map(|o| match l {
                    Language::Zh => format!("{}{}", position(l, o.region), noun_phrase(l, o, true)),
                    _ => format!("{} {}", noun_phrase(l, o, true), position(l, o.region)),
                })
                .collect();
            let list = match l {
                Language::Zh => parts.join("，"),
                _ => join(l, &parts),
            };
            let separator = match l {
                Language::Zh => "：",
                Language::Fr => " : ",
                _ => ": ",
            };
            format!("{}{separator}{list}", count_phrase(l, objects.len()))
        }
        // Position first.
        _ => {
            let parts: Vec<String> = order
                .iter()
                .map(|o| {
                    let (pos, np) = (position(l, o.region), noun_phrase(l, o, true));
                    match l {
                        Language::En => format!("{pos} there is {np}"),
                        Language::Zh => format!("一个位于{pos}的{}", &np["一个".len()..]),
                        Language::De => format!("{pos} ist {np}"),
                        Language::Fr => format!("{pos}, {np}"),
                    }
                })
                .collect();
            match l {
                Language::Zh => join(l, &parts),
                Language::Fr => parts.join(" ; "),
                _ => parts.join(", "),
            }
        }
    }
}

/// Text found next to web images that says nothing about them.
fn unrelated(language: Language) -> &'static [&'static str] {
    match language {
        Language::En => &[
            "click here to see more photos",
            "free shipping on all orders today",
            "my favourite picture from last summer",
            "image may contain text",
            "best wallpaper for your desktop",
            "stock photo royalty free",
        ],
        Language::Zh => &[
            "点击查看更多图片",
            "今日全场包邮",
            "去年夏天我最喜欢的照片",
            "图片可能包含文字",
            "最好的桌面壁纸",
            "免版税图库照片",
        ],
        Language::De => &[
            "hier klicken für mehr Fotos",
            "heute versandkostenfrei bestellen",
            "mein Lieblingsbild vom letzten Sommer",
            "Bild kann Text enthalten",
            "das beste Hintergrundbild für den Desktop",
            "lizenzfreies Stockfoto",
        ],
        Language::Fr => &[
            "cliquez ici pour voir plus de photos",
            "livraison gratuite aujourd'hui",
            "ma photo préférée de l'été dernier",
            "l'image peut contenir du texte",
            "le meilleur fond d'écran pour votre bureau",
            "photo libre de droits",
        ],
    }
}

/// A noisy caption: half the time one object's colour or shape is wrong,
/// half the time the text is unrelated to the image.
pub fn corrupt_caption(
    objects: &[Object],
    language: Language,
    template: usize,
    rng: &mut impl RngExt,
) -> String {
    if rng.random_bool(0.5) {
        let mut wrong = objects.to_vec();
        let i = rng.random_range(0..wrong.len());
        if rng.random_bool(0.5) {
            let others: Vec<Colour> = Colour::ALL
                .into_iter()
                .filter(|&c| c != wrong[i].colour)
                .collect();
            wrong[i].colour = others[rng.random_range(0..others.len())];
        } else {
            let others: Vec<Shape> = Shape::ALL
                .into_iter()
                .filter(|&s| s != wrong[i].shape)
                .collect();
            wrong[i].shape = others[rng.random_range(0..others.len())];
        }
        caption(&wrong, language, template, rng)
    } else {
        let words = unrelated(language);
        words[rng.random_range(0..words.len())].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn objects() -> Vec<Object> {
        vec![
            Object {
                shape: Shape::Cross,
                colour: Colour::Orange,
                size: Size::Small,
                region: Region { column: 1, row: 2 },
                bbox: [0.0; 4],
            },
            Object {
                shape: Shape::Star,
                colour: Colour::Green,
                size: Size::Large,
                region: Region { column: 0, row: 0 },
                bbox: [0.0; 4],
            },
            Object {
                shape: Shape::Square,
                colour: Colour::Blue,
                size: Size::Small,
                region: Region { column: 2, row: 1 },
                bbox: [0.0; 4],
            },
        ]
    }

    #[test]
    fn templates_agree_in_gender() {
        let mut rng = StdRng::seed_from_u64(0);
        let all: Vec<String> = (0..40)
            .flat_map(|t| Language::ALL.map(|l| caption(&objects(), l, t, &mut rng)))
            .collect();
        let text = all.join(" | ");
        for expected in [
            "a large green star",
            "a small blue square on the right",
            "an orange",
            "there are three shapes: ",
            "ein kleines blaues Quadrat",
            "ein großer grüner Stern",
            "une grande étoile verte",
            "un petit carré bleu",
            "一个大的绿色星形",
            "右边有一个蓝色正方形",
        ] {
            assert!(text.contains(expected), "no `{expected}` in {text}");
        }
    }

    #[test]
    fn noise_changes_the_caption() {
        let mut rng = StdRng::seed_from_u64(1);
        for t in 0..20 {
            let clean = caption(&objects(), Language::En, 0, &mut StdRng::seed_from_u64(t));
            let noisy = corrupt_caption(&objects(), Language::En, 0, &mut rng);
            let same_words = |a: &str, b: &str| {
                let mut a: Vec<&str> = a.split(' ').collect();
                let mut b: Vec<&str> = b.split(' ').collect();
                a.sort_unstable();
                b.sort_unstable();
                a == b
            };
            assert!(!same_words(&clean, &noisy), "{clean} / {noisy}");
        }
    }
}
