//! Bad input gets an error naming the file, line or key, a counted skip
//! where the user asked for one, or correct behaviour: never a panic,
//! never a silent wrong result. Each case is one a user met (the probes of
//! the issue "Bad input never panics and never lies"), on a small world and
//! files these tests write.

use std::path::{Path, PathBuf};

use vl_data::BadEntries;
use vl_data::world::{WorldConfig, write_world};
use vl_training::TrainError;
use vl_training::albef::PretrainConfig;
use vl_training::albef::pipeline::{PretrainJob, PretrainOutcome, Start, pretrain};
use vl_training::runner::checkpoint::Checkpoint;
use vl_training::runner::metrics::read_series;

/// A world of 96 training images.
fn world(dir: &Path) -> PathBuf {
    let world = dir.join("world");
    write_world(
        &WorldConfig {
            seed: 1,
            images: 116,
            val_images: 10,
            test_images: 10,
            ..WorldConfig::default()
        },
        &world,
    )
    .unwrap();
    world
}

/// The tiny preset cut to one layer per part, batch 8, no warm-up.
fn small_config(train_file: PathBuf) -> PretrainConfig {
    let mut config = PretrainConfig::tiny(0);
    (config.batch_size, config.queue_size) = (8, 16);
    config.execution.workers = 1;
    config.recipe.vision_warmup = None;
    config.schedular.epochs = 1;
    config.schedular.warmup_epochs = 0;
    let m = &mut config.model;
    m.vision_depth = 1;
    m.bert_config.num_hidden_layers = 2;
    m.bert_config.fusion_layer = Some(1);
    config.train_file = vec![train_file];
    config
}

fn run(
    config: PretrainConfig,
    out: &Path,
    bad: BadEntries,
    max_steps: usize,
) -> Result<PretrainOutcome, TrainError> {
    let job = PretrainJob {
        start: Start::Fresh {
            config: Box::new(config),
            init_from: None,
        },
        out: out.to_owned(),
        seed: 2,
        bad,
        max_steps: Some(max_steps),
        evaluate: false,
    };
    pretrain(&job, &burn::tensor::Device::default())
}

fn resume(
    out: &Path,
    epochs: Option<usize>,
    max_steps: usize,
) -> Result<PretrainOutcome, TrainError> {
    let job = PretrainJob {
        start: Start::Resume {
            checkpoint: out.join("checkpoint.ckpt"),
            epochs,
        },
        out: out.to_owned(),
        seed: 2,
        bad: BadEntries::Fail,
        max_steps: Some(max_steps),
        evaluate: false,
    };
    pretrain(&job, &burn::tensor::Device::default())
}

/// The world's pretraining manifest with `edit` applied to its entries,
/// written to `name` beside it.
fn edited_manifest(
    world: &Path,
    name: &str,
    edit: impl FnOnce(&mut Vec<serde_json::Value>),
) -> PathBuf {
    let text = std::fs::read_to_string(world.join("pretrain_en.json")).unwrap();
    let mut entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    edit(&mut entries);
    // One entry per line: entry `i` starts on line `i + 2`.
    let lines: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    let path = world.join(name);
    std::fs::write(&path, format!("[\n{}\n]\n", lines.join(",\n"))).unwrap();
    path
}

fn config_error(dir: &Path, yaml: &str) -> String {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    PretrainConfig::from_yaml_file(&path)
        .unwrap_err()
        .to_string()
}

#[test]
fn impossible_config_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, expected) in [
        (
            "bacth_size: 4",
            "unknown key `bacth_size` (did you mean `batch_size`?)",
        ),
        (
            "optimizer: {opt: sgd}",
            "`optimizer.opt`: `sgd` is not supported",
        ),
        ("optimizer: {lr: -1}", "`optimizer.lr`: must be positive"),
        ("schedular: {sched: step}", "`schedular.sched`"),
        ("schedular: {epochs: 0}", "`schedular.epochs`"),
        ("momentum: 2", "`momentum`"),
        ("mlm_probability: 1.5", "`mlm_probability`"),
        ("batch_size: 0", "`batch_size`"),
        ("queue_size: 0", "`queue_size`"),
        ("max_tokens: 0", "`max_tokens`: must be at least 2"),
        (
            "max_tokens: 4096",
            "exceeds bert_config.max_position_embeddings",
        ),
        (
            "bert_config: {hidden_size: 768, num_attention_heads: 5}",
            "`bert_config.num_attention_heads`",
        ),
        (
            "bert_config: {fusion_layer: 40}",
            "`bert_config.fusion_layer`",
        ),
        ("image_res: 250", "`image_res`"),
        (
            "bert_config: {hiden_size: 768}",
            "unknown key `bert_config.hiden_size` (did you mean `hidden_size`?)",
        ),
    ] {
        let err = config_error(dir.path(), yaml);
        assert!(err.contains(expected), "`{yaml}`: {err}");
        assert!(err.contains("config.yaml"), "`{yaml}` names no file: {err}");
    }
}

#[test]
fn a_manifest_smaller_than_a_batch_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let small = edited_manifest(&world, "small.json", |e| e.truncate(5));
    let err = run(
        small_config(small),
        &dir.path().join("run"),
        BadEntries::Fail,
        2,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("5 usable samples in ") && err.contains("small.json cannot fill a batch of 8"),
        "{err}"
    );
}

#[test]
fn mlm_probability_zero_turns_mlm_off() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let mut config = small_config(world.join("pretrain_en.json"));
    config.mlm_probability = 0.0;
    let out = dir.path().join("run");
    let outcome = run(config, &out, BadEntries::Fail, 3).unwrap();
    assert_eq!(outcome.summary.steps, 3);
    let mlm = read_series(&out.join("metrics.jsonl"), "loss_mlm").unwrap();
    assert_eq!(mlm.len(), 3);
    assert!(mlm.iter().all(|(_, loss)| *loss == 0.0), "{mlm:?}");
    let total = read_series(&out.join("metrics.jsonl"), "loss").unwrap();
    assert!(total.iter().all(|(_, loss)| loss.is_finite()), "{total:?}");
}

#[test]
fn missing_images_are_named_or_counted() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let manifest = edited_manifest(&world, "missing.json", |e| {
        e[3]["image"] = "images/nowhere.png".into();
    });
    let err = run(
        small_config(manifest.clone()),
        &dir.path().join("a"),
        BadEntries::Fail,
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("missing.json:5: image ") && err.contains("nowhere.png does not exist"),
        "{err}"
    );
    let outcome = run(
        small_config(manifest),
        &dir.path().join("b"),
        BadEntries::Skip,
        1,
    )
    .unwrap();
    assert_eq!(outcome.skipped.count(), 1);

    // A wrong image root under --skip-bad: every entry skipped, and said so.
    let mut config = small_config(world.join("pretrain_en.json"));
    config.image_root = Some(dir.path().join("elsewhere"));
    let err = run(config, &dir.path().join("c"), BadEntries::Skip, 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no usable entries (96 skipped; the first: "),
        "{err}"
    );
}

#[test]
fn an_image_damaged_past_its_header_stops_the_run_with_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    // Every image's header is intact (the check before training passes);
    // one image's pixels are cut off.
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(world.join("pretrain_en.json")).unwrap())
            .unwrap();
    let victim = world.join(entries[40]["image"].as_str().unwrap());
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = dir.path().join("run");
    let err = run(
        small_config(world.join("pretrain_en.json")),
        &out,
        BadEntries::Fail,
        12,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("pretrain_en.json:") && err.contains(victim.to_str().unwrap()),
        "{err}"
    );
    let checkpoint = Checkpoint::read(&out.join("checkpoint.ckpt")).unwrap();
    let state = checkpoint
        .state::<serde_json::Value>(vl_training::runner::checkpoint::JobKind::AlbefPretrain)
        .unwrap();
    assert!(state.position.step < 12);

    // Under --skip-bad the same run completes, the image counted.
    let outcome = run(
        small_config(world.join("pretrain_en.json")),
        &dir.path().join("skip"),
        BadEntries::Skip,
        12,
    )
    .unwrap();
    assert_eq!(outcome.summary.steps, 12);
    assert_eq!(outcome.skipped.count(), 1);
}

#[test]
fn resuming_checks_the_tokenizer_and_extends_only_forward() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let out = dir.path().join("run");
    let mut config = small_config(world.join("pretrain_en.json"));
    config.schedular.epochs = 2;
    run(config, &out, BadEntries::Fail, 5).unwrap();

    // Stopped at step 5 of 24: resumed to the end of the first epoch.
    let outcome = resume(&out, None, 12).unwrap();
    assert_eq!(
        (outcome.summary.steps, outcome.summary.steps_this_run),
        (12, 7)
    );
    // Extended to three epochs; the metrics hold each step once.
    let outcome = resume(&out, Some(3), 40).unwrap();
    assert_eq!(outcome.summary.steps, 36);
    let steps: Vec<f64> = read_series(&out.join("metrics.jsonl"), "loss")
        .unwrap()
        .iter()
        .map(|(step, _)| *step)
        .collect();
    assert_eq!(steps, (0..36).map(|s| s as f64).collect::<Vec<_>>());

    // Finished: nothing left, and it cannot shrink.
    let err = resume(&out, None, 100).unwrap_err().to_string();
    assert!(
        err.contains("is a finished run (3 epochs, 36 steps)"),
        "{err}"
    );
    let err = resume(&out, Some(2), 100).unwrap_err().to_string();
    assert!(
        err.contains("--epochs 2: ") && err.contains("can only be extended"),
        "{err}"
    );

    // Another vocabulary of the same size beside the checkpoint.
    let path = out.join("tokenizer.json");
    let mut tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vocab = tokenizer["model"]["vocab"].as_object_mut().unwrap();
    let (a, b) = (vocab["red"].clone(), vocab["blue"].clone());
    (vocab["red"], vocab["blue"]) = (b, a);
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let err = resume(&out, Some(4), 100).unwrap_err().to_string();
    assert!(
        err.contains("is not the tokenizer ") && err.contains("was trained with"),
        "{err}"
    );
}

#[test]
fn a_parallel_tsv_line_without_text_on_one_side_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.tsv");
    std::fs::write(&path, "a red circle\t红色圆形\n\n   \t蓝色方形\n").unwrap();
    let err = vl_data::parallel::read_parallel_tsv(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pairs.tsv:3: empty source"), "{err}");
}

#[test]
fn a_batch_of_undecodable_images_under_skip_bad_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    // Headers intact, pixels cut off: found only when decoded.
    for entry in std::fs::read_dir(world.join("images")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    }
    let err = run(
        small_config(world.join("pretrain_en.json")),
        &dir.path().join("run"),
        BadEntries::Skip,
        4,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("a batch of 8 from ") && err.contains("kept 0 samples"),
        "{err}"
    );
}
