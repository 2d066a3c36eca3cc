//! Training: objectives, optimisers, schedules, crash-safe checkpoints, run directories and the one
//! loop both models use ([`trainer::Trainer`]); [`pretrain`] and [`finetune`] put them together.

pub mod checkpoint;
pub mod finetune;
pub mod grads;
pub mod objectives;
pub mod optim;
pub mod precision;
pub mod pretrain;
pub mod run_dir;
pub mod schedule;
pub mod trainer;

/// Labels of the RNG streams training draws from (`Rng::fork`), each the ASCII of its name, so
/// that no two uses share a stream and the values never change between versions.
pub(crate) mod streams {
    /// The run RNG (dropout, noise, masking draws per micro-batch): "TRAIN".
    pub const TRAIN: u64 = 0x54_52_41_49_4e;
    /// The held-out proteins of a pretraining: "VALID".
    pub const VALID_SET: u64 = 0x56_41_4c_49_44;
    /// Fixed corruption of the validation set (noise, masks): "VAL".
    pub const VALID_NOISE: u64 = 0x56_41_4c;
    /// The benchmark valid split and subsampling: "SPLIT".
    pub const SPLIT: u64 = 0x53_50_4c_49_54;
    /// ProteinBERT protein → episode assignment per pass: "EPIS".
    pub const EPISODE: u64 = 0x45_50_49_53;
    /// Shuffling of an episode's proteins per pass: "SHUF".
    pub const SHUFFLE: u64 = 0x53_48_55_46;
}
