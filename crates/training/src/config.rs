//! Reading a job's YAML config strictly: every key must be one the job
//! knows (a typo is an error naming the key and the closest valid one),
//! and the job's `validate` checks the values before anything runs.
//!
//! serde's `deny_unknown_fields` cannot be used: the ALBEF config flattens
//! the model's keys into its own (as the reference's `Pretrain.yaml` does),
//! and serde ignores unknown keys of a flattened struct. The check here
//! compares the file's keys with those of a fully populated config of the
//! job instead, recursively.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::TrainError;

/// Keys of a nested section that are accepted without being the config's
/// own: the fields HF's `PretrainedConfig` and `BertConfig` define, which an
/// HF `config.json` used as `bert_config` may carry although this port has
/// no use for them.
pub const HF_CONFIG_KEYS: &[&str] = &[
    "architectures",
    "model_type",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "position_embedding_type",
    "use_cache",
    "classifier_dropout",
    "gradient_checkpointing",
    "output_past",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "chunk_size_feed_forward",
    "is_decoder",
    "add_cross_attention",
    "tie_word_embeddings",
    "id2label",
    "label2id",
    "problem_type",
    "finetuning_task",
    "tokenizer_class",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "pruned_heads",
    "directionality",
    "pooler_fc_size",
    "pooler_num_attention_heads",
    "pooler_num_fc_layers",
    "pooler_size_per_head",
    "pooler_type",
    "_name_or_path",
];

/// A key of a config file that the job does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Dotted path of the key (`bert_config.hiden_size`).
    pub key: String,
    /// The closest key the job knows at the same place, if one is close.
    pub nearest: Option<String>,
}

impl std::fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown key `{}`", self.key)?;
        if let Some(nearest) = &self.nearest {
            write!(f, " (did you mean `{nearest}`?)")?;
        }
        Ok(())
    }
}

/// The keys of `value` that `schema` (a fully populated config of the
/// job, as JSON) does not have, at any depth; objects under a key listed in
/// `hf_sections` may also carry [`HF_CONFIG_KEYS`].
pub fn unknown_keys(
    value: &serde_json::Value,
    schema: &serde_json::Value,
    hf_sections: &[&str],
) -> Vec<UnknownKey> {
    let mut unknown = Vec::new();
    walk(value, schema, "", hf_sections, &mut unknown);
    unknown
}

fn walk(
    value: &serde_json::Value,
    schema: &serde_json::Value,
    prefix: &str,
    hf_sections: &[&str],
    unknown: &mut Vec<UnknownKey>,
) {
    let (Some(value), Some(schema)) = (value.as_object(), schema.as_object()) else {
        return;
    };
    let hf = hf_sections.contains(&prefix.trim_end_matches('.'));
    for (key, child) in value {
        match schema.get(key) {
            Some(expected) => {
                let path = format!("{prefix}{key}.");
                walk(child, expected, &path, hf_sections, unknown);
            }
            None if hf && HF_CONFIG_KEYS.contains(&key.as_str()) => {}
            None => unknown.push(UnknownKey {
                key: format!("{prefix}{key}"),
                nearest: nearest(key, schema.keys().map(String::as_str)),
            }),
        }
    }
}

/// The candidate closest to `key` by edit distance, if within a third of
/// its length (at least 2 edits).
pub fn nearest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let limit = (key.chars().count() / 3).max(2);
    candidates
        .map(|c| (strsim::damerau_levenshtein(key, c), c))
        .filter(|&(d, _)| d <= limit)
        .min()
        .map(|(_, c)| c.to_owned())
}

/// Reads a YAML (or JSON) file into a JSON value.
pub fn read_yaml(path: &Path) -> Result<serde_json::Value, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_norway::from_str(&text).map_err(|source| TrainError::Yaml {
        path: path.to_owned(),
        source,
    })
}

/// `over` laid over `base`: maps merge key by key (recursively), any other
/// value replaces the base's. A partial section then keeps the base's
/// other fields.
pub fn overlay(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => overlay(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Deserialises `value`, read from `path`, into a config `T` after checking
/// that every key is one of `schema`'s (see [`unknown_keys`]).
pub fn from_value_strict<T: DeserializeOwned, S: Serialize>(
    path: &Path,
    value: serde_json::Value,
    schema: &S,
    hf_sections: &[&str],
) -> Result<T, TrainError> {
    let schema = serde_json::to_value(schema).map_err(|source| TrainError::Json {
        path: path.to_owned(),
        source,
    })?;
    if let Some(first) = unknown_keys(&value, &schema, hf_sections)
        .into_iter()
        .next()
    {
        return Err(TrainError::UnknownKey {
            path: path.to_owned(),
            key: first,
        });
    }
    serde_json::from_value(value).map_err(|source| TrainError::Json {
        path: path.to_owned(),
        source,
    })
}

/// A value of a config that cannot be right.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidValue {
    /// Dotted path of the key (`schedular.lr`).
    pub key: String,
    /// Why.
    pub message: String,
}

impl std::fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// Collects the invalid values of a config, in the order checked.
#[derive(Debug, Default)]
pub struct Checks {
    problems: Vec<InvalidValue>,
}

impl Checks {
    /// Records `message` against `key` unless `ok`.
    pub fn require(&mut self, ok: bool, key: &str, message: impl std::fmt::Display) {
        if !ok {
            self.problems.push(InvalidValue {
                key: key.to_owned(),
                message: message.to_string(),
            });
        }
    }

    /// `value` must lie in `[low, high]`.
    pub fn in_range(&mut self, value: f64, low: f64, high: f64, key: &str) {
        self.require(
            value.is_finite() && (low..=high).contains(&value),
            key,
            format_args!("{value} is outside [{low}, {high}]"),
        );
    }

    /// `value` must be at least 1.
    pub fn positive(&mut self, value: usize, key: &str) {
        self.require(value >= 1, key, "must be at least 1");
    }

    /// `Ok` if nothing was recorded, else [`TrainError::InvalidConfig`]
    /// with every problem.
    pub fn finish(self) -> Result<(), TrainError> {
        match self.problems.is_empty() {
            true => Ok(()),
            false => Err(TrainError::InvalidConfig(self.problems)),
        }
    }
}

/// Records the values of an augmentation that cannot be right, under `key`.
pub fn check_augment(augment: &vl_data::transforms::AugmentConfig, c: &mut Checks, key: &str) {
    let (low, high) = augment.crop_scale;
    c.require(
        0.0 < low && low <= high && high <= 1.0,
        &format!("{key}.crop_scale"),
        format_args!("[{low}, {high}] must satisfy 0 < low ≤ high ≤ 1"),
    );
    c.in_range(
        augment.randaugment_magnitude,
        0.0,
        30.0,
        &format!("{key}.randaugment_magnitude"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_keys_are_found_at_any_depth_with_the_nearest_known_one() {
        let schema = json!({
            "batch_size": 1,
            "bert_config": {"hidden_size": 1, "vocab_size": 1},
            "optimizer": {"lr": 1.0},
        });
        let value = json!({
            "bacth_size": 8,
            "bert_config": {"hiden_size": 3, "architectures": ["x"], "vocab_size": 2},
            "optimizer": {"lr": 1.0, "momentum_beta": 2},
        });
        let found = unknown_keys(&value, &schema, &["bert_config"]);
        let keys: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            keys,
            [
                "unknown key `bacth_size` (did you mean `batch_size`?)",
                "unknown key `bert_config.hiden_size` (did you mean `hidden_size`?)",
                "unknown key `optimizer.momentum_beta`",
            ]
        );
        // HF's own fields are accepted only where an HF config may stand.
        let found = unknown_keys(&json!({"architectures": 1}), &schema, &["bert_config"]);
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn checks_collect_every_problem() {
        let mut checks = Checks::default();
        checks.in_range(2.0, 0.0, 1.0, "momentum");
        checks.in_range(f64::NAN, 0.0, 1.0, "alpha");
        checks.positive(0, "batch_size");
        checks.positive(3, "queue_size");
        let err = checks.finish().unwrap_err().to_string();
        assert!(err.contains("`momentum`: 2 is outside [0, 1]"), "{err}");
        assert!(err.contains("`alpha`: NaN"), "{err}");
        assert!(err.contains("`batch_size`: must be at least 1"), "{err}");
        assert!(!err.contains("queue_size"), "{err}");
        assert!(Checks::default().finish().is_ok());
    }
}
