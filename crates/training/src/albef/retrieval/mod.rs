//! Image–text retrieval fine-tuning of ALBEF (Li et al. 2021, section
//! 5.1): salesforce/ALBEF `Retrieval.py` and `models/model_retrieval.py`.
//!
//! The step is pretraining's ([`crate::albef::AlbefPretraining`] with
//! [`crate::albef::pretraining::Objective::Retrieval`]) on other positives:
//! ITC whose targets spread over every batch or queue column showing the
//! same image (an id queue beside the feature queues, starting at −100),
//! momentum-distilled; ITM on hard negatives that never share the
//! sample's image id; no MLM; the temperature not clamped. Evaluation every
//! epoch on the validation and test manifests is the reference's: ITC
//! top-`k_test` candidates per query re-ranked by the ITM logit, reported
//! as `txt_r1…r_mean` (percent); the best validation `r_mean` keeps its
//! weights (`checkpoint_best.ckpt`).
//!
//! Departures from the reference: the queues start fresh (the reference
//! loads the pretraining checkpoint's feature queues, whose columns a few
//! steps flush anyway); the MLM head is dropped as its `BertModel` text
//! encoder drops it.

pub mod config;
pub mod pipeline;

pub use config::RetrievalConfig;
