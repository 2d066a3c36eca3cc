//! `protein-lm init`: a model directory with seeded random weights.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use protein_lm::data::resolver::{files, DataResolver};
use protein_lm::models::directory::{init_random, ModelConfig};
use protein_lm::models::{proberta, proteinbert};

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Proteinbert,
    Proberta,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Size {
    /// Seconds on a CPU (tests, the tiny notebook scale).
    Tiny,
    /// A laptop CPU (ProteinBERT 4 blocks × 64/256; PRoBERTa 5 × 192, the width of the paper's clustering model).
    Demo,
    /// The published sizes (ProteinBERT 15,981,321 parameters; PRoBERTa 5 × 768, 44,124,697).
    Paper,
}

#[derive(Args)]
pub struct InitArgs {
    #[arg(long)]
    model: Kind,
    #[arg(long, value_enum, default_value = "paper")]
    size: Size,
    /// ProteinBERT: GO-annotation inputs and outputs (8,943 in the released model).
    #[arg(long, default_value_t = 8943)]
    annotations: usize,
    /// PRoBERTa: the fairseq dictionary, or a tokenizer directory holding one (default: the original
    /// PRoBERTa dict.txt through the data resolver).
    #[arg(long)]
    dict: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let mut checks = protein_lm::config::Checks::new("init");
    checks.at_least("--annotations", args.annotations, 1);
    checks.finish()?;
    protein_lm::output::prepare_output_dir(&args.out)?;
    let (model, dict) = match args.model {
        Kind::Proteinbert => {
            let a = args.annotations;
            let config = match args.size {
                Size::Tiny => proteinbert::Config::tiny(a),
                Size::Demo => proteinbert::Config::demo(a),
                Size::Paper => proteinbert::Config { n_annotations: a, ..proteinbert::Config::default() },
            };
            (ModelConfig::Proteinbert(config), None)
        }
        Kind::Proberta => {
            let dict = match args.dict {
                Some(d) => protein_lm::tokenize::bpe::dict_path(&d)?,
                None => DataResolver::from_env().resolve(files::PROBERTA_DICT)?,
            };
            let vocab = protein_lm::tokenize::FairseqDictionary::load(&dict)?.len();
            let config = match args.size {
                Size::Tiny => proberta::Config::tiny(vocab),
                Size::Demo => proberta::Config::demo(vocab),
                Size::Paper => proberta::Config { vocab_size: vocab, ..proberta::Config::default() },
            };
            (ModelConfig::Proberta(config), Some(dict))
        }
    };
    let dir = init_random(&args.out, model, args.seed, dict.as_deref())?;
    let parameters: usize =
        dir.tensors(candle_core::DType::F32, &candle_core::Device::Cpu)?.values().map(|t| t.elem_count()).sum();
    println!(
        "{}: {} with {parameters} random parameters (seed {})",
        dir.path().display(),
        dir.config().model.kind(),
        args.seed
    );
    Ok(())
}
