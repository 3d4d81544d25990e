//! BERT (Devlin et al., 2019) and its RoBERTa/XLM-R variant, with ALBEF's
//! split into a text encoder and a fusion encoder.
//!
//! Reference: HF `transformers` `models/bert/modeling_bert.py` and
//! `models/xlm_roberta/modeling_xlm_roberta.py` (v5.23), and ALBEF's
//! `models/xbert.py` (salesforce/ALBEF@b9727e4). ALBEF cuts the 12 layers at
//! `fusion_layer` (6): layers `0..6` are the text encoder (self-attention
//! only, [`BertModel::forward_text`]); layers `6..12` are the fusion encoder,
//! each with a cross-attention sub-layer over the image tokens
//! ([`BertModel::forward_fusion`]). Without `fusion_layer` this is plain BERT.
//!
//! Field paths follow the checkpoints (`embeddings.word_embeddings`,
//! `encoder.layer.N`, `pooler.dense`, `cls.predictions`); the layer internals
//! are the shared [`TransformerLayer`], renamed by [`crate::import::bert`].

use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::module::linear;
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::blocks::{
    Activation, AttentionMask, CrossAttentionInput, NormPosition, TransformerLayer,
    TransformerLayerConfig,
};

/// Which family a BERT-shaped config belongs to, from HF's `model_type`.
///
/// The only behavioural difference is how position ids are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum BertFamily {
    /// BERT: positions `0, 1, 2, …`.
    #[default]
    #[serde(rename = "bert")]
    Bert,
    /// RoBERTa/XLM-R/AltCLIP text: positions count non-padding tokens from
    /// `pad_token_id + 1`; padding tokens get `pad_token_id`.
    #[serde(
        rename = "xlm-roberta",
        alias = "roberta",
        alias = "xlm_roberta",
        alias = "altclip_text_model"
    )]
    Roberta,
}

/// Configuration of [`BertModel`], with HF `config.json` field names.
///
/// Unknown fields are ignored and missing ones take BERT-base defaults, so an
/// HF config deserialises directly. `fusion_layer` and `encoder_width` are
/// ALBEF's additions (`configs/config_bert.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    /// `"bert"` or `"xlm-roberta"` (decides position ids).
    pub model_type: BertFamily,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Number of layers (text + fusion).
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// Dropout after embeddings and each sub-layer.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Size of the position table.
    pub max_position_embeddings: usize,
    /// Number of token types.
    pub type_vocab_size: usize,
    /// Standard deviation of the initial weights.
    pub initializer_range: f64,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding token id.
    pub pad_token_id: usize,
    /// ALBEF: index of the first fusion (cross-attention) layer.
    pub fusion_layer: Option<usize>,
    /// ALBEF: width of the image tokens the fusion layers attend to
    /// (defaults to `hidden_size`).
    pub encoder_width: Option<usize>,
    /// Whether [`BertModel`] has the pooler (`BertModel(add_pooling_layer=…)`).
    /// Not an HF config field; set by the loader from the checkpoint.
    #[serde(skip)]
    pub add_pooling_layer: bool,
}

impl Default for BertConfig {
    fn default() -> Self {
        Self::base()
    }
}

impl BertConfig {
    /// `bert-base-uncased` (its `config.json`), without fusion layers.
    pub fn base() -> Self {
        Self {
            model_type: BertFamily::Bert,
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            fusion_layer: None,
            encoder_width: None,
            add_pooling_layer: false,
        }
    }

    /// ALBEF's `configs/config_bert.json`: BERT-base cut at layer 6, fusion
    /// layers attending to 768-wide ViT-B tokens.
    pub fn albef_base() -> Self {
        Self {
            fusion_layer: Some(6),
            encoder_width: Some(768),
            ..Self::base()
        }
    }

    /// Number of text-only layers: `fusion_layer`, or all layers.
    pub fn text_layers(&self) -> usize {
        self.fusion_layer.unwrap_or(self.num_hidden_layers)
    }

    /// Builds the model with the reference initialisation (normal with
    /// `initializer_range`, LayerNorms at identity).
    ///
    /// # Panics
    /// If `fusion_layer` exceeds the number of layers or the width is not
    /// divisible by the number of heads.
    pub fn init(&self, device: &Device) -> BertModel {
        let text_layers = self.text_layers();
        assert!(
            text_layers <= self.num_hidden_layers,
            "fusion_layer {text_layers} exceeds num_hidden_layers {}",
            self.num_hidden_layers
        );
        let init = Initializer::Normal {
            mean: 0.0,
            std: self.initializer_range,
        };
        let embedding = |n| {
            EmbeddingConfig::new(n, self.hidden_size)
                .with_initializer(init.clone())
                .init(device)
        };
        let layer = |cross: bool| {
            TransformerLayerConfig {
                d_model: self.hidden_size,
                num_heads: self.num_attention_heads,
                d_ff: self.intermediate_size,
                activation: self.hidden_act,
                layer_norm_eps: self.layer_norm_eps,
                norm_position: NormPosition::Post,
                cross_attention_width: cross
                    .then(|| self.encoder_width.unwrap_or(self.hidden_size)),
                qkv_bias: true,
                attention_dropout: self.attention_probs_dropout_prob,
                hidden_dropout: self.hidden_dropout_prob,
                initializer: init.clone(),
            }
            .init(device)
        };
        BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: embedding(self.vocab_size),
                position_embeddings: embedding(self.max_position_embeddings),
                token_type_embeddings: embedding(self.type_vocab_size),
                layer_norm: LayerNormConfig::new(self.hidden_size)
                    .with_epsilon(self.layer_norm_eps)
                    .init(device),
                dropout: DropoutConfig::new(self.hidden_dropout_prob).init(),
                positions: match self.model_type {
                    BertFamily::Bert => PositionIds::Absolute,
                    BertFamily::Roberta => PositionIds::AfterPadding {
                        padding_idx: self.pad_token_id,
                    },
                },
            },
            encoder: BertEncoder {
                layer: (0..self.num_hidden_layers)
                    .map(|i| layer(i >= text_layers))
                    .collect(),
            },
            pooler: self.add_pooling_layer.then(|| BertPooler {
                dense: LinearConfig::new(self.hidden_size, self.hidden_size)
                    .with_initializer(init.clone())
                    .init(device),
            }),
            text_layers,
        }
    }

    /// Builds the masked-LM model: [`BertModel`] without pooler plus the
    /// `cls.predictions` head.
    pub fn init_masked_lm(&self, device: &Device) -> BertForMaskedLm {
        let config = BertConfig {
            add_pooling_layer: false,
            ..self.clone()
        };
        BertForMaskedLm {
            bert: config.init(device),
            cls: Some(self.init_mlm_head(device)),
        }
    }

    /// Builds the `cls.predictions` head alone.
    pub fn init_mlm_head(&self, device: &Device) -> BertOnlyMlmHead {
        BertOnlyMlmHead {
            predictions: BertLmPredictionHead {
                transform: BertPredictionHeadTransform {
                    dense: LinearConfig::new(self.hidden_size, self.hidden_size)
                        .with_initializer(Initializer::Normal {
                            mean: 0.0,
                            std: self.initializer_range,
                        })
                        .init(device),
                    layer_norm: LayerNormConfig::new(self.hidden_size)
                        .with_epsilon(self.layer_norm_eps)
                        .init(device),
                    activation: self.hidden_act,
                },
                bias: Param::from_tensor(Tensor::zeros([self.vocab_size], device)),
            },
        }
    }
}

/// How position ids are derived from input ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionIds {
    /// `0, 1, …, len-1` (BERT).
    Absolute,
    /// RoBERTa: `cumsum(id != pad) * (id != pad) + pad`, so real tokens count
    /// from `padding_idx + 1` and padding sits at `padding_idx`.
    AfterPadding {
        /// The padding token id (also the padding position).
        padding_idx: usize,
    },
}

/// Word + position + token-type embeddings, then LayerNorm and dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// Token embeddings `[vocab, hidden]` (also the tied MLM decoder).
    pub word_embeddings: Embedding,
    /// Position embeddings `[max_positions, hidden]`.
    pub position_embeddings: Embedding,
    /// Token-type embeddings `[type_vocab, hidden]`.
    pub token_type_embeddings: Embedding,
    /// `LayerNorm` in the checkpoints.
    pub layer_norm: LayerNorm,
    /// Dropout after the LayerNorm.
    pub dropout: Dropout,
    /// Position-id rule.
    #[module(skip)]
    pub positions: PositionIds,
}

impl BertEmbeddings {
    /// Embeds token ids; `token_type_ids` default to zeros as in HF.
    ///
    /// # Shapes
    /// `input_ids`: `[batch, seq]` → `[batch, seq, hidden]`
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Option<Tensor<2, Int>>,
    ) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let words = self.word_embeddings.forward(input_ids.clone());
        let token_types = match token_type_ids {
            Some(ids) => self.token_type_embeddings.forward(ids),
            None => self
                .token_type_embeddings
                .weight
                .val()
                .slice(0..1)
                .unsqueeze::<3>(),
        };
        let positions = match self.positions {
            PositionIds::Absolute => self
                .position_embeddings
                .weight
                .val()
                .slice(0..seq)
                .unsqueeze::<3>(),
            PositionIds::AfterPadding { padding_idx } => {
                let real = input_ids.not_equal_elem(padding_idx as i64).int();
                let ids = real.clone().cumsum(1) * real + padding_idx as i64;
                self.position_embeddings.forward(ids.reshape([batch, seq]))
            }
        };
        let x = words + token_types + positions;
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

/// The stack of layers (`encoder.layer.N`).
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// Layers `0..text_layers` are text-only, the rest have cross-attention.
    pub layer: Vec<TransformerLayer>,
}

/// `tanh(dense(h[:, 0]))`.
#[derive(Module, Debug)]
pub struct BertPooler {
    /// The pooler projection.
    pub dense: Linear,
}

/// Text input to [`BertModel`].
#[derive(Debug, Clone)]
pub struct TextInput {
    /// `[batch, seq]` token ids.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, seq]`, `true` = padding.
    pub padding: Option<Tensor<2, Bool>>,
    /// `[batch, seq]` token types (zeros when `None`).
    pub token_type_ids: Option<Tensor<2, Int>>,
}

impl TextInput {
    /// Ids with no padding and default token types.
    pub fn new(input_ids: Tensor<2, Int>) -> Self {
        Self {
            input_ids,
            padding: None,
            token_type_ids: None,
        }
    }

    /// Sets the padding mask (`true` = padding).
    pub fn with_padding(mut self, padding: Tensor<2, Bool>) -> Self {
        self.padding = Some(padding);
        self
    }

    /// Sets the token types.
    pub fn with_token_type_ids(mut self, token_type_ids: Tensor<2, Int>) -> Self {
        self.token_type_ids = Some(token_type_ids);
        self
    }

    fn mask(&self) -> AttentionMask {
        AttentionMask {
            key_padding: self.padding.clone(),
            causal: false,
        }
    }
}

/// BERT/XLM-R encoder, optionally with ALBEF fusion layers.
#[derive(Module, Debug)]
pub struct BertModel {
    /// Input embeddings.
    pub embeddings: BertEmbeddings,
    /// Transformer layers.
    pub encoder: BertEncoder,
    /// Pooler (HF `BertModel(add_pooling_layer=True)` only).
    pub pooler: Option<BertPooler>,
    /// Number of text-only layers (ALBEF `fusion_layer`).
    pub text_layers: usize,
}

/// Output of [`BertModel::forward`].
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<3>,
    /// `[batch, hidden]`, when the model has a pooler.
    pub pooler_output: Option<Tensor<2>>,
}

impl BertModel {
    /// Runs every layer (ALBEF's `mode='multi_modal'`). `cross` is required
    /// when the model has fusion layers.
    pub fn forward(&self, input: &TextInput, cross: Option<&CrossAttentionInput>) -> BertOutput {
        let x = self
            .embeddings
            .forward(input.input_ids.clone(), input.token_type_ids.clone());
        let last_hidden_state =
            self.run_layers(x, 0..self.encoder.layer.len(), &input.mask(), cross);
        let pooler_output = self.pooler.as_ref().map(|pooler| {
            let [batch, _, hidden] = last_hidden_state.dims();
            let first = last_hidden_state
                .clone()
                .slice([0..batch, 0..1])
                .reshape([batch, hidden]);
            pooler.dense.forward(first).tanh()
        });
        BertOutput {
            last_hidden_state,
            pooler_output,
        }
    }

    /// The text encoder: embeddings and layers `0..fusion_layer`
    /// (ALBEF's `mode='text'`).
    pub fn forward_text(&self, input: &TextInput) -> Tensor<3> {
        let x = self
            .embeddings
            .forward(input.input_ids.clone(), input.token_type_ids.clone());
        self.run_layers(x, 0..self.text_layers, &input.mask(), None)
    }

    /// The fusion encoder: layers `fusion_layer..` on text states that
    /// attend to `image` (ALBEF's `mode='fusion'`).
    ///
    /// # Shapes
    /// `text_embeds`: `[batch, seq, hidden]`, `padding`: `[batch, seq]`
    pub fn forward_fusion(
        &self,
        text_embeds: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        image: &CrossAttentionInput,
    ) -> Tensor<3> {
        let mask = AttentionMask {
            key_padding: padding,
            causal: false,
        };
        self.run_layers(
            text_embeds,
            self.text_layers..self.encoder.layer.len(),
            &mask,
            Some(image),
        )
    }

    fn run_layers(
        &self,
        mut x: Tensor<3>,
        layers: std::ops::Range<usize>,
        mask: &AttentionMask,
        cross: Option<&CrossAttentionInput>,
    ) -> Tensor<3> {
        for layer in &self.encoder.layer[layers] {
            x = layer.forward(x, mask, cross);
        }
        x
    }
}

/// `cls.predictions.transform`: dense, activation, LayerNorm.
#[derive(Module, Debug)]
pub struct BertPredictionHeadTransform {
    /// Dense layer.
    pub dense: Linear,
    /// `LayerNorm` in the checkpoints.
    pub layer_norm: LayerNorm,
    /// `hidden_act` of the config.
    #[module(skip)]
    pub activation: Activation,
}

/// `cls.predictions`: transform, then the decoder tied to the word
/// embeddings plus its own bias.
#[derive(Module, Debug)]
pub struct BertLmPredictionHead {
    /// The transform.
    pub transform: BertPredictionHeadTransform,
    /// Output bias `[vocab]`.
    pub bias: Param<Tensor<1>>,
}

/// `cls` of `BertForMaskedLM`.
#[derive(Module, Debug)]
pub struct BertOnlyMlmHead {
    /// The prediction head.
    pub predictions: BertLmPredictionHead,
}

impl BertOnlyMlmHead {
    /// Vocabulary logits. The decoder weight is the word embedding matrix
    /// itself, so the tie holds through training by construction.
    ///
    /// # Shapes
    /// `hidden`: `[batch, seq, hidden]` → `[batch, seq, vocab]`
    pub fn forward(&self, hidden: Tensor<3>, word_embeddings: &Embedding) -> Tensor<3> {
        let t = &self.predictions.transform;
        let x = t
            .layer_norm
            .forward(t.activation.forward(t.dense.forward(hidden)));
        linear(
            x,
            word_embeddings.weight.val().transpose(),
            Some(self.predictions.bias.val()),
        )
    }
}

/// `BertForMaskedLM`: the encoder (no pooler) and the MLM head.
///
/// The head is optional because ALBEF's fine-tuned checkpoints keep only the
/// encoder of what was, in pretraining, a `BertForMaskedLM`.
#[derive(Module, Debug)]
pub struct BertForMaskedLm {
    /// The encoder.
    pub bert: BertModel,
    /// The MLM head.
    pub cls: Option<BertOnlyMlmHead>,
}

impl BertForMaskedLm {
    /// MLM logits of encoder states.
    ///
    /// # Panics
    /// If this model has no MLM head.
    pub fn mlm_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let cls = self
            .cls
            .as_ref()
            .expect("this text encoder has no MLM head");
        cls.forward(hidden, &self.bert.embeddings.word_embeddings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> BertConfig {
        BertConfig {
            vocab_size: 20,
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 12,
            max_position_embeddings: 10,
            ..BertConfig::base()
        }
    }

    #[test]
    fn roberta_positions_skip_padding() {
        let device = Device::flex();
        let config = BertConfig {
            model_type: BertFamily::Roberta,
            pad_token_id: 1,
            ..tiny()
        };
        let model = config.init(&device);
        // Positions are only observable through the embedding sum; check the
        // rule by embedding with a one-hot position table.
        let ids = Tensor::<2, Int>::from_data([[0, 5, 6, 2, 1, 1]], &device);
        let real = ids.clone().not_equal_elem(1).int();
        let positions = real.clone().cumsum(1) * real + 1;
        assert_eq!(
            positions
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap(),
            vec![2, 3, 4, 5, 1, 1]
        );
        let out = model.embeddings.forward(ids, None);
        assert_eq!(out.dims(), [1, 6, 8]);
    }

    #[test]
    fn fusion_split_runs_all_layers() {
        // text layers then fusion layers equal the full multimodal pass.
        let device = Device::flex();
        let config = BertConfig {
            fusion_layer: Some(1),
            encoder_width: Some(6),
            ..tiny()
        };
        let model = config.init(&device);
        let ids = Tensor::<2, Int>::from_data([[1, 4, 7, 9]], &device);
        let input = TextInput::new(ids);
        let image = CrossAttentionInput {
            states: Tensor::ones([1, 3, 6], &device),
            mask: AttentionMask::none(),
        };
        let split = model.forward_fusion(model.forward_text(&input), None, &image);
        let full = model.forward(&input, Some(&image)).last_hidden_state;
        split
            .into_data()
            .assert_approx_eq::<f32>(&full.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }
}
