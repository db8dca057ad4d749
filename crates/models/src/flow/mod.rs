//! Normalizing flows: Glow (Kingma & Dhariwal 2018), RealNVP (Dinh et al.
//! 2017) and invertible residual networks (Behrmann et al. 2019), from one
//! set of blocks ([`blocks`], [`iresnet`]) composed into levels.
//!
//! An image x ∈ {0, …, 255}^D is dequantised (uniform noise in each bin),
//! pre-processed (x − ½, or the logit of α + (1 − 2α)x with its Jacobian
//! counted), and mapped level by level — squeeze, K steps, then half the
//! channels split off with a Gaussian prior whose mean and scale a
//! zero-initialised convolution computes from the other half — to a top
//! latent with a learned (optionally class-conditional) Gaussian prior.
//! The latents are standardised by their priors, so the code a flow
//! encodes to is N(0, I) under the model: decoding T·ε is sampling at
//! temperature T.
//!
//! Bits per dimension: −(log p(h) + log|det| of the flow + the
//! pre-processing's log-Jacobian − D·ln 256) / (D·ln 2), D the image's
//! values (28·28 for MNIST at its native size; 32·32·3 with the padded,
//! tiled layout of the published numbers).
// `a = a + b` on purpose in the flows: tch's `+=` adds in place, which
// would write into a parameter's storage or break the autograd graph.
#![allow(clippy::assign_op_pattern)]

pub mod blocks;
pub mod iresnet;

use crate::batches::Split;
use crate::capabilities::{Decode, Density, DensityKind, Encode, ImageModel, Prior, Sample};
use crate::error::{ModelError, Result};
use crate::layers::Layer;
use blocks::{ActNorm, Bijection, Coupling, Ctx, InvConv, Mask, Reverse, Squeeze};
use embedlab_train::{Batch, Better, Group, Losses, Metric, Progress, Trainable};
pub use iresnet::{Estimator, ResidualConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::nn;
use tch::{Device, Kind, Tensor};

const LN2: f64 = std::f64::consts::LN_2;
const LOG_2PI: f64 = 1.837_877_066_409_345_5;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlowKind {
    /// Actnorm, LU 1×1 convolution, coupling on channels.
    Glow,
    /// Checkerboard then channel couplings with fixed reversals.
    Realnvp,
    /// Actnorm and invertible residual blocks.
    Iresnet,
}

/// How images enter the flow.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// As they are (28 × 28 × 1 for MNIST).
    Native,
    /// Padded with zeros to 32 × 32 and the channel repeated 3 times: the
    /// layout of the published MNIST bits/dim (Glow, i-ResNet code).
    Padded32x3,
}

/// The validation bits/dim above which a flow is flagged as diverged:
/// twice the 8 bits/dim of uniform noise over 256 levels (any model worse
/// than that has left training; a Glow at initialisation scores about 9.4).
pub const DIVERGED_BPD: f64 = 16.0;

/// The base distribution of the standardised latents.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BaseDist {
    Gaussian,
    /// The standard logistic (NICE's); with the logit pre-processing and
    /// α = 0 the identity flow is exactly the uniform model (8 bits/dim).
    Logistic,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FlowConfig {
    pub kind: FlowKind,
    /// Levels (each: squeeze, `steps` steps, split — the last one without split).
    pub levels: usize,
    pub steps: usize,
    /// Width of the coupling networks.
    pub hidden: i64,
    /// Additive coupling (volume-preserving) instead of affine.
    pub additive: bool,
    /// The bound c of the couplings' log-scale c·tanh(raw/c).
    pub clamp: f64,
    /// Split half the channels off after each level but the last.
    pub split: bool,
    /// Squeeze at the start of each level (off only for data without
    /// pixels, e.g. points in the plane as 2 × 1 × 1).
    #[serde(default = "yes")]
    pub squeeze: bool,
    /// The logit pre-processing's α (None: x − ½).
    pub logit: Option<f64>,
    /// Dequantisation with uniform noise (off only for checks on
    /// continuous data).
    pub dequantize: bool,
    pub layout: Layout,
    pub base: BaseDist,
    /// A class-conditional top prior.
    pub conditional: bool,
    /// Images actnorm initialises from.
    pub init_batch: i64,
    /// The residual blocks' settings (i-ResNet).
    pub residual: ResidualConfig,
    /// Test bits/dim evaluations averaged (i-ResNet's estimate is random).
    pub eval_repeats: usize,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub classes: i64,
}

fn yes() -> bool {
    true
}

impl FlowConfig {
    /// A kind's defaults for images of `shape` (c, h, w) and `classes`.
    pub fn new(kind: FlowKind, shape: [i64; 3], classes: i64) -> Self {
        Self {
            kind,
            levels: 2,
            steps: match kind {
                FlowKind::Iresnet => 4,
                _ => 8,
            },
            hidden: 64,
            additive: false,
            clamp: 2.0,
            split: true,
            squeeze: true,
            logit: match kind {
                FlowKind::Realnvp => Some(0.05),
                _ => None,
            },
            dequantize: true,
            layout: Layout::Native,
            base: BaseDist::Gaussian,
            conditional: false,
            init_batch: 512,
            residual: ResidualConfig::default(),
            eval_repeats: match kind {
                FlowKind::Iresnet => 3,
                _ => 1,
            },
            channels: shape[0],
            height: shape[1],
            width: shape[2],
            classes,
        }
    }
    pub fn name(&self) -> &'static str {
        match self.kind {
            FlowKind::Glow => "glow",
            FlowKind::Realnvp => "realnvp",
            FlowKind::Iresnet => "iresnet",
        }
    }
    /// The shape the flow sees (after the layout).
    pub fn input_shape(&self) -> [i64; 3] {
        match self.layout {
            Layout::Native => [self.channels, self.height, self.width],
            Layout::Padded32x3 => [3, 32, 32],
        }
    }
    /// D, the values bits/dim divides by.
    pub fn dims(&self) -> i64 {
        self.input_shape().iter().product()
    }
    pub fn check(&self) -> Result<()> {
        let [_, h, w] = self.input_shape();
        let bad = |m: String| Err(ModelError::Invalid(m));
        if self.levels < 1 || self.levels > 8 || self.steps < 1 || self.steps > 256 {
            return bad(format!(
                "levels {} must be in 1..=8 and steps {} in 1..=256",
                self.levels, self.steps
            ));
        }
        let f = if self.squeeze { 1i64 << self.levels } else { 1 };
        if h % f != 0 || w % f != 0 {
            return bad(format!(
                "{} levels squeeze the image {} times: its height and width ({h}×{w}) must be divisible by {f} \
                 (28×28 allows 2 levels; --layout padded32x3 allows up to 5)",
                self.levels, self.levels
            ));
        }
        if self.layout == Layout::Padded32x3
            && (self.channels != 1 || self.height > 32 || self.width > 32)
        {
            return bad(format!(
                "the padded 32×32×3 layout takes one-channel images of at most 32×32, not {}×{}×{}",
                self.channels, self.height, self.width
            ));
        }
        if let Some(a) = self.logit {
            if !(0.0..0.5).contains(&a) {
                return bad(format!("the logit's α = {a} must be in [0, 0.5)"));
            }
        }
        if !(self.clamp > 0.0 && self.clamp.is_finite()) {
            return bad(format!(
                "the coupling scale bound {} must be > 0",
                self.clamp
            ));
        }
        if self.init_batch < 2 {
            return bad(format!(
                "actnorm needs at least 2 initialisation images, got {}",
                self.init_batch
            ));
        }
        if self.eval_repeats < 1 {
            return bad("at least one evaluation".into());
        }
        self.residual.check()
    }
}

/// The prior of a split-off half: a zero-initialised 3 × 3 convolution of
/// the kept half gives its mean and log-scale.
struct SplitPrior {
    conv: Layer,
}

/// One level: squeeze, steps, and the split prior (None for the last).
struct Level {
    steps: Vec<Box<dyn Bijection>>,
    split: Option<SplitPrior>,
}

pub struct Flow {
    pub cfg: FlowConfig,
    pub vs: nn::VarStore,
    levels: Vec<Level>,
    top_mean: Tensor,
    top_logs: Tensor,
    /// Class-conditional part of the top prior (one-hot → mean, log-scale).
    top_class: Option<Layer>,
    /// Shapes of the latent pieces in code order (each level's split-off
    /// half, then the top).
    pieces: Vec<[i64; 3]>,
}

fn zero_layer(l: Layer) -> Layer {
    let _g = tch::no_grad_guard();
    let _ = l.w.shallow_clone().zero_();
    let _ = l.b.shallow_clone().zero_();
    l
}

impl Flow {
    pub fn new(cfg: FlowConfig, device: Device) -> Result<Self> {
        cfg.check()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root() / "flow";
        let [mut c, mut h, mut w] = cfg.input_shape();
        let mut levels = vec![];
        let mut pieces = vec![];
        for l in 0..cfg.levels {
            let p = &root / format!("l{l}");
            let mut steps: Vec<Box<dyn Bijection>> = vec![];
            if cfg.squeeze {
                steps.push(Box::new(Squeeze));
                c *= 4;
                h /= 2;
                w /= 2;
            }
            for k in 0..cfg.steps {
                let s = &p / format!("s{k}");
                match cfg.kind {
                    FlowKind::Glow => {
                        steps.push(Box::new(ActNorm::new(&s / "actnorm", c)));
                        steps.push(Box::new(InvConv::new(&s / "invconv", c)?));
                        steps.push(Box::new(Coupling::new(
                            &s / "coupling",
                            c,
                            cfg.hidden,
                            Mask::Channels,
                            cfg.additive,
                            cfg.clamp,
                        )?));
                    }
                    FlowKind::Realnvp => {
                        steps.push(Box::new(ActNorm::new(&s / "actnorm", c)));
                        let mask = if k < cfg.steps.div_ceil(2) {
                            Mask::Checkerboard { parity: k % 2 == 1 }
                        } else {
                            Mask::Channels
                        };
                        steps.push(Box::new(Coupling::new(
                            &s / "coupling",
                            c,
                            cfg.hidden,
                            mask,
                            cfg.additive,
                            cfg.clamp,
                        )?));
                        if mask == Mask::Channels {
                            steps.push(Box::new(Reverse));
                        }
                    }
                    FlowKind::Iresnet => {
                        steps.push(Box::new(ActNorm::new(&s / "actnorm", c)));
                        steps.push(Box::new(iresnet::Residual::new(
                            &s / "res",
                            c,
                            (h, w),
                            &cfg.residual,
                        )?));
                    }
                }
            }
            let last = l + 1 == cfg.levels;
            let split = if !last && cfg.split {
                let keep = c / 2;
                let out = c - keep;
                pieces.push([out, h, w]);
                let conv = zero_layer(Layer::conv(&p / "prior", keep, 2 * out, 3, 1, 1, false));
                c = keep;
                Some(SplitPrior { conv })
            } else {
                None
            };
            levels.push(Level { steps, split });
        }
        pieces.push([c, h, w]);
        let top_mean = root.zeros("top_mean", &[1, c, 1, 1]);
        let top_logs = root.zeros("top_logs", &[1, c, 1, 1]);
        let top_class = cfg.conditional.then(|| {
            zero_layer(Layer::linear(
                &root / "top_class",
                cfg.classes,
                2 * c,
                false,
            ))
        });
        Ok(Self {
            cfg,
            vs,
            levels,
            top_mean,
            top_logs,
            top_class,
            pieces,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Every block in order, with its level (for the checks).
    pub fn blocks(&self) -> Vec<(usize, &dyn Bijection)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(l, lv)| lv.steps.iter().map(move |b| (l, b.as_ref())))
            .collect()
    }

    // ------------------------------------------------------ pre-processing

    /// Images in [0, 1] (k / 255) → the flow's layout, still on the grid.
    fn layout(&self, x: &Tensor) -> Tensor {
        match self.cfg.layout {
            Layout::Native => x.shallow_clone(),
            Layout::Padded32x3 => {
                let (h, w) = (self.cfg.height, self.cfg.width);
                let (top, left) = ((32 - h) / 2, (32 - w) / 2);
                x.constant_pad_nd([left, 32 - w - left, top, 32 - h - top])
                    .repeat([1, 3, 1, 1])
            }
        }
    }

    /// Dequantised values in (0, 1): (k + u) / 256, u ~ U(0, 1) (or ½, the
    /// bin's middle, when `noise` is false).
    fn dequantise(&self, x: &Tensor, noise: bool) -> Tensor {
        let k = (x * 255.0).round().clamp(0.0, 255.0);
        let u = if noise && self.cfg.dequantize {
            x.rand_like().clamp(1e-6, 1.0 - 1e-6)
        } else {
            x.full_like(0.5)
        };
        (k + u) / 256.0
    }

    /// Images in [0, 1] → the flow's input h and the pre-processing's
    /// log|det| per image: layout, dequantisation (`noise`: uniform in each
    /// bin, else the bin's middle), shift or logit.
    fn input(&self, x: &Tensor, noise: bool) -> (Tensor, Tensor) {
        self.preprocess(&self.dequantise(&self.layout(x), noise))
    }

    /// Dequantised values → the flow's input, with log|det| per image.
    pub fn preprocess(&self, xd: &Tensor) -> (Tensor, Tensor) {
        let n = xd.size()[0];
        match self.cfg.logit {
            None => (xd - 0.5, blocks::zero_logdet(xd)),
            Some(a) => {
                let s = xd * (1.0 - 2.0 * a) + a;
                let h = s.log() - (-&s + 1.0).log();
                let ld = (-(s.log()) - (-&s + 1.0).log() + (1.0 - 2.0 * a).ln())
                    .reshape([n, -1])
                    .sum_dim_intlist(1, false, xd.kind());
                (h, ld)
            }
        }
    }

    /// The flow's input → images in [0, 1] at the data's own size.
    fn postprocess(&self, h: &Tensor) -> Tensor {
        let x = match self.cfg.logit {
            None => h + 0.5,
            Some(a) => (h.sigmoid() - a) / (1.0 - 2.0 * a),
        };
        let x = x.clamp(0.0, 1.0);
        match self.cfg.layout {
            Layout::Native => x,
            Layout::Padded32x3 => {
                let (hh, ww) = (self.cfg.height, self.cfg.width);
                let (top, left) = ((32 - hh) / 2, (32 - ww) / 2);
                x.mean_dim([1i64].as_slice(), true, Kind::Float)
                    .narrow(2, top, hh)
                    .narrow(3, left, ww)
            }
        }
    }

    // --------------------------------------------------------------- priors

    fn base_logp(&self, eps: &Tensor) -> Tensor {
        let n = eps.size()[0];
        let lp = match self.cfg.base {
            BaseDist::Gaussian => (eps.square() + LOG_2PI) * -0.5,
            BaseDist::Logistic => -eps - (-eps).softplus() * 2.0,
        };
        lp.reshape([n, -1]).sum_dim_intlist(1, false, eps.kind())
    }

    fn base_sample(&self, shape: &[i64], temperature: f64) -> Tensor {
        let opts = (Kind::Float, self.device());
        let e = match self.cfg.base {
            BaseDist::Gaussian => Tensor::randn(shape, opts),
            BaseDist::Logistic => {
                let u = Tensor::rand(shape, opts).clamp(1e-6, 1.0 - 1e-6);
                u.log() - (-&u + 1.0).log()
            }
        };
        e * temperature
    }

    fn split_params(&self, sp: &SplitPrior, keep: &Tensor) -> (Tensor, Tensor) {
        // In the kept part's format (float32 in bfloat16 training: the
        // prior's log-density is a loss).
        let h = sp.conv.forward(keep).to_kind(keep.kind());
        let c = h.size()[1] / 2;
        (h.narrow(1, 0, c), h.narrow(1, c, c))
    }

    fn top_params(&self, n: i64, y: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let (mut m, mut s) = (self.top_mean.shallow_clone(), self.top_logs.shallow_clone());
        if let Some(l) = &self.top_class {
            let y = y.ok_or_else(|| {
                ModelError::Invalid("a class-conditional flow needs the images' labels".into())
            })?;
            let oh = y.onehot(self.cfg.classes).to_kind(self.top_mean.kind());
            let h = l.forward(&oh).to_kind(self.top_mean.kind());
            let c = h.size()[1] / 2;
            m = m + h.narrow(1, 0, c).reshape([n, c, 1, 1]);
            s = s + h.narrow(1, c, c).reshape([n, c, 1, 1]);
        }
        Ok((m, s))
    }

    /// (ε, log p(z)) for a latent z under the prior with mean m, log-scale s.
    fn standardise(&self, z: &Tensor, m: &Tensor, s: &Tensor) -> (Tensor, Tensor) {
        let n = z.size()[0];
        let eps = (z - m) * (-s).exp();
        let logdet = s
            .expand_as(z)
            .reshape([n, -1])
            .sum_dim_intlist(1, false, z.kind());
        let lp = self.base_logp(&eps) - logdet;
        (eps, lp)
    }

    // ------------------------------------------------------- the two passes

    /// The flow's input h → (the standardised code, n × D; log p(h) per image).
    /// With `init`, every uninitialised actnorm sets itself from what reaches it.
    pub fn forward_codes(
        &self,
        h: &Tensor,
        y: Option<&Tensor>,
        ctx: Ctx,
        init: bool,
    ) -> Result<(Tensor, Tensor)> {
        let n = h.size()[0];
        let mut x = h.shallow_clone();
        let mut logp = Tensor::zeros([n], (h.kind(), self.device()));
        let mut codes = vec![];
        for lv in &self.levels {
            for b in &lv.steps {
                if init {
                    b.init_from(&x)?;
                }
                let (nx, ld) = b.forward(&x, ctx)?;
                x = nx;
                logp = logp + ld;
            }
            if let Some(sp) = &lv.split {
                let c = x.size()[1];
                let keep = x.narrow(1, 0, c / 2);
                let out = x.narrow(1, c / 2, c - c / 2);
                let (m, s) = self.split_params(sp, &keep);
                let (eps, lp) = self.standardise(&out, &m, &s);
                logp = logp + lp;
                codes.push(eps.reshape([n, -1]));
                x = keep;
            }
        }
        let (m, s) = self.top_params(n, y)?;
        let (eps, lp) = self.standardise(&x, &m, &s);
        codes.push(eps.reshape([n, -1]));
        Ok((Tensor::cat(&codes, 1), logp + lp))
    }

    /// A standardised code (n × D) → the flow's input h.
    pub fn inverse_codes(&self, codes: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let n = codes.size()[0];
        let mut parts = vec![];
        let mut at = 0;
        for s in &self.pieces {
            let len = s[0] * s[1] * s[2];
            parts.push(codes.narrow(1, at, len).reshape([n, s[0], s[1], s[2]]));
            at += len;
        }
        if at != codes.size()[1] {
            return Err(ModelError::Invalid(format!(
                "a code of {} values; this flow's codes have {at}",
                codes.size()[1]
            )));
        }
        let top = parts.pop().expect("the top piece");
        let (m, s) = self.top_params(n, y)?;
        let mut x = &m + top * s.exp();
        for lv in self.levels.iter().rev() {
            if let Some(sp) = &lv.split {
                let eps = parts.pop().expect("one piece per split");
                let (m, s) = self.split_params(sp, &x);
                let out = m + eps * s.exp();
                x = Tensor::cat(&[x, out], 1);
            }
            for b in lv.steps.iter().rev() {
                x = b.inverse(&x)?;
            }
        }
        Ok(x)
    }

    /// −log P(x) in nats per image for images in [0, 1] (k / 255): the
    /// dequantised density's bound, with the pre-processing's Jacobian and
    /// D·ln 256 for the bins.
    pub fn nll_images(&self, x: &Tensor, y: Option<&Tensor>, ctx: Ctx) -> Result<Tensor> {
        let (h, ld_pre) = self.input(x, true);
        let (_, logp) = self.forward_codes(&h, y, ctx, false)?;
        Ok(-(logp + ld_pre) + self.cfg.dims() as f64 * 256f64.ln())
    }

    /// Bits per dimension of a per-image NLL in nats.
    pub fn bits_per_dim(&self, nll: &Tensor) -> Tensor {
        nll / (self.cfg.dims() as f64 * LN2)
    }

    /// Sets every actnorm from `x` (images in [0, 1]).
    pub fn initialise(&self, x: &Tensor, y: Option<&Tensor>) -> Result<()> {
        let _g = tch::no_grad_guard();
        let (h, _) = self.input(x, true);
        let _ = self.forward_codes(&h, y, Ctx::default(), true)?;
        Ok(())
    }

    fn labels<'a>(&self, y: &'a Tensor) -> Option<&'a Tensor> {
        self.cfg.conditional.then_some(y)
    }

    /// Mean test bits/dim over a split (one dequantisation draw each).
    pub fn split_bpd(&self, split: &Split, batch: i64) -> Result<f64> {
        let mut total = 0.0;
        for (x, y) in split.batches(batch) {
            let nll = {
                let _g = tch::no_grad_guard();
                self.nll_images(&x, self.labels(&y), Ctx::default())?
            };
            total += self.bits_per_dim(&nll).sum(Kind::Double).double_value(&[]);
        }
        Ok(total / split.len().max(1) as f64)
    }

    /// Largest |h − f⁻¹(f(h))| over images, in the flow's input space, and
    /// the residual blocks' worst fixed-point (iterations, last change).
    pub fn inverse_error(&self, x: &Tensor, y: Option<&Tensor>) -> Result<(f64, usize, f64)> {
        let (h, _) = self.input(x, true);
        let codes = {
            let _g = tch::no_grad_guard();
            self.forward_codes(&h, y, Ctx::default(), false)?.0
        };
        let back = self.inverse_codes(&codes, y)?;
        let err = (back - &h).abs().max().double_value(&[]);
        let (mut it, mut ch) = (0, 0.0f64);
        for (_, b) in self.blocks() {
            if let Some(r) = b.residual() {
                let (i, c) = r.last_inverse();
                it = it.max(i);
                ch = ch.max(c);
            }
        }
        Ok((err, it, ch))
    }

    pub fn is_estimated(&self) -> bool {
        // The first level's blocks see all D values; estimated there or nowhere.
        self.cfg.kind == FlowKind::Iresnet && self.cfg.dims() > self.cfg.residual.exact_max
    }
}

/// Mean and sample standard deviation (0 for a single value).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

/// One block's checks on real inputs (see [`Flow::check_blocks`]).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct BlockCheck {
    pub level: usize,
    pub block: String,
    /// Values per image the block sees.
    pub dims: i64,
    /// Largest |x − f⁻¹(f(x))|.
    pub round_trip: f64,
    /// The block's own log-determinant (the mean over draws for an estimator).
    pub logdet: f64,
    /// The estimator's standard deviation over draws (0 when exact).
    pub logdet_sd: f64,
    /// log|det| of the Jacobian built by autograd, one column per value.
    pub brute_force: f64,
    /// Residual blocks: the largest singular value of J_g at the image.
    pub jacobian_sigma: Option<f64>,
    /// Residual blocks: each convolution's σ from its power iteration
    /// beside its operator norm computed apart.
    pub layers: Vec<LayerCheck>,
    /// Residual blocks: fixed-point iterations and last change of the inverse.
    pub inverse_iterations: Option<(usize, f64)>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LayerCheck {
    /// σ of the normalised operator as the model sees it (power-iteration
    /// estimate after the soft scaling).
    pub sigma_estimate: f64,
    /// Its largest singular value: from the SVD of the dense operator where
    /// it has at most 4096 × 4096 entries, else 1000 fresh power iterations.
    pub sigma_true: f64,
    pub how: String,
    pub coeff: f64,
}

impl Flow {
    /// The input each block sees for the flow input `h`, in block order.
    pub fn trace(&self, h: &Tensor) -> Result<Vec<Tensor>> {
        let _g = tch::no_grad_guard();
        let mut x = h.shallow_clone();
        let mut out = vec![];
        for lv in &self.levels {
            for b in &lv.steps {
                out.push(x.shallow_clone());
                x = b.forward(&x, Ctx::default())?.0;
            }
            if lv.split.is_some() {
                x = x.narrow(1, 0, x.size()[1] / 2);
            }
        }
        Ok(out)
    }

    /// Every block's round trip and log-determinant against a brute-force
    /// Jacobian on the test image `x` (one image; its Jacobians have as
    /// many columns as the block has inputs), and for residual blocks the
    /// Lipschitz checks. `draws`: evaluations of an estimated
    /// log-determinant. Run it on a double-precision copy for tight checks.
    pub fn check_blocks(&self, x: &Tensor, draws: usize) -> Result<Vec<BlockCheck>> {
        let (h, _) = self.input(x, false);
        let inputs = self.trace(&h.narrow(0, 0, 1))?;
        let mut out = vec![];
        for ((level, b), xin) in self.blocks().into_iter().zip(inputs) {
            let dims = xin.numel() as i64;
            let (y, _) = b.forward(&xin, Ctx::default())?;
            let back = b.inverse(&y)?;
            let round_trip = (back - &xin).abs().max().double_value(&[]);
            let inverse_iterations = b.residual().map(|r| r.last_inverse());
            let vals: Vec<f64> = (0..draws.max(1))
                .map(|_| -> Result<f64> {
                    Ok(b.forward(&xin, Ctx::default())?.1.double_value(&[0]))
                })
                .collect::<Result<_>>()?;
            let (mean, sd) = mean_sd(&vals);
            // The Jacobian of the whole block, row by row through autograd.
            let jac = tch::with_grad(|| -> Result<Tensor> {
                let xg = xin.detach().set_requires_grad(true);
                let (yy, _) = b.forward(&xg, Ctx::default())?;
                let yy = if yy.requires_grad() {
                    yy
                } else {
                    // The residual block detaches in evaluation: rebuild it.
                    match b.residual() {
                        Some(r) => &xg + r.g(&xg),
                        None => yy,
                    }
                };
                Ok(blocks::jacobian(&yy, &xg, false)
                    .get(0)
                    .to_kind(Kind::Double))
            })?;
            let brute_force = Tensor::linalg_slogdet(&jac).1.double_value(&[]);
            let (mut jacobian_sigma, mut layers) = (None, vec![]);
            if let Some(r) = b.residual() {
                let eye = Tensor::eye(dims, (Kind::Double, jac.device()));
                jacobian_sigma = Some((&jac - eye).svd(true, false).1.double_value(&[0]));
                for c in &r.convs {
                    let est = {
                        let _g = tch::no_grad_guard();
                        let s = c.sigma().double_value(&[]);
                        s / (s / r.cfg.coeff).max(1.0)
                    };
                    let (t, how) = c.operator_norm();
                    layers.push(LayerCheck {
                        sigma_estimate: est,
                        sigma_true: t,
                        how,
                        coeff: r.cfg.coeff,
                    });
                }
            }
            out.push(BlockCheck {
                level,
                block: b.label(),
                dims,
                round_trip,
                logdet: mean,
                logdet_sd: sd,
                brute_force,
                jacobian_sigma,
                layers,
                inverse_iterations,
            });
        }
        Ok(out)
    }
}

impl Trainable for Flow {
    type Data = Split;
    type Error = ModelError;
    fn kind(&self) -> String {
        self.cfg.name().into()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("serialisable")
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn groups(&self) -> Vec<Group> {
        vec![Group::new("model", &["flow"])]
    }
    fn init_from_data(&mut self, data: &Split) -> Result<()> {
        let n = self.cfg.init_batch.min(data.len());
        let idx = Tensor::randperm(data.len(), (Kind::Int64, data.x.device())).narrow(0, 0, n);
        let x = data.x.index_select(0, &idx);
        let y = data.y.index_select(0, &idx);
        self.initialise(&x, self.labels(&y))
    }
    fn loss(&mut self, _group: &str, b: &Batch, _at: &Progress) -> Result<Losses> {
        for (_, blk) in self.blocks() {
            blk.before_step();
        }
        let ctx = Ctx {
            train: true,
            exact: false,
        };
        let nll = self.nll_images(&b.x, self.labels(&b.y), ctx)?;
        let bpd = self.bits_per_dim(&nll).mean(Kind::Float);
        Ok(Losses::single(bpd))
    }
    /// A training mean above [`DIVERGED_BPD`] bits/dim has left training
    /// (a flow at initialisation scores 8–10): the trainer rolls back or
    /// stops, as for a NaN. Without it a learning rate too high for
    /// RealNVP ran to 1e14 bits/dim with every number finite and
    /// "finished" (docs/studies.md).
    fn loss_ceiling(&self, _group: &str) -> Option<f64> {
        Some(DIVERGED_BPD)
    }
    /// Validation bits/dim, and the divergence flag GANs have: a flow has
    /// diverged when its validation bits/dim is not finite or above
    /// [`DIVERGED_BPD`].
    fn validate(&mut self, valid: &Split) -> Result<BTreeMap<String, f64>> {
        let bpd = self.split_bpd(valid, 500)?;
        let diverged = if bpd.is_finite() && bpd <= DIVERGED_BPD {
            0.0
        } else {
            1.0
        };
        Ok([
            ("loss".to_string(), bpd),
            ("bpd".to_string(), bpd),
            ("diverged".to_string(), diverged),
        ]
        .into())
    }
}

impl Encode for Flow {
    fn code_dim(&self) -> i64 {
        self.cfg.dims()
    }
    fn needs_labels(&self) -> bool {
        self.cfg.conditional
    }
    fn what(&self) -> String {
        format!("{} codes (standardised latents)", self.describe_kind())
    }
    /// The images at their bins' middles, mapped to ε (no noise: the same
    /// image always gets the same code).
    fn encode(&self, x: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let (h, _) = self.input(x, false);
        let _g = tch::no_grad_guard();
        Ok(self.forward_codes(&h, y, Ctx::default(), false)?.0)
    }
}

impl Decode for Flow {
    fn latent_dim(&self) -> i64 {
        self.cfg.dims()
    }
    fn needs_labels(&self) -> bool {
        self.cfg.conditional
    }
    fn prior(&self) -> Prior {
        match self.cfg.base {
            BaseDist::Gaussian => Prior::StandardNormal,
            BaseDist::Logistic => Prior::Codes,
        }
    }
    fn decode(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        Ok(self.postprocess(&self.inverse_codes(z, y)?))
    }
}

impl Sample for Flow {
    fn needs_labels(&self) -> bool {
        self.cfg.conditional
    }
    fn sample(&self, n: i64, y: Option<&Tensor>, temperature: f64) -> Result<Tensor> {
        let eps = self.base_sample(&[n, self.cfg.dims()], temperature);
        self.decode(&eps, y)
    }
}

impl Density for Flow {
    fn needs_labels(&self) -> bool {
        self.cfg.conditional
    }
    fn density_kind(&self, _samples: i64) -> DensityKind {
        if self.is_estimated() {
            DensityKind::Estimate(format!(
                "log det(I + J) of the residual blocks by the {} ({} terms, {} probe{})",
                match self.cfg.residual.estimator {
                    Estimator::Series => "truncated power series",
                    Estimator::Roulette => "Russian-roulette series",
                },
                self.cfg.residual.terms,
                self.cfg.residual.probes,
                if self.cfg.residual.probes == 1 {
                    ""
                } else {
                    "s"
                }
            ))
        } else {
            DensityKind::Exact
        }
    }
    fn nll(&self, x: &Tensor, y: Option<&Tensor>, _samples: i64) -> Result<Tensor> {
        let nll = self.nll_images(x, y, Ctx::default())?;
        Ok(nll.detach())
    }
}

impl Flow {
    fn describe_kind(&self) -> &'static str {
        match self.cfg.kind {
            FlowKind::Glow => "Glow",
            FlowKind::Realnvp => "RealNVP",
            FlowKind::Iresnet => "i-ResNet",
        }
    }
    /// The bits/dim convention, said beside every number.
    pub fn convention(&self) -> String {
        let [c, h, w] = self.cfg.input_shape();
        format!(
            "{}{h}×{w}×{c} ({} values), 256 bins, uniform dequantisation{}",
            match self.cfg.layout {
                Layout::Native => "native ",
                Layout::Padded32x3 => "padded and tiled to ",
            },
            self.cfg.dims(),
            match self.cfg.logit {
                Some(a) => format!(", logit pre-processing (α = {a}) with its Jacobian"),
                None => ", x − ½".into(),
            }
        )
    }
}

impl ImageModel for Flow {
    fn name(&self) -> String {
        self.cfg.name().into()
    }
    fn describe(&self) -> String {
        let c = &self.cfg;
        let mut s = format!(
            "{}{} ({} levels × {} steps, hidden {}",
            if c.conditional {
                "class-conditional "
            } else {
                ""
            },
            self.describe_kind(),
            c.levels,
            c.steps,
            match c.kind {
                FlowKind::Iresnet => c.residual.hidden,
                _ => c.hidden,
            }
        );
        match c.kind {
            FlowKind::Iresnet => s.push_str(&format!(
                ", Lipschitz c = {}, {} log-det {} terms",
                c.residual.coeff,
                match c.residual.estimator {
                    Estimator::Series => "series",
                    Estimator::Roulette => "roulette",
                },
                c.residual.terms
            )),
            _ => s.push_str(if c.additive { ", additive" } else { ", affine" }),
        }
        if c.layout == Layout::Padded32x3 {
            s.push_str(", padded 32×32×3");
        }
        s.push(')');
        s
    }
    fn classes(&self) -> i64 {
        self.cfg.classes
    }
    fn encoder(&self) -> Option<&dyn Encode> {
        Some(self)
    }
    fn decoder(&self) -> Option<&dyn Decode> {
        Some(self)
    }
    fn sampler(&self) -> Option<&dyn Sample> {
        Some(self)
    }
    fn density(&self) -> Option<&dyn Density> {
        Some(self)
    }
    fn family_metrics(&self, test: &Split) -> Result<Vec<Metric>> {
        let mut out = vec![];
        let reps: Vec<f64> = (0..self.cfg.eval_repeats)
            .map(|_| self.split_bpd(test, 500))
            .collect::<Result<_>>()?;
        let (mean, sd) = mean_sd(&reps);
        let spread = if reps.len() > 1 {
            format!(
                "; mean of {} evaluations, sd {sd:.4} (dequantisation{})",
                reps.len(),
                if self.is_estimated() {
                    " and the log-det estimator"
                } else {
                    ""
                }
            )
        } else {
            String::new()
        };
        out.push(Metric {
            name: "test bits/dim".into(),
            value: mean,
            unit: "bits/dim".into(),
            better: Better::Lower,
            note: Some(format!(
                "{} test images, {}{spread}",
                test.len(),
                self.convention()
            )),
        });
        if reps.len() > 1 {
            out.push(Metric {
                name: "test bits/dim sd".into(),
                value: sd,
                unit: "bits/dim".into(),
                better: Better::Lower,
                note: Some("spread over repeated evaluations".into()),
            });
        }
        let sub = test.head(500);
        let y = self.labels(&sub.y);
        let (err, it, ch) = self.inverse_error(&sub.x, y)?;
        out.push(Metric {
            name: "inverse error (max)".into(),
            value: err,
            unit: "".into(),
            better: Better::Lower,
            note: Some(format!(
                "largest |h − f⁻¹(f(h))| over {} test images in the flow's input space{}",
                sub.len(),
                if self.cfg.kind == FlowKind::Iresnet {
                    format!("; fixed-point inverse: at most {it} iterations, last change {ch:.1e}")
                } else {
                    String::new()
                }
            )),
        });
        Ok(out)
    }
}
