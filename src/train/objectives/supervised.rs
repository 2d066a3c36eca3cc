//! Supervised heads: the losses and metrics the references use, per protein, per residue and per
//! pair, for binary, categorical and numeric targets.
//!
//! | target | loss (reference) | metric (ProteinBERT paper) |
//! |---|---|---|
//! | binary | binary cross-entropy on a sigmoid | ROC AUC |
//! | categorical | sparse categorical cross-entropy on a softmax | accuracy |
//! | numeric | mean squared error | Spearman ρ |
//!
//! Per-residue targets count only real residues (ProteinBERT: positions 1..=len after START,
//! weight 0 on START, END and padding); metrics pool every counted residue of the set. Losses are
//! means over what counts (Keras with sample weights divides by every position; for fine-tuning
//! the difference is a constant factor per padded length, which the adaptive optimiser absorbs
//! almost but not exactly — Adam's ε acts on the gradient's scale: 6e-4 in a head after two steps
//! at lr 1e-2, `tests/finetune_proteinbert.rs` — so the better-defined weighted mean is used).

use candle_core::{DType, Device, Tensor};

use crate::analysis::metrics::{accuracy, binary_scores, roc_auc, ZeroDivision};
use crate::analysis::stats::spearman;
use crate::models::heads::Target;
use crate::models::loss::{binary_cross_entropy_with_logits, cross_entropy, Reduction};
use crate::train::trainer::Metrics;
use crate::{Error, Result};

/// One example's label in model terms.
///
/// ```
/// use protein_lm::train::finetune::Example;
/// use protein_lm::train::objectives::supervised::TargetValue;
/// // One label per protein, or one class per residue.
/// let stable = Example { id: "P1".into(), sequence: "MKV".into(), target: TargetValue::Numeric(0.7) };
/// let helices = Example { id: "P2".into(), sequence: "MKV".into(), target: TargetValue::PerResidue(vec![0, 1, 1]) };
/// assert!(matches!(stable.target, TargetValue::Numeric(y) if y > 0.5));
/// assert_eq!(helices.target, TargetValue::PerResidue(vec![0, 1, 1]));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum TargetValue {
    Binary(bool),
    Class(u32),
    Numeric(f32),
    /// One class (or 0/1) per residue.
    PerResidue(Vec<u32>),
}

/// Labels of a batch laid out for the head's logits.
///
/// ```
/// use candle_core::Device;
/// use protein_lm::models::heads::Target;
/// use protein_lm::train::objectives::supervised::{batch_targets, TargetValue};
/// // Per residue, ProteinBERT style: residue j at position j + 1 (after START), padded to 5.
/// let labels = [TargetValue::PerResidue(vec![2, 0]), TargetValue::PerResidue(vec![1, 1, 1])];
/// let refs: Vec<&TargetValue> = labels.iter().collect();
/// let targets = batch_targets(&refs, Target::Categorical { classes: 3 }, 5, 1, &Device::Cpu)?;
/// assert_eq!(targets.values.to_vec2::<u32>()?, [[0, 2, 0, 0, 0], [0, 1, 1, 1, 0]]);
/// let weights = targets.weights.unwrap().to_vec2::<f32>()?;
/// assert_eq!(weights, [[0.0, 1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0, 0.0]]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchTargets {
    /// Binary: `(B, 1)` f32 (or `(B, L, 1)` per residue); categorical: `(B)` u32 (or `(B, L)`);
    /// numeric: `(B, 1)` f32.
    pub values: Tensor,
    /// Per residue: `(B, L)` f32, 1 on counted residues. `None` per protein.
    pub weights: Option<Tensor>,
}

/// Lays out `labels` for a batch padded to `padded_len`, with residue `j` of a protein at
/// position `j + offset` (1 for ProteinBERT's START, 1 for PRoBERTa's `<s>` with residue tokens).
pub fn batch_targets(
    labels: &[&TargetValue],
    target: Target,
    padded_len: usize,
    offset: usize,
    device: &Device,
) -> Result<BatchTargets> {
    let b = labels.len();
    let per_residue = labels.first().is_some_and(|l| matches!(l, TargetValue::PerResidue(_)));
    if per_residue {
        let mut values = vec![0u32; b * padded_len];
        let mut weights = vec![0f32; b * padded_len];
        for (r, label) in labels.iter().enumerate() {
            let TargetValue::PerResidue(per) = label else {
                return Err(Error::invalid("a batch mixes per-residue and per-protein labels"));
            };
            if per.len() + offset > padded_len {
                return Err(Error::invalid(format!(
                    "{} residue labels do not fit a padded length of {padded_len}",
                    per.len()
                )));
            }
            for (j, &c) in per.iter().enumerate() {
                values[r * padded_len + j + offset] = c;
                weights[r * padded_len + j + offset] = 1.0;
            }
        }
        let weights = Tensor::from_vec(weights, (b, padded_len), device)?;
        let values = match target {
            Target::Binary => Tensor::from_vec(values, (b, padded_len), device)?.to_dtype(DType::F32)?.unsqueeze(2)?,
            Target::Categorical { .. } => Tensor::from_vec(values, (b, padded_len), device)?,
            Target::Numeric => return Err(Error::invalid("per-residue numeric targets are not supported")),
        };
        return Ok(BatchTargets { values, weights: Some(weights) });
    }
    let values = match target {
        Target::Binary => {
            let v: Vec<f32> = labels
                .iter()
                .map(|l| match l {
                    TargetValue::Binary(x) => Ok(*x as u8 as f32),
                    other => Err(Error::invalid(format!("binary head, label {other:?}"))),
                })
                .collect::<Result<_>>()?;
            Tensor::from_vec(v, (b, 1), device)?
        }
        Target::Categorical { classes } => {
            let v: Vec<u32> = labels
                .iter()
                .map(|l| match l {
                    TargetValue::Class(c) if (*c as usize) < classes => Ok(*c),
                    other => Err(Error::invalid(format!("categorical head of {classes} classes, label {other:?}"))),
                })
                .collect::<Result<_>>()?;
            Tensor::from_vec(v, b, device)?
        }
        Target::Numeric => {
            let v: Vec<f32> = labels
                .iter()
                .map(|l| match l {
                    TargetValue::Numeric(x) => Ok(*x),
                    other => Err(Error::invalid(format!("numeric head, label {other:?}"))),
                })
                .collect::<Result<_>>()?;
            Tensor::from_vec(v, (b, 1), device)?
        }
    };
    Ok(BatchTargets { values, weights: None })
}

/// The head's loss: BCE, cross-entropy or MSE, a mean over counted items.
pub fn head_loss(target: Target, logits: &Tensor, targets: &BatchTargets) -> Result<Tensor> {
    let weights = targets.weights.as_ref();
    match target {
        Target::Binary => {
            let w = match weights {
                Some(w) => Some(w.unsqueeze(2)?),
                None => None,
            };
            binary_cross_entropy_with_logits(logits, &targets.values, w.as_ref(), Reduction::WeightedMean)
        }
        Target::Categorical { .. } => cross_entropy(logits, &targets.values, None, weights, Reduction::WeightedMean),
        Target::Numeric => {
            let diff = logits.to_dtype(DType::F32)?.sub(&targets.values)?;
            Ok(diff.sqr()?.mean_all()?)
        }
    }
}

/// Predictions gathered over an evaluation set: one score (binary probability, numeric value) or
/// one predicted class per counted item (protein or residue).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::models::heads::Target;
/// use protein_lm::train::objectives::supervised::{batch_targets, Predictions, TargetValue};
/// let target = Target::Binary;
/// let labels = [TargetValue::Binary(true), TargetValue::Binary(false), TargetValue::Binary(true)];
/// let refs: Vec<&TargetValue> = labels.iter().collect();
/// let targets = batch_targets(&refs, target, 1, 0, &Device::Cpu)?;
/// // Logits of one batch: the two positives score above the negative.
/// let logits = Tensor::new(&[[2f32], [-1.0], [0.5]], &Device::Cpu)?;
/// let mut predictions = Predictions::default();
/// predictions.add(target, &logits, &targets, 0.3)?;
/// assert_eq!(predictions.metric(target), ("roc_auc", 1.0));
/// assert_eq!(predictions.summary(target)["accuracy"], 1.0);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    pub scores: Vec<f64>,
    pub classes: Vec<u32>,
    pub labels_bool: Vec<bool>,
    pub labels_class: Vec<u32>,
    pub labels_numeric: Vec<f64>,
    pub loss_sum: f64,
    pub loss_count: usize,
}

impl Predictions {
    /// Adds a batch: `logits` from the head, `targets` as laid out by [`batch_targets`], and the
    /// batch's mean loss.
    pub fn add(&mut self, target: Target, logits: &Tensor, targets: &BatchTargets, loss: f64) -> Result<()> {
        let weights: Option<Vec<f32>> = match &targets.weights {
            Some(w) => Some(w.flatten_all()?.to_vec1()?),
            None => None,
        };
        let counted = |i: usize| weights.as_ref().is_none_or(|w| w[i] > 0.0);
        let n_items = match &weights {
            Some(w) => w.iter().filter(|&&x| x > 0.0).count(),
            None => logits.dim(0)?,
        };
        match target {
            Target::Binary => {
                let p: Vec<f32> = candle_nn::ops::sigmoid(&logits.to_dtype(DType::F32)?)?.flatten_all()?.to_vec1()?;
                let y: Vec<f32> = targets.values.flatten_all()?.to_vec1()?;
                for i in (0..p.len()).filter(|&i| counted(i)) {
                    self.scores.push(p[i] as f64);
                    self.labels_bool.push(y[i] > 0.5);
                }
            }
            Target::Categorical { classes } => {
                let logits = logits.to_dtype(DType::F32)?.reshape(((), classes))?;
                let pred: Vec<u32> = logits.argmax(1)?.to_vec1()?;
                let y: Vec<u32> = targets.values.flatten_all()?.to_vec1()?;
                // Two classes (PRoBERTa's PPI head): P(class 1) ranks the items for ROC AUC.
                let positive: Option<Vec<f32>> = if classes == 2 {
                    Some(candle_nn::ops::softmax(&logits, 1)?.narrow(1, 1, 1)?.flatten_all()?.to_vec1()?)
                } else {
                    None
                };
                for i in (0..pred.len()).filter(|&i| counted(i)) {
                    self.classes.push(pred[i]);
                    self.labels_class.push(y[i]);
                    if let Some(p) = &positive {
                        self.scores.push(p[i] as f64);
                        self.labels_bool.push(y[i] == 1);
                    }
                }
            }
            Target::Numeric => {
                let p: Vec<f32> = logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                let y: Vec<f32> = targets.values.flatten_all()?.to_vec1()?;
                self.scores.extend(p.iter().map(|&x| x as f64));
                self.labels_numeric.extend(y.iter().map(|&x| x as f64));
            }
        }
        self.loss_sum += loss * n_items as f64;
        self.loss_count += n_items;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.loss_count
    }

    pub fn is_empty(&self) -> bool {
        self.loss_count == 0
    }

    /// The paper's metric: `roc_auc`, `accuracy` or `spearman` (NaN when undefined, e.g. one
    /// class only, as the reference reports it).
    pub fn metric(&self, target: Target) -> (&'static str, f64) {
        match target {
            Target::Binary => ("roc_auc", roc_auc(&self.labels_bool, &self.scores).unwrap_or(f64::NAN)),
            Target::Categorical { .. } => ("accuracy", accuracy(&self.labels_class, &self.classes).unwrap_or(f64::NAN)),
            Target::Numeric => ("spearman", spearman(&self.scores, &self.labels_numeric).unwrap_or(f64::NAN)),
        }
    }

    /// Every metric that applies: `loss`; `accuracy` for classes (binary at 0.5); `roc_auc`,
    /// `precision`, `recall` and `f1` of the positive class for binary and two-class targets;
    /// `spearman` for numbers. Undefined values (one class only) are NaN.
    pub fn summary(&self, target: Target) -> Metrics {
        let mut m = Metrics::from([("loss".to_string(), self.loss())]);
        // The positive-class decision of two-class targets: p ≥ 0.5, or class 1 winning the softmax.
        let positive: Option<Vec<bool>> = match target {
            Target::Binary => Some(self.scores.iter().map(|&p| p >= 0.5).collect()),
            Target::Categorical { classes: 2 } => Some(self.classes.iter().map(|&c| c == 1).collect()),
            _ => None,
        };
        match (target, &positive) {
            (Target::Numeric, _) => {
                m.insert("spearman".into(), spearman(&self.scores, &self.labels_numeric).unwrap_or(f64::NAN));
            }
            (Target::Binary, Some(p)) => {
                m.insert("accuracy".into(), accuracy(&self.labels_bool, p).unwrap_or(f64::NAN));
            }
            _ => {
                m.insert("accuracy".into(), accuracy(&self.labels_class, &self.classes).unwrap_or(f64::NAN));
            }
        }
        if let Some(p) = positive {
            m.insert("roc_auc".into(), roc_auc(&self.labels_bool, &self.scores).unwrap_or(f64::NAN));
            let s = binary_scores(&self.labels_bool, &p, ZeroDivision::Nan).ok();
            m.insert("precision".into(), s.as_ref().map_or(f64::NAN, |s| s.precision));
            m.insert("recall".into(), s.as_ref().map_or(f64::NAN, |s| s.recall));
            m.insert("f1".into(), s.as_ref().map_or(f64::NAN, |s| s.f1));
        }
        m
    }

    /// Why a metric of [`summary`](Self::summary) is NaN: each is undefined for one reason only.
    pub fn why_undefined(metric: &str) -> Option<&'static str> {
        Some(match metric {
            "precision" => "no item was predicted positive, so TP + FP = 0",
            "recall" => "no item is labelled positive, so TP + FN = 0",
            "f1" => "precision or recall is undefined, or both are 0",
            "roc_auc" => "the labels hold one class only, so no positive–negative pair can be ranked",
            "accuracy" => "there are no items",
            "spearman" => "the predictions or the labels are constant (or there are fewer than two items)",
            "loss" => "there are no items",
            _ => return None,
        })
    }

    /// Mean loss per counted item.
    pub fn loss(&self) -> f64 {
        if self.loss_count == 0 {
            f64::NAN
        } else {
            self.loss_sum / self.loss_count as f64
        }
    }

    /// The predictions put back in example order: prediction `k` was made for example
    /// `visited[k]` (one per example, as after a length-sorted pass). Per-item vectors of another
    /// length (absent for this target) are kept as they are.
    pub fn in_example_order(&self, visited: &[usize]) -> Predictions {
        fn place<T: Copy + Default>(v: &[T], visited: &[usize]) -> Vec<T> {
            if v.len() != visited.len() {
                return v.to_vec();
            }
            let mut out = vec![T::default(); v.len()];
            for (k, &i) in visited.iter().enumerate() {
                out[i] = v[k];
            }
            out
        }
        Predictions {
            scores: place(&self.scores, visited),
            classes: place(&self.classes, visited),
            labels_bool: place(&self.labels_bool, visited),
            labels_class: place(&self.labels_class, visited),
            labels_numeric: place(&self.labels_numeric, visited),
            loss_sum: self.loss_sum,
            loss_count: self.loss_count,
        }
    }

    /// Pools another set's predictions into this one (the reference's "All" row).
    pub fn extend(&mut self, other: &Predictions) {
        self.scores.extend_from_slice(&other.scores);
        self.classes.extend_from_slice(&other.classes);
        self.labels_bool.extend_from_slice(&other.labels_bool);
        self.labels_class.extend_from_slice(&other.labels_class);
        self.labels_numeric.extend_from_slice(&other.labels_numeric);
        self.loss_sum += other.loss_sum;
        self.loss_count += other.loss_count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_go_back_to_example_order() {
        let p = Predictions {
            scores: vec![0.9, 0.1, 0.5],
            labels_bool: vec![true, false, true],
            loss_sum: 3.0,
            loss_count: 3,
            ..Default::default()
        };
        // Predictions were made for examples 2, 0, 1.
        let back = p.in_example_order(&[2, 0, 1]);
        assert_eq!(back.scores, vec![0.1, 0.5, 0.9]);
        assert_eq!(back.labels_bool, vec![false, true, true]);
        assert!(back.classes.is_empty() && back.loss() == 1.0);
    }

    #[test]
    fn per_residue_targets_skip_start_end_and_padding() -> Result<()> {
        let a = TargetValue::PerResidue(vec![2, 0, 1]);
        let b = TargetValue::PerResidue(vec![1]);
        let t = batch_targets(&[&a, &b], Target::Categorical { classes: 3 }, 6, 1, &Device::Cpu)?;
        assert_eq!(t.values.to_vec2::<u32>()?, vec![vec![0, 2, 0, 1, 0, 0], vec![0, 1, 0, 0, 0, 0]]);
        let w = t.weights.unwrap().to_vec2::<f32>()?;
        assert_eq!(w, vec![vec![0., 1., 1., 1., 0., 0.], vec![0., 1., 0., 0., 0., 0.]]);
        Ok(())
    }

    #[test]
    fn losses_and_metrics_have_known_values() -> Result<()> {
        let dev = Device::Cpu;
        // Binary: logits 0 → loss ln 2; AUC of perfectly ranked scores is 1.
        let (x, y) = (TargetValue::Binary(true), TargetValue::Binary(false));
        let t = batch_targets(&[&x, &y], Target::Binary, 1, 0, &dev)?;
        let zeros = Tensor::zeros((2, 1), DType::F32, &dev)?;
        let loss = head_loss(Target::Binary, &zeros, &t)?.to_scalar::<f32>()?;
        assert!((loss as f64 - std::f64::consts::LN_2).abs() < 1e-6);
        let mut p = Predictions::default();
        p.add(Target::Binary, &Tensor::new(&[[2f32], [-1.0]], &dev)?, &t, 0.5)?;
        assert_eq!(p.metric(Target::Binary), ("roc_auc", 1.0));
        assert_eq!(p.len(), 2);
        // Numeric: MSE of (1, 3) against (0, 0) is 5.
        let (a, b) = (TargetValue::Numeric(0.0), TargetValue::Numeric(0.0));
        let t = batch_targets(&[&a, &b], Target::Numeric, 1, 0, &dev)?;
        let loss = head_loss(Target::Numeric, &Tensor::new(&[[1f32], [3.0]], &dev)?, &t)?.to_scalar::<f32>()?;
        assert_eq!(loss, 5.0);
        // Categorical: uniform logits over 4 classes → ln 4.
        let (c0, c3) = (TargetValue::Class(0), TargetValue::Class(3));
        let target = Target::Categorical { classes: 4 };
        let t = batch_targets(&[&c0, &c3], target, 1, 0, &dev)?;
        let loss = head_loss(target, &Tensor::zeros((2, 4), DType::F32, &dev)?, &t)?.to_scalar::<f32>()?;
        assert!((loss as f64 - 4f64.ln()).abs() < 1e-6);
        assert!(batch_targets(&[&TargetValue::Class(4)], target, 1, 0, &dev).is_err());
        // Two classes: P(class 1) = softmax; items 0, 1 positive, 2 negative; item 1 predicted
        // negative → accuracy 2/3, precision 1, recall 1/2; ranking (0.88, 0.27 > 0.12) → AUC 1.
        let target = Target::Categorical { classes: 2 };
        let labels = [TargetValue::Class(1), TargetValue::Class(1), TargetValue::Class(0)];
        let t = batch_targets(&labels.iter().collect::<Vec<_>>(), target, 1, 0, &dev)?;
        let logits = Tensor::new(&[[0f32, 2.0], [1.0, 0.0], [2.0, 0.0]], &dev)?;
        let mut p = Predictions::default();
        p.add(target, &logits, &t, 0.3)?;
        let m = p.summary(target);
        assert!((m["accuracy"] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((m["precision"], m["recall"], m["roc_auc"]), (1.0, 0.5, 1.0));
        assert!((p.scores[0] - 1.0 / (1.0 + (-2f64).exp())).abs() < 1e-6);
        assert!((m["loss"] - 0.3).abs() < 1e-12);

        // Every item predicted negative: precision is NaN, and the explanation printed beside it
        // is the one reason it can be; every metric any target reports has one.
        let logits = Tensor::new(&[[2f32, 0.0], [1.0, 0.0], [2.0, 0.0]], &dev)?;
        let mut p = Predictions::default();
        p.add(target, &logits, &t, 0.3)?;
        let m = p.summary(target);
        assert!(m["precision"].is_nan() && m["recall"] == 0.0, "{m:?}");
        assert!(Predictions::why_undefined("precision").unwrap().contains("predicted positive"));
        for target in
            [Target::Binary, Target::Numeric, Target::Categorical { classes: 2 }, Target::Categorical { classes: 5 }]
        {
            for metric in Predictions::default().summary(target).keys() {
                assert!(Predictions::why_undefined(metric).is_some(), "{metric} has no explanation");
            }
        }
        Ok(())
    }
}
