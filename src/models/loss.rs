//! Numerically stable losses from logits.
//!
//! Both references compute their losses from probabilities: Keras clips them to [1e-7, 1 − 1e-7]
//! (so ProteinBERT's per-element loss saturates at −ln 1e-7 ≈ 16.1), fairseq uses log-softmax.
//! Here every loss is computed from logits (log-sigmoid / log-softmax), which is finite and has
//! finite gradients for any finite logit; it differs from Keras only where Keras clips.
//!
//! Half-precision inputs are promoted to f32 before the loss, because the sums below lose most of
//! their digits in f16/bf16.

use candle_core::{DType, Tensor, D};

use crate::{Error, Result};

/// How per-element losses `l` with weights `w` (1 where no weights are given) become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// `Σ w·l / Σ w`: the mean over what counts (fairseq-style; ignored positions have w = 0).
    /// A batch with `Σ w = 0` gives 0, not NaN.
    WeightedMean,
    /// `Σ w·l`.
    Sum,
    /// `Σ w·l / N`, N = every element or position, counted or not: Keras' reduction with sample
    /// weights. ProteinBERT: token loss = Σ(w·CE)/(B·L); annotation loss = Σ_b w_b·mean_j BCE / B.
    MeanOverAll,
}

// Keeps `Σ w·l / Σ w` at 0 when nothing counts, and is representable in f32.
const TINY_WEIGHT_SUM: f64 = 1e-30;

fn loss_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        other => other,
    }
}

fn reduce(losses: &Tensor, weights: &Tensor, reduction: Reduction) -> Result<Tensor> {
    let weighted = losses.mul(weights)?.sum_all()?;
    Ok(match reduction {
        Reduction::Sum => weighted,
        Reduction::WeightedMean => {
            let total = weights.sum_all()?.maximum(TINY_WEIGHT_SUM)?;
            weighted.div(&total)?
        }
        Reduction::MeanOverAll => (weighted / losses.elem_count().max(1) as f64)?,
    })
}

/// Per-element binary cross-entropy from logits `x` and targets `z ∈ [0, 1]` (same shape):
/// `max(x, 0) − x·z + ln(1 + e^{−|x|})`, i.e. `−z·ln σ(x) − (1−z)·ln(1−σ(x))` without overflow.
pub fn binary_cross_entropy_with_logits_elementwise(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.shape() != targets.shape() {
        return Err(Error::invalid(format!(
            "binary cross-entropy: logits {:?} and targets {:?} differ in shape",
            logits.dims(),
            targets.dims()
        )));
    }
    let dtype = loss_dtype(logits.dtype());
    let x = logits.to_dtype(dtype)?;
    let z = targets.to_dtype(dtype)?;
    // e^{−|x|} ≤ 1, so the log never sees more than 2; at x = 0 the |x| terms' (sub)gradients
    // cancel exactly (½ − e/(1+e) = 0), so the kink of |x| does not leak into the gradient.
    let softplus_neg_abs = log1p(&x.abs()?.neg()?.exp()?)?;
    Ok(x.relu()?.sub(&x.mul(&z)?)?.add(&softplus_neg_abs)?)
}

/// `ln(1 + u)` accurate for tiny `u` (candle has no `log1p`): with `w = fl(1 + u)`,
/// `ln w − ((w − 1) − u)/w` removes the rounding of `1 + u` to first order, and gives exactly `u`
/// when `w` rounds to 1. Every term is finite, so the gradient (≈ 1/w) is too.
fn log1p(u: &Tensor) -> Result<Tensor> {
    let w = u.affine(1.0, 1.0)?;
    let rounding = w.affine(1.0, -1.0)?.sub(u)?;
    Ok(w.log()?.sub(&rounding.div(&w)?)?)
}

/// Binary cross-entropy from logits, reduced. `weights` may have the logits' shape (per element)
/// or be a vector of length `logits.dim(0)` (per sample, e.g. ProteinBERT's "has annotations"
/// flag), broadcast over the other axes.
pub fn binary_cross_entropy_with_logits(
    logits: &Tensor,
    targets: &Tensor,
    weights: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    let losses = binary_cross_entropy_with_logits_elementwise(logits, targets)?;
    let weights = match weights {
        None => losses.ones_like()?,
        Some(w) => broadcast_weights(w, &losses)?,
    };
    reduce(&losses, &weights, reduction)
}

fn broadcast_weights(weights: &Tensor, losses: &Tensor) -> Result<Tensor> {
    let weights = weights.to_dtype(losses.dtype())?;
    if weights.shape() == losses.shape() {
        return Ok(weights);
    }
    let rank = losses.rank();
    if weights.rank() == 1 && rank >= 1 && weights.dim(0)? == losses.dim(0)? {
        let mut dims = vec![1usize; rank];
        dims[0] = losses.dim(0)?;
        return Ok(weights.reshape(dims)?.broadcast_as(losses.shape())?);
    }
    Err(Error::invalid(format!(
        "loss weights must have shape {:?} or ({}), got {:?}",
        losses.dims(),
        losses.dims().first().copied().unwrap_or(0),
        weights.dims()
    )))
}

/// Per-position cross-entropy `−ln softmax(logits)[target]` for logits `(N, C)` or `(B, L, C)`
/// and u32 targets `(N)` or `(B, L)`, flattened to `(N)`, plus the 0/1 mask of counted positions
/// (0 where the target equals `ignore_index`; those positions have loss 0).
pub fn cross_entropy_per_position(
    logits: &Tensor,
    targets: &Tensor,
    ignore_index: Option<u32>,
) -> Result<(Tensor, Tensor)> {
    let original_dims = logits.dims().to_vec();
    let (rows, classes, logits) = match logits.dims() {
        &[n, c] => (n, c, logits.clone()),
        &[b, l, c] => (b * l, c, logits.reshape((b * l, c))?),
        other => {
            return Err(Error::invalid(format!("cross-entropy logits must be (N, C) or (B, L, C), got {other:?}")))
        }
    };
    if targets.dtype() != DType::U32 {
        return Err(Error::invalid(format!("cross-entropy targets must be u32, got {:?}", targets.dtype())));
    }
    let leading = &original_dims[..original_dims.len() - 1];
    if targets.dims() != leading {
        return Err(Error::invalid(format!(
            "cross-entropy targets must have shape {leading:?} for logits {original_dims:?}, got {:?}",
            targets.dims()
        )));
    }
    // Targets are small and usually come from the host anyway; checking them here turns an
    // out-of-range class into an error naming the position instead of a failed gather.
    let host_targets = targets.flatten_all()?.to_vec1::<u32>()?;
    let mut safe_targets = Vec::with_capacity(rows);
    let mut counted = Vec::with_capacity(rows);
    for (position, &target) in host_targets.iter().enumerate() {
        if Some(target) == ignore_index {
            safe_targets.push(0u32);
            counted.push(0f32);
        } else if (target as usize) < classes {
            safe_targets.push(target);
            counted.push(1f32);
        } else {
            return Err(Error::invalid(format!(
                "cross-entropy target {target} at position {position} is not a class (C = {classes})"
            )));
        }
    }
    let device = logits.device();
    let dtype = loss_dtype(logits.dtype());
    let log_probs = candle_nn::ops::log_softmax(&logits.to_dtype(dtype)?, D::Minus1)?;
    let safe_targets = Tensor::from_vec(safe_targets, (rows, 1), device)?;
    let counted = Tensor::from_vec(counted, rows, device)?.to_dtype(dtype)?;
    let picked = log_probs.gather(&safe_targets, 1)?.squeeze(1)?;
    Ok((picked.neg()?.mul(&counted)?, counted))
}

/// Cross-entropy over classes from logits `(N, C)` or `(B, L, C)` with u32 targets `(N)` or
/// `(B, L)`. Positions whose target is `ignore_index` count with weight 0; `weights` (shape of
/// the targets) scale the others. With [`Reduction::WeightedMean`] the denominator is the sum of
/// the weights of counted positions; with [`Reduction::MeanOverAll`] it is every position.
pub fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    ignore_index: Option<u32>,
    weights: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    let (losses, counted) = cross_entropy_per_position(logits, targets, ignore_index)?;
    let weights = match weights {
        None => counted,
        Some(w) => {
            if w.elem_count() != losses.elem_count() || w.dims() != targets.dims() {
                return Err(Error::invalid(format!(
                    "cross-entropy weights must have the targets' shape {:?}, got {:?}",
                    targets.dims(),
                    w.dims()
                )));
            }
            w.flatten_all()?.to_dtype(losses.dtype())?.mul(&counted)?
        }
    };
    reduce(&losses, &weights, reduction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn bce_reference(x: f64, z: f64) -> f64 {
        x.max(0.0) - x * z + (-x.abs()).exp().ln_1p()
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    fn vec_of(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
    }

    fn max_rel_err(got: &[f64], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter().zip(want).map(|(g, w)| (g - w).abs() / w.abs().max(1e-300)).fold(0.0, f64::max)
    }

    const XS: [f64; 8] = [-100.0, -30.0, -2.5, -1e-3, 0.0, 0.7, 30.0, 100.0];
    const ZS: [f64; 8] = [0.0, 1.0, 0.3, 1.0, 1.0, 0.0, 0.0, 1.0];

    #[test]
    fn bce_elementwise_matches_f64_reference_including_extreme_logits() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&XS, &dev)?;
        let z = Tensor::new(&ZS, &dev)?;
        let got = vec_of(&binary_cross_entropy_with_logits_elementwise(&x, &z)?);
        let want: Vec<f64> = XS.iter().zip(&ZS).map(|(&x, &z)| bce_reference(x, z)).collect();
        // Hand values: x=0,z=1 → ln 2; x=−100,z=0 → ln(1+e^−100) ≈ 3.72e−44; x=100,z=1 → same.
        assert!((want[4] - std::f64::consts::LN_2).abs() < 1e-15);
        assert!((want[0] - 3.720075976020836e-44).abs() < 1e-58);
        let err = max_rel_err(&got, &want);
        eprintln!("bce f64 vs reference: max relative error {err:.3e}");
        assert!(err < 1e-13, "{got:?} vs {want:?}");
        // Where the naive formula is exact enough, it agrees.
        for (i, (&x, &z)) in XS.iter().zip(&ZS).enumerate().skip(2).take(4) {
            let naive = -z * sigmoid(x).ln() - (1.0 - z) * (1.0 - sigmoid(x)).ln();
            assert!((got[i] - naive).abs() < 1e-9, "x={x}: {} vs {naive}", got[i]);
        }
        // f32 at ±100: finite, and the confident-and-wrong case costs |x|.
        let got32 =
            vec_of(&binary_cross_entropy_with_logits_elementwise(&x.to_dtype(DType::F32)?, &z.to_dtype(DType::F32)?)?);
        assert!(got32.iter().all(|v| v.is_finite()));
        let wrong = binary_cross_entropy_with_logits_elementwise(
            &Tensor::new(&[100f32, -100.], &dev)?,
            &Tensor::new(&[0f32, 1.], &dev)?,
        )?;
        assert_eq!(vec_of(&wrong), [100.0, 100.0]);
        Ok(())
    }

    #[test]
    fn bce_gradient_is_sigmoid_minus_target_and_finite_at_extremes() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F64, DType::F32] {
            let x = Var::from_tensor(&Tensor::new(&XS, &dev)?.to_dtype(dtype)?)?;
            let z = Tensor::new(&ZS, &dev)?.to_dtype(dtype)?;
            let loss = binary_cross_entropy_with_logits(&x, &z, None, Reduction::Sum)?;
            let grad = vec_of(loss.backward()?.get(&x).unwrap());
            let want: Vec<f64> = XS.iter().zip(&ZS).map(|(&x, &z)| sigmoid(x) - z).collect();
            let err = grad.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
            eprintln!("bce {dtype:?} gradient vs σ(x)−z: max abs error {err:.3e}");
            assert!(grad.iter().all(|g| g.is_finite()));
            let tolerance = if dtype == DType::F64 { 1e-15 } else { 1e-6 };
            assert!(err < tolerance, "{dtype:?}: {grad:?} vs {want:?}");
        }
        Ok(())
    }

    #[test]
    fn bce_reductions_with_per_sample_weights_follow_keras() -> Result<()> {
        let dev = Device::Cpu;
        let xs = [[2.0f64, -1.0, 0.5], [0.0, 3.0, -4.0]];
        let zs = [[1.0f64, 0.0, 1.0], [0.0, 1.0, 1.0]];
        let w = [1.0f64, 0.0];
        let l: Vec<Vec<f64>> = (0..2).map(|b| (0..3).map(|j| bce_reference(xs[b][j], zs[b][j])).collect()).collect();
        let x = Tensor::new(&xs, &dev)?;
        let z = Tensor::new(&zs, &dev)?;
        let wt = Tensor::new(&w, &dev)?;
        let scalar = |r: Reduction| -> Result<f64> {
            Ok(binary_cross_entropy_with_logits(&x, &z, Some(&wt), r)?.to_scalar::<f64>()?)
        };
        // Keras: Σ_b w_b·mean_j BCE / B.
        let keras = (w[0] * l[0].iter().sum::<f64>() / 3.0 + w[1] * l[1].iter().sum::<f64>() / 3.0) / 2.0;
        assert!((scalar(Reduction::MeanOverAll)? - keras).abs() < 1e-15);
        let sum = l[0].iter().sum::<f64>();
        assert!((scalar(Reduction::Sum)? - sum).abs() < 1e-14);
        assert!((scalar(Reduction::WeightedMean)? - sum / 3.0).abs() < 1e-15);
        let unweighted = binary_cross_entropy_with_logits(&x, &z, None, Reduction::WeightedMean)?.to_scalar::<f64>()?;
        let mean = l.iter().flatten().sum::<f64>() / 6.0;
        assert!((unweighted - mean).abs() < 1e-15);

        let zero = Tensor::zeros(2, DType::F64, &dev)?;
        let nothing = binary_cross_entropy_with_logits(&x, &z, Some(&zero), Reduction::WeightedMean)?;
        assert_eq!(nothing.to_scalar::<f64>()?, 0.0);
        let bad = Tensor::ones(3, DType::F64, &dev)?;
        assert!(binary_cross_entropy_with_logits(&x, &z, Some(&bad), Reduction::Sum).is_err());
        assert!(binary_cross_entropy_with_logits(&x, &z.narrow(1, 0, 2)?, None, Reduction::Sum).is_err());
        Ok(())
    }

    fn ce_reference(row: &[f64], target: usize) -> f64 {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        lse - row[target]
    }

    const LOGITS: [[f64; 3]; 4] = [[0.0, 0.0, 0.0], [100.0, -100.0, 0.0], [1.0, 2.0, 3.0], [-100.0, 100.0, 50.0]];
    const TARGETS: [u32; 4] = [1, 1, 2, 0];

    #[test]
    fn cross_entropy_matches_f64_reference_with_extreme_logits() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&LOGITS, &dev)?;
        let targets = Tensor::new(&TARGETS, &dev)?;
        let want: Vec<f64> = LOGITS.iter().zip(&TARGETS).map(|(row, &t)| ce_reference(row, t as usize)).collect();
        // Hand values: uniform row → ln 3; [100, −100, 0] with target 1 → 200 + ln(1 + e^−100).
        assert!((want[0] - 3f64.ln()).abs() < 1e-15);
        assert!((want[1] - 200.0).abs() < 1e-12);
        let (per_position, counted) = cross_entropy_per_position(&logits, &targets, None)?;
        let got = vec_of(&per_position);
        let err = max_rel_err(&got, &want);
        eprintln!("cross-entropy f64 vs reference: max relative error {err:.3e}");
        assert!(err < 1e-14, "{got:?} vs {want:?}");
        assert_eq!(vec_of(&counted), [1.0; 4]);

        let mean = cross_entropy(&logits, &targets, None, None, Reduction::WeightedMean)?;
        let want_mean = want.iter().sum::<f64>() / 4.0;
        assert!((mean.to_scalar::<f64>()? - want_mean).abs() < 1e-12);

        let logits32 = Var::from_tensor(&logits.to_dtype(DType::F32)?)?;
        let loss = cross_entropy(logits32.as_tensor(), &targets, None, None, Reduction::Sum)?;
        assert!((loss.to_scalar::<f32>()? as f64 - want.iter().sum::<f64>()).abs() < 1e-3);
        let grad = vec_of(loss.backward()?.get(&logits32).unwrap());
        // ∂CE/∂logit = softmax − onehot.
        let mut worst: f64 = 0.0;
        for (r, row) in LOGITS.iter().enumerate() {
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let denom: f64 = row.iter().map(|v| (v - max).exp()).sum();
            for c in 0..3 {
                let onehot = if c == TARGETS[r] as usize { 1.0 } else { 0.0 };
                let want = (row[c] - max).exp() / denom - onehot;
                worst = worst.max((grad[r * 3 + c] - want).abs());
            }
        }
        eprintln!("cross-entropy f32 gradient vs softmax−onehot: max abs error {worst:.3e}");
        assert!(grad.iter().all(|g| g.is_finite()));
        assert!(worst < 1e-6);
        Ok(())
    }

    #[test]
    fn cross_entropy_reductions_ignore_index_weights_and_3d_logits() -> Result<()> {
        let dev = Device::Cpu;
        // (B=2, L=2, C=3), pad id 1 ignored: positions 0 and 1 count, 2 and 3 are ignored.
        let logits = Tensor::new(&LOGITS, &dev)?.reshape((2, 2, 3))?;
        let targets = Tensor::new(&[[0u32, 2], [1, 1]], &dev)?;
        let weights = Tensor::new(&[[2.0f64, 0.5], [7.0, 7.0]], &dev)?;
        let ce0 = ce_reference(&LOGITS[0], 0);
        let ce1 = ce_reference(&LOGITS[1], 2);
        let scalar = |w: Option<&Tensor>, r: Reduction| -> Result<f64> {
            Ok(cross_entropy(&logits, &targets, Some(1), w, r)?.to_scalar::<f64>()?)
        };
        assert!((scalar(None, Reduction::WeightedMean)? - (ce0 + ce1) / 2.0).abs() < 1e-13);
        assert!((scalar(None, Reduction::Sum)? - (ce0 + ce1)).abs() < 1e-13);
        assert!((scalar(None, Reduction::MeanOverAll)? - (ce0 + ce1) / 4.0).abs() < 1e-13);
        let weighted = 2.0 * ce0 + 0.5 * ce1;
        assert!((scalar(Some(&weights), Reduction::Sum)? - weighted).abs() < 1e-13);
        assert!((scalar(Some(&weights), Reduction::WeightedMean)? - weighted / 2.5).abs() < 1e-13);
        // Keras (ProteinBERT): Σ(w·CE)/(B·L).
        assert!((scalar(Some(&weights), Reduction::MeanOverAll)? - weighted / 4.0).abs() < 1e-13);

        let flat = cross_entropy(&logits.reshape((4, 3))?, &targets.flatten_all()?, Some(1), None, Reduction::Sum)?;
        assert!((flat.to_scalar::<f64>()? - (ce0 + ce1)).abs() < 1e-13);

        let all_ignored = Tensor::new(&[[1u32, 1], [1, 1]], &dev)?;
        let zero = cross_entropy(&logits, &all_ignored, Some(1), None, Reduction::WeightedMean)?;
        assert_eq!(zero.to_scalar::<f64>()?, 0.0);
        Ok(())
    }

    #[test]
    fn cross_entropy_rejects_bad_targets() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&LOGITS, &dev)?;
        let out_of_range = Tensor::new(&[0u32, 3, 1, 1], &dev)?;
        let err = cross_entropy(&logits, &out_of_range, None, None, Reduction::Sum).unwrap_err();
        assert!(err.to_string().contains("position 1"), "{err}");
        // An ignore index outside the classes is fine (it never reaches the gather).
        let ignored = Tensor::new(&[0u32, 99, 1, 1], &dev)?;
        assert!(cross_entropy(&logits, &ignored, Some(99), None, Reduction::Sum).is_ok());
        let short = Tensor::new(&[0u32, 1], &dev)?;
        assert!(cross_entropy(&logits, &short, None, None, Reduction::Sum).is_err());
        let float = Tensor::new(&[0f32, 1., 1., 1.], &dev)?;
        assert!(cross_entropy(&logits, &float, None, None, Reduction::Sum).is_err());
        let wrong_weights = Tensor::ones(3, DType::F64, &dev)?;
        assert!(
            cross_entropy(&logits, &Tensor::new(&TARGETS, &dev)?, None, Some(&wrong_weights), Reduction::Sum).is_err()
        );
        Ok(())
    }
}
