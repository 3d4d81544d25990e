//! The pretraining job end to end, as `train-albef pretrain` (and the
//! default run) runs it: the tokenizer (given, or trained on the training
//! captions), the model (fresh, warmed up, or imported from an official
//! checkpoint), the loader, the loop, and zero-shot retrieval on the test
//! manifest; or the same from a run's checkpoint (`resume`). And the
//! retrieval evaluation of any checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;
use vl_data::manifest::read_captioned_images;
use vl_data::world::{Language, WORLD_FILE, files};
use vl_data::{BadEntries, Framing, Loader, LoaderConfig, RetrievalSet, Skipped, TextTokenizer};
use vl_models::Albef;

use crate::TrainError;
use crate::albef::config::PretrainConfig;
use crate::albef::pretraining::AlbefPretraining;
use crate::albef::vision_warmup::{WarmupData, WarmupReport, WarmupRun, warm_up_vision};
use crate::config::InvalidValue;
use crate::eval::retrieval::{
    RetrievalEval, RetrievalMetrics, RetrievalReport, evaluate_retrieval,
};
use crate::runner::checkpoint::{Checkpoint, JobKind, RunState};
use crate::runner::progress;
use crate::runner::{RunPaths, RunSummary, StopAt, check_work_left, resumed_epochs, train};

/// The training and test manifests of a synthetic world directory, if it
/// is one.
pub fn world_manifests(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    dir.join(WORLD_FILE).is_file().then(|| {
        (
            dir.join(files::pretrain(Language::En)),
            dir.join(files::retrieval("test", Language::En)),
        )
    })
}

/// Where a pretraining run starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new run of `config`, from fresh weights (warmed up when the config
    /// asks) or from an ALBEF `.pth`/`.safetensors` (`init_from`).
    Fresh {
        /// The run's config (validated by the caller).
        config: Box<PretrainConfig>,
        /// Official weights to start from.
        init_from: Option<PathBuf>,
    },
    /// A run's `checkpoint.ckpt`, continued where it stopped, with its own
    /// config; `epochs` extends it.
    Resume {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// The run's new length in epochs.
        epochs: Option<usize>,
    },
}

/// A pretraining run to do.
#[derive(Debug, Clone)]
pub struct PretrainJob {
    /// Where it starts.
    pub start: Start,
    /// Output directory: checkpoint, metrics, plot, `config.json`,
    /// `tokenizer.json`, the evaluation.
    pub out: PathBuf,
    /// Seed of the initialisation and every draw (a resumed run keeps its
    /// own).
    pub seed: u64,
    /// What to do with unusable manifest entries.
    pub bad: BadEntries,
    /// Stop after this many steps in all (a checkpoint is written).
    pub max_steps: Option<usize>,
    /// Evaluate retrieval on the test manifest once the run is complete.
    pub evaluate: bool,
}

/// What a pretraining run did.
#[derive(Debug)]
pub struct PretrainOutcome {
    /// The loop's account.
    pub summary: RunSummary,
    /// The vision warm-up's, when one ran.
    pub warmup: Option<WarmupReport>,
    /// Manifest entries skipped (reading the manifests and during
    /// training).
    pub skipped: Skipped,
    /// The zero-shot retrieval evaluation, when the run completed and has
    /// a test manifest.
    pub retrieval: Option<RetrievalOutcome>,
    /// The files it wrote.
    pub paths: RunPaths,
}

/// Pretrains as `job` says, on `device`.
pub fn pretrain(job: &PretrainJob, device: &Device) -> Result<PretrainOutcome, TrainError> {
    std::fs::create_dir_all(&job.out).map_err(|source| TrainError::Io {
        path: job.out.clone(),
        source,
    })?;
    let tokenizer_path = job.out.join("tokenizer.json");
    let mut skipped = Skipped::default();
    let mut warmup = None;
    let (mut state, tokenizer) = match &job.start {
        Start::Resume {
            checkpoint: path,
            epochs,
        } => {
            let checkpoint_path = resumable(path);
            let checkpoint = Checkpoint::read(&checkpoint_path)?;
            let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
            checkpoint.check_tokenizer(&checkpoint_path, &tokenizer)?;
            let special = tokenizer.special_tokens()?;
            let state = match checkpoint.kind() {
                JobKind::AlbefVisionWarmup => {
                    // Stopped during the warm-up: finish it, then start
                    // pretraining as the fresh run would have.
                    let RunState { config, seed, .. } =
                        checkpoint.state::<PretrainConfig>(JobKind::AlbefVisionWarmup)?;
                    let model;
                    (model, warmup) = fresh_model(&config, seed, Some(&checkpoint), job, device)?;
                    AlbefPretraining::new(config, model, special, seed, device)
                }
                _ => AlbefPretraining::resume(&checkpoint, special, device)?,
            };
            let mut state = state;
            state.config.schedular.epochs = resumed_epochs(
                state.config.schedular.epochs,
                *epochs,
                state.position,
                &checkpoint_path,
            )?;
            log::info!(
                "resuming at step {} (epoch {})",
                state.position.step,
                state.position.epoch
            );
            (state, tokenizer)
        }
        Start::Fresh { config, init_from } => {
            let mut config = (**config).clone();
            if config.train_file.is_empty() {
                return Err(invalid("train_file", "no training manifest"));
            }
            let tokenizer = match &config.tokenizer {
                Some(path) => TextTokenizer::from_file(path)?,
                None if init_from.is_some() => {
                    return Err(invalid(
                        "tokenizer",
                        "starting from official weights needs their tokenizer.json",
                    ));
                }
                None => {
                    let tokenizer = train_tokenizer(&config)?;
                    config.model.bert_config.vocab_size = tokenizer.vocab_size();
                    tokenizer
                }
            };
            if tokenizer.vocab_size() > config.model.bert_config.vocab_size {
                return Err(invalid(
                    "bert_config.vocab_size",
                    format!(
                        "{} is smaller than the tokenizer's {} tokens",
                        config.model.bert_config.vocab_size,
                        tokenizer.vocab_size()
                    ),
                ));
            }
            // Everything a resume needs lies in the run directory.
            tokenizer.save(&tokenizer_path)?;
            write_json(&job.out.join("config.json"), &config)?;
            let model = match init_from {
                Some(path) => {
                    device.seed(job.seed);
                    imported(path, &config, device)?
                }
                None => {
                    let model;
                    (model, warmup) = fresh_model(&config, job.seed, None, job, device)?;
                    model
                }
            };
            let special = tokenizer.special_tokens()?;
            (
                AlbefPretraining::new(config, model, special, job.seed, device),
                tokenizer,
            )
        }
    };
    let paths = RunPaths::in_dir(&job.out).with_tokenizer(&tokenizer);
    let config = state.config.clone();
    let mut items = Vec::new();
    for manifest in &config.train_file {
        let (mut read, skipped_here) = read_captioned_images(
            manifest,
            config.image_root.as_deref(),
            config.max_words,
            job.bad,
        )?;
        skipped.extend(skipped_here);
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
            bad: job.bad,
            similar_fraction: config.recipe.similar_fraction,
        },
    )?;
    log::info!(
        "pretraining on {} images, {} steps per epoch, {} epochs, batch {}",
        loader.len(),
        loader.steps_per_epoch(),
        config.schedular.epochs,
        config.batch_size,
    );
    let stop = StopAt {
        epochs: config.schedular.epochs,
        max_steps: job.max_steps,
    };
    if let Start::Resume { checkpoint, .. } = &job.start {
        let total = stop.epochs * loader.steps_per_epoch();
        let total = job.max_steps.map_or(total, |m| m.min(total));
        check_work_left(state.position, total, stop.epochs, checkpoint)?;
    }
    let summary = train(&mut state, &loader, &paths, stop, "pretrain")?;
    skipped.extend(loader.skipped());
    let complete = state.position.step >= config.schedular.epochs * loader.steps_per_epoch();
    let retrieval = match (&config.test_file, job.evaluate && complete) {
        (Some(test), true) => Some(evaluate_run(
            &state.evaluated(),
            &config,
            test,
            &tokenizer,
            device,
            &job.out,
        )?),
        _ => None,
    };
    Ok(PretrainOutcome {
        summary,
        warmup,
        skipped,
        retrieval,
        paths,
    })
}

fn invalid(key: &str, message: impl std::fmt::Display) -> TrainError {
    TrainError::InvalidConfig(vec![InvalidValue {
        key: key.to_owned(),
        message: message.to_string(),
    }])
}

/// The model of an official ALBEF checkpoint, which must carry the MLM
/// head pretraining needs.
fn imported(path: &Path, config: &PretrainConfig, device: &Device) -> Result<Albef, TrainError> {
    let loaded = vl_models::import::albef::load_albef_file(path, &config.model, device)?;
    if !loaded.model.has_mlm_head() {
        return Err(invalid(
            "init_from",
            format!(
                "{} has no MLM head (a fine-tuned checkpoint); pretraining needs one",
                path.display()
            ),
        ));
    }
    if config.recipe.vision_warmup.is_some() {
        log::info!("vision_warmup skipped: the image encoder comes from the imported weights");
    }
    Ok(loaded.model)
}

/// Where the vision warm-up of a run in `out` checkpoints, logs and plots.
pub fn warmup_paths(out: &Path) -> RunPaths {
    RunPaths {
        checkpoint: out.join("vision_warmup.ckpt"),
        metrics: out.join("vision_warmup.jsonl"),
        plot: out.join("vision_warmup.png"),
        tokenizer: None,
    }
}

/// The checkpoint to resume for `path`: itself, or, when the run stopped
/// during its vision warm-up (no `checkpoint.ckpt` yet), the warm-up's
/// beside it.
fn resumable(path: &Path) -> PathBuf {
    let warmup = path.with_file_name("vision_warmup.ckpt");
    if !path.exists() && warmup.is_file() {
        log::info!(
            "{} does not exist yet: resuming the vision warm-up from {}",
            path.display(),
            warmup.display()
        );
        return warmup;
    }
    path.to_owned()
}

/// A fresh model of `config` drawn from `seed`, its image encoder warmed
/// up when the config asks (continuing the warm-up `resume` holds).
fn fresh_model(
    config: &PretrainConfig,
    seed: u64,
    resume: Option<&Checkpoint>,
    job: &PretrainJob,
    device: &Device,
) -> Result<(Albef, Option<WarmupReport>), TrainError> {
    device.seed(seed);
    let mut model = config.model.init(true, device);
    let Some(warmup) = &config.recipe.vision_warmup else {
        return Ok((model, None));
    };
    // The synthetic world beside the training manifest supplies the labels
    // (training split) and the score (validation split); other data has
    // none, and the encoder stays as drawn.
    let Some(world) = config
        .train_file
        .first()
        .and_then(|manifest| manifest.parent())
        .filter(|dir| dir.join(WORLD_FILE).is_file())
    else {
        log::warn!(
            "vision_warmup needs a synthetic world's labels ({WORLD_FILE} beside the training \
             manifest); the image encoder starts untrained (--init-from loads pretrained weights)"
        );
        return Ok((model, None));
    };
    let data = WarmupData::from_world(world, warmup, config.model.patch_size as u32)?;
    log::info!(
        "warming the image encoder up on {} labelled training images for {} epochs",
        data.train.len(),
        warmup.epochs
    );
    let run = WarmupRun {
        data: &data,
        config: warmup,
        image_size: config.model.image_res as u32,
        augment: &config.augment,
        seed,
        job: serde_json::to_value(config).map_err(|source| TrainError::Json {
            path: job.out.join("vision_warmup.ckpt"),
            source,
        })?,
        paths: warmup_paths(&job.out),
        max_steps: None,
    };
    let (encoder, report) = warm_up_vision(model.visual_encoder, resume, &run, device)?;
    model.visual_encoder = encoder;
    Ok((model, Some(report)))
}

/// A WordPiece tokenizer trained on the training captions (as cleaned for
/// the model).
fn train_tokenizer(config: &PretrainConfig) -> Result<TextTokenizer, TrainError> {
    let mut captions = Vec::new();
    for manifest in &config.train_file {
        // Unusable entries are reported when the manifests are read for
        // training.
        let (items, _) = read_captioned_images(
            manifest,
            config.image_root.as_deref(),
            config.max_words,
            BadEntries::Skip,
        )?;
        captions.extend(items.into_iter().flat_map(|i| i.captions));
    }
    let tokenizer = TextTokenizer::train_wordpiece(captions.iter(), 30522, Framing::Start)?;
    log::info!(
        "trained a {}-token WordPiece tokenizer",
        tokenizer.vocab_size()
    );
    Ok(tokenizer)
}

/// A retrieval evaluation and what it ran on.
#[derive(Debug, Clone, Serialize)]
pub struct RetrievalOutcome {
    /// Both rankings' metrics.
    pub report: RetrievalReport,
    /// What ranking at random would score.
    pub chance: RetrievalMetrics,
    /// The manifest.
    pub manifest: PathBuf,
    /// Images and captions in it.
    pub images: usize,
    /// See `images`.
    pub texts: usize,
    /// Candidates re-ranked per query.
    pub k_test: usize,
    /// `eval_retrieval.json`: the re-ranked metrics under the reference's
    /// keys, the ITC-only ones under `itc`.
    pub written: PathBuf,
}

/// Evaluates `model` on a retrieval manifest and writes
/// `eval_retrieval.json` and `rankings.json` (each query's ten best
/// candidates, both rankings) into `out`.
pub fn evaluate_run(
    model: &Albef,
    config: &PretrainConfig,
    manifest: &Path,
    tokenizer: &TextTokenizer,
    device: &Device,
    out: &Path,
) -> Result<RetrievalOutcome, TrainError> {
    let (items, _) = read_captioned_images(
        manifest,
        config.image_root.as_deref(),
        config.max_words,
        BadEntries::Fail,
    )?;
    let set = RetrievalSet::new(&items);
    let model = model.valid().fork(device);
    let eval = RetrievalEval {
        image_size: config.model.image_res as u32,
        max_tokens: config.max_tokens,
        k_test: config.k_test,
        batch_size: 128,
    };
    let bar = progress::bar(0, "retrieval");
    let scores = evaluate_retrieval(&model, &set, tokenizer, &eval, device, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let report = scores.report(&set);
    write_json(&out.join("rankings.json"), &scores.rankings(&set, 10))?;
    let mut json = serde_json::to_value(report.reranked).expect("plain numbers");
    json["itc"] = serde_json::to_value(report.contrastive).expect("plain numbers");
    let written = out.join("eval_retrieval.json");
    write_json(&written, &json)?;
    Ok(RetrievalOutcome {
        report,
        chance: RetrievalMetrics::chance(&set),
        manifest: manifest.to_owned(),
        images: set.images.len(),
        texts: set.texts.len(),
        k_test: eval.k_test,
        written,
    })
}

/// Writes `value` as pretty JSON.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let json = serde_json::to_string_pretty(value).map_err(|source| TrainError::Json {
        path: path.to_owned(),
        source,
    })?;
    std::fs::write(path, json).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The model and config of a checkpoint to evaluate: ours (`.ckpt`, its
/// config inside, its weight average where it kept one), or an official
/// `.pth`/`.safetensors` with `config` giving its shape. Ours must have been
/// trained with `tokenizer`.
pub fn checkpoint_to_evaluate(
    path: &Path,
    config: Option<PretrainConfig>,
    tokenizer: &TextTokenizer,
    device: &Device,
) -> Result<(Albef, PretrainConfig), TrainError> {
    if path.extension().is_some_and(|e| e == "ckpt") {
        let checkpoint = Checkpoint::read(path)?;
        checkpoint.check_tokenizer(path, tokenizer)?;
        return AlbefPretraining::evaluated_from(&checkpoint, device);
    }
    let config = config.ok_or_else(|| {
        invalid(
            "config",
            format!(
                "{} is an official checkpoint: its model shape needs a config",
                path.display()
            ),
        )
    })?;
    let loaded = vl_models::import::albef::load_albef_file(path, &config.model, device)?;
    Ok((loaded.model, config))
}
