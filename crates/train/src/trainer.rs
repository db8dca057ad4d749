//! The one trainer of every model family.
//!
//! A model names its **optimizer groups** (each owns the trainable
//! variables under its prefixes); the training configuration gives each
//! group its optimizer, learning rate and schedule, clipping and number of
//! steps per round (a critic's 5 per generator step). A round runs the
//! groups in order, each step building its loss afresh after the previous
//! update; a model with a hand-written update (the adversarial
//! word-translation phase) may run its own round and still share
//! everything else. Variables that are not trainable (BatchNorm
//! statistics, power-iteration vectors) are buffers: checkpointed and
//! restored, never optimized.
//!
//! Per epoch the trainer seeds libtorch's generator from the seed and the
//! epoch alone (so a resumed run repeats an uninterrupted one bit for
//! bit), sums each group's loss parts by name, logs each group's gradient
//! norm, validates (without gradients unless the model asks), keeps the
//! best epoch by the model's selection metric, and writes one atomic
//! checkpoint. A group whose optimizer keeps a weight average
//! (`OptimConfig::ema`) is validated and kept (best.safetensors) with the
//! average; it trains on its own weights, and the checkpoint holds both. A non-finite loss either stops the run, keeping the last
//! good checkpoint, or rolls back to the epoch's start with a smaller
//! learning rate (a bounded number of times, each logged).
use crate::checkpoint::{self, WeightsMeta, BEST, CHECKPOINT};
use crate::error::{Result, TrainError};
use crate::optim::{OptimConfig, Optimizer, Schedule};
use crate::precision::{Autocast, Precision};
use crate::run::RunDir;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;
use tch::{nn, Kind, Tensor};

/// The checkpoint format this trainer writes.
pub const CHECKPOINT_FORMAT: u32 = 2;

/// One batch: inputs, labels (or whatever the family pairs them with) and
/// the number of items it holds (for throughput and means).
pub struct Batch {
    pub x: Tensor,
    pub y: Tensor,
    pub n: i64,
}

impl Batch {
    pub fn new(x: Tensor, y: Tensor) -> Self {
        let n = x.size().first().copied().unwrap_or(1);
        Self { x, y, n }
    }
    pub fn shallow_clone(&self) -> Self {
        Self {
            x: self.x.shallow_clone(),
            y: self.y.shallow_clone(),
            n: self.n,
        }
    }
}

/// Where a family's batches come from.
pub trait Batches {
    /// Items one epoch goes through.
    fn items(&self) -> usize;
    /// One epoch's batches, drawn from libtorch's generator (which the
    /// trainer seeds before each epoch).
    fn epoch(&self, batch_size: i64) -> Box<dyn Iterator<Item = Batch> + '_>;
}

/// The loss of one step: the scalar to minimise and its named parts
/// (batch means; the trainer sums them by name over the epoch).
pub struct Losses {
    pub loss: Tensor,
    pub parts: Vec<(String, Tensor)>,
}

impl Losses {
    /// A loss with itself as its only part, named `loss`.
    pub fn single(loss: Tensor) -> Self {
        Self {
            parts: vec![],
            loss,
        }
    }
    pub fn part(mut self, name: &str, t: &Tensor) -> Self {
        self.parts.push((name.to_string(), t.shallow_clone()));
        self
    }
}

/// A named group of trainable variables with its own optimizer.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    /// The group owns the trainable variables whose names start with one
    /// of these.
    pub prefixes: Vec<String>,
    /// Whether each step draws a new batch (a generator's step does not:
    /// it reuses the round's last batch for its size and labels).
    pub uses_data: bool,
}

impl Group {
    pub fn new(name: &str, prefixes: &[&str]) -> Self {
        Self {
            name: name.into(),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            uses_data: true,
        }
    }
    pub fn without_data(mut self) -> Self {
        self.uses_data = false;
        self
    }
}

/// How the best epoch is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    /// The smallest value of this validation metric.
    Min(String),
    /// The largest.
    Max(String),
    /// The last epoch (a model without a validation criterion, e.g. a GAN).
    Last,
}

/// Where training stands, for losses that change with it (KL warm-up).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// 0-based epoch.
    pub epoch: usize,
    pub epochs: usize,
    /// Fractional epochs done.
    pub done: f64,
}

/// A model the trainer can train.
pub trait Trainable {
    type Data: Batches;
    type Error: From<TrainError>;
    /// A short name of the model's kind, saved with checkpoints and checked
    /// on resume and load (e.g. `vae`).
    fn kind(&self) -> String;
    /// The configuration that fixes the model's shape and loss.
    fn config_json(&self) -> serde_json::Value;
    fn var_store(&self) -> &nn::VarStore;
    fn groups(&self) -> Vec<Group>;
    /// Called once, before the first step of a fresh run (the trainer
    /// seeds the generator first): data-dependent initialisation such as
    /// Glow's actnorm. Its result is in the checkpoint, so a resumed run
    /// does not initialise again.
    fn init_from_data(&mut self, _data: &Self::Data) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
    /// Called on every run, fresh or resumed, before anything else: what
    /// the model derives from the training data and keeps outside the
    /// checkpoint (DrLIM's neighbourhood graph, rebuilt deterministically).
    fn attach_data(&mut self, _data: &Self::Data) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
    /// The loss of `group` on a batch.
    fn loss(
        &mut self,
        group: &str,
        batch: &Batch,
        at: &Progress,
    ) -> std::result::Result<Losses, Self::Error>;
    /// After each update of `group` (e.g. keeping a map orthogonal).
    fn after_step(&mut self, _group: &str) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
    /// One round; returns false when the epoch's data ran out before it
    /// took a step. The standard round runs every group's steps in order;
    /// override it for a hand-written update.
    fn round(&mut self, r: &mut Round<'_>) -> std::result::Result<bool, Self::Error>
    where
        Self: Sized,
    {
        r.standard(self)
    }
    /// Validation metrics after an epoch.
    fn validate(
        &mut self,
        valid: &Self::Data,
    ) -> std::result::Result<BTreeMap<String, f64>, Self::Error>;
    /// Checks of the training dynamics after an epoch (a discriminator's
    /// accuracy, mode collapse), merged into the validation metrics. They
    /// run on the weights being trained, before [`Trainable::validate`]
    /// and with the same seed: a weight average (`OptimConfig::ema`) is
    /// what samples and test metrics use, but a critic judges the
    /// generator it trains against, not its average.
    fn training_checks(
        &mut self,
        _valid: &Self::Data,
    ) -> std::result::Result<BTreeMap<String, f64>, Self::Error> {
        Ok(BTreeMap::new())
    }
    /// The training loss of `group` above which the run has left training
    /// although every number is finite (a flow's bits/dim far worse than
    /// uniform noise). The trainer compares the mean loss of every ten
    /// rounds (and of the epoch's last ones) with it and treats a mean
    /// above it as it treats a NaN: it stops, or rolls the epoch back with
    /// a smaller learning rate. None (the default): no ceiling, for losses
    /// that have no scale of their own (a critic's).
    fn loss_ceiling(&self, _group: &str) -> Option<f64> {
        None
    }
    /// Whether validation needs gradients (e.g. vector–Jacobian products).
    fn eval_needs_grad(&self) -> bool {
        false
    }
    fn selection(&self) -> Selection {
        Selection::Min("loss".into())
    }
}

/// What to do when a loss or the selection metric is NaN or infinite.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NanPolicy {
    /// Stop with an error; the last good checkpoint stays.
    #[default]
    Stop,
    /// Go back to the start of the epoch with every learning rate
    /// multiplied by `lr_factor`, at most `max` times in a run.
    Rollback { max: usize, lr_factor: f64 },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: i64,
    /// Optimizer settings by group name.
    pub groups: BTreeMap<String, OptimConfig>,
    /// Stop after this many epochs without a better selection metric.
    pub patience: Option<usize>,
    pub seed: i64,
    #[serde(default)]
    pub on_nan: NanPolicy,
    /// The format of the training steps' products: bfloat16 builds each
    /// loss inside an autocast region ([`crate::precision`]); validation,
    /// sampling and every metric stay float32.
    #[serde(default)]
    pub precision: Precision,
    /// Convolution weights and image batches in the channels-last memory
    /// format (oneDNN's fast layout; the same values, checkpoints
    /// unchanged).
    #[serde(default)]
    pub channels_last: bool,
}

impl TrainConfig {
    /// One Adam group named `model` (the autoencoders' configuration).
    pub fn single(epochs: usize, batch_size: i64, opt: OptimConfig, seed: i64) -> Self {
        Self {
            epochs,
            batch_size,
            groups: [("model".to_string(), opt)].into(),
            patience: None,
            seed,
            on_nan: NanPolicy::Stop,
            precision: Precision::F32,
            channels_last: false,
        }
    }
    pub fn check(&self) -> Result<()> {
        if self.epochs < 1 || self.epochs > 1_000_000 {
            return Err(TrainError::Invalid(format!(
                "--epochs {} must be in 1..=1000000",
                self.epochs
            )));
        }
        if self.batch_size < 1 || self.batch_size > 1 << 20 {
            return Err(TrainError::Invalid(format!(
                "--batch-size {} must be in 1..=1048576",
                self.batch_size
            )));
        }
        if self.patience == Some(0) {
            return Err(TrainError::Invalid(
                "--patience 0 would stop before training; give at least 1 (or leave it out)".into(),
            ));
        }
        if let NanPolicy::Rollback { max, lr_factor } = self.on_nan {
            if max > 100 || !(lr_factor > 0.0 && lr_factor < 1.0) {
                return Err(TrainError::Invalid(format!(
                    "NaN rollback: at most 100 rollbacks with a learning-rate factor in (0, 1), got {max} and {lr_factor}"
                )));
            }
        }
        for (g, o) in &self.groups {
            o.check(&format!("optimizer group `{g}`"))?;
        }
        Ok(())
    }
    /// Whether `other` describes the same run, allowing only the epoch
    /// budget and the patience to change on resume.
    pub fn same_run(&self, other: &TrainConfig) -> bool {
        &other.with_budget_of(self) == self
    }

    /// This configuration with `other`'s epoch budget and patience: what
    /// must equal `other` for a resume.
    fn with_budget_of(&self, other: &TrainConfig) -> TrainConfig {
        let mut a = self.clone();
        a.epochs = other.epochs;
        a.patience = other.patience;
        a
    }
}

/// JSON has no NaN: serde_json writes it as null. These read null back
/// as NaN, so a record with a non-finite value survives a round trip.
mod nan {
    use serde::{Deserialize, Deserializer};
    use std::collections::BTreeMap;
    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let m: BTreeMap<String, Option<f64>> = BTreeMap::deserialize(d)?;
        Ok(m.into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect())
    }
    pub fn nested<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, BTreeMap<String, f64>>, D::Error> {
        let m: BTreeMap<String, BTreeMap<String, Option<f64>>> = BTreeMap::deserialize(d)?;
        Ok(m.into_iter()
            .map(|(g, p)| {
                (
                    g,
                    p.into_iter()
                        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
                        .collect(),
                )
            })
            .collect())
    }
    pub fn value<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// One line of `metrics.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Each group's learning rate in this epoch (after warm-up).
    #[serde(deserialize_with = "nan::map")]
    pub lr: BTreeMap<String, f64>,
    /// Each group's loss parts, mean per item over the epoch.
    #[serde(deserialize_with = "nan::nested")]
    pub train: BTreeMap<String, BTreeMap<String, f64>>,
    /// Each group's mean gradient L2 norm (before clipping) over its steps.
    #[serde(deserialize_with = "nan::map")]
    pub grad_norm: BTreeMap<String, f64>,
    #[serde(deserialize_with = "nan::map")]
    pub valid: BTreeMap<String, f64>,
    #[serde(deserialize_with = "nan::value")]
    pub seconds: f64,
    #[serde(deserialize_with = "nan::value")]
    pub items_per_second: f64,
    pub best: bool,
    /// What happened besides training (a rollback after a NaN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// When the epoch ended, in seconds since 1970 (TensorBoard's wall
    /// time; absent in logs of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<f64>,
    /// Minutes of training (the epochs' steps, over every invocation of
    /// the run) when the epoch ended: the x axis of quality against time
    /// (absent in logs of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<f64>,
}

/// The trainer's state, saved in every checkpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TrainState {
    pub epochs_done: usize,
    /// The best epoch (1-based) and its selection metric (None when the
    /// model selects the last epoch).
    pub best: Option<(usize, Option<f64>)>,
    /// Epochs since the best one.
    pub bad_epochs: usize,
    /// Each group's base learning rate now (the Plateau schedule moves it).
    pub lr: BTreeMap<String, f64>,
    /// Whether the selection metric has already fallen once (Plateau).
    pub fell_once: BTreeMap<String, bool>,
    /// Product of the rollback factors applied so far.
    pub lr_scale: f64,
    pub rollbacks: usize,
    /// Whether the model's data-dependent initialisation has run.
    pub initialised: bool,
    pub records: Vec<EpochRecord>,
    pub train_seconds: f64,
}

/// What a checkpoint's description holds.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CheckpointMeta {
    pub format: u32,
    pub kind: String,
    pub model: serde_json::Value,
    pub train: TrainConfig,
    pub state: TrainState,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub best_epoch: usize,
    /// The selection metric's name and best value (None for `Last`).
    pub selected_by: Option<String>,
    pub best_value: Option<f64>,
    pub stopped_early: bool,
    /// Why training stopped before the epoch budget, if it did.
    pub stop_reason: Option<String>,
    /// Seconds spent training, over every invocation of the run.
    pub train_seconds: f64,
    pub items_per_second: f64,
    pub rollbacks: usize,
    pub parameters: i64,
}

fn epoch_seed(seed: i64, epoch: usize, salt: usize) -> i64 {
    seed.wrapping_mul(1_000_003)
        .wrapping_add((epoch as i64).wrapping_mul(7919))
        .wrapping_add(17)
        .wrapping_add((salt as i64).wrapping_mul(104_729))
}

/// The trainable variables of each group, checking that every trainable
/// variable belongs to exactly one group.
fn group_params(vs: &nn::VarStore, groups: &[Group]) -> Result<Vec<Vec<(String, Tensor)>>> {
    let vars = checkpoint::variables(vs);
    let mut out: Vec<Vec<(String, Tensor)>> = groups.iter().map(|_| vec![]).collect();
    for (name, t) in vars {
        if !t.requires_grad() {
            continue; // a buffer
        }
        let owners: Vec<usize> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.prefixes.iter().any(|p| name.starts_with(p.as_str())))
            .map(|(i, _)| i)
            .collect();
        match owners.as_slice() {
            [i] => out[*i].push((name, t)),
            [] => {
                return Err(TrainError::Invalid(format!(
                    "trainable variable `{name}` belongs to no optimizer group"
                )))
            }
            _ => {
                return Err(TrainError::Invalid(format!(
                    "trainable variable `{name}` belongs to several optimizer groups"
                )))
            }
        }
    }
    Ok(out)
}

/// Running sums of one group over an epoch.
#[derive(Default)]
struct Acc {
    loss: Option<Tensor>,
    parts: BTreeMap<String, Tensor>,
    items: i64,
    norm: Option<Tensor>,
    steps: i64,
}

fn add_into(slot: &mut Option<Tensor>, t: Tensor) {
    match slot {
        Some(s) => {
            let _ = s.g_add_(&t);
        }
        None => *slot = Some(t),
    }
}

/// One round of training: the batches, the group optimizers and the
/// epoch's running sums. [`Round::standard`] is the usual round; a model
/// with a hand-written update uses the other methods.
pub struct Round<'a> {
    batches: &'a mut dyn Iterator<Item = Batch>,
    groups: &'a [Group],
    opts: &'a mut [Optimizer],
    acc: &'a mut [Acc],
    pub at: Progress,
    last: Option<Batch>,
    items: i64,
    batches_taken: usize,
    precision: Precision,
    channels_last: bool,
}

impl Round<'_> {
    fn index(&self, group: &str) -> usize {
        self.groups
            .iter()
            .position(|g| g.name == group)
            .unwrap_or_else(|| panic!("no optimizer group `{group}`"))
    }
    /// The next batch of the epoch, or None when it has run out.
    pub fn next_batch(&mut self) -> Option<Batch> {
        let mut b = self.batches.next()?;
        if self.channels_last {
            // A layout, not values: a batch that cannot be restrided
            // trains as it is.
            if let Ok(x) = crate::precision::channels_last(&b.x) {
                b.x = x;
            }
        }
        self.items += b.n;
        self.batches_taken += 1;
        self.last = Some(b.shallow_clone());
        Some(b)
    }
    /// The learning rate of `group` for this round.
    pub fn lr(&self, group: &str) -> f64 {
        self.opts[self.index(group)].lr
    }
    /// Adds a step's losses to the group's sums (weighted by `n` items).
    pub fn record(&mut self, group: &str, l: &Losses, n: i64) {
        let i = self.index(group);
        let _g = tch::no_grad_guard();
        let w = n as f64;
        let a = &mut self.acc[i];
        add_into(&mut a.loss, l.loss.detach().to_kind(Kind::Double) * w);
        for (name, t) in &l.parts {
            let v = t.detach().to_kind(Kind::Double) * w;
            match a.parts.get_mut(name) {
                Some(s) => {
                    let _ = s.g_add_(&v);
                }
                None => {
                    a.parts.insert(name.clone(), v);
                }
            }
        }
        a.items += n;
    }
    /// Adds a step's gradient norm to the group's sums.
    pub fn record_grad_norm(&mut self, group: &str, norm: Tensor) {
        let i = self.index(group);
        let a = &mut self.acc[i];
        add_into(
            &mut a.norm,
            norm.to_kind(Kind::Double).to_device(tch::Device::Cpu),
        );
        a.steps += 1;
    }
    /// The standard round: for each group in order, its steps, each one
    /// building the loss after the previous update, taking gradients with
    /// respect to the group's own parameters, clipping and updating.
    pub fn standard<M: Trainable>(&mut self, model: &mut M) -> std::result::Result<bool, M::Error> {
        let mut took = false;
        for gi in 0..self.groups.len() {
            for _ in 0..self.opts[gi].cfg.steps {
                let reuse = match &self.last {
                    Some(b) if !self.groups[gi].uses_data => Some(b.shallow_clone()),
                    _ => None,
                };
                let batch = match reuse.or_else(|| self.next_batch()) {
                    Some(b) => b,
                    None => return Ok(took),
                };
                let name = self.groups[gi].name.clone();
                let losses = {
                    let _cast = Autocast::enter(self.precision, batch.x.device())?;
                    model.loss(&name, &batch, &self.at)?
                };
                let mut grads = self.opts[gi].gradients(&losses.loss)?;
                let norm = self.opts[gi].step(&mut grads);
                drop(grads);
                self.record(&name, &losses, batch.n);
                self.record_grad_norm(&name, norm);
                model.after_step(&name)?;
                took = true;
            }
        }
        Ok(took)
    }
}

/// A non-finite value met during an epoch, or a loss above the model's
/// ceiling ([`Trainable::loss_ceiling`]).
struct NonFinite {
    what: String,
    step: usize,
    value: f64,
    ceiling: Option<f64>,
}

impl NonFinite {
    fn nan(what: String, step: usize, value: f64) -> Self {
        Self {
            what,
            step,
            value,
            ceiling: None,
        }
    }
}

fn interrupted_error(epoch: usize, state: &TrainState, run: &RunDir) -> TrainError {
    TrainError::Interrupted {
        epoch: epoch + 1,
        kept: if state.epochs_done > 0 {
            format!(
                "{} keeps its checkpoint after epoch {}: --resume continues from there",
                run.path.display(),
                state.epochs_done
            )
        } else {
            format!(
                "no epoch had finished: --resume {} starts it again",
                run.path.display()
            )
        },
    }
}

fn non_finite_error(nf: NonFinite, epoch: usize, state: &TrainState, run: &RunDir) -> TrainError {
    TrainError::NonFinite {
        what: nf.what,
        epoch: epoch + 1,
        step: nf.step,
        value: nf.value,
        ceiling: nf.ceiling,
        kept: if state.epochs_done > 0 {
            format!(
                "the last good checkpoint (epoch {}) is kept in {}",
                state.epochs_done,
                run.path.display()
            )
        } else {
            "no epoch had finished, so there is no checkpoint".into()
        },
    }
}

/// Everything the trainer restores when it rolls an epoch back.
struct Snapshot {
    vars: Vec<Tensor>,
    opts: Vec<HashMap<String, Tensor>>,
}

fn snapshot(vs: &nn::VarStore, opts: &[Optimizer]) -> Snapshot {
    let _g = tch::no_grad_guard();
    Snapshot {
        vars: checkpoint::variables(vs)
            .into_iter()
            .map(|(_, t)| t.detach().copy())
            .collect(),
        opts: opts
            .iter()
            .map(|o| o.state().into_iter().map(|(n, t)| (n, t.copy())).collect())
            .collect(),
    }
}

fn restore(vs: &nn::VarStore, opts: &mut [Optimizer], s: &Snapshot) {
    let _g = tch::no_grad_guard();
    for ((_, mut v), t) in checkpoint::variables(vs).into_iter().zip(&s.vars) {
        v.copy_(t);
    }
    for (o, st) in opts.iter_mut().zip(&s.opts) {
        o.load_state(st);
    }
}

/// What a run shows as it trains. The trainer prints nothing: the
/// pipelines draw a progress bar and a line an epoch through this, tests
/// and library users pass a closure (or nothing).
pub trait Observer {
    /// An epoch of `batches` batches starts (0-based `epoch` of `epochs`).
    fn epoch_started(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    /// `batches` more batches done; the running loss of the first group.
    fn advanced(&mut self, _batches: usize, _status: Option<&str>) {}
    /// The epoch's steps are over (finished, or about to be rolled back).
    fn epoch_ended(&mut self) {}
    /// A finished epoch, after its checkpoint is written and its line logged.
    fn epoch_finished(&mut self, _r: &EpochRecord) {}
    /// Something the user should know (resuming, a rollback).
    fn note(&mut self, _msg: &str) {}
}

/// Nothing shown.
impl Observer for () {}

/// A closure called with every finished epoch, as an [`Observer`].
pub struct OnEpoch<'a>(pub &'a mut dyn FnMut(&EpochRecord));

impl Observer for OnEpoch<'_> {
    fn epoch_finished(&mut self, r: &EpochRecord) {
        (self.0)(r)
    }
}

/// Trains `model` on `data`, validating on `valid`, in `run` (fresh, or
/// from its checkpoint when `resume`). Calls `on_epoch` with every
/// finished epoch after its checkpoint is written and its line logged.
pub fn train<M: Trainable>(
    model: &mut M,
    data: &M::Data,
    valid: &M::Data,
    cfg: &TrainConfig,
    run: &RunDir,
    resume: bool,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> std::result::Result<TrainSummary, M::Error> {
    train_observed(model, data, valid, cfg, run, resume, &mut OnEpoch(on_epoch))
}

/// Every optimizer group of the model has an optimizer, and every
/// optimizer a group.
fn check_groups(cfg: &TrainConfig, groups: &[Group]) -> Result<()> {
    for g in groups {
        if !cfg.groups.contains_key(&g.name) {
            return Err(TrainError::Invalid(format!(
                "the training configuration has no optimizer for group `{}`",
                g.name
            )));
        }
    }
    for name in cfg.groups.keys() {
        if !groups.iter().any(|g| &g.name == name) {
            return Err(TrainError::Invalid(format!(
                "the model has no optimizer group `{name}` (it has {})",
                groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// Reads the checkpoint of a resumed run into the model and optimizers,
/// refusing one of another model, of other options, of more epochs than
/// the budget; returns the saved training state.
fn restore_checkpoint(
    ckpt: &std::path::Path,
    vs: &nn::VarStore,
    opts: &mut [Optimizer],
    kind: &str,
    model_cfg: &serde_json::Value,
    cfg: &TrainConfig,
) -> Result<TrainState> {
    let (saved, named): (CheckpointMeta, _) = checkpoint::read(ckpt)?;
    if saved.format != CHECKPOINT_FORMAT {
        return Err(TrainError::file(
            ckpt,
            format!(
                "checkpoint format {} (this embedlab reads {CHECKPOINT_FORMAT})",
                saved.format
            ),
        ));
    }
    if saved.kind != kind || &saved.model != model_cfg {
        return Err(TrainError::file(
            ckpt,
            format!(
                "was written by another model ({} {}); resume with the run's own model options",
                saved.kind, saved.model
            ),
        ));
    }
    if !cfg.same_run(&saved.train) {
        let now = cfg.with_budget_of(&saved.train);
        return Err(TrainError::file(
            ckpt,
            format!(
                "was trained with other options ({}); only --epochs and --patience may change on resume",
                json_diff(
                    &serde_json::to_value(&saved.train).unwrap_or_default(),
                    &serde_json::to_value(&now).unwrap_or_default(),
                    ""
                )
                .join("; ")
            ),
        ));
    }
    if cfg.epochs < saved.state.epochs_done {
        return Err(TrainError::file(
            ckpt,
            format!(
                "already has {} epochs; --epochs {} cannot undo them (give at least {})",
                saved.state.epochs_done, cfg.epochs, saved.state.epochs_done
            ),
        ));
    }
    checkpoint::copy_into(vs, &named, ckpt)?;
    for o in opts.iter_mut() {
        let missing = o.load_state(&named);
        if !missing.is_empty() {
            return Err(TrainError::file(
                ckpt,
                format!("optimizer state missing: {}", missing.join(", ")),
            ));
        }
    }
    Ok(saved.state)
}

/// Why training stops before the next epoch: patience ran out, or a
/// plateau schedule's rate fell below its minimum.
fn stop_reason(cfg: &TrainConfig, groups: &[Group], state: &TrainState) -> Option<String> {
    if let Some(p) = cfg.patience {
        if state.bad_epochs >= p {
            return Some(format!("no better validation result in {p} epochs"));
        }
    }
    groups
        .iter()
        .find_map(|g| match cfg.groups[&g.name].schedule {
            Schedule::Plateau { min_lr, .. } if state.lr[&g.name] < min_lr => Some(format!(
                "the learning rate of `{}` fell to {:.3e}, below its minimum",
                g.name, state.lr[&g.name]
            )),
            _ => None,
        })
}

/// Each group's learning rate for `epoch` before warm-up: its schedule's
/// (a plateau schedule's current rate), times the rollbacks' factor.
fn epoch_rates(
    cfg: &TrainConfig,
    groups: &[Group],
    state: &TrainState,
    epoch: usize,
) -> BTreeMap<String, f64> {
    groups
        .iter()
        .map(|g| {
            let o = &cfg.groups[&g.name];
            let lr = match o.schedule {
                Schedule::Plateau { .. } => state.lr[&g.name],
                _ => o.scheduled_lr(epoch, cfg.epochs),
            };
            (g.name.clone(), lr * state.lr_scale)
        })
        .collect()
}

/// Whether `value` beats `best` under the model's selection.
fn better(selection: &Selection, value: f64, best: f64) -> bool {
    match selection {
        Selection::Min(_) => value < best,
        Selection::Max(_) => value > best,
        Selection::Last => true,
    }
}

/// Records the epoch's value: a new best resets the patience count.
/// Returns whether the epoch is the best so far.
fn select(selection: &Selection, value: Option<f64>, epoch: usize, state: &mut TrainState) -> bool {
    let is_best = match (value, state.best) {
        (Some(v), Some((_, Some(b)))) => better(selection, v, b),
        _ => true,
    };
    if is_best {
        state.best = Some((epoch + 1, value));
        state.bad_epochs = 0;
    } else {
        state.bad_epochs += 1;
    }
    is_best
}

/// A plateau schedule's rates after an epoch of `value`: decayed, and
/// shrunk when the epoch was worse than the best (from the second time on).
fn update_plateaus(
    cfg: &TrainConfig,
    groups: &[Group],
    selection: &Selection,
    value: Option<f64>,
    state: &mut TrainState,
) {
    for g in groups {
        if let Schedule::Plateau {
            decay,
            shrink,
            min_lr,
        } = cfg.groups[&g.name].schedule
        {
            let worse = match (value, state.best) {
                (Some(v), Some((_, Some(b)))) => better(selection, b, v),
                _ => false,
            };
            let lr = state.lr.get_mut(&g.name).expect("every group has a rate");
            *lr = (*lr * decay).max(min_lr);
            if shrink < 1.0 && worse {
                let fell = state.fell_once.entry(g.name.clone()).or_insert(false);
                if *fell {
                    *lr *= shrink;
                }
                *fell = true;
            }
        }
    }
}

/// The first variable that is not finite after an epoch's steps.
fn non_finite_variable(vs: &nn::VarStore, rounds: usize) -> Option<NonFinite> {
    checkpoint::variables(vs)
        .into_iter()
        .find(|(_, t)| {
            t.is_floating_point() && !bool::try_from(t.isfinite().all()).unwrap_or(false)
        })
        .map(|(n, _)| NonFinite::nan(format!("variable `{n}`"), rounds, f64::NAN))
}

/// The epoch's mean training metrics and gradient norms, by group.
#[allow(clippy::type_complexity)]
fn epoch_means(
    groups: &[Group],
    acc: &[Acc],
) -> (
    BTreeMap<String, BTreeMap<String, f64>>,
    BTreeMap<String, f64>,
) {
    let mut train_m = BTreeMap::new();
    let mut norms = BTreeMap::new();
    for (a, g) in acc.iter().zip(groups) {
        let n = a.items.max(1) as f64;
        let mut parts = BTreeMap::new();
        if let Some(l) = &a.loss {
            parts.insert("loss".to_string(), l.double_value(&[]) / n);
        }
        for (k, s) in &a.parts {
            parts.insert(k.clone(), s.double_value(&[]) / n);
        }
        if !parts.is_empty() {
            train_m.insert(g.name.clone(), parts);
        }
        if let Some(s) = &a.norm {
            norms.insert(g.name.clone(), s.double_value(&[]) / a.steps.max(1) as f64);
        }
    }
    (train_m, norms)
}

/// Exchanges every averaging group's parameters with their moving
/// averages (a second call exchanges them back).
fn swap_averages(opts: &mut [Optimizer]) {
    for o in opts {
        o.swap_average();
    }
}

/// Writes a finished epoch: the best weights first (when it is the best),
/// then the checkpoint that says which epoch is best — a kill between the
/// two leaves best.safetensors one epoch ahead, and the resumed run
/// rewrites it with identical weights.
#[allow(clippy::too_many_arguments)]
fn save_epoch(
    run: &RunDir,
    vs: &nn::VarStore,
    opts: &mut [Optimizer],
    kind: &str,
    model_cfg: &serde_json::Value,
    cfg: &TrainConfig,
    state: &TrainState,
    is_best: bool,
) -> Result<()> {
    if is_best {
        // The kept weights are the averages of the groups that keep one;
        // the checkpoint (for resuming) holds both.
        swap_averages(opts);
        let saved = checkpoint::save_weights(
            &run.file(BEST),
            vs,
            &WeightsMeta {
                format: CHECKPOINT_FORMAT,
                kind: kind.to_string(),
                model: model_cfg.clone(),
                epoch: state.epochs_done,
            },
        );
        swap_averages(opts);
        saved?;
    }
    let mut tensors = checkpoint::model_tensors(vs);
    for o in opts {
        tensors.extend(o.state());
    }
    checkpoint::write(
        &run.file(CHECKPOINT),
        &CheckpointMeta {
            format: CHECKPOINT_FORMAT,
            kind: kind.to_string(),
            model: model_cfg.clone(),
            train: cfg.clone(),
            state: state.clone(),
        },
        &tensors,
    )
}

/// [`train`], showing its progress through `observer`.
pub fn train_observed<M: Trainable>(
    model: &mut M,
    data: &M::Data,
    valid: &M::Data,
    cfg: &TrainConfig,
    run: &RunDir,
    resume: bool,
    observer: &mut dyn Observer,
) -> std::result::Result<TrainSummary, M::Error> {
    cfg.check()?;
    if cfg.channels_last {
        crate::precision::variables_channels_last(model.var_store())?;
    }
    let groups = model.groups();
    check_groups(cfg, &groups)?;
    let params = group_params(model.var_store(), &groups)?;
    let parameters: i64 = params.iter().flatten().map(|(_, t)| t.numel() as i64).sum();
    let mut opts: Vec<Optimizer> = groups
        .iter()
        .zip(params)
        .map(|(g, p)| Optimizer::new(&g.name, p, &cfg.groups[&g.name]))
        .collect();
    let kind = model.kind();
    let model_cfg = model.config_json();
    let ckpt = run.file(CHECKPOINT);
    let mut state = TrainState {
        lr: cfg.groups.iter().map(|(g, o)| (g.clone(), o.lr)).collect(),
        lr_scale: 1.0,
        ..Default::default()
    };
    if resume {
        resume_point(&run.path)?;
    }
    model.attach_data(data)?;
    if resume && ckpt.exists() {
        state = restore_checkpoint(&ckpt, model.var_store(), &mut opts, &kind, &model_cfg, cfg)?;
        observer.note(&format!(
            "resuming after epoch {} of {}",
            state.epochs_done, cfg.epochs
        ));
    }
    // The log agrees with the checkpoint: each finished epoch once.
    run.rewrite_metrics(&state.records)?;
    if !state.initialised {
        tch::manual_seed(epoch_seed(cfg.seed, 0, 0) ^ 0x1417);
        model.init_from_data(data)?;
        state.initialised = true;
    }
    let selection = model.selection();
    let ceilings: Vec<Option<f64>> = groups.iter().map(|g| model.loss_ceiling(&g.name)).collect();
    let n_batches = data.items().div_ceil(cfg.batch_size as usize).max(1);
    let started = Instant::now();
    let mut items_done = 0i64;
    let mut stop: Option<String> = None;
    let main_group = groups.first().map(|g| g.name.clone()).unwrap_or_default();
    let mut epoch = state.epochs_done;
    let mut events: Vec<String> = vec![];
    while epoch < cfg.epochs {
        stop = stop_reason(cfg, &groups, &state);
        if stop.is_some() {
            break;
        }
        if crate::interrupt::stop_requested() {
            return Err(interrupted_error(epoch, &state, run).into());
        }
        let snap = matches!(cfg.on_nan, NanPolicy::Rollback { .. })
            .then(|| snapshot(model.var_store(), &opts));
        tch::manual_seed(epoch_seed(cfg.seed, epoch, state.rollbacks));
        let base = epoch_rates(cfg, &groups, &state, epoch);
        observer.epoch_started(epoch, cfg.epochs, n_batches);
        let t0 = Instant::now();
        let mut acc: Vec<Acc> = groups.iter().map(|_| Acc::default()).collect();
        let mut it = data.epoch(cfg.batch_size);
        let mut windows: Vec<Window> = groups.iter().map(|_| Window::default()).collect();
        let mut rounds = 0usize;
        let mut taken_total = 0usize;
        let mut failure: Option<NonFinite> = None;
        let mut epoch_items = 0i64;
        loop {
            let done = epoch as f64 + taken_total as f64 / n_batches as f64;
            for (o, g) in opts.iter_mut().zip(&groups) {
                o.lr = base[&g.name] * cfg.groups[&g.name].warmup_factor(done);
            }
            let mut r = Round {
                batches: &mut *it,
                groups: &groups,
                opts: &mut opts,
                acc: &mut acc,
                at: Progress {
                    epoch,
                    epochs: cfg.epochs,
                    done,
                },
                last: None,
                items: 0,
                batches_taken: 0,
                precision: cfg.precision,
                channels_last: cfg.channels_last,
            };
            let took = model.round(&mut r)?;
            let (items, taken) = (r.items, r.batches_taken);
            epoch_items += items;
            taken_total += taken;
            if !took {
                observer.advanced(taken, None);
                break;
            }
            rounds += 1;
            let mut status = None;
            if rounds.is_multiple_of(10) {
                if let Some(nf) = check_losses(&groups, &acc, &mut windows, &ceilings, rounds) {
                    failure = Some(nf);
                    observer.advanced(taken, None);
                    break;
                }
                if let Some(a) = acc.iter().zip(&groups).find(|(_, g)| g.name == main_group) {
                    if let (Some(l), true) = (&a.0.loss, a.0.items > 0) {
                        status = Some(format!(
                            "{main_group} loss {:.4}",
                            l.double_value(&[]) / a.0.items as f64
                        ));
                    }
                }
            }
            observer.advanced(taken, status.as_deref());
            if crate::interrupt::stop_requested() {
                // The checkpoint of the last finished epoch stays: resuming
                // repeats this epoch from its start, seeded as it was.
                observer.epoch_ended();
                return Err(interrupted_error(epoch, &state, run).into());
            }
        }
        drop(it);
        observer.epoch_ended();
        if failure.is_none() {
            failure = check_losses(&groups, &acc, &mut windows, &ceilings, rounds)
                .or_else(|| non_finite_variable(model.var_store(), rounds));
        }
        let secs = t0.elapsed().as_secs_f64();
        let mut valid_m = BTreeMap::new();
        if failure.is_none() {
            // Validation draws (binarisation, posterior samples) are the
            // same every epoch, so epochs compare on equal terms.
            tch::manual_seed(epoch_seed(cfg.seed, 0, 0) ^ 0x5eed);
            let checks = {
                let _g = tch::no_grad_guard();
                model.training_checks(valid)?
            };
            // Groups that keep a weight average are validated with it.
            swap_averages(&mut opts);
            let v = if model.eval_needs_grad() {
                model.validate(valid)
            } else {
                let _g = tch::no_grad_guard();
                model.validate(valid)
            };
            swap_averages(&mut opts);
            valid_m = v?;
            valid_m.extend(checks);
            if let Selection::Min(k) | Selection::Max(k) = &selection {
                match valid_m.get(k) {
                    Some(v) if v.is_finite() => {}
                    Some(v) => {
                        failure = Some(NonFinite::nan(format!("the validation {k}"), rounds, *v))
                    }
                    None => {
                        return Err(TrainError::Invalid(format!(
                            "the model selects by validation `{k}` but its validation reports only {:?}",
                            valid_m.keys().collect::<Vec<_>>()
                        ))
                        .into())
                    }
                }
            }
        }
        if let Some(nf) = failure {
            match (cfg.on_nan, &snap) {
                (NanPolicy::Rollback { max, lr_factor }, Some(s)) if state.rollbacks < max => {
                    restore(model.var_store(), &mut opts, s);
                    state.rollbacks += 1;
                    state.lr_scale *= lr_factor;
                    let msg = format!(
                        "epoch {}: {} {} at step {}; rolled back to the epoch's start with the learning rates × {lr_factor} (rollback {} of at most {max})",
                        epoch + 1, nf.what, crate::error::became(nf.value, nf.ceiling), nf.step, state.rollbacks
                    );
                    observer.note(&msg);
                    events.push(msg);
                    continue;
                }
                _ => return Err(non_finite_error(nf, epoch, &state, run).into()),
            }
        }
        let (train_m, norms) = epoch_means(&groups, &acc);
        let value = match &selection {
            Selection::Min(k) | Selection::Max(k) => Some(valid_m[k]),
            Selection::Last => None,
        };
        let is_best = select(&selection, value, epoch, &mut state);
        update_plateaus(cfg, &groups, &selection, value, &mut state);
        state.epochs_done = epoch + 1;
        state.train_seconds += secs;
        items_done += epoch_items;
        let record = EpochRecord {
            epoch: epoch + 1,
            lr: groups
                .iter()
                .zip(&opts)
                .map(|(g, o)| (g.name.clone(), o.lr))
                .collect(),
            train: train_m,
            grad_norm: norms,
            valid: valid_m,
            seconds: secs,
            items_per_second: epoch_items as f64 / secs.max(1e-9),
            best: is_best,
            events: std::mem::take(&mut events),
            wall_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64()),
            minutes: Some(state.train_seconds / 60.0),
        };
        state.records.push(record.clone());
        save_epoch(
            run,
            model.var_store(),
            &mut opts,
            &kind,
            &model_cfg,
            cfg,
            &state,
            is_best,
        )?;
        run.log(&record)?;
        observer.epoch_finished(&record);
        epoch += 1;
    }
    let (best_epoch, best_value) = state.best.unwrap_or((0, None));
    let secs = started.elapsed().as_secs_f64();
    Ok(TrainSummary {
        epochs_done: state.epochs_done,
        best_epoch,
        selected_by: match &selection {
            Selection::Min(k) | Selection::Max(k) => Some(k.clone()),
            Selection::Last => None,
        },
        best_value,
        stopped_early: stop.is_some(),
        stop_reason: stop,
        train_seconds: state.train_seconds,
        items_per_second: if items_done > 0 {
            items_done as f64 / secs.max(1e-9)
        } else {
            state
                .records
                .last()
                .map(|r| r.items_per_second)
                .unwrap_or(0.0)
        },
        rollbacks: state.rollbacks,
        parameters,
    })
}

/// Where the last check of a group's loss left its running sums.
#[derive(Default)]
struct Window {
    sum: f64,
    items: i64,
    round: usize,
}

/// The first group whose running loss sum is not finite, or whose mean
/// loss since the last check rose above its ceiling.
fn check_losses(
    groups: &[Group],
    acc: &[Acc],
    windows: &mut [Window],
    ceilings: &[Option<f64>],
    rounds: usize,
) -> Option<NonFinite> {
    for ((g, a), (w, ceiling)) in groups.iter().zip(acc).zip(windows.iter_mut().zip(ceilings)) {
        let Some(l) = &a.loss else { continue };
        let sum = l.double_value(&[]);
        if !sum.is_finite() {
            return Some(NonFinite::nan(
                format!("the `{}` loss", g.name),
                rounds,
                sum,
            ));
        }
        let since = std::mem::replace(
            w,
            Window {
                sum,
                items: a.items,
                round: rounds,
            },
        );
        if let (Some(c), true) = (ceiling, a.items > since.items) {
            let mean = (sum - since.sum) / (a.items - since.items) as f64;
            if mean > *c {
                return Some(NonFinite {
                    what: format!(
                        "the `{}` loss (its mean over rounds {}–{rounds})",
                        g.name,
                        since.round + 1
                    ),
                    step: rounds,
                    value: mean,
                    ceiling: Some(*c),
                });
            }
        }
    }
    None
}

/// How many epochs a run to be resumed has finished, from its checkpoint.
/// A folder without a checkpoint resumes from the start only if nothing of
/// it would be lost — no best weights, no finished epoch in its log, no
/// report (a run killed inside its first epoch); otherwise the missing
/// checkpoint is named and nothing is touched.
pub fn resume_point(dir: &std::path::Path) -> Result<usize> {
    let ckpt = dir.join(CHECKPOINT);
    if ckpt.exists() {
        let (saved, _): (CheckpointMeta, _) = checkpoint::read(&ckpt)?;
        return Ok(saved.state.epochs_done);
    }
    let logged = crate::run::read_metrics(dir).len();
    let report = dir.join(crate::report::REPORT).exists();
    if logged > 0 || report {
        let mut what: Vec<String> = [BEST, crate::report::REPORT]
            .into_iter()
            .filter(|f| dir.join(f).exists())
            .map(|s| s.to_string())
            .collect();
        if logged > 0 {
            what.push(format!("{logged} logged epochs"));
        }
        return Err(TrainError::file(
            &ckpt,
            format!(
                "missing: the run cannot be continued without it, and starting over would replace what it holds ({}); nothing was changed",
                what.join(", ")
            ),
        ));
    }
    Ok(0)
}

/// Loads a run's best weights into `vs` (written by [`train`]).
pub fn load_best(
    vs: &nn::VarStore,
    run: &std::path::Path,
    kind: &str,
    model: &serde_json::Value,
) -> Result<WeightsMeta> {
    checkpoint::load_weights(vs, &run.join(BEST), kind, model)
}

/// Where two JSON values differ: `path: was X, now Y` for each leaf.
fn json_diff(was: &serde_json::Value, now: &serde_json::Value, at: &str) -> Vec<String> {
    use serde_json::Value;
    match (was, now) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .flat_map(|k| {
                    let p = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    json_diff(
                        a.get(k).unwrap_or(&Value::Null),
                        b.get(k).unwrap_or(&Value::Null),
                        &p,
                    )
                })
                .collect()
        }
        (a, b) if a == b => vec![],
        (a, b) => vec![format!("{at}: was {a}, now {b}")],
    }
}

#[cfg(test)]
mod tests {
    //! The loop's pieces, each on its own; the loop as a whole (resume bit
    //! for bit, rollback, the observer) is tested in tests/trainer.rs.
    use super::*;

    fn group(name: &str) -> Group {
        Group::new(name, &[name])
    }

    fn config(groups: &[(&str, OptimConfig)], patience: Option<usize>) -> TrainConfig {
        TrainConfig {
            epochs: 10,
            batch_size: 4,
            groups: groups
                .iter()
                .map(|(n, o)| (n.to_string(), o.clone()))
                .collect(),
            patience,
            seed: 0,
            on_nan: NanPolicy::Stop,
            precision: Precision::F32,
            channels_last: false,
        }
    }

    fn state(cfg: &TrainConfig) -> TrainState {
        TrainState {
            lr: cfg.groups.iter().map(|(g, o)| (g.clone(), o.lr)).collect(),
            lr_scale: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn groups_and_optimizers_must_match_one_to_one() {
        let cfg = config(&[("gen", OptimConfig::adam(1e-3))], None);
        assert!(check_groups(&cfg, &[group("gen")]).is_ok());
        let e = check_groups(&cfg, &[group("gen"), group("disc")]).unwrap_err();
        assert!(
            e.to_string().contains("no optimizer for group `disc`"),
            "{e}"
        );
        let e = check_groups(&cfg, &[]).unwrap_err();
        assert!(e.to_string().contains("no optimizer group `gen`"), "{e}");
    }

    #[test]
    fn selection_patience_and_plateaus() {
        let plateau = OptimConfig::adam(1.0).with_schedule(Schedule::Plateau {
            decay: 0.5,
            shrink: 0.1,
            min_lr: 0.01,
        });
        let cfg = config(&[("m", plateau)], Some(2));
        let groups = [group("m")];
        let mut st = state(&cfg);
        let sel = Selection::Min("loss".into());
        // 3.0 best; 2.0 better; 2.5 worse (first time: decay only); 2.2
        // worse again (decay and shrink): two bad epochs stop the run.
        let mut bests = vec![];
        let mut lrs = vec![];
        for (e, v) in [3.0, 2.0, 2.5, 2.2].into_iter().enumerate() {
            assert_eq!(stop_reason(&cfg, &groups, &st), None, "epoch {e}");
            bests.push(select(&sel, Some(v), e, &mut st));
            update_plateaus(&cfg, &groups, &sel, Some(v), &mut st);
            lrs.push(st.lr["m"]);
        }
        assert_eq!(bests, [true, true, false, false]);
        assert_eq!(st.best, Some((2, Some(2.0))));
        assert_eq!(st.bad_epochs, 2);
        assert_eq!(lrs, [0.5, 0.25, 0.125, 0.0625 * 0.1]);
        let why = stop_reason(&cfg, &groups, &st).unwrap();
        assert!(
            why.contains("no better validation result in 2 epochs"),
            "{why}"
        );
        // Without patience, the rate below its minimum stops it.
        let cfg = TrainConfig {
            patience: None,
            ..cfg
        };
        st.lr.insert("m".into(), 0.001);
        let why = stop_reason(&cfg, &groups, &st).unwrap();
        assert!(why.contains("fell to 1.000e-3, below its minimum"), "{why}");
        // Max selects the larger; Last takes every epoch.
        assert!(better(&Selection::Max("acc".into()), 2.0, 1.0));
        assert!(!better(&Selection::Max("acc".into()), 1.0, 2.0));
        assert!(better(&Selection::Last, 1.0, 2.0));
    }

    #[test]
    fn epoch_rates_follow_each_groups_schedule_and_the_rollbacks() {
        let cfg = config(
            &[
                ("a", OptimConfig::adam(1.0).with_schedule(Schedule::Cosine)),
                (
                    "b",
                    OptimConfig::adam(0.1).with_schedule(Schedule::Step {
                        every: 2,
                        gamma: 0.5,
                    }),
                ),
            ],
            None,
        );
        let groups = [group("a"), group("b")];
        let mut st = state(&cfg);
        let r = epoch_rates(&cfg, &groups, &st, 5);
        assert!((r["a"] - 0.5).abs() < 1e-12, "{r:?}");
        assert!((r["b"] - 0.1 * 0.25).abs() < 1e-12, "{r:?}");
        st.lr_scale = 0.5;
        let r = epoch_rates(&cfg, &groups, &st, 0);
        assert_eq!((r["a"], r["b"]), (0.5, 0.05));
    }
}
