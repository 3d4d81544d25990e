//! SNLI-VE fine-tuning's config: the keys of salesforce/ALBEF
//! `configs/VE.yaml`, plus the values `VE.py` and `model_ve.py` hard-code
//! (momentum 0.995, 30 words).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vl_data::transforms::AugmentConfig;
use vl_models::AlbefConfig;

use crate::TrainError;
use crate::albef::config::{check_model, read_with_bert_config};
use crate::config::{Checks, check_augment};
use crate::runner::optimizer::OptimizerConfig;
use crate::runner::schedule::ScheduleConfig;

/// The SNLI-VE config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VeConfig {
    /// Training annotations (`[{"image", "sentence", "label"}]`).
    pub train_file: PathBuf,
    /// Validation annotations: scored every epoch, choosing the best
    /// checkpoint.
    pub val_file: Option<PathBuf>,
    /// Test annotations: scored every epoch.
    pub test_file: Option<PathBuf>,
    /// Directory image names are relative to (default: each file's).
    pub image_root: Option<PathBuf>,
    /// `tokenizer.json` (default: the one beside the starting checkpoint).
    pub tokenizer: Option<PathBuf>,
    /// The model's shape (`bert_config`, `image_res`, the ViT's); taken
    /// from the starting checkpoint when it is one of ours.
    #[serde(flatten)]
    pub model: AlbefConfig,
    /// Samples per training step.
    pub batch_size_train: usize,
    /// Samples per evaluation batch.
    pub batch_size_test: usize,
    /// Weight of the momentum model's soft labels.
    pub alpha: f64,
    /// Classifier distillation from the momentum model.
    pub distill: bool,
    /// Ramp α from 0 over the first epoch (off for VE in the reference).
    pub warm_up: bool,
    /// EMA coefficient of the momentum model (hard-coded 0.995 there).
    pub momentum: f64,
    /// Words kept per hypothesis (`pre_caption`).
    pub max_words: usize,
    /// Tokens per hypothesis, `[CLS]` included.
    pub max_tokens: usize,
    /// AdamW.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule (the reference's spelling).
    pub schedular: ScheduleConfig,
    /// Training augmentation.
    pub augment: AugmentConfig,
}

impl Default for VeConfig {
    /// `configs/VE.yaml`.
    fn default() -> Self {
        Self {
            train_file: PathBuf::new(),
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
            alpha: 0.4,
            distill: true,
            warm_up: false,
            momentum: 0.995,
            max_words: 30,
            max_tokens: 40,
            optimizer: OptimizerConfig {
                lr: 2e-5,
                weight_decay: 0.02,
                ..OptimizerConfig::default()
            },
            schedular: ScheduleConfig {
                lr: 2e-5,
                epochs: 5,
                min_lr: 1e-6,
                warmup_lr: 1e-5,
                warmup_epochs: 1,
                ..ScheduleConfig::default()
            },
            augment: AugmentConfig::default(),
        }
    }
}

impl VeConfig {
    /// The `tiny` preset: the reference's recipe on the synthetic world,
    /// scaled to its tiny model. What differs, and why:
    /// - batch 32 and lr 1e-4 (5× the reference's 2e-5, for a model 30×
    ///   narrower whose pretraining ran at 8.5e-4), 5 epochs;
    /// - 60 words and 64 tokens, and no flip, crop or RandAugment, as the
    ///   tiny pretraining (the world's sentences name colours and places).
    pub fn tiny(model: AlbefConfig) -> Self {
        Self {
            model,
            batch_size_train: 32,
            batch_size_test: 128,
            max_words: 60,
            max_tokens: 64,
            optimizer: OptimizerConfig {
                lr: 1e-4,
                weight_decay: 0.02,
                ..OptimizerConfig::default()
            },
            schedular: ScheduleConfig {
                lr: 1e-4,
                epochs: 5,
                min_lr: 5e-6,
                warmup_lr: 5e-5,
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

    /// Reads a YAML config with the reference's keys, strictly (an unknown
    /// key is an error naming it); relative paths are relative to the YAML
    /// file; the values are then checked.
    pub fn from_yaml_file(path: &Path) -> Result<Self, TrainError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config: Self = read_with_bert_config(path, &Self::schema())?;
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.train_file);
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
        c.positive(self.batch_size_train, "batch_size_train");
        c.positive(self.batch_size_test, "batch_size_test");
        c.in_range(self.alpha, 0.0, 1.0, "alpha");
        c.in_range(self.momentum, 0.0, 1.0, "momentum");
        c.positive(self.max_words, "max_words");
        c.require(
            self.max_tokens >= 2,
            "max_tokens",
            "must be at least 2 ([CLS] and a word)",
        );
        c.require(
            self.max_tokens <= self.model.bert_config.max_position_embeddings,
            "max_tokens",
            format_args!(
                "{} exceeds bert_config.max_position_embeddings ({})",
                self.max_tokens, self.model.bert_config.max_position_embeddings
            ),
        );
        check_model(&self.model, &mut c);
        self.optimizer.check(&mut c, "optimizer");
        self.schedular.check(&mut c, "schedular");
        check_augment(&self.augment, &mut c, "augment");
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_the_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/VE.yaml");
        let config = VeConfig::from_yaml_file(&path).unwrap();
        assert!(config.train_file.ends_with("ve_train.json"));
        assert!(
            config
                .image_root
                .as_ref()
                .unwrap()
                .ends_with("flickr30k-images")
        );
        let expected = VeConfig {
            train_file: config.train_file.clone(),
            val_file: config.val_file.clone(),
            test_file: config.test_file.clone(),
            image_root: config.image_root.clone(),
            tokenizer: config.tokenizer.clone(),
            ..VeConfig::default()
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn bad_values_and_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ve.yaml");
        std::fs::write(&path, "alpah: 0.3\n").unwrap();
        let err = VeConfig::from_yaml_file(&path).unwrap_err().to_string();
        assert!(err.contains("`alpah` (did you mean `alpha`?)"), "{err}");
        std::fs::write(&path, "alpha: 1.5\nbatch_size_train: 0\n").unwrap();
        let err = VeConfig::from_yaml_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("alpha") && err.contains("batch_size_train"),
            "{err}"
        );
    }
}
