//! The one operation data parallelism needs: every rank contributes a flat f32 buffer and every
//! rank gets the element-wise sum back.
//!
//! | implementation | where | how |
//! |---|---|---|
//! | [`LocalGroup`] | tests, one process | threads; the last rank to arrive sums the buffers |
//! | [`TcpCollective`] | CPU ranks (`--cpu-ranks`, or a launcher with `--device cpu`) | rank 0 gathers the buffers over the rendezvous connections and sends back the sum |
//! | `NcclCollective` (`--features nccl`) | GPU ranks | NCCL's all-reduce on the device buffers |
//!
//! The two CPU implementations add the buffers in rank order (`((b₀ + b₁) + b₂) + …`), so every
//! run of the same job gives the same bits; NCCL picks its own order (ring or tree).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use protein_lm::distributed::collective::{Collective, LocalGroup};
//! let ranks = LocalGroup::new(3);
//! let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
//!     let handles: Vec<_> = ranks.into_iter().map(|mut c| s.spawn(move || {
//!         let mine = Tensor::new(&[c.rank() as f32, 1.0], &Device::Cpu)?;
//!         c.all_reduce_sum(&mine)?.to_vec1::<f32>().map_err(protein_lm::Error::from)
//!     })).collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).collect::<protein_lm::Result<_>>()
//! })?;
//! assert!(sums.iter().all(|s| s == &[3.0, 3.0]));
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Sums of flat f32 buffers across the ranks of a run.
pub trait Collective {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// The element-wise sum over every rank of the 1-D f32 tensor `values` (same length on every
    /// rank), on the tensor's device. Every rank must call it the same number of times in the same
    /// order.
    fn all_reduce_sum(&mut self, values: &Tensor) -> Result<Tensor>;
    /// Where the sums happen, for messages (`in-process`, `tcp`, `nccl`).
    fn kind(&self) -> &'static str;
}

/// How long a rank waits for the others inside one sum before calling the run broken:
/// `PROTEIN_LM_COLLECTIVE_TIMEOUT_S` or 1,800 s (a validation or a checkpoint on rank 0 can take
/// minutes while the others wait).
pub fn default_timeout() -> Duration {
    let seconds = std::env::var("PROTEIN_LM_COLLECTIVE_TIMEOUT_S").ok().and_then(|v| v.parse::<f64>().ok());
    Duration::from_secs_f64(seconds.filter(|s| *s > 0.0).unwrap_or(1800.0))
}

fn host_values(values: &Tensor) -> Result<Vec<f32>> {
    if values.rank() != 1 || values.dtype() != DType::F32 {
        return Err(Error::invalid(format!(
            "all-reduce takes a 1-D f32 buffer, got {:?} of shape {:?}",
            values.dtype(),
            values.dims()
        )));
    }
    Ok(values.to_vec1::<f32>()?)
}

fn sum_in_rank_order(buffers: &[Vec<f32>]) -> std::result::Result<Vec<f32>, String> {
    let n = buffers[0].len();
    if let Some((r, b)) = buffers.iter().enumerate().find(|(_, b)| b.len() != n) {
        return Err(format!("rank {r} sent {} values, rank 0 {n}: the ranks train different models", b.len()));
    }
    let mut sum = buffers[0].clone();
    for b in &buffers[1..] {
        for (s, v) in sum.iter_mut().zip(b) {
            *s += v;
        }
    }
    Ok(sum)
}

// ---------------------------------------------------------------------------------------------
// In-process

struct Round {
    /// Rounds completed.
    generation: u64,
    arrived: usize,
    slots: Vec<Option<Vec<f32>>>,
    result: Option<Arc<std::result::Result<Vec<f32>, String>>>,
    /// A rank whose handle was dropped (it returned or failed): the others stop waiting for it.
    left: Option<usize>,
}

struct Shared {
    round: Mutex<Round>,
    wake: Condvar,
    world_size: usize,
}

/// `world_size` ranks in one process (threads), for tests of everything above the collective:
/// [`LocalGroup::new`] returns one handle per rank, to move into each rank's thread. A rank that
/// drops its handle (returns, or fails) makes the others' next sum an error instead of a hang.
pub struct LocalGroup {
    rank: usize,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl LocalGroup {
    /// Handles for ranks 0…world_size − 1.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(world_size: usize) -> Vec<LocalGroup> {
        assert!(world_size > 0, "a group needs a rank");
        let shared = Arc::new(Shared {
            round: Mutex::new(Round {
                generation: 0,
                arrived: 0,
                slots: vec![None; world_size],
                result: None,
                left: None,
            }),
            wake: Condvar::new(),
            world_size,
        });
        (0..world_size).map(|rank| LocalGroup { rank, shared: shared.clone(), timeout: default_timeout() }).collect()
    }

    /// Waits at most `timeout` for the other ranks in each sum.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Drop for LocalGroup {
    fn drop(&mut self) {
        let mut round = self.shared.round.lock().unwrap_or_else(|p| p.into_inner());
        round.left.get_or_insert(self.rank);
        self.shared.wake.notify_all();
    }
}

impl Collective for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.world_size
    }

    fn kind(&self) -> &'static str {
        "in-process"
    }

    fn all_reduce_sum(&mut self, values: &Tensor) -> Result<Tensor> {
        let mine = host_values(values)?;
        let world = self.shared.world_size;
        let mut round = self.shared.round.lock().unwrap_or_else(|p| p.into_inner());
        let generation = round.generation;
        round.slots[self.rank] = Some(mine);
        round.arrived += 1;
        if round.arrived == world {
            let buffers: Vec<Vec<f32>> =
                round.slots.iter_mut().map(|s| s.take().expect("every rank arrived")).collect();
            round.result = Some(Arc::new(sum_in_rank_order(&buffers)));
            round.arrived = 0;
            round.generation += 1;
            self.shared.wake.notify_all();
        } else {
            let deadline = Instant::now() + self.timeout;
            while round.generation == generation {
                if let Some(r) = round.left {
                    return Err(Error::invalid(format!(
                        "rank {}: rank {r} left the run (it stopped or failed) during an all-reduce",
                        self.rank
                    )));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::invalid(format!(
                        "rank {}: the other ranks did not join an all-reduce within {:.0} s",
                        self.rank,
                        self.timeout.as_secs_f64()
                    )));
                }
                round = self.shared.wake.wait_timeout(round, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        // The next round cannot finish before this rank joins it, so the result is still this one.
        let result = round.result.clone().expect("the round has a result");
        drop(round);
        match result.as_ref() {
            Ok(sum) => Ok(Tensor::from_slice(sum, sum.len(), values.device())?),
            Err(why) => Err(Error::invalid(format!("rank {}: {why}", self.rank))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TCP

/// Sums over the connections the rendezvous left open: every rank sends its buffer to rank 0,
/// which adds them in rank order and sends the sum back. Rank 0 moves (world − 1) buffers each
/// way, so this is for CPU ranks on one machine or a few, where the model's compute dominates;
/// GPUs use NCCL.
pub struct TcpCollective {
    rank: usize,
    world_size: usize,
    /// Rank 0: ranks 1…world − 1 in order; others: rank 0.
    links: Vec<TcpStream>,
}

const DATA: u8 = 0;
const FAILED: u8 = 1;

impl TcpCollective {
    /// From [`super::rendezvous::rendezvous`]'s connections; every read waits at most `timeout`.
    pub fn new(rank: usize, world_size: usize, links: Vec<TcpStream>, timeout: Duration) -> Result<Self> {
        let expected = if rank == 0 { world_size - 1 } else { 1 };
        if links.len() != expected {
            return Err(Error::invalid(format!(
                "rank {rank} of {world_size} has {} connections, expected {expected}",
                links.len()
            )));
        }
        for link in &links {
            link.set_read_timeout(Some(timeout)).map_err(|e| Error::invalid(format!("all-reduce socket: {e}")))?;
            link.set_nodelay(true).map_err(|e| Error::invalid(format!("all-reduce socket: {e}")))?;
        }
        Ok(Self { rank, world_size, links })
    }

    fn peer_error(&self, peer: usize, e: std::io::Error) -> Error {
        let why = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                "did not answer in time (PROTEIN_LM_COLLECTIVE_TIMEOUT_S sets the wait)".to_string()
            }
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => "left the run (it stopped or failed)".to_string(),
            _ => e.to_string(),
        };
        Error::invalid(format!(
            "rank {} of {}: all-reduce with rank {peer}: rank {peer} {why}",
            self.rank, self.world_size
        ))
    }
}

fn write_frame(stream: &mut TcpStream, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut head = [0u8; 9];
    head[0] = tag;
    head[1..].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    stream.write_all(&head)?;
    stream.write_all(payload)
}

fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head)?;
    let len = u64::from_le_bytes(head[1..].try_into().expect("8 bytes"));
    if len > 1 << 36 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {len} bytes")));
    }
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload)?;
    Ok((head[0], payload))
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}

impl Collective for TcpCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn all_reduce_sum(&mut self, values: &Tensor) -> Result<Tensor> {
        let mine = host_values(values)?;
        let sum = if self.rank == 0 {
            let mut buffers = vec![mine];
            for peer in 1..self.world_size {
                let (tag, payload) = read_frame(&mut self.links[peer - 1]).map_err(|e| self.peer_error(peer, e))?;
                if tag != DATA {
                    return Err(Error::invalid(format!(
                        "rank 0: rank {peer} failed: {}",
                        String::from_utf8_lossy(&payload)
                    )));
                }
                buffers.push(from_bytes(&payload));
            }
            match sum_in_rank_order(&buffers) {
                Ok(sum) => {
                    let bytes = to_bytes(&sum);
                    for peer in 1..self.world_size {
                        write_frame(&mut self.links[peer - 1], DATA, &bytes).map_err(|e| self.peer_error(peer, e))?;
                    }
                    sum
                }
                Err(why) => {
                    for link in &mut self.links {
                        let _ = write_frame(link, FAILED, why.as_bytes());
                    }
                    return Err(Error::invalid(format!("rank 0: {why}")));
                }
            }
        } else {
            write_frame(&mut self.links[0], DATA, &to_bytes(&mine)).map_err(|e| self.peer_error(0, e))?;
            let (tag, payload) = read_frame(&mut self.links[0]).map_err(|e| self.peer_error(0, e))?;
            if tag != DATA {
                return Err(Error::invalid(format!(
                    "rank {}: rank 0 stopped the all-reduce: {}",
                    self.rank,
                    String::from_utf8_lossy(&payload)
                )));
            }
            from_bytes(&payload)
        };
        Ok(Tensor::from_slice(&sum, sum.len(), values.device())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::rendezvous::{free_loopback_port, rendezvous};
    use candle_core::Device;

    fn run_ranks<C: Collective + Send + 'static>(
        ranks: Vec<C>,
        work: impl Fn(&mut C) -> Result<Vec<Vec<f32>>> + Send + Sync + 'static,
    ) -> Vec<Result<Vec<Vec<f32>>>> {
        let work = Arc::new(work);
        let handles: Vec<_> = ranks
            .into_iter()
            .map(|mut c| {
                let work = work.clone();
                std::thread::spawn(move || work(&mut c))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    fn three_sums<C: Collective>(c: &mut C) -> Result<Vec<Vec<f32>>> {
        let r = c.rank() as f32;
        (0..3)
            .map(|round| {
                let mine = Tensor::new(&[r, 10.0 * r + round as f32, 0.1], &Device::Cpu)?;
                Ok(c.all_reduce_sum(&mine)?.to_vec1::<f32>()?)
            })
            .collect()
    }

    #[test]
    fn in_process_sums_in_rank_order_round_after_round() {
        let out = run_ranks(LocalGroup::new(4), three_sums);
        // 0.1 + 0.1 + 0.1 + 0.1 in rank order.
        let tenths = ((0.1f32 + 0.1) + 0.1) + 0.1;
        for r in out {
            let r = r.unwrap();
            for (round, sum) in r.iter().enumerate() {
                assert_eq!(sum, &[6.0, 60.0 + 4.0 * round as f32, tenths]);
            }
        }
    }

    #[test]
    fn in_process_rank_that_leaves_or_disagrees_is_an_error_not_a_hang() {
        let mut ranks = LocalGroup::new(2);
        let one = ranks.pop().unwrap();
        drop(one);
        let mut zero = ranks.pop().unwrap();
        let e = zero.all_reduce_sum(&Tensor::new(&[1f32], &Device::Cpu).unwrap()).unwrap_err().to_string();
        assert!(e.contains("rank 1 left the run"), "{e}");

        let out = run_ranks(LocalGroup::new(2), |c| {
            let n = 2 + c.rank();
            Ok(vec![c.all_reduce_sum(&Tensor::zeros(n, DType::F32, &Device::Cpu)?)?.to_vec1::<f32>()?])
        });
        for r in out {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("rank 1 sent 3 values, rank 0 2"), "{e}");
        }
        let mut single = LocalGroup::new(1).pop().unwrap();
        let e = single.all_reduce_sum(&Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap()).unwrap_err();
        assert!(e.to_string().contains("1-D f32"), "{e}");
    }

    fn tcp_ranks(world: usize) -> Vec<TcpCollective> {
        let port = free_loopback_port().unwrap();
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                std::thread::spawn(move || {
                    let r = rendezvous("127.0.0.1", port, rank, world, 1, Duration::from_secs(20), || Ok(vec![]))?;
                    TcpCollective::new(rank, world, r.links, Duration::from_secs(5))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    }

    #[test]
    fn tcp_sums_equal_the_in_process_ones() {
        let tcp = run_ranks(tcp_ranks(3), three_sums);
        let local = run_ranks(LocalGroup::new(3), three_sums);
        for (t, l) in tcp.into_iter().zip(local) {
            assert_eq!(t.unwrap(), l.unwrap());
        }
    }

    #[test]
    fn tcp_rank_that_leaves_is_an_error() {
        let mut ranks = tcp_ranks(2);
        drop(ranks.pop());
        let mut zero = ranks.pop().unwrap();
        let e = zero.all_reduce_sum(&Tensor::new(&[1f32], &Device::Cpu).unwrap()).unwrap_err().to_string();
        assert!(e.contains("rank 1 left the run"), "{e}");
    }
}
