//! ALBEF pretraining (salesforce/ALBEF@b9727e4 `models/model_pretrain.py`,
//! `Pretrain.py`): one step computes ITC with momentum-feature queues and
//! momentum-distilled targets, ITM on in-batch hard negatives and MLM with
//! momentum soft targets, sums the three losses, takes one AdamW step, and
//! the momentum model follows by EMA.
//!
//! Deviations from the reference, each for a stated reason:
//! - The momentum model runs without dropout (the reference leaves it in
//!   train mode): its features are targets, and running it outside autodiff
//!   keeps it off the gradient tape.
//! - MLM logits are computed only at masked positions: the reference's loss
//!   ignores every other position, so the loss is the same for a fraction of
//!   the decoder cost.
//! - Positive and hard-negative pairs go through the fusion encoder in one
//!   call of `3·batch` rows rather than two; rows are independent. With
//!   `text_length_groups` above 1, every text pass (and so that call) runs
//!   group by group on captions sorted by length, each group padded to its
//!   own longest: the same losses on fewer padded tokens.
//! - The queue accepts any batch size (the reference asserts
//!   `queue_size % batch == 0`).
//! - Without dropout, one process differentiates MLM on a second thread
//!   (after the momentum pass) beside ITC and ITM, each on its own copy of
//!   the parameters, and adds the two gradients: the summed loss's
//!   gradient, on two cores.

use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Bytes, Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use vl_data::{EncodedBatch, ImageTextBatch, SpecialTokens, mix_seed};
use vl_models::blocks::padding_mask;
use vl_models::{Albef, AlbefConfig, TextInput};
use vl_objectives::contrastive::{diagonal_targets, same_id};
use vl_objectives::{
    FeatureQueue, MaskedTokens, MaskingConfig, alpha_at, distilled_targets, ema_update, fresh_copy,
    itc_loss, itm_loss, mask_tokens, mlm_loss, sample_hard_negatives,
};

use crate::TrainError;
use crate::checkpoint::{Checkpoint, load_module_bytes, module_bytes};
use crate::data_parallel::{run_workers, weighted_gradient_sum};
use crate::optimizer::{OptimizerConfig, adamw};
use crate::runner::{Position, StepReport, Trainee};
use crate::schedule::ScheduleConfig;
use crate::vision_warmup::VisionWarmupConfig;

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
    /// Epochs over which ITM negatives go from uniform to the reference's
    /// hard negatives (not a reference key; 0, the default, is the
    /// reference). Training from scratch needs a few: see
    /// [`vl_objectives::sample_hard_negatives`].
    pub itm_hardness_warmup_epochs: f64,
    /// Words kept per caption (`pre_caption`).
    pub max_words: usize,
    /// Tokens per caption, `[CLS]` included (the reference's `max_length=25`).
    pub max_tokens: usize,
    /// Candidates re-ranked by ITM per query in retrieval evaluation.
    pub k_test: usize,
    /// Data-parallel workers (threads) that split each batch, as the
    /// reference's distributed processes split theirs: each computes ITC
    /// against its shard and the shared queue, samples ITM negatives
    /// within its shard and runs MLM on it; the gradients are averaged
    /// (weighted by shard size) and every shard's momentum features are
    /// enqueued. Not a reference key (the reference's is its process
    /// count); 1 is a single process, whose step still spreads over two
    /// threads (`StepThreads`). With more than one and dropout on,
    /// the dropout masks depend on the order in which the threads draw
    /// from the device's generator, so runs are not bit-reproducible.
    pub workers: usize,
    /// Fraction of each batch filled with samples whose captions resemble
    /// its first sample's (`vl_data::LoaderConfig::similar_fraction`): hard
    /// contrastive negatives by construction. Not a reference key; 0 (the
    /// reference's plain shuffle) by default.
    pub similar_fraction: f64,
    /// Groups of captions, by length, that each text pass of a step runs
    /// on separately, each padded only to its own longest caption: the
    /// same losses on fewer padded tokens (`TextGroup`), at the cost of
    /// more, smaller calls. Not a reference key; 1 (the default) pads the
    /// whole batch together, as the reference does.
    pub text_length_groups: usize,
    /// Decay of a slow exponential moving average of the online weights
    /// that retrieval is evaluated with (DeiT's `--model-ema`), apart from
    /// the momentum model, which serves distillation. Its effective decay
    /// starts low and rises with the step (`min(d, (1+t)/(10+t))`, as
    /// TensorFlow's `ExponentialMovingAverage` with `num_updates`), so that
    /// the first weights leave it quickly. Not a reference key; absent (the
    /// online weights are evaluated, as the reference does) by default.
    pub model_ema_decay: Option<f64>,
    /// AdamW.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule (the reference's spelling).
    pub schedular: ScheduleConfig,
    /// Training augmentation.
    pub augment: vl_data::transforms::AugmentConfig,
    /// Supervised warm-up of a freshly initialised image encoder on the
    /// synthetic world's labels before pretraining, standing in for the
    /// reference's DeiT weights ([`crate::vision_warmup`]). Not a reference
    /// key; absent (no warm-up) by default.
    pub vision_warmup: Option<VisionWarmupConfig>,
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
            itm_hardness_warmup_epochs: 0.0,
            max_words: 30,
            max_tokens: 25,
            k_test: 256,
            workers: 1,
            similar_fraction: 0.0,
            text_length_groups: 1,
            model_ema_decay: None,
            optimizer: OptimizerConfig::default(),
            schedular: ScheduleConfig::default(),
            augment: vl_data::transforms::AugmentConfig::default(),
            vision_warmup: None,
        }
    }
}

impl PretrainConfig {
    /// The `tiny` preset: [`AlbefConfig::tiny`] trained from scratch in
    /// minutes on two CPU cores on the synthetic shapes world. What differs
    /// from the reference values, and why (measured in docs/results.md):
    /// - lr 8.5e-4 decaying only to half of it: a small model from scratch
    ///   leaves a plateau of a few hundred steps before the towers align,
    ///   and a reference-style decay ends the run before that;
    /// - batch 64 split over two data-parallel workers (`workers`), as two
    ///   of the reference's processes split theirs: ITC and ITM negatives
    ///   come from each worker's 32 samples, and each worker's one-thread
    ///   step fills a core, 1.1× the samples per second of one worker on
    ///   batch 32 (docs/results.md, "Two workers of 32");
    /// - momentum 0.5 and a one-batch queue: ITC aligns each tower with the
    ///   other's momentum copy, which at 0.995 stays at its random start for
    ///   hundreds of steps (the reference starts from pretrained encoders);
    /// - ITM negatives ramp from uniform to hard over the first 5 epochs: an
    ///   untrained fusion encoder cannot tell a hard negative (one attribute
    ///   of one object changed) from its positive and never starts learning;
    /// - long captions (the world's captions name every object), k_test 16,
    ///   no horizontal flip, which would contradict the captions' left and
    ///   right, and no random crop (`crop_scale` 1–1): even crops of 0.8–1.0
    ///   of the area, stretched back with an aspect of up to 4/3, distort
    ///   shapes 6–10 px wide and blur small against large, and cost 10.8
    ///   points of image→text R@1 and 6.3 of text→image;
    /// - no RandAugment: on 32-px images its ±7-px translations move shapes
    ///   into the region the caption does not name, and AutoContrast,
    ///   Equalize and Brightness shift the colours it does name (R@1 +13.6
    ///   image→text, +11.5 text→image without it);
    /// - the image encoder is first warmed up on 50 000 labelled images
    ///   drawn apart from the world, with token labelling, for 14 epochs
    ///   ([`crate::vision_warmup`]), as the reference's starts from DeiT;
    ///   pretraining then runs 26 epochs (docs/results.md);
    /// - each text pass runs on four groups of captions by length
    ///   (`text_length_groups`): the same losses as one padded batch, a
    ///   step 1.4× as fast on two cores;
    /// - retrieval evaluates a slow average of the weights
    ///   (`model_ema_decay`).
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            model: AlbefConfig::tiny(vocab_size),
            batch_size: 64,
            queue_size: 64,
            workers: 2,
            momentum: 0.5,
            itm_hardness_warmup_epochs: 5.0,
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
            vision_warmup: Some(VisionWarmupConfig::default()),
            text_length_groups: 4,
            model_ema_decay: Some(0.997),
            ..Self::default()
        }
    }

    /// Reads a YAML config with the reference's keys. `bert_config` may be
    /// inline or, as in the reference, a path to a BERT `config.json`
    /// (relative to the YAML file); relative manifest paths are relative to
    /// the YAML file too. Unknown keys are ignored; missing keys take the
    /// reference values.
    pub fn from_yaml_file(path: &Path) -> Result<Self, TrainError> {
        let err = |message: String| TrainError::Config {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut value: serde_json::Value =
            serde_norway::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(bert) = value.get("bert_config").and_then(|v| v.as_str()) {
            let bert_path = base.join(bert);
            let bert_text = std::fs::read_to_string(&bert_path)
                .map_err(|e| err(format!("{}: {e}", bert_path.display())))?;
            value["bert_config"] = serde_json::from_str(&bert_text)
                .map_err(|e| err(format!("{}: {e}", bert_path.display())))?;
        }
        let mut config: Self = serde_json::from_value(value).map_err(|e| err(e.to_string()))?;
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        config.train_file.iter_mut().for_each(resolve);
        config.test_file.iter_mut().for_each(resolve);
        config.image_root.iter_mut().for_each(resolve);
        config.tokenizer.iter_mut().for_each(resolve);
        Ok(config)
    }
}

/// Losses and settings of one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepLosses {
    /// Masked language modelling.
    pub loss_mlm: f32,
    /// Image–text contrastive.
    pub loss_ita: f32,
    /// Image–text matching.
    pub loss_itm: f32,
    /// Learning rate used.
    pub lr: f64,
    /// Distillation weight used.
    pub alpha: f64,
    /// Temperature after the clamp.
    pub temp: f32,
}

impl StepLosses {
    /// Sum of the three losses (what is minimised).
    pub fn total(&self) -> f32 {
        self.loss_mlm + self.loss_ita + self.loss_itm
    }
}

impl From<StepLosses> for StepReport {
    fn from(l: StepLosses) -> Self {
        StepReport {
            losses: vec![
                ("loss_ita", l.loss_ita),
                ("loss_itm", l.loss_itm),
                ("loss_mlm", l.loss_mlm),
            ],
            settings: vec![("lr", l.lr), ("alpha", l.alpha), ("temp", l.temp as f64)],
        }
    }
}

impl Trainee for AlbefPretraining {
    type Batch = ImageTextBatch;

    fn position(&self) -> Position {
        self.position
    }

    fn step(
        &mut self,
        batch: &ImageTextBatch,
        steps_per_epoch: usize,
    ) -> Result<StepReport, TrainError> {
        AlbefPretraining::step(self, batch, steps_per_epoch).map(StepReport::from)
    }

    fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        AlbefPretraining::checkpoint(self)
    }
}

/// Everything that evolves during pretraining.
pub struct AlbefPretraining {
    /// The run's configuration.
    pub config: PretrainConfig,
    /// The online model (autodiff device); taken out during a step.
    model: Option<Albef>,
    /// The momentum model (plain device); taken out during a step.
    momentum: Option<Albef>,
    /// Momentum-feature queues.
    pub queue: FeatureQueue,
    /// AdamW with the reference's groups.
    pub optimizer: ModuleOptimizer,
    /// Steps done.
    pub position: Position,
    /// Seed of every random draw.
    pub seed: u64,
    masking: MaskingConfig,
    /// How a step uses the cores ([`StepThreads::for_config`]).
    threads: StepThreads,
    device: Device,
    /// The slow average of the online weights
    /// ([`PretrainConfig::model_ema_decay`]; plain device).
    model_ema: Option<Albef>,
}

/// Parameters of the reference that are 0-dim scalars (decayed there).
const SCALARS: &[&str] = &["temp"];

impl AlbefPretraining {
    /// Starts a run from `model` (typically fresh or imported), on `device`
    /// (without autodiff; training enables it).
    pub fn new(
        config: PretrainConfig,
        model: Albef,
        special: SpecialTokens,
        seed: u64,
        device: &Device,
    ) -> Self {
        assert!(model.has_mlm_head(), "pretraining needs the MLM head");
        device.seed(seed);
        let momentum = fresh_copy(&model);
        let model_ema = config.model_ema_decay.map(|_| fresh_copy(&model));
        let queue = FeatureQueue::new(
            config.model.embed_dim,
            config.queue_size,
            false,
            mix(seed, u64::MAX),
            device,
        );
        let model = trainable(model, device);
        let optimizer = adamw(&model, &config.optimizer, SCALARS);
        let masking = masking(&config, special);
        Self {
            threads: StepThreads::for_config(&config),
            config,
            model: Some(model),
            momentum: Some(momentum),
            queue,
            optimizer,
            position: Position::default(),
            seed,
            masking,
            device: device.clone(),
            model_ema,
        }
    }

    /// The plain (non-autodiff) device of the run.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The online model (on the autodiff device; `valid()` gives an
    /// inference copy).
    pub fn model(&self) -> &Albef {
        self.model
            .as_ref()
            .expect("the model is only taken during a step")
    }

    /// The momentum model.
    pub fn momentum(&self) -> &Albef {
        self.momentum
            .as_ref()
            .expect("the momentum model is only taken during a step")
    }

    /// The weights to evaluate: the slow average of the online weights
    /// when the run keeps one ([`PretrainConfig::model_ema_decay`]), else
    /// the online model (plain device).
    pub fn evaluated(&self) -> Albef {
        match &self.model_ema {
            Some(average) => average.clone(),
            None => self.model().valid(),
        }
    }

    /// One training step on `batch`; `steps_per_epoch` drives the warm-up
    /// and the α ramp. Stops with [`TrainError::NonFinite`] on a NaN or
    /// infinite loss, naming the step (the models are then left as they
    /// were before the step).
    pub fn step(
        &mut self,
        batch: &ImageTextBatch,
        steps_per_epoch: usize,
    ) -> Result<StepLosses, TrainError> {
        let model = clamp_temperature(self.model.take().expect("present between steps"));
        // The momentum model follows the online one before its forward pass.
        let previous = self.momentum.take().expect("present between steps");
        let momentum = ema_update(previous.clone(), &model, self.config.momentum);
        match self.forward_backward(&model, &momentum, batch, steps_per_epoch) {
            Ok((report, grads)) => {
                let model = self.optimizer.step(report.lr, model, grads);
                if let (Some(decay), Some(average)) =
                    (self.config.model_ema_decay, self.model_ema.take())
                {
                    let decay = model_ema_decay_at(decay, self.position.step);
                    self.model_ema = Some(ema_update(average, &model, decay));
                }
                self.model = Some(model);
                self.momentum = Some(momentum);
                self.position.advance(steps_per_epoch);
                Ok(report)
            }
            Err(e) => {
                self.model = Some(model);
                self.momentum = Some(previous);
                Err(e)
            }
        }
    }

    /// The losses of a step and their gradients; enqueues the momentum
    /// features. With several [`PretrainConfig::workers`], each computes
    /// its shard of the batch on its own thread and the gradients are
    /// averaged, weighted by shard size.
    fn forward_backward(
        &mut self,
        model: &Albef,
        momentum: &Albef,
        batch: &ImageTextBatch,
        steps_per_epoch: usize,
    ) -> Result<(StepLosses, GradientsParams), TrainError> {
        let Position {
            step,
            epoch,
            step_in_epoch,
        } = self.position;
        let lr = self.config.schedular.lr_at(epoch, step_in_epoch);
        let progress = self.position.progress(steps_per_epoch);
        let context = StepContext {
            queue: &self.queue,
            masking: &self.masking,
            device: &self.device,
            alpha: alpha_at(self.config.alpha, epoch, step_in_epoch, steps_per_epoch),
            hardness: match self.config.itm_hardness_warmup_epochs {
                w if w > 0.0 => (progress / w).min(1.0),
                _ => 1.0,
            },
            threads: self.threads,
            text_groups: self.config.text_length_groups,
        };
        // Every draw of this step (dropout, masking, negatives) is seeded by
        // the step, so a resumed run repeats an uninterrupted one.
        let step_seed = mix(self.seed, step as u64);
        self.device.clone().autodiff().seed(step_seed);
        // A shard needs two samples for an ITM negative.
        let workers = self.config.workers.clamp(1, (batch.len() / 2).max(1));
        let outputs = if workers == 1 {
            vec![shard_forward_backward(
                model, momentum, batch, &context, step_seed,
            )]
        } else {
            let shards = batch.shards(workers);
            // Each worker differentiates its own copy of the parameters (same
            // ids, separate autodiff leaves), so the graphs stay apart.
            let replicas: Vec<Albef> = (1..workers).map(|_| model.valid().train()).collect();
            run_workers(workers, |i| {
                let (copy, seed) = match i {
                    0 => (model, step_seed),
                    _ => (&replicas[i - 1], mix(step_seed, i as u64)),
                };
                shard_forward_backward(copy, momentum, &shards[i], &context, seed)
            })
        };

        let b = batch.len() as f64;
        let mean = |i: usize| -> f32 {
            outputs
                .iter()
                .map(|o| o.losses[i] as f64 * o.samples as f64 / b)
                .sum::<f64>() as f32
        };
        let report = StepLosses {
            loss_mlm: mean(0),
            loss_ita: mean(1),
            loss_itm: mean(2),
            lr,
            alpha: context.alpha,
            temp: model.temp.val().into_scalar::<f32>(),
        };
        if outputs
            .iter()
            .flat_map(|o| o.losses)
            .any(|l| !l.is_finite())
        {
            return Err(TrainError::NonFinite {
                step,
                losses: format!(
                    "loss_mlm {}, loss_ita {}, loss_itm {}",
                    report.loss_mlm, report.loss_ita, report.loss_itm
                ),
            });
        }
        let cat = |f: fn(&ShardOutput) -> &Tensor<2>| {
            Tensor::cat(outputs.iter().map(|o| f(o).clone()).collect(), 0)
        };
        // As the reference gathers every process's momentum features.
        let (image_feat_m, text_feat_m) = (cat(|o| &o.image_feat_m), cat(|o| &o.text_feat_m));
        self.queue.enqueue(image_feat_m, text_feat_m, None);
        let grads = weighted_gradient_sum(
            model,
            outputs
                .into_iter()
                .map(|o| (o.grads, o.samples as f64 / b))
                .collect(),
        );
        Ok((report, grads))
    }

    /// Snapshot of the whole run.
    pub fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        let mut checkpoint = Checkpoint {
            state: serde_json::json!({
                "kind": "albef-pretrain",
                "position": self.position,
                "seed": self.seed,
                "queue_ptr": self.queue.ptr,
                "config": self.config,
            }),
            sections: Vec::new(),
        };
        checkpoint.push("model", module_bytes(&self.model().valid())?);
        checkpoint.push("momentum", module_bytes(self.momentum())?);
        checkpoint.push(
            "optimizer",
            self.optimizer
                .into_bytes()
                .map_err(|e| TrainError::Checkpoint(e.to_string()))?
                .to_vec(),
        );
        checkpoint.push("queue", queue_bytes(&self.queue));
        if let Some(average) = &self.model_ema {
            checkpoint.push(MODEL_EMA, module_bytes(average)?);
        }
        Ok(checkpoint)
    }

    /// Restores a run saved by [`AlbefPretraining::checkpoint`].
    pub fn resume(
        checkpoint: &Checkpoint,
        special: SpecialTokens,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let state = &checkpoint.state;
        let bad = |what: &str| {
            TrainError::Checkpoint(format!("not an ALBEF pretraining checkpoint: {what}"))
        };
        if state["kind"] != "albef-pretrain" {
            return Err(bad("wrong kind"));
        }
        let config: PretrainConfig =
            serde_json::from_value(state["config"].clone()).map_err(|e| bad(&e.to_string()))?;
        let position: Position =
            serde_json::from_value(state["position"].clone()).map_err(|e| bad(&e.to_string()))?;
        let seed = state["seed"].as_u64().ok_or_else(|| bad("no seed"))?;
        let ptr = state["queue_ptr"]
            .as_u64()
            .ok_or_else(|| bad("no queue_ptr"))? as usize;
        let model = load_module_bytes(
            config.model.init(true, device),
            checkpoint.section("model")?,
        )?;
        let momentum = load_module_bytes(
            config.model.init(true, device),
            checkpoint.section("momentum")?,
        )?;
        let model = trainable(model, device);
        let optimizer = adamw(&model, &config.optimizer, SCALARS)
            .from_bytes(Bytes::from_bytes_vec(
                checkpoint.section("optimizer")?.to_vec(),
            ))
            .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        let queue = queue_from_bytes(
            checkpoint.section("queue")?,
            config.model.embed_dim,
            config.queue_size,
            ptr,
            device,
        )?;
        let model_ema = match config.model_ema_decay {
            Some(_) => Some(load_module_bytes(
                config.model.init(true, device),
                checkpoint.section(MODEL_EMA)?,
            )?),
            None => None,
        };
        let masking = masking(&config, special);
        Ok(Self {
            threads: StepThreads::for_config(&config),
            config,
            model: Some(model),
            momentum: Some(momentum),
            queue,
            optimizer,
            position,
            seed,
            masking,
            device: device.clone(),
            model_ema,
        })
    }
}

/// The checkpoint section of [`AlbefPretraining`]'s weight average.
pub const MODEL_EMA: &str = "model_ema";

/// The decay of the weight average's update after `step` steps:
/// `min(decay, (1+step)/(10+step))`.
pub fn model_ema_decay_at(decay: f64, step: usize) -> f64 {
    let t = step as f64;
    decay.min((1.0 + t) / (10.0 + t))
}

/// What every worker of a step reads.
struct StepContext<'a> {
    queue: &'a FeatureQueue,
    masking: &'a MaskingConfig,
    /// The plain device.
    device: &'a Device,
    alpha: f64,
    /// How hard the ITM negatives are, from uniform (0) to the
    /// reference's (1).
    hardness: f64,
    /// How the step fills the cores with one worker (several fill them
    /// themselves).
    threads: StepThreads,
    /// [`PretrainConfig::text_length_groups`].
    text_groups: usize,
}

/// How one worker spreads its step over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepThreads {
    /// Everything on the worker's thread.
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

impl StepThreads {
    fn for_config(config: &PretrainConfig) -> Self {
        let bert = &config.model.bert_config;
        if config.workers > 1 {
            Self::One
        } else if bert.hidden_dropout_prob == 0.0 && bert.attention_probs_dropout_prob == 0.0 {
            Self::SplitBranches
        } else {
            Self::OverlapMomentum
        }
    }
}

/// One worker's share of a step.
struct ShardOutput {
    /// `loss_mlm`, `loss_ita`, `loss_itm`.
    losses: [f32; 3],
    grads: GradientsParams,
    /// Momentum features to enqueue, `[samples, embed_dim]`.
    image_feat_m: Tensor<2>,
    text_feat_m: Tensor<2>,
    samples: usize,
}

/// `a` on a scoped thread beside `b` when `parallel`, else one after the
/// other.
fn join<A: Send, B>(parallel: bool, a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    if !parallel {
        return (a(), b());
    }
    std::thread::scope(|scope| {
        let job = scope.spawn(a);
        let b = b();
        (job.join().expect("a step thread panicked"), b)
    })
}

/// The three losses of ALBEF on `batch` and their gradients: ITC against
/// the batch and the queue, ITM on hard negatives from within the batch,
/// MLM; as one process of the reference computes on its part of a
/// distributed batch.
fn shard_forward_backward(
    model: &Albef,
    momentum: &Albef,
    batch: &ImageTextBatch,
    context: &StepContext,
    seed: u64,
) -> ShardOutput {
    let mut rng = StdRng::seed_from_u64(seed);
    let device = context.device;
    let ad = device.clone().autodiff();
    let batch = &batch.sorted_by_text_length();
    let b = batch.len();
    let s = batch.size;
    let pixels = TensorData::new(batch.pixels.clone(), [b, 3, s, s]);
    let masked = mask_tokens(&batch.text.ids, context.masking, &mut rng);
    let groups = text_groups(&batch.text, &masked, context.text_groups);
    let mlm = MlmInputs {
        groups: &groups,
        targets: &masked.targets,
        alpha: context.alpha,
    };
    let scalar = |loss: &Tensor<1>| loss.clone().without_autodiff().into_scalar::<f32>();

    if context.threads == StepThreads::SplitBranches {
        let replica = model.valid().train();
        let (features_sender, features) = std::sync::mpsc::channel();
        let ((loss_mlm, grads_mlm), (losses, grads, (image_feat_m, text_feat_m))) = join(
            true,
            || {
                let momentum_out = momentum_features(momentum, &groups, pixels.clone(), device);
                let feats = (
                    momentum_out.image_feat.clone(),
                    momentum_out.text_feat.clone(),
                );
                // The ITC branch waits for these; a send fails only if it
                // has panicked, which the scope reports.
                let _ = features_sender.send(feats);
                let soft = momentum_soft_targets(momentum, momentum_out, &mlm, device);
                let image_embeds = replica.image_embeds(Tensor::from_data(pixels.clone(), &ad));
                let loss = mlm_branch(&replica, image_embeds, &mlm, soft, &ad);
                (
                    scalar(&loss),
                    GradientsParams::from_grads(loss.backward(), &replica),
                )
            },
            || {
                let online = online_encoders(model, &groups, pixels.clone(), &ad);
                let feats: (Tensor<2>, Tensor<2>) =
                    features.recv().expect("the momentum pass panicked");
                let (itc, itm) = itc_itm(model, online, &feats.0, &feats.1, context, &mut rng);
                let losses = [scalar(&itc), scalar(&itm)];
                let grads = GradientsParams::from_grads((itc + itm).backward(), model);
                (losses, grads, feats)
            },
        );
        return ShardOutput {
            losses: [loss_mlm, losses[0], losses[1]],
            grads: weighted_gradient_sum(model, vec![(grads, 1.0), (grads_mlm, 1.0)]),
            image_feat_m,
            text_feat_m,
            samples: b,
        };
    }

    // The momentum model's passes need nothing from the online ones.
    let (momentum_out, online) = join(
        context.threads == StepThreads::OverlapMomentum,
        || {
            let out = momentum_features(momentum, &groups, pixels.clone(), device);
            let feats = (out.image_feat.clone(), out.text_feat.clone());
            (feats, momentum_soft_targets(momentum, out, &mlm, device))
        },
        || online_encoders(model, &groups, pixels.clone(), &ad),
    );
    let ((image_feat_m, text_feat_m), soft) = momentum_out;
    let loss_mlm = mlm_branch(model, online.image_embeds.clone(), &mlm, soft, &ad);
    let (itc, itm) = itc_itm(
        model,
        online,
        &image_feat_m,
        &text_feat_m,
        context,
        &mut rng,
    );
    let losses = [scalar(&loss_mlm), scalar(&itc), scalar(&itm)];
    let loss = loss_mlm + itc + itm;
    ShardOutput {
        losses,
        grads: GradientsParams::from_grads(loss.backward(), model),
        image_feat_m,
        text_feat_m,
        samples: b,
    }
}

/// Consecutive rows of a batch sorted by caption length, padded only to
/// their own longest caption. Every text pass of a step runs group by
/// group: captions of the synthetic world average 21 tokens but a batch
/// of 32 pads to 42 on average, and attention masks padding out anyway,
/// so the groups compute what the whole batch would, on fewer tokens.
struct TextGroup {
    /// The group's rows in the batch.
    rows: Range<usize>,
    /// Its captions.
    text: EncodedBatch,
    /// The MLM input: its captions, masked (`[rows, text.len]`).
    masked_ids: TensorData,
    /// Flat indices into `[rows, text.len]` of the masked tokens,
    /// ascending.
    masked_positions: Vec<usize>,
}

/// `text` (sorted by length) and its masking split into `count` groups of
/// consecutive rows (fewer if the batch is smaller).
fn text_groups(text: &EncodedBatch, masked: &MaskedTokens, count: usize) -> Vec<TextGroup> {
    let b = text.batch;
    let count = count.clamp(1, b.max(1));
    (0..count)
        .map(|g| {
            let rows = g * b / count..(g + 1) * b / count;
            let group = text.rows(rows.clone());
            // Only tokens are masked, never padding: every position falls
            // within its row's group length.
            let masked_positions = masked
                .positions
                .iter()
                .map(|&p| (p / text.len, p % text.len))
                .filter(|(row, _)| rows.contains(row))
                .map(|(row, col)| (row - rows.start) * group.len + col)
                .collect();
            // The masked ids cut to the group's width, row by row.
            let masked_ids = rows
                .clone()
                .flat_map(|row| {
                    let start = row * text.len;
                    masked.input_ids[start..start + group.len].iter().copied()
                })
                .collect::<Vec<i64>>();
            TextGroup {
                masked_ids: TensorData::new(masked_ids, [rows.len(), group.len]),
                masked_positions,
                text: group,
                rows,
            }
        })
        .collect()
}

/// The masked captions of a step and what MLM needs besides.
struct MlmInputs<'a> {
    /// The captions by group, with their masked ids and positions.
    groups: &'a [TextGroup],
    /// The original ids at the masked positions, group by group.
    targets: &'a [i64],
    alpha: f64,
}

/// The text encoder's states of one [`TextGroup`].
struct GroupText {
    /// The group's rows in the batch.
    rows: Range<usize>,
    /// `[rows, len, hidden]`.
    embeds: Tensor<3>,
    /// HF-style attention mask `[rows, len]`.
    mask: Tensor<2, Int>,
}

/// The text encoder on each group.
fn encode_text(model: &Albef, groups: &[TextGroup], device: &Device) -> Vec<GroupText> {
    groups
        .iter()
        .map(|group| {
            let (ids, mask) = group.text.to_tensors(device);
            let text = TextInput::new(ids).with_padding(padding_mask(mask.clone()));
            GroupText {
                rows: group.rows.clone(),
                embeds: model.text_embeds(&text),
                mask,
            }
        })
        .collect()
}

/// The contrastive text features of every group, in batch order.
fn text_feat(model: &Albef, texts: &[GroupText]) -> Tensor<2> {
    Tensor::cat(
        texts
            .iter()
            .map(|t| model.text_feat(t.embeds.clone()))
            .collect(),
        0,
    )
}

/// The online encoders' outputs.
struct OnlineEncoders {
    image_embeds: Tensor<3>,
    texts: Vec<GroupText>,
}

/// The online image and text encoders (autodiff device).
fn online_encoders(
    model: &Albef,
    groups: &[TextGroup],
    pixels: TensorData,
    ad: &Device,
) -> OnlineEncoders {
    OnlineEncoders {
        image_embeds: model.image_embeds(Tensor::from_data(pixels, ad)),
        texts: encode_text(model, groups, ad),
    }
}

/// ITC with queues and momentum distillation (eq. 6), then ITM on hard
/// negatives drawn from the in-batch similarities.
fn itc_itm(
    model: &Albef,
    online: OnlineEncoders,
    image_feat_m: &Tensor<2>,
    text_feat_m: &Tensor<2>,
    context: &StepContext,
    rng: &mut StdRng,
) -> (Tensor<1>, Tensor<1>) {
    let device = context.device;
    let OnlineEncoders {
        image_embeds,
        texts,
    } = online;
    let b = image_embeds.dims()[0];
    let image_feat = model.image_feat(image_embeds.clone());
    let text_feat = text_feat(model, &texts);

    let (image_all, text_all) = context
        .queue
        .with_batch(image_feat_m.clone(), text_feat_m.clone());
    let temp = model.temp.val();
    let temp_m = temp.clone().without_autodiff().unsqueeze::<2>();
    let truth = diagonal_targets(b, image_all.dims()[1], device);
    let targets_i2t = distilled_targets(
        image_feat_m.clone().matmul(text_all.clone()) / temp_m.clone(),
        truth.clone(),
        context.alpha,
    );
    let targets_t2i = distilled_targets(
        text_feat_m.clone().matmul(image_all.clone()) / temp_m,
        truth,
        context.alpha,
    );
    let itc = itc_loss(
        image_feat,
        text_feat,
        image_all.autodiff(),
        text_all.autodiff(),
        temp,
        targets_i2t.autodiff(),
        targets_t2i.autodiff(),
    );

    let in_batch = |sim: &Tensor<2>| sim.clone().without_autodiff().slice([0..b, 0..b]);
    let diagonal: Tensor<2, Bool> = same_id(Tensor::arange(0..b as i64, device));
    let negatives = sample_hard_negatives(
        in_batch(&itc.sim_i2t),
        in_batch(&itc.sim_t2i),
        diagonal,
        context.hardness,
        rng,
    );
    let (neg_image, neg_text) = (&negatives.image_for_text, &negatives.text_for_image);
    let ad = image_embeds.device();
    let index = |v: Vec<usize>| {
        let v: Vec<i64> = v.into_iter().map(|i| i as i64).collect();
        Tensor::<1, Int>::from_data(v.as_slice(), &ad)
    };
    // Each fusion pass takes the pairs whose caption lies in one group:
    // its positives, its captions with their hard-negative images, and the
    // images whose hard-negative caption it holds. The loss is a mean over
    // pairs, so only the labels' order matters: positives first, as the
    // reference stacks them.
    let mut positives = Vec::new();
    let mut negative_pairs = Vec::new();
    for text in &texts {
        let group = text.rows.clone();
        let with_negative_text: Vec<usize> =
            (0..b).filter(|&i| group.contains(&neg_text[i])).collect();
        let local = |row: usize| row - group.start;
        let text_rows = group
            .clone()
            .chain(group.clone())
            .chain(with_negative_text.iter().map(|&i| neg_text[i]))
            .map(local)
            .collect();
        let image_rows = group
            .clone()
            .chain(group.clone().map(|t| neg_image[t]))
            .chain(with_negative_text)
            .collect();
        let text_rows = index(text_rows);
        let fused = model.fusion(
            text.embeds.clone().select(0, text_rows.clone()),
            // Rows are picked from the integer mask: burn-flex 0.22.1's
            // `select` on a Bool tensor returns U8 storage (`cat` rejects
            // it).
            Some(padding_mask(text.mask.clone().select(0, text_rows))),
            image_embeds.clone().select(0, index(image_rows)),
        );
        let logits = model.itm_logits(fused);
        let [rows, _] = logits.dims();
        let n = group.len();
        positives.push(logits.clone().slice(0..n));
        negative_pairs.push(logits.slice(n..rows));
    }
    positives.extend(negative_pairs);
    (itc.loss, itm_loss(Tensor::cat(positives, 0)))
}

/// MLM with momentum soft targets (eq. 7), at the masked positions; 0
/// when none is masked.
fn mlm_branch(
    model: &Albef,
    image_embeds: Tensor<3>,
    mlm: &MlmInputs,
    soft_targets: Option<Tensor<2>>,
    ad: &Device,
) -> Tensor<1> {
    let (Some(soft), Some(logits)) = (soft_targets, masked_logits(model, mlm, image_embeds, ad))
    else {
        return Tensor::zeros([1], ad);
    };
    let targets = Tensor::<1, Int>::from_data(mlm.targets, ad);
    mlm_loss(logits, targets, Some(soft.autodiff()), mlm.alpha)
}

/// What the momentum model's encoders compute (plain device, no
/// autodiff).
struct MomentumFeatures {
    image_embeds: Tensor<3>,
    image_feat: Tensor<2>,
    text_feat: Tensor<2>,
}

fn momentum_features(
    momentum: &Albef,
    groups: &[TextGroup],
    pixels: TensorData,
    device: &Device,
) -> MomentumFeatures {
    let image_embeds = momentum.image_embeds(Tensor::from_data(pixels, device));
    MomentumFeatures {
        image_feat: momentum.image_feat(image_embeds.clone()),
        text_feat: text_feat(momentum, &encode_text(momentum, groups, device)),
        image_embeds,
    }
}

/// Softmax of the momentum MLM logits at the masked positions (none
/// masked: `None`).
fn momentum_soft_targets(
    momentum: &Albef,
    features: MomentumFeatures,
    mlm: &MlmInputs,
    device: &Device,
) -> Option<Tensor<2>> {
    masked_logits(momentum, mlm, features.image_embeds, device).map(|l| softmax(l, 1))
}

/// MLM logits `[masked, vocab]` at every group's masked positions, in
/// their order; `None` when no token is masked. A group without one is
/// not run.
fn masked_logits(
    model: &Albef,
    mlm: &MlmInputs,
    image_embeds: Tensor<3>,
    device: &Device,
) -> Option<Tensor<2>> {
    let logits: Vec<Tensor<2>> = mlm
        .groups
        .iter()
        .filter(|group| !group.masked_positions.is_empty())
        .map(|group| {
            let (_, mask) = group.text.to_tensors(device);
            let text = TextInput::new(Tensor::from_data(group.masked_ids.clone(), device))
                .with_padding(padding_mask(mask));
            let hidden = model.multimodal(&text, image_embeds.clone().slice([group.rows.clone()]));
            let [rows, len, h] = hidden.dims();
            let picked: Vec<i64> = group.masked_positions.iter().map(|&p| p as i64).collect();
            let picked = hidden
                .reshape([rows * len, h])
                .select(0, Tensor::<1, Int>::from_data(picked.as_slice(), device))
                .unsqueeze::<3>();
            let logits = model.mlm_logits(picked);
            let [_, m, v] = logits.dims();
            logits.reshape([m, v])
        })
        .collect();
    (!logits.is_empty()).then(|| Tensor::cat(logits, 0))
}

/// `model` (on `device`) switched into training: autodiff on, parameters
/// requiring gradients. burn 0.22's `fork` to `device.autodiff()` is not
/// that: devices compare equal whatever their autodiff flag, so the fork is
/// a no-op and the parameters stay plain.
fn trainable(model: Albef, device: &Device) -> Albef {
    model.to_device(device).train()
}

/// ALBEF clamps the temperature to [0.001, 0.5] (in place, without
/// gradient) at the start of every pretraining forward. The clamped value is
/// a fresh leaf, or it would stop learning.
fn clamp_temperature(mut model: Albef) -> Albef {
    model.temp = model.temp.map(|t| {
        t.without_autodiff()
            .clamp(0.001, 0.5)
            .autodiff()
            .require_grad()
    });
    model
}

fn masking(config: &PretrainConfig, special: SpecialTokens) -> MaskingConfig {
    MaskingConfig {
        probability: config.mlm_probability,
        mask_token_id: special.mask,
        vocab_size: config.model.bert_config.vocab_size,
        never_mask: vec![special.pad, special.cls],
    }
}

fn queue_bytes(queue: &FeatureQueue) -> Vec<u8> {
    let mut bytes = Vec::new();
    for t in [&queue.image, &queue.text] {
        let values = t
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 queue");
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    bytes
}

fn queue_from_bytes(
    bytes: &[u8],
    dim: usize,
    size: usize,
    ptr: usize,
    device: &Device,
) -> Result<FeatureQueue, TrainError> {
    if bytes.len() != 2 * dim * size * 4 {
        return Err(TrainError::Checkpoint(format!(
            "queue section has {} bytes, expected {} for two [{dim}, {size}] queues",
            bytes.len(),
            2 * dim * size * 4
        )));
    }
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let (image, text) = floats.split_at(dim * size);
    let tensor =
        |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [dim, size]), device);
    Ok(FeatureQueue {
        image: tensor(image),
        text: tensor(text),
        ids: None,
        ptr,
    })
}

/// A well-mixed seed for `(seed, step)`: the loader's [`mix_seed`] with
/// its last input 0.
pub fn mix(seed: u64, step: u64) -> u64 {
    mix_seed(seed, step, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;

    #[test]
    fn the_shipped_configs_parse() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
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
    use vl_data::EncodedBatch;
    use vl_models::BertConfig;

    /// `samples` (2 or 4) 16-px images, random ones and their negatives,
    /// with captions of 5, 3, 4 and 2 tokens.
    fn batch(seed: u64, samples: usize) -> ImageTextBatch {
        let mut rng = StdRng::seed_from_u64(seed);
        let pixels: Vec<f32> = (0..samples / 2)
            .flat_map(|_| {
                let image: Vec<f32> = (0..3 * 16 * 16)
                    .map(|_| rand::RngExt::random_range(&mut rng, -1.0..1.0))
                    .collect();
                let negative: Vec<f32> = image.iter().map(|p| -p).collect();
                [image, negative].concat()
            })
            .collect();
        #[rustfmt::skip]
        let (ids, attention_mask) = (
            [2, 7, 8, 9, 10, 2, 11, 12, 0, 0, 2, 13, 14, 15, 0, 2, 16, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0],
        );
        ImageTextBatch {
            pixels,
            size: 16,
            captions: ["a", "b", "c", "d"].map(String::from)[..samples].to_vec(),
            text: EncodedBatch {
                ids: ids[..5 * samples].to_vec(),
                attention_mask: attention_mask[..5 * samples].to_vec(),
                batch: samples,
                len: 5,
            },
            image_ids: (0..samples).collect(),
        }
    }

    fn small_config() -> PretrainConfig {
        let mut config = PretrainConfig::tiny(20);
        config.model = AlbefConfig {
            bert_config: BertConfig {
                vocab_size: 20,
                hidden_size: 16,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                intermediate_size: 32,
                max_position_embeddings: 8,
                fusion_layer: Some(1),
                encoder_width: Some(16),
                ..BertConfig::albef_base()
            },
            image_res: 16,
            patch_size: 8,
            vision_width: 16,
            vision_depth: 1,
            vision_heads: 2,
            embed_dim: 8,
            temp: 0.07,
        };
        // One worker unless a test asks for more (`step_and_learn`).
        config.workers = 1;
        config.queue_size = 6;
        config.mlm_probability = 0.5;
        config.schedular = ScheduleConfig {
            lr: 3e-3,
            warmup_lr: 3e-3,
            min_lr: 3e-3,
            warmup_epochs: 0,
            ..ScheduleConfig::default()
        };
        config
    }

    #[test]
    fn a_step_changes_every_encoder_and_a_fixed_batch_is_learned() {
        step_and_learn(1, 2);
    }

    #[test]
    fn two_data_parallel_workers_learn_and_enqueue_the_whole_batch() {
        // Each worker gets two samples, as the single worker above.
        step_and_learn(2, 4);
    }

    /// Losses of three steps on `batch`, then a ViT and the word-embedding
    /// weights, from seeded initial weights.
    fn three_steps(
        config: &PretrainConfig,
        threads: StepThreads,
        batch: &ImageTextBatch,
    ) -> (Vec<f32>, Tensor<2>, Tensor<2>) {
        let device = Device::flex();
        let special = SpecialTokens {
            pad: 0,
            cls: 2,
            mask: 3,
        };
        device.seed(1);
        let model = config.model.init(true, &device);
        let mut state = AlbefPretraining::new(config.clone(), model, special, 1, &device);
        state.threads = threads;
        let losses: Vec<f32> = (0..3)
            .flat_map(|_| {
                let l = state.step(batch, 1000).unwrap();
                [l.loss_ita, l.loss_itm, l.loss_mlm]
            })
            .collect();
        let vit = state.model().visual_encoder.blocks[0].mlp.fc1.weight.val();
        let words = state
            .model()
            .text_encoder
            .bert
            .embeddings
            .word_embeddings
            .weight
            .val();
        (losses, vit, words)
    }

    fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    fn without_dropout() -> PretrainConfig {
        let mut config = small_config();
        config.model.bert_config.hidden_dropout_prob = 0.0;
        config.model.bert_config.attention_probs_dropout_prob = 0.0;
        config
    }

    #[test]
    fn the_split_branches_step_as_one_thread_does() {
        // MLM on a second thread with its own copy of the parameters: the
        // summed gradients, hence losses and weights, are those of one
        // graph, up to float rounding; the batch of another seed is not.
        let _seeded = crate::seeded_device();
        let config = without_dropout();
        assert_eq!(StepThreads::for_config(&config), StepThreads::SplitBranches);
        let (losses, vit, words) = three_steps(&config, StepThreads::One, &batch(3, 2));
        let (split_losses, split_vit, split_words) =
            three_steps(&config, StepThreads::SplitBranches, &batch(3, 2));
        for (a, b) in losses.iter().zip(&split_losses) {
            assert!((a - b).abs() < 1e-4, "{losses:?} vs {split_losses:?}");
        }
        assert!(max_diff(vit.clone(), split_vit) < 1e-5);
        assert!(max_diff(words.clone(), split_words) < 1e-5);
        let (_, other_vit, _) = three_steps(&config, StepThreads::SplitBranches, &batch(4, 2));
        assert!(max_diff(vit, other_vit) > 1e-4);
    }

    #[test]
    fn length_groups_step_as_the_padded_batch_does() {
        // Captions of 5, 3, 4 and 2 tokens, in one padded group (the
        // reference), two or four: padding is masked out of every pass, so
        // losses and weights agree up to float rounding, on either thread
        // layout.
        let _seeded = crate::seeded_device();
        let mut config = without_dropout();
        let batch = batch(3, 4);
        config.text_length_groups = 1;
        let (losses, vit, words) = three_steps(&config, StepThreads::One, &batch);
        for (groups, threads) in [(2, StepThreads::SplitBranches), (4, StepThreads::One)] {
            config.text_length_groups = groups;
            let (grouped_losses, grouped_vit, grouped_words) =
                three_steps(&config, threads, &batch);
            for (a, b) in losses.iter().zip(&grouped_losses) {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{groups} groups: {losses:?} vs {grouped_losses:?}"
                );
            }
            assert!(max_diff(vit.clone(), grouped_vit) < 1e-5);
            assert!(max_diff(words.clone(), grouped_words) < 1e-5);
        }
    }

    fn step_and_learn(workers: usize, samples: usize) {
        let _seeded = crate::seeded_device();
        let device = Device::flex();
        let config = PretrainConfig {
            workers,
            ..small_config()
        };
        device.seed(1);
        let model = config.model.init(true, &device);
        let special = SpecialTokens {
            pad: 0,
            cls: 2,
            mask: 3,
        };
        let mut state = AlbefPretraining::new(config, model, special, 1, &device);
        let before = state.model().valid();
        let batch = batch(3, samples);
        let ptr = state.queue.ptr;
        let first = state.step(&batch, 1000).unwrap();
        assert_eq!(
            (state.queue.ptr + state.queue.size() - ptr) % state.queue.size(),
            samples,
            "every sample's momentum features are enqueued"
        );
        let after = state.model().valid();
        let changed = |a: Tensor<2>, b: Tensor<2>| (a - b).abs().max().into_scalar::<f32>() > 0.0;
        let layer = |m: &Albef| {
            m.text_encoder.bert.encoder.layer[0]
                .attention
                .query
                .weight
                .val()
        };
        let proj = |m: &Albef| m.text_proj.weight.val();
        let itm = |m: &Albef| m.itm_head.weight.val();
        let fusion = |m: &Albef| m.text_encoder.bert.encoder.layer[1].mlp.fc1.weight.val();
        let words = |m: &Albef| m.text_encoder.bert.embeddings.word_embeddings.weight.val();
        for (name, get) in [
            ("text_proj", proj as fn(&Albef) -> Tensor<2>),
            ("itm_head", itm),
            ("fusion layer", fusion),
            ("word embeddings", words),
            ("text layer", layer),
        ] {
            assert!(changed(get(&before), get(&after)), "{name} did not move");
        }
        let vit = |m: &Albef| m.visual_encoder.blocks[0].mlp.fc1.weight.val();
        assert!(
            changed(vit(&before), vit(&after)),
            "image encoder did not move"
        );
        // The weight average's first update keeps a tenth of the old weights.
        assert_eq!(model_ema_decay_at(0.997, 0), 0.1);
        assert_eq!(model_ema_decay_at(0.997, 100_000), 0.997);
        let average = state.evaluated();
        for get in [itm as fn(&Albef) -> Tensor<2>, vit, words] {
            let expected = get(&before) * 0.1 + get(&after) * 0.9;
            let error = (get(&average) - expected).abs().max().into_scalar::<f32>();
            assert!(error < 1e-6, "weight average off by {error}");
        }
        // ITM stays near ln 2 for ~150 steps before it separates the pairs, and
        // single steps spike: judge the mean of the last 50 of 400 steps.
        let (mut itm_tail, mut mlm_tail) = (0.0, 0.0);
        for i in 0..400 {
            let losses = state.step(&batch, 1000).unwrap();
            if i >= 350 {
                itm_tail += losses.loss_itm / 50.0;
                mlm_tail += losses.loss_mlm / 50.0;
            }
        }
        println!("first {first:?}\nlast 50: itm {itm_tail}, mlm {mlm_tail}");
        assert!(
            itm_tail < 0.5 * first.loss_itm,
            "{first:?} → itm {itm_tail}"
        );
        assert!(
            mlm_tail < 0.5 * first.loss_mlm,
            "{first:?} → mlm {mlm_tail}"
        );
    }
}
