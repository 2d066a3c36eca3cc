//! Tokenizers: ProteinBERT's residue tokenizer and PRoBERTa's BPE with the fairseq id layout.

pub mod bpe;
pub mod residue;
pub mod vocab;

pub use bpe::{BpeOptions, PairTruncation, ProbertaTokenizer, SingleTruncation};
pub use residue::{ResidueTokenizer, UnknownCounts};
pub use vocab::FairseqDictionary;
