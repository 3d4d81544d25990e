//! Data for vision–language training: the synthetic shapes world,
//! tokenizers, and (with the training pipeline) manifests, image transforms
//! and loaders.

pub mod tokenizer;
pub mod world;

pub use tokenizer::{EncodedBatch, TextTokenizer};

/// Errors of the data crate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A tokenizer file could not be loaded or used.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The `tokenizer.json`.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}
