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
//! `<s>` + `</s>`) follows [`LongPolicy`]: by default overlapping windows whose per-position
//! vectors are averaged where they overlap (for `proberta-clustering`, the reference's cut), or an
//! error, or the first pieces.
//!
//! PRoBERTa's per-residue rows are BPE pieces (several residues each), not residues.

use std::collections::HashMap;
use std::io::Read;
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

mod embedder;
mod pooling;
mod windows;
mod writers;

pub use embedder::Embedder;
pub use windows::window_starts;
pub use writers::{describe_run, ids_path, read_npy, write_ids, NpyMatrix, Precision};

/// Default token budget of one batch (padded tokens: rows × padded length).
pub const DEFAULT_BATCH_TOKENS: usize = 16_384;
/// Token positions the `first128` pooling concatenates.
pub const FIRST_TOKENS: usize = 128;
/// Hidden states the reference clustering script sums (index 0 = embedding output).
pub const CLUSTERING_LAYERS: [usize; 4] = [2, 3, 4, 5];

/// How one protein becomes one vector (see the module docs for each).
///
/// ```
/// use protein_lm::embed::EmbedPooling;
/// let pooling: EmbedPooling = "proberta_clustering".parse()?;
/// assert_eq!(pooling, EmbedPooling::ProbertaClustering);
/// assert_eq!(pooling.name(), "proberta-clustering");
/// // The clustering vector fixes its own layers; `mean` reads the chosen one.
/// assert!(!pooling.reads_layer() && EmbedPooling::Mean.reads_layer());
/// # Ok::<(), protein_lm::Error>(())
/// ```
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
///
/// ```
/// use protein_lm::embed::LayerChoice;
/// assert_eq!("3".parse::<LayerChoice>()?, LayerChoice::Index(3));
/// assert_eq!("last".parse::<LayerChoice>()?, LayerChoice::default());
/// assert_eq!(LayerChoice::All.to_string(), "all");
/// # Ok::<(), protein_lm::Error>(())
/// ```
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
///
/// ```
/// use protein_lm::embed::{EmbedPooling, LongPolicy};
/// // Auto windows long proteins, except for the clustering vector, which cuts them as the reference did.
/// assert_eq!(LongPolicy::Auto.resolve(EmbedPooling::Mean), LongPolicy::Window);
/// assert_eq!(LongPolicy::Auto.resolve(EmbedPooling::ProbertaClustering), LongPolicy::Truncate);
/// assert_eq!("error".parse::<LongPolicy>()?.resolve(EmbedPooling::Mean), LongPolicy::Error);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongPolicy {
    /// [`Window`](Self::Window), or for `proberta-clustering` (which defines no windows) the
    /// reference's own cut, [`Truncate`](Self::Truncate): ordinary Swiss-Prot input, where about one
    /// protein in forty is longer than 510 pieces, embeds without an option. The run's stats count
    /// the windowed and truncated proteins.
    #[default]
    Auto,
    /// An error naming the record and its length.
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

impl LongPolicy {
    /// The policy [`Auto`](Self::Auto) stands for with `pooling`; any other is itself.
    pub fn resolve(self, pooling: EmbedPooling) -> LongPolicy {
        match (self, pooling) {
            (LongPolicy::Auto, EmbedPooling::ProbertaClustering) => LongPolicy::Truncate,
            (LongPolicy::Auto, _) => LongPolicy::Window,
            (policy, _) => policy,
        }
    }
}

impl FromStr for LongPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(LongPolicy::Auto),
            "error" => Ok(LongPolicy::Error),
            "truncate" => Ok(LongPolicy::Truncate),
            "window" => Ok(LongPolicy::Window),
            _ => Err(Error::invalid(format!("long-protein policy `{s}`: expected auto, error, truncate or window"))),
        }
    }
}

/// Everything an [`Embedder`] can be asked for.
///
/// ```
/// use protein_lm::device::DeviceChoice;
/// use protein_lm::embed::{EmbedOptions, EmbedPooling, LayerChoice, LongPolicy};
/// // The paper's Figure 2 vector from the sixth hidden state, long proteins cut rather than windowed.
/// let options = EmbedOptions {
///     pooling: Some(EmbedPooling::First128),
///     layer: Some(LayerChoice::Index(6)),
///     long: LongPolicy::Truncate,
///     device: DeviceChoice::Cpu,
///     ..EmbedOptions::default()
/// };
/// // Saved beside the embeddings, so a run says how it was made.
/// let json = serde_json::to_string(&options).unwrap();
/// assert!(json.contains(r#""pooling":"first128""#) && json.contains(r#""dtype":"f32""#), "{json}");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedOptions {
    /// `None`: the model's default (ProteinBERT `global`, PRoBERTa `mean`).
    pub pooling: Option<EmbedPooling>,
    /// `None`: [`LayerChoice::Last`]. Giving a layer to a pooling that fixes its own is an error.
    pub layer: Option<LayerChoice>,
    /// ProteinBERT: one padded length for every protein; `None` = [`bucket_seq_len`] per protein.
    /// PRoBERTa `proberta-clustering`: the length every protein is filled (or cut) to; `None` =
    /// the model's positions (512, the reference).
    pub seq_len: Option<usize>,
    /// ProteinBERT: switch on the model's padding mask.
    pub padding_mask: bool,
    /// PRoBERTa: proteins longer than the model's positions.
    pub long: LongPolicy,
    /// PRoBERTa windows: pieces between window starts; `None` = half a window.
    pub stride: Option<usize>,
    /// PRoBERTa: at most this many tokens per model input (`<s>` and `</s>` included) instead of the
    /// model's positions, e.g. the length it was trained on (a model pretrained on inputs of 128
    /// tokens never trained its later position embeddings). `long` then applies at this length.
    /// `None`: the model's positions. Between 3 and the model's positions.
    #[serde(default)]
    pub max_tokens: Option<usize>,
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
            long: LongPolicy::Auto,
            stride: None,
            max_tokens: None,
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
///
/// ```
/// use protein_lm::embed::read_records;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("query.fasta");
/// std::fs::write(&path, ">P1\nMKV\n>P2\nACDE\n")?;
/// let records = read_records(&path)?;
/// // FASTA records know their header line, for error messages about them.
/// assert_eq!((records[1].id.as_str(), records[1].line), ("P2", Some(3)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    Ok(read_records_counted(path)?.0)
}

/// [`read_records`], and how many records had lower-case letters (read as upper case).
pub fn read_records_counted(path: impl AsRef<Path>) -> Result<(Vec<Record>, usize)> {
    let path = path.as_ref();
    let (records, uppercased): (Vec<Record>, usize) = match crate::data::sniff_format(path)? {
        crate::data::ProteinFileFormat::Fasta => {
            let mut reader = crate::data::fasta::FastaReader::open(path)?;
            let records = reader
                .by_ref()
                .map(|r| r.map(|r| Record { id: r.id, sequence: r.sequence, line: Some(r.line) }))
                .collect::<Result<Vec<_>>>()?;
            (records, reader.uppercased())
        }
        _ => {
            let (proteins, report) = crate::data::read_proteins(path)?;
            let records = proteins.into_iter().map(|p| Record { id: p.id, sequence: p.sequence, line: None }).collect();
            (records, report.uppercased)
        }
    };
    check_unique_ids(&records, Some(path))?;
    Ok((records, uppercased))
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
