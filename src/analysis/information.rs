//! Agreement between two labelings: contingency table, normalized mutual information and the
//! adjusted Rand index, following scikit-learn 1.9's `sklearn.metrics.cluster` formulas and edge
//! cases (fixtures: `tests/fixtures/analysis/nmi_ari.json`, equal within 1e-12).
//!
//! Labels may be of any hashable type (family names, cluster ids). Only equality matters, as in
//! scikit-learn: the two labelings are relabelled to dense ids in order of first appearance.
//!
//! ```
//! use protein_lm::analysis::information::{adjusted_rand_index, normalized_mutual_info};
//! let families = ["kinase", "kinase", "globin", "globin", "globin"];
//! let clusters = [3, 3, 1, 1, 0];
//! let nmi = normalized_mutual_info(&families, &clusters)?;
//! let ari = adjusted_rand_index(&families, &clusters)?;
//! assert!(nmi > 0.0 && nmi < 1.0 && ari > 0.0 && ari < 1.0);
//! // Only equality matters: renaming the clusters changes nothing.
//! assert_eq!(nmi, normalized_mutual_info(&families, &["b", "b", "a", "a", "c"])?);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::HashMap;
use std::hash::Hash;

use crate::error::{Error, Result};

/// Sparse contingency table of two labelings: `counts[(i, j)]` = number of items with class `i` in
/// the first labeling and cluster `j` in the second (dense ids in order of first appearance).
#[derive(Debug, Clone, PartialEq)]
pub struct Contingency {
    /// Number of items.
    pub n: u64,
    /// Row sums (class sizes of the first labeling).
    pub row_sums: Vec<u64>,
    /// Column sums (cluster sizes of the second labeling).
    pub col_sums: Vec<u64>,
    /// Non-zero cells `(row, col, count)`, sorted by row then column.
    pub cells: Vec<(usize, usize, u64)>,
}

fn dense_ids<T: Eq + Hash>(labels: &[T]) -> (Vec<usize>, usize) {
    let mut map: HashMap<&T, usize> = HashMap::with_capacity(labels.len().min(1 << 16));
    let ids = labels
        .iter()
        .map(|l| {
            let next = map.len();
            *map.entry(l).or_insert(next)
        })
        .collect();
    (ids, map.len())
}

impl Contingency {
    /// Builds the table; the labelings must have the same length.
    pub fn new<A: Eq + Hash, B: Eq + Hash>(a: &[A], b: &[B]) -> Result<Self> {
        if a.len() != b.len() {
            return Err(Error::invalid(format!("labelings differ in length: {} and {}", a.len(), b.len())));
        }
        let (ia, na) = dense_ids(a);
        let (ib, nb) = dense_ids(b);
        let mut keys: Vec<u64> = ia.iter().zip(&ib).map(|(&i, &j)| (i as u64) * (nb as u64) + j as u64).collect();
        keys.sort_unstable();
        let mut cells = Vec::new();
        let mut row_sums = vec![0u64; na];
        let mut col_sums = vec![0u64; nb];
        let mut k = 0;
        while k < keys.len() {
            let key = keys[k];
            let mut e = k + 1;
            while e < keys.len() && keys[e] == key {
                e += 1;
            }
            let (i, j) = ((key / nb as u64) as usize, (key % nb as u64) as usize);
            let c = (e - k) as u64;
            row_sums[i] += c;
            col_sums[j] += c;
            cells.push((i, j, c));
            k = e;
        }
        Ok(Self { n: a.len() as u64, row_sums, col_sums, cells })
    }
}

/// Neumaier-compensated sum (at least as accurate as numpy's pairwise sum).
fn sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for v in values {
        let t = s + v;
        if s.abs() >= v.abs() {
            c += (s - t) + v;
        } else {
            c += (v - t) + s;
        }
        s = t;
    }
    s + c
}

/// Entropy (natural log) of a labeling given its class sizes; 0 for a single class (sklearn's `_entropy`).
fn entropy(sizes: &[u64]) -> f64 {
    let sizes: Vec<f64> = sizes.iter().filter(|&&s| s > 0).map(|&s| s as f64).collect();
    if sizes.len() <= 1 {
        return 0.0;
    }
    let total = sum(sizes.iter().copied());
    let log_total = total.ln();
    -sum(sizes.iter().map(|&p| (p / total) * (p.ln() - log_total)))
}

/// Mutual information (natural log) from a contingency table, as `sklearn.metrics.mutual_info_score`.
pub fn mutual_info(c: &Contingency) -> f64 {
    if c.row_sums.len() == 1 || c.col_sums.len() == 1 || c.n == 0 {
        return 0.0;
    }
    let total = c.n as f64;
    let log_total = total.ln();
    let terms = c.cells.iter().map(|&(i, j, v)| {
        let v = v as f64;
        let nm = v / total;
        let outer = (c.row_sums[i] as f64) * (c.col_sums[j] as f64);
        let log_outer = -outer.ln() + log_total + log_total;
        let mi = nm * (v.ln() - log_total) + nm * log_outer;
        if mi.abs() < f64::EPSILON {
            0.0
        } else {
            mi
        }
    });
    sum(terms).max(0.0)
}

/// Normalized mutual information with the arithmetic mean of the entropies as normaliser
/// (`sklearn.metrics.normalized_mutual_info_score(a, b, average_method='arithmetic')`).
///
/// Edge cases as scikit-learn: both labelings a single cluster (or both empty) → 1.0; mutual
/// information 0 otherwise → 0.0. Symmetric in its arguments.
///
/// ```
/// use protein_lm::analysis::information::normalized_mutual_info;
/// assert_eq!(normalized_mutual_info(&[0, 0, 1, 1], &["a", "a", "b", "b"])?, 1.0);
/// assert_eq!(normalized_mutual_info(&[0, 0, 0], &[0, 1, 2])?, 0.0); // one class: nothing shared
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn normalized_mutual_info<A: Eq + Hash, B: Eq + Hash>(a: &[A], b: &[B]) -> Result<f64> {
    let c = Contingency::new(a, b)?;
    let (ka, kb) = (c.row_sums.len(), c.col_sums.len());
    if (ka == 1 && kb == 1) || (ka == 0 && kb == 0) {
        return Ok(1.0);
    }
    let mi = mutual_info(&c);
    if mi == 0.0 {
        return Ok(0.0);
    }
    let normalizer = (entropy(&c.row_sums) + entropy(&c.col_sums)) / 2.0;
    Ok(mi / normalizer)
}

/// Adjusted Rand index (`sklearn.metrics.adjusted_rand_score`), computed from the pair confusion
/// matrix in exact integer arithmetic; 1.0 when the labelings agree on every pair (including the
/// empty and the single-cluster cases).
///
/// ```
/// use protein_lm::analysis::information::adjusted_rand_index;
/// assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[1, 1, 0, 0])?, 1.0);
/// // scikit-learn: adjusted_rand_score([0, 0, 1, 2], [0, 0, 1, 1]) = 0.5714285714285715
/// assert!((adjusted_rand_index(&[0, 0, 1, 2], &[0, 0, 1, 1])? - 4.0 / 7.0).abs() < 1e-15);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn adjusted_rand_index<A: Eq + Hash, B: Eq + Hash>(a: &[A], b: &[B]) -> Result<f64> {
    let c = Contingency::new(a, b)?;
    let n = c.n as i128;
    let sum_squares: i128 = c.cells.iter().map(|&(_, _, v)| (v as i128) * (v as i128)).sum();
    let row_dot: i128 = c.cells.iter().map(|&(_, j, v)| (v as i128) * c.col_sums[j] as i128).sum();
    let col_dot: i128 = c.cells.iter().map(|&(i, _, v)| (v as i128) * c.row_sums[i] as i128).sum();
    let tp = sum_squares - n;
    let fp = row_dot - sum_squares;
    let fn_ = col_dot - sum_squares;
    let tn = n * n - fp - fn_ - sum_squares;
    if fn_ == 0 && fp == 0 {
        return Ok(1.0);
    }
    let num = tp * tn - fn_ * fp;
    let den = (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn);
    Ok(2.0 * num as f64 / den as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_cases_match_sklearn() {
        let one = [0, 0, 0];
        assert_eq!(normalized_mutual_info(&one, &[5, 5, 5]).unwrap(), 1.0);
        assert_eq!(normalized_mutual_info::<u8, u8>(&[], &[]).unwrap(), 1.0);
        assert_eq!(normalized_mutual_info(&one, &[0, 1, 2]).unwrap(), 0.0);
        assert_eq!(normalized_mutual_info(&[0, 0, 1, 1], &["a", "a", "b", "b"]).unwrap(), 1.0);
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[1, 1, 0, 0]).unwrap(), 1.0);
        assert_eq!(adjusted_rand_index(&one, &one).unwrap(), 1.0);
        // sklearn: adjusted_rand_score([0,0,1,2], [0,0,1,1]) = 0.5714285714285715
        assert!((adjusted_rand_index(&[0, 0, 1, 2], &[0, 0, 1, 1]).unwrap() - 0.5714285714285715).abs() < 1e-15);
        assert!(normalized_mutual_info(&[0, 1], &[0]).is_err());
    }
}
