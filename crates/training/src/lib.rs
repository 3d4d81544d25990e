//! Training support shared by the ALBEF and AltCLIP programs: AdamW with
//! the reference's parameter groups, the reference learning-rate schedule,
//! atomic checkpoints that resume exactly, JSON-lines metrics, loss-curve
//! plots and progress bars; and the ALBEF routines built on them
//! ([`albef`] pretraining, [`retrieval`] evaluation).

pub mod albef;
pub mod altclip;
pub mod bench;
pub mod checkpoint;
pub mod data_parallel;
pub mod metrics;
pub mod optimizer;
pub mod progress;
pub mod retrieval;
pub mod runner;
pub mod schedule;
pub mod vision_warmup;

use std::path::PathBuf;

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A config file is invalid.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint cannot be used.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A loss became NaN or infinite.
    #[error("step {step}: non-finite loss ({losses}); stopping")]
    NonFinite {
        /// The step (0-based) whose loss it was.
        step: usize,
        /// The losses of that step.
        losses: String,
    },
    /// Data could not be loaded.
    #[error(transparent)]
    Data(#[from] vl_data::DataError),
}

/// Held by the tests that seed the device's generator, which every thread
/// of the test binary shares (tests run in parallel).
#[cfg(test)]
pub(crate) fn seeded_device() -> std::sync::MutexGuard<'static, ()> {
    static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SEEDED.lock().unwrap_or_else(|e| e.into_inner())
}
