//! Training: optimisers, schedules and crash-safe checkpoints now; objectives and the loop follow
//! (issue 5).

pub mod checkpoint;
pub mod grads;
pub mod objectives;
pub mod optim;
pub mod schedule;
