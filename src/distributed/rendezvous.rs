//! Rank 0 meets the others over TCP at `MASTER_ADDR:MASTER_PORT` and hands each of them an opaque
//! blob: NCCL's 128-byte unique id on GPUs. The connections stay open afterwards and carry
//! [`super::collective::TcpCollective`]'s sums on the CPU.
//!
//! The exchange, every integer little-endian:
//!
//! ```text
//! rank r → rank 0:   "PLMR" version:u8 rank:u32 world_size:u32 fingerprint:u64
//! rank 0 → rank r:   "PLMW" status:u8 (0 ok, 1 refused) length:u32 bytes (the blob, or why it was refused)
//! ```
//!
//! Rank 0 answers only once every rank has arrived, and checks that each rank is new, in range,
//! agrees on the number of ranks and carries the same fingerprint (a hash of the configuration, so
//! ranks started with different configs or binaries fail at once rather than train apart). Every
//! wait has a deadline, and its error says who was waited for.
//!
//! ```
//! use std::time::Duration;
//! use protein_lm::distributed::rendezvous::{free_loopback_port, rendezvous};
//! let port = free_loopback_port()?;
//! let others = std::thread::spawn(move || rendezvous("127.0.0.1", port, 1, 2, 7, Duration::from_secs(20), || unreachable!()));
//! let zero = rendezvous("127.0.0.1", port, 0, 2, 7, Duration::from_secs(20), || Ok(b"id".to_vec()))?;
//! assert_eq!(others.join().unwrap()?.blob, b"id");
//! assert_eq!(zero.blob, b"id");
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::{Error, Result};

const HELLO: &[u8; 4] = b"PLMR";
const WELCOME: &[u8; 4] = b"PLMW";
const VERSION: u8 = 1;
/// The longest blob or refusal accepted (NCCL's id is 128 bytes).
const MAX_BLOB: u32 = 1 << 20;

/// The default wait for every rank to arrive: `PROTEIN_LM_RENDEZVOUS_TIMEOUT_S` or 300 s (a
/// cluster may start ranks minutes apart).
pub fn default_timeout() -> Duration {
    let seconds = std::env::var("PROTEIN_LM_RENDEZVOUS_TIMEOUT_S").ok().and_then(|v| v.parse::<f64>().ok());
    Duration::from_secs_f64(seconds.filter(|s| *s > 0.0).unwrap_or(300.0))
}

/// What a rank has after the rendezvous.
#[derive(Debug)]
pub struct Rendezvous {
    /// Rank 0's blob.
    pub blob: Vec<u8>,
    /// Rank 0: the connection of every other rank, indexed by rank − 1. Others: the connection to
    /// rank 0.
    pub links: Vec<TcpStream>,
}

/// Meets the other ranks. Rank 0 calls `make_blob` once, listens at `port` and sends the blob to
/// ranks 1…world − 1; the others connect to `host:port` (retrying until rank 0 listens) and
/// receive it. `fingerprint` must be equal on every rank. One rank alone returns its own blob.
pub fn rendezvous(
    host: &str,
    port: u16,
    rank: usize,
    world_size: usize,
    fingerprint: u64,
    timeout: Duration,
    make_blob: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Rendezvous> {
    if rank >= world_size {
        return Err(Error::invalid(format!("rendezvous: rank {rank} is not below the {world_size} ranks")));
    }
    if world_size == 1 {
        return Ok(Rendezvous { blob: make_blob()?, links: Vec::new() });
    }
    let deadline = Instant::now() + timeout;
    if rank == 0 {
        serve(host, port, world_size, fingerprint, deadline, timeout, make_blob()?)
    } else {
        join(host, port, rank, world_size, fingerprint, deadline, timeout)
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for tests and `--gpus`/`--cpu-ranks`,
/// which start every rank on this machine).
pub fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| net_error("127.0.0.1:0", e))?;
    Ok(listener.local_addr().map_err(|e| net_error("127.0.0.1:0", e))?.port())
}

fn net_error(what: &str, e: std::io::Error) -> Error {
    Error::invalid(format!("rendezvous at {what}: {e}"))
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::invalid(format!("MASTER_ADDR `{host}`: cannot resolve it ({e})")))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::invalid(format!("MASTER_ADDR `{host}`: resolves to no address")));
    }
    Ok(addrs)
}

fn serve(
    host: &str,
    port: u16,
    world_size: usize,
    fingerprint: u64,
    deadline: Instant,
    timeout: Duration,
    blob: Vec<u8>,
) -> Result<Rendezvous> {
    // A loopback MASTER_ADDR (one machine) listens on loopback only; otherwise on every interface,
    // as torch's store does: a host name may resolve here to an address the others cannot reach
    // (Debian maps its own name to 127.0.1.1).
    let addrs = resolve(host, port)?;
    let bind = if addrs.iter().all(|a| a.ip().is_loopback()) {
        addrs[0]
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
    };
    let where_ = format!("{host}:{port}");
    let listener = TcpListener::bind(bind).map_err(|e| {
        Error::invalid(format!("rank 0 cannot listen at {bind} (MASTER_ADDR={host}, MASTER_PORT={port}): {e}"))
    })?;
    listener.set_nonblocking(true).map_err(|e| net_error(&where_, e))?;
    let mut links: Vec<Option<TcpStream>> = (1..world_size).map(|_| None).collect();
    let mut arrived = 0;
    let mut refusal: Option<String> = None;
    while arrived < world_size - 1 {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                stream.set_nonblocking(false).map_err(|e| net_error(&where_, e))?;
                stream.set_nodelay(true).map_err(|e| net_error(&where_, e))?;
                let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
                stream.set_read_timeout(Some(left)).map_err(|e| net_error(&where_, e))?;
                let hello = match read_hello(&mut stream) {
                    Ok(h) => h,
                    // Something that is not a rank (a port scanner, a stale client): ignore it.
                    Err(_) => continue,
                };
                let (rank, world, print) = hello;
                let problem = if world != world_size {
                    Some(format!("rank {rank} was started for {world} ranks, rank 0 for {world_size}"))
                } else if rank == 0 || rank >= world_size {
                    Some(format!("a process at {peer} claims rank {rank}, not in 1..{world_size}"))
                } else if links[rank - 1].is_some() {
                    Some(format!("two processes claim rank {rank} (the second from {peer})"))
                } else if print != fingerprint {
                    Some(format!(
                        "rank {rank} runs another configuration or binary than rank 0 \
                         (fingerprint {print:016x}, rank 0 {fingerprint:016x})"
                    ))
                } else {
                    None
                };
                match problem {
                    Some(p) => {
                        let _ = write_welcome(&mut stream, 1, p.as_bytes());
                        refusal.get_or_insert(p);
                        // Keep waiting for the others, to tell each of them why the run stops.
                    }
                    None => {
                        links[rank - 1] = Some(stream);
                    }
                }
                arrived += 1;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    let missing: Vec<String> = links
                        .iter()
                        .enumerate()
                        .filter(|(_, l)| l.is_none())
                        .map(|(i, _)| (i + 1).to_string())
                        .collect();
                    let why = format!(
                        "rank 0 waited {:.0} s at {where_} for rank(s) {} of {world_size}; were they started \
                         (with the same MASTER_ADDR/MASTER_PORT; under SLURM with srun)? \
                         PROTEIN_LM_RENDEZVOUS_TIMEOUT_S sets the wait",
                        timeout.as_secs_f64(),
                        missing.join(", ")
                    );
                    for link in links.iter_mut().flatten() {
                        let _ = write_welcome(link, 1, why.as_bytes());
                    }
                    return Err(Error::invalid(why));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(net_error(&where_, e)),
        }
    }
    if let Some(why) = refusal {
        for link in links.iter_mut().flatten() {
            let _ = write_welcome(link, 1, why.as_bytes());
        }
        return Err(Error::invalid(format!("rendezvous at {where_}: {why}")));
    }
    let mut links: Vec<TcpStream> = links.into_iter().map(|l| l.expect("every rank arrived")).collect();
    for link in &mut links {
        write_welcome(link, 0, &blob).map_err(|e| net_error(&where_, e))?;
        link.set_read_timeout(None).map_err(|e| net_error(&where_, e))?;
    }
    Ok(Rendezvous { blob, links })
}

fn join(
    host: &str,
    port: u16,
    rank: usize,
    world_size: usize,
    fingerprint: u64,
    deadline: Instant,
    timeout: Duration,
) -> Result<Rendezvous> {
    let where_ = format!("{host}:{port}");
    let addrs = resolve(host, port)?;
    let mut last_error = None;
    let mut stream = loop {
        let attempt = addrs.iter().find_map(|a| match TcpStream::connect_timeout(a, Duration::from_secs(2)) {
            Ok(s) => Some(s),
            Err(e) => {
                last_error = Some(e);
                None
            }
        });
        if let Some(s) = attempt {
            break s;
        }
        if Instant::now() >= deadline {
            return Err(Error::invalid(format!(
                "rank {rank} of {world_size}: no rank 0 answered at {where_} within {:.0} s (last error: {}); \
                 check MASTER_ADDR and MASTER_PORT, and that rank 0 started",
                timeout.as_secs_f64(),
                last_error.map(|e| e.to_string()).unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stream.set_nodelay(true).map_err(|e| net_error(&where_, e))?;
    let mut hello = Vec::with_capacity(21);
    hello.extend_from_slice(HELLO);
    hello.push(VERSION);
    hello.extend_from_slice(&(rank as u32).to_le_bytes());
    hello.extend_from_slice(&(world_size as u32).to_le_bytes());
    hello.extend_from_slice(&fingerprint.to_le_bytes());
    stream.write_all(&hello).map_err(|e| net_error(&where_, e))?;
    // Rank 0 answers when the last rank has arrived, or at its own deadline with the reason it
    // gives up: wait a little past ours, so that reason arrives rather than a bare timeout.
    let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5);
    stream.set_read_timeout(Some(left)).map_err(|e| net_error(&where_, e))?;
    let welcome = read_welcome(&mut stream).map_err(|e| {
        let why = if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            format!("rank 0 did not answer within {:.0} s (waiting for the other ranks?)", timeout.as_secs_f64())
        } else {
            format!("{e}")
        };
        Error::invalid(format!("rank {rank} of {world_size} at {where_}: {why}"))
    })?;
    match welcome {
        (0, blob) => {
            stream.set_read_timeout(None).map_err(|e| net_error(&where_, e))?;
            Ok(Rendezvous { blob, links: vec![stream] })
        }
        (_, why) => Err(Error::invalid(format!(
            "rank {rank} of {world_size}: rank 0 at {where_} stopped the run: {}",
            String::from_utf8_lossy(&why)
        ))),
    }
}

fn read_hello(stream: &mut TcpStream) -> std::io::Result<(usize, usize, u64)> {
    let mut buf = [0u8; 21];
    stream.read_exact(&mut buf)?;
    if &buf[..4] != HELLO || buf[4] != VERSION {
        return Err(std::io::Error::new(ErrorKind::InvalidData, "not a protein-lm rank"));
    }
    let rank = u32::from_le_bytes(buf[5..9].try_into().expect("4 bytes")) as usize;
    let world = u32::from_le_bytes(buf[9..13].try_into().expect("4 bytes")) as usize;
    let fingerprint = u64::from_le_bytes(buf[13..21].try_into().expect("8 bytes"));
    Ok((rank, world, fingerprint))
}

fn write_welcome(stream: &mut TcpStream, status: u8, bytes: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(9 + bytes.len());
    out.extend_from_slice(WELCOME);
    out.push(status);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
    stream.write_all(&out)
}

fn read_welcome(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head)?;
    if &head[..4] != WELCOME {
        return Err(std::io::Error::new(ErrorKind::InvalidData, "the answer is not protein-lm's rendezvous"));
    }
    let len = u32::from_le_bytes(head[5..9].try_into().expect("4 bytes"));
    if len > MAX_BLOB {
        return Err(std::io::Error::new(ErrorKind::InvalidData, format!("a blob of {len} bytes")));
    }
    let mut bytes = vec![0u8; len as usize];
    stream.read_exact(&mut bytes)?;
    Ok((head[4], bytes))
}

/// FNV-1a of `bytes`: the fingerprint of a configuration (stable across builds and platforms).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meet(
        port: u16,
        rank: usize,
        world: usize,
        print: u64,
        secs: f64,
    ) -> std::thread::JoinHandle<Result<Rendezvous>> {
        std::thread::spawn(move || {
            rendezvous(
                "127.0.0.1",
                port,
                rank,
                world,
                print,
                Duration::from_secs_f64(secs),
                || Ok((0u8..128).collect()),
            )
        })
    }

    #[test]
    fn every_rank_gets_rank_zeros_blob_whatever_the_start_order() {
        let port = free_loopback_port().unwrap();
        // Ranks 2 and 3 start before rank 0 listens: they retry.
        let early: Vec<_> = [3, 2].iter().map(|&r| meet(port, r, 4, 9, 20.0)).collect();
        std::thread::sleep(Duration::from_millis(300));
        let zero = meet(port, 0, 4, 9, 20.0);
        let late = meet(port, 1, 4, 9, 20.0);
        let zero = zero.join().unwrap().unwrap();
        assert_eq!(zero.blob, (0u8..128).collect::<Vec<_>>());
        assert_eq!(zero.links.len(), 3);
        for h in early.into_iter().chain([late]) {
            let r = h.join().unwrap().unwrap();
            assert_eq!(r.blob, zero.blob);
            assert_eq!(r.links.len(), 1);
        }
    }

    #[test]
    fn a_missing_rank_times_out_naming_it() {
        let port = free_loopback_port().unwrap();
        let one = meet(port, 1, 3, 9, 1.5);
        let zero = meet(port, 0, 3, 9, 1.5);
        let e = zero.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("rank(s) 2 of 3") && e.contains("PROTEIN_LM_RENDEZVOUS_TIMEOUT_S"), "{e}");
        // The rank that came is told why the run stops.
        let e = one.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("stopped the run") && e.contains("rank(s) 2 of 3"), "{e}");
    }

    #[test]
    fn no_rank_zero_times_out_naming_the_address() {
        let port = free_loopback_port().unwrap();
        let e = meet(port, 1, 2, 9, 0.5).join().unwrap().unwrap_err().to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}")) && e.contains("MASTER_ADDR"), "{e}");
    }

    #[test]
    fn mismatched_ranks_are_refused() {
        let port = free_loopback_port().unwrap();
        let other = meet(port, 1, 2, 10, 10.0);
        let e = meet(port, 0, 2, 9, 10.0).join().unwrap().unwrap_err().to_string();
        assert!(e.contains("another configuration"), "{e}");
        let e = other.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("another configuration"), "{e}");

        let port = free_loopback_port().unwrap();
        let other = meet(port, 1, 3, 9, 10.0);
        let e = meet(port, 0, 2, 9, 10.0).join().unwrap().unwrap_err().to_string();
        assert!(e.contains("started for 3 ranks, rank 0 for 2"), "{e}");
        assert!(other.join().unwrap().is_err());
    }

    #[test]
    fn fingerprints_are_stable() {
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fingerprint(b"{\"lr\":1}"), fingerprint(b"{\"lr\":2}"));
    }
}
