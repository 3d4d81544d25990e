//! `train-albef ve`: SNLI-VE fine-tuning (the CLI and the printed table).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vl_data::BadEntries;
use vl_models::AlbefConfig;
use vl_training::albef::ve::VeConfig;
use vl_training::albef::ve::pipeline::{VeJob, VeOutcome, fine_tune_ve};

use crate::{Common, synthetic_world, task_start};

#[derive(Args)]
pub(crate) struct VeArgs {
    #[command(flatten)]
    common: Common,
    /// YAML config with the reference VE.yaml keys (default: the tiny preset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training annotations, or a synthetic world directory (its ve_{train,val,test}.json);
    /// default: the world of --seed.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Starting weights: our pretraining checkpoint.ckpt or an official ALBEF .pth
    /// (default: the default run's checkpoint for --seed).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Continue a VE run from its checkpoint.ckpt.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Blank every image: the text-only baseline.
    #[arg(long)]
    text_only: bool,
    /// Count and skip unusable entries instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Epochs (overrides the config's).
    #[arg(long)]
    epochs: Option<usize>,
    /// Where generated worlds are cached.
    #[arg(long, default_value = ".cache")]
    cache: PathBuf,
}

pub(crate) fn ve_command(args: VeArgs) -> anyhow::Result<ExitCode> {
    let device = args.common.backend.device()?;
    let seed = args.common.seed;
    let mut config = match &args.config {
        Some(path) => VeConfig::from_yaml_file(path)?,
        None => VeConfig::tiny(AlbefConfig::tiny(0)),
    };
    let data = match (&args.data, &args.config) {
        (Some(data), _) => Some(data.clone()),
        (None, None) if args.resume.is_none() => Some(synthetic_world(&args.cache, seed, 0.0)?),
        (None, None) => None,
        (None, Some(_)) => None,
    };
    if let Some(data) = data {
        match data.join(vl_data::world::WORLD_FILE).is_file() {
            true => {
                config.train_file = data.join("ve_train.json");
                config.val_file = Some(data.join("ve_val.json"));
                config.test_file = Some(data.join("ve_test.json"));
            }
            false => config.train_file = data,
        }
    }
    if let Some(epochs) = args.epochs {
        config.schedular.epochs = epochs;
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
        ],
    )?;
    let job = VeJob {
        config,
        start,
        out: args
            .common
            .run_dir(args.resume.as_deref(), &format!("runs/ve-seed{seed}"))?,
        seed,
        bad: match args.skip_bad {
            true => BadEntries::Skip,
            false => BadEntries::Fail,
        },
        blank_images: args.text_only,
    };
    let outcome = fine_tune_ve(&job, &device)?;
    print_ve(&outcome);
    Ok(ExitCode::SUCCESS)
}

fn print_ve(outcome: &VeOutcome) {
    if outcome.skipped.count() > 0 {
        log::warn!("{} unusable entries skipped", outcome.skipped.count());
    }
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}", 100.0 * v));
    println!("\nepoch   val_acc  test_acc");
    for e in &outcome.epochs {
        println!(
            "{:>5}  {:>8}  {:>8}",
            e.epoch,
            pct(e.val_acc),
            pct(e.test_acc)
        );
    }
    if let Some(best) = outcome.best {
        println!(
            "best (by val): epoch {}, val_acc {}, test_acc {}; chance 33.3, majority class {}",
            best.epoch,
            pct(best.val_acc),
            pct(best.test_acc),
            pct(outcome.majority)
        );
    }
    println!(
        "checkpoint: {}\nresults:    {}",
        outcome.paths.checkpoint.display(),
        outcome
            .paths
            .checkpoint
            .with_file_name("results.json")
            .display()
    );
}
