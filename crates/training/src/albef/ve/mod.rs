//! Visual entailment (SNLI-VE) fine-tuning of ALBEF (Li et al. 2021,
//! section 5.3): salesforce/ALBEF `VE.py` and `models/model_ve.py`. The
//! fused `[CLS]` of (image, hypothesis) through `cls_head` (3 classes),
//! trained with the cross-entropy and, with `distill`, the momentum model's
//! soft labels (classifier distillation, α = 0.4 from the first step since
//! `warm_up` is off); the momentum model follows the online one by EMA
//! before each of its forwards. Scored by accuracy on the validation and
//! test files every epoch; the best validation epoch's weights are kept.

pub mod config;
pub mod pipeline;

use std::sync::Arc;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use vl_data::{EncodedBatch, ImageBatch, ImageTextBatch};
use vl_models::TextInput;
use vl_models::albef::ve::AlbefVe;
use vl_models::blocks::padding_mask;
use vl_objectives::{alpha_at, classifier_distillation, cross_entropy, ema_update, fresh_copy};

use crate::TrainError;
use crate::runner::checkpoint::{Checkpoint, JobKind, RunState};
use crate::runner::optimizer::adamw;
use crate::runner::seed::derive_seed;
use crate::runner::{Position, StepReport, Trainee};
pub use config::VeConfig;

/// Checkpoint sections.
const MODEL: &str = "model";
const MOMENTUM: &str = "momentum";
const OPTIMIZER: &str = "optimizer";

/// A VE fine-tuning in progress.
pub struct VeTraining {
    /// The run's config.
    pub config: VeConfig,
    model: Option<AlbefVe>,
    momentum: Option<AlbefVe>,
    optimizer: ModuleOptimizer,
    /// Where the run is.
    pub position: Position,
    seed: u64,
    /// Label of each training example (a batch's `image_ids` index it).
    labels: Arc<Vec<usize>>,
    /// Every image replaced by a blank one: the text-only baseline.
    pub blank_images: bool,
    device: Device,
}

impl VeTraining {
    /// A run from `model` (and its momentum copy, if the starting
    /// checkpoint had one) on training examples labelled `labels`.
    pub fn new(
        config: VeConfig,
        model: AlbefVe,
        momentum: Option<AlbefVe>,
        labels: Arc<Vec<usize>>,
        seed: u64,
        device: &Device,
    ) -> Self {
        let momentum = match momentum {
            Some(m) => fresh_copy(&m),
            None => fresh_copy(&model),
        };
        let model = model.to_device(device).train();
        let optimizer = adamw(&model, &config.optimizer, &[]);
        Self {
            config,
            model: Some(model),
            momentum: Some(momentum),
            optimizer,
            position: Position::default(),
            seed,
            labels,
            blank_images: false,
            device: device.clone(),
        }
    }

    /// Restores a run from its checkpoint.
    pub fn resume(
        checkpoint: &Checkpoint,
        labels: Arc<Vec<usize>>,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let RunState {
            position,
            seed,
            config,
            ..
        } = checkpoint.state::<VeConfig>(JobKind::AlbefVe)?;
        let blank = config.model.init_ve(device);
        let model = checkpoint.module(MODEL, blank)?;
        let momentum = checkpoint.module(MOMENTUM, config.model.init_ve(device))?;
        let mut state = Self::new(config, model, Some(momentum), labels, seed, device);
        state.optimizer = adamw(state.model(), &state.config.optimizer, &[]).from_bytes(
            Bytes::from_bytes_vec(checkpoint.section(OPTIMIZER)?.to_vec()),
        )?;
        state.position = position;
        Ok(state)
    }

    fn model(&self) -> &AlbefVe {
        self.model.as_ref().expect("present between steps")
    }

    /// The online model, for inference.
    pub fn evaluated(&self) -> AlbefVe {
        self.model().valid()
    }

    /// The pixels of `images` on `device`, blank for the text-only
    /// baseline.
    fn pixels(&self, images: &ImageBatch, device: &Device) -> Tensor<4> {
        let pixels = images.to_tensor(device);
        match self.blank_images {
            true => pixels.zeros_like(),
            false => pixels,
        }
    }
}

/// Token ids and padding of a batch's texts on `device`.
pub(crate) fn text_input(text: &EncodedBatch, device: &Device) -> TextInput {
    let (ids, mask) = text.to_tensors(device);
    TextInput::new(ids).with_padding(padding_mask(mask))
}

impl Trainee for VeTraining {
    type Batch = ImageTextBatch;

    fn position(&self) -> Position {
        self.position
    }

    fn step(
        &mut self,
        batch: &ImageTextBatch,
        steps_per_epoch: usize,
    ) -> Result<StepReport, TrainError> {
        let Position {
            step,
            epoch,
            step_in_epoch,
        } = self.position;
        let config = &self.config;
        let lr = config.schedular.lr_at(epoch, step_in_epoch);
        let alpha = match config.warm_up {
            true => alpha_at(config.alpha, epoch, step_in_epoch, steps_per_epoch),
            false => config.alpha,
        };
        let ad = self.device.clone().autodiff();
        ad.seed(derive_seed(self.seed, step as u64));
        let labels: Vec<i64> = batch
            .image_ids
            .iter()
            .map(|&i| self.labels[i] as i64)
            .collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch.len()]), &ad);
        let model = self.model.as_ref().expect("present between steps");
        let pixels = self.pixels(&batch.images, &ad);
        let logits = model.logits(pixels.clone(), &text_input(&batch.text, &ad));
        let loss = match config.distill {
            true => {
                // The reference updates the momentum model before its
                // forward, inside the training forward.
                let momentum = self.momentum.take().expect("present between steps");
                let momentum = ema_update(momentum, model, config.momentum);
                let momentum_logits = momentum.logits(
                    pixels.without_autodiff(),
                    &text_input(&batch.text, &self.device),
                );
                self.momentum = Some(momentum);
                classifier_distillation(logits, momentum_logits.autodiff(), labels, alpha)
            }
            false => cross_entropy(logits, labels),
        };
        let value = loss.clone().without_autodiff().into_scalar::<f32>();
        let report = StepReport {
            losses: vec![("loss_ve", value)],
            settings: vec![("lr", lr), ("alpha", alpha)],
        };
        report.check_finite(step)?;
        let grads = GradientsParams::from_grads(loss.backward(), self.model());
        let model = self.model.take().expect("present between steps");
        self.model = Some(self.optimizer.step(lr, model, grads));
        self.position.advance(steps_per_epoch);
        Ok(report)
    }

    fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        let mut checkpoint = Checkpoint::new(RunState {
            kind: JobKind::AlbefVe,
            position: self.position,
            seed: self.seed,
            config: &self.config,
        })?;
        checkpoint.push_module(MODEL, &self.evaluated())?;
        checkpoint.push_module(
            MOMENTUM,
            self.momentum.as_ref().expect("present between steps"),
        )?;
        checkpoint.push(OPTIMIZER, self.optimizer.into_bytes()?.to_vec());
        Ok(checkpoint)
    }
}
