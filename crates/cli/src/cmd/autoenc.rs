//! `embedlab train` (AE, VAE, CAE, CVAE, the 8-3-8 identity network),
//! `embedlab eval` (test ELBO, IWAE NLL) and `embedlab latent` (samples,
//! reconstructions, interpolations, traversals, 2-D maps, query by image,
//! linear probe) on a run folder.
use crate::run::RunDir;
use crate::util::{bar, spinner};
use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args, Subcommand, ValueEnum};
use embedlab_data::{load_image_dataset, ImageDataset};
use embedlab_metrics::neighbours::knn;
use embedlab_metrics::probe::{linear_probe, ProbeConfig, ProbeResult};
use embedlab_models::batches::{prepare, Split, Splits};
use embedlab_models::checkpoint::{load_weights, BEST};
use embedlab_models::identity::train_identity;
use embedlab_models::latent::{
    activity, by_activity, crossfade, encode_all, interpolate, samples, traverse,
};
use embedlab_models::train::{train, Schedule, TrainConfig, TrainSummary};
use embedlab_models::{AeConfig, Arch, AutoEncoder, Family, Likelihood};
use embedlab_reports::grid::{save_grid, GridStyle};
use embedlab_reports::projection::{pca_2d, tsne_2d};
use embedlab_reports::scatter::save_scatter;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Autoencoder (deterministic code).
    Ae,
    /// Variational autoencoder.
    Vae,
    /// Conditional autoencoder (label-conditioned encoder and decoder).
    Cae,
    /// Conditional VAE.
    Cvae,
    /// The 8-3-8 identity network of the course (prints its 3-unit code).
    Identity,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ArchArg {
    Mlp,
    Conv,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum LikelihoodArg {
    Bernoulli,
    Gaussian,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ScheduleArg {
    Constant,
    Cosine,
    Step,
}

/// Which images, and how they are split.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// An MNIST-format IDX folder, a CIFAR-10 binary folder, or an image
    /// CSV (.csv/.csv.gz; every fifth row is the test set).
    #[arg(long, default_value = "data/fashion-mnist")]
    pub data: PathBuf,
    /// Training images held out for validation (default 5000, or 10% of
    /// sets under 50,000).
    #[arg(long)]
    pub valid: Option<usize>,
    /// Use at most this many training images (quick runs).
    #[arg(long)]
    pub train_limit: Option<usize>,
}

/// Test-set evaluation options.
#[derive(Args, Debug, Clone)]
pub struct EvalOpts {
    /// Importance samples per image for the IWAE NLL (0: skip).
    #[arg(long, default_value_t = 1000)]
    pub iwae_k: i64,
    /// Test images the IWAE NLL averages over (the ELBO uses all).
    #[arg(long, default_value_t = 500)]
    pub iwae_images: i64,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    pub model: ModelKind,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_enum, default_value_t = ArchArg::Mlp)]
    pub arch: ArchArg,
    #[arg(long, default_value_t = 20)]
    pub latent: i64,
    /// Hidden widths (MLP layers; the conv models use the first for their
    /// fully connected layer).
    #[arg(long, value_delimiter = ',', default_value = "512,256")]
    pub hidden: Vec<i64>,
    #[arg(long, value_enum, default_value_t = LikelihoodArg::Bernoulli)]
    pub likelihood: LikelihoodArg,
    /// Dynamic binarisation for the Bernoulli likelihood.
    #[arg(long, action = ArgAction::Set, default_value_t = true)]
    pub binarize: bool,
    /// KL weight (β-VAE).
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// KL warm-up: epochs over which the KL weight rises from 0 to β.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Epochs (default 10; with --resume, the new total).
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 128)]
    pub batch_size: i64,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, value_enum, default_value_t = ScheduleArg::Constant)]
    pub schedule: ScheduleArg,
    /// --schedule step: epochs between decays.
    #[arg(long, default_value_t = 10)]
    pub step_every: usize,
    /// --schedule step: decay factor.
    #[arg(long, default_value_t = 0.5)]
    pub step_gamma: f64,
    /// Clip the gradients' joint L2 norm.
    #[arg(long)]
    pub clip: Option<f64>,
    /// Early stopping: epochs without a better validation loss.
    #[arg(long)]
    pub patience: Option<usize>,
    #[command(flatten)]
    pub eval: EvalOpts,
    /// Skip the image grids, maps, query and probe after training.
    #[arg(long)]
    pub no_images: bool,
    /// Also draw a t-SNE map of the codes (PCA always).
    #[arg(long)]
    pub tsne: bool,
    /// Run folder (default runs/train-<model>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder (its saved options are used; only
    /// --epochs and --patience may change).
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// 8-3-8 network: full-batch steps.
    #[arg(long, default_value_t = 3000)]
    pub identity_steps: usize,
}

/// Saved as `config.json` in the run folder.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RunConfig {
    pub model: AeConfig,
    pub train: TrainConfig,
    pub data: DataConfig,
}

impl RunConfig {
    /// Reads a run folder's `config.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let cp = dir.join("config.json");
        let text = std::fs::read_to_string(&cp)
            .with_context(|| format!("cannot read {}", cp.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not an autoencoder run's config", cp.display()))
    }

    /// The run's splits of `ds` (the same images every time: the split
    /// depends on the seed alone).
    pub fn splits(&self, ds: &ImageDataset, device: Device) -> Result<Splits> {
        Ok(prepare(
            ds,
            self.data.valid,
            self.data.train_limit,
            self.train.seed as u64,
            device,
        )?)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DataConfig {
    pub path: PathBuf,
    pub name: String,
    pub valid: usize,
    pub train_limit: Option<usize>,
    pub train_images: i64,
    pub valid_images: i64,
    pub test_images: i64,
}

/// Test-set numbers, in nats per image.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct TestReport {
    pub images: i64,
    /// −log p(x | z) (one posterior sample for a VAE; the code for an AE).
    pub reconstruction_nll: f64,
    /// Mean squared error of the mean reconstruction, per pixel.
    pub reconstruction_mse: f64,
    pub kl: Option<f64>,
    /// VAE latent dimensions whose posterior mean varies across test images
    /// (variance > 0.01; Burda et al. 2016), of `latent`.
    pub active_units: Option<i64>,
    pub latent: i64,
    /// ELBO (VAE): a lower bound on log p(x).
    pub elbo: Option<f64>,
    /// −IWAE bound: an upper bound on −log p(x), tighter with k.
    pub nll_iwae: Option<f64>,
    pub iwae_k: Option<i64>,
    pub iwae_images: Option<i64>,
    pub seconds: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct QueryStats {
    pub queries: i64,
    pub k: i64,
    /// Fraction of the k nearest training images sharing the query's label.
    pub latent_label_precision: f64,
    pub pixel_label_precision: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ProbeReport {
    pub pixels: ProbeResult,
    pub codes: ProbeResult,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct TrainReport {
    pub model: String,
    pub dataset: String,
    pub training: TrainSummary,
    pub test: TestReport,
    pub probe: Option<ProbeReport>,
    pub query: Option<QueryStats>,
    pub images: Vec<String>,
}

fn default_valid(n: usize) -> usize {
    if n >= 50_000 {
        5000
    } else {
        n / 10
    }
}

fn load_data(args: &DataArgs) -> Result<ImageDataset> {
    let sp = spinner(format!("reading {}", args.data.display()));
    let ds = load_image_dataset(&args.data)?;
    sp.finish_and_clear();
    eprintln!(
        "{}: {} training, {} test images of {}×{}×{}, {} classes",
        ds.name,
        ds.train.n,
        ds.test.n,
        ds.train.channels,
        ds.train.height,
        ds.train.width,
        ds.classes.len()
    );
    Ok(ds)
}

/// `embedlab train MODEL`.
pub fn train_cmd(a: &TrainArgs, seed: i64, device: Device) -> Result<()> {
    if a.model == ModelKind::Identity {
        return identity(a, seed);
    }
    let (mut run, cfg, ds) = match &a.resume {
        Some(dir) => {
            let mut cfg = RunConfig::read(dir).context("cannot resume")?;
            if cfg.model.name() != kind_name(a.model) {
                bail!(
                    "{} holds a {} run, not a {}",
                    dir.display(),
                    cfg.model.name(),
                    kind_name(a.model)
                );
            }
            if let Some(e) = a.epochs {
                cfg.train.epochs = e;
            }
            if a.patience.is_some() {
                cfg.train.patience = a.patience;
            }
            let ds = load_data(&DataArgs {
                data: cfg.data.path.clone(),
                valid: Some(cfg.data.valid),
                train_limit: cfg.data.train_limit,
            })?;
            (RunDir::reopen(dir)?, cfg, ds)
        }
        None => {
            let ds = load_data(&a.data)?;
            let cfg = new_config(a, &ds, seed)?;
            let run = RunDir::create(&format!("train-{}", cfg.model.name()), a.out.as_deref())?;
            (run, cfg, ds)
        }
    };
    let splits = cfg.splits(&ds, device)?;
    let mut cfg = cfg;
    cfg.data.train_images = splits.train.len();
    cfg.data.valid_images = splits.valid.len();
    cfg.data.test_images = splits.test.len();
    run.write_json("config.json", &cfg)?;
    tch::manual_seed(cfg.train.seed);
    let model = AutoEncoder::new(cfg.model.clone(), device)?;
    eprintln!(
        "{} ({:?}, latent {}, {} parameters) on {:?}; run folder {}",
        cfg.model.name(),
        cfg.model.arch,
        cfg.model.latent,
        model
            .vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum::<usize>(),
        device,
        run.path.display()
    );
    let run_path = run.path.clone();
    let summary = train(
        &model,
        &splits,
        &cfg.train,
        &run_path,
        a.resume.is_some(),
        &mut |r| {
            eprintln!(
                "epoch {:>3}: train loss {:.3}  valid loss {:.3}{}  ({:.1} s, {:.0} images/s)",
                r.epoch,
                r.train["loss"],
                r.valid["loss"],
                if r.best { " *" } else { "" },
                r.seconds,
                r.images_per_second
            );
            run.log(r)
                .map_err(|e| embedlab_models::ModelError::Invalid(e.to_string()))
        },
    )?;
    load_weights(&model.vs, &run.file(BEST))?;
    let test = test_report(&model, &splits.test, &a.eval, cfg.train.seed)?;
    print_test(&cfg.model, &test);
    let mut report = TrainReport {
        model: cfg.model.name().into(),
        dataset: cfg.data.name.clone(),
        training: summary,
        test,
        probe: None,
        query: None,
        images: vec![],
    };
    if !a.no_images {
        let an = Analysis::new(&run.path, &model, &splits, &ds.classes, cfg.train.seed);
        report.images = an.all_images(a.tsne)?;
        let (q, img) = an.query(0, 8, 1000)?;
        report.images.push(img);
        report.query = Some(q);
        report.probe = Some(an.probe(10_000)?);
        print_analysis(&report);
    }
    run.write_json("report.json", &report)?;
    eprintln!("run folder: {}", run.path.display());
    Ok(())
}

/// The model's name as the command line spells it.
fn kind_name(k: ModelKind) -> String {
    k.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

fn new_config(a: &TrainArgs, ds: &ImageDataset, seed: i64) -> Result<RunConfig> {
    let (family, conditional) = match a.model {
        ModelKind::Ae => (Family::Ae, false),
        ModelKind::Vae => (Family::Vae, false),
        ModelKind::Cae => (Family::Ae, true),
        ModelKind::Cvae => (Family::Vae, true),
        ModelKind::Identity => unreachable!("handled before"),
    };
    let likelihood = match a.likelihood {
        LikelihoodArg::Bernoulli => Likelihood::Bernoulli,
        LikelihoodArg::Gaussian => Likelihood::Gaussian,
    };
    let model = AeConfig {
        family,
        conditional,
        arch: match a.arch {
            ArchArg::Mlp => Arch::Mlp,
            ArchArg::Conv => Arch::Conv,
        },
        hidden: a.hidden.clone(),
        latent: a.latent,
        likelihood,
        binarize: a.binarize && likelihood == Likelihood::Bernoulli,
        beta: a.beta,
        warmup_epochs: a.warmup,
        channels: ds.train.channels as i64,
        height: ds.train.height as i64,
        width: ds.train.width as i64,
        classes: ds.classes.len() as i64,
    };
    let train = TrainConfig {
        epochs: a.epochs.unwrap_or(10),
        batch_size: a.batch_size,
        lr: a.lr,
        schedule: match a.schedule {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Cosine => Schedule::Cosine,
            ScheduleArg::Step => Schedule::Step {
                every: a.step_every,
                gamma: a.step_gamma,
            },
        },
        clip_norm: a.clip,
        patience: a.patience,
        seed,
    };
    if train.batch_size < 1 || train.lr.is_nan() || train.lr <= 0.0 {
        bail!("--batch-size and --lr must be positive");
    }
    let valid = a.data.valid.unwrap_or_else(|| default_valid(ds.train.n));
    Ok(RunConfig {
        model,
        train,
        data: DataConfig {
            path: a.data.data.clone(),
            name: ds.name.clone(),
            valid,
            train_limit: a.data.train_limit,
            train_images: 0,
            valid_images: 0,
            test_images: 0,
        },
    })
}

fn identity(a: &TrainArgs, seed: i64) -> Result<()> {
    let r = train_identity(seed, a.identity_steps, 0.05);
    println!(
        "8-3-8 identity autoencoder, {} steps, final loss {:.4}",
        r.steps, r.final_loss
    );
    print!("{}", r.table());
    println!("{}/8 inputs reconstructed", r.correct);
    let run = RunDir::create("train-identity", a.out.as_deref())?;
    run.write_json("report.json", &r)?;
    eprintln!("run folder: {}", run.path.display());
    Ok(())
}

/// Test ELBO / reconstruction over the whole test set and the IWAE NLL on
/// its first `iwae_images`, with a fixed seed (binarisation, samples).
pub fn test_report(m: &AutoEncoder, test: &Split, o: &EvalOpts, seed: i64) -> Result<TestReport> {
    let t0 = Instant::now();
    tch::manual_seed(seed ^ 0x7e57);
    let _g = tch::no_grad_guard();
    let metrics = m.evaluate_split(test, 500)?;
    let mut se = 0.0;
    for (x, y) in test.batches(500) {
        let yy = Some(&y).filter(|_| m.cfg.conditional);
        let rec = m.decode_mean(&m.embed(&x, yy)?, yy)?;
        se += (rec - &x).square().sum(Kind::Double).double_value(&[]);
    }
    let mut r = TestReport {
        images: test.len(),
        reconstruction_nll: metrics["rec"],
        reconstruction_mse: se / test.x.numel() as f64,
        kl: metrics.get("kl").copied(),
        elbo: metrics.get("elbo").copied(),
        latent: m.cfg.latent,
        ..Default::default()
    };
    if m.cfg.family == Family::Vae {
        let codes = encode_all(m, &test.x, &test.y, 1000)?;
        r.active_units = Some(activity(&codes).iter().filter(|&&v| v > 0.01).count() as i64);
    }
    if m.cfg.family == Family::Vae && o.iwae_k > 0 && o.iwae_images > 0 {
        let n = o.iwae_images.min(test.len());
        let pb = bar(n as u64, format!("IWAE NLL, k = {}", o.iwae_k));
        let chunk = 10;
        let mut total = 0.0;
        let mut s = 0;
        while s < n {
            let len = chunk.min(n - s);
            let x = m.prepare_input(&test.x.narrow(0, s, len));
            let y = test.y.narrow(0, s, len);
            let yy = Some(&y).filter(|_| m.cfg.conditional);
            total += m
                .iwae(&x, yy, o.iwae_k, 1000)?
                .sum(Kind::Double)
                .double_value(&[]);
            s += len;
            pb.inc(len as u64);
        }
        pb.finish_and_clear();
        r.nll_iwae = Some(-total / n as f64);
        r.iwae_k = Some(o.iwae_k);
        r.iwae_images = Some(n);
    }
    r.seconds = t0.elapsed().as_secs_f64();
    Ok(r)
}

fn print_test(cfg: &AeConfig, t: &TestReport) {
    println!("test ({} images, nats per image):", t.images);
    println!(
        "  reconstruction −log p(x|z) {:.2}   MSE per pixel {:.5}",
        t.reconstruction_nll, t.reconstruction_mse
    );
    if let (Some(e), Some(kl)) = (t.elbo, t.kl) {
        println!("  ELBO {e:.2}   (KL {kl:.2})");
    }
    if let Some(a) = t.active_units {
        println!("  active latent units {a} of {}", t.latent);
    }
    if let (Some(nll), Some(k), Some(n)) = (t.nll_iwae, t.iwae_k, t.iwae_images) {
        let what = if cfg.conditional {
            "−log p(x|y)"
        } else {
            "−log p(x)"
        };
        println!("  NLL {what} ≤ {nll:.2}   (IWAE, k = {k}, first {n} test images)");
    }
}

fn print_analysis(r: &TrainReport) {
    if let Some(p) = &r.probe {
        println!(
            "linear probe, test accuracy: raw pixels ({} features) {:.2}%   codes ({} features) {:.2}%",
            p.pixels.features,
            100.0 * p.pixels.test_accuracy,
            p.codes.features,
            100.0 * p.codes.test_accuracy
        );
    }
    if let Some(q) = &r.query {
        println!(
            "query by image ({} test queries, k = {}): neighbours of the same class — latent {:.2}%, pixels {:.2}%",
            q.queries,
            q.k,
            100.0 * q.latent_label_precision,
            100.0 * q.pixel_label_precision
        );
    }
}

/// A trained model with its data, for the latent-space tools.
pub struct Analysis<'a> {
    run: &'a Path,
    model: &'a AutoEncoder,
    splits: &'a Splits,
    classes: &'a [String],
    seed: i64,
    /// Training codes, computed once for the tools that need them.
    codes: std::cell::OnceCell<(Tensor, Split)>,
}

const CODE_LIMIT: i64 = 10_000;

impl<'a> Analysis<'a> {
    pub fn new(
        run: &'a Path,
        model: &'a AutoEncoder,
        splits: &'a Splits,
        classes: &'a [String],
        seed: i64,
    ) -> Self {
        Self {
            run,
            model,
            splits,
            classes,
            seed,
            codes: Default::default(),
        }
    }

    fn labels(&self, y: &Tensor) -> Option<Tensor> {
        self.model.cfg.conditional.then(|| y.shallow_clone())
    }

    fn save(&self, name: &str, images: &Tensor, columns: i64) -> Result<String> {
        let style = GridStyle {
            columns,
            scale: if self.model.cfg.height <= 32 { 2 } else { 1 },
            pad: 2,
        };
        save_grid(&self.run.join(name), images, &style)?;
        Ok(name.to_string())
    }

    /// Codes of (at most 10,000) training images, and those images.
    pub fn train_codes(&self) -> Result<&(Tensor, Split)> {
        if let Some(c) = self.codes.get() {
            return Ok(c);
        }
        let tr = self.splits.train.head(CODE_LIMIT);
        let codes = encode_all(self.model, &tr.x, &tr.y, 1000)?;
        Ok(self.codes.get_or_init(|| (codes, tr)))
    }

    /// Every grid and map the training command writes.
    pub fn all_images(&self, tsne: bool) -> Result<Vec<String>> {
        let sp = spinner("drawing samples, reconstructions, interpolations, maps");
        let mut out = vec![self.samples(100)?, self.reconstructions(30)?];
        if self.model.cfg.conditional {
            out.push(self.class_samples(10)?);
        }
        let t = &self.splits.test;
        let pairs: Vec<(i64, i64)> = (0..4)
            .filter_map(|i| Some((t.first_of_class(2 * i)?, t.first_of_class(2 * i + 1)?)))
            .collect();
        let pairs = if pairs.is_empty() {
            vec![(0, 1.min(t.len() - 1))]
        } else {
            pairs
        };
        out.push(self.interpolations(&pairs, 10)?);
        out.push(self.traversal(0, 8, 3.0, 10)?);
        out.push(self.map(MapMethod::Pca, 2000)?);
        if tsne {
            out.push(self.map(MapMethod::Tsne, 2000)?);
        }
        sp.finish_and_clear();
        Ok(out)
    }

    pub fn samples(&self, n: i64) -> Result<String> {
        tch::manual_seed(self.seed ^ 0x5a);
        let codes = match self.model.cfg.family {
            Family::Ae => Some(&self.train_codes()?.0),
            Family::Vae => None,
        };
        let labels = self.model.cfg.conditional.then(|| {
            Tensor::arange(n, (Kind::Int64, self.model.device())).remainder(self.model.cfg.classes)
        });
        let imgs = samples(self.model, n, codes, labels.as_ref())?;
        self.save("samples.png", &imgs, 10)
    }

    /// Rows of `per_class` samples, one row a class.
    pub fn class_samples(&self, per_class: i64) -> Result<String> {
        tch::manual_seed(self.seed ^ 0x5b);
        let c = self.model.cfg.classes;
        let y = Tensor::arange(c, (Kind::Int64, self.model.device()))
            .repeat_interleave_self_int(per_class, 0, None);
        let codes = match self.model.cfg.family {
            Family::Ae => Some(&self.train_codes()?.0),
            Family::Vae => None,
        };
        let imgs = samples(self.model, c * per_class, codes, Some(&y))?;
        self.save("class-samples.png", &imgs, per_class)
    }

    /// Originals and reconstructions in alternating rows of 10.
    pub fn reconstructions(&self, n: i64) -> Result<String> {
        let _g = tch::no_grad_guard();
        let t = self.splits.test.spread(n);
        let y = self.labels(&t.y);
        let rec = self
            .model
            .decode_mean(&self.model.embed(&t.x, y.as_ref())?, y.as_ref())?;
        let mut rows = vec![];
        for s in (0..t.len()).step_by(10) {
            let len = 10.min(t.len() - s);
            rows.push(t.x.narrow(0, s, len));
            rows.push(rec.narrow(0, s, len));
        }
        self.save("reconstructions.png", &Tensor::cat(&rows, 0), 10)
    }

    /// For each pair of test images: the latent interpolation, and under it
    /// the pixel cross-fade.
    pub fn interpolations(&self, pairs: &[(i64, i64)], steps: i64) -> Result<String> {
        let t = &self.splits.test;
        let mut rows = vec![];
        for &(i, j) in pairs {
            if i >= t.len() || j >= t.len() {
                bail!(
                    "test image {} does not exist ({} test images)",
                    i.max(j),
                    t.len()
                );
            }
            let (a, b) = (t.x.get(i), t.x.get(j));
            let lab = self.labels(&t.y.narrow(0, i, 1));
            rows.push(interpolate(self.model, &a, &b, lab.as_ref(), steps)?);
            rows.push(crossfade(&a, &b, steps));
        }
        self.save("interpolations.png", &Tensor::cat(&rows, 0), steps)
    }

    /// Traversal of the first `dims` latent dimensions around test image
    /// `index`'s code, ±`range` prior (VAE) or code (AE) standard deviations.
    pub fn traversal(&self, index: i64, dims: i64, range: f64, steps: i64) -> Result<String> {
        let t = &self.splits.test;
        if index >= t.len() {
            bail!(
                "test image {index} does not exist ({} test images)",
                t.len()
            );
        }
        let lab = self.labels(&t.y.narrow(0, index, 1));
        let base = self
            .model
            .embed(&t.x.narrow(0, index, 1), lab.as_ref())?
            .detach();
        let k = self.model.cfg.latent;
        // The most active dimensions first: a VAE leaves some unused.
        let spread = t.spread(2000);
        let order = by_activity(&encode_all(self.model, &spread.x, &spread.y, 1000)?);
        let dims: Vec<i64> = order.into_iter().take(dims.min(k) as usize).collect();
        let (centre, scale) = match self.model.cfg.family {
            Family::Vae => (
                Tensor::zeros([k], (Kind::Float, base.device())),
                Tensor::ones([k], (Kind::Float, base.device())),
            ),
            Family::Ae => {
                let (c, _) = self.train_codes()?;
                (c.mean_dim(0, false, Kind::Float), c.std_dim(0, true, false))
            }
        };
        let mut rows = vec![];
        for &d in &dims {
            let (c, s) = (centre.double_value(&[d]), scale.double_value(&[d]));
            let values: Vec<f64> = (0..steps)
                .map(|i| c + s * range * (2.0 * i as f64 / (steps - 1).max(1) as f64 - 1.0))
                .collect();
            rows.push(traverse(self.model, &base, &[d], &values, lab.as_ref())?);
        }
        self.save("traversal.png", &Tensor::cat(&rows, 0), steps)
    }

    /// A 2-D map of `n` test codes coloured by class.
    pub fn map(&self, method: MapMethod, n: i64) -> Result<String> {
        let t = self.splits.test.spread(n);
        let codes = encode_all(self.model, &t.x, &t.y, 1000)?;
        let labels: Vec<u8> = Vec::<i64>::try_from(&t.y.to_device(Device::Cpu))?
            .into_iter()
            .map(|v| v as u8)
            .collect();
        let (pts, name, title) = match method {
            MapMethod::Pca => (
                pca_2d(&codes)?,
                "latent-pca.png",
                "codes, first two principal components".to_string(),
            ),
            MapMethod::Tsne => {
                // Perplexity 30, or less where there are too few points for it.
                let perplexity = 30f32.min((t.len() as f32 - 2.0) / 3.0).max(1.0);
                (
                    tsne_2d(&codes, perplexity, 1000)?,
                    "latent-tsne.png",
                    format!("codes, t-SNE (perplexity {perplexity:.0})"),
                )
            }
        };
        save_scatter(
            &self.run.join(name),
            &pts,
            &labels,
            self.classes,
            &format!(
                "{} {title} — {} test images",
                self.model.cfg.name().to_uppercase(),
                t.len()
            ),
        )?;
        Ok(name.to_string())
    }

    /// Query by image: the k nearest training images to test image `index`
    /// in latent space (top row) and in pixel space (bottom row), and the
    /// share of same-class neighbours over the first `queries` test images.
    pub fn query(&self, index: i64, k: i64, queries: i64) -> Result<(QueryStats, String)> {
        let (codes, tr) = self.train_codes()?;
        let t = &self.splits.test;
        if index >= t.len() {
            bail!(
                "test image {index} does not exist ({} test images)",
                t.len()
            );
        }
        let q = t.spread(queries);
        let qcodes = encode_all(self.model, &q.x, &q.y, 1000)?;
        let (li, _) = knn(&qcodes, codes, k);
        let (pi, _) = knn(&q.x, &tr.x, k);
        let one = t.narrow_split(index);
        let (li1, _) = knn(&encode_all(self.model, &one.x, &one.y, 1)?, codes, k);
        let (pi1, _) = knn(&one.x, &tr.x, k);
        let same = |idx: &Tensor| -> f64 {
            let lab = tr.y.index_select(0, &idx.flatten(0, -1)).reshape([-1, k]);
            lab.eq_tensor(&q.y.unsqueeze(1))
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[])
        };
        let stats = QueryStats {
            queries: q.len(),
            k,
            latent_label_precision: same(&li),
            pixel_label_precision: same(&pi),
        };
        let row = |idx: &Tensor| {
            Tensor::cat(
                &[one.x.shallow_clone(), tr.x.index_select(0, &idx.get(0))],
                0,
            )
        };
        let img = Tensor::cat(&[row(&li1), row(&pi1)], 0);
        let name = format!("query-{index}.png");
        self.save(&name, &img, k + 1)?;
        Ok((stats, name))
    }

    /// Logistic regression on raw pixels vs on codes (training images up to
    /// `limit`, scored on the whole test set).
    pub fn probe(&self, limit: i64) -> Result<ProbeReport> {
        let sp = spinner("linear probes: pixels and codes");
        let own;
        let (ctr, tr) = if limit == CODE_LIMIT {
            let (c, t) = self.train_codes()?;
            (c, t)
        } else {
            let t = self.splits.train.head(limit);
            own = (encode_all(self.model, &t.x, &t.y, 1000)?, t);
            (&own.0, &own.1)
        };
        let te = &self.splits.test;
        let cte = encode_all(self.model, &te.x, &te.y, 1000)?;
        let c = self.classes.len() as i64;
        let cfg = ProbeConfig {
            seed: self.seed,
            ..Default::default()
        };
        let pixels = linear_probe(&tr.x, &tr.y, &te.x, &te.y, c, &cfg);
        let codes = linear_probe(ctr, &tr.y, &cte, &te.y, c, &cfg);
        sp.finish_and_clear();
        Ok(ProbeReport { pixels, codes })
    }
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum MapMethod {
    Pca,
    Tsne,
}

/// A trained run, loaded back.
pub struct LoadedRun {
    pub dir: PathBuf,
    pub cfg: RunConfig,
    pub model: AutoEncoder,
    pub ds: ImageDataset,
    pub splits: Splits,
}

pub fn load_run(dir: &Path, device: Device) -> Result<LoadedRun> {
    let cfg = RunConfig::read(dir)?;
    let ds = load_image_dataset(&cfg.data.path)?;
    let splits = cfg.splits(&ds, device)?;
    let model = AutoEncoder::new(cfg.model.clone(), device)?;
    load_weights(&model.vs, &dir.join(BEST))?;
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        cfg,
        model,
        ds,
        splits,
    })
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run folder written by `embedlab train`.
    pub run: PathBuf,
    #[command(flatten)]
    pub eval: EvalOpts,
}

/// `embedlab eval RUN`: test ELBO and IWAE NLL, saved as `eval.json`.
pub fn eval_cmd(a: &EvalArgs, device: Device) -> Result<()> {
    let r = load_run(&a.run, device)?;
    let t = test_report(&r.model, &r.splits.test, &a.eval, r.cfg.train.seed)?;
    print_test(&r.cfg.model, &t);
    let name = match t.iwae_k {
        Some(k) => format!("eval-k{k}.json"),
        None => "eval.json".into(),
    };
    embedlab_data::atomic::write_json_atomic(&r.dir.join(&name), &t)?;
    eprintln!("wrote {}", r.dir.join(name).display());
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum LatentCmd {
    /// Samples (VAE: prior; AE: Gaussian fitted to the codes).
    Samples {
        run: PathBuf,
        #[arg(long, default_value_t = 100)]
        n: i64,
    },
    /// Class-conditional samples, one row a class (CAE/CVAE).
    ClassSamples {
        run: PathBuf,
        #[arg(long, default_value_t = 10)]
        per_class: i64,
    },
    /// Test images and their reconstructions, alternating rows.
    Reconstruct {
        run: PathBuf,
        #[arg(long, default_value_t = 30)]
        n: i64,
    },
    /// Latent interpolation between two test images (with the pixel cross-fade under it).
    Interpolate {
        run: PathBuf,
        #[arg(long)]
        from: i64,
        #[arg(long)]
        to: i64,
        #[arg(long, default_value_t = 10)]
        steps: i64,
    },
    /// Vary single latent dimensions around a test image's code.
    Traverse {
        run: PathBuf,
        #[arg(long, default_value_t = 0)]
        index: i64,
        #[arg(long, default_value_t = 8)]
        dims: i64,
        /// ± this many standard deviations.
        #[arg(long, default_value_t = 3.0)]
        range: f64,
        #[arg(long, default_value_t = 10)]
        steps: i64,
    },
    /// 2-D map of test codes coloured by class.
    Map {
        run: PathBuf,
        #[arg(long, value_enum, default_value_t = MapMethod::Tsne)]
        method: MapMethod,
        #[arg(long, default_value_t = 2000)]
        images: i64,
    },
    /// Nearest training images to a test image, in latent and in pixel space.
    Query {
        run: PathBuf,
        #[arg(long, default_value_t = 0)]
        index: i64,
        #[arg(long, default_value_t = 8)]
        k: i64,
        /// Test images the same-class statistics average over.
        #[arg(long, default_value_t = 1000)]
        queries: i64,
    },
    /// Linear probe: logistic regression on pixels vs on codes.
    Probe {
        run: PathBuf,
        /// Training images the probes learn from.
        #[arg(long, default_value_t = 10_000)]
        train_images: i64,
    },
}

/// `embedlab latent ...`.
pub fn latent_cmd(c: &LatentCmd, device: Device) -> Result<()> {
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
    let an = Analysis::new(&r.dir, &r.model, &r.splits, &r.ds.classes, r.cfg.train.seed);
    let written = match c {
        LatentCmd::Samples { n, .. } => an.samples(*n)?,
        LatentCmd::ClassSamples { per_class, .. } => {
            if !r.model.cfg.conditional {
                bail!(
                    "{} is a {}: class-conditional samples need a cae or cvae",
                    run.display(),
                    r.model.cfg.name()
                );
            }
            an.class_samples(*per_class)?
        }
        LatentCmd::Reconstruct { n, .. } => an.reconstructions(*n)?,
        LatentCmd::Interpolate {
            from, to, steps, ..
        } => an.interpolations(&[(*from, *to)], *steps)?,
        LatentCmd::Traverse {
            index,
            dims,
            range,
            steps,
            ..
        } => an.traversal(*index, *dims, *range, *steps)?,
        LatentCmd::Map { method, images, .. } => an.map(*method, *images)?,
        LatentCmd::Query {
            index, k, queries, ..
        } => {
            let (q, img) = an.query(*index, *k, *queries)?;
            println!(
                "test image {index} (class {}): {k} nearest training images in {}",
                r.ds.classes[r.splits.test.y.int64_value(&[*index]) as usize],
                r.dir.join(&img).display()
            );
            println!(
                "same-class neighbours over {} queries: latent {:.2}%, pixels {:.2}%",
                q.queries,
                100.0 * q.latent_label_precision,
                100.0 * q.pixel_label_precision
            );
            embedlab_data::atomic::write_json_atomic(&r.dir.join("query.json"), &q)?;
            img
        }
        LatentCmd::Probe { train_images, .. } => {
            let p = an.probe(*train_images)?;
            println!(
                "linear probe, test accuracy: raw pixels {:.2}%, codes {:.2}% ({} training images)",
                100.0 * p.pixels.test_accuracy,
                100.0 * p.codes.test_accuracy,
                p.codes.train_images
            );
            embedlab_data::atomic::write_json_atomic(&r.dir.join("probe.json"), &p)?;
            "probe.json".into()
        }
    };
    eprintln!("wrote {}", r.dir.join(written).display());
    Ok(())
}
