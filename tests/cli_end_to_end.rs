//! The subcommands that no other test runs, end to end through the real binary on the committed
//! samples and fixtures at tiny scale: `import`, `init`, `tokenizer train/encode`, `finetune` (both
//! models) and `data split` (proteins and pairs), each with checks on what it wrote.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the binary under umask 022 (so written files must come out 0644) and returns stdout,
/// failing the test with stderr when it fails.
fn ok(args: &[&str], data_root: Option<&Path>) -> String {
    let mut c = Command::new("sh");
    c.arg("-c").arg("umask 022; exec \"$@\"").arg("sh").arg(env!("CARGO_BIN_EXE_protein-lm")).args(args);
    c.env("PROTEIN_LM_DATA", data_root.unwrap_or(Path::new("/nonexistent-protein-lm-data")));
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A model directory of `kind` whose files are readable by everyone (0644 under umask 022).
fn check_model_dir(dir: &Path, kind: &str) {
    assert_eq!(json(&dir.join("config.json"))["kind"], kind, "{}", dir.display());
    for f in ["config.json", "model.safetensors"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}/{f} has mode {mode:o}", dir.display());
    }
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(tensors.len() > 10, "{} tensors", tensors.len());
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn fasta_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix('>'))
        .map(|h| h.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn import_all_three_formats_then_embed() {
    let t = tempfile::tempdir().unwrap();
    let keras = t.path().join("keras");
    let out = ok(
        &["import", "proteinbert-keras", s(&repo("tests/fixtures/proteinbert/weights_numpy1.pkl")), "--out", s(&keras)],
        None,
    );
    assert!(out.contains("ProteinBERT, 2 blocks, local 24 / global 32, 4 heads, 37 annotations"), "{out}");
    check_model_dir(&keras, "proteinbert");

    let dict = repo("tests/fixtures/proberta/dict.txt");
    let fairseq = t.at("fairseq");
    let out = ok(
        &[
            "import",
            "fairseq",
            s(&repo("tests/fixtures/proberta/fairseq_zip_fp32.pt")),
            "--dict",
            s(&dict),
            "--out",
            s(&fairseq),
        ],
        None,
    );
    assert!(out.contains("PRoBERTa, 3 layers × 32 × 4 heads, vocabulary 45"), "{out}");
    check_model_dir(&fairseq, "proberta");
    assert_eq!(std::fs::read(fairseq.join("dict.txt")).unwrap(), std::fs::read(&dict).unwrap());

    let hf = t.at("hf");
    let out = ok(&["import", "hf-roberta", s(&repo("tests/fixtures/proberta/hf_mlm")), "--out", s(&hf)], None);
    assert!(out.contains("LM head: yes; heads: none"), "{out}");
    check_model_dir(&hf, "proberta");

    // The imported ProteinBERT embeds proteins: one row per record, ids beside it.
    let fasta = repo("datasets/samples/sample.fasta");
    let npy = t.at("emb.npy");
    ok(&["embed", "--device", "cpu", "--model", s(&keras), "--fasta", s(&fasta), "--out", s(&npy)], None);
    let ids = std::fs::read_to_string(t.at("emb.ids.txt")).unwrap();
    assert_eq!(ids.lines().map(str::to_string).collect::<Vec<_>>(), fasta_ids(&fasta));
    let header = String::from_utf8_lossy(&std::fs::read(&npy).unwrap()[..128]).into_owned();
    assert!(header.contains(&format!("'shape': ({}, ", fasta_ids(&fasta).len())), "{header}");
}

trait TempPath {
    fn at(&self, rel: &str) -> PathBuf;
}

impl TempPath for tempfile::TempDir {
    fn at(&self, rel: &str) -> PathBuf {
        tempfile::TempDir::path(self).join(rel)
    }
}

#[test]
fn init_both_models() {
    let t = tempfile::tempdir().unwrap();
    let pb = t.at("pb");
    let out = ok(&["init", "--model", "proteinbert", "--size", "tiny", "--annotations", "8", "--out", s(&pb)], None);
    assert!(out.contains("proteinbert with") && out.contains("random parameters (seed 0)"), "{out}");
    check_model_dir(&pb, "proteinbert");
    assert_eq!(json(&pb.join("config.json"))["model"]["n_annotations"], 8);

    let dict = repo("tests/fixtures/proberta/dict.txt");
    let pr = t.at("pr");
    ok(&["init", "--model", "proberta", "--size", "tiny", "--dict", s(&dict), "--seed", "3", "--out", s(&pr)], None);
    check_model_dir(&pr, "proberta");
    assert_eq!(std::fs::read(pr.join("dict.txt")).unwrap(), std::fs::read(&dict).unwrap());
    // fairseq adds 4 specials before the dictionary's 41 entries and <mask> after them.
    assert_eq!(json(&pr.join("config.json"))["model"]["vocab_size"], 46);
    // The same seed gives the same weights; another seed others.
    let again = t.at("pr_again");
    ok(&["init", "--model", "proberta", "--size", "tiny", "--dict", s(&dict), "--seed", "3", "--out", s(&again)], None);
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(weights(&pr), weights(&again));
    let other = t.at("pr_other");
    ok(&["init", "--model", "proberta", "--size", "tiny", "--dict", s(&dict), "--seed", "4", "--out", s(&other)], None);
    assert_ne!(weights(&pr), weights(&other));
}

#[test]
fn tokenizer_train_then_encode_to_stdout_and_file() {
    let t = tempfile::tempdir().unwrap();
    let fasta = repo("datasets/samples/sample.fasta");
    let tok = t.at("tok");
    ok(&["tokenizer", "train", "--input", s(&fasta), "--out", s(&tok), "--vocab-size", "60"], None);
    let report = json(&tok.join("training_report.json"));
    assert_eq!(report["report"]["sequences_used"], 50);
    let dict_lines = std::fs::read_to_string(tok.join("dict.txt")).unwrap().lines().count();
    // fairseq ids: 4 specials + the dictionary + <mask>.
    assert_eq!(report["fairseq_ids"], dict_lines + 5);
    assert!(tok.join("tokenizer.json").is_file());

    let stdout = ok(&["tokenizer", "encode", "--input", s(&fasta), "--tokenizer", s(&tok), "--pieces"], None);
    let file = t.at("enc.txt");
    ok(&["tokenizer", "encode", "--input", s(&fasta), "--tokenizer", s(&tok), "--pieces", "--out", s(&file)], None);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.iter().map(|l| l.split('\t').next().unwrap().to_string()).collect::<Vec<_>>(), fasta_ids(&fasta));
    // Each line: <s>, pieces whose letters spell the protein, </s>.
    let first_seq: String =
        std::fs::read_to_string(&fasta).unwrap().lines().skip(1).take_while(|l| !l.starts_with('>')).collect();
    let pieces: Vec<&str> = lines[0].split('\t').nth(1).unwrap().split(' ').collect();
    assert_eq!((pieces[0], *pieces.last().unwrap()), ("<s>", "</s>"));
    let spelled: String = pieces[1..pieces.len() - 1].concat().replace('▁', "");
    assert_eq!(spelled, first_seq);
    // Ids are the dictionary's: the same count per line as pieces.
    let ids = ok(&["tokenizer", "encode", "--input", s(&fasta), "--tokenizer", s(&tok)], None);
    let id_counts: Vec<usize> = ids.lines().map(|l| l.split('\t').nth(1).unwrap().split(' ').count()).collect();
    let piece_counts: Vec<usize> = lines.iter().map(|l| l.split('\t').nth(1).unwrap().split(' ').count()).collect();
    assert_eq!(id_counts, piece_counts);
}

#[test]
fn finetune_proberta_family_from_scratch() {
    let t = tempfile::tempdir().unwrap();
    let out = t.at("run");
    let stdout = ok(
        &[
            "finetune",
            "--model",
            "proberta",
            "--task",
            "family",
            "--data",
            s(&repo("datasets/samples/human_pfam_single_sample.tsv")),
            "--tokenizer",
            s(&repo("tests/fixtures/proberta/dict.txt")),
            "--config",
            s(&repo("configs/proberta-finetune-tiny.json")),
            "--out",
            s(&out),
            "--quiet",
        ],
        None,
    );
    assert!(stdout.contains("family (96 train / "), "{stdout}");
    let results = json(&out.join("results.json"));
    assert_eq!(results["task"], "family");
    assert_eq!(results["updates"], 24);
    let accuracy = results["test_scores"]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy), "{accuracy}");
    check_model_dir(&out.join("model"), "proberta");
    let predictions = std::fs::read_to_string(out.join("test_predictions.tsv")).unwrap();
    assert_eq!(predictions.lines().count(), 1 + results["test"].as_u64().unwrap() as usize);
}

#[test]
fn finetune_proteinbert_benchmark_from_scratch() {
    let t = tempfile::tempdir().unwrap();
    let root = t.at("data");
    std::fs::create_dir_all(root.join("proteinbert-benchmarks")).unwrap();
    for split in ["train", "test"] {
        let text = std::fs::read_to_string(repo(&format!("datasets/samples/signalP_sample.{split}.csv"))).unwrap();
        // Five training sequences in lower case: read as upper case and counted in the data report.
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| if split == "train" && (1..=5).contains(&i) { l.to_lowercase() } else { l.to_string() })
            .collect();
        let path = root.join(format!("proteinbert-benchmarks/signalP_binary.{split}.csv"));
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }
    let out = t.at("run");
    let stdout = ok(
        &[
            "finetune",
            "--model",
            "proteinbert",
            "--task",
            "signalP_binary",
            "--config",
            s(&repo("configs/proteinbert-finetune-tiny.json")),
            "--out",
            s(&out),
            "--quiet",
        ],
        Some(&root),
    );
    // No valid file: 10 % of the 200 training proteins are held out.
    assert!(stdout.contains("signalP_binary (180 train / 20 valid / 100 test)"), "{stdout}");
    let results = json(&out.join("results.json"));
    assert_eq!(results["data_report"]["sequences with lowercase letters, read as upper case"], 5, "{results}");
    let all = results["test_scores"].as_array().unwrap().iter().find(|b| b["bucket"] == "all").unwrap().clone();
    assert_eq!((all["metric"].as_str(), all["proteins"].as_u64()), (Some("roc_auc"), Some(100)));
    assert!((0.0..=1.0).contains(&all["value"].as_f64().unwrap()));
    for stage in ["stage-1", "stage-2", "stage-3"] {
        assert!(out.join(stage).join("log.jsonl").is_file(), "{stage}");
    }
    check_model_dir(&out.join("model"), "proteinbert");
}

#[test]
fn data_split_proteins_is_seeded_disjoint_and_nested() {
    let t = tempfile::tempdir().unwrap();
    let fasta = repo("datasets/samples/sample.fasta");
    let split =
        |out: &Path| ok(&["data", "split", "--input", s(&fasta), "--out", s(out), "--nested", "--seed", "5"], None);
    let (a, b) = (t.at("a"), t.at("b"));
    split(&a);
    split(&b);
    let names = ["train.fasta", "valid.fasta", "test.fasta"];
    let sets: Vec<BTreeSet<String>> = names.iter().map(|n| fasta_ids(&a.join(n)).into_iter().collect()).collect();
    let report = json(&a.join("split_report.json"));
    let kept = report["duplicates_removed"]["kept"].as_u64().unwrap() as usize;
    assert_eq!(sets.iter().map(BTreeSet::len).sum::<usize>(), kept);
    assert_eq!(sets.iter().flatten().collect::<BTreeSet<_>>().len(), kept, "splits overlap");
    assert_eq!(sets[0].len(), (kept as f64 * 0.8).round() as usize);
    for n in names {
        assert_eq!(std::fs::read(a.join(n)).unwrap(), std::fs::read(b.join(n)).unwrap(), "{n} differs between runs");
    }
    // Nested training subsets: ten files, each a superset of the previous, the last the whole train.
    let mut previous = BTreeSet::new();
    for tenth in 1..=10 {
        let ids: BTreeSet<String> =
            fasta_ids(&a.join(format!("train.nested_{:.2}.fasta", tenth as f64 / 10.0))).into_iter().collect();
        assert!(ids.is_superset(&previous) && ids.is_subset(&sets[0]));
        previous = ids;
    }
    assert_eq!(previous, sets[0]);
}

#[test]
fn data_split_pairs_writes_every_pair_once_with_its_sequences() {
    let t = tempfile::tempdir().unwrap();
    let pairs = repo("datasets/samples/pipr_yeast_sample/protein.actions.tsv");
    let dict = repo("datasets/samples/pipr_yeast_sample/protein.dictionary.tsv");
    let out = t.at("ppi");
    ok(&["data", "split", "--pairs", s(&pairs), "--sequences", s(&dict), "--out", s(&out)], None);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap().lines().map(str::to_string).collect::<Vec<_>>();
    let mut written: Vec<String> =
        ["train.tsv", "valid.tsv", "test.tsv"].iter().flat_map(|f| read(&out.join(f))).collect();
    let mut input = read(&pairs);
    written.sort();
    input.sort();
    assert_eq!(written, input);
    let ids: BTreeSet<String> = fasta_ids(&out.join("sequences.fasta")).into_iter().collect();
    let used: BTreeSet<String> = input.iter().flat_map(|l| l.split('\t').take(2).map(str::to_string)).collect();
    assert_eq!(ids, used);
    let report = json(&out.join("split_report.json"));
    assert_eq!(report["sizes"][0][1], 240);
}

#[test]
fn pretrain_reads_lowercase_as_upper_case_and_counts_it_in_data_json() {
    let t = tempfile::tempdir().unwrap();
    let table = std::fs::read_to_string(repo("datasets/samples/swissprot_sample300.tsv")).unwrap();
    // The first ten proteins soft-masked (lower case), as some FASTA exports write them.
    let lowered: Vec<String> = table
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if (1..=10).contains(&i) {
                let (head, seq) = l.rsplit_once('\t').unwrap();
                format!("{head}\t{}", seq.to_lowercase())
            } else {
                l.to_string()
            }
        })
        .collect();
    let data = t.at("lower.tsv");
    std::fs::write(&data, lowered.join("\n") + "\n").unwrap();
    let out = t.at("run");
    ok(
        &[
            "pretrain",
            "--model",
            "proberta",
            "--config",
            s(&repo("configs/proberta-pretrain-tiny.json")),
            "--tokenizer",
            s(&repo("tests/fixtures/proberta/dict.txt")),
            "--data",
            s(&data),
            "--out",
            s(&out),
            "--quiet",
        ],
        None,
    );
    let report = json(&out.join("data.json"));
    assert_eq!(report["records_read"]["uppercased"], 10, "{report}");
    // No lower-case letter reached the tokenizer's unknown token.
    let unknown = report["letters_mapped_to_unk"].to_string();
    assert!(!unknown.chars().any(|c| c.is_ascii_lowercase() && unknown.contains(&format!("\"{c}\""))), "{unknown}");
    check_model_dir(&out.join("model"), "proberta");
}
