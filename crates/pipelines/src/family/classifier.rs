//! The in-domain conv classifier g∘h: its h(x) is a representation, and
//! the feature space of the generative metrics (`--classifier`).
use super::{FamilyDef, Model};
use crate::images::ImageFamily;
use crate::memory::Subject;
use crate::Result;
use clap::Args;
use embedlab_data::ImageDataset;
use embedlab_models::classifier::{Classifier, ClassifierConfig};
use embedlab_models::memory::MemoryEstimate;
use embedlab_train::OptimConfig;
use serde::{Deserialize, Serialize};
use tch::Device;

pub struct Classifiers;

/// The in-domain classifier's shape.
#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ClassifierArgs {
    /// Channels of the first two convolutions (the next two have twice as many).
    #[arg(long, default_value_t = 32, value_parser = crate::opts::int(1, 1024))]
    pub width: i64,
    /// Size of the penultimate layer h(x), the representation.
    #[arg(long, default_value_t = 128, value_parser = crate::opts::int(1, 65_536))]
    pub features: i64,
    #[arg(long, default_value_t = 0.5, value_parser = crate::opts::below_one)]
    pub dropout: f64,
}

impl Default for ClassifierArgs {
    fn default() -> Self {
        Self {
            width: 32,
            features: 128,
            dropout: 0.5,
        }
    }
}

impl FamilyDef for Classifiers {
    const TAG: &'static str = "classifier";
    const MODELS: &'static [Model] = &[Model {
        name: "classifier",
        about: "The in-domain conv classifier g∘h: its h(x) is a representation and the feature space of the generative metrics (--classifier).",
    }];
    type Config = ClassifierConfig;
    type Options = ClassifierArgs;

    fn configure(_model: &str, o: &ClassifierArgs, ds: &ImageDataset) -> ClassifierConfig {
        ClassifierConfig {
            width: o.width,
            features: o.features,
            dropout: o.dropout,
            channels: ds.train.channels as i64,
            height: ds.train.height as i64,
            width_px: ds.train.width as i64,
            classes: ds.classes.len() as i64,
        }
    }
    fn name(_c: &ClassifierConfig) -> String {
        "classifier".into()
    }
    fn input_shape(c: &ClassifierConfig) -> [i64; 3] {
        [c.channels, c.height, c.width_px]
    }
    fn build(c: &ClassifierConfig, device: Device) -> Result<Box<dyn ImageFamily>> {
        Ok(Box::new(Classifier::new(c.clone(), device)?))
    }
    fn optimizers(
        _c: &ClassifierConfig,
        _o: &ClassifierArgs,
        lr: Option<f64>,
    ) -> Vec<(String, OptimConfig)> {
        vec![("model".into(), OptimConfig::adam(lr.unwrap_or(1e-3)))]
    }
    fn memory(c: &ClassifierConfig, batch: i64) -> Option<Subject> {
        if c.height % 4 != 0 || c.width_px % 4 != 0 || c.width < 1 || c.features < 1 {
            return None;
        }
        Some(Subject {
            name: "classifier".into(),
            options: vec![
                ("--width".into(), c.width.to_string()),
                ("--features".into(), c.features.to_string()),
                ("--batch-size".into(), batch.to_string()),
            ],
            weight_drivers: vec!["--width", "--features"],
            activation_drivers: vec!["--batch-size", "--width"],
            shape: [c.channels, c.height, c.width_px],
            estimate: c.estimate(),
        })
    }
    fn generates(_c: &ClassifierConfig) -> bool {
        false
    }
}
