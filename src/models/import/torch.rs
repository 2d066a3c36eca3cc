//! `torch.save` files in both serialization formats, read without torch.
//!
//! - **zip** (torch ≥ 1.6, and what candle reads too): a zip archive with `<name>/data.pkl` (the
//!   pickled object) and one entry `<name>/data/<key>` per storage, raw little-endian bytes. Persistent
//!   ids are `('storage', torch.FloatStorage, key, location, numel)`; a model saved straight from the
//!   GPU (as fairseq does) names `torch.cuda.HalfStorage` and `'cuda:0'`, which read the same.
//! - **legacy** (torch < 1.6, or `_use_new_zipfile_serialization=False`): five pickles in a row (the
//!   magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, `sys_info`, the object, the sorted
//!   list of storage keys), then every storage in that order as an i64 element count followed by raw
//!   little-endian data. Persistent ids carry a sixth item, view metadata `(view_key, offset, size)` or
//!   `None`, from the time storages could themselves be slices.
//!
//! Tensors are pickled as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` and
//! may share a storage with other tensors at any offset and stride (tied weights, slices of one fused
//! matrix, transposes). [`Checkpoint`] reads each storage once per call and copies every tensor out as
//! a contiguous [`RawTensor`]. Storages are read only when a tensor needs them, so pulling the model
//! out of a checkpoint does not load its optimizer state.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::pickle::{self, Object, Value};
use super::{gather, max_index, RawDType, RawTensor};
use crate::{Error, Location, Result};

/// The little-endian bytes of the legacy format's first pickle, an 80-bit `LONG1`.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL_VERSION: i64 = 1001;
/// A view with stride 0 can be larger than its storage; beyond this it is more likely a corrupt file.
const MAX_EXPANDED_BYTES: usize = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Zip,
    Legacy,
}

/// The tensors of a `torch.save` file, in file order, as `(name, tensor)`. `key` picks the entry of a
/// top-level dict that holds the state dict (`Some("model")` for fairseq checkpoints); `None` takes the
/// file's object itself as the state dict.
pub fn read_state_dict(path: impl AsRef<Path>, key: Option<&str>) -> Result<Vec<(String, RawTensor)>> {
    Checkpoint::open(path)?.state_dict(key)
}

/// An opened `torch.save` file: the pickled object, with tensors still unread.
pub struct Checkpoint {
    path: PathBuf,
    format: Format,
    root: Value,
    source: RefCell<Source>,
}

enum Source {
    Zip { archive: zip::ZipArchive<BufReader<File>>, prefix: String },
    Legacy { file: BufReader<File>, storages: HashMap<String, LegacyStorage> },
}

struct LegacyStorage {
    numel: u64,
    data_offset: u64,
}

/// What a tensor's persistent id says about its storage.
struct StorageRef {
    key: String,
    dtype: RawDType,
    /// Legacy view metadata: this storage is `numel` elements of `key` from `offset` on.
    view: Option<(usize, usize)>,
}

impl Checkpoint {
    /// Opens a zip-format or legacy-format file, telling them apart by their first bytes.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut file = BufReader::new(file);
        let mut head = [0u8; 4];
        let got = file.read(&mut head).map_err(|e| Error::io(&path, e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(&path, e))?;
        if got == 4 && head == *b"PK\x03\x04" {
            Self::open_zip(path, file)
        } else if got >= 2 && head[0] == 0x80 {
            Self::open_legacy(path, file, len)
        } else {
            Err(Error::data(
                Location::file(&path),
                format!(
                    "not a torch checkpoint: it starts with {:02x?}, neither a zip archive (PK\\x03\\x04) nor a \
                     legacy torch file (a pickle, 0x80)",
                    &head[..got]
                ),
            ))
        }
    }

    fn open_zip(path: PathBuf, file: BufReader<File>) -> Result<Self> {
        let err = |msg: String| Error::data(Location::file(&path), msg);
        let mut archive =
            zip::ZipArchive::new(file).map_err(|e| err(format!("not a readable zip archive (truncated?): {e}")))?;
        // torch names the top folder after the file (`archive/` since torch 2.x); take the shallowest
        // data.pkl rather than trust the name.
        let pickle_name = archive
            .file_names()
            .filter_map(|n| n.ok())
            .filter(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
            .min_by_key(|n| n.matches('/').count())
            .map(|n| n.into_owned())
            .ok_or_else(|| err("zip archive without data.pkl: not a torch checkpoint".into()))?;
        let prefix = pickle_name[..pickle_name.len() - "data.pkl".len()].to_string();
        let mut byteorder = String::new();
        if let Ok(mut entry) = archive.by_name(&format!("{prefix}byteorder")) {
            entry.by_ref().take(16).read_to_string(&mut byteorder).map_err(|e| err(format!("byteorder: {e}")))?;
        }
        if byteorder.trim() == "big" {
            return Err(err("big-endian checkpoint (byteorder 'big'): not supported".into()));
        }
        let mut bytes = Vec::new();
        {
            let mut entry = archive.by_name(&pickle_name).map_err(|e| err(format!("{pickle_name}: {e}")))?;
            let size = entry.size();
            entry.read_to_end(&mut bytes).map_err(|e| err(format!("{pickle_name}: {e}")))?;
            if bytes.len() as u64 != size {
                return Err(err(format!("{pickle_name}: {} of {size} bytes readable", bytes.len())));
            }
        }
        let mut input = bytes.as_slice();
        let (root, _) =
            pickle::load_stream(&mut input, bytes.len() as u64, 0).map_err(|e| err(format!("{pickle_name}: {e}")))?;
        Ok(Self { path, format: Format::Zip, root, source: RefCell::new(Source::Zip { archive, prefix }) })
    }

    fn open_legacy(path: PathBuf, mut file: BufReader<File>, len: u64) -> Result<Self> {
        let err = |msg: String| Error::data(Location::file(&path), msg);
        let mut pos = 0u64;
        let mut next = |what: &str, file: &mut BufReader<File>| -> Result<Value> {
            let (v, used) = pickle::load_stream(file, len - pos, pos)
                .map_err(|e| err(format!("legacy {what} pickle (from byte {pos}): {e}")))?;
            pos += used;
            Ok(v)
        };
        let magic = next("magic-number", &mut file)?;
        let magic_ok = match &magic {
            Value::BigInt(b) => b.as_slice() == LEGACY_MAGIC,
            _ => false,
        };
        if !magic_ok {
            return Err(err(format!(
                "not a torch checkpoint: a pickle of {} where a legacy torch file has its magic number \
                 0x1950a86a20f9469cfc6c (nor is it a zip archive)",
                magic.type_name()
            )));
        }
        let version = next("protocol-version", &mut file)?;
        if version.as_i64() != Some(LEGACY_PROTOCOL_VERSION) {
            return Err(err(format!(
                "legacy protocol version {version:?}, only {LEGACY_PROTOCOL_VERSION} is supported"
            )));
        }
        let sys_info = next("sys_info", &mut file)?;
        if sys_info.get("little_endian").and_then(Value::as_bool) == Some(false) {
            return Err(err("big-endian checkpoint (sys_info little_endian=False): not supported".into()));
        }
        let root = next("main", &mut file)?;
        let keys = next("storage-keys", &mut file)?;
        let keys: Vec<String> = keys
            .as_seq()
            .ok_or_else(|| err(format!("storage key list is a {}, not a list", keys.type_name())))?
            .iter()
            .map(|k| k.as_str().map(str::to_string).ok_or_else(|| err("storage key is not a string".into())))
            .collect::<Result<_>>()?;

        // The element sizes needed to walk the storage area come from the persistent ids.
        let mut dtypes = HashMap::new();
        collect_storage_dtypes(&root, &mut dtypes, 0).map_err(err)?;
        let mut storages = HashMap::new();
        for key in keys {
            let dtype = *dtypes.get(&key).ok_or_else(|| {
                err(format!("storage '{key}' is listed but no tensor refers to it, so its element size is unknown"))
            })?;
            file.seek(SeekFrom::Start(pos)).map_err(|e| Error::io(&path, e))?;
            let mut n = [0u8; 8];
            file.read_exact(&mut n).map_err(|_| {
                err(format!("truncated: storage '{key}' should start at byte {pos}, the file has {len} bytes"))
            })?;
            let numel = u64::try_from(i64::from_le_bytes(n))
                .map_err(|_| err(format!("storage '{key}' at byte {pos}: negative element count")))?;
            let data_offset = pos + 8;
            let end = numel
                .checked_mul(dtype.size_in_bytes() as u64)
                .and_then(|b| b.checked_add(data_offset))
                .filter(|&end| end <= len)
                .ok_or_else(|| {
                    err(format!(
                        "truncated: storage '{key}' ({numel} × {dtype}) at byte {data_offset} runs past the end of \
                         the file ({len} bytes)"
                    ))
                })?;
            storages.insert(key, LegacyStorage { numel, data_offset });
            pos = end;
        }
        Ok(Self { path, format: Format::Legacy, root, source: RefCell::new(Source::Legacy { file, storages }) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The pickled object, with tensors as `torch._utils._rebuild_tensor_v2` [`Object`]s; pass those
    /// to [`tensor`](Self::tensor).
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// An entry of the top-level dict (`"args"`, `"model"`, … of a fairseq checkpoint).
    pub fn entry(&self, key: &str) -> Result<&Value> {
        let Some(keys) = self.root.dict_keys() else {
            return Err(self.err(format!("entry '{key}' asked for, but the file holds a {}", self.root.type_name())));
        };
        self.root.get(key).ok_or_else(|| self.err(format!("entry '{key}' not found; top-level keys: {}", list(&keys))))
    }

    /// The tensors of a state dict (see [`read_state_dict`]).
    pub fn state_dict(&self, key: Option<&str>) -> Result<Vec<(String, RawTensor)>> {
        let dict = match key {
            Some(k) => self.entry(k)?,
            None => &self.root,
        };
        let what = key.map_or("the file's object".to_string(), |k| format!("entry '{k}'"));
        let items = dict
            .as_dict()
            .ok_or_else(|| self.err(format!("{what} is a {}, not a dict of tensors", dict.type_name())))?;
        let mut cache = HashMap::new();
        let mut out = Vec::with_capacity(items.len());
        for (name, value) in items {
            let name = name
                .as_str()
                .ok_or_else(|| self.err(format!("{what} has a key of type {}, not str", name.type_name())))?;
            if !is_tensor(value) {
                let hint = if key.is_none() && value.as_dict().is_none() {
                    format!(" (a training checkpoint? pass the key of its state dict, e.g. \"model\" for fairseq; top-level keys: {})", list(&self.root.dict_keys().unwrap_or_default()))
                } else {
                    String::new()
                };
                return Err(self.err(format!("{what}: '{name}' is a {}, not a tensor{hint}", value.type_name())));
            }
            let tensor = self.materialise(value, &mut cache).map_err(|m| self.err(format!("tensor '{name}': {m}")))?;
            out.push((name.to_string(), tensor));
        }
        Ok(out)
    }

    /// One tensor of [`root`](Self::root), copied out contiguous.
    pub fn tensor(&self, value: &Value) -> Result<RawTensor> {
        self.materialise(value, &mut HashMap::new()).map_err(|m| self.err(m))
    }

    fn err(&self, message: String) -> Error {
        Error::data(Location::file(&self.path), message)
    }

    fn materialise(
        &self,
        value: &Value,
        cache: &mut HashMap<String, Rc<Vec<u8>>>,
    ) -> std::result::Result<RawTensor, String> {
        if let Value::NdArray(a) = value {
            return Ok(a.clone());
        }
        let o = value.as_object().ok_or_else(|| format!("a {} is not a tensor", value.type_name()))?;
        let (storage, offset, shape, strides) = tensor_parts(&o.module, &o.name, &o.args)?;
        let elem = storage.dtype.size_in_bytes();
        let bytes = match cache.get(&storage.key) {
            Some(b) => b.clone(),
            None => {
                let b = Rc::new(self.read_storage(&storage.key, storage.dtype)?);
                cache.insert(storage.key.clone(), b.clone());
                b
            }
        };
        let mut base: &[u8] = &bytes;
        if let Some((view_offset, view_numel)) = storage.view {
            base = view_offset
                .checked_add(view_numel)
                .and_then(|end| end.checked_mul(elem))
                .and_then(|end| base.get(view_offset * elem..end))
                .ok_or_else(|| format!("storage view {view_offset}+{view_numel} outside storage '{}'", storage.key))?;
        }
        let numel_in_storage = base.len() / elem;
        match max_index(offset, &shape, &strides) {
            None => return Err(format!("shape {shape:?} with strides {strides:?} overflows")),
            Some(Some(top)) if top >= numel_in_storage => {
                return Err(format!(
                    "shape {shape:?}, strides {strides:?}, offset {offset} reach element {top}, but storage '{}' \
                     has {numel_in_storage}",
                    storage.key
                ))
            }
            _ => {}
        }
        let out_bytes = super::checked_numel(&shape)
            .and_then(|n| n.checked_mul(elem))
            .ok_or_else(|| format!("shape {shape:?} overflows"))?;
        if out_bytes > base.len().max(MAX_EXPANDED_BYTES) {
            return Err(format!("shape {shape:?} expands storage '{}' to {out_bytes} bytes", storage.key));
        }
        RawTensor::new(storage.dtype, shape.clone(), gather(base, elem, offset, &shape, &strides))
    }

    fn read_storage(&self, key: &str, dtype: RawDType) -> std::result::Result<Vec<u8>, String> {
        let elem = dtype.size_in_bytes() as u64;
        match &mut *self.source.borrow_mut() {
            Source::Zip { archive, prefix } => {
                let name = format!("{prefix}data/{key}");
                let mut entry = archive.by_name(&name).map_err(|e| format!("storage '{key}' ({name}): {e}"))?;
                let size = entry.size();
                if size % elem != 0 {
                    return Err(format!("storage '{key}' has {size} bytes, not a whole number of {dtype}"));
                }
                let mut out = Vec::new();
                entry.read_to_end(&mut out).map_err(|e| format!("storage '{key}' ({name}): {e}"))?;
                if out.len() as u64 != size {
                    return Err(format!("storage '{key}': {} of {size} bytes readable", out.len()));
                }
                Ok(out)
            }
            Source::Legacy { file, storages } => {
                let s =
                    storages.get(key).ok_or_else(|| format!("storage '{key}' is not in the file's storage list"))?;
                // Sizes were checked against the file length when it was opened.
                let n = s.numel * elem;
                file.seek(SeekFrom::Start(s.data_offset)).map_err(|e| format!("storage '{key}': {e}"))?;
                let mut out = Vec::new();
                file.by_ref().take(n).read_to_end(&mut out).map_err(|e| format!("storage '{key}': {e}"))?;
                if out.len() as u64 != n {
                    return Err(format!("storage '{key}': file ends after {} of {n} bytes", out.len()));
                }
                Ok(out)
            }
        }
    }
}

fn list(keys: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut s = keys.iter().take(SHOWN).map(String::as_str).collect::<Vec<_>>().join(", ");
    if keys.len() > SHOWN {
        s.push_str(&format!(", … ({} in all)", keys.len()));
    }
    if keys.is_empty() {
        s.push_str("(none)");
    }
    s
}

const REBUILD_TENSOR: [&str; 2] = ["_rebuild_tensor_v2", "_rebuild_tensor"];
const REBUILD_PARAMETER: [&str; 2] = ["_rebuild_parameter", "_rebuild_parameter_with_state"];

fn is_tensor(v: &Value) -> bool {
    match v {
        Value::NdArray(_) => true,
        Value::Object(o) => {
            (o.module == "torch._utils"
                && (REBUILD_TENSOR.contains(&o.name.as_str()) || REBUILD_PARAMETER.contains(&o.name.as_str())))
                || o.is("torch._tensor", "_rebuild_from_type_v2")
        }
        _ => false,
    }
}

/// `(storage, offset, shape, strides)` of a pickled tensor, seen through the wrappers torch puts
/// around it (`nn.Parameter`, tensor subclasses).
fn tensor_parts(
    module: &str,
    name: &str,
    args: &[Value],
) -> std::result::Result<(StorageRef, usize, Vec<usize>, Vec<usize>), String> {
    if module == "torch._utils" && REBUILD_TENSOR.contains(&name) {
        let [storage, offset, size, stride, ..] = args else {
            return Err(format!("{name} has {} arguments, expected at least 4", args.len()));
        };
        let storage = storage_ref(storage)?;
        let offset = usize_of(offset).ok_or("storage offset is not a non-negative int")?;
        let shape = dims(size).ok_or("size is not a tuple of non-negative ints")?;
        let strides = dims(stride).ok_or("stride is not a tuple of non-negative ints")?;
        if shape.len() != strides.len() {
            return Err(format!("size {shape:?} and stride {strides:?} differ in length"));
        }
        return Ok((storage, offset, shape, strides));
    }
    if module == "torch._utils" && REBUILD_PARAMETER.contains(&name) {
        // _rebuild_parameter(data, requires_grad, backward_hooks[, state]): data is the tensor.
        let inner = args.first().and_then(Value::as_object).ok_or("parameter without its tensor")?;
        return tensor_parts(&inner.module, &inner.name, &inner.args);
    }
    if module == "torch._tensor" && name == "_rebuild_from_type_v2" {
        // _rebuild_from_type_v2(func, new_type, args, state) == func(*args), then a type change.
        let (Some(Value::Global { module, name }), Some(args)) = (args.first(), args.get(2).and_then(Value::as_seq))
        else {
            return Err("_rebuild_from_type_v2 arguments are not (func, type, args, state)".into());
        };
        return tensor_parts(module, name, args);
    }
    Err(format!("{module}.{name} is not a tensor constructor this reader knows (quantized, sparse, …?)"))
}

fn usize_of(v: &Value) -> Option<usize> {
    v.as_i64().and_then(|i| usize::try_from(i).ok())
}

fn dims(v: &Value) -> Option<Vec<usize>> {
    // torch.Size pickles as a plain tuple, but accept torch.Size((…)) too.
    let seq = match v {
        Value::Object(o) if o.is("torch", "Size") => o.args.first()?.as_seq()?,
        _ => v.as_seq()?,
    };
    seq.iter().map(usize_of).collect()
}

fn storage_ref(v: &Value) -> std::result::Result<StorageRef, String> {
    let Value::PersistentId(pid) = v else {
        return Err(format!("storage is a {}, not a persistent id", v.type_name()));
    };
    let items = pid.as_seq().ok_or("persistent id is not a tuple")?;
    let [tag, storage_type, key, _location, _numel, rest @ ..] = items else {
        return Err(format!("persistent id has {} items, expected 5 or 6", items.len()));
    };
    if tag.as_str() != Some("storage") {
        return Err(format!("persistent id of kind {tag:?}, expected 'storage'"));
    }
    let dtype = storage_dtype(storage_type)?;
    let key = key.as_str().ok_or("storage key is not a string")?.to_string();
    let view = match rest.first() {
        None | Some(Value::None) => None,
        Some(meta) => {
            // (view_key, offset, size), in elements of the storage type.
            let meta = meta.as_seq().ok_or("storage view metadata is not a tuple")?;
            match meta {
                [_, offset, size] => Some((
                    usize_of(offset).ok_or("bad storage view offset")?,
                    usize_of(size).ok_or("bad storage view size")?,
                )),
                _ => return Err("storage view metadata is not (key, offset, size)".into()),
            }
        }
    };
    Ok(StorageRef { key, dtype, view })
}

fn storage_dtype(v: &Value) -> std::result::Result<RawDType, String> {
    let Value::Global { module, name } = v else {
        return Err(format!("storage type is a {}, not a torch storage class", v.type_name()));
    };
    // A model saved straight from the GPU (fairseq does not move it first) names torch.cuda classes.
    if module != "torch" && module != "torch.cuda" {
        return Err(format!("storage type {module}.{name} is not a torch storage class"));
    }
    Ok(match name.as_str() {
        "FloatStorage" => RawDType::F32,
        "DoubleStorage" => RawDType::F64,
        "HalfStorage" => RawDType::F16,
        "BFloat16Storage" => RawDType::BF16,
        "LongStorage" => RawDType::I64,
        "IntStorage" => RawDType::I32,
        "ShortStorage" => RawDType::I16,
        "CharStorage" => RawDType::I8,
        "ByteStorage" | "UntypedStorage" => RawDType::U8,
        "BoolStorage" => RawDType::Bool,
        _ => return Err(format!("storage type {module}.{name} is not supported")),
    })
}

/// Storage key → dtype for every persistent id in the tree.
fn collect_storage_dtypes(
    v: &Value,
    out: &mut HashMap<String, RawDType>,
    depth: usize,
) -> std::result::Result<(), String> {
    // The tree is at most pickle::MAX_DEPTH deep already; the bound only documents that.
    if depth > pickle::MAX_DEPTH {
        return Ok(());
    }
    let d = depth + 1;
    let mut walk = |v: &Value| collect_storage_dtypes(v, out, d);
    match v {
        Value::PersistentId(pid) => {
            if let Some([tag, storage_type, Value::Str(key), ..]) = pid.as_seq() {
                if tag.as_str() == Some("storage") {
                    let dtype = storage_dtype(storage_type).map_err(|e| format!("storage '{key}': {e}"))?;
                    out.entry(key.clone()).or_insert(dtype);
                }
            }
        }
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => items.iter().try_for_each(walk)?,
        Value::Dict(items) => items.iter().try_for_each(|(k, v)| walk(k).and_then(|_| walk(v)))?,
        Value::Object(o) => {
            let Object { args, kwargs, state, list_items, dict_items, .. } = o.as_ref();
            args.iter().chain(list_items).chain(state).try_for_each(&mut walk)?;
            kwargs.iter().chain(dict_items).try_for_each(|(k, v)| walk(k).and_then(|_| walk(v)))?;
        }
        _ => {}
    }
    Ok(())
}
