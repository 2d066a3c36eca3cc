//! `x · Wᵀ + b` as one GEMM that starts from the bias: the output rows are filled with `b` and the
//! product accumulates onto them, instead of a product followed by a broadcast add that reads and
//! writes the whole output a second time (and allocates it twice).

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::{contiguous_f32, gemm_strided, use_kernel, Strided};
use crate::Result;

/// `x (N, in) · w (out, in)ᵀ + b (out)` → `(N, out)`: the fused kernel on CPU f32, candle's matmul
/// and broadcast add elsewhere.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::models::ops::linear_bias;
/// let x = Tensor::new(&[[1f32, 2.0]], &Device::Cpu)?;
/// let w = Tensor::new(&[[1f32, 0.0], [1.0, 1.0], [0.0, -1.0]], &Device::Cpu)?;
/// let b = Tensor::new(&[10f32, 20.0, 30.0], &Device::Cpu)?;
/// assert_eq!(linear_bias(&x, &w, &b)?.to_vec2::<f32>()?, vec![vec![11.0, 23.0, 28.0]]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn linear_bias(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if use_kernel(x) && use_kernel(w) && use_kernel(b) {
        return Ok(x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, LinearBias)?);
    }
    Ok(x.matmul(&w.t()?)?.broadcast_add(b)?)
}

struct LinearBias;

/// `x (N, in) · w (out, in)ᵀ + b` → `(N, out)` row-major: the rows start as `b` and the GEMM
/// accumulates onto them. The caller checks that the sizes fit.
pub(super) fn dense_rows(x: &[f32], w: &[f32], b: &[f32], (n, inner, out): (usize, usize, usize)) -> Vec<f32> {
    assert!(x.len() >= n * inner && w.len() >= out * inner && b.len() == out, "dense_rows: sizes do not fit");
    let mut y: Vec<f32> = Vec::with_capacity(n * out);
    for _ in 0..n {
        y.extend_from_slice(b);
    }
    // SAFETY: y is N × out, x N × in, w out × in (read transposed), all contiguous row-major, and
    // the sizes were checked above.
    unsafe {
        gemm_strided(
            n,
            out,
            inner,
            Strided::rows(y.as_mut_ptr(), out),
            Strided::rows(x.as_ptr(), inner),
            Strided::transposed(w.as_ptr(), inner),
            true,
        );
    }
    y
}

impl CustomOp3 for LinearBias {
    fn name(&self) -> &'static str {
        "linear-bias"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, inner) = x_layout.shape().dims2()?;
        let (out, inner2) = w_layout.shape().dims2()?;
        if inner != inner2 || b_layout.shape().elem_count() != out {
            candle_core::bail!(
                "linear-bias: x {:?}, w {:?}, b {:?} do not fit",
                x_layout.shape(),
                w_layout.shape(),
                b_layout.shape()
            );
        }
        let (x, w, b) = (
            contiguous_f32(self.name(), x, x_layout)?,
            contiguous_f32(self.name(), w, w_layout)?,
            contiguous_f32(self.name(), b, b_layout)?,
        );
        let y = dense_rows(x, w, b, (n, inner, out));
        Ok((CpuStorage::F32(y), Shape::from((n, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d_x = grad.matmul(w)?;
        let d_w = grad.t()?.matmul(x)?;
        let d_b = grad.sum(0)?;
        Ok((Some(d_x), Some(d_w), Some(d_b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn linear_bias_matches_candle_forward_and_backward() {
        let mut rng = crate::Rng::new(31);
        let mut t = |dims: &[usize]| {
            let v: Vec<f32> = (0..dims.iter().product()).map(|_| rng.normal() as f32).collect();
            Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
        };
        let (x, w, b, r) = (t(&[13, 7]), t(&[5, 7]), t(&[5]), t(&[13, 5]));
        let ours = linear_bias(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
        let theirs = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
        let diff =
            |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff(&ours, &theirs) < 1e-5);
        let go = ours.mul(r.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let gt = theirs.mul(r.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        for var in [&x, &w, &b] {
            assert!(diff(go.get(var).unwrap(), gt.get(var).unwrap()) < 1e-5);
        }
    }
}
