//! `protein-lm pretrain` and `protein-lm finetune`: the training loop from the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::DType;
use clap::{Args, ValueEnum};
use protein_lm::data::ppi::{MissingSequence, NegativeScheme, PpiDataset};
use protein_lm::data::read_proteins;
use protein_lm::data::resolver::{files, DataResolver};
use protein_lm::data::tables::load_benchmark;
use protein_lm::data::tables::read_single_pfam;
use protein_lm::data::FilterReport;
use protein_lm::device::{announcement, select_device, DeviceChoice};
use protein_lm::distributed::launch::WorldInfo;
use protein_lm::distributed::local::{run_local_ranks, strip_launch_flags};
use protein_lm::distributed::rendezvous::fingerprint;
use protein_lm::distributed::setup::{connect, rank_device_choice};
use protein_lm::models::directory::ModelConfig;
use protein_lm::output::prepare_output_dir;
use protein_lm::train::finetune::ppi::{ppi_data, ppi_split_dir, PairData, PpiOptions};
use protein_lm::train::finetune::proberta::{finetune_proberta, ProbertaFinetuneConfig, ProbertaTaskData};
use protein_lm::train::finetune::{
    family_data, finetune_proteinbert, finetune_proteinbert_ppi, DataLimits, FinetuneConfig, PpiFinetuneConfig,
    SupervisedData,
};
use protein_lm::train::objectives::supervised::Predictions;
use protein_lm::train::precision::Precision;
use protein_lm::train::pretrain::{pretrain_with, PretrainConfig, PretrainInputs};
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
    /// The dtype the model computes in: f32, bf16 or f16 (f32 master weights and optimizer
    /// state either way; f16 with dynamic loss scaling). Overrides the config's `train.precision`.
    #[arg(long)]
    precision: Option<String>,
    /// Data parallel on this machine's GPUs: starts N processes, one per GPU, averaging gradients
    /// through NCCL (a CUDA build with NCCL: `FEATURES=cuda,nccl scripts/cuda/build.sh`). Under
    /// torchrun or srun leave it out: the ranks come from their environment variables. Implies
    /// --device cuda (rank r on cuda:r).
    #[arg(long, conflicts_with = "cpu_ranks")]
    gpus: Option<usize>,
    /// Data parallel on the CPU: starts N processes that average gradients over loopback TCP
    /// (any build; for trying the multi-process path without GPUs, or for CPU machines).
    #[arg(long)]
    cpu_ranks: Option<usize>,
    #[command(flatten)]
    run: RunArgs,
}

/// Where a run goes and how it runs (shared by `pretrain` and `finetune`).
#[derive(Args)]
pub struct RunArgs {
    /// The output directory. pretrain: config.json, provenance.json, data.json, log.jsonl,
    /// checkpoints/, model/. finetune: ProteinBERT stage-N run directories, model/ (trunk + head),
    /// results.json, for ppi also test_predictions.tsv; PRoBERTa one run directory with best/, model/, results.json, test_predictions.tsv.
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
    /// The device, announced on stderr with the dtype the run computes in.
    fn device(&self) -> anyhow::Result<candle_core::Device> {
        let device = select_device(self.device.parse::<DeviceChoice>()?)?;
        eprintln!("{}", announcement(&device, DType::F32));
        Ok(device)
    }

    fn options<'a>(&'a self, device: &'a candle_core::Device) -> RunOptions<'a> {
        RunOptions { out: &self.out, resume: self.resume, device, progress: !self.quiet }
    }
}

pub fn pretrain_cmd(a: PretrainArgs) -> anyhow::Result<()> {
    let mut config = PretrainConfig::load(&a.config)?;
    if let Some(p) = &a.precision {
        config.train.precision = p.parse::<Precision>()?;
        config.train.validate()?;
    }
    let kind_matches = matches!(
        (&config.model, a.model),
        (ModelConfig::Proteinbert(_), Kind::Proteinbert) | (ModelConfig::Proberta(_), Kind::Proberta)
    );
    if !kind_matches {
        bail!("{}: the config is for {}, not --model {}", a.config.display(), config.model.kind(), kind_name(a.model));
    }
    if let Some(ranks) = a.gpus.or(a.cpu_ranks) {
        return launch_local_ranks(&a, ranks);
    }
    let world = WorldInfo::from_env()?;
    let lead = world.rank == 0;
    if lead {
        prepare_output_dir(&a.run.out)?;
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
    let device = select_device(rank_device_choice(a.run.device.parse::<DeviceChoice>()?, &world)?)?;
    if lead {
        eprintln!("{}", announcement(&device, config.train.precision.dtype()));
    }
    if world.is_distributed() {
        eprintln!(
            "protein-lm: {} ({:?} launch), rank 0 at {:?}:{:?}",
            world.describe(),
            world.launcher,
            world.master_addr.as_deref().unwrap_or("?"),
            world.master_port.unwrap_or(0)
        );
    }
    let fingerprint = fingerprint(&serde_json::to_vec(&config)?);
    let sync = connect(&world, &device, fingerprint)?;
    let summary = pretrain_with(&config, &inputs, a.run.options(&device), sync)
        .with_context(|| format!("pretraining into {} ({})", out.display(), world.describe()))?;
    if !lead {
        return Ok(());
    }
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

/// `--gpus N` / `--cpu-ranks N`: this command again as N ranks (see `distributed::local`).
fn launch_local_ranks(a: &PretrainArgs, ranks: usize) -> anyhow::Result<()> {
    let on_gpus = a.gpus.is_some();
    let device = a.run.device.parse::<DeviceChoice>()?;
    if on_gpus {
        if !cfg!(feature = "nccl") {
            bail!(
                "--gpus needs a CUDA build with NCCL (FEATURES=cuda,nccl scripts/cuda/build.sh); this binary has \
                 none. To try data parallelism without GPUs use --cpu-ranks {ranks}"
            );
        }
        // --device is left at its default (cpu) by most users: --gpus means every rank on its GPU.
    } else if matches!(device, DeviceChoice::Cuda(_)) {
        bail!("--cpu-ranks runs every rank on the CPU; for GPUs use --gpus");
    }
    if ranks == 0 {
        bail!("--{} 0: a run needs at least one rank", if on_gpus { "gpus" } else { "cpu-ranks" });
    }
    prepare_output_dir(&a.run.out)?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let program = std::env::current_exe().context("cannot find this program to start its ranks")?;
    eprintln!(
        "protein-lm: starting {ranks} ranks on {} (MASTER_ADDR 127.0.0.1)",
        if on_gpus { "GPUs 0.." } else { "the CPU" }
    );
    run_local_ranks(&program, &strip_launch_flags(&args), ranks, if on_gpus { "cuda" } else { "cpu" })?;
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
    /// Which network. ProteinBERT: the reference's three stages on a benchmark or on PPI pairs.
    /// PRoBERTa: one fairseq-style stage on families, PPI or a per-protein benchmark.
    #[arg(long)]
    model: Kind,
    /// `family` (PRoBERTa: multi-class Pfam family), `ppi` (interaction of a pair), or a
    /// ProteinBERT benchmark: signalP_binary, fluorescence, remote_homology, stability, scop,
    /// secondary_structure, disorder_secondary_structure, ProFET_NP_SP_Cleaved (PRoBERTa: the
    /// per-protein ones).
    #[arg(long)]
    task: String,
    /// A fine-tuning config (JSON). Shipped: configs/proteinbert-finetune-{tiny,demo,paper}.json,
    /// configs/proteinbert-finetune-ppi-{tiny,demo,paper}.json (ProteinBERT --task ppi) and
    /// configs/proberta-finetune-{tiny,demo,paper}.json.
    #[arg(long)]
    config: PathBuf,
    /// The pretrained model directory (`pretrain`'s OUT/model or `import`); without it the trunk
    /// starts from the config's `scratch_model` ("no pretraining", the papers' baseline).
    #[arg(long)]
    from: Option<PathBuf>,
    /// PRoBERTa without --from: a tokenizer directory or a fairseq dict.txt.
    /// Default: the original PRoBERTa dict.txt.
    #[arg(long, conflicts_with = "from")]
    tokenizer: Option<PathBuf>,
    /// family (PRoBERTa): an `accession, pfam_id, sequence` table (default: the human single-Pfam
    /// table). ppi (both models): a pair file `idA<TAB>idB<TAB>label` (default: HIPPIE high-quality positives,
    /// with negatives sampled as the config's `ppi` says), or a directory written by
    /// `protein-lm data split --pairs` (train.tsv, valid.tsv, test.tsv, sequences.fasta), used as is.
    #[arg(long)]
    data: Option<PathBuf>,
    /// ppi with a pair file: its sequences (`id<TAB>sequence` or FASTA), repeatable.
    /// Default: the HIPPIE dictionary.
    #[arg(long)]
    sequences: Vec<PathBuf>,
    /// ppi, conservative negatives: the proteome to pair at random (any protein file).
    /// Default: the human Swiss-Prot proteins.
    #[arg(long)]
    proteome: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

pub fn finetune_cmd(a: FinetuneArgs) -> anyhow::Result<()> {
    match a.model {
        Kind::Proteinbert => finetune_proteinbert_cmd(a),
        Kind::Proberta => finetune_proberta_cmd(a),
    }
}

fn finetune_proteinbert_cmd(a: FinetuneArgs) -> anyhow::Result<()> {
    if a.tokenizer.is_some() {
        bail!("--tokenizer is a PRoBERTa option; ProteinBERT reads residues");
    }
    if a.task == "family" {
        bail!("--task family is a PRoBERTa task; ProteinBERT fine-tunes on the benchmarks and on ppi");
    }
    if a.task == "ppi" {
        return finetune_proteinbert_ppi_cmd(a);
    }
    if a.data.is_some() || !a.sequences.is_empty() || a.proteome.is_some() {
        bail!("--data, --sequences and --proteome are for --task ppi; ProteinBERT reads benchmarks by name");
    }
    let mut config = FinetuneConfig::load(&a.config)?;
    prepare_output_dir(&a.run.out)?;
    config.benchmark = a.task.clone();
    let benchmark = load_benchmark(&a.task)?;
    let data = SupervisedData::from_benchmark(&benchmark, &config.data, config.seed)?;
    let data_files = protein_lm::data::tables::benchmark_files(&DataResolver::from_env(), &a.task);
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
        if let Some(why) = Predictions::why_undefined(&s.metric).filter(|_| s.value.is_nan()) {
            println!("    {} is undefined (NaN) in this bucket: {why}", s.metric);
        }
    }
    println!(
        "  paper: {:.3} without pretraining, {:.3} pretrained; results in {}",
        report.paper_no_pretraining,
        report.paper_pretrained,
        out.join("results.json").display()
    );
    Ok(())
}

/// Adds what a reader left out, reason by reason, to a data report.
fn add_read_report(report: &mut BTreeMap<String, usize>, file: &Path, read: &FilterReport) {
    for (reason, n) in &read.dropped {
        report.insert(format!("{}: {reason}", file.display()), *n);
    }
    if read.uppercased > 0 {
        report.insert(
            format!("{}: sequences with lowercase letters, read as upper case", file.display()),
            read.uppercased,
        );
    }
}

/// Reads the pair file or split directory a `ppi` run trains on (either model), and the files read.
fn ppi_task_data(
    a: &FinetuneArgs,
    options: &PpiOptions,
    limits: &DataLimits,
    seed: u64,
    resolver: &DataResolver,
) -> anyhow::Result<(PairData, Vec<PathBuf>)> {
    if let Some(dir) = a.data.as_ref().filter(|d| d.is_dir()) {
        let data = ppi_split_dir(dir, limits, seed)?;
        let files = ["train.tsv", "valid.tsv", "test.tsv", "sequences.fasta"].iter().map(|f| dir.join(f)).collect();
        return Ok((data, files));
    }
    let pairs = match &a.data {
        Some(p) => p.clone(),
        None => resolver.resolve(files::HIPPIE_HQ_PAIRS)?,
    };
    let sequences =
        if a.sequences.is_empty() { vec![resolver.resolve(files::HIPPIE_HQ_DICT)?] } else { a.sequences.clone() };
    let (dataset, read_report) = PpiDataset::load_with_sequences(&pairs, &sequences, MissingSequence::Error)?;
    let mut used = vec![pairs.clone()];
    used.extend(sequences);
    let proteome = match options.negatives {
        Some(NegativeScheme::Conservative) => {
            let path = match &a.proteome {
                Some(p) => p.clone(),
                None => resolver.resolve(files::HUMAN_PFAM)?,
            };
            used.push(path.clone());
            read_proteins(&path)?.0
        }
        _ => Vec::new(),
    };
    let mut data = ppi_data(dataset, options, &proteome, limits, seed).with_context(|| pairs.display().to_string())?;
    add_read_report(&mut data.report, &pairs, &read_report);
    Ok((data, used))
}

fn finetune_proteinbert_ppi_cmd(a: FinetuneArgs) -> anyhow::Result<()> {
    let mut config = PpiFinetuneConfig::load(&a.config)?;
    prepare_output_dir(&a.run.out)?;
    config.finetune.benchmark = "ppi".into();
    let resolver = DataResolver::from_env();
    let (data, data_files) = ppi_task_data(&a, &config.ppi, &config.finetune.data, config.finetune.seed, &resolver)?;
    let out = &a.run.out;
    let device = a.run.device()?;
    let report = finetune_proteinbert_ppi(&config, &data, a.from.as_deref(), &data_files, a.run.options(&device))
        .with_context(|| format!("fine-tuning into {}", out.display()))?;
    println!(
        "ppi ({} train / {} valid / {} test pairs), from {}; {} updates",
        report.train,
        report.valid,
        report.test,
        report.start,
        report.stages.iter().filter_map(|s| s["updates"].as_u64()).sum::<u64>()
    );
    for s in &report.test_by_overlap {
        let t = &s.scores;
        println!(
            "  test, {} ({} pairs): accuracy {:.4}, precision {:.4}, recall {:.4}, ROC AUC {:.4}",
            s.class, t.n, t.accuracy, t.precision, t.recall, t.roc_auc
        );
    }
    for (metric, _) in report.test_scores.iter().filter(|(_, v)| v.is_nan()) {
        if let Some(why) = Predictions::why_undefined(metric) {
            println!("  {metric} is undefined (NaN) on the test set: {why}");
        }
    }
    println!(
        "  results in {}, predictions in {}",
        out.join("results.json").display(),
        out.join("test_predictions.tsv").display()
    );
    Ok(())
}

fn finetune_proberta_cmd(a: FinetuneArgs) -> anyhow::Result<()> {
    let mut config = ProbertaFinetuneConfig::load(&a.config)?;
    prepare_output_dir(&a.run.out)?;
    config.task = a.task.clone();
    let resolver = DataResolver::from_env();
    let (data, data_files) = match a.task.as_str() {
        "family" => {
            let path = match &a.data {
                Some(p) => p.clone(),
                None => resolver.resolve(files::HUMAN_SINGLE_PFAM)?,
            };
            let (records, read_report) = read_single_pfam(&path)?;
            let (min_members, test_fraction) = (config.family.min_members, config.family.test_fraction);
            let mut data = family_data(&records, min_members, test_fraction, &config.data, config.seed)
                .with_context(|| path.display().to_string())?;
            add_read_report(&mut data.report, &path, &read_report);
            (ProbertaTaskData::Proteins(data), vec![path])
        }
        "ppi" => {
            let (data, files) = ppi_task_data(&a, &config.ppi, &config.data, config.seed, &resolver)?;
            (ProbertaTaskData::Pairs(data), files)
        }
        benchmark => {
            if a.data.is_some() || !a.sequences.is_empty() || a.proteome.is_some() {
                bail!("--data, --sequences and --proteome are for --task family and ppi; benchmarks are read by name");
            }
            let data = SupervisedData::from_benchmark(&load_benchmark(benchmark)?, &config.data, config.seed)?;
            (ProbertaTaskData::Proteins(data), protein_lm::data::tables::benchmark_files(&resolver, benchmark))
        }
    };
    let tokenizer = match (&a.from, &a.tokenizer) {
        (None, None) => Some(resolver.resolve(files::PROBERTA_DICT)?),
        (_, t) => t.clone(),
    };
    let out = &a.run.out;
    let device = a.run.device()?;
    let report =
        finetune_proberta(&config, &data, a.from.as_deref(), tokenizer.as_deref(), &data_files, a.run.options(&device))
            .with_context(|| format!("fine-tuning into {}", out.display()))?;
    println!(
        "{} ({} train / {} valid / {} test), from {}; {} updates, tested {}",
        report.task, report.train, report.valid, report.test, report.start, report.updates, report.tested
    );
    let scores: Vec<String> = report.test_scores.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
    println!("  test: {}", scores.join(", "));
    for (metric, _) in report.test_scores.iter().filter(|(_, v)| v.is_nan()) {
        if let Some(why) = Predictions::why_undefined(metric) {
            println!("  {metric} is undefined (NaN) on the test set: {why}");
        }
    }
    for p in &report.paper {
        println!("  paper: {} {:.3} ({})", p.metric, p.value, p.setting);
    }
    println!("  results in {}", out.join("results.json").display());
    Ok(())
}
