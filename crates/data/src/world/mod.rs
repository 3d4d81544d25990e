//! The synthetic shapes world: a benchmark generated from a seed that gives
//! every task a ground truth a tiny model can learn on a CPU in minutes.
//!
//! Each image holds 1–4 objects (7 shapes × 8 colours × 2 sizes, anywhere
//! on a 3 × 3 grid of regions) on a textured background, with every
//! object's attributes and box recorded. From the same attributes come
//! captions in several languages and wordings, VQA questions, two-image
//! statements (NLVR), entailment hypotheses (SNLI-VE) and referring
//! expressions with candidate boxes (grounding), written in the JSON formats
//! of the ALBEF reference code. Optionally, some training scenes are
//! minimal pairs of their predecessors (one shape changed). Everything is a
//! pure function of the seed: the same config writes the same files.

mod captions;
mod differences;
mod labels;
mod render;
mod tasks;

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use captions::{Language, caption, class_prompts, corrupt_caption};
pub use differences::{Difference, difference};
pub use labels::{
    ATTRIBUTE_LABELS, MAX_OBJECTS, PATCH_LABELS, attribute_labels, labelled_scenes, patch_labels,
};

/// The names of a world's annotation files, in one place (the formats are
/// those of the reference, see [`tasks`]).
pub mod files {
    use super::Language;

    /// `pretrain_{lang}.json`: `[{"image", "caption": [..]}]`, training split.
    pub fn pretrain(language: Language) -> String {
        format!("pretrain_{}.json", language.code())
    }

    /// `retrieval_{split}_{lang}.json`: `[{"image", "caption": [..]}]` for
    /// `val` and `test`, `[{"image", "caption", "image_id"}]` for `train`.
    pub fn retrieval(split: &str, language: Language) -> String {
        format!("retrieval_{split}_{}.json", language.code())
    }

    /// `parallel_en_{lang}.tsv`: English and `language` captions of the
    /// training images, a pair per line.
    pub fn parallel(language: Language) -> String {
        format!("parallel_en_{}.tsv", language.code())
    }
}

use crate::DataError;

/// The object shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A disc.
    Circle,
    /// An axis-aligned square.
    Square,
    /// An upward equilateral triangle.
    Triangle,
    /// A square on its corner.
    Diamond,
    /// A five-pointed star.
    Star,
    /// A regular hexagon.
    Hexagon,
    /// A plus sign.
    Cross,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 7] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
        Shape::Star,
        Shape::Hexagon,
        Shape::Cross,
    ];
}

/// The object colours (saturated, so a muted background never matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    /// Red.
    Red,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// Yellow.
    Yellow,
    /// Purple.
    Purple,
    /// Orange.
    Orange,
    /// Cyan.
    Cyan,
    /// White.
    White,
}

impl Colour {
    /// Every colour.
    pub const ALL: [Colour; 8] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
        Colour::Orange,
        Colour::Cyan,
        Colour::White,
    ];

    /// The base RGB value.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 30],
            Colour::Green => [30, 180, 40],
            Colour::Blue => [30, 60, 230],
            Colour::Yellow => [240, 220, 20],
            Colour::Purple => [140, 40, 190],
            Colour::Orange => [250, 140, 20],
            Colour::Cyan => [20, 210, 220],
            Colour::White => [250, 250, 250],
        }
    }
}

/// Object size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Radius 9 % of the image side.
    Small,
    /// Radius 16 % of the image side.
    Large,
}

/// Where an object's centre lies on the 3 × 3 grid of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    /// 0 = left, 1 = middle, 2 = right.
    pub column: u8,
    /// 0 = top, 1 = middle, 2 = bottom.
    pub row: u8,
}

/// One object of a scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// Shape.
    pub shape: Shape,
    /// Colour.
    pub colour: Colour,
    /// Size class.
    pub size: Size,
    /// Grid region of the centre.
    pub region: Region,
    /// Box `[x, y, width, height]` in pixels (COCO convention).
    pub bbox: [f32; 4],
}

impl Object {
    /// Same shape, colour and size (what a caption without position says).
    pub fn same_kind(&self, other: &Object) -> bool {
        self.shape == other.shape && self.colour == other.colour && self.size == other.size
    }
}

/// One generated image and its ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Index of the scene (also its image file name).
    pub id: usize,
    /// Image path relative to the world directory.
    pub image: String,
    /// Split: `train`, `val` or `test`.
    pub split: String,
    /// The objects, in drawing order.
    pub objects: Vec<Object>,
    /// Seed of the background texture.
    pub background_seed: u64,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldConfig {
    /// Seed of everything.
    pub seed: u64,
    /// Image side in pixels.
    pub image_size: u32,
    /// Number of images (all splits).
    pub images: usize,
    /// Images held out for validation.
    pub val_images: usize,
    /// Images held out for testing.
    pub test_images: usize,
    /// Fraction of training captions corrupted (a wrong attribute, or
    /// unrelated words), as web alt-text is noisy. Evaluation captions are
    /// always clean.
    pub caption_noise: f64,
    /// Fraction of training scenes drawn as a *minimal pair* of the scene
    /// before them: the same objects, places and background with one
    /// object's shape changed, so that some negatives differ only in shape
    /// (tried with `similar_fraction` on an early preset: retrieval fell). Validation and test scenes are never paired.
    #[serde(default)]
    pub minimal_pairs: f64,
    /// Caption languages (English first).
    pub languages: Vec<Language>,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            image_size: 32,
            images: 6000,
            val_images: 250,
            test_images: 250,
            caption_noise: 0.0,
            minimal_pairs: 0.0,
            languages: Language::ALL.to_vec(),
        }
    }
}

impl WorldConfig {
    /// Checks that the config can make a world: training images left after
    /// the held-out ones, fractions in [0, 1], room for the shapes.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |message: String| Err(DataError::BadWorld(message));
        if self.val_images + self.test_images >= self.images {
            return bad(format!(
                "{} images leave none for training after {} validation and {} test images",
                self.images, self.val_images, self.test_images
            ));
        }
        for (name, value) in [
            ("caption noise", self.caption_noise),
            ("minimal-pairs fraction", self.minimal_pairs),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return bad(format!("the {name} {value} is not a fraction in [0, 1]"));
            }
        }
        if self.image_size < 16 {
            return bad(format!(
                "images of {} pixels are too small for its shapes (16 at least)",
                self.image_size
            ));
        }
        if self.languages.first() != Some(&Language::En) {
            return bad("the caption languages must start with English".into());
        }
        Ok(())
    }
}

/// Number of captions written per image and language.
pub const CAPTIONS_PER_IMAGE: usize = 4;

/// Draws the scenes of a world (no pixels).
pub fn generate_scenes(config: &WorldConfig) -> Vec<Scene> {
    assert!(
        config.val_images + config.test_images < config.images,
        "{} images cannot hold {} validation and {} test images",
        config.images,
        config.val_images,
        config.test_images
    );
    let train = config.images - config.val_images - config.test_images;
    (0..config.images)
        .map(|id| {
            let split = if id < train {
                "train"
            } else if id < train + config.val_images {
                "val"
            } else {
                "test"
            };
            let paired = id < train
                && id % 2 == 1
                && config.minimal_pairs > 0.0
                && scene_rng(config.seed, id as u64, 1).random_bool(config.minimal_pairs.min(1.0));
            let (objects, background_seed) = if paired {
                let (mut objects, background_seed) = draw_scene(config, id - 1);
                let mut rng = scene_rng(config.seed, id as u64, 2);
                let changed = rng.random_range(0..objects.len());
                let object = &mut objects[changed];
                let others: Vec<Shape> = Shape::ALL
                    .into_iter()
                    .filter(|&s| s != object.shape)
                    .collect();
                object.shape = others[rng.random_range(0..others.len())];
                (objects, background_seed)
            } else {
                draw_scene(config, id)
            };
            Scene {
                id,
                image: format!("images/{id:06}.png"),
                split: split.to_owned(),
                objects,
                background_seed,
            }
        })
        .collect()
}

/// The objects and background seed of scene `id`, drawn from its own RNG.
fn draw_scene(config: &WorldConfig, id: usize) -> (Vec<Object>, u64) {
    let mut rng = scene_rng(config.seed, id as u64, 0);
    let objects = place_objects(&mut rng, config.image_size as f32);
    (objects, rng.random())
}

/// An RNG for one scene and purpose, independent of generation order.
fn scene_rng(seed: u64, scene: u64, purpose: u64) -> StdRng {
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(scene.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(purpose.wrapping_mul(0x94D0_49BB_1331_11EB));
    StdRng::seed_from_u64(mix)
}

/// The classes of zero-shot classification: every (colour, shape).
pub fn zero_shot_classes() -> Vec<(Colour, Shape)> {
    Colour::ALL
        .into_iter()
        .flat_map(|c| Shape::ALL.into_iter().map(move |s| (c, s)))
        .collect()
}

/// Held-out single-object scenes for zero-shot classification,
/// `per_class` of each class of [`zero_shot_classes`] (its index is the
/// label), at a random size and place. Their ids follow the world's, and
/// their draws are seeded apart from it: none is a training image.
pub fn zero_shot_scenes(config: &WorldConfig, per_class: usize) -> Vec<(Scene, usize)> {
    let side = config.image_size as f32;
    zero_shot_classes()
        .into_iter()
        .enumerate()
        .flat_map(|(label, class)| (0..per_class).map(move |k| (label, class, k)))
        .enumerate()
        .map(|(i, (label, (colour, shape), _))| {
            let id = config.images + i;
            let mut rng = scene_rng(config.seed, id as u64, 7);
            let size = if rng.random_bool(0.5) {
                Size::Small
            } else {
                Size::Large
            };
            let r = radius(size, side);
            let cx = rng.random_range(r + 1.0..side - r - 1.0);
            let cy = rng.random_range(r + 1.0..side - r - 1.0);
            let scene = Scene {
                id,
                image: format!("zero_shot/{id:06}.png"),
                split: "zero_shot".into(),
                objects: vec![object_at(shape, colour, size, cx, cy, side)],
                background_seed: rng.random(),
            };
            (scene, label)
        })
        .collect()
}

/// Renders a scene at `side` pixels.
pub fn render_scene(scene: &Scene, side: u32) -> image::RgbImage {
    render::render(scene, side)
}

/// The object of this kind centred at `(cx, cy)`.
fn object_at(shape: Shape, colour: Colour, size: Size, cx: f32, cy: f32, side: f32) -> Object {
    let r = radius(size, side);
    Object {
        shape,
        colour,
        size,
        region: Region {
            column: ((cx / side) * 3.0).floor().min(2.0) as u8,
            row: ((cy / side) * 3.0).floor().min(2.0) as u8,
        },
        bbox: [cx - r, cy - r, 2.0 * r, 2.0 * r],
    }
}

/// Radius of an object of this size in an image of side `side`.
pub fn radius(size: Size, side: f32) -> f32 {
    match size {
        Size::Small => 0.09 * side,
        Size::Large => 0.16 * side,
    }
}

fn place_objects(rng: &mut StdRng, side: f32) -> Vec<Object> {
    let count = rng.random_range(1..=MAX_OBJECTS);
    let mut objects: Vec<Object> = Vec::with_capacity(count);
    while objects.len() < count {
        let size = if rng.random_bool(0.5) {
            Size::Small
        } else {
            Size::Large
        };
        let r = radius(size, side);
        let mut placed = false;
        for _ in 0..50 {
            let cx = rng.random_range(r + 1.0..side - r - 1.0);
            let cy = rng.random_range(r + 1.0..side - r - 1.0);
            let bbox = [cx - r, cy - r, 2.0 * r, 2.0 * r];
            let margin = 0.03 * side;
            let clear = objects.iter().all(|o| {
                let [x, y, w, h] = o.bbox;
                bbox[0] > x + w + margin
                    || x > bbox[0] + bbox[2] + margin
                    || bbox[1] > y + h + margin
                    || y > bbox[1] + bbox[3] + margin
            });
            if !clear {
                continue;
            }
            let shape = Shape::ALL[rng.random_range(0..Shape::ALL.len())];
            let colour = Colour::ALL[rng.random_range(0..Colour::ALL.len())];
            objects.push(object_at(shape, colour, size, cx, cy, side));
            placed = true;
            break;
        }
        if !placed {
            // The image is too crowded for another object of this size.
            break;
        }
    }
    objects
}

/// What [`write_world`] produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorldSummary {
    /// The config that generated it.
    pub config: WorldConfig,
    /// Images per split.
    pub images: [usize; 3],
    /// Files written, relative to the world directory.
    pub files: Vec<String>,
    /// [`ANNOTATIONS_VERSION`] of the generator that wrote the annotation
    /// files (0: before versions were recorded).
    #[serde(default)]
    pub annotations_version: u32,
}

/// Version of the annotation files' generator: a cached world written by
/// another version is generated again (its images do not change).
/// 2: SNLI-VE contradictions take the form of their entailment (a count
/// or an object), so the hypothesis alone no longer tells them apart.
pub const ANNOTATIONS_VERSION: u32 = 2;

/// File name of the world's ground truth and config.
pub const WORLD_FILE: &str = "world.json";

/// Generates the world into `dir`: PNG images, `world.json` (config and
/// ground truth) and every task's annotation files. Rendering runs on every
/// core; the output does not depend on scheduling.
pub fn write_world(config: &WorldConfig, dir: &Path) -> Result<WorldSummary, DataError> {
    config.validate()?;
    let io = |path: PathBuf| {
        move |source: std::io::Error| DataError::Io {
            path: path.clone(),
            source,
        }
    };
    std::fs::create_dir_all(dir.join("images")).map_err(io(dir.join("images")))?;
    let scenes = generate_scenes(config);
    scenes.par_iter().try_for_each(|scene| {
        let image = render::render(scene, config.image_size);
        let path = dir.join(&scene.image);
        image.save(&path).map_err(|source| DataError::Image {
            path: path.clone(),
            source,
        })
    })?;

    let mut files = Vec::new();
    let mut write = |name: &str, contents: tasks::Contents| -> Result<(), DataError> {
        let path = dir.join(name);
        let text = match contents {
            tasks::Contents::Json(value) => {
                serde_json::to_string_pretty(&value).expect("JSON values serialise")
            }
            tasks::Contents::Text(text) => text,
        };
        std::fs::write(&path, text).map_err(io(path))?;
        files.push(name.to_owned());
        Ok(())
    };
    for (name, contents) in tasks::annotations(config, &scenes) {
        write(&name, contents)?;
    }
    let count = |split: &str| scenes.iter().filter(|s| s.split == split).count();
    let images = [count("train"), count("val"), count("test")];
    let mut summary = WorldSummary {
        config: config.clone(),
        images,
        files: Vec::new(),
        annotations_version: ANNOTATIONS_VERSION,
    };
    write(
        WORLD_FILE,
        serde_json::json!({ "summary": summary, "scenes": scenes }).into(),
    )?;
    summary.files = files;
    Ok(summary)
}

/// Reads the summary of a world written by [`write_world`], if `dir` holds
/// one generated with `config`.
pub fn existing_world(dir: &Path, config: &WorldConfig) -> Option<WorldSummary> {
    let text = std::fs::read_to_string(dir.join(WORLD_FILE)).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let summary: WorldSummary = serde_json::from_value(value.get("summary")?.clone()).ok()?;
    (summary.config == *config && summary.annotations_version == ANNOTATIONS_VERSION)
        .then_some(summary)
}

/// A world read back from its `world.json`: the config that generated it
/// and its scenes.
#[derive(Debug, Clone)]
pub struct WorldRecord {
    /// The generating config.
    pub config: WorldConfig,
    /// Every scene, all splits.
    pub scenes: Vec<Scene>,
}

/// Reads the config and scenes (the ground truth) of a world written by
/// [`write_world`].
pub fn read_world(dir: &Path) -> Result<WorldRecord, DataError> {
    #[derive(Deserialize)]
    struct Summary {
        config: WorldConfig,
    }
    #[derive(Deserialize)]
    struct WorldFile {
        summary: Summary,
        scenes: Vec<Scene>,
    }
    let path = dir.join(WORLD_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io {
        path: path.clone(),
        source,
    })?;
    let file: WorldFile =
        serde_json::from_str(&text).map_err(|source| DataError::Json { path, source })?;
    Ok(WorldRecord {
        config: file.summary.config,
        scenes: file.scenes,
    })
}

/// Reads the scenes (the ground truth) of a world written by [`write_world`].
pub fn read_scenes(dir: &Path) -> Result<Vec<Scene>, DataError> {
    Ok(read_world(dir)?.scenes)
}

#[cfg(test)]
mod tests;
