//! The model the warm-up trains (the image encoder with label heads), its
//! loss, its training state as a [`Trainee`] of the shared loop, and its
//! score on held-out images.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use vl_data::ImageBatch;
use vl_data::mix_seed;
use vl_data::transforms::eval_transform;
use vl_data::world::PATCH_LABELS;
use vl_models::Vit;
use vl_models::blocks::first_token;

use super::VisionWarmupConfig;
use super::data::{LabelledBatch, LabelledImages};
use crate::TrainError;
use crate::runner::checkpoint::{Checkpoint, JobKind, RunState};
use crate::runner::data_parallel::{run_workers, weighted_gradient_sum};
use crate::runner::optimizer::{OptimizerConfig, adamw};
use crate::runner::seed::derive_seed;
use crate::runner::{Position, StepReport, Trainee};

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
    /// `visual_encoder` with fresh heads for `labels` labels (and the patch
    /// labels when `token_labels`), drawn from `seed`.
    pub fn new(
        visual_encoder: Vit,
        labels: usize,
        token_labels: bool,
        seed: u64,
        device: &Device,
    ) -> Self {
        let width = visual_encoder.pos_embed.val().dims()[2];
        device.seed(mix_seed(seed, u64::MAX, 7));
        let head = LinearConfig::new(width, labels).init(device);
        let patch_head = token_labels.then(|| LinearConfig::new(width, PATCH_LABELS).init(device));
        Self {
            visual_encoder,
            head,
            patch_head,
        }
    }

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

/// The learning rate at `step` of `total` (see [`VisionWarmupConfig::lr`]).
pub(crate) fn lr_at(
    config: &VisionWarmupConfig,
    step: usize,
    steps_per_epoch: usize,
    total: usize,
) -> f64 {
    let warmup = steps_per_epoch.min(total);
    if step < warmup {
        return config.lr * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    0.5 * config.lr * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// A warm-up in progress: the tagger on the autodiff device, AdamW, where
/// it is; its checkpoints carry the config of the job it opens (`job`),
/// which is what resumes it.
pub struct VisionWarmup {
    model: Option<Tagger>,
    optimizer: ModuleOptimizer,
    position: Position,
    config: VisionWarmupConfig,
    seed: u64,
    job: serde_json::Value,
    device: Device,
}

/// Checkpoint sections of a warm-up.
const MODEL: &str = "model";
const OPTIMIZER: &str = "optimizer";

fn optimizer(model: &Tagger, config: &VisionWarmupConfig) -> ModuleOptimizer {
    let optimizer = OptimizerConfig {
        opt: "adamW".into(),
        lr: config.lr,
        weight_decay: config.weight_decay,
    };
    adamw(model, &optimizer, &[])
}

impl VisionWarmup {
    /// A warm-up of `model` from its first step.
    pub fn new(
        model: Tagger,
        config: VisionWarmupConfig,
        seed: u64,
        job: serde_json::Value,
        device: &Device,
    ) -> Self {
        let model = model.to_device(device).train();
        Self {
            optimizer: optimizer(&model, &config),
            model: Some(model),
            position: Position::default(),
            config,
            seed,
            job,
            device: device.clone(),
        }
    }

    /// The warm-up `checkpoint` holds, into `blank` (a tagger of its shape).
    pub fn resume(
        checkpoint: &Checkpoint,
        blank: Tagger,
        config: VisionWarmupConfig,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let RunState {
            position,
            seed,
            config: job,
            ..
        } = checkpoint.state::<serde_json::Value>(JobKind::AlbefVisionWarmup)?;
        let model = checkpoint.module(MODEL, blank)?.to_device(device).train();
        let optimizer = optimizer(&model, &config).from_bytes(Bytes::from_bytes_vec(
            checkpoint.section(OPTIMIZER)?.to_vec(),
        ))?;
        Ok(Self {
            model: Some(model),
            optimizer,
            position,
            config,
            seed,
            job,
            device: device.clone(),
        })
    }

    /// The seed of the warm-up's draws.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The tagger for inference.
    pub fn model(&self) -> Tagger {
        self.model.as_ref().expect("present between steps").valid()
    }
}

impl Trainee for VisionWarmup {
    type Batch = LabelledBatch;

    fn position(&self) -> Position {
        self.position
    }

    fn step(
        &mut self,
        batch: &LabelledBatch,
        steps_per_epoch: usize,
    ) -> Result<StepReport, TrainError> {
        let step = self.position.step;
        let ad = self.device.clone().autodiff();
        ad.seed(derive_seed(self.seed, step as u64));
        let model = self.model.as_ref().expect("present between steps");
        let n = batch.images.len();
        // Each worker differentiates its own copy of the parameters (same
        // ids, separate autodiff leaves).
        let per_worker = n.div_ceil(self.config.workers.clamp(1, n.max(1)));
        let shards: Vec<Vec<usize>> = (0..n)
            .collect::<Vec<_>>()
            .chunks(per_worker)
            .map(<[usize]>::to_vec)
            .collect();
        let replicas: Vec<Tagger> = (1..shards.len()).map(|_| model.valid().train()).collect();
        let token_labels = self.config.token_labels;
        let parts = run_workers(shards.len(), |k| {
            let copy = if k == 0 { model } else { &replicas[k - 1] };
            let (loss, grads) = shard_loss(copy, batch, &shards[k], token_labels, &ad);
            (loss, grads, shards[k].len() as f64 / n as f64)
        });
        let value = parts.iter().map(|(loss, _, w)| loss * *w as f32).sum();
        let lr = lr_at(
            &self.config,
            step,
            steps_per_epoch,
            steps_per_epoch * self.config.epochs,
        );
        let report = StepReport {
            losses: vec![("loss_warmup", value)],
            settings: vec![("lr", lr)],
        };
        report.check_finite(step)?;
        let grads = weighted_gradient_sum(
            model,
            parts.into_iter().map(|(_, grads, w)| (grads, w)).collect(),
        );
        let model = self.model.take().expect("present between steps");
        self.model = Some(self.optimizer.step(lr, model, grads));
        self.position.advance(steps_per_epoch);
        Ok(report)
    }

    fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        let mut checkpoint = Checkpoint::new(RunState {
            kind: JobKind::AlbefVisionWarmup,
            position: self.position,
            seed: self.seed,
            config: &self.job,
        })?;
        checkpoint.push_module(MODEL, &self.model())?;
        checkpoint.push(OPTIMIZER, self.optimizer.into_bytes()?.to_vec());
        Ok(checkpoint)
    }
}

/// The mean loss of `model` on the batch's `rows` and its gradients.
fn shard_loss(
    model: &Tagger,
    batch: &LabelledBatch,
    rows: &[usize],
    token_labels: f64,
    device: &Device,
) -> (f32, GradientsParams) {
    let (n, labels) = (rows.len(), batch.label_count);
    let targets: Vec<f32> = rows
        .iter()
        .flat_map(|&row| &batch.labels[row * labels..(row + 1) * labels])
        .copied()
        .collect();
    let targets = Tensor::<2>::from_data(TensorData::new(targets, [n, labels]), device);
    let (logits, patch_logits) = model.forward(batch.images.select(rows).to_tensor(device));
    let mut loss = multi_label_bce(logits, targets);
    if let Some(patch_logits) = patch_logits {
        let [_, patches, patch_labels] = patch_logits.dims();
        let per_image = patches * patch_labels;
        let patch_targets: Vec<f32> = rows
            .iter()
            .flat_map(|&row| &batch.patch_labels[row * per_image..(row + 1) * per_image])
            .copied()
            .collect();
        let patch_targets = Tensor::<2>::from_data(
            TensorData::new(patch_targets, [n * patches, patch_labels]),
            device,
        );
        let patch_logits = patch_logits.reshape([n * patches, patch_labels]);
        loss = loss + multi_label_bce(patch_logits, patch_targets) * token_labels;
    }
    let value = loss.clone().without_autodiff().into_scalar::<f32>();
    (value, GradientsParams::from_grads(loss.backward(), model))
}

/// Micro-F1 and exact-match rate of the labels `model` predicts (logit >
/// 0) for `set`, on eval-transformed images.
pub(crate) fn score(
    model: &Tagger,
    set: &LabelledImages,
    image_size: u32,
    device: &Device,
) -> (f64, f64) {
    let labels = set.label_count();
    let (mut tp, mut fp, mut fn_, mut exact) = (0usize, 0usize, 0usize, 0usize);
    for start in (0..set.len()).step_by(256) {
        let rows = start..(start + 256).min(set.len());
        let mut images = ImageBatch::new(image_size as usize);
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
