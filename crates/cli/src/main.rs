//! embedlab: learn and probe representations (embeddings).
mod cmd;
mod run;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use tch::Device;

#[derive(Parser, Debug)]
#[command(
    name = "embedlab",
    version,
    about = "Learn and probe representations: word translation with embeddings, autoencoders, flows"
)]
struct Cli {
    /// Seed for every random choice; the same seed repeats a run.
    #[arg(long, global = true, default_value_t = 0)]
    seed: i64,
    /// cpu, cuda, or auto (cuda when libtorch sees a GPU).
    #[arg(long, global = true, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// libtorch CPU threads (default: libtorch's choice).
    #[arg(long, global = true)]
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
    Demo(cmd::demo::DemoArgs),
    /// Train an autoencoder (ae, vae, cae, cvae) on images, or the 8-3-8
    /// identity network.
    Train(Box<cmd::autoenc::TrainArgs>),
    /// Test ELBO and importance-weighted NLL of a trained run.
    Eval(cmd::autoenc::EvalArgs),
    /// Look inside a trained run's latent space.
    #[command(subcommand)]
    Latent(cmd::autoenc::LatentCmd),
    /// One self-contained HTML report of run folders (or folders of runs).
    Report(cmd::report::ReportArgs),
    /// Map one language's embeddings onto another's.
    #[command(subcommand)]
    Align(AlignCmd),
    /// Translate words with a saved map (top-k candidates with scores).
    Translate(cmd::translate::TranslateArgs),
    /// Write a run's mapped source (and prepared target) vectors as .vec.
    Export(cmd::translate::ExportArgs),
    /// Convert embeddings or dictionaries between formats.
    #[command(subcommand)]
    Convert(cmd::convert::ConvertCmd),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand, Debug)]
enum AlignCmd {
    /// With a seed dictionary: least squares, Xing, Procrustes (+ refinement).
    Supervised(Box<cmd::align::SupervisedArgs>),
    /// Without a seed dictionary: self-learning (VecMap-style), from the
    /// similarity structure alone or from identical strings.
    Unsupervised(Box<cmd::unsupervised::UnsupervisedArgs>),
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// CSLS evaluation at scale (random vectors): time and peak memory.
    Csls(cmd::bench::CslsBench),
    /// Loading a large .vec file (random vectors): time.
    Load(cmd::bench::LoadBench),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    util::keep_freed_memory();
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
        Cmd::Demo(a) => cmd::demo::demo(a, cli.seed, device),
        Cmd::Report(a) => cmd::report::report(a),
        Cmd::Train(a) => cmd::autoenc::train_cmd(a, cli.seed, device),
        Cmd::Eval(a) => cmd::autoenc::eval_cmd(a, device),
        Cmd::Latent(c) => cmd::autoenc::latent_cmd(c, device),
        Cmd::Align(AlignCmd::Supervised(a)) => {
            let (src, tgt) = a.emb.load()?;
            let report = cmd::align::run_supervised(a, &src, &tgt, device)?;
            cmd::align::print_precision(
                &format!(
                    "{:?}: {} test source words",
                    a.method, report.precision[0].queries
                ),
                &report.precision,
            );
            Ok(())
        }
        Cmd::Align(AlignCmd::Unsupervised(a)) => cmd::unsupervised::unsupervised(a, device),
        Cmd::Translate(a) => cmd::translate::translate(a, device),
        Cmd::Export(a) => cmd::translate::export(a, device),
        Cmd::Convert(c) => cmd::convert::convert(c, device),
        Cmd::Bench(BenchCmd::Csls(a)) => cmd::bench::csls(a, device),
        Cmd::Bench(BenchCmd::Load(a)) => cmd::bench::load(a),
    }
}
