//! Loading the official ALBEF checkpoints (salesforce/ALBEF `ALBEF.pth`,
//! `ALBEF_4M.pth`, and the fine-tuned `mscoco.pth`, `flickr30k.pth`, …).
//!
//! | checkpoint key | field path |
//! |---|---|
//! | `visual_encoder.*` | the timm table of [`super::vit`] under `visual_encoder.` |
//! | `text_encoder.bert.*` (pretraining) or `text_encoder.*` (fine-tuned) | the BERT table of [`super::bert`] under `text_encoder.bert.` |
//! | `text_encoder.cls.*` | `text_encoder.cls.*` (`LayerNorm` → `layer_norm`; decoder tied) |
//! | `vision_proj`, `text_proj`, `itm_head`, `temp` (0-dim) | same (`temp` as `[1]`) |
//! | `*_m.*` (momentum copies) | the same fields of [`AlbefCheckpoint::momentum`] |
//! | `image_queue`, `text_queue`, `queue_ptr`, `idx_queue` | [`AlbefQueues`] |
//!
//! A position table of another resolution is resampled as the reference's
//! fine-tuning scripts do. `*.position_ids` buffers are skipped.

use std::path::Path;

use burn::tensor::{Device, TensorData};

use super::{
    ImportError, KeyRule, LoadReport, Strictness, TensorMap, bert, load_strict, prefixed,
    skip_hf_buffers, vit,
};
use crate::albef::{Albef, AlbefConfig};

/// Key rules of the ALBEF model.
pub fn rules() -> Vec<KeyRule> {
    let mut rules = prefixed("visual_encoder.", "visual_encoder.", &vit::timm_rules());
    rules.extend(prefixed(
        "text_encoder.bert.",
        "text_encoder.bert.",
        &bert::encoder_rules(),
    ));
    rules.extend(prefixed(
        "text_encoder.cls.",
        "text_encoder.cls.",
        &bert::mlm_head_rules(),
    ));
    rules
}

/// The momentum-feature queues of a pretraining or retrieval checkpoint.
#[derive(Debug, Clone)]
pub struct AlbefQueues {
    /// `[embed_dim, queue_size]`, unit-norm columns.
    pub image_queue: TensorData,
    /// `[embed_dim, queue_size]`, unit-norm columns.
    pub text_queue: TensorData,
    /// Next column to write.
    pub queue_ptr: usize,
    /// `[1, queue_size]` image ids of the queued features (retrieval only).
    pub idx_queue: Option<TensorData>,
}

/// Everything an ALBEF checkpoint holds.
#[derive(Debug)]
pub struct AlbefCheckpoint {
    /// The online model.
    pub model: Albef,
    /// The momentum model, when the checkpoint has `*_m` copies. Its `temp`
    /// and `itm_head` (which the reference's momentum model lacks) are the
    /// online model's.
    pub momentum: Option<Albef>,
    /// The queues, when present.
    pub queues: Option<AlbefQueues>,
    /// What was loaded and skipped.
    pub report: LoadReport,
}

const MOMENTUM_PARTS: [&str; 4] = ["visual_encoder", "text_encoder", "vision_proj", "text_proj"];

/// Loads an ALBEF `.pth` (or `.safetensors` with the same keys).
pub fn load_albef_file(
    path: &Path,
    config: &AlbefConfig,
    device: &Device,
) -> Result<AlbefCheckpoint, ImportError> {
    load_albef(config, TensorMap::read(path)?, device)
}

/// Loads ALBEF tensors in the official naming. The MLM head is built when
/// the checkpoint has one (pretraining checkpoints do).
pub fn load_albef(
    config: &AlbefConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<AlbefCheckpoint, ImportError> {
    let skipped = tensors.skip_where(skip_hf_buffers);

    // Fine-tuned checkpoints hold a plain BertModel as `text_encoder`.
    if !tensors.has_prefix("text_encoder.bert.") {
        tensors.replace_prefix("text_encoder.", "text_encoder.bert.");
        tensors.replace_prefix("text_encoder_m.", "text_encoder_m.bert.");
    }
    let queues = take_queues(&mut tensors)?;
    let mut momentum = tensors.split_off_momentum(&MOMENTUM_PARTS);

    if !momentum.is_empty() {
        // The reference's momentum model has no temperature or ITM head.
        for key in ["temp", "itm_head.weight", "itm_head.bias"] {
            if let Some(data) = tensors.get(key) {
                momentum.insert(key, data.clone());
            }
        }
    }
    let (model, mut report) = load_online(config, tensors, device)?;
    let momentum = match momentum.is_empty() {
        true => None,
        false => Some(load_online(config, momentum, device)?.0),
    };
    report.skipped = skipped;
    Ok(AlbefCheckpoint {
        model,
        momentum,
        queues,
        report,
    })
}

fn load_online(
    config: &AlbefConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<(Albef, LoadReport), ImportError> {
    vit::split_fused_qkv(&mut tensors, "visual_encoder.")?;
    vit::fit_pos_embed(
        &mut tensors,
        "visual_encoder.pos_embed",
        &config.vision_config(),
        device,
    );
    let mlm_head = tensors.has_prefix("text_encoder.cls.");
    if mlm_head {
        bert::untie_check(
            &mut tensors,
            "text_encoder.cls.",
            "text_encoder.bert.embeddings.word_embeddings.weight",
        )?;
    }
    load_strict(
        config.init(mlm_head, device),
        tensors,
        &rules(),
        Strictness::Strict,
    )
}

fn take_queues(tensors: &mut TensorMap) -> Result<Option<AlbefQueues>, ImportError> {
    let (Some(image_queue), Some(text_queue)) =
        (tensors.remove("image_queue"), tensors.remove("text_queue"))
    else {
        return Ok(None);
    };
    let queue_ptr = match tensors.remove("queue_ptr") {
        Some(ptr) => {
            let values = ptr
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map_err(|e| ImportError::Unsupported(format!("queue_ptr: {e:?}")))?;
            *values
                .first()
                .ok_or_else(|| ImportError::Unsupported("queue_ptr is empty".into()))?
                as usize
        }
        None => 0,
    };
    Ok(Some(AlbefQueues {
        image_queue,
        text_queue,
        queue_ptr,
        idx_queue: tensors.remove("idx_queue"),
    }))
}
