//! One head API for every task on either trunk.
//!
//! A trunk turns a batch into [`Features`]: per-residue vectors, a padding mask and the trunk's own
//! per-protein vector. A [`Head`] maps features to outputs for one [`Level`] (per protein, per
//! residue, or per protein pair) and one [`Target`] (binary, categorical, numeric). The training
//! loop, the losses and the metrics only see this trait, so a new head is a struct and one
//! `forward`; for example, a two-layer head for a per-protein numeric task:
//!
//! ```no_run
//! use candle_core::Tensor;
//! use candle_nn::{Linear, Module, VarBuilder};
//! use protein_lm::models::heads::{Features, Head, HeadInput, Level, Pooling, Target};
//! use protein_lm::models::layers::linear_bert;
//! use protein_lm::{Result, Rng};
//!
//! struct TwoLayer { hidden: Linear, out: Linear }
//!
//! impl TwoLayer {
//!     fn new(vb: VarBuilder, width: usize) -> Result<Self> {
//!         Ok(Self { hidden: linear_bert(width, 64, vb.pp("hidden"))?, out: linear_bert(64, 1, vb.pp("out"))? })
//!     }
//! }
//!
//! impl Head for TwoLayer {
//!     fn level(&self) -> Level { Level::Protein }
//!     fn target(&self) -> Target { Target::Numeric }
//!     fn forward(&self, input: HeadInput<'_>, _rng: Option<&mut Rng>) -> Result<Tensor> {
//!         let pooled = Pooling::Mean.pool(input.single()?)?;
//!         Ok(self.out.forward(&self.hidden.forward(&pooled)?.relu()?)?)
//!     }
//! }
//! ```

use candle_core::{DType, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::layers::{dropout, linear, linear_bert, linear_glorot, masked_mean};
use super::ops::sum_over_positions;
use crate::train::objectives::supervised::{head_loss, BatchTargets};
use crate::{Error, Result, Rng};

/// What one example is.
///
/// ```
/// use protein_lm::models::heads::{HeadConfig, Level, Target};
/// // The level decides what a head reads: residues, a protein vector, or two combined.
/// let width = |level| HeadConfig::proteinbert(level, Target::Binary).input_width(1562, 15_599);
/// assert_eq!((width(Level::Residue), width(Level::Protein), width(Level::Pair)), (1562, 15_599, 3 * 15_599));
/// assert_eq!(serde_json::to_string(&Level::Residue).unwrap(), r#""residue""#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// One output per protein.
    Protein,
    /// One output per residue (position), padded positions excluded by the mask.
    Residue,
    /// One output per pair of proteins: either two encodings ([`HeadInput::Two`]) or one joint
    /// encoding of both (`<s> A </s> </s> B </s>`, [`HeadInput::One`]).
    Pair,
}

/// What is predicted.
///
/// ```
/// use protein_lm::models::heads::Target;
/// // The width of a head's output: one logit, one value, or one logit per class.
/// assert_eq!((Target::Binary.outputs(), Target::Numeric.outputs()), (1, 1));
/// assert_eq!(Target::Categorical { classes: 3 }.outputs(), 3);
/// assert_eq!(serde_json::to_string(&Target::Categorical { classes: 3 }).unwrap(), r#"{"kind":"categorical","classes":3}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Target {
    /// One logit (sigmoid probability), binary cross-entropy.
    Binary,
    /// `classes` logits (softmax), cross-entropy.
    Categorical { classes: usize },
    /// One value, mean squared error.
    Numeric,
}

impl Target {
    /// Width of the head's output.
    pub fn outputs(&self) -> usize {
        match *self {
            Target::Binary | Target::Numeric => 1,
            Target::Categorical { classes } => classes,
        }
    }
}

/// What a trunk gives its heads for one batch.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::heads::{Features, Pooling};
/// // Two proteins of 3 and 2 tokens, padded to 3; residues 4 wide, the trunk's protein vector 2 wide.
/// let residues = Tensor::arange(0f32, 24.0, &Device::Cpu)?.reshape((2, 3, 4))?;
/// let mask = Tensor::new(&[[1u32, 1, 1], [1, 1, 0]], &Device::Cpu)?;
/// let features = Features { residues, mask, protein: Tensor::ones((2, 2), DType::F32, &Device::Cpu)? };
/// // The mean over real tokens only: the second protein's padded position is left out.
/// let mean = Pooling::Mean.pool(&features)?.to_vec2::<f32>()?;
/// assert_eq!(mean[1], [14.0, 15.0, 16.0, 17.0]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Features {
    /// `(B, L, D_residue)` per-position vectors.
    pub residues: Tensor,
    /// `(B, L)` u32, 1 on real tokens.
    pub mask: Tensor,
    /// `(B, D_protein)` the trunk's own per-protein vector (ProteinBERT: the 15,599-wide global
    /// concatenation; PRoBERTa: the `<s>` position of the last layer).
    pub protein: Tensor,
}

/// Input of a head: one batch of features, or two for pair tasks on separately encoded proteins.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::heads::{Features, HeadInput};
/// let features = Features {
///     residues: Tensor::zeros((1, 3, 4), DType::F32, &Device::Cpu)?,
///     mask: Tensor::ones((1, 3), DType::U32, &Device::Cpu)?,
///     protein: Tensor::zeros((1, 2), DType::F32, &Device::Cpu)?,
/// };
/// // One encoding, or two for a pair whose proteins were encoded separately (ProteinBERT).
/// assert!(HeadInput::One(&features).single().is_ok());
/// assert!(HeadInput::Two(&features, &features).single().is_err());
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub enum HeadInput<'a> {
    One(&'a Features),
    Two(&'a Features, &'a Features),
}

impl<'a> HeadInput<'a> {
    /// The features of a single-input head; an error for a pair of encodings.
    pub fn single(&self) -> Result<&'a Features> {
        match *self {
            HeadInput::One(f) => Ok(f),
            HeadInput::Two(..) => Err(Error::invalid("this head takes one encoding, got a pair")),
        }
    }
}

/// How per-residue vectors become one vector per protein.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::heads::{Features, Pooling};
/// // Two proteins of 3 and 2 tokens, padded to 3; residues 4 wide, the trunk's protein vector 2 wide.
/// let residues = Tensor::arange(0f32, 24.0, &Device::Cpu)?.reshape((2, 3, 4))?;
/// let mask = Tensor::new(&[[1u32, 1, 1], [1, 1, 0]], &Device::Cpu)?;
/// let features = Features { residues, mask, protein: Tensor::ones((2, 2), DType::F32, &Device::Cpu)? };
/// assert_eq!(Pooling::Cls.pool(&features)?.to_vec2::<f32>()?[1], [12.0, 13.0, 14.0, 15.0]);
/// assert_eq!(Pooling::Sum.pool(&features)?.to_vec2::<f32>()?[1], [28.0, 30.0, 32.0, 34.0]);
/// // The trunk's own vector has the trunk's width; the others the residues'.
/// assert_eq!((Pooling::Trunk.width(4, 2), Pooling::Mean.width(4, 2)), (2, 4));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The trunk's own protein vector ([`Features::protein`]).
    #[default]
    Trunk,
    /// The first position (`<s>` / START).
    Cls,
    /// Mean over real tokens.
    Mean,
    /// Sum over real tokens.
    Sum,
    /// Sum over every position, padding included: the reference PRoBERTa fork's non-CLS pooling.
    SumAll,
}

impl Pooling {
    /// `(B, D)` pooled features.
    pub fn pool(&self, features: &Features) -> Result<Tensor> {
        let r = &features.residues;
        Ok(match self {
            Pooling::Trunk => features.protein.clone(),
            Pooling::Cls => r.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => masked_mean(r, &features.mask)?,
            // Sums over positions in f64 (`ops::sum_over_positions`): the error does not grow with length.
            Pooling::Sum => sum_over_positions(r, Some(&features.mask))?,
            Pooling::SumAll => sum_over_positions(r, None)?,
        })
    }

    /// Width of the pooled vector given the trunk's widths.
    pub fn width(&self, residue_width: usize, protein_width: usize) -> usize {
        match self {
            Pooling::Trunk => protein_width,
            _ => residue_width,
        }
    }
}

/// Softmax over the last axis of `scores` `(B, L)` with the positions where `mask` `(B, L)` is 0
/// left out (weight 0). Differentiable: use it (or [`ops::softmax_last_dim`](super::ops::softmax_last_dim))
/// in a head, not `candle_nn::ops::softmax_last_dim`, whose CPU kernel has no backward.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::models::heads::masked_softmax;
/// let scores = Tensor::new(&[[1f32, 2.0, 5.0]], &Device::Cpu)?;
/// let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu)?;
/// let w = masked_softmax(&scores, &mask)?.to_vec2::<f32>()?;
/// assert!(w[0][2] == 0.0 && (w[0][0] + w[0][1] - 1.0).abs() < 1e-6);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    // −1e9 (f16: −65,504) rather than −∞ keeps a row with no real position finite; the product
    // with the mask then makes the padding's weights exactly 0 (the fast exponential leaves ~1e-38
    // there), and such a row all 0.
    let mask = mask.to_dtype(scores.dtype())?;
    let penalty = ((&mask - 1.0)? * super::layers::mask_penalty(scores.dtype()))?;
    Ok(super::ops::softmax_last_dim(&scores.broadcast_add(&penalty)?)?.broadcast_mul(&mask)?)
}

/// Attention pooling: `residues` `(B, L, D)` averaged with the weights `masked_softmax(scores,
/// mask)`, `scores` `(B, L)` one logit per position (e.g. a `Linear(D, 1)` of the residues).
/// Returns the pooled `(B, D)` and the weights `(B, L)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::models::heads::attention_pool;
/// let residues = Tensor::new(&[[[1f32, 0.0], [0.0, 1.0], [9.0, 9.0]]], &Device::Cpu)?;
/// let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu)?;
/// // Equal scores on the two real positions: the plain mean of them; the padded one weighs 0.
/// let scores = Tensor::new(&[[0f32, 0.0, 5.0]], &Device::Cpu)?;
/// let (pooled, weights) = attention_pool(&residues, &mask, &scores)?;
/// let (p, w) = (pooled.to_vec2::<f32>()?, weights.to_vec2::<f32>()?);
/// assert!((p[0][0] - 0.5).abs() < 1e-6 && (p[0][1] - 0.5).abs() < 1e-6);
/// assert_eq!(w[0][2], 0.0);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn attention_pool(residues: &Tensor, mask: &Tensor, scores: &Tensor) -> Result<(Tensor, Tensor)> {
    let weights = masked_softmax(scores, mask)?;
    let pooled = weights.unsqueeze(1)?.matmul(&residues.contiguous()?)?.squeeze(1)?;
    Ok((pooled, weights))
}

/// A fixed column standardisation, `(x − mean) / scale`, of the pooled features a head reads:
/// scikit-learn's `StandardScaler` fitted outside the loop (on the training proteins' features,
/// e.g. from [`Embedder`](crate::embed::Embedder)) and applied inside the head. Not trained and not
/// saved with the head: rebuild it from the same scaler to reload one.
///
/// A head on a frozen trunk needs it where the features sit far from zero with small spreads
/// (ProteinBERT's mean-pooled residues: median |mean| 0.27 against a median spread of 0.17, some
/// spreads 1e-5): on standardised features the head learns in fewer updates (notebook 05).
///
/// ```
/// use protein_lm::analysis::probe::StandardScaler;
/// use protein_lm::models::heads::Standardise;
/// use protein_lm::prelude::*;
/// let train = protein_lm::ndarray::array![[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]];
/// let standardise = Standardise::from_scaler(&StandardScaler::fit(&train)?, &Device::Cpu)?;
/// let pooled = Tensor::new(&[[3f32, 10.0], [5.0, 11.0]], &Device::Cpu)?;
/// let x = standardise.forward(&pooled)?.to_vec2::<f32>()?;
/// // Column 0 has mean 3 and spread √(8/3); column 1 is constant, so only shifted (scale 1).
/// assert!(x[0][0].abs() < 1e-6 && (x[1][0] - 2.0 / (8f32 / 3.0).sqrt()).abs() < 1e-6);
/// assert_eq!((x[0][1], x[1][1]), (0.0, 1.0));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Standardise {
    mean: Tensor,
    scale: Tensor,
}

impl Standardise {
    pub fn from_scaler(scaler: &crate::analysis::probe::StandardScaler, device: &candle_core::Device) -> Result<Self> {
        let column = |v: &ndarray::Array1<f64>| -> Result<Tensor> {
            Ok(Tensor::from_vec(v.iter().map(|&x| x as f32).collect::<Vec<_>>(), v.len(), device)?)
        };
        Ok(Self { mean: column(&scaler.mean)?, scale: column(&scaler.scale)? })
    }

    /// How many features it expects.
    pub fn width(&self) -> usize {
        self.mean.dim(0).unwrap_or(0)
    }

    /// `x` `(…, width)` standardised column by column, in `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.dim(D::Minus1)? != self.width() {
            return Err(Error::invalid(format!(
                "standardise: fitted on {} features but the input has {}",
                self.width(),
                x.dim(D::Minus1)?
            )));
        }
        let (mean, scale) = (self.mean.to_dtype(x.dtype())?, self.scale.to_dtype(x.dtype())?);
        Ok(x.broadcast_sub(&mean)?.broadcast_div(&scale)?)
    }
}

/// A prediction head.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{Linear, Module, VarBuilder};
/// use protein_lm::models::heads::{Features, Head, HeadInput, Level, Pooling, Target};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::{Result, Rng};
/// // Three classes from the mean of the residues.
/// struct MeanLinear(Linear);
/// impl Head for MeanLinear {
///     fn level(&self) -> Level { Level::Protein }
///     fn target(&self) -> Target { Target::Categorical { classes: 3 } }
///     fn forward(&self, input: HeadInput<'_>, _rng: Option<&mut Rng>) -> Result<Tensor> {
///         Ok(self.0.forward(&Pooling::Mean.pool(input.single()?)?)?)
///     }
/// }
/// let vars = SeededVarMap::new(0);
/// let head = MeanLinear(candle_nn::linear(4, 3, vars.var_builder(DType::F32, &Device::Cpu).pp("head"))?);
/// let features = Features {
///     residues: Tensor::ones((2, 5, 4), DType::F32, &Device::Cpu)?,
///     mask: Tensor::ones((2, 5), DType::U32, &Device::Cpu)?,
///     protein: Tensor::ones((2, 8), DType::F32, &Device::Cpu)?,
/// };
/// assert_eq!(head.forward(HeadInput::One(&features), None)?.dims(), [2, 3]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub trait Head {
    fn level(&self) -> Level;
    fn target(&self) -> Target;
    /// Logits: `(B, outputs)` for protein and pair heads, `(B, L, outputs)` for residue heads.
    /// `rng` = `Some` trains (dropout on).
    fn forward(&self, input: HeadInput<'_>, rng: Option<&mut Rng>) -> Result<Tensor>;
    /// The training loss of `logits` against `targets` (laid out for this head's level and
    /// target). The default is the target's own: binary cross-entropy, cross-entropy or mean
    /// squared error, a mean over counted proteins or residues; override it for another loss.
    fn loss(&self, logits: &Tensor, targets: &BatchTargets) -> Result<Tensor> {
        head_loss(self.target(), logits, targets)
    }
}

impl<H: Head + ?Sized> Head for Box<H> {
    fn level(&self) -> Level {
        (**self).level()
    }
    fn target(&self) -> Target {
        (**self).target()
    }
    fn forward(&self, input: HeadInput<'_>, rng: Option<&mut Rng>) -> Result<Tensor> {
        (**self).forward(input, rng)
    }
    fn loss(&self, logits: &Tensor, targets: &BatchTargets) -> Result<Tensor> {
        (**self).loss(logits, targets)
    }
}

/// How a pair head combines two protein vectors `a` and `b`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::models::heads::PairCombination;
/// let (a, b) = (Tensor::new(&[[1f32, 2.0]], &Device::Cpu)?, Tensor::new(&[[3f32, 1.0]], &Device::Cpu)?);
/// // [a + b, |a − b|, a ⊙ b]: the same for (a, b) and (b, a).
/// let ab = PairCombination::Symmetric.combine(&a, &b)?;
/// assert_eq!(ab.to_vec2::<f32>()?, [[4.0, 3.0, 2.0, 1.0, 3.0, 2.0]]);
/// assert_eq!(PairCombination::Symmetric.combine(&b, &a)?.to_vec2::<f32>()?, ab.to_vec2::<f32>()?);
/// assert_eq!(PairCombination::Concat.width(2), 4);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairCombination {
    /// `[a, b]`: order-dependent.
    Concat,
    /// `[a + b, |a − b|, a ⊙ b]`: symmetric in the two proteins.
    #[default]
    Symmetric,
}

impl PairCombination {
    pub fn width(&self, d: usize) -> usize {
        match self {
            PairCombination::Concat => 2 * d,
            PairCombination::Symmetric => 3 * d,
        }
    }

    pub fn combine(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(match self {
            PairCombination::Concat => Tensor::cat(&[a, b], D::Minus1)?,
            PairCombination::Symmetric => Tensor::cat(&[&(a + b)?, &(a - b)?.abs()?, &(a * b)?], D::Minus1)?,
        })
    }
}

/// Settings shared by the built-in heads.
///
/// ```
/// use protein_lm::models::heads::{HeadConfig, Level, PairCombination, Pooling, Target};
/// // ProteinBERT's head reads its 15,599-wide global vector; PRoBERTa's the `<s>` vector.
/// let bert = HeadConfig::proteinbert(Level::Protein, Target::Binary);
/// assert_eq!((bert.pooling, bert.dropout, bert.input_width(1562, 15_599)), (Pooling::Trunk, 0.5, 15_599));
/// let pair = HeadConfig { pair: PairCombination::Concat, ..HeadConfig::proberta(Level::Pair, Target::Binary) };
/// assert_eq!(pair.input_width(768, 768), 2 * 768);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    pub level: Level,
    pub target: Target,
    #[serde(default)]
    pub pooling: Pooling,
    #[serde(default)]
    pub pair: PairCombination,
    pub dropout: f64,
}

impl HeadConfig {
    /// ProteinBERT's fine-tuning head: dropout 0.5 then one dense layer on the hidden concatenation.
    pub fn proteinbert(level: Level, target: Target) -> Self {
        Self { level, target, pooling: Pooling::Trunk, pair: PairCombination::Symmetric, dropout: 0.5 }
    }

    /// PRoBERTa's (fairseq) classification head on the `<s>` vector, pooler dropout 0.
    pub fn proberta(level: Level, target: Target) -> Self {
        Self { level, target, pooling: Pooling::Cls, pair: PairCombination::Symmetric, dropout: 0.0 }
    }

    /// Width of the vector the head's first layer reads.
    pub fn input_width(&self, residue_width: usize, protein_width: usize) -> usize {
        match self.level {
            Level::Residue => residue_width,
            Level::Protein => self.pooling.width(residue_width, protein_width),
            Level::Pair => self.pair.width(self.pooling.width(residue_width, protein_width)),
        }
    }

    /// The head's input for `input`: residues, pooled proteins, or the combined pair.
    fn gather(&self, input: HeadInput<'_>) -> Result<Tensor> {
        match (self.level, input) {
            (Level::Residue, HeadInput::One(f)) => Ok(f.residues.clone()),
            (Level::Protein, HeadInput::One(f)) => self.pooling.pool(f),
            (Level::Pair, HeadInput::Two(a, b)) => self.pair.combine(&self.pooling.pool(a)?, &self.pooling.pool(b)?),
            // A pair encoded jointly is one sequence: pool it like a protein.
            (Level::Pair, HeadInput::One(f)) => self.pooling.pool(f),
            (level, HeadInput::Two(..)) => Err(Error::invalid(format!("a {level:?} head takes one encoding, got two"))),
        }
    }
}

/// Dropout then one dense layer (ProteinBERT's fine-tuning head; Keras initialisation).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::heads::{Features, Head, HeadConfig, HeadInput, Level, LinearHead, Target};
/// use protein_lm::models::init::SeededVarMap;
/// let config = HeadConfig::proteinbert(Level::Residue, Target::Categorical { classes: 3 });
/// let vars = SeededVarMap::new(0);
/// let head = LinearHead::load(vars.var_builder(DType::F32, &Device::Cpu).pp("head"), config, 6, 10)?;
/// let features = Features {
///     residues: Tensor::ones((2, 5, 6), DType::F32, &Device::Cpu)?,
///     mask: Tensor::ones((2, 5), DType::U32, &Device::Cpu)?,
///     protein: Tensor::ones((2, 10), DType::F32, &Device::Cpu)?,
/// };
/// // Per residue: one logit per class at every position; dropout only with an rng.
/// assert_eq!(head.forward(HeadInput::One(&features), None)?.dims(), [2, 5, 3]);
/// assert_eq!(vars.num_parameters(), 6 * 3 + 3);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LinearHead {
    config: HeadConfig,
    dense: Linear,
}

impl LinearHead {
    /// `residue_width` / `protein_width`: the trunk's [`Features`] widths. Parameters under `vb`:
    /// `dense.{weight,bias}`.
    pub fn load(vb: VarBuilder, config: HeadConfig, residue_width: usize, protein_width: usize) -> Result<Self> {
        let width = config.input_width(residue_width, protein_width);
        Ok(Self { config, dense: linear_glorot(width, config.target.outputs(), vb.pp("dense"))? })
    }
}

impl Head for LinearHead {
    fn level(&self) -> Level {
        self.config.level
    }

    fn target(&self) -> Target {
        self.config.target
    }

    fn forward(&self, input: HeadInput<'_>, rng: Option<&mut Rng>) -> Result<Tensor> {
        let x = dropout(&self.config.gather(input)?, self.config.dropout, rng)?;
        linear(&self.dense, &x)
    }
}

/// fairseq's `RobertaClassificationHead` (= Hugging Face's): dropout → dense → tanh → dropout →
/// out_proj. Parameters under `vb`: `dense.*`, `out_proj.*`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::heads::{ClassificationHead, Features, Head, HeadConfig, HeadInput, Level, Target};
/// use protein_lm::models::init::SeededVarMap;
/// let config = HeadConfig::proberta(Level::Protein, Target::Categorical { classes: 5 });
/// let vars = SeededVarMap::new(0);
/// let head = ClassificationHead::load(vars.var_builder(DType::F32, &Device::Cpu).pp("head"), config, 8, 8)?;
/// let features = Features {
///     residues: Tensor::ones((2, 4, 8), DType::F32, &Device::Cpu)?,
///     mask: Tensor::ones((2, 4), DType::U32, &Device::Cpu)?,
///     protein: Tensor::ones((2, 8), DType::F32, &Device::Cpu)?,
/// };
/// assert_eq!(head.forward(HeadInput::One(&features), None)?.dims(), [2, 5]);
/// // dense 8 → 8, then out_proj 8 → 5.
/// assert_eq!(vars.num_parameters(), (8 * 8 + 8) + (8 * 5 + 5));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClassificationHead {
    config: HeadConfig,
    dense: Linear,
    out_proj: Linear,
}

impl ClassificationHead {
    pub fn load(vb: VarBuilder, config: HeadConfig, residue_width: usize, protein_width: usize) -> Result<Self> {
        let width = config.input_width(residue_width, protein_width);
        Ok(Self {
            config,
            dense: linear_bert(width, residue_width, vb.pp("dense"))?,
            out_proj: linear_bert(residue_width, config.target.outputs(), vb.pp("out_proj"))?,
        })
    }
}

impl Head for ClassificationHead {
    fn level(&self) -> Level {
        self.config.level
    }

    fn target(&self) -> Target {
        self.config.target
    }

    fn forward(&self, input: HeadInput<'_>, mut rng: Option<&mut Rng>) -> Result<Tensor> {
        let p = self.config.dropout;
        let x = dropout(&self.config.gather(input)?, p, rng.as_deref_mut())?;
        let x = dropout(&crate::models::ops::tanh_act(&linear(&self.dense, &x)?)?, p, rng)?;
        linear(&self.out_proj, &x)
    }
}

/// Probabilities (or values) from head logits: sigmoid, softmax over the last axis, or identity.
pub fn predictions(target: Target, logits: &Tensor) -> Result<Tensor> {
    Ok(match target {
        Target::Binary => candle_nn::ops::sigmoid(logits)?,
        Target::Categorical { .. } => candle_nn::ops::softmax(logits, D::Minus1)?,
        Target::Numeric => logits.clone(),
    })
}

/// f32 copy of features for heads kept in f32 while a trunk runs in half precision.
pub fn features_to_f32(features: &Features) -> Result<Features> {
    Ok(Features {
        residues: features.residues.to_dtype(DType::F32)?,
        mask: features.mask.clone(),
        protein: features.protein.to_dtype(DType::F32)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::init::SeededVarMap;
    use candle_core::Device;

    /// In f16 the penalty is f16's largest value: with 1e9 (infinite there) every weight was NaN.
    #[test]
    fn masked_softmax_works_in_f16() -> Result<()> {
        let scores = Tensor::new(&[[1f32, 2.0, 5.0], [0.5, 0.5, 0.5]], &Device::Cpu)?.to_dtype(DType::F16)?;
        let mask = Tensor::new(&[[1u32, 1, 0], [0, 0, 0]], &Device::Cpu)?;
        let w = masked_softmax(&scores, &mask)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        assert!(w.iter().flatten().all(|v| v.is_finite()), "{w:?}");
        assert!(w[0][2] == 0.0 && (w[0][0] + w[0][1] - 1.0).abs() < 1e-3, "{w:?}");
        assert_eq!(w[1], vec![0.0; 3]);
        Ok(())
    }

    fn features(b: usize, l: usize, d: usize, p: usize) -> Result<Features> {
        let dev = Device::Cpu;
        let residues = Tensor::arange(0f32, (b * l * d) as f32, &dev)?.reshape((b, l, d))?;
        let mask = Tensor::new(&[[1u32, 1, 1, 0], [1, 1, 0, 0]], &dev)?;
        let protein = Tensor::ones((b, p), DType::F32, &dev)?;
        Ok(Features { residues, mask, protein })
    }

    #[test]
    fn standardise_equals_the_scaler_and_names_a_width_mismatch() -> Result<()> {
        use crate::analysis::probe::StandardScaler;
        let mut rng = Rng::new(7);
        let x = ndarray::Array2::from_shape_fn((40, 6), |(_, j)| 3.0 * j as f64 + (j as f64 + 0.5) * rng.normal());
        let scaler = StandardScaler::fit(&x)?;
        let expected = scaler.transform(&x)?;
        let standardise = Standardise::from_scaler(&scaler, &Device::Cpu)?;
        let input = Tensor::from_vec(x.iter().map(|&v| v as f32).collect::<Vec<_>>(), (40, 6), &Device::Cpu)?;
        let got = standardise.forward(&input)?.to_vec2::<f32>()?;
        for (i, row) in got.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                assert!((v as f64 - expected[[i, j]]).abs() < 1e-4, "[{i}, {j}]: {v} vs {}", expected[[i, j]]);
            }
        }
        let wrong = Tensor::zeros((2, 5), DType::F32, &Device::Cpu)?;
        let message = standardise.forward(&wrong).unwrap_err().to_string();
        assert!(message.contains("6 features") && message.contains("has 5"), "{message}");
        Ok(())
    }

    #[test]
    fn attention_pooling_ignores_padding_and_has_the_composite_softmax_gradient() -> Result<()> {
        let f = features(2, 4, 3, 5)?;
        let scores = candle_core::Var::from_tensor(&Tensor::new(
            &[[0.5f32, -1.0, 2.0, 9.0], [1.0, 3.0, -7.0, 4.0]],
            &Device::Cpu,
        )?)?;
        let (pooled, weights) = attention_pool(&f.residues, &f.mask, scores.as_tensor())?;
        let w = weights.to_vec2::<f32>()?;
        assert_eq!((w[0][3], w[1][2], w[1][3]), (0.0, 0.0, 0.0), "padding gets no weight");
        for row in &w {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // Item 1: weights over its two real rows (3..5 and 6..8 of the item's block).
        let p = pooled.to_vec2::<f32>()?;
        let expected = w[1][0] * 12.0 + w[1][1] * 15.0;
        assert!((p[1][0] - expected).abs() < 1e-4, "{} vs {expected}", p[1][0]);
        // The gradient equals that of candle's composite (differentiable) softmax on the same input.
        let grads = (pooled.sqr()?.sum_all()?).backward()?;
        let ours = grads.get(scores.as_tensor()).expect("scores get a gradient").to_vec2::<f32>()?;
        let penalty = ((f.mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?;
        let reference_w = candle_nn::ops::softmax(&scores.as_tensor().broadcast_add(&penalty)?, D::Minus1)?;
        let reference = reference_w.unsqueeze(1)?.matmul(&f.residues)?.squeeze(1)?;
        let grads = reference.sqr()?.sum_all()?.backward()?;
        let theirs = grads.get(scores.as_tensor()).unwrap().to_vec2::<f32>()?;
        for (o, t) in ours.iter().flatten().zip(theirs.iter().flatten()) {
            assert!((o - t).abs() <= 1e-3 * t.abs().max(1.0), "{ours:?} vs {theirs:?}");
        }
        assert!(ours[0][0].abs() > 1e-3, "a real position's score moves the loss");
        Ok(())
    }

    #[test]
    fn pooling_and_head_shapes() -> Result<()> {
        let f = features(2, 4, 3, 5)?;
        let mean = Pooling::Mean.pool(&f)?.to_vec2::<f32>()?;
        assert_eq!(mean[1], vec![13.5, 14.5, 15.5]); // rows 12..14 and 15..17 of item 1
        let sum_all = Pooling::SumAll.pool(&f)?.to_vec2::<f32>()?;
        assert_eq!(sum_all[0], vec![18.0, 22.0, 26.0]);
        let sum = Pooling::Sum.pool(&f)?.to_vec2::<f32>()?;
        assert_eq!(sum[0], vec![9.0, 12.0, 15.0]);
        assert_eq!(Pooling::Cls.pool(&f)?.to_vec2::<f32>()?[1], vec![12.0, 13.0, 14.0]);

        let map = SeededVarMap::new(1);
        let vb = map.var_builder(DType::F32, &Device::Cpu);
        let cases = [
            (Level::Protein, Target::Categorical { classes: 7 }, vec![2, 7]),
            (Level::Residue, Target::Binary, vec![2, 4, 1]),
            (Level::Pair, Target::Numeric, vec![2, 1]),
        ];
        for (i, (level, target, shape)) in cases.into_iter().enumerate() {
            let head = LinearHead::load(vb.pp(format!("h{i}")), HeadConfig::proteinbert(level, target), 3, 5)?;
            let input = if level == Level::Pair { HeadInput::Two(&f, &f) } else { HeadInput::One(&f) };
            assert_eq!(head.forward(input, Some(&mut Rng::new(0)))?.dims(), shape.as_slice());
            let cls = ClassificationHead::load(vb.pp(format!("c{i}")), HeadConfig::proberta(level, target), 3, 5)?;
            assert_eq!(cls.forward(input, None)?.dims(), shape.as_slice());
        }
        let protein_head = LinearHead::load(vb.pp("p"), HeadConfig::proteinbert(Level::Protein, Target::Binary), 3, 5)?;
        assert!(protein_head.forward(HeadInput::Two(&f, &f), None).is_err());
        Ok(())
    }
}
