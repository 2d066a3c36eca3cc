//! `analysis::metrics` and `analysis::stats` against scikit-learn 1.9 / scipy 1.17 on the fixtures that
//! `tests/fixtures/analysis/make_metrics_fixtures.py` writes, plus properties and bad-input errors.

use protein_lm::analysis::metrics::{self, ZeroDivision};
use protein_lm::analysis::stats;
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            "nan" => f64::NAN,
            other => panic!("not a number: {other}"),
        },
        other => panic!("not a number: {other}"),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as usize).collect()
}

/// Absolute difference, NaN equal to NaN and inf to inf (a mismatch of either is infinite).
fn diff(a: f64, b: f64) -> f64 {
    if a.is_nan() && b.is_nan() || a == b {
        0.0
    } else if a.is_finite() && b.is_finite() {
        (a - b).abs()
    } else {
        f64::INFINITY
    }
}

fn max_diff(a: &[f64], b: &[f64], what: &str) -> f64 {
    assert_eq!(a.len(), b.len(), "{what}: length {} vs sklearn's {}", a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| diff(*x, *y)).fold(0.0, f64::max)
}

/// Max difference per function, printed at the end of each test.
#[derive(Default)]
struct Worst(std::collections::BTreeMap<&'static str, f64>);

impl Worst {
    fn add(&mut self, what: &'static str, d: f64) {
        let e = self.0.entry(what).or_insert(0.0);
        *e = e.max(d);
    }
    fn report(&self, tol: f64) {
        for (what, d) in &self.0 {
            eprintln!("{what}: max |difference| = {d:.3e}");
            assert!(*d <= tol, "{what}: max difference {d:e} exceeds {tol:e}");
        }
    }
}

const TOL: f64 = 1e-12;

#[test]
fn ranking_metrics_equal_sklearn() {
    let fx = load("metrics_ranking.json");
    let mut worst = Worst::default();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let labels = bools(&case["labels"]);
        let scores = nums(&case["scores"]);
        let weights = if case["weights"].is_null() { None } else { Some(nums(&case["weights"])) };
        let w = weights.as_deref();
        for (key, drop, what) in [("roc", true, "roc_curve"), ("roc_all", false, "roc_curve(drop_intermediate=False)")]
        {
            let c = metrics::roc_curve_with(&labels, &scores, w, drop).unwrap();
            let want = &case[key];
            let d = max_diff(&c.fpr, &nums(&want["fpr"]), name)
                .max(max_diff(&c.tpr, &nums(&want["tpr"]), name))
                .max(max_diff(&c.thresholds, &nums(&want["thresholds"]), name));
            worst.add(what, d);
        }
        if w.is_none() {
            assert_eq!(
                format!("{:?}", metrics::roc_curve(&labels, &scores).unwrap()),
                format!("{:?}", metrics::roc_curve_with(&labels, &scores, None, true).unwrap())
            );
        }
        let auc = match w {
            Some(w) => metrics::roc_auc_weighted(&labels, &scores, w),
            None => metrics::roc_auc(&labels, &scores),
        };
        if case["auc"].is_null() {
            assert!(auc.is_err(), "{name}: one class, AUC must be an error");
        } else {
            worst.add("roc_auc", diff(auc.unwrap(), num(&case["auc"])));
        }
        for (key, drop, what) in [
            ("pr", false, "precision_recall_curve"),
            ("pr_drop", true, "precision_recall_curve(drop_intermediate=True)"),
        ] {
            let c = metrics::precision_recall_curve_with(&labels, &scores, w, drop).unwrap();
            let want = &case[key];
            let d = max_diff(&c.precision, &nums(&want["precision"]), name)
                .max(max_diff(&c.recall, &nums(&want["recall"]), name))
                .max(max_diff(&c.thresholds, &nums(&want["thresholds"]), name));
            worst.add(what, d);
        }
        let ap = match w {
            Some(w) => metrics::average_precision_weighted(&labels, &scores, w),
            None => metrics::average_precision(&labels, &scores),
        };
        if case["ap"].is_null() {
            assert!(ap.is_err(), "{name}: no positives, AP must be an error");
        } else {
            worst.add("average_precision", diff(ap.unwrap(), num(&case["ap"])));
        }
    }
    worst.report(TOL);
}

fn zd(v: &Value) -> ZeroDivision {
    match v.as_str().unwrap() {
        "zero" => ZeroDivision::Zero,
        "one" => ZeroDivision::One,
        _ => ZeroDivision::Nan,
    }
}

#[test]
fn classification_metrics_equal_sklearn() {
    let fx = load("metrics_classification.json");
    let mut worst = Worst::default();
    for case in fx["multiclass"].as_array().unwrap() {
        let (yt, yp) = (usizes(&case["y_true"]), usizes(&case["y_pred"]));
        let k = case["n_classes"].as_u64().unwrap() as usize;
        let cm = metrics::confusion_matrix(&yt, &yp, k).unwrap();
        for (i, row) in case["confusion"].as_array().unwrap().iter().enumerate() {
            for (j, v) in row.as_array().unwrap().iter().enumerate() {
                assert_eq!(cm[[i, j]], v.as_u64().unwrap(), "confusion [{i}, {j}]");
            }
        }
        let rep = metrics::classification_report(&yt, &yp, k, zd(&case["zero_division"])).unwrap();
        worst.add("accuracy", diff(rep.accuracy, num(&case["accuracy"])));
        worst.add("accuracy", diff(metrics::accuracy(&yt, &yp).unwrap(), num(&case["accuracy"])));
        for (what, f) in [
            ("per-class precision", (|c: &metrics::ClassScores| c.precision) as fn(&metrics::ClassScores) -> f64),
            ("per-class recall", |c| c.recall),
            ("per-class f1", |c| c.f1),
        ] {
            let key = what.trim_start_matches("per-class ");
            let got: Vec<f64> = rep.per_class.iter().map(f).collect();
            worst.add(what, max_diff(&got, &nums(&case[key]), what));
            worst.add("macro average", diff(f(&rep.macro_avg), num(&case["macro"][key])));
            worst.add("weighted average", diff(f(&rep.weighted_avg), num(&case["weighted"][key])));
        }
        let support: Vec<u64> = rep.per_class.iter().map(|c| c.support).collect();
        assert_eq!(support, usizes(&case["support"]).iter().map(|&s| s as u64).collect::<Vec<_>>());
    }
    for case in fx["binary"].as_array().unwrap() {
        let (yt, yp) = (bools(&case["y_true"]), bools(&case["y_pred"]));
        let s = metrics::binary_scores(&yt, &yp, zd(&case["zero_division"])).unwrap();
        worst.add("binary precision", diff(s.precision, num(&case["precision"])));
        worst.add("binary recall", diff(s.recall, num(&case["recall"])));
        worst.add("binary f1", diff(s.f1, num(&case["f1"])));
        worst.add("accuracy", diff(metrics::accuracy(&yt, &yp).unwrap(), num(&case["accuracy"])));
    }
    worst.report(TOL);
}

/// Relative difference, for p-values that span many orders of magnitude.
fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / b.abs()
    }
}

#[test]
fn stats_equal_scipy() {
    let fx = load("metrics_stats.json");
    let mut worst = Worst::default();
    let mut worst_rel = Worst::default();
    for case in fx["correlation"].as_array().unwrap() {
        let (x, y) = (nums(&case["x"]), nums(&case["y"]));
        worst.add("pearson", diff(stats::pearson(&x, &y).unwrap(), num(&case["pearson"])));
        worst.add("spearman", diff(stats::spearman(&x, &y).unwrap(), num(&case["spearman"])));
        worst.add("rank_average", max_diff(&stats::rank_average(&x).unwrap(), &nums(&case["rank_x"]), "ranks"));
    }
    for case in fx["ttest"].as_array().unwrap() {
        let (a, b) = (nums(&case["a"]), nums(&case["b"]));
        for (what, got, want) in [
            ("ttest_ind statistic, df (relative)", stats::ttest_ind(&a, &b).unwrap(), &case["student"]),
            ("welch_ttest statistic, df (relative)", stats::welch_ttest(&a, &b).unwrap(), &case["welch"]),
        ] {
            worst.add(what, diff(got.statistic, num(&want["statistic"])).max(rel(got.df, num(&want["df"]))));
            worst_rel.add(
                if what.starts_with("ttest_ind") { "ttest_ind p (relative)" } else { "welch_ttest p (relative)" },
                rel(got.p_value, num(&want["p"])),
            );
        }
    }
    for case in fx["t_dist"].as_array().unwrap() {
        let (t, df) = (num(&case["t"]), num(&case["df"]));
        worst_rel.add("t_sf (relative)", rel(stats::t_sf(t, df), num(&case["sf"])));
        worst_rel.add("t_cdf (relative)", rel(stats::t_cdf(t, df), num(&case["cdf"])));
    }
    for case in fx["t_ppf"].as_array().unwrap() {
        let (p, df) = (num(&case["p"]), num(&case["df"]));
        worst_rel.add(
            "t_quantile (relative)",
            rel(stats::t_quantile(p, df).unwrap(), num(&case["q"]))
                .min(diff(stats::t_quantile(p, df).unwrap(), num(&case["q"]))),
        );
    }
    for case in fx["mean_ci"].as_array().unwrap() {
        let v = nums(&case["values"]);
        let ci = stats::mean_ci(&v, num(&case["level"])).unwrap();
        worst.add("mean", diff(stats::mean(&v).unwrap(), num(&case["mean"])));
        worst.add(
            "std_dev",
            diff(stats::std_dev(&v, 0).unwrap(), num(&case["std0"]))
                .max(diff(stats::std_dev(&v, 1).unwrap(), num(&case["std1"]))),
        );
        worst.add("sem", diff(stats::sem(&v).unwrap(), num(&case["sem"])));
        worst.add("mean_ci", diff(ci.lower, num(&case["lower"])).max(diff(ci.upper, num(&case["upper"]))));
    }
    worst.report(TOL);
    worst_rel.report(TOL);
}

#[test]
fn auc_properties() {
    let mut rng = protein_lm::Rng::new(7);
    let n = 1000;
    let labels: Vec<bool> = (0..n).map(|_| rng.uniform() < 0.3).collect();
    let scores: Vec<f64> = labels.iter().map(|&l| rng.uniform() + if l { 0.3 } else { 0.0 }).collect();
    let separated: Vec<f64> = labels.iter().map(|&l| if l { 1.0 + rng.uniform() } else { rng.uniform() }).collect();
    assert_eq!(metrics::roc_auc(&labels, &separated).unwrap(), 1.0);
    let reversed: Vec<f64> = separated.iter().map(|s| -s).collect();
    assert_eq!(metrics::roc_auc(&labels, &reversed).unwrap(), 0.0);
    assert!((metrics::average_precision(&labels, &separated).unwrap() - 1.0).abs() < 1e-12);
    // All tied: one diagonal segment.
    assert_eq!(metrics::roc_auc(&labels, &vec![0.5; n]).unwrap(), 0.5);
    // Strictly increasing transforms change neither the curve's rates nor the AUC.
    let auc = metrics::roc_auc(&labels, &scores).unwrap();
    let ap = metrics::average_precision(&labels, &scores).unwrap();
    for f in [|s: f64| s.exp(), |s: f64| 3.0 * s - 7.0, |s: f64| (s + 1.0).ln(), |s: f64| s.powi(3)] {
        let t: Vec<f64> = scores.iter().map(|&s| f(s)).collect();
        assert_eq!(metrics::roc_auc(&labels, &t).unwrap(), auc);
        assert_eq!(metrics::average_precision(&labels, &t).unwrap(), ap);
        let (a, b) = (metrics::roc_curve(&labels, &scores).unwrap(), metrics::roc_curve(&labels, &t).unwrap());
        assert_eq!((a.fpr, a.tpr), (b.fpr, b.tpr));
    }
    // Unit weights are no weights; AUC equals the area under the returned curve.
    let ones = vec![1.0; n];
    assert!((metrics::roc_auc_weighted(&labels, &scores, &ones).unwrap() - auc).abs() < 1e-15);
    let c = metrics::roc_curve(&labels, &scores).unwrap();
    let trap: f64 = (1..c.fpr.len()).map(|i| (c.fpr[i] - c.fpr[i - 1]) * (c.tpr[i] + c.tpr[i - 1]) / 2.0).sum();
    assert!((trap - auc).abs() < 1e-12);
    assert_eq!(c.thresholds[0], f64::INFINITY);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let e = |r: protein_lm::Result<f64>| r.unwrap_err().to_string();
    assert!(e(metrics::roc_auc(&[true, false], &[0.1])).contains("2 labels but 1 scores"));
    assert!(e(metrics::roc_auc(&[], &[])).contains("empty"));
    assert!(e(metrics::roc_auc(&[true, false], &[0.1, f64::NAN])).contains("NaN"));
    assert!(e(metrics::roc_auc(&[true, true], &[0.1, 0.2])).contains("one class"));
    assert!(e(metrics::roc_auc_weighted(&[true, false], &[0.1, 0.2], &[1.0])).contains("weights"));
    assert!(e(metrics::roc_auc_weighted(&[true, false], &[0.1, 0.2], &[1.0, -1.0])).contains("weight 1"));
    assert!(e(metrics::average_precision(&[false, false], &[0.1, 0.2])).contains("positive"));
    // Both classes labelled, but the positives weigh nothing: undefined (sklearn: NaN).
    assert!(e(metrics::roc_auc_weighted(&[true, false], &[0.1, 0.2], &[0.0, 1.0])).contains("zero total weight"));
    assert!(metrics::roc_curve(&[true], &[f64::INFINITY]).is_err());
    assert!(metrics::roc_curve_with(&[true], &[0.5], Some(&[0.0]), true).unwrap_err().to_string().contains("zero"));
    assert!(metrics::precision_recall_curve(&[true, false], &[0.3]).is_err());
    assert!(e(metrics::accuracy(&[1usize, 2], &[1])).contains("2 true labels but 1"));
    assert!(metrics::confusion_matrix(&[0, 3], &[0, 1], 3).unwrap_err().to_string().contains("class 3"));
    assert!(metrics::confusion_matrix(&[], &[], 3).is_err());
    assert!(metrics::classification_report(&[0], &[0], 0, ZeroDivision::Zero).is_err());
    assert!(metrics::binary_scores(&[true], &[], ZeroDivision::Zero).is_err());

    assert!(e(stats::pearson(&[1.0, 2.0, 3.0], &[1.0, 2.0])).contains("3 values but y has 2"));
    assert!(e(stats::pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0])).contains("constant"));
    assert!(e(stats::spearman(&[1.0, f64::NAN], &[1.0, 2.0])).contains("NaN"));
    assert!(stats::mean(&[]).is_err());
    assert!(stats::std_dev(&[1.0], 1).is_err());
    assert!(stats::ttest_ind(&[1.0], &[1.0, 2.0]).is_err());
    assert!(e(stats::welch_ttest(&[1.0, 1.0], &[2.0, 2.0]).map(|t| t.p_value)).contains("constant"));
    assert!(stats::mean_ci(&[1.0, 2.0], 1.0).is_err());
    assert!(stats::mean_ci(&[1.0], 0.95).is_err());
    assert!(stats::t_quantile(0.0, 3.0).is_err());
    assert!(stats::t_quantile(0.5, -1.0).is_err());
    let ci = stats::mean_ci(&[2.0, 2.0, 2.0], 0.95).unwrap();
    assert_eq!((ci.lower, ci.upper), (2.0, 2.0));
}

#[test]
fn majority_class_accuracy_predicts_the_most_frequent_training_label() {
    let (label, acc) = metrics::majority_class_accuracy(&[2, 1, 2, 3, 1], &[1, 2, 2, 0]).unwrap();
    assert_eq!(label, 1, "1 and 2 tie with two each: the smaller label");
    assert!((acc - 0.25).abs() < 1e-15);
    let (label, acc) = metrics::majority_class_accuracy(&["PF1", "PF2", "PF2"], &["PF2", "PF2"]).unwrap();
    assert_eq!((label, acc), ("PF2", 1.0));
    assert!(metrics::majority_class_accuracy::<u32>(&[], &[1]).is_err());
    assert!(metrics::majority_class_accuracy(&[1], &[]).is_err());
}
