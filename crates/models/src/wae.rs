//! Wasserstein autoencoders (Tolstikhin et al. 2018): a deterministic
//! encoder and decoder (the autoencoder family's, MLP or conv), the squared
//! pixel error as the transport cost, and a penalty that pulls the
//! aggregate distribution of codes towards the prior N(0, I):
//! - WAE-MMD: the unbiased maximum mean discrepancy with the inverse
//!   multiquadratic kernel k(x, y) = C / (C + |x − y|²), summed over scales
//!   C = 2·d·s, s ∈ {0.1, 0.2, 0.5, 1, 2, 5, 10};
//! - WAE-GAN: a discriminator in latent space (its own optimizer group,
//!   `zdisc`, stepped on the same batch after the autoencoder).
use crate::autoencoder::{AeConfig, Arch, AutoEncoder, Family, Likelihood};
use crate::batches::Split;
use crate::capabilities::{Decode, Encode, ImageModel, Prior, Sample};
use crate::error::{ModelError, Result};
use crate::layers::Layer;
use embedlab_train::{Batch, Group, Losses, Metric, Progress, Trainable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::nn;
use tch::{Device, Kind, Tensor};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Penalty {
    Mmd,
    Gan,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WaeConfig {
    pub penalty: Penalty,
    pub arch: Arch,
    pub hidden: Vec<i64>,
    pub latent: i64,
    /// λ, the penalty's weight.
    pub lambda: f64,
    /// Hidden widths of the latent discriminator (WAE-GAN).
    pub zdisc_hidden: Vec<i64>,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub classes: i64,
}

/// The kernel scales of WAE-MMD (multiples of 2·d·σ², σ² = 1 the prior's).
pub const MMD_SCALES: [f64; 7] = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

impl WaeConfig {
    pub fn name(&self) -> &'static str {
        match self.penalty {
            Penalty::Mmd => "wae-mmd",
            Penalty::Gan => "wae-gan",
        }
    }
    fn ae(&self) -> AeConfig {
        AeConfig {
            family: Family::Ae,
            conditional: false,
            arch: self.arch,
            hidden: self.hidden.clone(),
            latent: self.latent,
            likelihood: Likelihood::Bernoulli,
            binarize: false,
            beta: 1.0,
            warmup_epochs: 0.0,
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: self.classes,
        }
    }
}

/// Unbiased MMD² between the rows of `x` and `y` with the inverse
/// multiquadratic kernel, summed over [`MMD_SCALES`] (C = 2·d·s).
pub fn mmd_imq(x: &Tensor, y: &Tensor) -> Tensor {
    // A loss: float32 even in bfloat16 training (its distances subtract
    // products, which bfloat16 would round to nothing).
    let _f32 = embedlab_train::Autocast::suspend(x.device());
    let (n, m) = (x.size()[0], y.size()[0]);
    let d = x.size()[1] as f64;
    let sq = |a: &Tensor, b: &Tensor| {
        let an = a.square().sum_dim_intlist(1, true, a.kind());
        let bn = b.square().sum_dim_intlist(1, true, b.kind());
        (an + bn.tr() - a.matmul(&b.tr()) * 2.0).clamp_min(0.0)
    };
    let (dxx, dyy, dxy) = (sq(x, x), sq(y, y), sq(x, y));
    let off = |k: &Tensor, n: i64| {
        // Σ over i ≠ j: the whole sum less the diagonal.
        (k.sum(k.kind()) - k.diagonal(0, 0, 1).sum(k.kind())) / ((n * (n - 1)).max(1) as f64)
    };
    let mut total = x.zeros_like().sum(x.kind());
    for s in MMD_SCALES {
        let c = 2.0 * d * s;
        let k = |t: &Tensor| (t + c).reciprocal() * c;
        total = total + off(&k(&dxx), n) + off(&k(&dyy), m)
            - k(&dxy).sum(x.kind()) * (2.0 / (n * m) as f64);
    }
    total
}

pub struct Wae {
    pub cfg: WaeConfig,
    pub ae: AutoEncoder,
    zdisc: Vec<Layer>,
}

impl Wae {
    pub fn new(cfg: WaeConfig, device: Device) -> Result<Self> {
        if !(cfg.lambda.is_finite() && cfg.lambda >= 0.0) {
            return Err(ModelError::Invalid(format!(
                "the penalty weight λ = {} must be ≥ 0",
                cfg.lambda
            )));
        }
        let ae = AutoEncoder::new(cfg.ae(), device)?;
        let mut zdisc = vec![];
        if cfg.penalty == Penalty::Gan {
            let p = ae.vs.root() / "zdisc";
            let mut w = cfg.latent;
            for (i, &h) in cfg.zdisc_hidden.iter().enumerate() {
                zdisc.push(Layer::linear(&p / format!("l{i}"), w, h, false));
                w = h;
            }
            zdisc.push(Layer::linear(&p / "out", w, 1, false));
        }
        Ok(Self { cfg, ae, zdisc })
    }

    fn critic(&self, z: &Tensor) -> Tensor {
        let mut h = z.shallow_clone();
        let last = self.zdisc.len() - 1;
        for l in &self.zdisc[..last] {
            h = l.forward(&h).relu();
        }
        crate::layers::full_precision(self.zdisc[last].forward(&h).squeeze_dim(1))
    }

    fn prior(&self, n: i64) -> Tensor {
        Tensor::randn([n, self.cfg.latent], (Kind::Float, self.ae.device()))
    }

    /// Per image: the transport cost |x − G(z)|² (summed over pixels) at
    /// the code z = Q(x).
    pub fn cost(&self, x: &Tensor, z: &Tensor) -> Result<Tensor> {
        let n = x.size()[0];
        let rec = self.ae.decode_mean(z, None)?;
        Ok((rec - x)
            .square()
            .reshape([n, -1])
            .sum_dim_intlist(1, false, Kind::Float))
    }

    /// The autoencoder's objective: mean cost + λ · penalty.
    fn objective(&self, x: &Tensor) -> Result<Losses> {
        let z = self.ae.embed(x, None)?.to_kind(x.kind());
        let rec = self.cost(x, &z)?.mean(Kind::Float);
        let pen = match self.cfg.penalty {
            Penalty::Mmd => mmd_imq(&z, &self.prior(z.size()[0])),
            // Non-saturating: the encoder makes its codes look like prior draws.
            Penalty::Gan => (-self.critic(&z)).softplus().mean(Kind::Float),
        };
        Ok(Losses::single(&rec + &pen * self.cfg.lambda)
            .part("rec", &rec)
            .part("penalty", &pen))
    }

    /// The latent discriminator's loss: prior draws are real, codes fake.
    fn zdisc_loss(&self, x: &Tensor) -> Result<Losses> {
        let z = {
            let _g = tch::no_grad_guard();
            self.ae.embed(x, None)?
        };
        let real = self.critic(&self.prior(z.size()[0]));
        let fake = self.critic(&z);
        Ok(Losses::single(
            (-real).softplus().mean(Kind::Float) + fake.softplus().mean(Kind::Float),
        ))
    }

    /// Mean cost, MMD to the prior (for both penalties: a common yardstick)
    /// and `loss` = cost + λ·MMD, over a split.
    pub fn evaluate_split(&self, split: &Split, batch: i64) -> Result<BTreeMap<String, f64>> {
        let _g = tch::no_grad_guard();
        let (mut rec, mut mmd, mut nb) = (0.0, 0.0, 0.0);
        for (x, _) in split.batches(batch) {
            let z = self.ae.embed(&x, None)?;
            rec += self.cost(&x, &z)?.sum(Kind::Double).double_value(&[]);
            if z.size()[0] > 1 {
                mmd += mmd_imq(&z, &self.prior(z.size()[0])).double_value(&[]);
                nb += 1.0;
            }
        }
        let n = split.len().max(1) as f64;
        let mmd = mmd / f64::max(nb, 1.0);
        let mut m = BTreeMap::new();
        m.insert("rec".into(), rec / n);
        m.insert("mmd".into(), mmd);
        m.insert("loss".into(), rec / n + self.cfg.lambda * mmd);
        Ok(m)
    }
}

impl Trainable for Wae {
    type Data = Split;
    type Error = ModelError;
    fn kind(&self) -> String {
        self.cfg.name().into()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("serialisable")
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.ae.vs
    }
    fn groups(&self) -> Vec<Group> {
        let mut g = vec![Group::new("model", &["enc", "dec"])];
        if self.cfg.penalty == Penalty::Gan {
            g.push(Group::new("zdisc", &["zdisc"]).without_data());
        }
        g
    }
    fn loss(&mut self, group: &str, b: &Batch, _at: &Progress) -> Result<Losses> {
        match group {
            "zdisc" => self.zdisc_loss(&b.x),
            _ => self.objective(&b.x),
        }
    }
    fn validate(&mut self, valid: &Split) -> Result<BTreeMap<String, f64>> {
        self.evaluate_split(valid, 500)
    }
}

impl Encode for Wae {
    fn code_dim(&self) -> i64 {
        self.cfg.latent
    }
    fn what(&self) -> String {
        format!("{} codes", self.cfg.name().to_uppercase())
    }
    fn encode(&self, x: &Tensor, _y: Option<&Tensor>) -> Result<Tensor> {
        self.ae.embed(x, None)
    }
}

impl Decode for Wae {
    fn latent_dim(&self) -> i64 {
        self.cfg.latent
    }
    fn prior(&self) -> Prior {
        Prior::StandardNormal
    }
    fn decode(&self, z: &Tensor, _y: Option<&Tensor>) -> Result<Tensor> {
        self.ae.decode_mean(z, None)
    }
}

impl Sample for Wae {
    fn sample(&self, n: i64, _y: Option<&Tensor>, temperature: f64) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        self.ae.decode_mean(&(self.prior(n) * temperature), None)
    }
}

impl ImageModel for Wae {
    fn name(&self) -> String {
        self.cfg.name().into()
    }
    fn describe(&self) -> String {
        let arch = self.ae.arch_label();
        format!(
            "{} ({arch}, latent {}, λ {})",
            self.cfg.name().to_uppercase(),
            self.cfg.latent,
            self.cfg.lambda
        )
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
    fn family_metrics(&self, test: &Split) -> Result<Vec<Metric>> {
        let m = self.evaluate_split(test, 500)?;
        Ok(vec![
            Metric {
                name: "transport cost".into(),
                value: m["rec"],
                unit: "|x − G(Q(x))|² per image".into(),
                better: embedlab_train::Better::Lower,
                note: None,
            },
            Metric {
                name: "MMD to prior".into(),
                value: m["mmd"],
                unit: "".into(),
                better: embedlab_train::Better::Lower,
                note: Some("unbiased, IMQ kernel, batches of 500 test codes".into()),
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unbiased estimator written out term by term.
    fn brute(x: &Tensor, y: &Tensor) -> f64 {
        let rows = |t: &Tensor| -> Vec<Vec<f64>> {
            (0..t.size()[0])
                .map(|i| Vec::try_from(&t.get(i)).unwrap())
                .collect()
        };
        let (a, b) = (rows(x), rows(y));
        let d = a[0].len() as f64;
        let mut total = 0.0;
        for s in MMD_SCALES {
            let c = 2.0 * d * s;
            let k = |p: &[f64], q: &[f64]| {
                c / (c + p.iter().zip(q).map(|(u, v)| (u - v).powi(2)).sum::<f64>())
            };
            let within = |v: &[Vec<f64>]| {
                let n = v.len();
                let mut s = 0.0;
                for i in 0..n {
                    for j in 0..n {
                        if i != j {
                            s += k(&v[i], &v[j]);
                        }
                    }
                }
                s / (n * (n - 1)) as f64
            };
            let mut cross = 0.0;
            for p in &a {
                for q in &b {
                    cross += k(p, q);
                }
            }
            total += within(&a) + within(&b) - 2.0 * cross / (a.len() * b.len()) as f64;
        }
        total
    }

    #[test]
    fn mmd_matches_brute_force_and_sees_a_shift() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(0);
        let o = (Kind::Double, Device::Cpu);
        let x = Tensor::randn([40, 3], o);
        let y = Tensor::randn([30, 3], o);
        let got = mmd_imq(&x, &y).double_value(&[]);
        assert!((got - brute(&x, &y)).abs() < 1e-10, "{got}");
        // Two large samples of one Gaussian: ≈ 0 (unbiased: either sign).
        let a = Tensor::randn([1000, 8], o);
        let b = Tensor::randn([1000, 8], o);
        let same = mmd_imq(&a, &b).double_value(&[]);
        let shifted = mmd_imq(&a, &(Tensor::randn([1000, 8], o) + 1.0)).double_value(&[]);
        assert!(same.abs() < 0.01, "{same}");
        assert!(shifted > 20.0 * same.abs().max(1e-3), "{shifted} vs {same}");
    }

    #[test]
    fn both_penalties_train_a_step_and_sample_from_the_prior() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(1);
        let x = Tensor::rand([6, 1, 8, 8], (Kind::Float, Device::Cpu));
        for pen in [Penalty::Mmd, Penalty::Gan] {
            let mut w = Wae::new(
                WaeConfig {
                    penalty: pen,
                    arch: Arch::Mlp,
                    hidden: vec![16],
                    latent: 2,
                    lambda: 10.0,
                    zdisc_hidden: vec![8],
                    channels: 1,
                    height: 8,
                    width: 8,
                    classes: 2,
                },
                Device::Cpu,
            )
            .unwrap();
            let b = Batch::new(
                x.shallow_clone(),
                Tensor::zeros([6], (Kind::Int64, Device::Cpu)),
            );
            let at = Progress {
                epoch: 0,
                epochs: 1,
                done: 0.0,
            };
            for g in w.groups() {
                let l = w.loss(&g.name, &b, &at).unwrap();
                assert!(l.loss.double_value(&[]).is_finite());
            }
            assert_eq!(w.sample(3, None, 1.0).unwrap().size(), [3, 1, 8, 8]);
            assert_eq!(Decode::prior(&w), Prior::StandardNormal);
        }
    }
}
