//! One error type for the library. Every data error names where it happened (file, line or record),
//! so a user can open the file and fix the input.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in an input a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based line number, when the format is line-oriented.
    pub line: Option<usize>,
    /// Record identifier (accession, FASTA id, pair), when known.
    pub record: Option<String>,
}

impl Location {
    pub fn file(path: impl AsRef<Path>) -> Self {
        Self { path: path.as_ref().to_path_buf(), line: None, record: None }
    }
    pub fn line(path: impl AsRef<Path>, line: usize) -> Self {
        Self { path: path.as_ref().to_path_buf(), line: Some(line), record: None }
    }
    pub fn with_record(mut self, record: impl Into<String>) -> Self {
        self.record = Some(record.into());
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(record) = &self.record {
            write!(f, " (record {record})")?;
        }
        Ok(())
    }
}

/// The library's one error type; every data error names the file, line or record to fix.
///
/// ```
/// use protein_lm::data::tables::benchmark;
/// use protein_lm::Error;
/// match benchmark("no-such-benchmark") {
///     Err(Error::InvalidArgument(message)) => assert!(message.contains("known: secondary_structure")),
///     other => panic!("expected an invalid argument, got {other:?}"),
/// }
/// // A data error names the file and line to fix.
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("bad.fasta");
/// std::fs::write(&path, ">P1\nMK7V\n").unwrap();
/// let error = protein_lm::data::read_proteins(&path).unwrap_err();
/// assert!(matches!(error, Error::Data { .. }), "{error}");
/// assert!(error.to_string().contains("bad.fasta:"), "{error}");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed or inconsistent input data.
    #[error("{location}: {message}")]
    Data { location: Location, message: String },

    // `error`, not `source`: the message already includes it, and a `source` would be printed twice
    // by error-chain formatters (anyhow's `{:#}`).
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },

    /// A data file that the resolver could not find anywhere it looks.
    #[error("data file `{relative}` not found (looked in: {searched}); fetch it with {fetch_command}")]
    MissingData { relative: String, searched: String, fetch_command: String },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error("{path}: invalid JSON: {error}")]
    Json { path: PathBuf, error: serde_json::Error },
}

/// `Result` with the crate's [`Error`].
///
/// ```
/// use protein_lm::Result;
/// fn mean_length(sequences: &[&str]) -> Result<f64> {
///     if sequences.is_empty() {
///         return Err(protein_lm::Error::invalid("no sequences"));
///     }
///     Ok(sequences.iter().map(|s| s.len()).sum::<usize>() as f64 / sequences.len() as f64)
/// }
/// assert_eq!(mean_length(&["MKV", "MK"])?, 2.5);
/// assert!(mean_length(&[]).is_err());
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn data(location: Location, message: impl Into<String>) -> Self {
        Error::Data { location, message: message.into() }
    }
    pub fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), error }
    }
    /// A read failure in the middle of a file, located at the line that could not be read. A cut
    /// gzip stream is the usual cause, and is named as such.
    pub fn read_failure(path: impl AsRef<Path>, line: usize, error: std::io::Error) -> Self {
        let text = error.to_string();
        let hint =
            if text.contains("deflate") || text.contains("gzip") || error.kind() == std::io::ErrorKind::UnexpectedEof {
                " (the gzip stream is truncated or corrupt)"
            } else {
                ""
            };
        Error::data(Location::line(path, line), format!("cannot read this line: {text}{hint}"))
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// The same error located in `path`, for checks on a file's contents made by code that does not
    /// know the file (e.g. a weight mapping inside an importer). Errors that already name a file or
    /// a record are left as they are.
    pub fn in_file(self, path: impl AsRef<Path>) -> Self {
        match self {
            Error::InvalidArgument(message) => Error::data(Location::file(path), message),
            Error::Candle(e) => Error::data(Location::file(path), e.to_string()),
            other => other,
        }
    }
}
