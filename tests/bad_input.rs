//! Bad input gets a clear error naming the file, the line or record, and what is wrong: never a panic,
//! never silently dropped data.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use protein_lm::data::ppi::{MissingSequence, PpiDataset, SequenceDictionary};
use protein_lm::data::{fasta, read_proteins, tables};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad").join(name)
}

fn assert_mentions(err: impl std::fmt::Display, parts: &[&str]) {
    let text = err.to_string();
    for p in parts {
        assert!(text.contains(p), "error `{text}` should mention `{p}`");
    }
}

#[test]
fn digit_in_a_fasta_sequence_names_line_record_and_character() {
    let err = fasta::read_fasta(fixture("digit.fasta")).unwrap_err();
    // Line 5 is the sequence's second line; residue 7 counts from the start of the sequence.
    assert_mentions(err, &["digit.fasta:5", "record P2", "'7' at residue 7", "not an amino-acid letter"]);
}

#[test]
fn empty_fasta_sequence_is_an_error() {
    let err = fasta::read_fasta(fixture("empty_sequence.fasta")).unwrap_err();
    assert_mentions(err, &["empty_sequence.fasta:3", "record P2", "empty sequence"]);
}

#[test]
fn one_id_with_two_sequences_names_both_places() {
    let err = SequenceDictionary::new().add_tsv(fixture("conflicting_ids.tsv")).map(|_| ()).unwrap_err();
    assert_mentions(
        err,
        &["conflicting_ids.tsv:3", "A1", "already read with a different sequence", "conflicting_ids.tsv:1"],
    );
}

#[test]
fn pair_without_sequence_names_the_pair_and_id_and_dropping_is_counted() {
    let mut dict2 = SequenceDictionary::new();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("dict.tsv");
    std::fs::write(&d, "A1\tMKTAYIAKQR\nB1\tMSSSPPQ\n").unwrap();
    dict2.add_tsv(&d).unwrap();
    let pairs = fixture("pairs_missing_sequence.tsv");
    let err = PpiDataset::load(&pairs, &dict2, MissingSequence::Error).unwrap_err();
    assert_mentions(err, &["pairs_missing_sequence.tsv:2", "C9", "no sequence"]);
    let (data, report) = PpiDataset::load(&pairs, &dict2, MissingSequence::DropPair).unwrap();
    assert_eq!(data.pairs.len(), 1);
    assert_eq!(report.total_dropped(), 1);
}

#[test]
fn missing_columns_are_named() {
    let err = tables::read_swissprot_go(fixture("swissprot_missing_columns.tsv")).unwrap_err();
    assert_mentions(err, &["swissprot_missing_columns.tsv:1", "missing column(s) go_bp, go_cc"]);
}

#[test]
fn length_column_must_match_the_sequence() {
    let err = tables::read_swissprot_go(fixture("swissprot_length_mismatch.tsv")).unwrap_err();
    assert_mentions(err, &["swissprot_length_mismatch.tsv:2", "record P1", "says 4", "has 3"]);
}

#[test]
fn non_numeric_label_is_named() {
    let spec = tables::benchmark("fluorescence").unwrap();
    let err = tables::read_benchmark_csv(fixture("fluorescence_nonnumeric.csv"), spec).unwrap_err();
    assert_mentions(err, &["fluorescence_nonnumeric.csv:3", "`high`", "not a finite number"]);
}

#[test]
fn per_residue_label_length_must_match() {
    let spec = tables::benchmark("secondary_structure").unwrap();
    let err = tables::read_benchmark_csv(fixture("secondary_structure_label_length.csv"), spec).unwrap_err();
    assert_mentions(err, &["secondary_structure_label_length.csv:3", "5 characters", "has 7"]);
}

fn truncated_gzip(dir: &Path) -> PathBuf {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..2000 {
        writeln!(enc, ">P{i}\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ").unwrap();
    }
    let bytes = enc.finish().unwrap();
    let path = dir.join("cut.fasta.gz");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    path
}

#[test]
fn truncated_gzip_is_an_error_not_a_short_read() {
    let tmp = tempfile::tempdir().unwrap();
    let path = truncated_gzip(tmp.path());
    let err = read_proteins(&path).unwrap_err();
    assert_mentions(err, &["cut.fasta.gz:", "cannot read this line", "gzip stream is truncated or corrupt"]);
}

#[test]
fn command_line_reports_errors_without_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (fixture("digit.fasta"), "digit.fasta:5"),
        (fixture("empty_sequence.fasta"), "empty sequence"),
        (fixture("swissprot_missing_columns.tsv"), "wrong header"),
        (truncated_gzip(tmp.path()), "gzip stream is truncated"),
    ];
    for (input, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_protein-lm")).args(["data", "stats"]).arg(&input).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} should fail", input.display());
        assert!(stderr.starts_with("error: ") && stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        eprintln!("{}", stderr.trim());
    }
}

#[test]
fn a_byte_order_mark_before_the_header_is_not_part_of_a_column_name() {
    let dir = tempfile::tempdir().unwrap();
    let table = "accession\tpfam_id\tsequence\nP1\tPF00001\tMKTAYIAKQR\nP2\tPF00002\tMSSSPPQ\n";
    let plain = dir.path().join("plain.tsv");
    let bom = dir.path().join("bom.tsv");
    std::fs::write(&plain, table).unwrap();
    std::fs::write(&bom, format!("\u{feff}{table}")).unwrap();
    let (a, _) = tables::read_single_pfam(&plain).unwrap();
    let (b, _) = tables::read_single_pfam(&bom).unwrap();
    assert_eq!(a, b);
    assert_eq!(b.len(), 2);

    let spec = tables::BENCHMARKS.iter().find(|s| s.name == "signalP_binary").unwrap();
    let csv = dir.path().join("bom.csv");
    std::fs::write(&csv, "\u{feff}label,seq\n1,MKTAYIAKQR\n0,MSSSPPQ\n").unwrap();
    let records = tables::read_benchmark_csv(&csv, spec).unwrap();
    assert_eq!(records.len(), 2);
}
