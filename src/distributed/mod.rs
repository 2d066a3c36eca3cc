//! Data parallelism: one process per device, gradients averaged at the trainer's
//! [`GradientSync`](crate::train::trainer::GradientSync) seam.
//!
//! * [`launch`]: who this process is (`RANK`/`WORLD_SIZE`/… from torchrun or `--gpus`, or SLURM's
//!   `SLURM_PROCID`/…).
//! * [`local`]: `--gpus N`/`--cpu-ranks N`, this machine's ranks as child processes.
//! * [`rendezvous`]: rank 0 meets the others over TCP at `MASTER_ADDR:MASTER_PORT` and hands them
//!   NCCL's unique id.
//! * [`collective`]: the all-reduce (sum of f32 buffers): in-process threads for tests, TCP for
//!   CPU ranks, NCCL for GPUs (`nccl`, with `--features nccl`).
//! * [`sync`]: [`sync::DataParallel`], the trainer's gradient sync over a collective, bucketed.
//! * [`setup`]: all of it put together for the command line: [`setup::connect`] turns the
//!   environment and the device into a gradient sync.
//!
//! The training loop does the rest: it shards each epoch across the ranks, gives every rank rank
//! 0's weights, optimizer and loop state at the start (fresh or resumed), and leaves logging,
//! validation and checkpoints to rank 0, which tells the others what validation decided.

pub mod collective;
pub mod launch;
pub mod local;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod rendezvous;
pub mod setup;
pub mod sync;
