//! Momentum models: the exponential moving average of ALBEF's momentum
//! distillation and the ramp of the distillation weight α.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// A copy of `online` to serve as its momentum model: same values, no
/// autodiff, dropout off, fresh parameter ids (so an optimizer keyed by id
/// never confuses the two).
pub fn fresh_copy<M: Module>(online: &M) -> M {
    online.valid().map(&mut FreshIds)
}

struct FreshIds;

impl ModuleMapper for FreshIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, tensor, mapper) = param.consume();
        Param::from_mapped_value(ParamId::new(), tensor, mapper)
    }
}

/// `p_m ← m·p_m + (1−m)·p` for every parameter, outside autodiff
/// (ALBEF's `_momentum_update`, m = 0.995). `momentum` and `online` must be
/// the same module type with the same shapes (the traversal order of a type
/// is fixed).
pub fn ema_update<M: Module>(momentum: M, online: &M, m: f64) -> M {
    let mut update = Ema {
        source: flat_parameters(online).into_iter(),
        m,
    };
    let updated = momentum.map(&mut update);
    assert!(
        update.source.next().is_none(),
        "online and momentum models differ in parameters"
    );
    updated
}

/// Every float parameter of `module`, flattened, outside autodiff, in the
/// type's fixed traversal order.
pub fn flat_parameters<M: Module>(module: &M) -> Vec<Tensor<1>> {
    let mut gather = Gather(Vec::new());
    module.visit(&mut gather);
    gather.0
}

struct Gather(Vec<Tensor<1>>);

impl ModuleVisitor for Gather {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().without_autodiff().reshape([-1]));
    }
}

struct Ema {
    source: std::vec::IntoIter<Tensor<1>>,
    m: f64,
}

impl ModuleMapper for Ema {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let source = self
            .source
            .next()
            .expect("online and momentum models differ in parameters");
        let m = self.m;
        param.map(|t| {
            let shape = t.shape();
            t * m + source.reshape(shape) * (1.0 - m)
        })
    }
}

/// The distillation weight at a step: ALBEF ramps α linearly from 0 over the
/// first epoch (`α·min(1, i/len(loader))`), then holds it.
pub fn alpha_at(alpha: f64, epoch: usize, step_in_epoch: usize, steps_per_epoch: usize) -> f64 {
    if epoch > 0 || steps_per_epoch == 0 {
        alpha
    } else {
        alpha * (step_in_epoch as f64 / steps_per_epoch as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, TensorData};

    fn weights(l: &Linear) -> TensorData {
        l.weight.val().into_data()
    }

    #[test]
    fn m_zero_copies_and_m_one_keeps() {
        let device = Device::flex();
        let online = LinearConfig::new(3, 2).init(&device);
        let other = LinearConfig::new(3, 2).init(&device);
        weights(&ema_update(other.clone(), &online, 0.0)).assert_eq(&weights(&online), true);
        weights(&ema_update(other.clone(), &online, 1.0)).assert_eq(&weights(&other), true);
    }

    #[test]
    fn the_update_is_the_weighted_mean() {
        let device = Device::flex();
        let online = LinearConfig::new(2, 2).init(&device);
        let momentum = fresh_copy(&LinearConfig::new(2, 2).init(&device));
        let updated = ema_update(momentum.clone(), &online, 0.9);
        let expected = momentum.weight.val() * 0.9 + online.weight.val() * 0.1;
        weights(&updated).assert_approx_eq::<f32>(
            &expected.into_data(),
            burn::tensor::Tolerance::absolute(1e-7),
        );
    }

    #[test]
    fn a_fresh_copy_has_new_ids_and_the_same_values() {
        let device = Device::flex().autodiff();
        let online = LinearConfig::new(2, 2).init(&device);
        let copy = fresh_copy(&online);
        assert_ne!(copy.weight.id, online.weight.id);
        assert!(!copy.weight.val().device().is_autodiff());
        weights(&copy).assert_eq(&weights(&online), true);
    }

    #[test]
    fn alpha_ramps_over_the_first_epoch_only() {
        assert_eq!(alpha_at(0.4, 0, 0, 100), 0.0);
        assert!((alpha_at(0.4, 0, 50, 100) - 0.2).abs() < 1e-12);
        assert_eq!(alpha_at(0.4, 0, 150, 100), 0.4);
        assert_eq!(alpha_at(0.4, 1, 0, 100), 0.4);
    }
}
