//! Random inputs and inference weights the model benchmarks share (included by `#[path]`).
#![allow(dead_code)] // each benchmark uses some of these

use candle_core::{DType, Device, Tensor};
use protein_lm::models::init::SeededVarMap;
use protein_lm::Rng;

/// `(b, l)` token ids drawn uniformly from `lo..hi`.
pub fn random_ids(rng: &mut Rng, b: usize, l: usize, lo: u32, hi: u32) -> Tensor {
    let ids: Vec<u32> = (0..b * l).map(|_| lo + rng.index((hi - lo) as usize) as u32).collect();
    Tensor::from_vec(ids, (b, l), &Device::Cpu).unwrap()
}

/// Random weights as plain tensors: built from `Var`s, every intermediate would keep the autograd
/// graph (and so every earlier activation) alive, which inference does not want.
pub fn inference_weights(map: &SeededVarMap) -> candle_nn::VarBuilder<'static> {
    let tensors = map.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
    candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)
}

/// `n` PRoBERTa sequences of exactly `len` tokens: `<s>`, `len − 2` random pieces of a
/// `vocab`-piece dictionary (past the four specials), `</s>`; no padding.
pub fn random_proberta_sequences(n: usize, len: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let mut ids = vec![0u32];
            ids.extend((0..len - 2).map(|_| 4 + rng.index(vocab - 5) as u32));
            ids.push(2);
            ids
        })
        .collect()
}
