//! Fuzzing the tokenizer files: fairseq `dict.txt` and the BPE's `tokenizer.json`. Generated
//! dictionaries must survive save → load unchanged; mutated files must load or fail with an error
//! naming the file (and the line for `dict.txt`), never panic, and a tokenizer that loads must
//! encode without panicking. Budget: see `fuzz_support`.

mod fuzz_support;

use std::sync::OnceLock;

use fuzz_support::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use protein_lm::tokenize::{
    BpeOptions, FairseqDictionary, PairTruncation, ProbertaTokenizer, SingleTruncation, UnknownCounts,
};

proptest! {
    #![proptest_config(config(256, false))]

    /// load(save(build(pieces))) == build(pieces), and ids follow fairseq's numbering.
    #[test]
    fn dict_round_trip(pieces in prop::collection::btree_map("▁?[A-Z]{1,16}", 0u64..u64::MAX, 0..60)) {
        let d = FairseqDictionary::build(pieces.clone());
        let scratch = Scratch::new();
        let path = scratch.path().join("dict.txt");
        d.save(&path).unwrap();
        let back = FairseqDictionary::load(&path).unwrap();
        prop_assert_eq!(&back, &d);
        prop_assert_eq!(back.len() % 8, 1);
        prop_assert_eq!(back.mask() as usize, back.len() - 1);
        prop_assert_eq!(back.pieces().count(), pieces.len());
        for (p, c) in &pieces {
            let id = back.id(p).unwrap();
            prop_assert!(id >= 4);
            prop_assert_eq!(back.count(id), Some(*c));
        }
    }
}

#[test]
fn dict_mutated() {
    let seed = read_sample("tests/fixtures/proberta/dict.txt");
    take_outcomes();
    TestRunner::new(config(512, false))
        .run(&mutations(b' '), |edits| {
            let scratch = Scratch::new();
            let path = scratch.write("dict.txt", &apply(&seed, &edits));
            if let Some(d) = parse_checked(&[&path], Located::Line, || FairseqDictionary::load(&path))? {
                // A loaded dictionary must be consistent: every symbol has one id, <mask> is last.
                prop_assert_eq!(d.mask() as usize, d.len() - 1);
                for id in 0..d.len() as u32 {
                    let symbol = d.symbol(id).unwrap();
                    prop_assert_eq!(d.id(symbol), Some(id), "symbol {:?} listed twice", symbol);
                }
                let tok = ProbertaTokenizer::dict_only(d);
                let mut u = UnknownCounts::default();
                tok.encode_single("MKTAYIAKQRLLLAGSS", SingleTruncation::default(), &mut u).unwrap();
            }
            Ok(())
        })
        .unwrap();
    report_outcomes("dict.txt");
}

/// A small trained BPE, saved once: the seed of the `tokenizer.json` mutations.
fn trained() -> &'static (Vec<u8>, Vec<u8>) {
    static TRAINED: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let mut rng = protein_lm::Rng::new(3);
        let motifs = ["MKT", "LLAG", "SSG", "PEPT"];
        let corpus: Vec<String> = (0..60)
            .map(|_| {
                let mut s = String::from("M");
                for _ in 0..(3 + rng.index(8)) {
                    s.push_str(motifs[rng.index(motifs.len())]);
                    s.push("ACDEFGHIKLMNPQRSTVWY".as_bytes()[rng.index(20)] as char);
                }
                s
            })
            .collect();
        let opts = BpeOptions { vocab_size: 40, ..Default::default() };
        let (tok, _) = ProbertaTokenizer::train(corpus.iter().map(String::as_str), &opts).unwrap();
        let files: std::collections::HashMap<String, Vec<u8>> = tok.files().unwrap().into_iter().collect();
        (files["dict.txt"].clone(), files["tokenizer.json"].clone())
    })
}

#[test]
fn tokenizer_json_mutated() {
    let (dict, json) = trained();
    take_outcomes();
    // JSON-aware edits: fields are split at commas and colons as well as bytes.
    TestRunner::new(config(384, false))
        .run(&(mutations(b','), any::<bool>()), |(edits, compact)| {
            let scratch = Scratch::new();
            scratch.write("dict.txt", dict);
            let seed = if compact {
                serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(json).unwrap()).unwrap()
            } else {
                json.clone()
            };
            let path = scratch.write("tokenizer.json", &apply(&seed, &edits));
            if let Some(tok) = parse_checked(&[&path], Located::File, || ProbertaTokenizer::load(scratch.path()))? {
                let mut u = UnknownCounts::default();
                for s in ["MKTLLAGSSGPEPT", "A", "MKTJXB"] {
                    parse_checked(&[&path], Located::File, || {
                        tok.encode_single(s, SingleTruncation::default(), &mut u)
                    })?;
                    parse_checked(&[&path], Located::File, || {
                        tok.encode_pair(s, "MKT", PairTruncation::default(), &mut u)
                    })?;
                }
            }
            Ok(())
        })
        .unwrap();
    report_outcomes("tokenizer.json");
}

#[test]
fn tokenizer_round_trip_of_the_trained_files() {
    let (dict, json) = trained();
    let scratch = Scratch::new();
    scratch.write("dict.txt", dict);
    scratch.write("tokenizer.json", json);
    let tok = ProbertaTokenizer::load(scratch.path()).unwrap();
    assert!(tok.is_exact());
    let files: std::collections::HashMap<String, Vec<u8>> = tok.files().unwrap().into_iter().collect();
    assert_eq!(&files["dict.txt"], dict);
    assert_eq!(&files["tokenizer.json"], json);
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs found while fuzzing, kept with their exact bytes.

/// A dict.txt listing a special symbol loaded with that symbol twice, the later id winning:
/// `<pad>` became id 4 and padding was looked up as a piece. fairseq refuses such a file
/// ("Duplicate word found"); so does the reader now, naming the line.
#[test]
fn regression_dict_special_symbol_is_refused() {
    for (text, line) in [("L 10\n<pad> 5\n", 2), ("<s> 1\n", 1), ("L 10\nA 9\n<mask> 3\n", 3), ("<unk> 0\n", 1)] {
        let scratch = Scratch::new();
        let path = scratch.write("dict.txt", text.as_bytes());
        let err = FairseqDictionary::load(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("dict.txt:{line}")) && err.contains("special"), "{text:?}: {err}");
    }
}

/// A mutated tokenizer.json cut inside its `decoder` field panicked in the tokenizers crate
/// (`expect("Helper")`, tokenizers 0.23.2 decoders/mod.rs:90). Now a JSON error naming the file.
#[test]
fn regression_tokenizer_json_cut_in_the_decoder() {
    let (dict, json) = trained();
    let text = String::from_utf8(json.clone()).unwrap();
    let at = text.find("\"decoder\"").unwrap() + "\"decoder\": {\"type\": \"Meta".len();
    let scratch = Scratch::new();
    scratch.write("dict.txt", dict);
    let path = scratch.write("tokenizer.json", &json[..at]);
    let err = ProbertaTokenizer::load(scratch.path()).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("EOF"), "{err}");
}

/// A tokenizer.json whose vocabulary lost `<unk>` loaded, then failed on the first protein with
/// a letter outside the vocabulary, in an error naming no file. Now refused at load.
#[test]
fn regression_tokenizer_json_without_unk() {
    let (dict, json) = trained();
    let mut value: serde_json::Value = serde_json::from_slice(json).unwrap();
    value["model"]["vocab"].as_object_mut().unwrap().remove("<unk>");
    let scratch = Scratch::new();
    scratch.write("dict.txt", dict);
    let path = scratch.write("tokenizer.json", &serde_json::to_vec(&value).unwrap());
    let err = ProbertaTokenizer::load(scratch.path()).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("<unk>"), "{err}");
}
