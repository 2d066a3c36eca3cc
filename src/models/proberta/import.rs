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

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub config: Config,
    pub tensors: usize,
    pub parameters: usize,
    pub has_lm_head: bool,
    pub heads: Vec<String>,
}

/// Class names of an HF `id2label` map in id order, when it has one entry per class.
fn hf_labels(config: &serde_json::Value, classes: usize) -> Vec<String> {
    let Some(map) = config.get("id2label").and_then(|v| v.as_object()) else { return Vec::new() };
    let labels: Vec<String> =
        (0..classes).filter_map(|i| map.get(&i.to_string())?.as_str().map(str::to_string)).collect();
    if labels.len() == classes {
        labels
    } else {
        Vec::new()
    }
}

/// Writes a model directory from the mapped tensors (encoder, optional `lm_head.*`, heads under
/// `classifier.*` or `heads.{name}.*`).
pub fn write_model_dir(
    out: &std::path::Path,
    config: Config,
    tensors: HashMap<String, Tensor>,
    source: String,
    head_labels: &HashMap<String, Vec<String>>,
    dictionary: Option<&std::path::Path>,
) -> Result<(crate::models::directory::ModelDir, ImportReport)> {
    use crate::models::directory::{DirectoryConfig, ModelConfig, ModelDir, StoredHead};
    use crate::models::heads::{HeadConfig, Level, Target};
    config.validate()?;
    let has_lm_head = tensors.contains_key("lm_head.dense.weight");
    let mut prefixes: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".out_proj.weight"))
        .filter(|p| *p == "classifier" || p.starts_with("heads."))
        .map(str::to_string)
        .collect();
    prefixes.sort();
    let mut heads = Vec::new();
    for prefix in &prefixes {
        let classes = tensors[&format!("{prefix}.out_proj.weight")].dims()[0];
        let target = if classes == 1 { Target::Numeric } else { Target::Categorical { classes } };
        heads.push(StoredHead {
            prefix: prefix.clone(),
            config: HeadConfig::proberta(Level::Protein, target),
            labels: head_labels.get(prefix).cloned().unwrap_or_default(),
        });
    }
    // Every tensor the network needs is there with the right shape: load it before writing.
    let vb = candle_nn::VarBuilder::from_tensors(tensors.clone(), candle_core::DType::F32, &candle_core::Device::Cpu);
    super::Encoder::load(vb.clone(), &config)?;
    if has_lm_head {
        super::LmHead::load(vb.pp("lm_head"), &config)?;
    }
    let parameters = tensors.values().map(|t| t.elem_count()).sum();
    let report = ImportReport {
        config: config.clone(),
        tensors: tensors.len(),
        parameters,
        has_lm_head,
        heads: prefixes.clone(),
    };
    let dir_config = DirectoryConfig { model: ModelConfig::Proberta(config), source: Some(source), has_lm_head, heads };
    let tensors: HashMap<String, Tensor> =
        tensors.into_iter().map(|(k, t)| Ok((k, t.to_dtype(candle_core::DType::F32)?))).collect::<Result<_>>()?;
    let dir = ModelDir::create(out, &dir_config, &tensors)?;
    if let Some(dict) = dictionary {
        let bytes = std::fs::read(dict).map_err(|e| Error::io(dict, e))?;
        dir.write_file(crate::models::directory::DICT_FILE, &bytes)?;
    }
    Ok((dir, report))
}

/// The weights of a `save_pretrained` directory: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists. Returns the file to name in later errors.
fn read_hf_weights(dir: &std::path::Path) -> Result<(std::path::PathBuf, HashMap<String, Tensor>)> {
    let load = |path: &std::path::Path| {
        candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .map_err(|e| Error::data(crate::Location::file(path), format!("cannot read safetensors: {e}")))
    };
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok((single.clone(), load(&single)?));
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::data(crate::Location::file(&index), format!("invalid JSON: {e}")))?;
        let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
            Error::data(crate::Location::file(&index), "no `weight_map` object (not a safetensors index?)")
        })?;
        let shards: std::collections::BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        let mut tensors = HashMap::new();
        for shard in shards {
            tensors.extend(load(&dir.join(shard))?);
        }
        for name in map.keys() {
            if !tensors.contains_key(name) {
                return Err(Error::data(
                    crate::Location::file(&index),
                    format!("`{name}` is listed but in none of the shards"),
                ));
            }
        }
        return Ok((index, tensors));
    }
    let hint = if dir.join("pytorch_model.bin").is_file() {
        "only pytorch_model.bin, which is not read: load the model with transformers and save it again with \
         `model.save_pretrained(DIR)` (transformers ≥ 4.35 writes model.safetensors)"
    } else {
        "save the model with `model.save_pretrained(DIR)` (transformers ≥ 4.35 writes model.safetensors)"
    };
    Err(Error::invalid(format!("{}: no model.safetensors or model.safetensors.index.json; {hint}", dir.display())))
}

/// `protein-lm import hf-roberta DIR`: a `save_pretrained` directory of `RobertaForMaskedLM` or
/// `RobertaForSequenceClassification` (`config.json` + `model.safetensors`) → a model directory.
/// The fairseq dictionary is copied from `DIR/dict.txt` or `dictionary` when given.
pub fn import_hugging_face(
    dir: &std::path::Path,
    out: &std::path::Path,
    dictionary: Option<&std::path::Path>,
) -> Result<(crate::models::directory::ModelDir, ImportReport)> {
    let config_path = dir.join("config.json");
    if let Some(kind) = crate::models::directory::model_kind(dir) {
        return Err(Error::data(
            crate::Location::file(dir),
            format!("a protein-lm {kind} model directory already, not a Hugging Face RoBERTa save (nothing to import)"),
        ));
    }
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::data(crate::Location::file(&config_path), format!("invalid JSON: {e}")))?;
    let mut config: Config = serde_json::from_value(json.clone())
        .map_err(|e| Error::data(crate::Location::file(&config_path), format!("not a RoBERTa config: {e}")))?;
    if let Some(act) = json.get("hidden_act").and_then(|v| v.as_str()) {
        if act != "gelu" {
            return Err(Error::data(
                crate::Location::file(&config_path),
                format!("hidden_act {act:?}: only exact \"gelu\" (fairseq's and PRoBERTa's) is supported"),
            ));
        }
    }
    config.zero_padded_embeddings = false; // Hugging Face's behaviour
    let (weights, tensors) = read_hf_weights(dir)?;
    let tensors = from_hugging_face(tensors).map_err(|e| e.in_file(&weights))?;
    let mut labels = HashMap::new();
    if let Some(w) = tensors.get("classifier.out_proj.weight") {
        labels.insert("classifier".to_string(), hf_labels(&json, w.dims()[0]));
    }
    let local_dict = dir.join(crate::models::directory::DICT_FILE);
    let dictionary = dictionary.or(local_dict.is_file().then_some(local_dict.as_path()));
    write_model_dir(out, config, tensors, format!("import hf-roberta {}", dir.display()), &labels, dictionary)
        .map_err(|e| e.in_file(&weights))
}

/// `protein-lm import fairseq CHECKPOINT.pt --dict dict.txt`: a fairseq RoBERTa checkpoint (the
/// state dict under `"model"`, fp16 or fp32, May-2020 `decoder.*` or later `encoder.*` names, zip
/// or legacy torch format) → a model directory. The head count is read from the checkpoint's
/// `args` (or `cfg.model`), else `num_attention_heads` must be given.
pub fn import_fairseq(
    checkpoint: &std::path::Path,
    dictionary: Option<&std::path::Path>,
    out: &std::path::Path,
    num_attention_heads: Option<usize>,
) -> Result<(crate::models::directory::ModelDir, ImportReport)> {
    use crate::models::import::torch::Checkpoint;
    let ckpt = Checkpoint::open(checkpoint)?;
    let setting = |name: &str| -> Option<f64> {
        let from_args = ckpt.entry("args").ok().and_then(|a| a.attr(name)).and_then(|v| v.as_f64());
        from_args.or_else(|| {
            ckpt.entry("cfg")
                .ok()
                .and_then(|c| c.get("model"))
                .and_then(|m| m.get(name).or_else(|| m.attr(name)))
                .and_then(|v| v.as_f64())
        })
    };
    let heads = match (num_attention_heads, setting("encoder_attention_heads")) {
        (Some(given), Some(stored)) if given as f64 != stored => {
            return Err(Error::invalid(format!(
                "{}: the checkpoint says {stored} attention heads, {given} were given",
                checkpoint.display()
            )))
        }
        (Some(given), _) => given,
        (None, Some(stored)) => stored as usize,
        (None, None) => {
            return Err(Error::invalid(format!(
                "{}: no encoder_attention_heads in the checkpoint's args; give the head count",
                checkpoint.display()
            )))
        }
    };
    let raw = ckpt.state_dict(Some("model"))?;
    let tensors = raw
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_candle(&candle_core::Device::Cpu)?)))
        .collect::<Result<HashMap<_, _>>>()
        .map_err(|e| e.in_file(checkpoint))?;
    let tensors = from_fairseq(tensors).map_err(|e| e.in_file(checkpoint))?;
    let mut config = config_from_tensors(&tensors, heads).map_err(|e| e.in_file(checkpoint))?;
    config.zero_padded_embeddings = true;
    if let Some(p) = setting("dropout") {
        config.hidden_dropout_prob = p;
    }
    if let Some(p) = setting("attention_dropout") {
        config.attention_probs_dropout_prob = p;
    }
    write_model_dir(
        out,
        config,
        tensors,
        format!("import fairseq {}", checkpoint.display()),
        &HashMap::new(),
        dictionary,
    )
    .map_err(|e| e.in_file(checkpoint))
}
