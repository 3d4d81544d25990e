//! Batches of transformed images and tokenised captions, made ahead of the
//! model step.
//!
//! A background thread assembles the next batches while the model trains on
//! the current one; within a batch, images are decoded and augmented on
//! every core (rayon). Each sample's randomness (caption choice, crop,
//! RandAugment) comes from its own RNG seeded by `(seed, epoch, index)`, so
//! a batch is the same whatever the thread scheduling, and a resumed run
//! sees exactly the batches an uninterrupted one would.

use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use image::RgbImage;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use crate::DataError;
pub use crate::image_files::{check_images, load_rgb};
use crate::images::ImageBatch;
use crate::manifest::{BadEntries, CaptionedImage, Skipped};

/// One transformed sample: image, caption, image id.
type Sample = (RgbImage, String, usize);
use crate::tokenizer::{EncodedBatch, TextTokenizer};
use crate::transforms::{AugmentConfig, eval_transform, mirror_caption, train_transform_flip};

/// A training batch.
#[derive(Debug, Clone)]
pub struct ImageTextBatch {
    /// The transformed, normalised images.
    pub images: ImageBatch,
    /// The chosen caption of each sample.
    pub captions: Vec<String>,
    /// The tokenised captions.
    pub text: EncodedBatch,
    /// Each sample's image id (retrieval positives).
    pub image_ids: Vec<usize>,
}

impl ImageTextBatch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.captions.len()
    }

    /// Whether the batch is empty (every sample skipped).
    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }

    /// The batch split into `parts` consecutive shards whose sizes differ
    /// by at most one (the first ones larger), each padded to its own
    /// longest text: what each data-parallel worker computes on.
    ///
    /// # Panics
    /// If `parts` is 0 or larger than the batch.
    pub fn shards(&self, parts: usize) -> Vec<ImageTextBatch> {
        let n = self.len();
        assert!(
            parts >= 1 && parts <= n,
            "cannot split a batch of {n} into {parts} shards"
        );
        let mut start = 0;
        (0..parts)
            .map(|part| {
                let end = start + n / parts + usize::from(part < n % parts);
                let shard = ImageTextBatch {
                    images: self.images.rows(start..end),
                    captions: self.captions[start..end].to_vec(),
                    text: self.text.rows(start..end),
                    image_ids: self.image_ids[start..end].to_vec(),
                };
                start = end;
                shard
            })
            .collect()
    }

    /// The samples reordered by caption length, shortest first (ties keep
    /// their order), padded to the longest caption: consecutive rows then
    /// pad together with little waste ([`EncodedBatch::rows`]).
    pub fn sorted_by_text_length(&self) -> ImageTextBatch {
        let lengths = self.text.lengths();
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&r| lengths[r]);
        ImageTextBatch {
            images: self.images.select(&order),
            captions: order.iter().map(|&r| self.captions[r].clone()).collect(),
            text: self.text.select(&order),
            image_ids: order.iter().map(|&r| self.image_ids[r]).collect(),
        }
    }
}

/// Settings of a [`Loader`].
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Samples per batch (the last partial batch of an epoch is dropped).
    pub batch_size: usize,
    /// Image side after the transform.
    pub image_size: u32,
    /// Training augmentation; `None` for the evaluation resize.
    pub augment: Option<AugmentConfig>,
    /// Tokens per caption, `[CLS]` included.
    pub max_tokens: usize,
    /// Seed of the order and of every augmentation.
    pub seed: u64,
    /// Batches prepared ahead of the model.
    pub prefetch: usize,
    /// What to do with an undecodable image.
    pub bad: BadEntries,
    /// Fraction of each batch's slots after the first given to the unused
    /// samples whose captions share the most words with the first sample's
    /// (Jaccard over word sets; identical word sets are skipped as likely
    /// duplicates): contrastive negatives that differ in a detail. 0, the
    /// reference, is a plain shuffle.
    pub similar_fraction: f64,
}

/// Shuffled, augmented, tokenised batches of a manifest.
#[derive(Debug, Clone)]
pub struct Loader {
    items: Arc<Vec<CaptionedImage>>,
    /// Each item's caption words as a bit set (empty without grouping).
    words: Arc<Vec<Vec<u64>>>,
    tokenizer: Arc<TextTokenizer>,
    config: LoaderConfig,
    skipped: Arc<Mutex<Skipped>>,
}

impl Loader {
    /// A loader over `items`; an error if they cannot fill one batch.
    pub fn new(
        items: Vec<CaptionedImage>,
        tokenizer: Arc<TextTokenizer>,
        config: LoaderConfig,
    ) -> Result<Self, DataError> {
        let (items, unreadable) = check_images(items, config.bad)?;
        if items.len() < config.batch_size || config.batch_size == 0 {
            return Err(DataError::TooFewSamples {
                samples: items.len(),
                batch_size: config.batch_size,
                source_file: items.first().map(|i| i.location.file.clone()),
            });
        }
        let words = if config.similar_fraction > 0.0 {
            word_sets(&items)
        } else {
            Vec::new()
        };
        Ok(Self {
            items: Arc::new(items),
            words: Arc::new(words),
            tokenizer,
            config,
            skipped: Arc::new(Mutex::new(unreadable)),
        })
    }

    /// Full batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.items.len() / self.config.batch_size
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Images skipped so far as undecodable (under `--skip-bad`).
    pub fn skipped(&self) -> Skipped {
        self.skipped.lock().expect("not poisoned").clone()
    }

    /// The sample order of an epoch.
    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix_seed(
            self.config.seed,
            epoch as u64,
            u64::MAX,
        )));
        let b = self.config.batch_size;
        let similar = (self.config.similar_fraction.clamp(0.0, 1.0) * (b - 1) as f64).round();
        match similar as usize {
            0 => order,
            similar => group_similar(&order, &self.words, b, similar),
        }
    }

    fn assemble(&self, epoch: usize, indices: &[usize]) -> Result<ImageTextBatch, DataError> {
        let size = self.config.image_size;
        let samples: Vec<Result<Option<Sample>, DataError>> = indices
            .par_iter()
            .map(|&index| {
                let item = &self.items[index];
                let mut rng =
                    StdRng::seed_from_u64(mix_seed(self.config.seed, epoch as u64, index as u64));
                let caption = item.captions[rng.random_range(0..item.captions.len())].clone();
                let image = match load_rgb(&item.image) {
                    Ok(image) => image,
                    Err(e) => {
                        return match self.config.bad {
                            BadEntries::Fail => Err(DataError::BadEntry {
                                location: item.location.clone(),
                                source: Box::new(e),
                            }),
                            BadEntries::Skip => {
                                self.skipped
                                    .lock()
                                    .expect("not poisoned")
                                    .push(&item.location, &e);
                                Ok(None)
                            }
                        };
                    }
                };
                let (image, caption) = match &self.config.augment {
                    Some(augment) => {
                        let (image, flipped) =
                            train_transform_flip(&image, size, augment, &mut rng);
                        if flipped && !augment.mirror_words.is_empty() {
                            (image, mirror_caption(&caption, &augment.mirror_words))
                        } else {
                            (image, caption)
                        }
                    }
                    None => (eval_transform(&image, size), caption),
                };
                Ok(Some((image, caption, item.image_id)))
            })
            .collect();
        let mut images = ImageBatch::new(size as usize);
        let mut captions = Vec::with_capacity(indices.len());
        let mut image_ids = Vec::with_capacity(indices.len());
        for sample in samples {
            if let Some((image, caption, id)) = sample? {
                images.push(&image);
                captions.push(caption);
                image_ids.push(id);
            }
        }
        // Contrastive and matching losses compare each sample with the
        // others of its batch.
        if captions.len() < 2 {
            return Err(DataError::BatchLost {
                file: self.items[indices[0]].location.file.clone(),
                batch_size: indices.len(),
                kept: captions.len(),
                skipped: self.skipped().count(),
            });
        }
        let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
        let text = self
            .tokenizer
            .encode_batch(&refs, Some(self.config.max_tokens))?;
        Ok(ImageTextBatch {
            images,
            captions,
            text,
            image_ids,
        })
    }

    /// The batches of `epoch` from `start_step` on, prepared by a background
    /// thread `prefetch` batches ahead.
    pub fn epoch(&self, epoch: usize, start_step: usize) -> Prefetched {
        let (sender, receiver) = sync_channel(self.config.prefetch.max(1));
        let loader = self.clone();
        std::thread::spawn(move || {
            let order = loader.order(epoch);
            let b = loader.config.batch_size;
            for step in start_step..loader.steps_per_epoch() {
                let batch = loader.assemble(epoch, &order[step * b..(step + 1) * b]);
                let failed = batch.is_err();
                // The receiver hung up: the epoch was abandoned.
                if sender.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        Prefetched { receiver }
    }
}

/// Batches arriving from a loader's background thread.
pub struct Prefetched {
    receiver: Receiver<Result<ImageTextBatch, DataError>>,
}

impl Iterator for Prefetched {
    type Item = Result<ImageTextBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.recv().ok()
    }
}

/// Each item's words (lower-cased alphanumeric runs of all its captions) as
/// a bit set over the manifest's vocabulary.
fn word_sets(items: &[CaptionedImage]) -> Vec<Vec<u64>> {
    let mut vocabulary = std::collections::HashMap::new();
    let ids: Vec<Vec<usize>> = items
        .iter()
        .map(|item| {
            item.captions
                .iter()
                .flat_map(|c| c.split(|ch: char| !ch.is_alphanumeric()))
                .filter(|w| !w.is_empty())
                .map(|w| {
                    let next = vocabulary.len();
                    *vocabulary.entry(w.to_lowercase()).or_insert(next)
                })
                .collect()
        })
        .collect();
    let words = vocabulary.len().div_ceil(64);
    ids.into_iter()
        .map(|ids| {
            let mut set = vec![0u64; words];
            for i in ids {
                set[i / 64] |= 1 << (i % 64);
            }
            set
        })
        .collect()
}

/// Jaccard similarity of two word sets.
fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut both, mut either) = (0u32, 0u32);
    for (x, y) in a.iter().zip(b) {
        both += (x & y).count_ones();
        either += (x | y).count_ones();
    }
    if either == 0 {
        0.0
    } else {
        f64::from(both) / f64::from(either)
    }
}

/// Regroups a shuffled `order` into batches of `batch`: each opens with the
/// next unused sample of `order`, takes the `similar` unused samples most
/// like it (by [`jaccard`] of `words`; identical sets skipped, ties in
/// `order`'s order), and fills the rest from `order`. Every sample appears
/// once.
fn group_similar(order: &[usize], words: &[Vec<u64>], batch: usize, similar: usize) -> Vec<usize> {
    let mut used = vec![false; order.len()];
    let mut grouped = Vec::with_capacity(order.len());
    let mut next = 0;
    let mut take_next = |used: &mut Vec<bool>, grouped: &mut Vec<usize>| {
        while next < order.len() && used[order[next]] {
            next += 1;
        }
        if let Some(&i) = order.get(next) {
            used[i] = true;
            grouped.push(i);
        }
    };
    while grouped.len() < order.len() {
        let start = grouped.len();
        take_next(&mut used, &mut grouped);
        let anchor = grouped[start];
        let mut candidates: Vec<(f64, usize)> = order
            .iter()
            .filter(|&&i| !used[i])
            .map(|&i| (jaccard(&words[anchor], &words[i]), i))
            .filter(|&(s, _)| s < 1.0)
            .collect();
        // Stable: equal similarities keep the shuffled order.
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &(_, i) in candidates.iter().take(similar) {
            used[i] = true;
            grouped.push(i);
        }
        while grouped.len() < (start + batch).min(order.len()) {
            take_next(&mut used, &mut grouped);
        }
    }
    grouped
}

/// A well-mixed seed for `(seed, a, b)`: the splitmix64 finaliser over the
/// three inputs combined, so that nearby inputs give unrelated streams.
pub fn mix_seed(seed: u64, a: u64, b: u64) -> u64 {
    let mut x =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Location;

    #[test]
    fn similar_batches_group_shared_words_and_keep_every_sample() {
        let captions = [
            "a red circle",
            "a blue square",
            "a red circle",
            "a red star",
            "a blue star",
            "a green hexagon",
            "a red circle top left",
            "a blue square right",
        ];
        let items: Vec<CaptionedImage> = captions
            .iter()
            .enumerate()
            .map(|(i, c)| CaptionedImage {
                image: format!("{i}.png").into(),
                captions: vec![c.to_string()],
                image_id: i,
                location: Location {
                    file: "manifest.json".into(),
                    line: i + 1,
                },
            })
            .collect();
        let words = word_sets(&items);
        let order: Vec<usize> = (0..8).collect();
        let grouped = group_similar(&order, &words, 4, 2);
        let mut sorted = grouped.clone();
        sorted.sort();
        assert_eq!(sorted, order, "every sample once");
        // "a red circle" opens the first batch; its twin (identical words)
        // is skipped; "a red circle top left" (3/5) and "a red star" (2/4)
        // are the most alike; the last slot comes from the shuffle.
        assert_eq!(grouped[..4], [0, 6, 3, 1]);
        assert_eq!(grouped[4], 2, "the next unused sample opens batch two");
        assert!((jaccard(&words[0], &words[6]) - 0.6).abs() < 1e-12);
        assert_eq!(group_similar(&order, &words, 4, 0), order);
    }

    #[test]
    fn shards_cover_the_batch_in_order_and_trim_padding() {
        // Five samples of 1×1 images; texts of 3, 1, 2, 2 and 4 tokens.
        let lengths = [3usize, 1, 2, 2, 4];
        let len = 4;
        let mut ids = Vec::new();
        let mut attention_mask = Vec::new();
        for (r, &l) in lengths.iter().enumerate() {
            for c in 0..len {
                ids.push(if c < l { (10 * r + c) as i64 } else { 0 });
                attention_mask.push(i64::from(c < l));
            }
        }
        let batch = ImageTextBatch {
            images: ImageBatch::from_values((0..15).map(|v| v as f32).collect(), 1),
            captions: (0..5).map(|i| format!("caption {i}")).collect(),
            text: EncodedBatch {
                ids,
                attention_mask,
                batch: 5,
                len,
            },
            image_ids: vec![7, 8, 9, 10, 11],
        };
        let shards = batch.shards(2);
        assert_eq!(
            shards.iter().map(ImageTextBatch::len).collect::<Vec<_>>(),
            [3, 2]
        );
        assert_eq!(
            shards[0].images.values(),
            (0..9).map(|v| v as f32).collect::<Vec<_>>()
        );
        assert_eq!(shards[1].image_ids, [10, 11]);
        assert_eq!(shards[1].captions, ["caption 3", "caption 4"]);
        // The first shard's longest text has 3 tokens, the second's 4.
        assert_eq!((shards[0].text.len, shards[1].text.len), (3, 4));
        assert_eq!(shards[0].text.ids, [0, 1, 2, 10, 0, 0, 20, 21, 0]);
        assert_eq!(shards[0].text.attention_mask, [1, 1, 1, 1, 0, 0, 1, 1, 0]);
        assert_eq!(shards[1].text.ids, [30, 31, 0, 0, 40, 41, 42, 43]);
        // One shard is the batch itself.
        let whole = batch.shards(1);
        assert_eq!(whole[0].text, batch.text);
        assert_eq!(whole[0].images, batch.images);

        // Sorted by length: 1, 2, 2 (in batch order), 3, 4 tokens.
        let sorted = batch.sorted_by_text_length();
        assert_eq!(sorted.image_ids, [8, 9, 10, 7, 11]);
        assert_eq!(sorted.captions[0], "caption 1");
        assert_eq!(sorted.images.values()[..6], [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(sorted.text.len, 4);
        assert_eq!(sorted.text.lengths(), [1, 2, 2, 3, 4]);
        assert_eq!(sorted.text.ids[..8], [10, 0, 0, 0, 20, 21, 0, 0]);
        // Its first three rows pad to 2 tokens.
        assert_eq!(sorted.text.rows(0..3).ids, [10, 0, 20, 21, 30, 31]);
    }

    #[test]
    fn an_image_is_decoded_by_its_content_not_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let image = RgbImage::from_fn(4, 4, |x, _| image::Rgb([60 * x as u8, 0, 200]));
        let jpeg = dir.path().join("really_a.jpg");
        image.save(&jpeg).unwrap();
        let misnamed = dir.path().join("named.png");
        std::fs::rename(&jpeg, &misnamed).unwrap();
        assert_eq!(load_rgb(&misnamed).unwrap().dimensions(), (4, 4));
        std::fs::write(&misnamed, b"not an image").unwrap();
        let err = load_rgb(&misnamed).unwrap_err().to_string();
        assert!(err.contains("named.png"), "{err}");
    }

    #[test]
    fn a_flipped_image_gets_the_mirrored_caption() {
        // A 4×4 image, red on the left half, blue on the right.
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let image = RgbImage::from_fn(4, 4, |x, _| {
            image::Rgb(if x < 2 { [255, 0, 0] } else { [0, 0, 255] })
        });
        let path = dir.join("0.png");
        image.save(&path).unwrap();
        let caption = "a red square on the left";
        let item = |i: usize| CaptionedImage {
            image: path.clone(),
            captions: vec![caption.to_owned()],
            image_id: i,
            location: Location {
                file: "manifest.json".into(),
                line: i + 1,
            },
        };
        let tokenizer = TextTokenizer::train_wordpiece(
            [caption, "right"].into_iter(),
            50,
            crate::tokenizer::Framing::Start,
        )
        .unwrap();
        let loader = Loader::new(
            (0..16).map(item).collect(),
            Arc::new(tokenizer),
            LoaderConfig {
                batch_size: 16,
                image_size: 4,
                augment: Some(AugmentConfig {
                    crop_scale: (1.0, 1.0),
                    horizontal_flip: true,
                    mirror_words: vec![["left".to_owned(), "right".to_owned()]],
                    randaugment_ops: 0,
                    randaugment_magnitude: 0.0,
                }),
                max_tokens: 16,
                seed: 0,
                prefetch: 1,
                bad: BadEntries::Fail,
                similar_fraction: 0.0,
            },
        )
        .unwrap();
        let batch = loader.epoch(0, 0).next().unwrap().unwrap();
        let mut flips = 0;
        for (i, caption) in batch.captions.iter().enumerate() {
            // Red channel of the top-left pixel: high unless flipped.
            let flipped = batch.images.image(i)[0] < 0.0;
            flips += usize::from(flipped);
            let want = if flipped {
                "a red square on the right"
            } else {
                "a red square on the left"
            };
            assert_eq!(caption, want, "sample {i}");
        }
        assert!((1..16).contains(&flips), "{flips} of 16 flipped");
    }
}
