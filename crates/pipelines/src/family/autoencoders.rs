//! The autoencoders: AE, VAE, and their label-conditioned versions.
use super::{FamilyDef, Model};
use crate::images::ImageFamily;
use crate::memory::Subject;
use crate::Result;
use clap::{ArgAction, Args, ValueEnum};
use embedlab_data::ImageDataset;
use embedlab_models::memory::MemoryEstimate;
use embedlab_models::{AeConfig, Arch, AutoEncoder, Family, Likelihood};
use embedlab_train::OptimConfig;
use serde::{Deserialize, Serialize};
use tch::Device;

pub struct Autoencoders;

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ArchArg {
    Mlp,
    Conv,
}

impl ArchArg {
    pub fn arch(self) -> Arch {
        match self {
            ArchArg::Mlp => Arch::Mlp,
            ArchArg::Conv => Arch::Conv,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LikelihoodArg {
    Bernoulli,
    Gaussian,
}

/// The autoencoders' shape and loss.
#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AeArgs {
    #[arg(long, value_enum, default_value_t = Self::default().arch)]
    pub arch: ArchArg,
    #[arg(long, default_value_t = Self::default().latent, value_parser = crate::opts::int(1, 4096))]
    pub latent: i64,
    /// Hidden widths (MLP layers; the conv models use the first for their
    /// fully connected layer).
    #[arg(long, value_delimiter = ',', default_values_t = Self::default().hidden, value_parser = crate::opts::int(1, 65_536))]
    pub hidden: Vec<i64>,
    /// No hidden layers (MLP only; --hidden is then unused): the code is a
    /// linear map of the pixels and the output's logits a linear map of the
    /// code — the 8-3-8 network's idea at image scale.
    #[arg(long, conflicts_with = "hidden")]
    #[serde(default)]
    pub linear: bool,
    #[arg(long, value_enum, default_value_t = Self::default().likelihood)]
    pub likelihood: LikelihoodArg,
    /// Dynamic binarisation for the Bernoulli likelihood.
    #[arg(long, action = ArgAction::Set, default_value_t = Self::default().binarize)]
    pub binarize: bool,
    /// KL weight (β-VAE).
    #[arg(long, default_value_t = Self::default().beta, value_parser = crate::opts::non_negative)]
    pub beta: f64,
    /// KL warm-up: epochs over which the KL weight rises from 0 to β.
    #[arg(long, default_value_t = Self::default().warmup, value_parser = crate::opts::non_negative)]
    pub warmup: f64,
}

impl Default for AeArgs {
    fn default() -> Self {
        Self {
            arch: ArchArg::Mlp,
            latent: 20,
            hidden: vec![512, 256],
            linear: false,
            likelihood: LikelihoodArg::Bernoulli,
            binarize: true,
            beta: 1.0,
            warmup: 0.0,
        }
    }
}

impl FamilyDef for Autoencoders {
    const TAG: &'static str = "autoencoder";
    const MODELS: &'static [Model] = &[
        Model {
            name: "ae",
            about: "Autoencoder (deterministic code).",
        },
        Model {
            name: "vae",
            about: "Variational autoencoder.",
        },
        Model {
            name: "cae",
            about: "Conditional autoencoder (label-conditioned encoder and decoder).",
        },
        Model {
            name: "cvae",
            about: "Conditional VAE.",
        },
    ];
    type Config = AeConfig;
    type Options = AeArgs;

    fn configure(model: &str, o: &AeArgs, ds: &ImageDataset) -> AeConfig {
        let family = if model.contains("vae") {
            Family::Vae
        } else {
            Family::Ae
        };
        let likelihood = match o.likelihood {
            LikelihoodArg::Bernoulli => Likelihood::Bernoulli,
            LikelihoodArg::Gaussian => Likelihood::Gaussian,
        };
        AeConfig {
            family,
            conditional: model.starts_with('c'),
            arch: o.arch.arch(),
            hidden: if o.linear { vec![] } else { o.hidden.clone() },
            latent: o.latent,
            likelihood,
            binarize: o.binarize && likelihood == Likelihood::Bernoulli,
            beta: o.beta,
            warmup_epochs: o.warmup,
            channels: ds.train.channels as i64,
            height: ds.train.height as i64,
            width: ds.train.width as i64,
            classes: ds.classes.len() as i64,
        }
    }
    fn name(c: &AeConfig) -> String {
        c.name().into()
    }
    fn input_shape(c: &AeConfig) -> [i64; 3] {
        [c.channels, c.height, c.width]
    }
    fn build(c: &AeConfig, device: Device) -> Result<Box<dyn ImageFamily>> {
        Ok(Box::new(AutoEncoder::new(c.clone(), device)?))
    }
    fn optimizers(_c: &AeConfig, _o: &AeArgs, lr: Option<f64>) -> Vec<(String, OptimConfig)> {
        vec![("model".into(), OptimConfig::adam(lr.unwrap_or(1e-3)))]
    }
    fn memory(c: &AeConfig, batch: i64) -> Option<Subject> {
        Subject::widths_and_latent(
            c.name(),
            &c.hidden,
            c.latent,
            c.arch == Arch::Conv,
            batch,
            [c.channels, c.height, c.width],
            c.estimate(),
        )
    }
}
