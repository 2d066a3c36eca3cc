//! Weighted sums over positions whose error does not grow with protein length.
//!
//! A float32 running sum over `L` positions drifts by about `L · 2⁻²⁴` of its magnitude, and the
//! matrix product that usually computes such a pooling accumulates the same way: at 1,024 residues
//! that already showed in ProteinBERT's first global-attention merge. Here every sum over positions
//! is accumulated in f64 and rounded once.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, use_kernel};
use crate::{Error, Result};

/// `y[b, h·D + c] = Σ_l weights[b, h, l] · values[b, l, h·D + c]`: per head, a weighted sum of the
/// values over positions. `weights (B, H, L)`, `values (B, L, H·D)` (heads side by side, as a
/// projection gives them), result `(B, H·D)`. Accumulated in f64 on the CPU (f32 inputs); other
/// devices and dtypes use candle's matmul.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::models::ops::weighted_sum_over_positions;
/// // One protein, two heads of width 1, three positions.
/// let w = Tensor::new(&[[[1f32, 0.0, 0.0], [0.5, 0.5, 0.0]]], &Device::Cpu)?;
/// let v = Tensor::new(&[[[1f32, 10.0], [2.0, 20.0], [3.0, 30.0]]], &Device::Cpu)?;
/// assert_eq!(weighted_sum_over_positions(&w, &v)?.to_vec2::<f32>()?, vec![vec![1.0, 15.0]]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn weighted_sum_over_positions(weights: &Tensor, values: &Tensor) -> Result<Tensor> {
    let (b, h, l) = weights.dims3()?;
    let (b2, l2, width) = values.dims3()?;
    if b != b2 || l != l2 || h == 0 || width % h != 0 {
        return Err(Error::invalid(format!(
            "weighted sum over positions: weights {:?} (B, H, L) do not fit values {:?} (B, L, H·D)",
            weights.dims(),
            values.dims()
        )));
    }
    if use_kernel(values) && weights.dtype() == DType::F32 && weights.device().same_device(values.device()) {
        return Ok(weights.contiguous()?.apply_op2(&values.contiguous()?, WeightedSum)?);
    }
    let per_head = values.reshape((b, l, h, width / h))?.transpose(1, 2)?.contiguous()?;
    Ok(weights.unsqueeze(2)?.matmul(&per_head)?.reshape((b, width))?)
}

/// `Σ_l mask[b, l] · xs[b, l, :]` for `xs (B, L, C)` and `mask (B, L)` (any dtype; `None` = every
/// position), accumulated as [`weighted_sum_over_positions`] does.
pub fn sum_over_positions(xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let (b, l, _) = xs.dims3()?;
    let weights = match mask {
        Some(m) => m.to_dtype(xs.dtype())?.reshape((b, 1, l))?,
        None => Tensor::ones((b, 1, l), xs.dtype(), xs.device())?,
    };
    weighted_sum_over_positions(&weights, xs)
}

multiversion! {
    /// `out ← Σ_l w[l] · rows[l·stride ..][..out.len()]`, accumulated in f64.
    fn weighted_rows(w: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
        let d = out.len();
        let mut acc = vec![0f64; d];
        for (pos, &wl) in w.iter().enumerate() {
            let row = &rows[pos * stride..][..d];
            for (a, &x) in acc.iter_mut().zip(row) {
                *a += wl as f64 * x as f64;
            }
        }
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = a as f32;
        }
    }
}

struct WeightedSum;

impl CustomOp2 for WeightedSum {
    fn name(&self) -> &'static str {
        "weighted-sum-over-positions"
    }

    fn cpu_fwd(
        &self,
        weights: &CpuStorage,
        w_layout: &Layout,
        values: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, l) = w_layout.shape().dims3()?;
        let (_, _, width) = v_layout.shape().dims3()?;
        let d = width / h;
        let (w, v) = (contiguous_f32(self.name(), weights, w_layout)?, contiguous_f32(self.name(), values, v_layout)?);
        let mut out = vec![0f32; b * width];
        out.par_chunks_mut(d).enumerate().for_each(|(task, out)| {
            let (p, head) = (task / h, task % h);
            let w = &w[(p * h + head) * l..][..l];
            weighted_rows(w, &v[p * l * width + head * d..], width, out);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, width))))
    }

    fn bwd(
        &self,
        weights: &Tensor,
        values: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Neither gradient sums over positions: dw sums over a head's D columns, dv is a product.
        let (b, h, l) = weights.dims3()?;
        let d = values.dim(2)? / h;
        let grad = grad.reshape((b, 1, h, d))?;
        let per_head = values.reshape((b, l, h, d))?;
        let d_weights = per_head.broadcast_mul(&grad)?.sum(3)?.transpose(1, 2)?;
        let d_values = weights.transpose(1, 2)?.unsqueeze(3)?.broadcast_mul(&grad)?.reshape((b, l, h * d))?;
        Ok((Some(d_weights), Some(d_values)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(rng: &mut crate::Rng, dims: &[usize]) -> Var {
        let v: Vec<f32> = (0..dims.iter().product()).map(|_| rng.normal() as f32).collect();
        Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn weighted_sum_matches_the_matmul_forward_and_backward() {
        let mut rng = crate::Rng::new(21);
        let (b, h, l, d) = (3, 4, 29, 5);
        let (w, v, r) = (random(&mut rng, &[b, h, l]), random(&mut rng, &[b, l, h * d]), random(&mut rng, &[b, h * d]));
        let ours = weighted_sum_over_positions(w.as_tensor(), v.as_tensor()).unwrap();
        let per_head = v.as_tensor().reshape((b, l, h, d)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
        let theirs = w.as_tensor().unsqueeze(2).unwrap().matmul(&per_head).unwrap().reshape((b, h * d)).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-5);
        let go = ours.mul(r.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let gt = theirs.mul(r.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(go.get(&w).unwrap(), gt.get(&w).unwrap()) < 1e-5);
        assert!(max_diff(go.get(&v).unwrap(), gt.get(&v).unwrap()) < 1e-5);
    }

    #[test]
    fn mismatched_shapes_are_an_error_naming_both() {
        let w = Tensor::zeros((2, 3, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let v = Tensor::zeros((2, 4, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = weighted_sum_over_positions(&w, &v).unwrap_err().to_string();
        assert!(err.contains("[2, 3, 5]") && err.contains("[2, 4, 6]"), "{err}");
    }

    /// 100,000 positions of 0.1 (not exact in binary): a running f32 sum is off by about 1e-3
    /// relative; the f64-accumulated one is the correctly rounded f32 of the exact sum.
    #[test]
    fn long_sums_do_not_drift() {
        let l = 100_000;
        let xs = Tensor::full(0.1f32, (1, l, 1), &Device::Cpu).unwrap();
        let ours = sum_over_positions(&xs, None).unwrap().to_vec2::<f32>().unwrap()[0][0];
        let exact = 0.1f32 as f64 * l as f64;
        assert_eq!(ours, exact as f32);
        let running = (0..l).fold(0f32, |acc, _| acc + 0.1);
        assert!(((running as f64 - exact) / exact).abs() > 1e-4, "the f32 reference drifts: {running}");
    }
}
