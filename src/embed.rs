//! Protein embeddings from either model: one vector per protein ([`Embedder::embed`]) or one matrix
//! per protein ([`Embedder::embed_residues`]), in input order, with the writers the `embed` command
//! uses (`.npy`, `.ids.txt`, `.safetensors`).
//!
//! ```no_run
//! use protein_lm::embed::{EmbedOptions, EmbedPooling, Embedder};
//! use protein_lm::data::Protein;
//!
//! let proteins = vec![Protein { id: "P1".into(), sequence: "MKTAYIAKQR".into() }];
//! let options = EmbedOptions { pooling: Some(EmbedPooling::Mean), ..EmbedOptions::default() };
//! let embedder = Embedder::new("runs/proberta-demo", options)?;
//! let matrix = embedder.embed(&proteins, &mut |_| {})?;
//! assert_eq!(matrix.row(0).len(), matrix.dim);
//! # Ok::<(), protein_lm::Error>(())
//! ```
//!
//! # What each pooling is
//!
//! | pooling | model | vector |
//! |---|---|---|
//! | `global` | ProteinBERT (default) | the reference's per-protein hidden concatenation ([`crate::models::heads::Features::protein`]): global input layer, every global LayerNorm output and the GO probabilities (15,599 wide for the released model, spec `proteinbert.md` §2.3) |
//! | `mean`, `sum` | both (PRoBERTa default: `mean`) | mean or sum over the real tokens (every non-padding position: START/`<s>` and END/`</s>` included, as the head API's [`crate::models::heads::Pooling::Mean`]) of the chosen layer |
//! | `cls` | both | the first position (START / `<s>`) of the chosen layer |
//! | `first128` | both | the PRoBERTa paper's Figure 2 vector: the chosen layer's first 128 token positions (position 0 = `<s>` / START) concatenated, `128 · d` wide; a protein with fewer than 128 tokens is filled with zeros (never with the hidden states of padding) |
//! | `proberta-clustering` | PRoBERTa | the reference clustering vector (spec `proberta.md` §8): its own encoding, pieces + `</s>` with no `<s>`, filled with id 0 (`<s>`, which the model treats as a real token) to the model's 512 positions, then the sum of hidden states 2, 3, 4 and 5 (index 0 = embedding output) over all 512 positions, filler included |
//!
//! # Layers
//!
//! [`LayerChoice`] picks the per-position states that `mean`, `sum`, `cls`, `first128` and the
//! per-residue output read (`global` and `proberta-clustering` fix their own):
//! - PRoBERTa: `Index(i)` is hidden state `i`, 0 = embedding output … `num_hidden_layers` = last
//!   layer; `Last` (default) is the last layer.
//! - ProteinBERT: `Index(i)` is the `i`-th of the `2 · n_blocks` local-track LayerNorm outputs in
//!   order (`2b` = block `b`'s first LayerNorm, `2b + 1` its second; width `d_local`); `Last`
//!   (default) is the final local track, the one the token head reads; `All` is the reference's
//!   per-residue concatenation `local_hidden` (every local LayerNorm output and the token
//!   probabilities, 1,562 wide for the released model).
//!
//! # Padding and lengths
//!
//! ProteinBERT has no padding mask by default, so its outputs depend on the padded length. Each
//! protein is padded exactly as the reference pads it (START + residues + END, then PAD) to
//! [`EmbedOptions::seq_len`], or by default to the reference's own rule, the smallest of 512, 1,024,
//! 2,048, … that fits ([`crate::tokenize::residue::bucket_seq_len`]); a batch only holds proteins of
//! the same padded length, so batching never changes a vector. [`EmbedOptions::padding_mask`]
//! switches on the model's padding mask (a documented divergence from the reference).
//!
//! PRoBERTa masks padding (fairseq pad id 1), so batches are padded to their longest member. A
//! protein with more BPE pieces than the model's positions hold (512 positions = 510 pieces +
//! `<s>` + `</s>`) follows [`LongPolicy`]: an error by default, the first pieces, or overlapping
//! windows whose per-position vectors are averaged where they overlap.
//!
//! PRoBERTa's per-residue rows are BPE pieces (several residues each), not residues.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::batch::{Batch, Overflow, Padding};
use crate::data::fasta::FastaRecord;
use crate::data::Protein;
use crate::device::{select_device, DeviceChoice};
use crate::models::directory::{ModelConfig, ModelDir};
use crate::models::{proberta, proteinbert};
use crate::tokenize::residue::{self, bucket_seq_len, ResidueTokenizer, UnknownCounts};
use crate::tokenize::{vocab, ProbertaTokenizer};
use crate::{Error, Location, Result};

/// Default token budget of one batch (padded tokens: rows × padded length).
pub const DEFAULT_BATCH_TOKENS: usize = 16_384;
/// Token positions the `first128` pooling concatenates.
pub const FIRST_TOKENS: usize = 128;
/// Hidden states the reference clustering script sums (index 0 = embedding output).
pub const CLUSTERING_LAYERS: [usize; 4] = [2, 3, 4, 5];

/// How one protein becomes one vector (see the module docs for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbedPooling {
    Mean,
    Sum,
    Cls,
    /// ProteinBERT's 15,599-wide global concatenation.
    Global,
    /// The reference PRoBERTa clustering vector.
    ProbertaClustering,
    /// The chosen layer's first 128 token positions, concatenated.
    First128,
}

impl EmbedPooling {
    pub fn name(&self) -> &'static str {
        match self {
            EmbedPooling::Mean => "mean",
            EmbedPooling::Sum => "sum",
            EmbedPooling::Cls => "cls",
            EmbedPooling::Global => "global",
            EmbedPooling::ProbertaClustering => "proberta-clustering",
            EmbedPooling::First128 => "first128",
        }
    }

    /// Whether the pooling reads the per-position states of [`LayerChoice`].
    pub fn reads_layer(&self) -> bool {
        !matches!(self, EmbedPooling::Global | EmbedPooling::ProbertaClustering)
    }
}

impl FromStr for EmbedPooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "mean" => EmbedPooling::Mean,
            "sum" => EmbedPooling::Sum,
            "cls" => EmbedPooling::Cls,
            "global" => EmbedPooling::Global,
            "proberta-clustering" | "clustering" => EmbedPooling::ProbertaClustering,
            "first128" | "first-128" => EmbedPooling::First128,
            _ => {
                return Err(Error::invalid(format!(
                    "pooling `{s}`: expected mean, sum, cls, global, proberta-clustering or first128"
                )))
            }
        })
    }
}

/// Which per-position states are read (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerChoice {
    #[default]
    Last,
    Index(usize),
    /// ProteinBERT only: the reference's per-residue concatenation (1,562 wide).
    All,
}

impl FromStr for LayerChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "last" => Ok(LayerChoice::Last),
            "all" => Ok(LayerChoice::All),
            n => n
                .parse()
                .map(LayerChoice::Index)
                .map_err(|_| Error::invalid(format!("layer `{s}`: expected a non-negative index, `last` or `all`"))),
        }
    }
}

impl std::fmt::Display for LayerChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerChoice::Last => write!(f, "last"),
            LayerChoice::Index(i) => write!(f, "{i}"),
            LayerChoice::All => write!(f, "all"),
        }
    }
}

/// What happens to a PRoBERTa protein with more pieces than the model's positions hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongPolicy {
    /// An error naming the record and its length.
    #[default]
    Error,
    /// Keep the first pieces: `<s>` + the first `max_tokens − 2` pieces + `</s>` (the crate's
    /// [`crate::tokenize::SingleTruncation::KeepEnd`]). For `proberta-clustering`, the reference's
    /// own cut: the first 512 tokens of pieces + `</s>` (so `</s>` is lost).
    Truncate,
    /// Overlapping windows of at most `max_tokens` tokens (`<s>` + up to `max_tokens − 2` pieces +
    /// `</s>`), starting every [`EmbedOptions::stride`] pieces, the last one ending on the last
    /// piece. Each piece's vector is the mean over the windows that hold it; the `<s>` and `</s>`
    /// rows are the means over all windows. Pooling then reads the assembled rows.
    Window,
}

impl FromStr for LongPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(LongPolicy::Error),
            "truncate" => Ok(LongPolicy::Truncate),
            "window" => Ok(LongPolicy::Window),
            _ => Err(Error::invalid(format!("long-protein policy `{s}`: expected error, truncate or window"))),
        }
    }
}

/// Everything an [`Embedder`] can be asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedOptions {
    /// `None`: the model's default (ProteinBERT `global`, PRoBERTa `mean`).
    pub pooling: Option<EmbedPooling>,
    /// `None`: [`LayerChoice::Last`]. Giving a layer to a pooling that fixes its own is an error.
    pub layer: Option<LayerChoice>,
    /// ProteinBERT: one padded length for every protein; `None` = [`bucket_seq_len`] per protein.
    pub seq_len: Option<usize>,
    /// ProteinBERT: switch on the model's padding mask.
    pub padding_mask: bool,
    /// PRoBERTa: proteins longer than the model's positions.
    pub long: LongPolicy,
    /// PRoBERTa windows: pieces between window starts; `None` = half a window.
    pub stride: Option<usize>,
    /// Padded tokens per batch (a protein longer than this runs alone).
    pub batch_tokens: usize,
    pub device: DeviceChoice,
    /// Dtype of the model's weights and activations (pooling is done in f32).
    #[serde(with = "dtype_name")]
    pub dtype: DType,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            pooling: None,
            layer: None,
            seq_len: None,
            padding_mask: false,
            long: LongPolicy::Error,
            stride: None,
            batch_tokens: DEFAULT_BATCH_TOKENS,
            device: DeviceChoice::Auto,
            dtype: DType::F32,
        }
    }
}

mod dtype_name {
    use candle_core::DType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(dtype: &DType, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(dtype.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<DType, D::Error> {
        let name = String::deserialize(d)?;
        crate::device::parse_dtype(&name).map_err(serde::de::Error::custom)
    }
}

/// Anything with an id and a sequence: [`Protein`], [`FastaRecord`], [`Record`], `(id, sequence)`.
pub trait SequenceRecord {
    fn id(&self) -> &str;
    fn sequence(&self) -> &str;
    /// 1-based line of the record in its file, when known (for error messages).
    fn line(&self) -> Option<usize> {
        None
    }
}

impl SequenceRecord for Protein {
    fn id(&self) -> &str {
        &self.id
    }
    fn sequence(&self) -> &str {
        &self.sequence
    }
}

impl SequenceRecord for FastaRecord {
    fn id(&self) -> &str {
        &self.id
    }
    fn sequence(&self) -> &str {
        &self.sequence
    }
    fn line(&self) -> Option<usize> {
        Some(self.line)
    }
}

impl<A: AsRef<str>, B: AsRef<str>> SequenceRecord for (A, B) {
    fn id(&self) -> &str {
        self.0.as_ref()
    }
    fn sequence(&self) -> &str {
        self.1.as_ref()
    }
}

/// One input protein with where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub sequence: String,
    /// 1-based header line for FASTA; `None` for tables, whose readers merge rows.
    pub line: Option<usize>,
}

impl SequenceRecord for Record {
    fn id(&self) -> &str {
        &self.id
    }
    fn sequence(&self) -> &str {
        &self.sequence
    }
    fn line(&self) -> Option<usize> {
        self.line
    }
}

/// The proteins of a FASTA file (plain or gzip; the reader's errors name file and line), or of any
/// other file [`crate::data::read_proteins`] reads, in file order. Two records with one id are an
/// error naming both places.
pub fn read_records(path: impl AsRef<Path>) -> Result<Vec<Record>> {
    let path = path.as_ref();
    let records: Vec<Record> = match crate::data::sniff_format(path)? {
        crate::data::ProteinFileFormat::Fasta => crate::data::fasta::read_fasta(path)?
            .into_iter()
            .map(|r| Record { id: r.id, sequence: r.sequence, line: Some(r.line) })
            .collect(),
        _ => crate::data::read_proteins(path)?
            .0
            .into_iter()
            .map(|p| Record { id: p.id, sequence: p.sequence, line: None })
            .collect(),
    };
    check_unique_ids(&records, Some(path))?;
    Ok(records)
}

/// An error when two records share an id, naming both (lines when known, else positions).
pub fn check_unique_ids<R: SequenceRecord>(records: &[R], path: Option<&Path>) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        if let Some(&first) = seen.get(r.id()) {
            let place = |k: usize| match records[k].line() {
                Some(line) => format!("line {line}"),
                None => format!("record #{}", k + 1),
            };
            let message = format!("duplicate record id `{}`: first at {}, again at {}", r.id(), place(first), place(i));
            return Err(match (path, r.line()) {
                (Some(p), Some(line)) => Error::data(Location::line(p, line).with_record(r.id()), message),
                (Some(p), None) => Error::data(Location::file(p).with_record(r.id()), message),
                (None, _) => Error::invalid(message),
            });
        }
        seen.insert(r.id(), i);
    }
    Ok(())
}

fn describe<R: SequenceRecord>(r: &R, index: usize) -> String {
    match r.line() {
        Some(line) => format!("record `{}` (line {line})", r.id()),
        None => format!("record `{}` (#{})", r.id(), index + 1),
    }
}

/// What one call did, for throughput reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmbedStats {
    pub proteins: usize,
    /// Model inputs: one per protein, more for windowed proteins.
    pub inputs: usize,
    /// Real tokens fed to the model (specials included, padding excluded).
    pub tokens: usize,
    /// Tokens the model computed, padding included (batch rows × padded length).
    pub padded_tokens: usize,
    /// Batches run.
    pub batches: usize,
    /// Proteins split into windows ([`LongPolicy::Window`]).
    pub windowed: usize,
    /// Proteins cut ([`LongPolicy::Truncate`]).
    pub truncated: usize,
    /// Characters that went to the unknown token.
    pub unknown: UnknownCounts,
    pub seconds: f64,
}

/// One vector per protein, in input order: row `i` is `values[i·dim .. (i+1)·dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingMatrix {
    pub ids: Vec<String>,
    pub values: Vec<f32>,
    pub dim: usize,
    pub stats: EmbedStats,
}

impl EmbeddingMatrix {
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// A copy as an `(n, dim)` array (the analysis module's matrix type).
    pub fn to_array(&self) -> ndarray::Array2<f32> {
        ndarray::Array2::from_shape_vec((self.rows(), self.dim), self.values.clone())
            .expect("values hold rows × dim floats")
    }
}

/// One `(rows, dim)` matrix per protein, in input order: ProteinBERT rows are residues (START and END
/// dropped), PRoBERTa rows are BPE pieces (`<s>` and `</s>` dropped; only the kept pieces under
/// [`LongPolicy::Truncate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ResidueEmbeddings {
    pub ids: Vec<String>,
    /// Row-major `rows(i) × dim` floats per protein.
    pub values: Vec<Vec<f32>>,
    pub dim: usize,
    pub stats: EmbedStats,
}

impl ResidueEmbeddings {
    pub fn rows(&self, i: usize) -> usize {
        self.values[i].len() / self.dim.max(1)
    }
}

enum Model {
    ProteinBert(proteinbert::ProteinBert),
    Proberta { encoder: proberta::Encoder, tokenizer: ProbertaTokenizer },
}

/// A loaded model with the choices of one embedding run.
pub struct Embedder {
    model: Model,
    device: Device,
    pooling: EmbedPooling,
    layer: LayerChoice,
    options: EmbedOptions,
    source: PathBuf,
}

/// One model input: a protein, or one window of it.
struct Unit {
    record: usize,
    ids: Vec<u32>,
    /// Padded length when fixed (ProteinBERT, clustering); `None` = longest of the batch.
    fixed_len: Option<usize>,
    /// Windows: index of the first piece of this window within the protein.
    offset: usize,
}

/// What the batch loop produces for one unit.
enum UnitOutput {
    /// A finished protein vector (`global`, `proberta-clustering`).
    Vector(Vec<f32>),
    /// The unit's real-token rows of the chosen layer, row-major.
    Rows(Vec<f32>),
}

/// How a protein's units are put back together.
struct Plan {
    /// Units of each protein (indices into the unit list).
    units: Vec<Vec<usize>>,
    /// Pieces of each windowed protein (`None`: a single unit).
    window_pieces: Vec<Option<usize>>,
}

impl Embedder {
    /// Opens `model_dir` (see [`crate::models::directory`]) and checks `options` against the model.
    /// PRoBERTa's tokenizer comes from the same directory: `tokenizer.json` (exact BPE) when present,
    /// else `dict.txt` with the approximate merge-free encoder.
    pub fn new(model_dir: impl AsRef<Path>, options: EmbedOptions) -> Result<Self> {
        let dir = ModelDir::open(model_dir.as_ref())?;
        let device = select_device(options.device)?;
        if options.batch_tokens == 0 {
            return Err(Error::invalid("batch_tokens must be positive"));
        }
        let model = match &dir.config().model {
            ModelConfig::Proteinbert(_) => {
                Model::ProteinBert(dir.proteinbert(options.dtype, &device)?.with_padding_mask(options.padding_mask))
            }
            ModelConfig::Proberta(config) => {
                if dir.file(crate::models::directory::DICT_FILE).is_none() {
                    return Err(Error::invalid(format!(
                        "{}: a PRoBERTa model directory needs its dict.txt (and tokenizer.json when known)",
                        dir.path().display()
                    )));
                }
                let tokenizer = ProbertaTokenizer::load(dir.path())?;
                if tokenizer.dictionary.len() > config.vocab_size {
                    return Err(Error::invalid(format!(
                        "{}: dict.txt numbers {} tokens but the model has only {} embeddings",
                        dir.path().display(),
                        tokenizer.dictionary.len(),
                        config.vocab_size
                    )));
                }
                Model::Proberta { encoder: dir.proberta_encoder(options.dtype, &device)?, tokenizer }
            }
        };
        let pooling = options.pooling.unwrap_or(match model {
            Model::ProteinBert(_) => EmbedPooling::Global,
            Model::Proberta { .. } => EmbedPooling::Mean,
        });
        let embedder = Self {
            model,
            device,
            pooling,
            layer: options.layer.unwrap_or_default(),
            options,
            source: dir.path().to_path_buf(),
        };
        embedder.validate()?;
        Ok(embedder)
    }

    fn validate(&self) -> Result<()> {
        let o = &self.options;
        if o.pooling.is_some() {
            self.check_layer_use()?;
        }
        match &self.model {
            Model::ProteinBert(model) => {
                if self.pooling == EmbedPooling::ProbertaClustering {
                    return Err(Error::invalid(
                        "`proberta-clustering` pooling is for PRoBERTa models, not ProteinBERT",
                    ));
                }
                let states = 2 * model.config().n_blocks;
                if let LayerChoice::Index(i) = self.layer {
                    if i >= states {
                        return Err(Error::invalid(format!(
                            "ProteinBERT layer {i}: this model has {states} local LayerNorm outputs (0–{})",
                            states - 1
                        )));
                    }
                }
                if let Some(len) = o.seq_len {
                    if len < residue::ADDED_TOKENS_PER_SEQ + 1 {
                        return Err(Error::invalid(format!("seq_len {len} leaves no room for a residue")));
                    }
                }
            }
            Model::Proberta { encoder, .. } => {
                let config = encoder.config();
                if self.pooling == EmbedPooling::Global {
                    return Err(Error::invalid(
                        "`global` pooling is ProteinBERT's global track; PRoBERTa has none (try mean, cls or proberta-clustering)",
                    ));
                }
                if o.seq_len.is_some() {
                    return Err(Error::invalid(
                        "seq_len is a ProteinBERT option; PRoBERTa pads each batch to its longest protein, with a mask",
                    ));
                }
                if o.padding_mask {
                    return Err(Error::invalid("padding_mask is a ProteinBERT option; PRoBERTa always masks padding"));
                }
                match self.layer {
                    LayerChoice::All => {
                        return Err(Error::invalid(
                            "layer `all` is ProteinBERT's concatenation; for PRoBERTa give an index or `last`",
                        ))
                    }
                    LayerChoice::Index(i) if i > config.num_hidden_layers => {
                        return Err(Error::invalid(format!(
                            "PRoBERTa layer {i}: hidden states run from 0 (embeddings) to {} (last layer)",
                            config.num_hidden_layers
                        )))
                    }
                    _ => {}
                }
                if self.pooling == EmbedPooling::ProbertaClustering && config.num_hidden_layers < 5 {
                    return Err(Error::invalid(format!(
                        "`proberta-clustering` sums hidden states 2–5, which needs at least 5 layers; this model has {}",
                        config.num_hidden_layers
                    )));
                }
                if config.max_tokens() < 3 {
                    return Err(Error::invalid("the model's positions leave no room for a piece between <s> and </s>"));
                }
                if let Some(stride) = o.stride {
                    let window = config.max_tokens() - 2;
                    if stride == 0 || stride > window {
                        return Err(Error::invalid(format!(
                            "window stride must be between 1 and the window's {window} pieces, got {stride}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// A layer given to a pooling that fixes its own would be ignored: an error. (With the default
    /// pooling this is checked by [`Self::embed`] only, since per-residue output reads the layer.)
    fn check_layer_use(&self) -> Result<()> {
        if let (Some(layer), false) = (self.options.layer, self.pooling.reads_layer()) {
            let chosen = if self.options.pooling.is_some() { "" } else { " (the model's default)" };
            return Err(Error::invalid(format!(
                "layer {layer} was given, but `{}` pooling{chosen} fixes its own layers; choose a pooling that \
                 reads a layer (mean, sum, cls, first128)",
                self.pooling.name()
            )));
        }
        Ok(())
    }

    /// `"proteinbert"` or `"proberta"`.
    pub fn kind(&self) -> &'static str {
        match self.model {
            Model::ProteinBert(_) => "proteinbert",
            Model::Proberta { .. } => "proberta",
        }
    }

    pub fn pooling(&self) -> EmbedPooling {
        self.pooling
    }

    pub fn layer(&self) -> LayerChoice {
        self.layer
    }

    pub fn options(&self) -> &EmbedOptions {
        &self.options
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The model directory this embedder was opened from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Whether PRoBERTa pieces come from the approximate dict-only encoder (no `tokenizer.json`).
    pub fn approximate_tokenizer(&self) -> bool {
        matches!(&self.model, Model::Proberta { tokenizer, .. } if !tokenizer.is_exact())
    }

    /// Width of the per-position states of the chosen layer (the per-residue output's width).
    pub fn residue_dim(&self) -> usize {
        match &self.model {
            Model::ProteinBert(m) => match self.layer {
                LayerChoice::All => m.config().local_hidden_size(),
                _ => m.config().d_local,
            },
            Model::Proberta { encoder, .. } => encoder.config().hidden_size,
        }
    }

    /// Width of one pooled vector.
    pub fn dim(&self) -> usize {
        match (self.pooling, &self.model) {
            (EmbedPooling::Global, Model::ProteinBert(m)) => m.config().global_hidden_size(),
            (EmbedPooling::First128, _) => FIRST_TOKENS * self.residue_dim(),
            _ => self.residue_dim(),
        }
    }

    /// The model's positions (PRoBERTa), `None` for ProteinBERT (any length).
    pub fn max_tokens(&self) -> Option<usize> {
        match &self.model {
            Model::ProteinBert(_) => None,
            Model::Proberta { encoder, .. } => Some(encoder.config().max_tokens()),
        }
    }

    /// One vector per record, in input order. `progress` is called with the number of proteins
    /// finished after every batch.
    pub fn embed<R: SequenceRecord>(&self, records: &[R], progress: &mut dyn FnMut(usize)) -> Result<EmbeddingMatrix> {
        self.check_layer_use()?;
        let started = std::time::Instant::now();
        let dim = self.dim();
        let mut values = vec![0f32; records.len() * dim];
        let pooling = self.pooling;
        let stats = self.run(records, false, progress, &mut |record, rows, n_rows| {
            let v = match rows {
                Finished::Vector(v) => v,
                Finished::Rows(rows) => pool_rows(pooling, &rows, n_rows, self.residue_dim()),
            };
            values[record * dim..(record + 1) * dim].copy_from_slice(&v);
            Ok(())
        })?;
        let ids = records.iter().map(|r| r.id().to_string()).collect();
        Ok(EmbeddingMatrix {
            ids,
            values,
            dim,
            stats: EmbedStats { seconds: started.elapsed().as_secs_f64(), ..stats },
        })
    }

    /// One `(rows, dim)` matrix per record, in input order (see [`ResidueEmbeddings`]). The pooling
    /// option is not used; the layer is.
    pub fn embed_residues<R: SequenceRecord>(
        &self,
        records: &[R],
        progress: &mut dyn FnMut(usize),
    ) -> Result<ResidueEmbeddings> {
        let started = std::time::Instant::now();
        if !self.pooling.reads_layer() && self.options.pooling.is_some() {
            return Err(Error::invalid(format!(
                "per-residue output reads one layer; `{}` pooling has no per-residue form",
                self.pooling.name()
            )));
        }
        let dim = self.residue_dim();
        let mut values = vec![Vec::new(); records.len()];
        let stats = self.run(records, true, progress, &mut |record, rows, n_rows| {
            let Finished::Rows(rows) = rows else { unreachable!("per-residue runs keep rows") };
            // Drop the first and last rows: START/END, or <s>/</s>.
            values[record] = rows[dim..(n_rows - 1) * dim].to_vec();
            Ok(())
        })?;
        let ids = records.iter().map(|r| r.id().to_string()).collect();
        Ok(ResidueEmbeddings {
            ids,
            values,
            dim,
            stats: EmbedStats { seconds: started.elapsed().as_secs_f64(), ..stats },
        })
    }

    /// Tokenizes every record into units, runs length-grouped batches, and hands each finished
    /// protein to `finish` (record index, rows or vector, row count) as soon as all its units ran.
    fn run<R: SequenceRecord>(
        &self,
        records: &[R],
        per_residue: bool,
        progress: &mut dyn FnMut(usize),
        finish: &mut dyn FnMut(usize, Finished, usize) -> Result<()>,
    ) -> Result<EmbedStats> {
        let mut stats = EmbedStats { proteins: records.len(), ..EmbedStats::default() };
        let (units, plan) = self.units(records, &mut stats)?;
        stats.inputs = units.len();
        stats.tokens = units.iter().map(|u| u.ids.len()).sum();
        let sequences: Vec<Vec<u32>> = units.iter().map(|u| u.ids.clone()).collect();
        let batches = batches(&units, self.options.batch_tokens);
        stats.batches = batches.len();
        let mut outputs: Vec<Option<UnitOutput>> = (0..units.len()).map(|_| None).collect();
        let mut remaining: Vec<usize> = plan.units.iter().map(Vec::len).collect();
        let vector_mode = !per_residue && !self.pooling.reads_layer();
        for batch_indices in &batches {
            let padding = match (&self.model, units[batch_indices[0]].fixed_len) {
                (Model::ProteinBert(_), Some(len)) => Padding::proteinbert(len),
                (Model::Proberta { .. }, Some(len)) => Padding::proberta_clustering(len),
                (_, None) => Padding::proberta_training(),
            };
            let batch = Batch::select(&sequences, batch_indices, padding, Overflow::Error, &self.device)?;
            stats.padded_tokens += batch.batch_size() * batch.padded_len();
            let results = self.forward(&batch, vector_mode)?;
            let mut finished = 0;
            for (unit_index, output) in batch_indices.iter().zip(results) {
                outputs[*unit_index] = Some(output);
                let record = units[*unit_index].record;
                remaining[record] -= 1;
                if remaining[record] == 0 {
                    let (rows, n_rows) = self.assemble(record, &plan, &units, &mut outputs)?;
                    finish(record, rows, n_rows)?;
                    finished += 1;
                }
            }
            progress(finished);
        }
        Ok(stats)
    }

    /// Model inputs for every record, and how to put them back together.
    fn units<R: SequenceRecord>(&self, records: &[R], stats: &mut EmbedStats) -> Result<(Vec<Unit>, Plan)> {
        let mut units = Vec::with_capacity(records.len());
        let mut plan = Plan { units: Vec::with_capacity(records.len()), window_pieces: vec![None; records.len()] };
        for (record, r) in records.iter().enumerate() {
            let first = units.len();
            match &self.model {
                Model::ProteinBert(_) => {
                    let ids = ResidueTokenizer.encode(r.sequence(), &mut stats.unknown);
                    let residues = ids.len() - residue::ADDED_TOKENS_PER_SEQ;
                    let len = self.options.seq_len.unwrap_or_else(|| bucket_seq_len(residues));
                    if ids.len() > len {
                        return Err(Error::invalid(format!(
                            "{} has {residues} residues: seq_len {len} holds at most {} (START and END take two); \
                             leave seq_len unset to pad each protein to its own reference bucket",
                            describe(r, record),
                            len - residue::ADDED_TOKENS_PER_SEQ
                        )));
                    }
                    units.push(Unit { record, ids, fixed_len: Some(len), offset: 0 });
                }
                Model::Proberta { encoder, tokenizer } => {
                    let max_tokens = encoder.config().max_tokens();
                    let window = max_tokens - 2;
                    let mut pieces = tokenizer.encode_pieces(r.sequence(), &mut stats.unknown)?;
                    let too_long = |n: usize, limit: usize, what: &str| {
                        Error::invalid(format!(
                            "{} has {} residues = {n} BPE pieces, more than the {limit} {what} the model's {max_tokens} \
                             positions hold; choose truncation or windows (`--long truncate` / `--long window`)",
                            describe(r, record),
                            r.sequence().chars().count()
                        ))
                    };
                    if self.pooling == EmbedPooling::ProbertaClustering {
                        // The reference clustering encoding: pieces + </s>, no <s>, filler id 0.
                        pieces.push(vocab::EOS);
                        if pieces.len() > max_tokens {
                            match self.options.long {
                                LongPolicy::Error => {
                                    return Err(too_long(pieces.len() - 1, max_tokens - 1, "pieces (+ </s>) that"))
                                }
                                LongPolicy::Truncate => {
                                    pieces.truncate(max_tokens);
                                    stats.truncated += 1;
                                }
                                LongPolicy::Window => {
                                    return Err(Error::invalid(format!(
                                        "{}: windows are not defined for `proberta-clustering` (the reference cuts \
                                         each protein to its first {max_tokens} tokens: choose truncation)",
                                        describe(r, record)
                                    )))
                                }
                            }
                        }
                        units.push(Unit { record, ids: pieces, fixed_len: Some(max_tokens), offset: 0 });
                    } else if pieces.len() <= window {
                        units.push(Unit { record, ids: with_specials(&pieces), fixed_len: None, offset: 0 });
                    } else {
                        match self.options.long {
                            LongPolicy::Error => return Err(too_long(pieces.len(), window, "pieces that")),
                            LongPolicy::Truncate => {
                                stats.truncated += 1;
                                units.push(Unit {
                                    record,
                                    ids: with_specials(&pieces[..window]),
                                    fixed_len: None,
                                    offset: 0,
                                });
                            }
                            LongPolicy::Window => {
                                stats.windowed += 1;
                                let stride = self.options.stride.unwrap_or((window / 2).max(1));
                                for start in window_starts(pieces.len(), window, stride) {
                                    units.push(Unit {
                                        record,
                                        ids: with_specials(&pieces[start..start + window]),
                                        fixed_len: None,
                                        offset: start,
                                    });
                                }
                                plan.window_pieces[record] = Some(pieces.len());
                            }
                        }
                    }
                }
            }
            plan.units.push((first..units.len()).collect());
        }
        Ok((units, plan))
    }

    /// One batch through the model: a finished vector or the real-token rows of every unit.
    fn forward(&self, batch: &Batch, vector_mode: bool) -> Result<Vec<UnitOutput>> {
        let rows_of = |states: &Tensor| -> Result<Vec<UnitOutput>> {
            let (b, l, d) = states.dims3()?;
            let flat = states.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
            Ok((0..b)
                .map(|i| {
                    let start = i * l * d;
                    UnitOutput::Rows(flat[start..start + batch.lengths[i] * d].to_vec())
                })
                .collect())
        };
        let vectors_of = |v: &Tensor| -> Result<Vec<UnitOutput>> {
            Ok(v.to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?
                .to_vec2::<f32>()?
                .into_iter()
                .map(UnitOutput::Vector)
                .collect())
        };
        match &self.model {
            Model::ProteinBert(model) => {
                let out = model.forward_without_annotations(&batch.ids, false)?;
                if vector_mode {
                    return vectors_of(&out.global_hidden()?);
                }
                let states = match self.layer {
                    LayerChoice::All => out.local_hidden()?,
                    LayerChoice::Last => out.local_states.last().expect("at least one block").clone(),
                    LayerChoice::Index(i) => out.local_states[i].clone(),
                };
                rows_of(&states)
            }
            Model::Proberta { encoder, .. } => {
                let out = encoder.forward(&batch.ids, proberta::Forward::default(), None)?;
                if vector_mode {
                    // Σ over hidden states 2–5 and over every position, the filler included.
                    let mut sum = out.hidden_states[CLUSTERING_LAYERS[0]].to_dtype(DType::F32)?;
                    for &i in &CLUSTERING_LAYERS[1..] {
                        sum = (sum + out.hidden_states[i].to_dtype(DType::F32)?)?;
                    }
                    return vectors_of(&sum.sum(1)?);
                }
                let layer = match self.layer {
                    LayerChoice::Index(i) => i,
                    _ => encoder.config().num_hidden_layers,
                };
                rows_of(&out.hidden_states[layer])
            }
        }
    }

    /// A finished protein from its units' outputs (taken out of `outputs`).
    fn assemble(
        &self,
        record: usize,
        plan: &Plan,
        units: &[Unit],
        outputs: &mut [Option<UnitOutput>],
    ) -> Result<(Finished, usize)> {
        let d = self.residue_dim();
        let mut take = |u: usize| outputs[u].take().expect("every unit of a finished protein ran");
        let unit_ids = &plan.units[record];
        match plan.window_pieces[record] {
            None => match take(unit_ids[0]) {
                UnitOutput::Vector(v) => Ok((Finished::Vector(v), 1)),
                UnitOutput::Rows(rows) => {
                    let n = rows.len() / d;
                    Ok((Finished::Rows(rows), n))
                }
            },
            Some(n_pieces) => {
                // Rows: <s>, every piece, </s>; each the mean over the windows that hold it.
                let n_rows = n_pieces + 2;
                let mut acc = vec![0f32; n_rows * d];
                let mut count = vec![0u32; n_rows];
                for &u in unit_ids {
                    let UnitOutput::Rows(rows) = take(u) else { unreachable!("windows keep rows") };
                    let k = rows.len() / d; // window pieces + 2
                    let offset = units[u].offset;
                    for j in 0..k {
                        let target = if j == 0 {
                            0
                        } else if j == k - 1 {
                            n_rows - 1
                        } else {
                            1 + offset + (j - 1)
                        };
                        for (a, v) in acc[target * d..(target + 1) * d].iter_mut().zip(&rows[j * d..(j + 1) * d]) {
                            *a += v;
                        }
                        count[target] += 1;
                    }
                }
                for (row, &c) in acc.chunks_mut(d).zip(&count) {
                    if c == 0 {
                        return Err(Error::invalid(format!("window assembly left a row of record {record} empty")));
                    }
                    row.iter_mut().for_each(|v| *v /= c as f32);
                }
                Ok((Finished::Rows(acc), n_rows))
            }
        }
    }
}

/// A finished protein.
enum Finished {
    Vector(Vec<f32>),
    Rows(Vec<f32>),
}

fn with_specials(pieces: &[u32]) -> Vec<u32> {
    let mut ids = Vec::with_capacity(pieces.len() + 2);
    ids.push(vocab::BOS);
    ids.extend_from_slice(pieces);
    ids.push(vocab::EOS);
    ids
}

/// Window starts over `n` pieces (`n > window`): every `stride` pieces, the last window ending on
/// the last piece.
pub fn window_starts(n: usize, window: usize, stride: usize) -> Vec<usize> {
    if n <= window {
        return vec![0];
    }
    let last = n - window;
    let mut starts = vec![0];
    while let Some(&s) = starts.last().filter(|&&s| s < last) {
        starts.push((s + stride.max(1)).min(last));
    }
    starts
}

/// Batches of unit indices: units grouped by fixed padded length (or all together), sorted by
/// length inside a group, cut greedily so rows × padded length stays within `budget` (a unit longer
/// than the budget runs alone).
fn batches(units: &[Unit], budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&i| (units[i].fixed_len.unwrap_or(0), units[i].ids.len()));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_key = None;
    let mut longest = 0;
    for i in order {
        let key = units[i].fixed_len;
        let len = key.unwrap_or(units[i].ids.len());
        let full = !current.is_empty() && (key != current_key || (current.len() + 1) * longest.max(len) > budget);
        if full {
            out.push(std::mem::take(&mut current));
            longest = 0;
        }
        current_key = key;
        longest = longest.max(len);
        current.push(i);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `rows (n_rows, d)` → one vector (every row is a real token).
fn pool_rows(pooling: EmbedPooling, rows: &[f32], n_rows: usize, d: usize) -> Vec<f32> {
    match pooling {
        EmbedPooling::Mean | EmbedPooling::Sum => {
            let mut acc = vec![0f32; d];
            for row in rows.chunks(d).take(n_rows) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            if pooling == EmbedPooling::Mean {
                acc.iter_mut().for_each(|a| *a /= n_rows.max(1) as f32);
            }
            acc
        }
        EmbedPooling::Cls => rows[..d].to_vec(),
        EmbedPooling::First128 => {
            let mut out = vec![0f32; FIRST_TOKENS * d];
            let k = n_rows.min(FIRST_TOKENS);
            out[..k * d].copy_from_slice(&rows[..k * d]);
            out
        }
        EmbedPooling::Global | EmbedPooling::ProbertaClustering => unreachable!("vector poolings come pooled"),
    }
}

// ---------------------------------------------------------------------------------------------------
// Files

/// Element type of a written matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
}

/// f16 values of `values`; a finite value that does not fit (|x| > 65,504) is an error naming the row.
fn to_f16(values: &[f32], dim: usize, row_name: &dyn Fn(usize) -> String) -> Result<Vec<half::f16>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let h = half::f16::from_f32(v);
            if v.is_finite() && !h.is_finite() {
                return Err(Error::invalid(format!(
                    "{}: value {v} at column {} does not fit f16 (|x| ≤ 65,504); write f32 instead",
                    row_name(i / dim.max(1)),
                    i % dim.max(1)
                )));
            }
            Ok(h)
        })
        .collect()
}

/// Writes to `path.partial` and renames, so a failed run leaves no half-written file under `path`.
fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut w = std::io::BufWriter::new(file);
    write(&mut w).and_then(|_| w.flush()).map_err(|e| Error::io(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The NPY v1.0 header of a C-order `(rows, cols)` matrix, padded so the data start on a multiple
/// of 64 bytes.
fn npy_header(descr: &str, rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut header = Vec::with_capacity(total);
    header.extend_from_slice(b"\x93NUMPY\x01\x00");
    header.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header.resize(total - 1, b' ');
    header.push(b'\n');
    header
}

impl EmbeddingMatrix {
    /// Writes the matrix as `.npy` (NPY 1.0, `'<f4'` or `'<f2'`, C order, shape `(n, dim)`).
    pub fn write_npy(&self, path: impl AsRef<Path>, precision: Precision) -> Result<()> {
        let path = path.as_ref();
        let (rows, dim) = (self.rows(), self.dim);
        match precision {
            Precision::F32 => write_atomic(path, |w| {
                w.write_all(&npy_header("<f4", rows, dim))?;
                for v in &self.values {
                    w.write_all(&v.to_le_bytes())?;
                }
                Ok(())
            }),
            Precision::F16 => {
                let half = to_f16(&self.values, dim, &|r| format!("record `{}`", self.ids[r]))?;
                write_atomic(path, |w| {
                    w.write_all(&npy_header("<f2", rows, dim))?;
                    for v in &half {
                        w.write_all(&v.to_le_bytes())?;
                    }
                    Ok(())
                })
            }
        }
    }
}

/// A matrix read back from `.npy`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyMatrix {
    pub shape: (usize, usize),
    pub precision: Precision,
    /// Widened to f32.
    pub values: Vec<f32>,
}

/// Reads a 2-D little-endian `'<f4'` or `'<f2'` C-order `.npy` file (what [`EmbeddingMatrix::write_npy`]
/// writes); anything else is an error naming the file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyMatrix> {
    let path = path.as_ref();
    let bad = |m: &str| Error::data(Location::file(path), format!("not a 2-D f32/f16 .npy file: {m}"));
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| Error::io(path, e))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no NPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(&format!("NPY version {v}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| bad("header runs past the end"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr").ok_or_else(|| bad("no descr"))?;
    let precision = if descr.starts_with("'<f4'") {
        Precision::F32
    } else if descr.starts_with("'<f2'") {
        Precision::F16
    } else {
        return Err(bad(&format!("dtype {}", descr.split(',').next().unwrap_or(descr))));
    };
    if !field("fortran_order").is_some_and(|f| f.starts_with("False")) {
        return Err(bad("not C order"));
    }
    let shape = field("shape").ok_or_else(|| bad("no shape"))?;
    let inner = shape.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or_else(|| bad("unreadable shape"))?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(&format!("shape entry `{s}`"))))
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else { return Err(bad(&format!("shape {dims:?} is not 2-D"))) };
    let data = &bytes[start + header_len..];
    let width = if precision == Precision::F32 { 4 } else { 2 };
    // Checked: a corrupt shape overflowed the product (a panic in debug builds, and in release a
    // wrapped size that an empty data block could match).
    let expected = rows.checked_mul(cols).and_then(|n| n.checked_mul(width));
    if expected != Some(data.len()) {
        return Err(bad(&format!("{} data bytes for shape ({rows}, {cols})", data.len())));
    }
    let values = match precision {
        Precision::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Precision::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
    };
    Ok(NpyMatrix { shape: (rows, cols), precision, values })
}

/// `FILE.ids.txt` beside `FILE.npy` / `FILE.safetensors`.
pub fn ids_path(out: impl AsRef<Path>) -> PathBuf {
    out.as_ref().with_extension("ids.txt")
}

/// One id per line, in row order.
pub fn write_ids(path: impl AsRef<Path>, ids: &[String]) -> Result<()> {
    let path = path.as_ref();
    if let Some(id) = ids.iter().find(|id| id.contains(['\n', '\r'])) {
        return Err(Error::invalid(format!("record id {id:?} contains a line break")));
    }
    write_atomic(path, |w| ids.iter().try_for_each(|id| writeln!(w, "{id}")))
}

impl ResidueEmbeddings {
    /// Writes one `(rows, dim)` tensor per record id (f32 or f16) into a `.safetensors` file, with
    /// `__metadata__` describing what the rows are. Duplicate ids are an error.
    pub fn write_safetensors(
        &self,
        path: impl AsRef<Path>,
        precision: Precision,
        metadata: HashMap<String, String>,
    ) -> Result<()> {
        let path = path.as_ref();
        check_unique_ids(&self.ids.iter().map(|id| (id.as_str(), "")).collect::<Vec<_>>(), None)?;
        let mut buffers: Vec<(String, Vec<u8>, [usize; 2])> = Vec::with_capacity(self.ids.len());
        for (i, id) in self.ids.iter().enumerate() {
            let rows = self.rows(i);
            let bytes: Vec<u8> = match precision {
                Precision::F32 => self.values[i].iter().flat_map(|v| v.to_le_bytes()).collect(),
                Precision::F16 => to_f16(&self.values[i], self.dim, &|r| format!("record `{id}` row {r}"))?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            };
            buffers.push((id.clone(), bytes, [rows, self.dim]));
        }
        let dtype = match precision {
            Precision::F32 => safetensors::Dtype::F32,
            Precision::F16 => safetensors::Dtype::F16,
        };
        let views = buffers
            .iter()
            .map(|(id, bytes, shape)| {
                safetensors::tensor::TensorView::new(dtype, shape.to_vec(), bytes)
                    .map(|v| (id.as_str(), v))
                    .map_err(|e| Error::invalid(format!("record `{id}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        safetensors::tensor::serialize_to_file(views, Some(metadata), &tmp)
            .map_err(|e| Error::invalid(format!("{}: cannot write safetensors: {e}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}

/// What a run wrote, for `__metadata__` and logs.
pub fn describe_run(embedder: &Embedder, per_residue: bool) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("model_kind".into(), embedder.kind().into());
    m.insert("model_dir".into(), embedder.source().display().to_string());
    m.insert("layer".into(), embedder.layer().to_string());
    if per_residue {
        let rows = match embedder.kind() {
            "proberta" => "BPE pieces (<s> and </s> dropped), not residues",
            _ => "residues (START and END dropped)",
        };
        m.insert("rows".into(), rows.into());
    } else {
        m.insert("pooling".into(), embedder.pooling().name().into());
    }
    if let Some(len) = embedder.options().seq_len {
        m.insert("seq_len".into(), len.to_string());
    }
    m.insert("padding_mask".into(), embedder.options().padding_mask.to_string());
    m.insert("long".into(), format!("{:?}", embedder.options().long).to_lowercase());
    m.insert("dtype".into(), embedder.options().dtype.as_str().into());
    m
}
