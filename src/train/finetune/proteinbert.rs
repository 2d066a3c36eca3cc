//! Fine-tuning ProteinBERT on a benchmark, as the reference's `finetune` does (spec §4–5).
//!
//! * The head: dropout 0.5 and one dense layer on the 15,599-wide global concatenation (per
//!   protein) or the 1,562-wide local concatenation (per residue, residue `j` at position `j + 1`).
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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{load_trunk_weights, restore_best, write_json, DataLimits, Example, SupervisedData};
use crate::models::directory::{DirectoryConfig, ModelConfig, ModelDir, StoredHead};
use crate::models::heads::{Head, HeadConfig, HeadInput, LinearHead, Target};
use crate::models::init::SeededVarMap;
use crate::models::proteinbert::{self, ProteinBert};
use crate::models::Trunk;
use crate::tokenize::residue::{ResidueTokenizer, PAD};
use crate::tokenize::UnknownCounts;
use crate::train::objectives::supervised::{batch_targets, head_loss, Predictions, TargetValue};
use crate::train::optim::Optimizer;
use crate::train::run_dir::{Provenance, RunDir, RunOptions};
use crate::train::trainer::{
    carry_optimizer, trainable_params, EarlyStoppingConfig, EpochOrder, LrSchedule, Metrics, OptimizerConfig,
    PlateauConfig, Task, TaskLoss, TrainConfig, Trainer,
};
use crate::{Error, Result, Rng};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
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

/// Token ids `(B, seq_len)`, targets and the real-token count of a batch. Letters mapped to
/// `<OTHER>` are counted once for the whole data set, in the run's report.
fn encode(
    batch: &[&Example],
    seq_len: usize,
    target: Target,
    device: &Device,
) -> Result<(Tensor, crate::train::objectives::supervised::BatchTargets, usize)> {
    let mut ids = Vec::with_capacity(batch.len() * seq_len);
    let mut tokens = 0;
    for e in batch {
        let encoded = ResidueTokenizer.encode_padded(&e.sequence, seq_len, &mut UnknownCounts::default())?;
        tokens += encoded.iter().filter(|&&t| t != PAD).count();
        ids.extend(encoded);
    }
    let labels: Vec<&TargetValue> = batch.iter().map(|e| &e.target).collect();
    let targets = batch_targets(&labels, target, seq_len, 1, device)?;
    Ok((Tensor::from_vec(ids, (batch.len(), seq_len), device)?, targets, tokens))
}

/// One fine-tuning stage as a [`Task`] for the loop.
pub struct FinetuneStage<'a> {
    pub trunk: ProteinBert,
    pub head: LinearHead,
    pub target: Target,
    pub train: Vec<&'a Example>,
    pub valid: Vec<&'a Example>,
    pub seq_len: usize,
    pub batch_size: usize,
    pub order: EpochOrder,
    pub device: Device,
}

/// Evaluates `head` on `examples` at one padded length.
fn predict(
    trunk: &ProteinBert,
    head: &LinearHead,
    target: Target,
    examples: &[&Example],
    seq_len: usize,
    batch_size: usize,
    device: &Device,
) -> Result<Predictions> {
    let mut predictions = Predictions::default();
    for batch in examples.chunks(batch_size.max(1)) {
        let (ids, targets, _) = encode(batch, seq_len, target, device)?;
        let features = trunk.features(&ids, None)?;
        let logits = head.forward(HeadInput::One(&features), None)?;
        let loss = head_loss(target, &logits, &targets)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        predictions.add(target, &logits, &targets, loss)?;
    }
    Ok(predictions)
}

impl Task for FinetuneStage<'_> {
    fn batches_per_epoch(&self) -> u64 {
        self.order.batches(self.batch_size)
    }

    fn train_loss(&mut self, epoch: u64, batch: u64, rng: &mut Rng) -> Result<TaskLoss> {
        // Keras shuffles every epoch; here the order is a function of (seed, epoch).
        let batch: Vec<&Example> =
            self.order.batch(epoch, batch, self.batch_size).iter().map(|&i| self.train[i]).collect();
        let (ids, targets, tokens) = encode(&batch, self.seq_len, self.target, &self.device)?;
        let features = self.trunk.features(&ids, None)?;
        let logits = self.head.forward(HeadInput::One(&features), Some(rng))?;
        let loss = head_loss(self.target, &logits, &targets)?;
        Ok(TaskLoss { loss, metrics: Metrics::new(), samples: batch.len(), tokens })
    }

    fn validate(&mut self) -> Result<Metrics> {
        if self.valid.is_empty() {
            return Ok(Metrics::new());
        }
        let p =
            predict(&self.trunk, &self.head, self.target, &self.valid, self.seq_len, self.batch_size, &self.device)?;
        let (name, value) = p.metric(self.target);
        Ok(Metrics::from([("loss".to_string(), p.loss()), (name.to_string(), value)]))
    }
}

/// Scores of one test bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketScore {
    /// `"512"`, `"1024"`, … or `"all"`.
    pub bucket: String,
    pub proteins: usize,
    /// Counted items (proteins, or residues for per-residue tasks).
    pub items: usize,
    pub metric: String,
    /// NaN when undefined (ROC AUC of a bucket with one class); written as JSON `null`.
    #[serde(deserialize_with = "nan_if_null")]
    pub value: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
}

/// JSON has no NaN: serde_json writes it as `null`, which reads back as NaN here.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What a fine-tuning run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneReport {
    pub benchmark: String,
    pub start: String,
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    pub data_report: BTreeMap<String, usize>,
    /// Per stage: proteins left out for length, updates, epochs, best validation loss, seconds.
    pub stages: Vec<serde_json::Value>,
    pub test_scores: Vec<BucketScore>,
    pub paper_no_pretraining: f64,
    pub paper_pretrained: f64,
}

impl FinetuneReport {
    /// Reads a finished run's `results.json` (`dir` is the run directory), naming the file in errors.
    pub fn read(dir: &Path) -> Result<Self> {
        crate::train::run_dir::read_json(&dir.join("results.json"), "fine-tuning results")
    }
}

/// Test scores in the reference's length buckets, and pooled.
pub fn evaluate_by_length(
    trunk: &ProteinBert,
    head: &LinearHead,
    target: Target,
    test: &[Example],
    min_seq_len: usize,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<BucketScore>> {
    let mut buckets: BTreeMap<usize, Vec<&Example>> = BTreeMap::new();
    for e in test {
        let mut len = min_seq_len;
        while len < e.sequence.chars().count() + 2 {
            len *= 2;
        }
        buckets.entry(len).or_default().push(e);
    }
    let mut all = Predictions::default();
    let mut scores = Vec::new();
    for (len, examples) in &buckets {
        let batch = (batch_size * min_seq_len / len).max(1);
        let p = predict(trunk, head, target, examples, *len, batch, device)?;
        let (metric, value) = p.metric(target);
        scores.push(BucketScore {
            bucket: len.to_string(),
            proteins: examples.len(),
            items: p.len(),
            metric: metric.into(),
            value,
            loss: p.loss(),
        });
        all.extend(&p);
    }
    let (metric, value) = all.metric(target);
    scores.push(BucketScore {
        bucket: "all".into(),
        proteins: test.len(),
        items: all.len(),
        metric: metric.into(),
        value,
        loss: all.loss(),
    });
    Ok(scores)
}

const HEAD_PREFIX: &str = "head";

fn build_trunk(
    vars: &SeededVarMap,
    config: &proteinbert::Config,
    frozen: bool,
    padding_mask: bool,
    device: &Device,
) -> Result<ProteinBert> {
    let trunk = if frozen {
        // Plain tensors: the graph stops at the trunk's output, so stage 1 costs a forward only.
        let tensors: HashMap<String, Tensor> = vars
            .named_vars()
            .into_iter()
            .filter(|(n, _)| !n.starts_with(HEAD_PREFIX))
            .map(|(n, v)| (n, v.as_tensor().detach()))
            .collect();
        ProteinBert::load(VarBuilder::from_tensors(tensors, DType::F32, device), config)?
    } else {
        ProteinBert::load(vars.var_builder(DType::F32, device), config)?
    };
    Ok(trunk.with_padding_mask(padding_mask))
}

/// Runs every stage (resuming finished and interrupted ones with `resume`), then evaluates the
/// test set. `from`: a pretrained model directory, or `None` to start from `scratch_model`.
pub fn finetune_proteinbert(
    config: &FinetuneConfig,
    data: &SupervisedData,
    from: Option<&Path>,
    data_files: &[PathBuf],
    options: RunOptions,
) -> Result<FinetuneReport> {
    let RunOptions { out, resume, device, progress } = options;
    // ---- the trunk's weights ----
    let vars = SeededVarMap::new(config.seed);
    let (model_config, start) = match from {
        Some(dir) => {
            let dir = ModelDir::open(dir)?;
            let ModelConfig::Proteinbert(c) = dir.config().model.clone() else {
                return Err(Error::invalid(format!("{} is not a ProteinBERT model directory", dir.path().display())));
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
    let head_config = HeadConfig::proteinbert(data.level, data.target);
    let head_widths = (model_config.local_hidden_size(), model_config.global_hidden_size());
    LinearHead::load(vars.var_builder(DType::F32, device).pp(HEAD_PREFIX), head_config, head_widths.0, head_widths.1)?;
    let dir_config = DirectoryConfig {
        model: ModelConfig::Proteinbert(model_config.clone()),
        source: None,
        has_lm_head: false,
        heads: vec![StoredHead { prefix: HEAD_PREFIX.into(), config: head_config, labels: data.labels.clone() }],
    };

    // ---- the stages ----
    let mut previous: Option<(Box<dyn Optimizer>, Vec<String>)> = None;
    let mut stage_reports = Vec::new();
    for (k, stage) in config.stages.iter().enumerate() {
        let fits = |e: &&Example| e.sequence.chars().count() + 2 <= stage.seq_len;
        let train: Vec<&Example> = data.train.iter().filter(fits).collect();
        let n_train = train.len();
        let valid: Vec<&Example> = data.valid.iter().filter(fits).collect();
        let left_out = (data.train.len() - train.len(), data.valid.len() - valid.len());
        if train.is_empty() {
            return Err(Error::invalid(format!("stage {}: no training protein fits seq_len {}", k + 1, stage.seq_len)));
        }
        let frozen: Vec<String> = if stage.freeze_trunk {
            vars.named_vars().into_iter().map(|(n, _)| n).filter(|n| !n.starts_with(HEAD_PREFIX)).collect()
        } else {
            Vec::new()
        };
        let params = trainable_params(&vars, &frozen);
        let (optimizer, carried) = carry_optimizer(previous.take(), &params, &stage.train.optimizer);
        let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
        let mut trainer = Trainer::new(stage.train.clone(), vars.clone(), device.clone())?;
        trainer.params = params;
        trainer.optimizer = optimizer;
        trainer.model_dir_config = Some(dir_config.clone());
        trainer.progress = progress;
        let mut task = FinetuneStage {
            trunk: build_trunk(&vars, &model_config, stage.freeze_trunk, config.padding_mask, device)?,
            head: LinearHead::load(
                vars.var_builder(DType::F32, device).pp(HEAD_PREFIX),
                head_config,
                head_widths.0,
                head_widths.1,
            )?,
            target: data.target,
            train,
            valid,
            seq_len: stage.seq_len,
            batch_size: stage.batch_size,
            order: EpochOrder::new(config.seed.wrapping_add(k as u64), n_train),
            device: device.clone(),
        };
        let stage_json = serde_json::json!({"finetune": config, "stage": k + 1, "start": start});
        let provenance = Provenance::collect(config.seed, data_files, device)?;
        let run = RunDir::open(out.join(format!("stage-{}", k + 1)), &stage_json, &provenance, resume)?;
        let summary = trainer.run(&mut task, &run, resume)?;
        // Keras' restore_best_weights: continue from the best validation epoch.
        restore_best(&run, &summary, &vars, device)?;
        stage_reports.push(serde_json::json!({
            "stage": k + 1, "freeze_trunk": stage.freeze_trunk, "seq_len": stage.seq_len,
            "train": task.train.len(), "valid": task.valid.len(),
            "left_out_for_length": {"train": left_out.0, "valid": left_out.1},
            "optimizer_state_carried": carried, "updates": summary.updates, "epochs": summary.epochs_completed,
            "stopped_early": summary.stopped_early, "best_valid_loss": summary.best.map(|b| b.0),
            "seconds": summary.seconds,
        }));
        previous = Some((trainer.optimizer, names));
    }

    // ---- test, in length buckets ----
    let trunk = build_trunk(&vars, &model_config, true, config.padding_mask, device)?;
    let head = LinearHead::load(
        vars.var_builder(DType::F32, device).pp(HEAD_PREFIX),
        head_config,
        head_widths.0,
        head_widths.1,
    )?;
    let test_scores = evaluate_by_length(
        &trunk,
        &head,
        data.target,
        &data.test,
        config.test_min_seq_len,
        config.test_batch_size,
        device,
    )?;
    let spec = crate::data::tables::benchmark(&config.benchmark)?;
    // ProteinBERT maps letters outside its alphabet (B, Z, …) to <OTHER>: count them once here.
    let mut data_report = data.report.clone();
    let mut unknown = UnknownCounts::default();
    for e in data.train.iter().chain(&data.valid).chain(&data.test) {
        ResidueTokenizer.encode(&e.sequence, &mut unknown);
    }
    for (letter, n) in unknown.by_char {
        data_report.insert(format!("residues `{letter}` mapped to <OTHER>"), n);
    }
    let mut final_config = dir_config;
    final_config.source = Some(format!("fine-tuned on {} from {start}", config.benchmark));
    let tensors: HashMap<String, Tensor> =
        vars.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
    let model_path = out.join("model");
    if model_path.exists() {
        std::fs::remove_dir_all(&model_path).map_err(|e| Error::io(&model_path, e))?;
    }
    ModelDir::create(&model_path, &final_config, &tensors)?;
    let report = FinetuneReport {
        benchmark: config.benchmark.clone(),
        start,
        train: data.train.len(),
        valid: data.valid.len(),
        test: data.test.len(),
        data_report,
        stages: stage_reports,
        test_scores,
        paper_no_pretraining: spec.paper_scores.0,
        paper_pretrained: spec.paper_scores.1,
    };
    write_json(&out.join("results.json"), &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_with_an_undefined_bucket_reads_back() -> Result<()> {
        let bucket = |name: &str, value: f64| BucketScore {
            bucket: name.into(),
            proteins: 1,
            items: 1,
            metric: "roc_auc".into(),
            value,
            loss: 0.5,
        };
        let report = FinetuneReport {
            benchmark: "ProFET_NP_SP_Cleaved".into(),
            start: "scratch".into(),
            train: 1,
            valid: 1,
            test: 2,
            data_report: BTreeMap::new(),
            stages: vec![],
            test_scores: vec![bucket("512", 0.75), bucket("8192", f64::NAN)],
            paper_no_pretraining: 0.94,
            paper_pretrained: 0.978,
        };
        let tmp = tempfile::tempdir().unwrap();
        super::super::write_json(&tmp.path().join("results.json"), &report)?;
        assert!(std::fs::read_to_string(tmp.path().join("results.json")).unwrap().contains("null"));
        let back = FinetuneReport::read(tmp.path())?;
        assert_eq!(back.test_scores[0], report.test_scores[0]);
        assert!(back.test_scores[1].value.is_nan());
        let err = FinetuneReport::read(&tmp.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("results.json"), "{err}");
        Ok(())
    }

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
