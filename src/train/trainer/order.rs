//! Each epoch's shuffled order of a task's training items, and one data-parallel rank's share of it.

use crate::Rng;

/// The shuffled order of a task's `n` training items in each epoch, a pure function of (seed,
/// epoch) so batches resume bit for bit; the current epoch's permutation is kept, not redrawn per
/// batch.
///
/// With data parallelism ([`shard`](Self::shard)) every rank draws the same permutation and takes
/// every `world`-th item of it from its rank on (torch's `DistributedSampler` without padding):
/// each item is seen by exactly one rank per epoch, and rank r's batch k holds the items at
/// positions r, r + world, … of the one-process run's batch k of `world × batch_size` items, so
/// the ranks together train on exactly the one-process run's batches. When `n` is not a multiple
/// of `world × batch_size`, the last batch of some ranks is short or empty.
///
/// ```
/// use protein_lm::train::trainer::EpochOrder;
/// // 10 items, batches of 2 per rank on 2 ranks = the one-process run's batches of 4.
/// let mut alone = EpochOrder::new(5, 10);
/// let (mut r0, mut r1) = (EpochOrder::new(5, 10), EpochOrder::new(5, 10));
/// r0.shard(0, 2);
/// r1.shard(1, 2);
/// assert_eq!((alone.batches(4), r0.batches(2), r1.batches(2)), (3, 3, 3));
/// for k in 0..3 {
///     let mut together = [r0.batch(0, k, 2), r1.batch(0, k, 2)].concat();
///     let mut whole = alone.batch(0, k, 4).to_vec();
///     together.sort_unstable();
///     whole.sort_unstable();
///     assert_eq!(together, whole);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct EpochOrder {
    seed: u64,
    n: usize,
    rank: usize,
    world_size: usize,
    /// This rank's items of the current epoch, in order.
    current: Option<(u64, Vec<usize>)>,
}

impl EpochOrder {
    pub fn new(seed: u64, n: usize) -> Self {
        Self { seed, n, rank: 0, world_size: 1, current: None }
    }

    /// Makes this order rank `rank`'s share of `world_size` ranks' (see the type's docs).
    pub fn shard(&mut self, rank: usize, world_size: usize) {
        assert!(world_size > 0 && rank < world_size, "rank {rank} of {world_size}");
        self.rank = rank;
        self.world_size = world_size;
        self.current = None;
    }

    /// Batches of `batch_size` per epoch (the last one may be short; every rank has as many).
    pub fn batches(&self, batch_size: usize) -> u64 {
        self.n.div_ceil(self.world_size).div_ceil(batch_size.max(1)) as u64
    }

    /// The items of batch `index` of `epoch` (on this rank).
    pub fn batch(&mut self, epoch: u64, index: u64, batch_size: usize) -> &[usize] {
        if self.current.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let all = Rng::new(self.seed).fork(epoch).permutation(self.n);
            let mine = if self.world_size == 1 {
                all
            } else {
                all.into_iter().skip(self.rank).step_by(self.world_size).collect()
            };
            self.current = Some((epoch, mine));
        }
        let order = &self.current.as_ref().expect("just set").1;
        let start = (index as usize * batch_size).min(order.len());
        &order[start..(start + batch_size).min(order.len())]
    }
}
