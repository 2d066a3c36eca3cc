//! Batching: padding policies and length buckets.
