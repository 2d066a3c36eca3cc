//! Protein–protein interaction data and results, shared by both models' pair fine-tunings
//! (PRoBERTa packs a pair into one input, ProteinBERT encodes its two proteins separately), so that
//! both can be run on exactly the same split and compared through the same files.
//!
//! * [`ppi_data`] (a pair file plus sampled negatives) and [`ppi_split_dir`] (a `protein-lm data
//!   split --pairs` directory) make the [`PairData`] either fine-tuning takes.
//! * [`pair_data_report`] counts labels and the protein overlap of the test pairs with training.
//! * `test_predictions.tsv` (`protein_a, protein_b, label, predicted, score`) is written by
//!   [`write_pair_predictions`] and read by [`read_pair_predictions`]; [`overlap_scores`] gives the
//!   four PPI metrics of the test pairs, all and per overlap class, for `results.json`.
//!
//! ```
//! use protein_lm::data::ppi::Pair;
//! use protein_lm::train::finetune::ppi::{overlap_scores, pair_data_report, PairData};
//! let pair = |a: &str, b: &str, label| Pair { a: a.into(), b: b.into(), label };
//! let data = PairData {
//!     train: vec![pair("A", "B", 1), pair("C", "D", 0)],
//!     valid: vec![],
//!     test: vec![pair("A", "C", 1), pair("A", "X", 0), pair("X", "Y", 1)],
//!     sequences: ["A", "B", "C", "D", "X", "Y"].iter().map(|id| (id.to_string(), "MKV".to_string())).collect(),
//!     report: Default::default(),
//! };
//! let report = pair_data_report(&data);
//! assert_eq!(report["test pairs by proteins seen in training (both, one, none)"], serde_json::json!([1, 1, 1]));
//! // results.json's scores: all test pairs, then each overlap class.
//! let scores = overlap_scores(&data.train, &data.test, &[0.9, 0.2, 0.4])?;
//! assert_eq!((scores[0].class.as_str(), scores[0].scores.accuracy), ("all", 2.0 / 3.0));
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{sample_items, DataLimits};
use crate::analysis::ppi::{summary_by_overlap, BinarySummary};
use crate::data::ppi::{self, NegativeScheme, Pair, PpiDataset};
use crate::data::splits;
use crate::data::Protein;
use crate::error::Location;
use crate::train::trainer::Metrics;
use crate::{Error, Result, Rng};

/// Protein–protein interaction data.
///
/// ```
/// use protein_lm::data::ppi::NegativeScheme;
/// use protein_lm::train::finetune::ppi::PpiOptions;
/// // The paper's Table 3 setting: HIPPIE positives, aggressive negatives, 20 % of the training pairs.
/// let options = PpiOptions {
///     negatives: Some(NegativeScheme::Aggressive),
///     negative_ratio: NegativeScheme::Aggressive.paper_ratio(),
///     fractions: vec![0.8, 0.1, 0.1],
///     train_fraction: 0.2,
///     protein_disjoint: false,
/// };
/// let json = serde_json::to_value(&options).unwrap();
/// assert_eq!(json["negatives"], "aggressive");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpiOptions {
    /// Negatives to sample for a positive-only pair file (HIPPIE); `null` when the file has its own.
    pub negatives: Option<NegativeScheme>,
    /// Negatives per positive (the paper: conservative 411,428 / 189,135 ≈ 2.175, aggressive
    /// 275,402 / 261,143 ≈ 1.055).
    pub negative_ratio: f64,
    /// train / valid / test fractions of the pairs (the paper: 0.8 / 0.1 / 0.1).
    pub fractions: Vec<f64>,
    /// Share of the train and valid splits actually used (the paper's Table 3: 0.2 and 1.0).
    pub train_fraction: f64,
    /// Split proteins instead of pairs, so no test protein occurs in training (not the paper's).
    #[serde(default)]
    pub protein_disjoint: bool,
}

impl PpiOptions {
    /// Range checks of the ratio and fractions, naming the `ppi.` key.
    pub(crate) fn add_checks(&self, c: &mut crate::config::Checks) {
        c.positive("ppi.negative_ratio", self.negative_ratio);
        for (i, f) in self.fractions.iter().enumerate() {
            c.within(&format!("ppi.fractions[{i}]"), *f, 0.0, 1.0, false, false);
        }
        let sum: f64 = self.fractions.iter().sum();
        if self.fractions.len() != 3 || (sum - 1.0).abs() > 1e-6 {
            c.fail(
                "ppi.fractions",
                format_args!("must be three fractions (train, valid, test) summing to 1, not {:?}", self.fractions),
            );
        }
        c.within("ppi.train_fraction", self.train_fraction, 0.0, 1.0, true, false);
    }
}

/// Labelled pairs split for training, with the sequences of their proteins.
///
/// ```
/// use protein_lm::data::ppi::{NegativeScheme, Pair, PpiDataset};
/// use protein_lm::data::Protein;
/// use protein_lm::train::finetune::ppi::{ppi_data, PpiOptions};
/// use protein_lm::train::finetune::DataLimits;
/// // A ring of 40 interacting proteins, and a proteome of 60 to draw conservative negatives from.
/// let ids: Vec<String> = (0..60).map(|i| format!("P{i:02}")).collect();
/// let proteome: Vec<Protein> = ids.iter().map(|id| Protein { id: id.clone(), sequence: "MKVL".into() }).collect();
/// let hippie_like = PpiDataset {
///     pairs: (0..40).map(|i| Pair { a: ids[i].clone(), b: ids[(i + 1) % 40].clone(), label: 1 }).collect(),
///     sequences: ids[..40].iter().map(|id| (id.clone(), "MKVL".to_string())).collect(),
/// };
/// let options = PpiOptions {
///     negatives: Some(NegativeScheme::Conservative),
///     negative_ratio: 2.0,
///     fractions: vec![0.8, 0.1, 0.1],
///     train_fraction: 0.5,
///     protein_disjoint: false,
/// };
/// let data = ppi_data(hippie_like, &options, &proteome, &DataLimits::default(), 3)?;
/// // Every protein of every split has its sequence; a missing one would name its pair.
/// data.check_sequences()?;
/// assert_eq!(data.sequence(&data.test[0].a, || "test pair 1".into())?, "MKVL");
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PairData {
    pub train: Vec<Pair>,
    pub valid: Vec<Pair>,
    pub test: Vec<Pair>,
    pub sequences: BTreeMap<String, String>,
    pub report: BTreeMap<String, usize>,
}

impl PairData {
    /// The sequence of protein `id`; `what` names the pair in the error ("test pair 3").
    pub fn sequence(&self, id: &str, what: impl FnOnce() -> String) -> Result<&str> {
        self.sequences.get(id).map(String::as_str).ok_or_else(|| {
            Error::invalid(format!(
                "{}: no sequence for protein `{id}` among the {} given",
                what(),
                self.sequences.len()
            ))
        })
    }

    /// Every pair's proteins have a sequence; the first that has none is an error naming its split,
    /// index and proteins.
    pub fn check_sequences(&self) -> Result<()> {
        for (split, pairs) in [("train", &self.train), ("valid", &self.valid), ("test", &self.test)] {
            for (i, p) in pairs.iter().enumerate() {
                for id in [&p.a, &p.b] {
                    self.sequence(id, || format!("{split} pair {} ({}, {})", i + 1, p.a, p.b))?;
                }
            }
        }
        Ok(())
    }
}

/// What a pair fine-tuning reports about its data (`data_report` of `results.json`): what making
/// the split did ([`PairData::report`]), positives per split, and the test pairs by how many of
/// their proteins occur in training.
pub fn pair_data_report(d: &PairData) -> serde_json::Value {
    let mut report = serde_json::to_value(&d.report).expect("report serialises");
    for (name, set) in [("train", &d.train), ("valid", &d.valid), ("test", &d.test)] {
        report[format!("{name} positive")] = set.iter().filter(|p| p.label == 1).count().into();
    }
    let overlap = ppi::test_overlap(&d.train, &d.test);
    report["test pairs by proteins seen in training (both, one, none)"] =
        serde_json::to_value(overlap.counts()).expect("counts serialise");
    report["test pairs also in training (either orientation)"] = overlap.pair_in_train.len().into();
    report
}

/// The PPI metrics of one class of test pairs (`all`, `both proteins seen in training`, `one
/// protein seen`, `no protein seen`); undefined metrics are `null` in JSON and NaN here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlapScore {
    pub class: String,
    #[serde(flatten)]
    pub scores: BinarySummary,
}

/// Accuracy, precision, recall and ROC AUC (decision at P ≥ 0.5) of the test pairs, all and by how
/// many of their proteins occur in `train`. `scores` (P(positive)) follow `test`.
pub fn overlap_scores(train: &[Pair], test: &[Pair], scores: &[f64]) -> Result<Vec<OverlapScore>> {
    let labels: Vec<bool> = test.iter().map(|p| p.label == 1).collect();
    Ok(summary_by_overlap(train, test, &labels, scores)?
        .into_iter()
        .map(|(class, scores)| OverlapScore { class: class.to_string(), scores })
        .collect())
}

/// Test metrics (`Metrics`) from JSON, where serde_json wrote an undefined (NaN) one as `null`.
pub(crate) fn nan_metrics<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Metrics, D::Error> {
    let map = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
}

/// Writes `test_predictions.tsv` of a pair task: `protein_a, protein_b, label, predicted, score`,
/// labels and predictions as `positive` / `negative` (decision at P ≥ 0.5), score P(positive).
pub fn write_pair_predictions(path: &Path, pairs: &[Pair], scores: &[f64]) -> Result<()> {
    if pairs.len() != scores.len() {
        return Err(Error::invalid(format!("{} pairs but {} scores", pairs.len(), scores.len())));
    }
    let io = |e| Error::io(path, e);
    let name = |positive: bool| if positive { "positive" } else { "negative" };
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    writeln!(w, "protein_a\tprotein_b\tlabel\tpredicted\tscore").map_err(io)?;
    for (p, &s) in pairs.iter().zip(scores) {
        writeln!(w, "{}\t{}\t{}\t{}\t{s:.6}", p.a, p.b, name(p.label == 1), name(s >= 0.5)).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// PPI data as the paper built it: `data`'s pairs plus sampled negatives (conservative ones from
/// `proteome`), split by `fractions`, then `train_fraction` of train and valid kept. With the same
/// seed, ratio and fractions the split equals `protein-lm data split --negatives …`'s.
///
/// ```
/// use protein_lm::data::ppi::{NegativeScheme, Pair, PpiDataset};
/// use protein_lm::data::Protein;
/// use protein_lm::train::finetune::ppi::{ppi_data, PpiOptions};
/// use protein_lm::train::finetune::DataLimits;
/// // A ring of 40 interacting proteins, and a proteome of 60 to draw conservative negatives from.
/// let ids: Vec<String> = (0..60).map(|i| format!("P{i:02}")).collect();
/// let proteome: Vec<Protein> = ids.iter().map(|id| Protein { id: id.clone(), sequence: "MKVL".into() }).collect();
/// let hippie_like = PpiDataset {
///     pairs: (0..40).map(|i| Pair { a: ids[i].clone(), b: ids[(i + 1) % 40].clone(), label: 1 }).collect(),
///     sequences: ids[..40].iter().map(|id| (id.clone(), "MKVL".to_string())).collect(),
/// };
/// let options = PpiOptions {
///     negatives: Some(NegativeScheme::Conservative),
///     negative_ratio: 2.0,
///     fractions: vec![0.8, 0.1, 0.1],
///     train_fraction: 0.5,
///     protein_disjoint: false,
/// };
/// let data = ppi_data(hippie_like, &options, &proteome, &DataLimits::default(), 3)?;
/// // 40 positives + 80 negatives, split 96 / 12 / 12, then half of train and valid kept.
/// assert_eq!(data.report["negatives sampled"], 80);
/// assert_eq!((data.train.len(), data.valid.len(), data.test.len()), (48, 6, 12));
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn ppi_data(
    mut data: PpiDataset,
    options: &PpiOptions,
    proteome: &[Protein],
    limits: &DataLimits,
    seed: u64,
) -> Result<PairData> {
    let mut report = BTreeMap::from([("pairs read".to_string(), data.pairs.len())]);
    let mut rng = Rng::new(seed);
    if options.negatives.is_some() && data.n_negative() > 0 {
        return Err(Error::invalid(format!(
            "the pair file already has {} negative pairs: set ppi.negatives to null to use them, or give a \
             positive-only file to sample negatives for",
            data.n_negative()
        )));
    }
    if let Some(scheme) = options.negatives {
        let added = ppi::add_negatives(&mut data, scheme, options.negative_ratio, proteome, &mut rng.fork(7))?;
        report.insert("negatives sampled".to_string(), added);
    }
    let parts = if options.protein_disjoint {
        let (parts, dropped) = ppi::protein_disjoint_split(&data.pairs, &options.fractions, &mut rng)?;
        report.insert("pairs across protein-disjoint splits left out".to_string(), dropped.total_dropped());
        parts
    } else {
        splits::random_split(data.pairs.len(), &options.fractions, &mut rng)?
    };
    if parts.len() != 3 {
        return Err(Error::invalid(format!(
            "ppi.fractions must have 3 values (train, valid, test), got {}",
            parts.len()
        )));
    }
    let pick = |idx: &[usize]| -> Vec<Pair> { idx.iter().map(|&i| data.pairs[i].clone()).collect() };
    let mut fraction_rng = rng.fork(crate::train::streams::SPLIT);
    let mut share = |pairs: Vec<Pair>| -> Vec<Pair> {
        let keep = (pairs.len() as f64 * options.train_fraction).round() as usize;
        sample_items(pairs, Some(keep), &mut fraction_rng)
    };
    report.insert("train pairs before train_fraction".to_string(), parts[0].len());
    let (train, valid) = (share(pick(&parts[0])), share(pick(&parts[1])));
    let test = pick(&parts[2]);
    let mut sample_rng = rng.fork(crate::train::streams::SPLIT + 1);
    // The test sample has a stream of its own, so runs that differ only in `train_fraction` or
    // the train/valid caps (Table 3's 20 % and 100 %) are tested on the same pairs.
    let mut test_rng = rng.fork(crate::train::streams::SPLIT + 2);
    let (train, valid, test) = (
        sample_items(train, limits.max_train, &mut sample_rng),
        sample_items(valid, limits.max_valid, &mut sample_rng),
        sample_items(test, limits.max_test, &mut test_rng),
    );
    Ok(PairData { train, valid, test, sequences: data.sequences, report })
}

/// Reads a `protein-lm data split --pairs …` directory: `train.tsv`, `valid.tsv`, `test.tsv` and
/// `sequences.fasta`. A capped test set has a sample stream of its own, as in [`ppi_data`], so runs
/// that differ only in their train/valid caps (two models' configs) are tested on the same pairs.
pub fn ppi_split_dir(dir: &Path, limits: &DataLimits, seed: u64) -> Result<PairData> {
    let mut dictionary = ppi::SequenceDictionary::new();
    dictionary.add_fasta(dir.join("sequences.fasta"))?;
    let mut rng = Rng::new(seed).fork(crate::train::streams::SPLIT + 1);
    let mut test_rng = Rng::new(seed).fork(crate::train::streams::SPLIT + 2);
    let mut sequences = BTreeMap::new();
    let mut read = |name: &str, max: Option<usize>, rng: &mut Rng| -> Result<Vec<Pair>> {
        let path = dir.join(name);
        let (data, _) = PpiDataset::load(&path, &dictionary, ppi::MissingSequence::Error)?;
        sequences.extend(data.sequences);
        Ok(sample_items(data.pairs, max, rng))
    };
    let train = read("train.tsv", limits.max_train, &mut rng)?;
    let valid = read("valid.tsv", limits.max_valid, &mut rng)?;
    let test = read("test.tsv", limits.max_test, &mut test_rng)?;
    Ok(PairData { train, valid, test, sequences, report: BTreeMap::new() })
}

/// The pairs of a PPI run's `test_predictions.tsv` with their labels and P(positive), in file order
/// (PRoBERTa's: the order its `predict` visited them, by length; ProteinBERT's: the split's).
/// Errors name the file and line.
///
/// ```
/// use protein_lm::data::ppi::Pair;
/// use protein_lm::train::finetune::ppi::{read_pair_predictions, write_pair_predictions};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("test_predictions.tsv");
/// let pairs = [Pair { a: "A".into(), b: "B".into(), label: 1 }, Pair { a: "A".into(), b: "C".into(), label: 0 }];
/// write_pair_predictions(&path, &pairs, &[0.9, 0.3])?;
/// // A run's predictions, e.g. for a ROC curve of two models on the same test pairs.
/// let read = read_pair_predictions(&path)?;
/// assert_eq!((read[0].0.clone(), read[1].1), (pairs[0].clone(), 0.3));
/// // In a notebook: read_pair_predictions(&results.proberta_ppi(NegativeScheme::Conservative, 0.2).dir.join("test_predictions.tsv"))
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_pair_predictions(path: &Path) -> Result<Vec<(Pair, f64)>> {
    let (is_pair, rows) = super::proberta::read_test_predictions(path)?;
    if !is_pair {
        return Err(Error::data(
            Location::line(path, 1),
            "not the predictions of a pair task (header protein_a, protein_b, label, predicted, score)",
        ));
    }
    rows.into_iter()
        .map(|(line, row)| {
            let bad = |what: String| Error::data(Location::line(path, line), what);
            let label = match row.label.as_str() {
                "positive" | "1" => 1,
                "negative" | "0" => 0,
                other => return Err(bad(format!("label `{other}` is neither positive nor negative"))),
            };
            let score = row.score.ok_or_else(|| bad("no score".to_string()))?;
            let (a, b) = row.name.split_once('\t').expect("pair rows are named `a<TAB>b`");
            Ok((Pair { a: a.to_string(), b: b.to_string(), label }, score))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppi_data_samples_negatives_splits_and_keeps_a_share_of_training() -> Result<()> {
        // A ring of 40 proteins: 40 positives; conservative negatives from a 60-protein proteome.
        let ids: Vec<String> = (0..60).map(|i| format!("P{i:02}")).collect();
        let positives: Vec<Pair> =
            (0..40).map(|i| Pair { a: ids[i].clone(), b: ids[(i + 1) % 40].clone(), label: 1 }).collect();
        let proteome: Vec<Protein> = ids.iter().map(|id| Protein { id: id.clone(), sequence: "ACDE".into() }).collect();
        let data = || PpiDataset {
            pairs: positives.clone(),
            sequences: ids[..40].iter().map(|id| (id.clone(), "ACDE".to_string())).collect(),
        };
        let options = PpiOptions {
            negatives: Some(NegativeScheme::Conservative),
            negative_ratio: 2.0,
            fractions: vec![0.8, 0.1, 0.1],
            train_fraction: 0.5,
            protein_disjoint: false,
        };
        let limits = DataLimits { max_train: None, max_valid: None, max_test: None, valid_fraction: 0.1 };
        let d = ppi_data(data(), &options, &proteome, &limits, 3)?;
        assert_eq!(d.report["negatives sampled"], 80);
        assert_eq!(d.report["train pairs before train_fraction"], 96);
        assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (48, 6, 12));
        let known: std::collections::HashSet<(&str, &str)> = positives.iter().map(Pair::unordered).collect();
        for p in d.train.iter().chain(&d.valid).chain(&d.test) {
            assert!(d.sequences.contains_key(&p.a) && d.sequences.contains_key(&p.b), "no sequence for {p:?}");
            assert_eq!(p.label == 1, known.contains(&p.unordered()), "{p:?}");
        }
        // Seeded: the same split again, another seed another one.
        let again = ppi_data(data(), &options, &proteome, &limits, 3)?;
        assert_eq!(again.train, d.train);
        let other = ppi_data(data(), &options, &proteome, &limits, 4)?;
        assert_ne!(other.train, d.train);
        // Capped test sets do not depend on the training share or the train/valid caps.
        let capped = DataLimits { max_train: Some(30), max_valid: Some(3), max_test: Some(8), valid_fraction: 0.1 };
        let a = ppi_data(data(), &options, &proteome, &capped, 3)?;
        let b = ppi_data(data(), &PpiOptions { train_fraction: 1.0, ..options.clone() }, &proteome, &capped, 3)?;
        let c = ppi_data(data(), &options, &proteome, &DataLimits { max_train: Some(10), ..capped.clone() }, 3)?;
        assert_eq!(a.test.len(), 8);
        assert_eq!(a.test, b.test);
        assert_eq!(a.test, c.test);
        Ok(())
    }

    #[test]
    fn pair_predictions_round_trip_and_overlap_scores_split_the_test_pairs() -> Result<()> {
        let pair = |a: &str, b: &str, label: u8| Pair { a: a.into(), b: b.into(), label };
        let train = vec![pair("A", "B", 1), pair("C", "D", 0)];
        let test = vec![pair("A", "C", 1), pair("A", "X", 0), pair("X", "Y", 1), pair("B", "D", 0)];
        let scores = [0.9, 0.2, 0.4, 0.6];
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("test_predictions.tsv");
        write_pair_predictions(&path, &test, &scores)?;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("protein_a\tprotein_b\tlabel\tpredicted\tscore\nA\tC\tpositive\tpositive\t0.900000\n"));
        let read = read_pair_predictions(&path)?;
        assert_eq!(read.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), test);
        assert_eq!(read.iter().map(|(_, s)| *s).collect::<Vec<_>>(), scores);
        assert!(write_pair_predictions(&path, &test, &scores[..2]).is_err());

        let by_class = overlap_scores(&train, &test, &scores)?;
        let names: Vec<&str> = by_class.iter().map(|s| s.class.as_str()).collect();
        assert_eq!(names, ["all", "both proteins seen in training", "one protein seen", "no protein seen"]);
        assert_eq!(by_class.iter().map(|s| s.scores.n).collect::<Vec<_>>(), [4, 2, 1, 1]);
        assert_eq!((by_class[0].scores.accuracy, by_class[1].scores.accuracy), (0.5, 0.5));
        // One class only in a subset: ROC AUC undefined, `null` in JSON and NaN again when read.
        let json = serde_json::to_string(&by_class).unwrap();
        assert!(json.contains("\"roc_auc\":null"), "{json}");
        let back: Vec<OverlapScore> = serde_json::from_str(&json).unwrap();
        assert!(back[2].scores.roc_auc.is_nan() && back[0].scores.roc_auc == by_class[0].scores.roc_auc);

        let data = PairData {
            train: train.clone(),
            valid: vec![],
            test: vec![pair("A", "Q", 1)],
            sequences: ["A", "B", "C", "D"].iter().map(|id| (id.to_string(), "ACDE".to_string())).collect(),
            report: BTreeMap::new(),
        };
        let err = data.check_sequences().unwrap_err().to_string();
        assert!(err.contains("test pair 1 (A, Q)") && err.contains("no sequence for protein `Q`"), "{err}");
        Ok(())
    }
}
