//! The training loop on a toy regression task: non-finite losses stop the run with its last good
//! checkpoint intact, frozen parameters stay put, gradient accumulation equals one big batch,
//! early stopping keeps the best weights, and the optimizer-state carry rule between stages.

use candle_core::{DType, Device, Tensor};
use protein_lm::models::init::SeededVarMap;
use protein_lm::train::checkpoint::CheckpointDir;
use protein_lm::train::run_dir::{Provenance, RunDir};
use protein_lm::train::trainer::{
    carry_optimizer, trainable_params, EarlyStoppingConfig, LrSchedule, Metrics, OptimizerConfig, Task, TaskLoss,
    TrainConfig, Trainer,
};
use protein_lm::{Result, Rng};

/// y = x·w_true; the model is `w` (4) and `b` (1); 8 samples per epoch.
struct Regression {
    vars: SeededVarMap,
    x: Vec<[f32; 4]>,
    y: Vec<f32>,
    batch: usize,
    nan_at_call: Option<usize>,
    calls: usize,
    valid_losses: Vec<f64>,
    /// What [`Task::restore`] was given.
    restored: Option<serde_json::Value>,
}

impl Regression {
    fn new(vars: SeededVarMap, batch: usize) -> Self {
        let mut rng = Rng::new(3);
        let x: Vec<[f32; 4]> = (0..8).map(|_| [0, 1, 2, 3].map(|_| rng.normal() as f32)).collect();
        let y = x.iter().map(|r| r[0] - 2.0 * r[1] + 0.5 * r[2] + 0.25).collect();
        let vb = vars.var_builder(DType::F32, &Device::Cpu);
        vb.get_with_hints(4, "w", candle_nn::Init::Const(0.0)).unwrap();
        vb.get_with_hints(1, "frozen.b", candle_nn::Init::Const(0.5)).unwrap();
        Self { vars, x, y, batch, nan_at_call: None, calls: 0, valid_losses: vec![], restored: None }
    }

    fn loss(&self, rows: &[usize]) -> Result<Tensor> {
        let w = self.vars.get_var("w").unwrap();
        let b = self.vars.get_var("frozen.b").unwrap();
        let x: Vec<f32> = rows.iter().flat_map(|&i| self.x[i]).collect();
        let y: Vec<f32> = rows.iter().map(|&i| self.y[i]).collect();
        let x = Tensor::from_vec(x, (rows.len(), 4), &Device::Cpu)?;
        let y = Tensor::from_vec(y, rows.len(), &Device::Cpu)?;
        let pred = x.matmul(&w.as_tensor().unsqueeze(1)?)?.squeeze(1)?.broadcast_add(b.as_tensor())?;
        Ok(pred.sub(&y)?.sqr()?.mean_all()?)
    }
}

impl Task for Regression {
    fn batches_per_epoch(&self) -> u64 {
        (8 / self.batch) as u64
    }

    fn train_loss(&mut self, _epoch: u64, batch: u64, _rng: &mut Rng) -> Result<TaskLoss> {
        self.calls += 1;
        let rows: Vec<usize> = (batch as usize * self.batch..(batch as usize + 1) * self.batch).collect();
        let mut loss = self.loss(&rows)?;
        if Some(self.calls) == self.nan_at_call {
            loss = (loss * f64::NAN)?;
        }
        Ok(TaskLoss { loss, metrics: Metrics::new(), samples: rows.len(), tokens: rows.len() })
    }

    fn validate(&mut self) -> Result<Metrics> {
        // A scripted validation curve, so early stopping's decisions are known.
        let value = self.valid_losses.get(self.calls / 2 - 1).copied().unwrap_or(1.0);
        Ok(Metrics::from([("loss".to_string(), value)]))
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({"calls": self.calls})
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        self.restored = Some(state.clone());
        Ok(())
    }
}

fn config(max_updates: u64) -> TrainConfig {
    TrainConfig {
        seed: 0,
        max_updates,
        max_epochs: None,
        update_freq: 1,
        clip_norm: None,
        lr: LrSchedule::Constant { lr: 0.05 },
        optimizer: OptimizerConfig::adam_keras(),
        plateau: None,
        early_stopping: None,
        validate_every_updates: None,
        validate_every_epochs: None,
        checkpoint_every: 1,
        keep_checkpoints: 10,
        log_every: 1,
    }
}

fn run_dir(path: &std::path::Path, config: &TrainConfig) -> RunDir {
    let provenance = Provenance::collect(0, &[], &Device::Cpu).unwrap();
    RunDir::open(path, &serde_json::to_value(config).unwrap(), &provenance, false).unwrap()
}

fn values(vars: &SeededVarMap, name: &str) -> Vec<f32> {
    vars.get_var(name).unwrap().as_tensor().to_vec1().unwrap()
}

#[test]
fn non_finite_loss_stops_with_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let vars = SeededVarMap::new(0);
    let mut task = Regression::new(vars.clone(), 4);
    task.nan_at_call = Some(6);
    let cfg = config(20);
    let run = run_dir(tmp.path(), &cfg);
    let mut trainer = Trainer::new(cfg, vars, Device::Cpu).unwrap();
    trainer.progress = false;
    let err = trainer.run(&mut task, &run, false).unwrap_err().to_string();
    assert!(err.contains("NaN") && err.contains("step 6"), "{err}");
    let steps = CheckpointDir::new(tmp.path().join("checkpoints")).complete_steps().unwrap();
    assert_eq!(steps.last(), Some(&5), "the checkpoint of the last good update is there");
    let log = std::fs::read_to_string(tmp.path().join("log.jsonl")).unwrap();
    assert!(log.contains("non-finite loss"));
}

#[test]
fn frozen_parameters_do_not_move_and_training_reduces_the_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let vars = SeededVarMap::new(0);
    let mut task = Regression::new(vars.clone(), 4);
    let before = task.loss(&(0..8).collect::<Vec<_>>()).unwrap().to_scalar::<f32>().unwrap();
    let cfg = config(60);
    let run = run_dir(tmp.path(), &cfg);
    let mut trainer = Trainer::new(cfg, vars.clone(), Device::Cpu).unwrap();
    trainer.params = trainable_params(&vars, &["frozen.".to_string()]);
    trainer.progress = false;
    trainer.run(&mut task, &run, false).unwrap();
    assert_eq!(values(&vars, "frozen.b"), vec![0.5]);
    let after = task.loss(&(0..8).collect::<Vec<_>>()).unwrap().to_scalar::<f32>().unwrap();
    assert!(after < before / 4.0, "loss {before} → {after}");
}

#[test]
fn two_accumulated_half_batches_equal_one_full_batch() {
    let run_with = |batch: usize, update_freq: u64| {
        let tmp = tempfile::tempdir().unwrap();
        let vars = SeededVarMap::new(0);
        let mut task = Regression::new(vars.clone(), batch);
        let mut cfg = config(3);
        cfg.update_freq = update_freq;
        // A large ε makes the step proportional to the gradient (Adam is otherwise nearly blind
        // to its scale), so a sum instead of a mean over micro-batches would show.
        cfg.lr = LrSchedule::Constant { lr: 10.0 };
        cfg.optimizer = OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 100.0, weight_decay: 0.0 };
        let run = run_dir(tmp.path(), &cfg);
        let mut trainer = Trainer::new(cfg, vars.clone(), Device::Cpu).unwrap();
        trainer.progress = false;
        trainer.run(&mut task, &run, false).unwrap();
        values(&vars, "w")
    };
    let full = run_with(8, 1);
    let halves = run_with(4, 2);
    for (a, b) in full.iter().zip(&halves) {
        assert!((a - b).abs() < 1e-5, "{full:?} vs {halves:?}");
    }
}

#[test]
fn early_stopping_stops_after_patience_and_keeps_the_best_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let vars = SeededVarMap::new(0);
    let mut task = Regression::new(vars.clone(), 4);
    // Validation every epoch (2 updates): best at epoch 2, then two worse ones → stop after epoch 4.
    task.valid_losses = vec![0.9, 0.5, 0.7, 0.8, 0.1];
    let mut cfg = config(100);
    cfg.validate_every_epochs = Some(1);
    cfg.early_stopping = Some(EarlyStoppingConfig { patience: 2, monitor: "loss".into(), maximize: false });
    let run = run_dir(tmp.path(), &cfg);
    let mut trainer = Trainer::new(cfg, vars.clone(), Device::Cpu).unwrap();
    trainer.progress = false;
    let summary = trainer.run(&mut task, &run, false).unwrap();
    assert!(summary.stopped_early);
    assert_eq!(summary.updates, 8);
    assert_eq!(summary.best, Some((0.5, 4)));
    assert!(tmp.path().join("best/model.safetensors").is_file());
}

#[test]
fn optimizer_state_is_carried_only_between_stages_training_the_same_variables() {
    let vars = SeededVarMap::new(0);
    let _task = Regression::new(vars.clone(), 4);
    let head_only = trainable_params(&vars, &["w".to_string()]);
    let all = trainable_params(&vars, &[]);
    let cfg = OptimizerConfig::adam_keras();
    let names = |p: &[(String, candle_core::Var)]| p.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let (opt, carried) = carry_optimizer(Some((cfg.build(), names(&head_only))), &all, &cfg);
    assert!(!carried, "stage 1 → 2 (more variables) starts a fresh optimizer");
    let (_, carried) = carry_optimizer(Some((opt, names(&all))), &all, &cfg);
    assert!(carried, "stage 2 → 3 (same variables) keeps it");
}

/// loss = Σ √w at w = 0: finite (0), but its gradient is infinite.
struct InfiniteGradient(SeededVarMap);

impl Task for InfiniteGradient {
    fn batches_per_epoch(&self) -> u64 {
        1
    }

    fn train_loss(&mut self, _epoch: u64, _batch: u64, _rng: &mut Rng) -> Result<TaskLoss> {
        let w = self.0.get_var("w").unwrap();
        Ok(TaskLoss { loss: w.as_tensor().sqrt()?.sum_all()?, metrics: Metrics::new(), samples: 1, tokens: 1 })
    }

    fn validate(&mut self) -> Result<Metrics> {
        Ok(Metrics::new())
    }
}

#[test]
fn an_infinite_gradient_from_a_finite_loss_stops_before_the_weights_change() {
    let tmp = tempfile::tempdir().unwrap();
    let vars = SeededVarMap::new(0);
    vars.var_builder(DType::F32, &Device::Cpu).get_with_hints(3, "w", candle_nn::Init::Const(0.0)).unwrap();
    let cfg = config(5);
    let run = run_dir(tmp.path(), &cfg);
    let mut trainer = Trainer::new(cfg, vars.clone(), Device::Cpu).unwrap();
    trainer.progress = false;
    let err = trainer.run(&mut InfiniteGradient(vars.clone()), &run, false).unwrap_err().to_string();
    assert!(err.contains("gradient norm is inf") && err.contains("step 1"), "{err}");
    assert_eq!(values(&vars, "w"), vec![0.0; 3]);
    let log = std::fs::read_to_string(tmp.path().join("log.jsonl")).unwrap();
    assert!(log.contains("non-finite gradient"), "{log}");
}

#[test]
fn the_task_state_of_the_last_checkpoint_is_restored_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(4);
    let mut task = Regression::new(SeededVarMap::new(0), 4);
    let run = run_dir(tmp.path(), &cfg);
    let mut trainer = Trainer::new(cfg.clone(), task.vars.clone(), Device::Cpu).unwrap();
    trainer.progress = false;
    trainer.run(&mut task, &run, false).unwrap();
    assert_eq!(task.calls, 4);

    let mut resumed = Regression::new(SeededVarMap::new(0), 4);
    let provenance = Provenance::collect(0, &[], &Device::Cpu).unwrap();
    let run = RunDir::open(tmp.path(), &serde_json::to_value(&cfg).unwrap(), &provenance, true).unwrap();
    let mut trainer = Trainer::new(cfg, resumed.vars.clone(), Device::Cpu).unwrap();
    trainer.progress = false;
    let summary = trainer.run(&mut resumed, &run, true).unwrap();
    assert_eq!(summary.resumed_from, Some(4));
    assert_eq!(resumed.restored, Some(serde_json::json!({"calls": 4})));
}
