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
//!   `execution.text_length_groups` above 1, every text pass (and so that
//!   call) runs group by group on captions sorted by length, each group
//!   padded to its own longest: the same losses on fewer padded tokens.
//! - The queue accepts any batch size (the reference asserts
//!   `queue_size % batch == 0`).
//! - With `execution.step_threads: split_branches` (no dropout), one
//!   process differentiates MLM on a second thread (after the momentum
//!   pass) beside ITC and ITM, each on its own copy of the parameters, and
//!   adds the two gradients: the summed loss's gradient, on two cores
//!   (the threading itself lives in `step.rs`).

mod saved;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vl_data::{ImageTextBatch, SpecialTokens};
use vl_models::Albef;
use vl_objectives::{FeatureQueue, MaskingConfig, alpha_at, ema_update, fresh_copy};

use crate::TrainError;
use crate::albef::config::PretrainConfig;
use crate::albef::step::{ShardOutput, StepContext, shard_forward_backward};
use crate::runner::checkpoint::{Checkpoint, JobKind};
use crate::runner::data_parallel::{run_workers, weighted_gradient_sum};
use crate::runner::optimizer::adamw;
use crate::runner::seed::derive_seed;
use crate::runner::{Position, StepReport, Trainee};

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

/// What the step trains for.
#[derive(Debug, Clone, PartialEq)]
pub enum Objective {
    /// ALBEF pretraining: ITC, ITM and MLM, each sample its own only
    /// positive, the temperature clamped to [0.001, 0.5].
    Pretraining,
    /// Retrieval fine-tuning (`models/model_retrieval.py`): ITC and ITM
    /// (no MLM: `mlm_probability` 0) with every sample of the same image id
    /// a positive, an id queue beside the feature queues, the temperature
    /// not clamped. `job` is the fine-tuning config its checkpoints record.
    Retrieval {
        /// The job its checkpoints name (retrieval, or grounding, which
        /// trains the same way).
        kind: JobKind,
        /// The job's config, as its checkpoints record it.
        job: serde_json::Value,
    },
}

/// Everything that evolves during pretraining (or retrieval fine-tuning,
/// the same step on other positives).
pub struct AlbefPretraining {
    /// The run's configuration.
    pub config: PretrainConfig,
    /// What it trains for.
    pub objective: Objective,
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
    device: Device,
    /// The slow average of the online weights
    /// ([`crate::albef::RecipeConfig::model_ema_decay`]; plain device).
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
        let model_ema = config.recipe.model_ema_decay.map(|_| fresh_copy(&model));
        let queue = FeatureQueue::new(
            config.model.embed_dim,
            config.queue_size,
            false,
            derive_seed(seed, u64::MAX),
            device,
        );
        let model = trainable(model, device);
        let optimizer = adamw(&model, &config.optimizer, SCALARS);
        let masking = masking(&config, special);
        Self {
            config,
            objective: Objective::Pretraining,
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

    /// Starts retrieval fine-tuning from a pretrained `model` and its
    /// `momentum` copy (the reference loads both), with fresh queues whose
    /// image ids are all −100 (none), without the MLM head.
    pub fn for_retrieval(
        config: PretrainConfig,
        (mut model, mut momentum): (Albef, Albef),
        special: SpecialTokens,
        seed: u64,
        (kind, job): (JobKind, serde_json::Value),
        device: &Device,
    ) -> Self {
        (model.text_encoder.cls, momentum.text_encoder.cls) = (None, None);
        let queue = FeatureQueue::new(
            config.model.embed_dim,
            config.queue_size,
            true,
            derive_seed(seed, u64::MAX),
            device,
        );
        let model = trainable(model, device);
        let optimizer = adamw(&model, &config.optimizer, SCALARS);
        Self {
            masking: masking(&config, special),
            config,
            objective: Objective::Retrieval { kind, job },
            model: Some(model),
            momentum: Some(fresh_copy(&momentum)),
            queue,
            optimizer,
            position: Position::default(),
            seed,
            device: device.clone(),
            model_ema: None,
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
    /// when the run keeps one ([`crate::albef::RecipeConfig::model_ema_decay`]), else
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
        let model = self.model.take().expect("present between steps");
        let model = match self.objective {
            Objective::Pretraining => clamp_temperature(model),
            Objective::Retrieval { .. } => model,
        };
        // The momentum model follows the online one before its forward pass.
        let previous = self.momentum.take().expect("present between steps");
        let momentum = ema_update(previous.clone(), &model, self.config.momentum);
        match self.forward_backward(&model, &momentum, batch, steps_per_epoch) {
            Ok((report, grads)) => {
                let model = self.optimizer.step(report.lr, model, grads);
                if let (Some(decay), Some(average)) =
                    (self.config.recipe.model_ema_decay, self.model_ema.take())
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
            hardness: match self.config.recipe.itm_hardness_warmup_epochs {
                w if w > 0.0 => (progress / w).min(1.0),
                _ => 1.0,
            },
            threads: self.config.execution.step_threads,
            text_groups: self.config.execution.text_length_groups,
            image_id_positives: matches!(self.objective, Objective::Retrieval { .. }),
        };
        // Every draw of this step (dropout, masking, negatives) is seeded by
        // the step, so a resumed run repeats an uninterrupted one.
        let step_seed = derive_seed(self.seed, step as u64);
        self.device.clone().autodiff().seed(step_seed);
        // A shard needs two samples for an ITM negative.
        let workers = self
            .config
            .execution
            .workers
            .clamp(1, (batch.len() / 2).max(1));
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
                    _ => (&replicas[i - 1], derive_seed(step_seed, i as u64)),
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
        let ids: Option<Vec<_>> = outputs.iter().map(|o| o.ids.clone()).collect();
        self.queue.enqueue(
            image_feat_m,
            text_feat_m,
            ids.map(|ids| Tensor::cat(ids, 0)),
        );
        let grads = weighted_gradient_sum(
            model,
            outputs
                .into_iter()
                .map(|o| (o.grads, o.samples as f64 / b))
                .collect(),
        );
        Ok((report, grads))
    }
}

/// The decay of the weight average's update after `step` steps:
/// `min(decay, (1+step)/(10+step))`.
pub fn model_ema_decay_at(decay: f64, step: usize) -> f64 {
    let t = step as f64;
    decay.min((1.0 + t) / (10.0 + t))
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

#[cfg(test)]
mod tests;
