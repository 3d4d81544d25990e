//! Loading ALBEF's VQA model from any ALBEF checkpoint.
//!
//! | checkpoint | what loads |
//! |---|---|
//! | a VQA checkpoint (the released `vqa.pth`: `text_encoder.*` a plain BERT, `text_decoder.bert.*`, `text_decoder.cls.*`, `*_m` copies) | everything, strictly |
//! | a pretraining checkpoint (`ALBEF.pth`) | the reference `VQA.py`'s remap: the encoder with every layer, the decoder from the embeddings, the fusion layers and the MLM head ([`AlbefVqa::from_albef`]), for the online and the momentum model; projections, ITM head, `temp` and queues dropped |
//!
//! A position table of another resolution is resampled as the reference
//! does.

use burn::tensor::Device;

use super::albef::load_albef;
use super::{
    ImportError, KeyRule, LoadReport, Strictness, TensorMap, bert, load_strict, prefixed,
    skip_hf_buffers, vit,
};
use crate::albef::AlbefConfig;
use crate::albef::vqa::AlbefVqa;

/// Key rules of the VQA model.
pub fn vqa_rules() -> Vec<KeyRule> {
    let mut rules = prefixed("visual_encoder.", "visual_encoder.", &vit::timm_rules());
    rules.extend(prefixed(
        "text_encoder.",
        "text_encoder.",
        &bert::encoder_rules(),
    ));
    rules.extend(prefixed(
        "text_decoder.bert.",
        "text_decoder.bert.",
        &bert::encoder_rules(),
    ));
    rules.extend(prefixed(
        "text_decoder.cls.",
        "text_decoder.cls.",
        &bert::mlm_head_rules(),
    ));
    rules
}

/// A VQA model and its momentum copy.
#[derive(Debug)]
pub struct AlbefVqaCheckpoint {
    /// The online model.
    pub model: AlbefVqa,
    /// The momentum model, when the checkpoint has `*_m` copies.
    pub momentum: Option<AlbefVqa>,
    /// What was loaded and dropped.
    pub report: LoadReport,
}

const MOMENTUM_PARTS: [&str; 3] = ["visual_encoder", "text_encoder", "text_decoder"];

/// Loads the VQA model from ALBEF tensors in the official naming (see the
/// module table).
pub fn load_albef_vqa(
    config: &AlbefConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<AlbefVqaCheckpoint, ImportError> {
    if !tensors.has_prefix("text_decoder.") {
        return from_pretraining_layout(config, tensors, device);
    }
    let skipped = tensors.skip_where(skip_hf_buffers);
    let momentum = tensors.split_off_momentum(&MOMENTUM_PARTS);
    let (model, mut report) = load_online(config, tensors, device)?;
    let momentum = match momentum.is_empty() {
        true => None,
        false => Some(load_online(config, momentum, device)?.0),
    };
    report.skipped = skipped;
    Ok(AlbefVqaCheckpoint {
        model,
        momentum,
        report,
    })
}

fn load_online(
    config: &AlbefConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<(AlbefVqa, LoadReport), ImportError> {
    vit::split_fused_qkv(&mut tensors, "visual_encoder.")?;
    vit::fit_pos_embed(
        &mut tensors,
        "visual_encoder.pos_embed",
        &config.vision_config(),
        device,
    );
    bert::untie_check(
        &mut tensors,
        "text_decoder.cls.",
        "text_decoder.bert.embeddings.word_embeddings.weight",
    )?;
    let fresh = config
        .init_vqa(device)
        .map_err(|e| ImportError::Unsupported(e.to_string()))?;
    load_strict(fresh, tensors, &vqa_rules(), Strictness::Strict)
}

/// The reference's remap of a pretraining checkpoint.
fn from_pretraining_layout(
    config: &AlbefConfig,
    tensors: TensorMap,
    device: &Device,
) -> Result<AlbefVqaCheckpoint, ImportError> {
    let dropped: Vec<(String, &'static str)> = tensors
        .names()
        .filter(|key| !key.starts_with("visual_encoder") && !key.starts_with("text_encoder"))
        .map(|key| (key.to_owned(), "not part of the VQA model"))
        .collect();
    let loaded = load_albef(config, tensors, device)?;
    let remap = |albef: crate::albef::Albef| {
        AlbefVqa::from_albef(albef.visual_encoder, albef.text_encoder)
            .map_err(|e| ImportError::Unsupported(e.to_string()))
    };
    let model = remap(loaded.model)?;
    let momentum = loaded.momentum.map(remap).transpose()?;
    let mut report = loaded.report;
    report.skipped.extend(dropped);
    Ok(AlbefVqaCheckpoint {
        model,
        momentum,
        report,
    })
}
