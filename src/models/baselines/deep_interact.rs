//! DeepInteract end to end: per-protein vectors (3-mer frequencies, frozen PRoBERTa embeddings) →
//! both proteins of a pair side by side → [`Mlp`] with three hidden layers → P(interaction); and
//! the same at nested training fractions (PRoBERTa's Figure 7 with a frozen representation).
//!
//! ```
//! use protein_lm::analysis::baselines::kmer_frequency_vectors;
//! use protein_lm::analysis::ppi::pair_rows;
//! use protein_lm::data::ppi::Pair;
//! use protein_lm::models::baselines::deep_interact::{fit_deep_interact, PairSet};
//! use protein_lm::models::baselines::fit::FitOptions;
//! let pair = |a: &str, b: &str, label| Pair { a: a.into(), b: b.into(), label };
//! let train = [pair("P1", "P2", 1), pair("P1", "P3", 0), pair("P2", "P4", 0), pair("P3", "P4", 1)];
//! let test = [pair("P1", "P4", 0), pair("P2", "P3", 1)];
//! let sequences = [("P1", "MKTAYIAKQR"), ("P2", "MKTAYLAKQR"), ("P3", "GGSWWYHHEE"), ("P4", "GGSWWFHHEE")];
//! // One 3-mer vector per protein, in the order pair_rows indexes them.
//! let (ids, rows) = pair_rows(&[&train, &test]);
//! let in_order: Vec<&str> = ids.iter().map(|id| sequences.iter().find(|(p, _)| p == id).unwrap().1).collect();
//! let features = kmer_frequency_vectors(&in_order, 3)?;
//! let labels = |set: &[Pair]| set.iter().map(|p| p.label == 1).collect::<Vec<_>>();
//! let (train_labels, test_labels) = (labels(&train), labels(&test));
//! let result = fit_deep_interact(
//!     &features,
//!     PairSet { rows: &rows[0], labels: &train_labels },
//!     None,
//!     PairSet { rows: &rows[1], labels: &test_labels },
//!     &FitOptions { epochs: 2, ..FitOptions::default() },
//!     0,
//! )?;
//! assert_eq!((result.train_pairs, result.test.n), (4, 2));
//! # Ok::<(), protein_lm::Error>(())
//! ```

use candle_core::{DType, Device};
use ndarray::Array2;
use serde::Serialize;

use super::fit::{fit, predict_proba, FitOptions, FitReport, Inputs};
use super::mlp::{pair_features, Mlp, MlpConfig};
use crate::analysis::ppi::{binary_summary, BinarySummary};
use crate::data::splits::nested_fractions;
use crate::models::init::SeededVarMap;
use crate::{Error, Result, Rng};

/// Labelled pairs as rows of a protein-vector matrix (see `analysis::ppi::pair_rows`).
///
/// ```
/// use protein_lm::models::baselines::deep_interact::PairSet;
/// // Pair i joins protein rows[i].0 and rows[i].1 of the feature matrix.
/// let rows = [(0, 1), (2, 3), (0, 3)];
/// let labels = [true, false, true];
/// let test = PairSet { rows: &rows[1..], labels: &labels[1..] };
/// assert_eq!(test.rows.len(), test.labels.len());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PairSet<'a> {
    pub rows: &'a [(usize, usize)],
    pub labels: &'a [bool],
}

impl PairSet<'_> {
    fn check(&self, name: &str) -> Result<()> {
        if self.rows.len() != self.labels.len() {
            return Err(Error::invalid(format!("{name}: {} pairs but {} labels", self.rows.len(), self.labels.len())));
        }
        Ok(())
    }

    fn subset(&self, idx: &[usize]) -> (Vec<(usize, usize)>, Vec<bool>) {
        (idx.iter().map(|&i| self.rows[i]).collect(), idx.iter().map(|&i| self.labels[i]).collect())
    }
}

/// One trained DeepInteract network's outcome.
///
/// ```
/// use protein_lm::models::baselines::deep_interact::{fit_deep_interact, DeepInteractResult, PairSet};
/// use protein_lm::models::baselines::fit::FitOptions;
/// use protein_lm::ndarray::Array2;
/// // Eight proteins of two kinds; a pair interacts when both are of the same kind.
/// let x = Array2::from_shape_fn((8, 4), |(i, j)| if (i % 2 == 0) == (j < 2) { 1.0 } else { 0.0 });
/// let rows: Vec<(usize, usize)> = (0..8).flat_map(|a| (0..8).map(move |b| (a, b))).collect();
/// let labels: Vec<bool> = rows.iter().map(|&(a, b)| a % 2 == b % 2).collect();
/// let train = PairSet { rows: &rows[..48], labels: &labels[..48] };
/// let test = PairSet { rows: &rows[48..], labels: &labels[48..] };
/// let options = FitOptions { epochs: 3, batch_size: 16, ..FitOptions::default() };
/// let result: DeepInteractResult = fit_deep_interact(&x, train, None, test, &options, 1)?;
/// assert_eq!((result.train_pairs, result.test_scores.len(), result.fit.epochs.len()), (48, 16, 3));
/// assert!(result.test_scores.iter().all(|p| (0.0..=1.0).contains(p)));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct DeepInteractResult {
    pub train_pairs: usize,
    /// P(positive) of every test pair, in test order.
    pub test_scores: Vec<f64>,
    pub test: BinarySummary,
    pub fit: FitReport,
}

fn dense(features: &Array2<f64>, rows: &[(usize, usize)]) -> Result<Inputs> {
    Ok(Inputs::Dense(pair_features(features, rows)?))
}

fn class_labels(labels: &[bool]) -> Vec<usize> {
    labels.iter().map(|&l| l as usize).collect()
}

/// Trains DeepInteract ([`MlpConfig::deep_interact`] over `features`' width) on `train`, with early
/// stopping on `valid` when given, and scores `test`. `seed` fixes the initial weights; `options`
/// the rest.
///
/// ```
/// use protein_lm::models::baselines::deep_interact::{fit_deep_interact, PairSet};
/// use protein_lm::models::baselines::fit::FitOptions;
/// use protein_lm::ndarray::Array2;
/// // Eight proteins of two kinds; a pair interacts when both are of the same kind.
/// let x = Array2::from_shape_fn((8, 4), |(i, j)| if (i % 2 == 0) == (j < 2) { 1.0 } else { 0.0 });
/// let rows: Vec<(usize, usize)> = (0..8).flat_map(|a| (0..8).map(move |b| (a, b))).collect();
/// let labels: Vec<bool> = rows.iter().map(|&(a, b)| a % 2 == b % 2).collect();
/// let train = PairSet { rows: &rows[..48], labels: &labels[..48] };
/// let test = PairSet { rows: &rows[48..], labels: &labels[48..] };
/// let options = FitOptions { epochs: 3, batch_size: 16, ..FitOptions::default() };
/// let result = fit_deep_interact(&x, train, None, test, &options, 1)?;
/// println!("test accuracy {:.2}, ROC AUC {:.2}", result.test.accuracy, result.test.roc_auc);
/// // Seeded: the same seed gives the same scores.
/// assert_eq!(fit_deep_interact(&x, train, None, test, &options, 1)?.test_scores, result.test_scores);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn fit_deep_interact(
    features: &Array2<f64>,
    train: PairSet<'_>,
    valid: Option<PairSet<'_>>,
    test: PairSet<'_>,
    options: &FitOptions,
    seed: u64,
) -> Result<DeepInteractResult> {
    train.check("train")?;
    test.check("test")?;
    if let Some(v) = &valid {
        v.check("valid")?;
    }
    let device = Device::Cpu;
    let vars = SeededVarMap::new(seed);
    let model = Mlp::new(vars.var_builder(DType::F32, &device), &MlpConfig::deep_interact(features.ncols()))?;
    let x_train = dense(features, train.rows)?;
    let y_train = class_labels(train.labels);
    let valid_inputs = match &valid {
        Some(v) => Some((dense(features, v.rows)?, class_labels(v.labels))),
        None => None,
    };
    let report =
        fit(&model, &vars, (&x_train, &y_train), valid_inputs.as_ref().map(|(x, y)| (x, y.as_slice())), options)?;
    drop(x_train);
    let proba = predict_proba(&model, &dense(features, test.rows)?, options.batch_size.max(256), &device)?;
    let test_scores: Vec<f64> = proba.column(1).to_vec();
    Ok(DeepInteractResult {
        train_pairs: train.rows.len(),
        test: binary_summary(test.labels, &test_scores)?,
        test_scores,
        fit: report,
    })
}

/// One point of a training-fraction curve.
///
/// ```
/// use protein_lm::models::baselines::deep_interact::{deep_interact_curve, CurvePoint, PairSet};
/// use protein_lm::models::baselines::fit::FitOptions;
/// use protein_lm::ndarray::Array2;
/// use protein_lm::Rng;
/// // Eight proteins of two kinds; a pair interacts when both are of the same kind.
/// let x = Array2::from_shape_fn((8, 4), |(i, j)| if (i % 2 == 0) == (j < 2) { 1.0 } else { 0.0 });
/// let rows: Vec<(usize, usize)> = (0..8).flat_map(|a| (0..8).map(move |b| (a, b))).collect();
/// let labels: Vec<bool> = rows.iter().map(|&(a, b)| a % 2 == b % 2).collect();
/// let train = PairSet { rows: &rows[..48], labels: &labels[..48] };
/// let test = PairSet { rows: &rows[48..], labels: &labels[48..] };
/// let options = FitOptions { epochs: 3, batch_size: 16, ..FitOptions::default() };
/// let curve: Vec<CurvePoint> = deep_interact_curve(&x, train, None, test, &[1.0], &options, 1, &mut Rng::new(0))?;
/// assert_eq!((curve[0].fraction, curve[0].result.train_pairs), (1.0, 48));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub fraction: f64,
    pub result: DeepInteractResult,
}

/// DeepInteract trained on nested subsets of `train` (`fractions` of it, each subset containing
/// the smaller ones; the order is drawn from `rng`), each scored on the same `test`. A subset with
/// one class only is an error naming the fraction.
///
/// ```
/// use protein_lm::models::baselines::deep_interact::{deep_interact_curve, PairSet};
/// use protein_lm::models::baselines::fit::FitOptions;
/// use protein_lm::ndarray::Array2;
/// use protein_lm::Rng;
/// // Eight proteins of two kinds; a pair interacts when both are of the same kind.
/// let x = Array2::from_shape_fn((8, 4), |(i, j)| if (i % 2 == 0) == (j < 2) { 1.0 } else { 0.0 });
/// let rows: Vec<(usize, usize)> = (0..8).flat_map(|a| (0..8).map(move |b| (a, b))).collect();
/// let labels: Vec<bool> = rows.iter().map(|&(a, b)| a % 2 == b % 2).collect();
/// let train = PairSet { rows: &rows[..48], labels: &labels[..48] };
/// let test = PairSet { rows: &rows[48..], labels: &labels[48..] };
/// let options = FitOptions { epochs: 3, batch_size: 16, ..FitOptions::default() };
/// let curve = deep_interact_curve(&x, train, None, test, &[0.5, 1.0], &options, 1, &mut Rng::new(9))?;
/// // Nested subsets of the training pairs, every one scored on the same test pairs.
/// let sizes: Vec<usize> = curve.iter().map(|p| p.result.train_pairs).collect();
/// assert_eq!(sizes, [24, 48]);
/// assert!(curve.iter().all(|p| p.result.test.n == 16));
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn deep_interact_curve(
    features: &Array2<f64>,
    train: PairSet<'_>,
    valid: Option<PairSet<'_>>,
    test: PairSet<'_>,
    fractions: &[f64],
    options: &FitOptions,
    seed: u64,
    rng: &mut Rng,
) -> Result<Vec<CurvePoint>> {
    train.check("train")?;
    let all: Vec<usize> = (0..train.rows.len()).collect();
    let subsets = nested_fractions(&all, fractions, rng)?;
    let mut out = Vec::with_capacity(fractions.len());
    for (&fraction, idx) in fractions.iter().zip(&subsets) {
        let (rows, labels) = train.subset(idx);
        if !(labels.iter().any(|&l| l) && labels.iter().any(|&l| !l)) {
            return Err(Error::invalid(format!(
                "training fraction {fraction}: {} pairs hold one class only; use more pairs or larger fractions",
                labels.len()
            )));
        }
        let result = fit_deep_interact(features, PairSet { rows: &rows, labels: &labels }, valid, test, options, seed)?;
        out.push(CurvePoint { fraction, result });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proteins of two kinds (the first half of the vector or the second half lit); a pair
    /// interacts when both are of the same kind.
    fn toy(n_proteins: usize, n_pairs: usize, rng: &mut Rng) -> (Array2<f64>, Vec<(usize, usize)>, Vec<bool>) {
        let mut x = Array2::<f64>::zeros((n_proteins, 8));
        for i in 0..n_proteins {
            let offset = if i % 2 == 0 { 0 } else { 4 };
            for j in 0..4 {
                x[[i, offset + j]] = 0.5 + 0.5 * rng.uniform();
            }
        }
        let rows: Vec<(usize, usize)> = (0..n_pairs).map(|_| (rng.index(n_proteins), rng.index(n_proteins))).collect();
        let labels = rows.iter().map(|&(a, b)| a % 2 == b % 2).collect();
        (x, rows, labels)
    }

    #[test]
    fn learns_a_pair_rule_and_draws_a_nested_curve() -> Result<()> {
        let mut rng = Rng::new(3);
        let (x, rows, labels) = toy(40, 400, &mut rng);
        let options = FitOptions { epochs: 15, batch_size: 32, lr: 3e-3, ..FitOptions::default() };
        let train = PairSet { rows: &rows[..300], labels: &labels[..300] };
        let test = PairSet { rows: &rows[300..], labels: &labels[300..] };
        let full = fit_deep_interact(&x, train, None, test, &options, 1)?;
        assert_eq!((full.train_pairs, full.test_scores.len()), (300, 100));
        assert!(full.test.accuracy > 0.9 && full.test.roc_auc > 0.95, "{:?}", full.test);
        // Seeded: the same bits again.
        let again = fit_deep_interact(&x, train, None, test, &options, 1)?;
        assert_eq!(again.test_scores, full.test_scores);

        let curve = deep_interact_curve(&x, train, None, test, &[0.5, 1.0], &options, 1, &mut Rng::new(9))?;
        assert_eq!(curve.iter().map(|p| p.result.train_pairs).collect::<Vec<_>>(), [150, 300]);
        assert!(curve[1].result.test.accuracy > 0.9);
        // Mismatched lengths and a one-class subset are refused.
        assert!(
            fit_deep_interact(&x, PairSet { rows: &rows[..3], labels: &labels[..2] }, None, test, &options, 1).is_err()
        );
        let ones = vec![true; 300];
        let err = deep_interact_curve(
            &x,
            PairSet { rows: &rows[..300], labels: &ones },
            None,
            test,
            &[1.0],
            &options,
            1,
            &mut Rng::new(9),
        )
        .unwrap_err();
        assert!(err.to_string().contains("one class"), "{err}");
        Ok(())
    }
}
