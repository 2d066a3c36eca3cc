//! PRoBERTa's masked-LM corruption: fairseq's `MaskTokensDataset` with the `masked_lm` task's
//! defaults (spec `proberta.md` §5), re-drawn every epoch.
//!
//! For a sample of `L` tokens (`<s>` and `</s>` included, as fairseq does):
//! 1. `⌊0.15·L + U(0,1)⌋` positions, uniformly without replacement over all `L` positions;
//! 2. each chosen position independently: with probability 0.2 it is "random or unmasked", and
//!    of those half are left unchanged and half get a random token (so 10 % / 10 %), the rest (80 %)
//!    become `<mask>`;
//! 3. random tokens are uniform over every id from `nspecial` (4) up, which includes the
//!    `madeupword`s and `<mask>` itself, as fairseq's weights do;
//! 4. the loss targets are the original tokens at every chosen position (unchanged ones included).
//!
//! Each sample's draw comes from its own stream, `Rng::new(seed).fork(epoch).fork(index)` (fairseq:
//! `numpy_seed(seed, epoch, index)`), so the masks are dynamic across epochs, reproducible, and
//! independent of batching and thread count.
//!
//! ```
//! use protein_lm::train::objectives::mlm::{mask_tokens, sample_rng, MaskingOptions};
//! let options = MaskingOptions::proberta(10_009);
//! // <s>, 18 pieces, </s>: ⌊0.15 · 20 + U(0, 1)⌋ = 3 positions are chosen.
//! let tokens: Vec<u32> = std::iter::once(0).chain(4..22).chain([2]).collect();
//! let masked = mask_tokens(&tokens, &options, &mut sample_rng(1, 0, 7));
//! assert_eq!(masked.targets.iter().flatten().count(), 3);
//! // Another epoch, another mask; the same (seed, epoch, index), the same one.
//! assert_eq!(masked, mask_tokens(&tokens, &options, &mut sample_rng(1, 0, 7)));
//! ```

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::models::loss::{cross_entropy, Reduction};
use crate::{Result, Rng};

/// The masked-LM loss on plain tensors: the mean cross-entropy of `logits` `(B, L, V)` (or
/// `(N, V)`) over the positions whose `labels` `(B, L)` (or `(N)`, u32) are not `ignore` — Hugging
/// Face's `labels` with `-100` at unmasked positions, with an id of the caller's choice instead
/// (`u32::MAX`, say). A batch with nothing to predict gives 0.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::train::objectives::mlm::masked_lm_loss;
/// let logits = Tensor::new(&[[[0f32, 0.0], [5.0, -5.0]]], &Device::Cpu)?;
/// let labels = Tensor::new(&[[u32::MAX, 0]], &Device::Cpu)?;
/// let loss = masked_lm_loss(&logits, &labels, u32::MAX)?.to_scalar::<f32>()?;
/// assert!(loss < 1e-4, "only position 1 counts, and it is right");
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn masked_lm_loss(logits: &Tensor, labels: &Tensor, ignore: u32) -> Result<Tensor> {
    cross_entropy(logits, labels, Some(ignore), None, Reduction::WeightedMean)
}

/// Masking settings (fairseq's names and defaults).
///
/// ```
/// use protein_lm::tokenize::vocab::FairseqDictionary;
/// use protein_lm::train::objectives::mlm::MaskingOptions;
/// let dict = FairseqDictionary::build([("SL".to_string(), 9), ("KL".to_string(), 5)]);
/// // `<mask>` is the dictionary's last id; random replacements skip the 4 specials.
/// let options = MaskingOptions::proberta(dict.len() as u32);
/// assert_eq!((options.mask_id, options.nspecial, options.mask_prob), (dict.mask(), 4, 0.15));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaskingOptions {
    pub mask_prob: f64,
    pub leave_unmasked_prob: f64,
    pub random_token_prob: f64,
    /// Ids below this are never drawn as random tokens (`<s>`, `<pad>`, `</s>`, `<unk>`).
    pub nspecial: u32,
    pub mask_id: u32,
    pub vocab_size: u32,
}

impl MaskingOptions {
    /// PRoBERTa's: 15 %, 10 % left, 10 % random, `<mask>` = 10,008 in a 10,009-id vocabulary.
    pub fn proberta(vocab_size: u32) -> Self {
        Self {
            mask_prob: 0.15,
            leave_unmasked_prob: 0.1,
            random_token_prob: 0.1,
            nspecial: 4,
            mask_id: vocab_size - 1,
            vocab_size,
        }
    }
}

/// One corrupted sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    /// The model's input.
    pub input: Vec<u32>,
    /// `Some(original)` at positions the loss is computed on.
    pub targets: Vec<Option<u32>>,
}

/// The sample's own stream for `epoch` (fairseq's `numpy_seed(seed, epoch, index)`).
///
/// ```
/// use protein_lm::train::objectives::mlm::sample_rng;
/// // One stream per (seed, epoch, sample): masks change every epoch but never with batching.
/// assert_eq!(sample_rng(1, 3, 42).next_u64(), sample_rng(1, 3, 42).next_u64());
/// assert_ne!(sample_rng(1, 3, 42).next_u64(), sample_rng(1, 4, 42).next_u64());
/// ```
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> Rng {
    Rng::new(seed).fork(epoch).fork(index)
}

/// Corrupts `tokens` as fairseq's `MaskTokensDataset` does.
///
/// ```
/// use protein_lm::train::objectives::mlm::{mask_tokens, sample_rng, MaskingOptions};
/// let options = MaskingOptions::proberta(30);
/// let tokens: Vec<u32> = std::iter::once(0).chain(4..24).chain([2]).collect();
/// let masked = mask_tokens(&tokens, &options, &mut sample_rng(0, 0, 0));
/// for (i, target) in masked.targets.iter().enumerate() {
///     match target {
///         // Not chosen: the input is the token itself, and no loss.
///         None => assert_eq!(masked.input[i], tokens[i]),
///         // Chosen: `<mask>`, a random regular token or itself; the loss predicts the original.
///         Some(original) => assert!(*original == tokens[i] && (masked.input[i] == tokens[i] || masked.input[i] >= 4)),
///     }
/// }
/// ```
pub fn mask_tokens(tokens: &[u32], options: &MaskingOptions, rng: &mut Rng) -> Masked {
    let len = tokens.len();
    let n_mask = ((options.mask_prob * len as f64 + rng.uniform()) as usize).min(len);
    let chosen = rng.sample_without_replacement(len, n_mask);
    let mut selected = vec![false; len];
    for &i in &chosen {
        selected[i] = true;
    }
    let rand_or_unmask_prob = options.random_token_prob + options.leave_unmasked_prob;
    let unmask_share = if rand_or_unmask_prob > 0.0 { options.leave_unmasked_prob / rand_or_unmask_prob } else { 0.0 };
    let mut input = tokens.to_vec();
    let mut targets = vec![None; len];
    let random_range = (options.vocab_size - options.nspecial) as u64;
    for i in 0..len {
        if !selected[i] {
            continue;
        }
        targets[i] = Some(tokens[i]);
        if rng.uniform() < rand_or_unmask_prob {
            if rng.uniform() < unmask_share {
                continue; // left unchanged, still a target
            }
            input[i] = options.nspecial + rng.below(random_range) as u32;
        } else {
            input[i] = options.mask_id;
        }
    }
    Masked { input, targets }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_ranges_and_determinism() {
        let options = MaskingOptions::proberta(10_009);
        let tokens: Vec<u32> = (0..200).map(|i| 4 + (i * 37 % 9_000) as u32).collect();
        let (mut chosen, mut masked, mut random, mut kept) = (0usize, 0usize, 0usize, 0usize);
        let samples = 2_000;
        for index in 0..samples {
            let m = mask_tokens(&tokens, &options, &mut sample_rng(1, 0, index));
            let n = m.targets.iter().filter(|t| t.is_some()).count();
            // ⌊0.15·200 + U⌋ = 30 exactly.
            assert_eq!(n, 30);
            chosen += n;
            for (i, t) in m.targets.iter().enumerate() {
                match t {
                    None => assert_eq!(m.input[i], tokens[i]),
                    Some(orig) => {
                        assert_eq!(*orig, tokens[i]);
                        if m.input[i] == options.mask_id {
                            masked += 1;
                        } else if m.input[i] == tokens[i] {
                            kept += 1;
                        } else {
                            assert!(m.input[i] >= 4 && m.input[i] < 10_009);
                            random += 1;
                        }
                    }
                }
            }
        }
        let frac = |x: usize| x as f64 / chosen as f64;
        // 60,000 chosen positions: standard errors ≈ 0.0016 (80 %) and 0.0012 (10 %).
        assert!((frac(masked) - 0.8).abs() < 0.008, "{}", frac(masked));
        assert!((frac(random) - 0.1).abs() < 0.006, "{}", frac(random));
        assert!((frac(kept) - 0.1).abs() < 0.006, "{}", frac(kept));
        let a = mask_tokens(&tokens, &options, &mut sample_rng(1, 3, 5));
        assert_eq!(a, mask_tokens(&tokens, &options, &mut sample_rng(1, 3, 5)));
        assert_ne!(a, mask_tokens(&tokens, &options, &mut sample_rng(1, 4, 5)), "masks are re-drawn per epoch");
        // Short samples: ⌊0.15·5 + U⌋ is 0 or 1.
        let counts: Vec<usize> = (0..200)
            .map(|i| mask_tokens(&[0, 5, 6, 7, 2], &options, &mut sample_rng(2, 0, i)).targets.iter().flatten().count())
            .collect();
        assert!(counts.iter().all(|&c| c <= 1) && counts.contains(&0) && counts.contains(&1));
    }
}
