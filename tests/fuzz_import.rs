//! Fuzzing the foreign weight readers: the pickle machine (generated opcode streams and mutated
//! pickles of every protocol), torch checkpoints in the zip and legacy formats, and the importers
//! built on them (fairseq, ProteinBERT's Keras pickle, Hugging Face directories). Every outcome is
//! `Ok` or an error naming the file, never a panic. Budget: see `fuzz_support`.

mod fuzz_support;

use std::path::Path;

use fuzz_support::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use protein_lm::models::import::{pickle, torch};
use protein_lm::models::{proberta, proteinbert};

const PICKLES: [&str; 12] = [
    "builtins_p0.pkl",
    "builtins_p1.pkl",
    "builtins_p2.pkl",
    "builtins_p3.pkl",
    "builtins_p4.pkl",
    "builtins_p5.pkl",
    "numpy1_p2.pkl",
    "numpy1_p4.pkl",
    "numpy1_p5.pkl",
    "numpy2_p2.pkl",
    "numpy2_p4.pkl",
    "numpy2_p5.pkl",
];

/// Everything a caller may do with a loaded checkpoint, each step checked.
fn exercise_checkpoint(path: &Path) -> Result<(), TestCaseError> {
    let Some(ckpt) = parse_checked(&[path], Located::File, || torch::Checkpoint::open(path))? else { return Ok(()) };
    parse_checked(&[path], Located::File, || ckpt.entry("args").map(|_| ()))?;
    for key in [Some("model"), None] {
        if let Some(tensors) = parse_checked(&[path], Located::File, || ckpt.state_dict(key))? {
            for (_, t) in tensors {
                prop_assert_eq!(t.to_f32_vec().len(), t.numel());
                parse_checked(&[path], Located::File, || {
                    t.to_candle(&candle_core::Device::Cpu).map_err(|e| protein_lm::Error::from(e).in_file(path))
                })?;
            }
        }
    }
    Ok(())
}

#[test]
fn pickles_mutated() {
    let seeds: Vec<Vec<u8>> = PICKLES.iter().map(|f| read_sample(&format!("tests/fixtures/import/{f}"))).collect();
    take_outcomes();
    TestRunner::new(config(768, false))
        .run(&(0..seeds.len(), byte_mutations()), |(k, edits)| {
            let scratch = Scratch::new();
            let path = scratch.write(PICKLES[k], &apply(&seeds[k], &edits));
            parse_checked(&[&path], Located::File, || pickle::load_file(&path))?;
            Ok(())
        })
        .unwrap();
    report_outcomes("pickles");
}

/// Opcodes without an argument.
const BARE_OPS: &[u8] = b"(.0122NRabd}elo)stu\x81\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x94Q\x97\x98";

/// One instruction of a generated pickle, its argument well-formed or deliberately not.
fn instruction() -> impl Strategy<Value = Vec<u8>> {
    let len_or_lie = |len: usize, width: usize| -> Vec<u8> { (len as u64).to_le_bytes()[..width].to_vec() };
    let text = prop_oneof![
        Just(b"numpy.core.multiarray\n_reconstruct\n".to_vec()),
        Just(b"numpy\nndarray\n".to_vec()),
        Just(b"numpy\ndtype\n".to_vec()),
        Just(b"numpy._core.numeric\n_frombuffer\n".to_vec()),
        Just(b"torch._utils\n_rebuild_tensor_v2\n".to_vec()),
        Just(b"torch._utils\n_rebuild_parameter\n".to_vec()),
        Just(b"torch\nFloatStorage\n".to_vec()),
        Just(b"collections\nOrderedDict\n".to_vec()),
        Just(b"builtins\nset\n".to_vec()),
        Just(b"__builtin__\nobject\n".to_vec()),
        Just(b"copyreg\n_reconstructor\n".to_vec()),
        "[a-z_.]{0,12}\n[a-z_]{0,8}\n".prop_map(String::into_bytes),
    ];
    prop_oneof![
        6 => prop::sample::select(BARE_OPS).prop_map(|op| vec![op]),
        2 => (prop::sample::select(&b"Khq\x82"[..]), any::<u8>()).prop_map(|(op, a)| vec![op, a]),
        1 => (prop::sample::select(&b"M\x83"[..]), any::<u16>()).prop_map(|(op, a)| [vec![op], a.to_le_bytes().to_vec()].concat()),
        1 => (prop::sample::select(&b"Jjr\x84"[..]), prop_oneof![0u32..8, any::<u32>()]).prop_map(|(op, a)| [vec![op], a.to_le_bytes().to_vec()].concat()),
        1 => any::<f64>().prop_map(|x| [vec![b'G'], x.to_be_bytes().to_vec()].concat()),
        1 => prop_oneof![0u64..64, any::<u64>()].prop_map(|n| [vec![0x95], n.to_le_bytes().to_vec()].concat()),
        // Counted payloads: the true length, or one that claims more than the file has.
        3 => (prop::sample::select(&b"UC\x8c\x8a"[..]), prop::collection::vec(any::<u8>(), 0..12), any::<bool>())
            .prop_map(move |(op, data, lie)| [vec![op], if lie { vec![255] } else { len_or_lie(data.len(), 1) }, data].concat()),
        2 => (prop::sample::select(&b"XBT\x8b"[..]), prop::collection::vec(any::<u8>(), 0..12), any::<bool>())
            .prop_map(move |(op, data, lie)| [vec![op], if lie { vec![255; 4] } else { len_or_lie(data.len(), 4) }, data].concat()),
        1 => (prop::sample::select(&b"\x8d\x8e\x96"[..]), prop::collection::vec(any::<u8>(), 0..12), any::<bool>())
            .prop_map(move |(op, data, lie)| [vec![op], if lie { vec![255; 8] } else { len_or_lie(data.len(), 8) }, data].concat()),
        // Text-line arguments.
        2 => (prop::sample::select(&b"ILFgpPSV"[..]), prop::sample::select(NASTY)).prop_map(|(op, arg)| [vec![op], arg.to_vec(), b"\n".to_vec()].concat()),
        2 => (prop::sample::select(&b"ci"[..]), text).prop_map(|(op, t)| [vec![op], t].concat()),
    ]
}

proptest! {
    #![proptest_config(config(768, false))]

    /// Random programs for the pickle machine: a protocol header, up to 60 instructions, STOP.
    #[test]
    fn pickles_generated(proto in prop::option::of(0u8..6), body in prop::collection::vec(instruction(), 0..60)) {
        let mut bytes = proto.map_or(Vec::new(), |p| vec![0x80, p]);
        bytes.extend(body.concat());
        bytes.push(b'.');
        let scratch = Scratch::new();
        let path = scratch.write("gen.pkl", &bytes);
        parse_checked(&[&path], Located::File, || pickle::load_file(&path))?;
    }
}

#[test]
fn hostile_pickles_are_bounded() {
    let scratch = Scratch::new();
    // 200,000 nested lists, then a shared list doubled 64 times through the memo.
    let n = 200_000;
    let mut deep = vec![0x80, 2];
    deep.extend(std::iter::repeat_n(b']', n));
    deep.extend(std::iter::repeat_n(b'a', n - 1));
    deep.push(b'.');
    let mut laughs = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..64 {
        laughs.extend([b'(', b'h', 0, b'h', 0, b'l', b'q', 0]);
    }
    laughs.push(b'.');
    for (name, bytes) in [("deep.pkl", deep), ("laughs.pkl", laughs)] {
        let path = scratch.write(name, &bytes);
        let err = pickle::load_file(&path).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
    }
}

const CHECKPOINTS: [&str; 4] =
    ["fairseq_legacy_fp16.pt", "fairseq_legacy_fp32.pt", "fairseq_zip_encoder.pt", "fairseq_zip_fp32.pt"];

#[test]
fn torch_checkpoints_mutated() {
    let seeds: Vec<Vec<u8>> =
        CHECKPOINTS.iter().map(|f| read_sample(&format!("tests/fixtures/proberta/{f}"))).collect();
    take_outcomes();
    TestRunner::new(config(256, false))
        .run(&(0..seeds.len(), byte_mutations()), |(k, edits)| {
            let scratch = Scratch::new();
            let path = scratch.write(CHECKPOINTS[k], &apply(&seeds[k], &edits));
            exercise_checkpoint(&path)
        })
        .unwrap();
    report_outcomes("torch checkpoints");
}

/// Mutations aimed at the pickle inside a checkpoint: the legacy file's pickles are at its start,
/// the zip's data.pkl is rewritten with a mutated one (and the archive rebuilt, stored entries).
#[test]
fn torch_checkpoint_pickles_mutated() {
    use std::io::{Read, Write};
    let zip_seed = read_sample("tests/fixtures/proberta/fairseq_zip_fp32.pt");
    let legacy_seed = read_sample("tests/fixtures/proberta/fairseq_legacy_fp16.pt");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_seed)).unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..archive.len() {
        let mut e = archive.by_index(i).unwrap();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        entries.push((e.name().unwrap().to_string(), bytes));
    }
    let pkl = entries.iter().position(|(n, _)| n.ends_with("data.pkl")).unwrap();
    take_outcomes();
    TestRunner::new(config(256, false))
        .run(&(any::<bool>(), byte_mutations()), |(legacy, edits)| {
            let scratch = Scratch::new();
            let path = if legacy {
                // The first few kilobytes hold the magic, version, sys_info and main pickles.
                let mut bytes = legacy_seed.clone();
                let head = apply(&bytes[..4096], &edits);
                bytes.splice(..4096, head);
                scratch.write("legacy.pt", &bytes)
            } else {
                let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
                let stored =
                    zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
                for (i, (name, bytes)) in entries.iter().enumerate() {
                    w.start_file(name.as_str(), stored).unwrap();
                    w.write_all(&if i == pkl { apply(bytes, &edits) } else { bytes.clone() }).unwrap();
                }
                scratch.write("zip.pt", &w.finish().unwrap().into_inner())
            };
            exercise_checkpoint(&path)
        })
        .unwrap();
    report_outcomes("torch checkpoint pickles");
}

#[test]
fn fairseq_import_mutated() {
    let seeds: Vec<Vec<u8>> =
        CHECKPOINTS.iter().map(|f| read_sample(&format!("tests/fixtures/proberta/{f}"))).collect();
    let dict = repo_file("tests/fixtures/proberta/dict.txt");
    take_outcomes();
    TestRunner::new(config(48, true))
        .run(&(0..seeds.len(), byte_mutations()), |(k, edits)| {
            let scratch = Scratch::new();
            let path = scratch.write(CHECKPOINTS[k], &apply(&seeds[k], &edits));
            let out = scratch.path().join("out");
            let imported = parse_checked(&[&path], Located::File, || {
                proberta::import::import_fairseq(&path, Some(&dict), &out, None)
            })?;
            if let Some((dir, _)) = imported {
                let weights = out.join("model.safetensors");
                parse_checked(&[&path, &weights], Located::File, || {
                    dir.proberta_masked_lm(candle_core::DType::F32, &candle_core::Device::Cpu)
                        .map_err(|e| e.in_file(&weights))
                })?;
            }
            Ok(())
        })
        .unwrap();
    report_outcomes("fairseq import");
}

#[test]
fn keras_pickle_import_mutated() {
    let seed = read_sample("tests/fixtures/proteinbert/weights_numpy2_proto5.pkl");
    take_outcomes();
    TestRunner::new(config(32, true))
        .run(&byte_mutations(), |edits| {
            let scratch = Scratch::new();
            let path = scratch.write("weights.pkl", &apply(&seed, &edits));
            let out = scratch.path().join("out");
            parse_checked(&[&path], Located::File, || proteinbert::import::import_keras_pickle(&path, &out, 5))?;
            Ok(())
        })
        .unwrap();
    report_outcomes("keras pickle import");
}

// ---------------------------------------------------------------------------------------------
// Embedding matrices (.npy)

proptest! {
    #![proptest_config(config(256, false))]

    /// read_npy(write_npy(m)) == m for f32, and the f16 file holds the values rounded to f16.
    #[test]
    fn npy_round_trip(rows in 0usize..6, dim in 1usize..9, seed in any::<u64>()) {
        use protein_lm::embed::{read_npy, EmbeddingMatrix, Precision};
        let mut rng = protein_lm::Rng::new(seed);
        let values: Vec<f32> = (0..rows * dim).map(|_| (rng.uniform() * 200.0 - 100.0) as f32).collect();
        let m = EmbeddingMatrix { ids: (0..rows).map(|i| format!("p{i}")).collect(), values, dim, stats: Default::default() };
        let scratch = Scratch::new();
        let path = scratch.path().join("e.npy");
        m.write_npy(&path, Precision::F32).unwrap();
        let back = read_npy(&path).unwrap();
        prop_assert_eq!(back.shape, (rows, dim));
        prop_assert_eq!(&back.values, &m.values);
        m.write_npy(&path, Precision::F16).unwrap();
        let back = read_npy(&path).unwrap();
        let rounded: Vec<f32> = m.values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        prop_assert_eq!(back.values, rounded);
    }
}

#[test]
fn npy_mutated() {
    use protein_lm::embed::{read_npy, EmbeddingMatrix, Precision};
    let scratch = Scratch::new();
    let m =
        EmbeddingMatrix { ids: vec!["a".into(), "b".into()], values: vec![0.5; 6], dim: 3, stats: Default::default() };
    let seed_path = scratch.path().join("seed.npy");
    m.write_npy(&seed_path, Precision::F32).unwrap();
    let seed = std::fs::read(&seed_path).unwrap();
    take_outcomes();
    TestRunner::new(config(512, false))
        .run(&prop_oneof![byte_mutations(), mutations(b',')], |edits| {
            let scratch = Scratch::new();
            let path = scratch.write("e.npy", &apply(&seed, &edits));
            if let Some(back) = parse_checked(&[&path], Located::File, || read_npy(&path))? {
                prop_assert_eq!(back.values.len(), back.shape.0 * back.shape.1);
            }
            Ok(())
        })
        .unwrap();
    report_outcomes("npy");
}

/// `'shape': (4611686018427387904, 4)` with no data: the size product overflowed, a panic in
/// debug builds and, wrapped to 0 in release, a matrix of 2^62 rows and no values.
#[test]
fn regression_npy_shape_overflow() {
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16 + 1).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.push(b'\n');
    let scratch = Scratch::new();
    let path = scratch.write("huge.npy", &bytes);
    let err = protein_lm::embed::read_npy(&path).unwrap_err().to_string();
    assert!(err.contains("huge.npy") && err.contains("data bytes for shape"), "{err}");
}
