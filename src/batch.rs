//! Batching: padding policies and length buckets.
//!
//! The two reference implementations pad differently, and ProteinBERT's outputs depend on the
//! padded length (it has no mask: PAD tokens are convolved and attended to), so the padding
//! policy is an explicit choice at every call, never a default. A sequence longer than a fixed
//! length is an error unless the caller asked for truncation: silently cutting a protein changes
//! what the model sees.

use candle_core::{Device, Tensor};

use crate::{Error, Result, Rng};

/// ProteinBERT's `<PAD>` token id.
pub const PROTEINBERT_PAD_ID: u32 = 25;
/// fairseq's `<pad>` id in PRoBERTa's dictionary.
pub const PROBERTA_PAD_ID: u32 = 1;
/// fairseq's `<s>` id, which PRoBERTa's clustering script uses as filler.
pub const PROBERTA_BOS_ID: u32 = 0;
/// PRoBERTa's maximum positions (and reference inference length).
pub const PROBERTA_MAX_LEN: usize = 512;

/// How a batch of token sequences becomes one rectangular `(B, L)` tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Right-pad to `len` with `pad_id`, no mask: ProteinBERT (reference pads to the episode or
    /// fine-tuning `seq_len` with `<PAD>` = 25; outputs depend on `len`).
    FixedNoMask { len: usize, pad_id: u32 },
    /// Right-pad to the longest item of the batch with `pad_id`, with a mask: PRoBERTa training
    /// (fairseq collater, pad id 1).
    LongestWithMask { pad_id: u32 },
    /// Right-pad to `len` with `pad_id`, with a mask: PRoBERTa reference inference (every input
    /// is 512 long).
    FixedWithMask { len: usize, pad_id: u32 },
    /// Right-fill to `len` with `filler_id`, no mask: PRoBERTa's clustering script, which fills
    /// with id 0 (`<s>`), so the fill is seen as real tokens.
    FixedFillerNoMask { len: usize, filler_id: u32 },
}

impl Padding {
    pub fn proteinbert(len: usize) -> Self {
        Padding::FixedNoMask { len, pad_id: PROTEINBERT_PAD_ID }
    }

    pub fn proberta_training() -> Self {
        Padding::LongestWithMask { pad_id: PROBERTA_PAD_ID }
    }

    pub fn proberta_inference() -> Self {
        Padding::FixedWithMask { len: PROBERTA_MAX_LEN, pad_id: PROBERTA_PAD_ID }
    }

    pub fn proberta_clustering(len: usize) -> Self {
        Padding::FixedFillerNoMask { len, filler_id: PROBERTA_BOS_ID }
    }

    /// The padded length, when it does not depend on the batch.
    pub fn fixed_len(&self) -> Option<usize> {
        match *self {
            Padding::FixedNoMask { len, .. }
            | Padding::FixedWithMask { len, .. }
            | Padding::FixedFillerNoMask { len, .. } => Some(len),
            Padding::LongestWithMask { .. } => None,
        }
    }

    /// The id written after each sequence.
    pub fn fill_id(&self) -> u32 {
        match *self {
            Padding::FixedNoMask { pad_id, .. }
            | Padding::LongestWithMask { pad_id }
            | Padding::FixedWithMask { pad_id, .. } => pad_id,
            Padding::FixedFillerNoMask { filler_id, .. } => filler_id,
        }
    }

    pub fn has_mask(&self) -> bool {
        matches!(self, Padding::LongestWithMask { .. } | Padding::FixedWithMask { .. })
    }
}

/// What to do with a sequence longer than a fixed padded length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Return an error naming the item and its length.
    #[default]
    Error,
    /// Keep the first `len` tokens (fairseq's `--truncate-sequence`; the end token is lost).
    KeepFirst,
}

/// One padded batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `(B, L)` u32 token ids.
    pub ids: Tensor,
    /// `(B, L)` u32, 1 = real token, 0 = padding; `None` for policies without a mask.
    pub attention_mask: Option<Tensor>,
    /// Real (possibly truncated) length of each row.
    pub lengths: Vec<usize>,
    /// Position of each row in the input the batch was drawn from.
    pub indices: Vec<usize>,
}

impl Batch {
    /// All of `sequences`, in order.
    pub fn from_sequences(
        sequences: &[Vec<u32>],
        padding: Padding,
        overflow: Overflow,
        device: &Device,
    ) -> Result<Self> {
        let indices: Vec<usize> = (0..sequences.len()).collect();
        Self::select(sequences, &indices, padding, overflow, device)
    }

    /// The items `indices` of `sequences`, in that order (e.g. one batch from [`length_batches`]).
    pub fn select(
        sequences: &[Vec<u32>],
        indices: &[usize],
        padding: Padding,
        overflow: Overflow,
        device: &Device,
    ) -> Result<Self> {
        if indices.is_empty() {
            return Err(Error::invalid("cannot build a batch of zero sequences"));
        }
        let mut items = Vec::with_capacity(indices.len());
        for &index in indices {
            let sequence = sequences.get(index).ok_or_else(|| {
                Error::invalid(format!("batch index {index} is out of range ({} sequences)", sequences.len()))
            })?;
            items.push((index, sequence.as_slice()));
        }
        let len = match padding.fixed_len() {
            Some(len) => len,
            None => items.iter().map(|(_, s)| s.len()).max().unwrap_or(0),
        };
        if len == 0 {
            return Err(Error::invalid("padded length is 0 (a fixed length of 0, or only empty sequences)"));
        }
        let fill = padding.fill_id();
        let rows = items.len();
        let mut ids = vec![fill; rows * len];
        let mut mask = vec![0u32; rows * len];
        let mut lengths = Vec::with_capacity(rows);
        for (row, &(index, sequence)) in items.iter().enumerate() {
            let kept = if sequence.len() <= len {
                sequence.len()
            } else {
                match overflow {
                    Overflow::KeepFirst => len,
                    Overflow::Error => {
                        return Err(Error::invalid(format!(
                            "sequence {index} has {} tokens, more than the padded length {len} \
                             (choose Overflow::KeepFirst to truncate, or a longer length)",
                            sequence.len()
                        )))
                    }
                }
            };
            let start = row * len;
            ids[start..start + kept].copy_from_slice(&sequence[..kept]);
            mask[start..start + kept].fill(1);
            lengths.push(kept);
        }
        let ids = Tensor::from_vec(ids, (rows, len), device)?;
        let attention_mask = if padding.has_mask() { Some(Tensor::from_vec(mask, (rows, len), device)?) } else { None };
        Ok(Self { ids, attention_mask, lengths, indices: indices.to_vec() })
    }

    pub fn batch_size(&self) -> usize {
        self.indices.len()
    }

    /// Padded length L.
    pub fn padded_len(&self) -> usize {
        self.ids.dims().get(1).copied().unwrap_or(0)
    }
}

/// How items are grouped by length before batching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Buckets {
    /// One bucket holding everything.
    Single,
    /// Upper bounds, strictly increasing: bucket i holds lengths in (b_{i−1}, b_i]; lengths above
    /// the last bound form one more bucket.
    Boundaries(Vec<usize>),
    /// `n` buckets with about equal item counts, bounds taken from the length distribution.
    Quantiles(usize),
}

/// How big one batch may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchLimit {
    /// At most this many items.
    Items(usize),
    /// At most this many padded tokens: items × longest item in the batch.
    Tokens(usize),
}

fn bucket_bounds(lengths: &[usize], buckets: &Buckets) -> Result<Vec<usize>> {
    match buckets {
        Buckets::Single => Ok(Vec::new()),
        Buckets::Boundaries(bounds) => {
            if bounds.windows(2).any(|w| w[0] >= w[1]) {
                return Err(Error::invalid(format!("bucket boundaries must be strictly increasing, got {bounds:?}")));
            }
            Ok(bounds.clone())
        }
        Buckets::Quantiles(count) => {
            if *count == 0 {
                return Err(Error::invalid("Buckets::Quantiles needs at least 1 bucket"));
            }
            let mut sorted = lengths.to_vec();
            sorted.sort_unstable();
            let n = sorted.len();
            let mut bounds: Vec<usize> = (1..*count)
                .filter_map(|i| (i * n).div_ceil(*count).checked_sub(1))
                .filter_map(|rank| sorted.get(rank).copied())
                .collect();
            bounds.dedup();
            Ok(bounds)
        }
    }
}

/// Groups item indices into batches: items are put in length buckets, each bucket is cut into
/// batches under `limit`, in input order, or, with `rng`, after shuffling the bucket and then
/// the order of all batches (seeded, so an epoch's batches repeat with its seed). Every index
/// `0..lengths.len()` appears in exactly one batch, and a batch never mixes buckets.
pub fn length_batches(
    lengths: &[usize],
    buckets: &Buckets,
    limit: BatchLimit,
    rng: Option<&mut Rng>,
) -> Result<Vec<Vec<usize>>> {
    match limit {
        BatchLimit::Items(0) | BatchLimit::Tokens(0) => {
            return Err(Error::invalid(format!("batch limit must be positive, got {limit:?}")))
        }
        BatchLimit::Tokens(budget) => {
            if let Some((index, &len)) = lengths.iter().enumerate().find(|(_, &l)| l > budget) {
                return Err(Error::invalid(format!(
                    "item {index} has {len} tokens, more than the token budget {budget} of a batch"
                )));
            }
        }
        BatchLimit::Items(_) => {}
    }
    let bounds = bucket_bounds(lengths, buckets)?;
    let mut grouped: Vec<Vec<usize>> = vec![Vec::new(); bounds.len() + 1];
    for (index, &len) in lengths.iter().enumerate() {
        let bucket = bounds.partition_point(|&bound| bound < len);
        grouped[bucket].push(index);
    }
    let mut rng = rng;
    let mut batches = Vec::new();
    for mut bucket in grouped {
        if let Some(rng) = rng.as_deref_mut() {
            rng.shuffle(&mut bucket);
        }
        let mut current: Vec<usize> = Vec::new();
        let mut longest = 0usize;
        for index in bucket {
            let len = lengths[index];
            let full = match limit {
                BatchLimit::Items(max) => current.len() == max,
                BatchLimit::Tokens(budget) => (current.len() + 1) * longest.max(len) > budget,
            };
            if full && !current.is_empty() {
                batches.push(std::mem::take(&mut current));
                longest = 0;
            }
            current.push(index);
            longest = longest.max(len);
        }
        if !current.is_empty() {
            batches.push(current);
        }
    }
    if let Some(rng) = rng {
        rng.shuffle(&mut batches);
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs() -> Vec<Vec<u32>> {
        vec![vec![23, 0, 1, 24], vec![23, 5, 24], vec![23, 2, 3, 4, 5, 24]]
    }

    fn rows(t: &Tensor) -> Vec<Vec<u32>> {
        t.to_vec2::<u32>().unwrap()
    }

    #[test]
    fn proteinbert_fixed_padding_has_no_mask_and_pads_with_25() -> Result<()> {
        let batch = Batch::from_sequences(&seqs(), Padding::proteinbert(8), Overflow::Error, &Device::Cpu)?;
        assert_eq!(batch.ids.dims(), [3, 8]);
        assert!(batch.attention_mask.is_none());
        assert_eq!(
            rows(&batch.ids),
            [vec![23, 0, 1, 24, 25, 25, 25, 25], vec![23, 5, 24, 25, 25, 25, 25, 25], vec![23, 2, 3, 4, 5, 24, 25, 25],]
        );
        assert_eq!(batch.lengths, [4, 3, 6]);
        assert_eq!(batch.indices, [0, 1, 2]);
        Ok(())
    }

    #[test]
    fn longest_with_mask_pads_to_batch_max_with_pad_1() -> Result<()> {
        let batch = Batch::select(&seqs(), &[1, 0], Padding::proberta_training(), Overflow::Error, &Device::Cpu)?;
        assert_eq!(batch.padded_len(), 4);
        assert_eq!(rows(&batch.ids), [vec![23, 5, 24, 1], vec![23, 0, 1, 24]]);
        let mask = batch.attention_mask.as_ref().map(rows);
        assert_eq!(mask, Some(vec![vec![1, 1, 1, 0], vec![1, 1, 1, 1]]));
        assert_eq!(batch.indices, [1, 0]);
        assert_eq!(batch.lengths, [3, 4]);
        Ok(())
    }

    #[test]
    fn proberta_inference_is_512_long_with_mask() -> Result<()> {
        let batch = Batch::from_sequences(&seqs(), Padding::proberta_inference(), Overflow::Error, &Device::Cpu)?;
        assert_eq!(batch.ids.dims(), [3, 512]);
        let ids = rows(&batch.ids);
        let mask = rows(batch.attention_mask.as_ref().unwrap());
        for (row, &len) in batch.lengths.iter().enumerate() {
            assert!(ids[row][len..].iter().all(|&id| id == PROBERTA_PAD_ID));
            assert!(mask[row][..len].iter().all(|&m| m == 1));
            assert!(mask[row][len..].iter().all(|&m| m == 0));
        }
        Ok(())
    }

    #[test]
    fn clustering_filler_uses_bos_and_no_mask() -> Result<()> {
        let batch = Batch::from_sequences(&seqs(), Padding::proberta_clustering(7), Overflow::Error, &Device::Cpu)?;
        assert!(batch.attention_mask.is_none());
        assert_eq!(rows(&batch.ids)[1], [23, 5, 24, 0, 0, 0, 0]);
        Ok(())
    }

    #[test]
    fn overlong_sequence_is_an_error_unless_truncation_is_chosen() -> Result<()> {
        let err = Batch::from_sequences(&seqs(), Padding::proteinbert(5), Overflow::Error, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sequence 2") && err.contains("6 tokens") && err.contains("length 5"), "{err}");
        let batch = Batch::from_sequences(&seqs(), Padding::proteinbert(5), Overflow::KeepFirst, &Device::Cpu)?;
        assert_eq!(rows(&batch.ids)[2], [23, 2, 3, 4, 5]);
        assert_eq!(batch.lengths, [4, 3, 5]);
        assert!(Batch::select(&seqs(), &[], Padding::proteinbert(5), Overflow::Error, &Device::Cpu).is_err());
        assert!(Batch::select(&seqs(), &[3], Padding::proteinbert(5), Overflow::Error, &Device::Cpu).is_err());
        let empty = vec![Vec::new()];
        assert!(Batch::from_sequences(&empty, Padding::proberta_training(), Overflow::Error, &Device::Cpu).is_err());
        Ok(())
    }

    fn random_lengths(rng: &mut Rng, n: usize) -> Vec<usize> {
        (0..n).map(|_| 1 + rng.index(600)).collect()
    }

    fn assert_partition(batches: &[Vec<usize>], n: usize) {
        let mut seen = vec![0usize; n];
        for batch in batches {
            assert!(!batch.is_empty());
            for &i in batch {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "some item is missing or repeated");
    }

    #[test]
    fn every_item_lands_in_exactly_one_batch_within_limits_and_buckets() -> Result<()> {
        let mut rng = Rng::new(77);
        let configurations = [
            (Buckets::Single, BatchLimit::Items(7)),
            (Buckets::Boundaries(vec![128, 512]), BatchLimit::Items(16)),
            (Buckets::Boundaries(vec![100, 200, 300]), BatchLimit::Tokens(4096)),
            (Buckets::Quantiles(5), BatchLimit::Tokens(2000)),
            (Buckets::Quantiles(3), BatchLimit::Items(1)),
        ];
        for trial in 0..20 {
            let n = 1 + rng.index(300);
            let lengths = random_lengths(&mut rng, n);
            for (buckets, limit) in &configurations {
                let mut shuffle = Rng::new(trial);
                let shuffled = trial % 2 == 0;
                let batches = length_batches(&lengths, buckets, *limit, shuffled.then_some(&mut shuffle))?;
                assert_partition(&batches, n);
                let bounds = bucket_bounds(&lengths, buckets)?;
                for batch in &batches {
                    let longest = batch.iter().map(|&i| lengths[i]).max().unwrap();
                    match limit {
                        BatchLimit::Items(max) => assert!(batch.len() <= *max),
                        BatchLimit::Tokens(budget) => assert!(batch.len() * longest <= *budget),
                    }
                    let bucket_of = |i: usize| bounds.partition_point(|&b| b < lengths[i]);
                    assert!(batch.iter().all(|&i| bucket_of(i) == bucket_of(batch[0])));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn shuffling_is_seeded_and_unshuffled_order_is_input_order() -> Result<()> {
        let lengths = random_lengths(&mut Rng::new(1), 200);
        let buckets = Buckets::Boundaries(vec![200, 400]);
        let a = length_batches(&lengths, &buckets, BatchLimit::Items(8), Some(&mut Rng::new(9)))?;
        let b = length_batches(&lengths, &buckets, BatchLimit::Items(8), Some(&mut Rng::new(9)))?;
        let c = length_batches(&lengths, &buckets, BatchLimit::Items(8), Some(&mut Rng::new(10)))?;
        assert_eq!(a, b);
        assert_ne!(a, c);
        let plain = length_batches(&lengths, &Buckets::Single, BatchLimit::Items(8), None)?;
        let flat: Vec<usize> = plain.into_iter().flatten().collect();
        assert_eq!(flat, (0..200).collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn quantile_buckets_split_counts_evenly_and_bad_limits_are_errors() -> Result<()> {
        let lengths: Vec<usize> = (1..=100).collect();
        assert_eq!(bucket_bounds(&lengths, &Buckets::Quantiles(4))?, [25, 50, 75]);
        let batches = length_batches(&lengths, &Buckets::Quantiles(4), BatchLimit::Items(100), None)?;
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [25, 25, 25, 25]);
        assert!(length_batches(&lengths, &Buckets::Single, BatchLimit::Items(0), None).is_err());
        let err = length_batches(&lengths, &Buckets::Single, BatchLimit::Tokens(50), None).unwrap_err();
        assert!(err.to_string().contains("item 50"), "{err}");
        assert!(length_batches(&lengths, &Buckets::Boundaries(vec![10, 10]), BatchLimit::Items(4), None).is_err());
        assert!(length_batches(&lengths, &Buckets::Quantiles(0), BatchLimit::Items(4), None).is_err());
        assert!(length_batches(&[], &Buckets::Quantiles(3), BatchLimit::Items(4), None)?.is_empty());
        Ok(())
    }
}
