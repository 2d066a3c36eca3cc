//! Writing and reading embeddings: `.npy` (f32 / f16), `FILE.ids.txt`, per-residue `.safetensors`.

use super::*;
use crate::output::write_atomic;

// ---------------------------------------------------------------------------------------------------
// Files
/// Element type of a written matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
}

/// f16 values of `values`; a finite value that does not fit (|x| > 65,504) is an error naming the row.
fn to_f16(values: &[f32], dim: usize, row_name: &dyn Fn(usize) -> String) -> Result<Vec<half::f16>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let h = half::f16::from_f32(v);
            if v.is_finite() && !h.is_finite() {
                return Err(Error::invalid(format!(
                    "{}: value {v} at column {} does not fit f16 (|x| ≤ 65,504); write f32 instead",
                    row_name(i / dim.max(1)),
                    i % dim.max(1)
                )));
            }
            Ok(h)
        })
        .collect()
}

/// The NPY v1.0 header of a C-order `(rows, cols)` matrix, padded so the data start on a multiple
/// of 64 bytes.
fn npy_header(descr: &str, rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut header = Vec::with_capacity(total);
    header.extend_from_slice(b"\x93NUMPY\x01\x00");
    header.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header.resize(total - 1, b' ');
    header.push(b'\n');
    header
}

impl EmbeddingMatrix {
    /// Writes the matrix as `.npy` (NPY 1.0, `'<f4'` or `'<f2'`, C order, shape `(n, dim)`).
    pub fn write_npy(&self, path: impl AsRef<Path>, precision: Precision) -> Result<()> {
        let path = path.as_ref();
        let (rows, dim) = (self.rows(), self.dim);
        match precision {
            Precision::F32 => write_atomic(path, |w| {
                w.write_all(&npy_header("<f4", rows, dim))?;
                for v in &self.values {
                    w.write_all(&v.to_le_bytes())?;
                }
                Ok(())
            }),
            Precision::F16 => {
                let half = to_f16(&self.values, dim, &|r| format!("record `{}`", self.ids[r]))?;
                write_atomic(path, |w| {
                    w.write_all(&npy_header("<f2", rows, dim))?;
                    for v in &half {
                        w.write_all(&v.to_le_bytes())?;
                    }
                    Ok(())
                })
            }
        }
    }
}

/// A matrix read back from `.npy`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyMatrix {
    pub shape: (usize, usize),
    pub precision: Precision,
    /// Widened to f32.
    pub values: Vec<f32>,
}

/// Reads a 2-D little-endian `'<f4'` or `'<f2'` C-order `.npy` file (what [`EmbeddingMatrix::write_npy`]
/// writes); anything else is an error naming the file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyMatrix> {
    let path = path.as_ref();
    let bad = |m: &str| Error::data(Location::file(path), format!("not a 2-D f32/f16 .npy file: {m}"));
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| Error::io(path, e))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no NPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(&format!("NPY version {v}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| bad("header runs past the end"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr").ok_or_else(|| bad("no descr"))?;
    let precision = if descr.starts_with("'<f4'") {
        Precision::F32
    } else if descr.starts_with("'<f2'") {
        Precision::F16
    } else {
        return Err(bad(&format!("dtype {}", descr.split(',').next().unwrap_or(descr))));
    };
    if !field("fortran_order").is_some_and(|f| f.starts_with("False")) {
        return Err(bad("not C order"));
    }
    let shape = field("shape").ok_or_else(|| bad("no shape"))?;
    let inner = shape.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or_else(|| bad("unreadable shape"))?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(&format!("shape entry `{s}`"))))
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else { return Err(bad(&format!("shape {dims:?} is not 2-D"))) };
    let data = &bytes[start + header_len..];
    let width = if precision == Precision::F32 { 4 } else { 2 };
    // Checked: a corrupt shape overflowed the product (a panic in debug builds, and in release a
    // wrapped size that an empty data block could match).
    let expected = rows.checked_mul(cols).and_then(|n| n.checked_mul(width));
    if expected != Some(data.len()) {
        return Err(bad(&format!("{} data bytes for shape ({rows}, {cols})", data.len())));
    }
    let values = match precision {
        Precision::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Precision::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
    };
    Ok(NpyMatrix { shape: (rows, cols), precision, values })
}

/// `FILE.ids.txt` beside `FILE.npy` / `FILE.safetensors`.
pub fn ids_path(out: impl AsRef<Path>) -> PathBuf {
    out.as_ref().with_extension("ids.txt")
}

/// One id per line, in row order.
pub fn write_ids(path: impl AsRef<Path>, ids: &[String]) -> Result<()> {
    let path = path.as_ref();
    if let Some(id) = ids.iter().find(|id| id.contains(['\n', '\r'])) {
        return Err(Error::invalid(format!("record id {id:?} contains a line break")));
    }
    write_atomic(path, |w| ids.iter().try_for_each(|id| writeln!(w, "{id}")))
}

impl ResidueEmbeddings {
    /// Writes one `(rows, dim)` tensor per record id (f32 or f16) into a `.safetensors` file, with
    /// `__metadata__` describing what the rows are. Duplicate ids are an error.
    pub fn write_safetensors(
        &self,
        path: impl AsRef<Path>,
        precision: Precision,
        metadata: HashMap<String, String>,
    ) -> Result<()> {
        let path = path.as_ref();
        check_unique_ids(&self.ids.iter().map(|id| (id.as_str(), "")).collect::<Vec<_>>(), None)?;
        let mut buffers: Vec<(String, Vec<u8>, [usize; 2])> = Vec::with_capacity(self.ids.len());
        for (i, id) in self.ids.iter().enumerate() {
            let rows = self.rows(i);
            let bytes: Vec<u8> = match precision {
                Precision::F32 => self.values[i].iter().flat_map(|v| v.to_le_bytes()).collect(),
                Precision::F16 => to_f16(&self.values[i], self.dim, &|r| format!("record `{id}` row {r}"))?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            };
            buffers.push((id.clone(), bytes, [rows, self.dim]));
        }
        let dtype = match precision {
            Precision::F32 => safetensors::Dtype::F32,
            Precision::F16 => safetensors::Dtype::F16,
        };
        let views = buffers
            .iter()
            .map(|(id, bytes, shape)| {
                safetensors::tensor::TensorView::new(dtype, shape.to_vec(), bytes)
                    .map(|v| (id.as_str(), v))
                    .map_err(|e| Error::invalid(format!("record `{id}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::tensor::serialize(views, Some(metadata))
            .map_err(|e| Error::invalid(format!("{}: cannot serialise safetensors: {e}", path.display())))?;
        crate::output::write_file_atomic(path, &bytes)
    }
}

/// What a run wrote, for `__metadata__` and logs.
pub fn describe_run(embedder: &Embedder, per_residue: bool) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("model_kind".into(), embedder.kind().into());
    m.insert("model_dir".into(), embedder.source().display().to_string());
    m.insert("layer".into(), embedder.layer().to_string());
    if per_residue {
        let rows = match embedder.kind() {
            "proberta" => "BPE pieces (<s> and </s> dropped), not residues",
            _ => "residues (START and END dropped)",
        };
        m.insert("rows".into(), rows.into());
    } else {
        m.insert("pooling".into(), embedder.pooling().name().into());
    }
    if let Some(len) = embedder.options().seq_len {
        m.insert("seq_len".into(), len.to_string());
    }
    m.insert("padding_mask".into(), embedder.options().padding_mask.to_string());
    m.insert("long".into(), format!("{:?}", embedder.options().long).to_lowercase());
    m.insert("dtype".into(), embedder.options().dtype.as_str().into());
    m
}
