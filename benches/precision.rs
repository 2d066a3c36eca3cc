//! The precision table of issue 15: how far our float32 forward is from float64, beside the
//! reference stacks' own float32 distance on the same weights and inputs. One command, from the
//! repository root, runs both peers (when their venvs exist) and prints the table:
//!
//!     cargo bench --bench precision
//!
//! It first runs, in their venvs, `benches/peers/proteinbert_precision.py` (Keras on TF 2.15 in
//! float32 and the spec's numpy float64 transcription, released-size ProteinBERT with random
//! weights, 2 proteins at 512, 1,024, 2,048 and 8,192) and `benches/peers/proberta_precision.py`
//! (PyTorch `RobertaModel`, paper size, random weights, 8 × 512, float32 and float64), which write
//! the weights, inputs and outputs under `target/precision/`; then it loads those weights through
//! the crate's public importers (`proteinbert::import::import_keras_pickle`,
//! `proberta::import::import_hugging_face`) into a model directory, runs our forward in f32 and in
//! f64 (the same f32 weights, upcast exactly) and writes the markdown table to
//! `target/precision.md`. Options (after `--`): `--reuse` keeps the peers' outputs of an earlier
//! run, `--no-peers` runs ours only, `--lengths 512,1024` picks the ProteinBERT lengths.
//! Without a venv (`bash tests/fixtures/proteinbert/setup_venv.sh`,
//! `bash tests/fixtures/proberta/setup_venv.sh`) the peer columns say "not run" and our columns
//! come from a seeded random model (`init_random`) on random inputs.
//!
//! Columns. ProteinBERT: max |f32 − f64| over the token probabilities `(B, L, 26)` and the
//! annotation probabilities `(B, 8,943)`; "ours" is our f32 forward against our own f64 forward
//! (candle's f64 ops); "Keras" is Keras' float32 against the numpy float64 transcription
//! (`numpy_forward` of tests/fixtures/proteinbert/make_fixtures.py); "f64 check" is our f64
//! against numpy's f64 (two independent float64 forwards: they should agree to ~1e-12, which shows
//! the float64 reference itself is right). PRoBERTa: `Pooling::SumAll` of the last hidden state
//! (every position summed, the reference fork's non-CLS pooling), max |Δ| and |Δ| / max|ref|.
//!
//! Measured on the 2-core machine (Keras / PyTorch columns are the same in both runs; before =
//! b8cb6d3, float32 sums over positions; after = 4daf48b, f64-accumulated sums):
//!
//! | ProteinBERT, max abs Δ | 512 | 1,024 | 2,048 | 8,192 |
//! |---|---:|---:|---:|---:|
//! | tokens, ours before | 4.05e-6 | 1.07e-5 | 2.69e-5 | 1.43e-4 |
//! | tokens, ours after | 1.95e-6 | 2.15e-6 | 2.46e-6 | 2.48e-6 |
//! | tokens, Keras | 3.87e-6 | 4.78e-6 | 1.25e-5 | 9.33e-6 |
//! | annotations, ours before | 2.70e-6 | 5.05e-6 | 1.95e-5 | 8.57e-5 |
//! | annotations, ours after | 1.05e-6 | 1.26e-6 | 1.06e-6 | 1.15e-6 |
//! | annotations, Keras | 1.88e-6 | 2.71e-6 | 6.32e-6 | 5.35e-6 |
//!
//! PRoBERTa SumAll 8 × 512: ours before 6.89e-4 (relative 6.0e-7), after 6.81e-5 (6.0e-8),
//! PyTorch 1.28e-4 (1.1e-7). Our f64 agrees with numpy's float64 to ≤ 1.4e-13 and with PyTorch's
//! to 1.6e-12, so the float64 reference itself is sound.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use protein_lm::arrays::read_npy;
use protein_lm::models::directory::{init_random, ModelConfig};
use protein_lm::models::heads::{Features, Pooling};
use protein_lm::models::{proberta, proteinbert};
use protein_lm::Rng;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const N_ANNOTATIONS: usize = 8943;
const BATCH: usize = 2;
const ANNOTATION_RATE: f64 = 0.002;
const SEED: u64 = 20240515;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    assert_eq!(a.dims(), b.dims(), "compared tensors differ in shape");
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

fn max_abs(a: &Tensor) -> f64 {
    a.to_dtype(DType::F64).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("?")
}

fn sci(x: f64) -> String {
    format!("{x:.2e}")
}

struct Args {
    reuse: bool,
    peers: bool,
    lengths: Vec<usize>,
}

fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lengths = args
        .iter()
        .position(|a| a == "--lengths")
        .map(|i| args[i + 1].split(',').map(|x| x.parse().expect("--lengths 512,1024,…")).collect())
        .unwrap_or_else(|| vec![512, 1024, 2048, 8192]);
    // `cargo bench` adds `--bench`; anything unknown is ignored.
    Args { reuse: args.iter().any(|a| a == "--reuse"), peers: !args.iter().any(|a| a == "--no-peers"), lengths }
}

/// The peer's outputs under `data`: made now by `script` in `venv`, kept from an earlier run
/// (`--reuse`), or the reason there are none (`--no-peers`, or why the script did not run).
fn peer_outputs(
    args: &Args,
    data: &Path,
    venv: &str,
    script: &str,
    script_args: &[String],
    setup: &str,
) -> Result<(), String> {
    if !args.peers {
        Err("--no-peers".to_string())
    } else if args.reuse && data.join("meta.json").exists() {
        Ok(())
    } else {
        run_peer(venv, script, script_args, setup)
    }
}

/// Runs one peer script in its venv. `Err` says why the peer's columns are empty.
fn run_peer(venv: &str, script: &str, extra: &[String], setup: &str) -> Result<(), String> {
    let python = Path::new(ROOT).join(venv).join("bin/python");
    if !python.exists() {
        return Err(format!("no venv at {venv}; `bash {setup}` makes it"));
    }
    eprintln!("running {script} …");
    let t = Instant::now();
    let status = Command::new(&python)
        .arg(Path::new(ROOT).join(script))
        .args(extra)
        .current_dir(ROOT)
        .status()
        .map_err(|e| format!("{script} did not start: {e}"))?;
    eprintln!("{script}: {status} after {:.0} s", t.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{script} failed ({status})"))
    }
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Two proteins of random residues, the first filling the length, the second 1/8 shorter (PAD in
/// the input too), and random 0/1 GO inputs at a low rate: the Python side's scheme.
fn random_proteinbert_inputs(l: usize) -> (Tensor, Tensor) {
    use protein_lm::tokenize::residue::{END, PAD, START};
    let standard: Vec<u32> = (0..22).filter(|&i| i != 17 && i != 20).collect(); // no U, X
    let mut rng = Rng::new(SEED ^ l as u64);
    let mut ids = Vec::with_capacity(BATCH * l);
    for n in [l - 2, l - 2 - l / 8].into_iter().take(BATCH) {
        ids.push(START);
        ids.extend((0..n).map(|_| standard[rng.index(standard.len())]));
        ids.push(END);
        ids.extend(std::iter::repeat_n(PAD, l - n - 2));
    }
    let ann: Vec<f32> =
        (0..BATCH * N_ANNOTATIONS).map(|_| if rng.bernoulli(ANNOTATION_RATE) { 1.0 } else { 0.0 }).collect();
    (
        Tensor::from_vec(ids, (BATCH, l), &Device::Cpu).unwrap(),
        Tensor::from_vec(ann, (BATCH, N_ANNOTATIONS), &Device::Cpu).unwrap(),
    )
}

struct ProteinBertRow {
    l: usize,
    ours_tokens: f64,
    ours_annotations: f64,
    /// Keras f32 vs numpy f64, our f64 vs numpy f64 (tokens, annotations), when Keras ran at `l`.
    keras: Option<((f64, f64), (f64, f64))>,
    seconds: (f64, f64),
}

fn proteinbert_rows(args: &Args, work: &Path) -> (Vec<ProteinBertRow>, String) {
    let data = Path::new(ROOT).join("target/precision/proteinbert");
    let lengths = args.lengths.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(",");
    let peer = peer_outputs(
        args,
        &data,
        "tests/fixtures/proteinbert/.venv",
        "benches/peers/proteinbert_precision.py",
        &["--lengths".into(), lengths],
        "tests/fixtures/proteinbert/setup_venv.sh",
    );
    let meta = peer.as_ref().ok().and_then(|_| read_json(&data.join("meta.json")));
    let (dir, source, why_not) = match (&peer, &meta) {
        (Ok(()), Some(meta)) => {
            let (dir, report) = proteinbert::import::import_keras_pickle(
                &data.join("weights.pkl"),
                &work.join("proteinbert"),
                proteinbert::Config::default().wide_conv_dilation,
            )
            .expect("import the Keras weights");
            assert_eq!(report.config, proteinbert::Config::default(), "the peer's model is not the released size");
            let source = format!(
                "the Keras model's random weights (seed {}), imported from the released pickle format; protein-bert {}, \
                 TensorFlow {}, numpy {}",
                meta["seed"],
                text(&meta["protein_bert"]),
                text(&meta["tensorflow"]),
                text(&meta["numpy"])
            );
            (dir, source, String::new())
        }
        (Err(why), _) => {
            let dir = init_random(
                work.join("proteinbert"),
                ModelConfig::Proteinbert(proteinbert::Config::default()),
                SEED,
                None,
            )
            .unwrap();
            (dir, format!("a seeded random model (init_random, seed {SEED})"), why.clone())
        }
        (Ok(()), None) => panic!("{} has no readable meta.json", data.display()),
    };
    let model32 = dir.proteinbert(DType::F32, &Device::Cpu).unwrap();
    let model64 = dir.proteinbert(DType::F64, &Device::Cpu).unwrap();
    let ran: Vec<usize> = meta
        .as_ref()
        .map(|m| m["lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for &l in &args.lengths {
        let npy = |name: &str| read_npy(data.join(format!("L{l}.{name}.npy"))).unwrap();
        let keras_here = ran.contains(&l);
        let (tokens, annotations) = if keras_here {
            (npy("tokens").to_dtype(DType::U32).unwrap(), npy("annotations"))
        } else {
            random_proteinbert_inputs(l)
        };
        let run = |model: &proteinbert::ProteinBert| {
            let t = Instant::now();
            let out = model.forward(&tokens, &annotations, proteinbert::Forward::default()).unwrap();
            let probs = (out.token_probabilities().unwrap(), out.annotation_probabilities().unwrap());
            (probs, t.elapsed().as_secs_f64())
        };
        let ((tok32, ann32), s32) = run(&model32);
        let ((tok64, ann64), s64) = run(&model64);
        let keras = keras_here.then(|| {
            let (kt, ka, nt, na) =
                (npy("keras_tokens"), npy("keras_annotations"), npy("numpy_tokens"), npy("numpy_annotations"));
            ((max_abs_diff(&kt, &nt), max_abs_diff(&ka, &na)), (max_abs_diff(&tok64, &nt), max_abs_diff(&ann64, &na)))
        });
        let row = ProteinBertRow {
            l,
            ours_tokens: max_abs_diff(&tok32, &tok64),
            ours_annotations: max_abs_diff(&ann32, &ann64),
            keras,
            seconds: (s32, s64),
        };
        eprintln!(
            "ProteinBERT L = {l}: ours {} / {}, f32 forward {:.1} s, f64 forward {:.1} s",
            sci(row.ours_tokens),
            sci(row.ours_annotations),
            row.seconds.0,
            row.seconds.1
        );
        rows.push(row);
    }
    let mut not_run = BTreeMap::new();
    if let Some(meta) = &meta {
        for (l, why) in meta["skipped"].as_object().unwrap() {
            not_run.insert(l.clone(), why.as_str().unwrap_or_default().to_string());
        }
    }
    let mut notes = format!("Weights: {source}.");
    if !why_not.is_empty() {
        notes += &format!(" Keras: not run ({why_not}).");
    }
    for (l, why) in not_run {
        notes += &format!(" Keras at {l}: not run ({why}).");
    }
    (rows, notes)
}

struct ProbertaResult {
    ours: (f64, f64, f64),
    torch: Option<(f64, f64, f64)>,
    /// Our f64 vs PyTorch's float64 (sum, last hidden state).
    check: Option<(f64, f64)>,
    notes: String,
}

fn proberta_result(args: &Args, work: &Path) -> ProbertaResult {
    let data = Path::new(ROOT).join("target/precision/proberta");
    let peer = peer_outputs(
        args,
        &data,
        "tests/fixtures/proberta/.venv",
        "benches/peers/proberta_precision.py",
        &[],
        "tests/fixtures/proberta/setup_venv.sh",
    );
    let meta = peer.as_ref().ok().and_then(|_| read_json(&data.join("meta.json")));
    let (dir, ids, mut notes) = match (&peer, &meta) {
        (Ok(()), Some(meta)) => {
            let (dir, _) =
                proberta::import::import_hugging_face(&data.join("hf"), &work.join("proberta"), None).unwrap();
            let ids = read_npy(data.join("ids.npy")).unwrap().to_dtype(DType::U32).unwrap();
            let notes = format!(
                "Weights: PyTorch's seeded random `RobertaModel` (paper size), imported from its `save_pretrained` \
                 safetensors; PyTorch {}, transformers {}, {} attention.",
                text(&meta["torch"]),
                text(&meta["transformers"]),
                text(&meta["attn"])
            );
            (dir, ids, notes)
        }
        (Err(why), _) => {
            let dir =
                init_random(work.join("proberta"), ModelConfig::Proberta(proberta::Config::default()), SEED, None)
                    .unwrap();
            let mut rng = Rng::new(SEED);
            let mut ids: Vec<u32> = (0..8 * 512).map(|_| 4 + rng.index(10_009 - 5) as u32).collect();
            for row in ids.chunks_mut(512) {
                (row[0], row[511]) = (0, 2);
            }
            let ids = Tensor::from_vec(ids, (8, 512), &Device::Cpu).unwrap();
            (dir, ids, format!("Weights: a seeded random model (init_random, seed {SEED}). PyTorch: not run ({why})."))
        }
        (Ok(()), None) => panic!("{} has no readable meta.json", data.display()),
    };
    let run = |dtype: DType| {
        let t = Instant::now();
        let encoder = dir.proberta_encoder(dtype, &Device::Cpu).unwrap();
        let out = encoder.forward(&ids, proberta::Forward::default(), None).unwrap();
        let last = out.last().clone();
        let features = Features {
            residues: last.clone(),
            mask: out.mask.clone(),
            protein: last.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(),
        };
        let pooled = Pooling::SumAll.pool(&features).unwrap();
        eprintln!("PRoBERTa {dtype:?} forward + SumAll: {:.1} s", t.elapsed().as_secs_f64());
        (pooled, last)
    };
    let (sum32, last32) = run(DType::F32);
    let (sum64, last64) = run(DType::F64);
    let d = max_abs_diff(&sum32, &sum64);
    let ours = (d, d / max_abs(&sum64), max_abs_diff(&last32, &last64));
    let (mut torch, mut check) = (None, None);
    if meta.is_some() {
        let npy = |name: &str| read_npy(data.join(format!("{name}.npy"))).unwrap();
        let (t32, t64) = (npy("torch_f32_sum"), npy("torch_f64_sum"));
        let d = max_abs_diff(&t32, &t64);
        let last64_torch = npy("torch_f64_last");
        torch = Some((d, d / max_abs(&t64), max_abs_diff(&npy("torch_f32_last"), &last64_torch)));
        check = Some((max_abs_diff(&sum64, &t64), max_abs_diff(&last64, &last64_torch)));
    }
    if let Some((sum, last)) = check {
        notes += &format!(
            " Our f64 vs PyTorch's float64 (two independent float64 forwards): SumAll {}, last hidden state {}.",
            sci(sum),
            sci(last)
        );
    }
    ProbertaResult { ours, torch, check, notes }
}

/// The commit the crate was built from, and whether the working tree had changes.
fn revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(ROOT)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml"])
                .is_some_and(|s| !s.is_empty());
            format!("commit {commit}{}", if dirty { " with uncommitted changes in src/" } else { "" })
        }
        None => "an unknown commit".into(),
    }
}

/// CPU model and the thread count both sides used.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpu}, {} threads (ours: rayon; peers: OMP_NUM_THREADS or 2)", rayon::current_num_threads())
}

fn main() {
    let args = parse_args();
    let target = Path::new(ROOT).join("target");
    let precision_dir = target.join("precision");
    std::fs::create_dir_all(&precision_dir).unwrap();
    let work = tempfile::tempdir_in(&precision_dir).unwrap();
    println!("rayon/candle threads: {}", rayon::current_num_threads());

    let (rows, pb_notes) = proteinbert_rows(&args, work.path());
    let pr = proberta_result(&args, work.path());

    let mut md = String::new();
    md += "### Precision: f32 against float64\n\n";
    md += "ProteinBERT at the released size (6 blocks, d_local 128, d_global 512, 4 heads, 8,943 annotations, \
           15,981,321 parameters), random weights, 2 proteins of random residues (the second 1/8 shorter, padded), \
           random GO inputs at rate 0.002, no padding mask (the reference's behaviour). Max |f32 − float64| of the \
           probabilities; \"ours\" = our f32 forward against our f64 forward on the same weights, \"Keras\" = Keras' \
           float32 against the spec's numpy float64 transcription.\n\n";
    md += "| length | ours f32 vs float64 (tokens) | Keras f32 vs float64 (tokens) | ours (annotations) | Keras (annotations) | f64 check: ours vs numpy (tokens / annotations) |\n";
    md += "|---:|---:|---:|---:|---:|---:|\n";
    for r in &rows {
        let (kt, ka, check) = match r.keras {
            Some(((kt, ka), (ct, ca))) => (sci(kt), sci(ka), format!("{} / {}", sci(ct), sci(ca))),
            None => ("not run".into(), "not run".into(), "—".into()),
        };
        md += &format!("| {} | {} | {kt} | {} | {ka} | {check} |\n", r.l, sci(r.ours_tokens), sci(r.ours_annotations));
    }
    md += &format!("\n{pb_notes}\n\n");
    md += "PRoBERTa at the paper's size (5 layers × 768, 12 heads, FFN 3,072, vocabulary 10,009), random weights, \
           8 × 512 random pieces (no padding): `Pooling::SumAll` of the last hidden state, f32 against float64 on \
           the same weights.\n\n";
    md += "| SumAll 8 × 512 | max abs Δ | relative (Δ / max abs ref) | last hidden state, max abs Δ |\n";
    md += "|---|---:|---:|---:|\n";
    let (d, rel, last) = pr.ours;
    md += &format!("| ours f32 vs our f64 | {} | {} | {} |\n", sci(d), sci(rel), sci(last));
    match pr.torch {
        Some((d, rel, last)) => {
            md += &format!("| PyTorch f32 vs PyTorch float64 | {} | {} | {} |\n", sci(d), sci(rel), sci(last))
        }
        None => md += "| PyTorch f32 vs PyTorch float64 | not run | not run | not run |\n",
    }
    let _ = pr.check;
    md += &format!("\n{}\n\nMade by `cargo bench --bench precision` at {}; {}.\n", pr.notes, revision(), machine());
    println!("\n{md}");
    let out: PathBuf = target.join("precision.md");
    std::fs::write(&out, &md).unwrap();
    eprintln!("wrote {}", out.display());
}
