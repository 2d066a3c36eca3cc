//! Multi-head scaled dot-product attention as one kernel per (protein, head), forward and backward.
//!
//! The composite path builds `(B, H, L, L)` scores, adds the key mask, takes a softmax and
//! multiplies by the values: four passes over a tensor of 100 MB per PRoBERTa layer at 8 × 512,
//! each freshly allocated (and so page-faulted), plus a transposed copy of Q, K, V and the context
//! to put heads first. Here each (protein, head) task keeps its `L × L` block in a buffer of its
//! own that stays in cache, reads its head straight out of the `(B, L, H·D)` projections through
//! strides, and writes its context columns in place. The backward recomputes the probabilities
//! instead of keeping them (as FlashAttention does), so training holds no `L × L` tensor either.
//!
//! Softmax normalisers are summed in f64 ([`super::sum_f64`]), so the error does not grow with
//! the number of positions.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::norm::softmax_in_place;
use super::{contiguous_f32, gemm_strided_in, use_kernel, with_held_f32, SharedOut, Strided};
use crate::{Error, Result};

/// Whether [`attention`] runs the fused kernel for these projections (CPU, f32); elsewhere it
/// composes candle ops, so CUDA keeps candle's kernels.
pub fn attention_applies(q: &Tensor) -> bool {
    use_kernel(q)
}

/// `softmax(q·kᵀ + key_bias)·v` per head. `q`, `k`, `v` are `(B, L, H·D)` with heads side by side
/// in the last axis (as a linear projection gives them; `q` already scaled), `key_bias` `(B, L)` is
/// added to every query's score for that key (0 for real tokens, a large negative number for
/// padding). Returns the context `(B, L, H·D)`, heads again side by side. `dropout` drops
/// attention probabilities (training); the kernel draws its mask from the seed, so the backward
/// sees the same one without storing it.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::models::ops::attention;
/// // One protein, two positions, one head of width 1: q = 0, so both keys get weight 1/2.
/// let q = Tensor::new(&[[[0f32], [0.0]]], &Device::Cpu)?;
/// let k = Tensor::new(&[[[1f32], [2.0]]], &Device::Cpu)?;
/// let v = Tensor::new(&[[[10f32], [20.0]]], &Device::Cpu)?;
/// let out = attention(&q, &k, &v, 1, None, None)?.to_vec3::<f32>()?;
/// assert_eq!(out, vec![vec![vec![15.0], vec![15.0]]]);
/// // Masking the second key leaves only the first.
/// let bias = Tensor::new(&[[0f32, -1e9]], &Device::Cpu)?;
/// let out = attention(&q, &k, &v, 1, Some(&bias), None)?.to_vec3::<f32>()?;
/// assert_eq!(out, vec![vec![vec![10.0], vec![10.0]]]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    key_bias: Option<&Tensor>,
    dropout: Option<AttentionDropout>,
) -> Result<Tensor> {
    let (b, l, width) = q.dims3()?;
    if k.dims() != q.dims() || v.dims() != q.dims() || heads == 0 || width % heads != 0 {
        return Err(Error::invalid(format!(
            "attention: q {:?}, k {:?}, v {:?} must be equal (B, L, H·D) shapes with {heads} heads dividing the width",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    if let Some(bias) = key_bias {
        if bias.dims() != [b, l] {
            return Err(Error::invalid(format!("attention: key_bias is {:?}, expected ({b}, {l})", bias.dims())));
        }
    }
    if let Some(d) = dropout {
        if !(0.0..1.0).contains(&d.p) {
            return Err(Error::invalid(format!("attention dropout must be in [0, 1), got {}", d.p)));
        }
    }
    if !attention_applies(q) {
        return composite(q, k, v, heads, key_bias, dropout);
    }
    let key_bias =
        key_bias.map(|t| t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()).transpose()?;
    let op = FusedAttention { heads, key_bias: key_bias.map(Arc::new), dropout: dropout.filter(|d| d.p > 0.0) };
    Ok(q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

/// The same computation from candle ops (other devices and dtypes).
fn composite(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    key_bias: Option<&Tensor>,
    dropout: Option<AttentionDropout>,
) -> Result<Tensor> {
    let (b, l, width) = q.dims3()?;
    let split =
        |t: &Tensor| -> Result<Tensor> { Ok(t.reshape((b, l, heads, width / heads))?.transpose(1, 2)?.contiguous()?) };
    let mut scores = split(q)?.matmul(&split(k)?.t()?)?;
    if let Some(bias) = key_bias {
        scores = scores.broadcast_add(&bias.to_dtype(scores.dtype())?.unsqueeze(1)?.unsqueeze(1)?)?;
    }
    let mut probs = super::softmax_last_dim(&scores)?;
    if let Some(d) = dropout.filter(|d| d.p > 0.0) {
        // The kernel's own mask, laid out (B, H, L, L) as the tasks number their elements.
        let n = probs.elem_count();
        let mask: Vec<f32> = (0..n as u64).map(|i| d.scale(i)).collect();
        probs = probs.mul(&Tensor::from_vec(mask, probs.shape(), probs.device())?.to_dtype(probs.dtype())?)?;
    }
    Ok(probs.matmul(&split(v)?)?.transpose(1, 2)?.reshape((b, l, width))?)
}

/// Dropout of attention probabilities inside the kernel. Element `i` of the `(B, H, L, L)`
/// probabilities (row-major) is kept, scaled by `1/(1−p)`, when a SplitMix64 hash of
/// `(seed, i)` read as a uniform in [0, 1) is at least `p`: a counter-based mask that the backward
/// regenerates instead of storing, and that does not depend on how tasks share threads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionDropout {
    pub p: f32,
    pub seed: u64,
}

impl AttentionDropout {
    /// `1/(1−p)` where element `index` is kept, 0 where it is dropped.
    #[inline(always)]
    pub fn scale(&self, index: u64) -> f32 {
        let mut z = self.seed.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let uniform = (z >> 40) as f32 * (1.0 / (1u64 << 24) as f32);
        if uniform >= self.p {
            1.0 / (1.0 - self.p)
        } else {
            0.0
        }
    }
}

multiversion! {
    /// `out ← probs ⊙ mask` for the rows of one task, whose first element is number `first`.
    fn apply_dropout(probs: &[f32], out: &mut [f32], dropout: AttentionDropout, first: u64) {
        for (i, (o, &p)) in out.iter_mut().zip(probs).enumerate() {
            *o = p * dropout.scale(first + i as u64);
        }
    }
}

multiversion! {
    /// `xs ← xs ⊙ mask` (the backward's `dP = dP̃ ⊙ M`).
    fn apply_dropout_in_place(xs: &mut [f32], dropout: AttentionDropout, first: u64) {
        for (i, x) in xs.iter_mut().enumerate() {
            *x *= dropout.scale(first + i as u64);
        }
    }
}

multiversion! {
    /// Each row (`l` scores of one query) ← softmax(row + bias).
    fn bias_softmax_rows(scores: &mut [f32], bias: Option<&[f32]>, l: usize) {
        for row in scores.chunks_exact_mut(l) {
            if let Some(bias) = bias {
                for (s, b) in row.iter_mut().zip(bias) {
                    *s += b;
                }
            }
            softmax_in_place(row);
        }
    }
}

multiversion! {
    /// `dS ← P ⊙ (dP − Σⱼ P ⊙ dP)` row by row (softmax's backward), the sum in f64.
    fn softmax_backward_rows(d_probs: &mut [f32], probs: &[f32], l: usize) {
        for (ds, p) in d_probs.chunks_exact_mut(l).zip(probs.chunks_exact(l)) {
            let mut lanes = [0f64; 8];
            let (chunks, rest) = (ds.chunks_exact(8), ds.len() / 8 * 8);
            for (g, p) in chunks.zip(p.chunks_exact(8)) {
                for i in 0..8 {
                    lanes[i] += g[i] as f64 * p[i] as f64;
                }
            }
            let tail: f64 = ds[rest..].iter().zip(&p[rest..]).map(|(&g, &p)| g as f64 * p as f64).sum();
            let dot = (lanes.iter().sum::<f64>() + tail) as f32;
            for (g, &p) in ds.iter_mut().zip(p) {
                *g = p * (*g - dot);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct FusedAttention {
    heads: usize,
    key_bias: Option<Arc<Vec<f32>>>,
    dropout: Option<AttentionDropout>,
}

/// The shapes every task needs: proteins, length, heads, head width, row stride.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    l: usize,
    heads: usize,
    d: usize,
    width: usize,
}

impl Dims {
    /// Offset of head `h` of protein `p` in a `(B, L, H·D)` buffer.
    fn base(&self, task: usize) -> usize {
        let (p, h) = (task / self.heads, task % self.heads);
        p * self.l * self.width + h * self.d
    }
}

impl FusedAttention {
    fn dims(&self, layout: &Layout) -> candle_core::Result<Dims> {
        let (b, l, width) = layout.shape().dims3()?;
        Ok(Dims { b, l, heads: self.heads, d: width / self.heads, width })
    }

    /// `probs ← softmax(Q·Kᵀ + bias)` for one task (`probs` is `L × L`, row-major).
    ///
    /// # Safety
    /// `q`, `k` must point at the task's head in `(B, L, H·D)` buffers.
    unsafe fn probabilities(&self, dims: Dims, task: usize, q: *const f32, k: *const f32, probs: &mut [f32]) {
        let Dims { l, d, width, .. } = dims;
        unsafe {
            gemm_strided_in(
                l,
                l,
                d,
                Strided::rows(probs.as_mut_ptr(), l),
                Strided::rows(q, width),
                Strided::transposed(k, width),
                false,
                gemm::Parallelism::None,
            );
        }
        let bias = self.key_bias.as_ref().map(|b| &b[(task / self.heads) * l..][..l]);
        bias_softmax_rows(probs, bias, l);
    }
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.dims(q_layout)?;
        let (q, k, v) = (
            contiguous_f32(self.name(), q, q_layout)?,
            contiguous_f32(self.name(), k, k_layout)?,
            contiguous_f32(self.name(), v, v_layout)?,
        );
        let Dims { b, l, heads, d, width } = dims;
        let mut out = vec![0f32; q.len()];
        let shared = SharedOut(out.as_mut_ptr());
        (0..b * heads).into_par_iter().for_each_init(
            || (vec![0f32; l * l], if self.dropout.is_some() { vec![0f32; l * l] } else { Vec::new() }),
            |(probs, dropped), task| {
                let base = dims.base(task);
                // SAFETY: every pointer addresses the task's own head inside buffers of B·L·H·D
                // elements; tasks write disjoint column blocks (their head) of `out`.
                unsafe {
                    self.probabilities(dims, task, q.as_ptr().add(base), k.as_ptr().add(base), probs);
                    let probs: &[f32] = match self.dropout {
                        Some(d) => {
                            apply_dropout(probs, dropped, d, (task * l * l) as u64);
                            dropped
                        }
                        None => probs,
                    };
                    // Moves the whole wrapper into the closure: naming only `shared.0` would capture
                    // the bare pointer, which is not Send.
                    #[allow(clippy::redundant_locals)]
                    let shared = shared;
                    gemm_strided_in(
                        l,
                        d,
                        l,
                        Strided::rows(shared.0.add(base), width),
                        Strided::rows(probs.as_ptr(), l),
                        Strided::rows(v.as_ptr().add(base), width),
                        false,
                        gemm::Parallelism::None,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), q_layout.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let backward = FusedAttentionBackward { forward: self.clone(), grad: grad.contiguous()? };
        let grads = q.apply_op3_no_bwd(k, v, &backward)?;
        Ok((Some(grads.get(0)?), Some(grads.get(1)?), Some(grads.get(2)?)))
    }
}

/// The three gradients `(3, B, L, H·D)` of [`FusedAttention`] for the output gradient `grad`.
struct FusedAttentionBackward {
    forward: FusedAttention,
    grad: Tensor,
}

impl CustomOp3 for FusedAttentionBackward {
    fn name(&self) -> &'static str {
        "fused-attention-backward"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.forward.dims(q_layout)?;
        let (q, k, v) = (
            contiguous_f32(self.name(), q, q_layout)?,
            contiguous_f32(self.name(), k, k_layout)?,
            contiguous_f32(self.name(), v, v_layout)?,
        );
        with_held_f32(self.name(), &self.grad, |grad| {
            let Dims { b, l, heads, d, width } = dims;
            let n = q.len();
            let mut out = vec![0f32; 3 * n];
            let shared = SharedOut(out.as_mut_ptr());
            (0..b * heads).into_par_iter().for_each_init(
                || {
                    (
                        vec![0f32; l * l],
                        vec![0f32; l * l],
                        if self.forward.dropout.is_some() { vec![0f32; l * l] } else { Vec::new() },
                    )
                },
                |(probs, d_scores, dropped), task| {
                    let base = dims.base(task);
                    let gemm = |m, n_, k_, c, a, b_, acc| {
                        // SAFETY: as below; a closure only to keep the five products readable.
                        unsafe { gemm_strided_in(m, n_, k_, c, a, b_, acc, gemm::Parallelism::None) }
                    };
                    // SAFETY: pointers address the task's own head in buffers of B·L·H·D elements
                    // (the output holds three of them: dQ, dK, dV); tasks write disjoint heads.
                    unsafe {
                        let (qp, kp, vp, gp) =
                            (q.as_ptr().add(base), k.as_ptr().add(base), v.as_ptr().add(base), grad.as_ptr().add(base));
                        // Moves the whole wrapper into the closure: naming only `shared.0` would capture
                        // the bare pointer, which is not Send.
                        #[allow(clippy::redundant_locals)]
                        let shared = shared;
                        let (dq, dk, dv) = (shared.0.add(base), shared.0.add(n + base), shared.0.add(2 * n + base));
                        self.forward.probabilities(dims, task, qp, kp, probs);
                        // With dropout the product used P̃ = P ⊙ M: dV = P̃ᵀ · dO, and dP = (dO · Vᵀ) ⊙ M.
                        let first = (task * l * l) as u64;
                        let used: &[f32] = match self.forward.dropout {
                            Some(drop) => {
                                apply_dropout(probs, dropped, drop, first);
                                dropped
                            }
                            None => probs,
                        };
                        // dV = P̃ᵀ · dO
                        gemm(
                            l,
                            d,
                            l,
                            Strided::rows(dv, width),
                            Strided::transposed(used.as_ptr(), l),
                            Strided::rows(gp, width),
                            false,
                        );
                        // dP = dO · Vᵀ
                        gemm(
                            l,
                            l,
                            d,
                            Strided::rows(d_scores.as_mut_ptr(), l),
                            Strided::rows(gp, width),
                            Strided::transposed(vp, width),
                            false,
                        );
                        // dS = P ⊙ (dP − Σⱼ P ⊙ dP), row by row
                        if let Some(drop) = self.forward.dropout {
                            apply_dropout_in_place(d_scores, drop, first);
                        }
                        softmax_backward_rows(d_scores, probs, l);
                        // dQ = dS · K, dK = dSᵀ · Q
                        gemm(
                            l,
                            d,
                            l,
                            Strided::rows(dq, width),
                            Strided::rows(d_scores.as_ptr(), l),
                            Strided::rows(kp, width),
                            false,
                        );
                        gemm(
                            l,
                            d,
                            l,
                            Strided::rows(dk, width),
                            Strided::transposed(d_scores.as_ptr(), l),
                            Strided::rows(qp, width),
                            false,
                        );
                    }
                },
            );
            let mut dims3 = vec![3];
            dims3.extend_from_slice(q_layout.shape().dims());
            Ok((CpuStorage::F32(out), Shape::from(dims3)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(rng: &mut crate::Rng, dims: &[usize], scale: f64) -> Var {
        let v: Vec<f32> = (0..dims.iter().product()).map(|_| (scale * rng.normal()) as f32).collect();
        Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    /// The kernel against the composite from candle ops, forward and all three gradients, with a
    /// padding mask that blocks different keys in each protein and a length no SIMD width divides.
    #[test]
    fn fused_attention_matches_candle_ops_forward_and_backward() {
        let mut rng = crate::Rng::new(11);
        let (b, l, heads, d) = (3, 37, 4, 8);
        let (q, k, v) = (
            random(&mut rng, &[b, l, heads * d], 0.7),
            random(&mut rng, &[b, l, heads * d], 0.7),
            random(&mut rng, &[b, l, heads * d], 1.0),
        );
        let mask: Vec<f32> = (0..b * l).map(|i| if i % l < l - 5 * (i / l) { 0.0 } else { -1e9 }).collect();
        let bias = Tensor::from_vec(mask, (b, l), &Device::Cpu).unwrap();
        let weights = random(&mut rng, &[b, l, heads * d], 1.0);
        for dropout in [None, Some(AttentionDropout { p: 0.25, seed: 7 })] {
            let ours = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), heads, Some(&bias), dropout).unwrap();
            let theirs = composite(q.as_tensor(), k.as_tensor(), v.as_tensor(), heads, Some(&bias), dropout).unwrap();
            assert!(max_diff(&ours, &theirs) < 2e-6, "forward {}", max_diff(&ours, &theirs));
            let go = ours.mul(weights.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let gt = theirs.mul(weights.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, var) in [("q", &q), ("k", &k), ("v", &v)] {
                let d = max_diff(go.get(var).unwrap(), gt.get(var).unwrap());
                assert!(d < 1e-5, "d{name} with {dropout:?}: {d}");
            }
        }
        // A protein that is all padding still gives finite values (uniform weights).
        let all_masked = Tensor::full(-1e9f32, (b, l), &Device::Cpu).unwrap();
        let out = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), heads, Some(&all_masked), None).unwrap();
        assert!(out.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|x| x.is_finite()));
    }

    #[test]
    fn attention_rejects_mismatched_shapes() {
        let q = Tensor::zeros((1, 4, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = attention(&q, &q, &q, 4, None, None).unwrap_err().to_string();
        assert!(err.contains("4 heads"), "{err}");
        let bias = Tensor::zeros((1, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = attention(&q, &q, &q, 2, Some(&bias), None).unwrap_err().to_string();
        assert!(err.contains("key_bias"), "{err}");
        let err = attention(&q, &q, &q, 2, None, Some(AttentionDropout { p: 1.0, seed: 0 })).unwrap_err().to_string();
        assert!(err.contains("dropout"), "{err}");
    }

    /// The mask drops about `p` of the elements, the same ones for the same seed, others for another.
    #[test]
    fn dropout_mask_has_the_asked_rate_and_follows_the_seed() {
        let d = AttentionDropout { p: 0.1, seed: 42 };
        let n = 200_000u64;
        let dropped = (0..n).filter(|&i| d.scale(i) == 0.0).count() as f64 / n as f64;
        assert!((dropped - 0.1).abs() < 0.003, "{dropped}");
        assert!((0..n).all(|i| d.scale(i) == 0.0 || (d.scale(i) - 1.0 / 0.9).abs() < 1e-6));
        let other = AttentionDropout { seed: 43, ..d };
        let same = (0..1000).filter(|&i| (d.scale(i) == 0.0) == (other.scale(i) == 0.0)).count();
        assert!(same < 1000 && same > 700, "{same}");
    }
}
