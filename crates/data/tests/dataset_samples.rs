//! The tiny samples shipped under `datasets/` are read by the same readers
//! as the real data sets: every entry parses, every image decodes, and the
//! counts are those of the files.

use std::path::{Path, PathBuf};

use vl_data::manifest::read_captioned_images;
use vl_data::parallel::read_parallel_tsv;
use vl_data::ve::read_ve;
use vl_data::{BadEntries, RetrievalSet, eval_images};

fn sample(dataset: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets")
        .join(dataset)
        .join("sample")
}

/// Reads a caption manifest strictly (every image must exist) and decodes
/// its images; returns (entries, captions).
fn read(dataset: &str, file: &str) -> (usize, usize) {
    let path = sample(dataset).join(file);
    let (items, skipped) = read_captioned_images(&path, None, 30, BadEntries::Fail)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(skipped.count(), 0);
    let images: Vec<&Path> = items.iter().map(|i| i.image.as_path()).collect();
    let batch = eval_images(&images, 16).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((batch.len(), batch.side()), (images.len(), 16));
    (items.len(), items.iter().map(|i| i.captions.len()).sum())
}

#[test]
fn pretraining_and_retrieval_samples_read() {
    assert_eq!(read("coco", "coco.json"), (4, 4));
    assert_eq!(read("coco", "coco_train.json"), (4, 4));
    assert_eq!(read("coco", "coco_test.json"), (2, 4));
    assert_eq!(read("flickr30k", "flickr30k_train.json"), (4, 4));
    assert_eq!(read("flickr30k", "flickr30k_val.json"), (2, 4));
    for file in ["cc3m_train.json", "sbu.json", "vg.json"] {
        let (entries, _) = read("pretrain-4m", file);
        assert_eq!(entries, 2, "{file}");
    }
    // A retrieval manifest becomes a set with every caption's image.
    let path = sample("coco").join("coco_test.json");
    let (items, _) = read_captioned_images(&path, None, 30, BadEntries::Fail).unwrap();
    let set = RetrievalSet::new(&items);
    assert_eq!((set.images.len(), set.texts.len()), (2, 4));
    assert_eq!(set.txt2img, [0, 0, 1, 1]);
}

#[test]
fn parallel_text_sample_reads() {
    let pairs = read_parallel_tsv(&sample("parallel-text").join("parallel.tsv")).unwrap();
    assert_eq!(pairs.len(), 4);
    assert!(
        pairs
            .iter()
            .all(|p| !p.source.is_empty() && !p.target.is_empty())
    );
    assert!(pairs.iter().any(|p| {
        p.target
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    }));
}

#[test]
fn snli_ve_sample_reads_with_one_label_of_each_class() {
    for file in ["ve_train.json", "ve_dev.json", "ve_test.json"] {
        let path = sample("snli-ve").join(file);
        let (examples, skipped) = read_ve(&path, None, 30, BadEntries::Fail)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(skipped.count(), 0);
        let mut labels: Vec<usize> = examples.iter().map(|e| e.label).collect();
        labels.sort();
        assert_eq!(labels, [0, 1, 2], "{file}");
        let images: Vec<&Path> = examples.iter().map(|e| e.image.as_path()).collect();
        assert_eq!(eval_images(&images, 16).unwrap().len(), 3);
    }
}

#[test]
fn task_samples_are_valid_json_with_their_reference_keys() {
    let json = |dataset: &str, file: &str| -> Vec<serde_json::Value> {
        let path = sample(dataset).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let has = |entries: &[serde_json::Value], keys: &[&str]| {
        entries
            .iter()
            .all(|e| keys.iter().all(|k| e.get(k).is_some()))
    };
    assert!(has(
        &json("vqa-v2", "vqa_train.json"),
        &["image", "question", "answer", "question_id"]
    ));
    assert!(has(
        &json("nlvr2", "nlvr_dev.json"),
        &["images", "sentence", "label"]
    ));
    assert!(has(
        &json("snli-ve", "ve_test.json"),
        &["image", "sentence", "label"]
    ));
    assert!(has(
        &json("refcoco-plus", "refcoco+_val.json"),
        &["image", "text", "ref_id"]
    ));
    // Every image a task sample names exists.
    for (dataset, file, key) in [
        ("vqa-v2", "vqa_val.json", "image"),
        ("snli-ve", "ve_dev.json", "image"),
        ("refcoco-plus", "refcoco+_test.json", "image"),
    ] {
        for entry in json(dataset, file) {
            let image = entry[key].as_str().unwrap();
            assert!(sample(dataset).join(image).is_file(), "{dataset}/{image}");
        }
    }
    for entry in json("nlvr2", "nlvr_test.json") {
        for image in entry["images"].as_array().unwrap() {
            assert!(sample("nlvr2").join(image.as_str().unwrap()).is_file());
        }
    }
}
