//! The subcommands chained on HF directories: `distill` from an HF CLIP
//! teacher and an HF XLM-R student (the committed tiny parity fixtures,
//! with tokenizers trained here) on the world, then `contrastive` and
//! `eval` on manifests, and `export`.

mod common;

use common::run;
use std::path::{Path, PathBuf};

use vl_data::manifest::read_captioned_images;
use vl_data::world::{Language, WorldConfig, write_world};
use vl_data::{BadEntries, Framing, TextTokenizer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A copy of a fixture model directory with `tokenizer` beside it.
fn hf_dir(fixture: &str, tokenizer: &TextTokenizer, dir: &Path) -> PathBuf {
    let out = dir.join(fixture);
    std::fs::create_dir_all(&out).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join(fixture).join(file), out.join(file)).unwrap();
    }
    tokenizer.save(&out.join("tokenizer.json")).unwrap();
    out
}

#[test]
fn the_stages_run_from_hf_directories_and_export() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let world = dir.join("world");
    write_world(
        &WorldConfig {
            seed: 9,
            images: 300,
            val_images: 20,
            test_images: 20,
            languages: vec![Language::En, Language::De],
            ..WorldConfig::default()
        },
        &world,
    )
    .unwrap();
    let captions = |code: &str| -> Vec<String> {
        let path = world.join(format!("pretrain_{code}.json"));
        read_captioned_images(&path, None, 60, BadEntries::Fail)
            .unwrap()
            .0
            .into_iter()
            .flat_map(|i| i.captions)
            .collect()
    };
    let (en, de) = (captions("en"), captions("de"));
    // The fixtures have 99-token vocabularies.
    let teacher_tokenizer =
        TextTokenizer::train_wordpiece(en.iter(), 99, Framing::StartEnd).unwrap();
    let student_tokenizer = TextTokenizer::train_unigram(en.iter().chain(&de), 99).unwrap();
    assert!(teacher_tokenizer.vocab_size() <= 99 && student_tokenizer.vocab_size() <= 99);
    let teacher = hf_dir("clip", &teacher_tokenizer, dir);
    let student = hf_dir("xlm_roberta", &student_tokenizer, dir);
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let (world, stage1, stage2, export) = (
        path(&world),
        path(&dir.join("stage1")),
        path(&dir.join("stage2")),
        path(&dir.join("export")),
    );
    let common = ["--world", &world, "--languages", "de"];

    let out = run(&[
        &[
            "distill",
            "--teacher",
            &path(&teacher),
            "--student",
            &path(&student),
        ],
        &common[..],
        &["--epochs", "2", "--out", &stage1],
    ]
    .concat());
    // "held-out MSE a → b; checkpoint …"
    let mse: Vec<f64> = out
        .split("held-out MSE ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split(" → ")
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert!(mse[1] < mse[0], "held-out MSE {mse:?}");

    // Stage 2 and the evaluation on the world's files named as manifests.
    let file = |name: &str| format!("{world}/{name}");
    let checkpoint1 = format!("{stage1}/checkpoint.ckpt");
    run(&[
        "contrastive",
        "--student",
        &checkpoint1,
        "--train-file",
        &format!("de={}", file("pretrain_de.json")),
        "--train-file",
        &format!("en={}", file("pretrain_en.json")),
        "--epochs",
        "1",
        "--out",
        &stage2,
    ]);
    let checkpoint2 = format!("{stage2}/checkpoint.ckpt");
    let table = run(&[
        "eval",
        "--student",
        &checkpoint2,
        "--retrieval",
        &format!("de={}", file("retrieval_test_de.json")),
        "--out",
        &path(&dir.join("eval")),
    ]);
    assert!(table.contains("student stage2"), "{table}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval/results.json")).unwrap())
            .unwrap();
    let rows = results["rows"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["language"] == "de" && r["task"] == "t2i_r10")
    );
    run(&["export", "--student", &checkpoint2, "--out", &export]);
    assert!(Path::new(&export).join("model.safetensors").is_file());
}
