//! ProteinBERT's hyperparameters (spec `proteinbert.md` §2), serialised in a model directory's
//! `config.json`.

use serde::{Deserialize, Serialize};

use crate::tokenize::residue;
use crate::{Error, Result};

/// Sizes of a ProteinBERT network. No weight depends on the sequence length (there are no
/// position embeddings), so the same weights run at any padded length.
///
/// ```
/// use protein_lm::models::proteinbert::Config;
/// let released = Config::default();
/// assert_eq!((released.local_hidden_size(), released.global_hidden_size()), (1562, 15_599));
/// // A laptop-sized network with the released vocabulary and layer norm.
/// let demo = Config::demo(512);
/// assert!(demo.validate().is_ok() && demo.vocab_size == released.vocab_size);
/// assert!(Config { n_heads: 3, ..released }.validate().is_err()); // 512 is not a multiple of 3
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Token vocabulary (26: 22 residues + OTHER, START, END, PAD).
    pub vocab_size: usize,
    /// GO terms of the annotation input and output (8,943 in the released model).
    pub n_annotations: usize,
    /// Width of the local (per-residue) track.
    pub d_local: usize,
    /// Width of the global (per-protein) track.
    pub d_global: usize,
    pub n_blocks: usize,
    /// Global-attention heads; each head's value width is `d_global / n_heads`.
    pub n_heads: usize,
    /// Query/key width of each attention head.
    pub d_key: usize,
    pub conv_kernel_size: usize,
    /// Dilation of the wide convolution (the narrow one has dilation 1).
    pub wide_conv_dilation: usize,
    /// LayerNorm epsilon: Keras' default 1e-3 (1e-5 moves outputs by up to 0.047).
    pub layer_norm_eps: f64,
}

impl Default for Config {
    /// The released model: 15,981,321 parameters.
    fn default() -> Self {
        Self {
            vocab_size: residue::VOCAB_SIZE,
            n_annotations: 8943,
            d_local: 128,
            d_global: 512,
            n_blocks: 6,
            n_heads: 4,
            d_key: 64,
            conv_kernel_size: 9,
            wide_conv_dilation: 5,
            layer_norm_eps: 1e-3,
        }
    }
}

impl Config {
    /// A small network for CPU tests and the `tiny` notebook scale (about 60 k parameters).
    pub fn tiny(n_annotations: usize) -> Self {
        Self { n_annotations, d_local: 16, d_global: 32, n_blocks: 2, n_heads: 2, d_key: 8, ..Self::default() }
    }

    /// A mid-sized network that pretrains on a laptop CPU in minutes (the `demo` scale).
    pub fn demo(n_annotations: usize) -> Self {
        Self { n_annotations, d_local: 64, d_global: 256, n_blocks: 4, n_heads: 4, d_key: 32, ..Self::default() }
    }

    /// Value width of each attention head.
    pub fn d_value(&self) -> usize {
        self.d_global / self.n_heads.max(1)
    }

    /// Width of the per-residue hidden concatenation: two local LayerNorm outputs per block plus
    /// the token distribution (1,562 for the released model).
    pub fn local_hidden_size(&self) -> usize {
        2 * self.n_blocks * self.d_local + self.vocab_size
    }

    /// Width of the per-protein hidden concatenation: the global input layer, two global
    /// LayerNorm outputs per block and the annotation probabilities (15,599 for the released model).
    pub fn global_hidden_size(&self) -> usize {
        self.d_global + 2 * self.n_blocks * self.d_global + self.n_annotations
    }

    /// Number of parameters of the trunk and both output layers.
    pub fn num_parameters(&self) -> usize {
        let dense = |i: usize, o: usize| i * o + o;
        let conv = self.conv_kernel_size * self.d_local * self.d_local + self.d_local;
        let block = dense(self.d_global, self.d_local)
            + 2 * conv
            + 4 * self.d_local
            + dense(self.d_local, self.d_local)
            + 2 * dense(self.d_global, self.d_global)
            + self.n_heads * (self.d_global * self.d_key + self.d_local * self.d_key + self.d_local * self.d_value())
            + 4 * self.d_global;
        self.vocab_size * self.d_local
            + dense(self.n_annotations, self.d_global)
            + self.n_blocks * block
            + dense(self.d_local, self.vocab_size)
            + dense(self.d_global, self.n_annotations)
    }

    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("n_annotations", self.n_annotations),
            ("d_local", self.d_local),
            ("d_global", self.d_global),
            ("n_blocks", self.n_blocks),
            ("n_heads", self.n_heads),
            ("d_key", self.d_key),
            ("conv_kernel_size", self.conv_kernel_size),
            ("wide_conv_dilation", self.wide_conv_dilation),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::invalid(format!("ProteinBERT config: {name} must be positive")));
        }
        if !self.d_global.is_multiple_of(self.n_heads) {
            return Err(Error::invalid(format!(
                "ProteinBERT config: d_global ({}) must be a multiple of n_heads ({})",
                self.d_global, self.n_heads
            )));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(Error::invalid(format!(
                "ProteinBERT config: layer_norm_eps must be positive, got {}",
                self.layer_norm_eps
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_sizes() {
        let c = Config::default();
        assert_eq!(c.num_parameters(), 15_981_321);
        assert_eq!(c.local_hidden_size(), 1562);
        assert_eq!(c.global_hidden_size(), 15_599);
        assert_eq!(c.d_value(), 128);
        assert!(Config { n_heads: 3, ..c.clone() }.validate().is_err());
        assert!(Config { d_local: 0, ..c }.validate().is_err());
    }
}
