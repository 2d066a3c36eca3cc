//! The embedding run: records → model inputs (units) → length-grouped batches → pooled vectors or
//! per-residue rows, reassembled in input order.

use super::pooling::pool_rows;
use super::windows::with_specials;
use super::*;

enum Model {
    ProteinBert(proteinbert::ProteinBert),
    Proberta { encoder: proberta::Encoder, tokenizer: ProbertaTokenizer },
}

/// A loaded model with the choices of one embedding run.
///
/// ```
/// use protein_lm::device::DeviceChoice;
/// use protein_lm::embed::{EmbedOptions, EmbedPooling, Embedder};
/// use protein_lm::models::directory::{init_random, ModelConfig};
/// use protein_lm::models::proteinbert::Config;
/// let dir = tempfile::tempdir()?;
/// // A seeded random tiny ProteinBERT stands in for a pretrained model directory.
/// init_random(dir.path(), ModelConfig::Proteinbert(Config::tiny(8)), 0, None)?;
/// let options = EmbedOptions { pooling: Some(EmbedPooling::Mean), device: DeviceChoice::Cpu, ..EmbedOptions::default() };
/// let embedder = Embedder::new(dir.path(), options)?;
/// let matrix = embedder.embed(&[("P1", "MKTAYIAKQR"), ("P2", "ACDEFGHIK")], &mut |_| {})?;
/// // The mean of the last local track: d_local (16) per protein, in input order.
/// assert_eq!((matrix.rows(), matrix.dim, embedder.dim()), (2, 16, 16));
/// assert_eq!(matrix.ids, ["P1", "P2"]);
/// let residues = embedder.embed_residues(&[("P1", "MKTAYIAKQR")], &mut |_| {})?;
/// assert_eq!(residues.rows(0), 10); // one row per residue, START and END dropped
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
        crate::device::flush_denormals_to_zero();
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
                match o.seq_len {
                    Some(len) if self.pooling == EmbedPooling::ProbertaClustering => {
                        if len < 2 || len > config.max_tokens() {
                            return Err(Error::invalid(format!(
                                "seq_len {len}: the `proberta-clustering` length must be 2 to the model's {} positions",
                                config.max_tokens()
                            )));
                        }
                    }
                    Some(_) => {
                        return Err(Error::invalid(
                            "seq_len is a ProteinBERT option (and the filled length of `proberta-clustering`); \
                             PRoBERTa pads each batch to its longest protein, with a mask",
                        ))
                    }
                    None => {}
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
                if let Some(m) = o.max_tokens {
                    if m < 3 || m > config.max_tokens() {
                        return Err(Error::invalid(format!(
                            "max_tokens {m}: must be between 3 (<s>, a piece, </s>) and the model's {} positions",
                            config.max_tokens()
                        )));
                    }
                }
                if let Some(stride) = o.stride {
                    let window = self.max_tokens().unwrap_or(config.max_tokens()) - 2;
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

    /// Tokens per PRoBERTa input: the model's positions, or [`EmbedOptions::max_tokens`] when
    /// given; `None` for ProteinBERT (any length).
    pub fn max_tokens(&self) -> Option<usize> {
        match &self.model {
            Model::ProteinBert(_) => None,
            Model::Proberta { encoder, .. } => {
                let model = encoder.config().max_tokens();
                Some(self.options.max_tokens.map_or(model, |m| m.min(model)))
            }
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
        // PRoBERTa's attention holds rows × heads × L² scores (several copies through the softmax):
        // at 32 rows of 512 that is 0.4 GB a copy for 12 heads, which a token budget alone allows.
        let attention_budget = matches!(self.model, Model::Proberta { .. }).then_some(ATTENTION_BUDGET);
        let batches = batches(&units, self.options.batch_tokens, attention_budget);
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
                Model::Proberta { tokenizer, .. } => {
                    let max_tokens = self.max_tokens().expect("a PRoBERTa model has positions");
                    let window = max_tokens - 2;
                    // The clustering vector fills every protein to one length: the reference's 512,
                    // or `seq_len` for a model pretrained on shorter inputs (its later positions
                    // were never trained).
                    let clustering_len = self.options.seq_len.unwrap_or(max_tokens);
                    let mut pieces = tokenizer.encode_pieces(r.sequence(), &mut stats.unknown)?;
                    let too_long = |n: usize, limit: usize, what: &str| {
                        Error::invalid(format!(
                            "{} has {} residues = {n} BPE pieces, more than the {limit} {what} the model's {max_tokens} \
                             positions hold; choose truncation or windows (`--long truncate` / `--long window`)",
                            describe(r, record),
                            r.sequence().chars().count()
                        ))
                    };
                    let long = self.options.long.resolve(self.pooling);
                    if self.pooling == EmbedPooling::ProbertaClustering {
                        // The reference clustering encoding: pieces + </s>, no <s>, filler id 0.
                        pieces.push(vocab::EOS);
                        let max_tokens = clustering_len;
                        if pieces.len() > max_tokens {
                            match long {
                                LongPolicy::Error => {
                                    return Err(too_long(pieces.len() - 1, max_tokens - 1, "pieces (+ </s>) that"))
                                }
                                LongPolicy::Truncate | LongPolicy::Auto => {
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
                        match long {
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
                            LongPolicy::Window | LongPolicy::Auto => {
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
                    return vectors_of(&crate::models::ops::sum_over_positions(&sum, None)?);
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

/// Rows × padded length² a PRoBERTa batch may hold: 8 rows of 512 tokens, 128 of 128 (where the
/// token budget binds first); about 100 MB per copy of 12 heads' attention scores.
const ATTENTION_BUDGET: usize = 8 * 512 * 512;

/// Batches of unit indices: units grouped by fixed padded length (or all together), sorted by
/// length inside a group, cut greedily so rows × padded length stays within `budget` and, for PRoBERTa,
/// rows × padded length² within `attention_budget` (a unit longer than the budget runs alone).
fn batches(units: &[Unit], budget: usize, attention_budget: Option<usize>) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&i| (units[i].fixed_len.unwrap_or(0), units[i].ids.len()));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_key = None;
    let mut longest = 0;
    for i in order {
        let key = units[i].fixed_len;
        let len = key.unwrap_or(units[i].ids.len());
        let padded = longest.max(len);
        let over_attention = attention_budget.is_some_and(|a| (current.len() + 1) * padded * padded > a);
        let full =
            !current.is_empty() && (key != current_key || (current.len() + 1) * padded > budget || over_attention);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn units(lengths: &[usize]) -> Vec<Unit> {
        lengths
            .iter()
            .enumerate()
            .map(|(record, &n)| Unit { record, ids: vec![4; n], fixed_len: None, offset: 0 })
            .collect()
    }

    #[test]
    fn the_attention_budget_caps_rows_of_long_inputs_only() {
        let long = units(&[512; 40]);
        let sizes = |b: Vec<Vec<usize>>| b.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&long, 16_384, None)), [32, 8]);
        assert_eq!(sizes(batches(&long, 16_384, Some(ATTENTION_BUDGET))), [8; 5]);
        // Short inputs: the token budget binds first, the attention budget changes nothing.
        let short = units(&[100; 300]);
        assert_eq!(batches(&short, 16_384, None), batches(&short, 16_384, Some(ATTENTION_BUDGET)));
        // Every unit is in exactly one batch.
        let mut all: Vec<usize> = batches(&long, 16_384, Some(ATTENTION_BUDGET)).concat();
        all.sort_unstable();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
    }
}
