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
mod render;
mod tasks;

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use captions::{Language, caption, class_prompts, corrupt_caption};
pub use differences::{Difference, difference};

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
}

/// File name of the world's ground truth and config.
pub const WORLD_FILE: &str = "world.json";

/// Generates the world into `dir`: PNG images, `world.json` (config and
/// ground truth) and every task's annotation files. Rendering runs on every
/// core; the output does not depend on scheduling.
pub fn write_world(config: &WorldConfig, dir: &Path) -> Result<WorldSummary, DataError> {
    let io = |path: PathBuf| {
        move |e: std::io::Error| DataError::Io {
            path: path.clone(),
            message: e.to_string(),
        }
    };
    std::fs::create_dir_all(dir.join("images")).map_err(io(dir.join("images")))?;
    let scenes = generate_scenes(config);
    scenes.par_iter().try_for_each(|scene| {
        let image = render::render(scene, config.image_size);
        let path = dir.join(&scene.image);
        image.save(&path).map_err(|e| DataError::Io {
            path: path.clone(),
            message: e.to_string(),
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
    (summary.config == *config).then_some(summary)
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
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::Io {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let file: WorldFile = serde_json::from_str(&text).map_err(|e| DataError::Io {
        path,
        message: format!("not a synthetic world's ground truth: {e}"),
    })?;
    Ok(WorldRecord {
        config: file.summary.config,
        scenes: file.scenes,
    })
}

/// Reads the scenes (the ground truth) of a world written by [`write_world`].
pub fn read_scenes(dir: &Path) -> Result<Vec<Scene>, DataError> {
    Ok(read_world(dir)?.scenes)
}

/// `count` labelled scenes drawn apart from the world of `config`: the
/// same generator (objects, sizes, placement, background) on its own RNG
/// stream, so none is a scene of the world, whatever its split. A
/// supervised image corpus for warming an image encoder up, as ImageNet
/// is for DeiT (`split` is `labelled`; nothing is written to disk, render
/// them with [`render_scene`]).
pub fn labelled_scenes(config: &WorldConfig, count: usize) -> Vec<Scene> {
    (0..count)
        .map(|i| {
            let id = config.images + i;
            let mut rng = scene_rng(config.seed, id as u64, 8);
            let objects = place_objects(&mut rng, config.image_size as f32);
            Scene {
                id,
                image: String::new(),
                split: "labelled".into(),
                objects,
                background_seed: rng.random(),
            }
        })
        .collect()
}

/// Most objects in a scene.
pub const MAX_OBJECTS: usize = 4;

/// Length of [`attribute_labels`].
pub const ATTRIBUTE_LABELS: usize = Shape::ALL.len() * Colour::ALL.len()
    + Shape::ALL.len() * 2
    + Colour::ALL.len() * 9
    + MAX_OBJECTS;

/// A scene's attributes as multi-hot targets for a supervised image
/// encoder: which (shape, colour), (shape, size) and (colour, grid region)
/// combinations occur, then the object count one-hot. Combinations rather
/// than single attributes, so the labels say which colour goes with which
/// shape, as the captions do.
pub fn attribute_labels(scene: &Scene) -> Vec<f32> {
    let (shapes, colours) = (Shape::ALL.len(), Colour::ALL.len());
    let mut labels = vec![0.0; ATTRIBUTE_LABELS];
    for object in &scene.objects {
        let shape = Shape::ALL.iter().position(|s| *s == object.shape);
        let colour = Colour::ALL.iter().position(|c| *c == object.colour);
        let (shape, colour) = (shape.expect("listed"), colour.expect("listed"));
        let size = usize::from(object.size == Size::Large);
        let region = 3 * object.region.row as usize + object.region.column as usize;
        labels[shape * colours + colour] = 1.0;
        labels[shapes * colours + shape * 2 + size] = 1.0;
        labels[shapes * colours + shapes * 2 + colour * 9 + region] = 1.0;
    }
    let count = scene.objects.len().clamp(1, MAX_OBJECTS);
    labels[ATTRIBUTE_LABELS - MAX_OBJECTS + count - 1] = 1.0;
    labels
}

/// Length of one patch's row of [`patch_labels`].
pub const PATCH_LABELS: usize = Shape::ALL.len() * Colour::ALL.len() + Shape::ALL.len() * 2;

/// Dense targets for the patches of a `side`-pixel image of `scene` cut
/// into `patch`-pixel squares, row-major, [`PATCH_LABELS`] per patch: the
/// (shape, colour) and (shape, size) combinations of the objects whose
/// box covers a fifth of the patch or of itself; a background patch is all
/// zeros. The token labelling of Jiang et al. 2021 ("All Tokens Matter"),
/// with the ground truth in place of their annotator's score maps.
pub fn patch_labels(scene: &Scene, side: u32, patch: u32) -> Vec<f32> {
    let (colours, grid) = (Colour::ALL.len(), (side / patch) as usize);
    let mut labels = vec![0.0; grid * grid * PATCH_LABELS];
    let p = patch as f32;
    for object in &scene.objects {
        let shape = Shape::ALL.iter().position(|s| *s == object.shape);
        let colour = Colour::ALL.iter().position(|c| *c == object.colour);
        let (shape, colour) = (shape.expect("listed"), colour.expect("listed"));
        let size = usize::from(object.size == Size::Large);
        let [x, y, w, h] = object.bbox;
        let enough = 0.2 * (w * h).min(p * p);
        for row in 0..grid {
            for column in 0..grid {
                let (px, py) = (column as f32 * p, row as f32 * p);
                let overlap_x = (x + w).min(px + p) - x.max(px);
                let overlap_y = (y + h).min(py + p) - y.max(py);
                if overlap_x > 0.0 && overlap_y > 0.0 && overlap_x * overlap_y >= enough {
                    let at = (row * grid + column) * PATCH_LABELS;
                    labels[at + shape * colours + colour] = 1.0;
                    labels[at + Shape::ALL.len() * colours + shape * 2 + size] = 1.0;
                }
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_labels_mark_the_patches_an_object_covers() {
        let scene = Scene {
            id: 0,
            image: String::new(),
            split: "train".into(),
            // A large blue star centred at (12, 4): its box [6.9, -1.1,
            // 10.2, 10.2] clipped to [6.9, 0, 10.2, 9.1] covers patch
            // (0, 0) by 1.1 × 8 px (below a fifth of 64), patch (0, 1) by
            // 8 × 8 and patch (1, 1) by 8 × 1.1.
            objects: vec![object_at(
                Shape::Star,
                Colour::Blue,
                Size::Large,
                12.0,
                4.0,
                32.0,
            )],
            background_seed: 0,
        };
        let labels = patch_labels(&scene, 32, 8);
        assert_eq!(labels.len(), 16 * PATCH_LABELS);
        let star = Shape::ALL.iter().position(|s| *s == Shape::Star).unwrap();
        let blue = Colour::ALL.iter().position(|c| *c == Colour::Blue).unwrap();
        let shape_colour = star * Colour::ALL.len() + blue;
        let shape_size = Shape::ALL.len() * Colour::ALL.len() + star * 2 + 1;
        for patch in 0..16 {
            let row = &labels[patch * PATCH_LABELS..(patch + 1) * PATCH_LABELS];
            let marked = patch == 1;
            assert_eq!(
                row[shape_colour],
                f32::from(u8::from(marked)),
                "patch {patch}"
            );
            assert_eq!(
                row[shape_size],
                f32::from(u8::from(marked)),
                "patch {patch}"
            );
            assert_eq!(
                row.iter().sum::<f32>(),
                if marked { 2.0 } else { 0.0 },
                "patch {patch}"
            );
        }
    }

    #[test]
    fn labelled_scenes_are_seeded_and_apart_from_the_world() {
        let config = WorldConfig {
            images: 300,
            val_images: 20,
            test_images: 20,
            ..WorldConfig::default()
        };
        let world = generate_scenes(&config);
        let labelled = labelled_scenes(&config, 300);
        assert_eq!(labelled, labelled_scenes(&config, 300));
        assert_ne!(
            labelled,
            labelled_scenes(
                &WorldConfig {
                    seed: 1,
                    ..config.clone()
                },
                300
            )
        );
        for scene in &labelled {
            assert!((1..=MAX_OBJECTS).contains(&scene.objects.len()));
            assert!(scene.id >= config.images);
            assert!(
                world
                    .iter()
                    .all(|w| w.objects != scene.objects
                        && w.background_seed != scene.background_seed),
                "{scene:?} repeats a world scene"
            );
        }
    }

    #[test]
    fn scenes_are_a_function_of_the_seed() {
        let config = WorldConfig {
            images: 40,
            val_images: 5,
            test_images: 5,
            ..WorldConfig::default()
        };
        let a = generate_scenes(&config);
        assert_eq!(a, generate_scenes(&config));
        let b = generate_scenes(&WorldConfig {
            seed: 1,
            ..config.clone()
        });
        assert_ne!(a, b);
        assert_eq!(a.iter().filter(|s| s.split == "test").count(), 5);
        for scene in &a {
            assert!((1..=4).contains(&scene.objects.len()));
            for (i, o) in scene.objects.iter().enumerate() {
                let [x, y, w, h] = o.bbox;
                assert!(
                    x >= 0.0 && y >= 0.0 && x + w <= 64.0 && y + h <= 64.0,
                    "{o:?}"
                );
                for p in &scene.objects[i + 1..] {
                    let [px, py, pw, ph] = p.bbox;
                    assert!(
                        x >= px + pw || px >= x + w || y >= py + ph || py >= y + h,
                        "overlap in {}",
                        scene.id
                    );
                }
            }
        }
    }

    #[test]
    fn minimal_pairs_change_one_shape_and_leave_held_out_scenes_alone() {
        let plain = WorldConfig {
            images: 400,
            val_images: 20,
            test_images: 20,
            ..WorldConfig::default()
        };
        let paired_config = WorldConfig {
            minimal_pairs: 1.0,
            ..plain.clone()
        };
        let (a, b) = (generate_scenes(&plain), generate_scenes(&paired_config));
        let mut pairs = 0;
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            if x.split != "train" || i % 2 == 0 {
                // Even and held-out scenes are the plain world's.
                assert_eq!(x, y, "scene {i}");
                continue;
            }
            // With fraction 1 every odd training scene pairs with the one before.
            let partner = &b[i - 1];
            assert_eq!(y.background_seed, partner.background_seed);
            assert_eq!(y.objects.len(), partner.objects.len());
            let changed = y
                .objects
                .iter()
                .zip(&partner.objects)
                .filter(|(o, p)| {
                    assert_eq!((o.colour, o.size, o.region), (p.colour, p.size, p.region));
                    assert_eq!(o.bbox, p.bbox);
                    o.shape != p.shape
                })
                .count();
            assert_eq!(changed, 1, "scene {i}");
            pairs += 1;
        }
        assert_eq!(pairs, 180);
        let half = generate_scenes(&WorldConfig {
            minimal_pairs: 0.5,
            ..plain
        });
        let paired = half.iter().zip(&a).filter(|(h, p)| h != p).count();
        assert!((60..=120).contains(&paired), "{paired} of 180 paired");
    }

    #[test]
    fn attribute_labels_name_each_objects_combinations_and_the_count() {
        let object = |shape, colour, size, column, row| Object {
            shape,
            colour,
            size,
            region: Region { column, row },
            bbox: [0.0; 4],
        };
        let scene = Scene {
            id: 0,
            image: String::new(),
            split: "train".into(),
            objects: vec![
                object(Shape::Star, Colour::Blue, Size::Large, 2, 0),
                object(Shape::Circle, Colour::White, Size::Small, 0, 2),
            ],
            background_seed: 0,
        };
        let labels = attribute_labels(&scene);
        assert_eq!(labels.len(), ATTRIBUTE_LABELS);
        let on: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 1.0).collect();
        // (shape, colour): star = 4, blue = 2; circle = 0, white = 7.
        // (shape, size) from 56: star large = 56 + 9, circle small = 56.
        // (colour, region) from 70: blue top right = 70 + 18 + 2, white
        // bottom left = 70 + 63 + 6. Count two: 142 + 1.
        assert_eq!(on, vec![7, 34, 56, 65, 90, 139, 143]);
        assert!(labels.iter().all(|&l| l == 0.0 || l == 1.0));
    }
}
