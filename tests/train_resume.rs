//! A pretraining run that dies and is resumed ends as an uninterrupted run at the same thread count
//! does: the same bits in weights, optimizer moments, step and RNG state, the same `best/` and
//! `model/` directories, and a `log.jsonl` with the same records, one per update and validation.
//!
//! Two ways to die: a crash injected at each named point of the write sequence
//! ([`protein_lm::failpoint`]: deterministic, whatever the machine's load), and SIGKILLs at random
//! instants of a run whose checkpoint writes are held open 40 ms, each kill sent only once the run
//! has written a later checkpoint than the last one (so resumes from a checkpoint after step 0 are
//! guaranteed, not left to timing).

#![cfg(unix)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use candle_core::{Device, Tensor};

const BIN: &str = env!("CARGO_BIN_EXE_protein-lm");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write_config(dir: &Path, model: &str) -> PathBuf {
    edit_config(dir, model, |_| {})
}

fn edit_config(dir: &Path, model: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
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
    edit(&mut config);
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

/// The checkpoint `LATEST` names, read back.
fn final_checkpoint(out: &Path) -> (serde_json::Value, HashMap<String, Tensor>, HashMap<String, Tensor>) {
    let latest = std::fs::read_to_string(out.join("checkpoints").join("LATEST")).unwrap();
    let dir = out.join("checkpoints").join(latest.trim());
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

/// The log's records without what depends on the clock (throughput, elapsed time) or on the run
/// having been interrupted (`resumed` events).
fn records(out: &Path) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .filter(|v| v["event"] != "resumed")
        .map(|mut v| {
            for key in ["elapsed_s", "samples_per_s", "tokens_per_s"] {
                v.as_object_mut().unwrap().remove(key);
            }
            v
        })
        .collect()
}

/// Everything a run leaves equals what the reference run left.
fn assert_same_run(reference: &Path, resumed: &Path, what: &str) {
    let (state_a, model_a, opt_a) = final_checkpoint(reference);
    let (state_b, model_b, opt_b) = final_checkpoint(resumed);
    assert_bitwise_equal(&model_a, &model_b, &format!("{what}: weights"));
    assert_bitwise_equal(&opt_a, &opt_b, &format!("{what}: optimizer moments"));
    for key in ["step", "epoch", "batch_in_epoch", "optimizer_steps", "rng", "extra"] {
        assert_eq!(state_a[key], state_b[key], "{what}: state.{key}");
    }
    for dir in ["best", "model"] {
        let weights = |run: &Path| run.join(dir).join("model.safetensors");
        assert_eq!(weights(reference).is_file(), weights(resumed).is_file(), "{what}: {dir}/ present");
        if weights(reference).is_file() {
            let load = |run: &Path| candle_core::safetensors::load(weights(run), &Device::Cpu).unwrap();
            assert_bitwise_equal(&load(reference), &load(resumed), &format!("{what}: {dir}/"));
        }
    }
    let debris: Vec<String> = std::fs::read_dir(resumed)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.') || n.ends_with(".partial") || n.ends_with(".rewrite"))
        .collect();
    assert!(debris.is_empty(), "{what}: left behind {debris:?}");
    let (a, b) = (records(reference), records(resumed));
    let kinds = |r: &[serde_json::Value], kind: &str| -> Vec<u64> {
        r.iter().filter(|v| v["kind"] == kind).map(|v| v["step"].as_u64().unwrap()).collect()
    };
    for kind in ["train", "valid", "epoch"] {
        assert_eq!(kinds(&a, kind), kinds(&b, kind), "{what}: `{kind}` records by step");
    }
    assert_eq!(a, b, "{what}: log records");
}

// ---- crashes at named points ----

/// The failpoint test's run: 12 updates, a checkpoint every 3, a validation every 4 with early
/// stopping (so `best/` is rewritten mid-run), epochs of 5 batches.
fn failpoint_config(dir: &Path) -> PathBuf {
    edit_config(dir, "proteinbert", |c| {
        c["train"]["max_updates"] = serde_json::json!(12);
        c["train"]["checkpoint_every"] = serde_json::json!(3);
        c["train"]["validate_every_updates"] = serde_json::json!(4);
        c["train"]["early_stopping"] = serde_json::json!({"patience": 10, "monitor": "loss", "maximize": false});
    })
}

/// Runs with each failpoint spec in turn (`NAME:N`, resuming after the first), each of which must
/// end the process there, then resumes to the end and compares with an uninterrupted run.
fn crash_and_resume(tmp: &Path, config: &Path, reference: &Path, specs: &[String]) {
    let name = specs.join("+").replace([':', '.'], "_");
    let out = tmp.join(&name);
    for (i, spec) in specs.iter().enumerate() {
        let output = command("proteinbert", config, &out, i > 0)
            .env("PROTEIN_LM_CHECKPOINT_WRITE_DELAY_MS", "0")
            .env(protein_lm::failpoint::ENV, spec)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(protein_lm::failpoint::EXIT_CODE),
            "{spec} was never reached: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output =
        command("proteinbert", config, &out, true).env("PROTEIN_LM_CHECKPOINT_WRITE_DELAY_MS", "0").output().unwrap();
    assert!(output.status.success(), "resume after {specs:?}: {}", String::from_utf8_lossy(&output.stderr));
    assert_same_run(reference, &out, &format!("crash at {specs:?}"));
}

/// Each point at its first pass (for most, before any checkpoint exists) and at a later one.
fn crash_at_points(prefix: &str, later: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let config = failpoint_config(tmp.path());
    let reference = tmp.path().join("reference");
    let output =
        command("proteinbert", &config, &reference, false).env("PROTEIN_LM_CHECKPOINT_WRITE_DELAY_MS", "0").output();
    assert!(output.unwrap().status.success());
    let points = protein_lm::failpoint::POINTS.iter().filter(|p| p.starts_with(prefix));
    let mut visited = 0;
    for point in points {
        for hit in [1, later] {
            crash_and_resume(tmp.path(), &config, &reference, &[format!("{point}:{hit}")]);
            visited += 1;
        }
    }
    assert!(visited >= 4, "no failpoint named {prefix}*");
}

#[test]
fn crash_at_every_log_write_point_resumes_to_the_same_run() {
    // 12 train, 3 valid, 2 epoch records and an event: the 9th write is mid-run, after checkpoints.
    crash_at_points("log.", 9);
}

#[test]
fn crash_at_every_checkpoint_write_point_resumes_to_the_same_run() {
    // Checkpoints at updates 3, 6, 9, 12: the first, and the third (with older ones to prune).
    crash_at_points("checkpoint.", 3);
}

#[test]
fn crash_at_every_model_directory_write_point_resumes_to_the_same_run() {
    // best/ at the validations of updates 4, 8, 12 (when they improve), model/ at the end.
    crash_at_points("model_dir.", 2);
}

#[test]
fn crashes_during_a_resume_resume_to_the_same_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = failpoint_config(tmp.path());
    let reference = tmp.path().join("reference");
    run_to_end("proteinbert", &config, &reference, false);
    let chains: [&[&str]; 3] = [
        // Killed while the resume rewrites the log, then resumed again.
        &["checkpoint.before_latest:2", "resume.log_rewrite:1"],
        // A torn line, then another torn line in the resumed run, glued to nothing.
        &["log.torn_write:5", "log.torn_write:4"],
        // Killed before the first checkpoint, twice: the case that once doubled update 1's record.
        &["checkpoint.before_state:1", "log.after_write:1"],
    ];
    for chain in chains {
        crash_and_resume(tmp.path(), &config, &reference, &chain.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    }
}

// ---- SIGKILLs at random instants ----

/// The step `LATEST` names (0 before the first checkpoint).
fn latest_step(out: &Path) -> u64 {
    std::fs::read_to_string(out.join("checkpoints").join("LATEST"))
        .ok()
        .and_then(|s| s.trim().strip_prefix("step-").and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// For each `(step, delay)`: starts the run (resuming after the first), waits until it has
/// checkpointed `step` or later, lets it go on `delay` ms more and kills it with SIGKILL; then lets
/// it finish. Waiting on the run's own progress rather than the clock makes every kill land after a
/// checkpoint past the previous one, however busy the machine. Returns the kills that found the
/// run still going and how many of them left a half-written checkpoint behind.
fn kill_and_resume(model: &str, config: &Path, out: &Path, plan: &[(u64, u64)]) -> (usize, usize) {
    let (mut kills, mut mid_checkpoint) = (0, 0);
    for (i, &(step, delay)) in plan.iter().enumerate() {
        let mut child = command(model, config, out, i > 0).spawn().unwrap();
        while latest_step(out) < step && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(delay));
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
    run_to_end(model, &config, &reference, false);

    // Seeded, so a failure reproduces: the checkpoint each kill waits for, then 0–39 ms more (a
    // checkpoint write is held open 40 ms, so many kills land inside one).
    let mut rng = protein_lm::Rng::new(model.len() as u64);
    let plan: Vec<(u64, u64)> = [2, 7, 12, 17, 21].iter().map(|&s| (s, rng.below(40))).collect();
    let interrupted = tmp.path().join("interrupted");
    let (kills, mid_checkpoint) = kill_and_resume(model, &config, &interrupted, &plan);
    eprintln!("{model}: {kills} SIGKILLs ({mid_checkpoint} inside a checkpoint write), plan {plan:?}");
    assert_eq!(kills, plan.len(), "every kill found the run still going");
    // Each resume started from a checkpoint at or after the one its kill waited for.
    let resumed_from: Vec<u64> = std::fs::read_to_string(interrupted.join("log.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "resumed")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(resumed_from.len(), plan.len(), "resumes {resumed_from:?}");
    for (&from, &(step, _)) in resumed_from.iter().zip(&plan) {
        assert!(from >= step, "a resume from step {from}, before the checkpoint {step} its kill waited for");
    }
    assert_same_run(&reference, &interrupted, &format!("{model} after {kills} SIGKILLs"));
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
