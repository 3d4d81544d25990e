//! Image–text contrastive learning (ALBEF's ITC, CLIP's loss).

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::entropy::soft_cross_entropy;

/// Ground-truth targets: row `i` is uniform over the columns whose id equals
/// `ids[i]` (ALBEF retrieval: every caption of the same image, in the batch
/// or the queue, is a positive). With distinct ids this is the identity
/// padded with zero columns, as in pretraining.
///
/// # Shapes
/// `ids`: `[batch]`, `ids_all`: `[columns]` → `[batch, columns]`
pub fn id_targets(ids: Tensor<1, Int>, ids_all: Tensor<1, Int>) -> Tensor<2> {
    let [batch] = ids.dims();
    let [columns] = ids_all.dims();
    let positives = ids
        .reshape([batch, 1])
        .expand([batch, columns])
        .equal(ids_all.reshape([1, columns]).expand([batch, columns]))
        .float();
    let counts = positives.clone().sum_dim(1);
    positives / counts
}

/// `[batch, columns]` targets with ones on the diagonal of the first `batch`
/// columns (the in-batch positives of pretraining).
pub fn diagonal_targets(batch: usize, columns: usize, device: &Device) -> Tensor<2> {
    let eye = Tensor::<2>::eye(batch, device);
    if columns == batch {
        return eye;
    }
    Tensor::cat(
        vec![eye, Tensor::zeros([batch, columns - batch], device)],
        1,
    )
}

/// Momentum distillation (ALBEF eq. 6): `α·softmax(sim_m) + (1−α)·ground_truth`.
pub fn distilled_targets(sim_m: Tensor<2>, ground_truth: Tensor<2>, alpha: f64) -> Tensor<2> {
    softmax(sim_m, 1) * alpha + ground_truth * (1.0 - alpha)
}

/// Queues of momentum features (ALBEF keeps 65,536 of each), stored
/// feature-major as in the reference: `[dim, size]`, one column per sample.
#[derive(Debug, Clone)]
pub struct FeatureQueue {
    /// Image features `[dim, size]`, unit-norm columns.
    pub image: Tensor<2>,
    /// Text features `[dim, size]`, unit-norm columns.
    pub text: Tensor<2>,
    /// Image ids of the queued features `[size]` (retrieval fine-tuning);
    /// −100 for empty slots as in the reference.
    pub ids: Option<Tensor<1, Int>>,
    /// Next column to write.
    pub ptr: usize,
}

impl FeatureQueue {
    /// Random unit-norm columns, as the reference initialises its buffers,
    /// drawn from `seed` on the host so that no other user of the device's
    /// shared generator can change them. `with_ids` adds the id queue of
    /// retrieval fine-tuning.
    pub fn new(dim: usize, size: usize, with_ids: bool, seed: u64, device: &Device) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut unit_columns = || {
            let t = Tensor::<2>::from_data(
                TensorData::new(standard_normal(&mut rng, dim * size), [dim, size]),
                device,
            );
            t.clone() / t.powi_scalar(2).sum_dim(0).sqrt()
        };
        Self {
            image: unit_columns(),
            text: unit_columns(),
            ids: with_ids.then(|| Tensor::full([size], -100, device)),
            ptr: 0,
        }
    }

    /// Number of queued samples.
    pub fn size(&self) -> usize {
        self.image.dims()[1]
    }

    /// The in-batch momentum features followed by the queue:
    /// `[dim, batch + size]` for images and for texts.
    pub fn with_batch(
        &self,
        image_feat_m: Tensor<2>,
        text_feat_m: Tensor<2>,
    ) -> (Tensor<2>, Tensor<2>) {
        (
            Tensor::cat(vec![image_feat_m.transpose(), self.image.clone()], 1),
            Tensor::cat(vec![text_feat_m.transpose(), self.text.clone()], 1),
        )
    }

    /// The in-batch ids followed by the queued ids, `[batch + size]`.
    ///
    /// # Panics
    /// If the queue keeps no ids.
    pub fn ids_with_batch(&self, ids: Tensor<1, Int>) -> Tensor<1, Int> {
        let queued = self.ids.clone().expect("this queue keeps no ids");
        Tensor::cat(vec![ids, queued], 0)
    }

    /// Writes a batch of momentum features at the pointer and advances it,
    /// wrapping around the end (the reference requires `size % batch == 0`;
    /// here any batch size works).
    ///
    /// # Panics
    /// If the batch is larger than the queue, or ids are given to a queue
    /// without ids (or the reverse).
    pub fn enqueue(
        &mut self,
        image_feat_m: Tensor<2>,
        text_feat_m: Tensor<2>,
        ids: Option<Tensor<1, Int>>,
    ) {
        let [batch, _] = image_feat_m.dims();
        let size = self.size();
        assert!(
            batch <= size,
            "a batch of {batch} does not fit a queue of {size}"
        );
        assert_eq!(
            ids.is_some(),
            self.ids.is_some(),
            "ids must be given exactly when the queue keeps them"
        );
        let first = batch.min(size - self.ptr);
        let write = |queue: Tensor<2>, feats: Tensor<2>, ptr: usize| -> Tensor<2> {
            let dim = queue.dims()[0];
            let feats = feats.transpose();
            let queue = queue.slice_assign(
                [0..dim, ptr..ptr + first],
                feats.clone().slice([0..dim, 0..first]),
            );
            if first == batch {
                queue
            } else {
                queue.slice_assign(
                    [0..dim, 0..batch - first],
                    feats.slice([0..dim, first..batch]),
                )
            }
        };
        self.image = write(self.image.clone(), image_feat_m, self.ptr);
        self.text = write(self.text.clone(), text_feat_m, self.ptr);
        if let (Some(queue), Some(ids)) = (self.ids.take(), ids) {
            let queue = queue.slice_assign(self.ptr..self.ptr + first, ids.clone().slice(0..first));
            let queue = if first == batch {
                queue
            } else {
                queue.slice_assign(0..batch - first, ids.slice(first..batch))
            };
            self.ids = Some(queue);
        }
        self.ptr = (self.ptr + batch) % size;
    }
}

/// The ITC loss and the similarities it was computed from.
#[derive(Debug, Clone)]
pub struct ItcLoss {
    /// `(loss_i2t + loss_t2i) / 2`.
    pub loss: Tensor<1>,
    /// Online image features against every text column, `/ temp`:
    /// `[batch, batch + queue]`.
    pub sim_i2t: Tensor<2>,
    /// Online text features against every image column, `/ temp`.
    pub sim_t2i: Tensor<2>,
}

/// ALBEF's image–text contrastive loss.
///
/// The online features of the batch are scored against the momentum
/// features of the batch and of the queue (`*_all`, `[dim, batch + queue]`);
/// the targets (`[batch, batch + queue]`, rows summing to one) are usually
/// [`distilled_targets`] of the momentum similarities.
///
/// # Shapes
/// `image_feat`, `text_feat`: `[batch, dim]`; `temp`: `[1]`
pub fn itc_loss(
    image_feat: Tensor<2>,
    text_feat: Tensor<2>,
    image_feat_all: Tensor<2>,
    text_feat_all: Tensor<2>,
    temp: Tensor<1>,
    targets_i2t: Tensor<2>,
    targets_t2i: Tensor<2>,
) -> ItcLoss {
    let temp = temp.unsqueeze::<2>();
    let sim_i2t = image_feat.matmul(text_feat_all) / temp.clone();
    let sim_t2i = text_feat.matmul(image_feat_all) / temp;
    let loss = (soft_cross_entropy(sim_i2t.clone(), targets_i2t)
        + soft_cross_entropy(sim_t2i.clone(), targets_t2i))
        / 2.0;
    ItcLoss {
        loss,
        sim_i2t,
        sim_t2i,
    }
}

/// CLIP's symmetric contrastive loss: the mean of the cross-entropies of
/// `logits_per_text` over images and over texts, matched pairs on the
/// diagonal.
///
/// # Shapes
/// `logits_per_text`: `[batch, batch]` → `[1]`
pub fn clip_loss(logits_per_text: Tensor<2>) -> Tensor<1> {
    let [batch, _] = logits_per_text.dims();
    let eye = Tensor::<2>::eye(batch, &logits_per_text.device());
    (soft_cross_entropy(logits_per_text.clone(), eye.clone())
        + soft_cross_entropy(logits_per_text.transpose(), eye))
        / 2.0
}

/// `true` where row and column share an id (the pairs that must not serve
/// as negatives).
pub fn same_id(ids: Tensor<1, Int>) -> Tensor<2, Bool> {
    let [n] = ids.dims();
    ids.clone()
        .reshape([n, 1])
        .expand([n, n])
        .equal(ids.reshape([1, n]).expand([n, n]))
}

/// `n` draws of N(0, 1) (Box–Muller).
fn standard_normal(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            // 1 − u lies in (0, 1], so the logarithm is finite.
            let radius = (-2.0 * (1.0 - rng.random::<f64>()).ln()).sqrt();
            let angle = std::f64::consts::TAU * rng.random::<f64>();
            (radius * angle.cos()) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(queue: &Tensor<2>, col: usize) -> Vec<f32> {
        let dim = queue.dims()[0];
        queue
            .clone()
            .slice([0..dim, col..col + 1])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn a_fresh_queue_is_unit_norm_and_follows_its_seed() {
        let device = Device::flex();
        let values = |q: &FeatureQueue| q.image.clone().into_data().try_to_vec::<f32>().unwrap();
        let queue = FeatureQueue::new(16, 64, false, 7, &device);
        let norms = queue.text.clone().powi_scalar(2).sum_dim(0).sqrt();
        let off_one = (norms - 1.0).abs().max().into_scalar::<f32>();
        assert!(off_one < 1e-5, "{off_one}");
        // The draws behind the columns are standard normal.
        let z = standard_normal(&mut StdRng::seed_from_u64(3), 100_000);
        let moment = |k: i32| z.iter().map(|x| x.powi(k) as f64).sum::<f64>() / z.len() as f64;
        let (mean, var, kurtosis) = (moment(1), moment(2), moment(4));
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        assert!((kurtosis - 3.0).abs() < 0.1, "{kurtosis}");
        let v = values(&queue);
        assert_eq!(v, values(&FeatureQueue::new(16, 64, false, 7, &device)));
        assert_ne!(v, values(&FeatureQueue::new(16, 64, false, 8, &device)));
    }

    #[test]
    fn enqueue_writes_at_the_pointer_and_wraps() {
        let device = Device::flex();
        let mut queue = FeatureQueue::new(2, 5, true, 0, &device);
        for step in 0..4 {
            let base = step as f32 * 10.0;
            let feats =
                Tensor::<2>::from_data([[base, base + 1.0], [base + 2.0, base + 3.0]], &device);
            let ids = Tensor::<1, Int>::from_data([step * 2, step * 2 + 1], &device);
            queue.enqueue(feats.clone(), feats, Some(ids));
        }
        // 8 samples into 5 slots: the pointer wrapped once and sits at 3.
        assert_eq!(queue.ptr, 3);
        // Slots 0..3 hold samples 5..8 (steps 2 and 3), slots 3..5 samples 3..5.
        assert_eq!(column(&queue.image, 0), vec![22.0, 23.0]);
        assert_eq!(column(&queue.image, 1), vec![30.0, 31.0]);
        assert_eq!(column(&queue.image, 2), vec![32.0, 33.0]);
        assert_eq!(column(&queue.image, 3), vec![12.0, 13.0]);
        assert_eq!(column(&queue.text, 4), vec![20.0, 21.0]);
        let ids = queue
            .ids
            .unwrap()
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert_eq!(ids, vec![5, 6, 7, 3, 4]);
    }

    #[test]
    fn id_targets_spread_over_every_positive() {
        let device = Device::flex();
        let ids = Tensor::<1, Int>::from_data([7, 3], &device);
        let all = Tensor::<1, Int>::from_data([7, 3, 7, -100, 7], &device);
        let targets = id_targets(ids, all)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let third = 1.0 / 3.0;
        let expected = [third, 0.0, third, 0.0, third, 0.0, 1.0, 0.0, 0.0, 0.0];
        for (t, e) in targets.iter().zip(expected) {
            assert!((t - e).abs() < 1e-6, "{targets:?}");
        }
    }

    #[test]
    fn a_perfect_model_has_low_clip_loss() {
        let device = Device::flex();
        let confident = Tensor::<2>::eye(4, &device) * 50.0;
        let confused = Tensor::<2>::zeros([4, 4], &device);
        let low = clip_loss(confident).into_scalar::<f32>();
        let chance = clip_loss(confused).into_scalar::<f32>();
        assert!(low < 1e-6);
        assert!((chance - 4f32.ln()).abs() < 1e-5);
    }
}
