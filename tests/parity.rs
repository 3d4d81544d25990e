//! Every committed fixture through the same code path as `cargo xtask parity`.

use burn::tensor::{Device, TensorData};
use vl_models::import::TensorMap;
use vl_tests::{fixture, parity_fixtures};

const TOLERANCE: f32 = 1e-4;

#[test]
fn every_fixture_matches_pytorch() {
    let device = Device::flex();
    let fixtures = parity_fixtures();
    let names: Vec<_> = fixtures
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "albef",
        "albef_finetuned",
        "albef_grounding",
        "albef_ve",
        "albef_vqa",
        "albef_vqa_pretrained",
        "altclip",
        "bert",
        "bert_mlm",
        "clip",
        "clip_first_eos",
        "vit",
        "xlm_roberta",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "fixture {expected} is missing"
        );
    }
    let mut failures = Vec::new();
    for dir in fixtures {
        let report = vl_parity::check_dir(&dir, TOLERANCE, &device).unwrap();
        println!("{report}");
        if !report.passed() {
            failures.push(report.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_perturbed_weight_fails_parity() {
    // The harness must be able to fail: shift one LayerNorm bias (which the
    // default HF init would leave at zero) and expect a large error.
    let source = fixture("bert");
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    for file in ["config.json", "io.safetensors"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let mut tensors = TensorMap::read(&source.join("model.safetensors")).unwrap();
    let key = "encoder.layer.1.output.LayerNorm.bias";
    let bias = tensors.remove(key).unwrap().convert::<f32>();
    let shifted: Vec<f32> = bias
        .as_slice::<f32>()
        .unwrap()
        .iter()
        .map(|v| v + 0.01)
        .collect();
    tensors.insert(key, TensorData::new(shifted, bias.shape().to_vec()));
    tensors
        .write_safetensors(&dir.join("model.safetensors"))
        .unwrap();

    let report = vl_parity::check_dir(dir, TOLERANCE, &Device::flex()).unwrap();
    assert!(!report.passed(), "{report}");
    assert!(report.max_abs_error() > 1e-3, "{report}");
}

#[test]
fn gradcam_matches_relative_to_its_scale() {
    // Grad-CAM values are ~1e-3: the shared absolute tolerance alone would
    // let a 10 % error pass.
    let device = Device::flex();
    let dir = fixture("albef_grounding");
    let report = vl_parity::check_dir(&dir, TOLERANCE, &device).unwrap();
    let check = report
        .outputs
        .iter()
        .find(|c| c.name == "gradcam")
        .expect("the fixture has a gradcam");
    let io = TensorMap::read(&dir.join("io.safetensors")).unwrap();
    let expected = io.get("gradcam").unwrap().clone().convert::<f32>();
    let scale = expected
        .as_slice::<f32>()
        .unwrap()
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let error = check.max_abs_error.unwrap();
    assert!(scale > 0.0);
    assert!(error < 1e-4 * scale, "error {error} at scale {scale}");
}
