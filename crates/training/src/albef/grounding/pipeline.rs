//! The grounding job end to end, as `train-albef grounding` runs it: the
//! starting weights and their grounding accuracy, retrieval fine-tuning on
//! (image, expression) pairs one epoch at a time with `val_d` / `test_d`
//! after each (the best `val_d` kept), and PNGs of test examples; or the
//! accuracy of a checkpoint alone (`evaluate_only`).

use crate::albef::downstream::TaskStart;
use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::Device;
use serde::Serialize;
use vl_data::grounding::{Expression, GroundingExample, grounding_examples, read_expressions};
use vl_data::{BadEntries, Loader, LoaderConfig, Skipped, TextTokenizer};
use vl_models::Albef;

use super::GroundingConfig;
use super::eval::{Grounder, GroundingScores, draw, scores};
use crate::TrainError;
use crate::albef::pipeline::write_json;
use crate::albef::pretraining::AlbefPretraining;
use crate::albef::retrieval::pipeline::{RetrievalJob, Start, job_value, starting_point};
use crate::runner::checkpoint::{Checkpoint, JobKind};
use crate::runner::{RunPaths, RunSummary, StopAt, resumed_epochs, train};

/// A grounding run to do.
#[derive(Debug, Clone)]
pub struct GroundingJob {
    /// The config (validated by the caller).
    pub config: GroundingConfig,
    /// Where it starts (`Resume`: a grounding run's checkpoint).
    pub start: TaskStart,
    /// Output directory.
    pub out: PathBuf,
    /// Seed of every draw.
    pub seed: u64,
    /// What to do with unusable entries.
    pub bad: BadEntries,
    /// Score the starting weights and stop.
    pub evaluate_only: bool,
}

/// Accuracies after one epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroundingEpoch {
    /// Epoch (0-based; `None` for the starting weights).
    pub epoch: Option<usize>,
    /// On the first `test_file` (`val_d`).
    pub val: Option<GroundingScores>,
    /// On the others (`test_d`, `test_d_multi`, per split).
    pub test: Option<GroundingScores>,
}

/// What a grounding run did.
#[derive(Debug, Clone, Serialize)]
pub struct GroundingOutcome {
    /// The starting weights' accuracies (a fresh start or
    /// `evaluate_only`).
    pub zero_shot: Option<GroundingEpoch>,
    /// Every epoch's (this invocation's).
    pub epochs: Vec<GroundingEpoch>,
    /// The epoch with the best `val_d`; its state is
    /// `checkpoint_best.ckpt`.
    pub best: Option<GroundingEpoch>,
    /// The drawn test examples.
    pub pngs: Vec<PathBuf>,
    /// The loop's account of the last epoch trained.
    pub summary: Option<RunSummary>,
    /// Entries skipped.
    #[serde(skip)]
    pub skipped: Skipped,
    /// The files it wrote.
    #[serde(skip)]
    pub paths: RunPaths,
}

fn grounder<'a>(
    model: &'a Albef,
    tokenizer: &'a TextTokenizer,
    config: &GroundingConfig,
    device: &'a Device,
) -> Grounder<'a> {
    Grounder {
        model,
        tokenizer,
        image_res: config.model.image_res,
        max_tokens: config.max_tokens,
        layer: config.gradcam_layer,
        batch_size: config.batch_size,
        device,
    }
}

/// Fine-tunes (or scores) for weakly supervised grounding as `job` says.
pub fn fine_tune_grounding(
    job: &GroundingJob,
    device: &Device,
) -> Result<GroundingOutcome, TrainError> {
    std::fs::create_dir_all(&job.out).map_err(|source| TrainError::Io {
        path: job.out.clone(),
        source,
    })?;
    let (config, tokenizer, start) = match &job.start {
        TaskStart::Resume {
            checkpoint: path,
            epochs,
        } => {
            let checkpoint = Checkpoint::read(path)?;
            let saved = checkpoint.state::<GroundingConfig>(JobKind::AlbefGrounding)?;
            let mut config = saved.config;
            config.schedular.epochs =
                resumed_epochs(config.schedular.epochs, *epochs, saved.position, path)?;
            let tokenizer = TextTokenizer::from_file(&path.with_file_name("tokenizer.json"))?;
            checkpoint.check_tokenizer(path, &tokenizer)?;
            (config, tokenizer, Start::Checkpoint(Box::new(checkpoint)))
        }
        TaskStart::From(_) => {
            let retrieval = RetrievalJob {
                config: job.config.retrieval_config(),
                start: job.start.clone(),
                out: job.out.clone(),
                seed: job.seed,
                bad: job.bad,
                evaluate_only: false,
                max_steps: None,
            };
            let (shaped, tokenizer, start) = starting_point(&retrieval, device)?;
            let config = GroundingConfig {
                model: shaped.model,
                ..job.config.clone()
            };
            (config, tokenizer, start)
        }
    };
    let paths = RunPaths::in_dir(&job.out).with_tokenizer(&tokenizer);
    let mut skipped = Skipped::default();
    let mut read = |file: &PathBuf| -> Result<Vec<Expression>, TrainError> {
        let (read, skipped_here) = read_expressions(
            file,
            config.image_root.as_deref(),
            config.max_words,
            job.bad,
        )?;
        skipped.extend(skipped_here);
        Ok(read)
    };
    let mut evaluated = Vec::new();
    for file in &config.test_file {
        evaluated.push(grounding_examples(
            read(file)?,
            &config.det_file,
            config.ref_file.as_deref(),
        )?);
    }
    let val = evaluated.first().cloned();
    let test: Option<Vec<GroundingExample>> =
        (evaluated.len() > 1).then(|| evaluated[1..].concat());
    let evaluate = |model: &Albef, epoch| -> Result<GroundingEpoch, TrainError> {
        let score = |set: &Option<Vec<GroundingExample>>| {
            set.as_ref()
                .map(|set| {
                    grounder(model, &tokenizer, &config, device)
                        .ground(set)
                        .map(|g| scores(set, &g))
                })
                .transpose()
        };
        Ok(GroundingEpoch {
            epoch,
            val: score(&val)?,
            test: score(&test)?,
        })
    };
    let mut outcome = GroundingOutcome {
        zero_shot: None,
        epochs: Vec::new(),
        best: None,
        pngs: Vec::new(),
        summary: None,
        skipped: Skipped::default(),
        paths: paths.clone(),
    };
    let special = tokenizer.special_tokens()?;
    let mut state = match start {
        Start::Weights(weights) => {
            let (model, momentum) = *weights;
            outcome.zero_shot = Some(evaluate(&model, None)?);
            if job.evaluate_only {
                outcome.skipped = skipped;
                write_json(&job.out.join("results.json"), &outcome)?;
                return Ok(outcome);
            }
            let job_config = serde_json::to_value(&config).map_err(|source| TrainError::Json {
                path: paths.checkpoint.clone(),
                source,
            })?;
            AlbefPretraining::for_retrieval(
                config.retrieval_config().training_config(),
                (model, momentum),
                special,
                job.seed,
                (JobKind::AlbefGrounding, job_config),
                device,
            )
        }
        Start::Checkpoint(checkpoint) => AlbefPretraining::resume_retrieval(
            &checkpoint,
            JobKind::AlbefGrounding,
            job_value(&config)?,
            config.retrieval_config().training_config(),
            special,
            device,
        )?,
    };
    tokenizer.save(&job.out.join("tokenizer.json"))?;
    write_json(&job.out.join("config.json"), &config)?;
    let mut items = Vec::new();
    for file in &config.train_file {
        items.extend(Expression::loader_items(&read(file)?));
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
            max_steps: None,
        };
        outcome.summary = Some(train(&mut state, &loader, &paths, stop, "grounding")?);
        let scores = evaluate(&state.evaluated(), Some(epoch))?;
        log::info!(
            "epoch {epoch}: val_d {:?}, test_d {:?}",
            scores.val.as_ref().map(|s| s.d),
            scores.test.as_ref().map(|s| s.d)
        );
        let val_d = |e: &GroundingEpoch| e.val.as_ref().map(|s| s.d);
        let better = match (outcome.best.as_ref().and_then(val_d), val_d(&scores)) {
            (Some(best), Some(now)) => now > best,
            _ => true,
        };
        if better {
            paths.write_checkpoint(state.checkpoint()?, &job.out.join("checkpoint_best.ckpt"))?;
            outcome.best = Some(scores.clone());
        }
        outcome.epochs.push(scores);
    }
    if let Some(test) = &test {
        let sample = &test[..config.png_examples.min(test.len())];
        let model = state.evaluated();
        let grounded = grounder(&model, &tokenizer, &config, device).ground(sample)?;
        let dir = job.out.join("grounding_png");
        std::fs::create_dir_all(&dir).map_err(|source| TrainError::Io {
            path: dir.clone(),
            source,
        })?;
        for (i, (example, g)) in sample.iter().zip(&grounded).enumerate() {
            let path = dir.join(format!("{i:03}.png"));
            draw(example, g, 8)
                .save(&path)
                .map_err(|e| TrainError::BadInput(format!("writing {}: {e}", path.display())))?;
            outcome.pngs.push(path);
        }
    }
    outcome.skipped = skipped;
    outcome.skipped.extend(loader.skipped());
    write_json(&job.out.join("results.json"), &outcome)?;
    Ok(outcome)
}
