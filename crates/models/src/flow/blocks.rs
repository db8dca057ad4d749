//! The bijections flows are built from. Each maps an n × c × h × w tensor
//! to one of the same size (squeeze changes the shape, not the size) and
//! reports log|det ∂y/∂x| per image; each inverts exactly (up to float
//! rounding, or to a fixed-point tolerance for the residual blocks).
use crate::error::{ModelError, Result};
use crate::layers::Layer;
use tch::nn;
use tch::{Kind, Tensor};

/// How a block is run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctx {
    /// Training: the i-ResNet log-determinant keeps its graph (its gradient
    /// reaches the weights).
    pub train: bool,
    /// The exact log-determinant (the i-ResNet blocks' brute-force
    /// Jacobian), for checks on small inputs.
    pub exact: bool,
}

/// An invertible map with its log-determinant.
pub trait Bijection {
    /// What the block is ("actnorm 4", "affine coupling (channels) 4→512→8").
    fn label(&self) -> String;
    /// x → (y, log|det ∂y/∂x| per image, a float tensor of n).
    fn forward(&self, x: &Tensor, ctx: Ctx) -> Result<(Tensor, Tensor)>;
    fn inverse(&self, y: &Tensor) -> Result<Tensor>;
    /// Data-dependent initialisation from a batch of its inputs (actnorm);
    /// a no-op once done.
    fn init_from(&self, _x: &Tensor) -> Result<()> {
        Ok(())
    }
    /// Before each training step (the residual blocks' power iteration).
    fn before_step(&self) {}
    /// The residual block behind this bijection, for the Lipschitz checks.
    fn residual(&self) -> Option<&super::iresnet::Residual> {
        None
    }
}

/// A per-image zero log-determinant.
pub fn zero_logdet(x: &Tensor) -> Tensor {
    Tensor::zeros([x.size()[0]], (x.kind(), x.device()))
}

/// The Jacobian of `out` with respect to `x`, image by image (images must
/// not depend on each other): n × (values of an output) × (values of an
/// input), one backward pass per output value. With `create_graph` it is
/// differentiable (the residual blocks' exact log-determinant in training).
pub fn jacobian(out: &Tensor, x: &Tensor, create_graph: bool) -> Tensor {
    let n = x.size()[0];
    let flat = out.reshape([n, -1]);
    let rows: Vec<Tensor> = (0..flat.size()[1])
        .map(|i| {
            let s = flat.select(1, i).sum(out.kind());
            Tensor::run_backward(&[s], &[x], true, create_graph)
                .pop()
                .expect("one input")
                .reshape([n, -1])
        })
        .collect();
    Tensor::stack(&rows, 1)
}

fn spatial(x: &Tensor) -> i64 {
    let s = x.size();
    s[2] * s[3]
}

// ------------------------------------------------------------------ actnorm

/// Activation normalisation (Glow): y = (x + b) · exp(s) per channel, b
/// and s set from the first batch so that the output has zero mean and
/// unit variance per channel; the `initialised` flag is a buffer, so a
/// resumed or reloaded model does not initialise again.
pub struct ActNorm {
    loc: Tensor,
    logs: Tensor,
    initialised: Tensor,
    channels: i64,
    name: String,
}

impl ActNorm {
    pub fn new(p: nn::Path, channels: i64) -> Self {
        Self {
            loc: p.zeros("loc", &[1, channels, 1, 1]),
            logs: p.zeros("logs", &[1, channels, 1, 1]),
            initialised: p.zeros_no_train("initialised", &[1]),
            channels,
            name: p.components().collect::<Vec<_>>().join("."),
        }
    }
    pub fn is_initialised(&self) -> bool {
        self.initialised.double_value(&[0]) > 0.5
    }
}

impl Bijection for ActNorm {
    fn label(&self) -> String {
        format!("actnorm {}", self.channels)
    }
    fn forward(&self, x: &Tensor, _ctx: Ctx) -> Result<(Tensor, Tensor)> {
        let y = (x + &self.loc) * self.logs.exp();
        let ld = (self.logs.sum(x.kind()) * spatial(x) as f64).expand([x.size()[0]], true);
        Ok((y, ld))
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y * (-&self.logs).exp() - &self.loc)
    }
    fn init_from(&self, x: &Tensor) -> Result<()> {
        if self.is_initialised() {
            return Ok(());
        }
        let _g = tch::no_grad_guard();
        let xd = x.to_kind(Kind::Double);
        let mean = xd.mean_dim([0i64, 2, 3].as_slice(), true, Kind::Double);
        let std = (&xd - &mean)
            .square()
            .mean_dim([0i64, 2, 3].as_slice(), true, Kind::Double)
            .sqrt();
        let stds: Vec<f64> = Vec::try_from(std.flatten(0, -1))?;
        if let Some((c, s)) = stds
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s > 1e-6))
        {
            return Err(ModelError::Invalid(format!(
                "actnorm `{}`: channel {c} is constant over the {} initialisation images (standard deviation {s:.2e}); \
                 its scale cannot be set from data — use a larger --init-batch, keep the dequantisation noise, or check the images",
                self.name,
                x.size()[0]
            )));
        }
        let mut loc = self.loc.shallow_clone();
        loc.copy_(&(-mean).to_kind(Kind::Float));
        let mut logs = self.logs.shallow_clone();
        logs.copy_(&(-std.log()).to_kind(Kind::Float));
        let mut f = self.initialised.shallow_clone();
        let _ = f.fill_(1.0);
        Ok(())
    }
}

// ------------------------------------------------------------ 1×1 convolution

/// Glow's invertible 1×1 convolution, LU-parametrised: W = P L (U +
/// diag(sign · exp(log|s|))), with the permutation P and the signs fixed
/// (buffers), L unit lower and U strictly upper triangular. The
/// log-determinant h·w·Σ log|s| and the inverse are computed in double
/// precision.
pub struct InvConv {
    lower: Tensor,
    upper: Tensor,
    log_s: Tensor,
    perm: Tensor,
    sign_s: Tensor,
    channels: i64,
}

impl InvConv {
    /// Starts from a random rotation (QR of a Gaussian matrix; the caller
    /// seeds the generator).
    pub fn new(p: nn::Path, c: i64) -> Result<Self> {
        let dev = p.device();
        let q = Tensor::linalg_qr(&Tensor::randn([c, c], (Kind::Double, dev)), "reduced").0;
        let (pm, l, u) = Tensor::linalg_lu(&q, true);
        let s = u.diagonal(0, 0, 1);
        let this = Self {
            lower: p.zeros("lower", &[c, c]),
            upper: p.zeros("upper", &[c, c]),
            log_s: p.zeros("log_s", &[c]),
            perm: p.zeros_no_train("perm", &[c, c]),
            sign_s: p.zeros_no_train("sign_s", &[c]),
            channels: c,
        };
        let _g = tch::no_grad_guard();
        for (t, v) in [
            (&this.lower, l.tril(-1)),
            (&this.upper, u.triu(1)),
            (&this.log_s, s.abs().log()),
            (&this.perm, pm),
            (&this.sign_s, s.sign()),
        ] {
            t.shallow_clone().copy_(&v.to_kind(Kind::Float));
        }
        Ok(this)
    }
    /// W in double precision (differentiable in the parameters).
    pub fn weight_double(&self) -> Tensor {
        let c = self.channels;
        let dev = self.lower.device();
        let eye = Tensor::eye(c, (Kind::Double, dev));
        let l = self.lower.to_kind(Kind::Double).tril(-1) + &eye;
        let u = self.upper.to_kind(Kind::Double).triu(1)
            + (self.sign_s.to_kind(Kind::Double) * self.log_s.to_kind(Kind::Double).exp())
                .diag_embed(0, -2, -1);
        self.perm.to_kind(Kind::Double).matmul(&l).matmul(&u)
    }
}

impl Bijection for InvConv {
    fn label(&self) -> String {
        format!("invertible 1×1 conv (LU) {}", self.channels)
    }
    fn forward(&self, x: &Tensor, _ctx: Ctx) -> Result<(Tensor, Tensor)> {
        let c = self.channels;
        let w = self.weight_double().to_kind(x.kind()).reshape([c, c, 1, 1]);
        // In the input's format even in bfloat16 training: the map must be
        // the one whose log-determinant is counted (and it is cheap).
        let y = {
            let _f32 = embedlab_train::Autocast::suspend(x.device());
            x.conv2d(&w, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
        };
        let ld = (self.log_s.to_kind(Kind::Double).sum(Kind::Double) * spatial(x) as f64)
            .to_kind(x.kind())
            .expand([x.size()[0]], true);
        Ok((y, ld))
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let c = self.channels;
        let winv = Tensor::linalg_inv(&self.weight_double())
            .to_kind(y.kind())
            .reshape([c, c, 1, 1]);
        Ok(y.conv2d(&winv, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1))
    }
}

// ------------------------------------------------------------------ squeeze

/// c × h × w → 4c × h/2 × w/2 (each 2 × 2 patch becomes four channels).
pub struct Squeeze;

impl Bijection for Squeeze {
    fn label(&self) -> String {
        "squeeze".into()
    }
    fn forward(&self, x: &Tensor, _ctx: Ctx) -> Result<(Tensor, Tensor)> {
        let s = x.size();
        if s[2] % 2 != 0 || s[3] % 2 != 0 {
            return Err(ModelError::Invalid(format!(
                "squeeze needs an even height and width, got {}×{}",
                s[2], s[3]
            )));
        }
        Ok((x.pixel_unshuffle(2), zero_logdet(x)))
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.pixel_shuffle(2))
    }
}

/// A fixed permutation of the channels: their order reversed (RealNVP's
/// alternation between channel couplings).
pub struct Reverse;

impl Bijection for Reverse {
    fn label(&self) -> String {
        "reverse channels".into()
    }
    fn forward(&self, x: &Tensor, _ctx: Ctx) -> Result<(Tensor, Tensor)> {
        Ok((x.flip([1]), zero_logdet(x)))
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.flip([1]))
    }
}

// ----------------------------------------------------------------- coupling

/// Which part of the input a coupling leaves unchanged and conditions on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mask {
    /// The first ⌊c/2⌋ channels.
    Channels,
    /// The pixels with (i + j) even (`parity` false) or odd (true), across
    /// every channel.
    Checkerboard { parity: bool },
}

/// Affine coupling y_b = x_b · exp(s(x_a)) + t(x_a), x_a unchanged, with a
/// bounded log-scale s = c·tanh(raw / c) (so no exp overflows); additive
/// coupling (s = 0) as an option. The network is conv 3×3 → ReLU → conv
/// 1×1 → ReLU → conv 3×3 whose last layer starts at zero, so each
/// coupling starts as the identity.
pub struct Coupling {
    l1: Layer,
    l2: Layer,
    out: Layer,
    mask: Mask,
    additive: bool,
    clamp: f64,
    channels: i64,
    hidden: i64,
}

impl Coupling {
    pub fn new(
        p: nn::Path,
        channels: i64,
        hidden: i64,
        mask: Mask,
        additive: bool,
        clamp: f64,
    ) -> Result<Self> {
        let (cin, cout) = match mask {
            Mask::Channels => {
                if channels < 2 {
                    return Err(ModelError::Invalid(format!(
                        "a channel coupling needs at least 2 channels, got {channels}"
                    )));
                }
                (channels / 2, channels - channels / 2)
            }
            Mask::Checkerboard { .. } => (channels, channels),
        };
        let per = if additive { 1 } else { 2 };
        let l1 = Layer::conv(&p / "l1", cin, hidden, 3, 1, 1, false);
        let l2 = Layer::conv(&p / "l2", hidden, hidden, 1, 1, 0, false);
        let out = Layer::conv(&p / "out", hidden, per * cout, 3, 1, 1, false);
        {
            let _g = tch::no_grad_guard();
            let _ = out.w.shallow_clone().zero_();
            let _ = out.b.shallow_clone().zero_();
        }
        Ok(Self {
            l1,
            l2,
            out,
            mask,
            additive,
            clamp,
            channels,
            hidden,
        })
    }

    fn net(&self, x: &Tensor) -> Tensor {
        self.out
            .forward(&self.l2.forward(&self.l1.forward(x).relu()).relu())
    }

    /// (shift, log-scale) for the changed part, from the kept part.
    fn params(&self, cond: &Tensor) -> (Tensor, Option<Tensor>) {
        // The network's products may run in bfloat16 (autocast); the
        // shift, the log-scale and so the log-determinant are in the
        // input's format.
        let h = self.net(cond).to_kind(cond.kind());
        if self.additive {
            return (h, None);
        }
        let c = h.size()[1] / 2;
        let t = h.narrow(1, 0, c);
        let raw = h.narrow(1, c, c);
        let s = (raw / self.clamp).tanh() * self.clamp;
        (t, Some(s))
    }

    fn checker(&self, x: &Tensor, parity: bool) -> Tensor {
        let s = x.size();
        let (h, w) = (s[2], s[3]);
        let dev = x.device();
        let i = Tensor::arange(h, (Kind::Int64, dev)).reshape([h, 1]);
        let j = Tensor::arange(w, (Kind::Int64, dev)).reshape([1, w]);
        let m = (i + j).remainder(2).eq(if parity { 1 } else { 0 });
        m.to_kind(x.kind()).reshape([1, 1, h, w])
    }
}

impl Bijection for Coupling {
    fn label(&self) -> String {
        let how = if self.additive { "additive" } else { "affine" };
        let m = match self.mask {
            Mask::Channels => "channels".to_string(),
            Mask::Checkerboard { parity } => format!("checkerboard {}", u8::from(parity)),
        };
        format!(
            "{how} coupling ({m}) {}, hidden {}",
            self.channels, self.hidden
        )
    }
    fn forward(&self, x: &Tensor, _ctx: Ctx) -> Result<(Tensor, Tensor)> {
        let n = x.size()[0];
        match self.mask {
            Mask::Channels => {
                let ca = self.channels / 2;
                let xa = x.narrow(1, 0, ca);
                let xb = x.narrow(1, ca, self.channels - ca);
                let (t, s) = self.params(&xa);
                let (yb, ld) = match s {
                    Some(s) => (
                        &xb * s.exp() + t,
                        s.reshape([n, -1]).sum_dim_intlist(1, false, x.kind()),
                    ),
                    None => (&xb + t, zero_logdet(x)),
                };
                Ok((Tensor::cat(&[xa, yb], 1), ld))
            }
            Mask::Checkerboard { parity } => {
                let m = self.checker(x, parity);
                let inv = -&m + 1.0;
                let (t, s) = self.params(&(x * &m));
                match s {
                    Some(s) => {
                        let s = s * &inv;
                        let y = x * s.exp() + t * &inv;
                        let ld = s.reshape([n, -1]).sum_dim_intlist(1, false, x.kind());
                        Ok((y, ld))
                    }
                    None => Ok((x + t * &inv, zero_logdet(x))),
                }
            }
        }
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        match self.mask {
            Mask::Channels => {
                let ca = self.channels / 2;
                let ya = y.narrow(1, 0, ca);
                let yb = y.narrow(1, ca, self.channels - ca);
                let (t, s) = self.params(&ya);
                let xb = match s {
                    Some(s) => (yb - t) * (-s).exp(),
                    None => yb - t,
                };
                Ok(Tensor::cat(&[ya, xb], 1))
            }
            Mask::Checkerboard { parity } => {
                let m = self.checker(y, parity);
                let inv = -&m + 1.0;
                // The kept pixels are unchanged, so the network sees what
                // it saw going forward.
                let (t, s) = self.params(&(y * &m));
                match s {
                    Some(s) => {
                        let s = s * &inv;
                        Ok((y - t * &inv) * (-s).exp())
                    }
                    None => Ok(y - t * &inv),
                }
            }
        }
    }
}
