//! The seam where data-parallel ranks average their gradients: what each rank brings to an update,
//! and the one-process case, where there is nothing to average.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};

use crate::train::optim::Param;
use crate::{Error, Result};

/// What one rank brings to an update's all-reduce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalUpdate {
    /// Samples in this rank's micro-batches: its weight in the average.
    pub samples: usize,
    pub tokens: usize,
    /// Mean loss of this rank's micro-batches.
    pub loss: f64,
    /// Whether one of this rank's micro-batch losses was NaN or infinite.
    pub non_finite_loss: bool,
}

/// An update over every rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalUpdate {
    pub samples: usize,
    pub tokens: usize,
    /// The ranks' losses weighted by their samples.
    pub loss: f64,
    /// Ranks with a NaN or infinite loss.
    pub non_finite_ranks: usize,
}

impl GlobalUpdate {
    /// One rank's update as the whole (one process).
    pub fn alone(local: LocalUpdate) -> Self {
        Self {
            samples: local.samples,
            tokens: local.tokens,
            loss: local.loss,
            non_finite_ranks: local.non_finite_loss as usize,
        }
    }
}

/// The point where data-parallel training averages gradients across workers
/// ([`crate::distributed::sync::DataParallel`]); [`SingleProcess`] on one.
///
/// Every rank calls the methods the same number of times in the same order.
pub trait GradientSync {
    /// This process's rank (0 logs, validates and writes checkpoints).
    fn rank(&self) -> usize {
        0
    }
    /// Processes training together.
    fn world_size(&self) -> usize {
        1
    }
    /// For the run's log.
    fn describe(&self) -> String {
        "one process".to_string()
    }
    /// Replaces each rank's gradients by their sample-weighted average over the ranks, and
    /// returns the update's totals.
    fn all_reduce(&mut self, grads: &mut GradStore, params: &[Param], local: LocalUpdate) -> Result<GlobalUpdate>;
    /// Rank 0's `values` (a 1-D f32 tensor of the same length on every rank; the other ranks'
    /// contents are ignored) on every rank.
    fn broadcast(&mut self, values: &Tensor) -> Result<Tensor> {
        Ok(values.clone())
    }
}

/// One process: nothing to average.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleProcess;

impl GradientSync for SingleProcess {
    fn all_reduce(&mut self, _grads: &mut GradStore, _params: &[Param], local: LocalUpdate) -> Result<GlobalUpdate> {
        Ok(GlobalUpdate::alone(local))
    }
}

/// Rank 0's bytes on every rank (through [`GradientSync::broadcast`]: one f32 per byte, which is
/// exact; meant for small JSON states, below 16 MB).
pub fn broadcast_bytes(sync: &mut dyn GradientSync, bytes: &[u8], device: &Device) -> Result<Vec<u8>> {
    if sync.world_size() == 1 {
        return Ok(bytes.to_vec());
    }
    // Lengths and bytes as f32 are exact below 2^24.
    if bytes.len() >= 1 << 24 {
        return Err(Error::invalid(format!("a broadcast of {} bytes (the limit is 16 MB)", bytes.len())));
    }
    let len = sync.broadcast(&Tensor::new(&[bytes.len() as f32], device)?)?.to_vec1::<f32>()?[0] as usize;
    let mut values: Vec<f32> = bytes.iter().map(|&b| b as f32).collect();
    values.resize(len, 0.0);
    let got = sync.broadcast(&Tensor::from_vec(values, len, device)?)?.to_vec1::<f32>()?;
    Ok(got.into_iter().map(|v| v as u8).collect())
}
