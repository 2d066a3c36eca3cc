//! Tokenizers: ProteinBERT's residue tokenizer and PRoBERTa's BPE with the fairseq id layout.
