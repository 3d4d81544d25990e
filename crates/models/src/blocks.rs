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
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

/// The value masked attention scores are replaced with before the softmax.
///
/// HF uses `torch.finfo(float32).min` as a replacement value: exactly zero
/// weight for masked keys, and no NaN if a row were fully masked.
pub const MASKED_SCORE: f32 = f32::MIN;

mod gelu;
pub use gelu::gelu;

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

impl Attention {
    /// [`Attention::forward`] spelled out (no dropout), also returning the
    /// attention probabilities `[batch, heads, queries, keys]` as a fresh
    /// autodiff leaf that the output is computed from: its gradient after
    /// a backward pass is the gradient with respect to the probabilities,
    /// what Grad-CAM reads (the reference's `save_attention` hooks).
    pub fn forward_probed(
        &self,
        x: Tensor<3>,
        context: Tensor<3>,
        mask: &AttentionMask,
    ) -> (Tensor<3>, Tensor<4>) {
        let [batch, queries, d_model] = x.dims();
        let heads = self.num_heads;
        let d_head = d_model / heads;
        let keys = context.dims()[1];
        let split = |t: Tensor<3>, n: usize| t.reshape([batch, n, heads, d_head]).swap_dims(1, 2);
        let q = split(linear_rows(&self.query, x), queries);
        let k = split(linear_rows(&self.key, context.clone()), keys);
        let v = split(linear_rows(&self.value, context), keys);
        let mask = mask.expand([batch, heads, queries, keys], &q.device());
        let scores = q.matmul(k.swap_dims(2, 3)) * (d_head as f64).powf(-0.5);
        let scores = match mask {
            Some(mask) => scores.mask_fill(mask, MASKED_SCORE),
            None => scores,
        };
        let probs = activation::softmax(scores, 3)
            .without_autodiff()
            .autodiff()
            .require_grad();
        let attended = probs.clone().matmul(v.autodiff());
        let attended = attended.swap_dims(1, 2).reshape([batch, queries, d_model]);
        (linear_rows(&self.out, attended), probs)
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

    /// [`TransformerLayer::forward`] with its cross-attention probed
    /// ([`Attention::forward_probed`]): the output and the cross-attention
    /// probabilities' leaf.
    ///
    /// # Panics
    /// If the layer has no cross-attention.
    pub fn forward_probed(
        &self,
        x: Tensor<3>,
        mask: &AttentionMask,
        cross: &CrossAttentionInput,
    ) -> (Tensor<3>, Tensor<4>) {
        let (Some(attention), Some(norm)) = (&self.crossattention, &self.crossattention_norm)
        else {
            panic!("only a cross-attention layer can be probed");
        };
        let x = self.sublayer(x, &self.attention_norm, |h| {
            self.attention.forward(h, None, mask)
        });
        let mut probs = None;
        let x = self.sublayer(x, norm, |h| {
            let (out, p) = attention.forward_probed(h, cross.states.clone(), &cross.mask);
            probs = Some(p);
            out
        });
        let x = self.sublayer(x, &self.mlp_norm, |h| self.mlp.forward(h));
        (x, probs.expect("the cross-attention ran"))
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
mod tests;
