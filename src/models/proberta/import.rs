//! Hugging Face and fairseq RoBERTa checkpoints → this crate's parameter names (Hugging Face's
//! without the `roberta.` prefix).
//!
//! | fairseq (May 2020: `decoder.`, later: `encoder.`) | Hugging Face | here |
//! |---|---|---|
//! | `*.sentence_encoder.embed_tokens.weight` | `roberta.embeddings.word_embeddings.weight` | `embeddings.word_embeddings.weight` |
//! | `*.sentence_encoder.embed_positions.weight` | `roberta.embeddings.position_embeddings.weight` | `embeddings.position_embeddings.weight` |
//! | — | `roberta.embeddings.token_type_embeddings.weight` | `embeddings.token_type_embeddings.weight` |
//! | `*.sentence_encoder.emb_layer_norm.*` | `roberta.embeddings.LayerNorm.*` | `embeddings.LayerNorm.*` |
//! | `*.layers.{i}.self_attn.{q,k,v}_proj.*` | `roberta.encoder.layer.{i}.attention.self.{query,key,value}.*` | `encoder.layer.{i}.attention.self.*` |
//! | `*.layers.{i}.self_attn.out_proj.*` | `….attention.output.dense.*` | same without `roberta.` |
//! | `*.layers.{i}.self_attn_layer_norm.*` | `….attention.output.LayerNorm.*` | |
//! | `*.layers.{i}.fc1.*` / `fc2.*` | `….intermediate.dense.*` / `….output.dense.*` | |
//! | `*.layers.{i}.final_layer_norm.*` | `….output.LayerNorm.*` | |
//! | `*.lm_head.{dense,layer_norm}.*`, `*.lm_head.bias` | `lm_head.{dense,layer_norm}.*`, `lm_head.bias` | `lm_head.*` |
//! | `*.lm_head.weight` (tied) | `lm_head.decoder.weight` (tied, usually not stored) | — (the word embeddings) |
//! | `classification_heads.{name}.{dense,out_proj}.*` | `classifier.{dense,out_proj}.*` | `heads.{name}.*` / `classifier.*` |
//!
//! Differences kept as options of the config: Hugging Face adds a token-type row and does not zero
//! the embedding output at padded positions (`type_vocab_size` 1, `zero_padded_embeddings` false
//! after an HF import); fairseq has no token types and zeroes them (0, true after a fairseq import).

use std::collections::HashMap;

use candle_core::Tensor;

use super::config::Config;
use crate::{Error, Result};

/// Maps a Hugging Face `RobertaForMaskedLM` / `RobertaForSequenceClassification` state dict. The
/// `classifier.*` head, if any, keeps its name. Buffers and unused modules (`position_ids`,
/// `pooler`) are dropped; the tied decoder weight is dropped after checking it equals the word
/// embeddings.
pub fn from_hugging_face(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    let mut decoder_weight = None;
    for (name, t) in tensors {
        let name = name.strip_prefix("roberta.").unwrap_or(&name).to_string();
        if name.ends_with("position_ids") || name.starts_with("pooler.") || name == "lm_head.decoder.bias" {
            continue;
        }
        if name == "lm_head.decoder.weight" {
            decoder_weight = Some(t);
            continue;
        }
        out.insert(name, t);
    }
    if let (Some(decoder), Some(word)) = (decoder_weight, out.get("embeddings.word_embeddings.weight")) {
        check_tied(&decoder, word, "lm_head.decoder.weight")?;
    }
    Ok(out)
}

fn check_tied(output: &Tensor, word: &Tensor, what: &str) -> Result<()> {
    let same = output.dims() == word.dims()
        && (output.to_dtype(candle_core::DType::F32)? - word.to_dtype(candle_core::DType::F32)?)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?
            == 0.0;
    if !same {
        return Err(Error::invalid(format!(
            "{what} differs from the word embeddings: this crate's LM head is tied, as PRoBERTa's is"
        )));
    }
    Ok(())
}

/// The name a fairseq RoBERTa parameter has here, `None` for entries to drop (`version` buffers,
/// the tied LM output matrix), an error for names this importer does not know.
pub fn fairseq_name(name: &str) -> Result<Option<String>> {
    if name.ends_with(".version") || name.ends_with("_float_tensor") {
        return Ok(None);
    }
    if let Some(rest) = name.strip_prefix("classification_heads.") {
        return Ok(Some(format!("heads.{rest}")));
    }
    let rest = name
        .strip_prefix("decoder.")
        .or_else(|| name.strip_prefix("encoder."))
        .ok_or_else(|| Error::invalid(format!("unknown fairseq parameter {name}")))?;
    if let Some(head) = rest.strip_prefix("lm_head.") {
        return Ok(match head {
            "weight" => None,
            _ => Some(format!("lm_head.{head}")),
        });
    }
    let enc = rest
        .strip_prefix("sentence_encoder.")
        .ok_or_else(|| Error::invalid(format!("unknown fairseq parameter {name}")))?;
    let simple = match enc {
        "embed_tokens.weight" => Some("embeddings.word_embeddings.weight".to_string()),
        "embed_positions.weight" => Some("embeddings.position_embeddings.weight".to_string()),
        "emb_layer_norm.weight" => Some("embeddings.LayerNorm.weight".to_string()),
        "emb_layer_norm.bias" => Some("embeddings.LayerNorm.bias".to_string()),
        _ => None,
    };
    if simple.is_some() {
        return Ok(simple);
    }
    let layer =
        enc.strip_prefix("layers.").ok_or_else(|| Error::invalid(format!("unknown fairseq parameter {name}")))?;
    let (index, param) =
        layer.split_once('.').ok_or_else(|| Error::invalid(format!("unknown fairseq parameter {name}")))?;
    let (module, tail) =
        param.rsplit_once('.').ok_or_else(|| Error::invalid(format!("unknown fairseq parameter {name}")))?;
    let target = match module {
        "self_attn.q_proj" => "attention.self.query",
        "self_attn.k_proj" => "attention.self.key",
        "self_attn.v_proj" => "attention.self.value",
        "self_attn.out_proj" => "attention.output.dense",
        "self_attn_layer_norm" => "attention.output.LayerNorm",
        "fc1" => "intermediate.dense",
        "fc2" => "output.dense",
        "final_layer_norm" => "output.LayerNorm",
        _ => return Err(Error::invalid(format!("unknown fairseq parameter {name}"))),
    };
    Ok(Some(format!("encoder.layer.{index}.{target}.{tail}")))
}

/// Maps a fairseq RoBERTa state dict; `lm_head.weight` must equal the token embeddings (tied).
pub fn from_fairseq(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    let mut tied = None;
    for (name, t) in tensors {
        if name.ends_with("lm_head.weight") {
            tied = Some(t);
            continue;
        }
        if let Some(mapped) = fairseq_name(&name)? {
            out.insert(mapped, t);
        }
    }
    if let (Some(output), Some(word)) = (tied, out.get("embeddings.word_embeddings.weight")) {
        check_tied(&output, word, "lm_head.weight")?;
    }
    Ok(out)
}

/// A config from the mapped tensors' shapes; the head count is not in the weights.
pub fn config_from_tensors(tensors: &HashMap<String, Tensor>, num_attention_heads: usize) -> Result<Config> {
    let dims = |name: &str| -> Result<Vec<usize>> {
        tensors.get(name).map(|t| t.dims().to_vec()).ok_or_else(|| Error::invalid(format!("checkpoint has no {name}")))
    };
    let word = dims("embeddings.word_embeddings.weight")?;
    let positions = dims("embeddings.position_embeddings.weight")?;
    let fc1 = dims("encoder.layer.0.intermediate.dense.weight")?;
    let layers = (0..).take_while(|i| tensors.contains_key(&format!("encoder.layer.{i}.output.dense.weight"))).count();
    let config = Config {
        vocab_size: word[0],
        hidden_size: word[1],
        num_hidden_layers: layers,
        num_attention_heads,
        intermediate_size: fc1[0],
        max_position_embeddings: positions[0],
        type_vocab_size: tensors.get("embeddings.token_type_embeddings.weight").map_or(0, |t| t.dims()[0]),
        ..Config::default()
    };
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fairseq_names_map_both_generations() {
        let cases = [
            ("decoder.sentence_encoder.embed_tokens.weight", Some("embeddings.word_embeddings.weight")),
            (
                "encoder.sentence_encoder.layers.3.self_attn.k_proj.bias",
                Some("encoder.layer.3.attention.self.key.bias"),
            ),
            (
                "decoder.sentence_encoder.layers.0.final_layer_norm.weight",
                Some("encoder.layer.0.output.LayerNorm.weight"),
            ),
            ("decoder.lm_head.layer_norm.bias", Some("lm_head.layer_norm.bias")),
            ("decoder.lm_head.weight", None),
            ("decoder.sentence_encoder.version", None),
            (
                "classification_heads.protein_interaction_prediction.out_proj.weight",
                Some("heads.protein_interaction_prediction.out_proj.weight"),
            ),
        ];
        for (from, to) in cases {
            assert_eq!(fairseq_name(from).unwrap().as_deref(), to, "{from}");
        }
        assert!(fairseq_name("decoder.sentence_encoder.layers.0.mystery.weight").is_err());
    }
}
