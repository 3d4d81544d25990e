//! Data for vision–language training: the synthetic shapes world,
//! tokenizers, and (with the training pipeline) manifests, image transforms
//! and loaders.

pub mod classes;
pub mod fashion_mnist;
pub mod grounding;
pub mod image_files;
pub mod images;
pub mod loader;
pub mod manifest;
pub mod parallel;
pub mod progress;
pub mod tokenizer;
pub mod transforms;
pub mod ve;
pub mod vqa;
pub mod world;

pub use images::{ImageBatch, clip_images, eval_images};
pub use loader::{ImageTextBatch, Loader, LoaderConfig, mix_seed};
pub use manifest::{BadEntries, CaptionedImage, Location, RetrievalSet, Skipped};
pub use tokenizer::{EncodedBatch, Framing, SpecialTokens, TextTokenizer};

/// Errors of the data crate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents are not what they should be.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A compressed file could not be decompressed.
    #[error("{path}: gunzip: {source}")]
    Gunzip {
        /// The file.
        path: std::path::PathBuf,
        /// The decompressor's error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file does not parse or has the wrong shape.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: std::path::PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest entry is unusable.
    #[error("{location}: {message}")]
    Manifest {
        /// Where the entry is.
        location: manifest::Location,
        /// What is wrong with it.
        message: String,
    },
    /// A manifest entry whose file cannot be used.
    #[error("{location}: {source}")]
    BadEntry {
        /// Where the entry is.
        location: manifest::Location,
        /// Why its file cannot be used.
        #[source]
        source: Box<DataError>,
    },
    /// An image could not be decoded or encoded.
    #[error("image {path}: {source}")]
    Image {
        /// The image file.
        path: std::path::PathBuf,
        /// The codec's error.
        #[source]
        source: image::ImageError,
    },
    /// A batch whose images nearly all failed to decode (under
    /// `--skip-bad`).
    #[error(
        "a batch of {batch_size} from {} kept {kept} samples after skipping undecodable images \
         ({skipped} skipped so far): too few to train on; the images need repair",
        file.display()
    )]
    BatchLost {
        /// The manifest of its first sample.
        file: std::path::PathBuf,
        /// Samples asked for.
        batch_size: usize,
        /// Samples left.
        kept: usize,
        /// Images skipped so far in the run.
        skipped: usize,
    },
    /// A synthetic-world config that cannot make a world.
    #[error("synthetic world: {0}")]
    BadWorld(String),
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
    /// A tokenizer could not be loaded, trained, saved or used.
    #[error("tokenizer {path}: {source}")]
    Tokenizer {
        /// The `tokenizer.json` (`<training>` while one is trained).
        path: std::path::PathBuf,
        /// The tokenizers library's error.
        #[source]
        source: tokenizers::Error,
    },
}
