//! A pretraining run killed with SIGKILL at random instants (checkpoints are written after every
//! update and each write is held open 40 ms by a fault-injection variable, so many kills land in
//! the middle of writing one) and resumed each time ends with the
//! same bits as an uninterrupted run at the same thread count: weights, optimizer moments, step and
//! RNG state.

#![cfg(unix)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};

const BIN: &str = env!("CARGO_BIN_EXE_protein-lm");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write_config(dir: &Path, model: &str) -> PathBuf {
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join(format!("configs/{model}-pretrain-tiny.json"))).unwrap(),
    )
    .unwrap();
    config["train"]["max_updates"] = serde_json::json!(24);
    config["train"]["checkpoint_every"] = serde_json::json!(1);
    config["train"]["keep_checkpoints"] = serde_json::json!(2);
    config["train"]["validate_every_updates"] = serde_json::json!(8);
    if let Some(total) = config["train"]["lr"].get_mut("total_updates") {
        *total = serde_json::json!(24);
    }
    let path = dir.join(format!("{model}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

fn command(model: &str, config: &Path, out: &Path, resume: bool) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["pretrain", "--model", model, "--quiet", "--data"])
        .arg(repo().join("datasets/samples/swissprot_sample300.tsv"))
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", "2")
        .env("PROTEIN_LM_CHECKPOINT_WRITE_DELAY_MS", "40")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if resume {
        cmd.arg("--resume");
    }
    cmd
}

fn run_to_end(model: &str, config: &Path, out: &Path, resume: bool) {
    let output = command(model, config, out, resume).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn final_checkpoint(out: &Path) -> (serde_json::Value, HashMap<String, Tensor>, HashMap<String, Tensor>) {
    let dir = out.join("checkpoints").join("step-0000000024");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    let model = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let optimizer = candle_core::safetensors::load(dir.join("optimizer.safetensors"), &Device::Cpu).unwrap();
    (state, model, optimizer)
}

fn assert_bitwise_equal(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: tensor count");
    for (name, x) in a {
        let y = &b[name];
        let xb: Vec<u32> = x.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
        let yb: Vec<u32> = y.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
        assert!(xb == yb, "{what}: tensor {name} differs after kill and resume");
    }
}

/// Kills the run after each delay in `delays_ms` (restarting with --resume in between), then lets
/// it finish; returns how many kills landed before the run could finish, and how many of them
/// left a half-written checkpoint behind.
fn kill_and_resume(model: &str, config: &Path, out: &Path, delays_ms: &[u64]) -> (usize, usize) {
    let (mut kills, mut mid_checkpoint) = (0, 0);
    for (i, &delay) in delays_ms.iter().enumerate() {
        let mut child = command(model, config, out, i > 0).spawn().unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(delay) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
            child.wait().unwrap();
            let partial = std::fs::read_dir(out.join("checkpoints"))
                .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(".partial-")))
                .unwrap_or(false);
            mid_checkpoint += partial as usize;
        }
        child.wait().unwrap();
    }
    run_to_end(model, config, out, true);
    (kills, mid_checkpoint)
}

fn check(model: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), model);
    let reference = tmp.path().join("reference");
    let started = Instant::now();
    run_to_end(model, &config, &reference, false);
    let full_ms = started.elapsed().as_millis() as u64;

    // Delays spread over the run (seeded, so a failure reproduces), after the start-up.
    let mut rng = protein_lm::Rng::new(model.len() as u64);
    let delays: Vec<u64> = (0..5).map(|_| full_ms / 8 + rng.below(full_ms.max(10) / 8)).collect();
    let interrupted = tmp.path().join("interrupted");
    let (kills, mid_checkpoint) = kill_and_resume(model, &config, &interrupted, &delays);
    eprintln!(
        "{model}: {kills} SIGKILLs ({mid_checkpoint} inside a checkpoint write) at {delays:?} ms of a {full_ms} ms run"
    );
    assert!(kills >= 1, "no kill landed before the run ended (delays {delays:?}, run {full_ms} ms)");

    let (state_a, model_a, opt_a) = final_checkpoint(&reference);
    let (state_b, model_b, opt_b) = final_checkpoint(&interrupted);
    assert_bitwise_equal(&model_a, &model_b, "weights");
    assert_bitwise_equal(&opt_a, &opt_b, "optimizer moments");
    for key in ["step", "epoch", "batch_in_epoch", "optimizer_steps", "rng", "extra"] {
        assert_eq!(state_a[key], state_b[key], "state.{key}");
    }
    // The resumed log reads as one run: one train record per update.
    let log = std::fs::read_to_string(interrupted.join("log.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=24).collect::<Vec<_>>(), "train records after {kills} kills");
}

#[test]
fn proteinbert_pretraining_resumes_bit_for_bit_after_sigkill() {
    check("proteinbert");
}

#[test]
fn proberta_pretraining_resumes_bit_for_bit_after_sigkill() {
    check("proberta");
}

#[test]
fn resume_refuses_a_changed_config_and_fresh_start_refuses_an_existing_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "proteinbert");
    let out = tmp.path().join("run");
    run_to_end("proteinbert", &config, &out, false);
    let again = command("proteinbert", &config, &out, false).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"), "{}", String::from_utf8_lossy(&again.stderr));
    let mut changed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    changed["train"]["seed"] = serde_json::json!(7);
    std::fs::write(&config, serde_json::to_string(&changed).unwrap()).unwrap();
    let resumed = command("proteinbert", &config, &out, true).output().unwrap();
    assert!(!resumed.status.success());
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("different configuration"));
}
