//! The `.pt` readers against fixtures made by torch itself (tests/fixtures/proberta/make_fixtures.py):
//! fairseq checkpoints in the zip and the legacy format, f32 and f16, must give exactly the tensors
//! Hugging Face saved for the same model. Bad files must give clear errors, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::f16;
use protein_lm::models::import::pickle::{self, Value};
use protein_lm::models::import::torch::{read_state_dict, Checkpoint, Format};
use protein_lm::models::import::{RawDType, RawTensor};
use safetensors::SafeTensors;

const LAYERS: usize = 3;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// name → (shape, f32 values) of a safetensors file of f32 tensors.
fn safetensors_f32(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

/// The Hugging Face name of a fairseq tensor through the library's mapping
/// (`proberta::import::fairseq_name`, which the model round trips in `models_parity.rs` check end to
/// end), `None` for the one that HF does not store (`lm_head.weight`, tied to the word embeddings)
/// and for the positions (checked apart).
fn hf_name(fairseq: &str, _prefix: &str) -> Option<String> {
    let ours = protein_lm::models::proberta::import::fairseq_name(fairseq).unwrap()?;
    if ours == "embeddings.position_embeddings.weight" {
        return None;
    }
    Some(match ours.strip_prefix("heads.protein_family_classification.") {
        Some(rest) => format!("classifier.{rest}"),
        None if ours.starts_with("lm_head.") => ours,
        None => format!("roberta.{ours}"),
    })
}

/// Checks every tensor of a fairseq checkpoint against the HF safetensors: bit for bit in f32; in
/// f16 equal to the HF value rounded to the nearest f16.
fn check_against_hf(file: &str, prefix: &str, dtype: RawDType) {
    let path = fixture(&format!("proberta/{file}"));
    let tensors = read_state_dict(&path, Some("model")).unwrap();
    let mut hf = safetensors_f32(&fixture("proberta/hf_mlm/model.safetensors"));
    hf.extend(safetensors_f32(&fixture("proberta/hf_cls/model.safetensors")));
    let round = |x: f32| if dtype == RawDType::F16 { f16::from_f32(x).to_f32() } else { x };

    assert_eq!(tensors.len(), 4 + 16 * LAYERS + 6 + 4, "{file}");
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], format!("{prefix}.sentence_encoder.embed_tokens.weight"));
    assert_eq!(names[names.len() - 1], "classification_heads.protein_family_classification.out_proj.bias");

    let by_name: HashMap<&str, &RawTensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for (name, tensor) in &tensors {
        assert_eq!(tensor.dtype, dtype, "{file}: {name}");
        let (shape, want): (Vec<usize>, Vec<f32>) = match hf_name(name, prefix) {
            Some(h) => {
                let (shape, values) = hf.get(&h).unwrap_or_else(|| panic!("{h} not in the HF files"));
                (shape.clone(), values.clone())
            }
            None if name.ends_with("lm_head.weight") => {
                let (shape, values) = &hf["roberta.embeddings.word_embeddings.weight"];
                (shape.clone(), values.clone())
            }
            None => {
                // fairseq has no token type: the checkpoint folds HF's token_type_embeddings[0] into
                // every position row (README of the fixtures).
                let (shape, pos) = &hf["roberta.embeddings.position_embeddings.weight"];
                let (_, tt) = &hf["roberta.embeddings.token_type_embeddings.weight"];
                let d = shape[1];
                (shape.clone(), pos.iter().enumerate().map(|(i, p)| p + tt[i % d]).collect())
            }
        };
        assert_eq!(tensor.shape, shape, "{file}: {name}");
        let got = tensor.to_f32_vec();
        let want: Vec<f32> = want.into_iter().map(round).collect();
        let same_bits = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same_bits, "{file}: {name} differs from HF");
    }
    // The tied weight is stored once and read twice; fc2 is a transposed view; q/k/v share a storage.
    assert_eq!(
        by_name[format!("{prefix}.lm_head.weight").as_str()],
        by_name[format!("{prefix}.sentence_encoder.embed_tokens.weight").as_str()]
    );
}

#[test]
fn zip_fp32_checkpoint_equals_hf_weights() {
    check_against_hf("fairseq_zip_fp32.pt", "decoder", RawDType::F32);
}

#[test]
fn legacy_fp32_checkpoint_equals_hf_weights() {
    check_against_hf("fairseq_legacy_fp32.pt", "decoder", RawDType::F32);
}

#[test]
fn legacy_fp16_checkpoint_equals_hf_weights_rounded_to_f16() {
    check_against_hf("fairseq_legacy_fp16.pt", "decoder", RawDType::F16);
}

#[test]
fn zip_checkpoint_with_later_encoder_names_equals_hf_weights() {
    check_against_hf("fairseq_zip_encoder.pt", "encoder", RawDType::F32);
}

#[test]
fn all_four_files_give_the_same_f32_tensors() {
    let read = |f: &str| read_state_dict(fixture(&format!("proberta/{f}")), Some("model")).unwrap();
    let zip = read("fairseq_zip_fp32.pt");
    assert_eq!(zip, read("fairseq_legacy_fp32.pt"));
    let renamed: Vec<(String, RawTensor)> =
        read("fairseq_zip_encoder.pt").into_iter().map(|(n, t)| (n.replacen("encoder.", "decoder.", 1), t)).collect();
    assert_eq!(zip, renamed);
    for ((n16, t16), (n32, t32)) in read("fairseq_legacy_fp16.pt").iter().zip(&zip) {
        assert_eq!(n16, n32);
        let rounded: Vec<f32> = t32.to_f32_vec().into_iter().map(|x| f16::from_f32(x).to_f32()).collect();
        assert_eq!(t16.to_f32_vec(), rounded, "{n16}");
    }
}

#[test]
fn checkpoint_exposes_fairseq_args_and_format() {
    let zip = Checkpoint::open(fixture("proberta/fairseq_zip_fp32.pt")).unwrap();
    let legacy = Checkpoint::open(fixture("proberta/fairseq_legacy_fp16.pt")).unwrap();
    assert_eq!((zip.format(), legacy.format()), (Format::Zip, Format::Legacy));
    for (cp, fp16) in [(&zip, false), (&legacy, true)] {
        let args = cp.entry("args").unwrap();
        assert_eq!(args.type_name(), "argparse.Namespace");
        assert_eq!(args.attr("arch").and_then(Value::as_str), Some("roberta_base"));
        assert_eq!(args.attr("encoder_layers").and_then(Value::as_i64), Some(LAYERS as i64));
        assert_eq!(args.attr("encoder_embed_dim").and_then(Value::as_i64), Some(32));
        assert_eq!(args.attr("fp16").and_then(Value::as_bool), Some(fp16));
        assert_eq!(args.attr("lr").and_then(Value::as_seq).map(|l| l[0].as_f64()), Some(Some(0.0025)));
        assert_eq!(cp.entry("last_optimizer_state").unwrap(), &Value::None);
        let extra = cp.entry("extra_state").unwrap();
        assert_eq!(extra.get("train_iterator").and_then(|t| t.get("epoch")).and_then(Value::as_i64), Some(7));
        // One tensor straight from the tree, into candle.
        let model = cp.entry("model").unwrap();
        let emb = cp.tensor(emb_value(model)).unwrap();
        let t = emb.to_candle_f32(&candle_core::Device::Cpu).unwrap();
        assert_eq!(t.dims(), [45, 32]);
        assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), emb.to_f32_vec());
        // The fp16 file is written as from a GPU run: storages of torch.cuda.HalfStorage on 'cuda:0'.
        let Value::PersistentId(pid) = &emb_value(model).as_object().unwrap().args[0] else { panic!() };
        let (storage_module, location) = if fp16 { ("torch.cuda", "cuda:0") } else { ("torch", "cpu") };
        let pid = pid.as_seq().unwrap();
        assert!(matches!(&pid[1], Value::Global { module, .. } if module == storage_module), "{pid:?}");
        assert_eq!(pid[3].as_str(), Some(location));
        let native = emb.to_candle(&candle_core::Device::Cpu).unwrap();
        let want = if fp16 { candle_core::DType::F16 } else { candle_core::DType::F32 };
        assert_eq!(native.dtype(), want);
    }
}

fn emb_value(model: &Value) -> &Value {
    model.get("decoder.sentence_encoder.embed_tokens.weight").unwrap()
}

fn assert_mentions(err: impl std::fmt::Display, parts: &[&str]) {
    let text = err.to_string();
    for p in parts {
        assert!(text.contains(p), "error `{text}` should mention `{p}`");
    }
}

#[test]
fn wrong_key_and_no_key_name_the_file_and_the_keys() {
    let path = fixture("proberta/fairseq_legacy_fp32.pt");
    let err = read_state_dict(&path, Some("state_dict")).unwrap_err();
    assert_mentions(
        err,
        &[
            "fairseq_legacy_fp32.pt",
            "entry 'state_dict' not found",
            "top-level keys: args, model, optimizer_history, extra_state, last_optimizer_state",
        ],
    );
    let err = read_state_dict(&path, None).unwrap_err();
    assert_mentions(err, &["fairseq_legacy_fp32.pt", "'args' is a argparse.Namespace, not a tensor", "\"model\""]);
    let err = read_state_dict(&path, Some("args")).unwrap_err();
    assert_mentions(err, &["entry 'args' is a argparse.Namespace, not a dict of tensors"]);
}

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn not_a_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_state_dict(write_temp(&dir, "text.pt", b"hello world"), None).unwrap_err();
    assert_mentions(err, &["text.pt", "not a torch checkpoint", "neither a zip archive"]);
    let err = read_state_dict(write_temp(&dir, "empty.pt", b""), None).unwrap_err();
    assert_mentions(err, &["empty.pt", "not a torch checkpoint"]);
    // A pickle, but not torch's: its first object is not the magic number.
    let plain = std::fs::read(fixture("import/builtins_p2.pkl")).unwrap();
    let err = read_state_dict(write_temp(&dir, "plain.pt", &plain), None).unwrap_err();
    assert_mentions(err, &["plain.pt", "a pickle of dict where a legacy torch file has its magic number"]);
    // A zip, but not torch's.
    let err = read_state_dict(write_temp(&dir, "bad.zip", b"PK\x03\x04 not really"), None).unwrap_err();
    assert_mentions(err, &["bad.zip", "not a readable zip archive"]);
}

#[test]
fn truncated_checkpoints_fail_cleanly_at_every_cut() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["fairseq_legacy_fp16.pt", "fairseq_zip_fp32.pt"] {
        let bytes = std::fs::read(fixture(&format!("proberta/{file}"))).unwrap();
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(bytes.len() / 150).collect();
        // The storage area of the legacy file begins after ~10 kB of pickles: cut inside its last tensor too.
        cuts.extend([bytes.len() - 1, bytes.len() - 9]);
        for cut in cuts {
            let path = write_temp(&dir, "cut.pt", &bytes[..cut]);
            let err = read_state_dict(&path, Some("model")).expect_err(&format!("{file} cut at {cut} read fine"));
            assert_mentions(&err, &["cut.pt"]);
        }
    }
    let bytes = std::fs::read(fixture("proberta/fairseq_legacy_fp16.pt")).unwrap();
    let err = read_state_dict(write_temp(&dir, "short.pt", &bytes[..bytes.len() - 1]), Some("model")).unwrap_err();
    assert_mentions(err, &["short.pt", "truncated: storage", "runs past the end of the file"]);
}

#[test]
fn corrupt_bytes_never_panic() {
    // Flip bytes all over the pickles and headers of both formats: whatever comes out (an error, or
    // tensors with wrong values when only data was hit), the reader must return.
    let dir = tempfile::tempdir().unwrap();
    for file in ["fairseq_legacy_fp32.pt", "fairseq_zip_fp32.pt"] {
        let bytes = std::fs::read(fixture(&format!("proberta/{file}"))).unwrap();
        for at in (0..bytes.len().min(12_000)).step_by(23) {
            for flip in [0xffu8, 0x01] {
                let mut bad = bytes.clone();
                bad[at] ^= flip;
                let path = write_temp(&dir, "flipped.pt", &bad);
                let _ = read_state_dict(&path, Some("model"));
            }
        }
    }
}

#[test]
fn pickle_files_load_through_the_public_api() {
    let v = pickle::load_file(fixture("import/numpy1_p2.pkl")).unwrap();
    let Some(Value::NdArray(a)) = v.get("f32") else { panic!("{v:?}") };
    assert_eq!((a.dtype, a.shape.as_slice()), (RawDType::F32, &[2usize, 3][..]));
    let err = pickle::load_file(fixture("import/missing.pkl")).unwrap_err();
    assert_mentions(err, &["missing.pkl"]);
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("import/numpy2_p5.pkl")).unwrap();
    let err = pickle::load_file(write_temp(&dir, "half.pkl", &bytes[..bytes.len() / 2])).unwrap_err();
    assert_mentions(err, &["half.pkl", "at byte"]);
}

#[test]
fn zip_files_agree_with_candles_own_reader() {
    // candle reads the zip format only (on the legacy files it fails with "Could not find EOCD",
    // candle issues #1348 and #2666); where it can read, it must agree with us, views included.
    for file in ["fairseq_zip_fp32.pt", "fairseq_zip_encoder.pt"] {
        let path = fixture(&format!("proberta/{file}"));
        let theirs = candle_core::pickle::read_all_with_key(&path, Some("model")).unwrap();
        let ours = read_state_dict(&path, Some("model")).unwrap();
        assert_eq!(theirs.len(), ours.len(), "{file}");
        let ours: HashMap<&str, &RawTensor> = ours.iter().map(|(n, t)| (n.as_str(), t)).collect();
        for (name, t) in &theirs {
            let o = ours[name.as_str()];
            assert_eq!(t.dims(), o.shape.as_slice(), "{file}: {name}");
            assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), o.to_f32_vec(), "{file}: {name}");
        }
    }
}
