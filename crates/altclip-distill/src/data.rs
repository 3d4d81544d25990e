//! The data of a run: the synthetic world or Fashion-MNIST, as teacher
//! captions, stage-1 parallel pairs, stage-2 multilingual captions and the
//! evaluation sets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rayon::prelude::*;
use vl_data::fashion_mnist::{self, FashionMnist, Split};
use vl_data::manifest::read_captioned_images;
use vl_data::parallel::{gettext_pairs, read_parallel_tsv};
use vl_data::transforms::{eval_transform, pre_caption, to_normalized_chw};
use vl_data::world::{
    Language, WorldConfig, class_prompts, existing_world, render_scene, write_world,
    zero_shot_classes, zero_shot_scenes,
};
use vl_data::{BadEntries, CaptionedImage, RetrievalSet, loader::eval_pixels};
use vl_training::altclip::AltClipRecipe;
use vl_training::retrieval::RetrievalMetrics;

use crate::{DataArgs, EvalLanguage, languages};

/// Fashion-MNIST training images used (of 60 000): enough for the tiny
/// teacher, few enough for a run of minutes.
const FASHION_TRAIN_IMAGES: usize = 12_000;

/// Zero-shot images per class of the synthetic world.
const ZERO_SHOT_PER_CLASS: usize = 20;

/// One pair in every this many of a corpus without a held-out split is
/// held out.
const HOLD_OUT_EVERY: usize = 20;

/// Where the data comes from.
pub enum Task {
    /// The synthetic shapes world.
    World {
        /// Its directory.
        dir: PathBuf,
        /// Its config.
        config: WorldConfig,
        /// English first, then the student's other languages.
        languages: Vec<Language>,
    },
    /// Fashion-MNIST, written once as PNGs with caption manifests.
    Fashion {
        /// The PNG cache.
        dir: PathBuf,
        /// English first, then the student's other languages.
        languages: Vec<Language>,
    },
}

impl Task {
    /// Opens (generating or converting into the cache if needed) the data
    /// `args` name.
    pub fn open(args: &DataArgs, seed: u64) -> anyhow::Result<Self> {
        let mut langs = vec![Language::En];
        langs.extend(
            languages(&args.languages)?
                .into_iter()
                .filter(|l| *l != Language::En),
        );
        if let Some(source) = &args.fashion_mnist {
            let dir = args.cache.join("fashion-mnist-png");
            convert_fashion(source, &dir)?;
            return Ok(Task::Fashion {
                dir,
                languages: langs,
            });
        }
        let (dir, config) = match &args.world {
            Some(dir) => {
                let text = std::fs::read_to_string(dir.join(vl_data::world::WORLD_FILE))
                    .with_context(|| format!("{} is not a synthetic world", dir.display()))?;
                let value: serde_json::Value = serde_json::from_str(&text)?;
                let config: WorldConfig =
                    serde_json::from_value(value["summary"]["config"].clone())?;
                (dir.clone(), config)
            }
            None => {
                let config = WorldConfig {
                    seed,
                    ..WorldConfig::default()
                };
                let dir = args.cache.join(format!(
                    "shapes-world-seed{seed}-noise0-{}px-{}",
                    config.image_size, config.images
                ));
                if existing_world(&dir, &config).is_none() {
                    log::info!("generating the synthetic world into {}", dir.display());
                    write_world(&config, &dir)
                        .with_context(|| format!("writing {}", dir.display()))?;
                }
                (dir, config)
            }
        };
        for l in &langs {
            if !config.languages.contains(l) {
                bail!("the world {} has no {} captions", dir.display(), l.code());
            }
        }
        Ok(Task::World {
            dir,
            config,
            languages: langs,
        })
    }

    /// Short name for run directories and tables.
    pub fn name(&self) -> &'static str {
        match self {
            Task::World { .. } => "world",
            Task::Fashion { .. } => "fashion-mnist",
        }
    }

    fn dir(&self) -> &Path {
        match self {
            Task::World { dir, .. } | Task::Fashion { dir, .. } => dir,
        }
    }

    fn languages(&self) -> &[Language] {
        match self {
            Task::World { languages, .. } | Task::Fashion { languages, .. } => languages,
        }
    }

    fn manifest(&self, name: &str, recipe: &AltClipRecipe) -> anyhow::Result<Vec<CaptionedImage>> {
        let path = self.dir().join(name);
        Ok(read_captioned_images(&path, None, recipe.max_words, BadEntries::Fail)?.0)
    }

    /// The teacher's training images with their English captions.
    pub fn teacher_items(&self, recipe: &AltClipRecipe) -> anyhow::Result<Vec<CaptionedImage>> {
        self.manifest("pretrain_en.json", recipe)
    }

    /// Stage 2's training images (normalised pixels) and each image's
    /// captions in every language.
    pub fn contrastive_items(
        &self,
        recipe: &AltClipRecipe,
    ) -> anyhow::Result<(Vec<f32>, Vec<Vec<String>>)> {
        let mut captions: Vec<Vec<String>> = Vec::new();
        let mut images: Vec<PathBuf> = Vec::new();
        let mut index: HashMap<PathBuf, usize> = HashMap::new();
        for language in self.languages() {
            for item in self.manifest(&format!("pretrain_{}.json", language.code()), recipe)? {
                let i = *index.entry(item.image.clone()).or_insert_with(|| {
                    images.push(item.image.clone());
                    captions.push(Vec::new());
                    images.len() - 1
                });
                captions[i].extend(item.captions);
            }
        }
        let pixels = eval_pixels(&images, recipe.teacher.vision_config.image_size as u32)?;
        Ok((pixels, captions))
    }
}

/// Writes Fashion-MNIST's images as PNGs (training images: the first
/// [`FASHION_TRAIN_IMAGES`]) with caption manifests in every language:
/// `pretrain_{lang}.json` (each image with the caption templates of its
/// class) and `test.json` (`[{"image", "label"}]`).
fn convert_fashion(source: &Path, dir: &Path) -> anyhow::Result<()> {
    let done = dir.join("test.json");
    if done.is_file() {
        return Ok(());
    }
    log::info!(
        "converting Fashion-MNIST from {} into {}",
        source.display(),
        dir.display()
    );
    std::fs::create_dir_all(dir.join("images"))?;
    let train = fashion_mnist::read_fashion_mnist(source, Split::Train)?;
    let test = fashion_mnist::read_fashion_mnist(source, Split::Test)?;
    let write = |set: &FashionMnist, prefix: &str, count: usize| -> anyhow::Result<Vec<String>> {
        (0..count.min(set.len()))
            .into_par_iter()
            .map(|i| {
                let name = format!("images/{prefix}-{i:05}.png");
                set.image(i)
                    .save(dir.join(&name))
                    .with_context(|| format!("writing {name}"))?;
                Ok(name)
            })
            .collect()
    };
    let train_names = write(&train, "train", FASHION_TRAIN_IMAGES)?;
    for language in Language::ALL {
        let entries: Vec<serde_json::Value> = train_names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let label = train.labels[i] as usize;
                let captions: Vec<String> = (0..fashion_mnist::TEMPLATES)
                    .map(|t| fashion_mnist::caption(language, label, t))
                    .collect();
                serde_json::json!({ "image": name, "caption": captions })
            })
            .collect();
        let path = dir.join(format!("pretrain_{}.json", language.code()));
        std::fs::write(&path, serde_json::to_string(&entries)?)?;
    }
    let test_names = write(&test, "test", test.len())?;
    let entries: Vec<serde_json::Value> = test_names
        .iter()
        .enumerate()
        .map(|(i, name)| serde_json::json!({ "image": name, "label": test.labels[i] }))
        .collect();
    std::fs::write(&done, serde_json::to_string(&entries)?)?;
    Ok(())
}

/// Stage 1's pairs `(english, student side)`: training and held out.
pub struct PairSet {
    /// Training pairs.
    pub train: Vec<(String, String)>,
    /// Held-out pairs (never trained on).
    pub held_out: Vec<(String, String)>,
}

impl PairSet {
    /// The task's parallel captions (and English–English pairs, as the
    /// paper), plus `extra` TSV files and, if given, the gettext catalogs'
    /// English–Chinese pairs under `gettext` (one in
    /// [`HOLD_OUT_EVERY`] of these held out).
    pub fn gather(task: &Task, extra: &[PathBuf], gettext: Option<&Path>) -> anyhow::Result<Self> {
        let clean = |s: &str| pre_caption(s, 60);
        let mut set = PairSet {
            train: Vec::new(),
            held_out: Vec::new(),
        };
        let targets: Vec<Language> = task
            .languages()
            .iter()
            .copied()
            .filter(|l| *l != Language::En)
            .collect();
        match task {
            Task::World { dir, .. } => {
                for l in &targets {
                    let path = dir.join(format!("parallel_en_{}.tsv", l.code()));
                    for pair in read_parallel_tsv(&path)? {
                        set.train.push((clean(&pair.source), clean(&pair.target)));
                    }
                    // Held out: the validation captions, parallel by position.
                    let read = |code: &str| {
                        let path = dir.join(format!("retrieval_val_{code}.json"));
                        read_captioned_images(&path, None, 60, BadEntries::Fail)
                    };
                    let (en, other) = (read("en")?.0, read(l.code())?.0);
                    for (e, o) in en.iter().zip(&other) {
                        for (a, b) in e.captions.iter().zip(&o.captions) {
                            set.held_out.push((a.clone(), b.clone()));
                        }
                    }
                }
            }
            Task::Fashion { .. } => {
                for l in &targets {
                    for label in 0..fashion_mnist::CLASSES.len() {
                        for t in 0..fashion_mnist::TEMPLATES {
                            set.train.push((
                                clean(&fashion_mnist::caption(Language::En, label, t)),
                                clean(&fashion_mnist::caption(*l, label, t)),
                            ));
                        }
                    }
                }
            }
        }
        let mut held_out_split = |pairs: Vec<(String, String)>| {
            for (i, pair) in pairs.into_iter().enumerate() {
                if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 {
                    set.held_out.push(pair);
                } else {
                    set.train.push(pair);
                }
            }
        };
        for path in extra {
            held_out_split(
                read_parallel_tsv(path)?
                    .into_iter()
                    .map(|p| (clean(&p.source), clean(&p.target)))
                    .collect(),
            );
        }
        if let Some(root) = gettext {
            let corpus = gettext_pairs(root, "zh_CN")?;
            log::info!(
                "gettext: {} English–Chinese pairs kept of {} in {} catalogs",
                corpus.pairs.len(),
                corpus.raw_pairs,
                corpus.files
            );
            held_out_split(
                corpus
                    .pairs
                    .into_iter()
                    .map(|p| (clean(&p.source), clean(&p.target)))
                    .filter(|(s, t)| !s.is_empty() && !t.is_empty())
                    .collect(),
            );
        }
        // English–English pairs: the student also reads English like the teacher.
        for split in [&mut set.train, &mut set.held_out] {
            let mut seen = std::collections::HashSet::new();
            let english: Vec<String> = split
                .iter()
                .filter(|(s, _)| seen.insert(s.clone()))
                .map(|(s, _)| s.clone())
                .collect();
            split.extend(english.into_iter().map(|s| (s.clone(), s)));
        }
        if set.held_out.is_empty() {
            // Fashion-MNIST's template pairs alone: nothing to hold out.
            set.held_out = set.train.clone();
            log::warn!("no held-out parallel text: the stage-1 MSE is measured on training pairs");
        }
        Ok(set)
    }

    /// Every training text, both sides (the student tokenizer's corpus).
    pub fn corpus(&self) -> impl Iterator<Item = &String> + Send {
        self.train.iter().flat_map(|(s, t)| [s, t])
    }
}

/// Held-out evaluation data: zero-shot images with labels, retrieval
/// images, and the per-language prompts and captions.
pub struct EvalSet {
    /// Normalised pixels of the zero-shot images.
    pub zero_shot_pixels: Vec<f32>,
    /// Their classes.
    pub zero_shot_labels: Vec<usize>,
    /// Normalised pixels of the retrieval images (the same in every language).
    pub retrieval_pixels: Option<Vec<f32>>,
    /// Per language.
    pub languages: Vec<EvalLanguage>,
    classes: usize,
}

impl EvalSet {
    /// The task's held-out evaluation data at the recipe's resolution.
    pub fn new(task: &Task, recipe: &AltClipRecipe) -> anyhow::Result<Self> {
        let size = recipe.teacher.vision_config.image_size as u32;
        let clean = |s: &str| pre_caption(s, recipe.max_words);
        match task {
            Task::World {
                dir,
                config,
                languages,
            } => {
                let scenes = zero_shot_scenes(config, ZERO_SHOT_PER_CLASS);
                let images: Vec<Vec<f32>> = scenes
                    .par_iter()
                    .map(|(scene, _)| {
                        let image = eval_transform(&render_scene(scene, config.image_size), size);
                        let mut pixels = Vec::new();
                        to_normalized_chw(&image, &mut pixels);
                        pixels
                    })
                    .collect();
                let classes = zero_shot_classes();
                let mut retrieval_pixels = None;
                let mut langs = Vec::new();
                for &l in languages {
                    let path = dir.join(format!("retrieval_test_{}.json", l.code()));
                    let items =
                        read_captioned_images(&path, None, recipe.max_words, BadEntries::Fail)?.0;
                    let set = RetrievalSet::new(&items);
                    if retrieval_pixels.is_none() {
                        retrieval_pixels = Some(eval_pixels(&set.images, size)?);
                    }
                    langs.push(EvalLanguage {
                        code: l.code().to_owned(),
                        class_prompts: classes
                            .iter()
                            .map(|&(c, s)| {
                                class_prompts(l, c, s).iter().map(|p| clean(p)).collect()
                            })
                            .collect(),
                        retrieval: Some(set),
                    });
                }
                Ok(Self {
                    zero_shot_pixels: images.concat(),
                    zero_shot_labels: scenes.iter().map(|(_, label)| *label).collect(),
                    retrieval_pixels,
                    languages: langs,
                    classes: classes.len(),
                })
            }
            Task::Fashion { dir, languages } => {
                let text = std::fs::read_to_string(dir.join("test.json"))?;
                let entries: Vec<serde_json::Value> = serde_json::from_str(&text)?;
                let paths: Vec<PathBuf> = entries
                    .iter()
                    .map(|e| dir.join(e["image"].as_str().unwrap_or_default()))
                    .collect();
                let labels = entries
                    .iter()
                    .map(|e| e["label"].as_u64().map(|l| l as usize))
                    .collect::<Option<Vec<usize>>>()
                    .context("test.json: an entry without a label")?;
                Ok(Self {
                    zero_shot_pixels: eval_pixels(&paths, size)?,
                    zero_shot_labels: labels,
                    retrieval_pixels: None,
                    languages: languages
                        .iter()
                        .map(|&l| EvalLanguage {
                            code: l.code().to_owned(),
                            class_prompts: (0..fashion_mnist::CLASSES.len())
                                .map(|label| {
                                    (0..fashion_mnist::TEMPLATES)
                                        .map(|t| clean(&fashion_mnist::caption(l, label, t)))
                                        .collect()
                                })
                                .collect(),
                            retrieval: None,
                        })
                        .collect(),
                    classes: fashion_mnist::CLASSES.len(),
                })
            }
        }
    }

    /// Chance level of each task, as fractions.
    pub fn chance(&self) -> serde_json::Value {
        let mut chance = serde_json::json!({ "zero_shot_acc": 1.0 / self.classes as f64 });
        if let Some(set) = self.languages.first().and_then(|l| l.retrieval.as_ref()) {
            let metrics = RetrievalMetrics::chance(set);
            chance["t2i_r1"] = (metrics.img_r1 / 100.0).into();
            chance["i2t_r1"] = (metrics.txt_r1 / 100.0).into();
        }
        chance
    }
}
