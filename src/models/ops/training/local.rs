//! The local track: [`conv_sum_norm`] and [`dense_residual_norm`].

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{add_partials, cpu, held, Kept, ROWS_PER_TASK};
use crate::models::ops::elementwise::gelu_with_grad;
use crate::models::ops::inference::{convolve_phases, gemm_output, PhaseLayout};
use crate::models::ops::linear::dense_rows;
use crate::models::ops::norm::{layer_norm_backward, layer_norm_in_place};
use crate::models::ops::{contiguous_f32, gemm_strided, use_kernel, Strided};
use crate::{Error, Result};

multiversion! {
    /// `sum ← x + gelu(pre)`, `out ← LN(sum)` for a block of rows; `pre ← gelu'(pre)` in place.
    fn residual_norm_rows(x: &[f32], pre: &mut [f32], norm: (&[f32], &[f32], f32), sum: &mut [f32], out: &mut [f32]) {
        let (gamma, beta, eps) = norm;
        let c = gamma.len();
        let rows = sum.chunks_exact_mut(c).zip(out.chunks_exact_mut(c)).zip(x.chunks_exact(c));
        for (((s, o), x), pre) in rows.zip(pre.chunks_exact_mut(c)) {
            for ((s, &x), a) in s.iter_mut().zip(x).zip(pre.iter_mut()) {
                let (value, slope) = gelu_with_grad(*a);
                *s = x + value;
                *a = slope;
            }
            o.copy_from_slice(s);
            layer_norm_in_place(o, gamma, beta, eps);
        }
    }
}

multiversion! {
    /// `slope ← d_sum ⊙ slope` in place for a block of rows, adding its column sums into `acc`.
    fn slope_backward_rows(d_sum: &[f32], slope: &mut [f32], acc: &mut [f64]) {
        let c = acc.len();
        for (d, a) in d_sum.chunks_exact(c).zip(slope.chunks_exact_mut(c)) {
            for ((a, &d), s) in a.iter_mut().zip(d).zip(acc.iter_mut()) {
                *a *= d;
                *s += *a as f64;
            }
        }
    }
}

/// `LN(x + gelu(x · Wᵀ + b))` with `x (N, C)`, `W (C, C)` stored `(out, in)`, and
/// `[b, γ, β]` as one `(3·C)` tensor.
struct DenseResidualNorm {
    eps: f32,
    saved: Kept<DenseSaved>,
}

struct DenseSaved {
    /// `gelu'(x · Wᵀ + b)`
    slope: Vec<f32>,
    /// `x + gelu(pre)`, the LayerNorm's input
    sum: Vec<f32>,
}

impl CustomOp3 for DenseResidualNorm {
    fn name(&self) -> &'static str {
        "dense-residual-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
        packed: &CpuStorage,
        packed_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w, packed) = (
            contiguous_f32(self.name(), x, x_layout)?,
            contiguous_f32(self.name(), w, w_layout)?,
            contiguous_f32(self.name(), packed, packed_layout)?,
        );
        let c = packed.len() / 3;
        if c == 0 || packed.len() != 3 * c || w.len() != c * c || x.len() % c != 0 {
            candle_core::bail!(
                "{}: x {:?}, W {:?}, [b, γ, β] {:?} do not fit",
                self.name(),
                x_layout.shape(),
                w_layout.shape(),
                packed_layout.shape()
            )
        }
        let n = x.len() / c;
        let (bias, gamma, beta) = (&packed[..c], &packed[c..2 * c], &packed[2 * c..]);
        let mut pre = dense_rows(x, w, bias, (n, c, c));
        let mut sum = vec![0f32; n * c];
        let mut out = vec![0f32; n * c];
        let block = ROWS_PER_TASK * c;
        sum.par_chunks_mut(block)
            .zip(out.par_chunks_mut(block))
            .zip(x.par_chunks(block).zip(pre.par_chunks_mut(block)))
            .for_each(|((sum, out), (x, pre))| residual_norm_rows(x, pre, (gamma, beta, self.eps), sum, out));
        self.saved.keep(self.name(), DenseSaved { slope: pre, sum })?;
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        packed: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let DenseSaved { mut slope, sum } = self.saved.take(name)?;
        let (x, w, packed, grad) = (held(name, x)?, held(name, w)?, held(name, packed)?, held(name, grad)?);
        let c = packed.len() / 3;
        let n = x.len() / c;
        let gamma = &packed[c..2 * c];
        let mut d_sum = vec![0f32; n * c];
        let d_norm = layer_norm_backward(&sum, &grad, gamma, self.eps, &mut d_sum);
        drop(sum);
        // d pre = d_sum ⊙ gelu'(pre), in place; d b = its column sums.
        let block = ROWS_PER_TASK * c;
        let partials = d_sum
            .par_chunks(block)
            .zip(slope.par_chunks_mut(block))
            .map(|(d, a)| {
                let mut acc = vec![0f64; c];
                slope_backward_rows(d, a, &mut acc);
                acc
            })
            .collect();
        let d_bias = add_partials(partials, c);
        let d_pre = slope;
        // d W (out, in) = d_preᵀ · x.
        // SAFETY: d_pre and x are N × C row-major; the output C × C.
        let d_w = gemm_output(c, c, |out| unsafe {
            gemm_strided(
                c,
                c,
                n,
                Strided::rows(out, c),
                Strided::transposed(d_pre.as_ptr(), c),
                Strided::rows(x.as_ptr(), c),
                false,
            )
        });
        // d x = d_sum (the residual) + d_pre · W.
        let mut d_x = d_sum;
        // SAFETY: d_x and d_pre are N × C, W C × C, row-major.
        unsafe {
            gemm_strided(
                n,
                c,
                c,
                Strided::rows(d_x.as_mut_ptr(), c),
                Strided::rows(d_pre.as_ptr(), c),
                Strided::rows(w.as_ptr(), c),
                true,
            )
        };
        let d_packed: Vec<f32> = d_bias.iter().chain(&d_norm).map(|&v| v as f32).collect();
        Ok((Some(cpu(d_x, res.shape().clone())?), Some(cpu(d_w, (c, c))?), Some(cpu(d_packed, 3 * c)?)))
    }
}

/// `LN(x + gelu(x · Wᵀ + b))` over the last axis of `x (…, C)`, `weight (C, C)` stored `(out, in)`,
/// with its own backward on CPU f32; `None` where it does not apply (the caller uses candle ops).
pub fn dense_residual_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    norm: (&Tensor, &Tensor, f64),
) -> Result<Option<Tensor>> {
    let (gamma, beta, eps) = norm;
    if ![x, weight, bias, gamma, beta].iter().all(|t| use_kernel(t)) || x.elem_count() == 0 {
        return Ok(None);
    }
    let packed = Tensor::cat(&[bias, gamma, beta], 0)?;
    let op = DenseResidualNorm { eps: eps as f32, saved: Kept::new() };
    Ok(Some(x.contiguous()?.apply_op3(&weight.contiguous()?, &packed, op)?))
}

/// The shape of [`conv_sum_norm`]'s convolutions and LayerNorm.
#[derive(Debug, Clone, Copy)]
pub struct ConvTrack {
    pub kernel_size: usize,
    pub narrow_dilation: usize,
    pub wide_dilation: usize,
    pub eps: f64,
}

/// `LN1(x + g + gelu(narrow + b_n) + gelu(wide + b_w))` with `x (B, L, C)`, `g (B, C)`, and the
/// weights as one flat tensor: narrow taps `(k, C, C)`, `b_n`, wide taps, `b_w`, γ, β.
struct ConvSumNorm {
    track: ConvTrack,
    /// `(B·L)` 1/0 per position; padded positions are zeroed before the convolutions.
    mask: Option<Vec<f32>>,
    saved: Kept<ConvSumSaved>,
}

/// What one convolution's backward needs: where its output rows lie, its padded phase-major
/// input, and `gelu'(conv + b)` per position, `(B·L, C)`.
struct ConvSaved {
    layout: PhaseLayout,
    padded: Vec<f32>,
    slope: Vec<f32>,
}

struct ConvSumSaved {
    narrow: ConvSaved,
    wide: ConvSaved,
    /// The LayerNorm's input.
    sum: Vec<f32>,
}

/// The parts of the flat weight tensor.
struct ConvParts<'a> {
    narrow_taps: &'a [f32],
    narrow_bias: &'a [f32],
    wide_taps: &'a [f32],
    wide_bias: &'a [f32],
    gamma: &'a [f32],
}

impl ConvSumNorm {
    fn parts<'a>(&self, packed: &'a [f32], c: usize) -> candle_core::Result<ConvParts<'a>> {
        let taps = self.track.kernel_size * c * c;
        if packed.len() != 2 * taps + 4 * c {
            candle_core::bail!(
                "conv-sum-norm: {} weights do not fit {c} channels and k = {}",
                packed.len(),
                self.track.kernel_size
            )
        }
        let (narrow_taps, rest) = packed.split_at(taps);
        let (narrow_bias, rest) = rest.split_at(c);
        let (wide_taps, rest) = rest.split_at(taps);
        let (wide_bias, rest) = rest.split_at(c);
        Ok(ConvParts { narrow_taps, narrow_bias, wide_taps, wide_bias, gamma: &rest[..c] })
    }
}

multiversion! {
    /// `sum ← ((x + g) + gelu(narrow + b_n)) + gelu(wide + b_w)` (the separate ops' order) and
    /// `out ← LN(sum)` for one row, keeping the two GELUs' slopes.
    #[allow(clippy::too_many_arguments)]
    fn conv_sum_norm_row(
        x: &[f32],
        g: &[f32],
        narrow: (&[f32], &[f32]),
        wide: (&[f32], &[f32]),
        norm: (&[f32], &[f32], f32),
        slopes: (&mut [f32], &mut [f32]),
        sum: &mut [f32],
        out: &mut [f32],
    ) {
        let ((narrow, narrow_bias), (wide, wide_bias), (gamma, beta, eps)) = (narrow, wide, norm);
        let (narrow_slope, wide_slope) = slopes;
        let c = out.len();
        let terms = x[..c]
            .iter()
            .zip(&g[..c])
            .zip(narrow[..c].iter().zip(&narrow_bias[..c]))
            .zip(wide[..c].iter().zip(&wide_bias[..c]));
        let slopes = narrow_slope[..c].iter_mut().zip(wide_slope[..c].iter_mut());
        for ((s, (ns, ws)), (((&x, &g), (&n, &nb)), (&w, &wb))) in sum.iter_mut().zip(slopes).zip(terms) {
            let (narrow, wide) = (gelu_with_grad(n + nb), gelu_with_grad(w + wb));
            *s = ((x + g) + narrow.0) + wide.0;
            (*ns, *ws) = (narrow.1, wide.1);
        }
        out.copy_from_slice(&sum[..c]);
        layer_norm_in_place(out, gamma, beta, eps);
    }
}

multiversion! {
    /// One protein's rows of a convolution's output gradient, `d_sum ⊙ gelu'(conv + b)`, into
    /// its phase-major rows `d_rows` (the rows no position maps to stay 0), adding the bias
    /// gradient into `acc`.
    fn conv_output_grad(
        d_sum: &[f32],
        slope: &[f32],
        layout: PhaseLayout,
        protein: usize,
        d_rows: &mut [f32],
        acc: &mut [f64],
    ) {
        let c = acc.len();
        let first = protein * layout.dilation * layout.phase_len;
        for (p, (d, slope)) in d_sum.chunks_exact(c).zip(slope.chunks_exact(c)).enumerate() {
            let r = layout.row_index(protein, p);
            let out = &mut d_rows[(r - first) * c..][..c];
            for (((o, &d), &a), s) in out.iter_mut().zip(d).zip(slope).zip(acc.iter_mut()) {
                *o = d * a;
                *s += *o as f64;
            }
        }
    }
}

/// One convolution's backward: from `d_sum (B·L, C)` (the gradient of its GELU's output), the
/// tap gradient `(k·C, C)`, the bias gradient, and the gradient of its padded phase-major input.
fn conv_backward(
    d_sum: &[f32],
    ConvSaved { layout, padded, slope }: &ConvSaved,
    taps: &[f32],
    (b, l, c, k): (usize, usize, usize, usize),
) -> (Vec<f32>, Vec<f64>, Vec<f32>) {
    let per_protein = layout.dilation * layout.phase_len;
    let mut d_rows = vec![0f32; b * per_protein * c];
    let partials = d_rows
        .par_chunks_mut(per_protein * c)
        .zip(d_sum.par_chunks(l * c).zip(slope.par_chunks(l * c)))
        .enumerate()
        .map(|(protein, (d_rows, (d_sum, slope)))| {
            let mut acc = vec![0f64; c];
            conv_output_grad(d_sum, slope, *layout, protein, d_rows, &mut acc);
            acc
        })
        .collect();
    let d_bias = add_partials(partials, c);
    // Every window of the phase-major rows: the last k − 1 rows start none.
    let n = b * per_protein - (k - 1);
    // d taps (k·C_in × C_out) = windowsᵀ · d_rows; window q is padded rows q .. q + k − 1.
    // SAFETY: windowsᵀ (j, q) = padded[q·C + j] with j < k·C, q < n: rows < n + k − 1 ≤ the rows of
    // `padded`; d_rows has at least n rows of C.
    let d_taps = gemm_output(k * c, c, |out| unsafe {
        gemm_strided(
            k * c,
            c,
            n,
            Strided::rows(out, c),
            Strided::transposed(padded.as_ptr(), c),
            Strided::rows(d_rows.as_ptr(), c),
            false,
        )
    });
    // d padded[q + i] += d_rows[q] · taps[i]ᵀ, one GEMM per tap accumulating in place.
    let mut d_padded = vec![0f32; padded.len()];
    for i in 0..k {
        // SAFETY: rows i .. i + n of d_padded exist (n + k − 1 ≤ its rows); taps[i] is C × C.
        unsafe {
            gemm_strided(
                n,
                c,
                c,
                Strided::rows(d_padded.as_mut_ptr().add(i * c), c),
                Strided::rows(d_rows.as_ptr(), c),
                Strided::transposed(taps.as_ptr().add(i * c * c), c),
                true,
            )
        };
    }
    (d_taps, d_bias, d_padded)
}

impl CustomOp3 for ConvSumNorm {
    fn name(&self) -> &'static str {
        "conv-sum-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        g: &CpuStorage,
        g_layout: &Layout,
        packed: &CpuStorage,
        packed_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, g, packed) = (
            contiguous_f32(self.name(), x, x_layout)?,
            contiguous_f32(self.name(), g, g_layout)?,
            contiguous_f32(self.name(), packed, packed_layout)?,
        );
        let (b, l, c) = x_layout.shape().dims3()?;
        if g.len() != b * c || self.mask.as_ref().is_some_and(|m| m.len() != b * l) {
            candle_core::bail!(
                "{}: x {:?}, g {:?} and the mask do not fit",
                self.name(),
                x_layout.shape(),
                g_layout.shape()
            )
        }
        let w = self.parts(packed, c)?;
        let beta = &packed[packed.len() - c..];
        let k = self.track.kernel_size;
        let mask = self.mask.as_deref();
        let convolve = |taps, d| {
            convolve_phases(x, mask, (b, l, c), taps, (k, c, c), d).map_err(|e| candle_core::Error::Msg(e.to_string()))
        };
        let narrow = convolve(w.narrow_taps, self.track.narrow_dilation)?;
        let wide = convolve(w.wide_taps, self.track.wide_dilation)?;
        let n = b * l * c;
        let (mut sum, mut out) = (vec![0f32; n], vec![0f32; n]);
        let (mut narrow_slope, mut wide_slope) = (vec![0f32; n], vec![0f32; n]);
        let eps = self.track.eps as f32;
        let block = ROWS_PER_TASK * c;
        sum.par_chunks_mut(block)
            .zip(out.par_chunks_mut(block))
            .zip(narrow_slope.par_chunks_mut(block).zip(wide_slope.par_chunks_mut(block)))
            .enumerate()
            .for_each(|(task, ((sum, out), (narrow_slope, wide_slope)))| {
                let rows = sum.chunks_exact_mut(c).zip(out.chunks_exact_mut(c));
                let slopes = narrow_slope.chunks_exact_mut(c).zip(wide_slope.chunks_exact_mut(c));
                for (i, ((s, o), slopes)) in rows.zip(slopes).enumerate() {
                    let row = task * ROWS_PER_TASK + i;
                    let (protein, p) = (row / l, row % l);
                    conv_sum_norm_row(
                        &x[row * c..][..c],
                        &g[protein * c..][..c],
                        (narrow.0.row(protein, p, c), w.narrow_bias),
                        (wide.0.row(protein, p, c), w.wide_bias),
                        (w.gamma, beta, eps),
                        slopes,
                        s,
                        o,
                    );
                }
            });
        // The convolutions' outputs are spent: their slopes replace them.
        let narrow = ConvSaved { layout: narrow.0.layout, padded: narrow.1, slope: narrow_slope };
        let wide = ConvSaved { layout: wide.0.layout, padded: wide.1, slope: wide_slope };
        self.saved.keep(self.name(), ConvSumSaved { narrow, wide, sum })?;
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _g: &Tensor,
        packed: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let ConvSumSaved { narrow, wide, sum } = self.saved.take(name)?;
        let (b, l, c) = x.dims3()?;
        let (packed, grad) = (held(name, packed)?, held(name, grad)?);
        let w = self.parts(&packed, c)?;
        let k = self.track.kernel_size;
        let mut d_sum = vec![0f32; b * l * c];
        let d_norm = layer_norm_backward(&sum, &grad, w.gamma, self.track.eps as f32, &mut d_sum);
        drop(sum);
        let (d_narrow_taps, d_narrow_bias, d_narrow_in) = conv_backward(&d_sum, &narrow, w.narrow_taps, (b, l, c, k));
        drop(narrow);
        let (d_wide_taps, d_wide_bias, d_wide_in) = conv_backward(&d_sum, &wide, w.wide_taps, (b, l, c, k));
        drop(wide);
        // d x = d_sum (the residual) + mask ⊙ (each convolution's input gradient at x's position);
        // d g = Σ over positions of d_sum, in f64.
        let padded_row = |d: usize, protein: usize, p: usize| {
            let span = d * (k - 1);
            let phase_len = (l + span).div_ceil(d);
            let q = p + span / 2;
            protein * d * phase_len + (q % d) * phase_len + q / d
        };
        let (dn, dw) = (self.track.narrow_dilation, self.track.wide_dilation);
        let mask = self.mask.as_deref();
        let mut d_x = d_sum;
        let d_g: Vec<f32> = d_x
            .par_chunks_mut(l * c)
            .enumerate()
            .flat_map_iter(|(protein, d_x)| {
                let mut acc = vec![0f64; c];
                for (p, row) in d_x.chunks_exact_mut(c).enumerate() {
                    for (a, &v) in acc.iter_mut().zip(row.iter()) {
                        *a += v as f64;
                    }
                    let keep = mask.map_or(1.0, |m| m[protein * l + p]);
                    let narrow = &d_narrow_in[padded_row(dn, protein, p) * c..][..c];
                    let wide = &d_wide_in[padded_row(dw, protein, p) * c..][..c];
                    for ((o, &n), &w) in row.iter_mut().zip(narrow).zip(wide) {
                        *o += keep * (n + w);
                    }
                }
                acc.into_iter().map(|v| v as f32)
            })
            .collect();
        let d_packed: Vec<f32> = d_narrow_taps
            .iter()
            .copied()
            .chain(d_narrow_bias.iter().map(|&v| v as f32))
            .chain(d_wide_taps.iter().copied())
            .chain(d_wide_bias.iter().map(|&v| v as f32))
            .chain(d_norm.iter().map(|&v| v as f32))
            .collect();
        let n_packed = d_packed.len();
        Ok((Some(cpu(d_x, (b, l, c))?), Some(cpu(d_g, (b, c))?), Some(cpu(d_packed, n_packed)?)))
    }
}

/// The convolution weights of [`conv_sum_norm`]: `(C_out, C_in, k)` as stored, and the bias.
pub struct TrackConv<'a> {
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
}

/// `LN1(x + g + gelu(narrow(x ⊙ mask) + b_n) + gelu(wide(x ⊙ mask) + b_w))` over `x (B, L, C)` with
/// `g (B, C)` broadcast over positions, 'same' padding, and its own backward, on CPU f32; `None`
/// where it does not apply (the caller uses candle ops).
pub fn conv_sum_norm(
    x: &Tensor,
    g: &Tensor,
    mask: Option<&Tensor>,
    (narrow, wide): (TrackConv, TrackConv),
    norm: (&Tensor, &Tensor),
    track: ConvTrack,
) -> Result<Option<Tensor>> {
    let all = [x, g, narrow.weight, narrow.bias, wide.weight, wide.bias, norm.0, norm.1];
    if !all.iter().all(|t| use_kernel(t)) || x.elem_count() == 0 {
        return Ok(None);
    }
    for conv in [&narrow, &wide] {
        if conv.weight.dim(2)? != track.kernel_size {
            return Err(Error::invalid(format!(
                "conv-sum-norm: weight {:?} is not of kernel size {}",
                conv.weight.dims(),
                track.kernel_size
            )));
        }
    }
    // (C_out, C_in, k) → (k, C_in, C_out), flattened: tap i is a (C_in, C_out) matrix.
    let taps = |w: &Tensor| -> Result<Tensor> { Ok(w.permute((2, 1, 0))?.contiguous()?.flatten_all()?) };
    let packed = Tensor::cat(&[&taps(narrow.weight)?, narrow.bias, &taps(wide.weight)?, wide.bias, norm.0, norm.1], 0)?;
    let mask = match mask {
        Some(m) => Some(m.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    };
    let op = ConvSumNorm { track, mask, saved: Kept::new() };
    Ok(Some(x.contiguous()?.apply_op3(&g.contiguous()?, &packed, op)?))
}
