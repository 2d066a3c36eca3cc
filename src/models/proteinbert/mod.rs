//! ProteinBERT (Brandes et al. 2022): configuration, network, and the importer for the released
//! Keras weights.
//!
//! ```
//! use candle_core::{DType, Device};
//! use protein_lm::models::init::SeededVarMap;
//! use protein_lm::models::proteinbert::{Config, ProteinBert};
//! let config = Config::tiny(8);
//! let map = SeededVarMap::new(0);
//! ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &config)?;
//! // The count from the config alone equals the variables the network creates.
//! assert_eq!(map.num_parameters(), config.num_parameters());
//! assert_eq!(Config::default().num_parameters(), 15_981_321); // the released model
//! # Ok::<(), protein_lm::Error>(())
//! ```

pub mod anatomy;
pub mod config;
pub mod import;
pub mod model;

pub use anatomy::{layer_parameters, parameters_by_part, track_shapes};
pub use config::Config;
pub use model::{Forward, GlobalAttention, ProteinBert, ProteinBertOutput};
