//! The PRoBERTa encoder: fairseq's RoBERTa (`TransformerSentenceEncoder` with
//! `encoder_normalize_before=True` on the embeddings only), equal to Hugging Face's
//! `RobertaModel` (spec `proberta.md` §4).
//!
//! ```text
//! x = LN(word[ids] + position[pos(ids)] (+ token_type[0]))   pos = pad + cumsum(ids != pad), pad → pad
//! x = dropout(x); x[padded] = 0                              (fairseq; `zero_padded_embeddings`)
//! per layer (post-LN):
//!   x = LN(x + dropout(out(attention(x))))                   attention: q·kᵀ/√d, padded keys masked
//!   x = LN(x + dropout(fc2(gelu(fc1(x)))))
//! LM head: LN(gelu(dense(x))) · wordᵀ + bias                  (tied to the word embeddings)
//! ```
//!
//! Parameter names are Hugging Face's without the `roberta.` prefix (`embeddings.*`,
//! `encoder.layer.{i}.*`, `lm_head.*`); the importers map fairseq's names onto them.
//! Only tokens equal to `pad_token_id` are padding: PRoBERTa's clustering script fills with `<s>`
//! (id 0), which this encoder, like the reference, treats as real tokens with positions.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Embedding, Init, Linear, VarBuilder};

use super::config::Config;
use crate::models::init::BERT_NORMAL;
use crate::models::layers::{dense, dropout, linear, linear_bert, LayerNorm};
use crate::models::ops::{self, gelu_erf};
use crate::{Error, Result, Rng};

/// Token, position (and token-type) embeddings with their LayerNorm.
#[derive(Debug, Clone)]
pub struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Option<Tensor>,
    norm: LayerNorm,
    pad_id: u32,
    dropout: f64,
    zero_padded: bool,
}

impl Embeddings {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let h = config.hidden_size;
        let word = vb.get_with_hints((config.vocab_size, h), "word_embeddings.weight", BERT_NORMAL)?;
        let position =
            vb.get_with_hints((config.max_position_embeddings, h), "position_embeddings.weight", BERT_NORMAL)?;
        let token_type = (config.type_vocab_size > 0)
            .then(|| vb.get_with_hints((config.type_vocab_size, h), "token_type_embeddings.weight", Init::Const(0.0)))
            .transpose()?;
        Ok(Self {
            word: Embedding::new(word, h),
            position: Embedding::new(position, h),
            token_type,
            norm: LayerNorm::load(vb.pp("LayerNorm"), h, config.layer_norm_eps)?,
            pad_id: config.pad_token_id,
            dropout: config.hidden_dropout_prob,
            zero_padded: config.zero_padded_embeddings,
        })
    }

    pub fn word_embeddings(&self) -> &Tensor {
        self.word.embeddings()
    }

    /// fairseq's `make_positions`: real tokens get `pad + 1, pad + 2, …` in order, padding gets `pad`.
    pub fn position_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let real = ids.ne(self.pad_id)?.to_dtype(DType::U32)?;
        let counted = real.to_dtype(DType::F32)?.cumsum(1)?.to_dtype(DType::U32)?;
        Ok((counted.mul(&real)? + self.pad_id as f64)?)
    }

    /// `ids (B, L)` → `(B, L, H)`.
    pub fn forward(&self, ids: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let positions = self.position_ids(ids)?;
        let mut x = (self.word.forward(ids)? + self.position.forward(&positions)?)?;
        if let Some(types) = &self.token_type {
            x = x.broadcast_add(&types.get(0)?)?;
        }
        let mut x = dropout(&self.norm.forward(&x)?, self.dropout, rng)?;
        if self.zero_padded {
            let keep = ids.ne(self.pad_id)?.to_dtype(x.dtype())?.unsqueeze(D::Minus1)?;
            x = x.broadcast_mul(&keep)?;
        }
        Ok(x)
    }
}

/// Multi-head self-attention with separate query, key, value and output projections.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    n_heads: usize,
    head_dim: usize,
    dropout: f64,
}

impl SelfAttention {
    /// Loads `attention.self.{query,key,value}` and `attention.output.dense` under `vb` (= `attention`).
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            query: linear_bert(h, h, vb.pp("self.query"))?,
            key: linear_bert(h, h, vb.pp("self.key"))?,
            value: linear_bert(h, h, vb.pp("self.value"))?,
            output: linear_bert(h, h, vb.pp("output.dense"))?,
            n_heads: config.num_attention_heads,
            head_dim: h / config.num_attention_heads,
            dropout: config.attention_probs_dropout_prob,
        })
    }

    /// `x (B, L, H)`, additive key bias `(B, 1, 1, L)` (0 or −∞-like) → (`(B, L, H)`, probabilities
    /// `(B, heads, L, L)`).
    /// `key_bias (B, L)`: added to every query's score for that key (−1e9 on padding). The
    /// probabilities `(B, heads, L, L)` come back only when `keep_probs` asks for them.
    pub fn forward(
        &self,
        x: &Tensor,
        key_bias: Option<&Tensor>,
        keep_probs: bool,
        rng: Option<&mut Rng>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        // fairseq scales the projected query (bias included) rather than the scores.
        let q = (linear(&self.query, x)? * (self.head_dim as f64).powf(-0.5))?;
        let (k, v) = (linear(&self.key, x)?, linear(&self.value, x)?);
        if !keep_probs && ops::attention_applies(&q) {
            // One kernel per (protein, head): no (B, heads, L, L) tensor is ever allocated. In
            // training its dropout mask comes from one draw of the run's generator.
            let dropout = match rng {
                Some(rng) if self.dropout > 0.0 => {
                    Some(ops::AttentionDropout { p: self.dropout as f32, seed: rng.next_u64() })
                }
                _ => None,
            };
            let context = ops::attention(&q, &k, &v, self.n_heads, key_bias, dropout)?;
            return Ok((linear(&self.output, &context)?, None));
        }
        let (b, l, h) = x.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((b, l, self.n_heads, self.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let mut scores = split(q)?.matmul(&split(k)?.t()?)?; // (B, heads, L, L)
        if let Some(bias) = key_bias {
            scores = scores.broadcast_add(&bias.unsqueeze(1)?.unsqueeze(1)?)?;
        }
        let probs = ops::softmax_last_dim(&scores)?;
        let attended = dropout(&probs, self.dropout, rng)?;
        let context = attended.matmul(&split(v)?)?.transpose(1, 2)?.reshape((b, l, h))?;
        Ok((linear(&self.output, &context)?, keep_probs.then_some(probs)))
    }
}

/// One post-LN transformer layer.
#[derive(Debug, Clone)]
pub struct Layer {
    attention: SelfAttention,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    dropout: f64,
}

impl Layer {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let (h, f, eps) = (config.hidden_size, config.intermediate_size, config.layer_norm_eps);
        Ok(Self {
            attention: SelfAttention::load(vb.pp("attention"), config)?,
            attention_norm: LayerNorm::load(vb.pp("attention.output.LayerNorm"), h, eps)?,
            intermediate: linear_bert(h, f, vb.pp("intermediate.dense"))?,
            output: linear_bert(f, h, vb.pp("output.dense"))?,
            output_norm: LayerNorm::load(vb.pp("output.LayerNorm"), h, eps)?,
            dropout: config.hidden_dropout_prob,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        key_bias: Option<&Tensor>,
        keep_probs: bool,
        mut rng: Option<&mut Rng>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (attended, probs) = self.attention.forward(x, key_bias, keep_probs, rng.as_deref_mut())?;
        let x = self.attention_norm.forward(&(x + dropout(&attended, self.dropout, rng.as_deref_mut())?)?)?;
        let ffn = linear(&self.output, &gelu_erf(&linear(&self.intermediate, &x)?)?)?;
        let x = self.output_norm.forward(&(&x + dropout(&ffn, self.dropout, rng)?)?)?;
        Ok((x, probs))
    }
}

/// Options of one forward pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forward {
    /// Keep every layer's attention probabilities.
    pub attention: bool,
}

/// Everything one encoder pass computes.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// The embedding output and every layer's output, `num_hidden_layers + 1` tensors `(B, L, H)`.
    pub hidden_states: Vec<Tensor>,
    /// Per layer `(B, heads, L, L)`, when asked for.
    pub attention: Option<Vec<Tensor>>,
    /// `(B, L)` u32, 1 on real tokens.
    pub mask: Tensor,
}

impl EncoderOutput {
    /// The last layer's output `(B, L, H)`.
    pub fn last(&self) -> &Tensor {
        self.hidden_states.last().expect("at least the embedding output")
    }
}

/// The RoBERTa encoder (embeddings + layers), without output heads.
#[derive(Debug, Clone)]
pub struct Encoder {
    config: Config,
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl Encoder {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        config.validate()?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), config))
            .collect::<Result<_>>()?;
        Ok(Self { config: config.clone(), embeddings: Embeddings::load(vb.pp("embeddings"), config)?, layers })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn embeddings(&self) -> &Embeddings {
        &self.embeddings
    }

    pub fn dtype(&self) -> DType {
        self.embeddings.word_embeddings().dtype()
    }

    /// `ids (B, L)` → hidden states. `rng` = `Some` trains (dropout on), `None` evaluates.
    /// Attention skips the padding, the tokens equal to `pad_token_id`.
    pub fn forward(&self, ids: &Tensor, options: Forward, rng: Option<&mut Rng>) -> Result<EncoderOutput> {
        self.forward_masked(ids, None, options, rng)
    }

    /// [`forward`](Self::forward) with the caller's `attention_mask` `(B, L)` (1: attend, 0: skip),
    /// as Hugging Face's `attention_mask`: it replaces the padding mask for attention and is the
    /// output's `mask`; positions and the zeroed padded embeddings still follow `ids == pad`.
    /// `None` is the padding mask.
    pub fn forward_masked(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        options: Forward,
        mut rng: Option<&mut Rng>,
    ) -> Result<EncoderOutput> {
        let (b, l) = ids.dims2().map_err(|_| Error::invalid(format!("ids must be (B, L), got {:?}", ids.dims())))?;
        if l > self.config.max_tokens() {
            return Err(Error::invalid(format!(
                "input of {l} tokens is longer than the model's {} positions (truncate or window it first)",
                self.config.max_tokens()
            )));
        }
        let mask = match attention_mask {
            Some(m) if m.dims() == [b, l] => m.ne(0u32)?.to_dtype(DType::U32)?,
            Some(m) => {
                return Err(Error::invalid(format!("attention_mask has shape {:?}, the ids ({b}, {l})", m.dims())))
            }
            None => ids.ne(self.config.pad_token_id)?.to_dtype(DType::U32)?,
        };
        let mut x = self.embeddings.forward(ids, rng.as_deref_mut())?;
        // Padded keys (`ids == pad`) get −1e9 (f16: −65,504) rather than −∞, so a row of only
        // padding still gives finite (unused) values.
        let penalty = crate::models::layers::mask_penalty(x.dtype());
        let key_bias = (mask.to_dtype(x.dtype())?.affine(1.0, -1.0)? * penalty)?;
        let mut hidden_states = vec![x.clone()];
        let mut attention = options.attention.then(Vec::new);
        for layer in &self.layers {
            let (y, probs) = layer.forward(&x, Some(&key_bias), options.attention, rng.as_deref_mut())?;
            if let (Some(maps), Some(probs)) = (attention.as_mut(), probs) {
                maps.push(probs);
            }
            hidden_states.push(y.clone());
            x = y;
        }
        Ok(EncoderOutput { hidden_states, attention, mask })
    }
}

/// The masked-LM head: dense → GELU → LayerNorm → tied output matrix + bias.
#[derive(Debug, Clone)]
pub struct LmHead {
    dense: Linear,
    norm: LayerNorm,
    bias: Tensor,
}

impl LmHead {
    /// Loads `lm_head.{dense, layer_norm, bias}` under `vb` (= `lm_head`).
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            dense: linear_bert(h, h, vb.pp("dense"))?,
            norm: LayerNorm::load(vb.pp("layer_norm"), h, config.layer_norm_eps)?,
            bias: vb.get_with_hints(config.vocab_size, "bias", Init::Const(0.0))?,
        })
    }

    /// `(…, H)` features → `(…, vocab)` logits with the encoder's word embeddings as output matrix.
    pub fn forward(&self, x: &Tensor, word_embeddings: &Tensor) -> Result<Tensor> {
        let x = self.norm.forward(&gelu_erf(&linear(&self.dense, x)?)?)?;
        // The bias starts the GEMM: no second pass over B·L·vocab logits.
        dense(&x, word_embeddings, Some(&self.bias))
    }
}

/// Encoder + masked-LM head (`RobertaForMaskedLM`), what PRoBERTa pretrains.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proberta::{Config, Forward, ProbertaForMaskedLm};
/// let config = Config::tiny(30);
/// let model = ProbertaForMaskedLm::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &config)?;
/// // <s> (0), three pieces, </s> (2), then padding (1), which attention skips.
/// let ids = Tensor::new(&[[0u32, 7, 12, 9, 2, 1]], &Device::Cpu)?;
/// let (logits, out) = model.forward(&ids, Forward::default(), None)?;
/// assert_eq!(logits.dims(), [1, 6, 30]);
/// assert_eq!(out.hidden_states.len(), config.num_hidden_layers + 1);
/// assert_eq!(out.mask.to_vec2::<u32>()?, [[1, 1, 1, 1, 1, 0]]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProbertaForMaskedLm {
    pub encoder: Encoder,
    pub lm_head: LmHead,
}

impl ProbertaForMaskedLm {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        Ok(Self { encoder: Encoder::load(vb.clone(), config)?, lm_head: LmHead::load(vb.pp("lm_head"), config)? })
    }

    /// Logits at every position, `(B, L, vocab)`, and the encoder output.
    pub fn forward(&self, ids: &Tensor, options: Forward, rng: Option<&mut Rng>) -> Result<(Tensor, EncoderOutput)> {
        let out = self.encoder.forward(ids, options, rng)?;
        let logits = self.lm_head.forward(out.last(), self.encoder.embeddings().word_embeddings())?;
        Ok((logits, out))
    }
}
