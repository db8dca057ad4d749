//! Invertible residual blocks (Behrmann et al. 2019): y = x + g(x) with g
//! contractive, so the block inverts by fixed-point iteration and
//! log det(I + J_g) = Σ_k (−1)^{k+1} tr(J_g^k) / k.
//!
//! - g = conv 3×3 → ELU → conv 1×1 → ELU → conv 3×3, each convolution
//!   normalised as an **operator** on inputs of the block's own shape:
//!   power iteration applies the convolution and its transpose to an
//!   input-shaped vector `u` (a buffer: checkpointed, advanced once before
//!   each training step, frozen in evaluation), σ = ⟨v, conv(u)⟩, and the
//!   weight is divided by max(1, σ / c) (soft scaling to the coefficient c < 1).
//! - The log-determinant: the power series truncated at n terms with a
//!   Hutchinson trace estimator (vᵀ J^k v from k vector–Jacobian
//!   products, averaged over probe vectors), or the unbiased Russian-roulette
//!   estimator of Residual Flows (Chen et al. 2019), or — for inputs of at
//!   most `exact_max` values, and in checks — the exact log det(I + J) from
//!   the whole Jacobian.
use super::blocks::{Bijection, Ctx};
use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// How the residual blocks' log-determinant is estimated.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Estimator {
    /// The power series truncated at `terms` (biased: the tail is dropped).
    Series,
    /// `terms` exact terms, then a geometric number more, each reweighted
    /// by 1 / P(N ≥ k) (unbiased).
    Roulette,
}

/// The residual blocks' settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ResidualConfig {
    /// The Lipschitz coefficient c < 1 of each convolution.
    pub coeff: f64,
    pub hidden: i64,
    pub estimator: Estimator,
    /// Power-series terms (the roulette's exact ones).
    pub terms: usize,
    /// Hutchinson probe vectors.
    pub probes: usize,
    /// Exact log-determinant at or below this many values per image.
    pub exact_max: i64,
    /// Power-iteration steps at construction (one more per training step).
    pub power_init: usize,
    /// Fixed-point inverse: at most this many iterations…
    pub inverse_iters: usize,
    /// …stopping when the largest change falls below this.
    pub inverse_tol: f64,
}

impl Default for ResidualConfig {
    fn default() -> Self {
        Self {
            coeff: 0.9,
            hidden: 64,
            estimator: Estimator::Series,
            terms: 5,
            probes: 1,
            exact_max: 64,
            power_init: 50,
            inverse_iters: 100,
            inverse_tol: 1e-6,
        }
    }
}

impl ResidualConfig {
    pub fn check(&self) -> Result<()> {
        if !(self.coeff > 0.0 && self.coeff < 1.0) {
            return Err(ModelError::Invalid(format!(
                "the Lipschitz coefficient {} must be in (0, 1): at 1 or above the block may not invert",
                self.coeff
            )));
        }
        if self.terms < 1 || self.terms > 100 || self.probes < 1 || self.probes > 100 {
            return Err(ModelError::Invalid(format!(
                "log-determinant terms {} and probes {} must be in 1..=100",
                self.terms, self.probes
            )));
        }
        if self.terms * self.probes > MAX_PRODUCTS {
            return Err(ModelError::Invalid(format!(
                "--terms {} × --probes {} = {} vector–Jacobian products per block and training step, over the {MAX_PRODUCTS} allowed (the series' terms shrink as c^k; the papers use 1–10 terms and 1 probe)",
                self.terms,
                self.probes,
                self.terms * self.probes
            )));
        }
        if !(1..=10_000).contains(&self.inverse_iters) || !(1e-12..=1.0).contains(&self.inverse_tol)
        {
            return Err(ModelError::Invalid(format!(
                "the fixed-point inverse needs 1..=10000 iterations and a tolerance in [1e-12, 1] (got {} and {}; a smaller tolerance is never reached and every inverse runs to its cap)",
                self.inverse_iters, self.inverse_tol
            )));
        }
        Ok(())
    }
}

/// At most this many vector–Jacobian products (terms × probes) per block
/// and training step: past it a step costs minutes and buys nothing.
pub const MAX_PRODUCTS: usize = 200;

/// A convolution normalised as an operator on inputs of one shape.
pub struct SnConv {
    pub w: Tensor,
    pub b: Tensor,
    /// The power iteration's input-shaped vector (1 × c × h × w).
    u: Tensor,
    pad: i64,
    coeff: f64,
}

impl SnConv {
    fn new(p: nn::Path, cin: i64, cout: i64, k: i64, hw: (i64, i64), coeff: f64) -> Self {
        let fan_in = cin * k * k;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let w = p.var(
            "weight",
            &[cout, cin, k, k],
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        );
        let b = p.zeros("bias", &[cout]);
        let u = p.zeros_no_train("sn_u", &[1, cin, hw.0, hw.1]);
        {
            let _g = tch::no_grad_guard();
            let r = Tensor::randn(u.size(), (Kind::Float, u.device()));
            u.shallow_clone().copy_(&(&r / r.norm()));
        }
        Self {
            w,
            b,
            u,
            pad: k / 2,
            coeff,
        }
    }
    fn conv(&self, x: &Tensor, w: &Tensor) -> Tensor {
        x.conv2d(w, None::<Tensor>, [1, 1], [self.pad, self.pad], [1, 1], 1)
    }
    fn conv_t(&self, y: &Tensor, w: &Tensor) -> Tensor {
        y.conv_transpose2d(
            w,
            None::<Tensor>,
            [1, 1],
            [self.pad, self.pad],
            [0, 0],
            1,
            [1, 1],
        )
    }
    /// `n` power-iteration steps on the operator x ↦ conv(x, W).
    pub fn power_iteration(&self, n: usize) {
        let _g = tch::no_grad_guard();
        let mut u = self.u.copy();
        for _ in 0..n {
            let v = self.conv(&u, &self.w);
            let v = &v / v.norm().clamp_min(1e-12);
            let nu = self.conv_t(&v, &self.w);
            u = &nu / nu.norm().clamp_min(1e-12);
        }
        self.u.shallow_clone().copy_(&u);
    }
    /// σ estimated from the stored vector, differentiable in W.
    pub fn sigma(&self) -> Tensor {
        let v = {
            let _g = tch::no_grad_guard();
            let v = self.conv(&self.u, &self.w);
            &v / v.norm().clamp_min(1e-12)
        };
        (v * self.conv(&self.u, &self.w)).sum(self.w.kind())
    }
    /// W / max(1, σ / c).
    pub fn weight(&self) -> Tensor {
        let factor = (self.sigma() / self.coeff).clamp_min(1.0);
        &self.w / factor
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.conv(x, &self.weight()) + self.b.reshape([1, -1, 1, 1])
    }
    /// The largest singular value of the normalised operator: the SVD of
    /// its dense matrix when that has at most 4096 × 4096 entries, else
    /// 1000 power iterations from a fresh random vector.
    pub fn operator_norm(&self) -> (f64, String) {
        let _g = tch::no_grad_guard();
        let s = self.u.size();
        let din = s[1] * s[2] * s[3];
        let dout = self.w.size()[0] * s[2] * s[3];
        if din * dout <= 4096 * 4096 {
            let m = self.dense().to_kind(Kind::Double);
            (
                m.svd(true, false).1.double_value(&[0]),
                format!("SVD of the dense {dout} × {din} operator"),
            )
        } else {
            let w = self.weight();
            let mut u = Tensor::randn(s.as_slice(), (self.w.kind(), self.w.device()));
            let mut sigma = 0.0;
            for _ in 0..1000 {
                u = &u / u.norm();
                let v = self.conv(&u, &w);
                sigma = v.norm().double_value(&[]);
                u = self.conv_t(&v, &w);
            }
            (
                sigma,
                format!("1000 power iterations on the {dout} × {din} operator"),
            )
        }
    }
    /// The normalised operator as a dense matrix (rows: outputs), for the
    /// checks: the convolution of every basis image of the input shape.
    pub fn dense(&self) -> Tensor {
        let _g = tch::no_grad_guard();
        let s = self.u.size();
        let d = s[1] * s[2] * s[3];
        let basis = Tensor::eye(d, (self.w.kind(), self.w.device())).reshape([d, s[1], s[2], s[3]]);
        self.conv(&basis, &self.weight()).reshape([d, -1]).tr()
    }
}

/// y = x + g(x), g contractive.
pub struct Residual {
    pub convs: Vec<SnConv>,
    pub cfg: ResidualConfig,
    channels: i64,
    /// Iterations and final largest change of the last inverse.
    last_inverse: Cell<(usize, f64)>,
}

impl Residual {
    /// A block for inputs of `channels` × h × w.
    pub fn new(p: nn::Path, channels: i64, hw: (i64, i64), cfg: &ResidualConfig) -> Result<Self> {
        cfg.check()?;
        let h = cfg.hidden;
        let convs = vec![
            SnConv::new(&p / "c1", channels, h, 3, hw, cfg.coeff),
            SnConv::new(&p / "c2", h, h, 1, hw, cfg.coeff),
            SnConv::new(&p / "c3", h, channels, 3, hw, cfg.coeff),
        ];
        for c in &convs {
            c.power_iteration(cfg.power_init);
        }
        Ok(Self {
            convs,
            cfg: cfg.clone(),
            channels,
            last_inverse: Cell::new((0, 0.0)),
        })
    }

    pub fn g(&self, x: &Tensor) -> Tensor {
        let h = self.convs[0].forward(x).elu();
        let h = self.convs[1].forward(&h).elu();
        self.convs[2].forward(&h)
    }

    /// Iterations and final largest change of the last inverse.
    pub fn last_inverse(&self) -> (usize, f64) {
        self.last_inverse.get()
    }

    /// The exact log det(I + J_g) per image from the whole Jacobian (one
    /// backward pass per input value).
    pub fn exact_logdet(&self, x: &Tensor, gx: &Tensor, create_graph: bool) -> Tensor {
        let j = super::blocks::jacobian(gx, x, create_graph).to_kind(Kind::Double);
        let eye = Tensor::eye(j.size()[1], (Kind::Double, x.device()));
        Tensor::linalg_slogdet(&(j + eye)).1.to_kind(x.kind())
    }

    /// The estimate of log det(I + J_g) per image.
    pub fn estimate_logdet(&self, x: &Tensor, gx: &Tensor, create_graph: bool) -> Result<Tensor> {
        let n = x.size()[0];
        let dev = x.device();
        // The roulette: N = terms + G, G geometric with P(stop) = ½, one
        // draw per batch; term k weighted by 1 / P(N ≥ k).
        let (total, weight): (usize, Box<dyn Fn(usize) -> f64>) = match self.cfg.estimator {
            Estimator::Series => (self.cfg.terms, Box::new(|_| 1.0)),
            Estimator::Roulette => {
                let u = Tensor::rand([1], (Kind::Double, dev)).double_value(&[0]);
                let g = (u.max(1e-300).ln() / 0.5f64.ln()).floor() as usize;
                let exact = self.cfg.terms;
                (
                    exact + g.min(200),
                    Box::new(move |k| {
                        if k <= exact {
                            1.0
                        } else {
                            2f64.powi((k - exact) as i32)
                        }
                    }),
                )
            }
        };
        let mut ld = Tensor::zeros([n], (x.kind(), dev));
        for _ in 0..self.cfg.probes {
            let v = Tensor::randn(x.size(), (x.kind(), dev));
            let mut w = v.shallow_clone();
            for k in 1..=total {
                w = crate::layers::vjp(gx, x, &w, create_graph)?;
                let tr = (&w * &v)
                    .reshape([n, -1])
                    .sum_dim_intlist(1, false, x.kind());
                let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
                ld = ld + tr * (sign * weight(k) / k as f64);
            }
        }
        Ok(ld / self.cfg.probes as f64)
    }
}

impl Bijection for Residual {
    fn label(&self) -> String {
        format!(
            "i-ResNet block {}, hidden {}, c = {}",
            self.channels, self.cfg.hidden, self.cfg.coeff
        )
    }
    fn forward(&self, x: &Tensor, ctx: Ctx) -> Result<(Tensor, Tensor)> {
        // Float32 even in bfloat16 training: invertibility and the
        // log-determinant's series rest on the Lipschitz bound of g, which
        // bfloat16's rounding (2⁻⁸) would not keep.
        let _f32 = embedlab_train::Autocast::suspend(x.device());
        // The log-determinant needs vector–Jacobian products at x even in
        // evaluation: gradients are on here whatever the caller set.
        tch::with_grad(|| {
            let xg = if x.requires_grad() {
                x.shallow_clone()
            } else {
                x.detach().set_requires_grad(true)
            };
            let gx = self.g(&xg);
            let d = x.numel() as i64 / x.size()[0].max(1);
            let ld = if ctx.exact || d <= self.cfg.exact_max {
                self.exact_logdet(&xg, &gx, ctx.train)
            } else {
                self.estimate_logdet(&xg, &gx, ctx.train)?
            };
            let y = &xg + gx;
            if ctx.train {
                Ok((y, ld))
            } else {
                Ok((y.detach(), ld.detach()))
            }
        })
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        let mut x = y.shallow_clone();
        let mut change = f64::INFINITY;
        let mut it = 0;
        while it < self.cfg.inverse_iters {
            let next = y - self.g(&x);
            change = (&next - &x).abs().max().double_value(&[]);
            x = next;
            it += 1;
            if change < self.cfg.inverse_tol || !change.is_finite() {
                break;
            }
        }
        self.last_inverse.set((it, change));
        Ok(x)
    }
    fn before_step(&self) {
        for c in &self.convs {
            c.power_iteration(1);
        }
    }
    fn residual(&self) -> Option<&Residual> {
        Some(self)
    }
}
