//! One small training loop for any [`Classifier`]: shuffled minibatches, cross-entropy, torch
//! AdamW, valid accuracy after every epoch, early stopping, the best epoch's weights back at the
//! end.
//!
//! ```text
//! for epoch in 1..=epochs:
//!     for batch in shuffle(train):  loss = CE(model(x, train), y); AdamW step
//!     valid accuracy → best? keep a copy of the weights : patience runs down
//! restore the best copy
//! ```
//!
//! Randomness: the batch order comes from `Rng::new(seed)`, dropout from its fork, and the initial
//! weights from the `SeededVarMap`'s own seed, so the same seeds give the same bits.
//!
//! ```
//! use candle_core::{DType, Device};
//! use protein_lm::models::baselines::cnn::{SimpleCnn, SimpleCnnConfig};
//! use protein_lm::models::baselines::fit::{accuracy, fit, FitOptions, Inputs};
//! use protein_lm::models::init::SeededVarMap;
//! // Two families told apart by their residues.
//! let sequences: Vec<String> = (0..16).map(|i| if i % 2 == 0 { "KKKKRRKK" } else { "DDEEDDEE" }.to_string()).collect();
//! let labels: Vec<usize> = (0..16).map(|i| i % 2).collect();
//! let inputs = Inputs::Sequences { sequences, max_len: 8 };
//! let vars = SeededVarMap::new(0);
//! let config = SimpleCnnConfig { channels: 8, kernel_size: 3, layers: 1, dropout: 0.0, ..SimpleCnnConfig::new(2) };
//! let cnn = SimpleCnn::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?;
//! let options = FitOptions { epochs: 20, batch_size: 8, lr: 1e-2, ..FitOptions::default() };
//! let report = fit(&cnn, &vars, (&inputs, &labels), None, &options)?;
//! assert_eq!(report.epochs.len(), 20);
//! assert_eq!(accuracy(&cnn, &inputs, &labels, 16, &Device::Cpu)?, 1.0);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use ndarray::Array2;
use serde::Serialize;

use super::{one_hot_batch, Classifier};
use crate::models::init::SeededVarMap;
use crate::models::loss::{cross_entropy, Reduction};
use crate::train::optim::{Adam, Optimizer, Param};
use crate::{Error, Result, Rng};

/// Dropout's stream, apart from the shuffling one: "DROP".
const DROPOUT_STREAM: u64 = 0x44_52_4f_50;

/// What a model reads.
///
/// ```
/// use candle_core::Device;
/// use protein_lm::models::baselines::fit::Inputs;
/// use protein_lm::ndarray::array;
/// let dense = Inputs::Dense(array![[0.1f32, 0.2], [0.3, 0.4], [0.5, 0.6]]);
/// assert_eq!(dense.batch(&[2, 0], &Device::Cpu)?.to_vec2::<f32>()?, [[0.5, 0.6], [0.1, 0.2]]);
/// // Sequences are one-hot encoded a minibatch at a time: (B, 21, max_len).
/// let sequences = Inputs::Sequences { sequences: vec!["MKV".into(), "ACDEFG".into()], max_len: 5 };
/// assert_eq!(sequences.batch(&[1], &Device::Cpu)?.dims(), [1, 21, 5]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub enum Inputs {
    /// One feature row per example (the MLP).
    Dense(Array2<f32>),
    /// Protein sequences, one-hot encoded per minibatch at `max_len` (the CNNs).
    Sequences { sequences: Vec<String>, max_len: usize },
}

impl Inputs {
    pub fn len(&self) -> usize {
        match self {
            Inputs::Dense(x) => x.nrows(),
            Inputs::Sequences { sequences, .. } => sequences.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The model input for the examples `rows`, in that order.
    pub fn batch(&self, rows: &[usize], device: &Device) -> Result<Tensor> {
        match self {
            Inputs::Dense(x) => {
                let width = x.ncols();
                let mut values: Vec<f32> = Vec::with_capacity(rows.len() * width);
                for &r in rows {
                    values.extend(x.row(r).iter());
                }
                Ok(Tensor::from_vec(values, (rows.len(), width), device)?)
            }
            Inputs::Sequences { sequences, max_len } => {
                let picked: Vec<&str> = rows.iter().map(|&r| sequences[r].as_str()).collect();
                one_hot_batch(&picked, *max_len, device)
            }
        }
    }
}

/// Settings of [`fit`].
///
/// ```
/// use protein_lm::models::baselines::fit::FitOptions;
/// // Early stopping needs a valid set: stop after 5 epochs without a better valid accuracy.
/// let options = FitOptions { epochs: 100, lr: 3e-3, patience: Some(5), ..FitOptions::default() };
/// assert_eq!((options.batch_size, options.weight_decay), (32, 0.0));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// torch AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Batch order and dropout (the initial weights come from the `SeededVarMap`'s seed).
    pub seed: u64,
    /// Stop after this many epochs without a better valid accuracy (needs a valid set).
    pub patience: Option<usize>,
    pub progress: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self { epochs: 10, batch_size: 32, lr: 1e-3, weight_decay: 0.0, seed: 0, patience: None, progress: false }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochRecord {
    /// From 1.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training examples (with dropout, as trained).
    pub train_loss: f64,
    pub valid_accuracy: Option<f64>,
    pub seconds: f64,
}

/// What [`fit`] did, epoch by epoch.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::baselines::fit::{fit, FitOptions, Inputs};
/// use protein_lm::models::baselines::mlp::{Mlp, MlpConfig};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::ndarray::Array2;
/// let x = Array2::from_shape_fn((20, 1), |(i, _)| if i < 10 { -5.0 - i as f32 } else { i as f32 - 5.0 });
/// let y: Vec<usize> = (0..20).map(|i| usize::from(i >= 10)).collect();
/// let inputs = Inputs::Dense(x);
/// let vars = SeededVarMap::new(0);
/// let config = MlpConfig { input_width: 1, hidden: vec![], dropout: 0.0, n_classes: 2 };
/// let mlp = Mlp::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?;
/// let options = FitOptions { epochs: 40, batch_size: 5, lr: 0.05, patience: Some(3), ..FitOptions::default() };
/// let report = fit(&mlp, &vars, (&inputs, &y), Some((&inputs, &y)), &options)?;
/// // Patience may stop it early; the model holds the best epoch's weights.
/// let best = &report.epochs[report.best_epoch - 1];
/// assert!(report.epochs.iter().all(|e| e.valid_accuracy <= best.valid_accuracy));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitReport {
    pub epochs: Vec<EpochRecord>,
    /// The epoch whose weights the model holds at the end: the first with the highest valid
    /// accuracy, or the last epoch without a valid set.
    pub best_epoch: usize,
    pub seconds: f64,
}

/// Checks inputs against labels before any work, naming the first offending row.
fn check(name: &str, inputs: &Inputs, labels: &[usize], n_classes: usize) -> Result<()> {
    if inputs.len() != labels.len() {
        return Err(Error::invalid(format!("{name}: {} inputs but {} labels", inputs.len(), labels.len())));
    }
    if let Some((row, label)) = labels.iter().enumerate().find(|(_, &l)| l >= n_classes) {
        return Err(Error::invalid(format!("{name} row {row}: label {label} but the model has {n_classes} classes")));
    }
    match inputs {
        Inputs::Dense(x) => {
            if let Some((row, _)) = x.rows().into_iter().enumerate().find(|(_, r)| r.iter().any(|v| !v.is_finite())) {
                return Err(Error::invalid(format!("{name} row {row}: a feature is not finite")));
            }
        }
        Inputs::Sequences { max_len, .. } if *max_len == 0 => {
            return Err(Error::invalid(format!("{name}: max_len must be positive")));
        }
        Inputs::Sequences { .. } => {}
    }
    Ok(())
}

/// The device the model's parameters live on.
fn device_of(vars: &SeededVarMap) -> Result<Device> {
    vars.vars()
        .first()
        .map(|v| v.device().clone())
        .ok_or_else(|| Error::invalid("the model has no parameters: build it from this SeededVarMap first"))
}

/// Trains `model` (whose parameters are the variables of `vars`) and returns what each epoch did.
/// With a valid set the weights of the best valid accuracy are restored at the end.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::baselines::fit::{accuracy, fit, FitOptions, Inputs};
/// use protein_lm::models::baselines::mlp::{Mlp, MlpConfig};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::ndarray::Array2;
/// // Class 1 where the feature is positive: logistic regression (no hidden layer) learns it.
/// let x = Array2::from_shape_fn((20, 1), |(i, _)| if i < 10 { -5.0 - i as f32 } else { i as f32 - 5.0 });
/// let y: Vec<usize> = (0..20).map(|i| usize::from(i >= 10)).collect();
/// let inputs = Inputs::Dense(x);
/// let vars = SeededVarMap::new(0);
/// let config = MlpConfig { input_width: 1, hidden: vec![], dropout: 0.0, n_classes: 2 };
/// let model = Mlp::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?;
/// let options = FitOptions { epochs: 30, batch_size: 5, lr: 0.05, ..FitOptions::default() };
/// fit(&model, &vars, (&inputs, &y), None, &options)?;
/// assert_eq!(accuracy(&model, &inputs, &y, 32, &Device::Cpu)?, 1.0);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn fit<M: Classifier + ?Sized>(
    model: &M,
    vars: &SeededVarMap,
    train: (&Inputs, &[usize]),
    valid: Option<(&Inputs, &[usize])>,
    options: &FitOptions,
) -> Result<FitReport> {
    crate::device::flush_denormals_to_zero();
    let started = Instant::now();
    let n_classes = model.n_classes();
    check("train", train.0, train.1, n_classes)?;
    if train.0.is_empty() {
        return Err(Error::invalid("train: no examples"));
    }
    if let Some((inputs, labels)) = valid {
        check("valid", inputs, labels, n_classes)?;
        if inputs.is_empty() {
            return Err(Error::invalid("valid: no examples (pass None for no validation)"));
        }
    }
    if options.batch_size == 0 || options.epochs == 0 {
        return Err(Error::invalid(format!("batch_size and epochs must be positive, got {options:?}")));
    }
    if options.patience.is_some() && valid.is_none() {
        return Err(Error::invalid("early stopping (patience) needs a valid set"));
    }
    let device = device_of(vars)?;
    let params: Vec<Param> = vars.named_vars();
    let mut optimizer = Adam::adamw(options.weight_decay);
    let mut order_rng = Rng::new(options.seed);
    let mut dropout_rng = order_rng.fork(DROPOUT_STREAM);

    let n = train.0.len();
    let batches = n.div_ceil(options.batch_size);
    let bar = progress_bar(options, batches)?;
    let mut records = Vec::new();
    let mut best: Option<(usize, f64, Vec<Tensor>)> = None;
    for epoch in 1..=options.epochs {
        let epoch_start = Instant::now();
        let order = order_rng.permutation(n);
        let mut loss_sum = 0.0;
        for rows in order.chunks(options.batch_size) {
            let x = train.0.batch(rows, &device)?;
            let y: Vec<u32> = rows.iter().map(|&r| train.1[r] as u32).collect();
            let y = Tensor::from_vec(y, rows.len(), &device)?;
            let logits = model.logits(&x, true, Some(&mut dropout_rng))?;
            let loss = cross_entropy(&logits, &y, None, None, Reduction::WeightedMean)?;
            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(Error::invalid(format!("epoch {epoch}: the training loss is {value}")));
            }
            optimizer.step(&params, &loss.backward()?, options.lr)?;
            loss_sum += value * rows.len() as f64;
            bar.inc(1);
            bar.set_message(format!("epoch {epoch} loss {value:.4}"));
        }
        let valid_accuracy = match valid {
            Some((inputs, labels)) => Some(accuracy(model, inputs, labels, options.batch_size, &device)?),
            None => None,
        };
        records.push(EpochRecord {
            epoch,
            train_loss: loss_sum / n as f64,
            valid_accuracy,
            seconds: epoch_start.elapsed().as_secs_f64(),
        });
        if let Some(acc) = valid_accuracy {
            if best.as_ref().is_none_or(|(_, best_acc, _)| acc > *best_acc) {
                // A deep copy: `as_tensor()` shares storage the optimiser overwrites in place.
                let weights = params.iter().map(|(_, v)| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?;
                best = Some((epoch, acc, weights));
            }
            let best_epoch = best.as_ref().map_or(epoch, |b| b.0);
            if options.patience.is_some_and(|p| epoch - best_epoch >= p) {
                break;
            }
        }
    }
    bar.finish_and_clear();
    let best_epoch = match best {
        Some((epoch, _, weights)) => {
            for ((_, var), weight) in params.iter().zip(weights) {
                var.set(&weight)?;
            }
            epoch
        }
        None => records.len(),
    };
    Ok(FitReport { epochs: records, best_epoch, seconds: started.elapsed().as_secs_f64() })
}

fn progress_bar(options: &FitOptions, batches: usize) -> Result<indicatif::ProgressBar> {
    if !options.progress {
        return Ok(indicatif::ProgressBar::hidden());
    }
    let bar = indicatif::ProgressBar::new((options.epochs * batches) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:<28} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})")
            .map_err(|e| Error::invalid(format!("progress bar template: {e}")))?,
    );
    Ok(bar)
}

/// Softmax probabilities `(N, n_classes)`, rows in input order, without dropout.
pub fn predict_proba<M: Classifier + ?Sized>(
    model: &M,
    inputs: &Inputs,
    batch_size: usize,
    device: &Device,
) -> Result<Array2<f64>> {
    if batch_size == 0 {
        return Err(Error::invalid("predict_proba: batch_size must be positive"));
    }
    let classes = model.n_classes();
    let mut values = Vec::with_capacity(inputs.len() * classes);
    let rows: Vec<usize> = (0..inputs.len()).collect();
    for chunk in rows.chunks(batch_size) {
        let logits = model.logits(&inputs.batch(chunk, device)?, false, None)?.to_dtype(DType::F64)?;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?;
        values.extend(probs.flatten_all()?.to_vec1::<f64>()?);
    }
    Array2::from_shape_vec((inputs.len(), classes), values)
        .map_err(|e| Error::invalid(format!("predict_proba: the model gave logits of the wrong width: {e}")))
}

/// Index of the largest probability in each row (the first on ties).
pub fn predict<M: Classifier + ?Sized>(
    model: &M,
    inputs: &Inputs,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<usize>> {
    let probs = predict_proba(model, inputs, batch_size, device)?;
    Ok(probs
        .rows()
        .into_iter()
        .map(|row| row.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &p)| if p > b.1 { (i, p) } else { b }).0)
        .collect())
}

/// Fraction of `labels` the model predicts.
///
/// ```
/// use candle_core::{DType, Device};
/// use protein_lm::models::baselines::fit::{accuracy, Inputs};
/// use protein_lm::models::baselines::mlp::{Mlp, MlpConfig};
/// use protein_lm::models::init::SeededVarMap;
/// use protein_lm::ndarray::array;
/// let vars = SeededVarMap::new(0);
/// let config = MlpConfig { input_width: 2, hidden: vec![4], dropout: 0.0, n_classes: 3 };
/// let model = Mlp::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?;
/// let inputs = Inputs::Dense(array![[0.0f32, 1.0], [1.0, 0.0]]);
/// // Untrained, but already a fraction: the share of rows whose arg-max logit is the label.
/// let a = accuracy(&model, &inputs, &[0, 2], 1, &Device::Cpu)?;
/// assert!([0.0, 0.5, 1.0].contains(&a));
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn accuracy<M: Classifier + ?Sized>(
    model: &M,
    inputs: &Inputs,
    labels: &[usize],
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    if inputs.len() != labels.len() || labels.is_empty() {
        return Err(Error::invalid(format!("accuracy: {} inputs and {} labels", inputs.len(), labels.len())));
    }
    let predicted = predict(model, inputs, batch_size, device)?;
    Ok(predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64)
}
