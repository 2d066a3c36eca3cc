//! ProteinBERT (Brandes et al. 2022): configuration, network, and the importer for the released
//! Keras weights.

pub mod config;
pub mod import;
pub mod model;

pub use config::Config;
pub use model::{Forward, GlobalAttention, ProteinBert, ProteinBertOutput};
