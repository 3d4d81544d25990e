//! VQA annotations as salesforce/ALBEF `dataset/vqa_dataset.py` reads them:
//! `[{"image", "question", "answer", "question_id", "dataset"}]`, where
//! `answer` is every annotator's answer (VQA v2: a list of ten) or one
//! string (Visual Genome QA), and may be absent in a test split; and the
//! candidate answers of `answer_list.json` (`["yes", "no", …]`).
//!
//! Each distinct answer of a list is weighted by the share of annotators
//! who gave it; a single-string answer weighs 0.5, as the reference weighs
//! Visual Genome's. Questions go through [`pre_caption`] (the reference's
//! `pre_question` drops the same characters).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::DataError;
use crate::manifest::{BadEntries, CaptionedImage, Location, Skipped, image_root_of, read_entries};
use crate::transforms::pre_caption;

/// One question about an image.
#[derive(Debug, Clone, PartialEq)]
pub struct VqaExample {
    /// Resolved image path.
    pub image: PathBuf,
    /// The cleaned question.
    pub question: String,
    /// Every annotator's answer, as given (empty when unknown).
    pub annotators: Vec<String>,
    /// The distinct answers with their training weights.
    pub answers: Vec<(String, f32)>,
    /// The id the results are written under, as the file gives it.
    pub question_id: Value,
    /// Where the entry starts.
    pub location: Location,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Annotators(Vec<String>),
    Single(String),
}

#[derive(Deserialize)]
struct Entry {
    image: String,
    question: String,
    #[serde(default)]
    answer: Option<Answer>,
    question_id: Value,
    #[serde(default)]
    #[allow(dead_code)]
    dataset: Option<String>,
}

/// Reads a VQA annotation file; `image_root` defaults to the file's
/// directory. A missing image, an empty question, an empty answer or a
/// question id that is not a number or a string is a bad entry.
pub fn read_vqa(
    path: &Path,
    image_root: Option<&Path>,
    max_words: usize,
    bad: BadEntries,
) -> Result<(Vec<VqaExample>, Skipped), DataError> {
    let root = image_root_of(path, image_root);
    let (entries, skipped) = read_entries(path, bad, |_, raw| {
        let entry: Entry = serde_json::from_str(raw).map_err(|e| format!("bad entry: {e}"))?;
        let image = root.join(&entry.image);
        if !image.is_file() {
            return Err(format!("image {} does not exist", image.display()));
        }
        let question = pre_caption(&entry.question, max_words);
        if question.trim().is_empty() {
            return Err("empty question".into());
        }
        if !(entry.question_id.is_number() || entry.question_id.is_string()) {
            return Err(format!(
                "question_id {} is neither a number nor a string",
                entry.question_id
            ));
        }
        let (annotators, single) = match entry.answer {
            None => (Vec::new(), false),
            Some(Answer::Single(a)) => (vec![a], true),
            Some(Answer::Annotators(list)) => (list, false),
        };
        let annotators: Vec<String> = annotators.iter().map(|a| a.trim().to_owned()).collect();
        if annotators.iter().any(String::is_empty) {
            return Err("an empty answer".into());
        }
        let answers = match single {
            true => vec![(annotators[0].clone(), 0.5)],
            false => answer_weights(&annotators),
        };
        Ok((image, question, annotators, answers, entry.question_id))
    })?;
    let examples = entries
        .into_iter()
        .map(
            |((image, question, annotators, answers, question_id), location)| VqaExample {
                image,
                question,
                annotators,
                answers,
                question_id,
                location,
            },
        )
        .collect();
    Ok((examples, skipped))
}

/// Each distinct answer, in order of first appearance, with the share of
/// `annotators` who gave it.
pub fn answer_weights(annotators: &[String]) -> Vec<(String, f32)> {
    let mut answers: Vec<(String, f32)> = Vec::new();
    let share = 1.0 / annotators.len().max(1) as f32;
    for a in annotators {
        match answers.iter_mut().find(|(known, _)| known == a) {
            Some((_, weight)) => *weight += share,
            None => answers.push((a.clone(), share)),
        }
    }
    answers
}

/// The candidate answers (`answer_list.json`, a JSON array of strings).
pub fn read_answer_list(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let answers: Vec<String> = serde_json::from_str(&text).map_err(|e| DataError::Format {
        path: path.to_owned(),
        message: format!("not a JSON array of answer strings: {e}"),
    })?;
    if let Some(i) = answers.iter().position(|a| a.trim().is_empty()) {
        return Err(DataError::Format {
            path: path.to_owned(),
            message: format!("answer {i} is empty"),
        });
    }
    if answers.is_empty() {
        return Err(DataError::Format {
            path: path.to_owned(),
            message: "no answers".into(),
        });
    }
    Ok(answers)
}

/// The standard VQA accuracy of `predicted` (Antol et al. 2015):
/// `min(#annotators who gave it / 3, 1)`.
pub fn vqa_accuracy(predicted: &str, annotators: &[String]) -> f64 {
    let agree = annotators.iter().filter(|a| *a == predicted).count();
    (agree as f64 / 3.0).min(1.0)
}

impl VqaExample {
    /// As a loader item whose `image_id` is its index in `examples` (the
    /// key of its answers).
    pub fn loader_items(examples: &[VqaExample]) -> Vec<CaptionedImage> {
        examples
            .iter()
            .enumerate()
            .map(|(index, e)| CaptionedImage {
                image: e.image.clone(),
                captions: vec![e.question.clone()],
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
    fn reads_weights_ids_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.jpg", "not decoded here");
        let path = write(
            dir.path(),
            "vqa.json",
            r#"[
  {"image": "a.jpg", "question": "What colour is it?", "answer": ["red", "red", "dark red", "red"], "question_id": 7, "dataset": "vqa"},
  {"image": "a.jpg", "question": "Is it round?", "answer": "yes", "question_id": "vg-1", "dataset": "vg"},
  {"image": "a.jpg", "question": "How many?", "question_id": 9},
  {"image": "missing.jpg", "question": "Why?", "answer": ["no"], "question_id": 10},
  {"image": "a.jpg", "question": "?!", "answer": ["no"], "question_id": 11},
  {"image": "a.jpg", "question": "Which?", "answer": ["no"], "question_id": [1]}
]"#,
        );
        let err = read_vqa(&path, None, 30, BadEntries::Fail).unwrap_err();
        assert!(err.to_string().contains("vqa.json:5"), "{err}");
        let (examples, skipped) = read_vqa(&path, None, 30, BadEntries::Skip).unwrap();
        assert_eq!(skipped.count(), 3, "{skipped:?}");
        assert_eq!(examples.len(), 3);
        assert_eq!(examples[0].question, "what colour is it");
        assert_eq!(
            examples[0].answers,
            vec![("red".to_string(), 0.75), ("dark red".to_string(), 0.25)]
        );
        assert_eq!(examples[1].answers, vec![("yes".to_string(), 0.5)]);
        assert_eq!(examples[1].question_id, Value::from("vg-1"));
        assert!(examples[2].annotators.is_empty());
        let items = VqaExample::loader_items(&examples);
        assert_eq!(items[2].image_id, 2);
    }

    #[test]
    fn accuracy_is_the_standard_min_of_a_third() {
        let annotators: Vec<String> = ["red", "red", "dark red", "red", "red"]
            .map(String::from)
            .to_vec();
        assert_eq!(vqa_accuracy("red", &annotators), 1.0);
        assert!((vqa_accuracy("dark red", &annotators) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(vqa_accuracy("blue", &annotators), 0.0);
    }

    #[test]
    fn an_answer_list_is_strings() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "a.json", r#"["yes", "no", "two"]"#);
        assert_eq!(read_answer_list(&good).unwrap().len(), 3);
        let bad = write(dir.path(), "b.json", r#"["yes", 2]"#);
        let err = read_answer_list(&bad).unwrap_err().to_string();
        assert!(err.contains("b.json"), "{err}");
        let empty = write(dir.path(), "c.json", r#"["yes", " "]"#);
        assert!(
            read_answer_list(&empty)
                .unwrap_err()
                .to_string()
                .contains("answer 1")
        );
    }
}
