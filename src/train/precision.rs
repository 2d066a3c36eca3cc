//! Mixed precision: the model computes in bf16 or f16 while the optimiser keeps f32 master weights
//! and f32 moments, and f16's narrow range is guarded by dynamic loss scaling.
//!
//! * [`Precision`]: the `precision` field of a training config (`"f32"`, `"bf16"`, `"f16"`) and
//!   the `--precision` flag.
//! * [`HalfWeights`]: the half-precision copy of the weights the model is built on. Before every
//!   update it holds the master weights rounded; the gradients it receives go back to the master
//!   weights as f32 ([`HalfWeights::gradients_to_master`]). Checkpoints and model directories keep
//!   the f32 master weights, so a resume is bit for bit and a model directory does not depend on
//!   the precision it was trained in.
//! * [`LossScaler`]: f16 only. The loss is multiplied by the scale before the backward so small
//!   gradients do not flush to zero in f16, and the gradients are divided by it before the step.
//!   An update whose gradients hold an infinity or NaN (an overflow) is skipped and the scale
//!   halved; after `growth_interval` clean updates in a row it doubles (torch's `GradScaler`
//!   rules and defaults). Its state goes into every checkpoint.

use candle_core::backprop::GradStore;
use candle_core::DType;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::optim::Param;
use crate::models::init::SeededVarMap;
use crate::{Error, Result};

/// The dtype the model computes in.
///
/// ```
/// use protein_lm::train::precision::Precision;
/// assert_eq!("bf16".parse::<Precision>()?, Precision::Bf16);
/// assert_eq!(serde_json::to_string(&Precision::F16).unwrap(), r#""f16""#);
/// assert!("fp8".parse::<Precision>().unwrap_err().to_string().contains("f32, bf16 or f16"));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (the default, and the only choice before mixed precision existed).
    #[default]
    F32,
    /// bfloat16 compute: f32's range with 8 bits of mantissa; no loss scaling needed.
    Bf16,
    /// float16 compute with dynamic loss scaling.
    F16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" => Ok(Precision::F16),
            _ => Err(Error::invalid(format!("precision `{s}`: expected f32, bf16 or f16"))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// f16 loss-scaling settings (torch `GradScaler`'s defaults).
///
/// ```
/// use protein_lm::train::precision::LossScaleConfig;
/// let c: LossScaleConfig = serde_json::from_str(r#"{"growth_interval": 100}"#).unwrap();
/// assert_eq!((c.init_scale, c.growth_interval), (65536.0, 100));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossScaleConfig {
    /// The first scale (2^16).
    #[serde(default = "init_scale")]
    pub init_scale: f64,
    /// Clean updates in a row before the scale doubles (2,000).
    #[serde(default = "growth_interval")]
    pub growth_interval: u64,
    /// Below this scale the run stops: the gradients overflow at any scale, so something upstream
    /// is NaN or infinite (fairseq's `--min-loss-scale` 1e-4).
    #[serde(default = "min_scale")]
    pub min_scale: f64,
}

fn init_scale() -> f64 {
    65536.0
}
fn growth_interval() -> u64 {
    2000
}
fn min_scale() -> f64 {
    1e-4
}

impl Default for LossScaleConfig {
    fn default() -> Self {
        Self { init_scale: init_scale(), growth_interval: growth_interval(), min_scale: min_scale() }
    }
}

impl LossScaleConfig {
    pub fn validate(&self) -> Result<()> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !ok(self.init_scale) || !ok(self.min_scale) || self.growth_interval == 0 {
            return Err(Error::invalid(
                "training config: loss_scale.init_scale and min_scale must be positive and finite, growth_interval ≥ 1",
            ));
        }
        Ok(())
    }
}

/// What the scaler decided for one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleVerdict {
    /// The gradients are finite: step.
    Step,
    /// An overflow: skip the step (the scale was halved).
    Skip,
}

/// The dynamic loss scale and its counters (checkpointed with the loop state).
///
/// ```
/// use protein_lm::train::precision::{LossScaleConfig, LossScaler, ScaleVerdict};
/// let mut scaler = LossScaler::new(LossScaleConfig { init_scale: 8.0, growth_interval: 2, min_scale: 1.0 });
/// assert_eq!(scaler.update(false)?, ScaleVerdict::Skip); // overflow: halve
/// assert_eq!(scaler.scale, 4.0);
/// scaler.update(true)?;
/// scaler.update(true)?; // two clean updates: double
/// assert_eq!(scaler.scale, 8.0);
/// for _ in 0..3 { scaler.update(false)?; }
/// assert!(scaler.update(false).is_err()); // 8 → 0.5 is below min_scale 1
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Clean updates since the last overflow or growth.
    pub clean_steps: u64,
    /// Updates skipped so far in the run.
    pub skipped: u64,
    pub config: LossScaleConfig,
}

impl LossScaler {
    pub fn new(config: LossScaleConfig) -> Self {
        Self { scale: config.init_scale, clean_steps: 0, skipped: 0, config }
    }

    /// Records an update whose unscaled gradients were `finite` or not.
    pub fn update(&mut self, finite: bool) -> Result<ScaleVerdict> {
        if finite {
            self.clean_steps += 1;
            if self.clean_steps >= self.config.growth_interval {
                self.scale *= 2.0;
                self.clean_steps = 0;
            }
            return Ok(ScaleVerdict::Step);
        }
        self.skipped += 1;
        self.clean_steps = 0;
        self.scale *= 0.5;
        if self.scale < self.config.min_scale {
            return Err(Error::invalid(format!(
                "f16 loss scale fell to {} (below loss_scale.min_scale {}): the gradients overflow at every \
                 scale, so the loss or the model is NaN or infinite; stopping (the last checkpoint is intact)",
                self.scale, self.config.min_scale
            )));
        }
        Ok(ScaleVerdict::Skip)
    }
}

/// The half-precision copy of a model's weights that the model computes with (see the module
/// docs).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::train::precision::HalfWeights;
/// let master = SeededVarMap::new(0);
/// let build = |vb: candle_nn::VarBuilder| candle_nn::linear(3, 2, vb.pp("out"));
/// build(master.var_builder(DType::F32, &Device::Cpu))?;
/// // The model the task trains is built on bf16 copies of the f32 master weights.
/// let (half, model) = HalfWeights::build(&master, DType::BF16, build)?;
/// assert_eq!(model.weight().dtype(), DType::BF16);
/// let w = master.get_var("out.weight").unwrap();
/// let rounded = w.as_tensor().to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
/// assert_eq!(half.vars.get_var("out.weight").unwrap().as_tensor().to_dtype(DType::F32)?.to_vec2::<f32>()?, rounded.to_vec2::<f32>()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct HalfWeights {
    /// The copies, under the master weights' names.
    pub vars: SeededVarMap,
    pub dtype: DType,
}

impl HalfWeights {
    /// Builds a model with `build` on `dtype` copies of the variables of `master` (which must
    /// already hold every variable the model asks for: build the model on it first), and returns
    /// the copies with the model.
    pub fn build<M, E>(
        master: &SeededVarMap,
        dtype: DType,
        build: impl FnOnce(VarBuilder) -> std::result::Result<M, E>,
    ) -> Result<(Self, M)>
    where
        Error: From<E>,
    {
        let device = match master.vars().first() {
            Some(v) => v.device().clone(),
            None => return Err(Error::invalid("mixed precision: the master model has no variables")),
        };
        let vars = SeededVarMap::new(master.seed());
        let model = build(vars.var_builder(dtype, &device))?;
        let half = Self { vars, dtype };
        let (ours, theirs) = (half.vars.named_vars(), master.named_vars());
        if ours.len() != theirs.len() || ours.iter().zip(&theirs).any(|((a, _), (b, _))| a != b) {
            return Err(Error::invalid(format!(
                "mixed precision: the {dtype:?} model has {} variables, the f32 master model {}; build the same model on both",
                ours.len(),
                theirs.len()
            )));
        }
        half.copy_from(&theirs)?;
        Ok((half, model))
    }

    /// Sets the copies of `params` from the master values, rounded to the compute dtype.
    pub fn copy_from(&self, params: &[Param]) -> Result<()> {
        for (name, master) in params {
            let copy = self.vars.get_var(name).ok_or_else(|| {
                Error::invalid(format!("mixed precision: no {:?} copy of variable {name}", self.dtype))
            })?;
            copy.set(&master.as_tensor().to_dtype(self.dtype)?)?;
        }
        Ok(())
    }

    /// Moves the gradients of the copies in `grads` to their master variables in `params`, as f32.
    pub fn gradients_to_master(&self, grads: &mut GradStore, params: &[Param]) -> Result<()> {
        for (name, master) in params {
            let Some(copy) = self.vars.get_var(name) else { continue };
            if let Some(g) = grads.remove(copy.as_tensor()) {
                grads.insert(master.as_tensor(), g.to_dtype(master.dtype())?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn the_scaler_follows_grad_scalers_rules_and_round_trips_through_json() {
        let mut s = LossScaler::new(LossScaleConfig { growth_interval: 3, ..Default::default() });
        let mut scales = vec![];
        for finite in [true, true, false, true, true, true, true, false, false] {
            s.update(finite).unwrap();
            scales.push(s.scale);
        }
        let k = 65536.0;
        assert_eq!(scales, [k, k, k / 2.0, k / 2.0, k / 2.0, k, k, k / 2.0, k / 4.0]);
        assert_eq!((s.skipped, s.clean_steps), (3, 0));
        let back: LossScaler = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(LossScaleConfig { init_scale: 0.0, ..Default::default() }.validate().is_err());
        assert!(LossScaleConfig { growth_interval: 0, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn gradients_of_the_copies_reach_the_master_weights_as_f32() -> Result<()> {
        let master = SeededVarMap::new(3);
        let build = |vb: VarBuilder| candle_nn::linear_no_bias(4, 1, vb.pp("lin"));
        build(master.var_builder(DType::F32, &Device::Cpu))?;
        let (half, model) = HalfWeights::build(&master, DType::BF16, build)?;
        let x = Tensor::new(&[[1f32, 2.0, 3.0, 4.0]], &Device::Cpu)?.to_dtype(DType::BF16)?;
        let loss = candle_nn::Module::forward(&model, &x)?.to_dtype(DType::F32)?.sum_all()?;
        let mut grads = loss.backward()?;
        let params = master.named_vars();
        half.gradients_to_master(&mut grads, &params)?;
        let g = grads.get(params[0].1.as_tensor()).expect("a gradient on the master weight");
        assert_eq!(g.dtype(), DType::F32);
        assert_eq!(g.to_vec2::<f32>()?, vec![vec![1.0, 2.0, 3.0, 4.0]]);
        assert!(grads.get(half.vars.get_var("lin.weight").unwrap().as_tensor()).is_none());
        // A model that is not the master's is refused.
        let other = HalfWeights::build(&master, DType::BF16, |vb: VarBuilder| candle_nn::linear(4, 1, vb.pp("lin")));
        assert!(other.unwrap_err().to_string().contains("build the same model"));
        Ok(())
    }
}
