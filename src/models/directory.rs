//! One model directory for everything saved, imported or loaded:
//!
//! ```text
//! MODEL_DIR/
//!   config.json         {"kind": "proteinbert" | "proberta", "model": {…sizes…}, "source": …, …}
//!   model.safetensors   parameters under the names of `proteinbert::model` / `proberta::model`
//!   dict.txt            PRoBERTa: the fairseq dictionary (ids 4… of the vocabulary)
//!   tokenizer.json      PRoBERTa: the BPE model, when known (optional)
//!   go_terms.txt        ProteinBERT: the GO term of each annotation unit, one per line (optional:
//!                       the released model's order was lost by its authors)
//! ```
//!
//! Files are written to a temporary name and renamed ([`crate::output::write_atomic`]), so a directory
//! never holds half a file.
//!
//! ```
//! use candle_core::{DType, Device};
//! use protein_lm::models::directory::{init_random, ModelDir};
//! use protein_lm::models::directory::ModelConfig;
//! use protein_lm::models::proteinbert::Config;
//! let dir = tempfile::tempdir()?;
//! init_random(dir.path(), ModelConfig::Proteinbert(Config::tiny(8)), 0, None)?;
//! // What a notebook does with a pretrained model: open the directory, load the network.
//! let model_dir = ModelDir::open(dir.path())?;
//! let model = model_dir.proteinbert(DType::F32, &Device::Cpu)?;
//! assert_eq!(model.config(), &Config::tiny(8));
//! assert!(model_dir.go_terms()?.is_none()); // a random model knows no GO term order
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{proberta, proteinbert};
use crate::{Error, Result};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const DICT_FILE: &str = "dict.txt";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const GO_TERMS_FILE: &str = "go_terms.txt";

/// The network a directory holds, with its sizes.
///
/// ```
/// use protein_lm::models::directory::ModelConfig;
/// use protein_lm::models::{proberta, proteinbert};
/// let bert = ModelConfig::Proteinbert(proteinbert::Config::default());
/// let roberta = ModelConfig::Proberta(proberta::Config::default());
/// assert_eq!((bert.kind(), roberta.kind()), ("proteinbert", "proberta"));
/// // In config.json: the kind beside the sizes.
/// let json = serde_json::to_value(&bert).unwrap();
/// assert_eq!((json["kind"].as_str(), json["model"]["n_blocks"].as_u64()), (Some("proteinbert"), Some(6)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "model", rename_all = "lowercase")]
pub enum ModelConfig {
    Proteinbert(proteinbert::Config),
    Proberta(proberta::Config),
}

impl ModelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Proteinbert(_) => "proteinbert",
            ModelConfig::Proberta(_) => "proberta",
        }
    }
}

/// `config.json` of a model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryConfig {
    #[serde(flatten)]
    pub model: ModelConfig,
    /// Where the weights came from (an import command, a training run).
    #[serde(default)]
    pub source: Option<String>,
    /// Whether `model.safetensors` holds PRoBERTa's masked-LM head (`lm_head.*`).
    #[serde(default)]
    pub has_lm_head: bool,
    /// Classification heads stored beside the trunk (prefix in `model.safetensors` → its settings).
    #[serde(default)]
    pub heads: Vec<StoredHead>,
}

/// A head saved with the trunk, under `prefix.*` in `model.safetensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredHead {
    pub prefix: String,
    pub config: super::heads::HeadConfig,
    /// Label names in output order, when known.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// An opened model directory.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::directory::{init_random, ModelConfig, WEIGHTS_FILE};
/// use protein_lm::models::proberta::Config;
/// let dir = tempfile::tempdir()?;
/// let model_dir = init_random(dir.path(), ModelConfig::Proberta(Config::tiny(30)), 0, None)?;
/// assert_eq!(model_dir.config().model.kind(), "proberta");
/// assert!(model_dir.config().has_lm_head && model_dir.file(WEIGHTS_FILE).is_some());
/// // The masked-LM network, or the encoder alone for features.
/// let masked_lm = model_dir.proberta_masked_lm(DType::F32, &Device::Cpu)?;
/// assert_eq!(masked_lm.encoder.config().hidden_size, 32);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ModelDir {
    path: PathBuf,
    config: DirectoryConfig,
}

/// Writes `tensors` to a safetensors file, whole or not at all, readable as any other written file
/// (0666 less the umask). Serialised here rather than by `candle_core::safetensors::save`, whose
/// `serialize_to_file` writes through a `NamedTempFile` and so leaves the file readable by its owner
/// only (0600).
pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let bytes = safetensors::tensor::serialize(tensors.iter(), None)
        .map_err(|e| Error::data(crate::Location::file(path), format!("cannot serialise: {e}")))?;
    crate::output::write_file_atomic(path, &bytes)
}

/// The model kind (`proteinbert`, `proberta`) a directory's `config.json` names, if it is a model
/// directory at all; for error messages that should say "this is the other model".
pub fn model_kind(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join(CONFIG_FILE)).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("kind")?.as_str().map(str::to_string)
}

/// How a PRoBERTa encoder treats padded positions. Positions and attention are the same under
/// both; they differ in the embedding output at padded positions, which only padded positions see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadSemantics {
    /// fairseq's encoder (PRoBERTa's reference): the embedding output is zeroed at padding.
    Fairseq,
    /// Hugging Face's `RobertaModel`: it is not.
    HuggingFace,
}

impl ModelDir {
    /// Reads `config.json` of `path` and checks the weights file is there.
    ///
    /// ```
    /// use protein_lm::models::directory::{init_random, ModelConfig, ModelDir};
    /// use protein_lm::models::proteinbert::Config;
    /// let dir = tempfile::tempdir()?;
    /// assert!(ModelDir::open(dir.path()).is_err()); // no config.json yet
    /// init_random(dir.path(), ModelConfig::Proteinbert(Config::tiny(8)), 0, None)?;
    /// let model_dir = ModelDir::open(dir.path())?;
    /// assert_eq!(model_dir.config().model, ModelConfig::Proteinbert(Config::tiny(8)));
    /// // In a notebook: ModelDir::open("results/demo/runs/proteinbert-pretrain/model")
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let config_path = path.join(CONFIG_FILE);
        let text = fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        // Strict like every other config: a misspelt optional key (`has_lm_haed`) would otherwise
        // leave its default in force without a word.
        let config: DirectoryConfig = crate::config::parse_json_config(&text, &config_path, "protein-lm model config")?;
        match &config.model {
            ModelConfig::Proteinbert(c) => c.validate(),
            ModelConfig::Proberta(c) => c.validate(),
        }
        .map_err(|e| e.in_file(&config_path))?;
        let weights = path.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(Error::invalid(format!("{}: no {WEIGHTS_FILE} beside config.json", path.display())));
        }
        Ok(Self { path, config })
    }

    /// Writes a directory: `config.json` and `model.safetensors` (other files are copied by the
    /// caller with [`ModelDir::write_file`]).
    pub fn create(path: impl AsRef<Path>, config: &DirectoryConfig, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        save_tensors(&path.join(WEIGHTS_FILE), tensors)?;
        let json = serde_json::to_string_pretty(config).expect("config serialises");
        crate::output::write_file_atomic(&path.join(CONFIG_FILE), (json + "\n").as_bytes())?;
        Ok(Self { path, config: config.clone() })
    }

    /// Writes `contents` to `name` inside the directory.
    pub fn write_file(&self, name: &str, contents: &[u8]) -> Result<()> {
        crate::output::write_file_atomic(&self.path.join(name), contents)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// A file of the directory, if present.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        let p = self.path.join(name);
        p.is_file().then_some(p)
    }

    /// All parameters, converted to `dtype` on `device`.
    pub fn tensors(&self, dtype: DType, device: &Device) -> Result<HashMap<String, Tensor>> {
        let weights = self.path.join(WEIGHTS_FILE);
        let tensors = candle_core::safetensors::load(&weights, device)
            .map_err(|e| Error::data(crate::Location::file(&weights), format!("cannot read safetensors: {e}")))?;
        tensors
            .into_iter()
            .map(|(k, t)| {
                let t = if t.dtype().is_float() { t.to_dtype(dtype)? } else { t };
                Ok((k, t))
            })
            .collect()
    }

    /// A `VarBuilder` over the parameters (missing names are an error naming the key).
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        Ok(VarBuilder::from_tensors(self.tensors(dtype, device)?, dtype, device))
    }

    fn expect_kind(&self, kind: &str) -> Result<()> {
        if self.config.model.kind() != kind {
            return Err(Error::invalid(format!(
                "{} holds a {} model, not {kind}",
                self.path.display(),
                self.config.model.kind()
            )));
        }
        Ok(())
    }

    /// The ProteinBERT network of this directory.
    pub fn proteinbert(&self, dtype: DType, device: &Device) -> Result<proteinbert::ProteinBert> {
        self.expect_kind("proteinbert")?;
        let ModelConfig::Proteinbert(config) = &self.config.model else { unreachable!("kind checked") };
        proteinbert::ProteinBert::load(self.var_builder(dtype, device)?, config).map_err(|e| self.in_weights(e))
    }

    /// The PRoBERTa encoder of this directory (without heads).
    pub fn proberta_encoder(&self, dtype: DType, device: &Device) -> Result<proberta::Encoder> {
        self.expect_kind("proberta")?;
        let ModelConfig::Proberta(config) = &self.config.model else { unreachable!("kind checked") };
        proberta::Encoder::load(self.var_builder(dtype, device)?, config).map_err(|e| self.in_weights(e))
    }

    /// The same directory with its PRoBERTa models padded the way `padding` says, whatever its
    /// `config.json` holds (the file is not changed): e.g. fairseq's semantics on a model imported
    /// from Hugging Face, whose import keeps Hugging Face's.
    pub fn with_padding(mut self, padding: PadSemantics) -> Result<Self> {
        let ModelConfig::Proberta(config) = &mut self.config.model else {
            return Err(Error::invalid(format!(
                "{}: padding semantics are a PRoBERTa setting; this is a {} model",
                self.path.display(),
                self.config.model.kind()
            )));
        };
        config.zero_padded_embeddings = padding == PadSemantics::Fairseq;
        Ok(self)
    }

    /// The PRoBERTa encoder with its masked-LM head.
    pub fn proberta_masked_lm(&self, dtype: DType, device: &Device) -> Result<proberta::ProbertaForMaskedLm> {
        self.expect_kind("proberta")?;
        if !self.config.has_lm_head {
            return Err(Error::invalid(format!("{} has no masked-LM head (lm_head.*)", self.path.display())));
        }
        let ModelConfig::Proberta(config) = &self.config.model else { unreachable!("kind checked") };
        proberta::ProbertaForMaskedLm::load(self.var_builder(dtype, device)?, config).map_err(|e| self.in_weights(e))
    }

    /// A tensor the network needs is missing from the weights or has another shape: candle's error
    /// names the tensor, this names the file.
    fn in_weights(&self, error: Error) -> Error {
        error.in_file(self.path.join(WEIGHTS_FILE))
    }

    /// The GO term list, one per annotation unit, if the directory has one.
    pub fn go_terms(&self) -> Result<Option<Vec<String>>> {
        let Some(path) = self.file(GO_TERMS_FILE) else { return Ok(None) };
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Some(text.lines().map(str::to_string).collect()))
    }
}

/// A model directory with seeded random weights (the initialisation each reference uses: Keras'
/// for ProteinBERT, BERT's for PRoBERTa, which also gets its masked-LM head). The starting point
/// of a pretraining run, and a stand-in for timing and tests.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::directory::{init_random, ModelConfig};
/// use protein_lm::models::proteinbert::Config;
/// let root = tempfile::tempdir()?;
/// let embedding = |seed| -> protein_lm::Result<Vec<Vec<f32>>> {
///     let out = root.path().join(format!("seed-{seed}"));
///     let dir = init_random(out, ModelConfig::Proteinbert(Config::tiny(8)), seed, None)?;
///     Ok(dir.tensors(DType::F32, &Device::Cpu)?["embedding.weight"].to_vec2::<f32>()?)
/// };
/// // The same seed writes the same weights; another seed, others.
/// assert_eq!(embedding(42)?, embedding(42)?);
/// assert_ne!(embedding(42)?, embedding(43)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn init_random(
    out: impl AsRef<Path>,
    model: ModelConfig,
    seed: u64,
    dictionary: Option<&Path>,
) -> Result<ModelDir> {
    let map = super::init::SeededVarMap::new(seed);
    let vb = map.var_builder(DType::F32, &Device::Cpu);
    let has_lm_head = match &model {
        ModelConfig::Proteinbert(c) => {
            proteinbert::ProteinBert::load(vb, c)?;
            false
        }
        ModelConfig::Proberta(c) => {
            proberta::ProbertaForMaskedLm::load(vb, c)?;
            true
        }
    };
    let tensors: HashMap<String, Tensor> =
        map.named_vars().into_iter().map(|(name, var)| (name, var.as_tensor().detach())).collect();
    let config = DirectoryConfig {
        model,
        source: Some(format!("random initialisation, seed {seed}")),
        has_lm_head,
        heads: vec![],
    };
    let dir = ModelDir::create(out, &config, &tensors)?;
    if let Some(dict) = dictionary {
        let bytes = fs::read(dict).map_err(|e| Error::io(dict, e))?;
        dir.write_file(DICT_FILE, &bytes)?;
    }
    Ok(dir)
}
