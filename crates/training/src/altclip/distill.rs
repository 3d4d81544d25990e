//! Stage 1, teacher learning (AltCLIP §3.1, after Multilingual-CLIP):
//! image-free; the student's pooled output (`transformation(pre_LN(h))` at
//! `<s>`) on the target-language side of a parallel pair regresses, by MSE,
//! the teacher's pooled EOS text embedding (after `final_layer_norm`,
//! before `text_projection`) of the English side. The teacher is frozen, so
//! its embeddings of the English sides are computed once
//! ([`teacher_targets`]), not per step.

use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use vl_data::{EncodedBatch, TextTokenizer};
use vl_models::blocks::padding_mask;
use vl_models::{AltClipModel, ClipModel};
use vl_objectives::mse_loss;

use crate::TrainError;
use crate::altclip::recipe::AltClipRecipe;
use crate::altclip::stage::Stage;
use crate::eval::dual_encoder::{EVAL_BATCH, row, student_input, to_vec};
use crate::runner::checkpoint::{Checkpoint, JobKind};
use crate::runner::seed::derive_seed;
use crate::runner::{Batches, Position, StepReport, Trainee};

/// The teacher's pooled text output (EOS, after `final_layer_norm`, before
/// `text_projection`) of each text, `[texts, width]` row-major: stage 1's
/// regression target.
pub fn teacher_targets(
    teacher: &ClipModel,
    tokenizer: &TextTokenizer,
    texts: &[String],
    max_tokens: usize,
    device: &Device,
) -> Result<Vec<f32>, TrainError> {
    let mut out = Vec::new();
    for chunk in texts.chunks(EVAL_BATCH) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let encoded = tokenizer.encode_batch(&refs, Some(max_tokens))?;
        let (ids, mask) = encoded.to_tensors(device);
        out.extend(to_vec(
            teacher
                .text_model
                .forward(ids, Some(padding_mask(mask)))
                .pooler_output,
        ));
    }
    Ok(out)
}

/// A stage-1 batch: the student's texts and the teacher's targets.
#[derive(Debug, Clone)]
pub struct DistillBatch {
    /// The target-language (or English) side, tokenised for the student.
    pub text: EncodedBatch,
    /// The teacher's pooled embedding of the English side, `[batch, width]`.
    pub targets: Vec<f32>,
}

/// Stage 1's data: student-side texts, each with the index of its English
/// side's teacher embedding.
#[derive(Debug, Clone)]
pub struct ParallelBatches {
    /// Student-side texts.
    pub texts: Vec<String>,
    /// For each text, its row of `targets`.
    pub target_of: Vec<usize>,
    /// Teacher embeddings `[sources, width]`.
    pub targets: Arc<Vec<f32>>,
    /// Width of a target.
    pub width: usize,
    /// The student's tokenizer.
    pub tokenizer: Arc<TextTokenizer>,
    /// Pairs per batch (the last partial batch of an epoch is dropped).
    pub batch_size: usize,
    /// Tokens per text.
    pub max_tokens: usize,
    /// Seed of the epoch orders.
    pub seed: u64,
}

impl ParallelBatches {
    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.texts.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(derive_seed(
            self.seed,
            epoch as u64,
        )));
        order
    }

    /// The batch of these rows.
    pub fn batch(&self, rows: &[usize]) -> Result<DistillBatch, TrainError> {
        let refs: Vec<&str> = rows.iter().map(|&r| self.texts[r].as_str()).collect();
        let text = self.tokenizer.encode_batch(&refs, Some(self.max_tokens))?;
        let targets = rows
            .iter()
            .flat_map(|&r| {
                row(&self.targets, self.width, self.target_of[r])
                    .iter()
                    .copied()
            })
            .collect();
        Ok(DistillBatch { text, targets })
    }
}

impl Batches for ParallelBatches {
    type Batch = DistillBatch;

    fn steps_per_epoch(&self) -> usize {
        self.texts.len() / self.batch_size.max(1)
    }

    fn batch_len(batch: &DistillBatch) -> usize {
        batch.text.batch
    }

    fn epoch(
        &self,
        epoch: usize,
        start_step: usize,
    ) -> impl Iterator<Item = Result<DistillBatch, TrainError>> {
        let order = self.order(epoch);
        let b = self.batch_size;
        (start_step..self.steps_per_epoch())
            .map(move |step| self.batch(&order[step * b..(step + 1) * b]))
    }
}

/// Stage 1: the student regresses the teacher's text embeddings.
pub struct Distillation {
    stage: Stage<AltClipModel>,
}

impl Distillation {
    /// Starts from `student` (see [`AltClipRecipe::student_from_teacher`]).
    pub fn new(recipe: AltClipRecipe, student: AltClipModel, seed: u64, device: &Device) -> Self {
        Self {
            stage: Stage::new(JobKind::AltclipStage1, recipe, student, seed, device),
        }
    }

    /// Restores a run saved by [`Trainee::checkpoint`].
    pub fn resume(checkpoint: &Checkpoint, device: &Device) -> Result<Self, TrainError> {
        let stage = Stage::resume(
            checkpoint,
            JobKind::AltclipStage1,
            |recipe| recipe.student_config().init(device),
            device,
        )?;
        Ok(Self { stage })
    }

    /// Extends a resumed run of `checkpoint` to `epochs` in all, when given.
    pub fn extend(
        &mut self,
        epochs: Option<usize>,
        checkpoint: &std::path::Path,
    ) -> Result<(), TrainError> {
        self.stage.extend(epochs, checkpoint)
    }

    /// The recipe, as this stage completed it (the student's vocabulary).
    pub fn recipe(&self) -> &AltClipRecipe {
        &self.stage.recipe
    }

    /// The student, for inference on the plain device.
    pub fn model(&self) -> AltClipModel {
        self.stage.model().valid()
    }
}

/// Stage 1's loss on a batch: MSE of the pooled student output and the
/// teacher's targets.
pub fn distill_loss(model: &AltClipModel, batch: &DistillBatch, device: &Device) -> Tensor<1> {
    let pooled = model
        .text_model
        .forward(&student_input(&batch.text, device))
        .pooler_output;
    let width = pooled.dims()[1];
    let targets = Tensor::<2>::from_data(
        TensorData::new(batch.targets.clone(), [batch.text.batch, width]),
        device,
    );
    mse_loss(pooled, targets)
}

impl Trainee for Distillation {
    type Batch = DistillBatch;

    fn position(&self) -> Position {
        self.stage.position
    }

    fn step(
        &mut self,
        batch: &DistillBatch,
        steps_per_epoch: usize,
    ) -> Result<StepReport, TrainError> {
        self.stage.step(
            steps_per_epoch,
            "loss_mse",
            |model, ad| Ok(distill_loss(model, batch, ad)),
            |model| model,
        )
    }

    fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        self.stage.checkpoint()
    }
}

/// Held-out stage-1 MSE of `model` on `batches` (every full batch of its
/// epoch 0).
pub fn held_out_mse(
    model: &AltClipModel,
    batches: &ParallelBatches,
    device: &Device,
) -> Result<f64, TrainError> {
    let rows: Vec<usize> = (0..batches.texts.len()).collect();
    let mut total = 0.0;
    let mut count = 0;
    for chunk in rows.chunks(EVAL_BATCH) {
        let batch = batches.batch(chunk)?;
        let loss = distill_loss(model, &batch, device).into_scalar::<f32>() as f64;
        total += loss * chunk.len() as f64;
        count += chunk.len();
    }
    Ok(total / count.max(1) as f64)
}
