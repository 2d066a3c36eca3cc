//! The released ProteinBERT weights → this crate's parameter names.
//!
//! The released file (`epoch_92400_sample_23500000.pkl`) is a Python pickle of
//! `(n_annotations, model.get_weights(), optimizer.get_weights())`. `get_weights()` lists the
//! arrays in Keras' functional-graph order (spec §2.2, verified against TF 2.15 by the fixture
//! script): `dense-global-input` (kernel, bias), the embedding, 23 arrays per block, then
//! `output-seq` and `output-annotations` (kernel, bias each), 7 + 23 · n_blocks in all. The
//! config is read off the shapes, so any size imports; only the wide convolution's dilation is
//! not in the weights (default 5, the reference's).
//!
//! | Keras (per block b) | shape | here (`blocks.{b-1}.`) |
//! |---|---|---|
//! | global-to-seq-dense-block{b} kernel, bias | (G, D), (D) | `global_to_local.weight` (transposed), `.bias` |
//! | narrow-conv-block{b} kernel, bias | (k, D, D), (D) | `narrow_conv.weight` (permuted to (out, in, k)), `.bias` |
//! | wide-conv-block{b} kernel, bias | (k, D, D), (D) | `wide_conv.*` |
//! | seq-merge1-norm-block{b} gamma, beta | (D) | `local_norm1.weight`, `.bias` |
//! | seq-dense-block{b} kernel, bias | (D, D), (D) | `local_dense.*` |
//! | seq-merge2-norm-block{b} gamma, beta | (D) | `local_norm2.*` |
//! | global-dense1-block{b} kernel, bias | (G, G), (G) | `global_dense1.*` |
//! | global-attention-block{b} Wq, Wk, Wv | (H, G, K), (H, D, K), (H, D, V) | `attention.wq`, `.wk`, `.wv` (as is) |
//! | global-merge1-norm-block{b} gamma, beta | (G) | `global_norm1.*` |
//! | global-dense2-block{b} kernel, bias | (G, G), (G) | `global_dense2.*` |
//! | global-merge2-norm-block{b} gamma, beta | (G) | `global_norm2.*` |

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::config::Config;
use crate::{Error, Result};

/// One array of `get_weights()`: its shape and its values in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasArray {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The Keras names of the 23 arrays of one block, in `get_weights()` order.
pub const BLOCK_ARRAYS: [&str; 23] = [
    "global-to-seq-dense/kernel",
    "global-to-seq-dense/bias",
    "narrow-conv/kernel",
    "narrow-conv/bias",
    "wide-conv/kernel",
    "wide-conv/bias",
    "seq-merge1-norm/gamma",
    "seq-merge1-norm/beta",
    "seq-dense/kernel",
    "seq-dense/bias",
    "seq-merge2-norm/gamma",
    "seq-merge2-norm/beta",
    "global-dense1/kernel",
    "global-dense1/bias",
    "global-attention/Wq",
    "global-attention/Wk",
    "global-attention/Wv",
    "global-merge1-norm/gamma",
    "global-merge1-norm/beta",
    "global-dense2/kernel",
    "global-dense2/bias",
    "global-merge2-norm/gamma",
    "global-merge2-norm/beta",
];

/// What each Keras array becomes.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Dense kernel `(in, out)` → `(out, in)`.
    DenseKernel,
    /// Conv kernel `(k, in, out)` → `(out, in, k)`.
    ConvKernel,
    /// Unchanged.
    AsIs,
}

fn block_target(keras: &str) -> (&'static str, Layout) {
    match keras {
        "global-to-seq-dense/kernel" => ("global_to_local.weight", Layout::DenseKernel),
        "global-to-seq-dense/bias" => ("global_to_local.bias", Layout::AsIs),
        "narrow-conv/kernel" => ("narrow_conv.weight", Layout::ConvKernel),
        "narrow-conv/bias" => ("narrow_conv.bias", Layout::AsIs),
        "wide-conv/kernel" => ("wide_conv.weight", Layout::ConvKernel),
        "wide-conv/bias" => ("wide_conv.bias", Layout::AsIs),
        "seq-merge1-norm/gamma" => ("local_norm1.weight", Layout::AsIs),
        "seq-merge1-norm/beta" => ("local_norm1.bias", Layout::AsIs),
        "seq-dense/kernel" => ("local_dense.weight", Layout::DenseKernel),
        "seq-dense/bias" => ("local_dense.bias", Layout::AsIs),
        "seq-merge2-norm/gamma" => ("local_norm2.weight", Layout::AsIs),
        "seq-merge2-norm/beta" => ("local_norm2.bias", Layout::AsIs),
        "global-dense1/kernel" => ("global_dense1.weight", Layout::DenseKernel),
        "global-dense1/bias" => ("global_dense1.bias", Layout::AsIs),
        "global-attention/Wq" => ("attention.wq", Layout::AsIs),
        "global-attention/Wk" => ("attention.wk", Layout::AsIs),
        "global-attention/Wv" => ("attention.wv", Layout::AsIs),
        "global-merge1-norm/gamma" => ("global_norm1.weight", Layout::AsIs),
        "global-merge1-norm/beta" => ("global_norm1.bias", Layout::AsIs),
        "global-dense2/kernel" => ("global_dense2.weight", Layout::DenseKernel),
        "global-dense2/bias" => ("global_dense2.bias", Layout::AsIs),
        "global-merge2-norm/gamma" => ("global_norm2.weight", Layout::AsIs),
        "global-merge2-norm/beta" => ("global_norm2.bias", Layout::AsIs),
        other => unreachable!("unknown block array {other}"),
    }
}

fn convert(array: &KerasArray, layout: Layout, device: &Device) -> Result<Tensor> {
    let t = Tensor::from_slice(&array.values, array.shape.as_slice(), device)?;
    Ok(match layout {
        Layout::DenseKernel => t.t()?.contiguous()?,
        Layout::ConvKernel => t.permute((2, 1, 0))?.contiguous()?,
        Layout::AsIs => t,
    })
}

/// Reads the config off the shapes of `get_weights()` and maps every array onto this crate's
/// names. `wide_conv_dilation` is not stored in the weights (the reference uses 5).
pub fn from_keras_weights(
    arrays: &[KerasArray],
    wide_conv_dilation: usize,
    device: &Device,
) -> Result<(Config, HashMap<String, Tensor>)> {
    let n = arrays.len();
    if n < 30 || !(n - 7).is_multiple_of(23) {
        return Err(Error::invalid(format!(
            "expected 7 + 23 · n_blocks weight arrays in ProteinBERT's get_weights() order, got {n}"
        )));
    }
    let n_blocks = (n - 7) / 23;
    let dims = |i: usize, rank: usize, what: &str| -> Result<&[usize]> {
        let s = arrays[i].shape.as_slice();
        if s.len() != rank {
            return Err(Error::invalid(format!("weight array {i} ({what}) should have rank {rank}, has shape {s:?}")));
        }
        Ok(s)
    };
    let global_input = dims(0, 2, "dense-global-input kernel")?;
    let embedding = dims(2, 2, "embedding")?;
    let conv = dims(3 + 2, 3, "narrow-conv kernel of block 1")?;
    let wq = dims(3 + 14, 3, "global-attention Wq of block 1")?;
    let config = Config {
        vocab_size: embedding[0],
        n_annotations: global_input[0],
        d_local: embedding[1],
        d_global: global_input[1],
        n_blocks,
        n_heads: wq[0],
        d_key: wq[2],
        conv_kernel_size: conv[0],
        wide_conv_dilation,
        layer_norm_eps: 1e-3,
    };
    config.validate()?;

    let mut names: Vec<(String, Layout)> = vec![
        ("global_input.weight".into(), Layout::DenseKernel),
        ("global_input.bias".into(), Layout::AsIs),
        ("embedding.weight".into(), Layout::AsIs),
    ];
    for b in 0..n_blocks {
        for keras in BLOCK_ARRAYS {
            let (name, layout) = block_target(keras);
            names.push((format!("blocks.{b}.{name}"), layout));
        }
    }
    names.extend([
        ("token_head.weight".into(), Layout::DenseKernel),
        ("token_head.bias".into(), Layout::AsIs),
        ("annotation_head.weight".into(), Layout::DenseKernel),
        ("annotation_head.bias".into(), Layout::AsIs),
    ]);
    let mut tensors = HashMap::new();
    for (i, ((name, layout), array)) in names.into_iter().zip(arrays).enumerate() {
        if array.values.len() != array.shape.iter().product::<usize>() {
            return Err(Error::invalid(format!(
                "weight array {i} ({name}): shape {:?} does not match its data",
                array.shape
            )));
        }
        let rank = match layout {
            Layout::DenseKernel => Some(2),
            Layout::ConvKernel => Some(3),
            Layout::AsIs => None,
        };
        if rank.is_some_and(|r| r != array.shape.len()) {
            return Err(Error::invalid(format!(
                "weight array {i} should be {name} (rank {}), but has shape {:?} (arrays out of the get_weights() order?)",
                rank.unwrap_or_default(),
                array.shape
            )));
        }
        tensors.insert(name, convert(array, layout, device)?);
    }
    check_shapes(&config, &tensors)?;
    Ok((config, tensors))
}

/// Every expected parameter is present with the shape the network wants (catches arrays out of
/// order, which the count alone would not), by loading the network from the mapped tensors.
fn check_shapes(config: &Config, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let vb = candle_nn::VarBuilder::from_tensors(tensors.clone(), candle_core::DType::F32, &Device::Cpu);
    super::ProteinBert::load(vb, config)
        .map(|_| ())
        .map_err(|e| Error::invalid(format!("{e} (weight arrays out of the get_weights() order?)")))
}

/// What [`import_keras_pickle`] wrote.
#[derive(Debug, Clone)]
pub struct KerasImport {
    pub config: Config,
    pub arrays: usize,
    pub optimizer_arrays: usize,
    pub parameters: usize,
}

/// `protein-lm import proteinbert-keras FILE.pkl --out MODEL_DIR`: the released checkpoint format
/// (`(n_annotations, model.get_weights(), optimizer.get_weights())`, any config, pickled by numpy
/// 1.x or 2, protocols 2–5) → a model directory. The optimizer state is skipped. The GO-term
/// order of the released model was lost by its authors, so no `go_terms.txt` is written.
///
/// ```no_run
/// use std::path::Path;
/// use protein_lm::models::proteinbert::import::import_keras_pickle;
/// // The released checkpoint; its wide convolutions have dilation 5.
/// let (dir, report) = import_keras_pickle(
///     Path::new("epoch_92400_sample_23500000.pkl"),
///     Path::new("models/proteinbert-released"),
///     5,
/// )?;
/// println!("{} parameters from {} arrays into {}", report.parameters, report.arrays, dir.path().display());
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn import_keras_pickle(
    path: &std::path::Path,
    out: &std::path::Path,
    wide_conv_dilation: usize,
) -> Result<(crate::models::directory::ModelDir, KerasImport)> {
    use crate::models::directory::{DirectoryConfig, ModelConfig, ModelDir};
    use crate::models::import::{pickle, Value};
    let bad = |msg: String| Error::data(crate::Location::file(path), msg);
    let root =
        pickle::load_file(path).map_err(|e| bad(format!("cannot read it as a ProteinBERT weights pickle: {e}")))?;
    let items = match &root {
        Value::Tuple(items) | Value::List(items) if items.len() == 3 => items,
        other => {
            return Err(bad(format!(
                "expected the tuple (n_annotations, model weights, optimizer weights), found {}",
                other.type_name()
            )))
        }
    };
    let n_annotations = items[0].as_i64().ok_or_else(|| bad("first item is not the number of annotations".into()))?;
    let weights = items[1].as_seq().ok_or_else(|| bad("second item is not a list of weight arrays".into()))?;
    let optimizer_arrays = items[2].as_seq().map_or(0, |s| s.len());
    let arrays = weights
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::NdArray(t) => Ok(KerasArray { shape: t.shape.clone(), values: t.to_f32_vec() }),
            other => Err(bad(format!("weight {i} is a {}, not a numpy array", other.type_name()))),
        })
        .collect::<Result<Vec<_>>>()?;
    let (config, tensors) =
        from_keras_weights(&arrays, wide_conv_dilation, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
    if config.n_annotations as i64 != n_annotations {
        return Err(bad(format!(
            "the file says {n_annotations} annotations, its first weight array has {}",
            config.n_annotations
        )));
    }
    let report = KerasImport {
        config: config.clone(),
        arrays: arrays.len(),
        optimizer_arrays,
        parameters: tensors.values().map(|t| t.elem_count()).sum(),
    };
    let dir_config = DirectoryConfig {
        model: ModelConfig::Proteinbert(config),
        source: Some(format!("import proteinbert-keras {}", path.display())),
        has_lm_head: false,
        heads: vec![],
    };
    Ok((ModelDir::create(out, &dir_config, &tensors)?, report))
}
