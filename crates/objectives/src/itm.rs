//! Image–text matching with in-batch hard negatives (ALBEF §3.2).
//!
//! For each text, a negative image is drawn from the softmax of its
//! contrastive similarities to the batch's images, positives zeroed; for each
//! image, a negative text likewise. The fusion encoder then sees `batch`
//! positive and `2·batch` negative pairs.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Int, Tensor};
use rand::RngExt;

use crate::entropy::cross_entropy;

/// The sampled negatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardNegatives {
    /// For each text `b`, the index of its negative image.
    pub image_for_text: Vec<usize>,
    /// For each image `b`, the index of its negative text.
    pub text_for_image: Vec<usize>,
}

/// Sampling weights: the row softmax of `sim` with `positives` set to zero
/// (the reference's `weights_i2t`/`weights_t2i`; unnormalised, as
/// `torch.multinomial` takes them).
///
/// # Shapes
/// `sim`, `positives`: `[batch, batch]`
pub fn negative_weights(sim: Tensor<2>, positives: Tensor<2, Bool>) -> Tensor<2> {
    softmax(sim, 1).mask_fill(positives, 0.0)
}

/// Draws one hard negative per text and per image.
///
/// `sim_i2t`/`sim_t2i` are the in-batch columns of the online similarities
/// (`[batch, batch]`, already divided by the temperature); `positives` marks
/// pairs that must not be drawn (the diagonal in pretraining, every pair of
/// the same image in retrieval). As in the reference, images are drawn first
/// (one per text, from `sim_t2i`), then texts. A row whose softmax weights
/// all underflowed to zero falls back to a uniform draw over its
/// non-positives.
///
/// `hardness` mixes the reference's distribution (the softmax, 1.0) with a
/// uniform draw over the non-positives (0.0): `h·softmax + (1−h)·uniform`,
/// each normalised. The reference always uses 1.0; a model trained from
/// scratch cannot yet tell a hard negative (one attribute of one object
/// changed) from its positive, and learns ITM from easier ones first.
///
/// Reads the weights back to the host: `2·batch²` floats.
///
/// # Panics
/// If a row has no non-positive at all (a batch drawn from one image): no
/// negative exists, and using a positive would mislabel the pair.
pub fn sample_hard_negatives(
    sim_i2t: Tensor<2>,
    sim_t2i: Tensor<2>,
    positives: Tensor<2, Bool>,
    hardness: f64,
    rng: &mut impl RngExt,
) -> HardNegatives {
    let [batch, _] = sim_i2t.dims();
    let host = |weights: Tensor<2>| -> Vec<f32> {
        weights
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 weights")
    };
    let allowed = host(positives.clone().bool_not().float());
    let weights_t2i = host(negative_weights(sim_t2i, positives.clone()));
    let weights_i2t = host(negative_weights(sim_i2t, positives));
    let draw = |weights: &[f32], rng: &mut dyn FnMut() -> f64| -> Vec<usize> {
        (0..batch)
            .map(|row| {
                let w = &weights[row * batch..(row + 1) * batch];
                let a = &allowed[row * batch..(row + 1) * batch];
                let mixed = mix(w, a, hardness);
                categorical(&mixed, rng).or_else(|| categorical(a, rng)).unwrap_or_else(|| {
                    panic!("row {row}: every pair of the batch of {batch} is a positive, no hard negative exists")
                })
            })
            .collect()
    };
    let mut uniform = || rng.random::<f64>();
    let image_for_text = draw(&weights_t2i, &mut uniform);
    let text_for_image = draw(&weights_i2t, &mut uniform);
    HardNegatives {
        image_for_text,
        text_for_image,
    }
}

/// `h·soft/Σsoft + (1−h)·allowed/Σallowed` (just `soft` when `h` is 1, so
/// the reference's draw is untouched).
fn mix(soft: &[f32], allowed: &[f32], hardness: f64) -> Vec<f32> {
    if hardness >= 1.0 {
        return soft.to_vec();
    }
    let total_soft: f32 = soft.iter().sum();
    let total_allowed: f32 = allowed.iter().sum();
    let h = hardness.max(0.0) as f32;
    soft.iter()
        .zip(allowed)
        .map(|(&s, &a)| {
            let s = if total_soft > 0.0 {
                s / total_soft
            } else {
                0.0
            };
            let a = if total_allowed > 0.0 {
                a / total_allowed
            } else {
                0.0
            };
            h * s + (1.0 - h) * a
        })
        .collect()
}

/// One draw from unnormalised non-negative weights; `None` if they sum to 0.
fn categorical(weights: &[f32], uniform: &mut dyn FnMut() -> f64) -> Option<usize> {
    let total: f64 = weights.iter().map(|&w| w as f64).sum();
    // Also rejects NaN totals.
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let target = uniform() * total;
    let mut acc = 0.0;
    for (i, &w) in weights.iter().enumerate() {
        acc += w as f64;
        if target < acc && w > 0.0 {
            return Some(i);
        }
    }
    weights.iter().rposition(|&w| w > 0.0)
}

/// Cross-entropy of the ITM head over `batch` positive pairs followed by
/// `2·batch` negative pairs (labels 1 then 0, as the reference stacks them).
///
/// # Shapes
/// `logits`: `[3·batch, 2]` → `[1]`
pub fn itm_loss(logits: Tensor<2>) -> Tensor<1> {
    let [rows, _] = logits.dims();
    assert_eq!(
        rows % 3,
        0,
        "ITM expects batch positives and 2·batch negatives"
    );
    let batch = rows / 3;
    let labels: Vec<i64> = (0..rows).map(|i| i64::from(i < batch)).collect();
    let labels = Tensor::<1, Int>::from_data(labels.as_slice(), &logits.device());
    cross_entropy(logits, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn a_hard_negative_is_never_a_positive() {
        let device = Device::flex();
        let mut rng = StdRng::seed_from_u64(7);
        for trial in 0..50 {
            let batch = 3 + trial % 7;
            let sim = Tensor::<2>::random([batch, batch], Distribution::Normal(0.0, 5.0), &device);
            // Pairs sharing an image id (retrieval) are positives too.
            let ids: Vec<i64> = (0..batch as i64).map(|i| i / 2).collect();
            let ids = Tensor::<1, Int>::from_data(ids.as_slice(), &device);
            let positives = crate::contrastive::same_id(ids.clone());
            let hardness = [0.0, 0.5, 1.0][trial % 3];
            let negatives =
                sample_hard_negatives(sim.clone(), sim.transpose(), positives, hardness, &mut rng);
            let ids = ids
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .unwrap();
            for (b, (&img, &txt)) in negatives
                .image_for_text
                .iter()
                .zip(&negatives.text_for_image)
                .enumerate()
            {
                assert_ne!(
                    ids[img], ids[b],
                    "trial {trial}: image {img} shares text {b}'s image"
                );
                assert_ne!(
                    ids[txt], ids[b],
                    "trial {trial}: text {txt} is a caption of image {b}"
                );
            }
        }
    }

    #[test]
    fn sampling_follows_the_softmax() {
        // With one dominant similarity the negative is almost always it.
        let device = Device::flex();
        let sim =
            Tensor::<2>::from_data([[9.0, 8.0, 0.0], [0.0, 9.0, 8.0], [8.0, 0.0, 9.0]], &device);
        let positives = Tensor::<2, Bool>::from_data(
            [
                [true, false, false],
                [false, true, false],
                [false, false, true],
            ],
            &device,
        );
        let mut rng = StdRng::seed_from_u64(1);
        let mut hits = 0;
        for _ in 0..200 {
            let n =
                sample_hard_negatives(sim.clone(), sim.clone(), positives.clone(), 1.0, &mut rng);
            hits += usize::from(n.image_for_text == vec![1, 2, 0]);
        }
        assert!(hits > 190, "{hits}");
        // Hardness 0: uniform over the two non-positives of each row.
        let mut firsts = 0;
        for _ in 0..400 {
            let n =
                sample_hard_negatives(sim.clone(), sim.clone(), positives.clone(), 0.0, &mut rng);
            firsts += usize::from(n.image_for_text[0] == 1);
        }
        assert!((150..250).contains(&firsts), "{firsts}");
    }
}
