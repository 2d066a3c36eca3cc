//! Exact (erf) GELU and tanh as one vectorised, threaded pass each, with their derivatives.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, use_kernel, CHUNK};
use crate::Result;

/// `exp(x)` in f32 by range reduction `x = n ln 2 + r`, |r| ≤ ln2/2, and a degree-6 polynomial;
/// branch-free (clamped) so loops over it vectorise.
///
/// The polynomials here are Horner chains of `mul_add`: inside the kernels' AVX2 + FMA versions
/// (`multiversion!`) each step is one fused multiply-add instead of a multiply and an add (LLVM
/// never fuses them itself), and one rounding instead of two; the baseline version calls libm's
/// `fmaf`, which rounds the same, only slower.
#[inline(always)]
pub(super) fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest with the 1.5·2²³ trick: `round()` is a libm call without SSE4.1.
    const MAGIC: f32 = 12_582_912.0;
    let n = x.mul_add(std::f32::consts::LOG2_E, MAGIC) - MAGIC;
    // ln 2 split in two so `x − n ln 2` keeps its low bits.
    let r = (-n).mul_add(1.428_606_8e-6, (-n).mul_add(0.693_145_75, x));
    let mut p = 0.001_388_889f32;
    for c in [0.008_333_334, 0.041_666_668, 0.166_666_67, 0.5, 1.0, 1.0] {
        p = p.mul_add(r, c);
    }
    // SAFETY: x is clamped, so n is an integer in [−126, 127]. (`as i32` saturates, which
    // compiles to a scalar compare and move per lane and stopped the loops from vectorising.)
    let scale = f32::from_bits(((unsafe { n.to_int_unchecked::<i32>() } + 127) as u32) << 23);
    p * scale
}

/// `erfc(z)` (Numerical Recipes `erfcc`, fractional error < 1.2e-7 for all z).
#[inline(always)]
fn fast_erfc(z: f32) -> f32 {
    let a = z.abs();
    let t = 1.0 / a.mul_add(0.5, 1.0);
    let mut poly = 0.170_872_77f32;
    for c in [
        -0.822_152_23,
        1.488_515_9,
        -1.135_204,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_7,
        -1.265_512_2,
    ] {
        poly = poly.mul_add(t, c);
    }
    let ans = t * fast_exp((-a).mul_add(a, poly));
    if z >= 0.0 {
        ans
    } else {
        2.0 - ans
    }
}

#[inline(always)]
pub(super) fn gelu(x: f32) -> f32 {
    0.5 * x * fast_erfc(-x * std::f32::consts::FRAC_1_SQRT_2)
}

const INV_SQRT_2PI: f32 = 0.398_942_3;

/// d/dx GELU = Φ(x) + x φ(x).
#[inline(always)]
fn gelu_grad(x: f32) -> f32 {
    0.5 * fast_erfc(-x * std::f32::consts::FRAC_1_SQRT_2) + x * INV_SQRT_2PI * fast_exp(-0.5 * x * x)
}

/// `(gelu(x), gelu'(x))` sharing one `erfc`: the training ops keep the slope from the forward pass
/// instead of evaluating `erfc` again in the backward.
#[inline(always)]
pub(super) fn gelu_with_grad(x: f32) -> (f32, f32) {
    let phi2 = fast_erfc(-x * std::f32::consts::FRAC_1_SQRT_2);
    (0.5 * x * phi2, 0.5 * phi2 + x * INV_SQRT_2PI * fast_exp(-0.5 * x * x))
}

#[inline(always)]
pub(super) fn tanh(x: f32) -> f32 {
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
    Tanh,
}

multiversion! {
    // Plain loops: an iterator's `for_each` compiles to a `fold` that is not inlined, so it ran
    // outside the AVX2 version, four lanes wide without FMA (8 % of a ProteinBERT training step).
    fn apply_slice(kind: Kind, input: &[f32], output: &mut [f32]) {
        match kind {
            Kind::Gelu => {
                for (o, &x) in output.iter_mut().zip(input) {
                    *o = gelu(x);
                }
            }
            Kind::Tanh => {
                for (o, &x) in output.iter_mut().zip(input) {
                    *o = tanh(x);
                }
            }
        }
    }
}

multiversion! {
    /// `d_input = d_output · f'(x)`, with f' from the input (GELU) or the output (tanh: 1 − y²).
    fn backward_slice(kind: Kind, saved: &[f32], d_output: &[f32], d_input: &mut [f32]) {
        match kind {
            Kind::Gelu => {
                for ((o, &x), &g) in d_input.iter_mut().zip(saved).zip(d_output) {
                    *o = g * gelu_grad(x);
                }
            }
            Kind::Tanh => {
                for ((o, &y), &g) in d_input.iter_mut().zip(saved).zip(d_output) {
                    *o = g * (1.0 - y * y);
                }
            }
        }
    }
}

fn apply(kind: Kind, input: &[f32]) -> Vec<f32> {
    let mut output = vec![0f32; input.len()];
    output.par_chunks_mut(CHUNK).zip(input.par_chunks(CHUNK)).for_each(|(out, inp)| apply_slice(kind, inp, out));
    output
}

struct Elementwise(Kind);

impl CustomOp1 for Elementwise {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Gelu => "fast-gelu-erf",
            Kind::Tanh => "fast-tanh",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let values = contiguous_f32(self.name(), storage, layout)?;
        Ok((CpuStorage::F32(apply(self.0, values)), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let saved = match self.0 {
            Kind::Gelu => arg,
            Kind::Tanh => res,
        };
        Ok(Some(grad_res.contiguous()?.apply_op2_no_bwd(saved, &ElementwiseBackward(self.0))?))
    }
}

/// `(d_output, saved)` → `d_input` in one pass (candle's `mul` after a separate derivative pass
/// made and read one more tensor the size of the activation).
struct ElementwiseBackward(Kind);

impl candle_core::CustomOp2 for ElementwiseBackward {
    fn name(&self) -> &'static str {
        "fast-elementwise-backward"
    }

    fn cpu_fwd(
        &self,
        d_output: &CpuStorage,
        d_output_layout: &Layout,
        saved: &CpuStorage,
        saved_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d_output = contiguous_f32(self.name(), d_output, d_output_layout)?;
        let saved = contiguous_f32(self.name(), saved, saved_layout)?;
        if d_output.len() != saved.len() {
            candle_core::bail!("{}: {} output gradients for {} values", self.name(), d_output.len(), saved.len())
        }
        let mut d_input = vec![0f32; saved.len()];
        d_input
            .par_chunks_mut(CHUNK)
            .zip(saved.par_chunks(CHUNK).zip(d_output.par_chunks(CHUNK)))
            .for_each(|(out, (s, g))| backward_slice(self.0, s, g, out));
        Ok((CpuStorage::F32(d_input), saved_layout.shape().clone()))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

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
            // The training ops' shared evaluation gives the same bits as the two separate ones.
            assert_eq!(gelu_with_grad(x), (super::gelu(x), gelu_grad(x)), "x = {x}");
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
