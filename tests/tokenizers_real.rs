//! Tokenizers on the real data (skipped with a `SKIPPED:` line when ../shared/datasets is absent, a
//! failure under CI: see `protein_lm::testing`).

use protein_lm::data::resolver::files;
use protein_lm::data::tables;
use protein_lm::testing::shared_data_all;
use protein_lm::tokenize::{BpeOptions, FairseqDictionary, ProbertaTokenizer, UnknownCounts};

#[test]
fn bpe_on_swissprot_matches_the_reference_statistics() {
    let Some([table, dict]) = shared_data_all([files::SWISSPROT_GO_SAMPLE, files::PROBERTA_DICT]) else { return };
    let (records, _) = tables::read_swissprot_go_limit(&table, 6_000).unwrap();
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
