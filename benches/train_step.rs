//! Training throughput of PRoBERTa's masked-LM update through the real loop (`Trainer::run`:
//! masking, forward, logits at masked positions, backward, clip, optimiser, logging), against the
//! same network and batch in PyTorch (`benches/peers/proberta_train_step.py`):
//!
//!     cargo bench --bench train_step                     # demo size 5 × 192, batch 16 × 128
//!     cargo bench --bench train_step -- --paper-size     # 5 × 768, batch 8 × 512
//!
//! Both sides use AdamW (PyTorch has no LAMB; the optimiser is a small share of an update) and
//! random token ids of the full 10,009-id vocabulary; updates 1–3 are warm-up and not timed.
//!
//! Measured on the 2-core machine, quiet, 2 threads each (README, Benchmarks): demo size 0.770 s
//! per update against PyTorch 2.15's 0.561 s; paper size 21.4 s against 10.6 s.

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/inputs.rs"]
mod inputs;

use candle_core::{DType, Device};
use protein_lm::models::init::SeededVarMap;
use protein_lm::models::proberta::{self, ProbertaForMaskedLm};
use protein_lm::train::objectives::mlm::MaskingOptions;
use protein_lm::train::pretrain::ProbertaPretraining;
use protein_lm::train::run_dir::{Provenance, RunDir};
use protein_lm::train::trainer::{EpochOrder, LrSchedule, OptimizerConfig, TrainConfig, Trainer};

fn main() {
    allocator::setup_runtime();
    let paper_size = std::env::args().any(|a| a == "--paper-size");
    let (hidden, ff, batch, len) = if paper_size { (768, 3072, 8, 512) } else { (192, 768, 16, 128) };
    let config = proberta::Config { hidden_size: hidden, intermediate_size: ff, ..proberta::Config::default() };
    let (warmup, timed) = (3u64, 12u64);
    let device = Device::Cpu;
    let vars = SeededVarMap::new(0);
    let model = ProbertaForMaskedLm::load(vars.var_builder(DType::F32, &device), &config).unwrap();
    let train = inputs::random_proberta_sequences(batch * (warmup + timed) as usize, len, config.vocab_size, 1);
    let mut task = ProbertaPretraining {
        model,
        order: EpochOrder::new(0, train.len()),
        train,
        valid: vec![],
        masking: MaskingOptions::proberta(config.vocab_size as u32),
        batch_size: batch,
        seed: 0,
        unigram_entropy: f64::NAN,
        device: device.clone(),
    };
    let train_config = |updates: u64| TrainConfig {
        seed: 0,
        max_updates: updates,
        max_epochs: None,
        update_freq: 1,
        clip_norm: Some(1.0),
        lr: LrSchedule::Constant { lr: 1e-4 },
        optimizer: OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 },
        plateau: None,
        early_stopping: None,
        validate_every_updates: None,
        validate_every_epochs: None,
        checkpoint_every: 1_000_000,
        keep_checkpoints: 1,
        log_every: 1,
        lr_scales: Vec::new(),
        precision: Default::default(),
        loss_scale: None,
    };
    let tmp = tempfile::tempdir().unwrap();
    let provenance = Provenance::collect(0, &[], &device).unwrap();
    let mut seconds = Vec::new();
    for (name, updates) in [("warm-up", warmup), ("timed", warmup + timed)] {
        let cfg = train_config(updates);
        let run =
            RunDir::open(tmp.path().join(name), &serde_json::to_value(&cfg).unwrap(), &provenance, false).unwrap();
        let mut trainer = Trainer::new(cfg, vars.clone(), device.clone()).unwrap();
        trainer.progress = false;
        seconds.push(trainer.run(&mut task, &run, false).unwrap().seconds);
    }
    let per_update = (seconds[1] - seconds[0]) / timed as f64;
    println!(
        "PRoBERTa {} layers × {hidden}, batch {batch} × {len}, {} threads: {:.3} s per update, {:.1} sequences/s, {:.0} tokens/s",
        config.num_hidden_layers,
        rayon::current_num_threads(),
        per_update,
        batch as f64 / per_update,
        (batch * len) as f64 / per_update
    );
}
