//! `protein-lm pretrain` and `protein-lm finetune`: the training loop from the command line.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use protein_lm::data::resolver::{files, DataResolver};
use protein_lm::data::tables::load_benchmark;
use protein_lm::device::{select_device, DeviceChoice};
use protein_lm::models::directory::ModelConfig;
use protein_lm::train::finetune::{finetune_proteinbert, FinetuneConfig, SupervisedData};
use protein_lm::train::pretrain::{pretrain, PretrainConfig, PretrainInputs};
use protein_lm::train::run_dir::RunOptions;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Proteinbert,
    Proberta,
}

#[derive(Args)]
pub struct PretrainArgs {
    /// Which network; must match the config's `model.kind`.
    #[arg(long)]
    model: Kind,
    /// A pretraining config (JSON): model sizes, data limits, objective and loop settings.
    /// Shipped: configs/{proteinbert,proberta}-pretrain-{tiny,demo,paper}.json.
    #[arg(long)]
    config: PathBuf,
    /// Swiss-Prot table (accession, length, go_mf, go_bp, go_cc, sequence; .tsv or .tsv.gz).
    /// Default: the 50,000-protein Swiss-Prot 2014 sample through the data resolver.
    #[arg(long)]
    data: Option<PathBuf>,
    /// PRoBERTa: a tokenizer directory (`protein-lm tokenizer train`) or a fairseq dict.txt.
    /// Default: the original PRoBERTa dict.txt (approximate segmentation, see the README).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// ProteinBERT: the GO graph for propagating annotations to their ancestors.
    /// Default: the GO 2014-01 graph through the data resolver.
    #[arg(long)]
    go_graph: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// Where a run goes and how it runs (shared by `pretrain` and `finetune`).
#[derive(Args)]
pub struct RunArgs {
    /// The output directory. pretrain: config.json, provenance.json, data.json, log.jsonl,
    /// checkpoints/, model/. finetune: stage-N run directories, model/ (trunk + head), results.json.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the last complete checkpoint (the config must be unchanged); finetune also
    /// skips finished stages.
    #[arg(long)]
    resume: bool,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl RunArgs {
    fn device(&self) -> anyhow::Result<candle_core::Device> {
        Ok(select_device(self.device.parse::<DeviceChoice>()?)?)
    }

    fn options<'a>(&'a self, device: &'a candle_core::Device) -> RunOptions<'a> {
        RunOptions { out: &self.out, resume: self.resume, device, progress: !self.quiet }
    }
}

pub fn pretrain_cmd(a: PretrainArgs) -> anyhow::Result<()> {
    let config = PretrainConfig::load(&a.config)?;
    let kind_matches = matches!(
        (&config.model, a.model),
        (ModelConfig::Proteinbert(_), Kind::Proteinbert) | (ModelConfig::Proberta(_), Kind::Proberta)
    );
    if !kind_matches {
        bail!("{}: the config is for {}, not --model {}", a.config.display(), config.model.kind(), kind_name(a.model));
    }
    let resolver = DataResolver::from_env();
    let data = match a.data {
        Some(d) => d,
        None => resolver.resolve(files::SWISSPROT_GO_SAMPLE)?,
    };
    let tokenizer = match (a.model, a.tokenizer) {
        (Kind::Proberta, None) => Some(resolver.resolve(files::PROBERTA_DICT)?),
        (_, t) => t,
    };
    let go_graph = match (a.model, a.go_graph) {
        (Kind::Proteinbert, None) => Some(resolver.resolve(files::GO_GRAPH)?),
        (_, g) => g,
    };
    let inputs = PretrainInputs { data, tokenizer, go_graph };
    let out = &a.run.out;
    let device = a.run.device()?;
    let summary = pretrain(&config, &inputs, a.run.options(&device))
        .with_context(|| format!("pretraining into {}", out.display()))?;
    println!(
        "{} updates ({} epochs) in {:.0} s{}; model directory {}",
        summary.updates,
        summary.epochs_completed,
        summary.seconds,
        summary.resumed_from.map(|s| format!(", resumed from update {s}")).unwrap_or_default(),
        out.join("model").display()
    );
    if let Some(v) = &summary.last_validation {
        println!("last validation: {}", serde_json::to_string(v)?);
    }
    Ok(())
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Proteinbert => "proteinbert",
        Kind::Proberta => "proberta",
    }
}

#[derive(Args)]
pub struct FinetuneArgs {
    /// Which network (fine-tuning stages are implemented for ProteinBERT).
    #[arg(long)]
    model: Kind,
    /// A ProteinBERT benchmark: signalP_binary, fluorescence, remote_homology, stability, scop,
    /// secondary_structure, disorder_secondary_structure, ProFET_NP_SP_Cleaved.
    #[arg(long)]
    task: String,
    /// A fine-tuning config (JSON): stages, data limits, test buckets.
    /// Shipped: configs/proteinbert-finetune-{tiny,demo,paper}.json.
    #[arg(long)]
    config: PathBuf,
    /// The pretrained model directory (`pretrain`'s OUT/model or `import`); without it the trunk
    /// starts from the config's `scratch_model` ("no pretraining", the paper's baseline).
    #[arg(long)]
    from: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

pub fn finetune_cmd(a: FinetuneArgs) -> anyhow::Result<()> {
    if a.model != Kind::Proteinbert {
        bail!(
            "fine-tuning stages are implemented for ProteinBERT; for PRoBERTa use `embed` with the analysis probes \
             (family and PPI fine-tuning of PRoBERTa is a later issue)"
        );
    }
    let mut config = FinetuneConfig::load(&a.config)?;
    config.benchmark = a.task.clone();
    let benchmark = load_benchmark(&a.task)?;
    let data = SupervisedData::from_benchmark(&benchmark, &config)?;
    let resolver = DataResolver::from_env();
    let data_files: Vec<PathBuf> = ["train", "valid", "test"]
        .iter()
        .filter_map(|s| resolver.resolve(&format!("proteinbert-benchmarks/{}.{s}.csv", a.task)).ok())
        .collect();
    let out = &a.run.out;
    let device = a.run.device()?;
    let report = finetune_proteinbert(&config, &data, a.from.as_deref(), &data_files, a.run.options(&device))
        .with_context(|| format!("fine-tuning into {}", out.display()))?;
    println!(
        "{} ({} train / {} valid / {} test), from {}",
        report.benchmark, report.train, report.valid, report.test, report.start
    );
    for s in &report.test_scores {
        println!(
            "  test bucket {:>5}: {} = {:.4} over {} proteins ({} items)",
            s.bucket, s.metric, s.value, s.proteins, s.items
        );
    }
    println!(
        "  paper: {:.3} without pretraining, {:.3} pretrained; results in {}",
        report.paper_no_pretraining,
        report.paper_pretrained,
        out.join("results.json").display()
    );
    Ok(())
}
