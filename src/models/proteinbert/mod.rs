//! ProteinBERT (Brandes et al. 2022): configuration, network, and the importer for the released
//! Keras weights.

pub mod anatomy;
pub mod config;
pub mod import;
pub mod model;

pub use anatomy::{layer_parameters, parameters_by_part, track_shapes};
pub use config::Config;
pub use model::{Forward, GlobalAttention, ProteinBert, ProteinBertOutput};
