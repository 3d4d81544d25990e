//! Benchmark presets and timed steps: what `cargo xtask bench` measures.
//!
//! Every step runs on synthetic inputs of fixed shape (random pixels,
//! random token ids, no padding), seeded, so that our step and the PyTorch
//! one (`bench/bench_torch.py`, which mirrors these presets) do the same
//! work. FLOP counts are analytic estimates of the matrix products
//! (`2·m·n·k` each; element-wise work ignored); a training step counts the
//! online forward three times (forward + backward) plus the momentum
//! forward.

use std::time::Instant;

use burn::nn::LayerNormConfig;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use vl_data::EncodedBatch;
use vl_models::blocks::padding_mask;
use vl_models::{AlbefConfig, BertConfig, TextInput};
use vl_training::TrainError;
use vl_training::albef::PretrainConfig;
use vl_training::albef::backends::{fresh_state, random_batch, tiny_single_process};
use vl_training::altclip::{AltClipRecipe, DistillBatch, Distillation};
use vl_training::runner::Trainee;

/// A benchmark size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The `tiny` configs of the default runs (32 px, 64-wide, 2+2+2
    /// layers), batch 32.
    Tiny,
    /// ViT-S/16 at 128 px (384 wide, 6 heads, 6 layers) and a 384-wide
    /// BERT of 4 text + 4 fusion layers, vocabulary 30522, batch 16.
    Small,
    /// ALBEF's ViT-B/16 at 256 px and BERT-base 6 + 6, batch 8.
    Base,
}

impl std::str::FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tiny" => Ok(Preset::Tiny),
            "small" => Ok(Preset::Small),
            "base" => Ok(Preset::Base),
            other => Err(format!("unknown preset `{other}` (tiny, small, base)")),
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Preset::Tiny => "tiny",
            Preset::Small => "small",
            Preset::Base => "base",
        })
    }
}

/// What is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// One ALBEF pretraining step: ITC + ITM + MLM, momentum forward, EMA,
    /// queue update, AdamW.
    AlbefPretrain,
    /// One AltCLIP stage-1 step: student forward, MSE, backward, AdamW.
    AltclipStage1,
    /// ALBEF image embeddings (ViT + projection), inference.
    ImageEmbed,
    /// ALBEF text embeddings (text encoder + projection), inference.
    TextEmbed,
    /// ALBEF ITM re-ranking: fusion encoder + ITM head on image–text pairs.
    ItmRerank,
    /// One op, the tiny ViT's MLP activation: exact GELU forward and
    /// backward on `[32, 17, 256]` (a minimal reproduction of where burn
    /// itself is the limit).
    OpGelu,
    /// One op, the tiny attention scores: `[64, 17, 32] × [64, 32, 17]`.
    OpBatchedMatmul,
    /// One op, the tiny text encoder's LayerNorm: forward and backward on
    /// `[32, 32, 64]` with affine parameters.
    OpLayerNorm,
    /// One op, the tiny ViT's attention: burn's `attention` (PyTorch's
    /// `scaled_dot_product_attention`) forward and backward on q, k, v of
    /// `[32, 2, 17, 32]`.
    OpAttention,
}

impl Step {
    /// Every step, in table order.
    pub const ALL: [Step; 9] = [
        Step::AlbefPretrain,
        Step::AltclipStage1,
        Step::ImageEmbed,
        Step::TextEmbed,
        Step::ItmRerank,
        Step::OpGelu,
        Step::OpBatchedMatmul,
        Step::OpLayerNorm,
        Step::OpAttention,
    ];

    /// Whether this is a single-op row (fixed shapes, whatever the preset).
    pub fn is_op(self) -> bool {
        matches!(
            self,
            Step::OpGelu | Step::OpBatchedMatmul | Step::OpLayerNorm | Step::OpAttention
        )
    }

    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Step::AlbefPretrain => "albef_pretrain",
            Step::AltclipStage1 => "altclip_stage1",
            Step::ImageEmbed => "image_embed",
            Step::TextEmbed => "text_embed",
            Step::ItmRerank => "itm_rerank",
            Step::OpGelu => "op_gelu",
            Step::OpBatchedMatmul => "op_batched_matmul",
            Step::OpLayerNorm => "op_layer_norm",
            Step::OpAttention => "op_attention",
        }
    }
}

impl std::str::FromStr for Step {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.name() == s)
            .ok_or_else(|| format!("unknown step `{s}`"))
    }
}

/// Shapes of a preset.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// ALBEF pretraining (model, queue, optimizer).
    pub albef: PretrainConfig,
    /// AltCLIP (the student is what stage 1 trains).
    pub altclip: AltClipRecipe,
    /// Samples per training step.
    pub batch: usize,
    /// Tokens per text.
    pub text_len: usize,
    /// Samples per inference call.
    pub eval_batch: usize,
}

impl BenchConfig {
    /// The ALBEF config with this preset's training batch.
    pub fn albef_batch(&self) -> PretrainConfig {
        PretrainConfig {
            batch_size: self.batch,
            ..self.albef.clone()
        }
    }

    /// This config with other batch sizes (training, inference) where given:
    /// the presets' batches fit a 2-core CPU, a GPU wants larger ones.
    pub fn with_batches(mut self, batch: Option<usize>, eval_batch: Option<usize>) -> Self {
        self.batch = batch.unwrap_or(self.batch);
        self.eval_batch = eval_batch.unwrap_or(self.eval_batch);
        self
    }
}

impl Preset {
    /// The shapes of this preset.
    pub fn config(self) -> BenchConfig {
        match self {
            Preset::Tiny => {
                let mut altclip = AltClipRecipe::tiny();
                altclip.student.roberta.vocab_size = 8000;
                BenchConfig {
                    // Every benchmark caption has `text_len` tokens: no
                    // padding to save, and PyTorch's side pads one batch.
                    albef: tiny_single_process(),
                    altclip,
                    batch: 32,
                    text_len: 32,
                    eval_batch: 128,
                }
            }
            Preset::Small => {
                let width = 384;
                let bert = BertConfig {
                    hidden_size: width,
                    num_hidden_layers: 8,
                    num_attention_heads: 6,
                    intermediate_size: 4 * width,
                    fusion_layer: Some(4),
                    encoder_width: Some(width),
                    ..BertConfig::albef_base()
                };
                let albef = PretrainConfig {
                    model: AlbefConfig {
                        bert_config: bert.clone(),
                        image_res: 128,
                        patch_size: 16,
                        vision_width: width,
                        vision_depth: 6,
                        vision_heads: 6,
                        embed_dim: 256,
                        temp: 0.07,
                    },
                    queue_size: 4096,
                    ..PretrainConfig::default()
                };
                let mut altclip = AltClipRecipe::tiny();
                altclip.student.roberta = BertConfig {
                    num_hidden_layers: 4,
                    vocab_size: 30522,
                    max_position_embeddings: 66,
                    pad_token_id: 1,
                    type_vocab_size: 1,
                    ..bert
                };
                altclip.student.project_dim = 512;
                BenchConfig {
                    albef,
                    altclip,
                    batch: 16,
                    text_len: 25,
                    eval_batch: 64,
                }
            }
            Preset::Base => {
                let mut altclip = AltClipRecipe::tiny();
                altclip.student.roberta = BertConfig {
                    model_type: vl_models::bert::BertFamily::Roberta,
                    num_hidden_layers: 6,
                    max_position_embeddings: 514,
                    pad_token_id: 1,
                    type_vocab_size: 1,
                    ..BertConfig::base()
                };
                altclip.student.project_dim = 768;
                BenchConfig {
                    albef: PretrainConfig::default(),
                    altclip,
                    batch: 8,
                    text_len: 25,
                    eval_batch: 16,
                }
            }
        }
    }
}

/// One measured row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// The step.
    pub step: String,
    /// The preset.
    pub preset: String,
    /// Samples per call.
    pub batch: usize,
    /// Median wall-clock milliseconds per call.
    pub ms_median: f64,
    /// `batch / median`.
    pub samples_per_s: f64,
    /// Estimated FLOP per call.
    pub flop: f64,
    /// `flop / median`, in GFLOP/s.
    pub gflop_per_s: f64,
}

/// Random stage-1 inputs: XLM-R-style ids and unit-scale targets.
pub fn distill_batch(config: &BenchConfig, seed: u64) -> DistillBatch {
    let mut rng = StdRng::seed_from_u64(seed);
    let (b, len) = (config.batch, config.text_len);
    let vocab = config.altclip.student.roberta.vocab_size as i64;
    let width = config.altclip.student.project_dim;
    DistillBatch {
        text: EncodedBatch {
            ids: (0..b * len)
                .map(|i| {
                    if i % len == 0 {
                        0
                    } else {
                        rng.random_range(5..vocab)
                    }
                })
                .collect(),
            attention_mask: vec![1; b * len],
            batch: b,
            len,
        },
        targets: (0..b * width)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect(),
    }
}

/// Times `iters` calls of `step` on `config` (the shapes of `preset`, whose
/// name labels the result, with any batch override) after `warmup` untimed
/// ones.
pub fn measure(
    step: Step,
    preset: Preset,
    config: &BenchConfig,
    device: &Device,
    warmup: usize,
    iters: usize,
) -> Result<Measurement, TrainError> {
    let mut times = Vec::with_capacity(iters);
    let mut timed = |f: &mut dyn FnMut() -> Result<(), TrainError>| {
        for i in 0..warmup + iters {
            let start = Instant::now();
            f()?;
            if i >= warmup {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok::<(), TrainError>(())
    };
    let batch = match step {
        Step::AlbefPretrain => {
            let albef = config.albef_batch();
            let mut state = fresh_state(&albef, device, 0);
            let data = random_batch(&albef, config.text_len, 1);
            timed(&mut || state.step(&data, 1000).map(|_| ()))?;
            config.batch
        }
        Step::AltclipStage1 => {
            device.seed(0);
            let student = config.altclip.student_config().init(device);
            let mut state = Distillation::new(config.altclip.clone(), student, 0, device);
            let data = distill_batch(config, 1);
            timed(&mut || Trainee::step(&mut state, &data, 1000).map(|_| ()))?;
            config.batch
        }
        Step::OpGelu => {
            let ad = device.clone().autodiff();
            let x = Tensor::<3>::random([32, 17, 256], Distribution::Normal(0.0, 1.0), &ad)
                .require_grad();
            timed(&mut || {
                let y = vl_models::blocks::gelu(x.clone());
                let grads = y.sum().backward();
                let _ = x.grad(&grads).map(|g| g.into_data());
                Ok(())
            })?;
            32
        }
        Step::OpBatchedMatmul => {
            let a = Tensor::<3>::random([64, 17, 32], Distribution::Normal(0.0, 1.0), device);
            let b = Tensor::<3>::random([64, 32, 17], Distribution::Normal(0.0, 1.0), device);
            timed(&mut || {
                let _ = a.clone().matmul(b.clone()).into_data();
                Ok(())
            })?;
            64
        }
        Step::OpLayerNorm => {
            let ad = device.clone().autodiff();
            let norm = LayerNormConfig::new(64).init(&ad);
            let x = Tensor::<3>::random([32, 32, 64], Distribution::Normal(0.0, 1.0), &ad)
                .require_grad();
            timed(&mut || {
                let grads = norm.forward(x.clone()).sum().backward();
                let _ = x.grad(&grads).map(|g| g.into_data());
                Ok(())
            })?;
            32
        }
        Step::OpAttention => {
            let ad = device.clone().autodiff();
            let input = || {
                Tensor::<4>::random([32, 2, 17, 32], Distribution::Normal(0.0, 1.0), &ad)
                    .require_grad()
            };
            let (q, k, v) = (input(), input(), input());
            timed(&mut || {
                let out = attention(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    None,
                    None,
                    AttentionModuleOptions::default(),
                );
                let grads = out.sum().backward();
                let _ = q.grad(&grads).map(|g| g.into_data());
                Ok(())
            })?;
            32
        }
        Step::ImageEmbed | Step::TextEmbed | Step::ItmRerank => {
            device.seed(0);
            let model = config.albef.model.init(false, device);
            let eval = BenchConfig {
                batch: config.eval_batch,
                ..config.clone()
            };
            let data = random_batch(&eval.albef_batch(), eval.text_len, 1);
            let pixels = || data.images.to_tensor(device);
            let text = || {
                let (ids, mask) = data.text.to_tensors(device);
                TextInput::new(ids).with_padding(padding_mask(mask))
            };
            match step {
                Step::ImageEmbed => timed(&mut || {
                    let feat = model.image_feat(model.image_embeds(pixels()));
                    sync(feat);
                    Ok(())
                })?,
                Step::TextEmbed => timed(&mut || {
                    sync(model.text_feat(model.text_embeds(&text())));
                    Ok(())
                })?,
                _ => {
                    let image_embeds = model.image_embeds(pixels());
                    let input = text();
                    let text_embeds = model.text_embeds(&input);
                    timed(&mut || {
                        let fused = model.fusion(
                            text_embeds.clone(),
                            input.padding.clone(),
                            image_embeds.clone(),
                        );
                        sync(model.itm_logits(fused));
                        Ok(())
                    })?
                }
            }
            eval.batch
        }
    };
    times.sort_by(f64::total_cmp);
    let ms_median = times[times.len() / 2];
    let flop = flop_estimate(step, config);
    Ok(Measurement {
        step: step.name().to_owned(),
        preset: preset.to_string(),
        batch,
        ms_median,
        samples_per_s: batch as f64 / (ms_median / 1e3),
        flop,
        gflop_per_s: flop / (ms_median / 1e3) / 1e9,
    })
}

/// Waits for a result (lazy backends would otherwise time nothing).
fn sync(t: Tensor<2>) {
    let _ = t.into_data();
}

/// `2·in·out` per token of each matrix product of one transformer layer
/// over `tokens` tokens, self-attention over the same tokens, and
/// cross-attention to `cross = (kv_tokens, kv_width)` if any.
fn layer_flop(tokens: f64, d: f64, ff: f64, cross: Option<(f64, f64)>) -> f64 {
    let mut flop = 2.0 * tokens * (4.0 * d * d + 2.0 * d * ff) + 4.0 * tokens * tokens * d;
    if let Some((kv, width)) = cross {
        flop += 2.0 * tokens * 2.0 * d * d + 2.0 * kv * 2.0 * width * d + 4.0 * tokens * kv * d;
    }
    flop
}

/// Estimated FLOP of one call of `step` on `config`.
pub fn flop_estimate(step: Step, config: &BenchConfig) -> f64 {
    let m = &config.albef.model;
    let bert = &m.bert_config;
    let (d, ff) = (bert.hidden_size as f64, bert.intermediate_size as f64);
    let text_layers = bert.fusion_layer.unwrap_or(bert.num_hidden_layers) as f64;
    let fusion_layers = bert.num_hidden_layers as f64 - text_layers;
    let t = config.text_len as f64;
    let patches = (m.image_res / m.patch_size).pow(2) as f64;
    let (vw, tv) = (m.vision_width as f64, patches + 1.0);
    let vit = m.vision_depth as f64 * layer_flop(tv, vw, 4.0 * vw, None)
        + 2.0 * patches * 3.0 * (m.patch_size.pow(2) as f64) * vw;
    let text = text_layers * layer_flop(t, d, ff, None);
    let fusion = fusion_layers * layer_flop(t, d, ff, Some((tv, vw)));
    let proj = 2.0 * (vw + d) * m.embed_dim as f64;
    let masked = (0.15 * t).ceil();
    let mlm_head = masked * 2.0 * (d * d + d * bert.vocab_size as f64);
    match step {
        Step::AlbefPretrain => {
            // Online: encoders, ITM fusion on 3 pairs per sample, MLM pass.
            let online = vit + text + 3.0 * fusion + (text + fusion + mlm_head) + proj;
            // Momentum: encoders and MLM pass.
            let momentum = vit + text + text + fusion + mlm_head + proj;
            config.batch as f64 * (3.0 * online + momentum)
        }
        Step::AltclipStage1 => {
            let s = &config.altclip.student.roberta;
            let (sd, sff) = (s.hidden_size as f64, s.intermediate_size as f64);
            let layers = s.num_hidden_layers as f64 * layer_flop(t, sd, sff, None);
            let head = 2.0 * t * sd * config.altclip.student.project_dim as f64;
            config.batch as f64 * 3.0 * (layers + head)
        }
        Step::ImageEmbed => config.eval_batch as f64 * (vit + 2.0 * vw * m.embed_dim as f64),
        Step::TextEmbed => config.eval_batch as f64 * (text + 2.0 * d * m.embed_dim as f64),
        Step::ItmRerank => config.eval_batch as f64 * (fusion + 4.0 * d),
        // Element-wise: no matrix products.
        Step::OpGelu => 0.0,
        Step::OpBatchedMatmul => 2.0 * 64.0 * 17.0 * 32.0 * 17.0,
        Step::OpLayerNorm => 0.0,
        // Scores and weighted values, forward; twice that backward.
        Step::OpAttention => 3.0 * 2.0 * (2.0 * 64.0 * 17.0 * 17.0 * 32.0),
    }
}

/// The shapes and settings the PyTorch side (`bench/bench_torch.py`)
/// needs to build the same models, as JSON.
pub fn torch_spec(config: &BenchConfig) -> serde_json::Value {
    let m = &config.albef.model;
    let bert = &m.bert_config;
    let text_layers = bert.fusion_layer.unwrap_or(bert.num_hidden_layers);
    let student = &config.altclip.student.roberta;
    serde_json::json!({
        "batch": config.batch,
        "text_len": config.text_len,
        "eval_batch": config.eval_batch,
        "res": m.image_res,
        "patch": m.patch_size,
        "vision_width": m.vision_width,
        "vision_depth": m.vision_depth,
        "vision_heads": m.vision_heads,
        "vision_ff": 4 * m.vision_width,
        "hidden": bert.hidden_size,
        "heads": bert.num_attention_heads,
        "ff": bert.intermediate_size,
        "text_layers": text_layers,
        "fusion_layers": bert.num_hidden_layers - text_layers,
        "vocab": bert.vocab_size,
        "hidden_dropout": bert.hidden_dropout_prob,
        "attention_dropout": bert.attention_probs_dropout_prob,
        "embed_dim": m.embed_dim,
        "queue": config.albef.queue_size.max(config.batch),
        "momentum": config.albef.momentum,
        "alpha": config.albef.alpha,
        "mlm_probability": config.albef.mlm_probability,
        "lr": config.albef.optimizer.lr,
        "weight_decay": config.albef.optimizer.weight_decay,
        "student": {
            "hidden": student.hidden_size,
            "layers": student.num_hidden_layers,
            "heads": student.num_attention_heads,
            "ff": student.intermediate_size,
            "vocab": student.vocab_size,
            "hidden_dropout": student.hidden_dropout_prob,
            "attention_dropout": student.attention_probs_dropout_prob,
            "max_pos": student.max_position_embeddings,
            "project_dim": config.altclip.student.project_dim,
        },
    })
}

/// Peak resident memory of this process so far, in MiB (Linux; `None`
/// elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_estimates_scale_with_the_model() {
        let [tiny, small, base] = [Preset::Tiny, Preset::Small, Preset::Base]
            .map(|p| flop_estimate(Step::AlbefPretrain, &p.config()));
        assert!(tiny < small && small < base, "{tiny} {small} {base}");
        // ViT-B/16: 17.6 G multiply-adds at 224 px (197 tokens), so
        // ≈ 2 × 17.6 × 257/197 ≈ 46 GFLOP at 256 px.
        let config = Preset::Base.config();
        let image = flop_estimate(Step::ImageEmbed, &config) / config.eval_batch as f64;
        assert!((42e9..50e9).contains(&image), "{image}");
    }
}
