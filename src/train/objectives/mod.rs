//! Training objectives: how a batch becomes model inputs and loss targets.

pub mod mlm;
