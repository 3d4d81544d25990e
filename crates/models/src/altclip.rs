//! AltCLIP (Chen et al., 2022, arXiv 2211.06679): CLIP with its text tower
//! replaced by an XLM-R student.
//!
//! Reference: HF `transformers` `models/altclip/modeling_altclip.py` (v5.23)
//! and FlagAI's AltCLIP. The text side is XLM-R ([`BertModel`] with RoBERTa
//! positions, no pooler), then `pre_LN` on the sequence, `transformation`
//! to `project_dim`, pooled at position 0 (`<s>`), then `text_projection`.
//! The vision side is CLIP's ([`ClipVisionTransformer`]).

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::bert::{BertConfig, BertFamily, BertModel, TextInput};
use crate::blocks::{Activation, first_token};
use crate::clip::{ClipVisionConfig, ClipVisionTransformer, ContrastiveOutput, contrastive_logits};

/// Configuration of the AltCLIP text tower (HF `AltCLIPTextConfig`): the
/// XLM-R fields plus `project_dim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AltClipTextConfig {
    /// The XLM-R encoder.
    #[serde(flatten)]
    pub roberta: BertConfig,
    /// Width of `transformation`'s output.
    #[serde(default = "default_project_dim")]
    pub project_dim: usize,
}

fn default_project_dim() -> usize {
    768
}

impl Default for AltClipTextConfig {
    /// BAAI/AltCLIP's text tower (XLM-R large).
    fn default() -> Self {
        Self {
            roberta: BertConfig {
                model_type: BertFamily::Roberta,
                vocab_size: 250002,
                hidden_size: 1024,
                num_hidden_layers: 24,
                num_attention_heads: 16,
                intermediate_size: 4096,
                hidden_act: Activation::Gelu,
                attention_probs_dropout_prob: 0.0,
                max_position_embeddings: 514,
                type_vocab_size: 1,
                layer_norm_eps: 1e-5,
                pad_token_id: 1,
                ..BertConfig::base()
            },
            project_dim: default_project_dim(),
        }
    }
}

impl AltClipTextConfig {
    /// Builds the text tower. The encoder always uses RoBERTa positions and
    /// has no pooler, whatever the config's `model_type` says.
    pub fn init(&self, device: &Device) -> AltClipTextModel {
        let roberta = BertConfig {
            model_type: BertFamily::Roberta,
            add_pooling_layer: false,
            fusion_layer: None,
            ..self.roberta.clone()
        };
        let hidden = roberta.hidden_size;
        AltClipTextModel {
            roberta: roberta.init(device),
            pre_ln: LayerNormConfig::new(hidden)
                .with_epsilon(roberta.layer_norm_eps)
                .init(device),
            transformation: LinearConfig::new(hidden, self.project_dim)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: roberta.initializer_range,
                })
                .init(device),
        }
    }
}

/// Configuration of [`AltClipModel`] (HF `AltCLIPConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AltClipConfig {
    /// Text tower.
    pub text_config: AltClipTextConfig,
    /// Vision tower.
    pub vision_config: ClipVisionConfig,
    /// Width of the joint embedding space.
    pub projection_dim: usize,
    /// Initial `logit_scale`.
    pub logit_scale_init_value: f64,
}

impl Default for AltClipConfig {
    fn default() -> Self {
        Self {
            text_config: AltClipTextConfig::default(),
            vision_config: ClipVisionConfig::default(),
            projection_dim: 768,
            logit_scale_init_value: 2.6592,
        }
    }
}

impl AltClipConfig {
    /// Builds the model.
    pub fn init(&self, device: &Device) -> AltClipModel {
        let projection = |d_in| {
            LinearConfig::new(d_in, self.projection_dim)
                .with_bias(false)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        AltClipModel {
            text_model: self.text_config.init(device),
            vision_model: self.vision_config.init(device),
            visual_projection: projection(self.vision_config.hidden_size),
            text_projection: projection(self.text_config.project_dim),
            logit_scale: Param::from_tensor(Tensor::full([1], self.logit_scale_init_value, device)),
        }
    }
}

/// Output of [`AltClipTextModel::forward`].
#[derive(Debug, Clone)]
pub struct AltClipTextOutput {
    /// XLM-R's last layer, `[batch, seq, hidden]`.
    pub roberta_last_hidden_state: Tensor<3>,
    /// `transformation(pre_LN(h))`, `[batch, seq, project_dim]` (HF's
    /// `AltCLIPTextModel` `last_hidden_state`).
    pub last_hidden_state: Tensor<3>,
    /// Row 0 of `last_hidden_state`, `[batch, project_dim]`.
    pub pooler_output: Tensor<2>,
}

/// The AltCLIP text tower: XLM-R and its projection head.
#[derive(Module, Debug)]
pub struct AltClipTextModel {
    /// XLM-R encoder (no pooler).
    pub roberta: BertModel,
    /// `pre_LN` in the checkpoints.
    pub pre_ln: LayerNorm,
    /// Linear `hidden → project_dim`.
    pub transformation: Linear,
}

impl AltClipTextModel {
    /// Runs XLM-R and the head.
    pub fn forward(&self, input: &TextInput) -> AltClipTextOutput {
        let roberta_last_hidden_state = self.roberta.forward(input, None).last_hidden_state;
        let last_hidden_state = self
            .transformation
            .forward(self.pre_ln.forward(roberta_last_hidden_state.clone()));
        let pooler_output = first_token(last_hidden_state.clone());
        AltClipTextOutput {
            roberta_last_hidden_state,
            last_hidden_state,
            pooler_output,
        }
    }
}

/// AltCLIP: XLM-R text tower, CLIP vision tower, projections, temperature.
#[derive(Module, Debug)]
pub struct AltClipModel {
    /// Text tower.
    pub text_model: AltClipTextModel,
    /// Vision tower.
    pub vision_model: ClipVisionTransformer,
    /// Bias-free projection of the pooled image token.
    pub visual_projection: Linear,
    /// Bias-free projection `project_dim → projection_dim`.
    pub text_projection: Linear,
    /// Log inverse temperature, `[1]`.
    pub logit_scale: Param<Tensor<1>>,
}

impl AltClipModel {
    /// Projected, unnormalised text features `[batch, projection_dim]`.
    pub fn text_features(&self, input: &TextInput) -> Tensor<2> {
        self.text_projection
            .forward(self.text_model.forward(input).pooler_output)
    }

    /// Projected, unnormalised image features `[batch, projection_dim]`.
    pub fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.visual_projection
            .forward(self.vision_model.forward(pixels).pooler_output)
    }

    /// Embeddings and logits for a batch of texts and a batch of images.
    pub fn forward(&self, input: &TextInput, pixels: Tensor<4>) -> ContrastiveOutput {
        contrastive_logits(
            self.text_features(input),
            self.image_features(pixels),
            self.logit_scale.val(),
        )
    }
}
