//! Sequence-only baselines: k-mer frequency vectors (ProtFreqVec with k = 3: 20³ = 8,000 features).
//!
//! The alphabet is the 20 standard amino acids in alphabetical one-letter order
//! `ACDEFGHIKLMNPQRSTVWY`; k-mer `a₁…a_k` has index `Σ idx(aᵢ)·20^(k−i)` (so `AAA` = 0, `AAC` = 1,
//! `YYY` = 7,999). Letters are upper-cased first. Any other letter (X, B, Z, J, U, O, `*`, gaps)
//! breaks the sequence: every window containing it is skipped, not counted under a substitute.
//! Counts are divided by the number of windows counted, so each row sums to 1; a sequence with no
//! valid window (shorter than k, or all unknown letters) gives an all-zero row.

use ndarray::Array2;

use crate::error::{Error, Result};

/// The 20 standard amino acids, in the order of the feature index.
pub const AMINO_ACIDS: &[u8; 20] = b"ACDEFGHIKLMNPQRSTVWY";

fn residue_index(b: u8) -> Option<usize> {
    AMINO_ACIDS.iter().position(|&a| a == b.to_ascii_uppercase())
}

/// One row per sequence of normalised k-mer frequencies (`20^k` columns; `k` from 1 to 5).
///
/// ```
/// use protein_lm::analysis::baselines::kmer_frequency_vectors;
/// let v = kmer_frequency_vectors(&["AAAC", "ACDX"], 3)?;
/// assert_eq!(v.ncols(), 8000);
/// assert_eq!((v[[0, 0]], v[[0, 1]]), (0.5, 0.5)); // AAA and AAC, one window each
/// // CDX holds an unknown letter, so ACD is the only window counted.
/// assert_eq!(v[[1, 20 + 2]], 1.0);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn kmer_frequency_vectors<S: AsRef<[u8]>>(sequences: &[S], k: usize) -> Result<Array2<f64>> {
    if !(1..=5).contains(&k) {
        return Err(Error::invalid(format!("k-mer length must be between 1 and 5, got {k}")));
    }
    let dim = 20usize.pow(k as u32);
    let mut out = Array2::<f64>::zeros((sequences.len(), dim));
    for (mut row, seq) in out.rows_mut().into_iter().zip(sequences) {
        let idx: Vec<Option<usize>> = seq.as_ref().iter().map(|&b| residue_index(b)).collect();
        let mut total = 0usize;
        // Rolling index over the current run of standard residues.
        let (mut code, mut run) = (0usize, 0usize);
        for r in idx {
            match r {
                Some(r) => {
                    code = (code * 20 + r) % dim;
                    run += 1;
                    if run >= k {
                        row[code] += 1.0;
                        total += 1;
                    }
                }
                None => {
                    code = 0;
                    run = 0;
                }
            }
        }
        if total > 0 {
            row /= total as f64;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_mers_are_counted_normalised_and_unknown_letters_skipped() {
        let v = kmer_frequency_vectors(&["AAAC", "acdX", "MK", "YYYY"], 3).unwrap();
        assert_eq!(v.ncols(), 8000);
        assert_eq!(v[(0, 0)], 0.5); // AAA
        assert_eq!(v[(0, 1)], 0.5); // AAC
        assert_eq!(v[(1, 20 + 2)], 1.0); // ACD = 0·400 + 1·20 + 2 (lower case accepted), CDX skipped
        assert!(v.row(2).iter().all(|&x| x == 0.0)); // shorter than k
        assert_eq!(v[(3, 7999)], 1.0);
        for r in [0, 1, 3] {
            assert!((v.row(r).sum() - 1.0).abs() < 1e-15);
        }
        let w = kmer_frequency_vectors(&["ACXDE"], 2).unwrap();
        assert_eq!(w[(0, 1)], 0.5); // AC
        assert_eq!(w[(0, 2 * 20 + 3)], 0.5); // DE; CX and XD skipped
        assert!(kmer_frequency_vectors(&["A"], 0).is_err());
        assert!(kmer_frequency_vectors(&["A"], 6).is_err());
    }
}
