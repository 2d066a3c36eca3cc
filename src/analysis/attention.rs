//! How far two sets of attention distributions lie apart, block by block and head by head:
//! ProteinBERT's Fig. 5 asks which blocks fine-tuning changed most (the paper: mostly the last).
//!
//! Maps are indexed `[protein][block][head][position]`, each a distribution over the protein's
//! positions (the global attention of one head). The distance of two distributions is their
//! total variation (half the L1 distance): 0 for equal maps, 1 for maps on disjoint positions,
//! and independent of the protein's length, so proteins of every length weigh the same.
//!
//! ```
//! use candle_core::{DType, Device};
//! use protein_lm::analysis::attention::{attention_shift, global_attention_maps};
//! use protein_lm::models::init::SeededVarMap;
//! use protein_lm::models::proteinbert::{Config, ProteinBert};
//! let config = Config::tiny(5);
//! let load = |seed| ProteinBert::load(SeededVarMap::new(seed).var_builder(DType::F32, &Device::Cpu), &config);
//! // Two differently seeded tiny networks stand in for a model before and after fine-tuning.
//! let (before, after) = (load(1)?, load(2)?);
//! let proteins = ["MKTAYIAKQR", "ACDEFGHIK"];
//! let shift = attention_shift(&global_attention_maps(&before, &proteins)?, &global_attention_maps(&after, &proteins)?)?;
//! assert_eq!((shift.len(), shift[0].len()), (config.n_blocks, config.n_heads));
//! assert!(shift.iter().flatten().all(|&d| (0.0..=1.0).contains(&d)));
//! # Ok::<(), protein_lm::Error>(())
//! ```

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::models::proteinbert::ProteinBert;
use crate::tokenize::residue::ResidueTokenizer;
use crate::tokenize::UnknownCounts;

/// ProteinBERT's global attention on each of `sequences`, `[protein][block][head][position]`,
/// read as the reference's `calculate_attentions` reads it for Fig. 5: one protein at a time at
/// its exact length (`<START>`, residues, `<END>`; no padding), so every position is real and no
/// map depends on the other proteins or on a padded length.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::analysis::attention::global_attention_maps;
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proteinbert::{Config, ProteinBert};
/// let config = Config::tiny(5);
/// let model = ProteinBert::load(SeededVarMap::new(1).var_builder(DType::F32, &Device::Cpu), &config)?;
/// let maps = global_attention_maps(&model, &["MKV", "ACDEFGHIK"])?;
/// assert_eq!((maps[0].len(), maps[0][0].len()), (config.n_blocks, config.n_heads));
/// // `<START>`, nine residues and `<END>`: each head's weights cover exactly these and sum to 1.
/// let head = &maps[1][0][0];
/// assert_eq!(head.len(), 11);
/// assert!((head.iter().sum::<f32>() - 1.0).abs() < 1e-5);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn global_attention_maps(model: &ProteinBert, sequences: &[&str]) -> Result<Vec<Vec<Vec<Vec<f32>>>>> {
    let device = model.device();
    sequences
        .iter()
        .enumerate()
        .map(|(i, sequence)| {
            if sequence.is_empty() {
                return Err(Error::invalid(format!("protein {i} has no residues")));
            }
            let ids = ResidueTokenizer.encode(sequence, &mut UnknownCounts::default());
            let len = ids.len();
            let tokens = Tensor::from_vec(ids, (1, len), device)?;
            let out = model.forward_without_annotations(&tokens, true)?;
            let maps = out.attention.ok_or_else(|| Error::invalid("the forward pass kept no attention"))?;
            maps.iter().map(|m| Ok(m.squeeze(0)?.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)).collect()
        })
        .collect()
}

/// Total-variation distance of two distributions over the same positions, in [0, 1].
pub fn total_variation(p: &[f32], q: &[f32]) -> Result<f64> {
    if p.len() != q.len() {
        return Err(Error::invalid(format!("distributions over {} and {} positions", p.len(), q.len())));
    }
    Ok(0.5 * p.iter().zip(q).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>())
}

/// Mean total-variation distance between `before` and `after` per block and head
/// (`[block][head]`, averaged over proteins).
///
/// ```
/// use protein_lm::analysis::attention::attention_shift;
/// // One protein, one block of two heads over four positions; only head 0 moves.
/// let before = vec![vec![vec![vec![0.25f32; 4], vec![0.25; 4]]]];
/// let after = vec![vec![vec![vec![1.0f32, 0.0, 0.0, 0.0], vec![0.25; 4]]]];
/// assert_eq!(attention_shift(&before, &after)?, vec![vec![0.75, 0.0]]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn attention_shift(before: &[Vec<Vec<Vec<f32>>>], after: &[Vec<Vec<Vec<f32>>>]) -> Result<Vec<Vec<f64>>> {
    if before.len() != after.len() || before.is_empty() {
        return Err(Error::invalid(format!(
            "attention of {} proteins before and {} after: need the same, non-empty set",
            before.len(),
            after.len()
        )));
    }
    let blocks = before[0].len();
    let heads = before[0].first().map_or(0, Vec::len);
    let mut sums = vec![vec![0.0; heads]; blocks];
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if b.len() != blocks || a.len() != blocks {
            return Err(Error::invalid(format!("protein {i}: {} and {} blocks, expected {blocks}", b.len(), a.len())));
        }
        for (k, (bb, ab)) in b.iter().zip(a).enumerate() {
            if bb.len() != heads || ab.len() != heads {
                return Err(Error::invalid(format!("protein {i}, block {k}: expected {heads} heads")));
            }
            for (h, (p, q)) in bb.iter().zip(ab).enumerate() {
                sums[k][h] += total_variation(p, q)
                    .map_err(|e| Error::invalid(format!("protein {i}, block {k}, head {h}: {e}")))?;
            }
        }
    }
    let n = before.len() as f64;
    Ok(sums.into_iter().map(|row| row.into_iter().map(|s| s / n).collect()).collect())
}

/// Mean attention mass on `positions` per block and head (`[block][head]`, averaged over
/// proteins): e.g. on a signal peptide's residues 1–30 (positions 1..=30 after `<START>`). A range
/// past a protein's end counts what lies within it.
///
/// ```
/// use protein_lm::analysis::attention::attention_share;
/// // Two proteins, one block with one head each.
/// let a = vec![vec![vec![0.5f32, 0.25, 0.25, 0.0]]];
/// let b = vec![vec![vec![0.0f32, 0.0, 0.5, 0.5]]];
/// // Mass on positions 0 and 1: 0.75 in `a`, 0 in `b`.
/// assert_eq!(attention_share(&[a, b], 0..2)?, vec![vec![0.375]]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn attention_share(maps: &[Vec<Vec<Vec<f32>>>], positions: std::ops::Range<usize>) -> Result<Vec<Vec<f64>>> {
    if maps.is_empty() {
        return Err(Error::invalid("attention share of no proteins"));
    }
    let (blocks, heads) = (maps[0].len(), maps[0].first().map_or(0, Vec::len));
    let mut sums = vec![vec![0.0; heads]; blocks];
    for (i, protein) in maps.iter().enumerate() {
        if protein.len() != blocks || protein.iter().any(|b| b.len() != heads) {
            return Err(Error::invalid(format!("protein {i}: expected {blocks} blocks of {heads} heads")));
        }
        for (k, block) in protein.iter().enumerate() {
            for (h, head) in block.iter().enumerate() {
                let end = positions.end.min(head.len());
                let start = positions.start.min(end);
                sums[k][h] += head[start..end].iter().map(|&v| v as f64).sum::<f64>();
            }
        }
    }
    let n = maps.len() as f64;
    Ok(sums.into_iter().map(|row| row.into_iter().map(|s| s / n).collect()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::init::SeededVarMap;
    use crate::models::proteinbert::Config;
    use candle_core::{DType, Device};

    #[test]
    fn maps_are_one_distribution_per_block_and_head_over_the_exact_length() -> Result<()> {
        let config = Config::tiny(5);
        let map = SeededVarMap::new(1);
        let model = ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &config)?;
        let maps = global_attention_maps(&model, &["MKV", "ACDEFGHIK"])?;
        assert_eq!(maps.len(), 2);
        for (protein, residues) in maps.iter().zip([3, 9]) {
            assert_eq!(protein.len(), config.n_blocks);
            for block in protein {
                assert_eq!(block.len(), config.n_heads);
                for head in block {
                    assert_eq!(head.len(), residues + 2, "START and END besides the residues, no padding");
                    assert!((head.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                }
            }
        }
        // One protein at a time: a map does not depend on the proteins beside it.
        assert_eq!(global_attention_maps(&model, &["ACDEFGHIK"])?[0], maps[1]);
        let err = global_attention_maps(&model, &["MKV", ""]).unwrap_err().to_string();
        assert!(err.contains("protein 1"), "{err}");
        Ok(())
    }

    #[test]
    fn total_variation_is_half_the_l1_distance() -> Result<()> {
        assert_eq!(total_variation(&[0.5, 0.5], &[0.5, 0.5])?, 0.0);
        assert_eq!(total_variation(&[1.0, 0.0], &[0.0, 1.0])?, 1.0);
        assert!((total_variation(&[0.7, 0.2, 0.1], &[0.5, 0.3, 0.2])? - 0.2).abs() < 1e-7);
        assert!(total_variation(&[1.0], &[0.5, 0.5]).is_err());
        Ok(())
    }

    #[test]
    fn share_is_the_mass_on_the_positions_averaged_over_proteins() -> Result<()> {
        let a = vec![vec![vec![0.5f32, 0.25, 0.25, 0.0]]];
        let b = vec![vec![vec![0.0f32, 0.0, 0.5, 0.5]]];
        assert_eq!(attention_share(&[a.clone(), b.clone()], 0..2)?, vec![vec![0.375]]);
        assert_eq!(attention_share(std::slice::from_ref(&a), 0..4)?, vec![vec![1.0]], "a whole distribution sums to 1");
        assert_eq!(attention_share(std::slice::from_ref(&b), 2..40)?, vec![vec![1.0]], "a range past the end is cut");
        assert!(attention_share(&[], 0..2).is_err());
        assert!(attention_share(&[a, vec![]], 0..2).unwrap_err().to_string().contains("protein 1"));
        Ok(())
    }

    #[test]
    fn shift_averages_over_proteins_per_block_and_head() -> Result<()> {
        let uniform = vec![0.25f32; 4];
        let peaked = vec![1.0f32, 0.0, 0.0, 0.0];
        // Two proteins, two blocks of two heads; only block 1, head 0 changes, in one protein.
        let before = vec![vec![vec![uniform.clone(); 2]; 2]; 2];
        let mut after = before.clone();
        after[1][1][0] = peaked;
        let shift = attention_shift(&before, &after)?;
        assert_eq!(shift, vec![vec![0.0, 0.0], vec![0.375, 0.0]]);
        assert!(attention_shift(&before, &after[..1]).unwrap_err().to_string().contains("1 after"));
        let mut ragged = after.clone();
        ragged[0][0][1] = vec![1.0];
        assert!(attention_shift(&before, &ragged).unwrap_err().to_string().contains("protein 0, block 0, head 1"));
        Ok(())
    }
}
