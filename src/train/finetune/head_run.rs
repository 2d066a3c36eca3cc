//! A head of the user's own on either pretrained model, trained by the crate's loop.
//!
//! [`finetune_head`] takes a model directory (ProteinBERT or PRoBERTa), a function that builds
//! the head on a [`VarBuilder`], the data and a [`HeadTraining`]; it encodes the data with the
//! model's own tokenizer, trains trunk and head (or the head alone on a frozen trunk) with the
//! crate's [`Trainer`] — shuffling, validation, early stopping, checkpoints and resume in the run
//! directory — restores the best validation weights, scores the test set and writes
//! `OUT/test_predictions.tsv` and `OUT/results.json`. The built-in fine-tunings train through the
//! same [`HeadTask`].
//!
//! ```no_run
//! use protein_lm::prelude::*;
//!
//! // A two-layer head on mean-pooled residues.
//! struct Mlp { hidden: Linear, out: Linear }
//!
//! impl Head for Mlp {
//!     fn level(&self) -> Level { Level::Protein }
//!     fn target(&self) -> Target { Target::Numeric }
//!     fn forward(&self, input: HeadInput<'_>, _rng: Option<&mut Rng>) -> Result<Tensor> {
//!         let pooled = Pooling::Mean.pool(input.single()?)?;
//!         Ok(self.out.forward(&self.hidden.forward(&pooled)?.gelu()?)?)
//!     }
//! }
//!
//! # fn main() -> Result<()> {
//! let data = SupervisedData::from_benchmark(&load_benchmark("stability")?, &DataLimits::default(), 0)?;
//! let run = finetune_head(
//!     std::path::Path::new("results/demo/runs/proteinbert-pretrain/model"),
//!     |vb, widths| Ok(Mlp { hidden: linear(widths.residue, 64, vb.pp("hidden"))?, out: linear(64, 1, vb.pp("out"))? }),
//!     &data,
//!     &HeadTraining::epochs(5, 1e-3),
//!     RunOptions { out: std::path::Path::new("runs/mlp"), resume: true, device: &Device::Cpu, progress: true },
//! )?;
//! println!("test Spearman {:.3}", run.report.test_scores["spearman"]);
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::head_task::{check_head, predict, write_predictions, Batching, Encoded, HeadTask, Padding};
use super::ppi::PairData;
use super::{load_trunk_weights, restore_best, write_json, SupervisedData};
use crate::models::directory::{ModelConfig, ModelDir};
use crate::models::heads::{Head, Level, Target};
use crate::models::init::SeededVarMap;
use crate::models::proberta::Encoder;
use crate::models::proteinbert::ProteinBert;
use crate::models::Trunk;
use crate::tokenize::bpe::{PairTruncation, ProbertaTokenizer, SingleTruncation};
use crate::tokenize::residue::ResidueTokenizer;
use crate::tokenize::UnknownCounts;
use crate::train::objectives::supervised::{Predictions, TargetValue};
use crate::train::run_dir::{Provenance, RunDir, RunOptions};
use crate::train::trainer::{trainable_params, Metrics, TrainConfig, Trainer};
use crate::{Error, Result};

/// The prefix of the head's variables (the rest are the trunk's).
pub const HEAD_PREFIX: &str = "head";

/// How a head trains on its trunk.
///
/// ```
/// use protein_lm::train::finetune::HeadTraining;
/// // A head alone on fixed features: ten epochs at 1e-3, inputs up to 256 tokens.
/// let mut settings = HeadTraining::epochs(10, 1e-3).frozen();
/// settings.max_len = 256;
/// assert!(settings.freeze_trunk && settings.batch_size == 16);
/// assert!(settings.train.early_stopping.is_some()); // on the validation loss, patience 2
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadTraining {
    /// Train the head alone on fixed trunk features (faster: the trunk's backward is skipped),
    /// or the trunk with it.
    pub freeze_trunk: bool,
    pub batch_size: usize,
    /// Longest input in tokens, special tokens included. ProteinBERT pads every training batch to
    /// it and leaves longer training and validation proteins out (counted in the report); its test
    /// proteins are scored at `max_len · 2^k`, as the reference scores its benchmarks. PRoBERTa
    /// keeps the first `max_len − 2` pieces of a protein (of a pair, each protein's first
    /// `(max_len − 4) / 2`, at most the paper's 254), in training and test alike, as its reference
    /// does.
    pub max_len: usize,
    /// ProteinBERT only: mask padding in the global attention (off: the reference).
    #[serde(default)]
    pub padding_mask: bool,
    /// The loop: epochs, optimiser, learning rate, validation, early stopping.
    pub train: TrainConfig,
}

impl HeadTraining {
    /// `epochs` epochs at a constant `lr` with AdamW, batch 16, inputs up to 512 tokens, the
    /// trunk fine-tuned; validation every epoch with early stopping on the validation loss
    /// (patience 2), the best epoch's weights tested. Change any field after.
    pub fn epochs(epochs: u64, lr: f64) -> Self {
        Self {
            freeze_trunk: false,
            batch_size: 16,
            max_len: 512,
            padding_mask: false,
            train: TrainConfig::epochs(epochs, lr),
        }
    }

    /// The same with the trunk frozen.
    pub fn frozen(mut self) -> Self {
        self.freeze_trunk = true;
        self
    }
}

/// The widths of what a trunk gives a head: per residue, and its own per-protein vector.
///
/// ```
/// use protein_lm::models::heads::{HeadConfig, Level, Target};
/// use protein_lm::train::finetune::Widths;
/// // What a head builder gets, here from ProteinBERT's released model; it sizes the head's first layer.
/// let widths = Widths { residue: 1562, protein: 15_599 };
/// let per_residue = HeadConfig::proteinbert(Level::Residue, Target::Binary);
/// assert_eq!(per_residue.input_width(widths.residue, widths.protein), 1562);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widths {
    pub residue: usize,
    pub protein: usize,
}

/// What a head trains on: proteins (per protein or per residue), or pairs of proteins.
///
/// ```
/// use protein_lm::models::heads::{Level, Target};
/// use protein_lm::train::finetune::{HeadData, SupervisedData};
/// let data = SupervisedData {
///     level: Level::Protein,
///     target: Target::Numeric,
///     labels: vec![],
///     train: vec![],
///     valid: vec![],
///     test: vec![],
///     report: Default::default(),
/// };
/// // `finetune_head` takes either kind through `Into<HeadData>`: `&data` or `&pair_data`.
/// let input: HeadData = (&data).into();
/// assert!(matches!(input, HeadData::Proteins(_)));
/// ```
#[derive(Debug, Clone, Copy)]
pub enum HeadData<'a> {
    Proteins(&'a SupervisedData),
    /// Binary targets (1 = interacting). ProteinBERT encodes the two proteins separately (the head
    /// gets [`HeadInput::Two`](crate::models::heads::HeadInput::Two)); PRoBERTa packs them into
    /// one input, `<s> A </s> </s> B </s>`, each cut to 254 pieces as in its paper.
    Pairs(&'a PairData),
}

impl<'a> From<&'a SupervisedData> for HeadData<'a> {
    fn from(data: &'a SupervisedData) -> Self {
        HeadData::Proteins(data)
    }
}

impl<'a> From<&'a PairData> for HeadData<'a> {
    fn from(data: &'a PairData) -> Self {
        HeadData::Pairs(data)
    }
}

impl HeadData<'_> {
    fn level_target(&self) -> (Level, Target) {
        match self {
            HeadData::Proteins(d) => (d.level, d.target),
            HeadData::Pairs(_) => (Level::Pair, Target::Binary),
        }
    }

    fn class_names(&self) -> Vec<String> {
        match self {
            HeadData::Proteins(d) => d.labels.clone(),
            HeadData::Pairs(_) => Vec::new(),
        }
    }
}

/// What [`finetune_head`] reports (`OUT/results.json`).
///
/// ```no_run
/// use protein_lm::train::finetune::HeadReport;
/// // A finished run's results.json, for a notebook that reuses it instead of training again.
/// let report = HeadReport::read(std::path::Path::new("results/demo/runs/stability-mlp"))?;
/// println!("{} on {}: test {:?}, tested {}", report.model, report.start, report.test_scores, report.tested);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadReport {
    /// `proteinbert` or `proberta`.
    pub model: String,
    /// The model directory the trunk came from.
    pub start: String,
    pub freeze_trunk: bool,
    /// Examples per split, as given.
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    /// What encoding left out, cut or mapped.
    pub data_report: BTreeMap<String, usize>,
    pub updates: u64,
    pub epochs: u64,
    pub stopped_early: bool,
    /// Best validation value of the early-stopping metric and its update.
    pub best: Option<(f64, u64)>,
    /// Which weights were tested: `best/ (update N)` or `model/ (the last update)`.
    pub tested: String,
    pub seconds: f64,
    /// Every metric of the test set ([`Predictions::summary`]); NaN where undefined.
    #[serde(deserialize_with = "crate::analysis::ppi::nan_if_null_map")]
    pub test_scores: Metrics,
}

impl HeadReport {
    /// Reads a finished run's `results.json` (`dir`: the run directory), naming the file in errors.
    pub fn read(dir: &Path) -> Result<Self> {
        crate::train::run_dir::read_json(&dir.join("results.json"), "head fine-tuning results")
    }
}

/// A trained head on its trunk (the best validation weights), to predict with further.
///
/// ```
/// use protein_lm::prelude::*;
/// use protein_lm::models::directory::{init_random, ModelConfig};
/// use protein_lm::models::proteinbert::Config;
/// let dir = tempfile::tempdir()?;
/// let model = dir.path().join("model");
/// init_random(&model, ModelConfig::Proteinbert(Config::tiny(8)), 0, None)?;
/// // A numeric target per protein: its share of K.
/// let example = |i: usize| {
///     let sequence: String = (0..8).map(|j| if j < i % 8 { 'K' } else { 'A' }).collect();
///     Example { id: format!("P{i}"), target: TargetValue::Numeric((i % 8) as f32 / 8.0), sequence }
/// };
/// let examples = |range: std::ops::Range<usize>| range.map(example).collect::<Vec<_>>();
/// let data = SupervisedData {
///     level: Level::Protein, target: Target::Numeric, labels: vec![],
///     train: examples(0..16), valid: examples(16..20), test: examples(20..24), report: Default::default(),
/// };
/// let mut settings = HeadTraining::epochs(2, 1e-3).frozen();
/// settings.max_len = 16;
/// let run = finetune_head(
///     &model,
///     |vb, widths| LinearHead::load(vb, HeadConfig::proteinbert(Level::Protein, Target::Numeric), widths.residue, widths.protein),
///     &data,
///     &settings,
///     RunOptions { out: &dir.path().join("run"), resume: false, device: &Device::Cpu, progress: false },
/// )?;
/// // The trunk and the best head, and the test predictions in the order of the test examples.
/// assert_eq!((run.report.test, run.test_predictions.len()), (4, 4));
/// assert!(run.report.test_scores.contains_key("spearman"));
/// assert!(dir.path().join("run/results.json").is_file());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TrainedHead<H: Head> {
    pub trunk: Box<dyn Trunk>,
    pub head: H,
    pub report: HeadReport,
    /// Test predictions in the order of the test examples.
    pub test_predictions: Predictions,
}

/// A pair's token ids: the first protein (or the packed pair), and the second one when separate.
type PairIds = (Vec<u32>, Option<Vec<u32>>);

/// The model of a directory, loaded through `vars` (its trunk only).
enum Model {
    ProteinBert(crate::models::proteinbert::Config),
    Proberta(crate::models::proberta::Config, ProbertaTokenizer),
}

impl Model {
    fn open(dir: &ModelDir) -> Result<Self> {
        Ok(match dir.config().model.clone() {
            ModelConfig::Proteinbert(c) => Model::ProteinBert(c),
            ModelConfig::Proberta(c) => Model::Proberta(c, ProbertaTokenizer::load(dir.path())?),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Model::ProteinBert(_) => "proteinbert",
            Model::Proberta(..) => "proberta",
        }
    }

    /// The trunk on `vb` (the whole model's variables, or detached copies of them).
    fn trunk(&self, vb: VarBuilder<'static>, padding_mask: bool) -> Result<Box<dyn Trunk>> {
        Ok(match self {
            Model::ProteinBert(c) => Box::new(ProteinBert::load(vb, c)?.with_padding_mask(padding_mask)),
            Model::Proberta(c, _) => Box::new(Encoder::load(vb, c)?),
        })
    }

    fn batching(&self, seq_len: usize) -> Batching {
        match self {
            Model::ProteinBert(_) => {
                Batching { padding: Padding::Fixed(seq_len), pad_id: crate::tokenize::residue::PAD }
            }
            Model::Proberta(..) => super::proberta::BATCHING,
        }
    }

    /// Token ids of one protein (with the model's specials), `None` when ProteinBERT cannot take
    /// it at `max_len`.
    fn encode(&self, sequence: &str, max_len: Option<usize>, unknown: &mut UnknownCounts) -> Result<Option<Vec<u32>>> {
        Ok(match self {
            Model::ProteinBert(_) => {
                let ids = ResidueTokenizer.encode(sequence, unknown);
                max_len.is_none_or(|m| ids.len() <= m).then_some(ids)
            }
            Model::Proberta(c, t) => {
                let max_len = max_len.unwrap_or(c.max_tokens()).min(c.max_tokens());
                let pieces = t.encode_pieces(sequence, unknown)?;
                Some(crate::tokenize::bpe::with_specials(pieces, SingleTruncation::KeepEnd { max_len }))
            }
        })
    }

    /// Token ids of a pair: two encodings (ProteinBERT) or one packed one (PRoBERTa).
    fn encode_pair(
        &self,
        a: &str,
        b: &str,
        max_len: Option<usize>,
        unknown: &mut UnknownCounts,
    ) -> Result<Option<PairIds>> {
        Ok(match self {
            Model::ProteinBert(_) => match (self.encode(a, max_len, unknown)?, self.encode(b, max_len, unknown)?) {
                (Some(a), Some(b)) => Some((a, Some(b))),
                _ => None,
            },
            Model::Proberta(c, t) => {
                // The paper cuts each protein to 254 pieces for 512 tokens; shorter inputs share
                // what is left after the four specials equally.
                let limit = max_len.unwrap_or(c.max_tokens()).min(c.max_tokens());
                let per_protein = (limit.saturating_sub(4) / 2).min(254);
                let mut ids = t.encode_pair(a, b, PairTruncation::PerProtein { per_protein }, unknown)?;
                ids.truncate(limit);
                Some((ids, None))
            }
        })
    }

    /// One split encoded; `max_len` = `None` keeps every example (the test set). Returns the
    /// encoded examples and how many were left out.
    fn encode_split(
        &self,
        data: HeadData<'_>,
        split: Split,
        max_len: Option<usize>,
        unknown: &mut UnknownCounts,
    ) -> Result<(Vec<Encoded>, usize)> {
        let mut out = Vec::new();
        let mut left_out = 0;
        match data {
            HeadData::Proteins(d) => {
                let examples = match split {
                    Split::Train => &d.train,
                    Split::Valid => &d.valid,
                    Split::Test => &d.test,
                };
                if d.level == Level::Residue && matches!(self, Model::Proberta(..)) {
                    return Err(Error::invalid(
                        "per-residue tasks need ProteinBERT: a PRoBERTa BPE piece spans several residues",
                    ));
                }
                for e in examples {
                    match self.encode(&e.sequence, max_len, unknown)? {
                        Some(ids) => {
                            out.push(Encoded { name: e.id.clone(), ids, partner: None, target: e.target.clone() })
                        }
                        None => left_out += 1,
                    }
                }
            }
            HeadData::Pairs(d) => {
                let pairs = match split {
                    Split::Train => &d.train,
                    Split::Valid => &d.valid,
                    Split::Test => &d.test,
                };
                for (i, p) in pairs.iter().enumerate() {
                    let what = || format!("{split:?} pair {} ({} – {})", i + 1, p.a, p.b).to_lowercase();
                    let (a, b) = (d.sequence(&p.a, what)?, d.sequence(&p.b, what)?);
                    match self.encode_pair(a, b, max_len, unknown)? {
                        Some((ids, partner)) => out.push(Encoded {
                            name: format!("{}\t{}", p.a, p.b),
                            ids,
                            partner,
                            target: TargetValue::Binary(p.label == 1),
                        }),
                        None => left_out += 1,
                    }
                }
            }
        }
        Ok((out, left_out))
    }
}

#[derive(Debug, Clone, Copy)]
enum Split {
    Train,
    Valid,
    Test,
}

/// Predictions of every test example in its order: PRoBERTa in length-sorted batches, ProteinBERT
/// each at the smallest `max_len · 2^k` that holds it (batch halved per doubling).
fn predict_test(
    model: &Model,
    trunk: &dyn Trunk,
    head: &dyn Head,
    test: &[Encoded],
    settings: &HeadTraining,
    device: &Device,
) -> Result<Predictions> {
    let longest = |e: &Encoded| e.ids.len().max(e.partner.as_ref().map_or(0, Vec::len));
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, e) in test.iter().enumerate() {
        let mut len = settings.max_len;
        if let Model::ProteinBert(_) = model {
            while len < longest(e) {
                len *= 2;
            }
        }
        groups.entry(len).or_default().push(i);
    }
    let mut visited: Vec<usize> = Vec::with_capacity(test.len());
    let mut all = Predictions::default();
    for (len, members) in &groups {
        let items: Vec<&Encoded> = members.iter().map(|&i| &test[i]).collect();
        let batch = (settings.batch_size * settings.max_len / len).max(1);
        let (p, order) = predict(trunk, head, &items, model.batching(*len), batch, device)?;
        all.extend(&p);
        visited.extend(order.iter().map(|&o| members[o]));
    }
    // Residue predictions stay in visiting order: they are counted, not written per protein.
    // Protein and pair ones go back to test order, for the prediction file and the caller.
    Ok(if head.level() == Level::Residue { all } else { all.in_example_order(&visited) })
}

/// Trains the head `make_head` builds on the trunk of the model directory `from` (see the module
/// documentation), in `options.out` (resumed from its last checkpoint with `options.resume`).
///
/// `make_head(vb, widths)` creates the head's variables through `vb` (under `head.`); `widths`
/// says what the trunk gives. The head's [`Level`] and [`Target`] must be the data's; on PRoBERTa,
/// whose pair is one packed input, a pair task also takes a protein-level head.
///
/// ```no_run
/// use protein_lm::prelude::*;
/// // ProteinBERT's own head (dropout, one dense layer) on the released model, trunk frozen.
/// let data = SupervisedData::from_benchmark(&load_benchmark("signalP_binary")?, &DataLimits::default(), 0)?;
/// let config = HeadConfig::proteinbert(Level::Protein, Target::Binary);
/// let run = finetune_head(
///     std::path::Path::new("models/proteinbert-released"),
///     |vb, widths| LinearHead::load(vb, config, widths.residue, widths.protein),
///     &data,
///     &HeadTraining::epochs(20, 1e-2).frozen(),
///     RunOptions { out: std::path::Path::new("runs/signalp-linear"), resume: true, device: &Device::Cpu, progress: true },
/// )?;
/// println!("test ROC AUC {:.3}", run.report.test_scores["roc_auc"]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn finetune_head<'d, H: Head + 'static>(
    from: &Path,
    make_head: impl FnOnce(VarBuilder<'static>, Widths) -> Result<H>,
    data: impl Into<HeadData<'d>>,
    settings: &HeadTraining,
    options: RunOptions,
) -> Result<TrainedHead<H>> {
    let data = data.into();
    let RunOptions { out, resume, device, progress } = options;
    if settings.batch_size == 0 || settings.max_len < 3 {
        return Err(Error::invalid("head training: batch_size must be at least 1 and max_len at least 3"));
    }
    let dir = ModelDir::open(from)?;
    let model = Model::open(&dir)?;

    // ---- trunk and head ----
    let vars = SeededVarMap::new(settings.train.seed);
    let trunk = model.trunk(vars.var_builder(DType::F32, device), settings.padding_mask)?;
    load_trunk_weights(&vars, &dir, HEAD_PREFIX)?;
    let widths = Widths { residue: trunk.residue_width(), protein: trunk.protein_width() };
    let head = make_head(vars.var_builder(DType::F32, device).pp(HEAD_PREFIX), widths)?;
    let (level, target) = data.level_target();
    // PRoBERTa packs a pair into one input, which a protein-level head reads like one protein (as
    // its own PPI fine-tuning does); a pair-level head gets the packed features too.
    let packed_pair = level == Level::Pair && matches!(model, Model::Proberta(..)) && head.level() == Level::Protein;
    check_head(&head, if packed_pair { Level::Protein } else { level }, target)?;
    let trunk_names: Vec<String> =
        vars.named_vars().into_iter().map(|(n, _)| n).filter(|n| !n.starts_with(HEAD_PREFIX)).collect();
    if vars.named_vars().len() == trunk_names.len() {
        return Err(Error::invalid(format!(
            "the head created no variables under `{HEAD_PREFIX}.`: build its layers on the VarBuilder it is given"
        )));
    }
    // A frozen trunk reads detached copies of its weights: no backward is recorded through it.
    let trunk = if settings.freeze_trunk {
        let tensors: HashMap<String, Tensor> = vars
            .named_vars()
            .into_iter()
            .filter(|(n, _)| !n.starts_with(HEAD_PREFIX))
            .map(|(n, v)| (n, v.as_tensor().detach()))
            .collect();
        model.trunk(VarBuilder::from_tensors(tensors, DType::F32, device), settings.padding_mask)?
    } else {
        trunk
    };

    // ---- data ----
    let mut unknown = UnknownCounts::default();
    let (train, left_train) = model.encode_split(data, Split::Train, Some(settings.max_len), &mut unknown)?;
    let (valid, left_valid) = model.encode_split(data, Split::Valid, Some(settings.max_len), &mut unknown)?;
    // ProteinBERT scores every test protein whole (at a longer padded length when needed);
    // PRoBERTa cuts test inputs as it cut the training ones, as its reference does.
    let test_cut = match model {
        Model::ProteinBert(_) => None,
        Model::Proberta(..) => Some(settings.max_len),
    };
    let (test, _) = model.encode_split(data, Split::Test, test_cut, &mut unknown)?;
    if train.is_empty() {
        return Err(Error::invalid(format!("no training example fits max_len {}", settings.max_len)));
    }
    let mut data_report = BTreeMap::new();
    if let Model::ProteinBert(_) = model {
        data_report.insert("train left out: longer than max_len".to_string(), left_train);
        data_report.insert("valid left out: longer than max_len".to_string(), left_valid);
    }
    for (letter, n) in &unknown.by_char {
        data_report.insert(format!("letter `{letter}` mapped to the unknown token"), *n);
    }
    let sizes = match data {
        HeadData::Proteins(d) => (d.train.len(), d.valid.len(), d.test.len()),
        HeadData::Pairs(d) => (d.train.len(), d.valid.len(), d.test.len()),
    };

    // ---- train ----
    let mut trainer = Trainer::new(settings.train.clone(), vars.clone(), device.clone())?;
    if settings.freeze_trunk {
        trainer.params = trainable_params(&vars, &trunk_names);
    }
    trainer.progress = progress;
    let mut task = HeadTask::new(
        trunk,
        head,
        (train, valid),
        model.batching(settings.max_len),
        settings.batch_size,
        settings.train.seed,
        device,
    );
    task.frozen_trunk = settings.freeze_trunk;
    let run_json = serde_json::json!({"head_training": settings, "from": from.display().to_string()});
    let provenance = Provenance::collect(settings.train.seed, &[], device)?;
    let run = RunDir::open(out, &run_json, &provenance, resume)?;
    let summary = trainer.run(&mut task, &run, resume)?;

    // ---- test the best validation weights ----
    let tested = match restore_best(&run, &summary, &vars, device)? {
        Some(update) => format!("best/ (update {update})"),
        None => "model/ (the last update)".to_string(),
    };
    let predictions = predict_test(&model, &task.trunk, &task.head, &test, settings, device)?;
    if level != Level::Residue {
        let names: Vec<&str> = test.iter().map(|e| e.name.as_str()).collect();
        write_predictions(
            &out.join("test_predictions.tsv"),
            &names,
            &predictions,
            (level, target),
            &data.class_names(),
        )?;
    }
    let report = HeadReport {
        model: model.name().into(),
        start: from.display().to_string(),
        freeze_trunk: settings.freeze_trunk,
        train: sizes.0,
        valid: sizes.1,
        test: sizes.2,
        data_report,
        updates: summary.updates,
        epochs: summary.epochs_completed,
        stopped_early: summary.stopped_early,
        best: summary.best,
        tested,
        seconds: summary.seconds,
        test_scores: predictions.summary(target),
    };
    write_json(&out.join("results.json"), &report)?;
    Ok(TrainedHead { trunk: task.trunk, head: task.head, report, test_predictions: predictions })
}
