//! `protein-lm embed`: parses options, calls [`protein_lm::embed`], writes the files.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use protein_lm::device::{parse_dtype, DeviceChoice};
use protein_lm::embed::{self, EmbedOptions, EmbedPooling, Embedder, LayerChoice, LongPolicy, Precision};
use protein_lm::output::check_output_file;

#[derive(Args)]
#[command(after_long_help = "\
Poolings (--pooling):
  global               ProteinBERT (default): the reference's 15,599-wide per-protein concatenation
                       (global input layer, every global LayerNorm output, GO probabilities).
  mean, sum            Mean / sum over the real tokens of --layer (START/<s> and END/</s> included,
                       padding excluded). PRoBERTa default: mean.
  cls                  The first position (START / <s>) of --layer.
  first128             The PRoBERTa paper's Figure 2 vector: the first 128 token positions of --layer
                       (position 0 = <s> / START) concatenated, 128 × d wide, zeros after a short protein.
  proberta-clustering  The reference clustering vector: pieces + </s> (no <s>) filled with id 0 to the
                       model's 512 positions, hidden states 2+3+4+5 summed over all 512 positions.

Layers (--layer): PRoBERTa: 0 = embedding output … num_layers = last layer. ProteinBERT: the i-th of the
2 × n_blocks local LayerNorm outputs (2b, 2b+1 = block b's first and second), or `all` = the reference's
1,562-wide per-residue concatenation. Default: last.

ProteinBERT pads as the reference (START + residues + END, then PAD) with no mask, so its outputs depend
on the padded length: by default each protein is padded to the smallest of 512, 1,024, 2,048, … that fits.

PRoBERTa proteins with more than 510 pieces (--long): `auto` (the default) is `window`, or `truncate` with
proberta-clustering, and the summary counts the proteins it windowed or cut; `error` names the record;
`truncate` keeps <s>, the
first 510 pieces and </s>; `window` runs windows of 510 pieces every --stride pieces (the last one ending on
the last piece), averages each piece's vectors over the windows holding it (<s> and </s> rows: over all
windows), then pools. With proberta-clustering, `truncate` is the reference's own cut (the first 512 tokens
of pieces + </s>, so </s> is lost) and windows are not defined.

--per-residue writes one (rows, d) tensor per record id into a .safetensors file: ProteinBERT rows are
residues (START/END dropped); PRoBERTa rows are BPE pieces (<s>/</s> dropped), not residues.

Examples:
  protein-lm embed --model runs/proteinbert --fasta proteins.fasta --out emb.npy
  protein-lm embed --model runs/proberta --fasta proteins.fasta --out emb.npy --pooling mean --long window
  protein-lm embed --model runs/proberta --fasta proteins.fasta --out res.safetensors --per-residue --layer 3")]
pub struct EmbedArgs {
    /// Model directory (config.json + model.safetensors; PRoBERTa also dict.txt, tokenizer.json if known).
    #[arg(long)]
    model: PathBuf,
    /// Proteins: FASTA (plain or .gz), or any table `data stats` reads (Swiss-Prot GO, Pfam, id<TAB>sequence).
    #[arg(long, visible_alias = "input")]
    fasta: PathBuf,
    /// Output: FILE.npy (one row per record, in input order), or FILE.safetensors with --per-residue.
    /// FILE.ids.txt (one record id per line) is written beside it.
    #[arg(long)]
    out: PathBuf,
    /// mean, sum, cls, global, proberta-clustering or first128 (default: global for ProteinBERT, mean for PRoBERTa).
    #[arg(long)]
    pooling: Option<String>,
    /// Hidden state to read: an index, `last` or (ProteinBERT) `all`. Default: last.
    #[arg(long)]
    layer: Option<String>,
    /// ProteinBERT: pad every protein to this length (default: the reference bucket 512, 1,024, … that fits).
    #[arg(long)]
    seq_len: Option<usize>,
    /// ProteinBERT: switch on the model's padding mask (outputs no longer depend on the padded length).
    #[arg(long)]
    padding_mask: bool,
    /// One (rows, d) tensor per record into a .safetensors --out instead of one pooled row per record.
    #[arg(long)]
    per_residue: bool,
    /// Write half-precision floats ('<f2' / F16) instead of f32.
    #[arg(long)]
    f16: bool,
    /// PRoBERTa proteins longer than the model's positions (510 pieces + <s> + </s>): `auto`, `error`,
    /// `truncate` (keep the first 510 pieces) or `window` (overlapping windows, vectors averaged where they
    /// overlap). Default: auto (window; truncate with proberta-clustering).
    #[arg(long)]
    long: Option<String>,
    /// Pieces between window starts for --long window (default: half a window).
    #[arg(long)]
    stride: Option<usize>,
    /// Padded tokens per batch (rows × padded length); a longer protein runs alone.
    #[arg(long, default_value_t = embed::DEFAULT_BATCH_TOKENS)]
    batch_tokens: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Model dtype: f32, f16 or bf16 (pooling is always done in f32).
    #[arg(long, default_value = "f32")]
    dtype: String,
}

pub fn run(a: EmbedArgs) -> anyhow::Result<()> {
    let extension = a.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    match (a.per_residue, extension) {
        (false, "npy") | (true, "safetensors") => {}
        (false, _) => bail!("--out {}: pooled output is written as .npy", a.out.display()),
        (true, _) => bail!("--out {}: --per-residue output is written as .safetensors", a.out.display()),
    }
    // Checked before anything is computed: an unwritable --out found after the embedding would waste it.
    // A device or pipe would take an .npy written in place, but half of a run's output (the ids file
    // beside it) cannot follow it there.
    if a.out.exists() && !a.out.is_file() && !a.out.is_dir() {
        bail!("--out {}: not a regular file (a device or pipe)", a.out.display());
    }
    check_output_file(&a.out)?;
    check_output_file(&embed::ids_path(&a.out))?;
    let mut checks = protein_lm::config::Checks::new("embed");
    checks.at_least("--batch-tokens", a.batch_tokens, 1);
    if let Some(n) = a.seq_len {
        checks.at_least("--seq-len", n, 3);
    }
    if let Some(n) = a.stride {
        checks.at_least("--stride", n, 1);
    }
    checks.finish()?;
    let long: LongPolicy = a.long.as_deref().map(str::parse).transpose()?.unwrap_or_default();
    if a.stride.is_some() && !matches!(long, LongPolicy::Window | LongPolicy::Auto) {
        bail!("--stride only applies to --long window (or auto)");
    }
    let options = EmbedOptions {
        pooling: a.pooling.as_deref().map(str::parse::<EmbedPooling>).transpose()?,
        layer: a.layer.as_deref().map(str::parse::<LayerChoice>).transpose()?,
        seq_len: a.seq_len,
        padding_mask: a.padding_mask,
        long,
        stride: a.stride,
        max_tokens: None,
        batch_tokens: a.batch_tokens,
        device: a.device.parse::<DeviceChoice>()?,
        dtype: parse_dtype(&a.dtype)?,
    };
    let (records, uppercased) = embed::read_records_counted(&a.fasta)?;
    if uppercased > 0 {
        eprintln!("note: {}: {uppercased} sequences had lowercase letters, read as upper case", a.fasta.display());
    }
    if records.is_empty() {
        bail!("{}: no proteins", a.fasta.display());
    }
    let embedder = Embedder::new(&a.model, options).with_context(|| format!("model {}", a.model.display()))?;
    if embedder.kind() == "proteinbert" && a.long.is_some() {
        bail!("--long applies to PRoBERTa only: ProteinBERT takes proteins of any length");
    }
    if embedder.approximate_tokenizer() {
        eprintln!(
            "note: {} has no tokenizer.json; pieces come from the approximate merge-free encoder over dict.txt",
            a.model.display()
        );
    }
    let precision = if a.f16 { Precision::F16 } else { Precision::F32 };
    let bar = super::progress_bar(records.len() as u64, "embedding");
    let mut progress = |n: usize| bar.inc(n as u64);
    let (stats, dim) = if a.per_residue {
        let out = embedder.embed_residues(&records, &mut progress)?;
        bar.finish_and_clear();
        out.write_safetensors(&a.out, precision, embed::describe_run(&embedder, true))?;
        embed::write_ids(embed::ids_path(&a.out), &out.ids)?;
        (out.stats, out.dim)
    } else {
        let out = embedder.embed(&records, &mut progress)?;
        bar.finish_and_clear();
        out.write_npy(&a.out, precision)?;
        embed::write_ids(embed::ids_path(&a.out), &out.ids)?;
        (out.stats, out.dim)
    };
    let what = if a.per_residue {
        format!("per-residue, layer {}", embedder.layer())
    } else if embedder.pooling().reads_layer() {
        format!("{} pooling, layer {}", embedder.pooling().name(), embedder.layer())
    } else {
        format!("{} pooling", embedder.pooling().name())
    };
    let secs = stats.seconds.max(1e-9);
    eprintln!(
        "embedded {} proteins with {} ({what}, d = {dim}) on {:?} in {:.1}s: {:.1} proteins/s, {:.0} tokens/s \
         ({} tokens, {} with padding, {} batches) → {} and {}",
        stats.proteins,
        embedder.kind(),
        embedder.device().location(),
        stats.seconds,
        stats.proteins as f64 / secs,
        stats.tokens as f64 / secs,
        stats.tokens,
        stats.padded_tokens,
        stats.batches,
        a.out.display(),
        embed::ids_path(&a.out).display()
    );
    if stats.windowed > 0 {
        eprintln!("{} proteins longer than the model's positions were embedded in {} windows", stats.windowed, {
            stats.inputs - (stats.proteins - stats.windowed)
        });
    }
    if stats.truncated > 0 {
        eprintln!(
            "{} proteins longer than the model's positions were truncated to their first pieces",
            stats.truncated
        );
    }
    if stats.unknown.total() > 0 {
        eprintln!("{} characters mapped to the unknown token: {:?}", stats.unknown.total(), stats.unknown.by_char);
    }
    Ok(())
}
