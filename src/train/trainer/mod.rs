//! The training loop both models use, for pretraining and fine-tuning alike.
//!
//! One update, nanoGPT style:
//!
//! ```text
//! for each of update_freq micro-batches:      (gradient accumulation)
//!     loss = task.train_loss(epoch, batch, rng) / update_freq;  NaN check;  backward;  accumulate
//! sync.all_reduce(grads)                      (data parallel slots in here; a no-op on one process)
//! clip_grad_norm(grads)                       (if configured)
//! optimizer.step(params, grads, lr)
//! log · validate (plateau, early stopping, best model) · checkpoint
//! ```
//!
//! **Determinism.** Every batch is a pure function of its position (epoch, index) and a stream
//! drawn from the run's RNG, whose state is in the checkpoint with the weights, optimizer moments,
//! schedule and stopping state. A run killed at any instant and resumed from its last complete
//! checkpoint therefore ends with the same bits as an uninterrupted run at the same thread count,
//! and its `log.jsonl` holds the same records (see [`RunDir::reset_log`]). `tests/train_resume.rs`
//! checks both with a crash injected at every step of the write sequence ([`crate::failpoint`])
//! and with SIGKILLs at random instants.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use protein_lm::models::init::SeededVarMap;
//! use protein_lm::train::trainer::{Metrics, Task, TaskLoss, TrainConfig, Trainer};
//! use protein_lm::{Result, Rng};
//! // A task of one parameter: fit w in y = w·x to y = 3x, one batch per epoch, no validation.
//! struct Fit { w: Tensor, x: Tensor, y: Tensor }
//! impl Task for Fit {
//!     fn batches_per_epoch(&self) -> u64 { 1 }
//!     fn train_loss(&mut self, _epoch: u64, _batch: u64, _rng: &mut Rng) -> Result<TaskLoss> {
//!         let loss = self.x.broadcast_mul(&self.w)?.sub(&self.y)?.sqr()?.mean_all()?;
//!         Ok(TaskLoss { loss, metrics: Metrics::new(), samples: 4, tokens: 4 })
//!     }
//!     fn validate(&mut self) -> Result<Metrics> { Ok(Metrics::new()) }
//! }
//! let vars = SeededVarMap::new(0);
//! let w = vars.var_builder(DType::F32, &Device::Cpu).get_with_hints(1, "w", candle_nn::Init::Const(0.0))?;
//! let x = Tensor::new(&[1f32, 2.0, 3.0, 4.0], &Device::Cpu)?;
//! let mut task = Fit { w, y: (&x * 3.0)?, x };
//! let mut config = TrainConfig::epochs(300, 0.05);
//! config.early_stopping = None;
//! let mut trainer = Trainer::new(config, vars.clone(), Device::Cpu)?;
//! let run = tempfile::tempdir()?;
//! let summary = trainer.run_in(&mut task, run.path(), false)?;
//! assert_eq!(summary.updates, 300);
//! let w = vars.get_var("w").unwrap().as_tensor().to_vec1::<f32>()?[0];
//! assert!((w - 3.0).abs() < 0.1, "{w}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::checkpoint::TrainingState;
use super::grads::{accumulate, check_finite_loss, clip_grad_norm};
use super::optim::{global_grad_norm, Optimizer, Param};
use super::precision::{HalfWeights, LossScaler, Precision, ScaleVerdict};
use super::run_dir::RunDir;
use super::schedule::{EarlyStopping, ReduceOnPlateau, Verdict};
use crate::models::directory::{DirectoryConfig, ModelDir};
use crate::models::init::SeededVarMap;
use crate::{Error, Location, Result, Rng};

mod config;
mod order;
mod sync;

pub use config::{EarlyStoppingConfig, LrScale, LrSchedule, OptimizerConfig, PlateauConfig, TrainConfig};
pub use order::EpochOrder;
pub use sync::{broadcast_bytes, GlobalUpdate, GradientSync, LocalUpdate, SingleProcess};

/// Named scalar metrics (loss parts, accuracy, AUC, …).
pub type Metrics = BTreeMap<String, f64>;

/// One micro-batch's loss.
#[derive(Debug, Clone)]
pub struct TaskLoss {
    /// The scalar to minimise (with its autograd graph).
    pub loss: Tensor,
    /// Extra values to log (loss parts, per-residue loss, …).
    pub metrics: Metrics,
    /// Proteins (or pairs) in the micro-batch.
    pub samples: usize,
    /// Tokens in the micro-batch (throughput).
    pub tokens: usize,
}

/// What the loop trains.
pub trait Task {
    /// Training micro-batches in one epoch.
    fn batches_per_epoch(&self) -> u64;
    /// Loss of micro-batch `batch` of `epoch`, training mode (`rng` drives noise and dropout).
    fn train_loss(&mut self, epoch: u64, batch: u64, rng: &mut Rng) -> Result<TaskLoss>;
    /// Validation metrics in evaluation mode (at least `loss`); an empty map when the task has no
    /// validation data.
    fn validate(&mut self) -> Result<Metrics>;
    /// What the task decided at run time and cannot recompute from (epoch, batch), saved with
    /// every checkpoint (ProteinBERT's wall-clock episode schedule). Most tasks have none.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Restores [`state`](Self::state) from the checkpoint a run resumes from.
    fn restore(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
    /// Makes the task rank `rank`'s share of `world_size` data-parallel ranks: from then on
    /// [`batches_per_epoch`](Self::batches_per_epoch) and [`train_loss`](Self::train_loss) are
    /// this rank's, every training item going to exactly one rank per epoch (see
    /// [`EpochOrder::shard`]), and every rank must report the same number of batches. A rank whose
    /// share of a batch is empty returns a constant zero loss with `samples: 0` (its weight in the
    /// ranks' average). Validation stays whole (rank 0 runs it). The default refuses more than one
    /// rank.
    fn shard(&mut self, rank: usize, world_size: usize) -> Result<()> {
        if world_size == 1 {
            return Ok(());
        }
        let _ = rank;
        Err(Error::invalid(format!("this training task cannot be split over {world_size} data-parallel ranks")))
    }
}

/// The loop state that goes into a checkpoint besides tensors and the RNG.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct LoopState {
    lr_scale: f64,
    plateau: Option<ReduceOnPlateau>,
    early_stopping: Option<EarlyStopping>,
    /// Sum and count of micro-batch losses in the current epoch.
    epoch_loss_sum: f64,
    epoch_loss_count: u64,
    stopped_early: bool,
    /// [`Task::state`] at the checkpoint.
    #[serde(default)]
    task: serde_json::Value,
    /// f16: the dynamic loss scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loss_scale: Option<LossScaler>,
}

/// The plateau sets an absolute rate; the loop keeps it as a factor on the schedule. A schedule
/// at 0 (the end of a decay) leaves the factor as it is rather than dividing by 0.
fn rescaled(scale: f64, lr: f64, new_lr: f64) -> f64 {
    if lr > 0.0 {
        scale * new_lr / lr
    } else {
        scale
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub updates: u64,
    pub epochs_completed: u64,
    pub stopped_early: bool,
    /// Best validation value of the early-stopping metric and its update.
    pub best: Option<(f64, u64)>,
    pub last_validation: Option<Metrics>,
    /// Wall-clock seconds of training, over every segment of a resumed run.
    pub seconds: f64,
    pub resumed_from: Option<u64>,
}

/// The loop with its model, parameters and optimiser.
pub struct Trainer {
    pub config: TrainConfig,
    /// Every model variable (all of them are checkpointed).
    pub vars: SeededVarMap,
    /// The variables the optimiser updates (a frozen group is simply left out).
    pub params: Vec<Param>,
    pub optimizer: Box<dyn Optimizer>,
    pub sync: Box<dyn GradientSync>,
    pub device: Device,
    /// Written as `best/` and `model/` model directories, when given.
    pub model_dir_config: Option<DirectoryConfig>,
    /// Extra files to place in those model directories (dict.txt, go_terms.txt).
    pub model_dir_files: Vec<(String, Vec<u8>)>,
    /// Show a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// bf16/f16 training: the half-precision copies the task's model computes with (the
    /// optimiser trains [`vars`](Self::vars), the f32 master weights). Required when the config's
    /// precision is not f32.
    pub half: Option<HalfWeights>,
}

impl Trainer {
    /// Every parameter of `vars` trains, with the configured optimiser.
    pub fn new(config: TrainConfig, vars: SeededVarMap, device: Device) -> Result<Self> {
        config.validate()?;
        crate::device::flush_denormals_to_zero();
        let params = vars.named_vars();
        let mut optimizer = config.optimizer.build();
        optimizer.set_lr_scales(config.lr_scales.iter().map(|s| (s.prefix.clone(), s.factor)).collect());
        Ok(Self {
            config,
            vars,
            params,
            optimizer,
            sync: Box::new(SingleProcess),
            device,
            model_dir_config: None,
            model_dir_files: Vec::new(),
            progress: true,
            half: None,
        })
    }

    fn model_tensors(&self) -> HashMap<String, Tensor> {
        self.vars.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect()
    }

    fn write_model_dir(&self, run: &RunDir, name: &str, source: String) -> Result<()> {
        let Some(config) = &self.model_dir_config else {
            // Without a model config the weights alone are still useful.
            let path = run.path().join(name);
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            return self.vars.save(path.join(crate::models::directory::WEIGHTS_FILE));
        };
        let mut config = config.clone();
        config.source = Some(source);
        // Written beside the old directory and swapped in by renames: a kill leaves the previous
        // complete directory or the new one (and debris under `.partial-`/`.old-` names that the
        // next write clears), never a half-written `best/` a notebook would load.
        let path = run.path().join(name);
        let partial = run.path().join(format!(".partial-{name}"));
        let old = run.path().join(format!(".old-{name}"));
        for debris in [&partial, &old] {
            if debris.exists() {
                std::fs::remove_dir_all(debris).map_err(|e| Error::io(debris, e))?;
            }
        }
        let dir = ModelDir::create(&partial, &config, &self.model_tensors())?;
        crate::failpoint::hit("model_dir.partial");
        for (file, bytes) in &self.model_dir_files {
            dir.write_file(file, bytes)?;
        }
        crate::failpoint::hit("model_dir.before_swap");
        if path.exists() {
            std::fs::rename(&path, &old).map_err(|e| Error::io(&path, e))?;
        }
        std::fs::rename(&partial, &path).map_err(|e| Error::io(&path, e))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok(())
    }

    /// Sets the variables and the optimizer state from the checkpoint in `dir`; a tensor that is
    /// missing or has another shape is an error naming the checkpoint file it should be in.
    fn restore(
        &mut self,
        dir: &Path,
        state: &TrainingState,
        model: HashMap<String, Tensor>,
        optimizer: HashMap<String, Tensor>,
    ) -> Result<()> {
        let model_file = dir.join("model.safetensors");
        let optimizer_file = dir.join("optimizer.safetensors");
        let vars = self.vars.named_vars();
        for (name, var) in &vars {
            let stored = model
                .get(name)
                .ok_or_else(|| Error::data(Location::file(&model_file), format!("no tensor for variable {name}")))?;
            if stored.dims() != var.dims() {
                return Err(Error::data(
                    Location::file(&model_file),
                    format!("tensor {name} has shape {:?}, the model {:?}", stored.dims(), var.dims()),
                ));
            }
            // A run never checkpoints non-finite weights (it stops first), so such a tensor is a
            // damaged file: say so here rather than as a NaN loss some updates later.
            if !all_finite(stored)? {
                return Err(Error::data(
                    Location::file(&model_file),
                    format!("tensor {name} holds NaN or infinite values"),
                ));
            }
            var.set(&stored.to_dtype(var.dtype())?.to_device(&self.device)?)?;
        }
        // A moment of the wrong shape would otherwise fail at the first update, naming no file.
        for (key, moment) in &optimizer {
            if !all_finite(moment)? {
                return Err(Error::data(
                    Location::file(&optimizer_file),
                    format!("{key} holds NaN or infinite values"),
                ));
            }
            let name = key.strip_prefix("m.").or_else(|| key.strip_prefix("v.")).unwrap_or(key);
            if let Some((_, var)) = vars.iter().find(|(n, _)| n == name) {
                if moment.dims() != var.dims() {
                    return Err(Error::data(
                        Location::file(&optimizer_file),
                        format!("{key} has shape {:?}, the variable {:?}", moment.dims(), var.dims()),
                    ));
                }
            }
        }
        let optimizer =
            optimizer.into_iter().map(|(k, v)| Ok((k, v.to_device(&self.device)?))).collect::<Result<_>>()?;
        self.optimizer.load_state(state.optimizer_steps, optimizer).map_err(|e| e.in_file(&optimizer_file))?;
        Ok(())
    }

    /// [`run`](Self::run) in the directory `out`, which records this config and the machine (no
    /// data files) and holds the checkpoints, `best/` and `model/`: the short form for a loop of
    /// one's own.
    pub fn run_in(&mut self, task: &mut dyn Task, out: &Path, resume: bool) -> Result<RunSummary> {
        let provenance = crate::train::run_dir::Provenance::collect(self.config.seed, &[], &self.device)?;
        let config = serde_json::json!({"train": &self.config});
        let run = RunDir::open(out, &config, &provenance, resume)?;
        self.run(task, &run, resume)
    }

    /// Runs (or, with `resume`, continues) the loop in `run` until `max_updates`, `max_epochs` or
    /// early stopping.
    ///
    /// With a data-parallel [`sync`](Self::sync) every rank calls this with its own task; rank 0
    /// alone reads and writes `run` (log, checkpoints, `best/`, `model/`) and validates, and the
    /// other ranks get its weights, optimizer and loop state at the start and its validation's
    /// decisions after each validation, so every rank takes the same steps.
    pub fn run(&mut self, task: &mut dyn Task, run: &RunDir, resume: bool) -> Result<RunSummary> {
        let started = Instant::now();
        let config = self.config.clone();
        let config_json = serde_json::to_value(&config).expect("config serialises");
        let (rank, world) = (self.sync.rank(), self.sync.world_size());
        let lead = rank == 0;
        match (&self.half, config.precision) {
            (None, Precision::F32) => {}
            (None, p) => {
                return Err(Error::invalid(format!(
                    "training config: precision {p} needs the model built on {p} copies of its weights \
                     (pretraining does this); this training path computes in f32 only, set precision to f32"
                )))
            }
            (Some(h), p) if h.dtype != p.dtype() => {
                return Err(Error::invalid(format!(
                    "training config: precision {p}, but the model computes in {:?}",
                    h.dtype
                )))
            }
            _ => {}
        }
        task.shard(rank, world)?;
        let batches_per_epoch = task.batches_per_epoch();
        if batches_per_epoch == 0 {
            return Err(Error::invalid("the task has no training batches"));
        }

        // ---- state: fresh or from the last complete checkpoint ----
        let checkpoints = run.checkpoints();
        let mut state = TrainingState {
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            optimizer_steps: 0,
            rng: Rng::new(config.seed).fork(super::streams::TRAIN).state(),
            extra: serde_json::Value::Null,
            config: config_json.clone(),
            seconds: 0.0,
        };
        let mut loop_state = LoopState {
            lr_scale: 1.0,
            plateau: config.plateau.as_ref().map(|p| ReduceOnPlateau::new(p.factor, p.patience, p.min_lr)),
            early_stopping: config.early_stopping.as_ref().map(|e| EarlyStopping::new(e.patience, e.maximize)),
            loss_scale: (config.precision == Precision::F16)
                .then(|| LossScaler::new(config.loss_scale.clone().unwrap_or_default())),
            ..Default::default()
        };
        let mut resumed_from = None;
        if resume && lead {
            if let Some(ckpt) = checkpoints.latest(&self.device)? {
                if ckpt.state.config != config_json {
                    return Err(Error::invalid(format!(
                        "{}: the checkpoint was written with a different training config",
                        ckpt.path.display()
                    )));
                }
                self.restore(&ckpt.path, &ckpt.state, ckpt.model, ckpt.optimizer)?;
                loop_state = serde_json::from_value(ckpt.state.extra.clone())
                    .map_err(|e| Error::invalid(format!("{}: bad loop state: {e}", ckpt.path.display())))?;
                state = ckpt.state;
                resumed_from = Some(state.step);
            }
        }
        if world > 1 {
            self.share_start(&mut state, &mut loop_state, &mut resumed_from)?;
        }
        if resumed_from.is_some() {
            task.restore(&loop_state.task)?;
        }
        if let Some(half) = &self.half {
            half.copy_from(&self.vars.named_vars())?;
        }
        // Rank 0 alone writes; the others' log calls do nothing.
        let log = |record: &serde_json::Value| if lead { run.log(record) } else { Ok(()) };
        if lead {
            // Whether fresh, resumed, or resumed with no checkpoint to resume from (killed before
            // its first one), the log keeps exactly what precedes the starting update.
            run.reset_log(state.step)?;
            if state.step == 0 {
                // A fresh start owns the directory: model directories left by an earlier attempt
                // that died before its first checkpoint (perhaps with another config) must not pass
                // as this run's.
                for name in ["best", "model"] {
                    let stale = run.path().join(name);
                    if stale.exists() {
                        std::fs::remove_dir_all(&stale).map_err(|e| Error::io(&stale, e))?;
                    }
                }
            }
        }
        if let Some(step) = resumed_from {
            log(&serde_json::json!({"kind": "event", "step": step, "event": "resumed"}))?;
        }
        if world > 1 && state.step == 0 {
            log(&serde_json::json!({"kind": "event", "step": 0, "event": self.sync.describe()}))?;
        }
        let mut rng = state.rng()?;
        let mut last_validation = None;
        // A resumed run's time is its earlier segments' (up to the checkpoint) plus this one's.
        let seconds_before = state.seconds;

        let bar = if self.progress && lead {
            // Fine-tuning is bounded by epochs with a huge max_updates: show the nearer bound.
            let updates_per_epoch = batches_per_epoch.div_ceil(config.update_freq);
            let planned = config
                .max_epochs
                .map_or(config.max_updates, |e| config.max_updates.min(e.saturating_mul(updates_per_epoch)));
            let bar = indicatif::ProgressBar::new(planned);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:<32} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})",
                )
                .expect("static template"),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_position(state.step);
        let mut window_start = Instant::now();
        let (mut window_samples, mut window_tokens) = (0usize, 0usize);

        let save = |trainer: &Self, state: &mut TrainingState, loop_state: &LoopState, rng: &Rng| -> Result<()> {
            if !lead {
                return Ok(());
            }
            state.rng = rng.state();
            state.optimizer_steps = trainer.optimizer.steps();
            state.extra = serde_json::to_value(loop_state).expect("loop state serialises");
            state.seconds = seconds_before + started.elapsed().as_secs_f64();
            let (_, optimizer) = trainer.optimizer.state();
            let keep: Vec<u64> =
                loop_state.early_stopping.as_ref().and_then(|e| e.best()).map(|(_, s)| s).into_iter().collect();
            checkpoints.save(state, &trainer.model_tensors(), &optimizer, config.keep_checkpoints, &keep)?;
            Ok(())
        };

        let finished = |state: &TrainingState, loop_state: &LoopState| {
            state.step >= config.max_updates
                || config.max_epochs.is_some_and(|m| state.epoch >= m)
                || loop_state.stopped_early
        };

        // The run is stopping with an error anyway; a failed log write must not mask it.
        // Logged at the update that failed (not the last completed one), so a resume's log reset
        // drops it with the rest of that update.
        let log_non_finite = |what: &str, step: u64| {
            let _ = log(&serde_json::json!({"kind": "event", "step": step, "event": format!("non-finite {what}")}));
        };

        while !finished(&state, &loop_state) {
            // ---- one update: accumulate micro-batches ----
            let update = state.step + 1;
            let lr = config.lr.lr(update) * loop_state.lr_scale;
            let loss_scale = loop_state.loss_scale.as_ref().map(|s| s.scale);
            let mut grads: Option<GradStore> = None;
            let mut update_loss = 0.0;
            let mut update_metrics: Metrics = Metrics::new();
            let mut epoch_ended = false;
            let mut micro_losses = Vec::with_capacity(config.update_freq as usize);
            let (mut samples, mut tokens, mut non_finite_loss) = (0usize, 0usize, false);
            for _ in 0..config.update_freq {
                let mut batch_rng = Rng::new(rng.next_u64());
                if world > 1 {
                    // Each rank its own dropout and noise; the run's stream stays in step.
                    batch_rng = batch_rng.fork(rank as u64);
                }
                let out = task.train_loss(state.epoch, state.batch_in_epoch, &mut batch_rng)?;
                // One process stops at once; data-parallel ranks decide together after the
                // all-reduce, and f16 treats an overflowing loss as an overflow (skip the update).
                let value = if world == 1 && loss_scale.is_none() {
                    check_finite_loss(&out.loss, update).inspect_err(|_| log_non_finite("loss", update))?
                } else {
                    let value = out.loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                    non_finite_loss |= !value.is_finite();
                    value
                };
                let scaled = match loss_scale {
                    None => (out.loss / config.update_freq as f64)?,
                    Some(s) => ((out.loss * s)? / config.update_freq as f64)?,
                };
                accumulate(&mut grads, scaled.backward()?, &self.params)?;
                update_loss += value / config.update_freq as f64;
                for (k, v) in out.metrics {
                    *update_metrics.entry(k).or_default() += v / config.update_freq as f64;
                }
                samples += out.samples;
                tokens += out.tokens;
                micro_losses.push(value);
                state.batch_in_epoch += 1;
                if state.batch_in_epoch >= batches_per_epoch {
                    // An update may straddle epochs; the epoch's bookkeeping runs after the step.
                    epoch_ended = true;
                    break;
                }
            }
            let mut grads = grads.expect("at least one micro-batch");
            if let Some(half) = &self.half {
                half.gradients_to_master(&mut grads, &self.params)?;
            }

            // ---- the seam: all-reduce → (unscale) → clip → step ----
            let local = LocalUpdate { samples, tokens, loss: update_loss, non_finite_loss };
            let global = self.sync.all_reduce(&mut grads, &self.params, local)?;
            if global.non_finite_ranks > 0 && loss_scale.is_none() {
                log_non_finite("loss", update);
                return Err(Error::invalid(format!(
                    "loss is NaN or infinite on {} of {world} ranks at step {update}; stopping (the last checkpoint is intact)",
                    global.non_finite_ranks
                )));
            }
            if world == 1 {
                loop_state.epoch_loss_sum += micro_losses.iter().sum::<f64>();
            } else {
                // Every rank adds the same global values, so epoch-end decisions agree.
                update_loss = global.loss;
                loop_state.epoch_loss_sum += global.loss * micro_losses.len() as f64;
            }
            loop_state.epoch_loss_count += micro_losses.len() as u64;
            window_samples += global.samples;
            window_tokens += global.tokens;

            let mut skipped = false;
            let grad_norm = if let Some(scaler) = loop_state.loss_scale.as_mut() {
                // The scale is a power of two: dividing by it is exact.
                super::grads::scale(&mut grads, &self.params, 1.0 / scaler.scale)?;
                let norm = global_grad_norm(&self.params, &grads)?;
                let finite = norm.is_finite() && global.non_finite_ranks == 0;
                let verdict =
                    scaler.update(finite).inspect_err(|_| log_non_finite("gradient at every loss scale", update))?;
                match (verdict, config.clip_norm) {
                    (ScaleVerdict::Skip, _) => {
                        skipped = true;
                        norm
                    }
                    (ScaleVerdict::Step, Some(max)) => clip_grad_norm(&mut grads, &self.params, max)?,
                    (ScaleVerdict::Step, None) => norm,
                }
            } else {
                // A finite loss can still give an infinite gradient: stop before it reaches the weights.
                match config.clip_norm {
                    Some(max) => clip_grad_norm(&mut grads, &self.params, max),
                    None => global_grad_norm(&self.params, &grads).and_then(|norm| {
                        if norm.is_finite() {
                            Ok(norm)
                        } else {
                            Err(Error::invalid(format!(
                                "gradient norm is {norm} at step {update}; stopping (the last checkpoint is intact)"
                            )))
                        }
                    }),
                }
                .inspect_err(|_| log_non_finite("gradient", update))?
            };
            let stats = if skipped {
                // An f16 overflow: the update counts (schedule, logs, checkpoints stay on their
                // steps) but changes no weight and no optimizer moment.
                super::optim::StepStats::default()
            } else {
                let stats = self.optimizer.step(&self.params, &grads, lr)?;
                if let Some(half) = &self.half {
                    half.copy_from(&self.params)?;
                }
                stats
            };
            drop(grads);
            state.step = update;
            bar.set_position(state.step);

            // ---- log ----
            if state.step.is_multiple_of(config.log_every) || state.step == 1 {
                let elapsed = window_start.elapsed().as_secs_f64().max(1e-9);
                let mut record = serde_json::json!({
                    "kind": "train", "step": state.step, "epoch": state.epoch, "lr": lr, "loss": update_loss,
                    "grad_norm": grad_norm, "params_updated": stats.updated,
                    "samples_per_s": window_samples as f64 / elapsed, "tokens_per_s": window_tokens as f64 / elapsed,
                    "elapsed_s": started.elapsed().as_secs_f64(),
                });
                for (k, v) in &update_metrics {
                    record[k] = serde_json::json!(v);
                }
                if let Some(scaler) = &loop_state.loss_scale {
                    // The scale this update used (the scaler has already moved on when it skipped).
                    record["loss_scale"] = serde_json::json!(loss_scale.unwrap_or(scaler.scale));
                    record["skipped_updates"] = serde_json::json!(scaler.skipped);
                }
                if world > 1 {
                    record["ranks"] = serde_json::json!(world);
                }
                log(&record)?;
                bar.set_message(format!("loss {update_loss:.4} · {:.0} tok/s", window_tokens as f64 / elapsed));
                window_start = Instant::now();
                window_samples = 0;
                window_tokens = 0;
            }
            if skipped {
                log(&serde_json::json!({"kind": "event", "step": state.step,
                    "event": format!("f16 overflow: update skipped, loss scale {} → {}",
                        loss_scale.unwrap_or_default(), loop_state.loss_scale.as_ref().map_or(0.0, |s| s.scale))}))?;
            }

            // ---- epoch end ----
            let mut validate_now = config.validate_every_updates.is_some_and(|n| state.step.is_multiple_of(n));
            if epoch_ended {
                let train_loss = loop_state.epoch_loss_sum / loop_state.epoch_loss_count.max(1) as f64;
                log(
                    &serde_json::json!({"kind": "epoch", "step": state.step, "epoch": state.epoch, "train_loss": train_loss}),
                )?;
                if let (Some(p), Some(plateau)) = (&config.plateau, loop_state.plateau.as_mut()) {
                    if p.monitor == "train_loss" {
                        let new_lr = plateau.observe(train_loss, lr);
                        loop_state.lr_scale = rescaled(loop_state.lr_scale, lr, new_lr);
                    }
                }
                state.epoch += 1;
                state.batch_in_epoch = 0;
                loop_state.epoch_loss_sum = 0.0;
                loop_state.epoch_loss_count = 0;
                validate_now |= config.validate_every_epochs.is_some_and(|n| state.epoch.is_multiple_of(n));
            }

            // ---- validate (rank 0; the others get its decisions) ----
            if validate_now {
                if lead {
                    let metrics = task.validate()?;
                    let mut record = serde_json::json!({"kind": "valid", "step": state.step, "epoch": state.epoch});
                    for (k, v) in &metrics {
                        record[k] = serde_json::json!(v);
                    }
                    run.log(&record)?;
                    if let (Some(p), Some(plateau)) = (&config.plateau, loop_state.plateau.as_mut()) {
                        if let Some(value) = p.monitor.strip_prefix("valid_").and_then(|m| metrics.get(m)) {
                            let new_lr = plateau.observe(*value, lr);
                            loop_state.lr_scale = rescaled(loop_state.lr_scale, lr, new_lr);
                        }
                    }
                    if let (Some(e), Some(stopper)) = (&config.early_stopping, loop_state.early_stopping.as_mut()) {
                        let value = *metrics.get(&e.monitor).ok_or_else(|| {
                            Error::invalid(format!(
                                "early stopping monitors `{}`, which validation does not report",
                                e.monitor
                            ))
                        })?;
                        match stopper.observe(state.step, value) {
                            Verdict::Improved => self.write_model_dir(
                                run,
                                "best",
                                format!("best validation {} {value} at update {}", e.monitor, state.step),
                            )?,
                            Verdict::Continue => {}
                            Verdict::Stop => loop_state.stopped_early = true,
                        }
                    }
                    last_validation = Some(metrics);
                }
                if world > 1 {
                    let decided = serde_json::json!({"loop": &loop_state, "metrics": &last_validation});
                    let bytes = serde_json::to_vec(&decided).expect("loop state serialises");
                    let bytes = broadcast_bytes(self.sync.as_mut(), &bytes, &self.device)?;
                    let decided: serde_json::Value = serde_json::from_slice(&bytes)
                        .map_err(|e| Error::invalid(format!("rank {rank}: rank 0's validation state: {e}")))?;
                    loop_state = serde_json::from_value(decided["loop"].clone())
                        .map_err(|e| Error::invalid(format!("rank {rank}: rank 0's loop state: {e}")))?;
                    last_validation = serde_json::from_value(decided["metrics"].clone())
                        .map_err(|e| Error::invalid(format!("rank {rank}: rank 0's metrics: {e}")))?;
                }
            }

            // ---- checkpoint (rank 0) ----
            if state.step.is_multiple_of(config.checkpoint_every) || finished(&state, &loop_state) {
                loop_state.task = task.state();
                save(self, &mut state, &loop_state, &rng)?;
            }
        }
        bar.finish_and_clear();
        if lead {
            self.write_model_dir(run, "model", format!("trained for {} updates ({} epochs)", state.step, state.epoch))?;
        }
        let summary = RunSummary {
            updates: state.step,
            epochs_completed: state.epoch,
            stopped_early: loop_state.stopped_early,
            best: loop_state.early_stopping.as_ref().and_then(|e| e.best()),
            last_validation,
            seconds: seconds_before + started.elapsed().as_secs_f64(),
            resumed_from,
        };
        log(&serde_json::json!({"kind": "event", "step": state.step, "event": "finished",
            "stopped_early": summary.stopped_early}))?;
        Ok(summary)
    }

    /// Data parallelism: every rank takes rank 0's starting point (fresh or resumed): its training
    /// and loop state, weights and optimizer moments, after checking that the ranks built the
    /// same model.
    fn share_start(
        &mut self,
        state: &mut TrainingState,
        loop_state: &mut LoopState,
        resumed_from: &mut Option<u64>,
    ) -> Result<()> {
        let rank = self.sync.rank();
        let vars = self.vars.named_vars();
        let shapes: Vec<(String, Vec<usize>)> = vars.iter().map(|(n, v)| (n.clone(), v.dims().to_vec())).collect();
        let (steps, moments) = self.optimizer.state();
        let mut moment_shapes: Vec<(String, Vec<usize>)> =
            moments.iter().map(|(k, t)| (k.clone(), t.dims().to_vec())).collect();
        moment_shapes.sort();
        let start = serde_json::json!({
            "state": &*state, "loop": &*loop_state, "resumed_from": *resumed_from,
            "vars": shapes, "optimizer_steps": steps, "moments": moment_shapes,
        });
        let bytes =
            broadcast_bytes(self.sync.as_mut(), &serde_json::to_vec(&start).expect("serialises"), &self.device)?;
        let start: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("rank {rank}: rank 0's starting state: {e}")))?;
        let bad = |what: &str, e: serde_json::Error| Error::invalid(format!("rank {rank}: rank 0's {what}: {e}"));
        let theirs: Vec<(String, Vec<usize>)> =
            serde_json::from_value(start["vars"].clone()).map_err(|e| bad("variables", e))?;
        if theirs != shapes {
            let first = theirs.iter().zip(&shapes).find(|(a, b)| a != b).map_or_else(
                || format!("{} variables against rank 0's {}", shapes.len(), theirs.len()),
                |(a, b)| format!("{} {:?} where rank 0 has {} {:?}", b.0, b.1, a.0, a.1),
            );
            return Err(Error::invalid(format!(
                "rank {rank} built another model than rank 0 (the ranks need the same config and data): {first}"
            )));
        }
        let moment_shapes: Vec<(String, Vec<usize>)> =
            serde_json::from_value(start["moments"].clone()).map_err(|e| bad("optimizer state", e))?;
        if rank != 0 {
            *state = serde_json::from_value(start["state"].clone()).map_err(|e| bad("training state", e))?;
            *loop_state = serde_json::from_value(start["loop"].clone()).map_err(|e| bad("loop state", e))?;
            *resumed_from = serde_json::from_value(start["resumed_from"].clone()).map_err(|e| bad("resume step", e))?;
        }
        // Weights and moments in one buffer (rank 0's values; the others only give the lengths).
        let mut parts = Vec::with_capacity(vars.len() + moment_shapes.len());
        for (_, var) in &vars {
            parts.push(var.as_tensor().to_dtype(candle_core::DType::F32)?.flatten_all()?);
        }
        for (key, dims) in &moment_shapes {
            let n: usize = dims.iter().product();
            parts.push(match moments.get(key) {
                Some(t) if rank == 0 => t.to_dtype(candle_core::DType::F32)?.flatten_all()?,
                _ => Tensor::zeros(n, candle_core::DType::F32, &self.device)?,
            });
        }
        if parts.is_empty() {
            return Ok(());
        }
        let all = self.sync.broadcast(&Tensor::cat(&parts, 0)?)?;
        let mut offset = 0;
        for (_, var) in &vars {
            let n = var.elem_count();
            var.set(&all.narrow(0, offset, n)?.reshape(var.dims())?.to_dtype(var.dtype())?)?;
            offset += n;
        }
        let mut restored = HashMap::new();
        for (key, dims) in &moment_shapes {
            let n: usize = dims.iter().product();
            let dtype = moments.get(key).map_or(candle_core::DType::F32, |t| t.dtype());
            restored.insert(key.clone(), all.narrow(0, offset, n)?.reshape(dims.as_slice())?.to_dtype(dtype)?);
            offset += n;
        }
        if rank != 0 {
            let steps: u64 = serde_json::from_value(start["optimizer_steps"].clone()).map_err(|e| bad("steps", e))?;
            self.optimizer.load_state(steps, restored)?;
        }
        Ok(())
    }
}

fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?.iter().all(|v| v.is_finite()))
}

/// Keeps the optimiser state when the new stage trains exactly the same variables, else starts a
/// fresh one: ProteinBERT's rule (Keras copies the optimizer weights only when their count matches,
/// so stage 1 → 2 restarts Adam and 2 → 3 keeps it).
pub fn carry_optimizer(
    previous: Option<(Box<dyn Optimizer>, Vec<String>)>,
    params: &[Param],
    config: &OptimizerConfig,
) -> (Box<dyn Optimizer>, bool) {
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    match previous {
        Some((opt, prev)) if prev.iter().map(String::as_str).eq(names.iter().copied()) => (opt, true),
        _ => (config.build(), false),
    }
}

/// The parameters of `vars` whose names start with none of `frozen_prefixes`.
pub fn trainable_params(vars: &SeededVarMap, frozen_prefixes: &[String]) -> Vec<Param> {
    vars.named_vars().into_iter().filter(|(n, _)| !frozen_prefixes.iter().any(|p| n.starts_with(p.as_str()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_covers_every_item_once_and_reshuffles_per_epoch() {
        let mut order = EpochOrder::new(9, 10);
        assert_eq!(order.batches(4), 3);
        let epoch0: Vec<usize> = (0..3).flat_map(|b| order.batch(0, b, 4).to_vec()).collect();
        let mut sorted = epoch0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        let epoch1: Vec<usize> = (0..3).flat_map(|b| order.batch(1, b, 4).to_vec()).collect();
        assert_ne!(epoch0, epoch1);
        // Asking for an earlier epoch again gives the same batches (resume).
        assert_eq!(EpochOrder::new(9, 10).batch(0, 1, 4), &epoch0[4..8]);
        assert_eq!(order.batch(0, 2, 4), &epoch0[8..]);
    }

    #[test]
    fn plateau_factor_survives_a_zero_schedule() {
        assert_eq!(rescaled(1.0, 1e-3, 2.5e-4), 0.25);
        assert_eq!(rescaled(0.5, 0.0, 0.0), 0.5);
    }
}
