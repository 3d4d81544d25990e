//! Loading ALBEF's SNLI-VE model from any ALBEF checkpoint.
//!
//! | checkpoint | what loads |
//! |---|---|
//! | a VE checkpoint (`cls_head.0`, `cls_head.2`, `text_encoder.*` a plain BERT, `*_m` copies) | everything, strictly |
//! | a pretraining or retrieval checkpoint (`ALBEF.pth`, `mscoco.pth`, …) | the encoders and their momentum copies; `cls_head` fresh; projections, ITM and MLM heads, `temp` and the queues dropped, as the reference's `VE.py` does with `strict=False` |
//!
//! A position table of another resolution is resampled as the reference
//! does.

use burn::tensor::Device;

use super::albef::load_albef;
use super::{
    ImportError, KeyRule, LoadReport, Strictness, TensorMap, bert, load_strict, prefixed, rule,
    skip_hf_buffers, vit,
};
use crate::albef::AlbefConfig;
use crate::albef::ve::AlbefVe;

/// Key rules of the VE model.
pub fn ve_rules() -> Vec<KeyRule> {
    let mut rules = prefixed("visual_encoder.", "visual_encoder.", &vit::timm_rules());
    rules.extend(prefixed(
        "text_encoder.",
        "text_encoder.",
        &bert::encoder_rules(),
    ));
    rules.push(rule("cls_head.0", "cls_head.dense"));
    rules.push(rule("cls_head.2", "cls_head.out"));
    rules
}

/// A VE model and its momentum copy.
#[derive(Debug)]
pub struct AlbefVeCheckpoint {
    /// The online model.
    pub model: AlbefVe,
    /// The momentum model, when the checkpoint has `*_m` copies (its
    /// `cls_head` is the online one's where the checkpoint has none, as the
    /// reference's `copy_params` makes it).
    pub momentum: Option<AlbefVe>,
    /// What was loaded and dropped.
    pub report: LoadReport,
}

const MOMENTUM_PARTS: [&str; 3] = ["visual_encoder", "text_encoder", "cls_head"];

/// Loads the VE model from ALBEF tensors in the official naming (see the
/// module table); `cls_head` is drawn on `device` when the tensors have
/// none.
pub fn load_albef_ve(
    config: &AlbefConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<AlbefVeCheckpoint, ImportError> {
    if !tensors.has_prefix("cls_head.") {
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
    Ok(AlbefVeCheckpoint {
        model,
        momentum,
        report,
    })
}

fn load_online(
    config: &AlbefConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<(AlbefVe, LoadReport), ImportError> {
    vit::split_fused_qkv(&mut tensors, "visual_encoder.")?;
    vit::fit_pos_embed(
        &mut tensors,
        "visual_encoder.pos_embed",
        &config.vision_config(),
        device,
    );
    load_strict(
        config.init_ve(device),
        tensors,
        &ve_rules(),
        Strictness::Strict,
    )
}

/// The encoders of a pretraining or retrieval checkpoint under a fresh
/// `cls_head` (the momentum model's a copy of it).
fn from_pretraining_layout(
    config: &AlbefConfig,
    tensors: TensorMap,
    device: &Device,
) -> Result<AlbefVeCheckpoint, ImportError> {
    let dropped: Vec<(String, &'static str)> = tensors
        .names()
        .filter(|key| {
            !key.starts_with("visual_encoder") && !key.starts_with("text_encoder")
                || key.contains(".cls.")
        })
        .map(|key| (key.to_owned(), "not part of the VE model"))
        .collect();
    let loaded = load_albef(config, tensors, device)?;
    let model = AlbefVe::from_albef(
        loaded.model.visual_encoder,
        loaded.model.text_encoder.bert,
        device,
    );
    let momentum = loaded.momentum.map(|m| AlbefVe {
        visual_encoder: m.visual_encoder,
        text_encoder: m.text_encoder.bert,
        cls_head: model.cls_head.clone(),
    });
    let mut report = loaded.report;
    report.skipped.extend(dropped);
    Ok(AlbefVeCheckpoint {
        model,
        momentum,
        report,
    })
}
