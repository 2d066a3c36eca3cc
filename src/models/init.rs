//! Seeded parameter initialisation behind candle's `VarBuilder` API.
//!
//! candle's `VarMap` creates variables with `Var::randn`/`Var::rand`, which draw from the thread RNG
//! (the CPU `set_seed` seeds nothing), so two runs with the same seed would start from different
//! weights. [`SeededVarMap`] is a drop-in backend for `VarBuilder` that draws every missing variable
//! from [`crate::Rng`] instead. Each variable gets its own stream, forked from the map's seed by a
//! hash of its full name, so its initial values depend only on (seed, name, shape, init) and not on
//! the order in which a model happens to create its layers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::{Error, Result, Rng};

/// Keras' default kernel initialiser (`glorot_uniform`, used by ProteinBERT's Dense and Conv1D):
/// U(−a, a) with a = √(6 / (fan_in + fan_out)). For a conv kernel both fans include the kernel
/// width (Keras: `k·C_in` and `k·C_out`).
pub fn glorot_uniform(fan_in: usize, fan_out: usize) -> Init {
    let bound = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// BERT/fairseq initialisation of Linear and Embedding weights: N(0, 0.02²).
pub const BERT_NORMAL: Init = Init::Randn { mean: 0.0, stdev: 0.02 };

/// Stable 64-bit FNV-1a, so a variable's stream does not change with Rust's `Hash` implementation.
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Draws `shape.elem_count()` values for `init` from `rng`, in f64 so every dtype rounds the same draw.
fn draw(init: Init, shape: &Shape, rng: &mut Rng) -> Vec<f64> {
    let n = shape.elem_count();
    let uniform =
        |rng: &mut Rng, lo: f64, up: f64| -> Vec<f64> { (0..n).map(|_| lo + (up - lo) * rng.uniform()).collect() };
    let normal =
        |rng: &mut Rng, mean: f64, std: f64| -> Vec<f64> { (0..n).map(|_| mean + std * rng.normal()).collect() };
    match init {
        Init::Const(c) => vec![c; n],
        Init::Uniform { lo, up } => uniform(rng, lo, up),
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Kaiming { dist, fan, non_linearity } => {
            let fan = match fan {
                FanInOut::FanIn => FanInOut::FanIn.for_shape(shape),
                FanInOut::FanOut => FanInOut::FanOut.for_shape(shape),
            };
            let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(rng, -bound, bound)
                }
                NormalOrUniform::Normal => normal(rng, 0.0, std),
            }
        }
    }
}

/// A `VarBuilder` backend that creates missing variables from the crate's seeded [`Rng`] and keeps
/// them, so an optimiser can train them and a checkpoint can save them. Cloning shares the storage.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::init::SeededVarMap;
/// let layer = |seed| -> protein_lm::Result<(SeededVarMap, candle_nn::Linear)> {
///     let map = SeededVarMap::new(seed);
///     let linear = candle_nn::linear(4, 2, map.var_builder(DType::F32, &Device::Cpu).pp("out"))?;
///     Ok((map, linear))
/// };
/// let ((map, a), (_, b)) = (layer(7)?, layer(7)?);
/// // Created from the seed, not from candle's unseeded generator: the same seed, the same weights.
/// assert_eq!(a.weight().to_vec2::<f32>()?, b.weight().to_vec2::<f32>()?);
/// // The variables stay in the map, for an optimiser to train and a checkpoint to save.
/// assert_eq!((map.len(), map.num_parameters()), (2, 4 * 2 + 2));
/// assert!(map.get_var("out.weight").is_some());
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Clone)]
pub struct SeededVarMap {
    seed: u64,
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
}

impl std::fmt::Debug for SeededVarMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededVarMap").field("seed", &self.seed).field("vars", &self.lock().len()).finish()
    }
}

impl SeededVarMap {
    pub fn new(seed: u64) -> Self {
        Self { seed, vars: Arc::new(Mutex::new(BTreeMap::new())) }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    // A panic while holding the lock cannot leave the map half-written (every insert is one call),
    // so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Var>> {
        self.vars.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A `VarBuilder` whose `get`/`get_with_hints` create (or reuse) variables in this map.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// All variables, sorted by name, so optimiser state lines up across runs.
    pub fn vars(&self) -> Vec<Var> {
        self.lock().values().cloned().collect()
    }

    /// (name, variable) pairs, sorted by name.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        self.lock().iter().map(|(name, var)| (name.clone(), var.clone())).collect()
    }

    pub fn get_var(&self, name: &str) -> Option<Var> {
        self.lock().get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.lock().values().map(|v| v.elem_count()).sum()
    }

    /// Writes every variable to a safetensors file under its full name.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tensors: HashMap<String, Tensor> =
            self.lock().iter().map(|(name, var)| (name.clone(), var.as_tensor().clone())).collect();
        crate::models::directory::save_tensors(path, &tensors)
    }

    /// Reads a safetensors file: variables already in the map take the stored values (the shapes
    /// must match, and every existing variable must be in the file, since a partial restore is
    /// almost always a naming bug); tensors not yet in the map are added, so a model built after
    /// `load` picks them up instead of drawing fresh values.
    pub fn load(&self, path: impl AsRef<Path>, device: &Device) -> Result<()> {
        let path = path.as_ref();
        let stored = candle_core::safetensors::load(path, device)?;
        let mut vars = self.lock();
        let missing: Vec<&str> = vars.keys().filter(|name| !stored.contains_key(*name)).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "{}: no tensor for variable(s) {}",
                path.display(),
                missing.join(", ")
            )));
        }
        for (name, tensor) in stored {
            match vars.get(&name) {
                Some(var) => {
                    if var.shape() != tensor.shape() {
                        return Err(Error::invalid(format!(
                            "{}: `{name}` has shape {:?} in the file but {:?} in the model",
                            path.display(),
                            tensor.dims(),
                            var.dims()
                        )));
                    }
                    var.set(&tensor.to_dtype(var.dtype())?)?;
                }
                None => {
                    vars.insert(name, Var::from_tensor(&tensor)?);
                }
            }
        }
        Ok(())
    }

    fn get_or_create(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut vars = self.lock();
        if let Some(var) = vars.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "variable `{name}` exists with shape {:?}, requested {:?}",
                    var.dims(),
                    shape.dims()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let mut rng = Rng::new(self.seed).fork(fnv1a(name));
        let values = draw(init, &shape, &mut rng);
        let tensor = Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&tensor)?;
        vars.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.get_or_create(s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        match self.lock().get(name) {
            Some(var) => var.as_tensor().to_dtype(dtype),
            None => candle_core::bail!("no variable `{name}` in SeededVarMap"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{Module, Optimizer};

    fn build_params(seed: u64) -> Result<Vec<(String, Vec<f32>)>> {
        let map = SeededVarMap::new(seed);
        let vb = map.var_builder(DType::F32, &Device::Cpu);
        candle_nn::linear(6, 4, vb.pp("a"))?;
        vb.pp("b").get_with_hints((3, 5), "w", glorot_uniform(5, 3))?;
        vb.pp("c").get_with_hints(7, "e", BERT_NORMAL)?;
        map.named_vars()
            .into_iter()
            .map(|(name, var)| Ok((name, var.as_tensor().flatten_all()?.to_vec1::<f32>()?)))
            .collect()
    }

    #[test]
    fn same_seed_gives_bitwise_equal_parameters_and_different_seeds_differ() -> Result<()> {
        let a = build_params(11)?;
        let b = build_params(11)?;
        let c = build_params(12)?;
        let bits = |p: &[(String, Vec<f32>)]| -> Vec<(String, Vec<u32>)> {
            p.iter().map(|(n, v)| (n.clone(), v.iter().map(|x| x.to_bits()).collect())).collect()
        };
        assert_eq!(bits(&a), bits(&b));
        let names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.bias", "a.weight", "b.w", "c.e"]);
        for ((name, x), (_, y)) in a.iter().zip(&c) {
            assert_ne!(x, y, "{name} did not change with the seed");
        }
        Ok(())
    }

    #[test]
    fn values_do_not_depend_on_creation_order() -> Result<()> {
        let first = SeededVarMap::new(3);
        let vb = first.var_builder(DType::F32, &Device::Cpu);
        let x1 = vb.get_with_hints(10, "x", BERT_NORMAL)?;
        vb.get_with_hints(10, "y", BERT_NORMAL)?;
        let second = SeededVarMap::new(3);
        let vb = second.var_builder(DType::F32, &Device::Cpu);
        vb.get_with_hints(10, "y", BERT_NORMAL)?;
        let x2 = vb.get_with_hints(10, "x", BERT_NORMAL)?;
        assert_eq!(x1.to_vec1::<f32>()?, x2.to_vec1::<f32>()?);
        Ok(())
    }

    #[test]
    fn init_hints_give_the_requested_distributions() -> Result<()> {
        let map = SeededVarMap::new(5);
        let vb = map.var_builder(DType::F64, &Device::Cpu);
        let n = 40_000;
        let normal = vb.get_with_hints(n, "n", BERT_NORMAL)?.to_vec1::<f64>()?;
        let mean = normal.iter().sum::<f64>() / n as f64;
        let std = (normal.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!(mean.abs() < 5e-4 && (std - 0.02).abs() < 5e-4, "{mean} {std}");
        let (fan_in, fan_out) = (9 * 128, 9 * 128);
        let glorot = vb.get_with_hints(n, "g", glorot_uniform(fan_in, fan_out))?.to_vec1::<f64>()?;
        let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
        assert!(glorot.iter().all(|x| x.abs() <= bound));
        let max = glorot.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(max > 0.99 * bound, "{max} {bound}");
        let ones = vb.get_with_hints(3, "o", Init::Const(1.5))?.to_vec1::<f64>()?;
        assert_eq!(ones, [1.5, 1.5, 1.5]);
        Ok(())
    }

    #[test]
    fn existing_variable_is_reused_and_wrong_shape_is_an_error() -> Result<()> {
        let map = SeededVarMap::new(1);
        let vb = map.var_builder(DType::F32, &Device::Cpu);
        let a = vb.get_with_hints((2, 3), "w", BERT_NORMAL)?;
        let b = vb.get_with_hints((2, 3), "w", Init::Const(0.0))?;
        assert_eq!(a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
        assert!(vb.get_with_hints((3, 2), "w", BERT_NORMAL).is_err());
        assert_eq!(map.len(), 1);
        assert_eq!(map.num_parameters(), 6);
        Ok(())
    }

    #[test]
    fn linear_built_through_the_map_trains() -> Result<()> {
        let device = Device::Cpu;
        let map = SeededVarMap::new(9);
        let layer = candle_nn::linear(3, 1, map.var_builder(DType::F32, &device))?;
        let xs = Tensor::new(&[[1f32, 2., 3.], [-1., 0.5, 2.], [0., -2., 1.]], &device)?;
        let ys = Tensor::new(&[[1f32], [-2.], [0.5]], &device)?;
        let loss_of =
            |layer: &candle_nn::Linear| -> Result<Tensor> { Ok(layer.forward(&xs)?.sub(&ys)?.sqr()?.mean_all()?) };
        let start = loss_of(&layer)?.to_scalar::<f32>()?;
        let mut sgd = candle_nn::SGD::new(map.vars(), 0.05)?;
        for _ in 0..200 {
            sgd.backward_step(&loss_of(&layer)?)?;
        }
        let end = loss_of(&layer)?.to_scalar::<f32>()?;
        assert!(end < 1e-3 * start.max(1.0), "{start} -> {end}");
        Ok(())
    }

    #[test]
    fn save_and_load_round_trip_bit_exact() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("params.safetensors");
        let source = SeededVarMap::new(21);
        let vb = source.var_builder(DType::F32, &Device::Cpu);
        let original = vb.get_with_hints((4, 4), "layer.weight", BERT_NORMAL)?;
        source.save(&path)?;

        // Loading into an empty map, then building: the model sees the stored values.
        let fresh = SeededVarMap::new(999);
        fresh.load(&path, &Device::Cpu)?;
        let vb = fresh.var_builder(DType::F32, &Device::Cpu);
        let restored = vb.get_with_hints((4, 4), "layer.weight", BERT_NORMAL)?;
        assert_eq!(original.to_vec2::<f32>()?, restored.to_vec2::<f32>()?);

        // Loading into a built map overwrites in place (so optimisers holding the Var see it).
        let built = SeededVarMap::new(5);
        let vb = built.var_builder(DType::F32, &Device::Cpu);
        let handle = vb.get_with_hints((4, 4), "layer.weight", BERT_NORMAL)?;
        built.load(&path, &Device::Cpu)?;
        assert_eq!(original.to_vec2::<f32>()?, handle.to_vec2::<f32>()?);

        let other = SeededVarMap::new(5);
        other.var_builder(DType::F32, &Device::Cpu).get_with_hints(3, "not.in.file", BERT_NORMAL)?;
        assert!(other.load(&path, &Device::Cpu).is_err());
        Ok(())
    }
}
