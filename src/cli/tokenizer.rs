use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use protein_lm::config::Checks;
use protein_lm::data::read_proteins;
use protein_lm::output::{check_output_file, prepare_output_dir, write_file_atomic};
use protein_lm::tokenize::{
    BpeOptions, PairTruncation, ProbertaTokenizer, ResidueTokenizer, SingleTruncation, UnknownCounts,
};

#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Train PRoBERTa's BPE (SentencePiece options of the reference) and save tokenizer.json + dict.txt.
    ///
    /// Example: protein-lm tokenizer train --input ../shared/datasets/swissprot-2014-go/swissprot_201401_go_sample50k.tsv.gz --out runs/bpe
    Train(TrainArgs),
    /// Encode proteins and print one line per protein: id, then pieces or ids.
    ///
    /// Example: protein-lm tokenizer encode --tokenizer runs/bpe --input proteins.fasta --pieces
    Encode(EncodeArgs),
}

#[derive(Args)]
pub struct TrainArgs {
    /// Proteins to train on: FASTA (plain or .gz), the Swiss-Prot GO table, or a human Pfam table.
    #[arg(long)]
    input: PathBuf,
    /// Output directory for tokenizer.json, dict.txt and training_report.json.
    #[arg(long)]
    out: PathBuf,
    /// SentencePiece vocab_size (counts 3 specials; 10,000 → 9,997 pieces → 10,009 fairseq ids).
    #[arg(long, default_value_t = 10_000)]
    vocab_size: usize,
    /// Longest piece, in characters (SentencePiece default 16).
    #[arg(long, default_value_t = 16)]
    max_piece_length: usize,
    /// Train only on sequences shorter than this (reference: < 1,024 residues).
    #[arg(long, default_value_t = 1024)]
    max_train_length: usize,
    /// Use only the first N proteins of the input.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    /// PRoBERTa BPE (needs --tokenizer).
    Proberta,
    /// ProteinBERT residues (26 ids).
    Proteinbert,
}

#[derive(Args)]
pub struct EncodeArgs {
    /// Proteins to encode (any format `tokenizer train` reads).
    #[arg(long)]
    input: PathBuf,
    #[arg(long, value_enum, default_value_t = Which::Proberta)]
    model: Which,
    /// Directory with tokenizer.json and/or dict.txt (dict.txt alone: approximate merge-free encoding).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print piece strings instead of ids.
    #[arg(long)]
    pieces: bool,
    /// Encode consecutive proteins as pairs `<s> A </s> </s> B </s>`.
    #[arg(long)]
    pairs: bool,
    /// PRoBERTa truncation: `paper` (each protein ≤ 254 pieces in a pair; `<s>`…`</s>` within 512 for
    /// one protein), `reference` (cut the whole input to 512 tokens) or `none`.
    #[arg(long, default_value = "paper")]
    truncation: String,
    /// Output file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(command: TokenizerCommand) -> anyhow::Result<()> {
    match command {
        TokenizerCommand::Train(a) => train(a),
        TokenizerCommand::Encode(a) => encode(a),
    }
}

fn train(a: TrainArgs) -> anyhow::Result<()> {
    let mut checks = Checks::new("tokenizer train");
    checks.at_least("--vocab-size", a.vocab_size, 4);
    checks.at_least("--max-piece-length", a.max_piece_length, 1);
    checks.at_least("--max-train-length", a.max_train_length, 2);
    if let Some(n) = a.limit {
        checks.at_least("--limit", n, 1);
    }
    checks.finish()?;
    prepare_output_dir(&a.out)?;
    let (mut proteins, report) = read_proteins(&a.input)?;
    if let Some(n) = a.limit {
        proteins.truncate(n);
    }
    eprintln!("read {} proteins from {} ({report})", proteins.len(), a.input.display());
    let options = BpeOptions {
        vocab_size: a.vocab_size,
        max_piece_length: a.max_piece_length,
        max_train_length: a.max_train_length,
    };
    let bar = super::spinner("training BPE");
    let started = std::time::Instant::now();
    let (tokenizer, report) = ProbertaTokenizer::train(proteins.iter().map(|p| p.sequence.as_str()), &options)?;
    bar.finish_and_clear();
    tokenizer.save(&a.out)?;
    // How well the merge-free encoder (the only way to use the original dict.txt) reproduces this BPE.
    let probe: Vec<&str> =
        proteins.iter().map(|p| p.sequence.as_str()).filter(|s| s.len() < a.max_train_length).take(2000).collect();
    let (identical, boundaries) = tokenizer.agreement(probe.iter().copied())?;
    let summary = serde_json::json!({
        "input": a.input.display().to_string(),
        "options": options,
        "report": report,
        "fairseq_ids": tokenizer.dictionary.len(),
        "seconds": started.elapsed().as_secs_f64(),
        "dict_only_approximation": {"proteins": probe.len(), "identical_segmentation": identical, "shared_piece_boundaries": boundaries},
    });
    write_file_atomic(&a.out.join("training_report.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    eprintln!(
        "trained on {} sequences ({} skipped: ≥ {} residues) in {:.1}s: {} pieces, {} fairseq ids, {:.3} residues per piece → {}",
        report.sequences_used,
        report.skipped_too_long,
        a.max_train_length,
        started.elapsed().as_secs_f64(),
        report.pieces,
        tokenizer.dictionary.len(),
        report.residues_per_piece,
        a.out.display()
    );
    eprintln!(
        "merge-free encoding over this dict.txt (as used for the original PRoBERTa dict) reproduces {:.1} % of {} proteins exactly and {:.2} % of piece boundaries",
        100.0 * identical,
        probe.len(),
        100.0 * boundaries
    );
    Ok(())
}

fn encode(a: EncodeArgs) -> anyhow::Result<()> {
    if let Some(p) = &a.out {
        check_output_file(p)?;
    }
    let (proteins, report) = read_proteins(&a.input)?;
    if report.uppercased > 0 {
        eprintln!(
            "note: {}: {} sequences had lowercase letters, read as upper case",
            a.input.display(),
            report.uppercased
        );
    }
    // With --out the encodings are collected and written whole (or not at all) at the end.
    let mut collected = Vec::new();
    let mut out: Box<dyn Write + '_> = match &a.out {
        Some(_) => Box::new(&mut collected),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut unknown = UnknownCounts::default();
    // A bar only when the encodings go to a file: on stdout it would interleave with them.
    let bar = if a.out.is_some() {
        super::progress_bar(proteins.len() as u64, "encoding")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let join = |ids: &[u32]| ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" ");
    match a.model {
        Which::Proteinbert => {
            if a.pairs {
                bail!("ProteinBERT has no pair encoding");
            }
            for p in &proteins {
                let ids = ResidueTokenizer.encode(&p.sequence, &mut unknown);
                bar.inc(1);
                let text = if a.pieces {
                    ids.iter().map(|&i| ResidueTokenizer::token(i)).collect::<Vec<_>>().join(" ")
                } else {
                    join(&ids)
                };
                writeln!(out, "{}\t{text}", p.id)?;
            }
        }
        Which::Proberta => {
            let dir = a.tokenizer.context("--tokenizer DIR is required for PRoBERTa (a directory from `tokenizer train`, or one holding the original dict.txt)")?;
            let tok = ProbertaTokenizer::load(&dir)?;
            if !tok.is_exact() {
                eprintln!(
                    "note: {} has no tokenizer.json; encoding with the approximate merge-free encoder over dict.txt",
                    dir.display()
                );
            }
            let (single, pair) = match a.truncation.as_str() {
                "paper" => (SingleTruncation::default(), PairTruncation::default()),
                "reference" => {
                    (SingleTruncation::CutInput { max_len: 512 }, PairTruncation::WholeInput { max_len: 512 })
                }
                "none" => (SingleTruncation::None, PairTruncation::None),
                other => bail!("--truncation must be `paper`, `reference` or `none`, not `{other}`"),
            };
            let render = |ids: &[u32]| -> String {
                if a.pieces {
                    ids.iter().map(|&i| tok.dictionary.symbol(i).unwrap_or("?")).collect::<Vec<_>>().join(" ")
                } else {
                    join(ids)
                }
            };
            if a.pairs {
                if proteins.len() % 2 != 0 {
                    bail!("--pairs needs an even number of proteins, {} has {}", a.input.display(), proteins.len());
                }
                for pq in proteins.chunks(2) {
                    bar.inc(2);
                    let ids = tok.encode_pair(&pq[0].sequence, &pq[1].sequence, pair, &mut unknown)?;
                    writeln!(out, "{}+{}\t{}", pq[0].id, pq[1].id, render(&ids))?;
                }
            } else {
                for p in &proteins {
                    bar.inc(1);
                    let ids = tok.encode_single(&p.sequence, single, &mut unknown)?;
                    writeln!(out, "{}\t{}", p.id, render(&ids))?;
                }
            }
        }
    }
    out.flush()?;
    drop(out);
    if let Some(p) = &a.out {
        write_file_atomic(p, &collected)?;
    }
    bar.finish_and_clear();
    if unknown.total() > 0 {
        eprintln!("{} characters mapped to the unknown token: {:?}", unknown.total(), unknown.by_char);
    }
    Ok(())
}
