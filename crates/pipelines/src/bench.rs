//! `embedlab bench`: time and peak memory of CSLS evaluation at scale, and
//! the time to load a large `.vec` file.
use crate::progress::peak_rss_bytes;
use crate::Result;
use clap::Args;
use embedlab_align::{Retrieval, Space};
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Args, Debug)]
pub struct CslsBench {
    /// Source and target vocabulary size.
    #[arg(long, default_value_t = 200_000, value_parser = crate::opts::int(2, 10_000_000))]
    pub n: i64,
    #[arg(long, default_value_t = 300, value_parser = crate::opts::int(1, 100_000))]
    pub dim: i64,
    /// Query words (MUSE's test sets have 1,500).
    #[arg(long, default_value_t = 1500, value_parser = crate::opts::count(1, 10_000_000))]
    pub queries: usize,
    #[arg(long, default_value_t = 10, value_parser = crate::opts::int(1, 1000))]
    pub knn: i64,
    /// Number formats of the search, each timed in this run: f32, and
    /// bf16 candidates re-ranked in f32 (compared with the f32 answers).
    #[arg(long, value_delimiter = ',', default_value = "f32,bf16")]
    pub precision: Vec<SearchPrecision>,
    /// Noise of the planted translations: target i is source i's unit
    /// vector plus this much Gaussian noise per unit of norm (P@1 falls
    /// from 100% as it grows; 3.5 at 300 dimensions leaves a few percent
    /// of close calls, where a reduced-precision search would err first).
    #[arg(long, default_value_t = 3.5, value_parser = crate::opts::non_negative)]
    pub noise: f64,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchPrecision {
    F32,
    Bf16,
}

#[derive(Serialize)]
struct CslsRun {
    precision: SearchPrecision,
    seconds_r_target: f64,
    seconds_translate: f64,
    seconds: f64,
    /// Multiply-adds ×2 of every product made (candidate re-ranks excluded).
    gflop: f64,
    gflop_per_s: f64,
    /// gflop_per_s over the measured f32 matrix-product peak.
    fraction_of_f32_peak: f64,
    p_at_1: f64,
    /// Against the f32 run (when there is one): queries with the same
    /// best target, the same top 10 in the same order, the largest
    /// difference of an r term and of a CSLS score.
    same_top1: Option<f64>,
    same_top10: Option<f64>,
    max_r_diff: Option<f64>,
    max_score_diff: Option<f64>,
    speedup_over_f32: Option<f64>,
}

#[derive(Serialize)]
struct CslsBenchResult {
    n: i64,
    dim: i64,
    queries: usize,
    knn: i64,
    noise: f64,
    threads: i32,
    /// The best of three 4096³ f32 products, GFLOP/s, measured before and
    /// after the runs (this machine's speed varies by ±10% from minute to
    /// minute); their mean is the peak the runs are compared with.
    f32_peak_gflop_per_s: f64,
    f32_peak_before_after: [f64; 2],
    /// The same for bfloat16 operands (CPUs without fast bfloat16 run it
    /// slowly, which shows here).
    bf16_peak_gflop_per_s: f64,
    runs: Vec<CslsRun>,
    peak_rss_mib: Option<f64>,
}

/// The f32 run's r terms, scores, targets and seconds.
type Reference = (Tensor, Tensor, Tensor, f64);

/// GFLOP/s of the best of three `s × s × s` products in `kind` (s = 4096,
/// or `n` when smaller).
fn gemm_peak(kind: Kind, device: Device, n: i64) -> f64 {
    // Smaller for a small benchmark (a test), which does not need the peak.
    let s = n.clamp(256, 4096);
    let a = Tensor::randn([s, s], (Kind::Float, device)).to_kind(kind);
    let b = Tensor::randn([s, s], (Kind::Float, device)).to_kind(kind);
    let out = a.mm(&b);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let _ = a.mm_out(&out, &b);
        let _ = out.double_value(&[0, 0]);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (s as f64).powi(3) / best / 1e9
}

/// Runs the benchmark; returns its result as JSON.
pub fn csls(a: &CslsBench, device: Device) -> Result<String> {
    if a.n < 2
        || a.dim < 1
        || a.queries < 1
        || a.queries as i64 > a.n
        || !(1..=1000).contains(&a.knn)
        || a.n > 10_000_000
        || a.dim > 100_000
    {
        crate::fail!("bench csls: need 2 ≤ --n ≤ 10000000, 1 ≤ --dim ≤ 100000, 1 ≤ --queries ≤ --n and 1 ≤ --knn ≤ 1000");
    }
    if a.precision.is_empty() {
        crate::fail!("bench csls: --precision needs at least one of f32, bf16");
    }
    let f32_before = gemm_peak(Kind::Float, device, a.n);
    let bf16_peak = gemm_peak(Kind::BFloat16, device, a.n);
    let opts = (Kind::Float, device);
    tch::manual_seed(0);
    let x = Tensor::randn([a.n, a.dim], opts);
    let y = embedlab_align::normalize::unit_rows(&x)
        + Tensor::randn([a.n, a.dim], opts) * (a.noise / (a.dim as f64).sqrt());
    let k = a.knn;
    let q: Vec<usize> = (0..a.queries)
        .map(|i| i * (a.n as usize / a.queries.max(1)))
        .collect();
    let truth = Tensor::from_slice(&q.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let (n, d, nq) = (a.n as f64, a.dim as f64, a.queries as f64);
    // r_S over every target, r_T for the queries, the queries' scores.
    let gflop = 2.0 * d * (n * n + 2.0 * nq * n) / 1e9;
    let mut runs: Vec<CslsRun> = vec![];
    let mut reference: Option<Reference> = None;
    for &p in &a.precision {
        let mut space = Space::new(&x, &y)?;
        space.precision = match p {
            SearchPrecision::F32 => embedlab_align::precision::Precision::F32,
            SearchPrecision::Bf16 => embedlab_align::precision::Precision::Bf16,
        };
        let t = Instant::now();
        let r = space.r_tgt(k)?.shallow_clone();
        let r_target = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (s, idx) = space.translate(&q, Retrieval::Csls { k }, 10)?;
        let translate = t.elapsed().as_secs_f64();
        let secs = r_target + translate;
        let p1 = idx
            .select(1, 0)
            .to_device(Device::Cpu)
            .eq_tensor(&truth)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[])
            * 100.0;
        let vs = |f: &dyn Fn(&Reference) -> f64| reference.as_ref().map(f);
        let run = CslsRun {
            precision: p,
            seconds_r_target: r_target,
            seconds_translate: translate,
            seconds: secs,
            gflop,
            gflop_per_s: gflop / secs,
            fraction_of_f32_peak: f64::NAN, // once the peak is measured again
            p_at_1: p1,
            same_top1: vs(&|(_, _, i0, _)| {
                i0.select(1, 0)
                    .eq_tensor(&idx.select(1, 0))
                    .to_kind(Kind::Float)
                    .mean(Kind::Float)
                    .double_value(&[])
            }),
            same_top10: vs(&|(_, _, i0, _)| {
                i0.eq_tensor(&idx)
                    .all_dim(1, false)
                    .to_kind(Kind::Float)
                    .mean(Kind::Float)
                    .double_value(&[])
            }),
            max_r_diff: vs(&|(r0, _, _, _)| (r0 - &r).abs().max().double_value(&[])),
            max_score_diff: vs(&|(_, s0, _, _)| (s0 - &s).abs().max().double_value(&[])),
            speedup_over_f32: vs(&|(_, _, _, t0)| t0 / secs),
        };
        if p == SearchPrecision::F32 && reference.is_none() {
            reference = Some((r, s, idx, secs));
        }
        runs.push(run);
    }
    let f32_after = gemm_peak(Kind::Float, device, a.n);
    let f32_peak = (f32_before + f32_after) / 2.0;
    for r in &mut runs {
        r.fraction_of_f32_peak = r.gflop_per_s / f32_peak;
    }
    let res = CslsBenchResult {
        n: a.n,
        dim: a.dim,
        queries: a.queries,
        knn: k,
        noise: a.noise,
        threads: tch::get_num_threads(),
        f32_peak_gflop_per_s: f32_peak,
        f32_peak_before_after: [f32_before, f32_after],
        bf16_peak_gflop_per_s: bf16_peak,
        runs,
        peak_rss_mib: peak_rss_bytes().map(|b| b as f64 / 1048576.0),
    };
    Ok(serde_json::to_string_pretty(&res)?)
}

#[derive(Args, Debug)]
pub struct LoadBench {
    /// Words in the synthetic .vec file.
    #[arg(long, default_value_t = 200_000, value_parser = crate::opts::count(1, 10_000_000))]
    pub n: usize,
    #[arg(long, default_value_t = 300, value_parser = crate::opts::count(1, 10_000))]
    pub dim: usize,
    /// Where to write the file (default: a temporary folder, removed after).
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
}

/// Writes an `n × dim` .vec of random vectors and times loading it back.
pub fn load(a: &LoadBench) -> Result<String> {
    if a.n < 1 || a.dim < 1 || a.n > 10_000_000 || a.dim > 10_000 {
        crate::fail!("bench load: need 1 ≤ --n ≤ 10000000 and 1 ≤ --dim ≤ 10000");
    }
    use embedlab_data::{Embeddings, LoadOptions};
    let tmp = std::env::temp_dir().join(format!("embedlab-bench-{}.vec", std::process::id()));
    let path = a.file.clone().unwrap_or_else(|| tmp.clone());
    let x = Tensor::randn([a.n as i64, a.dim as i64], (Kind::Float, Device::Cpu));
    let words = (0..a.n).map(|i| format!("w{i}")).collect();
    let data = Vec::<f32>::try_from(x.view(-1))?;
    Embeddings::new(words, a.dim, data)?.save_vec(&path)?;
    let bytes = std::fs::metadata(&path)?.len();
    let t = Instant::now();
    let e = Embeddings::load(
        &path,
        &LoadOptions {
            dedupe: true,
            ..Default::default()
        },
    )?;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!((e.len(), e.dim()), (a.n, a.dim));
    if a.file.is_none() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "n": a.n, "dim": a.dim, "file_mib": bytes as f64 / 1048576.0,
        "seconds_load": secs,
    }))?)
}

/// `embedlab bench flow`: one flow's training steps on random images of
/// one size (run each size in its own process: the peak resident memory
/// only grows).
#[derive(Args, Debug)]
pub struct FlowBench {
    #[arg(long, value_enum, default_value_t = FlowKindArg::Glow)]
    pub kind: FlowKindArg,
    /// Image height and width (a multiple of 4: two levels).
    #[arg(long, default_value_t = 32, value_parser = crate::opts::int(4, 1024))]
    pub size: i64,
    #[arg(long, default_value_t = 1, value_parser = crate::opts::int(1, 64))]
    pub channels: i64,
    #[arg(long, default_value_t = 16, value_parser = crate::opts::int(1, 4096))]
    pub batch: i64,
    /// Timed training steps (after one untimed).
    #[arg(long, default_value_t = 5, value_parser = crate::opts::count(1, 10_000))]
    pub iterations: usize,
    #[command(flatten)]
    pub flow: crate::flows::FlowArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKindArg {
    Glow,
    Realnvp,
    Iresnet,
}

#[derive(Serialize)]
struct FlowBenchResult {
    kind: String,
    dims: i64,
    size: i64,
    channels: i64,
    batch: i64,
    parameters: i64,
    seconds_per_image: f64,
    peak_rss_mib: Option<f64>,
}

/// The flow's memory estimate with `bench flow`'s own options.
pub(crate) fn flow_bench_subject(
    cfg: &embedlab_models::flow::FlowConfig,
    batch: i64,
) -> crate::memory::Subject {
    let mut s = crate::family::flows::memory_subject(cfg, batch, "--batch");
    s.options.retain(|(o, _)| o != "--init-batch");
    s.options
        .insert(0, ("--size".into(), cfg.height.to_string()));
    s.options
        .insert(1, ("--channels".into(), cfg.channels.to_string()));
    s.activation_drivers = vec!["--batch", "--size", "--channels", "--hidden", "--steps"];
    s
}

pub fn flow(a: &FlowBench, device: Device) -> Result<String> {
    use embedlab_models::flow::{blocks::Ctx, Flow, FlowKind};
    use embedlab_train::Trainable;
    use tch::nn::OptimizerConfig;
    let kind = match a.kind {
        FlowKindArg::Glow => FlowKind::Glow,
        FlowKindArg::Realnvp => FlowKind::Realnvp,
        FlowKindArg::Iresnet => FlowKind::Iresnet,
    };
    let cfg = a.flow.config_for(kind, [a.channels, a.size, a.size], 10);
    if cfg.check().is_ok() {
        crate::memory::check_bench(&flow_bench_subject(&cfg, a.batch), a.batch, device)?;
    }
    let flow = crate::memory::guard(|| Ok(Flow::new(cfg, device)?))?;
    let x = (Tensor::rand([a.batch, a.channels, a.size, a.size], (Kind::Float, device)) * 255.0)
        .round()
        / 255.0;
    flow.initialise(&x, None)?;
    let mut opt = tch::nn::Adam::default().build(flow.var_store(), 1e-4)?;
    let ctx = Ctx {
        train: true,
        exact: false,
    };
    let mut step = || -> Result<()> {
        for (_, b) in flow.blocks() {
            b.before_step();
        }
        let nll = flow.nll_images(&x, None, ctx)?;
        opt.backward_step(&flow.bits_per_dim(&nll).mean(Kind::Float));
        Ok(())
    };
    step()?;
    let t = Instant::now();
    for _ in 0..a.iterations {
        step()?;
    }
    let secs = t.elapsed().as_secs_f64();
    let r = FlowBenchResult {
        kind: format!("{:?}", a.kind).to_lowercase(),
        dims: a.channels * a.size * a.size,
        size: a.size,
        channels: a.channels,
        batch: a.batch,
        parameters: flow
            .var_store()
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum(),
        seconds_per_image: secs / (a.iterations as f64 * a.batch as f64),
        peak_rss_mib: peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
    };
    Ok(serde_json::to_string(&r)?)
}
