//! ALBEF pretraining's config: the reference `configs/Pretrain.yaml` keys
//! at the top level (the model's among them, as there), then two sections
//! that the reference does not have: `recipe` (what this port adds to the
//! method, each off by default) and `execution` (how a step uses the
//! machine: no effect on the losses beyond float rounding). Read strictly
//! ([`PretrainConfig::from_yaml_file`]) and checked before anything runs
//! ([`PretrainConfig::validate`]).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use vl_models::AlbefConfig;

use crate::TrainError;
use crate::albef::vision_warmup::VisionWarmupConfig;
use crate::config::{Checks, check_augment, from_value_strict, read_yaml};
use crate::runner::optimizer::OptimizerConfig;
use crate::runner::schedule::ScheduleConfig;

/// ALBEF's pretraining configuration: the keys of the reference
/// `configs/Pretrain.yaml`, plus the few the reference hard-codes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PretrainConfig {
    /// Pretraining manifests (`[{"image", "caption"}]`).
    pub train_file: Vec<PathBuf>,
    /// Zero-shot retrieval manifest evaluated after training
    /// (`[{"image", "caption": [..]}]`).
    pub test_file: Option<PathBuf>,
    /// Directory image paths are relative to (default: each manifest's).
    pub image_root: Option<PathBuf>,
    /// `tokenizer.json` of the text encoder.
    pub tokenizer: Option<PathBuf>,
    /// The model (`bert_config`, `image_res`, `vision_width`, `embed_dim`,
    /// `temp`, and the ViT shape).
    #[serde(flatten)]
    pub model: AlbefConfig,
    /// Samples per step.
    pub batch_size: usize,
    /// Fraction of tokens masked for MLM.
    pub mlm_probability: f64,
    /// Momentum features kept per modality.
    pub queue_size: usize,
    /// EMA coefficient of the momentum model.
    pub momentum: f64,
    /// Distillation weight (ramped from 0 over the first epoch).
    pub alpha: f64,
    /// Words kept per caption (`pre_caption`).
    pub max_words: usize,
    /// Tokens per caption, `[CLS]` included (the reference's `max_length=25`).
    pub max_tokens: usize,
    /// Candidates re-ranked by ITM per query in retrieval evaluation.
    pub k_test: usize,
    /// AdamW.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule (the reference's spelling).
    pub schedular: ScheduleConfig,
    /// Training augmentation (the reference's transform by default).
    pub augment: vl_data::transforms::AugmentConfig,
    /// What this port adds to the method (none of it in the reference).
    pub recipe: RecipeConfig,
    /// How a step uses the machine.
    pub execution: ExecutionConfig,
}

/// The `recipe` section: additions to ALBEF's method, each off by default
/// (the reference's behaviour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecipeConfig {
    /// Epochs over which ITM negatives go from uniform to the reference's
    /// hard negatives; 0 is the reference. An untrained fusion encoder
    /// cannot tell a hard negative from its positive
    /// ([`vl_objectives::sample_hard_negatives`]).
    pub itm_hardness_warmup_epochs: f64,
    /// Fraction of each batch filled with samples whose captions resemble
    /// its first sample's (`vl_data::LoaderConfig::similar_fraction`): hard
    /// contrastive negatives by construction; 0 is the reference's shuffle.
    pub similar_fraction: f64,
    /// Decay of a slow exponential moving average of the online weights
    /// that retrieval is evaluated with (DeiT's `--model-ema`), apart from
    /// the momentum model, which serves distillation. Its effective decay
    /// starts low and rises with the step (`min(d, (1+t)/(10+t))`, as
    /// TensorFlow's `ExponentialMovingAverage` with `num_updates`), so that
    /// the first weights leave it quickly. Absent: the online weights are
    /// evaluated, as the reference does.
    pub model_ema_decay: Option<f64>,
    /// Supervised warm-up of a freshly initialised image encoder on the
    /// synthetic world's labels before pretraining, standing in for the
    /// reference's DeiT weights ([`crate::albef::vision_warmup`]). Absent:
    /// no warm-up.
    pub vision_warmup: Option<VisionWarmupConfig>,
}

impl Default for RecipeConfig {
    fn default() -> Self {
        Self {
            itm_hardness_warmup_epochs: 0.0,
            similar_fraction: 0.0,
            model_ema_decay: None,
            vision_warmup: None,
        }
    }
}

/// The `execution` section: how a step spreads over the machine. None of
/// it changes what is computed, only its order (so floats may round
/// differently).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecutionConfig {
    /// Data-parallel workers (threads) that split each batch, as the
    /// reference's distributed processes split theirs: each computes ITC
    /// against its shard and the shared queue, samples ITM negatives
    /// within its shard and runs MLM on it; the gradients are averaged
    /// (weighted by shard size) and every shard's momentum features are
    /// enqueued. With more than one and dropout on, the dropout masks
    /// depend on the order in which the threads draw from the device's
    /// generator, so runs are not bit-reproducible.
    pub workers: usize,
    /// How one worker spreads its step over threads.
    pub step_threads: StepThreads,
    /// Groups of captions, by length, that each text pass of a step runs
    /// on separately, each padded only to its own longest caption: the
    /// same losses on fewer padded tokens, at the cost of more, smaller
    /// calls; 1 pads the whole batch together, as the reference does.
    pub text_length_groups: usize,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            step_threads: StepThreads::OverlapMomentum,
            text_length_groups: 1,
        }
    }
}

/// How one worker spreads its pretraining step over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepThreads {
    /// Everything on the worker's thread (what each of several workers
    /// does: together they fill the cores).
    One,
    /// The momentum pass on a second thread beside the online encoders.
    OverlapMomentum,
    /// The momentum pass and then the MLM branch on a second thread, ITC
    /// and ITM on the first; each branch differentiates its own copy of
    /// the parameters and their gradients add up to those of the summed
    /// loss. Only without dropout: two autodiff passes would draw from
    /// the device's one generator in no fixed order, and a seeded run
    /// would not repeat.
    SplitBranches,
}

impl Default for PretrainConfig {
    /// The reference `Pretrain.yaml` (ViT-B/16, BERT-base).
    fn default() -> Self {
        Self {
            train_file: Vec::new(),
            test_file: None,
            image_root: None,
            tokenizer: None,
            model: AlbefConfig::base(),
            batch_size: 64,
            mlm_probability: 0.15,
            queue_size: 65536,
            momentum: 0.995,
            alpha: 0.4,
            max_words: 30,
            max_tokens: 25,
            k_test: 256,
            optimizer: OptimizerConfig::default(),
            schedular: ScheduleConfig::default(),
            augment: vl_data::transforms::AugmentConfig::default(),
            recipe: RecipeConfig::default(),
            execution: ExecutionConfig::default(),
        }
    }
}

impl PretrainConfig {
    /// The `tiny` preset: [`AlbefConfig::tiny`] trained from scratch in
    /// minutes on two CPU cores on the synthetic shapes world. Where it
    /// differs from the reference, and why:
    /// - lr 8.5e-4 decaying only to half of it: a small model from scratch
    ///   sits on a plateau for a few hundred steps before the towers align,
    ///   and a reference-style decay ends the run before that;
    /// - momentum 0.5 and a one-batch queue: ITC aligns each tower with the
    ///   other's momentum copy, which at 0.995 stays at its random start for
    ///   hundreds of steps (the reference starts from pretrained encoders);
    /// - ITM negatives ramp from uniform to hard over 5 epochs: an untrained
    ///   fusion encoder cannot tell a hard negative (one attribute of one
    ///   object changed) from its positive and never starts learning;
    /// - 60 words and 64 tokens (the world's captions name every object),
    ///   k_test 16 for a test set of 250 images;
    /// - no horizontal flip (it contradicts the captions' left and right),
    ///   no random crop (crops stretched back distort shapes 6–10 px wide:
    ///   R@1 −10.8 image→text, −6.3 text→image) and no RandAugment (its
    ///   ±7-px translations move shapes out of the regions the captions
    ///   name, and its colour ops change the colours they name: R@1 −13.6
    ///   and −11.5);
    /// - the image encoder is first warmed up on 50 000 labelled images
    ///   drawn apart from the world ([`crate::albef::vision_warmup`]), as
    ///   the reference's starts from DeiT; pretraining then runs 26 epochs;
    /// - retrieval evaluates a slow average of the weights (`model_ema_decay`
    ///   0.997);
    /// - execution: batch 64 over two data-parallel workers of 32 (each
    ///   worker's one-thread step fills a core: 1.1× the samples per second
    ///   of one worker), text passes in four groups by caption length (the
    ///   same losses, a step 1.4× as fast).
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            model: AlbefConfig::tiny(vocab_size),
            batch_size: 64,
            queue_size: 64,
            momentum: 0.5,
            max_words: 60,
            max_tokens: 64,
            k_test: 16,
            optimizer: OptimizerConfig {
                lr: 8.5e-4,
                ..OptimizerConfig::default()
            },
            schedular: ScheduleConfig {
                lr: 8.5e-4,
                epochs: 26,
                min_lr: 4.25e-4,
                warmup_lr: 8.5e-5,
                warmup_epochs: 5,
                warmup_step_size: 10,
                ..ScheduleConfig::default()
            },
            augment: vl_data::transforms::AugmentConfig {
                crop_scale: (1.0, 1.0),
                horizontal_flip: false,
                mirror_words: Vec::new(),
                randaugment_ops: 0,
                randaugment_magnitude: 7.0,
            },
            recipe: RecipeConfig {
                itm_hardness_warmup_epochs: 5.0,
                similar_fraction: 0.0,
                model_ema_decay: Some(0.997),
                vision_warmup: Some(VisionWarmupConfig::default()),
            },
            execution: ExecutionConfig {
                workers: 2,
                step_threads: StepThreads::One,
                text_length_groups: 4,
            },
            ..Self::default()
        }
    }

    /// Every key a config file may set, at every depth (the schema of the
    /// unknown-key check): a config with each optional section present.
    fn schema() -> Self {
        let mut all = Self::tiny(0);
        all.test_file = Some(PathBuf::new());
        all.image_root = Some(PathBuf::new());
        all.tokenizer = Some(PathBuf::new());
        all
    }

    /// Reads a YAML config with the reference's keys. `bert_config` may be
    /// inline or, as in the reference, a path to a BERT `config.json`
    /// (relative to the YAML file); relative manifest paths are relative to
    /// the YAML file too. Missing keys take the reference values; an
    /// unknown key is an error naming it and the closest known key (in
    /// `bert_config`, the other fields of an HF BERT config are accepted).
    /// The values are then checked ([`PretrainConfig::validate`]).
    pub fn from_yaml_file(path: &Path) -> Result<Self, TrainError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config: Self = read_with_bert_config(path, &Self::schema())?;
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        config.train_file.iter_mut().for_each(resolve);
        config.test_file.iter_mut().for_each(resolve);
        config.image_root.iter_mut().for_each(resolve);
        config.tokenizer.iter_mut().for_each(resolve);
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// Checks every value that cannot be right, before anything runs: the
    /// error lists each with its key. A `vocab_size` of 0 is allowed (a
    /// tokenizer trained for the run sets it).
    pub fn validate(&self) -> Result<(), TrainError> {
        let mut c = Checks::default();
        // ITM draws each sample's negative from the rest of its batch.
        c.require(
            self.batch_size >= 2,
            "batch_size",
            "must be at least 2 (ITM draws a negative from the rest of the batch)",
        );
        c.positive(self.queue_size, "queue_size");
        c.in_range(self.mlm_probability, 0.0, 1.0, "mlm_probability");
        c.in_range(self.momentum, 0.0, 1.0, "momentum");
        c.in_range(self.alpha, 0.0, 1.0, "alpha");
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
        c.positive(self.k_test, "k_test");
        check_model(&self.model, &mut c);
        self.optimizer.check(&mut c, "optimizer");
        self.schedular.check(&mut c, "schedular");
        check_augment(&self.augment, &mut c, "augment");
        let recipe = &self.recipe;
        c.require(
            recipe.itm_hardness_warmup_epochs.is_finite()
                && recipe.itm_hardness_warmup_epochs >= 0.0,
            "recipe.itm_hardness_warmup_epochs",
            "must be 0 or more",
        );
        c.in_range(recipe.similar_fraction, 0.0, 1.0, "recipe.similar_fraction");
        if let Some(decay) = recipe.model_ema_decay {
            c.in_range(decay, 0.0, 1.0, "recipe.model_ema_decay");
        }
        if let Some(warmup) = &recipe.vision_warmup {
            warmup.check(&mut c, "recipe.vision_warmup");
        }
        let execution = &self.execution;
        c.positive(execution.workers, "execution.workers");
        c.require(
            execution.workers <= (self.batch_size / 2).max(1),
            "execution.workers",
            format_args!(
                "{} workers cannot each take two samples of a batch of {}",
                execution.workers, self.batch_size
            ),
        );
        c.positive(execution.text_length_groups, "execution.text_length_groups");
        let bert = &self.model.bert_config;
        c.require(
            execution.step_threads != StepThreads::SplitBranches
                || (bert.hidden_dropout_prob == 0.0 && bert.attention_probs_dropout_prob == 0.0),
            "execution.step_threads",
            "split_branches needs bert_config's dropout at 0 (its two threads would draw dropout masks in no fixed order)",
        );
        c.require(
            execution.workers == 1 || execution.step_threads == StepThreads::One,
            "execution.step_threads",
            "must be `one` with several workers (each worker fills a core)",
        );
        c.finish()
    }
}

/// Reads an ALBEF YAML config strictly against `schema` (every key it may
/// hold). `bert_config` may be inline or, as in the reference, a path to a
/// BERT `config.json` relative to the YAML file, whose unknown keys are
/// then reported against that file.
pub(crate) fn read_with_bert_config<T: DeserializeOwned, S: Serialize>(
    path: &Path,
    schema: &S,
) -> Result<T, TrainError> {
    let mut value = read_yaml(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut source = path.to_owned();
    if let Some(bert) = value.get("bert_config").and_then(|v| v.as_str()) {
        let bert_path = base.join(bert);
        let text = std::fs::read_to_string(&bert_path).map_err(|source| TrainError::Io {
            path: bert_path.clone(),
            source,
        })?;
        value["bert_config"] = serde_json::from_str(&text).map_err(|source| TrainError::Json {
            path: bert_path.clone(),
            source,
        })?;
        source = bert_path;
    }
    from_value_strict(path, value, schema, &["bert_config"]).map_err(|e| match e {
        // A key under `bert_config` lives in the BERT file.
        TrainError::UnknownKey { key, .. } if key.key.starts_with("bert_config.") => {
            TrainError::UnknownKey { path: source, key }
        }
        other => other,
    })
}

/// The model's shape: what [`AlbefConfig::init`] would otherwise assert.
pub(crate) fn check_model(model: &AlbefConfig, c: &mut Checks) {
    let bert = &model.bert_config;
    c.positive(bert.hidden_size, "bert_config.hidden_size");
    c.positive(bert.num_attention_heads, "bert_config.num_attention_heads");
    c.require(
        bert.num_attention_heads == 0 || bert.hidden_size.is_multiple_of(bert.num_attention_heads),
        "bert_config.num_attention_heads",
        format_args!(
            "{} heads do not divide hidden_size {}",
            bert.num_attention_heads, bert.hidden_size
        ),
    );
    match bert.fusion_layer {
        Some(fusion) => c.require(
            fusion <= bert.num_hidden_layers,
            "bert_config.fusion_layer",
            format_args!(
                "{fusion} is past num_hidden_layers ({})",
                bert.num_hidden_layers
            ),
        ),
        None => c.require(false, "bert_config.fusion_layer", "ALBEF needs one"),
    }
    c.require(
        bert.encoder_width.unwrap_or(bert.hidden_size) == model.vision_width,
        "bert_config.encoder_width",
        format_args!(
            "{} differs from vision_width {}",
            bert.encoder_width.unwrap_or(bert.hidden_size),
            model.vision_width
        ),
    );
    c.in_range(
        bert.hidden_dropout_prob,
        0.0,
        1.0,
        "bert_config.hidden_dropout_prob",
    );
    c.in_range(
        bert.attention_probs_dropout_prob,
        0.0,
        1.0,
        "bert_config.attention_probs_dropout_prob",
    );
    c.positive(model.patch_size, "patch_size");
    c.require(
        model.patch_size > 0
            && model.image_res.is_multiple_of(model.patch_size)
            && model.image_res > 0,
        "image_res",
        format_args!(
            "{} is not a multiple of patch_size {}",
            model.image_res, model.patch_size
        ),
    );
    c.positive(model.vision_heads, "vision_heads");
    c.require(
        model.vision_heads == 0 || model.vision_width.is_multiple_of(model.vision_heads),
        "vision_heads",
        format_args!(
            "{} heads do not divide vision_width {}",
            model.vision_heads, model.vision_width
        ),
    );
    c.positive(model.embed_dim, "embed_dim");
    c.require(
        model.temp.is_finite() && model.temp > 0.0,
        "temp",
        "must be positive",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
    }

    #[test]
    fn the_shipped_configs_parse() {
        let configs = configs();
        let reference = PretrainConfig::from_yaml_file(&configs.join("Pretrain.yaml")).unwrap();
        assert_eq!(reference.model, AlbefConfig::base());
        assert_eq!(reference.schedular, ScheduleConfig::default());
        assert_eq!(reference.queue_size, 65536);
        assert!(reference.train_file[0].ends_with("coco.json"));
        let mut tiny = PretrainConfig::from_yaml_file(&configs.join("pretrain_tiny.yaml")).unwrap();
        let mut preset = PretrainConfig::tiny(tiny.model.bert_config.vocab_size);
        // The file names its data; the preset has none.
        preset.train_file = tiny.train_file.clone();
        preset.test_file = tiny.test_file.clone();
        tiny.model.bert_config.vocab_size = preset.model.bert_config.vocab_size;
        assert_eq!(tiny, preset);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_typo_is_an_error_naming_the_key_and_the_nearest() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "typo.yaml", "bacth_size: 8\n");
        let err = PretrainConfig::from_yaml_file(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("typo.yaml: unknown key `bacth_size` (did you mean `batch_size`?)"),
            "{err}"
        );
        // In a section, and in the BERT config file, which names itself.
        let path = write(dir.path(), "nested.yaml", "execution: {wokers: 2}\n");
        let err = PretrainConfig::from_yaml_file(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`execution.wokers` (did you mean `workers`?)"),
            "{err}"
        );
        write(
            dir.path(),
            "bert.json",
            r#"{"architectures": ["BertForMaskedLM"], "hiden_size": 768, "fusion_layer": 6}"#,
        );
        let path = write(dir.path(), "bert.yaml", "bert_config: bert.json\n");
        let err = PretrainConfig::from_yaml_file(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "bert.json: unknown key `bert_config.hiden_size` (did you mean `hidden_size`?)"
            ),
            "{err}"
        );
        // HF's own fields are not typos.
        write(
            dir.path(),
            "bert.json",
            r#"{"architectures": ["BertForMaskedLM"], "transformers_version": "4.0", "fusion_layer": 6}"#,
        );
        PretrainConfig::from_yaml_file(&path).unwrap();
    }

    #[test]
    fn impossible_values_are_listed_with_their_keys() {
        let mut config = PretrainConfig::tiny(100);
        config.momentum = 2.0;
        config.mlm_probability = 1.5;
        config.optimizer.opt = "sgd".into();
        config.schedular.lr = -1.0;
        config.model.bert_config.num_attention_heads = 3;
        config.model.image_res = 30;
        config.execution.step_threads = StepThreads::SplitBranches;
        let err = config.validate().unwrap_err().to_string();
        for expected in [
            "`momentum`: 2 is outside [0, 1]",
            "`mlm_probability`: 1.5 is outside [0, 1]",
            "`optimizer.opt`: `sgd` is not supported",
            "`schedular.lr`: must be positive",
            "`bert_config.num_attention_heads`: 3 heads do not divide hidden_size 64",
            "`image_res`: 30 is not a multiple of patch_size 8",
            "`execution.step_threads`: must be `one` with several workers",
        ] {
            assert!(err.contains(expected), "{expected} not in {err}");
        }
        // MLM off is legitimate; a one-sample batch is not.
        let mut config = PretrainConfig::tiny(100);
        config.mlm_probability = 0.0;
        config.validate().unwrap();
        config.batch_size = 1;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("`batch_size`")
        );
        assert!(PretrainConfig::default().validate().is_ok());
    }
}
