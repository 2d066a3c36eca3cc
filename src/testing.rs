//! Support for tests that need something a checkout may lack: the shared real data sets
//! (`../shared/datasets`, `$PROTEIN_LM_DATA`, …) or a CPU feature.
//!
//! A test must not pass silently when it did not run. Such a test asks [`shared_data`] (or calls
//! [`skip`] itself) and returns early only through them:
//!
//! * on a developer machine without the data, the test is **skipped with a printed line**
//!   `SKIPPED: <test path> (<reason>)` ([`SKIP_MARKER`] at the start of the line) and returns;
//!   the line is written straight to the process's stderr, past libtest's output capture, so it
//!   shows in a plain `cargo test` run and a script can grep for it;
//! * where `CI` is set (CI runs with `CI=true` and has the shared data), the same call **panics**
//!   instead, so a missing data set fails the build rather than skipping the test.
//!
//! ```no_run
//! use protein_lm::data::resolver::files;
//!
//! #[test]
//! fn uses_the_real_dictionary() {
//!     let Some(dict) = protein_lm::testing::shared_data(files::PROBERTA_DICT) else { return };
//!     // … assertions on the real file …
//! }
//! ```

use std::io::Write;
use std::path::PathBuf;

use crate::data::resolver::DataResolver;

/// The start of the line a skipped test prints (`SKIPPED: <test> (<reason>)`).
pub const SKIP_MARKER: &str = "SKIPPED:";

/// Whether skipping is forbidden: `CI` is set to anything but empty, `0` or `false`.
pub fn in_ci() -> bool {
    ci_value_forbids_skipping(std::env::var("CI").ok().as_deref())
}

fn ci_value_forbids_skipping(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The running test's name (libtest names each test's thread after its path).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("<unnamed test>").to_string()
}

/// Declares that the running test cannot run, for `reason`: panics under CI ([`in_ci`]), otherwise
/// prints `SKIPPED: <test> (<reason>)` to stderr, uncaptured. The caller returns right after.
pub fn skip(reason: &str) {
    skip_with(in_ci(), reason)
}

fn skip_with(ci: bool, reason: &str) {
    let line = format!("{SKIP_MARKER} {} ({reason})", test_name());
    if ci {
        panic!("{line}: skipping is not allowed when CI is set");
    }
    // Not eprintln!: libtest captures that for passing tests; a direct write is always shown.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The path of a shared data file (relative to a data root, e.g. [`crate::data::resolver::files`]),
/// found by [`DataResolver::from_env`]; `None` after [`skip`] when it is absent.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    match DataResolver::from_env().resolve(relative) {
        Ok(path) => Some(path),
        Err(e) => {
            skip(&format!("missing shared data: {e}"));
            None
        }
    }
}

/// Several shared files at once: all of them, or `None` after one [`skip`] naming the first missing.
pub fn shared_data_all<const N: usize>(relative: [&str; N]) -> Option<[PathBuf; N]> {
    let resolver = DataResolver::from_env();
    let mut found = Vec::with_capacity(N);
    for r in relative {
        match resolver.resolve(r) {
            Ok(p) => found.push(p),
            Err(e) => {
                skip(&format!("missing shared data: {e}"));
                return None;
            }
        }
    }
    found.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_forbids_skipping() {
        for (value, ci) in [(None, false), (Some(""), false), (Some("0"), false), (Some("False"), false)] {
            assert_eq!(ci_value_forbids_skipping(value), ci, "{value:?}");
        }
        for value in ["true", "1", "yes"] {
            assert!(ci_value_forbids_skipping(Some(value)), "{value}");
        }
        let e = std::panic::catch_unwind(|| skip_with(true, "missing shared data: x.tsv")).unwrap_err();
        let text = e.downcast_ref::<String>().unwrap();
        assert!(
            text.starts_with("SKIPPED: testing::tests::ci_forbids_skipping (missing shared data: x.tsv)"),
            "{text}"
        );
    }
}

/// The start of the line a test prints when it needs a GPU that this build or machine lacks
/// (`NO GPU: <test> (<reason>)`). Unlike [`SKIP_MARKER`] it is not a failure under CI: no CI
/// machine has a GPU. `scripts/test.sh` counts these lines separately.
pub const NO_GPU_MARKER: &str = "NO GPU:";

/// CUDA device 0 for a device-parametrised test, or `None` after printing
/// `NO GPU: <test> (<reason>)` on stderr (uncaptured) when this build has no CUDA or the machine
/// no usable GPU; the test then returns.
///
/// ```no_run
/// #[test]
/// fn same_on_cuda() {
///     let Some(cuda) = protein_lm::testing::cuda_device() else { return };
///     // … compare a step on `cuda` with the same step on the CPU …
/// # let _ = cuda;
/// }
/// ```
pub fn cuda_device() -> Option<candle_core::Device> {
    let reason = if !candle_core::utils::cuda_is_available() {
        "this build has no CUDA: build the tests with --features cuda on a GPU machine".to_string()
    } else {
        match candle_core::Device::new_cuda(0) {
            Ok(device) => return Some(device),
            Err(e) => format!("no usable CUDA device: {e}"),
        }
    };
    let _ = writeln!(std::io::stderr().lock(), "{NO_GPU_MARKER} {} ({reason})", test_name());
    None
}
