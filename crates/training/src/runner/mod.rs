//! The training loop every job shares: batches from a prefetching source,
//! one [`Trainee::step`] each, a progress bar, JSON-lines metrics, an atomic
//! checkpoint at the end of every epoch (and at the stop), and the
//! loss-curve plot; and what every job's step uses: the optimizer, the
//! schedule, data-parallel workers and seeds. ALBEF pretraining and the
//! three AltCLIP stages are [`Trainee`]s.

pub mod checkpoint;
pub mod data_parallel;
pub mod metrics;
pub mod optimizer;
pub use vl_data::progress;
pub mod schedule;
pub mod seed;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::TrainError;
use checkpoint::Checkpoint;
use metrics::{MetricsLog, plot_curves, read_series};
use progress::bar;

/// Where a run writes, and the tokenizer its checkpoints record.
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// `checkpoint.ckpt`: the latest state, rewritten atomically.
    pub checkpoint: PathBuf,
    /// `metrics.jsonl`: one record per step and per evaluation.
    pub metrics: PathBuf,
    /// `loss.png`: the loss curves.
    pub plot: PathBuf,
    /// Fingerprint of the run's tokenizer, recorded in every checkpoint
    /// (`None` for jobs without text).
    pub tokenizer: Option<String>,
}

impl RunPaths {
    /// The standard files inside `out`.
    pub fn in_dir(out: &Path) -> Self {
        Self {
            checkpoint: out.join("checkpoint.ckpt"),
            metrics: out.join("metrics.jsonl"),
            plot: out.join("loss.png"),
            tokenizer: None,
        }
    }

    /// The same, recording `tokenizer` in the checkpoints.
    pub fn with_tokenizer(self, tokenizer: &vl_data::TextTokenizer) -> Self {
        Self {
            tokenizer: Some(tokenizer.fingerprint()),
            ..self
        }
    }

    /// Writes `checkpoint` to `path` with the run's tokenizer recorded.
    pub fn write_checkpoint(
        &self,
        mut checkpoint: Checkpoint,
        path: &Path,
    ) -> Result<(), TrainError> {
        checkpoint.set_tokenizer(self.tokenizer.clone());
        checkpoint.write(path)
    }
}

/// A run to continue: its checkpoint, and its new length in epochs when
/// it is extended.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The run's `checkpoint.ckpt`.
    pub checkpoint: PathBuf,
    /// The run's new length in epochs.
    pub epochs: Option<usize>,
}

/// The epochs of a resumed run: its own, or `extend_to` when given, which
/// must not end before where the run (from `checkpoint`) already is.
pub fn resumed_epochs(
    own: usize,
    extend_to: Option<usize>,
    at: Position,
    checkpoint: &Path,
) -> Result<usize, TrainError> {
    let Some(epochs) = extend_to else {
        return Ok(own);
    };
    let done = at.epoch + usize::from(at.step_in_epoch > 0);
    if epochs < done {
        return Err(TrainError::BadInput(format!(
            "--epochs {epochs}: {} is already in epoch {} (step {}); a resumed run can only be extended",
            checkpoint.display(),
            at.epoch + 1,
            at.step
        )));
    }
    Ok(epochs)
}

/// Where a run writes: `out`, else the directory of the checkpoint it
/// resumes (its metrics and tokenizer are there), else `default`; created
/// if missing and checked to be writable before any work starts.
pub fn output_dir(
    out: Option<&Path>,
    resume: Option<&Path>,
    default: &Path,
) -> Result<PathBuf, TrainError> {
    let beside = resume.map(|checkpoint| match checkpoint.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    });
    let dir = out
        .map(Path::to_owned)
        .or(beside)
        .unwrap_or_else(|| default.to_owned());
    let io = |source| TrainError::Io {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    tempfile::tempfile_in(&dir).map_err(io)?;
    Ok(dir)
}

/// Refuses, when resuming `checkpoint`, the command-line flags of `given`
/// that were set: a resumed run keeps the config, data and weights its
/// checkpoint records.
pub fn refuse_on_resume(checkpoint: &Path, given: &[(&str, bool)]) -> Result<(), TrainError> {
    let set: Vec<&str> = given
        .iter()
        .filter(|(_, set)| *set)
        .map(|(flag, _)| *flag)
        .collect();
    if set.is_empty() {
        return Ok(());
    }
    Err(TrainError::BadInput(format!(
        "{} cannot change when resuming {}: a resumed run keeps the config, data and weights its checkpoint records (--epochs and --max-steps extend it)",
        set.join(", "),
        checkpoint.display()
    )))
}

/// Fails when a resumed run from `checkpoint` has nothing left to do.
pub fn check_work_left(
    at: Position,
    total_steps: usize,
    epochs: usize,
    checkpoint: &Path,
) -> Result<(), TrainError> {
    if at.step >= total_steps {
        return Err(TrainError::BadInput(format!(
            "{} is a finished run ({epochs} epochs, {} steps): give --epochs more than {epochs} (or a larger --max-steps) to extend it",
            checkpoint.display(),
            at.step
        )));
    }
    Ok(())
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// Steps done in all.
    pub step: usize,
    /// Current epoch.
    pub epoch: usize,
    /// Steps done in the current epoch.
    pub step_in_epoch: usize,
}

impl Position {
    /// Counts one step of an epoch of `steps_per_epoch`.
    pub fn advance(&mut self, steps_per_epoch: usize) {
        self.step += 1;
        self.step_in_epoch += 1;
        if self.step_in_epoch == steps_per_epoch {
            self.epoch += 1;
            self.step_in_epoch = 0;
        }
    }

    /// Epochs done, fractional.
    pub fn progress(&self, steps_per_epoch: usize) -> f64 {
        self.epoch as f64 + self.step_in_epoch as f64 / steps_per_epoch.max(1) as f64
    }
}

/// What one step reports: its losses (summed into what is minimised) and
/// settings worth logging (learning rate, α, temperature…).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// `(metric key, value)` of each loss.
    pub losses: Vec<(&'static str, f32)>,
    /// `(metric key, value)` of each logged setting.
    pub settings: Vec<(&'static str, f64)>,
}

impl StepReport {
    /// Sum of the losses (what is minimised).
    pub fn total(&self) -> f32 {
        self.losses.iter().map(|(_, l)| l).sum()
    }

    /// The loss called `key`.
    pub fn loss(&self, key: &str) -> Option<f32> {
        self.losses.iter().find(|(k, _)| *k == key).map(|(_, l)| *l)
    }

    /// [`TrainError::NonFinite`] if a loss is NaN or infinite.
    pub fn check_finite(&self, step: usize) -> Result<(), TrainError> {
        if self.losses.iter().all(|(_, l)| l.is_finite()) {
            return Ok(());
        }
        let losses: Vec<String> = self
            .losses
            .iter()
            .map(|(k, l)| format!("{k} {l}"))
            .collect();
        Err(TrainError::NonFinite {
            step,
            losses: losses.join(", "),
        })
    }
}

/// A training state the loop can drive.
pub trait Trainee {
    /// What one step consumes.
    type Batch;

    /// Steps done.
    fn position(&self) -> Position;

    /// One optimisation step; `steps_per_epoch` drives the schedule. On a
    /// non-finite loss it returns [`TrainError::NonFinite`] and leaves the
    /// state as before the step.
    fn step(
        &mut self,
        batch: &Self::Batch,
        steps_per_epoch: usize,
    ) -> Result<StepReport, TrainError>;

    /// Snapshot of everything needed to resume.
    fn checkpoint(&self) -> Result<Checkpoint, TrainError>;
}

/// A deterministic source of batches, epoch by epoch.
pub trait Batches {
    /// One batch.
    type Batch;

    /// Steps in an epoch.
    fn steps_per_epoch(&self) -> usize;

    /// Samples in a batch.
    fn batch_len(batch: &Self::Batch) -> usize;

    /// The batches of `epoch` from `start_step` on.
    fn epoch(
        &self,
        epoch: usize,
        start_step: usize,
    ) -> impl Iterator<Item = Result<Self::Batch, TrainError>>;
}

impl Batches for vl_data::Loader {
    type Batch = vl_data::ImageTextBatch;

    fn steps_per_epoch(&self) -> usize {
        vl_data::Loader::steps_per_epoch(self)
    }

    fn batch_len(batch: &Self::Batch) -> usize {
        batch.len()
    }

    fn epoch(
        &self,
        epoch: usize,
        start_step: usize,
    ) -> impl Iterator<Item = Result<Self::Batch, TrainError>> {
        vl_data::Loader::epoch(self, epoch, start_step).map(|b| b.map_err(TrainError::from))
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
    /// Samples per second of this invocation.
    pub samples_per_s: f64,
    /// Report of this invocation's first step.
    pub first: Option<StepReport>,
    /// Report of the last step.
    pub last: Option<StepReport>,
}

/// Trains `state` on `batches` until `stop`, from wherever it is; `what`
/// names the stage on the progress bar and the plot.
pub fn train<T, B>(
    state: &mut T,
    batches: &B,
    paths: &RunPaths,
    stop: StopAt,
    what: &str,
) -> Result<RunSummary, TrainError>
where
    T: Trainee,
    B: Batches<Batch = T::Batch>,
{
    let steps_per_epoch = batches.steps_per_epoch();
    let total = stop.epochs * steps_per_epoch;
    let total = stop.max_steps.map_or(total, |m| m.min(total));
    let first_step = state.position().step;
    // A fresh run replaces an old run's records; a resumed one keeps those
    // of the steps its checkpoint holds and drops any written after it.
    let mut metrics = MetricsLog::continue_at(&paths.metrics, first_step)?;
    let progress = bar(total as u64, what);
    progress.set_position(first_step as u64);
    let start = Instant::now();
    let mut samples = 0usize;
    let mut summary = RunSummary {
        steps: first_step,
        steps_this_run: 0,
        seconds: 0.0,
        samples_per_s: 0.0,
        first: None,
        last: None,
    };
    'epochs: while state.position().step < total {
        let Position {
            epoch,
            step_in_epoch,
            ..
        } = state.position();
        for batch in batches.epoch(epoch, step_in_epoch) {
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    // Keep the steps done: once the input is fixed (or
                    // skipped), --resume goes on from here.
                    paths.write_checkpoint(state.checkpoint()?, &paths.checkpoint)?;
                    log::error!(
                        "stopped at step {}; {} holds the run up to here",
                        state.position().step,
                        paths.checkpoint.display()
                    );
                    return Err(e);
                }
            };
            let step = state.position().step;
            let report = state.step(&batch, steps_per_epoch)?;
            samples += B::batch_len(&batch);
            let samples_per_s = samples as f64 / start.elapsed().as_secs_f64().max(1e-9);
            let mut record = serde_json::json!({
                "step": step,
                "epoch": epoch,
                "loss": report.total(),
                "samples_per_s": samples_per_s,
            });
            for (key, value) in &report.losses {
                record[*key] = serde_json::json!(value);
            }
            for (key, value) in &report.settings {
                record[*key] = serde_json::json!(value);
            }
            metrics.write(&record)?;
            let losses: Vec<String> = report
                .losses
                .iter()
                .map(|(k, l)| format!("{} {l:.3}", k.trim_start_matches("loss_")))
                .collect();
            progress.set_message(format!(
                "loss {:.3} ({}) {samples_per_s:.0} samples/s",
                report.total(),
                losses.join(" ")
            ));
            progress.inc(1);
            summary.first.get_or_insert_with(|| report.clone());
            summary.last = Some(report);
            if state.position().step >= total {
                break 'epochs;
            }
        }
        paths.write_checkpoint(state.checkpoint()?, &paths.checkpoint)?;
    }
    paths.write_checkpoint(state.checkpoint()?, &paths.checkpoint)?;
    progress.finish();
    summary.steps = state.position().step;
    summary.steps_this_run = summary.steps - first_step;
    summary.seconds = start.elapsed().as_secs_f64();
    summary.samples_per_s = samples as f64 / summary.seconds.max(1e-9);
    if let Some(report) = &summary.last {
        let keys: Vec<&str> = report.losses.iter().map(|(k, _)| *k).collect();
        plot_losses(paths, &format!("{what} losses"), &keys)?;
    }
    Ok(summary)
}

/// Redraws the plot from the `keys` series of the metrics file.
pub fn plot_losses(paths: &RunPaths, title: &str, keys: &[&str]) -> Result<(), TrainError> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = keys
        .iter()
        .map(|key| read_series(&paths.metrics, key).map(|s| (*key, s)))
        .collect::<Result<_, _>>()?;
    plot_curves(&paths.plot, title, &series)
}
