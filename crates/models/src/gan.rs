//! Generative adversarial networks: DCGAN (non-saturating loss, BatchNorm
//! in both players), WGAN-GP (Wasserstein critic with a gradient penalty,
//! no BatchNorm in the critic, several critic steps per generator step),
//! SN-GAN (spectrally normalised discriminator, hinge loss) and a
//! class-conditional GAN (SN-GAN with the label given to the generator and
//! a projection discriminator, Miyato & Koyama 2018). Convolutional
//! players for 28×28 and 32×32 images (any size divisible by 4), MLP
//! players for quick runs.
//!
//! Two optimizer groups: `disc` (the discriminator or critic, its steps per
//! round configurable) then `gen` (the generator, which reuses the round's
//! last batch for its size and labels).
use crate::batches::Split;
use crate::capabilities::{Decode, Encode, ImageModel, Prior, Sample};
use crate::error::{ModelError, Result};
use crate::layers::{lrelu, Layer};
use embedlab_train::{Batch, Group, Losses, Progress, Selection, Trainable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GanKind {
    /// Radford et al. 2016: non-saturating loss, BatchNorm in both players.
    Dcgan,
    /// Gulrajani et al. 2017: Wasserstein critic, gradient penalty.
    WganGp,
    /// Miyato et al. 2018: spectral norm in the discriminator, hinge loss.
    Sngan,
    /// SN-GAN conditioned on the class (projection discriminator).
    Cgan,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GanArch {
    Mlp,
    Conv,
}

/// Everything that fixes a GAN's shape and loss.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct GanConfig {
    pub kind: GanKind,
    pub arch: GanArch,
    /// Latent size (z ~ N(0, I)).
    pub latent: i64,
    /// Conv: the discriminator's first channel count (the generator mirrors
    /// it); MLP: hidden widths, discriminator order.
    pub hidden: Vec<i64>,
    /// WGAN-GP's penalty weight λ.
    pub gp_weight: f64,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub classes: i64,
}

impl GanConfig {
    pub fn name(&self) -> &'static str {
        match self.kind {
            GanKind::Dcgan => "dcgan",
            GanKind::WganGp => "wgan-gp",
            GanKind::Sngan => "sngan",
            GanKind::Cgan => "cgan",
        }
    }
    pub fn conditional(&self) -> bool {
        self.kind == GanKind::Cgan
    }
    fn spectral(&self) -> bool {
        matches!(self.kind, GanKind::Sngan | GanKind::Cgan)
    }
    /// BatchNorm in the discriminator: DCGAN's conv discriminator only (a
    /// WGAN-GP critic must not have it: the penalty is per sample).
    fn d_batchnorm(&self) -> bool {
        self.kind == GanKind::Dcgan && self.arch == GanArch::Conv
    }
    pub fn dim(&self) -> i64 {
        self.channels * self.height * self.width
    }
    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        if self.latent < 1 {
            return bad(format!("latent size {} must be at least 1", self.latent));
        }
        if self.hidden.is_empty() || self.hidden.iter().any(|&h| h < 1) {
            return bad(format!("hidden widths {:?} must be positive", self.hidden));
        }
        if self.arch == GanArch::Conv && (self.height % 4 != 0 || self.width % 4 != 0) {
            return bad(format!(
                "the conv players halve the image twice: {}×{} is not divisible by 4",
                self.height, self.width
            ));
        }
        if self.conditional() && self.classes < 2 {
            return bad("a conditional GAN needs at least 2 classes".into());
        }
        if !(self.gp_weight.is_finite() && self.gp_weight >= 0.0) {
            return bad(format!(
                "gradient-penalty weight {} must be ≥ 0",
                self.gp_weight
            ));
        }
        Ok(())
    }
}

enum Gen {
    /// Hidden layers each with BatchNorm, then the output layer.
    Mlp(Vec<(Layer, nn::BatchNorm)>, Layer),
    Conv(Box<ConvGen>),
}

struct ConvGen {
    fc: Layer,
    bn0: nn::BatchNorm,
    t1: Layer,
    bn1: nn::BatchNorm,
    t2: Layer,
}

/// PyTorch's BatchNorm starts as the identity (weight 1); tch's default
/// draws the weight from U(0, 1).
fn bn_config() -> nn::BatchNormConfig {
    nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        ..Default::default()
    }
}

enum Disc {
    Mlp(Vec<Layer>),
    Conv(Box<ConvDisc>),
}

struct ConvDisc {
    c1: Layer,
    c2: Layer,
    bn: Option<nn::BatchNorm>,
}

pub struct Gan {
    pub cfg: GanConfig,
    pub vs: nn::VarStore,
    gen: Gen,
    disc: Disc,
    /// The discriminator's last layer (features → score).
    head: Layer,
    /// Projection discriminator: one embedding row per class.
    embed: Option<Tensor>,
}

impl Gan {
    pub fn new(cfg: GanConfig, device: Device) -> Result<Self> {
        cfg.check()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (g, d) = (&root / "gen", &root / "disc");
        let sn = cfg.spectral();
        let c = if cfg.conditional() { cfg.classes } else { 0 };
        let (sh, sw) = (cfg.height / 4, cfg.width / 4);
        let (gen, disc, feat) = match cfg.arch {
            GanArch::Mlp => {
                let mut gl = vec![];
                let mut w = cfg.latent + c;
                for (i, &h) in cfg.hidden.iter().rev().enumerate() {
                    gl.push((
                        Layer::linear(&g / format!("l{i}"), w, h, false),
                        nn::batch_norm1d(&g / format!("bn{i}"), h, bn_config()),
                    ));
                    w = h;
                }
                let gout = Layer::linear(&g / "out", w, cfg.dim(), false);
                let mut dl = vec![];
                let mut w = cfg.dim();
                for (i, &h) in cfg.hidden.iter().enumerate() {
                    dl.push(Layer::linear(&d / format!("l{i}"), w, h, sn));
                    w = h;
                }
                (Gen::Mlp(gl, gout), Disc::Mlp(dl), w)
            }
            GanArch::Conv => {
                let b = cfg.hidden[0];
                let bn = bn_config();
                let gen = Gen::Conv(Box::new(ConvGen {
                    fc: Layer::linear(&g / "fc", cfg.latent + c, 2 * b * sh * sw, false),
                    bn0: nn::batch_norm2d(&g / "bn0", 2 * b, bn),
                    t1: Layer::conv_t(&g / "t1", 2 * b, b, 4, 2, 1, false),
                    bn1: nn::batch_norm2d(&g / "bn1", b, bn),
                    t2: Layer::conv_t(&g / "t2", b, cfg.channels, 4, 2, 1, false),
                }));
                let disc = Disc::Conv(Box::new(ConvDisc {
                    c1: Layer::conv(&d / "c1", cfg.channels, b, 4, 2, 1, sn),
                    c2: Layer::conv(&d / "c2", b, 2 * b, 4, 2, 1, sn),
                    bn: cfg
                        .d_batchnorm()
                        .then(|| nn::batch_norm2d(&d / "bn", 2 * b, bn)),
                }));
                (gen, disc, 2 * b * sh * sw)
            }
        };
        let head = Layer::linear(&d / "head", feat, 1, sn);
        let embed = cfg.conditional().then(|| {
            let bound = 1.0 / (feat as f64).sqrt();
            d.var(
                "embed",
                &[cfg.classes, feat],
                nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )
        });
        Ok(Self {
            cfg,
            vs,
            gen,
            disc,
            head,
            embed,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    fn labels<'a>(&self, y: Option<&'a Tensor>) -> Result<Option<&'a Tensor>> {
        if !self.cfg.conditional() {
            return Ok(None);
        }
        y.map(Some)
            .ok_or_else(|| ModelError::Invalid(format!("a {} needs class labels", self.cfg.name())))
    }

    /// Images (n × c × h × w, in [0, 1]) from latent codes; `train` uses
    /// BatchNorm's batch statistics (and updates its running ones).
    pub fn generate(&self, z: &Tensor, y: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let n = z.size()[0];
        let mut h = z.shallow_clone();
        if let Some(y) = self.labels(y)? {
            h = Tensor::cat(&[h, y.one_hot(self.cfg.classes).to_kind(z.kind())], 1);
        }
        let out = match &self.gen {
            Gen::Mlp(layers, out) => {
                for (l, bn) in layers {
                    h = bn.forward_t(&l.forward(&h), train).relu();
                }
                out.forward(&h)
            }
            Gen::Conv(cg) => {
                let ConvGen {
                    fc,
                    bn0,
                    t1,
                    bn1,
                    t2,
                } = &**cg;
                let b = self.cfg.hidden[0];
                let h = fc
                    .forward(&h)
                    .reshape([n, 2 * b, self.cfg.height / 4, self.cfg.width / 4]);
                let h = bn0.forward_t(&h, train).relu();
                let h = bn1.forward_t(&t1.forward(&h), train).relu();
                t2.forward(&h)
            }
        };
        Ok(out
            .sigmoid()
            .reshape([n, self.cfg.channels, self.cfg.height, self.cfg.width]))
    }

    /// The discriminator's (critic's) score per image.
    pub fn discriminate(&self, x: &Tensor, y: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let f = self.disc_features(x, train)?;
        // Scores are float32 whatever the products ran in (bfloat16
        // training): the losses are built on them.
        let mut s = crate::layers::full_precision(self.head.forward(&f).squeeze_dim(1));
        if let (Some(e), Some(y)) = (&self.embed, self.labels(y)?) {
            s += (e.index_select(0, y) * &f).sum_dim_intlist(1, false, Kind::Float);
        }
        Ok(s)
    }

    /// The discriminator's penultimate features (what its last layer, and
    /// the conditional model's class projection, score), n × features.
    pub fn disc_features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let n = x.size()[0];
        Ok(match &self.disc {
            Disc::Mlp(layers) => {
                let mut h = x.reshape([n, -1]);
                for l in layers {
                    h = lrelu(&l.forward(&h))?;
                }
                h
            }
            Disc::Conv(cd) => {
                let ConvDisc { c1, c2, bn } = &**cd;
                let h = lrelu(&c1.forward(x))?;
                let h = c2.forward(&h);
                let h = match bn {
                    Some(bn) => bn.forward_t(&h, train),
                    None => h,
                };
                lrelu(&h)?.flatten(1, -1)
            }
        })
    }

    /// The width of [`Gan::disc_features`].
    fn feature_dim(&self) -> i64 {
        self.head.w.size()[1]
    }

    fn disc_layers(&self) -> Vec<&Layer> {
        let mut v: Vec<&Layer> = match &self.disc {
            Disc::Mlp(l) => l.iter().collect(),
            Disc::Conv(cd) => vec![&cd.c1, &cd.c2],
        };
        v.push(&self.head);
        v
    }

    fn noise(&self, n: i64) -> Tensor {
        Tensor::randn([n, self.cfg.latent], (self.head.w.kind(), self.device()))
    }

    /// WGAN-GP's penalty: E[(|∇ₓ̂ D(x̂)|₂ − 1)²] at x̂ = εx + (1 − ε)x̃, one
    /// ε ~ U(0, 1) per image broadcast over its own shape; built with
    /// `create_graph` so its gradient reaches the critic's weights.
    pub fn gradient_penalty(
        &self,
        real: &Tensor,
        fake: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<Tensor> {
        let n = real.size()[0];
        let mut shape = vec![n];
        shape.extend(std::iter::repeat_n(1i64, real.dim() - 1));
        let eps = Tensor::rand(&shape, (real.kind(), real.device()));
        let xhat = (&eps * real + (-&eps + 1.0) * fake.detach())
            .detach()
            .set_requires_grad(true);
        let score = self.discriminate(&xhat, y, true)?;
        let grad = Tensor::run_backward(&[score.sum(Kind::Float)], &[&xhat], true, true)
            .pop()
            .expect("one input");
        let norm = (grad
            .flatten(1, -1)
            .square()
            .sum_dim_intlist(1, false, Kind::Float)
            + 1e-12)
            .sqrt();
        Ok((norm - 1.0).square().mean(Kind::Float))
    }

    /// The discriminator's loss on real images `x` (labels `y`) and fresh
    /// samples.
    fn disc_loss(&self, x: &Tensor, y: &Tensor) -> Result<Losses> {
        let yl = Some(y).filter(|_| self.cfg.conditional());
        // The generator is not trained in this step: no graph is recorded
        // for it (BatchNorm still updates its running statistics).
        let fake = {
            let _g = tch::no_grad_guard();
            self.generate(&self.noise(x.size()[0]), yl, true)?
        };
        let mean = |t: Tensor| t.mean(Kind::Float);
        // Real and generated batches in separate passes (with BatchNorm, each
        // normalised apart, as DCGAN does; one joint pass was measured slower).
        let real_s = self.discriminate(x, yl, true)?;
        let fake_s = self.discriminate(&fake, yl, true)?;
        Ok(match self.cfg.kind {
            GanKind::WganGp => {
                let w = mean(real_s) - mean(fake_s);
                let gp = self.gradient_penalty(x, &fake, yl)?;
                Losses::single(-&w + &gp * self.cfg.gp_weight)
                    .part("wasserstein", &w)
                    .part("gp", &gp)
            }
            GanKind::Dcgan => {
                let l = mean((-&real_s).softplus()) + mean(fake_s.softplus());
                Losses::single(l)
            }
            GanKind::Sngan | GanKind::Cgan => {
                let l = mean((-&real_s + 1.0).relu()) + mean((&fake_s + 1.0).relu());
                Losses::single(l)
            }
        })
    }

    /// The generator's loss on a batch of fresh samples of the labels `y`.
    fn gen_loss(&self, y: &Tensor) -> Result<Losses> {
        let n = y.size()[0];
        let yl = Some(y).filter(|_| self.cfg.conditional());
        let fake = self.generate(&self.noise(n), yl, true)?;
        let s = self.discriminate(&fake, yl, true)?;
        Ok(Losses::single(match self.cfg.kind {
            GanKind::Dcgan => (-s).softplus().mean(Kind::Float),
            _ => -s.mean(Kind::Float),
        }))
    }

    /// Checks of a trained pair on real images, without gradients:
    /// `d_gap` (mean score of real minus generated images), `d_acc` (share
    /// told apart by the midpoint of the two means), `diversity` (mean
    /// pairwise pixel distance of samples over that of real images) and
    /// the flags `collapse` (diversity below 0.5: the samples are much more
    /// alike than real images) and `diverged` (a discriminator that tells
    /// every image apart, or a non-finite score).
    pub fn health(&self, real: &Split, n: i64) -> Result<BTreeMap<String, f64>> {
        let _g = tch::no_grad_guard();
        let r = real.spread(n);
        let n = r.len();
        let yl = Some(&r.y).filter(|_| self.cfg.conditional());
        let fake = self.generate(&self.noise(n), yl, false)?;
        let rs = self.discriminate(&r.x, yl, false)?.to_kind(Kind::Double);
        let fs = self.discriminate(&fake, yl, false)?.to_kind(Kind::Double);
        let (mr, mf) = (
            rs.mean(Kind::Double).double_value(&[]),
            fs.mean(Kind::Double).double_value(&[]),
        );
        let mid = (mr + mf) / 2.0;
        let sign = if mr >= mf { 1.0 } else { -1.0 };
        let right = ((&rs - mid) * sign)
            .gt(0.0)
            .sum(Kind::Int64)
            .int64_value(&[])
            + ((&fs - mid) * sign)
                .le(0.0)
                .sum(Kind::Int64)
                .int64_value(&[]);
        let acc = right as f64 / (2 * n).max(1) as f64;
        let spread = |x: &Tensor| {
            let f = x.flatten(1, -1).to_kind(Kind::Double);
            let d = Tensor::cdist(&f, &f, 2.0, None);
            d.sum(Kind::Double).double_value(&[]) / ((n * (n - 1)).max(1) as f64)
        };
        let div = spread(&fake) / spread(&r.x).max(1e-12);
        let finite = mr.is_finite() && mf.is_finite();
        let mut m = BTreeMap::new();
        m.insert("d_gap".into(), mr - mf);
        m.insert("d_acc".into(), acc);
        m.insert("diversity".into(), div);
        m.insert("collapse".into(), if div < 0.5 { 1.0 } else { 0.0 });
        m.insert(
            "diverged".into(),
            if !finite || acc > 0.99 { 1.0 } else { 0.0 },
        );
        Ok(m)
    }
}

impl Trainable for Gan {
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
        vec![
            Group::new("disc", &["disc"]),
            Group::new("gen", &["gen"]).without_data(),
        ]
    }
    fn loss(&mut self, group: &str, b: &Batch, _at: &Progress) -> Result<Losses> {
        if group == "disc" {
            // One power-iteration step per discriminator update (Miyato et al.).
            for l in self.disc_layers() {
                l.power_iteration(1);
            }
            self.disc_loss(&b.x, &b.y)
        } else {
            self.gen_loss(&b.y)
        }
    }
    /// The pair's health is a check of training: with a weight average of
    /// the generator, the critic is asked about the generator it trains
    /// against (the average would look like another generator to it).
    fn training_checks(&mut self, valid: &Split) -> Result<BTreeMap<String, f64>> {
        self.health(valid, 500)
    }
    fn validate(&mut self, _valid: &Split) -> Result<BTreeMap<String, f64>> {
        Ok(BTreeMap::new())
    }
    /// A GAN has no validation criterion: the last epoch is kept.
    fn selection(&self) -> Selection {
        Selection::Last
    }
}

impl Decode for Gan {
    fn latent_dim(&self) -> i64 {
        self.cfg.latent
    }
    fn needs_labels(&self) -> bool {
        self.cfg.conditional()
    }
    fn prior(&self) -> Prior {
        Prior::StandardNormal
    }
    fn decode(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        self.generate(z, y, false)
    }
}

impl Sample for Gan {
    fn needs_labels(&self) -> bool {
        self.cfg.conditional()
    }
    fn sample(&self, n: i64, y: Option<&Tensor>, temperature: f64) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        self.generate(&(self.noise(n) * temperature), y, false)
    }
}

/// The discriminator's penultimate features as a representation (Radford
/// et al. 2016 probe a DCGAN's discriminator features the same way). They
/// need no label, the conditional model's included: its class projection
/// comes after them.
impl Encode for Gan {
    fn code_dim(&self) -> i64 {
        self.feature_dim()
    }
    fn what(&self) -> String {
        format!(
            "{} features before its last layer",
            match self.cfg.kind {
                GanKind::WganGp => "the critic's",
                _ => "the discriminator's",
            }
        )
    }
    fn encode(&self, x: &Tensor, _y: Option<&Tensor>) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        self.disc_features(&x.to_kind(self.head.w.kind()), false)
    }
}

impl ImageModel for Gan {
    fn name(&self) -> String {
        self.cfg.name().into()
    }
    fn describe(&self) -> String {
        let arch = match self.cfg.arch {
            GanArch::Conv => format!("conv, {} channels", self.cfg.hidden[0]),
            GanArch::Mlp => format!("MLP {}", crate::layers::widths(&self.cfg.hidden)),
        };
        let what = match self.cfg.kind {
            GanKind::Dcgan => "DCGAN",
            GanKind::WganGp => "WGAN-GP",
            GanKind::Sngan => "SN-GAN",
            GanKind::Cgan => "conditional SN-GAN",
        };
        format!("{what} ({arch}, latent {})", self.cfg.latent)
    }
    fn classes(&self) -> i64 {
        self.cfg.classes
    }
    /// Not `encoder`: the features are no input of the generator, so the
    /// encoder–decoder tools (reconstructions, encoded interpolations) do
    /// not apply.
    fn representation(&self) -> Option<&dyn Encode> {
        Some(self)
    }
    fn decoder(&self) -> Option<&dyn Decode> {
        Some(self)
    }
    fn sampler(&self) -> Option<&dyn Sample> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn tiny(kind: GanKind, arch: GanArch) -> GanConfig {
        GanConfig {
            kind,
            arch,
            latent: 4,
            hidden: vec![8, 6],
            gp_weight: 10.0,
            channels: 1,
            height: 8,
            width: 8,
            classes: 3,
        }
    }

    #[test]
    fn every_variant_has_finite_losses_and_the_right_shapes() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(0);
        let x = Tensor::rand([5, 1, 8, 8], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 1, 0]);
        for kind in [
            GanKind::Dcgan,
            GanKind::WganGp,
            GanKind::Sngan,
            GanKind::Cgan,
        ] {
            for arch in [GanArch::Mlp, GanArch::Conv] {
                let mut g = Gan::new(tiny(kind, arch), Device::Cpu).unwrap();
                let b = Batch::new(x.shallow_clone(), y.shallow_clone());
                let at = Progress {
                    epoch: 0,
                    epochs: 1,
                    done: 0.0,
                };
                for group in ["disc", "gen"] {
                    let l = g.loss(group, &b, &at).unwrap();
                    assert!(
                        l.loss.double_value(&[]).is_finite(),
                        "{kind:?} {arch:?} {group}"
                    );
                }
                let yy = g.cfg.conditional().then_some(&y);
                assert_eq!(g.sample(5, yy, 1.0).unwrap().size(), [5, 1, 8, 8]);
                if g.cfg.conditional() {
                    assert!(g.sample(5, None, 1.0).is_err());
                }
            }
        }
    }

    #[test]
    fn the_encoder_gives_the_features_the_last_layer_scores() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(4);
        let x = Tensor::rand([5, 1, 8, 8], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 1, 0]);
        for kind in [GanKind::Dcgan, GanKind::Cgan] {
            for (arch, dim) in [(GanArch::Mlp, 6), (GanArch::Conv, 2 * 8 * 2 * 2)] {
                let g = Gan::new(tiny(kind, arch), Device::Cpu).unwrap();
                assert!(g.encoder().is_none(), "its features are no latent code");
                let enc = g.representation().expect("a GAN has a representation");
                assert!(!enc.needs_labels());
                let f = enc.encode(&x, None).unwrap();
                assert_eq!(f.size(), [5, dim], "{kind:?} {arch:?}");
                // The score is the head's affine map of these features (plus,
                // conditionally, the class embedding's inner product with them).
                let _g = tch::no_grad_guard();
                let yy = g.cfg.conditional().then_some(&y);
                let mut s = f.matmul(&g.head.weight().tr()).squeeze_dim(1) + &g.head.b;
                if let Some(e) = &g.embed {
                    s += (e.index_select(0, &y) * &f).sum_dim_intlist(1, false, Kind::Float);
                }
                let d = g.discriminate(&x, yy, false).unwrap();
                let gap = (s - d).abs().max().double_value(&[]);
                assert!(gap < 1e-5, "{kind:?} {arch:?}: {gap}");
            }
        }
    }

    #[test]
    fn the_critic_loss_is_the_negated_wasserstein_estimate_plus_the_penalty() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(2);
        let mut g = Gan::new(tiny(GanKind::WganGp, GanArch::Conv), Device::Cpu).unwrap();
        g.vs.double();
        let o = (Kind::Double, Device::Cpu);
        let x = Tensor::rand([6, 1, 8, 8], o);
        let y = Tensor::zeros([6], (Kind::Int64, Device::Cpu));
        tch::manual_seed(9);
        let joint = g.disc_loss(&x, &y).unwrap();
        tch::manual_seed(9);
        let fake = g.generate(&g.noise(6), None, true).unwrap();
        let w = g.discriminate(&x, None, true).unwrap().mean(Kind::Double)
            - g.discriminate(&fake, None, true)
                .unwrap()
                .mean(Kind::Double);
        let gp = g.gradient_penalty(&x, &fake, None).unwrap();
        let apart = -&w + &gp * 10.0;
        let (a, b) = (joint.loss.double_value(&[]), apart.double_value(&[]));
        assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{a} vs {b}");
    }

    #[test]
    fn gradient_penalty_matches_finite_differences_and_reaches_the_critic() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(1);
        let mut g = Gan::new(tiny(GanKind::WganGp, GanArch::Mlp), Device::Cpu).unwrap();
        g.vs.double();
        let opts = (Kind::Double, Device::Cpu);
        let real = Tensor::rand([3, 1, 8, 8], opts);
        let fake = Tensor::rand([3, 1, 8, 8], opts);
        // The same ε both times: seed before each penalty.
        tch::manual_seed(7);
        let gp = g.gradient_penalty(&real, &fake, None).unwrap();
        // Central differences of D at x̂ give ∇D; the penalty from them.
        tch::manual_seed(7);
        let eps = Tensor::rand([3, 1, 1, 1], opts);
        let xhat = &eps * &real + (-&eps + 1.0) * &fake;
        let d = |x: &Tensor| {
            let _g = tch::no_grad_guard();
            g.discriminate(x, None, true).unwrap()
        };
        let h = 1e-6;
        let mut want = 0.0;
        for i in 0..3 {
            let mut sq = 0.0;
            for j in 0..64 {
                let e = Tensor::zeros([3, 64], opts);
                let _ = e.get(i).get(j).fill_(h);
                let e = e.reshape([3, 1, 8, 8]);
                let dd = (d(&(&xhat + &e)) - d(&(&xhat - &e))).double_value(&[i]) / (2.0 * h);
                sq += dd * dd;
            }
            want += (sq.sqrt() - 1.0).powi(2) / 3.0;
        }
        let got = gp.double_value(&[]);
        assert!(
            (got - want).abs() < 1e-6 * want.max(1e-3),
            "{got} vs {want}"
        );
        // Its gradient reaches every critic weight (double backward).
        let params: Vec<(String, Tensor)> =
            g.vs.variables()
                .into_iter()
                .filter(|(n, _)| n.starts_with("disc") && n.ends_with("weight"))
                .collect();
        assert_eq!(params.len(), 3);
        tch::manual_seed(7);
        let gp = g.gradient_penalty(&real, &fake, None).unwrap();
        let ws: Vec<&Tensor> = params.iter().map(|(_, t)| t).collect();
        let grads = Tensor::run_backward(&[gp], &ws, false, false);
        for ((n, _), gr) in params.iter().zip(grads) {
            let norm = gr.norm().double_value(&[]);
            assert!(norm > 0.0 && norm.is_finite(), "{n}: {norm}");
        }
    }
}
