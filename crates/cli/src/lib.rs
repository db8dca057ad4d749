//! embedlab: learn and probe representations (embeddings). This crate
//! parses arguments and prints; everything it runs lives in
//! `embedlab-pipelines`. (A library too, so that tests can walk the
//! command tree.)
mod cmd;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use embedlab_pipelines::{bench, demo, represent, variations, words};
use tch::Device;

#[derive(Parser, Debug)]
#[command(
    name = "embedlab",
    version,
    about = "Learn and probe representations: word translation with embeddings, autoencoders, GANs, classifiers"
)]
pub struct Cli {
    /// Seed for every random choice; the same seed repeats a run.
    #[arg(long, global = true, default_value_t = 0)]
    seed: i64,
    /// cpu, cuda, or auto (cuda when libtorch sees a GPU).
    #[arg(long, global = true, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// libtorch CPU threads (default: libtorch's choice), 1..=1024.
    #[arg(long, global = true, value_parser = clap::value_parser!(i32).range(1..=1024))]
    threads: Option<i32>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum DeviceArg {
    Cpu,
    Cuda,
    Auto,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The main job: short real runs on the offline default data.
    Demo(demo::DemoArgs),
    /// Train an image model (autoencoders, WAEs, GANs, flows, the classifier), or the 8-3-8 network.
    #[command(subcommand)]
    Train(cmd::images::TrainCmd),
    /// Test metrics of a trained run again (e.g. with more importance samples).
    Eval(cmd::images::EvalArgs),
    /// Score generated images from a .npy file (e.g. a PyTorch reference's)
    /// in a classifier run's features: Fréchet distance, precision/recall,
    /// class coverage, beside the real-data floor.
    Score(cmd::images::ScoreArgs),
    /// Checks of a trained flow, block by block: round trip, log-determinant
    /// against the brute-force Jacobian, Lipschitz constants (i-ResNet).
    FlowCheck(cmd::images::FlowCheckArgs),
    /// Look inside a trained run's representation.
    #[command(subcommand)]
    Latent(cmd::images::LatentCmd),
    /// The representation benchmark: pixels, PCA, a random projection and
    /// trained runs' codes, scored side by side (probes with few labels,
    /// k-NN, query by image, k-means, distance properties).
    Represent(Box<represent::RepresentArgs>),
    /// One self-contained HTML report of run folders (or folders of runs).
    Report(cmd::report::ReportArgs),
    /// Grids of runs (models × options × seeds) from a TOML file, run N at
    /// a time and aggregated into one report.
    #[command(subcommand)]
    Study(cmd::study::StudyCmd),
    /// Map one language's embeddings onto another's.
    #[command(subcommand)]
    Align(AlignCmd),
    /// Translate words with a saved map (top-k candidates with scores).
    Translate(words::translate::TranslateArgs),
    /// Write a run's mapped source (and prepared target) vectors as .vec.
    Export(words::translate::ExportArgs),
    /// Convert embeddings or dictionaries between formats.
    #[command(subcommand)]
    Convert(words::convert::ConvertCmd),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Make image sets of controlled variations (DrLIM's experiments).
    #[command(subcommand)]
    Data(DataCmd),
}

#[derive(Subcommand, Debug)]
enum DataCmd {
    /// Every image of a set once per horizontal shift (labels: the class;
    /// factors.json: class and shift of each image).
    Shifted {
        /// The source images (an IDX folder).
        src: std::path::PathBuf,
        /// The new IDX folder (must not exist, or be empty).
        out: std::path::PathBuf,
        /// Shifts in pixels (positive: to the right).
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true, default_values_t = vec![-6i64, -3, 0, 3, 6], value_parser = embedlab_pipelines::opts::int(-1024, 1024))]
        shifts: Vec<i64>,
        /// Source training images used (default all).
        #[arg(long, value_parser = embedlab_pipelines::opts::count(1, 100_000_000))]
        train_limit: Option<usize>,
        /// Source test images used (default all).
        #[arg(long, value_parser = embedlab_pipelines::opts::count(1, 100_000_000))]
        test_limit: Option<usize>,
    },
    /// One training image seen under two controlled factors: rotated
    /// through --angles angles × shifted through --shifts steps (labels:
    /// the grid cell angle·shifts + shift, for train drlim --graph grid).
    Variations {
        src: std::path::PathBuf,
        out: std::path::PathBuf,
        /// The source training image.
        #[arg(long, default_value_t = 0, value_parser = embedlab_pipelines::opts::count(0, 100_000_000))]
        index: usize,
        #[arg(long, default_value_t = 18, value_parser = embedlab_pipelines::opts::count(2, 256))]
        angles: usize,
        #[arg(long, default_value_t = 9, value_parser = embedlab_pipelines::opts::count(2, 256))]
        shifts: usize,
        /// The largest shift, pixels (the steps span ± this).
        #[arg(long, default_value_t = 4.0, value_parser = embedlab_pipelines::opts::positive)]
        max_shift: f64,
        /// Noisy training copies of each cell.
        #[arg(long, default_value_t = 6, value_parser = embedlab_pipelines::opts::count(1, 10_000))]
        copies: usize,
        /// Pixel noise, standard deviation in grey levels.
        #[arg(long, default_value_t = 8.0, value_parser = embedlab_pipelines::opts::non_negative)]
        noise: f64,
    },
}

#[derive(Subcommand, Debug)]
enum AlignCmd {
    /// With a seed dictionary: least squares, Xing, Procrustes (+ refinement).
    Supervised(Box<words::supervised::SupervisedArgs>),
    /// Without a seed dictionary: self-learning (VecMap-style), from the
    /// similarity structure alone or from identical strings, or MUSE's
    /// adversarial mapping.
    Unsupervised(Box<words::unsupervised::UnsupervisedArgs>),
    /// How far two spaces are from isomorphic (what the unsupervised
    /// methods assume): eigenvector similarity, a Gromov–Hausdorff
    /// estimate, relational similarity.
    Isomorphism(Box<words::isomorphism::IsomorphismArgs>),
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// CSLS evaluation at scale (random vectors): time and peak memory.
    Csls(bench::CslsBench),
    /// A flow's training step on random images of one size: time per image
    /// and peak memory.
    Flow(Box<bench::FlowBench>),
    /// Loading a large .vec file (random vectors): time.
    Load(bench::LoadBench),
}

/// Parses the command line and runs it.
pub fn run() -> Result<()> {
    keep_freed_memory();
    dispatch(&Cli::command().get_matches())
}

/// Runs parsed command-line matches (a study runs its runs through here).
pub(crate) fn dispatch(matches: &clap::ArgMatches) -> Result<()> {
    let cli = Cli::from_arg_matches(matches)?;
    tch::manual_seed(cli.seed);
    if let Some(n) = cli.threads {
        tch::set_num_threads(n);
    }
    let device = match cli.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => {
            if !tch::Cuda::is_available() {
                anyhow::bail!("--device cuda: libtorch sees no CUDA device");
            }
            Device::Cuda(0)
        }
        DeviceArg::Auto => Device::cuda_if_available(),
    };
    match &cli.cmd {
        Cmd::Demo(a) => {
            let report = demo::demo(a, cli.seed, device)?;
            println!("report: {}", report.display());
        }
        Cmd::Report(a) => cmd::report::report(a)?,
        Cmd::Study(c) => cmd::study::study(c)?,
        Cmd::Represent(a) => {
            let (dir, b) = represent::run(a, cli.seed, device)?;
            let t = represent::table(&b, &a.labels);
            println!("{}", t.title);
            let widths: Vec<usize> = (0..t.columns.len())
                .map(|c| {
                    t.rows
                        .iter()
                        .map(|r| r[c].chars().count())
                        .chain([t.columns[c].chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for row in std::iter::once(&t.columns).chain(&t.rows) {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:>w$}"))
                    .collect();
                println!("{}", cells.join("  "));
            }
            println!("run folder: {}", dir.display());
        }
        Cmd::Train(t) => cmd::images::train(t, matches, cli.seed, device)?,
        Cmd::Eval(a) => cmd::images::eval(a, device)?,
        Cmd::Score(a) => cmd::images::score(a, device)?,
        Cmd::FlowCheck(a) => cmd::images::flow_check(a, device)?,
        Cmd::Latent(c) => cmd::images::latent(c, device)?,
        Cmd::Align(AlignCmd::Supervised(a)) => cmd::words::supervised(a, device)?,
        Cmd::Align(AlignCmd::Unsupervised(a)) => {
            cmd::words::unsupervised(a, matches, cli.seed, device)?
        }
        Cmd::Align(AlignCmd::Isomorphism(a)) => cmd::words::isomorphism(a)?,
        Cmd::Translate(a) => cmd::words::translate(a, device)?,
        Cmd::Export(a) => words::translate::export(a, device)?,
        Cmd::Convert(c) => words::convert::convert(c, device)?,
        Cmd::Bench(BenchCmd::Csls(a)) => println!("{}", bench::csls(a, device)?),
        Cmd::Bench(BenchCmd::Load(a)) => println!("{}", bench::load(a)?),
        Cmd::Bench(BenchCmd::Flow(a)) => println!("{}", bench::flow(a, device)?),
        Cmd::Data(DataCmd::Shifted {
            src,
            out,
            shifts,
            train_limit,
            test_limit,
        }) => {
            let s = variations::shifted(src, out, shifts, *train_limit, *test_limit)?;
            println!(
                "{}: {} training, {} test images",
                s.path.display(),
                s.train,
                s.test
            );
        }
        Cmd::Data(DataCmd::Variations {
            src,
            out,
            index,
            angles,
            shifts,
            max_shift,
            copies,
            noise,
        }) => {
            let s = variations::variations(
                src,
                out,
                *index,
                *angles,
                *shifts,
                *max_shift,
                *copies,
                *noise,
                cli.seed as u64,
            )?;
            println!(
                "{}: {} training, {} test images, {} cells",
                s.path.display(),
                s.train,
                s.test,
                s.classes
            );
        }
    }
    Ok(())
}

/// Makes glibc's malloc keep large freed blocks for reuse. libtorch
/// allocates its temporaries afresh on every operation; by default glibc
/// serves blocks over 128 KiB with `mmap` and returns them on `free`, so a
/// training step touching a few 2048×2048 matrices pays for zeroing fresh
/// pages every time (the adversarial discriminator step ran 20–25% slower).
/// Freed blocks of up to 32 MiB (glibc's limit) now stay in the heap.
fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; called once at start-up.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
