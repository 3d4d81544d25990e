//! ALBEF's JSON manifests (salesforce/ALBEF `dataset/caption_dataset.py`).
//!
//! - pretraining: `[{"image": path, "caption": str | [str, ...]}]`
//! - retrieval training: `[{"image", "caption": str, "image_id"}]`
//! - retrieval evaluation: `[{"image", "caption": [str, ...]}]`
//!
//! Image paths are taken relative to an image root (by default the
//! manifest's directory). Every entry keeps the line it starts on, so a bad
//! entry is reported as `file:line`. Captions go through [`pre_caption`].
//! With [`BadEntries::Skip`] a bad entry is counted and left out instead.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::DataError;
use crate::transforms::pre_caption;

/// What to do with an entry that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadEntries {
    /// Stop with an error naming the file and line (the default).
    #[default]
    Fail,
    /// Leave it out and count it (`--skip-bad`).
    Skip,
}

/// Entries left out under [`BadEntries::Skip`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Skipped {
    /// `file:line: reason`, in order.
    pub entries: Vec<String>,
}

impl Skipped {
    /// Number skipped.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Records one.
    pub fn push(&mut self, location: &Location, reason: impl fmt::Display) {
        self.entries.push(format!("{location}: {reason}"));
    }

    /// Adds `other`'s entries after these.
    pub fn extend(&mut self, other: Skipped) {
        self.entries.extend(other.entries);
    }
}

/// Where an entry comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The manifest.
    pub file: PathBuf,
    /// 1-based line of the entry's opening brace.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// An image with its cleaned captions.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionedImage {
    /// Resolved image path.
    pub image: PathBuf,
    /// Cleaned captions (at least one).
    pub captions: Vec<String>,
    /// Image id (retrieval training; otherwise the entry index).
    pub image_id: usize,
    /// Manifest location.
    pub location: Location,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Entry {
    image: String,
    caption: OneOrMany,
    #[serde(default)]
    image_id: Option<serde_json::Value>,
}

/// Reads a manifest of images and captions (any of the three formats).
///
/// Each caption is cleaned with `pre_caption(…, max_words)`; an entry with a
/// missing image file, or whose captions are all empty after cleaning, is
/// bad. Image ids (`image_id`, any JSON scalar) are renumbered 0, 1, … in
/// order of first appearance, as the reference does; without them each
/// entry is its own image.
pub fn read_captioned_images(
    path: &Path,
    image_root: Option<&Path>,
    max_words: usize,
    bad: BadEntries,
) -> Result<(Vec<CaptionedImage>, Skipped), DataError> {
    let root = image_root_of(path, image_root);
    let mut ids: HashMap<String, usize> = HashMap::new();
    let (entries, skipped) = read_entries(path, bad, |index, raw| {
        let (image, captions, raw_id) = parse_entry(raw, &root, max_words)?;
        let key = raw_id.unwrap_or_else(|| format!("#{index}"));
        let next = ids.len();
        let image_id = *ids.entry(key).or_insert(next);
        Ok((image, captions, image_id))
    })?;
    let images = entries
        .into_iter()
        .map(|((image, captions, image_id), location)| CaptionedImage {
            image,
            captions,
            image_id,
            location,
        })
        .collect();
    Ok((images, skipped))
}

/// The directory image paths of `manifest` are relative to: `image_root`,
/// else the manifest's own.
pub fn image_root_of(manifest: &Path, image_root: Option<&Path>) -> PathBuf {
    image_root
        .map(Path::to_owned)
        .unwrap_or_else(|| manifest.parent().unwrap_or(Path::new(".")).to_owned())
}

/// The entries of a JSON array file, each parsed by `parse(index, raw
/// JSON)` and kept with the line it starts on. An entry `parse` rejects
/// stops the read with an error naming file and line, or, under
/// [`BadEntries::Skip`], is counted and left out; a file without a usable
/// entry is an error.
pub fn read_entries<T>(
    path: &Path,
    bad: BadEntries,
    mut parse: impl FnMut(usize, &str) -> Result<T, String>,
) -> Result<(Vec<(T, Location)>, Skipped), DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    // A byte-order mark (editors on Windows write one) is not JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let raw: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| DataError::Manifest {
        location: Location {
            file: path.to_owned(),
            line: e.line(),
        },
        message: format!("not a JSON array of entries: {e}"),
    })?;
    let mut entries = Vec::with_capacity(raw.len());
    let mut skipped = Skipped::default();
    // Line numbers are counted on from the previous entry's: counting from
    // the start for every entry is quadratic in a large manifest.
    let (mut line, mut counted) = (1, 0);
    for (index, raw) in raw.into_iter().enumerate() {
        let offset = raw.get().as_ptr() as usize - text.as_ptr() as usize;
        line += text.as_bytes()[counted..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        counted = offset;
        let location = Location {
            file: path.to_owned(),
            line,
        };
        match parse(index, raw.get()) {
            Ok(entry) => entries.push((entry, location)),
            Err(message) => match bad {
                BadEntries::Fail => return Err(DataError::Manifest { location, message }),
                BadEntries::Skip => skipped.push(&location, message),
            },
        }
    }
    if entries.is_empty() {
        return Err(DataError::Manifest {
            location: Location {
                file: path.to_owned(),
                line: 1,
            },
            message: match skipped.entries.first() {
                Some(first) => format!(
                    "no usable entries ({} skipped; the first: {first})",
                    skipped.count()
                ),
                None => "no usable entries".into(),
            },
        });
    }
    Ok((entries, skipped))
}

fn parse_entry(
    raw: &str,
    root: &Path,
    max_words: usize,
) -> Result<(PathBuf, Vec<String>, Option<String>), String> {
    let entry: Entry = serde_json::from_str(raw).map_err(|e| format!("bad entry: {e}"))?;
    let image = root.join(&entry.image);
    if !image.is_file() {
        return Err(format!("image {} does not exist", image.display()));
    }
    let captions = match entry.caption {
        OneOrMany::One(c) => vec![c],
        OneOrMany::Many(c) => c,
    };
    let captions: Vec<String> = captions
        .iter()
        .map(|c| pre_caption(c, max_words))
        // Whitespace the cleaning keeps (a tab, a vertical tab) is no caption.
        .filter(|c| !c.trim().is_empty())
        .collect();
    if captions.is_empty() {
        return Err("empty caption".into());
    }
    let id = entry.image_id.map(|v| match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    });
    Ok((image, captions, id))
}

/// A retrieval evaluation set in the reference's indexing: texts flattened
/// in file order, each image knowing its texts and each text its image.
#[derive(Debug, Clone)]
pub struct RetrievalSet {
    /// Image paths, in file order.
    pub images: Vec<PathBuf>,
    /// Every caption, flattened.
    pub texts: Vec<String>,
    /// For each image, the indices of its texts.
    pub img2txt: Vec<Vec<usize>>,
    /// For each text, its image.
    pub txt2img: Vec<usize>,
}

impl RetrievalSet {
    /// Builds the index from images with their captions.
    pub fn new(entries: &[CaptionedImage]) -> Self {
        let mut set = RetrievalSet {
            images: Vec::new(),
            texts: Vec::new(),
            img2txt: Vec::new(),
            txt2img: Vec::new(),
        };
        for (i, entry) in entries.iter().enumerate() {
            set.images.push(entry.image.clone());
            let start = set.texts.len();
            set.texts.extend(entry.captions.iter().cloned());
            set.img2txt.push((start..set.texts.len()).collect());
            set.txt2img
                .extend(std::iter::repeat_n(i, entry.captions.len()));
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory holding `a.png`.
    fn dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"not checked here").unwrap();
        dir
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_manifest() {
        let scratch = dir();
        let manifest = scratch.path().join("bom.json");
        std::fs::write(
            &manifest,
            "\u{feff}[\n  {\"image\": \"a.png\", \"caption\": \"A dog\"}\n]",
        )
        .unwrap();
        let (items, _) = read_captioned_images(&manifest, None, 30, BadEntries::Fail).unwrap();
        assert_eq!(items[0].captions, ["a dog"]);
        assert_eq!(items[0].location.line, 2);
    }

    #[test]
    fn a_bad_entry_is_named_by_file_and_line() {
        let scratch = dir();
        let dir = scratch.path();
        let manifest = dir.join("m.json");
        std::fs::write(
            &manifest,
            "[\n  {\"image\": \"a.png\", \"caption\": \"A Dog.\"},\n  {\"image\": \"a.png\",\n   \"caption\": \"?!\"},\n  {\"image\": \"a.png\",\n\n   \"caption\": \"\"}\n]\n",
        )
        .unwrap();
        let err = read_captioned_images(&manifest, None, 30, BadEntries::Fail)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.json:3") && err.contains("empty caption"),
            "{err}"
        );

        let (images, skipped) =
            read_captioned_images(&manifest, None, 30, BadEntries::Skip).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].captions, vec!["a dog".to_owned()]);
        assert_eq!(skipped.count(), 2);
        assert!(skipped.entries[0].contains("m.json:3"), "{skipped:?}");
        assert!(skipped.entries[1].contains("m.json:5"), "{skipped:?}");
    }

    #[test]
    fn a_missing_image_is_an_error() {
        let scratch = dir();
        let dir = scratch.path();
        let manifest = dir.join("m.json");
        std::fs::write(&manifest, r#"[{"image": "nope.png", "caption": ["x"]}]"#).unwrap();
        let err = read_captioned_images(&manifest, None, 30, BadEntries::Fail)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.json:1") && err.contains("nope.png"),
            "{err}"
        );
    }

    #[test]
    fn image_ids_are_renumbered_in_order() {
        let scratch = dir();
        let dir = scratch.path();
        let manifest = dir.join("m.json");
        std::fs::write(
            &manifest,
            r#"[{"image": "a.png", "caption": "x", "image_id": "coco_9"},
                {"image": "a.png", "caption": "y", "image_id": 4},
                {"image": "a.png", "caption": "z", "image_id": "coco_9"}]"#,
        )
        .unwrap();
        let (images, _) = read_captioned_images(&manifest, None, 30, BadEntries::Fail).unwrap();
        assert_eq!(
            images.iter().map(|i| i.image_id).collect::<Vec<_>>(),
            vec![0, 1, 0]
        );
        let set = RetrievalSet::new(&images);
        assert_eq!(set.txt2img, vec![0, 1, 2]);
    }
}
