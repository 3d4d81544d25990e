//! SNLI-VE fine-tuning learns: from an untrained shallow model on a small
//! synthetic world (CI's budget), through the same library call as
//! `train-albef ve`, the loss falls and held-out accuracy ends far above
//! chance (1/3); the best epoch's weights and the results are written.
//! From an untrained model this short run learns what the hypothesis alone
//! tells (the neutral third: 2/3 at most); that the image is used is shown
//! by `train-albef ve` from the pretrained default run beside its
//! `--text-only` baseline (docs/results.md).

use vl_data::manifest::read_captioned_images;
use vl_data::world::{WorldConfig, write_world};
use vl_data::{BadEntries, Framing, TextTokenizer};
use vl_training::albef::downstream::TaskStart;
use vl_training::albef::ve::VeConfig;
use vl_training::albef::ve::pipeline::{VeJob, fine_tune_ve};
use vl_training::albef::{AlbefPretraining, PretrainConfig};
use vl_training::runner::metrics::read_series;

#[test]
fn ve_fine_tuning_lowers_the_loss_and_classifies_held_out_pairs() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let world = WorldConfig {
        seed: 4,
        images: 400,
        val_images: 40,
        test_images: 60,
        ..WorldConfig::default()
    };
    write_world(&world, &dir.join("world")).unwrap();

    // The starting point: an untrained tiny ALBEF saved as a pretraining
    // checkpoint, its tokenizer beside it.
    let (items, _) = read_captioned_images(
        &dir.join("world/pretrain_en.json"),
        None,
        60,
        BadEntries::Fail,
    )
    .unwrap();
    let tokenizer = TextTokenizer::train_wordpiece(
        items.iter().flat_map(|i| i.captions.iter()),
        30522,
        Framing::Start,
    )
    .unwrap();
    let mut pretrain = PretrainConfig::tiny(tokenizer.vocab_size());
    let m = &mut pretrain.model;
    m.vision_depth = 1;
    m.bert_config.num_hidden_layers = 2;
    m.bert_config.fusion_layer = Some(1);
    pretrain.recipe.model_ema_decay = None;
    let device = burn::tensor::Device::flex();
    device.seed(2);
    let model = pretrain.model.init(true, &device);
    let special = tokenizer.special_tokens().unwrap();
    let start = dir.join("start");
    std::fs::create_dir_all(&start).unwrap();
    AlbefPretraining::new(pretrain.clone(), model, special, 2, &device)
        .checkpoint()
        .unwrap()
        .write(&start.join("checkpoint.ckpt"))
        .unwrap();
    tokenizer.save(&start.join("tokenizer.json")).unwrap();

    let mut config = VeConfig::tiny(pretrain.model.clone());
    config.train_file = dir.join("world/ve_train.json");
    config.val_file = Some(dir.join("world/ve_val.json"));
    config.test_file = Some(dir.join("world/ve_test.json"));
    // An untrained model learns faster at a higher rate.
    config.schedular.epochs = 4;
    (config.optimizer.lr, config.schedular.lr) = (5e-4, 5e-4);
    config.validate().unwrap();
    let job = VeJob {
        config,
        start: TaskStart::From(start.join("checkpoint.ckpt")),
        out: dir.join("ve"),
        seed: 1,
        bad: BadEntries::Fail,
        blank_images: false,
    };
    let outcome = fine_tune_ve(&job, &device).unwrap();

    let loss = read_series(&outcome.paths.metrics, "loss_ve").unwrap();
    let mean = |s: &[(f64, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
    let (early, late) = (mean(&loss[..10]), mean(&loss[loss.len() - 10..]));
    let best = outcome.best.unwrap();
    println!("loss {early:.3} → {late:.3}; epochs {:?}", outcome.epochs);
    assert!(late < 0.8 * early, "VE loss did not fall: {early} → {late}");
    let test_acc = best.test_acc.unwrap();
    assert!(test_acc > 0.5, "test_acc {test_acc} (chance 1/3)");
    assert!(dir.join("ve/checkpoint_best.ckpt").is_file());
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ve/results.json")).unwrap())
            .unwrap();
    assert_eq!(results["best"]["test_acc"].as_f64(), Some(test_acc));
}
