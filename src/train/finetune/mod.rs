//! Fine-tuning: the supervised data both models train on, and each model's procedure.
//!
//! * [`proteinbert`]: the reference's three stages on a ProteinBERT benchmark, and on protein pairs.
//! * [`ppi`]: the pair data, reports and prediction files both models' PPI fine-tunings share.
//! * [`proberta`]: PRoBERTa's one-stage fine-tuning (fairseq `sentence_prediction`) on protein
//!   families, protein–protein interactions or a ProteinBERT benchmark.
//!
//! [`SupervisedData`] turns a benchmark or the human Pfam table into train / valid / test examples
//! with model-independent targets; each model then encodes them with its own tokenizer.
//!
//! ```
//! use protein_lm::models::heads::{Level, Target};
//! use protein_lm::train::finetune::{trivial_baseline, DataLimits, SupervisedData};
//! use protein_lm::data::tables::{benchmark, BenchmarkData, BenchmarkRecord, Label};
//! let record = |i: usize| BenchmarkRecord {
//!     sequence: format!("{}{}", if i % 2 == 0 { "MKKLLPTAAAGLLLL" } else { "MSTNPKPQRKTKRNT" }, "A".repeat(i)),
//!     label: Label::Binary(i % 2 == 0),
//!     line: i + 2,
//! };
//! // Signal peptides: a binary benchmark without a valid file.
//! let signalp = BenchmarkData {
//!     spec: benchmark("signalP_binary")?,
//!     train: (0..20).map(record).collect(),
//!     valid: None,
//!     test: (20..26).map(record).collect(),
//!     uppercased: 0,
//! };
//! let data = SupervisedData::from_benchmark(&signalp, &DataLimits::default(), 0)?;
//! assert_eq!((data.level, data.target), (Level::Protein, Target::Binary));
//! // No valid file: a tenth of train held out, stratified.
//! assert_eq!((data.train.len(), data.valid.len(), data.test.len()), (18, 2, 6));
//! assert_eq!(trivial_baseline(&data)?, ("roc_auc", 0.5)); // what a model must beat
//! # Ok::<(), protein_lm::Error>(())
//! ```

pub mod controls;
pub mod head_run;
pub mod head_task;
pub mod ppi;
pub mod proberta;
pub mod proteinbert;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use candle_core::DType;
use serde::{Deserialize, Serialize};

pub use head_run::{finetune_head, HeadData, HeadReport, HeadTraining, TrainedHead, Widths};
pub use head_task::{Batching, Encoded, HeadTask, Padding};
pub use proteinbert::{
    evaluate_by_length, finetune_proteinbert, finetune_proteinbert_ppi, BucketScore, FinetuneConfig, FinetuneReport,
    PpiFinetuneConfig, PpiFinetuneReport, StageConfig,
};

use crate::data::tables::{BenchmarkData, BenchmarkRecord, Label, LabelKind, PfamRecord};
use crate::models::directory::{ModelDir, WEIGHTS_FILE};
use crate::models::heads::{Level, Target};
use crate::models::init::SeededVarMap;
use crate::train::objectives::supervised::TargetValue;
use crate::train::run_dir::RunDir;
use crate::train::trainer::RunSummary;
use crate::{Error, Location, Result, Rng};

/// How much of a data set a run uses, and how validation is held out when there is no valid file.
/// Both fine-tuning configs carry it flattened (`max_train`, …, `valid_fraction` at their top level).
///
/// ```
/// use protein_lm::train::finetune::{DataLimits, SupervisedData};
/// use protein_lm::data::tables::{benchmark, BenchmarkData, BenchmarkRecord, Label};
/// let record = |i: usize| BenchmarkRecord {
///     sequence: format!("{}{}", if i % 2 == 0 { "MKKLLPTAAAGLLLL" } else { "MSTNPKPQRKTKRNT" }, "A".repeat(i)),
///     label: Label::Binary(i % 2 == 0),
///     line: i + 2,
/// };
/// // Signal peptides: a binary benchmark without a valid file.
/// let signalp = BenchmarkData {
///     spec: benchmark("signalP_binary")?,
///     train: (0..20).map(record).collect(),
///     valid: None,
///     test: (20..26).map(record).collect(),
///     uppercased: 0,
/// };
/// // A seeded sample of each split, for the tiny and demo scales.
/// let limits = DataLimits { max_train: Some(8), max_test: Some(3), ..DataLimits::default() };
/// let data = SupervisedData::from_benchmark(&signalp, &limits, 0)?;
/// assert_eq!((data.train.len(), data.valid.len(), data.test.len()), (8, 2, 3));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataLimits {
    /// Keep at most this many examples of each split (a seeded sample), for small scales.
    #[serde(default)]
    pub max_train: Option<usize>,
    #[serde(default)]
    pub max_valid: Option<usize>,
    #[serde(default)]
    pub max_test: Option<usize>,
    /// Held-out share of train (stratified) when the data have no valid split.
    pub valid_fraction: f64,
}

impl Default for DataLimits {
    /// Every example of each split; a tenth of train held out when there is no valid split.
    fn default() -> Self {
        Self { max_train: None, max_valid: None, max_test: None, valid_fraction: 0.1 }
    }
}

impl DataLimits {
    pub(crate) fn check(&self, c: &mut crate::config::Checks) {
        for (key, max) in [("max_train", self.max_train), ("max_valid", self.max_valid), ("max_test", self.max_test)] {
            if let Some(n) = max {
                c.at_least(key, n, 1);
            }
        }
        c.within("valid_fraction", self.valid_fraction, 0.0, 1.0, false, true);
    }
}

/// A protein with its target, model-independent.
///
/// ```
/// use protein_lm::train::finetune::Example;
/// use protein_lm::train::objectives::supervised::TargetValue;
/// // A fluorescence measurement of one GFP variant.
/// let example = Example { id: "train:2".into(), sequence: "MSKGEELFTGVVPILVELDGDVNGHKF".into(), target: TargetValue::Numeric(3.72) };
/// assert_eq!(example.target, TargetValue::Numeric(3.72));
/// ```
#[derive(Debug, Clone)]
pub struct Example {
    /// Accession, or `split:line` of a benchmark CSV (for prediction files).
    pub id: String,
    pub sequence: String,
    pub target: TargetValue,
}

/// A benchmark's splits in model terms, with the label names of a categorical target.
///
/// ```
/// use protein_lm::data::tables::{benchmark, BenchmarkData, BenchmarkRecord, Label};
/// use protein_lm::models::heads::Target;
/// use protein_lm::train::finetune::{DataLimits, SupervisedData};
/// use protein_lm::train::objectives::supervised::TargetValue;
/// let record = |label: &str, line| BenchmarkRecord { sequence: "MKV".repeat(line), label: Label::Category(label.into()), line };
/// // Fold classes: the class names are collected over every split and sorted.
/// let scop = BenchmarkData {
///     spec: benchmark("scop")?,
///     train: vec![record("c", 2), record("a", 3), record("c", 4)],
///     valid: None,
///     test: vec![record("b", 2)],
///     uppercased: 0,
/// };
/// let data = SupervisedData::from_benchmark(&scop, &DataLimits { valid_fraction: 0.3, ..DataLimits::default() }, 0)?;
/// assert_eq!(data.labels, ["a", "b", "c"]);
/// assert_eq!(data.target, Target::Categorical { classes: 3 });
/// assert_eq!(data.test[0].target, TargetValue::Class(1));
/// assert_eq!(data.test[0].id, "test:2"); // split and CSV line, for prediction files
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SupervisedData {
    pub level: Level,
    pub target: Target,
    pub labels: Vec<String>,
    pub train: Vec<Example>,
    pub valid: Vec<Example>,
    pub test: Vec<Example>,
    /// What was removed and why (duplicates, invalid rows).
    pub report: BTreeMap<String, usize>,
}

/// At most `max` of `items` (a seeded sample, in their original order).
pub(crate) fn sample_items<T: Clone>(items: Vec<T>, max: Option<usize>, rng: &mut Rng) -> Vec<T> {
    match max {
        Some(m) if m < items.len() => {
            let mut keep = rng.sample_without_replacement(items.len(), m);
            keep.sort_unstable();
            keep.into_iter().map(|i| items[i].clone()).collect()
        }
        _ => items,
    }
}

impl SupervisedData {
    /// Typed records → examples; the label set of a categorical benchmark is the union over all
    /// splits, sorted (the reference's `unique_labels`).
    pub fn from_benchmark(data: &BenchmarkData, limits: &DataLimits, seed: u64) -> Result<Self> {
        let spec = data.spec;
        let mut report = BTreeMap::new();
        if data.uppercased > 0 {
            report.insert("sequences with lowercase letters, read as upper case".to_string(), data.uppercased);
        }
        let mut dedup = |records: &[BenchmarkRecord], split: &str| -> Vec<BenchmarkRecord> {
            let mut seen = BTreeSet::new();
            let mut out = Vec::new();
            for r in records {
                if seen.insert((r.sequence.clone(), format!("{:?}", r.label))) {
                    out.push(r.clone());
                } else {
                    *report.entry(format!("{split}: duplicate rows removed")).or_insert(0) += 1;
                }
            }
            out
        };
        let train = dedup(&data.train, "train");
        let valid = data.valid.as_ref().map(|v| dedup(v, "valid"));
        let test = dedup(&data.test, "test");
        let mut names = BTreeSet::new();
        let mut classes = 0usize;
        if spec.kind == LabelKind::Categorical {
            for r in train.iter().chain(valid.iter().flatten()).chain(&test) {
                match &r.label {
                    Label::Category(c) => {
                        names.insert(c.clone());
                    }
                    Label::PerResidue(v) => v.iter().for_each(|&c| classes = classes.max(c as usize + 1)),
                    _ => {}
                }
            }
        }
        let labels: Vec<String> =
            if spec.per_residue { (0..classes).map(|c| c.to_string()).collect() } else { names.into_iter().collect() };
        let index: HashMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
        // The CSV reader has checked every per-residue label against its sequence (file and line).
        let convert = |r: &BenchmarkRecord, split: &str| -> Example {
            let target = match &r.label {
                Label::Binary(b) => TargetValue::Binary(*b),
                Label::Numeric(x) => TargetValue::Numeric(*x as f32),
                Label::Category(c) => TargetValue::Class(index[c.as_str()]),
                Label::PerResidue(v) => TargetValue::PerResidue(v.iter().map(|&c| c as u32).collect()),
            };
            Example { id: format!("{split}:{}", r.line), sequence: r.sequence.clone(), target }
        };
        let mut train: Vec<Example> = train.iter().map(|r| convert(r, "train")).collect();
        let mut rng = Rng::new(seed).fork(crate::train::streams::SPLIT);
        let valid: Vec<Example> = match valid {
            Some(v) => v.iter().map(|r| convert(r, "valid")).collect(),
            None => {
                let (kept, held) = stratified_holdout_like_sklearn(&train, limits.valid_fraction, &mut rng);
                let held_out: Vec<Example> = held.iter().map(|&i| train[i].clone()).collect();
                train = kept.iter().map(|&i| train[i].clone()).collect();
                report.insert("valid: held out of train (stratified)".into(), held_out.len());
                held_out
            }
        };
        let test: Vec<Example> = test.iter().map(|r| convert(r, "test")).collect();
        let target = match spec.kind {
            LabelKind::Binary => Target::Binary,
            LabelKind::Numeric => Target::Numeric,
            LabelKind::Categorical => Target::Categorical { classes: labels.len() },
        };
        let (train, valid, test) = (
            sample_items(train, limits.max_train, &mut rng),
            sample_items(valid, limits.max_valid, &mut rng),
            sample_items(test, limits.max_test, &mut rng),
        );
        Ok(Self {
            level: if spec.per_residue { Level::Residue } else { Level::Protein },
            target,
            labels,
            train,
            valid,
            test,
            report,
        })
    }
}

/// Examples grouped by stratum (binary / class label; numeric and per-residue targets form one).
fn strata(examples: &[Example]) -> BTreeMap<String, Vec<usize>> {
    let mut strata: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        let key = match &e.target {
            TargetValue::Binary(b) => format!("b{b}"),
            TargetValue::Class(c) => format!("c{c}"),
            _ => String::new(),
        };
        strata.entry(key).or_default().push(i);
    }
    strata
}

/// Indices kept and held out, `round(fraction · size)` of each stratum (binary / class label;
/// numeric and per-residue targets form one stratum). The family splits use it.
pub fn stratified_holdout(examples: &[Example], fraction: f64, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let (mut kept, mut held) = (Vec::new(), Vec::new());
    for (_, mut members) in strata(examples) {
        rng.shuffle(&mut members);
        let n_held = (members.len() as f64 * fraction).round() as usize;
        held.extend_from_slice(&members[..n_held]);
        kept.extend_from_slice(&members[n_held..]);
    }
    kept.sort_unstable();
    held.sort_unstable();
    (kept, held)
}

/// Indices kept and held out with scikit-learn's stratified allocation
/// (`train_test_split(stratify=…, test_size=fraction)`, i.e. `StratifiedShuffleSplit`, which the
/// ProteinBERT demo uses for a benchmark without a valid file): `ceil(fraction · n)` held out in
/// all; each stratum keeps its share of the `n − held` kept examples rounded down, the rest of them
/// going to the strata with the largest remainders (ties: first stratum first, where scikit-learn
/// picks at random); its other members are held out. Which members is our seeded shuffle.
pub fn stratified_holdout_like_sklearn(examples: &[Example], fraction: f64, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let strata = strata(examples);
    let n = examples.len();
    let n_held = ((fraction * n as f64).ceil() as usize).min(n);
    let sizes: Vec<usize> = strata.values().map(Vec::len).collect();
    let kept_per = approximate_mode(&sizes, n - n_held);
    let (mut kept, mut held) = (Vec::new(), Vec::new());
    for ((_, mut members), n_kept) in strata.into_iter().zip(kept_per) {
        rng.shuffle(&mut members);
        let n_held = members.len() - n_kept;
        held.extend_from_slice(&members[..n_held]);
        kept.extend_from_slice(&members[n_held..]);
    }
    kept.sort_unstable();
    held.sort_unstable();
    (kept, held)
}

/// scikit-learn's `_approximate_mode`: `draws` spread over classes of sizes `counts` in proportion,
/// floors first, then one more to each of the largest remainders (ties in class order).
fn approximate_mode(counts: &[usize], draws: usize) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    if total == 0 {
        return vec![0; counts.len()];
    }
    let continuous: Vec<f64> = counts.iter().map(|&c| c as f64 / total as f64 * draws as f64).collect();
    let mut out: Vec<usize> = continuous.iter().map(|c| c.floor() as usize).collect();
    let mut need = draws.saturating_sub(out.iter().sum());
    let mut order: Vec<usize> = (0..counts.len()).collect();
    let remainder = |i: usize| continuous[i] - continuous[i].floor();
    order.sort_by(|&a, &b| remainder(b).total_cmp(&remainder(a)).then(a.cmp(&b)));
    for i in order {
        if need == 0 {
            break;
        }
        if out[i] < counts[i] {
            out[i] += 1;
            need -= 1;
        }
    }
    out
}

/// Multi-class family classification on proteins with exactly one Pfam family (the PRoBERTa
/// paper's task on its 313,214 Swiss-Prot proteins; here the human table): families with fewer
/// than `min_members` proteins are left out (counted), the classes are the remaining family ids in
/// alphabetical order (the reference's sorted `dict_fl.txt`), and each family is split
/// `test_fraction` / `valid_fraction` / rest, stratified, so every family is in training.
///
/// ```
/// use protein_lm::data::tables::PfamRecord;
/// use protein_lm::train::finetune::{family_data, DataLimits};
/// let family = |i: usize| if i == 0 { "PF00001" } else if i % 2 == 0 { "PF00042" } else { "PF00069" };
/// let records: Vec<PfamRecord> = (0..17)
///     .map(|i| PfamRecord { accession: format!("P{i}"), pfam_id: family(i).into(), sequence: "MKV".repeat(i + 1) })
///     .collect();
/// // Families of at least 5 proteins; the singleton family is left out and counted.
/// let data = family_data(&records, 5, 0.2, &DataLimits::default(), 0)?;
/// assert_eq!(data.labels, ["PF00042", "PF00069"]);
/// assert_eq!(data.train.len() + data.valid.len() + data.test.len(), 16);
/// assert_eq!(data.report["proteins of families with fewer than 5 members"], 1);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn family_data(
    records: &[PfamRecord],
    min_members: usize,
    test_fraction: f64,
    limits: &DataLimits,
    seed: u64,
) -> Result<SupervisedData> {
    let mut report = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut unique = Vec::new();
    for r in records {
        if seen.insert((r.sequence.as_str(), r.pfam_id.as_str())) {
            unique.push(r);
        } else {
            *report.entry("duplicate rows removed".to_string()).or_insert(0) += 1;
        }
    }
    let mut members: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &unique {
        *members.entry(r.pfam_id.as_str()).or_default() += 1;
    }
    let labels: Vec<String> = members.iter().filter(|(_, &n)| n >= min_members).map(|(f, _)| f.to_string()).collect();
    if labels.len() < 2 {
        return Err(Error::invalid(format!(
            "family classification needs at least 2 families with {min_members} or more proteins, found {}",
            labels.len()
        )));
    }
    let index: HashMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
    let mut examples = Vec::new();
    for r in &unique {
        match index.get(r.pfam_id.as_str()) {
            Some(&c) => examples.push(Example {
                id: r.accession.clone(),
                sequence: r.sequence.clone(),
                target: TargetValue::Class(c),
            }),
            None => {
                *report.entry(format!("proteins of families with fewer than {min_members} members")).or_insert(0) += 1
            }
        }
    }
    report.insert(format!("families with fewer than {min_members} members"), members.len() - labels.len());
    let mut rng = Rng::new(seed).fork(crate::train::streams::SPLIT);
    let (rest, test) = stratified_holdout(&examples, test_fraction, &mut rng);
    let rest_examples: Vec<Example> = rest.iter().map(|&i| examples[i].clone()).collect();
    // valid_fraction is a share of the whole set, as in 0.8 / 0.1 / 0.1.
    let within = (limits.valid_fraction / (1.0 - test_fraction)).min(1.0);
    let (train, valid) = stratified_holdout(&rest_examples, within, &mut rng);
    let pick = |from: &[Example], idx: &[usize]| -> Vec<Example> { idx.iter().map(|&i| from[i].clone()).collect() };
    let (train, valid, test) = (pick(&rest_examples, &train), pick(&rest_examples, &valid), pick(&examples, &test));
    Ok(SupervisedData {
        level: Level::Protein,
        target: Target::Categorical { classes: labels.len() },
        labels,
        train: sample_items(train, limits.max_train, &mut rng),
        valid: sample_items(valid, limits.max_valid, &mut rng),
        test: sample_items(test, limits.max_test, &mut rng),
        report,
    })
}

/// The test score of the best predictor that ignores the sequence, in the benchmark's metric:
/// a constant score for binary targets (ROC AUC 0.5) and numbers (Spearman 0: a constant ranks
/// nothing), the training set's most frequent class for classes (accuracy; per residue for
/// per-residue targets). The line a fine-tuned model must clear.
///
/// ```
/// use protein_lm::models::heads::{Level, Target};
/// use protein_lm::train::finetune::{trivial_baseline, Example, SupervisedData};
/// use protein_lm::train::objectives::supervised::TargetValue;
/// let example = |c| Example { id: String::new(), sequence: "MKV".into(), target: TargetValue::Class(c) };
/// let data = SupervisedData {
///     level: Level::Protein,
///     target: Target::Categorical { classes: 3 },
///     labels: vec![],
///     train: vec![example(2), example(2), example(0)],
///     valid: vec![],
///     test: vec![example(2), example(0), example(1), example(1)],
///     report: Default::default(),
/// };
/// // Always class 2, the training majority: right on one test protein of four.
/// assert_eq!(trivial_baseline(&data)?, ("accuracy", 0.25));
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn trivial_baseline(data: &SupervisedData) -> Result<(&'static str, f64)> {
    match data.target {
        Target::Binary => Ok(("roc_auc", 0.5)),
        Target::Numeric => Ok(("spearman", 0.0)),
        Target::Categorical { .. } => {
            let classes = |examples: &[Example]| -> Vec<u32> {
                examples
                    .iter()
                    .flat_map(|e| match &e.target {
                        TargetValue::Class(c) => vec![*c],
                        TargetValue::PerResidue(v) => v.clone(),
                        _ => Vec::new(),
                    })
                    .collect()
            };
            let (train, test) = (classes(&data.train), classes(&data.test));
            if train.is_empty() || test.is_empty() {
                return Err(Error::invalid("no class labels in the training or test examples"));
            }
            let (_, accuracy) = crate::analysis::metrics::majority_class_accuracy(&train, &test)?;
            Ok(("accuracy", accuracy))
        }
    }
}

/// The class index of each example of a categorical task (families), in order; an example with
/// another kind of target is an error naming it.
///
/// ```
/// use protein_lm::train::finetune::{class_labels, Example};
/// use protein_lm::train::objectives::supervised::TargetValue;
/// let example = |target| Example { id: "P1".into(), sequence: "MKV".into(), target };
/// assert_eq!(class_labels(&[example(TargetValue::Class(3)), example(TargetValue::Class(0))])?, [3, 0]);
/// // The label vector a logistic-regression probe takes; a numeric target is an error naming the protein.
/// assert!(class_labels(&[example(TargetValue::Numeric(1.0))]).unwrap_err().to_string().contains("P1"));
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn class_labels(examples: &[Example]) -> Result<Vec<usize>> {
    examples
        .iter()
        .map(|e| match e.target {
            TargetValue::Class(c) => Ok(c as usize),
            ref other => Err(Error::invalid(format!("example `{}` has target {other:?}, not a class", e.id))),
        })
        .collect()
}

/// Sets the trunk variables of `vars` from the model directory `dir`. `vars` already holds them
/// (created by loading the trunk through `vars`), and may hold a new head's too: every variable
/// whose name starts with `head_prefix` (e.g. `"head"`) is the head's and keeps its fresh
/// initialisation. Tensors of `dir` the trunk does not use (an LM head, earlier heads) are ignored;
/// a trunk variable missing from `dir` or of another shape is an error naming the weights file.
pub fn load_trunk_weights(vars: &SeededVarMap, dir: &ModelDir, head_prefix: &str) -> Result<()> {
    let weights = dir.path().join(WEIGHTS_FILE);
    let stored = dir.tensors(DType::F32, &candle_core::Device::Cpu)?;
    for (name, var) in vars.named_vars() {
        if name.starts_with(head_prefix) {
            continue;
        }
        let tensor = stored
            .get(&name)
            .ok_or_else(|| Error::data(Location::file(&weights), format!("no tensor `{name}` for the trunk")))?;
        if tensor.dims() != var.dims() {
            return Err(Error::data(
                Location::file(&weights),
                format!("tensor `{name}` has shape {:?}, the config needs {:?}", tensor.dims(), var.dims()),
            ));
        }
        var.set(&tensor.to_device(var.device())?)?;
    }
    Ok(())
}

/// Sets `vars` to the run's best validation weights (`best/`, written by early stopping) and returns
/// their update; `None` leaves the last weights (no early stopping, or no validation). Call it
/// after [`Trainer::run`](crate::train::trainer::Trainer::run) with the run's directory and summary.
pub fn restore_best(
    run: &RunDir,
    summary: &RunSummary,
    vars: &SeededVarMap,
    device: &candle_core::Device,
) -> Result<Option<u64>> {
    let best = run.path().join("best").join(WEIGHTS_FILE);
    let Some((_, update)) = summary.best.filter(|_| best.is_file()) else { return Ok(None) };
    let stored = candle_core::safetensors::load(&best, device)?;
    for (name, var) in vars.named_vars() {
        let tensor =
            stored.get(&name).ok_or_else(|| Error::data(Location::file(&best), format!("no tensor `{name}`")))?;
        var.set(tensor)?;
    }
    Ok(Some(update))
}

/// Writes `value` as pretty JSON to `path`.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value).expect("report serialises"))
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(target: TargetValue) -> Example {
        Example { id: String::new(), sequence: "ACD".into(), target }
    }

    fn data(target: Target, train: Vec<TargetValue>, test: Vec<TargetValue>) -> SupervisedData {
        SupervisedData {
            level: Level::Protein,
            target,
            labels: vec![],
            train: train.into_iter().map(example).collect(),
            valid: vec![],
            test: test.into_iter().map(example).collect(),
            report: BTreeMap::new(),
        }
    }

    #[test]
    fn trivial_baselines_are_the_sequence_blind_scores() -> Result<()> {
        use TargetValue::*;
        // Class 2 is the training majority; it is right on 1 of 4 test proteins.
        let classes = data(
            Target::Categorical { classes: 3 },
            vec![Class(2), Class(2), Class(0)],
            vec![Class(2), Class(0), Class(1), Class(1)],
        );
        assert_eq!(trivial_baseline(&classes)?, ("accuracy", 0.25));
        // Per residue: the majority residue class of train (1), counted over test residues.
        let residues = data(
            Target::Categorical { classes: 3 },
            vec![PerResidue(vec![1, 1, 0])],
            vec![PerResidue(vec![1, 2]), PerResidue(vec![1, 1, 1])],
        );
        assert_eq!(trivial_baseline(&residues)?, ("accuracy", 0.8));
        assert_eq!(trivial_baseline(&data(Target::Binary, vec![Binary(true)], vec![Binary(false)]))?, ("roc_auc", 0.5));
        assert_eq!(
            trivial_baseline(&data(Target::Numeric, vec![Numeric(1.0)], vec![Numeric(2.0)]))?,
            ("spearman", 0.0)
        );
        assert!(trivial_baseline(&data(Target::Categorical { classes: 2 }, vec![], vec![Class(1)])).is_err());
        Ok(())
    }
}
