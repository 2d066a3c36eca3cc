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
    /// Weight each sample by a draw from the loop's RNG, so the results depend on its stream.
    noisy: bool,
    /// Fail (as a crash would) at this call.
    crash_at_call: Option<usize>,
}

impl Regression {
    fn new(vars: SeededVarMap, batch: usize) -> Self {
        let mut rng = Rng::new(3);
        let x: Vec<[f32; 4]> = (0..8).map(|_| [0, 1, 2, 3].map(|_| rng.normal() as f32)).collect();
        let y = x.iter().map(|r| r[0] - 2.0 * r[1] + 0.5 * r[2] + 0.25).collect();
        let vb = vars.var_builder(DType::F32, &Device::Cpu);
        vb.get_with_hints(4, "w", candle_nn::Init::Const(0.0)).unwrap();
        vb.get_with_hints(1, "frozen.b", candle_nn::Init::Const(0.5)).unwrap();
        Self {
            vars,
            x,
            y,
            batch,
            nan_at_call: None,
            calls: 0,
            valid_losses: vec![],
            restored: None,
            noisy: false,
            crash_at_call: None,
        }
    }

    fn loss(&self, rows: &[usize]) -> Result<Tensor> {
        self.weighted_loss(rows, &vec![1.0; rows.len()])
    }

    fn weighted_loss(&self, rows: &[usize], weights: &[f32]) -> Result<Tensor> {
        let w = self.vars.get_var("w").unwrap();
        let b = self.vars.get_var("frozen.b").unwrap();
        let x: Vec<f32> = rows.iter().flat_map(|&i| self.x[i]).collect();
        let y: Vec<f32> = rows.iter().map(|&i| self.y[i]).collect();
        let x = Tensor::from_vec(x, (rows.len(), 4), &Device::Cpu)?;
        let y = Tensor::from_vec(y, rows.len(), &Device::Cpu)?;
        let weights = Tensor::from_slice(weights, rows.len(), &Device::Cpu)?;
        let pred = x.matmul(&w.as_tensor().unsqueeze(1)?)?.squeeze(1)?.broadcast_add(b.as_tensor())?;
        Ok(pred.sub(&y)?.sqr()?.mul(&weights)?.mean_all()?)
    }
}

impl Task for Regression {
    fn batches_per_epoch(&self) -> u64 {
        (8 / self.batch) as u64
    }

    fn train_loss(&mut self, _epoch: u64, batch: u64, rng: &mut Rng) -> Result<TaskLoss> {
        self.calls += 1;
        if Some(self.calls) == self.crash_at_call {
            return Err(protein_lm::Error::invalid("crash injected by the test"));
        }
        let rows: Vec<usize> = (batch as usize * self.batch..(batch as usize + 1) * self.batch).collect();
        let weights: Vec<f32> =
            rows.iter().map(|_| if self.noisy { 0.25 + 1.5 * rng.uniform() as f32 } else { 1.0 }).collect();
        let mut loss = self.weighted_loss(&rows, &weights)?;
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
        lr_scales: Vec::new(),
        precision: Default::default(),
        loss_scale: None,
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

/// A run that dies after update 5 of 12 and is resumed from its checkpoint ends equal to one that
/// never stopped: weights, optimizer moments (through the later updates) and the RNG stream (the
/// sample weights are drawn from it) all have to be restored for that; the task's own state too.
#[test]
fn a_run_resumed_mid_way_ends_equal_to_an_uninterrupted_one() {
    let cfg = TrainConfig { checkpoint_every: 5, ..config(12) };
    let train = |dir: &std::path::Path, crash_at_call: Option<usize>, resume: bool| {
        let mut task = Regression::new(SeededVarMap::new(0), 4);
        task.noisy = true;
        task.crash_at_call = crash_at_call;
        let provenance = Provenance::collect(0, &[], &Device::Cpu).unwrap();
        let run = RunDir::open(dir, &serde_json::to_value(&cfg).unwrap(), &provenance, resume).unwrap();
        let mut trainer = Trainer::new(cfg.clone(), task.vars.clone(), Device::Cpu).unwrap();
        trainer.progress = false;
        let result = trainer.run(&mut task, &run, resume);
        (result, task)
    };
    let straight = tempfile::tempdir().unwrap();
    let (result, reference) = train(straight.path(), None, false);
    result.unwrap();

    let broken = tempfile::tempdir().unwrap();
    // Call 8 is update 8: after the checkpoint of update 5, with 2 updates to redo.
    let (result, _) = train(broken.path(), Some(8), false);
    assert!(result.unwrap_err().to_string().contains("crash injected"));
    assert_eq!(CheckpointDir::new(broken.path().join("checkpoints")).complete_steps().unwrap().last(), Some(&5));
    let first_segment =
        CheckpointDir::new(broken.path().join("checkpoints")).latest(&Device::Cpu).unwrap().unwrap().state.seconds;
    assert!(first_segment > 0.0, "the checkpoint keeps the time trained so far");
    let (result, resumed) = train(broken.path(), None, true);
    let summary = result.unwrap();
    assert_eq!(summary.resumed_from, Some(5));
    assert!(summary.seconds > first_segment, "a resumed run's time counts its first segment: {}", summary.seconds);
    assert_eq!(resumed.restored, Some(serde_json::json!({"calls": 5})));
    assert_eq!(resumed.calls, 7, "updates 6..=12 run again, 1..=5 do not");

    for name in ["w", "frozen.b"] {
        let (a, b) = (values(&reference.vars, name), values(&resumed.vars, name));
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}: {a:?} after the straight run, {b:?} after the resumed one"
        );
    }
    let last =
        |dir: &std::path::Path| CheckpointDir::new(dir.join("checkpoints")).latest(&Device::Cpu).unwrap().unwrap();
    let (a, b) = (last(straight.path()), last(broken.path()));
    assert_eq!(a.state.rng, b.state.rng);
    assert_eq!(a.state.optimizer_steps, b.state.optimizer_steps);
    for (name, moment) in &a.optimizer {
        let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(bits(moment), bits(&b.optimizer[name]), "optimizer tensor {name}");
    }
    // The log reads as the straight run's: one train record per update, the same losses.
    let losses = |dir: &std::path::Path| -> Vec<(u64, f64)> {
        protein_lm::train::run_dir::read_log(dir.join("log.jsonl"), "train")
            .unwrap()
            .iter()
            .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap()))
            .collect()
    };
    assert_eq!(losses(straight.path()), losses(broken.path()));
}

/// A checkpoint whose weights hold a NaN (a damaged file: a run never checkpoints one) is refused on
/// resume, naming the file, instead of training on into a NaN loss that names none.
#[test]
fn a_resume_from_a_checkpoint_with_non_finite_weights_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(12);
    let mut task = Regression::new(SeededVarMap::new(0), 4);
    task.crash_at_call = Some(7);
    let run = run_dir(tmp.path(), &cfg);
    let mut trainer = Trainer::new(cfg.clone(), task.vars.clone(), Device::Cpu).unwrap();
    trainer.progress = false;
    assert!(trainer.run(&mut task, &run, false).is_err());

    let weights = tmp.path().join("checkpoints/step-0000000006/model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    tensors.insert("w".into(), Tensor::new(&[1f32, f32::NAN, 0.0, 0.0], &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, &weights).unwrap();

    let mut resumed = Regression::new(SeededVarMap::new(0), 4);
    let provenance = Provenance::collect(0, &[], &Device::Cpu).unwrap();
    let run = RunDir::open(tmp.path(), &serde_json::to_value(&cfg).unwrap(), &provenance, true).unwrap();
    let mut trainer = Trainer::new(cfg, resumed.vars.clone(), Device::Cpu).unwrap();
    trainer.progress = false;
    let err = trainer.run(&mut resumed, &run, true).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("NaN or infinite"), "{err}");
}
