//! ProteinBERT's block at inference, fused: the local track and the global attention as a few
//! large GEMMs and one pass per row, with nothing for autograd to keep.
//!
//! Built from the separate ops, a block makes a dozen passes over `B · L` rows (padding copies,
//! bias adds, four GELUs, three sums, two LayerNorms, the key/value transposes), each writing a
//! fresh tensor; at 32 × 512 those passes took as long as the block's products. Here:
//!
//! * each convolution reads its input from one padded copy laid out phase by phase (so a dilated
//!   convolution is an undilated one on each phase) and is one GEMM over overlapping windows;
//! * `LN(x + G + gelu(narrow + b) + gelu(wide + b))` and `LN(y + gelu(dense + b))` are one pass
//!   per row each, reading the GEMM outputs where they lie;
//! * keys and values come from one GEMM, and each protein's scores, softmax and weighted sum of
//!   `gelu(values)` read that output in place (sums over positions in f64, as everywhere).
//!
//! The same arithmetic in the same order as the separate ops, so the two paths agree to float32
//! rounding (`fused_inference_block_equals_the_separate_ops` in `models::proteinbert::model`);
//! [`crate::models::proteinbert`] takes this path when no input or weight needs a gradient.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::elementwise::{gelu, tanh};
use super::norm::{layer_norm_in_place, softmax_in_place};
use super::{gemm_strided, gemm_strided_in, use_kernel, Strided};
use crate::{Error, Result};

/// Positions per task in the attention's passes over positions.
const POSITIONS_PER_TASK: usize = 128;
/// Rows per task in the fused row passes.
const ROWS_PER_TASK: usize = 64;

/// `m × n` values written by `product`, a GEMM that overwrites its whole output (it never reads it,
/// so the buffer need not be zeroed first: at 8 MB per product the zeroing showed in profiles).
pub(super) fn gemm_output(m: usize, n: usize, product: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(m * n);
    product(out.as_mut_ptr());
    // SAFETY: `product` wrote all m·n values through the pointer (gemm with `accumulate = false`).
    unsafe { out.set_len(m * n) };
    out
}

/// A contiguous CPU f32 tensor's values, copied (weights, and the small per-protein inputs).
fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Runs `f` on the values of a CPU f32 tensor in place (the large activations).
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(storage) = &*storage else {
        return Err(Error::invalid("fused ProteinBERT block: CPU tensors only"));
    };
    f(super::contiguous_f32("fused ProteinBERT block", storage, layout)?)
}

/// One convolution of the local track: taps `(k, C_in, C_out)`, bias `(C_out)`.
pub struct ConvWeights<'a> {
    pub taps: &'a Tensor,
    pub bias: &'a Tensor,
    pub dilation: usize,
}

/// The local track's weights: `LN1(x + G + gelu(narrow) + gelu(wide))`, then
/// `LN2(y + gelu(y · denseᵀ + b))`.
pub struct LocalTrack<'a> {
    pub narrow: ConvWeights<'a>,
    pub wide: ConvWeights<'a>,
    /// LayerNorm 1: gain, bias, ε.
    pub norm1: (&'a Tensor, &'a Tensor, f64),
    /// `(C, C)` stored `(out, in)`, and `(C)`.
    pub dense: (&'a Tensor, &'a Tensor),
    pub norm2: (&'a Tensor, &'a Tensor, f64),
}

/// Whether the fused block applies: CPU f32 tensors, none of which needs a gradient.
pub fn fused_block_applies(tensors: &[&Tensor]) -> bool {
    tensors.iter().all(|t| use_kernel(t) && !t.track_op())
}

/// How a convolution over padded phases lays out its output rows: row
/// `(b·d + p mod d)·phase_len + p div d` holds output position `p` of protein `b`.
#[derive(Debug, Clone, Copy)]
pub(super) struct PhaseLayout {
    pub(super) dilation: usize,
    pub(super) phase_len: usize,
}

impl PhaseLayout {
    /// The index of the row that holds output position `position` of `protein`.
    #[inline(always)]
    pub(super) fn row_index(&self, protein: usize, position: usize) -> usize {
        let d = self.dilation;
        (protein * d + position % d) * self.phase_len + position / d
    }
}

/// The output of one convolution over every padded phase (before the bias).
pub(super) struct ConvOutput {
    pub(super) rows: Vec<f32>,
    pub(super) layout: PhaseLayout,
}

impl ConvOutput {
    #[inline(always)]
    pub(super) fn row(&self, protein: usize, position: usize, width: usize) -> &[f32] {
        &self.rows[self.layout.row_index(protein, position) * width..][..width]
    }
}

/// A 'same'-padded dilated convolution of `x (B, L, C_in)` (times `mask`, if any): the padded
/// input is laid out phase by phase (`phase s` = padded rows `s, s + d, s + 2d, …` of a protein), in
/// which every output's window is `k` consecutive rows; one GEMM over those overlapping windows.
fn convolve(
    x: &[f32],
    mask: Option<&[f32]>,
    (b, l, c_in): (usize, usize, usize),
    conv: &ConvWeights,
) -> Result<ConvOutput> {
    let taps = values(conv.taps)?;
    Ok(convolve_phases(x, mask, (b, l, c_in), &taps, conv.taps.dims3()?, conv.dilation)?.0)
}

/// [`convolve`] on the taps' values `(k, C_in, C_out)`, also returning the padded input laid out
/// phase by phase (training keeps it for the tap gradient).
pub(super) fn convolve_phases(
    x: &[f32],
    mask: Option<&[f32]>,
    (b, l, c_in): (usize, usize, usize),
    taps: &[f32],
    (k, c_in2, c_out): (usize, usize, usize),
    d: usize,
) -> Result<(ConvOutput, Vec<f32>)> {
    if c_in2 != c_in || k == 0 || d == 0 || taps.len() != k * c_in * c_out {
        return Err(Error::invalid(format!("fused conv: taps ({k}, {c_in2}, {c_out}) do not fit {c_in} channels")));
    }
    let span = d * (k - 1);
    let left = span / 2;
    let phase_len = (l + span).div_ceil(d);
    let mut padded = vec![0f32; b * d * phase_len * c_in];
    padded.par_chunks_mut(d * phase_len * c_in).enumerate().for_each(|(protein, dst)| {
        for (row, dst) in dst.chunks_exact_mut(c_in).enumerate() {
            let (s, t) = (row / phase_len, row % phase_len);
            let Some(p) = (s + t * d).checked_sub(left).filter(|&p| p < l) else { continue };
            let src = &x[(protein * l + p) * c_in..][..c_in];
            match mask {
                Some(m) => {
                    let keep = m[protein * l + p];
                    for (o, &v) in dst.iter_mut().zip(src) {
                        *o = v * keep;
                    }
                }
                None => dst.copy_from_slice(src),
            }
        }
    });
    // Windows start at every phase row; the last k − 1 of each phase run into the next phase and
    // are computed but never read (p < L keeps p div d + k − 1 < phase_len).
    let n = b * d * phase_len - (k - 1);
    // SAFETY: window r reads padded rows r .. r + k − 1 < b·d·phase_len; the output is n × C_out
    // and `taps` (k·C_in) × C_out, row-major.
    let rows = gemm_output(n, c_out, |out| unsafe {
        gemm_strided(
            n,
            c_out,
            k * c_in,
            Strided::rows(out, c_out),
            Strided::rows(padded.as_ptr(), c_in),
            Strided::rows(taps.as_ptr(), c_out),
            false,
        )
    });
    Ok((ConvOutput { rows, layout: PhaseLayout { dilation: d, phase_len } }, padded))
}

multiversion! {
    /// `out ← LN1(x + g + gelu(narrow + b_n) + gelu(wide + b_w))` for one row, summed in the order
    /// the separate ops add.
    fn first_sum_norm_row(
        x: &[f32],
        g: &[f32],
        narrow: (&[f32], &[f32]),
        wide: (&[f32], &[f32]),
        norm: (&[f32], &[f32], f32),
        out: &mut [f32],
    ) {
        let ((narrow, narrow_bias), (wide, wide_bias), (gamma, beta, eps)) = (narrow, wide, norm);
        let c = out.len();
        let terms = x[..c].iter().zip(&g[..c]).zip(narrow[..c].iter().zip(&narrow_bias[..c])).zip(wide[..c].iter().zip(&wide_bias[..c]));
        for (o, (((&x, &g), (&n, &nb)), (&w, &wb))) in out.iter_mut().zip(terms) {
            *o = ((x + g) + gelu(n + nb)) + gelu(w + wb);
        }
        layer_norm_in_place(out, gamma, beta, eps);
    }
}

multiversion! {
    /// `out ← LN2(y + gelu(dense + b))` for one row.
    fn second_sum_norm_row(y: &[f32], dense: &[f32], bias: &[f32], norm: (&[f32], &[f32], f32), out: &mut [f32]) {
        let (gamma, beta, eps) = norm;
        let c = out.len();
        for (o, ((&y, &d), &b)) in out.iter_mut().zip(y[..c].iter().zip(&dense[..c]).zip(&bias[..c])) {
            *o = y + gelu(d + b);
        }
        layer_norm_in_place(out, gamma, beta, eps);
    }
}

/// The local track of one block at inference. `local (B, L, C)`, `from_global (B, C)` (already
/// `gelu(Dense(G))`), `mask (B, L)` → the two LayerNorm outputs, each `(B, L, C)`.
pub fn local_track(
    local: &Tensor,
    from_global: &Tensor,
    mask: Option<&Tensor>,
    weights: &LocalTrack,
) -> Result<(Tensor, Tensor)> {
    let (b, l, c) = local.dims3()?;
    if b * l == 0 {
        let empty = Tensor::zeros((b, l, c), DType::F32, &Device::Cpu)?;
        return Ok((empty.clone(), empty));
    }
    let g = values(from_global)?;
    let mask = mask.map(|m| values(&m.to_dtype(DType::F32)?)).transpose()?;
    let (n_bias, w_bias) = (values(weights.narrow.bias)?, values(weights.wide.bias)?);
    let (gamma1, beta1, eps1) = (values(weights.norm1.0)?, values(weights.norm1.1)?, weights.norm1.2 as f32);
    let (gamma2, beta2, eps2) = (values(weights.norm2.0)?, values(weights.norm2.1)?, weights.norm2.2 as f32);
    let dense_w = values(weights.dense.0)?;
    let dense_b = values(weights.dense.1)?;
    if g.len() != b * c || n_bias.len() != c || w_bias.len() != c || gamma1.len() != c || dense_w.len() != c * c {
        return Err(Error::invalid(format!("fused local track: weights do not fit {c} channels")));
    }
    let local1 = with_values(local, |x| {
        let narrow = convolve(x, mask.as_deref(), (b, l, c), &weights.narrow)?;
        let wide = convolve(x, mask.as_deref(), (b, l, c), &weights.wide)?;
        let mut out = vec![0f32; b * l * c];
        out.par_chunks_mut(ROWS_PER_TASK * c).enumerate().for_each(|(task, out)| {
            for (i, o) in out.chunks_exact_mut(c).enumerate() {
                let row = task * ROWS_PER_TASK + i;
                let (protein, p) = (row / l, row % l);
                first_sum_norm_row(
                    &x[row * c..][..c],
                    &g[protein * c..][..c],
                    (narrow.row(protein, p, c), &n_bias),
                    (wide.row(protein, p, c), &w_bias),
                    (&gamma1, &beta1, eps1),
                    o,
                );
            }
        });
        Ok(out)
    })?;
    // SAFETY: local1 is (B·L) × C, the weight C × C read transposed, the output (B·L) × C.
    let dense = gemm_output(b * l, c, |out| unsafe {
        gemm_strided(
            b * l,
            c,
            c,
            Strided::rows(out, c),
            Strided::rows(local1.as_ptr(), c),
            Strided::transposed(dense_w.as_ptr(), c),
            false,
        )
    });
    let mut local2 = vec![0f32; b * l * c];
    local2
        .par_chunks_mut(ROWS_PER_TASK * c)
        .zip(local1.par_chunks(ROWS_PER_TASK * c))
        .zip(dense.par_chunks(ROWS_PER_TASK * c))
        .for_each(|((out, y), dense)| {
            for ((o, y), dense) in out.chunks_exact_mut(c).zip(y.chunks_exact(c)).zip(dense.chunks_exact(c)) {
                second_sum_norm_row(y, dense, &dense_b, (&gamma2, &beta2, eps2), o);
            }
        });
    let tensor = |v: Vec<f32>| Tensor::from_vec(v, (b, l, c), &Device::Cpu);
    Ok((tensor(local1)?, tensor(local2)?))
}

/// `a · b` over sixteen lanes (a single running sum would not vectorise).
#[inline(always)]
pub(super) fn dot16(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + rest
}

multiversion! {
    /// Per head, `scores[h][i] = (tanh(keys[i]) · q_h) · scale + bias[i]` for the positions of one
    /// task (`keys` rows of width `H·dk`, replaced by their tanh).
    fn head_scores(keys: &mut [f32], query: (&[f32], usize, f32), bias: Option<&[f32]>, scores: &mut [f32]) {
        let (q, d_key, scale) = query;
        let h = q.len() / d_key;
        let n = scores.len() / h;
        for (i, k) in keys.chunks_exact_mut(q.len()).take(n).enumerate() {
            for v in k.iter_mut() {
                *v = tanh(*v);
            }
            for head in 0..h {
                let dot = dot16(&k[head * d_key..][..d_key], &q[head * d_key..][..d_key]);
                let s = dot * scale;
                scores[head * n + i] = match bias {
                    Some(bias) => s + bias[i],
                    None => s,
                };
            }
        }
    }
}

multiversion! {
    fn softmax_row(row: &mut [f32]) {
        softmax_in_place(row)
    }
}

multiversion! {
    /// `acc[h·dv + e] += Σ_i w[h][i] · gelu(values[i][h·dv + e])` in f64 for the positions of one
    /// task (`values` rows of width `acc.len()`).
    fn weighted_gelu_rows(values: &mut [f32], weights: &[f32], n: usize, acc: &mut [f64]) {
        let width = acc.len();
        let h = weights.len() / n;
        let dv = width / h;
        for (i, row) in values.chunks_exact_mut(width).take(n).enumerate() {
            // GELU sixteen lanes wide first; the f64 sums run eight wide after it.
            for v in row.iter_mut() {
                *v = gelu(*v);
            }
            for head in 0..h {
                let w = weights[head * n + i] as f64;
                for (a, &v) in acc[head * dv..][..dv].iter_mut().zip(&row[head * dv..][..dv]) {
                    *a += w * v as f64;
                }
            }
        }
    }
}

/// ProteinBERT's global attention at inference. `local (B, L, C)`, `q (B, H·dk)` (already
/// `tanh(G · Wq)`), `wk (C, H·dk)` and `wv (C, H·dv)` flat (head-major columns), `mask (B, L)` →
/// (`(B, H·dv)`, attention weights `(B, H, L)`).
pub fn global_attention(
    local: &Tensor,
    q: &Tensor,
    wk: &Tensor,
    wv: &Tensor,
    n_heads: usize,
    mask: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (b, l, c) = local.dims3()?;
    let (c_k, hk) = wk.dims2()?;
    let (c_v, hv) = wv.dims2()?;
    if c_k != c || c_v != c || n_heads == 0 || hk % n_heads != 0 || hv % n_heads != 0 || q.dims() != [b, hk] {
        return Err(Error::invalid(format!(
            "fused global attention: local {:?}, q {:?}, wk {:?}, wv {:?} do not fit {n_heads} heads",
            local.dims(),
            q.dims(),
            wk.dims(),
            wv.dims()
        )));
    }
    let d_key = hk / n_heads;
    if b * l == 0 {
        // No positions: nothing to attend to, as a sum over none.
        let y = Tensor::zeros((b, hv), DType::F32, &Device::Cpu)?;
        return Ok((y, Tensor::zeros((b, n_heads, l), DType::F32, &Device::Cpu)?));
    }
    let q = values(q)?;
    let (wk, wv) = (values(wk)?, values(wv)?);
    // The separate ops add (mask − 1)·1e9 to the scores.
    let bias = mask.map(|m| values(&((m.to_dtype(DType::F32)? - 1.0)? * 1e9)?)).transpose()?;
    let scale = (1.0 / (d_key as f64).sqrt()) as f32;
    let chunks = l.div_ceil(POSITIONS_PER_TASK);
    let task_range = |task: usize| {
        let (protein, chunk) = (task / chunks, task % chunks);
        let start = chunk * POSITIONS_PER_TASK;
        (protein, start, POSITIONS_PER_TASK.min(l - start))
    };
    // Each task projects its own positions into a buffer that stays in cache: a (B·L) × (H·dk +
    // H·dv) projection of the whole batch is 50 MB at 32 × 512, fresh pages every block.
    let project = |x: &[f32], row0: usize, n: usize, w: &[f32], width: usize| {
        // SAFETY: rows row0 .. row0 + n of x (B·L × C), w C × width, the output n × width, row-major.
        gemm_output(n, width, |out| unsafe {
            gemm_strided_in(
                n,
                width,
                c,
                Strided::rows(out, width),
                Strided::rows(x.as_ptr().add(row0 * c), c),
                Strided::rows(w.as_ptr(), width),
                false,
                gemm::Parallelism::None,
            )
        })
    };
    let (weights, partials) = with_values(local, |x| {
        let scores: Vec<Vec<f32>> = (0..b * chunks)
            .into_par_iter()
            .map(|task| {
                let (protein, start, n) = task_range(task);
                let row0 = protein * l + start;
                let mut keys = project(x, row0, n, &wk, hk);
                let mut scores = vec![0f32; n_heads * n];
                head_scores(
                    &mut keys,
                    (&q[protein * hk..][..hk], d_key, scale),
                    bias.as_ref().map(|bias| &bias[row0..][..n]),
                    &mut scores,
                );
                scores
            })
            .collect();
        let mut weights = vec![0f32; b * n_heads * l];
        weights.par_chunks_mut(l).enumerate().for_each(|(row, out)| {
            let (protein, head) = (row / n_heads, row % n_heads);
            for chunk in 0..chunks {
                let (_, start, n) = task_range(protein * chunks + chunk);
                out[start..start + n].copy_from_slice(&scores[protein * chunks + chunk][head * n..][..n]);
            }
            softmax_row(out);
        });
        let partials: Vec<Vec<f64>> = (0..b * chunks)
            .into_par_iter()
            .map(|task| {
                let (protein, start, n) = task_range(task);
                let mut task_weights = vec![0f32; n_heads * n];
                for head in 0..n_heads {
                    task_weights[head * n..][..n]
                        .copy_from_slice(&weights[(protein * n_heads + head) * l + start..][..n]);
                }
                let mut values = project(x, protein * l + start, n, &wv, hv);
                let mut acc = vec![0f64; hv];
                weighted_gelu_rows(&mut values, &task_weights, n, &mut acc);
                acc
            })
            .collect();
        Ok((weights, partials))
    })?;
    // Chunks added in order: the same bits whatever the thread count.
    let mut y = vec![0f32; b * hv];
    for (protein, y) in y.chunks_exact_mut(hv).enumerate() {
        let mut total = vec![0f64; hv];
        for partial in &partials[protein * chunks..(protein + 1) * chunks] {
            total.iter_mut().zip(partial).for_each(|(t, &p)| *t += p);
        }
        y.iter_mut().zip(&total).for_each(|(o, &t)| *o = t as f32);
    }
    Ok((Tensor::from_vec(y, (b, hv), &Device::Cpu)?, Tensor::from_vec(weights, (b, n_heads, l), &Device::Cpu)?))
}
