//! `train-albef`: ALBEF pretraining and zero-shot retrieval evaluation.
//!
//! With no arguments: generates the synthetic shapes world (cached),
//! trains a tokenizer on its captions, pretrains the `tiny` model on the CPU
//! for a few minutes, evaluates zero-shot retrieval on held-out images and
//! prints the table. `pretrain` and `eval-retrieval` take reference-style
//! YAML configs and real ALBEF manifests. See the README and docs/.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use burn::module::Module;
use clap::{Args, Parser, Subcommand};
use vl_backend::Backend;
use vl_data::manifest::read_captioned_images;
use vl_data::world::{WorldConfig, existing_world, write_world};
use vl_data::{BadEntries, Framing, Loader, LoaderConfig, RetrievalSet, TextTokenizer};
use vl_models::Albef;
use vl_training::albef::{AlbefPretraining, PretrainConfig};
use vl_training::checkpoint::Checkpoint;
use vl_training::retrieval::{
    RetrievalEval, RetrievalMetrics, RetrievalReport, evaluate_retrieval,
};
use vl_training::runner::{RunPaths, StopAt, train};
use vl_training::vision_warmup::{VisionWarmupConfig, WarmupData, warm_up_vision};

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
    /// The backend-swap experiment: the same pretraining steps from the same
    /// weights and batches on every compiled backend, compared with the CPU.
    Backends(BackendsArgs),
}

#[derive(Args)]
struct BackendsArgs {
    /// Steps per backend.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Model and batch shapes (tiny, small, base: see docs/benchmarks.md).
    #[arg(long, default_value = "tiny")]
    preset: vl_training::bench::Preset,
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
    /// `--out`, or `default`; created if missing.
    fn out_dir(&self, default: &str) -> anyhow::Result<PathBuf> {
        let out = self.out.clone().unwrap_or_else(|| PathBuf::from(default));
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        Ok(out)
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
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        None => quick(cli.quick),
        Some(Command::Pretrain(args)) => pretrain_command(args),
        Some(Command::EvalRetrieval(args)) => eval_command(args),
        Some(Command::Backends(args)) => backends_command(args),
    }
}

/// The default run: world → tokenizer → pretrain `tiny` → zero-shot retrieval.
fn quick(args: QuickArgs) -> anyhow::Result<ExitCode> {
    let seed = args.common.seed;
    let world = WorldConfig {
        seed,
        caption_noise: args.caption_noise,
        ..WorldConfig::default()
    };
    let world_dir = args.cache.join(format!(
        "shapes-world-seed{seed}-noise{}-{}px-{}",
        args.caption_noise, world.image_size, world.images
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
    let out = args
        .common
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/albef-tiny-seed{seed}")));
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

/// The manifests of a synthetic world directory.
fn world_manifests(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    dir.join(vl_data::world::WORLD_FILE).is_file().then(|| {
        (
            dir.join("pretrain_en.json"),
            dir.join("retrieval_test_en.json"),
        )
    })
}

fn pretrain_command(args: PretrainArgs) -> anyhow::Result<ExitCode> {
    let device = args.common.backend.device()?;
    let out = args.common.out_dir("runs/albef")?;
    let paths = RunPaths::in_dir(&out);

    let (mut state, tokenizer) = match &args.resume {
        Some(checkpoint) => {
            let read = Checkpoint::read(checkpoint)
                .with_context(|| format!("reading {}", checkpoint.display()))?;
            let tokenizer = load_tokenizer(&out.join("tokenizer.json"))?;
            let state = AlbefPretraining::resume(&read, tokenizer.special_tokens()?, &device)?;
            log::info!(
                "resuming at step {} (epoch {})",
                state.position.step,
                state.position.epoch
            );
            (state, tokenizer)
        }
        None => {
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
                bail!(
                    "no training data: give --data (a manifest or a world directory) or train_file in --config"
                );
            }
            if let Some(alpha) = args.alpha {
                config.alpha = alpha;
            }
            if let Some(epochs) = args.epochs {
                config.schedular.epochs = epochs;
            }
            let tokenizer = match &config.tokenizer {
                Some(path) => load_tokenizer(path)?,
                None if args.init_from.is_some() => {
                    bail!(
                        "--init-from needs the checkpoint's tokenizer: set `tokenizer` in --config"
                    )
                }
                None => {
                    // A tokenizer trained here defines the vocabulary.
                    let tokenizer = train_tokenizer(&config, &out)?;
                    config.model.bert_config.vocab_size = tokenizer.vocab_size();
                    tokenizer
                }
            };
            if tokenizer.vocab_size() > config.model.bert_config.vocab_size {
                bail!(
                    "the tokenizer has {} tokens but bert_config.vocab_size is {}",
                    tokenizer.vocab_size(),
                    config.model.bert_config.vocab_size
                );
            }
            let seed = args.common.seed;
            device.seed(seed);
            let model = match &args.init_from {
                Some(path) => {
                    let loaded =
                        vl_models::import::albef::load_albef_file(path, &config.model, &device)
                            .with_context(|| format!("loading {}", path.display()))?;
                    if !loaded.model.has_mlm_head() {
                        bail!(
                            "{} has no MLM head (a fine-tuned checkpoint); pretraining needs one",
                            path.display()
                        );
                    }
                    if config.vision_warmup.is_some() {
                        log::info!(
                            "vision_warmup skipped: the image encoder comes from --init-from"
                        );
                    }
                    loaded.model
                }
                None => {
                    let mut model = config.model.init(true, &device);
                    if let Some(warmup) = &config.vision_warmup {
                        model.visual_encoder = warm_up_vision_on_world(
                            model.visual_encoder,
                            &config,
                            warmup,
                            seed,
                            &device,
                        )?;
                    }
                    model
                }
            };
            let config_path = out.join("config.json");
            std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)
                .with_context(|| format!("writing {}", config_path.display()))?;
            (
                AlbefPretraining::new(config, model, tokenizer.special_tokens()?, seed, &device),
                tokenizer,
            )
        }
    };
    let config = state.config.clone();
    let bad = if args.skip_bad {
        BadEntries::Skip
    } else {
        BadEntries::Fail
    };
    let mut items = Vec::new();
    for manifest in &config.train_file {
        let (mut read, skipped) = read_captioned_images(
            manifest,
            config.image_root.as_deref(),
            config.max_words,
            bad,
        )?;
        for entry in &skipped.entries {
            log::warn!("skipped {entry}");
        }
        items.append(&mut read);
    }
    let loader = Loader::new(
        items,
        Arc::new(tokenizer.clone()),
        LoaderConfig {
            batch_size: config.batch_size,
            image_size: config.model.image_res as u32,
            augment: Some(config.augment.clone()),
            max_tokens: config.max_tokens,
            seed: state.seed,
            prefetch: 2,
            bad,
            similar_fraction: config.similar_fraction,
        },
    );
    log::info!(
        "pretraining on {} images, {} steps per epoch, {} epochs, batch {}, backend {}",
        loader.len(),
        loader.steps_per_epoch(),
        config.schedular.epochs,
        config.batch_size,
        args.common.backend
    );
    let summary = train(
        &mut state,
        &loader,
        &paths,
        StopAt {
            epochs: config.schedular.epochs,
            max_steps: args.max_steps,
        },
        "pretrain",
    )?;
    let skipped = loader.skipped();
    for entry in &skipped.entries {
        log::warn!("skipped {entry}");
    }
    if skipped.count() > 0 {
        log::warn!("{} unusable images skipped", skipped.count());
    }
    println!(
        "trained {} steps in {:.0}s; loss {:.3} → {:.3}",
        summary.steps_this_run,
        summary.seconds,
        summary.first.map_or(f32::NAN, |l| l.total()),
        summary.last.map_or(f32::NAN, |l| l.total()),
    );
    let reached_end = state.position.step >= config.schedular.epochs * loader.steps_per_epoch();
    if let (Some(test), false, true) = (&config.test_file, args.no_eval, reached_end) {
        let metrics = evaluate(
            &state.evaluated(),
            &config,
            test,
            &tokenizer,
            args.common.backend,
            &out,
        )?;
        print_table(&metrics.0, &metrics.1, &metrics.2);
    }
    println!("checkpoint: {}", paths.checkpoint.display());
    println!("metrics:    {}", paths.metrics.display());
    println!("loss plot:  {}", paths.plot.display());
    Ok(ExitCode::SUCCESS)
}

/// The `vision_warmup` of a fresh model: the synthetic world beside the
/// training manifest supplies the labels (training split) and the score
/// (validation split). Other data has no labels: the encoder is returned
/// as it is, with a warning.
fn warm_up_vision_on_world(
    visual_encoder: vl_models::Vit,
    config: &PretrainConfig,
    warmup: &VisionWarmupConfig,
    seed: u64,
    device: &burn::tensor::Device,
) -> anyhow::Result<vl_models::Vit> {
    let Some(world) = config
        .train_file
        .first()
        .and_then(|manifest| manifest.parent())
        .filter(|dir| dir.join(vl_data::world::WORLD_FILE).is_file())
    else {
        log::warn!(
            "vision_warmup needs a synthetic world's labels (world.json beside the training \
             manifest); the image encoder starts untrained (--init-from loads pretrained weights)"
        );
        return Ok(visual_encoder);
    };
    let data = WarmupData::from_world(world, warmup, config.model.patch_size as u32)?;
    log::info!(
        "warming the image encoder up on {} labelled training images for {} epochs",
        data.train.len(),
        warmup.epochs
    );
    let (visual_encoder, report) = warm_up_vision(
        visual_encoder,
        &data,
        warmup,
        config.model.image_res as u32,
        &config.augment,
        seed,
        device,
    )?;
    println!(
        "vision warm-up: {} steps in {:.0}s, loss {:.3} → {:.3}; validation labels F1 {:.3}, exact {:.1} %",
        report.steps,
        report.seconds,
        report.first_loss,
        report.last_loss,
        report.held_out_f1.unwrap_or(f64::NAN),
        100.0 * report.held_out_exact.unwrap_or(f64::NAN),
    );
    Ok(visual_encoder)
}

fn load_tokenizer(path: &Path) -> anyhow::Result<TextTokenizer> {
    TextTokenizer::from_file(path)
        .with_context(|| format!("loading the tokenizer {}", path.display()))
}

/// Trains a WordPiece tokenizer on the training captions (as cleaned for
/// the model) and saves it as `out/tokenizer.json`.
fn train_tokenizer(config: &PretrainConfig, out: &Path) -> anyhow::Result<TextTokenizer> {
    let mut captions = Vec::new();
    for manifest in &config.train_file {
        let (items, _) = read_captioned_images(
            manifest,
            config.image_root.as_deref(),
            config.max_words,
            BadEntries::Skip,
        )?;
        captions.extend(items.into_iter().flat_map(|i| i.captions));
    }
    let tokenizer = TextTokenizer::train_wordpiece(captions.iter(), 30522, Framing::Start)?;
    let path = out.join("tokenizer.json");
    tokenizer.save(&path)?;
    log::info!(
        "trained a {}-token WordPiece tokenizer: {}",
        tokenizer.vocab_size(),
        path.display()
    );
    Ok(tokenizer)
}

/// Evaluates and writes `eval_retrieval.json` (the reference's keys for the
/// ITM-re-ranked metrics, and the ITC-only ones under `itc`) and
/// `rankings.json` (each query's ten best candidates, both rankings);
/// returns the report, chance and the set's size description.
fn evaluate(
    model: &Albef,
    config: &PretrainConfig,
    manifest: &Path,
    tokenizer: &TextTokenizer,
    backend: Backend,
    out: &Path,
) -> anyhow::Result<(RetrievalReport, RetrievalMetrics, String)> {
    let (items, _) = read_captioned_images(
        manifest,
        config.image_root.as_deref(),
        config.max_words,
        BadEntries::Fail,
    )?;
    let set = RetrievalSet::new(&items);
    let device = backend.device()?;
    let model = model.valid().fork(&device);
    let eval = RetrievalEval {
        image_size: config.model.image_res as u32,
        max_tokens: config.max_tokens,
        k_test: config.k_test,
        batch_size: 128,
    };
    let bar = vl_training::progress::bar(0, "retrieval");
    let scores = evaluate_retrieval(&model, &set, tokenizer, &eval, &device, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let report = scores.report(&set);
    let rankings = out.join("rankings.json");
    std::fs::write(
        &rankings,
        serde_json::to_string(&scores.rankings(&set, 10))?,
    )
    .with_context(|| format!("writing {}", rankings.display()))?;
    let chance = RetrievalMetrics::chance(&set);
    let path = out.join("eval_retrieval.json");
    let mut json = serde_json::to_value(report.reranked)?;
    json["itc"] = serde_json::to_value(report.contrastive)?;
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let what = format!(
        "{} images, {} captions of {} (ITC top-{}, ITM re-ranking); written to {}",
        set.images.len(),
        set.texts.len(),
        manifest.display(),
        eval.k_test,
        path.display()
    );
    Ok((report, chance, what))
}

fn print_table(report: &RetrievalReport, chance: &RetrievalMetrics, what: &str) {
    println!("\nzero-shot retrieval: {what}");
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
    let (m, itc) = (&report.reranked, &report.contrastive);
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
    let is_ours = args.checkpoint.extension().is_some_and(|e| e == "ckpt");
    let (model, mut config) = if is_ours {
        let checkpoint = Checkpoint::read(&args.checkpoint)?;
        let config: PretrainConfig = serde_json::from_value(checkpoint.state["config"].clone())
            .context("the checkpoint carries no pretraining config")?;
        // The weights a run evaluates: its weight average when it kept one.
        let section = match config.model_ema_decay {
            Some(_) => vl_training::albef::MODEL_EMA,
            None => "model",
        };
        let model = vl_training::checkpoint::load_module_bytes(
            config.model.init(true, &device),
            checkpoint.section(section)?,
        )?;
        (model, config)
    } else {
        let config = match &args.config {
            Some(path) => PretrainConfig::from_yaml_file(path)?,
            None => bail!("an ALBEF .pth needs --config (its model shape)"),
        };
        let loaded =
            vl_models::import::albef::load_albef_file(&args.checkpoint, &config.model, &device)
                .with_context(|| format!("loading {}", args.checkpoint.display()))?;
        (loaded.model, config)
    };
    if let Some(data) = &args.data {
        config.test_file =
            Some(world_manifests(data).map_or_else(|| data.clone(), |(_, test)| test));
    }
    let manifest = config
        .test_file
        .clone()
        .context("no evaluation data: give --data")?;
    let tokenizer_path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| args.checkpoint.with_file_name("tokenizer.json"));
    let tokenizer = load_tokenizer(&tokenizer_path)?;
    let (metrics, chance, what) = evaluate(
        &model,
        &config,
        &manifest,
        &tokenizer,
        args.common.backend,
        &out,
    )?;
    print_table(&metrics, &chance, &what);
    Ok(ExitCode::SUCCESS)
}

/// Runs the same steps on every compiled backend and prints, per backend,
/// the largest loss difference from the CPU run at each step and the speed.
fn backends_command(args: BackendsArgs) -> anyhow::Result<ExitCode> {
    let config = args.preset.config();
    println!(
        "{} ALBEF pretraining steps, preset {} (batch {}), from the same weights and batches",
        args.steps, args.preset, config.batch
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
        let run = vl_training::bench::albef_losses(args.preset, &device, args.steps)
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
            config.batch as f64 / (median / 1e3)
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
