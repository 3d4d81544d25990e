//! AltCLIP's recipe (Chen et al., 2022, arXiv 2211.06679; FlagAI
//! `examples/AltCLIP`, HF `modeling_altclip.py`): a CLIP teacher, an XLM-R
//! student with the AltCLIP text head, then
//!
//! 1. **teacher learning**: image-free; the student's pooled output
//!    (`transformation(pre_LN(h))` at `<s>`) on the target-language side of a
//!    parallel pair regresses, by MSE, the teacher's pooled EOS text
//!    embedding (after `final_layer_norm`, before `text_projection`) of the
//!    English side; English–English pairs are included, as the paper does;
//! 2. **contrastive tuning**: image–text pairs in several languages, CLIP's
//!    symmetric loss, the image tower frozen.
//!
//! The student's `text_projection`, image tower and temperature start as
//! the teacher's, so after stage 1 the student already lives in the
//! teacher's joint space.
//!
//! Deviations, each for a stated reason, are in the stage's module:
//! [`teacher`], [`distill`], [`contrastive`].

pub mod contrastive;
pub mod data;
pub mod distill;
pub mod evaluation;
pub mod pipeline;
pub mod recipe;
mod stage;
pub mod teacher;

use burn::tensor::Device;
use vl_models::{AltClipModel, ClipModel};

use crate::TrainError;
use crate::runner::checkpoint::{Checkpoint, JobKind};
pub use contrastive::{CaptionBatch, CaptionBatches, ContrastiveTuning};
pub use distill::{
    DistillBatch, Distillation, ParallelBatches, distill_loss, held_out_mse, teacher_targets,
};
pub use recipe::{AltClipRecipe, StageConfig};
pub use teacher::TeacherTraining;

/// The recipe of an AltCLIP checkpoint (any stage).
pub fn recipe_of(checkpoint: &Checkpoint) -> Result<AltClipRecipe, TrainError> {
    let kind = match checkpoint.kind() {
        JobKind::AlbefPretrain
        | JobKind::AlbefVisionWarmup
        | JobKind::AlbefVe
        | JobKind::AlbefRetrieval
        | JobKind::AlbefGrounding => JobKind::AltclipTeacher,
        altclip => altclip,
    };
    Ok(checkpoint.state::<AltClipRecipe>(kind)?.config)
}

/// The teacher of a teacher-training checkpoint, for inference.
pub fn load_teacher(checkpoint: &Checkpoint, device: &Device) -> Result<ClipModel, TrainError> {
    let recipe = checkpoint
        .state::<AltClipRecipe>(JobKind::AltclipTeacher)?
        .config;
    checkpoint.module(stage::MODEL, recipe.teacher.init(device))
}

/// The student of a stage-1 or stage-2 checkpoint, for inference.
pub fn load_student(checkpoint: &Checkpoint, device: &Device) -> Result<AltClipModel, TrainError> {
    let kind = match checkpoint.kind() {
        JobKind::AltclipStage1 => JobKind::AltclipStage1,
        _ => JobKind::AltclipStage2,
    };
    let recipe = checkpoint.state::<AltClipRecipe>(kind)?.config;
    checkpoint.module(stage::MODEL, recipe.student_config().init(device))
}
