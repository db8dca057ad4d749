//! `embedlab represent`: the representation benchmark. Every
//! representation it is given — raw pixels, PCA, a random projection, and
//! the code of any trained run whose model encodes (autoencoders, VAEs,
//! WAEs, the classifier's h(x), DrLIM, a flow's latents) or has features (a
//! GAN's discriminator) — is scored on the same test images with the same
//! tools: linear probes with every label
//! and with a few labels a class, k-NN, query by image (precision@10,
//! mAP), k-means (NMI, ARI), and the course's two distance properties
//! (within- over between-class distance, the share of images whose nearest
//! neighbour has another class). Runs of one model with several seeds are
//! pooled into mean ± sd.
use crate::images::{load_data, load_run, OutArgs};
use crate::progress::spinner;
use crate::variations::{read_factors, Factors};
use crate::{PipelineError, Result};
use clap::{Args, ValueEnum};
use embedlab_data::ImageDataset;
use embedlab_metrics::factors::{best_circular_coordinate, linear_readout_r2, nn_same_factor};
use embedlab_metrics::probe::{linear_probe, ProbeConfig};
use embedlab_metrics::represent::{
    ari, distance_properties, few_label_probe, kmeans, knn_accuracy, nmi, retrieval,
};
use embedlab_models::batches::{spread_indices, Split};
use embedlab_models::capabilities::{encode_all, Encode, Pca, Pixels};
use embedlab_reports::projection::pca_2d;
use embedlab_reports::scatter::save_scatter;
use embedlab_train::report::Table;
use embedlab_train::{Better, Report, Reuse, RunDir};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

pub const KIND: &str = "represent";
pub const SECTION: &str = "Representations";

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// The raw pixels.
    Pixels,
    /// PCA fitted on the training images (--pca-dim components).
    Pca,
    /// A Gaussian random projection to --pca-dim dimensions (one per seed).
    Random,
}

/// What `embedlab represent` scores, and how.
#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RepresentArgs {
    /// The images: the training set fits probes, PCA and the k-NN base; the
    /// test set is scored.
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,
    /// A trained run whose model encodes (repeat the option; runs of one
    /// model differing only in their seed are pooled into mean ± sd).
    #[arg(long = "run")]
    pub runs: Vec<PathBuf>,
    /// The baselines scored beside the runs.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Baseline::Pixels, Baseline::Pca, Baseline::Random])]
    pub baselines: Vec<Baseline>,
    /// Dimensions of PCA and of the random projection.
    #[arg(long, default_value_t = 50, value_parser = crate::opts::int(1, 4096))]
    pub pca_dim: i64,
    /// Labelled training images a class for the few-label probes.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10usize, 100, 1000], value_parser = crate::opts::count(1, 1_000_000))]
    pub labels: Vec<usize>,
    /// Neighbours of the k-NN classifier.
    #[arg(long, default_value_t = 5, value_parser = crate::opts::int(1, 1000))]
    pub k: i64,
    /// Training images used (probes, k-NN base, PCA), spread over the set.
    #[arg(long, default_value_t = 10_000, value_parser = crate::opts::count(10, 100_000_000))]
    pub train_limit: usize,
    /// Test images scored.
    #[arg(long, default_value_t = 10_000, value_parser = crate::opts::count(10, 100_000_000))]
    pub test_limit: usize,
    /// Draws of the few labelled images (and random projections): the
    /// spread of the baselines.
    #[arg(long, default_value_t = 3, value_parser = crate::opts::count(1, 100))]
    pub draws: usize,
    /// Full-batch steps of each linear probe (its rate decays to 0 along a
    /// cosine over them). At 2,000 the probe meets scikit-learn's optimum
    /// (bench/represent_sklearn.py); fewer are quicker and a little low.
    #[arg(long, default_value_t = 2000, value_parser = crate::opts::count(10, 1_000_000))]
    pub probe_steps: usize,
    /// Score runs trained on other images of the same size (e.g. a model
    /// of MNIST on the shifted copies of MNIST's images).
    #[arg(long)]
    pub other_data: bool,
    /// Also write each baseline's features (and embedlab's probe and k-NN
    /// accuracy) as .npy files here, for bench/represent_sklearn.py.
    #[arg(long)]
    pub export: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutArgs,
}

impl Default for RepresentArgs {
    fn default() -> Self {
        Self {
            data: "data/mnist".into(),
            runs: vec![],
            baselines: vec![Baseline::Pixels, Baseline::Pca, Baseline::Random],
            pca_dim: 50,
            labels: vec![10, 100, 1000],
            k: 5,
            train_limit: 10_000,
            test_limit: 10_000,
            draws: 3,
            probe_steps: 2000,
            other_data: false,
            export: None,
            out: OutArgs::default(),
        }
    }
}

/// One representation's scores (one run, or one draw of a baseline).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Scores {
    pub dim: i64,
    /// Linear probe test accuracy with every training label, %.
    pub probe: f64,
    /// With n labelled images a class: (n, accuracy % of each draw of the
    /// labelled images).
    pub few: Vec<(usize, Vec<f64>)>,
    pub knn: f64,
    pub precision_at_10: f64,
    pub map: f64,
    pub nmi: f64,
    pub ari: f64,
    /// Mean within-class over mean between-class distance.
    pub distance_ratio: f64,
    /// Share of test images whose nearest other test image has another class, %.
    pub nn_other_class: f64,
    /// Seconds to compute the training and test features.
    pub encode_seconds: f64,
    /// The model's training time, when it has one.
    pub train_seconds: Option<f64>,
    /// With the data's factors.json: each factor's name, the share (%) of
    /// test images whose nearest neighbour has the same value, and the
    /// share of its variance a linear read-out of the features explains.
    #[serde(default)]
    pub factors: Vec<FactorScore>,
}

/// How a representation follows one known factor of variation.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FactorScore {
    pub name: String,
    pub nn_same: f64,
    pub r2: f64,
    /// A circular factor (an angle): the circular-linear correlation of the
    /// angle with the coordinate that follows it best (1 for a map whose
    /// coordinate is a cosine wave of the angle, as on a ring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circular_r: Option<f64>,
}

/// A representation: what it is and its scores, one per run or draw.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Row {
    pub name: String,
    pub what: String,
    pub sources: Vec<String>,
    pub scores: Vec<Scores>,
}

/// The benchmark's result.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Benchmark {
    pub dataset: String,
    pub train_images: i64,
    pub test_images: i64,
    pub rows: Vec<Row>,
}

fn seconds_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// The scores of `train` / `test` features.
#[allow(clippy::too_many_arguments)]
fn score(
    ftr: &Tensor,
    ytr: &Tensor,
    fte: &Tensor,
    yte: &Tensor,
    classes: i64,
    a: &RepresentArgs,
    seed: u64,
    encode_seconds: f64,
) -> Scores {
    let ftr = ftr.to_kind(Kind::Float).flatten(1, -1);
    let fte = fte.to_kind(Kind::Float).flatten(1, -1);
    let cfg = ProbeConfig {
        steps: a.probe_steps,
        ..probe_config(seed)
    };
    let t = Instant::now();
    let probe = 100.0 * linear_probe(&ftr, ytr, &fte, yte, classes, &cfg).test_accuracy;
    let t_probe = seconds_since(t);
    let few = a
        .labels
        .iter()
        .map(|&n| {
            let draws = (0..a.draws as u64)
                .map(|i| {
                    let s = seed.wrapping_add(i.wrapping_mul(0x632b_e59b));
                    100.0 * few_label_probe(&ftr, ytr, &fte, yte, n, s, &cfg)
                })
                .collect();
            (n, draws)
        })
        .collect();
    let t_few = seconds_since(t);
    let knn = 100.0 * knn_accuracy(&ftr, ytr, &fte, yte, a.k);
    let t_knn = seconds_since(t);
    let r = retrieval(&fte, yte, 10);
    let t_ret = seconds_since(t);
    let clusters = kmeans(&fte, classes, seed, 3);
    let t_km = seconds_since(t);
    let d = distance_properties(&fte, yte);
    if std::env::var_os("EMBEDLAB_TIMING").is_some() {
        eprintln!(
            "probe {t_probe:.1}s few {:.1}s knn {:.1}s retrieval {:.1}s kmeans {:.1}s distances {:.1}s",
            t_few - t_probe,
            t_knn - t_few,
            t_ret - t_knn,
            t_km - t_ret,
            seconds_since(t) - t_km
        );
    }
    Scores {
        dim: ftr.size()[1],
        probe,
        few,
        knn,
        precision_at_10: 100.0 * r.precision_at_k,
        map: 100.0 * r.map,
        nmi: nmi(&clusters, yte),
        ari: ari(&clusters, yte),
        distance_ratio: d.ratio,
        nn_other_class: 100.0 * d.nn_other_class,
        encode_seconds,
        train_seconds: None,
        factors: vec![],
    }
}

/// The factor scores of test features (factors.json's test rows, in the
/// order the benchmark's test images were taken).
fn factor_scores(fte: &Tensor, factors: &Factors, picked: &[i64]) -> Vec<FactorScore> {
    let f = fte.to_kind(Kind::Float).flatten(1, -1);
    (0..factors.names.len())
        .map(|j| {
            let values: Vec<f64> = picked
                .iter()
                .map(|&i| factors.test[i as usize][j])
                .collect();
            let period = factors.circular[j].then_some(factors.periods[j]);
            FactorScore {
                name: factors.names[j].clone(),
                nn_same: 100.0 * nn_same_factor(&f, &values),
                r2: linear_readout_r2(&f, &values, period),
                circular_r: period.map(|p| {
                    let rad: Vec<f64> = values
                        .iter()
                        .map(|v| v / p * std::f64::consts::TAU)
                        .collect();
                    best_circular_coordinate(&f, &rad).1
                }),
            }
        })
        .collect()
}

/// The benchmark's probe: the analysis' L2-regularised softmax regression
/// run to convergence (2,000 full-batch Adam steps, the rate decayed along
/// a cosine), so that it matches scikit-learn's LogisticRegression on the
/// same features (bench/represent_sklearn.py).
pub fn probe_config(seed: u64) -> ProbeConfig {
    ProbeConfig {
        steps: 2000,
        cosine: true,
        seed: seed as i64,
        ..ProbeConfig::default()
    }
}

/// A random Gaussian projection d → k (scaled by 1/√k), as an encoder.
struct RandomProjection {
    w: Tensor,
}

impl Encode for RandomProjection {
    fn code_dim(&self) -> i64 {
        self.w.size()[1]
    }
    fn what(&self) -> String {
        format!("random projection to {}", self.code_dim())
    }
    fn encode(&self, x: &Tensor, _y: Option<&Tensor>) -> embedlab_models::Result<Tensor> {
        Ok(x.flatten(1, -1).to_kind(Kind::Float).matmul(&self.w))
    }
}

/// The training and test images the benchmark uses: spread over each set.
fn images(ds: &ImageDataset, a: &RepresentArgs, device: Device) -> (Split, Split) {
    let train = Split::from_images(&ds.train, device).spread(a.train_limit as i64);
    let test = Split::from_images(&ds.test, device).spread(a.test_limit as i64);
    (train, test)
}

fn encode_both(enc: &dyn Encode, train: &Split, test: &Split) -> Result<(Tensor, Tensor, f64)> {
    let t = Instant::now();
    let ftr = encode_all(enc, &train.x, &train.y, 500)?;
    let fte = encode_all(enc, &test.x, &test.y, 500)?;
    Ok((ftr, fte, seconds_since(t)))
}

/// Runs the benchmark and writes its run folder (report, table, maps).
pub fn run(a: &RepresentArgs, seed: i64, device: Device) -> Result<(PathBuf, Benchmark)> {
    if a.runs.is_empty() && a.baselines.is_empty() {
        return Err(PipelineError::Invalid(
            "nothing to score: give --run folders or --baselines".into(),
        ));
    }
    let reuse = if a.out.overwrite {
        Reuse::Overwrite
    } else {
        Reuse::Refuse
    };
    let mut inputs: Vec<&Path> = vec![&a.data];
    inputs.extend(a.runs.iter().map(PathBuf::as_path));
    if let Some(out) = &a.out.out {
        RunDir::check_target(out, KIND, reuse, &inputs)?;
    }
    let fp = embedlab_data::fingerprint::fingerprint(&a.data)?;
    // Every run is opened (and checked to hold a model that encodes and was
    // trained on these images) before anything is computed or written.
    let mut loaded = vec![];
    for dir in &a.runs {
        let r = load_run(dir, device)?;
        if r.model.representation().is_none() {
            return Err(PipelineError::file(
                dir,
                format!(
                    "holds a {} run, whose model has no encoder or features: it gives no representation",
                    r.cfg.model_name()
                ),
            ));
        }
        if !a.other_data && r.cfg.data.fingerprint.as_ref().map(|f| &f.blake3) != Some(&fp.blake3) {
            return Err(PipelineError::file(
                dir,
                format!(
                    "was trained on {} ({}), not on {}: score each data set's runs on their own images (or give --other-data)",
                    r.cfg.data.name,
                    r.cfg.data.path.display(),
                    a.data.display()
                ),
            ));
        }
        loaded.push((dir.clone(), r));
    }
    // An image folder's images at the size the runs read them.
    let size = loaded.iter().find_map(|(_, r)| r.cfg.data.image_size);
    let ds = load_data(&a.data, size)?;
    let classes = ds.classes.len() as i64;
    let (train, test) = images(&ds, a, device);
    let factors = read_factors(&a.data)?;
    let picked = spread_indices(ds.test.n as i64, a.test_limit as i64);
    let with_factors = |mut s: Scores, fte: &Tensor| {
        if let Some(f) = &factors {
            s.factors = factor_scores(fte, f, &picked);
        }
        s
    };
    let run = RunDir::create_with_inputs(KIND, a.out.out.as_deref(), reuse, a, &inputs)?;
    crate::progress::show_notes(&run);
    let mut rows: Vec<Row> = vec![];
    let mut maps: Vec<(String, Tensor)> = vec![];
    let draw_seed = |i: usize| {
        (seed as u64)
            .wrapping_mul(0x9e37_79b9)
            .wrapping_add(i as u64)
    };
    for b in &a.baselines {
        let sp = spinner(format!("scoring {b:?}"));
        let mut scores = vec![];
        let mut what = String::new();
        // Pixels and PCA are the same every time: one score, its few-label
        // probes over --draws draws; each random projection is a draw.
        let draws = match b {
            Baseline::Random => a.draws,
            _ => 1,
        };
        let mut first: Option<Tensor> = None;
        for i in 0..draws {
            let enc: Box<dyn Encode> = match b {
                Baseline::Pixels => Box::new(Pixels {
                    dim: train.x.size()[1..].iter().product(),
                }),
                Baseline::Pca => Box::new(Pca::fit(&train.x, a.pca_dim)?),
                Baseline::Random => {
                    tch::manual_seed(draw_seed(i) as i64);
                    let d: i64 = train.x.size()[1..].iter().product();
                    Box::new(RandomProjection {
                        w: Tensor::randn([d, a.pca_dim], (Kind::Float, device))
                            / (a.pca_dim as f64).sqrt(),
                    })
                }
            };
            what = enc.what();
            let (ftr, fte, secs) = encode_both(enc.as_ref(), &train, &test)?;
            scores.push(with_factors(
                score(
                    &ftr,
                    &train.y,
                    &fte,
                    &test.y,
                    classes,
                    a,
                    draw_seed(i),
                    secs,
                ),
                &fte,
            ));
            if i == 0 {
                if let Some(dir) = &a.export {
                    export(
                        dir,
                        &format!("{b:?}").to_lowercase(),
                        &ftr,
                        &train.y,
                        &fte,
                        &test.y,
                        &scores[0],
                        (a.k, a.probe_steps),
                    )?;
                }
                first = Some(fte);
            }
        }
        sp.finish_and_clear();
        let name = format!("{b:?}").to_lowercase();
        if let Some(f) = first {
            maps.push((name.clone(), f));
        }
        rows.push(Row {
            name,
            what,
            sources: vec![],
            scores,
        });
    }
    // Runs: pooled by what they are (their description), seeds apart.
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (_, r)) in loaded.iter().enumerate() {
        groups
            .entry(format!("{} on {}", r.model.describe(), r.cfg.data.name))
            .or_default()
            .push(i);
    }
    for (describe, members) in groups {
        let mut scores = vec![];
        let mut sources = vec![];
        let mut what = String::new();
        let mut name = String::new();
        for (j, &i) in members.iter().enumerate() {
            let (dir, r) = &loaded[i];
            let enc = r.model.representation().expect("checked above");
            let sp = spinner(format!("scoring {}", dir.display()));
            let (ftr, fte, secs) = encode_both(enc, &train, &test)?;
            let mut s = score(
                &ftr,
                &train.y,
                &fte,
                &test.y,
                classes,
                a,
                draw_seed(j),
                secs,
            );
            sp.finish_and_clear();
            s = with_factors(s, &fte);
            s.train_seconds = std::fs::read_to_string(dir.join(embedlab_train::report::REPORT))
                .ok()
                .and_then(|t| serde_json::from_str::<Report>(&t).ok())
                .and_then(|rep| rep.value("training time"));
            scores.push(s);
            sources.push(dir.display().to_string());
            what = enc.what();
            name = run_name(dir, &r.cfg.model_name());
            if j == 0 {
                maps.push((name.clone(), fte));
            }
        }
        rows.push(Row {
            name: if members.len() > 1 {
                format!("{name} ({} seeds)", members.len())
            } else {
                name
            },
            what: format!("{what} — {describe}"),
            sources,
            scores,
        });
    }
    let bench = Benchmark {
        dataset: ds.name.clone(),
        train_images: train.len(),
        test_images: test.len(),
        rows,
    };
    let known = factors.as_ref().map(|f| (f, picked.as_slice()));
    let report = to_report(&bench, a, &run, &maps, &test, &ds.classes, known)?;
    run.write_json("represent.json", &bench)?;
    run.write_report(&report)?;
    Ok((run.out_dir().to_path_buf(), bench))
}

/// A run's name in the table: its folder's, less a seed suffix (`-s2`,
/// `-seed2`), so that `vae-s0`, `vae-s1` read `vae`; the model's name when
/// the folder has none.
fn run_name(dir: &Path, model: &str) -> String {
    let Some(f) = dir.file_name().and_then(|f| f.to_str()) else {
        return model.to_string();
    };
    for suffix in ["-seed", "-s"] {
        if let Some(i) = f.rfind(suffix) {
            let tail = &f[i + suffix.len()..];
            if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
                return f[..i].to_string();
            }
        }
    }
    f.to_string()
}

/// Mean and sample standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n.max(1.0);
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, sd)
}

fn cell(v: &[f64], digits: usize) -> String {
    let (m, sd) = mean_sd(v);
    if v.len() > 1 {
        format!("{m:.digits$} ± {sd:.digits$}")
    } else {
        format!("{m:.digits$}")
    }
}

/// The table of the benchmark: one row a representation.
pub fn table(b: &Benchmark, labels: &[usize]) -> Table {
    let mut columns: Vec<String> = vec!["representation".into(), "dim".into(), "probe %".into()];
    columns.extend(labels.iter().map(|n| format!("probe, {n}/class %")));
    columns.extend(
        [
            "k-NN %",
            "P@10 %",
            "mAP %",
            "k-means NMI",
            "ARI",
            "within/between",
            "NN of another class %",
            "encode s",
            "runs",
        ]
        .map(String::from),
    );
    // Each known factor's name, and whether it is circular (has an r).
    let factors: Vec<(String, bool)> = b
        .rows
        .first()
        .and_then(|r| r.scores.first())
        .map(|s| {
            s.factors
                .iter()
                .map(|f| (f.name.clone(), f.circular_r.is_some()))
                .collect()
        })
        .unwrap_or_default();
    for (n, c) in &factors {
        columns.push(format!("NN same {n} %"));
        columns.push(format!("R² {n}"));
        if *c {
            columns.push(format!("circular-linear r {n}"));
        }
    }
    let rows = b
        .rows
        .iter()
        .map(|r| {
            let col = |f: &dyn Fn(&Scores) -> f64| r.scores.iter().map(f).collect::<Vec<_>>();
            let mut row = vec![
                r.name.clone(),
                r.scores.first().map(|s| s.dim).unwrap_or(0).to_string(),
                cell(&col(&|s| s.probe), 1),
            ];
            for (i, _) in labels.iter().enumerate() {
                let pooled: Vec<f64> = r
                    .scores
                    .iter()
                    .flat_map(|s| s.few.get(i).map(|f| f.1.clone()).unwrap_or_default())
                    .collect();
                row.push(cell(&pooled, 1));
            }
            row.push(cell(&col(&|s| s.knn), 1));
            row.push(cell(&col(&|s| s.precision_at_10), 1));
            row.push(cell(&col(&|s| s.map), 1));
            row.push(cell(&col(&|s| s.nmi), 3));
            row.push(cell(&col(&|s| s.ari), 3));
            row.push(cell(&col(&|s| s.distance_ratio), 3));
            row.push(cell(&col(&|s| s.nn_other_class), 1));
            row.push(cell(&col(&|s| s.encode_seconds), 1));
            row.push(r.scores.len().to_string());
            for (j, (_, circular)) in factors.iter().enumerate() {
                let nn = col(&|s| s.factors.get(j).map(|f| f.nn_same).unwrap_or(f64::NAN));
                let r2 = col(&|s| s.factors.get(j).map(|f| f.r2).unwrap_or(f64::NAN));
                row.push(cell(&nn, 1));
                row.push(cell(&r2, 3));
                if *circular {
                    let r = col(&|s| {
                        s.factors
                            .get(j)
                            .and_then(|f| f.circular_r)
                            .unwrap_or(f64::NAN)
                    });
                    row.push(cell(&r, 3));
                }
            }
            row
        })
        .collect();
    Table {
        title: format!(
            "Representations of {}: {} training images (probes, k-NN base), {} test images scored; mean ± sd over runs (learned models' seeds) or random projections, few-label probes also over draws of the labelled images",
            b.dataset, b.train_images, b.test_images
        ),
        columns,
        rows,
        highlight: vec![],
        open: true,
    }
}

fn to_report(
    b: &Benchmark,
    a: &RepresentArgs,
    run: &RunDir,
    maps: &[(String, Tensor)],
    test: &Split,
    classes: &[String],
    factors: Option<(&Factors, &[i64])>,
) -> Result<Report> {
    let mut report = Report::new(
        KIND,
        SECTION,
        format!("Representation benchmark on {}", b.dataset),
    );
    report.tables.push(table(b, &a.labels));
    for r in &b.rows {
        let (p, _) = mean_sd(&r.scores.iter().map(|s| s.probe).collect::<Vec<_>>());
        report
            .metric(
                &format!("{}: probe accuracy", r.name),
                p,
                "%",
                Better::Higher,
            )
            .with_note(r.what.clone());
        let (nn, _) = mean_sd(
            &r.scores
                .iter()
                .map(|s| s.nn_other_class)
                .collect::<Vec<_>>(),
        );
        report.metric(
            &format!("{}: nearest neighbour of another class", r.name),
            nn,
            "%",
            Better::Lower,
        );
    }
    // 2-D maps side by side: each representation's test images on its
    // first two principal components (its own two axes when it has two).
    let n = 2000.min(test.len());
    let idx = Tensor::arange(n, (Kind::Int64, test.x.device())) * (test.len() / n);
    let labels: Vec<u8> =
        Vec::<i64>::try_from(&test.y.index_select(0, &idx).to_device(Device::Cpu))?
            .into_iter()
            .map(|v| v as u8)
            .collect();
    for (name, f) in maps {
        let f = f.index_select(0, &idx).to_kind(Kind::Float);
        let pts: Vec<[f32; 2]> = if f.size()[1] == 2 {
            Vec::<Vec<f32>>::try_from(&f.to_device(Device::Cpu))?
                .into_iter()
                .map(|p| [p[0], p[1]])
                .collect()
        } else {
            pca_2d(&f)?
        };
        let file = format!(
            "map-{}.png",
            name.replace(|c: char| !c.is_alphanumeric(), "-")
        );
        let axes = if f.size()[1] == 2 {
            "its two coordinates"
        } else {
            "first two principal components"
        };
        save_scatter(
            &run.out_file(&file),
            &pts,
            &labels,
            classes,
            &format!("{name} — {axes}, {n} test images"),
        )?;
        report.figure(file, format!("{name}: {n} test images, {axes}"));
        // The same map coloured by each known factor of few values.
        if let Some((fs, picked)) = factors {
            let shown: Vec<i64> = Vec::<i64>::try_from(&idx.to_device(Device::Cpu))?;
            for (j, fname) in fs.names.iter().enumerate() {
                let values: Vec<f64> = shown
                    .iter()
                    .map(|&i| fs.test[picked[i as usize] as usize][j])
                    .collect();
                let mut distinct = values.clone();
                distinct.sort_by(f64::total_cmp);
                distinct.dedup();
                if distinct.len() > 24 || distinct.len() < 2 {
                    continue;
                }
                let by: Vec<u8> = values
                    .iter()
                    .map(|v| distinct.iter().position(|d| d == v).unwrap_or(0) as u8)
                    .collect();
                let names: Vec<String> = distinct.iter().map(|d| format!("{fname} {d}")).collect();
                let file = format!(
                    "map-{}-by-{}.png",
                    name.replace(|c: char| !c.is_alphanumeric(), "-"),
                    fname.replace(|c: char| !c.is_alphanumeric(), "-")
                );
                save_scatter(
                    &run.out_file(&file),
                    &pts,
                    &by,
                    &names,
                    &format!("{name} — {axes}, coloured by {fname}"),
                )?;
                report.figure(file, format!("{name}: the same map coloured by {fname}"));
            }
        }
    }
    report.details = serde_json::to_value(b)?;
    Ok(report)
}

/// Writes one representation's features and embedlab's numbers for the
/// scikit-learn self-check (bench/represent_sklearn.py).
#[allow(clippy::too_many_arguments)]
fn export(
    dir: &Path,
    name: &str,
    ftr: &Tensor,
    ytr: &Tensor,
    fte: &Tensor,
    yte: &Tensor,
    s: &Scores,
    (k, steps): (i64, usize),
) -> Result<()> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d)?;
    let write = |file: &str, t: &Tensor| -> Result<()> {
        let t = t
            .to_kind(Kind::Float)
            .to_device(Device::Cpu)
            .reshape([t.size()[0], -1]);
        let (rows, cols) = (t.size()[0] as usize, t.size()[1] as usize);
        let data: Vec<f32> = Vec::<f32>::try_from(t.flatten(0, -1))?;
        embedlab_data::npy::write_npy(
            &d.join(file),
            &embedlab_data::npy::Matrix { rows, cols, data },
        )?;
        Ok(())
    };
    write("train_x.npy", ftr)?;
    write("test_x.npy", fte)?;
    write("train_y.npy", &ytr.to_kind(Kind::Float).unsqueeze(1))?;
    write("test_y.npy", &yte.to_kind(Kind::Float).unsqueeze(1))?;
    embedlab_data::atomic::write_json_atomic(
        &d.join("embedlab.json"),
        &serde_json::json!({
            "probe_accuracy": s.probe,
            "knn_accuracy": s.knn,
            "k": k,
            "probe": {
                "steps": steps,
                "lr": probe_config(0).lr,
                "weight_decay": probe_config(0).weight_decay,
                "cosine": true,
            },
        }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 18 angles × 3 shifts, mapped to a ring (the angle) on an axis (the
    /// shift): every factor score at its best; a map that drops the angle
    /// loses its two angle scores and keeps the shift's.
    #[test]
    fn factor_scores_of_a_cylinder_and_of_a_map_without_the_angle() {
        let mut test = vec![];
        let mut rows = vec![];
        for a in 0..18 {
            for s in 0..3 {
                let deg = 20.0 * a as f64;
                let t = deg.to_radians();
                test.push(vec![deg, s as f64]);
                rows.push([(t + 0.7).cos() as f32, (t + 0.7).sin() as f32, s as f32]);
            }
        }
        let factors = Factors {
            names: vec!["angle".into(), "shift".into()],
            circular: vec![true, false],
            periods: vec![360.0, 0.0],
            train: test.clone(),
            test,
        };
        let n = rows.len() as i64;
        let picked: Vec<i64> = (0..n).collect();
        let cylinder = Tensor::from_slice(&rows.concat()).view([n, 3]);
        let s = factor_scores(&cylinder, &factors, &picked);
        assert_eq!(s.len(), 2);
        assert!(s[0].r2 > 0.999 && s[0].circular_r.unwrap() > 0.999, "{s:?}");
        assert!(s[1].r2 > 0.999 && s[1].circular_r.is_none(), "{s:?}");
        let no_angle = cylinder.narrow(1, 2, 1);
        let s = factor_scores(&no_angle, &factors, &picked);
        assert!(s[0].r2 < 0.01 && s[0].circular_r.unwrap() < 0.01, "{s:?}");
        assert!(s[1].r2 > 0.999, "{s:?}");
    }
}
