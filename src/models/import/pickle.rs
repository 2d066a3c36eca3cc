//! A pickle virtual machine that rebuilds data, never runs code.
//!
//! [`loads`] executes the opcodes of protocols 0–5 against a small object model ([`Value`]): the
//! Python builtins, plus [`Object`] for any class or function a pickle names (`argparse.Namespace`,
//! `torch._utils._rebuild_tensor_v2`, …), which is recorded with its arguments and `BUILD` state rather
//! than looked up. A handful of globals are understood because they are how pickles spell builtins
//! (`collections.OrderedDict`, `_codecs.encode` for protocol-2 bytes, `copyreg._reconstructor`, …)
//! or numpy arrays (numpy 1.x `numpy.core.*` and 2.x `numpy._core.*`: `multiarray._reconstruct` with
//! its `BUILD` state, `numeric._frombuffer` from protocol 5, `multiarray.scalar`, and `dtype`).
//!
//! While running, values live in an arena and containers hold indices, because pickles mutate
//! containers after memoizing them (`EMPTY_DICT`, `BINPUT`, …, `SETITEMS`) and a later `BINGET` must see
//! the filled container. The arena is turned into an owned tree at `STOP`; shared sub-objects are
//! copied, cycles and absurd nesting are errors, and the copy is budgeted so that a small file that
//! references one object many times cannot expand into gigabytes.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::{RawDType, RawTensor};
use crate::{Error, Location, Result};

/// Nesting depth of the rebuilt tree; deeper means a cycle or a hostile file. Real checkpoints nest a
/// handful of levels; the bound keeps the recursive copy well inside a 2 MiB test-thread stack even in
/// unoptimised builds (1000 levels overflowed it).
pub const MAX_DEPTH: usize = 256;

/// What a pickled numpy array of numbers becomes.
pub type NdArray = RawTensor;

/// A Python object rebuilt from a pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside i64, as Python writes it: little-endian two's complement.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    /// `bytes`, `bytearray`, and Python 2 `str`.
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// `set` and `frozenset`, in pickle order.
    Set(Vec<Value>),
    /// `dict` and `collections.OrderedDict`, in insertion order; a key set twice keeps its first place
    /// and its last value, as in Python.
    Dict(Vec<(Value, Value)>),
    /// A class or function that is referenced but not called, e.g. a storage type `torch.FloatStorage`.
    Global {
        module: String,
        name: String,
    },
    /// An instance of a class the reader does not interpret, or the result of calling such a function.
    Object(Box<Object>),
    /// What the pickler's `persistent_id` returned (torch: a storage reference).
    PersistentId(Box<Value>),
    NdArray(RawTensor),
}

/// `module.name(*args, **kwargs)` followed by what the pickle did to the result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    pub module: String,
    pub name: String,
    pub args: Vec<Value>,
    /// Keyword arguments (`NEWOBJ_EX` only).
    pub kwargs: Vec<(Value, Value)>,
    /// The `BUILD` argument (`__setstate__`), usually the instance's `__dict__`.
    pub state: Option<Value>,
    /// Items added by `APPEND(S)` (list subclasses).
    pub list_items: Vec<Value>,
    /// Items added by `SETITEM(S)` (dict subclasses).
    pub dict_items: Vec<(Value, Value)>,
}

impl Object {
    pub fn is(&self, module: &str, name: &str) -> bool {
        self.module == module && self.name == name
    }
}

impl Value {
    /// Python-ish type name for messages: `dict`, `str`, `argparse.Namespace`, ….
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Set(_) => "set".into(),
            Value::Dict(_) => "dict".into(),
            Value::Global { module, name } => format!("global {module}.{name}"),
            Value::Object(o) => format!("{}.{}", o.module, o.name),
            Value::PersistentId(_) => "persistent id".into(),
            Value::NdArray(a) => format!("numpy array ({} {:?})", a.dtype, a.shape),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Items of a list or a tuple.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The entry of a dict under a string key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// An attribute of an object whose `BUILD` state is its `__dict__` (`argparse.Namespace`, …).
    pub fn attr(&self, name: &str) -> Option<&Value> {
        self.as_object()?.state.as_ref()?.get(name)
    }

    /// The string keys of a dict, for error messages (`None` if this is not a dict).
    pub fn dict_keys(&self) -> Option<Vec<String>> {
        Some(
            self.as_dict()?
                .iter()
                .map(|(k, _)| match k {
                    Value::Str(s) => s.clone(),
                    other => format!("<{}>", other.type_name()),
                })
                .collect(),
        )
    }
}

/// Runs one pickle (up to its `STOP`) and returns the object it builds. Bytes after `STOP` are ignored.
pub fn loads(bytes: &[u8]) -> Result<Value> {
    let mut input = bytes;
    load_stream(&mut input, bytes.len() as u64, 0).map(|(v, _)| v).map_err(|e| Error::invalid(format!("pickle: {e}")))
}

/// [`loads`] on a whole file (`pickle.dump`, `np.save(allow_pickle=True)` is not this: that is `.npy`).
pub fn load_file(path: impl AsRef<Path>) -> Result<Value> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut input = bytes.as_slice();
    load_stream(&mut input, bytes.len() as u64, 0).map(|(v, _)| v).map_err(|e| Error::data(Location::file(path), e.0))
}

/// A failure with its position already in the message.
#[derive(Debug)]
pub(crate) struct PickleError(pub String);

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs one pickle from `reader`, reading nothing past its `STOP`, and returns the object and the
/// number of bytes consumed. `size_hint` is how many bytes the source can hold at most (what is left
/// of the file): no single item may claim more, and it scales the budget of the final copy. `base` is
/// the pickle's position in its file, so that messages give file offsets.
pub(crate) fn load_stream<R: Read>(
    reader: &mut R,
    size_hint: u64,
    base: u64,
) -> std::result::Result<(Value, u64), PickleError> {
    let mut vm = Machine::new(Input { reader, pos: base, max_item: size_hint });
    let root = vm.run()?;
    let consumed = vm.input.pos - base;
    // Each node costs about its payload plus a little; a legitimately shared object may be copied a
    // few times, a hostile one not without limit.
    let mut budget = size_hint.saturating_mul(16).saturating_add(64 << 20);
    let end = vm.input.pos;
    let value = vm.build(root, 0, &mut budget).map_err(|e| PickleError(format!("pickle ending at byte {end}: {e}")))?;
    Ok((value, consumed))
}

struct Input<'r, R> {
    reader: &'r mut R,
    pos: u64,
    max_item: u64,
}

impl<R: Read> Input<'_, R> {
    fn byte(&mut self) -> std::result::Result<u8, String> {
        let mut b = [0u8; 1];
        self.reader.read_exact(&mut b).map_err(|e| self.eof(e))?;
        self.pos += 1;
        Ok(b[0])
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.reader.read_exact(&mut b).map_err(|e| self.eof(e))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn bytes(&mut self, n: u64) -> std::result::Result<Vec<u8>, String> {
        if n > self.max_item {
            return Err(format!("claims {n} bytes, more than the {} the input holds (corrupt length?)", self.max_item));
        }
        // Grows as data arrives, so a lying length on a short stream allocates only what is there.
        let mut out = Vec::new();
        let got = self.reader.by_ref().take(n).read_to_end(&mut out).map_err(|e| self.eof(e))?;
        self.pos += got as u64;
        if (got as u64) < n {
            return Err(format!("needs {n} bytes, only {got} left (truncated?)"));
        }
        Ok(out)
    }

    /// A text argument of the protocol-0 opcodes, without its `\n`.
    fn line(&mut self) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            let b = self.byte()?;
            if b == b'\n' {
                return Ok(out);
            }
            if out.len() as u64 >= self.max_item.min(1 << 20) {
                return Err("text argument without an end of line".into());
            }
            out.push(b);
        }
    }

    fn eof(&self, e: std::io::Error) -> String {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("unexpected end of data at byte {} (truncated?)", self.pos)
        } else {
            format!("read error at byte {}: {e}", self.pos)
        }
    }
}

type Id = usize;

/// Arena node: like [`Value`], with children by index.
enum Node {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Set(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(String, String),
    Object(Box<ObjNode>),
    PersistentId(Id),
}

struct ObjNode {
    module: String,
    name: String,
    args: Vec<Id>,
    kwargs: Vec<(Id, Id)>,
    state: Option<Id>,
    list_items: Vec<Id>,
    dict_items: Vec<(Id, Id)>,
}

const NONE: Id = 0;
const TRUE: Id = 1;
const FALSE: Id = 2;

struct Machine<'r, R> {
    input: Input<'r, R>,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    /// Stack heights at each `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

type Step<T> = std::result::Result<T, String>;

impl<'r, R: Read> Machine<'r, R> {
    fn new(input: Input<'r, R>) -> Self {
        Self {
            input,
            nodes: vec![Node::None, Node::Bool(true), Node::Bool(false)],
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn run(&mut self) -> std::result::Result<Id, PickleError> {
        loop {
            let at = self.input.pos;
            let op = match self.input.byte() {
                Ok(op) => op,
                Err(_) if self.nodes.len() == 3 && self.stack.is_empty() && self.marks.is_empty() => {
                    return Err(PickleError(format!("no pickle at byte {at}: the input ends there")))
                }
                Err(_) => {
                    return Err(PickleError(format!("input ends at byte {at} before the pickle's STOP (truncated?)")))
                }
            };
            match self.step(op) {
                Ok(Some(root)) => return Ok(root),
                Ok(None) => {}
                Err(message) => {
                    return Err(PickleError(match opcode_name(op) {
                        Some(name) => format!("opcode {name} (0x{op:02x}) at byte {at}: {message}"),
                        None => format!("unknown opcode 0x{op:02x} at byte {at}{message}"),
                    }))
                }
            }
        }
    }

    fn push(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
    }

    fn pop(&mut self) -> Step<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack is empty".into());
        }
        Ok(self.stack.pop().unwrap_or(NONE))
    }

    fn top(&self) -> Step<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack is empty".into());
        }
        Ok(self.stack[self.stack.len() - 1])
    }

    fn pop_mark(&mut self) -> Step<Vec<Id>> {
        let mark = self.marks.pop().ok_or("no MARK on the stack")?;
        Ok(self.stack.split_off(mark))
    }

    fn node(&mut self, id: Id) -> &mut Node {
        &mut self.nodes[id]
    }

    fn str_of(&self, id: Id) -> Option<&str> {
        match &self.nodes[id] {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn memo_get(&self, key: u64) -> Step<Id> {
        self.memo.get(&key).copied().ok_or_else(|| format!("memo key {key} was never stored"))
    }

    fn memo_put(&mut self, key: u64) -> Step<()> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn step(&mut self, op: u8) -> Step<Option<Id>> {
        match op {
            op::PROTO => {
                let v = self.input.byte()?;
                if v > 5 {
                    return Err(format!("pickle protocol {v} is newer than 5"));
                }
            }
            op::FRAME => {
                self.input.array::<8>()?;
            }
            op::STOP => return self.pop().map(Some),
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() > floor {
                    self.stack.pop();
                } else {
                    self.pop_mark()?;
                }
            }
            op::POP_MARK => {
                self.pop_mark()?;
            }
            op::DUP => {
                let top = self.top()?;
                self.stack.push(top);
            }
            op::NONE => self.stack.push(NONE),
            op::NEWTRUE => self.stack.push(TRUE),
            op::NEWFALSE => self.stack.push(FALSE),
            op::INT => {
                let line = self.input.line()?;
                match line.as_slice() {
                    b"01" => self.stack.push(TRUE),
                    b"00" => self.stack.push(FALSE),
                    text => self.push(Node::Int(parse_int(text)?)),
                }
            }
            op::BININT => {
                let v = i32::from_le_bytes(self.input.array()?);
                self.push(Node::Int(v as i64));
            }
            op::BININT1 => {
                let v = self.input.byte()?;
                self.push(Node::Int(v as i64));
            }
            op::BININT2 => {
                let v = u16::from_le_bytes(self.input.array()?);
                self.push(Node::Int(v as i64));
            }
            op::LONG => {
                let line = self.input.line()?;
                let text = line.strip_suffix(b"L").unwrap_or(&line);
                self.push(decimal_long(text)?);
            }
            op::LONG1 => {
                let n = self.input.byte()?;
                let bytes = self.input.bytes(n as u64)?;
                self.push(long_node(bytes));
            }
            op::LONG4 => {
                let n = i32::from_le_bytes(self.input.array()?);
                let n = u64::try_from(n).map_err(|_| format!("negative length {n}"))?;
                let bytes = self.input.bytes(n)?;
                self.push(long_node(bytes));
            }
            op::BINFLOAT => {
                // The one big-endian number in the format.
                let v = f64::from_be_bytes(self.input.array()?);
                self.push(Node::Float(v));
            }
            op::FLOAT => {
                let line = self.input.line()?;
                let text = std::str::from_utf8(&line).map_err(|_| "float is not ASCII")?;
                let v = text.trim().parse::<f64>().map_err(|_| format!("bad float {text:?}"))?;
                self.push(Node::Float(v));
            }
            op::BINUNICODE => {
                let n = u32::from_le_bytes(self.input.array()?);
                let s = utf8(self.input.bytes(n as u64)?);
                self.push(Node::Str(s));
            }
            op::SHORT_BINUNICODE => {
                let n = self.input.byte()?;
                let s = utf8(self.input.bytes(n as u64)?);
                self.push(Node::Str(s));
            }
            op::BINUNICODE8 => {
                let n = u64::from_le_bytes(self.input.array()?);
                let s = utf8(self.input.bytes(n)?);
                self.push(Node::Str(s));
            }
            op::UNICODE => {
                let line = self.input.line()?;
                self.push(Node::Str(raw_unicode_escape(&line)?));
            }
            op::BINSTRING => {
                let n = i32::from_le_bytes(self.input.array()?);
                let n = u64::try_from(n).map_err(|_| format!("negative length {n}"))?;
                let b = self.input.bytes(n)?;
                self.push(Node::Bytes(b));
            }
            op::SHORT_BINSTRING => {
                let n = self.input.byte()?;
                let b = self.input.bytes(n as u64)?;
                self.push(Node::Bytes(b));
            }
            op::STRING => {
                let line = self.input.line()?;
                self.push(Node::Bytes(python_string_literal(&line)?));
            }
            op::BINBYTES => {
                let n = u32::from_le_bytes(self.input.array()?);
                let b = self.input.bytes(n as u64)?;
                self.push(Node::Bytes(b));
            }
            op::SHORT_BINBYTES => {
                let n = self.input.byte()?;
                let b = self.input.bytes(n as u64)?;
                self.push(Node::Bytes(b));
            }
            op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = u64::from_le_bytes(self.input.array()?);
                let b = self.input.bytes(n)?;
                self.push(Node::Bytes(b));
            }
            op::EMPTY_LIST => self.push(Node::List(Vec::new())),
            op::EMPTY_TUPLE => self.push(Node::Tuple(Vec::new())),
            op::EMPTY_DICT => self.push(Node::Dict(Vec::new())),
            op::EMPTY_SET => self.push(Node::Set(Vec::new())),
            op::LIST => {
                let items = self.pop_mark()?;
                self.push(Node::List(items));
            }
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.push(Node::Tuple(items));
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = (op - op::TUPLE1 + 1) as usize;
                let mut items = vec![0; n];
                for slot in items.iter_mut().rev() {
                    *slot = self.pop()?;
                }
                self.push(Node::Tuple(items));
            }
            op::DICT => {
                let items = self.pop_mark()?;
                let pairs = pairs(items)?;
                self.push(Node::Dict(pairs));
            }
            op::FROZENSET => {
                let items = self.pop_mark()?;
                self.push(Node::Set(items));
            }
            op::APPEND => {
                let item = self.pop()?;
                let target = self.top()?;
                self.extend_list(target, vec![item])?;
            }
            op::APPENDS => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                self.extend_list(target, items)?;
            }
            op::SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                let target = self.top()?;
                self.extend_dict(target, vec![(key, value)])?;
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                self.extend_dict(target, pairs(items)?)?;
            }
            op::ADDITEMS => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                match self.node(target) {
                    Node::Set(set) => set.extend(items),
                    _ => return Err(format!("target is a {}, not a set", self.kind(target))),
                }
            }
            op::GLOBAL => {
                let module = utf8(self.input.line()?);
                let name = utf8(self.input.line()?);
                self.push(Node::Global(module, name));
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (self.str_of(module), self.str_of(name)) {
                    (Some(m), Some(n)) => {
                        let node = Node::Global(m.to_string(), n.to_string());
                        self.push(node);
                    }
                    _ => return Err("module and name must be strings".into()),
                }
            }
            op::INST => {
                let module = utf8(self.input.line()?);
                let name = utf8(self.input.line()?);
                let args = self.pop_mark()?;
                let node = self.call(module, name, args, Vec::new())?;
                self.push(node);
            }
            op::OBJ => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return Err("no class after MARK".into());
                }
                let args = items.split_off(1);
                let (module, name) = self.global_of(items[0])?;
                let node = self.call(module, name, args, Vec::new())?;
                self.push(node);
            }
            op::REDUCE | op::NEWOBJ => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let args = self.tuple_items(args)?;
                let (module, name) = self.global_of(callable)?;
                let node = self.call(module, name, args, Vec::new())?;
                self.push(node);
            }
            op::NEWOBJ_EX => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = self.tuple_items(args)?;
                let kwargs = match &self.nodes[kwargs] {
                    Node::Dict(d) => d.clone(),
                    _ => return Err("keyword arguments are not a dict".into()),
                };
                let (module, name) = self.global_of(cls)?;
                let node = self.call(module, name, args, kwargs)?;
                self.push(node);
            }
            op::BUILD => {
                let state = self.pop()?;
                let target = self.top()?;
                match self.node(target) {
                    Node::Object(o) => o.state = Some(state),
                    // Instance attributes of an OrderedDict, such as the `_metadata` torch attaches to
                    // state dicts (module versions): a dict has nowhere to keep them, and no reader of
                    // weights needs them.
                    Node::Dict(_) => {}
                    _ => return Err(format!("cannot set the state of a {}", self.kind(target))),
                }
            }
            op::PUT => {
                let line = self.input.line()?;
                self.memo_put(parse_int(&line)? as u64)?;
            }
            op::BINPUT => {
                let k = self.input.byte()?;
                self.memo_put(k as u64)?;
            }
            op::LONG_BINPUT => {
                let k = u32::from_le_bytes(self.input.array()?);
                self.memo_put(k as u64)?;
            }
            op::MEMOIZE => {
                let k = self.memo.len() as u64;
                self.memo_put(k)?;
            }
            op::GET => {
                let line = self.input.line()?;
                let id = self.memo_get(parse_int(&line)? as u64)?;
                self.stack.push(id);
            }
            op::BINGET => {
                let k = self.input.byte()?;
                let id = self.memo_get(k as u64)?;
                self.stack.push(id);
            }
            op::LONG_BINGET => {
                let k = u32::from_le_bytes(self.input.array()?);
                let id = self.memo_get(k as u64)?;
                self.stack.push(id);
            }
            op::PERSID => {
                let pid = utf8(self.input.line()?);
                self.nodes.push(Node::Str(pid));
                let id = self.nodes.len() - 1;
                self.push(Node::PersistentId(id));
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                self.push(Node::PersistentId(pid));
            }
            op::NEXT_BUFFER | op::READONLY_BUFFER => {
                return Err("out-of-band buffers (pickle.dumps with buffer_callback) are not supported".into())
            }
            op::EXT1 | op::EXT2 | op::EXT4 => return Err("the copyreg extension registry is not supported".into()),
            _ => return Err(String::new()),
        }
        Ok(None)
    }

    fn kind(&self, id: Id) -> &'static str {
        match &self.nodes[id] {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) | Node::BigInt(_) => "int",
            Node::Float(_) => "float",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Set(_) => "set",
            Node::Dict(_) => "dict",
            Node::Global(..) => "global",
            Node::Object(_) => "object",
            Node::PersistentId(_) => "persistent id",
        }
    }

    fn extend_list(&mut self, target: Id, items: Vec<Id>) -> Step<()> {
        match self.node(target) {
            Node::List(list) => list.extend(items),
            Node::Object(o) => o.list_items.extend(items),
            _ => return Err(format!("target is a {}, not a list", self.kind(target))),
        }
        Ok(())
    }

    fn extend_dict(&mut self, target: Id, items: Vec<(Id, Id)>) -> Step<()> {
        match self.node(target) {
            Node::Dict(dict) => dict.extend(items),
            Node::Object(o) => o.dict_items.extend(items),
            _ => return Err(format!("target is a {}, not a dict", self.kind(target))),
        }
        Ok(())
    }

    fn tuple_items(&self, id: Id) -> Step<Vec<Id>> {
        match &self.nodes[id] {
            Node::Tuple(items) => Ok(items.clone()),
            _ => Err(format!("arguments are a {}, not a tuple", self.kind(id))),
        }
    }

    fn global_of(&self, id: Id) -> Step<(String, String)> {
        match &self.nodes[id] {
            Node::Global(m, n) => Ok((m.clone(), n.clone())),
            _ => Err(format!("the callable is a {}, not a class or function named by GLOBAL", self.kind(id))),
        }
    }

    /// What calling `module.name(*args)` would give, for the callables that are really builtins in
    /// disguise; everything else is recorded as an object.
    fn call(&mut self, module: String, name: String, args: Vec<Id>, kwargs: Vec<(Id, Id)>) -> Step<Node> {
        let builtin = matches!(module.as_str(), "builtins" | "__builtin__");
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict") => {
                let items = match args.first() {
                    None => Vec::new(),
                    Some(&seq) => self.pairs_of(seq)?,
                };
                return Ok(Node::Dict(items));
            }
            (_, "set" | "frozenset") if builtin => {
                let items = match args.first() {
                    None => Vec::new(),
                    Some(&seq) => self.seq_items(seq)?,
                };
                return Ok(Node::Set(items));
            }
            (_, "bytes" | "bytearray") if builtin => match args.as_slice() {
                [] => return Ok(Node::Bytes(Vec::new())),
                [b] => {
                    if let Node::Bytes(b) = &self.nodes[*b] {
                        return Ok(Node::Bytes(b.clone()));
                    }
                }
                [s, enc] => {
                    if let (Some(s), Some(enc)) = (self.str_of(*s), self.str_of(*enc)) {
                        return Ok(Node::Bytes(latin1(s, enc)?));
                    }
                }
                _ => {}
            },
            // Protocol 2 has no bytes opcode: Python 3 writes `_codecs.encode(text, 'latin1')`.
            ("_codecs", "encode") => {
                if let [s, enc] = args.as_slice() {
                    if let (Some(s), Some(enc)) = (self.str_of(*s), self.str_of(*enc)) {
                        return Ok(Node::Bytes(latin1(s, enc)?));
                    }
                }
            }
            // Protocols 0 and 1 create instances through `copyreg._reconstructor(cls, base, state)`.
            ("copy_reg" | "copyreg", "_reconstructor") => {
                if let Some(&cls) = args.first() {
                    let (module, name) = self.global_of(cls)?;
                    return self.call(module, name, Vec::new(), Vec::new());
                }
            }
            _ => {}
        }
        Ok(Node::Object(Box::new(ObjNode {
            module,
            name,
            args,
            kwargs,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        })))
    }

    fn seq_items(&self, id: Id) -> Step<Vec<Id>> {
        match &self.nodes[id] {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) => Ok(v.clone()),
            _ => Err(format!("expected a sequence, got a {}", self.kind(id))),
        }
    }

    fn pairs_of(&self, id: Id) -> Step<Vec<(Id, Id)>> {
        if let Node::Dict(d) = &self.nodes[id] {
            return Ok(d.clone());
        }
        self.seq_items(id)?
            .into_iter()
            .map(|pair| match self.seq_items(pair)?.as_slice() {
                [k, v] => Ok((*k, *v)),
                _ => Err("dict items must be pairs".to_string()),
            })
            .collect()
    }

    /// The owned tree under `id`.
    fn build(&self, id: Id, depth: usize, budget: &mut u64) -> Step<Value> {
        if depth > MAX_DEPTH {
            return Err(format!("objects nest deeper than {MAX_DEPTH} levels (a recursive structure?)"));
        }
        let spend = |budget: &mut u64, n: usize| -> Step<()> {
            *budget = budget
                .checked_sub((n + std::mem::size_of::<Value>()) as u64)
                .ok_or("the pickle expands to more data than its size allows (an object shared very many times?)")?;
            Ok(())
        };
        let d = depth + 1;
        let many = |ids: &[Id], budget: &mut u64| -> Step<Vec<Value>> {
            ids.iter().map(|&i| self.build(i, d, budget)).collect()
        };
        Ok(match &self.nodes[id] {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::Int(*i),
            Node::Float(f) => Value::Float(*f),
            Node::BigInt(b) => {
                spend(budget, b.len())?;
                Value::BigInt(b.clone())
            }
            Node::Str(s) => {
                spend(budget, s.len())?;
                Value::Str(s.clone())
            }
            Node::Bytes(b) => {
                spend(budget, b.len())?;
                Value::Bytes(b.clone())
            }
            Node::List(v) => {
                spend(budget, v.len() * 8)?;
                Value::List(many(v, budget)?)
            }
            Node::Tuple(v) => {
                spend(budget, v.len() * 8)?;
                Value::Tuple(many(v, budget)?)
            }
            Node::Set(v) => {
                spend(budget, v.len() * 8)?;
                Value::Set(many(v, budget)?)
            }
            Node::Dict(items) => {
                spend(budget, items.len() * 16)?;
                Value::Dict(self.build_dict(items, d, budget)?)
            }
            Node::Global(module, name) => Value::Global { module: module.clone(), name: name.clone() },
            Node::PersistentId(pid) => Value::PersistentId(Box::new(self.build(*pid, d, budget)?)),
            Node::Object(o) => {
                spend(budget, o.args.len() * 8 + 64)?;
                let object = Object {
                    module: o.module.clone(),
                    name: o.name.clone(),
                    args: many(&o.args, budget)?,
                    kwargs: self.build_dict(&o.kwargs, d, budget)?,
                    state: o.state.map(|s| self.build(s, d, budget)).transpose()?,
                    list_items: many(&o.list_items, budget)?,
                    dict_items: self.build_dict(&o.dict_items, d, budget)?,
                };
                match numpy_array(&object)? {
                    Some(array) => Value::NdArray(array),
                    None => Value::Object(Box::new(object)),
                }
            }
        })
    }

    fn build_dict(&self, items: &[(Id, Id)], depth: usize, budget: &mut u64) -> Step<Vec<(Value, Value)>> {
        let mut out: Vec<(Value, Value)> = Vec::with_capacity(items.len());
        // Python semantics for a key set twice (never written for a real dict, possible in a crafted
        // one): first position, last value.
        let mut seen: HashMap<ScalarKey, usize> = HashMap::new();
        for &(k, v) in items {
            let key = self.build(k, depth, budget)?;
            let value = self.build(v, depth, budget)?;
            match ScalarKey::of(&key) {
                Some(sk) => match seen.get(&sk) {
                    Some(&at) => out[at].1 = value,
                    None => {
                        seen.insert(sk, out.len());
                        out.push((key, value));
                    }
                },
                None => out.push((key, value)),
            }
        }
        Ok(out)
    }
}

#[derive(PartialEq, Eq, Hash)]
enum ScalarKey {
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
}

impl ScalarKey {
    fn of(v: &Value) -> Option<Self> {
        match v {
            // True == 1 and False == 0 as dict keys.
            Value::Bool(b) => Some(ScalarKey::Int(*b as i64)),
            Value::Int(i) => Some(ScalarKey::Int(*i)),
            Value::Str(s) => Some(ScalarKey::Str(s.clone())),
            Value::Bytes(b) => Some(ScalarKey::Bytes(b.clone())),
            _ => None,
        }
    }
}

fn pairs(items: Vec<Id>) -> Step<Vec<(Id, Id)>> {
    if !items.len().is_multiple_of(2) {
        return Err(format!("{} items after MARK, not key/value pairs", items.len()));
    }
    Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

fn parse_int(text: &[u8]) -> Step<i64> {
    let s = std::str::from_utf8(text).map_err(|_| "integer is not ASCII")?;
    s.trim().parse::<i64>().map_err(|_| format!("bad or too large integer {s:?}"))
}

/// Protocol 0's `LONG` argument: a decimal integer of any size.
fn decimal_long(text: &[u8]) -> Step<Node> {
    if let Ok(v) = parse_int(text) {
        return Ok(Node::Int(v));
    }
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    // Schoolbook conversion is quadratic; Python itself refuses over 4300 digits by default.
    if digits.is_empty() || digits.len() > 10_000 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!("bad or too long integer {:?}", String::from_utf8_lossy(&text[..text.len().min(40)])));
    }
    let mut magnitude: Vec<u8> = Vec::new();
    for &d in digits {
        let mut carry = (d - b'0') as u32;
        for byte in magnitude.iter_mut() {
            let x = *byte as u32 * 10 + carry;
            *byte = x as u8;
            carry = x >> 8;
        }
        while carry > 0 {
            magnitude.push(carry as u8);
            carry >>= 8;
        }
    }
    magnitude.push(0);
    if negative {
        let mut carry = 1u16;
        for byte in magnitude.iter_mut() {
            let x = (!*byte) as u16 + carry;
            *byte = x as u8;
            carry = x >> 8;
        }
    }
    Ok(long_node(magnitude))
}

/// LONG1/LONG4 payload: little-endian two's complement of any length.
fn long_node(mut bytes: Vec<u8>) -> Node {
    if bytes.is_empty() {
        return Node::Int(0);
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let fill = if negative { 0xff } else { 0 };
    // Shortest form, as LONG1 writes it, so equal numbers compare equal whatever opcode carried them.
    while bytes.len() > 1 && bytes[bytes.len() - 1] == fill && (bytes[bytes.len() - 2] & 0x80 != 0) == negative {
        bytes.pop();
    }
    if bytes.len() > 8 {
        return Node::BigInt(bytes);
    }
    let mut buf = [fill; 8];
    buf[..bytes.len()].copy_from_slice(&bytes);
    Node::Int(i64::from_le_bytes(buf))
}

fn utf8(bytes: Vec<u8>) -> String {
    // Python writes lone surrogates ('surrogatepass'), which are not UTF-8; keep the rest readable.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn latin1(s: &str, encoding: &str) -> Step<Vec<u8>> {
    if !matches!(encoding.to_ascii_lowercase().as_str(), "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1") {
        return Err(format!("bytes encoded as {encoding:?}, expected latin1"));
    }
    s.chars().map(|c| u8::try_from(c as u32).map_err(|_| format!("character {c:?} is not latin-1"))).collect()
}

/// Protocol 0's `UNICODE` argument: latin-1 text with `\uXXXX` and `\UXXXXXXXX` escapes.
fn raw_unicode_escape(line: &[u8]) -> Step<String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b == b'\\' && i + 1 < line.len() && (line[i + 1] == b'u' || line[i + 1] == b'U') {
            let width = if line[i + 1] == b'u' { 4 } else { 8 };
            let hex = line.get(i + 2..i + 2 + width).ok_or("cut \\u escape")?;
            let code =
                std::str::from_utf8(hex).ok().and_then(|h| u32::from_str_radix(h, 16).ok()).ok_or("bad \\u escape")?;
            out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            i += 2 + width;
        } else {
            out.push(b as char);
            i += 1;
        }
    }
    Ok(out)
}

/// Protocol 0's `STRING` argument: a Python 2 string literal, quotes included.
fn python_string_literal(line: &[u8]) -> Step<Vec<u8>> {
    let body = match line {
        [q, body @ .., e] if (*q == b'\'' || *q == b'"') && q == e => body,
        _ => return Err("STRING argument is not quoted".into()),
    };
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'\\' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let c = *body.get(i + 1).ok_or("STRING ends in a backslash")?;
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'0'..=b'7' => {
                let mut v = (c - b'0') as u32;
                for _ in 0..2 {
                    match body.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let hex = body.get(i..i + 2).ok_or("cut \\x escape")?;
                let v = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("bad \\x escape")?;
                out.push(v);
                i += 2;
            }
            b'\\' | b'\'' | b'"' => out.push(c),
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// A numpy `dtype` object: element type and whether its bytes are big-endian, or `None` for dtypes
/// that are not plain numbers (object, string, structured, datetime, complex).
fn numpy_dtype(v: &Value) -> Step<Option<(RawDType, bool)>> {
    let Some(o) = v.as_object().filter(|o| o.is("numpy", "dtype")) else {
        return Err(format!("expected a numpy.dtype, got a {}", v.type_name()));
    };
    let Some(code) = o.args.first().and_then(Value::as_str) else {
        return Err("numpy.dtype without a type code".into());
    };
    let dtype = match code {
        "b1" => RawDType::Bool,
        "u1" => RawDType::U8,
        "i1" => RawDType::I8,
        "i2" => RawDType::I16,
        "u2" => RawDType::U16,
        "i4" => RawDType::I32,
        "u4" => RawDType::U32,
        "i8" => RawDType::I64,
        "u8" => RawDType::U64,
        "f2" => RawDType::F16,
        "f4" => RawDType::F32,
        "f8" => RawDType::F64,
        _ => return Ok(None),
    };
    // State (version, byteorder, subarray, names, fields, elsize, alignment, flags): numpy writes '<'
    // or '>' for multi-byte types (it resolves '=' when pickling), '|' when order does not apply.
    let state = o.state.as_ref().and_then(Value::as_seq);
    if let Some(state) = state {
        // A sub-array (`(2,)f4`) or named fields: not a plain number per element.
        if state.get(2).is_some_and(|sub| *sub != Value::None) || state.get(3).is_some_and(|n| *n != Value::None) {
            return Ok(None);
        }
    }
    let big_endian = state.and_then(|s| s.get(1)).and_then(Value::as_str) == Some(">");
    Ok(Some((dtype, big_endian)))
}

fn numpy_module(module: &str, sub: &str) -> bool {
    module.strip_prefix("numpy.core.").or_else(|| module.strip_prefix("numpy._core.")) == Some(sub)
}

/// The array an object stands for, when it is one of numpy's pickled forms with a numeric dtype.
fn numpy_array(o: &Object) -> Step<Option<RawTensor>> {
    let shape_of = |v: &Value| -> Step<Vec<usize>> {
        v.as_seq()
            .ok_or("array shape is not a tuple")?
            .iter()
            .map(|d| d.as_i64().and_then(|d| usize::try_from(d).ok()).ok_or_else(|| "bad array dimension".to_string()))
            .collect()
    };
    if numpy_module(&o.module, "multiarray") && o.name == "_reconstruct" {
        // `ndarray.__reduce__`: _reconstruct(ndarray, (0,), b'b') then BUILD with
        // (version, shape, dtype, is_fortran, raw data); numpy before 1.0 had no version.
        let Some(state) = o.state.as_ref().and_then(Value::as_seq) else {
            return Ok(None);
        };
        let state = match state.len() {
            5 => &state[1..],
            4 => state,
            n => return Err(format!("numpy array state has {n} items, expected 5")),
        };
        let Value::Bytes(data) = &state[3] else {
            // Object arrays pickle a list of their elements.
            return Ok(None);
        };
        let Some((dtype, big_endian)) = numpy_dtype(&state[1])? else {
            return Ok(None);
        };
        let fortran = state[2].as_bool().or_else(|| state[2].as_i64().map(|i| i != 0)).unwrap_or(false);
        return array(dtype, shape_of(&state[0])?, data, big_endian, fortran).map(Some);
    }
    if numpy_module(&o.module, "numeric") && o.name == "_frombuffer" {
        // Protocol 5: _frombuffer(buffer, dtype, shape, order).
        let [Value::Bytes(data), dtype, shape, order] = o.args.as_slice() else {
            return Err("numpy _frombuffer arguments are not (buffer, dtype, shape, order)".into());
        };
        let Some((dtype, big_endian)) = numpy_dtype(dtype)? else {
            return Ok(None);
        };
        let fortran = order.as_str() == Some("F");
        return array(dtype, shape_of(shape)?, data, big_endian, fortran).map(Some);
    }
    if numpy_module(&o.module, "multiarray") && o.name == "scalar" {
        // A numpy scalar (np.float32(1.5), …): scalar(dtype, raw bytes).
        if let [dtype, Value::Bytes(data)] = o.args.as_slice() {
            if let Some((dtype, big_endian)) = numpy_dtype(dtype)? {
                return array(dtype, Vec::new(), data, big_endian, false).map(Some);
            }
        }
    }
    Ok(None)
}

/// A C-order little-endian tensor from numpy's raw bytes.
fn array(dtype: RawDType, shape: Vec<usize>, data: &[u8], big_endian: bool, fortran: bool) -> Step<RawTensor> {
    let mut tensor = RawTensor::new(dtype, shape, data.to_vec()).map_err(|e| format!("numpy array: {e}"))?;
    let elem = dtype.size_in_bytes();
    if big_endian && elem > 1 {
        tensor.data.chunks_exact_mut(elem).for_each(<[u8]>::reverse);
    }
    if fortran && tensor.shape.len() > 1 {
        // Column-major: axis 0 varies fastest.
        let mut strides = Vec::with_capacity(tensor.shape.len());
        let mut s = 1;
        for &d in &tensor.shape {
            strides.push(s);
            s *= d;
        }
        tensor.data = super::gather(&tensor.data, elem, 0, &tensor.shape, &strides);
    }
    Ok(tensor)
}

fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        op::MARK => "MARK",
        op::STOP => "STOP",
        op::POP => "POP",
        op::POP_MARK => "POP_MARK",
        op::DUP => "DUP",
        op::FLOAT => "FLOAT",
        op::INT => "INT",
        op::BININT => "BININT",
        op::BININT1 => "BININT1",
        op::LONG => "LONG",
        op::BININT2 => "BININT2",
        op::NONE => "NONE",
        op::PERSID => "PERSID",
        op::BINPERSID => "BINPERSID",
        op::REDUCE => "REDUCE",
        op::STRING => "STRING",
        op::BINSTRING => "BINSTRING",
        op::SHORT_BINSTRING => "SHORT_BINSTRING",
        op::UNICODE => "UNICODE",
        op::BINUNICODE => "BINUNICODE",
        op::APPEND => "APPEND",
        op::BUILD => "BUILD",
        op::GLOBAL => "GLOBAL",
        op::DICT => "DICT",
        op::EMPTY_DICT => "EMPTY_DICT",
        op::APPENDS => "APPENDS",
        op::GET => "GET",
        op::BINGET => "BINGET",
        op::INST => "INST",
        op::LONG_BINGET => "LONG_BINGET",
        op::LIST => "LIST",
        op::EMPTY_LIST => "EMPTY_LIST",
        op::OBJ => "OBJ",
        op::PUT => "PUT",
        op::BINPUT => "BINPUT",
        op::LONG_BINPUT => "LONG_BINPUT",
        op::SETITEM => "SETITEM",
        op::TUPLE => "TUPLE",
        op::EMPTY_TUPLE => "EMPTY_TUPLE",
        op::SETITEMS => "SETITEMS",
        op::BINFLOAT => "BINFLOAT",
        op::PROTO => "PROTO",
        op::NEWOBJ => "NEWOBJ",
        op::EXT1 => "EXT1",
        op::EXT2 => "EXT2",
        op::EXT4 => "EXT4",
        op::TUPLE1 => "TUPLE1",
        op::TUPLE2 => "TUPLE2",
        op::TUPLE3 => "TUPLE3",
        op::NEWTRUE => "NEWTRUE",
        op::NEWFALSE => "NEWFALSE",
        op::LONG1 => "LONG1",
        op::LONG4 => "LONG4",
        op::BINBYTES => "BINBYTES",
        op::SHORT_BINBYTES => "SHORT_BINBYTES",
        op::SHORT_BINUNICODE => "SHORT_BINUNICODE",
        op::BINUNICODE8 => "BINUNICODE8",
        op::BINBYTES8 => "BINBYTES8",
        op::EMPTY_SET => "EMPTY_SET",
        op::ADDITEMS => "ADDITEMS",
        op::FROZENSET => "FROZENSET",
        op::NEWOBJ_EX => "NEWOBJ_EX",
        op::STACK_GLOBAL => "STACK_GLOBAL",
        op::MEMOIZE => "MEMOIZE",
        op::FRAME => "FRAME",
        op::BYTEARRAY8 => "BYTEARRAY8",
        op::NEXT_BUFFER => "NEXT_BUFFER",
        op::READONLY_BUFFER => "READONLY_BUFFER",
        _ => return None,
    })
}

/// Opcode bytes, as in CPython's `Lib/pickle.py`.
mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import").join(name)
    }

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    fn int(i: i64) -> Value {
        Value::Int(i)
    }

    fn err_of(bytes: &[u8]) -> String {
        loads(bytes).unwrap_err().to_string()
    }

    /// What make_pickles.py's `builtins_object()` is, whatever the protocol.
    fn expected_builtins() -> Value {
        let shared = Value::List(vec![int(1), int(2)]);
        let namespace = Object {
            module: "argparse".into(),
            name: "Namespace".into(),
            state: Some(Value::Dict(vec![
                (s("arch"), s("roberta_base")),
                (s("encoder_layers"), int(5)),
                (s("lr"), Value::List(vec![Value::Float(0.0025)])),
                (s("fp16"), Value::Bool(true)),
            ])),
            ..Object::default()
        };
        let mut big = vec![0u8; 12];
        big.push(0x10);
        let mut neg_big = vec![0u8; 8];
        neg_big.push(0xc0);
        let long_bytes: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        Value::Dict(vec![
            (s("none"), Value::None),
            (s("true"), Value::Bool(true)),
            (s("false"), Value::Bool(false)),
            (
                s("ints"),
                Value::List(
                    [
                        0,
                        1,
                        -1,
                        255,
                        256,
                        65535,
                        65536,
                        -65537,
                        (1 << 31) - 1,
                        1 << 31,
                        -(1 << 31) - 1,
                        i64::MAX,
                        i64::MIN,
                    ]
                    .into_iter()
                    .map(int)
                    .collect(),
                ),
            ),
            (s("big"), Value::BigInt(big)),
            (s("neg_big"), Value::BigInt(neg_big)),
            (s("floats"), Value::List([1.5, -0.0, 1e300, f64::INFINITY].into_iter().map(Value::Float).collect())),
            (s("str"), s("héllo ✓\n\\")),
            (s("empty_str"), s("")),
            (s("long_str"), s(&"x".repeat(300))),
            (s("bytes"), Value::Bytes(vec![0, 0xff, b'a', b'b'])),
            (s("empty_bytes"), Value::Bytes(vec![])),
            (s("long_bytes"), Value::Bytes(long_bytes)),
            (s("bytearray"), Value::Bytes(b"ba".to_vec())),
            (s("tuples"), Value::List((0..5).map(|n| Value::Tuple((1..=n).map(int).collect())).collect())),
            (s("set"), Value::Set(vec![int(3)])),
            (s("frozenset"), Value::Set(vec![int(4)])),
            (s("ordered"), Value::Dict(vec![(s("b"), int(1)), (s("a"), int(2))])),
            (
                s("nested"),
                Value::Dict(vec![(
                    s("k"),
                    Value::Dict(vec![(s("j"), Value::List(vec![int(1), Value::Dict(vec![(s("i"), Value::None)])]))]),
                )]),
            ),
            (s("shared"), Value::List(vec![shared.clone(), shared])),
            (s("namespace"), Value::Object(Box::new(namespace))),
            (int(7), s("int key")),
        ])
    }

    #[test]
    fn builtins_in_every_protocol() {
        let expected = expected_builtins();
        for p in 0..=5 {
            let v = load_file(fixture(&format!("builtins_p{p}.pkl"))).unwrap();
            if v != expected {
                let (Value::Dict(got), Value::Dict(want)) = (&v, &expected) else { panic!("p{p}: not a dict") };
                for ((k, a), (_, b)) in got.iter().zip(want) {
                    assert_eq!(a, b, "protocol {p}, key {k:?}");
                }
                panic!("protocol {p}: {v:?}");
            }
            // -0.0 == 0.0, so check the sign separately.
            let floats = v.get("floats").and_then(Value::as_seq).unwrap();
            assert!(floats[1].as_f64().unwrap().is_sign_negative(), "protocol {p}");
            assert_eq!(v.get("namespace").and_then(|n| n.attr("encoder_layers")), Some(&int(5)));
        }
    }

    fn f32s(a: &RawTensor) -> Vec<f32> {
        a.to_f32_vec()
    }

    fn array<'a>(v: &'a Value, key: &str) -> &'a RawTensor {
        match v.get(key) {
            Some(Value::NdArray(a)) => a,
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn numpy_arrays_of_numpy_1_and_2_in_protocols_2_4_5() {
        for major in [1, 2] {
            for p in [2, 4, 5] {
                let name = format!("numpy{major}_p{p}.pkl");
                let v = load_file(fixture(&name)).unwrap();
                let a = array(&v, "f32");
                assert_eq!((a.dtype, a.shape.as_slice()), (RawDType::F32, &[2usize, 3][..]), "{name}");
                assert_eq!(f32s(a), [0.0, 0.25, 0.5, 0.75, 1.0, 1.25], "{name}");
                let a = array(&v, "f64_fortran");
                assert_eq!((a.dtype, a.shape.as_slice()), (RawDType::F64, &[3usize, 2][..]), "{name}");
                assert_eq!(f32s(a), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], "{name}: Fortran order → C order");
                let a = array(&v, "i4_big");
                assert_eq!(a.dtype, RawDType::I32);
                assert_eq!(f32s(a), [1.0, -2.0, 3.0, 70000.0], "{name}: big-endian → little-endian");
                let a = array(&v, "f8_big_2d");
                assert_eq!(f32s(a), [1.5, -2.25, 3.0, 1e10], "{name}");
                let a = array(&v, "f16");
                assert_eq!(a.dtype, RawDType::F16);
                assert_eq!(f32s(a), [0.5, -1.0, 65504.0, 0.099975586], "{name}");
                assert_eq!(array(&v, "bool").data, [1, 0, 1]);
                assert_eq!(array(&v, "bool").dtype, RawDType::Bool);
                assert_eq!(array(&v, "u8").data, [0, 7, 255]);
                assert_eq!(f32s(array(&v, "i8")), [-128.0, 0.0, 127.0]);
                assert_eq!(f32s(array(&v, "i16")), [-32768.0, 5.0]);
                assert_eq!(f32s(array(&v, "u16")), [65535.0, 5.0]);
                assert_eq!(array(&v, "u32").dtype, RawDType::U32);
                assert_eq!(array(&v, "u32").data[..4], u32::MAX.to_le_bytes());
                let i64s = array(&v, "i64");
                assert_eq!(i64s.data[..8], i64::MIN.to_le_bytes());
                assert_eq!(i64s.data[8..], (1i64 << 40).to_le_bytes());
                assert_eq!(array(&v, "u64").data, u64::MAX.to_le_bytes());
                let a = array(&v, "zero_d");
                assert!(a.shape.is_empty());
                assert_eq!(f32s(a), [3.25]);
                let a = array(&v, "empty");
                assert_eq!((a.shape.as_slice(), a.data.len()), (&[0usize, 3][..], 0));
                assert_eq!(f32s(array(&v, "strided")), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
                let a = array(&v, "scalar");
                assert_eq!((a.dtype, a.shape.len(), f32s(a)), (RawDType::F64, 0, vec![2.5]));
                // Not numbers: kept as the objects numpy pickled, not guessed at.
                for key in ["objects", "strings"] {
                    let o = v.get(key).and_then(Value::as_object).unwrap_or_else(|| panic!("{name}: {key}"));
                    let pkg = if major == 1 { "numpy.core." } else { "numpy._core." };
                    assert!(o.module.starts_with(pkg), "{name}: {key} from {}", o.module);
                }
            }
        }
    }

    #[test]
    fn python2_strings_and_rare_opcodes() {
        // SHORT_BINSTRING and BINSTRING (Python 2 str) are bytes.
        assert_eq!(loads(b"\x80\x02U\x03abcq\x00.").unwrap(), Value::Bytes(b"abc".to_vec()));
        assert_eq!(loads(b"T\x02\x00\x00\x00hi.").unwrap(), Value::Bytes(b"hi".to_vec()));
        // Protocol 0 STRING: a quoted literal with escapes.
        assert_eq!(loads(b"S'a\\n\\x41\\101\\''\np0\n.").unwrap(), Value::Bytes(b"a\nAA'".to_vec()));
        // 8-byte lengths.
        assert_eq!(loads(b"\x8d\x03\x00\x00\x00\x00\x00\x00\x00h\xc3\xa9.").unwrap(), s("hé"));
        assert_eq!(loads(b"\x8e\x01\x00\x00\x00\x00\x00\x00\x00z.").unwrap(), Value::Bytes(b"z".to_vec()));
        assert_eq!(loads(b"\x96\x01\x00\x00\x00\x00\x00\x00\x00y.").unwrap(), Value::Bytes(b"y".to_vec()));
        // LONG4, LONG1 negative and empty; protocol-0 LONG beyond i64.
        assert_eq!(loads(b"\x8b\x02\x00\x00\x00\xff\x7f.").unwrap(), int(32767));
        assert_eq!(loads(b"\x8a\x01\xff.").unwrap(), int(-1));
        assert_eq!(loads(b"\x8a\x00.").unwrap(), int(0));
        assert_eq!(loads(b"\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff.").unwrap(), int(-1));
        let mut neg = vec![0u8; 12];
        neg.push(0xf0);
        assert_eq!(loads(b"L-1267650600228229401496703205376L\n.").unwrap(), Value::BigInt(neg));
        // INST and OBJ (protocols 0/1 instances), PERSID and BINPERSID.
        let o = loads(b"(K\x01imod\nCls\n.").unwrap();
        assert_eq!((o.type_name(), &o.as_object().unwrap().args), ("mod.Cls".to_string(), &vec![int(1)]));
        let o = loads(b"(cmod\nCls\nK\x02o.").unwrap();
        assert_eq!(o.as_object().unwrap().args, [int(2)]);
        assert_eq!(loads(b"Pkey\n.").unwrap(), Value::PersistentId(Box::new(s("key"))));
        assert_eq!(loads(b"\x80\x02K\x05Q.").unwrap(), Value::PersistentId(Box::new(int(5))));
        // NEWOBJ_EX keeps keyword arguments.
        let o = loads(b"\x80\x04cmod\nCls\n)}(\x8c\x01kK\x01u\x92.").unwrap();
        assert_eq!(o.as_object().unwrap().kwargs, [(s("k"), int(1))]);
        // MARK K1 K2 POP_MARK, K3 DUP TUPLE2, K9 POP → (3, 3).
        assert_eq!(loads(b"(K\x01K\x021K\x032\x86K\x090.").unwrap(), Value::Tuple(vec![int(3), int(3)]));
        // POP on an empty frame drops the mark, as in CPython.
        assert_eq!(loads(b"K\x01(0.").unwrap(), int(1));
        // A list memoized, fetched, then filled: both references see the item.
        let l = Value::List(vec![int(1)]);
        assert_eq!(loads(b"]q\x00h\x00K\x01a\x86.").unwrap(), Value::Tuple(vec![l.clone(), l]));
        // A key set twice: first place, last value.
        assert_eq!(
            loads(b"}(K\x01K\x02K\x05K\x06K\x01K\x03u.").unwrap(),
            Value::Dict(vec![(int(1), int(3)), (int(5), int(6))])
        );
        // An unknown function call is recorded, not run; BUILD gives it a state.
        let o = loads(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R}b.").unwrap();
        let o = o.as_object().unwrap();
        assert_eq!((o.module.as_str(), o.name.as_str(), &o.args), ("os", "system", &vec![s("ls")]));
        assert_eq!(o.state, Some(Value::Dict(vec![])));
    }

    #[test]
    fn bad_pickles_are_errors_with_opcode_and_offset() {
        let e = err_of(b"\x80\x02\xff");
        assert!(e.contains("unknown opcode 0xff at byte 2"), "{e}");
        let e = err_of(b"\x80\x02X\x10\x00\x00\x00ab");
        assert!(e.contains("BINUNICODE (0x58) at byte 2") && e.contains("claims 16 bytes"), "{e}");
        let e = err_of(b"\x80\x02K\x01");
        assert!(e.contains("before the pickle's STOP"), "{e}");
        assert!(err_of(b"").contains("no pickle at byte 0"));
        let e = err_of(b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff");
        assert!(e.contains("more than the") && e.contains("input holds"), "{e}");
        let e = err_of(b"\x80\x06.");
        assert!(e.contains("protocol 6"), "{e}");
        let e = err_of(b"\x80\x05\x97.");
        assert!(e.contains("out-of-band"), "{e}");
        assert!(err_of(b"\x80\x02h\x07.").contains("memo key 7"));
        assert!(err_of(b"\x80\x02a.").contains("APPEND"));
        assert!(err_of(b"\x80\x02e.").contains("no MARK"));
        assert!(err_of(b"\x80\x02K\x01K\x02R.").contains("not a tuple"));
        assert!(err_of(b"\x80\x02K\x01)R.").contains("not a class or function"));
        // A list inside itself.
        let e = err_of(b"]q\x00h\x00a.");
        assert!(e.contains("deeper than 256"), "{e}");
        // 100000 nested lists, and as many nested dicts: an error, not a stack overflow.
        let mut deep = vec![b']'; 100_000];
        deep.extend(vec![b'a'; 99_999]);
        deep.push(b'.');
        assert!(err_of(&deep).contains("deeper than 256"));
        let mut deep = b"}".to_vec();
        for _ in 0..100_000 {
            deep.extend_from_slice(b"K\x01}");
        }
        deep.extend(vec![b's'; 100_000]);
        deep.push(b'.');
        // Each `K1 }` pushes a key and a dict; each SETITEM files a dict in the one below, innermost first.
        let e = err_of(&deep);
        assert!(e.contains("deeper than 256"), "{e}");
        // Exactly at the bound is fine.
        let mut ok = vec![b']'; 256];
        ok.extend(vec![b'a'; 255]);
        ok.push(b'.');
        assert!(loads(&ok).is_ok());
        // One tuple shared by the next, 64 times: 2^64 leaves from 400 bytes.
        let mut bomb = b"\x80\x02]".to_vec();
        for _ in 0..64 {
            bomb.extend_from_slice(b"q\x00h\x00\x86");
        }
        bomb.push(b'.');
        let e = err_of(&bomb);
        assert!(e.contains("expands to more data"), "{e}");
    }
}
