//! Both networks against their reference implementations on random weights of reduced configs:
//! ProteinBERT against the original Keras package (TF 2.15), PRoBERTa against Hugging Face
//! transformers. Fixtures and the scripts that made them: `tests/fixtures/proteinbert/`,
//! `tests/fixtures/proberta/` (Python only to regenerate them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use protein_lm::models::proteinbert::import::{from_keras_weights, KerasArray};
use protein_lm::models::proteinbert::{self, ProteinBert};

const TOLERANCE: f32 = 1e-5;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Tensors of a safetensors file and its string metadata.
fn read_safetensors(path: &Path) -> (HashMap<String, Tensor>, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    (tensors, meta.metadata().clone().unwrap_or_default())
}

/// The 53 Keras arrays of the fixture in `get_weights()` order, from their names.
fn keras_arrays(tensors: &HashMap<String, Tensor>, meta: &HashMap<String, String>) -> Vec<KerasArray> {
    let order: Vec<String> = serde_json::from_str(&meta["keras_get_weights_order"]).unwrap();
    order
        .iter()
        .map(|name| {
            let t = &tensors[&format!("keras/{name}")];
            KerasArray { shape: t.dims().to_vec(), values: t.flatten_all().unwrap().to_vec1::<f32>().unwrap() }
        })
        .collect()
}

fn fixture_config() -> proteinbert::Config {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("proteinbert/config.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("kind");
    serde_json::from_value(v).unwrap()
}

/// Compares the network built from `weights` with the Keras outputs at both padded lengths and
/// returns the largest difference of each output kind.
fn compare_proteinbert(weights: HashMap<String, Tensor>, config: &proteinbert::Config) -> [f32; 5] {
    let model = ProteinBert::load(VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu), config).unwrap();
    let (io, _) = read_safetensors(&fixture("proteinbert/inputs_and_outputs.safetensors"));
    let mut worst = [0f32; 5];
    for len in [40, 64] {
        let get = |k: &str| io[&format!("L{len}.{k}")].clone();
        let tokens = get("tokens").to_dtype(DType::U32).unwrap();
        let options = proteinbert::Forward { mask: None, attention: true };
        let out = model.forward(&tokens, &get("annotations"), options).unwrap();
        let attention = out.attention.as_ref().unwrap();
        let diffs = [
            max_abs_diff(&out.token_probabilities().unwrap(), &get("token_probs")),
            max_abs_diff(&out.annotation_probabilities().unwrap(), &get("annotation_probs")),
            max_abs_diff(&out.local_hidden().unwrap(), &get("local_hidden")),
            max_abs_diff(&out.global_hidden().unwrap(), &get("global_hidden")),
            (0..config.n_blocks)
                .map(|b| max_abs_diff(&attention[b], &get(&format!("attention.block{}", b + 1))))
                .fold(0.0, f32::max),
        ];
        println!(
            "ProteinBERT vs Keras at L = {len}: token probs {:.2e}, annotation probs {:.2e}, local hidden {:.2e}, global hidden {:.2e}, attention {:.2e}",
            diffs[0], diffs[1], diffs[2], diffs[3], diffs[4]
        );
        for (w, d) in worst.iter_mut().zip(diffs) {
            *w = w.max(d);
        }
    }
    worst
}

#[test]
fn proteinbert_equals_keras_reference_at_two_padded_lengths() {
    let (tensors, meta) = read_safetensors(&fixture("proteinbert/inputs_and_outputs.safetensors"));
    let (config, weights) = from_keras_weights(&keras_arrays(&tensors, &meta), 5, &Device::Cpu).unwrap();
    assert_eq!(config, fixture_config());
    let worst = compare_proteinbert(weights, &config);
    assert!(worst.iter().all(|&d| d <= TOLERANCE), "max differences {worst:?} exceed {TOLERANCE}");
}

#[test]
fn keras_weight_import_rejects_wrong_counts_and_shapes() {
    let (tensors, meta) = read_safetensors(&fixture("proteinbert/inputs_and_outputs.safetensors"));
    let mut arrays = keras_arrays(&tensors, &meta);
    let err = from_keras_weights(&arrays[..52], 5, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("7 + 23"), "{err}");
    arrays.swap(3, 4); // a kernel and a bias out of order
    let err = from_keras_weights(&arrays, 5, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("blocks.0.global_to_local"), "{err}");
}

mod proberta_vs_hugging_face {
    use super::*;
    use protein_lm::models::heads::{ClassificationHead, Head, HeadConfig, HeadInput, Level, Target};
    use protein_lm::models::proberta::{self, import};
    use protein_lm::models::Trunk;

    pub fn hf_model(dir: &str) -> (proberta::Config, HashMap<String, Tensor>) {
        let path = fixture(&format!("proberta/{dir}"));
        let text = std::fs::read_to_string(path.join("config.json")).unwrap();
        let mut config: proberta::Config = serde_json::from_str(&text).unwrap();
        config.zero_padded_embeddings = false; // Hugging Face's behaviour
        let tensors = candle_core::safetensors::load(path.join("model.safetensors"), &Device::Cpu).unwrap();
        (config, import::from_hugging_face(tensors).unwrap())
    }

    /// Largest differences (hidden states, MLM logits, attention) over `rows` of the batch, all
    /// positions when `all_positions`, else only real tokens.
    pub fn compare_mlm(
        weights: HashMap<String, Tensor>,
        config: &proberta::Config,
        outputs: &str,
        all_positions: bool,
    ) -> [f32; 3] {
        let model =
            proberta::ProbertaForMaskedLm::load(VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu), config)
                .unwrap();
        let (io, _) = read_safetensors(&fixture(&format!("proberta/{outputs}")));
        let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
        let (logits, out) = model.forward(&ids, proberta::Forward { attention: true }, None).unwrap();
        // Real-token mask (B, L, 1) to blank padded rows when they are not comparable.
        let keep = io["attention_mask"].to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
        let masked = |t: &Tensor| if all_positions { t.clone() } else { t.broadcast_mul(&keep).unwrap() };
        let hidden = (0..out.hidden_states.len())
            .map(|i| max_abs_diff(&masked(&out.hidden_states[i]), &masked(&io[&format!("hidden.{i}")])))
            .fold(0.0, f32::max);
        let attention = out
            .attention
            .as_ref()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let want = &io[&format!("attn.{}", i + 1)];
                if all_positions {
                    max_abs_diff(a, want)
                } else {
                    // Padded query rows are not comparable either.
                    let rows = keep.unsqueeze(1).unwrap();
                    max_abs_diff(&a.broadcast_mul(&rows).unwrap(), &want.broadcast_mul(&rows).unwrap())
                }
            })
            .fold(0.0, f32::max);
        [hidden, max_abs_diff(&masked(&logits), &masked(&io["mlm_logits"])), attention]
    }

    #[test]
    fn masked_lm_equals_transformers() {
        let (config, weights) = hf_model("hf_mlm");
        let [hidden, logits, attention] = compare_mlm(weights, &config, "outputs.safetensors", true);
        println!("PRoBERTa vs RobertaForMaskedLM (all positions, 5 sequences of 5–32 tokens): hidden states {hidden:.2e}, MLM logits {logits:.2e}, attention {attention:.2e}");
        assert!(hidden <= TOLERANCE && logits <= TOLERANCE && attention <= TOLERANCE);
    }

    #[test]
    fn classification_head_equals_transformers() {
        let (config, weights) = hf_model("hf_cls");
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let encoder = proberta::Encoder::load(vb.clone(), &config).unwrap();
        let head_config = HeadConfig::proberta(Level::Protein, Target::Categorical { classes: 3 });
        let head = ClassificationHead::load(vb.pp("classifier"), head_config, 32, 32).unwrap();
        let (io, _) = read_safetensors(&fixture("proberta/outputs.safetensors"));
        let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
        let features = encoder.features(&ids, None).unwrap();
        let logits = head.forward(HeadInput::One(&features), None).unwrap();
        let diff = max_abs_diff(&logits, &io["cls_logits"]);
        println!("PRoBERTa classification head vs RobertaForSequenceClassification: logits {diff:.2e}");
        assert!(diff <= TOLERANCE);
    }

    /// fairseq zeroes the embedding output at padded positions, Hugging Face does not: with the
    /// fairseq behaviour real positions are unchanged and padded ones differ.
    #[test]
    fn fairseq_padding_zeroing_changes_only_padded_positions() {
        let (mut config, weights) = hf_model("hf_mlm");
        config.zero_padded_embeddings = true;
        let [hidden, logits, attention] = compare_mlm(weights.clone(), &config, "outputs.safetensors", false);
        assert!(hidden <= TOLERANCE && logits <= TOLERANCE && attention <= TOLERANCE, "{hidden} {logits} {attention}");
        let [hidden_all, ..] = compare_mlm(weights, &config, "outputs.safetensors", true);
        assert!(hidden_all > 1e-3, "padded positions should differ, {hidden_all}");
    }
}

/// Every released format → model directory → the same outputs as the reference.
mod importer_round_trips {
    use super::proberta_vs_hugging_face::compare_mlm;
    use super::*;
    use protein_lm::models::directory::ModelDir;
    use protein_lm::models::heads::{ClassificationHead, Head, HeadInput};
    use protein_lm::models::proberta::import;
    use protein_lm::models::Trunk;

    #[test]
    fn proteinbert_keras_pickles_numpy1_and_numpy2() {
        for name in ["weights_numpy1", "weights_numpy1_proto4", "weights_numpy2", "weights_numpy2_proto5"] {
            let out = tempfile::tempdir().unwrap();
            let file = fixture(&format!("proteinbert/{name}.pkl"));
            let (dir, report) = proteinbert::import::import_keras_pickle(&file, out.path(), 5).unwrap();
            assert_eq!(report.config, fixture_config());
            assert_eq!((report.arrays, report.optimizer_arrays, report.parameters), (53, 107, 37_119));
            let dir = ModelDir::open(dir.path()).unwrap();
            let weights = dir.tensors(DType::F32, &Device::Cpu).unwrap();
            let worst = compare_proteinbert(weights, &report.config);
            println!("{name}.pkl → model directory → Keras outputs: max differences {worst:?}");
            assert!(worst.iter().all(|&d| d <= TOLERANCE), "{name}: {worst:?}");
        }
    }

    #[test]
    fn proberta_hugging_face_directory() {
        let out = tempfile::tempdir().unwrap();
        let (dir, report) =
            import::import_hugging_face(&fixture("proberta/hf_cls"), out.path(), Some(&fixture("proberta/dict.txt")))
                .unwrap();
        assert_eq!(report.heads, ["classifier"]);
        assert!(dir.file("dict.txt").is_some());
        let dir = ModelDir::open(dir.path()).unwrap();
        let stored = &dir.config().heads[0];
        let vb = dir.var_builder(DType::F32, &Device::Cpu).unwrap();
        let encoder = dir.proberta_encoder(DType::F32, &Device::Cpu).unwrap();
        let head = ClassificationHead::load(vb.pp(&stored.prefix), stored.config, 32, 32).unwrap();
        let (io, _) = read_safetensors(&fixture("proberta/outputs.safetensors"));
        let features = encoder.features(&io["input_ids"].to_dtype(DType::U32).unwrap(), None).unwrap();
        let diff = max_abs_diff(&head.forward(HeadInput::One(&features), None).unwrap(), &io["cls_logits"]);
        println!("hf_cls → model directory → classification logits: max difference {diff:.2e}");
        assert!(diff <= TOLERANCE);
        assert_eq!(stored.labels, ["LABEL_0", "LABEL_1", "LABEL_2"]);

        let out = tempfile::tempdir().unwrap();
        let (dir, _) = import::import_hugging_face(&fixture("proberta/hf_mlm"), out.path(), None).unwrap();
        let config = match &dir.config().model {
            protein_lm::models::directory::ModelConfig::Proberta(c) => c.clone(),
            _ => unreachable!(),
        };
        let worst = compare_mlm(dir.tensors(DType::F32, &Device::Cpu).unwrap(), &config, "outputs.safetensors", true);
        println!("hf_mlm → model directory → MLM outputs (all positions): max differences {worst:?}");
        assert!(worst.iter().all(|&d| d <= TOLERANCE));
    }

    /// A `save_pretrained` directory in shards (as transformers writes large models) imports to the
    /// same model; a directory without safetensors says how to make them.
    #[test]
    fn proberta_hugging_face_shards_and_the_missing_weights_message() {
        let sharded = tempfile::tempdir().unwrap();
        std::fs::copy(fixture("proberta/hf_cls/config.json"), sharded.path().join("config.json")).unwrap();
        let tensors =
            candle_core::safetensors::load(fixture("proberta/hf_cls/model.safetensors"), &Device::Cpu).unwrap();
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let mut weight_map = serde_json::Map::new();
        for (k, part) in names.chunks(names.len() / 2 + 1).enumerate() {
            let file = format!("model-0000{}-of-00002.safetensors", k + 1);
            let shard: HashMap<String, Tensor> = part.iter().map(|n| ((*n).clone(), tensors[*n].clone())).collect();
            candle_core::safetensors::save(&shard, sharded.path().join(&file)).unwrap();
            for n in part {
                weight_map.insert((*n).clone(), file.clone().into());
            }
        }
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(sharded.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        import::import_hugging_face(&fixture("proberta/hf_cls"), a.path(), None).unwrap();
        let (_, report) = import::import_hugging_face(sharded.path(), b.path(), None).unwrap();
        assert_eq!(report.heads, ["classifier"]);
        let read = |d: &Path| ModelDir::open(d).unwrap().tensors(DType::F32, &Device::Cpu).unwrap();
        let (whole, shards) = (read(a.path()), read(b.path()));
        assert_eq!(whole.len(), shards.len());
        for (name, t) in &whole {
            assert_eq!(max_abs_diff(t, &shards[name]), 0.0, "{name}");
        }

        std::fs::remove_file(sharded.path().join("model-00002-of-00002.safetensors")).unwrap();
        let err = import::import_hugging_face(sharded.path(), tempfile::tempdir().unwrap().path(), None).unwrap_err();
        assert!(err.to_string().contains("model-00002-of-00002.safetensors"), "{err}");
        for f in ["model.safetensors.index.json", "model-00001-of-00002.safetensors"] {
            std::fs::remove_file(sharded.path().join(f)).unwrap();
        }
        std::fs::write(sharded.path().join("pytorch_model.bin"), b"").unwrap();
        let err = import::import_hugging_face(sharded.path(), tempfile::tempdir().unwrap().path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pytorch_model.bin") && err.contains("save_pretrained(DIR)"), "{err}");
        assert!(!err.contains("safe_serialization"), "transformers 5 has no such argument: {err}");
    }

    /// An imported Hugging Face model keeps Hugging Face's padding; fairseq's is an option of
    /// loading it, and changes only the padded positions.
    #[test]
    fn proberta_pad_semantics_are_an_option_of_loading_a_directory() {
        use protein_lm::models::directory::PadSemantics;
        use protein_lm::models::proberta::Forward;
        let out = tempfile::tempdir().unwrap();
        import::import_hugging_face(&fixture("proberta/hf_mlm"), out.path(), None).unwrap();
        let ids = Tensor::new(&[[0u32, 5, 6, 7, 2, 1, 1]], &Device::Cpu).unwrap();
        let hf = ModelDir::open(out.path()).unwrap().proberta_encoder(DType::F32, &Device::Cpu).unwrap();
        let fairseq = ModelDir::open(out.path())
            .unwrap()
            .with_padding(PadSemantics::Fairseq)
            .unwrap()
            .proberta_encoder(DType::F32, &Device::Cpu)
            .unwrap();
        let (a, b) = (
            hf.forward(&ids, Forward::default(), None).unwrap(),
            fairseq.forward(&ids, Forward::default(), None).unwrap(),
        );
        let padded = |o: &protein_lm::models::proberta::EncoderOutput| o.hidden_states[0].narrow(1, 5, 2).unwrap();
        assert!(padded(&a).abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
        assert_eq!(padded(&b).abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        let real = |o: &protein_lm::models::proberta::EncoderOutput| o.last().narrow(1, 0, 5).unwrap();
        assert!(max_abs_diff(&real(&a), &real(&b)) < 1e-5, "real positions do not see the padding");
    }

    /// A config that does not fit the weights is an error naming the weights file and the missing
    /// tensor, and nothing is written.
    #[test]
    fn mismatched_hugging_face_config_names_the_file_and_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(fixture("proberta/hf_mlm/config.json")).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            text.replace("\"num_hidden_layers\": 3", "\"num_hidden_layers\": 4"),
        )
        .unwrap();
        std::fs::copy(fixture("proberta/hf_mlm/model.safetensors"), dir.path().join("model.safetensors")).unwrap();
        let out = dir.path().join("out");
        let err = import::import_hugging_face(dir.path(), &out, None).unwrap_err().to_string();
        assert!(err.contains("model.safetensors") && err.contains("encoder.layer.3"), "{err}");
        assert!(!out.join("config.json").exists());
    }

    #[test]
    fn proberta_fairseq_checkpoints_zip_legacy_fp16_and_later_names() {
        let cases = [
            ("fairseq_zip_fp32", "outputs.safetensors"),
            ("fairseq_legacy_fp32", "outputs.safetensors"),
            ("fairseq_legacy_fp16", "outputs_fp16.safetensors"),
            ("fairseq_zip_encoder", "outputs.safetensors"),
        ];
        for (name, outputs) in cases {
            let out = tempfile::tempdir().unwrap();
            let file = fixture(&format!("proberta/{name}.pt"));
            let (dir, report) =
                import::import_fairseq(&file, Some(&fixture("proberta/dict.txt")), out.path(), None).unwrap();
            assert_eq!(report.config.num_attention_heads, 4, "heads read from the checkpoint's args");
            assert!(report.has_lm_head);
            let dir = ModelDir::open(dir.path()).unwrap();
            // fairseq zeroes padded embeddings, so only real positions compare with transformers.
            let worst = compare_mlm(dir.tensors(DType::F32, &Device::Cpu).unwrap(), &report.config, outputs, false);
            println!("{name}.pt → model directory → {outputs} (real positions): max differences (hidden, logits, attention) {worst:?}");
            assert!(worst.iter().all(|&d| d <= TOLERANCE), "{name}: {worst:?}");
            // The stored classification head (CLS pooling) against transformers' classifier.
            let stored = &dir.config().heads[0];
            assert_eq!(stored.prefix, "heads.protein_family_classification");
            let vb = dir.var_builder(DType::F32, &Device::Cpu).unwrap();
            let head = ClassificationHead::load(vb.pp(&stored.prefix), stored.config, 32, 32).unwrap();
            let encoder = dir.proberta_encoder(DType::F32, &Device::Cpu).unwrap();
            let (io, _) = read_safetensors(&fixture(&format!("proberta/{outputs}")));
            let features = encoder.features(&io["input_ids"].to_dtype(DType::U32).unwrap(), None).unwrap();
            let diff = max_abs_diff(&head.forward(HeadInput::One(&features), None).unwrap(), &io["cls_logits"]);
            assert!(diff <= TOLERANCE, "{name}: classification logits differ by {diff}");
        }
        let err =
            import::import_fairseq(&fixture("proberta/dict.txt"), None, tempfile::tempdir().unwrap().path(), None)
                .unwrap_err()
                .to_string();
        assert!(err.contains("dict.txt") && err.contains("not a torch checkpoint"), "{err}");
    }
}
