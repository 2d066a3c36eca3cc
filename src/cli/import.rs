//! `protein-lm import`: released checkpoints → one model directory.

use std::path::PathBuf;

use clap::Subcommand;
use protein_lm::models::{proberta, proteinbert};

#[derive(Subcommand)]
pub enum ImportCommand {
    /// ProteinBERT's released Keras weights: a pickle of (n_annotations, model weights, optimizer
    /// weights), e.g. epoch_92400_sample_23500000.pkl. Read in Rust (numpy 1.x or 2 pickles); the
    /// optimizer state is skipped; the config is read off the array shapes.
    ProteinbertKeras {
        /// The .pkl file.
        file: PathBuf,
        /// Model directory to write (config.json, model.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Dilation of the wide convolutions (not stored in the weights; the reference uses 5).
        #[arg(long, default_value_t = 5)]
        wide_conv_dilation: usize,
    },
    /// A Hugging Face RobertaForMaskedLM / RobertaForSequenceClassification directory written by
    /// save_pretrained: config.json + model.safetensors (or its shards and
    /// model.safetensors.index.json). A classification head comes along with its id2label names.
    HfRoberta {
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// fairseq dictionary to copy into the model directory (default: DIR/dict.txt if present).
        #[arg(long)]
        dict: Option<PathBuf>,
    },
    /// A fairseq RoBERTa checkpoint (checkpoint_best.pt): the state dict under "model", fp16 or fp32,
    /// decoder.* (May 2020) or encoder.* names, zip or legacy (torch < 1.6) format.
    Fairseq {
        checkpoint: PathBuf,
        /// The dictionary the model was trained with (fairseq dict.txt), copied into the directory.
        #[arg(long)]
        dict: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Attention heads, if the checkpoint's args do not say (they do for fairseq's own files).
        #[arg(long)]
        heads: Option<usize>,
    },
}

pub fn run(command: ImportCommand) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (input, out) = match &command {
        ImportCommand::ProteinbertKeras { file, out, .. } => (file, out),
        ImportCommand::HfRoberta { dir, out, .. } => (dir, out),
        ImportCommand::Fairseq { checkpoint, out, .. } => (checkpoint, out),
    };
    if !input.exists() {
        anyhow::bail!("{}: no such file or directory", input.display());
    }
    protein_lm::output::prepare_output_dir(out)?;
    match command {
        ImportCommand::ProteinbertKeras { file, out, wide_conv_dilation } => {
            let (dir, report) = proteinbert::import::import_keras_pickle(&file, &out, wide_conv_dilation)?;
            let c = &report.config;
            println!(
                "{} → {}: ProteinBERT, {} blocks, local {} / global {}, {} heads, {} annotations; {} arrays, {} parameters ({} optimizer arrays skipped) in {:.1} s",
                file.display(),
                dir.path().display(),
                c.n_blocks,
                c.d_local,
                c.d_global,
                c.n_heads,
                c.n_annotations,
                report.arrays,
                report.parameters,
                report.optimizer_arrays,
                started.elapsed().as_secs_f64()
            );
        }
        ImportCommand::HfRoberta { dir, out, dict } => {
            let (model_dir, report) = proberta::import::import_hugging_face(&dir, &out, dict.as_deref())?;
            print_proberta(&dir, model_dir.path(), &report, started);
        }
        ImportCommand::Fairseq { checkpoint, dict, out, heads } => {
            let (model_dir, report) = proberta::import::import_fairseq(&checkpoint, dict.as_deref(), &out, heads)?;
            print_proberta(&checkpoint, model_dir.path(), &report, started);
        }
    }
    Ok(())
}

fn print_proberta(
    from: &std::path::Path,
    to: &std::path::Path,
    report: &proberta::import::ImportReport,
    started: std::time::Instant,
) {
    let c = &report.config;
    println!(
        "{} → {}: PRoBERTa, {} layers × {} × {} heads, vocabulary {}, {} positions; {} tensors, {} parameters; LM head: {}; heads: {} in {:.1} s",
        from.display(),
        to.display(),
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.vocab_size,
        c.max_position_embeddings,
        report.tensors,
        report.parameters,
        if report.has_lm_head { "yes" } else { "no" },
        if report.heads.is_empty() { "none".to_string() } else { report.heads.join(", ") },
        started.elapsed().as_secs_f64()
    );
}
