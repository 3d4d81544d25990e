//! Tokenizer training that gives the same vocabulary, with the same ids,
//! every time it sees the same texts.
//!
//! `tokenizers`' own trainers count words in `AHashMap`s whose hash keys are
//! drawn at random in every process. The BPE trainer (under WordPiece)
//! numbers the continuation pieces (`##x`) in that map's iteration order,
//! and merges of equal count are ordered by those numbers, so the learned
//! vocabulary changes from run to run; the Unigram trainer builds its seed
//! pieces and its EM sums in the same random order. This trainer counts
//! words in a `BTreeMap`, then hands them to the BPE trainer in a map with
//! fixed hash keys, and to the Unigram trainer sorted, with its EM run on
//! one thread (its parallel reduction adds floats in an order that work
//! stealing decides); pieces of equal score are then ordered by their text.
//!
//! The Unigram trainer also gets each word a second time, so that whole
//! words can become pieces ([`seed_copies`]).
//!
//! When the Unigram trainer's pruning drops a character that occurs in
//! the texts, it adds the character back with the lowest score plus 1e-4
//! per character so added, stepping through them in hash order; those
//! scores are handed out again in the order of the characters' text.

use std::collections::BTreeMap;

use ahash::{AHashMap, RandomState};
use compact_str::CompactString;
use rayon::iter::{ParallelBridge, ParallelIterator};
use tokenizers::models::ModelWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::utils::parallelism::{get_parallelism, set_parallelism};
use tokenizers::{AddedToken, Result, Trainer};

/// Fixed hash keys: the BPE trainer's word order follows them.
const HASH_SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// Which model the words train.
pub(super) enum Method {
    /// WordPiece through the BPE trainer (with the `##` prefix), as
    /// `tokenizers`' `WordPieceTrainer` does.
    WordPiece(BpeTrainer),
    /// SentencePiece Unigram, with the trainer's unknown token.
    Unigram {
        trainer: UnigramTrainer,
        unk: &'static str,
    },
}

/// A `Trainer` for a [`tokenizers::Tokenizer`] whose result depends only on
/// the texts fed to it.
pub(super) struct DeterministicTrainer {
    method: Method,
    words: BTreeMap<String, u64>,
}

impl DeterministicTrainer {
    pub(super) fn new(method: Method) -> Self {
        Self {
            method,
            words: BTreeMap::new(),
        }
    }
}

impl Trainer for DeterministicTrainer {
    type Model = ModelWrapper;

    fn should_show_progress(&self) -> bool {
        false
    }

    fn train(&self, model: &mut ModelWrapper) -> Result<Vec<AddedToken>> {
        match &self.method {
            Method::WordPiece(trainer) => {
                let mut counts = AHashMap::with_hasher(RandomState::with_seeds(
                    HASH_SEEDS[0],
                    HASH_SEEDS[1],
                    HASH_SEEDS[2],
                    HASH_SEEDS[3],
                ));
                for (word, count) in &self.words {
                    counts.insert(CompactString::from(word.as_str()), *count);
                }
                let mut bpe = BPE::default();
                let special = trainer.do_train(&counts, &mut bpe)?;
                *model = ModelWrapper::WordPiece(WordPiece::from_bpe(&bpe));
                Ok(special)
            }
            Method::Unigram { trainer, unk } => {
                let sentences = seed_copies(&self.words);
                let mut unigram = Unigram::default();
                let parallel = get_parallelism();
                set_parallelism(false);
                let special = trainer.do_train(sentences, &mut unigram);
                set_parallelism(parallel);
                let special = special?;
                *model = ModelWrapper::Unigram(ties_by_text(&unigram, special.len(), unk)?);
                Ok(special)
            }
        }
    }

    fn feed<I, S, F>(&mut self, texts: I, process: F) -> Result<()>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
        F: Fn(&str) -> Result<Vec<String>> + Sync,
    {
        // Counts are sums: the order the threads add them in does not matter.
        let words = texts
            .par_bridge()
            .map(|text| process(text.as_ref()))
            .try_fold(BTreeMap::new, |mut counts, words| {
                for word in words? {
                    *counts.entry(word).or_insert(0u64) += 1;
                }
                Ok::<_, tokenizers::Error>(counts)
            })
            .try_reduce(BTreeMap::new, |mut all, part| {
                for (word, count) in part {
                    *all.entry(word).or_insert(0) += count;
                }
                Ok(all)
            })?;
        for (word, count) in words {
            *self.words.entry(word).or_insert(0) += count;
        }
        Ok(())
    }
}

/// The words as the Unigram trainer's sentences, each followed by a
/// copy of itself with `▁` appended and count 0.
///
/// The trainer seeds its pieces with the substrings that branch in the
/// suffix tree of its *distinct* words, each closed by a boundary, so a
/// word that is no other word's prefix (`▁large`, always followed by the
/// boundary) is never a seed: it is spelled out in pieces however often it
/// occurs. SentencePiece seeds from whole sentences, where a word is
/// followed by many others, before it splits them into words (its
/// word-count input has this flaw: google/sentencepiece#967). The copy
/// makes every word end in two ways, so each word becomes a seed; with
/// count 0 the copies add nothing to the EM's counts, and a piece ending
/// in `▁` is never used, since the pre-tokeniser puts `▁` only first.
fn seed_copies(words: &BTreeMap<String, u64>) -> Vec<(String, u32)> {
    let mut sentences = Vec::with_capacity(2 * words.len());
    for (word, &count) in words {
        sentences.push((word.clone(), u32::try_from(count).unwrap_or(u32::MAX)));
        sentences.push((format!("{word}▁"), 0));
    }
    sentences
}

/// `model` with the pieces after its `specials` (which keep their ids) in
/// descending score, pieces of equal score by their text: the trainer sorts
/// stably from an order that its hash maps decide.
fn ties_by_text(model: &Unigram, specials: usize, unk: &str) -> Result<Unigram> {
    let mut pieces: Vec<(String, f64)> = model.iter().cloned().collect();
    let unk = pieces.iter().position(|(piece, _)| piece == unk);
    let specials = specials.min(pieces.len());
    readded_in_text_order(&mut pieces[specials..]);
    pieces[specials..].sort_by(|(a, sa), (b, sb)| sb.total_cmp(sa).then_with(|| a.cmp(b)));
    Unigram::from(pieces, unk, model.byte_fallback())
}

/// What the trainer adds to the lowest score per character it re-adds.
const READDED_STEP: f64 = 1e-4;

/// The characters re-added at the lowest score plus 0, 1, 2, … steps (in
/// hash order) given those scores in the order of their text.
fn readded_in_text_order(pieces: &mut [(String, f64)]) {
    let Some(min) = pieces.iter().map(|(_, s)| *s).reduce(f64::min) else {
        return;
    };
    let at = |pieces: &[(String, f64)], k: usize| {
        let score = min + k as f64 * READDED_STEP;
        pieces.iter().position(|(piece, s)| {
            piece.chars().count() == 1 && (s - score).abs() < READDED_STEP * 1e-3
        })
    };
    let mut readded = Vec::new();
    while let Some(i) = at(pieces, readded.len()) {
        readded.push(i);
    }
    let mut texts: Vec<String> = readded.iter().map(|&i| pieces[i].0.clone()).collect();
    texts.sort();
    for (&i, text) in readded.iter().zip(texts) {
        pieces[i].0 = text;
    }
}
