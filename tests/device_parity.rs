//! Both models' pretraining updates (forward, loss, backward, optimizer step) compared across
//! precisions on the CPU, and across devices where CUDA is present.
//!
//! * bf16 and f16 against f32 on the CPU (runs everywhere): the same updates of the tiny configs
//!   on the sample table, per-update losses within the tolerances measured below;
//! * CUDA against the CPU in f32, and CUDA bf16 against CPU f32: where this test binary was built
//!   with `--features cuda` and a GPU answers; elsewhere each prints `NO GPU: <test> (<reason>)`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use protein_lm::data::go::AnnotationMode;
use protein_lm::train::precision::Precision;
use protein_lm::train::pretrain::{pretrain, PretrainConfig, PretrainInputs};
use protein_lm::train::run_dir::{read_log, RunOptions};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Which of the two pretrainings.
#[derive(Clone, Copy, Debug)]
enum Model {
    ProteinBert,
    Proberta,
}

struct Run {
    losses: Vec<f64>,
    weights: HashMap<String, Tensor>,
}

/// `updates` updates of the tiny pretraining of `model` in `precision` on `device`.
fn pretrain_updates(model: Model, precision: Precision, device: &Device, updates: u64, out: &Path) -> Run {
    let (config, inputs) = match model {
        Model::ProteinBert => {
            let mut c = PretrainConfig::load(repo("configs/proteinbert-pretrain-tiny.json")).unwrap();
            c.data.annotations = AnnotationMode::Raw;
            c.data.min_go_proteins = 3;
            c.data.max_proteins = Some(120);
            c.data.valid_proteins = 8;
            (
                c,
                PretrainInputs {
                    data: repo("datasets/samples/swissprot_sample300.tsv"),
                    tokenizer: None,
                    go_graph: None,
                },
            )
        }
        Model::Proberta => {
            let mut c = PretrainConfig::load(repo("configs/proberta-pretrain-tiny.json")).unwrap();
            c.data.max_proteins = Some(120);
            c.data.valid_proteins = 8;
            let inputs = PretrainInputs {
                data: repo("datasets/samples/swissprot_sample300.tsv"),
                tokenizer: Some(repo("tests/fixtures/proberta/dict.txt")),
                go_graph: None,
            };
            (c, inputs)
        }
    };
    let mut config = config;
    config.train.precision = precision;
    config.train.max_updates = updates;
    config.train.validate_every_updates = None;
    config.train.validate_every_epochs = None;
    config.train.early_stopping = None;
    config.train.log_every = 1;
    config.train.checkpoint_every = 1000;
    pretrain(&config, &inputs, RunOptions { out, resume: false, device, progress: false }).unwrap();
    let losses =
        read_log(out.join("log.jsonl"), "train").unwrap().iter().map(|r| r["loss"].as_f64().unwrap()).collect();
    let weights = candle_core::safetensors::load(out.join("model/model.safetensors"), &Device::Cpu).unwrap();
    Run { losses, weights }
}

fn worst_relative(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| ((x - y) / y).abs()).fold(0.0, f64::max)
}

/// The largest |a − b| over every weight, relative to the largest |b|.
fn weights_gap(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut diff, mut scale) = (0f64, 0f64);
    for (k, t) in b {
        let t = t.to_dtype(DType::F32).unwrap();
        let d = (a[k].to_dtype(DType::F32).unwrap() - &t).unwrap().abs().unwrap().max_all().unwrap();
        diff = diff.max(d.to_scalar::<f32>().unwrap() as f64);
        scale = scale.max(t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() as f64);
    }
    diff / scale
}

/// Measured on the 2-core CPU (per-update loss over 4 updates, worst relative gap to f32):
/// ProteinBERT bf16 1.3e-3, f16 5.7e-5; PRoBERTa bf16 6.0e-5, f16 5.2e-5 (the test prints them).
/// bf16 rounds every weight and activation to 8 mantissa bits (relative 2^-9 ≈ 2e-3), f16 to 11
/// (2^-12 ≈ 2.4e-4); the tolerances are about ten times those roundings. (PRoBERTa's f16 losses
/// were all NaN while its attention mask scaled by 1e9, infinite in f16: `layers::mask_penalty`.)
#[test]
fn bf16_and_f16_pretraining_losses_of_both_models_track_f32_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    for model in [Model::ProteinBert, Model::Proberta] {
        let dir = |p: &str| tmp.path().join(format!("{model:?}-{p}"));
        let f32_run = pretrain_updates(model, Precision::F32, &Device::Cpu, 4, &dir("f32"));
        let precisions: &[(Precision, f64)] = match model {
            Model::ProteinBert => &[(Precision::Bf16, 2e-2), (Precision::F16, 3e-3)],
            Model::Proberta => &[(Precision::Bf16, 2e-2), (Precision::F16, 3e-3)],
        };
        for &(precision, tolerance) in precisions {
            let run = pretrain_updates(model, precision, &Device::Cpu, 4, &dir(precision.name()));
            let gap = worst_relative(&run.losses, &f32_run.losses);
            let weights = weights_gap(&run.weights, &f32_run.weights);
            eprintln!(
                "{model:?} {precision} against f32, 4 updates on the CPU: losses within {gap:.2e} (relative), \
                 master weights within {weights:.2e} of the largest weight"
            );
            assert!(gap < tolerance, "{model:?} {precision}: {:?} vs {:?}", run.losses, f32_run.losses);
            // The master weights stay f32 and move with the f32 run's.
            assert!(run.weights.values().all(|t| t.dtype() == DType::F32));
            assert!(weights < 0.05, "{model:?} {precision}: {weights}");
        }
    }
}

/// f32 on CUDA against f32 on the CPU (matmul order and fused kernels differ, so not bitwise), and
/// bf16 on CUDA against f32 on the CPU.
#[test]
fn cuda_updates_match_the_cpu_for_both_models() {
    let Some(cuda) = protein_lm::testing::cuda_device() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for model in [Model::ProteinBert, Model::Proberta] {
        let dir = |p: &str| tmp.path().join(format!("{model:?}-{p}"));
        let cpu = pretrain_updates(model, Precision::F32, &Device::Cpu, 3, &dir("cpu"));
        let gpu = pretrain_updates(model, Precision::F32, &cuda, 3, &dir("cuda"));
        let (gap, weights) = (worst_relative(&gpu.losses, &cpu.losses), weights_gap(&gpu.weights, &cpu.weights));
        eprintln!("{model:?} f32 CUDA against CPU: losses within {gap:.2e}, weights within {weights:.2e}");
        assert!(gap < 1e-4 && weights < 1e-4, "{model:?}: {:?} vs {:?}", gpu.losses, cpu.losses);
        let bf16 = pretrain_updates(model, Precision::Bf16, &cuda, 3, &dir("cuda-bf16"));
        let gap = worst_relative(&bf16.losses, &cpu.losses);
        eprintln!("{model:?} bf16 CUDA against f32 CPU: losses within {gap:.2e}");
        assert!(gap < 2e-2, "{model:?}: {:?} vs {:?}", bf16.losses, cpu.losses);
    }
}
