//! What the fine-tuning jobs (retrieval, SNLI-VE, grounding) share: where
//! a run starts.

use std::path::PathBuf;

use crate::TrainError;
use crate::runner::{Position, check_work_left};

/// Where a fine-tuning run starts.
#[derive(Debug, Clone)]
pub enum TaskStart {
    /// Weights to fine-tune: our `checkpoint.ckpt` (pretraining, or the
    /// task's own), whose model shape and `tokenizer.json` come with it, or
    /// an official ALBEF `.pth`/`.safetensors` (shape from the config).
    From(PathBuf),
    /// Continue a run of the task from its `checkpoint.ckpt`, with its own
    /// config; `epochs` extends it.
    Resume {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// The run's new length in epochs.
        epochs: Option<usize>,
    },
}

impl TaskStart {
    /// For a resumed run at `at`: fails when nothing is left of `epochs`
    /// epochs of `steps_per_epoch` steps.
    pub(crate) fn check_work_left(
        &self,
        at: Position,
        epochs: usize,
        steps_per_epoch: usize,
    ) -> Result<(), TrainError> {
        match self {
            TaskStart::Resume { checkpoint, .. } => {
                check_work_left(at, epochs * steps_per_epoch, epochs, checkpoint)
            }
            TaskStart::From(_) => Ok(()),
        }
    }
}
