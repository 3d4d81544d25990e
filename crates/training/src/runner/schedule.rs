//! ALBEF's learning-rate schedule: timm's `CosineLRScheduler` as the
//! reference training scripts drive it (salesforce/ALBEF `scheduler/`,
//! `Pretrain.py`).
//!
//! During epoch 0 the scheduler is stepped every `warmup_step_size` (100)
//! iterations with `t = i / 100`, so the rate climbs in stairs from
//! `warmup_lr` to `lr` over `warmup_epochs` such units; from epoch 1 on it
//! is stepped once per epoch and follows a half cosine from `lr` down to
//! `min_lr` over `epochs`.

use serde::{Deserialize, Serialize};

/// The `schedular` (sic) section of the reference configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScheduleConfig {
    /// Only `"cosine"` exists in the reference.
    pub sched: String,
    /// Peak rate.
    pub lr: f64,
    /// Epochs of the cosine.
    pub epochs: usize,
    /// Floor of the cosine.
    pub min_lr: f64,
    /// Multiplier between cycles (1: a single cycle, as the reference).
    pub decay_rate: f64,
    /// Rate at the start of the warm-up.
    pub warmup_lr: f64,
    /// Warm-up length, in units of `warmup_step_size` iterations.
    pub warmup_epochs: usize,
    /// Epochs at `min_lr` after the cosine (0 in every reference config).
    pub cooldown_epochs: usize,
    /// Iterations per warm-up unit: 100 in the reference scripts (not a
    /// config key there); smaller for short runs.
    pub warmup_step_size: usize,
}

impl Default for ScheduleConfig {
    /// The reference `Pretrain.yaml`.
    fn default() -> Self {
        Self {
            sched: "cosine".into(),
            lr: 1e-4,
            epochs: 30,
            min_lr: 1e-5,
            decay_rate: 1.0,
            warmup_lr: 1e-5,
            warmup_epochs: 20,
            cooldown_epochs: 0,
            warmup_step_size: 100,
        }
    }
}

impl ScheduleConfig {
    /// Records the values that cannot be right, under `key`.
    pub fn check(&self, c: &mut crate::config::Checks, key: &str) {
        let at = |field: &str| format!("{key}.{field}");
        c.require(
            self.sched == "cosine",
            &at("sched"),
            format_args!(
                "`{}` is not supported (only cosine, as the reference)",
                self.sched
            ),
        );
        for (field, value) in [("lr", self.lr), ("warmup_lr", self.warmup_lr)] {
            c.require(
                value.is_finite() && value > 0.0,
                &at(field),
                "must be positive",
            );
        }
        c.require(
            self.min_lr.is_finite() && (0.0..=self.lr).contains(&self.min_lr),
            &at("min_lr"),
            format_args!("{} must lie in [0, lr]", self.min_lr),
        );
        c.positive(self.epochs, &at("epochs"));
        c.require(
            self.decay_rate == 1.0,
            &at("decay_rate"),
            "only a single cycle (1) is supported, as in every reference config",
        );
        c.positive(self.warmup_step_size, &at("warmup_step_size"));
    }

    /// The rate at iteration `step_in_epoch` of `epoch`.
    pub fn lr_at(&self, epoch: usize, step_in_epoch: usize) -> f64 {
        let t = if epoch == 0 {
            (step_in_epoch / self.warmup_step_size.max(1)).min(self.warmup_epochs)
        } else {
            epoch + self.warmup_epochs
        };
        self.lr_at_t(t)
    }

    /// timm's `_get_lr(t)` with `warmup_prefix=True`, one cycle.
    fn lr_at_t(&self, t: usize) -> f64 {
        if t < self.warmup_epochs {
            return self.warmup_lr
                + t as f64 * (self.lr - self.warmup_lr) / self.warmup_epochs as f64;
        }
        let t = t - self.warmup_epochs;
        if t >= self.epochs {
            return self.min_lr;
        }
        let progress = t as f64 / self.epochs as f64;
        self.min_lr
            + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_pretraining_timeline() {
        // Values from the reference timeline (Pretrain.yaml).
        let s = ScheduleConfig::default();
        assert_eq!(s.lr_at(0, 0), 1e-5);
        assert!((s.lr_at(0, 150) - 1.45e-5).abs() < 1e-12);
        assert!((s.lr_at(0, 1999) - 9.55e-5).abs() < 1e-12);
        assert_eq!(s.lr_at(0, 2000), 1e-4);
        assert_eq!(s.lr_at(0, 50_000), 1e-4);
        for (epoch, expected) in [(1, 9.97535e-5), (10, 7.75e-5), (29, 1.02465e-5)] {
            assert!(
                (s.lr_at(epoch, 7) - expected).abs() < 1e-9,
                "epoch {epoch}: {}",
                s.lr_at(epoch, 7)
            );
        }
    }
}
