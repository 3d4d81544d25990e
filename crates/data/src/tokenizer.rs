//! Text tokenisation through HuggingFace `tokenizers` from a `tokenizer.json`
//! (BERT WordPiece, XLM-R Unigram, CLIP BPE alike).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor};
use tokenizers::SplitDelimiterBehavior;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BpeTrainerBuilder;
use tokenizers::models::unigram::{Unigram, UnigramTrainerBuilder};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::{BertNormalizer, NFKC};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::DataError;

mod deterministic;

use deterministic::{DeterministicTrainer, Method};

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
    /// The texts `rows`, padded only to their own longest text.
    ///
    /// # Panics
    /// If `rows` reaches past the batch.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> EncodedBatch {
        assert!(
            rows.end <= self.batch,
            "rows {rows:?} of a batch of {}",
            self.batch
        );
        let order: Vec<usize> = rows.collect();
        self.select(&order)
    }

    /// The texts at `order` (repeats allowed), in that order, padded only
    /// to their own longest text.
    ///
    /// # Panics
    /// If an index reaches past the batch.
    pub fn select(&self, order: &[usize]) -> EncodedBatch {
        let lengths = self.lengths();
        let len = order.iter().map(|&r| lengths[r]).max().unwrap_or(0);
        let width = self.len;
        let take = |v: &[i64]| -> Vec<i64> {
            order
                .iter()
                .flat_map(|&r| v[r * width..r * width + len].iter().copied())
                .collect()
        };
        EncodedBatch {
            ids: take(&self.ids),
            attention_mask: take(&self.attention_mask),
            batch: order.len(),
            len,
        }
    }

    /// Each text's number of tokens (its attention mask's ones).
    pub fn lengths(&self) -> Vec<usize> {
        (0..self.batch)
            .map(|r| {
                self.attention_mask[r * self.len..(r + 1) * self.len]
                    .iter()
                    .filter(|&&m| m != 0)
                    .count()
            })
            .collect()
    }

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

/// The special tokens of a BERT vocabulary, in id order.
pub const BERT_SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Ids of the special tokens a model and its objectives need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Padding.
    pub pad: i64,
    /// Sequence start (`[CLS]` / `<s>`).
    pub cls: i64,
    /// MLM mask.
    pub mask: i64,
}

impl TextTokenizer {
    /// Trains a BERT-style WordPiece tokenizer (lower-casing, accent
    /// stripping, CJK characters split, ids `[PAD]`=0 `[UNK]` `[CLS]` `[SEP]`
    /// `[MASK]` first) on `texts`, framing a single text as `framing` says.
    pub fn train_wordpiece<I, S>(
        texts: I,
        vocab_size: usize,
        framing: Framing,
    ) -> Result<Self, DataError>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let mut tokenizer = Tokenizer::new(WordPiece::default());
        tokenizer
            .with_normalizer(Some(BertNormalizer::default()))
            .map_err(training_error)?;
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        tokenizer.with_decoder(Some(WordPieceDecoder::default()));
        let mut trainer = DeterministicTrainer::new(Method::WordPiece(
            BpeTrainerBuilder::new()
                .continuing_subword_prefix("##".into())
                .vocab_size(vocab_size)
                .min_frequency(1)
                .show_progress(false)
                .special_tokens(added_tokens(&BERT_SPECIAL_TOKENS))
                .build(),
        ));
        tokenizer
            .train(&mut trainer, texts)
            .map_err(training_error)?;
        let template = match framing {
            Framing::Start => "[CLS] $A",
            Framing::StartEnd => "[CLS] $A [SEP]",
        };
        finish_training(tokenizer, template, "[PAD]")
    }

    /// Trains an XLM-R-style multilingual Unigram tokenizer (NFKC, the
    /// SentencePiece `▁` word boundary, each Han character a word of its
    /// own, no lower-casing; ids `<s>`=0
    /// `<pad>`=1 `</s>`=2 `<unk>`=3 as XLM-R, `<mask>` next) on `texts`.
    /// A text is framed as `<s> tokens </s>`, as XLM-R's.
    pub fn train_unigram<I, S>(texts: I, vocab_size: usize) -> Result<Self, DataError>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let mut tokenizer = Tokenizer::new(Unigram::default());
        tokenizer
            .with_normalizer(Some(NFKC))
            .map_err(training_error)?;
        // Han characters one per word, as multilingual BERT's tokenizer
        // splits them: written without spaces, a whole
        // clause would be one word, and at a small vocabulary its pieces
        // crowd out every other language's words.
        let han = Split::new(
            SplitPattern::Regex(r"\p{Han}".into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(training_error)?;
        tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            Metaspace::new('▁', PrependScheme::Always, true).into(),
            han.into(),
        ])));
        tokenizer.with_decoder(Some(Metaspace::new('▁', PrependScheme::Always, true)));
        let mut trainer = DeterministicTrainer::new(Method::Unigram {
            trainer: UnigramTrainerBuilder::default()
                .vocab_size(vocab_size as u32)
                .show_progress(false)
                .special_tokens(added_tokens(&XLMR_SPECIAL_TOKENS))
                .unk_token(Some("<unk>".into()))
                .build()
                .map_err(|e| training_error(e.into()))?,
            unk: "<unk>",
        });
        tokenizer
            .train(&mut trainer, texts)
            .map_err(training_error)?;
        finish_training(tokenizer, "<s> $A </s>", "<pad>")
    }

    /// Saves as `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        self.inner
            .save(path, true)
            .map_err(|source| DataError::Tokenizer {
                path: path.to_owned(),
                source,
            })
    }

    /// Ids of `[PAD]`/`<pad>`, `[CLS]`/`<s>` and `[MASK]`/`<mask>`.
    pub fn special_tokens(&self) -> Result<SpecialTokens, DataError> {
        let find = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| self.inner.token_to_id(n))
                .map(i64::from)
                .ok_or_else(|| DataError::Format {
                    path: self.path.clone(),
                    message: format!("the vocabulary has no {} token", names[0]),
                })
        };
        Ok(SpecialTokens {
            pad: find(["[PAD]", "<pad>"])?,
            cls: find(["[CLS]", "<s>"])?,
            mask: find(["[MASK]", "<mask>"])?,
        })
    }

    /// Loads a `tokenizer.json`. Whatever padding the file configures (e.g.
    /// a fixed 128), batches are padded to their longest text.
    pub fn from_file(path: &Path) -> Result<Self, DataError> {
        let inner = Tokenizer::from_file(path).map_err(|source| DataError::Tokenizer {
            path: path.to_owned(),
            source,
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

    /// The file it was loaded from (`<trained>` for a fresh one).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fingerprint of what turns text into ids: every token with its id,
    /// and the normaliser and pre-tokeniser (`vocab<N>-<64-bit FNV-1a
    /// hex>`). Checkpoints record it, so that a model is never fed ids from
    /// another vocabulary.
    pub fn fingerprint(&self) -> String {
        let mut vocab: Vec<(u32, String)> = self
            .inner
            .get_vocab(true)
            .into_iter()
            .map(|(token, id)| (id, token))
            .collect();
        vocab.sort_unstable();
        let mut hash = Fnv1a::default();
        for (id, token) in &vocab {
            hash.write(&id.to_le_bytes());
            hash.write(token.as_bytes());
            hash.write(&[0]);
        }
        let text_rules = |value: Result<String, serde_json::Error>| value.unwrap_or_default();
        hash.write(text_rules(serde_json::to_string(&self.inner.get_normalizer())).as_bytes());
        hash.write(text_rules(serde_json::to_string(&self.inner.get_pre_tokenizer())).as_bytes());
        format!("vocab{}-{:016x}", vocab.len(), hash.0)
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
        let err = |source| DataError::Tokenizer {
            path: self.path.clone(),
            source,
        };
        let mut tokenizer = self.inner.clone();
        if let Some(max_length) = max_len {
            tokenizer
                .with_truncation(Some(TruncationParams {
                    max_length,
                    ..Default::default()
                }))
                .map_err(err)?;
        }
        let encodings = tokenizer.encode_batch(texts.to_vec(), true).map_err(err)?;
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

/// 64-bit FNV-1a: stable across builds and platforms, unlike `std`'s
/// hasher.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// How a trained tokenizer frames a single text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `[CLS] tokens`, as ALBEF's text encoder (no `[SEP]`).
    Start,
    /// `[CLS] tokens [SEP]`: a CLIP-style text tower pools the end token.
    StartEnd,
}

/// The special tokens of an XLM-R vocabulary, in id order (`<mask>` last
/// in XLM-R; next after these in a trained vocabulary).
pub const XLMR_SPECIAL_TOKENS: [&str; 5] = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"];

fn training_error(source: tokenizers::Error) -> DataError {
    DataError::Tokenizer {
        path: PathBuf::from("<training>"),
        source,
    }
}

fn added_tokens(tokens: &[&str]) -> Vec<AddedToken> {
    tokens.iter().map(|t| AddedToken::from(*t, true)).collect()
}

/// Adds the framing `template` (whose special tokens must be in the trained
/// vocabulary) and padding with `pad`.
fn finish_training(
    mut tokenizer: Tokenizer,
    template: &str,
    pad: &str,
) -> Result<TextTokenizer, DataError> {
    let id = |token: &str| {
        tokenizer
            .token_to_id(token)
            .ok_or_else(|| training_error(format!("no {token} after training").into()))
    };
    let specials = template
        .split_whitespace()
        .filter(|t| *t != "$A")
        .map(|t| Ok((t.to_owned(), id(t)?)))
        .collect::<Result<Vec<_>, DataError>>()?;
    let pad_id = id(pad)?;
    let processor = TemplateProcessing::builder()
        .try_single(template)
        .map_err(|e| training_error(e.into()))?
        .special_tokens(specials)
        .build()
        .map_err(|e| training_error(e.into()))?;
    tokenizer.with_post_processor(Some(processor));
    tokenizer.with_padding(Some(PaddingParams {
        pad_id,
        pad_token: pad.into(),
        ..Default::default()
    }));
    Ok(TextTokenizer::from_tokenizer(
        tokenizer,
        PathBuf::from("<trained>"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trained_wordpiece_frames_like_albef() {
        let texts = [
            "a large red circle",
            "a small blue square on the left",
            "一个红色圆形",
        ];
        let tokenizer =
            TextTokenizer::train_wordpiece(texts.iter().cycle().take(30), 200, Framing::Start)
                .unwrap();
        let special = tokenizer.special_tokens().unwrap();
        assert_eq!((special.pad, special.cls), (0, 2));
        let batch = tokenizer
            .encode_batch(&["A Large red CIRCLE", "a square"], None)
            .unwrap();
        assert_eq!(batch.len, 5);
        // [CLS] a large red circle / [CLS] a square [PAD] [PAD]: no [SEP].
        assert_eq!(batch.ids[0], 2);
        assert_eq!(&batch.attention_mask[5..], &[1, 1, 1, 0, 0]);
        assert_eq!(&batch.ids[8..], &[0, 0]);
        let words = tokenizer.encode_batch(&["red"], None).unwrap();
        assert_eq!(words.len, 2, "whole words are single tokens");
    }

    #[test]
    fn a_trained_unigram_frames_like_xlm_r() {
        let texts = [
            "a large red circle",
            "a small blue square on the left",
            "一个大的红色圆形",
            "左边一个小的蓝色正方形",
            "ein großer roter Kreis",
        ];
        let tokenizer = TextTokenizer::train_unigram(texts.iter().cycle().take(50), 120).unwrap();
        let special = tokenizer.special_tokens().unwrap();
        assert_eq!((special.cls, special.pad), (0, 1));
        assert_eq!(tokenizer.token_id("</s>"), Some(2));
        let batch = tokenizer
            .encode_batch(&["a red circle", "一个红色圆形"], None)
            .unwrap();
        let row = |r: usize| &batch.ids[r * batch.len..(r + 1) * batch.len];
        for r in 0..2 {
            let used = batch.attention_mask[r * batch.len..(r + 1) * batch.len]
                .iter()
                .filter(|&&m| m == 1)
                .count();
            assert_eq!(row(r)[0], 0, "starts with <s>");
            assert_eq!(row(r)[used - 1], 2, "ends with </s>");
            assert!(row(r)[1..used - 1].iter().all(|&i| i > 4), "{:?}", row(r));
            assert!(row(r)[used..].iter().all(|&i| i == 1), "pads with <pad>");
        }
    }

    /// Frequent words that are no other word's prefix (`large`, `circle`)
    /// become whole pieces, as SentencePiece makes them; Chinese is split
    /// into characters, so its clauses leave room for the other languages.
    #[test]
    fn a_trained_unigram_keeps_frequent_words_whole() {
        let texts = [
            "there is a large red circle at the top",
            "a small blue square at the bottom left",
            "图中有一个大的红色圆形",
            "左下角有一个小的蓝色正方形",
        ];
        let tokenizer = TextTokenizer::train_unigram(texts.iter().cycle().take(400), 8000).unwrap();
        let pieces = |text: &str| -> Vec<String> {
            tokenizer
                .inner()
                .encode(text, false)
                .unwrap()
                .get_tokens()
                .to_vec()
        };
        assert_eq!(
            pieces("there is a large red circle"),
            ["▁there", "▁is", "▁a", "▁large", "▁red", "▁circle"]
        );
        assert_eq!(
            pieces("一个红色圆形"),
            ["▁", "一", "个", "红", "色", "圆", "形"]
        );
    }
}

#[cfg(test)]
mod determinism {
    use super::*;

    pub(super) fn corpus() -> Vec<String> {
        let colours = ["red", "green", "blue", "yellow", "purple", "orange"];
        let shapes = ["circle", "square", "triangle", "star", "cross", "diamond"];
        let places = ["left", "right", "top", "bottom", "centre"];
        let mut texts = Vec::new();
        for (i, c) in colours.iter().enumerate() {
            for (j, s) in shapes.iter().enumerate() {
                let p = places[(i + j) % places.len()];
                texts.push(format!("a {c} {s} on the {p} beside a smaller {s}s"));
            }
        }
        texts
    }

    #[test]
    fn the_fingerprint_follows_the_vocabulary_not_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = TextTokenizer::train_wordpiece(corpus().iter(), 120, Framing::Start).unwrap();
        let path = dir.path().join("tokenizer.json");
        a.save(&path).unwrap();
        let reloaded = TextTokenizer::from_file(&path).unwrap();
        assert_eq!(a.fingerprint(), reloaded.fingerprint());
        assert!(
            a.fingerprint()
                .starts_with(&format!("vocab{}-", a.vocab_size()))
        );
        // Same size, other texts: another vocabulary.
        let other: Vec<String> = corpus().iter().map(|t| t.replace('a', "o")).collect();
        let b = TextTokenizer::train_wordpiece(other.iter(), 120, Framing::Start).unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    /// Trains five times (each in fresh hash maps) and compares the files.
    fn assert_deterministic(train: impl Fn() -> Result<TextTokenizer, DataError>) {
        let json = || train().unwrap().inner().to_string(false).unwrap();
        let first = json();
        for run in 1..5 {
            assert_eq!(first, json(), "run {run}");
        }
    }

    #[test]
    fn wordpiece_training_is_deterministic() {
        assert_deterministic(|| {
            TextTokenizer::train_wordpiece(corpus().iter(), 120, Framing::Start)
        });
    }

    #[test]
    fn unigram_training_is_deterministic() {
        assert_deterministic(|| TextTokenizer::train_unigram(corpus().iter(), 80));
    }
}
