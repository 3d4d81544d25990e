//! AltCLIP's teacher learning (stage 1): the student's projected `[CLS]`
//! regresses the teacher's text embedding.

use burn::tensor::Tensor;

/// Mean squared error over every element (`nn.MSELoss()`).
///
/// # Shapes
/// `student`, `teacher`: `[batch, dim]` → `[1]`
pub fn mse_loss(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    (student - teacher).powi_scalar(2).mean()
}
