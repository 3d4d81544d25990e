//! Zero-shot classification sets: labelled images and, per language, the
//! class names and prompt templates whose ensembles classify them (the
//! ImageNet protocol of CLIP, Radford et al. 2021, and AltCLIP).
//!
//! The file is JSON:
//!
//! ```json
//! {"images": [{"image": "a.png", "label": 3}, {"image": "b.png", "label": "dress"}],
//!  "classes": {"en": ["t-shirt", "dress"], "zh": ["T恤", "连衣裙"]},
//!  "templates": {"en": ["a photo of a {}."], "zh": ["一张{}的照片。"]}}
//! ```
//!
//! A label is a class index or a class name (of any language).
//! Instead of `classes` and `templates`, `prompts` may give each language's
//! prompts per class directly (`{"en": [["a red circle", ...], ...]}`), for
//! languages where a name does not slot into one template. Image paths are
//! relative to `image_root`, else to the file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::DataError;
use crate::manifest::image_root_of;
use crate::transforms::pre_caption;

/// A zero-shot classification set as read.
#[derive(Debug, Clone)]
pub struct ClassSet {
    /// Image paths, resolved.
    pub images: Vec<PathBuf>,
    /// Each image's class index.
    pub labels: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
    /// Per language code, in code order: each class's prompts,
    /// cleaned as captions are (`pre_caption` with `max_words`).
    pub prompts: Vec<(String, Vec<Vec<String>>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassFile {
    images: Vec<LabelledImage>,
    #[serde(default)]
    classes: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    templates: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    prompts: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelledImage {
    image: String,
    label: Value,
}

/// Reads a class file (see the module docs), checking that every image
/// exists, every label names a class, and every language has a prompt for
/// every class.
pub fn read_class_set(
    path: &Path,
    image_root: Option<&Path>,
    max_words: usize,
) -> Result<ClassSet, DataError> {
    let bad = |message: String| DataError::Format {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let file: ClassFile = serde_json::from_str(text).map_err(|source| DataError::Json {
        path: path.to_owned(),
        source,
    })?;
    let clean = |p: &str| pre_caption(p, max_words);
    // Every language's class names: a label may give one.
    let mut names: Vec<Vec<String>> = Vec::new();
    let prompts: Vec<(String, Vec<Vec<String>>)> = match (file.prompts, file.classes) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "give `classes` and `templates`, or `prompts`, not both".into(),
            ));
        }
        (None, None) => {
            return Err(bad(
                "no `classes` (with `templates`) and no `prompts`".into()
            ));
        }
        (Some(prompts), None) => prompts
            .into_iter()
            .map(|(language, value)| {
                let per_class: Vec<Vec<String>> = serde_json::from_value(value).map_err(|e| {
                    bad(format!(
                        "`prompts.{language}`: expected a list of prompt lists per class: {e}"
                    ))
                })?;
                let per_class = per_class
                    .iter()
                    .map(|c| c.iter().map(|p| clean(p)).collect())
                    .collect();
                Ok((language, per_class))
            })
            .collect::<Result<_, DataError>>()?,
        (None, Some(classes)) => {
            let templates = file.templates.unwrap_or_default();
            let mut prompts = Vec::new();
            for (language, value) in classes {
                let class_names: Vec<String> = serde_json::from_value(value).map_err(|e| {
                    bad(format!(
                        "`classes.{language}`: expected a list of class names: {e}"
                    ))
                })?;
                let templates = templates.get(&language).ok_or_else(|| {
                    bad(format!(
                        "`templates` has no `{language}` (the language of `classes.{language}`)"
                    ))
                })?;
                if templates.is_empty() || templates.iter().any(|t| !t.contains("{}")) {
                    return Err(bad(format!(
                        "`templates.{language}`: every template needs a `{{}}` for the class name"
                    )));
                }
                let per_class = class_names
                    .iter()
                    .map(|name| {
                        templates
                            .iter()
                            .map(|t| clean(&t.replace("{}", name)))
                            .collect()
                    })
                    .collect();
                names.push(class_names.iter().map(|n| clean(n)).collect());
                prompts.push((language, per_class));
            }
            prompts
        }
    };
    let Some((first, first_prompts)) = prompts.first() else {
        return Err(bad("no language".into()));
    };
    let classes = first_prompts.len();
    if classes < 2 {
        return Err(bad(format!(
            "`{first}` has {classes} classes; classification needs 2 at least"
        )));
    }
    for (language, per_class) in &prompts {
        if per_class.len() != classes {
            return Err(bad(format!(
                "`{language}` has {} classes, `{first}` {classes}",
                per_class.len()
            )));
        }
        if let Some(class) = per_class
            .iter()
            .position(|p| p.iter().all(|p| p.trim().is_empty()))
        {
            return Err(bad(format!(
                "`{language}`: class {class} has no prompt with text"
            )));
        }
    }
    if file.images.is_empty() {
        return Err(bad("no images".into()));
    }
    let root = image_root_of(path, image_root);
    let mut images = Vec::with_capacity(file.images.len());
    let mut labels = Vec::with_capacity(file.images.len());
    for (i, entry) in file.images.iter().enumerate() {
        let image = root.join(&entry.image);
        if !image.is_file() {
            return Err(bad(format!(
                "images[{i}]: image {} does not exist",
                image.display()
            )));
        }
        let label = match &entry.label {
            Value::Number(n) => n.as_u64().map(|n| n as usize).filter(|&n| n < classes),
            Value::String(name) => names
                .iter()
                .find_map(|names| names.iter().position(|n| *n == clean(name))),
            _ => None,
        }
        .ok_or_else(|| {
            bad(format!(
                "images[{i}]: label {} is not a class (an index below {classes}, or a name in `classes`)",
                entry.label
            ))
        })?;
        images.push(image);
        labels.push(label);
    }
    Ok(ClassSet {
        images,
        labels,
        classes,
        prompts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &serde_json::Value) -> PathBuf {
        image::RgbImage::new(2, 2).save(dir.join("a.png")).unwrap();
        let path = dir.join("classes.json");
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    #[test]
    fn templates_fill_each_class_and_labels_are_indices_or_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &serde_json::json!({
                "images": [{"image": "a.png", "label": 1}, {"image": "a.png", "label": "T-Shirt"}],
                "classes": {"en": ["t-shirt", "dress"], "zh": ["T恤", "连衣裙"]},
                "templates": {"en": ["a photo of a {}.", "a {}"], "zh": ["一张{}的照片"]},
            }),
        );
        let set = read_class_set(&path, None, 30).unwrap();
        assert_eq!((set.classes, set.labels.clone()), (2, vec![1, 0]));
        assert_eq!(set.prompts[0].0, "en");
        assert_eq!(set.prompts[0].1[1], ["a photo of a dress", "a dress"]);
        assert_eq!(set.prompts[1].1[0], ["一张t恤的照片"]);
    }

    #[test]
    fn a_bad_class_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let images = serde_json::json!([{"image": "a.png", "label": 0}]);
        for (json, expected) in [
            (
                serde_json::json!({"images": images, "classes": {"en": ["a", "b"]}}),
                "`templates` has no `en`",
            ),
            (
                serde_json::json!({"images": images, "classes": {"en": ["a", "b"]}, "templates": {"en": ["no slot"]}}),
                "needs a `{}`",
            ),
            (
                serde_json::json!({"images": images, "classes": {"en": ["a", "b"], "zh": ["甲"]}, "templates": {"en": ["{}"], "zh": ["{}"]}}),
                "`zh` has 1 classes, `en` 2",
            ),
            (
                serde_json::json!({"images": [{"image": "a.png", "label": 5}], "prompts": {"en": [["a"], ["b"]]}}),
                "images[0]: label 5 is not a class",
            ),
            (
                serde_json::json!({"images": [{"image": "b.png", "label": 0}], "prompts": {"en": [["a"], ["b"]]}}),
                "b.png does not exist",
            ),
            (
                serde_json::json!({"images": images, "clases": {}}),
                "unknown field `clases`",
            ),
        ] {
            let path = write(dir.path(), &json);
            let err = read_class_set(&path, None, 30).unwrap_err().to_string();
            assert!(
                err.contains("classes.json") && err.contains(expected),
                "{err}"
            );
        }
    }
}
