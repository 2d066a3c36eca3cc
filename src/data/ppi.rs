//! Protein–protein interaction data: labelled pair files, sequence dictionaries, negative sampling as
//! the PRoBERTa paper did it, and how much a test set overlaps its training set.
//!
//! Pair files are `idA<TAB>idB<TAB>label` with a 0/1 label and no header (as in the PIPR yeast, HIPPIE
//! and Pan 2010 files). Sequences come from `id<TAB>sequence` dictionaries or FASTA files; several
//! sources can be merged (Pan 2010 needs two FASTA files).
//!
//! PRoBERTa trained on HIPPIE positives plus sampled negatives: "conservative" negatives are random
//! pairs of human proteins, "aggressive" negatives random pairs of proteins of the network that are not
//! connected in it. Random pairs are rarely true interactions because interaction networks are sparse.
//!
//! A test pair whose proteins both occur in training is much easier than one with unseen proteins, so
//! [`test_overlap`] splits test pairs into those classes to be reported separately.
//!
//! ```
//! use protein_lm::data::ppi::{test_overlap, MissingSequence, PpiDataset};
//! let dir = tempfile::tempdir()?;
//! let (pairs, dict) = (dir.path().join("pairs.tsv"), dir.path().join("dict.tsv"));
//! std::fs::write(&pairs, "A\tB\t1\nC\tD\t0\nB\tA\t1\n")?;
//! std::fs::write(&dict, "A\tMKV\nB\tACDE\nC\tWWY\nD\tMKL\n")?;
//! let (data, report) = PpiDataset::load_with_sequences(&pairs, &[&dict], MissingSequence::Error)?;
//! // B–A repeats A–B: left out, and counted.
//! assert_eq!((data.n_positive(), data.n_negative(), report.total_dropped()), (1, 1, 1));
//! let overlap = test_overlap(&data.pairs[..1], &data.pairs[1..]);
//! assert_eq!(overlap.counts(), [0, 0, 1]); // C–D shares no protein with the training pair
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use crate::data::{numbered_lines, sequence, FilterReport, Protein};
use crate::error::{Error, Location, Result};
use crate::rng::Rng;

/// One labelled pair: `label` is 1 for an interaction, 0 for a non-interaction.
///
/// ```
/// use protein_lm::data::ppi::Pair;
/// let ab = Pair { a: "YAL001C".into(), b: "YBR002W".into(), label: 1 };
/// let ba = Pair { a: "YBR002W".into(), b: "YAL001C".into(), label: 0 };
/// // Orientation does not make another pair.
/// assert_eq!(ab.unordered(), ba.unordered());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub label: u8,
}

impl Pair {
    /// The pair without orientation, for comparing pairs.
    pub fn unordered(&self) -> (&str, &str) {
        if self.a <= self.b {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        }
    }
}

/// A pair with the line it came from, so later checks can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairRecord {
    pub pair: Pair,
    pub line: usize,
}

fn check_id(id: &str, here: impl Fn() -> Location, column: &str) -> Result<()> {
    if id.is_empty() || id.chars().any(char::is_whitespace) {
        return Err(Error::data(here(), format!("{column} `{id}` is empty or contains whitespace")));
    }
    Ok(())
}

/// The non-blank lines of a headerless tab-separated file, each split into exactly `columns.len()`
/// fields (an error naming the line otherwise), with its line number.
fn headerless_rows(path: &Path, columns: &[&str]) -> Result<Vec<(usize, Vec<String>)>> {
    let mut rows = Vec::new();
    for line in numbered_lines(path)? {
        let (line_no, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<String> = line.split('\t').map(str::to_string).collect();
        if fields.len() != columns.len() {
            return Err(Error::data(
                Location::line(path, line_no),
                format!(
                    "expected {} tab-separated columns ({}), found {}",
                    columns.len(),
                    columns.join(", "),
                    fields.len()
                ),
            ));
        }
        rows.push((line_no, fields));
    }
    Ok(rows)
}

/// Read `idA<TAB>idB<TAB>label` lines (no header; blank lines skipped); a file without pairs is an
/// error.
pub fn read_pairs(path: impl AsRef<Path>) -> Result<Vec<PairRecord>> {
    let path = path.as_ref();
    let mut out = Vec::new();
    for (line_no, fields) in headerless_rows(path, &["idA", "idB", "label"])? {
        let here = || Location::line(path, line_no);
        check_id(&fields[0], here, "idA")?;
        check_id(&fields[1], here, "idB")?;
        let label = match fields[2].trim() {
            "0" => 0,
            "1" => 1,
            other => {
                return Err(Error::data(
                    here().with_record(format!("{} {}", fields[0], fields[1])),
                    format!("label `{other}` is not 0 or 1 (pair files have no header line)"),
                ))
            }
        };
        out.push(PairRecord {
            pair: Pair { a: fields[0].to_string(), b: fields[1].to_string(), label },
            line: line_no,
        });
    }
    if out.is_empty() {
        return Err(Error::data(Location::file(path), "no pairs in this file"));
    }
    Ok(out)
}

/// Read `id<TAB>sequence` lines (no header; blank lines skipped) in file order, each protein with
/// where it was read.
pub fn read_id_sequence_tsv(path: &Path) -> Result<Vec<(Protein, Location)>> {
    Ok(read_id_sequences(path)?.0)
}

/// As [`read_id_sequence_tsv`], with the count of proteins read and upper-cased.
pub fn read_id_sequences(path: &Path) -> Result<(Vec<(Protein, Location)>, FilterReport)> {
    let mut out = Vec::new();
    let mut report = FilterReport::default();
    for (line_no, fields) in headerless_rows(path, &["id", "sequence"])? {
        let here = || Location::line(path, line_no);
        check_id(&fields[0], here, "id")?;
        let mut seq = fields[1].to_string();
        report.uppercased += usize::from(sequence::normalize(&mut seq, || here().with_record(&fields[0]))?);
        out.push((Protein { id: fields[0].to_string(), sequence: seq }, here().with_record(fields[0].as_str())));
    }
    report.kept = out.len();
    Ok((out, report))
}

/// Sequences by protein id, merged from one or more files. The same id may appear twice only with the
/// same sequence; otherwise it is an error naming both places.
#[derive(Debug, Clone, Default)]
pub struct SequenceDictionary {
    entries: HashMap<String, (String, Location)>,
    /// Sequences read with lower-case letters (kept as upper case).
    uppercased: usize,
}

impl SequenceDictionary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an `id<TAB>sequence` file (no header).
    pub fn add_tsv(&mut self, path: impl AsRef<Path>) -> Result<&mut Self> {
        let (rows, report) = read_id_sequences(path.as_ref())?;
        for (protein, location) in rows {
            self.insert(&protein.id, &protein.sequence, location)?;
        }
        self.uppercased += report.uppercased;
        Ok(self)
    }

    /// Add a FASTA file (id = header up to the first whitespace).
    pub fn add_fasta(&mut self, path: impl AsRef<Path>) -> Result<&mut Self> {
        let path = path.as_ref();
        let mut reader = crate::data::fasta::FastaReader::open(path)?;
        for record in reader.by_ref() {
            let record = record?;
            let here = Location::line(path, record.line).with_record(&record.id);
            self.insert(&record.id, &record.sequence, here)?;
        }
        self.uppercased += reader.uppercased();
        Ok(self)
    }

    /// Add one sequence; `location` is where it came from, for a later conflict message.
    pub fn insert(&mut self, id: &str, seq: &str, location: Location) -> Result<()> {
        match self.entries.get(id) {
            Some((existing, first)) if existing != seq => Err(Error::data(
                location,
                format!("protein {id} was already read with a different sequence at {first}"),
            )),
            Some(_) => Ok(()),
            None => {
                self.entries.insert(id.to_string(), (seq.to_string(), location));
                Ok(())
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&str> {
        self.entries.get(id).map(|(s, _)| s.as_str())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sequences read so far with lower-case letters (kept as upper case).
    pub fn uppercased(&self) -> usize {
        self.uppercased
    }
}

/// What to do with a pair whose protein has no sequence.
///
/// ```
/// use protein_lm::data::ppi::{MissingSequence, PpiDataset};
/// let dir = tempfile::tempdir()?;
/// let (pairs, dict) = (dir.path().join("pairs.tsv"), dir.path().join("dict.tsv"));
/// std::fs::write(&pairs, "A\tB\t1\nA\tX\t0\n")?;
/// std::fs::write(&dict, "A\tMKV\nB\tACDE\n")?;
/// // X has no sequence: an error by default, a counted omission on request.
/// assert!(PpiDataset::load_with_sequences(&pairs, &[&dict], MissingSequence::Error).is_err());
/// let (data, report) = PpiDataset::load_with_sequences(&pairs, &[&dict], MissingSequence::DropPair)?;
/// assert_eq!((data.pairs.len(), report.total_dropped()), (1, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingSequence {
    /// Stop with an error naming the pair's line and the id.
    #[default]
    Error,
    /// Leave the pair out and count it in the report.
    DropPair,
}

/// Labelled pairs and the sequences of every protein they mention.
///
/// ```
/// use protein_lm::data::ppi::{MissingSequence, PpiDataset};
/// let dir = tempfile::tempdir()?;
/// let (pairs, fasta) = (dir.path().join("pairs.tsv"), dir.path().join("seqs.fasta"));
/// std::fs::write(&pairs, "A\tB\t1\nB\tC\t0\n")?;
/// std::fs::write(&fasta, ">A\nMKV\n>B\nACDE\n>C\nWWY\n")?;
/// let (data, _) = PpiDataset::load_with_sequences(&pairs, &[&fasta], MissingSequence::Error)?;
/// assert_eq!(data.positives().len(), 1);
/// assert_eq!(data.sequences["C"], "WWY");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PpiDataset {
    pub pairs: Vec<Pair>,
    /// Sequences of the proteins in `pairs` (only those).
    pub sequences: BTreeMap<String, String>,
}

impl PpiDataset {
    /// Read a pair file and attach sequences from `dictionary`.
    pub fn load(
        pairs_path: impl AsRef<Path>,
        dictionary: &SequenceDictionary,
        missing: MissingSequence,
    ) -> Result<(Self, FilterReport)> {
        let pairs_path = pairs_path.as_ref();
        let records = read_pairs(pairs_path)?;
        Self::from_records(records, pairs_path, dictionary, missing)
    }

    /// Read a pair file and attach sequences from `sequence_files` (FASTA or `id<TAB>sequence`,
    /// told apart by their first line; at least one), with the report of pairs left out and of
    /// sequences upper-cased.
    pub fn load_with_sequences(
        pairs_path: impl AsRef<Path>,
        sequence_files: &[impl AsRef<Path>],
        missing: MissingSequence,
    ) -> Result<(Self, FilterReport)> {
        let pairs_path = pairs_path.as_ref();
        if sequence_files.is_empty() {
            return Err(Error::invalid(format!(
                "{}: no sequence file given (a pair file names proteins; their sequences come from an \
                 `id<TAB>sequence` or FASTA file)",
                pairs_path.display()
            )));
        }
        let mut dictionary = SequenceDictionary::new();
        for file in sequence_files {
            let file = file.as_ref();
            if crate::data::sniff_format(file)? == crate::data::ProteinFileFormat::Fasta {
                dictionary.add_fasta(file)?;
            } else {
                dictionary.add_tsv(file)?;
            }
        }
        let (data, mut report) = Self::load(pairs_path, &dictionary, missing)?;
        report.uppercased += dictionary.uppercased;
        Ok((data, report))
    }

    /// Attach sequences to pairs read from `source` (named in errors). A pair that comes again, in
    /// either orientation, is left out and counted: with the same label it is a duplicate (HIPPIE
    /// HQ has 734, which a random split would put on both sides of train and test), with the other
    /// label a contradiction (Pan 2010 has 26), where the first line is kept.
    pub fn from_records(
        records: Vec<PairRecord>,
        source: &Path,
        dictionary: &SequenceDictionary,
        missing: MissingSequence,
    ) -> Result<(Self, FilterReport)> {
        let mut dataset = Self::default();
        let mut report = FilterReport::default();
        let mut labels: HashMap<(String, String), u8> = HashMap::new();
        for record in records {
            let (a, b) = record.pair.unordered();
            match labels.get(&(a.to_string(), b.to_string())) {
                Some(&label) if label == record.pair.label => {
                    report.drop("duplicate pair (either orientation)");
                    continue;
                }
                Some(_) => {
                    report.drop("pair repeated with the other label (the first line kept)");
                    continue;
                }
                None => {
                    labels.insert((a.to_string(), b.to_string()), record.pair.label);
                }
            }
            let absent = [&record.pair.a, &record.pair.b].into_iter().find(|id| dictionary.get(id).is_none());
            if let Some(id) = absent {
                match missing {
                    MissingSequence::Error => {
                        return Err(Error::data(
                            Location::line(source, record.line)
                                .with_record(format!("{} {}", record.pair.a, record.pair.b)),
                            format!(
                                "no sequence for protein {id} (to leave such pairs out and count them: \
                                 --drop-pairs-without-sequence, or MissingSequence::DropPair)"
                            ),
                        ))
                    }
                    MissingSequence::DropPair => {
                        report.drop("a protein of the pair has no sequence");
                        continue;
                    }
                }
            }
            for id in [&record.pair.a, &record.pair.b] {
                if !dataset.sequences.contains_key(id.as_str()) {
                    let seq = dictionary.get(id).unwrap_or_default();
                    dataset.sequences.insert(id.clone(), seq.to_string());
                }
            }
            dataset.pairs.push(record.pair);
        }
        report.kept = dataset.pairs.len();
        Ok((dataset, report))
    }

    pub fn n_positive(&self) -> usize {
        self.pairs.iter().filter(|p| p.label == 1).count()
    }

    pub fn n_negative(&self) -> usize {
        self.pairs.iter().filter(|p| p.label == 0).count()
    }

    pub fn positives(&self) -> Vec<Pair> {
        self.pairs.iter().filter(|p| p.label == 1).cloned().collect()
    }
}

/// Read the first tab-separated column of a file as protein ids, e.g. a proteome for conservative
/// negatives (`human_swissprot_pfam.tsv` has a header, so `skip_header` is true for it).
pub fn read_id_column(path: impl AsRef<Path>, skip_header: bool) -> Result<Vec<String>> {
    let path = path.as_ref();
    let mut ids = Vec::new();
    for line in numbered_lines(path)?.skip(usize::from(skip_header)) {
        let (line_no, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        let id = line.split('\t').next().unwrap_or_default();
        check_id(id, || Location::line(path, line_no), "id")?;
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// How many negatives to draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NegativeCount {
    Exactly(usize),
    /// `round(ratio × number of positive pairs)`; PRoBERTa's conservative set had ≈ 2.2 : 1.
    RatioToPositives(f64),
}

impl NegativeCount {
    fn resolve(self, n_positive: usize) -> Result<usize> {
        match self {
            NegativeCount::Exactly(k) => Ok(k),
            NegativeCount::RatioToPositives(r) if r.is_finite() && r >= 0.0 => {
                Ok((r * n_positive as f64).round() as usize)
            }
            NegativeCount::RatioToPositives(r) => {
                Err(Error::invalid(format!("negative-to-positive ratio {r} is not a finite non-negative number")))
            }
        }
    }
}

/// "Conservative" negatives: random pairs of distinct proteins of `proteome`, none of them a known
/// positive in either orientation, no pair twice. Label 0. The proteome is deduplicated and sorted
/// first, so the result depends on the set of ids, not their order in a file.
pub fn conservative_negatives(
    positives: &[Pair],
    proteome: &[String],
    count: NegativeCount,
    rng: &mut Rng,
) -> Result<Vec<Pair>> {
    let mut candidates: Vec<&str> = proteome.iter().map(String::as_str).collect();
    candidates.sort_unstable();
    candidates.dedup();
    sample_negatives(positives, &candidates, count, rng, "proteins in the proteome")
}

/// "Aggressive" negatives: random pairs of distinct proteins that occur in the positive network but
/// are not connected in it, no pair twice. Label 0.
pub fn aggressive_negatives(positives: &[Pair], count: NegativeCount, rng: &mut Rng) -> Result<Vec<Pair>> {
    let mut candidates: Vec<&str> =
        positives.iter().filter(|p| p.label == 1).flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
    candidates.sort_unstable();
    candidates.dedup();
    sample_negatives(positives, &candidates, count, rng, "proteins in the network")
}

/// The PRoBERTa paper's two ways of sampling negatives for a positive-only network.
///
/// ```
/// use protein_lm::data::ppi::{add_negatives, NegativeScheme, Pair, PpiDataset};
/// use protein_lm::Rng;
/// let positive = |a: &str, b: &str| Pair { a: a.into(), b: b.into(), label: 1 };
/// let mut data = PpiDataset { pairs: vec![positive("A", "B"), positive("C", "D"), positive("E", "F")], ..Default::default() };
/// // Aggressive negatives pair network proteins that are not connected; no proteome needed.
/// let added = add_negatives(&mut data, NegativeScheme::Aggressive, 1.0, &[], &mut Rng::new(0))?;
/// assert_eq!((added, data.n_negative()), (3, 3));
/// assert_eq!(NegativeScheme::Conservative.paper_ratio(), 2.175);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeScheme {
    /// Random pairs of proteins of a proteome ([`conservative_negatives`]).
    Conservative,
    /// Random unconnected pairs of network proteins ([`aggressive_negatives`]).
    Aggressive,
}

impl NegativeScheme {
    /// Negatives per positive in the paper (§2.4.2), to three decimals as the shipped configs carry
    /// them: conservative 411,428 / 189,135 ≈ 2.175, aggressive 275,402 / 261,143 ≈ 1.055.
    pub fn paper_ratio(self) -> f64 {
        match self {
            NegativeScheme::Conservative => 2.175,
            NegativeScheme::Aggressive => 1.055,
        }
    }
}

/// Adds `ratio` × (positive pairs) sampled negatives to `data` and returns how many. Conservative
/// negatives come from `proteome`, whose sequences are added for the proteins they use.
pub fn add_negatives(
    data: &mut PpiDataset,
    scheme: NegativeScheme,
    ratio: f64,
    proteome: &[Protein],
    rng: &mut Rng,
) -> Result<usize> {
    let positives = data.positives();
    let count = NegativeCount::RatioToPositives(ratio);
    let negatives = match scheme {
        NegativeScheme::Aggressive => aggressive_negatives(&positives, count, rng)?,
        NegativeScheme::Conservative => {
            let ids: Vec<String> = proteome.iter().map(|p| p.id.clone()).collect();
            let negatives = conservative_negatives(&positives, &ids, count, rng)?;
            let sequences: HashMap<&str, &str> =
                proteome.iter().map(|p| (p.id.as_str(), p.sequence.as_str())).collect();
            for p in &negatives {
                for id in [&p.a, &p.b] {
                    if !data.sequences.contains_key(id) {
                        data.sequences.insert(id.clone(), sequences[id.as_str()].to_string());
                    }
                }
            }
            negatives
        }
    };
    let n = negatives.len();
    data.pairs.extend(negatives);
    Ok(n)
}

fn pair_key(i: usize, j: usize) -> (u32, u32) {
    if i < j {
        (i as u32, j as u32)
    } else {
        (j as u32, i as u32)
    }
}

fn sample_negatives(
    positives: &[Pair],
    candidates: &[&str],
    count: NegativeCount,
    rng: &mut Rng,
    what: &str,
) -> Result<Vec<Pair>> {
    let positives: Vec<&Pair> = positives.iter().filter(|p| p.label == 1).collect();
    let wanted = count.resolve(positives.len())?;
    let m = candidates.len();
    if m > u32::MAX as usize {
        return Err(Error::invalid(format!("{m} {what}: too many to index")));
    }
    let index: HashMap<&str, usize> = candidates.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    // Only positives among the candidates can be drawn, so only they reduce what is available.
    let forbidden: HashSet<(u32, u32)> = positives
        .iter()
        .filter_map(|p| match (index.get(p.a.as_str()), index.get(p.b.as_str())) {
            (Some(&i), Some(&j)) if i != j => Some(pair_key(i, j)),
            _ => None,
        })
        .collect();
    let all_pairs = m * m.saturating_sub(1) / 2;
    let available = all_pairs - forbidden.len();
    if wanted > available {
        return Err(Error::invalid(format!(
            "asked for {wanted} negatives, but {m} {what} give only {available} pairs that are neither self-pairs nor known positives"
        )));
    }
    let make = |i: usize, j: usize| Pair { a: candidates[i].to_string(), b: candidates[j].to_string(), label: 0 };
    if wanted * 2 > available {
        // Dense request: rejection sampling would spend most draws on taken pairs, so enumerate.
        let mut open: Vec<(usize, usize)> = Vec::with_capacity(available);
        for i in 0..m {
            for j in i + 1..m {
                if !forbidden.contains(&pair_key(i, j)) {
                    open.push((i, j));
                }
            }
        }
        return Ok(rng
            .sample_without_replacement(open.len(), wanted)
            .into_iter()
            .map(|k| {
                let (i, j) = open[k];
                // Enumeration put the smaller index first; a coin keeps orientations random.
                if rng.bernoulli(0.5) {
                    make(j, i)
                } else {
                    make(i, j)
                }
            })
            .collect());
    }
    let mut chosen: HashSet<(u32, u32)> = HashSet::with_capacity(wanted);
    let mut out = Vec::with_capacity(wanted);
    while out.len() < wanted {
        let i = rng.index(m);
        let j = rng.index(m);
        if i == j {
            continue;
        }
        let key = pair_key(i, j);
        if forbidden.contains(&key) || !chosen.insert(key) {
            continue;
        }
        out.push(make(i, j));
    }
    Ok(out)
}

/// Test pairs classified by how many of their proteins occur in the training pairs, plus test pairs
/// whose unordered pair is itself a training pair. Each list holds indices into the test pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TestOverlap {
    pub both_seen: Vec<usize>,
    pub one_seen: Vec<usize>,
    pub none_seen: Vec<usize>,
    /// The same unordered pair (any label) occurs in training.
    pub pair_in_train: Vec<usize>,
}

impl TestOverlap {
    pub fn counts(&self) -> [usize; 3] {
        [self.both_seen.len(), self.one_seen.len(), self.none_seen.len()]
    }
}

impl fmt::Display for TestOverlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.both_seen.len() + self.one_seen.len() + self.none_seen.len();
        write!(
            f,
            "{total} test pairs: both proteins seen in training {}, one {}, none {}; same pair in training {}",
            self.both_seen.len(),
            self.one_seen.len(),
            self.none_seen.len(),
            self.pair_in_train.len()
        )
    }
}

/// Classify `test` pairs against the proteins and pairs of `train`.
///
/// ```
/// use protein_lm::data::ppi::{test_overlap, Pair};
/// let pair = |a: &str, b: &str| Pair { a: a.into(), b: b.into(), label: 1 };
/// let train = [pair("A", "B"), pair("C", "D")];
/// let test = [pair("B", "A"), pair("A", "C"), pair("A", "X"), pair("X", "Y")];
/// let overlap = test_overlap(&train, &test);
/// assert_eq!(overlap.counts(), [2, 1, 1]); // both, one, no protein seen
/// assert_eq!(overlap.pair_in_train, [0]); // B–A is A–B
/// println!("{overlap}");
/// ```
pub fn test_overlap(train: &[Pair], test: &[Pair]) -> TestOverlap {
    let seen: HashSet<&str> = train.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
    let train_pairs: HashSet<(&str, &str)> = train.iter().map(Pair::unordered).collect();
    let mut overlap = TestOverlap::default();
    for (k, p) in test.iter().enumerate() {
        let n_seen = usize::from(seen.contains(p.a.as_str())) + usize::from(seen.contains(p.b.as_str()));
        match n_seen {
            2 => overlap.both_seen.push(k),
            1 => overlap.one_seen.push(k),
            _ => overlap.none_seen.push(k),
        }
        if train_pairs.contains(&p.unordered()) {
            overlap.pair_in_train.push(k);
        }
    }
    overlap
}

/// A protein-disjoint split: the proteins (not the pairs) are shuffled and cut by `fractions`; a pair
/// belongs to split k when both its proteins are in k, and pairs whose proteins fall in different
/// splits are left out and counted. Every test pair then has no protein seen in training, the
/// setting in which PPI predictors are known to drop towards chance (Park & Marcotte 2012).
/// Returns the pair indices of each split and the report of what was left out.
pub fn protein_disjoint_split(
    pairs: &[Pair],
    fractions: &[f64],
    rng: &mut Rng,
) -> Result<(Vec<Vec<usize>>, FilterReport)> {
    let mut proteins: Vec<&str> = pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
    proteins.sort_unstable();
    proteins.dedup();
    let groups = crate::data::splits::random_split(proteins.len(), fractions, rng)?;
    let mut split_of: HashMap<&str, usize> = HashMap::with_capacity(proteins.len());
    for (k, group) in groups.iter().enumerate() {
        for &i in group {
            split_of.insert(proteins[i], k);
        }
    }
    let mut parts = vec![Vec::new(); fractions.len()];
    let mut report = FilterReport::default();
    for (i, p) in pairs.iter().enumerate() {
        let (ka, kb) = (split_of[p.a.as_str()], split_of[p.b.as_str()]);
        if ka == kb {
            parts[ka].push(i);
            report.kept += 1;
        } else {
            report.drop("proteins of the pair fall in different splits");
        }
    }
    Ok((parts, report))
}

/// Where the project's shared real data would be, for the tests below.
#[cfg(test)]
fn shared_ppi_dir(name: &str) -> Option<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/ppi").join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        crate::testing::skip(&format!("{} not present", dir.display()));
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paper_ratios_are_the_papers_counts() {
        for (scheme, negatives, positives) in
            [(NegativeScheme::Conservative, 411_428.0, 189_135.0), (NegativeScheme::Aggressive, 275_402.0, 261_143.0)]
        {
            assert!((scheme.paper_ratio() - negatives / positives).abs() < 5e-4, "{scheme:?}");
        }
    }

    use super::*;
    use std::path::PathBuf;

    #[test]
    fn pairs_without_a_sequence_file_are_an_error_naming_the_pair_file() {
        let err = PpiDataset::load_with_sequences("pairs.tsv", &[] as &[PathBuf], MissingSequence::Error)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pairs.tsv") && err.contains("no sequence file"), "{err}");
    }

    #[test]
    fn repeated_pairs_are_left_out_and_counted() {
        let record = |a: &str, b: &str, label: u8, line: usize| PairRecord {
            pair: Pair { a: a.into(), b: b.into(), label },
            line,
        };
        let mut dictionary = SequenceDictionary::new();
        for id in ["A", "B", "C"] {
            dictionary.insert(id, "MKV", Location::file("dict")).unwrap();
        }
        let records = vec![
            record("A", "B", 1, 1),
            record("B", "A", 1, 2),
            record("A", "B", 0, 3),
            record("A", "A", 1, 4),
            record("A", "C", 0, 5),
        ];
        let (data, report) =
            PpiDataset::from_records(records, Path::new("pairs.tsv"), &dictionary, MissingSequence::Error).unwrap();
        let kept: Vec<(&str, &str, u8)> = data.pairs.iter().map(|p| (p.a.as_str(), p.b.as_str(), p.label)).collect();
        assert_eq!(kept, vec![("A", "B", 1), ("A", "A", 1), ("A", "C", 0)]);
        assert_eq!(report.kept, 3);
        assert_eq!(report.total_dropped(), 2);
        assert_eq!(
            report.dropped,
            vec![
                ("duplicate pair (either orientation)".to_string(), 1),
                ("pair repeated with the other label (the first line kept)".to_string(), 1)
            ]
        );
    }

    #[test]
    fn protein_disjoint_split_shares_no_protein() {
        let mut rng = Rng::new(4);
        let pairs: Vec<Pair> = (0..400)
            .map(|_| Pair {
                a: format!("P{}", rng.index(60)),
                b: format!("P{}", rng.index(60)),
                label: rng.index(2) as u8,
            })
            .collect();
        let (parts, report) = protein_disjoint_split(&pairs, &[0.8, 0.1, 0.1], &mut Rng::new(1)).unwrap();
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>() + report.total_dropped(), pairs.len());
        assert!(report.total_dropped() > 0);
        let train: Vec<Pair> = parts[0].iter().map(|&i| pairs[i].clone()).collect();
        let test: Vec<Pair> = parts[2].iter().map(|&i| pairs[i].clone()).collect();
        let overlap = test_overlap(&train, &test);
        assert_eq!(overlap.counts(), [0, 0, test.len()]);
        let again = protein_disjoint_split(&pairs, &[0.8, 0.1, 0.1], &mut Rng::new(1)).unwrap();
        assert_eq!(again.0, parts);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn pair(a: &str, b: &str, label: u8) -> Pair {
        Pair { a: a.into(), b: b.into(), label }
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn pair_file_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let ok = write(dir.path(), "ok.tsv", "P1\tP2\t1\n\nP2\tP3\t0\r\n");
        let pairs = read_pairs(&ok).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[1].pair, pair("P2", "P3", 0));
        assert_eq!(pairs[1].line, 3);

        let cases = [
            ("P1\tP2\t1\nP1\tP2\n", "ok2.tsv:2", "3 tab-separated"),
            ("P1\tP2\t1\nP1\tP2\tyes\n", ":2", "`yes` is not 0 or 1"),
            ("P1\tP2\t2\n", ":1", "`2` is not 0 or 1"),
            ("idA\tidB\tlabel\nP1\tP2\t1\n", ":1", "no header"),
            ("\tP2\t1\n", ":1", "idA"),
        ];
        for (text, at, what) in cases {
            let path = write(dir.path(), "ok2.tsv", text);
            let e = err_text(read_pairs(&path));
            assert!(e.contains(at) && e.contains(what), "{e}");
        }
    }

    #[test]
    fn dictionary_errors_and_merging() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = write(dir.path(), "d.tsv", "P1\tMKV\nP2\tAAAC\n");
        let fasta = write(dir.path(), "d.fasta", ">P2 same\nAAAC\n>P3\nWW\nYY\n");
        let mut dict = SequenceDictionary::new();
        dict.add_tsv(&tsv).unwrap().add_fasta(&fasta).unwrap();
        assert_eq!(dict.len(), 3);
        assert_eq!(dict.get("P3"), Some("WWYY"));

        let conflict = write(dir.path(), "c.fasta", ">P9\nMM\n>P1\nMKL\n");
        let e = err_text(dict.add_fasta(&conflict));
        assert!(e.contains("c.fasta:3") && e.contains("d.tsv:1") && e.contains("P1"), "{e}");
        let within = write(dir.path(), "w.tsv", "Q1\tMK\nQ2\tMK\nQ1\tMKK\n");
        let e = err_text(SequenceDictionary::new().add_tsv(&within));
        assert!(e.contains("w.tsv:3") && e.contains("w.tsv:1"), "{e}");

        let bad = write(dir.path(), "b.tsv", "Q1\tMK\nQ2\tM1K\n");
        let e = err_text(SequenceDictionary::new().add_tsv(&bad));
        assert!(e.contains("b.tsv:2") && e.contains("'1'"), "{e}");
        let cols = write(dir.path(), "k.tsv", "Q1\tMK\tx\n");
        let e = err_text(SequenceDictionary::new().add_tsv(&cols));
        assert!(e.contains("k.tsv:1") && e.contains("2 tab-separated"), "{e}");
        let empty = write(dir.path(), "e.tsv", "Q1\t\n");
        assert!(err_text(SequenceDictionary::new().add_tsv(&empty)).contains("empty sequence"));
    }

    #[test]
    fn missing_sequences_error_or_are_dropped_with_a_count() {
        let dir = tempfile::tempdir().unwrap();
        let pairs = write(dir.path(), "p.tsv", "P1\tP2\t1\nP1\tP9\t0\nP2\tP5\t0\n");
        let dict_path = write(dir.path(), "d.tsv", "P1\tMKV\nP2\tAAA\nP5\tCC\n");
        let mut dict = SequenceDictionary::new();
        dict.add_tsv(&dict_path).unwrap();
        let e = err_text(PpiDataset::load(&pairs, &dict, MissingSequence::default()));
        assert!(e.contains("p.tsv:2") && e.contains("P9"), "{e}");

        let (data, report) = PpiDataset::load(&pairs, &dict, MissingSequence::DropPair).unwrap();
        assert_eq!(data.pairs, vec![pair("P1", "P2", 1), pair("P2", "P5", 0)]);
        assert_eq!(report.kept, 2);
        assert_eq!(report.total_dropped(), 1);
        assert_eq!(data.sequences.len(), 3, "only proteins of kept pairs");
        assert_eq!(data.sequences["P2"], "AAA");
        assert_eq!((data.n_positive(), data.n_negative()), (1, 1));
    }

    fn network() -> Vec<Pair> {
        vec![
            pair("A", "B", 1),
            pair("B", "C", 1),
            pair("C", "D", 1),
            pair("D", "A", 1),
            pair("E", "E", 1),
            pair("A", "C", 0),
        ]
    }

    fn check_negatives(negatives: &[Pair], positives: &[Pair]) {
        let known: HashSet<(&str, &str)> = positives.iter().filter(|p| p.label == 1).map(Pair::unordered).collect();
        let mut seen = HashSet::new();
        for n in negatives {
            assert_eq!(n.label, 0);
            assert_ne!(n.a, n.b, "self-pair");
            assert!(!known.contains(&n.unordered()), "known positive {n:?}");
            assert!(seen.insert(n.unordered()), "duplicate {n:?}");
        }
    }

    #[test]
    fn aggressive_negatives_use_unconnected_network_proteins() {
        let positives = network();
        // Network proteins A..E: 10 pairs, 4 positives among distinct proteins → 6 available.
        let all = aggressive_negatives(&positives, NegativeCount::Exactly(6), &mut Rng::new(1)).unwrap();
        check_negatives(&all, &positives);
        assert_eq!(all.len(), 6);
        let e = err_text(aggressive_negatives(&positives, NegativeCount::Exactly(7), &mut Rng::new(1)));
        assert!(e.contains("only 6"), "{e}");
        let some = aggressive_negatives(&positives, NegativeCount::RatioToPositives(0.5), &mut Rng::new(2)).unwrap();
        assert_eq!(some.len(), 3, "half of 5 positives, rounded");
        check_negatives(&some, &positives);
        for n in &some {
            assert!("ABCDE".contains(n.a.as_str()) && "ABCDE".contains(n.b.as_str()));
        }
        assert!(aggressive_negatives(&positives, NegativeCount::RatioToPositives(-1.0), &mut Rng::new(2)).is_err());
    }

    #[test]
    fn conservative_negatives_are_seeded_and_avoid_positives() {
        let positives = network();
        let proteome: Vec<String> =
            (0..60).map(|i| format!("H{i:02}")).chain(["A", "B", "C", "A"].map(String::from)).collect();
        let draw = |seed| {
            conservative_negatives(&positives, &proteome, NegativeCount::Exactly(500), &mut Rng::new(seed)).unwrap()
        };
        let negatives = draw(3);
        assert_eq!(negatives.len(), 500);
        check_negatives(&negatives, &positives);
        assert!(negatives.iter().all(|n| proteome.contains(&n.a) && proteome.contains(&n.b)));
        assert_eq!(negatives, draw(3));
        assert_ne!(negatives, draw(4));
        // Orientation is random, not always the smaller id first.
        assert!(negatives.iter().any(|n| n.a > n.b) && negatives.iter().any(|n| n.a < n.b));

        // 63 distinct proteins: 1953 pairs, minus A-B and B-C.
        let dense =
            conservative_negatives(&positives, &proteome, NegativeCount::Exactly(1951), &mut Rng::new(5)).unwrap();
        check_negatives(&dense, &positives);
        assert!(conservative_negatives(&positives, &proteome, NegativeCount::Exactly(1952), &mut Rng::new(5)).is_err());
    }

    #[test]
    fn test_overlap_classes_and_pair_leakage() {
        let train = vec![pair("A", "B", 1), pair("C", "D", 0)];
        let test = vec![
            pair("B", "A", 1), // both seen, same pair
            pair("A", "C", 0), // both seen
            pair("A", "X", 1), // one
            pair("X", "Y", 0), // none
            pair("D", "C", 1), // both seen, same pair with another label
        ];
        let overlap = test_overlap(&train, &test);
        assert_eq!(overlap.both_seen, vec![0, 1, 4]);
        assert_eq!(overlap.one_seen, vec![2]);
        assert_eq!(overlap.none_seen, vec![3]);
        assert_eq!(overlap.pair_in_train, vec![0, 4]);
        assert_eq!(overlap.counts(), [3, 1, 1]);
        let text = overlap.to_string();
        assert!(text.contains("5 test pairs") && text.contains("same pair in training 2"), "{text}");
    }

    #[test]
    fn real_pipr_yeast() {
        let Some(dir) = shared_ppi_dir("pipr-yeast") else {
            return;
        };
        let mut dict = SequenceDictionary::new();
        dict.add_tsv(dir.join("protein.dictionary.tsv")).unwrap();
        assert_eq!(dict.len(), 2_497);
        let (data, report) = PpiDataset::load(dir.join("protein.actions.tsv"), &dict, MissingSequence::Error).unwrap();
        // 11,188 lines, 24 of them repeats: the PRoBERTa paper's "11,164 usable interactions".
        assert_eq!(data.pairs.len(), 11_164);
        assert_eq!(report.total_dropped(), 24);
        assert_eq!((data.n_positive(), data.n_negative()), (5_581, 5_583));
        eprintln!("pipr-yeast: {} pairs, {} proteins used of {}", data.pairs.len(), data.sequences.len(), dict.len());
    }

    #[test]
    fn real_hippie_hq_with_negatives() {
        let Some(dir) = shared_ppi_dir("hippie-hq") else {
            return;
        };
        let mut dict = SequenceDictionary::new();
        dict.add_tsv(dir.join("hippie_hq_dict.tsv")).unwrap();
        let (data, report) = PpiDataset::load(dir.join("hippie_hq_pairs.tsv"), &dict, MissingSequence::Error).unwrap();
        // 15,489 lines, 734 of them repeats of an earlier pair.
        assert_eq!(data.n_positive(), 14_755);
        assert_eq!(report.total_dropped(), 734);
        assert_eq!(data.n_negative(), 0);
        let positives = data.positives();
        let self_pairs = positives.iter().filter(|p| p.a == p.b).count();
        let aggressive =
            aggressive_negatives(&positives, NegativeCount::RatioToPositives(1.0), &mut Rng::new(0)).unwrap();
        assert_eq!(aggressive.len(), 14_755);
        check_negatives(&aggressive, &positives);
        assert!(aggressive.iter().all(|n| data.sequences.contains_key(&n.a) && data.sequences.contains_key(&n.b)));
        eprintln!(
            "hippie-hq: {} positives ({self_pairs} self-pairs), {} proteins",
            positives.len(),
            data.sequences.len()
        );

        let human =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/human-pfam/human_swissprot_pfam.tsv");
        if human.exists() {
            let proteome = read_id_column(&human, true).unwrap();
            assert_eq!(proteome.len(), 17_459);
            let conservative =
                conservative_negatives(&positives, &proteome, NegativeCount::RatioToPositives(2.0), &mut Rng::new(0))
                    .unwrap();
            assert_eq!(conservative.len(), 29_510);
            check_negatives(&conservative, &positives);
        } else {
            crate::testing::skip(&format!("conservative negatives: {} not present", human.display()));
        }
    }

    #[test]
    fn real_pan2010_drops_pairs_without_sequence() {
        let Some(dir) = shared_ppi_dir("pan2010") else {
            return;
        };
        let mut dict = SequenceDictionary::new();
        dict.add_fasta(dir.join("pan2010_pan_sub.fasta")).unwrap();
        dict.add_fasta(dir.join("pan2010_fill_from_swissprot2014.fasta")).unwrap();
        let e = err_text(PpiDataset::load(dir.join("pan2010_pan_pairs.tsv"), &dict, MissingSequence::Error));
        assert!(e.contains("pan2010_pan_pairs.tsv:") && e.contains("no sequence"), "{e}");
        let (data, report) =
            PpiDataset::load(dir.join("pan2010_pan_pairs.tsv"), &dict, MissingSequence::DropPair).unwrap();
        // 27 repeats (1 duplicate, 26 with the other label), then 155 without a sequence.
        assert_eq!(report.total_dropped(), 182);
        assert_eq!(data.pairs.len(), 61_891 - 182);

        let (train, _) = PpiDataset::load(dir.join("pan2010_pan_train.tsv"), &dict, MissingSequence::DropPair).unwrap();
        let (test, _) = PpiDataset::load(dir.join("pan2010_pan_test.tsv"), &dict, MissingSequence::DropPair).unwrap();
        let overlap = test_overlap(&train.pairs, &test.pairs);
        eprintln!("pan2010: {} sequences; {report}; test vs train: {overlap}", dict.len());
        assert_eq!(overlap.counts().iter().sum::<usize>(), test.pairs.len());
    }
}
