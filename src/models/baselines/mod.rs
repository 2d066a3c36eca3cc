//! The baseline networks PRoBERTa (Nambiar et al. 2020) is compared against, as small trainable
//! classifiers.
//!
//! | model | what the paper used it for | paper's number |
//! |---|---|---|
//! | [`cnn::SimpleCnn`] | "a simple CNN made up of four convolution layers", multi-class family classification | Table 2: accuracy 0.72 |
//! | [`cnn::DeepFam`] | DeepFam (Seo et al. 2018): one convolution layer with kernel sizes 8, 12, …, 36 × 250 units, max-pooled over the sequence, a fully-connected layer, the family | Table 2: accuracy 0.95 (PRoBERTa: 0.92) |
//! | [`mlp::Mlp`] (DeepInteract) | three hidden layers over two proteins' vectors, PPI | Table 3, 20 % of training data, conservative / aggressive accuracy: ProtVec+DI 0.80 / 0.73, DeepFam+DI 0.79 / 0.75 (PIPR 0.81 / 0.77, PRoBERTa 0.96 / 0.79) |
//!
//! Every model implements [`Classifier`] (logits from one input tensor) and trains with
//! [`fit::fit`]. The CNNs read [`one_hot_batch`] encodings; the MLP reads dense rows (3-mer
//! frequency vectors from [`crate::analysis::baselines::kmer_frequency_vectors`], frozen
//! embeddings, or a pair of either side by side: [`mlp::pair_features`]).
//!
//! Padding: a padded position is an all-zero column of the one-hot input (every residue, known or
//! not, sets exactly one channel), so the CNNs recover the mask from the input itself. They zero
//! padded positions after every ReLU; the next convolution then sees exactly the zeros its 'same'
//! padding would add at the end of an unpadded sequence, and the global max-pool over values ≥ 0
//! with padding at 0 is the max over real positions. Logits therefore do not depend on `max_len`
//! (a test checks this), only on the sequence as cut.

pub mod cnn;
pub mod deep_interact;
pub mod fit;
pub mod mlp;

use candle_core::{Device, Tensor};

use crate::analysis::baselines::AMINO_ACIDS;
use crate::{Result, Rng};

/// Channels of [`one_hot_batch`]: the 20 standard amino acids, then one for anything else.
pub const ONE_HOT_CHANNELS: usize = 21;

/// Channel of a residue: its index in [`AMINO_ACIDS`] (`ACDEFGHIKLMNPQRSTVWY`, case-insensitive),
/// else 20 (X, B, Z, J, U, O and any other byte, so no position is silently dropped).
pub fn one_hot_channel(residue: u8) -> usize {
    AMINO_ACIDS.iter().position(|&a| a == residue.to_ascii_uppercase()).unwrap_or(ONE_HOT_CHANNELS - 1)
}

/// `(batch, 21, max_len)` f32 one-hot encoding: sequences cut to `max_len`, shorter ones followed
/// by all-zero columns.
pub fn one_hot_batch(sequences: &[&str], max_len: usize, device: &Device) -> Result<Tensor> {
    if max_len == 0 {
        return Err(crate::Error::invalid("one-hot max_len must be positive"));
    }
    let mut values = vec![0f32; sequences.len() * ONE_HOT_CHANNELS * max_len];
    for (b, sequence) in sequences.iter().enumerate() {
        for (t, &residue) in sequence.as_bytes().iter().take(max_len).enumerate() {
            values[(b * ONE_HOT_CHANNELS + one_hot_channel(residue)) * max_len + t] = 1.0;
        }
    }
    Ok(Tensor::from_vec(values, (sequences.len(), ONE_HOT_CHANNELS, max_len), device)?)
}

/// `(n, max_len · 21)` one-hot rows for a linear model (ridge, logistic regression): residue `t`
/// of a sequence sets column `t · 21 + one_hot_channel(residue)`; sequences are cut to `max_len`,
/// shorter ones end in zero columns. The same encoding as [`one_hot_batch`], flattened position
/// by position.
///
/// ```
/// use protein_lm::models::baselines::one_hot_rows;
/// let x = one_hot_rows(&["AC", "W"], 2);
/// assert_eq!(x.dim(), (2, 42));
/// assert_eq!((x[[0, 0]], x[[0, 21 + 1]], x[[1, 18]]), (1.0, 1.0, 1.0)); // A at 0, C at 1; W at 0
/// assert_eq!(x.row(1).sum(), 1.0); // the second protein's position 1 is padding
/// ```
pub fn one_hot_rows(sequences: &[&str], max_len: usize) -> ndarray::Array2<f64> {
    let mut x = ndarray::Array2::zeros((sequences.len(), max_len * ONE_HOT_CHANNELS));
    for (i, sequence) in sequences.iter().enumerate() {
        for (t, &residue) in sequence.as_bytes().iter().take(max_len).enumerate() {
            x[[i, t * ONE_HOT_CHANNELS + one_hot_channel(residue)]] = 1.0;
        }
    }
    x
}

/// A network that maps one input tensor to class logits `(B, n_classes)`.
pub trait Classifier {
    /// Logits for a batch. Dropout only when `train` and `rng` is given.
    fn logits(&self, x: &Tensor, train: bool, rng: Option<&mut Rng>) -> Result<Tensor>;
    /// Width of the logits.
    fn n_classes(&self) -> usize;
}

/// The rng a forward pass draws dropout from: none outside training.
pub(crate) fn training_rng(train: bool, rng: Option<&mut Rng>) -> Option<&mut Rng> {
    if train {
        rng
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hot_rows_flatten_the_batch_encoding() -> Result<()> {
        let sequences = ["ACy", "XbW*", ""];
        let rows = one_hot_rows(&sequences, 3);
        let batch = one_hot_batch(&sequences, 3, &Device::Cpu)?.to_vec3::<f32>()?;
        for (b, channels) in batch.iter().enumerate() {
            for (c, positions) in channels.iter().enumerate() {
                for (t, &v) in positions.iter().enumerate() {
                    assert_eq!(rows[[b, t * ONE_HOT_CHANNELS + c]], v as f64, "protein {b}, channel {c}, position {t}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn one_hot_known_example_cut_and_padding() -> Result<()> {
        let x = one_hot_batch(&["ACy", "XbW*", ""], 3, &Device::Cpu)?;
        assert_eq!(x.dims(), [3, 21, 3]);
        let x: Vec<Vec<Vec<f32>>> = x.to_vec3()?;
        let hot = |b: usize, t: usize| -> Vec<usize> { (0..21).filter(|&c| x[b][c][t] == 1.0).collect() };
        // A = 0, C = 1, y (upper-cased) = 19; X and b go to 20, W = 18; '*' is cut at max_len 3.
        assert_eq!([hot(0, 0), hot(0, 1), hot(0, 2)], [vec![0], vec![1], vec![19]]);
        assert_eq!([hot(1, 0), hot(1, 1), hot(1, 2)], [vec![20], vec![20], vec![18]]);
        assert!((0..3).all(|t| hot(2, t).is_empty()), "the empty sequence is all padding");
        let total: f32 = x.iter().flatten().flatten().sum();
        assert_eq!(total, 6.0);
        assert!(one_hot_batch(&["A"], 0, &Device::Cpu).is_err());
        Ok(())
    }

    #[test]
    fn every_standard_residue_has_its_own_channel() {
        let channels: Vec<usize> = AMINO_ACIDS.iter().map(|&a| one_hot_channel(a)).collect();
        assert_eq!(channels, (0..20).collect::<Vec<_>>());
        for other in *b"XBZJUO*-." {
            assert_eq!(one_hot_channel(other), 20, "{}", other as char);
        }
    }
}
