//! SNLI-VE annotations (Xie et al. 2019), as salesforce/ALBEF
//! `dataset/ve_dataset.py` reads them: `[{"image", "sentence", "label"}]`,
//! `image` a Flickr30K id (the reference appends `.jpg`; a name that has an
//! extension is taken as it is), `label` one of `entailment`, `neutral`,
//! `contradiction` (classes 2, 1, 0). Sentences go through
//! [`pre_caption`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::DataError;
use crate::manifest::{BadEntries, CaptionedImage, Location, Skipped, image_root_of, read_entries};
use crate::transforms::pre_caption;

/// Label names by class index (`dataset/ve_dataset.py`'s numbering).
pub const VE_LABELS: [&str; 3] = ["contradiction", "neutral", "entailment"];

/// One (image, hypothesis, label) example.
#[derive(Debug, Clone, PartialEq)]
pub struct VeExample {
    /// Resolved image path.
    pub image: PathBuf,
    /// The cleaned hypothesis.
    pub sentence: String,
    /// Class index (see [`VE_LABELS`]).
    pub label: usize,
    /// Where the entry starts.
    pub location: Location,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    image: String,
    sentence: String,
    label: String,
}

/// Reads an SNLI-VE annotation file; `image_root` defaults to the file's
/// directory. A missing image, an empty sentence or an unknown label is a
/// bad entry.
pub fn read_ve(
    path: &Path,
    image_root: Option<&Path>,
    max_words: usize,
    bad: BadEntries,
) -> Result<(Vec<VeExample>, Skipped), DataError> {
    let root = image_root_of(path, image_root);
    let (entries, skipped) = read_entries(path, bad, |_, raw| {
        let entry: Entry = serde_json::from_str(raw).map_err(|e| format!("bad entry: {e}"))?;
        let mut image = root.join(&entry.image);
        if image.extension().is_none() {
            image.set_extension("jpg");
        }
        if !image.is_file() {
            return Err(format!("image {} does not exist", image.display()));
        }
        let sentence = pre_caption(&entry.sentence, max_words);
        if sentence.trim().is_empty() {
            return Err("empty sentence".into());
        }
        let label = VE_LABELS
            .iter()
            .position(|l| *l == entry.label)
            .ok_or_else(|| {
                format!(
                    "label {:?} is none of {}",
                    entry.label,
                    VE_LABELS.join(", ")
                )
            })?;
        Ok((image, sentence, label))
    })?;
    let examples = entries
        .into_iter()
        .map(|((image, sentence, label), location)| VeExample {
            image,
            sentence,
            label,
            location,
        })
        .collect();
    Ok((examples, skipped))
}

impl VeExample {
    /// As a loader item whose `image_id` is its index in `examples` (the
    /// key of its label).
    pub fn loader_items(examples: &[VeExample]) -> Vec<CaptionedImage> {
        examples
            .iter()
            .enumerate()
            .map(|(index, e)| CaptionedImage {
                image: e.image.clone(),
                captions: vec![e.sentence.clone()],
                image_id: index,
                location: e.location.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_labels_and_ids_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "123.jpg", "not decoded here");
        write(dir.path(), "a.png", "not decoded here");
        let path = write(
            dir.path(),
            "ve.json",
            r#"[
  {"image": "123", "sentence": "Two dogs, running!", "label": "entailment"},
  {"image": "a.png", "sentence": "a cat", "label": "contradiction"},
  {"image": "a.png", "sentence": "a cat", "label": "maybe"},
  {"image": "missing", "sentence": "a cat", "label": "neutral"}
]"#,
        );
        let err = read_ve(&path, None, 30, BadEntries::Fail).unwrap_err();
        assert!(err.to_string().contains("ve.json:4"), "{err}");
        assert!(err.to_string().contains("maybe"), "{err}");
        let (examples, skipped) = read_ve(&path, None, 30, BadEntries::Skip).unwrap();
        assert_eq!(skipped.count(), 2);
        assert!(skipped.entries[1].contains("missing.jpg"), "{skipped:?}");
        assert_eq!(examples[0].image, dir.path().join("123.jpg"));
        assert_eq!(examples[0].sentence, "two dogs running");
        assert_eq!((examples[0].label, examples[1].label), (2, 0));
        let items = VeExample::loader_items(&examples);
        assert_eq!(items[1].image_id, 1);
        assert_eq!(items[1].captions, vec!["a cat".to_string()]);
    }
}
