//! Reading checkpoints, renaming keys, strict loading.

use super::*;

fn rules() -> Vec<KeyRule> {
    vec![
        rule(
            "encoder.layer.{n}.attention.output.dense",
            "encoder.layer.{n}.attention.out",
        ),
        rule(
            "encoder.layer.{n}.attention.self",
            "encoder.layer.{n}.attention",
        ),
        rule(
            "encoder.layer.{n}.output.LayerNorm",
            "encoder.layer.{n}.mlp_norm",
        ),
    ]
}

#[test]
fn rules_rename_both_ways() {
    let rules = rules();
    for key in [
        "encoder.layer.11.attention.self.query.weight",
        "encoder.layer.3.attention.output.dense.bias",
        "encoder.layer.0.output.LayerNorm.bias",
    ] {
        let model = to_model_key(&rules, key);
        assert_ne!(model, key);
        assert_eq!(to_checkpoint_key(&rules, &model), key);
    }
    assert_eq!(
        to_model_key(&rules, "encoder.layer.11.attention.self.query.weight"),
        "encoder.layer.11.attention.query.weight"
    );
}

#[test]
fn rules_need_whole_segments_and_numbers() {
    // `layers` is not `layer`, and `x` is not a number: both pass through.
    let rules = rules();
    for key in [
        "encoder.layers.0.attention.self.query.weight",
        "encoder.layer.x.attention.self.q",
    ] {
        assert_eq!(to_model_key(&rules, key), key);
    }
}

#[test]
fn prefixed_rules_move_unrenamed_keys_too() {
    let rules = prefixed("bert.", "text_encoder.bert.", &rules());
    assert_eq!(
        to_model_key(&rules, "bert.encoder.layer.1.attention.self.key.weight"),
        "text_encoder.bert.encoder.layer.1.attention.key.weight"
    );
    assert_eq!(
        to_model_key(&rules, "bert.embeddings.word_embeddings.weight"),
        "text_encoder.bert.embeddings.word_embeddings.weight"
    );
}
