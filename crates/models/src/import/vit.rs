//! Loading ViT checkpoints in the timm layout (ALBEF, DeiT) and in HF's.
//!
//! timm (under the encoder prefix):
//!
//! | checkpoint key | field path |
//! |---|---|
//! | `blocks.N.attn.qkv` `[3·d, d]` | split by rows into `blocks.N.attention.{query,key,value}` |
//! | `blocks.N.attn.proj` | `blocks.N.attention.out` |
//! | `blocks.N.norm1` / `norm2` | `blocks.N.attention_norm` / `mlp_norm` |
//! | `cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.mlp.fc{1,2}`, `norm` | same |
//!
//! HF `ViTModel`:
//!
//! | checkpoint key | field path |
//! |---|---|
//! | `embeddings.cls_token` / `position_embeddings` | `cls_token` / `pos_embed` |
//! | `embeddings.patch_embeddings.projection` | `patch_embed.proj` |
//! | `encoder.layer.N.attention.attention.{query,key,value}` | `blocks.N.attention.{query,key,value}` |
//! | `encoder.layer.N.attention.output.dense` | `blocks.N.attention.out` |
//! | `encoder.layer.N.layernorm_before` / `layernorm_after` | `blocks.N.attention_norm` / `mlp_norm` |
//! | `encoder.layer.N.intermediate.dense` / `output.dense` | `blocks.N.mlp.fc1` / `fc2` |
//! | `layernorm` | `norm` |
//! | `pooler.dense` | `pooler.dense` |

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use super::{
    ImportError, KeyRule, LoadReport, Strictness, TensorMap, hf_weights_file, load_strict,
    read_json, rule,
};
use crate::vit::{Vit, VitConfig, interpolate_pos_embed};

/// Key rules of a timm ViT after [`split_fused_qkv`], relative to its root.
pub fn timm_rules() -> Vec<KeyRule> {
    vec![
        rule("blocks.{n}.attn.proj", "blocks.{n}.attention.out"),
        rule("blocks.{n}.attn", "blocks.{n}.attention"),
        rule("blocks.{n}.norm1", "blocks.{n}.attention_norm"),
        rule("blocks.{n}.norm2", "blocks.{n}.mlp_norm"),
    ]
}

/// Key rules of an HF `ViTModel`.
pub fn hf_rules() -> Vec<KeyRule> {
    let n = "encoder.layer.{n}";
    let b = "blocks.{n}";
    vec![
        rule("embeddings.cls_token", "cls_token"),
        rule("embeddings.position_embeddings", "pos_embed"),
        rule("embeddings.patch_embeddings.projection", "patch_embed.proj"),
        rule(
            &format!("{n}.attention.output.dense"),
            &format!("{b}.attention.out"),
        ),
        rule(
            &format!("{n}.attention.attention"),
            &format!("{b}.attention"),
        ),
        rule(
            &format!("{n}.layernorm_before"),
            &format!("{b}.attention_norm"),
        ),
        rule(&format!("{n}.layernorm_after"), &format!("{b}.mlp_norm")),
        rule(&format!("{n}.intermediate.dense"), &format!("{b}.mlp.fc1")),
        rule(&format!("{n}.output.dense"), &format!("{b}.mlp.fc2")),
        rule("layernorm", "norm"),
    ]
}

/// Splits timm's fused `blocks.N.attn.qkv.{weight,bias}` (rows ordered
/// q | k | v, heads contiguous inside each) into `attn.query`, `attn.key`,
/// `attn.value` under `prefix`.
pub fn split_fused_qkv(tensors: &mut TensorMap, prefix: &str) -> Result<(), ImportError> {
    let fused: Vec<String> = tensors
        .names()
        .filter(|k| {
            k.starts_with(prefix)
                && (k.ends_with(".attn.qkv.weight") || k.ends_with(".attn.qkv.bias"))
        })
        .map(str::to_owned)
        .collect();
    for key in fused {
        let data = tensors.remove(&key).expect("listed above");
        let shape = data.shape().to_vec();
        if shape.is_empty() || !shape[0].is_multiple_of(3) {
            return Err(ImportError::Unsupported(format!(
                "`{key}` has shape {shape:?}: a fused qkv needs a first dimension divisible by 3"
            )));
        }
        let rows = shape[0] / 3;
        let row_len: usize = shape[1..].iter().product();
        let values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| ImportError::Unsupported(format!("`{key}`: {e:?}")))?;
        let stem = key
            .trim_end_matches(".weight")
            .trim_end_matches(".bias")
            .trim_end_matches(".qkv");
        let leaf = if key.ends_with(".weight") {
            "weight"
        } else {
            "bias"
        };
        for (i, name) in ["query", "key", "value"].iter().enumerate() {
            let part = values[i * rows * row_len..(i + 1) * rows * row_len].to_vec();
            let mut part_shape = shape.clone();
            part_shape[0] = rows;
            tensors.insert(
                format!("{stem}.{name}.{leaf}"),
                TensorData::new(part, part_shape),
            );
        }
    }
    Ok(())
}

/// Resamples a stored position table to the model's grid when they differ,
/// as ALBEF does when it fine-tunes at 384 px a model pretrained at 256 px.
/// Returns whether it did.
pub fn fit_pos_embed(
    tensors: &mut TensorMap,
    key: &str,
    config: &VitConfig,
    device: &Device,
) -> bool {
    let Some(table) = tensors.get(key) else {
        return false;
    };
    let shape = table.shape().to_vec();
    let tokens = config.grid() * config.grid() + 1;
    if shape.len() != 3 || shape[1] == tokens {
        return false;
    }
    let table = Tensor::<3>::from_data(table.clone().convert::<f32>(), device);
    let resized = interpolate_pos_embed(table, config.grid());
    log::info!(
        "{key}: position table resampled from {} to {tokens} rows",
        shape[1]
    );
    tensors.insert(key, resized.into_data());
    true
}

/// Loads a timm-layout ViT (ALBEF's image encoder, DeiT) from a checkpoint
/// map. timm checkpoints carry no config: `config` gives the shape. A
/// classifier head (`head.*`, `head_dist.*`) is skipped; a position table
/// of another grid is resampled.
pub fn load_timm_vit(
    config: &VitConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<(Vit, LoadReport), ImportError> {
    let skipped = tensors.skip_where(|k| {
        (k.starts_with("head.") || k.starts_with("head_dist.")).then_some("classifier head")
    });
    split_fused_qkv(&mut tensors, "")?;
    fit_pos_embed(&mut tensors, "pos_embed", config, device);
    let config = VitConfig {
        add_pooling_layer: false,
        ..config.clone()
    };
    let (model, mut report) = load_strict(
        config.init(device),
        tensors,
        &timm_rules(),
        Strictness::Strict,
    )?;
    report.skipped = skipped;
    Ok((model, report))
}

/// Loads an HF `ViTModel` directory (or a `ViTForImageClassification` one,
/// whose classifier is skipped).
pub fn load_vit_dir(dir: &Path, device: &Device) -> Result<(Vit, LoadReport), ImportError> {
    let config: VitConfig = read_json(&dir.join("config.json"))?;
    load_vit(config, TensorMap::read(&hf_weights_file(dir)?)?, device)
}

/// Loads HF `ViTModel` tensors; see [`load_vit_dir`].
pub fn load_vit(
    mut config: VitConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<(Vit, LoadReport), ImportError> {
    let mut skipped = Vec::new();
    if tensors.has_prefix("vit.") {
        let encoder = tensors.split_off_prefix("vit.");
        skipped.extend(
            tensors
                .names()
                .map(|k| (k.to_owned(), "head of another task")),
        );
        tensors = encoder;
    }
    config.add_pooling_layer = tensors.contains("pooler.dense.weight");
    let (model, mut report) = load_strict(
        config.init(device),
        tensors,
        &hf_rules(),
        Strictness::Strict,
    )?;
    report.skipped = skipped;
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qkv_split_takes_row_blocks() {
        let mut tensors = TensorMap::default();
        let fused: Vec<f32> = (0..12).map(|v| v as f32).collect();
        tensors.insert("blocks.0.attn.qkv.weight", TensorData::new(fused, [6, 2]));
        tensors.insert(
            "blocks.0.attn.qkv.bias",
            TensorData::new(vec![0f32, 1., 2., 3., 4., 5.], [6]),
        );
        split_fused_qkv(&mut tensors, "").unwrap();
        let rows = |k: &str| {
            tensors
                .get(k)
                .unwrap()
                .clone()
                .try_into_vec::<f32>()
                .unwrap()
        };
        assert_eq!(rows("blocks.0.attn.query.weight"), vec![0., 1., 2., 3.]);
        assert_eq!(rows("blocks.0.attn.key.weight"), vec![4., 5., 6., 7.]);
        assert_eq!(rows("blocks.0.attn.value.weight"), vec![8., 9., 10., 11.]);
        assert_eq!(rows("blocks.0.attn.value.bias"), vec![4., 5.]);
        assert!(!tensors.contains("blocks.0.attn.qkv.weight"));
    }
}
