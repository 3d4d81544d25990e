//! The AltCLIP export writes an HF directory that our loader reads back
//! into the same model (and that `transformers` loads: see
//! docs/parity.md for the by-hand check).

use burn::tensor::{Device, Int, Tensor};
use vl_models::TextInput;
use vl_models::import::TensorMap;
use vl_models::import::clip::{load_altclip_dir, save_altclip_dir};
use vl_training::altclip::AltClipRecipe;

#[test]
fn an_exported_student_loads_back_identically() {
    let device = Device::flex();
    device.seed(5);
    let mut recipe = AltClipRecipe::tiny();
    recipe.teacher.text_config.vocab_size = 50;
    recipe.student.roberta.vocab_size = 60;
    let config = recipe.student_config();
    let model = config.init(&device);
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    save_altclip_dir(&model, &config, dir).unwrap();

    let tensors = TensorMap::read(&dir.join("model.safetensors")).unwrap();
    assert_eq!(
        tensors.get("logit_scale").unwrap().shape().to_vec(),
        Vec::<usize>::new()
    );
    assert!(tensors.contains("text_model.pre_LN.weight"));
    assert!(tensors.contains("text_model.roberta.encoder.layer.1.attention.self.query.weight"));
    assert!(tensors.contains("vision_model.encoder.layers.1.self_attn.q_proj.weight"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["model_type"], "altclip");
    assert_eq!(json["text_config"]["model_type"], "altclip_text_model");

    let (loaded, report) = load_altclip_dir(dir, &device).unwrap();
    assert_eq!(report.loaded, tensors.len());
    let ids = Tensor::<2, Int>::from_data([[0, 7, 9, 11, 2], [0, 8, 2, 1, 1]], &device);
    let input = TextInput::new(ids.clone()).with_padding(ids.equal_elem(1));
    let pixels = Tensor::<4>::random(
        [2, 3, 32, 32],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let a = model.forward(&input, pixels.clone());
    let b = loaded.forward(&input, pixels);
    let diff = (a.logits_per_text - b.logits_per_text)
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff == 0.0, "logits differ by {diff}");
}
