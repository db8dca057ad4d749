//! DrLIM (Hadsell, Chopra, LeCun 2006): a map learned from a
//! neighbourhood graph with the contrastive loss.
use super::autoencoders::ArchArg;
use super::{FamilyDef, Model};
use crate::images::ImageFamily;
use crate::memory::{widths, Subject};
use crate::Result;
use clap::{Args, ValueEnum};
use embedlab_data::ImageDataset;
use embedlab_models::drlim::{Drlim, DrlimConfig, Graph};
use embedlab_models::memory::MemoryEstimate;
use embedlab_train::OptimConfig;
use serde::{Deserialize, Serialize};
use tch::Device;

pub struct Drlims;

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GraphArg {
    /// Images of the same label are neighbours (supervised).
    Labels,
    /// The --k nearest images in pixel space (no labels).
    Knn,
    /// Labels are cells of a --grid ROWSxCOLS of two controlled factors;
    /// neighbours are the same and the adjacent cells.
    Grid,
}

/// DrLIM's map, loss and neighbourhood graph.
#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DrlimArgs {
    #[arg(long, value_enum, default_value_t = Self::default().arch)]
    pub arch: ArchArg,
    /// Hidden widths (MLP layers; the conv encoder uses the first for its
    /// fully connected layer).
    #[arg(long, value_delimiter = ',', default_values_t = Self::default().hidden, value_parser = crate::opts::int(1, 65_536))]
    pub hidden: Vec<i64>,
    /// Dimension of the map.
    #[arg(long, default_value_t = Self::default().dim, value_parser = crate::opts::int(1, 4096))]
    pub dim: i64,
    /// The margin m: dissimilar pairs farther apart than m cost nothing.
    #[arg(long, default_value_t = Self::default().margin, value_parser = crate::opts::positive)]
    pub margin: f64,
    /// Share of the training pairs that are neighbours.
    #[arg(long, default_value_t = Self::default().positive_fraction, value_parser = crate::opts::fraction)]
    pub positive_fraction: f64,
    #[arg(long, value_enum, default_value_t = Self::default().graph)]
    pub graph: GraphArg,
    /// --graph knn: neighbours of each image.
    #[arg(long, default_value_t = Self::default().k, value_parser = crate::opts::count(1, 1000))]
    pub k: usize,
    /// --graph grid: the factors' grid, ROWSxCOLS (e.g. 18x9).
    #[arg(long, value_parser = parse_grid)]
    pub grid: Option<(i64, i64)>,
    /// --graph grid: the rows' factor wraps around (an angle).
    #[arg(long)]
    pub circular_rows: bool,
    /// Known transformations: horizontal shifts in pixels (e.g. -6,-3,3,6);
    /// each side of a pair is seen shifted by one of them or not at all,
    /// and an image's shifted copies are its neighbours.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, value_parser = crate::opts::nonzero_int(1024))]
    pub shifts: Vec<i64>,
}

fn parse_grid(s: &str) -> std::result::Result<(i64, i64), String> {
    let (r, c) = s
        .split_once(['x', '×'])
        .ok_or_else(|| format!("{s:?}: give ROWSxCOLS, e.g. 18x9"))?;
    let n = |v: &str| -> std::result::Result<i64, String> {
        match v.trim().parse::<i64>() {
            Ok(x) if (1..=100_000).contains(&x) => Ok(x),
            _ => Err(format!(
                "{s:?}: rows and columns are whole numbers in 1..=100000"
            )),
        }
    };
    Ok((n(r)?, n(c)?))
}

impl Default for DrlimArgs {
    fn default() -> Self {
        Self {
            arch: ArchArg::Mlp,
            hidden: vec![256, 128],
            dim: 2,
            margin: 1.0,
            positive_fraction: 0.5,
            graph: GraphArg::Knn,
            k: 5,
            grid: None,
            circular_rows: false,
            shifts: vec![],
        }
    }
}

impl FamilyDef for Drlims {
    const TAG: &'static str = "drlim";
    const MODELS: &'static [Model] = &[Model {
        name: "drlim",
        about: "DrLIM: a low-dimensional map learned with the contrastive loss from a neighbourhood graph (labels, k-NN in pixels, or a grid of controlled factors).",
    }];
    type Config = DrlimConfig;
    type Options = DrlimArgs;

    fn configure(_model: &str, o: &DrlimArgs, ds: &ImageDataset) -> DrlimConfig {
        let shape = [
            ds.train.channels as i64,
            ds.train.height as i64,
            ds.train.width as i64,
        ];
        let mut c = DrlimConfig::new(o.arch.arch(), shape, ds.classes.len() as i64);
        c.hidden = o.hidden.clone();
        c.dim = o.dim;
        c.margin = o.margin;
        c.positive_fraction = o.positive_fraction;
        c.graph = match o.graph {
            GraphArg::Labels => Graph::Labels,
            GraphArg::Knn => Graph::Knn { k: o.k },
            // Without --grid, one row of as many cells as there are classes.
            GraphArg::Grid => {
                let (rows, cols) = o.grid.unwrap_or((1, ds.classes.len() as i64));
                Graph::Grid {
                    rows,
                    cols,
                    circular_rows: o.circular_rows,
                }
            }
        };
        c.shifts = o.shifts.clone();
        c
    }
    fn name(_c: &DrlimConfig) -> String {
        "drlim".into()
    }
    fn input_shape(c: &DrlimConfig) -> [i64; 3] {
        [c.channels, c.height, c.width]
    }
    fn build(c: &DrlimConfig, device: Device) -> Result<Box<dyn ImageFamily>> {
        Ok(Box::new(Drlim::new(c.clone(), device)?))
    }
    fn optimizers(_c: &DrlimConfig, _o: &DrlimArgs, lr: Option<f64>) -> Vec<(String, OptimConfig)> {
        vec![("encoder".into(), OptimConfig::adam(lr.unwrap_or(1e-3)))]
    }
    fn memory(c: &DrlimConfig, batch: i64) -> Option<Subject> {
        c.check().ok()?;
        Some(Subject {
            name: "drlim".into(),
            options: vec![
                ("--hidden".into(), widths(&c.hidden)),
                ("--dim".into(), c.dim.to_string()),
                ("--batch-size".into(), batch.to_string()),
            ],
            weight_drivers: vec!["--hidden", "--dim"],
            activation_drivers: vec!["--batch-size", "--hidden"],
            shape: [c.channels, c.height, c.width],
            estimate: c.estimate(),
        })
    }
    fn generates(_c: &DrlimConfig) -> bool {
        false
    }
}
