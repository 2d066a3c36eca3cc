//! ProteinBERT on protein–protein interactions. The reference has no pair head (its users asked
//! for one, nadavbra/protein_bert#34); this is the benchmark fine-tuning with two proteins per
//! example, so that it can be set beside PRoBERTa's PPI fine-tuning on the same split.
//!
//! * Each pair's two proteins go through the one shared trunk separately (one batch of `2B` rows:
//!   the first proteins, then the second ones). The head combines their 15,599-wide global vectors,
//!   by default as `[a + b, |a − b|, a ⊙ b]` (`HeadConfig::proteinbert(Level::Pair,
//!   Target::Binary)`): symmetric, so a pair scores the same in either order, as an interaction
//!   has none. Then the reference head: dropout 0.5, one dense layer, a sigmoid, binary
//!   cross-entropy. `"pair": "concat"` in the config gives `[a, b]` instead (order-dependent).
//! * The same stages, loop, callbacks and best-weight restore as on the benchmarks. A training or
//!   validation pair whose longer protein does not fit a stage's length is left out of that stage
//!   (counted), as the reference does on the benchmarks; or, with `"long_proteins": "crop"`, its
//!   long proteins are cut to their first `seq_len − 2` residues (counted), as PRoBERTa truncates
//!   each protein of a pair: most human interaction pairs hold a protein over 510 residues. Test
//!   pairs are never cut: each is scored at the smallest length of the benchmarks' buckets
//!   (`test_min_seq_len · 2^k`) that holds both its proteins.
//! * Data: [`PairData`] from [`ppi_data`](crate::train::finetune::ppi::ppi_data) or
//!   [`ppi_split_dir`](crate::train::finetune::ppi::ppi_split_dir), the calls PRoBERTa's run uses:
//!   with the same `ppi` section, data limits and seed the two models see the same pairs.
//! * Output: `results.json` ([`PpiFinetuneReport`]: the test scores of all test pairs and per
//!   protein-overlap class, as PRoBERTa's) and `test_predictions.tsv` in PRoBERTa's format, in the
//!   order of the test pairs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use super::benchmarks::{fixed_batching, BucketScore};
use super::{FinetuneConfig, FinetuneModel, HEAD_PREFIX};
use crate::data::ppi::Pair;
use crate::models::directory::{ModelConfig, ModelDir};
use crate::models::heads::{HeadConfig, Level, LinearHead, PairCombination, Target};
use crate::models::proteinbert::ProteinBert;
use crate::tokenize::residue::ResidueTokenizer;
use crate::tokenize::UnknownCounts;
use crate::train::finetune::head_task::{predict, Encoded, HeadTask};
use crate::train::finetune::ppi::{
    nan_metrics, overlap_scores, pair_data_report, write_pair_predictions, OverlapScore, PairData, PpiOptions,
};
use crate::train::finetune::write_json;
use crate::train::objectives::supervised::{Predictions, TargetValue};
use crate::train::run_dir::RunOptions;
use crate::train::trainer::{Metrics, Task};
use crate::{Error, Result};

/// A ProteinBERT PPI fine-tuning: a benchmark config's keys plus PRoBERTa's `ppi` section.
///
/// ```
/// use protein_lm::models::heads::{Level, PairCombination, Target};
/// use protein_lm::train::finetune::PpiFinetuneConfig;
/// let config = PpiFinetuneConfig::load("configs/proteinbert-finetune-ppi-tiny.json")?;
/// config.check()?;
/// // A pair head on both proteins' global vectors, symmetric unless the config says `concat`.
/// let head = config.head();
/// assert_eq!((head.level, head.target), (Level::Pair, Target::Binary));
/// assert_eq!(PpiFinetuneConfig { pair: PairCombination::Concat, ..config }.head().pair, PairCombination::Concat);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpiFinetuneConfig {
    /// Stages, data limits, scratch model and test buckets, as on a benchmark.
    #[serde(flatten)]
    pub finetune: FinetuneConfig,
    /// How the pairs are made (negatives, fractions, training share): PRoBERTa's section.
    pub ppi: PpiOptions,
    /// How the head combines the two proteins: `symmetric` (default) or `concat`.
    #[serde(default)]
    pub pair: PairCombination,
    /// Training and validation pairs with a protein longer than a stage's length: `leave_out`
    /// (default, the reference's rule for the benchmarks) or `crop`.
    #[serde(default)]
    pub long_proteins: LongProteins,
}

/// What a stage does with a training or validation pair that holds a protein longer than its
/// length (START and END included); test pairs are never cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongProteins {
    /// The pair sits out the stage.
    #[default]
    LeaveOut,
    /// The long protein is cut to its first `seq_len − 2` residues.
    Crop,
}

impl PpiFinetuneConfig {
    /// Reads a JSON config, naming the file and line in errors.
    /// Unknown keys and out-of-range values are errors naming the key.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        crate::config::load_config(path.as_ref(), "ProteinBERT PPI fine-tuning config", Self::add_checks)
    }

    /// Range checks of every size and fraction, naming the offending key.
    pub fn check(&self) -> Result<()> {
        let mut c = crate::config::Checks::new("ProteinBERT PPI fine-tuning config");
        self.add_checks(&mut c);
        c.finish()
    }

    fn add_checks(&self, c: &mut crate::config::Checks) {
        self.finetune.add_checks(c);
        self.ppi.add_checks(c);
    }

    /// The head this config trains.
    pub fn head(&self) -> HeadConfig {
        HeadConfig { pair: self.pair, ..HeadConfig::proteinbert(Level::Pair, Target::Binary) }
    }
}

/// `pairs` as ProteinBERT reads them: each protein START, residues, END, the second one as the
/// partner (the trunk sees them separately). `crop_to`: a protein longer than that many tokens
/// keeps its first `crop_to − 2` residues.
pub fn encode_pairs(
    pairs: &[&Pair],
    sequences: &BTreeMap<String, String>,
    crop_to: Option<usize>,
) -> Result<Vec<Encoded>> {
    let encode = |id: &str| -> Result<Vec<u32>> {
        let sequence = sequences.get(id).ok_or_else(|| Error::invalid(format!("no sequence for protein `{id}`")))?;
        let sequence = match crop_to.and_then(|len| sequence.char_indices().nth(len.saturating_sub(2))) {
            Some((end, _)) => &sequence[..end],
            None => sequence.as_str(),
        };
        Ok(ResidueTokenizer.encode(sequence, &mut UnknownCounts::default()))
    };
    pairs
        .iter()
        .map(|p| {
            Ok(Encoded {
                name: format!("{}\t{}", p.a, p.b),
                ids: encode(&p.a)?,
                partner: Some(encode(&p.b)?),
                target: TargetValue::Binary(p.label == 1),
            })
        })
        .collect()
}

/// Residues of each protein of `sequences`.
fn lengths(sequences: &BTreeMap<String, String>) -> HashMap<&str, usize> {
    sequences.iter().map(|(id, s)| (id.as_str(), s.chars().count())).collect()
}

/// Residues of the longer protein of a pair (0 for an unknown protein: [`encode`] names it).
fn longer(pair: &Pair, lengths: &HashMap<&str, usize>) -> usize {
    let len = |id: &str| lengths.get(id).copied().unwrap_or(0);
    len(&pair.a).max(len(&pair.b))
}

/// Predictions over every pair in its order, each scored at the smallest `min_seq_len · 2^k` that
/// holds both its proteins (batch `batch_size · min_seq_len / length`); and the scores per length
/// bucket and pooled (`all`), as the benchmarks report them.
fn predict_by_length(
    trunk: &ProteinBert,
    head: &LinearHead,
    pairs: &[Pair],
    sequences: &BTreeMap<String, String>,
    min_seq_len: usize,
    batch_size: usize,
    device: &Device,
) -> Result<(Predictions, Vec<BucketScore>)> {
    let lengths = lengths(sequences);
    let mut buckets: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        let mut len = min_seq_len;
        while len < longer(p, &lengths) + 2 {
            len *= 2;
        }
        buckets.entry(len).or_default().push(i);
    }
    let n = pairs.len();
    let mut all = Predictions { scores: vec![0.0; n], labels_bool: vec![false; n], ..Default::default() };
    let mut scores = Vec::new();
    for (len, members) in &buckets {
        let batch: Vec<&Pair> = members.iter().map(|&i| &pairs[i]).collect();
        let encoded = encode_pairs(&batch, sequences, None)?;
        let items: Vec<&Encoded> = encoded.iter().collect();
        let batch_size = (batch_size * min_seq_len / len).max(1);
        let (p, _) = predict(trunk, head, &items, fixed_batching(*len), batch_size, device)?;
        for (k, &i) in members.iter().enumerate() {
            all.scores[i] = p.scores[k];
            all.labels_bool[i] = p.labels_bool[k];
        }
        all.loss_sum += p.loss_sum;
        all.loss_count += p.loss_count;
        let (metric, value) = p.metric(Target::Binary);
        let items = p.len();
        scores.push(BucketScore {
            bucket: len.to_string(),
            proteins: 2 * items,
            items,
            metric: metric.into(),
            value,
            loss: p.loss(),
        });
    }
    let (metric, value) = all.metric(Target::Binary);
    scores.push(BucketScore {
        bucket: "all".into(),
        proteins: 2 * n,
        items: n,
        metric: metric.into(),
        value,
        loss: all.loss(),
    });
    Ok((all, scores))
}

/// What a ProteinBERT PPI fine-tuning reports (`OUT/results.json`).
///
/// ```no_run
/// use std::path::Path;
/// use protein_lm::train::finetune::PpiFinetuneReport;
/// let report = PpiFinetuneReport::read(Path::new("results/demo/runs/proteinbert-ppi-conservative-20"))?;
/// println!("test ROC AUC {:.3}", report.test_scores["roc_auc"]);
/// for bucket in &report.test_by_length {
///     println!("longer protein ≤ {}: {} pairs, ROC AUC {:.3}", bucket.bucket, bucket.items, bucket.value);
/// }
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpiFinetuneReport {
    /// `ppi`.
    pub task: String,
    pub start: String,
    /// Pairs per split.
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    /// How the split was made, positives per split, test pairs by proteins seen in training,
    /// residues mapped to `<OTHER>`.
    pub data_report: serde_json::Value,
    /// Per stage: pairs left out for length, updates, epochs, best validation loss, seconds.
    pub stages: Vec<serde_json::Value>,
    /// All test pairs, the keys of PRoBERTa's report: loss, accuracy, precision, recall, f1, roc_auc.
    #[serde(deserialize_with = "nan_metrics")]
    pub test_scores: Metrics,
    /// Accuracy, precision, recall, ROC AUC of all test pairs and of each protein-overlap class.
    pub test_by_overlap: Vec<OverlapScore>,
    /// ROC AUC per length bucket of the longer protein, and pooled (`items` counts pairs,
    /// `proteins` both proteins of each).
    pub test_by_length: Vec<BucketScore>,
}

impl PpiFinetuneReport {
    /// Reads a finished run's `results.json` (`dir`: the run directory); an undefined metric,
    /// written as `null`, reads back as NaN.
    pub fn read(dir: &Path) -> Result<Self> {
        crate::train::run_dir::read_json(&dir.join("results.json"), "PPI fine-tuning results")
    }
}

/// Fine-tunes ProteinBERT on `data`'s pairs through the config's stages (resuming finished and
/// interrupted ones with `options.resume`), tests the final weights (each stage restored its best
/// validation epoch) and writes `OUT/results.json`, `OUT/test_predictions.tsv` and `OUT/model/`.
/// `from`: a pretrained model directory, or `None` to start from `scratch_model`.
///
/// ```no_run
/// use std::path::Path;
/// use candle_core::Device;
/// use protein_lm::train::finetune::ppi::ppi_split_dir;
/// use protein_lm::train::finetune::{finetune_proteinbert_ppi, PpiFinetuneConfig};
/// use protein_lm::train::run_dir::RunOptions;
/// let config = PpiFinetuneConfig::load("configs/proteinbert-finetune-ppi-demo.json")?;
/// // The split PRoBERTa's run used (`protein-lm data split --pairs …`), so the two compare pair for pair.
/// let data = ppi_split_dir(Path::new("results/demo/splits/ppi-conservative"), &config.finetune.data, config.finetune.seed)?;
/// let report = finetune_proteinbert_ppi(
///     &config,
///     &data,
///     Some(Path::new("results/demo/runs/proteinbert-pretrain/model")),
///     &[],
///     RunOptions { out: Path::new("results/demo/runs/proteinbert-ppi-conservative-20"), resume: true, device: &Device::Cpu, progress: true },
/// )?;
/// println!("{:?}", report.test_scores);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn finetune_proteinbert_ppi(
    config: &PpiFinetuneConfig,
    data: &PairData,
    from: Option<&Path>,
    data_files: &[PathBuf],
    options: RunOptions,
) -> Result<PpiFinetuneReport> {
    data.check_sequences()?;
    if data.train.is_empty() {
        return Err(Error::invalid("no training pairs"));
    }
    let (out, device) = (options.out, options.device);
    let model = FinetuneModel::new(&config.finetune, from, config.head(), Vec::new(), device)?;
    let run_config = serde_json::to_value(config).expect("config serialises");
    let lengths = lengths(&data.sequences);
    let stages = model.run_stages(&config.finetune, &run_config, data_files, options, |k, stage, trunk, head| {
        let crop = config.long_proteins == LongProteins::Crop;
        let fits = |p: &&Pair| longer(p, &lengths) + 2 <= stage.seq_len;
        let train: Vec<&Pair> = data.train.iter().filter(|p| crop || fits(p)).collect();
        let valid: Vec<&Pair> = data.valid.iter().filter(|p| crop || fits(p)).collect();
        let cropped = |pairs: &[Pair]| if crop { pairs.iter().filter(|p| !fits(p)).count() } else { 0 };
        if train.is_empty() {
            return Err(Error::invalid(format!(
                "stage {}: no training pair has both proteins within seq_len {} (START and END included)",
                k + 1,
                stage.seq_len
            )));
        }
        let report = serde_json::json!({
            "train": train.len(), "valid": valid.len(),
            "left_out_for_length": {"train": data.train.len() - train.len(), "valid": data.valid.len() - valid.len()},
            "cropped_to_fit": {"train": cropped(&data.train), "valid": cropped(&data.valid)},
        });
        let crop_to = crop.then_some(stage.seq_len);
        let task = HeadTask::new(
            trunk,
            head,
            (encode_pairs(&train, &data.sequences, crop_to)?, encode_pairs(&valid, &data.sequences, crop_to)?),
            fixed_batching(stage.seq_len),
            stage.batch_size,
            config.finetune.seed.wrapping_add(k as u64),
            device,
        );
        Ok((Box::new(task) as Box<dyn Task>, report))
    })?;

    // ---- test, every pair at a length that holds it ----
    let (trunk, head) = (model.trunk(true, device)?, model.head(device)?);
    let (min_len, batch) = (config.finetune.test_min_seq_len, config.finetune.test_batch_size);
    let (predictions, test_by_length) =
        predict_by_length(&trunk, &head, &data.test, &data.sequences, min_len, batch, device)?;
    write_pair_predictions(&out.join("test_predictions.tsv"), &data.test, &predictions.scores)?;
    let test_by_overlap = overlap_scores(&data.train, &data.test, &predictions.scores)?;
    let mut data_report = pair_data_report(data);
    // ProteinBERT maps letters outside its alphabet (B, Z, …) to <OTHER>: count them once here.
    let mut unknown = UnknownCounts::default();
    for sequence in data.sequences.values() {
        ResidueTokenizer.encode(sequence, &mut unknown);
    }
    for (letter, n) in unknown.by_char {
        data_report[format!("residues `{letter}` mapped to <OTHER>")] = n.into();
    }
    model.save(&out.join("model"), format!("fine-tuned on protein pairs from {}", model.start))?;
    let report = PpiFinetuneReport {
        task: "ppi".into(),
        start: model.start.clone(),
        train: data.train.len(),
        valid: data.valid.len(),
        test: data.test.len(),
        data_report,
        stages,
        test_scores: predictions.summary(Target::Binary),
        test_by_overlap,
        test_by_length,
    };
    write_json(&out.join("results.json"), &report)?;
    Ok(report)
}

/// P(interaction) of any labelled `pairs` under a fine-tuned ProteinBERT pair model (`model_dir`:
/// a run's `model/`), in the order of `pairs`, scored as the run scored its test pairs
/// (`config`'s test buckets and padding mask): e.g. the training pairs, to measure over-fitting.
/// `summary(Target::Binary)` of the result gives accuracy, precision, recall, ROC AUC.
pub fn evaluate_pairs(
    model_dir: &Path,
    pairs: &[Pair],
    sequences: &BTreeMap<String, String>,
    config: &PpiFinetuneConfig,
    device: &Device,
) -> Result<Predictions> {
    let dir = ModelDir::open(model_dir)?;
    let ModelConfig::Proteinbert(c) = dir.config().model.clone() else {
        return Err(Error::invalid(format!("{} is not a ProteinBERT model directory", dir.path().display())));
    };
    let stored = dir
        .config()
        .heads
        .iter()
        .find(|h| h.prefix == HEAD_PREFIX && h.config.level == Level::Pair)
        .cloned()
        .ok_or_else(|| {
            Error::invalid(format!(
                "{} has no pair head `{HEAD_PREFIX}` (not a PPI fine-tuning?)",
                dir.path().display()
            ))
        })?;
    let vb = dir.var_builder(DType::F32, device)?;
    let trunk = ProteinBert::load(vb.clone(), &c)?.with_padding_mask(config.finetune.padding_mask);
    let head = LinearHead::load(vb.pp(HEAD_PREFIX), stored.config, c.local_hidden_size(), c.global_hidden_size())?;
    let (min_len, batch) = (config.finetune.test_min_seq_len, config.finetune.test_batch_size);
    let (predictions, _) = predict_by_length(&trunk, &head, pairs, sequences, min_len, batch, device)?;
    Ok(predictions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::finetune::head_task::head_logits;

    fn config(pair: PairCombination) -> PpiFinetuneConfig {
        let mut c: PpiFinetuneConfig =
            serde_json::from_str(include_str!("../../../../configs/proteinbert-finetune-ppi-tiny.json")).unwrap();
        c.pair = pair;
        c
    }

    /// Logits of (a, b) pairs under a random model with the given combination, in evaluation mode.
    fn logits(pair: PairCombination, pairs: &[Pair], sequences: &BTreeMap<String, String>) -> Result<Vec<f32>> {
        let config = config(pair);
        let model = FinetuneModel::new(&config.finetune, None, config.head(), Vec::new(), &Device::Cpu)?;
        let refs: Vec<&Pair> = pairs.iter().collect();
        let encoded = encode_pairs(&refs, sequences, None)?;
        let items: Vec<&Encoded> = encoded.iter().collect();
        let (trunk, head) = (model.trunk(true, &Device::Cpu)?, model.head(&Device::Cpu)?);
        let (logits, _, _) = head_logits(&trunk, &head, &items, fixed_batching(64), false, &Device::Cpu, None)?;
        Ok(logits.flatten_all()?.to_vec1()?)
    }

    #[test]
    fn long_proteins_are_cut_to_their_first_residues_only_when_cropping() -> Result<()> {
        let long: String = "ACDEFGHIKLMNPQRSTVWY".repeat(5);
        let sequences = BTreeMap::from([("long".to_string(), long.clone()), ("short".to_string(), "MKV".to_string())]);
        let pair = Pair { a: "long".into(), b: "short".into(), label: 1 };
        let cropped = encode_pairs(&[&pair], &sequences, Some(64))?;
        let (ids, tokens) = fixed_batching(64).ids(&cropped.iter().collect::<Vec<_>>(), &Device::Cpu)?;
        let rows = ids.to_vec2::<u32>()?;
        let expected = ResidueTokenizer.encode(&long[..62], &mut UnknownCounts::default());
        assert_eq!(rows[0], expected, "START, the first 62 residues, END");
        assert_eq!(rows[1][..5], ResidueTokenizer.encode("MKV", &mut UnknownCounts::default())[..]);
        assert_eq!(tokens, 64 + 5);
        let whole = encode_pairs(&[&pair], &sequences, None)?;
        let err = fixed_batching(64).ids(&whole.iter().collect::<Vec<_>>(), &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("long\tshort") && err.contains("102 tokens"), "{err}");
        Ok(())
    }

    #[test]
    fn a_missing_or_broken_report_is_an_error_naming_the_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let err = PpiFinetuneReport::read(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("results.json"), "{err}");
        std::fs::write(tmp.path().join("results.json"), "{\n  \"task\": \"ppi\",\n  \"train\": \"many\"\n}").unwrap();
        let err = PpiFinetuneReport::read(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("results.json:3") && err.contains("PPI fine-tuning results"), "{err}");
    }

    #[test]
    fn the_head_reads_both_proteins_and_the_symmetric_one_ignores_their_order() -> Result<()> {
        let sequences: BTreeMap<String, String> =
            [("A", "MKTAYIAKQRQISFVKSHFSRQ"), ("B", "GGSWWLLPPHHDDE"), ("C", "MCCCYYYRRRNNNE")]
                .iter()
                .map(|(id, s)| (id.to_string(), s.to_string()))
                .collect();
        let pair = |a: &str, b: &str| Pair { a: a.into(), b: b.into(), label: 1 };
        let pairs = [pair("A", "B"), pair("B", "A"), pair("A", "C")];
        let symmetric = logits(PairCombination::Symmetric, &pairs, &sequences)?;
        assert!((symmetric[0] - symmetric[1]).abs() < 1e-5, "{symmetric:?}");
        // The second protein matters: another partner, another score.
        assert!((symmetric[0] - symmetric[2]).abs() > 1e-3, "{symmetric:?}");
        let concat = logits(PairCombination::Concat, &pairs, &sequences)?;
        assert!((concat[0] - concat[1]).abs() > 1e-3, "concatenation is order-dependent: {concat:?}");
        Ok(())
    }

    #[test]
    fn shipped_configs_read_and_check() -> Result<()> {
        for scale in ["tiny", "demo", "paper"] {
            let path =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("configs/proteinbert-finetune-ppi-{scale}.json"));
            let c = PpiFinetuneConfig::load(&path)?;
            assert_eq!((c.pair, c.ppi.fractions.len(), c.finetune.stages.len()), (PairCombination::Symmetric, 3, 3));
            assert_eq!(
                c.long_proteins,
                LongProteins::Crop,
                "{scale}: human pairs mostly hold a protein over 510 residues"
            );
        }
        // A benchmark config has no `ppi` section: the error names it and the file.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/proteinbert-finetune-tiny.json");
        let err = PpiFinetuneConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("proteinbert-finetune-tiny.json") && err.contains("ppi"), "{err}");
        Ok(())
    }
}
