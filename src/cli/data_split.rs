//! `protein-lm data split` and the PPI part of `data stats`.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use protein_lm::config::Checks;
use protein_lm::data::ppi::{self, MissingSequence, Pair, PpiDataset};
use protein_lm::data::resolver::{files, DataResolver};
use protein_lm::data::splits::{self, leakage_report};
use protein_lm::data::{fasta, read_proteins, Protein};
use protein_lm::output::{prepare_output_dir, write_atomic, write_file_atomic};
use protein_lm::Rng;

#[derive(Clone, Copy, ValueEnum)]
enum Negatives {
    /// Random pairs of proteins of a proteome (--proteome).
    Conservative,
    /// Random pairs of network proteins that are not connected.
    Aggressive,
}

#[derive(Args)]
pub struct SplitArgs {
    /// Proteins to split (FASTA, Swiss-Prot GO table, Pfam tables, `id<TAB>sequence`).
    #[arg(long, conflicts_with = "pairs", required_unless_present = "pairs")]
    input: Option<PathBuf>,
    /// PPI pair file (`idA<TAB>idB<TAB>label`) to split instead of proteins; needs --sequences.
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Sequence dictionaries of the pairs' proteins (`id<TAB>sequence` or FASTA); repeatable.
    #[arg(long, requires = "pairs")]
    sequences: Vec<PathBuf>,
    /// Leave out pairs whose protein has no sequence (counted in the report) instead of failing.
    #[arg(long)]
    drop_pairs_without_sequence: bool,
    /// A given test pair file: no random split; --pairs is the training set and the report classifies
    /// these test pairs against it (e.g. pan2010's own train/test split).
    #[arg(long, requires = "pairs")]
    test_pairs: Option<PathBuf>,
    /// Split the proteins, not the pairs: no protein of a valid/test pair occurs in training (pairs
    /// across splits are left out and counted).
    #[arg(long, requires = "pairs")]
    protein_disjoint: bool,
    /// Add sampled negatives to positive-only pair files (HIPPIE), as the PRoBERTa paper did.
    #[arg(long, value_enum)]
    negatives: Option<Negatives>,
    /// Negatives per positive pair (the paper's conservative set: 411,428 / 189,135 ≈ 2.175).
    #[arg(long, default_value_t = 1.0)]
    negative_ratio: f64,
    /// Proteome for conservative negatives (any protein file; default: the human Swiss-Prot proteins).
    #[arg(long)]
    proteome: Option<PathBuf>,
    /// Split fractions: train,valid,test.
    #[arg(long, default_value = "0.8,0.1,0.1", value_delimiter = ',')]
    fractions: Vec<f64>,
    /// Random seed: the same seed gives the same split (and the same negatives).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep exact duplicate sequences (default: the first occurrence is kept, the rest counted).
    #[arg(long)]
    keep_duplicates: bool,
    /// Also write nested training subsets (10 %, 20 %, …, 100 %, each a superset of the previous), as
    /// for the PRoBERTa paper's Figure 7.
    #[arg(long)]
    nested: bool,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

const SPLIT_NAMES: [&str; 3] = ["train", "valid", "test"];

fn split_names(n: usize) -> Vec<String> {
    (0..n).map(|i| SPLIT_NAMES.get(i).map_or_else(|| format!("split{i}"), |s| s.to_string())).collect()
}

pub fn run(a: SplitArgs) -> anyhow::Result<()> {
    let mut checks = Checks::new("data split");
    for (i, f) in a.fractions.iter().enumerate() {
        checks.within(&format!("--fractions[{i}]"), *f, 0.0, 1.0, false, false);
    }
    if a.negatives.is_some() {
        checks.positive("--negative-ratio", a.negative_ratio);
    }
    checks.finish()?;
    prepare_output_dir(&a.out)?;
    if a.pairs.is_some() {
        split_pairs(&a)
    } else {
        split_proteins(&a)
    }
}

fn split_proteins(a: &SplitArgs) -> anyhow::Result<()> {
    let input = a.input.as_ref().expect("clap: --input or --pairs");
    let (proteins, read_report) = read_proteins(input)?;
    let (kept, dedup_report) = if a.keep_duplicates {
        ((0..proteins.len()).collect(), Default::default())
    } else {
        let seqs: Vec<&str> = proteins.iter().map(|p| p.sequence.as_str()).collect();
        splits::dedup_by_sequence(&seqs)
    };
    let proteins: Vec<Protein> = kept.iter().map(|&i| proteins[i].clone()).collect();
    let mut rng = Rng::new(a.seed);
    let parts = splits::random_split(proteins.len(), &a.fractions, &mut rng)?;
    let names = split_names(parts.len());
    let sets: Vec<Vec<Protein>> = parts.iter().map(|idx| idx.iter().map(|&i| proteins[i].clone()).collect()).collect();
    for (name, set) in names.iter().zip(&sets) {
        fasta::write_fasta(
            a.out.join(format!("{name}.fasta")),
            set.iter().map(|p| (p.id.as_str(), p.sequence.as_str())),
        )?;
    }
    let mut nested_sizes = Vec::new();
    if a.nested {
        let fractions = splits::tenths();
        let nested = splits::nested_fractions(&parts[0], &fractions, &mut rng.fork(1))?;
        for (f, idx) in fractions.iter().zip(&nested) {
            let path = a.out.join(format!("train.nested_{f:.2}.fasta"));
            fasta::write_fasta(&path, idx.iter().map(|&i| (proteins[i].id.as_str(), proteins[i].sequence.as_str())))?;
            nested_sizes.push((format!("{f:.2}"), idx.len()));
        }
    }
    let named: Vec<(&str, &[Protein])> = names.iter().map(String::as_str).zip(sets.iter().map(Vec::as_slice)).collect();
    let leakage = leakage_report(&named, 5);
    let report = serde_json::json!({
        "input": input.display().to_string(),
        "seed": a.seed,
        "fractions": a.fractions,
        "read": read_report,
        "duplicates_removed": dedup_report,
        "sizes": names.iter().zip(&sets).map(|(n, s)| (n.clone(), s.len())).collect::<Vec<_>>(),
        "nested_train_sizes": nested_sizes,
        "leakage": leakage,
    });
    write_file_atomic(&a.out.join("split_report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("read {} ({read_report}); duplicates: {dedup_report}", input.display());
    for (n, s) in names.iter().zip(&sets) {
        println!("{n:<6} {}", s.len());
    }
    print!("{leakage}");
    println!("wrote {}", a.out.display());
    Ok(())
}

fn missing_sequence(drop_pairs_without_sequence: bool) -> MissingSequence {
    if drop_pairs_without_sequence {
        MissingSequence::DropPair
    } else {
        MissingSequence::Error
    }
}

fn write_pairs(path: &Path, pairs: &[Pair]) -> anyhow::Result<()> {
    Ok(write_atomic(path, |w| pairs.iter().try_for_each(|p| writeln!(w, "{}\t{}\t{}", p.a, p.b, p.label)))?)
}

/// Protein-level leakage by sequence (the same sequence under two ids counts as seen) on top of the
/// id-based classes.
fn sequence_overlap(train: &[Pair], test: &[Pair], seqs: &std::collections::BTreeMap<String, String>) -> [usize; 3] {
    let seen: std::collections::HashSet<&str> = train
        .iter()
        .flat_map(|p| [p.a.as_str(), p.b.as_str()])
        .filter_map(|id| seqs.get(id).map(String::as_str))
        .collect();
    let mut counts = [0usize; 3];
    for p in test {
        let n =
            [&p.a, &p.b].iter().filter(|id| seqs.get(id.as_str()).is_some_and(|s| seen.contains(s.as_str()))).count();
        counts[2 - n] += 1;
    }
    counts
}

fn split_pairs(a: &SplitArgs) -> anyhow::Result<()> {
    let pairs_path = a.pairs.as_ref().expect("checked");
    let (mut data, read_report) =
        PpiDataset::load_with_sequences(pairs_path, &a.sequences, missing_sequence(a.drop_pairs_without_sequence))?;
    println!(
        "{}: {} pairs ({} positive, {} negative), {} proteins; {read_report}",
        pairs_path.display(),
        data.pairs.len(),
        data.n_positive(),
        data.n_negative(),
        data.sequences.len()
    );
    if let Some(test_path) = &a.test_pairs {
        let (test, test_report) =
            PpiDataset::load_with_sequences(test_path, &a.sequences, missing_sequence(a.drop_pairs_without_sequence))?;
        println!("{}: {} pairs; {test_report}", test_path.display(), test.pairs.len());
        let mut sequences = data.sequences.clone();
        sequences.extend(test.sequences.clone());
        let overlap = ppi::test_overlap(&data.pairs, &test.pairs);
        let by_seq = sequence_overlap(&data.pairs, &test.pairs, &sequences);
        println!("test vs train: {overlap}; by sequence: both {} one {} none {}", by_seq[0], by_seq[1], by_seq[2]);
        let report = serde_json::json!({
            "train": pairs_path.display().to_string(), "test": test_path.display().to_string(),
            "read_train": read_report, "read_test": test_report,
            "by_id": overlap.counts(), "pair_in_train": overlap.pair_in_train.len(), "by_sequence": by_seq,
        });
        write_file_atomic(&a.out.join("split_report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
        return Ok(());
    }
    let mut rng = Rng::new(a.seed);
    let mut negatives_added = 0;
    if let Some(kind) = a.negatives {
        let scheme = match kind {
            Negatives::Conservative => ppi::NegativeScheme::Conservative,
            Negatives::Aggressive => ppi::NegativeScheme::Aggressive,
        };
        let proteome = match (scheme, &a.proteome) {
            (ppi::NegativeScheme::Aggressive, _) => Vec::new(),
            (_, Some(p)) => read_proteins(p)?.0,
            (_, None) => read_proteins(DataResolver::from_env().resolve(files::HUMAN_PFAM)?)?.0,
        };
        negatives_added = ppi::add_negatives(&mut data, scheme, a.negative_ratio, &proteome, &mut rng.fork(7))?;
        println!("added {negatives_added} sampled negatives");
    }
    let (parts, disjoint_report) = if a.protein_disjoint {
        let (parts, report) = ppi::protein_disjoint_split(&data.pairs, &a.fractions, &mut rng)?;
        println!("protein-disjoint split: {report}");
        (parts, Some(report))
    } else {
        (splits::random_split(data.pairs.len(), &a.fractions, &mut rng)?, None)
    };
    let names = split_names(parts.len());
    let sets: Vec<Vec<Pair>> = parts.iter().map(|idx| idx.iter().map(|&i| data.pairs[i].clone()).collect()).collect();
    let mut evaluation = Vec::new();
    for (name, set) in names.iter().zip(&sets) {
        write_pairs(&a.out.join(format!("{name}.tsv")), set)?;
    }
    for (name, set) in names.iter().zip(&sets).skip(1) {
        let overlap = ppi::test_overlap(&sets[0], set);
        let by_seq = sequence_overlap(&sets[0], set, &data.sequences);
        println!("{name:<6} vs train: {overlap}; by sequence: both {} one {} none {}", by_seq[0], by_seq[1], by_seq[2]);
        evaluation.push(serde_json::json!({"split": name, "by_id": overlap.counts(), "pair_in_train": overlap.pair_in_train.len(), "by_sequence": by_seq}));
    }
    // Sequences (used by the kept pairs) for the split, so a run needs only the output directory.
    let used: std::collections::BTreeSet<&str> = data.pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
    fasta::write_fasta(a.out.join("sequences.fasta"), used.iter().map(|id| (*id, data.sequences[*id].as_str())))?;
    let report = serde_json::json!({
        "pairs": pairs_path.display().to_string(),
        "seed": a.seed,
        "fractions": a.fractions,
        "read": read_report,
        "negatives_added": negatives_added,
        "protein_disjoint": disjoint_report,
        "sizes": names.iter().zip(&sets).map(|(n, s)| (n.clone(), s.len(), s.iter().filter(|p| p.label == 1).count())).collect::<Vec<_>>(),
        "overlap_with_train": evaluation,
    });
    write_file_atomic(&a.out.join("split_report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("wrote {}", a.out.display());
    Ok(())
}

/// PPI lines of `data stats`: pairs, labels, proteins, and for pan2010 its own train/test overlap.
pub fn ppi_stats(resolver: &DataResolver) -> anyhow::Result<()> {
    let sets: [(&str, &str, Vec<&str>); 3] = [
        ("pipr-yeast", files::PIPR_YEAST_PAIRS, vec![files::PIPR_YEAST_DICT]),
        ("hippie-hq", files::HIPPIE_HQ_PAIRS, vec![files::HIPPIE_HQ_DICT]),
        ("pan2010", files::PAN2010_PAIRS, files::PAN2010_FASTA.to_vec()),
    ];
    for (name, pairs, dicts) in sets {
        let (Ok(pairs), Ok(dicts)) =
            (resolver.resolve(pairs), dicts.iter().map(|d| resolver.resolve(d)).collect::<Result<Vec<_>, _>>())
        else {
            println!("ppi {name}: not found (protein-lm data fetch ppi/{name})");
            continue;
        };
        let (data, report) = PpiDataset::load_with_sequences(&pairs, &dicts, MissingSequence::DropPair)?;
        let self_pairs = data.pairs.iter().filter(|p| p.a == p.b).count();
        println!(
            "ppi {name:<11} pairs {} (positive {}, negative {}, self-pairs {self_pairs}), proteins {}; {report}",
            data.pairs.len(),
            data.n_positive(),
            data.n_negative(),
            data.sequences.len()
        );
    }
    Ok(())
}
