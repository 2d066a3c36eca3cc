//! A head written the way a user writes one (a struct, `impl Head`, built on the `VarBuilder`
//! it is given), trained by `finetune_head` on both models: per protein, per residue and per pair,
//! with the trunk fine-tuned or frozen. The tasks are ones a small random-start model can learn
//! (a composition signal), so a wiring bug — wrong targets, head never trained, best weights not
//! restored, predictions out of order — shows up as a score near chance.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use protein_lm::data::ppi::Pair;
use protein_lm::models::directory::{DirectoryConfig, ModelConfig, ModelDir};
use protein_lm::models::init::SeededVarMap;
use protein_lm::models::{proberta, proteinbert};
use protein_lm::prelude::*;
use protein_lm::train::finetune::ppi::PairData;

/// Attention pooling then one linear layer: the head of notebook 05, for any target.
struct AttentionHead {
    score: Linear,
    out: Linear,
    target: Target,
}

impl AttentionHead {
    fn new(vb: VarBuilder, widths: Widths, target: Target) -> Result<Self> {
        let d = widths.residue;
        Ok(Self { score: linear(d, 1, vb.pp("score"))?, out: linear(d, target.outputs(), vb.pp("out"))?, target })
    }
}

impl Head for AttentionHead {
    fn level(&self) -> Level {
        Level::Protein
    }
    fn target(&self) -> Target {
        self.target
    }
    fn forward(&self, input: HeadInput<'_>, _rng: Option<&mut Rng>) -> Result<Tensor> {
        let f = input.single()?;
        let scores = self.score.forward(&f.residues)?.squeeze(D::Minus1)?;
        let (pooled, _) = attention_pool(&f.residues, &f.mask, &scores)?;
        Ok(self.out.forward(&pooled)?)
    }
}

/// One linear layer per residue.
struct ResidueHead(Linear);

impl Head for ResidueHead {
    fn level(&self) -> Level {
        Level::Residue
    }
    fn target(&self) -> Target {
        Target::Binary
    }
    fn forward(&self, input: HeadInput<'_>, _rng: Option<&mut Rng>) -> Result<Tensor> {
        Ok(self.0.forward(&input.single()?.residues)?)
    }
}

/// Mean-pooled proteins, combined symmetrically for a pair (or pooled jointly when the model packs
/// both into one input).
struct PairHead(Linear);

impl Head for PairHead {
    fn level(&self) -> Level {
        Level::Pair
    }
    fn target(&self) -> Target {
        Target::Binary
    }
    fn forward(&self, input: HeadInput<'_>, _rng: Option<&mut Rng>) -> Result<Tensor> {
        let pooled = match input {
            HeadInput::Two(a, b) => {
                PairCombination::Symmetric.combine(&Pooling::Mean.pool(a)?, &Pooling::Mean.pool(b)?)?
            }
            HeadInput::One(f) => Pooling::Mean.pool(f)?,
        };
        Ok(self.0.forward(&pooled)?)
    }
}

const LETTERS: &[u8] = b"ACDEFGHIKLMNPQRSTVWY";

fn random_sequence(rng: &mut Rng, len: usize, alphabet: &[u8]) -> String {
    (0..len).map(|_| alphabet[rng.below(alphabet.len() as u64) as usize] as char).collect()
}

/// Proteins whose target is their share of K, L and M (numeric) or whether it is above 25 %.
fn composition_data(n: usize, binary: bool, seed: u64) -> SupervisedData {
    let mut rng = Rng::new(seed);
    let mut examples: Vec<Example> = (0..n)
        .map(|i| {
            let share = rng.below(60) as f64 / 100.0;
            let len = 20 + rng.below(20) as usize;
            let seq: String = (0..len)
                .map(|_| {
                    if (rng.below(1000) as f64) < share * 1000.0 {
                        b"KLM"[rng.below(3) as usize] as char
                    } else {
                        b"ACDEG"[rng.below(5) as usize] as char
                    }
                })
                .collect();
            let klm = seq.chars().filter(|c| "KLM".contains(*c)).count() as f64 / len as f64;
            let target = if binary { TargetValue::Binary(klm > 0.25) } else { TargetValue::Numeric(klm as f32) };
            Example { id: format!("p{i}"), sequence: seq, target }
        })
        .collect();
    let test = examples.split_off(n * 3 / 4);
    let valid = examples.split_off(examples.len() * 4 / 5);
    SupervisedData {
        level: Level::Protein,
        target: if binary { Target::Binary } else { Target::Numeric },
        labels: vec![],
        train: examples,
        valid,
        test,
        report: BTreeMap::new(),
    }
}

/// A random ProteinBERT model directory (the tiny config).
fn proteinbert_dir(dir: &Path) -> PathBuf {
    let config: proteinbert::Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 26, "n_annotations": 16, "d_local": 16, "d_global": 32, "n_blocks": 2, "n_heads": 2,
        "d_key": 8, "conv_kernel_size": 9, "wide_conv_dilation": 5, "layer_norm_eps": 0.001
    }))
    .unwrap();
    let vars = SeededVarMap::new(3);
    proteinbert::ProteinBert::load(vars.var_builder(DType::F32, &Device::Cpu), &config).unwrap();
    save(dir.join("proteinbert"), ModelConfig::Proteinbert(config), &vars, &[])
}

/// A random PRoBERTa model directory with a one-letter-per-piece dictionary.
fn proberta_dir(dir: &Path) -> PathBuf {
    let pieces = LETTERS.iter().flat_map(|&c| [((c as char).to_string(), 10), (format!("▁{}", c as char), 1)]);
    let tokenizer = ProbertaTokenizer::dict_only(FairseqDictionary::build(pieces));
    let mut config: proberta::Config = serde_json::from_str(
        &serde_json::to_string(&serde_json::json!({
            "vocab_size": 0, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 32, "max_position_embeddings": 130, "pad_token_id": 1, "layer_norm_eps": 1e-05,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "type_vocab_size": 0,
            "zero_padded_embeddings": true
        }))
        .unwrap(),
    )
    .unwrap();
    config.vocab_size = tokenizer.dictionary.len();
    let vars = SeededVarMap::new(3);
    proberta::Encoder::load(vars.var_builder(DType::F32, &Device::Cpu), &config).unwrap();
    save(dir.join("proberta"), ModelConfig::Proberta(config), &vars, &tokenizer.files().unwrap())
}

fn save(path: PathBuf, model: ModelConfig, vars: &SeededVarMap, files: &[(String, Vec<u8>)]) -> PathBuf {
    let tensors: HashMap<String, Tensor> =
        vars.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
    let config = DirectoryConfig { model, source: Some("random (test)".into()), has_lm_head: false, heads: vec![] };
    let dir = ModelDir::create(&path, &config, &tensors).unwrap();
    for (name, bytes) in files {
        dir.write_file(name, bytes).unwrap();
    }
    path
}

fn settings(epochs: u64, lr: f64) -> HeadTraining {
    let mut s = HeadTraining::epochs(epochs, lr);
    s.max_len = 64;
    s.batch_size = 8;
    s.train.early_stopping.as_mut().unwrap().patience = epochs as u32;
    s
}

fn options(out: &Path) -> RunOptions<'_> {
    RunOptions { out, resume: false, device: &Device::Cpu, progress: false }
}

#[test]
fn an_attention_head_learns_a_numeric_target_on_both_models_and_its_predictions_follow_the_test_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = composition_data(200, false, 1);
    for (name, from) in [("proteinbert", proteinbert_dir(tmp.path())), ("proberta", proberta_dir(tmp.path()))] {
        let out = tmp.path().join(format!("run-{name}"));
        let run = finetune_head(
            &from,
            |vb, widths| AttentionHead::new(vb, widths, Target::Numeric),
            &data,
            &settings(12, 3e-3),
            options(&out),
        )
        .unwrap();
        let spearman = run.report.test_scores["spearman"];
        println!("{name}: {:?}", run.report);
        assert!(spearman > 0.8, "{name}: test Spearman {spearman}");
        assert_eq!(run.report.model, name);
        assert!(run.report.tested.starts_with("best/"), "{}", run.report.tested);
        // The prediction file follows the test examples, and its values are the returned scores.
        let rows = std::fs::read_to_string(out.join("test_predictions.tsv")).unwrap();
        let rows: Vec<Vec<&str>> = rows.lines().skip(1).map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), data.test.len());
        for ((row, e), score) in rows.iter().zip(&data.test).zip(&run.test_predictions.scores) {
            assert_eq!(row[0], e.id);
            let TargetValue::Numeric(y) = e.target else { unreachable!() };
            assert!((row[1].parse::<f64>().unwrap() - y as f64).abs() < 1e-6);
            assert!((row[2].parse::<f64>().unwrap() - score).abs() < 1e-5);
        }
        assert_eq!(HeadReport::read(&out).unwrap(), run.report);
    }
}

#[test]
fn a_head_on_a_frozen_trunk_learns_and_leaves_the_trunk_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let data = composition_data(200, true, 2);
    let from = proteinbert_dir(tmp.path());
    let out = tmp.path().join("frozen");
    let run = finetune_head(
        &from,
        |vb, widths| AttentionHead::new(vb, widths, Target::Binary),
        &data,
        &settings(10, 1e-2).frozen(),
        options(&out),
    )
    .unwrap();
    let auc = run.report.test_scores["roc_auc"];
    assert!(auc > 0.9, "frozen trunk: test ROC AUC {auc}");
    // The trunk's weights in best/ equal the pretrained ones.
    let before = ModelDir::open(&from).unwrap().tensors(DType::F32, &Device::Cpu).unwrap();
    let after = candle_core::safetensors::load(out.join("best/model.safetensors"), &Device::Cpu).unwrap();
    for (name, tensor) in &before {
        let diff = (tensor - &after[name]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0, "{name} moved on a frozen trunk");
    }
    assert!(after.keys().any(|k| k.starts_with("head.score")), "the head is saved with the trunk");
}

#[test]
fn a_residue_head_and_a_pair_head_train_through_the_same_call() {
    let tmp = tempfile::tempdir().unwrap();
    let proteinbert = proteinbert_dir(tmp.path());
    // Per residue: is this residue K, L or M.
    let mut data = composition_data(120, true, 3);
    data.level = Level::Residue;
    for e in data.train.iter_mut().chain(&mut data.valid).chain(&mut data.test) {
        e.target = TargetValue::PerResidue(e.sequence.chars().map(|c| "KLM".contains(c) as u32).collect());
    }
    let run = finetune_head(
        &proteinbert,
        |vb, widths| Ok(ResidueHead(linear(widths.residue, 1, vb.pp("dense"))?)),
        &data,
        &settings(6, 1e-2),
        options(&tmp.path().join("residues")),
    )
    .unwrap();
    assert!(run.report.test_scores["roc_auc"] > 0.95, "{:?}", run.report.test_scores);
    // PRoBERTa refuses per-residue data, naming why.
    let err = finetune_head(
        &proberta_dir(tmp.path()),
        |vb, widths| Ok(ResidueHead(linear(widths.residue, 1, vb.pp("dense"))?)),
        &data,
        &settings(1, 1e-2),
        options(&tmp.path().join("refused")),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("per-residue") && err.contains("ProteinBERT"), "{err}");

    // Pairs interact when both proteins come from one alphabet.
    let mut rng = Rng::new(4);
    let mut sequences = BTreeMap::new();
    for i in 0..60 {
        let alphabet: &[u8] = if i % 2 == 0 { b"ACDEG" } else { b"KLMNR" };
        let len = 15 + rng.below(10) as usize;
        sequences.insert(format!("P{i}"), random_sequence(&mut rng, len, alphabet));
    }
    let pairs: Vec<Pair> = (0..160)
        .map(|_| {
            let (a, b) = (rng.below(60), rng.below(60));
            Pair { a: format!("P{a}"), b: format!("P{b}"), label: (a % 2 == b % 2) as u8 }
        })
        .collect();
    let pair_data = PairData {
        train: pairs[..100].to_vec(),
        valid: pairs[100..120].to_vec(),
        test: pairs[120..].to_vec(),
        sequences,
        report: BTreeMap::new(),
    };
    for (name, from) in [("proteinbert", &proteinbert), ("proberta", &proberta_dir(&tmp.path().join("b")))] {
        let out = tmp.path().join(format!("pairs-{name}"));
        let run = finetune_head(
            from,
            |vb, widths| {
                let width = if name == "proteinbert" { 3 * widths.residue } else { widths.residue };
                Ok(PairHead(linear(width, 1, vb.pp("dense"))?))
            },
            &pair_data,
            &settings(15, 1e-2),
            options(&out),
        )
        .unwrap();
        println!("{name} pairs: {:?}", run.report.test_scores);
        let rows = std::fs::read_to_string(out.join("test_predictions.tsv")).unwrap();
        let mut lines = rows.lines();
        assert_eq!(lines.next().unwrap(), "protein_a\tprotein_b\tlabel\tpredicted\tscore");
        let first: Vec<&str> = lines.next().unwrap().split('\t').collect();
        assert_eq!(first[..3], [pairs[120].a.as_str(), pairs[120].b.as_str(), &pairs[120].label.to_string()]);
        if name == "proteinbert" {
            assert!(run.report.test_scores["roc_auc"] > 0.9, "{name}: {:?}", run.report.test_scores);
        }
    }
}

#[test]
fn a_head_that_does_not_fit_the_data_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let from = proteinbert_dir(tmp.path());
    let data = composition_data(40, false, 5);
    let err = finetune_head(
        &from,
        |vb, widths| AttentionHead::new(vb, widths, Target::Binary),
        &data,
        &settings(1, 1e-3),
        options(&tmp.path().join("a")),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("Binary") && err.contains("Numeric"), "{err}");
    // A head whose layers are not built on the given VarBuilder would never train.
    let err = finetune_head(
        &from,
        |_vb, widths| {
            AttentionHead::new(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), widths, Target::Numeric)
        },
        &data,
        &settings(1, 1e-3),
        options(&tmp.path().join("b")),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("no variables under `head.`"), "{err}");
    let err = finetune_head(
        &tmp.path().join("missing"),
        |vb, widths| AttentionHead::new(vb, widths, Target::Numeric),
        &data,
        &settings(1, 1e-3),
        options(&tmp.path().join("c")),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("missing"), "{err}");
}
