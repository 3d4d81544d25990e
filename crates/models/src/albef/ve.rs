//! ALBEF for visual entailment (SNLI-VE; Li et al. 2021, section 5.3):
//! salesforce/ALBEF `models/model_ve.py`. The image through the ViT, the
//! hypothesis through every BERT layer attending to the image tokens (the
//! reference's `multi_modal` mode), and `cls_head` — Linear(h, h), ReLU,
//! Linear(h, 3) — on the fused `[CLS]`. Classes as `dataset/ve_dataset.py`
//! numbers them: contradiction 0, neutral 1, entailment 2.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::{AlbefConfig, image_context};
use crate::bert::{BertModel, TextInput};
use crate::blocks::first_token;
use crate::vit::Vit;

/// Classes of SNLI-VE, by label index.
pub const VE_CLASSES: [&str; 3] = ["contradiction", "neutral", "entailment"];

/// A two-layer classifier on a `[CLS]` state: the reference's
/// `nn.Sequential(Linear, ReLU, Linear)` (`cls_head.0`, `cls_head.2`).
#[derive(Module, Debug)]
pub struct ClsHead {
    /// `cls_head.0`: hidden → hidden.
    pub dense: Linear,
    /// `cls_head.2`: hidden → classes.
    pub out: Linear,
}

impl ClsHead {
    /// A fresh head (PyTorch's default `nn.Linear` initialisation, as the
    /// reference leaves it).
    pub fn new(hidden: usize, classes: usize, device: &Device) -> Self {
        Self {
            dense: LinearConfig::new(hidden, hidden).init(device),
            out: LinearConfig::new(hidden, classes).init(device),
        }
    }

    /// Class logits, `[batch, hidden]` → `[batch, classes]`.
    pub fn forward(&self, cls: Tensor<2>) -> Tensor<2> {
        self.out.forward(relu(self.dense.forward(cls)))
    }
}

/// The SNLI-VE model.
#[derive(Module, Debug)]
pub struct AlbefVe {
    /// Image encoder.
    pub visual_encoder: Vit,
    /// Text and fusion layers (a plain BERT: no MLM head).
    pub text_encoder: BertModel,
    /// Fused `[CLS]` → 3 class logits.
    pub cls_head: ClsHead,
}

impl AlbefConfig {
    /// A fresh SNLI-VE model of this shape.
    pub fn init_ve(&self, device: &Device) -> AlbefVe {
        let albef = self.init(false, device);
        AlbefVe::from_albef(albef.visual_encoder, albef.text_encoder.bert, device)
    }
}

impl AlbefVe {
    /// The encoders of a pretrained ALBEF with a fresh `cls_head`: what the
    /// reference's `VE.py` loads from a pretraining checkpoint (projections,
    /// ITM and MLM heads, queues dropped).
    pub fn from_albef(visual_encoder: Vit, text_encoder: BertModel, device: &Device) -> Self {
        let hidden = text_encoder.embeddings.word_embeddings.weight.dims()[1];
        Self {
            visual_encoder,
            text_encoder,
            cls_head: ClsHead::new(hidden, VE_CLASSES.len(), device),
        }
    }

    /// Class logits `[batch, 3]` of (image, hypothesis) pairs.
    pub fn logits(&self, image: Tensor<4>, text: &TextInput) -> Tensor<2> {
        let image_embeds = self.visual_encoder.forward(image);
        let fused = self
            .text_encoder
            .forward(text, Some(&image_context(image_embeds)))
            .last_hidden_state;
        self.cls_head.forward(first_token(fused))
    }
}
