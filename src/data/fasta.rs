//! Streaming FASTA reader (plain or gzip, detected from the magic bytes, not the file name).
//!
//! ```
//! use protein_lm::data::fasta::{read_fasta, write_fasta};
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("out.fasta");
//! write_fasta(&path, [("P1", "MKTAYIAKQR"), ("P2", "ACDEFGHIK")])?;
//! let records = read_fasta(&path)?;
//! assert_eq!(records.len(), 2);
//! assert_eq!((records[1].id.as_str(), records[1].sequence.as_str()), ("P2", "ACDEFGHIK"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::data::sequence;
use crate::data::Protein;
use crate::error::{Error, Location, Result};

/// Open a file for reading, transparently decompressing gzip. A truncated gzip stream surfaces as an
/// I/O error naming the file when the reader reaches the cut.
pub fn open_maybe_gzip(path: &Path) -> Result<Box<dyn BufRead>> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(file))))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, file)))
    }
}

/// Iterator over the records of a FASTA file. The id is the header up to the first whitespace; the
/// rest of the header is kept as the description. Sequence lines are concatenated.
pub struct FastaReader {
    path: PathBuf,
    lines: std::io::Lines<Box<dyn BufRead>>,
    line_no: usize,
    pending_header: Option<(String, usize)>,
    done: bool,
    uppercased: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastaRecord {
    pub id: String,
    pub description: String,
    pub sequence: String,
    /// 1-based line of the header, for error messages downstream.
    pub line: usize,
}

impl From<FastaRecord> for Protein {
    fn from(r: FastaRecord) -> Self {
        Protein { id: r.id, sequence: r.sequence }
    }
}

impl FastaReader {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let reader = open_maybe_gzip(&path)?;
        Ok(Self { path, lines: reader.lines(), line_no: 0, pending_header: None, done: false, uppercased: 0 })
    }

    /// Records read so far that had lower-case letters (read as upper case).
    pub fn uppercased(&self) -> usize {
        self.uppercased
    }

    fn next_line(&mut self) -> Option<Result<String>> {
        let line = self.lines.next()?;
        self.line_no += 1;
        Some(line.map_err(|e| Error::read_failure(&self.path, self.line_no, e)).map(|mut l| {
            if l.ends_with('\r') {
                l.pop();
            }
            l
        }))
    }

    fn read_record(&mut self) -> Result<Option<FastaRecord>> {
        let (header, header_line) = match self.pending_header.take() {
            Some(h) => h,
            None => loop {
                match self.next_line() {
                    None => return Ok(None),
                    Some(line) => {
                        let line = line?;
                        if line.trim().is_empty() {
                            continue;
                        }
                        if let Some(h) = line.strip_prefix('>') {
                            break (h.to_string(), self.line_no);
                        }
                        return Err(Error::data(
                            Location::line(&self.path, self.line_no),
                            "sequence data before the first '>' header: not a FASTA file?",
                        ));
                    }
                }
            },
        };
        let mut parts = header.trim().splitn(2, char::is_whitespace);
        let id = parts.next().unwrap_or("").to_string();
        let description = parts.next().unwrap_or("").trim().to_string();
        if id.is_empty() {
            return Err(Error::data(Location::line(&self.path, header_line), "header without an identifier"));
        }
        let mut seq = String::new();
        while let Some(line) = self.next_line() {
            let line = line?;
            if let Some(h) = line.strip_prefix('>') {
                self.pending_header = Some((h.to_string(), self.line_no));
                break;
            }
            let trimmed = line.trim();
            if let Some((pos, ch)) = sequence::first_invalid(trimmed) {
                let message = sequence::describe_invalid(seq.chars().count() + pos, ch);
                return Err(Error::data(Location::line(&self.path, self.line_no).with_record(&id), message));
            }
            seq.push_str(trimmed);
        }
        if sequence::normalize(&mut seq, || Location::line(&self.path, header_line).with_record(&id))? {
            self.uppercased += 1;
        }
        Ok(Some(FastaRecord { id, description, sequence: seq, line: header_line }))
    }
}

impl Iterator for FastaReader {
    type Item = Result<FastaRecord>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Read a whole FASTA file.
pub fn read_fasta(path: impl AsRef<Path>) -> Result<Vec<FastaRecord>> {
    FastaReader::open(path)?.collect()
}

/// Write records as FASTA with 60 residues a line, whole or not at all ([`crate::output::write_atomic`]).
pub fn write_fasta<'a>(path: impl AsRef<Path>, records: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<()> {
    crate::output::write_atomic(path.as_ref(), |w| {
        for (id, seq) in records {
            writeln!(w, ">{id}")?;
            for chunk in seq.as_bytes().chunks(60) {
                w.write_all(chunk)?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    })
}
