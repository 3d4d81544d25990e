//! Training of the CLIP teacher: CLIP's symmetric contrastive loss on
//! image–caption batches (Radford et al. 2021), the log inverse temperature
//! clamped to ln 100 after each step as OpenAI's training does (HF's
//! forward does not clamp).

use burn::module::Module;
use burn::tensor::Device;
use vl_data::ImageTextBatch;
use vl_models::ClipModel;
use vl_models::blocks::padding_mask;
use vl_objectives::clip_loss;

use crate::TrainError;
use crate::altclip::recipe::AltClipRecipe;
use crate::altclip::stage::{Stage, clamp_logit_scale};
use crate::runner::checkpoint::{Checkpoint, JobKind};
use crate::runner::{Position, StepReport, Trainee};

/// Contrastive training of the CLIP teacher on image–caption batches.
pub struct TeacherTraining {
    stage: Stage<ClipModel>,
}

impl TeacherTraining {
    /// Starts from `model` (fresh or loaded) on `device`.
    pub fn new(recipe: AltClipRecipe, model: ClipModel, seed: u64, device: &Device) -> Self {
        Self {
            stage: Stage::new(JobKind::AltclipTeacher, recipe, model, seed, device),
        }
    }

    /// Restores a run saved by [`Trainee::checkpoint`].
    pub fn resume(checkpoint: &Checkpoint, device: &Device) -> Result<Self, TrainError> {
        let stage = Stage::resume(
            checkpoint,
            JobKind::AltclipTeacher,
            |recipe| recipe.teacher.init(device),
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

    /// The recipe (the teacher config and its `teacher_training` stage).
    pub fn recipe(&self) -> &AltClipRecipe {
        &self.stage.recipe
    }

    /// The teacher, for inference on the plain device.
    pub fn model(&self) -> ClipModel {
        self.stage.model().valid()
    }
}

impl Trainee for TeacherTraining {
    type Batch = ImageTextBatch;

    fn position(&self) -> Position {
        self.stage.position
    }

    fn step(
        &mut self,
        batch: &ImageTextBatch,
        steps_per_epoch: usize,
    ) -> Result<StepReport, TrainError> {
        self.stage.step(
            steps_per_epoch,
            "loss_clip",
            |model, ad| {
                let pixels = batch.images.to_tensor(ad);
                let (ids, mask) = batch.text.to_tensors(ad);
                let out = model.forward(ids, Some(padding_mask(mask)), pixels);
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
