//! The training objectives of ALBEF (Li et al., 2021, arXiv 2107.07651) and
//! AltCLIP (Chen et al., 2022, arXiv 2211.06679), as pure functions over
//! tensors: each takes model outputs and returns a loss, and is tested alone
//! against values computed by PyTorch.
//!
//! - [`contrastive`]: image–text contrastive loss with momentum-feature
//!   queues and momentum-distilled targets (ALBEF eq. 6), and CLIP's
//!   symmetric loss.
//! - [`itm`]: image–text matching with hard negatives drawn from the
//!   in-batch contrastive similarities.
//! - [`mlm`]: BERT masking (15 %, 80/10/10) and the MLM loss with
//!   momentum-distilled soft targets (ALBEF eq. 7).
//! - [`momentum`]: the EMA update of momentum models and the α ramp.
//! - [`distill`]: AltCLIP's teacher-learning MSE.
//! - [`answer`]: VQA's answer loss, per-answer weights and momentum
//!   distillation (`models/model_vqa.py`).
//!
//! Reference: salesforce/ALBEF@b9727e4 `models/model_pretrain.py`,
//! `models/model_retrieval.py`, `models/xbert.py`.

pub mod answer;
pub mod contrastive;
pub mod distill;
pub mod entropy;
pub mod itm;
pub mod mlm;
pub mod momentum;

pub use answer::{AnswerDistillation, answer_losses, weighted_answer_loss};
pub use contrastive::{FeatureQueue, ItcLoss, clip_loss, distilled_targets, itc_loss};
pub use distill::mse_loss;
pub use entropy::{classifier_distillation, cross_entropy, soft_cross_entropy};
pub use itm::{HardNegatives, itm_loss, sample_hard_negatives};
pub use mlm::{MaskedTokens, MaskingConfig, mask_tokens, mlm_loss};
pub use momentum::{alpha_at, ema_update, flat_parameters, fresh_copy};
