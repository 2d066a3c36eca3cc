//! Peak resident memory, as the kernel counts it, for claims such as "one protein of 35,000
//! residues fits in under 1 GB". Two measurements, because they answer different questions:
//!
//! * [`run_with_peak_resident`]: a separate process from start to exit, measured by GNU time. The
//!   whole program's peak, weights and runtime included: what a user running the same command
//!   needs.
//! * [`peak_resident_during`]: this process while a closure runs. `VmHWM` alone is process-wide and
//!   only ever grows, so the high-water mark is first reset to the current resident set
//!   (`/proc/self/clear_refs`), and the result is read against the resident set before. Memory the
//!   allocator kept from earlier work and hands out again is already resident and not counted, so
//!   the rise is a lower bound of what the closure needed.
//!
//! Linux only (both read what the Linux kernel reports); elsewhere they return an error.

use std::ffi::OsStr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::{Error, Result};

/// The resident set before some work and its peak during it, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeakResident {
    pub before_bytes: u64,
    pub peak_bytes: u64,
}

impl PeakResident {
    /// How far the work raised the resident set above where it started.
    pub fn added_bytes(&self) -> u64 {
        self.peak_bytes.saturating_sub(self.before_bytes)
    }
}

/// One field of `/proc/self/status` (`VmRSS`, `VmHWM`, …) in bytes.
fn status_bytes(field: &str) -> Result<u64> {
    let path = std::path::Path::new("/proc/self/status");
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .ok_or_else(|| Error::invalid(format!("/proc/self/status has no {field} line")))?;
    let kb: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|_| Error::invalid(format!("/proc/self/status: cannot read {field} from {line:?}")))?;
    Ok(kb * 1024)
}

/// Runs `f` in this process and reports the resident set before it and the peak while it ran
/// (see the module note: a lower bound of what `f` needed; other threads' allocations count too).
///
/// ```
/// use protein_lm::memory::peak_resident_during;
/// let (len, peak) = peak_resident_during(|| {
///     let buffer = vec![1u8; 64 << 20];
///     std::hint::black_box(&buffer);
///     buffer.len()
/// })?;
/// assert_eq!(len, 64 << 20);
/// assert!(peak.added_bytes() >= 60 << 20, "{peak:?}");
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn peak_resident_during<T>(f: impl FnOnce() -> T) -> Result<(T, PeakResident)> {
    if !cfg!(target_os = "linux") {
        return Err(Error::invalid("peak_resident_during reads /proc/self: Linux only"));
    }
    let clear = std::path::Path::new("/proc/self/clear_refs");
    // "5" resets VmHWM to the current VmRSS (Linux >= 4.0); without it the peak would be that of
    // the whole process's life.
    std::fs::write(clear, "5").map_err(|e| Error::io(clear, e))?;
    let before_bytes = status_bytes("VmRSS")?;
    let value = f();
    let peak_bytes = status_bytes("VmHWM")?.max(before_bytes);
    Ok((value, PeakResident { before_bytes, peak_bytes }))
}

/// What [`run_with_peak_resident`] saw.
#[derive(Debug, Clone)]
pub struct ChildRun {
    /// The exit code; `None` when a signal ended the command.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Wall clock from start to exit (GNU time's start-up, about a millisecond, included).
    pub seconds: f64,
    /// The command's own peak resident set.
    pub peak_resident_bytes: u64,
}

impl ChildRun {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Where GNU time is expected; `time` in a shell is a keyword that reports no memory.
pub const GNU_TIME: &str = "/usr/bin/time";

/// Runs `program args…` to its exit, capturing stdout and stderr, and reports its peak resident
/// set, measured by GNU time (`%M`, from `wait4`).
///
/// Why not `wait4` on a child of this process: on `exec` Linux carries the spawning process's
/// high-water mark into the child's `ru_maxrss` (the child starts as a copy of, or shares, the
/// parent's memory), so a child of a notebook kernel holding 300 MB would report at least 300 MB.
/// GNU time is a ~2 MB process that forks the command, so the figure is the command's own.
///
/// ```no_run
/// use protein_lm::memory::run_with_peak_resident;
/// // The embed command on one long protein, as its own process: the figure a user needs.
/// let run = run_with_peak_resident(
///     "target/release/protein-lm",
///     ["embed", "--model", "results/demo/runs/proteinbert-pretrain/model", "--input", "long.fasta", "--out", "long.npy"],
/// )?;
/// assert!(run.success(), "{}", run.stderr);
/// println!("{:.0} MB peak in {:.1} s", run.peak_resident_bytes as f64 / 1e6, run.seconds);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn run_with_peak_resident<I, S>(program: impl AsRef<OsStr>, args: I) -> Result<ChildRun>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    if !cfg!(target_os = "linux") {
        return Err(Error::invalid("run_with_peak_resident reads GNU time's %M as Linux reports it: Linux only"));
    }
    let program = program.as_ref();
    if !std::path::Path::new(GNU_TIME).is_file() {
        return Err(Error::invalid(format!(
            "{GNU_TIME} (GNU time) is missing, and the peak memory of {} cannot be measured without it (Debian: apt-get install time)",
            program.to_string_lossy()
        )));
    }
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let report = std::env::temp_dir().join(format!(
        "protein-lm-peak-{}-{}.txt",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let started = Instant::now();
    let output = Command::new(GNU_TIME)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(program)
        .args(args)
        .output()
        .map_err(|e| Error::invalid(format!("cannot start {GNU_TIME}: {e}")))?;
    let seconds = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&report).map_err(|e| Error::io(&report, e));
    let _ = std::fs::remove_file(&report);
    let text = text?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if let Some(line) = stderr.lines().find(|l| l.starts_with(GNU_TIME) && l.contains("cannot run")) {
        return Err(Error::invalid(line.trim_start_matches(GNU_TIME).trim_start_matches(':').trim().to_string()));
    }
    // GNU time writes a line of its own before the figure when the command fails.
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let kb: u64 = last.trim().parse().map_err(|_| {
        Error::invalid(format!(
            "{} did not run under {GNU_TIME}: {} {}",
            program.to_string_lossy(),
            text.trim(),
            stderr.trim()
        ))
    })?;
    let signalled = text.contains("terminated by signal");
    Ok(ChildRun {
        code: if signalled { None } else { output.status.code() },
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
        seconds,
        // GNU time reports kilobytes.
        peak_resident_bytes: kb * 1024,
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn in_process_peak_counts_what_the_closure_touched() {
        // The other tests of this binary allocate and free beside this one, which moves the
        // process's resident set under the measurement (it failed that way in full runs): the
        // measurement runs in a test process of its own, this test run again alone.
        const CHILD: &str = "PROTEIN_LM_PEAK_TEST_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let name = "memory::tests::in_process_peak_counts_what_the_closure_touched";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        let (len, peak) = peak_resident_during(|| {
            let v = vec![1u8; 200 * MB as usize];
            std::hint::black_box(&v);
            v.len()
        })
        .unwrap();
        assert_eq!(len, 200 * MB as usize);
        assert!(peak.added_bytes() >= 190 * MB, "{peak:?}");
    }

    #[test]
    fn child_peak_is_the_commands_own() {
        // This test process may hold hundreds of MB (the test above runs beside it); the children's
        // figures must not inherit that.
        let _ballast = std::hint::black_box(vec![1u8; 150 * MB as usize]);
        let script = "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo ${#x}";
        let big = run_with_peak_resident("sh", ["-c", script]).unwrap();
        assert!(big.success(), "{big:?}");
        assert_eq!(big.stdout.trim(), "67108864");
        assert!(big.peak_resident_bytes >= 60 * MB, "{}", big.peak_resident_bytes);
        let small = run_with_peak_resident("sh", ["-c", "echo hi >&2; exit 3"]).unwrap();
        assert_eq!(small.code, Some(3));
        assert_eq!(small.stderr.trim(), "hi");
        assert!(small.peak_resident_bytes < 32 * MB, "{}", small.peak_resident_bytes);
    }

    #[test]
    fn a_missing_program_is_named() {
        let err = run_with_peak_resident("no-such-program-here", ["--version"]).unwrap_err().to_string();
        assert!(err.contains("cannot run no-such-program-here"), "{err}");
    }
}
