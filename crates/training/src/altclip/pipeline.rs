//! AltCLIP's jobs end to end, as `altclip-distill` runs them: the teacher
//! (trained, resumed or loaded), stage 1 (tokenizer, student built around
//! the teacher, the teacher's targets, the loop, the held-out MSE), stage 2
//! (the frozen tower's image embeddings, the loop), and the evaluation of
//! any of them in every language.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;
use serde::Serialize;
use vl_data::{Framing, Loader, LoaderConfig, TextTokenizer};
use vl_models::altclip::AltClipTextModel;
use vl_models::{AltClipModel, ClipModel};

use crate::TrainError;
use crate::altclip::data::{EvalSet, PairSet, Task};
use crate::altclip::evaluation::{Results, evaluate};
use crate::altclip::{
    AltClipRecipe, CaptionBatches, ContrastiveTuning, Distillation, ParallelBatches,
    TeacherTraining, held_out_mse, load_student, load_teacher, recipe_of, teacher_targets,
};
use crate::eval::dual_encoder::embed_images;
use crate::runner::checkpoint::{Checkpoint, JobKind};
use crate::runner::{Batches, Resume, RunPaths, StopAt, Trainee, check_work_left, train};

/// The tokenizer saved beside the checkpoint `read` from `path`, checked
/// to be the one it was trained with.
fn tokenizer_beside(path: &Path, read: &Checkpoint) -> Result<TextTokenizer, TrainError> {
    let tokenizer = TextTokenizer::from_file(&path.with_file_name("tokenizer.json"))?;
    read.check_tokenizer(path, &tokenizer)?;
    Ok(tokenizer)
}

/// The teacher of a `teacher` run's checkpoint, with its tokenizer.
pub fn load_teacher_run(
    checkpoint: &Path,
    device: &Device,
) -> Result<(ClipModel, TextTokenizer, AltClipRecipe), TrainError> {
    let read = Checkpoint::read(checkpoint)?;
    let model = load_teacher(&read, device)?;
    Ok((
        model,
        tokenizer_beside(checkpoint, &read)?,
        recipe_of(&read)?,
    ))
}

/// A teacher from a `teacher` checkpoint (with its recipe) or from an HF
/// CLIP directory (into `recipe`, whose student then projects to the
/// teacher's text width); its tokenizer.json beside it.
pub fn load_any_teacher(
    path: &Path,
    mut recipe: AltClipRecipe,
    device: &Device,
) -> Result<(ClipModel, TextTokenizer, AltClipRecipe), TrainError> {
    if path.is_dir() {
        let config: vl_models::ClipConfig =
            vl_models::import::read_json(&path.join("config.json"))?;
        let (model, _) = vl_models::import::clip::load_clip_dir(path, device)?;
        recipe.student.project_dim = config.text_config.hidden_size;
        recipe.teacher = config;
        let tokenizer = TextTokenizer::from_file(&path.join("tokenizer.json"))?;
        return Ok((model, tokenizer, recipe));
    }
    load_teacher_run(path, device)
}

/// The student of a stage-1 or stage-2 checkpoint, its tokenizer, its
/// recipe and which stage wrote it.
pub fn load_student_run(
    checkpoint: &Path,
    device: &Device,
) -> Result<(AltClipModel, TextTokenizer, AltClipRecipe, JobKind), TrainError> {
    let read = Checkpoint::read(checkpoint)?;
    let model = load_student(&read, device)?;
    Ok((
        model,
        tokenizer_beside(checkpoint, &read)?,
        recipe_of(&read)?,
        read.kind(),
    ))
}

/// Trains the teacher into `out` (or resumes the run of `resume`); returns
/// it and its tokenizer (saved in `out`).
pub fn train_teacher(
    task: &Task,
    mut recipe: AltClipRecipe,
    out: &Path,
    seed: u64,
    resume: Option<&Resume>,
    device: &Device,
) -> Result<(ClipModel, TextTokenizer), TrainError> {
    create_dir(out)?;
    let items = task.teacher_items(&recipe)?;
    let tokenizer_path = out.join("tokenizer.json");
    let (mut state, tokenizer) = match resume {
        Some(Resume {
            checkpoint: path,
            epochs,
        }) => {
            let checkpoint = Checkpoint::read(path)?;
            let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
            checkpoint.check_tokenizer(path, &tokenizer)?;
            let mut state = TeacherTraining::resume(&checkpoint, device)?;
            state.extend(*epochs, path)?;
            (state, tokenizer)
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
            device.seed(seed);
            let model = recipe.teacher.init(device);
            (TeacherTraining::new(recipe, model, seed, device), tokenizer)
        }
    };
    let recipe = state.recipe().clone();
    let stage = &recipe.teacher_training;
    let loader = Loader::new(
        items,
        Arc::new(tokenizer.clone()),
        LoaderConfig {
            batch_size: stage.batch_size,
            image_size: recipe.teacher.vision_config.image_size as u32,
            augment: Some(recipe.augment.clone()),
            max_tokens: recipe.max_tokens,
            seed,
            prefetch: 2,
            bad: task.bad_entries(),
            similar_fraction: 0.0,
        },
    )?;
    log::info!(
        "training the teacher on {} images, {} steps per epoch, {} epochs",
        loader.len(),
        loader.steps_per_epoch(),
        stage.schedular.epochs
    );
    if let Some(resume) = resume {
        let epochs = stage.schedular.epochs;
        let total = epochs * loader.steps_per_epoch();
        check_work_left(state.position(), total, epochs, &resume.checkpoint)?;
    }
    let summary = train(
        &mut state,
        &loader,
        &RunPaths::in_dir(out).with_tokenizer(&tokenizer),
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
pub struct Stage1 {
    /// The student.
    pub student: AltClipModel,
    /// Its tokenizer (saved in the stage's directory).
    pub tokenizer: TextTokenizer,
    /// The recipe as stage 1 completed it (the student's vocabulary).
    pub recipe: AltClipRecipe,
    /// Held-out MSE before and after.
    pub mse: HeldOutMse,
}

/// Held-out stage-1 MSE before and after.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HeldOutMse {
    /// Before training.
    pub before: f64,
    /// After.
    pub after: f64,
}

/// How stage 1 starts.
pub struct Stage1Start {
    /// The student's tokenizer (default: a Unigram one trained on the
    /// corpus).
    pub tokenizer: Option<TextTokenizer>,
    /// A pretrained text tower (HF XLM-R or AltCLIP) instead of a fresh one.
    pub text_model: Option<AltClipTextModel>,
    /// A stage-1 run to continue.
    pub resume: Option<Resume>,
}

/// Stage 1 into `out`: the student learns the teacher's text embeddings
/// on `pairs`.
#[allow(clippy::too_many_arguments)]
pub fn run_distill(
    teacher: &ClipModel,
    teacher_tokenizer: &TextTokenizer,
    pairs: &PairSet,
    start: Stage1Start,
    mut recipe: AltClipRecipe,
    out: &Path,
    seed: u64,
    device: &Device,
) -> Result<Stage1, TrainError> {
    create_dir(out)?;
    let tokenizer = match start.tokenizer {
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
        parallel_batches(
            teacher,
            teacher_tokenizer,
            &tokenizer,
            set,
            recipe,
            seed,
            device,
        )
    };
    let mut state = match &start.resume {
        Some(Resume {
            checkpoint: path,
            epochs,
        }) => {
            let checkpoint = Checkpoint::read(path)?;
            checkpoint.check_tokenizer(path, &tokenizer)?;
            let mut state = Distillation::resume(&checkpoint, device)?;
            state.extend(*epochs, path)?;
            state
        }
        None => {
            if start.text_model.is_none() {
                recipe.student.roberta.vocab_size = tokenizer.vocab_size();
                recipe.student.roberta.pad_token_id = tokenizer.special_tokens()?.pad as usize;
            }
            recipe.fit_max_tokens();
            recipe.validate()?;
            device.seed(seed);
            let mut student = recipe.student_from_teacher(teacher, device);
            if let Some(text) = start.text_model {
                student.text_model = text;
            }
            Distillation::new(recipe, student, seed, device)
        }
    };
    let recipe = state.recipe().clone();
    log::info!(
        "stage 1 on {} pairs ({} held out); computing the teacher's targets",
        pairs.train.len(),
        pairs.held_out.len()
    );
    let train_set = batches(&pairs.train, &recipe)?;
    let held_out = batches(&pairs.held_out, &recipe)?;
    let before = held_out_mse(&state.model(), &held_out, device)?;
    if let Some(resume) = &start.resume {
        let epochs = recipe.stage1.schedular.epochs;
        let total = epochs * train_set.steps_per_epoch();
        check_work_left(state.position(), total, epochs, &resume.checkpoint)?;
    }
    let summary = train(
        &mut state,
        &train_set,
        &RunPaths::in_dir(out).with_tokenizer(&tokenizer),
        StopAt {
            epochs: recipe.stage1.schedular.epochs,
            max_steps: None,
        },
        "stage 1",
    )?;
    let student = state.model();
    let after = held_out_mse(&student, &held_out, device)?;
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
pub fn load_hf_student(
    dir: &Path,
    recipe: &mut AltClipRecipe,
    device: &Device,
) -> Result<AltClipTextModel, TrainError> {
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
    seed: u64,
    device: &Device,
) -> Result<ParallelBatches, TrainError> {
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
        device,
    )?;
    Ok(ParallelBatches {
        texts: pairs.iter().map(|(_, t)| t.clone()).collect(),
        target_of,
        targets: Arc::new(targets),
        width: recipe.teacher.text_config.hidden_size,
        tokenizer: tokenizer.clone(),
        batch_size: recipe.stage1.batch_size,
        max_tokens: recipe.max_tokens,
        seed,
    })
}

/// Stage 2 into `out` (or the continuation of `resume`): contrastive
/// tuning of `student`'s text side on the task's captions in every
/// language, the image tower frozen.
#[allow(clippy::too_many_arguments)]
pub fn run_contrastive(
    task: &Task,
    student: AltClipModel,
    tokenizer: &TextTokenizer,
    recipe: AltClipRecipe,
    out: &Path,
    seed: u64,
    resume: Option<&Resume>,
    device: &Device,
) -> Result<AltClipModel, TrainError> {
    create_dir(out)?;
    tokenizer.save(&out.join("tokenizer.json"))?;
    let mut state = match resume {
        Some(Resume {
            checkpoint: path,
            epochs,
        }) => {
            let checkpoint = Checkpoint::read(path)?;
            checkpoint.check_tokenizer(path, tokenizer)?;
            let mut state = ContrastiveTuning::resume(&checkpoint, device)?;
            state.extend(*epochs, path)?;
            state
        }
        None => ContrastiveTuning::new(recipe, student, seed, device),
    };
    let recipe = state.recipe().clone();
    let (images, captions) = task.contrastive_items(&recipe)?;
    log::info!(
        "stage 2 on {} images; embedding them with the frozen tower",
        captions.len()
    );
    let image_embeds = embed_images(&state.model(), &images, device);
    let batches = CaptionBatches {
        dim: image_embeds.len() / captions.len().max(1),
        image_embeds: Arc::new(image_embeds),
        captions: Arc::new(captions),
        tokenizer: Arc::new(tokenizer.clone()),
        batch_size: recipe.stage2.batch_size,
        max_tokens: recipe.max_tokens,
        seed,
    };
    if let Some(resume) = resume {
        let epochs = recipe.stage2.schedular.epochs;
        let total = epochs * batches.steps_per_epoch();
        check_work_left(state.position(), total, epochs, &resume.checkpoint)?;
    }
    let summary = train(
        &mut state,
        &batches,
        &RunPaths::in_dir(out).with_tokenizer(tokenizer),
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

/// What the default run did.
pub struct DefaultRun {
    /// Teacher, stage 1 and stage 2 in every language.
    pub results: Results,
    /// Where the teacher came from (its run or the given path).
    pub teacher: PathBuf,
    /// Stage 1's and stage 2's directories.
    pub stage1: PathBuf,
    /// See `stage1`.
    pub stage2: PathBuf,
}

/// The whole recipe on `task`: the teacher (given, cached by everything
/// that determines it, or trained), stage 1 on the task's parallel text
/// (and `gettext` pairs), stage 2, each evaluated; `results.json` in
/// `out`.
#[allow(clippy::too_many_arguments)]
pub fn default_run(
    task: &Task,
    mut recipe: AltClipRecipe,
    teacher: Option<&Path>,
    retrain_teacher: bool,
    gettext: Option<&Path>,
    cache: &Path,
    out: &Path,
    seed: u64,
    device: &Device,
) -> Result<DefaultRun, TrainError> {
    create_dir(out)?;
    let teacher_dir = cache.join(format!(
        "altclip-teacher-{}-seed{seed}-{:016x}",
        task.name(),
        fingerprint(&recipe)
    ));
    let cached = teacher_dir.join("checkpoint.ckpt");
    let (teacher_model, teacher_tokenizer) = if let Some(path) = teacher {
        let (model, tokenizer, loaded) = load_any_teacher(path, recipe, device)?;
        recipe = loaded;
        (model, tokenizer)
    } else if cached.is_file() && !retrain_teacher {
        log::info!("using the cached teacher {}", cached.display());
        let (model, tokenizer, _) = load_teacher_run(&cached, device)?;
        (model, tokenizer)
    } else {
        train_teacher(task, recipe.clone(), &teacher_dir, seed, None, device)?
    };

    let eval = EvalSet::new(task, &recipe)?;
    let mut rows = evaluate(
        &teacher_model,
        &teacher_tokenizer,
        &eval,
        &recipe,
        ("teacher", "teacher"),
        device,
    )?;
    let stage1_dir = out.join("stage1");
    let pairs = PairSet::gather(task, &[], gettext)?;
    let stage1 = run_distill(
        &teacher_model,
        &teacher_tokenizer,
        &pairs,
        Stage1Start {
            tokenizer: None,
            text_model: None,
            resume: None,
        },
        recipe.clone(),
        &stage1_dir,
        seed,
        device,
    )?;
    rows.extend(evaluate(
        &stage1.student,
        &stage1.tokenizer,
        &eval,
        &recipe,
        ("student", "stage1"),
        device,
    )?);
    let stage2_dir = out.join("stage2");
    let student = run_contrastive(
        task,
        stage1.student,
        &stage1.tokenizer,
        stage1.recipe.clone(),
        &stage2_dir,
        seed,
        None,
        device,
    )?;
    rows.extend(evaluate(
        &student,
        &stage1.tokenizer,
        &eval,
        &recipe,
        ("student", "stage2"),
        device,
    )?);
    let results = Results {
        rows,
        chance: eval.chance(),
        held_out_mse: Some(stage1.mse),
    };
    results.write(&out.join("results.json"))?;
    Ok(DefaultRun {
        results,
        teacher: teacher.map_or(teacher_dir, Path::to_path_buf),
        stage1: stage1_dir,
        stage2: stage2_dir,
    })
}

/// A stable hash of what determines the teacher (its cache key), with the
/// checkpoint format: a cached teacher of an older format is retrained.
fn fingerprint(recipe: &AltClipRecipe) -> u64 {
    let text = serde_json::json!([
        "VLCKPT02",
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

fn create_dir(dir: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
        path: dir.to_owned(),
        source,
    })
}
