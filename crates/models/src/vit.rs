//! Vision Transformer (Dosovitskiy et al., 2021), ALBEF's image encoder.
//!
//! Reference: ALBEF `models/vit.py` (salesforce/ALBEF@b9727e4, timm 0.4.9
//! layout) and HF `models/vit/modeling_vit.py` (v5.23). Pre-LN layers, a
//! `[CLS]` token, a learned position table and a final LayerNorm over all
//! tokens. Fields use timm's names (`cls_token`, `pos_embed`,
//! `patch_embed.proj`, `blocks.N`, `norm`); timm's fused `qkv` and HF's
//! layout are both mapped by [`crate::import::vit`].

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::blocks::{
    Activation, AttentionMask, NormPosition, TransformerLayer, TransformerLayerConfig, first_token,
};

/// Configuration of [`Vit`], with HF `ViTConfig` field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VitConfig {
    /// Input resolution (square).
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Token width.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon: 1e-6 in timm/ALBEF, 1e-12 in HF ViT.
    pub layer_norm_eps: f64,
    /// Bias on the q/k/v projections.
    pub qkv_bias: bool,
    /// Dropout on sub-layer outputs (0 in ALBEF).
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (0 in ALBEF).
    pub attention_probs_dropout_prob: f64,
    /// Standard deviation of the initial weights.
    pub initializer_range: f64,
    /// HF `ViTModel` has a tanh pooler on `[CLS]`; timm/ALBEF do not. Not an
    /// HF config field: the loader sets it from the checkpoint.
    #[serde(skip)]
    pub add_pooling_layer: bool,
}

impl Default for VitConfig {
    fn default() -> Self {
        Self {
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            qkv_bias: true,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.02,
            add_pooling_layer: false,
        }
    }
}

impl VitConfig {
    /// ALBEF's ViT-B/16 (`models/vit.py` as built by `model_pretrain.py`):
    /// eps 1e-6, no dropout, no pooler.
    pub fn albef_base(image_res: usize) -> Self {
        Self {
            image_size: image_res,
            layer_norm_eps: 1e-6,
            ..Self::default()
        }
    }

    /// Number of patches along one side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Builds the model with timm's initialisation (normal 0.02).
    ///
    /// # Panics
    /// If the image size is not a multiple of the patch size.
    pub fn init(&self, device: &Device) -> Vit {
        assert!(
            self.image_size.is_multiple_of(self.patch_size),
            "image size {} is not a multiple of the patch size {}",
            self.image_size,
            self.patch_size
        );
        let d = self.hidden_size;
        let tokens = self.grid() * self.grid() + 1;
        let normal = Distribution::Normal(0.0, self.initializer_range);
        let init = Initializer::Normal {
            mean: 0.0,
            std: self.initializer_range,
        };
        let layer = TransformerLayerConfig {
            d_model: d,
            num_heads: self.num_attention_heads,
            d_ff: self.intermediate_size,
            activation: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            norm_position: NormPosition::Pre,
            cross_attention_width: None,
            qkv_bias: self.qkv_bias,
            attention_dropout: self.attention_probs_dropout_prob,
            hidden_dropout: self.hidden_dropout_prob,
            initializer: init.clone(),
        };
        Vit {
            cls_token: Param::from_tensor(Tensor::random([1, 1, d], normal, device)),
            pos_embed: Param::from_tensor(Tensor::random([1, tokens, d], normal, device)),
            patch_embed: PatchEmbed {
                proj: Conv2dConfig::new([self.num_channels, d], [self.patch_size, self.patch_size])
                    .with_stride([self.patch_size, self.patch_size])
                    .init(device),
            },
            blocks: (0..self.num_hidden_layers)
                .map(|_| layer.init(device))
                .collect(),
            norm: LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            pooler: self.add_pooling_layer.then(|| VitPooler {
                dense: LinearConfig::new(d, d)
                    .with_initializer(init.clone())
                    .init(device),
            }),
            patch_size: self.patch_size,
        }
    }
}

/// The patch projection (`patch_embed.proj`, a strided convolution).
#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// `Conv2d(channels → hidden, kernel = stride = patch)`.
    pub proj: Conv2d,
}

impl PatchEmbed {
    /// # Shapes
    /// `[batch, channels, h, w]` → `[batch, (h/p)·(w/p), hidden]`, patches in
    /// row-major order.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        let x = self.proj.forward(pixels);
        let [batch, d, gh, gw] = x.dims();
        x.reshape([batch, d, gh * gw]).swap_dims(1, 2)
    }
}

/// HF ViT's pooler: `tanh(dense(h[:, 0]))`.
#[derive(Module, Debug)]
pub struct VitPooler {
    /// The pooler projection.
    pub dense: Linear,
}

/// Vision Transformer.
#[derive(Module, Debug)]
pub struct Vit {
    /// `[1, 1, hidden]`.
    pub cls_token: Param<Tensor<3>>,
    /// `[1, 1 + patches, hidden]`.
    pub pos_embed: Param<Tensor<3>>,
    /// Patch projection.
    pub patch_embed: PatchEmbed,
    /// Pre-LN layers.
    pub blocks: Vec<TransformerLayer>,
    /// Final LayerNorm over all tokens.
    pub norm: LayerNorm,
    /// HF `ViTModel` pooler.
    pub pooler: Option<VitPooler>,
    /// Patch side (needed to check input sizes).
    pub patch_size: usize,
}

impl Vit {
    /// Encodes images into `[CLS]` + patch tokens, after the final LayerNorm.
    ///
    /// # Panics
    /// If the image's patch grid does not match the position table: resize
    /// the images, or [`Vit::interpolate_to`] the table first.
    ///
    /// # Shapes
    /// `[batch, channels, h, w]` → `[batch, 1 + patches, hidden]`
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        let [batch, _, h, w] = pixels.dims();
        let x = self.patch_embed.forward(pixels);
        let [_, patches, d] = x.dims();
        let table = self.pos_embed.val();
        assert_eq!(
            table.dims()[1],
            patches + 1,
            "a {h}×{w} image gives {patches} patches, but the position table has {} rows",
            table.dims()[1] - 1
        );
        let cls = self.cls_token.val().expand([batch, 1, d]);
        let mut x = Tensor::cat(vec![cls, x], 1) + table;
        for block in &self.blocks {
            x = block.forward(x, &AttentionMask::none(), None);
        }
        self.norm.forward(x)
    }

    /// HF pooler output, `tanh(dense(h[:, 0]))`, when the model has one.
    pub fn pool(&self, last_hidden_state: Tensor<3>) -> Option<Tensor<2>> {
        let pooler = self.pooler.as_ref()?;
        Some(pooler.dense.forward(first_token(last_hidden_state)).tanh())
    }

    /// Re-grids the position table for `image_size` inputs (ALBEF fine-tunes
    /// at 384 a model pretrained at 256).
    pub fn interpolate_to(mut self, image_size: usize) -> Self {
        let grid = image_size / self.patch_size;
        let table = interpolate_pos_embed(self.pos_embed.val(), grid);
        self.pos_embed = self.pos_embed.map(|_| table);
        self
    }
}

/// ALBEF's `interpolate_pos_embed`: keeps the `[CLS]` row and resamples the
/// square patch grid to `new_grid × new_grid` with PyTorch's bicubic
/// (`align_corners=False`, a = −0.75, no antialiasing). Unchanged when the
/// grid already has that size.
///
/// # Shapes
/// `[1, 1 + g², d]` → `[1, 1 + new_grid², d]`
pub fn interpolate_pos_embed(pos_embed: Tensor<3>, new_grid: usize) -> Tensor<3> {
    let [one, tokens, d] = pos_embed.dims();
    let old_grid = ((tokens - 1) as f64).sqrt() as usize;
    assert_eq!(
        old_grid * old_grid + 1,
        tokens,
        "position table of {tokens} rows is not 1 + a square grid"
    );
    if old_grid == new_grid {
        return pos_embed;
    }
    let cls = pos_embed.clone().slice([0..one, 0..1]);
    let grid = pos_embed
        .slice([0..one, 1..tokens])
        .reshape([1, old_grid, old_grid, d])
        .permute([0, 3, 1, 2]);
    let options = InterpolateOptions::new(InterpolateMode::Bicubic)
        .with_align_corners(false)
        .with_output_size([new_grid, new_grid]);
    let grid =
        interpolate(grid, options)
            .permute([0, 2, 3, 1])
            .reshape([1, new_grid * new_grid, d]);
    Tensor::cat(vec![cls, grid], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_keeps_cls_and_identity_grid() {
        let device = Device::flex();
        let table = Tensor::<3>::random([1, 17, 6], Distribution::Default, &device);
        let same = interpolate_pos_embed(table.clone(), 4);
        same.into_data().assert_eq(&table.clone().into_data(), true);
        let bigger = interpolate_pos_embed(table.clone(), 6);
        assert_eq!(bigger.dims(), [1, 37, 6]);
        bigger
            .slice([0..1, 0..1])
            .into_data()
            .assert_eq(&table.slice([0..1, 0..1]).into_data(), true);
    }

    #[test]
    fn output_shape() {
        let device = Device::flex();
        let config = VitConfig {
            image_size: 16,
            patch_size: 4,
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 16,
            ..VitConfig::default()
        };
        let vit = config.init(&device);
        let out = vit.forward(Tensor::zeros([2, 3, 16, 16], &device));
        assert_eq!(out.dims(), [2, 17, 8]);
    }
}
