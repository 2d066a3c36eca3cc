//! NumPy arrays on disk as tensors: `.npy` (`np.save`) and `.npz` (`np.savez`,
//! `np.savez_compressed`), so features, labels and predictions pass to and from Python.
//!
//! Little-endian `float16/32/64`, `int16/32/64`, `uint8/32` and `bool` (read as `u8`) arrays, in C
//! or Fortran order; other types (big-endian, strings, objects) are an error naming the file and
//! the type. A file whose header promises more data than it holds is an error before anything is
//! allocated. Writes are whole or nothing (see [`crate::output::write_atomic`]).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use protein_lm::arrays::{read_npz, write_npz};
//! let dir = tempfile::tempdir()?;
//! let features = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu)?;
//! let labels = Tensor::new(&[0u32, 1], &Device::Cpu)?;
//! write_npz(dir.path().join("data.npz"), &[("features", &features), ("labels", &labels)])?;
//! let read = read_npz(dir.path().join("data.npz"))?;
//! assert_eq!(read[0].0, "features");
//! assert_eq!(read[1].1.to_vec1::<u32>()?, vec![0, 1]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{Read, Write};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::{Error, Location, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// What a header says.
#[derive(Debug, Clone, PartialEq)]
struct Header {
    dtype: DType,
    /// NumPy's `descr`, kept for `bool` (stored as one byte, read as `u8`).
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

fn descr_dtype(descr: &str) -> Option<DType> {
    Some(match descr {
        "<f2" => DType::F16,
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<i2" => DType::I16,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "|u1" | "<u1" | "|b1" => DType::U8,
        "<u4" => DType::U32,
        _ => return None,
    })
}

fn dtype_descr(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::U32 => "<u4",
        _ => return None,
    })
}

/// The value after `'key':` in NumPy's header dict.
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else if let Some(quoted) = rest.strip_prefix('\'') {
        quoted.find('\'')? + 2
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let descr = field(text, "descr").ok_or("the header has no 'descr'")?.trim_matches('\'').to_string();
    let dtype = descr_dtype(&descr).ok_or_else(|| {
        format!("arrays of type `{descr}` are not supported (little-endian float, int, uint8/32 and bool are)")
    })?;
    let fortran_order = match field(text, "fortran_order") {
        Some("False") => false,
        Some("True") => true,
        other => return Err(format!("'fortran_order' is {other:?}, not True or False")),
    };
    let shape_text = field(text, "shape").ok_or("the header has no 'shape'")?;
    let inner = shape_text.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or("'shape' is not a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("'shape' holds `{s}`, not a size")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Header { dtype, descr, fortran_order, shape })
}

/// Reads one array from `r`, which holds `available` bytes from the magic string on.
fn read_array(r: &mut impl Read, available: u64) -> std::result::Result<Tensor, String> {
    let io = |e: std::io::Error| format!("cannot read: {e}");
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| "shorter than an .npy header".to_string())?;
    if &magic[..6] != MAGIC {
        return Err("not an .npy array (no \\x93NUMPY magic string)".into());
    }
    let (header_len, prefix) = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(io)?;
            (u16::from_le_bytes(b) as u64, 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(io)?;
            (u32::from_le_bytes(b) as u64, 12)
        }
        v => return Err(format!(".npy format version {v} is not known")),
    };
    if prefix + header_len > available {
        return Err(format!("the header claims {header_len} bytes, the file is shorter"));
    }
    let mut text = vec![0u8; header_len as usize];
    r.read_exact(&mut text).map_err(io)?;
    let text = String::from_utf8_lossy(&text);
    let header = parse_header(&text)?;
    let elements = header.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("the shape overflows")?;
    let bytes = elements.checked_mul(header.dtype.size_in_bytes()).ok_or("the shape overflows")?;
    let left = available - prefix - header_len;
    if (bytes as u64) > left {
        return Err(format!(
            "shape {:?} of `{}` needs {bytes} bytes of data, the file holds {left}",
            header.shape, header.descr
        ));
    }
    let mut data = vec![0u8; bytes];
    r.read_exact(&mut data).map_err(io)?;
    let shape: Vec<usize> =
        if header.fortran_order { header.shape.iter().rev().copied().collect() } else { header.shape.clone() };
    let t = tensor_from_le_bytes(&data, header.dtype, &shape).map_err(|e| e.to_string())?;
    if header.fortran_order && shape.len() > 1 {
        // Fortran order is the transpose's C order: read as such, then put the axes back.
        let axes: Vec<usize> = (0..shape.len()).rev().collect();
        return t.permute(axes).and_then(|t| t.contiguous()).map_err(|e| e.to_string());
    }
    Ok(t)
}

fn tensor_from_le_bytes(data: &[u8], dtype: DType, shape: &[usize]) -> Result<Tensor> {
    macro_rules! from {
        ($t:ty, $n:expr) => {{
            let v: Vec<$t> = data.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap())).collect();
            Tensor::from_vec(v, shape, &Device::Cpu)?
        }};
    }
    Ok(match dtype {
        DType::U8 => Tensor::from_vec(data.to_vec(), shape, &Device::Cpu)?,
        DType::U32 => from!(u32, 4),
        DType::I16 => from!(i16, 2),
        DType::I32 => from!(i32, 4),
        DType::I64 => from!(i64, 8),
        DType::F32 => from!(f32, 4),
        DType::F64 => from!(f64, 8),
        DType::F16 => from!(half::f16, 2),
        other => return Err(Error::invalid(format!("{other:?} arrays are not supported"))),
    })
}

fn le_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.flatten_all()?.to_device(&Device::Cpu)?;
    macro_rules! to {
        ($t:ty) => {
            t.to_vec1::<$t>()?.iter().flat_map(|x| x.to_le_bytes()).collect()
        };
    }
    Ok(match t.dtype() {
        DType::U8 => t.to_vec1::<u8>()?,
        DType::U32 => to!(u32),
        DType::I16 => to!(i16),
        DType::I32 => to!(i32),
        DType::I64 => to!(i64),
        DType::F32 => to!(f32),
        DType::F64 => to!(f64),
        DType::F16 => to!(half::f16),
        other => {
            return Err(Error::invalid(format!("{other:?} tensors have no NumPy type here; convert to f32 first")))
        }
    })
}

/// The `.npy` bytes of `t`: format 1.0, C order, the header padded to 64 bytes as NumPy pads it.
fn npy_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let descr = dtype_descr(t.dtype()).ok_or_else(|| {
        Error::invalid(format!("{:?} tensors have no NumPy type here; convert to f32 first", t.dtype()))
    })?;
    let shape = match t.dims() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend([1, 0]);
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(le_bytes(t)?);
    Ok(out)
}

/// Reads an `.npy` file.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::arrays::{read_npy, write_npy};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("x.npy");
/// write_npy(&path, &Tensor::new(&[[1f32, 2.0, 3.0]], &Device::Cpu)?)?;
/// let x = read_npy(&path)?;
/// assert_eq!(x.to_vec2::<f32>()?, [[1.0, 2.0, 3.0]]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    read_array(&mut std::io::BufReader::new(file), len).map_err(|m| Error::data(Location::file(path), m))
}

/// Writes `t` as an `.npy` file (`np.load` reads it).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::arrays::write_npy;
/// let dir = tempfile::tempdir()?;
/// // numpy reads it back with `np.load("labels.npy")`.
/// write_npy(dir.path().join("labels.npy"), &Tensor::new(&[0u32, 1, 1], &Device::Cpu)?)?;
/// let bytes = std::fs::read(dir.path().join("labels.npy"))?;
/// assert_eq!(&bytes[..6], b"\x93NUMPY");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_npy(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    let bytes = npy_bytes(t)?;
    crate::output::write_atomic(path.as_ref(), |w| w.write_all(&bytes))
}

/// Every array of an `.npz` file with its name, in the archive's order.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::arrays::{read_npz, write_npz};
/// let dir = tempfile::tempdir()?;
/// let (x, y) = (Tensor::new(&[[0.5f32, 1.5]], &Device::Cpu)?, Tensor::new(&[7i64], &Device::Cpu)?);
/// write_npz(dir.path().join("split.npz"), &[("x", &x), ("y", &y)])?;
/// let arrays = read_npz(dir.path().join("split.npz"))?;
/// let names: Vec<&str> = arrays.iter().map(|(name, _)| name.as_str()).collect();
/// assert_eq!(names, ["x", "y"]); // the archive's order, `.npy` dropped
/// assert_eq!(arrays[1].1.to_vec1::<i64>()?, [7]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: String| Error::data(Location::file(path), m);
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| bad(format!("not an .npz archive: {e}")))?;
    let mut arrays = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(format!("entry {i}: {e}")))?;
        let name = entry.name().map_err(|e| bad(format!("entry {i}: {e}")))?.to_string();
        let size = entry.size();
        let array = read_array(&mut entry, size).map_err(|m| bad(format!("array `{name}`: {m}")))?;
        arrays.push((name.strip_suffix(".npy").unwrap_or(&name).to_string(), array));
    }
    Ok(arrays)
}

/// Writes named arrays as an `.npz` file (uncompressed, as `np.savez`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use protein_lm::arrays::write_npz;
/// let dir = tempfile::tempdir()?;
/// let features = Tensor::zeros((4, 8), candle_core::DType::F32, &Device::Cpu)?;
/// let labels = Tensor::new(&[0u32, 1, 0, 1], &Device::Cpu)?;
/// // `np.load("train.npz")["features"]` in Python.
/// write_npz(dir.path().join("train.npz"), &[("features", &features), ("labels", &labels)])?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_npz(path: impl AsRef<Path>, arrays: &[(&str, &Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, t) in arrays {
            zip.start_file(format!("{name}.npy"), options)
                .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
            zip.write_all(&npy_bytes(t)?).map_err(|e| Error::io(path, e))?;
        }
        zip.finish().map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    }
    let bytes = buffer.into_inner();
    crate::output::write_atomic(path, |w| w.write_all(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as `np.save` lays it out (format 1.0; the header dict, padded with spaces so that
    /// magic + lengths + header end on a multiple of 64 bytes, then a newline; then the data).
    fn numpy_file(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
        header.push_str(&" ".repeat((64 - (10 + header.len() + 1) % 64) % 64));
        header.push('\n');
        let mut b = MAGIC.to_vec();
        b.extend([1, 0]);
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        b.extend(data);
        b
    }

    /// `np.save` of `np.arange(6, dtype='<f4').reshape(2, 3)`.
    fn numpy_f4_2x3() -> Vec<u8> {
        numpy_file("<f4", false, "(2, 3)", &(0..6).flat_map(|i| (i as f32).to_le_bytes()).collect::<Vec<_>>())
    }

    #[test]
    fn numpys_layout_reads_and_ours_is_byte_for_byte_the_same() -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.npy");
        std::fs::write(&path, numpy_f4_2x3()).unwrap();
        let t = read_npy(&path)?;
        assert_eq!(t.to_vec2::<f32>()?, vec![vec![0., 1., 2.], vec![3., 4., 5.]]);
        write_npy(tmp.path().join("b.npy"), &t)?;
        assert_eq!(std::fs::read(tmp.path().join("b.npy")).unwrap(), numpy_f4_2x3());
        Ok(())
    }

    #[test]
    fn every_supported_type_and_shape_round_trips() -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let cases = [
            Tensor::new(3.5f64, &dev)?,
            Tensor::new(&[1u8, 2, 255], &dev)?,
            Tensor::new(&[[1u32, 2], [3, 4]], &dev)?,
            Tensor::new(&[-1i64, 7], &dev)?,
            Tensor::new(&[-3i32, 9], &dev)?,
            Tensor::new(&[[0.5f32, -2.0]], &dev)?.to_dtype(DType::F16)?,
            Tensor::zeros((2, 0, 3), DType::F32, &dev)?,
        ];
        for (i, t) in cases.iter().enumerate() {
            let path = tmp.path().join(format!("{i}.npy"));
            write_npy(&path, t)?;
            let back = read_npy(&path)?;
            assert_eq!((back.dtype(), back.dims()), (t.dtype(), t.dims()), "case {i}");
            assert_eq!(le_bytes(&back)?, le_bytes(t)?, "case {i}");
        }
        let named: Vec<(String, Tensor)> =
            cases.iter().enumerate().map(|(i, t)| (format!("a{i}"), t.clone())).collect();
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        write_npz(tmp.path().join("all.npz"), &refs)?;
        let back = read_npz(tmp.path().join("all.npz"))?;
        assert_eq!(
            back.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            named.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
        );
        for ((_, a), (_, b)) in back.iter().zip(&named) {
            assert_eq!(le_bytes(a)?, le_bytes(b)?);
        }
        Ok(())
    }

    #[test]
    fn fortran_order_and_bool_read_as_numpy_means_them() -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        // np.asfortranarray(np.arange(6).reshape(2, 3)): memory order 0 3 1 4 2 5.
        let data: Vec<u8> = [0i64, 3, 1, 4, 2, 5].iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(tmp.path().join("f.npy"), numpy_file("<i8", true, "(2, 3)", &data)).unwrap();
        assert_eq!(read_npy(tmp.path().join("f.npy"))?.to_vec2::<i64>()?, vec![vec![0, 1, 2], vec![3, 4, 5]]);
        // np.array([True, False, True]): one byte each, read as u8.
        std::fs::write(tmp.path().join("b.npy"), numpy_file("|b1", false, "(3,)", &[1, 0, 1])).unwrap();
        assert_eq!(read_npy(tmp.path().join("b.npy"))?.to_vec1::<u8>()?, vec![1, 0, 1]);
        Ok(())
    }

    #[test]
    fn bad_files_are_errors_naming_the_file_and_what_is_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("bad.npy");
        let good = numpy_f4_2x3();
        // The header is bytes 10..len − 24; the 24 bytes of data follow.
        let data_at = good.len() - 24;
        let in_header = |from: u8, to: u8| -> Vec<u8> {
            good.iter()
                .enumerate()
                .map(|(i, &c)| if (10..data_at).contains(&i) && c == from { to } else { c })
                .collect()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"PK\x03\x04 and more bytes".to_vec(), "magic"),
            (good[..good.len() - 4].to_vec(), "needs 24 bytes of data, the file holds 20"),
            (in_header(b'4', b'8'), "needs 48 bytes of data, the file holds 24"),
            (in_header(b'<', b'>'), "`>f4` are not supported"),
            (in_header(b'F', b'X'), "'fortran_order'"),
        ];
        for (bytes, expected) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let err = read_npy(&path).unwrap_err().to_string();
            assert!(err.contains("bad.npy") && err.contains(expected), "{err} (expected `{expected}`)");
        }
        // A shape that would need exabytes is refused before anything is allocated.
        let huge = String::from_utf8_lossy(&good).replace("(2, 3), ", "(99999999999, 99999999)").into_bytes();
        std::fs::write(&path, huge).unwrap();
        assert!(read_npy(&path).is_err());
        std::fs::write(tmp.path().join("x.npz"), b"not a zip").unwrap();
        let err = read_npz(tmp.path().join("x.npz")).unwrap_err().to_string();
        assert!(err.contains("x.npz") && err.contains("not an .npz"), "{err}");
        let err =
            write_npy(tmp.path().join("c.npy"), &Tensor::zeros(2, DType::BF16, &Device::Cpu).unwrap()).unwrap_err();
        assert!(err.to_string().contains("BF16"), "{err}");
    }
}
