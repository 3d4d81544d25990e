//! Loading HF BERT and XLM-R checkpoints (`BertModel`, `BertForMaskedLM`,
//! `XLMRobertaModel`, sentence-transformers exports).
//!
//! | checkpoint key (under the encoder prefix) | field path |
//! |---|---|
//! | `embeddings.LayerNorm` | `embeddings.layer_norm` |
//! | `encoder.layer.N.attention.self.{query,key,value}` | `encoder.layer.N.attention.{query,key,value}` |
//! | `encoder.layer.N.attention.output.dense` | `encoder.layer.N.attention.out` |
//! | `encoder.layer.N.attention.output.LayerNorm` | `encoder.layer.N.attention_norm` |
//! | `encoder.layer.N.crossattention.self.*` (ALBEF) | `encoder.layer.N.crossattention.*` |
//! | `encoder.layer.N.crossattention.output.dense` | `encoder.layer.N.crossattention.out` |
//! | `encoder.layer.N.crossattention.output.LayerNorm` | `encoder.layer.N.crossattention_norm` |
//! | `encoder.layer.N.intermediate.dense` | `encoder.layer.N.mlp.fc1` |
//! | `encoder.layer.N.output.dense` | `encoder.layer.N.mlp.fc2` |
//! | `encoder.layer.N.output.LayerNorm` | `encoder.layer.N.mlp_norm` |
//! | `cls.predictions.transform.LayerNorm` | `cls.predictions.transform.layer_norm` |
//! | `cls.predictions.decoder.{weight,bias}` | tied: checked equal, then dropped |
//!
//! Everything else keeps its name. `*.embeddings.position_ids` and
//! `token_type_ids` buffers are skipped.

use std::path::Path;

use burn::tensor::Device;

use super::{
    ImportError, KeyRule, LoadReport, Strictness, TensorMap, hf_weights_file, load_strict,
    prefixed, read_json, rule, skip_hf_buffers,
};
use crate::bert::{BertConfig, BertForMaskedLm, BertModel};

/// Key rules of a BERT encoder, relative to its root.
pub fn encoder_rules() -> Vec<KeyRule> {
    let mut rules = vec![rule("embeddings.LayerNorm", "embeddings.layer_norm")];
    for (sub, ours) in [
        ("attention", "attention"),
        ("crossattention", "crossattention"),
    ] {
        let n = "encoder.layer.{n}";
        rules.push(rule(
            &format!("{n}.{sub}.output.dense"),
            &format!("{n}.{ours}.out"),
        ));
        rules.push(rule(
            &format!("{n}.{sub}.output.LayerNorm"),
            &format!("{n}.{ours}_norm"),
        ));
        rules.push(rule(&format!("{n}.{sub}.self"), &format!("{n}.{ours}")));
    }
    rules.extend([
        rule(
            "encoder.layer.{n}.intermediate.dense",
            "encoder.layer.{n}.mlp.fc1",
        ),
        rule(
            "encoder.layer.{n}.output.dense",
            "encoder.layer.{n}.mlp.fc2",
        ),
        rule(
            "encoder.layer.{n}.output.LayerNorm",
            "encoder.layer.{n}.mlp_norm",
        ),
    ]);
    rules
}

/// Key rules of `cls.predictions`, relative to the `cls.` root.
pub fn mlm_head_rules() -> Vec<KeyRule> {
    vec![rule(
        "predictions.transform.LayerNorm",
        "predictions.transform.layer_norm",
    )]
}

/// Checks that the MLM decoder stored next to the head is the tied one and
/// drops it: `decoder.weight` must equal the word embeddings and
/// `decoder.bias` must equal `predictions.bias` (taking its place if absent).
///
/// HF and ALBEF write both copies; our head has only the tied form, so an
/// untied decoder cannot be represented and is an error.
pub fn untie_check(
    tensors: &mut TensorMap,
    cls_prefix: &str,
    word_embeddings_key: &str,
) -> Result<(), ImportError> {
    let decoder_weight = format!("{cls_prefix}predictions.decoder.weight");
    let decoder_bias = format!("{cls_prefix}predictions.decoder.bias");
    let bias = format!("{cls_prefix}predictions.bias");
    if let Some(weight) = tensors.remove(&decoder_weight) {
        let tied = tensors
            .get(word_embeddings_key)
            .is_some_and(|w| same_values(w, &weight));
        if !tied {
            return Err(ImportError::Unsupported(format!(
                "`{decoder_weight}` differs from `{word_embeddings_key}`: an untied MLM decoder is not supported"
            )));
        }
    }
    if let Some(decoder) = tensors.remove(&decoder_bias) {
        match tensors.get(&bias) {
            Some(existing) if !same_values(existing, &decoder) => {
                return Err(ImportError::Unsupported(format!(
                    "`{decoder_bias}` differs from `{bias}`: an untied MLM decoder bias is not supported"
                )));
            }
            Some(_) => {}
            None => tensors.insert(bias, decoder),
        }
    }
    Ok(())
}

fn same_values(a: &burn::tensor::TensorData, b: &burn::tensor::TensorData) -> bool {
    a.shape() == b.shape()
        && a.clone().convert::<f32>().as_slice::<f32>()
            == b.clone().convert::<f32>().as_slice::<f32>()
}

/// Reads `config.json` of an HF BERT or XLM-R directory.
pub fn read_config(dir: &Path) -> Result<BertConfig, ImportError> {
    read_json(&dir.join("config.json"))
}

/// Loads an encoder (`BertModel` / `XLMRobertaModel`) from an HF directory.
///
/// Checkpoints of head models (`bert.`/`roberta.`-prefixed keys) load too;
/// their heads are skipped and listed in the report. The pooler is built
/// when the checkpoint has one.
pub fn load_bert_dir(dir: &Path, device: &Device) -> Result<(BertModel, LoadReport), ImportError> {
    let config = read_config(dir)?;
    let tensors = TensorMap::read(&hf_weights_file(dir)?)?;
    load_bert(config, tensors, device)
}

/// Loads an encoder from tensors in HF naming; see [`load_bert_dir`].
pub fn load_bert(
    mut config: BertConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<(BertModel, LoadReport), ImportError> {
    let mut skipped = tensors.skip_where(skip_hf_buffers);
    for base in ["bert.", "roberta."] {
        if tensors.has_prefix(base) {
            let encoder = tensors.split_off_prefix(base);
            skipped.extend(
                tensors
                    .names()
                    .map(|k| (k.to_owned(), "head of another task")),
            );
            tensors = encoder;
        }
    }
    config.add_pooling_layer = tensors.contains("pooler.dense.weight");
    let (model, mut report) = load_strict(
        config.init(device),
        tensors,
        &encoder_rules(),
        Strictness::Strict,
    )?;
    report.skipped = skipped;
    Ok((model, report))
}

/// Loads `BertForMaskedLM` from an HF directory.
pub fn load_bert_masked_lm_dir(
    dir: &Path,
    device: &Device,
) -> Result<(BertForMaskedLm, LoadReport), ImportError> {
    let config = read_config(dir)?;
    let tensors = TensorMap::read(&hf_weights_file(dir)?)?;
    load_bert_masked_lm(config, tensors, device)
}

/// Loads `BertForMaskedLM` from tensors in HF naming (`bert.*`, `cls.*`).
/// The pooler and next-sentence head of `BertForPreTraining` checkpoints are
/// skipped.
pub fn load_bert_masked_lm(
    config: BertConfig,
    mut tensors: TensorMap,
    device: &Device,
) -> Result<(BertForMaskedLm, LoadReport), ImportError> {
    let mut skipped = tensors.skip_where(skip_hf_buffers);
    skipped.extend(tensors.skip_where(|k| {
        (k.starts_with("bert.pooler.") || k.starts_with("cls.seq_relationship."))
            .then_some("not part of BertForMaskedLM")
    }));
    untie_check(
        &mut tensors,
        "cls.",
        "bert.embeddings.word_embeddings.weight",
    )?;
    let mut rules = prefixed("bert.", "bert.", &encoder_rules());
    rules.extend(prefixed("cls.", "cls.", &mlm_head_rules()));
    let (model, mut report) = load_strict(
        config.init_masked_lm(device),
        tensors,
        &rules,
        Strictness::Strict,
    )?;
    report.skipped = skipped;
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{expected_shapes, to_checkpoint_key, to_model_key};

    #[test]
    fn every_parameter_has_a_distinct_checkpoint_key() {
        // The table must be a bijection on this model's keys, or a rename
        // would silently load one tensor into two places.
        let config = BertConfig {
            vocab_size: 10,
            hidden_size: 8,
            num_hidden_layers: 3,
            num_attention_heads: 2,
            intermediate_size: 8,
            max_position_embeddings: 8,
            fusion_layer: Some(1),
            encoder_width: Some(6),
            add_pooling_layer: true,
            ..BertConfig::base()
        };
        let model = config.init(&Device::flex());
        let rules = encoder_rules();
        let mut seen = std::collections::BTreeSet::new();
        for path in expected_shapes(&model).keys() {
            let key = to_checkpoint_key(&rules, path);
            assert_eq!(&to_model_key(&rules, &key), path, "{key} does not map back");
            assert!(seen.insert(key.clone()), "{key} used twice");
        }
        assert!(seen.contains("encoder.layer.2.crossattention.self.key.weight"));
        assert!(seen.contains("encoder.layer.0.attention.output.LayerNorm.bias"));
    }
}
