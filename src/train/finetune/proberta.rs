//! PRoBERTa fine-tuning as the reference runs it: `fairseq-train --task sentence_prediction`
//! from the pretrained checkpoint with a new head (spec `proberta.md` §6).
//!
//! * Input: `<s> pieces </s>` for one protein; `<s> A </s> </s> B </s>` for a pair, each protein
//!   cut to 254 pieces first (the paper; the reference code only cut the joined input to 512, the
//!   `pair_truncation` option). Batches are right-padded to their longest item.
//! * Head: fairseq's classification head (dense → tanh → out_proj, pooler dropout 0) on the `<s>`
//!   vector; the trunk keeps its dropout 0.1. Loss: cross-entropy (mean over the batch); a binary
//!   benchmark uses one sigmoid output and a numeric one MSE (fairseq's `--regression-target`).
//! * Loop: apex LAMB (weight decay 0.01, internal clip 1.0) plus fairseq's `--clip-norm 25`,
//!   warm-up 312 then linear decay to 0 at 12,500 updates, peak 2.5e-3, validation every 100 updates
//!   with early stopping on accuracy (patience 3), and the best validation weights evaluated on test
//!   (the reference's `checkpoint_best.pt`).
//! * Tasks: multi-class family classification, PPI on HIPPIE positives with the paper's sampled
//!   negatives (or any pair split written by `protein-lm data split`), and the per-protein
//!   ProteinBERT benchmarks. Per-residue benchmarks are refused: a BPE piece spans several residues.
//!
//! ```no_run
//! use std::path::Path;
//! use candle_core::Device;
//! use protein_lm::data::resolver::{files, resolve};
//! use protein_lm::data::tables::read_single_pfam;
//! use protein_lm::train::finetune::proberta::{finetune_proberta, ProbertaFinetuneConfig, ProbertaTaskData};
//! use protein_lm::train::finetune::family_data;
//! use protein_lm::train::run_dir::RunOptions;
//! let mut config = ProbertaFinetuneConfig::load("configs/proberta-finetune-demo.json")?;
//! config.task = "family".into();
//! let table = resolve(files::HUMAN_SINGLE_PFAM)?;
//! let (records, _) = read_single_pfam(&table)?;
//! let data = family_data(&records, config.family.min_members, config.family.test_fraction, &config.data, config.seed)?;
//! let report = finetune_proberta(
//!     &config,
//!     &ProbertaTaskData::Proteins(data),
//!     Some(Path::new("results/demo/runs/proberta-pretrain/model")),
//!     None,
//!     &[table],
//!     RunOptions { out: Path::new("results/demo/runs/proberta-family"), resume: true, device: &Device::Cpu, progress: true },
//! )?;
//! println!("test accuracy {:.3} (best validation at update {:?})", report.test_scores["accuracy"], report.best);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::head_task::{head_logits, predict, write_predictions, Batching, Encoded, HeadTask, Padding};
use super::ppi::{overlap_scores, pair_data_report};
pub use super::ppi::{ppi_data, ppi_split_dir, read_pair_predictions, OverlapScore, PairData, PpiOptions};
use super::{load_trunk_weights, restore_best, write_json, DataLimits, SupervisedData};
use crate::data::ppi::{NegativeScheme, Pair};
use crate::models::directory::{DirectoryConfig, ModelConfig, ModelDir, StoredHead, DICT_FILE};
use crate::models::heads::{ClassificationHead, HeadConfig, Level, Pooling, Target};
use crate::models::init::SeededVarMap;
use crate::models::proberta::{self, Encoder};
use crate::tokenize::bpe::{PairTruncation, ProbertaTokenizer, SingleTruncation};
use crate::tokenize::vocab::PAD;
use crate::tokenize::UnknownCounts;
use crate::train::objectives::supervised::{Predictions, TargetValue};
use crate::train::run_dir::{Provenance, RunDir, RunOptions};
use crate::train::trainer::{Metrics, TrainConfig, Trainer};
use crate::{Error, Result, Rng};

const HEAD_PREFIX: &str = "head";

/// Family classification data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyOptions {
    /// Families with fewer proteins are left out (the paper's multi-class set had no threshold but
    /// 313,214 proteins; on the 9,694 human proteins most families have one member).
    pub min_members: usize,
    /// Share of each family held out for test (the paper: 0.1); `valid_fraction` for validation.
    pub test_fraction: f64,
}

/// A PRoBERTa fine-tuning run.
///
/// ```
/// use protein_lm::train::finetune::proberta::ProbertaFinetuneConfig;
/// // The shipped configs, one per scale; the task is set from `--task` (or by the notebook).
/// let mut config = ProbertaFinetuneConfig::load("configs/proberta-finetune-tiny.json")?;
/// config.task = "ppi".into();
/// config.check()?;
/// config.batch_size = 0;
/// assert!(config.check().unwrap_err().to_string().contains("batch_size"));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbertaFinetuneConfig {
    /// `family`, `ppi` or a per-protein ProteinBERT benchmark (set from `--task`).
    pub task: String,
    /// How many examples of each split; `valid_fraction` is the validation share of the whole set
    /// for families, of train for benchmarks without a valid file.
    #[serde(flatten)]
    pub data: DataLimits,
    pub family: FamilyOptions,
    pub ppi: PpiOptions,
    /// The encoder to start from without `--from` ("no pretraining").
    #[serde(default)]
    pub scratch_model: Option<proberta::Config>,
    /// The head's input: `cls` (the `<s>` vector, default) or the fork's `sum_all`, `sum`, `mean`.
    #[serde(default = "cls")]
    pub pooling: Pooling,
    /// Longest input in tokens, specials included (the reference: 512).
    pub max_len: usize,
    #[serde(default)]
    pub pair_truncation: PairTruncation,
    pub batch_size: usize,
    /// Batch size for validation and test.
    pub eval_batch_size: usize,
    pub seed: u64,
    pub train: TrainConfig,
}

fn cls() -> Pooling {
    Pooling::Cls
}

impl ProbertaFinetuneConfig {
    /// Reads a JSON config, naming the file and line in errors.
    /// Unknown keys and out-of-range values are errors naming the key.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        crate::config::load_config(path.as_ref(), "PRoBERTa fine-tuning config", Self::add_checks)
    }

    /// Range checks of every size, count and fraction, naming the offending key.
    pub fn check(&self) -> Result<()> {
        let mut c = crate::config::Checks::new("PRoBERTa fine-tuning config");
        self.add_checks(&mut c);
        c.finish()
    }

    fn add_checks(&self, c: &mut crate::config::Checks) {
        self.data.check(c);
        c.at_least("family.min_members", self.family.min_members, 1);
        c.within("family.test_fraction", self.family.test_fraction, 0.0, 1.0, true, true);
        self.ppi.add_checks(c);
        c.at_least("max_len", self.max_len, 3);
        c.at_least("batch_size", self.batch_size, 1);
        c.at_least("eval_batch_size", self.eval_batch_size, 1);
        crate::config::check_train(c, "train", &self.train);
    }
}

/// What a PRoBERTa fine-tuning trains on.
///
/// ```
/// use protein_lm::data::tables::PfamRecord;
/// use protein_lm::train::finetune::proberta::ProbertaTaskData;
/// use protein_lm::train::finetune::{family_data, DataLimits};
/// let records: Vec<PfamRecord> = (0..20)
///     .map(|i| PfamRecord { accession: format!("P{i}"), pfam_id: format!("PF0000{}", i % 2), sequence: "MKV".repeat(i + 1) })
///     .collect();
/// // Families are one protein per input; PPI pairs (`PairData`) are packed two to an input.
/// let data = ProbertaTaskData::Proteins(family_data(&records, 5, 0.1, &DataLimits::default(), 0)?);
/// assert!(matches!(&data, ProbertaTaskData::Proteins(d) if d.labels.len() == 2));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub enum ProbertaTaskData {
    /// One protein per example (families, benchmarks).
    Proteins(SupervisedData),
    /// Two proteins per example, packed into one input.
    Pairs(PairData),
}

impl ProbertaTaskData {
    fn sizes(&self) -> (usize, usize, usize) {
        match self {
            Self::Proteins(d) => (d.train.len(), d.valid.len(), d.test.len()),
            Self::Pairs(d) => (d.train.len(), d.valid.len(), d.test.len()),
        }
    }
}

/// The three splits encoded, with what encoding cut or mapped.
#[derive(Debug)]
struct EncodedData {
    train: Vec<Encoded>,
    valid: Vec<Encoded>,
    test: Vec<Encoded>,
    level: Level,
    target: Target,
    labels: Vec<String>,
    report: serde_json::Value,
}

fn encode_data(
    data: &ProbertaTaskData,
    tokenizer: &ProbertaTokenizer,
    config: &ProbertaFinetuneConfig,
) -> Result<EncodedData> {
    let mut unknown = UnknownCounts::default();
    let mut cut = 0usize;
    let max_len = config.max_len;
    match data {
        ProbertaTaskData::Proteins(d) => {
            if d.level == Level::Residue {
                return Err(Error::invalid(
                    "per-residue benchmarks are not supported for PRoBERTa: its BPE pieces span several residues",
                ));
            }
            let mut encode = |examples: &[super::Example]| -> Result<Vec<Encoded>> {
                examples
                    .iter()
                    .map(|e| {
                        let pieces = tokenizer.encode_pieces(&e.sequence, &mut unknown)?;
                        cut += (pieces.len() + 2 > max_len) as usize;
                        let ids = crate::tokenize::bpe::with_specials(pieces, SingleTruncation::KeepEnd { max_len });
                        Ok(Encoded { ids, partner: None, target: e.target.clone(), name: e.id.clone() })
                    })
                    .collect()
            };
            let (train, valid, test) = (encode(&d.train)?, encode(&d.valid)?, encode(&d.test)?);
            let mut report = serde_json::to_value(&d.report).expect("report serialises");
            report["proteins cut to max_len"] = cut.into();
            report["letters mapped to <unk>"] = serde_json::to_value(&unknown).expect("counts serialise");
            Ok(EncodedData {
                train,
                valid,
                test,
                level: Level::Protein,
                target: d.target,
                labels: d.labels.clone(),
                report,
            })
        }
        ProbertaTaskData::Pairs(d) => {
            let mut encode = |pairs: &[Pair]| -> Result<Vec<Encoded>> {
                pairs
                    .iter()
                    .map(|p| {
                        let sequence = |id: &str| {
                            d.sequences.get(id).ok_or_else(|| Error::invalid(format!("no sequence for protein `{id}`")))
                        };
                        let mut ids = tokenizer.encode_pair(
                            sequence(&p.a)?,
                            sequence(&p.b)?,
                            config.pair_truncation,
                            &mut unknown,
                        )?;
                        if ids.len() > max_len {
                            ids.truncate(max_len);
                            cut += 1;
                        }
                        Ok(Encoded {
                            ids,
                            partner: None,
                            target: TargetValue::Class(p.label as u32),
                            name: format!("{}\t{}", p.a, p.b),
                        })
                    })
                    .collect()
            };
            let (train, valid, test) = (encode(&d.train)?, encode(&d.valid)?, encode(&d.test)?);
            let mut report = pair_data_report(d);
            report["pairs cut to max_len after pair truncation"] = cut.into();
            report["letters mapped to <unk>"] = serde_json::to_value(&unknown).expect("counts serialise");
            // The reference's label dictionary: negative → 0, positive → 1, softmax over both.
            Ok(EncodedData {
                train,
                valid,
                test,
                level: Level::Pair,
                target: Target::Categorical { classes: 2 },
                labels: vec!["negative".into(), "positive".into()],
                report,
            })
        }
    }
}

/// PRoBERTa's batches: right-padded to their longest item (a pair is one packed input).
pub const BATCHING: Batching = Batching { padding: Padding::Longest, pad_id: PAD };

/// The encoder and head together.
pub struct ProbertaClassifier {
    pub encoder: Encoder,
    pub head: ClassificationHead,
}

impl ProbertaClassifier {
    /// Logits of a batch; `rng` = `Some` trains (dropout on).
    pub fn forward(&self, items: &[&Encoded], device: &Device, rng: Option<&mut Rng>) -> Result<Tensor> {
        let trains = rng.is_some();
        Ok(head_logits(&self.encoder, &self.head, items, BATCHING, trains, device, rng)?.0)
    }

    /// Predictions over `examples` in evaluation mode, batched by length (sorted, so batches pad
    /// little); also the example index of every prediction, in the order they were added.
    pub fn predict(
        &self,
        examples: &[Encoded],
        batch_size: usize,
        device: &Device,
    ) -> Result<(Predictions, Vec<usize>)> {
        let items: Vec<&Encoded> = examples.iter().collect();
        predict(&self.encoder, &self.head, &items, BATCHING, batch_size, device)
    }
}

/// A number the paper reports for this task, to print beside ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperScore {
    pub metric: String,
    pub value: f64,
    pub setting: String,
}

/// The PRoBERTa paper's scores for a task (Tables 2–3, Figs 5–6), or ProteinBERT's for a benchmark.
pub fn paper_scores(config: &ProbertaFinetuneConfig) -> Vec<PaperScore> {
    let score =
        |metric: &str, value: f64, setting: &str| PaperScore { metric: metric.into(), value, setting: setting.into() };
    match config.task.as_str() {
        "family" => vec![score(
            "accuracy",
            0.92,
            "PRoBERTa paper, multi-class, 313,214 Swiss-Prot proteins with one family, 0.8/0.1/0.1",
        )],
        "ppi" => {
            let (name, rows) = match config.ppi.negatives {
                Some(NegativeScheme::Aggressive) => {
                    ("aggressive", [(0.79, 0.82, 0.73, Some(0.87)), (0.84, 0.83, 0.84, None)])
                }
                _ => ("conservative", [(0.96, 0.93, 0.94, Some(0.99)), (0.99, 0.97, 0.98, None)]),
            };
            let mut out = Vec::new();
            for ((acc, prec, rec, auc), share) in rows.into_iter().zip(["20 %", "100 %"]) {
                let setting = format!("PRoBERTa paper, HIPPIE {name}, {share} of the training data");
                out.push(score("accuracy", acc, &setting));
                out.push(score("precision", prec, &setting));
                out.push(score("recall", rec, &setting));
                if let Some(auc) = auc {
                    out.push(score("roc_auc", auc, &setting));
                }
            }
            out
        }
        name => match crate::data::tables::benchmark(name) {
            Ok(spec) => {
                let metric = match spec.kind {
                    crate::data::tables::LabelKind::Binary => "roc_auc",
                    crate::data::tables::LabelKind::Categorical => "accuracy",
                    crate::data::tables::LabelKind::Numeric => "spearman",
                };
                vec![
                    score(metric, spec.paper_scores.0, "ProteinBERT paper, no pretraining (no PRoBERTa number)"),
                    score(metric, spec.paper_scores.1, "ProteinBERT paper, pretrained (no PRoBERTa number)"),
                ]
            }
            Err(_) => Vec::new(),
        },
    }
}

/// What a PRoBERTa fine-tuning reports (`OUT/results.json`).
///
/// ```no_run
/// use std::path::Path;
/// use protein_lm::train::finetune::proberta::ProbertaFinetuneReport;
/// let report = ProbertaFinetuneReport::read(Path::new("results/demo/runs/proberta-ppi-conservative-20"))?;
/// // A pair task: the scores of every protein-overlap class of the test pairs.
/// for class in &report.test_by_overlap {
///     println!("{:>32}: n {} accuracy {:.3}", class.class, class.scores.n, class.scores.accuracy);
/// }
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbertaFinetuneReport {
    pub task: String,
    pub start: String,
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    pub classes: Vec<String>,
    pub data_report: serde_json::Value,
    pub updates: u64,
    pub epochs: u64,
    pub stopped_early: bool,
    /// Best validation value of the early-stopping metric and its update.
    pub best: Option<(f64, u64)>,
    /// Which weights were tested: `best/` (the reference's `checkpoint_best.pt`) or `model/`.
    pub tested: String,
    pub seconds: f64,
    pub test_scores: Metrics,
    /// Pair tasks: the test scores of all test pairs and of each protein-overlap class.
    #[serde(default)]
    pub test_by_overlap: Vec<OverlapScore>,
    pub paper: Vec<PaperScore>,
}

/// Metric names validation reports for a target (those of [`Predictions::summary`]).
fn reported_metrics(target: Target) -> Vec<String> {
    Predictions::default().summary(target).into_keys().collect()
}

impl ProbertaFinetuneReport {
    /// Reads a finished run's `results.json` (`dir` is the run directory). JSON has no NaN, so an
    /// undefined test metric (precision when nothing was predicted positive) is written as `null`;
    /// it reads back as NaN.
    pub fn read(dir: &Path) -> Result<Self> {
        use crate::error::Location;
        let path = dir.join("results.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let bad = |e: serde_json::Error| Error::data(Location::file(&path), e.to_string());
        let mut value: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
        let mut scores = Metrics::new();
        if let Some(map) = value.get_mut("test_scores").and_then(|v| v.as_object_mut()) {
            for (k, v) in std::mem::take(map) {
                scores.insert(k, v.as_f64().unwrap_or(f64::NAN));
            }
        }
        let mut report: Self = serde_json::from_value(value).map_err(bad)?;
        report.test_scores = scores;
        Ok(report)
    }
}

/// The tokenizer of `from` (its `dict.txt`, and `tokenizer.json` when present), or `tokenizer` (a
/// directory or a fairseq `dict.txt`) when starting from scratch.
fn load_tokenizer(from: Option<&ModelDir>, tokenizer: Option<&Path>) -> Result<(ProbertaTokenizer, PathBuf)> {
    match (from, tokenizer) {
        (Some(dir), None) => Ok((ProbertaTokenizer::load(dir.path())?, dir.path().join(DICT_FILE))),
        (Some(dir), Some(_)) => Err(Error::invalid(format!(
            "{} carries its own tokenizer (dict.txt); leave out --tokenizer",
            dir.path().display()
        ))),
        (None, Some(path)) if path.is_dir() => Ok((ProbertaTokenizer::load(path)?, path.join(DICT_FILE))),
        (None, Some(path)) => Ok((ProbertaTokenizer::from_fairseq_dict(path)?, path.to_path_buf())),
        (None, None) => Err(Error::invalid("fine-tuning from scratch needs a tokenizer (a directory or dict.txt)")),
    }
}

/// Fine-tunes PRoBERTa on `data` (resuming with `options.resume`), tests the best validation
/// weights and writes `OUT/results.json` and `OUT/test_predictions.tsv`. `from`: a pretrained model
/// directory, or `None` to start from `scratch_model` with `tokenizer`.
///
/// ```no_run
/// use std::path::{Path, PathBuf};
/// use candle_core::Device;
/// use protein_lm::data::ppi::{MissingSequence, PpiDataset};
/// use protein_lm::data::resolver::{files, resolve};
/// use protein_lm::data::read_proteins;
/// use protein_lm::train::finetune::proberta::{finetune_proberta, ppi_data, ProbertaFinetuneConfig, ProbertaTaskData};
/// use protein_lm::train::run_dir::RunOptions;
/// let mut config = ProbertaFinetuneConfig::load("configs/proberta-finetune-demo.json")?;
/// config.task = "ppi".into();
/// // HIPPIE positives, conservative negatives from the human proteome.
/// let (pairs, dict) = (resolve(files::HIPPIE_HQ_PAIRS)?, resolve(files::HIPPIE_HQ_DICT)?);
/// let (hippie, _) = PpiDataset::load_with_sequences(&pairs, &[&dict], MissingSequence::Error)?;
/// let (proteome, _) = read_proteins(resolve(files::HUMAN_PFAM)?)?;
/// let data = ppi_data(hippie, &config.ppi, &proteome, &config.data, config.seed)?;
/// let files: Vec<PathBuf> = vec![pairs, dict];
/// let report = finetune_proberta(
///     &config,
///     &ProbertaTaskData::Pairs(data),
///     Some(Path::new("results/demo/runs/proberta-pretrain/model")),
///     None,
///     &files,
///     RunOptions { out: Path::new("results/demo/runs/proberta-ppi-conservative-20"), resume: true, device: &Device::Cpu, progress: true },
/// )?;
/// println!("{:?}", report.test_scores);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn finetune_proberta(
    config: &ProbertaFinetuneConfig,
    data: &ProbertaTaskData,
    from: Option<&Path>,
    tokenizer: Option<&Path>,
    data_files: &[PathBuf],
    options: RunOptions,
) -> Result<ProbertaFinetuneReport> {
    let RunOptions { out, resume, device, progress } = options;
    let from = from.map(ModelDir::open).transpose()?;
    let (tokenizer, tokenizer_dict) = load_tokenizer(from.as_ref(), tokenizer)?;

    // ---- the encoder's weights ----
    let vars = SeededVarMap::new(config.seed);
    let (model_config, start) = match &from {
        Some(dir) => {
            let ModelConfig::Proberta(c) = dir.config().model.clone() else {
                return Err(Error::invalid(format!("{} is not a PRoBERTa model directory", dir.path().display())));
            };
            Encoder::load(vars.var_builder(DType::F32, device), &c)?;
            load_trunk_weights(&vars, dir, HEAD_PREFIX)?;
            (c, dir.path().display().to_string())
        }
        None => {
            let mut c = config
                .scratch_model
                .clone()
                .ok_or_else(|| Error::invalid("no --from model and no scratch_model in the fine-tuning config"))?;
            c.vocab_size = tokenizer.dictionary.len();
            Encoder::load(vars.var_builder(DType::F32, device), &c)?;
            (c, format!("random initialisation (seed {}): no pretraining", config.seed))
        }
    };
    if model_config.vocab_size != tokenizer.dictionary.len() {
        return Err(Error::invalid(format!(
            "the model has {} token ids but its dict.txt {}",
            model_config.vocab_size,
            tokenizer.dictionary.len()
        )));
    }
    if config.max_len > model_config.max_tokens() {
        return Err(Error::invalid(format!(
            "max_len {} is longer than the model's {} positions",
            config.max_len,
            model_config.max_tokens()
        )));
    }

    // ---- data ----
    let encoded = encode_data(data, &tokenizer, config)?;
    if encoded.train.is_empty() {
        return Err(Error::invalid(format!("task {}: no training example", config.task)));
    }
    if let Some(e) = &config.train.early_stopping {
        let reported = reported_metrics(encoded.target);
        if !reported.contains(&e.monitor) {
            return Err(Error::invalid(format!(
                "early stopping monitors `{}`, but task {} reports {reported:?}",
                e.monitor, config.task
            )));
        }
    }
    // A packed pair is one sequence to the head: it pools it like a protein.
    let head_config = HeadConfig { pooling: config.pooling, ..HeadConfig::proberta(Level::Protein, encoded.target) };
    let h = model_config.hidden_size;
    let head = ClassificationHead::load(vars.var_builder(DType::F32, device).pp(HEAD_PREFIX), head_config, h, h)?;
    let dir_config = DirectoryConfig {
        model: ModelConfig::Proberta(model_config.clone()),
        source: Some(format!("fine-tuned on {} from {start}", config.task)),
        has_lm_head: false,
        heads: vec![StoredHead { prefix: HEAD_PREFIX.into(), config: head_config, labels: encoded.labels.clone() }],
    };

    // ---- train ----
    let mut trainer = Trainer::new(config.train.clone(), vars.clone(), device.clone())?;
    trainer.model_dir_config = Some(dir_config);
    trainer.model_dir_files = tokenizer.files()?;
    trainer.progress = progress;
    let mut encoded = encoded;
    let mut task = HeadTask::new(
        Encoder::load(vars.var_builder(DType::F32, device), &model_config)?,
        head,
        (std::mem::take(&mut encoded.train), std::mem::take(&mut encoded.valid)),
        BATCHING,
        config.batch_size,
        config.seed,
        device,
    );
    task.eval_batch_size = config.eval_batch_size;
    let run_json = serde_json::json!({"finetune": config, "start": start});
    let mut files = data_files.to_vec();
    files.push(tokenizer_dict.clone());
    let provenance = Provenance::collect(config.seed, &files, device)?;
    let run = RunDir::open(out, &run_json, &provenance, resume)?;
    run.write_json("data.json", &encoded.report)?;
    let summary = trainer.run(&mut task, &run, resume)?;

    // ---- test the best validation weights ----
    let tested = match restore_best(&run, &summary, &vars, device)? {
        Some(update) => format!("best/ (update {update})"),
        None => "model/ (the last update)".to_string(),
    };
    let (predictions, order) = task.predict(&encoded.test.iter().collect::<Vec<_>>())?;
    let names: Vec<&str> = order.iter().map(|&i| encoded.test[i].name.as_str()).collect();
    write_predictions(
        &out.join("test_predictions.tsv"),
        &names,
        &predictions,
        (encoded.level, encoded.target),
        &encoded.labels,
    )?;
    let test_by_overlap = match data {
        ProbertaTaskData::Pairs(d) => {
            // `predict` visited the pairs by length: their scores back in test order.
            let mut scores = vec![0.0; order.len()];
            for (k, &i) in order.iter().enumerate() {
                scores[i] = predictions.scores[k];
            }
            overlap_scores(&d.train, &d.test, &scores)?
        }
        ProbertaTaskData::Proteins(_) => Vec::new(),
    };
    let (train, valid, test) = data.sizes();
    let report = ProbertaFinetuneReport {
        task: config.task.clone(),
        start,
        train,
        valid,
        test,
        classes: if encoded.labels.len() <= 20 {
            encoded.labels.clone()
        } else {
            vec![format!("{} families", encoded.labels.len())]
        },
        data_report: encoded.report.clone(),
        updates: summary.updates,
        epochs: summary.epochs_completed,
        stopped_early: summary.stopped_early,
        best: summary.best,
        tested,
        seconds: summary.seconds,
        test_scores: predictions.summary(encoded.target),
        test_by_overlap,
        paper: paper_scores(config),
    };
    write_json(&out.join("results.json"), &report)?;
    Ok(report)
}

/// One row of `test_predictions.tsv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestPrediction {
    /// Accession (or `protein_a\tprotein_b` for pairs).
    pub name: String,
    /// Label and prediction as written: class names (families), `0`/`1` (binary), values (numeric).
    pub label: String,
    pub predicted: String,
    /// P(positive) for two classes and binary targets, `None` otherwise.
    pub score: Option<f64>,
}

/// A finished fine-tuning run's `results.json` and `test_predictions.tsv` (what
/// [`finetune_proberta`] wrote into `dir`), for a notebook that reuses the run instead of training.
///
/// ```no_run
/// use std::path::Path;
/// use protein_lm::train::finetune::proberta::read_finetune_results;
/// let (report, predictions) = read_finetune_results(Path::new("results/demo/runs/proberta-family"))?;
/// let right = predictions.iter().filter(|p| p.label == p.predicted).count();
/// println!("{}: {right} of {} test proteins right ({:?})", report.task, predictions.len(), report.test_scores.get("accuracy"));
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn read_finetune_results(dir: &Path) -> Result<(ProbertaFinetuneReport, Vec<TestPrediction>)> {
    // `read` turns the `null` an undefined metric is written as back into NaN.
    let report = ProbertaFinetuneReport::read(dir)?;
    let path = dir.join("test_predictions.tsv");
    let (_, rows) = read_test_predictions(&path)?;
    let rows: Vec<TestPrediction> = rows.into_iter().map(|(_, row)| row).collect();
    if rows.len() != report.test {
        return Err(Error::invalid(format!(
            "{}: {} rows but results.json reports {} test examples",
            path.display(),
            rows.len(),
            report.test
        )));
    }
    Ok((report, rows))
}

/// A fine-tuned PRoBERTa classifier directory (a run's `best/` or `model/`): the encoder, its
/// stored head and its tokenizer.
pub fn load_classifier(
    model_dir: &Path,
    device: &Device,
) -> Result<(ProbertaClassifier, ProbertaTokenizer, StoredHead)> {
    let dir = ModelDir::open(model_dir)?;
    let ModelConfig::Proberta(c) = dir.config().model.clone() else {
        return Err(Error::invalid(format!("{} is not a PRoBERTa model directory", dir.path().display())));
    };
    let stored = dir.config().heads.iter().find(|h| h.prefix == HEAD_PREFIX).cloned().ok_or_else(|| {
        Error::invalid(format!(
            "{} has no classification head `{HEAD_PREFIX}` (a pretrained model, not a fine-tuned one?)",
            dir.path().display()
        ))
    })?;
    let vb = dir.var_builder(DType::F32, device)?;
    let encoder = Encoder::load(vb.clone(), &c)?;
    let head = ClassificationHead::load(vb.pp(HEAD_PREFIX), stored.config, c.hidden_size, c.hidden_size)?;
    let tokenizer = ProbertaTokenizer::load(dir.path())?;
    Ok((ProbertaClassifier { encoder, head }, tokenizer, stored))
}

/// Predictions of a fine-tuned PPI classifier (`model_dir`: a run's `best/` or `model/`) on any
/// labelled `pairs`, in the order of `pairs`, packed and cut as `config` says (`max_len`,
/// `pair_truncation`, `eval_batch_size`): e.g. the conservative model on the aggressive test set.
/// `summary(Target::Categorical { classes: 2 })` of the result gives accuracy, precision, recall,
/// ROC AUC; `scores` are P(positive).
///
/// ```no_run
/// use std::path::Path;
/// use candle_core::Device;
/// use protein_lm::data::ppi::NegativeScheme;
/// use protein_lm::models::heads::Target;
/// use protein_lm::notebook::Scale;
/// use protein_lm::results::Results;
/// use protein_lm::train::finetune::proberta::{evaluate_pairs, ppi_split_dir, ProbertaFinetuneConfig};
/// let conservative = Results::for_scale(Scale::Demo).proberta_ppi(NegativeScheme::Conservative, 0.2);
/// let config = ProbertaFinetuneConfig::load("configs/proberta-finetune-demo.json")?;
/// // The conservative model on the aggressive test pairs (a `protein-lm data split` directory).
/// let aggressive = ppi_split_dir(Path::new("results/demo/splits/ppi-aggressive"), &config.data, config.seed)?;
/// let p = evaluate_pairs(&conservative.tested_model()?, &aggressive.test, &aggressive.sequences, &config, &Device::Cpu)?;
/// println!("{:?}", p.summary(Target::Categorical { classes: 2 }));
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn evaluate_pairs(
    model_dir: &Path,
    pairs: &[Pair],
    sequences: &BTreeMap<String, String>,
    config: &ProbertaFinetuneConfig,
    device: &Device,
) -> Result<Predictions> {
    let (model, tokenizer, stored) = load_classifier(model_dir, device)?;
    let target = stored.config.target;
    if target != (Target::Categorical { classes: 2 }) {
        return Err(Error::invalid(format!(
            "{}: its head predicts {target:?}, not the two classes of a PPI classifier",
            model_dir.display()
        )));
    }
    let data = ProbertaTaskData::Pairs(PairData {
        train: pairs.to_vec(),
        valid: Vec::new(),
        test: Vec::new(),
        sequences: sequences.clone(),
        report: BTreeMap::new(),
    });
    let encoded = encode_data(&data, &tokenizer, config)?;
    let (p, order) = model.predict(&encoded.train, config.eval_batch_size, device)?;
    // `predict` sorts by length; put every prediction back at its pair's place.
    Ok(p.in_example_order(&order))
}

/// Every row of a `test_predictions.tsv` with its line number, and whether it holds pairs
/// (`protein_a, protein_b, …`, named `a<TAB>b`) or single proteins (`name, …`).
pub(crate) fn read_test_predictions(path: &Path) -> Result<(bool, Vec<(usize, TestPrediction)>)> {
    use crate::error::Location;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let is_pair = match header.as_slice() {
        ["name", "label", "predicted", "score"] => false,
        ["protein_a", "protein_b", "label", "predicted", "score"] => true,
        _ => {
            let expected = "`name, label, predicted, score` (or protein_a, protein_b, …)";
            return Err(Error::data(
                Location::line(path, 1),
                format!("expected the header {expected}, got {header:?}"),
            ));
        }
    };
    let width = if is_pair { 5 } else { 4 };
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let at = Location::line(path, i + 2);
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != width {
            return Err(Error::data(at, format!("{} tab-separated fields, expected {width}", f.len())));
        }
        let (name, rest) = if is_pair { (format!("{}\t{}", f[0], f[1]), &f[2..]) } else { (f[0].to_string(), &f[1..]) };
        let score = match rest[2] {
            "" => None,
            s => Some(s.parse::<f64>().map_err(|e| Error::data(at, format!("score `{s}`: {e}")))?),
        };
        rows.push((i + 2, TestPrediction { name, label: rest[0].to_string(), predicted: rest[1].to_string(), score }));
    }
    Ok((is_pair, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::vocab::{FairseqDictionary, BOS, EOS};

    /// Single letters as pieces, with and without the word-start mark.
    fn letter_tokenizer() -> ProbertaTokenizer {
        let letters = "ACDEFGHIKLMNPQRSTVWY".chars();
        let pieces = letters.flat_map(|c| [(c.to_string(), 10), (format!("▁{c}"), 1)]);
        ProbertaTokenizer::dict_only(FairseqDictionary::build(pieces))
    }

    fn config(pair_truncation: PairTruncation, max_len: usize) -> ProbertaFinetuneConfig {
        let mut c: ProbertaFinetuneConfig =
            serde_json::from_str(include_str!("../../../configs/proberta-finetune-tiny.json")).unwrap();
        c.pair_truncation = pair_truncation;
        c.max_len = max_len;
        c
    }

    fn pair_data(pairs: Vec<Pair>, sequences: &[(&str, &str)]) -> ProbertaTaskData {
        ProbertaTaskData::Pairs(PairData {
            train: pairs,
            valid: vec![],
            test: vec![],
            sequences: sequences.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            report: BTreeMap::new(),
        })
    }

    #[test]
    fn pairs_are_packed_as_the_paper_says_and_cut_where_asked() -> Result<()> {
        let t = letter_tokenizer();
        let id = |piece: &str| t.dictionary.id(piece).unwrap();
        let (first_a, a, c, first_d, e) = (id("▁A"), id("A"), id("C"), id("▁D"), id("E"));
        let pair = Pair { a: "p".into(), b: "q".into(), label: 1 };
        let data = pair_data(vec![pair], &[("p", "AAAC"), ("q", "DE")]);
        // The paper: each protein to 2 pieces, then <s> A </s> </s> B </s>.
        let enc = encode_data(&data, &t, &config(PairTruncation::PerProtein { per_protein: 2 }, 64))?;
        assert_eq!(enc.train[0].ids, vec![BOS, first_a, a, EOS, EOS, first_d, e, EOS]);
        assert_eq!(enc.train[0].target, TargetValue::Class(1));
        assert_eq!(enc.train[0].name, "p\tq");
        // The reference code: the joined input to its first 6 tokens; the second protein is crowded out.
        let enc = encode_data(&data, &t, &config(PairTruncation::WholeInput { max_len: 6 }, 64))?;
        assert_eq!(enc.train[0].ids, vec![BOS, first_a, a, a, c, EOS]);
        // Anything still over max_len is cut and counted.
        let enc = encode_data(&data, &t, &config(PairTruncation::None, 5))?;
        assert_eq!(enc.train[0].ids.len(), 5);
        assert_eq!(enc.report["pairs cut to max_len after pair truncation"], 1);
        Ok(())
    }

    #[test]
    fn per_residue_benchmarks_are_refused() {
        let data = ProbertaTaskData::Proteins(SupervisedData {
            level: Level::Residue,
            target: Target::Binary,
            labels: vec![],
            train: vec![],
            valid: vec![],
            test: vec![],
            report: BTreeMap::new(),
        });
        let err = encode_data(&data, &letter_tokenizer(), &config(PairTruncation::default(), 64)).unwrap_err();
        assert!(err.to_string().contains("per-residue"), "{err}");
    }

    #[test]
    fn batches_are_right_padded_to_their_longest_item() -> Result<()> {
        let e = |ids: Vec<u32>| Encoded { ids, partner: None, target: TargetValue::Class(0), name: String::new() };
        let (a, b) = (e(vec![0, 7, 2]), e(vec![0, 9, 9, 9, 2]));
        let (ids, tokens) = BATCHING.ids(&[&a, &b], &Device::Cpu)?;
        assert_eq!(ids.to_vec2::<u32>()?, vec![vec![0, 7, 2, PAD, PAD], vec![0, 9, 9, 9, 2]]);
        assert_eq!(tokens, 8);
        Ok(())
    }

    #[test]
    fn test_predictions_read_back_and_bad_rows_name_their_line() {
        let tmp = tempfile::tempdir().unwrap();
        let pairs = tmp.path().join("pairs.tsv");
        std::fs::write(&pairs, "protein_a\tprotein_b\tlabel\tpredicted\tscore\nP1\tP2\t1\t1\t0.9\nP3\tP4\t0\t1\t0.6\n")
            .unwrap();
        let read = read_pair_predictions(&pairs).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!((read[1].0.a.as_str(), read[1].0.b.as_str(), read[1].0.label, read[1].1), ("P3", "P4", 0, 0.6));

        let families = tmp.path().join("families.tsv");
        std::fs::write(&families, "name\tlabel\tpredicted\tscore\nP1\tPF00001\tPF00002\t\n").unwrap();
        let (is_pair, rows) = read_test_predictions(&families).unwrap();
        assert!(!is_pair);
        assert_eq!((rows[0].0, rows[0].1.label.as_str(), rows[0].1.score), (2, "PF00001", None));
        let err = read_pair_predictions(&families).unwrap_err().to_string();
        assert!(err.contains("families.tsv:1") && err.contains("not the predictions of a pair task"), "{err}");

        let cases = [
            ("P1\tP2\t1\t1\tnan-ish\n", "pairs.tsv:3", "score `nan-ish`"),
            ("P1\tP2\t1\t1\n", "pairs.tsv:3", "4 tab-separated fields, expected 5"),
            ("P1\tP2\tmaybe\t1\t0.5\n", "pairs.tsv:3", "label `maybe`"),
        ];
        for (bad_row, at, what) in cases {
            std::fs::write(
                &pairs,
                format!("protein_a\tprotein_b\tlabel\tpredicted\tscore\nP1\tP2\t1\t1\t0.9\n{bad_row}"),
            )
            .unwrap();
            let err = read_pair_predictions(&pairs).unwrap_err().to_string();
            assert!(err.contains(at) && err.contains(what), "{bad_row:?}: {err}");
        }
    }
}
