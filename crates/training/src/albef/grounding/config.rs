//! Weakly supervised grounding's config: the keys of salesforce/ALBEF
//! `configs/Grounding.yaml`, `Grounding.py`'s `--block_num` as
//! `gradcam_layer`, and this port's `ref_file` (true boxes as plain JSON,
//! in place of the refer toolkit's pickle under `refcoco_data`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vl_data::transforms::AugmentConfig;
use vl_models::AlbefConfig;

use crate::TrainError;
use crate::albef::config::{ExecutionConfig, check_model, read_with_bert_config};
use crate::albef::retrieval::RetrievalConfig;
use crate::config::Checks;
use crate::runner::optimizer::OptimizerConfig;
use crate::runner::schedule::ScheduleConfig;

/// The grounding config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroundingConfig {
    /// Training expressions (`[{"image", "text"}]`); boxes are never read.
    pub train_file: Vec<PathBuf>,
    /// Evaluated expressions (`[{"image", "text", "ref_id"}]`): the first
    /// file gives `val_d` (and chooses the best epoch), the others
    /// `test_d`.
    pub test_file: Vec<PathBuf>,
    /// Candidate boxes (`{"<image_id or ref_id>": [[x, y, w, h, …]]}`).
    pub det_file: PathBuf,
    /// True boxes by ref (`{"<ref_id>": {"image_id", "split", "bbox"}}`),
    /// for expressions that do not carry their `bbox`.
    pub ref_file: Option<PathBuf>,
    /// The reference's refer-toolkit folder; not read (convert it to
    /// `ref_file` with `datasets/refcoco-plus/convert.py`).
    pub refcoco_data: Option<PathBuf>,
    /// Loaded and unused by the reference; not read.
    pub coco_file: Option<PathBuf>,
    /// Directory image paths are relative to (default: each file's).
    pub image_root: Option<PathBuf>,
    /// `tokenizer.json` (default: the one beside the starting checkpoint).
    pub tokenizer: Option<PathBuf>,
    /// The model's shape; taken from the starting checkpoint when it is
    /// one of ours.
    #[serde(flatten)]
    pub model: AlbefConfig,
    /// Samples per step (training and evaluation).
    pub batch_size: usize,
    /// Momentum features kept per modality (and their image ids).
    pub queue_size: usize,
    /// EMA coefficient of the momentum model.
    pub momentum: f64,
    /// Distillation weight.
    pub alpha: f64,
    /// Momentum distillation of the ITC targets.
    pub distill: bool,
    /// Ramp α from 0 over the first epoch.
    pub warm_up: bool,
    /// The BERT layer (an index among all layers, a fusion one) whose
    /// cross-attention Grad-CAM reads: `Grounding.py --block_num` (8, the
    /// third of six fusion layers).
    pub gradcam_layer: usize,
    /// Test examples drawn as PNGs (heat map, chosen and true box) after
    /// the last epoch.
    pub png_examples: usize,
    /// Words kept per expression (`pre_caption`).
    pub max_words: usize,
    /// Tokens per expression, `[CLS]` included.
    pub max_tokens: usize,
    /// AdamW.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule (the reference's spelling).
    pub schedular: ScheduleConfig,
    /// Training augmentation (the reference resizes without cropping).
    pub augment: AugmentConfig,
    /// How a step uses the machine.
    pub execution: ExecutionConfig,
}

impl Default for GroundingConfig {
    /// `configs/Grounding.yaml`.
    fn default() -> Self {
        let retrieval = RetrievalConfig::default();
        Self {
            train_file: Vec::new(),
            test_file: Vec::new(),
            det_file: PathBuf::new(),
            ref_file: None,
            refcoco_data: None,
            coco_file: None,
            image_root: None,
            tokenizer: None,
            model: retrieval.model,
            batch_size: 32,
            queue_size: 65536,
            momentum: 0.995,
            alpha: 0.4,
            distill: true,
            warm_up: true,
            gradcam_layer: 8,
            png_examples: 16,
            max_words: 30,
            max_tokens: 30,
            optimizer: retrieval.optimizer,
            schedular: retrieval.schedular,
            augment: AugmentConfig {
                crop_scale: (1.0, 1.0),
                ..AugmentConfig::default()
            },
            execution: ExecutionConfig::default(),
        }
    }
}

impl GroundingConfig {
    /// The `tiny` preset: retrieval's tiny recipe ([`RetrievalConfig::tiny`])
    /// on the world's expressions; Grad-CAM on the tiny model's first
    /// fusion layer (of two).
    pub fn tiny(model: AlbefConfig) -> Self {
        let retrieval = RetrievalConfig::tiny(model);
        Self {
            gradcam_layer: retrieval.model.bert_config.fusion_layer.unwrap_or(0),
            model: retrieval.model,
            batch_size: retrieval.batch_size_train,
            queue_size: retrieval.queue_size,
            max_words: retrieval.max_words,
            max_tokens: retrieval.max_tokens,
            optimizer: retrieval.optimizer,
            schedular: retrieval.schedular,
            augment: retrieval.augment,
            execution: retrieval.execution,
            ..Self::default()
        }
    }

    fn schema() -> Self {
        Self {
            ref_file: Some(PathBuf::new()),
            refcoco_data: Some(PathBuf::new()),
            coco_file: Some(PathBuf::new()),
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
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        config.train_file.iter_mut().for_each(resolve);
        config.test_file.iter_mut().for_each(resolve);
        resolve(&mut config.det_file);
        config.ref_file.iter_mut().for_each(resolve);
        config.image_root.iter_mut().for_each(resolve);
        config.tokenizer.iter_mut().for_each(resolve);
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// Checks every value that cannot be right; the error lists each with
    /// its key.
    pub fn validate(&self) -> Result<(), TrainError> {
        let mut c = Checks::default();
        let bert = &self.model.bert_config;
        let fusion = bert.fusion_layer.unwrap_or(0);
        c.require(
            (fusion..bert.num_hidden_layers).contains(&self.gradcam_layer),
            "gradcam_layer",
            format_args!(
                "{} is not a fusion layer ({fusion}..{})",
                self.gradcam_layer, bert.num_hidden_layers
            ),
        );
        check_model(&self.model, &mut c);
        c.finish()?;
        self.retrieval_config().validate().map_err(|e| match e {
            TrainError::InvalidConfig(mut values) => {
                for v in &mut values {
                    if v.key == "batch_size_train" || v.key == "batch_size_test" {
                        v.key = "batch_size".into();
                    }
                }
                TrainError::InvalidConfig(values)
            }
            other => other,
        })
    }

    /// The retrieval fine-tuning it trains as (`Grounding.py` trains
    /// `model_retrieval.py`), without evaluation manifests.
    pub fn retrieval_config(&self) -> RetrievalConfig {
        RetrievalConfig {
            train_file: self.train_file.clone(),
            val_file: None,
            test_file: None,
            image_root: self.image_root.clone(),
            tokenizer: self.tokenizer.clone(),
            model: self.model.clone(),
            batch_size_train: self.batch_size,
            batch_size_test: self.batch_size,
            queue_size: self.queue_size,
            momentum: self.momentum,
            k_test: 1,
            alpha: self.alpha,
            distill: self.distill,
            warm_up: self.warm_up,
            max_words: self.max_words,
            max_tokens: self.max_tokens,
            optimizer: self.optimizer.clone(),
            schedular: self.schedular.clone(),
            augment: self.augment.clone(),
            execution: self.execution.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_the_reference() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/Grounding.yaml");
        let config = GroundingConfig::from_yaml_file(&path).unwrap();
        assert_eq!(config.test_file.len(), 2);
        let expected = GroundingConfig {
            train_file: config.train_file.clone(),
            test_file: config.test_file.clone(),
            det_file: config.det_file.clone(),
            ref_file: config.ref_file.clone(),
            refcoco_data: config.refcoco_data.clone(),
            coco_file: config.coco_file.clone(),
            image_root: config.image_root.clone(),
            tokenizer: config.tokenizer.clone(),
            ..GroundingConfig::default()
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn a_gradcam_layer_outside_the_fusion_layers_is_named() {
        let config = GroundingConfig {
            gradcam_layer: 0,
            ..GroundingConfig::tiny(AlbefConfig::tiny(10))
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("gradcam_layer") && err.contains("not a fusion layer"),
            "{err}"
        );
    }
}
