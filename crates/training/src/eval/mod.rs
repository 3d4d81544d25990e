//! Evaluation: ALBEF image–text retrieval (ITC top-k, then ITM
//! re-ranking, as the reference) and dual-encoder retrieval and zero-shot
//! classification (the CLIP teacher, the AltCLIP student).

pub mod dual_encoder;
pub mod retrieval;
