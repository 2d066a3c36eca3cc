//! PRoBERTa's hyperparameters (spec `proberta.md` §4), with Hugging Face `RobertaConfig` names so
//! a transformers `config.json` reads directly.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Sizes of a fairseq/Hugging Face RoBERTa encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// 10,009 for PRoBERTa's fairseq dictionary (4 specials, 9,997 pieces, 7 madeupwords, `<mask>`).
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// Rows of the learned position table: the longest input plus `pad_token_id + 1` (514 for
    /// 512 tokens, fairseq's padding offset).
    pub max_position_embeddings: usize,
    pub pad_token_id: u32,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Token-type rows: Hugging Face models have one (added to every token), fairseq models none.
    #[serde(default)]
    pub type_vocab_size: usize,
    /// Zero the embedding output at padded positions, as fairseq's encoder does (Hugging Face does
    /// not). Only padded positions' hidden states depend on it: they are never attended to.
    #[serde(default = "default_true")]
    pub zero_padded_embeddings: bool,
}

fn default_eps() -> f64 {
    1e-5
}

fn default_dropout() -> f64 {
    0.1
}

fn default_true() -> bool {
    true
}

impl Default for Config {
    /// The paper's model: 5 layers × 768 × 12 heads × 3,072, 44,124,697 parameters with the LM head.
    fn default() -> Self {
        Self {
            vocab_size: 10_009,
            hidden_size: 768,
            num_hidden_layers: 5,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 514,
            pad_token_id: 1,
            layer_norm_eps: 1e-5,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            type_vocab_size: 0,
            zero_padded_embeddings: true,
        }
    }
}

impl Config {
    /// The 192-wide model the reference clustering script loads (`EMBEDDING_SIZE = 192`).
    pub fn clustering_192() -> Self {
        Self { hidden_size: 192, num_attention_heads: 12, intermediate_size: 768, ..Self::default() }
    }

    /// A small encoder for tests and the `tiny` notebook scale.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 64,
            ..Self::default()
        }
    }

    /// A laptop-CPU encoder for the `demo` scale.
    pub fn demo(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 192,
            num_hidden_layers: 5,
            num_attention_heads: 12,
            intermediate_size: 768,
            ..Self::default()
        }
    }

    /// Longest input in tokens (positions run from `pad_token_id + 1`).
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings.saturating_sub(self.pad_token_id as usize + 1)
    }

    /// Parameters of the encoder and the masked-LM head (tied output matrix counted once).
    pub fn num_parameters(&self) -> usize {
        let (h, f) = (self.hidden_size, self.intermediate_size);
        let layer = 4 * (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h;
        let embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h;
        let lm_head = h * h + h + 2 * h + self.vocab_size;
        embeddings + self.num_hidden_layers * layer + lm_head
    }

    pub fn validate(&self) -> Result<()> {
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(Error::invalid(format!(
                "PRoBERTa config: hidden_size ({}) must be a positive multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.vocab_size <= self.pad_token_id as usize || self.max_tokens() == 0 {
            return Err(Error::invalid(format!(
                "PRoBERTa config: vocab_size {} and max_position_embeddings {} leave no room for pad id {}",
                self.vocab_size, self.max_position_embeddings, self.pad_token_id
            )));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::invalid(format!("PRoBERTa config: {name} must be in [0, 1), got {p}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_sizes() {
        let c = Config::default();
        assert_eq!(c.num_parameters(), 44_124_697);
        assert_eq!(c.max_tokens(), 512);
        let hf: Config = serde_json::from_str(
            r#"{"vocab_size": 45, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
                "intermediate_size": 64, "max_position_embeddings": 34, "pad_token_id": 1,
                "layer_norm_eps": 1e-5, "hidden_act": "gelu", "model_type": "roberta"}"#,
        )
        .unwrap();
        assert_eq!(hf.max_tokens(), 32);
        assert!(Config { num_attention_heads: 5, ..c }.validate().is_err());
    }
}
