//! The readers on the repository's own samples (datasets/samples, made by make_samples.py from the
//! real data), so these run on any checkout, with or without ../shared/datasets.

use std::path::{Path, PathBuf};

use protein_lm::data::ppi::{self, MissingSequence, NegativeCount, PpiDataset, SequenceDictionary};
use protein_lm::data::{fasta, read_proteins, splits, tables};
use protein_lm::tokenize::{BpeOptions, ProbertaTokenizer, ResidueTokenizer, UnknownCounts};
use protein_lm::Rng;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/samples").join(name)
}

#[test]
fn swissprot_sample_reads_with_go_terms() {
    let (records, report) = tables::read_swissprot_go(sample("swissprot_sample300.tsv")).unwrap();
    assert_eq!(records.len(), 300);
    assert_eq!(report.total_dropped(), 0);
    assert!(records.iter().all(|r| r.go_terms().all(|t| t.starts_with("GO:"))));
    assert!(records.iter().filter(|r| r.go_terms().next().is_some()).count() > 250);
}

#[test]
fn fasta_and_format_sniffing_agree() {
    let records = fasta::read_fasta(sample("sample.fasta")).unwrap();
    assert_eq!(records.len(), 50);
    let (proteins, _) = read_proteins(sample("sample.fasta")).unwrap();
    assert_eq!(
        proteins.iter().map(|p| &p.sequence).collect::<Vec<_>>(),
        records.iter().map(|r| &r.sequence).collect::<Vec<_>>()
    );
    let (from_table, _) = read_proteins(sample("swissprot_sample300.tsv")).unwrap();
    assert_eq!(from_table.len(), 300);
}

#[test]
fn pfam_sample_has_families_with_five_members() {
    let (records, _) = tables::read_single_pfam(sample("human_pfam_single_sample.tsv")).unwrap();
    let mut families = std::collections::HashMap::new();
    for r in &records {
        *families.entry(r.pfam_id.clone()).or_insert(0) += 1;
    }
    assert!(families.values().all(|&n| n >= 5), "{families:?}");
}

#[test]
fn ppi_sample_splits_and_negatives() {
    let mut dict = SequenceDictionary::new();
    dict.add_tsv(sample("pipr_yeast_sample/protein.dictionary.tsv")).unwrap();
    let (data, report) =
        PpiDataset::load(sample("pipr_yeast_sample/protein.actions.tsv"), &dict, MissingSequence::Error).unwrap();
    assert_eq!(data.pairs.len(), 300);
    assert_eq!(report.total_dropped(), 0);
    let positives = data.positives();
    let mut rng = Rng::new(0);
    let negatives = ppi::aggressive_negatives(&positives, NegativeCount::RatioToPositives(1.0), &mut rng).unwrap();
    assert_eq!(negatives.len(), positives.len());
    let known: std::collections::HashSet<(&str, &str)> = positives.iter().map(|p| p.unordered()).collect();
    assert!(negatives.iter().all(|n| n.a != n.b && !known.contains(&n.unordered()) && n.label == 0));
    let parts = splits::random_split(data.pairs.len(), &[0.8, 0.1, 0.1], &mut rng).unwrap();
    let train: Vec<_> = parts[0].iter().map(|&i| data.pairs[i].clone()).collect();
    let test: Vec<_> = parts[2].iter().map(|&i| data.pairs[i].clone()).collect();
    let overlap = ppi::test_overlap(&train, &test);
    assert_eq!(overlap.counts().iter().sum::<usize>(), test.len());
}

#[test]
fn benchmark_sample_both_column_orders() {
    let spec = tables::benchmark("signalP_binary").unwrap();
    let train = tables::read_benchmark_csv(sample("signalP_sample.train.csv"), spec).unwrap();
    let test = tables::read_benchmark_csv(sample("signalP_sample.test.csv"), spec).unwrap();
    assert_eq!((train.len(), test.len()), (200, 100));
    assert!(train.iter().any(|r| r.label == tables::Label::Binary(true)));
    // The same records written `seq,label` read back identically.
    let tmp = tempfile::tempdir().unwrap();
    let swapped = tmp.path().join("signalP_swapped.csv");
    let mut text = String::from("seq,label\n");
    for r in &train {
        let l = if r.label == tables::Label::Binary(true) { 1 } else { 0 };
        text.push_str(&format!("{},{l}\n", r.sequence));
    }
    std::fs::write(&swapped, text).unwrap();
    let again = tables::read_benchmark_csv(&swapped, spec).unwrap();
    assert_eq!(again.iter().map(|r| &r.label).collect::<Vec<_>>(), train.iter().map(|r| &r.label).collect::<Vec<_>>());
}

#[test]
fn both_tokenizers_on_the_sample() {
    let (proteins, _) = read_proteins(sample("swissprot_sample300.tsv")).unwrap();
    let mut unknown = UnknownCounts::default();
    for p in &proteins {
        let ids = ResidueTokenizer.encode(&p.sequence, &mut unknown);
        assert_eq!(ids.len(), p.sequence.len() + 2);
    }
    let opts = BpeOptions { vocab_size: 500, ..Default::default() };
    let (tok, report) = ProbertaTokenizer::train(proteins.iter().map(|p| p.sequence.as_str()), &opts).unwrap();
    assert_eq!(report.pieces, 497);
    assert_eq!(tok.dictionary.len(), 4 + 497 + 3 + 1); // padded to 504, then <mask>
    assert!(report.residues_per_piece > 1.5, "{report:?}");
}
