//! ProteinBERT on one of its benchmarks: one protein per example, the test set in length buckets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::{FinetuneConfig, FinetuneModel};
use crate::analysis::ppi::nan_if_null;
use crate::models::heads::{Head, HeadConfig};
use crate::models::proteinbert::ProteinBert;
use crate::tokenize::residue::{ResidueTokenizer, PAD};
use crate::tokenize::UnknownCounts;
use crate::train::finetune::head_task::{predict, Batching, Encoded, HeadTask, Padding};
use crate::train::finetune::{write_json, Example, SupervisedData};
use crate::train::objectives::supervised::Predictions;
use crate::train::run_dir::RunOptions;
use crate::train::trainer::Task;
use crate::{Error, Result};

/// `examples` as ProteinBERT reads them: START, residues, END. Letters outside the alphabet map
/// to `<OTHER>`; they are counted once for the whole data set, in the run's report.
pub fn encode_examples<'e>(examples: impl IntoIterator<Item = &'e Example>) -> Vec<Encoded> {
    examples
        .into_iter()
        .map(|e| Encoded {
            name: e.id.clone(),
            ids: ResidueTokenizer.encode(&e.sequence, &mut UnknownCounts::default()),
            partner: None,
            target: e.target.clone(),
        })
        .collect()
}

/// The reference's batches: every row padded to the stage's (or test bucket's) length.
pub fn fixed_batching(seq_len: usize) -> Batching {
    Batching { padding: Padding::Fixed(seq_len), pad_id: PAD }
}

/// Scores of one test bucket.
///
/// ```
/// use protein_lm::train::finetune::BucketScore;
/// // As results.json holds them: a bucket with one class only has no ROC AUC (null, read as NaN).
/// let json = r#"[{"bucket": "512", "proteins": 30, "items": 30, "metric": "roc_auc", "value": 0.93, "loss": 0.31},
///               {"bucket": "1024", "proteins": 2, "items": 2, "metric": "roc_auc", "value": null, "loss": 0.7}]"#;
/// let scores: Vec<BucketScore> = serde_json::from_str(json).unwrap();
/// assert_eq!(scores[0].value, 0.93);
/// assert!(scores[1].value.is_nan());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketScore {
    /// `"512"`, `"1024"`, … or `"all"`.
    pub bucket: String,
    pub proteins: usize,
    /// Counted items (proteins, or residues for per-residue tasks).
    pub items: usize,
    pub metric: String,
    #[serde(deserialize_with = "nan_if_null")]
    pub value: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
}

/// What a fine-tuning run reports.
///
/// ```no_run
/// use std::path::Path;
/// use protein_lm::train::finetune::FinetuneReport;
/// let report = FinetuneReport::read(Path::new("results/demo/runs/proteinbert-stability-pretrained"))?;
/// let all = report.test_scores.iter().find(|s| s.bucket == "all").unwrap();
/// println!("{}: {} {:.3} (paper: {:.3})", report.benchmark, all.metric, all.value, report.paper_pretrained);
/// # Ok::<(), protein_lm::Error>(())
/// ```
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

/// Test scores in the reference's length buckets, and pooled: each protein is scored at the
/// smallest `min_seq_len · 2^k` that holds it, batch `batch_size · min_seq_len / length`.
pub fn evaluate_by_length<H: Head>(
    trunk: &ProteinBert,
    head: &H,
    test: &[Example],
    min_seq_len: usize,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<BucketScore>> {
    let target = head.target();
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
        let encoded = encode_examples(examples.iter().copied());
        let items: Vec<&Encoded> = encoded.iter().collect();
        let (p, _) = predict(trunk, head, &items, fixed_batching(*len), batch, device)?;
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

/// Runs every stage (resuming finished and interrupted ones with `resume`), then evaluates the
/// test set. `from`: a pretrained model directory, or `None` to start from `scratch_model`.
///
/// ```no_run
/// use std::path::Path;
/// use candle_core::Device;
/// use protein_lm::data::resolver::DataResolver;
/// use protein_lm::data::tables::{benchmark_files, load_benchmark};
/// use protein_lm::train::finetune::{finetune_proteinbert, FinetuneConfig, SupervisedData};
/// use protein_lm::train::run_dir::RunOptions;
/// let config = FinetuneConfig::load("configs/proteinbert-finetune-demo.json")?;
/// let data = SupervisedData::from_benchmark(&load_benchmark("stability")?, &config.data, config.seed)?;
/// let report = finetune_proteinbert(
///     &config,
///     &data,
///     Some(Path::new("results/demo/runs/proteinbert-pretrain/model")),
///     &benchmark_files(&DataResolver::from_env(), "stability"),
///     RunOptions { out: Path::new("results/demo/runs/proteinbert-stability-pretrained"), resume: true, device: &Device::Cpu, progress: true },
/// )?;
/// for score in &report.test_scores {
///     println!("{:>5}: {} {:.3} ({} proteins)", score.bucket, score.metric, score.value, score.proteins);
/// }
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn finetune_proteinbert(
    config: &FinetuneConfig,
    data: &SupervisedData,
    from: Option<&Path>,
    data_files: &[PathBuf],
    options: RunOptions,
) -> Result<FinetuneReport> {
    let out = options.out;
    let device = options.device;
    let model = FinetuneModel::new(
        config,
        from,
        HeadConfig::proteinbert(data.level, data.target),
        data.labels.clone(),
        device,
    )?;
    let stages = model.run_stages(config, &serde_json::to_value(config).expect("config serialises"), data_files, options, |k, stage, trunk, head| {
        let fits = |e: &&Example| e.sequence.chars().count() + 2 <= stage.seq_len;
        let train: Vec<&Example> = data.train.iter().filter(fits).collect();
        let valid: Vec<&Example> = data.valid.iter().filter(fits).collect();
        if train.is_empty() {
            return Err(Error::invalid(format!("stage {}: no training protein fits seq_len {}", k + 1, stage.seq_len)));
        }
        let report = serde_json::json!({
            "train": train.len(), "valid": valid.len(),
            "left_out_for_length": {"train": data.train.len() - train.len(), "valid": data.valid.len() - valid.len()},
        });
        let task = HeadTask::new(
            trunk,
            head,
            (encode_examples(train), encode_examples(valid)),
            fixed_batching(stage.seq_len),
            stage.batch_size,
            config.seed.wrapping_add(k as u64),
            device,
        );
        Ok((Box::new(task) as Box<dyn Task>, report))
    })?;

    // ---- test, in length buckets ----
    let (trunk, head) = (model.trunk(true, device)?, model.head(device)?);
    let test_scores =
        evaluate_by_length(&trunk, &head, &data.test, config.test_min_seq_len, config.test_batch_size, device)?;
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
    model.save(&out.join("model"), format!("fine-tuned on {} from {}", config.benchmark, model.start))?;
    let report = FinetuneReport {
        benchmark: config.benchmark.clone(),
        start: model.start.clone(),
        train: data.train.len(),
        valid: data.valid.len(),
        test: data.test.len(),
        data_report,
        stages,
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
        crate::train::finetune::write_json(&tmp.path().join("results.json"), &report)?;
        assert!(std::fs::read_to_string(tmp.path().join("results.json")).unwrap().contains("null"));
        let back = FinetuneReport::read(tmp.path())?;
        assert_eq!(back.test_scores[0], report.test_scores[0]);
        assert!(back.test_scores[1].value.is_nan());
        let err = FinetuneReport::read(&tmp.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("results.json"), "{err}");
        Ok(())
    }
}
