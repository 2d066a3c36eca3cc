//! The ProteinBERT network (spec `proteinbert.md` §2): a local track of per-residue vectors and a
//! global track of one vector per protein, exchanging information in every block.
//!
//! ```text
//! S = Embedding[tokens]                               (B, L, d_local)
//! G = gelu(Dense(annotations))                        (B, d_global)
//! per block:
//!   S = LN(S + gelu(Dense(G)) + gelu(NarrowConv(S)) + gelu(WideConv(S)))
//!   S = LN(S + gelu(Dense(S)))
//!   G = LN(G + gelu(Dense(G)) + GlobalAttention(G, S))   (attention reads the updated S)
//!   G = LN(G + gelu(Dense(G)))
//! token logits = Dense(S), annotation logits = Dense(G)
//! ```
//!
//! Parameter names (the keys of `model.safetensors`; `import` maps the Keras layer names onto
//! them): `embedding`, `global_input`, `blocks.{i}.{global_to_local, narrow_conv, wide_conv,
//! local_norm1, local_dense, local_norm2, global_dense1, attention.{wq,wk,wv}, global_norm1,
//! global_dense2, global_norm2}`, `token_head`, `annotation_head`. Dense and conv weights are
//! stored `(out, in)` / `(out, in, k)`, attention weights as Keras keeps them, `(heads, in, out)`.
//!
//! Padding: by default the reference behaviour, where PAD tokens are embedded, convolved and
//! attended to like residues, so outputs depend on the padded length. With a padding mask
//! ([`Forward::mask`]) padded positions are zeroed before every convolution and left out of the
//! attention softmax, so outputs at real positions, and the global track, no longer depend on it
//! (a documented divergence from the reference).
//!
//! Memory is linear in length: the attention keeps `(B, H, L)` weights, never `L × L`, and the
//! convolutions read overlapping windows of their input instead of building a `k`-times-larger
//! column matrix. Three paths compute the same block: the separate differentiable ops (any device
//! and dtype); on CPU f32 for training, the fused ops with their own backward of
//! [`crate::models::ops::conv_sum_norm`], [`crate::models::ops::dense_residual_norm`] and
//! [`crate::models::ops::global_attention_trained`]; and, when no input or weight needs a
//! gradient (plain tensors, as a model directory loads them), the fused kernels of
//! [`crate::models::ops::local_track`] and [`crate::models::ops::global_attention`], which make no
//! per-op tensors. All three equal each other to float32 rounding (tests below). One protein of
//! 35,000 residues through the released-size network on the fused inference path peaks at
//! 0.37 GB resident in 2.1 s on 2 cores (0.62 GB and 3.0 s on the separate ops;
//! `benches/models.rs --long 35000` under `/usr/bin/time -v`; the reference runs out of memory far
//! earlier). What remains: the per-residue outputs themselves (`L × 1,562` floats for
//! the hidden concatenation, 219 MB at 35,000) and, when weights are autograd `Var`s, what the
//! graph keeps for the backward.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Init, Linear, VarBuilder};

use super::config::Config;
use crate::models::init::glorot_uniform;
use crate::models::layers::{add_over_length, linear, linear_glorot, matmul_last, Conv1d, Conv1dConfig, LayerNorm};
use crate::models::ops::{self, gelu_erf, tanh_act};
use crate::{Error, Result};

/// Keras' default Embedding initialiser, U(−0.05, 0.05).
const KERAS_EMBEDDING_INIT: Init = Init::Uniform { lo: -0.05, up: 0.05 };

#[cfg(test)]
thread_local! {
    /// Set by tests that compare the fused paths with the separate ops.
    static SEPARATE_OPS_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether every block must take the separate differentiable ops (never, outside tests).
fn separate_ops_only() -> bool {
    #[cfg(test)]
    return SEPARATE_OPS_ONLY.with(|only| only.get());
    #[cfg(not(test))]
    false
}

/// The global attention of one block: one query per head from the global vector, keys and
/// values from every position of the local track, softmax over positions, no output projection.
#[derive(Debug, Clone)]
pub struct GlobalAttention {
    /// `(H, d_global, d_key)`
    wq: Tensor,
    /// `(H, d_local, d_key)`
    wk: Tensor,
    /// `(H, d_local, d_value)`
    wv: Tensor,
    n_heads: usize,
    d_key: usize,
}

impl GlobalAttention {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let (h, dk, dv) = (config.n_heads, config.d_key, config.d_value());
        // Keras' glorot for a 3-D kernel counts the leading axis as receptive field: fans H·in and H·out.
        let init = |i: usize, o: usize| glorot_uniform(h * i, h * o);
        let wq = vb.get_with_hints((h, config.d_global, dk), "wq", init(config.d_global, dk))?;
        let wk = vb.get_with_hints((h, config.d_local, dk), "wk", init(config.d_local, dk))?;
        let wv = vb.get_with_hints((h, config.d_local, dv), "wv", init(config.d_local, dv))?;
        Ok(Self { wq, wk, wv, n_heads: h, d_key: dk })
    }

    /// `(H, in, out)` → `(in, H·out)`, head-major columns, so all heads project in one matmul.
    fn flat(w: &Tensor) -> Result<Tensor> {
        let (h, i, o) = w.dims3()?;
        Ok(w.permute((1, 0, 2))?.reshape((i, h * o))?)
    }

    /// `global (B, d_global)`, `local (B, L, d_local)`, optional `mask (B, L)` →
    /// (`(B, H·d_value)` head-major, attention weights `(B, H, L)`). On CPU f32 the fused op of
    /// [`crate::models::ops::global_attention_trained`], whose weights carry no gradient (the
    /// output does); the separate ops elsewhere.
    pub fn forward(&self, global: &Tensor, local: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let q = tanh_act(&global.matmul(&Self::flat(&self.wq)?)?)?; // (B, H·dk)
        let heads = (self.n_heads, self.d_key);
        if separate_ops_only() {
            return self.forward_separate(&q, local, mask);
        }
        let (wk, wv) = (Self::flat(&self.wk)?, Self::flat(&self.wv)?);
        match crate::models::ops::global_attention_trained(local, &q, (&wk, &wv), heads, mask)? {
            Some(fused) => Ok(fused),
            None => self.forward_separate(&q, local, mask),
        }
    }

    /// [`GlobalAttention::forward`] from the separate differentiable ops, from `q (B, H·dk)`.
    fn forward_separate(&self, q: &Tensor, local: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let (b, l, _) = local.dims3()?;
        let (h, dk) = (self.n_heads, self.d_key);
        let q = q.reshape((b, h, dk, 1))?;
        // (B, H, L, dk)
        let k = tanh_act(&matmul_last(local, &Self::flat(&self.wk)?)?)?.reshape((b, l, h, dk))?.transpose(1, 2)?;
        // (B, L, H·dv), heads side by side
        let v = gelu_erf(&matmul_last(local, &Self::flat(&self.wv)?)?)?;
        // (B, H, L)
        let mut scores = (k.contiguous()?.matmul(&q)?.squeeze(3)? / (dk as f64).sqrt())?;
        if let Some(mask) = mask {
            let penalty = crate::models::layers::mask_penalty(scores.dtype());
            let blocked = (mask.to_dtype(scores.dtype())?.affine(1.0, -1.0)? * penalty)?.unsqueeze(1)?;
            scores = scores.broadcast_add(&blocked)?;
        }
        let weights = crate::models::ops::softmax_last_dim(&scores)?;
        // Σ over positions per head → (B, H·dv), accumulated in f64: a float32 sum over positions
        // drifts with length (at 1,024 residues it already showed here).
        let y = crate::models::ops::weighted_sum_over_positions(&weights, &v)?;
        Ok((y, weights))
    }
}

/// One ProteinBERT block (local then global update).
#[derive(Debug, Clone)]
pub struct Block {
    // pub(super): `anatomy::track_shapes` walks a block layer by layer.
    pub(super) global_to_local: Linear,
    pub(super) narrow_conv: Conv1d,
    pub(super) wide_conv: Conv1d,
    pub(super) local_norm1: LayerNorm,
    pub(super) local_dense: Linear,
    pub(super) local_norm2: LayerNorm,
    pub(super) global_dense1: Linear,
    pub(super) attention: GlobalAttention,
    pub(super) global_norm1: LayerNorm,
    pub(super) global_dense2: Linear,
    pub(super) global_norm2: LayerNorm,
}

/// What one block returns: the two local and two global LayerNorm outputs and the attention.
pub(super) struct BlockOutput {
    pub(super) local1: Tensor,
    pub(super) local2: Tensor,
    pub(super) global1: Tensor,
    pub(super) global2: Tensor,
    pub(super) attention: Tensor,
}

impl Block {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let (dl, dg, eps) = (config.d_local, config.d_global, config.layer_norm_eps);
        let conv = |dilation| Conv1dConfig {
            in_channels: dl,
            out_channels: dl,
            kernel_size: config.conv_kernel_size,
            dilation,
        };
        Ok(Self {
            global_to_local: linear_glorot(dg, dl, vb.pp("global_to_local"))?,
            narrow_conv: Conv1d::load(vb.pp("narrow_conv"), conv(1))?,
            wide_conv: Conv1d::load(vb.pp("wide_conv"), conv(config.wide_conv_dilation))?,
            local_norm1: LayerNorm::load(vb.pp("local_norm1"), dl, eps)?,
            local_dense: linear_glorot(dl, dl, vb.pp("local_dense"))?,
            local_norm2: LayerNorm::load(vb.pp("local_norm2"), dl, eps)?,
            global_dense1: linear_glorot(dg, dg, vb.pp("global_dense1"))?,
            attention: GlobalAttention::load(vb.pp("attention"), config)?,
            global_norm1: LayerNorm::load(vb.pp("global_norm1"), dg, eps)?,
            global_dense2: linear_glorot(dg, dg, vb.pp("global_dense2"))?,
            global_norm2: LayerNorm::load(vb.pp("global_norm2"), dg, eps)?,
        })
    }

    pub(super) fn forward(&self, local: &Tensor, global: &Tensor, mask: Option<&Tensor>) -> Result<BlockOutput> {
        // (An empty batch or protein takes the separate ops, which handle the empty shapes.)
        let fused = !separate_ops_only();
        if fused && local.elem_count() > 0 && ops::fused_block_applies(&self.tensors(local, global)) {
            return self.forward_fused(local, global, mask);
        }
        let from_global = gelu_erf(&linear(&self.global_to_local, global)?)?;
        let tracks = if fused { self.local_track_fused(local, &from_global, mask)? } else { None };
        let (local1, local2) = match tracks {
            Some(tracks) => tracks,
            None => self.local_track_separate(local, &from_global, mask)?,
        };
        // Global track: reads the updated local track and the previous global vector.
        let dense = gelu_erf(&linear(&self.global_dense1, global)?)?;
        let (attended, attention) = self.attention.forward(global, &local2, mask)?;
        let global1 = self.global_norm1.forward(&((global + dense)? + attended)?)?;
        let global2 = if fused {
            self.dense_residual_norm(&self.global_dense2, &self.global_norm2, &global1)?
        } else {
            self.global_norm2.forward(&(&global1 + gelu_erf(&linear(&self.global_dense2, &global1)?)?)?)?
        };
        Ok(BlockOutput { local1, local2, global1, global2, attention })
    }

    /// The local track from the separate differentiable ops: four summands, then a dense residual.
    fn local_track_separate(
        &self,
        local: &Tensor,
        from_global: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let conv_input = match mask {
            Some(m) => local.broadcast_mul(&m.to_dtype(local.dtype())?.unsqueeze(D::Minus1)?)?,
            None => local.clone(),
        };
        let narrow = gelu_erf(&self.narrow_conv.forward(&conv_input)?)?;
        let wide = gelu_erf(&self.wide_conv.forward(&conv_input)?)?;
        let local1 = self.local_norm1.forward(&((add_over_length(local, from_global)? + narrow)? + wide)?)?;
        let local2 = self.local_norm2.forward(&(&local1 + gelu_erf(&linear(&self.local_dense, &local1)?)?)?)?;
        Ok((local1, local2))
    }

    /// The local track as the two fused training ops of [`ops::conv_sum_norm`] and
    /// [`ops::dense_residual_norm`] (CPU f32); `None` where they do not apply.
    fn local_track_fused(
        &self,
        local: &Tensor,
        from_global: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Option<(Tensor, Tensor)>> {
        fn conv(c: &Conv1d) -> ops::TrackConv<'_> {
            ops::TrackConv { weight: c.weight(), bias: c.bias() }
        }
        let (narrow, wide) = (self.narrow_conv.config(), self.wide_conv.config());
        if narrow.kernel_size != wide.kernel_size {
            return Ok(None);
        }
        let track = ops::ConvTrack {
            kernel_size: narrow.kernel_size,
            narrow_dilation: narrow.dilation,
            wide_dilation: wide.dilation,
            eps: self.local_norm1.eps(),
        };
        let norm1 = (self.local_norm1.weight(), self.local_norm1.bias());
        let Some(local1) = ops::conv_sum_norm(
            local,
            from_global,
            mask,
            (conv(&self.narrow_conv), conv(&self.wide_conv)),
            norm1,
            track,
        )?
        else {
            return Ok(None);
        };
        let local2 = self.dense_residual_norm(&self.local_dense, &self.local_norm2, &local1)?;
        Ok(Some((local1, local2)))
    }

    /// `norm(x + gelu(dense(x)))`: the fused op where it applies, the separate ops elsewhere.
    fn dense_residual_norm(&self, dense: &Linear, norm: &LayerNorm, x: &Tensor) -> Result<Tensor> {
        if let Some(bias) = dense.bias() {
            let fused = ops::dense_residual_norm(x, dense.weight(), bias, (norm.weight(), norm.bias(), norm.eps()))?;
            if let Some(y) = fused {
                return Ok(y);
            }
        }
        norm.forward(&(x + gelu_erf(&linear(dense, x)?)?)?)
    }

    /// The inputs and every weight of the block: the fused inference path applies only when none
    /// of them needs a gradient.
    fn tensors<'a>(&'a self, local: &'a Tensor, global: &'a Tensor) -> Vec<&'a Tensor> {
        let mut all = vec![local, global, &self.attention.wq, &self.attention.wk, &self.attention.wv];
        for layer in [&self.global_to_local, &self.local_dense, &self.global_dense1, &self.global_dense2] {
            all.push(layer.weight());
            all.extend(layer.bias());
        }
        for conv in [&self.narrow_conv, &self.wide_conv] {
            all.extend([conv.weight(), conv.bias()]);
        }
        for norm in [&self.local_norm1, &self.local_norm2, &self.global_norm1, &self.global_norm2] {
            all.extend([norm.weight(), norm.bias()]);
        }
        all
    }

    /// [`Block::forward`] at inference: the local track and the global attention as the fused
    /// kernels of [`ops::local_track`] and [`ops::global_attention`] (the same arithmetic, without
    /// the per-op tensors); the global track's small `(B, d_global)` ops as before.
    fn forward_fused(&self, local: &Tensor, global: &Tensor, mask: Option<&Tensor>) -> Result<BlockOutput> {
        let from_global = gelu_erf(&linear(&self.global_to_local, global)?)?;
        // (C_out, C_in, k) → (k, C_in, C_out): tap i is a (C_in, C_out) matrix.
        let taps = |conv: &Conv1d| conv.weight().permute((2, 1, 0))?.contiguous();
        let (narrow_taps, wide_taps) = (taps(&self.narrow_conv)?, taps(&self.wide_conv)?);
        let local_dense_bias =
            self.local_dense.bias().ok_or_else(|| Error::invalid("ProteinBERT block: local_dense has no bias"))?;
        let weights = ops::LocalTrack {
            narrow: ops::ConvWeights {
                taps: &narrow_taps,
                bias: self.narrow_conv.bias(),
                dilation: self.narrow_conv.config().dilation,
            },
            wide: ops::ConvWeights {
                taps: &wide_taps,
                bias: self.wide_conv.bias(),
                dilation: self.wide_conv.config().dilation,
            },
            norm1: (self.local_norm1.weight(), self.local_norm1.bias(), self.local_norm1.eps()),
            dense: (self.local_dense.weight(), local_dense_bias),
            norm2: (self.local_norm2.weight(), self.local_norm2.bias(), self.local_norm2.eps()),
        };
        let (local1, local2) = ops::local_track(local, &from_global, mask, &weights)?;
        let dense = gelu_erf(&linear(&self.global_dense1, global)?)?;
        let attention = &self.attention;
        let q = tanh_act(&global.matmul(&GlobalAttention::flat(&attention.wq)?)?)?;
        let (attended, weights) = ops::global_attention(
            &local2,
            &q,
            &GlobalAttention::flat(&attention.wk)?,
            &GlobalAttention::flat(&attention.wv)?,
            attention.n_heads,
            mask,
        )?;
        let global1 = self.global_norm1.forward(&((global + dense)? + attended)?)?;
        let global2 = self.global_norm2.forward(&(&global1 + gelu_erf(&linear(&self.global_dense2, &global1)?)?)?)?;
        Ok(BlockOutput { local1, local2, global1, global2, attention: weights })
    }
}

/// Options of one forward pass.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proteinbert::{Config, Forward, ProteinBert};
/// use protein_lm::tokenize::residue::PAD;
/// use protein_lm::tokenize::{ResidueTokenizer, UnknownCounts};
/// let config = Config::tiny(8);
/// let model = ProteinBert::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &config)?;
/// let annotations = Tensor::zeros((1, 8), DType::F32, &Device::Cpu)?;
/// let run = |len: usize| -> protein_lm::Result<Tensor> {
///     let ids = ResidueTokenizer.encode_padded("MKTAYIAKQR", len, &mut UnknownCounts::default())?;
///     let tokens = Tensor::from_vec(ids, (1, len), &Device::Cpu)?;
///     let mask = tokens.ne(PAD)?.to_dtype(DType::U32)?;
///     let out = model.forward(&tokens, &annotations, Forward { mask: Some(&mask), attention: true })?;
///     assert_eq!(out.attention.as_ref().map(Vec::len), Some(config.n_blocks));
///     Ok(out.annotation_logits)
/// };
/// // With the mask the global track no longer depends on how far the protein was padded.
/// let gap = (run(16)? - run(40)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
/// assert!(gap < 1e-4, "{gap}");
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Forward<'a> {
    /// `(B, L)`, 1 on real tokens (START, residues, END), 0 on padding. `None` = the reference
    /// behaviour (no mask).
    pub mask: Option<&'a Tensor>,
    /// Keep every block's attention weights.
    pub attention: bool,
}

/// Everything one forward pass computes.
#[derive(Debug, Clone)]
pub struct ProteinBertOutput {
    /// `(B, L, vocab)` logits of the per-residue token head.
    pub token_logits: Tensor,
    /// `(B, n_annotations)` logits of the GO head.
    pub annotation_logits: Tensor,
    /// The `2 · n_blocks` local LayerNorm outputs in order, each `(B, L, d_local)`.
    pub local_states: Vec<Tensor>,
    /// The global input layer's output, then the `2 · n_blocks` global LayerNorm outputs, each
    /// `(B, d_global)`.
    pub global_states: Vec<Tensor>,
    /// Per block `(B, H, L)` attention weights, when asked for.
    pub attention: Option<Vec<Tensor>>,
}

impl ProteinBertOutput {
    /// `(B, L, vocab)` token probabilities (softmax).
    pub fn token_probabilities(&self) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(&self.token_logits, D::Minus1)?)
    }

    /// `(B, n_annotations)` GO-term probabilities (sigmoid).
    pub fn annotation_probabilities(&self) -> Result<Tensor> {
        Ok(candle_nn::ops::sigmoid(&self.annotation_logits)?)
    }

    /// The reference's per-residue representation (`get_model_with_hidden_layers_as_outputs`): the
    /// local LayerNorm outputs and the token probabilities, `(B, L, 1,562)` for the released model.
    pub fn local_hidden(&self) -> Result<Tensor> {
        let mut parts = self.local_states.clone();
        parts.push(self.token_probabilities()?);
        Ok(Tensor::cat(&parts, D::Minus1)?)
    }

    /// The reference's per-protein representation: the global input layer, the global LayerNorm
    /// outputs and the annotation probabilities, `(B, 15,599)` for the released model.
    pub fn global_hidden(&self) -> Result<Tensor> {
        let mut parts = self.global_states.clone();
        parts.push(self.annotation_probabilities()?);
        Ok(Tensor::cat(&parts, D::Minus1)?)
    }
}

/// The ProteinBERT trunk with its two pretraining output layers.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proteinbert::{Config, ProteinBert};
/// use protein_lm::tokenize::{ResidueTokenizer, UnknownCounts};
/// let config = Config::tiny(8);
/// let model = ProteinBert::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &config)?;
/// let ids = ResidueTokenizer.encode_padded("MKTAYIAKQR", 16, &mut UnknownCounts::default())?;
/// let tokens = Tensor::from_vec(ids, (1, 16), &Device::Cpu)?;
/// // Inference as the reference runs it: an all-zero GO input, no padding mask.
/// let out = model.forward_without_annotations(&tokens, false)?;
/// assert_eq!(out.token_logits.dims(), [1, 16, config.vocab_size]);
/// assert_eq!(out.local_hidden()?.dims(), [1, 16, config.local_hidden_size()]);
/// assert_eq!(out.global_hidden()?.dims(), [1, config.global_hidden_size()]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProteinBert {
    config: Config,
    pub(super) embedding: Embedding,
    pub(super) global_input: Linear,
    pub(super) blocks: Vec<Block>,
    token_head: Linear,
    annotation_head: Linear,
    padding_mask: bool,
}

impl ProteinBert {
    /// Creates (seeded Keras initialisation, through a [`crate::models::init::SeededVarMap`]) or
    /// loads the network under `vb`.
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        config.validate()?;
        let table = vb.get_with_hints((config.vocab_size, config.d_local), "embedding.weight", KERAS_EMBEDDING_INIT)?;
        let blocks =
            (0..config.n_blocks).map(|i| Block::load(vb.pp(format!("blocks.{i}")), config)).collect::<Result<_>>()?;
        Ok(Self {
            config: config.clone(),
            embedding: Embedding::new(table, config.d_local),
            global_input: linear_glorot(config.n_annotations, config.d_global, vb.pp("global_input"))?,
            blocks,
            token_head: linear_glorot(config.d_local, config.vocab_size, vb.pp("token_head"))?,
            annotation_head: linear_glorot(config.d_global, config.n_annotations, vb.pp("annotation_head"))?,
            padding_mask: false,
        })
    }

    /// Whether [`crate::models::Trunk::features`] masks padding (off = the reference behaviour).
    pub fn with_padding_mask(mut self, on: bool) -> Self {
        self.padding_mask = on;
        self
    }

    pub fn padding_mask(&self) -> bool {
        self.padding_mask
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `tokens (B, L)` integer ids, `annotations (B, n_annotations)` 0/1 input GO vector (all
    /// zeros for inference and fine-tuning, as the reference does).
    pub fn forward(&self, tokens: &Tensor, annotations: &Tensor, options: Forward) -> Result<ProteinBertOutput> {
        let (b, l) =
            tokens.dims2().map_err(|_| Error::invalid(format!("tokens must be (B, L), got {:?}", tokens.dims())))?;
        if annotations.dims() != [b, self.config.n_annotations] {
            return Err(Error::invalid(format!(
                "annotations must be ({b}, {}), got {:?}",
                self.config.n_annotations,
                annotations.dims()
            )));
        }
        if let Some(mask) = options.mask {
            if mask.dims() != [b, l] {
                return Err(Error::invalid(format!("mask must be ({b}, {l}), got {:?}", mask.dims())));
            }
        }
        let dtype = self.embedding.embeddings().dtype();
        let mut local = self.embedding.forward(tokens)?; // (B, L, d_local)
        let mut global = gelu_erf(&linear(&self.global_input, &annotations.to_dtype(dtype)?)?)?; // (B, d_global)
        let mut local_states = Vec::with_capacity(2 * self.blocks.len());
        let mut global_states = vec![global.clone()];
        let mut attention = options.attention.then(Vec::new);
        for block in &self.blocks {
            let out = block.forward(&local, &global, options.mask)?;
            local_states.extend([out.local1, out.local2.clone()]);
            global_states.extend([out.global1, out.global2.clone()]);
            if let Some(maps) = attention.as_mut() {
                maps.push(out.attention);
            }
            local = out.local2;
            global = out.global2;
        }
        Ok(ProteinBertOutput {
            token_logits: linear(&self.token_head, &local)?,
            annotation_logits: linear(&self.annotation_head, &global)?,
            local_states,
            global_states,
            attention,
        })
    }

    /// The reference's inference and fine-tuning pass: an all-zero annotation input, and the padding
    /// mask only if [`Self::padding_mask`] is on.
    pub fn forward_without_annotations(&self, tokens: &Tensor, attention: bool) -> Result<ProteinBertOutput> {
        let (b, _) =
            tokens.dims2().map_err(|_| Error::invalid(format!("tokens must be (B, L), got {:?}", tokens.dims())))?;
        let annotations = Tensor::zeros((b, self.config.n_annotations), self.dtype(), tokens.device())?;
        let mask = if self.padding_mask {
            Some(tokens.ne(crate::tokenize::residue::PAD)?.to_dtype(DType::U32)?)
        } else {
            None
        };
        self.forward(tokens, &annotations, Forward { mask: mask.as_ref(), attention })
    }

    /// The model's float dtype.
    pub fn dtype(&self) -> DType {
        self.embedding.embeddings().dtype()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.embedding.embeddings().device()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::init::SeededVarMap;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// A `Var` of standard normal values times `scale`.
    fn random_var(rng: &mut crate::Rng, dims: &[usize], scale: f32) -> candle_core::Var {
        let v: Vec<f32> = (0..dims.iter().product()).map(|_| rng.normal() as f32 * scale).collect();
        candle_core::Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
    }

    /// `(3, 150)`: 1 on the first 150, 17 and 101 positions of the three proteins.
    fn three_proteins_mask() -> Tensor {
        let (l, real) = (150, [150usize, 17, 101]);
        let keep: Vec<u32> = (0..3 * l).map(|i| (i % l < real[i / l]) as u32).collect();
        Tensor::from_vec(keep, (3, l), &Device::Cpu).unwrap()
    }

    /// The gradients of `loss` for each watched variable, in order (a missing one fails).
    fn gradients_of(loss: &Tensor, watched: &[(String, candle_core::Var)]) -> Vec<Tensor> {
        let grads = loss.backward().unwrap();
        watched
            .iter()
            .map(|(name, v)| grads.get(v).unwrap_or_else(|| panic!("no gradient for {name}")).clone())
            .collect()
    }

    /// Asserts that each pair of gradients agrees to 2e-5 of the larger of 1 and the separate op's
    /// largest value, and prints the worst gap.
    fn assert_gradients_agree(
        watched: &[(String, candle_core::Var)],
        fused: &[Tensor],
        separate: &[Tensor],
        label: &str,
    ) {
        let mut worst = 0f32;
        for ((name, _), (a, b)) in watched.iter().zip(fused.iter().zip(separate)) {
            let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
            let gap = max_diff(a, b) / scale;
            worst = worst.max(gap);
            assert!(gap < 2e-5, "{label}: gradient of {name} differs by {gap} (relative)");
        }
        eprintln!("{label}: worst relative gradient gap {worst:.1e}");
    }

    /// The fused training ops of the local track (and the global track's dense residual) against
    /// the separate ops: both outputs and the gradient of every input and weight, with and without
    /// a padding mask, for proteins longer than a task of rows and padded differently.
    #[test]
    fn fused_training_tracks_equal_the_separate_ops() {
        let config = Config::tiny(12);
        let map = SeededVarMap::new(5);
        let model = ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &config).unwrap();
        let block = &model.blocks[1];
        let mask = three_proteins_mask();
        let (b, l, c) = (3, 150, config.d_local);
        let mut rng = crate::Rng::new(9);
        let mut var = |dims: &[usize], scale: f32| random_var(&mut rng, dims, scale);
        let (local, from_global, global) = (var(&[b, l, c], 1.0), var(&[b, c], 0.5), var(&[b, config.d_global], 1.0));
        let (probe1, probe2, probe_global) =
            (var(&[b, l, c], 1.0), var(&[b, l, c], 1.0), var(&[b, config.d_global], 1.0));
        let mut watched: Vec<(String, candle_core::Var)> = map
            .named_vars()
            .into_iter()
            .filter(|(name, _)| {
                let tracked = [
                    "narrow_conv",
                    "wide_conv",
                    "local_norm1",
                    "local_dense",
                    "local_norm2",
                    "global_dense2",
                    "global_norm2",
                ];
                tracked.iter().any(|layer| name.starts_with(&format!("blocks.1.{layer}.")))
            })
            .collect();
        assert_eq!(watched.len(), 14, "the seven layers' weights and biases");
        watched.extend([
            ("local".into(), local.clone()),
            ("from_global".into(), from_global.clone()),
            ("global".into(), global.clone()),
        ]);
        for mask in [None, Some(&mask)] {
            let run = |fused: bool| {
                let (l1, l2) = if fused {
                    block.local_track_fused(local.as_tensor(), from_global.as_tensor(), mask).unwrap().unwrap()
                } else {
                    block.local_track_separate(local.as_tensor(), from_global.as_tensor(), mask).unwrap()
                };
                let g2 = if fused {
                    block.dense_residual_norm(&block.global_dense2, &block.global_norm2, global.as_tensor()).unwrap()
                } else {
                    let x = global.as_tensor();
                    block
                        .global_norm2
                        .forward(&(x + gelu_erf(&linear(&block.global_dense2, x).unwrap()).unwrap()).unwrap())
                        .unwrap()
                };
                let loss = ((l1.mul(probe1.as_tensor()).unwrap().sum_all().unwrap()
                    + l2.mul(probe2.as_tensor()).unwrap().sum_all().unwrap())
                .unwrap()
                    + g2.mul(probe_global.as_tensor()).unwrap().sum_all().unwrap())
                .unwrap();
                ([l1, l2, g2], gradients_of(&loss, &watched))
            };
            let (fused, fused_grads) = run(true);
            let (separate, separate_grads) = run(false);
            for (a, b) in fused.iter().zip(&separate) {
                assert!(max_diff(a, b) < 1e-5, "mask {}: outputs differ by {}", mask.is_some(), max_diff(a, b));
            }
            assert_gradients_agree(&watched, &fused_grads, &separate_grads, &format!("mask {}", mask.is_some()));
        }
    }

    /// The fused training attention against the separate ops: output, weights and the gradients
    /// of the local track, the query and the key and value weights, with and without a mask.
    #[test]
    fn fused_training_attention_equals_the_separate_ops() {
        let config = Config::tiny(12);
        let map = SeededVarMap::new(6);
        let model = ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &config).unwrap();
        let attention = &model.blocks[0].attention;
        let mask = three_proteins_mask();
        let (b, l, hk) = (3, 150, config.n_heads * config.d_key);
        let mut rng = crate::Rng::new(4);
        let mut var = |dims: &[usize]| random_var(&mut rng, dims, 1.0);
        let (local, q_pre, probe) = (var(&[b, l, config.d_local]), var(&[b, hk]), var(&[b, config.d_global]));
        let mut watched: Vec<(String, candle_core::Var)> = map
            .named_vars()
            .into_iter()
            .filter(|(name, _)| name.starts_with("blocks.0.attention.w") && !name.ends_with("wq"))
            .collect();
        assert_eq!(watched.len(), 2, "wk and wv");
        watched.extend([("local".into(), local.clone()), ("q".into(), q_pre.clone())]);
        for mask in [None, Some(&mask)] {
            let run = |fused: bool| {
                let q = tanh_act(q_pre.as_tensor()).unwrap();
                let (y, weights) = if fused {
                    let wk = GlobalAttention::flat(&attention.wk).unwrap();
                    let wv = GlobalAttention::flat(&attention.wv).unwrap();
                    let heads = (attention.n_heads, attention.d_key);
                    ops::global_attention_trained(local.as_tensor(), &q, (&wk, &wv), heads, mask).unwrap().unwrap()
                } else {
                    attention.forward_separate(&q, local.as_tensor(), mask).unwrap()
                };
                let grads = gradients_of(&y.mul(probe.as_tensor()).unwrap().sum_all().unwrap(), &watched);
                (y, weights, grads)
            };
            let (y, weights, fused_grads) = run(true);
            let (y_separate, weights_separate, separate_grads) = run(false);
            assert!(max_diff(&y, &y_separate) < 1e-5, "output: {}", max_diff(&y, &y_separate));
            assert!(max_diff(&weights, &weights_separate) < 1e-6, "weights: {}", max_diff(&weights, &weights_separate));
            assert_gradients_agree(&watched, &fused_grads, &separate_grads, &format!("mask {}", mask.is_some()));
        }
    }

    /// The fused inference block against the separate ops (which the other devices and dtypes
    /// take), on every output the forward returns, with and without a padding mask, across more
    /// than one task of positions (L = 300 > 128) and with proteins of different padded lengths.
    #[test]
    fn fused_inference_block_equals_the_separate_ops() {
        let config = Config::tiny(12);
        let map = SeededVarMap::new(5);
        let training = ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &config).unwrap();
        let plain = map.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
        let inference = ProteinBert::load(VarBuilder::from_tensors(plain, DType::F32, &Device::Cpu), &config).unwrap();
        let (b, l) = (3, 300);
        let mut rng = crate::Rng::new(9);
        let real = [300usize, 17, 211];
        let ids: Vec<u32> = (0..b * l)
            .map(|i| if i % l < real[i / l] { rng.index(26) as u32 } else { crate::tokenize::residue::PAD })
            .collect();
        let tokens = Tensor::from_vec(ids, (b, l), &Device::Cpu).unwrap();
        let go: Vec<f32> = (0..b * 12).map(|_| (rng.uniform() < 0.3) as u8 as f32).collect();
        let annotations = Tensor::from_vec(go, (b, 12), &Device::Cpu).unwrap();
        let mask = tokens.ne(crate::tokenize::residue::PAD).unwrap().to_dtype(DType::U32).unwrap();
        let probe = inference.embedding.forward(&tokens).unwrap();
        let zeros = Tensor::zeros((b, config.d_global), DType::F32, &Device::Cpu).unwrap();
        assert!(ops::fused_block_applies(&inference.blocks[0].tensors(&probe, &zeros)));
        assert!(!ops::fused_block_applies(&training.blocks[0].tensors(&probe, &zeros)));
        for mask in [None, Some(&mask)] {
            let options = Forward { mask, attention: true };
            let ours = inference.forward(&tokens, &annotations, options).unwrap();
            SEPARATE_OPS_ONLY.with(|only| only.set(true));
            let theirs = training.forward(&tokens, &annotations, options);
            SEPARATE_OPS_ONLY.with(|only| only.set(false));
            let theirs = theirs.unwrap();
            let mut worst = max_diff(&ours.token_logits, &theirs.token_logits)
                .max(max_diff(&ours.annotation_logits, &theirs.annotation_logits));
            for (a, b) in ours.local_states.iter().zip(&theirs.local_states) {
                worst = worst.max(max_diff(a, b));
            }
            for (a, b) in ours.global_states.iter().zip(&theirs.global_states) {
                worst = worst.max(max_diff(a, b));
            }
            for (a, b) in ours.attention.unwrap().iter().zip(&theirs.attention.unwrap()) {
                worst = worst.max(max_diff(a, b));
            }
            eprintln!("mask {}: worst {worst:.2e}", mask.is_some());
            assert!(worst < 2e-5, "mask {}: fused and separate ops differ by {worst}", mask.is_some());
        }
    }
}
