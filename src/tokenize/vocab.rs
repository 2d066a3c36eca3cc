//! The fairseq dictionary: how PRoBERTa's checkpoints number tokens (spec proberta §2.1).
//!
//! ids 0–3 are `<s> <pad> </s> <unk>`, then the pieces in `dict.txt` order (by descending count over
//! the training split), then `madeupword0000…` fillers up to a multiple of 8, then `<mask>`, which the
//! masked-LM task appends. With 9,997 pieces that is 10,009 ids.
//!
//! ```
//! use protein_lm::tokenize::vocab::{FairseqDictionary, BOS, EOS, PAD, UNK};
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("dict.txt"), "SL 10\nKL 7\n\u{2581}M 5\n")?;
//! let dict = FairseqDictionary::load(dir.path().join("dict.txt"))?;
//! assert_eq!((BOS, PAD, EOS, UNK), (0, 1, 2, 3));
//! assert_eq!((dict.id("SL"), dict.id("\u{2581}M")), (Some(4), Some(6)));
//! assert_eq!(dict.id_or_unk("QQ"), UNK);
//! assert_eq!(dict.mask(), 7); // appended after the pieces
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::error::{Error, Location, Result};

pub const BOS: u32 = 0;
pub const PAD: u32 = 1;
pub const EOS: u32 = 2;
pub const UNK: u32 = 3;
pub const N_SPECIAL: usize = 4;
const SPECIALS: [&str; N_SPECIAL] = ["<s>", "<pad>", "</s>", "<unk>"];
pub const MASK_SYMBOL: &str = "<mask>";

/// The fairseq dictionary: symbols with their counts and ids (see the module docs).
///
/// ```
/// use protein_lm::tokenize::FairseqDictionary;
/// let dict = FairseqDictionary::build([("KL".to_string(), 5), ("SL".to_string(), 9)]);
/// // 4 specials, the pieces by descending count, fillers to a multiple of 8, then <mask>.
/// assert_eq!((dict.id("SL"), dict.id("KL")), (Some(4), Some(5)));
/// assert_eq!((dict.symbol(6), dict.mask(), dict.len()), (Some("madeupword0000"), 8, 9));
/// assert_eq!(dict.to_text(), "SL 9\nKL 5\nmadeupword0000 0\nmadeupword0001 0\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FairseqDictionary {
    symbols: Vec<String>,
    counts: Vec<u64>,
    index: HashMap<String, u32>,
}

impl FairseqDictionary {
    fn from_parts(symbols: Vec<String>, counts: Vec<u64>) -> Self {
        let index = symbols.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
        Self { symbols, counts, index }
    }

    /// Build from pieces and their counts as fairseq's `finalize` does: sort by descending count (ties
    /// by piece, so the order is deterministic), pad with `madeupwordNNNN` to a multiple of 8, then add
    /// `<mask>`.
    pub fn build(pieces: impl IntoIterator<Item = (String, u64)>) -> Self {
        let mut pieces: Vec<(String, u64)> = pieces.into_iter().collect();
        pieces.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut symbols: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        let mut counts = vec![0u64; N_SPECIAL];
        for (p, c) in pieces {
            symbols.push(p);
            counts.push(c);
        }
        let mut filler = 0;
        while !symbols.len().is_multiple_of(8) {
            symbols.push(format!("madeupword{filler:04}"));
            counts.push(0);
            filler += 1;
        }
        symbols.push(MASK_SYMBOL.to_string());
        counts.push(0);
        Self::from_parts(symbols, counts)
    }

    /// Load a fairseq `dict.txt` (`PIECE COUNT` per line, specials implicit) and append `<mask>`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut symbols: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        let mut counts = vec![0u64; N_SPECIAL];
        let mut seen = HashMap::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::read_failure(path, i + 1, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let at = || Location::line(path, i + 1);
            let (piece, count) = line.rsplit_once(' ').ok_or_else(|| Error::data(at(), "expected `PIECE COUNT`"))?;
            let count: u64 =
                count.parse().map_err(|_| Error::data(at(), format!("count `{count}` is not an integer")))?;
            // Listed again, a special would get a second id and lookups the later one (fairseq
            // refuses the file: "Duplicate word found").
            if SPECIALS.contains(&piece) || piece == MASK_SYMBOL {
                return Err(Error::data(
                    at(),
                    format!("`{piece}` is a special symbol, numbered by the dictionary itself, not a piece"),
                ));
            }
            if let Some(first) = seen.insert(piece.to_string(), i + 1) {
                return Err(Error::data(at(), format!("piece `{piece}` repeats line {first}")));
            }
            symbols.push(piece.to_string());
            counts.push(count);
        }
        symbols.push(MASK_SYMBOL.to_string());
        counts.push(0);
        Ok(Self::from_parts(symbols, counts))
    }

    /// Write `dict.txt` as fairseq does: every symbol after the specials except `<mask>`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_text()).map_err(|e| Error::io(path, e))
    }

    /// The `dict.txt` text [`save`](Self::save) writes.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (s, c) in self.symbols.iter().zip(&self.counts).skip(N_SPECIAL) {
            if s != MASK_SYMBOL {
                text.push_str(&format!("{s} {c}\n"));
            }
        }
        text
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
    pub fn mask(&self) -> u32 {
        self.index[MASK_SYMBOL]
    }
    pub fn id(&self, symbol: &str) -> Option<u32> {
        self.index.get(symbol).copied()
    }
    pub fn id_or_unk(&self, symbol: &str) -> u32 {
        self.id(symbol).unwrap_or(UNK)
    }
    pub fn symbol(&self, id: u32) -> Option<&str> {
        self.symbols.get(id as usize).map(String::as_str)
    }
    pub fn count(&self, id: u32) -> Option<u64> {
        self.counts.get(id as usize).copied()
    }
    /// The real pieces (no specials, fillers or mask), with their counts, in id order.
    pub fn pieces(&self) -> impl Iterator<Item = (&str, u64)> {
        self.symbols
            .iter()
            .zip(&self.counts)
            .skip(N_SPECIAL)
            .filter(|(s, _)| !s.starts_with("madeupword") && s.as_str() != MASK_SYMBOL)
            .map(|(s, c)| (s.as_str(), *c))
    }
    /// The ids a random replacement may draw in masked-LM training (fairseq: every id ≥ N_SPECIAL).
    pub fn first_regular_id(&self) -> u32 {
        N_SPECIAL as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_pads_to_multiple_of_eight_then_mask() {
        let d = FairseqDictionary::build(vec![("KL".into(), 5), ("SL".into(), 9), ("▁M".into(), 5)]);
        // 4 specials + 3 pieces = 7 → 1 filler → 8, then <mask>.
        assert_eq!(d.len(), 9);
        assert_eq!(d.id("SL"), Some(4));
        assert_eq!(d.id("KL"), Some(5)); // tie on count: ordered by piece
        assert_eq!(d.symbol(7), Some("madeupword0000"));
        assert_eq!(d.mask(), 8);
        let dir = tempfile::tempdir().unwrap();
        d.save(dir.path().join("dict.txt")).unwrap();
        assert_eq!(FairseqDictionary::load(dir.path().join("dict.txt")).unwrap(), d);
    }

    #[test]
    fn original_dict_has_10009_ids() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/proberta-vocab/dict.txt");
        if !path.exists() {
            crate::testing::skip(&format!("{} not present", path.display()));
            return;
        }
        let d = FairseqDictionary::load(&path).unwrap();
        assert_eq!(d.len(), 10_009);
        assert_eq!(d.id("SL"), Some(4));
        assert_eq!(d.id("SS"), Some(5));
        assert_eq!(d.id("madeupword0000"), Some(10_001));
        assert_eq!(d.mask(), 10_008);
        assert_eq!(d.pieces().count(), 9_997);
    }

    #[test]
    fn malformed_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dict.txt");
        std::fs::write(&p, "SL 10\nKL ten\n").unwrap();
        let e = FairseqDictionary::load(&p).unwrap_err().to_string();
        assert!(e.contains("dict.txt:2") && e.contains("`ten`"), "{e}");
    }
}
