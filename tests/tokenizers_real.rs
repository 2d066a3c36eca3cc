//! Tokenizers on the real data (skipped with a `SKIPPED:` line when ../shared/datasets is absent, a
//! failure under CI: see `protein_lm::testing`).

use protein_lm::data::resolver::files;
use protein_lm::data::tables;
use protein_lm::testing::shared_data_all;
use protein_lm::tokenize::{BpeOptions, FairseqDictionary, ProbertaTokenizer, UnknownCounts};

#[test]
fn bpe_on_swissprot_matches_the_reference_statistics() {
    let Some([table, dict]) = shared_data_all([files::SWISSPROT_GO_SAMPLE, files::PROBERTA_DICT]) else { return };
    let (mut records, _) = tables::read_swissprot_go_limit(&table, 6_000 + 60).unwrap();
    let held_out = records.split_off(6_000);
    let (tok, report) =
        ProbertaTokenizer::train(records.iter().map(|r| r.sequence.as_str()), &BpeOptions::default()).unwrap();
    // Saved files load back into the same segmentation, merges included.
    let dir = tempfile::tempdir().unwrap();
    tok.save(dir.path()).unwrap();
    let loaded = ProbertaTokenizer::load(dir.path()).unwrap();
    assert!(loaded.is_exact());
    assert_eq!(loaded.files().unwrap(), tok.files().unwrap());
    let probe = &records[0].sequence;
    assert_eq!(loaded.pieces(probe).unwrap(), tok.pieces(probe).unwrap());
    // The reference's layout: 9,997 pieces → 10,009 fairseq ids, <mask> last.
    assert_eq!(report.pieces, 9_997);
    assert_eq!(tok.dictionary.len(), 10_009);
    assert_eq!(tok.dictionary.mask(), 10_008);
    // The original dictionary averages 2.574 residues per piece over ~363 k proteins; 6,000 proteins
    // give a close but not equal segmentation.
    assert!((2.3..2.9).contains(&report.residues_per_piece), "{report:?}");
    let original = FairseqDictionary::load(&dict).unwrap();
    let theirs: std::collections::HashSet<&str> = original.pieces().map(|(p, _)| p).collect();
    let shared = tok.dictionary.pieces().filter(|(p, _)| theirs.contains(p)).count();
    assert!(shared > 4_000, "only {shared} pieces shared with the original dict.txt");
    // Every piece is at most 16 characters, and only a protein's first piece carries ▁.
    assert!(tok.dictionary.pieces().all(|(p, _)| p.chars().count() <= 16));
    let pieces = tok.pieces(&records[0].sequence).unwrap();
    assert!(pieces[0].starts_with('▁') && pieces[1..].iter().all(|p| !p.contains('▁')));

    // SentencePiece itself, trained with the reference's options on the same proteins
    // (tests/fixtures/proberta/make_sentencepiece_fixtures.py). The trainers differ (HF `tokenizers`
    // vs SentencePiece: pair counting, tie breaking), so the vocabularies and segmentations are close,
    // not equal; the bounds sit a little under what was measured (see the fixture README).
    let (spm_pieces, spm) = sentencepiece_fixture();
    assert_eq!(report.sequences_used as u64, spm["train_sequences"].as_u64().unwrap(), "same training proteins");
    let ours: std::collections::HashSet<&str> = tok.dictionary.pieces().map(|(p, _)| p).collect();
    let common = spm_pieces.iter().filter(|(p, _)| ours.contains(p.as_str())).count();
    let (mut same_cut, mut cuts, mut same_protein) = (0usize, 0usize, 0usize);
    for (r, h) in held_out.iter().zip(spm["held_out"].as_array().unwrap()) {
        assert_eq!(r.accession, h["accession"].as_str().unwrap());
        let theirs: Vec<String> = serde_json::from_value(h["pieces"].clone()).unwrap();
        let ours = tok.pieces(&r.sequence).unwrap();
        let (a, b) = (cut_points(&ours), cut_points(&theirs));
        same_cut += a.intersection(&b).count();
        cuts += a.union(&b).count();
        same_protein += (ours == theirs) as usize;
    }
    let (piece_share, cut_share) = (common as f64 / spm_pieces.len() as f64, same_cut as f64 / cuts as f64);
    println!(
        "vs SentencePiece: {common} of {} pieces shared ({piece_share:.3}); cut points agree {cut_share:.3} (Jaccard) on {} held-out proteins, {same_protein} segmented identically",
        spm_pieces.len(),
        held_out.len()
    );
    // Measured (sentencepiece 0.2.3, tokenizers 0.23): 8,788 of 9,997 pieces (0.879), cut points 0.935.
    assert!(piece_share > 0.86, "only {common} of SentencePiece's pieces are ours ({piece_share:.3})");
    assert!(cut_share > 0.92, "cut points agree with SentencePiece's only {cut_share:.3}");
}

/// SentencePiece's pieces (without its three specials) with their scores, and its encodings.
fn sentencepiece_fixture() -> (Vec<(String, i64)>, serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proberta");
    let pieces = std::fs::read_to_string(dir.join("spm_pieces.tsv"))
        .unwrap()
        .lines()
        .map(|l| {
            let (p, s) = l.split_once('\t').unwrap();
            (p.to_string(), s.parse().unwrap())
        })
        .collect();
    let encodings = serde_json::from_str(&std::fs::read_to_string(dir.join("spm_encodings.json")).unwrap()).unwrap();
    (pieces, encodings)
}

/// Residue offsets where a segmentation cuts (the leading `▁` not counted).
fn cut_points(pieces: &[String]) -> std::collections::BTreeSet<usize> {
    let mut at = 0;
    pieces
        .iter()
        .map(|p| {
            at += p.chars().filter(|&c| c != '▁').count();
            at
        })
        .collect()
}

/// SentencePiece's BPE encoder merges, again and again, the adjacent pair whose concatenation is the
/// best-scoring piece (leftmost on ties) — what the crate's dictionary-only encoder does with counts
/// as scores. Given SentencePiece's own pieces ranked by its scores, the two must segment alike.
#[test]
fn dictionary_encoder_equals_sentencepiece_given_its_pieces() {
    let (spm_pieces, spm) = sentencepiece_fixture();
    let Some(table) = protein_lm::testing::shared_data(files::SWISSPROT_GO_SAMPLE) else { return };
    let (records, _) = tables::read_swissprot_go_limit(&table, 6_000 + 60).unwrap();
    let sequences: std::collections::HashMap<&str, &str> =
        records.iter().map(|r| (r.accession.as_str(), r.sequence.as_str())).collect();
    // Scores -9996 … 0 (higher first) → counts 4 … 10,000.
    let dict = FairseqDictionary::build(spm_pieces.iter().map(|(p, s)| (p.clone(), (10_000 + s) as u64)));
    let tok = ProbertaTokenizer::dict_only(dict);
    let held_out = spm["held_out"].as_array().unwrap();
    assert_eq!(held_out.len(), 60);
    for h in held_out {
        let accession = h["accession"].as_str().unwrap();
        let theirs: Vec<String> = serde_json::from_value(h["pieces"].clone()).unwrap();
        assert_eq!(tok.pieces(sequences[accession]).unwrap(), theirs, "{accession}");
    }
}

#[test]
fn original_dict_encodes_with_reference_like_piece_lengths() {
    let Some([table, dict]) = shared_data_all([files::SWISSPROT_GO_SAMPLE, files::PROBERTA_DICT]) else { return };
    let tok = ProbertaTokenizer::from_fairseq_dict(&dict).unwrap();
    assert!(!tok.is_exact());
    // What model directories carry: the original dict.txt byte for byte, and no merges.
    let files = tok.files().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].0.as_str(), &files[0].1), ("dict.txt", &std::fs::read(&dict).unwrap()));
    let (records, _) = tables::read_swissprot_go_limit(&table, 1_000).unwrap();
    let mut unknown = UnknownCounts::default();
    let (mut residues, mut pieces) = (0usize, 0usize);
    for r in &records {
        let ids = tok.encode_pieces(&r.sequence, &mut unknown).unwrap();
        assert!(ids.iter().all(|&i| (4..10_001).contains(&i) || i == 3));
        let text = tok.pieces(&r.sequence).unwrap();
        assert_eq!(text.concat().trim_start_matches('▁'), r.sequence);
        residues += r.sequence.len();
        pieces += ids.len();
    }
    let per_piece = residues as f64 / pieces as f64;
    // dict.txt's own counts give 2.574 residues per piece; the merge-free encoder lands near it.
    assert!((2.2..2.9).contains(&per_piece), "{per_piece}");
    assert_eq!(unknown.total(), 0, "every letter of these proteins is a piece of dict.txt: {unknown:?}");
}

/// The reference package's own tokenization (`proteinbert.tokenization.tokenize_seq`, padding by
/// `model_generation.tokenize_seqs`), recorded by `tests/fixtures/proteinbert/make_token_fixtures.py`.
fn reference_tokens() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proteinbert/tokens.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn residue_tokenizer_equals_the_reference_on_odd_inputs() {
    use protein_lm::tokenize::ResidueTokenizer;
    let fx = reference_tokens();
    let table: Vec<String> = serde_json::from_value(fx["token_table"].clone()).unwrap();
    assert_eq!(table.len(), protein_lm::tokenize::residue::VOCAB_SIZE);
    for (id, name) in table.iter().enumerate() {
        assert_eq!(ResidueTokenizer::token(id as u32), name, "id {id}");
    }
    for case in fx["odd"].as_array().unwrap() {
        let seq = case["seq"].as_str().unwrap();
        let mut unknown = UnknownCounts::default();
        let ours = ResidueTokenizer.encode(seq, &mut unknown);
        assert_eq!(ours, ids(&case["tokens"]), "{seq:?}");
        assert_eq!(ours, ids(&case["bytes_tokens"]), "{seq:?} (as UTF-8 bytes in the reference)");
        let other = ours.iter().filter(|&&t| t == protein_lm::tokenize::residue::OTHER).count();
        assert_eq!(unknown.total(), other, "{seq:?}: every <OTHER> is counted");
    }
}

#[test]
fn residue_tokenizer_equals_the_reference_on_real_proteins() {
    use protein_lm::tokenize::ResidueTokenizer;
    let fx = reference_tokens();
    let real = fx["real"].as_array().unwrap();
    let mut files: Vec<&str> = real.iter().map(|r| r["file"].as_str().unwrap()).collect();
    files.dedup();
    let mut paths = std::collections::HashMap::new();
    for f in files {
        let Some(p) = protein_lm::testing::shared_data(f) else { return };
        paths.insert(f, p);
    }
    let swissprot: std::collections::HashMap<String, String> = match paths.get(files::SWISSPROT_GO_SAMPLE) {
        Some(p) => tables::read_swissprot_go_limit(p, 5_000)
            .unwrap()
            .0
            .into_iter()
            .map(|r| (r.accession, r.sequence))
            .collect(),
        None => Default::default(),
    };
    let seq_len = fx["seq_len"].as_u64().unwrap() as usize;
    let mut letters = std::collections::BTreeSet::new();
    for r in real {
        let file = r["file"].as_str().unwrap();
        let seq = match r["accession"].as_str() {
            Some(acc) => swissprot[acc].clone(),
            None => {
                let text = std::fs::read_to_string(&paths[file]).unwrap();
                let mut lines = text.lines();
                let column = lines.next().unwrap().split(',').position(|c| c == r["column"].as_str().unwrap()).unwrap();
                let line = text.lines().nth(r["line"].as_u64().unwrap() as usize - 1).unwrap();
                line.split(',').nth(column).unwrap().to_string()
            }
        };
        assert_eq!(seq.chars().count() as u64, r["length"].as_u64().unwrap(), "{r}");
        letters.extend(seq.chars().filter(|c| !"ACDEFGHIKLMNPQRSTVWY".contains(*c)));
        let want = ids(&r["tokens"]);
        let mut unknown = UnknownCounts::default();
        assert_eq!(
            ResidueTokenizer.encode(&seq, &mut unknown),
            want,
            "{file} {}",
            r.get("line").or(r.get("accession")).unwrap()
        );
        let mut padded = want.clone();
        padded.resize(seq_len, protein_lm::tokenize::residue::PAD);
        assert_eq!(ResidueTokenizer.encode_padded(&seq, seq_len, &mut unknown).unwrap(), padded);
    }
    // The sample covers the letters with their own ids (U, X) and those mapped to <OTHER> (B, Z).
    assert!(['U', 'X', 'B', 'Z'].iter().all(|c| letters.contains(c)), "{letters:?}");
}
