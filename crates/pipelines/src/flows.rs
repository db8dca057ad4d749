//! Normalizing flows in the pipelines: their options, and the checks a
//! user can run on any flow run (round trip, log-determinant against a
//! brute-force Jacobian, Lipschitz constants of the residual blocks).
use crate::images::RunConfig;
use crate::{PipelineError, Result};
use clap::{Args, ValueEnum};
use embedlab_data::ImageDataset;
use embedlab_models::flow::{
    BaseDist, BlockCheck, Estimator, Flow, FlowConfig, FlowKind, Layout, ResidualConfig,
};
use embedlab_train::trainer::load_best;
use embedlab_train::{RunDir, Trainable};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::Device;

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PreprocessArg {
    /// x − ½.
    Shift,
    /// logit(α + (1 − 2α)x), its Jacobian counted in the bits/dim.
    Logit,
}

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LayoutArg {
    /// The images as they are (28×28×1).
    Native,
    /// Padded to 32×32 and tiled to 3 channels: the layout of the published
    /// MNIST bits/dim.
    Padded32x3,
}

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EstimatorArg {
    /// The power series truncated at --terms.
    Series,
    /// Russian roulette (Residual Flows): --terms exact terms, then a
    /// geometric number more, reweighted (unbiased).
    Roulette,
}

/// The flows' shape, pre-processing and (i-ResNet) log-determinant.
#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FlowArgs {
    /// Levels: each squeezes (halving height and width), runs --steps steps
    /// and splits half its channels off (28×28 allows 2; --layout
    /// padded32x3 up to 5).
    #[arg(long, default_value_t = 2, value_parser = crate::opts::count(1, 8))]
    pub levels: usize,
    /// Steps a level (default 8 for Glow and RealNVP, 4 for i-ResNet).
    #[arg(long, value_parser = crate::opts::count(1, 256))]
    pub steps: Option<usize>,
    /// Width of the coupling networks (i-ResNet: of the residual blocks).
    #[arg(long, default_value_t = 64, value_parser = crate::opts::int(1, 4096))]
    pub hidden: i64,
    /// Additive (volume-preserving) coupling instead of affine.
    #[arg(long)]
    pub additive: bool,
    /// The bound c of the couplings' log-scale c·tanh(raw / c).
    #[arg(long, default_value_t = 2.0, value_parser = crate::opts::positive)]
    pub clamp: f64,
    /// Keep every channel to the top (no multi-scale split).
    #[arg(long)]
    pub no_split: bool,
    /// Pre-processing (default: shift for Glow and i-ResNet, logit for RealNVP).
    #[arg(long, value_enum)]
    pub preprocess: Option<PreprocessArg>,
    /// The logit's α.
    #[arg(long, default_value_t = 0.05, value_parser = crate::opts::below_half)]
    pub alpha: f64,
    #[arg(long, value_enum, default_value_t = LayoutArg::Native)]
    pub layout: LayoutArg,
    /// A class-conditional prior (the top latent's mean and scale from the label).
    #[arg(long)]
    pub conditional: bool,
    /// Training images actnorm's data-dependent initialisation uses.
    #[arg(long, default_value_t = 512, value_parser = crate::opts::int(2, 100_000))]
    pub init_batch: i64,
    /// i-ResNet: the Lipschitz coefficient of each convolution.
    #[arg(long, default_value_t = 0.9, value_parser = crate::opts::open_unit)]
    pub coeff: f64,
    /// i-ResNet: the log-determinant's estimator.
    #[arg(long, value_enum, default_value_t = EstimatorArg::Series)]
    pub estimator: EstimatorArg,
    /// i-ResNet: power-series terms (the roulette's exact ones). Each term
    /// is one more vector–Jacobian product per probe and step; the series'
    /// terms shrink as c^k, so past 100 they add nothing (the papers use 1–10).
    #[arg(long, default_value_t = 5, value_parser = crate::opts::count(1, 100))]
    pub terms: usize,
    /// i-ResNet: Hutchinson probe vectors (each one costs a full series).
    #[arg(long, default_value_t = 1, value_parser = crate::opts::count(1, 100))]
    pub probes: usize,
    /// i-ResNet: exact log-determinant for blocks of at most this many
    /// values an image.
    #[arg(long, default_value_t = 64, value_parser = crate::opts::int(0, 4096))]
    pub exact_max: i64,
    /// i-ResNet: fixed-point iterations of the inverse, at most (the
    /// iteration contracts by c a step: c = 0.99 reaches 1e-6 in about
    /// 1,400, so 10,000 bounds every c this takes).
    #[arg(long, default_value_t = 100, value_parser = crate::opts::count(1, 10_000))]
    pub inverse_iters: usize,
    /// i-ResNet: the inverse stops when no value changes by more than this
    /// (in [1e-12, 1]; float32 values cannot get below about 1e-7).
    #[arg(long, default_value_t = 1e-6, value_parser = crate::opts::tolerance)]
    pub inverse_tol: f64,
    /// Test bits/dim evaluations averaged (default 3 for i-ResNet, whose
    /// estimate is random, 1 otherwise).
    #[arg(long, value_parser = crate::opts::count(1, 100))]
    pub eval_repeats: Option<usize>,
}

impl Default for FlowArgs {
    fn default() -> Self {
        Self {
            levels: 2,
            steps: None,
            hidden: 64,
            additive: false,
            clamp: 2.0,
            no_split: false,
            preprocess: None,
            alpha: 0.05,
            layout: LayoutArg::Native,
            conditional: false,
            init_batch: 512,
            coeff: 0.9,
            estimator: EstimatorArg::Series,
            terms: 5,
            probes: 1,
            exact_max: 64,
            inverse_iters: 100,
            inverse_tol: 1e-6,
            eval_repeats: None,
        }
    }
}

impl FlowArgs {
    pub fn config(&self, kind: FlowKind, ds: &ImageDataset) -> FlowConfig {
        let shape = [
            ds.train.channels as i64,
            ds.train.height as i64,
            ds.train.width as i64,
        ];
        self.config_for(kind, shape, ds.classes.len() as i64)
    }
    /// The configuration for images of `shape` (c, h, w) and `classes`.
    pub fn config_for(&self, kind: FlowKind, shape: [i64; 3], classes: i64) -> FlowConfig {
        let mut c = FlowConfig::new(kind, shape, classes);
        c.levels = self.levels;
        if let Some(s) = self.steps {
            c.steps = s;
        }
        c.hidden = self.hidden;
        c.additive = self.additive;
        c.clamp = self.clamp;
        c.split = !self.no_split;
        c.logit = match self.preprocess {
            Some(PreprocessArg::Shift) => None,
            Some(PreprocessArg::Logit) => Some(self.alpha),
            None => c.logit.map(|_| self.alpha),
        };
        c.layout = match self.layout {
            LayoutArg::Native => Layout::Native,
            LayoutArg::Padded32x3 => Layout::Padded32x3,
        };
        c.base = BaseDist::Gaussian;
        c.conditional = self.conditional;
        c.init_batch = self.init_batch;
        c.residual = ResidualConfig {
            coeff: self.coeff,
            hidden: self.hidden,
            estimator: match self.estimator {
                EstimatorArg::Series => Estimator::Series,
                EstimatorArg::Roulette => Estimator::Roulette,
            },
            terms: self.terms,
            probes: self.probes,
            exact_max: self.exact_max,
            inverse_iters: self.inverse_iters,
            inverse_tol: self.inverse_tol,
            ..ResidualConfig::default()
        };
        if let Some(r) = self.eval_repeats {
            c.eval_repeats = r;
        }
        c
    }
}

/// What `embedlab flow-check` found.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FlowCheck {
    pub run: String,
    pub image: i64,
    pub precision: String,
    pub blocks: Vec<BlockCheck>,
}

/// Loads a flow run's best weights as a concrete flow, in double precision.
fn load_flow(dir: &Path, device: Device) -> Result<(RunDir, RunConfig, Flow, ImageDataset)> {
    let (run, cfg) = crate::images::open_run(dir)?;
    let Some(fc) = cfg.model.get::<crate::family::flows::Flows>() else {
        return Err(PipelineError::file(
            dir,
            format!(
                "holds a {} run; flow-check takes a glow, realnvp or iresnet run",
                cfg.model_name()
            ),
        ));
    };
    let ds = cfg.data.load()?;
    let mut flow = Flow::new(fc?, device)?;
    load_best(
        flow.var_store(),
        dir,
        &Trainable::kind(&flow),
        &Trainable::config_json(&flow),
    )?;
    flow.vs.double();
    Ok((run, cfg, flow, ds))
}

/// `embedlab flow-check RUN`: every block's round trip and log-determinant
/// against the brute-force Jacobian on test image `image` (in double
/// precision), the estimator's spread over `draws`, and the residual
/// blocks' Lipschitz constants; saved as `flow-check.json` in the run.
pub fn check(
    dir: &Path,
    image: i64,
    draws: usize,
    device: Device,
) -> Result<(std::path::PathBuf, FlowCheck)> {
    let (run, cfg, flow, ds) = load_flow(dir, device)?;
    let splits = cfg.splits(&ds, device)?;
    let n = splits.test.len();
    if image < 0 || image >= n {
        return Err(PipelineError::Invalid(format!(
            "--image {image}: the test set has images 0..{}",
            n - 1
        )));
    }
    let x = splits.test.x.narrow(0, image, 1).to_kind(tch::Kind::Double);
    let blocks = flow.check_blocks(&x, draws)?;
    let out = FlowCheck {
        run: dir.display().to_string(),
        image,
        precision: "float64 copy of the trained weights".into(),
        blocks,
    };
    run.write_json("flow-check.json", &out)?;
    Ok((run.out_file("flow-check.json"), out))
}
