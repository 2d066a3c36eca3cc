//! The pieces put together: from this process's [`WorldInfo`] and device to the trainer's
//! [`GradientSync`].
//!
//! | ranks | device | gradient sync |
//! |---|---|---|
//! | 1 | any | [`SingleProcess`] |
//! | several | CUDA (`--features nccl`) | [`DataParallel`] over NCCL, its unique id handed out by the rendezvous |
//! | several | CPU | [`DataParallel`] over [`TcpCollective`], on the rendezvous' connections |

use candle_core::Device;

use super::collective::{self, TcpCollective};
use super::launch::WorldInfo;
use super::rendezvous;
use super::sync::DataParallel;
use crate::device::DeviceChoice;
use crate::train::trainer::{GradientSync, SingleProcess};
use crate::{Error, Result};

/// The device choice of a rank: under a launcher every rank drives the GPU of its local rank
/// (`--device cuda` or `auto` means `cuda:LOCAL_RANK`); a CPU choice stays the CPU.
///
/// ```
/// use protein_lm::device::DeviceChoice;
/// use protein_lm::distributed::launch::WorldInfo;
/// use protein_lm::distributed::setup::rank_device_choice;
/// let mut world = WorldInfo::single();
/// world.world_size = 4;
/// world.rank = 3;
/// world.local_rank = 1;
/// assert_eq!(rank_device_choice(DeviceChoice::Cuda(0), &world)?, DeviceChoice::Cuda(1));
/// assert_eq!(rank_device_choice(DeviceChoice::Cpu, &world)?, DeviceChoice::Cpu);
/// assert!(rank_device_choice(DeviceChoice::Cuda(2), &world).is_err());
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn rank_device_choice(choice: DeviceChoice, world: &WorldInfo) -> Result<DeviceChoice> {
    if !world.is_distributed() {
        return Ok(choice);
    }
    match choice {
        DeviceChoice::Cpu => Ok(DeviceChoice::Cpu),
        DeviceChoice::Cuda(0) => Ok(DeviceChoice::Cuda(world.local_rank)),
        DeviceChoice::Cuda(n) => Err(Error::invalid(format!(
            "--device cuda:{n} with {} ranks: each rank drives the GPU of its LOCAL_RANK; pass --device cuda",
            world.world_size
        ))),
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available() {
                Ok(DeviceChoice::Cuda(world.local_rank))
            } else {
                Ok(DeviceChoice::Cpu)
            }
        }
    }
}

/// Meets the other ranks (if any) and returns the gradient sync of this rank on `device`.
/// `fingerprint` identifies the run's configuration: ranks that disagree are refused.
pub fn connect(world: &WorldInfo, device: &Device, fingerprint: u64) -> Result<Box<dyn GradientSync>> {
    if !world.is_distributed() {
        return Ok(Box::new(SingleProcess));
    }
    let (host, port) = world.master()?;
    let timeout = rendezvous::default_timeout();
    if device.is_cuda() {
        return nccl_sync(world, device, &host, port, fingerprint, timeout);
    }
    if !device.is_cpu() {
        return Err(Error::invalid(format!("data parallelism on {device:?}: only CUDA (NCCL) and the CPU (TCP)")));
    }
    let met =
        rendezvous::rendezvous(&host, port, world.rank, world.world_size, fingerprint, timeout, || Ok(Vec::new()))?;
    let tcp = TcpCollective::new(world.rank, world.world_size, met.links, collective::default_timeout())?;
    Ok(Box::new(DataParallel::new(Box::new(tcp))))
}

#[cfg(feature = "nccl")]
fn nccl_sync(
    world: &WorldInfo,
    device: &Device,
    host: &str,
    port: u16,
    fingerprint: u64,
    timeout: std::time::Duration,
) -> Result<Box<dyn GradientSync>> {
    let met =
        rendezvous::rendezvous(host, port, world.rank, world.world_size, fingerprint, timeout, super::nccl::unique_id)?;
    // The TCP connections are not needed once NCCL has its id.
    drop(met.links);
    let nccl = super::nccl::NcclCollective::new(device, world.rank, world.world_size, &met.blob)?;
    Ok(Box::new(DataParallel::new(Box::new(nccl))))
}

#[cfg(not(feature = "nccl"))]
fn nccl_sync(
    world: &WorldInfo,
    _device: &Device,
    _host: &str,
    _port: u16,
    _fingerprint: u64,
    _timeout: std::time::Duration,
) -> Result<Box<dyn GradientSync>> {
    Err(Error::invalid(format!(
        "{} ranks on GPUs need NCCL, and this binary was built without it: build it with \
         `FEATURES=cuda,nccl scripts/cuda/build.sh` (or run the ranks on the CPU: --device cpu)",
        world.world_size
    )))
}
