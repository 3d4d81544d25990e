//! Training for ALBEF and AltCLIP, one folder per job:
//!
//! - [`runner`]: the loop every job shares (a [`runner::Trainee`] stepped
//!   over [`runner::Batches`]), checkpoints with a typed header, AdamW with
//!   the reference's parameter groups, the reference learning-rate
//!   schedule, data-parallel workers, seeds, metrics, plots and progress;
//! - [`albef`]: ALBEF pretraining (config, step, threading, momentum
//!   state), the vision warm-up that stands in for DeiT, and the
//!   backend-swap experiment;
//! - [`altclip`]: AltCLIP's recipe, teacher training, stage 1 (teacher
//!   learning) and stage 2 (contrastive tuning);
//! - [`eval`]: ALBEF retrieval (ITC top-k, ITM re-ranking) and
//!   dual-encoder retrieval and zero-shot classification;
//! - [`config`]: strict reading of every job's YAML config.

pub mod albef;
pub mod altclip;
pub mod config;
pub mod eval;
pub mod runner;

use std::path::PathBuf;

use runner::checkpoint::JobKind;

/// An error and its sources as one line, `outer: inner: …`, each cause
/// once: this crate's errors (and `vl-data`'s) already show their source
/// in their message, which a plain walk of the chain would repeat.
pub fn error_report<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut report = String::new();
    for cause in chain {
        let text = cause.to_string();
        if report.contains(&text) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&text);
    }
    report
}

#[cfg(test)]
mod report_tests {
    #[test]
    fn a_source_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = super::TrainError::Io {
            path: "a.json".into(),
            source: io,
        };
        let err = anyhow::Error::new(err).context("reading the config");
        assert_eq!(
            super::error_report(err.chain()),
            "reading the config: a.json: no such file"
        );
    }
}

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A YAML config does not parse.
    #[error("{path}: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_norway::Error,
    },
    /// A JSON file (or a config's values) does not parse.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A config file has a key its job does not know.
    #[error("{path}: {key}")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key, and the closest known one.
        key: config::UnknownKey,
    },
    /// Values of a config that cannot be right.
    #[error("invalid config: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConfig(Vec<config::InvalidValue>),
    /// Values of a config file that cannot be right.
    #[error("{path}: invalid config: {}", .values.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConfigFile {
        /// The file.
        path: PathBuf,
        /// Each bad value.
        values: Vec<config::InvalidValue>,
    },
    /// A file is not a checkpoint of this project, or is damaged.
    #[error("{path}: {reason}")]
    BadCheckpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tokenizer other than the one a checkpoint was trained with.
    #[error(
        "{tokenizer} is not the tokenizer {checkpoint} was trained with (its vocabulary \
         fingerprint is {found}, the checkpoint's {expected}); use the tokenizer.json of \
         that run"
    )]
    TokenizerMismatch {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// The tokenizer given.
        tokenizer: PathBuf,
        /// The checkpoint's fingerprint.
        expected: String,
        /// The tokenizer's.
        found: String,
    },
    /// A checkpoint of another job.
    #[error("a checkpoint of {found} where one of {expected} is needed")]
    WrongJob {
        /// The job that can use it.
        expected: JobKind,
        /// The job that wrote it.
        found: JobKind,
    },
    /// A checkpoint lacks a section its job writes.
    #[error("the checkpoint has no `{0}` section")]
    MissingSection(String),
    /// Saved weights do not fit the model their config describes.
    #[error("section `{section}` does not match the model: {report}")]
    ModuleMismatch {
        /// The section.
        section: String,
        /// burn's account of the missing, unused and mis-shaped tensors.
        report: String,
    },
    /// burn could not serialise or restore a module or optimizer state.
    #[error(transparent)]
    Record(#[from] burn::store::RecordError),
    /// The loss plot could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// The PNG.
        path: PathBuf,
        /// The plotting library's message (its error type is generic over
        /// the backend and carries no source).
        message: String,
    },
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
    /// Input that cannot be used, found by a check of this crate (no
    /// underlying error).
    #[error("{0}")]
    BadInput(String),
    /// Weights could not be imported.
    #[error(transparent)]
    Import(#[from] vl_models::import::ImportError),
}

impl TrainError {
    /// The error with the config file it concerns named, for invalid
    /// values found in `path`.
    pub fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            TrainError::InvalidConfig(values) => TrainError::InvalidConfigFile {
                path: path.to_owned(),
                values,
            },
            other => other,
        }
    }
}

/// Held by the tests that seed the device's generator, which every thread
/// of the test binary shares (tests run in parallel).
#[cfg(test)]
pub(crate) fn seeded_device() -> std::sync::MutexGuard<'static, ()> {
    static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SEEDED.lock().unwrap_or_else(|e| e.into_inner())
}
