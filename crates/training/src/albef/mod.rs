//! ALBEF (Li et al., "Align before Fuse", NeurIPS 2021, arXiv 2107.07651;
//! salesforce/ALBEF@b9727e4): pretraining with ITC, ITM and MLM under
//! momentum distillation, its config, and the supervised warm-up of the
//! image encoder that stands in for the reference's DeiT weights.

pub mod backends;
pub mod config;
mod losses;
pub mod pipeline;
pub mod pretraining;
mod step;
mod text_groups;
pub mod vision_warmup;

pub use config::{ExecutionConfig, PretrainConfig, RecipeConfig, StepThreads};
pub use pretraining::{AlbefPretraining, StepLosses, model_ema_decay_at};
