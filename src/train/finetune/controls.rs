//! Controls that say what a benchmark sample allows before a network is blamed for a miss: a
//! linear model on the residues themselves, and how many test classes training ever shows.
//!
//! When a fine-tuning scores at its trivial baseline, either the network failed to learn what the
//! training sample holds, or the sample holds too little. [`one_hot_ridge`] answers the first for
//! numeric targets (a closed-form fit, so no optimiser can be at fault); [`test_classes_seen`]
//! bounds what any classifier can get right when most test classes never appear in training.
//!
//! ```
//! use protein_lm::data::tables::PfamRecord;
//! use protein_lm::train::finetune::controls::test_classes_seen;
//! use protein_lm::train::finetune::{family_data, DataLimits};
//! let records: Vec<PfamRecord> = (0..40)
//!     .map(|i| PfamRecord { accession: format!("P{i}"), pfam_id: format!("PF0000{}", i % 4), sequence: "MKV".repeat(i + 1) })
//!     .collect();
//! let data = family_data(&records, 5, 0.2, &DataLimits::default(), 0)?;
//! // Families are split within themselves, so every test protein's family is seen in training.
//! let coverage = test_classes_seen(&data)?;
//! assert_eq!((coverage.seen, coverage.test, coverage.train_classes), (data.test.len(), data.test.len(), 4));
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::BTreeSet;

use super::{class_labels, Example, SupervisedData};
use crate::analysis::probe::StandardScaler;
use crate::analysis::regression::Ridge;
use crate::analysis::stats::spearman;
use crate::models::baselines::one_hot_rows;
use crate::models::heads::{Level, Target};
use crate::train::objectives::supervised::TargetValue;
use crate::{Error, Result};

/// What [`one_hot_ridge`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct RidgeControl {
    /// The ridge penalty with the best validation Spearman.
    pub alpha: f64,
    /// Residue positions encoded (the longest training protein, capped by the call).
    pub positions: usize,
    pub valid_spearman: f64,
    pub test_spearman: f64,
}

/// Ridge regression on one-hot residues (position × amino acid, standardised), fitted on
/// `data.train` for each penalty in `alphas`, the penalty chosen on `data.valid`, scored on
/// `data.test` by Spearman's ρ. Per-protein numeric tasks only.
///
/// ```
/// use protein_lm::models::heads::{Level, Target};
/// use protein_lm::train::finetune::{controls::one_hot_ridge, Example, SupervisedData};
/// use protein_lm::train::objectives::supervised::TargetValue;
/// // Protein i spells i in binary (A = 1, G = 0), and its target is i: a linear function of the
/// // one-hot residues.
/// let protein = |i: usize| {
///     let sequence: String = (0..8).map(|j| if (i >> j) & 1 == 1 { 'A' } else { 'G' }).collect();
///     Example { id: i.to_string(), target: TargetValue::Numeric(i as f32), sequence }
/// };
/// let split = |keep: &dyn Fn(usize) -> bool| (0..256).filter(|&i| keep(i)).map(protein).collect::<Vec<_>>();
/// let data = SupervisedData { level: Level::Protein, target: Target::Numeric, labels: vec![],
///     train: split(&|i| i % 5 < 3), valid: split(&|i| i % 5 == 3), test: split(&|i| i % 5 == 4), report: Default::default() };
/// let control = one_hot_ridge(&data, 512, &[0.1, 10.0])?;
/// assert!(control.test_spearman > 0.99, "{control:?}");
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn one_hot_ridge(data: &SupervisedData, max_positions: usize, alphas: &[f64]) -> Result<RidgeControl> {
    if data.level != Level::Protein || data.target != Target::Numeric {
        return Err(Error::invalid("one-hot ridge: a per-protein numeric task is needed"));
    }
    if alphas.is_empty() {
        return Err(Error::invalid("one-hot ridge: no penalty to try"));
    }
    let positions = data.train.iter().map(|e| e.sequence.len()).max().unwrap_or(0).min(max_positions);
    if positions == 0 {
        return Err(Error::invalid("one-hot ridge: no training protein"));
    }
    let rows = |examples: &[Example]| {
        one_hot_rows(&examples.iter().map(|e| e.sequence.as_str()).collect::<Vec<_>>(), positions)
    };
    let x = [rows(&data.train), rows(&data.valid), rows(&data.test)];
    let y = [numeric_targets(&data.train)?, numeric_targets(&data.valid)?, numeric_targets(&data.test)?];
    let (alpha, valid_spearman, test_spearman) =
        ridge_on_features([&x[0], &x[1], &x[2]], [&y[0], &y[1], &y[2]], alphas)?;
    Ok(RidgeControl { alpha, positions, valid_spearman, test_spearman })
}

/// Ridge regression on any per-protein features (`x`: train, valid, test rows), standardised on
/// the training rows; the penalty in `alphas` with the best validation Spearman is kept. Returns
/// `(alpha, valid ρ, test ρ)`. [`one_hot_ridge`] is this on one-hot residues; on a frozen model's
/// pooled features (from [`Embedder`](crate::embed::Embedder)) it says what those features hold.
pub fn ridge_on_features(x: [&ndarray::Array2<f64>; 3], y: [&[f64]; 3], alphas: &[f64]) -> Result<(f64, f64, f64)> {
    if alphas.is_empty() {
        return Err(Error::invalid("ridge: no penalty to try"));
    }
    let (scaler, x_train) = StandardScaler::fit_transform(x[0])?;
    let (x_valid, x_test) = (scaler.transform(x[1])?, scaler.transform(x[2])?);
    let mut best: Option<(f64, f64, f64)> = None;
    for &alpha in alphas {
        let fit = Ridge::new(alpha).fit(&x_train, y[0])?;
        let valid = spearman(&fit.predict(&x_valid)?, y[1])?;
        if best.is_none_or(|b| valid > b.1) {
            best = Some((alpha, valid, spearman(&fit.predict(&x_test)?, y[2])?));
        }
    }
    Ok(best.expect("alphas is not empty"))
}

/// The targets of a per-protein numeric task, in order; another kind of target is an error naming
/// its example.
pub fn numeric_targets(examples: &[Example]) -> Result<Vec<f64>> {
    examples
        .iter()
        .map(|e| match e.target {
            TargetValue::Numeric(y) => Ok(y as f64),
            ref other => Err(Error::invalid(format!("example `{}` has target {other:?}, not a number", e.id))),
        })
        .collect()
}

/// How a classification's test classes are covered by its training proteins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassCoverage {
    /// Test proteins whose class occurs among the training proteins: no classifier trained on
    /// them can get the others right.
    pub seen: usize,
    pub test: usize,
    /// Distinct classes among the training proteins.
    pub train_classes: usize,
}

/// [`ClassCoverage`] of a per-protein classification.
///
/// ```
/// use protein_lm::models::heads::{Level, Target};
/// use protein_lm::train::finetune::controls::test_classes_seen;
/// use protein_lm::train::finetune::{Example, SupervisedData};
/// use protein_lm::train::objectives::supervised::TargetValue;
/// let example = |c| Example { id: String::new(), sequence: "MKV".into(), target: TargetValue::Class(c) };
/// let data = SupervisedData {
///     level: Level::Protein,
///     target: Target::Categorical { classes: 4 },
///     labels: vec![],
///     train: vec![example(0), example(1), example(1)],
///     valid: vec![],
///     test: vec![example(1), example(2), example(3)],
///     report: Default::default(),
/// };
/// // Classes 2 and 3 never occur in training: no model can get those test proteins right.
/// let coverage = test_classes_seen(&data)?;
/// assert_eq!((coverage.seen, coverage.test, coverage.train_classes), (1, 3, 2));
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn test_classes_seen(data: &SupervisedData) -> Result<ClassCoverage> {
    let trained: BTreeSet<usize> = class_labels(&data.train)?.into_iter().collect();
    let seen = class_labels(&data.test)?.iter().filter(|c| trained.contains(c)).count();
    Ok(ClassCoverage { seen, test: data.test.len(), train_classes: trained.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(id: &str, sequence: &str, target: TargetValue) -> Example {
        Example { id: id.into(), sequence: sequence.into(), target }
    }

    fn data(target: Target, train: Vec<Example>, valid: Vec<Example>, test: Vec<Example>) -> SupervisedData {
        SupervisedData { level: Level::Protein, target, labels: vec![], train, valid, test, report: Default::default() }
    }

    #[test]
    fn test_classes_seen_counts_test_proteins_whose_class_trained() -> Result<()> {
        let c = |id: &str, class| example(id, "ACD", TargetValue::Class(class));
        let d = data(
            Target::Categorical { classes: 5 },
            vec![c("a", 0), c("b", 2), c("c", 2)],
            vec![],
            vec![c("t1", 2), c("t2", 4), c("t3", 0), c("t4", 1)],
        );
        assert_eq!(test_classes_seen(&d)?, ClassCoverage { seen: 2, test: 4, train_classes: 2 });
        Ok(())
    }

    #[test]
    fn one_hot_ridge_finds_a_position_effect_and_ignores_noise_positions() -> Result<()> {
        // y depends on the residue at position 3 only; the other positions are a seeded jumble.
        let mut rng = crate::Rng::new(3);
        let letters = b"ACDEFGHIKLMNPQRSTVWY";
        let mut protein = |i: usize| {
            let s: String = (0..12).map(|_| letters[rng.below(20) as usize] as char).collect();
            let effect = if s.as_bytes()[3] == b'W' || s.as_bytes()[3] == b'Y' { 2.0 } else { 0.0 };
            example(&i.to_string(), &s, TargetValue::Numeric(effect + s.as_bytes()[3] as f32 * 0.01))
        };
        let train: Vec<_> = (0..400).map(&mut protein).collect();
        let valid: Vec<_> = (400..500).map(&mut protein).collect();
        let test: Vec<_> = (500..700).map(&mut protein).collect();
        let control = one_hot_ridge(&data(Target::Numeric, train, valid, test), 512, &[1.0, 100.0])?;
        assert_eq!(control.positions, 12);
        assert!(control.test_spearman > 0.9, "{control:?}");
        Ok(())
    }

    #[test]
    fn one_hot_ridge_refuses_a_classification_and_names_a_bad_target() {
        let c = |id: &str| example(id, "ACD", TargetValue::Class(0));
        let d = data(Target::Categorical { classes: 1 }, vec![c("a")], vec![c("b")], vec![c("t")]);
        assert!(one_hot_ridge(&d, 10, &[1.0]).unwrap_err().to_string().contains("numeric"));
        let d = data(Target::Numeric, vec![c("x7")], vec![c("b")], vec![c("t")]);
        assert!(one_hot_ridge(&d, 10, &[1.0]).unwrap_err().to_string().contains("`x7`"));
    }
}
