//! Cross-entropy with hard and soft targets, shared by every objective.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// `mean_i( −Σ_j targets_ij · log_softmax(logits)_ij )`: cross-entropy with
/// soft targets (each row a distribution), averaged over rows.
///
/// # Shapes
/// `logits`, `targets`: `[rows, classes]` → `[1]`
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg()
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
