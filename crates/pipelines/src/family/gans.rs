//! The GANs: DCGAN, WGAN-GP, SN-GAN, the class-conditional SN-GAN.
use super::{FamilyDef, Model};
use crate::images::ImageFamily;
use crate::memory::Subject;
use crate::Result;
use clap::{Args, ValueEnum};
use embedlab_data::ImageDataset;
use embedlab_models::gan::{Gan, GanArch, GanConfig, GanKind};
use embedlab_models::memory::MemoryEstimate;
use embedlab_train::OptimConfig;
use serde::{Deserialize, Serialize};
use tch::Device;

pub struct Gans;

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GanArchArg {
    Mlp,
    Conv,
}

/// The GANs' players and training balance.
#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GanArgs {
    /// Convolutional players (28×28, 32×32, any size divisible by 4) or MLPs.
    #[arg(long, value_enum, default_value_t = GanArchArg::Conv)]
    pub arch: GanArchArg,
    #[arg(long, default_value_t = 64, value_parser = crate::opts::int(1, 4096))]
    pub latent: i64,
    /// Conv: the discriminator's first channel count (default 64; the
    /// generator mirrors it). MLP: hidden widths (default 512,256).
    #[arg(long, value_delimiter = ',', value_parser = crate::opts::int(1, 65_536))]
    pub hidden: Vec<i64>,
    /// WGAN-GP's gradient-penalty weight λ.
    #[arg(long, default_value_t = 10.0, value_parser = crate::opts::non_negative)]
    pub gp_weight: f64,
    /// Discriminator (critic) steps per generator step (default 5 for
    /// WGAN-GP, 1 otherwise).
    #[arg(long, value_parser = crate::opts::count(1, 100))]
    pub d_steps: Option<usize>,
    /// Adam's β₁ for both players (default 0.5).
    #[arg(long, value_parser = crate::opts::below_one)]
    pub beta1: Option<f64>,
    /// Adam's β₂ for both players (default 0.9 for WGAN-GP, 0.999 otherwise).
    #[arg(long, value_parser = crate::opts::open_unit)]
    pub beta2: Option<f64>,
}

impl Default for GanArgs {
    fn default() -> Self {
        Self {
            arch: GanArchArg::Conv,
            latent: 64,
            hidden: vec![],
            gp_weight: 10.0,
            d_steps: None,
            beta1: None,
            beta2: None,
        }
    }
}

impl FamilyDef for Gans {
    const TAG: &'static str = "gan";
    const MODELS: &'static [Model] = &[
        Model {
            name: "dcgan",
            about: "DCGAN: non-saturating loss, BatchNorm in both players.",
        },
        Model {
            name: "wgan-gp",
            about: "WGAN-GP: Wasserstein critic with a gradient penalty (5 critic steps a generator step).",
        },
        Model {
            name: "sngan",
            about: "SN-GAN: spectrally normalised discriminator, hinge loss.",
        },
        Model {
            name: "cgan",
            about: "Class-conditional SN-GAN (projection discriminator).",
        },
    ];
    type Config = GanConfig;
    type Options = GanArgs;

    fn configure(model: &str, o: &GanArgs, ds: &ImageDataset) -> GanConfig {
        // The model names are the kinds' own (kebab-case) names.
        let kind: GanKind =
            serde_json::from_value(serde_json::json!(model)).unwrap_or(GanKind::Dcgan);
        let arch = match o.arch {
            GanArchArg::Mlp => GanArch::Mlp,
            GanArchArg::Conv => GanArch::Conv,
        };
        let hidden = match (o.hidden.is_empty(), arch) {
            (false, _) => o.hidden.clone(),
            (true, GanArch::Conv) => vec![64],
            (true, GanArch::Mlp) => vec![512, 256],
        };
        GanConfig {
            kind,
            arch,
            latent: o.latent,
            hidden,
            gp_weight: o.gp_weight,
            channels: ds.train.channels as i64,
            height: ds.train.height as i64,
            width: ds.train.width as i64,
            classes: ds.classes.len() as i64,
        }
    }
    fn name(c: &GanConfig) -> String {
        c.name().into()
    }
    fn input_shape(c: &GanConfig) -> [i64; 3] {
        [c.channels, c.height, c.width]
    }
    fn build(c: &GanConfig, device: Device) -> Result<Box<dyn ImageFamily>> {
        Ok(Box::new(Gan::new(c.clone(), device)?))
    }
    /// Adam with the reference papers' settings: lr 2e-4 and betas (0.5,
    /// 0.999) for DCGAN and SN-GAN (Radford et al.; Miyato et al.), lr
    /// 1e-4, betas (0.5, 0.9) and 5 critic steps a generator step for
    /// WGAN-GP (Gulrajani et al.); then the options' overrides.
    const ADVERSARIES: &'static [&'static str] = &["disc"];
    fn optimizers(c: &GanConfig, o: &GanArgs, lr: Option<f64>) -> Vec<(String, OptimConfig)> {
        let wgan = c.kind == GanKind::WganGp;
        let lr = lr.unwrap_or(if wgan { 1e-4 } else { 2e-4 });
        let beta1 = o.beta1.unwrap_or(0.5);
        let beta2 = o.beta2.unwrap_or(if wgan { 0.9 } else { 0.999 });
        let d_steps = o.d_steps.unwrap_or(if wgan { 5 } else { 1 });
        let adam = OptimConfig::adam(lr).with_betas(beta1, beta2);
        vec![
            ("disc".into(), adam.clone().with_steps(d_steps)),
            ("gen".into(), adam),
        ]
    }
    fn memory(c: &GanConfig, batch: i64) -> Option<Subject> {
        Subject::widths_and_latent(
            c.name(),
            &c.hidden,
            c.latent,
            c.arch == GanArch::Conv,
            batch,
            [c.channels, c.height, c.width],
            c.estimate(),
        )
    }
}
