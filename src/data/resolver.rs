//! Where data files live. One resolver, one order:
//! 1. `$PROTEIN_LM_DATA` (a directory laid out like `../shared/datasets`),
//! 2. `shared/datasets` beside the checkout (`<repo>/../shared/datasets`), found from the crate's
//!    source directory and from the current directory's ancestors,
//! 3. the user data directory (`$XDG_DATA_HOME/protein-lm/datasets`, where `datasets/fetch.sh` puts
//!    what it downloads).
//!
//! Files are read in place, never copied into the project.
//!
//! ```
//! use protein_lm::data::resolver::{files, DataResolver};
//! let root = tempfile::tempdir()?;
//! let resolver = DataResolver::with_roots(vec![root.path().to_path_buf()]);
//! // A missing file is an error that says where it looked and how to fetch it.
//! let message = resolver.resolve(files::PIPR_YEAST_PAIRS).unwrap_err().to_string();
//! assert!(message.contains("protein-lm data fetch ppi/pipr-yeast"), "{message}");
//! std::fs::create_dir_all(root.path().join("ppi/pipr-yeast"))?;
//! std::fs::write(root.path().join(files::PIPR_YEAST_PAIRS), "A\tB\t1\n")?;
//! assert_eq!(resolver.resolve(files::PIPR_YEAST_PAIRS)?, root.path().join(files::PIPR_YEAST_PAIRS));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const ENV_VAR: &str = "PROTEIN_LM_DATA";

/// Relative paths of the data files the crate knows, under a data root.
///
/// ```no_run
/// use protein_lm::data::read_proteins;
/// use protein_lm::data::resolver::{resolve, files};
/// let (proteins, report) = read_proteins(resolve(files::HUMAN_SINGLE_PFAM)?)?;
/// println!("{} proteins ({report})", proteins.len());
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub mod files {
    pub const SWISSPROT_GO_SAMPLE: &str = "swissprot-2014-go/swissprot_201401_go_sample50k.tsv.gz";
    pub const SWISSPROT_GO_FULL: &str = "swissprot-2014-go/swissprot_201401_go_full.tsv.gz";
    pub const GO_GRAPH: &str = "swissprot-2014-go/go_graph_201401.txt";
    pub const GO_NAMES: &str = "swissprot-2014-go/go_term_names_201401.txt";
    pub const HUMAN_PFAM: &str = "human-pfam/human_swissprot_pfam.tsv";
    pub const HUMAN_SINGLE_PFAM: &str = "human-pfam/human_swissprot_single_pfam.tsv";
    pub const PROBERTA_DICT: &str = "proberta-vocab/dict.txt";
    /// PIPR's yeast pairs (`idA<TAB>idB<TAB>label`).
    ///
    /// ```no_run
    /// use protein_lm::data::ppi::{MissingSequence, PpiDataset};
    /// use protein_lm::data::resolver::{files, resolve};
    /// let (yeast, report) = PpiDataset::load_with_sequences(
    ///     resolve(files::PIPR_YEAST_PAIRS)?,
    ///     &[resolve(files::PIPR_YEAST_DICT)?],
    ///     MissingSequence::Error,
    /// )?;
    /// println!("{} positive, {} negative pairs ({report})", yeast.n_positive(), yeast.n_negative());
    /// # Ok::<(), protein_lm::Error>(())
    /// ```
    pub const PIPR_YEAST_PAIRS: &str = "ppi/pipr-yeast/protein.actions.tsv";
    /// The sequences of the PIPR yeast proteins (`id<TAB>sequence`).
    ///
    /// ```no_run
    /// use protein_lm::data::ppi::SequenceDictionary;
    /// use protein_lm::data::resolver::{files, resolve};
    /// let mut dictionary = SequenceDictionary::new();
    /// dictionary.add_tsv(resolve(files::PIPR_YEAST_DICT)?)?;
    /// println!("{} yeast sequences", dictionary.len());
    /// # Ok::<(), protein_lm::Error>(())
    /// ```
    pub const PIPR_YEAST_DICT: &str = "ppi/pipr-yeast/protein.dictionary.tsv";
    pub const HIPPIE_HQ_PAIRS: &str = "ppi/hippie-hq/hippie_hq_pairs.tsv";
    pub const HIPPIE_HQ_DICT: &str = "ppi/hippie-hq/hippie_hq_dict.tsv";
    pub const PAN2010_PAIRS: &str = "ppi/pan2010/pan2010_pan_pairs.tsv";
    /// One file of ProteinBERT's benchmarks (`data::tables::load_benchmark` reads them all by
    /// name): resolving it checks the data set is there, and names it for scripts/notebook_data.py.
    pub const PROTEINBERT_BENCHMARKS: &str = "proteinbert-benchmarks/signalP_binary.train.csv";
    pub const PAN2010_FASTA: [&str; 2] =
        ["ppi/pan2010/pan2010_pan_sub.fasta", "ppi/pan2010/pan2010_fill_from_swissprot2014.fasta"];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoot {
    pub path: PathBuf,
    /// Where this root came from, for messages ("$PROTEIN_LM_DATA", "beside the checkout", …).
    pub origin: &'static str,
}

/// Finds data files under an ordered list of roots: the first root holding a file wins.
///
/// ```
/// use protein_lm::data::resolver::DataResolver;
/// let (first, second) = (tempfile::tempdir()?, tempfile::tempdir()?);
/// std::fs::create_dir_all(second.path().join("human-pfam"))?;
/// std::fs::write(second.path().join("human-pfam/x.tsv"), "")?;
/// let resolver = DataResolver::with_roots(vec![first.path().into(), second.path().into()]);
/// // The first root that holds the file wins; the full table falls back to the sample.
/// assert_eq!(resolver.resolve("human-pfam/x.tsv")?, second.path().join("human-pfam/x.tsv"));
/// assert_eq!(resolver.resolve_first(&["human-pfam/full.tsv", "human-pfam/x.tsv"])?, second.path().join("human-pfam/x.tsv"));
/// // The standard order: $PROTEIN_LM_DATA, beside the checkout, the user data directory.
/// println!("{:?}", DataResolver::from_env().roots());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DataResolver {
    roots: Vec<DataRoot>,
}

/// The user data directory that `datasets/fetch.sh` fills.
pub fn user_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("protein-lm").join("datasets"))
}

impl DataResolver {
    /// The standard search order (see the module docs).
    pub fn from_env() -> Self {
        let mut roots = Vec::new();
        if let Some(dir) = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
            roots.push(DataRoot { path: PathBuf::from(dir), origin: "$PROTEIN_LM_DATA" });
        }
        let beside = |repo: &Path| repo.parent().map(|p| p.join("shared").join("datasets"));
        let mut candidates: Vec<PathBuf> = Vec::new();
        candidates.extend(beside(Path::new(env!("CARGO_MANIFEST_DIR"))));
        if let Ok(cwd) = std::env::current_dir() {
            for ancestor in cwd.ancestors() {
                if ancestor.join("Cargo.toml").is_file() {
                    candidates.extend(beside(ancestor));
                }
            }
        }
        for c in candidates {
            let c = c.canonicalize().unwrap_or(c);
            if !roots.iter().any(|r| r.path == c) {
                roots.push(DataRoot { path: c, origin: "beside the checkout" });
            }
        }
        if let Some(user) = user_data_dir() {
            roots.push(DataRoot { path: user, origin: "user data directory" });
        }
        Self { roots }
    }

    /// A resolver over explicit roots (tests, or a user's own layout).
    pub fn with_roots(roots: Vec<PathBuf>) -> Self {
        Self { roots: roots.into_iter().map(|path| DataRoot { path, origin: "given" }).collect() }
    }

    pub fn roots(&self) -> &[DataRoot] {
        &self.roots
    }

    /// The first existing `<root>/<relative>`; otherwise an error that lists where it looked and names
    /// the command that fetches the file.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf> {
        for root in &self.roots {
            let candidate = root.path.join(relative);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        let dataset = dataset_of(relative);
        Err(Error::MissingData {
            relative: relative.to_string(),
            searched: self
                .roots
                .iter()
                .map(|r| format!("{} ({})", r.path.display(), r.origin))
                .collect::<Vec<_>>()
                .join(", "),
            fetch_command: fetch_hint(&dataset),
        })
    }
}

impl DataResolver {
    /// The first of `candidates` that exists (e.g. the full table, else the sample); the error is the
    /// last candidate's, which names its fetch command.
    pub fn resolve_first(&self, candidates: &[&str]) -> Result<PathBuf> {
        let mut last = Error::invalid("resolve_first needs at least one candidate");
        for c in candidates {
            match self.resolve(c) {
                Ok(p) => return Ok(p),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// The manifest's data-set name of a relative path: the first component, or the first two under `ppi/`.
pub fn dataset_of(relative: &str) -> String {
    let parts: Vec<&str> = relative.split('/').collect();
    match parts.as_slice() {
        ["ppi", name, _, ..] => format!("ppi/{name}"),
        [name, _, ..] => name.to_string(),
        _ => relative.to_string(),
    }
}

/// How a data set is made, for the missing-file message: the command, and what `datasets/fetch.sh`
/// does for it (a user should know before a 225 MB download that it needs BLAST+).
pub fn fetch_hint(dataset: &str) -> String {
    let how = match dataset {
        "swissprot-2014-go" => {
            "builds the full table from Debian's metastudent-data .deb (225 MB) with blastdbcmd \
             (apt-get install ncbi-blast+), then draws the 50k sample from it"
        }
        "human-pfam" => {
            "joins Debian's r-bioc-org.hs.eg.db .deb (37 MB) with the full Swiss-Prot 2014 table, \
             which it builds first from metastudent-data (225 MB, needs blastdbcmd from ncbi-blast+)"
        }
        "ppi/pan2010" => {
            "downloads the MCAPS files from GitHub; the fill-in FASTA needs the full Swiss-Prot 2014 \
             table (metastudent-data, 225 MB, blastdbcmd from ncbi-blast+)"
        }
        "proteinbert-benchmarks" => {
            "downloads protein_bert's CSVs from GitHub and rebuilds four from metl-pub and FLIP"
        }
        "ppi/pipr-yeast" | "ppi/hippie-hq" | "proberta-vocab" => "downloads it from GitHub at a pinned commit",
        _ => "",
    };
    if how.is_empty() {
        format!("`protein-lm data fetch {dataset}`")
    } else {
        format!(
            "`protein-lm data fetch {dataset}` (datasets/fetch.sh {how}; PROTEIN_LM_MIRROR=DIR reads a local mirror)"
        )
    }
}

/// Resolve a known file through the standard order.
///
/// ```no_run
/// use protein_lm::data::resolver::{files, resolve};
/// use protein_lm::data::tables::read_single_pfam;
/// let (families, _) = read_single_pfam(resolve(files::HUMAN_SINGLE_PFAM)?)?;
/// println!("{} human proteins with one Pfam family", families.len());
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn resolve(relative: &str) -> Result<PathBuf> {
    DataResolver::from_env().resolve(relative)
}

/// The first of `candidates` that exists, through the standard order.
pub fn resolve_first(candidates: &[&str]) -> Result<PathBuf> {
    DataResolver::from_env().resolve_first(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_first_root_and_explains_a_missing_file() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(b.path().join("human-pfam")).unwrap();
        std::fs::write(b.path().join("human-pfam/x.tsv"), "x").unwrap();
        let r = DataResolver::with_roots(vec![a.path().to_path_buf(), b.path().to_path_buf()]);
        assert_eq!(r.resolve("human-pfam/x.tsv").unwrap(), b.path().join("human-pfam/x.tsv"));
        std::fs::create_dir_all(a.path().join("human-pfam")).unwrap();
        std::fs::write(a.path().join("human-pfam/x.tsv"), "y").unwrap();
        assert_eq!(r.resolve("human-pfam/x.tsv").unwrap(), a.path().join("human-pfam/x.tsv"));
        assert_eq!(
            r.resolve_first(&["human-pfam/none.tsv", "human-pfam/x.tsv"]).unwrap(),
            a.path().join("human-pfam/x.tsv")
        );
        let e = r.resolve("ppi/hippie-hq/missing.tsv").unwrap_err().to_string();
        assert!(e.contains("protein-lm data fetch ppi/hippie-hq"), "{e}");
        let e = r.resolve(files::HUMAN_SINGLE_PFAM).unwrap_err().to_string();
        assert!(e.contains("protein-lm data fetch human-pfam") && e.contains("r-bioc-org.hs.eg.db"), "{e}");
        let e = r.resolve(files::SWISSPROT_GO_SAMPLE).unwrap_err().to_string();
        assert!(e.contains("metastudent-data") && e.contains("50k sample"), "{e}");
        assert!(e.contains(&a.path().display().to_string()), "{e}");
    }

    #[test]
    fn dataset_names() {
        assert_eq!(dataset_of(files::SWISSPROT_GO_SAMPLE), "swissprot-2014-go");
        assert_eq!(dataset_of(files::PIPR_YEAST_PAIRS), "ppi/pipr-yeast");
    }
}
