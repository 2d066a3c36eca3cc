//! Fused CPU kernels with backward: exact (erf) GELU, tanh, softmax over the last axis, and
//! LayerNorm.
//!
//! candle 0.11 computes `gelu_erf` per element through an f64 `erf` and `tanh` through libm, on
//! one thread; in ProteinBERT they run on every activation of every block (the attention values
//! alone are `B · L · 512` per block) and took about as long as all its matrix products. Here each
//! is one branch-free pass that the compiler vectorises (AVX2 when the CPU has it), split across
//! threads with rayon. Other devices and dtypes fall back to candle's own ops, so CUDA is unchanged.
//!
//! Accuracy (f32, tested against f64 references over ±12): GELU via the complementary error
//! function `Φ(x) = erfc(−x/√2)/2` with the Numerical Recipes Chebyshev fit (fractional error
//! < 1.2e-7) and a polynomial `exp` (relative error < 2e-7): |error| ≤ 4e-7 · max(1, |x|); tanh
//! |error| ≤ 3e-7. Exact enough that ProteinBERT still equals Keras to 2e-6 and the tanh
//! approximation of GELU (4e-4 off) stays far away.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::Result;

const CHUNK: usize = 1 << 14;

/// `exp(x)` in f32 by range reduction `x = n ln 2 + r`, |r| ≤ ln2/2, and a degree-6 polynomial;
/// branch-free (clamped) so loops over it vectorise.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest with the 1.5·2²³ trick: `round()` is a libm call without SSE4.1.
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    // ln 2 split in two so `x − n ln 2` keeps its low bits.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let scale = f32::from_bits((((n as i32) + 127) as u32) << 23);
    p * scale
}

/// `erfc(z)` (Numerical Recipes `erfcc`, fractional error < 1.2e-7 for all z).
#[inline(always)]
fn fast_erfc(z: f32) -> f32 {
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204 + t * (1.488_515_9 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ans = t * fast_exp(-a * a + poly);
    if z >= 0.0 {
        ans
    } else {
        2.0 - ans
    }
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * fast_erfc(-x * std::f32::consts::FRAC_1_SQRT_2)
}

/// d/dx GELU = Φ(x) + x φ(x).
#[inline(always)]
fn gelu_grad(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * fast_erfc(-x * std::f32::consts::FRAC_1_SQRT_2) + x * INV_SQRT_2PI * fast_exp(-0.5 * x * x)
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    let e = fast_exp(-2.0 * x.abs());
    let t = (1.0 - e) / (1.0 + e);
    if x < 0.0 {
        -t
    } else {
        t
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gelu,
    GeluGrad,
    Tanh,
}

#[inline(always)]
fn apply_slice(kind: Kind, input: &[f32], output: &mut [f32]) {
    match kind {
        Kind::Gelu => output.iter_mut().zip(input).for_each(|(o, &x)| *o = gelu(x)),
        Kind::GeluGrad => output.iter_mut().zip(input).for_each(|(o, &x)| *o = gelu_grad(x)),
        Kind::Tanh => output.iter_mut().zip(input).for_each(|(o, &x)| *o = tanh(x)),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_slice_avx2(kind: Kind, input: &[f32], output: &mut [f32]) {
    apply_slice(kind, input, output)
}

fn apply(kind: Kind, input: &[f32]) -> Vec<f32> {
    let mut output = vec![0f32; input.len()];
    #[cfg(target_arch = "x86_64")]
    let simd = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    output.par_chunks_mut(CHUNK).zip(input.par_chunks(CHUNK)).for_each(|(out, inp)| {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            return unsafe { apply_slice_avx2(kind, inp, out) };
        }
        apply_slice(kind, inp, out)
    });
    output
}

/// The f32 values of a contiguous CPU storage, or the error the op `name` reports.
fn contiguous_f32<'a>(name: &str, storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else { candle_core::bail!("{name}: f32 only") };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("{name}: contiguous inputs only") };
    Ok(&values[start..end])
}

struct Elementwise(Kind);

impl CustomOp1 for Elementwise {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Gelu => "fast-gelu-erf",
            Kind::GeluGrad => "fast-gelu-erf-grad",
            Kind::Tanh => "fast-tanh",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let values = contiguous_f32(self.name(), storage, layout)?;
        Ok((CpuStorage::F32(apply(self.0, values)), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match self.0 {
            Kind::Gelu => Ok(Some(grad_res.mul(&arg.apply_op1_no_bwd(&Elementwise(Kind::GeluGrad))?)?)),
            Kind::Tanh => Ok(Some(grad_res.mul(&res.sqr()?.affine(-1.0, 1.0)?)?)),
            Kind::GeluGrad => candle_core::bail!("no second derivative of GELU"),
        }
    }
}

fn use_kernel(xs: &Tensor) -> bool {
    matches!(xs.device(), Device::Cpu) && xs.dtype() == DType::F32
}

/// Exact (erf) GELU; the fused kernel on CPU f32, candle's `gelu_erf` elsewhere.
pub fn gelu_erf(xs: &Tensor) -> Result<Tensor> {
    if use_kernel(xs) {
        Ok(xs.contiguous()?.apply_op1(Elementwise(Kind::Gelu))?)
    } else {
        Ok(xs.gelu_erf()?)
    }
}

/// tanh; the fused kernel on CPU f32, candle's `tanh` elsewhere.
pub fn tanh_act(xs: &Tensor) -> Result<Tensor> {
    if use_kernel(xs) {
        Ok(xs.contiguous()?.apply_op1(Elementwise(Kind::Tanh))?)
    } else {
        Ok(xs.tanh()?)
    }
}

/// `out[r] = Σ_i rows[r + i·d] · taps[i]` for r < n: a dilated 1-D convolution over rows that
/// already hold the zero padding, each tap one GEMM accumulating into the output in place (no
/// per-tap temporaries, no adds). `rows (N, C_in)`, `taps (k, C_in, C_out)`, out `(n, C_out)` with
/// `n = N − (k−1)·d`.
struct ConvTaps {
    dilation: usize,
}

/// A strided matrix operand for [`gemm_strided`]: element (i, j) at `ptr + i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
struct Strided<T> {
    ptr: T,
    row_stride: isize,
    col_stride: isize,
}

/// `C (m × n) = [accumulate ? C : 0] + A (m × k) · B (k × n)` with arbitrary strides (rows of A may
/// overlap, which is how a convolution reads its input windows without an im2col copy).
///
/// # Safety
/// Every element the strides address must be valid; C must not overlap itself or A, B.
unsafe fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    c: Strided<*mut f32>,
    a: Strided<*const f32>,
    b: Strided<*const f32>,
    accumulate: bool,
) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // gemm computes dst = alpha·dst + beta·lhs·rhs; its strides are (column, row).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.ptr,
            c.col_stride,
            c.row_stride,
            accumulate,
            a.ptr,
            a.col_stride,
            a.row_stride,
            b.ptr,
            b.col_stride,
            b.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// `C (m × n) = [accumulate ? C : 0] + A (m × k) · B (k × n)`, all row-major and contiguous.
///
/// # Safety
/// The pointers must be valid for the given sizes.
unsafe fn gemm_rowmajor(m: usize, n: usize, k: usize, c: *mut f32, a: *const f32, b: *const f32, accumulate: bool) {
    fn row<T>(ptr: T, cols: usize) -> Strided<T> {
        Strided { ptr, row_stride: cols as isize, col_stride: 1 }
    }
    unsafe { gemm_strided(m, n, k, row(c, n), row(a, k), row(b, n), accumulate) }
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
        out.par_chunks_mut(rows_per_task * c).zip(x.par_chunks(rows_per_task * c)).for_each(|(out, x)| {
            for (o, row) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (o, &v) in o.iter_mut().zip(row) {
                    *o = fast_exp(v - max);
                    sum += *o;
                }
                let inv = 1.0 / sum;
                o.iter_mut().for_each(|v| *v *= inv);
            }
        });
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
        out.par_chunks_mut(rows_per_task * c).zip(x.par_chunks(rows_per_task * c)).for_each(|(out, x)| {
            for (o, row) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                let mean = row.iter().sum::<f32>() / c as f32;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c as f32;
                let rstd = 1.0 / (var + self.eps).sqrt();
                for (((o, &v), &g), &b) in o.iter_mut().zip(row).zip(gamma).zip(beta) {
                    *o = (v - mean) * rstd * g + b;
                }
            }
        });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        use candle_core::D;
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let rstd = (centred.sqr()?.mean_keepdim(D::Minus1)? + self.eps as f64)?.sqrt()?.recip()?;
        let normed = centred.broadcast_mul(&rstd)?;
        let rows = grad.elem_count() / gamma.elem_count();
        let flat = |t: &Tensor| t.reshape((rows, gamma.elem_count()));
        let d_beta = flat(grad)?.sum(0)?;
        let d_gamma = flat(&(grad * &normed)?)?.sum(0)?;
        let g = grad.broadcast_mul(gamma)?;
        let inner = (g.broadcast_sub(&g.mean_keepdim(D::Minus1)?)?
            - normed.broadcast_mul(&(&g * &normed)?.mean_keepdim(D::Minus1)?)?)?;
        Ok((Some(inner.broadcast_mul(&rstd)?), Some(d_gamma), Some(d_beta)))
    }
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
    use candle_core::Var;

    /// candle's f64 erf (a port of Boost's) as the reference.
    fn erf64(x: f64) -> f64 {
        Tensor::new(&[x], &Device::Cpu).unwrap().erf().unwrap().to_vec1::<f64>().unwrap()[0]
    }

    #[test]
    fn kernels_match_f64_references() {
        let xs: Vec<f32> = (-2400..=2400).map(|i| i as f32 * 0.005).collect();
        let t = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
        let gelu = gelu_erf(&t).unwrap().to_vec1::<f32>().unwrap();
        let tanh = tanh_act(&t).unwrap().to_vec1::<f32>().unwrap();
        let (mut worst_gelu, mut worst_tanh, mut worst_grad) = (0f64, 0f64, 0f64);
        for (i, &x) in xs.iter().enumerate() {
            let x64 = x as f64;
            let want = 0.5 * x64 * (1.0 + erf64(x64 / std::f64::consts::SQRT_2));
            worst_gelu = worst_gelu.max((gelu[i] as f64 - want).abs() / x64.abs().max(1.0));
            worst_tanh = worst_tanh.max((tanh[i] as f64 - x64.tanh()).abs());
            let phi = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let grad = 0.5 * (1.0 + erf64(x64 / std::f64::consts::SQRT_2)) + x64 * phi;
            worst_grad = worst_grad.max((gelu_grad(x) as f64 - grad).abs());
        }
        eprintln!(
            "fast GELU {worst_gelu:.2e} (relative to max(1, |x|)), tanh {worst_tanh:.2e}, GELU' {worst_grad:.2e}"
        );
        assert!(worst_gelu < 4e-7, "{worst_gelu}");
        assert!(worst_tanh < 3e-7, "{worst_tanh}");
        assert!(worst_grad < 1e-6, "{worst_grad}");
        // Extremes stay finite and saturate.
        let big = Tensor::new(&[-1e4f32, -100.0, 100.0, 1e4, 0.0], &Device::Cpu).unwrap();
        let g = gelu_erf(&big).unwrap().to_vec1::<f32>().unwrap();
        assert!(g[0].abs() < 1e-30 && g[1].abs() < 1e-30 && g[2..] == [100.0, 1e4, 0.0], "{g:?}");
        assert_eq!(tanh_act(&big).unwrap().to_vec1::<f32>().unwrap(), vec![-1.0, -1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn fused_layer_norm_matches_the_composite_forward_and_backward() {
        use crate::models::layers::LayerNorm;
        let mut rng = crate::Rng::new(3);
        let mut t = |dims: &[usize], scale: f32| {
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|_| scale * rng.normal() as f32).collect();
            Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
        };
        let (x, g, b) = (t(&[3, 5, 16], 3.0), t(&[16], 1.0), t(&[16], 1.0));
        let r = t(&[3, 5, 16], 1.0);
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

    #[test]
    fn gradients_match_candle_ops() {
        let x =
            Var::from_tensor(&Tensor::new(&[[-3.0f32, -0.5, 0.0], [0.7, 2.0, 5.0]], &Device::Cpu).unwrap()).unwrap();
        let ours = gelu_erf(x.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let theirs = x.as_tensor().gelu_erf().unwrap().sum_all().unwrap().backward().unwrap();
        let d = (ours.get(&x).unwrap() - theirs.get(&x).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        let ours = tanh_act(x.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let theirs = x.as_tensor().tanh().unwrap().sum_all().unwrap().backward().unwrap();
        let d = (ours.get(&x).unwrap() - theirs.get(&x).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
