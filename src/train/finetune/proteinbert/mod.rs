//! Fine-tuning ProteinBERT, as the reference's `finetune` does (spec §4–5): on a benchmark
//! ([`finetune_proteinbert`], `benchmarks.rs`) and on protein pairs ([`finetune_proteinbert_ppi`],
//! `pairs.rs`, which the reference does not have). Both share the stages, the loop and the head.
//!
//! * The head: dropout 0.5 and one dense layer on the 15,599-wide global concatenation (per
//!   protein), the 1,562-wide local concatenation (per residue, residue `j` at position `j + 1`),
//!   or the two proteins' global vectors combined (per pair, see `pairs.rs`).
//! * Three stages, each a separate run of the one training loop in `OUT/stage-N/`:
//!   1. only the head trains (the trunk is built from detached tensors, so no gradient is even
//!      computed for it), seq_len 512, batch 32, lr 1e-2, ≤ 40 epochs;
//!   2. everything, lr 1e-4, ≤ 40 epochs;
//!   3. everything, one epoch at seq_len 1,024, batch 16, lr 1e-5.
//!
//!   Keras Adam (ε 1e-7); ReduceLROnPlateau(val_loss, patience 1, factor 0.25, min 1e-5) and
//!   EarlyStopping(val_loss, patience 2, restoring the best weights) per epoch. Optimiser state is
//!   carried to the next stage only when it trains the same variables (1 → 2 restarts, 2 → 3 keeps).
//! * Data: `dropna().drop_duplicates()`; without a valid file, 10 % of train held out,
//!   stratified (scikit-learn's count per class, members drawn by our seeded RNG); training and
//!   validation proteins longer than `seq_len − 2` are left out of that stage (counted in the
//!   report); the test set is never cut: it is evaluated in length buckets 512, 1,024, 2,048, …
//!   (batch 32, 16, 8, …), per bucket and pooled ("all").
//!
//! ```
//! use protein_lm::train::finetune::FinetuneConfig;
//! // The reference's three stages for a benchmark, then fitted to short proteins for a CPU:
//! // signal peptides of about 70 residues need 128 tokens, not 512.
//! let reference = FinetuneConfig::reference("signalP_binary");
//! assert_eq!(reference.stages.iter().map(|s| s.seq_len).collect::<Vec<_>>(), [512, 512, 1024]);
//! let fitted = reference.fitted_to(&[68, 70, 72, 75, 90], 1.0, None)?;
//! assert_eq!(fitted.stages.iter().map(|s| s.seq_len).collect::<Vec<_>>(), [128, 128, 128]);
//! assert_eq!(fitted.stages[0].batch_size, 32 * 512 / 128); // the same tokens per batch
//! # Ok::<(), protein_lm::Error>(())
//! ```

mod benchmarks;
mod pairs;

pub use benchmarks::{
    encode_examples, evaluate_by_length, finetune_proteinbert, fixed_batching, BucketScore, FinetuneReport,
};
pub use pairs::{
    encode_pairs, evaluate_pairs, finetune_proteinbert_ppi, LongProteins, PpiFinetuneConfig, PpiFinetuneReport,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{load_trunk_weights, restore_best, DataLimits};
use crate::models::directory::{DirectoryConfig, ModelConfig, ModelDir, StoredHead};
use crate::models::heads::{HeadConfig, LinearHead};
use crate::models::init::SeededVarMap;
use crate::models::proteinbert::{self, ProteinBert};
use crate::train::optim::Optimizer;
use crate::train::run_dir::{Provenance, RunDir, RunOptions};
use crate::train::trainer::{
    carry_optimizer, trainable_params, EarlyStoppingConfig, LrSchedule, OptimizerConfig, PlateauConfig, Task,
    TrainConfig, Trainer,
};
use crate::{Error, Result};

/// One stage of fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageConfig {
    /// Train only the head (the reference's stage 1).
    pub freeze_trunk: bool,
    pub seq_len: usize,
    pub batch_size: usize,
    pub train: TrainConfig,
}

/// A fine-tuning run.
///
/// ```
/// use protein_lm::train::finetune::FinetuneConfig;
/// let config = FinetuneConfig::load("configs/proteinbert-finetune-tiny.json")?;
/// config.check()?;
/// // Stage 1 trains the head alone, as the reference does.
/// assert!(config.stages[0].freeze_trunk);
/// let reference = FinetuneConfig::reference("stability");
/// assert_eq!((reference.stages.len(), reference.test_min_seq_len), (3, 512));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// The benchmark (set from `--task`; `ppi` for a pair run).
    #[serde(default)]
    pub benchmark: String,
    /// How many proteins of each split, and the valid share of train without a valid file.
    #[serde(flatten)]
    pub data: DataLimits,
    /// The trunk to start from when no `--from` model is given ("no pretraining").
    #[serde(default)]
    pub scratch_model: Option<proteinbert::Config>,
    /// Mask padding in the trunk (a divergence from the reference, off by default).
    #[serde(default)]
    pub padding_mask: bool,
    /// Smallest test bucket (the reference: 512).
    pub test_min_seq_len: usize,
    /// Test batch size at `test_min_seq_len`; halved per doubling of the bucket length.
    pub test_batch_size: usize,
    pub seed: u64,
    pub stages: Vec<StageConfig>,
}

impl FinetuneConfig {
    /// Reads a JSON config, naming the file and line in errors.
    /// Unknown keys and out-of-range values are errors naming the key.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        crate::config::load_config(path.as_ref(), "fine-tuning config", Self::add_checks)
    }

    /// Range checks of every size and fraction, naming the offending key.
    pub fn check(&self) -> Result<()> {
        let mut c = crate::config::Checks::new("fine-tuning config");
        self.add_checks(&mut c);
        c.finish()
    }

    fn add_checks(&self, c: &mut crate::config::Checks) {
        self.data.check(c);
        c.at_least("test_min_seq_len", self.test_min_seq_len, 3);
        c.at_least("test_batch_size", self.test_batch_size, 1);
        if self.stages.is_empty() {
            c.fail("stages", "must list at least one stage");
        }
        for (i, s) in self.stages.iter().enumerate() {
            c.at_least(&format!("stages[{i}].seq_len"), s.seq_len, 3);
            c.at_least(&format!("stages[{i}].batch_size"), s.batch_size, 1);
            crate::config::check_train(c, &format!("stages[{i}].train"), &s.train);
        }
    }

    /// The reference demo notebook's settings for a benchmark.
    pub fn reference(benchmark: &str) -> Self {
        let stage = |freeze: bool, seq_len: usize, batch: usize, lr: f64, epochs: u64| StageConfig {
            freeze_trunk: freeze,
            seq_len,
            batch_size: batch,
            train: TrainConfig {
                seed: 0,
                max_updates: u64::MAX / 2,
                max_epochs: Some(epochs),
                update_freq: 1,
                clip_norm: None,
                lr: LrSchedule::Constant { lr },
                optimizer: OptimizerConfig::adam_keras(),
                plateau: Some(PlateauConfig { factor: 0.25, patience: 1, min_lr: 1e-5, monitor: "valid_loss".into() }),
                early_stopping: Some(EarlyStoppingConfig { patience: 2, monitor: "loss".into(), maximize: false }),
                validate_every_updates: None,
                validate_every_epochs: Some(1),
                checkpoint_every: 200,
                keep_checkpoints: 2,
                log_every: 10,
                lr_scales: Vec::new(),
                precision: Default::default(),
                loss_scale: None,
            },
        };
        Self {
            benchmark: benchmark.to_string(),
            data: DataLimits { max_train: None, max_valid: None, max_test: None, valid_fraction: 0.1 },
            scratch_model: Some(proteinbert::Config::default()),
            padding_mask: false,
            test_min_seq_len: 512,
            test_batch_size: 32,
            seed: 0,
            stages: vec![
                stage(true, 512, 32, 1e-2, 40),
                stage(false, 512, 32, 1e-4, 40),
                stage(false, 1024, 16, 1e-5, 1),
            ],
        }
    }
}

impl FinetuneConfig {
    /// This config with its lengths fitted to a benchmark's training proteins, for scales below
    /// the paper's: the stages at the config's first length move to the smallest power of two
    /// (≥ 64) that holds `coverage` of the proteins with START and END; the longer stages (the
    /// reference's last, at twice the length) to twice that, or less when every protein fits
    /// sooner. Batch sizes keep their tokens per batch; the test buckets start at the fitted
    /// length. With `tokens_per_epoch`, at most that many padded training tokens per epoch at
    /// the fitted length (a seeded sample of the proteins, [`DataLimits::max_train`]).
    ///
    /// The reference pads everything to 512 and 1,024: right for its GPU, wasteful for signal
    /// peptides of 70 residues on a CPU, and too short for none of the eight benchmarks at 1,024.
    pub fn fitted_to(&self, train_lengths: &[usize], coverage: f64, tokens_per_epoch: Option<usize>) -> Result<Self> {
        if train_lengths.is_empty() {
            return Err(Error::invalid("no training proteins to fit the lengths to"));
        }
        if !(coverage > 0.0 && coverage <= 1.0) {
            return Err(Error::invalid(format!("coverage must be in (0, 1], got {coverage}")));
        }
        let mut with_ends: Vec<usize> = train_lengths.iter().map(|l| l + 2).collect();
        with_ends.sort_unstable();
        let covered = with_ends[((coverage * with_ends.len() as f64).ceil() as usize).clamp(1, with_ends.len()) - 1];
        let base = covered.next_power_of_two().max(64);
        let longest = with_ends[with_ends.len() - 1].next_power_of_two().max(64);
        let long = longest.clamp(base, 2 * base);
        let first = self.stages.first().map(|s| s.seq_len).unwrap_or(base);
        let mut fitted = self.clone();
        let rescale = |batch: usize, from: usize, to: usize| (batch * from / to).max(1);
        for stage in &mut fitted.stages {
            let to = if stage.seq_len <= first { base } else { long };
            stage.batch_size = rescale(stage.batch_size, stage.seq_len, to);
            stage.seq_len = to;
        }
        fitted.test_batch_size = rescale(self.test_batch_size, self.test_min_seq_len, base);
        fitted.test_min_seq_len = base;
        if let Some(tokens) = tokens_per_epoch {
            let budget = (tokens / base).max(1);
            fitted.data.max_train = Some(self.data.max_train.map_or(budget, |m| m.min(budget)));
        }
        Ok(fitted)
    }
}

const HEAD_PREFIX: &str = "head";

/// The variables of one fine-tuning (trunk and head, under `head.`) and where the trunk started.
pub(crate) struct FinetuneModel {
    pub vars: SeededVarMap,
    pub config: proteinbert::Config,
    pub head: HeadConfig,
    /// The pretrained model directory, or "random initialisation (seed N): no pretraining".
    pub start: String,
    /// What `model/`, `best/` and the checkpoints' model directories say they hold.
    pub dir_config: DirectoryConfig,
    padding_mask: bool,
}

impl FinetuneModel {
    /// The trunk of `from` (a pretrained model directory, its heads ignored) or, without one, the
    /// config's `scratch_model`, and a new `head` for `labels`.
    pub fn new(
        config: &FinetuneConfig,
        from: Option<&Path>,
        head: HeadConfig,
        labels: Vec<String>,
        device: &Device,
    ) -> Result<Self> {
        let vars = SeededVarMap::new(config.seed);
        let (model_config, start) = match from {
            Some(dir) => {
                let dir = ModelDir::open(dir)?;
                let ModelConfig::Proteinbert(c) = dir.config().model.clone() else {
                    return Err(Error::invalid(format!(
                        "{} is not a ProteinBERT model directory",
                        dir.path().display()
                    )));
                };
                ProteinBert::load(vars.var_builder(DType::F32, device), &c)?;
                // Only the trunk's tensors are taken: a directory may carry earlier heads.
                load_trunk_weights(&vars, &dir, HEAD_PREFIX)?;
                (c, dir.path().display().to_string())
            }
            None => {
                let c = config
                    .scratch_model
                    .clone()
                    .ok_or_else(|| Error::invalid("no --from model and no scratch_model in the fine-tuning config"))?;
                ProteinBert::load(vars.var_builder(DType::F32, device), &c)?;
                (c, format!("random initialisation (seed {}): no pretraining", config.seed))
            }
        };
        let dir_config = DirectoryConfig {
            model: ModelConfig::Proteinbert(model_config.clone()),
            source: None,
            has_lm_head: false,
            heads: vec![StoredHead { prefix: HEAD_PREFIX.into(), config: head, labels }],
        };
        let model = Self { vars, config: model_config, head, start, dir_config, padding_mask: config.padding_mask };
        model.head(device)?;
        Ok(model)
    }

    /// The trunk on the current variables. `frozen`: built from detached tensors, so the graph
    /// stops at the trunk's output and a frozen stage costs a forward only.
    pub fn trunk(&self, frozen: bool, device: &Device) -> Result<ProteinBert> {
        let trunk = if frozen {
            let tensors: HashMap<String, Tensor> = self
                .vars
                .named_vars()
                .into_iter()
                .filter(|(n, _)| !n.starts_with(HEAD_PREFIX))
                .map(|(n, v)| (n, v.as_tensor().detach()))
                .collect();
            ProteinBert::load(VarBuilder::from_tensors(tensors, DType::F32, device), &self.config)?
        } else {
            ProteinBert::load(self.vars.var_builder(DType::F32, device), &self.config)?
        };
        Ok(trunk.with_padding_mask(self.padding_mask))
    }

    /// The head on the current variables (created on first use).
    pub fn head(&self, device: &Device) -> Result<LinearHead> {
        let vb = self.vars.var_builder(DType::F32, device).pp(HEAD_PREFIX);
        LinearHead::load(vb, self.head, self.config.local_hidden_size(), self.config.global_hidden_size())
    }

    /// Runs `config`'s stages in `OUT/stage-N/` (a finished stage is resumed to its end, so
    /// `resume` skips it), each from the best validation weights of the one before.
    /// `make_task(k, stage, trunk, head)` builds stage `k`'s task and says what it trains on (JSON
    /// merged into the stage's report); `run_config` is the whole run's config, stored with each stage.
    pub fn run_stages<'a>(
        &self,
        config: &FinetuneConfig,
        run_config: &serde_json::Value,
        data_files: &[PathBuf],
        options: RunOptions,
        mut make_task: impl FnMut(
            usize,
            &StageConfig,
            ProteinBert,
            LinearHead,
        ) -> Result<(Box<dyn Task + 'a>, serde_json::Value)>,
    ) -> Result<Vec<serde_json::Value>> {
        let RunOptions { out, resume, device, progress } = options;
        let mut previous: Option<(Box<dyn Optimizer>, Vec<String>)> = None;
        let mut reports = Vec::new();
        for (k, stage) in config.stages.iter().enumerate() {
            let frozen: Vec<String> = if stage.freeze_trunk {
                self.vars.named_vars().into_iter().map(|(n, _)| n).filter(|n| !n.starts_with(HEAD_PREFIX)).collect()
            } else {
                Vec::new()
            };
            let params = trainable_params(&self.vars, &frozen);
            let (optimizer, carried) = carry_optimizer(previous.take(), &params, &stage.train.optimizer);
            let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
            let mut trainer = Trainer::new(stage.train.clone(), self.vars.clone(), device.clone())?;
            trainer.params = params;
            trainer.optimizer = optimizer;
            trainer.model_dir_config = Some(self.dir_config.clone());
            trainer.progress = progress;
            let (mut task, mut report) =
                make_task(k, stage, self.trunk(stage.freeze_trunk, device)?, self.head(device)?)?;
            let stage_json = serde_json::json!({"finetune": run_config, "stage": k + 1, "start": self.start});
            let provenance = Provenance::collect(config.seed, data_files, device)?;
            let run = RunDir::open(out.join(format!("stage-{}", k + 1)), &stage_json, &provenance, resume)?;
            let summary = trainer.run(task.as_mut(), &run, resume)?;
            // Keras' restore_best_weights: continue from the best validation epoch.
            restore_best(&run, &summary, &self.vars, device)?;
            let fields = serde_json::json!({
                "stage": k + 1, "freeze_trunk": stage.freeze_trunk, "seq_len": stage.seq_len,
                "optimizer_state_carried": carried, "updates": summary.updates, "epochs": summary.epochs_completed,
                "stopped_early": summary.stopped_early, "best_valid_loss": summary.best.map(|b| b.0),
                "seconds": summary.seconds, "resumed_from": summary.resumed_from,
            });
            for (key, value) in fields.as_object().expect("an object") {
                report[key] = value.clone();
            }
            reports.push(report);
            previous = Some((trainer.optimizer, names));
        }
        Ok(reports)
    }

    /// Writes the current weights as a model directory at `path` (replacing one there).
    pub fn save(&self, path: &Path, source: String) -> Result<()> {
        let mut config = self.dir_config.clone();
        config.source = Some(source);
        let tensors: HashMap<String, Tensor> =
            self.vars.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
        if path.exists() {
            std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
        }
        ModelDir::create(path, &config, &tensors)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_lengths_follow_the_proteins_and_keep_tokens_per_batch() -> Result<()> {
        let reference = FinetuneConfig::reference("signalP_binary");
        // Signal peptides: 70 residues each fit 128; every stage moves there, batches grow 4×/8×.
        let short = reference.fitted_to(&[70; 100], 0.9, None)?;
        assert_eq!(short.stages.iter().map(|s| s.seq_len).collect::<Vec<_>>(), vec![128, 128, 128]);
        assert_eq!(short.stages.iter().map(|s| s.batch_size).collect::<Vec<_>>(), vec![128, 128, 128]);
        assert_eq!((short.test_min_seq_len, short.test_batch_size), (128, 128));
        assert_eq!(short.data.max_train, None);
        // 90 % of the proteins within 200 residues, the longest 1,500: 256 for the first stages,
        // 512 (twice, not 2,048) for the last.
        let mut lengths = vec![200; 90];
        lengths.extend([300, 400, 500, 600, 700, 800, 900, 1000, 1200, 1500]);
        let long = reference.fitted_to(&lengths, 0.9, Some(100_000))?;
        assert_eq!(long.stages.iter().map(|s| s.seq_len).collect::<Vec<_>>(), vec![256, 256, 512]);
        assert_eq!(long.stages.iter().map(|s| s.batch_size).collect::<Vec<_>>(), vec![64, 64, 32]);
        assert_eq!(long.data.max_train, Some(100_000 / 256));
        // A smaller configured cap stays; tiny proteins still get 64; bad input is an error.
        let mut capped = reference.clone();
        capped.data.max_train = Some(10);
        assert_eq!(capped.fitted_to(&lengths, 0.9, Some(100_000))?.data.max_train, Some(10));
        assert_eq!(reference.fitted_to(&[10, 20], 1.0, None)?.stages[0].seq_len, 64);
        assert!(reference.fitted_to(&[], 0.9, None).is_err());
        assert!(reference.fitted_to(&[10], 0.0, None).unwrap_err().to_string().contains("coverage"));
        Ok(())
    }
}
