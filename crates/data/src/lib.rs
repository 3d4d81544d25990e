//! Data for vision–language training: the synthetic shapes world,
//! tokenizers, and (with the training pipeline) manifests, image transforms
//! and loaders.

pub mod fashion_mnist;
pub mod images;
pub mod loader;
pub mod manifest;
pub mod parallel;
pub mod tokenizer;
pub mod transforms;
pub mod world;

pub use images::{ImageBatch, eval_images};
pub use loader::{ImageTextBatch, Loader, LoaderConfig, mix_seed};
pub use manifest::{BadEntries, CaptionedImage, Location, RetrievalSet, Skipped};
pub use tokenizer::{EncodedBatch, Framing, SpecialTokens, TextTokenizer};

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
    /// A manifest entry is unusable.
    #[error("{location}: {message}")]
    Manifest {
        /// Where the entry is.
        location: manifest::Location,
        /// What is wrong with it.
        message: String,
    },
    /// An image could not be decoded.
    #[error("image {path}: {message}")]
    Image {
        /// The image file.
        path: std::path::PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// A data set too small for one batch.
    #[error("{samples} usable samples{} cannot fill a batch of {batch_size}", .source_file.as_ref().map(|f| format!(" in {}", f.display())).unwrap_or_default())]
    TooFewSamples {
        /// Usable samples.
        samples: usize,
        /// The batch size.
        batch_size: usize,
        /// The (first) manifest they come from.
        source_file: Option<std::path::PathBuf>,
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
