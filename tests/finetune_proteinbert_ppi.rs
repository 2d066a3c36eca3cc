//! ProteinBERT fine-tuned on protein pairs, end to end on the PIPR yeast sample in the repository
//! (300 pairs, half of them negatives), through the library and through `protein-lm finetune
//! --model proteinbert --task ppi`: the report's fields, the test predictions in PRoBERTa's file
//! format, a pair scored the same in either order, a finished run resumed without training, and
//! bad input answered by an error that names it.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use protein_lm::data::ppi::{MissingSequence, Pair, PpiDataset};
use protein_lm::models::heads::Target;
use protein_lm::train::finetune::ppi::{ppi_data, read_pair_predictions, PairData};
use protein_lm::train::finetune::proteinbert::{
    evaluate_pairs, finetune_proteinbert_ppi, LongProteins, PpiFinetuneConfig,
};
use protein_lm::train::finetune::PpiFinetuneReport;
use protein_lm::train::run_dir::RunOptions;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const PAIRS: &str = "datasets/samples/pipr_yeast_sample/protein.actions.tsv";
const DICT: &str = "datasets/samples/pipr_yeast_sample/protein.dictionary.tsv";
const CONFIG: &str = "configs/proteinbert-finetune-ppi-tiny.json";

/// The tiny config for the yeast sample: its own negatives, all of its training pairs.
fn yeast_config() -> PpiFinetuneConfig {
    let mut c = PpiFinetuneConfig::load(repo(CONFIG)).unwrap();
    c.ppi.negatives = None;
    c.ppi.train_fraction = 1.0;
    c.long_proteins = LongProteins::LeaveOut;
    c
}

fn yeast_data(config: &PpiFinetuneConfig) -> PairData {
    let (pairs, dict) = (repo(PAIRS), repo(DICT));
    let (dataset, _) = PpiDataset::load_with_sequences(&pairs, &[&dict], MissingSequence::Error).unwrap();
    ppi_data(dataset, &config.ppi, &[], &config.finetune.data, config.finetune.seed).unwrap()
}

/// The number of training records in a stage's log (a resumed finished stage adds none).
fn train_records(stage_dir: &Path) -> usize {
    let log = std::fs::read_to_string(stage_dir.join("log.jsonl")).unwrap();
    log.lines().filter(|l| l.contains("\"kind\":\"train\"")).count()
}

#[test]
fn a_tiny_yeast_run_reports_every_score_writes_prorbertas_file_and_resumes_without_training() {
    let config = yeast_config();
    let data = yeast_data(&config);
    assert_eq!((data.train.len(), data.valid.len(), data.test.len()), (200, 30, 30));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let device = Device::Cpu;
    let files = [repo(PAIRS), repo(DICT)];
    let options = RunOptions { out: &out, resume: false, device: &device, progress: false };
    let started = std::time::Instant::now();
    let report = finetune_proteinbert_ppi(&config, &data, None, &files, options).unwrap();
    let scores = &report.test_scores;
    eprintln!(
        "yeast sample, tiny scratch model: test accuracy {:.3}, ROC AUC {:.3}, {:.1} s",
        scores["accuracy"],
        scores["roc_auc"],
        started.elapsed().as_secs_f64()
    );

    // The report: sizes, every metric of PRoBERTa's report, all four overlap classes.
    assert_eq!((report.task.as_str(), report.train, report.valid, report.test), ("ppi", 200, 30, 30));
    for key in ["loss", "accuracy", "precision", "recall", "f1", "roc_auc"] {
        assert!(scores.contains_key(key), "test_scores lacks {key}: {scores:?}");
    }
    assert!((0.0..=1.0).contains(&scores["accuracy"]) && (0.0..=1.0).contains(&scores["roc_auc"]));
    let classes: Vec<&str> = report.test_by_overlap.iter().map(|c| c.class.as_str()).collect();
    assert_eq!(classes, ["all", "both proteins seen in training", "one protein seen", "no protein seen"]);
    let all = report.test_by_overlap[0].scores;
    assert_eq!(all.n, 30);
    assert_eq!(report.test_by_overlap[1..].iter().map(|c| c.scores.n).sum::<usize>(), 30);
    assert_eq!(all.accuracy, scores["accuracy"]);
    assert!((all.roc_auc - scores["roc_auc"]).abs() < 1e-12);
    let counts = &report.data_report["test pairs by proteins seen in training (both, one, none)"];
    let by_class: Vec<u64> = report.test_by_overlap[1..].iter().map(|c| c.scores.n as u64).collect();
    assert_eq!(counts, &serde_json::json!(by_class));
    assert_eq!(report.test_by_length.last().unwrap().bucket, "all");
    assert_eq!(report.stages.len(), 3);
    for (k, stage) in report.stages.iter().enumerate() {
        assert!(stage["updates"].as_u64().unwrap() > 0, "stage {}: {stage}", k + 1);
        assert_eq!(stage["resumed_from"], serde_json::Value::Null);
    }
    // Stages 1–2 at 256 tokens leave out the pairs with a protein over 254 residues; stage 3 at 512 none.
    assert!(report.stages[0]["left_out_for_length"]["train"].as_u64().unwrap() > 0);
    assert_eq!(report.stages[2]["left_out_for_length"]["train"], 0);
    // results.json reads back (an undefined metric, null in JSON, as NaN: compared as JSON).
    let back = PpiFinetuneReport::read(&out).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&report).unwrap());

    // test_predictions.tsv: PRoBERTa's format, read by its reader, one row per test pair in order.
    let text = std::fs::read_to_string(out.join("test_predictions.tsv")).unwrap();
    assert!(text.starts_with("protein_a\tprotein_b\tlabel\tpredicted\tscore\n"), "{}", &text[..60]);
    let rows = read_pair_predictions(&out.join("test_predictions.tsv")).unwrap();
    assert_eq!(rows.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), data.test);

    // The saved model scores the test pairs as the run did, and either order of a pair alike.
    let p = evaluate_pairs(&out.join("model"), &data.test, &data.sequences, &config, &device).unwrap();
    for ((pair, written), score) in rows.iter().zip(&p.scores) {
        assert!((written - score).abs() < 1e-5, "{pair:?}: file {written}, model {score}");
    }
    assert_eq!(p.summary(Target::Binary)["accuracy"], scores["accuracy"]);
    let swapped: Vec<Pair> =
        data.test.iter().map(|q| Pair { a: q.b.clone(), b: q.a.clone(), label: q.label }).collect();
    let s = evaluate_pairs(&out.join("model"), &swapped, &data.sequences, &config, &device).unwrap();
    for (k, (x, y)) in p.scores.iter().zip(&s.scores).enumerate() {
        assert!((x - y).abs() < 1e-6, "pair {k}: {x} as (a, b), {y} as (b, a)");
    }
    // …and the second protein matters: the same first proteins with other partners score otherwise.
    let mut rotated = data.test.clone();
    let partners: Vec<String> = data.test.iter().map(|q| q.b.clone()).collect();
    for (k, q) in rotated.iter_mut().enumerate() {
        q.b = partners[(k + 1) % partners.len()].clone();
    }
    let r = evaluate_pairs(&out.join("model"), &rotated, &data.sequences, &config, &device).unwrap();
    assert!(p.scores.iter().zip(&r.scores).any(|(x, y)| (x - y).abs() > 1e-6), "the partner changes no score");

    // --resume of a finished run: every stage is already at its end, nothing trains again.
    let logged: Vec<usize> = (1..=3).map(|k| train_records(&out.join(format!("stage-{k}")))).collect();
    let options = RunOptions { out: &out, resume: true, device: &device, progress: false };
    let resumed = finetune_proteinbert_ppi(&config, &data, None, &files, options).unwrap();
    for (k, (before, after)) in report.stages.iter().zip(&resumed.stages).enumerate() {
        assert_eq!(after["updates"], before["updates"], "stage {}", k + 1);
        assert_eq!(after["resumed_from"], before["updates"], "stage {}", k + 1);
        assert_eq!(train_records(&out.join(format!("stage-{}", k + 1))), logged[k], "stage {} trained again", k + 1);
    }
    assert_eq!(resumed.test_scores["accuracy"], scores["accuracy"]);
    assert_eq!(read_pair_predictions(&out.join("test_predictions.tsv")).unwrap(), rows);
}

#[test]
fn cropping_trains_every_pair_at_every_stage_and_counts_the_cut_ones() {
    let mut config = yeast_config();
    config.long_proteins = LongProteins::Crop;
    for stage in &mut config.finetune.stages {
        stage.train.max_epochs = Some(1);
    }
    let data = yeast_data(&config);
    let lengths: std::collections::HashMap<&str, usize> =
        data.sequences.iter().map(|(id, s)| (id.as_str(), s.len())).collect();
    let too_long = |pairs: &[Pair], seq_len: usize| {
        pairs.iter().filter(|p| lengths[p.a.as_str()].max(lengths[p.b.as_str()]) + 2 > seq_len).count() as u64
    };
    let tmp = tempfile::tempdir().unwrap();
    let files = [repo(PAIRS), repo(DICT)];
    let options = RunOptions { out: tmp.path(), resume: false, device: &Device::Cpu, progress: false };
    let report = finetune_proteinbert_ppi(&config, &data, None, &files, options).unwrap();
    for (stage, c) in report.stages.iter().zip(&config.finetune.stages) {
        assert_eq!(stage["train"], 200, "every training pair trains: {stage}");
        assert_eq!(stage["left_out_for_length"]["train"], 0);
        assert_eq!(stage["cropped_to_fit"]["train"], too_long(&data.train, c.seq_len));
        assert_eq!(stage["cropped_to_fit"]["valid"], too_long(&data.valid, c.seq_len));
    }
    assert!(
        report.stages[0]["cropped_to_fit"]["train"].as_u64().unwrap() > 0,
        "the sample has proteins over 254 residues"
    );
    // Test pairs are never cut: each is scored whole, at a bucket that holds it.
    assert_eq!(report.test_by_length.last().unwrap().items, 30);
    assert!(report.test_by_length.iter().any(|b| b.bucket != "all" && b.bucket.parse::<usize>().unwrap() > 256));
}

#[test]
fn bad_pair_data_is_an_error_naming_the_pair_before_any_training() {
    let config = yeast_config();
    let mut data = yeast_data(&config);
    data.test[2].b = "NOT_A_PROTEIN".into();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let options = RunOptions { out: &out, resume: false, device: &Device::Cpu, progress: false };
    let err = finetune_proteinbert_ppi(&config, &data, None, &[], options).unwrap_err().to_string();
    assert!(err.contains("test pair 3") && err.contains("no sequence for protein `NOT_A_PROTEIN`"), "{err}");
    assert!(!out.join("stage-1").exists(), "nothing may be trained on bad data");

    // No pair fits the first stage's length.
    let mut short = yeast_config();
    short.finetune.stages[0].seq_len = 8;
    let data = yeast_data(&short);
    let options = RunOptions { out: &out, resume: false, device: &Device::Cpu, progress: false };
    let err = finetune_proteinbert_ppi(&short, &data, None, &[], options).unwrap_err().to_string();
    assert!(err.contains("stage 1") && err.contains("seq_len 8"), "{err}");
}

// ---- through the binary ----

fn bin(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_protein-lm"));
    // No test may depend on the shared data sets.
    c.env("PROTEIN_LM_DATA", "/nonexistent-protein-lm-data").args(args);
    c
}

fn ok(args: &[&str]) -> String {
    let out = bin(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// The `error: ` line of a failing run (which must not panic).
fn error(args: &[&str]) -> String {
    let out = bin(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && !stderr.contains("panicked"), "{args:?}: {stderr}");
    stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {stderr}")).to_string()
}

#[test]
fn cli_fine_tunes_on_a_split_directory_resumes_and_names_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let split = t.path().join("split");
    ok(&["data", "split", "--pairs", s(&repo(PAIRS)), "--sequences", s(&repo(DICT)), "--out", s(&split)]);
    let out = t.path().join("run");
    let config = repo(CONFIG);
    let args = ["finetune", "--model", "proteinbert", "--task", "ppi", "--data", s(&split), "--config", s(&config)];
    let run = |extra: &[&str]| -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--out", s(&out), "--quiet"]);
        all.extend(extra);
        ok(&all)
    };
    let stdout = run(&[]);
    // The split directory is used as written (ppi.train_fraction applies to pair files only).
    assert!(stdout.contains("ppi (200 train / 30 valid / 30 test pairs)"), "{stdout}");
    assert!(stdout.contains("test, all (30 pairs): accuracy") && stdout.contains("no protein seen"), "{stdout}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    for key in ["accuracy", "precision", "recall", "roc_auc"] {
        assert!(results["test_scores"].get(key).is_some(), "{key}: {results}");
        assert!(results["test_by_overlap"][0].get(key).is_some(), "{key}: {results}");
    }
    let rows = read_pair_predictions(&out.join("test_predictions.tsv")).unwrap();
    assert_eq!(rows.len(), 30);
    let test = std::fs::read_to_string(split.join("test.tsv")).unwrap();
    let written: Vec<String> = rows.iter().map(|(p, _)| format!("{}\t{}\t{}", p.a, p.b, p.label)).collect();
    assert_eq!(written, test.lines().collect::<Vec<_>>());
    assert!(out.join("model/config.json").is_file());

    // --resume of the finished run trains nothing.
    let logged: Vec<usize> = (1..=3).map(|k| train_records(&out.join(format!("stage-{k}")))).collect();
    let again = run(&["--resume"]);
    assert_eq!(again, stdout, "a resumed finished run reports what the run did");
    assert_eq!((1..=3).map(|k| train_records(&out.join(format!("stage-{k}")))).collect::<Vec<_>>(), logged);

    // Bad input: a test pair naming a protein absent from sequences.fasta (file and line) …
    let bad = t.path().join("bad-split");
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["train.tsv", "valid.tsv", "sequences.fasta"] {
        std::fs::copy(split.join(f), bad.join(f)).unwrap();
    }
    std::fs::write(
        bad.join("test.tsv"),
        test.replacen(test.lines().next().unwrap().split('\t').next().unwrap(), "YNOSUCH", 1),
    )
    .unwrap();
    let bad_out = t.path().join("bad-run");
    let mut bad_args = args.to_vec();
    bad_args[6] = s(&bad);
    bad_args.extend(["--out", s(&bad_out)]);
    let e = error(&bad_args);
    assert!(e.contains("test.tsv:1") && e.contains("YNOSUCH"), "{e}");
    // … and a PRoBERTa-only option. (The pair file's own negatives and a config without `ppi` are
    // tests/cli_bad_input.rs's cases.)
    let e = error(&[
        "finetune",
        "--model",
        "proteinbert",
        "--task",
        "ppi",
        "--tokenizer",
        "dict.txt",
        "--config",
        s(&config),
        "--out",
        s(&bad_out),
    ]);
    assert!(e.contains("--tokenizer"), "{e}");
}

/// The shipped configs of each scale split like PRoBERTa's: the same `ppi` section, seed and test
/// cap, so both models are tested on the same pairs (their training caps may differ).
#[test]
fn both_models_shipped_configs_test_on_the_same_pairs() {
    use protein_lm::train::finetune::ppi::ppi_split_dir;
    use protein_lm::train::finetune::proberta::ProbertaFinetuneConfig;
    for scale in ["tiny", "demo", "paper"] {
        let pb = PpiFinetuneConfig::load(repo(&format!("configs/proteinbert-finetune-ppi-{scale}.json"))).unwrap();
        let pr = ProbertaFinetuneConfig::load(repo(&format!("configs/proberta-finetune-{scale}.json"))).unwrap();
        assert_eq!(pb.ppi, pr.ppi, "{scale}");
        assert_eq!((pb.finetune.seed, pb.finetune.data.max_test), (pr.seed, pr.data.max_test), "{scale}");
    }
    let mut pb = yeast_config();
    let mut pr = ProbertaFinetuneConfig::load(repo("configs/proberta-finetune-tiny.json")).unwrap();
    pr.ppi = pb.ppi.clone();
    let (pairs, dict) = (repo(PAIRS), repo(DICT));
    let dataset = || PpiDataset::load_with_sequences(&pairs, &[&dict], MissingSequence::Error).unwrap().0;
    // A test cap below the test split's 30 pairs, so the sample matters.
    pb.finetune.data.max_test = Some(20);
    pr.data.max_test = Some(20);
    let a = ppi_data(dataset(), &pb.ppi, &[], &pb.finetune.data, pb.finetune.seed).unwrap();
    let b = ppi_data(dataset(), &pr.ppi, &[], &pr.data, pr.seed).unwrap();
    assert_ne!(a.train.len(), b.train.len(), "the training caps differ");
    assert_eq!((a.test.len(), &a.test), (20, &b.test));
    // The same from a split directory.
    let t = tempfile::tempdir().unwrap();
    let split = t.path().join("split");
    ok(&["data", "split", "--pairs", s(&pairs), "--sequences", s(&dict), "--out", s(&split)]);
    let a = ppi_split_dir(&split, &pb.finetune.data, pb.finetune.seed).unwrap();
    let b = ppi_split_dir(&split, &pr.data, pr.seed).unwrap();
    assert_ne!(a.train.len(), b.train.len());
    assert_eq!((a.test.len(), &a.test), (20, &b.test));
}
