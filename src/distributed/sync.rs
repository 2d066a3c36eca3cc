//! [`DataParallel`]: the trainer's [`GradientSync`] seam over a [`Collective`].
//!
//! Each rank computes the gradients of its own shard of the update's batch; the all-reduce turns
//! them into the gradient of the whole batch, the average of the ranks' gradients weighted by the
//! samples each rank had (`g = Σ_r n_r·g_r / Σ_r n_r`), which for a per-sample mean loss is exactly
//! the gradient of the mean over every sample of every rank, even when the last batch of an epoch
//! leaves some ranks fewer samples (or none).
//!
//! One update's exchange:
//!
//! 1. a header: samples, loss · samples, tokens and a non-finite-loss flag of each rank, and for
//!    each parameter whether this rank has a gradient for it (a parameter no rank touched stays
//!    without a gradient, as on one process);
//! 2. the gradients, each scaled by `n_r / Σ n`, flattened in parameter order into buckets of
//!    [`DataParallel::bucket_bytes`] (default 25 MB, torch DDP's), one sum per bucket. Big models
//!    need no second copy of all gradients at once, and on GPUs NCCL works on one bucket while
//!    the next is being flattened. (candle's backward has no per-parameter hooks, so the sums
//!    start after the backward, not during it as in torch.)

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};

use super::collective::Collective;
use crate::train::optim::Param;
use crate::train::trainer::{GlobalUpdate, GradientSync, LocalUpdate};
use crate::{Error, Result};

/// torch DDP's default bucket size.
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// Data-parallel gradient averaging through a [`Collective`].
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use protein_lm::distributed::collective::{Collective, LocalGroup};
/// use protein_lm::distributed::sync::DataParallel;
/// use protein_lm::train::trainer::{GradientSync, LocalUpdate};
/// // Two ranks; rank r's loss is (r + 1)·Σw over 1 and 3 samples: the average weighs rank 1 three times.
/// let results: Vec<Vec<f32>> = std::thread::scope(|s| {
///     let handles: Vec<_> = LocalGroup::new(2).into_iter().map(|c| s.spawn(move || {
///         let rank = c.rank();
///         let w = Var::new(&[0f32, 0.0], &Device::Cpu)?;
///         let mut grads = (w.as_tensor().sum_all()? * (rank + 1) as f64)?.backward()?;
///         let params = vec![("w".to_string(), w.clone())];
///         let mut sync = DataParallel::new(Box::new(c));
///         let local = LocalUpdate { samples: 1 + 2 * rank, tokens: 0, loss: 0.0, non_finite_loss: false };
///         let global = sync.all_reduce(&mut grads, &params, local)?;
///         assert_eq!(global.samples, 4);
///         Ok(grads.get(&w).unwrap().to_vec1::<f32>()?)
///     })).collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect::<protein_lm::Result<_>>()
/// })?;
/// assert_eq!(results, vec![vec![1.75, 1.75]; 2]); // (1·1 + 3·2) / 4
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub struct DataParallel {
    collective: Box<dyn Collective>,
    /// Gradient bytes per all-reduce.
    pub bucket_bytes: usize,
    /// All-reduces made (headers, buckets and broadcasts), for tests and logs.
    pub calls: u64,
}

impl DataParallel {
    pub fn new(collective: Box<dyn Collective>) -> Self {
        Self { collective, bucket_bytes: DEFAULT_BUCKET_BYTES, calls: 0 }
    }

    /// With buckets of `bytes` bytes (at least one parameter per bucket whatever its size).
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes.max(1);
        self
    }

    fn sum(&mut self, values: &Tensor) -> Result<Tensor> {
        self.calls += 1;
        self.collective.all_reduce_sum(values)
    }

    fn flush(&mut self, bucket: &mut Vec<(usize, Tensor)>, grads: &mut GradStore, params: &[Param]) -> Result<()> {
        if bucket.is_empty() {
            return Ok(());
        }
        let flat = Tensor::cat(&bucket.iter().map(|(_, g)| g).collect::<Vec<_>>(), 0)?;
        let summed = self.sum(&flat)?;
        let mut offset = 0;
        for (i, g) in bucket.drain(..) {
            let var = &params[i].1;
            let n = g.elem_count();
            let back = summed.narrow(0, offset, n)?.reshape(var.dims())?.to_dtype(var.dtype())?;
            grads.insert(var, back);
            offset += n;
        }
        Ok(())
    }
}

impl GradientSync for DataParallel {
    fn rank(&self) -> usize {
        self.collective.rank()
    }

    fn world_size(&self) -> usize {
        self.collective.world_size()
    }

    fn describe(&self) -> String {
        format!("data parallel, {} ranks ({} all-reduce)", self.collective.world_size(), self.collective.kind())
    }

    fn all_reduce(&mut self, grads: &mut GradStore, params: &[Param], local: LocalUpdate) -> Result<GlobalUpdate> {
        let world = self.collective.world_size();
        if world == 1 {
            return Ok(GlobalUpdate::alone(local));
        }
        let Some(device) = params.first().map(|(_, v)| v.device().clone()) else {
            return Err(Error::invalid("data-parallel training with no trainable parameter"));
        };
        if let Some((name, var)) = params.iter().find(|(_, v)| v.dtype() != DType::F32) {
            return Err(Error::invalid(format!(
                "data-parallel training sums f32 gradients; parameter {name} is {:?}",
                var.dtype()
            )));
        }
        // 1. Who brought what.
        let mut header = vec![
            local.samples as f32,
            (local.loss * local.samples as f64) as f32,
            local.tokens as f32,
            local.non_finite_loss as u8 as f32,
        ];
        header.extend(params.iter().map(|(_, v)| grads.get(v).is_some() as u8 as f32));
        let n = header.len();
        let header = self.sum(&Tensor::from_vec(header, n, &device)?)?.to_vec1::<f32>()?;
        let samples = header[0] as f64;
        let global = GlobalUpdate {
            samples: header[0] as usize,
            tokens: header[2] as usize,
            loss: if samples > 0.0 { header[1] as f64 / samples } else { 0.0 },
            non_finite_ranks: header[3] as usize,
        };
        // 2. The gradients, weighted by each rank's share of the samples.
        let factor = if samples > 0.0 { local.samples as f64 / samples } else { 1.0 / world as f64 };
        let mut bucket: Vec<(usize, Tensor)> = Vec::new();
        let mut bytes = 0usize;
        for (i, (_, var)) in params.iter().enumerate() {
            if header[4 + i] == 0.0 {
                continue;
            }
            let flat = match grads.get(var) {
                Some(g) => g.to_dtype(DType::F32)?.flatten_all()?,
                None => Tensor::zeros(var.elem_count(), DType::F32, &device)?,
            };
            // Multiplying by 1 would round nothing, but it costs a pass over the gradient.
            let flat = if factor == 1.0 { flat } else { (flat * factor)? };
            bytes += 4 * flat.elem_count();
            bucket.push((i, flat));
            if bytes >= self.bucket_bytes {
                self.flush(&mut bucket, grads, params)?;
                bytes = 0;
            }
        }
        self.flush(&mut bucket, grads, params)?;
        Ok(global)
    }

    fn broadcast(&mut self, values: &Tensor) -> Result<Tensor> {
        if self.collective.world_size() == 1 {
            return Ok(values.clone());
        }
        // Rank 0's values plus −0 from every other rank: −0 is the one exact identity of IEEE
        // addition (+0 would turn a −0 into +0), so every rank gets rank 0's bits.
        let contribution = if self.collective.rank() == 0 {
            values.clone()
        } else {
            Tensor::full(-0.0f32, values.elem_count(), values.device())?
        };
        self.sum(&contribution)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::collective::LocalGroup;
    use candle_core::{Device, Var};

    /// Runs `f` on every rank of an in-process group of `world` and returns each rank's result.
    fn ranks<T: Send>(world: usize, f: impl Fn(DataParallel) -> Result<T> + Sync) -> Vec<T> {
        std::thread::scope(|s| {
            let handles: Vec<_> = LocalGroup::new(world)
                .into_iter()
                .map(|c| {
                    let f = &f;
                    s.spawn(move || f(DataParallel::new(Box::new(c))))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        })
    }

    #[test]
    fn buckets_of_any_size_give_the_same_averages_and_untouched_params_stay_without_gradient() {
        let averages = |bucket_bytes: usize| {
            ranks(3, |sync| {
                let mut sync = sync.with_bucket_bytes(bucket_bytes);
                let rank = sync.rank();
                let a = Var::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu)?;
                let b = Var::new(&[5f32, 6.0, 7.0], &Device::Cpu)?;
                let frozen = Var::new(&[0f32], &Device::Cpu)?;
                // Rank 2 has no gradient for b (a branch it did not take): it counts as zero.
                let loss = if rank == 2 {
                    a.as_tensor().sqr()?.sum_all()?
                } else {
                    (a.as_tensor().sqr()?.sum_all()? + (b.as_tensor().sum_all()? * (rank + 1) as f64)?)?
                };
                let mut grads = loss.backward()?;
                let params: Vec<Param> =
                    vec![("a".into(), a.clone()), ("b".into(), b.clone()), ("f".into(), frozen.clone())];
                let local = LocalUpdate { samples: 2, tokens: 10, loss: rank as f64, non_finite_loss: rank == 1 };
                let global = sync.all_reduce(&mut grads, &params, local)?;
                assert_eq!((global.samples, global.tokens, global.non_finite_ranks), (6, 30, 1));
                assert!((global.loss - 1.0).abs() < 1e-6, "{}", global.loss);
                assert!(grads.get(&frozen).is_none());
                Ok((grads.get(&a).unwrap().to_vec2::<f32>()?, grads.get(&b).unwrap().to_vec1::<f32>()?, sync.calls))
            })
        };
        let one_bucket = averages(1 << 20);
        let per_param = averages(1);
        for (r, (a, b, calls)) in one_bucket.iter().enumerate() {
            assert_eq!(a, &vec![vec![2.0, 4.0], vec![6.0, 8.0]], "rank {r}");
            // (1 + 2 + 0) / 3 each.
            assert_eq!(b, &vec![1.0; 3], "rank {r}");
            assert_eq!(*calls, 2, "a header and one bucket");
        }
        for ((a, b, calls), (a1, b1, _)) in per_param.iter().zip(&one_bucket) {
            assert_eq!((a, b), (a1, b1));
            assert_eq!(*calls, 3, "a header and one bucket per parameter with a gradient");
        }
    }

    #[test]
    fn broadcast_gives_rank_zeros_bits_everywhere() {
        let got = ranks(3, |mut sync| {
            let rank = sync.rank() as f32;
            let mine = Tensor::new(&[-0.0f32, 1.5 + rank, f32::MIN_POSITIVE, -7.25], &Device::Cpu)?;
            Ok(sync.broadcast(&mine)?.to_vec1::<f32>()?)
        });
        for values in got {
            let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
            assert_eq!(
                bits,
                [(-0.0f32).to_bits(), 1.5f32.to_bits(), f32::MIN_POSITIVE.to_bits(), (-7.25f32).to_bits()]
            );
        }
    }

    #[test]
    fn f64_parameters_are_refused() {
        let errors = ranks(2, |mut sync| {
            let w = Var::new(&[1f64], &Device::Cpu)?;
            let mut grads = w.as_tensor().sum_all()?.backward()?;
            let local = LocalUpdate { samples: 1, tokens: 1, loss: 0.0, non_finite_loss: false };
            Ok(sync.all_reduce(&mut grads, &[("w".into(), w)], local).unwrap_err().to_string())
        });
        assert!(errors.iter().all(|e| e.contains("parameter w is F64")), "{errors:?}");
    }
}
