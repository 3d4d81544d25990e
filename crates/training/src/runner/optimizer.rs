//! AdamW with ALBEF's parameter groups (salesforce/ALBEF
//! `optim/optim_factory.py`): no weight decay on 1-D parameters and biases,
//! `weight_decay` on the rest.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The `optimizer` section of the reference configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    /// Only `"adamW"` exists in the reference.
    pub opt: String,
    /// Learning rate (the schedule overrides it every step).
    pub lr: f64,
    /// Decoupled weight decay of the decayed group.
    pub weight_decay: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            opt: "adamW".into(),
            lr: 1e-4,
            weight_decay: 0.02,
        }
    }
}

impl OptimizerConfig {
    /// Records the values that cannot be right, under `key`.
    pub fn check(&self, c: &mut crate::config::Checks, key: &str) {
        c.require(
            self.opt.eq_ignore_ascii_case("adamw"),
            &format!("{key}.opt"),
            format_args!(
                "`{}` is not supported (only adamW, as the reference)",
                self.opt
            ),
        );
        c.require(
            self.lr.is_finite() && self.lr > 0.0,
            &format!("{key}.lr"),
            "must be positive",
        );
        c.require(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            &format!("{key}.weight_decay"),
            "must be 0 or more",
        );
    }
}

/// Collects the parameters that get no weight decay.
struct NoDecay {
    path: Vec<String>,
    scalars: &'static [&'static str],
    ids: Vec<ParamId>,
}

impl ModuleVisitor for NoDecay {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let leaf = self.path.last().map(String::as_str).unwrap_or("");
        // The reference's rule is `ndim == 1 or name ends with ".bias"`. Its
        // scalars (`temp`, `logit_scale`) are 0-dim, so they *are* decayed;
        // ours are `[1]`, so they are named here to keep that.
        if (D == 1 && !self.scalars.contains(&leaf)) || leaf == "bias" {
            self.ids.push(param.id);
        }
    }
}

/// AdamW (β = 0.9/0.999, ε = 1e-8 as PyTorch) over `module`, with the
/// reference's no-decay group. `scalars` names the 0-dim parameters of the
/// reference (stored as `[1]` here) that must still be decayed.
pub fn adamw<M: Module>(
    module: &M,
    config: &OptimizerConfig,
    scalars: &'static [&'static str],
) -> ModuleOptimizer {
    let mut visitor = NoDecay {
        path: Vec::new(),
        scalars,
        ids: Vec::new(),
    };
    module.visit(&mut visitor);
    let adamw = |weight_decay: f64| {
        AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(weight_decay as f32)
    };
    adamw(config.weight_decay).init().with_group(
        burn::module::ParamGroup::from_ids(visitor.ids),
        adamw(0.0).build(),
        None,
    )
}
