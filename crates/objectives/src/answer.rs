//! VQA's answer loss (salesforce/ALBEF `models/model_vqa.py`, `forward` in
//! training; `models/xbert.py`, `BertLMHeadModel` with `reduction='none'`):
//! each answer `[CLS] a… [SEP]` is scored by its decoder's next-token
//! logits, summed over its tokens after `[CLS]`, padding left out; with
//! momentum distillation each answer's loss is `(1−α)·NLL + α·H(softmax of
//! the momentum decoder's logits, logits)` over the same positions; the
//! batch loss is `Σ weightᵢ·lossᵢ / questions`. Tested against the
//! formula computed element by element in f64.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Int, Tensor};

/// The momentum decoder's logits and the weight α of its soft labels.
#[derive(Debug, Clone)]
pub struct AnswerDistillation {
    /// `[answers, len, vocab]`, the same answers teacher-forced through
    /// the momentum decoder.
    pub momentum_logits: Tensor<3>,
    /// Weight of the soft labels.
    pub alpha: f64,
}

/// Each answer's loss, `[answers]`: the summed NLL of its tokens after the
/// first (position `t` predicted from `t − 1`), padding excluded, mixed with
/// the distillation term when `distillation` is given.
///
/// # Shapes
/// `logits`: `[answers, len, vocab]`, `ids`, `padding`: `[answers, len]`
/// (`true` = padding) → `[answers]`
pub fn answer_losses(
    logits: Tensor<3>,
    ids: Tensor<2, Int>,
    padding: Tensor<2, Bool>,
    distillation: Option<AnswerDistillation>,
) -> Tensor<1> {
    let [answers, len, _] = logits.dims();
    let log_probs = log_softmax(logits.slice([0..answers, 0..len - 1]), 2);
    let targets = ids
        .slice([0..answers, 1..len])
        .reshape([answers, len - 1, 1]);
    let kept = padding
        .slice([0..answers, 1..len])
        .bool_not()
        .float()
        .reshape([answers, len - 1]);
    let sum = |per_token: Tensor<2>| (per_token * kept.clone()).sum_dim(1).reshape([answers]);
    let nll = log_probs
        .clone()
        .gather(2, targets)
        .reshape([answers, len - 1])
        .neg();
    let hard = sum(nll);
    let Some(AnswerDistillation {
        momentum_logits,
        alpha,
    }) = distillation
    else {
        return hard;
    };
    let soft = softmax(momentum_logits.slice([0..answers, 0..len - 1]), 2);
    let cross = (log_probs * soft)
        .sum_dim(2)
        .reshape([answers, len - 1])
        .neg();
    hard * (1.0 - alpha) + sum(cross) * alpha
}

/// The batch loss: `Σ weightᵢ·lossᵢ / questions` (each question's answers
/// weighted by the share of annotators who gave them).
///
/// # Shapes
/// `losses`, `weights`: `[answers]` → `[1]`
pub fn weighted_answer_loss(losses: Tensor<1>, weights: Tensor<1>, questions: usize) -> Tensor<1> {
    (losses * weights).sum() / questions.max(1) as f64
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, TensorData};

    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        t.into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap()
    }

    /// The loss computed element by element in f64.
    fn by_hand(
        logits: &[f64],
        momentum: &[f64],
        ids: &[[i64; 4]],
        kept: &[[bool; 4]],
        vocab: usize,
        alpha: f64,
    ) -> Vec<f64> {
        let log_softmax = |row: &[f64]| {
            let max = row.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = row.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
            row.iter().map(|x| x - z).collect::<Vec<f64>>()
        };
        let len = 4;
        (0..ids.len())
            .map(|a| {
                let mut loss = 0.0;
                for t in 1..len {
                    if !kept[a][t] {
                        continue;
                    }
                    let at =
                        |v: &[f64]| v[(a * len + t - 1) * vocab..(a * len + t) * vocab].to_vec();
                    let lp = log_softmax(&at(logits));
                    let soft: Vec<f64> =
                        log_softmax(&at(momentum)).iter().map(|x| x.exp()).collect();
                    let nll = -lp[ids[a][t] as usize];
                    let cross: f64 = -soft.iter().zip(&lp).map(|(s, l)| s * l).sum::<f64>();
                    loss += (1.0 - alpha) * nll + alpha * cross;
                }
                loss
            })
            .collect()
    }

    #[test]
    fn answer_losses_are_their_formula() {
        let device = Device::default();
        let (answers, len, vocab) = (3, 4, 6);
        let logits = Tensor::<3>::random(
            [answers, len, vocab],
            Distribution::Normal(0.0, 2.0),
            &device,
        );
        let momentum = Tensor::<3>::random(
            [answers, len, vocab],
            Distribution::Normal(0.0, 2.0),
            &device,
        );
        let ids = [[2i64, 4, 5, 3], [2, 1, 3, 0], [2, 3, 0, 0]];
        let kept = [
            [true; 4],
            [true, true, true, false],
            [true, true, false, false],
        ];
        let ids_t =
            Tensor::<2, Int>::from_data(TensorData::new(ids.concat(), [answers, len]), &device);
        let padding = Tensor::<2, Bool>::from_data(
            TensorData::new(
                kept.concat().iter().map(|k| !k).collect::<Vec<_>>(),
                [answers, len],
            ),
            &device,
        );
        let (l, m) = (values(logits.clone()), values(momentum.clone()));
        for alpha in [0.0, 0.4] {
            let distillation = (alpha > 0.0).then(|| AnswerDistillation {
                momentum_logits: momentum.clone(),
                alpha,
            });
            let ours = values(answer_losses(
                logits.clone(),
                ids_t.clone(),
                padding.clone(),
                distillation,
            ));
            let expected = by_hand(&l, &m, &ids, &kept, vocab, alpha);
            for (o, e) in ours.iter().zip(&expected) {
                assert!(
                    (o - e).abs() < 1e-4,
                    "α {alpha}: {ours:?} against {expected:?}"
                );
            }
        }
        let weights =
            Tensor::<1>::from_data(TensorData::new(vec![0.75f32, 0.25, 1.0], [3]), &device);
        let losses = Tensor::<1>::from_data(TensorData::new(vec![2.0f32, 4.0, 1.0], [3]), &device);
        let total = values(weighted_answer_loss(losses, weights, 2))[0];
        assert!((total - (1.5 + 1.0 + 1.0) / 2.0).abs() < 1e-6, "{total}");
    }
}
