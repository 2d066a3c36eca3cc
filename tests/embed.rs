//! `embed` on tiny random models saved into temporary model directories: every pooling against a
//! direct forward of each protein alone, batching, long-protein policies, and the output files.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use protein_lm::data::Protein;
use protein_lm::embed::{
    self, EmbedOptions, EmbedPooling, Embedder, EmbeddingMatrix, LayerChoice, LongPolicy, Precision,
};
use protein_lm::models::directory::{DirectoryConfig, ModelConfig, ModelDir};
use protein_lm::models::heads::Pooling;
use protein_lm::models::init::SeededVarMap;
use protein_lm::models::{proberta, proteinbert, Trunk};
use protein_lm::tokenize::residue::{bucket_seq_len, ResidueTokenizer, UnknownCounts};
use protein_lm::tokenize::{vocab, FairseqDictionary, ProbertaTokenizer};
use protein_lm::Result;

const TOL: f32 = 1e-5;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn cpu(options: EmbedOptions) -> EmbedOptions {
    EmbedOptions { device: protein_lm::device::DeviceChoice::Cpu, ..options }
}

fn proteins(seqs: &[&str]) -> Vec<Protein> {
    seqs.iter().enumerate().map(|(i, s)| Protein { id: format!("P{i}"), sequence: s.to_string() }).collect()
}

/// A pseudo-random protein of `n` residues.
fn protein_of(n: usize, seed: u64) -> String {
    let mut rng = protein_lm::Rng::new(seed);
    (0..n).map(|_| "ACDEFGHIKLMNPQRSTVWY".as_bytes()[rng.index(20)] as char).collect()
}

fn save(dir: &Path, map: &SeededVarMap, model: ModelConfig) -> Result<ModelDir> {
    let tensors: HashMap<String, Tensor> =
        map.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    let config = DirectoryConfig { model, source: Some("test".into()), has_lm_head: false, heads: vec![] };
    ModelDir::create(dir, &config, &tensors)
}

fn proteinbert_dir(dir: &Path, seed: u64) -> Result<proteinbert::ProteinBert> {
    let map = SeededVarMap::new(seed);
    let config = proteinbert::Config::tiny(11);
    let model = proteinbert::ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &config)?;
    save(dir, &map, ModelConfig::Proteinbert(config))?;
    Ok(model)
}

/// Single letters, `▁`, and a few longer pieces so the dict-only encoder merges.
fn dictionary() -> FairseqDictionary {
    let mut pieces: Vec<(String, u64)> = "ACDEFGHIKLMNPQRSTVWYXUBZO▁".chars().map(|c| (c.to_string(), 10)).collect();
    for (i, p) in ["▁M", "KT", "LL", "AG", "EE", "GS", "LLAG", "PE"].iter().enumerate() {
        pieces.push((p.to_string(), 100 - i as u64));
    }
    FairseqDictionary::build(pieces)
}

fn proberta_dir(dir: &Path, seed: u64, layers: usize, positions: usize) -> Result<proberta::Encoder> {
    let dict = dictionary();
    let map = SeededVarMap::new(seed);
    let config = proberta::Config {
        num_hidden_layers: layers,
        max_position_embeddings: positions,
        ..proberta::Config::tiny(dict.len())
    };
    let encoder = proberta::Encoder::load(map.var_builder(DType::F32, &Device::Cpu), &config)?;
    save(dir, &map, ModelConfig::Proberta(config))?;
    dict.save(dir.join("dict.txt"))?;
    Ok(encoder)
}

fn tokenizer(dir: &Path) -> ProbertaTokenizer {
    ProbertaTokenizer::load(dir).unwrap()
}

fn pieces(tok: &ProbertaTokenizer, seq: &str) -> Vec<u32> {
    tok.encode_pieces(seq, &mut UnknownCounts::default()).unwrap()
}

fn with_specials(p: &[u32]) -> Vec<u32> {
    let mut ids = vec![vocab::BOS];
    ids.extend_from_slice(p);
    ids.push(vocab::EOS);
    ids
}

fn row_tensor(ids: Vec<u32>) -> Tensor {
    let n = ids.len();
    Tensor::from_vec(ids, (1, n), &Device::Cpu).unwrap()
}

fn vec1(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `(L, d)` rows of a `(1, L, d)` tensor.
fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.squeeze(0).unwrap().to_vec2::<f32>().unwrap()
}

fn residue_ids(seq: &str, len: usize) -> Tensor {
    row_tensor(ResidueTokenizer.encode_padded(seq, len, &mut UnknownCounts::default()).unwrap())
}

/// Lengths across two reference buckets (512 and 1,024).
fn varied_sequences() -> Vec<String> {
    [37, 5, 600, 120, 1, 510, 511, 64].iter().enumerate().map(|(i, &n)| protein_of(n, i as u64 + 1)).collect()
}

#[test]
fn proteinbert_rows_follow_input_order_and_equal_a_direct_forward() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let model = proteinbert_dir(dir.path(), 1)?;
    let seqs = varied_sequences();
    let records = proteins(&seqs.iter().map(String::as_str).collect::<Vec<_>>());

    // Default: `global` pooling, each protein padded to its reference bucket, small batches.
    let options = cpu(EmbedOptions { batch_tokens: 1100, ..EmbedOptions::default() });
    let embedder = Embedder::new(dir.path(), options)?;
    assert_eq!(embedder.pooling(), EmbedPooling::Global);
    let mut seen = 0;
    let m = embedder.embed(&records, &mut |n| seen += n)?;
    assert_eq!(seen, records.len());
    assert_eq!(m.ids, records.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
    assert_eq!(m.dim, model.config().global_hidden_size());
    assert!(m.stats.batches >= 5, "{:?}", m.stats);
    for (i, s) in seqs.iter().enumerate() {
        let direct = model.features(&residue_ids(s, bucket_seq_len(s.len())), None)?;
        let d = max_diff(m.row(i), &vec1(&direct.protein));
        assert!(d < TOL, "protein {i}: {d}");
    }

    // Mean over the 1,562-style concatenation = the head API's mean over Trunk::features.
    let options = cpu(EmbedOptions {
        pooling: Some(EmbedPooling::Mean),
        layer: Some(LayerChoice::All),
        ..EmbedOptions::default()
    });
    let m = Embedder::new(dir.path(), options)?.embed(&records, &mut |_| {})?;
    for (i, s) in seqs.iter().enumerate() {
        let direct = model.features(&residue_ids(s, bucket_seq_len(s.len())), None)?;
        let d = max_diff(m.row(i), &vec1(&Pooling::Mean.pool(&direct)?));
        assert!(d < TOL, "protein {i}: {d}");
    }

    // A fixed --seq-len: equal to a direct forward at that length, and different from the bucket's.
    let options = cpu(EmbedOptions { seq_len: Some(700), ..EmbedOptions::default() });
    let fixed = Embedder::new(dir.path(), options)?.embed(&records, &mut |_| {})?;
    let direct = model.features(&residue_ids(&seqs[0], 700), None)?;
    assert!(max_diff(fixed.row(0), &vec1(&direct.protein)) < TOL);
    let bucketed = model.features(&residue_ids(&seqs[0], 512), None)?;
    assert!(max_diff(fixed.row(0), &vec1(&bucketed.protein)) > 1e-4, "no mask: outputs depend on the length");

    // A protein that does not fit --seq-len is an error naming it.
    let options = cpu(EmbedOptions { seq_len: Some(100), ..EmbedOptions::default() });
    let err = Embedder::new(dir.path(), options)?.embed(&records, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("`P2`") && err.contains("600 residues") && err.contains("seq_len 100"), "{err}");

    // The padding mask: bucket padding gives what the exact length gives.
    let options = cpu(EmbedOptions { padding_mask: true, ..EmbedOptions::default() });
    let masked = Embedder::new(dir.path(), options)?.embed(&records, &mut |_| {})?;
    let masked_model = model.clone().with_padding_mask(true);
    for (i, s) in seqs.iter().enumerate() {
        let direct = masked_model.features(&residue_ids(s, s.len() + 2), None)?;
        let d = max_diff(masked.row(i), &vec1(&direct.protein));
        assert!(d < TOL, "masked protein {i}: {d}");
    }
    Ok(())
}

#[test]
fn proteinbert_layers_cls_first128_and_per_residue_rows() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let model = proteinbert_dir(dir.path(), 2)?;
    let seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "ACDE", &protein_of(200, 9)].map(str::to_string);
    let records = proteins(&seqs.iter().map(String::as_str).collect::<Vec<_>>());
    let annotations = Tensor::zeros((1, 11), DType::F32, &Device::Cpu)?;
    let states = |s: &str| {
        model.forward(&residue_ids(s, 512), &annotations, proteinbert::Forward::default()).unwrap().local_states
    };
    let d = model.config().d_local;

    for (pooling, layer) in [(EmbedPooling::Cls, LayerChoice::Index(1)), (EmbedPooling::First128, LayerChoice::Last)] {
        let options = cpu(EmbedOptions { pooling: Some(pooling), layer: Some(layer), ..EmbedOptions::default() });
        let m = Embedder::new(dir.path(), options)?.embed(&records, &mut |_| {})?;
        for (i, s) in seqs.iter().enumerate() {
            let all = states(s);
            let st = match layer {
                LayerChoice::Index(k) => &all[k],
                _ => all.last().unwrap(),
            };
            let r = rows(st);
            let expected: Vec<f32> = match pooling {
                EmbedPooling::Cls => r[0].clone(),
                _ => {
                    let real = s.len() + 2;
                    let mut v: Vec<f32> = r.iter().take(real.min(128)).flatten().copied().collect();
                    v.resize(128 * d, 0.0);
                    v
                }
            };
            assert_eq!(m.dim, expected.len());
            let diff = max_diff(m.row(i), &expected);
            assert!(diff < TOL, "{pooling:?} protein {i}: {diff}");
        }
    }

    // Per residue: START and END dropped, one row per residue.
    let options = cpu(EmbedOptions { layer: Some(LayerChoice::All), ..EmbedOptions::default() });
    let res = Embedder::new(dir.path(), options)?.embed_residues(&records, &mut |_| {})?;
    assert_eq!(res.dim, model.config().local_hidden_size());
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(res.rows(i), s.len());
        let direct = model.features(&residue_ids(s, 512), None)?;
        let expected: Vec<f32> = rows(&direct.residues)[1..=s.len()].concat();
        assert!(max_diff(&res.values[i], &expected) < TOL);
    }
    Ok(())
}

#[test]
fn proberta_mean_does_not_depend_on_batching_and_equals_a_direct_forward() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let encoder = proberta_dir(dir.path(), 3, 2, 514)?;
    let tok = tokenizer(dir.path());
    let seqs: Vec<String> = [3, 40, 17, 300, 1, 90, 250].iter().map(|&n| protein_of(n, n as u64)).collect();
    let mut seqs = seqs;
    seqs.push("MKTLLAGEEGSPEMKT".into());
    let records = proteins(&seqs.iter().map(String::as_str).collect::<Vec<_>>());

    let run = |batch_tokens: usize, pooling: EmbedPooling| -> Result<EmbeddingMatrix> {
        let options = cpu(EmbedOptions { pooling: Some(pooling), batch_tokens, ..EmbedOptions::default() });
        Embedder::new(dir.path(), options)?.embed(&records, &mut |_| {})
    };
    let big = run(100_000, EmbedPooling::Mean)?;
    let one_each = run(1, EmbedPooling::Mean)?;
    assert_eq!(big.stats.batches, 1);
    assert_eq!(one_each.stats.batches, records.len());
    assert_eq!(big.dim, 32);
    for (i, s) in seqs.iter().enumerate() {
        let features = encoder.features(&row_tensor(with_specials(&pieces(&tok, s))), None)?;
        let direct = vec1(&Pooling::Mean.pool(&features)?);
        for m in [&big, &one_each] {
            let d = max_diff(m.row(i), &direct);
            assert!(d < TOL, "protein {i}: {d}");
        }
    }

    // cls = the trunk's own vector; sum = mean × tokens; a chosen layer reads that hidden state.
    let cls = run(4096, EmbedPooling::Cls)?;
    let sum = run(4096, EmbedPooling::Sum)?;
    let options = cpu(EmbedOptions { layer: Some(LayerChoice::Index(1)), ..EmbedOptions::default() });
    let layer1 = Embedder::new(dir.path(), options)?.embed(&records, &mut |_| {})?;
    for (i, s) in seqs.iter().enumerate() {
        let ids = row_tensor(with_specials(&pieces(&tok, s)));
        let n = ids.dims()[1] as f32;
        assert!(max_diff(cls.row(i), &vec1(&encoder.features(&ids, None)?.protein)) < TOL);
        let scaled: Vec<f32> = big.row(i).iter().map(|v| v * n).collect();
        assert!(max_diff(sum.row(i), &scaled) < 1e-4);
        let out = encoder.forward(&ids, proberta::Forward::default(), None)?;
        assert!(max_diff(layer1.row(i), &vec1(&out.hidden_states[1].mean(1)?)) < TOL);
    }

    // first128: the first 128 positions (<s> first), zeros after the protein's end.
    let first = run(4096, EmbedPooling::First128)?;
    assert_eq!(first.dim, 128 * 32);
    for (i, s) in seqs.iter().enumerate() {
        let ids = row_tensor(with_specials(&pieces(&tok, s)));
        let r = rows(encoder.forward(&ids, proberta::Forward::default(), None)?.last());
        let mut expected: Vec<f32> = r.iter().take(128).flatten().copied().collect();
        expected.resize(128 * 32, 0.0);
        assert!(max_diff(first.row(i), &expected) < TOL, "protein {i}");
    }
    Ok(())
}

#[test]
fn proberta_clustering_pooling_equals_a_hand_computation() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let encoder = proberta_dir(dir.path(), 4, 5, 514)?;
    let tok = tokenizer(dir.path());
    let seqs = ["MKTLLAGEEGSPE", &protein_of(80, 5), "W"].map(str::to_string);
    let records = proteins(&seqs.iter().map(String::as_str).collect::<Vec<_>>());
    let options = cpu(EmbedOptions { pooling: Some(EmbedPooling::ProbertaClustering), ..EmbedOptions::default() });
    let m = Embedder::new(dir.path(), options)?.embed(&records, &mut |_| {})?;
    assert_eq!(m.dim, 32);
    // pieces + </s>, no <s>, cut and filled with id 0 (<s>) to `len`; Σ hidden states 2..=5, Σ all positions.
    let check = |m: &protein_lm::embed::EmbeddingMatrix, len: usize| -> Result<()> {
        for (i, s) in seqs.iter().enumerate() {
            let mut ids = pieces(&tok, s);
            ids.push(vocab::EOS);
            ids.truncate(len);
            ids.resize(len, 0);
            let out = encoder.forward(&row_tensor(ids), proberta::Forward::default(), None)?;
            let mut expected = vec![0f32; 32];
            for layer in 2..=5 {
                for row in rows(&out.hidden_states[layer]) {
                    expected.iter_mut().zip(&row).for_each(|(e, v)| *e += v);
                }
            }
            let scale = expected.iter().map(|v| v.abs()).fold(1.0, f32::max);
            let d = max_diff(m.row(i), &expected);
            assert!(d < 1e-5 * scale, "length {len}, protein {i}: {d} (scale {scale})");
        }
        Ok(())
    };
    check(&m, 512)?;

    // `seq_len` fills to a shorter length (a model pretrained on short inputs); longer proteins
    // are cut to it, and a length beyond the model's positions is an error.
    let short = cpu(EmbedOptions {
        pooling: Some(EmbedPooling::ProbertaClustering),
        seq_len: Some(40),
        ..EmbedOptions::default()
    });
    let m40 = Embedder::new(dir.path(), short)?.embed(&records, &mut |_| {})?;
    check(&m40, 40)?;
    assert!(max_diff(m40.row(0), m.row(0)) > 1e-3, "a different filled length gives a different vector");
    let too_long = cpu(EmbedOptions {
        pooling: Some(EmbedPooling::ProbertaClustering),
        seq_len: Some(600),
        ..EmbedOptions::default()
    });
    let err = Embedder::new(dir.path(), too_long).err().unwrap().to_string();
    assert!(err.contains("seq_len 600"), "{err}");
    let mean_len =
        cpu(EmbedOptions { pooling: Some(EmbedPooling::Mean), seq_len: Some(40), ..EmbedOptions::default() });
    assert!(Embedder::new(dir.path(), mean_len).is_err(), "seq_len is only for the clustering vector");

    // Needs ≥ 5 layers; a layer option is an error (the pooling fixes its layers).
    let small = tempfile::tempdir().unwrap();
    proberta_dir(small.path(), 4, 2, 514)?;
    let options = cpu(EmbedOptions { pooling: Some(EmbedPooling::ProbertaClustering), ..EmbedOptions::default() });
    let err = Embedder::new(small.path(), options).err().unwrap().to_string();
    assert!(err.contains("at least 5 layers"), "{err}");
    let options = cpu(EmbedOptions {
        pooling: Some(EmbedPooling::ProbertaClustering),
        layer: Some(LayerChoice::Index(3)),
        ..EmbedOptions::default()
    });
    assert!(Embedder::new(dir.path(), options).is_err());
    Ok(())
}

#[test]
fn long_proberta_proteins_auto_error_truncate_or_window() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    // 34 positions = 32 tokens = 30 pieces + <s> + </s>.
    let encoder = proberta_dir(dir.path(), 5, 2, 34)?;
    let tok = tokenizer(dir.path());
    let long = protein_of(120, 77);
    let short = "MKTLLAGEE".to_string();
    let n = pieces(&tok, &long).len();
    assert!(n > 60, "{n} pieces");
    let records = proteins(&[&short, &long]);
    let embed_with = |long: LongPolicy, stride: Option<usize>| -> Result<EmbeddingMatrix> {
        let options = cpu(EmbedOptions { long, stride, ..EmbedOptions::default() });
        Embedder::new(dir.path(), options)?.embed(&records, &mut |_| {})
    };
    let last_rows =
        |ids: Vec<u32>| rows(encoder.forward(&row_tensor(ids), proberta::Forward::default(), None).unwrap().last());
    let mean = |r: &[Vec<f32>]| -> Vec<f32> {
        let mut m = vec![0f32; r[0].len()];
        r.iter().for_each(|row| m.iter_mut().zip(row).for_each(|(a, v)| *a += v / r.len() as f32));
        m
    };

    let err = embed_with(LongPolicy::Error, None).unwrap_err().to_string();
    assert!(err.contains("`P1`") && err.contains(&format!("{n} BPE pieces")) && err.contains("30"), "{err}");

    let cut = embed_with(LongPolicy::Truncate, None)?;
    assert_eq!(cut.stats.truncated, 1);
    let p = pieces(&tok, &long);
    assert!(max_diff(cut.row(1), &mean(&last_rows(with_specials(&p[..30])))) < TOL);

    // Windows of 30 pieces every 15; each row the mean over the windows that hold it.
    let win = embed_with(LongPolicy::Window, None)?;
    assert_eq!(win.stats.windowed, 1);
    let starts = embed::window_starts(n, 30, 15);
    assert_eq!(starts[0], 0);
    assert_eq!(*starts.last().unwrap() + 30, n);
    let mut acc = vec![vec![0f32; 32]; n + 2];
    let mut count = vec![0f32; n + 2];
    for &s in &starts {
        let r = last_rows(with_specials(&p[s..s + 30]));
        for (j, row) in r.iter().enumerate() {
            let target = if j == 0 {
                0
            } else if j == 31 {
                n + 1
            } else {
                s + j
            };
            acc[target].iter_mut().zip(row).for_each(|(a, v)| *a += v);
            count[target] += 1.0;
        }
    }
    let assembled: Vec<Vec<f32>> = acc.iter().zip(&count).map(|(r, c)| r.iter().map(|v| v / c).collect()).collect();
    assert!(max_diff(win.row(1), &mean(&assembled)) < TOL);
    // A protein that fits is the same in every mode.
    assert!(max_diff(win.row(0), cut.row(0)) == 0.0);
    assert!(max_diff(win.row(0), &mean(&last_rows(with_specials(&pieces(&tok, &short))))) < TOL);
    assert_eq!(win.stats.inputs, 1 + starts.len());
    // The default (auto) windows a long protein rather than stopping on it.
    let auto = embed_with(LongPolicy::default(), None)?;
    assert_eq!(LongPolicy::default(), LongPolicy::Auto);
    assert_eq!((auto.stats.windowed, auto.stats.truncated), (1, 0));
    assert!(max_diff(auto.row(1), win.row(1)) == 0.0);

    // Another stride changes the windows, not the shape; per residue: one row per piece.
    let strided = embed_with(LongPolicy::Window, Some(7))?;
    assert_eq!(strided.stats.inputs, 1 + embed::window_starts(n, 30, 7).len());
    let options = cpu(EmbedOptions { long: LongPolicy::Window, ..EmbedOptions::default() });
    let res = Embedder::new(dir.path(), options)?.embed_residues(&records, &mut |_| {})?;
    assert_eq!(res.rows(1), n);
    assert_eq!(res.rows(0), pieces(&tok, &short).len());
    assert_eq!(res.values[1], assembled[1..=n].concat());
    let bad = cpu(EmbedOptions { long: LongPolicy::Window, stride: Some(31), ..EmbedOptions::default() });
    assert!(Embedder::new(dir.path(), bad).is_err());

    // max_tokens: a shorter input than the model's positions (12 tokens = 10 pieces), the policies
    // applied at that length; outside 3..=32 (the model's 34 positions hold 32 tokens) it is an error.
    let capped = |long: LongPolicy, max_tokens: usize| -> Result<EmbeddingMatrix> {
        let options = cpu(EmbedOptions { long, max_tokens: Some(max_tokens), ..EmbedOptions::default() });
        Embedder::new(dir.path(), options)?.embed(&records, &mut |_| {})
    };
    let cut12 = capped(LongPolicy::Truncate, 12)?;
    assert_eq!(cut12.stats.truncated, 1);
    assert!(max_diff(cut12.row(1), &mean(&last_rows(with_specials(&p[..10])))) < TOL);
    assert!(max_diff(cut12.row(0), cut.row(0)) == 0.0, "a protein of 10 pieces or fewer is unchanged");
    let win12 = capped(LongPolicy::Window, 12)?;
    assert_eq!(win12.stats.inputs, 1 + embed::window_starts(n, 10, 5).len());
    let options = cpu(EmbedOptions { max_tokens: Some(12), ..EmbedOptions::default() });
    assert_eq!(Embedder::new(dir.path(), options)?.max_tokens(), Some(12));
    for bad in [2, 33] {
        let options = cpu(EmbedOptions { max_tokens: Some(bad), ..EmbedOptions::default() });
        let err = Embedder::new(dir.path(), options).err().expect("out of range").to_string();
        assert!(err.contains(&format!("max_tokens {bad}")) && err.contains("32 positions"), "{err}");
    }

    // Clustering: the reference cut (first 32 tokens of pieces + </s>) or an error; never windows.
    let clustering = tempfile::tempdir().unwrap();
    let enc5 = proberta_dir(clustering.path(), 6, 5, 34)?;
    let options =
        |long| cpu(EmbedOptions { pooling: Some(EmbedPooling::ProbertaClustering), long, ..EmbedOptions::default() });
    assert!(Embedder::new(clustering.path(), options(LongPolicy::Error))?.embed(&records, &mut |_| {}).is_err());
    assert!(Embedder::new(clustering.path(), options(LongPolicy::Window))?.embed(&records, &mut |_| {}).is_err());
    let m = Embedder::new(clustering.path(), options(LongPolicy::Truncate))?.embed(&records, &mut |_| {})?;
    // With clustering, auto is the reference's cut.
    let auto = Embedder::new(clustering.path(), options(LongPolicy::Auto))?.embed(&records, &mut |_| {})?;
    assert_eq!(auto.stats.truncated, 1);
    assert!(max_diff(auto.row(1), m.row(1)) == 0.0);
    let out = enc5.forward(&row_tensor(p[..32].to_vec()), proberta::Forward::default(), None)?;
    let mut expected = Tensor::zeros((1, 32, 32), DType::F32, &Device::Cpu)?;
    for layer in 2..=5 {
        expected = (expected + &out.hidden_states[layer])?;
    }
    assert!(max_diff(m.row(1), &vec1(&expected.sum(1)?)) < 1e-4);
    Ok(())
}

#[test]
fn option_mismatches_are_errors() -> Result<()> {
    let pb = tempfile::tempdir().unwrap();
    proteinbert_dir(pb.path(), 7)?;
    let pr = tempfile::tempdir().unwrap();
    proberta_dir(pr.path(), 7, 2, 514)?;
    let cases: Vec<(&Path, EmbedOptions, &str)> = vec![
        (pr.path(), EmbedOptions { pooling: Some(EmbedPooling::Global), ..EmbedOptions::default() }, "global"),
        (pr.path(), EmbedOptions { seq_len: Some(512), ..EmbedOptions::default() }, "seq_len"),
        (pr.path(), EmbedOptions { layer: Some(LayerChoice::Index(3)), ..EmbedOptions::default() }, "layer 3"),
        (pr.path(), EmbedOptions { layer: Some(LayerChoice::All), ..EmbedOptions::default() }, "all"),
        (pb.path(), EmbedOptions { layer: Some(LayerChoice::Index(4)), ..EmbedOptions::default() }, "layer 4"),
        (
            pb.path(),
            EmbedOptions {
                pooling: Some(EmbedPooling::Global),
                layer: Some(LayerChoice::Index(0)),
                ..EmbedOptions::default()
            },
            "fixes its own",
        ),
        (
            pb.path(),
            EmbedOptions { pooling: Some(EmbedPooling::ProbertaClustering), ..EmbedOptions::default() },
            "PRoBERTa",
        ),
        (pb.path(), EmbedOptions { batch_tokens: 0, ..EmbedOptions::default() }, "batch_tokens"),
    ];
    for (dir, options, needle) in cases {
        let err = Embedder::new(dir, cpu(options)).err().expect("an error").to_string();
        assert!(err.contains(needle), "`{err}` should mention `{needle}`");
    }
    // A layer with ProteinBERT's default pooling: fine per residue, an error when pooling.
    let layered = EmbedOptions { layer: Some(LayerChoice::Index(0)), ..EmbedOptions::default() };
    let embedder = Embedder::new(pb.path(), cpu(layered))?;
    let err = embedder.embed(&proteins(&["MKT"]), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("default") && err.contains("fixes its own"), "{err}");
    assert_eq!(embedder.embed_residues(&proteins(&["MKT"]), &mut |_| {})?.rows(0), 3);
    // Layer 0 with a layer-reading pooling is fine on ProteinBERT.
    let ok = EmbedOptions {
        pooling: Some(EmbedPooling::Mean),
        layer: Some(LayerChoice::Index(0)),
        ..EmbedOptions::default()
    };
    assert_eq!(Embedder::new(pb.path(), cpu(ok))?.dim(), 16);
    // No dict.txt: a clear error.
    std::fs::remove_file(pr.path().join("dict.txt")).unwrap();
    let err = Embedder::new(pr.path(), cpu(EmbedOptions::default())).err().unwrap().to_string();
    assert!(err.contains("dict.txt"), "{err}");
    assert!("proberta-clustering".parse::<EmbedPooling>().is_ok() && "max".parse::<EmbedPooling>().is_err());
    assert_eq!("7".parse::<LayerChoice>()?, LayerChoice::Index(7));
    Ok(())
}

#[test]
fn per_residue_safetensors_round_trip() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    proberta_dir(dir.path(), 8, 2, 514)?;
    let tok = tokenizer(dir.path());
    let seqs = ["MKTLLAGEE", "ACDEFGHIKLMNPQRSTVWY", "W"];
    let records = proteins(&seqs);
    let embedder = Embedder::new(dir.path(), cpu(EmbedOptions::default()))?;
    let res = embedder.embed_residues(&records, &mut |_| {})?;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("res.safetensors");
    res.write_safetensors(&path, Precision::F32, embed::describe_run(&embedder, true))?;
    let back = candle_core::safetensors::load(&path, &Device::Cpu)?;
    assert_eq!(back.len(), 3);
    for (i, s) in seqs.iter().enumerate() {
        let t = &back[&format!("P{i}")];
        assert_eq!(t.dims(), [pieces(&tok, s).len(), 32]);
        assert_eq!(vec1(t), res.values[i]);
    }
    // The metadata says what the rows are.
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert!(meta["rows"].contains("BPE pieces") && meta["model_kind"] == "proberta", "{meta:?}");
    res.write_safetensors(&path, Precision::F16, HashMap::new())?;
    let back = candle_core::safetensors::load(&path, &Device::Cpu)?;
    let t = &back["P1"];
    assert_eq!(t.dtype(), DType::F16);
    let d = max_diff(&vec1(&t.to_dtype(DType::F32)?), &res.values[1]);
    assert!(d < 5e-3, "{d}");

    // ProteinBERT rows are residues.
    let pb = tempfile::tempdir().unwrap();
    proteinbert_dir(pb.path(), 8)?;
    let res = Embedder::new(pb.path(), cpu(EmbedOptions::default()))?.embed_residues(&records, &mut |_| {})?;
    let path = out.path().join("pb.safetensors");
    res.write_safetensors(&path, Precision::F32, HashMap::from([("rows".to_string(), "residues".to_string())]))?;
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["rows"], "residues");
    let back = candle_core::safetensors::load(&path, &Device::Cpu)?;
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(back[&format!("P{i}")].dims(), [s.len(), 16]);
    }
    // Duplicate ids cannot be written.
    let mut dup = res.clone();
    dup.ids[2] = "P0".into();
    let err = dup.write_safetensors(&path, Precision::F32, HashMap::new()).unwrap_err().to_string();
    assert!(err.contains("duplicate record id `P0`"), "{err}");
    Ok(())
}

#[test]
fn npy_header_shape_and_f16_round_trip() -> Result<()> {
    let values: Vec<f32> = (0..15).map(|i| i as f32 * 0.37 - 2.0).collect();
    let m = EmbeddingMatrix {
        ids: vec!["a".into(), "b".into(), "c".into()],
        values: values.clone(),
        dim: 5,
        stats: Default::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.npy");
    m.write_npy(&path, Precision::F32)?;
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }"), "{header}");
    assert!(header.ends_with('\n'));
    assert_eq!(bytes.len(), 10 + header_len + 15 * 4);
    let back = embed::read_npy(&path)?;
    assert_eq!((back.shape, back.precision), ((3, 5), Precision::F32));
    assert_eq!(back.values, values);

    m.write_npy(&path, Precision::F16)?;
    let back = embed::read_npy(&path)?;
    assert_eq!((back.shape, back.precision), ((3, 5), Precision::F16));
    assert!(max_diff(&back.values, &values) < 2e-3);
    assert_eq!(std::fs::read(&path).unwrap().len(), 128 + 15 * 2);

    // A value f16 cannot hold is an error naming the record, not a silent infinity.
    let mut big = m.clone();
    big.values[7] = 1e6;
    let err = big.write_npy(&path, Precision::F16).unwrap_err().to_string();
    assert!(err.contains("record `b`") && err.contains("f16"), "{err}");
    // Not an npy: an error naming the file.
    std::fs::write(dir.path().join("x.npy"), b"hello").unwrap();
    assert!(embed::read_npy(dir.path().join("x.npy")).unwrap_err().to_string().contains("x.npy"));

    embed::write_ids(embed::ids_path(&path), &m.ids)?;
    assert_eq!(std::fs::read_to_string(dir.path().join("m.ids.txt")).unwrap(), "a\nb\nc\n");
    Ok(())
}

#[test]
fn duplicate_ids_and_bad_fasta_are_errors_naming_lines() {
    let dir = tempfile::tempdir().unwrap();
    let dup = dir.path().join("dup.fasta");
    std::fs::write(&dup, ">A1 first\nMKT\n>B2\nMKV\nLL\n>A1 again\nMKW\n").unwrap();
    let err = embed::read_records(&dup).unwrap_err().to_string();
    for part in ["dup.fasta:6", "duplicate record id `A1`", "line 1", "line 6"] {
        assert!(err.contains(part), "`{err}` should mention `{part}`");
    }
    let bad = dir.path().join("bad.fasta");
    std::fs::write(&bad, ">A1\nMKT\n>B2\nMK7V\n").unwrap();
    let err = embed::read_records(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.fasta:4") && err.contains("record B2") && err.contains("'7'"), "{err}");
    let ok = dir.path().join("ok.fasta");
    std::fs::write(&ok, ">A1\nMKT\n>B2\nMKV\n").unwrap();
    let records = embed::read_records(&ok).unwrap();
    assert_eq!(records.iter().map(|r| r.line).collect::<Vec<_>>(), [Some(1), Some(3)]);
}

#[test]
fn the_command_writes_npy_ids_and_safetensors_and_names_bad_lines() -> Result<()> {
    let exe = env!("CARGO_BIN_EXE_protein-lm");
    let model = tempfile::tempdir().unwrap();
    proberta_dir(model.path(), 9, 2, 514)?;
    let dir = tempfile::tempdir().unwrap();
    let fasta = dir.path().join("in.fasta");
    std::fs::write(&fasta, ">Q1\nMKTLLAGEE\n>Q2 desc\nACDEFG\nHIKLMN\n>Q3\nW\n").unwrap();
    let out = dir.path().join("emb.npy");
    let run = |args: &[&str]| std::process::Command::new(exe).arg("embed").args(args).output().unwrap();
    let m = model.path().to_str().unwrap();
    let (f, o) = (fasta.to_str().unwrap(), out.to_str().unwrap());
    let result = run(&["--model", m, "--fasta", f, "--out", o, "--device", "cpu", "--f16"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("embedded 3 proteins") && stderr.contains("proteins/s"), "{stderr}");
    let back = embed::read_npy(&out)?;
    assert_eq!((back.shape, back.precision), ((3, 32), Precision::F16));
    assert_eq!(std::fs::read_to_string(dir.path().join("emb.ids.txt")).unwrap(), "Q1\nQ2\nQ3\n");
    let records = embed::read_records(&fasta)?;
    let direct = Embedder::new(model.path(), cpu(EmbedOptions::default()))?.embed(&records, &mut |_| {})?;
    assert!(max_diff(&back.values, &direct.values) < 5e-3);

    let res = dir.path().join("res.safetensors");
    let result = run(&["--model", m, "--fasta", f, "--out", res.to_str().unwrap(), "--per-residue", "--device", "cpu"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(candle_core::safetensors::load(&res, &Device::Cpu)?.len(), 3);
    assert!(dir.path().join("res.ids.txt").is_file());

    let bad = dir.path().join("bad.fasta");
    std::fs::write(&bad, ">Q1\nMKT\n>Q2\nMK*\n").unwrap();
    let result = run(&["--model", m, "--fasta", bad.to_str().unwrap(), "--out", o, "--device", "cpu"]);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("bad.fasta:4") && stderr.contains("Q2"), "{stderr}");
    // Wrong extension, and a ProteinBERT-only option on PRoBERTa.
    let result = run(&["--model", m, "--fasta", f, "--out", res.to_str().unwrap(), "--device", "cpu"]);
    assert!(String::from_utf8_lossy(&result.stderr).contains(".npy"));
    let result = run(&["--model", m, "--fasta", f, "--out", o, "--device", "cpu", "--seq-len", "512"]);
    assert!(String::from_utf8_lossy(&result.stderr).contains("seq_len"));
    Ok(())
}
