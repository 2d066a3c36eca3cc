//! Statistics and metrics the two papers' analyses use, each equal to scikit-learn's or scipy's on
//! the same inputs within a stated tolerance (fixtures in `tests/fixtures/analysis/`, with the
//! Python script that produced them).
//!
//! Matrices are `ndarray` 0.16 arrays (`Array2<f64>`, one row per sample), the version linfa uses.
//! This module knows nothing of models or files: it takes numbers and labels.

pub mod baselines;
pub mod cluster;
pub mod information;
pub mod reduce;
