//! Readers for weights that other frameworks wrote: Python pickles (with numpy arrays in them) and
//! PyTorch checkpoints, in pure Rust.
//!
//! # Why this exists
//!
//! PRoBERTa's published checkpoints are fairseq `checkpoint_best.pt` files of May 2020, written by a
//! torch of that time, so probably in the **legacy** serialization format (torch < 1.6). candle reads
//! only the zip format: on a legacy file `candle_core::pickle` fails with "Could not find central
//! directory end" (candle issues #1348 and #2666). Converting through Python needs torch installed and
//! `torch.load(weights_only=False)`, since fairseq pickles an `argparse.Namespace`. These readers make
//! that step unnecessary.
//!
//! # What is here
//!
//! - [`torch::read_state_dict`]`(path, key)`: the tensors of a `torch.save` file, zip or legacy, as
//!   contiguous little-endian [`RawTensor`]s in file order; `key` picks a sub-dict (`Some("model")` for
//!   fairseq). [`torch::Checkpoint`] gives the whole pickled object too (fairseq's `args`, …).
//! - [`pickle::loads`] / [`pickle::load_file`]: a pickle virtual machine (protocols 0–5) that rebuilds a
//!   [`Value`] tree. Classes it does not know become [`pickle::Object`]s instead of errors; numpy arrays
//!   (numpy 1.x `numpy.core` and 2.x `numpy._core` globals, `_reconstruct` and protocol-5 `_frombuffer`)
//!   become [`Value::NdArray`].
//! - [`RawTensor`]: dtype, shape and bytes, with [`RawTensor::to_candle`] and [`RawTensor::to_f32_vec`].
//!
//! # What is not supported, and fails with a clear error
//!
//! - No code from a pickle is ever run: this is a data reader, not `pickle.load`.
//! - Out-of-band buffers (protocol 5 `NEXT_BUFFER`), the copyreg extension registry (`EXT1/2/4`),
//!   recursive (self-containing) objects.
//! - torch: big-endian files, the pre-0.4 tar format, quantized, sparse and complex tensors, storages
//!   that are not on the tensor's own dtype; compressed zip entries (torch writes them stored).
//! - numpy: object, string, structured, datetime and complex dtypes stay [`pickle::Object`]s.
//! - Sizes are bounded by the input: a corrupt length cannot make the reader allocate more than the file
//!   could hold, and nesting deeper than [`pickle::MAX_DEPTH`] (256) levels is an error rather than a stack overflow.

pub mod pickle;
pub mod torch;

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};

pub use pickle::Value;

/// Element type of a [`RawTensor`]: the dtypes torch state dicts and numpy arrays of numbers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawDType {
    Bool,
    U8,
    I8,
    I16,
    I32,
    I64,
    U16,
    U32,
    U64,
    F16,
    BF16,
    F32,
    F64,
}

impl RawDType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            RawDType::Bool | RawDType::U8 | RawDType::I8 => 1,
            RawDType::I16 | RawDType::U16 | RawDType::F16 | RawDType::BF16 => 2,
            RawDType::I32 | RawDType::U32 | RawDType::F32 => 4,
            RawDType::I64 | RawDType::U64 | RawDType::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RawDType::Bool => "bool",
            RawDType::U8 => "u8",
            RawDType::I8 => "i8",
            RawDType::I16 => "i16",
            RawDType::I32 => "i32",
            RawDType::I64 => "i64",
            RawDType::U16 => "u16",
            RawDType::U32 => "u32",
            RawDType::U64 => "u64",
            RawDType::F16 => "f16",
            RawDType::BF16 => "bf16",
            RawDType::F32 => "f32",
            RawDType::F64 => "f64",
        }
    }
}

impl std::fmt::Display for RawDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A dense tensor read from a file: C order, little-endian bytes, no framework attached.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: RawDType,
    pub shape: Vec<usize>,
    /// `numel · dtype.size_in_bytes()` bytes.
    pub data: Vec<u8>,
}

impl RawTensor {
    /// Checks that `data` holds exactly the elements of `shape`.
    pub fn new(dtype: RawDType, shape: Vec<usize>, data: Vec<u8>) -> std::result::Result<Self, String> {
        let numel = checked_numel(&shape).ok_or_else(|| format!("shape {shape:?} overflows"))?;
        let expected = numel.checked_mul(dtype.size_in_bytes()).ok_or_else(|| format!("shape {shape:?} overflows"))?;
        if data.len() != expected {
            return Err(format!(
                "{dtype} tensor of shape {shape:?} needs {expected} bytes, the data has {}",
                data.len()
            ));
        }
        Ok(Self { dtype, shape, data })
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Every element as f32 (integers and f64 rounded to the nearest f32, bools as 0 and 1).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let d = &self.data;
        match self.dtype {
            RawDType::Bool | RawDType::U8 => d.iter().map(|&b| b as f32).collect(),
            RawDType::I8 => d.iter().map(|&b| b as i8 as f32).collect(),
            RawDType::I16 => d.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32).collect(),
            RawDType::U16 => d.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as f32).collect(),
            RawDType::F16 => d.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            RawDType::BF16 => d.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            RawDType::I32 => d.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            RawDType::U32 => d.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            RawDType::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            RawDType::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            RawDType::U64 => d.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            RawDType::F64 => d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        }
    }

    /// A candle tensor of the same values. candle has no i8, u16 or u64 and no bool, so those widen
    /// losslessly (i8 → i16, u16 → i32, bool → u8) and u64 becomes i64 (an error above `i64::MAX`).
    pub fn to_candle(&self, device: &Device) -> candle_core::Result<Tensor> {
        let direct = |dtype: DType| Tensor::from_raw_buffer(&self.data, dtype, &self.shape, device);
        match self.dtype {
            RawDType::Bool | RawDType::U8 => direct(DType::U8),
            RawDType::I16 => direct(DType::I16),
            RawDType::I32 => direct(DType::I32),
            RawDType::I64 => direct(DType::I64),
            RawDType::U32 => direct(DType::U32),
            RawDType::F16 => direct(DType::F16),
            RawDType::BF16 => direct(DType::BF16),
            RawDType::F32 => direct(DType::F32),
            RawDType::F64 => direct(DType::F64),
            RawDType::I8 => {
                let v: Vec<i16> = self.data.iter().map(|&b| b as i8 as i16).collect();
                Tensor::from_vec(v, self.shape.as_slice(), device)
            }
            RawDType::U16 => {
                let v: Vec<i32> = self.data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i32).collect();
                Tensor::from_vec(v, self.shape.as_slice(), device)
            }
            RawDType::U64 => {
                let v = self
                    .data
                    .chunks_exact(8)
                    .map(|c| {
                        let x = u64::from_le_bytes(c.try_into().unwrap());
                        i64::try_from(x).map_err(|_| candle_core::Error::Msg(format!("u64 value {x} exceeds i64")))
                    })
                    .collect::<candle_core::Result<Vec<i64>>>()?;
                Tensor::from_vec(v, self.shape.as_slice(), device)
            }
        }
    }

    /// [`to_candle`](Self::to_candle) followed by a cast to f32: the usual way into a model, whatever
    /// precision the checkpoint was saved in. (candle casts: it is built optimised even in debug
    /// builds, where a scalar loop here took 3 s for PRoBERTa's 44 M f16 weights.)
    pub fn to_candle_f32(&self, device: &Device) -> candle_core::Result<Tensor> {
        self.to_candle(device)?.to_dtype(DType::F32)
    }
}

pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Copies the elements of a strided view of `src` (element size `elem`, strides and offset in
/// elements) into a C-order buffer. The caller has checked that every index is inside `src`.
pub(crate) fn gather(src: &[u8], elem: usize, offset: usize, shape: &[usize], strides: &[usize]) -> Vec<u8> {
    let numel: usize = shape.iter().product();
    let mut out = Vec::with_capacity(numel * elem);
    if numel == 0 {
        return out;
    }
    if is_c_contiguous(shape, strides) {
        out.extend_from_slice(&src[offset * elem..(offset + numel) * elem]);
        return out;
    }
    // Odometer over all axes but the last; the last axis is one run when its stride is 1.
    let (outer, last) = shape.split_at(shape.len() - 1);
    let (last_len, last_stride) = (last[0], strides[shape.len() - 1]);
    let mut index = vec![0usize; outer.len()];
    loop {
        let base = offset + index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        if last_stride == 1 {
            out.extend_from_slice(&src[base * elem..(base + last_len) * elem]);
        } else {
            for j in 0..last_len {
                let at = (base + j * last_stride) * elem;
                out.extend_from_slice(&src[at..at + elem]);
            }
        }
        let mut axis = outer.len();
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            index[axis] += 1;
            if index[axis] < outer[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
}

fn is_c_contiguous(shape: &[usize], strides: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected *= d;
    }
    true
}

/// The largest element index a view touches, or `None` for an empty view or on overflow.
pub(crate) fn max_index(offset: usize, shape: &[usize], strides: &[usize]) -> Option<Option<usize>> {
    if shape.contains(&0) {
        return Some(None);
    }
    let mut top = offset;
    for (&d, &s) in shape.iter().zip(strides) {
        top = top.checked_add((d - 1).checked_mul(s)?)?;
    }
    Some(Some(top))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn gather_transposed_offset_and_broadcast_views() {
        let src = f32_bytes(&(0..12).map(|x| x as f32).collect::<Vec<_>>());
        // (3, 4) C order, transposed to (4, 3): strides (1, 4).
        let t = gather(&src, 4, 0, &[4, 3], &[1, 4]);
        let t = RawTensor::new(RawDType::F32, vec![4, 3], t).unwrap().to_f32_vec();
        assert_eq!(t, [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
        // Rows 1..3 of the (3, 4) matrix: offset 4, contiguous fast path.
        let r = gather(&src, 4, 4, &[2, 4], &[4, 1]);
        assert_eq!(RawTensor::new(RawDType::F32, vec![2, 4], r).unwrap().to_f32_vec()[0], 4.0);
        // A broadcast (stride 0) row and a scalar.
        let b = gather(&src, 4, 2, &[3, 2], &[0, 1]);
        assert_eq!(RawTensor::new(RawDType::F32, vec![3, 2], b).unwrap().to_f32_vec(), [2., 3., 2., 3., 2., 3.]);
        assert_eq!(gather(&src, 4, 11, &[], &[]), 11f32.to_le_bytes());
        assert!(gather(&src, 4, 0, &[0, 3], &[3, 1]).is_empty());
        assert_eq!(max_index(4, &[2, 4], &[4, 1]), Some(Some(11)));
        assert_eq!(max_index(0, &[2, 0], &[4, 1]), Some(None));
        assert_eq!(max_index(0, &[usize::MAX, 2], &[usize::MAX, 1]), None);
    }

    #[test]
    fn conversions_to_candle_and_f32() {
        let dev = Device::Cpu;
        let h = RawTensor::new(
            RawDType::F16,
            vec![2],
            [f16::from_f32(1.5), f16::from_f32(-2.0)].iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
        .unwrap();
        assert_eq!(h.to_f32_vec(), [1.5, -2.0]);
        assert_eq!(h.to_candle(&dev).unwrap().dtype(), DType::F16);
        assert_eq!(h.to_candle_f32(&dev).unwrap().to_vec1::<f32>().unwrap(), [1.5, -2.0]);
        let i8s = RawTensor::new(RawDType::I8, vec![3], vec![0xff, 1, 0x80]).unwrap();
        assert_eq!(i8s.to_candle(&dev).unwrap().to_vec1::<i16>().unwrap(), [-1, 1, -128]);
        let big = RawTensor::new(RawDType::U64, vec![1], u64::MAX.to_le_bytes().to_vec()).unwrap();
        assert!(big.to_candle(&dev).is_err());
        assert!(RawTensor::new(RawDType::F32, vec![2, 2], vec![0; 15]).is_err());
    }
}
