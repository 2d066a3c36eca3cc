//! A multi-layer perceptron over dense feature rows; with [`MlpConfig::deep_interact`] and
//! [`pair_features`] it is the paper's DeepInteract PPI baseline.
//!
//! ```text
//! x (B, input_width) → [linear → ReLU → dropout] × hidden.len() → linear → (B, n_classes)
//! ```
//!
//! The paper says only "a neural network with three hidden layers" over the two proteins' vectors
//! (ProtVec, or a DeepFam hidden layer); the widths 512/256/128 and dropout 0.2 are ours.

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use ndarray::{concatenate, Array2, Axis};
use serde::{Deserialize, Serialize};

use super::{training_rng, Classifier};
use crate::models::layers::{dropout, linear_glorot};
use crate::{Error, Result, Rng};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub input_width: usize,
    /// Widths of the hidden layers, first to last (may be empty: logistic regression).
    pub hidden: Vec<usize>,
    /// After every hidden layer, in training.
    pub dropout: f64,
    pub n_classes: usize,
}

impl MlpConfig {
    /// DeepInteract on pairs of `feature_width`-wide protein vectors (8,000 for 3-mer frequencies):
    /// both vectors side by side, three hidden layers 512, 256, 128, dropout 0.2, two classes.
    pub fn deep_interact(feature_width: usize) -> Self {
        Self { input_width: 2 * feature_width, hidden: vec![512, 256, 128], dropout: 0.2, n_classes: 2 }
    }

    fn validate(&self) -> Result<()> {
        if self.input_width == 0 || self.n_classes == 0 || self.hidden.contains(&0) {
            return Err(Error::invalid(format!("MLP widths must be positive, got {self:?}")));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(format!("MLP dropout must be in [0, 1), got {}", self.dropout)));
        }
        Ok(())
    }
}

/// The pair names the brief and the paper use.
pub type PairMlp = Mlp;
pub type PairMlpConfig = MlpConfig;

/// Weights and biases of every layer: `Σ (in·out + out)` over consecutive widths.
pub fn n_parameters(config: &MlpConfig) -> usize {
    let widths: Vec<usize> =
        std::iter::once(config.input_width).chain(config.hidden.iter().copied()).chain([config.n_classes]).collect();
    widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
}

#[derive(Debug, Clone)]
pub struct Mlp {
    hidden: Vec<Linear>,
    out: Linear,
    config: MlpConfig,
}

impl Mlp {
    /// Variables `hidden.{i}.weight/bias` and `out.weight/bias`, Glorot-uniform (Keras' Dense).
    pub fn new(vb: VarBuilder, config: &MlpConfig) -> Result<Self> {
        config.validate()?;
        let mut width = config.input_width;
        let mut hidden = Vec::with_capacity(config.hidden.len());
        for (i, &next) in config.hidden.iter().enumerate() {
            hidden.push(linear_glorot(width, next, vb.pp(format!("hidden.{i}")))?);
            width = next;
        }
        let out = linear_glorot(width, config.n_classes, vb.pp("out"))?;
        Ok(Self { hidden, out, config: config.clone() })
    }

    pub fn config(&self) -> &MlpConfig {
        &self.config
    }
}

impl Classifier for Mlp {
    /// `x (B, input_width)` → `(B, n_classes)`.
    fn logits(&self, x: &Tensor, train: bool, rng: Option<&mut Rng>) -> Result<Tensor> {
        let (_, width) =
            x.dims2().map_err(|_| Error::invalid(format!("MLP input must be (B, D), got {:?}", x.dims())))?;
        if width != self.config.input_width {
            return Err(Error::invalid(format!(
                "MLP expects {} features per row, got {width}",
                self.config.input_width
            )));
        }
        let mut rng = training_rng(train, rng);
        let mut h = x.clone();
        for layer in &self.hidden {
            h = dropout(&layer.forward(&h)?.relu()?, self.config.dropout, rng.as_deref_mut())?;
        }
        Ok(self.out.forward(&h)?)
    }

    fn n_classes(&self) -> usize {
        self.config.n_classes
    }
}

/// The DeepInteract input for pairs: row i is `[features[a_i], features[b_i]]` for
/// `(a_i, b_i) = pairs[i]`, `features` holding one protein vector per row (f64 from
/// `kmer_frequency_vectors`, stored as f32 for the network).
pub fn pair_features(features: &Array2<f64>, pairs: &[(usize, usize)]) -> Result<Array2<f32>> {
    let n = features.nrows();
    if let Some((row, &(a, b))) = pairs.iter().enumerate().find(|(_, &(a, b))| a >= n || b >= n) {
        return Err(Error::invalid(format!("pair {row} ({a}, {b}) names a protein beyond the {n} feature rows")));
    }
    let left: Vec<usize> = pairs.iter().map(|p| p.0).collect();
    let right: Vec<usize> = pairs.iter().map(|p| p.1).collect();
    let both = concatenate(Axis(1), &[features.select(Axis(0), &left).view(), features.select(Axis(0), &right).view()])
        .map_err(|e| Error::invalid(format!("pair features: {e}")))?;
    Ok(both.mapv(|v| v as f32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::init::SeededVarMap;
    use candle_core::{DType, Device};
    use ndarray::array;

    #[test]
    fn logits_shape_and_parameter_count() -> Result<()> {
        let config = MlpConfig { input_width: 10, hidden: vec![7, 5], dropout: 0.2, n_classes: 3 };
        let vars = SeededVarMap::new(1);
        let mlp = Mlp::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?;
        let x = Tensor::zeros((4, 10), DType::F32, &Device::Cpu)?;
        assert_eq!(mlp.logits(&x, false, None)?.dims(), [4, 3]);
        assert_eq!(n_parameters(&config), 10 * 7 + 7 + 7 * 5 + 5 + 5 * 3 + 3);
        assert_eq!(vars.num_parameters(), n_parameters(&config));
        let deep = MlpConfig::deep_interact(8000);
        assert_eq!(n_parameters(&deep), 16000 * 512 + 512 + 512 * 256 + 256 + 256 * 128 + 128 + 128 * 2 + 2);
        assert!(mlp.logits(&Tensor::zeros((4, 9), DType::F32, &Device::Cpu)?, false, None).is_err());
        Ok(())
    }

    #[test]
    fn pair_features_put_the_two_rows_side_by_side() -> Result<()> {
        let f = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let x = pair_features(&f, &[(0, 2), (1, 1)])?;
        assert_eq!(x, array![[1f32, 2., 5., 6.], [3., 4., 3., 4.]]);
        let e = pair_features(&f, &[(0, 1), (3, 0)]).unwrap_err().to_string();
        assert!(e.contains("pair 1 (3, 0)"), "{e}");
        Ok(())
    }
}
