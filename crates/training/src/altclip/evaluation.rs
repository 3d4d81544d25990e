//! AltCLIP's evaluation table: zero-shot classification (top-1, top-5) and
//! retrieval (R@1, 5, 10 both ways) of the teacher and the student in every
//! language, as `results.json`.

use std::path::Path;

use burn::tensor::Device;
use serde::Serialize;
use vl_data::TextTokenizer;

use crate::TrainError;
use crate::altclip::data::EvalSet;
use crate::altclip::pipeline::HeldOutMse;
use crate::altclip::recipe::AltClipRecipe;
use crate::eval::dual_encoder::{
    DualEncoder, class_embeddings, dual_encoder_retrieval, embed_images, embed_texts,
    zero_shot_top_k,
};
use crate::eval::retrieval::RetrievalMetrics;

/// One number of the results table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `teacher` or `student`.
    pub model: &'static str,
    /// `teacher`, `stage1` or `stage2`.
    pub stage: &'static str,
    /// Language code.
    pub language: String,
    /// `zero_shot_acc`, `zero_shot_top5`, `t2i_r1`, `t2i_r5`, `t2i_r10`,
    /// `i2t_r1`, `i2t_r5`, `i2t_r10`.
    pub task: &'static str,
    /// A fraction.
    pub value: f64,
}

/// Zero-shot top-1 and top-5 accuracy and retrieval R@1/5/10 of `model`
/// in every language the evaluation set has.
pub fn evaluate(
    model: &impl DualEncoder,
    tokenizer: &TextTokenizer,
    eval: &EvalSet,
    recipe: &AltClipRecipe,
    (who, stage): (&'static str, &'static str),
    device: &Device,
) -> Result<Vec<Row>, TrainError> {
    let zero_shot = eval
        .zero_shot
        .as_ref()
        .map(|set| (embed_images(model, &set.images, device), &set.labels));
    let retrieval_images: Vec<Vec<f32>> = eval
        .retrieval_images
        .iter()
        .map(|images| embed_images(model, images, device))
        .collect();
    let mut rows = Vec::new();
    for language in &eval.languages {
        let mut row = |task, value| {
            rows.push(Row {
                model: who,
                stage,
                language: language.code.clone(),
                task,
                value,
            })
        };
        if let (Some(prompts), Some((images, labels))) = (&language.class_prompts, &zero_shot) {
            let classes = class_embeddings(model, tokenizer, prompts, recipe.max_tokens, device)?;
            row(
                "zero_shot_acc",
                zero_shot_top_k(images, labels, &classes, 1),
            );
            row(
                "zero_shot_top5",
                zero_shot_top_k(images, labels, &classes, 5),
            );
        }
        if let Some((index, set)) = &language.retrieval {
            let texts = embed_texts(model, tokenizer, &set.texts, recipe.max_tokens, device)?;
            let metrics = dual_encoder_retrieval(&retrieval_images[*index], &texts, set);
            for (task, fraction) in recall_rows(&metrics) {
                row(task, fraction);
            }
        }
    }
    Ok(rows)
}

/// A retrieval evaluation as the table's tasks, in fractions.
pub(crate) fn recall_rows(metrics: &RetrievalMetrics) -> [(&'static str, f64); 6] {
    [
        ("t2i_r1", metrics.img_r1),
        ("t2i_r5", metrics.img_r5),
        ("t2i_r10", metrics.img_r10),
        ("i2t_r1", metrics.txt_r1),
        ("i2t_r5", metrics.txt_r5),
        ("i2t_r10", metrics.txt_r10),
    ]
    .map(|(task, percent)| (task, percent / 100.0))
}

/// `results.json`: the table's rows, chance, and stage 1's held-out MSE.
#[derive(Debug, Serialize)]
pub struct Results {
    /// Every number.
    pub rows: Vec<Row>,
    /// Chance level of each task (a fraction).
    pub chance: serde_json::Value,
    /// Stage 1's held-out MSE, where stage 1 ran.
    pub held_out_mse: Option<HeldOutMse>,
}

impl Results {
    /// Writes it as JSON.
    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        crate::albef::pipeline::write_json(path, self)
    }
}
