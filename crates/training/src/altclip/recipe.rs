//! AltCLIP's recipe: the teacher and student shapes, text lengths, and
//! the batch and optimisation of each of its three stages.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use vl_data::transforms::AugmentConfig;
use vl_models::altclip::AltClipTextConfig;
use vl_models::clip::{ClipTextConfig, ClipVisionConfig};
use vl_models::{AltClipConfig, AltClipModel, BertConfig, ClipConfig, ClipModel};

use crate::TrainError;
use crate::config::{Checks, check_augment, from_value_strict, overlay, read_yaml};
use crate::runner::optimizer::OptimizerConfig;
use crate::runner::schedule::ScheduleConfig;

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

    /// Reads a recipe from YAML (or JSON) strictly: missing keys, also
    /// within a section, take the `tiny` values, an unknown key is an error naming it and the closest
    /// known one; the values are then checked ([`AltClipRecipe::validate`]).
    pub fn from_yaml_file(path: &Path) -> Result<Self, TrainError> {
        // Laid over `tiny`, so that a partial section (`student:
        // {num_hidden_layers: 1}`) keeps tiny's other fields.
        let mut value = serde_json::to_value(Self::tiny()).map_err(|source| TrainError::Json {
            path: path.to_owned(),
            source,
        })?;
        overlay(&mut value, read_yaml(path)?);
        let recipe: Self = from_value_strict(
            path,
            value,
            &Self::tiny(),
            &[
                "teacher",
                "teacher.text_config",
                "teacher.vision_config",
                "student",
            ],
        )?;
        recipe.validate().map_err(|e| e.in_file(path))?;
        Ok(recipe)
    }

    /// Checks every value that cannot be right, before anything runs; the
    /// error lists each with its key. Vocabulary sizes of 0 are allowed
    /// (tokenizers trained for the run set them).
    pub fn validate(&self) -> Result<(), TrainError> {
        let mut c = Checks::default();
        let (project, width) = (
            self.student.project_dim,
            self.teacher.text_config.hidden_size,
        );
        c.require(
            project == width,
            "student.project_dim",
            format_args!(
                "{project} must equal teacher.text_config.hidden_size ({width}): stage 1 regresses the teacher's pooled text"
            ),
        );
        let heads = |c: &mut Checks, width: usize, heads: usize, key: &str| {
            c.require(
                heads > 0 && width.is_multiple_of(heads),
                key,
                format_args!("{heads} heads do not divide the width {width}"),
            );
        };
        let text = &self.teacher.text_config;
        heads(
            &mut c,
            text.hidden_size,
            text.num_attention_heads,
            "teacher.text_config.num_attention_heads",
        );
        let vision = &self.teacher.vision_config;
        heads(
            &mut c,
            vision.hidden_size,
            vision.num_attention_heads,
            "teacher.vision_config.num_attention_heads",
        );
        c.require(
            vision.patch_size > 0 && vision.image_size.is_multiple_of(vision.patch_size),
            "teacher.vision_config.image_size",
            format_args!(
                "{} is not a multiple of patch_size {}",
                vision.image_size, vision.patch_size
            ),
        );
        let roberta = &self.student.roberta;
        heads(
            &mut c,
            roberta.hidden_size,
            roberta.num_attention_heads,
            "student.roberta.num_attention_heads",
        );
        c.require(
            self.max_tokens >= 3,
            "max_tokens",
            "must be at least 3 (<s>, a word, </s>)",
        );
        c.positive(self.max_words, "max_words");
        for (key, stage) in [
            ("teacher_training", &self.teacher_training),
            ("stage1", &self.stage1),
            ("stage2", &self.stage2),
        ] {
            c.positive(stage.batch_size, &format!("{key}.batch_size"));
            stage.optimizer.check(&mut c, &format!("{key}.optimizer"));
            stage.schedular.check(&mut c, &format!("{key}.schedular"));
        }
        check_augment(&self.augment, &mut c, "augment");
        c.finish()
    }
}
