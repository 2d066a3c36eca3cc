//! Readers for the tab- and comma-separated tables the papers use: the Swiss-Prot 2014 table with GO
//! terms, the human Pfam tables, and ProteinBERT's benchmark CSVs.
//!
//! Every reader checks the header by column name, validates every sequence, and reports problems with
//! the file and line. Duplicated accessions with identical content are merged and counted; with
//! different sequences they are an error.
//!
//! ```
//! use protein_lm::data::tables::{benchmark, read_benchmark_csv, Label};
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("stability.train.csv");
//! std::fs::write(&path, "seq,label\nMKVLA,0.37\nacdef,-1.2\n")?;
//! let records = read_benchmark_csv(&path, benchmark("stability")?)?;
//! assert_eq!(records[1].sequence, "ACDEF");
//! assert_eq!(records[0].label, Label::Numeric(0.37));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::data::fasta::open_maybe_gzip;
use crate::data::{sequence, FilterReport, Protein};
use crate::error::{Error, Location, Result};

/// Line-by-line reader of a headed, tab-separated file (plain or gzip) that checks the header and the
/// number of fields of every line.
pub struct TsvReader {
    path: PathBuf,
    lines: std::io::Lines<Box<dyn BufRead>>,
    line_no: usize,
    columns: Vec<String>,
}

impl TsvReader {
    /// Open `path` and check that its header has exactly `expected` columns, in that order.
    pub fn open(path: impl AsRef<Path>, expected: &[&str]) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut lines = open_maybe_gzip(&path)?.lines();
        let header = match lines.next() {
            None => return Err(Error::data(Location::file(&path), "empty file: expected a header line")),
            Some(h) => h.map_err(|e| Error::io(&path, e))?,
        };
        // A byte-order mark (spreadsheet exports write one) is not part of the first column's name.
        let header = header.strip_prefix('\u{feff}').unwrap_or(&header);
        let columns: Vec<String> = header.trim_end_matches('\r').split('\t').map(str::to_string).collect();
        if columns != expected {
            let missing: Vec<&str> = expected.iter().copied().filter(|c| !columns.iter().any(|h| h == c)).collect();
            let detail = if missing.is_empty() {
                "columns in a different order".to_string()
            } else {
                format!("missing column(s) {}", missing.join(", "))
            };
            return Err(Error::data(
                Location::line(&path, 1),
                format!("wrong header: expected `{}`, found `{}` ({detail})", expected.join("\t"), columns.join("\t")),
            ));
        }
        Ok(Self { path, lines, line_no: 1, columns })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next data line as owned fields with its 1-based line number; blank lines are skipped.
    pub fn next_record(&mut self) -> Result<Option<(usize, Vec<String>)>> {
        loop {
            let Some(line) = self.lines.next() else { return Ok(None) };
            self.line_no += 1;
            let line = line.map_err(|e| Error::read_failure(&self.path, self.line_no, e))?;
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let fields: Vec<String> = line.split('\t').map(str::to_string).collect();
            if fields.len() != self.columns.len() {
                return Err(Error::data(
                    Location::line(&self.path, self.line_no),
                    format!("expected {} tab-separated fields, found {}", self.columns.len(), fields.len()),
                ));
            }
            return Ok(Some((self.line_no, fields)));
        }
    }
}

/// Keeps the first occurrence of each accession; an identical repeat is counted, a repeat with a
/// different sequence is an error naming both lines.
struct UniqueAccessions {
    first_seen: HashMap<String, (usize, u64)>,
    report: FilterReport,
}

fn sequence_hash(seq: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seq.hash(&mut h);
    h.finish()
}

impl UniqueAccessions {
    fn new() -> Self {
        Self { first_seen: HashMap::new(), report: FilterReport::default() }
    }
    /// Returns whether the record is new.
    fn check(&mut self, path: &Path, line: usize, accession: &str, seq: &str) -> Result<bool> {
        let h = sequence_hash(seq);
        match self.first_seen.get(accession) {
            None => {
                self.first_seen.insert(accession.to_string(), (line, h));
                self.report.kept += 1;
                Ok(true)
            }
            Some(&(first, h0)) if h0 == h => {
                let _ = first;
                self.report.drop("identical duplicate accession");
                Ok(false)
            }
            Some(&(first, _)) => Err(Error::data(
                Location::line(path, line).with_record(accession),
                format!("accession {accession} appears again with a different sequence (first at line {first})"),
            )),
        }
    }
}

/// One protein of the Swiss-Prot 2014 table: direct (unpropagated) GO terms per ontology.
///
/// ```
/// use protein_lm::data::tables::read_swissprot_go;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("swissprot.tsv");
/// std::fs::write(&path, "accession\tlength\tgo_mf\tgo_bp\tgo_cc\tsequence\n\
///                        P1\t4\tGO:0003677\t\tGO:0005634;GO:0005737\tMKVL\n")?;
/// let (records, _) = read_swissprot_go(&path)?;
/// assert_eq!(records[0].go_terms().collect::<Vec<_>>(), ["GO:0003677", "GO:0005634", "GO:0005737"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwissProtRecord {
    pub accession: String,
    pub go_mf: Vec<String>,
    pub go_bp: Vec<String>,
    pub go_cc: Vec<String>,
    pub sequence: String,
}

impl SwissProtRecord {
    /// All GO terms of the three ontologies.
    pub fn go_terms(&self) -> impl Iterator<Item = &str> {
        self.go_mf.iter().chain(&self.go_bp).chain(&self.go_cc).map(String::as_str)
    }
    pub fn protein(&self) -> Protein {
        Protein { id: self.accession.clone(), sequence: self.sequence.clone() }
    }
}

pub const SWISSPROT_COLUMNS: [&str; 6] = ["accession", "length", "go_mf", "go_bp", "go_cc", "sequence"];

fn parse_go_list(field: &str, location: impl Fn() -> Location) -> Result<Vec<String>> {
    if field.is_empty() {
        return Ok(Vec::new());
    }
    field
        .split(';')
        .map(|t| {
            let ok = t.len() == 10 && t.starts_with("GO:") && t[3..].bytes().all(|b| b.is_ascii_digit());
            if ok {
                Ok(t.to_string())
            } else {
                Err(Error::data(location(), format!("`{t}` is not a GO identifier (GO:NNNNNNN)")))
            }
        })
        .collect()
}

/// Read the Swiss-Prot table with GO terms (`accession, length, go_mf, go_bp, go_cc, sequence`, gzip or
/// plain). The `length` column must equal the sequence length.
pub fn read_swissprot_go(path: impl AsRef<Path>) -> Result<(Vec<SwissProtRecord>, FilterReport)> {
    read_swissprot_go_limit(path, usize::MAX)
}

/// As [`read_swissprot_go`], stopping after `limit` records (for tiny and demo scales).
pub fn read_swissprot_go_limit(path: impl AsRef<Path>, limit: usize) -> Result<(Vec<SwissProtRecord>, FilterReport)> {
    let mut reader = TsvReader::open(path, &SWISSPROT_COLUMNS)?;
    let mut unique = UniqueAccessions::new();
    let mut records = Vec::new();
    while records.len() < limit {
        let Some((line, f)) = reader.next_record()? else { break };
        let path = reader.path().to_path_buf();
        let at = || Location::line(&path, line).with_record(&f[0]);
        let mut sequence = f[5].clone();
        unique.report.uppercased += usize::from(sequence::normalize(&mut sequence, at)?);
        let length: usize =
            f[1].parse().map_err(|_| Error::data(at(), format!("length `{}` is not a non-negative integer", f[1])))?;
        if length != sequence.len() {
            return Err(Error::data(
                at(),
                format!("length column says {length} but the sequence has {}", sequence.len()),
            ));
        }
        let record = SwissProtRecord {
            accession: f[0].clone(),
            go_mf: parse_go_list(&f[2], at)?,
            go_bp: parse_go_list(&f[3], at)?,
            go_cc: parse_go_list(&f[4], at)?,
            sequence,
        };
        if unique.check(&path, line, &record.accession, &record.sequence)? {
            records.push(record);
        }
    }
    if records.is_empty() {
        return Err(Error::data(Location::file(reader.path()), "no records after the header"));
    }
    Ok((records, unique.report))
}

/// A human protein with exactly one Pfam family (`human_swissprot_single_pfam.tsv`).
///
/// ```
/// use protein_lm::data::tables::read_single_pfam;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("single_pfam.tsv");
/// std::fs::write(&path, "accession\tpfam_id\tsequence\nP1\tPF00069\tMKVL\nP2\tPF00042\tACDE\n")?;
/// let (records, report) = read_single_pfam(&path)?;
/// assert_eq!((records[1].pfam_id.as_str(), report.total_dropped()), ("PF00042", 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfamRecord {
    pub accession: String,
    pub pfam_id: String,
    pub sequence: String,
}

/// A human protein with all its Pfam and PROSITE ids (`human_swissprot_pfam.tsv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanProteinRecord {
    pub accession: String,
    pub entrez_gene_ids: Vec<String>,
    pub pfam_ids: Vec<String>,
    pub prosite_ids: Vec<String>,
    pub sequence: String,
}

fn split_list(field: &str) -> Vec<String> {
    field.split([';', ',']).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

pub fn read_single_pfam(path: impl AsRef<Path>) -> Result<(Vec<PfamRecord>, FilterReport)> {
    let mut reader = TsvReader::open(path, &["accession", "pfam_id", "sequence"])?;
    let mut unique = UniqueAccessions::new();
    let mut records = Vec::new();
    while let Some((line, f)) = reader.next_record()? {
        let path = reader.path().to_path_buf();
        let at = || Location::line(&path, line).with_record(&f[0]);
        let mut sequence = f[2].clone();
        unique.report.uppercased += usize::from(sequence::normalize(&mut sequence, at)?);
        if !f[1].starts_with("PF") {
            return Err(Error::data(at(), format!("`{}` is not a Pfam identifier (PFnnnnn)", f[1])));
        }
        if unique.check(&path, line, &f[0], &sequence)? {
            records.push(PfamRecord { accession: f[0].clone(), pfam_id: f[1].clone(), sequence });
        }
    }
    if records.is_empty() {
        return Err(Error::data(Location::file(reader.path()), "no records after the header"));
    }
    Ok((records, unique.report))
}

/// The proteins of families with at least `min_members` proteins, grouped by family in Pfam-id
/// order (file order within a family): every such family, or with `n_families` a seeded draw of
/// that many of them (`Rng::new(seed)`, uniform without replacement), each cut to its first
/// `max_per_family` proteins when given. Notebook 01's tiny set is
/// `family_subset(&records, 5, Some(30), Some(20), 7)`.
///
/// ```
/// use protein_lm::data::tables::{family_subset, PfamRecord};
/// let record = |i: usize, family: &str| PfamRecord { accession: format!("P{i}"), pfam_id: family.into(), sequence: "MKV".into() };
/// let records: Vec<PfamRecord> =
///     (0..10).map(|i| record(i, if i < 6 { "PF00069" } else if i < 9 { "PF00042" } else { "PF00001" })).collect();
/// // Families of at least 3 proteins, at most 2 of each.
/// let subset = family_subset(&records, 3, None, Some(2), 7);
/// let picked: Vec<(&str, &str)> = subset.iter().map(|r| (r.pfam_id.as_str(), r.accession.as_str())).collect();
/// assert_eq!(picked, [("PF00042", "P6"), ("PF00042", "P7"), ("PF00069", "P0"), ("PF00069", "P1")]);
/// ```
pub fn family_subset(
    records: &[PfamRecord],
    min_members: usize,
    n_families: Option<usize>,
    max_per_family: Option<usize>,
    seed: u64,
) -> Vec<PfamRecord> {
    let mut by_family: std::collections::BTreeMap<&str, Vec<&PfamRecord>> = std::collections::BTreeMap::new();
    for r in records {
        by_family.entry(r.pfam_id.as_str()).or_default().push(r);
    }
    let large: Vec<&str> = by_family.iter().filter(|(_, m)| m.len() >= min_members).map(|(f, _)| *f).collect();
    let mut picked: Vec<&str> = match n_families {
        Some(n) if n < large.len() => {
            let mut rng = crate::rng::Rng::new(seed);
            rng.sample_without_replacement(large.len(), n).into_iter().map(|i| large[i]).collect()
        }
        _ => large,
    };
    picked.sort_unstable();
    picked
        .iter()
        .flat_map(|f| by_family[f].iter().take(max_per_family.unwrap_or(usize::MAX)).map(|r| (*r).clone()))
        .collect()
}

pub fn read_human_proteins(path: impl AsRef<Path>) -> Result<(Vec<HumanProteinRecord>, FilterReport)> {
    let columns = ["accession", "entrez_gene_ids", "pfam_ids", "n_pfam", "prosite_ids", "sequence"];
    let mut reader = TsvReader::open(path, &columns)?;
    let mut unique = UniqueAccessions::new();
    let mut records = Vec::new();
    while let Some((line, f)) = reader.next_record()? {
        let path = reader.path().to_path_buf();
        let at = || Location::line(&path, line).with_record(&f[0]);
        let mut sequence = f[5].clone();
        unique.report.uppercased += usize::from(sequence::normalize(&mut sequence, at)?);
        let pfam_ids = split_list(&f[2]);
        let n_pfam: usize =
            f[3].parse().map_err(|_| Error::data(at(), format!("n_pfam `{}` is not an integer", f[3])))?;
        if n_pfam != pfam_ids.len() {
            return Err(Error::data(at(), format!("n_pfam says {n_pfam} but {} Pfam ids are listed", pfam_ids.len())));
        }
        if unique.check(&path, line, &f[0], &sequence)? {
            records.push(HumanProteinRecord {
                accession: f[0].clone(),
                entrez_gene_ids: split_list(&f[1]),
                pfam_ids,
                prosite_ids: split_list(&f[4]),
                sequence,
            });
        }
    }
    if records.is_empty() {
        return Err(Error::data(Location::file(reader.path()), "no records after the header"));
    }
    Ok((records, unique.report))
}

/// What a benchmark predicts, as ProteinBERT's `OutputType(is_seq, kind)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LabelKind {
    Binary,
    Categorical,
    Numeric,
}

/// A benchmark of the ProteinBERT paper (Table 1): files, label type, metric and the paper's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchmarkSpec {
    /// File prefix under `proteinbert-benchmarks/`.
    pub name: &'static str,
    pub title: &'static str,
    pub kind: LabelKind,
    pub per_residue: bool,
    pub metric: &'static str,
    pub has_valid: bool,
    /// ProteinBERT's test score without pretraining and pretrained (paper, Table 2).
    pub paper_scores: (f64, f64),
}

/// The eight benchmarks of the ProteinBERT paper, in its Table 1 order.
///
/// ```
/// use protein_lm::data::tables::{LabelKind, BENCHMARKS};
/// let per_protein_numeric: Vec<&str> =
///     BENCHMARKS.iter().filter(|b| b.kind == LabelKind::Numeric && !b.per_residue).map(|b| b.name).collect();
/// assert_eq!(per_protein_numeric, ["fluorescence", "stability"]);
/// ```
pub const BENCHMARKS: [BenchmarkSpec; 8] = [
    BenchmarkSpec {
        name: "secondary_structure",
        title: "Secondary structure",
        kind: LabelKind::Categorical,
        per_residue: true,
        metric: "accuracy",
        has_valid: true,
        paper_scores: (0.704, 0.740),
    },
    BenchmarkSpec {
        name: "disorder_secondary_structure",
        title: "Disorder",
        kind: LabelKind::Binary,
        per_residue: true,
        metric: "roc_auc",
        has_valid: true,
        paper_scores: (0.862, 0.870),
    },
    BenchmarkSpec {
        name: "remote_homology",
        title: "Remote homology",
        kind: LabelKind::Categorical,
        per_residue: false,
        metric: "accuracy",
        has_valid: true,
        paper_scores: (0.063, 0.219),
    },
    BenchmarkSpec {
        name: "scop",
        title: "Fold classes",
        kind: LabelKind::Categorical,
        per_residue: false,
        metric: "accuracy",
        has_valid: false,
        paper_scores: (0.593, 0.884),
    },
    BenchmarkSpec {
        name: "signalP_binary",
        title: "Signal peptide",
        kind: LabelKind::Binary,
        per_residue: false,
        metric: "roc_auc",
        has_valid: false,
        paper_scores: (0.991, 0.996),
    },
    BenchmarkSpec {
        name: "ProFET_NP_SP_Cleaved",
        title: "Neuropeptide cleavage",
        kind: LabelKind::Binary,
        per_residue: false,
        metric: "roc_auc",
        has_valid: true,
        paper_scores: (0.940, 0.978),
    },
    BenchmarkSpec {
        name: "fluorescence",
        title: "Fluorescence",
        kind: LabelKind::Numeric,
        per_residue: false,
        metric: "spearman",
        has_valid: true,
        paper_scores: (0.647, 0.663),
    },
    BenchmarkSpec {
        name: "stability",
        title: "Stability",
        kind: LabelKind::Numeric,
        per_residue: false,
        metric: "spearman",
        has_valid: true,
        paper_scores: (0.634, 0.762),
    },
];

pub fn benchmark(name: &str) -> Result<&'static BenchmarkSpec> {
    BENCHMARKS.iter().find(|b| b.name == name).ok_or_else(|| {
        let names: Vec<&str> = BENCHMARKS.iter().map(|b| b.name).collect();
        Error::invalid(format!("unknown benchmark `{name}`; known: {}", names.join(", ")))
    })
}

/// A benchmark label, typed by the benchmark's [`LabelKind`] and `per_residue`.
///
/// ```
/// use protein_lm::data::tables::{benchmark, read_benchmark_csv, Label};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("disorder.csv");
/// // A per-residue benchmark: one class digit per residue.
/// std::fs::write(&path, "seq,label\nMKVL,0011\n")?;
/// let records = read_benchmark_csv(&path, benchmark("disorder_secondary_structure")?)?;
/// match &records[0].label {
///     Label::PerResidue(classes) => assert_eq!(classes, &[0, 0, 1, 1]),
///     other => panic!("a per-residue label, not {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    Binary(bool),
    Numeric(f64),
    /// Category names as written in the file (SCOP class letters, fold ids); the label set is built
    /// over all splits, as the reference does.
    Category(String),
    /// One label per residue: digits for categorical classes (0/1/2) or binary (0/1).
    PerResidue(Vec<u8>),
}

/// One row of a benchmark CSV: the sequence and its typed label.
///
/// ```
/// use protein_lm::data::tables::{benchmark, read_benchmark_csv, Label};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("signalP_binary.test.csv");
/// std::fs::write(&path, "label,seq\n1,MKKLLPTAAAGLLLLAAQPAMA\n0,MSTNPKPQRK\n")?;
/// let records = read_benchmark_csv(&path, benchmark("signalP_binary")?)?;
/// // Lines count from the header's 1, so a record can be found in the file.
/// assert_eq!((records[1].line, &records[1].label), (3, &Label::Binary(false)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BenchmarkRecord {
    pub sequence: String,
    pub label: Label,
    /// 1-based line in the CSV.
    pub line: usize,
}

/// Read one benchmark CSV (`seq,label` or `label,seq`, header required).
pub fn read_benchmark_csv(path: impl AsRef<Path>, spec: &BenchmarkSpec) -> Result<Vec<BenchmarkRecord>> {
    Ok(read_benchmark_csv_counted(path, spec)?.0)
}

/// As [`read_benchmark_csv`], with the number of sequences read with lower-case letters (kept as
/// upper case). A file with a header and no rows is an error.
pub fn read_benchmark_csv_counted(
    path: impl AsRef<Path>,
    spec: &BenchmarkSpec,
) -> Result<(Vec<BenchmarkRecord>, usize)> {
    let path = path.as_ref();
    let mut uppercased = 0;
    let reader = open_maybe_gzip(path)?;
    let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
    let header = csv.headers().map_err(|e| Error::data(Location::line(path, 1), e.to_string()))?.clone();
    let col = |name: &str| header.iter().position(|h| h.trim_start_matches('\u{feff}') == name);
    let (Some(seq_col), Some(label_col)) = (col("seq"), col("label")) else {
        return Err(Error::data(
            Location::line(path, 1),
            format!(
                "wrong header `{}`: expected columns `seq` and `label` (either order)",
                header.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    };
    if header.len() != 2 {
        return Err(Error::data(Location::line(path, 1), format!("expected 2 columns, found {}", header.len())));
    }
    let mut records = Vec::new();
    let mut last_line = 1;
    for row in csv.records() {
        let row = row.map_err(|e| {
            // A read failure (a cut or corrupt gzip stream) has no CSV position: it is past the last
            // row read, not on a line 0.
            let line = e.position().map_or(last_line + 1, |p| p.line() as usize);
            let message = format!("malformed CSV row: {e}");
            match e.into_kind() {
                csv::ErrorKind::Io(io) => Error::read_failure(path, line, io),
                _ => Error::data(Location::line(path, line), message),
            }
        })?;
        let line = row.position().map_or(last_line + 1, |p| p.line() as usize);
        last_line = line;
        let seq = row.get(seq_col).unwrap_or("");
        let raw = row.get(label_col).unwrap_or("").trim();
        let at = || Location::line(path, line);
        let mut sequence = seq.to_string();
        uppercased += usize::from(sequence::normalize(&mut sequence, at)?);
        let label = parse_label(raw, seq.len(), spec).map_err(|m| Error::data(at(), m))?;
        records.push(BenchmarkRecord { sequence, label, line });
    }
    if records.is_empty() {
        return Err(Error::data(Location::file(path), "no rows after the header"));
    }
    Ok((records, uppercased))
}

fn parse_label(raw: &str, seq_len: usize, spec: &BenchmarkSpec) -> std::result::Result<Label, String> {
    if raw.is_empty() {
        return Err("empty label".into());
    }
    if spec.per_residue {
        if raw.len() != seq_len {
            return Err(format!("per-residue label has {} characters but the sequence has {seq_len}", raw.len()));
        }
        let max = if spec.kind == LabelKind::Binary { b'1' } else { b'9' };
        return raw
            .bytes()
            .enumerate()
            .map(|(i, b)| {
                if (b'0'..=max).contains(&b) {
                    Ok(b - b'0')
                } else {
                    Err(format!(
                        "per-residue label character '{}' at residue {} is not a class digit 0–{}",
                        b as char,
                        i + 1,
                        max as char
                    ))
                }
            })
            .collect::<std::result::Result<Vec<u8>, String>>()
            .map(Label::PerResidue);
    }
    match spec.kind {
        LabelKind::Binary => match raw {
            "0" | "0.0" => Ok(Label::Binary(false)),
            "1" | "1.0" => Ok(Label::Binary(true)),
            _ => Err(format!("binary label `{raw}` is not 0 or 1")),
        },
        LabelKind::Numeric => match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Label::Numeric(v)),
            _ => Err(format!("numeric label `{raw}` is not a finite number")),
        },
        LabelKind::Categorical => Ok(Label::Category(raw.to_string())),
    }
}

/// The train / valid / test files of a benchmark (valid is `None` where the benchmark has none: the
/// reference then holds out 10 % of train, stratified).
#[derive(Debug, Clone)]
pub struct BenchmarkData {
    pub spec: &'static BenchmarkSpec,
    pub train: Vec<BenchmarkRecord>,
    pub valid: Option<Vec<BenchmarkRecord>>,
    pub test: Vec<BenchmarkRecord>,
    /// Sequences of all splits read with lower-case letters (kept as upper case).
    pub uppercased: usize,
}

/// The CSV files of a benchmark that `resolver` finds (train, valid, test), for provenance.
///
/// ```
/// use protein_lm::data::resolver::DataResolver;
/// use protein_lm::data::tables::benchmark_files;
/// let root = tempfile::tempdir()?;
/// std::fs::create_dir_all(root.path().join("proteinbert-benchmarks"))?;
/// for split in ["train", "test"] {
///     std::fs::write(root.path().join(format!("proteinbert-benchmarks/scop.{split}.csv")), "seq,label\n")?;
/// }
/// // scop has no validation file: two paths, not three.
/// let files = benchmark_files(&DataResolver::with_roots(vec![root.path().into()]), "scop");
/// assert_eq!(files.len(), 2);
/// assert!(files[1].ends_with("proteinbert-benchmarks/scop.test.csv"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn benchmark_files(resolver: &crate::data::resolver::DataResolver, benchmark: &str) -> Vec<std::path::PathBuf> {
    ["train", "valid", "test"]
        .iter()
        .filter_map(|s| resolver.resolve(&format!("proteinbert-benchmarks/{benchmark}.{s}.csv")).ok())
        .collect()
}

/// Load a benchmark through the data resolver.
///
/// ```no_run
/// use protein_lm::data::tables::load_benchmark;
/// let stability = load_benchmark("stability")?;
/// println!(
///     "{}: {} train, {} valid, {} test proteins; scored by {}",
///     stability.spec.title,
///     stability.train.len(),
///     stability.valid.as_ref().map_or(0, Vec::len),
///     stability.test.len(),
///     stability.spec.metric
/// );
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn load_benchmark(name: &str) -> Result<BenchmarkData> {
    let spec = benchmark(name)?;
    let resolver = crate::data::resolver::DataResolver::from_env();
    let file = |split: &str| format!("proteinbert-benchmarks/{}.{split}.csv", spec.name);
    let (train, mut uppercased) = read_benchmark_csv_counted(resolver.resolve(&file("train"))?, spec)?;
    let valid = match spec.has_valid {
        true => {
            let (valid, n) = read_benchmark_csv_counted(resolver.resolve(&file("valid"))?, spec)?;
            uppercased += n;
            Some(valid)
        }
        false => None,
    };
    let (test, n) = read_benchmark_csv_counted(resolver.resolve(&file("test"))?, spec)?;
    Ok(BenchmarkData { spec, train, valid, test, uppercased: uppercased + n })
}
