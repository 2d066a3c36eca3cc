//! Numerically stable losses.
