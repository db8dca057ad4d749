//! The autoencoder family: AE, VAE and their label-conditioned versions
//! (CAE, CVAE), with MLP or convolutional encoder/decoder, a Bernoulli or a
//! Gaussian decoder, β weighting and KL warm-up.
//!
//! Conditioning is by concatenation: the one-hot label joins the encoder's
//! input (MLP) or its convolutional features (conv), and the latent code at
//! the decoder's input.
use crate::batches::Split;
use crate::capabilities::{
    encode_all, Decode, Density, DensityKind, Encode, ImageModel, Prior, Sample,
};
use crate::error::{ModelError, Result};
use crate::likelihood::{
    bernoulli_log_prob, gaussian_log_prob, kl_std_normal, std_normal_log_prob,
};
use embedlab_train::{Batch, Better, Group, Losses, Metric, Progress, Trainable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Deterministic code, reconstruction loss only.
    Ae,
    /// Gaussian posterior, standard-normal prior, ELBO.
    Vae,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Mlp,
    Conv,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Likelihood {
    /// Pixels as Bernoulli variables (logits out); targets binary or grey.
    Bernoulli,
    /// Diagonal Gaussian with a learned per-pixel variance, on dequantised
    /// pixels ((byte + u)/256, u ~ U(0, 1)).
    Gaussian,
}

/// Everything that fixes a model's shape and loss; saved with every
/// checkpoint and checked when one is loaded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AeConfig {
    pub family: Family,
    pub conditional: bool,
    pub arch: Arch,
    /// Hidden widths: MLP layers, or the conv models' fully connected layer
    /// (first entry).
    pub hidden: Vec<i64>,
    pub latent: i64,
    pub likelihood: Likelihood,
    /// Dynamic binarisation (Bernoulli only): every time an image is used,
    /// each pixel is drawn as 1 with its grey level as probability.
    pub binarize: bool,
    /// Weight of the KL term (β-VAE); 1 is the ELBO.
    pub beta: f64,
    /// Epochs over which the KL weight rises linearly from 0 to β.
    pub warmup_epochs: f64,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub classes: i64,
}

impl AeConfig {
    pub fn name(&self) -> &'static str {
        match (self.family, self.conditional) {
            (Family::Ae, false) => "ae",
            (Family::Ae, true) => "cae",
            (Family::Vae, false) => "vae",
            (Family::Vae, true) => "cvae",
        }
    }
    pub fn dim(&self) -> i64 {
        self.channels * self.height * self.width
    }
    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        if self.latent < 1 {
            return bad(format!("latent size {} must be at least 1", self.latent));
        }
        // No hidden layer is an MLP's linear autoencoder; the conv models
        // need their fully connected width.
        if self.hidden.is_empty() && self.arch == Arch::Conv {
            return bad("the conv models need a hidden width (their fully connected layer's): a linear autoencoder is an MLP".into());
        }
        if self.hidden.iter().any(|&h| h < 1) {
            return bad(format!("hidden widths {:?} must be positive", self.hidden));
        }
        if self.arch == Arch::Conv && (self.height % 4 != 0 || self.width % 4 != 0) {
            return bad(format!(
                "the conv model halves the image twice: {}×{} is not divisible by 4",
                self.height, self.width
            ));
        }
        if self.conditional && self.classes < 2 {
            return bad("a conditional model needs at least 2 classes".into());
        }
        if self.binarize && self.likelihood != Likelihood::Bernoulli {
            return bad("binarisation goes with the Bernoulli likelihood".into());
        }
        if self.beta.is_nan() || self.beta < 0.0 {
            return bad(format!("beta {} must be ≥ 0", self.beta));
        }
        Ok(())
    }
    fn cond_dim(&self) -> i64 {
        if self.conditional {
            self.classes
        } else {
            0
        }
    }
    fn code_out(&self) -> i64 {
        match self.family {
            Family::Ae => self.latent,
            Family::Vae => 2 * self.latent,
        }
    }
}

enum Encoder {
    Mlp(Vec<nn::Linear>, nn::Linear),
    Conv(Box<(nn::Conv2D, nn::Conv2D, nn::Linear, nn::Linear)>),
}

enum Decoder {
    Mlp(Vec<nn::Linear>, nn::Linear),
    Conv(
        Box<(
            nn::Linear,
            nn::Linear,
            nn::ConvTranspose2D,
            nn::ConvTranspose2D,
        )>,
    ),
}

/// An autoencoder of the family, its parameters in `vs`.
pub struct AutoEncoder {
    pub cfg: AeConfig,
    pub vs: nn::VarStore,
    enc: Encoder,
    dec: Decoder,
    /// Per-pixel log-variance of the Gaussian decoder.
    x_logvar: Option<Tensor>,
}

impl AutoEncoder {
    pub fn new(cfg: AeConfig, device: Device) -> Result<Self> {
        cfg.check()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (d, c, k) = (cfg.dim(), cfg.cond_dim(), cfg.latent);
        let (s_h, s_w) = (cfg.height / 4, cfg.width / 4);
        let enc = match cfg.arch {
            Arch::Mlp => {
                let e = &root / "enc";
                let mut layers = vec![];
                let mut w = d + c;
                for (i, &h) in cfg.hidden.iter().enumerate() {
                    layers.push(nn::linear(&e / format!("l{i}"), w, h, Default::default()));
                    w = h;
                }
                Encoder::Mlp(
                    layers,
                    nn::linear(&e / "out", w, cfg.code_out(), Default::default()),
                )
            }
            Arch::Conv => {
                let e = &root / "enc";
                let cc = nn::ConvConfig {
                    stride: 2,
                    padding: 1,
                    ..Default::default()
                };
                let h = cfg.hidden[0];
                Encoder::Conv(Box::new((
                    nn::conv2d(&e / "c1", cfg.channels, 32, 4, cc),
                    nn::conv2d(&e / "c2", 32, 64, 4, cc),
                    nn::linear(&e / "fc", 64 * s_h * s_w + c, h, Default::default()),
                    nn::linear(&e / "out", h, cfg.code_out(), Default::default()),
                )))
            }
        };
        let dec = match cfg.arch {
            Arch::Mlp => {
                let p = &root / "dec";
                let mut layers = vec![];
                let mut w = k + c;
                for (i, &h) in cfg.hidden.iter().rev().enumerate() {
                    layers.push(nn::linear(&p / format!("l{i}"), w, h, Default::default()));
                    w = h;
                }
                Decoder::Mlp(layers, nn::linear(&p / "out", w, d, Default::default()))
            }
            Arch::Conv => {
                let p = &root / "dec";
                let tc = nn::ConvTransposeConfig {
                    stride: 2,
                    padding: 1,
                    ..Default::default()
                };
                let h = cfg.hidden[0];
                Decoder::Conv(Box::new((
                    nn::linear(&p / "fc", k + c, h, Default::default()),
                    nn::linear(&p / "fc2", h, 64 * s_h * s_w, Default::default()),
                    nn::conv_transpose2d(&p / "t1", 64, 32, 4, tc),
                    nn::conv_transpose2d(&p / "t2", 32, cfg.channels, 4, tc),
                )))
            }
        };
        let x_logvar = match cfg.likelihood {
            Likelihood::Gaussian => Some((&root / "dec").zeros("x_logvar", &[d])),
            Likelihood::Bernoulli => None,
        };
        Ok(Self {
            cfg,
            vs,
            enc,
            dec,
            x_logvar,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    fn one_hot(&self, y: Option<&Tensor>, kind: Kind) -> Result<Option<Tensor>> {
        if !self.cfg.conditional {
            return Ok(None);
        }
        let y = y.ok_or_else(|| {
            ModelError::Invalid(format!("a {} needs class labels", self.cfg.name()))
        })?;
        Ok(Some(y.one_hot(self.cfg.classes).to_kind(kind)))
    }

    /// Encoder output: the code (AE) or (mean, log-variance) (VAE).
    /// `x`: images n × c × h × w (or n × d) in [0, 1]; `y`: labels (i64).
    pub fn encode_params(
        &self,
        x: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let oh = self.one_hot(y, x.kind())?;
        let n = x.size()[0];
        let out = match &self.enc {
            Encoder::Mlp(layers, out) => {
                let mut h = x.reshape([n, -1]);
                if let Some(o) = &oh {
                    h = Tensor::cat(&[h, o.shallow_clone()], 1);
                }
                for l in layers {
                    h = l.forward(&h).relu();
                }
                out.forward(&h)
            }
            Encoder::Conv(layers) => {
                let (c1, c2, fc, out) = &**layers;
                let img = x.reshape([n, self.cfg.channels, self.cfg.height, self.cfg.width]);
                let mut h = c2.forward(&c1.forward(&img).relu()).relu().flatten(1, -1);
                if let Some(o) = &oh {
                    h = Tensor::cat(&[h, o.shallow_clone()], 1);
                }
                out.forward(&fc.forward(&h).relu())
            }
        };
        Ok(match self.cfg.family {
            Family::Ae => (out, None),
            Family::Vae => {
                let parts = out.chunk(2, 1);
                (parts[0].shallow_clone(), Some(parts[1].shallow_clone()))
            }
        })
    }

    /// The code used as the image's representation: the AE code or the
    /// VAE posterior mean.
    pub fn embed(&self, x: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.encode_params(x, y)?.0)
    }

    /// Decoder output, flattened (n × d): logits (Bernoulli) or means
    /// (Gaussian).
    pub fn decode_raw(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let oh = self.one_hot(y, z.kind())?;
        let n = z.size()[0];
        let mut h = z.shallow_clone();
        if let Some(o) = &oh {
            h = Tensor::cat(&[h, o.shallow_clone()], 1);
        }
        Ok(match &self.dec {
            Decoder::Mlp(layers, out) => {
                for l in layers {
                    h = l.forward(&h).relu();
                }
                out.forward(&h)
            }
            Decoder::Conv(layers) => {
                let (fc, fc2, t1, t2) = &**layers;
                let h = fc2.forward(&fc.forward(&h).relu()).relu().reshape([
                    n,
                    64,
                    self.cfg.height / 4,
                    self.cfg.width / 4,
                ]);
                t2.forward(&t1.forward(&h).relu()).reshape([n, -1])
            }
        })
    }

    /// Mean images (n × c × h × w, in [0, 1]) decoded from codes.
    pub fn decode_mean(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let raw = self.decode_raw(z, y)?;
        let m = match self.cfg.likelihood {
            Likelihood::Bernoulli => raw.sigmoid(),
            Likelihood::Gaussian => raw.clamp(0.0, 1.0),
        };
        Ok(m.reshape([
            z.size()[0],
            self.cfg.channels,
            self.cfg.height,
            self.cfg.width,
        ]))
    }

    /// log p(x | z) per image.
    pub fn log_likelihood(&self, x: &Tensor, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        // In the images' format (float32 in bfloat16 training: it is the loss).
        let raw = self.decode_raw(z, y)?.to_kind(x.kind());
        let n = x.size()[0];
        let x = x.reshape([n, -1]);
        Ok(match (&self.x_logvar, self.cfg.likelihood) {
            (Some(lv), Likelihood::Gaussian) => gaussian_log_prob(&x, &raw, lv),
            _ => bernoulli_log_prob(&raw, &x),
        })
    }

    /// The loss on one batch (images already binarised or dequantised as
    /// the likelihood needs), with the KL weight for this step.
    pub fn objective(&self, x: &Tensor, y: Option<&Tensor>, kl_weight: f64) -> Result<Losses> {
        // The posterior's parameters in the images' format (the KL is a loss).
        let (mu, logvar) = self.encode_params(x, y)?;
        let (mu, logvar) = (mu.to_kind(x.kind()), logvar.map(|l| l.to_kind(x.kind())));
        Ok(match logvar {
            None => {
                let rec = -self.log_likelihood(x, &mu, y)?.mean(None::<Kind>);
                Losses::single(rec.shallow_clone()).part("rec", &rec)
            }
            Some(lv) => {
                let z = &mu + (&lv * 0.5).exp() * mu.randn_like();
                let rec = -self.log_likelihood(x, &z, y)?.mean(None::<Kind>);
                let kl = kl_std_normal(&mu, &lv).mean(None::<Kind>);
                Losses::single(&rec + &kl * kl_weight)
                    .part("rec", &rec)
                    .part("kl", &kl)
            }
        })
    }

    /// The KL weight at a point of training (`epochs_done` may be
    /// fractional): β, ramped up linearly over the warm-up.
    pub fn kl_weight(&self, epochs_done: f64) -> f64 {
        if self.cfg.warmup_epochs > 0.0 {
            self.cfg.beta * (epochs_done / self.cfg.warmup_epochs).min(1.0)
        } else {
            self.cfg.beta
        }
    }

    /// Per image: the ELBO (one posterior sample, analytic KL) for a VAE;
    /// for an AE, log p(x | code) (the negated reconstruction error).
    pub fn elbo(&self, x: &Tensor, y: Option<&Tensor>) -> Result<(Tensor, Tensor, Tensor)> {
        let (mu, logvar) = self.encode_params(x, y)?;
        Ok(match logvar {
            None => {
                let ll = self.log_likelihood(x, &mu, y)?;
                let zero = ll.zeros_like();
                (ll.shallow_clone(), ll, zero)
            }
            Some(lv) => {
                let z = &mu + (&lv * 0.5).exp() * mu.randn_like();
                let ll = self.log_likelihood(x, &z, y)?;
                let kl = kl_std_normal(&mu, &lv);
                (&ll - &kl, ll, kl)
            }
        })
    }

    /// Importance-weighted estimate of log p(x) per image (Burda et al.'s
    /// IWAE bound with the encoder as proposal), `k` samples an image,
    /// drawn `chunk` at a time. For conditional models this is log p(x | y).
    pub fn iwae(&self, x: &Tensor, y: Option<&Tensor>, k: i64, chunk: i64) -> Result<Tensor> {
        if self.cfg.family != Family::Vae {
            return Err(ModelError::Invalid(
                "the importance-weighted bound needs a VAE (an AE has no density)".into(),
            ));
        }
        if k < 1 {
            return Err(ModelError::Invalid(format!("k = {k} must be ≥ 1")));
        }
        let n = x.size()[0];
        let chunk = chunk.max(1);
        let mut out = Vec::with_capacity(n as usize);
        let _g = tch::no_grad_guard();
        for i in 0..n {
            let xi = x.narrow(0, i, 1);
            let yi = y.map(|t| t.narrow(0, i, 1));
            let (mu, lv) = self.encode_params(&xi, yi.as_ref())?;
            let lv = lv.expect("VAE");
            let std = (&lv * 0.5).exp();
            let mut weights = Vec::new();
            let mut done = 0;
            while done < k {
                let m = chunk.min(k - done);
                let eps = Tensor::randn([m, self.cfg.latent], (mu.kind(), mu.device()));
                let z = &mu + &std * &eps;
                let xr = xi.expand(
                    [m, self.cfg.channels, self.cfg.height, self.cfg.width],
                    false,
                );
                let yr = yi.as_ref().map(|t| t.expand([m], false));
                let ll = self.log_likelihood(&xr, &z, yr.as_ref())?;
                let lp = std_normal_log_prob(&z);
                let lq = gaussian_log_prob(&z, &mu, &lv);
                weights.push(ll + lp - lq);
                done += m;
            }
            let w = Tensor::cat(&weights, 0).to_kind(Kind::Double);
            out.push(w.logsumexp([0], false) - (k as f64).ln());
        }
        Ok(Tensor::stack(&out, 0))
    }

    /// Images as the likelihood models them: binarised (Bernoulli with
    /// dynamic binarisation), dequantised (Gaussian) or as they are.
    pub fn prepare_input(&self, x: &Tensor) -> Tensor {
        match self.cfg.likelihood {
            Likelihood::Bernoulli if self.cfg.binarize => x.bernoulli(),
            Likelihood::Bernoulli => x.shallow_clone(),
            Likelihood::Gaussian => (x * 255.0 + x.rand_like()) / 256.0,
        }
    }

    /// Mean per image over a split (prepared with [`Self::prepare_input`]):
    /// `loss` (−ELBO, or the reconstruction error of an AE), `rec`
    /// (−log p(x|z)), and for a VAE `kl` and `elbo`.
    pub fn evaluate_split(&self, split: &Split, batch: i64) -> Result<BTreeMap<String, f64>> {
        let _g = tch::no_grad_guard();
        let (mut e, mut r, mut k) = (0.0, 0.0, 0.0);
        for (x, y) in split.batches(batch) {
            let x = self.prepare_input(&x);
            let (elbo, ll, kl) = self.elbo(&x, Some(&y).filter(|_| self.cfg.conditional))?;
            e += elbo.sum(Kind::Double).double_value(&[]);
            r -= ll.sum(Kind::Double).double_value(&[]);
            k += kl.sum(Kind::Double).double_value(&[]);
        }
        let n = split.len().max(1) as f64;
        let mut m = BTreeMap::new();
        m.insert("loss".to_string(), -e / n);
        m.insert("rec".to_string(), r / n);
        if self.cfg.family == Family::Vae {
            m.insert("kl".to_string(), k / n);
            m.insert("elbo".to_string(), e / n);
        }
        Ok(m)
    }
}

impl AutoEncoder {
    /// "MLP 512-256" or "conv, fc 512".
    pub fn arch_label(&self) -> String {
        match self.cfg.arch {
            Arch::Mlp if self.cfg.hidden.is_empty() => "linear".to_string(),
            Arch::Mlp => format!("MLP {}", crate::layers::widths(&self.cfg.hidden)),
            Arch::Conv => format!("conv, fc {}", self.cfg.hidden[0]),
        }
    }
    fn labels<'a>(&self, y: &'a Tensor) -> Option<&'a Tensor> {
        Some(y).filter(|_| self.cfg.conditional)
    }
}

impl Trainable for AutoEncoder {
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
        vec![Group::new("model", &["enc", "dec"])]
    }
    fn loss(&mut self, _group: &str, b: &Batch, at: &Progress) -> Result<Losses> {
        let x = self.prepare_input(&b.x);
        self.objective(&x, self.labels(&b.y), self.kl_weight(at.done))
    }
    fn validate(&mut self, valid: &Split) -> Result<BTreeMap<String, f64>> {
        self.evaluate_split(valid, 500)
    }
}

impl Encode for AutoEncoder {
    fn code_dim(&self) -> i64 {
        self.cfg.latent
    }
    fn needs_labels(&self) -> bool {
        self.cfg.conditional
    }
    fn what(&self) -> String {
        match self.cfg.family {
            Family::Ae => format!("{} codes", self.cfg.name().to_uppercase()),
            Family::Vae => format!("{} posterior means", self.cfg.name().to_uppercase()),
        }
    }
    fn encode(&self, x: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        self.embed(x, y)
    }
}

impl Decode for AutoEncoder {
    fn latent_dim(&self) -> i64 {
        self.cfg.latent
    }
    fn needs_labels(&self) -> bool {
        self.cfg.conditional
    }
    fn prior(&self) -> Prior {
        match self.cfg.family {
            Family::Vae => Prior::StandardNormal,
            Family::Ae => Prior::Codes,
        }
    }
    fn decode(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        self.decode_mean(z, y)
    }
}

/// A VAE samples from its prior; the temperature scales the latent draws.
impl Sample for AutoEncoder {
    fn needs_labels(&self) -> bool {
        self.cfg.conditional
    }
    fn sample(&self, n: i64, y: Option<&Tensor>, temperature: f64) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        let z = Tensor::randn([n, self.cfg.latent], (Kind::Float, self.device())) * temperature;
        self.decode_mean(&z, y)
    }
}

/// A VAE's importance-weighted bound on −log p(x) (−log p(x | y) when
/// conditional), the encoder as proposal.
impl Density for AutoEncoder {
    fn needs_labels(&self) -> bool {
        self.cfg.conditional
    }
    fn density_kind(&self, samples: i64) -> DensityKind {
        DensityKind::UpperBound(format!("IWAE bound, k = {samples}"))
    }
    fn nll(&self, x: &Tensor, y: Option<&Tensor>, samples: i64) -> Result<Tensor> {
        let x = self.prepare_input(x);
        Ok(-self.iwae(&x, y, samples, 1000)?)
    }
}

impl ImageModel for AutoEncoder {
    fn name(&self) -> String {
        self.cfg.name().into()
    }
    fn describe(&self) -> String {
        let arch = self.arch_label();
        format!(
            "{} ({arch}, latent {}, {:?} decoder{}{})",
            self.cfg.name().to_uppercase(),
            self.cfg.latent,
            self.cfg.likelihood,
            if self.cfg.beta != 1.0 && self.cfg.family == Family::Vae {
                format!(", β {}", self.cfg.beta)
            } else {
                String::new()
            },
            if self.cfg.binarize {
                ", dynamic binarisation"
            } else {
                ""
            }
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
        (self.cfg.family == Family::Vae).then_some(self as &dyn Sample)
    }
    fn density(&self) -> Option<&dyn Density> {
        (self.cfg.family == Family::Vae).then_some(self as &dyn Density)
    }
    /// Test ELBO and its parts (one posterior sample, analytic KL), the
    /// reconstruction term, and how many latent units the VAE uses.
    fn family_metrics(&self, test: &Split) -> Result<Vec<Metric>> {
        let m = self.evaluate_split(test, 500)?;
        let nats = "nats/image";
        let mut out = vec![];
        let mut push = |name: &str, value: f64, unit: &str, better: Better, note: &str| {
            out.push(Metric {
                name: name.into(),
                value,
                unit: unit.into(),
                better,
                note: (!note.is_empty()).then(|| note.to_string()),
            })
        };
        if let Some(e) = m.get("elbo") {
            push(
                "test ELBO",
                *e,
                nats,
                Better::Higher,
                "one posterior sample, analytic KL",
            );
        }
        push(
            "rec. −log p(x|z)",
            m["rec"],
            nats,
            Better::Lower,
            match self.cfg.family {
                Family::Vae => "one posterior sample",
                Family::Ae => "at the code",
            },
        );
        if let Some(k) = m.get("kl") {
            push("KL", *k, nats, Better::Neither, "");
        }
        if self.cfg.family == Family::Vae {
            let codes = encode_all(self, &test.x, &test.y, 1000)?;
            let active = crate::latent::activity(&codes)
                .iter()
                .filter(|&&v| v > 0.01)
                .count();
            push(
                "active units",
                active as f64,
                &format!("of {}", self.cfg.latent),
                Better::Neither,
                "posterior-mean variance > 0.01 (Burda et al. 2016)",
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn tiny(family: Family, arch: Arch, conditional: bool, lik: Likelihood) -> AeConfig {
        AeConfig {
            family,
            conditional,
            arch,
            hidden: vec![16, 8],
            latent: 3,
            likelihood: lik,
            binarize: false,
            beta: 1.0,
            warmup_epochs: 0.0,
            channels: 1,
            height: 8,
            width: 8,
            classes: 4,
        }
    }

    #[test]
    fn with_no_hidden_layer_the_code_is_an_affine_map_of_the_pixels() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(1);
        let mut cfg = tiny(Family::Ae, Arch::Mlp, false, Likelihood::Bernoulli);
        cfg.hidden = vec![];
        let m = AutoEncoder::new(cfg.clone(), Device::Cpu).unwrap();
        // encoder 64·3 + 3, decoder 3·64 + 64
        let params: i64 =
            m.vs.trainable_variables()
                .iter()
                .map(|t| t.numel() as i64)
                .sum();
        assert_eq!(params, 64 * 3 + 3 + 3 * 64 + 64);
        assert!(
            m.describe().starts_with("AE (linear, latent 3"),
            "{}",
            m.describe()
        );
        let o = (Kind::Float, Device::Cpu);
        let (a, b) = (Tensor::rand([4, 1, 8, 8], o), Tensor::rand([4, 1, 8, 8], o));
        let mix = &a * 0.3 + &b * 0.7;
        let e = |x: &Tensor| m.embed(x, None).unwrap();
        let gap = (e(&mix) - e(&a) * 0.3 - e(&b) * 0.7)
            .abs()
            .max()
            .double_value(&[]);
        assert!(gap < 1e-5, "{gap}");
        cfg.arch = Arch::Conv;
        let err = AutoEncoder::new(cfg, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("linear autoencoder is an MLP"), "{err}");
    }

    #[test]
    fn shapes_every_variant() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(0);
        let x = Tensor::rand([5, 1, 8, 8], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 1]);
        for fam in [Family::Ae, Family::Vae] {
            for arch in [Arch::Mlp, Arch::Conv] {
                for cond in [false, true] {
                    for lik in [Likelihood::Bernoulli, Likelihood::Gaussian] {
                        let m = AutoEncoder::new(tiny(fam, arch, cond, lik), Device::Cpu).unwrap();
                        let yy = cond.then_some(&y);
                        let l = m.objective(&x, yy, 1.0).unwrap();
                        assert!(l.loss.double_value(&[]).is_finite());
                        assert_eq!(
                            m.decode_mean(&m.embed(&x, yy).unwrap(), yy).unwrap().size(),
                            [5, 1, 8, 8]
                        );
                        if cond {
                            let e = m.objective(&x, None, 1.0).err().unwrap().to_string();
                            assert!(e.contains("needs class labels"), "{e}");
                        }
                    }
                }
            }
        }
    }
}
