//! Reading and preparing protein data: FASTA, the Swiss-Prot/GO table, the human Pfam tables, PPI pairs,
//! ProteinBERT's benchmarks; the GO graph; splits; PPI negatives; and where data files live.

pub mod fasta;
pub mod go;
pub mod ppi;
pub mod resolver;
pub mod sequence;
pub mod splits;
pub mod tables;

/// A protein: an identifier and its amino-acid sequence (validated by the reader that made it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Protein {
    pub id: String,
    pub sequence: String,
}

/// What a filtering step removed, and why. Every step that drops records returns one, so nothing is
/// dropped silently.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FilterReport {
    pub kept: usize,
    /// (reason, count), in the order the reasons were first met.
    pub dropped: Vec<(String, usize)>,
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
        Ok(())
    }
}
