//! Referring expressions for weakly supervised grounding (RefCOCO+), as
//! salesforce/ALBEF `dataset/grounding_dataset.py` and `Grounding.py` read
//! them, and as the synthetic world writes them:
//!
//! - expressions: `[{"image", "text", "ref_id"?, "bbox"?}]` (training
//!   entries need only `image` and `text`; every expression of one image
//!   is a positive of the others, the reference's grouping by file name);
//! - candidate boxes (`dets.json`): `{"<key>": [[x, y, w, h, …], …]}`,
//!   keyed by the COCO image id, or (the world) by `ref_id`;
//! - true boxes: each entry's `bbox`, else `refs.json`
//!   (`{"<ref_id>": {"image_id", "split", "bbox"}}`, this project's plain
//!   stand-in for the refer toolkit's pickle), whose `image_id` then keys
//!   the candidates.
//!
//! Boxes are `[x, y, width, height]` in pixels of the original image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::DataError;
use crate::manifest::{BadEntries, CaptionedImage, Location, Skipped, image_root_of, read_entries};
use crate::transforms::pre_caption;

/// A box, `[x, y, width, height]` in pixels.
pub type BoundingBox = [f64; 4];

/// One referring expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    /// Resolved image path.
    pub image: PathBuf,
    /// The cleaned expression.
    pub text: String,
    /// Its ref (evaluation entries).
    pub ref_id: Option<String>,
    /// The true box, when the entry carries it.
    pub bbox: Option<BoundingBox>,
    /// Where the entry starts.
    pub location: Location,
}

#[derive(Deserialize)]
struct Entry {
    image: String,
    text: String,
    #[serde(default)]
    ref_id: Option<serde_json::Value>,
    #[serde(default)]
    bbox: Option<BoundingBox>,
}

/// Reads an expressions file; `image_root` defaults to its directory.
pub fn read_expressions(
    path: &Path,
    image_root: Option<&Path>,
    max_words: usize,
    bad: BadEntries,
) -> Result<(Vec<Expression>, Skipped), DataError> {
    let root = image_root_of(path, image_root);
    let (entries, skipped) = read_entries(path, bad, |_, raw| {
        let entry: Entry = serde_json::from_str(raw).map_err(|e| format!("bad entry: {e}"))?;
        let image = root.join(&entry.image);
        if !image.is_file() {
            return Err(format!("image {} does not exist", image.display()));
        }
        let text = pre_caption(&entry.text, max_words);
        if text.trim().is_empty() {
            return Err("empty expression".into());
        }
        if let Some(b) = entry.bbox
            && !(b.iter().all(|v| v.is_finite()) && b[2] > 0.0 && b[3] > 0.0)
        {
            return Err(format!("bbox {b:?} is not [x, y, w, h] with w, h > 0"));
        }
        let ref_id = entry.ref_id.map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        Ok((image, text, ref_id, entry.bbox))
    })?;
    let expressions = entries
        .into_iter()
        .map(|((image, text, ref_id, bbox), location)| Expression {
            image,
            text,
            ref_id,
            bbox,
            location,
        })
        .collect();
    Ok((expressions, skipped))
}

impl Expression {
    /// As loader items whose `image_id` groups expressions by image file.
    pub fn loader_items(expressions: &[Expression]) -> Vec<CaptionedImage> {
        let mut ids: HashMap<&Path, usize> = HashMap::new();
        expressions
            .iter()
            .map(|e| {
                let next = ids.len();
                CaptionedImage {
                    image: e.image.clone(),
                    captions: vec![e.text.clone()],
                    image_id: *ids.entry(e.image.as_path()).or_insert(next),
                    location: e.location.clone(),
                }
            })
            .collect()
    }
}

/// An expression to evaluate: its true box and the candidates to rank.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundingExample {
    /// The expression.
    pub expression: Expression,
    /// The box it refers to.
    pub truth: BoundingBox,
    /// The detector's candidates (first four numbers of each).
    pub candidates: Vec<BoundingBox>,
    /// The refs file's split (`val`, `testA`, `testB`), if one was given.
    pub split: Option<String>,
}

#[derive(Deserialize)]
struct Ref {
    image_id: serde_json::Value,
    #[serde(default)]
    split: Option<String>,
    bbox: BoundingBox,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| DataError::Json {
        path: path.to_owned(),
        source,
    })
}

/// The evaluation examples of `expressions`, with candidates from
/// `det_file` and true boxes from each entry or from `ref_file`. An
/// expression without a ref, a true box or candidates is an error naming
/// its line.
pub fn grounding_examples(
    expressions: Vec<Expression>,
    det_file: &Path,
    ref_file: Option<&Path>,
) -> Result<Vec<GroundingExample>, DataError> {
    let dets: HashMap<String, Vec<Vec<f64>>> = read_json(det_file)?;
    let refs: HashMap<String, Ref> = match ref_file {
        Some(path) => read_json(path)?,
        None => HashMap::new(),
    };
    let key = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    expressions
        .into_iter()
        .map(|expression| {
            let bad = |message: String| DataError::Manifest {
                location: expression.location.clone(),
                message,
            };
            let ref_id = expression
                .ref_id
                .clone()
                .ok_or_else(|| bad("an evaluated expression needs a ref_id".into()))?;
            let found = refs.get(&ref_id);
            let truth = match (expression.bbox, found) {
                (Some(b), _) => b,
                (None, Some(r)) => r.bbox,
                (None, None) => {
                    return Err(bad(format!(
                        "ref {ref_id} has no bbox here and is not in the refs file"
                    )));
                }
            };
            let det_key = found.map_or(ref_id.clone(), |r| key(&r.image_id));
            let candidates = dets
                .get(&det_key)
                .ok_or_else(|| {
                    bad(format!(
                        "{} has no candidates for {det_key}",
                        det_file.display()
                    ))
                })?
                .iter()
                .filter(|b| b.len() >= 4)
                .map(|b| [b[0], b[1], b[2], b[3]])
                .collect();
            Ok(GroundingExample {
                split: found.and_then(|r| r.split.clone()),
                expression,
                truth,
                candidates,
            })
        })
        .collect()
}

/// Intersection over union of two boxes counting inclusive pixels (the
/// reference's `computeIoU`: `x2 = x + w − 1`).
pub fn iou(a: BoundingBox, b: BoundingBox) -> f64 {
    let x1 = a[0].max(b[0]);
    let y1 = a[1].max(b[1]);
    let x2 = (a[0] + a[2] - 1.0).min(b[0] + b[2] - 1.0);
    let y2 = (a[1] + a[3] - 1.0).min(b[1] + b[3] - 1.0);
    let inter = if x1 <= x2 && y1 <= y2 {
        (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
    } else {
        0.0
    };
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_counts_inclusive_pixels() {
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]), 1.0);
        // 5×10 overlap of two 10×10 boxes: 50 / 150.
        let v = iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 10.0, 10.0]);
        assert!((v - 50.0 / 150.0).abs() < 1e-12, "{v}");
        assert_eq!(iou([0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 2.0, 2.0]), 0.0);
    }

    #[test]
    fn examples_take_boxes_from_entries_or_refs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.png"), "x").unwrap();
        let write = |name: &str, text: &str| {
            std::fs::write(root.join(name), text).unwrap();
            root.join(name)
        };
        let exprs = write(
            "e.json",
            r#"[{"image": "a.png", "text": "The red one!", "ref_id": 7, "bbox": [1, 2, 3, 4]},
                {"image": "a.png", "text": "blue", "ref_id": "11"}]"#,
        );
        let dets = write(
            "d.json",
            r#"{"7": [[0, 0, 5, 5, 0.9]], "202": [[1, 1, 2, 2]]}"#,
        );
        let refs = write(
            "r.json",
            r#"{"11": {"image_id": 202, "split": "testA", "bbox": [4, 2, 12, 12]}}"#,
        );
        let (expressions, _) = read_expressions(&exprs, None, 30, BadEntries::Fail).unwrap();
        assert_eq!(expressions[0].text, "the red one");
        let items = Expression::loader_items(&expressions);
        assert_eq!((items[0].image_id, items[1].image_id), (0, 0));
        let examples = grounding_examples(expressions.clone(), &dets, Some(&refs)).unwrap();
        assert_eq!(examples[0].truth, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(examples[0].candidates, vec![[0.0, 0.0, 5.0, 5.0]]);
        assert_eq!(examples[1].truth, [4.0, 2.0, 12.0, 12.0]);
        assert_eq!(examples[1].split.as_deref(), Some("testA"));
        let err = grounding_examples(expressions, &dets, None).unwrap_err();
        assert!(err.to_string().contains("e.json:2"), "{err}");
    }
}
