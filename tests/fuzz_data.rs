//! Fuzzing the data readers: FASTA (plain and gzip), the Swiss-Prot/GO and Pfam tables, the
//! benchmark CSVs, PPI pair files and sequence dictionaries, the GO graph and the GO vocabulary.
//! Generated valid inputs must read back exactly; mutated real samples must read or fail with an
//! error naming the file and line, never panic. Budget: see `fuzz_support` (`PROTEIN_LM_FUZZ_CASES`).

mod fuzz_support;

use std::path::Path;

use fuzz_support::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use protein_lm::data::go::{EdgeColumns, GoGraph, GoVocabulary};
use protein_lm::data::ppi::{self, SequenceDictionary};
use protein_lm::data::tables::{self, Label};
use protein_lm::data::{fasta, read_proteins};

/// The first `n` lines of a committed sample: enough of every field kind, small enough that most
/// mutations land somewhere that matters.
fn sample_head(relative: &str, n: usize) -> Vec<u8> {
    let bytes = read_sample(relative);
    let mut out = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n').take(n) {
        out.extend_from_slice(line);
    }
    out
}

/// Runs `property` over mutated copies of `seed` (optionally gzipped after mutation, or gzipped
/// first and then corrupted).
fn fuzz_mutated(name: &str, seed: Vec<u8>, sep: u8, ci: u32, property: impl Fn(&Path) -> Result<(), TestCaseError>) {
    take_outcomes();
    let mut runner = TestRunner::new(config(ci, false));
    let strategy = (mutations(sep), 0u8..4, byte_mutations());
    let result = runner.run(&strategy, |(text_edits, gz, gz_edits)| {
        let scratch = Scratch::new();
        let text = apply(&seed, &text_edits);
        let bytes = match gz {
            // Mostly plain text; a quarter gzip, half of those with a corrupted stream.
            0 => gzip(&text),
            1 => apply(&gzip(&text), &gz_edits),
            _ => text,
        };
        let path = scratch.write(name, &bytes);
        property(&path)
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    report_outcomes(name);
}

// ---------------------------------------------------------------------------------------------
// FASTA

fn ids() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_|.:-]{1,20}"
}

fn sequences() -> impl Strategy<Value = String> {
    "[A-Za-z]{1,200}"
}

proptest! {
    #![proptest_config(config(128, false))]

    /// read(write(x)) == x, plain and gzip.
    #[test]
    fn fasta_round_trip(records in prop::collection::vec((ids(), sequences()), 1..20), gz in any::<bool>()) {
        let scratch = Scratch::new();
        let path = scratch.path().join("gen.fasta");
        fasta::write_fasta(&path, records.iter().map(|(i, s)| (i.as_str(), s.as_str()))).unwrap();
        if gz {
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, gzip(&bytes)).unwrap();
        }
        let back = fasta::read_fasta(&path).unwrap();
        let got: Vec<(String, String)> = back.iter().map(|r| (r.id.clone(), r.sequence.clone())).collect();
        // Lower-case letters are read as upper case (and counted).
        let want: Vec<(String, String)> = records.iter().map(|(i, s)| (i.clone(), s.to_ascii_uppercase())).collect();
        prop_assert_eq!(got, want);
        prop_assert!(back.iter().all(|r| r.description.is_empty()));
    }
}

#[test]
fn fasta_mutated() {
    let seed = sample_head("datasets/samples/sample.fasta", 40);
    fuzz_mutated("sample.fasta", seed, b' ', 512, |path| {
        parse_checked(&[path], Located::Line, || fasta::read_fasta(path))?;
        // Through the format sniffer too: a mutated header line may make it another format.
        parse_checked(&[path], Located::Line, || read_proteins(path))?;
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Tables

fn go_list() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec((0u32..10_000_000).prop_map(|n| format!("GO:{n:07}")), 0..4)
}

proptest! {
    #![proptest_config(config(128, false))]

    /// A generated Swiss-Prot/GO table reads back as the records it was written from.
    #[test]
    fn swissprot_generated(rows in prop::collection::btree_map("[A-Z][0-9A-Z]{5}", (go_list(), go_list(), go_list(), sequences()), 1..20)) {
        let mut text = tables::SWISSPROT_COLUMNS.join("\t") + "\n";
        for (acc, (mf, bp, cc, seq)) in &rows {
            text += &format!("{acc}\t{}\t{}\t{}\t{}\t{seq}\n", seq.len(), mf.join(";"), bp.join(";"), cc.join(";"));
        }
        let scratch = Scratch::new();
        let path = scratch.write("sp.tsv", text.as_bytes());
        let (records, report) = tables::read_swissprot_go(&path).unwrap();
        prop_assert_eq!(report.kept, rows.len());
        prop_assert_eq!(records.len(), rows.len());
        for (r, (acc, (mf, bp, cc, seq))) in records.iter().zip(&rows) {
            prop_assert_eq!(&r.accession, acc);
            prop_assert_eq!(&r.go_mf, mf);
            prop_assert_eq!(&r.go_bp, bp);
            prop_assert_eq!(&r.go_cc, cc);
            prop_assert_eq!(&r.sequence, &seq.to_ascii_uppercase());
        }
    }

    /// Generated single-Pfam and human-protein tables read back exactly.
    #[test]
    fn pfam_generated(rows in prop::collection::btree_map("[A-Z][0-9A-Z]{5}", ("PF[0-9]{5}", prop::collection::vec("PF[0-9]{5}", 0..4), sequences()), 1..20)) {
        let scratch = Scratch::new();
        let mut single = String::from("accession\tpfam_id\tsequence\n");
        let mut human = String::from("accession\tentrez_gene_ids\tpfam_ids\tn_pfam\tprosite_ids\tsequence\n");
        for (acc, (pf, pfs, seq)) in &rows {
            single += &format!("{acc}\t{pf}\t{seq}\n");
            human += &format!("{acc}\t1;2\t{}\t{}\tPS00001\t{seq}\n", pfs.join(";"), pfs.len());
        }
        let (s, _) = tables::read_single_pfam(scratch.write("single.tsv", single.as_bytes())).unwrap();
        let got: Vec<(&str, &str, &str)> = s.iter().map(|r| (r.accession.as_str(), r.pfam_id.as_str(), r.sequence.as_str())).collect();
        let upper: Vec<String> = rows.values().map(|(_, _, q)| q.to_ascii_uppercase()).collect();
        let want: Vec<(&str, &str, &str)> =
            rows.iter().zip(&upper).map(|((a, (p, _, _)), q)| (a.as_str(), p.as_str(), q.as_str())).collect();
        prop_assert_eq!(got, want);
        let (h, _) = tables::read_human_proteins(scratch.write("human.tsv", human.as_bytes())).unwrap();
        prop_assert_eq!(h.len(), rows.len());
        for (r, (_, (_, pfs, seq))) in h.iter().zip(&rows) {
            prop_assert_eq!(&r.pfam_ids, pfs);
            prop_assert_eq!(&r.sequence, &seq.to_ascii_uppercase());
            prop_assert_eq!(&r.entrez_gene_ids, &vec!["1".to_string(), "2".to_string()]);
        }
    }
}

#[test]
fn swissprot_mutated() {
    let seed = sample_head("datasets/samples/swissprot_sample300.tsv", 30);
    fuzz_mutated("swissprot.tsv", seed, b'\t', 512, |path| {
        parse_checked(&[path], Located::Line, || tables::read_swissprot_go(path))?;
        parse_checked(&[path], Located::Line, || read_proteins(path))?;
        Ok(())
    });
}

#[test]
fn single_pfam_mutated() {
    let seed = sample_head("datasets/samples/human_pfam_single_sample.tsv", 30);
    fuzz_mutated("pfam.tsv", seed, b'\t', 512, |path| {
        parse_checked(&[path], Located::Line, || tables::read_single_pfam(path))?;
        parse_checked(&[path], Located::Line, || read_proteins(path))?;
        Ok(())
    });
}

#[test]
fn human_proteins_mutated() {
    // No committed sample of this table: a few rows in its format.
    let seed = b"accession\tentrez_gene_ids\tpfam_ids\tn_pfam\tprosite_ids\tsequence\n\
        P12345\t7157\tPF00870;PF07710\t2\tPS00348\tMEEPQSDPSVEPPLSQETFSDLWKLLPENNVLSPLPS\n\
        Q99999\t\t\t0\t\tMKTAYIAKQR\n\
        O00001\t1;2\tPF00001\t1\tPS00001;PS00002\tMSSSPPQ\n"
        .to_vec();
    fuzz_mutated("human.tsv", seed, b'\t', 256, |path| {
        parse_checked(&[path], Located::Line, || tables::read_human_proteins(path))?;
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Benchmark CSVs

proptest! {
    #![proptest_config(config(128, false))]

    /// Generated per-protein and per-residue benchmark CSVs read back as written, in either
    /// column order.
    #[test]
    fn benchmark_generated(rows in prop::collection::vec((sequences(), any::<bool>(), -1e6f64..1e6, prop::collection::vec(0u8..3, 200)), 1..15), label_first in any::<bool>()) {
        let scratch = Scratch::new();
        let header = if label_first { "label,seq\n" } else { "seq,label\n" };
        let row = |seq: &str, label: &str| if label_first { format!("{label},{seq}\n") } else { format!("{seq},{label}\n") };
        let (mut binary, mut numeric, mut residue) = (header.to_string(), header.to_string(), header.to_string());
        for (seq, b, x, classes) in &rows {
            binary += &row(seq, if *b { "1" } else { "0" });
            numeric += &row(seq, &format!("{x:?}"));
            let digits: String = classes[..seq.len()].iter().map(|c| char::from(b'0' + c)).collect();
            residue += &row(seq, &digits);
        }
        let spec = |name| tables::benchmark(name).unwrap();
        let b = tables::read_benchmark_csv(scratch.write("b.csv", binary.as_bytes()), spec("signalP_binary")).unwrap();
        let n = tables::read_benchmark_csv(scratch.write("n.csv", numeric.as_bytes()), spec("stability")).unwrap();
        let r = tables::read_benchmark_csv(scratch.write("r.csv", residue.as_bytes()), spec("secondary_structure")).unwrap();
        prop_assert_eq!(b.len(), rows.len());
        for (i, (seq, bit, x, classes)) in rows.iter().enumerate() {
            prop_assert_eq!(&b[i].sequence, &seq.to_ascii_uppercase());
            prop_assert_eq!(b[i].line, i + 2);
            prop_assert_eq!(&b[i].label, &Label::Binary(*bit));
            prop_assert_eq!(&n[i].label, &Label::Numeric(*x));
            prop_assert_eq!(&r[i].label, &Label::PerResidue(classes[..seq.len()].to_vec()));
        }
    }
}

#[test]
fn benchmark_csv_mutated() {
    let seed = sample_head("datasets/samples/signalP_sample.train.csv", 30);
    fuzz_mutated("signalP.csv", seed, b',', 384, |path| {
        for name in ["signalP_binary", "stability", "remote_homology"] {
            let spec = tables::benchmark(name).unwrap();
            parse_checked(&[path], Located::Line, || tables::read_benchmark_csv(path, spec))?;
        }
        Ok(())
    });
}

#[test]
fn per_residue_csv_mutated() {
    let seed = b"seq,label\nMKTAYIAKQR,0011220011\nMSSPPQ,000000\nMKV,121\n".to_vec();
    fuzz_mutated("ss.csv", seed, b',', 256, |path| {
        for name in ["secondary_structure", "disorder_secondary_structure"] {
            let spec = tables::benchmark(name).unwrap();
            parse_checked(&[path], Located::Line, || tables::read_benchmark_csv(path, spec))?;
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// PPI pair files and sequence dictionaries

proptest! {
    #![proptest_config(config(128, false))]

    /// Generated pair files and `id<TAB>sequence` dictionaries read back as written.
    #[test]
    fn ppi_generated(pairs in prop::collection::vec(("[A-Z][0-9A-Z]{1,8}", "[A-Z][0-9A-Z]{1,8}", 0u8..2), 1..20),
                     dict in prop::collection::btree_map("[A-Z][0-9A-Z]{1,8}", sequences(), 1..20)) {
        let scratch = Scratch::new();
        let text: String = pairs.iter().map(|(a, b, l)| format!("{a}\t{b}\t{l}\n")).collect();
        let got = ppi::read_pairs(scratch.write("pairs.tsv", text.as_bytes())).unwrap();
        let got: Vec<(String, String, u8)> = got.into_iter().map(|r| (r.pair.a, r.pair.b, r.pair.label)).collect();
        prop_assert_eq!(got, pairs);
        let text: String = dict.iter().map(|(id, s)| format!("{id}\t{s}\n")).collect();
        let mut d = SequenceDictionary::new();
        d.add_tsv(scratch.write("dict.tsv", text.as_bytes())).unwrap();
        prop_assert_eq!(d.len(), dict.len());
        for (id, s) in &dict {
            let upper = s.to_ascii_uppercase();
            prop_assert_eq!(d.get(id), Some(upper.as_str()));
        }
    }
}

#[test]
fn pairs_mutated() {
    let seed = sample_head("datasets/samples/pipr_yeast_sample/protein.actions.tsv", 30);
    fuzz_mutated("protein.actions.tsv", seed, b'\t', 512, |path| {
        parse_checked(&[path], Located::Line, || ppi::read_pairs(path))?;
        parse_checked(&[path], Located::Line, || ppi::read_id_column(path, false))?;
        Ok(())
    });
}

#[test]
fn sequence_dictionary_mutated() {
    let seed = sample_head("datasets/samples/pipr_yeast_sample/protein.dictionary.tsv", 20);
    fuzz_mutated("protein.dictionary.tsv", seed, b'\t', 512, |path| {
        parse_checked(&[path], Located::Line, || SequenceDictionary::new().add_tsv(path).map(|d| d.len()))?;
        parse_checked(&[path], Located::Line, || read_proteins(path))?;
        Ok(())
    });
}

#[test]
fn fasta_dictionary_and_pairs_together() {
    // A dictionary from a mutated FASTA, then a pair file against it: errors name whichever file.
    let fasta_seed = sample_head("datasets/samples/sample.fasta", 20);
    take_outcomes();
    let mut runner = TestRunner::new(config(128, false));
    runner
        .run(&mutations(b' '), |edits| {
            let scratch = Scratch::new();
            let fa = scratch.write("d.fasta", &apply(&fasta_seed, &edits));
            let pairs = scratch.write("p.tsv", b"A4FW11\tA4FW11\t1\nA4FW11\tQ00000\t0\n");
            let mut dict = SequenceDictionary::new();
            if parse_checked(&[&fa], Located::Line, || dict.add_fasta(&fa).map(|_| ()))?.is_some() {
                for missing in [ppi::MissingSequence::Error, ppi::MissingSequence::DropPair] {
                    parse_checked(&[&pairs], Located::Line, || ppi::PpiDataset::load(&pairs, &dict, missing))?;
                }
            }
            Ok(())
        })
        .unwrap();
    report_outcomes("FASTA dictionary + pairs");
}

// ---------------------------------------------------------------------------------------------
// GO graph and vocabulary

const RELATIONS: [&str; 5] = ["is_a", "part_of", "regulates", "positively_regulates", "negatively_regulates"];

proptest! {
    #![proptest_config(config(128, false))]

    /// A generated edge file reads back with every edge, in both column orders.
    #[test]
    fn go_graph_generated(edges in prop::collection::vec((0u32..40, 0u32..40, 0usize..5), 0..60), child_first in any::<bool>()) {
        let term = |n: u32| format!("GO:{n:07}");
        let text: String = edges
            .iter()
            .map(|&(c, p, r)| {
                let (first, second) = if child_first { (term(c), term(p)) } else { (term(p), term(c)) };
                format!("{first}\t{second}\t1\t{}\n", RELATIONS[r])
            })
            .collect();
        let scratch = Scratch::new();
        let path = scratch.write("go.txt", text.as_bytes());
        let columns = if child_first { EdgeColumns::ChildFirst } else { EdgeColumns::ParentFirst };
        let g = GoGraph::read_with_columns(&path, None, columns).unwrap();
        prop_assert_eq!(g.n_edges(), edges.len());
        for &(c, p, r) in &edges {
            prop_assert!(g.parents(&term(c)).contains(&(term(p).as_str(), RELATIONS[r])));
        }
        let ancestry = g.default_ancestry();
        for &(c, p, r) in &edges {
            if r < 2 && c != p {
                prop_assert!(ancestry.ancestors(&term(c)).unwrap().contains(&term(p).as_str()));
            }
        }
    }

    /// GoVocabulary: load(save(x)) == x.
    #[test]
    fn go_vocabulary_round_trip(proteins in prop::collection::vec(prop::collection::vec((0u32..200).prop_map(|n| format!("GO:{n:07}")), 0..6), 0..30), min in 1usize..3) {
        let (vocab, _) = GoVocabulary::build(&proteins, min);
        let scratch = Scratch::new();
        let path = scratch.path().join("go_terms.txt");
        vocab.save(&path).unwrap();
        prop_assert_eq!(GoVocabulary::load(&path).unwrap(), vocab);
    }
}

#[test]
fn go_graph_mutated() {
    let seed = b"GO:0008150\tGO:0009987\t1\tis_a\nGO:0009987\tGO:0008152\t1\tis_a\n\
        GO:0008152\tGO:0044237\t1\tpart_of\nGO:0005575\tGO:0005623\t1\tis_a\n\
        GO:0050789\tGO:0050794\t1\tregulates\nobsolete_biological_process\tGO:0000001\t1\tis_a\n"
        .to_vec();
    let names = b"GO:0008150\tbiological_process\nGO:0009987\tcellular process\n".to_vec();
    take_outcomes();
    let mut runner = TestRunner::new(config(512, false));
    runner
        .run(&(mutations(b'\t'), mutations(b'\t'), any::<bool>()), |(edge_edits, name_edits, gz)| {
            let scratch = Scratch::new();
            let edges = apply(&seed, &edge_edits);
            let graph = scratch.write("go.txt", &if gz { gzip(&edges) } else { edges });
            let names = scratch.write("go_names.txt", &apply(&names, &name_edits));
            for columns in [EdgeColumns::ParentFirst, EdgeColumns::ChildFirst] {
                if let Some(g) = parse_checked(&[&graph, &names], Located::Line, || {
                    GoGraph::read_with_columns(&graph, Some(&names), columns)
                })? {
                    let ancestry = g.default_ancestry();
                    let _ = ancestry.propagate(&["GO:0009987", "GO:9999999", "obsolete_biological_process"]);
                }
            }
            Ok(())
        })
        .unwrap();
    report_outcomes("GO graph + names");
}

#[test]
fn go_vocabulary_mutated() {
    let seed = b"GO:0005634\tnucleus\nGO:0005737\tcytoplasm\nGO:0016020\nGO:0005886\tplasma membrane\n".to_vec();
    fuzz_mutated("go_terms.txt", seed, b'\t', 256, |path| {
        parse_checked(&[path], Located::Line, || GoVocabulary::load(path))?;
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs the fuzzer found, kept with their exact bytes.

/// A benchmark CSV whose gzip stream is cut: the csv reader's I/O error has no position, and the
/// error said `signalP.csv:0`. Now it names the line after the last row read and the cut stream.
#[test]
fn regression_benchmark_csv_cut_gzip_names_a_real_line() {
    let text = b"label,seq\n0,MKTAYIAKQRQISFVKSHFSRQ\n1,MSSSPPQ\n0,MKVLAAGIVALLLAAGCSSS\n";
    let gz = gzip(text);
    let scratch = Scratch::new();
    let path = scratch.write("signalP.csv", &gz[..gz.len() - 12]);
    let spec = tables::benchmark("signalP_binary").unwrap();
    let err = tables::read_benchmark_csv(&path, spec).unwrap_err();
    let protein_lm::Error::Data { location, message } = &err else { panic!("{err:?}") };
    assert!(location.line.is_some_and(|l| l >= 2), "{err}");
    assert!(message.contains("gzip stream is truncated or corrupt"), "{err}");
}
