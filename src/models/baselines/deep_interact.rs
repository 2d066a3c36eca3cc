//! DeepInteract end to end: per-protein vectors (3-mer frequencies, frozen PRoBERTa embeddings) →
//! both proteins of a pair side by side → [`Mlp`] with three hidden layers → P(interaction); and
//! the same at nested training fractions (PRoBERTa's Figure 7 with a frozen representation).

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
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub fraction: f64,
    pub result: DeepInteractResult,
}

/// DeepInteract trained on nested subsets of `train` (`fractions` of it, each subset containing
/// the smaller ones; the order is drawn from `rng`), each scored on the same `test`. A subset with
/// one class only is an error naming the fraction.
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
