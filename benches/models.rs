//! Forward-pass timings of both networks at their released sizes (random weights), and the
//! long-protein case ProteinBERT's reference cannot run:
//!
//!     cargo bench --bench models                 # batch 32 × 512 for both models
//!     cargo bench --bench models -- --long 35000 # one protein of 35,000 residues (ProteinBERT)
//!
//! Peak memory: run the built binary under `/usr/bin/time -v`. Peers: the Keras reference's batch
//! 32 × 512 forward is timed by `tests/fixtures/proteinbert/make_fixtures.py` (README there); the
//! PyTorch figure is the spec's (`proberta.md`, transformers on the same machine kind).
//!
//! Each line gives wall time and the process's CPU seconds (user + system, both threads): on a
//! machine busy with other work the CPU seconds move far less than the wall time.
//!
//! The side-by-side comparison with PyTorch and Keras is `benches/peers/run.sh` (README,
//! "Performance"). Before the fused kernels of issue 15, quiet: ProteinBERT 32 × 512 0.91–1.21 s,
//! PRoBERTa encoder 8 × 512 2.61–2.64 s; one ProteinBERT protein of 35,000 residues 3.0 s, 0.62 GB
//! peak resident (Keras runs out of memory). After them, with the machine loaded by other builds,
//! CPU seconds per forward went from 2.5–2.9 to 1.3 (ProteinBERT) and from 6.6–7.5 to 2.8 (PRoBERTa).

use std::time::Instant;

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/inputs.rs"]
mod inputs;

use candle_core::{DType, Device, Tensor};
use protein_lm::models::init::SeededVarMap;
use protein_lm::models::{proberta, proteinbert};
use protein_lm::Rng;

/// CPU seconds this process has used (user + system, all threads), from /proc: on a busy machine
/// it moves far less than wall time when other processes take the cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    allocator::setup_runtime();
    let args: Vec<String> = std::env::args().collect();
    let long = args.iter().position(|a| a == "--long").map(|i| args[i + 1].parse::<usize>().expect("--long N"));
    let mut rng = Rng::new(0);
    let map = SeededVarMap::new(1);
    let config = proteinbert::Config::default();
    proteinbert::ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &config).unwrap();
    let model = proteinbert::ProteinBert::load(inputs::inference_weights(&map), &config).unwrap();
    println!("rayon/candle threads: {}", rayon::current_num_threads());

    if let Some(residues) = long {
        let l = residues + 2;
        let ids = inputs::random_ids(&mut rng, 1, l, 0, 22);
        let annotations = Tensor::zeros((1, config.n_annotations), DType::F32, &Device::Cpu).unwrap();
        let t = Instant::now();
        let out = model.forward(&ids, &annotations, proteinbert::Forward::default()).unwrap();
        let global = out.global_hidden().unwrap();
        println!(
            "ProteinBERT (released size) one protein of {residues} residues: forward {:.2} s, protein vector {:?}",
            t.elapsed().as_secs_f64(),
            global.dims()
        );
        return;
    }

    let (b, l) = (32, 512);
    let ids = inputs::random_ids(&mut rng, b, l, 0, 26);
    let annotations = Tensor::zeros((b, config.n_annotations), DType::F32, &Device::Cpu).unwrap();
    let (times, cpu): (Vec<f64>, Vec<f64>) = (0..4)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_seconds());
            model.forward(&ids, &annotations, proteinbert::Forward::default()).unwrap();
            (t.elapsed().as_secs_f64(), cpu_seconds() - c)
        })
        .skip(1)
        .unzip();
    let (t, c) = (median(times), median(cpu));
    println!(
        "ProteinBERT forward 32 × 512: median {t:.3} s ({:.1} k tokens/s), {c:.2} CPU s",
        (b * l) as f64 / t / 1e3
    );

    let map = SeededVarMap::new(2);
    let config = proberta::Config::default();
    proberta::Encoder::load(map.var_builder(DType::F32, &Device::Cpu), &config).unwrap();
    let encoder = proberta::Encoder::load(inputs::inference_weights(&map), &config).unwrap();
    let (b, l) = (8, 512);
    let ids = inputs::random_ids(&mut rng, b, l, 4, 10_000);
    let (times, cpu): (Vec<f64>, Vec<f64>) = (0..4)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_seconds());
            encoder.forward(&ids, proberta::Forward::default(), None).unwrap();
            (t.elapsed().as_secs_f64(), cpu_seconds() - c)
        })
        .skip(1)
        .unzip();
    let (t, c) = (median(times), median(cpu));
    println!(
        "PRoBERTa encoder forward 8 × 512 (5 × 768): median {t:.3} s ({:.2} k tokens/s), {c:.2} CPU s",
        (b * l) as f64 / t / 1e3
    );
}
