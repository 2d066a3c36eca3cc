//! Bad input through the real binary, subcommand by subcommand: a missing input, the other model's
//! directory, a misspelt or out-of-range config key, non-finite labels, an empty input, lowercase
//! sequences, an output that cannot be written, and a write that fails half way. Every case checks
//! the message a user sees (docs/errors.md lists them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_protein-lm"));
    // No test may depend on the shared data sets; a test that needs the resolver sets its own.
    c.env("PROTEIN_LM_DATA", "/nonexistent-protein-lm-data");
    c
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("the binary runs")
}

/// Runs `args`, expects failure with an `error: ` line mentioning every part, and no panic.
fn fails_with(cmd: Command, parts: &[&str]) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{shown} should fail; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{shown} panicked: {stderr}");
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {stderr}"));
    for p in parts {
        assert!(error.contains(p), "{shown}: error `{error}` should mention `{p}`");
    }
    stderr
}

fn cmd(args: &[&str]) -> Command {
    let mut c = bin();
    c.args(args);
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A scratch directory with the inputs most cases need.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("empty.fasta"), "").unwrap();
        std::fs::write(p.join("lower.fasta"), ">P1\nmktayiakqr\n>P2\nMKTAYiakQR\n>P3\nMSSSPPQ\n").unwrap();
        std::fs::write(p.join("afile"), "x").unwrap();
        Self { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn p(&self, rel: &str) -> String {
        s(&self.path(rel)).to_string()
    }
    /// Seeded random model directories of both kinds (tiny).
    fn models(&self) -> (String, String) {
        let pb = self.p("pb");
        let pr = self.p("pr");
        if !self.path("pb/model.safetensors").exists() {
            let dict = repo("tests/fixtures/proberta/dict.txt");
            for args in [
                vec!["init", "--model", "proteinbert", "--size", "tiny", "--annotations", "8", "--out", &pb],
                vec!["init", "--model", "proberta", "--size", "tiny", "--dict", s(&dict), "--out", &pr],
            ] {
                let out = run(cmd(&args));
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
        }
        (pb, pr)
    }
    /// A config file derived from a shipped one by `edit`.
    fn config(&self, shipped: &str, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let text = std::fs::read_to_string(repo(&format!("configs/{shipped}"))).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        edit(&mut value);
        let path = self.path(name);
        std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
        s(&path).to_string()
    }
}

/// `cmd` run by `sh` with the file-size limit at 512 bytes and SIGXFSZ ignored, so a write past it
/// fails with EFBIG like a full disk, in the middle of the output.
fn with_full_disk(c: Command) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg("ulimit -f 1; trap '' XFSZ; exec \"$@\"").arg("sh").arg(c.get_program()).args(c.get_args());
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            sh.env(k, v);
        }
    }
    sh
}

/// The 1-based line of the first line of `path` containing `needle`.
fn line_of(path: &str, needle: &str) -> usize {
    std::fs::read_to_string(path).unwrap().lines().position(|l| l.contains(needle)).expect("needle in file") + 1
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// data stats / fetch / split

#[test]
fn data_stats_missing_empty_and_lowercase() {
    let t = Scratch::new();
    fails_with(cmd(&["data", "stats", &t.p("missing.fasta")]), &["missing.fasta", "No such file"]);
    fails_with(cmd(&["data", "stats", &t.p("empty.fasta")]), &["empty.fasta", "empty file: no proteins"]);
    let header_only = t.path("header_only.tsv");
    std::fs::write(&header_only, "accession\tlength\tgo_mf\tgo_bp\tgo_cc\tsequence\n").unwrap();
    fails_with(cmd(&["data", "stats", s(&header_only)]), &["header_only.tsv", "no records after the header"]);
    let out = run(cmd(&["data", "stats", &t.p("lower.fasta")]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("2 sequences had lowercase letters, read as upper case"), "{stdout}");
    // Read as upper case, the residues are standard: no "letters outside the 20" line.
    assert!(!stdout.contains("letters outside"), "{stdout}");
}

#[test]
fn data_fetch_suggests_the_nearest_data_set() {
    fails_with(
        cmd(&["data", "fetch", "--verify-only", "swisprot-2014-go"]),
        &["unknown data set(s)", "did you mean `swissprot-2014-go`"],
    );
}

#[test]
fn data_split_bad_inputs_and_outputs() {
    let t = Scratch::new();
    let out = t.p("split");
    fails_with(cmd(&["data", "split", "--input", &t.p("missing.fasta"), "--out", &out]), &["missing.fasta"]);
    fails_with(cmd(&["data", "split", "--input", &t.p("empty.fasta"), "--out", &out]), &["empty.fasta", "empty file"]);
    fails_with(
        cmd(&["data", "split", "--input", &t.p("lower.fasta"), "--out", &out, "--fractions", "0.8,-0.1,0.3"]),
        &["`--fractions[1]` must be in [0, 1], not -0.1"],
    );
    let pairs = repo("datasets/samples/pipr_yeast_sample/protein.actions.tsv");
    let dict = repo("datasets/samples/pipr_yeast_sample/protein.dictionary.tsv");
    fails_with(
        cmd(&[
            "data",
            "split",
            "--pairs",
            s(&pairs),
            "--sequences",
            s(&dict),
            "--negatives",
            "aggressive",
            "--negative-ratio=-1",
            "--out",
            &out,
        ]),
        &["`--negative-ratio` must be a positive number, not -1"],
    );
    // An output path that cannot be a directory, found before anything is read.
    fails_with(
        cmd(&["data", "split", "--input", &t.p("lower.fasta"), "--out", &t.p("afile")]),
        &["afile", "a file of that name exists, a directory is needed"],
    );
    fails_with(
        cmd(&["data", "split", "--input", &t.p("lower.fasta"), "--out", &t.p("afile/sub")]),
        &["afile/sub", "cannot create the directory"],
    );
    // Pair files: empty, and a NaN label, are located errors.
    std::fs::write(t.path("empty_pairs.tsv"), "\n").unwrap();
    fails_with(
        cmd(&["data", "split", "--pairs", &t.p("empty_pairs.tsv"), "--sequences", s(&dict), "--out", &out]),
        &["empty_pairs.tsv", "no pairs in this file"],
    );
    std::fs::write(t.path("nan_pairs.tsv"), "P32450\tP00044\t1\nP43563\tP29340\tnan\n").unwrap();
    fails_with(
        cmd(&["data", "split", "--pairs", &t.p("nan_pairs.tsv"), "--sequences", s(&dict), "--out", &out]),
        &["nan_pairs.tsv:2", "label `nan` is not 0 or 1"],
    );
}

#[test]
fn data_split_on_a_full_disk_leaves_no_partial_file() {
    let t = Scratch::new();
    let out = t.path("split");
    let input = repo("datasets/samples/sample.fasta");
    let stderr = fails_with(
        with_full_disk(cmd(&["data", "split", "--input", s(&input), "--out", s(&out)])),
        &["train.fasta", "File too large"],
    );
    assert!(!stderr.contains("partial"), "{stderr}");
    // train.fasta (≈ 10 kB) could not be written whole, so it is not there at all.
    assert_eq!(files_in(&out), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// tokenizer train / encode

#[test]
fn tokenizer_train_bad_inputs() {
    let t = Scratch::new();
    let sample = repo("datasets/samples/sample.fasta");
    let out = t.p("tok");
    fails_with(cmd(&["tokenizer", "train", "--input", &t.p("missing.fasta"), "--out", &out]), &["missing.fasta"]);
    fails_with(cmd(&["tokenizer", "train", "--input", &t.p("empty.fasta"), "--out", &out]), &["empty.fasta", "empty"]);
    fails_with(
        cmd(&["tokenizer", "train", "--input", s(&sample), "--out", &out, "--vocab-size", "0"]),
        &["`--vocab-size` must be at least 4, not 0"],
    );
    fails_with(
        cmd(&["tokenizer", "train", "--input", s(&sample), "--out", &t.p("afile")]),
        &["afile", "a directory is needed"],
    );
}

#[test]
fn tokenizer_encode_bad_inputs_and_outputs() {
    let t = Scratch::new();
    let (pb, pr) = t.models();
    let input = t.p("lower.fasta");
    let enc = |extra: &[&str]| {
        let mut c = cmd(&["tokenizer", "encode", "--input", &input]);
        c.args(extra);
        c
    };
    fails_with(cmd(&["tokenizer", "encode", "--input", &t.p("missing.fasta"), "--tokenizer", &pr]), &["missing.fasta"]);
    fails_with(cmd(&["tokenizer", "encode", "--input", &t.p("empty.fasta"), "--tokenizer", &pr]), &["empty file"]);
    fails_with(
        enc(&["--tokenizer", &pb]),
        &["pb", "a ProteinBERT model directory, where a PRoBERTa tokenizer or model directory is needed"],
    );
    fails_with(enc(&["--tokenizer", &t.p("nowhere")]), &["nowhere", "no such file or directory"]);
    fails_with(
        enc(&["--tokenizer", &pr, "--out", &t.p("nodir/x.txt")]),
        &["nodir/x.txt", "directory", "nodir does not exist"],
    );
    fails_with(enc(&["--tokenizer", &pr, "--out", &t.p("pb")]), &["it is a directory, a file name is needed"]);
    // A full disk: /dev/full is written in place (never renamed over) and the error names it.
    fails_with(enc(&["--tokenizer", &pr, "--out", "/dev/full"]), &["/dev/full", "No space left on device"]);
    let meta = std::fs::metadata("/dev/full").unwrap();
    assert!(!meta.is_file(), "/dev/full must still be a device");
    // Lowercase residues are read as upper case and counted.
    let out = run(enc(&["--model", "proteinbert", "--pieces"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 sequences had lowercase letters, read as upper case"), "{stderr}");
    assert!(stdout.starts_with("P1\t<START> M K T A Y I A K Q R <END>\n"), "{stdout}");
    assert!(!stderr.contains("unknown token"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// import / init

#[test]
fn import_missing_input_wrong_model_and_bad_output() {
    let t = Scratch::new();
    let (pb, _) = t.models();
    let keras = repo("tests/fixtures/proteinbert/weights_numpy1.pkl");
    let fairseq = repo("tests/fixtures/proberta/fairseq_zip_fp32.pt");
    let dict = repo("tests/fixtures/proberta/dict.txt");
    let out = t.p("imported");
    fails_with(
        cmd(&["import", "proteinbert-keras", &t.p("missing.pkl"), "--out", &out]),
        &["missing.pkl", "no such file"],
    );
    fails_with(cmd(&["import", "fairseq", &t.p("missing.pt"), "--out", &out]), &["missing.pt", "no such file"]);
    fails_with(cmd(&["import", "hf-roberta", &t.p("missing_dir"), "--out", &out]), &["missing_dir", "no such file"]);
    // The other model's file.
    fails_with(
        cmd(&["import", "proteinbert-keras", s(&fairseq), "--out", &out]),
        &["fairseq_zip_fp32.pt", "cannot read it as a ProteinBERT weights pickle"],
    );
    fails_with(
        cmd(&["import", "fairseq", s(&keras), "--dict", s(&dict), "--out", &out]),
        &["weights_numpy1.pkl", "not a torch checkpoint"],
    );
    fails_with(
        cmd(&["import", "hf-roberta", &pb, "--out", &out]),
        &["pb", "a protein-lm proteinbert model directory already, not a Hugging Face RoBERTa save"],
    );
    fails_with(
        cmd(&["import", "proteinbert-keras", s(&keras), "--out", &t.p("afile")]),
        &["afile", "a directory is needed"],
    );
    assert!(!t.path("imported").exists() || files_in(&t.path("imported")).is_empty());
}

#[test]
fn init_bad_arguments() {
    let t = Scratch::new();
    let (pb, _) = t.models();
    fails_with(
        cmd(&["init", "--model", "proteinbert", "--size", "tiny", "--annotations", "0", "--out", &t.p("m")]),
        &["`--annotations` must be at least 1, not 0"],
    );
    fails_with(
        cmd(&["init", "--model", "proberta", "--size", "tiny", "--dict", &t.p("missing.txt"), "--out", &t.p("m")]),
        &["missing.txt", "no such file or directory"],
    );
    fails_with(
        cmd(&["init", "--model", "proberta", "--size", "tiny", "--dict", &pb, "--out", &t.p("m")]),
        &["a ProteinBERT model directory, where a PRoBERTa tokenizer or model directory is needed"],
    );
    fails_with(
        cmd(&["init", "--model", "proteinbert", "--size", "tiny", "--out", &t.p("afile")]),
        &["afile", "a directory is needed"],
    );
}

// ---------------------------------------------------------------------------------------------
// embed

#[test]
fn embed_bad_inputs_and_outputs() {
    let t = Scratch::new();
    let (pb, pr) = t.models();
    let fasta = t.p("lower.fasta");
    let emb = |model: &str, fasta: &str, out: &str, extra: &[&str]| {
        let mut c = cmd(&["embed", "--device", "cpu", "--model", model, "--fasta", fasta, "--out", out]);
        c.args(extra);
        c
    };
    let out = t.p("e.npy");
    fails_with(emb(&t.p("missing_model"), &fasta, &out, &[]), &["missing_model/config.json", "No such file"]);
    fails_with(emb(&pb, &t.p("missing.fasta"), &out, &[]), &["missing.fasta", "No such file"]);
    fails_with(emb(&pb, &t.p("empty.fasta"), &out, &[]), &["empty.fasta", "empty file: no proteins"]);
    fails_with(
        emb(&pb, &fasta, &out, &["--pooling", "proberta-clustering"]),
        &["`proberta-clustering` pooling is for PRoBERTa models, not ProteinBERT"],
    );
    fails_with(emb(&pr, &fasta, &out, &["--pooling", "global"]), &["PRoBERTa has none"]);
    fails_with(emb(&pb, &fasta, &out, &["--batch-tokens", "0"]), &["`--batch-tokens` must be at least 1, not 0"]);
    // Unwritable outputs are found before the model is even opened (a missing model would be the
    // first error otherwise).
    let stderr = fails_with(
        emb(&t.p("missing_model"), &fasta, &t.p("nodir/e.npy"), &[]),
        &["nodir/e.npy", "directory", "nodir does not exist"],
    );
    assert!(!stderr.contains("partial"), "{stderr}");
    std::fs::create_dir(t.path("adir.npy")).unwrap();
    fails_with(emb(&pb, &fasta, &t.p("adir.npy"), &[]), &["adir.npy", "it is a directory"]);
    fails_with(emb(&pb, &fasta, &t.p("afile/e.npy"), &[]), &["afile/e.npy", "afile is not a directory"]);
}

#[test]
fn embed_on_a_full_disk_names_the_output_and_leaves_nothing() {
    let t = Scratch::new();
    let (pb, _) = t.models();
    std::fs::create_dir(t.path("out")).unwrap();
    let out = t.path("out/e.npy");
    let c = cmd(&["embed", "--device", "cpu", "--model", &pb, "--fasta", &t.p("lower.fasta"), "--out", s(&out)]);
    fails_with(with_full_disk(c), &["out/e.npy: File too large"]);
    assert_eq!(files_in(&t.path("out")), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// pretrain

#[test]
fn pretrain_config_errors_name_file_line_key_and_nearest() {
    let t = Scratch::new();
    let data = repo("datasets/samples/swissprot_sample300.tsv");
    let pt = |model: &str, config: &str| {
        cmd(&["pretrain", "--model", model, "--config", config, "--data", s(&data), "--out", &t.p("run"), "--quiet"])
    };
    fails_with(pt("proberta", &t.p("missing.json")), &["missing.json", "No such file"]);
    let proberta = s(&repo("configs/proberta-pretrain-tiny.json")).to_string();
    fails_with(pt("proteinbert", &proberta), &["the config is for proberta, not --model proteinbert"]);
    // A misspelt required key: the spelling found, its line, the key meant.
    let c = t.config("proberta-pretrain-tiny.json", "req.json", |v| {
        let n = v["train"].as_object_mut().unwrap().remove("optimizer").unwrap();
        v["train"]["optimiser"] = n;
    });
    fails_with(
        pt("proberta", &c),
        &["req.json:", "required key `optimizer` is missing", "`optimiser` here: did you mean `optimizer`?"],
    );
    // A misspelt key with a default is an unknown key, and its default is not silently used.
    let c = t.config("proberta-pretrain-tiny.json", "default.json", |v| {
        let n = v["train"].as_object_mut().unwrap().remove("max_updates").unwrap();
        v["train"]["max_update"] = n;
    });
    fails_with(pt("proberta", &c), &["default.json:", "unknown key `train.max_update`", "did you mean `max_updates`?"]);
    // A misspelt optional key would otherwise be ignored silently.
    let c = t.config("proberta-pretrain-tiny.json", "opt.json", |v| {
        v["train"]["clip_nrom"] = 1.0.into();
    });
    fails_with(
        pt("proberta", &c),
        &["opt.json:", "unknown key `train.clip_nrom` in the pretraining config; did you mean `clip_norm`?"],
    );
    let c = t.config("proberta-pretrain-tiny.json", "model.json", |v| {
        v["model"]["model"]["hiden_size"] = 8.into();
    });
    fails_with(pt("proberta", &c), &["model.json:", "`model.model.hiden_size`", "did you mean `hidden_size`?"]);
    let c = t.config("proteinbert-pretrain-tiny.json", "pbmodel.json", |v| {
        v["model"]["model"]["d_globl"] = 8.into();
    });
    fails_with(
        pt("proteinbert", &c),
        &["pbmodel.json:", "unknown key `model.model.d_globl`", "did you mean `d_global`?"],
    );
    // Out-of-range values name the key.
    let c = t.config("proberta-pretrain-tiny.json", "neg.json", |v| v["mlm"]["batch_size"] = (-4).into());
    fails_with(pt("proberta", &c), &["neg.json:", "key `batch_size`", "integer `-4`"]);
    let c = t.config("proberta-pretrain-tiny.json", "zero.json", |v| v["mlm"]["batch_size"] = 0.into());
    let at = format!("zero.json:{}: pretraining config", line_of(&c, "\"batch_size\": 0"));
    fails_with(pt("proberta", &c), &[&at, "`mlm.batch_size` must be at least 1, not 0"]);
    let c = t.config("proteinbert-pretrain-tiny.json", "prob.json", |v| v["denoising"]["token_noise"] = 1.5.into());
    fails_with(pt("proteinbert", &c), &["prob.json", "`denoising.token_noise` must be in [0, 1], not 1.5"]);
    let c = t.config("proberta-pretrain-tiny.json", "lr.json", |v| v["train"]["lr"]["peak_lr"] = (-0.1).into());
    fails_with(pt("proberta", &c), &["lr.json", "`train.lr.peak_lr` must be zero or more, not -0.1"]);
    // No run directory was created for a config that does not load.
    assert!(!t.path("run").exists());
}

#[test]
fn pretrain_wrong_tokenizer_missing_data_and_bad_output() {
    let t = Scratch::new();
    let (pb, _) = t.models();
    let config = s(&repo("configs/proberta-pretrain-tiny.json")).to_string();
    let data = s(&repo("datasets/samples/swissprot_sample300.tsv")).to_string();
    let pt = |tokenizer: &str, data: &str, out: &str| {
        cmd(&[
            "pretrain",
            "--model",
            "proberta",
            "--config",
            &config,
            "--tokenizer",
            tokenizer,
            "--data",
            data,
            "--out",
            out,
            "--quiet",
        ])
    };
    let dict = s(&repo("tests/fixtures/proberta/dict.txt")).to_string();
    fails_with(
        pt(&pb, &data, &t.p("r1")),
        &["a ProteinBERT model directory, where a PRoBERTa tokenizer or model directory is needed"],
    );
    fails_with(pt(&dict, &t.p("missing.tsv"), &t.p("r2")), &["missing.tsv", "No such file"]);
    fails_with(pt(&dict, &data, &t.p("afile")), &["afile", "a directory is needed"]);
}

// ---------------------------------------------------------------------------------------------
// finetune

/// A data root with tiny benchmark files for the resolver.
fn benchmark_root(t: &Scratch, files: &[(&str, &str)]) -> PathBuf {
    let root = t.path("data");
    std::fs::create_dir_all(root.join("proteinbert-benchmarks")).unwrap();
    for (name, text) in files {
        std::fs::write(root.join("proteinbert-benchmarks").join(name), text).unwrap();
    }
    root
}

#[test]
fn finetune_config_errors_name_file_key_and_nearest() {
    let t = Scratch::new();
    let (_, pr) = t.models();
    let family = s(&repo("datasets/samples/human_pfam_single_sample.tsv")).to_string();
    let ft = |config: &str| {
        cmd(&[
            "finetune",
            "--model",
            "proberta",
            "--task",
            "family",
            "--data",
            &family,
            "--from",
            &pr,
            "--config",
            config,
            "--out",
            &t.p("run"),
            "--quiet",
        ])
    };
    fails_with(ft(&t.p("missing.json")), &["missing.json", "No such file"]);
    // A key of the flattened data limits, and one of a nested section.
    let c = t.config("proberta-finetune-tiny.json", "flat.json", |v| {
        v["max_trian"] = 10.into();
    });
    fails_with(ft(&c), &["flat.json:", "unknown key `max_trian`", "did you mean `max_train`?"]);
    let c = t.config("proberta-finetune-tiny.json", "nested.json", |v| {
        let r = v["ppi"].as_object_mut().unwrap().remove("negative_ratio").unwrap();
        v["ppi"]["negative_raito"] = r;
    });
    fails_with(ft(&c), &["nested.json:", "required key `negative_ratio` is missing", "did you mean `negative_ratio`?"]);
    let c = t.config("proberta-finetune-tiny.json", "frac.json", |v| v["valid_fraction"] = 1.2.into());
    fails_with(ft(&c), &["frac.json", "`valid_fraction` must be in [0, 1), not 1.2"]);
    let c = t.config("proberta-finetune-tiny.json", "ppifrac.json", |v| v["ppi"]["fractions"] = vec![0.5, 0.2].into());
    fails_with(ft(&c), &["ppifrac.json", "`ppi.fractions` must be three fractions"]);
    let c = t.config("proberta-finetune-tiny.json", "ratio.json", |v| v["ppi"]["negative_ratio"] = 0.into());
    fails_with(ft(&c), &["ratio.json", "`ppi.negative_ratio` must be a positive number, not 0"]);

    let root = benchmark_root(&t, &[]);
    let pb_ft = |config: &str| {
        let mut c = cmd(&[
            "finetune",
            "--model",
            "proteinbert",
            "--task",
            "signalP_binary",
            "--config",
            config,
            "--out",
            &t.p("run2"),
            "--quiet",
        ]);
        c.env("PROTEIN_LM_DATA", &root);
        c
    };
    let c = t.config("proteinbert-finetune-tiny.json", "stage.json", |v| {
        v["stages"][1]["train"]["validate_every_epoch"] = 1.into();
    });
    fails_with(
        pb_ft(&c),
        &["stage.json:", "unknown key `stages[1].train.validate_every_epoch`", "did you mean `validate_every_epochs`?"],
    );
    let c = t.config("proteinbert-finetune-tiny.json", "batch.json", |v| v["stages"][1]["batch_size"] = 0.into());
    // Located at the failing key, stages[1], not at the first `batch_size` of the file (stages[0]).
    let at = format!("batch.json:{}: fine-tuning config", line_of(&c, "\"batch_size\": 0"));
    fails_with(pb_ft(&c), &[&at, "`stages[1].batch_size` must be at least 1, not 0"]);
    assert!(!t.path("run").exists() && !t.path("run2").exists());
}

#[test]
fn finetune_other_models_directory_missing_and_empty_data() {
    let t = Scratch::new();
    let (pb, pr) = t.models();
    let root = benchmark_root(
        &t,
        &[
            (
                "signalP_binary.train.csv",
                &std::fs::read_to_string(repo("datasets/samples/signalP_sample.train.csv")).unwrap(),
            ),
            (
                "signalP_binary.test.csv",
                &std::fs::read_to_string(repo("datasets/samples/signalP_sample.test.csv")).unwrap(),
            ),
        ],
    );
    let pb_config = s(&repo("configs/proteinbert-finetune-tiny.json")).to_string();
    let pr_config = s(&repo("configs/proberta-finetune-tiny.json")).to_string();
    let mut c = cmd(&[
        "finetune",
        "--model",
        "proteinbert",
        "--task",
        "signalP_binary",
        "--config",
        &pb_config,
        "--from",
        &pr,
        "--out",
        &t.p("r1"),
        "--quiet",
    ]);
    c.env("PROTEIN_LM_DATA", &root);
    fails_with(c, &["pr is not a ProteinBERT model directory"]);
    let family = |data: &str, from: &str| {
        cmd(&[
            "finetune",
            "--model",
            "proberta",
            "--task",
            "family",
            "--data",
            data,
            "--from",
            from,
            "--config",
            &pr_config,
            "--out",
            &t.p("r2"),
            "--quiet",
        ])
    };
    let sample = s(&repo("datasets/samples/human_pfam_single_sample.tsv")).to_string();
    fails_with(family(&sample, &pb), &["pb", "a ProteinBERT model directory"]);
    fails_with(family(&t.p("missing.tsv"), &pr), &["missing.tsv", "No such file"]);
    std::fs::write(t.path("header_only.tsv"), "accession\tpfam_id\tsequence\n").unwrap();
    fails_with(family(&t.p("header_only.tsv"), &pr), &["header_only.tsv", "no records after the header"]);
}

/// ProteinBERT on pairs: the pair file, the model, the config (its `ppi` section, the pair
/// combination) and the labels, each named.
#[test]
fn finetune_proteinbert_ppi_bad_input_is_named() {
    let t = Scratch::new();
    let (_, pr) = t.models();
    let pairs = s(&repo("datasets/samples/pipr_yeast_sample/protein.actions.tsv")).to_string();
    let dict = s(&repo("datasets/samples/pipr_yeast_sample/protein.dictionary.tsv")).to_string();
    let own =
        t.config("proteinbert-finetune-ppi-tiny.json", "own.json", |v| v["ppi"]["negatives"] = serde_json::Value::Null);
    let ppi = |data: &str, config: &str, extra: &[&str]| {
        let mut c = cmd(&[
            "finetune",
            "--model",
            "proteinbert",
            "--task",
            "ppi",
            "--data",
            data,
            "--sequences",
            &dict,
            "--config",
            config,
            "--out",
            &t.p("run"),
            "--quiet",
        ]);
        c.args(extra);
        c
    };
    fails_with(ppi(&t.p("missing.tsv"), &own, &[]), &["missing.tsv", "No such file"]);
    fails_with(ppi(&pairs, &own, &["--from", &pr]), &["pr is not a ProteinBERT model directory"]);
    let benchmark_config = s(&repo("configs/proteinbert-finetune-tiny.json")).to_string();
    fails_with(
        ppi(&pairs, &benchmark_config, &[]),
        &["proteinbert-finetune-tiny.json:", "required key `ppi` is missing"],
    );
    let c = t.config("proteinbert-finetune-ppi-tiny.json", "typo.json", |v| {
        let r = v["ppi"].as_object_mut().unwrap().remove("train_fraction").unwrap();
        v["ppi"]["train_fracton"] = r;
    });
    fails_with(
        ppi(&pairs, &c, &[]),
        &["typo.json:", "required key `train_fraction` is missing", "did you mean `train_fraction`?"],
    );
    let c = t.config("proteinbert-finetune-ppi-tiny.json", "pair.json", |v| v["pair"] = "concatenate".into());
    fails_with(
        ppi(&pairs, &c, &[]),
        &["pair.json:", "unknown variant `concatenate`, expected `concat` or `symmetric`"],
    );
    let c = t.config("proteinbert-finetune-ppi-tiny.json", "zero.json", |v| v["ppi"]["train_fraction"] = 0.into());
    fails_with(ppi(&pairs, &c, &[]), &["zero.json", "`ppi.train_fraction` must be in (0, 1], not 0"]);
    // The shipped config samples negatives; the yeast file has its own.
    let shipped = s(&repo("configs/proteinbert-finetune-ppi-tiny.json")).to_string();
    fails_with(ppi(&pairs, &shipped, &[]), &["protein.actions.tsv", "already has 150 negative pairs", "ppi.negatives"]);
    std::fs::write(t.path("nan_pairs.tsv"), "P32450\tP00044\t1\nP43563\tP29340\tnan\n").unwrap();
    fails_with(ppi(&t.p("nan_pairs.tsv"), &own, &[]), &["nan_pairs.tsv:2", "label `nan` is not 0 or 1"]);
}

#[test]
fn finetune_non_finite_and_empty_benchmark_labels_are_located() {
    let t = Scratch::new();
    let config = s(&repo("configs/proteinbert-finetune-tiny.json")).to_string();
    let good = "seq,label\nMKTAYIAKQR,1.5\nMSSSPPQ,0.5\n";
    for (bad, expected) in [
        (
            "seq,label\nMKTAYIAKQR,1.5\nMSSSPPQ,NaN\n",
            vec!["fluorescence.train.csv:3", "numeric label `NaN` is not a finite number"],
        ),
        ("seq,label\nMKTAYIAKQR,inf\n", vec!["fluorescence.train.csv:2", "numeric label `inf` is not a finite number"]),
        ("seq,label\n", vec!["fluorescence.train.csv", "no rows after the header"]),
    ] {
        let root = benchmark_root(
            &t,
            &[("fluorescence.train.csv", bad), ("fluorescence.valid.csv", good), ("fluorescence.test.csv", good)],
        );
        let mut c = cmd(&[
            "finetune",
            "--model",
            "proteinbert",
            "--task",
            "fluorescence",
            "--config",
            &config,
            "--out",
            &t.p("run"),
            "--quiet",
        ]);
        c.env("PROTEIN_LM_DATA", &root);
        fails_with(c, &expected);
    }
}

/// A directory that takes no new files: mode 0555, or, for root (whom modes do not stop), sysfs.
fn read_only_dir(t: &Scratch) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = t.path("readonly");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(dir.join("probe"), "x").is_ok() {
        return PathBuf::from("/sys");
    }
    dir
}

#[test]
fn read_only_output_directories_are_refused_before_work() {
    let t = Scratch::new();
    let (pb, _) = t.models();
    let ro = read_only_dir(&t);
    let npy = ro.join("e.npy");
    fails_with(
        cmd(&["embed", "--device", "cpu", "--model", &pb, "--fasta", &t.p("lower.fasta"), "--out", s(&npy)]),
        &[s(&npy), "cannot write the output here: cannot create files in"],
    );
    let split = ro.join("split");
    fails_with(
        cmd(&["data", "split", "--input", &t.p("lower.fasta"), "--out", s(&split)]),
        &[s(&split), "cannot write the output here: cannot create the directory"],
    );
    assert!(!npy.exists() && !split.exists());
}

#[test]
fn a_misspelt_key_in_a_model_directory_config_is_named_with_the_nearest() {
    let t = Scratch::new();
    let (pb, _) = t.models();
    let config = t.path("pb/config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\"has_lm_head\""), "{text}");
    std::fs::write(&config, text.replace("\"has_lm_head\"", "\"has_lm_haed\"")).unwrap();
    let stderr = fails_with(
        cmd(&["embed", "--device", "cpu", "--model", &pb, "--fasta", &t.p("lower.fasta"), "--out", &t.p("e.npy")]),
        &["pb/config.json:", "unknown key `has_lm_haed`", "did you mean `has_lm_head`?"],
    );
    assert!(!t.path("e.npy").exists(), "{stderr}");
}
