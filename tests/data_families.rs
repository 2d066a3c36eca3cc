//! `family_subset`: the family sets the family notebooks draw from the human single-Pfam table.

use protein_lm::data::resolver::files;
use protein_lm::data::tables::{family_subset, read_single_pfam, PfamRecord};
use protein_lm::Rng;

fn record(accession: &str, family: &str) -> PfamRecord {
    PfamRecord { accession: accession.into(), pfam_id: family.into(), sequence: "MKT".into() }
}

#[test]
fn families_above_the_threshold_are_kept_grouped_and_capped() {
    // PF3 has 4 members, PF1 3, PF2 1; file order interleaves them.
    let names = [
        ("a", "PF3"),
        ("b", "PF1"),
        ("c", "PF3"),
        ("d", "PF2"),
        ("e", "PF1"),
        ("f", "PF3"),
        ("g", "PF3"),
        ("h", "PF1"),
    ];
    let records: Vec<PfamRecord> = names.iter().map(|(a, f)| record(a, f)).collect();
    let ids = |v: &[PfamRecord]| v.iter().map(|r| r.accession.as_str()).collect::<String>();
    assert_eq!(ids(&family_subset(&records, 3, None, None, 0)), "behacfg", "Pfam-id order, file order within");
    assert_eq!(ids(&family_subset(&records, 3, None, Some(2), 0)), "beac");
    assert_eq!(ids(&family_subset(&records, 1, None, None, 0)), "behdacfg");
    assert_eq!(ids(&family_subset(&records, 5, None, None, 0)), "");
    // A draw of one of the two large families, seeded: the same as drawing by hand.
    let one = family_subset(&records, 3, Some(1), None, 9);
    let expected = ["PF1", "PF3"][Rng::new(9).sample_without_replacement(2, 1)[0]];
    assert!(one.iter().all(|r| r.pfam_id == expected) && !one.is_empty());
    assert_eq!(family_subset(&records, 3, Some(5), None, 9).len(), 7, "asking for more families keeps all");
}

#[test]
fn the_tiny_notebook_set_on_the_human_table() {
    let Some(path) = protein_lm::testing::shared_data(files::HUMAN_SINGLE_PFAM) else {
        return;
    };
    let (records, _) = read_single_pfam(&path).unwrap();
    // Notebook 01's tiny set: 30 of the 365 families with ≥ 5 members, at most 20 proteins each.
    let tiny = family_subset(&records, 5, Some(30), Some(20), 7);
    let mut families: Vec<&str> = tiny.iter().map(|r| r.pfam_id.as_str()).collect();
    families.dedup();
    assert_eq!((tiny.len(), families.len()), (318, 30));
    assert!(families.windows(2).all(|w| w[0] < w[1]), "grouped in Pfam-id order");
    assert_eq!(family_subset(&records, 5, None, None, 0).len(), 5_548);
}
