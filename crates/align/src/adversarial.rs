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
//! The adversarial phase trains through embedlab's one trainer (two
//! optimizer groups, `dis` and `map`, plain SGD; MUSE's learning-rate
//! schedule is the trainer's `Plateau`; one checkpoint format; per-epoch
//! seeds, so a resumed run repeats an uninterrupted one). Its round is
//! written by hand: the discriminator's forward and backward passes are
//! written out (checked against autograd in the tests) so that each SGD
//! update is fused into the gradient's matrix product, the map step computes
//! input gradients only, one draw of words serves the whole round, and the
//! discriminator's products can run in bfloat16 with float32 master weights
//! (`Precision::Bf16`) — the adversarial phase is dominated by the
//! `batch × hidden × hidden` products of the discriminator.
use crate::error::{AlignError, Result};
use crate::induce::{induce, mean_cosine, Build, InduceConfig};
use crate::maps::{orthogonalize_step, paired_rows, procrustes, Mapping};
pub use crate::precision::Precision;
use crate::retrieval::{Retrieval, Space};
use embedlab_train::trainer::load_best;
use embedlab_train::RunDir;
use embedlab_train::{
    Batch, Batches, EpochRecord, Group, Losses, NanPolicy, Observer, OptimConfig, Progress, Round,
    Schedule, Selection, TrainConfig, TrainError, Trainable,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

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
    /// Independent runs (adversarial phase and refinement), restart `k`
    /// seeded with [`restart_seed`]; the map kept is the one with the
    /// highest refined criterion (no dictionary needed to choose).
    #[serde(default = "one")]
    pub restarts: usize,
}

fn one() -> usize {
    1
}

/// The seed of restart `k` of a run seeded `seed`: far enough apart that
/// the restarts of runs with neighbouring seeds never share one.
pub fn restart_seed(seed: i64, k: usize) -> i64 {
    seed.wrapping_add(1000 * k as i64)
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
            restarts: 1,
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
    /// PyTorch's `nn.Linear` initialisation: U(±1/√fan_in) for weights and
    /// biases, as variables `dis.<i>.weight` and `dis.<i>.bias` of `vs`.
    pub fn new(
        vs: &nn::VarStore,
        dim: i64,
        hidden: i64,
        layers: usize,
        input_dropout: f64,
    ) -> Self {
        let device = vs.device();
        let mut sizes = vec![dim];
        sizes.extend(std::iter::repeat_n(hidden, layers));
        sizes.push(1);
        let (mut weights, mut biases) = (vec![], vec![]);
        let root = vs.root() / "dis";
        for (i, w) in sizes.windows(2).enumerate() {
            let bound = 1.0 / (w[0] as f64).sqrt();
            let u =
                |shape: &[i64]| Tensor::rand(shape, (Kind::Float, device)) * (2.0 * bound) - bound;
            let p = &root / i;
            weights.push(p.var_copy("weight", &u(&[w[0], w[1]])));
            biases.push(p.var_copy("bias", &u(&[w[1]])));
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

/// One adversarial epoch, for logs and reports.
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

impl EpochLog {
    /// The trainer's record of an adversarial epoch, in these terms.
    pub fn from_record(r: &embedlab_train::EpochRecord) -> Self {
        let v = |k: &str| r.valid.get(k).copied().unwrap_or(f64::NAN);
        Self {
            epoch: r.epoch,
            dis_loss: r
                .train
                .get("dis")
                .and_then(|m| m.get("loss"))
                .copied()
                .unwrap_or(f64::NAN),
            dis_src_prob: v("dis_src_prob"),
            dis_tgt_prob: v("dis_tgt_prob"),
            criterion: v("criterion"),
            map_lr: r.lr.get("map").copied().unwrap_or(f64::NAN),
            best: r.best,
            seconds: r.seconds,
        }
    }
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

/// What fixes the model's shape and its loss (saved with its checkpoints).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdversarialModel {
    pub dim: i64,
    pub dis_layers: usize,
    pub dis_hidden: i64,
    pub dis_input_dropout: f64,
    pub dis_smooth: f64,
    pub dis_most_frequent: i64,
    pub map_beta: f64,
    pub criterion_words: usize,
    pub precision: Precision,
}

impl AdversarialConfig {
    /// The model part of the settings, for spaces of `dim` dimensions.
    pub fn model(&self, dim: i64) -> AdversarialModel {
        AdversarialModel {
            dim,
            dis_layers: self.dis_layers,
            dis_hidden: self.dis_hidden,
            dis_input_dropout: self.dis_input_dropout,
            dis_smooth: self.dis_smooth,
            dis_most_frequent: self.dis_most_frequent,
            map_beta: self.map_beta,
            criterion_words: self.criterion_words,
            precision: self.precision,
        }
    }
    /// The training part: two SGD groups, MUSE's schedule on the map.
    pub fn training(&self, seed: i64) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            groups: [
                (
                    "dis".to_string(),
                    OptimConfig::sgd(self.dis_lr).with_steps(self.dis_steps),
                ),
                (
                    "map".to_string(),
                    OptimConfig::sgd(self.map_lr).with_schedule(Schedule::Plateau {
                        decay: self.lr_decay,
                        shrink: self.lr_shrink,
                        min_lr: self.min_lr,
                    }),
                ),
            ]
            .into(),
            patience: None,
            seed,
            on_nan: NanPolicy::Stop,
            precision: Default::default(),
            channels_last: false,
        }
    }
    /// Range checks of every number, naming the option.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(AlignError::Invalid(m));
        if self.epoch_size < 1 || self.epoch_size > 1_000_000_000 {
            return bad(format!(
                "--epoch-size {} must be in 1..=1000000000",
                self.epoch_size
            ));
        }
        if self.batch_size < 1 || self.batch_size > 1 << 20 {
            return bad(format!(
                "--batch-size {} must be in 1..=1048576",
                self.batch_size
            ));
        }
        if self.dis_steps < 1 || self.dis_steps > 100 {
            return bad(format!("--dis-steps {} must be in 1..=100", self.dis_steps));
        }
        if self.dis_hidden < 1 || self.dis_hidden > 1 << 16 {
            return bad(format!(
                "--dis-hidden {} must be in 1..=65536",
                self.dis_hidden
            ));
        }
        if self.dis_layers > 16 {
            return bad(format!(
                "--dis-layers {} must be in 0..=16",
                self.dis_layers
            ));
        }
        if !(0.0..1.0).contains(&self.dis_input_dropout) {
            return bad(format!(
                "--dis-input-dropout {} must be in [0, 1)",
                self.dis_input_dropout
            ));
        }
        if !(0.0..0.5).contains(&self.dis_smooth) {
            return bad(format!(
                "--dis-smooth {} must be in [0, 0.5)",
                self.dis_smooth
            ));
        }
        if self.dis_most_frequent < 1 {
            return bad(format!(
                "--dis-most-frequent {} must be at least 1",
                self.dis_most_frequent
            ));
        }
        if !(self.map_beta.is_finite() && self.map_beta >= 0.0 && self.map_beta < 0.5) {
            return bad(format!("--map-beta {} must be in [0, 0.5)", self.map_beta));
        }
        if self.criterion_words < 1 {
            return bad("--criterion-words must be at least 1".into());
        }
        if self.restarts < 1 || self.restarts > 1000 {
            return bad(format!("--restarts {} must be in 1..=1000", self.restarts));
        }
        Ok(())
    }
}

/// The adversarial model: the map `W` and the discriminator, both in one
/// VarStore, over the two prepared spaces.
pub struct Adversarial {
    pub cfg: AdversarialModel,
    pub vs: nn::VarStore,
    pub w: Tensor,
    pub dis: Discriminator,
    x: Tensor,
    z: Tensor,
    y_dis: Tensor,
    y_map: Tensor,
    batch: i64,
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

/// The words one epoch draws: for each round, (k+1)·batch source rows and
/// k·batch target rows, uniformly from each side's most frequent words.
pub struct WordDraws {
    pub src_top: i64,
    pub tgt_top: i64,
    pub dis_steps: i64,
    pub epoch_size: usize,
    pub device: Device,
}

impl Batches for WordDraws {
    fn items(&self) -> usize {
        self.epoch_size
    }
    fn epoch(&self, bs: i64) -> Box<dyn Iterator<Item = Batch> + '_> {
        let rounds = self.epoch_size.div_ceil(bs as usize);
        let k = self.dis_steps;
        Box::new((0..rounds).map(move |_| {
            let si = Tensor::randint(self.src_top, [(k + 1) * bs], (Kind::Int64, self.device));
            let ti = Tensor::randint(self.tgt_top, [k * bs], (Kind::Int64, self.device));
            Batch {
                x: si,
                y: ti,
                n: bs,
            }
        }))
    }
}

impl Adversarial {
    /// Identity map (MUSE's `map_id_init`), fresh discriminator, over the
    /// prepared source `x` and target `z`.
    pub fn new(x: &Tensor, z: &Tensor, cfg: &AdversarialConfig) -> Result<Self> {
        check_inputs(x, z)?;
        cfg.check()?;
        let dim = x.size()[1];
        let device = x.device();
        let vs = nn::VarStore::new(device);
        let w = vs
            .root()
            .var_copy("W", &Tensor::eye(dim, (Kind::Float, device)));
        let dis = Discriminator::new(
            &vs,
            dim,
            cfg.dis_hidden,
            cfg.dis_layers,
            cfg.dis_input_dropout,
        );
        let bs = cfg.batch_size;
        let s = cfg.dis_smooth;
        let y_dis = Tensor::cat(
            &[
                Tensor::full([bs], 1.0 - s, (Kind::Float, device)),
                Tensor::full([bs], s, (Kind::Float, device)),
            ],
            0,
        );
        // Fooling: the source half with flipped labels, averaged over both
        // halves as MUSE does (the target half has no gradient for W).
        let y_map = Tensor::full([bs], s, (Kind::Float, device));
        Ok(Self {
            cfg: cfg.model(dim),
            vs,
            w,
            dis,
            x: x.shallow_clone(),
            z: z.shallow_clone(),
            y_dis,
            y_map,
            batch: bs,
        })
    }

    /// The draws of an epoch for this model.
    pub fn draws(&self, epoch_size: usize, dis_steps: usize) -> WordDraws {
        WordDraws {
            src_top: self.cfg.dis_most_frequent.min(self.x.size()[0]).max(1),
            tgt_top: self.cfg.dis_most_frequent.min(self.z.size()[0]).max(1),
            dis_steps: dis_steps as i64,
            epoch_size,
            device: self.x.device(),
        }
    }
}

impl From<TrainError> for AlignError {
    fn from(e: TrainError) -> Self {
        AlignError::Train(e)
    }
}

impl Trainable for Adversarial {
    type Data = WordDraws;
    type Error = AlignError;
    fn kind(&self) -> String {
        "adversarial-map".into()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("serialisable")
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn groups(&self) -> Vec<Group> {
        vec![Group::new("dis", &["dis."]), Group::new("map", &["W"])]
    }
    fn loss(&mut self, _g: &str, _b: &Batch, _at: &Progress) -> Result<Losses> {
        Err(AlignError::Invalid(
            "the adversarial model runs its own rounds".into(),
        ))
    }
    /// One round: `k` discriminator steps and one map step on one draw of
    /// words, the map's source words mapped in one product.
    fn round(&mut self, r: &mut Round<'_>) -> Result<bool> {
        let Some(b) = r.next_batch() else {
            return Ok(false);
        };
        let (dis_lr, map_lr) = (r.lr("dis"), r.lr("map"));
        let bs = self.batch;
        let k = b.y.size()[0] / bs;
        let precision = self.cfg.precision;
        let beta = self.cfg.map_beta;
        let total = tch::no_grad(|| {
            let xs = self.x.index_select(0, &b.x);
            let mapped = xs.narrow(0, 0, k * bs).matmul(&self.w);
            let zt = self.z.index_select(0, &b.y);
            let mut total = Tensor::zeros([], (Kind::Float, self.x.device()));
            for j in 0..k {
                let input =
                    Tensor::cat(&[mapped.narrow(0, j * bs, bs), zt.narrow(0, j * bs, bs)], 0);
                total += self.dis.train_step(&input, &self.y_dis, dis_lr, precision);
            }
            let xs = xs.narrow(0, k * bs, bs);
            // The map's gradient in float32 whatever the discriminator's
            // precision: one pass without weight gradients, cheap next to
            // the discriminator steps, and the map is what the run is for.
            let g = self
                .dis
                .input_grad(&xs.matmul(&self.w), &self.y_map, 2 * bs, Precision::F32);
            let w = &self.w - xs.tr().matmul(&g) * map_lr;
            self.w.copy_(&orthogonalize_step(&w, beta));
            total
        });
        r.record("dis", &Losses::single(total / k as f64), k);
        Ok(true)
    }
    fn validate(&mut self, _v: &WordDraws) -> Result<BTreeMap<String, f64>> {
        let c = criterion(&self.x, &self.z, &self.w, self.cfg.criterion_words)?;
        // The discriminator's view, on the criterion's words.
        let n = (self.cfg.criterion_words as i64).max(1);
        let prob = |v: &Tensor| {
            self.dis
                .logits(&v.narrow(0, 0, n.min(v.size()[0])))
                .sigmoid()
                .mean(Kind::Float)
                .double_value(&[])
        };
        let (ps, pt) = (prob(&self.x.matmul(&self.w)), prob(&self.z));
        Ok([
            ("criterion".to_string(), c),
            ("dis_src_prob".to_string(), ps),
            ("dis_tgt_prob".to_string(), pt),
        ]
        .into())
    }
    fn selection(&self) -> Selection {
        Selection::Max("criterion".into())
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
    mut on: impl FnMut(&RefineLog),
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
        on(&log);
        logs.push(log);
    }
    Ok((best_w, best, logs))
}

/// One restart of a run (adversarial phase and refinement).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartLog {
    pub restart: usize,
    pub seed: i64,
    /// The best epoch's criterion, before refinement.
    pub adversarial_criterion: f64,
    /// The criterion of the map this restart ends with (after refinement).
    pub criterion: f64,
    pub adversarial_seconds: f64,
    pub refinement_seconds: f64,
    /// Why its adversarial phase stopped before its epochs, if it did.
    pub stopped: Option<String>,
}

/// The whole method's result (`report.json` keeps it, less the map).
#[derive(Debug, Serialize, Deserialize)]
pub struct AdversarialResult {
    #[serde(skip)]
    pub map: Option<Mapping>,
    pub precision: Precision,
    /// The criterion of the map kept.
    pub criterion: f64,
    /// The kept restart's epochs and refinement.
    pub epochs: Vec<EpochLog>,
    pub refinement: Vec<RefineLog>,
    /// Seconds of the adversarial phases (over every invocation of a
    /// resumed run, every restart) and of the refinements.
    pub adversarial_seconds: f64,
    pub refinement_seconds: f64,
    /// Why the kept restart's adversarial phase stopped before its
    /// epochs, if it did.
    pub stopped: Option<String>,
    /// Every restart, and which one was kept (runs of one restart: empty).
    #[serde(default)]
    pub restarts: Vec<RestartLog>,
    #[serde(default)]
    pub kept_restart: usize,
}

/// What the method reports as it goes.
pub enum Event<'a> {
    /// Before each restart (only when there are several): its number
    /// (from 0), how many there are, its seed.
    Restart(usize, usize, i64),
    /// After each adversarial epoch (its checkpoint is written).
    Epoch(&'a EpochLog),
    /// After each refinement iteration.
    Refine(&'a RefineLog),
    /// After each restart (only when there are several).
    Restarted(&'a RestartLog),
}

/// The trainer's progress to `progress`, its finished epochs to `on`.
struct Forward<'a> {
    progress: &'a mut dyn Observer,
    on: &'a mut dyn FnMut(Event),
}

impl Observer for Forward<'_> {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, batches: usize) {
        self.progress.epoch_started(epoch, epochs, batches)
    }
    fn advanced(&mut self, batches: usize, status: Option<&str>) {
        self.progress.advanced(batches, status)
    }
    fn epoch_ended(&mut self) {
        self.progress.epoch_ended()
    }
    fn epoch_finished(&mut self, r: &EpochRecord) {
        (self.on)(Event::Epoch(&EpochLog::from_record(r)))
    }
    fn note(&mut self, msg: &str) {
        self.progress.note(msg)
    }
}

/// The folder of restart `k` inside a run of several restarts.
pub fn restart_folder(k: usize) -> String {
    format!("restart-{k}")
}

/// Adversarial training of the map (fresh, or from the checkpoints in
/// `run` when `resume`), seeded by `seed`, then Procrustes refinement from
/// the best epoch's map; `cfg.restarts` times, each restart in its own
/// sub-folder `restart-<k>` when there are several, keeping the map of the
/// highest refined criterion. `progress` shows the trainer's progress.
#[allow(clippy::too_many_arguments)]
pub fn adversarial(
    x: &Tensor,
    z: &Tensor,
    cfg: &AdversarialConfig,
    seed: i64,
    run: &RunDir,
    resume: bool,
    on: &mut dyn FnMut(Event),
    progress: &mut dyn Observer,
) -> Result<AdversarialResult> {
    if cfg.restarts <= 1 {
        return Ok(one_restart(x, z, cfg, seed, 0, run, resume, on, progress)?.0);
    }
    let (mut kept, mut logs) = (None::<AdversarialResult>, vec![]);
    for k in 0..cfg.restarts {
        let s = restart_seed(seed, k);
        on(Event::Restart(k, cfg.restarts, s));
        let part = run.part(&restart_folder(k))?;
        let (r, log) = one_restart(x, z, cfg, s, k, &part, resume, on, progress)?;
        on(Event::Restarted(&log));
        // The first of equal criteria stays.
        if kept.as_ref().is_none_or(|b| r.criterion > b.criterion) {
            kept = Some(r); // its kept_restart is k
        }
        logs.push(log);
    }
    let mut r = kept.expect("at least one restart");
    r.adversarial_seconds = logs.iter().map(|l| l.adversarial_seconds).sum();
    r.refinement_seconds = logs.iter().map(|l| l.refinement_seconds).sum();
    r.restarts = logs;
    Ok(r)
}

/// One restart: the adversarial phase in `run` and the refinement.
#[allow(clippy::too_many_arguments)]
fn one_restart(
    x: &Tensor,
    z: &Tensor,
    cfg: &AdversarialConfig,
    seed: i64,
    k: usize,
    run: &RunDir,
    resume: bool,
    on: &mut dyn FnMut(Event),
    progress: &mut dyn Observer,
) -> Result<(AdversarialResult, RestartLog)> {
    tch::manual_seed(seed);
    let mut model = Adversarial::new(x, z, cfg)?;
    let draws = model.draws(cfg.epoch_size, cfg.dis_steps);
    let summary = embedlab_train::train_observed(
        &mut model,
        &draws,
        &draws,
        &cfg.training(seed),
        run,
        resume,
        &mut Forward {
            progress,
            on: &mut *on,
        },
    )?;
    load_best(&model.vs, &run.path, &model.kind(), &model.config_json())?;
    let epochs: Vec<EpochLog> = run
        .metrics()
        .iter()
        .filter_map(|l| serde_json::from_value(l.clone()).ok())
        .map(|r| EpochLog::from_record(&r))
        .collect();
    let best = summary.best_value.unwrap_or(f64::NEG_INFINITY);
    let t1 = Instant::now();
    let (w, criterion, refinement) =
        refine(x, z, &model.w.detach(), best, cfg, |r| on(Event::Refine(r)))?;
    let log = RestartLog {
        restart: k,
        seed,
        adversarial_criterion: best,
        criterion,
        adversarial_seconds: summary.train_seconds,
        refinement_seconds: t1.elapsed().as_secs_f64(),
        stopped: summary.stop_reason.clone(),
    };
    let r = AdversarialResult {
        map: Some(Mapping { src: w, tgt: None }),
        precision: cfg.precision,
        criterion,
        epochs,
        refinement,
        adversarial_seconds: log.adversarial_seconds,
        refinement_seconds: log.refinement_seconds,
        stopped: summary.stop_reason,
        restarts: vec![],
        kept_restart: k,
    };
    Ok((r, log))
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
            .map(|w| w.detach().copy().set_requires_grad(true))
            .collect();
        let bs: Vec<Tensor> = d
            .biases
            .iter()
            .map(|b| b.detach().copy().set_requires_grad(true))
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

    /// Values in [−1, 1) from a private SplitMix64 stream: the data of a test
    /// that must not depend on libtorch's global generator, which the
    /// other tests of this binary draw from concurrently.
    fn fixed(shape: &[i64], seed: u64) -> Tensor {
        let n: i64 = shape.iter().product();
        let mut state = seed;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_slice(&v).view(shape)
    }

    #[test]
    fn hand_written_backward_matches_autograd() {
        let _one = embedlab_testkit::seeded();
        let vs = nn::VarStore::new(Device::Cpu);
        let mut d0 = Discriminator::new(&vs, 6, 16, 2, 0.0);
        {
            let _g = tch::no_grad_guard();
            for (i, w) in d0.weights.iter_mut().enumerate() {
                let f = fixed(&w.size(), 100 + i as u64) * 0.5;
                w.copy_(&f);
            }
            for (i, b) in d0.biases.iter_mut().enumerate() {
                let f = fixed(&b.size(), 200 + i as u64) * 0.1;
                b.copy_(&f);
            }
        }
        let x = fixed(&[10, 6], 41) * 1.7;
        let y = (fixed(&[10], 42) + 1.0) * 0.5;
        let (gx, gw, gb) = autograd(&d0, &x, &y);
        let copy = |d: &Discriminator| Discriminator {
            weights: d.weights.iter().map(|w| w.detach().copy()).collect(),
            biases: d.biases.iter().map(|b| b.detach().copy()).collect(),
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
            // float32 products summed in another order than autograd's.
            let (dw, db) = (
                max_diff(&d.weights[l], &want_w),
                max_diff(&d.biases[l], &want_b),
            );
            assert!(
                dw < 1e-5 && db < 1e-5,
                "layer {l}: weights off by {dw}, biases by {db}"
            );
        }
        // bfloat16 products: the same gradient to bfloat16's precision.
        let mut d = copy(&d0);
        let g16 = d.input_grad(&x, &y, 10, Precision::Bf16);
        let rel = max_diff(&g16, &gx) / gx.abs().max().double_value(&[]);
        assert!(rel < 0.05, "bf16 input gradient relative error {rel}");
    }

    #[test]
    fn input_dropout_scales_kept_inputs() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(42);
        let vs = nn::VarStore::new(Device::Cpu);
        let d = Discriminator::new(&vs, 1000, 4, 1, 0.5);
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
    fn unequal_dimensions_and_impossible_settings_are_refused() {
        let x = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        let z = Tensor::zeros([4, 5], (Kind::Float, Device::Cpu));
        let cfg = AdversarialConfig::default();
        let err = Adversarial::new(&x, &z, &cfg).err().unwrap().to_string();
        assert!(err.contains("equal dimensions"), "{err}");
        let z = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        for (bad, what) in [
            (
                AdversarialConfig {
                    batch_size: 0,
                    ..Default::default()
                },
                "--batch-size 0",
            ),
            (
                AdversarialConfig {
                    epoch_size: 0,
                    ..Default::default()
                },
                "--epoch-size 0",
            ),
            (
                AdversarialConfig {
                    dis_smooth: 0.7,
                    ..Default::default()
                },
                "--dis-smooth",
            ),
        ] {
            let err = Adversarial::new(&x, &z, &bad).err().unwrap().to_string();
            assert!(err.contains(what), "{err}");
        }
    }
}
