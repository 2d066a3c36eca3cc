//! Dilated 1-D convolution as in-place GEMMs over overlapping windows of its input rows, and
//! its two gradients.

use candle_core::{CpuStorage, DType, Layout, Shape, Tensor};

use super::{contiguous_f32, gemm_rowmajor, gemm_strided, use_kernel, Strided};
use crate::Result;

/// `out[r] = Σ_i rows[r + i·d] · taps[i]` for r < n: a dilated 1-D convolution over rows that
/// already hold the zero padding, each tap one GEMM accumulating into the output in place (no
/// per-tap temporaries, no adds). `rows (N, C_in)`, `taps (k, C_in, C_out)`, out `(n, C_out)` with
/// `n = N − (k−1)·d`.
struct ConvTaps {
    dilation: usize,
}

/// The rows `s, s + d, s + 2d, …` of `rows (total, width)`: one phase of a dilated convolution,
/// which is an undilated one on it.
fn phase_rows(rows: &[f32], width: usize, total: usize, s: usize, d: usize) -> Vec<f32> {
    (s..total).step_by(d).flat_map(|r| rows[r * width..(r + 1) * width].iter().copied()).collect()
}

/// Calls `f(s, n_s, phase)` for each phase `s` of a dilated convolution with `n` outputs over
/// `rows (total, width)`: `phase` holds the rows `s, s + d, …` (the rows themselves when d = 1) and
/// `n_s` is the number of outputs `r ≡ s (mod d)`.
fn for_each_phase(
    rows: &[f32],
    width: usize,
    total: usize,
    n: usize,
    d: usize,
    mut f: impl FnMut(usize, usize, &[f32]),
) {
    for s in 0..d.min(n) {
        let n_s = phase_len(n, s, d);
        if d == 1 {
            f(s, n_s, rows);
        } else {
            f(s, n_s, &phase_rows(rows, width, total, s, d));
        }
    }
}

/// Number of output rows `r < n` with `r ≡ s (mod d)`.
fn phase_len(n: usize, s: usize, d: usize) -> usize {
    if n > s {
        (n - s).div_ceil(d)
    } else {
        0
    }
}

impl ConvTaps {
    fn shapes(&self, rows: &Layout, taps: &Layout) -> candle_core::Result<(usize, usize, usize, usize, usize)> {
        let (total, c_in) = rows.shape().dims2()?;
        let (k, c_in2, c_out) = taps.shape().dims3()?;
        let span = (k - 1) * self.dilation;
        if c_in != c_in2 || total < span {
            candle_core::bail!("conv-taps: rows {:?} and taps {:?} do not fit", rows.shape(), taps.shape());
        }
        Ok((total, c_in, k, c_out, total - span))
    }
}

impl candle_core::CustomOp2 for ConvTaps {
    fn name(&self) -> &'static str {
        "conv-taps"
    }

    fn cpu_fwd(
        &self,
        rows: &CpuStorage,
        rows_layout: &Layout,
        taps: &CpuStorage,
        taps_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let rows = contiguous_f32(self.name(), rows, rows_layout)?;
        let taps = contiguous_f32(self.name(), taps, taps_layout)?;
        let (total, c_in, k, c_out, n) = self.shapes(rows_layout, taps_layout)?;
        let d = self.dilation;
        let mut out = vec![0f32; n * c_out];
        // Within one phase (rows s, s+d, …) the convolution is undilated, and its windows are
        // overlapping rows of the phase: a (n_s × k·C_in) matrix with row stride C_in, which the
        // GEMM reads in place — one large product per phase, no column matrix.
        for_each_phase(rows, c_in, total, n, d, |s, n_s, a| {
            debug_assert!(a.len() >= (n_s + k - 1) * c_in);
            // SAFETY: window q reads a[q·C_in .. (q + k)·C_in] with q + k ≤ n_s + k − 1 rows of `a`;
            // output row q of this phase is out row s + q·d < n.
            unsafe {
                gemm_strided(
                    n_s,
                    c_out,
                    k * c_in,
                    Strided { ptr: out.as_mut_ptr().add(s * c_out), row_stride: (d * c_out) as isize, col_stride: 1 },
                    Strided { ptr: a.as_ptr(), row_stride: c_in as isize, col_stride: 1 },
                    Strided { ptr: taps.as_ptr(), row_stride: c_out as isize, col_stride: 1 },
                    false,
                )
            };
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c_out))))
    }

    fn bwd(
        &self,
        rows: &Tensor,
        taps: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (total, _) = rows.dims2()?;
        let (k, _, _) = taps.dims3()?;
        let n = grad.dim(0)?;
        let grad = grad.contiguous()?;
        // d rows[r + i·d] += grad[r] · taps[i]ᵀ, accumulated in place by the transposed op.
        let taps_t = taps.transpose(1, 2)?.contiguous()?; // (k, C_out, C_in)
        let d_rows = grad.apply_op2_no_bwd(&taps_t, &ConvTapsTranspose { dilation: self.dilation, total })?;
        // d taps = Σ over phases of windowsᵀ · grad, the windows again read in place.
        let d_taps = rows.contiguous()?.apply_op2_no_bwd(&grad, &ConvTapsWeightGrad { dilation: self.dilation, k })?;
        let _ = n;
        Ok((Some(d_rows), Some(d_taps)))
    }
}

/// The tap gradient of [`ConvTaps`]: `d_taps (k·C_in × C_out) = Σ_s windows_sᵀ · grad_s`.
struct ConvTapsWeightGrad {
    dilation: usize,
    k: usize,
}

impl candle_core::CustomOp2 for ConvTapsWeightGrad {
    fn name(&self) -> &'static str {
        "conv-taps-weight-grad"
    }

    fn cpu_fwd(
        &self,
        rows: &CpuStorage,
        rows_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let rows = contiguous_f32(self.name(), rows, rows_layout)?;
        let grad = contiguous_f32(self.name(), grad, grad_layout)?;
        let (total, c_in) = rows_layout.shape().dims2()?;
        let (n, c_out) = grad_layout.shape().dims2()?;
        let (d, k) = (self.dilation, self.k);
        if n + (k - 1) * d != total {
            candle_core::bail!("conv-taps-weight-grad: {n} outputs do not fit {total} rows");
        }
        let mut out = vec![0f32; k * c_in * c_out];
        let mut first = true;
        for_each_phase(rows, c_in, total, n, d, |s, n_s, a| {
            // windowsᵀ: element (j, q) = a[q·C_in + j], j < k·C_in, q < n_s.
            // SAFETY: as in the forward pass; `grad` rows s + q·d < n.
            unsafe {
                gemm_strided(
                    k * c_in,
                    c_out,
                    n_s,
                    Strided { ptr: out.as_mut_ptr(), row_stride: c_out as isize, col_stride: 1 },
                    Strided { ptr: a.as_ptr(), row_stride: 1, col_stride: c_in as isize },
                    Strided { ptr: grad.as_ptr().add(s * c_out), row_stride: (d * c_out) as isize, col_stride: 1 },
                    !first,
                )
            };
            first = false;
        });
        Ok((CpuStorage::F32(out), Shape::from((k, c_in, c_out))))
    }
}

/// The input gradient of [`ConvTaps`]: `d_rows[r + i·d] += grad[r] · taps_t[i]` into `(total, C_in)`.
struct ConvTapsTranspose {
    dilation: usize,
    total: usize,
}

impl candle_core::CustomOp2 for ConvTapsTranspose {
    fn name(&self) -> &'static str {
        "conv-taps-transpose"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_layout: &Layout,
        taps_t: &CpuStorage,
        taps_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let grad = contiguous_f32(self.name(), grad, grad_layout)?;
        let taps_t = contiguous_f32(self.name(), taps_t, taps_layout)?;
        let (n, c_out) = grad_layout.shape().dims2()?;
        let (k, _, c_in) = taps_layout.shape().dims3()?;
        if n + (k - 1) * self.dilation != self.total {
            candle_core::bail!("conv-taps-transpose: {n} outputs do not fit {} rows", self.total);
        }
        let mut out = vec![0f32; self.total * c_in];
        for i in 0..k {
            let b = &taps_t[i * c_out * c_in..(i + 1) * c_out * c_in];
            let c = &mut out[i * self.dilation * c_in..];
            // SAFETY: `c` holds at least n·C_in values (i·d + n ≤ total), `grad` n·C_out, `b` C_out·C_in.
            unsafe { gemm_rowmajor(n, c_in, c_out, c.as_mut_ptr(), grad.as_ptr(), b.as_ptr(), true) };
        }
        Ok((CpuStorage::F32(out), Shape::from((self.total, c_in))))
    }
}

/// The convolution sum of `ConvTaps` on CPU f32; `None` where the kernel does not apply (the
/// caller then uses candle ops).
pub fn conv_taps(rows: &Tensor, taps: &Tensor, dilation: usize) -> Result<Option<Tensor>> {
    if !(use_kernel(rows) && taps.dtype() == DType::F32) {
        return Ok(None);
    }
    Ok(Some(rows.contiguous()?.apply_op2(&taps.contiguous()?, ConvTaps { dilation })?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The in-place GEMM convolution against the same sum from candle ops, forward and both
    /// gradients, for dilations 1 and 5.
    #[test]
    fn conv_taps_matches_candle_ops_forward_and_backward() {
        let mut rng = crate::Rng::new(6);
        for dilation in [1usize, 5] {
            let (total, c_in, k, c_out) = (97, 6, 9, 5);
            let mut t = |dims: &[usize]| {
                let v: Vec<f32> = (0..dims.iter().product()).map(|_| rng.normal() as f32).collect();
                Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
            };
            let (rows, taps) = (t(&[total, c_in]), t(&[k, c_in, c_out]));
            let n = total - (k - 1) * dilation;
            let r = t(&[n, c_out]);
            let ours = conv_taps(rows.as_tensor(), taps.as_tensor(), dilation).unwrap().unwrap();
            let mut theirs: Option<Tensor> = None;
            for i in 0..k {
                let term = rows
                    .as_tensor()
                    .narrow(0, i * dilation, n)
                    .unwrap()
                    .matmul(&taps.as_tensor().get(i).unwrap())
                    .unwrap();
                theirs = Some(match theirs {
                    None => term,
                    Some(a) => (a + term).unwrap(),
                });
            }
            let theirs = theirs.unwrap();
            let diff =
                |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff(&ours, &theirs) < 1e-4, "forward, d = {dilation}");
            let go = ours.mul(r.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let gt = theirs.mul(r.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(diff(go.get(&rows).unwrap(), gt.get(&rows).unwrap()) < 1e-4, "input gradient, d = {dilation}");
            assert!(diff(go.get(&taps).unwrap(), gt.get(&taps).unwrap()) < 1e-4, "tap gradient, d = {dilation}");
        }
    }
}
