//! Fused CPU kernels with backward, each with candle's own ops as the fallback on other devices
//! and dtypes (so CUDA keeps candle's kernels):
//!
//! * `elementwise`: exact (erf) GELU and tanh;
//! * `norm`: softmax over the last axis and LayerNorm, forward and backward, one pass per row;
//! * `attention`: multi-head attention per (protein, head), no `L × L` tensor, dropout inside;
//! * `linear`: `x · Wᵀ + b` as one GEMM starting from the bias;
//! * `conv`: dilated 1-D convolution as in-place GEMMs over overlapping windows;
//! * `positions`: weighted sums over positions;
//! * `inference`: ProteinBERT's block at inference, its local track and global attention fused;
//! * `training`: ProteinBERT's block for training, the local track and the global attention
//!   as fused ops with their own backward.
//!
//! Row kernels are compiled for AVX-512, AVX2 + FMA and the baseline and pick the widest the CPU
//! has (`multiversion!`), and split across threads with rayon. Every sum over positions or a long
//! row is accumulated in f64 (`sum_f64`), so its error does not grow with protein length.
//!
//! candle 0.11 computes `gelu_erf` per element through an f64 `erf` and `tanh` through libm, on
//! one thread; in ProteinBERT they run on every activation of every block (the attention values
//! alone are `B · L · 512` per block) and took about as long as all its matrix products.
//!
//! Accuracy (f32, tested against f64 references over ±12): GELU via the complementary error
//! function `Φ(x) = erfc(−x/√2)/2` with the Numerical Recipes Chebyshev fit (fractional error
//! < 1.2e-7) and a polynomial `exp` (relative error < 2e-7): |error| ≤ 4e-7 · max(1, |x|); tanh
//! |error| ≤ 3e-7. Exact enough that ProteinBERT still equals Keras to 2e-6 and the tanh
//! approximation of GELU (4e-4 off) stays far away.

pub use attention::{attention, attention_applies, AttentionDropout};
pub use conv::conv_taps;
pub use elementwise::{gelu_erf, tanh_act};
pub use inference::{fused_block_applies, global_attention, local_track, ConvWeights, LocalTrack};
pub use linear::linear_bias;
pub use norm::{fused_layer_norm_applies, layer_norm, softmax_last_dim};
pub use positions::{sum_over_positions, weighted_sum_over_positions};
pub use training::{conv_sum_norm, dense_residual_norm, global_attention_trained, ConvTrack, TrackConv};

use candle_core::{CpuStorage, DType, Device, Layout, Tensor};

pub(crate) const CHUNK: usize = 1 << 14;

/// The f32 values of a contiguous CPU storage, or the error the op `name` reports.
pub(crate) fn contiguous_f32<'a>(
    name: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else { candle_core::bail!("{name}: f32 only") };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("{name}: contiguous inputs only") };
    Ok(&values[start..end])
}

/// The f32 values of a tensor an op holds itself (a backward op's output gradient, which candle
/// does not hand over as a storage), passed to `f` while its storage is borrowed.
pub(super) fn with_held_f32<R>(
    name: &str,
    held: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = held.storage_and_layout();
    let candle_core::Storage::Cpu(storage) = &*storage else {
        candle_core::bail!("{name}: the output gradient is not on the CPU")
    };
    f(contiguous_f32(name, storage, layout)?)
}

pub(super) fn use_kernel(xs: &Tensor) -> bool {
    matches!(xs.device(), Device::Cpu) && xs.dtype() == DType::F32
}

/// The widest vector unit this CPU has: 2 = AVX-512, 1 = AVX2 + FMA, 0 = the baseline.
#[cfg(target_arch = "x86_64")]
pub(crate) fn simd_level() -> u8 {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            2
        } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            1
        } else {
            0
        }
    })
}

/// Defines `fn name(args)` compiled three times (AVX-512, AVX2 + FMA, baseline) and picks the
/// widest the CPU runs. Everything the body calls must be `#[inline(always)]`, so it is compiled
/// inside each version. (A closure handed to a `#[target_feature]` function is not enough: it
/// stays a baseline function of its own, and the GELU pass ran 4-wide SSE that way. Nor is an
/// iterator's `for_each`, whose `fold` is not inlined: write the loops as `for` loops.)
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn inner($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { inner($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { inner($($arg),*) }
                // SAFETY: each version runs only where the CPU reports the features it enables.
                match $crate::models::ops::simd_level() {
                    2 => return unsafe { avx512($($arg),*) },
                    1 => return unsafe { avx2($($arg),*) },
                    _ => {}
                }
            }
            inner($($arg),*)
        }
    };
}
// For the optimisers' kernels (`train::optim`).
pub(crate) use multiversion;

mod attention;
mod conv;
mod elementwise;
mod inference;
mod linear;
mod norm;
mod positions;
mod training;

/// `Σ xs` accumulated in f64 over eight lanes: the f32 inputs are summed exactly enough that the
/// error does not grow with the number of terms (positions), and the lanes vectorise.
#[inline(always)]
pub(super) fn sum_f64(xs: &[f32]) -> f64 {
    sum_f64_of(xs, |v| v as f64)
}

/// `Σ f(x)` over `xs`, accumulated as [`sum_f64`] does.
#[inline(always)]
pub(crate) fn sum_f64_of(xs: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0f64; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// A raw output pointer shared by rayon tasks that each write their own disjoint part.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub(super) *mut f32);
// SAFETY: tasks write disjoint elements (each use says why).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// A strided matrix operand for [`gemm_strided`]: element (i, j) at `ptr + i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
pub(super) struct Strided<T> {
    pub(super) ptr: T,
    pub(super) row_stride: isize,
    pub(super) col_stride: isize,
}

impl<T> Strided<T> {
    /// A row-major block whose rows lie `row_stride` apart (a head's slice of a `(L, H·D)` matrix).
    pub(super) fn rows(ptr: T, row_stride: usize) -> Self {
        Self { ptr, row_stride: row_stride as isize, col_stride: 1 }
    }

    /// The transpose of [`Strided::rows`]: element (i, j) is the block's (j, i).
    pub(super) fn transposed(ptr: T, row_stride: usize) -> Self {
        Self { ptr, row_stride: 1, col_stride: row_stride as isize }
    }
}

/// `C (m × n) = [accumulate ? C : 0] + A (m × k) · B (k × n)` with arbitrary strides (rows of A may
/// overlap, which is how a convolution reads its input windows without an im2col copy).
///
/// # Safety
/// Every element the strides address must be valid; C must not overlap itself or A, B.
pub(super) unsafe fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    c: Strided<*mut f32>,
    a: Strided<*const f32>,
    b: Strided<*const f32>,
    accumulate: bool,
) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    unsafe { gemm_strided_in(m, n, k, c, a, b, accumulate, parallelism) }
}

/// [`gemm_strided`] with the caller's choice of threads: `Parallelism::None` inside a task that
/// rayon already runs beside others.
///
/// # Safety
/// As for [`gemm_strided`].
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_strided_in(
    m: usize,
    n: usize,
    k: usize,
    c: Strided<*mut f32>,
    a: Strided<*const f32>,
    b: Strided<*const f32>,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    // gemm computes dst = alpha·dst + beta·lhs·rhs; its strides are (column, row).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.ptr,
            c.col_stride,
            c.row_stride,
            accumulate,
            a.ptr,
            a.col_stride,
            a.row_stride,
            b.ptr,
            b.col_stride,
            b.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// `C (m × n) = [accumulate ? C : 0] + A (m × k) · B (k × n)`, all row-major and contiguous.
///
/// # Safety
/// The pointers must be valid for the given sizes.
pub(super) unsafe fn gemm_rowmajor(
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    a: *const f32,
    b: *const f32,
    accumulate: bool,
) {
    fn row<T>(ptr: T, cols: usize) -> Strided<T> {
        Strided { ptr, row_stride: cols as isize, col_stride: 1 }
    }
    unsafe { gemm_strided(m, n, k, row(c, n), row(a, k), row(b, n), accumulate) }
}
