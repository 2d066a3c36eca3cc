//! The optimiser steps as fused CPU kernels, for a contiguous f32 parameter and its gradient.
//!
//! The candle-op path makes about 25 passes over every parameter per step (each op its own pass,
//! the norms through f64 copies): on PRoBERTa's 44 M parameters an apex LAMB step took 0.75-0.85 s
//! on two cores, against 0.11 s here (`tests::time_lamb_step_on_proberta_shapes`), about what
//! reading and writing the arrays costs. LAMB reads each array twice (new moments and both
//! norms, then the new weights, recomputing the update rather than storing it), Adam once, the
//! gradient norm once.
//!
//! Every f32 operation is the one the candle-op path does, in the same order and with the same
//! f32-rounded constants (candle's scalar ops compute `x · (c as f32) + (d as f32)`), so moments
//! and updates agree with it bit for bit (up to the sign of a zero). Only the f64 sums (the
//! gradient norm, LAMB's two norms) add in another order, which can move the clip factor or the
//! trust ratio by an f32 rounding. They add per [`CHUNK`] and then the chunks in order, so the bits
//! do not depend on how rayon schedules the chunks.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Storage, Tensor, Var};
use rayon::prelude::*;

use crate::models::ops::{contiguous_f32, multiversion, sum_f64_of, CHUNK};
use crate::{Error, Result};

/// Summing eight f64 lanes lets the accumulation vectorise (as `sum_f64_of` does).
const LANES: usize = 8;

/// Whether the fused kernels can update `var` from `grad`: both f32 on the CPU and the parameter
/// contiguous (the gradient is made contiguous if it is not).
pub(super) fn applies(var: &Var, grad: &Tensor) -> bool {
    var.device().is_cpu()
        && grad.device().is_cpu()
        && var.dtype() == candle_core::DType::F32
        && grad.dtype() == candle_core::DType::F32
        && var.layout().is_contiguous()
}

/// `Σ g²` in f64 for a contiguous CPU f32 gradient; `None` for any other, which the caller sums
/// with candle ops.
pub(super) fn sum_squares(grad: &Tensor) -> Result<Option<f64>> {
    if !grad.device().is_cpu() || grad.dtype() != candle_core::DType::F32 || !grad.layout().is_contiguous() {
        return Ok(None);
    }
    let partial: Vec<f64> = with_f32("grad-norm", grad, |g| Ok(g.par_chunks(CHUNK).map(sum_squares_chunk).collect()))?;
    Ok(Some(partial.iter().sum()))
}

multiversion! {
    fn sum_squares_chunk(g: &[f32]) -> f64 {
        sum_f64_of(g, |x| x as f64 * x as f64)
    }
}

/// The moment update's constants, rounded to f32 as candle's scalar ops round them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Betas {
    /// The gradient's factor: 1 / LAMB's clip divisor (`g · 1` is `g` exactly, so no branch).
    pub g_scale: f32,
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
}

impl Betas {
    pub fn new(beta1: f64, beta2: f64, grad_divisor: f64) -> Self {
        Self {
            g_scale: if grad_divisor == 1.0 { 1.0 } else { (1.0 / grad_divisor) as f32 },
            beta1: beta1 as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            beta2: beta2 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
        }
    }

    /// `m ← β₁ m + (1−β₁) g`, `v ← β₂ v + (1−β₂) g²`.
    #[inline(always)]
    fn update(&self, g: f32, m: &mut f32, v: &mut f32) {
        let g = g * self.g_scale;
        *m = *m * self.beta1 + g * self.one_minus_beta1;
        *v = *v * self.beta2 + g * g * self.one_minus_beta2;
    }
}

/// LAMB's per-element update `m̂ / (√v̂ + ε) + λ w`, without the learning rate and trust ratio.
#[derive(Debug, Clone, Copy)]
pub(super) struct LambUpdate {
    pub inv_bias1: f32,
    pub inv_bias2: f32,
    pub eps: f32,
    /// `None` adds no decay term at all (as the candle path skips it), not `+ 0 · w`.
    pub weight_decay: Option<f32>,
}

impl LambUpdate {
    #[inline(always)]
    fn at(&self, m: f32, v: f32, w: f32) -> f32 {
        let update = (m * self.inv_bias1) / ((v * self.inv_bias2).sqrt() + self.eps);
        match self.weight_decay {
            Some(decay) => update + w * decay,
            None => update,
        }
    }
}

/// One LAMB step of `var`: pass 1 updates `m`, `v` in place and sums `‖w‖²`, `‖update‖²`; pass 2
/// writes `w − lr · ratio · update`, where `trust_ratio(‖w‖, ‖update‖)` gives the ratio.
pub(super) fn lamb(
    var: &Var,
    grad: &Tensor,
    (m, v): (&mut [f32], &mut [f32]),
    (betas, k): (Betas, LambUpdate),
    lr: f64,
    trust_ratio: impl FnOnce(f64, f64) -> f64,
) -> Result<()> {
    let partial: Vec<(f64, f64)> = with_f32("fused-lamb", grad, |g| {
        with_f32("fused-lamb", var.as_tensor(), |w| {
            check_lengths("fused-lamb", w.len(), &[g.len(), m.len(), v.len()])?;
            Ok(m.par_chunks_mut(CHUNK)
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK).zip(w.par_chunks(CHUNK)))
                .map(|((m, v), (g, w))| lamb_moments_chunk(&betas, &k, g, w, m, v))
                .collect())
        })
    })?;
    let (w_sq, u_sq) = partial.iter().fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let ratio = trust_ratio(w_sq.sqrt(), u_sq.sqrt());
    var.inplace_op1(&LambApply { k, step: (lr * ratio) as f32, m, v })?;
    Ok(())
}

multiversion! {
    /// Pass 1 over one chunk: the new moments, and `(Σ w², Σ update²)` in f64.
    fn lamb_moments_chunk(betas: &Betas, k: &LambUpdate, g: &[f32], w: &[f32], m: &mut [f32], v: &mut [f32]) -> (f64, f64) {
        let (mut w_sq, mut u_sq) = ([0f64; LANES], [0f64; LANES]);
        let whole = g.len() / LANES * LANES;
        let (g_head, g_tail) = g.split_at(whole);
        let (w_head, w_tail) = w.split_at(whole);
        let (m_head, m_tail) = m.split_at_mut(whole);
        let (v_head, v_tail) = v.split_at_mut(whole);
        let lanes = g_head
            .chunks_exact(LANES)
            .zip(w_head.chunks_exact(LANES))
            .zip(m_head.chunks_exact_mut(LANES).zip(v_head.chunks_exact_mut(LANES)));
        for ((g, w), (m, v)) in lanes {
            for l in 0..LANES {
                betas.update(g[l], &mut m[l], &mut v[l]);
                let u = k.at(m[l], v[l], w[l]);
                w_sq[l] += w[l] as f64 * w[l] as f64;
                u_sq[l] += u as f64 * u as f64;
            }
        }
        let (mut w_rest, mut u_rest) = (0f64, 0f64);
        for (((&g, &w), m), v) in g_tail.iter().zip(w_tail).zip(m_tail).zip(v_tail) {
            betas.update(g, m, v);
            let u = k.at(*m, *v, w);
            w_rest += w as f64 * w as f64;
            u_rest += u as f64 * u as f64;
        }
        (w_sq.iter().sum::<f64>() + w_rest, u_sq.iter().sum::<f64>() + u_rest)
    }
}

multiversion! {
    /// Pass 2 over one chunk: `w ← w − step · update`, the update recomputed from the new moments.
    fn lamb_apply_chunk(k: &LambUpdate, step: f32, m: &[f32], v: &[f32], w: &mut [f32]) {
        for ((w, &m), &v) in w.iter_mut().zip(m).zip(v) {
            *w -= k.at(m, v, *w) * step;
        }
    }
}

/// LAMB's pass 2, in place on the parameter's storage (which the model's tensors share, as
/// `Var::set` writes it).
struct LambApply<'a> {
    k: LambUpdate,
    step: f32,
    m: &'a [f32],
    v: &'a [f32],
}

impl InplaceOp1 for LambApply<'_> {
    fn name(&self) -> &'static str {
        "fused-lamb"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let w = contiguous_f32_mut(self.name(), storage, layout)?;
        check_lengths(self.name(), w.len(), &[self.m.len(), self.v.len()])?;
        w.par_chunks_mut(CHUNK)
            .zip(self.m.par_chunks(CHUNK).zip(self.v.par_chunks(CHUNK)))
            .for_each(|(w, (m, v))| lamb_apply_chunk(&self.k, self.step, m, v, w));
        Ok(())
    }
}

/// The two Adam updates of the new weight from the new moments.
#[derive(Debug, Clone, Copy)]
pub(super) enum AdamUpdate {
    /// `w − lr_t · m / (√v + ε)`.
    Keras { lr_t: f32, eps: f32 },
    /// `w · (1 − lr·λ) − lr/(1−β₁ᵗ) · m / (√v / √(1−β₂ᵗ) + ε)`.
    AdamW { decay: f32, inv_sqrt_bias2: f32, eps: f32, step: f32 },
}

/// One Adam step of `var` in a single pass: moments in place, then the weight.
pub(super) fn adam(
    var: &Var,
    grad: &Tensor,
    (m, v): (&mut [f32], &mut [f32]),
    betas: Betas,
    k: AdamUpdate,
) -> Result<()> {
    var.inplace_op2(grad, &AdamApply { betas, k, moments: RefCell::new((m, v)) })?;
    Ok(())
}

/// The moments sit in a `RefCell` because candle hands the op over by shared reference.
struct AdamApply<'a> {
    betas: Betas,
    k: AdamUpdate,
    moments: RefCell<(&'a mut [f32], &'a mut [f32])>,
}

impl InplaceOp2 for AdamApply<'_> {
    fn name(&self) -> &'static str {
        "fused-adam"
    }

    fn cpu_fwd(&self, w: &mut CpuStorage, w_l: &Layout, g: &CpuStorage, g_l: &Layout) -> candle_core::Result<()> {
        let w = contiguous_f32_mut(self.name(), w, w_l)?;
        let g = contiguous_f32(self.name(), g, g_l)?;
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        check_lengths(self.name(), w.len(), &[g.len(), m.len(), v.len()])?;
        // Not `self` in the tasks: the `RefCell` is not `Sync`.
        let (betas, k) = (self.betas, self.k);
        w.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((w, g), (m, v))| adam_chunk(&betas, &k, g, m, v, w));
        Ok(())
    }
}

multiversion! {
    fn adam_chunk(betas: &Betas, k: &AdamUpdate, g: &[f32], m: &mut [f32], v: &mut [f32], w: &mut [f32]) {
        let each = g.iter().zip(m.iter_mut()).zip(v.iter_mut()).zip(w.iter_mut());
        // The variant is matched outside the loop so each loop body vectorises on its own.
        match *k {
            AdamUpdate::Keras { lr_t, eps } => {
                for (((&g, m), v), w) in each {
                    betas.update(g, m, v);
                    *w -= *m / (v.sqrt() + eps) * lr_t;
                }
            }
            AdamUpdate::AdamW { decay, inv_sqrt_bias2, eps, step } => {
                for (((&g, m), v), w) in each {
                    betas.update(g, m, v);
                    *w = *w * decay - *m / (v.sqrt() * inv_sqrt_bias2 + eps) * step;
                }
            }
        }
    }
}

/// Runs `f` on a CPU f32 tensor's values (contiguous), holding its storage's read lock meanwhile.
fn with_f32<R>(name: &str, t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(storage) = &*storage else {
        return Err(Error::invalid(format!("{name}: a tensor is not on the CPU")));
    };
    f(contiguous_f32(name, storage, layout)?)
}

fn contiguous_f32_mut<'a>(
    name: &str,
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(values) = storage else { candle_core::bail!("{name}: f32 only") };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("{name}: contiguous inputs only") };
    Ok(&mut values[start..end])
}

/// Every array of one update must have the parameter's length (a moment restored for another
/// shape is caught before, with its name; this guards the kernels themselves).
fn check_lengths(name: &str, n: usize, others: &[usize]) -> candle_core::Result<()> {
    if let Some(bad) = others.iter().find(|&&len| len != n) {
        candle_core::bail!("{name}: an operand has {bad} elements where the parameter has {n}");
    }
    Ok(())
}
