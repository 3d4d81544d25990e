//! The model families a fixture can hold, with the inputs and outputs
//! each may carry.

use serde_json::Value;

/// The model families a fixture can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// HF `BertModel`.
    Bert,
    /// HF `BertForMaskedLM`.
    BertMaskedLm,
    /// HF `ViTModel`.
    Vit,
    /// HF `XLMRobertaModel`.
    XlmRoberta,
    /// HF `CLIPModel`.
    Clip,
    /// HF `AltCLIPModel`.
    AltClip,
    /// ALBEF with the official parameter names.
    Albef,
    /// ALBEF's SNLI-VE model (`"task": "ve"`), official VE names.
    AlbefVe,
    /// ALBEF's retrieval model with Grad-CAM on the cross-attention of
    /// `"gradcam_layer"` (`"task": "grounding"`).
    AlbefGrounding,
    /// ALBEF's VQA model with its answer decoder and ranking (`"task":
    /// "vqa"`, with `"k_test"`), official VQA or pretraining names.
    AlbefVqa,
}

impl ModelKind {
    /// Reads the kind from a fixture's `config.json`.
    pub fn from_config(config: &Value) -> Option<Self> {
        if config.get("bert_config").is_some() {
            return match config.get("task").map(|t| t.as_str()) {
                None => Some(Self::Albef),
                Some(Some("ve")) => Some(Self::AlbefVe),
                Some(Some("grounding")) => Some(Self::AlbefGrounding),
                Some(Some("vqa")) => Some(Self::AlbefVqa),
                Some(_) => None,
            };
        }
        let masked_lm = config["architectures"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "BertForMaskedLM"));
        match config["model_type"].as_str()? {
            "bert" if masked_lm => Some(Self::BertMaskedLm),
            "bert" => Some(Self::Bert),
            "vit" => Some(Self::Vit),
            "xlm-roberta" => Some(Self::XlmRoberta),
            "clip" => Some(Self::Clip),
            "altclip" => Some(Self::AltClip),
            _ => None,
        }
    }

    /// The output names this kind can compute.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            Self::Bert | Self::Vit | Self::XlmRoberta => &["last_hidden_state", "pooler_output"],
            Self::BertMaskedLm => &["last_hidden_state", "logits"],
            Self::Clip => &CLIP_OUTPUTS[..CLIP_OUTPUTS.len() - 1],
            Self::AltClip => &CLIP_OUTPUTS,
            Self::Albef => &[
                "image_embeds",
                "image_feat",
                "text_embeds",
                "text_feat",
                "sim_i2t",
                "fusion_last_hidden_state",
                "multimodal_last_hidden_state",
                "itm_logits",
                "mlm_logits",
                "pos_embed_interp_6x6",
            ],
            Self::AlbefVe => &["ve_logits"],
            Self::AlbefGrounding => &[
                "image_embeds",
                "image_feat",
                "text_embeds",
                "text_feat",
                "sim_i2t",
                "fusion_last_hidden_state",
                "multimodal_last_hidden_state",
                "itm_logits",
                "gradcam",
            ],
            Self::AlbefVqa => &["vqa_decoder_logits", "vqa_topk_ids", "vqa_answer"],
        }
    }

    /// The input names fixtures of this kind may carry.
    pub fn inputs(self) -> &'static [&'static str] {
        match self {
            Self::Bert | Self::BertMaskedLm | Self::XlmRoberta => {
                &["input_ids", "attention_mask", "token_type_ids"]
            }
            Self::Vit => &["pixel_values"],
            Self::Clip | Self::AltClip => &["input_ids", "attention_mask", "pixel_values"],
            Self::Albef => &["input_ids", "attention_mask", "image", "pos_embed_in"],
            Self::AlbefVe | Self::AlbefGrounding => &["input_ids", "attention_mask", "image"],
            Self::AlbefVqa => &[
                "input_ids",
                "attention_mask",
                "image",
                "answer_input_ids",
                "answer_attention_mask",
            ],
        }
    }
}

const CLIP_OUTPUTS: [&str; 11] = [
    "text_last_hidden_state",
    "text_pooler_output",
    "vision_last_hidden_state",
    "vision_pooler_output",
    "text_features",
    "image_features",
    "text_embeds",
    "image_embeds",
    "logits_per_image",
    "logits_per_text",
    "roberta_last_hidden_state",
];
