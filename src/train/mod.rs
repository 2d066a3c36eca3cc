//! Training: objectives, optimisers, schedules, crash-safe checkpoints, run directories and the one
//! loop both models use ([`trainer::Trainer`]); [`pretrain`] and [`finetune`] put them together.

pub mod checkpoint;
pub mod finetune;
pub mod grads;
pub mod objectives;
pub mod optim;
pub mod pretrain;
pub mod run_dir;
pub mod schedule;
pub mod trainer;
