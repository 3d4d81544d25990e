//! The ALBEF pretraining loop around [`AlbefPretraining::step`]: batches
//! from a prefetching loader, a progress bar, JSON-lines metrics, an atomic
//! checkpoint at the end of every epoch (and on request), and the
//! loss-curve plot.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use vl_data::Loader;

use crate::TrainError;
use crate::albef::{AlbefPretraining, StepLosses};
use crate::metrics::{MetricsLog, plot_curves, read_series};
use crate::progress::bar;

/// Where a run writes.
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// `checkpoint.ckpt`: the latest state, rewritten atomically.
    pub checkpoint: PathBuf,
    /// `metrics.jsonl`: one record per step and per evaluation.
    pub metrics: PathBuf,
    /// `loss.png`: the loss curves.
    pub plot: PathBuf,
}

impl RunPaths {
    /// The standard files inside `out`.
    pub fn in_dir(out: &Path) -> Self {
        Self {
            checkpoint: out.join("checkpoint.ckpt"),
            metrics: out.join("metrics.jsonl"),
            plot: out.join("loss.png"),
        }
    }
}

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopAt {
    /// Total epochs of the run.
    pub epochs: usize,
    /// Stop (with a checkpoint) after this many steps in all, if set.
    pub max_steps: Option<usize>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Steps done in all (resumed ones included).
    pub steps: usize,
    /// Steps done by this invocation.
    pub steps_this_run: usize,
    /// Wall-clock seconds of this invocation's training.
    pub seconds: f64,
    /// Losses of the first and last step of this invocation.
    pub first: Option<StepLosses>,
    /// Losses of the last step.
    pub last: Option<StepLosses>,
}

/// Trains until `stop`, from wherever `state` is.
pub fn pretrain(
    state: &mut AlbefPretraining,
    loader: &Loader,
    paths: &RunPaths,
    stop: StopAt,
) -> Result<RunSummary, TrainError> {
    let steps_per_epoch = loader.steps_per_epoch();
    let total = stop.epochs * steps_per_epoch;
    let total = stop.max_steps.map_or(total, |m| m.min(total));
    let mut metrics = MetricsLog::open(&paths.metrics)?;
    let progress = bar(total as u64, "pretrain");
    progress.set_position(state.position.step as u64);
    let start = Instant::now();
    let first_step = state.position.step;
    let mut summary = RunSummary {
        steps: state.position.step,
        steps_this_run: 0,
        seconds: 0.0,
        first: None,
        last: None,
    };
    'epochs: while state.position.step < total {
        let epoch = state.position.epoch;
        for batch in loader.epoch(epoch, state.position.step_in_epoch) {
            let batch = batch?;
            let step = state.position.step;
            let losses = state.step(&batch, steps_per_epoch)?;
            let elapsed = start.elapsed().as_secs_f64();
            let done = state.position.step - first_step;
            let samples_per_s = (done * batch.len()) as f64 / elapsed.max(1e-9);
            metrics.write(&serde_json::json!({
                "step": step,
                "epoch": epoch,
                "loss_mlm": losses.loss_mlm,
                "loss_ita": losses.loss_ita,
                "loss_itm": losses.loss_itm,
                "loss": losses.total(),
                "lr": losses.lr,
                "alpha": losses.alpha,
                "temp": losses.temp,
                "samples_per_s": samples_per_s,
            }))?;
            progress.set_message(format!(
                "loss {:.3} (ita {:.3} itm {:.3} mlm {:.3}) {:.0} samples/s",
                losses.total(),
                losses.loss_ita,
                losses.loss_itm,
                losses.loss_mlm,
                samples_per_s
            ));
            progress.inc(1);
            summary.first.get_or_insert(losses);
            summary.last = Some(losses);
            if state.position.step >= total {
                break 'epochs;
            }
        }
        state.checkpoint()?.write(&paths.checkpoint)?;
    }
    state.checkpoint()?.write(&paths.checkpoint)?;
    progress.finish();
    summary.steps = state.position.step;
    summary.steps_this_run = state.position.step - first_step;
    summary.seconds = start.elapsed().as_secs_f64();
    plot_losses(paths)?;
    for skipped in loader.skipped().entries {
        log::warn!("skipped {skipped}");
    }
    Ok(summary)
}

/// Redraws `loss.png` from `metrics.jsonl`.
pub fn plot_losses(paths: &RunPaths) -> Result<(), TrainError> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = ["loss_ita", "loss_itm", "loss_mlm"]
        .into_iter()
        .map(|key| read_series(&paths.metrics, key).map(|s| (key, s)))
        .collect::<Result<_, _>>()?;
    plot_curves(&paths.plot, "ALBEF pretraining losses", &series)
}
