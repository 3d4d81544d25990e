//! Supervised warm-up of ALBEF's image encoder on labelled images: what
//! the reference's DeiT initialisation is to ALBEF.
//!
//! ALBEF does not pretrain its ViT from scratch: `models/model_pretrain.py`
//! of salesforce/ALBEF loads `deit_base_patch16_224`, a ViT trained to
//! classify ImageNet (Touvron et al. 2021), before any image–text step.
//! There is no ImageNet for the tiny model of the synthetic world, but the
//! world records what every image shows, so labelled images drawn from its
//! generator apart from the world (or its training split) play that
//! part: the image encoder and a linear head on its `[CLS]` output learn
//! each image's attribute labels ([`vl_data::world::attribute_labels`])
//! with a multi-label binary cross-entropy, and pretraining then starts
//! from the warmed encoder, the head dropped as DeiT's is. Validation or
//! test images are never trained on; the validation split only scores the
//! result.
//!
//! The warm-up is a [`Trainee`] of the shared loop: it checkpoints every
//! epoch (`vision_warmup.ckpt` beside the run's checkpoint, carrying the
//! pretraining config) and resumes where it stopped.

mod data;
mod tagger;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use vl_data::transforms::AugmentConfig;
use vl_models::Vit;

use crate::TrainError;
use crate::config::{Checks, InvalidValue};
use crate::runner::checkpoint::Checkpoint;
use crate::runner::{Batches, RunPaths, StopAt, Trainee, train};
pub use data::{LabelledBatch, LabelledImages, WarmupBatches, WarmupData};
pub use tagger::{Tagger, VisionWarmup, multi_label_bce};

/// The `vision_warmup` section of a pretraining config (not a reference
/// key: the reference starts from DeiT weights instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionWarmupConfig {
    /// Labelled images drawn apart from the world by its own generator
    /// ([`vl_data::world::labelled_scenes`]) and rendered in memory, the
    /// corpus the warm-up trains on; 0 trains on the world's training split
    /// instead.
    pub images: usize,
    /// Passes over the labelled training images.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate: linear warm-up over the first epoch, then a
    /// cosine to 0 over the rest (DeiT's shape, in steps).
    pub lr: f64,
    /// AdamW weight decay (DeiT's 0.05).
    pub weight_decay: f64,
    /// Weight of the token-labelling loss (Jiang et al. 2021): every patch
    /// token also learns the objects it shows
    /// ([`vl_data::world::patch_labels`]) through a second linear head,
    /// so the tokens the fusion encoder attends to are trained, not only
    /// `[CLS]`. 0 turns it off; with it on, images are not cropped (the
    /// labels need the patch grid in place).
    pub token_labels: f64,
    /// Data-parallel worker threads that split each batch
    /// ([`crate::data_parallel`]): the tiny encoder's kernels are too small
    /// to fill two cores from one thread. The result does not depend on
    /// it beyond float rounding.
    pub workers: usize,
}

impl Default for VisionWarmupConfig {
    /// What the `tiny` preset uses: on the world's own
    /// 5500 training images its 2-layer ViT labelled held-out images with
    /// F1 0.43 after 60 epochs and overfitted; on 50 000 images drawn apart
    /// it reached 0.53 after 10 epochs, 0.58 with token labelling, and
    /// 0.64 after 14 with it.
    fn default() -> Self {
        Self {
            images: 50_000,
            epochs: 14,
            batch_size: 64,
            lr: 3e-3,
            weight_decay: 0.05,
            token_labels: 0.5,
            workers: 2,
        }
    }
}

impl VisionWarmupConfig {
    /// Records the values that cannot be right, under `key`.
    pub fn check(&self, c: &mut Checks, key: &str) {
        let at = |field: &str| format!("{key}.{field}");
        c.positive(self.epochs, &at("epochs"));
        c.positive(self.batch_size, &at("batch_size"));
        c.positive(self.workers, &at("workers"));
        c.require(
            self.lr.is_finite() && self.lr > 0.0,
            &at("lr"),
            "must be positive",
        );
        c.require(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            &at("weight_decay"),
            "must be 0 or more",
        );
        c.require(
            self.token_labels.is_finite() && self.token_labels >= 0.0,
            &at("token_labels"),
            "must be 0 or more",
        );
    }
}

/// What the warm-up did and how well the encoder then labels held-out
/// images.
#[derive(Debug, Clone, Serialize)]
pub struct WarmupReport {
    /// Optimiser steps in all.
    pub steps: usize,
    /// Wall time of this invocation.
    pub seconds: f64,
    /// Loss of this invocation's first step and of the last step.
    pub first_loss: f32,
    /// See `first_loss`.
    pub last_loss: f32,
    /// Micro-averaged F1 of the labels predicted (logit > 0) on the
    /// held-out images, if any were given.
    pub held_out_f1: Option<f64>,
    /// Fraction of held-out images whose labels are all predicted exactly.
    pub held_out_exact: Option<f64>,
}

/// A warm-up to run: its data, recipe and seed, and the config of the job
/// it opens (recorded in its checkpoints, which a resume reads back).
pub struct WarmupRun<'a> {
    /// The labelled images.
    pub data: &'a WarmupData,
    /// The recipe.
    pub config: &'a VisionWarmupConfig,
    /// Side of the encoder's input images.
    pub image_size: u32,
    /// The random crops (unused with token labels).
    pub augment: &'a AugmentConfig,
    /// Seed of the heads, the shuffles and the crops.
    pub seed: u64,
    /// The job's config, as its checkpoints record it.
    pub job: serde_json::Value,
    /// Where the checkpoint, metrics and loss plot go.
    pub paths: RunPaths,
    /// Stop (with a checkpoint) after this many steps in all, if set.
    pub max_steps: Option<usize>,
}

/// Trains `visual_encoder` with fresh heads on `run.data.train` (or
/// continues the warm-up `resume` holds, its weights replacing
/// `visual_encoder`'s) and returns it with a report; scores it on
/// `run.data.held_out` when that is not empty. Seeded: the same inputs and
/// seed give the same encoder on the CPU, resumed or not.
pub fn warm_up_vision(
    visual_encoder: Vit,
    resume: Option<&Checkpoint>,
    run: &WarmupRun,
    device: &Device,
) -> Result<(Vit, WarmupReport), TrainError> {
    let (train_set, config) = (&run.data.train, run.config);
    let batch_size = config.batch_size.min(train_set.len());
    if batch_size == 0 || train_set.label_count() == 0 {
        return Err(invalid(
            "recipe.vision_warmup",
            "no labelled images to warm the image encoder on",
        ));
    }
    let token_labels = config.token_labels > 0.0;
    if token_labels && train_set.patch_labels.len() != train_set.len() {
        return Err(invalid(
            "recipe.vision_warmup.token_labels",
            "the training images carry no patch labels",
        ));
    }
    let tagger = Tagger::new(
        visual_encoder,
        train_set.label_count(),
        token_labels,
        run.seed,
        device,
    );
    let mut state = match resume {
        Some(checkpoint) => VisionWarmup::resume(checkpoint, tagger, config.clone(), device)?,
        None => VisionWarmup::new(tagger, config.clone(), run.seed, run.job.clone(), device),
    };
    let batches = WarmupBatches {
        train: train_set,
        batch_size,
        image_size: run.image_size,
        augment: run.augment,
        token_labels,
        seed: state.seed(),
    };
    let stop = StopAt {
        epochs: config.epochs,
        max_steps: run.max_steps,
    };
    let summary = train(&mut state, &batches, &run.paths, stop, "vision warm-up")?;
    let model = state.model();
    let (held_out_f1, held_out_exact) = match run.data.held_out.is_empty() {
        true => (None, None),
        false => {
            let (f1, exact) = tagger::score(&model, &run.data.held_out, run.image_size, device);
            (Some(f1), Some(exact))
        }
    };
    let loss = |report: &Option<crate::runner::StepReport>| {
        report.as_ref().map_or(f32::NAN, |r| r.total())
    };
    let report = WarmupReport {
        steps: state
            .position()
            .step
            .min(batches.steps_per_epoch() * config.epochs),
        seconds: summary.seconds,
        first_loss: loss(&summary.first),
        last_loss: loss(&summary.last),
        held_out_f1,
        held_out_exact,
    };
    Ok((model.visual_encoder, report))
}

fn invalid(key: &str, message: &str) -> TrainError {
    TrainError::InvalidConfig(vec![InvalidValue {
        key: key.into(),
        message: message.into(),
    }])
}

#[cfg(test)]
mod tests;
