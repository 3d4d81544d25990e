//! Grounding fine-tunes and evaluates end to end on a small synthetic world
//! (CI's budget), through the same library call as `train-albef
//! grounding`: the training loss falls, every evaluated expression gets a
//! Grad-CAM pick whose accuracy is reported beside chance, the best epoch
//! and the results are written, and the test examples are drawn. That the
//! picks beat chance needs a pretrained model (docs/results.md): from an
//! untrained one this short run only exercises the machinery.

use vl_data::manifest::read_captioned_images;
use vl_data::world::{WorldConfig, write_world};
use vl_data::{BadEntries, Framing, TextTokenizer};
use vl_training::albef::downstream::TaskStart;
use vl_training::albef::grounding::GroundingConfig;
use vl_training::albef::grounding::pipeline::{GroundingJob, fine_tune_grounding};
use vl_training::albef::{AlbefPretraining, PretrainConfig};
use vl_training::runner::metrics::read_series;

#[test]
fn grounding_trains_and_scores_every_expression() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let world = WorldConfig {
        seed: 6,
        images: 300,
        val_images: 30,
        test_images: 40,
        ..WorldConfig::default()
    };
    write_world(&world, &dir.join("world")).unwrap();
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
    pretrain.model.vision_depth = 1;
    pretrain.recipe.model_ema_decay = None;
    let device = burn::tensor::Device::flex();
    device.seed(3);
    let model = pretrain.model.init(true, &device);
    let special = tokenizer.special_tokens().unwrap();
    std::fs::create_dir_all(dir.join("start")).unwrap();
    AlbefPretraining::new(pretrain.clone(), model, special, 3, &device)
        .checkpoint()
        .unwrap()
        .write(&dir.join("start/checkpoint.ckpt"))
        .unwrap();
    tokenizer.save(&dir.join("start/tokenizer.json")).unwrap();

    let mut config = GroundingConfig::tiny(pretrain.model);
    config.train_file = vec![dir.join("world/grounding_train.json")];
    config.test_file = vec![
        dir.join("world/grounding_val.json"),
        dir.join("world/grounding_test.json"),
    ];
    config.det_file = dir.join("world/grounding_dets.json");
    let lr = 1.5e-3;
    (
        config.optimizer.lr,
        config.schedular.lr,
        config.schedular.warmup_lr,
    ) = (lr, lr, lr);
    (config.batch_size, config.queue_size, config.momentum) = (16, 32, 0.5);
    config.execution.workers = 1;
    config.schedular.epochs = 10;
    config.png_examples = 3;
    config.validate().unwrap();
    let job = GroundingJob {
        config,
        start: TaskStart::From(dir.join("start/checkpoint.ckpt")),
        out: dir.join("grounding"),
        seed: 1,
        bad: BadEntries::Fail,
        evaluate_only: false,
    };
    let outcome = fine_tune_grounding(&job, &device).unwrap();

    let ita = read_series(&outcome.paths.metrics, "loss_ita").unwrap();
    let mean = |s: &[(f64, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
    let (early, late) = (mean(&ita[..5]), mean(&ita[ita.len() - 5..]));
    println!("ITC loss {early:.3} → {late:.3}; {:?}", outcome.epochs);
    // The world's expressions are short and many images hold what one
    // names ("the circle"), so in-batch contrast is weak: the loss falls
    // little in so few steps.
    assert!(
        late < 0.97 * early,
        "ITC loss did not fall: {early} → {late}"
    );
    let test_lines = std::fs::read_to_string(dir.join("world/grounding_test.json")).unwrap();
    let expressions: Vec<serde_json::Value> = serde_json::from_str(&test_lines).unwrap();
    let test = outcome.epochs.last().unwrap().test.clone().unwrap();
    assert_eq!(test.count, expressions.len());
    assert!((0.0..=1.0).contains(&test.d));
    // Every world expression names one of two or more objects.
    assert_eq!(test.count_multi, test.count);
    assert!(test.chance > 0.2 && test.chance <= 0.5, "{}", test.chance);
    assert_eq!(outcome.pngs.len(), 3);
    assert!(outcome.pngs.iter().all(|p| p.is_file()));
    assert!(dir.join("grounding/checkpoint_best.ckpt").is_file());
    assert!(dir.join("grounding/results.json").is_file());
}
