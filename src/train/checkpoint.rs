//! Checkpoints that survive a kill at any instant.
//!
//! ```text
//! RUN/checkpoints/
//!   step-0000001200/      model.safetensors, optimizer.safetensors, state.json (written last)
//!   step-0000001300/
//!   LATEST                "step-0000001300"
//!   .partial-…            a checkpoint being written (never read; removed on the next save)
//! ```
//!
//! A checkpoint is written into a `.partial-` directory, every file synced, `state.json` last,
//! then renamed into place and `LATEST` replaced by a rename: a reader sees either the previous
//! complete checkpoint or the new complete one, whatever instant a SIGKILL lands. Resuming trusts
//! `LATEST` only if it names a complete directory, and otherwise takes the newest complete one.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Location, Result, Rng};

const STATE_FILE: &str = "state.json";
const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const LATEST: &str = "LATEST";
const PARTIAL: &str = ".partial-";

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Updates made.
    pub step: u64,
    pub epoch: u64,
    /// Batches consumed within the epoch (so data order resumes too).
    pub batch_in_epoch: u64,
    pub optimizer_steps: u64,
    /// The training RNG (masking, noise, dropout, shuffling).
    pub rng: [u64; 4],
    /// Schedule, plateau and early-stopping state, and anything else the loop keeps.
    pub extra: serde_json::Value,
    /// The run's configuration, for checking a resume is the same run.
    pub config: serde_json::Value,
    /// Wall-clock seconds of training up to this checkpoint, summed over the segments of a resumed
    /// run (0 in checkpoints written before it was kept).
    #[serde(default)]
    pub seconds: f64,
}

impl TrainingState {
    /// The RNG, checked (an all-zero xoshiro state is invalid).
    pub fn rng(&self) -> Result<Rng> {
        if self.rng.iter().all(|&s| s == 0) {
            return Err(Error::invalid("checkpoint RNG state is all zeros"));
        }
        Ok(Rng::from_state(self.rng))
    }
}

/// A checkpoint read back.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub state: TrainingState,
    pub model: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
}

/// The checkpoints of one run.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

fn sync_file(path: &Path) -> Result<()> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(io(path))
}

fn sync_dir(path: &Path) -> Result<()> {
    // Directory fsync makes the rename durable on Linux; elsewhere it may be unsupported.
    match fs::File::open(path).and_then(|f| f.sync_all()) {
        Ok(()) => Ok(()),
        Err(e) if cfg!(not(target_os = "linux")) => {
            let _ = e;
            Ok(())
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

fn step_name(step: u64) -> String {
    format!("step-{step:010}")
}

impl CheckpointDir {
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self { root: root.as_ref().to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a checkpoint for `state.step` and makes it the latest; keeps the newest `keep_last`
    /// step checkpoints (and any listed in `keep`, e.g. the best one).
    pub fn save(
        &self,
        state: &TrainingState,
        model: &HashMap<String, Tensor>,
        optimizer: &HashMap<String, Tensor>,
        keep_last: usize,
        keep: &[u64],
    ) -> Result<PathBuf> {
        fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        self.remove_partials()?;
        let name = step_name(state.step);
        let partial = self.root.join(format!("{PARTIAL}{name}"));
        fs::create_dir_all(&partial).map_err(io(&partial))?;
        for (file, tensors) in [(MODEL_FILE, model), (OPTIMIZER_FILE, optimizer)] {
            let path = partial.join(file);
            // Not candle's save: it writes through a temporary file created 0600. save_tensors
            // syncs the file before renaming it into place.
            crate::models::directory::save_tensors(&path, tensors)?;
            if file == MODEL_FILE {
                crate::failpoint::hit("checkpoint.partial_tensors");
            }
        }
        crate::failpoint::hit("checkpoint.before_state");
        // Fault injection for the kill-and-resume test: widens the window in which a SIGKILL lands
        // between the tensors and state.json.
        if let Some(ms) = std::env::var("PROTEIN_LM_CHECKPOINT_WRITE_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let json = serde_json::to_vec_pretty(state).expect("state serialises");
        let state_path = partial.join(STATE_FILE);
        let mut f = fs::File::create(&state_path).map_err(io(&state_path))?;
        f.write_all(&json).and_then(|_| f.sync_all()).map_err(io(&state_path))?;
        sync_dir(&partial)?;
        crate::failpoint::hit("checkpoint.before_rename");
        let target = self.root.join(&name);
        if target.exists() {
            fs::remove_dir_all(&target).map_err(io(&target))?;
        }
        fs::rename(&partial, &target).map_err(io(&target))?;
        crate::failpoint::hit("checkpoint.before_latest");
        let latest_tmp = self.root.join(format!("{PARTIAL}{LATEST}"));
        fs::write(&latest_tmp, &name).map_err(io(&latest_tmp))?;
        sync_file(&latest_tmp)?;
        fs::rename(&latest_tmp, self.root.join(LATEST)).map_err(io(&self.root))?;
        sync_dir(&self.root)?;
        crate::failpoint::hit("checkpoint.before_prune");
        self.prune(keep_last, keep)?;
        Ok(target)
    }

    /// Steps of the complete checkpoints, ascending.
    pub fn complete_steps(&self) -> Result<Vec<u64>> {
        let mut steps = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(steps),
            Err(e) => return Err(Error::io(&self.root, e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&self.root))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<u64>().ok()) {
                if entry.path().join(STATE_FILE).is_file() {
                    steps.push(step);
                }
            }
        }
        steps.sort_unstable();
        Ok(steps)
    }

    /// The checkpoint to resume from: `LATEST` if it names a complete one, else the newest
    /// complete one; `None` for a fresh run.
    pub fn latest(&self, device: &Device) -> Result<Option<Checkpoint>> {
        // Only a step directory of this run: `../other-run/checkpoints/step-…` or an absolute path
        // would resume from somewhere else.
        let pointer = fs::read_to_string(self.root.join(LATEST))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|name| name.strip_prefix("step-").is_some_and(|n| n.parse::<u64>().is_ok()));
        if let Some(name) = pointer {
            let dir = self.root.join(&name);
            if dir.join(STATE_FILE).is_file() {
                return Self::load(&dir, device).map(Some);
            }
        }
        match self.complete_steps()?.last() {
            Some(&step) => Self::load(&self.root.join(step_name(step)), device).map(Some),
            None => Ok(None),
        }
    }

    /// Reads one checkpoint directory.
    pub fn load(dir: &Path, device: &Device) -> Result<Checkpoint> {
        let state_path = dir.join(STATE_FILE);
        let text = fs::read_to_string(&state_path).map_err(io(&state_path))?;
        let state: TrainingState = serde_json::from_str(&text)
            .map_err(|e| Error::data(Location::file(&state_path), format!("not a training state: {e}")))?;
        // Checked here rather than where the RNG is rebuilt, so the error names the file.
        if let Err(e) = state.rng() {
            return Err(Error::data(Location::file(&state_path), format!("key `rng`: {e}")));
        }
        let read = |file: &str| -> Result<HashMap<String, Tensor>> {
            let path = dir.join(file);
            candle_core::safetensors::load(&path, device)
                .map_err(|e| Error::data(Location::file(&path), format!("cannot read checkpoint tensors: {e}")))
        };
        Ok(Checkpoint { path: dir.to_path_buf(), state, model: read(MODEL_FILE)?, optimizer: read(OPTIMIZER_FILE)? })
    }

    fn remove_partials(&self) -> Result<()> {
        for entry in fs::read_dir(&self.root).map_err(io(&self.root))? {
            let path = entry.map_err(io(&self.root))?.path();
            let is_partial = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(PARTIAL));
            if is_partial {
                if path.is_dir() {
                    fs::remove_dir_all(&path).map_err(io(&path))?;
                } else {
                    fs::remove_file(&path).map_err(io(&path))?;
                }
            }
        }
        Ok(())
    }

    fn prune(&self, keep_last: usize, keep: &[u64]) -> Result<()> {
        let steps = self.complete_steps()?;
        let cut = steps.len().saturating_sub(keep_last.max(1));
        for &step in &steps[..cut] {
            if !keep.contains(&step) {
                let dir = self.root.join(step_name(step));
                fs::remove_dir_all(&dir).map_err(io(&dir))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn state(step: u64) -> TrainingState {
        TrainingState {
            step,
            epoch: 1,
            batch_in_epoch: step % 7,
            optimizer_steps: step,
            rng: Rng::new(step).state(),
            extra: serde_json::json!({"lr": 0.001}),
            config: serde_json::json!({"model": "tiny"}),
            seconds: 1.5 * step as f64,
        }
    }

    fn tensors(v: f32) -> HashMap<String, Tensor> {
        [("w".to_string(), Tensor::full(v, (2, 3), &Device::Cpu).unwrap())].into()
    }

    #[test]
    fn save_resume_prune_and_survive_partial_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CheckpointDir::new(tmp.path().join("checkpoints"));
        assert!(dir.latest(&Device::Cpu).unwrap().is_none());
        for step in [100, 200, 300, 400] {
            dir.save(&state(step), &tensors(step as f32), &tensors(-(step as f32)), 2, &[100]).unwrap();
        }
        // Kept: the newest two and the pinned best.
        assert_eq!(dir.complete_steps().unwrap(), [100, 300, 400]);
        let c = dir.latest(&Device::Cpu).unwrap().unwrap();
        assert_eq!(c.state, state(400));
        assert_eq!(
            c.model["w"].to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0],
            400.0
        );
        assert_eq!(c.state.rng().unwrap().state(), Rng::new(400).state());

        // A kill in the middle of writing step 500: a partial directory without state.json, and
        // LATEST still pointing at 400. Resume takes 400; the next save clears the debris.
        let partial = dir.root().join(".partial-step-0000000500");
        fs::create_dir_all(&partial).unwrap();
        fs::write(partial.join(MODEL_FILE), b"half a file").unwrap();
        assert_eq!(dir.latest(&Device::Cpu).unwrap().unwrap().state.step, 400);
        // LATEST naming a directory that is gone (or half there) falls back to the newest complete.
        fs::write(dir.root().join(LATEST), "step-0000000900").unwrap();
        assert_eq!(dir.latest(&Device::Cpu).unwrap().unwrap().state.step, 400);
        dir.save(&state(500), &tensors(5.0), &tensors(5.0), 2, &[]).unwrap();
        assert!(!partial.exists());
        assert_eq!(dir.latest(&Device::Cpu).unwrap().unwrap().state.step, 500);

        // A corrupt state file is an error naming it, not a panic.
        fs::write(dir.root().join("step-0000000500").join(STATE_FILE), "{").unwrap();
        let err = dir.latest(&Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }
}
