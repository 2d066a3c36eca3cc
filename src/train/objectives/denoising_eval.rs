//! How well a pretrained ProteinBERT does what it was trained to do, on held-out proteins:
//! the denoising losses at a chosen padded length (the paper's Fig. 2 compares 128, 512 and
//! 1,024), and GO-term prediction from the sequence alone (annotations withheld, as for a
//! protein nobody has annotated).
//!
//! The corruption is the training one ([`encode_batch`]) drawn from a fixed stream, so two models
//! or two lengths scored with the same `seed` see the same noise. Only 5 % of the input tokens
//! are replaced, so most positions can be copied from the input: the loss at the corrupted
//! positions is reported beside the loss over all of them.
//!
//! ```
//! use candle_core::{DType, Device};
//! use protein_lm::models::init::SeededVarMap;
//! use protein_lm::models::proteinbert::{Config, ProteinBert};
//! use protein_lm::train::objectives::denoising::{AnnotatedCorpus, DenoisingOptions};
//! use protein_lm::train::objectives::denoising_eval::{evaluate_denoising, predict_annotations};
//! let model = ProteinBert::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &Config::tiny(4))?;
//! // Three proteins (residue ids, no START/END) and their GO term indices among 4.
//! let corpus = AnnotatedCorpus {
//!     tokens: vec![vec![10, 8, 16, 0, 19], vec![3, 3, 7, 1, 9, 12, 14, 2], vec![5; 10]],
//!     annotations: vec![vec![0, 2], vec![], vec![1]],
//!     n_terms: 4,
//! };
//! let options = DenoisingOptions::reference();
//! // The paper's Fig. 2 question: the same proteins scored at two padded lengths, the same noise.
//! let short = evaluate_denoising(&model, &corpus, 8, 2, &options, 7, &Device::Cpu)?;
//! let long = evaluate_denoising(&model, &corpus, 32, 2, &options, 7, &Device::Cpu)?;
//! println!("token loss {:.3} at 8, {:.3} at 32", short.token_loss, long.token_loss);
//! // GO terms from the sequence alone.
//! let probabilities = predict_annotations(&model, &corpus, 32, 2, 7, &Device::Cpu)?;
//! assert_eq!((probabilities.len(), probabilities[0].len()), (3, 4));
//! # Ok::<(), protein_lm::Error>(())
//! ```

use candle_core::{DType, Device, Tensor, D};
use candle_nn::ops::log_softmax;
use serde::Serialize;

use super::denoising::{crop_and_pad, encode_batch, AnnotatedCorpus, DenoisingOptions, Episode};
use crate::analysis::metrics::roc_auc;
use crate::error::{Error, Result};
use crate::models::proteinbert::{Forward, ProteinBert};
use crate::tokenize::residue::{END, PAD, START};
use crate::Rng;

/// Denoising scores over a set of proteins at one padded length.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proteinbert::{Config, ProteinBert};
/// use protein_lm::train::objectives::denoising::{AnnotatedCorpus, DenoisingOptions};
/// use protein_lm::train::objectives::denoising_eval::evaluate_denoising;
/// let model = ProteinBert::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &Config::tiny(4))?;
/// // Three proteins (residue ids, no START/END) and their GO term indices among 4.
/// let corpus = AnnotatedCorpus {
///     tokens: vec![vec![10, 8, 16, 0, 19], vec![3, 3, 7, 1, 9, 12, 14, 2], vec![5; 10]],
///     annotations: vec![vec![0, 2], vec![], vec![1]],
///     n_terms: 4,
/// };
/// let scores = evaluate_denoising(&model, &corpus, 8, 2, &DenoisingOptions::reference(), 7, &Device::Cpu)?;
/// // Proteins of 8 and 10 residues do not fit 8 tokens with START and END: scored on a window.
/// assert_eq!((scores.proteins, scores.cropped, scores.annotated), (3, 2, 2));
/// assert!(scores.corrupted <= scores.positions);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DenoisingScores {
    pub seq_len: usize,
    pub proteins: usize,
    /// Proteins longer than `seq_len − 2` residues, scored on a random window (as in training).
    pub cropped: usize,
    /// Scored positions: every non-PAD position of the clean (cropped) sequence.
    pub positions: usize,
    /// Mean token cross-entropy over those positions (nats per residue).
    pub token_loss: f64,
    pub token_accuracy: f64,
    /// Positions whose input token was replaced by noise with a different token.
    pub corrupted: usize,
    pub corrupted_loss: f64,
    pub corrupted_accuracy: f64,
    /// Accuracy of always guessing the most frequent target token at corrupted positions.
    pub corrupted_majority_accuracy: f64,
    /// Mean binary cross-entropy per GO term over the annotated proteins (the training loss's
    /// annotation part, with the same dropped and withheld inputs).
    pub annotation_loss: f64,
    pub annotated: usize,
}

/// Scores `model` on every protein of `corpus` at padded length `seq_len`, corrupted as
/// `options` says (its episodes are ignored).
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proteinbert::{Config, ProteinBert};
/// use protein_lm::train::objectives::denoising::{AnnotatedCorpus, DenoisingOptions};
/// use protein_lm::train::objectives::denoising_eval::evaluate_denoising;
/// let model = ProteinBert::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &Config::tiny(4))?;
/// // Three proteins (residue ids, no START/END) and their GO term indices among 4.
/// let corpus = AnnotatedCorpus {
///     tokens: vec![vec![10, 8, 16, 0, 19], vec![3, 3, 7, 1, 9, 12, 14, 2], vec![5; 10]],
///     annotations: vec![vec![0, 2], vec![], vec![1]],
///     n_terms: 4,
/// };
/// let options = DenoisingOptions::reference();
/// let scores = evaluate_denoising(&model, &corpus, 32, 2, &options, 7, &Device::Cpu)?;
/// // Every START, residue and END is scored: 7 + 10 + 12 positions.
/// assert_eq!(scores.positions, 29);
/// // A fixed seed: two models (or two runs) see the same corruption; batching changes nothing.
/// assert_eq!(evaluate_denoising(&model, &corpus, 32, 3, &options, 7, &Device::Cpu)?.corrupted, scores.corrupted);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn evaluate_denoising(
    model: &ProteinBert,
    corpus: &AnnotatedCorpus,
    seq_len: usize,
    batch_size: usize,
    options: &DenoisingOptions,
    seed: u64,
    device: &Device,
) -> Result<DenoisingScores> {
    if batch_size == 0 || seq_len < 3 {
        return Err(Error::invalid(format!(
            "batch_size must be positive and seq_len ≥ 3 (got {batch_size}, {seq_len})"
        )));
    }
    if corpus.is_empty() {
        return Err(Error::invalid("no proteins to score"));
    }
    let options = DenoisingOptions { episodes: vec![Episode { seq_len, batch_size }], ..options.clone() };
    let mut rng = Rng::new(seed);
    let (mut loss, mut positions, mut correct) = (0.0f64, 0usize, 0usize);
    let (mut corrupted_loss, mut corrupted, mut corrupted_correct) = (0.0f64, 0usize, 0usize);
    let mut corrupted_targets = [0usize; 32];
    let (mut annotation_loss, mut annotated) = (0.0f64, 0usize);
    let rows: Vec<usize> = (0..corpus.len()).collect();
    for chunk in rows.chunks(batch_size) {
        let batch = encode_batch(corpus, chunk, 0, &options, &mut rng, device)?;
        let out = model.forward(&batch.input_tokens, &batch.input_annotations, Forward::default())?;
        let log_probs = log_softmax(&out.token_logits.to_dtype(DType::F32)?, D::Minus1)?.to_vec3::<f32>()?;
        let inputs = batch.input_tokens.to_vec2::<u32>()?;
        let targets = batch.target_tokens.to_vec2::<u32>()?;
        for ((row, input), target) in log_probs.iter().zip(&inputs).zip(&targets) {
            for ((p, &x), &t) in row.iter().zip(input).zip(target) {
                if t == PAD {
                    continue;
                }
                let nll = -(p[t as usize] as f64);
                let best = argmax(p);
                positions += 1;
                loss += nll;
                correct += (best == t as usize) as usize;
                if x != t {
                    corrupted += 1;
                    corrupted_loss += nll;
                    corrupted_correct += (best == t as usize) as usize;
                    corrupted_targets[(t as usize).min(31)] += 1;
                }
            }
        }
        let logits = out.annotation_logits.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let labels = batch.target_annotations.to_vec2::<f32>()?;
        for (&i, (x, y)) in chunk.iter().zip(logits.iter().zip(&labels)) {
            if corpus.annotations[i].is_empty() {
                continue;
            }
            // log(1 + e^x) − y·x, stable for large |x|.
            let bce: f64 = x.iter().zip(y).map(|(&x, &y)| x.max(0.0) + (-x.abs()).exp().ln_1p() - y as f64 * x).sum();
            annotation_loss += bce / x.len() as f64;
            annotated += 1;
        }
    }
    let cropped = corpus.tokens.iter().filter(|t| t.len() + 2 > seq_len).count();
    let ratio = |a: f64, n: usize| if n == 0 { f64::NAN } else { a / n as f64 };
    Ok(DenoisingScores {
        seq_len,
        proteins: corpus.len(),
        cropped,
        positions,
        token_loss: ratio(loss, positions),
        token_accuracy: ratio(correct as f64, positions),
        corrupted,
        corrupted_loss: ratio(corrupted_loss, corrupted),
        corrupted_accuracy: ratio(corrupted_correct as f64, corrupted),
        corrupted_majority_accuracy: ratio(*corrupted_targets.iter().max().unwrap_or(&0) as f64, corrupted),
        annotation_loss: ratio(annotation_loss, annotated),
        annotated,
    })
}

fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// GO-term probabilities predicted from the sequence alone: `(proteins, terms)`, row `i` for
/// protein `i` of the corpus. Inputs are the clean tokens (proteins longer than `seq_len − 2`
/// cropped to a window drawn from `seed`) with an all-zero annotation vector.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proteinbert::{Config, ProteinBert};
/// use protein_lm::train::objectives::denoising::AnnotatedCorpus;
/// use protein_lm::train::objectives::denoising_eval::{annotation_aucs, predict_annotations};
/// let model = ProteinBert::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &Config::tiny(4))?;
/// // Three proteins (residue ids, no START/END) and their GO term indices among 4.
/// let corpus = AnnotatedCorpus {
///     tokens: vec![vec![10, 8, 16, 0, 19], vec![3, 3, 7, 1, 9, 12, 14, 2], vec![5; 10]],
///     annotations: vec![vec![0, 2], vec![], vec![1]],
///     n_terms: 4,
/// };
/// let probabilities = predict_annotations(&model, &corpus, 32, 2, 0, &Device::Cpu)?;
/// assert!(probabilities.iter().flatten().all(|p| (0.0..=1.0).contains(p)));
/// // Terms 0, 1 and 2 each annotate one protein and not the others: an AUC per term.
/// let (per_term, _micro) = annotation_aucs(&probabilities, &corpus, 1)?;
/// assert_eq!(per_term.iter().map(|t| t.term).collect::<Vec<_>>(), [0, 1, 2]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn predict_annotations(
    model: &ProteinBert,
    corpus: &AnnotatedCorpus,
    seq_len: usize,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    if batch_size == 0 || seq_len < 3 {
        return Err(Error::invalid(format!(
            "batch_size must be positive and seq_len ≥ 3 (got {batch_size}, {seq_len})"
        )));
    }
    let mut rng = Rng::new(seed);
    let mut probabilities = Vec::with_capacity(corpus.len());
    let rows: Vec<usize> = (0..corpus.len()).collect();
    for chunk in rows.chunks(batch_size) {
        let mut ids = Vec::with_capacity(chunk.len() * seq_len);
        for &i in chunk {
            let mut with_ends = Vec::with_capacity(corpus.tokens[i].len() + 2);
            with_ends.push(START);
            with_ends.extend_from_slice(&corpus.tokens[i]);
            with_ends.push(END);
            ids.extend(crop_and_pad(&with_ends, seq_len, &mut rng));
        }
        let tokens = Tensor::from_vec(ids, (chunk.len(), seq_len), device)?;
        let out = model.forward_without_annotations(&tokens, false)?;
        probabilities.extend(out.annotation_probabilities()?.to_dtype(DType::F32)?.to_vec2::<f32>()?);
    }
    Ok(probabilities)
}

/// ROC AUC of one GO term over a set of proteins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TermAuc {
    /// Index into the model's GO vocabulary (`go_terms.txt`).
    pub term: usize,
    pub positives: usize,
    pub auc: f64,
}

/// Per-term ROC AUC of `probabilities` (from [`predict_annotations`]) against the corpus's true
/// terms, for every term with at least `min_positives` positive and one negative protein; and the
/// micro AUC over all (protein, term) pairs of those terms.
///
/// ```
/// use protein_lm::train::objectives::denoising::AnnotatedCorpus;
/// use protein_lm::train::objectives::denoising_eval::annotation_aucs;
/// let corpus = AnnotatedCorpus {
///     tokens: vec![vec![1]; 4],
///     annotations: vec![vec![0], vec![0], vec![1], vec![]],
///     n_terms: 2,
/// };
/// // Each term's positives score above its negatives: AUC 1 per term, and over all pairs.
/// let probabilities = vec![vec![0.9, 0.1], vec![0.8, 0.3], vec![0.2, 0.7], vec![0.1, 0.2]];
/// let (per_term, micro) = annotation_aucs(&probabilities, &corpus, 1)?;
/// assert_eq!(per_term.iter().map(|t| (t.term, t.positives, t.auc)).collect::<Vec<_>>(), [(0, 2, 1.0), (1, 1, 1.0)]);
/// assert_eq!(micro, 1.0);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn annotation_aucs(
    probabilities: &[Vec<f32>],
    corpus: &AnnotatedCorpus,
    min_positives: usize,
) -> Result<(Vec<TermAuc>, f64)> {
    if probabilities.len() != corpus.len() {
        return Err(Error::invalid(format!(
            "{} rows of probabilities for {} proteins",
            probabilities.len(),
            corpus.len()
        )));
    }
    if let Some((i, row)) = probabilities.iter().enumerate().find(|(_, r)| r.len() != corpus.n_terms) {
        return Err(Error::invalid(format!("row {i} has {} terms, the corpus {}", row.len(), corpus.n_terms)));
    }
    let n = corpus.len();
    let mut labels = vec![vec![false; n]; corpus.n_terms];
    for (i, terms) in corpus.annotations.iter().enumerate() {
        for &t in terms {
            labels[t as usize][i] = true;
        }
    }
    let mut per_term = Vec::new();
    let (mut all_labels, mut all_scores) = (Vec::new(), Vec::new());
    for (term, y) in labels.iter().enumerate() {
        let positives = y.iter().filter(|&&b| b).count();
        if positives < min_positives.max(1) || positives == n {
            continue;
        }
        let scores: Vec<f64> = probabilities.iter().map(|r| r[term] as f64).collect();
        per_term.push(TermAuc { term, positives, auc: roc_auc(y, &scores)? });
        all_labels.extend_from_slice(y);
        all_scores.extend(scores);
    }
    if per_term.is_empty() {
        return Err(Error::invalid(format!("no GO term has {min_positives} positive and one negative protein")));
    }
    let micro = roc_auc(&all_labels, &all_scores)?;
    Ok((per_term, micro))
}

/// One point of a pretraining curve: the mean of the logged updates of one episode segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePoint {
    /// The last update of the segment.
    pub step: u64,
    /// Proteins processed by the whole run up to that update (all episodes).
    pub proteins: u64,
    pub token_loss_per_residue: f64,
    pub annotation_loss: f64,
}

/// The training losses of a ProteinBERT pretraining log, one curve per episode length (the
/// paper's Fig. 2), against the proteins processed so far. `train_log` holds the log's `train`
/// records in order; consecutive records of one episode are averaged into one point. Processed
/// proteins count every update, logged or not: the updates since the previous record are
/// attributed to the record's episode (exact when the episode switch is a multiple of the
/// logging interval, as in the shipped configs).
///
/// ```
/// use protein_lm::train::objectives::denoising::Episode;
/// use protein_lm::train::objectives::denoising_eval::pretraining_curves;
/// // Three `train` records of a log.jsonl: two in the 128-token episode, then one at 512.
/// let log: Vec<serde_json::Value> = [(10, 128, 3.0, 0.5), (20, 128, 2.5, 0.25), (30, 512, 2.75, 0.375)]
///     .iter()
///     .map(|&(step, seq_len, token, annotation)| serde_json::json!({
///         "kind": "train", "step": step, "seq_len": seq_len,
///         "token_loss_per_residue": token, "annotation_loss": annotation,
///     }))
///     .collect();
/// let episodes = [Episode { seq_len: 128, batch_size: 8 }, Episode { seq_len: 512, batch_size: 4 }];
/// let curves = pretraining_curves(&log, &episodes)?;
/// // One point per episode segment: the mean of its records, at the proteins processed by then.
/// let first = &curves[0].1[0];
/// assert_eq!((curves[0].0, first.step, first.proteins), (128, 20, 160));
/// assert_eq!((first.token_loss_per_residue, first.annotation_loss), (2.75, 0.375));
/// assert_eq!(curves[1].1[0].proteins, 160 + 10 * 4);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn pretraining_curves(
    train_log: &[serde_json::Value],
    episodes: &[Episode],
) -> Result<Vec<(usize, Vec<CurvePoint>)>> {
    let field = |r: &serde_json::Value, k: &str| -> Result<f64> {
        r[k].as_f64().ok_or_else(|| Error::invalid(format!("train record at step {} has no numeric `{k}`", r["step"])))
    };
    let mut curves: Vec<(usize, Vec<CurvePoint>)> = episodes.iter().map(|e| (e.seq_len, Vec::new())).collect();
    let (mut proteins, mut previous_step) = (0u64, 0u64);
    // The open segment: its episode and the sums of its records.
    let mut open: Option<(usize, f64, f64, usize, u64)> = None;
    let close = |open: &mut Option<(usize, f64, f64, usize, u64)>,
                 proteins: u64,
                 curves: &mut Vec<(usize, Vec<CurvePoint>)>| {
        if let Some((e, token, annotation, n, step)) = open.take() {
            curves[e].1.push(CurvePoint {
                step,
                proteins,
                token_loss_per_residue: token / n as f64,
                annotation_loss: annotation / n as f64,
            });
        }
    };
    for r in train_log {
        let step = field(r, "step")? as u64;
        let seq_len = field(r, "seq_len")? as usize;
        let e = episodes.iter().position(|e| e.seq_len == seq_len).ok_or_else(|| {
            Error::invalid(format!("train record at step {step}: seq_len {seq_len} is not an episode of the config"))
        })?;
        if step <= previous_step {
            return Err(Error::invalid(format!("train records out of order: step {step} after {previous_step}")));
        }
        if open.as_ref().is_some_and(|o| o.0 != e) {
            close(&mut open, proteins, &mut curves);
        }
        proteins += (step - previous_step) * episodes[e].batch_size as u64;
        previous_step = step;
        let (token, annotation) = (field(r, "token_loss_per_residue")?, field(r, "annotation_loss")?);
        let o = open.get_or_insert((e, 0.0, 0.0, 0, step));
        o.1 += token;
        o.2 += annotation;
        o.3 += 1;
        o.4 = step;
    }
    close(&mut open, proteins, &mut curves);
    Ok(curves)
}

/// Proteins a ProteinBERT pretraining had processed by update `step`, from its log's `train`
/// records (the updates between two records are attributed to the later record's episode, as in
/// [`pretraining_curves`]).
///
/// ```
/// use protein_lm::train::objectives::denoising::Episode;
/// use protein_lm::train::objectives::denoising_eval::proteins_processed;
/// // Three `train` records of a log.jsonl: two in the 128-token episode, then one at 512.
/// let log: Vec<serde_json::Value> = [(10, 128, 3.0, 0.5), (20, 128, 2.5, 0.25), (30, 512, 2.75, 0.375)]
///     .iter()
///     .map(|&(step, seq_len, token, annotation)| serde_json::json!({
///         "kind": "train", "step": step, "seq_len": seq_len,
///         "token_loss_per_residue": token, "annotation_loss": annotation,
///     }))
///     .collect();
/// let episodes = [Episode { seq_len: 128, batch_size: 8 }, Episode { seq_len: 512, batch_size: 4 }];
/// // Updates 1–20 at 8 proteins each, 21–25 at 4: the x value of a checkpoint at update 25.
/// assert_eq!(proteins_processed(&log, &episodes, 25)?, 20 * 8 + 5 * 4);
/// assert!(proteins_processed(&log, &episodes, 31).is_err()); // past the end of the log
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn proteins_processed(train_log: &[serde_json::Value], episodes: &[Episode], step: u64) -> Result<u64> {
    let (mut proteins, mut previous) = (0u64, 0u64);
    for r in train_log {
        if previous >= step {
            break;
        }
        let at = r["step"].as_u64().ok_or_else(|| Error::invalid("a train record has no `step`"))?;
        let seq_len = r["seq_len"]
            .as_f64()
            .ok_or_else(|| Error::invalid(format!("train record at step {at} has no `seq_len`")))?;
        let e = episodes.iter().find(|e| e.seq_len as f64 == seq_len).ok_or_else(|| {
            Error::invalid(format!("train record at step {at}: seq_len {seq_len} is not an episode of the config"))
        })?;
        proteins += (at.min(step).saturating_sub(previous)) * e.batch_size as u64;
        previous = at;
    }
    if previous < step {
        return Err(Error::invalid(format!("the log ends at update {previous}, before {step}")));
    }
    Ok(proteins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::init::SeededVarMap;
    use crate::models::proteinbert::Config;

    fn corpus() -> AnnotatedCorpus {
        let mut rng = Rng::new(3);
        let tokens: Vec<Vec<u32>> =
            (0..12).map(|i| (0..(10 + 9 * i)).map(|_| rng.below(20) as u32).collect()).collect();
        let annotations = (0..12).map(|i| if i % 4 == 3 { vec![] } else { vec![(i % 3) as u32, 4] }).collect();
        AnnotatedCorpus { tokens, annotations, n_terms: 6 }
    }

    fn model(n_annotations: usize) -> ProteinBert {
        let vars = SeededVarMap::new(0);
        ProteinBert::load(vars.var_builder(DType::F32, &Device::Cpu), &Config::tiny(n_annotations)).unwrap()
    }

    #[test]
    fn denoising_scores_count_positions_and_match_the_training_loss_on_one_batch() -> Result<()> {
        let corpus = corpus();
        let model = model(6);
        let options = DenoisingOptions::reference();
        let s = evaluate_denoising(&model, &corpus, 64, 4, &options, 9, &Device::Cpu)?;
        let expected_positions: usize = corpus.tokens.iter().map(|t| (t.len() + 2).min(64)).sum();
        assert_eq!(s.positions, expected_positions);
        assert_eq!(s.cropped, corpus.tokens.iter().filter(|t| t.len() + 2 > 64).count());
        assert_eq!(s.annotated, 9);
        assert!(s.corrupted > 0 && s.corrupted < s.positions / 10, "5 % noise: {} of {}", s.corrupted, s.positions);
        // An untrained model is near uniform over 26 tokens.
        assert!((s.token_loss - 26f64.ln()).abs() < 0.5, "{}", s.token_loss);
        // Same seed, same noise: the scores are a function of (model, corpus, length, seed).
        assert_eq!(evaluate_denoising(&model, &corpus, 64, 4, &options, 9, &Device::Cpu)?, s);

        // One batch holding every protein: the per-position loss is the training loss rescaled
        // by the share of non-PAD positions, and the annotation loss is the training one × B/annotated.
        let all = corpus.len();
        let one = evaluate_denoising(&model, &corpus, 64, all, &options, 9, &Device::Cpu)?;
        let episode_options = DenoisingOptions { episodes: vec![Episode { seq_len: 64, batch_size: all }], ..options };
        let rows: Vec<usize> = (0..all).collect();
        let batch = encode_batch(&corpus, &rows, 0, &episode_options, &mut Rng::new(9), &Device::Cpu)?;
        let loss = super::super::denoising::denoising_loss(&model, &batch, &episode_options)?;
        assert!(
            (one.token_loss - loss.token_per_residue).abs() < 1e-4,
            "{} {}",
            one.token_loss,
            loss.token_per_residue
        );
        let annotation = loss.annotation.to_dtype(DType::F64)?.to_scalar::<f64>()? * all as f64 / 9.0;
        assert!((one.annotation_loss - annotation).abs() < 1e-5, "{} {annotation}", one.annotation_loss);
        Ok(())
    }

    #[test]
    fn pretraining_curves_average_segments_and_count_every_update() -> Result<()> {
        let episodes = [Episode { seq_len: 128, batch_size: 32 }, Episode { seq_len: 512, batch_size: 8 }];
        let rec = |step: u64, seq_len: usize, loss: f64| {
            serde_json::json!({"kind": "train", "step": step, "seq_len": seq_len as f64,
                "token_loss_per_residue": loss, "annotation_loss": loss / 10.0})
        };
        // Segments of 10 updates logged every 5: 128 (1, 5, 10), 512 (15, 20), 128 (25, 30).
        let log = vec![
            rec(1, 128, 3.0),
            rec(5, 128, 2.0),
            rec(10, 128, 1.0),
            rec(15, 512, 4.0),
            rec(20, 512, 2.0),
            rec(25, 128, 0.5),
            rec(30, 128, 1.5),
        ];
        let curves = pretraining_curves(&log, &episodes)?;
        assert_eq!(curves.len(), 2);
        let (short, long) = (&curves[0].1, &curves[1].1);
        assert_eq!(short.len(), 2);
        assert_eq!((short[0].step, short[0].proteins, short[0].token_loss_per_residue), (10, 320, 2.0));
        assert!((short[0].annotation_loss - 0.2).abs() < 1e-12);
        assert_eq!((long[0].step, long[0].proteins, long[0].token_loss_per_residue), (20, 320 + 80, 3.0));
        assert_eq!((short[1].step, short[1].proteins, short[1].token_loss_per_residue), (30, 400 + 320, 1.0));
        assert_eq!(proteins_processed(&log, &episodes, 30)?, 720);
        assert_eq!(proteins_processed(&log, &episodes, 12)?, 320 + 2 * 8);
        assert_eq!(proteins_processed(&log, &episodes, 1)?, 32);
        assert!(proteins_processed(&log, &episodes, 31).unwrap_err().to_string().contains("ends at update 30"));
        let err = pretraining_curves(&[rec(5, 1024, 1.0)], &episodes).unwrap_err().to_string();
        assert!(err.contains("seq_len 1024") && err.contains("step 5"), "{err}");
        let err = pretraining_curves(&[rec(5, 128, 1.0), rec(5, 128, 1.0)], &episodes).unwrap_err().to_string();
        assert!(err.contains("out of order"), "{err}");
        Ok(())
    }

    #[test]
    fn annotation_aucs_score_each_term_against_its_proteins() -> Result<()> {
        let corpus = corpus();
        // Term 4 annotates 9 of 12 proteins; a score equal to the label ranks them perfectly.
        let probabilities: Vec<Vec<f32>> = corpus
            .annotations
            .iter()
            .map(|a| (0..6).map(|t| if a.contains(&(t as u32)) { 0.9 } else { 0.1 }).collect())
            .collect();
        let (per_term, micro) = annotation_aucs(&probabilities, &corpus, 1)?;
        assert_eq!(per_term.iter().map(|t| t.term).collect::<Vec<_>>(), vec![0, 1, 2, 4]);
        assert!(per_term.iter().all(|t| t.auc == 1.0));
        assert_eq!(per_term[3].positives, 9);
        assert_eq!(micro, 1.0);
        // Reversed scores: AUC 0.
        let reversed: Vec<Vec<f32>> = probabilities.iter().map(|r| r.iter().map(|p| 1.0 - p).collect()).collect();
        assert!(annotation_aucs(&reversed, &corpus, 1)?.0.iter().all(|t| t.auc == 0.0));
        // min_positives filters terms; a shape mismatch is an error naming the row.
        assert_eq!(annotation_aucs(&probabilities, &corpus, 5)?.0.len(), 1);
        let err = annotation_aucs(&probabilities[..3], &corpus, 1).unwrap_err().to_string();
        assert!(err.contains("3 rows"), "{err}");

        let model = model(6);
        let p = predict_annotations(&model, &corpus, 32, 5, 1, &Device::Cpu)?;
        assert_eq!((p.len(), p[0].len()), (12, 6));
        assert!(p.iter().flatten().all(|&x| x > 0.0 && x < 1.0));
        Ok(())
    }
}
