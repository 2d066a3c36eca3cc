//! Crash injection at named points of the run directory's write sequence, for the kill-and-resume
//! tests.
//!
//! `PROTEIN_LM_FAILPOINT=NAME[:N]` ends the process the `N`-th time (1-based, default 1) it passes
//! the point `NAME`, with exit status [`EXIT_CODE`] and without unwinding: no destructor, flush or
//! cleanup runs, so the files are left exactly as a SIGKILL at that instant would leave them. A
//! random SIGKILL can only sample the write sequence; a failpoint reaches every step of it, the
//! same way on every run and on any machine load. Unset (always, outside tests), a point costs
//! one relaxed atomic load.
//!
//! The points, in the order a run passes them:
//!
//! | name | where |
//! |---|---|
//! | `log.before_write` | before a `log.jsonl` record is appended |
//! | `log.torn_write` | half of a record's line written, no newline |
//! | `log.after_write` | the record is in the file |
//! | `model_dir.partial` | a `best/` or `model/` directory half written |
//! | `model_dir.before_swap` | a complete new model directory beside the old one |
//! | `checkpoint.partial_tensors` | the model tensors of a checkpoint written, not the optimizer's |
//! | `checkpoint.before_state` | both tensor files written, no `state.json` |
//! | `checkpoint.before_rename` | the complete checkpoint still under its `.partial-` name |
//! | `checkpoint.before_latest` | the checkpoint in place, `LATEST` naming the previous one |
//! | `checkpoint.before_prune` | `LATEST` replaced, old checkpoints not yet pruned |
//! | `resume.log_rewrite` | a resume's shortened log written to its temporary file, not yet renamed |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms a failpoint.
pub const ENV: &str = "PROTEIN_LM_FAILPOINT";

/// Exit status of a process ended by a failpoint.
pub const EXIT_CODE: i32 = 86;

/// Every point the crate passes, for tests that visit them all.
pub const POINTS: &[&str] = &[
    "log.before_write",
    "log.torn_write",
    "log.after_write",
    "model_dir.partial",
    "model_dir.before_swap",
    "checkpoint.partial_tensors",
    "checkpoint.before_state",
    "checkpoint.before_rename",
    "checkpoint.before_latest",
    "checkpoint.before_prune",
    "resume.log_rewrite",
];

struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (name, at) = match spec.rsplit_once(':') {
                Some((name, n)) => (name, n.parse().unwrap_or_else(|_| panic!("{ENV}={spec}: `{n}` is not a count"))),
                None => (spec.as_str(), 1),
            };
            assert!(POINTS.contains(&name), "{ENV}={spec}: unknown failpoint `{name}` (known: {POINTS:?})");
            Some(Armed { name: name.to_string(), at, hits: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Passes the point `name`: ends the process here if it is armed for this hit.
pub fn hit(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "unlisted failpoint {name}");
    if let Some(armed) = armed() {
        if armed.name == name && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.at {
            eprintln!("failpoint {name}:{} reached: exiting with status {EXIT_CODE}", armed.at);
            // `_exit`-like: std::process::exit runs no Rust destructors; buffered writers are not
            // flushed, files already written stay as they are.
            std::process::exit(EXIT_CODE);
        }
    }
}

/// True when `name` is armed for its next hit (lets a writer tear its own write first).
pub fn armed_next(name: &'static str) -> bool {
    armed().is_some_and(|a| a.name == name && a.hits.load(Ordering::Relaxed) + 1 == a.at)
}
