//! The seam between backward and the optimiser step: accumulate → (all-reduce, later) → clip →
//! step. Each stage is a function over named parameters and a candle `GradStore`, so a
//! data-parallel all-reduce slots in between accumulation and clipping without touching either.

use candle_core::backprop::GradStore;
use candle_core::DType;

use super::optim::{global_grad_norm, Param};
use crate::{Error, Result};

/// Adds `new` into `total` (the gradients of several micro-batches before one update, as
/// fairseq's `--update-freq`): `total` takes `new` the first time.
pub fn accumulate(total: &mut Option<GradStore>, new: GradStore, params: &[Param]) -> Result<()> {
    let Some(sum) = total.as_mut() else {
        *total = Some(new);
        return Ok(());
    };
    for (_, var) in params {
        if let Some(g) = new.get(var) {
            let merged = match sum.get(var) {
                Some(old) => (old + g)?,
                None => g.clone(),
            };
            sum.insert(var, merged);
        }
    }
    Ok(())
}

/// Multiplies every gradient by `factor` (e.g. 1 / number of micro-batches, or the loss
/// normaliser fairseq applies after summing).
pub fn scale(grads: &mut GradStore, params: &[Param], factor: f64) -> Result<()> {
    for (_, var) in params {
        if let Some(g) = grads.get(var) {
            let scaled = (g * factor)?;
            grads.insert(var, scaled);
        }
    }
    Ok(())
}

/// torch's `clip_grad_norm_` (fairseq `--clip-norm`): if the global L2 norm exceeds `max_norm`,
/// scale every gradient by `max_norm / (norm + 1e-6)`. Returns the norm before clipping; an error
/// if it is not finite (a NaN or infinite loss upstream), so a run stops with its last good
/// checkpoint intact.
pub fn clip_grad_norm(grads: &mut GradStore, params: &[Param], max_norm: f64) -> Result<f64> {
    let norm = global_grad_norm(params, grads)?;
    if !norm.is_finite() {
        return Err(Error::invalid(format!("gradient norm is {norm}: the loss or a gradient is NaN or infinite")));
    }
    let coef = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && coef < 1.0 {
        scale(grads, params, coef)?;
    }
    Ok(norm)
}

/// An error if `loss` is NaN or infinite, naming the step.
pub fn check_finite_loss(loss: &candle_core::Tensor, step: u64) -> Result<f64> {
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if !value.is_finite() {
        return Err(Error::invalid(format!(
            "loss is {value} at step {step}; stopping (the last checkpoint is intact)"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn accumulate_scale_clip() {
        let a = Var::from_tensor(&Tensor::new(&[1.0f64, 2.0], &Device::Cpu).unwrap()).unwrap();
        let params: Vec<Param> = vec![("a".into(), a.clone())];
        let loss = |k: f64| (a.as_tensor().sum_all().unwrap() * k).unwrap();
        let mut total = None;
        for k in [3.0, 4.0] {
            accumulate(&mut total, loss(k).backward().unwrap(), &params).unwrap();
        }
        let mut g = total.unwrap();
        assert_eq!(g.get(&a).unwrap().to_vec1::<f64>().unwrap(), vec![7.0, 7.0]);
        scale(&mut g, &params, 0.5).unwrap();
        assert_eq!(g.get(&a).unwrap().to_vec1::<f64>().unwrap(), vec![3.5, 3.5]);
        let norm = clip_grad_norm(&mut g, &params, 1.0).unwrap();
        assert!((norm - 3.5 * 2f64.sqrt()).abs() < 1e-12);
        let clipped = g.get(&a).unwrap().to_vec1::<f64>().unwrap();
        let new_norm = (clipped[0].powi(2) + clipped[1].powi(2)).sqrt();
        assert!((new_norm - 1.0).abs() < 1e-6, "{new_norm}");
        // Below the threshold nothing changes.
        let before = g.get(&a).unwrap().to_vec1::<f64>().unwrap();
        clip_grad_norm(&mut g, &params, 10.0).unwrap();
        assert_eq!(g.get(&a).unwrap().to_vec1::<f64>().unwrap(), before);
        let nan = (a.as_tensor().sum_all().unwrap() * f64::NAN).unwrap();
        let mut bad = nan.backward().unwrap();
        assert!(clip_grad_norm(&mut bad, &params, 1.0).is_err());
        assert!(check_finite_loss(&nan, 7).unwrap_err().to_string().contains("step 7"));
    }
}
