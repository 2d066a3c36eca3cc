//! Classification metrics, each equal to scikit-learn 1.9's on the same inputs to 1e-12 (fixtures in
//! `tests/fixtures/analysis/metrics_*.json`, made by `make_metrics_fixtures.py` beside them).
//!
//! | here | scikit-learn | options |
//! |---|---|---|
//! | [`roc_curve`] | `metrics.roc_curve` | `drop_intermediate=True`; first threshold `+inf` (sklearn ≥ 1.3) |
//! | [`roc_curve_with`] | `metrics.roc_curve` | `sample_weight`, `drop_intermediate` either way |
//! | [`roc_auc`], [`roc_auc_weighted`] | `metrics.roc_auc_score` | binary, `max_fpr=None` |
//! | [`precision_recall_curve`] | `metrics.precision_recall_curve` | `drop_intermediate=False` (sklearn's default) |
//! | [`precision_recall_curve_with`] | `metrics.precision_recall_curve` | `sample_weight`, `drop_intermediate` |
//! | [`average_precision`], [`average_precision_weighted`] | `metrics.average_precision_score` | binary; step-wise sum `Σ (Rₙ − Rₙ₋₁) Pₙ`, not the trapezoid |
//! | [`accuracy`] | `metrics.accuracy_score` | `normalize=True` |
//! | [`confusion_matrix`] | `metrics.confusion_matrix` | `labels=range(n_classes)`: rows true, columns predicted |
//! | [`classification_report`] | `metrics.precision_recall_fscore_support` | `average=None`, `"macro"`, `"weighted"`; `zero_division` |
//! | [`binary_scores`] | `precision_score`, `recall_score`, `f1_score` | `average="binary"`, `pos_label=True` |
//!
//! Scores must be finite (sklearn rejects NaN and ±inf in `y_score` too); lengths must agree; inputs
//! must not be empty. Every such problem is an [`Error::InvalidArgument`], never a panic.
//!
//! Where sklearn only warns, this module errors: ROC AUC with one class absent (sklearn 1.9 warns
//! `UndefinedMetricWarning` and returns NaN; earlier versions raised `ValueError`) and average
//! precision without positives. [`roc_curve`] with one class absent follows sklearn: that axis is
//! all NaN.
//!
//! Ties: samples with equal scores form one threshold, as in sklearn, so the ROC curve goes diagonally
//! through a tied group and AUC counts a tied (positive, negative) pair as one half.
//!
//! linfa's ROC (`linfa::metrics::BinaryClassification::roc` on `&[Pr]`) is not used: its scores are
//! `f32` probabilities (`Pr`), scores below 0 are silently dropped, scores within 1e-10 of each other
//! are merged into one threshold, and it walks the thresholds upwards, returning the curve flipped
//! relative to sklearn's (from (1, 1) towards the origin, as (tp, fp) pairs, without the `+inf`
//! threshold). Its AUC therefore differs from sklearn's in the last `f32` digits and on such inputs.
//!
//! Speed: ROC AUC is one sort (`O(n log n)`, unstable sort of (score, weight, label) records on
//! `f64::total_cmp`) and one pass over them; no curve is materialised. 10⁶ items: 66–84 ms
//! against 380–450 ms for `sklearn.metrics.roc_auc_score` (medians, `cargo bench --bench metrics` and its
//! peer, one loaded 2-core machine).
//!
//! ```
//! use protein_lm::analysis::metrics::{accuracy, average_precision, roc_auc};
//! let labels = [false, false, true, true];
//! let scores = [0.1, 0.4, 0.35, 0.8];
//! // scikit-learn's documentation example: 3 of the 4 (positive, negative) pairs are ordered.
//! assert!((roc_auc(&labels, &scores)? - 0.75).abs() < 1e-12);
//! assert!((average_precision(&labels, &scores)? - 0.8333333333333333).abs() < 1e-12);
//! assert_eq!(accuracy(&[0, 1, 2, 2], &[0, 1, 1, 2])?, 0.75);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use ndarray::Array2;

use crate::error::{Error, Result};

/// A ROC curve as sklearn returns it: `fpr` and `tpr` rise from 0 to 1, `thresholds` fall from `+inf`.
/// Point `i` is the rate when predicting positive for `score >= thresholds[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RocCurve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// A precision-recall curve as sklearn returns it: `precision` and `recall` have one more entry than
/// `thresholds` (the last point is precision 1, recall 0); thresholds rise, recall falls.
#[derive(Debug, Clone, PartialEq)]
pub struct PrCurve {
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub thresholds: Vec<f64>,
}

fn check_scores(n_labels: usize, scores: &[f64], weights: Option<&[f64]>) -> Result<()> {
    if scores.is_empty() {
        return Err(Error::invalid("empty input: no scores"));
    }
    if n_labels != scores.len() {
        return Err(Error::invalid(format!("{} labels but {} scores", n_labels, scores.len())));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::invalid(format!("score {i} is {} (scores must be finite)", scores[i])));
    }
    if let Some(w) = weights {
        if w.len() != scores.len() {
            return Err(Error::invalid(format!("{} weights but {} scores", w.len(), scores.len())));
        }
        if let Some(i) = w.iter().position(|w| !w.is_finite() || *w < 0.0) {
            return Err(Error::invalid(format!("weight {i} is {} (weights must be finite and >= 0)", w[i])));
        }
        if w.iter().all(|&w| w == 0.0) {
            return Err(Error::invalid("all weights are zero"));
        }
    }
    Ok(())
}

/// Indices sorted by score, descending; ties keep input order (sklearn's stable sort), which only
/// matters for the rounding of weighted sums.
fn order_desc(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx
}

/// sklearn's `confusion_matrix_at_thresholds`: cumulative false and true positives at each distinct
/// score, highest first, and those scores.
fn clf_curve(labels: &[bool], scores: &[f64], weights: Option<&[f64]>) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut order = order_desc(scores);
    // sklearn drops zero-weight samples first, so they add no threshold.
    if let Some(w) = weights {
        order.retain(|&i| w[i] != 0.0);
    }
    let (mut fps, mut tps, mut thr) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    for (k, &i) in order.iter().enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        if labels[i] {
            tp += w;
        } else if weights.is_some() {
            fp += w;
        }
        let last = k + 1 == order.len() || scores[order[k + 1]] != scores[i];
        if last {
            tps.push(tp);
            // Unweighted, sklearn counts false positives as `1 + index - tps`.
            fps.push(if weights.is_some() { fp } else { (k + 1) as f64 - tp });
            thr.push(scores[i]);
        }
    }
    (fps, tps, thr)
}

/// [`roc_curve_with`] unweighted and with `drop_intermediate = true`, sklearn's defaults.
///
/// ```
/// use protein_lm::analysis::metrics::roc_curve;
/// let curve = roc_curve(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8])?;
/// assert_eq!(curve.fpr, [0.0, 0.0, 0.5, 0.5, 1.0]);
/// assert_eq!(curve.tpr, [0.0, 0.5, 0.5, 1.0, 1.0]);
/// assert_eq!(curve.thresholds, [f64::INFINITY, 0.8, 0.4, 0.35, 0.1]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn roc_curve(labels: &[bool], scores: &[f64]) -> Result<RocCurve> {
    roc_curve_with(labels, scores, None, true)
}

/// `sklearn.metrics.roc_curve(labels, scores, sample_weight=weights, drop_intermediate=...)`.
/// Zero-weight samples are dropped first, as sklearn does. `drop_intermediate` removes points collinear with their neighbours (sklearn's test: a nonzero
/// second difference of fps or tps keeps the point). When a class is absent its rate is NaN throughout,
/// as in sklearn (which warns).
pub fn roc_curve_with(
    labels: &[bool],
    scores: &[f64],
    weights: Option<&[f64]>,
    drop_intermediate: bool,
) -> Result<RocCurve> {
    check_scores(labels.len(), scores, weights)?;
    let (mut fps, mut tps, mut thr) = clf_curve(labels, scores, weights);
    if drop_intermediate && fps.len() > 2 {
        let n = fps.len();
        let second = |v: &[f64], i: usize| (v[i + 1] - v[i]) - (v[i] - v[i - 1]);
        let keep: Vec<usize> =
            (0..n).filter(|&i| i == 0 || i == n - 1 || second(&fps, i) != 0.0 || second(&tps, i) != 0.0).collect();
        fps = keep.iter().map(|&i| fps[i]).collect();
        tps = keep.iter().map(|&i| tps[i]).collect();
        thr = keep.iter().map(|&i| thr[i]).collect();
    }
    fps.insert(0, 0.0);
    tps.insert(0, 0.0);
    thr.insert(0, f64::INFINITY);
    let rate = |v: Vec<f64>| {
        let last = *v.last().unwrap();
        if last <= 0.0 {
            vec![f64::NAN; v.len()]
        } else {
            v.iter().map(|x| x / last).collect()
        }
    };
    Ok(RocCurve { fpr: rate(fps), tpr: rate(tps), thresholds: thr })
}

/// `sklearn.metrics.roc_auc_score(labels, scores)` for binary labels: the trapezoid area under the ROC
/// curve, tied scores counting one half. Errors when all labels are equal (sklearn 1.9 returns NaN
/// with a warning). One sort and one pass.
///
/// ```
/// use protein_lm::analysis::metrics::roc_auc;
/// assert!((roc_auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8])? - 0.75).abs() < 1e-12);
/// // A tied (positive, negative) pair counts one half.
/// assert_eq!(roc_auc(&[false, true], &[0.5, 0.5])?, 0.5);
/// assert!(roc_auc(&[true, true], &[0.1, 0.9]).is_err()); // one class: undefined
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Result<f64> {
    auc_impl(labels, scores, None)
}

/// [`roc_auc`] with `sample_weight`. Errors also when one class has zero total weight.
pub fn roc_auc_weighted(labels: &[bool], scores: &[f64], weights: &[f64]) -> Result<f64> {
    auc_impl(labels, scores, Some(weights))
}

fn auc_impl(labels: &[bool], scores: &[f64], weights: Option<&[f64]>) -> Result<f64> {
    check_scores(labels.len(), scores, weights)?;
    let n_pos = labels.iter().filter(|&&l| l).count();
    if n_pos == 0 || n_pos == labels.len() {
        return Err(Error::invalid(format!(
            "ROC AUC is undefined when only one class is present ({} positives of {})",
            n_pos,
            labels.len()
        )));
    }
    // Sort (score, weight, label) records rather than indices: contiguous, so a cache-friendly sort.
    // The order within tied scores does not matter: a tied group is summed before it is used.
    let mut items: Vec<(f64, f64, bool)> =
        (0..scores.len()).map(|i| (scores[i], weights.map_or(1.0, |w| w[i]), labels[i])).collect();
    items.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    // Trapezoids between consecutive distinct thresholds, in unnormalised counts.
    let (mut tp, mut fp, mut tp_prev, mut fp_prev, mut area) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for k in 0..items.len() {
        let (score, w, label) = items[k];
        if label {
            tp += w;
        } else {
            fp += w;
        }
        if k + 1 == items.len() || items[k + 1].0 != score {
            area += (fp - fp_prev) * (tp + tp_prev);
            tp_prev = tp;
            fp_prev = fp;
        }
    }
    if tp <= 0.0 || fp <= 0.0 {
        return Err(Error::invalid("ROC AUC is undefined when one class has zero total weight"));
    }
    Ok(area / (2.0 * tp * fp))
}

/// [`precision_recall_curve_with`] unweighted, all thresholds kept (sklearn's defaults).
pub fn precision_recall_curve(labels: &[bool], scores: &[f64]) -> Result<PrCurve> {
    precision_recall_curve_with(labels, scores, None, false)
}

/// `sklearn.metrics.precision_recall_curve(labels, scores, sample_weight=weights,
/// drop_intermediate=...)`. Precision with no predicted positives (possible only with zero weights) is
/// 0; without positives recall is 1 throughout, both as in sklearn.
pub fn precision_recall_curve_with(
    labels: &[bool],
    scores: &[f64],
    weights: Option<&[f64]>,
    drop_intermediate: bool,
) -> Result<PrCurve> {
    check_scores(labels.len(), scores, weights)?;
    let (mut fps, mut tps, mut thr) = clf_curve(labels, scores, weights);
    if drop_intermediate && fps.len() > 2 {
        let n = fps.len();
        let keep: Vec<usize> =
            (0..n).filter(|&i| i == 0 || i == n - 1 || tps[i] != tps[i - 1] || tps[i + 1] != tps[i]).collect();
        fps = keep.iter().map(|&i| fps[i]).collect();
        tps = keep.iter().map(|&i| tps[i]).collect();
        thr = keep.iter().map(|&i| thr[i]).collect();
    }
    let total = *tps.last().unwrap();
    let mut precision: Vec<f64> = tps
        .iter()
        .zip(&fps)
        .map(|(&t, &f)| {
            let ps = t + f;
            if ps != 0.0 {
                t / ps
            } else {
                0.0
            }
        })
        .rev()
        .collect();
    let mut recall: Vec<f64> = tps.iter().map(|&t| if total == 0.0 { 1.0 } else { t / total }).rev().collect();
    precision.push(1.0);
    recall.push(0.0);
    thr.reverse();
    Ok(PrCurve { precision, recall, thresholds: thr })
}

/// `sklearn.metrics.average_precision_score(labels, scores)`: `Σₙ (Rₙ − Rₙ₋₁) Pₙ` over thresholds,
/// no interpolation. Errors when there is no positive (sklearn warns and returns 0 or a meaningless
/// value then).
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Result<f64> {
    ap_impl(labels, scores, None)
}

/// [`average_precision`] with `sample_weight`.
pub fn average_precision_weighted(labels: &[bool], scores: &[f64], weights: &[f64]) -> Result<f64> {
    ap_impl(labels, scores, Some(weights))
}

fn ap_impl(labels: &[bool], scores: &[f64], weights: Option<&[f64]>) -> Result<f64> {
    check_scores(labels.len(), scores, weights)?;
    let pos: f64 = (0..labels.len()).filter(|&i| labels[i]).map(|i| weights.map_or(1.0, |w| w[i])).sum();
    if pos <= 0.0 {
        return Err(Error::invalid("average precision is undefined without positive labels"));
    }
    let c = precision_recall_curve_with(labels, scores, weights, false)?;
    let s: f64 = (0..c.recall.len() - 1).map(|i| (c.recall[i + 1] - c.recall[i]) * c.precision[i]).sum();
    Ok((-s).max(0.0))
}

fn check_classes(y_true: &[usize], y_pred: &[usize], n_classes: Option<usize>) -> Result<()> {
    if y_true.is_empty() {
        return Err(Error::invalid("empty input: no labels"));
    }
    if y_true.len() != y_pred.len() {
        return Err(Error::invalid(format!("{} true labels but {} predictions", y_true.len(), y_pred.len())));
    }
    if let Some(n) = n_classes {
        if n == 0 {
            return Err(Error::invalid("n_classes must be at least 1"));
        }
        for (what, ys) in [("true label", y_true), ("prediction", y_pred)] {
            if let Some(i) = ys.iter().position(|&y| y >= n) {
                return Err(Error::invalid(format!("{what} {i} is class {} but n_classes is {n}", ys[i])));
            }
        }
    }
    Ok(())
}

/// `sklearn.metrics.accuracy_score(y_true, y_pred)`: the fraction of exact matches.
pub fn accuracy<T: PartialEq>(y_true: &[T], y_pred: &[T]) -> Result<f64> {
    if y_true.is_empty() {
        return Err(Error::invalid("empty input: no labels"));
    }
    if y_true.len() != y_pred.len() {
        return Err(Error::invalid(format!("{} true labels but {} predictions", y_true.len(), y_pred.len())));
    }
    let hits = y_true.iter().zip(y_pred).filter(|(a, b)| a == b).count();
    Ok(hits as f64 / y_true.len() as f64)
}

/// Test accuracy of always predicting the most frequent training label (ties: the smallest label),
/// scikit-learn's `DummyClassifier(strategy="most_frequent")`: the floor a classifier must beat.
/// Returns the label and the accuracy.
///
/// ```
/// use protein_lm::analysis::metrics::majority_class_accuracy;
/// let (label, accuracy) = majority_class_accuracy(&["a", "a", "b"], &["a", "b", "b", "a"])?;
/// assert_eq!((label, accuracy), ("a", 0.5));
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn majority_class_accuracy<T: Ord + Clone>(train: &[T], test: &[T]) -> Result<(T, f64)> {
    if train.is_empty() || test.is_empty() {
        return Err(Error::invalid(format!(
            "majority class: {} training and {} test labels (need both)",
            train.len(),
            test.len()
        )));
    }
    let mut counts: std::collections::BTreeMap<&T, usize> = std::collections::BTreeMap::new();
    for t in train {
        *counts.entry(t).or_default() += 1;
    }
    let mut best: Option<(&T, usize)> = None;
    for (label, n) in counts {
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((label, n));
        }
    }
    let label = best.expect("train is not empty").0.clone();
    let hits = test.iter().filter(|t| **t == label).count();
    Ok((label, hits as f64 / test.len() as f64))
}

/// `sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(n_classes))`: entry `[i, j]` counts
/// samples of true class `i` predicted as `j`. Classes are `0..n_classes`; a label outside is an error.
pub fn confusion_matrix(y_true: &[usize], y_pred: &[usize], n_classes: usize) -> Result<Array2<u64>> {
    check_classes(y_true, y_pred, Some(n_classes))?;
    let mut m = Array2::<u64>::zeros((n_classes, n_classes));
    for (&t, &p) in y_true.iter().zip(y_pred) {
        m[[t, p]] += 1;
    }
    Ok(m)
}

/// sklearn's `zero_division` argument: the value a precision, recall or F1 takes when its denominator
/// is zero. sklearn's default `"warn"` gives 0 (and warns), i.e. [`ZeroDivision::Zero`].
/// With [`ZeroDivision::Nan`] the undefined classes are left out of the macro and weighted means, as
/// sklearn's `_nanaverage` does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ZeroDivision {
    Zero,
    One,
    Nan,
}

impl ZeroDivision {
    fn value(self) -> f64 {
        match self {
            ZeroDivision::Zero => 0.0,
            ZeroDivision::One => 1.0,
            ZeroDivision::Nan => f64::NAN,
        }
    }
    fn divide(self, num: f64, den: f64) -> f64 {
        if den == 0.0 {
            self.value()
        } else {
            num / den
        }
    }
}

/// Precision, recall and F1 of one class (or an average), with the class's support (true count).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of samples whose true label is this class (for averages: all samples).
    pub support: u64,
}

/// What `sklearn.metrics.classification_report(..., output_dict=True)` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationReport {
    /// One entry per class `0..n_classes` (`precision_recall_fscore_support(average=None)`).
    pub per_class: Vec<ClassScores>,
    pub accuracy: f64,
    /// Unweighted mean over classes (`average="macro"`).
    pub macro_avg: ClassScores,
    /// Mean weighted by support (`average="weighted"`); the plain mean if every support is zero.
    pub weighted_avg: ClassScores,
}

fn prf(tp: f64, pred: f64, truth: f64, zd: ZeroDivision) -> (f64, f64, f64) {
    (zd.divide(tp, pred), zd.divide(tp, truth), zd.divide(2.0 * tp, truth + pred))
}

/// sklearn's `_nanaverage`: NaNs left out; all-zero weights fall back to the plain mean.
fn nanaverage(values: &[f64], weights: Option<&[f64]>) -> f64 {
    let keep: Vec<usize> = (0..values.len()).filter(|&i| !values[i].is_nan()).collect();
    if keep.is_empty() {
        return f64::NAN;
    }
    if let Some(w) = weights {
        let wsum: f64 = keep.iter().map(|&i| w[i]).sum();
        if wsum != 0.0 {
            return keep.iter().map(|&i| values[i] * w[i]).sum::<f64>() / wsum;
        }
    }
    keep.iter().map(|&i| values[i]).sum::<f64>() / keep.len() as f64
}

/// Per-class precision, recall, F1 and support for classes `0..n_classes`, with accuracy and the macro
/// and support-weighted means: `sklearn.metrics.precision_recall_fscore_support(y_true, y_pred,
/// labels=range(n_classes), zero_division=...)` with `average=None`, `"macro"` and `"weighted"`.
/// F1 is `2·tp / (2·tp + fp + fn)`, so it is `zero_division` only when the class is neither true nor
/// predicted anywhere.
pub fn classification_report(
    y_true: &[usize],
    y_pred: &[usize],
    n_classes: usize,
    zero_division: ZeroDivision,
) -> Result<ClassificationReport> {
    let cm = confusion_matrix(y_true, y_pred, n_classes)?;
    let per_class: Vec<ClassScores> = (0..n_classes)
        .map(|c| {
            let tp = cm[[c, c]] as f64;
            let pred = cm.column(c).sum() as f64;
            let support = cm.row(c).sum();
            let (precision, recall, f1) = prf(tp, pred, support as f64, zero_division);
            ClassScores { precision, recall, f1, support }
        })
        .collect();
    let n = y_true.len() as u64;
    let support: Vec<f64> = per_class.iter().map(|c| c.support as f64).collect();
    let avg = |w: Option<&[f64]>| {
        let field = |f: fn(&ClassScores) -> f64| nanaverage(&per_class.iter().map(f).collect::<Vec<_>>(), w);
        ClassScores { precision: field(|c| c.precision), recall: field(|c| c.recall), f1: field(|c| c.f1), support: n }
    };
    let macro_avg = avg(None);
    let weighted_avg = avg(Some(&support));
    Ok(ClassificationReport { accuracy: accuracy(y_true, y_pred)?, per_class, macro_avg, weighted_avg })
}

/// Binary precision, recall and F1 of the positive class (`true`): sklearn's `precision_score`,
/// `recall_score` and `f1_score` with `average="binary"`, `pos_label=True` and `zero_division`.
/// `support` is the number of positives.
pub fn binary_scores(y_true: &[bool], y_pred: &[bool], zero_division: ZeroDivision) -> Result<ClassScores> {
    if y_true.is_empty() {
        return Err(Error::invalid("empty input: no labels"));
    }
    if y_true.len() != y_pred.len() {
        return Err(Error::invalid(format!("{} true labels but {} predictions", y_true.len(), y_pred.len())));
    }
    let tp = y_true.iter().zip(y_pred).filter(|(&t, &p)| t && p).count() as f64;
    let pred = y_pred.iter().filter(|&&p| p).count() as f64;
    let support = y_true.iter().filter(|&&t| t).count() as u64;
    let (precision, recall, f1) = prf(tp, pred, support as f64, zero_division);
    Ok(ClassScores { precision, recall, f1, support })
}
