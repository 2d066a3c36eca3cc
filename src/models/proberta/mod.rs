//! PRoBERTa (Nambiar et al. 2020): a fairseq RoBERTa encoder over BPE pieces, its masked-LM head,
//! and importers for Hugging Face and fairseq checkpoints.

pub mod config;
pub mod import;
pub mod model;

pub use config::Config;
pub use model::{Encoder, EncoderOutput, Forward, LmHead, ProbertaForMaskedLm};
