//! The SNLI-VE job end to end, as `train-albef ve` runs it: the starting
//! weights (our pretraining checkpoint, or an official ALBEF `.pth`), the
//! loader, one epoch of the shared loop at a time, and validation and test
//! accuracy after each, keeping the best validation epoch's weights
//! (`checkpoint_best.ckpt`); or the accuracy of a checkpoint alone.

use crate::albef::downstream::TaskStart;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;
use serde::Serialize;
use vl_data::ve::{VeExample, read_ve};
use vl_data::{BadEntries, ImageBatch, Loader, LoaderConfig, Skipped, TextTokenizer};
use vl_models::albef::ve::AlbefVe;

use super::{VeConfig, VeTraining, text_input};
use crate::TrainError;
use crate::albef::pipeline::write_json;
use crate::albef::pretraining::AlbefPretraining;
use crate::runner::checkpoint::{Checkpoint, JobKind};
use crate::runner::progress;
use crate::runner::{RunPaths, RunSummary, StopAt, Trainee, resumed_epochs, train};

/// A VE run to do.
#[derive(Debug, Clone)]
pub struct VeJob {
    /// The config (validated by the caller).
    pub config: VeConfig,
    /// Where it starts.
    pub start: TaskStart,
    /// Output directory.
    pub out: PathBuf,
    /// Seed of the head and every draw.
    pub seed: u64,
    /// What to do with unusable entries.
    pub bad: BadEntries,
    /// Blank every image: the text-only baseline.
    pub blank_images: bool,
}

/// Accuracy after one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VeEpoch {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Validation accuracy, when there is a validation file.
    pub val_acc: Option<f64>,
    /// Test accuracy, when there is a test file.
    pub test_acc: Option<f64>,
}

/// What a VE run did.
#[derive(Debug, Clone, Serialize)]
pub struct VeOutcome {
    /// The loop's account of the last epoch trained.
    pub summary: Option<RunSummary>,
    /// Every epoch's scores (this invocation's).
    pub epochs: Vec<VeEpoch>,
    /// The epoch with the best validation accuracy (the last one without a
    /// validation file); its weights are `checkpoint_best.ckpt`.
    pub best: Option<VeEpoch>,
    /// Accuracy of always answering the training set's most frequent
    /// class, on the test file (else the validation file).
    pub majority: Option<f64>,
    /// Entries skipped.
    #[serde(skip)]
    pub skipped: Skipped,
    /// The files it wrote.
    #[serde(skip)]
    pub paths: RunPaths,
}

/// Fine-tunes for SNLI-VE as `job` says, on `device`.
pub fn fine_tune_ve(job: &VeJob, device: &Device) -> Result<VeOutcome, TrainError> {
    std::fs::create_dir_all(&job.out).map_err(|source| TrainError::Io {
        path: job.out.clone(),
        source,
    })?;
    let (config, tokenizer, start) = starting_point(job, device)?;
    let paths = RunPaths::in_dir(&job.out).with_tokenizer(&tokenizer);
    let mut skipped = Skipped::default();
    let mut read = |file: &Path| -> Result<Vec<VeExample>, TrainError> {
        let (examples, skipped_here) = read_ve(
            file,
            config.image_root.as_deref(),
            config.max_words,
            job.bad,
        )?;
        skipped.extend(skipped_here);
        Ok(examples)
    };
    let train_set = read(&config.train_file)?;
    let val_set = config.val_file.as_deref().map(&mut read).transpose()?;
    let test_set = config.test_file.as_deref().map(&mut read).transpose()?;
    let labels: Arc<Vec<usize>> = Arc::new(train_set.iter().map(|e| e.label).collect());
    let mut state = match start {
        Start::Weights(weights) => {
            let (model, momentum) = *weights;
            VeTraining::new(config.clone(), model, momentum, labels, job.seed, device)
        }
        Start::Checkpoint(checkpoint) => {
            let mut state = VeTraining::resume(&checkpoint, labels, device)?;
            state.config.schedular.epochs = config.schedular.epochs;
            state
        }
    };
    state.blank_images = job.blank_images;
    tokenizer.save(&job.out.join("tokenizer.json"))?;
    write_json(&job.out.join("config.json"), &state.config)?;
    let loader = Loader::new(
        VeExample::loader_items(&train_set),
        Arc::new(tokenizer.clone()),
        LoaderConfig {
            batch_size: config.batch_size_train,
            image_size: config.model.image_res as u32,
            augment: Some(config.augment.clone()),
            max_tokens: config.max_tokens,
            seed: job.seed,
            prefetch: 2,
            bad: job.bad,
            similar_fraction: 0.0,
        },
    )?;
    let scorer = Scorer {
        tokenizer: &tokenizer,
        config: &config,
        blank_images: job.blank_images,
        device,
    };
    let mut outcome = VeOutcome {
        summary: None,
        epochs: Vec::new(),
        best: None,
        majority: majority(&train_set, test_set.as_ref().or(val_set.as_ref())),
        skipped,
        paths: paths.clone(),
    };
    let epochs = config.schedular.epochs;
    job.start
        .check_work_left(state.position, epochs, loader.steps_per_epoch())?;
    while state.position.epoch < epochs {
        let epoch = state.position.epoch;
        let stop = StopAt {
            epochs: epoch + 1,
            max_steps: None,
        };
        outcome.summary = Some(train(&mut state, &loader, &paths, stop, "ve")?);
        let model = state.evaluated();
        let scores = VeEpoch {
            epoch,
            val_acc: val_set
                .as_ref()
                .map(|s| scorer.accuracy(&model, s))
                .transpose()?,
            test_acc: test_set
                .as_ref()
                .map(|s| scorer.accuracy(&model, s))
                .transpose()?,
        };
        log::info!("epoch {epoch}: {scores:?}");
        let better = match (outcome.best, scores.val_acc) {
            (Some(best), Some(val)) => val > best.val_acc.unwrap_or(f64::NEG_INFINITY),
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
enum Start {
    /// A model and its momentum copy, if the checkpoint had one.
    Weights(Box<(AlbefVe, Option<AlbefVe>)>),
    /// A VE checkpoint to resume.
    Checkpoint(Box<Checkpoint>),
}

/// The config in force, the tokenizer and the start of `job`.
fn starting_point(
    job: &VeJob,
    device: &Device,
) -> Result<(VeConfig, TextTokenizer, Start), TrainError> {
    let mut config = job.config.clone();
    let tokenizer_beside = |path: &Path| path.with_file_name("tokenizer.json");
    let path = match &job.start {
        TaskStart::Resume {
            checkpoint: path,
            epochs,
        } => {
            let checkpoint = Checkpoint::read(path)?;
            let saved = checkpoint.state::<VeConfig>(JobKind::AlbefVe)?;
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
    let start = if is_ours {
        let checkpoint = Checkpoint::read(path)?;
        checkpoint.check_tokenizer(path, &tokenizer)?;
        let (model, momentum, pretrained) =
            AlbefPretraining::downstream_start(&checkpoint, device)?;
        if pretrained.model.image_res != config.model.image_res {
            return Err(TrainError::BadInput(format!(
                "image_res {} differs from the checkpoint's {}: resampling our checkpoints' position table is not supported yet (official checkpoints are resampled)",
                config.model.image_res, pretrained.model.image_res
            )));
        }
        config.model = pretrained.model;
        device.seed(job.seed);
        let ve = |m: vl_models::Albef| {
            AlbefVe::from_albef(m.visual_encoder, m.text_encoder.bert, device)
        };
        let model = ve(model);
        let mut momentum = ve(momentum);
        momentum.cls_head = model.cls_head.clone();
        Start::Weights(Box::new((model, Some(momentum))))
    } else {
        device.seed(job.seed);
        let tensors = vl_models::import::TensorMap::read(path)?;
        let loaded = vl_models::import::albef_ve::load_albef_ve(&config.model, tensors, device)?;
        Start::Weights(Box::new((loaded.model, loaded.momentum)))
    };
    if tokenizer.vocab_size() > config.model.bert_config.vocab_size {
        return Err(TrainError::BadInput(format!(
            "{}: {} tokens, more than the model's vocab_size {}",
            tokenizer_path.display(),
            tokenizer.vocab_size(),
            config.model.bert_config.vocab_size
        )));
    }
    Ok((config, tokenizer, start))
}

/// Accuracy of always answering the most frequent training label on `set`.
fn majority(train: &[VeExample], set: Option<&Vec<VeExample>>) -> Option<f64> {
    let set = set?;
    let mut counts = [0usize; 3];
    train.iter().for_each(|e| counts[e.label] += 1);
    let top = (0..3).max_by_key(|&c| counts[c])?;
    Some(set.iter().filter(|e| e.label == top).count() as f64 / set.len().max(1) as f64)
}

/// Scores a VE model on annotated examples.
pub struct Scorer<'a> {
    /// The model's tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// Image size, token budget and batch size.
    pub config: &'a VeConfig,
    /// Blank every image (the text-only baseline).
    pub blank_images: bool,
    /// Where to compute.
    pub device: &'a Device,
}

impl Scorer<'_> {
    /// Fraction of `examples` whose predicted class is their label.
    pub fn accuracy(&self, model: &AlbefVe, examples: &[VeExample]) -> Result<f64, TrainError> {
        let side = self.config.model.image_res as u32;
        let batch = self.config.batch_size_test;
        let bar = progress::bar(examples.len() as u64, "ve eval");
        let mut right = 0usize;
        for chunk in examples.chunks(batch) {
            let paths: Vec<&Path> = chunk.iter().map(|e| e.image.as_path()).collect();
            let images = match self.blank_images {
                true => ImageBatch::from_values(
                    vec![0.0; chunk.len() * 3 * (side * side) as usize],
                    side as usize,
                ),
                false => vl_data::eval_images(&paths, side)?,
            };
            let texts: Vec<&str> = chunk.iter().map(|e| e.sentence.as_str()).collect();
            let text = self
                .tokenizer
                .encode_batch(&texts, Some(self.config.max_tokens))?;
            let logits = model.logits(
                images.to_tensor(self.device),
                &text_input(&text, self.device),
            );
            let predicted = logits.argmax(1).into_data();
            let predicted = predicted.convert::<i64>();
            let predicted = predicted.as_slice::<i64>().expect("i64 after convert");
            right += chunk
                .iter()
                .zip(predicted)
                .filter(|(e, p)| e.label as i64 == **p)
                .count();
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(right as f64 / examples.len().max(1) as f64)
    }
}
