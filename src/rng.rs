//! The crate's own seedable random generator.
//!
//! candle's CPU `set_seed` seeds nothing and its init and dropout draw from the thread RNG, so every
//! random decision of this crate (initialisation, dropout, masking, noise, splits, negatives, sampling)
//! draws from [`Rng`]: xoshiro256** seeded through SplitMix64. The state is four `u64`s, saved in
//! checkpoints, so a resumed run continues the same stream. The distributions are written here, not
//! taken from `rand`, so a seed means the same numbers whatever `rand` version a user links.

use serde::{Deserialize, Serialize};

/// The crate's random generator: xoshiro256** seeded through SplitMix64 (see the module docs).
///
/// ```
/// use protein_lm::Rng;
/// let (mut a, mut b) = (Rng::new(7), Rng::new(7));
/// assert_eq!(a.next_u64(), b.next_u64()); // a seed fixes the stream
/// // One stream per epoch, drawn without consuming `a`: epoch 3 is the same whatever ran before.
/// let mut epoch = a.fork(3);
/// assert_eq!(epoch.permutation(5).len(), 5);
/// // The state is what a checkpoint saves; a resumed run continues the same numbers.
/// let saved = a.state();
/// let next = a.uniform();
/// assert_eq!(Rng::from_state(saved).uniform(), next);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    state: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` uniforms in [0, 1) from the plain SplitMix64 stream started at `seed`: element i (from 1) is
/// `splitmix64(seed + i·0x9E3779B97F4A7C15) >> 11` times 2⁻⁵³. A stream this simple is easy to write
/// in any language, so benchmarks and fixture scripts (`tests/fixtures/analysis/*.py`) generate the
/// same inputs on both sides instead of shipping them.
pub fn splitmix64_uniforms(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed;
    (0..n).map(|_| (splitmix64(&mut state) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)).collect()
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let state = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        Self { state }
    }

    /// An independent stream derived from this seed and a label, e.g. one per epoch or per worker,
    /// without consuming numbers from `self`.
    pub fn fork(&self, stream: u64) -> Self {
        let mut sm = self.state[0] ^ self.state[2].rotate_left(17) ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        Self::new(splitmix64(&mut sm))
    }

    pub fn state(&self) -> [u64; 4] {
        self.state
    }

    pub fn from_state(state: [u64; 4]) -> Self {
        assert!(state.iter().any(|&s| s != 0), "xoshiro state must not be all zero");
        Self { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform index in [0, n).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal (Box–Muller; one of the pair is discarded so the stream stays stateless).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// A random permutation of 0..n.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }

    /// `k` distinct indices from 0..n, in random order (partial Fisher–Yates).
    pub fn sample_without_replacement(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "cannot sample {k} of {n} without replacement");
        let mut p: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + self.index(n - i);
            p.swap(i, j);
        }
        p.truncate(k);
        p
    }

    /// `n` f32 values from N(mean, std²), e.g. for weight initialisation.
    pub fn normal_vec(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        (0..n).map(|_| mean + std * self.normal() as f32).collect()
    }

    /// `n` f32 values uniform in [low, high).
    pub fn uniform_vec(&mut self, n: usize, low: f32, high: f32) -> Vec<f32> {
        (0..n).map(|_| low + (high - low) * self.uniform() as f32).collect()
    }
}

/// Lets `rand`'s adaptors (and crates that take an `RngCore`) draw from the crate's stream.
impl rand::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        Rng::next_u64(self)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = Rng::next_u64(self).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_state_round_trips() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let saved = a.state();
        let next: Vec<u64> = (0..10).map(|_| a.next_u64()).collect();
        let mut resumed = Rng::from_state(saved);
        let again: Vec<u64> = (0..10).map(|_| resumed.next_u64()).collect();
        assert_eq!(next, again);
        assert_ne!(Rng::new(43).next_u64(), Rng::new(42).next_u64());
    }

    #[test]
    fn xoshiro_reference_values() {
        // Reference: xoshiro256** (Blackman & Vigna) from state [1, 2, 3, 4].
        let mut r = Rng::from_state([1, 2, 3, 4]);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, vec![11520, 0, 1509978240]);
    }

    #[test]
    fn uniform_and_normal_moments() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let u: Vec<f64> = (0..n).map(|_| r.uniform()).collect();
        let mean = u.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        let z: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let m = z.iter().sum::<f64>() / n as f64;
        let v = z.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "{m} {v}");
    }

    #[test]
    fn below_is_unbiased_and_in_range() {
        let mut r = Rng::new(1);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[r.below(3) as usize] += 1;
        }
        for c in counts {
            assert!((c as i64 - 10_000).abs() < 400, "{counts:?}");
        }
    }

    #[test]
    fn sampling_without_replacement_is_distinct() {
        let mut r = Rng::new(3);
        let mut s = r.sample_without_replacement(100, 40);
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 40);
        let p = r.permutation(10);
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn splitmix_stream_matches_the_counter_formula() {
        // The counter form the Python fixture scripts use.
        let counter = |seed: u64, i: u64| {
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
        };
        let stream = splitmix64_uniforms(42, 5);
        assert_eq!(stream, (1..=5).map(|i| counter(42, i)).collect::<Vec<_>>());
        assert!(stream.iter().all(|&u| (0.0..1.0).contains(&u)));
    }

    #[test]
    fn forks_differ_and_are_deterministic() {
        let r = Rng::new(5);
        assert_eq!(r.fork(1).clone().next_u64(), r.fork(1).clone().next_u64());
        assert_ne!(r.fork(1).next_u64(), r.fork(2).next_u64());
    }
}
