//! ProteinBERT's hot path: the dilated 'same' conv1d (one matmul per tap) forward and backward at the
//! pretraining size B=32, L=512, C=128, k=9, for dilation 1 and 5.
//!
//! `cargo bench --bench conv1d`. Reference point (rust-ecosystem.md, same machine kind): a channels-first
//! stack-based im2col took 139 ms forward+backward at d=5, the built-in (wrong-gradient) conv 185 ms.

use candle_core::{DType, Device, Tensor, Var};
use protein_lm::models::layers::Conv1d;
use protein_lm::Rng;

fn main() -> candle_core::Result<()> {
    let (b, l, c, k) = (32usize, 512usize, 128usize, 9usize);
    let mut rng = Rng::new(0);
    let x = Var::from_tensor(&Tensor::from_vec(rng.normal_vec(b * l * c, 0.0, 1.0), (b, l, c), &Device::Cpu)?)?;
    for dilation in [1usize, 5] {
        let w = Var::from_tensor(&Tensor::from_vec(rng.normal_vec(c * c * k, 0.0, 0.05), (c, c, k), &Device::Cpu)?)?;
        let bias = Tensor::zeros(c, DType::F32, &Device::Cpu)?;
        let conv =
            Conv1d::new(w.as_tensor().clone(), bias, dilation).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        // Warm-up, then the median of several runs.
        let _ = conv.forward(x.as_tensor()).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let mut times = Vec::new();
        for _ in 0..7 {
            let start = std::time::Instant::now();
            let y = conv.forward(x.as_tensor()).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let grads = y.sqr()?.sum_all()?.backward()?;
            assert!(grads.get(&w).is_some());
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let gflop = 3.0 * 2.0 * (b * l * c * c * k) as f64 / 1e9;
        println!(
            "conv1d B={b} L={l} C={c} k={k} d={dilation}: forward+backward median {:.1} ms ({:.1} GFLOP/s)",
            times[3],
            gflop / (times[3] / 1e3)
        );
    }
    Ok(())
}
