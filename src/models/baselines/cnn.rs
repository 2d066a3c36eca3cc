//! The two convolutional family classifiers of the paper's Table 2, over [`one_hot_batch`]
//! input `(B, 21, L)`.
//!
//! ```text
//! SimpleCnn:  x → [conv k → ReLU → (max-pool 2)] × layers → max over positions → dropout → linear
//! DeepFam:    x → concat_k [conv k → ReLU → max over positions] → dropout → [dense → ReLU → dropout] → linear
//! ```
//!
//! Both use the crate's [`Conv1d`] ('same' padding, one matmul per tap, gradient-checked) and zero
//! padded positions after every ReLU, so logits do not depend on how far a batch is padded (see
//! the module root). DeepFam's own network (Seo et al. 2018) adds batch normalisation after the
//! convolution and convolves without padding; neither is here (the paper describes neither).
//!
//! [`one_hot_batch`]: super::one_hot_batch
//!
//! ```
//! use candle_core::{DType, Device};
//! use protein_lm::models::baselines::cnn::{DeepFam, DeepFamConfig, SimpleCnn, SimpleCnnConfig};
//! use protein_lm::models::baselines::{one_hot_batch, Classifier};
//! use protein_lm::models::init::SeededVarMap;
//! let x = one_hot_batch(&["MKTAYIAKQR", "ACDEF"], 12, &Device::Cpu)?;
//! let small = SimpleCnnConfig { channels: 8, kernel_size: 3, layers: 2, ..SimpleCnnConfig::new(5) };
//! let cnn = SimpleCnn::new(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &small)?;
//! let deepfam_config = DeepFamConfig { kernel_sizes: vec![4, 8], units: 6, hidden: None, ..DeepFamConfig::paper(5) };
//! let deepfam = DeepFam::new(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &deepfam_config)?;
//! // Both give one logit per family and protein; `train: false` and no rng: no dropout.
//! assert_eq!(cnn.logits(&x, false, None)?.dims(), [2, 5]);
//! assert_eq!(deepfam.logits(&x, false, None)?.dims(), [2, 5]);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use candle_core::{Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::{training_rng, Classifier, ONE_HOT_CHANNELS};
use crate::models::layers::{dropout, linear_glorot, Conv1d, Conv1dConfig};
use crate::{Error, Result, Rng};

/// `(B, 21, L)` one-hot → channels-last `(B, L, 21)` and the `(B, L, 1)` mask of real positions
/// (a padded position sets no channel).
fn channels_last_and_mask(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (_, channels, _) =
        x.dims3().map_err(|_| Error::invalid(format!("CNN input must be (B, 21, L), got {:?}", x.dims())))?;
    if channels != ONE_HOT_CHANNELS {
        return Err(Error::invalid(format!("CNN input must have {ONE_HOT_CHANNELS} channels, got {channels}")));
    }
    let x = x.transpose(1, 2)?.contiguous()?;
    let mask = x.sum_keepdim(D::Minus1)?;
    Ok((x, mask))
}

/// Max over windows of 2 positions of `(B, L, C)`; an odd last position is paired with a zero,
/// which is a no-op on the ReLU outputs (≥ 0) and on the 0/1 mask.
fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (b, len, c) = x.dims3()?;
    let x = if len % 2 == 1 { x.pad_with_zeros(1, 0, 1)? } else { x.clone() };
    Ok(x.reshape((b, len.div_ceil(2), 2, c))?.max(2)?)
}

/// conv → ReLU → padded positions zeroed.
fn conv_relu_masked(conv: &Conv1d, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    Ok(conv.forward(x)?.relu()?.broadcast_mul(mask)?)
}

fn check_dropout(p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::invalid(format!("dropout must be in [0, 1), got {p}")));
    }
    Ok(())
}

/// Sizes of [`SimpleCnn`].
///
/// ```
/// use protein_lm::models::baselines::cnn::{simple_cnn_parameters, SimpleCnnConfig};
/// let paper = SimpleCnnConfig::new(10);
/// assert_eq!((paper.channels, paper.kernel_size, paper.layers), (128, 9, 4));
/// // A narrower network for a CPU notebook: convolutions 21·8·3 + 8 and 8·8·3 + 8, output 8·10 + 10.
/// let small = SimpleCnnConfig { channels: 8, kernel_size: 3, layers: 2, ..paper };
/// assert_eq!(simple_cnn_parameters(&small), 512 + 200 + 90);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleCnnConfig {
    pub channels: usize,
    pub kernel_size: usize,
    pub layers: usize,
    /// Max-pool by 2 between convolution layers (not after the last): a receptive field of
    /// (k−1)·(2^layers − 1) + 1 positions, 121 at the defaults, instead of 33.
    pub pool_between: bool,
    pub n_classes: usize,
    /// Before the output layer, in training.
    pub dropout: f64,
}

impl SimpleCnnConfig {
    /// "A simple CNN made up of four convolution layers": 128 channels, kernel 9 (ProteinBERT's
    /// narrow convolution), pooling between layers, dropout 0.3.
    pub fn new(n_classes: usize) -> Self {
        Self { channels: 128, kernel_size: 9, layers: 4, pool_between: true, n_classes, dropout: 0.3 }
    }
}

/// The simple CNN's parameters: the first convolution reads 21 channels, the others `channels`.
///
/// ```
/// use protein_lm::models::baselines::cnn::{simple_cnn_parameters, SimpleCnnConfig};
/// let config = SimpleCnnConfig { channels: 8, kernel_size: 3, layers: 2, ..SimpleCnnConfig::new(3) };
/// // First conv 21·8·3 + 8, second 8·8·3 + 8, output 8·3 + 3.
/// assert_eq!(simple_cnn_parameters(&config), 512 + 200 + 27);
/// ```
pub fn simple_cnn_parameters(config: &SimpleCnnConfig) -> usize {
    let (c, k) = (config.channels, config.kernel_size);
    let first = ONE_HOT_CHANNELS * c * k + c;
    let rest = config.layers.saturating_sub(1) * (c * c * k + c);
    first + rest + c * config.n_classes + config.n_classes
}

/// The paper's "simple CNN": stacked convolutions, a max over positions, one linear layer.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::baselines::cnn::{simple_cnn_parameters, SimpleCnn, SimpleCnnConfig};
/// use protein_lm::models::baselines::{one_hot_batch, Classifier};
/// use protein_lm::models::init::SeededVarMap;
/// let config = SimpleCnnConfig { channels: 8, kernel_size: 3, layers: 2, ..SimpleCnnConfig::new(3) };
/// let vars = SeededVarMap::new(0);
/// let cnn = SimpleCnn::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?;
/// assert_eq!(vars.num_parameters(), simple_cnn_parameters(&config));
/// // Padding does not change the logits: the mask comes from the one-hot input itself.
/// let short = cnn.logits(&one_hot_batch(&["MKTAYIAKQR"], 10, &Device::Cpu)?, false, None)?;
/// let long = cnn.logits(&one_hot_batch(&["MKTAYIAKQR"], 32, &Device::Cpu)?, false, None)?;
/// let gap = (short - long)?.abs()?.max_all()?.to_scalar::<f32>()?;
/// assert!(gap < 1e-5, "{gap}");
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SimpleCnn {
    convs: Vec<Conv1d>,
    out: Linear,
    config: SimpleCnnConfig,
}

impl SimpleCnn {
    /// Variables `conv.{i}.weight/bias`, `out.weight/bias`.
    pub fn new(vb: VarBuilder, config: &SimpleCnnConfig) -> Result<Self> {
        if config.layers == 0 || config.n_classes == 0 {
            return Err(Error::invalid(format!("simple CNN needs layers and classes, got {config:?}")));
        }
        check_dropout(config.dropout)?;
        let mut convs = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let in_channels = if i == 0 { ONE_HOT_CHANNELS } else { config.channels };
            let shape = Conv1dConfig {
                in_channels,
                out_channels: config.channels,
                kernel_size: config.kernel_size,
                dilation: 1,
            };
            convs.push(Conv1d::load(vb.pp(format!("conv.{i}")), shape)?);
        }
        let out = linear_glorot(config.channels, config.n_classes, vb.pp("out"))?;
        Ok(Self { convs, out, config: config.clone() })
    }

    pub fn config(&self) -> &SimpleCnnConfig {
        &self.config
    }
}

impl Classifier for SimpleCnn {
    fn logits(&self, x: &Tensor, train: bool, rng: Option<&mut Rng>) -> Result<Tensor> {
        let (mut h, mut mask) = channels_last_and_mask(x)?;
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv_relu_masked(conv, &h, &mask)?;
            if self.config.pool_between && i + 1 < self.convs.len() {
                h = max_pool2(&h)?;
                mask = max_pool2(&mask)?;
            }
        }
        let pooled = h.max(1)?;
        let pooled = dropout(&pooled, self.config.dropout, training_rng(train, rng))?;
        Ok(self.out.forward(&pooled)?)
    }

    fn n_classes(&self) -> usize {
        self.config.n_classes
    }
}

/// Sizes of [`DeepFam`].
///
/// ```
/// use protein_lm::models::baselines::cnn::DeepFamConfig;
/// let paper = DeepFamConfig::paper(1000);
/// assert_eq!(paper.kernel_sizes, [8, 12, 16, 20, 24, 28, 32, 36]);
/// assert_eq!(paper.feature_width(), 8 * 250);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepFamConfig {
    pub kernel_sizes: Vec<usize>,
    /// Convolution units per kernel size.
    pub units: usize,
    /// The dense layer between the pooled features and the output (`None`: straight to the classes).
    pub hidden: Option<usize>,
    pub n_classes: usize,
    /// On the pooled features and after the hidden layer, in training.
    pub dropout: f64,
}

impl DeepFamConfig {
    /// DeepFam as published: kernel sizes 8, 12, …, 36 with 250 units each (the PRoBERTa paper's
    /// description), a 2,000-unit hidden layer and dropout 0.3 (keep probability 0.7) from
    /// DeepFam's own paper and code.
    pub fn paper(n_classes: usize) -> Self {
        Self { kernel_sizes: (8..=36).step_by(4).collect(), units: 250, hidden: Some(2000), n_classes, dropout: 0.3 }
    }

    /// Width of the max-pooled features: `units` per kernel size.
    pub fn feature_width(&self) -> usize {
        self.kernel_sizes.len() * self.units
    }
}

/// DeepFam's parameters: one 21-channel convolution per kernel size, the hidden layer, the output.
///
/// ```
/// use protein_lm::models::baselines::cnn::{deepfam_parameters, DeepFamConfig};
/// let config = DeepFamConfig { kernel_sizes: vec![3, 5], units: 4, hidden: Some(6), n_classes: 3, dropout: 0.3 };
/// // Convolutions (21·4·3 + 4) + (21·4·5 + 4), hidden 8·6 + 6, output 6·3 + 3.
/// assert_eq!(deepfam_parameters(&config), 256 + 424 + 54 + 21);
/// ```
pub fn deepfam_parameters(config: &DeepFamConfig) -> usize {
    let u = config.units;
    let convs: usize = config.kernel_sizes.iter().map(|&k| ONE_HOT_CHANNELS * u * k + u).sum();
    let features = config.feature_width();
    let (dense, last) = match config.hidden {
        Some(h) => (features * h + h, h),
        None => (0, features),
    };
    convs + dense + last * config.n_classes + config.n_classes
}

/// DeepFam: parallel convolutions of several widths, each max-pooled over positions, then dense layers.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::baselines::cnn::{deepfam_parameters, DeepFam, DeepFamConfig};
/// use protein_lm::models::baselines::one_hot_batch;
/// use protein_lm::models::init::SeededVarMap;
/// let config = DeepFamConfig { kernel_sizes: vec![3, 5], units: 4, hidden: Some(6), n_classes: 3, dropout: 0.3 };
/// let vars = SeededVarMap::new(0);
/// let deepfam = DeepFam::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?;
/// assert_eq!(vars.num_parameters(), deepfam_parameters(&config));
/// // The pooled convolution features are the protein vectors DeepFam+DeepInteract reads.
/// let features = deepfam.features(&one_hot_batch(&["MKTAYIAKQR", "ACDEF"], 12, &Device::Cpu)?)?;
/// assert_eq!(features.dims(), [2, config.feature_width()]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DeepFam {
    convs: Vec<Conv1d>,
    hidden: Option<Linear>,
    out: Linear,
    config: DeepFamConfig,
}

impl DeepFam {
    /// Variables `conv.k{k}.weight/bias` (one per kernel size), `hidden.weight/bias`,
    /// `out.weight/bias`.
    pub fn new(vb: VarBuilder, config: &DeepFamConfig) -> Result<Self> {
        if config.kernel_sizes.is_empty() || config.units == 0 || config.n_classes == 0 || config.hidden == Some(0) {
            return Err(Error::invalid(format!("DeepFam needs kernels, units, classes, got {config:?}")));
        }
        check_dropout(config.dropout)?;
        let mut seen = config.kernel_sizes.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != config.kernel_sizes.len() {
            return Err(Error::invalid(format!("DeepFam kernel sizes repeat: {:?}", config.kernel_sizes)));
        }
        let convs = config
            .kernel_sizes
            .iter()
            .map(|&k| {
                let shape = Conv1dConfig {
                    in_channels: ONE_HOT_CHANNELS,
                    out_channels: config.units,
                    kernel_size: k,
                    dilation: 1,
                };
                Conv1d::load(vb.pp(format!("conv.k{k}")), shape)
            })
            .collect::<Result<Vec<_>>>()?;
        let features = config.feature_width();
        let hidden = config.hidden.map(|h| linear_glorot(features, h, vb.pp("hidden"))).transpose()?;
        let out = linear_glorot(config.hidden.unwrap_or(features), config.n_classes, vb.pp("out"))?;
        Ok(Self { convs, hidden, out, config: config.clone() })
    }

    pub fn config(&self) -> &DeepFamConfig {
        &self.config
    }

    /// The max-pooled convolution features `(B, units · kernel sizes)`: the protein vectors the
    /// paper's DeepFam+DeepInteract reads (after training on families).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let (x, mask) = channels_last_and_mask(x)?;
        let pooled =
            self.convs.iter().map(|conv| Ok(conv_relu_masked(conv, &x, &mask)?.max(1)?)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&pooled, D::Minus1)?)
    }
}

impl Classifier for DeepFam {
    fn logits(&self, x: &Tensor, train: bool, rng: Option<&mut Rng>) -> Result<Tensor> {
        let mut rng = training_rng(train, rng);
        let mut h = dropout(&self.features(x)?, self.config.dropout, rng.as_deref_mut())?;
        if let Some(hidden) = &self.hidden {
            h = dropout(&hidden.forward(&h)?.relu()?, self.config.dropout, rng)?;
        }
        Ok(self.out.forward(&h)?)
    }

    fn n_classes(&self) -> usize {
        self.config.n_classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::baselines::one_hot_batch;
    use crate::models::init::SeededVarMap;
    use candle_core::{DType, Device};

    #[test]
    fn max_pool2_pairs_positions_and_keeps_an_odd_tail() -> Result<()> {
        let x = Tensor::new(&[[[1f32], [3.], [2.], [0.], [5.]]], &Device::Cpu)?;
        assert_eq!(max_pool2(&x)?.flatten_all()?.to_vec1::<f32>()?, [3., 2., 5.]);
        Ok(())
    }

    #[test]
    fn mask_comes_from_the_one_hot_columns() -> Result<()> {
        let x = one_hot_batch(&["AX", "WCY"], 4, &Device::Cpu)?;
        let (h, mask) = channels_last_and_mask(&x)?;
        assert_eq!(h.dims(), [2, 4, 21]);
        assert_eq!(mask.squeeze(2)?.to_vec2::<f32>()?, [[1., 1., 0., 0.], [1., 1., 1., 0.]]);
        let vars = SeededVarMap::new(0);
        let cnn = SimpleCnn::new(vars.var_builder(DType::F32, &Device::Cpu), &SimpleCnnConfig::new(3))?;
        assert!(cnn.logits(&Tensor::zeros((2, 20, 4), DType::F32, &Device::Cpu)?, false, None).is_err());
        Ok(())
    }
}
