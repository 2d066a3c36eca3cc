//! PRoBERTa fine-tuning end to end on a family task a small encoder can learn: two "families" of
//! random sequences over disjoint alphabets. A head, loss, batching or best-weights bug shows up as
//! test accuracy near chance.

use std::io::Write;

use candle_core::Device;
use protein_lm::data::resolver::{files, DataResolver};
use protein_lm::data::tables::read_single_pfam;
use protein_lm::train::finetune::proberta::{
    finetune_proberta, read_finetune_results, ProbertaFinetuneConfig, ProbertaTaskData,
};
use protein_lm::train::finetune::{class_labels, family_data, DataLimits};
use protein_lm::train::run_dir::RunOptions;
use protein_lm::Rng;

fn family_table(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("families.tsv");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "accession\tpfam_id\tsequence").unwrap();
    let mut rng = Rng::new(11);
    for (family, alphabet) in [("PF00001", b"ACDEG"), ("PF00002", b"KLMNR")] {
        for i in 0..40 {
            let len = 20 + rng.below(20) as usize;
            let seq: String = (0..len).map(|_| alphabet[rng.below(5) as usize] as char).collect();
            writeln!(f, "{family}_{i}\t{family}\t{seq}").unwrap();
        }
    }
    path
}

#[test]
fn a_small_encoder_learns_separable_families_and_the_best_weights_are_tested() {
    let tmp = tempfile::tempdir().unwrap();
    let table = family_table(tmp.path());
    let (records, _) = read_single_pfam(&table).unwrap();
    let limits = DataLimits { max_train: None, max_valid: None, max_test: None, valid_fraction: 0.2 };
    let data = family_data(&records, 5, 0.2, &limits, 0).unwrap();
    assert_eq!((data.train.len(), data.valid.len(), data.test.len()), (48, 16, 16));
    assert_eq!(data.labels, vec!["PF00001", "PF00002"]);
    let test_classes = class_labels(&data.test).unwrap();
    assert_eq!(test_classes.iter().filter(|&&c| c == 0).count(), 8, "stratified: 8 of each family");
    assert!(test_classes.iter().enumerate().all(|(i, &c)| data.test[i].id.starts_with(data.labels[c].as_str())));

    let mut config: ProbertaFinetuneConfig =
        serde_json::from_str(include_str!("../configs/proberta-finetune-tiny.json")).unwrap();
    config.task = "family".into();
    config.train.max_updates = 80;
    config.train.validate_every_updates = Some(20);
    config.train.checkpoint_every = 40;
    if let protein_lm::train::trainer::LrSchedule::Polynomial(p) = &mut config.train.lr {
        (p.warmup_updates, p.total_updates, p.peak_lr) = (8, 80, 2e-2);
    }
    config.train.early_stopping.as_mut().unwrap().patience = 10;
    let dict = DataResolver::from_env().resolve(files::PROBERTA_DICT).unwrap();
    let out = tmp.path().join("run");
    let device = Device::Cpu;
    let options = RunOptions { out: &out, resume: false, device: &device, progress: false };
    let report =
        finetune_proberta(&config, &ProbertaTaskData::Proteins(data), None, Some(&dict), &[table], options).unwrap();

    assert_eq!(report.updates, 80);
    let (best_accuracy, best_update) = report.best.unwrap();
    assert!(report.tested.starts_with("best/"), "{}", report.tested);
    assert!(best_accuracy >= 0.9, "best validation accuracy {best_accuracy} at update {best_update}");
    assert!(report.test_scores["accuracy"] >= 0.9, "test scores {:?}", report.test_scores);
    assert!(report.test_scores["roc_auc"] >= 0.95, "test scores {:?}", report.test_scores);
    // One prediction row per test protein, and the model directories carry the tokenizer.
    let predictions = std::fs::read_to_string(out.join("test_predictions.tsv")).unwrap();
    assert_eq!(predictions.lines().count(), 1 + 16);
    assert!(predictions.lines().skip(1).all(|l| l.split('\t').count() == 4));
    assert!(out.join("best/dict.txt").is_file() && out.join("model/dict.txt").is_file());
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["paper"][0]["value"], 0.92);
    // A notebook reads the finished run back instead of training again.
    let (back, rows) = read_finetune_results(&out).unwrap();
    assert_eq!(back, report);
    assert_eq!(rows.len(), 16);
    assert!(rows.iter().all(|r| r.name.starts_with("PF0000") && r.score.is_some()));
    let hits = rows.iter().filter(|r| r.label == r.predicted).count() as f64 / 16.0;
    assert!((hits - report.test_scores["accuracy"]).abs() < 1e-12, "{hits} vs {:?}", report.test_scores);
    // Labels are family names, and class_labels gives the split's class indices.
    assert!(rows.iter().all(|r| r.label == "PF00001" || r.label == "PF00002"));
    assert_eq!(rows.iter().filter(|r| r.label == "PF00001").count(), test_classes.iter().filter(|&&c| c == 0).count());
    std::fs::write(out.join("test_predictions.tsv"), "name\tlabel\tpredicted\tscore\nP1\tPF00001\n").unwrap();
    let err = read_finetune_results(&out).unwrap_err().to_string();
    assert!(err.contains("test_predictions.tsv:2") && err.contains("2 tab-separated fields"), "{err}");
}

/// A pair task a small encoder can learn: a pair interacts when both proteins share one alphabet.
#[test]
fn a_fine_tuned_ppi_model_evaluates_other_pairs_as_its_run_tested_them() {
    use protein_lm::analysis::ppi::binary_summary;
    use protein_lm::data::ppi::Pair;
    use protein_lm::models::heads::Target;
    use protein_lm::train::finetune::proberta::{evaluate_pairs, read_pair_predictions, PairData};
    use std::collections::BTreeMap;

    let mut rng = Rng::new(5);
    let mut sequences = BTreeMap::new();
    for (k, alphabet) in [b"ACDEG", b"KLMNR"].iter().enumerate() {
        for i in 0..20 {
            let len = 15 + rng.below(10) as usize;
            let seq: String = (0..len).map(|_| alphabet[rng.below(5) as usize] as char).collect();
            sequences.insert(format!("{k}_{i}"), seq);
        }
    }
    let ids: Vec<String> = sequences.keys().cloned().collect();
    let pairs: Vec<Pair> = (0..120)
        .map(|_| {
            let (a, b) = (&ids[rng.below(40) as usize], &ids[rng.below(40) as usize]);
            Pair { a: a.clone(), b: b.clone(), label: (a[..1] == b[..1]) as u8 }
        })
        .collect();
    let data = PairData {
        train: pairs[..80].to_vec(),
        valid: pairs[80..100].to_vec(),
        test: pairs[100..].to_vec(),
        sequences: sequences.clone(),
        report: BTreeMap::new(),
    };
    let mut config: ProbertaFinetuneConfig =
        serde_json::from_str(include_str!("../configs/proberta-finetune-tiny.json")).unwrap();
    config.task = "ppi".into();
    config.train.max_updates = 16;
    let dict = DataResolver::from_env().resolve(files::PROBERTA_DICT).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let device = Device::Cpu;
    let options = RunOptions { out: &out, resume: false, device: &device, progress: false };
    let report =
        finetune_proberta(&config, &ProbertaTaskData::Pairs(data.clone()), None, Some(&dict), &[], options).unwrap();

    // The run's own test predictions read back: one row per test pair, labels kept.
    let tested = read_pair_predictions(&out.join("test_predictions.tsv")).unwrap();
    assert_eq!(tested.len(), 20);
    let model_dir = if report.tested.starts_with("best/") { out.join("best") } else { out.join("model") };
    // The same model evaluated afresh on the test pairs, in their order, gives the same scores.
    let p = evaluate_pairs(&model_dir, &data.test, &sequences, &config, &device).unwrap();
    assert_eq!(p.scores.len(), 20);
    for (k, pair) in data.test.iter().enumerate() {
        assert_eq!(p.labels_bool[k], pair.label == 1);
        let (_, score) = tested.iter().find(|(q, _)| q.a == pair.a && q.b == pair.b).unwrap();
        assert!((p.scores[k] - score).abs() < 1e-5, "pair {k}: {} vs {score}", p.scores[k]);
    }
    let summary = p.summary(Target::Categorical { classes: 2 });
    assert!((summary["accuracy"] - report.test_scores["accuracy"]).abs() < 1e-12);
    let ours = binary_summary(&p.labels_bool, &p.scores).unwrap();
    assert!((ours.roc_auc - report.test_scores["roc_auc"]).abs() < 1e-9);
    // The same scores per protein-overlap class of the test pairs, `all` first.
    let all = &report.test_by_overlap[0];
    assert_eq!((all.class.as_str(), report.test_by_overlap.len()), ("all", 4));
    assert_eq!(all.scores, ours);
    assert_eq!(report.test_by_overlap[1..].iter().map(|c| c.scores.n).sum::<usize>(), 20);
    // Any other labelled pairs work too (here the training pairs); a file that is not a pair
    // task's predictions is refused.
    assert_eq!(evaluate_pairs(&model_dir, &data.train, &sequences, &config, &device).unwrap().scores.len(), 80);
    assert!(read_pair_predictions(&out.join("results.json")).is_err());

    // results.json reads back; an undefined metric, written as null (JSON has no NaN), reads as NaN.
    use protein_lm::train::finetune::proberta::ProbertaFinetuneReport;
    assert_eq!(ProbertaFinetuneReport::read(&out).unwrap(), report);
    let mut undefined = report.clone();
    undefined.test_scores.insert("precision".into(), f64::NAN);
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&undefined).unwrap()).unwrap();
    assert!(std::fs::read_to_string(out.join("results.json")).unwrap().contains("\"precision\": null"));
    let back = ProbertaFinetuneReport::read(&out).unwrap();
    assert!(back.test_scores["precision"].is_nan());
    assert_eq!(back.test_scores["accuracy"], report.test_scores["accuracy"]);
}
