//! Stage 2, contrastive tuning (AltCLIP §3.2): CLIP's symmetric loss on
//! image–caption pairs in several languages, the image tower frozen.
//! Images are not augmented here: with a frozen tower their features are
//! then fixed and are computed once; only the text side runs per step.

use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use vl_data::{EncodedBatch, TextTokenizer};
use vl_models::AltClipModel;
use vl_models::clip::contrastive_logits;
use vl_objectives::clip_loss;

use crate::TrainError;
use crate::altclip::recipe::AltClipRecipe;
use crate::altclip::stage::{Stage, clamp_logit_scale};
use crate::eval::dual_encoder::{row, student_input};
use crate::runner::checkpoint::{Checkpoint, JobKind};
use crate::runner::seed::derive_seed;
use crate::runner::{Batches, Position, StepReport, Trainee};

/// A stage-2 batch: captions and the frozen tower's embeddings of their
/// images.
#[derive(Debug, Clone)]
pub struct CaptionBatch {
    /// Captions, tokenised for the student.
    pub text: EncodedBatch,
    /// Unit image embeddings `[batch, dim]`.
    pub image_embeds: Vec<f32>,
}

/// Stage 2's data: images (as frozen-tower embeddings) with captions in
/// several languages; each epoch visits every image once with one of its
/// captions drawn at random.
#[derive(Debug, Clone)]
pub struct CaptionBatches {
    /// Unit image embeddings `[images, dim]`.
    pub image_embeds: Arc<Vec<f32>>,
    /// Width of an embedding.
    pub dim: usize,
    /// Each image's captions (all languages).
    pub captions: Arc<Vec<Vec<String>>>,
    /// The student's tokenizer.
    pub tokenizer: Arc<TextTokenizer>,
    /// Images per batch.
    pub batch_size: usize,
    /// Tokens per caption.
    pub max_tokens: usize,
    /// Seed of the orders and caption draws.
    pub seed: u64,
}

impl Batches for CaptionBatches {
    type Batch = CaptionBatch;

    fn steps_per_epoch(&self) -> usize {
        self.captions.len() / self.batch_size.max(1)
    }

    fn batch_len(batch: &CaptionBatch) -> usize {
        batch.text.batch
    }

    fn epoch(
        &self,
        epoch: usize,
        start_step: usize,
    ) -> impl Iterator<Item = Result<CaptionBatch, TrainError>> {
        let mut rng = StdRng::seed_from_u64(derive_seed(self.seed, epoch as u64));
        let mut order: Vec<usize> = (0..self.captions.len()).collect();
        order.shuffle(&mut rng);
        let picks: Vec<usize> = order
            .iter()
            .map(|&i| rand::RngExt::random_range(&mut rng, 0..self.captions[i].len()))
            .collect();
        let b = self.batch_size;
        (start_step..self.steps_per_epoch()).map(move |step| {
            let rows = step * b..(step + 1) * b;
            let texts: Vec<&str> = rows
                .clone()
                .map(|r| self.captions[order[r]][picks[r]].as_str())
                .collect();
            let text = self.tokenizer.encode_batch(&texts, Some(self.max_tokens))?;
            let image_embeds = rows
                .flat_map(|r| row(&self.image_embeds, self.dim, order[r]).iter().copied())
                .collect();
            Ok(CaptionBatch { text, image_embeds })
        })
    }
}

/// Stage 2: contrastive tuning of the student's text side against the
/// frozen image tower.
pub struct ContrastiveTuning {
    stage: Stage<AltClipModel>,
}

impl ContrastiveTuning {
    /// Starts from a stage-1 student.
    ///
    /// # Panics
    /// If `recipe` does not describe `student` (its checkpoints could not
    /// be loaded back).
    pub fn new(recipe: AltClipRecipe, student: AltClipModel, seed: u64, device: &Device) -> Self {
        let vocab = student
            .text_model
            .roberta
            .embeddings
            .word_embeddings
            .weight
            .dims()[0];
        assert_eq!(
            vocab, recipe.student.roberta.vocab_size,
            "the recipe's student vocabulary differs from the student's"
        );
        // The image tower never sees a gradient here; `no_grad` also keeps
        // it out of the optimizer.
        let mut student = student;
        student.vision_model = student.vision_model.no_grad();
        student.visual_projection = student.visual_projection.no_grad();
        Self {
            stage: Stage::new(JobKind::AltclipStage2, recipe, student, seed, device),
        }
    }

    /// Restores a run saved by [`Trainee::checkpoint`].
    pub fn resume(checkpoint: &Checkpoint, device: &Device) -> Result<Self, TrainError> {
        let stage = Stage::resume(
            checkpoint,
            JobKind::AltclipStage2,
            |recipe| {
                let mut blank = recipe.student_config().init(device);
                blank.vision_model = blank.vision_model.no_grad();
                blank.visual_projection = blank.visual_projection.no_grad();
                blank
            },
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

    /// The recipe.
    pub fn recipe(&self) -> &AltClipRecipe {
        &self.stage.recipe
    }

    /// The student, for inference on the plain device.
    pub fn model(&self) -> AltClipModel {
        self.stage.model().valid()
    }
}

impl Trainee for ContrastiveTuning {
    type Batch = CaptionBatch;

    fn position(&self) -> Position {
        self.stage.position
    }

    fn step(
        &mut self,
        batch: &CaptionBatch,
        steps_per_epoch: usize,
    ) -> Result<StepReport, TrainError> {
        self.stage.step(
            steps_per_epoch,
            "loss_clip",
            |model, ad| {
                let text = model.text_features(&student_input(&batch.text, ad));
                let dim = text.dims()[1];
                let images = Tensor::<2>::from_data(
                    TensorData::new(batch.image_embeds.clone(), [batch.text.batch, dim]),
                    ad,
                );
                let out = contrastive_logits(text, images, model.logit_scale.val());
                Ok(clip_loss(out.logits_per_text))
            },
            |mut model| {
                model.logit_scale = clamp_logit_scale(model.logit_scale);
                model
            },
        )
    }

    fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        self.stage.checkpoint()
    }
}
