//! k-means as scikit-learn 1.9's `KMeans(algorithm='lloyd')` does it, plus the row L2
//! normalisation the PRoBERTa clustering script applies first (spec `proberta.md` §8).
//!
//! * Data are centred on their column means before clustering and the centres shifted back after,
//!   as sklearn does "for more accurate distance computations".
//! * Initialisation: greedy k-means++ as sklearn's `_kmeans_plusplus`: the first centre uniform,
//!   then for each further centre `2 + ⌊ln k⌋` candidates drawn with probability ∝ D² (inverse CDF
//!   by binary search on the cumulative sum) and the candidate that most lowers the potential kept;
//!   squared distances as sklearn computes them there, `‖x‖² + ‖c‖² − 2 x·c` clipped at 0.
//!   Draws come from the crate's [`Rng`], so the centres differ from sklearn's for the same seed;
//!   run `r` of `n_init` uses `Rng::new(seed).fork(r)`, so results do not depend on thread count.
//! * Lloyd iterations: E-step with `‖c‖² − 2 x·c` (a register-blocked product per block of 256
//!   samples, blocks in parallel with rayon, AVX2 when the CPU has it; ties go to the lowest centre index), M-step means; empty clusters are
//!   refilled as sklearn's `_relocate_empty_clusters_dense` does: the samples farthest from their
//!   (old) centres become the new centres, in decreasing distance (sklearn takes them in
//!   `argpartition` order, which is the same order when one cluster is empty), and they are taken
//!   out of their old cluster's sum without being relabelled. Convergence: labels unchanged (strict),
//!   or squared centre shift summed over centres `≤ tol × mean per-feature variance`; if not strict,
//!   a last E-step makes the labels match the final centres.
//! * Best of `n_init` runs by inertia (a lower inertia with the same partition does not replace the
//!   earlier run, as in sklearn).
//!
//! `fit_with_centres` equals sklearn's `KMeans(init=centres, n_init=1, algorithm='lloyd')` in labels
//! (identical) and centres (within 1e-10) on `tests/fixtures/analysis/kmeans.json`.
//!
//! Why not linfa-clustering: it draws from a rand 0.8 RNG rather than the crate's [`Rng`]
//! (spec `rust-ecosystem.md` §1), and matching sklearn's labels exactly needs control of the Lloyd
//! loop itself (convergence rule, empty-cluster relocation, final E-step).
//!
//! Speed (`benches/run_all.sh`, k = 4,000 on 9,700 × 20, n_init 10, 2 cores): 4.84 s with two rayon
//! threads against sklearn's 14.60 s with 2 OpenMP threads (3.0×). One k-means++ initialisation
//! takes 0.46 s: 4,000 greedy steps, each scoring its candidates five at a time with an AVX2 kernel
//! whose 10 accumulators stay in registers (`FeatureMajor`).
//!
//! ```
//! use protein_lm::analysis::cluster::{l2_normalize_rows, KMeans};
//! use protein_lm::ndarray::array;
//! let embeddings = array![[1.0, 0.1], [2.0, 0.3], [0.1, 1.0], [0.2, 3.0]];
//! // PRoBERTa clusters directions, not lengths: normalise first.
//! let fit = KMeans { seed: 7, ..KMeans::new(2) }.fit(l2_normalize_rows(embeddings.view()).view())?;
//! assert_eq!(fit.labels[0], fit.labels[1]);
//! assert_eq!(fit.labels[2], fit.labels[3]);
//! assert_ne!(fit.labels[0], fit.labels[2]);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rng::Rng;

/// k-means settings (sklearn's names and defaults, with `n_init` = 10 as in 2020 sklearn, which the
/// PRoBERTa experiment used).
///
/// ```
/// use protein_lm::analysis::cluster::KMeans;
/// use protein_lm::ndarray::array;
/// let x = array![[0.0, 0.0], [0.0, 1.0], [10.0, 10.0], [10.0, 11.0]];
/// let fit = KMeans { n_init: 3, ..KMeans::new(2) }.fit(x.view())?;
/// assert_eq!(fit.centres.dim(), (2, 2));
/// assert!(fit.labels[0] == fit.labels[1] && fit.labels[2] == fit.labels[3] && fit.labels[0] != fit.labels[2]);
/// // Each point lies 0.5 from its centre: 4 × 0.25.
/// assert!((fit.inertia - 1.0).abs() < 1e-12);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    pub k: usize,
    pub n_init: usize,
    pub max_iter: usize,
    /// Relative tolerance on the squared centre shift, times the mean per-feature variance.
    pub tol: f64,
    pub seed: u64,
}

/// A fitted clustering: `centres` is `k × d`, `labels[i]` the centre of sample `i`, `inertia` the
/// sum of squared distances to the assigned centres, `n_iter` the Lloyd iterations of the kept run.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansFit {
    pub centres: Array2<f64>,
    pub labels: Vec<usize>,
    pub inertia: f64,
    pub n_iter: usize,
}

impl KMeans {
    /// `k` clusters with defaults `n_init` 10, `max_iter` 300, `tol` 1e-4, `seed` 0.
    pub fn new(k: usize) -> Self {
        Self { k, n_init: 10, max_iter: 300, tol: 1e-4, seed: 0 }
    }

    fn check(&self, x: ArrayView2<f64>) -> Result<()> {
        let n = x.nrows();
        if self.k == 0 || self.k > n {
            return Err(Error::invalid(format!("k = {} must be between 1 and the number of samples ({n})", self.k)));
        }
        if self.n_init == 0 || self.max_iter == 0 {
            return Err(Error::invalid("n_init and max_iter must be at least 1"));
        }
        if !(self.tol >= 0.0 && self.tol.is_finite()) {
            return Err(Error::invalid(format!("tol must be finite and non-negative, got {}", self.tol)));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("k-means input contains NaN or infinite values"));
        }
        Ok(())
    }

    /// Best of `n_init` k-means++ initialisations followed by Lloyd iterations.
    pub fn fit(&self, x: ArrayView2<f64>) -> Result<KMeansFit> {
        self.check(x)?;
        let (xc, mean, tol) = prepare(x, self.tol);
        let base = Rng::new(self.seed);
        let runs: Vec<KMeansFit> = (0..self.n_init)
            .into_par_iter()
            .map(|r| {
                let mut rng = base.fork(r as u64);
                let idx = plusplus(xc.view(), self.k, &mut rng);
                lloyd(xc.view(), xc.select(Axis(0), &idx), self.max_iter, tol)
            })
            .collect();
        let mut best: Option<KMeansFit> = None;
        for run in runs {
            let replace = match &best {
                None => true,
                Some(b) => run.inertia < b.inertia && !same_clustering(&run.labels, &b.labels, self.k),
            };
            if replace {
                best = Some(run);
            }
        }
        let mut best = best.expect("n_init >= 1");
        best.centres += &mean;
        Ok(best)
    }

    /// Lloyd iterations from the given `k × d` centres (one run; `n_init` and `seed` are unused).
    pub fn fit_with_centres(&self, x: ArrayView2<f64>, init_centres: ArrayView2<f64>) -> Result<KMeansFit> {
        self.check(x)?;
        if init_centres.dim() != (self.k, x.ncols()) {
            return Err(Error::invalid(format!(
                "initial centres have shape {:?}, expected ({}, {})",
                init_centres.dim(),
                self.k,
                x.ncols()
            )));
        }
        if init_centres.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("initial centres contain NaN or infinite values"));
        }
        let (xc, mean, tol) = prepare(x, self.tol);
        let init = &init_centres - &mean;
        let mut fit = lloyd(xc.view(), init, self.max_iter, tol);
        fit.centres += &mean;
        Ok(fit)
    }
}

/// Rows divided by their Euclidean norm (`sklearn.preprocessing.normalize(x, norm='l2')`); all-zero
/// rows are left as they are.
///
/// ```
/// use protein_lm::analysis::cluster::l2_normalize_rows;
/// use protein_lm::ndarray::array;
/// let x = array![[3.0, 4.0], [0.0, 0.0]];
/// assert_eq!(l2_normalize_rows(x.view()), array![[0.6, 0.8], [0.0, 0.0]]);
/// ```
pub fn l2_normalize_rows(x: ArrayView2<f64>) -> Array2<f64> {
    let mut y = x.to_owned();
    for mut row in y.rows_mut() {
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row /= norm;
        }
    }
    y
}

/// Centred data, column means and the absolute tolerance (`tol × mean(var(x, axis=0))`).
fn prepare(x: ArrayView2<f64>, tol: f64) -> (Array2<f64>, Array1<f64>, f64) {
    let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(x.ncols()));
    let xc = &x - &mean;
    let n = x.nrows() as f64;
    let var_mean = if x.ncols() == 0 {
        0.0
    } else {
        xc.map_axis(Axis(0), |c| c.iter().map(|v| v * v).sum::<f64>() / n).mean().unwrap_or(0.0)
    };
    (xc, mean, tol * var_mean)
}

/// Indices of `k` samples of `x` chosen by sklearn's greedy k-means++ (see module docs).
pub fn kmeans_plusplus_indices(x: ArrayView2<f64>, k: usize, rng: &mut Rng) -> Result<Vec<usize>> {
    KMeans { n_init: 1, ..KMeans::new(k) }.check(x)?;
    Ok(plusplus(x, k, rng))
}

fn plusplus(x: ArrayView2<f64>, k: usize, rng: &mut Rng) -> Vec<usize> {
    let n = x.nrows();
    let points = FeatureMajor::new(x);
    let trials = 2 + (k as f64).ln() as usize;
    let mut chosen = Vec::with_capacity(k);
    let first = rng.index(n);
    chosen.push(first);
    // Padding samples have distance 0, so they add nothing to any potential.
    let mut closest = vec![f64::INFINITY; points.padded];
    points.lower_closest(first, &mut closest);
    closest[n..].fill(0.0);
    let mut pot: f64 = closest.iter().sum();
    let mut cum = vec![0.0; n];
    let mut cand = vec![0usize; trials.div_ceil(GROUP) * GROUP];
    let mut pots = vec![0.0f64; cand.len()];
    for _ in 1..k {
        let mut acc = 0.0;
        for (c, &v) in cum.iter_mut().zip(&closest) {
            acc += v;
            *c = acc;
        }
        for slot in cand.iter_mut().take(trials) {
            let r = rng.uniform() * pot;
            *slot = cum.partition_point(|&c| c < r).min(n - 1);
        }
        let last = cand[trials - 1];
        cand[trials..].fill(last);
        for (group, pot_out) in cand.chunks_exact(GROUP).zip(pots.chunks_exact_mut(GROUP)) {
            let group: [usize; GROUP] = group.try_into().expect("exact chunk");
            pot_out.copy_from_slice(&points.potentials(group, &closest));
        }
        let mut best = 0;
        for t in 1..trials {
            if pots[t] < pots[best] {
                best = t;
            }
        }
        let c = cand[best];
        pot = pots[best];
        points.lower_closest(c, &mut closest);
        chosen.push(c);
    }
    chosen
}

/// Samples stored feature-major (`d × padded`, zero-padded to a multiple of [`BLOCK`]) with their
/// squared norms, for the distance passes of k-means++. Squared distances are
/// `‖x‖² + ‖c‖² − 2 x·c` clipped at 0, as in sklearn's `_kmeans_plusplus` (one fused multiply-add
/// per feature). The AVX2 kernels and the portable ones do the same operations in the same order
/// (`mul_add` is a fused multiply-add everywhere), so the chosen centres do not depend on the CPU.
struct FeatureMajor {
    values: Vec<f64>,
    norms: Vec<f64>,
    rows: Vec<Vec<f64>>,
    padded: usize,
}

/// Samples per block: 8 = two 4-lane AVX registers per candidate; 5 candidates per pass keep the
/// 10 accumulators, the two sample vectors and a broadcast within the 16 registers.
const BLOCK: usize = 8;
const GROUP: usize = 5;

/// `((a0 + a1) + (a2 + a3))`, the order both kernels reduce a 4-lane sum in.
fn sum4(a: [f64; 4]) -> f64 {
    (a[0] + a[1]) + (a[2] + a[3])
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl FeatureMajor {
    fn new(x: ArrayView2<f64>) -> Self {
        let n = x.nrows();
        let padded = n.div_ceil(BLOCK) * BLOCK;
        let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
        let mut values = vec![0.0; x.ncols() * padded];
        let mut norms = vec![0.0; padded];
        for (i, row) in rows.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                values[j * padded + i] = v;
                norms[i] = v.mul_add(v, norms[i]);
            }
        }
        Self { values, norms, rows, padded }
    }

    /// For each candidate `cand[t]`, the potential `Σ_i min(d²(x_i, x_cand[t]), closest_i)`
    /// (`closest` is 0 on the padding, which so adds nothing).
    fn potentials(&self, cand: [usize; GROUP], closest: &[f64]) -> [f64; GROUP] {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.potentials_avx2(cand, closest) };
        }
        self.potentials_portable(cand, closest)
    }

    fn potentials_portable(&self, cand: [usize; GROUP], closest: &[f64]) -> [f64; GROUP] {
        let cn: [f64; GROUP] = cand.map(|c| self.norms[c]);
        let mut lanes = [[0.0; 4]; GROUP];
        for i0 in (0..self.padded).step_by(BLOCK) {
            let mut acc = [[0.0; BLOCK]; GROUP];
            for (j, column) in self.values.chunks_exact(self.padded).enumerate() {
                for t in 0..GROUP {
                    let c = self.rows[cand[t]][j];
                    for l in 0..BLOCK {
                        acc[t][l] = column[i0 + l].mul_add(c, acc[t][l]);
                    }
                }
            }
            for t in 0..GROUP {
                for half in 0..2 {
                    for l in 0..4 {
                        let i = i0 + 4 * half + l;
                        let dist = (-2.0f64).mul_add(acc[t][4 * half + l], self.norms[i] + cn[t]).max(0.0);
                        lanes[t][l] += dist.min(closest[i]);
                    }
                }
            }
        }
        lanes.map(sum4)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn potentials_avx2(&self, cand: [usize; GROUP], closest: &[f64]) -> [f64; GROUP] {
        use std::arch::x86_64::*;
        let cn: [__m256d; GROUP] = cand.map(|c| _mm256_set1_pd(self.norms[c]));
        let minus_two = _mm256_set1_pd(-2.0);
        let zero = _mm256_setzero_pd();
        let mut lanes = [zero; GROUP];
        let values = self.values.as_ptr();
        for i0 in (0..self.padded).step_by(BLOCK) {
            let mut acc = [[zero; 2]; GROUP];
            for j in 0..self.rows[0].len() {
                // SAFETY: j < d and i0 + 8 <= padded, so both loads are inside `values`.
                let (x0, x1) = unsafe {
                    let p = values.add(j * self.padded + i0);
                    (_mm256_loadu_pd(p), _mm256_loadu_pd(p.add(4)))
                };
                for t in 0..GROUP {
                    let c = _mm256_set1_pd(*self.rows[cand[t]].get_unchecked(j));
                    acc[t][0] = _mm256_fmadd_pd(x0, c, acc[t][0]);
                    acc[t][1] = _mm256_fmadd_pd(x1, c, acc[t][1]);
                }
            }
            for t in 0..GROUP {
                for (half, &dots) in acc[t].iter().enumerate() {
                    let i = i0 + 4 * half;
                    let xn = _mm256_loadu_pd(self.norms[i..i + 4].as_ptr());
                    let near = _mm256_loadu_pd(closest[i..i + 4].as_ptr());
                    let dist = _mm256_max_pd(_mm256_fmadd_pd(minus_two, dots, _mm256_add_pd(xn, cn[t])), zero);
                    lanes[t] = _mm256_add_pd(lanes[t], _mm256_min_pd(dist, near));
                }
            }
        }
        lanes.map(|v| {
            let mut a = [0.0; 4];
            _mm256_storeu_pd(a.as_mut_ptr(), v);
            sum4(a)
        })
    }

    /// `closest[i] = min(closest[i], d²(x_i, x_c))` for every sample, padding included.
    fn lower_closest(&self, c: usize, closest: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.lower_closest_avx2(c, closest) };
        }
        self.lower_closest_portable(c, closest)
    }

    fn lower_closest_portable(&self, c: usize, closest: &mut [f64]) {
        let cn = self.norms[c];
        for i0 in (0..self.padded).step_by(BLOCK) {
            let mut acc = [0.0; BLOCK];
            for (j, column) in self.values.chunks_exact(self.padded).enumerate() {
                let cj = self.rows[c][j];
                for l in 0..BLOCK {
                    acc[l] = column[i0 + l].mul_add(cj, acc[l]);
                }
            }
            for (l, &dots) in acc.iter().enumerate() {
                let i = i0 + l;
                let dist = (-2.0f64).mul_add(dots, self.norms[i] + cn).max(0.0);
                closest[i] = dist.min(closest[i]);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lower_closest_avx2(&self, c: usize, closest: &mut [f64]) {
        use std::arch::x86_64::*;
        const WIDE: usize = 4 * BLOCK; // 8 independent accumulators hide the FMA latency
        let cn = _mm256_set1_pd(self.norms[c]);
        let minus_two = _mm256_set1_pd(-2.0);
        let zero = _mm256_setzero_pd();
        let values = self.values.as_ptr();
        let row = &self.rows[c];
        let mut i0 = 0;
        while i0 < self.padded {
            let vectors = (WIDE.min(self.padded - i0)) / 4;
            let mut acc = [zero; 8];
            for (j, &cj) in row.iter().enumerate() {
                let c = _mm256_set1_pd(cj);
                for (v, a) in acc.iter_mut().enumerate().take(vectors) {
                    // SAFETY: j < d and i0 + 4 v + 4 <= padded.
                    let x = unsafe { _mm256_loadu_pd(values.add(j * self.padded + i0 + 4 * v)) };
                    *a = _mm256_fmadd_pd(x, c, *a);
                }
            }
            for (v, a) in acc.iter().enumerate().take(vectors) {
                let i = i0 + 4 * v;
                let xn = _mm256_loadu_pd(self.norms[i..i + 4].as_ptr());
                let dist = _mm256_max_pd(_mm256_fmadd_pd(minus_two, *a, _mm256_add_pd(xn, cn)), zero);
                let near = _mm256_loadu_pd(closest[i..i + 4].as_ptr());
                _mm256_storeu_pd(closest[i..i + 4].as_mut_ptr(), _mm256_min_pd(dist, near));
            }
            i0 += WIDE;
        }
    }
}

/// Runs `f` compiled for AVX2 when the CPU has it (the crate is built for baseline x86-64, where
/// these loops vectorise only two lanes wide); the arithmetic, and so the result, is the same.
#[inline(always)]
fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// E-step: nearest centre of every sample by `‖c‖² − 2 x·c`, first index on ties. Blocks of 256
/// samples in parallel; within a block four samples share each pass over the (feature-major)
/// centres.
fn assign(x: ArrayView2<f64>, centres: &Array2<f64>, labels: &mut [usize]) {
    const CHUNK: usize = 256;
    let (k, d) = centres.dim();
    let cn: Vec<f64> = centres.rows().into_iter().map(|c| c.dot(&c)).collect();
    let ct = centres.t().as_standard_layout().into_owned();
    let ct = ct.as_slice().expect("standard layout");
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    labels.par_chunks_mut(CHUNK).enumerate().for_each(|(b, out)| {
        let mut acc = vec![0.0f64; 4 * k];
        with_simd(|| {
            for (q, quad) in out.chunks_mut(4).enumerate() {
                let i0 = b * CHUNK + 4 * q;
                let m = quad.len();
                let (a0, rest) = acc.split_at_mut(k);
                let (a1, rest) = rest.split_at_mut(k);
                let (a2, a3) = rest.split_at_mut(k);
                a0.fill(0.0);
                a1.fill(0.0);
                a2.fill(0.0);
                a3.fill(0.0);
                let xv = |r: usize, f: usize| if r < m { xs[(i0 + r) * d + f] } else { 0.0 };
                for f in 0..d {
                    let (x0, x1, x2, x3) = (xv(0, f), xv(1, f), xv(2, f), xv(3, f));
                    let c = &ct[f * k..(f + 1) * k];
                    for ((((&cj, p0), p1), p2), p3) in c.iter().zip(&mut *a0).zip(&mut *a1).zip(&mut *a2).zip(&mut *a3)
                    {
                        *p0 += x0 * cj;
                        *p1 += x1 * cj;
                        *p2 += x2 * cj;
                        *p3 += x3 * cj;
                    }
                }
                for (r, label) in quad.iter_mut().enumerate() {
                    let dots = &acc[r * k..(r + 1) * k];
                    let mut best = 0;
                    let mut best_d = f64::INFINITY;
                    for (j, (&dot, &norm)) in dots.iter().zip(&cn).enumerate() {
                        let dist = norm - 2.0 * dot;
                        if dist < best_d {
                            best_d = dist;
                            best = j;
                        }
                    }
                    *label = best;
                }
            }
        });
    });
}

fn lloyd(x: ArrayView2<f64>, init: Array2<f64>, max_iter: usize, tol: f64) -> KMeansFit {
    let (n, d) = x.dim();
    let k = init.nrows();
    let mut centres = init;
    let mut labels = vec![usize::MAX; n];
    let mut labels_old = labels.clone();
    let mut strict = false;
    let mut n_iter = max_iter;
    for it in 0..max_iter {
        assign(x, &centres, &mut labels);
        // M-step: sums, relocation of empty clusters, means.
        let mut sums = Array2::<f64>::zeros((k, d));
        let mut weight = vec![0.0f64; k];
        for (i, &l) in labels.iter().enumerate() {
            sums.row_mut(l).scaled_add(1.0, &x.row(i));
            weight[l] += 1.0;
        }
        let empty: Vec<usize> = (0..k).filter(|&j| weight[j] == 0.0).collect();
        if !empty.is_empty() {
            let dist: Vec<f64> = (0..n)
                .map(|i| x.row(i).iter().zip(centres.row(labels[i])).map(|(a, b)| (a - b) * (a - b)).sum())
                .collect();
            if dist.iter().cloned().fold(0.0f64, f64::max) != 0.0 {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
                for (&new_id, &far) in empty.iter().zip(&order) {
                    let old_id = labels[far];
                    let xf = x.row(far);
                    sums.row_mut(old_id).scaled_add(-1.0, &xf);
                    sums.row_mut(new_id).assign(&xf);
                    weight[new_id] = 1.0;
                    weight[old_id] -= 1.0;
                }
            }
        }
        for (mut row, &w) in sums.rows_mut().into_iter().zip(&weight) {
            if w > 0.0 {
                row *= 1.0 / w;
            }
        }
        let shift: f64 = sums
            .rows()
            .into_iter()
            .zip(centres.rows())
            .map(|(a, b)| {
                let s = a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>().sqrt();
                s * s
            })
            .sum();
        centres = sums;
        if labels == labels_old {
            strict = true;
            n_iter = it + 1;
            break;
        }
        if shift <= tol {
            n_iter = it + 1;
            break;
        }
        labels_old.copy_from_slice(&labels);
    }
    if !strict {
        assign(x, &centres, &mut labels);
    }
    let inertia =
        (0..n).map(|i| x.row(i).iter().zip(centres.row(labels[i])).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()).sum();
    KMeansFit { centres, labels, inertia, n_iter }
}

/// Whether two labelings are the same partition up to renaming (sklearn's `_is_same_clustering`).
fn same_clustering(a: &[usize], b: &[usize], k: usize) -> bool {
    let mut map = vec![usize::MAX; k];
    for (&x, &y) in a.iter().zip(b) {
        if map[x] == usize::MAX {
            map[x] = y;
        } else if map[x] != y {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 distance kernels give the same bits as the portable ones (so k-means++ picks the
    /// same centres on every CPU), on a size that leaves padding in the last block.
    #[test]
    fn simd_kernels_equal_portable_ones() {
        if !has_avx2_fma() {
            crate::testing::skip("the CPU lacks AVX2 and FMA: nothing to compare the portable kernels with");
            return;
        }
        let mut rng = Rng::new(5);
        let x = Array2::from_shape_fn((45, 20), |_| rng.normal());
        let points = FeatureMajor::new(x.view());
        let mut closest: Vec<f64> =
            (0..points.padded).map(|i| if i < 45 { 10.0 * rng.uniform() } else { 0.0 }).collect();
        let cand = [3, 44, 0, 17, 17];
        let fast = unsafe { points.potentials_avx2(cand, &closest) };
        assert_eq!(fast.map(f64::to_bits), points.potentials_portable(cand, &closest).map(f64::to_bits));
        let mut other = closest.clone();
        unsafe { points.lower_closest_avx2(44, &mut closest) };
        points.lower_closest_portable(44, &mut other);
        assert_eq!(closest, other);
        assert_eq!(closest[44], 0.0);
        assert!(closest[45..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn separates_obvious_blobs_and_rejects_bad_input() {
        let mut rng = Rng::new(1);
        let x = Array2::from_shape_fn((90, 2), |(i, _)| (i % 3) as f64 * 10.0 + 0.1 * rng.normal());
        let fit = KMeans { n_init: 3, ..KMeans::new(3) }.fit(x.view()).unwrap();
        for i in 0..90 {
            assert_eq!(fit.labels[i], fit.labels[i % 3]);
        }
        assert!(fit.inertia < 90.0 * 0.1);
        assert!(KMeans::new(0).fit(x.view()).is_err());
        assert!(KMeans::new(91).fit(x.view()).is_err());
        assert!(KMeans::new(2).fit_with_centres(x.view(), Array2::zeros((3, 2)).view()).is_err());
        let n = l2_normalize_rows(ndarray::array![[3.0, 4.0], [0.0, 0.0]].view());
        assert_eq!(n, ndarray::array![[0.6, 0.8], [0.0, 0.0]]);
    }
}
