//! Per-position rows → one vector per protein.

use super::*;

/// `rows (n_rows, d)` → one vector (every row is a real token).
pub(super) fn pool_rows(pooling: EmbedPooling, rows: &[f32], n_rows: usize, d: usize) -> Vec<f32> {
    match pooling {
        EmbedPooling::Mean | EmbedPooling::Sum => {
            let mut acc = vec![0f32; d];
            for row in rows.chunks(d).take(n_rows) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            if pooling == EmbedPooling::Mean {
                acc.iter_mut().for_each(|a| *a /= n_rows.max(1) as f32);
            }
            acc
        }
        EmbedPooling::Cls => rows[..d].to_vec(),
        EmbedPooling::First128 => {
            let mut out = vec![0f32; FIRST_TOKENS * d];
            let k = n_rows.min(FIRST_TOKENS);
            out[..k * d].copy_from_slice(&rows[..k * d]);
            out
        }
        EmbedPooling::Global | EmbedPooling::ProbertaClustering => unreachable!("vector poolings come pooled"),
    }
}
