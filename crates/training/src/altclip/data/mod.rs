//! The data of an AltCLIP run: the user's manifests, or the synthetic
//! world or Fashion-MNIST written as manifests, read as teacher captions,
//! stage-1 parallel pairs, stage-2 multilingual captions and the
//! evaluation sets.

mod eval;
mod manifests;

pub use eval::{EvalLanguage, EvalSet, ZeroShotSet};
pub use manifests::{ManifestData, language_file};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use vl_data::fashion_mnist::{self, FashionMnist, Split};
use vl_data::manifest::read_captioned_images;
use vl_data::parallel::{gettext_pairs, read_parallel_tsv};
use vl_data::transforms::pre_caption;
use vl_data::world::{Language, WorldConfig, existing_world, files, write_world};
use vl_data::{BadEntries, CaptionedImage, ImageBatch, clip_images};

use crate::TrainError;
use crate::altclip::recipe::AltClipRecipe;

/// Where a run's data comes from.
#[derive(Debug, Clone)]
pub struct DataSource {
    /// A synthetic world directory (default: generate one into `cache`).
    pub world: Option<PathBuf>,
    /// Fashion-MNIST instead of the world: the directory of its IDX files.
    pub fashion_mnist: Option<PathBuf>,
    /// Where generated worlds and image caches live.
    pub cache: PathBuf,
    /// The student's languages besides English.
    pub languages: Vec<Language>,
}

/// The world's languages named by `codes`.
pub fn languages(codes: &[String]) -> Result<Vec<Language>, TrainError> {
    codes
        .iter()
        .map(|c| {
            Language::from_code(c.trim()).ok_or_else(|| {
                TrainError::BadInput(format!(
                    "unknown language `{c}` (the world has en, zh, de, fr)"
                ))
            })
        })
        .collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_owned(),
        source,
    }
}

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
    /// The user's own files.
    Manifests(ManifestData),
}

impl Task {
    /// Opens (generating or converting into the cache if needed) the data
    /// `args` name.
    pub fn open(args: &DataSource, seed: u64) -> Result<Self, TrainError> {
        let mut langs = vec![Language::En];
        langs.extend(
            args.languages
                .iter()
                .copied()
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
            Some(dir) => (dir.clone(), vl_data::world::read_world(dir)?.config),
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
                    write_world(&config, &dir)?;
                }
                (dir, config)
            }
        };
        for l in &langs {
            if !config.languages.contains(l) {
                return Err(TrainError::BadInput(format!(
                    "the world {} has no {} captions",
                    dir.display(),
                    l.code()
                )));
            }
        }
        Ok(Task::World {
            dir,
            config,
            languages: langs,
        })
    }

    /// Unusable manifest entries skipped so far (`--skip-bad`).
    pub fn skipped(&self) -> usize {
        match self {
            Task::Manifests(data) => data.skipped(),
            Task::World { .. } | Task::Fashion { .. } => 0,
        }
    }

    /// Short name for run directories and tables.
    pub fn name(&self) -> &'static str {
        match self {
            Task::World { .. } => "world",
            Task::Fashion { .. } => "fashion-mnist",
            Task::Manifests(_) => "manifests",
        }
    }

    /// What to do with unusable entries and images.
    pub fn bad_entries(&self) -> BadEntries {
        match self {
            Task::Manifests(data) => data.bad,
            _ => BadEntries::Fail,
        }
    }

    /// The caption manifests of the training images, per language code:
    /// the world's and Fashion-MNIST's `pretrain_{lang}.json`, or the user's
    /// stage-2 manifests.
    fn caption_files(&self) -> Vec<(String, PathBuf)> {
        match self {
            Task::World { dir, languages, .. } | Task::Fashion { dir, languages } => languages
                .iter()
                .map(|l| (l.code().to_owned(), dir.join(files::pretrain(*l))))
                .collect(),
            Task::Manifests(data) => data.contrastive.clone(),
        }
    }

    fn read(&self, path: &Path, recipe: &AltClipRecipe) -> Result<Vec<CaptionedImage>, TrainError> {
        match self {
            Task::Manifests(data) => data.read(path, recipe.max_words),
            _ => Ok(read_captioned_images(path, None, recipe.max_words, BadEntries::Fail)?.0),
        }
    }

    /// The teacher's training images with their English captions.
    pub fn teacher_items(&self, recipe: &AltClipRecipe) -> Result<Vec<CaptionedImage>, TrainError> {
        match self {
            Task::Manifests(data) => data.teacher_items(recipe.max_words),
            Task::World { dir, .. } | Task::Fashion { dir, .. } => {
                self.read(&dir.join(files::pretrain(Language::En)), recipe)
            }
        }
    }

    /// Stage 2's training images and each image's captions in every
    /// language.
    pub fn contrastive_items(
        &self,
        recipe: &AltClipRecipe,
    ) -> Result<(ImageBatch, Vec<Vec<String>>), TrainError> {
        let mut captions: Vec<Vec<String>> = Vec::new();
        let mut images: Vec<PathBuf> = Vec::new();
        let mut index: HashMap<PathBuf, usize> = HashMap::new();
        let files = self.caption_files();
        if files.is_empty() {
            return Err(TrainError::BadInput(
                "no captioned images for stage 2: give --train-file LANG=FILE".into(),
            ));
        }
        for (_, path) in &files {
            for item in self.read(path, recipe)? {
                let i = *index.entry(item.image.clone()).or_insert_with(|| {
                    images.push(item.image.clone());
                    captions.push(Vec::new());
                    images.len() - 1
                });
                captions[i].extend(item.captions);
            }
        }
        let images = clip_images(&images, recipe.teacher.vision_config.image_size as u32)?;
        Ok((images, captions))
    }
}

/// Writes Fashion-MNIST's images as PNGs (training images: the first
/// [`FASHION_TRAIN_IMAGES`]) with caption manifests in every language:
/// `pretrain_{lang}.json` (each image with the caption templates of its
/// class) and `test.json` (`[{"image", "label"}]`).
fn convert_fashion(source: &Path, dir: &Path) -> Result<(), TrainError> {
    let done = dir.join("test.json");
    if done.is_file() {
        return Ok(());
    }
    log::info!(
        "converting Fashion-MNIST from {} into {}",
        source.display(),
        dir.display()
    );
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(io(&images))?;
    let train = fashion_mnist::read_fashion_mnist(source, Split::Train)?;
    let test = fashion_mnist::read_fashion_mnist(source, Split::Test)?;
    let write = |set: &FashionMnist, prefix: &str, count: usize| {
        (0..count.min(set.len()))
            .into_par_iter()
            .map(|i| {
                let name = format!("images/{prefix}-{i:05}.png");
                let path = dir.join(&name);
                set.image(i)
                    .save(&path)
                    .map_err(|source| vl_data::DataError::Image { path, source })?;
                Ok(name)
            })
            .collect::<Result<Vec<String>, TrainError>>()
    };
    let write_json = |path: &Path, entries: &[serde_json::Value]| {
        let json = serde_json::to_string(entries).expect("plain values");
        std::fs::write(path, json).map_err(io(path))
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
        write_json(&dir.join(files::pretrain(language)), &entries)?;
    }
    let test_names = write(&test, "test", test.len())?;
    let entries: Vec<serde_json::Value> = test_names
        .iter()
        .enumerate()
        .map(|(i, name)| serde_json::json!({ "image": name, "label": test.labels[i] }))
        .collect();
    write_json(&done, &entries)?;
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
    pub fn gather(
        task: &Task,
        extra: &[PathBuf],
        gettext: Option<&Path>,
    ) -> Result<Self, TrainError> {
        let clean = |s: &str| pre_caption(s, 60);
        let mut set = PairSet {
            train: Vec::new(),
            held_out: Vec::new(),
        };
        let targets = |languages: &[Language]| -> Vec<Language> {
            languages
                .iter()
                .copied()
                .filter(|l| *l != Language::En)
                .collect()
        };
        match task {
            Task::World { dir, languages, .. } => {
                for l in &targets(languages) {
                    let path = dir.join(files::parallel(*l));
                    for pair in read_parallel_tsv(&path)? {
                        set.train.push((clean(&pair.source), clean(&pair.target)));
                    }
                    // Held out: the validation captions, parallel by position.
                    let read = |language: Language| {
                        let path = dir.join(files::retrieval("val", language));
                        read_captioned_images(&path, None, 60, BadEntries::Fail)
                    };
                    let (en, other) = (read(Language::En)?.0, read(*l)?.0);
                    for (e, o) in en.iter().zip(&other) {
                        for (a, b) in e.captions.iter().zip(&o.captions) {
                            set.held_out.push((a.clone(), b.clone()));
                        }
                    }
                }
            }
            Task::Fashion { languages, .. } => {
                for l in &targets(languages) {
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
            Task::Manifests(_) => {}
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
        if let Task::Manifests(data) = task {
            held_out_split(data.english_pairs(60)?);
        }
        if set.train.is_empty() {
            return Err(TrainError::BadInput(
                "no text for stage 1: give parallel TSVs (--parallel), English manifests (--train-file) or --gettext".into(),
            ));
        }
        // English–English pairs: the student also reads English like the teacher.
        for split in [&mut set.train, &mut set.held_out] {
            let mut seen = std::collections::HashSet::new();
            let english: Vec<String> = split
                .iter()
                .filter(|(s, t)| s != t && seen.insert(s.clone()))
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
