//! Held-out evaluation data: a zero-shot classification set and, per
//! language, class prompts and a retrieval set.

use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;
use vl_data::classes::read_class_set;
use vl_data::fashion_mnist;
use vl_data::manifest::read_captioned_images;
use vl_data::transforms::{eval_transform, pre_caption};
use vl_data::world::{class_prompts, files, render_scene, zero_shot_classes, zero_shot_scenes};
use vl_data::{BadEntries, CaptionedImage, ImageBatch, RetrievalSet, clip_images};

use super::{ManifestData, Task, ZERO_SHOT_PER_CLASS, io};
use crate::TrainError;
use crate::altclip::evaluation::recall_rows;
use crate::altclip::recipe::AltClipRecipe;
use crate::eval::retrieval::RetrievalMetrics;

/// Labelled images for zero-shot classification.
pub struct ZeroShotSet {
    /// The images, transformed.
    pub images: ImageBatch,
    /// Each image's class.
    pub labels: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
}

/// A language of the evaluation, as it appears in the table.
pub struct EvalLanguage {
    /// Language code.
    pub code: String,
    /// Prompts of each class, if the zero-shot set has this language.
    pub class_prompts: Option<Vec<Vec<String>>>,
    /// A retrieval set in this language, with the index of its images in
    /// [`EvalSet::retrieval_images`].
    pub retrieval: Option<(usize, RetrievalSet)>,
}

/// Held-out evaluation data.
pub struct EvalSet {
    /// The zero-shot set, if the task has one.
    pub zero_shot: Option<ZeroShotSet>,
    /// The retrieval sets' images (languages that share images share one).
    pub retrieval_images: Vec<ImageBatch>,
    /// Per language.
    pub languages: Vec<EvalLanguage>,
}

impl EvalSet {
    /// The task's held-out evaluation data at the recipe's resolution.
    pub fn new(task: &Task, recipe: &AltClipRecipe) -> Result<Self, TrainError> {
        let size = recipe.teacher.vision_config.image_size as u32;
        let clean = |s: &str| pre_caption(s, recipe.max_words);
        let mut set = EvalSet {
            zero_shot: None,
            retrieval_images: Vec::new(),
            languages: Vec::new(),
        };
        match task {
            Task::World {
                dir,
                config,
                languages,
            } => {
                let scenes = zero_shot_scenes(config, ZERO_SHOT_PER_CLASS);
                let images: Vec<RgbImage> = scenes
                    .par_iter()
                    .map(|(scene, _)| eval_transform(&render_scene(scene, config.image_size), size))
                    .collect();
                let classes = zero_shot_classes();
                set.zero_shot = Some(ZeroShotSet {
                    images: ImageBatch::from_images(&images, size as usize),
                    labels: scenes.iter().map(|(_, label)| *label).collect(),
                    classes: classes.len(),
                });
                for &l in languages {
                    let prompts = classes
                        .iter()
                        .map(|&(c, s)| class_prompts(l, c, s).iter().map(|p| clean(p)).collect())
                        .collect();
                    let path = dir.join(files::retrieval("test", l));
                    let (items, _) =
                        read_captioned_images(&path, None, recipe.max_words, BadEntries::Fail)?;
                    let retrieval = set.retrieval(&items, recipe)?;
                    set.languages.push(EvalLanguage {
                        code: l.code().to_owned(),
                        class_prompts: Some(prompts),
                        retrieval: Some(retrieval),
                    });
                }
            }
            Task::Fashion { dir, languages } => {
                let (images, labels) = fashion_test_set(dir)?;
                set.zero_shot = Some(ZeroShotSet {
                    images: clip_images(&images, size)?,
                    labels,
                    classes: fashion_mnist::CLASSES.len(),
                });
                for &l in languages {
                    let prompts = (0..fashion_mnist::CLASSES.len())
                        .map(|label| {
                            (0..fashion_mnist::TEMPLATES)
                                .map(|t| clean(&fashion_mnist::caption(l, label, t)))
                                .collect()
                        })
                        .collect();
                    set.languages.push(EvalLanguage {
                        code: l.code().to_owned(),
                        class_prompts: Some(prompts),
                        retrieval: None,
                    });
                }
            }
            Task::Manifests(data) => set.read_manifests(data, recipe)?,
        }
        Ok(set)
    }

    /// The evaluation files of a manifest task: its class file and its
    /// retrieval manifests, languages in the order they come.
    fn read_manifests(
        &mut self,
        data: &ManifestData,
        recipe: &AltClipRecipe,
    ) -> Result<(), TrainError> {
        let size = recipe.teacher.vision_config.image_size as u32;
        if let Some(path) = &data.classes {
            let classes = read_class_set(path, data.image_root.as_deref(), recipe.max_words)?;
            self.zero_shot = Some(ZeroShotSet {
                images: clip_images(&classes.images, size)?,
                labels: classes.labels,
                classes: classes.classes,
            });
            for (code, prompts) in classes.prompts {
                self.language(&code).class_prompts = Some(prompts);
            }
        }
        for (code, path) in &data.retrieval {
            let retrieval = self.retrieval(&data.read(path, recipe.max_words)?, recipe)?;
            let language = self.language(code);
            if language.retrieval.is_some() {
                return Err(TrainError::BadInput(format!(
                    "two retrieval sets for `{code}` (the second: {})",
                    path.display()
                )));
            }
            language.retrieval = Some(retrieval);
        }
        if self.languages.is_empty() {
            return Err(TrainError::BadInput(
                "nothing to evaluate on: give a class file (--classes) or retrieval manifests (--retrieval LANG=FILE)".into(),
            ));
        }
        Ok(())
    }

    /// The entry of language `code`, added if new.
    fn language(&mut self, code: &str) -> &mut EvalLanguage {
        let at = match self.languages.iter().position(|l| l.code == code) {
            Some(at) => at,
            None => {
                self.languages.push(EvalLanguage {
                    code: code.to_owned(),
                    class_prompts: None,
                    retrieval: None,
                });
                self.languages.len() - 1
            }
        };
        &mut self.languages[at]
    }

    /// The retrieval set of `items`, its images shared with an earlier set
    /// of the same images.
    fn retrieval(
        &mut self,
        items: &[CaptionedImage],
        recipe: &AltClipRecipe,
    ) -> Result<(usize, RetrievalSet), TrainError> {
        let set = RetrievalSet::new(items);
        let same_images = self.languages.iter().find_map(|l| match &l.retrieval {
            Some((index, other)) if other.images == set.images => Some(*index),
            _ => None,
        });
        let index = match same_images {
            Some(index) => index,
            None => {
                let size = recipe.teacher.vision_config.image_size as u32;
                self.retrieval_images.push(clip_images(&set.images, size)?);
                self.retrieval_images.len() - 1
            }
        };
        Ok((index, set))
    }

    /// Chance level of each task, as fractions (retrieval: of the first
    /// language's set).
    pub fn chance(&self) -> serde_json::Value {
        let mut chance = serde_json::json!({});
        if let Some(zero_shot) = &self.zero_shot {
            let classes = zero_shot.classes as f64;
            chance["zero_shot_acc"] = (1.0 / classes).into();
            chance["zero_shot_top5"] = (5.0_f64.min(classes) / classes).into();
        }
        let first = self.languages.iter().find_map(|l| l.retrieval.as_ref());
        if let Some((_, set)) = first {
            for (task, fraction) in recall_rows(&RetrievalMetrics::chance(set)) {
                chance[task] = fraction.into();
            }
        }
        chance
    }
}

/// Fashion-MNIST's converted test images and labels (`test.json`).
fn fashion_test_set(dir: &Path) -> Result<(Vec<PathBuf>, Vec<usize>), TrainError> {
    let path = dir.join("test.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|source| TrainError::Json {
            path: path.clone(),
            source,
        })?;
    let paths = entries
        .iter()
        .map(|e| dir.join(e["image"].as_str().unwrap_or_default()))
        .collect();
    let labels = entries
        .iter()
        .map(|e| e["label"].as_u64().map(|l| l as usize))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            TrainError::BadInput(format!("{}: an entry without a label", path.display()))
        })?;
    Ok((paths, labels))
}
