//! Data parallelism without GPUs: ranks as threads with the in-process collective, as local
//! processes over TCP, and through the command line (`--cpu-ranks`).
//!
//! * averaging: two ranks take the steps of one process accumulating the same two micro-batches,
//!   bit for bit, and those of one process on the doubled batch up to rounding;
//! * rank 0 alone writes the run directory;
//! * a two-rank run killed part way and resumed ends with the uninterrupted run's bits and log;
//! * f16 dynamic loss scaling skips overflowing updates (natural and injected) and resumes bitwise;
//! * the rendezvous across real processes, and a two-rank `protein-lm pretrain --cpu-ranks 2`
//!   with its resume.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use protein_lm::distributed::collective::{Collective, LocalGroup, TcpCollective};
use protein_lm::distributed::rendezvous::{free_loopback_port, rendezvous};
use protein_lm::distributed::sync::DataParallel;
use protein_lm::models::init::SeededVarMap;
use protein_lm::train::precision::{HalfWeights, LossScaleConfig, Precision};
use protein_lm::train::run_dir::{read_log, Provenance, RunDir};
use protein_lm::train::trainer::{
    EpochOrder, LrSchedule, Metrics, OptimizerConfig, RunSummary, Task, TaskLoss, TrainConfig, Trainer,
};
use protein_lm::{Error, Result, Rng};

const N: usize = 24;

/// y = x·w + b on 24 samples; batches either from a sharded [`EpochOrder`] or "dealt": batch k of
/// rank r is batch k·ranks + r of a fixed list of consecutive batches (ProteinBERT's scheme), so
/// one process with `update_freq = ranks` sees the same micro-batches in the same order.
struct Toy {
    /// The variables the loss reads (the half copies under mixed precision).
    vars: SeededVarMap,
    dtype: DType,
    x: Vec<[f32; 4]>,
    y: Vec<f32>,
    batch: usize,
    order: Option<EpochOrder>,
    shard: (usize, usize),
    calls: usize,
    /// Fail (as a crash would) at this call on this rank.
    crash: Option<(usize, usize)>,
    /// Multiply the loss by 10⁶ at these updates (1-based; an overflow in f16). Dealt batches only.
    blow_up: Vec<u64>,
}

fn model(vars: &SeededVarMap, dtype: DType) {
    let vb = vars.var_builder(dtype, &Device::Cpu);
    vb.get_with_hints(4, "w", candle_nn::Init::Const(0.0)).unwrap();
    vb.get_with_hints(1, "b", candle_nn::Init::Const(0.5)).unwrap();
}

impl Toy {
    fn new(vars: SeededVarMap, dtype: DType, batch: usize, sharded_order: bool) -> Self {
        let mut rng = Rng::new(3);
        let x: Vec<[f32; 4]> = (0..N).map(|_| [0, 1, 2, 3].map(|_| rng.normal() as f32)).collect();
        let y = x.iter().map(|r| r[0] - 2.0 * r[1] + 0.5 * r[2] + 0.25).collect();
        Self {
            vars,
            dtype,
            x,
            y,
            batch,
            order: sharded_order.then(|| EpochOrder::new(11, N)),
            shard: (0, 1),
            calls: 0,
            crash: None,
            blow_up: vec![],
        }
    }
}

impl Task for Toy {
    fn batches_per_epoch(&self) -> u64 {
        match &self.order {
            Some(o) => o.batches(self.batch),
            None => (N / self.batch / self.shard.1) as u64,
        }
    }

    fn train_loss(&mut self, epoch: u64, batch: u64, _rng: &mut Rng) -> Result<TaskLoss> {
        self.calls += 1;
        if self.crash == Some((self.shard.0, self.calls)) {
            return Err(Error::invalid("crash injected by the test"));
        }
        let rows: Vec<usize> = match &mut self.order {
            Some(o) => o.batch(epoch, batch, self.batch).to_vec(),
            None => {
                let k = batch as usize * self.shard.1 + self.shard.0;
                (k * self.batch..(k + 1) * self.batch).collect()
            }
        };
        if rows.is_empty() {
            // This rank's share of the epoch's last batch is empty (see Task::shard).
            let zero = Tensor::zeros((), DType::F32, &Device::Cpu)?;
            return Ok(TaskLoss { loss: zero, metrics: Metrics::new(), samples: 0, tokens: 0 });
        }
        let w = self.vars.get_var("w").unwrap();
        let b = self.vars.get_var("b").unwrap();
        let x: Vec<f32> = rows.iter().flat_map(|&i| self.x[i]).collect();
        let y: Vec<f32> = rows.iter().map(|&i| self.y[i]).collect();
        let x = Tensor::from_vec(x, (rows.len(), 4), &Device::Cpu)?.to_dtype(self.dtype)?;
        let y = Tensor::from_vec(y, rows.len(), &Device::Cpu)?;
        let pred = x.matmul(&w.as_tensor().unsqueeze(1)?)?.squeeze(1)?.broadcast_add(b.as_tensor())?;
        let mut loss = pred.to_dtype(DType::F32)?.sub(&y)?.sqr()?.mean_all()?;
        if self.blow_up.contains(&(epoch * self.batches_per_epoch() + batch + 1)) {
            loss = (loss * 1e6)?;
        }
        Ok(TaskLoss { loss, metrics: Metrics::new(), samples: rows.len(), tokens: rows.len() })
    }

    fn validate(&mut self) -> Result<Metrics> {
        Ok(Metrics::from([("loss".to_string(), 1.0)]))
    }

    fn shard(&mut self, rank: usize, world_size: usize) -> Result<()> {
        self.shard = (rank, world_size);
        if let Some(o) = &mut self.order {
            o.shard(rank, world_size);
        }
        Ok(())
    }
}

fn config(max_updates: u64, update_freq: u64) -> TrainConfig {
    let mut c = TrainConfig::epochs(1000, 0.05);
    c.max_epochs = None;
    c.max_updates = max_updates;
    c.update_freq = update_freq;
    c.lr = LrSchedule::Constant { lr: 0.05 };
    c.optimizer = OptimizerConfig::adam_keras();
    c.early_stopping = None;
    c.validate_every_epochs = None;
    c.checkpoint_every = 3;
    c.keep_checkpoints = 2;
    c.log_every = 1;
    c
}

/// How one rank is set up.
#[derive(Clone)]
struct Setup {
    config: TrainConfig,
    batch: usize,
    sharded_order: bool,
    crash: Option<(usize, usize)>,
    blow_up: Vec<u64>,
}

struct Finished {
    result: Result<RunSummary>,
    params: Vec<(String, Vec<f32>)>,
}

fn params_of(vars: &SeededVarMap) -> Vec<(String, Vec<f32>)> {
    vars.named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

/// One rank's run in `dirs[rank]` (rank 0 opens it; the others only get a path).
fn run_rank(setup: &Setup, sync: Option<Box<dyn Collective + Send>>, dir: &Path, resume: bool) -> Finished {
    let master = SeededVarMap::new(0);
    model(&master, DType::F32);
    let precision = setup.config.precision;
    let (task_vars, half) = if precision.is_f32() {
        (master.clone(), None)
    } else {
        let (half, ()) = HalfWeights::build(&master, precision.dtype(), |vb: candle_nn::VarBuilder| {
            vb.get_with_hints(4, "w", candle_nn::Init::Const(0.0))?;
            vb.get_with_hints(1, "b", candle_nn::Init::Const(0.5)).map(|_| ())
        })
        .unwrap();
        (half.vars.clone(), Some(half))
    };
    let mut task = Toy::new(task_vars, precision.dtype(), setup.batch, setup.sharded_order);
    task.crash = setup.crash;
    task.blow_up = setup.blow_up.clone();
    let mut trainer = Trainer::new(setup.config.clone(), master.clone(), Device::Cpu).unwrap();
    trainer.progress = false;
    trainer.half = half;
    let rank = sync.as_ref().map_or(0, |c| c.rank());
    if let Some(c) = sync {
        trainer.sync = Box::new(DataParallel::new(c).with_bucket_bytes(8));
    }
    let run = if rank == 0 {
        let provenance = Provenance::collect(0, &[], &Device::Cpu).unwrap();
        RunDir::open(dir, &serde_json::to_value(&setup.config).unwrap(), &provenance, resume).unwrap()
    } else {
        RunDir::of_other_rank(dir)
    };
    let result = trainer.run(&mut task, &run, resume);
    Finished { result, params: params_of(&master) }
}

/// Every rank of an in-process group, each in its own thread and directory `base/rank-r`.
fn run_ranks(world: usize, setup: &Setup, base: &Path, resume: bool) -> Vec<Finished> {
    std::thread::scope(|s| {
        let handles: Vec<_> = LocalGroup::new(world)
            .into_iter()
            .enumerate()
            .map(|(rank, c)| {
                let dir = base.join(format!("rank-{rank}"));
                s.spawn(move || run_rank(setup, Some(Box::new(c.with_timeout(Duration::from_secs(60)))), &dir, resume))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    a.iter().zip(b).flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

#[test]
fn two_ranks_take_the_steps_of_one_process_on_the_whole_batch() {
    let tmp = tempfile::tempdir().unwrap();
    // Dealt batches: rank r's micro-batch is the one-process run's micro-batch r of the update.
    let two = run_ranks(
        2,
        &Setup { config: config(12, 1), batch: 3, sharded_order: false, crash: None, blow_up: vec![] },
        &tmp.path().join("two"),
        false,
    );
    let one = run_rank(
        &Setup { config: config(12, 2), batch: 3, sharded_order: false, crash: None, blow_up: vec![] },
        None,
        &tmp.path().join("one"),
        false,
    );
    one.result.as_ref().unwrap();
    for (rank, f) in two.iter().enumerate() {
        assert_eq!(f.result.as_ref().unwrap().updates, 12, "rank {rank}");
        // Each rank's gradient is scaled by its share (1/2) and the two added in rank order: the
        // same floating-point operations as accumulating loss/2 over the two micro-batches.
        assert_eq!(f.params, one.params, "rank {rank}: not bitwise the one-process run");
    }
    // Without the other rank's half the steps differ: the comparison can fail.
    let alone = run_rank(
        &Setup { config: config(12, 1), batch: 3, sharded_order: false, crash: None, blow_up: vec![] },
        None,
        &tmp.path().join("alone"),
        false,
    );
    assert!(max_diff(&alone.params, &one.params) > 1e-3);

    // Sharded epochs: 2 ranks × 4 proteins against one process with batches of 8, the same
    // proteins per update; equal up to rounding (a mean of two means of 4 against a mean of 8).
    let sharded = run_ranks(
        2,
        &Setup { config: config(12, 1), batch: 4, sharded_order: true, crash: None, blow_up: vec![] },
        &tmp.path().join("sharded"),
        false,
    );
    let whole = run_rank(
        &Setup { config: config(12, 1), batch: 8, sharded_order: true, crash: None, blow_up: vec![] },
        None,
        &tmp.path().join("whole"),
        false,
    );
    let diff = max_diff(&sharded[0].params, &whole.params);
    eprintln!("sharded two ranks against one process on the doubled batch: max |Δw| = {diff:.3e}");
    assert!(diff < 1e-5, "{diff}");
    assert_eq!(sharded[0].params, sharded[1].params, "the ranks hold the same weights");
    let half_batch = run_rank(
        &Setup { config: config(12, 1), batch: 4, sharded_order: true, crash: None, blow_up: vec![] },
        None,
        &tmp.path().join("half"),
        false,
    );
    assert!(max_diff(&half_batch.params, &whole.params) > 1e-3);
}

#[test]
fn epochs_with_a_remainder_leave_some_ranks_short_or_empty_batches() {
    // 24 proteins on 5 ranks in batches of 2: 3 batches per rank per epoch; ranks 0-3 hold 5
    // proteins (their last batch is short), rank 4 holds 4 (its last batch is empty); the run goes
    // on through 2 epochs with every rank on the same weights.
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup { config: config(6, 1), batch: 2, sharded_order: true, crash: None, blow_up: vec![] };
    let ranks = run_ranks(5, &setup, tmp.path(), false);
    for f in &ranks {
        let s = f.result.as_ref().unwrap();
        assert_eq!((s.updates, s.epochs_completed), (6, 2));
        assert_eq!(f.params, ranks[0].params);
    }
    let log = read_log(tmp.path().join("rank-0/log.jsonl"), "train").unwrap();
    assert_eq!(log.iter().map(|r| r["ranks"].as_u64().unwrap()).collect::<Vec<_>>(), vec![5; 6]);
    // The same epochs on one process in batches of 10 (5 ranks × 2) end close to the ranks.
    let one = run_rank(&Setup { batch: 10, ..setup }, None, &tmp.path().join("one"), false);
    let diff = max_diff(&one.params, &ranks[0].params);
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn rank_zero_alone_writes_and_a_killed_two_rank_run_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup { config: config(10, 1), batch: 3, sharded_order: true, crash: None, blow_up: vec![] };
    let full = run_ranks(2, &setup, &tmp.path().join("full"), false);
    full[0].result.as_ref().unwrap();
    // Rank 1 wrote nothing: its directory was never even created.
    assert!(!tmp.path().join("full/rank-1").exists());
    let rank0: Vec<String> = std::fs::read_dir(tmp.path().join("full/rank-0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for f in ["config.json", "log.jsonl", "checkpoints", "model"] {
        assert!(rank0.iter().any(|n| n == f), "{f} in {rank0:?}");
    }

    // Rank 1 fails at its 8th batch: rank 0 stops too (it cannot sum alone), after the checkpoint
    // at update 6. Both dirs of the killed run: rank 0's in "killed/rank-0", as before.
    let crashed = Setup { crash: Some((1, 8)), ..setup.clone() };
    let killed = run_ranks(2, &crashed, &tmp.path().join("killed"), false);
    let e0 = killed[0].result.as_ref().unwrap_err().to_string();
    let e1 = killed[1].result.as_ref().unwrap_err().to_string();
    assert!(e1.contains("crash injected"), "{e1}");
    assert!(e0.contains("rank 1 left the run"), "{e0}");
    let dir = tmp.path().join("killed/rank-0");
    assert_eq!(RunDir::of_other_rank(&dir).checkpoints().complete_steps().unwrap(), vec![3, 6]);

    // Resumed on two ranks: rank 1 gets the step-6 state from rank 0, and both end where the
    // uninterrupted run ended, bit for bit, with the same log.
    let resumed = run_ranks(2, &setup, &tmp.path().join("killed"), true);
    for (rank, f) in resumed.iter().enumerate() {
        let s = f.result.as_ref().unwrap();
        assert_eq!((s.updates, s.resumed_from), (10, Some(6)), "rank {rank}");
        assert_eq!(f.params, full[0].params, "rank {rank}");
    }
    let strip = |p: PathBuf| -> Vec<serde_json::Value> {
        read_log(p, "train")
            .unwrap()
            .into_iter()
            .map(|mut r| {
                for k in ["elapsed_s", "samples_per_s", "tokens_per_s"] {
                    r.as_object_mut().unwrap().remove(k);
                }
                r
            })
            .collect()
    };
    assert_eq!(strip(dir.join("log.jsonl")), strip(tmp.path().join("full/rank-0/log.jsonl")));
}

#[test]
fn f16_loss_scaling_skips_overflows_and_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(16, 1);
    c.precision = Precision::F16;
    c.checkpoint_every = 4;
    c.loss_scale = Some(LossScaleConfig { init_scale: 1024.0, growth_interval: 3, min_scale: 1e-4 });
    // Updates 5 and 6: the loss ×1e6, whose scaled gradient overflows f16 (max 65,504).
    let setup = Setup { config: c.clone(), batch: 4, sharded_order: false, crash: None, blow_up: vec![5, 6] };
    let run = run_rank(&setup, None, &tmp.path().join("f16"), false);
    assert_eq!(run.result.as_ref().unwrap().updates, 16);
    let log = read_log(tmp.path().join("f16/log.jsonl"), "train").unwrap();
    let scales: Vec<f64> = log.iter().map(|r| r["loss_scale"].as_f64().unwrap()).collect();
    let updated: Vec<u64> = log.iter().map(|r| r["params_updated"].as_u64().unwrap()).collect();
    eprintln!("loss scales per update: {scales:?}");
    // 1024 for 3 clean updates, doubled; the two injected overflows halve it twice and change no
    // weight; then it grows again after every 3 clean updates.
    assert_eq!(&scales[..8], &[1024.0, 1024.0, 1024.0, 2048.0, 2048.0, 1024.0, 512.0, 512.0]);
    assert_eq!(&updated[..8], &[2, 2, 2, 2, 0, 0, 2, 2]);
    assert_eq!(log.last().unwrap()["skipped_updates"], 2);
    let events = read_log(tmp.path().join("f16/log.jsonl"), "event").unwrap();
    let skips: Vec<u64> = events
        .iter()
        .filter(|e| e["event"].as_str().is_some_and(|t| t.starts_with("f16 overflow")))
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(skips, [5, 6]);
    // The model learned in f16 with f32 master weights: close to the f32 run.
    let f32_run = run_rank(
        &Setup { config: config(16, 1), blow_up: vec![], ..setup.clone() },
        None,
        &tmp.path().join("f32"),
        false,
    );
    let diff = max_diff(&run.params, &f32_run.params);
    eprintln!("f16 (2 skipped updates) against f32 after 16 updates: max |Δw| = {diff:.3e}");
    assert!(diff < 0.15, "{diff}");

    // Killed after the checkpoint at update 8 (the scaler then mid-way to its next growth) and
    // resumed: the same bits as the uninterrupted run.
    let killed = Setup { crash: Some((0, 10)), ..setup.clone() };
    let dir = tmp.path().join("killed");
    assert!(run_rank(&killed, None, &dir, false).result.is_err());
    let resumed = run_rank(&setup, None, &dir, true);
    assert_eq!(resumed.result.as_ref().unwrap().resumed_from, Some(8));
    assert_eq!(resumed.params, run.params);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoints/step-0000000016/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["extra"]["loss_scale"]["skipped"], 2, "{}", state["extra"]);
}

#[test]
fn bf16_training_with_f32_master_weights_tracks_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(20, 1);
    c.precision = Precision::Bf16;
    let bf16 = run_rank(
        &Setup { config: c, batch: 4, sharded_order: false, crash: None, blow_up: vec![] },
        None,
        &tmp.path().join("bf16"),
        false,
    );
    let _f32 = run_rank(
        &Setup { config: config(20, 1), batch: 4, sharded_order: false, crash: None, blow_up: vec![] },
        None,
        &tmp.path().join("f32"),
        false,
    );
    bf16.result.as_ref().unwrap();
    let (l16, l32) = (
        read_log(tmp.path().join("bf16/log.jsonl"), "train").unwrap(),
        read_log(tmp.path().join("f32/log.jsonl"), "train").unwrap(),
    );
    let losses = |log: &[serde_json::Value]| log.iter().map(|r| r["loss"].as_f64().unwrap()).collect::<Vec<_>>();
    let (a, b) = (losses(&l16), losses(&l32));
    let worst = a.iter().zip(&b).map(|(x, y)| ((x - y) / y).abs()).fold(0.0, f64::max);
    eprintln!("bf16 against f32 losses over 20 updates: worst relative difference {worst:.3e}");
    // bf16 keeps 8 bits of mantissa (relative rounding 2^-9 ≈ 2e-3 per value); the loss of this
    // small model stays within a few percent of f32's as both fall.
    assert!(worst < 0.05, "{worst}: {a:?} vs {b:?}");
    // Six batches per epoch: the fourth epoch's mean loss is well below the first's.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(mean(&a[12..18]) < 0.7 * mean(&a[..6]), "bf16 training lowers the loss: {a:?}");
    // The master weights the checkpoint keeps are f32 and not all on bf16's grid.
    let w = &bf16.params.iter().find(|(n, _)| n == "w").unwrap().1;
    assert!(w.iter().any(|v| half::bf16::from_f32(*v).to_f32() != *v), "{w:?}");
}

#[test]
fn mixed_precision_without_half_copies_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(2, 1);
    c.precision = Precision::Bf16;
    let vars = SeededVarMap::new(0);
    model(&vars, DType::F32);
    let mut task = Toy::new(vars.clone(), DType::F32, 4, false);
    let mut trainer = Trainer::new(c, vars, Device::Cpu).unwrap();
    trainer.progress = false;
    let e = trainer.run_in(&mut task, tmp.path(), false).unwrap_err().to_string();
    assert!(e.contains("precision bf16 needs the model built on bf16 copies"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Real processes

/// Not a test of its own: the child process of `rendezvous_and_sums_across_processes`.
#[test]
#[ignore = "started by rendezvous_and_sums_across_processes as a child process"]
fn rendezvous_child() {
    let rank: usize = std::env::var("PLM_TEST_RANK").unwrap().parse().unwrap();
    let world: usize = std::env::var("PLM_TEST_WORLD").unwrap().parse().unwrap();
    let port: u16 = std::env::var("PLM_TEST_PORT").unwrap().parse().unwrap();
    let met = rendezvous("127.0.0.1", port, rank, world, 42, Duration::from_secs(60), || {
        Ok(b"an NCCL id would be here".to_vec())
    })
    .unwrap();
    let mut tcp = TcpCollective::new(rank, world, met.links, Duration::from_secs(60)).unwrap();
    let sum = tcp.all_reduce_sum(&Tensor::new(&[rank as f32, 1.0], &Device::Cpu).unwrap()).unwrap();
    println!("RESULT {} {:?}", String::from_utf8_lossy(&met.blob), sum.to_vec1::<f32>().unwrap());
}

#[test]
fn rendezvous_and_sums_across_processes() {
    let port = free_loopback_port().unwrap();
    let world = 3;
    let children: Vec<_> = (0..world)
        .rev()
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "rendezvous_child", "--ignored", "--nocapture", "--test-threads=1"])
                .env("PLM_TEST_RANK", rank.to_string())
                .env("PLM_TEST_WORLD", world.to_string())
                .env("PLM_TEST_PORT", port.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        // libtest prints the test's name on the same line, before its output.
        let line = stdout.lines().find_map(|l| l.split_once("RESULT ")).expect("a result line").1;
        assert_eq!(line, "an NCCL id would be here [3.0, 3.0]");
    }
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn pretrain(out: &Path, extra: &[&str], max_updates: u64, failpoint: Option<&str>) -> std::process::Output {
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("configs/proberta-pretrain-tiny.json")).unwrap()).unwrap();
    config["train"]["max_updates"] = max_updates.into();
    config["train"]["lr"]["total_updates"] = 20.into();
    config["train"]["checkpoint_every"] = 3.into();
    config["data"]["max_proteins"] = 120.into();
    config["data"]["valid_proteins"] = 16.into();
    let path = out.with_extension("json");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protein-lm"));
    if let Some(f) = failpoint {
        cmd.env(protein_lm::failpoint::ENV, f);
    }
    cmd.args(["pretrain", "--model", "proberta", "--config"])
        .arg(&path)
        .arg("--tokenizer")
        .arg(repo("tests/fixtures/proberta/dict.txt"))
        .arg("--data")
        .arg(repo("datasets/samples/swissprot_sample300.tsv"))
        .arg("--out")
        .arg(out)
        .args(["--quiet"])
        .args(extra)
        .env("PROTEIN_LM_DATA", "/nonexistent-protein-lm-data")
        .output()
        .unwrap()
}

fn train_records(path: &Path) -> Vec<serde_json::Value> {
    read_log(path, "train")
        .unwrap()
        .into_iter()
        .map(|mut r| {
            for k in ["elapsed_s", "samples_per_s", "tokens_per_s"] {
                r.as_object_mut().unwrap().remove(k);
            }
            r
        })
        .collect()
}

#[test]
fn cli_cpu_ranks_train_and_a_killed_run_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let first = pretrain(&full, &["--cpu-ranks", "2"], 8, None);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains("starting 2 ranks") && stderr.contains("protein-lm: device cpu"), "{stderr}");
    let stdout = String::from_utf8_lossy(&first.stdout);
    // Rank 0 alone reports.
    assert_eq!(stdout.matches("8 updates").count(), 1, "{stdout}");
    let events = read_log(full.join("log.jsonl"), "event").unwrap();
    assert!(
        events.iter().any(|e| e["event"].as_str().unwrap_or("").contains("2 ranks (tcp all-reduce)")),
        "{events:?}"
    );
    assert!(train_records(&full.join("log.jsonl")).iter().all(|r| r["ranks"] == 2));

    // Rank 0 killed while writing its second checkpoint (update 6): rank 1 stops with it, the
    // launcher names the rank; resumed on two ranks, the run ends with the uninterrupted bits.
    let killed = tmp.path().join("killed");
    let crash = pretrain(&killed, &["--cpu-ranks", "2"], 8, Some("checkpoint.before_state:2"));
    let e = String::from_utf8_lossy(&crash.stderr);
    assert!(!crash.status.success());
    assert!(e.contains("rank 0 of 2 failed") || e.contains("rank 1 of 2 failed"), "{e}");
    let resumed = pretrain(&killed, &["--cpu-ranks", "2", "--resume"], 8, None);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("resumed from update 3"));
    let bytes = |p: &Path| std::fs::read(p.join("model/model.safetensors")).unwrap();
    assert_eq!(bytes(&killed), bytes(&full), "the resumed two-rank model is the uninterrupted one");
    assert_eq!(train_records(&killed.join("log.jsonl")), train_records(&full.join("log.jsonl")));
}

#[test]
fn cli_refuses_what_this_build_or_environment_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    if !cfg!(feature = "nccl") {
        let refused = pretrain(&tmp.path().join("gpus"), &["--gpus", "2"], 2, None);
        let e = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success());
        assert!(e.contains("--gpus needs a CUDA build with NCCL") && e.contains("--cpu-ranks 2"), "{e}");
    }
    let e = String::from_utf8_lossy(
        &pretrain(&tmp.path().join("c"), &["--cpu-ranks", "2", "--device", "cuda"], 2, None).stderr,
    )
    .into_owned();
    assert!(e.contains("--cpu-ranks runs every rank on the CPU"), "{e}");
    if !candle_core::utils::cuda_is_available() {
        let e = String::from_utf8_lossy(&pretrain(&tmp.path().join("d"), &["--device", "cuda"], 2, None).stderr)
            .into_owned();
        assert!(e.contains("this build has no CUDA") && e.contains("--device cpu"), "{e}");
    }
    let e =
        String::from_utf8_lossy(&pretrain(&tmp.path().join("p"), &["--precision", "fp8"], 2, None).stderr).into_owned();
    assert!(e.contains("precision `fp8`: expected f32, bf16 or f16"), "{e}");
    // Under a launcher's environment the ranks come from it: --cpu-ranks is refused there, and a
    // rank whose variables are wrong is told which one.
    let mut nested = Command::new(env!("CARGO_BIN_EXE_protein-lm"));
    let nested = nested
        .args(["pretrain", "--model", "proberta", "--config"])
        .arg(repo("configs/proberta-pretrain-tiny.json"))
        .args(["--out"])
        .arg(tmp.path().join("nested"))
        .args(["--cpu-ranks", "2"])
        .env("WORLD_SIZE", "2")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&nested.stderr);
    assert!(!nested.status.success() && e.contains("WORLD_SIZE is set"), "{e}");
    let mut bad = Command::new(env!("CARGO_BIN_EXE_protein-lm"));
    let bad = bad
        .args(["pretrain", "--model", "proberta", "--config"])
        .arg(repo("configs/proberta-pretrain-tiny.json"))
        .args(["--tokenizer"])
        .arg(repo("tests/fixtures/proberta/dict.txt"))
        .args(["--data"])
        .arg(repo("datasets/samples/swissprot_sample300.tsv"))
        .args(["--out"])
        .arg(tmp.path().join("bad"))
        .env("WORLD_SIZE", "2")
        .env("RANK", "2")
        .env("LOCAL_RANK", "0")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && e.contains("RANK=2 is not below WORLD_SIZE=2"), "{e}");
}
