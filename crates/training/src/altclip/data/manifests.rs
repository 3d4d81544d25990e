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
