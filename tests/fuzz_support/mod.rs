//! Shared pieces of the parser fuzz tests (`tests/fuzz_*.rs`): the case budget, byte- and
//! line-level mutations of valid samples, and the property every parser must hold: no panic, and
//! either `Ok` or an error that names the file (and the line where the format has lines).
//!
//! The budget is read here and nowhere else: each property has a small fixed case count for CI,
//! and `PROTEIN_LM_FUZZ_CASES=N` runs N cases of every cheap property instead (a tenth of N, at
//! least the CI count, for the ones that load models or write directories).

//! What the fuzzing found, each kept as a `regression_*` test with its exact input:
//! - benchmark CSV cut inside its gzip stream: error at line 0 (`fuzz_data`);
//! - tokenizer.json cut inside its `decoder`: panic in tokenizers 0.23; without `<unk>` in its
//!   vocabulary: loaded, then an encode error naming no file (`fuzz_tokenize`);
//! - dict.txt listing a special symbol: a second id for it, `<pad>` looked up as 4 (`fuzz_tokenize`);
//! - .npy shape whose size overflows: panic in debug, a wrapped size in release (`fuzz_import`);
//! - configs with some floats read back one ulp off (serde_json's default parser), so a resume
//!   refused its own run; model config with `n_heads: 0`, a tensor missing from model.safetensors,
//!   a checkpoint without a variable or with a misshapen moment, an all-zero RNG: errors naming no
//!   file; LATEST naming a directory outside the run was followed (`fuzz_dirs`).

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestCaseError};
use protein_lm::Error;

pub const CASES_VAR: &str = "PROTEIN_LM_FUZZ_CASES";
pub const SEED_VAR: &str = "PROTEIN_LM_FUZZ_SEED";

/// The seed of every property's case generator: `PROTEIN_LM_FUZZ_SEED`, or a fixed default.
pub fn seed() -> u64 {
    std::env::var(SEED_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed)
}

/// Cases for one property: `ci` unless `PROTEIN_LM_FUZZ_CASES` is set; `heavy` properties (models,
/// directories) get a tenth of the long budget.
pub fn cases(ci: u32, heavy: bool) -> u32 {
    match std::env::var(CASES_VAR).ok().and_then(|v| v.parse::<u32>().ok()) {
        Some(n) if heavy => (n / 10).max(ci),
        Some(n) => n.max(ci),
        None => ci,
    }
}

/// The proptest configuration of a property with `cases(ci, heavy)` cases. Failures are not
/// persisted to files (the regression inputs are kept as named tests instead).
pub fn config(ci: u32, heavy: bool) -> Config {
    Config {
        cases: cases(ci, heavy),
        // The same cases on every run (CI must not pass or fail by the draw); another seed explores
        // other inputs.
        rng_seed: RngSeed::Fixed(seed()),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 2000,
        ..Config::default()
    }
}

pub fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn read_sample(relative: &str) -> Vec<u8> {
    std::fs::read(repo_file(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Tokens that break parsers: numbers out of range, non-numbers, separators, invalid UTF-8, BOMs.
pub const NASTY: &[&[u8]] = &[
    b"NaN",
    b"nan",
    b"inf",
    b"-inf",
    b"1e999",
    b"-1",
    b"0",
    b"-0",
    b"18446744073709551616",
    b"9223372036854775807",
    b"4294967296",
    b"1.5",
    b"",
    b"\t",
    b"\n",
    b"\r",
    b"\r\n",
    b" ",
    b",",
    b";",
    b"\"",
    b">",
    b"#",
    b"\0",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\xe2\x96\x81",
    b"GO:",
    b"GO:0000000",
    b"PF",
    b"null",
    b"true",
    b"{}",
    b"[]",
    b"[[",
    b"{\"a\":",
    b"*",
    b"-",
    b"X",
    b"mkv",
];

/// One edit of an input file.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    /// Swap two whole lines.
    SwapLines(Index, Index),
    DuplicateLine(Index),
    DeleteLine(Index),
    /// Remove the `n`-th field (split at `sep`) of one line, or of every line when `all`.
    DropColumn {
        line: Index,
        column: Index,
        sep: u8,
        all: bool,
    },
    /// Replace the `n`-th field of one line with a nasty token.
    ReplaceField {
        line: Index,
        column: Index,
        sep: u8,
        token: Vec<u8>,
    },
}

fn nasty_token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(NASTY).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

/// Mutations for a file whose fields are separated by `sep` (`b'\t'`, `b','`, `b' '`).
pub fn mutation(sep: u8) -> impl Strategy<Value = Mutation> {
    let seps = prop_oneof![Just(sep), Just(b'\t'), Just(b',')];
    prop_oneof![
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        3 => (any::<Index>(), nasty_token()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => any::<Index>().prop_map(Mutation::DeleteLine),
        2 => (any::<Index>(), any::<Index>(), seps.clone(), any::<bool>())
            .prop_map(|(line, column, sep, all)| Mutation::DropColumn { line, column, sep, all }),
        3 => (any::<Index>(), any::<Index>(), seps, nasty_token())
            .prop_map(|(line, column, sep, token)| Mutation::ReplaceField { line, column, sep, token }),
    ]
}

/// One to four mutations.
pub fn mutations(sep: u8) -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(sep), 1..5)
}

/// Byte-level mutations only, for binary formats (pickles, zip and legacy torch files, safetensors).
pub fn byte_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..9)).prop_map(|(i, t)| Mutation::Insert(i, t)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ];
    prop::collection::vec(one, 1..5)
}

fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// `line` with its `column`-th field (if any) removed or replaced.
fn edit_field(line: &[u8], column: &Index, sep: u8, replacement: Option<&[u8]>) -> Vec<u8> {
    let (body, newline) = match line.strip_suffix(b"\n") {
        Some(b) => (b, true),
        None => (line, false),
    };
    let mut fields: Vec<Vec<u8>> = body.split(|&b| b == sep).map(<[u8]>::to_vec).collect();
    let k = column.index(fields.len());
    match replacement {
        Some(r) => fields[k] = r.to_vec(),
        None if fields.len() > 1 => {
            fields.remove(k);
        }
        None => fields[k].clear(),
    }
    let mut out = fields.join(&[sep][..]);
    if newline {
        out.push(b'\n');
    }
    out
}

pub fn apply(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in mutations {
        match m {
            Mutation::FlipBit(i, bit) if !b.is_empty() => {
                let k = i.index(b.len());
                b[k] ^= 1 << bit;
            }
            Mutation::SetByte(i, v) if !b.is_empty() => {
                let k = i.index(b.len());
                b[k] = *v;
            }
            Mutation::Insert(i, t) => {
                let k = i.index(b.len() + 1);
                b.splice(k..k, t.iter().copied());
            }
            Mutation::Delete(i, n) if !b.is_empty() => {
                let k = i.index(b.len());
                let end = (k + n).min(b.len());
                b.drain(k..end);
            }
            Mutation::Truncate(i) => {
                let k = i.index(b.len() + 1);
                b.truncate(k);
            }
            Mutation::SwapLines(x, y) => {
                let mut lines = split_lines(&b);
                if !lines.is_empty() {
                    let (p, q) = (x.index(lines.len()), y.index(lines.len()));
                    lines.swap(p, q);
                    b = lines.concat();
                }
            }
            Mutation::DuplicateLine(x) => {
                let mut lines = split_lines(&b);
                if !lines.is_empty() {
                    let p = x.index(lines.len());
                    let mut copy = lines[p].clone();
                    if !copy.ends_with(b"\n") {
                        copy.push(b'\n');
                    }
                    lines.insert(p, copy);
                    b = lines.concat();
                }
            }
            Mutation::DeleteLine(x) => {
                let mut lines = split_lines(&b);
                if !lines.is_empty() {
                    lines.remove(x.index(lines.len()));
                    b = lines.concat();
                }
            }
            Mutation::DropColumn { line, column, sep, all } => {
                let mut lines = split_lines(&b);
                if !lines.is_empty() {
                    if *all {
                        for l in &mut lines {
                            *l = edit_field(l, column, *sep, None);
                        }
                    } else {
                        let p = line.index(lines.len());
                        lines[p] = edit_field(&lines[p], column, *sep, None);
                    }
                    b = lines.concat();
                }
            }
            Mutation::ReplaceField { line, column, sep, token } => {
                let mut lines = split_lines(&b);
                if !lines.is_empty() {
                    let p = line.index(lines.len());
                    lines[p] = edit_field(&lines[p], column, *sep, Some(token));
                    b = lines.concat();
                }
            }
            _ => {}
        }
    }
    b
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Files of one case live in their own temporary directory.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
        path
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What an error must say about where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Located {
    /// The file's name appears in the message.
    File,
    /// Also: a data error carries a line (1-based). I/O and JSON errors name the file and, for
    /// JSON, the line in serde's own words; a whole-file problem (empty file) may have no line.
    Line,
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".into())
}

/// Checks an error against `located`: it names one of `files` (by file name), and, for
/// `Located::Line`, a data error has a line number of at least 1.
pub fn check_error(err: &Error, files: &[&Path], located: Located) -> Result<(), TestCaseError> {
    let text = err.to_string();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into()))
        .collect();
    prop_assert!(names.iter().any(|n| text.contains(n.as_str())), "error names none of {names:?}: {text} ({err:?})");
    if let Error::Data { location, .. } = err {
        prop_assert!(location.line != Some(0), "error points at line 0: {text}");
        if located == Located::Line && location.line.is_none() {
            // An error about the file as a whole (nothing in it to read) has no line to name.
            let whole_file =
                ["empty file", "no rows after the header", "no records after the header", "no pairs in this file"]
                    .iter()
                    .any(|m| text.contains(m));
            prop_assert!(
                whole_file || location.record.is_some(),
                "data error without a line in a line-oriented file: {text}"
            );
        }
    }
    Ok(())
}

thread_local! {
    /// (Ok, Err) outcomes of [`parse_checked`] on this thread, so a property can show that its
    /// inputs reached both the accepting and the rejecting paths.
    static OUTCOMES: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// Returns and resets this thread's (Ok, Err) counts.
pub fn take_outcomes() -> (u64, u64) {
    OUTCOMES.with(|c| c.replace((0, 0)))
}

fn count(ok: bool) {
    OUTCOMES.with(|c| {
        let (a, b) = c.get();
        c.set(if ok { (a + 1, b) } else { (a, b + 1) });
    });
}

/// Panics unless both outcomes were seen (a mutator that never breaks, or never keeps, the input
/// would test nothing), and prints the counts for the record.
pub fn report_outcomes(name: &str) {
    let (ok, err) = take_outcomes();
    eprintln!("{name}: {} parses, {ok} accepted, {err} rejected with a located error", ok + err);
    assert!(ok > 0 && err > 0, "{name}: the inputs should reach both outcomes (ok {ok}, err {err})");
}

/// Runs `parse`, turning a panic into a test failure with its message, and checks an error with
/// [`check_error`]. Returns the parsed value when there was one.
pub fn parse_checked<T>(
    files: &[&Path],
    located: Located,
    parse: impl FnOnce() -> protein_lm::Result<T>,
) -> Result<Option<T>, TestCaseError> {
    match catch_unwind(AssertUnwindSafe(parse)) {
        Err(payload) => Err(TestCaseError::fail(format!("panicked: {}", panic_text(payload.as_ref())))),
        Ok(Ok(v)) => {
            count(true);
            Ok(Some(v))
        }
        Ok(Err(e)) => {
            count(false);
            check_error(&e, files, located)?;
            Ok(None)
        }
    }
}

/// Every file below `root` as (path relative to `root`, bytes), sorted: a directory to mutate.
pub fn files_under(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                files.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    files
}
