//! # protein_lm
//!
//! ProteinBERT (Brandes et al. 2022) and PRoBERTa (Nambiar et al. 2020) on candle, with the data,
//! tokenizers, training and analysis their papers use. Data flows one way:
//! `data` → `tokenize` → `batch` → `models` → `train` → `analysis` → `plots` / `notebook`.

pub mod analysis;
pub mod arrays;
pub mod batch;
pub mod config;
pub mod data;
pub mod device;
pub mod distributed;
pub mod embed;
pub mod error;
pub mod failpoint;
pub mod memory;
pub mod models;
pub mod notebook;
pub mod output;
pub mod plots;
pub mod results;
pub mod rng;
pub mod testing;
pub mod tokenize;
pub mod train;

/// The tensor crates the models are written in, so notebooks and dependents use the same versions.
pub use candle_core;
pub use candle_nn;
pub use error::{Error, Location, Result};
/// The array crate of [`analysis`] (feature matrices, one row per protein).
pub use ndarray;
pub use rng::Rng;

/// What a notebook usually needs, in one `use protein_lm::prelude::*;`.
pub mod prelude {
    pub use crate::data::resolver::{self, files, DataResolver};
    pub use crate::data::tables::{self, BenchmarkRecord, Label, SwissProtRecord, BENCHMARKS};
    pub use crate::data::{fasta, go, ppi, read_proteins, splits, FilterReport, Protein};
    pub use crate::device::{select_device, DeviceChoice};
    pub use crate::embed::{self, EmbedOptions, EmbedPooling, Embedder, LayerChoice, LongPolicy};
    pub use crate::error::{Error, Result};
    pub use crate::notebook::{ours_vs_paper, Claims, Html, Scale, Svg, Table};
    pub use crate::plots::{self, Figure};
    pub use crate::results::Results;
    pub use crate::rng::Rng;
    pub use crate::tokenize::{
        BpeOptions, FairseqDictionary, PairTruncation, ProbertaTokenizer, ResidueTokenizer, SingleTruncation,
        UnknownCounts,
    };

    // A head of one's own: its building blocks, its data and its training.
    pub use crate::analysis::probe::StandardScaler;
    pub use crate::analysis::regression::Ridge;
    pub use crate::analysis::stats::{mean_ci, ttest_rel};
    pub use crate::arrays::{read_npy, read_npz, write_npy, write_npz};
    pub use crate::data::tables::load_benchmark;
    pub use crate::models::baselines::one_hot_rows;
    pub use crate::models::heads::{
        attention_pool, masked_softmax, ClassificationHead, Features, Head, HeadConfig, HeadInput, Level, LinearHead,
        PairCombination, Pooling, Standardise, Target,
    };
    pub use crate::models::layers::dropout;
    pub use crate::models::ops::softmax_last_dim;
    pub use crate::models::Trunk;
    pub use crate::train::finetune::{
        finetune_head, DataLimits, Example, HeadData, HeadReport, HeadTraining, SupervisedData, TrainedHead, Widths,
    };
    pub use crate::train::objectives::supervised::{BatchTargets, Predictions, TargetValue};
    pub use crate::train::run_dir::RunOptions;
    pub use crate::train::trainer::{EarlyStoppingConfig, LrSchedule, OptimizerConfig, TrainConfig};
    pub use candle_core::{DType, Device, Tensor, D};
    pub use candle_nn::{linear, Linear, Module, VarBuilder, VarMap};
    // evcxr names a kept `VarBuilder`'s type, `VarBuilderArgs<Box<dyn SimpleBackend>>`, in the code it
    // generates for the next cell: without the trait in scope a notebook cannot keep one across cells.
    pub use candle_nn::var_builder::SimpleBackend;
}
