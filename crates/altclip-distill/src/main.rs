//! `altclip-distill`: AltCLIP's recipe (Chen et al., 2022) on burn.
//!
//! With no arguments: generates the synthetic shapes world (cached), trains
//! a tiny CLIP teacher on its English captions (cached), trains a
//! multilingual tokenizer, runs stage 1 (teacher learning: MSE on parallel
//! text) and stage 2 (contrastive, image tower frozen), and prints zero-shot
//! classification and retrieval per language, teacher beside student after
//! each stage. Subcommands run one stage each. See the README and docs/.

mod data;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use vl_backend::Backend;
use vl_data::world::Language;
use vl_data::{Framing, Loader, LoaderConfig, TextTokenizer};
use vl_models::altclip::AltClipTextModel;
use vl_models::{AltClipModel, ClipModel};
use vl_training::altclip::{
    AltClipRecipe, CaptionBatches, ContrastiveTuning, Distillation, DualEncoder, ParallelBatches,
    TeacherTraining, class_embeddings, dual_encoder_retrieval, embed_images, embed_texts,
    held_out_mse, load_student, load_teacher, teacher_targets, zero_shot_accuracy,
};
use vl_training::checkpoint::Checkpoint;
use vl_training::runner::{RunPaths, StopAt, train};

use crate::data::{EvalSet, PairSet, Task};

#[derive(Parser)]
#[command(
    version,
    about = "AltCLIP teacher learning and contrastive tuning on burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    quick: QuickArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train the CLIP teacher contrastively on English captions.
    Teacher(TeacherArgs),
    /// Stage 1: the student regresses the teacher's text embeddings on parallel text.
    Distill(DistillArgs),
    /// Stage 2: contrastive tuning of the student's text side, image tower frozen.
    Contrastive(ContrastiveArgs),
    /// Zero-shot classification and retrieval per language, teacher beside student.
    Eval(EvalArgs),
    /// Write a student checkpoint as an HF AltCLIP directory.
    Export(ExportArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// Backend: cpu, wgpu or cuda (among those compiled in).
    #[arg(long, default_value = "cpu", global = true)]
    backend: Backend,
    /// Output directory.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Seed of the world, the initialisation and every random draw.
    #[arg(long, default_value_t = 0, global = true)]
    seed: u64,
    /// YAML or JSON recipe (the keys of `AltClipRecipe`; default: tiny).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

impl Common {
    fn out_dir(&self, default: &str) -> anyhow::Result<PathBuf> {
        let out = self.out.clone().unwrap_or_else(|| PathBuf::from(default));
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        Ok(out)
    }

    fn recipe(&self) -> anyhow::Result<AltClipRecipe> {
        match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            }
            None => Ok(AltClipRecipe::tiny()),
        }
    }
}

/// The data a run trains and evaluates on.
#[derive(Args, Clone)]
struct DataArgs {
    /// A synthetic world directory (default: generate one into --cache).
    #[arg(long)]
    world: Option<PathBuf>,
    /// Fashion-MNIST instead of the synthetic world: the directory of the
    /// Debian package `dataset-fashion-mnist` (its IDX .gz files).
    #[arg(long, conflicts_with = "world")]
    fashion_mnist: Option<PathBuf>,
    /// Where generated worlds and image caches live.
    #[arg(long, default_value = ".cache")]
    cache: PathBuf,
    /// Student languages besides English (codes of the world's languages).
    #[arg(long, value_delimiter = ',', default_value = "zh,de,fr")]
    languages: Vec<String>,
}

/// The no-argument run.
#[derive(Args)]
struct QuickArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    data: DataArgs,
    /// Also distil on the English–Chinese pairs of the system's gettext
    /// catalogs (`/usr/share/locale/zh_CN/LC_MESSAGES/*.mo`, or this root).
    #[arg(long, num_args = 0..=1, default_missing_value = vl_data::parallel::SYSTEM_LOCALE_DIR)]
    gettext: Option<PathBuf>,
    /// Use this teacher (a `teacher` checkpoint.ckpt or an HF CLIP
    /// directory, tokenizer.json beside it) instead of training one.
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Retrain the teacher even if a cached one exists.
    #[arg(long, conflicts_with = "teacher")]
    retrain_teacher: bool,
}

#[derive(Args)]
struct TeacherArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    data: DataArgs,
    /// Continue a teacher run from its checkpoint.ckpt.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Epochs (overrides the recipe's).
    #[arg(long)]
    epochs: Option<usize>,
}

#[derive(Args)]
struct DistillArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    data: DataArgs,
    /// The teacher: a checkpoint.ckpt of `teacher`, or an HF CLIP
    /// directory (config.json, model.safetensors); its tokenizer.json beside it.
    #[arg(long)]
    teacher: PathBuf,
    /// Start the student's text tower from an HF XLM-R or AltCLIP directory
    /// (its tokenizer.json is then the student's) instead of a fresh `tiny`.
    #[arg(long)]
    student: Option<PathBuf>,
    /// More parallel text: TSV files of `english<TAB>target` lines.
    #[arg(long)]
    parallel: Vec<PathBuf>,
    /// Also the English–Chinese pairs of the gettext catalogs under this
    /// locale root (default /usr/share/locale).
    #[arg(long, num_args = 0..=1, default_missing_value = vl_data::parallel::SYSTEM_LOCALE_DIR)]
    gettext: Option<PathBuf>,
    /// Student tokenizer.json (default: train a Unigram one on the corpus).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Continue a stage-1 run from its checkpoint.ckpt.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Epochs (overrides the recipe's).
    #[arg(long)]
    epochs: Option<usize>,
}

#[derive(Args)]
struct ContrastiveArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    data: DataArgs,
    /// The stage-1 student: a checkpoint.ckpt of `distill` (its tokenizer.json beside it).
    #[arg(long)]
    student: PathBuf,
    /// Continue a stage-2 run from its checkpoint.ckpt.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Epochs (overrides the recipe's).
    #[arg(long)]
    epochs: Option<usize>,
    /// Peak learning rate (overrides the recipe's; the schedule scales with it).
    #[arg(long)]
    lr: Option<f64>,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    data: DataArgs,
    /// A teacher checkpoint.ckpt (tokenizer.json beside it).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// A student checkpoint.ckpt of stage 1 or 2 (tokenizer.json beside it).
    #[arg(long)]
    student: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    common: Common,
    /// A student checkpoint.ckpt of stage 1 or 2 (tokenizer.json beside it).
    #[arg(long)]
    student: PathBuf,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => quick(cli.quick),
        Some(Command::Teacher(args)) => {
            let recipe = args.common.recipe()?;
            let task = Task::open(&args.data, args.common.seed)?;
            let out = args.common.out_dir("runs/altclip-teacher")?;
            train_teacher(
                &task,
                recipe,
                &out,
                &args.common,
                args.resume.as_deref(),
                args.epochs,
            )?;
            Ok(())
        }
        Some(Command::Distill(args)) => distill_command(args),
        Some(Command::Contrastive(args)) => contrastive_command(args),
        Some(Command::Eval(args)) => eval_command(args),
        Some(Command::Export(args)) => export_command(args),
    }
}

/// The default run: world → teacher (cached) → stage 1 → stage 2, with the
/// per-language table after each.
fn quick(args: QuickArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let mut recipe = common.recipe()?;
    let task = Task::open(&args.data, common.seed)?;
    let out = common.out_dir(&format!("runs/altclip-{}-seed{}", task.name(), common.seed))?;
    let device = common.backend.device()?;

    // The teacher is cached by everything that determines it.
    let teacher_dir = args.data.cache.join(format!(
        "altclip-teacher-{}-seed{}-{:016x}",
        task.name(),
        common.seed,
        fingerprint(&recipe)
    ));
    let cached = teacher_dir.join("checkpoint.ckpt");
    let (teacher, teacher_tokenizer) = if let Some(path) = &args.teacher {
        let (teacher, tokenizer, loaded) = load_any_teacher(path, recipe, &device)?;
        recipe = loaded;
        (teacher, tokenizer)
    } else if cached.is_file() && !args.retrain_teacher {
        log::info!("using the cached teacher {}", cached.display());
        load_teacher_run(&cached, &device)?
    } else {
        std::fs::create_dir_all(&teacher_dir)?;
        train_teacher(&task, recipe.clone(), &teacher_dir, common, None, None)?
    };

    let eval = EvalSet::new(&task, &recipe)?;
    let mut rows = Vec::new();
    rows.extend(evaluate(
        &teacher,
        &teacher_tokenizer,
        &eval,
        &recipe,
        "teacher",
        "teacher",
        &device,
    )?);

    let stage1_dir = out.join("stage1");
    std::fs::create_dir_all(&stage1_dir)?;
    let pairs = PairSet::gather(&task, &[], args.gettext.as_deref())?;
    let stage1 = run_distill(
        &teacher,
        &teacher_tokenizer,
        &pairs,
        None,
        None,
        recipe.clone(),
        &stage1_dir,
        common,
        None,
    )?;
    rows.extend(evaluate(
        &stage1.student,
        &stage1.tokenizer,
        &eval,
        &recipe,
        "student",
        "stage1",
        &device,
    )?);

    let stage2_dir = out.join("stage2");
    std::fs::create_dir_all(&stage2_dir)?;
    stage1.tokenizer.save(&stage2_dir.join("tokenizer.json"))?;
    let student = run_contrastive(
        &task,
        stage1.student,
        &stage1.tokenizer,
        stage1.recipe.clone(),
        &stage2_dir,
        common,
        None,
    )?;
    rows.extend(evaluate(
        &student,
        &stage1.tokenizer,
        &eval,
        &recipe,
        "student",
        "stage2",
        &device,
    )?);
    let results = Results {
        rows,
        chance: eval.chance(),
        held_out_mse: Some(stage1.mse),
    };
    results.write(&out.join("results.json"))?;
    results.print(&task);
    let teacher_source = args.teacher.as_deref().unwrap_or(&teacher_dir);
    println!("teacher:  {}", teacher_source.display());
    println!("stage 1:  {}", stage1_dir.display());
    println!("stage 2:  {}", stage2_dir.display());
    println!("results:  {}", out.join("results.json").display());
    Ok(())
}

/// A stable hash of what determines the teacher (its cache key).
fn fingerprint(recipe: &AltClipRecipe) -> u64 {
    let text = serde_json::json!([
        recipe.teacher,
        recipe.teacher_vocab_size,
        recipe.teacher_training,
        recipe.augment,
        recipe.max_tokens,
        recipe.max_words,
    ])
    .to_string();
    // FNV-1a: stable across runs and platforms, unlike `DefaultHasher`.
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn load_tokenizer(path: &Path) -> anyhow::Result<TextTokenizer> {
    TextTokenizer::from_file(path)
        .with_context(|| format!("loading the tokenizer {}", path.display()))
}

fn load_teacher_run(
    checkpoint: &Path,
    device: &burn::tensor::Device,
) -> anyhow::Result<(ClipModel, TextTokenizer)> {
    let read = Checkpoint::read(checkpoint)?;
    let model = load_teacher(&read, device)?;
    let tokenizer = load_tokenizer(&checkpoint.with_file_name("tokenizer.json"))?;
    Ok((model, tokenizer))
}

/// A teacher from a `teacher` checkpoint (with its recipe) or from an HF
/// CLIP directory (into `recipe`, whose student then projects to the
/// teacher's text width); its tokenizer.json beside it.
fn load_any_teacher(
    path: &Path,
    mut recipe: AltClipRecipe,
    device: &burn::tensor::Device,
) -> anyhow::Result<(ClipModel, TextTokenizer, AltClipRecipe)> {
    if path.is_dir() {
        let config: vl_models::ClipConfig =
            vl_models::import::read_json(&path.join("config.json"))?;
        let (model, _) = vl_models::import::clip::load_clip_dir(path, device)
            .with_context(|| format!("loading {}", path.display()))?;
        recipe.student.project_dim = config.text_config.hidden_size;
        recipe.teacher = config;
        let tokenizer = load_tokenizer(&path.join("tokenizer.json"))?;
        return Ok((model, tokenizer, recipe));
    }
    let (teacher, tokenizer) = load_teacher_run(path, device)?;
    let recipe = vl_training::altclip::recipe_of(&Checkpoint::read(path)?)?;
    Ok((teacher, tokenizer, recipe))
}

fn load_student_run(
    checkpoint: &Path,
    device: &burn::tensor::Device,
) -> anyhow::Result<(AltClipModel, TextTokenizer, AltClipRecipe)> {
    let read = Checkpoint::read(checkpoint)?;
    let model = load_student(&read, device)?;
    let recipe = vl_training::altclip::recipe_of(&read)?;
    let tokenizer = load_tokenizer(&checkpoint.with_file_name("tokenizer.json"))?;
    Ok((model, tokenizer, recipe))
}

/// Trains (or resumes) the teacher into `out`; returns it and its tokenizer.
fn train_teacher(
    task: &Task,
    mut recipe: AltClipRecipe,
    out: &Path,
    common: &Common,
    resume: Option<&Path>,
    epochs: Option<usize>,
) -> anyhow::Result<(ClipModel, TextTokenizer)> {
    let device = common.backend.device()?;
    let items = task.teacher_items(&recipe)?;
    let tokenizer_path = out.join("tokenizer.json");
    let (mut state, tokenizer) = match resume {
        Some(path) => {
            let read = Checkpoint::read(path)?;
            let state = TeacherTraining::resume(&read, &device)?;
            (state, load_tokenizer(&tokenizer_path)?)
        }
        None => {
            let tokenizer = TextTokenizer::train_wordpiece(
                items.iter().flat_map(|i| i.captions.iter()),
                recipe.teacher_vocab_size,
                Framing::StartEnd,
            )?;
            tokenizer.save(&tokenizer_path)?;
            let text = &mut recipe.teacher.text_config;
            text.vocab_size = tokenizer.vocab_size();
            text.eos_token_id = tokenizer.token_id("[SEP]").map(i64::from);
            text.bos_token_id = tokenizer.token_id("[CLS]").map(i64::from);
            text.pad_token_id = Some(tokenizer.special_tokens()?.pad);
            if let Some(epochs) = epochs {
                recipe.teacher_training.schedular.epochs = epochs;
            }
            device.seed(common.seed);
            let model = recipe.teacher.init(&device);
            (
                TeacherTraining::new(recipe, model, common.seed, &device),
                tokenizer,
            )
        }
    };
    let stage = state.recipe.teacher_training.clone();
    let loader = Loader::new(
        items,
        Arc::new(tokenizer.clone()),
        LoaderConfig {
            batch_size: stage.batch_size,
            image_size: state.recipe.teacher.vision_config.image_size as u32,
            augment: Some(state.recipe.augment.clone()),
            max_tokens: state.recipe.max_tokens,
            seed: common.seed,
            prefetch: 2,
            bad: vl_data::BadEntries::Fail,
            similar_fraction: 0.0,
        },
    );
    log::info!(
        "training the teacher on {} images, {} steps per epoch, {} epochs",
        loader.len(),
        loader.steps_per_epoch(),
        stage.schedular.epochs
    );
    let summary = train(
        &mut state,
        &loader,
        &RunPaths::in_dir(out),
        StopAt {
            epochs: stage.schedular.epochs,
            max_steps: None,
        },
        "teacher",
    )?;
    log::info!(
        "teacher: {} steps in {:.0}s ({:.0} samples/s)",
        summary.steps_this_run,
        summary.seconds,
        summary.samples_per_s
    );
    Ok((state.model(), tokenizer))
}

/// What stage 1 produced.
struct Stage1 {
    student: AltClipModel,
    tokenizer: TextTokenizer,
    /// The recipe as stage 1 completed it (the student's vocabulary).
    recipe: AltClipRecipe,
    mse: HeldOutMse,
}

/// Held-out stage-1 MSE before and after.
#[derive(Debug, Clone, Copy, Serialize)]
struct HeldOutMse {
    before: f64,
    after: f64,
}

#[allow(clippy::too_many_arguments)]
fn run_distill(
    teacher: &ClipModel,
    teacher_tokenizer: &TextTokenizer,
    pairs: &PairSet,
    tokenizer: Option<TextTokenizer>,
    init_text: Option<AltClipTextModel>,
    mut recipe: AltClipRecipe,
    out: &Path,
    common: &Common,
    resume: Option<&Path>,
) -> anyhow::Result<Stage1> {
    let device = common.backend.device()?;
    let tokenizer = match tokenizer {
        Some(t) => t,
        None => {
            let tokenizer =
                TextTokenizer::train_unigram(pairs.corpus(), recipe.student_vocab_size)?;
            log::info!(
                "trained a {}-piece Unigram tokenizer on {} texts",
                tokenizer.vocab_size(),
                pairs.train.len()
            );
            tokenizer
        }
    };
    tokenizer.save(&out.join("tokenizer.json"))?;
    let tokenizer = Arc::new(tokenizer);
    let batches = |set: &[(String, String)], recipe: &AltClipRecipe| {
        parallel_batches(teacher, teacher_tokenizer, &tokenizer, set, recipe, common)
    };
    let mut state = match resume {
        Some(path) => Distillation::resume(&Checkpoint::read(path)?, &device)?,
        None => {
            if init_text.is_none() {
                recipe.student.roberta.vocab_size = tokenizer.vocab_size();
                recipe.student.roberta.pad_token_id = tokenizer.special_tokens()?.pad as usize;
            }
            recipe.fit_max_tokens();
            recipe.validate()?;
            device.seed(common.seed);
            let mut student = recipe.student_from_teacher(teacher, &device);
            if let Some(text) = init_text {
                student.text_model = text;
            }
            Distillation::new(recipe, student, common.seed, &device)
        }
    };
    let recipe = state.recipe.clone();
    log::info!(
        "stage 1 on {} pairs ({} held out); computing the teacher's targets",
        pairs.train.len(),
        pairs.held_out.len()
    );
    let train_set = batches(&pairs.train, &recipe)?;
    let held_out = batches(&pairs.held_out, &recipe)?;
    let before = held_out_mse(&state.model(), &held_out, &device)?;
    let summary = train(
        &mut state,
        &train_set,
        &RunPaths::in_dir(out),
        StopAt {
            epochs: recipe.stage1.schedular.epochs,
            max_steps: None,
        },
        "stage 1",
    )?;
    let student = state.model();
    let after = held_out_mse(&student, &held_out, &device)?;
    log::info!(
        "stage 1: {} steps in {:.0}s; held-out MSE {before:.4} → {after:.4}",
        summary.steps_this_run,
        summary.seconds
    );
    Ok(Stage1 {
        student,
        tokenizer: Arc::unwrap_or_clone(tokenizer),
        recipe,
        mse: HeldOutMse { before, after },
    })
}

/// The text tower of an HF AltCLIP directory, or an HF XLM-R encoder with
/// a fresh AltCLIP head; `recipe.student` becomes its config.
fn load_hf_student(
    dir: &Path,
    recipe: &mut AltClipRecipe,
    device: &burn::tensor::Device,
) -> anyhow::Result<AltClipTextModel> {
    let config: serde_json::Value = vl_models::import::read_json(&dir.join("config.json"))?;
    if config["model_type"] == "altclip" {
        let altclip = vl_models::import::clip::read_altclip_config(dir)?;
        let (model, _) = vl_models::import::clip::load_altclip_dir(dir, device)?;
        recipe.student = altclip.text_config;
        return Ok(model.text_model);
    }
    let (mut roberta, _) = vl_models::import::bert::load_bert_dir(dir, device)?;
    // AltCLIP's XLM-R has no pooler (the head pools `<s>` itself).
    roberta.pooler = None;
    recipe.student.roberta = vl_models::import::bert::read_config(dir)?;
    recipe.student.roberta.add_pooling_layer = false;
    let mut text = recipe.student.init(device);
    text.roberta = roberta;
    Ok(text)
}

/// Stage-1 batches of `(english, student side)` pairs: the teacher's
/// targets of the distinct English sides are computed once.
fn parallel_batches(
    teacher: &ClipModel,
    teacher_tokenizer: &TextTokenizer,
    tokenizer: &Arc<TextTokenizer>,
    pairs: &[(String, String)],
    recipe: &AltClipRecipe,
    common: &Common,
) -> anyhow::Result<ParallelBatches> {
    let device = common.backend.device()?;
    let mut sources: Vec<String> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let mut target_of = Vec::with_capacity(pairs.len());
    for (source, _) in pairs {
        let i = *index.entry(source.clone()).or_insert_with(|| {
            sources.push(source.clone());
            sources.len() - 1
        });
        target_of.push(i);
    }
    let targets = teacher_targets(
        teacher,
        teacher_tokenizer,
        &sources,
        recipe.max_tokens,
        &device,
    )?;
    Ok(ParallelBatches {
        texts: pairs.iter().map(|(_, t)| t.clone()).collect(),
        target_of,
        targets: Arc::new(targets),
        width: recipe.teacher.text_config.hidden_size,
        tokenizer: tokenizer.clone(),
        batch_size: recipe.stage1.batch_size,
        max_tokens: recipe.max_tokens,
        seed: common.seed,
    })
}

fn run_contrastive(
    task: &Task,
    student: AltClipModel,
    tokenizer: &TextTokenizer,
    recipe: AltClipRecipe,
    out: &Path,
    common: &Common,
    resume: Option<&Path>,
) -> anyhow::Result<AltClipModel> {
    let device = common.backend.device()?;
    let mut state = match resume {
        Some(path) => ContrastiveTuning::resume(&Checkpoint::read(path)?, &device)?,
        None => ContrastiveTuning::new(recipe, student, common.seed, &device),
    };
    let recipe = state.recipe.clone();
    let (pixels, captions) = task.contrastive_items(&recipe)?;
    let size = recipe.teacher.vision_config.image_size;
    log::info!(
        "stage 2 on {} images; embedding them with the frozen tower",
        captions.len()
    );
    let image_embeds = embed_images(&state.model(), &pixels, size, &device);
    let batches = CaptionBatches {
        dim: image_embeds.len() / captions.len().max(1),
        image_embeds: Arc::new(image_embeds),
        captions: Arc::new(captions),
        tokenizer: Arc::new(tokenizer.clone()),
        batch_size: recipe.stage2.batch_size,
        max_tokens: recipe.max_tokens,
        seed: common.seed,
    };
    let summary = train(
        &mut state,
        &batches,
        &RunPaths::in_dir(out),
        StopAt {
            epochs: recipe.stage2.schedular.epochs,
            max_steps: None,
        },
        "stage 2",
    )?;
    log::info!(
        "stage 2: {} steps in {:.0}s",
        summary.steps_this_run,
        summary.seconds
    );
    Ok(state.model())
}

/// One number of the results table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    model: &'static str,
    stage: &'static str,
    language: String,
    task: &'static str,
    value: f64,
}

/// Zero-shot accuracy and retrieval R@1 of `model` in every language.
fn evaluate(
    model: &impl DualEncoder,
    tokenizer: &TextTokenizer,
    eval: &EvalSet,
    recipe: &AltClipRecipe,
    who: &'static str,
    stage: &'static str,
    device: &burn::tensor::Device,
) -> anyhow::Result<Vec<Row>> {
    let size = recipe.teacher.vision_config.image_size;
    let zero_shot_images = embed_images(model, &eval.zero_shot_pixels, size, device);
    let retrieval_images = eval
        .retrieval_pixels
        .as_ref()
        .map(|pixels| embed_images(model, pixels, size, device));
    let mut rows = Vec::new();
    for language in &eval.languages {
        let mut row = |task, value| {
            rows.push(Row {
                model: who,
                stage,
                language: language.code.clone(),
                task,
                value,
            })
        };
        let classes = class_embeddings(
            model,
            tokenizer,
            &language.class_prompts,
            recipe.max_tokens,
            device,
        )?;
        row(
            "zero_shot_acc",
            zero_shot_accuracy(&zero_shot_images, &eval.zero_shot_labels, &classes),
        );
        if let (Some(set), Some(images)) = (&language.retrieval, &retrieval_images) {
            let texts = embed_texts(model, tokenizer, &set.texts, recipe.max_tokens, device)?;
            let metrics = dual_encoder_retrieval(images, &texts, set);
            row("t2i_r1", metrics.img_r1 / 100.0);
            row("i2t_r1", metrics.txt_r1 / 100.0);
        }
    }
    Ok(rows)
}

/// `results.json`.
#[derive(Debug, Serialize)]
struct Results {
    rows: Vec<Row>,
    /// Chance level of each task (a fraction).
    chance: serde_json::Value,
    held_out_mse: Option<HeldOutMse>,
}

impl Results {
    fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    fn print(&self, task: &Task) {
        println!("\nAltCLIP on {} (held-out images; fractions)", task.name());
        println!(
            "{:<6}{:<18}{:>15}{:>10}{:>10}",
            "lang", "model", "zero-shot acc", "T→I R@1", "I→T R@1"
        );
        let mut languages: Vec<&str> = Vec::new();
        for row in &self.rows {
            if !languages.contains(&row.language.as_str()) {
                languages.push(&row.language);
            }
        }
        for language in languages {
            for (model, stage) in [
                ("teacher", "teacher"),
                ("student", "stage1"),
                ("student", "stage2"),
            ] {
                let value = |task: &str| {
                    self.rows
                        .iter()
                        .find(|r| {
                            r.language == language
                                && r.model == model
                                && r.stage == stage
                                && r.task == task
                        })
                        .map_or("-".to_owned(), |r| format!("{:.3}", r.value))
                };
                let name = match stage {
                    "teacher" => "teacher".to_owned(),
                    s => format!("student {s}"),
                };
                println!(
                    "{language:<6}{name:<18}{:>15}{:>10}{:>10}",
                    value("zero_shot_acc"),
                    value("t2i_r1"),
                    value("i2t_r1")
                );
            }
        }
        println!("chance: {}", self.chance);
        if let Some(mse) = self.held_out_mse {
            println!("held-out stage-1 MSE: {:.4} → {:.4}", mse.before, mse.after);
        }
        println!();
    }
}

fn distill_command(args: DistillArgs) -> anyhow::Result<()> {
    let device = args.common.backend.device()?;
    let task = Task::open(&args.data, args.common.seed)?;
    let out = args.common.out_dir("runs/altclip-stage1")?;
    let (teacher, teacher_tokenizer, mut recipe) =
        load_any_teacher(&args.teacher, args.common.recipe()?, &device)?;
    if let Some(epochs) = args.epochs {
        recipe.stage1.schedular.epochs = epochs;
    }
    let pairs = PairSet::gather(&task, &args.parallel, args.gettext.as_deref())?;
    let mut tokenizer = match (&args.tokenizer, &args.resume) {
        (Some(path), _) => Some(load_tokenizer(path)?),
        (None, Some(_)) => Some(load_tokenizer(&out.join("tokenizer.json"))?),
        (None, None) => None,
    };
    let init_text = match &args.student {
        Some(dir) => {
            let text = load_hf_student(dir, &mut recipe, &device)
                .with_context(|| format!("loading the student {}", dir.display()))?;
            if tokenizer.is_none() {
                tokenizer = Some(load_tokenizer(&dir.join("tokenizer.json"))?);
            }
            Some(text)
        }
        None => None,
    };
    let stage1 = run_distill(
        &teacher,
        &teacher_tokenizer,
        &pairs,
        tokenizer,
        init_text,
        recipe,
        &out,
        &args.common,
        args.resume.as_deref(),
    )?;
    println!(
        "held-out MSE {:.4} → {:.4}; checkpoint {}",
        stage1.mse.before,
        stage1.mse.after,
        out.join("checkpoint.ckpt").display()
    );
    Ok(())
}

fn contrastive_command(args: ContrastiveArgs) -> anyhow::Result<()> {
    let device = args.common.backend.device()?;
    let task = Task::open(&args.data, args.common.seed)?;
    let out = args.common.out_dir("runs/altclip-stage2")?;
    let (student, tokenizer, mut recipe) = load_student_run(&args.student, &device)?;
    if let Some(epochs) = args.epochs {
        recipe.stage2.schedular.epochs = epochs;
    }
    if let Some(lr) = args.lr {
        recipe.stage2 = vl_training::altclip::StageConfig::constant(
            recipe.stage2.batch_size,
            lr,
            recipe.stage2.schedular.epochs,
        );
    }
    tokenizer.save(&out.join("tokenizer.json"))?;
    run_contrastive(
        &task,
        student,
        &tokenizer,
        recipe,
        &out,
        &args.common,
        args.resume.as_deref(),
    )?;
    println!("checkpoint {}", out.join("checkpoint.ckpt").display());
    Ok(())
}

fn eval_command(args: EvalArgs) -> anyhow::Result<()> {
    let device = args.common.backend.device()?;
    let task = Task::open(&args.data, args.common.seed)?;
    let out = args.common.out_dir("runs/altclip-eval")?;
    if args.teacher.is_none() && args.student.is_none() {
        bail!("give --teacher and/or --student");
    }
    let mut rows = Vec::new();
    let mut recipe = args.common.recipe()?;
    if let Some(path) = &args.teacher {
        let (teacher, tokenizer) = load_teacher_run(path, &device)?;
        recipe = vl_training::altclip::recipe_of(&Checkpoint::read(path)?)?;
        let eval = EvalSet::new(&task, &recipe)?;
        rows.extend(evaluate(
            &teacher, &tokenizer, &eval, &recipe, "teacher", "teacher", &device,
        )?);
    }
    if let Some(path) = &args.student {
        let (student, tokenizer, student_recipe) = load_student_run(path, &device)?;
        let stage = match Checkpoint::read(path)?.state["kind"].as_str() {
            Some("altclip-stage1") => "stage1",
            _ => "stage2",
        };
        let eval = EvalSet::new(&task, &student_recipe)?;
        rows.extend(evaluate(
            &student,
            &tokenizer,
            &eval,
            &student_recipe,
            "student",
            stage,
            &device,
        )?);
        recipe = student_recipe;
    }
    let results = Results {
        rows,
        chance: EvalSet::new(&task, &recipe)?.chance(),
        held_out_mse: None,
    };
    results.write(&out.join("results.json"))?;
    results.print(&task);
    Ok(())
}

fn export_command(args: ExportArgs) -> anyhow::Result<()> {
    let device = args.common.backend.device()?;
    let out = args.common.out_dir("runs/altclip-export")?;
    let (student, tokenizer, recipe) = load_student_run(&args.student, &device)?;
    vl_models::import::clip::save_altclip_dir(&student, &recipe.student_config(), &out)?;
    tokenizer.save(&out.join("tokenizer.json"))?;
    // The export must load back into an identical model.
    let (loaded, _) = vl_models::import::clip::load_altclip_dir(&out, &device)?;
    let texts = ["a red circle".to_owned()];
    let a = embed_texts(&student, &tokenizer, &texts, recipe.max_tokens, &device)?;
    let b = embed_texts(&loaded, &tokenizer, &texts, recipe.max_tokens, &device)?;
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    if diff > 1e-5 {
        bail!("the exported model differs from the checkpoint by {diff}");
    }
    println!(
        "exported an HF AltCLIP directory to {} (config.json, model.safetensors, tokenizer.json)",
        out.display()
    );
    Ok(())
}

/// A language of the evaluation, as it appears in the table.
pub struct EvalLanguage {
    /// ISO code.
    pub code: String,
    /// Prompts of each class (zero-shot).
    pub class_prompts: Vec<Vec<String>>,
    /// Retrieval set in this language, if the task has one.
    pub retrieval: Option<vl_data::RetrievalSet>,
}

/// Parses language codes of the world.
fn languages(codes: &[String]) -> anyhow::Result<Vec<Language>> {
    codes
        .iter()
        .map(|c| {
            Language::from_code(c.trim())
                .with_context(|| format!("unknown language `{c}` (the world has en, zh, de, fr)"))
        })
        .collect()
}
