//! Data for vision–language training: tokenizers (this module), and the
//! manifests, image transforms and loaders of the training issues.

pub mod tokenizer;

pub use tokenizer::{EncodedBatch, TextTokenizer};

/// Errors of the data crate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A tokenizer file could not be loaded or used.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The `tokenizer.json`.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}
