//! Weakly supervised visual grounding with ALBEF (Li et al. 2021, section
//! 6; salesforce/ALBEF `Grounding.py`, RefCOCO+).
//!
//! Training never sees a box: it is retrieval fine-tuning
//! ([`crate::albef::retrieval`], the reference trains
//! `models/model_retrieval.py`) on (image, referring expression) pairs,
//! every expression of an image a positive of the others. Evaluation
//! localises each expression by Grad-CAM of the ITM score on the
//! cross-attention of one fusion layer (`gradcam_layer`, the reference's
//! `--block_num`; [`vl_models::albef::gradcam`]) and picks the detector's
//! candidate box that holds the most of the map per square root of its area
//! ([`eval`]): `val_d` on the first evaluated file, `test_d` on the others,
//! `test_d_multi` on expressions with two or more candidates, and one
//! accuracy per split where a refs file names them (`testA`, `testB`).

pub mod config;
pub mod eval;
pub mod pipeline;

pub use config::GroundingConfig;
