//! AltCLIP's evaluation table: zero-shot classification and retrieval R@1
//! of the teacher and the student in every language, as `results.json`.

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
    zero_shot_accuracy,
};

/// One number of the results table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `teacher` or `student`.
    pub model: &'static str,
    /// `teacher`, `stage1` or `stage2`.
    pub stage: &'static str,
    /// Language code.
    pub language: String,
    /// `zero_shot_acc`, `t2i_r1`, `i2t_r1`.
    pub task: &'static str,
    /// A fraction.
    pub value: f64,
}

/// Zero-shot accuracy and retrieval R@1 of `model` in every language.
pub fn evaluate(
    model: &impl DualEncoder,
    tokenizer: &TextTokenizer,
    eval: &EvalSet,
    recipe: &AltClipRecipe,
    (who, stage): (&'static str, &'static str),
    device: &Device,
) -> Result<Vec<Row>, TrainError> {
    let zero_shot_images = embed_images(model, &eval.zero_shot_images, device);
    let retrieval_images = eval
        .retrieval_images
        .as_ref()
        .map(|images| embed_images(model, images, device));
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
        let classes = class_embeddings(
            model,
            tokenizer,
            &language.class_prompts,
            recipe.max_tokens,
            device,
        )?;
        row(
            "zero_shot_acc",
            zero_shot_accuracy(&zero_shot_images, &eval.zero_shot_labels, &classes),
        );
        if let (Some(set), Some(images)) = (&language.retrieval, &retrieval_images) {
            let texts = embed_texts(model, tokenizer, &set.texts, recipe.max_tokens, device)?;
            let metrics = dual_encoder_retrieval(images, &texts, set);
            row("t2i_r1", metrics.img_r1 / 100.0);
            row("i2t_r1", metrics.txt_r1 / 100.0);
        }
    }
    Ok(rows)
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
