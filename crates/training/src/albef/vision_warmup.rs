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

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use vl_data::ImageBatch;
use vl_data::loader::load_rgb;
use vl_data::mix_seed;
use vl_data::transforms::{AugmentConfig, eval_transform, train_transform};
use vl_data::world::{
    PATCH_LABELS, Scene, attribute_labels, labelled_scenes, patch_labels, read_world, render_scene,
};
use vl_models::Vit;
use vl_models::blocks::first_token;

use crate::TrainError;
use crate::config::{Checks, InvalidValue};
use crate::runner::StepReport;
use crate::runner::data_parallel::{run_workers, weighted_gradient_sum};
use crate::runner::optimizer::{OptimizerConfig, adamw};
use crate::runner::progress;

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

/// Images with multi-hot labels.
#[derive(Debug, Clone, Default)]
pub struct LabelledImages {
    /// Decoded images.
    pub images: Vec<RgbImage>,
    /// One multi-hot row per image, all of one length.
    pub labels: Vec<Vec<f32>>,
    /// Per image, the patches' multi-hot rows back to back
    /// ([`vl_data::world::patch_labels`]), or empty.
    pub patch_labels: Vec<Vec<f32>>,
}

impl LabelledImages {
    /// The images of `scenes` (read from the world directory `dir`),
    /// labelled by [`vl_data::world::attribute_labels`].
    pub fn from_scenes<'a>(
        dir: &Path,
        scenes: impl IntoIterator<Item = &'a Scene>,
    ) -> Result<Self, TrainError> {
        let scenes: Vec<&Scene> = scenes.into_iter().collect();
        let images = scenes
            .par_iter()
            .map(|scene| load_rgb(&dir.join(&scene.image)))
            .collect::<Result<_, _>>()?;
        let labels = scenes.iter().map(|scene| attribute_labels(scene)).collect();
        Ok(Self {
            images,
            labels,
            patch_labels: Vec::new(),
        })
    }

    /// `scenes` rendered in memory at `side` pixels (on every core), with
    /// their labels, and their patch labels when `patch` is given.
    pub fn rendered(scenes: &[Scene], side: u32, patch: Option<u32>) -> Self {
        Self {
            images: scenes
                .par_iter()
                .map(|scene| render_scene(scene, side))
                .collect(),
            labels: scenes.iter().map(attribute_labels).collect(),
            patch_labels: Vec::new(),
        }
        .with_patch_labels(scenes, side, patch)
    }

    /// With the patch labels of `scenes` (these images', in order, at
    /// `side` pixels) for `patch`-pixel patches, when `patch` is given.
    pub fn with_patch_labels<'a>(
        mut self,
        scenes: impl IntoIterator<Item = &'a Scene>,
        side: u32,
        patch: Option<u32>,
    ) -> Self {
        if let Some(patch) = patch {
            self.patch_labels = scenes
                .into_iter()
                .map(|scene| patch_labels(scene, side, patch))
                .collect();
        }
        self
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    fn label_count(&self) -> usize {
        self.labels.first().map_or(0, Vec::len)
    }
}

/// What a warm-up trains on, and the images that only score it.
#[derive(Debug, Clone, Default)]
pub struct WarmupData {
    /// Training images.
    pub train: LabelledImages,
    /// Held-out images, scored after training when not empty.
    pub held_out: LabelledImages,
}

impl WarmupData {
    /// What `config` trains on for the synthetic world in `dir`:
    /// `config.images` labelled images drawn apart from it, or its training
    /// split when that is 0; held out by its validation split. With
    /// `config.token_labels`, the training images carry patch labels for
    /// `patch_size`-pixel patches.
    pub fn from_world(
        dir: &Path,
        config: &VisionWarmupConfig,
        patch_size: u32,
    ) -> Result<Self, TrainError> {
        let world = read_world(dir)?;
        let split =
            |name: &'static str| world.scenes.iter().filter(move |scene| scene.split == name);
        let (side, patch) = (
            world.config.image_size,
            (config.token_labels > 0.0).then_some(patch_size),
        );
        let train = if config.images > 0 {
            LabelledImages::rendered(&labelled_scenes(&world.config, config.images), side, patch)
        } else {
            LabelledImages::from_scenes(dir, split("train"))?.with_patch_labels(
                split("train"),
                side,
                patch,
            )
        };
        Ok(Self {
            train,
            held_out: LabelledImages::from_scenes(dir, split("val"))?,
        })
    }
}

/// The image encoder with a linear multi-label head on `[CLS]`.
#[derive(Module, Debug)]
pub struct Tagger {
    /// The encoder being warmed (ALBEF's field name).
    pub visual_encoder: Vit,
    /// One logit per label; dropped afterwards.
    pub head: Linear,
    /// One logit per patch label on every patch token, when token
    /// labelling is on; dropped afterwards.
    pub patch_head: Option<Linear>,
}

impl Tagger {
    /// Label logits `[batch, labels]` of normalised pixels, and with a
    /// patch head the patch tokens' logits `[batch, patches, patch
    /// labels]`.
    pub fn forward(&self, pixels: Tensor<4>) -> (Tensor<2>, Option<Tensor<3>>) {
        let tokens = self.visual_encoder.forward(pixels);
        let [batch, length, width] = tokens.dims();
        let patches = self
            .patch_head
            .as_ref()
            .map(|head| head.forward(tokens.clone().slice([0..batch, 1..length, 0..width])));
        (self.head.forward(first_token(tokens)), patches)
    }
}

/// Mean binary cross-entropy of `logits` against multi-hot `targets` (both
/// `[batch, labels]`), PyTorch's `binary_cross_entropy_with_logits` in its
/// stable form `max(x, 0) − x·y + log(1 + e^{−|x|})`.
pub fn multi_label_bce(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let softplus_neg_abs = logits.clone().abs().neg().exp().log1p();
    (logits.clone().clamp_min(0.0) - logits * targets + softplus_neg_abs).mean()
}

/// What the warm-up did and how well the encoder then labels held-out
/// images.
#[derive(Debug, Clone, Serialize)]
pub struct WarmupReport {
    /// Optimiser steps.
    pub steps: usize,
    /// Wall time.
    pub seconds: f64,
    /// Loss of the first and the last step.
    pub first_loss: f32,
    /// See `first_loss`.
    pub last_loss: f32,
    /// Micro-averaged F1 of the labels predicted (logit > 0) on the
    /// held-out images, if any were given.
    pub held_out_f1: Option<f64>,
    /// Fraction of held-out images whose labels are all predicted exactly.
    pub held_out_exact: Option<f64>,
}

/// The learning rate at `step` of `total` (see [`VisionWarmupConfig::lr`]).
fn lr_at(config: &VisionWarmupConfig, step: usize, steps_per_epoch: usize, total: usize) -> f64 {
    let warmup = steps_per_epoch.min(total);
    if step < warmup {
        return config.lr * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    0.5 * config.lr * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Trains `visual_encoder` with a fresh head on `data.train` and returns
/// it with a report; scores it on `data.held_out` when that is not empty.
/// Seeded: the same inputs and seed give the same encoder on the CPU.
pub fn warm_up_vision(
    visual_encoder: Vit,
    data: &WarmupData,
    config: &VisionWarmupConfig,
    image_size: u32,
    augment: &AugmentConfig,
    seed: u64,
    device: &Device,
) -> Result<(Vit, WarmupReport), TrainError> {
    let train = &data.train;
    let batch = config.batch_size.min(train.len());
    if batch == 0 || train.label_count() == 0 {
        return Err(TrainError::InvalidConfig(vec![InvalidValue {
            key: "recipe.vision_warmup".into(),
            message: "no labelled images to warm the image encoder on".into(),
        }]));
    }
    let labels = train.label_count();
    let steps_per_epoch = train.len() / batch;
    let total = steps_per_epoch * config.epochs;
    let width = visual_encoder.pos_embed.val().dims()[2];
    device.seed(mix_seed(seed, u64::MAX, 7));
    let head = LinearConfig::new(width, labels).init(device);
    let dense = config.token_labels > 0.0;
    if dense && train.patch_labels.len() != train.len() {
        return Err(TrainError::InvalidConfig(vec![InvalidValue {
            key: "recipe.vision_warmup.token_labels".into(),
            message: "the training images carry no patch labels".into(),
        }]));
    }
    let patch_head = dense.then(|| LinearConfig::new(width, PATCH_LABELS).init(device));
    let ad = device.clone().autodiff();
    let mut model = Tagger {
        visual_encoder,
        head,
        patch_head,
    }
    .to_device(device)
    .train();
    let mut optimizer = adamw(
        &model,
        &OptimizerConfig {
            opt: "adamW".into(),
            lr: config.lr,
            weight_decay: config.weight_decay,
        },
        &[],
    );
    let bar = progress::bar(total as u64, "vision warm-up");
    let start = Instant::now();
    let (mut first_loss, mut last_loss) = (f32::NAN, f32::NAN);
    let workers = config.workers.clamp(1, batch);
    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 0..config.epochs {
        order.shuffle(&mut StdRng::seed_from_u64(mix_seed(seed, epoch as u64, 1)));
        for (i, rows) in order.chunks_exact(batch).enumerate() {
            let step = epoch * steps_per_epoch + i;
            let shard = |model: &Tagger, first: usize, rows: &[usize]| {
                let (loss, grads) = shard_loss(
                    model,
                    train,
                    rows,
                    &Batch {
                        step,
                        first,
                        image_size,
                        augment,
                        token_labels: config.token_labels,
                        seed,
                        device: &ad,
                    },
                );
                (loss, grads, rows.len() as f64 / batch as f64)
            };
            // Each worker differentiates its own copy of the parameters
            // (same ids, separate autodiff leaves).
            let per_worker = batch.div_ceil(workers);
            let shard_rows: Vec<&[usize]> = rows.chunks(per_worker).collect();
            let replicas: Vec<Tagger> = (1..shard_rows.len())
                .map(|_| model.valid().train())
                .collect();
            let parts = run_workers(shard_rows.len(), |k| {
                let copy = if k == 0 { &model } else { &replicas[k - 1] };
                shard(copy, k * per_worker, shard_rows[k])
            });
            let value = parts
                .iter()
                .map(|(loss, _, w)| loss * *w as f32)
                .sum::<f32>();
            StepReport {
                losses: vec![("loss_warmup", value)],
                settings: Vec::new(),
            }
            .check_finite(step)?;
            if step == 0 {
                first_loss = value;
            }
            last_loss = value;
            let lr = lr_at(config, step, steps_per_epoch, total);
            let grads = weighted_gradient_sum(
                &model,
                parts.into_iter().map(|(_, grads, w)| (grads, w)).collect(),
            );
            model = optimizer.step(lr, model, grads);
            bar.inc(1);
            bar.set_message(format!("loss {value:.4}"));
        }
    }
    bar.finish_and_clear();
    let model = model.valid();
    let (held_out_f1, held_out_exact) = if data.held_out.is_empty() {
        (None, None)
    } else {
        let (f1, exact) = score(&model, &data.held_out, image_size, device);
        (Some(f1), Some(exact))
    };
    let report = WarmupReport {
        steps: total,
        seconds: start.elapsed().as_secs_f64(),
        first_loss,
        last_loss,
        held_out_f1,
        held_out_exact,
    };
    Ok((model.visual_encoder, report))
}

/// Where a shard of a warm-up batch sits and what its images need.
struct Batch<'a> {
    step: usize,
    /// Index of the shard's first row in the whole batch (seeds its crops).
    first: usize,
    image_size: u32,
    augment: &'a AugmentConfig,
    token_labels: f64,
    seed: u64,
    /// The autodiff device.
    device: &'a Device,
}

/// The mean loss of `model` on the training images `rows` and its
/// gradients.
fn shard_loss(
    model: &Tagger,
    train: &LabelledImages,
    rows: &[usize],
    at: &Batch,
) -> (f32, GradientsParams) {
    let (size, n, labels) = (at.image_size as usize, rows.len(), train.label_count());
    let dense = at.token_labels > 0.0;
    let mut images = ImageBatch::new(size);
    let mut targets = Vec::with_capacity(n * labels);
    let mut patch_targets = Vec::new();
    for (j, &row) in rows.iter().enumerate() {
        let image = if dense {
            patch_targets.extend_from_slice(&train.patch_labels[row]);
            eval_transform(&train.images[row], at.image_size)
        } else {
            let purpose = 2 + (at.first + j) as u64;
            let mut rng = StdRng::seed_from_u64(mix_seed(at.seed, at.step as u64, purpose));
            train_transform(&train.images[row], at.image_size, at.augment, &mut rng)
        };
        images.push(&image);
        targets.extend_from_slice(&train.labels[row]);
    }
    let pixels = images.to_tensor(at.device);
    let targets = Tensor::<2>::from_data(TensorData::new(targets, [n, labels]), at.device);
    let (logits, patch_logits) = model.forward(pixels);
    let mut loss = multi_label_bce(logits, targets);
    if let Some(patch_logits) = patch_logits {
        let [_, patches, patch_labels] = patch_logits.dims();
        let patch_targets = Tensor::<2>::from_data(
            TensorData::new(patch_targets, [n * patches, patch_labels]),
            at.device,
        );
        let patch_logits = patch_logits.reshape([n * patches, patch_labels]);
        loss = loss + multi_label_bce(patch_logits, patch_targets) * at.token_labels;
    }
    let value = loss.clone().without_autodiff().into_scalar::<f32>();
    (value, GradientsParams::from_grads(loss.backward(), model))
}

/// Micro-F1 and exact-match rate of the labels `model` predicts (logit >
/// 0) for `set`, on eval-transformed images.
fn score(model: &Tagger, set: &LabelledImages, image_size: u32, device: &Device) -> (f64, f64) {
    let size = image_size as usize;
    let labels = set.label_count();
    let (mut tp, mut fp, mut fn_, mut exact) = (0usize, 0usize, 0usize, 0usize);
    for start in (0..set.len()).step_by(256) {
        let rows = start..(start + 256).min(set.len());
        let mut images = ImageBatch::new(size);
        for row in rows.clone() {
            images.push(&eval_transform(&set.images[row], image_size));
        }
        let logits = model.forward(images.to_tensor(device)).0.into_data();
        let logits = logits.as_slice::<f32>().expect("f32 logits");
        for (k, row) in rows.enumerate() {
            let mut all_right = true;
            for (logit, &truth) in logits[k * labels..(k + 1) * labels]
                .iter()
                .zip(&set.labels[row])
            {
                match (*logit > 0.0, truth > 0.5) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fn_ += 1,
                    (false, false) => {}
                }
                all_right &= (*logit > 0.0) == (truth > 0.5);
            }
            exact += usize::from(all_right);
        }
    }
    let f1 = 2.0 * tp as f64 / (2 * tp + fp + fn_).max(1) as f64;
    (f1, exact as f64 / set.len() as f64)
}

#[cfg(test)]
#[path = "vision_warmup_tests.rs"]
mod tests;
