//! Models and the layers they share.
//!
//! A trunk ([`Trunk`]: [`proteinbert::ProteinBert`], [`proberta::Encoder`]) turns token ids into
//! [`heads::Features`]; a head ([`heads::Head`]) turns features into task outputs. The same
//! training loop, losses and metrics serve every head on either trunk.

pub mod baselines;
pub mod directory;
pub mod heads;
pub mod import;
pub mod init;
pub mod layers;
pub mod loss;
pub mod ops;
pub mod proberta;
pub mod proteinbert;

use candle_core::{DType, Tensor};

use crate::{Result, Rng};
use heads::Features;

/// A network that gives per-residue and per-protein features for a batch of token ids.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proteinbert::{Config, ProteinBert};
/// use protein_lm::models::Trunk;
/// let config = Config::tiny(8);
/// let trunk: Box<dyn Trunk> = Box::new(ProteinBert::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &config)?);
/// // <START> M K <END> <PAD>: features for any head, whichever model made them.
/// let ids = Tensor::new(&[[23u32, 10, 8, 24, 25]], &Device::Cpu)?;
/// let features = trunk.features(&ids, None)?;
/// assert_eq!(features.residues.dims(), [1, 5, trunk.residue_width()]);
/// assert_eq!(features.protein.dims(), [1, trunk.protein_width()]);
/// assert_eq!(features.mask.to_vec2::<u32>()?, [[1, 1, 1, 1, 0]]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub trait Trunk {
    /// `ids (B, L)` → features. `rng` = `Some` trains (dropout on, where the trunk has dropout).
    fn features(&self, ids: &Tensor, rng: Option<&mut Rng>) -> Result<Features>;
    /// Width of [`Features::residues`].
    fn residue_width(&self) -> usize;
    /// Width of [`Features::protein`].
    fn protein_width(&self) -> usize;
}

impl<T: Trunk + ?Sized> Trunk for Box<T> {
    fn features(&self, ids: &Tensor, rng: Option<&mut Rng>) -> Result<Features> {
        (**self).features(ids, rng)
    }
    fn residue_width(&self) -> usize {
        (**self).residue_width()
    }
    fn protein_width(&self) -> usize {
        (**self).protein_width()
    }
}

impl Trunk for proteinbert::ProteinBert {
    /// The reference's fine-tuning features: all-zero annotation input, the 1,562-wide local and
    /// 15,599-wide global concatenations, padding mask only if [`Self::padding_mask`] is on.
    fn features(&self, ids: &Tensor, _rng: Option<&mut Rng>) -> Result<Features> {
        let mask = ids.ne(crate::tokenize::residue::PAD)?.to_dtype(DType::U32)?;
        let out = self.forward_without_annotations(ids, false)?;
        Ok(Features { residues: out.local_hidden()?, mask, protein: out.global_hidden()? })
    }

    fn residue_width(&self) -> usize {
        self.config().local_hidden_size()
    }

    fn protein_width(&self) -> usize {
        self.config().global_hidden_size()
    }
}

impl Trunk for proberta::Encoder {
    /// The last layer at every position, and its `<s>` position as the protein vector.
    fn features(&self, ids: &Tensor, rng: Option<&mut Rng>) -> Result<Features> {
        let out = self.forward(ids, proberta::Forward::default(), rng)?;
        let residues = out.last().clone();
        let protein = residues.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(Features { residues, mask: out.mask, protein })
    }

    fn residue_width(&self) -> usize {
        self.config().hidden_size
    }

    fn protein_width(&self) -> usize {
        self.config().hidden_size
    }
}
