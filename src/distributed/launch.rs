//! Who this process is in a multi-process run, read from the environment the way the field's
//! launchers set it.
//!
//! | launcher | rank | local rank (GPU) | ranks | rank 0's address |
//! |---|---|---|---|---|
//! | `torchrun --no-python`, or `protein-lm … --gpus N` | `RANK` | `LOCAL_RANK` | `WORLD_SIZE` | `MASTER_ADDR`, `MASTER_PORT` |
//! | `srun` (SLURM) | `SLURM_PROCID` | `SLURM_LOCALID` | `SLURM_STEP_NUM_TASKS` or `SLURM_NTASKS` | `MASTER_ADDR` or the first host of `SLURM_STEP_NODELIST`/`SLURM_JOB_NODELIST`/`SLURM_NODELIST`; `MASTER_PORT` or 29500 + `SLURM_JOB_ID` mod 1000 |
//!
//! The torchrun variables win when both are set (torchrun started inside a SLURM allocation).
//! Nothing set means one process. A variable that is set but wrong is an error naming it.
//!
//! ```
//! use protein_lm::distributed::launch::{Launcher, WorldInfo};
//! let env = [("RANK", "1"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "4"), ("MASTER_ADDR", "node7"), ("MASTER_PORT", "29500")];
//! let world = WorldInfo::from_vars(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))?;
//! assert_eq!((world.rank, world.local_rank, world.world_size, world.launcher), (1, 1, 4, Launcher::Torchrun));
//! assert_eq!(world.master()?, ("node7".to_string(), 29500));
//! // Nothing set: one process.
//! assert_eq!(WorldInfo::from_vars(|_| None)?, WorldInfo::single());
//! # Ok::<(), protein_lm::Error>(())
//! ```

use crate::{Error, Result};

/// What started this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Launcher {
    /// No launcher variables: one process.
    Single,
    /// `RANK`/`WORLD_SIZE` (torchrun, `protein-lm --gpus`, or set by hand).
    Torchrun,
    /// SLURM's `srun`.
    Slurm,
}

/// This process's place in the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldInfo {
    pub rank: usize,
    /// The rank among the processes of this machine: the GPU it drives.
    pub local_rank: usize,
    pub world_size: usize,
    /// Rank 0's host and port (the rendezvous), when there are several processes.
    pub master_addr: Option<String>,
    pub master_port: Option<u16>,
    pub launcher: Launcher,
}

impl WorldInfo {
    /// One process, no launcher.
    pub fn single() -> Self {
        Self { rank: 0, local_rank: 0, world_size: 1, master_addr: None, master_port: None, launcher: Launcher::Single }
    }

    /// Reads this process's environment (see the module docs).
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (a test passes a map; [`from_env`](Self::from_env) the
    /// environment). Empty values count as unset.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let number = |name: &str| -> Result<Option<usize>> {
            match get(name) {
                None => Ok(None),
                Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
                    Error::invalid(format!("environment variable {name}=`{v}` is not a non-negative integer"))
                }),
            }
        };
        let required = |name: &str, why: &str| -> Result<usize> {
            number(name)?.ok_or_else(|| Error::invalid(format!("environment variable {name} is not set ({why})")))
        };
        let port = |name: &str| -> Result<Option<u16>> {
            match get(name) {
                None => Ok(None),
                Some(v) => match v.parse::<u16>() {
                    Ok(p) if p > 0 => Ok(Some(p)),
                    _ => Err(Error::invalid(format!("environment variable {name}=`{v}` is not a TCP port (1-65535)"))),
                },
            }
        };

        let torchrun = get("WORLD_SIZE").is_some() || get("RANK").is_some();
        let slurm = get("SLURM_PROCID").is_some();
        let mut world = if torchrun {
            let world_size = required("WORLD_SIZE", "RANK is set: torchrun sets both")?;
            let rank = required("RANK", "WORLD_SIZE is set: torchrun sets both")?;
            let local_rank = match number("LOCAL_RANK")? {
                Some(l) => l,
                None if world_size == 1 => 0,
                None => return Err(Error::invalid(
                    "environment variable LOCAL_RANK is not set (WORLD_SIZE > 1: which GPU of this machine is this rank's?)",
                )),
            };
            Self {
                rank,
                local_rank,
                world_size,
                master_addr: get("MASTER_ADDR"),
                master_port: port("MASTER_PORT")?,
                launcher: Launcher::Torchrun,
            }
        } else if slurm {
            // Inside `srun` the step's task count is the one that matters (an allocation may hold
            // more tasks than one step runs).
            let world_size = match number("SLURM_STEP_NUM_TASKS")? {
                Some(n) => n,
                None => required("SLURM_NTASKS", "SLURM_PROCID is set: srun sets both")?,
            };
            let rank = required("SLURM_PROCID", "")?;
            let local_rank = required("SLURM_LOCALID", "SLURM_PROCID is set: srun sets both")?;
            let master_addr = match get("MASTER_ADDR") {
                Some(a) => Some(a),
                None => ["SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"]
                    .iter()
                    .find_map(|name| get(name).map(|list| (name, list)))
                    .map(|(name, list)| {
                        first_host(&list).ok_or_else(|| {
                            Error::invalid(format!(
                                "environment variable {name}=`{list}`: cannot read its first host; set MASTER_ADDR"
                            ))
                        })
                    })
                    .transpose()?,
            };
            // Every rank of a job derives the same port from the job id, so no one has to pass it.
            let master_port = match port("MASTER_PORT")? {
                Some(p) => Some(p),
                None => number("SLURM_JOB_ID")?.map(|id| 29500 + (id % 1000) as u16),
            };
            Self { rank, local_rank, world_size, master_addr, master_port, launcher: Launcher::Slurm }
        } else {
            return Ok(Self::single());
        };
        if world.world_size == 0 {
            let name = if world.launcher == Launcher::Slurm { "SLURM_NTASKS" } else { "WORLD_SIZE" };
            return Err(Error::invalid(format!("environment variable {name} is 0: a run needs at least one rank")));
        }
        if world.rank >= world.world_size {
            let (r, w) = match world.launcher {
                Launcher::Slurm => ("SLURM_PROCID", "SLURM_NTASKS"),
                _ => ("RANK", "WORLD_SIZE"),
            };
            return Err(Error::invalid(format!(
                "environment variable {r}={} is not below {w}={}",
                world.rank, world.world_size
            )));
        }
        if world.world_size == 1 {
            // A launcher with one process: nothing to meet.
            world.master_addr = None;
            world.master_port = None;
        }
        Ok(world)
    }

    /// More than one process?
    pub fn is_distributed(&self) -> bool {
        self.world_size > 1
    }

    /// Rank 0's host and port, or an error naming the missing variable.
    pub fn master(&self) -> Result<(String, u16)> {
        let addr = self.master_addr.clone().ok_or_else(|| {
            Error::invalid(format!(
                "environment variable MASTER_ADDR is not set (rank {} of {} needs rank 0's host)",
                self.rank, self.world_size
            ))
        })?;
        let port = self.master_port.ok_or_else(|| {
            Error::invalid(format!(
                "environment variable MASTER_PORT is not set (rank {} of {} needs rank 0's port)",
                self.rank, self.world_size
            ))
        })?;
        Ok((addr, port))
    }

    /// `rank 1/4` (for messages).
    pub fn describe(&self) -> String {
        format!("rank {}/{}", self.rank, self.world_size)
    }
}

/// The first host of a SLURM node list: `node[01-04,07],gpu9` → `node01`, `a,b` → `a`,
/// `rack[1-2]-n[3-4]` → `rack1-n3`. `None` if the list is empty or its brackets do not close.
///
/// ```
/// use protein_lm::distributed::launch::first_host;
/// assert_eq!(first_host("gpu-node[017-020,033]").as_deref(), Some("gpu-node017"));
/// assert_eq!(first_host("a12,b7").as_deref(), Some("a12"));
/// assert_eq!(first_host("node[3"), None);
/// ```
pub fn first_host(list: &str) -> Option<String> {
    // The first entry: up to a comma outside brackets.
    let mut depth = 0usize;
    let mut end = list.len();
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let entry = list[..end].trim();
    // Each bracket group stands for its first value: the first item, and of a range its start.
    let mut host = String::new();
    let mut rest = entry;
    while let Some(open) = rest.find('[') {
        host.push_str(&rest[..open]);
        let close = rest[open..].find(']')? + open;
        let first = rest[open + 1..close].split(',').next()?.split('-').next()?.trim();
        if first.is_empty() {
            return None;
        }
        host.push_str(first);
        rest = &rest[close + 1..];
    }
    if rest.contains(']') {
        return None;
    }
    host.push_str(rest);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(vars: &[(&str, &str)]) -> Result<WorldInfo> {
        WorldInfo::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn torchrun_variables() {
        let w = world(&[
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("WORLD_SIZE", "8"),
            ("MASTER_ADDR", "10.1.2.3"),
            ("MASTER_PORT", "29400"),
        ])
        .unwrap();
        assert_eq!(w.rank, 3);
        assert_eq!(w.local_rank, 1);
        assert_eq!(w.world_size, 8);
        assert_eq!(w.master().unwrap(), ("10.1.2.3".into(), 29400));
        assert_eq!(w.launcher, Launcher::Torchrun);
        assert!(w.is_distributed());
        assert_eq!(w.describe(), "rank 3/8");
        // One rank under a launcher needs no address.
        let one = world(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap();
        assert!(!one.is_distributed());
        assert_eq!(one.master_addr, None);
    }

    #[test]
    fn bad_variables_are_named() {
        let err = |vars: &[(&str, &str)]| world(vars).unwrap_err().to_string();
        let e = err(&[("RANK", "x"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")]);
        assert!(e.contains("RANK=`x`"), "{e}");
        let e = err(&[("RANK", "0"), ("LOCAL_RANK", "0")]);
        assert!(e.contains("WORLD_SIZE is not set"), "{e}");
        let e = err(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")]);
        assert!(e.contains("RANK=2 is not below WORLD_SIZE=2"), "{e}");
        let e = err(&[("RANK", "1"), ("WORLD_SIZE", "2")]);
        assert!(e.contains("LOCAL_RANK is not set"), "{e}");
        let e = err(&[("RANK", "0"), ("WORLD_SIZE", "0"), ("LOCAL_RANK", "0")]);
        assert!(e.contains("WORLD_SIZE is 0"), "{e}");
        let e = err(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_PORT", "70000")]);
        assert!(e.contains("MASTER_PORT=`70000`"), "{e}");
        // Distributed without an address: the error names the variable when the address is needed.
        let w = world(&[("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")]).unwrap();
        let e = w.master().unwrap_err().to_string();
        assert!(e.contains("MASTER_ADDR is not set"), "{e}");
        let e = err(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")]);
        assert!(e.contains("SLURM_LOCALID is not set"), "{e}");
    }

    #[test]
    fn slurm_variables_with_address_from_the_node_list() {
        let w = world(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_JOB_NODELIST", "gpu[03-06],login1"),
            ("SLURM_JOB_ID", "123456"),
        ])
        .unwrap();
        assert_eq!((w.rank, w.local_rank, w.world_size, w.launcher), (5, 1, 8, Launcher::Slurm));
        assert_eq!(w.master().unwrap(), ("gpu03".into(), 29500 + 456));
        // MASTER_ADDR and MASTER_PORT win over what SLURM implies.
        let w = world(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_NODELIST", "n1,n2"),
            ("MASTER_ADDR", "head"),
            ("MASTER_PORT", "4000"),
        ])
        .unwrap();
        assert_eq!(w.master().unwrap(), ("head".into(), 4000));
        // torchrun's variables win over SLURM's (torchrun inside an allocation).
        let w = world(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_NTASKS", "1"),
            ("RANK", "2"),
            ("LOCAL_RANK", "2"),
            ("WORLD_SIZE", "4"),
        ])
        .unwrap();
        assert_eq!((w.rank, w.launcher), (2, Launcher::Torchrun));
        let e =
            world(&[("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_NODELIST", "n[1")])
                .unwrap_err()
                .to_string();
        assert!(e.contains("SLURM_NODELIST=`n[1`") && e.contains("MASTER_ADDR"), "{e}");
    }

    #[test]
    fn node_lists() {
        assert_eq!(first_host("node[01-04,07]").as_deref(), Some("node01"));
        assert_eq!(first_host("node[7,1-3]").as_deref(), Some("node7"));
        assert_eq!(first_host("rack[1-2]-n[3-4],x").as_deref(), Some("rack1-n3"));
        assert_eq!(first_host("single").as_deref(), Some("single"));
        assert_eq!(first_host(" a , b").as_deref(), Some("a"));
        assert_eq!(first_host(""), None);
        assert_eq!(first_host("n[]"), None);
        assert_eq!(first_host("n]1["), None);
    }
}
