//! Learning-rate schedules and stopping rules of the two references.
//!
//! - [`PolynomialDecay`]: fairseq's `polynomial_decay` (PRoBERTa): linear warm-up to the peak, then
//!   `(peak − end)·(1 − progress)^power + end`, reproducing fairseq's update numbering (the first
//!   update runs at `peak / warmup`, update `k ≥ 2` at the rate set after update `k − 1`).
//! - [`ReduceOnPlateau`]: Keras' `ReduceLROnPlateau` in 'min' mode (ProteinBERT: factor 0.25,
//!   patience 1, min 1e-5 when fine-tuning; factor 0.8, patience 20, min 5e-5 in pretraining):
//!   an improvement is `value < best − min_delta`; after `patience` epochs without one the rate is
//!   multiplied by `factor`, not below `min_lr`, and the wait restarts.
//! - [`EarlyStopping`]: stop after `patience` evaluations without improvement (fairseq's
//!   `--patience 3` on validation every 100 updates; Keras' `EarlyStopping(patience 2)`), keeping
//!   which evaluation was best.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// fairseq's `polynomial_decay` learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PolynomialDecay {
    pub peak_lr: f64,
    pub warmup_updates: u64,
    pub total_updates: u64,
    pub end_lr: f64,
    pub power: f64,
}

impl PolynomialDecay {
    /// PRoBERTa pretraining: peak 2.5e-3, 3,125 warm-up updates, linear decay to 0 at 125,000.
    pub fn proberta_pretraining() -> Self {
        Self { peak_lr: 2.5e-3, warmup_updates: 3_125, total_updates: 125_000, end_lr: 0.0, power: 1.0 }
    }

    /// PRoBERTa fine-tuning: peak 2.5e-3, 312 warm-up updates, 12,500 in all.
    pub fn proberta_finetuning() -> Self {
        Self { peak_lr: 2.5e-3, warmup_updates: 312, total_updates: 12_500, end_lr: 0.0, power: 1.0 }
    }

    pub fn validate(&self) -> Result<()> {
        if self.total_updates <= self.warmup_updates || self.peak_lr.is_nan() || self.peak_lr < 0.0 || self.power <= 0.0
        {
            return Err(Error::invalid(format!("polynomial decay: invalid settings {self:?}")));
        }
        Ok(())
    }

    /// The rate fairseq sets after `n` updates have been made.
    fn after(&self, n: u64) -> f64 {
        if self.warmup_updates > 0 && n <= self.warmup_updates {
            self.peak_lr * n as f64 / self.warmup_updates as f64
        } else if n >= self.total_updates {
            self.end_lr
        } else {
            let remaining = 1.0 - (n - self.warmup_updates) as f64 / (self.total_updates - self.warmup_updates) as f64;
            (self.peak_lr - self.end_lr) * remaining.powf(self.power) + self.end_lr
        }
    }

    /// The learning rate of update `k` (1-based).
    pub fn lr(&self, k: u64) -> f64 {
        if k <= 1 {
            // Set at construction: the warm-up factor 1 / warmup (or 1 without warm-up).
            if self.warmup_updates > 0 {
                self.peak_lr / self.warmup_updates as f64
            } else {
                self.peak_lr
            }
        } else {
            self.after(k - 1)
        }
    }
}

/// Keras' `ReduceLROnPlateau` (mode 'min', cooldown 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReduceOnPlateau {
    pub factor: f64,
    pub patience: u32,
    pub min_lr: f64,
    pub min_delta: f64,
    /// `None` before the first observation (an `f64::INFINITY` would not survive JSON in a
    /// checkpoint: serde_json writes it as null).
    best: Option<f64>,
    wait: u32,
}

impl ReduceOnPlateau {
    pub fn new(factor: f64, patience: u32, min_lr: f64) -> Self {
        Self { factor, patience, min_lr, min_delta: 1e-4, best: None, wait: 0 }
    }

    /// ProteinBERT fine-tuning: factor 0.25, patience 1, min 1e-5 (on validation loss).
    pub fn proteinbert_finetuning() -> Self {
        Self::new(0.25, 1, 1e-5)
    }

    /// ProteinBERT pretraining: factor 0.8, patience 20 epochs, min 5e-5 (on training loss).
    pub fn proteinbert_pretraining() -> Self {
        Self::new(0.8, 20, 5e-5)
    }

    /// Records the epoch's monitored value and returns the learning rate for the next epoch.
    pub fn observe(&mut self, value: f64, lr: f64) -> f64 {
        if self.best.is_none_or(|best| value < best - self.min_delta) {
            self.best = Some(value);
            self.wait = 0;
            return lr;
        }
        self.wait += 1;
        if self.wait >= self.patience && lr > self.min_lr {
            self.wait = 0;
            return (lr * self.factor).max(self.min_lr);
        }
        lr
    }
}

/// Stop after `patience` evaluations without improvement of a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub patience: u32,
    /// `true` when larger is better (accuracy), `false` for losses.
    pub maximize: bool,
    best: Option<f64>,
    best_at: Option<u64>,
    bad: u32,
}

/// What an evaluation means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new best: save it as the best checkpoint.
    Improved,
    /// Not better; keep going.
    Continue,
    /// `patience` evaluations in a row without improvement: stop.
    Stop,
}

impl EarlyStopping {
    pub fn new(patience: u32, maximize: bool) -> Self {
        Self { patience, maximize, best: None, best_at: None, bad: 0 }
    }

    /// Records `value` measured at `step`.
    pub fn observe(&mut self, step: u64, value: f64) -> Verdict {
        let better = match self.best {
            None => true,
            Some(b) => {
                if self.maximize {
                    value > b
                } else {
                    value < b
                }
            }
        };
        if better {
            self.best = Some(value);
            self.best_at = Some(step);
            self.bad = 0;
            return Verdict::Improved;
        }
        self.bad += 1;
        if self.bad >= self.patience {
            Verdict::Stop
        } else {
            Verdict::Continue
        }
    }

    /// The best value and the step it was measured at.
    pub fn best(&self) -> Option<(f64, u64)> {
        Some((self.best?, self.best_at?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomial_decay_follows_fairseq_numbering() {
        let s = PolynomialDecay { peak_lr: 1.0, warmup_updates: 4, total_updates: 12, end_lr: 0.0, power: 1.0 };
        let lrs: Vec<f64> = (1..=14).map(|k| s.lr(k)).collect();
        // Update 1 at 1/4 (construction), then the rate set after update k − 1: 1/4, 2/4, 3/4, 1,
        // then down by 1/8 per update to 0 after update 12.
        let want = [0.25, 0.25, 0.5, 0.75, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0];
        for (k, (got, want)) in lrs.iter().zip(want).enumerate() {
            assert!((got - want).abs() < 1e-12, "update {}: {got} vs {want}", k + 1);
        }
        assert!(PolynomialDecay { total_updates: 4, ..s }.validate().is_err());
        let p = PolynomialDecay::proberta_pretraining();
        assert!((p.lr(3_126) - 2.5e-3).abs() < 1e-15 && p.lr(125_001) == 0.0);
    }

    #[test]
    fn reduce_on_plateau_and_early_stopping() {
        let mut r = ReduceOnPlateau::proteinbert_finetuning();
        let mut lr = 1e-4;
        let mut seen = vec![];
        for v in [1.0, 0.9, 0.95, 0.96, 0.89995, 0.5] {
            lr = r.observe(v, lr);
            seen.push(lr);
        }
        // 0.95 is no improvement (patience 1) → ×0.25; 0.96 again → 6.25e-6 floored at 1e-5...
        assert_eq!(seen[..2], [1e-4, 1e-4]);
        assert!((seen[2] - 2.5e-5).abs() < 1e-18);
        assert!((seen[3] - 1e-5).abs() < 1e-18);
        // ...a change below min_delta (1e-4) is not an improvement; at min_lr nothing changes.
        assert!((seen[4] - 1e-5).abs() < 1e-18 && (seen[5] - 1e-5).abs() < 1e-18);

        let mut e = EarlyStopping::new(3, true);
        let verdicts: Vec<Verdict> =
            [0.5, 0.6, 0.6, 0.55, 0.58].iter().enumerate().map(|(i, &v)| e.observe(100 * (i as u64 + 1), v)).collect();
        assert_eq!(
            verdicts,
            [Verdict::Improved, Verdict::Improved, Verdict::Continue, Verdict::Continue, Verdict::Stop]
        );
        assert_eq!(e.best(), Some((0.6, 200)));
    }
}
