//! Transformer building blocks written once and shared by every model here.
//!
//! [`Attention`] covers self- and cross-attention (the key/value source may be
//! another sequence of a different width, as in ALBEF's fusion encoder), and
//! [`TransformerLayer`] is the one encoder layer type, post-LN for BERT and
//! XLM-R (Devlin et al., 2019) and pre-LN for ViT and CLIP (Dosovitskiy et al.,
//! 2021; Radford et al., 2021). The checkpoints name the same weights
//! differently (`attention.self.query` in BERT, `attn.qkv` in timm,
//! `self_attn.q_proj` in CLIP); the per-format key tables in
//! [`crate::import`] map them all onto the field names below.
//!
//! We do not use burn-nn's `MultiHeadAttention`: it applies dropout to the
//! pre-softmax scores where the reference implementations drop attention
//! probabilities, and masks with −1e4 rather than the float minimum.

use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The value masked attention scores are replaced with before the softmax.
///
/// HF uses `torch.finfo(float32).min` as a replacement value: exactly zero
/// weight for masked keys, and no NaN if a row were fully masked.
pub const MASKED_SCORE: f32 = f32::MIN;

/// Feed-forward activation, spelled as HF's `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Activation {
    /// Exact GELU, `0.5·x·(1 + erf(x/√2))` (BERT, ViT, XLM-R).
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// `x·σ(1.702·x)` (OpenAI CLIP).
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// The tanh approximation of GELU.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    /// Rectified linear unit.
    #[serde(rename = "relu")]
    Relu,
}

impl Activation {
    /// Applies the activation element-wise.
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Gelu => gelu(x),
            Activation::QuickGelu => x.clone() * activation::sigmoid(x * 1.702),
            Activation::GeluTanh => activation::gelu_approximate(x),
            Activation::Relu => activation::relu(x),
        }
    }
}

/// Exact GELU, `x·Φ(x)`, with a fast path on the CPU backend.
///
/// burn-flex 0.22.1 evaluates `erf` with scalar libm per element, and its
/// autodiff evaluates it again for the backward pass: forward and backward
/// of the tiny ViT's activations (`[32, 17, 256]`) take 3.1 ms against
/// PyTorch's 0.1 ms (`cargo xtask bench --steps op_gelu`). On the CPU the
/// value and the slope `Φ(x) + x·φ(x)` are computed here in one SIMD pass
/// (`GeluKernel`; `erf` by Abramowitz & Stegun 7.1.28, a polynomial with
/// absolute error ≤ 3·10⁻⁷, and [`exp_nonpositive`]), and the gradient
/// flows through `(x − stop_grad(x))·slope`, one multiplication. Other
/// backends use burn's op.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if device != Device::flex() {
        return activation::gelu(x);
    }
    let shape = x.shape();
    let values = x
        .clone()
        .detach()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data");
    let training = device.is_autodiff();
    let (out, slope) = gelu_kernel(&values, training);
    let tensor = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, shape.clone()), &device);
    if !training {
        return tensor(out);
    }
    tensor(out) + (x.clone() - x.detach()) * tensor(slope)
}

/// GELU's values and (with `slope`) slopes over a buffer. Not generic, so
/// that it is compiled here (at `opt-level = 3`, where it vectorises)
/// whichever crate calls [`gelu`].
fn gelu_kernel(values: &[f32], slope: bool) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0.0f32; values.len()];
    let mut slopes = vec![0.0f32; if slope { values.len() } else { 0 }];
    pulp::Arch::new().dispatch(GeluKernel {
        x: values,
        value: &mut out,
        slope: slope.then_some(slopes.as_mut_slice()),
    });
    (out, slopes)
}

/// GELU's value and (when asked) its slope `Φ(x) + x·φ(x)`, with
/// `φ(x) = exp(−x²/2)/√(2π)`, over a buffer. Dispatched by `pulp` to the
/// widest SIMD the CPU has (the workspace builds for baseline x86-64), in
/// which the compiler vectorises the loops.
struct GeluKernel<'a> {
    x: &'a [f32],
    value: &'a mut [f32],
    slope: Option<&'a mut [f32]>,
}

impl pulp::WithSimd for GeluKernel<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let GeluKernel { x, value, slope } = self;
        match slope {
            None => {
                for (y, &v) in value.iter_mut().zip(x) {
                    *y = v * normal_cdf(v);
                }
            }
            Some(slope) => {
                for ((y, d), &v) in value.iter_mut().zip(slope.iter_mut()).zip(x) {
                    let cdf = normal_cdf(v);
                    *y = v * cdf;
                    *d = cdf + v * exp_nonpositive(-0.5 * v * v) * 0.398_942_3;
                }
            }
        }
    }
}

/// `Φ(x) = (1 + erf(x/√2))/2`.
#[inline(always)]
fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `eᵗ` for `t ≤ 0`, in operations the compiler vectorises (libm's `expf`
/// is a call per element, 2.5× slower here): `t = n·ln 2 + r` with
/// `|r| ≤ ln 2 / 2` (Cody–Waite), the Taylor polynomial of `eʳ` to degree
/// 7, times `2ⁿ` written into the exponent bits. Relative error ≤ 2·10⁻⁷.
#[inline(always)]
fn exp_nonpositive(t: f32) -> f32 {
    // e^−87 is the smallest power of e that is a normal f32.
    let t = if t > -87.0 { t } else { -87.0 };
    // Adding 1.5·2²³ rounds to an integer, which lands in the low mantissa
    // bits: those of `shifted` are 0x4B40_0000 + n.
    const ROUND: f32 = 12_582_912.0;
    let shifted = t * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // ln 2 = 0.693359375 − 2.12194440·10⁻⁴, the first part exact in f32.
    let r = t - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * f32::from_bits(shifted.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23)
}

/// `erf` by Abramowitz & Stegun 7.1.28: `1 − (1 + a₁x + … + a₆x⁶)^−16`
/// for `x ≥ 0`, odd; absolute error ≤ 3·10⁻⁷.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const A: [f32; 6] = [
        0.070_523_08,
        0.042_282_01,
        0.009_270_527,
        0.000_152_014_3,
        0.000_276_567_2,
        0.000_043_063_8,
    ];
    // erf(±4) = ±(1 − 1.5·10⁻⁸): 1 in f32, and the power stays finite.
    let a = x.abs().min(4.0);
    let p = 1.0 + a * (A[0] + a * (A[1] + a * (A[2] + a * (A[3] + a * (A[4] + a * A[5])))));
    let p2 = p * p;
    let p4 = p2 * p2;
    let p8 = p4 * p4;
    let y = 1.0 - 1.0 / (p8 * p8);
    y.copysign(x)
}

/// `layer` applied to the last dimension of `x` as one `[rows, d_in]`
/// product.
///
/// burn 0.22.1's `Linear` keeps a `[batch, seq, d]` input batched unless
/// folding the batch into the rows makes the output squarer (a GPU tiling
/// rule), so a `[32, 17, 64]` input ran as 32 products of `[17, 64]`,
/// each re-packing the weight on the CPU: over half of the tiny ALBEF
/// step (300 ms against 210 folded). Folding is a view of a contiguous tensor;
/// the backward pass then folds the same way.
pub fn linear_rows<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    if D <= 2 {
        return layer.forward(x);
    }
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = layer.forward(x.reshape([rows, d_in]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// Whether dropout would act on `x`: burn's own rule (an enabled flag and an
/// autodiff tensor), so `model.valid()` switches it off as for `Dropout`.
fn dropout_active<const D: usize>(dropout: &Dropout, x: &Tensor<D>) -> bool {
    dropout.prob > 0.0 && dropout.training.is_enabled() && x.device().is_autodiff()
}

/// Which keys each query may attend to.
///
/// One convention everywhere: a `Bool` tensor where `true` marks a padding
/// key. HF's integer `attention_mask` (1 = keep) is converted once, at the
/// model boundary, by [`padding_mask`].
#[derive(Debug, Clone, Default)]
pub struct AttentionMask {
    /// `[batch, keys]`, `true` = padding (never attended to).
    pub key_padding: Option<Tensor<2, Bool>>,
    /// Queries may only attend to keys at their own position or before.
    pub causal: bool,
}

impl AttentionMask {
    /// No masking at all (image tokens).
    pub fn none() -> Self {
        Self::default()
    }

    /// Mask the keys where `key_padding` is `true`.
    pub fn padding(key_padding: Tensor<2, Bool>) -> Self {
        Self {
            key_padding: Some(key_padding),
            causal: false,
        }
    }

    /// Add a causal (lower-triangular) constraint.
    pub fn with_causal(mut self) -> Self {
        self.causal = true;
        self
    }

    /// The mask as burn's attention op wants it: `[batch, heads, queries, keys]`,
    /// `true` = masked; `None` when nothing is masked.
    fn expand(
        &self,
        [batch, heads, queries, keys]: [usize; 4],
        device: &Device,
    ) -> Option<Tensor<4, Bool>> {
        let padding = self.key_padding.as_ref().map(|m| {
            m.clone()
                .reshape([batch, 1, 1, keys])
                .expand([batch, heads, queries, keys])
        });
        let causal = self.causal.then(|| {
            // Key j is masked for query i when j > i.
            Tensor::<2, Bool>::tril_mask([queries, keys], 0, device)
                .reshape([1, 1, queries, keys])
                .expand([batch, heads, queries, keys])
        });
        match (padding, causal) {
            (Some(p), Some(c)) => Some(p.bool_or(c)),
            (p, c) => p.or(c),
        }
    }
}

/// Converts HF's `attention_mask` (1 = token, 0 = padding) to our convention.
pub fn padding_mask(attention_mask: Tensor<2, Int>) -> Tensor<2, Bool> {
    attention_mask.equal_elem(0)
}

/// Configuration of [`Attention`].
#[derive(Debug, Clone)]
pub struct AttentionConfig {
    /// Width of the queries and of the output.
    pub d_model: usize,
    /// Number of heads; `d_model` must be divisible by it.
    pub num_heads: usize,
    /// Width of the key/value source (ALBEF's `encoder_width` for cross-attention).
    pub kv_width: usize,
    /// Whether the q/k/v projections have a bias (ViT's `qkv_bias`).
    pub qkv_bias: bool,
    /// Dropout on the attention probabilities.
    pub dropout: f64,
    /// Initialiser of the projection weights and biases.
    pub initializer: Initializer,
}

impl AttentionConfig {
    /// Self-attention of width `d_model`, biases on, no dropout.
    pub fn new(d_model: usize, num_heads: usize) -> Self {
        Self {
            d_model,
            num_heads,
            kv_width: d_model,
            qkv_bias: true,
            dropout: 0.0,
            initializer: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            },
        }
    }

    /// Keys and values come from a sequence of this width.
    pub fn with_kv_width(mut self, kv_width: usize) -> Self {
        self.kv_width = kv_width;
        self
    }

    /// Sets the q/k/v bias.
    pub fn with_qkv_bias(mut self, qkv_bias: bool) -> Self {
        self.qkv_bias = qkv_bias;
        self
    }

    /// Sets the attention-probability dropout.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Sets the weight initialiser.
    pub fn with_initializer(mut self, initializer: Initializer) -> Self {
        self.initializer = initializer;
        self
    }

    /// Builds the module with burn's default initialisation.
    pub fn init(&self, device: &Device) -> Attention {
        assert!(
            self.d_model.is_multiple_of(self.num_heads),
            "attention width {} is not divisible by {} heads",
            self.d_model,
            self.num_heads
        );
        let linear = |d_in, bias| {
            LinearConfig::new(d_in, self.d_model)
                .with_bias(bias)
                .with_initializer(self.initializer.clone())
                .init(device)
        };
        Attention {
            query: linear(self.d_model, self.qkv_bias),
            key: linear(self.kv_width, self.qkv_bias),
            value: linear(self.kv_width, self.qkv_bias),
            out: linear(self.d_model, true),
            dropout: DropoutConfig::new(self.dropout).init(),
            num_heads: self.num_heads,
        }
    }
}

/// Multi-head scaled dot-product attention, `softmax(q·kᵀ/√d_head)·v`.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection.
    pub query: Linear,
    /// Key projection (input width = key/value source width).
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection.
    pub out: Linear,
    /// Dropout on attention probabilities (active only in training).
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl Attention {
    /// Attends from `x` to `context` (or to `x` itself when `None`).
    ///
    /// # Shapes
    /// - `x`: `[batch, queries, d_model]`
    /// - `context`: `[batch, keys, kv_width]`
    /// - output: `[batch, queries, d_model]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        context: Option<Tensor<3>>,
        mask: &AttentionMask,
    ) -> Tensor<3> {
        let [batch, queries, d_model] = x.dims();
        let heads = self.num_heads;
        let d_head = d_model / heads;
        let context = context.unwrap_or_else(|| x.clone());
        let keys = context.dims()[1];

        let split = |t: Tensor<3>, n: usize| t.reshape([batch, n, heads, d_head]).swap_dims(1, 2);
        let q = split(linear_rows(&self.query, x), queries);
        let k = split(linear_rows(&self.key, context.clone()), keys);
        let v = split(linear_rows(&self.value, context), keys);
        let mask = mask.expand([batch, heads, queries, keys], &q.device());

        let attended = if dropout_active(&self.dropout, &q) {
            // The fused op has no dropout; spell it out where training needs it.
            let scores = q.matmul(k.swap_dims(2, 3)) * (d_head as f64).powf(-0.5);
            let scores = match mask {
                Some(mask) => scores.mask_fill(mask, MASKED_SCORE),
                None => scores,
            };
            self.dropout
                .forward(activation::softmax(scores, 3))
                .matmul(v)
        } else {
            attention(q, k, v, mask, None, AttentionModuleOptions::default())
        };
        let attended = attended.swap_dims(1, 2).reshape([batch, queries, d_model]);
        linear_rows(&self.out, attended)
    }
}

/// The two-layer feed-forward network of a transformer layer.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Expansion (`intermediate.dense` in BERT).
    pub fc1: Linear,
    /// Projection back (`output.dense` in BERT).
    pub fc2: Linear,
    /// Activation between the two.
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    /// `fc2(act(fc1(x)))`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let hidden = self.activation.forward(linear_rows(&self.fc1, x));
        linear_rows(&self.fc2, hidden)
    }
}

/// Where a layer normalises: after each residual sum (BERT) or before each
/// sub-layer (ViT, CLIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPosition {
    /// `x = LN(x + f(x))` (post-LN, BERT/XLM-R).
    Post,
    /// `x = x + f(LN(x))` (pre-LN, ViT/CLIP).
    Pre,
}

/// Configuration of [`TransformerLayer`].
#[derive(Debug, Clone)]
pub struct TransformerLayerConfig {
    /// Hidden width.
    pub d_model: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Epsilon of every LayerNorm of the layer.
    pub layer_norm_eps: f64,
    /// Pre- or post-LN.
    pub norm_position: NormPosition,
    /// Add a cross-attention sub-layer over a sequence of this width.
    pub cross_attention_width: Option<usize>,
    /// Bias on the q/k/v projections.
    pub qkv_bias: bool,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Dropout on each sub-layer's output, before the residual sum.
    pub hidden_dropout: f64,
    /// Initialiser of every `Linear` of the layer.
    pub initializer: Initializer,
}

impl TransformerLayerConfig {
    /// Builds the layer.
    pub fn init(&self, device: &Device) -> TransformerLayer {
        let attention = AttentionConfig::new(self.d_model, self.num_heads)
            .with_qkv_bias(self.qkv_bias)
            .with_dropout(self.attention_dropout)
            .with_initializer(self.initializer.clone());
        let norm = || {
            LayerNormConfig::new(self.d_model)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        TransformerLayer {
            attention: attention.init(device),
            attention_norm: norm(),
            crossattention: self
                .cross_attention_width
                .map(|width| attention.clone().with_kv_width(width).init(device)),
            crossattention_norm: self.cross_attention_width.map(|_| norm()),
            mlp: Mlp {
                fc1: LinearConfig::new(self.d_model, self.d_ff)
                    .with_initializer(self.initializer.clone())
                    .init(device),
                fc2: LinearConfig::new(self.d_ff, self.d_model)
                    .with_initializer(self.initializer.clone())
                    .init(device),
                activation: self.activation,
            },
            mlp_norm: norm(),
            dropout: DropoutConfig::new(self.hidden_dropout).init(),
            norm_position: self.norm_position,
        }
    }
}

/// One encoder layer: self-attention, optional cross-attention, feed-forward,
/// each with a residual connection and a LayerNorm.
#[derive(Module, Debug)]
pub struct TransformerLayer {
    /// Self-attention.
    pub attention: Attention,
    /// LayerNorm of the self-attention sub-layer.
    pub attention_norm: LayerNorm,
    /// Cross-attention over another sequence (ALBEF fusion layers).
    pub crossattention: Option<Attention>,
    /// LayerNorm of the cross-attention sub-layer.
    pub crossattention_norm: Option<LayerNorm>,
    /// Feed-forward network.
    pub mlp: Mlp,
    /// LayerNorm of the feed-forward sub-layer.
    pub mlp_norm: LayerNorm,
    /// Dropout on each sub-layer output (HF `hidden_dropout_prob`).
    pub dropout: Dropout,
    /// Pre- or post-LN.
    #[module(skip)]
    pub norm_position: NormPosition,
}

/// The sequence a cross-attention layer attends to.
#[derive(Debug, Clone)]
pub struct CrossAttentionInput {
    /// `[batch, keys, kv_width]`.
    pub states: Tensor<3>,
    /// Padding of `states`.
    pub mask: AttentionMask,
}

impl TransformerLayer {
    /// Runs the layer.
    ///
    /// # Panics
    /// If the layer has cross-attention and `cross` is `None`: the reference
    /// asserts the same (a fusion layer needs image states).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]` → `[batch, seq, d_model]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask: &AttentionMask,
        cross: Option<&CrossAttentionInput>,
    ) -> Tensor<3> {
        let x = self.sublayer(x, &self.attention_norm, |h| {
            self.attention.forward(h, None, mask)
        });
        let x = match (&self.crossattention, &self.crossattention_norm) {
            (Some(attention), Some(norm)) => {
                let cross = cross.expect("a cross-attention layer needs the states it attends to");
                self.sublayer(x, norm, |h| {
                    attention.forward(h, Some(cross.states.clone()), &cross.mask)
                })
            }
            _ => x,
        };
        self.sublayer(x, &self.mlp_norm, |h| self.mlp.forward(h))
    }

    fn sublayer(
        &self,
        x: Tensor<3>,
        norm: &LayerNorm,
        f: impl FnOnce(Tensor<3>) -> Tensor<3>,
    ) -> Tensor<3> {
        match self.norm_position {
            NormPosition::Post => norm.forward(x.clone() + self.dropout.forward(f(x))),
            NormPosition::Pre => x.clone() + self.dropout.forward(f(norm.forward(x))),
        }
    }
}

/// L2-normalises the last dimension, `x / max(‖x‖, eps)` as `F.normalize`.
pub fn l2_normalize<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    let norm = x
        .clone()
        .powi_scalar(2)
        .sum_dim(D - 1)
        .sqrt()
        .clamp_min(eps);
    x / norm
}

/// The first token of each sequence (`[CLS]`).
///
/// # Shapes
/// `[batch, seq, d]` → `[batch, d]`
pub fn first_token(x: Tensor<3>) -> Tensor<2> {
    let [batch, _, d] = x.dims();
    x.slice([0..batch, 0..1]).reshape([batch, d])
}

/// Index of the first position in each row where `hit` is true, or the row
/// length when there is none.
///
/// Computed on the device (no host sync) and independent of how a backend
/// breaks argmax ties.
///
/// # Shapes
/// `hit`: `[batch, seq]` → `[batch, 1]`
pub fn first_true_index(hit: Tensor<2, Bool>) -> Tensor<2, Int> {
    let [batch, seq] = hit.dims();
    let positions = Tensor::<1, Int>::arange(0..seq as i64, &hit.device())
        .reshape([1, seq])
        .expand([batch, seq]);
    positions.mask_fill(hit.bool_not(), seq as i64).min_dim(1)
}

/// Picks one row per batch element: `x[b, index[b]]`.
///
/// # Shapes
/// `x`: `[batch, seq, d]`, `index`: `[batch, 1]` → `[batch, d]`
pub fn gather_rows(x: Tensor<3>, index: Tensor<2, Int>) -> Tensor<2> {
    let [batch, _, d] = x.dims();
    let index = index.reshape([batch, 1, 1]).expand([batch, 1, d]);
    x.gather(1, index).reshape([batch, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    fn device() -> Device {
        Device::flex()
    }

    /// `erf` in f64 to ~1e-12: the Maclaurin series below 3, the
    /// asymptotic series of `erfc` above (an independent reference).
    fn erf_f64(x: f64) -> f64 {
        let a = x.abs();
        let value = if a < 3.0 {
            let (mut term, mut sum, mut n) = (a, a, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let z = 1.0 / (2.0 * a * a);
            let series = 1.0 - z + 3.0 * z * z - 15.0 * z.powi(3) + 105.0 * z.powi(4);
            1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series
        };
        value.copysign(x)
    }

    #[test]
    fn exp_nonpositive_matches_exp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let t = -87.0 * i as f32 / 200_000.0;
            let exact = (t as f64).exp();
            worst = worst.max((exp_nonpositive(t) as f64 - exact).abs() / exact);
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        // Below the clamp: e^−87 ≈ 1.6·10⁻³⁸, never infinite or NaN.
        assert!(exp_nonpositive(-1e4) < 2e-38);
    }

    #[test]
    fn the_fast_gelu_matches_the_exact_one_in_value_and_gradient() {
        // A grid over [−12, 12] and fixed upstream weights: deterministic,
        // checked against `x·Φ(x)` and `Φ(x) + x·φ(x)` in f64.
        let n = 6001;
        let xs: Vec<f32> = (0..n)
            .map(|i| -12.0 + 24.0 * i as f32 / (n - 1) as f32)
            .collect();
        let ws: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).cos()).collect();
        let ad = device().autodiff();
        let x = Tensor::<1>::from_data(xs.as_slice(), &ad).require_grad();
        let weights = Tensor::<1>::from_data(ws.as_slice(), &ad);
        let ours = gelu(x.clone());
        let grads = (ours.clone() * weights).sum().backward();
        let host = |t: Tensor<1>| {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let (values, slopes) = (host(ours.without_autodiff()), host(x.grad(&grads).unwrap()));
        let mut worst = [0.0f64; 2];
        for i in 0..n {
            let v = xs[i] as f64;
            let cdf = 0.5 * (1.0 + erf_f64(v / 2f64.sqrt()));
            let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            worst[0] = worst[0].max((values[i] as f64 - v * cdf).abs());
            worst[1] = worst[1].max((slopes[i] as f64 - ws[i] as f64 * (cdf + v * pdf)).abs());
        }
        // f32 rounding of values up to 12 is ~1e-6; the slope is off by up to
        // 6.1e-7 near 0 (erf's polynomial raised to the 16th power in f32).
        assert!(worst[0] < 2e-6, "value error {}", worst[0]);
        assert!(worst[1] < 1e-6, "gradient error {}", worst[1]);
        // Inference (no autodiff) takes the same path without the slope.
        let plain = x.without_autodiff();
        let diff = (gelu(plain.clone()) - activation::gelu(plain)).abs().max();
        assert!(diff.into_scalar::<f32>() < 2e-6);
    }

    #[test]
    fn padding_keys_get_no_weight() {
        // Changing a padded key's content must not change any output.
        let device = device();
        let attention = AttentionConfig::new(8, 2).init(&device);
        let x = Tensor::<3>::random([2, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        let mask = AttentionMask::padding(Tensor::from_data(
            [
                [false, false, false, true, true],
                [false, false, false, false, false],
            ],
            &device,
        ));
        let context = x.clone();
        let changed = context.clone().slice_assign(
            [0..1, 3..5, 0..8],
            Tensor::random([1, 2, 8], Distribution::Normal(0.0, 5.0), &device),
        );
        let a = attention.forward(x.clone(), Some(context), &mask);
        let b = attention.forward(x, Some(changed), &mask);
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn causal_mask_ignores_the_future() {
        let device = device();
        let attention = AttentionConfig::new(8, 2).init(&device);
        let x = Tensor::<3>::random([1, 4, 8], Distribution::Normal(0.0, 1.0), &device);
        let future = x.clone().slice_assign(
            [0..1, 2..4, 0..8],
            Tensor::random([1, 2, 8], Distribution::Normal(0.0, 1.0), &device),
        );
        let mask = AttentionMask::none().with_causal();
        let a = attention.forward(x, None, &mask).slice([0..1, 0..2, 0..8]);
        let b = attention
            .forward(future, None, &mask)
            .slice([0..1, 0..2, 0..8]);
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn fused_and_explicit_attention_agree() {
        // The explicit path (used when training with dropout) must compute
        // the same function as burn's fused op when dropout is zero.
        let device = device();
        let q = Tensor::<4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<4>::random([2, 3, 6, 5], Distribution::Normal(0.0, 1.0), &device);
        let v = Tensor::<4>::random([2, 3, 6, 5], Distribution::Normal(0.0, 1.0), &device);
        let mask = AttentionMask::padding(Tensor::from_data(
            [[false, false, true, false, true, true], [false; 6]],
            &device,
        ))
        .expand([2, 3, 4, 6], &device)
        .unwrap();
        let scores = q.clone().matmul(k.clone().swap_dims(2, 3)) * 5f64.powf(-0.5);
        let explicit =
            activation::softmax(scores.mask_fill(mask.clone(), MASKED_SCORE), 3).matmul(v.clone());
        let fused = attention(q, k, v, Some(mask), None, AttentionModuleOptions::default());
        explicit
            .into_data()
            .assert_approx_eq::<f32>(&fused.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn first_true_index_takes_the_first_hit() {
        let device = device();
        let hit = Tensor::<2, Bool>::from_data(
            [
                [false, true, true],
                [false, false, false],
                [true, false, true],
            ],
            &device,
        );
        let index = first_true_index(hit).into_data();
        assert_eq!(
            index.convert::<i64>().try_to_vec::<i64>().unwrap(),
            vec![1, 3, 0]
        );
    }

    #[test]
    fn quick_gelu_matches_its_formula() {
        let device = device();
        let x = Tensor::<1>::from_data([-2.0, -0.5, 0.0, 1.0, 3.0], &device);
        let expected: Vec<f32> = [-2.0f32, -0.5, 0.0, 1.0, 3.0]
            .iter()
            .map(|&v| v / (1.0 + (-1.702 * v).exp()))
            .collect();
        Activation::QuickGelu
            .forward(x)
            .into_data()
            .assert_approx_eq::<f32>(
                &burn::tensor::TensorData::from(expected.as_slice()),
                Tolerance::absolute(1e-6),
            );
    }
}
