//! polars DataFrame views of the typed records, for notebooks that want a table to filter, group and
//! show (feature `polars`, off by default: polars is over half of a clean build).

use polars::prelude::*;

use crate::data::ppi::Pair;
use crate::data::tables::{BenchmarkRecord, Label, PfamRecord, SwissProtRecord};
use crate::data::Protein;
use crate::error::{Error, Result};

fn polars_err(e: PolarsError) -> Error {
    Error::invalid(format!("polars: {e}"))
}

fn frame(columns: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new_infer_height(columns).map_err(polars_err)
}

/// `accession, length, n_go_mf, n_go_bp, n_go_cc, go_mf, go_bp, go_cc, sequence` (GO lists `;`-joined).
pub fn swissprot_frame(records: &[SwissProtRecord]) -> Result<DataFrame> {
    let s = |f: fn(&SwissProtRecord) -> String| records.iter().map(f).collect::<Vec<_>>();
    let n = |f: fn(&SwissProtRecord) -> u32| records.iter().map(f).collect::<Vec<_>>();
    frame(vec![
        Column::new("accession".into(), s(|r| r.accession.clone())),
        Column::new("length".into(), n(|r| r.sequence.len() as u32)),
        Column::new("n_go_mf".into(), n(|r| r.go_mf.len() as u32)),
        Column::new("n_go_bp".into(), n(|r| r.go_bp.len() as u32)),
        Column::new("n_go_cc".into(), n(|r| r.go_cc.len() as u32)),
        Column::new("go_mf".into(), s(|r| r.go_mf.join(";"))),
        Column::new("go_bp".into(), s(|r| r.go_bp.join(";"))),
        Column::new("go_cc".into(), s(|r| r.go_cc.join(";"))),
        Column::new("sequence".into(), s(|r| r.sequence.clone())),
    ])
}

/// `accession, pfam_id, length, sequence`.
pub fn pfam_frame(records: &[PfamRecord]) -> Result<DataFrame> {
    frame(vec![
        Column::new("accession".into(), records.iter().map(|r| r.accession.as_str()).collect::<Vec<_>>()),
        Column::new("pfam_id".into(), records.iter().map(|r| r.pfam_id.as_str()).collect::<Vec<_>>()),
        Column::new("length".into(), records.iter().map(|r| r.sequence.len() as u32).collect::<Vec<_>>()),
        Column::new("sequence".into(), records.iter().map(|r| r.sequence.as_str()).collect::<Vec<_>>()),
    ])
}

/// `id, length, sequence`.
pub fn protein_frame(proteins: &[Protein]) -> Result<DataFrame> {
    frame(vec![
        Column::new("id".into(), proteins.iter().map(|p| p.id.as_str()).collect::<Vec<_>>()),
        Column::new("length".into(), proteins.iter().map(|p| p.sequence.len() as u32).collect::<Vec<_>>()),
        Column::new("sequence".into(), proteins.iter().map(|p| p.sequence.as_str()).collect::<Vec<_>>()),
    ])
}

/// `line, length, sequence, label`: the label column is boolean, float or string by label kind; a
/// per-residue label is shown as its digit string.
pub fn benchmark_frame(records: &[BenchmarkRecord]) -> Result<DataFrame> {
    let label = match records.first().map(|r| &r.label) {
        Some(Label::Binary(_)) => Column::new(
            "label".into(),
            records.iter().map(|r| matches!(r.label, Label::Binary(true))).collect::<Vec<_>>(),
        ),
        Some(Label::Numeric(_)) => Column::new(
            "label".into(),
            records.iter().map(|r| if let Label::Numeric(v) = r.label { v } else { f64::NAN }).collect::<Vec<_>>(),
        ),
        _ => Column::new(
            "label".into(),
            records
                .iter()
                .map(|r| match &r.label {
                    Label::Category(c) => c.clone(),
                    Label::PerResidue(v) => v.iter().map(|d| char::from(b'0' + d)).collect(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>(),
        ),
    };
    frame(vec![
        Column::new("line".into(), records.iter().map(|r| r.line as u32).collect::<Vec<_>>()),
        Column::new("length".into(), records.iter().map(|r| r.sequence.len() as u32).collect::<Vec<_>>()),
        Column::new("sequence".into(), records.iter().map(|r| r.sequence.as_str()).collect::<Vec<_>>()),
        label,
    ])
}

/// `a, b, label`.
pub fn pairs_frame(pairs: &[Pair]) -> Result<DataFrame> {
    frame(vec![
        Column::new("a".into(), pairs.iter().map(|p| p.a.as_str()).collect::<Vec<_>>()),
        Column::new("b".into(), pairs.iter().map(|p| p.b.as_str()).collect::<Vec<_>>()),
        Column::new("label".into(), pairs.iter().map(|p| p.label as u32).collect::<Vec<_>>()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_records_columns_and_rows() {
        let records = vec![
            SwissProtRecord {
                accession: "P1".into(),
                go_mf: vec!["GO:0005524".into()],
                go_bp: vec![],
                go_cc: vec!["GO:0005737".into(), "GO:0005634".into()],
                sequence: "MKT".into(),
            },
            SwissProtRecord {
                accession: "P2".into(),
                go_mf: vec![],
                go_bp: vec![],
                go_cc: vec![],
                sequence: "MK".into(),
            },
        ];
        let df = swissprot_frame(&records).unwrap();
        assert_eq!(df.shape(), (2, 9));
        let cc = df.column("n_go_cc").unwrap().u32().unwrap();
        assert_eq!(cc.get(0), Some(2));
        assert_eq!(df.column("length").unwrap().u32().unwrap().get(1), Some(2));
        let pairs = vec![Pair { a: "A".into(), b: "B".into(), label: 1 }];
        assert_eq!(pairs_frame(&pairs).unwrap().shape(), (1, 3));
    }
}
