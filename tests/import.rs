//! Checkpoint loading: named errors, checkpoint flavours, exact round trips.

use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::tensor::{Device, TensorData};
use vl_models::import::{self, ImportError, KeyProblem, TensorMap};
use vl_models::{AlbefConfig, BertConfig};
use vl_tests::fixture;

fn bert_fixture() -> (BertConfig, TensorMap) {
    let dir = fixture("bert");
    let config = import::bert::read_config(&dir).unwrap();
    (
        config,
        TensorMap::read(&dir.join("model.safetensors")).unwrap(),
    )
}

fn problems(result: Result<impl std::fmt::Debug, ImportError>) -> (Vec<KeyProblem>, String) {
    match result {
        Err(ImportError::Mismatch(problems)) => {
            let message = problems.to_string();
            (problems.0, message)
        }
        other => panic!("expected a key mismatch, got {other:?}"),
    }
}

#[test]
fn a_renamed_key_is_reported_missing_and_unexpected_by_name() {
    let (config, mut tensors) = bert_fixture();
    let good = "encoder.layer.0.attention.self.query.weight";
    let data = tensors.remove(good).unwrap();
    tensors.insert("encoder.layer.0.attention.self.quary.weight", data);
    let (problems, message) = problems(import::bert::load_bert(config, tensors, &Device::flex()));
    assert_eq!(problems.len(), 2, "{message}");
    assert!(problems.contains(&KeyProblem::Missing {
        key: good.into(),
        expected: vec![32, 32]
    }));
    assert!(problems.contains(&KeyProblem::Unexpected {
        key: "encoder.layer.0.attention.self.quary.weight".into(),
        shape: vec![32, 32]
    }));
    assert!(
        message.contains("missing key `encoder.layer.0.attention.self.query.weight`"),
        "{message}"
    );
}

#[test]
fn a_wrong_shape_names_the_key_and_both_shapes() {
    let (config, mut tensors) = bert_fixture();
    let key = "encoder.layer.1.intermediate.dense.weight";
    tensors.insert(key, TensorData::new(vec![0f32; 36 * 32], [36, 32]));
    let (problems, message) = problems(import::bert::load_bert(config, tensors, &Device::flex()));
    assert_eq!(
        problems,
        vec![KeyProblem::Shape {
            key: key.into(),
            checkpoint: vec![36, 32],
            model: vec![37, 32]
        }]
    );
    assert!(
        message.contains("[36, 32] in the checkpoint, [37, 32] in the model"),
        "{message}"
    );
}

#[test]
fn non_strict_mode_lists_unexpected_keys_instead() {
    let (config, mut tensors) = bert_fixture();
    tensors.insert(
        "classifier.weight",
        TensorData::new(vec![0f32; 64], [2, 32]),
    );
    let model = config.init(&Device::flex());
    let rules = import::bert::encoder_rules();
    tensors.skip_where(import::skip_hf_buffers);
    let strict = import::load_strict(
        model.clone(),
        tensors.clone(),
        &rules,
        import::Strictness::Strict,
    );
    assert!(strict.is_err());
    // The fixture has a pooler; this model was built without, so widen it.
    let model = BertConfig {
        add_pooling_layer: true,
        ..import::bert::read_config(&fixture("bert")).unwrap()
    }
    .init(&Device::flex());
    let (_, report) =
        import::load_strict(model, tensors, &rules, import::Strictness::AllowUnexpected).unwrap();
    assert_eq!(report.unexpected, vec!["classifier.weight".to_owned()]);
}

#[test]
fn an_untied_mlm_decoder_is_refused() {
    let dir = fixture("bert_mlm");
    let config = import::bert::read_config(&dir).unwrap();
    let mut tensors = TensorMap::read(&dir.join("model.safetensors")).unwrap();
    let vocab = tensors
        .get("bert.embeddings.word_embeddings.weight")
        .unwrap()
        .clone();
    let shape = vocab.shape().to_vec();
    tensors.insert(
        "cls.predictions.decoder.weight",
        TensorData::new(vec![0.5f32; shape.iter().product()], shape),
    );
    match import::bert::load_bert_masked_lm(config, tensors, &Device::flex()) {
        Err(ImportError::Unsupported(message)) => assert!(message.contains("untied"), "{message}"),
        other => panic!("expected an untied-decoder error, got {other:?}"),
    }
}

#[test]
fn altclip_loads_either_vision_layer_spelling() {
    // The fixture has the hub's `vision_model.encoder.layers.N`; transformers
    // 5 writes `encoder.layer.N`. Both must give the same model.
    let dir = fixture("altclip");
    let config = import::clip::read_altclip_config(&dir).unwrap();
    let hub = TensorMap::read(&dir.join("model.safetensors")).unwrap();
    assert!(hub.has_prefix("vision_model.encoder.layers."));
    let mut saved = hub.clone();
    saved.replace_prefix(
        "vision_model.encoder.layers.",
        "vision_model.encoder.layer.",
    );
    saved.replace_prefix(
        "text_model.roberta.encoder.layer.",
        "text_model.roberta.encoder.layers.",
    );
    let device = Device::flex();
    let (a, _) = import::clip::load_altclip(&config, hub, &device).unwrap();
    let (b, _) = import::clip::load_altclip(&config, saved, &device).unwrap();
    assert_same_parameters(&a, &b);
}

#[test]
fn albef_pth_loads_online_momentum_and_queues() {
    // checkpoint.pth is laid out as the official ALBEF.pth: `{"model": …}`
    // with `*_m` momentum copies, queues, the tied decoder and position ids.
    let dir = fixture("albef");
    let config: AlbefConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let device = Device::flex();
    let pth =
        import::albef::load_albef_file(&dir.join("checkpoint.pth"), &config, &device).unwrap();
    let reference =
        import::albef::load_albef_file(&dir.join("model.safetensors"), &config, &device).unwrap();
    assert_same_parameters(&pth.model, &reference.model);
    assert!(pth.model.has_mlm_head());

    let raw = TensorMap::read(&dir.join("checkpoint.pth")).unwrap();
    let momentum = pth.momentum.expect("momentum copies");
    let loaded = momentum.vision_proj.weight.val().transpose().into_data();
    let stored = raw.get("vision_proj_m.weight").unwrap().clone();
    loaded.assert_eq(&stored, true);
    let online = pth.model.vision_proj.weight.val().transpose().into_data();
    assert_ne!(online, stored, "momentum must not be the online copy");

    let queues = pth.queues.expect("queues");
    assert_eq!(
        queues.image_queue.shape().to_vec(),
        vec![config.embed_dim, 8]
    );
    assert_eq!(queues.queue_ptr, 3);
    assert!(queues.idx_queue.is_none());
}

#[test]
fn ve_loads_its_own_layout_and_the_pretraining_one() {
    let device = Device::flex();
    // A VE checkpoint: online and momentum, `cls_head.{0,2}` included.
    let dir = fixture("albef_ve");
    let config: AlbefConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let raw = TensorMap::read(&dir.join("model.safetensors")).unwrap();
    let ve = import::albef_ve::load_albef_ve(&config, raw.clone(), &device).unwrap();
    let momentum = ve.momentum.expect("momentum copies");
    let loaded = momentum.cls_head.out.weight.val().transpose().into_data();
    loaded.assert_eq(raw.get("cls_head_m.2.weight").unwrap(), true);
    let online = ve.model.cls_head.out.weight.val().transpose().into_data();
    online.assert_eq(raw.get("cls_head.2.weight").unwrap(), true);

    // A pretraining checkpoint: the encoders, a fresh head shared by the
    // momentum copy, and everything else dropped by name.
    let dir = fixture("albef");
    let config: AlbefConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let raw = TensorMap::read(&dir.join("checkpoint.pth")).unwrap();
    let ve = import::albef_ve::load_albef_ve(&config, raw.clone(), &device).unwrap();
    let pretrained = import::albef::load_albef(&config, raw, &device).unwrap();
    assert_same_parameters(&ve.model.visual_encoder, &pretrained.model.visual_encoder);
    assert_same_parameters(&ve.model.text_encoder, &pretrained.model.text_encoder.bert);
    let momentum = ve.momentum.expect("momentum copies");
    let pretrained_momentum = pretrained.momentum.unwrap();
    assert_same_parameters(
        &momentum.text_encoder,
        &pretrained_momentum.text_encoder.bert,
    );
    assert_same_parameters(&momentum.cls_head, &ve.model.cls_head);
    let dropped: Vec<&str> = ve.report.skipped.iter().map(|(k, _)| k.as_str()).collect();
    for key in ["vision_proj.weight", "itm_head.bias", "image_queue", "temp"] {
        assert!(dropped.contains(&key), "{key} not reported: {dropped:?}");
    }
    assert!(dropped.iter().any(|k| k.starts_with("text_encoder.cls.")));
}

#[test]
fn burnpack_checkpoints_round_trip_exactly() {
    let device = Device::flex();
    let config = AlbefConfig::tiny(50);
    let model = config.init(true, &device);
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("roundtrip.bpk");
    model.clone().save_file(&path).unwrap();
    // burnpack reads tensors lazily from the file: compare before deleting.
    let reloaded = config.init(true, &device).load_file(&path);
    assert_same_parameters(&model, &reloaded);
}

fn assert_same_parameters<M: Module>(a: &M, b: &M) {
    let a = a.collect(None, None, false);
    let b = b.collect(None, None, false);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.name, y.name);
        let (dx, dy) = (
            burn::store::bridge::to_data(x).unwrap(),
            burn::store::bridge::to_data(y).unwrap(),
        );
        assert_eq!(dx, dy, "{} differs", x.name);
    }
}
