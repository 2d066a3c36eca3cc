//! The one supervised [`Task`]: any [`Trunk`] under any [`Head`].
//!
//! Every fine-tuning of the crate trains through [`HeadTask`] — ProteinBERT's benchmark and pair
//! stages, PRoBERTa's families, benchmarks and pairs — and so does a head a user writes (see
//! [`finetune_head`](super::finetune_head)). The task reads the head's [`Level`] and
//! [`Target`], lays the labels out for them, and takes the loss from [`Head::loss`]; what differs
//! between the models is only how an example becomes token ids ([`Encoded`]) and how a batch is
//! padded ([`Padding`]).

use std::io::Write;

use candle_core::{DType, Device, Tensor};

use crate::models::heads::{Features, Head, HeadInput, Level, Target};
use crate::models::Trunk;
use crate::train::objectives::supervised::{batch_targets, BatchTargets, Predictions, TargetValue};
use crate::train::trainer::{EpochOrder, Metrics, Task, TaskLoss};
use crate::{Error, Result, Rng};

/// One example as its trunk reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Accession (or benchmark `split:line`), or `A<TAB>B` for a pair.
    pub name: String,
    /// Token ids with the model's special tokens, unpadded.
    pub ids: Vec<u32>,
    /// The second protein of a pair whose proteins go through the trunk separately (the head gets
    /// [`HeadInput::Two`]); `None` for one protein, or a pair packed into `ids`.
    pub partner: Option<Vec<u32>>,
    pub target: TargetValue,
}

/// How the rows of a batch are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// To the batch's longest row (PRoBERTa: its outputs do not depend on padding).
    Longest,
    /// Every row to this length (ProteinBERT: the reference pads to the stage's `seq_len`, and its
    /// global attention sees the padding).
    Fixed(usize),
}

/// How batches are built: the padding, and the token that pads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub padding: Padding,
    pub pad_id: u32,
}

impl Batching {
    /// Token ids `(B, L)` of `items`, or `(2B, L)` for separately encoded pairs (first proteins,
    /// then second ones); and the real-token count.
    pub fn ids(&self, items: &[&Encoded], device: &Device) -> Result<(Tensor, usize)> {
        let pairs = items.first().is_some_and(|e| e.partner.is_some());
        if items.iter().any(|e| e.partner.is_some() != pairs) {
            return Err(Error::invalid("a batch mixes pairs and single proteins"));
        }
        let rows: Vec<&[u32]> =
            items.iter().map(|e| e.ids.as_slice()).chain(items.iter().filter_map(|e| e.partner.as_deref())).collect();
        let longest = rows.iter().map(|r| r.len()).max().unwrap_or(1);
        let len = match self.padding {
            Padding::Longest => longest,
            Padding::Fixed(len) if longest <= len => len,
            Padding::Fixed(len) => {
                let e = items.iter().find(|e| e.ids.len().max(e.partner.as_ref().map_or(0, Vec::len)) > len);
                return Err(Error::invalid(format!(
                    "example `{}` has {longest} tokens, more than the padded length {len}",
                    e.map_or("?", |e| e.name.as_str())
                )));
            }
        };
        let mut ids = vec![self.pad_id; rows.len() * len];
        for (r, row) in rows.iter().enumerate() {
            ids[r * len..r * len + row.len()].copy_from_slice(row);
        }
        let tokens = rows.iter().map(|r| r.len()).sum();
        Ok((Tensor::from_vec(ids, (rows.len(), len), device)?, tokens))
    }
}

/// Splits the features of a `(2B, L)` pair batch into the first and second proteins.
fn halves(f: &Features) -> Result<(Features, Features)> {
    let n = f.residues.dim(0)? / 2;
    let half = |start: usize| -> Result<Features> {
        Ok(Features {
            residues: f.residues.narrow(0, start, n)?,
            mask: f.mask.narrow(0, start, n)?,
            protein: f.protein.narrow(0, start, n)?,
        })
    };
    Ok((half(0)?, half(n)?))
}

/// Logits of `items` and their targets laid out for the head. `rng` = `Some` trains (dropout on);
/// the trunk gets it only when `trunk_trains`.
pub fn head_logits<T: Trunk + ?Sized, H: Head + ?Sized>(
    trunk: &T,
    head: &H,
    items: &[&Encoded],
    batching: Batching,
    trunk_trains: bool,
    device: &Device,
    mut rng: Option<&mut Rng>,
) -> Result<(Tensor, BatchTargets, usize)> {
    let (ids, tokens) = batching.ids(items, device)?;
    let features = trunk.features(&ids, if trunk_trains { rng.as_deref_mut() } else { None })?;
    let logits = if items.first().is_some_and(|e| e.partner.is_some()) {
        let (a, b) = halves(&features)?;
        head.forward(HeadInput::Two(&a, &b), rng)?
    } else {
        head.forward(HeadInput::One(&features), rng)?
    };
    let labels: Vec<&TargetValue> = items.iter().map(|e| &e.target).collect();
    // Residue j sits at position j + 1, after START / <s>.
    let targets = batch_targets(&labels, head.target(), ids.dim(1)?, 1, device)?;
    Ok((logits, targets, tokens))
}

/// Predictions of `head` over `examples` in evaluation mode, and the index of the example behind
/// each batch row in the order they were added (for a prediction file). With
/// [`Padding::Longest`] the examples go by length, so batches pad little; with a fixed padding
/// they keep their order.
pub fn predict<T: Trunk + ?Sized, H: Head + ?Sized>(
    trunk: &T,
    head: &H,
    examples: &[&Encoded],
    batching: Batching,
    batch_size: usize,
    device: &Device,
) -> Result<(Predictions, Vec<usize>)> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    if batching.padding == Padding::Longest {
        order.sort_by_key(|&i| examples[i].ids.len() + examples[i].partner.as_ref().map_or(0, Vec::len));
    }
    let target = head.target();
    let mut predictions = Predictions::default();
    for chunk in order.chunks(batch_size.max(1)) {
        let items: Vec<&Encoded> = chunk.iter().map(|&i| examples[i]).collect();
        let (logits, targets, _) = head_logits(trunk, head, &items, batching, false, device, None)?;
        let loss = head.loss(&logits, &targets)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        predictions.add(target, &logits, &targets, loss)?;
    }
    Ok((predictions, order))
}

/// A trunk and a head trained on encoded examples: the [`Task`] the loop runs.
///
/// `frozen_trunk` only switches the trunk's dropout off; to keep its weights fixed, leave its
/// variables out of the trainer's parameters (and build it from detached tensors so its backward
/// is not even recorded), as [`finetune_head`](super::finetune_head) does.
pub struct HeadTask<T: Trunk, H: Head> {
    pub trunk: T,
    pub head: H,
    pub train: Vec<Encoded>,
    pub valid: Vec<Encoded>,
    pub batching: Batching,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub frozen_trunk: bool,
    pub order: EpochOrder,
    pub device: Device,
}

impl<T: Trunk, H: Head> HeadTask<T, H> {
    /// A task on `train` / `valid`, shuffled by `seed`, batch `batch_size` (validation too).
    pub fn new(
        trunk: T,
        head: H,
        (train, valid): (Vec<Encoded>, Vec<Encoded>),
        batching: Batching,
        batch_size: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        let order = EpochOrder::new(seed, train.len());
        Self {
            trunk,
            head,
            train,
            valid,
            batching,
            batch_size,
            eval_batch_size: batch_size,
            frozen_trunk: false,
            order,
            device: device.clone(),
        }
    }

    /// Predictions over `examples` (see [`predict`]).
    pub fn predict(&self, examples: &[&Encoded]) -> Result<(Predictions, Vec<usize>)> {
        predict(&self.trunk, &self.head, examples, self.batching, self.eval_batch_size, &self.device)
    }
}

impl<T: Trunk, H: Head> Task for HeadTask<T, H> {
    fn batches_per_epoch(&self) -> u64 {
        self.order.batches(self.batch_size)
    }

    fn train_loss(&mut self, epoch: u64, batch: u64, rng: &mut Rng) -> Result<TaskLoss> {
        // Keras and fairseq shuffle every epoch; here the order is a function of (seed, epoch).
        let items: Vec<&Encoded> =
            self.order.batch(epoch, batch, self.batch_size).iter().map(|&i| &self.train[i]).collect();
        let (logits, targets, tokens) =
            head_logits(&self.trunk, &self.head, &items, self.batching, !self.frozen_trunk, &self.device, Some(rng))?;
        let loss = self.head.loss(&logits, &targets)?;
        Ok(TaskLoss { loss, metrics: Metrics::new(), samples: items.len(), tokens })
    }

    fn validate(&mut self) -> Result<Metrics> {
        if self.valid.is_empty() {
            return Ok(Metrics::new());
        }
        let valid: Vec<&Encoded> = self.valid.iter().collect();
        let (p, _) = self.predict(&valid)?;
        Ok(p.summary(self.head.target()))
    }
}

/// Checks that `head` can train on examples of `level` and `target` (a head built for the wrong
/// data would otherwise fail inside the first batch, or silently train on the wrong layout).
pub fn check_head<H: Head + ?Sized>(head: &H, level: Level, target: Target) -> Result<()> {
    if head.level() != level || head.target() != target {
        return Err(Error::invalid(format!(
            "the head is a {:?} {:?} head, the data are {level:?} {target:?}",
            head.level(),
            head.target()
        )));
    }
    Ok(())
}

/// `test_predictions.tsv`: one row per prediction of `p` (per protein or pair), `names[k]` naming
/// row `k` (`A<TAB>B` for a pair): name, label, prediction and score (P(positive) for binary and
/// two-class targets, the value for numeric ones). Both models' fine-tunings write it.
pub(crate) fn write_predictions(
    path: &std::path::Path,
    names: &[&str],
    p: &Predictions,
    (level, target): (Level, Target),
    class_names: &[String],
) -> Result<()> {
    let io = |e| Error::io(path, e);
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let name_header = if level == Level::Pair { "protein_a\tprotein_b" } else { "name" };
    writeln!(w, "{name_header}\tlabel\tpredicted\tscore").map_err(io)?;
    let class = |c: u32| class_names.get(c as usize).cloned().unwrap_or_else(|| c.to_string());
    for (k, name) in names.iter().enumerate() {
        let (label, predicted, score) = match target {
            Target::Binary => (
                (p.labels_bool[k] as u8).to_string(),
                ((p.scores[k] >= 0.5) as u8).to_string(),
                format!("{:.6}", p.scores[k]),
            ),
            Target::Categorical { classes } => (
                class(p.labels_class[k]),
                class(p.classes[k]),
                if classes == 2 { format!("{:.6}", p.scores[k]) } else { String::new() },
            ),
            Target::Numeric => (p.labels_numeric[k].to_string(), format!("{:.6}", p.scores[k]), String::new()),
        };
        writeln!(w, "{name}\t{label}\t{predicted}\t{score}").map_err(io)?;
    }
    w.flush().map_err(io)
}
