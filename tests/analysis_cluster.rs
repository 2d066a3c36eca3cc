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

/// Element i: splitmix64(seed + (i + 1) * golden) >> 11, times 2^-53 (as the fixture script).
fn uniform(seed: u64, n: usize) -> Vec<f64> {
    (1..=n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
        })
        .collect()
}

#[allow(dead_code)]
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
