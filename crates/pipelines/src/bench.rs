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
}

#[derive(Serialize)]
struct CslsBenchResult {
    n: i64,
    dim: i64,
    queries: usize,
    knn: i64,
    threads: i32,
    seconds_r_target: f64,
    seconds_translate: f64,
    seconds_total: f64,
    peak_rss_mib: Option<f64>,
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
    let opts = (Kind::Float, device);
    let x = Tensor::randn([a.n, a.dim], opts);
    let y = Tensor::randn([a.n, a.dim], opts);
    let t0 = Instant::now();
    let mut space = Space::new(&x, &y)?;
    drop((x, y));
    let k = a.knn;
    let t = Instant::now();
    space.r_tgt(k)?;
    let r_target = t.elapsed().as_secs_f64();
    let q: Vec<usize> = (0..a.queries)
        .map(|i| i * (a.n as usize / a.queries.max(1)))
        .collect();
    let t = Instant::now();
    let (_s, idx) = space.translate(&q, Retrieval::Csls { k }, 10)?;
    let translate = t.elapsed().as_secs_f64();
    assert_eq!(idx.size(), vec![a.queries as i64, 10]);
    let res = CslsBenchResult {
        n: a.n,
        dim: a.dim,
        queries: a.queries,
        knn: k,
        threads: tch::get_num_threads(),
        seconds_r_target: r_target,
        seconds_translate: translate,
        seconds_total: t0.elapsed().as_secs_f64(),
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
