//! A run directory: everything needed to understand, plot and resume one training run.
//!
//! ```text
//! runs/NAME/
//!   config.json        the run's full configuration (a resume must match it)
//!   provenance.json    crate version, git commit, data checksums, seed, threads, command line
//!   log.jsonl          one JSON object per line: {"kind": "train" | "valid" | "epoch" | "event", "step", …}
//!   checkpoints/       crash-safe checkpoints (see `checkpoint.rs`)
//!   best/              model directory of the best validation score (when validating)
//!   model/             model directory of the final weights
//! ```
//!
//! ```
//! use candle_core::Device;
//! use protein_lm::train::run_dir::{read_log, Provenance, RunDir};
//! let out = tempfile::tempdir()?;
//! let config = serde_json::json!({"lr": 1e-3});
//! let provenance = Provenance::collect(0, &[], &Device::Cpu)?;
//! let run = RunDir::open(out.path(), &config, &provenance, false)?;
//! run.log(&serde_json::json!({"kind": "train", "step": 1, "loss": 2.5}))?;
//! assert_eq!(read_log(run.log_path(), "train")?.len(), 1);
//! // A resume must bring the configuration the run was started with.
//! assert!(RunDir::open(out.path(), &serde_json::json!({"lr": 3e-3}), &provenance, true).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checkpoint::CheckpointDir;
use crate::{Error, Location, Result};

pub const CONFIG_FILE: &str = "config.json";
pub const PROVENANCE_FILE: &str = "provenance.json";
pub const LOG_FILE: &str = "log.jsonl";

/// Where a run came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub crate_version: String,
    /// `git describe`-style commit of the source tree the binary was built from, when known.
    pub git_commit: Option<String>,
    /// Input files with their SHA-256.
    pub data: BTreeMap<String, String>,
    pub seed: u64,
    pub threads: usize,
    pub device: String,
    pub command_line: Vec<String>,
    pub started_unix_s: u64,
}

impl Provenance {
    /// Collects what can be known about this process; `data` files are hashed.
    pub fn collect(seed: u64, data_files: &[PathBuf], device: &candle_core::Device) -> Result<Self> {
        let mut data = BTreeMap::new();
        for path in data_files {
            data.insert(path.display().to_string(), sha256_file(path)?);
        }
        Ok(Self {
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: git_commit(),
            data,
            seed,
            threads: candle_core::utils::get_num_threads(),
            device: format!("{device:?}"),
            command_line: std::env::args().collect(),
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        })
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let dirty = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    Some(if dirty { format!("{commit}-dirty") } else { commit })
}

/// Where a run goes and how it runs: the arguments `pretrain` and `finetune_proteinbert` share.
///
/// ```
/// use candle_core::Device;
/// use protein_lm::train::run_dir::RunOptions;
/// let out = tempfile::tempdir()?;
/// // Copy: the same options can go to every stage of a run.
/// let options = RunOptions { out: out.path(), resume: true, device: &Device::Cpu, progress: false };
/// let again = options;
/// assert!(options.resume && again.out == out.path());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RunOptions<'a> {
    /// The run directory.
    pub out: &'a Path,
    /// Continue from the last complete checkpoint (and, for fine-tuning, skip finished stages).
    pub resume: bool,
    pub device: &'a candle_core::Device,
    /// Show a progress bar (hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

/// One run's directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens `root` for a run with `config`. A fresh directory gets the config and provenance. With
    /// `resume`, an existing run must have the same config (so a resume cannot silently change the
    /// run); without it, a directory that already holds checkpoints is an error.
    pub fn open(
        root: impl AsRef<Path>,
        config: &serde_json::Value,
        provenance: &Provenance,
        resume: bool,
    ) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let run = Self { root };
        let config_path = run.root.join(CONFIG_FILE);
        if resume && config_path.is_file() {
            let stored: serde_json::Value = read_json(&config_path, "run configuration")?;
            if stored != *config {
                return Err(Error::data(
                    Location::file(&config_path),
                    "--resume with a different configuration than the run was started with; start a new run \
                     directory or restore the original config",
                ));
            }
            // Each resume is recorded beside the original provenance.
            let path = run.root.join(format!("provenance.resume-{}.json", provenance.started_unix_s));
            write_json(&path, provenance)?;
            return Ok(run);
        }
        if !resume && !run.checkpoints().complete_steps()?.is_empty() {
            return Err(Error::invalid(format!(
                "{} already holds a run with checkpoints; pass --resume to continue it or choose a new directory",
                run.root.display()
            )));
        }
        write_json(&config_path, config)?;
        write_json(&run.root.join(PROVENANCE_FILE), provenance)?;
        Ok(run)
    }

    /// The run directory as a data-parallel rank other than 0 sees it: the trainer writes nothing
    /// through it (rank 0 owns the directory), and this writes nothing either.
    pub fn of_other_rank(root: impl AsRef<Path>) -> Self {
        Self { root: root.as_ref().to_path_buf() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn checkpoints(&self) -> CheckpointDir {
        CheckpointDir::new(self.root.join("checkpoints"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join(LOG_FILE)
    }

    /// Makes `log.jsonl` the log of a run that starts (or resumes) at update `step`: the records up
    /// to and including `step` stay, everything after it goes, and so do a line torn by a kill and
    /// the `finished` event of a run that is being continued. Every record of update `step` was
    /// written before its checkpoint, and everything after that checkpoint is written again by the
    /// resumed loop, so whatever instant the previous process died at, the log then reads as one
    /// uninterrupted run. A fresh run (`step` 0) starts an empty log. The shortened log replaces the
    /// old one by a rename: a kill during the rewrite leaves one or the other, never a mixture.
    pub fn reset_log(&self, step: u64) -> Result<()> {
        let path = self.log_path();
        let mut kept = String::new();
        if step > 0 {
            if let Ok(file) = fs::File::open(&path) {
                for line in std::io::BufReader::new(file).split(b'\n') {
                    let line = line.map_err(|e| Error::io(&path, e))?;
                    // A torn line (cut by a kill, or glued to the next append) is not a record.
                    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&line) else { continue };
                    let kept_step = value.get("step").and_then(|s| s.as_u64()).is_some_and(|s| s <= step);
                    let finished = value.get("event").and_then(|e| e.as_str()) == Some("finished");
                    if kept_step && !finished {
                        // The line as written (it parsed, so it is UTF-8), not re-serialised: the
                        // resumed log is byte for byte the uninterrupted run's.
                        kept.push_str(std::str::from_utf8(&line).expect("a JSON record is UTF-8"));
                        kept.push('\n');
                    }
                }
            }
        } else if !path.exists() {
            return Ok(());
        }
        let tmp = self.root.join(format!("{LOG_FILE}.rewrite"));
        if let Err(e) = fs::write(&tmp, kept) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
        crate::failpoint::hit("resume.log_rewrite");
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// Writes `name` (pretty JSON) in the run directory.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        write_json(&self.root.join(name), value)
    }

    /// Appends one record to `log.jsonl`.
    pub fn log(&self, record: &serde_json::Value) -> Result<()> {
        let path = self.log_path();
        let mut file = fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let mut line = serde_json::to_string(record).expect("JSON value serialises");
        line.push('\n');
        crate::failpoint::hit("log.before_write");
        if crate::failpoint::armed_next("log.torn_write") {
            let _ = file.write_all(&line.as_bytes()[..line.len() / 2]);
        }
        crate::failpoint::hit("log.torn_write");
        // One write of the whole line: a kill leaves at most one torn last line, which
        // `reset_log` drops on resume.
        file.write_all(line.as_bytes()).map_err(|e| Error::io(&path, e))?;
        crate::failpoint::hit("log.after_write");
        Ok(())
    }
}

/// Reads a JSON file into `T`; a parse error names the file, line and what was expected.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::data(Location::line(path, e.line()), format!("not a {what}: {e}")))
}

/// Written under a temporary name and renamed, so a kill or a full disk never leaves a half-written
/// config that a resume would then refuse.
fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    crate::output::write_file_atomic(path, text.as_bytes())
}

/// Reads a run's `log.jsonl` records of one kind (e.g. "train"), for plotting.
///
/// ```
/// use protein_lm::train::run_dir::read_log;
/// let dir = tempfile::tempdir()?;
/// let log = dir.path().join("log.jsonl");
/// std::fs::write(&log, concat!(
///     r#"{"kind": "train", "step": 10, "loss": 2.5}"#, "\n",
///     r#"{"kind": "valid", "step": 10, "loss": 2.7}"#, "\n",
///     r#"{"kind": "train", "step": 20, "loss": 2.1}"#, "\n",
/// ))?;
/// // The training curve of a run, e.g. to plot with `plots::line_series`.
/// let curve: Vec<(f64, f64)> = read_log(&log, "train")?
///     .iter()
///     .map(|r| (r["step"].as_f64().unwrap(), r["loss"].as_f64().unwrap()))
///     .collect();
/// assert_eq!(curve, [(10.0, 2.5), (20.0, 2.1)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_log(path: impl AsRef<Path>, kind: &str) -> Result<Vec<serde_json::Value>> {
    let path = path.as_ref();
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| Error::data(Location::line(path, n + 1), format!("not a JSON record: {e}")))?;
        if value.get("kind").and_then(|k| k.as_str()) == Some(kind) {
            out.push(value);
        }
    }
    Ok(out)
}
