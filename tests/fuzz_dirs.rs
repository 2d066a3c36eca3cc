//! Fuzzing what the crate reads back from directories it wrote: model directories (config.json,
//! model.safetensors, dict.txt), Hugging Face directories on import, run directories on resume
//! (state.json, LATEST, checkpoint safetensors, config.json, log.jsonl) and the JSON configs of
//! pretraining and fine-tuning. Generated contents must round-trip; mutated ones must load or fail
//! with an error naming the file, never panic. Budget: see `fuzz_support`.

mod fuzz_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use fuzz_support::{config as config_for, *};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use protein_lm::data::Protein;
use protein_lm::device::DeviceChoice;
use protein_lm::embed::{EmbedOptions, Embedder};
use protein_lm::models::directory::{self, DirectoryConfig, ModelConfig, ModelDir};
use protein_lm::models::{proberta, proteinbert};
use protein_lm::train::checkpoint::{CheckpointDir, TrainingState};
use protein_lm::train::finetune::proberta::ProbertaFinetuneConfig;
use protein_lm::train::finetune::proteinbert::FinetuneConfig;
use protein_lm::train::pretrain::PretrainConfig;
use protein_lm::train::run_dir::{self, Provenance, RunDir};
use protein_lm::train::trainer::{LrSchedule, Metrics, OptimizerConfig, Task, TaskLoss, TrainConfig, Trainer};

// ---------------------------------------------------------------------------------------------
// Tensors and safetensors

/// A tensor of a generated dtype and shape with generated values (NaN and infinities included).
fn tensor() -> impl Strategy<Value = Tensor> {
    let dims = prop::collection::vec(0usize..4, 0..4);
    (dims, 0usize..5, any::<u64>()).prop_map(|(dims, dtype, seed)| {
        let n: usize = dims.iter().product();
        let mut rng = protein_lm::Rng::new(seed);
        let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, f32::MAX, f32::MIN_POSITIVE];
        let v: Vec<f32> = (0..n)
            .map(|_| {
                if rng.index(5) == 0 {
                    special[rng.index(special.len())]
                } else {
                    rng.uniform() as f32 * 200.0 - 100.0
                }
            })
            .collect();
        let t = Tensor::from_vec(v, dims.as_slice(), &Device::Cpu).unwrap();
        let dtype = [DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64][dtype];
        t.to_dtype(dtype).unwrap()
    })
}

fn tensors() -> impl Strategy<Value = HashMap<String, Tensor>> {
    prop::collection::hash_map("[a-z_]{1,8}(\\.[a-z0-9_]{1,8}){0,3}", tensor(), 0..8)
}

/// Bit-exact equality (NaN payloads included) of two tensor maps.
fn same_tensors(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> Result<(), TestCaseError> {
    let mut names: Vec<&String> = a.keys().collect();
    names.sort();
    let mut other: Vec<&String> = b.keys().collect();
    other.sort();
    prop_assert_eq!(&names, &other);
    for name in names {
        let (x, y) = (&a[name], &b[name]);
        prop_assert_eq!(x.dtype(), y.dtype(), "{}", name);
        prop_assert_eq!(x.dims(), y.dims(), "{}", name);
        let bits = |t: &Tensor| -> Vec<u64> {
            let t = t.flatten_all().unwrap();
            match t.dtype() {
                DType::I64 => t.to_vec1::<i64>().unwrap().into_iter().map(|v| v as u64).collect(),
                DType::F64 => t.to_vec1::<f64>().unwrap().into_iter().map(f64::to_bits).collect(),
                DType::F16 => t.to_vec1::<half::f16>().unwrap().into_iter().map(|v| v.to_bits() as u64).collect(),
                DType::BF16 => t.to_vec1::<half::bf16>().unwrap().into_iter().map(|v| v.to_bits() as u64).collect(),
                _ => t
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .into_iter()
                    .map(|v| v.to_bits() as u64)
                    .collect(),
            }
        };
        prop_assert_eq!(bits(x), bits(y), "{}", name);
    }
    Ok(())
}

/// Mutations of a safetensors file aimed at its JSON header: the header is edited as text and the
/// file rebuilt with the header's true length (or, sometimes, the old one).
fn mutate_safetensors_header(bytes: &[u8], edits: &[Mutation], keep_length: bool) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = apply(&bytes[8..8 + n], edits);
    let len = if keep_length { n as u64 } else { header.len() as u64 };
    [len.to_le_bytes().to_vec(), header, bytes[8 + n..].to_vec()].concat()
}

// ---------------------------------------------------------------------------------------------
// Model directories

fn proteinbert_config() -> impl Strategy<Value = proteinbert::Config> {
    (1usize..40, 1usize..5000, 1usize..64, 1usize..8, 1usize..8, 1usize..64, 1usize..16, 1usize..9, 1e-9f64..1.0)
        .prop_map(|(vocab_size, n_annotations, d_local, heads, n_blocks, d_key, k, dil, eps)| proteinbert::Config {
            vocab_size,
            n_annotations,
            d_local,
            d_global: heads * 8,
            n_blocks,
            n_heads: heads,
            d_key,
            conv_kernel_size: k,
            wide_conv_dilation: dil,
            layer_norm_eps: eps,
        })
}

fn proberta_config() -> impl Strategy<Value = proberta::Config> {
    (8usize..20000, 1usize..8, 1usize..13, 1usize..4000, 3usize..1000, 0u32..3, 0.0f64..1.0, any::<bool>()).prop_map(
        |(vocab_size, layers, heads, intermediate_size, positions, pad, dropout, zero)| proberta::Config {
            vocab_size,
            hidden_size: heads * 16,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size,
            max_position_embeddings: positions + pad as usize + 1,
            pad_token_id: pad,
            layer_norm_eps: 1e-5,
            hidden_dropout_prob: dropout,
            attention_probs_dropout_prob: dropout / 2.0,
            type_vocab_size: (pad % 2) as usize,
            zero_padded_embeddings: zero,
        },
    )
}

fn directory_config() -> impl Strategy<Value = DirectoryConfig> {
    let model = prop_oneof![
        proteinbert_config().prop_map(ModelConfig::Proteinbert),
        proberta_config().prop_map(ModelConfig::Proberta)
    ];
    (model, prop::option::of(any::<String>()), any::<bool>()).prop_map(|(model, source, has_lm_head)| DirectoryConfig {
        model,
        source,
        has_lm_head,
        heads: vec![],
    })
}

proptest! {
    #![proptest_config(config(64, true))]

    /// ModelDir::open(create(config, tensors)) gives back the config and the tensors bit for bit.
    #[test]
    fn model_dir_round_trip(config in directory_config(), tensors in tensors()) {
        let scratch = Scratch::new();
        let path = scratch.path().join("model");
        ModelDir::create(&path, &config, &tensors).unwrap();
        let dir = ModelDir::open(&path).unwrap();
        prop_assert_eq!(dir.config(), &config);
        let back = candle_core::safetensors::load(path.join(directory::WEIGHTS_FILE), &Device::Cpu).unwrap();
        same_tensors(&tensors, &back)?;
        // Through the directory's own reader: floats converted to the asked dtype, integers kept.
        let f32s = dir.tensors(DType::F32, &Device::Cpu).unwrap();
        for (name, t) in &tensors {
            let want = if t.dtype().is_float() { DType::F32 } else { t.dtype() };
            prop_assert_eq!(f32s[name].dtype(), want);
        }
    }
}

/// A directory's files, as (relative path, contents).
type Files = Vec<(String, Vec<u8>)>;

/// Tiny ProteinBERT and PRoBERTa model directories (files in memory), made once.
fn tiny_dirs() -> &'static Vec<(&'static str, Files)> {
    static DIRS: OnceLock<Vec<(&'static str, Files)>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dict = repo_file("tests/fixtures/proberta/dict.txt");
        let made = [
            ("proteinbert", ModelConfig::Proteinbert(proteinbert::Config::tiny(12)), None),
            ("proberta", ModelConfig::Proberta(proberta::Config::tiny(48)), Some(dict.as_path())),
        ];
        made.into_iter()
            .map(|(name, config, dict)| {
                let path = tmp.path().join(name);
                directory::init_random(&path, config, 7, dict).unwrap();
                let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&path)
                    .unwrap()
                    .map(|e| {
                        let e = e.unwrap();
                        (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
                    })
                    .collect();
                files.sort();
                (name, files)
            })
            .collect()
    })
}

fn cpu_options() -> EmbedOptions {
    EmbedOptions { device: DeviceChoice::Cpu, ..EmbedOptions::default() }
}

#[derive(Debug, Clone)]
enum DirEdit {
    /// Text or byte edits of one file.
    File(prop::sample::Index, Vec<Mutation>),
    /// Edits of the JSON header of model.safetensors.
    SafetensorsHeader(Vec<Mutation>, bool),
    /// One file removed.
    Remove(prop::sample::Index),
    /// One file's contents replaced (e.g. LATEST pointing elsewhere).
    Replace(prop::sample::Index, Vec<u8>),
}

fn dir_edit() -> impl Strategy<Value = DirEdit> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), mutations(b',')).prop_map(|(i, m)| DirEdit::File(i, m)),
        3 => (mutations(b','), any::<bool>()).prop_map(|(m, keep)| DirEdit::SafetensorsHeader(m, keep)),
        1 => any::<prop::sample::Index>().prop_map(DirEdit::Remove),
        1 => (any::<prop::sample::Index>(), replacement()).prop_map(|(i, b)| DirEdit::Replace(i, b)),
    ]
}

const REPLACEMENTS: &[&[u8]] = &[
    b"step-0000000010",
    b"step-0000000020\n",
    b"step-0000000030",
    b"step-10",
    b"../..",
    b"..",
    b"/",
    b"/tmp",
    b"/etc",
    b"step-0000000020/../..",
    b"../run/checkpoints/step-0000000010",
    b"./step-0000000010",
    b"",
    b"\xff\xfe",
    b"{}",
    b"null",
    b"[]",
];

/// Whole-file contents: other checkpoints, paths out of the directory, nothing, garbage.
fn replacement() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::sample::select(REPLACEMENTS).prop_map(<[u8]>::to_vec), "[ -~]{0,40}".prop_map(String::into_bytes),]
}

/// Writes `files` into `dir` with `edit` applied.
fn write_edited(dir: &Path, files: &[(String, Vec<u8>)], edit: &DirEdit) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut paths = Vec::new();
    for (k, (name, bytes)) in files.iter().enumerate() {
        let path = dir.join(name);
        let bytes = match edit {
            DirEdit::File(i, m) if i.index(files.len()) == k => apply(bytes, m),
            DirEdit::SafetensorsHeader(m, keep) if name.ends_with(".safetensors") => {
                mutate_safetensors_header(bytes, m, *keep)
            }
            DirEdit::Remove(i) if i.index(files.len()) == k => continue,
            DirEdit::Replace(i, b) if i.index(files.len()) == k => b.clone(),
            _ => bytes.clone(),
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        paths.push(path);
    }
    paths
}

#[test]
fn model_dirs_mutated() {
    let dirs = tiny_dirs();
    take_outcomes();
    TestRunner::new(config(96, true))
        .run(&(0..dirs.len(), dir_edit()), |(k, edit)| {
            let (name, files) = &dirs[k];
            let scratch = Scratch::new();
            let root = scratch.path().join(name);
            write_edited(&root, files, &edit);
            let named: Vec<PathBuf> = files.iter().map(|(f, _)| root.join(f)).collect();
            let named: Vec<&Path> = named.iter().map(PathBuf::as_path).collect();
            if let Some(embedder) = parse_checked(&named, Located::File, || Embedder::new(&root, cpu_options()))? {
                let proteins = [Protein { id: "p".into(), sequence: "MKTAYIAKQRLLAG".into() }];
                parse_checked(&named, Located::File, || embedder.embed(&proteins, &mut |_| {}))?;
            }
            Ok(())
        })
        .unwrap();
    report_outcomes("model directories");
}

#[test]
fn hugging_face_dirs_mutated() {
    let source = repo_file("tests/fixtures/proberta/hf_mlm");
    let files: Vec<(String, Vec<u8>)> = ["config.json", "model.safetensors"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(source.join(f)).unwrap()))
        .collect();
    let dict = repo_file("tests/fixtures/proberta/dict.txt");
    take_outcomes();
    // Nearly every edit breaks a Hugging Face directory, so the accepted outcome comes from the
    // directory as it is, which must import.
    let scratch = Scratch::new();
    let dir = scratch.path().join("hf");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let named = [dir.join("config.json"), dir.join("model.safetensors")];
    let named: Vec<&Path> = named.iter().map(PathBuf::as_path).collect();
    let out = scratch.path().join("out");
    let imported =
        parse_checked(&named, Located::File, || proberta::import::import_hugging_face(&dir, &out, Some(&dict)));
    assert!(imported.unwrap().is_some(), "the unedited directory imports");
    TestRunner::new(config(64, true))
        .run(&dir_edit(), |edit| {
            let scratch = Scratch::new();
            let dir = scratch.path().join("hf");
            write_edited(&dir, &files, &edit);
            let named = [dir.join("config.json"), dir.join("model.safetensors")];
            let named: Vec<&Path> = named.iter().map(PathBuf::as_path).collect();
            let out = scratch.path().join("out");
            parse_checked(&named, Located::File, || proberta::import::import_hugging_face(&dir, &out, Some(&dict)))?;
            Ok(())
        })
        .unwrap();
    report_outcomes("Hugging Face directories");
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and run directories

fn training_state() -> impl Strategy<Value = TrainingState> {
    let json = prop_oneof![
        Just(serde_json::Value::Null),
        (any::<i64>(), -1e300f64..1e300, ".*")
            .prop_map(|(i, x, s)| serde_json::json!({"i": i, "x": x, "s": s, "v": [1, 2.5, null]})),
    ];
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<[u64; 4]>(), json.clone(), json).prop_map(
        |(step, epoch, batch_in_epoch, optimizer_steps, rng, extra, config)| TrainingState {
            step,
            epoch,
            batch_in_epoch,
            optimizer_steps,
            rng: if rng == [0; 4] { [1, 0, 0, 0] } else { rng },
            extra,
            config,
            seconds: (step % 1_000) as f64 / 8.0,
        },
    )
}

proptest! {
    #![proptest_config(config(64, true))]

    /// latest(save(state, model, optimizer)) gives all three back exactly.
    #[test]
    fn checkpoint_round_trip(state in training_state(), model in tensors(), optimizer in tensors()) {
        let scratch = Scratch::new();
        let dir = CheckpointDir::new(scratch.path().join("checkpoints"));
        dir.save(&state, &model, &optimizer, 2, &[]).unwrap();
        let back = dir.latest(&Device::Cpu).unwrap().unwrap();
        prop_assert_eq!(&back.state, &state);
        prop_assert_eq!(back.state.rng().unwrap().state(), state.rng);
        same_tensors(&model, &back.model)?;
        same_tensors(&optimizer, &back.optimizer)?;
    }
}

/// A run directory with two complete checkpoints, as files in memory (relative paths).
fn run_files() -> &'static Vec<(String, Vec<u8>)> {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let config = serde_json::json!({"model": "tiny", "lr": 0.001});
        let provenance = Provenance {
            crate_version: "0".into(),
            git_commit: None,
            data: Default::default(),
            seed: 1,
            threads: 1,
            device: "Cpu".into(),
            command_line: vec![],
            started_unix_s: 0,
        };
        let run = RunDir::open(tmp.path(), &config, &provenance, false).unwrap();
        let w = |v: f32| -> HashMap<String, Tensor> {
            [("w".to_string(), Tensor::full(v, (2, 3), &Device::Cpu).unwrap())].into()
        };
        for step in [10u64, 20] {
            let state = TrainingState {
                step,
                epoch: 0,
                batch_in_epoch: step,
                optimizer_steps: step,
                rng: protein_lm::Rng::new(step).state(),
                extra: serde_json::json!({"lr_scale": 1.0}),
                config: config.clone(),
                seconds: step as f64,
            };
            run.checkpoints().save(&state, &w(step as f32), &w(-1.0), 3, &[]).unwrap();
            run.log(&serde_json::json!({"kind": "train", "step": step, "loss": 1.5})).unwrap();
        }
        files_under(tmp.path())
    })
}

#[test]
fn run_dirs_mutated() {
    let files = run_files();
    let run_config = serde_json::json!({"model": "tiny", "lr": 0.001});
    take_outcomes();
    TestRunner::new(config(192, true))
        .run(&dir_edit(), |edit| {
            let scratch = Scratch::new();
            let root = scratch.path().join("run");
            let written = write_edited(&root, files, &edit);
            let named: Vec<&Path> = written.iter().map(PathBuf::as_path).collect();
            let named: Vec<&Path> = named.into_iter().chain([root.as_path()]).collect();
            let provenance: Provenance =
                serde_json::from_slice(&files.iter().find(|(n, _)| n == "provenance.json").unwrap().1).unwrap();
            parse_checked(&named, Located::File, || RunDir::open(&root, &run_config, &provenance, true).map(|_| ()))?;
            let checkpoints = CheckpointDir::new(root.join("checkpoints"));
            if let Some(Some(c)) = parse_checked(&named, Located::File, || checkpoints.latest(&Device::Cpu))? {
                // What is resumed is a step directory of this run, whatever LATEST says.
                prop_assert_eq!(c.path.parent(), Some(checkpoints.root()), "resumed from {}", c.path.display());
                prop_assert!(c.state.rng().is_ok(), "an RNG state that cannot be used was loaded");
            }
            parse_checked(&named, Located::Line, || run_dir::read_log(root.join("log.jsonl"), "train"))?;
            Ok(())
        })
        .unwrap();
    report_outcomes("run directories");
}

/// The smallest trainable task: `w` (3) pulled towards a target, two batches an epoch.
struct Pull {
    vars: protein_lm::models::init::SeededVarMap,
}

impl Pull {
    fn new() -> Self {
        let vars = protein_lm::models::init::SeededVarMap::new(0);
        vars.var_builder(DType::F32, &Device::Cpu).get_with_hints(3, "w", candle_nn::Init::Const(0.0)).unwrap();
        Self { vars }
    }
}

impl Task for Pull {
    fn batches_per_epoch(&self) -> u64 {
        2
    }
    fn train_loss(&mut self, _epoch: u64, batch: u64, _rng: &mut protein_lm::Rng) -> protein_lm::Result<TaskLoss> {
        let w = self.vars.get_var("w").unwrap();
        let target = Tensor::new(&[1f32, -2.0, batch as f32], &Device::Cpu)?;
        let loss = w.as_tensor().sub(&target)?.sqr()?.mean_all()?;
        Ok(TaskLoss { loss, metrics: Metrics::new(), samples: 1, tokens: 3 })
    }
    fn validate(&mut self) -> protein_lm::Result<Metrics> {
        Ok(Metrics::new())
    }
}

fn pull_config(max_updates: u64) -> TrainConfig {
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
        keep_checkpoints: 2,
        log_every: 1,
        lr_scales: Vec::new(),
        precision: Default::default(),
        loss_scale: None,
    }
}

/// The files of a real training run stopped after 3 of 5 updates.
fn trained_run() -> &'static Vec<(String, Vec<u8>)> {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let config = serde_json::to_value(pull_config(5)).unwrap();
        let run = RunDir::open(tmp.path(), &config, &provenance(), false).unwrap();
        let mut task = Pull::new();
        let mut trainer = Trainer::new(pull_config(3), task.vars.clone(), Device::Cpu).unwrap();
        trainer.progress = false;
        trainer.run(&mut task, &run, false).unwrap();
        // The checkpoints were written under the 3-update config: make them the 5-update run's.
        for step in CheckpointDir::new(tmp.path().join("checkpoints")).complete_steps().unwrap() {
            let path = tmp.path().join(format!("checkpoints/step-{step:010}/state.json"));
            let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            state["config"] = config.clone();
            std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
        }
        files_under(tmp.path())
    })
}

/// Resuming the training loop from a mutated run directory.
#[test]
fn training_resume_mutated() {
    let files = trained_run();
    let config = pull_config(5);
    take_outcomes();
    TestRunner::new(config_for(128, true))
        .run(&dir_edit(), |edit| {
            let scratch = Scratch::new();
            let root = scratch.path().join("run");
            let written = write_edited(&root, files, &edit);
            let dirs: Vec<PathBuf> = written.iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
            let named: Vec<&Path> = written.iter().chain(&dirs).map(PathBuf::as_path).collect();
            let mut task = Pull::new();
            let mut trainer = Trainer::new(config.clone(), task.vars.clone(), Device::Cpu).unwrap();
            trainer.progress = false;
            let value = serde_json::to_value(&config).unwrap();
            if let Some(run) =
                parse_checked(&named, Located::File, || RunDir::open(&root, &value, &provenance(), true))?
            {
                if let Some(summary) = parse_checked(&named, Located::File, || trainer.run(&mut task, &run, true))? {
                    prop_assert!(summary.resumed_from.is_none_or(|s| s <= 3));
                }
            }
            Ok(())
        })
        .unwrap();
    report_outcomes("training resume");
}

// ---------------------------------------------------------------------------------------------
// JSON configs

const CONFIGS: [&str; 12] = [
    "proberta-finetune-demo.json",
    "proberta-finetune-paper.json",
    "proberta-finetune-tiny.json",
    "proberta-pretrain-demo.json",
    "proberta-pretrain-paper.json",
    "proberta-pretrain-tiny.json",
    "proteinbert-finetune-demo.json",
    "proteinbert-finetune-paper.json",
    "proteinbert-finetune-tiny.json",
    "proteinbert-pretrain-demo.json",
    "proteinbert-pretrain-paper.json",
    "proteinbert-pretrain-tiny.json",
];

/// Loads `path` as the config kind its name says.
fn load_config(name: &str, path: &Path) -> protein_lm::Result<String> {
    Ok(if name.contains("pretrain") {
        serde_json::to_string(&PretrainConfig::load(path)?).unwrap()
    } else if name.starts_with("proberta") {
        serde_json::to_string(&ProbertaFinetuneConfig::load(path)?).unwrap()
    } else {
        serde_json::to_string(&FinetuneConfig::load(path)?).unwrap()
    })
}

#[test]
fn configs_round_trip() {
    // Every shipped config: load, write back, load again: the same config.
    let scratch = Scratch::new();
    for name in CONFIGS {
        let first = load_config(name, &repo_file(&format!("configs/{name}"))).unwrap();
        let again = load_config(name, &scratch.write(name, first.as_bytes())).unwrap();
        assert_eq!(first, again, "{name}");
    }
}

#[test]
fn configs_mutated() {
    let seeds: Vec<Vec<u8>> = CONFIGS.iter().map(|n| read_sample(&format!("configs/{n}"))).collect();
    take_outcomes();
    TestRunner::new(config(768, false))
        .run(&(0..CONFIGS.len(), prop_oneof![mutations(b','), mutations(b':')]), |(k, edits)| {
            let scratch = Scratch::new();
            let path = scratch.write(CONFIGS[k], &apply(&seeds[k], &edits));
            parse_checked(&[&path], Located::Line, || load_config(CONFIGS[k], &path))?;
            Ok(())
        })
        .unwrap();
    report_outcomes("JSON configs");
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs found while fuzzing, kept exactly.

fn provenance() -> Provenance {
    Provenance {
        crate_version: "0".into(),
        git_commit: None,
        data: Default::default(),
        seed: 1,
        threads: 1,
        device: "Cpu".into(),
        command_line: vec![],
        started_unix_s: 0,
    }
}

/// `layer_norm_eps: 0.019381712709586486` came back from config.json as 0.01938171270958649:
/// serde_json's default float parser is not exact, so a config written with the shortest
/// round-trip digits did not read back. A resume compares the stored config with the current one,
/// and refused a run whose config had such a number. (serde_json's `float_roundtrip` now.)
#[test]
fn regression_configs_read_back_bit_exact() {
    let x = 0.019381712709586486f64;
    let scratch = Scratch::new();
    let config = serde_json::json!({"lr": x, "model": {"layer_norm_eps": x}});
    RunDir::open(scratch.path(), &config, &provenance(), false).unwrap();
    RunDir::open(scratch.path(), &config, &provenance(), true).expect("resume with the same config");
    let text = serde_json::to_string(&x).unwrap();
    assert_eq!(serde_json::from_str::<f64>(&text).unwrap().to_bits(), x.to_bits(), "{text}");
}

/// A model directory whose safetensors header lost a tensor (here `"NaN"` spliced into a tensor
/// name) failed with candle's `cannot find tensor blocks.0.global_dense1.bias`, naming no file.
#[test]
fn regression_missing_tensor_names_the_weights_file() {
    let (_, files) = &tiny_dirs()[0];
    let scratch = Scratch::new();
    let root = scratch.path().join("proteinbert");
    let mut edited = files.clone();
    let (_, weights) = edited.iter_mut().find(|(n, _)| n == "model.safetensors").unwrap();
    let n = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header =
        String::from_utf8(weights[8..8 + n].to_vec()).unwrap().replace("global_dense1.bias", "global_dNaNense1.bias");
    *weights = [(header.len() as u64).to_le_bytes().to_vec(), header.into_bytes(), weights[8 + n..].to_vec()].concat();
    for (name, bytes) in &edited {
        scratch.write(&format!("proteinbert/{name}"), bytes);
    }
    let err = Embedder::new(&root, cpu_options()).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("global_dense1.bias"), "{err}");
}

/// A config.json with sizes the network cannot have (`n_heads: 0`) failed when the model was
/// built, with an error naming no file. Now refused when the directory is opened.
#[test]
fn regression_invalid_model_config_names_config_json() {
    let (_, files) = &tiny_dirs()[0];
    let scratch = Scratch::new();
    for (name, bytes) in files {
        let bytes = if name == "config.json" {
            String::from_utf8(bytes.clone()).unwrap().replace("\"n_heads\": 2", "\"n_heads\": 0").into_bytes()
        } else {
            bytes.clone()
        };
        scratch.write(&format!("m/{name}"), &bytes);
    }
    let err = ModelDir::open(scratch.path().join("m")).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("n_heads"), "{err}");
}

/// Resumes the 5-update run from `files` with `edit` applied to the newest checkpoint's `file`.
fn resume_with(edit: impl Fn(&Path)) -> protein_lm::Result<()> {
    let scratch = Scratch::new();
    for (name, bytes) in trained_run() {
        scratch.write(name, bytes);
    }
    let latest = std::fs::read_to_string(scratch.path().join("checkpoints/LATEST")).unwrap();
    edit(&scratch.path().join("checkpoints").join(latest.trim()));
    let config = pull_config(5);
    let run = RunDir::open(scratch.path(), &serde_json::to_value(&config).unwrap(), &provenance(), true)?;
    let mut task = Pull::new();
    let mut trainer = Trainer::new(config, task.vars.clone(), Device::Cpu)?;
    trainer.progress = false;
    trainer.run(&mut task, &run, true).map(|_| ())
}

/// A checkpoint without the model's tensor, or with a moment of another shape: the first said
/// "checkpoint has no tensor for variable w" naming no file, the second failed at the first
/// update with candle's shape mismatch. Both now name the checkpoint file.
#[test]
fn regression_resume_errors_name_the_checkpoint_file() {
    let save = |path: &Path, name: &str, dims: &[usize]| {
        let t: HashMap<String, Tensor> =
            [(name.to_string(), Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap())].into();
        candle_core::safetensors::save(&t, path).unwrap();
    };
    let err = resume_with(|dir| save(&dir.join("model.safetensors"), "x", &[3])).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("variable w"), "{err}");
    let err = resume_with(|dir| save(&dir.join("optimizer.safetensors"), "m.w", &[2])).unwrap_err().to_string();
    assert!(err.contains("optimizer.safetensors") && err.contains("m.w"), "{err}");
    let err = resume_with(|dir| save(&dir.join("optimizer.safetensors"), "q.w", &[3])).unwrap_err().to_string();
    assert!(err.contains("optimizer.safetensors") && err.contains("q.w"), "{err}");
    // All-zero RNG state: refused naming state.json.
    let err = resume_with(|dir| {
        let path = dir.join("state.json");
        let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        state["rng"] = serde_json::json!([0, 0, 0, 0]);
        std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("state.json") && err.contains("rng"), "{err}");
    resume_with(|_| {}).expect("the untouched run resumes");
}

/// LATEST saying `../run/checkpoints/step-0000000010` resumed from that path, which need not be
/// this run's (another run's directory works the same). Now only `step-N` of this run is followed.
#[test]
fn regression_latest_cannot_point_outside_the_run() {
    let scratch = Scratch::new();
    for (name, bytes) in run_files() {
        scratch.write(&format!("run/{name}"), bytes);
    }
    let other = scratch.path().join("other/checkpoints/step-0000000099");
    std::fs::create_dir_all(&other).unwrap();
    for file in ["state.json", "model.safetensors", "optimizer.safetensors"] {
        std::fs::copy(scratch.path().join("run/checkpoints/step-0000000010").join(file), other.join(file)).unwrap();
    }
    let checkpoints = CheckpointDir::new(scratch.path().join("run/checkpoints"));
    std::fs::write(checkpoints.root().join("LATEST"), "../../other/checkpoints/step-0000000099").unwrap();
    let c = checkpoints.latest(&Device::Cpu).unwrap().unwrap();
    assert_eq!(c.path, checkpoints.root().join("step-0000000020"));
}
