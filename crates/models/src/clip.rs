//! CLIP (Radford et al., 2021): AltCLIP's teacher and image tower.
//!
//! Reference: HF `transformers` `models/clip/modeling_clip.py` (v5.23).
//! Both towers are pre-LN transformers ([`TransformerLayer`]) with
//! quick-GELU. The text tower is causal, ends with `final_layer_norm` and
//! pools the EOS token; the vision tower prepends `class_embedding`, applies
//! `pre_layrnorm` (sic, the checkpoints' spelling) before the layers and
//! `post_layernorm` to the pooled `[CLS]` only. Field paths follow
//! `CLIPModel`'s state dict; [`crate::import::clip`] renames the layers.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::{Bool, Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::blocks::{
    Activation, AttentionMask, NormPosition, TransformerLayer, TransformerLayerConfig, first_token,
    first_true_index, gather_rows, l2_normalize,
};

/// Configuration of the CLIP text tower (HF `CLIPTextConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Context length.
    pub max_position_embeddings: usize,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Padding token id.
    pub pad_token_id: Option<i64>,
    /// Start token id.
    pub bos_token_id: Option<i64>,
    /// End token id; `2` selects HF's legacy pooling at `argmax(ids)`.
    pub eos_token_id: Option<i64>,
    /// Standard deviation of the initial weights.
    pub initializer_range: f64,
}

impl Default for ClipTextConfig {
    /// `openai/clip-vit-base-patch32`'s text tower (eos 2: legacy pooling).
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            attention_dropout: 0.0,
            pad_token_id: Some(1),
            bos_token_id: Some(49406),
            eos_token_id: Some(2),
            initializer_range: 0.02,
        }
    }
}

/// Configuration of the CLIP vision tower (HF `CLIPVisionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    /// Token width.
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Input resolution (square).
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Standard deviation of the initial weights.
    pub initializer_range: f64,
}

impl Default for ClipVisionConfig {
    /// `openai/clip-vit-base-patch32`'s vision tower.
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            attention_dropout: 0.0,
            initializer_range: 0.02,
        }
    }
}

/// Configuration of [`ClipModel`] (HF `CLIPConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    /// Text tower.
    pub text_config: ClipTextConfig,
    /// Vision tower.
    pub vision_config: ClipVisionConfig,
    /// Width of the joint embedding space.
    pub projection_dim: usize,
    /// Initial `logit_scale` (log of the inverse temperature; ln(1/0.07)).
    pub logit_scale_init_value: f64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            text_config: ClipTextConfig::default(),
            vision_config: ClipVisionConfig::default(),
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
        }
    }
}

/// A CLIP encoder layer: pre-LN, no hidden dropout.
fn clip_layer(
    d_model: usize,
    num_heads: usize,
    d_ff: usize,
    activation: Activation,
    layer_norm_eps: f64,
    attention_dropout: f64,
    std: f64,
) -> TransformerLayerConfig {
    TransformerLayerConfig {
        d_model,
        num_heads,
        d_ff,
        activation,
        layer_norm_eps,
        norm_position: NormPosition::Pre,
        cross_attention_width: None,
        qkv_bias: true,
        attention_dropout,
        hidden_dropout: 0.0,
        initializer: Initializer::Normal { mean: 0.0, std },
    }
}

impl ClipTextConfig {
    /// Builds the text tower.
    pub fn init(&self, device: &Device) -> ClipTextTransformer {
        let init = Initializer::Normal {
            mean: 0.0,
            std: self.initializer_range,
        };
        let embedding = |n| {
            EmbeddingConfig::new(n, self.hidden_size)
                .with_initializer(init.clone())
                .init(device)
        };
        ClipTextTransformer {
            embeddings: ClipTextEmbeddings {
                token_embedding: embedding(self.vocab_size),
                position_embedding: embedding(self.max_position_embeddings),
            },
            encoder: ClipEncoder::init(
                self.num_hidden_layers,
                clip_layer(
                    self.hidden_size,
                    self.num_attention_heads,
                    self.intermediate_size,
                    self.hidden_act,
                    self.layer_norm_eps,
                    self.attention_dropout,
                    self.initializer_range,
                ),
                device,
            ),
            final_layer_norm: LayerNormConfig::new(self.hidden_size)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            pooling: match self.eos_token_id {
                Some(2) | None => EosPooling::ArgmaxId,
                Some(id) => EosPooling::FirstId(id),
            },
        }
    }
}

impl ClipVisionConfig {
    /// Builds the vision tower.
    pub fn init(&self, device: &Device) -> ClipVisionTransformer {
        let d = self.hidden_size;
        let positions = (self.image_size / self.patch_size).pow(2) + 1;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        ClipVisionTransformer {
            embeddings: ClipVisionEmbeddings {
                class_embedding: Param::from_tensor(Tensor::random(
                    [d],
                    Distribution::Normal(0.0, self.initializer_range),
                    device,
                )),
                patch_embedding: Conv2dConfig::new(
                    [self.num_channels, d],
                    [self.patch_size, self.patch_size],
                )
                .with_stride([self.patch_size, self.patch_size])
                .with_bias(false)
                .init(device),
                position_embedding: EmbeddingConfig::new(positions, d)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: self.initializer_range,
                    })
                    .init(device),
            },
            pre_layrnorm: norm(),
            encoder: ClipEncoder::init(
                self.num_hidden_layers,
                clip_layer(
                    d,
                    self.num_attention_heads,
                    self.intermediate_size,
                    self.hidden_act,
                    self.layer_norm_eps,
                    self.attention_dropout,
                    self.initializer_range,
                ),
                device,
            ),
            post_layernorm: norm(),
        }
    }
}

impl ClipConfig {
    /// Builds the whole model.
    pub fn init(&self, device: &Device) -> ClipModel {
        let projection = |d_in| {
            LinearConfig::new(d_in, self.projection_dim)
                .with_bias(false)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        ClipModel {
            text_model: self.text_config.init(device),
            vision_model: self.vision_config.init(device),
            visual_projection: projection(self.vision_config.hidden_size),
            text_projection: projection(self.text_config.hidden_size),
            logit_scale: Param::from_tensor(Tensor::full([1], self.logit_scale_init_value, device)),
        }
    }
}

/// Where the text tower's sentence embedding is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EosPooling {
    /// At `argmax(input_ids)` (HF's rule when `eos_token_id == 2`, which the
    /// OpenAI checkpoints carry; the EOT token has the largest id).
    ArgmaxId,
    /// At the first occurrence of this id.
    FirstId(i64),
}

impl EosPooling {
    /// Position of the pooled token per row, `[batch, 1]`.
    pub fn index(self, input_ids: Tensor<2, Int>) -> Tensor<2, Int> {
        let hit = match self {
            EosPooling::ArgmaxId => {
                let [batch, seq] = input_ids.dims();
                let max = input_ids.clone().max_dim(1).expand([batch, seq]);
                input_ids.equal(max)
            }
            EosPooling::FirstId(id) => input_ids.equal_elem(id),
        };
        first_true_index(hit)
    }
}

/// Token and position embeddings of the text tower.
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    /// `[vocab, hidden]`.
    pub token_embedding: Embedding,
    /// `[context, hidden]`.
    pub position_embedding: Embedding,
}

/// A stack of pre-LN layers (`encoder.layers.N`).
#[derive(Module, Debug)]
pub struct ClipEncoder {
    /// The layers.
    pub layers: Vec<TransformerLayer>,
}

impl ClipEncoder {
    fn init(count: usize, layer: TransformerLayerConfig, device: &Device) -> Self {
        Self {
            layers: (0..count).map(|_| layer.init(device)).collect(),
        }
    }
}

/// Output of a tower.
#[derive(Debug, Clone)]
pub struct TowerOutput {
    /// Text: after `final_layer_norm`. Vision: before `post_layernorm`.
    pub last_hidden_state: Tensor<3>,
    /// Text: the EOS token. Vision: `post_layernorm([CLS])`.
    pub pooler_output: Tensor<2>,
}

/// The CLIP text tower.
#[derive(Module, Debug)]
pub struct ClipTextTransformer {
    /// Embeddings.
    pub embeddings: ClipTextEmbeddings,
    /// Causal pre-LN layers.
    pub encoder: ClipEncoder,
    /// LayerNorm over all positions.
    pub final_layer_norm: LayerNorm,
    /// EOS pooling rule.
    #[module(skip)]
    pub pooling: EosPooling,
}

impl ClipTextTransformer {
    /// # Shapes
    /// `input_ids`, `padding`: `[batch, seq]` → `[batch, seq, hidden]` and `[batch, hidden]`
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
    ) -> TowerOutput {
        let [_, seq] = input_ids.dims();
        let positions = self
            .embeddings
            .position_embedding
            .weight
            .val()
            .slice(0..seq)
            .unsqueeze::<3>();
        let mut x = self.embeddings.token_embedding.forward(input_ids.clone()) + positions;
        let mask = AttentionMask {
            key_padding: padding,
            causal: true,
        };
        for layer in &self.encoder.layers {
            x = layer.forward(x, &mask, None);
        }
        let last_hidden_state = self.final_layer_norm.forward(x);
        let pooler_output = gather_rows(last_hidden_state.clone(), self.pooling.index(input_ids));
        TowerOutput {
            last_hidden_state,
            pooler_output,
        }
    }
}

/// `[CLS]`, patch and position embeddings of the vision tower.
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings {
    /// `[hidden]`.
    pub class_embedding: Param<Tensor<1>>,
    /// Bias-free patch convolution.
    pub patch_embedding: Conv2d,
    /// `[1 + patches, hidden]`.
    pub position_embedding: Embedding,
}

/// The CLIP (and AltCLIP) vision tower.
#[derive(Module, Debug)]
pub struct ClipVisionTransformer {
    /// Embeddings.
    pub embeddings: ClipVisionEmbeddings,
    /// LayerNorm before the layers (sic).
    pub pre_layrnorm: LayerNorm,
    /// Pre-LN layers.
    pub encoder: ClipEncoder,
    /// LayerNorm of the pooled `[CLS]`.
    pub post_layernorm: LayerNorm,
}

impl ClipVisionTransformer {
    /// # Shapes
    /// `[batch, channels, h, w]` → `[batch, 1 + patches, hidden]` and `[batch, hidden]`
    pub fn forward(&self, pixels: Tensor<4>) -> TowerOutput {
        let patches = self.embeddings.patch_embedding.forward(pixels);
        let [batch, d, gh, gw] = patches.dims();
        let patches = patches.reshape([batch, d, gh * gw]).swap_dims(1, 2);
        let cls = self
            .embeddings
            .class_embedding
            .val()
            .reshape([1, 1, d])
            .expand([batch, 1, d]);
        let table = self.embeddings.position_embedding.weight.val();
        assert_eq!(
            table.dims()[0],
            gh * gw + 1,
            "the image gives {} patches, but the position table has {} rows",
            gh * gw,
            table.dims()[0] - 1
        );
        let mut x = self
            .pre_layrnorm
            .forward(Tensor::cat(vec![cls, patches], 1) + table.unsqueeze::<3>());
        for layer in &self.encoder.layers {
            x = layer.forward(x, &AttentionMask::none(), None);
        }
        TowerOutput {
            pooler_output: self.post_layernorm.forward(first_token(x.clone())),
            last_hidden_state: x,
        }
    }
}

/// Normalised embeddings and the similarity logits of a CLIP-style model.
#[derive(Debug, Clone)]
pub struct ContrastiveOutput {
    /// `[texts, dim]`, unit norm.
    pub text_embeds: Tensor<2>,
    /// `[images, dim]`, unit norm.
    pub image_embeds: Tensor<2>,
    /// `[texts, images]`, cosine × `exp(logit_scale)`.
    pub logits_per_text: Tensor<2>,
    /// `[images, texts]`.
    pub logits_per_image: Tensor<2>,
}

/// Normalises projected features and scores every text against every image.
/// As in HF, the norm has no epsilon and the scale is not clamped.
pub fn contrastive_logits(
    text_features: Tensor<2>,
    image_features: Tensor<2>,
    logit_scale: Tensor<1>,
) -> ContrastiveOutput {
    let text_embeds = l2_normalize(text_features, 0.0);
    let image_embeds = l2_normalize(image_features, 0.0);
    let scale = logit_scale.exp().unsqueeze::<2>();
    let logits_per_text = text_embeds.clone().matmul(image_embeds.clone().transpose()) * scale;
    ContrastiveOutput {
        logits_per_image: logits_per_text.clone().transpose(),
        text_embeds,
        image_embeds,
        logits_per_text,
    }
}

/// CLIP: two towers, their projections and the learnable temperature.
#[derive(Module, Debug)]
pub struct ClipModel {
    /// Text tower.
    pub text_model: ClipTextTransformer,
    /// Vision tower.
    pub vision_model: ClipVisionTransformer,
    /// Bias-free projection of the pooled image token.
    pub visual_projection: Linear,
    /// Bias-free projection of the pooled text token.
    pub text_projection: Linear,
    /// Log inverse temperature, `[1]` (a 0-dim scalar in the checkpoints).
    pub logit_scale: Param<Tensor<1>>,
}

impl ClipModel {
    /// Projected, unnormalised text features `[batch, projection_dim]`.
    pub fn text_features(
        &self,
        input_ids: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
    ) -> Tensor<2> {
        self.text_projection
            .forward(self.text_model.forward(input_ids, padding).pooler_output)
    }

    /// Projected, unnormalised image features `[batch, projection_dim]`.
    pub fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.visual_projection
            .forward(self.vision_model.forward(pixels).pooler_output)
    }

    /// Embeddings and logits for a batch of texts and a batch of images.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        pixels: Tensor<4>,
    ) -> ContrastiveOutput {
        contrastive_logits(
            self.text_features(input_ids, padding),
            self.image_features(pixels),
            self.logit_scale.val(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_pooling_takes_the_first_largest_id() {
        // CLIP's tokenizer pads with the EOT id, which is also the largest:
        // the first EOT must win.
        let device = Device::flex();
        let ids = Tensor::<2, Int>::from_data([[5, 9, 3, 9, 9], [5, 2, 7, 1, 1]], &device);
        let index = EosPooling::ArgmaxId.index(ids).into_data();
        assert_eq!(
            index.convert::<i64>().try_to_vec::<i64>().unwrap(),
            vec![1, 2]
        );
    }
}
