//! PRoBERTa's tokenizer (spec proberta §2): SentencePiece-style BPE over amino acids, with the pieces
//! numbered by a fairseq dictionary.
//!
//! Training uses the `tokenizers` crate with the reference's SentencePiece options: 10,000 ids
//! (= 9,997 pieces once the three SentencePiece specials are counted), character coverage 1.0 (every
//! letter seen is kept), a `▁` on each protein's first piece (SentencePiece's `add_dummy_prefix`; a
//! protein is one "word"), pieces of at most 16 characters, training sequences shorter than 1,024
//! residues. Piece ids follow fairseq (`vocab.rs`): ordered by count over the training corpus.
//!
//! The original `dict.txt` has pieces and counts but no merge rules, so it cannot reproduce the
//! original segmentation exactly. [`PieceEncoder::DictOnly`] approximates it the way SentencePiece's
//! BPE encoder works — start from characters, repeatedly merge the adjacent pair whose concatenation
//! is a piece with the best score — using the piece's count as its score (SentencePiece used merge
//! order, which `dict.txt` does not keep). [`ProbertaTokenizer::agreement`] measures how close that is.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{AddedToken, Model, Tokenizer};

use crate::error::{Error, Result};
use crate::tokenize::residue::UnknownCounts;
use crate::tokenize::vocab::{self, FairseqDictionary};

pub const WORD_START: char = '▁';
const UNK_PIECE: &str = "<unk>";

/// Options of BPE training; the defaults are the reference's SentencePiece call.
///
/// ```
/// use protein_lm::tokenize::{BpeOptions, ProbertaTokenizer};
/// let corpus = ["MKTAYIAKQRQISFVKSHFSRQ", "MKKLLPTAAAGLLLLAAQPAMA", "MKTAYIAKQR"];
/// // A small vocabulary, and training on proteins under 20 residues only.
/// let options = BpeOptions { vocab_size: 40, max_train_length: 20, ..BpeOptions::default() };
/// let (_, report) = ProbertaTokenizer::train(corpus, &options)?;
/// assert_eq!((report.sequences_used, report.skipped_too_long), (1, 2));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BpeOptions {
    /// SentencePiece `vocab_size`, which counts its three specials (unk, bos, eos).
    pub vocab_size: usize,
    pub max_piece_length: usize,
    /// Only sequences with fewer residues than this are used for training (reference: < 1,024).
    pub max_train_length: usize,
}

impl Default for BpeOptions {
    fn default() -> Self {
        Self { vocab_size: 10_000, max_piece_length: 16, max_train_length: 1024 }
    }
}

/// What training used and skipped.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BpeTrainingReport {
    pub sequences_used: usize,
    pub skipped_too_long: usize,
    pub pieces: usize,
    pub residues_per_piece: f64,
}

/// Splits a protein into piece strings.
#[derive(Clone)]
pub enum PieceEncoder {
    /// A BPE with merge rules, trained here (exact).
    Bpe(Box<Tokenizer>),
    /// Only a piece list with scores (the original `dict.txt`): approximate, see the module docs.
    DictOnly { scores: HashMap<String, u64>, max_piece_chars: usize },
}

/// `<s> pieces </s>` with the chosen truncation (for callers that need the piece count first).
///
/// ```
/// use protein_lm::tokenize::bpe::with_specials;
/// use protein_lm::tokenize::SingleTruncation;
/// // A protein of 600 pieces kept within 512 tokens, `</s>` included.
/// let ids = with_specials((0..600).map(|i| 4 + i % 10).collect(), SingleTruncation::default());
/// assert_eq!((ids.len(), ids[0], ids[511]), (512, 0, 2));
/// ```
pub fn with_specials(mut pieces: Vec<u32>, truncation: SingleTruncation) -> Vec<u32> {
    if let SingleTruncation::KeepEnd { max_len } = truncation {
        pieces.truncate(max_len.saturating_sub(2));
    }
    let mut ids = Vec::with_capacity(pieces.len() + 2);
    ids.push(vocab::BOS);
    ids.extend(pieces);
    ids.push(vocab::EOS);
    if let SingleTruncation::CutInput { max_len } = truncation {
        ids.truncate(max_len);
    }
    ids
}

/// Single-protein truncation: the paper keeps `<s>` … `</s>` within 512 (510 pieces); the reference
/// cut the whole input to its first 512 tokens, losing `</s>` on long proteins.
///
/// ```
/// use protein_lm::tokenize::bpe::with_specials;
/// use protein_lm::tokenize::SingleTruncation;
/// let pieces = vec![10, 11, 12, 13, 14];
/// // The paper keeps `</s>` (2); the reference cut it off.
/// assert_eq!(with_specials(pieces.clone(), SingleTruncation::KeepEnd { max_len: 5 }), [0, 10, 11, 12, 2]);
/// assert_eq!(with_specials(pieces.clone(), SingleTruncation::CutInput { max_len: 5 }), [0, 10, 11, 12, 13]);
/// assert_eq!(with_specials(pieces, SingleTruncation::None).len(), 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SingleTruncation {
    /// Keep the first `max_len − 2` pieces, then `</s>` (paper, default: 512).
    KeepEnd {
        max_len: usize,
    },
    /// Cut the encoded input to its first `max_len` tokens (reference `--truncate-sequence`).
    CutInput {
        max_len: usize,
    },
    None,
}

impl Default for SingleTruncation {
    fn default() -> Self {
        SingleTruncation::KeepEnd { max_len: 512 }
    }
}

/// Pair truncation: the paper cuts each protein to 254 pieces before joining (so the pair fits 512);
/// the reference code cut only the joined input to 512, letting a long first protein crowd out the
/// second.
///
/// ```
/// use protein_lm::tokenize::{BpeOptions, PairTruncation, ProbertaTokenizer, UnknownCounts};
/// let (a, b) = ("MKTAYIAKQRQISFVKSHFSRQ", "MKKLLPTAAAGLLLLAAQPAMA");
/// let (tokenizer, _) = ProbertaTokenizer::train([a, b], &BpeOptions { vocab_size: 40, ..BpeOptions::default() })?;
/// let mut unknown = UnknownCounts::default();
/// // Each protein cut to one piece: <s> a </s> </s> b </s>.
/// let ids = tokenizer.encode_pair(a, b, PairTruncation::PerProtein { per_protein: 1 }, &mut unknown)?;
/// assert_eq!((ids.len(), ids[0], ids[2], ids[3], ids[5]), (6, 0, 2, 2, 2));
/// // The reference's cut of the joined input.
/// assert_eq!(tokenizer.encode_pair(a, b, PairTruncation::WholeInput { max_len: 4 }, &mut unknown)?.len(), 4);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PairTruncation {
    /// Each protein to at most `per_protein` pieces (paper, default: 254).
    PerProtein {
        per_protein: usize,
    },
    /// The joined `<s> A </s> </s> B </s>` to its first `max_len` tokens (reference).
    WholeInput {
        max_len: usize,
    },
    None,
}

impl Default for PairTruncation {
    fn default() -> Self {
        PairTruncation::PerProtein { per_protein: 254 }
    }
}

/// PRoBERTa's tokenizer: BPE pieces (exact with merges, approximate from `dict.txt` alone) numbered by a fairseq dictionary.
///
/// ```
/// use protein_lm::tokenize::{BpeOptions, ProbertaTokenizer, SingleTruncation, UnknownCounts};
/// let corpus = ["MKTAYIAKQRQISFVKSHFSRQ", "MKKLLPTAAAGLLLLAAQPAMA", "MKTAYIAKQR"];
/// let (tokenizer, _) = ProbertaTokenizer::train(corpus, &BpeOptions { vocab_size: 40, ..BpeOptions::default() })?;
/// // The first piece carries SentencePiece's `▁`.
/// assert_eq!(tokenizer.pieces("MKTAYIAKQR")?.concat(), "▁MKTAYIAKQR");
/// let ids = tokenizer.encode_single("MKTAYIAKQR", SingleTruncation::default(), &mut UnknownCounts::default())?;
/// assert_eq!((ids[0], ids[ids.len() - 1]), (0, 2)); // <s> … </s>
/// // Saved and loaded with its merges: the same pieces again.
/// let dir = tempfile::tempdir()?;
/// tokenizer.save(dir.path())?;
/// assert_eq!(ProbertaTokenizer::load(dir.path())?.pieces("MKTAYIAKQR")?, tokenizer.pieces("MKTAYIAKQR")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ProbertaTokenizer {
    pub encoder: PieceEncoder,
    pub dictionary: FairseqDictionary,
}

impl ProbertaTokenizer {
    /// Train a BPE on `sequences` with the reference options and number its pieces by their counts
    /// over the training sequences.
    pub fn train<'a>(
        sequences: impl IntoIterator<Item = &'a str>,
        options: &BpeOptions,
    ) -> Result<(Self, BpeTrainingReport)> {
        let mut report = BpeTrainingReport::default();
        let train: Vec<&str> = sequences
            .into_iter()
            .filter(|s| {
                let keep = s.chars().count() < options.max_train_length;
                if !keep {
                    report.skipped_too_long += 1;
                }
                keep
            })
            .collect();
        if train.is_empty() {
            return Err(Error::invalid("no training sequence shorter than max_train_length"));
        }
        report.sequences_used = train.len();
        // SentencePiece's vocab_size counts <unk>, <s>, </s>; the `tokenizers` BPE counts its <unk>.
        let n_pieces = options.vocab_size.saturating_sub(3);
        let trainer = BpeTrainerBuilder::new()
            .vocab_size(n_pieces + 1)
            .min_frequency(0)
            .show_progress(false)
            .special_tokens(vec![AddedToken::from(UNK_PIECE, true)])
            .max_token_length(Some(options.max_piece_length))
            .build();
        let model = BPE::builder().unk_token(UNK_PIECE.to_string()).build().map_err(tok_err)?;
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(Metaspace::new(WORD_START, PrependScheme::First, false)));
        tokenizer.with_decoder(Some(tokenizers::decoders::metaspace::Metaspace::new(
            WORD_START,
            PrependScheme::First,
            false,
        )));
        let mut trainer = tokenizers::models::TrainerWrapper::BpeTrainer(trainer);
        tokenizer.train(&mut trainer, train.iter().copied()).map_err(tok_err)?;

        // Number the pieces by their frequency in the training corpus, as fairseq's binarisation does.
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut residues = 0usize;
        let mut total_pieces = 0usize;
        for s in &train {
            let enc = tokenizer.encode(*s, false).map_err(tok_err)?;
            residues += s.len();
            total_pieces += enc.get_tokens().len();
            for t in enc.get_tokens() {
                *counts.entry(t.clone()).or_default() += 1;
            }
        }
        let vocab = tokenizer.get_model().get_vocab();
        let pieces =
            vocab.keys().filter(|p| p.as_str() != UNK_PIECE).map(|p| (p.clone(), counts.get(p).copied().unwrap_or(0)));
        let dictionary = FairseqDictionary::build(pieces);
        report.pieces = dictionary.pieces().count();
        report.residues_per_piece = residues as f64 / total_pieces.max(1) as f64;
        Ok((Self { encoder: PieceEncoder::Bpe(Box::new(tokenizer)), dictionary }, report))
    }

    /// The original PRoBERTa `dict.txt`, with the approximate merge-free encoder.
    pub fn from_fairseq_dict(path: impl AsRef<Path>) -> Result<Self> {
        let path = dict_path(path.as_ref())?;
        let dictionary = FairseqDictionary::load(&path)?;
        Ok(Self::dict_only(dictionary))
    }

    /// A merge-free encoder over a dictionary's pieces, scored by count.
    pub fn dict_only(dictionary: FairseqDictionary) -> Self {
        let scores: HashMap<String, u64> = dictionary.pieces().map(|(p, c)| (p.to_string(), c)).collect();
        let max_piece_chars = scores.keys().map(|p| p.chars().count()).max().unwrap_or(1);
        Self { encoder: PieceEncoder::DictOnly { scores, max_piece_chars }, dictionary }
    }

    /// Save `tokenizer.json` (the BPE with its merges) and `dict.txt` (the fairseq ids) into `dir`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for (name, contents) in self.files()? {
            crate::output::write_file_atomic(&dir.join(name), &contents)?;
        }
        Ok(())
    }

    /// What [`save`](Self::save) writes, as (file name, contents): `dict.txt`, and `tokenizer.json`
    /// when the merges are known. Model directories carry these, so a model is always saved with
    /// the tokenizer it was actually trained with.
    pub fn files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut files = vec![("dict.txt".to_string(), self.dictionary.to_text().into_bytes())];
        if let PieceEncoder::Bpe(t) = &self.encoder {
            files.push(("tokenizer.json".to_string(), t.to_string(true).map_err(tok_err)?.into_bytes()));
        }
        Ok(files)
    }

    /// Load what [`save`](Self::save) wrote; a directory with only `dict.txt` gives the approximate
    /// encoder.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let dictionary = FairseqDictionary::load(dict_path(dir)?)?;
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            // Parsed as a JSON value first: tokenizers 0.23 panics (an `expect` in the decoder's
            // Deserialize) on a syntax error inside the `decoder` field, which a value cannot have.
            let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|error| Error::Json { path: json.clone(), error })?;
            let t: Tokenizer = serde_json::from_value(value)
                .map_err(|e| Error::Tokenizer(format!("{}: not a tokenizer: {e}", json.display())))?;
            // Whether it encodes depends on the file, not the protein (e.g. an `<unk>` missing from
            // its vocabulary): every letter the readers accept is tried here, so the error names the file.
            let letters: String = ('A'..='Z').chain('a'..='z').collect();
            t.encode(letters.as_str(), false)
                .map_err(|e| Error::Tokenizer(format!("{}: cannot encode with it: {e}", json.display())))?;
            Ok(Self { encoder: PieceEncoder::Bpe(Box::new(t)), dictionary })
        } else {
            Ok(Self::dict_only(dictionary))
        }
    }

    pub fn is_exact(&self) -> bool {
        matches!(self.encoder, PieceEncoder::Bpe(_))
    }

    /// A protein's pieces as strings, the first one carrying `▁`.
    pub fn pieces(&self, sequence: &str) -> Result<Vec<String>> {
        match &self.encoder {
            PieceEncoder::Bpe(t) => Ok(t.encode(sequence, false).map_err(tok_err)?.get_tokens().to_vec()),
            PieceEncoder::DictOnly { scores, max_piece_chars } => {
                Ok(merge_by_score(sequence, scores, *max_piece_chars))
            }
        }
    }

    /// Piece ids without specials. Letters that are no single-letter piece of the dictionary (never
    /// seen in training, e.g. J) end up in `<unk>` and are counted.
    pub fn encode_pieces(&self, sequence: &str, unknown: &mut UnknownCounts) -> Result<Vec<u32>> {
        for c in sequence.chars() {
            if self.dictionary.id(c.encode_utf8(&mut [0; 4])).is_none() {
                *unknown.by_char.entry(c).or_default() += 1;
            }
        }
        Ok(self.pieces(sequence)?.iter().map(|p| self.dictionary.id_or_unk(p)).collect())
    }

    /// `<s> pieces </s>` with the chosen truncation.
    pub fn encode_single(
        &self,
        sequence: &str,
        truncation: SingleTruncation,
        unknown: &mut UnknownCounts,
    ) -> Result<Vec<u32>> {
        Ok(with_specials(self.encode_pieces(sequence, unknown)?, truncation))
    }

    /// `<s> A </s> </s> B </s>` with the chosen truncation.
    pub fn encode_pair(
        &self,
        a: &str,
        b: &str,
        truncation: PairTruncation,
        unknown: &mut UnknownCounts,
    ) -> Result<Vec<u32>> {
        let mut pa = self.encode_pieces(a, unknown)?;
        let mut pb = self.encode_pieces(b, unknown)?;
        if let PairTruncation::PerProtein { per_protein } = truncation {
            pa.truncate(per_protein);
            pb.truncate(per_protein);
        }
        let mut ids = Vec::with_capacity(pa.len() + pb.len() + 4);
        ids.push(vocab::BOS);
        ids.extend(pa);
        ids.extend([vocab::EOS, vocab::EOS]);
        ids.extend(pb);
        ids.push(vocab::EOS);
        if let PairTruncation::WholeInput { max_len } = truncation {
            ids.truncate(max_len);
        }
        Ok(ids)
    }

    /// Space-joined pieces, the reference's tokenized text format (`▁M KK LLL …`).
    pub fn tokenize_to_text(&self, sequence: &str) -> Result<String> {
        Ok(self.pieces(sequence)?.join(" "))
    }

    /// Fraction of `sequences` whose pieces from this tokenizer equal those of the merge-free encoder
    /// over the same dictionary, and the fraction of equal piece boundaries: how good the `DictOnly`
    /// approximation is for a vocabulary whose true merges are known.
    pub fn agreement<'a>(&self, sequences: impl IntoIterator<Item = &'a str>) -> Result<(f64, f64)> {
        let approx = Self::dict_only(self.dictionary.clone());
        let (mut same, mut n, mut shared_cuts, mut cuts) = (0usize, 0usize, 0usize, 0usize);
        for s in sequences {
            let a = self.pieces(s)?;
            let b = approx.pieces(s)?;
            n += 1;
            same += (a == b) as usize;
            let boundaries = |p: &[String]| {
                let mut acc = 0;
                p.iter()
                    .map(|x| {
                        acc += x.chars().count();
                        acc
                    })
                    .collect::<std::collections::HashSet<_>>()
            };
            let (ba, bb) = (boundaries(&a), boundaries(&b));
            cuts += ba.len().max(bb.len());
            shared_cuts += ba.intersection(&bb).count();
        }
        Ok((same as f64 / n.max(1) as f64, shared_cuts as f64 / cuts.max(1) as f64))
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// SentencePiece-style BPE encoding with piece scores: start from single characters (the first
/// prefixed by `▁` as its own symbol), merge the adjacent pair whose concatenation is a known piece
/// with the highest score (leftmost on ties) until no pair is a piece. O(n log n) with a heap and a
/// linked list, so a 35,000-residue protein is fine.
fn merge_by_score(sequence: &str, scores: &HashMap<String, u64>, max_piece_chars: usize) -> Vec<String> {
    let mut symbols: Vec<String> =
        std::iter::once(WORD_START.to_string()).chain(sequence.chars().map(|c| c.to_string())).collect();
    let n = symbols.len();
    let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
    let mut next: Vec<Option<usize>> = (0..n).map(|i| if i + 1 < n { Some(i + 1) } else { None }).collect();
    let mut alive = vec![true; n];
    // (score, leftmost first, left index, right index, combined length as a staleness check)
    let mut heap: BinaryHeap<(u64, Reverse<usize>, usize, usize, usize)> = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<_>, symbols: &[String], l: usize, r: usize| {
        let merged_chars = symbols[l].chars().count() + symbols[r].chars().count();
        if merged_chars > max_piece_chars {
            return;
        }
        let merged = format!("{}{}", symbols[l], symbols[r]);
        if let Some(&score) = scores.get(&merged) {
            heap.push((score, Reverse(l), l, r, symbols[l].len() + symbols[r].len()));
        }
    };
    for i in 0..n.saturating_sub(1) {
        push(&mut heap, &symbols, i, i + 1);
    }
    while let Some((_, _, l, r, len)) = heap.pop() {
        if !alive[l] || !alive[r] || next[l] != Some(r) || symbols[l].len() + symbols[r].len() != len {
            continue;
        }
        let right = std::mem::take(&mut symbols[r]);
        symbols[l].push_str(&right);
        alive[r] = false;
        next[l] = next[r];
        if let Some(nr) = next[r] {
            prev[nr] = Some(l);
        }
        if let Some(p) = prev[l] {
            push(&mut heap, &symbols, p, l);
        }
        if let Some(nr) = next[l] {
            push(&mut heap, &symbols, l, nr);
        }
    }
    let mut out = Vec::new();
    let mut i = Some(0);
    while let Some(k) = i {
        out.push(std::mem::take(&mut symbols[k]));
        i = next[k];
    }
    // A bare `▁` that merged with nothing stays a piece of its own, as in SentencePiece.
    out
}

/// The fairseq `dict.txt` of `path`: the file itself, or the one in a tokenizer or PRoBERTa model
/// directory. A ProteinBERT model directory, or a directory without `dict.txt`, is an error saying
/// so (rather than "dict.txt: no such file").
pub fn dict_path(path: &Path) -> Result<std::path::PathBuf> {
    if !path.exists() {
        return Err(Error::data(
            crate::Location::file(path),
            "no such file or directory (a tokenizer directory or a fairseq dict.txt was expected)",
        ));
    }
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let dict = path.join("dict.txt");
    if dict.is_file() {
        return Ok(dict);
    }
    let message = match crate::models::directory::model_kind(path).as_deref() {
        Some("proteinbert") => {
            "a ProteinBERT model directory, where a PRoBERTa tokenizer or model directory is needed (ProteinBERT reads residues and needs no tokenizer)"
        }
        _ => "no dict.txt here: not a tokenizer directory (`protein-lm tokenizer train`) or a PRoBERTa model directory",
    };
    Err(Error::data(crate::Location::file(path), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let mut rng = crate::Rng::new(11);
        let motifs = ["MKT", "LLAG", "SSG", "PEPT", "KKR", "AVL"];
        (0..400)
            .map(|_| {
                let mut s = String::from("M");
                for _ in 0..(5 + rng.index(20)) {
                    s.push_str(motifs[rng.index(motifs.len())]);
                    s.push("ACDEFGHIKLMNPQRSTVWY".as_bytes()[rng.index(20)] as char);
                }
                s
            })
            .collect()
    }

    #[test]
    fn trains_encodes_and_round_trips() {
        let seqs = corpus();
        let opts = BpeOptions { vocab_size: 80, ..Default::default() };
        let (tok, report) = ProbertaTokenizer::train(seqs.iter().map(String::as_str), &opts).unwrap();
        assert_eq!(report.sequences_used, 400);
        assert!(report.pieces <= 77 && report.pieces > 20, "{report:?}");
        assert!(report.residues_per_piece > 1.5, "{report:?}");
        let pieces = tok.pieces(&seqs[0]).unwrap();
        assert!(pieces[0].starts_with(WORD_START), "{pieces:?}");
        assert!(pieces.iter().skip(1).all(|p| !p.contains(WORD_START)));
        assert_eq!(pieces.concat().trim_start_matches(WORD_START), seqs[0]);
        assert!(pieces.iter().all(|p| p.chars().count() <= 16));
        // Ids: specials, then pieces by descending count.
        let d = &tok.dictionary;
        assert_eq!(d.len() % 8, 1);
        let counts: Vec<u64> = d.pieces().map(|(_, c)| c).collect();
        assert!(counts.windows(2).all(|w| w[0] >= w[1]));
        let dir = tempfile::tempdir().unwrap();
        tok.save(dir.path()).unwrap();
        let back = ProbertaTokenizer::load(dir.path()).unwrap();
        assert!(back.is_exact());
        let mut u = UnknownCounts::default();
        assert_eq!(
            back.encode_single(&seqs[5], SingleTruncation::default(), &mut u).unwrap(),
            tok.encode_single(&seqs[5], SingleTruncation::default(), &mut u).unwrap()
        );
        // Characters never seen in training map to <unk> and are counted.
        let ids = tok.encode_pieces("MKTJ", &mut u).unwrap();
        assert_eq!(*ids.last().unwrap(), vocab::UNK);
        assert!(u.total() >= 1);
    }

    #[test]
    fn single_and_pair_truncation() {
        let d =
            FairseqDictionary::build((b'A'..=b'Z').map(|c| ((c as char).to_string(), 1)).chain([("▁".to_string(), 1)]));
        let tok = ProbertaTokenizer::dict_only(d);
        let long = "A".repeat(600);
        let mut u = UnknownCounts::default();
        let single = tok.encode_single(&long, SingleTruncation::default(), &mut u).unwrap();
        assert_eq!(single.len(), 512);
        assert_eq!((single[0], single[511]), (vocab::BOS, vocab::EOS));
        let cut = tok.encode_single(&long, SingleTruncation::CutInput { max_len: 512 }, &mut u).unwrap();
        assert_eq!(cut.len(), 512);
        assert_ne!(cut[511], vocab::EOS);
        let pair = tok.encode_pair(&long, "CC", PairTruncation::default(), &mut u).unwrap();
        // <s> ▁ + 253 A </s> </s> ▁ C C </s>
        assert_eq!(pair.len(), 1 + 254 + 2 + 3 + 1);
        assert_eq!(&pair[255..257], &[vocab::EOS, vocab::EOS]);
        let whole = tok.encode_pair(&long, "CC", PairTruncation::WholeInput { max_len: 512 }, &mut u).unwrap();
        assert_eq!(whole.len(), 512);
        assert!(!whole.contains(&tok.dictionary.id("C").unwrap()), "B crowded out, as in the reference");
    }

    #[test]
    fn merge_by_score_prefers_high_scores() {
        let scores: HashMap<String, u64> = [("▁M", 5), ("KT", 9), ("MK", 7), ("KTA", 3), ("▁MKTA", 1)]
            .iter()
            .map(|(p, c)| (p.to_string(), *c))
            .collect();
        // Best first: KT(9) → ▁M(5) → KTA(3) → ▁MKTA(1) would need ▁M+KTA.
        assert_eq!(merge_by_score("MKTA", &scores, 16), vec!["▁MKTA"]);
        assert_eq!(merge_by_score("MKTAX", &scores, 16), vec!["▁MKTA", "X"]);
        assert_eq!(merge_by_score("MKTA", &scores, 4), vec!["▁M", "KTA"]);
    }
}
