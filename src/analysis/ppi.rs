//! Scores of a PPI classifier: the paper's four numbers (accuracy, precision, recall, ROC AUC) for
//! any set of labelled pairs, split by how many of each test pair's proteins the training pairs
//! contain (both, one, none: a model that only learned which proteins occur in positives scores
//! high on the first class and near chance on the last), and the protein index DeepInteract-style
//! baselines need to turn pairs into feature rows.
//!
//! ```
//! use protein_lm::analysis::ppi::summary_by_overlap;
//! use protein_lm::data::ppi::Pair;
//! let pair = |a: &str, b: &str, label| Pair { a: a.into(), b: b.into(), label };
//! let train = [pair("A", "B", 1), pair("C", "D", 0)];
//! let test = [pair("A", "C", 1), pair("A", "X", 0), pair("X", "Y", 1), pair("B", "D", 0)];
//! let labels: Vec<bool> = test.iter().map(|p| p.label == 1).collect();
//! let rows = summary_by_overlap(&train, &test, &labels, &[0.8, 0.7, 0.3, 0.1])?;
//! for (name, summary) in &rows {
//!     println!("{name:>32}: n {} accuracy {:.2}", summary.n, summary.accuracy);
//! }
//! assert_eq!(rows[1].1.accuracy, 1.0); // both proteins seen in training: both right
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::analysis::metrics::{binary_scores, roc_auc, ZeroDivision};
use crate::data::ppi::{test_overlap, Pair};
use crate::{Error, Result};

/// The paper's PPI metrics on one set of pairs (decision: score ≥ 0.5). NaN where undefined:
/// precision without positive predictions, recall without positives, ROC AUC with one class
/// (JSON has no NaN: written as `null`, read back as NaN). Two summaries are equal when every
/// metric is, or is undefined in both.
///
/// ```
/// use protein_lm::analysis::ppi::{binary_summary, BinarySummary};
/// let s: BinarySummary = binary_summary(&[true, true], &[0.9, 0.1])?;
/// assert_eq!((s.n, s.positives, s.recall), (2, 2, 0.5));
/// // ROC AUC is undefined with one class: NaN, written to JSON as null and read back as NaN.
/// assert!(s.roc_auc.is_nan());
/// let back: BinarySummary = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
/// assert_eq!(back, s);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct BinarySummary {
    pub n: usize,
    pub positives: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub accuracy: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub precision: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub recall: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub roc_auc: f64,
}

impl PartialEq for BinarySummary {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
        (self.n, self.positives) == (other.n, other.positives)
            && same(self.accuracy, other.accuracy)
            && same(self.precision, other.precision)
            && same(self.recall, other.recall)
            && same(self.roc_auc, other.roc_auc)
    }
}

/// A number serde_json wrote as `null` (it writes NaN so) read back as NaN.
pub fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// [`nan_if_null`] for every value of a map of metrics.
pub fn nan_if_null_map<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<std::collections::BTreeMap<String, f64>, D::Error> {
    let map = std::collections::BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
}

impl BinarySummary {
    /// Every metric NaN, for an empty set.
    pub fn empty() -> Self {
        BinarySummary {
            n: 0,
            positives: 0,
            accuracy: f64::NAN,
            precision: f64::NAN,
            recall: f64::NAN,
            roc_auc: f64::NAN,
        }
    }
}

/// Accuracy, precision, recall (of the positive class, at 0.5) and ROC AUC of `scores` =
/// P(positive) against `labels`.
///
/// ```
/// use protein_lm::analysis::ppi::binary_summary;
/// // At 0.5 the predictions are T F T F against labels T T F F: one of each outcome.
/// let s = binary_summary(&[true, true, false, false], &[0.9, 0.2, 0.6, 0.1])?;
/// assert_eq!((s.accuracy, s.precision, s.recall), (0.5, 0.5, 0.5));
/// assert!((s.roc_auc - 0.75).abs() < 1e-12);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn binary_summary(labels: &[bool], scores: &[f64]) -> Result<BinarySummary> {
    if labels.len() != scores.len() {
        return Err(Error::invalid(format!("{} labels but {} scores", labels.len(), scores.len())));
    }
    if labels.is_empty() {
        return Ok(BinarySummary::empty());
    }
    let predicted: Vec<bool> = scores.iter().map(|&s| s >= 0.5).collect();
    let correct = labels.iter().zip(&predicted).filter(|(a, b)| a == b).count();
    let s = binary_scores(labels, &predicted, ZeroDivision::Nan)?;
    Ok(BinarySummary {
        n: labels.len(),
        positives: s.support as usize,
        accuracy: correct as f64 / labels.len() as f64,
        precision: s.precision,
        recall: s.recall,
        roc_auc: roc_auc(labels, scores).unwrap_or(f64::NAN),
    })
}

/// The summary of all test pairs, then of the test pairs whose proteins both, one or none occur in
/// `train` ([`test_overlap`]'s classes), each with its name: `all`, `both proteins seen in
/// training`, `one protein seen`, `no protein seen`. `labels` and `scores` follow `test`.
///
/// ```
/// use protein_lm::analysis::ppi::summary_by_overlap;
/// use protein_lm::data::ppi::Pair;
/// let pair = |a: &str, b: &str, label| Pair { a: a.into(), b: b.into(), label };
/// let train = [pair("A", "B", 1)];
/// let test = [pair("A", "B", 1), pair("A", "X", 0), pair("X", "Y", 1)];
/// let rows = summary_by_overlap(&train, &test, &[true, false, true], &[0.9, 0.2, 0.4])?;
/// let sizes: Vec<(&str, usize)> = rows.iter().map(|(name, s)| (*name, s.n)).collect();
/// assert_eq!(sizes, [("all", 3), ("both proteins seen in training", 1), ("one protein seen", 1), ("no protein seen", 1)]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn summary_by_overlap(
    train: &[Pair],
    test: &[Pair],
    labels: &[bool],
    scores: &[f64],
) -> Result<Vec<(&'static str, BinarySummary)>> {
    if test.len() != labels.len() || test.len() != scores.len() {
        return Err(Error::invalid(format!(
            "{} test pairs, {} labels, {} scores: they must correspond",
            test.len(),
            labels.len(),
            scores.len()
        )));
    }
    let overlap = test_overlap(train, test);
    let subset = |idx: &[usize]| -> Result<BinarySummary> {
        let l: Vec<bool> = idx.iter().map(|&i| labels[i]).collect();
        let s: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
        binary_summary(&l, &s)
    };
    Ok(vec![
        ("all", binary_summary(labels, scores)?),
        ("both proteins seen in training", subset(&overlap.both_seen)?),
        ("one protein seen", subset(&overlap.one_seen)?),
        ("no protein seen", subset(&overlap.none_seen)?),
    ])
}

/// The proteins of several pair sets, each once, in order of first appearance, and every set's
/// pairs as `(row of a, row of b)` into that list: the input of a pair-feature builder such as
/// `pair_features(&protein_vectors, &rows)`.
///
/// ```
/// use protein_lm::analysis::ppi::pair_rows;
/// use protein_lm::data::ppi::Pair;
/// let pair = |a: &str, b: &str| Pair { a: a.into(), b: b.into(), label: 1 };
/// let (train, test) = (vec![pair("A", "B"), pair("B", "C")], vec![pair("C", "A"), pair("D", "B")]);
/// let (ids, rows) = pair_rows(&[&train, &test]);
/// assert_eq!(ids, ["A", "B", "C", "D"]);
/// assert_eq!(rows[1], [(2, 0), (3, 1)]);
/// ```
pub fn pair_rows(sets: &[&[Pair]]) -> (Vec<String>, Vec<Vec<(usize, usize)>>) {
    let mut ids: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut row = |id: &str| -> usize {
        if let Some(&i) = index.get(id) {
            return i;
        }
        ids.push(id.to_string());
        index.insert(id.to_string(), ids.len() - 1);
        ids.len() - 1
    };
    let rows = sets.iter().map(|set| set.iter().map(|p| (row(&p.a), row(&p.b))).collect()).collect();
    (ids, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &str, b: &str, label: u8) -> Pair {
        Pair { a: a.into(), b: b.into(), label }
    }

    #[test]
    fn summary_matches_hand_counts() {
        // Predictions at 0.5: T F T F; labels T T F F → TP 1, FN 1, FP 1, TN 1.
        let s = binary_summary(&[true, true, false, false], &[0.9, 0.2, 0.6, 0.1]).unwrap();
        assert_eq!((s.n, s.positives), (4, 2));
        assert_eq!((s.accuracy, s.precision, s.recall), (0.5, 0.5, 0.5));
        // Ranking: positives 0.9, 0.2 against negatives 0.6, 0.1 → 3 of 4 pairs ordered.
        assert!((s.roc_auc - 0.75).abs() < 1e-12);
        let one_class = binary_summary(&[true, true], &[0.9, 0.1]).unwrap();
        assert!(one_class.roc_auc.is_nan() && one_class.recall == 0.5);
        assert!(binary_summary(&[], &[]).unwrap().accuracy.is_nan());
        assert!(binary_summary(&[true], &[0.1, 0.2]).is_err());
    }

    #[test]
    fn overlap_classes_split_the_test_pairs() {
        let train = vec![pair("A", "B", 1), pair("C", "D", 0)];
        let test = vec![pair("A", "C", 1), pair("A", "X", 0), pair("X", "Y", 1), pair("B", "D", 0)];
        let labels: Vec<bool> = test.iter().map(|p| p.label == 1).collect();
        let scores = [0.8, 0.7, 0.3, 0.1];
        let rows = summary_by_overlap(&train, &test, &labels, &scores).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(names, ["all", "both proteins seen in training", "one protein seen", "no protein seen"]);
        assert_eq!(rows[0].1.n, 4);
        assert_eq!((rows[1].1.n, rows[1].1.accuracy), (2, 1.0));
        assert_eq!((rows[2].1.n, rows[2].1.accuracy), (1, 0.0));
        assert_eq!((rows[3].1.n, rows[3].1.accuracy), (1, 0.0));
        assert!(summary_by_overlap(&train, &test, &labels[..3], &scores[..3]).is_err());
    }

    #[test]
    fn pair_rows_index_each_protein_once_across_sets() {
        let train = vec![pair("A", "B", 1), pair("B", "C", 0)];
        let test = vec![pair("C", "A", 1), pair("D", "B", 0)];
        let (ids, rows) = pair_rows(&[&train, &test]);
        assert_eq!(ids, ["A", "B", "C", "D"]);
        assert_eq!(rows[0], [(0, 1), (1, 2)]);
        assert_eq!(rows[1], [(2, 0), (3, 1)]);
    }
}
