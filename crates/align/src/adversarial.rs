//! Adversarial unsupervised mapping (Conneau et al. 2018, ICLR: "Word
//! translation without parallel data", the MUSE method):
//!
//! 1. A discriminator (an MLP with dropout on its input and leaky-ReLU hidden
//!    layers) learns to tell mapped source vectors `xW` from target vectors,
//!    both drawn uniformly from each side's most frequent words, with smoothed
//!    labels. The map `W` (identity at the start) is trained to fool it and is
//!    pulled back towards the orthogonal matrices after every step by
//!    `W ← (1+β)W − β(WWᵀ)W`. Both by plain SGD.
//! 2. After each epoch the unsupervised criterion (mean cosine between the
//!    most frequent source words and their CSLS translations) picks the best
//!    map, decays the map's learning rate, and halves it from the second time
//!    the criterion falls.
//! 3. Procrustes refinement from the best map: a dictionary induced by CSLS,
//!    Procrustes on it, the criterion again; the best map wins.
//!
//! The discriminator's forward and backward passes are written out by hand
//! (checked against autograd in the tests) so that each SGD update is fused
//! into the gradient's matrix product, the map step computes input gradients
//! only, and its matrix products can run in bfloat16 with float32 master
//! weights (`Precision::Bf16`) — the adversarial phase is dominated by the
//! `batch × hidden × hidden` products of the discriminator.
use crate::error::{AlignError, Result};
use crate::induce::{induce, mean_cosine, Build, InduceConfig};
use crate::maps::{orthogonalize_step, paired_rows, procrustes, Mapping};
use crate::retrieval::{Retrieval, Space};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Number format of the discriminator's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    F32,
    /// bfloat16 products in the discriminator's own steps, float32 weights
    /// and updates; the map's gradient is always computed in float32.
    Bf16,
}

impl Precision {
    fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    /// bfloat16 where the hardware has fast bfloat16 products (a CUDA
    /// device, or an x86 CPU with AVX512-BF16 or AMX), float32 elsewhere.
    pub fn fastest(device: Device) -> Self {
        if device.is_cuda() || cpu_has_bf16() {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }
}

fn cpu_has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("flags"))
                .take(1)
                .any(|l| {
                    l.split_whitespace()
                        .any(|f| f == "avx512_bf16" || f == "amx_bf16")
                })
        })
        .unwrap_or(false)
}

/// Settings; the defaults are MUSE's (`unsupervised.py`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdversarialConfig {
    pub epochs: usize,
    /// Samples (source words) per epoch.
    pub epoch_size: usize,
    pub batch_size: i64,
    /// Discriminator steps per map step.
    pub dis_steps: usize,
    pub dis_layers: usize,
    pub dis_hidden: i64,
    pub dis_input_dropout: f64,
    /// Label smoothing: source labelled 1−s, target s.
    pub dis_smooth: f64,
    /// Words drawn for the discriminator: this many most frequent of each side.
    pub dis_most_frequent: i64,
    pub dis_lr: f64,
    pub map_lr: f64,
    /// Map learning rate multiplied by this after each epoch.
    pub lr_decay: f64,
    /// Stop when the map learning rate falls below this.
    pub min_lr: f64,
    /// Map learning rate multiplied by this when the criterion falls (from the second time).
    pub lr_shrink: f64,
    /// Orthogonalisation strength β.
    pub map_beta: f64,
    /// Most frequent source words in the criterion.
    pub criterion_words: usize,
    /// Procrustes refinement iterations after the adversarial phase.
    pub refinement: usize,
    /// Dictionary induction of the refinement (MUSE: CSLS, S2T, top 15k, whole-vocabulary search).
    pub induce: InduceConfig,
    pub precision: Precision,
}

impl Default for AdversarialConfig {
    fn default() -> Self {
        Self {
            epochs: 5,
            epoch_size: 1_000_000,
            batch_size: 32,
            dis_steps: 5,
            dis_layers: 2,
            dis_hidden: 2048,
            dis_input_dropout: 0.1,
            dis_smooth: 0.1,
            dis_most_frequent: 75_000,
            dis_lr: 0.1,
            map_lr: 0.1,
            lr_decay: 0.98,
            min_lr: 1e-6,
            lr_shrink: 0.5,
            map_beta: 0.001,
            criterion_words: 10_000,
            refinement: 5,
            induce: InduceConfig {
                retrieval: Retrieval::Csls { k: 10 },
                build: Build::S2t,
                max_rank: 15_000,
                full_vocabulary: true,
            },
            precision: Precision::F32,
        }
    }
}

const LEAKY_SLOPE: f64 = 0.2;

/// The discriminator: `layers` hidden leaky-ReLU layers and one logit.
/// Weights are `[in, out]`, float32.
pub struct Discriminator {
    pub weights: Vec<Tensor>,
    pub biases: Vec<Tensor>,
    pub input_dropout: f64,
}

/// What a forward pass keeps for the backward one.
struct Trace {
    /// Input of each layer in the compute kind (after dropout for the
    /// first; the hidden layers' outputs for the others).
    inputs: Vec<Tensor>,
    /// Weights in the compute kind.
    weights: Vec<Tensor>,
}

impl Discriminator {
    /// PyTorch's `nn.Linear` initialisation: U(±1/√fan_in) for weights and biases.
    pub fn new(dim: i64, hidden: i64, layers: usize, input_dropout: f64, device: Device) -> Self {
        let mut sizes = vec![dim];
        sizes.extend(std::iter::repeat_n(hidden, layers));
        sizes.push(1);
        let (mut weights, mut biases) = (vec![], vec![]);
        for w in sizes.windows(2) {
            let bound = 1.0 / (w[0] as f64).sqrt();
            let u =
                |shape: &[i64]| Tensor::rand(shape, (Kind::Float, device)) * (2.0 * bound) - bound;
            weights.push(u(&[w[0], w[1]]));
            biases.push(u(&[w[1]]));
        }
        Self {
            weights,
            biases,
            input_dropout,
        }
    }

    // Each step is a few dozen small operations for small discriminators, so
    // fused ones are used where libtorch has them (addmm, prelu, dropout,
    // leaky_relu_backward): their dispatch cost is then the larger part.
    fn forward(&self, x: &Tensor, dropout: bool, kind: Kind) -> (Tensor, Trace) {
        let mut h = x.to_kind(kind);
        if dropout && self.input_dropout > 0.0 {
            h = h.dropout(self.input_dropout, true);
        }
        let weights: Vec<Tensor> = self.weights.iter().map(|w| w.to_kind(kind)).collect();
        let slope = Tensor::full([1], LEAKY_SLOPE, (kind, x.device()));
        let mut inputs = vec![];
        let last = weights.len() - 1;
        for (l, (w, b)) in weights.iter().zip(&self.biases).enumerate() {
            let a = b.to_kind(kind).addmm(&h, w);
            inputs.push(h);
            h = if l == last { a } else { a.prelu(&slope) };
        }
        (h.to_kind(Kind::Float).view(-1), Trace { inputs, weights })
    }

    /// Logits of `x` in evaluation mode (no dropout), float32.
    pub fn logits(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| self.forward(x, false, Kind::Float).0)
    }

    /// Back-propagates `g` (the loss gradient of the logits) through the
    /// layers; with `lr`, each layer's weights take their SGD step as soon as
    /// the gradient flowing below them has been computed. Returns the
    /// gradient of the input when `want_input`.
    fn backward(
        &mut self,
        trace: &Trace,
        g: &Tensor,
        lr: Option<f64>,
        want_input: bool,
        kind: Kind,
    ) -> Option<Tensor> {
        let mut g = g.to_kind(kind).view([-1, 1]);
        let n = self.weights.len();
        for l in (0..n).rev() {
            let below = if l > 0 || want_input {
                let gb = g.matmul(&trace.weights[l].tr());
                Some(if l > 0 {
                    // The layer's input is the leaky ReLU's output: same sign as its input.
                    trace.inputs[l].leaky_relu_backward(&gb, LEAKY_SLOPE, true)
                } else {
                    gb
                })
            } else {
                None
            };
            if let Some(lr) = lr {
                // SGD step fused into the gradient's product: W += hᵀ(−lr·g).
                let gs = &g * (-lr);
                let h = &trace.inputs[l];
                if kind == Kind::Float {
                    let _ = self.weights[l].addmm_(&h.tr(), &gs);
                } else {
                    let _ = self.weights[l].g_add_(&h.tr().matmul(&gs));
                }
                let _ = self.biases[l].g_add_(&gs.sum_dim_intlist(
                    [0i64].as_slice(),
                    false,
                    Kind::Float,
                ));
            }
            match below {
                Some(gb) => g = gb,
                None => return None,
            }
        }
        Some(g.to_kind(Kind::Float))
    }
}

/// Mean binary cross-entropy of logits `z` against labels `y`, and its
/// gradient with respect to `z` when the mean runs over `n` rows.
fn bce_with_logits(z: &Tensor, y: &Tensor, n: i64) -> (Tensor, Tensor) {
    let loss = z.binary_cross_entropy_with_logits::<Tensor>(y, None, None, tch::Reduction::Mean);
    let g = (z.sigmoid() - y) / n as f64;
    (loss, g)
}

impl Discriminator {
    /// One SGD step of the discriminator on `x` with labels `y` (input
    /// dropout on); returns the loss before the step.
    pub fn train_step(&mut self, x: &Tensor, y: &Tensor, lr: f64, precision: Precision) -> Tensor {
        tch::no_grad(|| {
            let kind = precision.kind();
            let (z, trace) = self.forward(x, true, kind);
            let (loss, g) = bce_with_logits(&z, y, z.size()[0]);
            self.backward(&trace, &g, Some(lr), false, kind);
            loss
        })
    }

    /// Gradient with respect to `x` (evaluation mode) of the binary
    /// cross-entropy against labels `y`, averaged over `n` rows.
    pub fn input_grad(&mut self, x: &Tensor, y: &Tensor, n: i64, precision: Precision) -> Tensor {
        tch::no_grad(|| {
            let kind = precision.kind();
            let (z, trace) = self.forward(x, false, kind);
            let (_, g) = bce_with_logits(&z, y, n);
            self.backward(&trace, &g, None, true, kind)
                .expect("input gradient requested")
        })
    }
}

/// One adversarial epoch, for logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    /// Mean discriminator loss over the epoch.
    pub dis_loss: f64,
    /// Mean discriminator probability of "source" on source and on target words.
    pub dis_src_prob: f64,
    pub dis_tgt_prob: f64,
    /// The unsupervised model-selection criterion.
    pub criterion: f64,
    pub map_lr: f64,
    /// Whether this epoch's map is the best so far.
    pub best: bool,
    pub seconds: f64,
}

/// One Procrustes refinement iteration, for logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefineLog {
    pub iteration: usize,
    pub dictionary_pairs: usize,
    pub criterion: f64,
    pub best: bool,
    pub seconds: f64,
}

/// Scalar training state, saved with each checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdversarialState {
    /// Epochs finished.
    pub epochs_done: usize,
    pub map_lr: f64,
    pub best_criterion: f64,
    /// Whether the criterion has already fallen once (MUSE's `decrease_lr`).
    pub fell_once: bool,
    /// Whether the map learning rate fell under `min_lr`.
    pub stopped: bool,
    pub epochs: Vec<EpochLog>,
}

/// The adversarial model: map, best map so far, discriminator, state.
pub struct Adversarial {
    pub w: Tensor,
    pub best_w: Tensor,
    pub dis: Discriminator,
    pub state: AdversarialState,
}

/// What the training loop reports as it goes.
pub enum Progress<'a> {
    /// Every few hundred batches: samples done in this epoch, recent mean discriminator loss.
    Batch {
        epoch: usize,
        samples: usize,
        dis_loss: f64,
    },
    /// After each epoch (checkpoint here).
    Epoch(&'a Adversarial),
    /// After each refinement iteration.
    Refine(&'a RefineLog),
}

/// MUSE's criterion for the map `w` (`mean_cosine-csls_knn_10-S2T-<words>`).
pub fn criterion(x: &Tensor, z: &Tensor, w: &Tensor, words: usize) -> Result<f64> {
    let mut space = Space::new(&x.matmul(w), z)?;
    mean_cosine(&mut space, Retrieval::Csls { k: 10 }, words)
}

fn check_inputs(x: &Tensor, z: &Tensor) -> Result<()> {
    let (nx, dx) = x.size2()?;
    let (nz, dz) = z.size2()?;
    if dx != dz {
        return Err(AlignError::Invalid(format!(
            "adversarial mapping needs equal dimensions: source {dx}, target {dz} (reduce with PCA)"
        )));
    }
    if nx < 2 || nz < 2 {
        return Err(AlignError::Invalid(
            "adversarial mapping needs at least two words a side".into(),
        ));
    }
    Ok(())
}

impl Adversarial {
    /// Identity map, fresh discriminator (MUSE's `map_id_init`).
    pub fn new(dim: i64, cfg: &AdversarialConfig, device: Device) -> Self {
        let w = Tensor::eye(dim, (Kind::Float, device));
        Self {
            best_w: w.copy(),
            w,
            dis: Discriminator::new(
                dim,
                cfg.dis_hidden,
                cfg.dis_layers,
                cfg.dis_input_dropout,
                device,
            ),
            state: AdversarialState {
                epochs_done: 0,
                map_lr: cfg.map_lr,
                best_criterion: f64::NEG_INFINITY,
                fell_once: false,
                stopped: false,
                epochs: vec![],
            },
        }
    }

    /// The tensors of a checkpoint.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            ("W".to_string(), self.w.shallow_clone()),
            ("W_best".to_string(), self.best_w.shallow_clone()),
        ];
        for (i, (w, b)) in self.dis.weights.iter().zip(&self.dis.biases).enumerate() {
            out.push((format!("dis.{i}.weight"), w.shallow_clone()));
            out.push((format!("dis.{i}.bias"), b.shallow_clone()));
        }
        out
    }

    /// Rebuilds a model from checkpoint tensors and state; checks every shape.
    pub fn from_tensors(
        tensors: Vec<(String, Tensor)>,
        state: AdversarialState,
        cfg: &AdversarialConfig,
        dim: i64,
        device: Device,
    ) -> Result<Self> {
        let mut m = Self::new(dim, cfg, device);
        let mut found = 0;
        for (name, t) in tensors {
            let slot = match name.as_str() {
                "W" => &mut m.w,
                "W_best" => &mut m.best_w,
                n => {
                    let parts: Vec<&str> = n.split('.').collect();
                    match (
                        parts.as_slice(),
                        parts.get(1).and_then(|i| i.parse::<usize>().ok()),
                    ) {
                        (["dis", _, "weight"], Some(i)) if i < m.dis.weights.len() => {
                            &mut m.dis.weights[i]
                        }
                        (["dis", _, "bias"], Some(i)) if i < m.dis.biases.len() => {
                            &mut m.dis.biases[i]
                        }
                        _ => {
                            return Err(AlignError::Invalid(format!(
                                "checkpoint: unexpected tensor {n}"
                            )))
                        }
                    }
                }
            };
            if slot.size() != t.size() {
                return Err(AlignError::Invalid(format!(
                    "checkpoint: tensor {name} has shape {:?}, the configuration needs {:?}",
                    t.size(),
                    slot.size()
                )));
            }
            *slot = t.to_kind(Kind::Float).to_device(device);
            found += 1;
        }
        let want = 2 + 2 * m.dis.weights.len();
        if found != want {
            return Err(AlignError::Invalid(format!(
                "checkpoint: {found} tensors, expected {want}"
            )));
        }
        m.state = state;
        Ok(m)
    }

    /// Runs the remaining adversarial epochs on prepared spaces `x`, `z`.
    pub fn train(
        &mut self,
        x: &Tensor,
        z: &Tensor,
        cfg: &AdversarialConfig,
        mut on: impl FnMut(Progress),
    ) -> Result<()> {
        check_inputs(x, z)?;
        let dev = x.device();
        let bs = cfg.batch_size.max(1);
        let mf_src = cfg.dis_most_frequent.min(x.size()[0]).max(1);
        let mf_tgt = cfg.dis_most_frequent.min(z.size()[0]).max(1);
        let s = cfg.dis_smooth;
        let y_dis = Tensor::cat(
            &[
                Tensor::full([bs], 1.0 - s, (Kind::Float, dev)),
                Tensor::full([bs], s, (Kind::Float, dev)),
            ],
            0,
        );
        // Fooling: the source half with flipped labels, averaged over both
        // halves as MUSE does (the target half has no gradient for W).
        let y_map = Tensor::full([bs], s, (Kind::Float, dev));
        let report_every = 200;
        while self.state.epochs_done < cfg.epochs && !self.state.stopped {
            let epoch = self.state.epochs_done;
            let t0 = Instant::now();
            let mut loss_sum = 0.0;
            let mut recent = Tensor::zeros([], (Kind::Float, dev));
            let (mut steps, mut recent_steps) = (0usize, 0usize);
            let iterations = cfg.epoch_size.div_ceil(bs as usize);
            for it in 0..iterations {
                tch::no_grad(|| {
                    // One draw of words for the whole iteration; the map is
                    // fixed during the discriminator steps, so their source
                    // words are mapped in one product.
                    let k = cfg.dis_steps as i64;
                    let si = Tensor::randint(mf_src, [(k + 1) * bs], (Kind::Int64, dev));
                    let ti = Tensor::randint(mf_tgt, [k * bs], (Kind::Int64, dev));
                    let xs = x.index_select(0, &si);
                    let mapped = xs.narrow(0, 0, k * bs).matmul(&self.w);
                    let zt = z.index_select(0, &ti);
                    for j in 0..k {
                        let input = Tensor::cat(
                            &[mapped.narrow(0, j * bs, bs), zt.narrow(0, j * bs, bs)],
                            0,
                        );
                        recent += self
                            .dis
                            .train_step(&input, &y_dis, cfg.dis_lr, cfg.precision);
                    }
                    recent_steps += cfg.dis_steps;
                    let xs = xs.narrow(0, k * bs, bs);
                    // The map's gradient in float32 whatever the discriminator's
                    // precision: one pass without weight gradients, cheap next to
                    // the discriminator steps, and the map is what the run is for.
                    let g =
                        self.dis
                            .input_grad(&xs.matmul(&self.w), &y_map, 2 * bs, Precision::F32);
                    let w = &self.w - xs.tr().matmul(&g) * self.state.map_lr;
                    self.w = orthogonalize_step(&w, cfg.map_beta);
                });
                if (it + 1) % report_every == 0 || it + 1 == iterations {
                    let sum = recent.double_value(&[]);
                    loss_sum += sum;
                    steps += recent_steps;
                    let l = sum / recent_steps.max(1) as f64;
                    if !l.is_finite() {
                        return Err(AlignError::Numeric {
                            what: format!("adversarial epoch {epoch}"),
                            msg: "the discriminator loss is not finite".into(),
                        });
                    }
                    recent = Tensor::zeros([], (Kind::Float, dev));
                    recent_steps = 0;
                    on(Progress::Batch {
                        epoch,
                        samples: ((it + 1) * bs as usize).min(cfg.epoch_size),
                        dis_loss: l,
                    });
                }
            }
            if !bool::try_from(self.w.isfinite().all())? {
                return Err(AlignError::Numeric {
                    what: format!("adversarial epoch {epoch}"),
                    msg: "the map has non-finite entries".into(),
                });
            }
            let c = criterion(x, z, &self.w, cfg.criterion_words)?;
            // Discriminator's view, on the criterion's words.
            let n = (cfg.criterion_words as i64).max(1);
            let prob = |v: &Tensor| {
                self.dis
                    .logits(&v.narrow(0, 0, n.min(v.size()[0])))
                    .sigmoid()
                    .mean(Kind::Float)
                    .double_value(&[])
            };
            let (ps, pt) = (prob(&x.matmul(&self.w)), prob(z));
            let best = c > self.state.best_criterion;
            if best {
                self.state.best_criterion = c;
                self.best_w = self.w.copy();
            }
            self.state.epochs.push(EpochLog {
                epoch,
                dis_loss: loss_sum / steps.max(1) as f64,
                dis_src_prob: ps,
                dis_tgt_prob: pt,
                criterion: c,
                map_lr: self.state.map_lr,
                best,
                seconds: t0.elapsed().as_secs_f64(),
            });
            // MUSE's schedule: decay every epoch; halve when the criterion
            // falls below the best, from the second time on.
            self.state.map_lr = (self.state.map_lr * cfg.lr_decay).max(cfg.min_lr);
            if cfg.lr_shrink < 1.0 && c < self.state.best_criterion {
                if self.state.fell_once {
                    self.state.map_lr *= cfg.lr_shrink;
                }
                self.state.fell_once = true;
            }
            self.state.epochs_done += 1;
            if self.state.map_lr < cfg.min_lr {
                self.state.stopped = true;
            }
            on(Progress::Epoch(self));
        }
        Ok(())
    }
}

/// Procrustes refinement from `w0` whose criterion is `best`: returns the
/// best map (possibly `w0`), its criterion and the iterations' logs.
pub fn refine(
    x: &Tensor,
    z: &Tensor,
    w0: &Tensor,
    best: f64,
    cfg: &AdversarialConfig,
    mut on: impl FnMut(Progress),
) -> Result<(Tensor, f64, Vec<RefineLog>)> {
    check_inputs(x, z)?;
    let (mut w, mut best_w, mut best) = (w0.copy(), w0.copy(), best);
    let mut logs = vec![];
    for iteration in 0..cfg.refinement {
        let t0 = Instant::now();
        let mut space = Space::new(&x.matmul(&w), z)?;
        let pairs = induce(&mut space, &cfg.induce)?;
        if pairs.len() < 2 {
            return Err(AlignError::Invalid(format!(
                "refinement iteration {iteration}: the induced dictionary has {} pairs",
                pairs.len()
            )));
        }
        let (xd, zd) = paired_rows(x, z, &pairs);
        w = procrustes(&xd, &zd)?;
        let c = criterion(x, z, &w, cfg.criterion_words)?;
        let is_best = c > best;
        if is_best {
            best = c;
            best_w = w.copy();
        }
        let log = RefineLog {
            iteration,
            dictionary_pairs: pairs.len(),
            criterion: c,
            best: is_best,
            seconds: t0.elapsed().as_secs_f64(),
        };
        on(Progress::Refine(&log));
        logs.push(log);
    }
    Ok((best_w, best, logs))
}

/// The whole method result.
pub struct AdversarialResult {
    pub map: Mapping,
    pub criterion: f64,
    pub epochs: Vec<EpochLog>,
    pub refinement: Vec<RefineLog>,
    /// Seconds of the adversarial phase (epochs and their criteria) and of the refinement.
    pub adversarial_seconds: f64,
    pub refinement_seconds: f64,
}

/// Adversarial training (from `model`, fresh or resumed) then refinement.
pub fn adversarial(
    x: &Tensor,
    z: &Tensor,
    model: &mut Adversarial,
    cfg: &AdversarialConfig,
    mut on: impl FnMut(Progress),
) -> Result<AdversarialResult> {
    let t0 = Instant::now();
    model.train(x, z, cfg, &mut on)?;
    let adversarial_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (w, criterion, refinement) = refine(
        x,
        z,
        &model.best_w,
        model.state.best_criterion,
        cfg,
        &mut on,
    )?;
    Ok(AdversarialResult {
        map: Mapping { src: w, tgt: None },
        criterion,
        epochs: model.state.epochs.clone(),
        refinement,
        adversarial_seconds,
        refinement_seconds: t1.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Reduction;

    /// Autograd's loss and gradients for the same discriminator.
    fn autograd(d: &Discriminator, x: &Tensor, y: &Tensor) -> (Tensor, Vec<Tensor>, Vec<Tensor>) {
        let x = x.copy().set_requires_grad(true);
        let ws: Vec<Tensor> = d
            .weights
            .iter()
            .map(|w| w.copy().set_requires_grad(true))
            .collect();
        let bs: Vec<Tensor> = d
            .biases
            .iter()
            .map(|b| b.copy().set_requires_grad(true))
            .collect();
        let mut h = x.shallow_clone();
        for (l, (w, b)) in ws.iter().zip(&bs).enumerate() {
            h = h.matmul(w) + b;
            if l + 1 < ws.len() {
                h = h.maximum(&(&h * 0.2));
            }
        }
        let loss =
            h.view(-1)
                .binary_cross_entropy_with_logits::<Tensor>(y, None, None, Reduction::Mean);
        loss.backward();
        (
            x.grad(),
            ws.iter().map(|w| w.grad()).collect(),
            bs.iter().map(|b| b.grad()).collect(),
        )
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn hand_written_backward_matches_autograd() {
        tch::manual_seed(41);
        let d0 = Discriminator::new(6, 16, 2, 0.0, Device::Cpu);
        let x = Tensor::randn([10, 6], (Kind::Float, Device::Cpu));
        let y = Tensor::rand([10], (Kind::Float, Device::Cpu));
        let (gx, gw, gb) = autograd(&d0, &x, &y);
        let copy = |d: &Discriminator| Discriminator {
            weights: d.weights.iter().map(|w| w.copy()).collect(),
            biases: d.biases.iter().map(|b| b.copy()).collect(),
            input_dropout: d.input_dropout,
        };
        // Input gradient (the map step's), averaged over the same rows.
        let mut d = copy(&d0);
        let g = d.input_grad(&x, &y, 10, Precision::F32);
        assert!(
            max_diff(&g, &gx) < 1e-6,
            "input gradient off by {}",
            max_diff(&g, &gx)
        );
        // The fused SGD step moves every weight by −lr × its gradient.
        let lr = 0.5;
        let loss = d.train_step(&x, &y, lr, Precision::F32);
        assert!(loss.double_value(&[]) > 0.0);
        for l in 0..3 {
            let want_w = &d0.weights[l] - &gw[l] * lr;
            let want_b = &d0.biases[l] - &gb[l] * lr;
            assert!(max_diff(&d.weights[l], &want_w) < 1e-6, "layer {l} weights");
            assert!(max_diff(&d.biases[l], &want_b) < 1e-6, "layer {l} biases");
        }
        // bfloat16 products: the same gradient to bfloat16's precision.
        let mut d = copy(&d0);
        let g16 = d.input_grad(&x, &y, 10, Precision::Bf16);
        let rel = max_diff(&g16, &gx) / gx.abs().max().double_value(&[]);
        assert!(rel < 0.05, "bf16 input gradient relative error {rel}");
    }

    #[test]
    fn input_dropout_scales_kept_inputs() {
        tch::manual_seed(42);
        let d = Discriminator::new(1000, 4, 1, 0.5, Device::Cpu);
        let x = Tensor::ones([1, 1000], (Kind::Float, Device::Cpu));
        let (_, trace) = d.forward(&x, true, Kind::Float);
        let h = &trace.inputs[0];
        let zeros = h.eq(0.0).sum(Kind::Int64).int64_value(&[]);
        let twos = h.eq(2.0).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(zeros + twos, 1000);
        assert!((400..600).contains(&zeros), "{zeros} of 1000 dropped");
        let (_, trace) = d.forward(&x, false, Kind::Float);
        assert!(max_diff(&trace.inputs[0], &x) == 0.0);
    }

    #[test]
    fn checkpoint_tensors_round_trip() {
        tch::manual_seed(43);
        let cfg = AdversarialConfig {
            dis_hidden: 8,
            ..Default::default()
        };
        let mut m = Adversarial::new(5, &cfg, Device::Cpu);
        m.w = Tensor::randn([5, 5], (Kind::Float, Device::Cpu));
        m.state.epochs_done = 2;
        let back =
            Adversarial::from_tensors(m.tensors(), m.state.clone(), &cfg, 5, Device::Cpu).unwrap();
        let x = Tensor::randn([7, 5], (Kind::Float, Device::Cpu));
        assert_eq!(max_diff(&m.dis.logits(&x), &back.dis.logits(&x)), 0.0);
        assert_eq!(max_diff(&m.w, &back.w), 0.0);
        assert_eq!(back.state.epochs_done, 2);
        // Another shape is refused with the tensor's name.
        let wider = AdversarialConfig {
            dis_hidden: 16,
            ..Default::default()
        };
        let err = Adversarial::from_tensors(m.tensors(), m.state.clone(), &wider, 5, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("dis.0.weight"), "{err}");
    }

    #[test]
    fn unequal_dimensions_are_refused() {
        let x = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        let z = Tensor::zeros([4, 5], (Kind::Float, Device::Cpu));
        let cfg = AdversarialConfig::default();
        let mut m = Adversarial::new(3, &cfg, Device::Cpu);
        let err = m.train(&x, &z, &cfg, |_| {}).unwrap_err().to_string();
        assert!(err.contains("equal dimensions"), "{err}");
    }
}
