//! A run on the user's own files, in the ALBEF manifest formats
//! (`[{"image", "caption": str | [str]}]`, paths relative to the manifest
//! or to the image root), the parallel TSVs of stage 1, and a zero-shot
//! class file (`vl_data::classes`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use vl_data::image_files::check_images;
use vl_data::manifest::read_captioned_images;
use vl_data::{BadEntries, CaptionedImage};

use crate::TrainError;

/// The user's files for each stage; a stage reads only its own.
#[derive(Debug, Clone)]
pub struct ManifestData {
    /// Where relative image paths start (default: each manifest's
    /// directory).
    pub image_root: Option<PathBuf>,
    /// Images with English captions: the teacher's training set.
    pub teacher_train: Vec<PathBuf>,
    /// Stage 1: manifests whose English captions become English–English
    /// pairs (the student keeps reading English as the teacher does).
    pub english: Vec<PathBuf>,
    /// Stage 2: images with captions, per language code.
    pub contrastive: Vec<(String, PathBuf)>,
    /// Evaluation: retrieval manifests (one or more captions per image),
    /// per language code.
    pub retrieval: Vec<(String, PathBuf)>,
    /// Evaluation: a zero-shot class file.
    pub classes: Option<PathBuf>,
    /// What to do with unusable entries.
    pub bad: BadEntries,
    /// Entries skipped so far, in every file read (shared by clones).
    pub skipped: Arc<AtomicUsize>,
}

impl ManifestData {
    /// The entries of `path` whose images can be decoded (skips logged
    /// with their count).
    pub(super) fn read(
        &self,
        path: &Path,
        max_words: usize,
    ) -> Result<Vec<CaptionedImage>, TrainError> {
        let (items, mut skipped) =
            read_captioned_images(path, self.image_root.as_deref(), max_words, self.bad)?;
        // Undecodable images are found here, by their headers, not mid-run.
        let (items, undecodable) = check_images(items, self.bad)?;
        skipped.entries.extend(undecodable.entries);
        if skipped.count() > 0 {
            self.skipped.fetch_add(skipped.count(), Ordering::Relaxed);
            log::warn!(
                "{}: {} unusable entries skipped: {}",
                path.display(),
                skipped.count(),
                skipped.entries.join("; ")
            );
        }
        Ok(items)
    }

    /// Unusable entries skipped so far, in every file read.
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The teacher's training images with their English captions.
    pub(super) fn teacher_items(
        &self,
        max_words: usize,
    ) -> Result<Vec<CaptionedImage>, TrainError> {
        if self.teacher_train.is_empty() {
            return Err(TrainError::BadInput(
                "no training manifest for the teacher: give --train-file (English captions)".into(),
            ));
        }
        let mut items = Vec::new();
        for path in &self.teacher_train {
            items.extend(self.read(path, max_words)?);
        }
        Ok(items)
    }

    /// English–English pairs of the `english` manifests' captions.
    pub(super) fn english_pairs(
        &self,
        max_words: usize,
    ) -> Result<Vec<(String, String)>, TrainError> {
        let mut pairs = Vec::new();
        for path in &self.english {
            for item in self.read(path, max_words)? {
                pairs.extend(item.captions.into_iter().map(|c| (c.clone(), c)));
            }
        }
        Ok(pairs)
    }
}

/// `LANG=FILE` (as `--train-file zh=cap_zh.json`) as its language code and
/// path.
pub fn language_file(spec: &str) -> Result<(String, PathBuf), String> {
    match spec.split_once('=') {
        Some((code, path)) if is_language_code(code) && !path.is_empty() => {
            Ok((code.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!(
            "`{spec}` is not LANG=FILE (a language code such as zh, de, pt-BR, then `=` and a manifest)"
        )),
    }
}

/// A BCP-47-like code: letters, digits and `-`, starting with a letter.
fn is_language_code(code: &str) -> bool {
    code.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && code.len() <= 16
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(bad: BadEntries) -> ManifestData {
        ManifestData {
            image_root: None,
            teacher_train: Vec::new(),
            english: Vec::new(),
            contrastive: Vec::new(),
            retrieval: Vec::new(),
            classes: None,
            bad,
            skipped: Default::default(),
        }
    }

    /// Two manifests, each with a good entry, a missing image, an empty
    /// caption and an image that is not a PNG; the header check finds the
    /// last when the manifest is read.
    fn manifests(dir: &Path) -> [PathBuf; 2] {
        image::RgbImage::new(4, 4).save(dir.join("ok.png")).unwrap();
        std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
        let entries = r#"[
  {"image": "ok.png", "caption": "a red circle"},
  {"image": "missing.png", "caption": "a blue square"},
  {"image": "ok.png", "caption": "  "},
  {"image": "broken.png", "caption": "a green star"}
]"#;
        ["a.json", "b.json"].map(|name| {
            let path = dir.join(name);
            std::fs::write(&path, entries).unwrap();
            path
        })
    }

    #[test]
    fn skips_are_counted_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let [a, b] = manifests(dir.path());
        let data = data(BadEntries::Skip);
        let clone = data.clone();
        assert_eq!(data.read(&a, 30).unwrap().len(), 1);
        assert_eq!(clone.read(&b, 30).unwrap().len(), 1);
        // Clones share the count (each stage's task holds one).
        assert_eq!(data.skipped(), 6);
    }

    #[test]
    fn without_skip_bad_an_undecodable_image_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let [a, _] = manifests(dir.path());
        let only_broken = dir.path().join("c.json");
        std::fs::write(
            &only_broken,
            "[\n  {\"image\": \"ok.png\", \"caption\": \"a\"},\n  {\"image\": \"broken.png\", \"caption\": \"b\"}\n]",
        )
        .unwrap();
        let message = format!(
            "{:?}",
            data(BadEntries::Fail).read(&only_broken, 30).unwrap_err()
        );
        assert!(
            message.contains("c.json") && message.contains('3'),
            "{message}"
        );
        let first = data(BadEntries::Fail).read(&a, 30).unwrap_err().to_string();
        assert!(
            first.contains("a.json:3"),
            "the missing image first: {first}"
        );
    }

    #[test]
    fn language_files_need_a_code_and_a_path() {
        assert_eq!(
            language_file("zh=a/b.json").unwrap(),
            ("zh".into(), "a/b.json".into())
        );
        assert_eq!(
            language_file("pt-BR=x=y.json").unwrap().1,
            PathBuf::from("x=y.json")
        );
        for bad in ["zh", "=a.json", "zh=", "1x=a.json", "z h=a.json"] {
            assert!(language_file(bad).unwrap_err().contains(bad), "{bad}");
        }
    }
}
