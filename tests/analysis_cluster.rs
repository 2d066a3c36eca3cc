//! Clustering analyses against scikit-learn 1.9 fixtures (`tests/fixtures/analysis/`, made by
//! `make_cluster_fixtures.py`). Input matrices are regenerated here from the same counter-based
//! SplitMix64 stream as the script; each test prints its largest difference.

use ndarray::Array2;
use protein_lm::analysis::information::{adjusted_rand_index, normalized_mutual_info};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The shared SplitMix64 input stream (the fixture script regenerates it in Python).
fn uniform(seed: u64, n: usize) -> Vec<f64> {
    protein_lm::rng::splitmix64_uniforms(seed, n)
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    let (n, d) = (rows.len(), rows.first().map_or(0, |r| r.len()));
    Array2::from_shape_vec((n, d), rows.into_iter().flatten().collect()).unwrap()
}

fn labels(seed: u64, n: usize, k: usize) -> Vec<i64> {
    uniform(seed, n).into_iter().map(|u| (u * k as f64) as i64).collect()
}

#[test]
fn nmi_and_ari_equal_sklearn() {
    let f = fixture("nmi_ari.json");
    let (mut d_nmi, mut d_ari) = (0.0f64, 0.0f64);
    for case in f["cases"].as_array().unwrap() {
        let g = |k: &str| case[k].as_u64().unwrap();
        let (seed, n) = (g("seed"), g("n") as usize);
        let a = labels(seed, n, g("ka") as usize);
        let b = labels(seed + 100, n, g("kb") as usize);
        let nmi = normalized_mutual_info(&a, &b).unwrap();
        let ari = adjusted_rand_index(&a, &b).unwrap();
        let (en, ea) = ((nmi - case["nmi"].as_f64().unwrap()).abs(), (ari - case["ari"].as_f64().unwrap()).abs());
        assert!(en <= 1e-12 && ea <= 1e-12, "seed {seed}: nmi {nmi} vs {}, ari {ari} vs {}", case["nmi"], case["ari"]);
        // Symmetric, as sklearn's arithmetic NMI and ARI are.
        assert!((normalized_mutual_info(&b, &a).unwrap() - nmi).abs() <= 1e-12);
        d_nmi = d_nmi.max(en);
        d_ari = d_ari.max(ea);
    }
    println!("max |NMI - sklearn| = {d_nmi:.3e}, max |ARI - sklearn| = {d_ari:.3e}");
}

/// n x d data of latent rank `rank` plus noise: Z W + 0.1 E (entries uniform in [-1, 1)).
fn correlated(seed: u64, n: usize, d: usize, rank: usize) -> Array2<f64> {
    let sym = |s: u64, r: usize, c: usize| {
        Array2::from_shape_vec((r, c), uniform(s, r * c).into_iter().map(|u| u * 2.0 - 1.0).collect()).unwrap()
    };
    sym(seed, n, rank).dot(&sym(seed + 1, rank, d)) + sym(seed + 2, n, d) * 0.1
}

fn max_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

fn vec_diff(a: &[f64], v: &Value) -> f64 {
    let b: Vec<f64> = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn pca_equals_sklearn_full() {
    use protein_lm::analysis::reduce::Pca;
    let f = fixture("pca.json");
    let mut worst = [0.0f64; 5];
    for case in f["cases"].as_array().unwrap() {
        let g = |k: &str| case[k].as_u64().unwrap() as usize;
        let x = correlated(g("seed") as u64, g("n"), g("d"), g("rank"));
        let (pca, y) = Pca::fit_transform(x.view(), g("k")).unwrap();
        let diffs = [
            max_diff(&pca.components, &matrix(&case["components"])),
            max_diff(&y, &matrix(&case["transformed"])),
            vec_diff(pca.explained_variance.as_slice().unwrap(), &case["explained_variance"]),
            vec_diff(pca.explained_variance_ratio.as_slice().unwrap(), &case["explained_variance_ratio"]),
            vec_diff(pca.mean.as_slice().unwrap(), &case["mean"]),
        ];
        println!(
            "PCA seed {}: components {:.2e}, transformed {:.2e}, variance {:.2e}, ratio {:.2e}, mean {:.2e}",
            g("seed"),
            diffs[0],
            diffs[1],
            diffs[2],
            diffs[3],
            diffs[4]
        );
        for (w, d) in worst.iter_mut().zip(diffs) {
            assert!(d <= 1e-6, "seed {}: {diffs:?}", g("seed"));
            *w = w.max(d);
        }
    }
    println!("PCA max differences (components, transformed, variance, ratio, mean): {worst:?}");
}

/// n x d points near `centres` random centres (point i near centre i % centres); elementwise only.
fn blobs(seed: u64, n: usize, d: usize, centres: usize, spread: f64) -> Array2<f64> {
    let c = uniform(seed, centres * d);
    let e = uniform(seed + 1, n * d);
    Array2::from_shape_fn((n, d), |(i, j)| {
        (c[(i % centres) * d + j] * 10.0 - 5.0) + spread * (e[i * d + j] * 2.0 - 1.0)
    })
}

#[test]
fn kmeans_from_given_centres_equals_sklearn_lloyd() {
    use protein_lm::analysis::cluster::{l2_normalize_rows, KMeans};
    let f = fixture("kmeans.json");
    let (mut worst_c, mut worst_i) = (0.0f64, 0.0f64);
    for case in f["cases"].as_array().unwrap() {
        let g = |k: &str| case[k].as_u64().unwrap() as usize;
        let mut x = blobs(g("seed") as u64, g("n"), g("d"), g("centres"), case["spread"].as_f64().unwrap());
        if case["normalise"].as_bool().unwrap() {
            x = l2_normalize_rows(x.view());
        }
        let init = matrix(&case["init"]);
        let km = KMeans::new(init.nrows());
        let fit = km.fit_with_centres(x.view(), init.view()).unwrap();
        let want: Vec<usize> = serde_json::from_value(case["labels"].clone()).unwrap();
        assert_eq!(fit.labels, want, "seed {}", g("seed"));
        let dc = max_diff(&fit.centres, &matrix(&case["cluster_centres"]));
        let di = (fit.inertia - case["inertia"].as_f64().unwrap()).abs() / case["inertia"].as_f64().unwrap();
        println!(
            "k-means seed {}: labels identical, n_iter {} (sklearn {}), centres {dc:.2e}, inertia rel {di:.2e}",
            g("seed"),
            fit.n_iter,
            g("n_iter")
        );
        assert!(dc <= 1e-10 && di <= 1e-10);
        assert_eq!(fit.n_iter, g("n_iter"));
        worst_c = worst_c.max(dc);
        worst_i = worst_i.max(di);
        // k-means++ with n_init 10 should reach sklearn's best-of-10 inertia (within 2 %).
        let pp = KMeans { seed: 3, ..km }.fit(x.view()).unwrap();
        let sk = case["kmeanspp_inertia_n_init10"].as_f64().unwrap();
        println!(
            "  k-means++ n_init 10: inertia {:.6} vs sklearn {:.6} (ratio {:.4})",
            pp.inertia,
            sk,
            pp.inertia / sk
        );
        assert!(pp.inertia <= sk * 1.02);
    }
    println!("k-means max differences: centres {worst_c:.2e}, relative inertia {worst_i:.2e}");
}

#[test]
fn kmeans_fit_is_seeded_and_independent_of_thread_count() {
    use protein_lm::analysis::cluster::{l2_normalize_rows, KMeans};
    let x = l2_normalize_rows(blobs(70, 500, 6, 20, 2.0).view());
    let km = KMeans { n_init: 4, seed: 11, ..KMeans::new(25) };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| km.fit(x.view()).unwrap())
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one, two);
    assert_ne!(KMeans { seed: 12, ..km.clone() }.fit(x.view()).unwrap().labels, one.labels);
    assert_eq!(one.labels.iter().copied().max(), Some(24));
}
