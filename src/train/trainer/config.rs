//! What a run is told: learning-rate schedule, optimiser, plateau and early stopping, and the
//! rest of [`TrainConfig`].

use serde::{Deserialize, Serialize};

use crate::train::optim::{Adam, AdamVariant, Lamb, LambVariant, Optimizer};
use crate::train::precision::{LossScaleConfig, Precision};
use crate::train::schedule::PolynomialDecay;
use crate::{Error, Result};

/// Learning-rate schedule.
///
/// ```
/// use protein_lm::train::schedule::PolynomialDecay;
/// use protein_lm::train::trainer::LrSchedule;
/// // fairseq's warm-up over 10 updates to 1e-3, then linear decay to 0 at update 110.
/// let schedule = LrSchedule::Polynomial(PolynomialDecay { peak_lr: 1e-3, warmup_updates: 10, total_updates: 110, end_lr: 0.0, power: 1.0 });
/// let close = |k: u64, lr: f64| (schedule.lr(k) - lr).abs() < 1e-12;
/// assert!(close(1, 1e-4) && close(11, 1e-3) && close(61, 5e-4) && close(200, 0.0));
/// assert_eq!(LrSchedule::Constant { lr: 3e-4 }.lr(1000), 3e-4);
/// let json = serde_json::to_string(&LrSchedule::Constant { lr: 3e-4 }).unwrap();
/// assert_eq!(json, r#"{"kind":"constant","lr":0.0003}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LrSchedule {
    Constant {
        lr: f64,
    },
    /// fairseq's linear warm-up then polynomial (linear at power 1) decay.
    Polynomial(PolynomialDecay),
}

impl LrSchedule {
    /// The rate of update `k` (1-based) before any plateau reduction.
    pub fn lr(&self, k: u64) -> f64 {
        match self {
            LrSchedule::Constant { lr } => *lr,
            LrSchedule::Polynomial(p) => p.lr(k),
        }
    }
}

/// Optimiser choice, with the references' settings as presets.
///
/// ```
/// use protein_lm::train::trainer::{OptimizerConfig, TrainConfig};
/// // The references' optimisers: PRoBERTa's apex LAMB, ProteinBERT's Keras Adam.
/// let mut config = TrainConfig::epochs(3, 2.5e-3);
/// config.optimizer = OptimizerConfig::lamb_apex();
/// assert!(config.validate().is_ok());
/// let json = serde_json::to_value(OptimizerConfig::adam_keras()).unwrap();
/// assert_eq!((json["kind"].as_str(), json["eps"].as_f64()), (Some("adam_keras"), Some(1e-7)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OptimizerConfig {
    /// apex FusedLAMB (PRoBERTa): β (0.9, 0.999), ε 1e-8, weight decay 0.01, clip 1.0 inside.
    LambApex { beta1: f64, beta2: f64, eps: f64, weight_decay: f64, max_grad_norm: Option<f64> },
    /// tensorflow-addons LAMB (ProteinBERT pretraining): ε 1e-6, no weight decay.
    LambTfa { beta1: f64, beta2: f64, eps: f64, weight_decay: f64 },
    /// Keras Adam (ProteinBERT fine-tuning): ε 1e-7.
    AdamKeras { beta1: f64, beta2: f64, eps: f64 },
    /// torch AdamW.
    AdamW { beta1: f64, beta2: f64, eps: f64, weight_decay: f64 },
}

impl OptimizerConfig {
    pub fn lamb_apex() -> Self {
        OptimizerConfig::LambApex { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_grad_norm: Some(1.0) }
    }
    pub fn lamb_tfa() -> Self {
        OptimizerConfig::LambTfa { beta1: 0.9, beta2: 0.999, eps: 1e-6, weight_decay: 0.0 }
    }
    pub fn adam_keras() -> Self {
        OptimizerConfig::AdamKeras { beta1: 0.9, beta2: 0.999, eps: 1e-7 }
    }

    pub fn build(&self) -> Box<dyn Optimizer> {
        match *self {
            OptimizerConfig::LambApex { beta1, beta2, eps, weight_decay, max_grad_norm } => {
                Box::new(Lamb::new(LambVariant::Apex { max_grad_norm, nvlamb: false }, beta1, beta2, eps, weight_decay))
            }
            OptimizerConfig::LambTfa { beta1, beta2, eps, weight_decay } => {
                Box::new(Lamb::new(LambVariant::Tfa, beta1, beta2, eps, weight_decay))
            }
            OptimizerConfig::AdamKeras { beta1, beta2, eps } => {
                Box::new(Adam::new(AdamVariant::Keras, beta1, beta2, eps, 0.0))
            }
            OptimizerConfig::AdamW { beta1, beta2, eps, weight_decay } => {
                Box::new(Adam::new(AdamVariant::TorchAdamW, beta1, beta2, eps, weight_decay))
            }
        }
    }
}

/// Reduce the learning rate when a monitored value stops improving (Keras `ReduceLROnPlateau`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlateauConfig {
    pub factor: f64,
    pub patience: u32,
    pub min_lr: f64,
    /// `train_loss` (observed at each epoch end, ProteinBERT pretraining) or `valid_<metric>`
    /// (observed at each validation, ProteinBERT fine-tuning: `valid_loss`).
    pub monitor: String,
}

/// Stop after `patience` validations without improvement; the best weights go to `best/`.
///
/// ```
/// use protein_lm::train::trainer::{EarlyStoppingConfig, TrainConfig};
/// // PRoBERTa's fine-tuning: stop after 3 validations without a better accuracy.
/// let mut config = TrainConfig::epochs(20, 2.5e-3);
/// config.early_stopping = Some(EarlyStoppingConfig { patience: 3, monitor: "accuracy".into(), maximize: true });
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingConfig {
    pub patience: u32,
    /// A validation metric, e.g. `loss` or `accuracy`.
    pub monitor: String,
    pub maximize: bool,
}

/// The loop's settings.
///
/// ```
/// use protein_lm::train::trainer::{LrSchedule, TrainConfig};
/// // In a config file only the schedule and the optimiser are required; the rest have defaults.
/// let config: TrainConfig = serde_json::from_str(r#"{
///     "max_epochs": 5,
///     "lr": {"kind": "constant", "lr": 0.001},
///     "optimizer": {"kind": "adam_keras", "beta1": 0.9, "beta2": 0.999, "eps": 1e-7}
/// }"#).unwrap();
/// assert_eq!(config.lr, LrSchedule::Constant { lr: 1e-3 });
/// assert_eq!((config.update_freq, config.checkpoint_every, config.keep_checkpoints), (1, 1000, 3));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    #[serde(default)]
    pub seed: u64,
    /// Stop after this many updates (default: no limit but `max_epochs`).
    #[serde(default = "unlimited")]
    pub max_updates: u64,
    /// Stop after this many epochs (whichever comes first).
    #[serde(default)]
    pub max_epochs: Option<u64>,
    /// Micro-batches per update (gradient accumulation; fairseq `--update-freq`).
    #[serde(default = "one")]
    pub update_freq: u64,
    /// Global gradient-norm clip before the step (torch `clip_grad_norm_`).
    #[serde(default)]
    pub clip_norm: Option<f64>,
    pub lr: LrSchedule,
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub plateau: Option<PlateauConfig>,
    #[serde(default)]
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// Validate every N updates (fairseq: 100 when fine-tuning).
    #[serde(default)]
    pub validate_every_updates: Option<u64>,
    /// Validate at the end of every N-th epoch (Keras: every epoch).
    #[serde(default)]
    pub validate_every_epochs: Option<u64>,
    /// Checkpoint every N updates (and always at the end; default 1,000).
    #[serde(default = "thousand")]
    pub checkpoint_every: u64,
    /// Complete checkpoints to keep.
    #[serde(default = "three")]
    pub keep_checkpoints: usize,
    /// Write a `train` log record every N updates.
    #[serde(default = "one")]
    pub log_every: u64,
    /// Learning-rate factors by parameter-name prefix, e.g. a new head (`head.`) faster than its
    /// pretrained trunk; the first matching prefix counts, other parameters keep the schedule's rate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lr_scales: Vec<LrScale>,
    /// The dtype the model computes in: `f32` (default), `bf16` or `f16` (with dynamic loss
    /// scaling), always with f32 master weights and optimizer state ([`crate::train::precision`]).
    /// Left out of the written config when f32, so runs from before it resume.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// f16's loss-scaling settings (default: torch `GradScaler`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScaleConfig>,
}

/// A learning-rate factor for the parameters whose names start with `prefix`.
///
/// ```
/// use protein_lm::train::trainer::{LrScale, TrainConfig};
/// // A new head learns ten times faster than its pretrained trunk.
/// let mut config = TrainConfig::epochs(10, 1e-4);
/// config.lr_scales = vec![LrScale { prefix: "head.".into(), factor: 10.0 }];
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrScale {
    pub prefix: String,
    pub factor: f64,
}

fn one() -> u64 {
    1
}
fn unlimited() -> u64 {
    u64::MAX / 2
}
fn thousand() -> u64 {
    1000
}
fn three() -> usize {
    3
}

impl TrainConfig {
    /// A run of `epochs` epochs at a constant `lr` with AdamW (β 0.9 / 0.999, ε 1e-8, weight
    /// decay 0.01), seed 0: validation every epoch, early stopping on the validation loss after 2
    /// epochs without improvement (the best weights kept in `best/`), a checkpoint every 1,000
    /// updates and at the end, a log record every 10 updates. Change any field after:
    ///
    /// ```
    /// use protein_lm::train::trainer::{LrSchedule, TrainConfig};
    /// let mut config = TrainConfig::epochs(10, 1e-4);
    /// config.lr = LrSchedule::Constant { lr: 3e-4 };
    /// config.early_stopping = None;
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn epochs(epochs: u64, lr: f64) -> Self {
        Self {
            seed: 0,
            max_updates: unlimited(),
            max_epochs: Some(epochs),
            update_freq: 1,
            clip_norm: None,
            lr: LrSchedule::Constant { lr },
            optimizer: OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 },
            plateau: None,
            early_stopping: Some(EarlyStoppingConfig { patience: 2, monitor: "loss".into(), maximize: false }),
            validate_every_updates: None,
            validate_every_epochs: Some(1),
            checkpoint_every: thousand(),
            keep_checkpoints: 2,
            log_every: 10,
            lr_scales: Vec::new(),
            precision: Precision::F32,
            loss_scale: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid(format!("training config: {m}")));
        if self.max_updates == 0 {
            return bad("max_updates must be at least 1");
        }
        if self.update_freq == 0 || self.checkpoint_every == 0 || self.log_every == 0 {
            return bad("update_freq, checkpoint_every and log_every must be at least 1");
        }
        if let LrSchedule::Polynomial(p) = &self.lr {
            p.validate()?;
        }
        if let Some(p) = &self.plateau {
            if !(p.monitor == "train_loss" || p.monitor.starts_with("valid_")) {
                return bad("plateau.monitor must be `train_loss` or `valid_<metric>`");
            }
        }
        let validates = self.validate_every_updates.is_some() || self.validate_every_epochs.is_some();
        let needs_validation =
            self.early_stopping.is_some() || self.plateau.as_ref().is_some_and(|p| p.monitor.starts_with("valid_"));
        if needs_validation && !validates {
            return bad("early stopping or a valid_ plateau needs validate_every_updates or validate_every_epochs");
        }
        if let Some(scale) = &self.loss_scale {
            if self.precision != Precision::F16 {
                return bad("loss_scale is for precision f16 (bf16 and f32 need no loss scaling)");
            }
            scale.validate()?;
        }
        Ok(())
    }
}
