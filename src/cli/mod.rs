//! One file per subcommand; each composes library calls and prints what it did.

mod data;
mod data_split;
mod embed;
mod import;
mod init;
mod tokenizer;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "protein-lm",
    version,
    about = "ProteinBERT and PRoBERTa: data, tokenizers, models, training and analysis",
    long_about = "ProteinBERT and PRoBERTa protein language models in Rust.\n\n\
Data files are found through one resolver: $PROTEIN_LM_DATA, then ../shared/datasets beside the checkout, \
then the user data directory that `protein-lm data fetch` fills.\n\n\
Start with `protein-lm data stats` to see what data is available."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch, verify, summarise and split data sets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train a PRoBERTa BPE tokenizer, or encode proteins with either model's tokenizer.
    #[command(subcommand)]
    Tokenizer(tokenizer::TokenizerCommand),
    /// Convert released checkpoints (ProteinBERT Keras pickle, Hugging Face RoBERTa, fairseq) into a
    /// model directory.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Create a model directory with seeded random weights (a pretraining start, or a stand-in for timing).
    Init(init::InitArgs),
    /// Embed proteins with a model directory: one vector per protein (.npy) or per residue (.safetensors).
    ///
    /// Example: protein-lm embed --model runs/proteinbert --fasta proteins.fasta --out embeddings.npy
    Embed(embed::EmbedArgs),
    /// Pretrain ProteinBERT (denoising + GO) or PRoBERTa (masked LM) from a config, with
    /// checkpoints that resume bit for bit.
    ///
    /// Example: protein-lm pretrain --model proberta --config configs/proberta-pretrain-demo.json --out runs/proberta-demo
    Pretrain(train::PretrainArgs),
    /// Fine-tune ProteinBERT on a benchmark (the reference's three stages, test scores per length
    /// bucket) or PRoBERTa on protein families, protein-protein interactions or a benchmark.
    ///
    /// Example: protein-lm finetune --model proteinbert --task signalP_binary --config configs/proteinbert-finetune-demo.json --out runs/signalp
    ///
    /// Example: protein-lm finetune --model proberta --task ppi --from runs/proberta-demo/model --config configs/proberta-finetune-demo.json --out runs/ppi
    Finetune(train::FinetuneArgs),
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Data(c) => data::run(c),
        Command::Tokenizer(c) => tokenizer::run(c),
        Command::Import(c) => import::run(c),
        Command::Init(a) => init::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Pretrain(a) => train::pretrain_cmd(a),
        Command::Finetune(a) => train::finetune_cmd(a),
    }
}

/// A progress bar in the crate's style (hidden when stderr is not a terminal, e.g. under CI).
pub(crate) fn progress_bar(len: u64, message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:<24} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("static template"),
    );
    bar.set_message(message.to_string());
    bar
}

pub(crate) fn spinner(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
