//! `train-albef retrieval`: image–text retrieval fine-tuning (the CLI and
//! the printed table).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vl_data::BadEntries;
use vl_data::world::{Language, WORLD_FILE, files};
use vl_models::AlbefConfig;
use vl_training::albef::retrieval::RetrievalConfig;
use vl_training::albef::retrieval::pipeline::{
    RetrievalJob, RetrievalOutcome, fine_tune_retrieval,
};
use vl_training::eval::retrieval::RetrievalMetrics;

use crate::{Common, synthetic_world, task_start};

#[derive(Args)]
pub(crate) struct RetrievalArgs {
    #[command(flatten)]
    common: Common,
    /// YAML config with the reference Retrieval_{coco,flickr}.yaml keys (default: the tiny
    /// preset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A training manifest, or a synthetic world directory (its retrieval_{train,val,test}_en.json);
    /// default: the world of --seed.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Starting weights: our checkpoint.ckpt or an official ALBEF .pth (default: the default
    /// run's checkpoint for --seed).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Continue a retrieval run from its checkpoint.ckpt.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Score the --from weights on the validation and test manifests without training
    /// (e.g. the official mscoco.pth / flickr30k.pth).
    #[arg(long)]
    evaluate: bool,
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

pub(crate) fn retrieval_command(args: RetrievalArgs) -> anyhow::Result<ExitCode> {
    let device = args.common.backend.device()?;
    let seed = args.common.seed;
    let mut config = match &args.config {
        Some(path) => RetrievalConfig::from_yaml_file(path)?,
        None => RetrievalConfig::tiny(AlbefConfig::tiny(0)),
    };
    let data = match (&args.data, &args.config) {
        (Some(data), _) => Some(data.clone()),
        (None, None) if args.resume.is_none() => Some(synthetic_world(&args.cache, seed, 0.0)?),
        (None, None) => None,
        (None, Some(_)) => None,
    };
    if let Some(data) = data {
        match data.join(WORLD_FILE).is_file() {
            true => {
                let manifest = |split: &str| data.join(files::retrieval(split, Language::En));
                config.train_file = vec![manifest("train")];
                config.val_file = Some(manifest("val"));
                config.test_file = Some(manifest("test"));
            }
            false => config.train_file = vec![data],
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
            ("--evaluate", args.evaluate),
        ],
    )?;
    let job = RetrievalJob {
        config,
        start,
        out: args.common.run_dir(
            args.resume.as_deref(),
            &format!("runs/retrieval-seed{seed}"),
        )?,
        seed,
        bad: match args.skip_bad {
            true => BadEntries::Skip,
            false => BadEntries::Fail,
        },
        evaluate_only: args.evaluate,
        max_steps: None,
    };
    let outcome = fine_tune_retrieval(&job, &device)?;
    print_retrieval(&outcome);
    Ok(ExitCode::SUCCESS)
}

fn print_retrieval(outcome: &RetrievalOutcome) {
    if outcome.skipped.count() > 0 {
        log::warn!("{} unusable entries skipped", outcome.skipped.count());
    }
    let row = |name: &str, m: Option<&RetrievalMetrics>| {
        if let Some(m) = m {
            println!(
                "{name:<22} {:>6.1} {:>6.1} {:>6.1}   {:>6.1} {:>6.1} {:>6.1}   {:>6.1}",
                m.txt_r1, m.txt_r5, m.txt_r10, m.img_r1, m.img_r5, m.img_r10, m.r_mean
            )
        }
    };
    println!(
        "\n{:<22} {:>6} {:>6} {:>6}   {:>6} {:>6} {:>6}   {:>6}",
        "test", "txt_r1", "r5", "r10", "img_r1", "r5", "r10", "r_mean"
    );
    row("chance", outcome.chance.as_ref());
    row("starting weights", outcome.zero_shot.as_ref());
    for e in &outcome.epochs {
        row(&format!("epoch {}", e.epoch), e.test.as_ref());
    }
    if let Some(best) = &outcome.best {
        row(
            &format!("best by val (epoch {})", best.epoch),
            best.test.as_ref(),
        );
    }
    if let Some(val) = &outcome.zero_shot_val {
        row("validation", Some(val));
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
