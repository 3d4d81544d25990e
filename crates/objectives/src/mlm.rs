//! Masked language modelling (BERT's recipe, as ALBEF applies it).

use burn::tensor::{Int, Tensor};
use rand::RngExt;

use crate::entropy::{cross_entropy, soft_cross_entropy};

/// What to mask and with what.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskingConfig {
    /// Fraction of tokens to predict (0.15).
    pub probability: f64,
    /// Id of `[MASK]`.
    pub mask_token_id: i64,
    /// Vocabulary size (random replacements are drawn from `0..vocab_size`).
    pub vocab_size: usize,
    /// Ids never chosen (`[PAD]` and `[CLS]` in ALBEF, whose tokenizer adds
    /// no `[SEP]`).
    pub never_mask: Vec<i64>,
}

/// A masked batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedTokens {
    /// The model input: `[batch × len]` ids with the chosen tokens replaced.
    pub input_ids: Vec<i64>,
    /// Flat indices (`row · len + col`) of the chosen tokens, ascending.
    pub positions: Vec<usize>,
    /// The original id at each chosen position.
    pub targets: Vec<i64>,
}

/// Chooses each token with `probability` (never those in `never_mask`), then
/// replaces a chosen token by `[MASK]` with probability 0.8, by a uniformly
/// random id with 0.1, and keeps it with 0.1.
pub fn mask_tokens(ids: &[i64], config: &MaskingConfig, rng: &mut impl RngExt) -> MaskedTokens {
    let mut input_ids = ids.to_vec();
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        if config.never_mask.contains(&id) || rng.random::<f64>() >= config.probability {
            continue;
        }
        positions.push(i);
        targets.push(id);
        let action = rng.random::<f64>();
        if action < 0.8 {
            input_ids[i] = config.mask_token_id;
        } else if action < 0.9 {
            input_ids[i] = rng.random_range(0..config.vocab_size as i64);
        }
    }
    MaskedTokens {
        input_ids,
        positions,
        targets,
    }
}

/// ALBEF's MLM loss (paper eq. 7) at the masked positions only:
/// `(1−α)·CE(logits, targets) + α·CE(logits, soft_targets)`, each averaged
/// over the masked tokens. `soft_targets` are the momentum model's
/// probabilities; without them this is plain cross-entropy.
///
/// Computing logits only where tokens are masked gives the reference's loss
/// (which ignores every other position) for a fraction of the decoder cost.
///
/// # Shapes
/// `logits`, `soft_targets`: `[masked, vocab]`; `targets`: `[masked]` → `[1]`
pub fn mlm_loss(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    soft_targets: Option<Tensor<2>>,
    alpha: f64,
) -> Tensor<1> {
    let hard = cross_entropy(logits.clone(), targets);
    match soft_targets {
        Some(soft) if alpha > 0.0 => {
            hard * (1.0 - alpha) + soft_cross_entropy(logits, soft) * alpha
        }
        _ => hard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn config() -> MaskingConfig {
        MaskingConfig {
            probability: 0.15,
            mask_token_id: 3,
            vocab_size: 100,
            never_mask: vec![0, 1],
        }
    }

    #[test]
    fn masking_rates_follow_the_recipe() {
        let mut rng = StdRng::seed_from_u64(3);
        // Rows: [CLS]=1, 30 words, 9 pads.
        let row: Vec<i64> = std::iter::once(1)
            .chain(10..40)
            .chain(std::iter::repeat_n(0, 9))
            .collect();
        let ids: Vec<i64> = row.iter().cycle().take(row.len() * 2000).copied().collect();
        let masked = mask_tokens(&ids, &config(), &mut rng);
        let words = 30.0 * 2000.0;
        let chosen = masked.positions.len() as f64;
        assert!((chosen / words - 0.15).abs() < 0.005, "{}", chosen / words);
        let mut as_mask = 0.0;
        let mut kept = 0.0;
        for (&p, &t) in masked.positions.iter().zip(&masked.targets) {
            assert!(t != 0 && t != 1, "padding or [CLS] chosen at {p}");
            assert_eq!(ids[p], t);
            match masked.input_ids[p] {
                3 => as_mask += 1.0,
                id if id == t => kept += 1.0,
                _ => {}
            }
        }
        assert!(
            (as_mask / chosen - 0.8).abs() < 0.01,
            "{}",
            as_mask / chosen
        );
        // "kept" includes random draws that hit the original id (1 %).
        assert!((kept / chosen - 0.101).abs() < 0.01, "{}", kept / chosen);
        // Unchosen tokens are untouched.
        let changed = ids
            .iter()
            .zip(&masked.input_ids)
            .filter(|(a, b)| a != b)
            .count();
        assert!(changed <= masked.positions.len());
    }
}
