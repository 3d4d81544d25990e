//! Text tokenisation through HuggingFace `tokenizers` from a `tokenizer.json`
//! (BERT WordPiece, XLM-R Unigram, CLIP BPE alike).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::DataError;

/// A `tokenizer.json` tokenizer that pads each batch to its longest text.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

/// Token ids and attention mask of a batch, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// `[batch × len]` token ids.
    pub ids: Vec<i64>,
    /// `[batch × len]`, 1 for tokens and 0 for padding (HF convention).
    pub attention_mask: Vec<i64>,
    /// Number of texts.
    pub batch: usize,
    /// Padded length.
    pub len: usize,
}

impl EncodedBatch {
    /// Ids and attention mask as `[batch, len]` tensors.
    pub fn to_tensors(&self, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
        let shape = [self.batch, self.len];
        (
            Tensor::from_data(
                burn::tensor::TensorData::new(self.ids.clone(), shape),
                device,
            ),
            Tensor::from_data(
                burn::tensor::TensorData::new(self.attention_mask.clone(), shape),
                device,
            ),
        )
    }
}

impl TextTokenizer {
    /// Loads a `tokenizer.json`. Whatever padding the file configures (e.g.
    /// a fixed 128), batches are padded to their longest text.
    pub fn from_file(path: &Path) -> Result<Self, DataError> {
        let inner = Tokenizer::from_file(path).map_err(|e| DataError::Tokenizer {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self::from_tokenizer(inner, path.to_owned()))
    }

    /// Wraps an in-memory tokenizer; `path` is only used in messages.
    pub fn from_tokenizer(mut inner: Tokenizer, path: PathBuf) -> Self {
        let pad = inner.get_padding().cloned().unwrap_or_default();
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..pad
        }));
        Self { inner, path }
    }

    /// The underlying tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of a token, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Tokenises a batch, truncating each text to `max_len` tokens (special
    /// tokens included) when given, and padding to the longest.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        max_len: Option<usize>,
    ) -> Result<EncodedBatch, DataError> {
        let err = |message: String| DataError::Tokenizer {
            path: self.path.clone(),
            message,
        };
        let mut tokenizer = self.inner.clone();
        if let Some(max_length) = max_len {
            tokenizer
                .with_truncation(Some(TruncationParams {
                    max_length,
                    ..Default::default()
                }))
                .map_err(|e| err(e.to_string()))?;
        }
        let encodings = tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| err(e.to_string()))?;
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(texts.len() * len);
        let mut attention_mask = Vec::with_capacity(texts.len() * len);
        for encoding in &encodings {
            ids.extend(encoding.get_ids().iter().map(|&i| i as i64));
            attention_mask.extend(encoding.get_attention_mask().iter().map(|&m| m as i64));
        }
        Ok(EncodedBatch {
            ids,
            attention_mask,
            batch: texts.len(),
            len,
        })
    }
}
