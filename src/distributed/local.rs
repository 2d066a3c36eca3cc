//! `--gpus N` and `--cpu-ranks N`: this machine's ranks started as child processes of the
//! command, each with the environment torchrun would give it (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
//! `MASTER_ADDR=127.0.0.1`, a free `MASTER_PORT`), so the ranks run exactly as under an external
//! launcher. When one rank fails, the others are stopped and the error names it.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use super::rendezvous::free_loopback_port;
use crate::{Error, Result};

/// The launcher variables of the environment; a command that starts its own ranks refuses to run
/// under another launcher (torchrun, srun), which would start N × M processes.
pub const LAUNCHER_VARIABLES: [&str; 3] = ["WORLD_SIZE", "RANK", "SLURM_PROCID"];

/// `args` without the flags the launcher itself consumes or sets (`--gpus`, `--cpu-ranks`,
/// `--device`, in the `--flag value` and `--flag=value` forms).
///
/// ```
/// use protein_lm::distributed::local::strip_launch_flags;
/// let args = ["pretrain", "--gpus", "4", "--device=cpu", "--out", "run", "--cpu-ranks=2"].map(Into::into);
/// let kept: Vec<String> = strip_launch_flags(&args).iter().map(|a| a.to_string_lossy().into_owned()).collect();
/// assert_eq!(kept, ["pretrain", "--out", "run"]);
/// ```
pub fn strip_launch_flags(args: &[OsString]) -> Vec<OsString> {
    const FLAGS: [&str; 3] = ["--gpus", "--cpu-ranks", "--device"];
    let mut out = Vec::with_capacity(args.len());
    let mut skip_value = false;
    for arg in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        let text = arg.to_string_lossy();
        if FLAGS.contains(&text.as_ref()) {
            skip_value = true;
        } else if !FLAGS.iter().any(|f| text.starts_with(&format!("{f}="))) {
            out.push(arg.clone());
        }
    }
    out
}

/// Starts `ranks` copies of `program` with `args` and the rank variables (every rank's device is
/// `device`, passed as `--device`), waits for all of them, and fails naming the first rank that
/// failed (after stopping the others).
pub fn run_local_ranks(program: &Path, args: &[OsString], ranks: usize, device: &str) -> Result<()> {
    if ranks == 0 {
        return Err(Error::invalid("a run needs at least one rank"));
    }
    if let Some(name) = LAUNCHER_VARIABLES.iter().find(|v| std::env::var_os(v).is_some()) {
        return Err(Error::invalid(format!(
            "{name} is set: this process is already a rank of a launcher (torchrun, srun), which starts the \
             ranks itself; leave out --gpus/--cpu-ranks there"
        )));
    }
    let port = free_loopback_port()?;
    let mut children: Vec<Child> = Vec::with_capacity(ranks);
    for rank in 0..ranks {
        let child = Command::new(program)
            .args(args)
            .args(["--device", device])
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", ranks.to_string())
            .env("LOCAL_WORLD_SIZE", ranks.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn();
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                stop(&mut children);
                return Err(Error::invalid(format!("cannot start rank {rank} ({}): {e}", program.display())));
            }
        }
    }
    let mut status: Vec<Option<ExitStatus>> = vec![None; ranks];
    loop {
        for (rank, child) in children.iter_mut().enumerate() {
            if status[rank].is_none() {
                status[rank] = child.try_wait().map_err(|e| Error::invalid(format!("rank {rank}: {e}")))?;
            }
        }
        if let Some(rank) = status.iter().position(|s| s.is_some_and(|s| !s.success())) {
            stop(&mut children);
            let code = status[rank].expect("exited");
            return Err(Error::invalid(format!(
                "rank {rank} of {ranks} failed ({code}); the other ranks were stopped (its error is printed above)"
            )));
        }
        if status.iter().all(Option::is_some) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the ranks still running (children of this process only) and reaps them.
fn stop(children: &mut [Child]) {
    for child in children.iter_mut() {
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}
