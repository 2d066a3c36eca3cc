//! ProteinBERT's pretraining corruption and episodes (spec `proteinbert.md` §3, `pretraining.py`).
//!
//! * **Episodes.** Proteins are trained at one of a few padded lengths (128 / 512 / 1,024 with
//!   batches of 128 / 64 / 32). Each pass over the data assigns every protein to one episode at
//!   random with `P(e) ∝ exp(−max(r, 1/r))`, `r = (len + 2) / seq_len_e`, so a protein mostly lands
//!   in the episode whose length fits it. A protein longer than its episode is cropped to a random
//!   window of its START + residues + END tokens (so it may lose START and/or END).
//! * **Switching.** The reference trains one episode for at least 15 minutes of wall clock, then
//!   switches at the next epoch boundary to the episode with the most samples waiting. Wall-clock
//!   switching cannot resume bit for bit, so the default switches after a fixed number of batches
//!   (to the episode that has consumed the smallest share of its proteins, the deterministic
//!   analogue of "largest cache"). The wall-clock switch is the option: the segment lengths it
//!   chose are saved with each checkpoint, so a resumed run replays the schedule up to the
//!   checkpoint and times the rest afresh.
//! * **Token noise.** Every position of the padded input, PAD included, is replaced with
//!   probability 0.05 by a uniform draw over all 26 tokens (specials included; it may equal the
//!   original).
//! * **Annotation noise.** Each true GO term is dropped with probability 0.25, each false one added
//!   with probability 1e-4, then with probability 0.5 the protein's whole input vector is zeroed.
//! * **Loss** (Keras reductions, verified on the reference): token cross-entropy on every non-PAD
//!   position of the clean sequence divided by B·L (all positions), plus the annotation binary
//!   cross-entropy, mean over terms, weighted 1 iff the protein has an annotation, divided by B.
//!
//! Every draw comes from the sample's own stream (seed, pass, protein), so a batch is a pure
//! function of its position in the run: resuming needs no data-loader state.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::models::loss::{binary_cross_entropy_with_logits, cross_entropy, Reduction};
use crate::models::proteinbert::{Forward, ProteinBert};
use crate::tokenize::residue::{END, PAD, START};
use crate::{Error, Result, Rng};

/// One length episode: padded length and batch size.
///
/// ```
/// use protein_lm::train::objectives::denoising::{episode_weights, DenoisingOptions};
/// let episodes = DenoisingOptions::reference().episodes; // 128, 512 and 1,024 tokens
/// // A protein of 100 residues mostly trains in the 128-token episode, rarely at 1,024.
/// let w = episode_weights(100, &episodes);
/// assert!(w[0] > w[1] && w[1] > w[2]);
/// assert_eq!((episodes[2].seq_len, episodes[2].batch_size), (1024, 32));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    pub seq_len: usize,
    pub batch_size: usize,
}

/// When training moves to another episode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeSwitch {
    /// After this many batches (deterministic; resumes bit for bit).
    Batches(u64),
    /// The reference: after at least this many minutes, at the next epoch boundary. Depends on
    /// the machine's speed, so two runs differ; a resumed run keeps the schedule up to its
    /// checkpoint.
    WallClockMinutes(f64),
}

/// ProteinBERT's pretraining settings; the defaults are the reference script's.
///
/// ```
/// use protein_lm::train::objectives::denoising::{DenoisingOptions, Episode};
/// let mut options = DenoisingOptions::reference();
/// assert_eq!((options.token_noise, options.annotation_drop), (0.05, 0.25));
/// // A CPU run: one short episode.
/// options.episodes = vec![Episode { seq_len: 64, batch_size: 8 }];
/// options.validate()?;
/// options.token_noise = 1.5;
/// assert!(options.validate().is_err());
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenoisingOptions {
    pub episodes: Vec<Episode>,
    /// Batches per epoch (the unit of logging and of the plateau schedule; reference 100).
    pub batches_per_epoch: u64,
    pub switch: EpisodeSwitch,
    pub token_noise: f64,
    pub annotation_drop: f64,
    pub annotation_add: f64,
    pub annotation_withhold: f64,
    /// Weight of the annotation loss next to the token loss.
    pub annotation_loss_weight: f64,
    pub vocab_size: u32,
}

impl DenoisingOptions {
    /// `pretraining.py` defaults. The deterministic switch after 3,500 batches stands in for the
    /// reference's 15 minutes: 35 of its 100-batch epochs at the measured ≈ 25.5 s each.
    pub fn reference() -> Self {
        Self {
            episodes: vec![
                Episode { seq_len: 128, batch_size: 128 },
                Episode { seq_len: 512, batch_size: 64 },
                Episode { seq_len: 1024, batch_size: 32 },
            ],
            batches_per_epoch: 100,
            switch: EpisodeSwitch::Batches(3_500),
            token_noise: 0.05,
            annotation_drop: 0.25,
            annotation_add: 1e-4,
            annotation_withhold: 0.5,
            annotation_loss_weight: 1.0,
            vocab_size: 26,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.episodes.is_empty() || self.episodes.iter().any(|e| e.seq_len < 3 || e.batch_size == 0) {
            return Err(Error::invalid("denoising: every episode needs seq_len ≥ 3 and batch_size ≥ 1"));
        }
        for (name, p) in [
            ("token_noise", self.token_noise),
            ("annotation_drop", self.annotation_drop),
            ("annotation_add", self.annotation_add),
            ("annotation_withhold", self.annotation_withhold),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::invalid(format!("denoising: {name} must be a probability, got {p}")));
            }
        }
        match self.switch {
            EpisodeSwitch::Batches(0) => return Err(Error::invalid("denoising: switch after 0 batches")),
            EpisodeSwitch::WallClockMinutes(m) if !(m >= 0.0 && m.is_finite()) => {
                return Err(Error::invalid(format!("denoising: switch after {m} minutes")))
            }
            _ => {}
        }
        if self.batches_per_epoch == 0 {
            return Err(Error::invalid("denoising: batches_per_epoch must be at least 1"));
        }
        Ok(())
    }
}

/// The reference's episode weights for a protein of `residues` residues.
pub fn episode_weights(residues: usize, episodes: &[Episode]) -> Vec<f64> {
    episodes
        .iter()
        .map(|e| {
            let r = (residues + 2) as f64 / e.seq_len as f64;
            (-r.max(1.0 / r)).exp()
        })
        .collect()
}

fn draw_weighted(weights: &[f64], rng: &mut Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.uniform() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

/// The START + residues + END tokens of one protein, cropped to a random window of `seq_len` when
/// longer, then right-padded with PAD.
pub fn crop_and_pad(tokens_with_ends: &[u32], seq_len: usize, rng: &mut Rng) -> Vec<u32> {
    let n = tokens_with_ends.len();
    let window = if n > seq_len {
        let offset = rng.below((n - seq_len + 1) as u64) as usize;
        &tokens_with_ends[offset..offset + seq_len]
    } else {
        tokens_with_ends
    };
    let mut out = window.to_vec();
    out.resize(seq_len, PAD);
    out
}

/// Token noise over every position (PAD included), uniform over the whole vocabulary.
pub fn noise_tokens(clean: &[u32], p: f64, vocab_size: u32, rng: &mut Rng) -> Vec<u32> {
    clean.iter().map(|&t| if rng.bernoulli(p) { rng.below(vocab_size as u64) as u32 } else { t }).collect()
}

/// The corrupted input annotation vector for a protein whose true terms are `positives` (indices
/// into `n_terms`).
pub fn noise_annotations(positives: &[u32], n_terms: usize, options: &DenoisingOptions, rng: &mut Rng) -> Vec<f32> {
    let mut input = vec![0f32; n_terms];
    for &t in positives {
        if !rng.bernoulli(options.annotation_drop) {
            input[t as usize] = 1.0;
        }
    }
    // A false term is added with probability p each: draw the gaps between added terms
    // geometrically instead of 8,943 Bernoulli draws per protein (same distribution).
    if options.annotation_add > 0.0 {
        let log_q = (1.0 - options.annotation_add).ln();
        let mut j = 0usize;
        loop {
            let u = rng.uniform();
            let gap = if log_q == 0.0 { usize::MAX } else { ((1.0 - u).ln() / log_q).floor() as usize };
            j = j.saturating_add(gap);
            if j >= n_terms {
                break;
            }
            if !positives.contains(&(j as u32)) {
                input[j] = 1.0;
            }
            j += 1;
        }
    }
    if rng.bernoulli(options.annotation_withhold) {
        input.iter_mut().for_each(|x| *x = 0.0);
    }
    input
}

/// A pretraining corpus: residue tokens (without START/END) and true GO term indices per protein.
#[derive(Debug, Clone, Default)]
pub struct AnnotatedCorpus {
    pub tokens: Vec<Vec<u32>>,
    pub annotations: Vec<Vec<u32>>,
    pub n_terms: usize,
}

impl AnnotatedCorpus {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// One encoded pretraining batch.
#[derive(Debug, Clone)]
pub struct DenoisingBatch {
    pub episode: usize,
    /// `(B, L)` noisy input tokens.
    pub input_tokens: Tensor,
    /// `(B, n_terms)` corrupted input annotations.
    pub input_annotations: Tensor,
    /// `(B, L)` clean tokens (targets).
    pub target_tokens: Tensor,
    /// `(B, L)` 1 on non-PAD target positions.
    pub token_weights: Tensor,
    /// `(B, n_terms)` clean annotations.
    pub target_annotations: Tensor,
    /// `(B)` 1 iff the protein has an annotation.
    pub annotation_weights: Tensor,
    /// Corpus indices of the rows.
    pub proteins: Vec<usize>,
}

/// The batch schedule: which episode and which proteins each batch of the run trains on, as a
/// pure function of the batch's index.
#[derive(Debug, Clone)]
pub struct EpisodeSampler {
    options: DenoisingOptions,
    seed: u64,
    weights_per_protein: Vec<Vec<f64>>,
    /// Per pass, how many proteins each episode was assigned (kept for every pass seen: small).
    pass_sizes: Vec<Vec<usize>>,
    /// The assignments themselves, for the few most recently used passes.
    recent: std::collections::BTreeMap<usize, Vec<Vec<usize>>>,
    /// Wall-clock switching: the lengths, in batches, of the segments closed so far.
    closed_segments: Vec<u64>,
    /// Wall-clock switching: when the open segment's first batch was drawn (in this process).
    segment_started: Option<std::time::Instant>,
}

/// Passes whose assignments are kept in memory; older ones are recomputed if asked for again.
const RECENT_PASSES: usize = 4;

impl EpisodeSampler {
    pub fn new(lengths: &[usize], options: DenoisingOptions, seed: u64) -> Result<Self> {
        options.validate()?;
        if lengths.is_empty() {
            return Err(Error::invalid("denoising: the pretraining corpus is empty"));
        }
        let weights_per_protein = lengths.iter().map(|&n| episode_weights(n, &options.episodes)).collect();
        Ok(Self {
            options,
            seed,
            weights_per_protein,
            pass_sizes: Vec::new(),
            recent: Default::default(),
            closed_segments: Vec::new(),
            segment_started: None,
        })
    }

    pub fn options(&self) -> &DenoisingOptions {
        &self.options
    }

    /// The proteins of each episode in pass `p`, each list shuffled.
    fn assign(&self, p: usize) -> Vec<Vec<usize>> {
        let mut per_episode = vec![Vec::new(); self.options.episodes.len()];
        for (i, weights) in self.weights_per_protein.iter().enumerate() {
            let mut rng = Rng::new(self.seed).fork(crate::train::streams::EPISODE).fork(p as u64).fork(i as u64);
            per_episode[draw_weighted(weights, &mut rng)].push(i);
        }
        for (e, list) in per_episode.iter_mut().enumerate() {
            Rng::new(self.seed).fork(crate::train::streams::SHUFFLE).fork(p as u64).fork(e as u64).shuffle(list);
        }
        per_episode
    }

    fn pass(&mut self, p: usize) -> &Vec<Vec<usize>> {
        if !self.recent.contains_key(&p) {
            let assigned = self.assign(p);
            if self.pass_sizes.len() == p {
                self.pass_sizes.push(assigned.iter().map(Vec::len).collect());
            }
            if self.recent.len() >= RECENT_PASSES {
                let oldest = *self.recent.keys().next().expect("non-empty");
                self.recent.remove(&oldest);
            }
            self.recent.insert(p, assigned);
        }
        &self.recent[&p]
    }

    fn sizes(&mut self, p: usize) -> &[usize] {
        while self.pass_sizes.len() <= p {
            self.pass(self.pass_sizes.len());
        }
        &self.pass_sizes[p]
    }

    /// Length in batches of segment `k`: fixed, or as the clock closed it (the open one: unbounded).
    fn segment_len(&self, k: usize) -> u64 {
        match self.options.switch {
            EpisodeSwitch::Batches(n) => n,
            EpisodeSwitch::WallClockMinutes(_) => self.closed_segments.get(k).copied().unwrap_or(u64::MAX),
        }
    }

    /// Wall-clock switching: call before drawing batch `batch` of the run, in order. At an epoch
    /// boundary, once the open segment has run for the set minutes, it is closed there and the
    /// next batch starts a new segment.
    pub fn before_batch(&mut self, batch: u64) {
        let EpisodeSwitch::WallClockMinutes(minutes) = self.options.switch else { return };
        let started = *self.segment_started.get_or_insert_with(std::time::Instant::now);
        let open_start: u64 = self.closed_segments.iter().sum();
        let at_boundary = batch.is_multiple_of(self.options.batches_per_epoch) && batch > open_start;
        if at_boundary && started.elapsed().as_secs_f64() >= minutes * 60.0 {
            self.closed_segments.push(batch - open_start);
            self.segment_started = Some(std::time::Instant::now());
        }
    }

    /// The closed segments' lengths (wall-clock switching), for checkpoints.
    pub fn closed_segments(&self) -> &[u64] {
        &self.closed_segments
    }

    /// Restores the closed segments of a checkpoint; the open segment's clock restarts.
    pub fn restore_segments(&mut self, closed: Vec<u64>) {
        self.closed_segments = closed;
        self.segment_started = None;
    }

    /// The episode of the segment holding `batch`, and how many of that episode's samples came
    /// before it. Each segment goes to the episode that has used the smallest share of its
    /// proteins (the one with the most samples waiting), first on ties.
    fn locate(&mut self, batch: u64) -> (usize, u64) {
        // Episodes no protein was assigned to in the first pass are never chosen.
        let expected: Vec<Option<f64>> = self.sizes(0).iter().map(|&n| (n > 0).then_some(n as f64)).collect();
        let mut consumed = vec![0u64; expected.len()];
        let mut start = 0u64;
        for k in 0.. {
            let segment = self.segment_len(k);
            let share = |e: usize| expected[e].map(|n| consumed[e] as f64 / n);
            let episode = (0..expected.len())
                .filter(|&e| expected[e].is_some())
                .min_by(|&a, &b| share(a).partial_cmp(&share(b)).expect("finite shares").then(a.cmp(&b)))
                .expect("a non-empty corpus assigns some episode");
            let bs = self.options.episodes[episode].batch_size as u64;
            if batch < start.saturating_add(segment) {
                return (episode, consumed[episode] + (batch - start) * bs);
            }
            consumed[episode] += segment * bs;
            start += segment;
        }
        unreachable!("the open segment holds every later batch")
    }

    /// Episode and corpus indices of the run's batch number `batch` (counted from 0).
    pub fn batch(&mut self, batch: u64) -> Result<(usize, Vec<usize>)> {
        let (episode, first_sample) = self.locate(batch);
        Ok((episode, self.samples(episode, first_sample)?))
    }

    /// `batch_size` consecutive samples of episode `episode`'s stream from `first_sample` (the
    /// stream is the concatenation of the episode's shuffled assignments of pass 0, 1, …).
    pub fn samples(&mut self, episode: usize, first_sample: u64) -> Result<Vec<usize>> {
        let bs = self.options.episodes[episode].batch_size;
        let mut out = Vec::with_capacity(bs);
        let mut skip = first_sample as usize;
        let mut pass = 0usize;
        let mut empty_in_a_row = 0;
        while out.len() < bs {
            let size = self.sizes(pass)[episode];
            if size == 0 {
                empty_in_a_row += 1;
                if empty_in_a_row > 64 {
                    return Err(Error::invalid(format!(
                        "denoising: episode {episode} (seq_len {}) got no protein in 64 passes in a row; \
                         the corpus is too small for it, remove the episode",
                        self.options.episodes[episode].seq_len
                    )));
                }
            } else if skip >= size {
                empty_in_a_row = 0;
                skip -= size;
            } else {
                empty_in_a_row = 0;
                let list = &self.pass(pass)[episode];
                let take = (size - skip).min(bs - out.len());
                out.extend_from_slice(&list[skip..skip + take]);
                skip = 0;
            }
            pass += 1;
        }
        Ok(out)
    }
}

/// Encodes the proteins `rows` of `corpus` for `episode`: crop, pad, noise. `rng` seeds each row's
/// own stream, so a row's corruption does not depend on the others.
///
/// ```
/// use candle_core::Device;
/// use protein_lm::tokenize::residue::{PAD, START};
/// use protein_lm::train::objectives::denoising::{encode_batch, AnnotatedCorpus, DenoisingOptions, Episode};
/// use protein_lm::Rng;
/// // Three proteins (residue ids, no START/END) and their GO term indices among 4.
/// let corpus = AnnotatedCorpus {
///     tokens: vec![vec![10, 8, 16, 0, 19], vec![3, 3, 7, 1, 9, 12, 14, 2], vec![5; 10]],
///     annotations: vec![vec![0, 2], vec![], vec![1]],
///     n_terms: 4,
/// };
/// let options = DenoisingOptions { episodes: vec![Episode { seq_len: 16, batch_size: 2 }], ..DenoisingOptions::reference() };
/// let batch = encode_batch(&corpus, &[0, 1], 0, &options, &mut Rng::new(0), &Device::Cpu)?;
/// assert_eq!(batch.input_tokens.dims(), [2, 16]);
/// // The clean targets: START, the residues, END, then PAD, which the loss skips.
/// let targets = batch.target_tokens.to_vec2::<u32>()?;
/// assert_eq!((targets[0][0], targets[0][7]), (START, PAD));
/// assert_eq!(batch.token_weights.sum_all()?.to_scalar::<f32>()?, (7 + 10) as f32);
/// // Protein 1 has no annotation: its annotation loss weighs 0.
/// assert_eq!(batch.annotation_weights.to_vec1::<f32>()?, [1.0, 0.0]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn encode_batch(
    corpus: &AnnotatedCorpus,
    rows: &[usize],
    episode: usize,
    options: &DenoisingOptions,
    rng: &mut Rng,
    device: &Device,
) -> Result<DenoisingBatch> {
    let seq_len = options.episodes[episode].seq_len;
    let b = rows.len();
    let n_terms = corpus.n_terms;
    let mut input_tokens = Vec::with_capacity(b * seq_len);
    let mut target_tokens = Vec::with_capacity(b * seq_len);
    let mut token_weights = Vec::with_capacity(b * seq_len);
    let mut input_annotations = Vec::with_capacity(b * n_terms);
    let mut target_annotations = vec![0f32; b * n_terms];
    let mut annotation_weights = Vec::with_capacity(b);
    for (r, &i) in rows.iter().enumerate() {
        let mut row_rng = Rng::new(rng.next_u64());
        let mut with_ends = Vec::with_capacity(corpus.tokens[i].len() + 2);
        with_ends.push(START);
        with_ends.extend_from_slice(&corpus.tokens[i]);
        with_ends.push(END);
        let clean = crop_and_pad(&with_ends, seq_len, &mut row_rng);
        input_tokens.extend(noise_tokens(&clean, options.token_noise, options.vocab_size, &mut row_rng));
        token_weights.extend(clean.iter().map(|&t| if t == PAD { 0f32 } else { 1.0 }));
        target_tokens.extend(clean);
        let positives = &corpus.annotations[i];
        for &t in positives {
            if t as usize >= n_terms {
                return Err(Error::invalid(format!("protein {i}: GO index {t} ≥ {n_terms} terms")));
            }
            target_annotations[r * n_terms + t as usize] = 1.0;
        }
        input_annotations.extend(noise_annotations(positives, n_terms, options, &mut row_rng));
        annotation_weights.push(if positives.is_empty() { 0f32 } else { 1.0 });
    }
    Ok(DenoisingBatch {
        episode,
        input_tokens: Tensor::from_vec(input_tokens, (b, seq_len), device)?,
        input_annotations: Tensor::from_vec(input_annotations, (b, n_terms), device)?,
        target_tokens: Tensor::from_vec(target_tokens, (b, seq_len), device)?,
        token_weights: Tensor::from_vec(token_weights, (b, seq_len), device)?,
        target_annotations: Tensor::from_vec(target_annotations, (b, n_terms), device)?,
        annotation_weights: Tensor::from_vec(annotation_weights, b, device)?,
        proteins: rows.to_vec(),
    })
}

/// The two losses of one batch, and their weighted sum (the training loss).
#[derive(Debug, Clone)]
pub struct DenoisingLoss {
    pub total: Tensor,
    /// Σ(w·CE)/(B·L), as Keras reports it.
    pub token: Tensor,
    /// Σ_b w_b·mean_j BCE / B.
    pub annotation: Tensor,
    /// Token CE per non-PAD token (the paper's figure; Keras' value rescaled by the mean weight).
    pub token_per_residue: f64,
}

/// Forward pass and loss with Keras' normalisation.
pub fn denoising_loss(
    model: &ProteinBert,
    batch: &DenoisingBatch,
    options: &DenoisingOptions,
) -> Result<DenoisingLoss> {
    let out = model.forward(&batch.input_tokens, &batch.input_annotations, Forward::default())?;
    denoising_losses(
        (&out.token_logits, &out.annotation_logits),
        (&batch.target_tokens, &batch.token_weights),
        (&batch.target_annotations, &batch.annotation_weights),
        options.annotation_loss_weight,
    )
}

/// The pretraining losses on plain tensors, with Keras' normalisation: `token_logits` `(B, L, V)`
/// against `target_tokens` `(B, L)` u32 weighted by `token_weights` `(B, L)` (0 on padding);
/// `annotation_logits` `(B, T)` against `target_annotations` `(B, T)` (0/1) weighted per protein by
/// `annotation_weights` `(B)` (0 for a protein without annotations); the total adds the annotation
/// loss times `annotation_loss_weight`.
pub fn denoising_losses(
    (token_logits, annotation_logits): (&Tensor, &Tensor),
    (target_tokens, token_weights): (&Tensor, &Tensor),
    (target_annotations, annotation_weights): (&Tensor, &Tensor),
    annotation_loss_weight: f64,
) -> Result<DenoisingLoss> {
    let token = cross_entropy(token_logits, target_tokens, None, Some(token_weights), Reduction::MeanOverAll)?;
    let annotation = binary_cross_entropy_with_logits(
        annotation_logits,
        target_annotations,
        Some(annotation_weights),
        Reduction::MeanOverAll,
    )?;
    let total = token.add(&(annotation.clone() * annotation_loss_weight)?)?;
    let mean_weight = token_weights.to_dtype(candle_core::DType::F32)?.mean_all()?.to_scalar::<f32>()? as f64;
    let token_value = token.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    let token_per_residue = if mean_weight > 0.0 { token_value / mean_weight } else { 0.0 };
    Ok(DenoisingLoss { total, token, annotation, token_per_residue })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episode_weights_follow_the_reference_formula() {
        let episodes = DenoisingOptions::reference().episodes;
        // 126 residues + 2 = 128: r = 1 for episode 0, r = 1/4 and 1/8 for the others.
        let w = episode_weights(126, &episodes);
        assert!((w[0] - (-1f64).exp()).abs() < 1e-15);
        assert!((w[1] - (-4f64).exp()).abs() < 1e-15);
        assert!((w[2] - (-8f64).exp()).abs() < 1e-15);
        // Long proteins prefer the longest episode.
        let w = episode_weights(2000, &episodes);
        assert!(w[2] > w[1] && w[1] > w[0]);
    }

    #[test]
    fn crop_is_a_window_and_short_proteins_are_padded() {
        let mut rng = Rng::new(1);
        let tokens: Vec<u32> = (0..20).collect();
        for _ in 0..50 {
            let c = crop_and_pad(&tokens, 8, &mut rng);
            assert_eq!(c.len(), 8);
            assert!(c.windows(2).all(|w| w[1] == w[0] + 1), "contiguous window: {c:?}");
        }
        let c = crop_and_pad(&tokens[..5], 8, &mut rng);
        assert_eq!(c, vec![0, 1, 2, 3, 4, PAD, PAD, PAD]);
    }

    #[test]
    fn noise_rates_match_the_options() {
        let options = DenoisingOptions::reference();
        let mut rng = Rng::new(7);
        let clean = vec![3u32; 200_000];
        let noisy = noise_tokens(&clean, 0.05, 26, &mut rng);
        let changed = noisy.iter().filter(|&&t| t != 3).count() as f64 / clean.len() as f64;
        // Replaced with p = 0.05, of which 1/26 draw the same token: 0.05 · 25/26 = 0.04808.
        assert!((changed - 0.05 * 25.0 / 26.0).abs() < 0.002, "{changed}");
        assert!(noisy.iter().all(|&t| t < 26));

        let positives: Vec<u32> = (0..40).collect();
        let (mut kept, mut added, mut withheld, trials) = (0usize, 0usize, 0usize, 4000);
        for _ in 0..trials {
            let v = noise_annotations(&positives, 8943, &options, &mut rng);
            let n_pos = v[..40].iter().filter(|&&x| x == 1.0).count();
            let n_neg = v[40..].iter().filter(|&&x| x == 1.0).count();
            if n_pos == 0 && n_neg == 0 {
                withheld += 1;
            } else {
                kept += n_pos;
                added += n_neg;
            }
        }
        let shown = (trials - withheld) as f64;
        assert!((withheld as f64 / trials as f64 - 0.5).abs() < 0.03);
        assert!((kept as f64 / (shown * 40.0) - 0.75).abs() < 0.01);
        let added_rate = added as f64 / (shown * 8903.0);
        assert!((added_rate - 1e-4).abs() < 2.5e-5, "{added_rate}");
    }

    #[test]
    fn sampler_is_deterministic_and_switches_episodes() -> Result<()> {
        let lengths: Vec<usize> = (0..600).map(|i| 20 + (i * 37) % 1500).collect();
        let mut options = DenoisingOptions::reference();
        options.switch = EpisodeSwitch::Batches(3);
        options.episodes = vec![Episode { seq_len: 128, batch_size: 8 }, Episode { seq_len: 512, batch_size: 4 }];
        let mut a = EpisodeSampler::new(&lengths, options.clone(), 5)?;
        let mut b = EpisodeSampler::new(&lengths, options, 5)?;
        // 1,000 batches of 4 or 8 from 600 proteins cross about ten passes, so assignments are
        // evicted from memory and recomputed when asked for again.
        let first: Vec<_> = (0..1000).map(|k| a.batch(k)).collect::<Result<_>>()?;
        assert!(a.pass_sizes.len() > RECENT_PASSES, "the test must cross more passes than are kept");
        // Asked out of order, the same batches come back.
        for k in (0..1000).rev() {
            assert_eq!(b.batch(k)?, first[k as usize]);
        }
        // Within an episode's stream, a pass hands out each of its proteins once.
        let (e0, _) = first[0];
        let (n0, bs) = (a.sizes(0)[e0], a.options.episodes[e0].batch_size);
        let mut seen: Vec<usize> =
            (0..n0.div_ceil(bs)).map(|k| a.samples(e0, (k * bs) as u64)).collect::<Result<Vec<_>>>()?.concat();
        seen.truncate(n0);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n0);
        let episodes: std::collections::BTreeSet<usize> = first.iter().map(|(e, _)| *e).collect();
        assert_eq!(episodes.len(), 2, "both episodes are visited");
        assert!(first[..3].iter().all(|(e, _)| *e == first[0].0), "segments are 3 batches");
        Ok(())
    }

    #[test]
    fn wall_clock_switching_closes_segments_at_epoch_boundaries_and_resumes_its_schedule() -> Result<()> {
        let lengths: Vec<usize> = (0..300).map(|i| 20 + (i * 37) % 1500).collect();
        let mut options = DenoisingOptions::reference();
        options.episodes = vec![Episode { seq_len: 128, batch_size: 8 }, Episode { seq_len: 512, batch_size: 4 }];
        options.batches_per_epoch = 5;
        let run = |sampler: &mut EpisodeSampler, batches: std::ops::Range<u64>| -> Result<Vec<(usize, Vec<usize>)>> {
            batches
                .map(|k| {
                    sampler.before_batch(k);
                    sampler.batch(k)
                })
                .collect()
        };
        // 0 minutes: every epoch boundary switches, which is the batch-count switch of one epoch.
        let mut by_count = EpisodeSampler::new(
            &lengths,
            DenoisingOptions { switch: EpisodeSwitch::Batches(5), ..options.clone() },
            5,
        )?;
        let expected = run(&mut by_count, 0..60)?;
        let zero = DenoisingOptions { switch: EpisodeSwitch::WallClockMinutes(0.0), ..options.clone() };
        let mut clock = EpisodeSampler::new(&lengths, zero.clone(), 5)?;
        assert_eq!(run(&mut clock, 0..30)?, expected[..30]);
        assert_eq!(clock.closed_segments(), &[5, 5, 5, 5, 5]);
        // A resumed sampler replays the saved schedule, then keeps timing from its restart.
        let mut resumed = EpisodeSampler::new(&lengths, zero, 5)?;
        resumed.restore_segments(clock.closed_segments().to_vec());
        assert_eq!(run(&mut resumed, 30..60)?, expected[30..]);
        // An hour-long segment never closes within the test: one episode throughout.
        let hour = DenoisingOptions { switch: EpisodeSwitch::WallClockMinutes(60.0), ..options };
        let mut slow = EpisodeSampler::new(&lengths, hour, 5)?;
        let batches = run(&mut slow, 0..40)?;
        assert!(batches.iter().all(|(e, _)| *e == batches[0].0));
        assert!(slow.closed_segments().is_empty());
        assert!(expected.iter().any(|(e, _)| *e != expected[0].0), "the one-epoch switch does change episodes");
        Ok(())
    }
}
