//! The global attention: [`global_attention_trained`].

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu, held, Kept};
use crate::models::ops::elementwise::{gelu_with_grad, tanh};
use crate::models::ops::inference::{dot16, gemm_output};
use crate::models::ops::norm::softmax_in_place;
use crate::models::ops::{contiguous_f32, gemm_strided, use_kernel, Strided};
use crate::{Error, Result};

/// The shape of one protein's attention.
#[derive(Debug, Clone, Copy)]
struct Heads {
    n_heads: usize,
    d_key: usize,
    /// `1/√d_key`
    scale: f32,
}

multiversion! {
    /// One protein: `pre` rows `(L, H·dk + H·dv)` of key and value pre-activations → `act` (tanh
    /// keys, gelu values), the softmax weights `(H, L)` of `tanh(k) · q · scale + bias`, and
    /// `y (H·dv) = Σ_l w · gelu(v)` in f64. The value columns of `pre` become `gelu'(v)`.
    fn attend(
        pre: &mut [f32],
        q: &[f32],
        bias: Option<&[f32]>,
        heads: Heads,
        act: &mut [f32],
        weights: &mut [f32],
        y: &mut [f32],
    ) {
        let Heads { n_heads, d_key, scale } = heads;
        let (hk, hv) = (q.len(), y.len());
        let width = hk + hv;
        let l = weights.len() / n_heads;
        let dv = hv / n_heads;
        for (a, p) in act.chunks_exact_mut(width).zip(pre.chunks_exact_mut(width)) {
            for (a, &p) in a[..hk].iter_mut().zip(&p[..hk]) {
                *a = tanh(p);
            }
            for (a, p) in a[hk..].iter_mut().zip(&mut p[hk..]) {
                (*a, *p) = gelu_with_grad(*p);
            }
        }
        for h in 0..n_heads {
            let row = &mut weights[h * l..][..l];
            for (i, s) in row.iter_mut().enumerate() {
                let key = &act[i * width + h * d_key..][..d_key];
                *s = dot16(key, &q[h * d_key..][..d_key]) * scale + bias.map_or(0.0, |b| b[i]);
            }
            softmax_in_place(row);
        }
        let mut acc = vec![0f64; hv];
        for (i, a) in act.chunks_exact(width).enumerate() {
            for h in 0..n_heads {
                let w = weights[h * l + i] as f64;
                for (s, &v) in acc[h * dv..][..dv].iter_mut().zip(&a[hk + h * dv..][..dv]) {
                    *s += w * v as f64;
                }
            }
        }
        for (o, &s) in y.iter_mut().zip(&acc) {
            *o = s as f32;
        }
    }
}

multiversion! {
    /// One protein's backward: from `dy (H·dv)`, the pre-activation gradient rows `d_pre` and `dq`
    /// (`slopes`: [`attend`]'s `pre` after it, `gelu'(v)` in the value columns).
    #[allow(clippy::too_many_arguments)]
    fn attend_backward(
        slopes: &[f32],
        act: &[f32],
        q: &[f32],
        weights: &[f32],
        dy: &[f32],
        heads: Heads,
        d_pre: &mut [f32],
        dq: &mut [f32],
    ) {
        let Heads { n_heads, d_key, scale } = heads;
        let (hk, hv) = (q.len(), dy.len());
        let width = hk + hv;
        let l = weights.len() / n_heads;
        let dv = hv / n_heads;
        // d scores = w ⊙ (d w − Σ w · d w), d w[i] = dy · gelu(v[i]), per head.
        let mut d_scores = vec![0f32; n_heads * l];
        for h in 0..n_heads {
            let (w, ds) = (&weights[h * l..][..l], &mut d_scores[h * l..][..l]);
            let dy_h = &dy[h * dv..][..dv];
            let mut total = 0f64;
            for (i, (d, &w)) in ds.iter_mut().zip(w).enumerate() {
                *d = dot16(dy_h, &act[i * width + hk + h * dv..][..dv]);
                total += w as f64 * *d as f64;
            }
            let total = total as f32;
            for (d, &w) in ds.iter_mut().zip(w) {
                *d = w * (*d - total) * scale;
            }
        }
        let mut dq_acc = vec![0f64; hk];
        let rows = d_pre.chunks_exact_mut(width).zip(act.chunks_exact(width)).zip(slopes.chunks_exact(width));
        for (i, ((d, a), p)) in rows.enumerate() {
            for h in 0..n_heads {
                let ds = d_scores[h * l + i];
                let span = h * d_key..(h + 1) * d_key;
                let keys = d[span.clone()].iter_mut().zip(&a[span.clone()]).zip(&q[span.clone()]);
                for (((o, &k), &qj), s) in keys.zip(&mut dq_acc[span]) {
                    *o = ds * qj * (1.0 - k * k);
                    *s += (ds * k) as f64;
                }
                let w = weights[h * l + i];
                let span = hk + h * dv..hk + (h + 1) * dv;
                for ((o, &p), &g) in d[span.clone()].iter_mut().zip(&p[span]).zip(&dy[h * dv..][..dv]) {
                    *o = w * g * p;
                }
            }
        }
        for (o, &s) in dq.iter_mut().zip(&dq_acc) {
            *o = s as f32;
        }
    }
}

/// `(local (B, L, C), q (B, H·dk), w_kv (C, H·dk + H·dv))` → `y (B, H·dv)`.
struct GlobalAttentionTrained {
    heads: Heads,
    /// `(B·L)`: 0 on kept positions, the mask penalty on padding.
    bias: Option<Vec<f32>>,
    /// Shared with [`global_attention_trained`], which reads the weights `(B, H, L)` back out.
    saved: Arc<Kept<AttentionSaved>>,
}

struct AttentionSaved {
    /// `(B·L, H·dk + H·dv)`: `gelu'(v)` in the value columns (the key columns are unused: tanh's
    /// slope comes from the keys themselves).
    slopes: Vec<f32>,
    act: Vec<f32>,
    weights: Vec<f32>,
}

impl CustomOp3 for GlobalAttentionTrained {
    fn name(&self) -> &'static str {
        "global-attention-trained"
    }

    fn cpu_fwd(
        &self,
        local: &CpuStorage,
        local_layout: &Layout,
        q: &CpuStorage,
        q_layout: &Layout,
        w_kv: &CpuStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, q, w) = (
            contiguous_f32(self.name(), local, local_layout)?,
            contiguous_f32(self.name(), q, q_layout)?,
            contiguous_f32(self.name(), w_kv, w_layout)?,
        );
        let (b, l, c) = local_layout.shape().dims3()?;
        let (c2, width) = w_layout.shape().dims2()?;
        let hk = self.heads.n_heads * self.heads.d_key;
        if c2 != c || q.len() != b * hk || width <= hk || (width - hk) % self.heads.n_heads != 0 {
            candle_core::bail!(
                "{}: local {:?}, q {:?}, W {:?} do not fit {} heads",
                self.name(),
                local_layout.shape(),
                q_layout.shape(),
                w_layout.shape(),
                self.heads.n_heads
            )
        }
        let hv = width - hk;
        let n = b * l;
        // SAFETY: x is N × C, w C × width, the output N × width, row-major.
        let mut pre = gemm_output(n, width, |out| unsafe {
            gemm_strided(
                n,
                width,
                c,
                Strided::rows(out, width),
                Strided::rows(x.as_ptr(), c),
                Strided::rows(w.as_ptr(), width),
                false,
            )
        });
        let mut act = vec![0f32; n * width];
        let mut weights = vec![0f32; b * self.heads.n_heads * l];
        let mut y = vec![0f32; b * hv];
        act.par_chunks_mut(l * width)
            .zip(pre.par_chunks_mut(l * width))
            .zip(weights.par_chunks_mut(self.heads.n_heads * l).zip(y.par_chunks_mut(hv)))
            .enumerate()
            .for_each(|(protein, ((act, pre), (weights, y)))| {
                let bias = self.bias.as_ref().map(|bias| &bias[protein * l..][..l]);
                attend(pre, &q[protein * hk..][..hk], bias, self.heads, act, weights, y);
            });
        self.saved.keep(self.name(), AttentionSaved { slopes: pre, act, weights })?;
        Ok((CpuStorage::F32(y), Shape::from((b, hv))))
    }

    fn bwd(
        &self,
        local: &Tensor,
        q: &Tensor,
        w_kv: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let AttentionSaved { slopes, act, weights } = self.saved.take(name)?;
        let (b, l, c) = local.dims3()?;
        let (x, q, w, dy) = (held(name, local)?, held(name, q)?, held(name, w_kv)?, held(name, grad)?);
        let width = w.len() / c;
        let hk = q.len() / b;
        let hv = width - hk;
        let n = b * l;
        let mut d_pre = vec![0f32; n * width];
        let mut dq = vec![0f32; b * hk];
        d_pre.par_chunks_mut(l * width).zip(dq.par_chunks_mut(hk)).enumerate().for_each(|(protein, (d_pre, dq))| {
            let rows = protein * l * width..(protein + 1) * l * width;
            attend_backward(
                &slopes[rows.clone()],
                &act[rows],
                &q[protein * hk..][..hk],
                &weights[protein * self.heads.n_heads * l..][..self.heads.n_heads * l],
                &dy[protein * hv..][..hv],
                self.heads,
                d_pre,
                dq,
            );
        });
        drop((slopes, act, weights));
        // d W = localᵀ · d_pre, d local = d_pre · Wᵀ.
        // SAFETY: x is N × C, d_pre N × width, w C × width, all row-major.
        let d_w = gemm_output(c, width, |out| unsafe {
            gemm_strided(
                c,
                width,
                n,
                Strided::rows(out, width),
                Strided::transposed(x.as_ptr(), c),
                Strided::rows(d_pre.as_ptr(), width),
                false,
            )
        });
        let d_x = gemm_output(n, c, |out| unsafe {
            gemm_strided(
                n,
                c,
                width,
                Strided::rows(out, c),
                Strided::rows(d_pre.as_ptr(), width),
                Strided::transposed(w.as_ptr(), width),
                false,
            )
        });
        Ok((Some(cpu(d_x, (b, l, c))?), Some(cpu(dq, (b, hk))?), Some(cpu(d_w, (c, width))?)))
    }
}

/// ProteinBERT's global attention for training, with its own backward, on CPU f32: `local (B, L,
/// C)`, `q (B, H·dk)` (already `tanh(G · Wq)`), the flat key and value weights `(C, H·dk)` and
/// `(C, H·dv)` (joined side by side into one GEMM's), `mask (B, L)` → (`(B, H·dv)`, the attention weights `(B, H, L)`, which
/// carry no gradient); `None` where it does not apply (the caller uses candle ops).
pub fn global_attention_trained(
    local: &Tensor,
    q: &Tensor,
    (wk, wv): (&Tensor, &Tensor),
    (n_heads, d_key): (usize, usize),
    mask: Option<&Tensor>,
) -> Result<Option<(Tensor, Tensor)>> {
    if ![local, q, wk, wv].iter().all(|t| use_kernel(t)) || local.elem_count() == 0 || n_heads == 0 || d_key == 0 {
        return Ok(None);
    }
    let w_kv = Tensor::cat(&[wk, wv], 1)?;
    let (b, l, _) = local.dims3()?;
    let bias = match mask {
        Some(m) => {
            let penalty = crate::models::layers::mask_penalty(candle_core::DType::F32);
            Some((m.to_dtype(candle_core::DType::F32)?.affine(1.0, -1.0)? * penalty)?.flatten_all()?.to_vec1::<f32>()?)
        }
        None => None,
    };
    let heads = Heads { n_heads, d_key, scale: (1.0 / (d_key as f64).sqrt()) as f32 };
    let saved = Arc::new(Kept::new());
    let op = GlobalAttentionTrained { heads, bias, saved: saved.clone() };
    let y = local.contiguous()?.apply_op3(&q.contiguous()?, &w_kv.contiguous()?, op)?;
    let weights = saved
        .read(|kept| kept.weights.clone())
        .ok_or_else(|| Error::invalid("global attention: the op kept no weights"))?;
    Ok(Some((y, Tensor::from_vec(weights, (b, n_heads, l), local.device())?)))
}
