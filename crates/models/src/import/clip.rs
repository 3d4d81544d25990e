//! Loading HF `CLIPModel` and `AltCLIPModel` checkpoints.
//!
//! CLIP layers (under `text_model.` and `vision_model.`):
//!
//! | checkpoint key | field path |
//! |---|---|
//! | `encoder.layers.N.self_attn.{q,k,v}_proj` | `encoder.layers.N.attention.{query,key,value}` |
//! | `encoder.layers.N.self_attn.out_proj` | `encoder.layers.N.attention.out` |
//! | `encoder.layers.N.layer_norm1` / `layer_norm2` | `encoder.layers.N.attention_norm` / `mlp_norm` |
//! | everything else (`embeddings.*`, `pre_layrnorm`, `post_layernorm`, `final_layer_norm`, projections, `logit_scale`) | same |
//!
//! AltCLIP adds the XLM-R tower under `text_model.roberta.` (the BERT table of
//! [`super::bert`]) and `text_model.pre_LN` → `text_model.pre_ln`. The hub's
//! BAAI/AltCLIP writes `encoder.layer.N` in the text tower and
//! `encoder.layers.N` in the vision tower, while `transformers` 5
//! `save_pretrained` writes `encoder.layer.N` in both; every spelling is
//! accepted. The export writes the hub's.

use std::path::Path;

use burn::tensor::Device;

use super::{
    ImportError, KeyRule, LoadReport, Strictness, TensorMap, bert, export_tensors, hf_weights_file,
    load_strict, prefixed, read_json, rule, skip_hf_buffers,
};
use crate::altclip::{AltClipConfig, AltClipModel};
use crate::bert::BertFamily;
use crate::clip::{ClipConfig, ClipModel};

/// Key rules of one CLIP encoder stack, relative to the tower.
pub fn tower_rules() -> Vec<KeyRule> {
    let n = "encoder.layers.{n}";
    vec![
        rule(
            &format!("{n}.self_attn.q_proj"),
            &format!("{n}.attention.query"),
        ),
        rule(
            &format!("{n}.self_attn.k_proj"),
            &format!("{n}.attention.key"),
        ),
        rule(
            &format!("{n}.self_attn.v_proj"),
            &format!("{n}.attention.value"),
        ),
        rule(
            &format!("{n}.self_attn.out_proj"),
            &format!("{n}.attention.out"),
        ),
        rule(&format!("{n}.layer_norm1"), &format!("{n}.attention_norm")),
        rule(&format!("{n}.layer_norm2"), &format!("{n}.mlp_norm")),
    ]
}

/// Key rules of `CLIPModel`.
pub fn clip_rules() -> Vec<KeyRule> {
    let mut rules = prefixed("text_model.", "text_model.", &tower_rules());
    rules.extend(prefixed("vision_model.", "vision_model.", &tower_rules()));
    rules
}

/// Key rules of `AltCLIPModel` in the hub's spelling.
pub fn altclip_rules() -> Vec<KeyRule> {
    let mut rules = prefixed(
        "text_model.roberta.",
        "text_model.roberta.",
        &bert::encoder_rules(),
    );
    rules.push(rule("text_model.pre_LN", "text_model.pre_ln"));
    rules.extend(prefixed("vision_model.", "vision_model.", &tower_rules()));
    rules
}

/// Loads an HF `CLIPModel` directory.
pub fn load_clip_dir(dir: &Path, device: &Device) -> Result<(ClipModel, LoadReport), ImportError> {
    let config: ClipConfig = read_json(&dir.join("config.json"))?;
    let tensors = TensorMap::read(&hf_weights_file(dir)?)?;
    load_clip(&config, tensors, device)
}

/// Loads `CLIPModel` tensors in HF naming.
pub fn load_clip(
    config: &ClipConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<(ClipModel, LoadReport), ImportError> {
    let skipped = tensors.skip_where(skip_hf_buffers);
    let (model, mut report) = load_strict(
        config.init(device),
        tensors,
        &clip_rules(),
        Strictness::Strict,
    )?;
    report.skipped = skipped;
    Ok((model, report))
}

/// Reads `config.json` of an AltCLIP directory. The text tower is XLM-R
/// whatever its `model_type` field says.
pub fn read_altclip_config(dir: &Path) -> Result<AltClipConfig, ImportError> {
    let mut config: AltClipConfig = read_json(&dir.join("config.json"))?;
    config.text_config.roberta.model_type = BertFamily::Roberta;
    Ok(config)
}

/// Loads an HF `AltCLIPModel` directory.
pub fn load_altclip_dir(
    dir: &Path,
    device: &Device,
) -> Result<(AltClipModel, LoadReport), ImportError> {
    let config = read_altclip_config(dir)?;
    let tensors = TensorMap::read(&hf_weights_file(dir)?)?;
    load_altclip(&config, tensors, device)
}

/// Loads `AltCLIPModel` tensors in HF naming (either layer spelling).
pub fn load_altclip(
    config: &AltClipConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<(AltClipModel, LoadReport), ImportError> {
    let mut skipped = tensors.skip_where(skip_hf_buffers);
    skipped.extend(tensors.skip_where(|k| {
        k.starts_with("text_model.roberta.pooler.")
            .then_some("AltCLIP's XLM-R has no pooler")
    }));
    tensors.replace_prefix(
        "text_model.roberta.encoder.layers.",
        "text_model.roberta.encoder.layer.",
    );
    tensors.replace_prefix(
        "vision_model.encoder.layer.",
        "vision_model.encoder.layers.",
    );
    let (model, mut report) = load_strict(
        config.init(device),
        tensors,
        &altclip_rules(),
        Strictness::Strict,
    )?;
    report.skipped = skipped;
    Ok((model, report))
}

/// Writes `model` as an HF `AltCLIPModel` directory: `config.json` (with
/// the `model_type`s and `architectures` that `transformers` dispatches on)
/// and `model.safetensors` in the hub's key spelling. Both
/// [`load_altclip_dir`] and `transformers.AltCLIPModel.from_pretrained`
/// load it.
pub fn save_altclip_dir(
    model: &AltClipModel,
    config: &AltClipConfig,
    dir: &Path,
) -> Result<(), ImportError> {
    let config_path = dir.join("config.json");
    let json_err = |source| ImportError::Json {
        path: config_path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|source| ImportError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut json = serde_json::to_value(config).map_err(json_err)?;
    json["model_type"] = "altclip".into();
    json["architectures"] = serde_json::json!(["AltCLIPModel"]);
    json["text_config"]["model_type"] = "altclip_text_model".into();
    json["vision_config"]["model_type"] = "altclip_vision_model".into();
    let text = serde_json::to_string_pretty(&json).map_err(json_err)?;
    std::fs::write(&config_path, text).map_err(|source| ImportError::Io {
        path: config_path.clone(),
        source,
    })?;
    export_tensors(model, &altclip_rules(), &["logit_scale"])?
        .write_safetensors(&dir.join("model.safetensors"))
}
