//! Retrieval fine-tuning learns, and resumes where it stopped: on a small
//! synthetic world from an untrained shallow model (CI's budget), through
//! the same library call as `train-albef retrieval`, the contrastive loss
//! falls and held-out retrieval ends far above chance and above the
//! starting weights; a run stopped after one epoch and resumed ends with the
//! same losses as one that was not stopped.

use std::path::Path;
use vl_training::albef::downstream::TaskStart;

use vl_data::manifest::read_captioned_images;
use vl_data::world::{WorldConfig, write_world};
use vl_data::{BadEntries, Framing, TextTokenizer};
use vl_training::albef::retrieval::RetrievalConfig;
use vl_training::albef::retrieval::pipeline::{RetrievalJob, fine_tune_retrieval};
use vl_training::albef::{AlbefPretraining, PretrainConfig};
use vl_training::runner::metrics::read_series;

/// A world, and an untrained tiny ALBEF saved as a pretraining checkpoint
/// with its tokenizer beside it; returns the config to fine-tune with.
fn setup(dir: &Path) -> RetrievalConfig {
    let world = WorldConfig {
        seed: 5,
        images: 400,
        val_images: 30,
        test_images: 60,
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
    let m = &mut pretrain.model;
    m.vision_depth = 1;
    m.bert_config.num_hidden_layers = 2;
    m.bert_config.fusion_layer = Some(1);
    // As the pretraining test's shallow variant: aligns fastest.
    m.bert_config.initializer_range = 0.2;
    pretrain.recipe.model_ema_decay = None;
    let device = burn::tensor::Device::flex();
    device.seed(2);
    let model = pretrain.model.init(true, &device);
    let special = tokenizer.special_tokens().unwrap();
    std::fs::create_dir_all(dir.join("start")).unwrap();
    AlbefPretraining::new(pretrain.clone(), model, special, 2, &device)
        .checkpoint()
        .unwrap()
        .write(&dir.join("start/checkpoint.ckpt"))
        .unwrap();
    tokenizer.save(&dir.join("start/tokenizer.json")).unwrap();

    let mut config = RetrievalConfig::tiny(pretrain.model);
    config.train_file = vec![dir.join("world/retrieval_train_en.json")];
    config.val_file = Some(dir.join("world/retrieval_val_en.json"));
    config.test_file = Some(dir.join("world/retrieval_test_en.json"));
    // An untrained model: pretraining's rate, a short queue, small steps.
    let lr = 1.5e-3;
    (
        config.optimizer.lr,
        config.schedular.lr,
        config.schedular.warmup_lr,
    ) = (lr, lr, lr);
    config.schedular.min_lr = lr / 2.0;
    (config.batch_size_train, config.queue_size, config.k_test) = (32, 64, 4);
    config.momentum = 0.5;
    config.execution.workers = 1;
    config.validate().unwrap();
    config
}

fn job(dir: &Path, config: &RetrievalConfig, start: TaskStart, out: &str) -> RetrievalJob {
    RetrievalJob {
        config: config.clone(),
        start,
        out: dir.join(out),
        seed: 1,
        bad: BadEntries::Fail,
        evaluate_only: false,
        max_steps: None,
    }
}

#[test]
fn retrieval_fine_tuning_learns_and_resumes_exactly() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let mut config = setup(dir);
    let device = burn::tensor::Device::flex();
    let start = TaskStart::From(dir.join("start/checkpoint.ckpt"));

    config.schedular.epochs = 6;
    let outcome = fine_tune_retrieval(&job(dir, &config, start.clone(), "run"), &device).unwrap();
    let ita = read_series(&outcome.paths.metrics, "loss_ita").unwrap();
    let mean = |s: &[(f64, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
    let (early, late) = (mean(&ita[..10]), mean(&ita[ita.len() - 10..]));
    let (chance, zero_shot) = (outcome.chance.unwrap(), outcome.zero_shot.unwrap());
    let test = outcome.epochs.last().unwrap().test.unwrap();
    println!(
        "ITC loss {early:.3} → {late:.3}\nchance {chance:?}\nstart {zero_shot:?}\nend {test:?}"
    );
    assert!(
        late < 0.75 * early,
        "ITC loss did not fall: {early} → {late}"
    );
    // (Re-ranked by an ITM head this short run has barely trained.)
    assert!(test.txt_r1 > 3.0 * chance.txt_r1, "{test:?} vs {chance:?}");
    assert!(test.img_r1 > 3.0 * chance.img_r1, "{test:?} vs {chance:?}");
    assert!(test.r_mean > 2.0 * chance.r_mean, "{test:?} vs {chance:?}");
    assert!(
        test.r_mean > zero_shot.r_mean + 10.0,
        "{test:?} vs {zero_shot:?}"
    );
    assert!(dir.join("run/checkpoint_best.ckpt").is_file());

    // Stopped mid-way through its second epoch and resumed, a run ends
    // with the losses of the run that was not stopped.
    config.schedular.epochs = 2;
    let whole = fine_tune_retrieval(&job(dir, &config, start.clone(), "two"), &device).unwrap();
    let mut stopped = job(dir, &config, start, "split");
    let steps_per_epoch = ita.len() / 6;
    stopped.max_steps = Some(steps_per_epoch + steps_per_epoch / 2);
    fine_tune_retrieval(&stopped, &device).unwrap();
    let resume = |epochs| TaskStart::Resume {
        checkpoint: dir.join("split/checkpoint.ckpt"),
        epochs,
    };
    let resumed = fine_tune_retrieval(&job(dir, &config, resume(None), "split"), &device).unwrap();
    let series = |run: &str| read_series(&dir.join(run).join("metrics.jsonl"), "loss_ita").unwrap();
    assert_eq!(series("two"), series("split"));
    assert_eq!(whole.epochs.last(), resumed.epochs.last());

    // A finished run resumed again has nothing to do, and cannot shrink.
    let again = |epochs| {
        fine_tune_retrieval(&job(dir, &config, resume(epochs), "split"), &device)
            .unwrap_err()
            .to_string()
    };
    assert!(
        again(None).contains("is a finished run (2 epochs"),
        "{}",
        again(None)
    );
    assert!(
        again(Some(1)).contains("--epochs 1: "),
        "{}",
        again(Some(1))
    );
}
