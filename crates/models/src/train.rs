//! The one training loop every model family shares: Adam, a learning-rate
//! schedule, optional gradient clipping, a progress bar with the live loss,
//! validation after each epoch, early stopping, an atomic checkpoint after
//! each epoch (and the best epoch's weights), and `--resume`.
//!
//! Each epoch draws its randomness from `seed` and the epoch number alone,
//! so a resumed run repeats an uninterrupted one exactly.
use crate::autoencoder::Losses;
use crate::batches::{Split, Splits};
use crate::checkpoint::{self, CheckpointMeta, BEST};
use crate::error::{ModelError, Result};
use crate::optim::Adam;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Tensor};

/// A model the loop can train.
pub trait Trainable {
    fn var_store(&self) -> &nn::VarStore;
    /// Configuration saved with each checkpoint.
    fn config_json(&self) -> serde_json::Value;
    /// Loss on one training batch; `epochs_done` is fractional progress.
    fn batch_loss(&self, x: &Tensor, y: &Tensor, epochs_done: f64) -> Result<Losses>;
    /// Validation metrics; the loop minimises `loss`.
    fn evaluate(&self, split: &Split) -> Result<BTreeMap<String, f64>>;
    /// Named parameters in a fixed order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.var_store().variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Cosine decay from the base rate to 0 over the run.
    Cosine,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        every: usize,
        gamma: f64,
    },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: i64,
    pub lr: f64,
    pub schedule: Schedule,
    /// Clip the gradients' joint L2 norm to this (None: no clipping).
    pub clip_norm: Option<f64>,
    /// Stop after this many epochs without a better validation loss.
    pub patience: Option<usize>,
    pub seed: i64,
}

impl TrainConfig {
    pub fn lr_at(&self, epoch: usize) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let t = epoch as f64 / self.epochs.max(1) as f64;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Step { every, gamma } => self.lr * gamma.powi((epoch / every.max(1)) as i32),
        }
    }
    /// Fields that may differ on resume: the epoch budget and patience.
    fn same_run(&self, other: &TrainConfig) -> bool {
        let mut a = other.clone();
        a.epochs = self.epochs;
        a.patience = self.patience;
        &a == self
    }
}

/// One line of `metrics.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train: BTreeMap<String, f64>,
    pub valid: BTreeMap<String, f64>,
    pub seconds: f64,
    pub images_per_second: f64,
    pub best: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub best_epoch: usize,
    pub best_valid_loss: f64,
    pub stopped_early: bool,
    pub train_seconds: f64,
    pub images_per_second: f64,
}

/// The error that stops a run whose loss is NaN or infinite, naming the
/// checkpoint that stays (the last finished epoch's, if any).
fn non_finite(
    epoch: usize,
    step: usize,
    value: f64,
    meta: &CheckpointMeta,
    dir: &Path,
) -> ModelError {
    ModelError::NonFinite {
        epoch: epoch + 1,
        step,
        value,
        last_good: if meta.epochs_done > 0 {
            format!("{} in {}", meta.epochs_done, dir.display())
        } else {
            "none: no epoch finished".into()
        },
    }
}

fn epoch_seed(seed: i64, epoch: usize) -> i64 {
    seed.wrapping_mul(1_000_003)
        .wrapping_add((epoch as i64).wrapping_mul(7919))
        .wrapping_add(17)
}

/// Trains `model` from scratch or from the checkpoint in `dir` (`resume`).
/// Calls `on_epoch` with every finished epoch (to log it) after its
/// checkpoint is written.
pub fn train<M: Trainable>(
    model: &M,
    data: &Splits,
    cfg: &TrainConfig,
    dir: &Path,
    resume: bool,
    on_epoch: &mut dyn FnMut(&EpochRecord) -> Result<()>,
) -> Result<TrainSummary> {
    let params = model.named_parameters();
    let mut opt = Adam::new(
        params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect(),
        cfg.lr,
    );
    let mut meta = CheckpointMeta {
        format: 1,
        model: model.config_json(),
        train: serde_json::to_value(cfg).expect("serialisable"),
        epochs_done: 0,
        best: None,
        bad_epochs: 0,
    };
    if resume {
        let (saved, named) = checkpoint::load(dir)?;
        let mp = dir.join(checkpoint::CHECKPOINT_META);
        if saved.model != meta.model {
            return Err(ModelError::checkpoint(
                &mp,
                format!(
                    "was written by another model configuration ({}); resume with the same model options",
                    saved.model
                ),
            ));
        }
        let saved_train: TrainConfig = serde_json::from_value(saved.train.clone())
            .map_err(|e| ModelError::checkpoint(&mp, e.to_string()))?;
        if !cfg.same_run(&saved_train) {
            return Err(ModelError::checkpoint(
                &mp,
                format!("was trained with {saved_train:?}; only --epochs and --patience may change on resume"),
            ));
        }
        checkpoint::copy_into(
            model.var_store(),
            &named,
            "model/",
            &dir.join(checkpoint::CHECKPOINT),
        )?;
        let missing = opt.load_state(&named);
        if !missing.is_empty() {
            return Err(ModelError::checkpoint(
                &dir.join(checkpoint::CHECKPOINT),
                format!("optimiser state missing: {}", missing.join(", ")),
            ));
        }
        meta.epochs_done = saved.epochs_done;
        meta.best = saved.best;
        meta.bad_epochs = saved.bad_epochs;
    }
    let n = data.train.len();
    let steps = (n + cfg.batch_size - 1) / cfg.batch_size;
    let started = Instant::now();
    let mut trained_images = 0i64;
    let mut stopped_early = false;
    let report_every = 10usize;
    for epoch in meta.epochs_done..cfg.epochs {
        if let (Some(p), true) = (cfg.patience, meta.bad_epochs > 0) {
            if meta.bad_epochs >= p {
                stopped_early = true;
                break;
            }
        }
        tch::manual_seed(epoch_seed(cfg.seed, epoch));
        opt.lr = cfg.lr_at(epoch);
        let bar = indicatif::ProgressBar::new(steps as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
            )
            .expect("template"),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        let t0 = Instant::now();
        let mut sums: Vec<(&'static str, Tensor)> = vec![];
        let mut total = Tensor::zeros([], (tch::Kind::Double, model.var_store().device()));
        let mut seen = 0i64;
        for (step, (x, y)) in data.train.shuffled_batches(cfg.batch_size).enumerate() {
            let b = x.size()[0];
            let progress = epoch as f64 + step as f64 / steps as f64;
            let l = model.batch_loss(&x, &y, progress)?;
            let mut grads = opt.gradients(&l.loss);
            if let Some(c) = cfg.clip_norm {
                let _ = Adam::clip_grad_norm(&mut grads, c);
            }
            opt.step(&grads);
            let _ = total.g_add_(&(l.loss.detach() * b as f64));
            if sums.is_empty() {
                sums = l
                    .parts
                    .iter()
                    .map(|(k, _)| (*k, total.zeros_like()))
                    .collect();
            }
            for ((_, s), (_, p)) in sums.iter_mut().zip(&l.parts) {
                let _ = s.g_add_(&(p.detach() * b as f64));
            }
            seen += b;
            bar.inc(1);
            if step % report_every == report_every - 1 || step as i64 == steps - 1 {
                let mean = total.double_value(&[]) / seen as f64;
                if !mean.is_finite() {
                    bar.abandon();
                    return Err(non_finite(epoch, step + 1, mean, &meta, dir));
                }
                bar.set_message(format!("loss {mean:.3}"));
            }
        }
        bar.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        trained_images += seen;
        let mut train_m = BTreeMap::new();
        train_m.insert("loss".to_string(), total.double_value(&[]) / seen as f64);
        for (k, s) in &sums {
            train_m.insert(k.to_string(), s.double_value(&[]) / seen as f64);
        }
        // Validation draws (binarisation, posterior samples) are the same
        // every epoch, so epochs compare on equal terms.
        tch::manual_seed(epoch_seed(cfg.seed, 0) ^ 0x5eed);
        let valid = {
            let _g = tch::no_grad_guard();
            model.evaluate(&data.valid)?
        };
        let vl = valid.get("loss").copied().unwrap_or(f64::NAN);
        if !vl.is_finite() {
            return Err(non_finite(epoch, steps as usize, vl, &meta, dir));
        }
        meta.epochs_done = epoch + 1;
        let is_best = meta.best.is_none_or(|(_, b)| vl < b);
        if is_best {
            meta.best = Some((epoch + 1, vl));
            meta.bad_epochs = 0;
            checkpoint::save_weights(&dir.join(BEST), &params)?;
        } else {
            meta.bad_epochs += 1;
        }
        checkpoint::save(dir, &meta, &params, opt.state())?;
        on_epoch(&EpochRecord {
            epoch: epoch + 1,
            lr: opt.lr,
            train: train_m,
            valid,
            seconds: secs,
            images_per_second: seen as f64 / secs,
            best: is_best,
        })?;
    }
    let secs = started.elapsed().as_secs_f64();
    let (best_epoch, best_valid_loss) = meta.best.unwrap_or((0, f64::NAN));
    Ok(TrainSummary {
        epochs_done: meta.epochs_done,
        best_epoch,
        best_valid_loss,
        stopped_early,
        train_seconds: secs,
        images_per_second: trained_images as f64 / secs.max(1e-9),
    })
}
