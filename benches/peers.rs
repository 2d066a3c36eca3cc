//! Our side of the peers runner (`benches/peers/run.sh`): one measurement per call, the seconds of
//! every timed repeat printed as one JSON line, in the format the Python peers print
//! (`benches/peers/proberta_peer.py`, `benches/peers/proteinbert_peer.py`), so the runner can set
//! them side by side.
//!
//!     cargo bench --bench peers -- <measurement> [--reps N] [--warmup N] [--json]
//!
//! | measurement | what one repeat is |
//! |---|---|
//! | `proberta-forward` | PRoBERTa at paper size (5 × 768, 12 heads, FFN 3,072, vocabulary 10,009), batch 8 × 512 random ids, no padding: encoder + LM head logits at every position (`ProbertaForMaskedLm::forward`, `RobertaForMaskedLM`'s logits), evaluation mode |
//! | `proberta-train-step` | one masked-LM update through the real `Trainer`: 8 × 512, 15 % masked (80/10/10), dropout 0.1, logits at masked positions only (fairseq), backward, apex FusedLAMB (β 0.9/0.999, ε 1e-8, weight decay 0.01, its own clip at grad norm 1.0, as `configs/proberta-pretrain-paper.json`), lr 2.5e-3 |
//! | `proteinbert-forward` | ProteinBERT at the released size (6 blocks, 128/512, 8,943 GO terms), 32 × 512 random residues, all-zero annotations, token and GO probabilities (Keras' `predict` outputs) |
//! | `proteinbert-train-step` | one denoising + GO update through the real `Trainer` and `ProteinbertPretraining`: 32 × 512 (one episode), the reference's noise (5 % tokens; GO: drop 25 %, add 1e-4, withhold 50 %), tensorflow-addons LAMB (ε 1e-6, no weight decay, lr 2e-4, as the reference's pretraining script) |
//! | `matmul-limit` | f32 products 4,096 × 768 @ 768 × 3,072 (PRoBERTa's FFN at 8 × 512), 4 per repeat; seconds per product |
//! | `matmul-narrow-dense` | 16,384 × 128 @ 128 × 128 (ProteinBERT's per-residue dense at 32 × 512), 32 per repeat |
//! | `matmul-narrow-conv` | 16,384 × 1,152 @ 1,152 × 128 (its 9-tap convolution written as one product), 4 per repeat |
//!
//! Warm-up repeats (default 1; train steps 2) are run first and not reported. Training repeats are
//! the per-update times of one run, from the run's own log (`elapsed_s` of consecutive updates).
//! Threads: rayon's pool, `RAYON_NUM_THREADS` (the runner sets 2, as the peers' OMP/TF threads).
//! FLOP counts and the table are the runner's (`benches/peers/table.py`).

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/inputs.rs"]
mod inputs;

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use protein_lm::models::init::SeededVarMap;
use protein_lm::models::{proberta, proteinbert};
use protein_lm::train::objectives::denoising::{AnnotatedCorpus, DenoisingOptions, Episode, EpisodeSampler};
use protein_lm::train::objectives::mlm::MaskingOptions;
use protein_lm::train::pretrain::{ProbertaPretraining, ProteinbertPretraining};
use protein_lm::train::run_dir::{Provenance, RunDir, LOG_FILE};
use protein_lm::train::trainer::{EpochOrder, LrSchedule, OptimizerConfig, Task, TrainConfig, Trainer};
use protein_lm::Rng;

/// PRoBERTa's batch (the paper's tokens per sample) and ProteinBERT's (the forward the Keras
/// fixture script times; the 512-token episode's length).
const PROBERTA_BATCH: (usize, usize) = (8, 512);
const PROTEINBERT_BATCH: (usize, usize) = (32, 512);
/// GO terms per synthetic training protein (the peer draws the same number).
const GO_TERMS_PER_PROTEIN: usize = 10;
/// ProteinBERT's ids of the 20 standard amino acids (A = 0 … Y = 21 without U = 17 and X = 20).
const STANDARD_RESIDUES: [u32; 20] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 21];

struct Args {
    measurement: String,
    reps: usize,
    warmup: Option<usize>,
    json: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench peers -- <proberta-forward | proberta-train-step | proteinbert-forward | \
         proteinbert-train-step | matmul-limit | matmul-narrow-dense | matmul-narrow-conv> [--reps N] [--warmup N] [--json]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args { measurement: String::new(), reps: 5, warmup: None, json: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> usize {
            it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{name} needs a number");
                usage()
            })
        };
        match a.as_str() {
            "--reps" => args.reps = number("--reps").max(1),
            "--warmup" => args.warmup = Some(number("--warmup")),
            "--json" => args.json = true,
            // `cargo bench` passes --bench to harness-less targets.
            "--bench" => {}
            s if !s.starts_with('-') && args.measurement.is_empty() => args.measurement = s.to_string(),
            _ => usage(),
        }
    }
    if args.measurement.is_empty() {
        usage()
    }
    args
}

/// `warmup` untimed calls, then the seconds of `reps` timed ones.
fn time_calls(warmup: usize, reps: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

fn proberta_forward(warmup: usize, reps: usize) -> (Vec<f64>, serde_json::Value) {
    let config = proberta::Config::default();
    let map = SeededVarMap::new(2);
    proberta::ProbertaForMaskedLm::load(map.var_builder(DType::F32, &Device::Cpu), &config).unwrap();
    let model = proberta::ProbertaForMaskedLm::load(inputs::inference_weights(&map), &config).unwrap();
    let (b, l) = PROBERTA_BATCH;
    let ids = inputs::random_ids(&mut Rng::new(0), b, l, 4, config.vocab_size as u32 - 1);
    let seconds = time_calls(warmup, reps, || {
        let (logits, _) = model.forward(&ids, proberta::Forward::default(), None).unwrap();
        assert_eq!(logits.dims(), [b, l, config.vocab_size]);
    });
    (seconds, serde_json::json!({"batch": b, "len": l, "what": "encoder + LM head logits at all positions"}))
}

fn proteinbert_forward(warmup: usize, reps: usize) -> (Vec<f64>, serde_json::Value) {
    let config = proteinbert::Config::default();
    let map = SeededVarMap::new(1);
    proteinbert::ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &config).unwrap();
    let model = proteinbert::ProteinBert::load(inputs::inference_weights(&map), &config).unwrap();
    let (b, l) = PROTEINBERT_BATCH;
    let ids = inputs::random_ids(&mut Rng::new(0), b, l, 0, config.vocab_size as u32);
    let annotations = Tensor::zeros((b, config.n_annotations), DType::F32, &Device::Cpu).unwrap();
    let seconds = time_calls(warmup, reps, || {
        let out = model.forward(&ids, &annotations, proteinbert::Forward::default()).unwrap();
        // Keras' predict returns both probabilities.
        out.token_probabilities().unwrap();
        out.annotation_probabilities().unwrap();
    });
    (seconds, serde_json::json!({"batch": b, "len": l, "what": "token + GO probabilities, zero annotations"}))
}

fn train_config(updates: u64, lr: f64, optimizer: OptimizerConfig) -> TrainConfig {
    TrainConfig {
        seed: 0,
        max_updates: updates,
        max_epochs: None,
        update_freq: 1,
        clip_norm: None,
        lr: LrSchedule::Constant { lr },
        optimizer,
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
    }
}

/// Runs `warmup + reps` updates of `task` and returns the last `reps` updates' seconds, read off
/// the run's log (`elapsed_s` at every update).
fn timed_updates(task: &mut dyn Task, vars: &SeededVarMap, config: TrainConfig, warmup: usize) -> Vec<f64> {
    let device = Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    let provenance = Provenance::collect(0, &[], &device).unwrap();
    let run =
        RunDir::open(tmp.path().join("run"), &serde_json::to_value(&config).unwrap(), &provenance, false).unwrap();
    let mut trainer = Trainer::new(config, vars.clone(), device).unwrap();
    trainer.progress = false;
    trainer.run(task, &run, false).unwrap();
    let log = std::fs::read_to_string(tmp.path().join("run").join(LOG_FILE)).unwrap();
    let elapsed: Vec<f64> = log
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|r| r["kind"] == "train")
        .map(|r| r["elapsed_s"].as_f64().unwrap())
        .collect();
    let mut seconds = vec![elapsed[0]];
    seconds.extend(elapsed.windows(2).map(|w| w[1] - w[0]));
    seconds.split_off(warmup)
}

fn proberta_train_step(warmup: usize, reps: usize) -> (Vec<f64>, serde_json::Value) {
    let config = proberta::Config::default();
    let device = Device::Cpu;
    let vars = SeededVarMap::new(0);
    let model = proberta::ProbertaForMaskedLm::load(vars.var_builder(DType::F32, &device), &config).unwrap();
    let (batch, len) = PROBERTA_BATCH;
    let train = inputs::random_proberta_sequences(batch * (warmup + reps), len, config.vocab_size, 1);
    let mut task = ProbertaPretraining {
        model,
        order: EpochOrder::new(0, train.len()),
        train,
        valid: vec![],
        masking: MaskingOptions::proberta(config.vocab_size as u32),
        batch_size: batch,
        seed: 0,
        unigram_entropy: f64::NAN,
        device,
    };
    let cfg = train_config((warmup + reps) as u64, 2.5e-3, OptimizerConfig::lamb_apex());
    let seconds = timed_updates(&mut task, &vars, cfg, warmup);
    (
        seconds,
        serde_json::json!({"batch": batch, "len": len, "optimizer": "apex FusedLAMB, clip 1.0", "mask_prob": 0.15}),
    )
}

fn proteinbert_train_step(warmup: usize, reps: usize) -> (Vec<f64>, serde_json::Value) {
    let config = proteinbert::Config::default();
    let device = Device::Cpu;
    let vars = SeededVarMap::new(0);
    let model = proteinbert::ProteinBert::load(vars.var_builder(DType::F32, &device), &config).unwrap();
    let (batch, len) = PROTEINBERT_BATCH;
    // Proteins of len − 2 random standard residues (the peer draws the same ids), so START +
    // residues + END fills every row: no padding.
    let mut rng = Rng::new(1);
    let n = batch * (warmup + reps);
    let corpus = AnnotatedCorpus {
        tokens: (0..n).map(|_| (0..len - 2).map(|_| STANDARD_RESIDUES[rng.index(20)]).collect()).collect(),
        annotations: (0..n)
            .map(|_| {
                let mut terms: Vec<u32> = rng
                    .sample_without_replacement(config.n_annotations, GO_TERMS_PER_PROTEIN)
                    .into_iter()
                    .map(|t| t as u32)
                    .collect();
                terms.sort_unstable();
                terms
            })
            .collect(),
        n_terms: config.n_annotations,
    };
    let options = DenoisingOptions {
        episodes: vec![Episode { seq_len: len, batch_size: batch }],
        batches_per_epoch: (warmup + reps) as u64,
        ..DenoisingOptions::reference()
    };
    let lengths: Vec<usize> = corpus.tokens.iter().map(Vec::len).collect();
    let sampler = EpisodeSampler::new(&lengths, options.clone(), 0).unwrap();
    let mut task = ProteinbertPretraining {
        model,
        corpus,
        sampler,
        options,
        valid: vec![],
        device,
        dtype: DType::F32,
        shard: (0, 1),
    };
    let cfg = train_config((warmup + reps) as u64, 2e-4, OptimizerConfig::lamb_tfa());
    let seconds = timed_updates(&mut task, &vars, cfg, warmup);
    (
        seconds,
        serde_json::json!({"batch": batch, "len": len, "optimizer": "tensorflow-addons LAMB", "go_terms_per_protein": GO_TERMS_PER_PROTEIN}),
    )
}

/// One f32 product `(m, k) @ (k, n)`; a repeat is `calls` products (small ones repeat so that a
/// repeat is not a few milliseconds of timer noise) and reports the seconds per product.
fn matmul(m: usize, k: usize, n: usize, calls: usize, warmup: usize, reps: usize) -> (Vec<f64>, serde_json::Value) {
    let mut rng = Rng::new(3);
    let a = Tensor::from_vec(rng.uniform_vec(m * k, -1.0, 1.0), (m, k), &Device::Cpu).unwrap();
    let b = Tensor::from_vec(rng.uniform_vec(k * n, -1.0, 1.0), (k, n), &Device::Cpu).unwrap();
    let seconds = time_calls(warmup, reps, || {
        for _ in 0..calls {
            let c = a.matmul(&b).unwrap();
            assert_eq!(c.dims(), [m, n]);
        }
    });
    let per_product = seconds.into_iter().map(|s| s / calls as f64).collect();
    (per_product, serde_json::json!({"m": m, "k": k, "n": n, "flops": 2 * m * k * n, "calls_per_repeat": calls}))
}

fn main() {
    allocator::setup_runtime();
    let args = parse_args();
    let training = args.measurement.ends_with("train-step");
    let matmul_shape = match args.measurement.as_str() {
        "matmul-limit" => Some((4096, 768, 3072, 4)),
        "matmul-narrow-dense" => Some((16_384, 128, 128, 32)),
        "matmul-narrow-conv" => Some((16_384, 1152, 128, 4)),
        _ => None,
    };
    let warmup = args.warmup.unwrap_or(if training { 2 } else { 1 });
    let (reps, m) = (args.reps, args.measurement.as_str());
    // As the `protein-lm` binary and the trainer do.
    protein_lm::device::flush_denormals_to_zero();
    let (seconds, detail) = match m {
        "proberta-forward" => proberta_forward(warmup, reps),
        "proberta-train-step" => proberta_train_step(warmup, reps),
        "proteinbert-forward" => proteinbert_forward(warmup, reps),
        "proteinbert-train-step" => proteinbert_train_step(warmup, reps),
        _ => match matmul_shape {
            Some((m, k, n, calls)) => matmul(m, k, n, calls, warmup, reps),
            None => usage(),
        },
    };
    let threads = rayon::current_num_threads();
    if args.json {
        let line = serde_json::json!({
            "measurement": m,
            "side": "protein-lm",
            "impl": "protein-lm (candle 0.11)",
            "threads": threads,
            "warmup": warmup,
            "seconds": seconds,
            "detail": detail,
        });
        println!("{line}");
    } else {
        let mut sorted = seconds.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{m}: median {:.4} s over {} repeats (min {:.4}, max {:.4}), {threads} threads; {detail}",
            sorted[sorted.len() / 2],
            sorted.len(),
            sorted[0],
            sorted[sorted.len() - 1]
        );
    }
}
