//! AltCLIP's recipe (Chen et al., 2022, arXiv 2211.06679; FlagAI
//! `examples/AltCLIP`, HF `modeling_altclip.py`): a CLIP teacher, an XLM-R
//! student with the AltCLIP text head, then
//!
//! 1. **teacher learning**: image-free; the student's pooled output
//!    (`transformation(pre_LN(h))` at `<s>`) on the target-language side of a
//!    parallel pair regresses, by MSE, the teacher's pooled EOS text
//!    embedding (after `final_layer_norm`, before `text_projection`) of the
//!    English side; English–English pairs are included, as the paper does;
//! 2. **contrastive tuning**: image–text pairs in several languages, CLIP's
//!    symmetric loss, the image tower frozen.
//!
//! The student's `text_projection`, image tower and temperature start as
//! the teacher's, so after stage 1 the student already lives in the
//! teacher's joint space.
//!
//! Deviations, each for a stated reason:
//! - The teacher is frozen in stage 1, so its embeddings of the English
//!   sides are computed once, not per step.
//! - Stage 2 images are not augmented: with a frozen image tower their
//!   features are then fixed and are computed once; only the text side runs
//!   per step.
//! - The CLIP teacher trained here clamps `logit_scale` to ln 100 after each
//!   step, as OpenAI's training does (HF's forward does not clamp).

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use vl_data::transforms::AugmentConfig;
use vl_data::{EncodedBatch, ImageTextBatch, RetrievalSet, TextTokenizer};
use vl_models::altclip::AltClipTextConfig;
use vl_models::blocks::{l2_normalize, padding_mask};
use vl_models::clip::{ClipTextConfig, ClipVisionConfig, contrastive_logits};
use vl_models::{AltClipConfig, AltClipModel, BertConfig, ClipConfig, ClipModel, TextInput};
use vl_objectives::{clip_loss, mse_loss};

use crate::TrainError;
use crate::albef::mix;
use crate::checkpoint::{Checkpoint, load_module_bytes, module_bytes};
use crate::optimizer::{OptimizerConfig, adamw};
use crate::retrieval::RetrievalMetrics;
use crate::runner::{Batches, Position, StepReport, Trainee};
use crate::schedule::ScheduleConfig;

/// Batch size and optimisation of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageConfig {
    /// Samples (pairs) per step.
    pub batch_size: usize,
    /// AdamW.
    pub optimizer: OptimizerConfig,
    /// Warm-up and cosine schedule; `epochs` is the stage's length.
    pub schedular: ScheduleConfig,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self::constant(64, 1e-4, 10)
    }
}

impl StageConfig {
    /// A stage at `lr` decaying to a tenth by cosine over `epochs`, after a
    /// short warm-up from a tenth.
    pub fn constant(batch_size: usize, lr: f64, epochs: usize) -> Self {
        Self {
            batch_size,
            optimizer: OptimizerConfig {
                lr,
                ..OptimizerConfig::default()
            },
            schedular: ScheduleConfig {
                lr,
                epochs,
                min_lr: lr / 10.0,
                warmup_lr: lr / 10.0,
                warmup_epochs: 5,
                warmup_step_size: 10,
                ..ScheduleConfig::default()
            },
        }
    }
}

/// The whole AltCLIP recipe: models, text lengths, and the three stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AltClipRecipe {
    /// The CLIP teacher (its vision tower becomes the student's).
    pub teacher: ClipConfig,
    /// The XLM-R student with the AltCLIP head; `project_dim` is the
    /// teacher's text width (stage 1 regresses the teacher's pooled text).
    pub student: AltClipTextConfig,
    /// Tokens per text, special tokens included.
    pub max_tokens: usize,
    /// Words kept per caption (`pre_caption`).
    pub max_words: usize,
    /// Vocabulary of a tokenizer trained for the teacher (English).
    pub teacher_vocab_size: usize,
    /// Vocabulary of a tokenizer trained for the student (multilingual).
    pub student_vocab_size: usize,
    /// Contrastive training of the teacher (when not loaded).
    pub teacher_training: StageConfig,
    /// Stage 1: MSE on parallel text.
    pub stage1: StageConfig,
    /// Stage 2: contrastive, image tower frozen.
    pub stage2: StageConfig,
    /// Training augmentation of the teacher's images.
    pub augment: AugmentConfig,
}

impl Default for AltClipRecipe {
    fn default() -> Self {
        Self::tiny()
    }
}

impl AltClipRecipe {
    /// The `tiny` preset: 2-layer, 64-wide towers at 32 px, trained from
    /// scratch on the synthetic world on two CPU cores in minutes.
    pub fn tiny() -> Self {
        let width = 64;
        let teacher = ClipConfig {
            text_config: ClipTextConfig {
                vocab_size: 0,
                hidden_size: width,
                intermediate_size: 4 * width,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                max_position_embeddings: 64,
                pad_token_id: Some(0),
                bos_token_id: Some(2),
                // `[SEP]` of a trained WordPiece ([`vl_data::Framing::StartEnd`]).
                eos_token_id: Some(3),
                initializer_range: 0.1,
                ..ClipTextConfig::default()
            },
            vision_config: ClipVisionConfig {
                hidden_size: width,
                intermediate_size: 4 * width,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                image_size: 32,
                patch_size: 8,
                initializer_range: 0.1,
                ..ClipVisionConfig::default()
            },
            projection_dim: 32,
            ..ClipConfig::default()
        };
        let student = AltClipTextConfig {
            roberta: BertConfig {
                vocab_size: 0,
                hidden_size: width,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                intermediate_size: 4 * width,
                hidden_dropout_prob: 0.0,
                attention_probs_dropout_prob: 0.0,
                // Positions start after the padding id (1), as XLM-R's.
                max_position_embeddings: 64 + 2,
                initializer_range: 0.1,
                ..AltClipTextConfig::default().roberta
            },
            project_dim: width,
        };
        Self {
            teacher,
            student,
            max_tokens: 64,
            max_words: 60,
            teacher_vocab_size: 30522,
            student_vocab_size: 8000,
            teacher_training: StageConfig::constant(64, 1e-3, 20),
            stage1: StageConfig::constant(64, 1e-3, 2),
            stage2: StageConfig::constant(64, 5e-5, 2),
            augment: AugmentConfig {
                crop_scale: (0.8, 1.0),
                horizontal_flip: false,
                mirror_words: Vec::new(),
                randaugment_ops: 2,
                randaugment_magnitude: 7.0,
            },
        }
    }

    /// The student built around `teacher`: a fresh text tower, and the
    /// teacher's image tower, projections and temperature.
    pub fn student_from_teacher(&self, teacher: &ClipModel, device: &Device) -> AltClipModel {
        let config = self.student_config();
        let mut student = config.init(device);
        let teacher = teacher.valid().fork(device);
        student.vision_model = teacher.vision_model;
        student.visual_projection = teacher.visual_projection;
        student.text_projection = teacher.text_projection;
        student.logit_scale = teacher.logit_scale;
        student
    }

    /// The student's HF `AltCLIPConfig`.
    pub fn student_config(&self) -> AltClipConfig {
        AltClipConfig {
            text_config: self.student.clone(),
            vision_config: self.teacher.vision_config.clone(),
            projection_dim: self.teacher.projection_dim,
            logit_scale_init_value: self.teacher.logit_scale_init_value,
        }
    }

    /// Lowers `max_tokens` to what both text towers' position tables hold
    /// (an HF CLIP has 77 positions; XLM-R's start after the padding id).
    pub fn fit_max_tokens(&mut self) {
        let roberta = &self.student.roberta;
        let student = roberta
            .max_position_embeddings
            .saturating_sub(roberta.pad_token_id + 1);
        self.max_tokens = self
            .max_tokens
            .min(self.teacher.text_config.max_position_embeddings)
            .min(student);
    }

    /// Checks that the student can regress the teacher.
    pub fn validate(&self) -> Result<(), TrainError> {
        let (project, width) = (
            self.student.project_dim,
            self.teacher.text_config.hidden_size,
        );
        if project != width {
            return Err(TrainError::Checkpoint(format!(
                "the student's project_dim ({project}) must equal the teacher's text hidden_size ({width})"
            )));
        }
        Ok(())
    }
}

/// A model that embeds texts and images into one space (the CLIP teacher
/// and the AltCLIP student).
pub trait DualEncoder {
    /// Projected, unnormalised text features `[batch, dim]`.
    fn text_features(&self, text: &EncodedBatch, device: &Device) -> Tensor<2>;
    /// Projected, unnormalised image features `[batch, dim]`.
    fn image_features(&self, pixels: Tensor<4>) -> Tensor<2>;
}

impl DualEncoder for ClipModel {
    fn text_features(&self, text: &EncodedBatch, device: &Device) -> Tensor<2> {
        let (ids, mask) = text.to_tensors(device);
        ClipModel::text_features(self, ids, Some(padding_mask(mask)))
    }

    fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        ClipModel::image_features(self, pixels)
    }
}

impl DualEncoder for AltClipModel {
    fn text_features(&self, text: &EncodedBatch, device: &Device) -> Tensor<2> {
        AltClipModel::text_features(self, &student_input(text, device))
    }

    fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        AltClipModel::image_features(self, pixels)
    }
}

fn student_input(text: &EncodedBatch, device: &Device) -> TextInput {
    let (ids, mask) = text.to_tensors(device);
    TextInput::new(ids).with_padding(padding_mask(mask))
}

/// Rows evaluated per forward pass.
const EVAL_BATCH: usize = 256;

/// Unit-norm text embeddings `[texts, dim]` as a row-major vector.
pub fn embed_texts(
    model: &impl DualEncoder,
    tokenizer: &TextTokenizer,
    texts: &[String],
    max_tokens: usize,
    device: &Device,
) -> Result<Vec<f32>, TrainError> {
    let mut out = Vec::new();
    for chunk in texts.chunks(EVAL_BATCH) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let encoded = tokenizer.encode_batch(&refs, Some(max_tokens))?;
        out.extend(to_vec(l2_normalize(
            model.text_features(&encoded, device),
            1e-12,
        )));
    }
    Ok(out)
}

/// Unit-norm image embeddings `[images, dim]` of normalised pixels
/// (`[images, 3, size, size]`, row-major).
pub fn embed_images(
    model: &impl DualEncoder,
    pixels: &[f32],
    size: usize,
    device: &Device,
) -> Vec<f32> {
    let per_image = 3 * size * size;
    let mut out = Vec::new();
    for chunk in pixels.chunks(EVAL_BATCH * per_image) {
        let n = chunk.len() / per_image;
        let x = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [n, 3, size, size]), device);
        out.extend(to_vec(l2_normalize(model.image_features(x), 1e-12)));
    }
    out
}

/// The teacher's pooled text output (EOS, after `final_layer_norm`, before
/// `text_projection`) of each text, `[texts, width]` row-major: stage 1's
/// regression target.
pub fn teacher_targets(
    teacher: &ClipModel,
    tokenizer: &TextTokenizer,
    texts: &[String],
    max_tokens: usize,
    device: &Device,
) -> Result<Vec<f32>, TrainError> {
    let mut out = Vec::new();
    for chunk in texts.chunks(EVAL_BATCH) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let encoded = tokenizer.encode_batch(&refs, Some(max_tokens))?;
        let (ids, mask) = encoded.to_tensors(device);
        out.extend(to_vec(
            teacher
                .text_model
                .forward(ids, Some(padding_mask(mask)))
                .pooler_output,
        ));
    }
    Ok(out)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

/// Row `i` of a row-major `[_, dim]` buffer.
fn row(buffer: &[f32], dim: usize, i: usize) -> &[f32] {
    &buffer[i * dim..(i + 1) * dim]
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Zero-shot classification accuracy (a fraction): each image's class is
/// the one whose prompt ensemble (mean of its prompts' unit embeddings,
/// renormalised, as CLIP) is most similar.
pub fn zero_shot_accuracy(
    image_embeds: &[f32],
    labels: &[usize],
    class_embeds: &[Vec<f32>],
) -> f64 {
    let dim = class_embeds.first().map_or(1, Vec::len);
    let correct = labels
        .iter()
        .enumerate()
        .filter(|&(i, &label)| {
            let image = row(image_embeds, dim, i);
            let best = (0..class_embeds.len())
                .max_by(|&a, &b| {
                    dot(image, &class_embeds[a]).total_cmp(&dot(image, &class_embeds[b]))
                })
                .expect("at least one class");
            best == label
        })
        .count();
    correct as f64 / labels.len().max(1) as f64
}

/// One prompt ensemble per class: the mean of the prompts' unit
/// embeddings, renormalised.
pub fn class_embeddings(
    model: &impl DualEncoder,
    tokenizer: &TextTokenizer,
    prompts: &[Vec<String>],
    max_tokens: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>, TrainError> {
    prompts
        .iter()
        .map(|class| {
            let embeds = embed_texts(model, tokenizer, class, max_tokens, device)?;
            let dim = embeds.len() / class.len();
            let mut mean = vec![0.0f32; dim];
            for i in 0..class.len() {
                for (m, v) in mean.iter_mut().zip(row(&embeds, dim, i)) {
                    *m += v;
                }
            }
            let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            Ok(mean.into_iter().map(|v| v / norm).collect())
        })
        .collect()
}

/// Retrieval by cosine similarity on `set` (the reference's recall
/// definitions): image and text embeddings in the set's order.
pub fn dual_encoder_retrieval(
    image_embeds: &[f32],
    text_embeds: &[f32],
    set: &RetrievalSet,
) -> RetrievalMetrics {
    let dim = image_embeds.len() / set.images.len().max(1);
    let i2t: Vec<Vec<f32>> = (0..set.images.len())
        .map(|i| {
            (0..set.texts.len())
                .map(|t| dot(row(image_embeds, dim, i), row(text_embeds, dim, t)))
                .collect()
        })
        .collect();
    let t2i: Vec<Vec<f32>> = (0..set.texts.len())
        .map(|t| (0..set.images.len()).map(|i| i2t[i][t]).collect())
        .collect();
    RetrievalMetrics::from_scores(&i2t, &t2i, set)
}

/// The state every stage shares: a model on the autodiff device, its
/// optimizer, where the run is, and its seed.
struct Stage<M: Module> {
    config: StageConfig,
    model: Option<M>,
    optimizer: ModuleOptimizer,
    position: Position,
    seed: u64,
    device: Device,
}

/// Parameters that are 0-dim scalars in the reference (decayed there).
const SCALARS: &[&str] = &["logit_scale"];

impl<M: Module> Stage<M> {
    fn new(config: StageConfig, model: M, seed: u64, device: &Device) -> Self {
        device.seed(seed);
        let model = model.to_device(device).train();
        let optimizer = adamw(&model, &config.optimizer, SCALARS);
        Self {
            config,
            model: Some(model),
            optimizer,
            position: Position::default(),
            seed,
            device: device.clone(),
        }
    }

    fn model(&self) -> &M {
        self.model.as_ref().expect("only taken during a step")
    }

    /// One step: `loss` computes the losses of `model` on the autodiff
    /// device (seeded by the step); the first is minimised.
    fn step(
        &mut self,
        steps_per_epoch: usize,
        names: [&'static str; 1],
        loss: impl FnOnce(&M, &Device) -> Result<Tensor<1>, TrainError>,
        after: impl FnOnce(M) -> M,
    ) -> Result<StepReport, TrainError> {
        let Position {
            step,
            epoch,
            step_in_epoch,
        } = self.position;
        let lr = self.config.schedular.lr_at(epoch, step_in_epoch);
        let ad = self.device.clone().autodiff();
        ad.seed(mix(self.seed, step as u64));
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
            losses: vec![(names[0], value)],
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

    fn checkpoint(&self, kind: &str, extra: serde_json::Value) -> Result<Checkpoint, TrainError> {
        let mut checkpoint = Checkpoint {
            state: serde_json::json!({
                "kind": kind,
                "position": self.position,
                "seed": self.seed,
                "stage": self.config,
                "extra": extra,
            }),
            sections: Vec::new(),
        };
        checkpoint.push("model", module_bytes(&self.model().valid())?);
        checkpoint.push(
            "optimizer",
            self.optimizer
                .into_bytes()
                .map_err(|e| TrainError::Checkpoint(e.to_string()))?
                .to_vec(),
        );
        Ok(checkpoint)
    }

    fn resume(
        checkpoint: &Checkpoint,
        kind: &str,
        blank: M,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let state = &checkpoint.state;
        let bad = |what: &str| TrainError::Checkpoint(format!("not a {kind} checkpoint: {what}"));
        if state["kind"] != kind {
            return Err(bad(&format!("its kind is {}", state["kind"])));
        }
        let config: StageConfig =
            serde_json::from_value(state["stage"].clone()).map_err(|e| bad(&e.to_string()))?;
        let position: Position =
            serde_json::from_value(state["position"].clone()).map_err(|e| bad(&e.to_string()))?;
        let seed = state["seed"].as_u64().ok_or_else(|| bad("no seed"))?;
        let model = load_module_bytes(blank, checkpoint.section("model")?)?;
        let model = model.to_device(device).train();
        let optimizer = adamw(&model, &config.optimizer, SCALARS)
            .from_bytes(Bytes::from_bytes_vec(
                checkpoint.section("optimizer")?.to_vec(),
            ))
            .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        Ok(Self {
            config,
            model: Some(model),
            optimizer,
            position,
            seed,
            device: device.clone(),
        })
    }
}

/// The recipe stored in a checkpoint's `extra`.
pub fn recipe_of(checkpoint: &Checkpoint) -> Result<AltClipRecipe, TrainError> {
    serde_json::from_value(checkpoint.state["extra"]["recipe"].clone())
        .map_err(|e| TrainError::Checkpoint(format!("no AltCLIP recipe: {e}")))
}

/// The teacher of a teacher-training checkpoint, for inference.
pub fn load_teacher(checkpoint: &Checkpoint, device: &Device) -> Result<ClipModel, TrainError> {
    let recipe = recipe_of(checkpoint)?;
    load_module_bytes(recipe.teacher.init(device), checkpoint.section("model")?)
}

/// The student of a stage-1 or stage-2 checkpoint, for inference.
pub fn load_student(checkpoint: &Checkpoint, device: &Device) -> Result<AltClipModel, TrainError> {
    let recipe = recipe_of(checkpoint)?;
    load_module_bytes(
        recipe.student_config().init(device),
        checkpoint.section("model")?,
    )
}

/// Contrastive training of the CLIP teacher on image–caption batches.
pub struct TeacherTraining {
    /// The recipe (the teacher config and `teacher_training` stage).
    pub recipe: AltClipRecipe,
    stage: Stage<ClipModel>,
}

const TEACHER_KIND: &str = "altclip-teacher";

impl TeacherTraining {
    /// Starts from `model` (fresh or loaded) on `device`.
    pub fn new(recipe: AltClipRecipe, model: ClipModel, seed: u64, device: &Device) -> Self {
        let stage = Stage::new(recipe.teacher_training.clone(), model, seed, device);
        Self { recipe, stage }
    }

    /// Restores a run saved by [`Trainee::checkpoint`].
    pub fn resume(checkpoint: &Checkpoint, device: &Device) -> Result<Self, TrainError> {
        let recipe = recipe_of(checkpoint)?;
        let stage = Stage::resume(
            checkpoint,
            TEACHER_KIND,
            recipe.teacher.init(device),
            device,
        )?;
        Ok(Self { recipe, stage })
    }

    /// The teacher, for inference on the plain device.
    pub fn model(&self) -> ClipModel {
        self.stage.model().valid()
    }
}

impl Trainee for TeacherTraining {
    type Batch = ImageTextBatch;

    fn position(&self) -> Position {
        self.stage.position
    }

    fn step(
        &mut self,
        batch: &ImageTextBatch,
        steps_per_epoch: usize,
    ) -> Result<StepReport, TrainError> {
        let (b, s) = (batch.len(), batch.size);
        self.stage.step(
            steps_per_epoch,
            ["loss_clip"],
            |model, ad| {
                let pixels =
                    Tensor::<4>::from_data(TensorData::new(batch.pixels.clone(), [b, 3, s, s]), ad);
                let (ids, mask) = batch.text.to_tensors(ad);
                let out = model.forward(ids, Some(padding_mask(mask)), pixels);
                Ok(clip_loss(out.logits_per_text))
            },
            |mut model| {
                model.logit_scale = clamp_logit_scale(model.logit_scale);
                model
            },
        )
    }

    fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        self.stage
            .checkpoint(TEACHER_KIND, serde_json::json!({ "recipe": self.recipe }))
    }
}

/// CLIP's clamp of the log inverse temperature to [0, ln 100], as a fresh
/// leaf (a parameter changed by hand must be, or it stops learning).
fn clamp_logit_scale(scale: Param<Tensor<1>>) -> Param<Tensor<1>> {
    scale.map(|t| {
        t.without_autodiff()
            .clamp(0.0, 100f64.ln())
            .autodiff()
            .require_grad()
    })
}

/// A stage-1 batch: the student's texts and the teacher's targets.
#[derive(Debug, Clone)]
pub struct DistillBatch {
    /// The target-language (or English) side, tokenised for the student.
    pub text: EncodedBatch,
    /// The teacher's pooled embedding of the English side, `[batch, width]`.
    pub targets: Vec<f32>,
}

/// Stage 1's data: student-side texts, each with the index of its English
/// side's teacher embedding.
#[derive(Debug, Clone)]
pub struct ParallelBatches {
    /// Student-side texts.
    pub texts: Vec<String>,
    /// For each text, its row of `targets`.
    pub target_of: Vec<usize>,
    /// Teacher embeddings `[sources, width]`.
    pub targets: Arc<Vec<f32>>,
    /// Width of a target.
    pub width: usize,
    /// The student's tokenizer.
    pub tokenizer: Arc<TextTokenizer>,
    /// Pairs per batch (the last partial batch of an epoch is dropped).
    pub batch_size: usize,
    /// Tokens per text.
    pub max_tokens: usize,
    /// Seed of the epoch orders.
    pub seed: u64,
}

impl ParallelBatches {
    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.texts.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix(self.seed, epoch as u64)));
        order
    }

    /// The batch of these rows.
    pub fn batch(&self, rows: &[usize]) -> Result<DistillBatch, TrainError> {
        let refs: Vec<&str> = rows.iter().map(|&r| self.texts[r].as_str()).collect();
        let text = self.tokenizer.encode_batch(&refs, Some(self.max_tokens))?;
        let targets = rows
            .iter()
            .flat_map(|&r| {
                row(&self.targets, self.width, self.target_of[r])
                    .iter()
                    .copied()
            })
            .collect();
        Ok(DistillBatch { text, targets })
    }
}

impl Batches for ParallelBatches {
    type Batch = DistillBatch;

    fn steps_per_epoch(&self) -> usize {
        self.texts.len() / self.batch_size.max(1)
    }

    fn batch_len(batch: &DistillBatch) -> usize {
        batch.text.batch
    }

    fn epoch(
        &self,
        epoch: usize,
        start_step: usize,
    ) -> impl Iterator<Item = Result<DistillBatch, TrainError>> {
        let order = self.order(epoch);
        let b = self.batch_size;
        (start_step..self.steps_per_epoch())
            .map(move |step| self.batch(&order[step * b..(step + 1) * b]))
    }
}

/// Stage 1: the student regresses the teacher's text embeddings.
pub struct Distillation {
    /// The recipe.
    pub recipe: AltClipRecipe,
    stage: Stage<AltClipModel>,
}

const STAGE1_KIND: &str = "altclip-stage1";
const STAGE2_KIND: &str = "altclip-stage2";

impl Distillation {
    /// Starts from `student` (see [`AltClipRecipe::student_from_teacher`]).
    pub fn new(recipe: AltClipRecipe, student: AltClipModel, seed: u64, device: &Device) -> Self {
        let stage = Stage::new(recipe.stage1.clone(), student, seed, device);
        Self { recipe, stage }
    }

    /// Restores a run saved by [`Trainee::checkpoint`].
    pub fn resume(checkpoint: &Checkpoint, device: &Device) -> Result<Self, TrainError> {
        let recipe = recipe_of(checkpoint)?;
        let blank = recipe.student_config().init(device);
        let stage = Stage::resume(checkpoint, STAGE1_KIND, blank, device)?;
        Ok(Self { recipe, stage })
    }

    /// The student, for inference on the plain device.
    pub fn model(&self) -> AltClipModel {
        self.stage.model().valid()
    }
}

/// Stage 1's loss on a batch: MSE of the pooled student output and the
/// teacher's targets.
pub fn distill_loss(model: &AltClipModel, batch: &DistillBatch, device: &Device) -> Tensor<1> {
    let pooled = model
        .text_model
        .forward(&student_input(&batch.text, device))
        .pooler_output;
    let width = pooled.dims()[1];
    let targets = Tensor::<2>::from_data(
        TensorData::new(batch.targets.clone(), [batch.text.batch, width]),
        device,
    );
    mse_loss(pooled, targets)
}

impl Trainee for Distillation {
    type Batch = DistillBatch;

    fn position(&self) -> Position {
        self.stage.position
    }

    fn step(
        &mut self,
        batch: &DistillBatch,
        steps_per_epoch: usize,
    ) -> Result<StepReport, TrainError> {
        self.stage.step(
            steps_per_epoch,
            ["loss_mse"],
            |model, ad| Ok(distill_loss(model, batch, ad)),
            |model| model,
        )
    }

    fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        self.stage
            .checkpoint(STAGE1_KIND, serde_json::json!({ "recipe": self.recipe }))
    }
}

/// Held-out stage-1 MSE of `model` on `batches` (every full batch of its
/// epoch 0).
pub fn held_out_mse(
    model: &AltClipModel,
    batches: &ParallelBatches,
    device: &Device,
) -> Result<f64, TrainError> {
    let rows: Vec<usize> = (0..batches.texts.len()).collect();
    let mut total = 0.0;
    let mut count = 0;
    for chunk in rows.chunks(EVAL_BATCH) {
        let batch = batches.batch(chunk)?;
        let loss = distill_loss(model, &batch, device).into_scalar::<f32>() as f64;
        total += loss * chunk.len() as f64;
        count += chunk.len();
    }
    Ok(total / count.max(1) as f64)
}

/// A stage-2 batch: captions and the frozen tower's embeddings of their
/// images.
#[derive(Debug, Clone)]
pub struct CaptionBatch {
    /// Captions, tokenised for the student.
    pub text: EncodedBatch,
    /// Unit image embeddings `[batch, dim]`.
    pub image_embeds: Vec<f32>,
}

/// Stage 2's data: images (as frozen-tower embeddings) with captions in
/// several languages; each epoch visits every image once with one of its
/// captions drawn at random.
#[derive(Debug, Clone)]
pub struct CaptionBatches {
    /// Unit image embeddings `[images, dim]`.
    pub image_embeds: Arc<Vec<f32>>,
    /// Width of an embedding.
    pub dim: usize,
    /// Each image's captions (all languages).
    pub captions: Arc<Vec<Vec<String>>>,
    /// The student's tokenizer.
    pub tokenizer: Arc<TextTokenizer>,
    /// Images per batch.
    pub batch_size: usize,
    /// Tokens per caption.
    pub max_tokens: usize,
    /// Seed of the orders and caption draws.
    pub seed: u64,
}

impl Batches for CaptionBatches {
    type Batch = CaptionBatch;

    fn steps_per_epoch(&self) -> usize {
        self.captions.len() / self.batch_size.max(1)
    }

    fn batch_len(batch: &CaptionBatch) -> usize {
        batch.text.batch
    }

    fn epoch(
        &self,
        epoch: usize,
        start_step: usize,
    ) -> impl Iterator<Item = Result<CaptionBatch, TrainError>> {
        let mut rng = StdRng::seed_from_u64(mix(self.seed, epoch as u64));
        let mut order: Vec<usize> = (0..self.captions.len()).collect();
        order.shuffle(&mut rng);
        let picks: Vec<usize> = order
            .iter()
            .map(|&i| rand::RngExt::random_range(&mut rng, 0..self.captions[i].len()))
            .collect();
        let b = self.batch_size;
        (start_step..self.steps_per_epoch()).map(move |step| {
            let rows = step * b..(step + 1) * b;
            let texts: Vec<&str> = rows
                .clone()
                .map(|r| self.captions[order[r]][picks[r]].as_str())
                .collect();
            let text = self.tokenizer.encode_batch(&texts, Some(self.max_tokens))?;
            let image_embeds = rows
                .flat_map(|r| row(&self.image_embeds, self.dim, order[r]).iter().copied())
                .collect();
            Ok(CaptionBatch { text, image_embeds })
        })
    }
}

/// Stage 2: contrastive tuning of the student's text side against the
/// frozen image tower.
pub struct ContrastiveTuning {
    /// The recipe.
    pub recipe: AltClipRecipe,
    stage: Stage<AltClipModel>,
}

impl ContrastiveTuning {
    /// Starts from a stage-1 student.
    ///
    /// # Panics
    /// If `recipe` does not describe `student` (its checkpoints could not
    /// be loaded back).
    pub fn new(recipe: AltClipRecipe, student: AltClipModel, seed: u64, device: &Device) -> Self {
        let vocab = student
            .text_model
            .roberta
            .embeddings
            .word_embeddings
            .weight
            .dims()[0];
        assert_eq!(
            vocab, recipe.student.roberta.vocab_size,
            "the recipe's student vocabulary differs from the student's"
        );
        // The image tower never sees a gradient here; `no_grad` also keeps
        // it out of the optimizer.
        let mut student = student;
        student.vision_model = student.vision_model.no_grad();
        student.visual_projection = student.visual_projection.no_grad();
        let stage = Stage::new(recipe.stage2.clone(), student, seed, device);
        Self { recipe, stage }
    }

    /// Restores a run saved by [`Trainee::checkpoint`].
    pub fn resume(checkpoint: &Checkpoint, device: &Device) -> Result<Self, TrainError> {
        let recipe = recipe_of(checkpoint)?;
        let mut blank = recipe.student_config().init(device);
        blank.vision_model = blank.vision_model.no_grad();
        blank.visual_projection = blank.visual_projection.no_grad();
        let stage = Stage::resume(checkpoint, STAGE2_KIND, blank, device)?;
        Ok(Self { recipe, stage })
    }

    /// The student, for inference on the plain device.
    pub fn model(&self) -> AltClipModel {
        self.stage.model().valid()
    }
}

impl Trainee for ContrastiveTuning {
    type Batch = CaptionBatch;

    fn position(&self) -> Position {
        self.stage.position
    }

    fn step(
        &mut self,
        batch: &CaptionBatch,
        steps_per_epoch: usize,
    ) -> Result<StepReport, TrainError> {
        self.stage.step(
            steps_per_epoch,
            ["loss_clip"],
            |model, ad| {
                let text = model.text_features(&student_input(&batch.text, ad));
                let dim = text.dims()[1];
                let images = Tensor::<2>::from_data(
                    TensorData::new(batch.image_embeds.clone(), [batch.text.batch, dim]),
                    ad,
                );
                let out = contrastive_logits(text, images, model.logit_scale.val());
                Ok(clip_loss(out.logits_per_text))
            },
            |mut model| {
                model.logit_scale = clamp_logit_scale(model.logit_scale);
                model
            },
        )
    }

    fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        self.stage
            .checkpoint(STAGE2_KIND, serde_json::json!({ "recipe": self.recipe }))
    }
}
