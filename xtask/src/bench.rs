//! `cargo xtask bench`: our steps beside PyTorch's, same shapes, same
//! thread count, alternating, one child process per measurement (so each
//! row's peak RSS is its own). See docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::presets::{Measurement, Preset, Step, measure, peak_rss_mib, torch_spec};
use anyhow::{Context, bail};
use serde::Serialize;

/// What to run.
pub struct BenchArgs {
    pub presets: Vec<Preset>,
    pub steps: Vec<Step>,
    pub warmup: usize,
    pub iters: usize,
    pub backend: vl_backend::Backend,
    pub json: Option<PathBuf>,
    pub python: Option<PathBuf>,
    pub threads: usize,
    pub rounds: usize,
    /// Training batch instead of the preset's.
    pub batch: Option<usize>,
    /// Inference batch instead of the preset's.
    pub eval_batch: Option<usize>,
    /// PyTorch's device (cpu, cuda).
    pub torch_device: String,
}

/// One row of the table and the JSON.
#[derive(Debug, Serialize)]
struct Row {
    step: String,
    preset: String,
    batch: usize,
    ours_ms: f64,
    ours_samples_per_s: f64,
    ours_gflop_per_s: f64,
    ours_peak_rss_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pytorch_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pytorch_samples_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pytorch_peak_rss_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pytorch_peak_gpu_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<f64>,
}

/// The child process: one measurement, printed as JSON.
pub fn bench_one(
    step: Step,
    preset: Preset,
    batches: (Option<usize>, Option<usize>),
    backend: vl_backend::Backend,
    warmup: usize,
    iters: usize,
) -> anyhow::Result<()> {
    let device = backend.device()?;
    let config = preset.config().with_batches(batches.0, batches.1);
    let m = measure(step, preset, &config, &device, warmup, iters)?;
    let mut json = serde_json::to_value(&m)?;
    json["peak_rss_mib"] = serde_json::json!(peak_rss_mib());
    println!("{json}");
    Ok(())
}

fn last_json_line(stdout: &[u8], what: &str) -> anyhow::Result<serde_json::Value> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{what} printed no result:\n{text}"))?;
    Ok(serde_json::from_str(line)?)
}

fn run_child(command: &mut Command, what: &str) -> anyhow::Result<serde_json::Value> {
    let output = command
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    last_json_line(&output.stdout, what)
}

/// The PyTorch script: in the checkout this binary was built from, or, for
/// a binary copied elsewhere (a GPU machine), under the current directory.
fn script() -> anyhow::Result<PathBuf> {
    let relative = Path::new("bench/bench_torch.py");
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    [built, relative.to_path_buf()]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} not found here or in the build's checkout",
                relative.display()
            )
        })
}

/// Runs every (preset, step): ours, then PyTorch's when a Python is given.
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let script = match args.python {
        Some(_) => Some(script()?),
        None => None,
    };
    let batch_args = |flag: &str, value: Option<usize>| match value {
        Some(v) => vec![flag.to_owned(), v.to_string()],
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    println!(
        "{:<19}{:<7}{:>6}{:>11}{:>11}{:>9}{:>9}{:>12}{:>9}{:>8}",
        "step",
        "preset",
        "batch",
        "ours ms",
        "samples/s",
        "GFLOP/s",
        "RSS MiB",
        "PyTorch ms",
        "RSS MiB",
        "ratio"
    );
    for &preset in &args.presets {
        let spec = torch_spec(&preset.config().with_batches(args.batch, args.eval_batch));
        for &step in &args.steps {
            if step.is_op() && preset != Preset::Tiny {
                // The op rows have fixed shapes: once is enough.
                continue;
            }
            // Ours then PyTorch's, `rounds` times; each side keeps its
            // fastest round (the shared machine only ever slows a run down).
            let mut ours: Option<(Measurement, Option<f64>)> = None;
            let mut torch: Option<serde_json::Value> = None;
            for _ in 0..args.rounds.max(1) {
                let run = run_child(
                    Command::new(&exe)
                        .args([
                            "bench-one",
                            "--step",
                            step.name(),
                            "--preset",
                            &preset.to_string(),
                            "--backend",
                            &args.backend.to_string(),
                            "--warmup",
                            &args.warmup.to_string(),
                            "--iters",
                            &args.iters.to_string(),
                        ])
                        .args(batch_args("--batch", args.batch))
                        .args(batch_args("--eval-batch", args.eval_batch)),
                    &format!("our {} ({preset})", step.name()),
                )?;
                let rss = run["peak_rss_mib"].as_f64();
                let run: Measurement = serde_json::from_value(run)?;
                if ours
                    .as_ref()
                    .is_none_or(|(best, _)| run.ms_median < best.ms_median)
                {
                    ours = Some((run, rss));
                }
                if let (Some(python), Some(script)) = (&args.python, &script) {
                    let run = run_child(
                        Command::new(python)
                            .arg(script)
                            .args(["--spec", &spec.to_string(), "--step", step.name()])
                            .args(["--warmup", &args.warmup.to_string()])
                            .args(["--iters", &args.iters.to_string()])
                            .args(["--threads", &args.threads.to_string()])
                            .args(["--device", &args.torch_device]),
                        &format!("PyTorch {} ({preset})", step.name()),
                    )?;
                    let ms = |v: &serde_json::Value| v["ms_median"].as_f64().unwrap_or(f64::MAX);
                    if torch.as_ref().is_none_or(|best| ms(&run) < ms(best)) {
                        torch = Some(run);
                    }
                }
            }
            let (ours, rss) = ours.expect("at least one round");
            let torch_sps = torch.as_ref().and_then(|t| t["samples_per_s"].as_f64());
            let row = Row {
                step: ours.step.clone(),
                preset: ours.preset.clone(),
                batch: ours.batch,
                ours_ms: ours.ms_median,
                ours_samples_per_s: ours.samples_per_s,
                ours_gflop_per_s: ours.gflop_per_s,
                ours_peak_rss_mib: rss,
                pytorch_ms: torch.as_ref().and_then(|t| t["ms_median"].as_f64()),
                pytorch_samples_per_s: torch_sps,
                pytorch_peak_rss_mib: torch.as_ref().and_then(|t| t["peak_rss_mib"].as_f64()),
                pytorch_peak_gpu_mib: torch.as_ref().and_then(|t| t["peak_gpu_mib"].as_f64()),
                ratio: torch_sps.map(|t| ours.samples_per_s / t),
            };
            let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
            println!(
                "{:<19}{:<7}{:>6}{:>11.1}{:>11.1}{:>9.1}{:>9}{:>12}{:>9}{:>8}",
                row.step,
                row.preset,
                row.batch,
                row.ours_ms,
                row.ours_samples_per_s,
                row.ours_gflop_per_s,
                opt(row.ours_peak_rss_mib, 0),
                opt(row.pytorch_ms, 1),
                opt(row.pytorch_peak_rss_mib, 0),
                opt(row.ratio, 2),
            );
            rows.push(row);
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "rows": rows.iter().map(|r| {
                let mut v = serde_json::to_value(r).expect("rows serialise");
                v["ours_samples_per_s"] = r.ours_samples_per_s.into();
                v
            }).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Here rather than in vl-training: a measurement seeds and draws from
    // the device's generator, which vl-training's own tests share when
    // they run in parallel in one process.
    #[test]
    fn a_tiny_step_is_measured() {
        let device = burn::tensor::Device::flex();
        let config = Preset::Tiny.config().with_batches(Some(4), None);
        let m = measure(Step::AltclipStage1, Preset::Tiny, &config, &device, 1, 2).unwrap();
        assert!(m.ms_median > 0.0 && m.samples_per_s > 0.0 && m.flop > 0.0);
        assert_eq!(m.batch, 4);
    }
}
