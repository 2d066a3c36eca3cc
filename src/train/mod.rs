//! Training: optimisers and schedules now; objectives, checkpoints and the loop follow (issue 5).

pub mod optim;
pub mod schedule;
