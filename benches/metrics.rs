//! ROC AUC on 10⁶ seeded items: one sort plus one pass. `cargo bench --bench metrics`.
//!
//! The peer `benches/peers/metrics_sklearn.py` draws the same items from the same LCG and times
//! `sklearn.metrics.roc_auc_score`; both print the AUC so the inputs can be seen to agree.
//! Measured (2 cores shared with other builds, medians of 7): 66–84 ms here, 380–450 ms for sklearn with
//! `OMP_NUM_THREADS=2`, both AUC 0.874942883267985.

use protein_lm::analysis::metrics::roc_auc;

/// Knuth's MMIX LCG, top 53 bits as a uniform in [0, 1): trivial to repeat in Python.
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 10⁶ labels (30% positive) and scores `u + 0.5·label`, shared with the Python peer.
pub fn items(n: usize, seed: u64) -> (Vec<bool>, Vec<f64>) {
    let mut lcg = Lcg(seed);
    let mut labels = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    for _ in 0..n {
        let label = lcg.uniform() < 0.3;
        labels.push(label);
        scores.push(lcg.uniform() + if label { 0.5 } else { 0.0 });
    }
    (labels, scores)
}

fn main() -> protein_lm::Result<()> {
    let (labels, scores) = items(1_000_000, 42);
    let auc = roc_auc(&labels, &scores)?;
    let mut times = Vec::new();
    for _ in 0..7 {
        let start = std::time::Instant::now();
        let a = roc_auc(&labels, &scores)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(a, auc);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!("roc_auc n=1000000: AUC {auc:.15} median {:.1} ms over 7 runs (min {:.1})", times[3], times[0]);
    Ok(())
}
