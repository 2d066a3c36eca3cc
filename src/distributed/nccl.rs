//! [`NcclCollective`]: the all-reduce on GPUs, through candle's cudarc NCCL bindings
//! (`--features nccl`, built with `scripts/cuda/build.sh`). Rank 0 makes NCCL's unique id
//! ([`unique_id`]) and the rendezvous hands it to the others; each rank then joins the
//! communicator on its own GPU.
//!
//! NCCL sums on the device, in the order its ring or tree takes: the ranks agree with each other
//! bit for bit (every rank gets the same result), but not necessarily with the CPU collectives'
//! rank-order sums.

use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Device, Layout, Shape, Tensor};

use super::collective::Collective;
use crate::{Error, Result};

/// The size of NCCL's unique id.
pub const ID_BYTES: usize = 128;

/// A fresh NCCL unique id (rank 0 only), as the bytes the rendezvous hands out.
pub fn unique_id() -> Result<Vec<u8>> {
    let id = Id::new().map_err(|e| Error::invalid(format!("NCCL: cannot make a unique id: {e:?}")))?;
    Ok(id.internal().iter().map(|&c| c as u8).collect())
}

/// One rank of an NCCL communicator on `device`.
pub struct NcclCollective {
    comm: Comm,
    rank: usize,
    world_size: usize,
}

impl NcclCollective {
    /// Joins the communicator of `id` (rank 0's [`unique_id`]) as `rank` of `world_size`, on the
    /// CUDA device `device`. Blocks until every rank has joined.
    pub fn new(device: &Device, rank: usize, world_size: usize, id: &[u8]) -> Result<Self> {
        let Device::Cuda(cuda) = device else {
            return Err(Error::invalid(format!("NCCL needs a CUDA device, this rank runs on {device:?}")));
        };
        let bytes: [u8; ID_BYTES] = id.try_into().map_err(|_| {
            Error::invalid(format!("NCCL unique id: rank 0 sent {} bytes, expected {ID_BYTES}", id.len()))
        })?;
        let id = Id::uninit(bytes.map(|b| b as core::ffi::c_char));
        let comm = Comm::from_rank(cuda.cuda_stream(), rank, world_size, id).map_err(|e| {
            Error::invalid(format!("NCCL: rank {rank} of {world_size} cannot join the communicator: {e:?}"))
        })?;
        Ok(Self { comm, rank, world_size })
    }
}

/// The all-reduce as a candle op: the output is a new device buffer holding the sum.
struct AllReduce<'a> {
    comm: &'a Comm,
}

impl CustomOp1 for AllReduce<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the NCCL all-reduce runs on CUDA tensors only")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the NCCL all-reduce needs a contiguous buffer")
        };
        let src = storage.as_cuda_slice::<f32>()?.slice(start..end);
        let device = storage.device.clone();
        let mut dst = device.alloc_zeros::<f32>(end - start)?;
        self.comm
            .all_reduce(&src, &mut dst, &ReduceOp::Sum)
            .map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce: {e:?}")))?;
        Ok((CudaStorage::wrap_cuda_slice(dst, device), layout.shape().clone()))
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn kind(&self) -> &'static str {
        "nccl"
    }

    fn all_reduce_sum(&mut self, values: &Tensor) -> Result<Tensor> {
        if values.rank() != 1 || values.dtype() != candle_core::DType::F32 || !values.device().is_cuda() {
            return Err(Error::invalid(format!(
                "the NCCL all-reduce takes a 1-D f32 CUDA buffer, got {:?} {:?} on {:?}",
                values.dtype(),
                values.dims(),
                values.device()
            )));
        }
        Ok(values.contiguous()?.apply_op1_no_bwd(&AllReduce { comm: &self.comm })?)
    }
}
