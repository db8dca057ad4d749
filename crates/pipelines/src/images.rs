//! Image models end to end: training a run, evaluating it on the test set
//! and analysing it, and loading a run back. Written against the trainer,
//! the capabilities and the families' descriptors ([`crate::family`]); it
//! names no family.
use crate::analysis::{Analysis, AnalysisOpts};
use crate::evaluate::{test_metrics, EvalOpts};
use crate::progress::spinner;
use crate::quality::{EpochQuality, Tracked};
use crate::{PipelineError, Result};
use clap::{Args, ValueEnum};
use embedlab_data::{load_image_dataset_sized, ImageDataset};
use embedlab_models::batches::{prepare, Split, Splits};
use embedlab_models::capabilities::ImageModel;
use embedlab_models::ModelError;
use embedlab_train::run::CONFIG;
use embedlab_train::trainer::load_best;
use embedlab_train::{
    Better, EpochRecord, OptimConfig, Report, Reuse, RunDir, Schedule, TrainConfig, TrainSummary,
    Trainable,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Device;

/// The kind written in `run.json` by image-model training runs.
pub const KIND: &str = "train";
pub const SECTION: &str = "Image models";

pub use crate::family::{ModelConfig, ModelSpec};

/// A family the pipelines can train and load: a trainable image model.
pub trait ImageFamily: ImageModel {
    fn kind(&self) -> String;
    fn config_json(&self) -> serde_json::Value;
    fn parameters(&self) -> i64;
    fn train_on(
        &mut self,
        splits: &Splits,
        cfg: &TrainConfig,
        run: &RunDir,
        resume: bool,
        quality: Option<&EpochQuality>,
        on_epoch: &mut dyn FnMut(&EpochRecord),
    ) -> Result<TrainSummary>;
    /// Loads the run's best weights.
    fn load_best(&self, dir: &Path) -> Result<()>;
    /// The optimizer groups the family trains (names, for the configuration).
    fn group_names(&self) -> Vec<String>;
}

impl<M> ImageFamily for M
where
    M: Trainable<Data = Split, Error = ModelError> + ImageModel,
{
    fn kind(&self) -> String {
        Trainable::kind(self)
    }
    fn config_json(&self) -> serde_json::Value {
        Trainable::config_json(self)
    }
    fn parameters(&self) -> i64 {
        self.var_store()
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }
    fn train_on(
        &mut self,
        splits: &Splits,
        cfg: &TrainConfig,
        run: &RunDir,
        resume: bool,
        quality: Option<&EpochQuality>,
        on_epoch: &mut dyn FnMut(&EpochRecord),
    ) -> Result<TrainSummary> {
        let observer = &mut crate::progress::Terminal::new(on_epoch);
        let (train, valid) = (&splits.train, &splits.valid);
        Ok(match quality {
            Some(quality) => embedlab_train::trainer::train_observed(
                &mut Tracked {
                    model: self,
                    quality,
                    train,
                },
                train,
                valid,
                cfg,
                run,
                resume,
                observer,
            )?,
            None => embedlab_train::trainer::train_observed(
                self, train, valid, cfg, run, resume, observer,
            )?,
        })
    }
    fn load_best(&self, dir: &Path) -> Result<()> {
        load_best(
            self.var_store(),
            dir,
            &Trainable::kind(self),
            &Trainable::config_json(self),
        )?;
        Ok(())
    }
    fn group_names(&self) -> Vec<String> {
        self.groups().into_iter().map(|g| g.name).collect()
    }
}

// ------------------------------------------------------------ options

/// Which images, and how they are split.
#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DataArgs {
    /// An MNIST-format IDX folder, a CIFAR-10 binary folder, a folder of
    /// PNG/JPEG images in class folders (train/<class>/… and
    /// test/<class>/…, or <class>/… with every fifth image held out), or an
    /// image CSV (.csv/.csv.gz; every fifth row is the test set).
    #[arg(long, default_value = "data/fashion-mnist")]
    pub data: PathBuf,
    /// An image folder's images at this size, N or HxW: each is scaled
    /// (aspect kept) to cover it and centre-cropped (default: the most
    /// common size among them).
    #[arg(long, value_parser = crate::opts::image_size)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<(usize, usize)>,
    /// Training images held out for validation, which choose the best
    /// epoch (default 5000, or 10% of sets under 50,000).
    #[arg(long, value_parser = crate::opts::count(1, 100_000_000))]
    pub valid: Option<usize>,
    /// Use at most this many training images (quick runs).
    #[arg(long, value_parser = crate::opts::count(1, 100_000_000))]
    pub train_limit: Option<usize>,
    /// Score on this many test images only, evenly spaced through the test
    /// set (quick runs, studies: the metrics name how many they used).
    #[arg(long, value_parser = crate::opts::count(1, 100_000_000))]
    pub test_limit: Option<usize>,
}

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleArg {
    Constant,
    Cosine,
    Step,
}

/// How long and how fast to train.
#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OptimArgs {
    /// Epochs (with --resume, the new total).
    #[arg(long, default_value_t = Self::default().epochs, value_parser = crate::opts::count(1, 1_000_000))]
    pub epochs: usize,
    #[arg(long, default_value_t = Self::default().batch_size, value_parser = crate::opts::int(1, 1 << 20))]
    pub batch_size: i64,
    /// Adam's learning rate (default: the family's — 1e-3 for autoencoders
    /// and the classifier, 2e-4 for DCGAN/SN-GAN, 1e-4 for WGAN-GP).
    #[arg(long, value_parser = crate::opts::rate)]
    pub lr: Option<f64>,
    #[arg(long, value_enum, default_value_t = Self::default().schedule)]
    pub schedule: ScheduleArg,
    /// --schedule step: epochs between decays.
    #[arg(long, default_value_t = Self::default().step_every, value_parser = crate::opts::count(1, 1_000_000))]
    pub step_every: usize,
    /// --schedule step: decay factor.
    #[arg(long, default_value_t = Self::default().step_gamma, value_parser = crate::opts::fraction)]
    pub step_gamma: f64,
    /// Clip the gradients' joint L2 norm.
    #[arg(long, value_parser = crate::opts::positive)]
    pub clip: Option<f64>,
    /// Early stopping: epochs without a better validation loss.
    #[arg(long, value_parser = crate::opts::count(1, 1_000_000))]
    pub patience: Option<usize>,
    /// On a NaN or infinite loss, go back to the epoch's start with the
    /// learning rate × --rollback-factor, at most this many times (default
    /// 3 for flows; 0, the others' default, stops keeping the last good
    /// checkpoint).
    #[arg(long, value_parser = crate::opts::count(0, 100))]
    pub nan_rollbacks: Option<usize>,
    /// The learning-rate factor of each NaN rollback.
    #[arg(long, default_value_t = Self::default().rollback_factor, value_parser = crate::opts::open_unit)]
    pub rollback_factor: f64,
    /// Keep an exponential moving average of the model's weights with this
    /// decay (e.g. 0.999; a GAN's generator, not its discriminator): the
    /// validation, the kept weights and so every sample and test metric use
    /// the average. Its decay is min(DECAY, (1+t)/(10+t)) at step t.
    #[arg(long, value_parser = crate::opts::open_unit)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
    /// The training steps' number format: bf16 runs convolutions and
    /// matrix products in bfloat16 on float32 weights (the weights, the
    /// optimizer state, the losses and a flow's log-determinants stay
    /// float32; validation, samples and every metric are float32). On
    /// CPUs with AMX or AVX512-BF16 (auto picks bf16 there, and on CUDA)
    /// GANs and VAEs train about 2× faster at the same quality; flows lose
    /// likelihood in bf16 and are better served by --channels-last.
    #[arg(long, value_enum, default_value_t = Self::default().precision)]
    #[serde(default = "crate::opts::f32_precision")]
    pub precision: crate::opts::PrecisionArg,
    /// Convolution weights and image batches in the channels-last memory
    /// format, the layout of oneDNN's fast convolutions (Glow trains 1.2×
    /// faster with it in PyTorch on an AMX Xeon); the same values, the
    /// same checkpoints.
    #[arg(long)]
    #[serde(default)]
    pub channels_last: bool,
}

impl Default for OptimArgs {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 128,
            lr: None,
            schedule: ScheduleArg::Constant,
            step_every: 10,
            step_gamma: 0.5,
            clip: None,
            patience: None,
            nan_rollbacks: None,
            rollback_factor: 0.5,
            ema: None,
            precision: crate::opts::f32_precision(),
            channels_last: false,
        }
    }
}

impl OptimArgs {
    /// A group's optimizer with these options' clipping and schedule.
    pub fn shape(&self, base: OptimConfig) -> OptimConfig {
        base.with_clip(self.clip)
            .with_schedule(match self.schedule {
                ScheduleArg::Constant => Schedule::Constant,
                ScheduleArg::Cosine => Schedule::Cosine,
                ScheduleArg::Step => Schedule::Step {
                    every: self.step_every,
                    gamma: self.step_gamma,
                },
            })
    }
}

/// Where the run goes.
#[derive(Args, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct OutArgs {
    /// Run folder (default runs/<kind>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Empty --out first if it already holds something.
    #[arg(long)]
    pub overwrite: bool,
}

/// Everything a training run is made with.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    pub model: ModelSpec,
    pub data: DataArgs,
    pub optim: OptimArgs,
    pub eval: EvalOpts,
    pub analysis: AnalysisOpts,
    pub out: OutArgs,
    pub seed: i64,
}

/// Saved as the run's `config.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub data: DataConfig,
    pub eval: EvalOpts,
    pub analysis: AnalysisOpts,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DataConfig {
    /// Absolute path of the images.
    pub path: PathBuf,
    /// What they were when the run was made (checked on resume and load).
    #[serde(default)]
    pub fingerprint: Option<embedlab_data::fingerprint::Fingerprint>,
    pub name: String,
    pub valid: usize,
    pub train_limit: Option<usize>,
    /// This many evenly spaced test images score the run (absent: all).
    #[serde(default)]
    pub test_limit: Option<usize>,
    /// An image folder's images at this size (absent: their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<(usize, usize)>,
    pub train_images: i64,
    pub valid_images: i64,
    pub test_images: i64,
}

impl DataConfig {
    /// The run's images, as it read them.
    pub fn load(&self) -> Result<ImageDataset> {
        Ok(load_image_dataset_sized(&self.path, self.image_size)?)
    }
}

impl RunConfig {
    /// Checks that the run's images are still those it was made from.
    pub fn check_data(&self) -> Result<()> {
        if let Some(f) = &self.data.fingerprint {
            f.check()?;
        }
        Ok(())
    }
    pub fn model_name(&self) -> String {
        self.model.name()
    }
    /// Reads a run folder's `config.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let cp = dir.join(CONFIG);
        let text = std::fs::read_to_string(&cp)
            .map_err(|e| PipelineError::file(&cp, format!("cannot read: {e}")))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| {
            PipelineError::file(&cp, format!("not an image-model run's configuration: {e}"))
        })?;
        cfg.model
            .check()
            .map_err(|e| PipelineError::file(&cp, e.to_string()))?;
        Ok(cfg)
    }
    /// The run's splits of `ds` (the same images every time: the split
    /// depends on the seed alone).
    pub fn splits(&self, ds: &ImageDataset, device: Device) -> Result<Splits> {
        Ok(prepare(
            ds,
            self.data.valid,
            self.data.train_limit,
            self.data.test_limit,
            self.train.seed as u64,
            device,
        )?)
    }
}

fn default_valid(n: usize) -> usize {
    if n >= 50_000 {
        5000
    } else {
        (n / 10).max(1)
    }
}

/// Loads an image dataset (an image folder's at `size`), saying what it found.
pub fn load_data(path: &Path, size: Option<(usize, usize)>) -> Result<ImageDataset> {
    let sp = spinner(format!("reading {}", path.display()));
    let ds = load_image_dataset_sized(path, size)?;
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
    for n in &ds.notes {
        eprintln!("  {n}");
    }
    Ok(ds)
}

/// What a training run produced.
pub struct TrainOutcome {
    pub dir: PathBuf,
    pub report: Report,
}

fn print_epoch(r: &EpochRecord) {
    let train: Vec<String> = r
        .train
        .iter()
        .filter_map(|(g, m)| m.get("loss").map(|l| format!("{g} {l:.3}")))
        .collect();
    let valid = r
        .valid
        .get("loss")
        .map(|v| format!("  valid loss {v:.3}"))
        .unwrap_or_default();
    let samples = match (r.valid.get("fd"), r.valid.get("confident")) {
        (Some(fd), Some(c)) => format!("  samples: FD {fd:.1}, {c:.1}% confident"),
        _ => String::new(),
    };
    eprintln!(
        "epoch {:>3}: train loss {}{valid}{samples}{}  ({:.1} s, {:.0} images/s)",
        r.epoch,
        train.join(", "),
        if r.best { " *" } else { "" },
        r.seconds,
        r.items_per_second
    );
}

/// Trains a new run. Everything that can be checked before training is:
/// the output folder, the data's size, the classifier that will score the
/// samples, and whether the model fits in memory — a refusal leaves the
/// disk as it was.
pub fn train_new(req: &TrainRequest, device: Device) -> Result<TrainOutcome> {
    let reuse = if req.out.overwrite {
        Reuse::Overwrite
    } else {
        Reuse::Refuse
    };
    let mut inputs: Vec<&Path> = vec![&req.data.data];
    if let Some(c) = &req.eval.classifier {
        inputs.push(c);
    }
    if let Some(out) = &req.out.out {
        RunDir::check_target(out, KIND, reuse, &inputs)?;
    }
    let ds = load_data(&req.data.data, req.data.image_size)?;
    let family = req.model.family()?;
    let model_cfg = req.model.config(&ds)?;
    if ds.train.n < 2 {
        return Err(PipelineError::file(
            &req.data.data,
            format!(
                "holds {} training image(s): at least 2 are needed (validation images choose the best epoch, and the rest train)",
                ds.train.n
            ),
        ));
    }
    let valid = req.data.valid.unwrap_or_else(|| default_valid(ds.train.n));
    let classifier = match &req.eval.classifier {
        Some(dir) => Some(check_classifier(
            dir,
            &model_cfg,
            &ds,
            &req.data.data,
            device,
        )?),
        None => None,
    };
    crate::memory::check(
        &model_cfg,
        req.optim.batch_size.min(ds.train.n as i64),
        device,
    )?;
    // The run's configuration: each of the family's optimizer groups with
    // the options' clipping and schedule, and the weight average on every
    // group but the adversaries.
    let adversaries = model_cfg.adversaries()?;
    let groups = family
        .optimizers(&model_cfg.config, &req.model.options, req.optim.lr)?
        .into_iter()
        .map(|(g, o)| {
            let o = req.optim.shape(o);
            let o = if adversaries.contains(&g.as_str()) {
                o
            } else {
                o.with_ema(req.optim.ema)
            };
            (g, o)
        })
        .collect();
    let rollbacks = match req.optim.nan_rollbacks {
        Some(r) => r,
        None => model_cfg.default_rollbacks()?,
    };
    let on_nan = if rollbacks == 0 {
        embedlab_train::NanPolicy::Stop
    } else {
        embedlab_train::NanPolicy::Rollback {
            max: rollbacks,
            lr_factor: req.optim.rollback_factor,
        }
    };
    let precision = req.optim.precision.resolve(device);
    let cfg = RunConfig {
        model: model_cfg,
        train: TrainConfig {
            epochs: req.optim.epochs,
            batch_size: req.optim.batch_size,
            groups,
            patience: req.optim.patience,
            seed: req.seed,
            on_nan,
            precision,
            channels_last: req.optim.channels_last,
        },
        data: DataConfig {
            path: embedlab_data::fingerprint::absolute(&req.data.data),
            fingerprint: Some(embedlab_data::fingerprint::fingerprint(&req.data.data)?),
            name: ds.name.clone(),
            valid,
            train_limit: req.data.train_limit,
            test_limit: req.data.test_limit,
            image_size: req.data.image_size,
            train_images: 0,
            valid_images: 0,
            test_images: 0,
        },
        eval: req.eval.clone(),
        analysis: req.analysis.clone(),
    };
    cfg.train.check()?;
    // The split is made before the folder, so that a size it refuses
    // leaves nothing behind.
    let splits = cfg.splits(&ds, device)?;
    // So is the model: what building it refuses (a size its layers cannot
    // take) leaves no folder either.
    let model = build_model(&cfg, device)?;
    let quality = epoch_quality(classifier, &cfg, &splits)?;
    let run = RunDir::create_with_inputs(KIND, req.out.out.as_deref(), reuse, &cfg, &inputs)?;
    crate::progress::show_notes(&run);
    run_training(run, cfg, model, ds, splits, quality, false, device)
}

/// The per-epoch scorer of a run scored by a classifier with
/// `--epoch-samples` above 0 (checked before any folder is written).
fn epoch_quality(
    classifier: Option<ClassifierRun>,
    cfg: &RunConfig,
    splits: &Splits,
) -> Result<Option<EpochQuality>> {
    match classifier {
        Some(c) if cfg.eval.epoch_samples > 0 && cfg.model.generates()? => Ok(Some(
            EpochQuality::new(c, &splits.valid, cfg.eval.epoch_samples)?,
        )),
        _ => Ok(None),
    }
}

/// The run's model, its weights drawn from the run's seed.
fn build_model(cfg: &RunConfig, device: Device) -> Result<Box<dyn ImageFamily>> {
    tch::manual_seed(cfg.train.seed);
    crate::memory::guard(|| cfg.model.build(device))
}

/// The classifier that will score a run's samples, checked before the
/// run trains: it loads, it is a classifier, it takes these images, it
/// knows as many classes, and it was trained on the same images (another
/// data set's classifier is refused: its features say nothing of these).
fn check_classifier(
    dir: &Path,
    model: &ModelConfig,
    ds: &ImageDataset,
    data: &Path,
    device: Device,
) -> Result<ClassifierRun> {
    refuse_scoring_a_classifier(model, dir)?;
    let c = ClassifierRun::load(dir, device)?;
    let s = [
        ds.train.channels as i64,
        ds.train.height as i64,
        ds.train.width as i64,
    ];
    if s != c.shape {
        return Err(PipelineError::file(
            dir,
            format!(
                "the classifier was trained on {}×{}×{} images ({}); {} holds {}×{}×{}",
                c.shape[0],
                c.shape[1],
                c.shape[2],
                c.cfg.data.name,
                data.display(),
                s[0],
                s[1],
                s[2]
            ),
        ));
    }
    let mut c = c;
    let fp = embedlab_data::fingerprint::fingerprint(data)?;
    c.check_same_data(&fp, &ds.name, ds.classes.len())?;
    Ok(c)
}
/// Continues the run in `dir` (of the model `expect`, when given); only the
/// epoch budget and patience change.
pub fn resume(
    dir: &Path,
    expect: Option<&str>,
    epochs: Option<usize>,
    patience: Option<usize>,
    device: Device,
) -> Result<TrainOutcome> {
    let run = RunDir::resume(dir, KIND)?;
    let mut cfg = RunConfig::read(dir)?;
    if let Some(m) = expect {
        if cfg.model_name() != m {
            return Err(PipelineError::file(
                dir,
                format!("holds a {} run, not a {m} run", cfg.model_name()),
            ));
        }
    }
    // Everything the trainer would refuse is checked before anything is
    // written: a refused resume changes nothing in the folder.
    let done = embedlab_train::trainer::resume_point(dir)?;
    if let Some(e) = epochs {
        if e < done {
            return Err(PipelineError::file(
                &dir.join(embedlab_train::checkpoint::CHECKPOINT),
                format!(
                    "already has {done} epochs; --epochs {e} cannot undo them (give at least {done}); nothing was changed"
                ),
            ));
        }
        cfg.train.epochs = e;
    }
    if patience.is_some() {
        cfg.train.patience = patience;
    }
    cfg.check_data()?;
    let ds = load_data(&cfg.data.path, cfg.data.image_size)?;
    let splits = cfg.splits(&ds, device)?;
    let model = build_model(&cfg, device)?;
    let classifier = match &cfg.eval.classifier {
        Some(c) if cfg.eval.epoch_samples > 0 => Some(check_classifier(
            c,
            &cfg.model,
            &ds,
            &cfg.data.path,
            device,
        )?),
        _ => None,
    };
    let quality = epoch_quality(classifier, &cfg, &splits)?;
    run.record_env()?;
    run_training(run, cfg, model, ds, splits, quality, true, device)
}

#[allow(clippy::too_many_arguments)]
fn run_training(
    run: RunDir,
    mut cfg: RunConfig,
    mut model: Box<dyn ImageFamily>,
    ds: ImageDataset,
    splits: Splits,
    quality: Option<EpochQuality>,
    resume: bool,
    device: Device,
) -> Result<TrainOutcome> {
    cfg.data.train_images = splits.train.len();
    cfg.data.valid_images = splits.valid.len();
    cfg.data.test_images = splits.test.len();
    run.write_json(CONFIG, &cfg)?;
    eprintln!(
        "{} ({} parameters) on {:?}; run folder {}",
        model.describe(),
        model.parameters(),
        device,
        run.path.display()
    );
    let summary = model.train_on(
        &splits,
        &cfg.train,
        &run,
        resume,
        quality.as_ref(),
        &mut print_epoch,
    )?;
    drop(quality);
    model.load_best(&run.path)?;
    let report = evaluate_and_analyse(
        &run.path,
        model.as_ref(),
        &cfg,
        &ds,
        &splits,
        Some(&summary),
    )?;
    run.write_report(&report)?;
    for m in &report.metrics {
        if m.name.starts_with("epochs flagged") && m.value > 0.0 {
            eprintln!(
                "WARNING: {}: {} epoch(s) flagged — {}",
                run.path.display(),
                m.value,
                m.note.as_deref().unwrap_or(&m.name)
            );
        }
    }
    Ok(TrainOutcome {
        dir: run.path.clone(),
        report,
    })
}

/// The test evaluation and analysis of a trained model, as a report.
fn evaluate_and_analyse(
    dir: &Path,
    model: &dyn ImageFamily,
    cfg: &RunConfig,
    ds: &ImageDataset,
    splits: &Splits,
    summary: Option<&TrainSummary>,
) -> Result<Report> {
    let mut report = Report::new(
        KIND,
        SECTION,
        format!("{} on {}", model.describe(), cfg.data.name),
    );
    if let Some(s) = summary {
        report
            .metric("epochs", s.epochs_done as f64, "", Better::Neither)
            .with_note(format!("best {}", s.best_epoch));
        report.metric("training time", s.train_seconds, "s", Better::Lower);
        report.metric(
            "training speed",
            s.items_per_second,
            "images/s",
            Better::Higher,
        );
    }
    report.metric("parameters", model.parameters() as f64, "", Better::Neither);
    report.metrics.extend(all_test_metrics(
        model,
        &cfg.eval,
        splits,
        cfg.train.seed,
        cfg,
        ds.classes.len(),
    )?);
    if !cfg.analysis.no_images {
        let an = Analysis::new(dir, model, splits, &ds.classes, cfg.train.seed);
        let (figures, metrics) = an.standard(&cfg.analysis)?;
        report.figures.extend(figures);
        report.metrics.extend(metrics);
    }
    report.metrics.extend(training_flags(dir)?);
    report.curve("valid.loss", "validation loss", "epoch", "nats/image");
    report.curve("valid.bpd", "validation bits/dim", "epoch", "bits/dim");
    // Quality against time: what a budget buys on this machine.
    report.curve("valid.loss", "validation loss", "minutes", "nats/image");
    report.curve("valid.bpd", "validation bits/dim", "minutes", "bits/dim");
    // The samples scored after every epoch (--epoch-samples).
    for x in ["epoch", "minutes"] {
        report.curve(
            "valid.fd",
            "Fréchet distance of the epoch's samples (validation images)",
            x,
            "",
        );
        report.curve(
            "valid.confident",
            "confident samples (classifier probability ≥ 0.9)",
            x,
            "%",
        );
    }
    report.curve(
        "valid.diversity",
        "sample diversity (pairwise distance / real images')",
        "epoch",
        "",
    );
    report.curve(
        "valid.d_acc",
        "discriminator accuracy on validation images",
        "epoch",
        "",
    );
    for g in model.group_names() {
        report.curve(
            &format!("train.{g}.loss"),
            &format!("training loss ({g})"),
            "epoch",
            "",
        );
        report.curve(
            &format!("grad_norm.{g}"),
            &format!("gradient norm ({g})"),
            "epoch",
            "",
        );
    }
    report.details = serde_json::json!({
        "model": model.name(),
        "description": model.describe(),
        "dataset": cfg.data.name,
        "training": summary,
    });
    Ok(report)
}

/// The test metrics of a model: those of its capabilities, and with a
/// classifier the generative metrics of its samples.
fn all_test_metrics(
    model: &dyn ImageFamily,
    eval: &EvalOpts,
    splits: &Splits,
    seed: i64,
    cfg: &RunConfig,
    classes: usize,
) -> Result<Vec<embedlab_train::Metric>> {
    let mut out = test_metrics(model, &splits.test, eval, seed)?;
    if let Some(dir) = &eval.classifier {
        refuse_scoring_a_classifier(&cfg.model, dir)?;
        let mut c = ClassifierRun::load(dir, splits.test.x.device())?;
        c.check_images(&splits.test)?;
        if let Some(fp) = &cfg.data.fingerprint {
            c.check_same_data(fp, &cfg.data.name, classes)?;
        }
        tch::manual_seed(seed ^ 0x6e);
        let mut codes = || {
            let enc = model.encoder().expect("drawn only for models that encode");
            Ok(crate::analysis::training_codes(enc, &splits.train)?.0)
        };
        let sp = spinner(format!(
            "scoring {} samples with the classifier",
            eval.gen_samples
        ));
        if let Some((fake, _)) = crate::evaluate::draw_samples(
            model,
            &mut codes,
            eval.gen_samples.min(splits.test.len() / 2),
            1.0,
            splits.test.x.device(),
        )? {
            out.extend(c.score(&fake, &splits.test, eval.gen_samples)?);
        }
        sp.finish_and_clear();
    }
    Ok(out)
}

/// `--classifier` scores generated images: a classifier run has none.
fn refuse_scoring_a_classifier(model: &ModelConfig, classifier: &Path) -> Result<()> {
    if !model.generates()? {
        return Err(PipelineError::file(
            classifier,
            format!(
                "--classifier scores generated images; a {} run generates none (leave --classifier out)",
                model.name()
            ),
        ));
    }
    Ok(())
}

/// A trained classifier run, used to score generated images.
pub struct ClassifierRun {
    pub dir: PathBuf,
    pub cfg: RunConfig,
    pub model: Box<dyn ImageFamily>,
    pub provenance: String,
    /// The images it takes: channels, height, width.
    pub shape: [i64; 3],
}

impl ClassifierRun {
    /// Loads the best weights of a `train classifier` run (read only: its
    /// files are written atomically, so no lock is taken and many runs can
    /// be scored with one classifier at once).
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let cfg = RunConfig::read(dir)?;
        let not_one = || {
            PipelineError::file(
                dir,
                format!(
                    "holds a {} run, not a classifier run (embedlab train classifier)",
                    cfg.model_name()
                ),
            )
        };
        if cfg.model.generates()? {
            // A generator is refused before it is built; any other model
            // must be able to classify once built.
            return Err(not_one());
        }
        let shape = cfg.model.input_shape()?;
        // A configuration read from disk may describe anything: check it
        // fits before building it.
        crate::memory::check(&cfg.model, 1, device)?;
        let model = crate::memory::guard(|| cfg.model.build(device))?;
        if model.classifier().is_none() {
            return Err(not_one());
        }
        model.load_best(dir)?;
        let weights = dir.join(embedlab_train::checkpoint::BEST);
        let fp = embedlab_data::fingerprint::fingerprint(&weights)?;
        let accuracy = std::fs::read_to_string(dir.join(embedlab_train::report::REPORT))
            .ok()
            .and_then(|t| serde_json::from_str::<Report>(&t).ok())
            .and_then(|r| r.metrics.into_iter().find(|m| m.name == "test accuracy"))
            .map(|m| format!(", test accuracy {:.2}%", m.value))
            .unwrap_or_default();
        let provenance = format!(
            "classifier {} ({} on {}{accuracy}, weights BLAKE3 {})",
            embedlab_data::fingerprint::absolute(dir).display(),
            model.describe(),
            cfg.data.name,
            &fp.blake3[..16.min(fp.blake3.len())]
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            cfg,
            model,
            provenance,
            shape,
        })
    }
    /// Refuses a data set of another number of classes than the
    /// classifier's, and warns loudly — on the terminal and in every note
    /// of its scores — when the classifier was trained on other images than
    /// `fp` (e.g. an MNIST classifier scoring a Fashion-MNIST model).
    pub fn check_same_data(
        &mut self,
        fp: &embedlab_data::fingerprint::Fingerprint,
        name: &str,
        classes: usize,
    ) -> Result<()> {
        let known = self.model.classes();
        let theirs = &self.cfg.data;
        if known as usize != classes {
            return Err(PipelineError::file(
                &self.dir,
                format!(
                    "the classifier knows {} classes ({}, {}); {} ({}) has {classes}: its scores would not mean anything",
                    known,
                    theirs.name,
                    theirs.path.display(),
                    name,
                    fp.path.display()
                ),
            ));
        }
        let same = theirs
            .fingerprint
            .as_ref()
            .map(|f| f.blake3 == fp.blake3)
            .unwrap_or(theirs.path == fp.path);
        if !same {
            let warning = format!(
                "the classifier was trained on {} ({}), not on these images, {} ({}): its features may say little about them",
                theirs.name,
                theirs.path.display(),
                name,
                fp.path.display()
            );
            eprintln!("WARNING: {}: {warning}", self.dir.display());
            self.provenance += &format!("; WARNING: {warning}");
        }
        Ok(())
    }

    /// Refuses images of another shape than the classifier's.
    pub fn check_images(&self, split: &Split) -> Result<()> {
        let s = split.x.size();
        let want = self.shape;
        if s[1..] != want {
            return Err(PipelineError::file(
                &self.dir,
                format!(
                    "the classifier was trained on {}×{}×{} images ({}); these are {}×{}×{}",
                    want[0], want[1], want[2], self.cfg.data.name, s[1], s[2], s[3]
                ),
            ));
        }
        Ok(())
    }
    /// The generative metrics of `fake` against `test` (the classifier's
    /// own test images when scoring a run of the same data).
    pub fn score(
        &self,
        fake: &tch::Tensor,
        test: &Split,
        n: i64,
    ) -> Result<Vec<embedlab_train::Metric>> {
        let scorer = crate::evaluate::Scorer {
            features: self.model.encoder().expect("a classifier encodes"),
            classify: self.model.classifier().expect("a classifier classifies"),
            provenance: self.provenance.clone(),
        };
        crate::evaluate::generative_metrics(fake, test, &scorer, n)
    }
}

/// `embedlab score`: generated images from elsewhere (a `.npy` of n rows of
/// c·h·w values in [0, 1], e.g. a PyTorch reference's samples) scored by a
/// classifier run against its own test images.
pub fn score_file(
    samples: &Path,
    classifier: &Path,
    n: i64,
    device: Device,
) -> Result<Vec<embedlab_train::Metric>> {
    let c = ClassifierRun::load(classifier, device)?;
    c.cfg.check_data()?;
    let ds = c.cfg.data.load()?;
    let splits = c.cfg.splits(&ds, device)?;
    let m = embedlab_data::npy::read_npy_array(samples)?;
    let [ch, h, w] = c.shape;
    let d = (ch * h * w) as usize;
    // (n, c·h·w) rows, PyTorch's (n, c, h, w) or, for one channel, numpy's
    // (n, h, w).
    let dims: Vec<i64> = m.shape.iter().map(|&v| v as i64).collect();
    let ok = match dims.as_slice() {
        [_, cols] => *cols as usize == d,
        [_, a, b, e] => [*a, *b, *e] == [ch, h, w],
        [_, a, b] => ch == 1 && [*a, *b] == [h, w],
        _ => false,
    };
    if !ok {
        return Err(PipelineError::file(
            samples,
            format!(
                "holds an array of shape ({}); the classifier takes {ch}×{h}×{w} images: give (n, {d}), (n, {ch}, {h}, {w}){}",
                m.shape.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
                if ch == 1 { format!(" or (n, {h}, {w})") } else { String::new() }
            ),
        ));
    }
    let rows = m.shape[0];
    if m.data
        .iter()
        .any(|v| !v.is_finite() || *v < -1e-3 || *v > 1.001)
    {
        return Err(PipelineError::file(
            samples,
            "holds values outside [0, 1] (or NaN): give images scaled to [0, 1]",
        ));
    }
    let fake = tch::Tensor::from_slice(&m.data)
        .reshape([rows as i64, ch, h, w])
        .to_device(device);
    c.score(&fake, &splits.test, n)
}

/// The epochs a model flagged during training (a GAN's `collapse` and
/// `diverged` validation checks), as metrics naming the epochs.
fn training_flags(dir: &Path) -> Result<Vec<embedlab_train::Metric>> {
    let path = dir.join(embedlab_train::run::METRICS);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for (flag, what) in [
        (
            "collapse",
            "mode collapse: samples much more alike than real images (diversity < 0.5)",
        ),
        (
            "diverged",
            "divergence: a discriminator that tells every image apart, a non-finite score, or a flow's validation bits/dim above 16 (twice uniform noise's) or not finite",
        ),
    ] {
        let mut seen = false;
        let mut epochs = vec![];
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| PipelineError::file(&path, format!("not JSON lines: {e}")))?;
            if let Some(f) = v["valid"][flag].as_f64() {
                seen = true;
                if f >= 1.0 {
                    epochs.push(v["epoch"].as_u64().unwrap_or(0).to_string());
                }
            }
        }
        if seen {
            out.push(embedlab_train::Metric {
                name: format!("epochs flagged: {flag}"),
                value: epochs.len() as f64,
                unit: String::new(),
                better: Better::Lower,
                note: Some(if epochs.is_empty() {
                    what.to_string()
                } else {
                    format!("{what}; epochs {}", epochs.join(", "))
                }),
            });
        }
    }
    Ok(out)
}

/// A trained run, loaded back with its data.
pub struct LoadedRun {
    pub run: RunDir,
    pub cfg: RunConfig,
    pub model: Box<dyn ImageFamily>,
    pub ds: ImageDataset,
    pub splits: Splits,
}

impl LoadedRun {
    pub fn analysis(&self) -> Analysis<'_> {
        Analysis::new(
            self.run.out_dir(),
            self.model.as_ref(),
            &self.splits,
            &self.ds.classes,
            self.cfg.train.seed,
        )
    }
}

/// Opens an image-model training run (locked while open) and its
/// configuration, checking that its images are still those it was made from.
pub fn open_run(dir: &Path) -> Result<(RunDir, RunConfig)> {
    let run = RunDir::open(dir)?;
    crate::progress::show_notes(&run);
    if run.info.kind != KIND {
        return Err(PipelineError::file(
            dir,
            format!(
                "holds a {} run, not an image-model training run",
                run.info.kind
            ),
        ));
    }
    let cfg = RunConfig::read(dir)?;
    cfg.check_data()?;
    Ok((run, cfg))
}

/// Refuses a run that never finished an epoch, saying so (rather than the
/// missing file's "No such file").
pub fn require_weights(dir: &Path) -> Result<()> {
    let best = dir.join(embedlab_train::checkpoint::BEST);
    if best.exists() {
        return Ok(());
    }
    Err(PipelineError::file(
        dir,
        format!(
            "has no trained weights ({}): the run never finished an epoch — it was stopped, killed or hit a NaN loss in its first epoch; --resume it or train it again",
            embedlab_train::checkpoint::BEST
        ),
    ))
}

/// Opens a training run (locked while loaded) with its best weights.
pub fn load_run(dir: &Path, device: Device) -> Result<LoadedRun> {
    let (run, cfg) = open_run(dir)?;
    require_weights(dir)?;
    let ds = cfg.data.load()?;
    let splits = cfg.splits(&ds, device)?;
    crate::memory::check_for_images(&cfg.model, cfg.train.batch_size, ds.train.n as u64, device)?;
    let model = crate::memory::guard(|| cfg.model.build(device))?;
    model.load_best(dir)?;
    Ok(LoadedRun {
        run,
        cfg,
        model,
        ds,
        splits,
    })
}

/// `embedlab eval RUN`: the test evaluation again (e.g. with more
/// importance samples), saved beside the run as `eval-….json`.
pub fn eval(
    dir: &Path,
    opts: &EvalOpts,
    on: Option<&Path>,
    device: Device,
) -> Result<(PathBuf, Vec<embedlab_train::Metric>)> {
    let r = load_run(dir, device)?;
    if let Some(other) = on {
        // Another image set's test images through the same model (e.g. a
        // Fashion-MNIST flow's likelihood of MNIST digits).
        let ds = load_data(other, r.cfg.data.image_size)?;
        let test = Split::from_images(&ds.test, device);
        let (a, b) = (test.x.size(), r.splits.test.x.size());
        if a[1..] != b[1..] {
            return Err(PipelineError::file(
                other,
                format!(
                    "holds {}×{}×{} images; the run's model takes {}×{}×{}",
                    a[1], a[2], a[3], b[1], b[2], b[3]
                ),
            ));
        }
        let mut m = test_metrics(r.model.as_ref(), &test, opts, r.cfg.train.seed)?;
        if m.is_empty() {
            return Err(PipelineError::file(
                dir,
                format!(
                    "a {} has no metric of given images (no density, no encoder): eval --on takes a flow, a VAE or an autoencoder run; score a generator's samples with --classifier",
                    r.cfg.model_name()
                ),
            ));
        }
        let fp = embedlab_data::fingerprint::fingerprint(other)?;
        let own = r
            .cfg
            .data
            .fingerprint
            .as_ref()
            .map(|f| f.blake3 == fp.blake3)
            .unwrap_or(false);
        let label = if own {
            format!("on {}, the run's own test set", ds.name)
        } else {
            format!("on {} (not the training set's)", ds.name)
        };
        for x in &mut m {
            let n = x.note.take().unwrap_or_default();
            x.note = Some(format!("{label}: {n}"));
        }
        let name = format!("eval-on-{}.json", ds.name);
        r.run.write_json(&name, &m)?;
        return Ok((r.run.out_file(&name), m));
    }
    let m = all_test_metrics(
        r.model.as_ref(),
        opts,
        &r.splits,
        r.cfg.train.seed,
        &r.cfg,
        r.ds.classes.len(),
    )?;
    // One file per evaluation setting: another classifier or sample count
    // does not overwrite an earlier evaluation.
    let scored = match &opts.classifier {
        Some(c) => format!(
            "-{}-fd{}",
            c.file_name().and_then(|n| n.to_str()).unwrap_or("scored"),
            opts.gen_samples
        ),
        None => String::new(),
    };
    let name = format!("eval-k{}-n{}{scored}.json", opts.iwae_k, opts.iwae_images);
    r.run.write_json(&name, &m)?;
    Ok((r.run.out_file(&name), m))
}
