//! The Wasserstein autoencoders: the MMD penalty and the latent GAN.
use super::autoencoders::ArchArg;
use super::{FamilyDef, Model};
use crate::images::ImageFamily;
use crate::memory::{widths, Subject};
use crate::Result;
use clap::Args;
use embedlab_data::ImageDataset;
use embedlab_models::memory::MemoryEstimate;
use embedlab_models::wae::{Penalty, Wae, WaeConfig};
use embedlab_models::Arch;
use embedlab_train::OptimConfig;
use serde::{Deserialize, Serialize};
use tch::Device;

pub struct Waes;

/// The Wasserstein autoencoders' shape and penalty.
#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct WaeArgs {
    #[arg(long, value_enum, default_value_t = ArchArg::Conv)]
    pub arch: ArchArg,
    #[arg(long, default_value_t = 8, value_parser = crate::opts::int(1, 4096))]
    pub latent: i64,
    /// Hidden widths (MLP layers; the conv model uses the first for its
    /// fully connected layer).
    #[arg(long, value_delimiter = ',', default_values_t = vec![512i64, 256], value_parser = crate::opts::int(1, 65_536))]
    pub hidden: Vec<i64>,
    /// The penalty's weight λ (default 10 for MMD, 1 for the latent GAN,
    /// as in Tolstikhin et al.'s MNIST experiments).
    #[arg(long, value_parser = crate::opts::non_negative)]
    pub lambda: Option<f64>,
    /// Hidden widths of WAE-GAN's latent discriminator.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256i64, 256], value_parser = crate::opts::int(1, 65_536))]
    pub zdisc_hidden: Vec<i64>,
}

impl Default for WaeArgs {
    fn default() -> Self {
        Self {
            arch: ArchArg::Conv,
            latent: 8,
            hidden: vec![512, 256],
            lambda: None,
            zdisc_hidden: vec![256, 256],
        }
    }
}

impl FamilyDef for Waes {
    const TAG: &'static str = "wae";
    const MODELS: &'static [Model] = &[
        Model {
            name: "wae-mmd",
            about: "Wasserstein autoencoder with the MMD penalty (IMQ kernel).",
        },
        Model {
            name: "wae-gan",
            about: "Wasserstein autoencoder with a latent-space discriminator.",
        },
    ];
    type Config = WaeConfig;
    type Options = WaeArgs;

    fn configure(model: &str, o: &WaeArgs, ds: &ImageDataset) -> WaeConfig {
        let penalty = if model == "wae-gan" {
            Penalty::Gan
        } else {
            Penalty::Mmd
        };
        WaeConfig {
            penalty,
            arch: o.arch.arch(),
            hidden: o.hidden.clone(),
            latent: o.latent,
            lambda: o.lambda.unwrap_or(match penalty {
                Penalty::Mmd => 10.0,
                Penalty::Gan => 1.0,
            }),
            zdisc_hidden: o.zdisc_hidden.clone(),
            channels: ds.train.channels as i64,
            height: ds.train.height as i64,
            width: ds.train.width as i64,
            classes: ds.classes.len() as i64,
        }
    }
    fn name(c: &WaeConfig) -> String {
        c.name().into()
    }
    fn input_shape(c: &WaeConfig) -> [i64; 3] {
        [c.channels, c.height, c.width]
    }
    fn build(c: &WaeConfig, device: Device) -> Result<Box<dyn ImageFamily>> {
        Ok(Box::new(Wae::new(c.clone(), device)?))
    }
    const ADVERSARIES: &'static [&'static str] = &["zdisc"];
    fn optimizers(c: &WaeConfig, _o: &WaeArgs, lr: Option<f64>) -> Vec<(String, OptimConfig)> {
        let adam = || OptimConfig::adam(lr.unwrap_or(1e-3));
        let mut g = vec![("model".to_string(), adam())];
        if c.penalty == Penalty::Gan {
            g.push(("zdisc".into(), adam()));
        }
        g
    }
    fn memory(c: &WaeConfig, batch: i64) -> Option<Subject> {
        let mut s = Subject::widths_and_latent(
            c.name(),
            &c.hidden,
            c.latent,
            c.arch == Arch::Conv,
            batch,
            [c.channels, c.height, c.width],
            c.estimate(),
        )?;
        if c.penalty == Penalty::Gan {
            // The latent discriminator's widths, before the batch size.
            s.options
                .insert(2, ("--zdisc-hidden".into(), widths(&c.zdisc_hidden)));
            s.weight_drivers.push("--zdisc-hidden");
        }
        Some(s)
    }
}
