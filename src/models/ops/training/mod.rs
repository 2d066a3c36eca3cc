//! ProteinBERT's block for training, fused: ops with their own backward, each keeping what its
//! backward needs.
//!
//! * [`conv_sum_norm`]: `LN1(x + G + gelu(narrow(x) + b_n) + gelu(wide(x) + b_w))`, the two
//!   convolutions over the inference path's padded, phase-major copy of the input (one GEMM each);
//! * [`dense_residual_norm`]: `LN(x + gelu(x · Wᵀ + b))`, the local track's second half and the
//!   same shape as the global track's;
//! * [`global_attention_trained`]: the global attention from the local track, keys and values
//!   from one GEMM.
//!
//! Built from the separate differentiable ops, a block was about 25 activation-sized autograd
//! nodes: candle's backward gives every node's input a zero tensor and adds its gradient into it,
//! and the padding and narrowing of the convolutions and the transposes of the attention copied in
//! both directions. Here each op's backward is a handful of GEMMs and one pass per row. The small
//! weights of an op travel as one flat tensor (`cat` of their flattened values, which autograd
//! splits again), so candle's three-input custom op carries them all.

mod attention;
mod local;

pub use attention::global_attention_trained;
pub use local::{conv_sum_norm, dense_residual_norm, ConvTrack, TrackConv};

use std::sync::Mutex;

use candle_core::{Device, Shape, Tensor};

use super::with_held_f32;

/// Rows per rayon task in the row passes.
const ROWS_PER_TASK: usize = 64;

/// The values of a tensor an op's backward receives, contiguous.
fn held(name: &str, t: &Tensor) -> candle_core::Result<Vec<f32>> {
    with_held_f32(name, &t.contiguous()?, |v| Ok(v.to_vec()))
}

fn cpu(values: Vec<f32>, shape: impl Into<Shape>) -> candle_core::Result<Tensor> {
    Tensor::from_vec(values, shape, &Device::Cpu)
}

/// Adds each task's f64 partial sums.
fn add_partials(partials: Vec<Vec<f64>>, width: usize) -> Vec<f64> {
    let mut total = vec![0f64; width];
    for part in &partials {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total
}

/// What a fused op's forward keeps for its backward; the backward takes it, which frees it as soon
/// as the gradients are made.
struct Kept<T>(Mutex<Option<T>>);

impl<T> Kept<T> {
    fn new() -> Self {
        Self(Mutex::new(None))
    }

    fn keep(&self, op: &str, value: T) -> candle_core::Result<()> {
        *self.0.lock().map_err(|_| candle_core::Error::Msg(format!("{op}: poisoned")))? = Some(value);
        Ok(())
    }

    fn take(&self, op: &str) -> candle_core::Result<T> {
        match self.0.lock().ok().and_then(|mut kept| kept.take()) {
            Some(value) => Ok(value),
            None => candle_core::bail!("{op}: backward ran twice, or without the forward"),
        }
    }

    /// `f` of the kept value, if the forward has kept one.
    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.0.lock().ok().and_then(|kept| kept.as_ref().map(f))
    }
}
