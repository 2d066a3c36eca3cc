//! Pretraining both models with the one loop: ProteinBERT's denoising + GO objective and
//! PRoBERTa's masked LM, on a Swiss-Prot table (`accession, length, go_mf, go_bp, go_cc, sequence`).
//!
//! A config file (`configs/*-{tiny,demo,paper}.json`) holds the model sizes, the data limits, the
//! objective and the loop's settings; `protein-lm pretrain` and notebooks both call
//! [`pretrain`].
//!
//! ```no_run
//! use std::path::Path;
//! use candle_core::Device;
//! use protein_lm::data::resolver::{files, resolve};
//! use protein_lm::train::pretrain::{pretrain, PretrainConfig, PretrainInputs};
//! use protein_lm::train::run_dir::RunOptions;
//! let config = PretrainConfig::load("configs/proteinbert-pretrain-demo.json")?;
//! let inputs = PretrainInputs { data: resolve(files::SWISSPROT_GO_SAMPLE)?, tokenizer: None, go_graph: Some(resolve(files::GO_GRAPH)?) };
//! let out = Path::new("results/demo/runs/proteinbert-pretrain");
//! let summary = pretrain(&config, &inputs, RunOptions { out, resume: true, device: &Device::Cpu, progress: true })?;
//! println!("{} updates; the model is in {}", summary.updates, out.join("model").display());
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::objectives::denoising::{
    denoising_loss, encode_batch, AnnotatedCorpus, DenoisingBatch, DenoisingOptions, EpisodeSampler, EpisodeSwitch,
};
use super::objectives::mlm::{mask_tokens, sample_rng, MaskingOptions};
use super::precision::{HalfWeights, Precision};
use super::run_dir::{Provenance, RunDir, RunOptions};
use super::trainer::{
    EpochOrder, GradientSync, Metrics, RunSummary, SingleProcess, Task, TaskLoss, TrainConfig, Trainer,
};
use crate::batch::{Batch, Overflow, Padding};
use crate::data::go::{AnnotationMode, AnnotationReport, GoAncestry, GoGraph, GoVocabulary};
use crate::data::tables::{read_swissprot_go_limit, SwissProtRecord};
use crate::models::directory::{DirectoryConfig, ModelConfig, DICT_FILE, GO_TERMS_FILE};
use crate::models::init::SeededVarMap;
use crate::models::loss::{cross_entropy, Reduction};
use crate::models::proberta::{self, ProbertaForMaskedLm};
use crate::models::proteinbert::ProteinBert;
use crate::tokenize::{ProbertaTokenizer, ResidueTokenizer, SingleTruncation, UnknownCounts};
use crate::{Error, Result, Rng};

/// Which proteins of the table are used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainData {
    /// Read at most this many proteins (the table's first rows; the shared sample is already a
    /// uniform random sample).
    #[serde(default)]
    pub max_proteins: Option<usize>,
    /// Proteins held out for validation (seeded choice).
    pub valid_proteins: usize,
    /// ProteinBERT: keep GO terms annotating at least this many training proteins (reference 100
    /// over UniRef90).
    #[serde(default = "default_min_go")]
    pub min_go_proteins: usize,
    /// ProteinBERT: GO terms with their is_a/part_of ancestors (default, see the README's table of
    /// defaults) or as annotated (`Raw`, what the reference's dataset code ended up using).
    #[serde(default)]
    pub annotations: AnnotationMode,
}

fn default_min_go() -> usize {
    100
}

/// PRoBERTa's masked-LM settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlmConfig {
    /// Sequences per micro-batch (padded to the longest, with a mask).
    pub batch_size: usize,
    /// Tokens per sample including `<s>`/`</s>` (fairseq `--tokens-per-sample 512`).
    pub max_len: usize,
    /// Masking rates; `None` = fairseq's 15 % / 80-10-10.
    #[serde(default)]
    pub masking: Option<MaskingOptions>,
}

/// A pretraining run's configuration.
///
/// ```
/// use protein_lm::models::directory::ModelConfig;
/// use protein_lm::train::pretrain::PretrainConfig;
/// let bert = PretrainConfig::load("configs/proteinbert-pretrain-tiny.json")?;
/// let roberta = PretrainConfig::load("configs/proberta-pretrain-tiny.json")?;
/// // One config type for both objectives: denoising + GO for ProteinBERT, masked LM for PRoBERTa.
/// assert!(matches!(bert.model, ModelConfig::Proteinbert(_)) && bert.denoising.is_some());
/// assert!(matches!(roberta.model, ModelConfig::Proberta(_)) && roberta.mlm.is_some());
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    /// Sizes of the network. ProteinBERT's `n_annotations` and PRoBERTa's `vocab_size` are set
    /// from the data (GO vocabulary, dictionary).
    pub model: ModelConfig,
    pub data: PretrainData,
    #[serde(default)]
    pub denoising: Option<DenoisingOptions>,
    #[serde(default)]
    pub mlm: Option<MlmConfig>,
    pub train: TrainConfig,
}

impl PretrainConfig {
    /// Reads a JSON config, naming the file in errors.
    /// Unknown keys and out-of-range values are errors naming the key.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        crate::config::load_config(path.as_ref(), "pretraining config", Self::add_checks)
    }

    /// Range checks of every size, count and probability, naming the offending key.
    pub fn check(&self) -> Result<()> {
        let mut c = crate::config::Checks::new("pretraining config");
        self.add_checks(&mut c);
        c.finish()
    }

    fn add_checks(&self, c: &mut crate::config::Checks) {
        if let Some(n) = self.data.max_proteins {
            c.at_least("data.max_proteins", n, 1);
        }
        c.at_least("data.min_go_proteins", self.data.min_go_proteins, 1);
        if let Some(m) = &self.mlm {
            c.at_least("mlm.batch_size", m.batch_size, 1);
            c.at_least("mlm.max_len", m.max_len, 3);
            if let Some(k) = &m.masking {
                c.within("mlm.masking.mask_prob", k.mask_prob, 0.0, 1.0, true, false);
                c.within("mlm.masking.leave_unmasked_prob", k.leave_unmasked_prob, 0.0, 1.0, false, false);
                c.within("mlm.masking.random_token_prob", k.random_token_prob, 0.0, 1.0, false, false);
                if k.leave_unmasked_prob + k.random_token_prob > 1.0 {
                    c.fail("mlm.masking.random_token_prob", "plus leave_unmasked_prob must be at most 1");
                }
            }
        }
        if let Some(d) = &self.denoising {
            if d.episodes.is_empty() {
                c.fail("denoising.episodes", "must list at least one episode");
            }
            for (i, e) in d.episodes.iter().enumerate() {
                c.at_least(&format!("denoising.episodes[{i}].seq_len"), e.seq_len, 3);
                c.at_least(&format!("denoising.episodes[{i}].batch_size"), e.batch_size, 1);
            }
            c.at_least("denoising.batches_per_epoch", d.batches_per_epoch, 1);
            for (k, v) in [
                ("token_noise", d.token_noise),
                ("annotation_drop", d.annotation_drop),
                ("annotation_add", d.annotation_add),
                ("annotation_withhold", d.annotation_withhold),
            ] {
                c.within(&format!("denoising.{k}"), v, 0.0, 1.0, false, false);
            }
            c.non_negative("denoising.annotation_loss_weight", d.annotation_loss_weight);
        }
        crate::config::check_train(c, "train", &self.train);
    }
}

/// Splits `records` into training and validation sets.
/// The seeded held-out split pretraining uses: `valid` proteins drawn from `records` (kept in
/// file order) for validation, the rest for training. Public so that notebooks score the same
/// held-out proteins the run validated on.
///
/// ```
/// use protein_lm::data::tables::SwissProtRecord;
/// use protein_lm::train::pretrain::pretraining_split;
/// let record = |i: usize| SwissProtRecord {
///     accession: format!("P{i}"), go_mf: vec![], go_bp: vec![], go_cc: vec![], sequence: "MKV".into(),
/// };
/// let (train, valid) = pretraining_split((0..10).map(record).collect(), 3, 0)?;
/// assert_eq!((train.len(), valid.len()), (7, 3));
/// // The run's seed fixes the held-out proteins, so a notebook scores the ones the run validated on.
/// let (_, again) = pretraining_split((0..10).map(record).collect(), 3, 0)?;
/// assert_eq!(valid, again);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn pretraining_split(
    records: Vec<SwissProtRecord>,
    valid: usize,
    seed: u64,
) -> Result<(Vec<SwissProtRecord>, Vec<SwissProtRecord>)> {
    if valid >= records.len() {
        return Err(Error::invalid(format!(
            "{} proteins cannot leave {valid} for validation and any for training",
            records.len()
        )));
    }
    let mut held = Rng::new(seed).fork(super::streams::VALID_SET).sample_without_replacement(records.len(), valid);
    held.sort_unstable();
    let mut is_valid = vec![false; records.len()];
    held.iter().for_each(|&i| is_valid[i] = true);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (r, v) in records.into_iter().zip(is_valid) {
        if v {
            val.push(r)
        } else {
            train.push(r)
        }
    }
    Ok((train, val))
}

// ---------------------------------------------------------------------------------------------
// ProteinBERT

/// Each protein's GO terms as pretraining uses them: with their ancestors when `ancestry` is given
/// (propagated mode), else as annotated.
fn go_terms_of(
    records: &[SwissProtRecord],
    ancestry: Option<&GoAncestry>,
    mode: AnnotationMode,
    report: &mut AnnotationReport,
) -> Vec<Vec<String>> {
    records
        .iter()
        .map(|r| {
            let raw: Vec<&str> = r.go_terms().collect();
            match ancestry {
                Some(a) => a.annotate(&raw, mode, report),
                None => raw.iter().map(|t| t.to_string()).collect(),
            }
        })
        .collect()
}

/// ProteinBERT's pretraining as a [`Task`].
pub struct ProteinbertPretraining {
    pub model: ProteinBert,
    pub corpus: AnnotatedCorpus,
    pub sampler: EpisodeSampler,
    pub options: DenoisingOptions,
    /// Fixed corrupted batches of held-out proteins (same noise at every validation).
    pub valid: Vec<DenoisingBatch>,
    pub device: Device,
    /// The dtype the model computes in (its annotation inputs are cast to it).
    pub dtype: DType,
    /// This rank and the number of data-parallel ranks ([`Task::shard`]).
    pub shard: (usize, usize),
}

fn annotated_corpus(
    records: &[SwissProtRecord],
    terms: &[Vec<String>],
    vocabulary: &GoVocabulary,
    unknown: &mut UnknownCounts,
) -> AnnotatedCorpus {
    let mut corpus = AnnotatedCorpus { n_terms: vocabulary.len(), ..Default::default() };
    for (r, terms) in records.iter().zip(terms) {
        let with_ends = ResidueTokenizer.encode(&r.sequence, unknown);
        corpus.tokens.push(with_ends[1..with_ends.len() - 1].to_vec());
        let mut indices: Vec<u32> = vocabulary.indices(terms).into_iter().map(|i| i as u32).collect();
        indices.sort_unstable();
        indices.dedup();
        corpus.annotations.push(indices);
    }
    corpus
}

impl Task for ProteinbertPretraining {
    fn batches_per_epoch(&self) -> u64 {
        self.options.batches_per_epoch.div_ceil(self.shard.1 as u64)
    }

    fn train_loss(&mut self, epoch: u64, batch: u64, rng: &mut Rng) -> Result<TaskLoss> {
        // The one-process run's batch schedule, dealt out in turn: at its k-th update rank r
        // trains on batch k·ranks + r of it, so the ranks together see every batch once.
        let (rank, ranks) = (self.shard.0 as u64, self.shard.1 as u64);
        let global = (epoch * self.batches_per_epoch() + batch) * ranks + rank;
        self.sampler.before_batch(global);
        let (episode, rows) = self.sampler.batch(global)?;
        let mut encoded = encode_batch(&self.corpus, &rows, episode, &self.options, rng, &self.device)?;
        if encoded.input_annotations.dtype() != self.dtype {
            encoded.input_annotations = encoded.input_annotations.to_dtype(self.dtype)?;
        }
        let loss = denoising_loss(&self.model, &encoded, &self.options)?;
        let tokens = encoded.token_weights.sum_all()?.to_scalar::<f32>()? as usize;
        let scalar = |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        let metrics = Metrics::from([
            ("token_loss".to_string(), scalar(&loss.token)?),
            ("annotation_loss".to_string(), scalar(&loss.annotation)?),
            ("token_loss_per_residue".to_string(), loss.token_per_residue),
            ("seq_len".to_string(), self.options.episodes[episode].seq_len as f64),
        ]);
        Ok(TaskLoss { loss: loss.total, metrics, samples: rows.len(), tokens })
    }

    fn validate(&mut self) -> Result<Metrics> {
        let (mut total, mut token, mut annotation, mut per_residue, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for batch in &self.valid {
            let loss = denoising_loss(&self.model, batch, &self.options)?;
            let w = batch.proteins.len() as f64;
            total += loss.total.to_dtype(DType::F64)?.to_scalar::<f64>()? * w;
            token += loss.token.to_dtype(DType::F64)?.to_scalar::<f64>()? * w;
            annotation += loss.annotation.to_dtype(DType::F64)?.to_scalar::<f64>()? * w;
            per_residue += loss.token_per_residue * w;
            n += w;
        }
        if n == 0.0 {
            return Ok(Metrics::new());
        }
        Ok(Metrics::from([
            ("loss".to_string(), total / n),
            ("token_loss".to_string(), token / n),
            ("annotation_loss".to_string(), annotation / n),
            ("token_loss_per_residue".to_string(), per_residue / n),
        ]))
    }

    /// The wall-clock episode schedule so far (empty with the default batch-count switch).
    fn state(&self) -> serde_json::Value {
        serde_json::json!({"closed_episode_segments": self.sampler.closed_segments()})
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let closed = match state.get("closed_episode_segments") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| Error::invalid(format!("checkpoint: bad episode schedule: {e}")))?,
            None => Vec::new(),
        };
        self.sampler.restore_segments(closed);
        Ok(())
    }

    fn shard(&mut self, rank: usize, world_size: usize) -> Result<()> {
        if world_size > 1 && matches!(self.options.switch, EpisodeSwitch::WallClockMinutes(_)) {
            // Each rank's clock would switch episodes at its own moment.
            return Err(Error::invalid(
                "denoising.switch by wall clock cannot be shared by data-parallel ranks; switch by batches",
            ));
        }
        self.shard = (rank, world_size);
        Ok(())
    }
}

/// The held-out proteins of a ProteinBERT pretraining run, encoded as the run encoded them.
#[derive(Debug, Clone)]
pub struct ProteinbertHeldOut {
    pub records: Vec<SwissProtRecord>,
    /// Tokens and true GO terms in the run's vocabulary (`model/go_terms.txt`).
    pub corpus: AnnotatedCorpus,
    pub vocabulary: GoVocabulary,
    /// The run's corruption settings (for [`super::objectives::denoising_eval::evaluate_denoising`]).
    pub options: DenoisingOptions,
}

/// Rebuilds the validation proteins of the ProteinBERT pretraining in `run` (its `config.json`
/// and the GO vocabulary in `model/go_terms.txt`) from the Swiss-Prot `table` it read, with the
/// same seeded split and the same GO propagation (`go_graph` is needed when the run propagated).
///
/// ```no_run
/// use std::path::Path;
/// use candle_core::{DType, Device};
/// use protein_lm::data::resolver::{files, resolve};
/// use protein_lm::models::directory::ModelDir;
/// use protein_lm::train::objectives::denoising_eval::evaluate_denoising;
/// use protein_lm::train::pretrain::proteinbert_held_out;
/// let run = Path::new("results/demo/runs/proteinbert-pretrain");
/// let graph = resolve(files::GO_GRAPH)?;
/// let held_out = proteinbert_held_out(run, &resolve(files::SWISSPROT_GO_SAMPLE)?, Some(graph.as_path()))?;
/// let model = ModelDir::open(run.join("model"))?.proteinbert(DType::F32, &Device::Cpu)?;
/// let scores = evaluate_denoising(&model, &held_out.corpus, 512, 16, &held_out.options, 0, &Device::Cpu)?;
/// println!("{} held-out proteins: token loss {:.3}", held_out.records.len(), scores.token_loss);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn proteinbert_held_out(run: &Path, table: &Path, go_graph: Option<&Path>) -> Result<ProteinbertHeldOut> {
    let config_path = run.join("config.json");
    let config: PretrainConfig = super::run_dir::read_json(&config_path, "pretraining run configuration")?;
    if !matches!(config.model, ModelConfig::Proteinbert(_)) {
        return Err(Error::invalid(format!("{}: not a ProteinBERT pretraining", config_path.display())));
    }
    let terms_path = run.join("model").join(GO_TERMS_FILE);
    if !terms_path.is_file() {
        return Err(Error::invalid(format!(
            "{}: missing; the run has not finished (resume it with `protein-lm pretrain … --resume`)",
            terms_path.display()
        )));
    }
    let vocabulary = GoVocabulary::load(&terms_path)?;
    let (records, _) = match config.data.max_proteins {
        Some(n) => read_swissprot_go_limit(table, n)?,
        None => crate::data::tables::read_swissprot_go(table)?,
    };
    let (_, valid) = pretraining_split(records, config.data.valid_proteins, config.train.seed)?;
    let graph = match config.data.annotations {
        AnnotationMode::Raw => None,
        AnnotationMode::Propagated => {
            let path = go_graph.ok_or_else(|| {
                Error::invalid(format!("{}: the run propagated GO terms; pass the GO graph", config_path.display()))
            })?;
            Some(GoGraph::read(path, None)?)
        }
    };
    let ancestry = graph.as_ref().map(|g| g.default_ancestry());
    let terms = go_terms_of(&valid, ancestry.as_ref(), config.data.annotations, &mut AnnotationReport::default());
    let corpus = annotated_corpus(&valid, &terms, &vocabulary, &mut UnknownCounts::default());
    Ok(ProteinbertHeldOut {
        records: valid,
        corpus,
        vocabulary,
        options: config.denoising.clone().unwrap_or_else(DenoisingOptions::reference),
    })
}

/// The updates at which a pretraining run kept a checkpoint (ascending): the snapshots a
/// "score against the amount of pretraining" figure can fine-tune from.
///
/// ```no_run
/// use std::path::Path;
/// use protein_lm::train::pretrain::{pretraining_snapshots, snapshot_model};
/// let run = Path::new("results/demo/runs/proteinbert-pretrain");
/// // Fine-tune from each kept checkpoint: score against the amount of pretraining.
/// for step in pretraining_snapshots(run)? {
///     println!("update {step}: {}", snapshot_model(run, step)?.display());
/// }
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn pretraining_snapshots(run: &Path) -> Result<Vec<u64>> {
    super::checkpoint::CheckpointDir::new(run.join("checkpoints")).complete_steps()
}

/// A model directory of the checkpoint at `step` of the pretraining in `run`: the checkpoint's
/// weights with the finished run's `model/` config and files, written once to
/// `run/snapshots/step-N/` and reused after.
///
/// ```no_run
/// use std::path::Path;
/// use candle_core::{DType, Device};
/// use protein_lm::models::directory::ModelDir;
/// use protein_lm::train::pretrain::snapshot_model;
/// // A model directory of the checkpoint at update 600, made once and reused.
/// let dir = snapshot_model(Path::new("results/demo/runs/proteinbert-pretrain"), 600)?;
/// let model = ModelDir::open(&dir)?.proteinbert(DType::F32, &Device::Cpu)?;
/// # let _ = model;
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn snapshot_model(run: &Path, step: u64) -> Result<PathBuf> {
    let out = run.join("snapshots").join(format!("step-{step}"));
    if out.join(crate::models::directory::WEIGHTS_FILE).is_file() && out.join("config.json").is_file() {
        return Ok(out);
    }
    let checkpoint = run.join("checkpoints").join(format!("step-{step:010}"));
    let weights = checkpoint.join("model.safetensors");
    if !weights.is_file() {
        let kept = pretraining_snapshots(run)?;
        return Err(Error::invalid(format!(
            "{}: no checkpoint at update {step}; the run kept {kept:?}",
            run.display()
        )));
    }
    let model = crate::models::directory::ModelDir::open(run.join("model"))?;
    let mut config = model.config().clone();
    config.source = Some(format!("{} at update {step}", run.display()));
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
        .map_err(|e| Error::data(crate::Location::file(&weights), format!("cannot read safetensors: {e}")))?;
    let partial = run.join("snapshots").join(format!(".partial-step-{step}"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    let dir = crate::models::directory::ModelDir::create(&partial, &config, &tensors)?;
    for name in [GO_TERMS_FILE, DICT_FILE] {
        if let Some(file) = model.file(name) {
            dir.write_file(name, &std::fs::read(&file).map_err(|e| Error::io(&file, e))?)?;
        }
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    }
    std::fs::rename(&partial, &out).map_err(|e| Error::io(&out, e))?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// PRoBERTa

/// PRoBERTa's masked-LM pretraining as a [`Task`].
pub struct ProbertaPretraining {
    pub model: ProbertaForMaskedLm,
    pub train: Vec<Vec<u32>>,
    pub valid: Vec<Vec<u32>>,
    pub masking: MaskingOptions,
    pub batch_size: usize,
    pub seed: u64,
    pub order: EpochOrder,
    /// Entropy (nats) of the training corpus' token frequencies: the loss of the best predictor
    /// that ignores context.
    pub unigram_entropy: f64,
    pub device: Device,
}

/// Shannon entropy (nats) of the token frequencies of `sequences`.
///
/// ```
/// use protein_lm::train::pretrain::unigram_entropy;
/// // Two tokens, equally frequent: ln 2 nats, the loss of the best context-free guess.
/// assert!((unigram_entropy(&[vec![4, 5], vec![5, 4]]) - 2f64.ln()).abs() < 1e-12);
/// assert_eq!(unigram_entropy(&[vec![7, 7, 7]]), 0.0);
/// ```
pub fn unigram_entropy(sequences: &[Vec<u32>]) -> f64 {
    // Summed in token order: a HashMap's order changes from process to process, and with it the
    // last bits of the sum, which a resumed run's log would then show.
    let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
    for s in sequences {
        for &t in s {
            *counts.entry(t).or_default() += 1;
        }
    }
    let total: u64 = counts.values().sum();
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.ln()
        })
        .sum()
}

impl ProbertaPretraining {
    /// Masked-LM loss of the sequences `rows` of `set` as masked for `epoch`: summed cross-entropy
    /// over masked positions (logits only there, as fairseq does) and the number of them.
    fn masked_loss(
        &self,
        set: &[Vec<u32>],
        rows: &[usize],
        epoch: u64,
        stream: u64,
        rng: Option<&mut Rng>,
    ) -> Result<(Tensor, usize, usize)> {
        let mut inputs = Vec::with_capacity(rows.len());
        let mut targets = Vec::new();
        let mut positions = Vec::new();
        let longest = rows.iter().map(|&i| set[i].len()).max().unwrap_or(0);
        for (r, &i) in rows.iter().enumerate() {
            let mut sample = sample_rng(self.seed ^ stream, epoch, i as u64);
            let masked = mask_tokens(&set[i], &self.masking, &mut sample);
            for (j, t) in masked.targets.iter().enumerate() {
                if let Some(t) = t {
                    positions.push((r * longest + j) as u32);
                    targets.push(*t);
                }
            }
            inputs.push(masked.input);
        }
        let batch = Batch::from_sequences(&inputs, Padding::proberta_training(), Overflow::Error, &self.device)?;
        let tokens: usize = batch.lengths.iter().sum();
        let out = self.model.encoder.forward(&batch.ids, proberta::Forward::default(), rng)?;
        let hidden = out.last();
        let (b, l, h) = hidden.dims3()?;
        debug_assert_eq!(l, longest);
        let n = positions.len();
        if n == 0 {
            return Ok((Tensor::zeros((), DType::F32, &self.device)?, 0, tokens));
        }
        let picked = hidden.reshape((b * l, h))?.index_select(&Tensor::from_vec(positions, n, &self.device)?, 0)?;
        let logits = self.model.lm_head.forward(&picked, self.model.encoder.embeddings().word_embeddings())?;
        let targets = Tensor::from_vec(targets, n, &self.device)?;
        Ok((cross_entropy(&logits, &targets, None, None, Reduction::Sum)?, n, tokens))
    }
}

impl Task for ProbertaPretraining {
    fn batches_per_epoch(&self) -> u64 {
        self.order.batches(self.batch_size)
    }

    fn train_loss(&mut self, epoch: u64, batch: u64, rng: &mut Rng) -> Result<TaskLoss> {
        let rows = self.order.batch(epoch, batch, self.batch_size).to_vec();
        if rows.is_empty() {
            // A data-parallel rank whose share of the epoch's last batch is empty: no loss, and a
            // weight of 0 in the ranks' average.
            let zero = Tensor::zeros((), DType::F32, &self.device)?;
            return Ok(TaskLoss { loss: zero, metrics: Metrics::new(), samples: 0, tokens: 0 });
        }
        let (sum, masked, tokens) = self.masked_loss(&self.train, &rows, epoch, 0, Some(rng))?;
        // fairseq: summed loss / sample size (masked tokens).
        let loss = (sum / masked.max(1) as f64)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let metrics = Metrics::from([("loss_bits".to_string(), value / std::f64::consts::LN_2)]);
        Ok(TaskLoss { loss, metrics, samples: rows.len(), tokens })
    }

    fn validate(&mut self) -> Result<Metrics> {
        if self.valid.is_empty() {
            return Ok(Metrics::new());
        }
        let (mut total, mut masked) = (0.0, 0usize);
        let rows: Vec<usize> = (0..self.valid.len()).collect();
        for rows in rows.chunks(self.batch_size) {
            // The same masks at every validation (epoch 0 of a separate stream).
            let (sum, n, _) = self.masked_loss(&self.valid, rows, 0, super::streams::VALID_NOISE, None)?;
            total += sum.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            masked += n;
        }
        let loss = total / masked.max(1) as f64;
        Ok(Metrics::from([
            ("loss".to_string(), loss),
            ("loss_bits".to_string(), loss / std::f64::consts::LN_2),
            ("unigram_entropy".to_string(), self.unigram_entropy),
            ("masked_tokens".to_string(), masked as f64),
        ]))
    }

    fn shard(&mut self, rank: usize, world_size: usize) -> Result<()> {
        self.order.shard(rank, world_size);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Entry point

/// What [`pretrain`] needs besides the config.
///
/// ```no_run
/// use protein_lm::data::resolver::{files, resolve};
/// use protein_lm::train::pretrain::PretrainInputs;
/// // PRoBERTa: the Swiss-Prot table and the BPE tokenizer trained on it (notebook proberta/01).
/// let inputs = PretrainInputs {
///     data: resolve(files::SWISSPROT_GO_SAMPLE)?,
///     tokenizer: Some("results/demo/runs/proberta-bpe".into()),
///     go_graph: None,
/// };
/// # let _ = inputs;
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PretrainInputs {
    /// The Swiss-Prot table.
    pub data: PathBuf,
    /// PRoBERTa: a tokenizer directory (`tokenizer.json` + `dict.txt`) or a `dict.txt`.
    pub tokenizer: Option<PathBuf>,
    /// ProteinBERT with propagated annotations: the GO graph (`child, parent, depth, relation`).
    pub go_graph: Option<PathBuf>,
}

/// A model and its task, ready for the loop, with what the data preparation found.
struct Prepared {
    task: Box<dyn Task>,
    model_dir: DirectoryConfig,
    /// Files written beside the weights in `model/` and `best/` (dict.txt, go_terms.txt).
    model_files: Vec<(String, Vec<u8>)>,
    /// Extra input files hashed into the provenance.
    data_files: Vec<PathBuf>,
    /// Counts of what the preparation mapped, cut or left out (written to `data.json`).
    report: serde_json::Value,
    /// bf16/f16: the copies of the weights the model computes with.
    half: Option<HalfWeights>,
}

/// Builds a model with `load` on the f32 master variables `vars`, and, for bf16 or f16, again on
/// half-precision copies of them: the model the task computes with, and the copies.
fn build_model<M>(
    vars: &SeededVarMap,
    precision: Precision,
    device: &Device,
    load: impl Fn(candle_nn::VarBuilder) -> Result<M>,
) -> Result<(M, Option<HalfWeights>)> {
    let master = load(vars.var_builder(DType::F32, device))?;
    if precision.is_f32() {
        return Ok((master, None));
    }
    let (half, model) = HalfWeights::build(vars, precision.dtype(), load)?;
    Ok((model, Some(half)))
}

fn prepare_proteinbert(
    config: &PretrainConfig,
    model_config: &crate::models::proteinbert::Config,
    inputs: &PretrainInputs,
    (train, valid): (&[SwissProtRecord], &[SwissProtRecord]),
    vars: &SeededVarMap,
    device: &Device,
) -> Result<Prepared> {
    let seed = config.train.seed;
    let options = config.denoising.clone().unwrap_or_else(DenoisingOptions::reference);
    let mut data_files = Vec::new();
    let graph = match config.data.annotations {
        AnnotationMode::Raw => None,
        AnnotationMode::Propagated => {
            let path = inputs.go_graph.clone().ok_or_else(|| {
                Error::invalid(
                    "propagated GO annotations need the GO graph (--go-graph), or set data.annotations to \"Raw\"",
                )
            })?;
            let graph = GoGraph::read(&path, None)?;
            data_files.push(path);
            Some(graph)
        }
    };
    let ancestry = graph.as_ref().map(|g| g.default_ancestry());
    let mut annotation_report = AnnotationReport::default();
    let mut terms_of = |records: &[SwissProtRecord]| {
        go_terms_of(records, ancestry.as_ref(), config.data.annotations, &mut annotation_report)
    };
    let (train_terms, valid_terms) = (terms_of(train), terms_of(valid));
    let (vocabulary, vocabulary_report) = GoVocabulary::build(train_terms.iter(), config.data.min_go_proteins);
    if vocabulary.is_empty() {
        return Err(Error::invalid(format!(
            "no GO term annotates {} training proteins; lower data.min_go_proteins",
            config.data.min_go_proteins
        )));
    }
    let mut model_config = model_config.clone();
    model_config.n_annotations = vocabulary.len();
    let precision = config.train.precision;
    let (model, half) = build_model(vars, precision, device, |vb| ProteinBert::load(vb, &model_config))?;
    let mut unknown = UnknownCounts::default();
    let corpus = annotated_corpus(train, &train_terms, &vocabulary, &mut unknown);
    let valid_corpus = annotated_corpus(valid, &valid_terms, &vocabulary, &mut unknown);
    let lengths: Vec<usize> = corpus.tokens.iter().map(Vec::len).collect();
    let sampler = EpisodeSampler::new(&lengths, options.clone(), seed)?;
    // Validation at the middle episode's length, with fixed noise.
    let episode = options.episodes.len() / 2;
    let mut valid_rng = Rng::new(seed).fork(super::streams::VALID_NOISE);
    let rows: Vec<usize> = (0..valid_corpus.len()).collect();
    let valid_batches = rows
        .chunks(options.episodes[episode].batch_size)
        .map(|r| {
            let mut batch = encode_batch(&valid_corpus, r, episode, &options, &mut valid_rng, device)?;
            batch.input_annotations = batch.input_annotations.to_dtype(precision.dtype())?;
            Ok(batch)
        })
        .collect::<Result<Vec<_>>>()?;
    let report = serde_json::json!({
        "go_terms": vocabulary.len(),
        "go_terms_below_min_proteins": vocabulary_report,
        "go_annotation": annotation_report,
        "residues_mapped_to_other": unknown,
    });
    Ok(Prepared {
        model_files: vec![(GO_TERMS_FILE.to_string(), (vocabulary.terms().join("\n") + "\n").into_bytes())],
        task: Box::new(ProteinbertPretraining {
            model,
            corpus,
            sampler,
            options,
            valid: valid_batches,
            device: device.clone(),
            dtype: precision.dtype(),
            shard: (0, 1),
        }),
        model_dir: DirectoryConfig {
            model: ModelConfig::Proteinbert(model_config),
            source: None,
            has_lm_head: false,
            heads: vec![],
        },
        data_files,
        report,
        half,
    })
}

fn prepare_proberta(
    config: &PretrainConfig,
    model_config: &proberta::Config,
    inputs: &PretrainInputs,
    (train, valid): (&[SwissProtRecord], &[SwissProtRecord]),
    vars: &SeededVarMap,
    device: &Device,
) -> Result<Prepared> {
    let mlm = config.mlm.clone().ok_or_else(|| Error::invalid("a PRoBERTa pretraining config needs `mlm`"))?;
    let tokenizer_path = inputs
        .tokenizer
        .clone()
        .ok_or_else(|| Error::invalid("PRoBERTa pretraining needs a tokenizer (--tokenizer DIR or dict.txt)"))?;
    let (tokenizer, dict_path) = if tokenizer_path.is_dir() {
        (ProbertaTokenizer::load(&tokenizer_path)?, tokenizer_path.join(DICT_FILE))
    } else {
        (ProbertaTokenizer::from_fairseq_dict(&tokenizer_path)?, tokenizer_path.clone())
    };
    let vocab_size = tokenizer.dictionary.len();
    let mut model_config = model_config.clone();
    model_config.vocab_size = vocab_size;
    let masking = mlm.masking.unwrap_or_else(|| MaskingOptions::proberta(vocab_size as u32));
    let max_len = mlm.max_len.min(model_config.max_tokens());
    let mut unknown = UnknownCounts::default();
    let mut truncated = 0usize;
    let mut encode = |records: &[SwissProtRecord]| -> Result<Vec<Vec<u32>>> {
        records
            .iter()
            .map(|r| {
                let pieces = tokenizer.encode_pieces(&r.sequence, &mut unknown)?;
                truncated += (pieces.len() + 2 > max_len) as usize;
                Ok(crate::tokenize::bpe::with_specials(pieces, SingleTruncation::KeepEnd { max_len }))
            })
            .collect()
    };
    let (train_ids, valid_ids) = (encode(train)?, encode(valid)?);
    let report = serde_json::json!({
        "vocabulary": vocab_size,
        "proteins_cut_to_max_len": truncated,
        "max_len": max_len,
        "letters_mapped_to_unk": unknown,
    });
    let (model, half) =
        build_model(vars, config.train.precision, device, |vb| ProbertaForMaskedLm::load(vb, &model_config))?;
    // The tokenizer actually used (with its merges when known), so fine-tuning and embedding
    // segment proteins exactly as pretraining did.
    let model_files = tokenizer.files()?;
    Ok(Prepared {
        task: Box::new(ProbertaPretraining {
            model,
            unigram_entropy: unigram_entropy(&train_ids),
            order: EpochOrder::new(config.train.seed, train_ids.len()),
            train: train_ids,
            valid: valid_ids,
            masking,
            batch_size: mlm.batch_size,
            seed: config.train.seed,
            device: device.clone(),
        }),
        model_dir: DirectoryConfig {
            model: ModelConfig::Proberta(model_config),
            source: None,
            has_lm_head: true,
            heads: vec![],
        },
        model_files,
        data_files: vec![dict_path],
        report,
        half,
    })
}

/// Runs (or resumes) a pretraining in `out`; the final weights are the model directory `out/model`.
/// What the data preparation dropped, cut or mapped is written to `out/data.json`.
///
/// ```no_run
/// use std::path::Path;
/// use candle_core::Device;
/// use protein_lm::data::resolver::{files, resolve};
/// use protein_lm::train::pretrain::{pretrain, PretrainConfig, PretrainInputs};
/// use protein_lm::train::run_dir::RunOptions;
/// let config = PretrainConfig::load("configs/proberta-pretrain-demo.json")?;
/// let inputs = PretrainInputs {
///     data: resolve(files::SWISSPROT_GO_SAMPLE)?,
///     tokenizer: Some("results/demo/runs/proberta-bpe".into()),
///     go_graph: None,
/// };
/// // Resumes from the last complete checkpoint when interrupted.
/// let out = Path::new("results/demo/runs/proberta-pretrain");
/// let summary = pretrain(&config, &inputs, RunOptions { out, resume: true, device: &Device::Cpu, progress: true })?;
/// println!("{} updates, {} epochs, best validation {:?}", summary.updates, summary.epochs_completed, summary.best);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn pretrain(config: &PretrainConfig, inputs: &PretrainInputs, options: RunOptions) -> Result<RunSummary> {
    pretrain_with(config, inputs, options, Box::new(SingleProcess))
}

/// [`pretrain`] as one rank of a data-parallel run: `sync` is this rank's gradient sync
/// ([`crate::distributed::setup::connect`]). Every rank reads the data and builds the model;
/// rank 0 alone writes `out` (the other ranks only read nothing and write nothing there). With
/// [`SingleProcess`] this is [`pretrain`].
pub fn pretrain_with(
    config: &PretrainConfig,
    inputs: &PretrainInputs,
    options: RunOptions,
    sync: Box<dyn GradientSync>,
) -> Result<RunSummary> {
    let RunOptions { out, resume, device, progress } = options;
    let lead = sync.rank() == 0;
    let seed = config.train.seed;
    let (records, read_report) = match config.data.max_proteins {
        Some(n) => read_swissprot_go_limit(&inputs.data, n)?,
        None => crate::data::tables::read_swissprot_go(&inputs.data)?,
    };
    let (train, valid) = pretraining_split(records, config.data.valid_proteins, seed)?;
    let vars = SeededVarMap::new(seed);
    let sets = (train.as_slice(), valid.as_slice());
    let mut prepared = match &config.model {
        ModelConfig::Proteinbert(c) => prepare_proteinbert(config, c, inputs, sets, &vars, device)?,
        ModelConfig::Proberta(c) => prepare_proberta(config, c, inputs, sets, &vars, device)?,
    };
    let run = if lead {
        let mut data_files = vec![inputs.data.clone()];
        data_files.append(&mut prepared.data_files);
        let provenance = Provenance::collect(seed, &data_files, device)?;
        let run = RunDir::open(out, &serde_json::to_value(config).expect("config serialises"), &provenance, resume)?;
        let mut report = serde_json::json!({
            "table": inputs.data.display().to_string(),
            "records_read": read_report,
            "train_proteins": train.len(),
            "valid_proteins": valid.len(),
        });
        if let (Some(all), serde_json::Value::Object(extra)) = (report.as_object_mut(), prepared.report) {
            all.extend(extra);
        }
        run.write_json("data.json", &report)?;
        run
    } else {
        RunDir::of_other_rank(out)
    };
    let mut trainer = Trainer::new(config.train.clone(), vars, device.clone())?;
    trainer.progress = progress;
    trainer.model_dir_config = Some(prepared.model_dir);
    trainer.model_dir_files = prepared.model_files;
    trainer.half = prepared.half;
    trainer.sync = sync;
    trainer.run(prepared.task.as_mut(), &run, resume)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::objectives::denoising_eval::evaluate_denoising;

    fn sample_table() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/samples/swissprot_sample300.tsv")
    }

    #[test]
    fn held_out_proteins_and_snapshots_of_a_proteinbert_run() -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = PretrainConfig::load(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/proteinbert-pretrain-tiny.json"),
        )?;
        config.data.annotations = AnnotationMode::Raw;
        config.data.min_go_proteins = 3;
        config.train.max_updates = 4;
        config.train.checkpoint_every = 2;
        config.train.keep_checkpoints = 5;
        config.train.validate_every_updates = Some(4);
        let inputs = PretrainInputs { data: sample_table(), tokenizer: None, go_graph: None };
        let out = tmp.path().join("run");
        let device = Device::Cpu;
        pretrain(&config, &inputs, RunOptions { out: &out, resume: false, device: &device, progress: false })?;

        // The held-out set is the run's: the same proteins, in the run's vocabulary.
        let held = proteinbert_held_out(&out, &sample_table(), None)?;
        let (records, _) = read_swissprot_go_limit(&sample_table(), config.data.max_proteins.unwrap())?;
        let (_, valid) = pretraining_split(records, config.data.valid_proteins, config.train.seed)?;
        assert_eq!(
            held.records.iter().map(|r| &r.accession).collect::<Vec<_>>(),
            valid.iter().map(|r| &r.accession).collect::<Vec<_>>()
        );
        let model_dir = crate::models::directory::ModelDir::open(out.join("model"))?;
        let ModelConfig::Proteinbert(model_config) = &model_dir.config().model else { panic!("a ProteinBERT run") };
        assert_eq!(held.corpus.n_terms, model_config.n_annotations);
        assert_eq!(held.vocabulary.len(), model_config.n_annotations);
        for (r, terms) in held.records.iter().zip(&held.corpus.annotations) {
            let expected: std::collections::BTreeSet<usize> =
                held.vocabulary.indices(&r.go_terms().collect::<Vec<_>>()).into_iter().collect();
            assert_eq!(terms.iter().map(|&t| t as usize).collect::<std::collections::BTreeSet<_>>(), expected);
        }
        // The run's own validation scored these proteins at the middle episode: the evaluation at
        // that length with the run's noise settings is on the same scale.
        let model = model_dir.proteinbert(DType::F32, &device)?;
        let episode = &held.options.episodes[held.options.episodes.len() / 2];
        let scores = evaluate_denoising(&model, &held.corpus, episode.seq_len, 8, &held.options, 1, &device)?;
        assert_eq!(scores.proteins, config.data.valid_proteins);
        assert!(scores.token_loss.is_finite() && scores.annotation_loss.is_finite());

        // Snapshots: checkpoints at 2 and 4; the one at 2 holds other weights than the final model.
        assert_eq!(pretraining_snapshots(&out)?, vec![2, 4]);
        let at2 = crate::models::directory::ModelDir::open(snapshot_model(&out, 2)?)?;
        assert!(at2.file(GO_TERMS_FILE).is_some());
        let (early, last) = (at2.tensors(DType::F32, &device)?, model_dir.tensors(DType::F32, &device)?);
        assert_eq!(early.len(), last.len());
        let name = early.keys().find(|k| k.contains("embedding")).expect("an embedding tensor");
        let diff = (&early[name] - &last[name])?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff > 0.0, "two updates later the weights moved");
        let at4 = crate::models::directory::ModelDir::open(snapshot_model(&out, 4)?)?.tensors(DType::F32, &device)?;
        let same = (&at4[name] - &last[name])?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(same, 0.0, "the last checkpoint is the final model");
        let err = snapshot_model(&out, 3).unwrap_err().to_string();
        assert!(err.contains("no checkpoint at update 3") && err.contains("[2, 4]"), "{err}");
        Ok(())
    }
}
