//! Vision–language transformer models on burn: ViT, BERT split into a text and
//! a fusion encoder, XLM-R, CLIP, AltCLIP and ALBEF, with strict loading of
//! the public PyTorch checkpoints.
//!
//! Every model is built from the shared [`blocks`] (one attention, one
//! transformer layer, pre- or post-LN). Configs are serde structs whose field
//! names are those of the checkpoints' `config.json`, so an HF config file
//! deserialises directly; [`import`] loads the weights.

pub mod albef;
pub mod altclip;
pub mod bert;
pub mod blocks;
pub mod clip;
pub mod import;
pub mod vit;

pub use albef::{Albef, AlbefConfig};
pub use altclip::{AltClipConfig, AltClipModel};
pub use bert::{BertConfig, BertForMaskedLm, BertModel, TextInput};
pub use clip::{ClipConfig, ClipModel};
pub use vit::{Vit, VitConfig};
