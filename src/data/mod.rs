//! Reading and preparing protein data: FASTA, the Swiss-Prot/GO table, the human Pfam tables, PPI pairs,
//! ProteinBERT's benchmarks; the GO graph; splits; PPI negatives; and where data files live.

pub mod fasta;
#[cfg(feature = "polars")]
pub mod frame;
pub mod go;
pub mod ppi;
pub mod resolver;
pub mod sequence;
pub mod splits;
pub mod tables;

/// A protein: an identifier and its amino-acid sequence (validated by the reader that made it).
///
/// ```
/// use protein_lm::data::Protein;
/// let p = Protein { id: "P01308".into(), sequence: "MALWMRLLPLLALLALWGPDPAAA".into() };
/// assert_eq!(p.sequence.len(), 24);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Protein {
    pub id: String,
    pub sequence: String,
}

/// What a filtering step removed, and why. Every step that drops records returns one, so nothing is
/// dropped silently.
///
/// ```
/// use protein_lm::data::FilterReport;
/// let mut report = FilterReport { kept: 3, ..Default::default() };
/// report.drop("longer than 1,000 residues");
/// report.drop("longer than 1,000 residues");
/// assert_eq!(report.total_dropped(), 2);
/// assert_eq!(report.to_string(), "kept 3, dropped 2 (longer than 1,000 residues)");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FilterReport {
    pub kept: usize,
    /// (reason, count), in the order the reasons were first met.
    pub dropped: Vec<(String, usize)>,
    /// Sequences read with lower-case letters, kept as upper case ([`sequence::normalize`]).
    pub uppercased: usize,
}

impl FilterReport {
    pub fn drop(&mut self, reason: &str) {
        match self.dropped.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => self.dropped.push((reason.to_string(), 1)),
        }
    }
    pub fn total_dropped(&self) -> usize {
        self.dropped.iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Display for FilterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kept {}", self.kept)?;
        for (reason, n) in &self.dropped {
            write!(f, ", dropped {n} ({reason})")?;
        }
        if self.uppercased > 0 {
            write!(f, ", {} sequences had lowercase letters, read as upper case", self.uppercased)?;
        }
        Ok(())
    }
}

/// The lines of a (possibly gzipped) text file with their 1-based numbers, `\r` stripped, I/O errors
/// naming the file.
pub(crate) fn numbered_lines(
    path: &std::path::Path,
) -> crate::Result<impl Iterator<Item = crate::Result<(usize, String)>>> {
    let reader = fasta::open_maybe_gzip(path)?;
    let path = path.to_path_buf();
    Ok(std::io::BufRead::lines(reader).enumerate().map(move |(i, line)| {
        line.map(|mut l| {
            if l.ends_with('\r') {
                l.pop();
            }
            (i + 1, l)
        })
        .map_err(|e| crate::Error::read_failure(&path, i + 1, e))
    }))
}

/// The file formats [`read_proteins`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProteinFileFormat {
    Fasta,
    SwissProtGo,
    SinglePfam,
    HumanProteins,
    /// `id<TAB>sequence`, no header (PPI sequence dictionaries).
    IdSequenceTsv,
}

/// Detect a protein file's format from its first line.
pub fn sniff_format(path: &std::path::Path) -> crate::Result<ProteinFileFormat> {
    use std::io::BufRead;
    let mut first = String::new();
    let n = fasta::open_maybe_gzip(path)?.read_line(&mut first).map_err(|e| crate::Error::io(path, e))?;
    if n == 0 {
        return Err(crate::Error::data(crate::Location::file(path), "empty file: no proteins"));
    }
    let first = first.trim_end();
    Ok(if first.starts_with('>') {
        ProteinFileFormat::Fasta
    } else if first.starts_with("accession\tlength") {
        // The reader checks the full header and names any missing column.
        ProteinFileFormat::SwissProtGo
    } else if first == "accession\tpfam_id\tsequence" {
        ProteinFileFormat::SinglePfam
    } else if first.starts_with("accession\tentrez_gene_ids") {
        ProteinFileFormat::HumanProteins
    } else if first.split('\t').count() == 2 {
        ProteinFileFormat::IdSequenceTsv
    } else {
        return Err(crate::Error::data(
            crate::Location::line(path, 1),
            "unrecognised protein file: expected FASTA, the Swiss-Prot GO table, a human Pfam table or `id<TAB>sequence` lines",
        ));
    })
}

/// Read proteins (id and sequence) from any format of [`ProteinFileFormat`], with the report of what
/// the reader merged (identical duplicates) and upper-cased. A file without proteins is an error.
///
/// ```
/// use protein_lm::data::read_proteins;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("proteins.fasta");
/// std::fs::write(&path, ">P1 a description\nMKV\nLLA\n>P2\nacdef\n")?;
/// let (proteins, report) = read_proteins(&path)?;
/// assert_eq!((proteins[0].id.as_str(), proteins[0].sequence.as_str()), ("P1", "MKVLLA"));
/// // Lower case is read as upper case, and counted.
/// assert_eq!((proteins[1].sequence.as_str(), report.uppercased), ("ACDEF", 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_proteins(path: impl AsRef<std::path::Path>) -> crate::Result<(Vec<Protein>, FilterReport)> {
    let path = path.as_ref();
    let (proteins, report): (Vec<Protein>, FilterReport) = match sniff_format(path)? {
        ProteinFileFormat::Fasta => {
            let mut reader = fasta::FastaReader::open(path)?;
            let records = reader.by_ref().collect::<crate::Result<Vec<_>>>()?;
            let report = FilterReport { kept: records.len(), uppercased: reader.uppercased(), ..Default::default() };
            (records.into_iter().map(Protein::from).collect(), report)
        }
        ProteinFileFormat::SwissProtGo => {
            let (r, rep) = tables::read_swissprot_go(path)?;
            (r.into_iter().map(|r| Protein { id: r.accession, sequence: r.sequence }).collect(), rep)
        }
        ProteinFileFormat::SinglePfam => {
            let (r, rep) = tables::read_single_pfam(path)?;
            (r.into_iter().map(|r| Protein { id: r.accession, sequence: r.sequence }).collect(), rep)
        }
        ProteinFileFormat::HumanProteins => {
            let (r, rep) = tables::read_human_proteins(path)?;
            (r.into_iter().map(|r| Protein { id: r.accession, sequence: r.sequence }).collect(), rep)
        }
        ProteinFileFormat::IdSequenceTsv => {
            let (rows, report) = ppi::read_id_sequences(path)?;
            (rows.into_iter().map(|(p, _)| p).collect(), report)
        }
    };
    if proteins.is_empty() {
        return Err(crate::Error::data(crate::Location::file(path), "no proteins in this file"));
    }
    Ok((proteins, report))
}
