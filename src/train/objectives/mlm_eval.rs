//! How well a masked-LM predicts what it was trained to predict: held-out loss, top-1 and top-5
//! accuracy at masked positions against the best context-free guess, and the top predictions at
//! chosen positions of one protein (fill-mask).
//!
//! The masks are drawn as in training ([`mask_tokens`], 80/10/10) from a fixed stream, so two
//! models scored with the same `seed` see the same corrupted inputs.
//!
//! ```
//! use candle_core::{DType, Device};
//! use protein_lm::models::init::SeededVarMap;
//! use protein_lm::models::proberta::{Config, ProbertaForMaskedLm};
//! use protein_lm::train::objectives::mlm::MaskingOptions;
//! use protein_lm::train::objectives::mlm_eval::{evaluate_masked_lm, fill_mask};
//! let config = Config::tiny(30);
//! let model = ProbertaForMaskedLm::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &config)?;
//! // <s> pieces </s>, as the tokenizer encodes proteins.
//! let sequences: Vec<Vec<u32>> = (0..4u32).map(|i| std::iter::once(0).chain((4..20).map(|t| 4 + (t + i) % 25)).chain([2]).collect()).collect();
//! let scores = evaluate_masked_lm(&model, &sequences, &MaskingOptions::proberta(30), 0, 2, &Device::Cpu)?;
//! println!("loss {:.2}, top-1 {:.2} against the majority floor {:.2}", scores.loss, scores.accuracy, scores.majority_accuracy);
//! // The three likeliest pieces at position 3 of the first protein.
//! let top = fill_mask(&model, &sequences[0], &[3], 29, 3, &Device::Cpu)?;
//! assert_eq!(top[0].len(), 3);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::ops::log_softmax;
use serde::Serialize;

use super::mlm::{mask_tokens, sample_rng, MaskingOptions};
use crate::batch::{Batch, Overflow, Padding};
use crate::error::{Error, Result};
use crate::models::proberta::{Forward, ProbertaForMaskedLm};

/// Masked-LM scores over a set of sequences.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proberta::{Config, ProbertaForMaskedLm};
/// use protein_lm::train::objectives::mlm::MaskingOptions;
/// use protein_lm::train::objectives::mlm_eval::evaluate_masked_lm;
/// let config = Config::tiny(30);
/// let model = ProbertaForMaskedLm::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &config)?;
/// // <s> pieces </s>, as the tokenizer encodes proteins.
/// let sequences: Vec<Vec<u32>> = (0..4u32).map(|i| std::iter::once(0).chain((4..20).map(|t| 4 + (t + i) % 25)).chain([2]).collect()).collect();
/// let scores = evaluate_masked_lm(&model, &sequences, &MaskingOptions::proberta(30), 0, 4, &Device::Cpu)?;
/// // ⌊0.15 · 18 + U⌋ = 2 or 3 targets per sequence; most of them `<mask>`.
/// assert!((8..=12).contains(&scores.masked) && scores.at_mask <= scores.masked);
/// assert!(scores.top5_accuracy >= scores.accuracy);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MlmScores {
    /// Positions scored (the loss targets: masked, randomised and kept alike).
    pub masked: usize,
    /// Mean cross-entropy at those positions (nats).
    pub loss: f64,
    pub accuracy: f64,
    pub top5_accuracy: f64,
    /// Positions whose input was `<mask>` (80 % of the scored ones): the model has to infer them,
    /// while at kept positions it can copy its input.
    pub at_mask: usize,
    pub accuracy_at_mask: f64,
    pub top5_accuracy_at_mask: f64,
    /// Accuracy of always guessing the most frequent token of the targets: the context-free floor.
    pub majority_accuracy: f64,
}

/// Scores `model` on `sequences` (token ids with `<s>`/`</s>`), masking each as training does.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proberta::{Config, ProbertaForMaskedLm};
/// use protein_lm::train::objectives::mlm::MaskingOptions;
/// use protein_lm::train::objectives::mlm_eval::evaluate_masked_lm;
/// let config = Config::tiny(30);
/// let model = ProbertaForMaskedLm::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &config)?;
/// // <s> pieces </s>, as the tokenizer encodes proteins.
/// let sequences: Vec<Vec<u32>> = (0..4u32).map(|i| std::iter::once(0).chain((4..20).map(|t| 4 + (t + i) % 25)).chain([2]).collect()).collect();
/// let masking = MaskingOptions::proberta(30);
/// let a = evaluate_masked_lm(&model, &sequences, &masking, 5, 1, &Device::Cpu)?;
/// let b = evaluate_masked_lm(&model, &sequences, &masking, 5, 4, &Device::Cpu)?;
/// // The seed fixes the masks; the batch size does not change them.
/// assert_eq!((a.masked, a.at_mask), (b.masked, b.at_mask));
/// // An untrained model of 30 tokens: near the uniform loss ln 30.
/// assert!((a.loss - 30f64.ln()).abs() < 1.0, "{}", a.loss);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn evaluate_masked_lm(
    model: &ProbertaForMaskedLm,
    sequences: &[Vec<u32>],
    masking: &MaskingOptions,
    seed: u64,
    batch_size: usize,
    device: &Device,
) -> Result<MlmScores> {
    if batch_size == 0 {
        return Err(Error::invalid("batch_size must be positive"));
    }
    let (mut loss, mut masked, mut top1, mut top5) = (0.0f64, 0usize, 0usize, 0usize);
    let (mut at_mask, mut top1_at_mask, mut top5_at_mask) = (0usize, 0usize, 0usize);
    let mut target_counts: BTreeMap<u32, usize> = BTreeMap::new();
    for (chunk_index, chunk) in sequences.chunks(batch_size).enumerate() {
        let mut inputs = Vec::with_capacity(chunk.len());
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let mut was_masked = Vec::new();
        let longest = chunk.iter().map(Vec::len).max().unwrap_or(0);
        for (r, seq) in chunk.iter().enumerate() {
            let index = (chunk_index * batch_size + r) as u64;
            let m = mask_tokens(seq, masking, &mut sample_rng(seed, 0, index));
            for (j, t) in m.targets.iter().enumerate() {
                if let Some(t) = t {
                    positions.push((r * longest + j) as u32);
                    targets.push(*t);
                    was_masked.push(m.input[j] == masking.mask_id);
                }
            }
            inputs.push(m.input);
        }
        if targets.is_empty() {
            continue;
        }
        let batch = Batch::from_sequences(&inputs, Padding::proberta_training(), Overflow::Error, device)?;
        let out = model.encoder.forward(&batch.ids, Forward::default(), None)?;
        let (b, l, h) = out.last().dims3()?;
        let n = positions.len();
        let picked = out.last().reshape((b * l, h))?.index_select(&Tensor::from_vec(positions, n, device)?, 0)?;
        let logits = model.lm_head.forward(&picked, model.encoder.embeddings().word_embeddings())?;
        let log_probs = log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?.to_vec2::<f32>()?;
        for ((row, &t), &is_mask) in log_probs.iter().zip(&targets).zip(&was_masked) {
            loss -= row[t as usize] as f64;
            let better = row.iter().filter(|&&v| v > row[t as usize]).count();
            top1 += (better == 0) as usize;
            top5 += (better < 5) as usize;
            if is_mask {
                at_mask += 1;
                top1_at_mask += (better == 0) as usize;
                top5_at_mask += (better < 5) as usize;
            }
            *target_counts.entry(t).or_default() += 1;
        }
        masked += n;
    }
    if masked == 0 {
        return Err(Error::invalid("no positions to score: the sequences are empty"));
    }
    let majority = target_counts.values().copied().max().unwrap_or(0);
    let m = masked as f64;
    Ok(MlmScores {
        masked,
        loss: loss / m,
        accuracy: top1 as f64 / m,
        top5_accuracy: top5 as f64 / m,
        at_mask,
        accuracy_at_mask: top1_at_mask as f64 / at_mask.max(1) as f64,
        top5_accuracy_at_mask: top5_at_mask as f64 / at_mask.max(1) as f64,
        majority_accuracy: majority as f64 / m,
    })
}

/// Puts `<mask>` at each of `positions` of `ids` (one protein, with `<s>`/`</s>`) at once and
/// returns, per position, the `k` most probable tokens with their probabilities.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proberta::{Config, ProbertaForMaskedLm};
/// use protein_lm::train::objectives::mlm_eval::fill_mask;
/// let model = ProbertaForMaskedLm::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &Config::tiny(30))?;
/// let ids = [0, 5, 6, 7, 8, 2];
/// let top = fill_mask(&model, &ids, &[2, 4], 29, 3, &Device::Cpu)?;
/// // Per masked position, the k likeliest tokens, most probable first.
/// assert!(top.iter().all(|t| t.len() == 3 && t[0].1 >= t[1].1 && t[1].1 >= t[2].1));
/// assert!(fill_mask(&model, &ids, &[0], 29, 3, &Device::Cpu).is_err()); // <s> is no piece
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn fill_mask(
    model: &ProbertaForMaskedLm,
    ids: &[u32],
    positions: &[usize],
    mask_id: u32,
    k: usize,
    device: &Device,
) -> Result<Vec<Vec<(u32, f32)>>> {
    let mut input = ids.to_vec();
    for &p in positions {
        if p == 0 || p + 1 >= ids.len() {
            return Err(Error::invalid(format!(
                "position {p} is not a piece of this {}-token input (0 is <s>, {} is </s>)",
                ids.len(),
                ids.len().saturating_sub(1)
            )));
        }
        input[p] = mask_id;
    }
    let len = input.len();
    let ids_t = Tensor::from_vec(input, (1, len), device)?;
    let (logits, _) = model.forward(&ids_t, Forward::default(), None)?;
    let probs = candle_nn::ops::softmax_last_dim(&logits.squeeze(0)?.to_dtype(DType::F32)?)?.to_vec2::<f32>()?;
    Ok(positions
        .iter()
        .map(|&p| {
            let mut ranked: Vec<(u32, f32)> = probs[p].iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            ranked.truncate(k);
            ranked
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::init::SeededVarMap;
    use crate::models::proberta::Config;

    fn small_model() -> (ProbertaForMaskedLm, Config) {
        let config = Config {
            vocab_size: 40,
            hidden_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 32,
            ..Config::default()
        };
        let vars = SeededVarMap::new(3);
        let model = ProbertaForMaskedLm::load(vars.var_builder(DType::F32, &Device::Cpu), &config).unwrap();
        (model, config)
    }

    #[test]
    fn scores_agree_with_a_direct_computation_and_do_not_depend_on_batching() {
        let (model, config) = small_model();
        let masking = MaskingOptions { mask_id: 39, ..MaskingOptions::proberta(config.vocab_size as u32) };
        let seqs: Vec<Vec<u32>> = (0..7)
            .map(|i| {
                std::iter::once(0).chain((0..(12 + 3 * i)).map(|j| 4 + (j * 7 + i) as u32 % 30)).chain([2]).collect()
            })
            .collect();
        let a = evaluate_masked_lm(&model, &seqs, &masking, 5, 3, &Device::Cpu).unwrap();
        let b = evaluate_masked_lm(&model, &seqs, &masking, 5, 7, &Device::Cpu).unwrap();
        assert_eq!(a.masked, b.masked);
        assert!((a.loss - b.loss).abs() < 1e-5, "{a:?} {b:?}");
        assert_eq!(a.accuracy, b.accuracy);
        // Direct: one sequence at a time, full logits, the same masks.
        let (mut loss, mut n, mut hits, mut n_mask, mut hits_mask) = (0.0, 0, 0, 0, 0);
        for (i, s) in seqs.iter().enumerate() {
            let m = mask_tokens(s, &masking, &mut sample_rng(5, 0, i as u64));
            let ids = Tensor::from_vec(m.input.clone(), (1, s.len()), &Device::Cpu).unwrap();
            let (logits, _) = model.forward(&ids, Forward::default(), None).unwrap();
            let lp = log_softmax(&logits.squeeze(0).unwrap(), D::Minus1).unwrap().to_vec2::<f32>().unwrap();
            for (j, t) in m.targets.iter().enumerate() {
                if let Some(t) = t {
                    loss -= lp[j][*t as usize] as f64;
                    n += 1;
                    let best = lp[j].iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).unwrap().0;
                    hits += (best == *t as usize) as usize;
                    if m.input[j] == 39 {
                        n_mask += 1;
                        hits_mask += (best == *t as usize) as usize;
                    }
                }
            }
        }
        assert_eq!(a.masked, n);
        assert!((a.loss - loss / n as f64).abs() < 1e-5);
        assert!((a.accuracy - hits as f64 / n as f64).abs() < 1e-12);
        assert_eq!(a.at_mask, n_mask);
        assert!(n_mask > 0 && n_mask < n, "some targets are kept or random: {n_mask} of {n}");
        assert!((a.accuracy_at_mask - hits_mask as f64 / n_mask as f64).abs() < 1e-12);
        assert!(a.top5_accuracy >= a.accuracy && a.majority_accuracy > 0.0);
        // A random 40-token model is near the uniform loss ln 40.
        assert!((a.loss - (40f64).ln()).abs() < 1.0, "{}", a.loss);
    }

    #[test]
    fn fill_mask_ranks_probabilities_and_rejects_specials() {
        let (model, _) = small_model();
        let ids = vec![0, 5, 6, 7, 8, 2];
        let top = fill_mask(&model, &ids, &[2, 4], 39, 3, &Device::Cpu).unwrap();
        assert_eq!(top.len(), 2);
        for t in &top {
            assert_eq!(t.len(), 3);
            assert!(t[0].1 >= t[1].1 && t[1].1 >= t[2].1 && t[0].1 <= 1.0);
        }
        let err = fill_mask(&model, &ids, &[5], 39, 3, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("position 5"), "{err}");
    }
}
