use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use protein_lm::data::resolver::{self, files, DataResolver};
use protein_lm::data::{read_proteins, tables, Protein};
use sha2::Digest;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Check every data file of the manifest (sha256) and download what is missing from upstream.
    ///
    /// Files are looked up through the resolver; missing ones are fetched by datasets/fetch.sh into the
    /// user data directory (or --dest).
    Fetch(FetchArgs),
    /// Summarise data files: proteins, residues, lengths, letters outside the 20 standard amino acids,
    /// GO coverage. Without arguments, every known file that the resolver finds.
    Stats(StatsArgs),
    /// Split proteins (or PPI pairs) into train/valid/test, seeded, with a leakage report.
    ///
    /// Proteins: exact duplicate sequences are removed (and counted) first, so no sequence is in two
    /// splits. PPI pairs: the report classifies every valid/test pair by how many of its proteins occur
    /// in training (both, one, none) — evaluate the three classes separately.
    #[command(after_help = "Examples:\n  protein-lm data split --input proteins.fasta --out runs/split --nested\n  \
protein-lm data split --pairs hippie_hq_pairs.tsv --sequences hippie_hq_dict.tsv --negatives conservative --negative-ratio 2.175 --out runs/ppi\n  \
protein-lm data split --pairs pan2010_pan_train.tsv --test-pairs pan2010_pan_test.tsv --sequences a.fasta --sequences b.fasta --drop-pairs-without-sequence --out runs/pan")]
    Split(super::data_split::SplitArgs),
}

#[derive(Args)]
pub struct FetchArgs {
    /// Data sets to fetch (manifest names, e.g. swissprot-2014-go, ppi/hippie-hq); default: all.
    names: Vec<String>,
    /// Only verify checksums; download nothing. Exits non-zero when a file is missing or differs.
    #[arg(long)]
    verify_only: bool,
    /// Where to put downloads (default: $PROTEIN_LM_DATA, else the user data directory).
    #[arg(long)]
    dest: Option<PathBuf>,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Protein files (FASTA, Swiss-Prot GO table, Pfam tables, `id<TAB>sequence`).
    files: Vec<PathBuf>,
}

pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Fetch(a) => fetch(a),
        DataCommand::Stats(a) => stats(a),
        DataCommand::Split(a) => super::data_split::run(a),
    }
}

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Debug)]
struct ManifestFile {
    dataset: String,
    path: String,
    sha256: Option<String>,
    /// false: a fetch cannot give the recorded bytes (rebuilt files), so a differing copy is accepted.
    reproducible: bool,
}

fn read_manifest() -> anyhow::Result<Vec<ManifestFile>> {
    let path = repo_dir().join("datasets/manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = Vec::new();
    for ds in json["datasets"].as_array().context("manifest: `datasets` must be a list")? {
        let name = ds["name"].as_str().context("manifest: data set without `name`")?;
        for f in ds["files"].as_array().map(Vec::as_slice).unwrap_or_default() {
            out.push(ManifestFile {
                dataset: name.to_string(),
                path: f["path"].as_str().context("manifest: file without `path`")?.to_string(),
                sha256: f["sha256"].as_str().map(str::to_string),
                reproducible: f["reproducible_from_upstream"].as_bool().unwrap_or(true),
            });
        }
    }
    Ok(out)
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let len = std::fs::metadata(path)?.len();
    let bar = super::progress_bar(len, "sha256");
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(format!("{:x}", hasher.finalize()))
}

fn fetch(a: FetchArgs) -> anyhow::Result<()> {
    let manifest = read_manifest()?;
    let resolver = DataResolver::from_env();
    let wanted = |ds: &str| a.names.is_empty() || a.names.iter().any(|n| n == ds);
    let unknown: Vec<&String> = a.names.iter().filter(|n| !manifest.iter().any(|f| &f.dataset == *n)).collect();
    if !unknown.is_empty() {
        let mut names: Vec<&str> = manifest.iter().map(|f| f.dataset.as_str()).collect();
        names.dedup();
        bail!("unknown data set(s) {unknown:?}; the manifest has: {}", names.join(", "));
    }
    let (mut ok, mut bad, mut missing) = (0, Vec::new(), Vec::<String>::new());
    for f in manifest.iter().filter(|f| wanted(&f.dataset)) {
        // Our own samples live in the repository, not under a data root.
        let located = if f.dataset == "samples" {
            let p = repo_dir().join("datasets/samples").join(&f.path);
            if p.is_file() {
                Ok(p)
            } else {
                Err(())
            }
        } else {
            resolver.resolve(&f.path).map_err(|_| ())
        };
        match located {
            Ok(p) => match &f.sha256 {
                Some(expected) => {
                    let got = sha256_file(&p)?;
                    if &got == expected {
                        ok += 1;
                        println!("ok       {}  ({})", f.path, p.display());
                    } else if !f.reproducible {
                        ok += 1;
                        println!(
                            "present  {}  ({}): differs from the recorded copy, as a rebuilt file may",
                            f.path,
                            p.display()
                        );
                    } else {
                        println!("MISMATCH {}  ({}): sha256 {got}, manifest {expected}", f.path, p.display());
                        bad.push(f.path.clone());
                    }
                }
                None => {
                    ok += 1;
                    println!("present  {}  (no checksum in the manifest)", f.path);
                }
            },
            Err(_) => {
                println!("missing  {}", f.path);
                if !missing.contains(&f.dataset) {
                    missing.push(f.dataset.clone());
                }
            }
        }
    }
    println!("{ok} file(s) verified, {} mismatched, {} data set(s) with missing files", bad.len(), missing.len());
    if !missing.is_empty() && a.verify_only {
        bail!(
            "{} data set(s) with missing files: {}; fetch them with `protein-lm data fetch {}`",
            missing.len(),
            missing.join(", "),
            missing.join(" ")
        );
    }
    if !missing.is_empty() {
        let dest = a
            .dest
            .clone()
            .or_else(|| std::env::var_os(resolver::ENV_VAR).map(PathBuf::from))
            .or_else(resolver::user_data_dir);
        let dest = dest.context("no destination: pass --dest")?;
        let script = repo_dir().join("datasets/fetch.sh");
        println!("fetching {} into {} with {}", missing.join(", "), dest.display(), script.display());
        let status =
            std::process::Command::new("bash").arg(&script).arg("--dest").arg(&dest).args(&missing).status()?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
    }
    if !bad.is_empty() {
        bail!("{} file(s) do not match the manifest's checksums: {}", bad.len(), bad.join(", "));
    }
    Ok(())
}

const STANDARD: &str = "ACDEFGHIKLMNPQRSTVWY";

fn describe(label: &str, proteins: &[Protein]) {
    let mut lengths: Vec<usize> = proteins.iter().map(|p| p.sequence.len()).collect();
    lengths.sort_unstable();
    let residues: usize = lengths.iter().sum();
    let mut other = std::collections::BTreeMap::<char, usize>::new();
    for p in proteins {
        for c in p.sequence.chars().filter(|c| !STANDARD.contains(*c)) {
            *other.entry(c).or_default() += 1;
        }
    }
    let pct = |q: f64| lengths.get(((lengths.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    println!("{label}");
    println!(
        "  proteins {}  residues {}  length min {} / median {} / 95% {} / max {}",
        proteins.len(),
        residues,
        pct(0.0),
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
    println!(
        "  shorter than 1,024 residues (PRoBERTa BPE training): {}",
        lengths.iter().filter(|&&l| l < 1024).count()
    );
    println!("  fit ProteinBERT seq_len 512 (≤ 510 residues): {}", lengths.iter().filter(|&&l| l <= 510).count());
    if !other.is_empty() {
        println!("  letters outside the 20 standard amino acids: {other:?}");
    }
}

fn stats(a: StatsArgs) -> anyhow::Result<()> {
    if !a.files.is_empty() {
        for f in &a.files {
            let (proteins, report) = read_proteins(f)?;
            describe(&format!("{} ({report})", f.display()), &proteins);
        }
        return Ok(());
    }
    let resolver = DataResolver::from_env();
    match resolver.resolve(files::SWISSPROT_GO_SAMPLE) {
        Ok(path) => {
            let (records, report) = tables::read_swissprot_go(&path)?;
            let proteins: Vec<Protein> = records.iter().map(|r| r.protein()).collect();
            describe(&format!("{} ({report})", path.display()), &proteins);
            let count = |f: fn(&tables::SwissProtRecord) -> bool| records.iter().filter(|r| f(r)).count();
            println!(
                "  GO annotated: MF {}  BP {}  CC {}  any {}",
                count(|r| !r.go_mf.is_empty()),
                count(|r| !r.go_bp.is_empty()),
                count(|r| !r.go_cc.is_empty()),
                count(|r| r.go_terms().next().is_some())
            );
        }
        Err(e) => println!("{e}"),
    }
    match resolver.resolve(files::HUMAN_SINGLE_PFAM) {
        Ok(path) => {
            let (records, report) = tables::read_single_pfam(&path)?;
            let proteins: Vec<Protein> =
                records.iter().map(|r| Protein { id: r.accession.clone(), sequence: r.sequence.clone() }).collect();
            describe(&format!("{} ({report})", path.display()), &proteins);
            let mut families = std::collections::HashMap::<&str, usize>::new();
            for r in &records {
                *families.entry(r.pfam_id.as_str()).or_default() += 1;
            }
            let five: Vec<usize> = families.values().copied().filter(|&n| n >= 5).collect();
            println!(
                "  families {}  with ≥ 5 members {} ({} proteins)",
                families.len(),
                five.len(),
                five.iter().sum::<usize>()
            );
        }
        Err(e) => println!("{e}"),
    }
    match resolver.resolve(files::HUMAN_PFAM) {
        Ok(path) => {
            let (proteins, report) = read_proteins(&path)?;
            describe(&format!("{} ({report})", path.display()), &proteins);
        }
        Err(e) => println!("{e}"),
    }
    super::data_split::ppi_stats(&resolver)?;
    for spec in &tables::BENCHMARKS {
        let splits: Vec<String> = ["train", "valid", "test"]
            .iter()
            .filter_map(|split| {
                let rel = format!("proteinbert-benchmarks/{}.{split}.csv", spec.name);
                let path = resolver.resolve(&rel).ok()?;
                Some(match tables::read_benchmark_csv(&path, spec) {
                    Ok(r) => format!("{split} {}", r.len()),
                    Err(e) => format!("{split}: {e}"),
                })
            })
            .collect();
        println!("benchmark {:<30} {:<12} {}", spec.name, spec.metric, splits.join("  "));
    }
    Ok(())
}
