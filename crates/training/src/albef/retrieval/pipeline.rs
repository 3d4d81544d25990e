//! The retrieval fine-tuning job end to end, as `train-albef retrieval`
//! runs it: the starting weights (our pretraining checkpoint, or an
//! official ALBEF `.pth`), their zero-shot scores on the test manifest,
//! one epoch of the shared loop at a time with validation and test scores
//! after each, the best validation epoch kept; or the scores of a
//! checkpoint alone (`evaluate_only`: ours, or the official `mscoco.pth` /
//! `flickr30k.pth`).

use crate::albef::downstream::TaskStart;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;
use serde::Serialize;
use vl_data::manifest::read_captioned_images;
use vl_data::{BadEntries, Loader, LoaderConfig, RetrievalSet, Skipped, TextTokenizer};
use vl_models::Albef;
use vl_objectives::fresh_copy;

use super::RetrievalConfig;
use crate::TrainError;
use crate::albef::pipeline::write_json;
use crate::albef::pretraining::AlbefPretraining;
use crate::eval::retrieval::{RetrievalEval, RetrievalMetrics, evaluate_retrieval};
use crate::runner::checkpoint::{Checkpoint, JobKind};
use crate::runner::progress;
use crate::runner::{RunPaths, RunSummary, StopAt, resumed_epochs, train};

/// A retrieval run to do.
#[derive(Debug, Clone)]
pub struct RetrievalJob {
    /// The config (validated by the caller).
    pub config: RetrievalConfig,
    /// Where it starts.
    pub start: TaskStart,
    /// Output directory.
    pub out: PathBuf,
    /// Seed of every draw.
    pub seed: u64,
    /// What to do with unusable manifest entries.
    pub bad: BadEntries,
    /// Score the starting weights on the validation and test manifests
    /// and stop.
    pub evaluate_only: bool,
    /// Stop (with a checkpoint, before that epoch's evaluation) after this
    /// many steps in all, if set.
    pub max_steps: Option<usize>,
}

/// Scores after one epoch (percent, the reference's keys).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetrievalEpoch {
    /// Epoch (0-based).
    pub epoch: usize,
    /// On the validation manifest, re-ranked by ITM.
    pub val: Option<RetrievalMetrics>,
    /// On the test manifest, re-ranked by ITM.
    pub test: Option<RetrievalMetrics>,
}

/// What a retrieval run did.
#[derive(Debug, Clone, Serialize)]
pub struct RetrievalOutcome {
    /// The starting weights' scores on the test manifest (a fresh start
    /// or `evaluate_only`).
    pub zero_shot: Option<RetrievalMetrics>,
    /// With `evaluate_only`, the starting weights on the validation
    /// manifest.
    pub zero_shot_val: Option<RetrievalMetrics>,
    /// Random ranking on the test manifest.
    pub chance: Option<RetrievalMetrics>,
    /// Every epoch's scores (this invocation's).
    pub epochs: Vec<RetrievalEpoch>,
    /// The epoch with the best validation `r_mean` (the last without a
    /// validation manifest); its weights are `checkpoint_best.ckpt`.
    pub best: Option<RetrievalEpoch>,
    /// The loop's account of the last epoch trained.
    pub summary: Option<RunSummary>,
    /// Manifest entries skipped.
    #[serde(skip)]
    pub skipped: Skipped,
    /// The files it wrote.
    #[serde(skip)]
    pub paths: RunPaths,
}

/// Fine-tunes (or scores) for image–text retrieval as `job` says.
pub fn fine_tune_retrieval(
    job: &RetrievalJob,
    device: &Device,
) -> Result<RetrievalOutcome, TrainError> {
    std::fs::create_dir_all(&job.out).map_err(|source| TrainError::Io {
        path: job.out.clone(),
        source,
    })?;
    let (config, tokenizer, start) = starting_point(job, device)?;
    let paths = RunPaths::in_dir(&job.out).with_tokenizer(&tokenizer);
    let scorer = Scorer {
        config: &config,
        tokenizer: &tokenizer,
        device,
    };
    let mut outcome = RetrievalOutcome {
        zero_shot: None,
        zero_shot_val: None,
        chance: None,
        epochs: Vec::new(),
        best: None,
        summary: None,
        skipped: Skipped::default(),
        paths: paths.clone(),
    };
    if let Some(test) = &config.test_file {
        outcome.chance = Some(RetrievalMetrics::chance(&scorer.set(test)?));
    }
    let special = tokenizer.special_tokens()?;
    let mut state = match start {
        Start::Weights(weights) => {
            let (model, momentum) = *weights;
            outcome.zero_shot = scorer.score(&model, config.test_file.as_deref())?;
            if job.evaluate_only {
                outcome.zero_shot_val = scorer.score(&model, config.val_file.as_deref())?;
                write_json(&job.out.join("results.json"), &outcome)?;
                return Ok(outcome);
            }
            let job_config = serde_json::to_value(&config).map_err(|source| TrainError::Json {
                path: paths.checkpoint.clone(),
                source,
            })?;
            AlbefPretraining::for_retrieval(
                config.training_config(),
                (model, momentum),
                special,
                job.seed,
                (JobKind::AlbefRetrieval, job_config),
                device,
            )
        }
        Start::Checkpoint(checkpoint) => AlbefPretraining::resume_retrieval(
            &checkpoint,
            JobKind::AlbefRetrieval,
            job_value(&config)?,
            config.training_config(),
            special,
            device,
        )?,
    };
    tokenizer.save(&job.out.join("tokenizer.json"))?;
    write_json(&job.out.join("config.json"), &config)?;
    let mut items = Vec::new();
    for manifest in &config.train_file {
        let (mut read, skipped) = read_captioned_images(
            manifest,
            config.image_root.as_deref(),
            config.max_words,
            job.bad,
        )?;
        outcome.skipped.extend(skipped);
        items.append(&mut read);
    }
    let loader = Loader::new(
        items,
        Arc::new(tokenizer.clone()),
        LoaderConfig {
            batch_size: config.batch_size_train,
            image_size: config.model.image_res as u32,
            augment: Some(config.augment.clone()),
            max_tokens: config.max_tokens,
            seed: state.seed,
            prefetch: 2,
            bad: job.bad,
            similar_fraction: 0.0,
        },
    )?;
    job.start.check_work_left(
        state.position,
        config.schedular.epochs,
        loader.steps_per_epoch(),
    )?;
    while state.position.epoch < config.schedular.epochs {
        let epoch = state.position.epoch;
        let stop = StopAt {
            epochs: epoch + 1,
            max_steps: job.max_steps,
        };
        outcome.summary = Some(train(&mut state, &loader, &paths, stop, "retrieval")?);
        if job.max_steps.is_some_and(|m| state.position.step >= m) {
            break;
        }
        let model = state.evaluated();
        let scores = RetrievalEpoch {
            epoch,
            val: scorer.score(&model, config.val_file.as_deref())?,
            test: scorer.score(&model, config.test_file.as_deref())?,
        };
        log::info!(
            "epoch {epoch}: val r_mean {}, test r_mean {}",
            scores.val.map_or(f64::NAN, |m| m.r_mean),
            scores.test.map_or(f64::NAN, |m| m.r_mean)
        );
        let better = match (outcome.best.and_then(|b| b.val), scores.val) {
            (Some(best), Some(val)) => val.r_mean > best.r_mean,
            _ => true,
        };
        if better {
            paths.write_checkpoint(state.checkpoint()?, &job.out.join("checkpoint_best.ckpt"))?;
            outcome.best = Some(scores);
        }
        outcome.epochs.push(scores);
    }
    outcome.skipped.extend(loader.skipped());
    write_json(&job.out.join("results.json"), &outcome)?;
    Ok(outcome)
}

/// The starting weights or checkpoint.
pub(crate) enum Start {
    /// The online model and its momentum copy.
    Weights(Box<(Albef, Albef)>),
    /// A retrieval checkpoint to resume.
    Checkpoint(Box<Checkpoint>),
}

/// The config in force, the tokenizer and the start of `job`.
pub(crate) fn starting_point(
    job: &RetrievalJob,
    device: &Device,
) -> Result<(RetrievalConfig, TextTokenizer, Start), TrainError> {
    let tokenizer_beside = |path: &Path| path.with_file_name("tokenizer.json");
    let mut config = job.config.clone();
    let path = match &job.start {
        TaskStart::Resume {
            checkpoint: path,
            epochs,
        } => {
            let checkpoint = Checkpoint::read(path)?;
            let saved = checkpoint.state::<RetrievalConfig>(JobKind::AlbefRetrieval)?;
            let mut config = saved.config;
            config.schedular.epochs =
                resumed_epochs(config.schedular.epochs, *epochs, saved.position, path)?;
            let tokenizer = TextTokenizer::from_file(&tokenizer_beside(path))?;
            checkpoint.check_tokenizer(path, &tokenizer)?;
            return Ok((config, tokenizer, Start::Checkpoint(Box::new(checkpoint))));
        }
        TaskStart::From(path) => path,
    };
    let is_ours = path.extension().is_some_and(|e| e == "ckpt");
    let tokenizer_path = match &config.tokenizer {
        Some(p) => p.clone(),
        None if is_ours => tokenizer_beside(path),
        None => {
            return Err(TrainError::BadInput(format!(
                "{} is an official checkpoint: give its tokenizer.json (`tokenizer:` in the config)",
                path.display()
            )));
        }
    };
    let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
    let (model, momentum) = if is_ours {
        let checkpoint = Checkpoint::read(path)?;
        checkpoint.check_tokenizer(path, &tokenizer)?;
        let (model, momentum, shape) = match checkpoint.kind() {
            JobKind::AlbefRetrieval => {
                let saved = checkpoint
                    .state::<RetrievalConfig>(JobKind::AlbefRetrieval)?
                    .config;
                let state = AlbefPretraining::resume_retrieval(
                    &checkpoint,
                    JobKind::AlbefRetrieval,
                    job_value(&saved)?,
                    saved.training_config(),
                    tokenizer.special_tokens()?,
                    device,
                )?;
                (state.evaluated(), state.momentum().clone(), saved.model)
            }
            _ => {
                let (model, momentum, pretrained) =
                    AlbefPretraining::downstream_start(&checkpoint, device)?;
                (model, momentum, pretrained.model)
            }
        };
        if shape.image_res != config.model.image_res {
            return Err(TrainError::BadInput(format!(
                "image_res {} differs from the checkpoint's {}: resampling our checkpoints' position table is not supported yet (official checkpoints are resampled)",
                config.model.image_res, shape.image_res
            )));
        }
        config.model = shape;
        (model, momentum)
    } else {
        device.seed(job.seed);
        let loaded = vl_models::import::albef::load_albef_file(path, &config.model, device)?;
        let momentum = match loaded.momentum {
            Some(momentum) => momentum,
            None => fresh_copy(&loaded.model),
        };
        (loaded.model, momentum)
    };
    if tokenizer.vocab_size() > config.model.bert_config.vocab_size {
        return Err(TrainError::BadInput(format!(
            "{}: {} tokens, more than the model's vocab_size {}",
            tokenizer_path.display(),
            tokenizer.vocab_size(),
            config.model.bert_config.vocab_size
        )));
    }
    Ok((
        config,
        tokenizer,
        Start::Weights(Box::new((model, momentum))),
    ))
}

/// Scores models on retrieval manifests as the reference evaluates.
struct Scorer<'a> {
    config: &'a RetrievalConfig,
    tokenizer: &'a TextTokenizer,
    device: &'a Device,
}

impl Scorer<'_> {
    fn set(&self, manifest: &Path) -> Result<RetrievalSet, TrainError> {
        let (items, _) = read_captioned_images(
            manifest,
            self.config.image_root.as_deref(),
            self.config.max_words,
            BadEntries::Fail,
        )?;
        Ok(RetrievalSet::new(&items))
    }

    /// The ITM re-ranked metrics of `model` on `manifest`, if given.
    fn score(
        &self,
        model: &Albef,
        manifest: Option<&Path>,
    ) -> Result<Option<RetrievalMetrics>, TrainError> {
        let Some(manifest) = manifest else {
            return Ok(None);
        };
        let set = self.set(manifest)?;
        let eval = RetrievalEval {
            image_size: self.config.model.image_res as u32,
            max_tokens: self.config.max_tokens,
            k_test: self.config.k_test,
            batch_size: self.config.batch_size_test,
        };
        let bar = progress::bar(0, "retrieval eval");
        let scores =
            evaluate_retrieval(model, &set, self.tokenizer, &eval, self.device, |d, t| {
                bar.set_length(t as u64);
                bar.set_position(d as u64)
            })?;
        bar.finish_and_clear();
        Ok(Some(scores.report(&set).reranked))
    }
}

/// A job's config as the checkpoint header records it.
pub(crate) fn job_value(config: &impl serde::Serialize) -> Result<serde_json::Value, TrainError> {
    serde_json::to_value(config).map_err(|source| TrainError::Json {
        path: "the job's config".into(),
        source,
    })
}
