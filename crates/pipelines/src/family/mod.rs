//! One descriptor per model family, and the registry that lists them.
//!
//! A family is written once, in its own file, as a [`FamilyDef`]: its tag
//! in `config.json`, the models it offers (the subcommands of `embedlab
//! train`, with their help), its options with their defaults (a clap
//! `Args` struct), how options and data make its configuration, how the
//! configuration builds the model, its optimizer groups with their
//! defaults, its NaN policy, what its memory estimate is driven by. The
//! generic code — training, loading, evaluating, the memory check, the
//! command line — goes through [`Family`] and [`FAMILIES`] and names no
//! family. Adding one is its model file, its family file here, one line in
//! [`FAMILIES`] (and one in the CLI's help text, which lists them).
//!
//! Configurations travel as JSON values (`{"family": tag, "config":
//! {...}}` in `config.json`, the shape the runs have always had), and
//! become the family's typed configuration inside its descriptor.
pub mod autoencoders;
pub mod classifier;
pub mod drlim;
pub mod flows;
pub mod gans;
pub mod waes;

use crate::images::ImageFamily;
use crate::memory::Subject;
use crate::{PipelineError, Result};
use clap::{ArgMatches, Command};
use embedlab_data::ImageDataset;
use embedlab_train::OptimConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use tch::Device;

/// Every family. The order is that of `embedlab train --help`.
pub static FAMILIES: &[&dyn Family] = &[
    &Def::<autoencoders::Autoencoders>::NEW,
    &Def::<waes::Waes>::NEW,
    &Def::<gans::Gans>::NEW,
    &Def::<flows::Flows>::NEW,
    &Def::<classifier::Classifiers>::NEW,
    &Def::<drlim::Drlims>::NEW,
];

/// A model a family offers: its subcommand of `embedlab train` (also the
/// model's name in run folders) and one line of help.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub name: &'static str,
    pub about: &'static str,
}

/// A family, typed: implemented once per family file.
pub trait FamilyDef: Send + Sync + 'static {
    /// Its tag in `config.json` (`"family": "autoencoder"`).
    const TAG: &'static str;
    /// The models it offers.
    const MODELS: &'static [Model];
    /// What fixes a model's shape and loss (saved in `config.json`).
    type Config: Serialize + DeserializeOwned + Clone + std::fmt::Debug;
    /// Its command-line options, their defaults written once (in the
    /// struct's `Default`, which clap's defaults read).
    type Options: clap::Args
        + clap::FromArgMatches
        + Serialize
        + DeserializeOwned
        + Default
        + Clone
        + std::fmt::Debug;
    /// The configuration of `model` from the options and the images.
    fn configure(model: &str, o: &Self::Options, ds: &ImageDataset) -> Self::Config;
    /// The model's short name (one of [`Self::MODELS`]).
    fn name(c: &Self::Config) -> String;
    /// The images it takes: channels, height, width.
    fn input_shape(c: &Self::Config) -> [i64; 3];
    /// Builds the model (seed libtorch's generator first for a repeatable
    /// initialisation).
    fn build(c: &Self::Config, device: Device) -> Result<Box<dyn ImageFamily>>;
    /// Its optimizer groups with their optimizers (`lr`: the user's, when
    /// given), in the order the model trains them.
    fn optimizers(
        c: &Self::Config,
        o: &Self::Options,
        lr: Option<f64>,
    ) -> Vec<(String, OptimConfig)>;
    /// NaN rollbacks unless told otherwise (0: stop).
    fn default_rollbacks(_c: &Self::Config) -> usize {
        0
    }
    /// Its memory estimate and the options that drive it; None for a
    /// configuration the model's constructor refuses anyway.
    fn memory(c: &Self::Config, batch: i64) -> Option<Subject>;
    /// Images of a data-dependent initialisation (0: none).
    fn init_batch(_c: &Self::Config) -> u64 {
        0
    }
    /// Whether it makes images (which `--classifier` can score).
    fn generates(_c: &Self::Config) -> bool {
        true
    }
    /// Its optimizer groups that only train against the model (a GAN's
    /// discriminator, a WAE's latent critic): `--ema` averages every other
    /// group's weights, never these.
    const ADVERSARIES: &'static [&'static str] = &[];
}

/// A family as generic code sees it: configurations as JSON values.
pub trait Family: Send + Sync {
    fn tag(&self) -> &'static str;
    fn models(&self) -> &'static [Model];
    /// Adds the family's options to a subcommand.
    fn options(&self, cmd: Command) -> Command;
    /// The family's options parsed from a subcommand's matches.
    fn options_from(&self, m: &ArgMatches) -> Result<serde_json::Value>;
    /// The family's options with every default.
    fn default_options(&self) -> serde_json::Value;
    fn configure(
        &self,
        model: &str,
        options: &serde_json::Value,
        ds: &ImageDataset,
    ) -> Result<serde_json::Value>;
    /// Checks that a configuration read from disk is one of this family's.
    fn check(&self, cfg: &serde_json::Value) -> Result<()>;
    fn name(&self, cfg: &serde_json::Value) -> Result<String>;
    fn input_shape(&self, cfg: &serde_json::Value) -> Result<[i64; 3]>;
    fn build(&self, cfg: &serde_json::Value, device: Device) -> Result<Box<dyn ImageFamily>>;
    fn optimizers(
        &self,
        cfg: &serde_json::Value,
        options: &serde_json::Value,
        lr: Option<f64>,
    ) -> Result<Vec<(String, OptimConfig)>>;
    fn default_rollbacks(&self, cfg: &serde_json::Value) -> Result<usize>;
    fn memory(&self, cfg: &serde_json::Value, batch: i64) -> Result<Option<Subject>>;
    fn init_batch(&self, cfg: &serde_json::Value) -> Result<u64>;
    fn generates(&self, cfg: &serde_json::Value) -> Result<bool>;
    fn adversaries(&self) -> &'static [&'static str];
}

/// The [`Family`] of a [`FamilyDef`].
pub struct Def<F>(PhantomData<fn() -> F>);

impl<F> Def<F> {
    pub const NEW: Self = Def(PhantomData);
}

fn typed<T: DeserializeOwned>(tag: &str, v: &serde_json::Value) -> Result<T> {
    T::deserialize(v).map_err(|e| PipelineError::Invalid(format!("not a {tag} configuration: {e}")))
}

impl<F: FamilyDef> Family for Def<F> {
    fn tag(&self) -> &'static str {
        F::TAG
    }
    fn models(&self) -> &'static [Model] {
        F::MODELS
    }
    fn options(&self, cmd: Command) -> Command {
        <F::Options as clap::Args>::augment_args(cmd)
    }
    fn options_from(&self, m: &ArgMatches) -> Result<serde_json::Value> {
        let o = <F::Options as clap::FromArgMatches>::from_arg_matches(m)
            .map_err(|e| PipelineError::Invalid(e.to_string()))?;
        Ok(serde_json::to_value(o)?)
    }
    fn default_options(&self) -> serde_json::Value {
        serde_json::to_value(F::Options::default()).expect("options serialise")
    }
    fn configure(
        &self,
        model: &str,
        options: &serde_json::Value,
        ds: &ImageDataset,
    ) -> Result<serde_json::Value> {
        let o: F::Options = typed(F::TAG, options)?;
        Ok(serde_json::to_value(F::configure(model, &o, ds))?)
    }
    fn check(&self, cfg: &serde_json::Value) -> Result<()> {
        typed::<F::Config>(F::TAG, cfg).map(|_| ())
    }
    fn name(&self, cfg: &serde_json::Value) -> Result<String> {
        Ok(F::name(&typed(F::TAG, cfg)?))
    }
    fn input_shape(&self, cfg: &serde_json::Value) -> Result<[i64; 3]> {
        Ok(F::input_shape(&typed(F::TAG, cfg)?))
    }
    fn build(&self, cfg: &serde_json::Value, device: Device) -> Result<Box<dyn ImageFamily>> {
        F::build(&typed(F::TAG, cfg)?, device)
    }
    fn optimizers(
        &self,
        cfg: &serde_json::Value,
        options: &serde_json::Value,
        lr: Option<f64>,
    ) -> Result<Vec<(String, OptimConfig)>> {
        Ok(F::optimizers(
            &typed(F::TAG, cfg)?,
            &typed(F::TAG, options)?,
            lr,
        ))
    }
    fn default_rollbacks(&self, cfg: &serde_json::Value) -> Result<usize> {
        Ok(F::default_rollbacks(&typed(F::TAG, cfg)?))
    }
    fn memory(&self, cfg: &serde_json::Value, batch: i64) -> Result<Option<Subject>> {
        Ok(F::memory(&typed(F::TAG, cfg)?, batch))
    }
    fn init_batch(&self, cfg: &serde_json::Value) -> Result<u64> {
        Ok(F::init_batch(&typed(F::TAG, cfg)?))
    }
    fn generates(&self, cfg: &serde_json::Value) -> Result<bool> {
        Ok(F::generates(&typed(F::TAG, cfg)?))
    }
    fn adversaries(&self) -> &'static [&'static str] {
        F::ADVERSARIES
    }
}

/// The family of a `config.json` tag.
pub fn by_tag(tag: &str) -> Result<&'static dyn Family> {
    FAMILIES
        .iter()
        .copied()
        .find(|f| f.tag() == tag)
        .ok_or_else(|| {
            PipelineError::Invalid(format!(
                "unknown model family {tag:?} (this embedlab knows {})",
                FAMILIES
                    .iter()
                    .map(|f| f.tag())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// The family offering the model `name` (a subcommand of `embedlab train`).
pub fn by_model(name: &str) -> Result<&'static dyn Family> {
    FAMILIES
        .iter()
        .copied()
        .find(|f| f.models().iter().any(|m| m.name == name))
        .ok_or_else(|| {
            PipelineError::Invalid(format!(
                "unknown model {name:?} (this embedlab trains {})",
                models().map(|m| m.name).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// Every model of every family, in the registry's order.
pub fn models() -> impl Iterator<Item = Model> {
    FAMILIES.iter().flat_map(|f| f.models().iter().copied())
}

/// A model's configuration as `config.json` holds it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub family: String,
    pub config: serde_json::Value,
}

impl ModelConfig {
    /// A typed configuration of the family `F`.
    pub fn of<F: FamilyDef>(c: &F::Config) -> Self {
        Self {
            family: F::TAG.into(),
            config: serde_json::to_value(c).expect("configurations serialise"),
        }
    }
    /// The typed configuration, when this is one of `F`'s.
    pub fn get<F: FamilyDef>(&self) -> Option<Result<F::Config>> {
        (self.family == F::TAG).then(|| typed(F::TAG, &self.config))
    }
    pub fn family(&self) -> Result<&'static dyn Family> {
        by_tag(&self.family)
    }
    /// Checks that the family is known and the configuration is one of its.
    pub fn check(&self) -> Result<()> {
        self.family()?.check(&self.config)
    }
    /// The model's short name (`vae`); the tag when the configuration does
    /// not parse (which [`Self::check`] reports).
    pub fn name(&self) -> String {
        self.family()
            .and_then(|f| f.name(&self.config))
            .unwrap_or_else(|_| self.family.clone())
    }
    pub fn build(&self, device: Device) -> Result<Box<dyn ImageFamily>> {
        self.family()?.build(&self.config, device)
    }
    pub fn input_shape(&self) -> Result<[i64; 3]> {
        self.family()?.input_shape(&self.config)
    }
    pub fn default_rollbacks(&self) -> Result<usize> {
        self.family()?.default_rollbacks(&self.config)
    }
    pub fn memory(&self, batch: i64) -> Result<Option<Subject>> {
        self.family()?.memory(&self.config, batch)
    }
    pub fn init_batch(&self) -> Result<u64> {
        self.family()?.init_batch(&self.config)
    }
    pub fn generates(&self) -> Result<bool> {
        self.family()?.generates(&self.config)
    }
    pub fn adversaries(&self) -> Result<&'static [&'static str]> {
        Ok(self.family()?.adversaries())
    }
}

/// Which model to train and its family's options, before the data fixes
/// its input size.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The model's name (`vae`).
    pub model: String,
    /// Its family's options.
    pub options: serde_json::Value,
}

impl ModelSpec {
    /// `model` with its family's options `o` (of the family's `Options` type).
    pub fn new(model: &str, o: &impl Serialize) -> Self {
        Self {
            model: model.into(),
            options: serde_json::to_value(o).expect("options serialise"),
        }
    }
    /// `model` with every default option.
    pub fn defaults(model: &str) -> Result<Self> {
        Ok(Self {
            model: model.into(),
            options: by_model(model)?.default_options(),
        })
    }
    pub fn family(&self) -> Result<&'static dyn Family> {
        by_model(&self.model)
    }
    /// The model's configuration for the images of `ds`.
    pub fn config(&self, ds: &ImageDataset) -> Result<ModelConfig> {
        let f = self.family()?;
        Ok(ModelConfig {
            family: f.tag().into(),
            config: f.configure(&self.model, &self.options, ds)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_name_is_unique_and_found() {
        let names: Vec<_> = models().map(|m| m.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
        for n in &names {
            assert!(by_model(n).unwrap().models().iter().any(|m| m.name == *n));
        }
        assert!(by_model("nope").is_err());
        assert!(by_tag("nope").is_err());
    }

    /// 8×8 images of two classes, as a data set read from disk would be.
    fn tiny() -> ImageDataset {
        let set = |n: usize| embedlab_data::ImageSet {
            pixels: (0..n * 64).map(|i| (i * 37 % 256) as u8).collect(),
            labels: (0..n).map(|i| (i % 2) as u8).collect(),
            n,
            channels: 1,
            height: 8,
            width: 8,
        };
        ImageDataset {
            name: "tiny".into(),
            train: set(8),
            test: set(4),
            classes: vec!["a".into(), "b".into()],
            source: "tiny".into(),
            notes: vec![],
        }
    }

    /// Each descriptor's optimizer groups are its model's, in the order it
    /// trains them; its name, shape and memory estimate are the built
    /// model's; its configuration survives config.json.
    #[test]
    fn every_descriptor_agrees_with_the_model_it_builds() {
        let ds = tiny();
        for m in models() {
            let spec = ModelSpec::defaults(m.name).unwrap();
            let cfg = spec.config(&ds).unwrap();
            let f = spec.family().unwrap();
            let model = cfg.build(Device::Cpu).unwrap();
            assert_eq!(cfg.name(), m.name);
            assert_eq!(model.name(), m.name);
            let groups: Vec<String> = f
                .optimizers(&cfg.config, &spec.options, None)
                .unwrap()
                .into_iter()
                .map(|(g, _)| g)
                .collect();
            assert_eq!(groups, model.group_names(), "{}", m.name);
            assert_eq!(cfg.input_shape().unwrap(), [1, 8, 8]);
            let subject = cfg.memory(16).unwrap().expect("an estimate");
            assert_eq!(
                subject.estimate.parameters as i64,
                model.parameters(),
                "{}",
                m.name
            );
            let back: ModelConfig =
                serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
            assert_eq!(back, cfg);
            back.check().unwrap();
        }
        // A configuration of another family is refused on reading.
        let mut wrong = ModelSpec::defaults("vae").unwrap().config(&ds).unwrap();
        wrong.family = "gan".into();
        assert!(wrong
            .check()
            .unwrap_err()
            .to_string()
            .contains("not a gan configuration"));
    }

    /// The generic code (training, loading, the memory check, the
    /// registry itself) names no family: no family's types, kinds or
    /// model names appear outside the families' own files.
    #[test]
    fn generic_code_names_no_family() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut banned: Vec<String> = [
            "AeConfig",
            "GanConfig",
            "WaeConfig",
            "ClassifierConfig",
            "FlowConfig",
            "DrlimConfig",
            "GanKind",
            "FlowKind",
            "Penalty",
            "Family::Vae",
            "AutoEncoder",
            "Classifier::",
            "Flow::",
            "Gan::",
            "Wae::",
            "Drlim",
            "models::gan",
            "models::wae",
            "models::flow",
            "models::classifier",
            "models::drlim",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        banned.extend(models().map(|m| format!("{:?}", m.name)));
        banned.extend(FAMILIES.iter().map(|f| format!("{:?}", f.tag())));
        for file in [
            "images.rs",
            "memory.rs",
            "evaluate.rs",
            "analysis.rs",
            "family/mod.rs",
        ] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            // The code, not its tests (which build configurations by hand).
            let code = text.split("#[cfg(test)]").next().unwrap();
            for b in &banned {
                for (n, line) in code.lines().enumerate() {
                    let l = line.trim_start();
                    // The registry's own lines name the families' files.
                    if l.starts_with("//") || l.starts_with("&Def::<") || l.starts_with("pub mod ")
                    {
                        continue;
                    }
                    assert!(
                        !line.contains(b.as_str()),
                        "src/{file}:{}: names {b}: {line}",
                        n + 1
                    );
                }
            }
        }
    }
}
