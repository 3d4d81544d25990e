//! Cross-entropy with hard and soft targets, shared by every objective.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};

/// `mean_i( −Σ_j targets_ij · log_softmax(logits)_ij )`: cross-entropy with
/// soft targets (each row a distribution), averaged over rows.
///
/// # Shapes
/// `logits`, `targets`: `[rows, classes]` → `[1]`
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg()
}

/// ALBEF's classifier distillation (`models/model_ve.py`,
/// `models/model_nlvr.py`): `(1−α)·CE(logits, labels) + α·H(softmax(momentum
/// logits), logits)`, the momentum model's softmax a constant target. α = 0
/// is the plain cross-entropy.
///
/// # Shapes
/// `logits`, `momentum_logits`: `[rows, classes]`, `labels`: `[rows]` → `[1]`
pub fn classifier_distillation(
    logits: Tensor<2>,
    momentum_logits: Tensor<2>,
    labels: Tensor<1, Int>,
    alpha: f64,
) -> Tensor<1> {
    let hard = cross_entropy(logits.clone(), labels);
    if alpha == 0.0 {
        return hard;
    }
    let soft = soft_cross_entropy(logits, softmax(momentum_logits, 1));
    hard * (1.0 - alpha) + soft * alpha
}

/// Cross-entropy with class indices, averaged over rows (PyTorch's
/// `F.cross_entropy`).
///
/// # Shapes
/// `logits`: `[rows, classes]`, `labels`: `[rows]` → `[1]`
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [rows, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, labels.reshape([rows, 1]))
        .mean()
        .neg()
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    #[test]
    fn classifier_distillation_is_its_formula() {
        // (1−α)·CE + α·(−Σ softmax(m)·log softmax(p)), row means, in f64.
        let p = [[1.0f64, -0.5, 2.0], [0.3, 0.2, -1.0]];
        let m = [[0.5f64, 0.0, 1.5], [-2.0, 1.0, 0.0]];
        let y = [2usize, 0];
        let alpha = 0.4;
        let log_softmax = |r: &[f64; 3]| {
            let z = r.iter().map(|x| x.exp()).sum::<f64>().ln();
            r.map(|x| x - z)
        };
        let mut expected = 0.0;
        for i in 0..2 {
            let lp = log_softmax(&p[i]);
            let q = log_softmax(&m[i]).map(f64::exp);
            let soft: f64 = -(0..3).map(|j| q[j] * lp[j]).sum::<f64>();
            expected += ((1.0 - alpha) * -lp[y[i]] + alpha * soft) / 2.0;
        }
        let device = Device::flex();
        let t = |v: [[f64; 3]; 2]| {
            let flat: Vec<f32> = v.iter().flatten().map(|&x| x as f32).collect();
            Tensor::<2>::from_data(TensorData::new(flat, [2, 3]), &device)
        };
        let labels = Tensor::<1, Int>::from_data([2i64, 0].as_slice(), &device);
        let got = classifier_distillation(t(p), t(m), labels.clone(), alpha).into_scalar::<f32>();
        assert!((got as f64 - expected).abs() < 1e-5, "{got} vs {expected}");
        let hard = classifier_distillation(t(p), t(m), labels.clone(), 0.0).into_scalar::<f32>();
        let ce = cross_entropy(t(p), labels).into_scalar::<f32>();
        assert_eq!(hard, ce);
    }
}
