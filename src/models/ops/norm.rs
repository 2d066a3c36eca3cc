//! Softmax over the last axis and LayerNorm, one pass per row.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::elementwise::fast_exp;
use super::{contiguous_f32, sum_f64, sum_f64_of, use_kernel, with_held_f32, CHUNK};
use crate::Result;

/// `row ← softmax(row)`: the maximum over sixteen lanes, one vectorised `exp` pass, and the
/// normaliser summed in f64 ([`sum_f64`]), so a row of thousands of positions is as exact as a
/// short one (a running f32 sum drifts by about `n · 2⁻²⁴`).
#[inline(always)]
pub(super) fn softmax_in_place(row: &mut [f32]) {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let mut max = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(v);
        }
    }
    max = lanes.iter().copied().fold(max, f32::max);
    for v in row.iter_mut() {
        *v = fast_exp(*v - max);
    }
    let inv = (1.0 / sum_f64(row)) as f32;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

multiversion! {
    /// Each row of `out` ← the softmax of the same row of `x` (rows of width `c`).
    fn softmax_rows(x: &[f32], out: &mut [f32], c: usize) {
        for (o, row) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            o.copy_from_slice(row);
            softmax_in_place(o);
        }
    }
}

/// A row's mean and `1/√(var + eps)` (biased variance), accumulated in f64, rounded once.
#[inline(always)]
fn mean_rstd(row: &[f32], eps: f32) -> (f32, f32) {
    let c = row.len() as f64;
    let mean = sum_f64(row) / c;
    let var = sum_f64_of(row, |v| (v as f64 - mean) * (v as f64 - mean)) / c;
    (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
}

/// `row ← LN(row)`: the row's LayerNorm in place (the fused inference block sums a row first).
#[inline(always)]
pub(super) fn layer_norm_in_place(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let (mean, rstd) = mean_rstd(row, eps);
    for ((o, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
        *o = (*o - mean) * rstd * g + b;
    }
}

multiversion! {
    /// LayerNorm of each row of `x` into `out`, mean and variance accumulated in f64.
    fn layer_norm_rows(x: &[f32], out: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let c = gamma.len();
        for (o, row) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            o.copy_from_slice(row);
            layer_norm_in_place(o, gamma, beta, eps);
        }
    }
}

/// Softmax over the last axis, one pass per row; backward `y ⊙ (g − Σ g ⊙ y)` from candle ops.
struct FusedSoftmax;

impl CustomOp1 for FusedSoftmax {
    fn name(&self) -> &'static str {
        "fused-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), storage, layout)?;
        let c = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        let rows_per_task = (CHUNK / c).max(1);
        out.par_chunks_mut(rows_per_task * c)
            .zip(x.par_chunks(rows_per_task * c))
            .for_each(|(out, x)| softmax_rows(x, out, c));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(candle_core::D::Minus1)?;
        Ok(Some(res.mul(&grad_res.broadcast_sub(&dot)?)?))
    }
}

/// Softmax over the last axis; the fused kernel on CPU f32, candle's composite elsewhere.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::models::ops::softmax_last_dim;
/// let x = Tensor::new(&[[0f32, 0.0], [0.0, 2f32.ln()]], &Device::Cpu)?;
/// let p = softmax_last_dim(&x)?.to_vec2::<f32>()?;
/// assert!((p[0][0] - 0.5).abs() < 1e-6 && (p[1][1] - 2.0 / 3.0).abs() < 1e-6);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    if use_kernel(xs) {
        Ok(xs.contiguous()?.apply_op1(FusedSoftmax)?)
    } else {
        Ok(candle_nn::ops::softmax(xs, candle_core::D::Minus1)?)
    }
}

/// LayerNorm over the last axis as one pass per row (forward); the backward is the closed form
/// from candle ops. `x (…, C)`, `gamma`, `beta` `(C)`.
struct FusedLayerNorm {
    eps: f32,
}

impl candle_core::CustomOp3 for FusedLayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        beta: &CpuStorage,
        beta_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), x, x_layout)?;
        let gamma = contiguous_f32(self.name(), gamma, gamma_layout)?;
        let beta = contiguous_f32(self.name(), beta, beta_layout)?;
        let c = gamma.len();
        let mut out = vec![0f32; x.len()];
        let rows_per_task = (CHUNK / c.max(1)).max(1);
        out.par_chunks_mut(rows_per_task * c)
            .zip(x.par_chunks(rows_per_task * c))
            .for_each(|(out, x)| layer_norm_rows(x, out, gamma, beta, self.eps));
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = gamma.elem_count();
        let backward = FusedLayerNormBackward { eps: self.eps, grad: grad.contiguous()? };
        // One flat output: dx (rows · C), then dγ (C), then dβ (C).
        let all = x.apply_op3_no_bwd(gamma, beta, &backward)?;
        let n = x.elem_count();
        let d_x = all.narrow(0, 0, n)?.reshape(x.shape())?;
        Ok((Some(d_x), Some(all.narrow(0, n, c)?), Some(all.narrow(0, n + c, c)?)))
    }
}

/// LayerNorm's three gradients in one pass per row: `dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂))`
/// with `g = grad ⊙ γ`; `dγ = Σ_rows grad ⊙ x̂` and `dβ = Σ_rows grad` accumulated in f64 per
/// task and added up at the end (sums over positions: their error must not grow with length).
struct FusedLayerNormBackward {
    eps: f32,
    grad: Tensor,
}

multiversion! {
    /// The backward over a block of rows: writes `dx` and adds the block's dγ, dβ into `acc`
    /// (`2·C`: dγ then dβ).
    fn layer_norm_backward_rows(x: &[f32], grad: &[f32], gamma: &[f32], eps: f32, dx: &mut [f32], acc: &mut [f64]) {
        let c = gamma.len();
        let (acc_gamma, acc_beta) = acc.split_at_mut(c);
        for ((row, g_row), dx_row) in x.chunks_exact(c).zip(grad.chunks_exact(c)).zip(dx.chunks_exact_mut(c)) {
            let (mean, rstd32) = mean_rstd(row, eps);
            let (mut sum_g, mut sum_gx) = (0f64, 0f64);
            for ((((&v, &gr), &ga), ag), ab) in
                row.iter().zip(g_row).zip(gamma).zip(acc_gamma.iter_mut()).zip(acc_beta.iter_mut())
            {
                let xhat = (v - mean) * rstd32;
                let g = gr * ga;
                sum_g += g as f64;
                sum_gx += (g * xhat) as f64;
                *ag += (gr * xhat) as f64;
                *ab += gr as f64;
            }
            let (mean_g, mean_gx) = ((sum_g / c as f64) as f32, (sum_gx / c as f64) as f32);
            for (((o, &v), &gr), &ga) in dx_row.iter_mut().zip(row).zip(g_row).zip(gamma) {
                let xhat = (v - mean) * rstd32;
                *o = rstd32 * (gr * ga - mean_g - xhat * mean_gx);
            }
        }
    }
}

impl candle_core::CustomOp3 for FusedLayerNormBackward {
    fn name(&self) -> &'static str {
        "fused-layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        _beta: &CpuStorage,
        _beta_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), x, x_layout)?;
        let gamma = contiguous_f32(self.name(), gamma, gamma_layout)?;
        with_held_f32(self.name(), &self.grad, |grad| {
            let (c, n) = (gamma.len(), x.len());
            let mut out = vec![0f32; n + 2 * c];
            let (dx, tail) = out.split_at_mut(n);
            for (o, &t) in tail.iter_mut().zip(&layer_norm_backward(x, grad, gamma, self.eps, dx)) {
                *o = t as f32;
            }
            Ok((CpuStorage::F32(out), Shape::from(n + 2 * c)))
        })
    }
}

/// LayerNorm's backward over every row of `x` (the LayerNorm's input): writes `dx` and returns
/// `[dγ, dβ]` (`2·C`), each summed over rows in f64 per task and then across tasks.
pub(super) fn layer_norm_backward(x: &[f32], grad: &[f32], gamma: &[f32], eps: f32, dx: &mut [f32]) -> Vec<f64> {
    let c = gamma.len();
    let rows_per_task = (CHUNK / c.max(1)).max(1);
    let partials: Vec<Vec<f64>> = dx
        .par_chunks_mut(rows_per_task * c)
        .zip(x.par_chunks(rows_per_task * c))
        .zip(grad.par_chunks(rows_per_task * c))
        .map(|((dx, x), grad)| {
            let mut acc = vec![0f64; 2 * c];
            layer_norm_backward_rows(x, grad, gamma, eps, dx, &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0f64; 2 * c];
    for part in &partials {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total
}

/// Whether [`layer_norm`] will use the fused kernel for these inputs.
pub fn fused_layer_norm_applies(xs: &Tensor, gamma: &Tensor) -> bool {
    use_kernel(xs) && gamma.dtype() == DType::F32 && gamma.rank() == 1 && xs.dims().last() == Some(&gamma.dims()[0])
}

/// LayerNorm of CPU f32 inputs in one fused pass (see [`crate::models::layers::LayerNorm`], which
/// calls it when it applies).
pub fn layer_norm(xs: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(xs.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, FusedLayerNorm { eps: eps as f32 })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fused_layer_norm_matches_the_composite_forward_and_backward() {
        use crate::models::layers::LayerNorm;
        let mut rng = crate::Rng::new(3);
        let mut t = |dims: &[usize], scale: f32| {
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|_| scale * rng.normal() as f32).collect();
            Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
        };
        // 2,700 rows: three tasks of the backward, whose dγ and dβ partials must add up.
        let (x, g, b) = (t(&[3, 900, 16], 3.0), t(&[16], 1.0), t(&[16], 1.0));
        let r = t(&[3, 900, 16], 1.0);
        let fused = layer_norm(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-3).unwrap();
        // The composite: f64 copies of the same values through LayerNorm's tensor-op path.
        let to64 = |v: &Var| Var::from_tensor(&v.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
        let (x64, g64, b64) = (to64(&x), to64(&g), to64(&b));
        let composite = LayerNorm::new(g64.as_tensor().clone(), b64.as_tensor().clone(), 1e-3)
            .unwrap()
            .forward(x64.as_tensor())
            .unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a.to_dtype(DType::F64).unwrap() - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap()
        };
        assert!(diff(&fused, &composite) < 1e-5);
        let gf = fused.mul(r.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let r64 = r.as_tensor().to_dtype(DType::F64).unwrap();
        let gc = composite.mul(&r64).unwrap().sum_all().unwrap().backward().unwrap();
        for (a, b) in [(&x, &x64), (&g, &g64), (&b, &b64)] {
            let d = diff(gf.get(a).unwrap(), gc.get(b).unwrap());
            assert!(d < 1e-4, "gradient differs by {d}");
        }
    }

    #[test]
    fn fused_softmax_matches_candle_forward_and_backward() {
        let mut rng = crate::Rng::new(4);
        let v: Vec<f32> = (0..4 * 37).map(|_| 5.0 * rng.normal() as f32).collect();
        let x = Var::from_tensor(&Tensor::from_vec(v, (4, 37), &Device::Cpu).unwrap()).unwrap();
        let w: Vec<f32> = (0..4 * 37).map(|_| rng.normal() as f32).collect();
        let w = Tensor::from_vec(w, (4, 37), &Device::Cpu).unwrap();
        let ours = softmax_last_dim(x.as_tensor()).unwrap();
        let theirs = candle_nn::ops::softmax(x.as_tensor(), candle_core::D::Minus1).unwrap();
        let d = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-6, "{d}");
        let go = ours.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let gt = theirs.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let d = (go.get(&x).unwrap() - gt.get(&x).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        // A row of −1e9 (fully masked) stays finite.
        let masked = Tensor::new(&[[-1e9f32, -1e9, -1e9]], &Device::Cpu).unwrap();
        let y = softmax_last_dim(&masked).unwrap().to_vec2::<f32>().unwrap();
        assert!(y[0].iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-6), "{y:?}");
    }
}
