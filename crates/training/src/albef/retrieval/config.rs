//! Retrieval fine-tuning's config: the keys of salesforce/ALBEF
//! `configs/Retrieval_coco.yaml` (and `Retrieval_flickr.yaml`, the same
//! keys), plus the tokenizer, the text lengths and how a step uses the
//! machine.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vl_data::transforms::AugmentConfig;
use vl_models::AlbefConfig;

use crate::TrainError;
use crate::albef::config::{
    ExecutionConfig, PretrainConfig, RecipeConfig, StepThreads, check_model, read_with_bert_config,
};
use crate::config::{Checks, check_augment};
use crate::runner::optimizer::OptimizerConfig;
use crate::runner::schedule::ScheduleConfig;

/// The retrieval fine-tuning config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetrievalConfig {
    /// Training manifests, one entry per caption with its `image_id`
    /// (`[{"image", "caption", "image_id"}]`).
    pub train_file: Vec<PathBuf>,
    /// Validation manifest (`[{"image", "caption": [..]}]`): scored every
    /// epoch, choosing the best checkpoint by `r_mean`.
    pub val_file: Option<PathBuf>,
    /// Test manifest: scored every epoch.
    pub test_file: Option<PathBuf>,
    /// Directory image paths are relative to (default: each manifest's).
    pub image_root: Option<PathBuf>,
    /// `tokenizer.json` (default: the one beside the starting checkpoint).
    pub tokenizer: Option<PathBuf>,
    /// The model's shape; taken from the starting checkpoint when it is
    /// one of ours.
    #[serde(flatten)]
    pub model: AlbefConfig,
    /// Samples per training step.
    pub batch_size_train: usize,
    /// Samples per evaluation batch.
    pub batch_size_test: usize,
    /// Momentum features kept per modality (and their image ids).
    pub queue_size: usize,
    /// EMA coefficient of the momentum model.
    pub momentum: f64,
    /// Candidates re-ranked by ITM per query.
    pub k_test: usize,
    /// Distillation weight.
    pub alpha: f64,
    /// Momentum distillation of the ITC targets.
    pub distill: bool,
    /// Ramp α from 0 over the first epoch (the reference's `warm_up`).
    pub warm_up: bool,
    /// Words kept per caption (`pre_caption`).
    pub max_words: usize,
    /// Tokens per caption, `[CLS]` included (the reference pads evaluation
    /// texts to 30).
    pub max_tokens: usize,
    /// AdamW.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule (the reference's spelling).
    pub schedular: ScheduleConfig,
    /// Training augmentation.
    pub augment: AugmentConfig,
    /// How a step uses the machine (as in pretraining).
    pub execution: ExecutionConfig,
}

impl Default for RetrievalConfig {
    /// `configs/Retrieval_coco.yaml`.
    fn default() -> Self {
        Self {
            train_file: Vec::new(),
            val_file: None,
            test_file: None,
            image_root: None,
            tokenizer: None,
            model: AlbefConfig {
                image_res: 384,
                ..AlbefConfig::base()
            },
            batch_size_train: 32,
            batch_size_test: 64,
            queue_size: 65536,
            momentum: 0.995,
            k_test: 256,
            alpha: 0.4,
            distill: true,
            warm_up: true,
            max_words: 30,
            max_tokens: 30,
            optimizer: OptimizerConfig {
                lr: 1e-5,
                weight_decay: 0.02,
                ..OptimizerConfig::default()
            },
            schedular: ScheduleConfig {
                lr: 1e-5,
                epochs: 5,
                min_lr: 1e-6,
                warmup_lr: 1e-5,
                warmup_epochs: 1,
                ..ScheduleConfig::default()
            },
            augment: AugmentConfig::default(),
            execution: ExecutionConfig::default(),
        }
    }
}

impl RetrievalConfig {
    /// The `tiny` preset: the reference's recipe on the synthetic world,
    /// scaled to the tiny model. What differs, and why:
    /// - lr 8.5e-5, a tenth of the tiny pretraining's (the reference's
    ///   1e-5 is a tenth of its pretraining's 1e-4), batch 64;
    /// - a queue of 1024 (the world's 22 000 training captions would fit
    ///   the reference's 65 536 three times over), k_test 16;
    /// - 60 words, 64 tokens, no flip, crop or RandAugment, as the tiny
    ///   pretraining (the world's captions name colours and places);
    /// - two data-parallel workers, as the tiny pretraining.
    pub fn tiny(model: AlbefConfig) -> Self {
        let lr = 8.5e-5;
        Self {
            model,
            batch_size_train: 64,
            batch_size_test: 128,
            queue_size: 1024,
            k_test: 16,
            max_words: 60,
            max_tokens: 64,
            optimizer: OptimizerConfig {
                lr,
                weight_decay: 0.02,
                ..OptimizerConfig::default()
            },
            schedular: ScheduleConfig {
                lr,
                epochs: 5,
                min_lr: lr / 10.0,
                warmup_lr: lr,
                warmup_epochs: 1,
                ..ScheduleConfig::default()
            },
            augment: AugmentConfig {
                crop_scale: (1.0, 1.0),
                horizontal_flip: false,
                mirror_words: Vec::new(),
                randaugment_ops: 0,
                randaugment_magnitude: 7.0,
            },
            execution: ExecutionConfig {
                workers: 2,
                step_threads: StepThreads::One,
                text_length_groups: 4,
            },
            ..Self::default()
        }
    }

    fn schema() -> Self {
        Self {
            val_file: Some(PathBuf::new()),
            test_file: Some(PathBuf::new()),
            image_root: Some(PathBuf::new()),
            tokenizer: Some(PathBuf::new()),
            ..Self::default()
        }
    }

    /// Reads a YAML config with the reference's keys, strictly; relative
    /// paths are relative to the YAML file; the values are then checked.
    pub fn from_yaml_file(path: &Path) -> Result<Self, TrainError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config: Self = read_with_bert_config(path, &Self::schema())?;
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        config.train_file.iter_mut().for_each(resolve);
        config.val_file.iter_mut().for_each(resolve);
        config.test_file.iter_mut().for_each(resolve);
        config.image_root.iter_mut().for_each(resolve);
        config.tokenizer.iter_mut().for_each(resolve);
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// Checks every value that cannot be right; the error lists each with
    /// its key.
    pub fn validate(&self) -> Result<(), TrainError> {
        let mut c = Checks::default();
        c.require(
            self.warm_up,
            "warm_up",
            "only `True` (the reference's value for retrieval) is supported",
        );
        c.positive(self.batch_size_test, "batch_size_test");
        c.positive(self.k_test, "k_test");
        check_model(&self.model, &mut c);
        check_augment(&self.augment, &mut c, "augment");
        c.finish()?;
        // The rest is pretraining's step on other positives: its checks,
        // under the reference's retrieval keys.
        self.training_config().validate().map_err(|e| match e {
            TrainError::InvalidConfig(mut values) => {
                for v in &mut values {
                    if v.key == "batch_size" {
                        v.key = "batch_size_train".into();
                    }
                }
                TrainError::InvalidConfig(values)
            }
            other => other,
        })
    }

    /// The step's config: pretraining's, without MLM (`mlm_probability`
    /// 0), α 0 without `distill`, and none of pretraining's recipe.
    pub fn training_config(&self) -> PretrainConfig {
        PretrainConfig {
            train_file: self.train_file.clone(),
            test_file: self.test_file.clone(),
            image_root: self.image_root.clone(),
            tokenizer: self.tokenizer.clone(),
            model: self.model.clone(),
            batch_size: self.batch_size_train,
            mlm_probability: 0.0,
            queue_size: self.queue_size,
            momentum: self.momentum,
            alpha: if self.distill { self.alpha } else { 0.0 },
            max_words: self.max_words,
            max_tokens: self.max_tokens,
            k_test: self.k_test,
            optimizer: self.optimizer.clone(),
            schedular: self.schedular.clone(),
            augment: self.augment.clone(),
            recipe: RecipeConfig::default(),
            execution: self.execution.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
    }

    #[test]
    fn the_shipped_configs_are_the_reference() {
        let coco = RetrievalConfig::from_yaml_file(&configs().join("Retrieval_coco.yaml")).unwrap();
        let expected = RetrievalConfig {
            train_file: coco.train_file.clone(),
            val_file: coco.val_file.clone(),
            test_file: coco.test_file.clone(),
            image_root: coco.image_root.clone(),
            tokenizer: coco.tokenizer.clone(),
            ..RetrievalConfig::default()
        };
        assert_eq!(coco, expected);
        let flickr =
            RetrievalConfig::from_yaml_file(&configs().join("Retrieval_flickr.yaml")).unwrap();
        assert_eq!((flickr.schedular.epochs, flickr.k_test), (10, 128));
    }

    #[test]
    fn bad_values_are_named_by_the_retrieval_keys() {
        let config = RetrievalConfig {
            batch_size_train: 1,
            momentum: 2.0,
            ..RetrievalConfig::tiny(AlbefConfig::tiny(10))
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("batch_size_train") && err.contains("momentum"),
            "{err}"
        );
    }
}
