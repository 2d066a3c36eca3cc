//! # protein_lm
//!
//! ProteinBERT (Brandes et al. 2022) and PRoBERTa (Nambiar et al. 2020) on candle, with the data,
//! tokenizers, training and analysis their papers use. Data flows one way:
//! `data` → `tokenize` → `batch` → `models` → `train` → `analysis` → `plots` / `notebook`.

pub mod batch;
pub mod data;
pub mod error;
pub mod models;
pub mod notebook;
pub mod plots;
pub mod rng;
pub mod tokenize;

pub use error::{Error, Location, Result};
pub use rng::Rng;
