//! Training objectives: how a batch becomes model inputs and loss targets.

pub mod denoising;
pub mod denoising_eval;
pub mod mlm;
pub mod mlm_eval;
pub mod supervised;
