//! `train-albef`: ALBEF pretraining and zero-shot retrieval evaluation.
//!
//! With no arguments: generates the synthetic shapes world (cached),
//! trains a tokenizer on its captions, pretrains the `tiny` model on the CPU
//! for a few minutes, evaluates zero-shot retrieval on held-out images and
//! prints the table. `pretrain` and `eval-retrieval` take reference-style
//! YAML configs and real ALBEF manifests. See the README and docs/.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use vl_backend::Backend;
use vl_data::world::{WorldConfig, existing_world, write_world};
use vl_data::{BadEntries, TextTokenizer};
use vl_training::albef::PretrainConfig;
use vl_training::albef::downstream::TaskStart;
use vl_training::albef::pipeline::{
    PretrainJob, PretrainOutcome, RetrievalOutcome, Start, checkpoint_to_evaluate, evaluate_run,
    pretrain, world_manifests,
};
use vl_training::albef::tasks::{TasksJob, run_tasks};
use vl_training::eval::retrieval::RetrievalMetrics;
use vl_training::runner::{output_dir, refuse_on_resume};

mod grounding;
mod retrieval;
mod ve;

#[derive(Parser)]
#[command(version, about = "ALBEF pretraining and retrieval on burn")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    quick: QuickArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrain (ITC + ITM + MLM with momentum distillation).
    Pretrain(PretrainArgs),
    /// Zero-shot retrieval evaluation of a checkpoint (ITC top-k, ITM re-ranking).
    EvalRetrieval(EvalArgs),
    /// Every downstream task on the synthetic world from the default run's checkpoint
    /// (pretrained first if missing): one table beside chance and a text-only baseline.
    Tasks(TasksArgs),
    /// Weakly supervised grounding: retrieval fine-tuning on referring expressions, then
    /// Grad-CAM on a fusion layer's cross-attention picks a candidate box (val_d, test_d).
    Grounding(grounding::GroundingArgs),
    /// Fine-tune for image–text retrieval: ITC with image-id positives and an id queue,
    /// ITM hard negatives, momentum distillation; val/test retrieval every epoch.
    Retrieval(retrieval::RetrievalArgs),
    /// Fine-tune for visual entailment (SNLI-VE): a 3-way head on the fused [CLS],
    /// classifier distillation; val/test accuracy every epoch, best by val.
    Ve(ve::VeArgs),
    /// The backend-swap experiment: the same pretraining steps from the same
    /// weights and batches on every compiled backend, compared with the CPU.
    Backends(BackendsArgs),
}

#[derive(Args)]
struct BackendsArgs {
    /// Steps per backend.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// YAML config whose model, batch and queue are stepped (default: the
    /// tiny model on a batch of 32, as one process).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Tokens per (random) caption.
    #[arg(long, default_value_t = 32)]
    text_len: usize,
}

#[derive(Args, Clone)]
struct Common {
    /// Backend: cpu, wgpu or cuda (among those compiled in).
    #[arg(long, default_value = "cpu", global = true)]
    backend: Backend,
    /// Output directory (checkpoint, metrics, plot, results).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Seed of the world, the initialisation and every random draw.
    #[arg(long, default_value_t = 0, global = true)]
    seed: u64,
}

impl Common {
    /// Where a run writes: `--out`, else the directory of the checkpoint it
    /// resumes, else `default`; created, and checked to be writable.
    fn run_dir(&self, resume: Option<&Path>, default: &str) -> anyhow::Result<PathBuf> {
        Ok(output_dir(self.out.as_deref(), resume, Path::new(default))?)
    }

    /// `--out`, or `default`; created, and checked to be writable.
    fn out_dir(&self, default: &str) -> anyhow::Result<PathBuf> {
        self.run_dir(None, default)
    }
}

/// The no-argument run.
#[derive(Args)]
struct QuickArgs {
    #[command(flatten)]
    common: Common,
    /// Fraction of training captions corrupted in the generated world.
    #[arg(long, default_value_t = 0.0)]
    caption_noise: f64,
    /// Distillation weight α (0 turns momentum distillation off).
    #[arg(long)]
    alpha: Option<f64>,
    /// Epochs (overrides the preset's).
    #[arg(long)]
    epochs: Option<usize>,
    /// Where generated worlds are cached.
    #[arg(long, default_value = ".cache")]
    cache: PathBuf,
}

#[derive(Args)]
struct PretrainArgs {
    #[command(flatten)]
    common: Common,
    /// YAML config with the reference Pretrain.yaml keys (default: the tiny preset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A pretraining manifest, or a synthetic world directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Initial weights: an ALBEF .pth/.safetensors checkpoint.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Continue a run from its checkpoint.ckpt.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Count and skip unusable manifest entries instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Distillation weight α.
    #[arg(long)]
    alpha: Option<f64>,
    /// Epochs (overrides the config's schedule length).
    #[arg(long)]
    epochs: Option<usize>,
    /// Stop after this many steps in all (a checkpoint is written).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Skip the retrieval evaluation after training.
    #[arg(long)]
    no_eval: bool,
}

#[derive(Args)]
struct TasksArgs {
    #[command(flatten)]
    common: Common,
    /// Where generated worlds are cached.
    #[arg(long, default_value = ".cache")]
    cache: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    common: Common,
    /// A checkpoint.ckpt of this program, or an ALBEF .pth/.safetensors.
    #[arg(long)]
    checkpoint: PathBuf,
    /// YAML config (needed for .pth checkpoints; ours carry their config).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Retrieval manifest (`[{"image", "caption": [..]}]`) or world directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// tokenizer.json (default: the one next to the checkpoint).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", vl_training::error_report(err.chain()));
            ExitCode::FAILURE
        }
    }
}

/// The synthetic world of `seed` in `cache`, generated if missing.
fn synthetic_world(cache: &Path, seed: u64, caption_noise: f64) -> anyhow::Result<PathBuf> {
    let world = WorldConfig {
        seed,
        caption_noise,
        ..WorldConfig::default()
    };
    let world_dir = cache.join(format!(
        "shapes-world-seed{seed}-noise{caption_noise}-{}px-{}",
        world.image_size, world.images
    ));
    if existing_world(&world_dir, &world).is_none() {
        log::info!(
            "generating the synthetic world into {}",
            world_dir.display()
        );
        write_world(&world, &world_dir)
            .with_context(|| format!("writing {}", world_dir.display()))?;
    } else {
        log::info!("using the cached world {}", world_dir.display());
    }
    // Absolute: the configs and checkpoint headers that record it must
    // work from any directory.
    std::fs::canonicalize(&world_dir).with_context(|| format!("resolving {}", world_dir.display()))
}

/// Where a fine-tuning command starts: `--resume` (refusing the flags of
/// `fixed` that were set), else `--from`, else the default run's
/// checkpoint for `seed`.
fn task_start(
    resume: Option<&Path>,
    from: Option<&Path>,
    epochs: Option<usize>,
    seed: u64,
    fixed: &[(&str, bool)],
) -> anyhow::Result<TaskStart> {
    if let Some(checkpoint) = resume {
        refuse_on_resume(checkpoint, fixed)?;
        return Ok(TaskStart::Resume {
            checkpoint: checkpoint.to_owned(),
            epochs,
        });
    }
    if let Some(from) = from {
        return Ok(TaskStart::From(from.to_owned()));
    }
    let default = default_run_dir(seed).join("checkpoint.ckpt");
    if !default.is_file() {
        anyhow::bail!(
            "no starting weights: give --from, or pretrain first (`cargo run -p train-albef -- --seed {seed}` writes {})",
            default.display()
        );
    }
    Ok(TaskStart::From(default))
}

/// Where the default run of `seed` writes.
fn default_run_dir(seed: u64) -> PathBuf {
    PathBuf::from(format!("runs/albef-tiny-seed{seed}"))
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        None => quick(cli.quick),
        Some(Command::Pretrain(args)) => pretrain_command(args),
        Some(Command::EvalRetrieval(args)) => eval_command(args),
        Some(Command::Tasks(args)) => tasks_command(args),
        Some(Command::Grounding(args)) => grounding::grounding_command(args),
        Some(Command::Retrieval(args)) => retrieval::retrieval_command(args),
        Some(Command::Ve(args)) => ve::ve_command(args),
        Some(Command::Backends(args)) => backends_command(args),
    }
}

/// The default run: world → tokenizer → pretrain `tiny` → zero-shot retrieval.
fn quick(args: QuickArgs) -> anyhow::Result<ExitCode> {
    let seed = args.common.seed;
    let world_dir = synthetic_world(&args.cache, seed, args.caption_noise)?;
    let out = args
        .common
        .out
        .clone()
        .unwrap_or_else(|| default_run_dir(seed));
    let args = PretrainArgs {
        common: Common {
            out: Some(out),
            ..args.common
        },
        config: None,
        data: Some(world_dir),
        init_from: None,
        resume: None,
        skip_bad: false,
        alpha: args.alpha,
        epochs: args.epochs,
        max_steps: None,
        no_eval: false,
    };
    pretrain_command(args)
}

/// The config of a new run: the file (or the tiny preset), `--data` and
/// the overrides, validated.
fn pretrain_config(args: &PretrainArgs) -> anyhow::Result<PretrainConfig> {
    let mut config = match &args.config {
        Some(path) => PretrainConfig::from_yaml_file(path)?,
        None => PretrainConfig::tiny(0),
    };
    if let Some(data) = &args.data {
        match world_manifests(data) {
            Some((train, test)) => {
                config.train_file = vec![train];
                config.test_file.get_or_insert(test);
            }
            None => config.train_file = vec![data.clone()],
        }
    }
    if config.train_file.is_empty() {
        anyhow::bail!(
            "no training data: give --data (a manifest or a world directory) or train_file in --config"
        );
    }
    if let Some(alpha) = args.alpha {
        config.alpha = alpha;
    }
    if let Some(epochs) = args.epochs {
        config.schedular.epochs = epochs;
    }
    config
        .validate()
        .context("checking the config and its overrides")?;
    Ok(config)
}

fn pretrain_command(args: PretrainArgs) -> anyhow::Result<ExitCode> {
    let device = args.common.backend.device()?;
    let start = match &args.resume {
        Some(checkpoint) => {
            refuse_on_resume(
                checkpoint,
                &[
                    ("--config", args.config.is_some()),
                    ("--data", args.data.is_some()),
                    ("--init-from", args.init_from.is_some()),
                    ("--alpha", args.alpha.is_some()),
                ],
            )?;
            Start::Resume {
                checkpoint: checkpoint.clone(),
                epochs: args.epochs,
            }
        }
        None => Start::Fresh {
            config: Box::new(pretrain_config(&args)?),
            init_from: args.init_from.clone(),
        },
    };
    let job = PretrainJob {
        start,
        out: args.common.run_dir(args.resume.as_deref(), "runs/albef")?,
        seed: args.common.seed,
        bad: match args.skip_bad {
            true => BadEntries::Skip,
            false => BadEntries::Fail,
        },
        max_steps: args.max_steps,
        evaluate: !args.no_eval,
    };
    let outcome = pretrain(&job, &device)?;
    print_pretraining(&outcome);
    Ok(ExitCode::SUCCESS)
}

fn print_pretraining(outcome: &PretrainOutcome) {
    if let Some(report) = &outcome.warmup {
        println!(
            "vision warm-up: {} steps in {:.0}s, loss {:.3} → {:.3}; validation labels F1 {:.3}, exact {:.1} %",
            report.steps,
            report.seconds,
            report.first_loss,
            report.last_loss,
            report.held_out_f1.unwrap_or(f64::NAN),
            100.0 * report.held_out_exact.unwrap_or(f64::NAN),
        );
    }
    for entry in &outcome.skipped.entries {
        log::warn!("skipped {entry}");
    }
    if outcome.skipped.count() > 0 {
        log::warn!("{} unusable entries skipped", outcome.skipped.count());
    }
    let summary = &outcome.summary;
    match (&summary.first, &summary.last) {
        (Some(first), Some(last)) => println!(
            "trained {} steps in {:.0}s; loss {:.3} → {:.3}",
            summary.steps_this_run,
            summary.seconds,
            first.total(),
            last.total(),
        ),
        _ => println!("the run was already complete: no step to train"),
    }
    if let Some(retrieval) = &outcome.retrieval {
        print_table(retrieval);
    }
    println!("checkpoint: {}", outcome.paths.checkpoint.display());
    println!("metrics:    {}", outcome.paths.metrics.display());
    if summary.last.is_some() {
        println!("loss plot:  {}", outcome.paths.plot.display());
    }
}

fn print_table(outcome: &RetrievalOutcome) {
    println!(
        "\nzero-shot retrieval: {} images, {} captions of {} (ITC top-{}, ITM re-ranking); written to {}",
        outcome.images,
        outcome.texts,
        outcome.manifest.display(),
        outcome.k_test,
        outcome.written.display()
    );
    println!(
        "{:<26}{:>8}{:>8}{:>8}   chance R@1/5/10",
        "", "R@1", "R@5", "R@10"
    );
    let row = |name: &str, r: [f64; 3], c: [f64; 3]| {
        println!(
            "{name:<26}{:>8.1}{:>8.1}{:>8.1}   {:.1} / {:.1} / {:.1}",
            r[0], r[1], r[2], c[0], c[1], c[2]
        )
    };
    let tr = |m: &RetrievalMetrics| [m.txt_r1, m.txt_r5, m.txt_r10];
    let ir = |m: &RetrievalMetrics| [m.img_r1, m.img_r5, m.img_r10];
    let (m, itc, chance) = (
        &outcome.report.reranked,
        &outcome.report.contrastive,
        &outcome.chance,
    );
    row("image → text (TR)", tr(m), tr(chance));
    row("text → image (IR)", ir(m), ir(chance));
    println!(
        "{:<26}{:>8.1}   (chance {:.1})",
        "r_mean", m.r_mean, chance.r_mean
    );
    row("TR, ITC only (no ITM)", tr(itc), tr(chance));
    row("IR, ITC only (no ITM)", ir(itc), ir(chance));
    println!();
}

fn eval_command(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let device = args.common.backend.device()?;
    let out = args.common.out_dir("runs/albef-eval")?;
    let config = args
        .config
        .as_deref()
        .map(PretrainConfig::from_yaml_file)
        .transpose()?;
    let tokenizer_path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| args.checkpoint.with_file_name("tokenizer.json"));
    let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
    let (model, mut config) = checkpoint_to_evaluate(&args.checkpoint, config, &tokenizer, &device)
        .with_context(|| format!("loading {}", args.checkpoint.display()))?;
    if let Some(data) = &args.data {
        config.test_file =
            Some(world_manifests(data).map_or_else(|| data.clone(), |(_, test)| test));
    }
    let manifest = config
        .test_file
        .clone()
        .context("no evaluation data: give --data")?;
    let outcome = evaluate_run(&model, &config, &manifest, &tokenizer, &device, &out)?;
    print_table(&outcome);
    Ok(ExitCode::SUCCESS)
}

/// Runs the same steps on every compiled backend and prints, per backend,
/// the largest loss difference from the CPU run at each step and the speed.
fn backends_command(args: BackendsArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => PretrainConfig::from_yaml_file(path)?,
        None => vl_training::albef::backends::tiny_single_process(),
    };
    let steps = args.steps as usize;
    println!(
        "{steps} ALBEF pretraining steps (batch {}, {}-token captions) from the same weights and batches",
        config.batch_size, args.text_len
    );
    let mut reference: Option<Vec<f32>> = None;
    for backend in Backend::compiled() {
        let device = match backend.device() {
            Ok(device) => device,
            Err(e) => {
                println!("{backend:<6} unavailable: {e}");
                continue;
            }
        };
        let run = vl_training::albef::backends::step_losses(&config, args.text_len, &device, steps)
            .with_context(|| format!("running on {backend}"))?;
        let losses: Vec<f32> = run.iter().map(|(l, _)| *l).collect();
        // The first step includes one-off work (kernel compilation on GPUs).
        let mut ms: Vec<f64> = run.iter().skip(1).map(|(_, ms)| *ms).collect();
        ms.sort_by(f64::total_cmp);
        let median = ms.get(ms.len() / 2).copied().unwrap_or(run[0].1);
        let diffs = match &reference {
            Some(cpu) => losses
                .iter()
                .zip(cpu)
                .map(|(a, b)| format!("{:.1e}", (a - b).abs()))
                .collect::<Vec<_>>()
                .join(" "),
            None => "(reference)".to_owned(),
        };
        println!(
            "{backend:<6} {median:>8.1} ms/step {:>8.1} samples/s   |loss − cpu| per step: {diffs}",
            config.batch_size as f64 / (median / 1e3)
        );
        println!(
            "       losses: {}",
            losses
                .iter()
                .map(|l| format!("{l:.5}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        reference.get_or_insert(losses);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tasks`: the default run's checkpoint (trained first if missing), then
/// every downstream task, one table.
fn tasks_command(args: TasksArgs) -> anyhow::Result<ExitCode> {
    let seed = args.common.seed;
    let pretrained = default_run_dir(seed).join("checkpoint.ckpt");
    if !pretrained.is_file() {
        log::info!(
            "{} is missing: pretraining it first (the default run)",
            pretrained.display()
        );
        quick(QuickArgs {
            common: Common {
                out: None,
                ..args.common.clone()
            },
            caption_noise: 0.0,
            alpha: None,
            epochs: None,
            cache: args.cache.clone(),
        })?;
    }
    let job = TasksJob {
        world: synthetic_world(&args.cache, seed, 0.0)?,
        pretrained,
        out: args.common.out_dir(&format!("runs/tasks-seed{seed}"))?,
        seed,
    };
    let table = run_tasks(&job, &args.common.backend.device()?)?;
    println!(
        "\n{:<10} {:<18} {:>8} {:>8} {:>10}",
        "task", "metric", "value", "chance", "text-only"
    );
    for row in &table.rows {
        let text_only = row
            .text_only
            .map_or("-".to_string(), |t| format!("{:.3}", t));
        println!(
            "{:<10} {:<18} {:>8.3} {:>8.3} {:>10}",
            row.task, row.metric, row.value, row.chance, text_only
        );
    }
    println!("written to {}", job.out.join("tasks.json").display());
    Ok(ExitCode::SUCCESS)
}
