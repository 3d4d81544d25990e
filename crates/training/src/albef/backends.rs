//! The backend-swap experiment: the same ALBEF pretraining steps, from the
//! same initial weights and the same batches, on any device, with each
//! step's loss and time. `train-albef backends` runs it on every compiled
//! backend; `cargo xtask bench` times its step beside PyTorch's.
//!
//! Batches are random and of fixed shape (pixels in [−2, 2], ids past the
//! special tokens, no padding), seeded, so every backend and the PyTorch
//! side do the same work.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use vl_data::{EncodedBatch, ImageBatch, ImageTextBatch, SpecialTokens};

use crate::TrainError;
use crate::albef::config::{ExecutionConfig, PretrainConfig, StepThreads};
use crate::albef::pretraining::AlbefPretraining;

/// Special token ids of the experiment's vocabularies (BERT layout).
pub const SPECIAL: SpecialTokens = SpecialTokens {
    pad: 0,
    cls: 2,
    mask: 4,
};

/// The `tiny` model as one process steps it on a batch of 32 with a
/// one-batch queue, vocabulary 256, without the weight average: the
/// experiment's default, and what PyTorch's side of `cargo xtask bench`
/// mirrors.
pub fn tiny_single_process() -> PretrainConfig {
    PretrainConfig {
        batch_size: 32,
        queue_size: 32,
        recipe: crate::albef::RecipeConfig {
            model_ema_decay: None,
            ..PretrainConfig::tiny(256).recipe
        },
        execution: ExecutionConfig {
            workers: 1,
            step_threads: StepThreads::SplitBranches,
            // Every caption has the same length: nothing to group.
            text_length_groups: 1,
        },
        ..PretrainConfig::tiny(256)
    }
}

/// A random batch of `config.batch_size` samples with captions of
/// `text_len` tokens.
pub fn random_batch(config: &PretrainConfig, text_len: usize, seed: u64) -> ImageTextBatch {
    let mut rng = StdRng::seed_from_u64(seed);
    let (b, len) = (config.batch_size, text_len);
    let s = config.model.image_res;
    let vocab = config.model.bert_config.vocab_size as i64;
    let ids: Vec<i64> = (0..b * len)
        .map(|i| {
            if i % len == 0 {
                SPECIAL.cls
            } else {
                rng.random_range(5..vocab)
            }
        })
        .collect();
    ImageTextBatch {
        images: ImageBatch::from_values(
            (0..b * 3 * s * s)
                .map(|_| rng.random_range(-2.0..2.0))
                .collect(),
            s,
        ),
        captions: vec![String::new(); b],
        text: EncodedBatch {
            ids,
            attention_mask: vec![1; b * len],
            batch: b,
            len,
        },
        image_ids: (0..b).collect(),
    }
}

/// A fresh pretraining state of `config` on `device`, its weights drawn
/// on the CPU from `seed` and moved, so every backend starts from the same
/// numbers. The queue holds at least one batch.
pub fn fresh_state(config: &PretrainConfig, device: &Device, seed: u64) -> AlbefPretraining {
    let mut config = config.clone();
    config.queue_size = config.queue_size.max(config.batch_size);
    let cpu = Device::flex();
    cpu.seed(seed);
    let model = config.model.init(true, &cpu).to_device(device);
    AlbefPretraining::new(config, model, SPECIAL, seed, device)
}

/// The losses of `steps` pretraining steps of `config` on `device`, with
/// each step's milliseconds.
pub fn step_losses(
    config: &PretrainConfig,
    text_len: usize,
    device: &Device,
    steps: usize,
) -> Result<Vec<(f32, f64)>, TrainError> {
    let mut state = fresh_state(config, device, 0);
    let mut out = Vec::with_capacity(steps);
    for step in 0..steps {
        let data = random_batch(&state.config, text_len, 1 + step as u64);
        let start = Instant::now();
        let losses = state.step(&data, 1000)?;
        out.push((losses.total(), start.elapsed().as_secs_f64() * 1e3));
    }
    Ok(out)
}
