//! Timings of the clustering analyses on PRoBERTa-sized inputs, against scikit-learn 1.9
//! (`benches/peers/cluster_sklearn.py` regenerates the same inputs from the same counter-based
//! SplitMix64 stream and prints its times; run it with `OMP_NUM_THREADS=2`).
//!
//!     cargo bench --bench cluster [-- --quick]
//!
//! `--quick` runs k-means with n_init 1 instead of 10. Threads: rayon's default (all cores) unless
//! `RAYON_NUM_THREADS` is set; compare with sklearn at the same thread count.
//!
//! Measured by one run of `benches/run_all.sh` on the 2-core development machine, rayon 2 threads
//! against sklearn with `OMP_NUM_THREADS=2`:
//!
//! | task | this crate | sklearn 1.9.1 | ratio |
//! |---|---|---|---|
//! | PCA 9,700 × 768 → 20 | 0.176 s | full 0.751 s, randomized 0.549 s (covariance_eigh 0.146 s) | 4.3× / 3.1× (0.83×) |
//! | NMI, 10⁶ items, 4,000 × 4,000 labels | 0.082 s (same value to 15 digits) | 0.528 s | 6.4× |
//! | k-means k 4,000, n_init 10 | 4.84 s (k-means++ alone 0.46 s per init) | 14.60 s | 3.0× |
//! | ROC AUC, 10⁶ items (`benches/metrics.rs`) | 38.4 ms | 271 ms | 7.1× |
//!
//! sklearn's 'covariance_eigh' is not one of the named solvers (nor sklearn's default); it
//! is listed because it is the one sklearn path faster than ours.

use std::time::Instant;

use ndarray::Array2;
use protein_lm::analysis::cluster::{kmeans_plusplus_indices, l2_normalize_rows, KMeans};
use protein_lm::analysis::information::normalized_mutual_info;
use protein_lm::analysis::reduce::Pca;

/// The shared SplitMix64 input stream (the fixture script regenerates it in Python).
fn uniform(seed: u64, n: usize) -> Vec<f64> {
    protein_lm::rng::splitmix64_uniforms(seed, n)
}

fn sym(seed: u64, r: usize, c: usize) -> Array2<f64> {
    Array2::from_shape_vec((r, c), uniform(seed, r * c).into_iter().map(|u| u * 2.0 - 1.0).collect()).unwrap()
}

fn correlated(seed: u64, n: usize, d: usize, rank: usize) -> Array2<f64> {
    sym(seed, n, rank).dot(&sym(seed + 1, rank, d)) + sym(seed + 2, n, d) * 0.1
}

fn blobs(seed: u64, n: usize, d: usize, centres: usize, spread: f64) -> Array2<f64> {
    let c = uniform(seed, centres * d);
    let e = uniform(seed + 1, n * d);
    Array2::from_shape_fn((n, d), |(i, j)| {
        (c[(i % centres) * d + j] * 10.0 - 5.0) + spread * (e[i * d + j] * 2.0 - 1.0)
    })
}

fn labels(seed: u64, n: usize, k: usize) -> Vec<i64> {
    uniform(seed, n).into_iter().map(|u| (u * k as f64) as i64).collect()
}

fn timed<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..reps {
        let t = Instant::now();
        out = Some(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, out.unwrap())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!("rayon threads: {}", rayon::current_num_threads());

    let x = correlated(1000, 9700, 768, 60);
    let (t, y) = timed(3, || Pca::fit_transform(x.view(), 20).unwrap().1);
    let s: f64 = y.column(0).iter().map(|v| v * v).sum();
    println!(
        "PCA 9700x768 -> 20 (covariance GEMM + block Krylov): {t:.3} s (sum of first transformed column^2 {s:.6})"
    );

    let (a, b) = (labels(2000, 1_000_000, 4000), labels(2100, 1_000_000, 4000));
    let (t, v) = timed(3, || normalized_mutual_info(&a, &b).unwrap());
    println!("NMI 1e6 items, 4000 x 4000 labels: {t:.3} s (value {v:.15})");

    let xk = l2_normalize_rows(blobs(3000, 9700, 20, 1000, 3.0).view());
    let (t, _) = timed(1, || kmeans_plusplus_indices(xk.view(), 4000, &mut protein_lm::Rng::new(0)).unwrap());
    println!("  of which one k-means++ initialisation (single-threaded): {t:.3} s");
    let n_init = if quick { 1 } else { 10 };
    let km = KMeans { n_init, ..KMeans::new(4000) };
    let (t, fit) = timed(1, || km.fit(xk.view()).unwrap());
    println!(
        "KMeans k=4000 n_init={n_init} on 9700x20 (k-means++, lloyd): {t:.3} s (inertia {:.6}, n_iter {})",
        fit.inertia, fit.n_iter
    );
}
