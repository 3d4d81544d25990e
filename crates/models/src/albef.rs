//! ALBEF (Li et al., NeurIPS 2021, "Align before Fuse", arXiv 2107.07651).
//!
//! Reference: salesforce/ALBEF@b9727e4 `models/model_pretrain.py`,
//! `models/xbert.py`, `models/vit.py`. A ViT image encoder; a BERT whose
//! first `fusion_layer` layers encode text alone and whose remaining layers
//! fuse text with the image through cross-attention; projections of both
//! `[CLS]` tokens into a shared contrastive space with a learnable
//! temperature; an image–text matching head on the fused `[CLS]`; and, in
//! pretraining, the tied MLM head. The reference's `mode='text'|'fusion'|
//! 'multi_modal'` strings are the methods [`Albef::text_embeds`],
//! [`Albef::fusion`] and [`Albef::multimodal`].
//!
//! Field paths are the official checkpoint's (`visual_encoder`,
//! `text_encoder.bert`, `text_encoder.cls`, `vision_proj`, `text_proj`,
//! `temp`, `itm_head`); [`crate::import::albef`] loads `ALBEF.pth` and the
//! fine-tuned checkpoints, momentum copies and queues included.

pub mod gradcam;
pub mod ve;
pub mod vqa;

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::bert::{BertConfig, BertForMaskedLm, TextInput};
use crate::blocks::{Activation, AttentionMask, CrossAttentionInput, first_token, l2_normalize};
use crate::vit::{Vit, VitConfig};

/// ALBEF's model configuration: the keys of the reference `Pretrain.yaml`
/// that shape the model, with `bert_config` inline, plus the ViT shape
/// (hard-coded to ViT-B/16 in the reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlbefConfig {
    /// The BERT, with `fusion_layer` and `encoder_width`.
    pub bert_config: BertConfig,
    /// Image resolution (square).
    pub image_res: usize,
    /// ViT patch side.
    pub patch_size: usize,
    /// ViT token width.
    pub vision_width: usize,
    /// ViT layers.
    pub vision_depth: usize,
    /// ViT attention heads.
    pub vision_heads: usize,
    /// Width of the contrastive space.
    pub embed_dim: usize,
    /// Initial temperature of the contrastive loss.
    pub temp: f64,
}

impl Default for AlbefConfig {
    fn default() -> Self {
        Self::base()
    }
}

impl AlbefConfig {
    /// The paper's model: ViT-B/16 at 256 px and BERT-base cut at layer 6.
    pub fn base() -> Self {
        Self {
            bert_config: BertConfig::albef_base(),
            image_res: 256,
            patch_size: 16,
            vision_width: 768,
            vision_depth: 12,
            vision_heads: 12,
            embed_dim: 256,
            temp: 0.07,
        }
    }

    /// A model that pretrains in minutes on two CPU cores, from scratch:
    /// 32 px images in 8 px patches (17 tokens), a 2-layer ViT and a BERT of
    /// 2 text + 2 fusion layers, all 64 wide with 2 heads, a 32-d
    /// contrastive space, no dropout. Weights start at std 0.1. At BERT-base's
    /// 0.02 the residual branches of a 64-wide model are near zero, so the
    /// text `[CLS]` output is the same for every caption (mean cosine 1.00
    /// between captions) and contrastive learning stalls; at 0.2 attention
    /// outweighs the residual and every token of the fusion output
    /// collapses to one vector (mean cosine 1.00 between positions), so
    /// neither MLM nor ITM can learn. 0.1 keeps tokens apart and captions
    /// distinguishable (the test below pins these mean cosines).
    /// The vocabulary is set by the tokenizer.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            bert_config: BertConfig {
                vocab_size,
                hidden_size: 64,
                num_hidden_layers: 4,
                num_attention_heads: 2,
                intermediate_size: 128,
                hidden_act: Activation::Gelu,
                hidden_dropout_prob: 0.0,
                attention_probs_dropout_prob: 0.0,
                max_position_embeddings: 64,
                fusion_layer: Some(2),
                encoder_width: Some(64),
                initializer_range: 0.1,
                ..BertConfig::albef_base()
            },
            image_res: 32,
            patch_size: 8,
            vision_width: 64,
            vision_depth: 2,
            vision_heads: 2,
            embed_dim: 32,
            temp: 0.07,
        }
    }

    /// The ViT this config describes (timm layout, eps 1e-6, no dropout),
    /// with the BERT's activation and `initializer_range` (GELU and 0.02
    /// in the reference, where both are the same).
    pub fn vision_config(&self) -> VitConfig {
        VitConfig {
            image_size: self.image_res,
            patch_size: self.patch_size,
            hidden_size: self.vision_width,
            num_hidden_layers: self.vision_depth,
            num_attention_heads: self.vision_heads,
            intermediate_size: 4 * self.vision_width,
            initializer_range: self.bert_config.initializer_range,
            hidden_act: self.bert_config.hidden_act,
            ..VitConfig::albef_base(self.image_res)
        }
    }

    /// Builds the model; `mlm_head` adds the pretraining MLM head.
    ///
    /// # Panics
    /// If `encoder_width` differs from `vision_width`, or the BERT has no
    /// `fusion_layer`.
    pub fn init(&self, mlm_head: bool, device: &Device) -> Albef {
        let bert = &self.bert_config;
        assert!(
            bert.fusion_layer.is_some(),
            "ALBEF's bert_config needs a fusion_layer"
        );
        let encoder_width = bert.encoder_width.unwrap_or(bert.hidden_size);
        assert_eq!(
            encoder_width, self.vision_width,
            "bert_config.encoder_width must equal vision_width (the fusion layers attend to ViT tokens)"
        );
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let linear = |d_in, d_out| {
            LinearConfig::new(d_in, d_out)
                .with_initializer(init.clone())
                .init(device)
        };
        Albef {
            visual_encoder: self.vision_config().init(device),
            text_encoder: BertForMaskedLm {
                bert: BertConfig {
                    add_pooling_layer: false,
                    ..bert.clone()
                }
                .init(device),
                cls: mlm_head.then(|| bert.init_mlm_head(device)),
            },
            vision_proj: linear(self.vision_width, self.embed_dim),
            text_proj: linear(bert.hidden_size, self.embed_dim),
            temp: Param::from_tensor(Tensor::full([1], self.temp, device)),
            itm_head: linear(bert.hidden_size, 2),
        }
    }
}

/// The ALBEF model (the online half of pretraining; the momentum half is a
/// second instance, see the training crate).
#[derive(Module, Debug)]
pub struct Albef {
    /// Image encoder.
    pub visual_encoder: Vit,
    /// Text + fusion encoder, with the MLM head in pretraining.
    pub text_encoder: BertForMaskedLm,
    /// Image `[CLS]` → contrastive space.
    pub vision_proj: Linear,
    /// Text `[CLS]` → contrastive space.
    pub text_proj: Linear,
    /// Contrastive temperature, `[1]` (0-dim in the checkpoints).
    pub temp: Param<Tensor<1>>,
    /// Fused `[CLS]` → match / no match logits.
    pub itm_head: Linear,
}

impl Albef {
    /// Image tokens after the ViT's final LayerNorm.
    ///
    /// # Shapes
    /// `[batch, 3, res, res]` → `[batch, 1 + patches, vision_width]`
    pub fn image_embeds(&self, image: Tensor<4>) -> Tensor<3> {
        self.visual_encoder.forward(image)
    }

    /// Unit-norm contrastive image feature from the `[CLS]` token.
    ///
    /// # Shapes
    /// `[batch, tokens, vision_width]` → `[batch, embed_dim]`
    pub fn image_feat(&self, image_embeds: Tensor<3>) -> Tensor<2> {
        l2_normalize(self.vision_proj.forward(first_token(image_embeds)), 1e-12)
    }

    /// The text encoder (`mode='text'`): layers `0..fusion_layer`.
    pub fn text_embeds(&self, text: &TextInput) -> Tensor<3> {
        self.text_encoder.bert.forward_text(text)
    }

    /// Unit-norm contrastive text feature from the `[CLS]` token.
    pub fn text_feat(&self, text_embeds: Tensor<3>) -> Tensor<2> {
        l2_normalize(self.text_proj.forward(first_token(text_embeds)), 1e-12)
    }

    /// The fusion encoder (`mode='fusion'`): text states attend to the image.
    ///
    /// # Shapes
    /// `text_embeds`: `[batch, seq, hidden]`, `padding`: `[batch, seq]`,
    /// `image_embeds`: `[batch, tokens, vision_width]` → `[batch, seq, hidden]`
    pub fn fusion(
        &self,
        text_embeds: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        image_embeds: Tensor<3>,
    ) -> Tensor<3> {
        self.text_encoder
            .bert
            .forward_fusion(text_embeds, padding, &image_context(image_embeds))
    }

    /// All layers on token ids with the image (`mode='multi_modal'`), as the
    /// MLM pass uses.
    pub fn multimodal(&self, text: &TextInput, image_embeds: Tensor<3>) -> Tensor<3> {
        self.text_encoder
            .bert
            .forward(text, Some(&image_context(image_embeds)))
            .last_hidden_state
    }

    /// Image–text matching logits from the fused `[CLS]`, `[batch, 2]`
    /// (class 1 = match).
    pub fn itm_logits(&self, fused: Tensor<3>) -> Tensor<2> {
        self.itm_head.forward(first_token(fused))
    }

    /// MLM logits of multimodal states, `[batch, seq, vocab]`.
    ///
    /// # Panics
    /// If the model was built or loaded without the MLM head.
    pub fn mlm_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.text_encoder.mlm_logits(hidden)
    }

    /// Whether the model carries the pretraining MLM head.
    pub fn has_mlm_head(&self) -> bool {
        self.text_encoder.cls.is_some()
    }
}

/// Image tokens as a cross-attention source: never padded.
pub(crate) fn image_context(image_embeds: Tensor<3>) -> CrossAttentionInput {
    CrossAttentionInput {
        states: image_embeds,
        mask: AttentionMask::none(),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Int};

    use super::*;

    /// Mean cosine similarity between distinct rows of `[n, d]`.
    fn mean_cosine(rows: Tensor<2>) -> f32 {
        let n = rows.dims()[0];
        let unit = l2_normalize(rows, 1e-12);
        let total = unit
            .clone()
            .matmul(unit.transpose())
            .sum()
            .into_scalar::<f32>();
        (total - n as f32) / (n * (n - 1)) as f32
    }

    /// (between captions: text features; between positions: fusion output
    /// tokens) at initialisation with `init` std.
    fn similarities_at_init(init: f64) -> (f32, f32) {
        let device = Device::flex();
        device.seed(1);
        let mut config = AlbefConfig::tiny(150);
        config.bert_config.initializer_range = init;
        let model = config.init(true, &device);
        let (n, len) = (16, 24);
        let mut ids =
            Tensor::<2, Int>::random([n, len], Distribution::Uniform(5.0, 150.0), &device);
        ids = ids.slice_assign([0..n, 0..1], Tensor::full([n, 1], 2, &device));
        let image = Tensor::<4>::random([n, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let text = TextInput::new(ids);
        let between_captions = mean_cosine(model.text_feat(model.text_embeds(&text)));
        let fused = model.multimodal(&text, model.image_embeds(image));
        let first = fused
            .slice([0..1, 0..len])
            .reshape([len, config.bert_config.hidden_size]);
        (between_captions, mean_cosine(first))
    }

    #[test]
    fn the_tiny_init_keeps_captions_and_tokens_apart() {
        // Thresholds sit between the measured values (below) with
        // margin: other tests draw from the device's generator concurrently,
        // so the weights vary from run to run. Captions: ~0.99 at 0.1,
        // ~0.99998 at 0.02. Tokens: ~0.8 at 0.1, ~0.9996 at 0.2.
        let tiny = AlbefConfig::tiny(150).bert_config.initializer_range;
        let (captions, tokens) = similarities_at_init(tiny);
        assert!(captions < 0.998 && tokens < 0.95, "{captions} {tokens}");
        // What rules out the neighbours (see `AlbefConfig::tiny`).
        let (captions, _) = similarities_at_init(0.02);
        assert!(captions > 0.9995, "BERT's 0.02: captions {captions}");
        let (_, tokens) = similarities_at_init(0.2);
        assert!(tokens > 0.98, "0.2: tokens {tokens}");
    }
}
