//! ALBEF (Li et al., "Align before Fuse", NeurIPS 2021, arXiv 2107.07651;
//! salesforce/ALBEF@b9727e4): pretraining with ITC, ITM and MLM under
//! momentum distillation, its config, and the supervised warm-up of the
//! image encoder that stands in for the reference's DeiT weights; and
//! fine-tuning for image–text retrieval, SNLI-VE and weakly supervised
//! grounding.

pub mod backends;
pub mod config;
pub mod downstream;
pub mod grounding;
mod losses;
pub mod pipeline;
pub mod pretraining;
pub mod retrieval;
mod step;
pub mod tasks;
mod text_groups;
pub mod ve;
pub mod vision_warmup;

pub use config::{ExecutionConfig, PretrainConfig, RecipeConfig, StepThreads};
pub use pretraining::{AlbefPretraining, StepLosses, model_ema_decay_at};
