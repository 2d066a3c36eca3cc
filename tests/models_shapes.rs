//! Both networks on tiny random configs: shapes, the padding properties each one promises,
//! gradients reaching every parameter, and the model directory round trip. Numbers against the
//! reference implementations are in `models_parity.rs`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, D};
use protein_lm::models::directory::{DirectoryConfig, ModelConfig, ModelDir};
use protein_lm::models::heads::{Head, HeadConfig, HeadInput, Level, LinearHead, Target};
use protein_lm::models::init::SeededVarMap;
use protein_lm::models::{proberta, proteinbert, Trunk};
use protein_lm::tokenize::residue::{ResidueTokenizer, UnknownCounts};
use protein_lm::Result;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn residue_batch(seqs: &[&str], len: usize) -> Result<Tensor> {
    let tok = ResidueTokenizer;
    let mut unknown = UnknownCounts::default();
    let rows: Vec<Vec<u32>> = seqs.iter().map(|s| tok.encode_padded(s, len, &mut unknown)).collect::<Result<_>>()?;
    Ok(Tensor::new(rows, &Device::Cpu)?)
}

fn proteinbert_tiny(seed: u64) -> Result<(SeededVarMap, proteinbert::ProteinBert)> {
    let map = SeededVarMap::new(seed);
    let config = proteinbert::Config::tiny(11);
    let model = proteinbert::ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &config)?;
    Ok((map, model))
}

#[test]
fn proteinbert_shapes_and_parameter_count() -> Result<()> {
    let (map, model) = proteinbert_tiny(1)?;
    let config = model.config().clone();
    assert_eq!(map.num_parameters(), config.num_parameters());
    let ids = residue_batch(&["MKV", "ACDEFGHIKLMNPQRSTVWY"], 24)?;
    let annotations = Tensor::zeros((2, 11), DType::F32, &Device::Cpu)?;
    let out = model.forward(&ids, &annotations, proteinbert::Forward { mask: None, attention: true })?;
    assert_eq!(out.token_logits.dims(), [2, 24, 26]);
    assert_eq!(out.annotation_logits.dims(), [2, 11]);
    assert_eq!(out.local_hidden()?.dims(), [2, 24, config.local_hidden_size()]);
    assert_eq!(out.global_hidden()?.dims(), [2, config.global_hidden_size()]);
    let attention = out.attention.as_ref().unwrap();
    assert_eq!(attention.len(), config.n_blocks);
    assert_eq!(attention[0].dims(), [2, config.n_heads, 24]);
    let sums = attention[1].sum(D::Minus1)?.flatten_all()?.to_vec1::<f32>()?;
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
    Ok(())
}

/// The reference has no mask, so padding changes the outputs; with the mask option it does not.
#[test]
fn proteinbert_padding_mask_makes_outputs_independent_of_padded_length() -> Result<()> {
    let (_, model) = proteinbert_tiny(2)?;
    let seqs = ["MKVLAAGIW", "PEPTIDEPEPTIDEKR"];
    let (short, long) = (residue_batch(&seqs, 20)?, residue_batch(&seqs, 45)?);
    let annotations = Tensor::zeros((2, 11), DType::F32, &Device::Cpu)?;
    let run = |ids: &Tensor, masked: bool| -> Result<proteinbert::ProteinBertOutput> {
        let mask = ids.ne(25u32)?.to_dtype(DType::U32)?;
        model.forward(ids, &annotations, proteinbert::Forward { mask: masked.then_some(&mask), attention: false })
    };
    for masked in [false, true] {
        let (a, b) = (run(&short, masked)?, run(&long, masked)?);
        let global = max_abs_diff(&a.global_hidden()?, &b.global_hidden()?);
        let local = max_abs_diff(&a.local_hidden()?.narrow(1, 0, 18)?, &b.local_hidden()?.narrow(1, 0, 18)?);
        if masked {
            assert!(global < 1e-5 && local < 1e-5, "masked: global {global}, local {local}");
        } else {
            assert!(global > 1e-3, "unmasked outputs should depend on padding (reference behaviour), diff {global}");
        }
    }
    Ok(())
}

/// Every parameter gets a gradient (a layer built on a `no_bwd` op would silently not train).
#[test]
fn gradients_reach_every_parameter_of_both_models() -> Result<()> {
    let (map, model) = proteinbert_tiny(3)?;
    let ids = residue_batch(&["MKVLAAGIW", "PEPT"], 16)?;
    let annotations = Tensor::ones((2, 11), DType::F32, &Device::Cpu)?;
    let out = model.forward(&ids, &annotations, proteinbert::Forward::default())?;
    let loss = (out.token_logits.sqr()?.mean_all()? + out.annotation_logits.sqr()?.mean_all()?)?;
    let grads = loss.backward()?;
    for (name, var) in map.named_vars() {
        assert!(grads.get(&var).is_some(), "ProteinBERT parameter {name} has no gradient");
    }

    let map = SeededVarMap::new(4);
    let config = proberta::Config::tiny(40);
    let mlm = proberta::ProbertaForMaskedLm::load(map.var_builder(DType::F32, &Device::Cpu), &config)?;
    let ids = Tensor::new(&[[0u32, 5, 6, 7, 2], [0, 9, 2, 1, 1]], &Device::Cpu)?;
    let (logits, _) = mlm.forward(&ids, proberta::Forward::default(), Some(&mut protein_lm::Rng::new(0)))?;
    let grads = logits.sqr()?.mean_all()?.backward()?;
    for (name, var) in map.named_vars() {
        assert!(grads.get(&var).is_some(), "PRoBERTa parameter {name} has no gradient");
    }
    Ok(())
}

#[test]
fn proberta_positions_padding_and_shapes() -> Result<()> {
    let map = SeededVarMap::new(5);
    let config = proberta::Config::tiny(40);
    assert_eq!(config.max_tokens(), 512);
    let mlm = proberta::ProbertaForMaskedLm::load(map.var_builder(DType::F32, &Device::Cpu), &config)?;
    assert_eq!(map.num_parameters(), config.num_parameters());
    let ids = Tensor::new(&[[0u32, 5, 6, 7, 2, 1, 1], [0, 9, 8, 2, 1, 1, 1]], &Device::Cpu)?;
    let positions = mlm.encoder.embeddings().position_ids(&ids)?.to_vec2::<u32>()?;
    assert_eq!(positions, vec![vec![2, 3, 4, 5, 6, 1, 1], vec![2, 3, 4, 5, 1, 1, 1]]);
    let options = proberta::Forward { attention: true };
    let (logits, out) = mlm.forward(&ids, options, None)?;
    assert_eq!(logits.dims(), [2, 7, 40]);
    assert_eq!(out.hidden_states.len(), config.num_hidden_layers + 1);
    assert_eq!(out.attention.as_ref().unwrap()[0].dims(), [2, 4, 7, 7]);
    // fairseq zeroes the embedding output at padded positions.
    let padded = out.hidden_states[0].narrow(1, 5, 2)?.abs()?.sum_all()?.to_scalar::<f32>()?;
    assert_eq!(padded, 0.0);
    // Extra padding does not change real positions (keys are masked).
    let ids_short = ids.narrow(1, 0, 5)?;
    let (_, short) = mlm.forward(&ids_short, proberta::Forward::default(), None)?;
    let diff =
        max_abs_diff(&short.last().narrow(1, 0, 4)?.narrow(0, 1, 1)?, &out.last().narrow(1, 0, 4)?.narrow(0, 1, 1)?);
    assert!(diff < 1e-5, "{diff}");
    // Too long for the position table: a clear error.
    let too_long = Tensor::zeros((1, 513), DType::U32, &Device::Cpu)?;
    assert!(mlm.encoder.forward(&too_long, proberta::Forward::default(), None).is_err());
    Ok(())
}

#[test]
fn proberta_attention_mask_of_the_caller_replaces_the_padding_mask() -> Result<()> {
    let map = SeededVarMap::new(6);
    let config = proberta::Config::tiny(40);
    let encoder = proberta::Encoder::load(map.var_builder(DType::F32, &Device::Cpu), &config)?;
    let ids = Tensor::new(&[[0u32, 5, 6, 7, 2, 1], [0, 9, 8, 2, 1, 1]], &Device::Cpu)?;
    let default = encoder.forward(&ids, proberta::Forward::default(), None)?;
    // The padding mask given explicitly (as i64, Hugging Face's dtype) changes nothing.
    let explicit = ids.ne(1u32)?.to_dtype(DType::I64)?;
    let same = encoder.forward_masked(&ids, Some(&explicit), proberta::Forward::default(), None)?;
    assert_eq!(max_abs_diff(default.last(), same.last()), 0.0);
    assert_eq!(same.mask.to_vec2::<u32>()?, default.mask.to_vec2::<u32>()?);
    // Masking token 3 of the first protein: what it is no longer reaches the other positions.
    let mask = Tensor::new(&[[1u32, 1, 1, 0, 1, 0], [1, 1, 1, 1, 0, 0]], &Device::Cpu)?;
    let other = Tensor::new(&[[0u32, 5, 6, 30, 2, 1], [0, 9, 8, 2, 1, 1]], &Device::Cpu)?;
    let a = encoder.forward_masked(&ids, Some(&mask), proberta::Forward::default(), None)?;
    let b = encoder.forward_masked(&other, Some(&mask), proberta::Forward::default(), None)?;
    let kept = |o: &proberta::EncoderOutput| {
        o.last()
            .narrow(0, 0, 1)
            .unwrap()
            .index_select(&Tensor::new(&[0u32, 1, 2, 4], &Device::Cpu).unwrap(), 1)
            .unwrap()
    };
    assert!(max_abs_diff(&kept(&a), &kept(&b)) < 1e-6);
    // Without the mask the same change does reach them.
    let c = encoder.forward(&other, proberta::Forward::default(), None)?;
    assert!(max_abs_diff(&kept(&default), &kept(&c)) > 1e-4);
    let bad = Tensor::ones((2, 5), DType::U32, &Device::Cpu)?;
    let err = encoder.forward_masked(&ids, Some(&bad), proberta::Forward::default(), None).unwrap_err().to_string();
    assert!(err.contains("attention_mask") && err.contains("(2, 6)"), "{err}");
    Ok(())
}

#[test]
fn heads_run_on_both_trunks() -> Result<()> {
    let (map, model) = proteinbert_tiny(6)?;
    let ids = residue_batch(&["MKV", "ACDE"], 12)?;
    let features = model.features(&ids, None)?;
    let head = LinearHead::load(
        map.var_builder(DType::F32, &Device::Cpu).pp("head"),
        HeadConfig::proteinbert(Level::Residue, Target::Categorical { classes: 3 }),
        model.residue_width(),
        model.protein_width(),
    )?;
    assert_eq!(head.forward(HeadInput::One(&features), None)?.dims(), [2, 12, 3]);

    let map = SeededVarMap::new(7);
    let encoder = proberta::Encoder::load(map.var_builder(DType::F32, &Device::Cpu), &proberta::Config::tiny(40))?;
    let ids = Tensor::new(&[[0u32, 5, 6, 2], [0, 9, 2, 1]], &Device::Cpu)?;
    let features = encoder.features(&ids, None)?;
    let head = protein_lm::models::heads::ClassificationHead::load(
        map.var_builder(DType::F32, &Device::Cpu).pp("classifier"),
        HeadConfig::proberta(Level::Pair, Target::Binary),
        encoder.residue_width(),
        encoder.protein_width(),
    )?;
    assert_eq!(head.forward(HeadInput::Two(&features, &features), None)?.dims(), [2, 1]);
    Ok(())
}

#[test]
fn model_directory_round_trip() -> Result<()> {
    let (map, model) = proteinbert_tiny(8)?;
    let dir = tempfile::tempdir().unwrap();
    let tensors: HashMap<String, Tensor> =
        map.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    let config = DirectoryConfig {
        model: ModelConfig::Proteinbert(model.config().clone()),
        source: Some("test".into()),
        has_lm_head: false,
        heads: vec![],
    };
    ModelDir::create(dir.path(), &config, &tensors)?;
    let opened = ModelDir::open(dir.path())?;
    assert_eq!(opened.config(), &config);
    let loaded = opened.proteinbert(DType::F32, &Device::Cpu)?;
    let ids = residue_batch(&["MKVW"], 10)?;
    // The directory's weights are plain tensors, so its model takes the fused inference path: bit
    // for bit the same as the same tensors held in memory, and within rounding of the `Var` model.
    let in_memory = proteinbert::ProteinBert::load(
        candle_nn::VarBuilder::from_tensors(
            tensors.iter().map(|(n, t)| (n.clone(), t.detach())).collect(),
            DType::F32,
            &Device::Cpu,
        ),
        model.config(),
    )?;
    let b = loaded.features(&ids, None)?.protein;
    assert_eq!(max_abs_diff(&in_memory.features(&ids, None)?.protein, &b), 0.0);
    assert!(max_abs_diff(&model.features(&ids, None)?.protein, &b) < 1e-5);
    assert!(opened.proberta_encoder(DType::F32, &Device::Cpu).is_err());
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert!(text.contains("\"kind\": \"proteinbert\""), "{text}");
    Ok(())
}
