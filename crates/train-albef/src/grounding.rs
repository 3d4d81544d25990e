//! `train-albef grounding`: weakly supervised grounding (the CLI and the
//! printed table).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vl_data::BadEntries;
use vl_data::world::WORLD_FILE;
use vl_models::AlbefConfig;
use vl_training::albef::grounding::GroundingConfig;
use vl_training::albef::grounding::eval::GroundingScores;
use vl_training::albef::grounding::pipeline::{
    GroundingJob, GroundingOutcome, fine_tune_grounding,
};

use crate::{Common, synthetic_world, task_start};

#[derive(Args)]
pub(crate) struct GroundingArgs {
    #[command(flatten)]
    common: Common,
    /// YAML config with the reference Grounding.yaml keys (default: the tiny preset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A synthetic world directory (its grounding_{train,val,test}.json and
    /// grounding_dets.json); default: the world of --seed.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Starting weights: our checkpoint.ckpt or an official ALBEF .pth (default: the default
    /// run's checkpoint for --seed).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Continue a grounding run from its checkpoint.ckpt.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Score the --from weights without training.
    #[arg(long)]
    evaluate: bool,
    /// Count and skip unusable entries instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Epochs (overrides the config's).
    #[arg(long)]
    epochs: Option<usize>,
    /// The BERT layer whose cross-attention Grad-CAM reads (overrides the config's).
    #[arg(long)]
    gradcam_layer: Option<usize>,
    /// Where generated worlds are cached.
    #[arg(long, default_value = ".cache")]
    cache: PathBuf,
}

pub(crate) fn grounding_command(args: GroundingArgs) -> anyhow::Result<ExitCode> {
    let device = args.common.backend.device()?;
    let seed = args.common.seed;
    let mut config = match &args.config {
        Some(path) => GroundingConfig::from_yaml_file(path)?,
        None => GroundingConfig::tiny(AlbefConfig::tiny(0)),
    };
    let data = match (&args.data, &args.config) {
        (Some(data), _) => Some(data.clone()),
        (None, None) if args.resume.is_none() => Some(synthetic_world(&args.cache, seed, 0.0)?),
        (None, None) => None,
        (None, Some(_)) => None,
    };
    if let Some(data) = data {
        if !data.join(WORLD_FILE).is_file() {
            anyhow::bail!(
                "{} is not a synthetic world: give real data through --config (train_file, test_file, det_file, ref_file)",
                data.display()
            );
        }
        config.train_file = vec![data.join("grounding_train.json")];
        config.test_file = vec![
            data.join("grounding_val.json"),
            data.join("grounding_test.json"),
        ];
        config.det_file = data.join("grounding_dets.json");
    }
    if let Some(epochs) = args.epochs {
        config.schedular.epochs = epochs;
    }
    if let Some(layer) = args.gradcam_layer {
        config.gradcam_layer = layer;
    }
    config.validate()?;
    let start = task_start(
        args.resume.as_deref(),
        args.from.as_deref(),
        args.epochs,
        seed,
        &[
            ("--config", args.config.is_some()),
            ("--data", args.data.is_some()),
            ("--from", args.from.is_some()),
            ("--evaluate", args.evaluate),
        ],
    )?;
    let job = GroundingJob {
        config,
        start,
        out: args.common.run_dir(
            args.resume.as_deref(),
            &format!("runs/grounding-seed{seed}"),
        )?,
        seed,
        bad: match args.skip_bad {
            true => BadEntries::Skip,
            false => BadEntries::Fail,
        },
        evaluate_only: args.evaluate,
    };
    let outcome = fine_tune_grounding(&job, &device)?;
    print_grounding(&outcome);
    Ok(ExitCode::SUCCESS)
}

fn print_grounding(outcome: &GroundingOutcome) {
    if outcome.skipped.count() > 0 {
        log::warn!("{} unusable entries skipped", outcome.skipped.count());
    }
    let pct = |s: Option<&GroundingScores>, f: fn(&GroundingScores) -> Option<f64>| {
        s.and_then(f)
            .map_or("-".into(), |v| format!("{:.1}", 100.0 * v))
    };
    println!(
        "\n{:<22} {:>7} {:>7} {:>13} {:>12}",
        "", "val_d", "test_d", "test_d_multi", "test chance"
    );
    let row = |name: &str, e: &vl_training::albef::grounding::pipeline::GroundingEpoch| {
        println!(
            "{name:<22} {:>7} {:>7} {:>13} {:>12}",
            pct(e.val.as_ref(), |s| Some(s.d)),
            pct(e.test.as_ref(), |s| Some(s.d)),
            pct(e.test.as_ref(), |s| s.d_multi),
            pct(e.test.as_ref(), |s| Some(s.chance)),
        )
    };
    if let Some(e) = &outcome.zero_shot {
        row("starting weights", e);
    }
    for e in &outcome.epochs {
        row(&format!("epoch {}", e.epoch.unwrap_or(0)), e);
    }
    if let Some(best) = &outcome.best {
        row(
            &format!("best by val (epoch {})", best.epoch.unwrap_or(0)),
            best,
        );
    }
    if let Some(first) = outcome.pngs.first() {
        println!(
            "{} examples drawn (heat map, chosen box green, true box blue) in {}",
            outcome.pngs.len(),
            first.parent().unwrap_or(first).display()
        );
    }
    println!(
        "results: {}",
        outcome
            .paths
            .checkpoint
            .with_file_name("results.json")
            .display()
    );
}
