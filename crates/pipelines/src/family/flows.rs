//! The normalizing flows: Glow, RealNVP, i-ResNet (their options and
//! checks: [`crate::flows`]).
use super::{FamilyDef, Model};
use crate::flows::FlowArgs;
use crate::images::ImageFamily;
use crate::memory::Subject;
use crate::Result;
use embedlab_data::ImageDataset;
use embedlab_models::flow::{Flow, FlowConfig, FlowKind};
use embedlab_models::memory::MemoryEstimate;
use embedlab_train::OptimConfig;
use tch::Device;

pub struct Flows;

impl FamilyDef for Flows {
    const TAG: &'static str = "flow";
    const MODELS: &'static [Model] = &[
        Model {
            name: "glow",
            about: "Glow: actnorm, LU 1×1 convolution, affine coupling; multi-scale.",
        },
        Model {
            name: "realnvp",
            about: "RealNVP: checkerboard and channel couplings with fixed reversals.",
        },
        Model {
            name: "iresnet",
            about: "Invertible residual network: contractive residual blocks, power-series log-determinant.",
        },
    ];
    type Config = FlowConfig;
    type Options = FlowArgs;

    fn configure(model: &str, o: &FlowArgs, ds: &ImageDataset) -> FlowConfig {
        // The model names are the kinds' own (lowercase) names.
        let kind: FlowKind =
            serde_json::from_value(serde_json::json!(model)).unwrap_or(FlowKind::Glow);
        o.config(kind, ds)
    }
    fn name(c: &FlowConfig) -> String {
        c.name().into()
    }
    fn input_shape(c: &FlowConfig) -> [i64; 3] {
        [c.channels, c.height, c.width]
    }
    fn build(c: &FlowConfig, device: Device) -> Result<Box<dyn ImageFamily>> {
        Ok(Box::new(Flow::new(c.clone(), device)?))
    }
    fn optimizers(_c: &FlowConfig, _o: &FlowArgs, lr: Option<f64>) -> Vec<(String, OptimConfig)> {
        vec![("model".into(), OptimConfig::adam(lr.unwrap_or(1e-3)))]
    }
    /// Flows roll back on a NaN (the remedy Glow's users apply by hand).
    fn default_rollbacks(_c: &FlowConfig) -> usize {
        3
    }
    fn memory(c: &FlowConfig, batch: i64) -> Option<Subject> {
        if c.check().is_err() {
            return None;
        }
        Some(memory_subject(c, batch, "--batch-size"))
    }
    fn init_batch(c: &FlowConfig) -> u64 {
        c.init_batch.max(0) as u64
    }
}

/// A flow's memory estimate and the options that drive it, the batch
/// size being set by `batch_option` (`--batch-size` in training,
/// `--batch` in `embedlab bench flow`).
pub fn memory_subject(c: &FlowConfig, batch: i64, batch_option: &'static str) -> Subject {
    let opt = |o: &str, v: String| (o.to_string(), v);
    let iresnet = c.kind == FlowKind::Iresnet;
    let hidden = if iresnet { c.residual.hidden } else { c.hidden };
    let mut options = vec![
        opt("--levels", c.levels.to_string()),
        opt("--steps", c.steps.to_string()),
        opt("--hidden", hidden.to_string()),
    ];
    if !c.split {
        options.push(opt("--no-split", String::new()));
    }
    let mut activation_drivers = vec![batch_option, "--hidden", "--steps"];
    if iresnet {
        options.push(opt("--terms", c.residual.terms.to_string()));
        options.push(opt("--probes", c.residual.probes.to_string()));
        options.push(opt("--exact-max", c.residual.exact_max.to_string()));
        activation_drivers.extend(["--terms", "--probes", "--exact-max"]);
    }
    options.push(opt(batch_option, batch.to_string()));
    options.push(opt("--init-batch", c.init_batch.to_string()));
    let [ch, h, w] = c.input_shape();
    Subject {
        name: c.name().into(),
        options,
        weight_drivers: vec!["--hidden", "--steps", "--levels"],
        activation_drivers,
        shape: [ch, h, w],
        estimate: c.estimate(),
    }
}
