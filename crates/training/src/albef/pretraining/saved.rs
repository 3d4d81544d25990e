//! A pretraining or retrieval run's checkpoint: the online, momentum and
//! averaged models, AdamW's state, the queues (and their image ids), and
//! the header that says which job wrote it; resuming from it; and the
//! weights evaluation and downstream tasks start from.

use burn::module::Module;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use vl_data::SpecialTokens;
use vl_models::Albef;
use vl_objectives::FeatureQueue;

use super::{AlbefPretraining, Objective, SCALARS, masking, trainable};
use crate::TrainError;
use crate::albef::config::PretrainConfig;
use crate::runner::checkpoint::{Checkpoint, JobKind, RunState, tensor_bytes, tensors_from_bytes};
use crate::runner::optimizer::adamw;

impl AlbefPretraining {
    /// Snapshot of the whole run.
    pub fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        let (position, seed) = (self.position, self.seed);
        let mut checkpoint = match &self.objective {
            Objective::Pretraining => Checkpoint::new(RunState {
                kind: JobKind::AlbefPretrain,
                position,
                seed,
                config: &self.config,
            })?,
            Objective::Retrieval { kind, job } => Checkpoint::new(RunState {
                kind: *kind,
                position,
                seed,
                config: job,
            })?,
        };
        checkpoint.push_module(MODEL, &self.model().valid())?;
        checkpoint.push_module(MOMENTUM, self.momentum())?;
        checkpoint.push(OPTIMIZER, self.optimizer.into_bytes()?.to_vec());
        // The write pointer first, then both queues.
        let ptr = (self.queue.ptr as u64).to_le_bytes().to_vec();
        checkpoint.push(
            QUEUE,
            [ptr, tensor_bytes(&[&self.queue.image, &self.queue.text])].concat(),
        );
        if let Some(ids) = &self.queue.ids {
            let ids = ids.clone().into_data().convert::<i64>();
            let ids = ids.as_slice::<i64>().expect("i64 after convert");
            checkpoint.push(
                QUEUE_IDS,
                ids.iter().flat_map(|i| i.to_le_bytes()).collect(),
            );
        }
        if let Some(average) = &self.model_ema {
            checkpoint.push_module(MODEL_EMA, average)?;
        }
        Ok(checkpoint)
    }

    /// Restores a pretraining run saved by [`AlbefPretraining::checkpoint`].
    pub fn resume(
        checkpoint: &Checkpoint,
        special: SpecialTokens,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let RunState {
            position,
            seed,
            config,
            ..
        } = checkpoint.state::<PretrainConfig>(JobKind::AlbefPretrain)?;
        let state = Self::restore(checkpoint, config, Objective::Pretraining, special, device)?;
        Ok(Self {
            position,
            seed,
            ..state
        })
    }

    /// Restores a retrieval fine-tuning run under its job's config `job`
    /// (the checkpoint header's, or that extended), `config` the training
    /// config it makes.
    pub fn resume_retrieval(
        checkpoint: &Checkpoint,
        kind: JobKind,
        job: serde_json::Value,
        config: PretrainConfig,
        special: SpecialTokens,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let RunState { position, seed, .. } = checkpoint.state::<serde_json::Value>(kind)?;
        let state = Self::restore(
            checkpoint,
            config,
            Objective::Retrieval { kind, job },
            special,
            device,
        )?;
        Ok(Self {
            position,
            seed,
            ..state
        })
    }

    /// The models, optimizer and queues of `checkpoint` under `config`
    /// (position and seed left at their defaults).
    fn restore(
        checkpoint: &Checkpoint,
        config: PretrainConfig,
        objective: Objective,
        special: SpecialTokens,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let mlm_head = objective == Objective::Pretraining;
        let blank = || config.model.init(mlm_head, device);
        let model = checkpoint.module(MODEL, blank())?;
        let momentum = checkpoint.module(MOMENTUM, blank())?;
        let model = trainable(model, device);
        let optimizer = adamw(&model, &config.optimizer, SCALARS).from_bytes(
            Bytes::from_bytes_vec(checkpoint.section(OPTIMIZER)?.to_vec()),
        )?;
        let mut queue = read_queue(checkpoint.section(QUEUE)?, &config, device)?;
        if let Objective::Retrieval { .. } = objective {
            queue.ids = Some(read_ids(checkpoint.section(QUEUE_IDS)?, &config, device)?);
        }
        let model_ema = match config.recipe.model_ema_decay {
            Some(_) => Some(checkpoint.module(MODEL_EMA, blank())?),
            None => None,
        };
        Ok(Self {
            masking: masking(&config, special),
            config,
            objective,
            model: Some(model),
            momentum: Some(momentum),
            queue,
            optimizer,
            position: Default::default(),
            seed: 0,
            device: device.clone(),
            model_ema,
        })
    }

    /// The weights a finished run is evaluated with, from its checkpoint:
    /// the weight average where the run kept one, else the online model.
    pub fn evaluated_from(
        checkpoint: &Checkpoint,
        device: &Device,
    ) -> Result<(Albef, PretrainConfig), TrainError> {
        let config = checkpoint
            .state::<PretrainConfig>(JobKind::AlbefPretrain)?
            .config;
        let section = match config.recipe.model_ema_decay {
            Some(_) => MODEL_EMA,
            None => MODEL,
        };
        Ok((
            checkpoint.module(section, config.model.init(true, device))?,
            config,
        ))
    }
}

impl AlbefPretraining {
    /// What a downstream task starts from: the evaluated weights (see
    /// [`AlbefPretraining::evaluated_from`]), a momentum model and the run's
    /// config. The reference's `*_m` weights are a slow (0.995) average of
    /// the online ones; where a run kept a weight average
    /// (`recipe.model_ema_decay`) that average is the slow one (the tiny
    /// preset's momentum model follows at 0.5) and both models start from
    /// it, else from the online and momentum models.
    pub fn downstream_start(
        checkpoint: &Checkpoint,
        device: &Device,
    ) -> Result<(Albef, Albef, PretrainConfig), TrainError> {
        let (model, config) = Self::evaluated_from(checkpoint, device)?;
        let momentum = match config.recipe.model_ema_decay {
            Some(_) => model.clone(),
            None => checkpoint.module(MOMENTUM, config.model.init(true, device))?,
        };
        Ok((model, momentum, config))
    }
}

/// Checkpoint sections.
const MODEL: &str = "model";
const MOMENTUM: &str = "momentum";
const OPTIMIZER: &str = "optimizer";
const QUEUE: &str = "queue";
/// The image ids of the queued features (retrieval), little-endian `i64`s.
const QUEUE_IDS: &str = "queue_ids";
/// The weight average's section.
const MODEL_EMA: &str = "model_ema";

/// The queues of a checkpoint's `queue` section: the write pointer, then
/// the image and the text queue, `[embed_dim, queue_size]` each.
fn read_queue(
    bytes: &[u8],
    config: &PretrainConfig,
    device: &Device,
) -> Result<FeatureQueue, TrainError> {
    let (ptr, queues) = bytes
        .split_at_checked(8)
        .ok_or_else(|| TrainError::ModuleMismatch {
            section: QUEUE.into(),
            report: "shorter than its write pointer".into(),
        })?;
    let ptr = u64::from_le_bytes(ptr.try_into().expect("8 bytes")) as usize;
    let shape = [config.model.embed_dim, config.queue_size];
    let mut tensors = tensors_from_bytes(queues, QUEUE, 2, shape, device)?.into_iter();
    let (image, text) = (tensors.next().expect("two"), tensors.next().expect("two"));
    if ptr >= config.queue_size {
        return Err(TrainError::ModuleMismatch {
            section: QUEUE.into(),
            report: format!("write pointer {ptr} past a queue of {}", config.queue_size),
        });
    }
    Ok(FeatureQueue {
        image,
        text,
        ids: None,
        ptr,
    })
}

/// The id queue of a checkpoint's `queue_ids` section.
fn read_ids(
    bytes: &[u8],
    config: &PretrainConfig,
    device: &Device,
) -> Result<Tensor<1, Int>, TrainError> {
    if bytes.len() != config.queue_size * 8 {
        return Err(TrainError::ModuleMismatch {
            section: QUEUE_IDS.into(),
            report: format!(
                "{} bytes for a queue of {} ids",
                bytes.len(),
                config.queue_size
            ),
        });
    }
    let ids: Vec<i64> = bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    Ok(Tensor::from_data(
        TensorData::new(ids, [config.queue_size]),
        device,
    ))
}
