//! Annotation files of every task, in the reference JSON formats.
//!
//! | file | format (salesforce/ALBEF `dataset/`) |
//! |---|---|
//! | `pretrain_{lang}.json` | `[{"image", "caption": [..]}]` (train split; noisy if asked) |
//! | `retrieval_train_{lang}.json` | `[{"image", "caption", "image_id"}]` |
//! | `retrieval_{val,test}_{lang}.json` | `[{"image", "caption": [..]}]` |
//! | `parallel_en_{lang}.tsv` | `english<TAB>target`, one caption pair per line (train split) |
//! | `vqa_{split}.json`, `answer_list.json` | `[{"image", "question", "answer": [..], "question_id", "dataset"}]` |
//! | `nlvr_{split}.json` | `[{"images": [a, b], "sentence", "label": "True"/"False"}]` |
//! | `ve_{split}.json` | `[{"image", "sentence", "label": "entailment"/"neutral"/"contradiction"}]` |
//! | `grounding_{split}.json`, `grounding_dets.json` | `[{"image", "text", "ref_id", "bbox"}]`, `{ref_id: [candidate boxes]}` |

use rand::RngExt;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use super::captions::{Language, caption, corrupt_caption};
use super::{CAPTIONS_PER_IMAGE, Colour, Object, Scene, Shape, WorldConfig, scene_rng};

const SPLITS: [&str; 3] = ["train", "val", "test"];

/// Contents of an annotation file.
pub enum Contents {
    /// Written as pretty JSON.
    Json(Value),
    /// Written verbatim.
    Text(String),
}

impl From<Value> for Contents {
    fn from(value: Value) -> Self {
        Contents::Json(value)
    }
}

/// Every annotation file as `(name, contents)`.
pub fn annotations(config: &WorldConfig, scenes: &[Scene]) -> Vec<(String, Contents)> {
    let mut files = Vec::new();
    for &language in &config.languages {
        files.extend(caption_files(config, scenes, language));
    }
    for split in SPLITS {
        let in_split: Vec<&Scene> = scenes.iter().filter(|s| s.split == split).collect();
        files.push((format!("vqa_{split}.json"), vqa(config, &in_split).into()));
        files.push((
            format!("nlvr_{split}.json"),
            nlvr(config, &in_split, split).into(),
        ));
        files.push((format!("ve_{split}.json"), ve(config, &in_split).into()));
        files.push((
            format!("grounding_{split}.json"),
            grounding(config, &in_split).0.into(),
        ));
    }
    files.push((
        "grounding_dets.json".into(),
        grounding_dets(config, scenes).into(),
    ));
    files.push(("answer_list.json".into(), json!(answer_list()).into()));
    files
}

/// The clean captions of a scene in a language; the same object order in
/// every language (parallel text).
pub fn clean_captions(config: &WorldConfig, scene: &Scene, language: Language) -> Vec<String> {
    (0..CAPTIONS_PER_IMAGE)
        .map(|t| {
            caption(
                &scene.objects,
                language,
                t,
                &mut scene_rng(config.seed, scene.id as u64, 100 + t as u64),
            )
        })
        .collect()
}

fn caption_files(
    config: &WorldConfig,
    scenes: &[Scene],
    language: Language,
) -> Vec<(String, Contents)> {
    let mut pretrain = Vec::new();
    let mut retrieval_train = Vec::new();
    let mut retrieval_eval = [Vec::new(), Vec::new()];
    let mut parallel = String::new();
    for scene in scenes {
        let clean = clean_captions(config, scene, language);
        if scene.split == "train" {
            let mut noise = scene_rng(config.seed, scene.id as u64, 200 + language as u64);
            let captions: Vec<String> = clean
                .iter()
                .enumerate()
                .map(|(t, c)| match noise.random_bool(config.caption_noise) {
                    true => corrupt_caption(&scene.objects, language, t, &mut noise),
                    false => c.clone(),
                })
                .collect();
            for c in &captions {
                retrieval_train
                    .push(json!({ "image": scene.image, "caption": c, "image_id": scene.id }));
            }
            pretrain.push(json!({ "image": scene.image, "caption": captions }));
            if language != Language::En {
                for (en, target) in clean_captions(config, scene, Language::En)
                    .iter()
                    .zip(&clean)
                {
                    parallel.push_str(&format!("{en}\t{target}\n"));
                }
            }
        } else {
            let slot = usize::from(scene.split == "test");
            retrieval_eval[slot].push(json!({ "image": scene.image, "caption": clean }));
        }
    }
    let [val, test] = retrieval_eval;
    let mut files = vec![
        (super::files::pretrain(language), json!(pretrain).into()),
        (
            super::files::retrieval("train", language),
            json!(retrieval_train).into(),
        ),
        (super::files::retrieval("val", language), json!(val).into()),
        (
            super::files::retrieval("test", language),
            json!(test).into(),
        ),
    ];
    if language != Language::En {
        files.push((super::files::parallel(language), Contents::Text(parallel)));
    }
    files
}

fn shape_name(shape: Shape) -> &'static str {
    serde_name(&shape)
}

fn colour_name(colour: Colour) -> &'static str {
    serde_name(&colour)
}

fn serde_name<T: serde::Serialize>(value: &T) -> &'static str {
    let name = serde_json::to_value(value).expect("enum");
    let name = name.as_str().expect("unit variant").to_owned();
    Box::leak(name.into_boxed_str())
}

const COUNT: [&str; 5] = ["zero", "one", "two", "three", "four"];

fn answer_list() -> Vec<&'static str> {
    let mut answers: Vec<&str> = COUNT[1..].to_vec();
    answers.extend(Colour::ALL.map(colour_name));
    answers.extend(Shape::ALL.map(shape_name));
    answers.extend(["small", "large", "yes", "no"]);
    answers
}

fn vqa(config: &WorldConfig, scenes: &[&Scene]) -> Value {
    let mut items = Vec::new();
    for scene in scenes {
        let mut rng = scene_rng(config.seed, scene.id as u64, 300);
        let objects = &scene.objects;
        let mut questions: Vec<(String, String)> = vec![(
            "how many shapes are there?".into(),
            COUNT[objects.len()].into(),
        )];
        for o in objects {
            if objects.iter().filter(|p| p.shape == o.shape).count() == 1 {
                questions.push((
                    format!("what color is the {}?", shape_name(o.shape)),
                    colour_name(o.colour).into(),
                ));
            }
            if objects.iter().filter(|p| p.colour == o.colour).count() == 1 {
                questions.push((
                    format!("what shape is the {} object?", colour_name(o.colour)),
                    shape_name(o.shape).into(),
                ));
            }
            if objects
                .iter()
                .filter(|p| p.colour == o.colour && p.shape == o.shape)
                .count()
                == 1
            {
                let size = serde_name(&o.size);
                questions.push((
                    format!(
                        "what size is the {} {}?",
                        colour_name(o.colour),
                        shape_name(o.shape)
                    ),
                    size.into(),
                ));
            }
        }
        // A yes/no question, present or absent with equal odds.
        let (colour, shape) = if rng.random_bool(0.5) {
            let o = &objects[rng.random_range(0..objects.len())];
            (o.colour, o.shape)
        } else {
            (
                Colour::ALL[rng.random_range(0..8)],
                Shape::ALL[rng.random_range(0..7)],
            )
        };
        let present = objects
            .iter()
            .any(|o| o.colour == colour && o.shape == shape);
        questions.push((
            format!("is there a {} {}?", colour_name(colour), shape_name(shape)),
            if present { "yes" } else { "no" }.into(),
        ));
        // Keep the count, the yes/no and one more question per image.
        let last = questions.len() - 1;
        let mut keep = vec![0, last];
        if last > 1 {
            keep.push(rng.random_range(1..last));
        }
        for (n, i) in keep.into_iter().enumerate() {
            let (question, answer) = &questions[i];
            items.push(json!({
                "image": scene.image,
                "question": question,
                "answer": [answer],
                "question_id": scene.id * 10 + n,
                "dataset": "vqa",
            }));
        }
    }
    json!(items)
}

/// A statement about a pair of images and whether it holds.
fn pair_statement(a: &Scene, b: &Scene, rng: &mut StdRng) -> (String, bool) {
    let has =
        |s: &Scene, c: Colour, sh: Shape| s.objects.iter().any(|o| o.colour == c && o.shape == sh);
    let pick = |rng: &mut StdRng, s: &Scene| -> (Colour, Shape) {
        if rng.random_bool(0.5) {
            let o = &s.objects[rng.random_range(0..s.objects.len())];
            (o.colour, o.shape)
        } else {
            (
                Colour::ALL[rng.random_range(0..8)],
                Shape::ALL[rng.random_range(0..7)],
            )
        }
    };
    match rng.random_range(0..4) {
        0 => {
            let (c, s) = pick(rng, a);
            (
                format!(
                    "the left image contains a {} {}",
                    colour_name(c),
                    shape_name(s)
                ),
                has(a, c, s),
            )
        }
        1 => {
            let (c, s) = pick(rng, b);
            (
                format!(
                    "the right image contains a {} {}",
                    colour_name(c),
                    shape_name(s)
                ),
                has(b, c, s),
            )
        }
        2 => {
            let either = if rng.random_bool(0.5) { a } else { b };
            let (c, s) = pick(rng, either);
            (
                format!("both images contain a {} {}", colour_name(c), shape_name(s)),
                has(a, c, s) && has(b, c, s),
            )
        }
        _ => (
            "the right image has more shapes than the left image".into(),
            b.objects.len() > a.objects.len(),
        ),
    }
}

fn nlvr(config: &WorldConfig, scenes: &[&Scene], split: &str) -> Value {
    let mut rng = scene_rng(
        config.seed,
        0,
        400 + SPLITS.iter().position(|s| *s == split).unwrap_or(0) as u64,
    );
    let mut items = Vec::new();
    if scenes.len() < 2 {
        return json!(items);
    }
    for i in 0..scenes.len() {
        let (a, b) = (scenes[i], scenes[rng.random_range(0..scenes.len())]);
        if a.id == b.id {
            continue;
        }
        // Balance the labels: draw statements until one has the wanted truth.
        let wanted = i % 2 == 0;
        for _ in 0..20 {
            let (sentence, truth) = pair_statement(a, b, &mut rng);
            if truth == wanted {
                items.push(json!({
                    "images": [a.image, b.image],
                    "sentence": sentence,
                    "label": if truth { "True" } else { "False" },
                }));
                break;
            }
        }
    }
    json!(items)
}

fn ve(config: &WorldConfig, scenes: &[&Scene]) -> Value {
    const UNKNOWABLE: [&str; 4] = [
        "is made of paper",
        "was drawn by a child",
        "is the oldest shape here",
        "is wet",
    ];
    let mut items = Vec::new();
    for scene in scenes {
        let mut rng = scene_rng(config.seed, scene.id as u64, 500);
        let o = &scene.objects[rng.random_range(0..scene.objects.len())];
        let describe = |o: &Object| format!("{} {}", colour_name(o.colour), shape_name(o.shape));
        let n = scene.objects.len();
        let count = |k: usize| {
            format!(
                "there {} {} shape{}",
                if k == 1 { "is" } else { "are" },
                COUNT[k],
                if k == 1 { "" } else { "s" }
            )
        };
        // The contradiction takes the entailment's form (a count, or an
        // object), so that the hypothesis alone cannot tell them apart.
        let (entailment, contradiction) = if rng.random_bool(0.5) {
            let wrong = loop {
                let k = rng.random_range(1..=super::MAX_OBJECTS);
                if k != n {
                    break k;
                }
            };
            (count(n), count(wrong))
        } else {
            let absent = loop {
                let candidate = Object {
                    colour: Colour::ALL[rng.random_range(0..8)],
                    shape: Shape::ALL[rng.random_range(0..7)],
                    ..o.clone()
                };
                if !scene
                    .objects
                    .iter()
                    .any(|p| p.colour == candidate.colour && p.shape == candidate.shape)
                {
                    break candidate;
                }
            };
            (
                format!("there is a {}", describe(o)),
                format!("there is a {}", describe(&absent)),
            )
        };
        let neutral = format!(
            "the {} {}",
            describe(o),
            UNKNOWABLE[rng.random_range(0..UNKNOWABLE.len())]
        );
        for (sentence, label) in [
            (entailment, "entailment"),
            (contradiction, "contradiction"),
            (neutral, "neutral"),
        ] {
            items.push(json!({ "image": scene.image, "sentence": sentence, "label": label }));
        }
    }
    json!(items)
}

/// The shortest description that picks out `objects[i]` alone.
fn referring_expression(objects: &[Object], i: usize) -> String {
    let o = &objects[i];
    let position = super::captions::position_en(o.region);
    let candidates = [
        (
            format!("the {}", shape_name(o.shape)),
            objects.iter().filter(|p| p.shape == o.shape).count(),
        ),
        (
            format!("the {} {}", colour_name(o.colour), shape_name(o.shape)),
            objects
                .iter()
                .filter(|p| p.shape == o.shape && p.colour == o.colour)
                .count(),
        ),
        (
            format!(
                "the {} {} {}",
                serde_name(&o.size),
                colour_name(o.colour),
                shape_name(o.shape)
            ),
            objects.iter().filter(|p| p.same_kind(o)).count(),
        ),
    ];
    candidates
        .into_iter()
        .find(|(_, matches)| *matches == 1)
        .map(|(text, _)| text)
        .unwrap_or_else(|| {
            format!(
                "the {} {} {position}",
                colour_name(o.colour),
                shape_name(o.shape)
            )
        })
}

/// Per-scene ground-truth boxes, `(scene id, [x0, y0, x1, y1] per object)`.
type SceneBoxes = Vec<(usize, Vec<[f32; 4]>)>;

fn grounding(config: &WorldConfig, scenes: &[&Scene]) -> (Value, SceneBoxes) {
    let mut items = Vec::new();
    let mut dets = Vec::new();
    for scene in scenes {
        if scene.objects.len() < 2 {
            continue; // nothing to choose between
        }
        let mut rng = scene_rng(config.seed, scene.id as u64, 600);
        let i = rng.random_range(0..scene.objects.len());
        let ref_id = scene.id;
        items.push(json!({
            "image": scene.image,
            "text": referring_expression(&scene.objects, i),
            "ref_id": ref_id,
            "bbox": scene.objects[i].bbox,
        }));
        dets.push((ref_id, scene.objects.iter().map(|o| o.bbox).collect()));
    }
    (json!(items), dets)
}

fn grounding_dets(config: &WorldConfig, scenes: &[Scene]) -> Value {
    let mut all = serde_json::Map::new();
    for split in SPLITS {
        let in_split: Vec<&Scene> = scenes.iter().filter(|s| s.split == split).collect();
        for (ref_id, boxes) in grounding(config, &in_split).1 {
            all.insert(ref_id.to_string(), json!(boxes));
        }
    }
    Value::Object(all)
}
