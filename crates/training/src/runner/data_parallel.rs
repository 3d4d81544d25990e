//! Data parallelism across the cores of one machine, as the reference's
//! `DistributedDataParallel` across GPUs: each worker thread runs the
//! forward and backward pass of its shard of the batch on its own copy of
//! the parameters (same ids, separate autodiff graphs), and the step
//! applies the average of their gradients.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// `job(0)`, …, `job(workers − 1)`, each worker on a thread of rayon's
/// pool, the results in worker order.
///
/// The workers are rayon tasks, not threads of their own, because
/// burn-flex splits its larger kernels (matrix products of ≥ 192³
/// multiply-adds, such as the tiny ViT's MLP) over rayon: called from a
/// thread outside the pool, such a kernel blocks its caller while the
/// pool's threads run the pieces, so two workers and two pool threads
/// took turns on two cores (the warm-up ran at 1.45 cores, its matrix
/// products all on the pool's threads). Inside the pool a worker runs its
/// own pieces and, when idle, steals the other worker's. One worker per
/// pool thread (`rayon::broadcast`), so that neither waits behind the
/// other; more workers than threads take turns.
pub fn run_workers<T: Send>(workers: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if workers <= 1 {
        return (0..workers).map(&job).collect();
    }
    let mut done: Vec<(usize, T)> = rayon::broadcast(|context| {
        (context.index()..workers)
            .step_by(context.num_threads())
            .map(|i| (i, job(i)))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, result)| result).collect()
}

/// `Σ wᵢ·gᵢ` over the workers' gradients of `module`'s parameters. A
/// parameter without a gradient in some parts takes the sum of the others;
/// a single part of weight 1 is returned unchanged.
pub fn weighted_gradient_sum<M: Module>(
    module: &M,
    mut parts: Vec<(GradientsParams, f64)>,
) -> GradientsParams {
    if parts.len() == 1 && parts[0].1 == 1.0 {
        return parts.pop().expect("one part").0;
    }
    let mut sum = WeightedSum {
        parts,
        out: GradientsParams::new(),
    };
    module.visit(&mut sum);
    sum.out
}

struct WeightedSum {
    parts: Vec<(GradientsParams, f64)>,
    out: GradientsParams,
}

impl ModuleVisitor for WeightedSum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let sum = self
            .parts
            .iter_mut()
            .filter_map(|(grads, weight)| grads.remove::<D>(param.id).map(|g| g * *weight))
            .reduce(|a, b| a + b);
        if let Some(sum) = sum {
            self.out.register(param.id, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, Distribution, Tolerance};

    #[test]
    fn workers_return_their_results_in_worker_order() {
        // More workers than pool threads take turns; each runs once.
        let threads = rayon::current_num_threads();
        for workers in [1, 2, threads + 3] {
            let runs = std::sync::atomic::AtomicUsize::new(0);
            let out = run_workers(workers, |i| {
                runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i * 10
            });
            assert_eq!(out, (0..workers).map(|i| i * 10).collect::<Vec<_>>());
            assert_eq!(runs.into_inner(), workers);
        }
    }

    #[test]
    fn the_weighted_sum_of_shard_gradients_is_the_full_batch_gradient() {
        // The gradient of a mean loss over 5 rows equals 3/5 of the mean
        // over rows 0..3 plus 2/5 of the mean over rows 3..5, each taken
        // on its own copy of the parameters.
        let device = Device::flex().autodiff();
        let layer: Linear = LinearConfig::new(4, 3).init(&device);
        let x = Tensor::<2>::random([5, 4], Distribution::Normal(0.0, 1.0), &device);
        let grads = |layer: &Linear, rows: std::ops::Range<usize>| {
            let y = layer.forward(x.clone().slice([rows, 0..4]));
            GradientsParams::from_grads(y.powi_scalar(2).mean().backward(), layer)
        };
        let full = grads(&layer, 0..5);
        let replica = layer.valid().train();
        let parts = vec![(grads(&layer, 0..3), 0.6), (grads(&replica, 3..5), 0.4)];
        let combined = weighted_gradient_sum(&layer, parts);
        let tolerance = Tolerance::absolute(1e-6);
        let weight = layer.weight.id;
        combined
            .get::<2>(weight)
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(&full.get::<2>(weight).unwrap().into_data(), tolerance);
        let bias = layer.bias.as_ref().unwrap().id;
        combined
            .get::<1>(bias)
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(&full.get::<1>(bias).unwrap().into_data(), tolerance);
    }
}
