//! Long PRoBERTa proteins: the windows a protein with more pieces than the model's positions is cut
//! into ([`LongPolicy::Window`](super::LongPolicy::Window)).

use super::*;

pub(super) fn with_specials(pieces: &[u32]) -> Vec<u32> {
    let mut ids = Vec::with_capacity(pieces.len() + 2);
    ids.push(vocab::BOS);
    ids.extend_from_slice(pieces);
    ids.push(vocab::EOS);
    ids
}

/// Window starts over `n` pieces (`n > window`): every `stride` pieces, the last window ending on
/// the last piece.
pub fn window_starts(n: usize, window: usize, stride: usize) -> Vec<usize> {
    if n <= window {
        return vec![0];
    }
    let last = n - window;
    let mut starts = vec![0];
    while let Some(&s) = starts.last().filter(|&&s| s < last) {
        starts.push((s + stride.max(1)).min(last));
    }
    starts
}
