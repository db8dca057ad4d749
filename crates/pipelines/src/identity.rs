//! The 8-3-8 identity network (`embedlab train identity`), trained by the
//! shared trainer in a run folder of its own.
use crate::images::OutArgs;
use crate::{fail, Result};
use clap::Args;
use embedlab_models::identity::{IdentityConfig, IdentityNet, IdentityResult};
use embedlab_train::{train, Better, OptimConfig, Report, Reuse, RunDir, Table, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::Device;

pub const KIND: &str = "identity";
/// Full-batch steps in one epoch of the trainer.
const STEPS_PER_EPOCH: usize = 100;

#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IdentityArgs {
    /// Full-batch Adam steps (rounded up to a multiple of 100: one epoch).
    #[arg(long, default_value_t = 3000, value_parser = crate::opts::count(1, 10_000_000))]
    pub steps: usize,
    #[arg(long, default_value_t = 0.05, value_parser = crate::opts::rate)]
    pub lr: f64,
    #[command(flatten)]
    pub out: OutArgs,
}

impl Default for IdentityArgs {
    fn default() -> Self {
        Self {
            steps: 3000,
            lr: 0.05,
            out: OutArgs::default(),
        }
    }
}

/// Trains the network; returns its run folder and codes.
pub fn run(a: &IdentityArgs, seed: i64) -> Result<(PathBuf, IdentityResult)> {
    if !(1..=10_000_000).contains(&a.steps) {
        fail!("--steps {} is out of range: give 1..=10000000", a.steps);
    }
    let reuse = if a.out.overwrite {
        Reuse::Overwrite
    } else {
        Reuse::Refuse
    };
    let cfg = TrainConfig::single(
        a.steps.div_ceil(STEPS_PER_EPOCH),
        8,
        OptimConfig::adam(a.lr),
        seed,
    );
    let run = RunDir::create(
        KIND,
        a.out.out.as_deref(),
        reuse,
        &serde_json::json!({"identity": a, "train": cfg}),
    )?;
    crate::progress::show_notes(&run);
    tch::manual_seed(seed);
    let mut net = IdentityNet::new(IdentityConfig::default(), Device::Cpu)?;
    let data = net.data(STEPS_PER_EPOCH);
    let summary = train(&mut net, &data, &data, &cfg, &run, false, &mut |_| {})?;
    let r = net.result()?;
    let mut rep = Report::new(
        KIND,
        "The 8-3-8 identity network",
        "8-3-8 identity autoencoder",
    );
    rep.metric(
        "inputs reconstructed",
        r.correct as f64,
        "of 8",
        Better::Higher,
    );
    rep.metric("final loss", r.final_loss, "BCE", Better::Lower);
    rep.metric(
        "steps",
        (summary.epochs_done * STEPS_PER_EPOCH) as f64,
        "",
        Better::Neither,
    );
    rep.tables.push(Table {
        title: "the hidden code of each input".into(),
        columns: vec![
            "input".into(),
            "hidden units".into(),
            "code".into(),
            "output".into(),
        ],
        rows: (0..r.codes.len())
            .map(|i| {
                vec![
                    (0..r.codes.len())
                        .map(|j| if i == j { '1' } else { '0' })
                        .collect(),
                    r.codes[i]
                        .iter()
                        .map(|v| format!("{v:.3}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    r.bits(i),
                    r.argmax[i].to_string(),
                ]
            })
            .collect(),
        highlight: vec![],
        open: true,
    });
    rep.curve("train.model.loss", "training loss", "epoch", "BCE");
    rep.details = serde_json::to_value(&r)?;
    run.write_report(&rep)?;
    Ok((run.path.clone(), r))
}
