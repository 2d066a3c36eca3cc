//! Training: optimisers now; objectives, schedules, checkpoints and the loop follow (issue 5).

pub mod optim;
