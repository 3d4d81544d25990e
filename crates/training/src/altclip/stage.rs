//! The state every AltCLIP stage shares: a model on the autodiff device,
//! AdamW, where the run is, its seed and its recipe; one step of a single
//! loss, and the checkpoint of all of it.

use std::path::Path;

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Bytes, Device, Tensor};

use crate::TrainError;
use crate::altclip::recipe::{AltClipRecipe, StageConfig};
use crate::runner::checkpoint::{Checkpoint, JobKind, RunState};
use crate::runner::optimizer::adamw;
use crate::runner::seed::derive_seed;
use crate::runner::{Position, StepReport, resumed_epochs};

/// Parameters that are 0-dim scalars in the reference (decayed there).
const SCALARS: &[&str] = &["logit_scale"];

/// One stage's training state.
pub(crate) struct Stage<M: Module> {
    /// Which stage (its recipe section and its checkpoints' kind).
    pub(crate) kind: JobKind,
    pub(crate) recipe: AltClipRecipe,
    model: Option<M>,
    optimizer: ModuleOptimizer,
    pub(crate) position: Position,
    seed: u64,
    device: Device,
}

/// The recipe section of the stage `kind`.
fn stage_config(recipe: &AltClipRecipe, kind: JobKind) -> &StageConfig {
    match kind {
        JobKind::AltclipTeacher => &recipe.teacher_training,
        JobKind::AltclipStage1 => &recipe.stage1,
        JobKind::AltclipStage2 => &recipe.stage2,
        JobKind::AlbefPretrain
        | JobKind::AlbefVisionWarmup
        | JobKind::AlbefVe
        | JobKind::AlbefRetrieval
        | JobKind::AlbefGrounding => {
            unreachable!("not an AltCLIP stage")
        }
    }
}

impl<M: Module> Stage<M> {
    pub(crate) fn new(
        kind: JobKind,
        recipe: AltClipRecipe,
        model: M,
        seed: u64,
        device: &Device,
    ) -> Self {
        device.seed(seed);
        let model = model.to_device(device).train();
        let optimizer = adamw(&model, &stage_config(&recipe, kind).optimizer, SCALARS);
        Self {
            kind,
            recipe,
            model: Some(model),
            optimizer,
            position: Position::default(),
            seed,
            device: device.clone(),
        }
    }

    /// This stage's section of the recipe.
    pub(crate) fn config(&self) -> &StageConfig {
        stage_config(&self.recipe, self.kind)
    }

    /// Extends a resumed run of `checkpoint` to `epochs`, when given.
    pub(crate) fn extend(
        &mut self,
        epochs: Option<usize>,
        checkpoint: &Path,
    ) -> Result<(), TrainError> {
        let section = match self.kind {
            JobKind::AltclipTeacher => &mut self.recipe.teacher_training,
            JobKind::AltclipStage1 => &mut self.recipe.stage1,
            _ => &mut self.recipe.stage2,
        };
        let own = section.schedular.epochs;
        section.schedular.epochs = resumed_epochs(own, epochs, self.position, checkpoint)?;
        Ok(())
    }

    pub(crate) fn model(&self) -> &M {
        self.model.as_ref().expect("only taken during a step")
    }

    /// One step: `loss` computes the loss of `model` on the autodiff
    /// device (seeded by the step), which is minimised; `after` adjusts the
    /// updated model (a clamp).
    pub(crate) fn step(
        &mut self,
        steps_per_epoch: usize,
        name: &'static str,
        loss: impl FnOnce(&M, &Device) -> Result<Tensor<1>, TrainError>,
        after: impl FnOnce(M) -> M,
    ) -> Result<StepReport, TrainError> {
        let Position {
            step,
            epoch,
            step_in_epoch,
        } = self.position;
        let lr = self.config().schedular.lr_at(epoch, step_in_epoch);
        let ad = self.device.clone().autodiff();
        ad.seed(derive_seed(self.seed, step as u64));
        let model = self.model.take().expect("present between steps");
        let loss = match loss(&model, &ad) {
            Ok(loss) => loss,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        };
        let value = loss.clone().without_autodiff().into_scalar::<f32>();
        let report = StepReport {
            losses: vec![(name, value)],
            settings: vec![("lr", lr)],
        };
        if let Err(e) = report.check_finite(step) {
            self.model = Some(model);
            return Err(e);
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(after(self.optimizer.step(lr, model, grads)));
        self.position.advance(steps_per_epoch);
        Ok(report)
    }

    pub(crate) fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        let mut checkpoint = Checkpoint::new(RunState {
            kind: self.kind,
            position: self.position,
            seed: self.seed,
            config: &self.recipe,
        })?;
        checkpoint.push_module(MODEL, &self.model().valid())?;
        checkpoint.push(OPTIMIZER, self.optimizer.into_bytes()?.to_vec());
        Ok(checkpoint)
    }

    /// Restores a stage of `kind` from its checkpoint; `blank` builds the
    /// model of the stored recipe (its weights are then loaded).
    pub(crate) fn resume(
        checkpoint: &Checkpoint,
        kind: JobKind,
        blank: impl FnOnce(&AltClipRecipe) -> M,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let RunState {
            position,
            seed,
            config: recipe,
            ..
        } = checkpoint.state::<AltClipRecipe>(kind)?;
        let model = checkpoint.module(MODEL, blank(&recipe))?;
        let model = model.to_device(device).train();
        let optimizer = adamw(&model, &stage_config(&recipe, kind).optimizer, SCALARS).from_bytes(
            Bytes::from_bytes_vec(checkpoint.section(OPTIMIZER)?.to_vec()),
        )?;
        Ok(Self {
            kind,
            recipe,
            model: Some(model),
            optimizer,
            position,
            seed,
            device: device.clone(),
        })
    }
}

/// Checkpoint sections of a stage.
pub(crate) const MODEL: &str = "model";
const OPTIMIZER: &str = "optimizer";

/// CLIP's clamp of the log inverse temperature to [0, ln 100], as a fresh
/// leaf (a parameter changed by hand must be, or it stops learning).
pub(crate) fn clamp_logit_scale(scale: Param<Tensor<1>>) -> Param<Tensor<1>> {
    scale.map(|t| {
        t.without_autodiff()
            .clamp(0.0, 100f64.ln())
            .autodiff()
            .require_grad()
    })
}
