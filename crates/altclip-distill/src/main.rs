//! `altclip-distill`: AltCLIP's recipe (Chen et al., 2022) on burn.
//!
//! With no arguments: generates the synthetic shapes world (cached), trains
//! a tiny CLIP teacher on its English captions (cached), trains a
//! multilingual tokenizer, runs stage 1 (teacher learning: MSE on parallel
//! text) and stage 2 (contrastive, image tower frozen), and prints zero-shot
//! classification and retrieval per language, teacher beside student after
//! each stage. Subcommands run one stage each. See the README and docs/.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use vl_backend::Backend;
use vl_data::BadEntries;
use vl_data::TextTokenizer;
use vl_training::altclip::AltClipRecipe;
use vl_training::altclip::data::{
    DataSource, EvalSet, ManifestData, PairSet, Task, language_file, languages,
};
use vl_training::altclip::evaluation::{Results, evaluate};
use vl_training::altclip::pipeline::{
    Stage1Start, default_run, load_any_teacher, load_hf_student, load_student_run, run_contrastive,
    run_distill, train_teacher,
};
use vl_training::runner::{Resume, output_dir, refuse_on_resume};

mod evaluation;

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
    Eval(evaluation::EvalArgs),
    /// Write a student checkpoint as an HF AltCLIP directory.
    Export(evaluation::ExportArgs),
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
    /// `--out`, or `default`; created, and checked to be writable.
    fn out_dir(&self, default: &str) -> anyhow::Result<PathBuf> {
        self.run_dir(None, default)
    }

    /// Where a run writes: `--out`, else the directory of the checkpoint it
    /// resumes, else `default`; created, and checked to be writable.
    fn run_dir(&self, resume: Option<&Path>, default: &str) -> anyhow::Result<PathBuf> {
        Ok(output_dir(self.out.as_deref(), resume, Path::new(default))?)
    }

    fn recipe(&self) -> anyhow::Result<AltClipRecipe> {
        Ok(match &self.config {
            Some(path) => AltClipRecipe::from_yaml_file(path)?,
            None => AltClipRecipe::tiny(),
        })
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
    /// Where the relative image paths of manifests start (default: each
    /// manifest's directory).
    #[arg(long)]
    image_root: Option<PathBuf>,
    /// Count and skip unusable manifest entries and images instead of stopping.
    #[arg(long)]
    skip_bad: bool,
}

impl DataArgs {
    /// The user's manifests of a subcommand, none named yet.
    fn manifests(&self) -> ManifestData {
        ManifestData {
            image_root: self.image_root.clone(),
            teacher_train: Vec::new(),
            english: Vec::new(),
            contrastive: Vec::new(),
            retrieval: Vec::new(),
            classes: None,
            bad: match self.skip_bad {
                true => BadEntries::Skip,
                false => BadEntries::Fail,
            },
            skipped: Default::default(),
        }
    }

    /// The task: the user's manifests in `files` when it names any, else
    /// the world or Fashion-MNIST (generated or converted into the cache if
    /// needed).
    fn open(&self, seed: u64, files: ManifestData) -> anyhow::Result<Task> {
        let named = !files.teacher_train.is_empty()
            || !files.english.is_empty()
            || !files.contrastive.is_empty()
            || !files.retrieval.is_empty()
            || files.classes.is_some();
        if named {
            if self.world.is_some() || self.fashion_mnist.is_some() {
                bail!("give manifests or --world/--fashion-mnist, not both");
            }
            return Ok(Task::Manifests(files));
        }
        let source = DataSource {
            world: self.world.clone(),
            fashion_mnist: self.fashion_mnist.clone(),
            cache: self.cache.clone(),
            languages: languages(&self.languages)?,
        };
        Ok(Task::open(&source, seed)?)
    }
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
    /// A training manifest of images with English captions (repeatable;
    /// default: the world's or Fashion-MNIST's).
    #[arg(long)]
    train_file: Vec<PathBuf>,
    /// A retrieval manifest of held-out images with English captions: the
    /// teacher's R@1/5/10 on it after training, in results.json.
    #[arg(long)]
    val_file: Option<PathBuf>,
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
    /// A manifest whose English captions become English–English pairs
    /// (repeatable); with one, the world's pairs are not used.
    #[arg(long)]
    train_file: Vec<PathBuf>,
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
    /// Images captioned in one language, as LANG=FILE (repeatable, e.g.
    /// `--train-file zh=cap_zh.json --train-file en=cap_en.json`; default:
    /// the world's or Fashion-MNIST's).
    #[arg(long, value_parser = language_file)]
    train_file: Vec<(String, PathBuf)>,
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

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", vl_training::error_report(err.chain()));
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => quick(cli.quick),
        Some(Command::Teacher(args)) => teacher_command(args),
        Some(Command::Distill(args)) => distill_command(args),
        Some(Command::Contrastive(args)) => contrastive_command(args),
        Some(Command::Eval(args)) => evaluation::eval_command(args),
        Some(Command::Export(args)) => evaluation::export_command(args),
    }
}

/// The default run: world → teacher (cached) → stage 1 → stage 2, with the
/// per-language table after each.
/// The total of `--skip-bad`'s skips, each already named as it happened.
pub(crate) fn report_skips(task: &Task) {
    let skipped = task.skipped();
    if skipped > 0 {
        log::warn!("{skipped} unusable entries skipped in all (each named above)");
    }
}

fn quick(args: QuickArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let task = args.data.open(common.seed, args.data.manifests())?;
    let out = common.out_dir(&format!("runs/altclip-{}-seed{}", task.name(), common.seed))?;
    let run = default_run(
        &task,
        common.recipe()?,
        args.teacher.as_deref(),
        args.retrain_teacher,
        args.gettext.as_deref(),
        &args.data.cache,
        &out,
        common.seed,
        &common.backend.device()?,
    )?;
    evaluation::print_results(&run.results, &task);
    println!("teacher:  {}", run.teacher.display());
    println!("stage 1:  {}", run.stage1.display());
    println!("stage 2:  {}", run.stage2.display());
    println!("results:  {}", out.join("results.json").display());
    report_skips(&task);
    Ok(())
}

fn teacher_command(args: TeacherArgs) -> anyhow::Result<()> {
    let mut recipe = args.common.recipe()?;
    if let Some(epochs) = args.epochs {
        recipe.teacher_training.schedular.epochs = epochs;
    }
    let mut files = args.data.manifests();
    files.teacher_train = args.train_file.clone();
    let task = args.data.open(args.common.seed, files)?;
    let out = args
        .common
        .run_dir(args.resume.as_deref(), "runs/altclip-teacher")?;
    let resume = match &args.resume {
        Some(checkpoint) => {
            refuse_on_resume(checkpoint, &[("--config", args.common.config.is_some())])?;
            Some(Resume {
                checkpoint: checkpoint.clone(),
                epochs: args.epochs,
            })
        }
        None => None,
    };
    let device = args.common.backend.device()?;
    let (teacher, tokenizer) = train_teacher(
        &task,
        recipe.clone(),
        &out,
        args.common.seed,
        resume.as_ref(),
        &device,
    )?;
    println!("checkpoint {}", out.join("checkpoint.ckpt").display());
    if let Some(val) = &args.val_file {
        let mut files = args.data.manifests();
        files.retrieval = vec![("en".to_owned(), val.clone())];
        let eval = EvalSet::new(&Task::Manifests(files), &recipe)?;
        let results = Results {
            rows: evaluate(
                &teacher,
                &tokenizer,
                &eval,
                &recipe,
                ("teacher", "teacher"),
                &device,
            )?,
            chance: eval.chance(),
            held_out_mse: None,
        };
        results.write(&out.join("results.json"))?;
        evaluation::print_results(&results, &task);
    }
    report_skips(&task);
    Ok(())
}

fn distill_command(args: DistillArgs) -> anyhow::Result<()> {
    let device = args.common.backend.device()?;
    let mut files = args.data.manifests();
    files.english = args.train_file.clone();
    let task = args.data.open(args.common.seed, files)?;
    let out = args
        .common
        .run_dir(args.resume.as_deref(), "runs/altclip-stage1")?;
    if let Some(checkpoint) = &args.resume {
        refuse_on_resume(
            checkpoint,
            &[
                ("--config", args.common.config.is_some()),
                ("--tokenizer", args.tokenizer.is_some()),
                ("--student", args.student.is_some()),
            ],
        )?;
    }
    let (teacher, teacher_tokenizer, mut recipe) =
        load_any_teacher(&args.teacher, args.common.recipe()?, &device)
            .with_context(|| format!("loading the teacher {}", args.teacher.display()))?;
    if let Some(epochs) = args.epochs {
        recipe.stage1.schedular.epochs = epochs;
    }
    let pairs = PairSet::gather(&task, &args.parallel, args.gettext.as_deref())?;
    let mut tokenizer = match (&args.tokenizer, &args.resume) {
        (Some(path), _) => Some(TextTokenizer::from_file(path)?),
        (None, Some(_)) => Some(TextTokenizer::from_file(&out.join("tokenizer.json"))?),
        (None, None) => None,
    };
    let text_model = match &args.student {
        Some(dir) => {
            let text = load_hf_student(dir, &mut recipe, &device)
                .with_context(|| format!("loading the student {}", dir.display()))?;
            if tokenizer.is_none() {
                tokenizer = Some(TextTokenizer::from_file(&dir.join("tokenizer.json"))?);
            }
            Some(text)
        }
        None => None,
    };
    let start = Stage1Start {
        tokenizer,
        text_model,
        resume: args.resume.clone().map(|checkpoint| Resume {
            checkpoint,
            epochs: args.epochs,
        }),
    };
    let stage1 = run_distill(
        &teacher,
        &teacher_tokenizer,
        &pairs,
        start,
        recipe,
        &out,
        args.common.seed,
        &device,
    )?;
    let results = Results {
        rows: Vec::new(),
        chance: serde_json::json!({}),
        held_out_mse: Some(stage1.mse),
    };
    results.write(&out.join("results.json"))?;
    println!(
        "held-out MSE {:.4} → {:.4}; checkpoint {}",
        stage1.mse.before,
        stage1.mse.after,
        out.join("checkpoint.ckpt").display()
    );
    report_skips(&task);
    Ok(())
}

fn contrastive_command(args: ContrastiveArgs) -> anyhow::Result<()> {
    let device = args.common.backend.device()?;
    let mut files = args.data.manifests();
    files.contrastive = args.train_file.clone();
    let task = args.data.open(args.common.seed, files)?;
    let out = args
        .common
        .run_dir(args.resume.as_deref(), "runs/altclip-stage2")?;
    let resume = match &args.resume {
        Some(checkpoint) => {
            refuse_on_resume(
                checkpoint,
                &[
                    ("--config", args.common.config.is_some()),
                    ("--lr", args.lr.is_some()),
                ],
            )?;
            Some(Resume {
                checkpoint: checkpoint.clone(),
                epochs: args.epochs,
            })
        }
        None => None,
    };
    let (student, tokenizer, mut recipe, _) = load_student_run(&args.student, &device)
        .with_context(|| format!("loading the student {}", args.student.display()))?;
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
    recipe.validate()?;
    run_contrastive(
        &task,
        student,
        &tokenizer,
        recipe,
        &out,
        args.common.seed,
        resume.as_ref(),
        &device,
    )?;
    println!("checkpoint {}", out.join("checkpoint.ckpt").display());
    report_skips(&task);
    Ok(())
}
