//! Supervised warm-up of ALBEF's image encoder on labelled images: what
//! the reference's DeiT initialisation is to ALBEF.
//!
//! ALBEF does not pretrain its ViT from scratch: `models/model_pretrain.py`
//! of salesforce/ALBEF loads `deit_base_patch16_224`, a ViT trained to
//! classify ImageNet (Touvron et al. 2021), before any image–text step.
//! There is no ImageNet for the tiny model of the synthetic world, but the
//! world records what every image shows, so its training split plays that
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
use vl_data::loader::load_rgb;
use vl_data::mix_seed;
use vl_data::transforms::{AugmentConfig, eval_transform, to_normalized_chw, train_transform};
use vl_data::world::{Scene, attribute_labels, read_scenes};
use vl_models::Vit;
use vl_models::blocks::first_token;

use crate::TrainError;
use crate::optimizer::{OptimizerConfig, adamw};
use crate::progress;
use crate::runner::StepReport;

/// The `vision_warmup` section of a pretraining config (not a reference
/// key: the reference starts from DeiT weights instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionWarmupConfig {
    /// Passes over the labelled training images.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate: linear warm-up over the first epoch, then a
    /// cosine to 0 over the rest (DeiT's shape, in steps).
    pub lr: f64,
    /// AdamW weight decay (DeiT's 0.05).
    pub weight_decay: f64,
}

impl Default for VisionWarmupConfig {
    /// What the `tiny` preset uses (docs/results.md): its 2-layer ViT labels
    /// held-out images with F1 0.19 after 20 epochs at lr 3e-3, 0.43 after
    /// 60 (0.15 at 1e-3, 0.06 at 3e-4).
    fn default() -> Self {
        Self {
            epochs: 60,
            batch_size: 64,
            lr: 3e-3,
            weight_decay: 0.05,
        }
    }
}

/// Images with multi-hot labels.
#[derive(Debug, Clone, Default)]
pub struct LabelledImages {
    /// Decoded images.
    pub images: Vec<RgbImage>,
    /// One multi-hot row per image, all of one length.
    pub labels: Vec<Vec<f32>>,
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
        Ok(Self { images, labels })
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
    /// The training split of a synthetic world directory, held out by its
    /// validation split (`world.json` read once).
    pub fn from_world(dir: &Path) -> Result<Self, TrainError> {
        let scenes = read_scenes(dir)?;
        let split = |name: &'static str| scenes.iter().filter(move |scene| scene.split == name);
        Ok(Self {
            train: LabelledImages::from_scenes(dir, split("train"))?,
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
}

impl Tagger {
    /// Label logits `[batch, labels]` of normalised pixels.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.head
            .forward(first_token(self.visual_encoder.forward(pixels)))
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
        return Err(TrainError::Config {
            path: "vision_warmup".into(),
            message: "no labelled images to warm the image encoder on".into(),
        });
    }
    let labels = train.label_count();
    let steps_per_epoch = train.len() / batch;
    let total = steps_per_epoch * config.epochs;
    let width = visual_encoder.pos_embed.val().dims()[2];
    device.seed(mix_seed(seed, u64::MAX, 7));
    let head = LinearConfig::new(width, labels).init(device);
    let ad = device.clone().autodiff();
    let mut model = Tagger {
        visual_encoder,
        head,
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
    let size = image_size as usize;
    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 0..config.epochs {
        order.shuffle(&mut StdRng::seed_from_u64(mix_seed(seed, epoch as u64, 1)));
        for (i, rows) in order.chunks_exact(batch).enumerate() {
            let step = epoch * steps_per_epoch + i;
            let mut pixels = Vec::with_capacity(batch * 3 * size * size);
            let mut targets = Vec::with_capacity(batch * labels);
            for (j, &row) in rows.iter().enumerate() {
                let mut rng = StdRng::seed_from_u64(mix_seed(seed, step as u64, 2 + j as u64));
                let image = train_transform(&train.images[row], image_size, augment, &mut rng);
                to_normalized_chw(&image, &mut pixels);
                targets.extend_from_slice(&train.labels[row]);
            }
            let pixels =
                Tensor::<4>::from_data(TensorData::new(pixels, [batch, 3, size, size]), &ad);
            let targets = Tensor::<2>::from_data(TensorData::new(targets, [batch, labels]), &ad);
            let loss = multi_label_bce(model.forward(pixels), targets);
            let value = loss.clone().without_autodiff().into_scalar::<f32>();
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
            let grads = GradientsParams::from_grads(loss.backward(), &model);
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

/// Micro-F1 and exact-match rate of the labels `model` predicts (logit >
/// 0) for `set`, on eval-transformed images.
fn score(model: &Tagger, set: &LabelledImages, image_size: u32, device: &Device) -> (f64, f64) {
    let size = image_size as usize;
    let labels = set.label_count();
    let (mut tp, mut fp, mut fn_, mut exact) = (0usize, 0usize, 0usize, 0usize);
    for start in (0..set.len()).step_by(256) {
        let rows = start..(start + 256).min(set.len());
        let mut pixels = Vec::with_capacity(rows.len() * 3 * size * size);
        for row in rows.clone() {
            to_normalized_chw(&eval_transform(&set.images[row], image_size), &mut pixels);
        }
        let pixels =
            Tensor::<4>::from_data(TensorData::new(pixels, [rows.len(), 3, size, size]), device);
        let logits = model.forward(pixels).into_data();
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
mod tests {
    use super::*;

    #[test]
    fn bce_matches_its_definition() {
        // −[y log σ(x) + (1 − y) log σ(−x)], with log σ(x) = −log(1 + e^{−x})
        // in f64 (1 − σ(x) itself would cancel at x = 30).
        let device = Device::flex();
        let x = [2.5f32, -1.0, 0.0, -30.0, 30.0, 0.3];
        let y = [1.0f32, 0.0, 1.0, 1.0, 0.0, 0.0];
        let expected: f64 = x
            .iter()
            .zip(&y)
            .map(|(&x, &y)| {
                let (x, y) = (x as f64, y as f64);
                let log_sigmoid = |x: f64| -(-x).exp().ln_1p();
                -(y * log_sigmoid(x) + (1.0 - y) * log_sigmoid(-x))
            })
            .sum::<f64>()
            / 6.0;
        let t = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [2, 3]), &device);
        let got = multi_label_bce(t(&x), t(&y)).into_scalar::<f32>() as f64;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    /// Images of one of four colours with pixel noise, labelled by colour
    /// (one-hot) and by whether a white square sits in the top-left corner.
    fn coloured_squares(n: usize, seed: u64) -> LabelledImages {
        use rand::RngExt;
        let mut rng = StdRng::seed_from_u64(seed);
        let palette = [
            [200u8, 40, 40],
            [40, 180, 40],
            [40, 60, 220],
            [220, 200, 30],
        ];
        let mut set = LabelledImages::default();
        for _ in 0..n {
            let colour = rng.random_range(0..4usize);
            let square = rng.random_bool(0.5);
            let image = RgbImage::from_fn(16, 16, |x, y| {
                let base = if square && x < 6 && y < 6 {
                    [250, 250, 250]
                } else {
                    palette[colour]
                };
                image::Rgb(base.map(|c| c.saturating_sub(rng.random_range(0..30))))
            });
            let mut labels = vec![0.0; 5];
            labels[colour] = 1.0;
            labels[4] = f32::from(square);
            set.images.push(image);
            set.labels.push(labels);
        }
        set
    }

    #[test]
    fn warm_up_learns_labels_of_held_out_images() {
        let device = Device::flex();
        device.seed(3);
        let vit = vl_models::VitConfig {
            image_size: 16,
            patch_size: 8,
            hidden_size: 32,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 64,
            layer_norm_eps: 1e-6,
            ..vl_models::VitConfig::default()
        }
        .init(&device);
        let data = WarmupData {
            train: coloured_squares(128, 1),
            held_out: coloured_squares(64, 2),
        };
        let config = VisionWarmupConfig {
            epochs: 12,
            batch_size: 16,
            lr: 3e-3,
            weight_decay: 0.05,
        };
        let augment = AugmentConfig {
            crop_scale: (0.9, 1.0),
            horizontal_flip: false,
            randaugment_ops: 0,
            randaugment_magnitude: 0.0,
        };
        let (_, report) = warm_up_vision(vit, &data, &config, 16, &augment, 0, &device).unwrap();
        println!("{report:?}");
        assert_eq!(report.steps, 12 * 8);
        assert!(report.last_loss < 0.5 * report.first_loss, "{report:?}");
        // Predicting no label scores F1 0; one colour of four at random
        // ~0.25 on the colours.
        assert!(report.held_out_f1.unwrap() > 0.9, "{report:?}");
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let config = VisionWarmupConfig {
            lr: 1.0,
            ..VisionWarmupConfig::default()
        };
        assert!((lr_at(&config, 0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((lr_at(&config, 9, 10, 100) - 1.0).abs() < 1e-12);
        assert!((lr_at(&config, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!(lr_at(&config, 55, 10, 100) < 0.6);
        assert!(lr_at(&config, 99, 10, 100) < 1e-3);
    }
}
