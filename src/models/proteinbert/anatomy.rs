//! Where ProteinBERT's parameters sit and what shapes its two tracks take through a block, for
//! the architecture notebook (`notebooks/proteinbert/01_architecture.ipynb`) and anyone sizing a
//! variant. Counts are derived from the [`Config`] alone; the tests tie them to the variables the
//! network actually creates and to the released 15,981,321.
//!
//! ```
//! use protein_lm::models::proteinbert::anatomy::parameters_by_part;
//! use protein_lm::models::proteinbert::Config;
//! let parts = parameters_by_part(&Config::default());
//! for part in &parts[..4] {
//!     println!("{:>28}: {:>9}", part.label(), part.parameters);
//! }
//! assert_eq!(parts[0].label(), "token embedding");
//! assert_eq!(parts.iter().map(|p| p.parameters).sum::<usize>(), 15_981_321);
//! ```

use candle_core::{Tensor, D};

use super::config::Config;
use super::model::ProteinBert;
use crate::models::layers::{add_over_length, linear};
use crate::models::ops::gelu_erf;
use crate::{Error, Result};

/// The part of the network a layer belongs to.
///
/// ```
/// use protein_lm::models::proteinbert::anatomy::{layer_parameters, Part};
/// use protein_lm::models::proteinbert::Config;
/// let layers = layer_parameters(&Config::default());
/// let attention: usize = layers.iter().filter(|l| l.part == Part::Attention).map(|l| l.parameters).sum();
/// // Six blocks of four heads, each with Wq (512 × 64), Wk (128 × 64) and Wv (128 × 128).
/// assert_eq!(attention, 6 * 4 * (512 * 64 + 128 * 64 + 128 * 128));
/// assert_eq!(Part::Attention.name(), "global attention");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The token embedding (`embedding-seq-input`).
    Embedding,
    /// The dense layer that reads the GO-annotation input into the global track (`dense-global-input`).
    GlobalInput,
    /// A block's local-track layers: global-to-local dense, both convolutions, the local dense and
    /// the two local LayerNorms.
    Local,
    /// A block's global attention (`Wq`, `Wk`, `Wv`, no biases).
    Attention,
    /// A block's global-track layers apart from attention: two denses and two LayerNorms.
    Global,
    /// The per-residue token head (`output-seq`).
    TokenHead,
    /// The GO-annotation head (`output-annotations`).
    AnnotationHead,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Embedding => "token embedding",
            Part::GlobalInput => "annotation input (global)",
            Part::Local => "local track",
            Part::Attention => "global attention",
            Part::Global => "global track",
            Part::TokenHead => "token head",
            Part::AnnotationHead => "annotation head",
        }
    }
}

/// One layer's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParameters {
    /// Prefix of the layer's tensors in `model.safetensors`, e.g. `blocks.0.narrow_conv`.
    pub name: String,
    /// The Keras layer it was imported from, e.g. `narrow-conv-block1`.
    pub keras: String,
    pub part: Part,
    /// 0-based block, for block layers.
    pub block: Option<usize>,
    pub parameters: usize,
}

/// Every layer of the network with its parameter count, in the order of the reference's
/// `get_weights()` apart from the embedding, which comes first here. Sums to
/// [`Config::num_parameters`].
pub fn layer_parameters(config: &Config) -> Vec<LayerParameters> {
    let dense = |i: usize, o: usize| i * o + o;
    let conv = config.conv_kernel_size * config.d_local * config.d_local + config.d_local;
    let (dl, dg, h) = (config.d_local, config.d_global, config.n_heads);
    let mut layers = Vec::with_capacity(4 + 11 * config.n_blocks);
    let mut push = |name: String, keras: String, part: Part, block: Option<usize>, parameters: usize| {
        layers.push(LayerParameters { name, keras, part, block, parameters })
    };
    push("embedding".into(), "embedding-seq-input".into(), Part::Embedding, None, config.vocab_size * dl);
    push("global_input".into(), "dense-global-input".into(), Part::GlobalInput, None, dense(config.n_annotations, dg));
    for b in 0..config.n_blocks {
        let k = b + 1;
        let block_layers = [
            ("global_to_local", format!("global-to-seq-dense-block{k}"), Part::Local, dense(dg, dl)),
            ("narrow_conv", format!("narrow-conv-block{k}"), Part::Local, conv),
            ("wide_conv", format!("wide-conv-block{k}"), Part::Local, conv),
            ("local_norm1", format!("seq-merge1-norm-block{k}"), Part::Local, 2 * dl),
            ("local_dense", format!("seq-dense-block{k}"), Part::Local, dense(dl, dl)),
            ("local_norm2", format!("seq-merge2-norm-block{k}"), Part::Local, 2 * dl),
            ("global_dense1", format!("global-dense1-block{k}"), Part::Global, dense(dg, dg)),
            (
                "attention",
                format!("global-attention-block{k}"),
                Part::Attention,
                h * (dg * config.d_key + dl * config.d_key + dl * config.d_value()),
            ),
            ("global_norm1", format!("global-merge1-norm-block{k}"), Part::Global, 2 * dg),
            ("global_dense2", format!("global-dense2-block{k}"), Part::Global, dense(dg, dg)),
            ("global_norm2", format!("global-merge2-norm-block{k}"), Part::Global, 2 * dg),
        ];
        for (name, keras, part, n) in block_layers {
            push(format!("blocks.{b}.{name}"), keras, part, Some(b), n);
        }
    }
    push("token_head".into(), "output-seq".into(), Part::TokenHead, None, dense(dl, config.vocab_size));
    push(
        "annotation_head".into(),
        "output-annotations".into(),
        Part::AnnotationHead,
        None,
        dense(dg, config.n_annotations),
    );
    layers
}

/// Parameters of one part (within one block, for block parts).
#[derive(Debug, Clone, PartialEq)]
pub struct PartParameters {
    pub part: Part,
    pub block: Option<usize>,
    pub parameters: usize,
    /// The Keras layers it sums.
    pub layers: Vec<String>,
}

impl PartParameters {
    /// e.g. "block 3 global attention" (1-based blocks, as the Keras layer names count them).
    pub fn label(&self) -> String {
        match self.block {
            Some(b) => format!("block {} {}", b + 1, self.part.name()),
            None => self.part.name().to_string(),
        }
    }
}

/// [`layer_parameters`] summed by part, in the order parts first appear: the embedding, the
/// annotation input, then per block its local track, global track and global attention, then the
/// two heads.
pub fn parameters_by_part(config: &Config) -> Vec<PartParameters> {
    let mut parts: Vec<PartParameters> = Vec::new();
    for layer in layer_parameters(config) {
        match parts.iter_mut().find(|p| p.part == layer.part && p.block == layer.block) {
            Some(part) => {
                part.parameters += layer.parameters;
                part.layers.push(layer.keras);
            }
            None => parts.push(PartParameters {
                part: layer.part,
                block: layer.block,
                parameters: layer.parameters,
                layers: vec![layer.keras],
            }),
        }
    }
    parts
}

/// Which track a tensor of [`track_shapes`] lives on.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::models::proteinbert::anatomy::{track_shapes, Track};
/// use protein_lm::models::proteinbert::{Config, ProteinBert};
/// let config = Config::tiny(8);
/// let model = ProteinBert::load(SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu), &config)?;
/// let tokens = Tensor::new(&[[23u32, 10, 8, 24, 25]], &Device::Cpu)?; // <START> M K <END> <PAD>
/// let trace = track_shapes(&model, &tokens, &Tensor::zeros((1, 8), DType::F32, &Device::Cpu)?, 0)?;
/// for step in &trace.steps {
///     match step.track {
///         Track::Local => assert_eq!(step.shape.last(), Some(&config.d_local)),
///         Track::Global => assert_eq!(step.shape[0], 1),
///     }
/// }
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// One vector per position, `(B, L, d_local)`.
    Local,
    /// One vector per protein, `(B, d_global)`.
    Global,
}

/// One step of a block with the shape of its output.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackStep {
    pub track: Track,
    /// What the step computes, in the spec's notation.
    pub step: &'static str,
    /// The Keras layer (or "" for an input).
    pub keras: String,
    pub shape: Vec<usize>,
}

/// [`track_shapes`]'s result: the steps and the block's two outputs.
#[derive(Debug, Clone)]
pub struct BlockTrace {
    pub steps: Vec<TrackStep>,
    /// The block's local output, `(B, L, d_local)`.
    pub local: Tensor,
    /// The block's global output, `(B, d_global)`.
    pub global: Tensor,
}

/// Runs `tokens (B, L)` and `annotations (B, n_annotations)` through the network up to block
/// `block` (0-based) and that block layer by layer, recording each step's output shape. The
/// block's outputs equal what [`ProteinBert::forward`] computes there (tested), so the shapes are
/// the network's own, not a restatement of the config.
pub fn track_shapes(model: &ProteinBert, tokens: &Tensor, annotations: &Tensor, block: usize) -> Result<BlockTrace> {
    let config = model.config();
    if block >= model.blocks.len() {
        return Err(Error::invalid(format!(
            "block {block} does not exist: the model has {} blocks",
            model.blocks.len()
        )));
    }
    let (b, _) =
        tokens.dims2().map_err(|_| Error::invalid(format!("tokens must be (B, L), got {:?}", tokens.dims())))?;
    if annotations.dims() != [b, config.n_annotations] {
        return Err(Error::invalid(format!(
            "annotations must be ({b}, {}), got {:?}",
            config.n_annotations,
            annotations.dims()
        )));
    }
    let dtype = model.dtype();
    let mut local = candle_core::Module::forward(&model.embedding, tokens)?;
    let mut global = gelu_erf(&linear(&model.global_input, &annotations.to_dtype(dtype)?)?)?;
    for earlier in &model.blocks[..block] {
        let out = earlier.forward(&local, &global, None)?;
        local = out.local2;
        global = out.global2;
    }
    let k = block + 1;
    let blk = &model.blocks[block];
    let mut steps = Vec::new();
    let mut record = |track: Track, step: &'static str, keras: String, t: &Tensor| {
        steps.push(TrackStep { track, step, keras, shape: t.dims().to_vec() })
    };
    record(Track::Local, "S (block input)", String::new(), &local);
    record(Track::Global, "G (block input)", String::new(), &global);
    let from_global = gelu_erf(&linear(&blk.global_to_local, &global)?)?;
    record(Track::Local, "gelu(Dense(G)), broadcast over L", format!("global-to-seq-dense-block{k}"), &from_global);
    let narrow = gelu_erf(&blk.narrow_conv.forward(&local)?)?;
    record(Track::Local, "gelu(Conv1D k 9, dilation 1)", format!("narrow-conv-block{k}"), &narrow);
    let wide = gelu_erf(&blk.wide_conv.forward(&local)?)?;
    record(Track::Local, "gelu(Conv1D k 9, wide dilation)", format!("wide-conv-block{k}"), &wide);
    let local1 = blk.local_norm1.forward(&((add_over_length(&local, &from_global)? + narrow)? + wide)?)?;
    record(Track::Local, "LN(S + four summands)", format!("seq-merge1-norm-block{k}"), &local1);
    let dense = gelu_erf(&linear(&blk.local_dense, &local1)?)?;
    record(Track::Local, "gelu(Dense(S))", format!("seq-dense-block{k}"), &dense);
    let local2 = blk.local_norm2.forward(&(&local1 + dense)?)?;
    record(Track::Local, "LN(S + dense): block's local output", format!("seq-merge2-norm-block{k}"), &local2);
    let gdense = gelu_erf(&linear(&blk.global_dense1, &global)?)?;
    record(Track::Global, "gelu(Dense(G))", format!("global-dense1-block{k}"), &gdense);
    let (attended, weights) = blk.attention.forward(&global, &local2, None)?;
    record(Track::Global, "attention weights, softmax over L per head", format!("global-attention-block{k}"), &weights);
    record(Track::Global, "attention output, heads concatenated", format!("global-attention-block{k}"), &attended);
    let global1 = blk.global_norm1.forward(&((&global + gdense)? + attended)?)?;
    record(Track::Global, "LN(G + dense + attention)", format!("global-merge1-norm-block{k}"), &global1);
    let gdense2 = gelu_erf(&linear(&blk.global_dense2, &global1)?)?;
    record(Track::Global, "gelu(Dense(G))", format!("global-dense2-block{k}"), &gdense2);
    let global2 = blk.global_norm2.forward(&(&global1 + gdense2)?)?;
    record(Track::Global, "LN(G + dense): block's global output", format!("global-merge2-norm-block{k}"), &global2);
    // The softmax axis of the weights is the sequence: a check that no step mixed up the axes.
    debug_assert_eq!(weights.dim(D::Minus1).ok(), tokens.dim(1).ok());
    Ok(BlockTrace { steps, local: local2, global: global2 })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};

    use super::*;
    use crate::models::init::SeededVarMap;
    use crate::models::proteinbert::Forward;

    #[test]
    fn parts_sum_to_the_released_count() {
        let c = Config::default();
        let layers = layer_parameters(&c);
        assert_eq!(layers.iter().map(|l| l.parameters).sum::<usize>(), c.num_parameters());
        let parts = parameters_by_part(&c);
        assert_eq!(parts.iter().map(|p| p.parameters).sum::<usize>(), 15_981_321);
        // The spec's per-part numbers (§2.2).
        let get = |part: Part, block: Option<usize>| {
            parts.iter().find(|p| p.part == part && p.block == block).map(|p| p.parameters).unwrap()
        };
        assert_eq!(get(Part::Embedding, None), 3_328);
        assert_eq!(get(Part::GlobalInput, None), 4_579_328);
        assert_eq!(get(Part::Local, Some(0)), 65_664 + 2 * 147_584 + 2 * 256 + 16_512);
        assert_eq!(get(Part::Attention, Some(5)), 229_376);
        assert_eq!(get(Part::Global, Some(2)), 2 * 262_656 + 2 * 1_024);
        assert_eq!(get(Part::TokenHead, None), 3_354);
        assert_eq!(get(Part::AnnotationHead, None), 4_587_759);
        assert_eq!(parts.len(), 4 + 3 * c.n_blocks);
        let block: usize = parts.iter().filter(|p| p.block == Some(1)).map(|p| p.parameters).sum();
        assert_eq!(block, 1_134_592);
        assert_eq!(parts[2].label(), "block 1 local track");
        for c in [Config::tiny(37), Config::demo(100)] {
            assert_eq!(parameters_by_part(&c).iter().map(|p| p.parameters).sum::<usize>(), c.num_parameters());
        }
    }

    #[test]
    fn layer_counts_match_the_variables_the_network_creates() {
        let c = Config { n_blocks: 3, ..Config::tiny(11) };
        let map = SeededVarMap::new(0);
        ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &c).unwrap();
        let mut created: HashMap<String, usize> = HashMap::new();
        for (name, var) in map.named_vars() {
            let layer = name.rsplit_once('.').map_or(name.as_str(), |(l, _)| l).to_string();
            *created.entry(layer).or_default() += var.as_tensor().elem_count();
        }
        let counted: HashMap<String, usize> =
            layer_parameters(&c).into_iter().map(|l| (l.name, l.parameters)).collect();
        assert_eq!(counted, created);
    }

    #[test]
    fn traced_block_matches_the_forward_pass() {
        let c = Config::tiny(7);
        let map = SeededVarMap::new(3);
        let model = ProteinBert::load(map.var_builder(DType::F32, &Device::Cpu), &c).unwrap();
        let tokens = Tensor::new(
            &[[23u32, 0, 5, 9, 12, 24, 25, 25, 25, 25], [23, 3, 3, 24, 25, 25, 25, 25, 25, 25]],
            &Device::Cpu,
        )
        .unwrap();
        let annotations = Tensor::zeros((2, 7), DType::F32, &Device::Cpu).unwrap();
        let out = model.forward(&tokens, &annotations, Forward::default()).unwrap();
        for block in 0..c.n_blocks {
            let trace = track_shapes(&model, &tokens, &annotations, block).unwrap();
            let diff = |a: &Tensor, b: &Tensor| {
                a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
            };
            assert_eq!(diff(&trace.local, &out.local_states[2 * block + 1]), 0.0);
            assert_eq!(diff(&trace.global, &out.global_states[2 * block + 2]), 0.0);
            let shape = |step: &str| trace.steps.iter().find(|s| s.step.starts_with(step)).unwrap().shape.clone();
            assert_eq!(shape("S (block"), vec![2, 10, c.d_local]);
            assert_eq!(shape("gelu(Dense(G)), broadcast"), vec![2, c.d_local]);
            assert_eq!(shape("attention weights"), vec![2, c.n_heads, 10]);
            assert_eq!(shape("attention output"), vec![2, c.d_global]);
            assert_eq!(trace.steps.len(), 14);
        }
        let err = track_shapes(&model, &tokens, &annotations, c.n_blocks).unwrap_err().to_string();
        assert!(err.contains("block 2 does not exist"), "{err}");
        let bad = Tensor::zeros((2, 6), DType::F32, &Device::Cpu).unwrap();
        assert!(track_shapes(&model, &tokens, &bad, 0).unwrap_err().to_string().contains("annotations must be (2, 7)"));
    }
}
