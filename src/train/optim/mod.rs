//! The optimisers the two references train with, each written to equal the original update (checked
//! against the original implementations or a transcription of them for 5 steps on random tensors:
//! `tests/optim.rs`, fixtures in `tests/fixtures/optim/`):
//!
//! | optimiser | reference | used by |
//! |---|---|---|
//! | [`Lamb`] with [`LambVariant::Apex`] | apex `FusedLAMB` (adam_w_mode, grad averaging, bias correction, global grad-norm clip `max_grad_norm`, trust ratio only where weight decay ≠ 0) | PRoBERTa pretraining and fine-tuning: lr 2.5e-3, β (0.9, 0.999), ε 1e-8, weight decay 0.01 on every tensor, clip 1.0 |
//! | [`Lamb`] with [`LambVariant::Tfa`] | `tensorflow_addons.optimizers.LAMB` (trust ratio on every tensor, no clip) | ProteinBERT pretraining: ε 1e-6, no weight decay |
//! | [`Adam`] with [`AdamVariant::Keras`] | Keras' (legacy) Adam: `lr_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)`, `w −= lr_t·m/(√v + ε)` | ProteinBERT fine-tuning, ε 1e-7 |
//! | [`Adam`] with [`AdamVariant::TorchAdamW`] | `torch.optim.AdamW` (decoupled weight decay) | general use |
//!
//! Every optimiser keeps its state (step, first and second moments) per parameter name, so a
//! checkpoint can save and restore it ([`Optimizer::state`], [`Optimizer::load_state`]), and skips
//! parameters without a gradient (frozen ones) without touching their state. The moments are kept
//! in f64 when the parameters are f64 and in f32 otherwise.
//!
//! A contiguous f32 parameter on the CPU is updated by fused kernels (the same f32 arithmetic in at
//! most two passes over memory instead of about 25 candle ops); every other parameter (f64, on
//! CUDA, in half precision) by the candle ops.

mod fused;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Shape, Tensor, Var};

use crate::{Error, Result};

/// A named trainable parameter.
pub type Param = (String, Var);

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepStats {
    /// Global L2 norm of the gradients before any clipping.
    pub grad_norm: f64,
    /// Parameters updated (with a gradient).
    pub updated: usize,
}

/// An optimiser over named parameters.
pub trait Optimizer {
    /// One update of every parameter that has a gradient in `grads`, at learning rate `lr`.
    fn step(&mut self, params: &[Param], grads: &GradStore, lr: f64) -> Result<StepStats>;
    /// The per-parameter state every optimiser here keeps.
    fn moments(&self) -> &Moments;
    fn moments_mut(&mut self) -> &mut Moments;

    /// Steps taken so far.
    fn steps(&self) -> u64 {
        self.moments().steps
    }

    /// The state as named tensors (`m.{name}`, `v.{name}`) plus the step count.
    fn state(&self) -> (u64, HashMap<String, Tensor>) {
        self.moments().state()
    }

    /// Restores [`Optimizer::state`].
    fn load_state(&mut self, steps: u64, tensors: HashMap<String, Tensor>) -> Result<()> {
        self.moments_mut().load(steps, tensors)
    }

    /// Learning-rate factors by parameter-name prefix (the first match counts; other parameters
    /// keep factor 1): e.g. `[("head.", 10.0)]` trains a new head ten times faster than its trunk.
    fn set_lr_scales(&mut self, scales: Vec<(String, f64)>) {
        self.moments_mut().lr_scales = scales;
    }
}

/// Step count and first and second moments of every parameter, by name.
#[derive(Debug, Clone, Default)]
pub struct Moments {
    steps: u64,
    m: HashMap<String, Moment>,
    v: HashMap<String, Moment>,
    /// Settings, not state: kept across [`Optimizer::load_state`].
    lr_scales: Vec<(String, f64)>,
    /// The candle ops for every parameter, even where the fused kernels apply: the reference the
    /// fused path is tested against.
    candle_ops_only: bool,
}

/// One moment of one parameter.
#[derive(Clone)]
enum Moment {
    /// The candle-op path's, or one restored from a checkpoint.
    Tensor(Tensor),
    /// The fused path's own buffer. It is written in place, which a tensor could not be: the
    /// tensors [`Optimizer::state`] hands out (to a checkpoint, or to another optimiser's
    /// `load_state`) would change under their holder.
    Host(Vec<f32>, Shape),
}

/// The shape only, as a tensor's `Debug` shows it, not millions of values.
impl std::fmt::Debug for Moment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Moment::Tensor(t) => write!(f, "{t:?}"),
            Moment::Host(_, shape) => write!(f, "Host{shape:?}"),
        }
    }
}

impl Moment {
    fn tensor(&self) -> Tensor {
        match self {
            Moment::Tensor(t) => t.clone(),
            Moment::Host(values, shape) => {
                Tensor::from_slice(values, shape, &Device::Cpu).expect("a moment buffer has its shape's length")
            }
        }
    }
}

impl Moments {
    fn state(&self) -> (u64, HashMap<String, Tensor>) {
        let mut out = HashMap::new();
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.tensor());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.tensor());
        }
        (self.steps, out)
    }

    fn load(&mut self, steps: u64, tensors: HashMap<String, Tensor>) -> Result<()> {
        let mut m = HashMap::new();
        let mut v = HashMap::new();
        for (k, t) in tensors {
            if let Some(name) = k.strip_prefix("m.") {
                m.insert(name.to_string(), Moment::Tensor(t));
            } else if let Some(name) = k.strip_prefix("v.") {
                v.insert(name.to_string(), Moment::Tensor(t));
            } else {
                return Err(Error::invalid(format!("optimizer state has an unknown entry {k}")));
            }
        }
        *self =
            Self { steps, m, v, lr_scales: std::mem::take(&mut self.lr_scales), candle_ops_only: self.candle_ops_only };
        Ok(())
    }

    /// `m ← β₁ m + (1−β₁) g`, `v ← β₂ v + (1−β₂) g²` for `name`, returning the new pair.
    fn update(&mut self, name: &str, g: &Tensor, beta1: f64, beta2: f64) -> Result<(Tensor, Tensor)> {
        let old = |moments: &HashMap<String, Moment>| -> Result<Tensor> {
            Ok(match moments.get(name) {
                Some(Moment::Tensor(t)) => t.clone(),
                Some(host) => host.tensor().to_device(g.device())?,
                None => g.zeros_like()?,
            })
        };
        let (m_old, v_old) = (old(&self.m)?, old(&self.v)?);
        let m = ((m_old * beta1)? + (g * (1.0 - beta1))?)?;
        let v = ((v_old * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
        self.m.insert(name.to_string(), Moment::Tensor(m.clone()));
        self.v.insert(name.to_string(), Moment::Tensor(v.clone()));
        Ok((m, v))
    }

    /// `name`'s moments as the fused kernels' buffers of `shape`: zeros at first, taken over from
    /// a tensor after a restore (or a step on the candle-op path).
    fn host_buffers(&mut self, name: &str, shape: &Shape) -> Result<(&mut [f32], &mut [f32])> {
        fn buffer<'a>(
            moments: &'a mut HashMap<String, Moment>,
            which: &str,
            name: &str,
            shape: &Shape,
        ) -> Result<&'a mut [f32]> {
            let moment = moments
                .entry(name.to_string())
                .or_insert_with(|| Moment::Host(vec![0.0; shape.elem_count()], shape.clone()));
            if let Moment::Tensor(t) = moment {
                if t.shape() != shape {
                    return Err(Error::invalid(format!(
                        "optimizer state {which}.{name} has shape {:?}, the parameter {:?}",
                        t.dims(),
                        shape.dims()
                    )));
                }
                let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                *moment = Moment::Host(values, shape.clone());
            }
            match moment {
                Moment::Host(values, _) => Ok(values),
                Moment::Tensor(_) => unreachable!("replaced just above"),
            }
        }
        Ok((buffer(&mut self.m, "m", name, shape)?, buffer(&mut self.v, "v", name, shape)?))
    }
}

/// What an Adam-family update sees for one parameter on the candle-op path: its value `w`, the
/// updated moments and the bias corrections `1 − β₁ᵗ`, `1 − β₂ᵗ`.
struct UpdateInput<'a> {
    w: &'a Tensor,
    m: &'a Tensor,
    v: &'a Tensor,
    bias1: f64,
    bias2: f64,
}

/// How one parameter's new value follows from its moments, with one step's settings.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// `trust`: whether the trust ratio applies.
    Lamb {
        eps: f64,
        weight_decay: f64,
        trust: bool,
    },
    Keras {
        eps: f64,
    },
    AdamW {
        eps: f64,
        weight_decay: f64,
    },
}

impl Rule {
    /// The new value with candle ops, at the parameter's learning rate `lr`.
    fn candle(self, u: UpdateInput<'_>, lr: f64) -> Result<Tensor> {
        Ok(match self {
            Rule::Lamb { eps, weight_decay, trust } => {
                let denom = ((u.v / u.bias2)?.sqrt()? + eps)?;
                let mut update = (u.m / u.bias1)?.div(&denom)?;
                if weight_decay != 0.0 {
                    update = (update + (u.w * weight_decay)?)?;
                }
                let ratio = trust_ratio(trust, l2_norm(u.w)?, l2_norm(&update)?);
                (u.w - (update * (lr * ratio))?)?
            }
            Rule::Keras { eps } => {
                let lr_t = lr * u.bias2.sqrt() / u.bias1;
                (u.w - (u.m.div(&(u.v.sqrt()? + eps)?)? * lr_t)?)?
            }
            Rule::AdamW { eps, weight_decay } => {
                let decayed = (u.w * (1.0 - lr * weight_decay))?;
                let denom = ((u.v.sqrt()? / u.bias2.sqrt())? + eps)?;
                (decayed - (u.m.div(&denom)? * (lr / u.bias1))?)?
            }
        })
    }

    /// The same update with the fused kernels, in place on `var` and the moments `m`, `v`; the
    /// f32 constants are rounded as candle's scalar ops round them.
    fn fused(
        self,
        var: &Var,
        g: &Tensor,
        moments: (&mut [f32], &mut [f32]),
        betas: fused::Betas,
        (bias1, bias2): (f64, f64),
        lr: f64,
    ) -> Result<()> {
        match self {
            Rule::Lamb { eps, weight_decay, trust } => {
                let k = fused::LambUpdate {
                    inv_bias1: (1.0 / bias1) as f32,
                    inv_bias2: (1.0 / bias2) as f32,
                    eps: eps as f32,
                    weight_decay: (weight_decay != 0.0).then_some(weight_decay as f32),
                };
                fused::lamb(var, g, moments, (betas, k), lr, |w_norm, u_norm| trust_ratio(trust, w_norm, u_norm))
            }
            Rule::Keras { eps } => {
                let lr_t = lr * bias2.sqrt() / bias1;
                fused::adam(var, g, moments, betas, fused::AdamUpdate::Keras { lr_t: lr_t as f32, eps: eps as f32 })
            }
            Rule::AdamW { eps, weight_decay } => {
                let k = fused::AdamUpdate::AdamW {
                    decay: (1.0 - lr * weight_decay) as f32,
                    inv_sqrt_bias2: (1.0 / bias2.sqrt()) as f32,
                    eps: eps as f32,
                    step: (lr / bias1) as f32,
                };
                fused::adam(var, g, moments, betas, k)
            }
        }
    }
}

/// LAMB's trust ratio `‖w‖ / ‖update‖`, 1 where it does not apply or either norm is 0.
fn trust_ratio(trust: bool, w_norm: f64, u_norm: f64) -> f64 {
    if trust && w_norm > 0.0 && u_norm > 0.0 {
        w_norm / u_norm
    } else {
        1.0
    }
}

impl Moments {
    /// The loop every optimiser here shares: count the step, and for each parameter with a
    /// gradient (divided by `grad_divisor`) update the moments and apply `rule` at learning rate
    /// `lr` (times the parameter's factor).
    fn step(
        &mut self,
        params: &[Param],
        grads: &GradStore,
        (beta1, beta2): (f64, f64),
        grad_divisor: f64,
        lr: f64,
        rule: Rule,
    ) -> Result<usize> {
        self.steps += 1;
        let t = self.steps as i32;
        let (bias1, bias2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
        let mut updated = 0;
        for (name, var) in params {
            let Some(g) = grad_of(var, grads)? else { continue };
            let lr_scale = self.lr_scales.iter().find(|(p, _)| name.starts_with(p.as_str())).map_or(1.0, |&(_, f)| f);
            let lr = lr * lr_scale;
            if !self.candle_ops_only && fused::applies(var, &g) {
                let g = g.contiguous()?;
                let moments = self.host_buffers(name, var.shape())?;
                let betas = fused::Betas::new(beta1, beta2, grad_divisor);
                rule.fused(var, &g, moments, betas, (bias1, bias2), lr)?;
            } else {
                let g = if grad_divisor == 1.0 { g } else { (g / grad_divisor)? };
                let (m, v) = self.update(name, &g, beta1, beta2)?;
                let w = var.as_tensor().detach().to_dtype(moment_dtype(var))?;
                let new = rule.candle(UpdateInput { w: &w, m: &m, v: &v, bias1, bias2 }, lr)?;
                var.set(&new.to_dtype(var.dtype())?)?;
            }
            updated += 1;
        }
        Ok(updated)
    }
}

/// The dtype moments are kept in for a parameter.
fn moment_dtype(var: &Var) -> DType {
    if var.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// The gradient of `var` in the moments' dtype, if it has one.
fn grad_of(var: &Var, grads: &GradStore) -> Result<Option<Tensor>> {
    Ok(match grads.get(var) {
        // Gradients computed by candle keep the autograd graph of their computation, which reaches
        // back to the forward activations; moments built from them would hold every step's graph
        // alive (memory grew by ~100 MB per update before this).
        Some(g) => Some(g.detach().to_dtype(moment_dtype(var))?),
        None => None,
    })
}

fn l2_norm(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt())
}

/// Global L2 norm of the gradients of `params` (those that have one).
pub fn global_grad_norm(params: &[Param], grads: &GradStore) -> Result<f64> {
    grad_norm(params, grads, false)
}

/// [`global_grad_norm`], with candle ops for every gradient if `candle_ops_only`.
fn grad_norm(params: &[Param], grads: &GradStore, candle_ops_only: bool) -> Result<f64> {
    let mut total = 0.0;
    for (_, var) in params {
        if let Some(g) = grads.get(var) {
            let fused = if candle_ops_only { None } else { fused::sum_squares(g)? };
            total += match fused {
                Some(sum) => sum,
                None => g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?,
            };
        }
    }
    Ok(total.sqrt())
}

/// Which LAMB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LambVariant {
    /// apex `FusedLAMB` (PRoBERTa): gradients divided by `max(1, ‖g‖/max_grad_norm)` over all
    /// tensors first; the trust ratio applies only when weight decay ≠ 0 (or `nvlamb`).
    Apex { max_grad_norm: Option<f64>, nvlamb: bool },
    /// tensorflow-addons `LAMB` (ProteinBERT): no clipping, trust ratio on every tensor.
    Tfa,
}

/// LAMB (You et al. 2020): Adam moments with bias correction, decoupled weight decay added to the
/// update, and a per-tensor trust ratio `‖w‖ / ‖update‖` (1 when either norm is 0).
#[derive(Debug, Clone)]
pub struct Lamb {
    pub variant: LambVariant,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    moments: Moments,
}

impl Lamb {
    /// PRoBERTa's: apex FusedLAMB, β (0.9, 0.999), ε 1e-8, weight decay 0.01, clip 1.0.
    pub fn apex_proberta() -> Self {
        Self::new(LambVariant::Apex { max_grad_norm: Some(1.0), nvlamb: false }, 0.9, 0.999, 1e-8, 0.01)
    }

    /// ProteinBERT's pretraining optimiser: tensorflow-addons LAMB, ε 1e-6, no weight decay.
    pub fn tfa_proteinbert() -> Self {
        Self::new(LambVariant::Tfa, 0.9, 0.999, 1e-6, 0.0)
    }

    pub fn new(variant: LambVariant, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        Self { variant, beta1, beta2, eps, weight_decay, moments: Moments::default() }
    }
}

impl Optimizer for Lamb {
    fn step(&mut self, params: &[Param], grads: &GradStore, lr: f64) -> Result<StepStats> {
        let grad_norm = grad_norm(params, grads, self.moments.candle_ops_only)?;
        let clip = match self.variant {
            LambVariant::Apex { max_grad_norm: Some(max), .. } if grad_norm > max => grad_norm / max,
            _ => 1.0,
        };
        let trust = match self.variant {
            LambVariant::Apex { nvlamb, .. } => nvlamb || self.weight_decay != 0.0,
            LambVariant::Tfa => true,
        };
        let rule = Rule::Lamb { eps: self.eps, weight_decay: self.weight_decay, trust };
        let updated = self.moments.step(params, grads, (self.beta1, self.beta2), clip, lr, rule)?;
        Ok(StepStats { grad_norm, updated })
    }

    fn moments(&self) -> &Moments {
        &self.moments
    }

    fn moments_mut(&mut self) -> &mut Moments {
        &mut self.moments
    }
}

/// Which Adam.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AdamVariant {
    /// Keras' legacy Adam (TF's `ApplyAdam`): `lr_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)`, `w −= lr_t·m/(√v + ε)`,
    /// ε outside the bias correction; L2-free.
    Keras,
    /// `torch.optim.AdamW`: `w −= lr·wd·w` first, then `w −= lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`.
    TorchAdamW,
}

/// Adam in the two forms the references use.
#[derive(Debug, Clone)]
pub struct Adam {
    pub variant: AdamVariant,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    moments: Moments,
}

impl Adam {
    /// ProteinBERT's fine-tuning optimiser: Keras Adam, ε 1e-7.
    pub fn keras() -> Self {
        Self::new(AdamVariant::Keras, 0.9, 0.999, 1e-7, 0.0)
    }

    /// `torch.optim.AdamW` with its defaults (ε 1e-8) and the given weight decay.
    pub fn adamw(weight_decay: f64) -> Self {
        Self::new(AdamVariant::TorchAdamW, 0.9, 0.999, 1e-8, weight_decay)
    }

    pub fn new(variant: AdamVariant, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        Self { variant, beta1, beta2, eps, weight_decay, moments: Moments::default() }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &[Param], grads: &GradStore, lr: f64) -> Result<StepStats> {
        let grad_norm = grad_norm(params, grads, self.moments.candle_ops_only)?;
        let rule = match self.variant {
            AdamVariant::Keras => Rule::Keras { eps: self.eps },
            AdamVariant::TorchAdamW => Rule::AdamW { eps: self.eps, weight_decay: self.weight_decay },
        };
        let updated = self.moments.step(params, grads, (self.beta1, self.beta2), 1.0, lr, rule)?;
        Ok(StepStats { grad_norm, updated })
    }

    fn moments(&self) -> &Moments {
        &self.moments
    }

    fn moments_mut(&mut self) -> &mut Moments {
        &mut self.moments
    }
}
