//! ProteinBERT's residue tokenizer (spec proteinbert §1): 26 ids, `<START>` + residues + `<END>`,
//! right-padded with `<PAD>` to a fixed length, never truncated.
//!
//! ```
//! use protein_lm::tokenize::residue::{bucket_seq_len, END, PAD, START};
//! use protein_lm::tokenize::{ResidueTokenizer, UnknownCounts};
//! let sequence = "MKTAYIAKQR";
//! // The reference pads each protein to its length bucket.
//! let len = bucket_seq_len(sequence.len());
//! let ids = ResidueTokenizer.encode_padded(sequence, len, &mut UnknownCounts::default())?;
//! assert_eq!((ids.len(), ids[0], ids[11], ids[12]), (512, START, END, PAD));
//! assert_eq!(ResidueTokenizer.decode(&ids), sequence);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The 22 residue letters in id order (A=0 … Y=21); U and X have their own ids.
///
/// ```
/// use protein_lm::tokenize::residue::RESIDUES;
/// use protein_lm::tokenize::ResidueTokenizer;
/// // A residue's id is its position here.
/// assert_eq!(ResidueTokenizer::token_id('M'), RESIDUES.find('M').map(|i| i as u32));
/// assert_eq!(RESIDUES.len(), 22);
/// ```
pub const RESIDUES: &str = "ACDEFGHIKLMNPQRSTUVWXY";
pub const OTHER: u32 = 22;
/// The id of `<START>`, before the first residue.
///
/// ```
/// use protein_lm::tokenize::residue::START;
/// use protein_lm::tokenize::{ResidueTokenizer, UnknownCounts};
/// assert_eq!(ResidueTokenizer.encode("MK", &mut UnknownCounts::default())[0], START);
/// assert_eq!(ResidueTokenizer::token(START), "<START>");
/// ```
pub const START: u32 = 23;
/// The id of `<END>`, after the last residue.
///
/// ```
/// use protein_lm::tokenize::residue::END;
/// use protein_lm::tokenize::{ResidueTokenizer, UnknownCounts};
/// assert_eq!(ResidueTokenizer.encode("MK", &mut UnknownCounts::default())[3], END);
/// assert_eq!(ResidueTokenizer::token(END), "<END>");
/// ```
pub const END: u32 = 24;
/// The id of `<PAD>`, after `<END>` up to the padded length.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::tokenize::residue::PAD;
/// use protein_lm::tokenize::{ResidueTokenizer, UnknownCounts};
/// let ids = ResidueTokenizer.encode_padded("MK", 6, &mut UnknownCounts::default())?;
/// // The padding mask a model's `Forward::mask` takes: 1 on START, residues and END.
/// let mask = Tensor::new(ids.as_slice(), &Device::Cpu)?.ne(PAD)?.to_dtype(DType::U32)?;
/// assert_eq!(mask.to_vec1::<u32>()?, [1, 1, 1, 1, 0, 0]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub const PAD: u32 = 25;
pub const VOCAB_SIZE: usize = 26;
/// `<START>` and `<END>`.
pub const ADDED_TOKENS_PER_SEQ: usize = 2;

/// How many characters went to `<OTHER>`, by character (B, Z, O, J, lower case, …).
///
/// ```
/// use protein_lm::tokenize::{ResidueTokenizer, UnknownCounts};
/// let mut unknown = UnknownCounts::default();
/// ResidueTokenizer.encode("MKBZb", &mut unknown);
/// // B, Z and lower case go to <OTHER>, each counted by character.
/// assert_eq!((unknown.total(), unknown.by_char[&'B']), (3, 1));
/// let mut all = UnknownCounts::default();
/// all.merge(&unknown);
/// all.merge(&unknown);
/// assert_eq!(all.total(), 6);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnknownCounts {
    pub by_char: BTreeMap<char, usize>,
}

impl UnknownCounts {
    pub fn total(&self) -> usize {
        self.by_char.values().sum()
    }
    pub fn merge(&mut self, other: &UnknownCounts) {
        for (c, n) in &other.by_char {
            *self.by_char.entry(*c).or_default() += n;
        }
    }
}

/// ProteinBERT's tokenizer: one id per residue letter, `<START>` and `<END>` around, `<PAD>` after.
///
/// ```
/// use protein_lm::tokenize::residue::{END, OTHER, PAD, START};
/// use protein_lm::tokenize::{ResidueTokenizer, UnknownCounts};
/// let mut unknown = UnknownCounts::default();
/// let ids = ResidueTokenizer.encode_padded("MKB", 7, &mut unknown)?;
/// assert_eq!(ids, [START, 10, 8, OTHER, END, PAD, PAD]);
/// assert_eq!(unknown.total(), 1);
/// // Never truncated: a protein that does not fit is an error.
/// assert!(ResidueTokenizer.encode_padded("MKTAYIAKQR", 8, &mut unknown).is_err());
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ResidueTokenizer;

impl ResidueTokenizer {
    pub fn token_id(c: char) -> Option<u32> {
        RESIDUES.find(c).map(|i| i as u32)
    }

    /// The token string of an id, as the reference names them.
    pub fn token(id: u32) -> &'static str {
        const NAMES: [&str; VOCAB_SIZE] = [
            "A", "C", "D", "E", "F", "G", "H", "I", "K", "L", "M", "N", "P", "Q", "R", "S", "T", "U", "V", "W", "X",
            "Y", "<OTHER>", "<START>", "<END>", "<PAD>",
        ];
        NAMES.get(id as usize).copied().unwrap_or("<invalid>")
    }

    /// `<START>` + residues + `<END>`, counting characters mapped to `<OTHER>`. No upper-casing: the
    /// reference maps lower case to `<OTHER>` too.
    pub fn encode(&self, sequence: &str, unknown: &mut UnknownCounts) -> Vec<u32> {
        let mut ids = Vec::with_capacity(sequence.len() + ADDED_TOKENS_PER_SEQ);
        ids.push(START);
        for c in sequence.chars() {
            ids.push(Self::token_id(c).unwrap_or_else(|| {
                *unknown.by_char.entry(c).or_default() += 1;
                OTHER
            }));
        }
        ids.push(END);
        ids
    }

    /// Encode and right-pad with `<PAD>` to `seq_len`. A protein that does not fit is an error (the
    /// reference silently built a ragged array and failed later).
    pub fn encode_padded(&self, sequence: &str, seq_len: usize, unknown: &mut UnknownCounts) -> Result<Vec<u32>> {
        let needed = sequence.chars().count() + ADDED_TOKENS_PER_SEQ;
        if needed > seq_len {
            return Err(Error::invalid(format!(
                "a protein of {} residues needs seq_len ≥ {needed} (START and END included), got {seq_len}",
                needed - ADDED_TOKENS_PER_SEQ
            )));
        }
        let mut ids = self.encode(sequence, unknown);
        ids.resize(seq_len, PAD);
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter(|&&i| i <= OTHER)
            .map(|&i| if i == OTHER { "?".to_string() } else { Self::token(i).to_string() })
            .collect()
    }
}

/// The smallest of 512, 1024, 2048, … that holds `residues` + 2 tokens: the reference's length buckets.
///
/// ```
/// use protein_lm::tokenize::residue::bucket_seq_len;
/// // 510 residues + START + END fill 512 exactly; one more needs the next bucket.
/// assert_eq!((bucket_seq_len(510), bucket_seq_len(511), bucket_seq_len(3000)), (512, 1024, 4096));
/// ```
pub fn bucket_seq_len(residues: usize) -> usize {
    let mut len = 512;
    while len < residues + ADDED_TOKENS_PER_SEQ {
        len *= 2;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_layout_matches_the_reference() {
        let order: Vec<u32> =
            "ACDEFGHIKLMNPQRSTUVWXY".chars().map(|c| ResidueTokenizer::token_id(c).unwrap()).collect();
        assert_eq!(order, (0..22).collect::<Vec<_>>());
        assert_eq!(ResidueTokenizer::token_id('U'), Some(17));
        assert_eq!(ResidueTokenizer::token_id('X'), Some(20));
        assert_eq!(ResidueTokenizer::token(25), "<PAD>");
    }

    #[test]
    fn encodes_with_start_end_padding_and_counts_unknowns() {
        let mut unknown = UnknownCounts::default();
        let ids = ResidueTokenizer.encode_padded("MKBzO", 10, &mut unknown).unwrap();
        assert_eq!(ids, vec![START, 10, 8, OTHER, OTHER, OTHER, END, PAD, PAD, PAD]);
        assert_eq!(unknown.total(), 3);
        assert_eq!(unknown.by_char.get(&'z'), Some(&1));
        let err = ResidueTokenizer.encode_padded("MKTA", 5, &mut unknown).unwrap_err().to_string();
        assert!(err.contains("seq_len ≥ 6"), "{err}");
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_seq_len(510), 512);
        assert_eq!(bucket_seq_len(511), 1024);
        assert_eq!(bucket_seq_len(35_000), 65_536);
    }
}
