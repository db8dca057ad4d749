//! `embedlab train`, `eval` and `latent`: image models, parsed and printed.
use anyhow::Result;
use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};
use embedlab_pipelines::analysis::{AnalysisOpts, MapMethod};
use embedlab_pipelines::evaluate::{EvalOpts, DEFAULT_EPOCH_SAMPLES};
use embedlab_pipelines::family::{self, ModelSpec};
use embedlab_pipelines::flows;
use embedlab_pipelines::identity::{self, IdentityArgs};
use embedlab_pipelines::images::{self, load_run, DataArgs, OptimArgs, OutArgs, TrainRequest};
use embedlab_pipelines::opts;
use embedlab_train::{Metric, Report};
use std::path::PathBuf;
use tch::Device;

/// `embedlab train MODEL`: one subcommand per model of the families'
/// registry ([`family::FAMILIES`]), each with its family's options and the
/// shared ones, and the 8-3-8 network.
#[derive(Debug, Clone)]
pub enum TrainCmd {
    /// A model of the registry: its name and its subcommand's matches.
    Model {
        name: String,
        matches: ArgMatches,
    },
    Identity(IdentityArgs),
}

const IDENTITY: &str = "identity";

impl FromArgMatches for TrainCmd {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        match m.subcommand() {
            Some((IDENTITY, sub)) => Ok(TrainCmd::Identity(IdentityArgs::from_arg_matches(sub)?)),
            Some((name, sub)) if family::by_model(name).is_ok() => Ok(TrainCmd::Model {
                name: name.to_string(),
                matches: sub.clone(),
            }),
            Some((name, _)) => Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidSubcommand,
                format!("no model {name:?} to train"),
            )),
            None => Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand)),
        }
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Subcommand for TrainCmd {
    fn augment_subcommands(mut cmd: Command) -> Command {
        for f in family::FAMILIES {
            for m in f.models() {
                // `about` last: augmenting sets it from the structs' comments.
                let sub = TrainArgs::augment_args(f.options(Command::new(m.name)));
                cmd = cmd.subcommand(sub.about(m.about));
            }
        }
        cmd.subcommand(
            IdentityArgs::augment_args(Command::new(IDENTITY))
                .about("The 8-3-8 identity network of the course (prints its 3-unit code)."),
        )
    }
    fn augment_subcommands_for_update(cmd: Command) -> Command {
        Self::augment_subcommands(cmd)
    }
    fn has_subcommand(name: &str) -> bool {
        name == IDENTITY || family::by_model(name).is_ok()
    }
}

/// Everything an image model's training takes beside its family's options.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub optim: OptimArgs,
    #[command(flatten)]
    pub eval: EvalOpts,
    /// With --classifier: after every epoch, this many samples scored
    /// against validation images (Fréchet distance, confident-sample rate,
    /// classes covered, precision/recall as `valid.fd`, `valid.confident`,
    /// … in metrics.jsonl, charted against epochs and minutes); 0: only the
    /// test-set score at the end.
    #[arg(long, default_value_t = DEFAULT_EPOCH_SAMPLES, value_parser = opts::int(0, 1_000_000))]
    pub epoch_samples: i64,
    #[command(flatten)]
    pub analysis: AnalysisOpts,
    #[command(flatten)]
    pub out: OutArgs,
    /// Continue the run in this folder (it keeps its options; only --epochs
    /// and --patience may change).
    #[arg(long, conflicts_with_all = ["out", "overwrite"])]
    pub resume: Option<PathBuf>,
}

fn print_metrics(metrics: &[Metric]) {
    for m in metrics {
        let value = if m.value.fract() == 0.0 && m.value.abs() < 1e12 {
            format!("{}", m.value as i64)
        } else {
            format!("{:.4}", m.value)
        };
        let unit = if m.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", m.unit)
        };
        let note = m
            .note
            .as_deref()
            .map(|n| format!("   ({n})"))
            .unwrap_or_default();
        println!("  {:<28} {value}{unit}{note}", m.name);
    }
}

fn print_report(dir: &std::path::Path, r: &Report) {
    println!("{}", r.title);
    print_metrics(&r.metrics);
    println!("run folder: {}", dir.display());
}

pub fn train(t: &TrainCmd, matches: &ArgMatches, seed: i64, device: Device) -> Result<()> {
    let (name, sub) = match t {
        TrainCmd::Identity(a) => {
            let (dir, r) = identity::run(a, seed)?;
            println!("8-3-8 identity autoencoder, final loss {:.4}", r.final_loss);
            print!("{}", r.table());
            println!("{}/8 inputs reconstructed", r.correct);
            println!("run folder: {}", dir.display());
            return Ok(());
        }
        TrainCmd::Model { name, matches } => (name.as_str(), matches),
    };
    let a = TrainArgs::from_arg_matches(sub)?;
    let model = ModelSpec {
        model: name.to_string(),
        options: family::by_model(name)?.options_from(sub)?,
    };
    let out = match &a.resume {
        Some(dir) => {
            let given = super::given(
                &<crate::Cli as clap::CommandFactory>::command(),
                matches,
                &["train", name],
            );
            super::check_resume_options(&given, &["epochs", "patience"])?;
            let epochs = given
                .iter()
                .any(|g| g == "epochs")
                .then_some(a.optim.epochs);
            images::resume(dir, Some(name), epochs, a.optim.patience, device)?
        }
        None => images::train_new(
            &TrainRequest {
                model,
                data: a.data,
                optim: a.optim,
                eval: EvalOpts {
                    epoch_samples: a.epoch_samples,
                    ..a.eval
                },
                analysis: a.analysis,
                out: a.out,
                seed,
            },
            device,
        )?,
    };
    print_report(&out.dir, &out.report);
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run folder written by `embedlab train`.
    pub run: PathBuf,
    #[command(flatten)]
    pub eval: EvalOpts,
    /// Evaluate on the test images of another image set of the same size
    /// instead (out-of-distribution likelihoods).
    #[arg(long, conflicts_with = "classifier")]
    pub on: Option<PathBuf>,
}

pub fn eval(a: &EvalArgs, device: Device) -> Result<()> {
    let (file, metrics) = images::eval(&a.run, &a.eval, a.on.as_deref(), device)?;
    println!("test metrics of {}:", a.run.display());
    print_metrics(&metrics);
    println!("wrote {}", file.display());
    Ok(())
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// n × (c·h·w) float32 .npy of images in [0, 1].
    pub samples: PathBuf,
    /// A run folder written by `embedlab train classifier`.
    #[arg(long)]
    pub classifier: PathBuf,
    /// Samples scored (and real test images in each real set).
    #[arg(long, default_value_t = 5000, value_parser = opts::int(10, 1_000_000))]
    pub n: i64,
}

pub fn score(a: &ScoreArgs, device: Device) -> Result<()> {
    let metrics = images::score_file(&a.samples, &a.classifier, a.n, device)?;
    println!("{}:", a.samples.display());
    print_metrics(&metrics);
    Ok(())
}

#[derive(Args, Debug)]
pub struct FlowCheckArgs {
    /// A run folder written by `embedlab train glow|realnvp|iresnet`.
    pub run: PathBuf,
    /// The test image the checks run on.
    #[arg(long, default_value_t = 0, value_parser = opts::int(0, 100_000_000))]
    pub image: i64,
    /// Evaluations of an estimated log-determinant (its mean and spread).
    #[arg(long, default_value_t = 20, value_parser = opts::count(1, 10_000))]
    pub draws: usize,
}

pub fn flow_check(a: &FlowCheckArgs, device: Device) -> Result<()> {
    let (file, c) = flows::check(&a.run, a.image, a.draws, device)?;
    println!(
        "{}: test image {}, {} (log-determinants: the block's own vs the brute-force Jacobian's)",
        a.run.display(),
        c.image,
        c.precision
    );
    println!(
        "{:<5} {:<46} {:>6} {:>10} {:>14} {:>14} {:>9}",
        "level", "block", "dims", "round trip", "log-det", "brute force", "sd"
    );
    for b in &c.blocks {
        println!(
            "{:<5} {:<46} {:>6} {:>10.2e} {:>14.6} {:>14.6} {:>9.2e}",
            b.level, b.block, b.dims, b.round_trip, b.logdet, b.brute_force, b.logdet_sd
        );
        if let Some(s) = b.jacobian_sigma {
            let (it, ch) = b.inverse_iterations.unwrap_or((0, 0.0));
            println!(
                "      Lipschitz: σ_max(J_g) at the image {s:.4}; inverse {it} iterations, last change {ch:.1e}"
            );
        }
        for (i, l) in b.layers.iter().enumerate() {
            println!(
                "      conv {}: σ {:.4} (power iteration) vs {:.4} ({}), c = {}",
                i + 1,
                l.sigma_estimate,
                l.sigma_true,
                l.how,
                l.coeff
            );
        }
    }
    println!("wrote {}", file.display());
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum LatentCmd {
    /// Samples (the model's own; a Gaussian fitted to the codes for an AE).
    Samples {
        run: PathBuf,
        #[arg(long, default_value_t = 100, value_parser = opts::int(1, 10_000))]
        n: i64,
        /// Scale the latent standard deviation (models with their own
        /// sampler: flows, VAEs, GANs); 1 is the model's own.
        #[arg(long, default_value_t = 1.0, value_parser = opts::temperature)]
        temperature: f64,
    },
    /// Class-conditional samples, one row a class (CAE/CVAE).
    ClassSamples {
        run: PathBuf,
        #[arg(long, default_value_t = 10, value_parser = opts::int(1, 1000))]
        per_class: i64,
    },
    /// Test images and their reconstructions, alternating rows.
    Reconstruct {
        run: PathBuf,
        #[arg(long, default_value_t = 30, value_parser = opts::int(1, 10_000))]
        n: i64,
    },
    /// Latent interpolation between two test images (with the pixel cross-fade under it).
    Interpolate {
        run: PathBuf,
        #[arg(long, value_parser = opts::int(0, 100_000_000))]
        from: i64,
        #[arg(long, value_parser = opts::int(0, 100_000_000))]
        to: i64,
        #[arg(long, default_value_t = 10, value_parser = opts::int(2, 100))]
        steps: i64,
    },
    /// Vary single latent dimensions around a test image's code.
    Traverse {
        run: PathBuf,
        #[arg(long, default_value_t = 0, value_parser = opts::int(0, 100_000_000))]
        index: i64,
        #[arg(long, default_value_t = 8, value_parser = opts::int(1, 64))]
        dims: i64,
        /// ± this many standard deviations.
        #[arg(long, default_value_t = 3.0, value_parser = opts::span)]
        range: f64,
        #[arg(long, default_value_t = 10, value_parser = opts::int(2, 50))]
        steps: i64,
    },
    /// 2-D map of test codes coloured by class.
    Map {
        run: PathBuf,
        #[arg(long, value_enum, default_value_t = MapMethod::Tsne)]
        method: MapMethod,
        #[arg(long, default_value_t = 2000, value_parser = opts::int(3, 20_000))]
        images: i64,
    },
    /// Nearest training images to a test image, in the model's code space
    /// and in pixel space, with same-class statistics beside pixels and PCA.
    Query {
        run: PathBuf,
        #[arg(long, default_value_t = 0, value_parser = opts::int(0, 100_000_000))]
        index: i64,
        #[arg(long, default_value_t = 8, value_parser = opts::int(1, 100))]
        k: i64,
        /// Test images the same-class statistics average over.
        #[arg(long, default_value_t = 1000, value_parser = opts::int(1, 10_000))]
        queries: i64,
    },
    /// Linear probes: logistic regression on the codes, pixels and PCA.
    Probe {
        run: PathBuf,
        /// Training images the probes learn from.
        #[arg(long, default_value_t = 10_000, value_parser = opts::int(10, 1_000_000))]
        train_images: i64,
    },
}

pub fn latent(c: &LatentCmd, device: Device) -> Result<()> {
    let run = match c {
        LatentCmd::Samples { run, .. }
        | LatentCmd::ClassSamples { run, .. }
        | LatentCmd::Reconstruct { run, .. }
        | LatentCmd::Interpolate { run, .. }
        | LatentCmd::Traverse { run, .. }
        | LatentCmd::Map { run, .. }
        | LatentCmd::Query { run, .. }
        | LatentCmd::Probe { run, .. } => run,
    };
    let r = load_run(run, device)?;
    let an = r.analysis();
    let not_for =
        |what: &str| anyhow::anyhow!("{}: a {} has no {what}", run.display(), r.cfg.model_name());
    let figure = match c {
        LatentCmd::Samples { n, temperature, .. } => an
            .samples(*n, *temperature)?
            .ok_or_else(|| not_for("samples at a temperature (it has no sampler of its own)"))?,
        LatentCmd::ClassSamples { per_class, .. } => an
            .class_samples(*per_class)?
            .ok_or_else(|| not_for("class-conditional samples (train a cae or cvae)"))?,
        LatentCmd::Reconstruct { n, .. } => an
            .reconstructions(*n)?
            .ok_or_else(|| not_for("reconstructions"))?,
        LatentCmd::Interpolate {
            from, to, steps, ..
        } => an
            .interpolations(&[(*from, *to)], *steps)?
            .ok_or_else(|| not_for("interpolations"))?,
        LatentCmd::Traverse {
            index,
            dims,
            range,
            steps,
            ..
        } => an
            .traversal(*index, *dims, *range, *steps)?
            .ok_or_else(|| not_for("traversals"))?,
        LatentCmd::Map { method, images, .. } => an.map(*method, *images)?,
        LatentCmd::Query {
            index, k, queries, ..
        } => {
            let (stats, fig) = an.query(*index, *k, *queries)?;
            println!(
                "test image {index} (class {}): {k} nearest training images in {}",
                r.ds.classes[r.splits.test.y.int64_value(&[*index]) as usize],
                r.run.out_file(&fig.file).display()
            );
            for s in &stats {
                println!(
                    "same-class neighbours over {} queries, {:<10} {:.2}%",
                    s.queries,
                    s.representation,
                    100.0 * s.same_class
                );
            }
            r.run.write_json("query.json", &stats)?;
            fig
        }
        LatentCmd::Probe { train_images, .. } => {
            let m = an.probe(*train_images)?;
            println!("linear probe, test accuracy:");
            print_metrics(&m);
            r.run.write_json("probe.json", &m)?;
            println!("wrote {}", r.run.out_file("probe.json").display());
            return Ok(());
        }
    };
    println!(
        "wrote {} ({})",
        r.run.out_file(&figure.file).display(),
        figure.caption
    );
    Ok(())
}
