//! `embedlab demo`: the main job on the offline default data — short but
//! real runs of every pipeline (supervised and unsupervised word
//! translation, AE/VAE/CVAE and a conv VAE, the 8-3-8 network), each a step
//! whose failure is recorded without stopping the others, then one
//! self-contained HTML report of everything that finished.
use super::align::{
    print_precision, run_supervised, EmbArgs, Method, SupervisedArgs, SupervisedReport,
};
use anyhow::{bail, Result};
use clap::Args;
use embedlab_data::Embeddings;
use embedlab_reports::html::{Step, STEPS_FILE};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder filled by scripts/fetch-data.sh.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// Parent folder of the demo's runs (default runs/demo-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Which pipelines to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "words,unsupervised,images"
    )]
    pub parts: Vec<Part>,
    /// Epochs of the Fashion-MNIST autoencoders (the MNIST-subset one gets 4×).
    #[arg(long, default_value_t = 5)]
    pub image_epochs: usize,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Supervised en→fr and fr→en word translation, every map method.
    Words,
    /// en→fr without a seed dictionary (self-learning from identical strings).
    Unsupervised,
    /// AE, VAE, CVAE on Fashion-MNIST, a conv VAE on the MNIST subset, the 8-3-8 network.
    Images,
}

#[derive(Serialize)]
struct DemoRow {
    direction: String,
    method: Method,
    refine: usize,
    pca: Option<usize>,
    report: SupervisedReport,
}

/// The en/fr settings the docs report: English GloVe 6B 50d (top 200k),
/// French fastText 300d (spaCy, 20k), FreeDict dictionaries, lowercased.
pub fn en_fr_args(data: &Path, reverse: bool, out: PathBuf) -> SupervisedArgs {
    let en = data.join("en/glove_6B_50d_emb.npy");
    let fr = data.join("fr/vocab");
    let (src, tgt, dict) = if reverse {
        (fr, en, data.join("dict/freedict-fra-eng.index"))
    } else {
        (en, fr, data.join("dict/freedict-eng-fra.index"))
    };
    SupervisedArgs {
        emb: EmbArgs {
            src,
            tgt,
            src_format: None,
            tgt_format: None,
            src_words: None,
            tgt_words: None,
            src_max_vocab: 200_000,
            tgt_max_vocab: 200_000,
            lowercase: true,
        },
        dict,
        dict_test: None,
        invert_dict: false,
        train_ranks: None,
        test_ranks: None,
        test_size: 1500,
        method: Method::Procrustes,
        prep: super::align::PrepArgs {
            normalize: None,
            src_pca: None,
            tgt_pca: None,
        },
        refine: 0,
        refine_max_rank: 15_000,
        induce_full_vocabulary: false,
        validation: 0.1,
        keep_seed: false,
        out: Some(out),
    }
}

/// Records each step of the demo in `steps.json` (rewritten after every
/// step, so an interrupted demo still says how far it got).
struct Steps {
    root: PathBuf,
    list: Vec<Step>,
}

impl Steps {
    fn run(&mut self, name: &str, run: Option<PathBuf>, f: impl FnOnce() -> Result<()>) -> bool {
        eprintln!("\n== {name}");
        let t0 = Instant::now();
        let res = f();
        let seconds = t0.elapsed().as_secs_f64();
        let ok = res.is_ok();
        if let Err(e) = &res {
            eprintln!("!! {name} failed: {e:#}");
        }
        self.list.push(Step {
            name: name.into(),
            status: if ok { "ok" } else { "failed" }.into(),
            seconds,
            error: res.err().map(|e| format!("{e:#}")),
            run,
        });
        if let Err(e) =
            embedlab_data::atomic::write_json_atomic(&self.root.join(STEPS_FILE), &self.list)
        {
            eprintln!("cannot write {STEPS_FILE}: {e}");
        }
        ok
    }
}

/// Parses a command line of a subcommand's arguments, as the CLI would.
fn parse<T: clap::Args>(argv: &[String]) -> Result<T> {
    #[derive(clap::Parser)]
    struct Wrap<T: clap::Args> {
        #[command(flatten)]
        a: T,
    }
    use clap::Parser;
    Ok(Wrap::<T>::try_parse_from(
        std::iter::once("embedlab".to_string()).chain(argv.iter().cloned()),
    )?
    .a)
}

pub fn demo(a: &DemoArgs, seed: i64, device: Device) -> Result<()> {
    if !a.data.is_dir() {
        bail!(
            "{} is missing: run scripts/fetch-data.sh (or `make demo`) first",
            a.data.display()
        );
    }
    let root = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "demo-{}",
            chrono::Local::now().format("%Y%m%d-%H%M%S")
        ))
    });
    std::fs::create_dir_all(&root)?;
    let started = Instant::now();
    let mut steps = Steps {
        root: root.clone(),
        list: vec![],
    };
    let parts = &a.parts;
    if parts.contains(&Part::Words) {
        supervised_part(a, &root, device, &mut steps);
    }
    if parts.contains(&Part::Unsupervised) {
        let out = root.join("en-fr-unsupervised");
        let argv: Vec<String> = [
            "--src",
            &a.data.join("en/glove_6B_50d_emb.npy").display().to_string(),
            "--tgt",
            &a.data.join("fr/vocab").display().to_string(),
            "--dict-test",
            &a.data
                .join("dict/freedict-eng-fra.index")
                .display()
                .to_string(),
            "--lowercase",
            "--src-max-vocab",
            "20000",
            "--tgt-max-vocab",
            "20000",
            "--tgt-pca",
            "50",
            "--init",
            "identical",
            "--cutoff",
            "10000",
            "--patience",
            "10",
            "--max-iterations",
            "40",
            "--out",
            &out.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        steps.run(
            "en-fr unsupervised: self-learning from identical strings",
            Some(out),
            || {
                let args: super::unsupervised::UnsupervisedArgs = parse(&argv)?;
                super::unsupervised::unsupervised(&args, device)
            },
        );
    }
    if parts.contains(&Part::Images) {
        let fashion = a.data.join("fashion-mnist").display().to_string();
        let mnist = a.data.join("mnist-5k/mnist_5k.csv.gz").display().to_string();
        let e = a.image_epochs.to_string();
        let e4 = (a.image_epochs * 4).to_string();
        // (run, seed offset, arguments); the VAE runs twice, with two seeds,
        // so the report shows a spread over seeds.
        let plans: Vec<(&str, i64, Vec<&str>)> = vec![
            (
                "fashion-mnist-ae",
                0,
                vec!["ae", "--data", &fashion, "--epochs", &e],
            ),
            (
                "fashion-mnist-vae",
                0,
                vec!["vae", "--data", &fashion, "--epochs", &e, "--tsne"],
            ),
            (
                "fashion-mnist-vae-seed2",
                1,
                vec!["vae", "--data", &fashion, "--epochs", &e, "--no-images"],
            ),
            (
                "fashion-mnist-cvae",
                0,
                vec!["cvae", "--data", &fashion, "--epochs", &e],
            ),
            (
                "mnist-conv-vae",
                0,
                vec![
                    "vae", "--data", &mnist, "--arch", "conv", "--epochs", &e4, "--tsne",
                ],
            ),
        ];
        for (name, offset, args) in plans {
            let out = root.join(name);
            let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            argv.extend(["--iwae-k", "1000", "--iwae-images", "200", "--out"].map(String::from));
            argv.push(out.display().to_string());
            steps.run(&format!("{name}: train, evaluate, draw"), Some(out), || {
                let t: super::autoenc::TrainArgs = parse(&argv)?;
                super::autoenc::train_cmd(&t, seed + offset, device)
            });
        }
        let out = root.join("identity-8-3-8");
        let argv = vec![
            "identity".to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        steps.run("8-3-8 identity network", Some(out), || {
            let t: super::autoenc::TrainArgs = parse(&argv)?;
            super::autoenc::train_cmd(&t, seed, device)
        });
    }
    let report = root.join("report.html");
    let failed: Vec<String> = steps
        .list
        .iter()
        .filter(|s| s.status != "ok")
        .map(|s| s.name.clone())
        .collect();
    eprintln!("\n== report");
    embedlab_reports::html::write_report(&report, std::slice::from_ref(&root), "embedlab demo")?;
    println!(
        "\ndemo: {} steps in {:.1} min; report: {}",
        steps.list.len(),
        started.elapsed().as_secs_f64() / 60.0,
        report.display()
    );
    if !failed.is_empty() {
        bail!(
            "{} of {} steps failed ({}); the report shows what finished",
            failed.len(),
            steps.list.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

fn supervised_part(a: &DemoArgs, root: &Path, device: Device, steps: &mut Steps) {
    let mut rows = vec![];
    let mut cache: Option<(Embeddings, Embeddings)> = None;
    for reverse in [false, true] {
        let dir = if reverse { "fr-en" } else { "en-fr" };
        // (method, refinement iterations, PCA of the 300-d French side to 50)
        let plans = [
            (Method::Lstsq, 0, None),
            (Method::Xing, 0, Some(50)),
            (Method::Procrustes, 0, Some(50)),
            (Method::Procrustes, 5, Some(50)),
            (Method::Multistep, 0, Some(50)),
            (Method::Multistep, 5, Some(50)),
        ];
        for (method, refine, pca) in plans {
            let name = format!(
                "{dir}-{method:?}{}",
                if refine > 0 { "-refine" } else { "" }
            )
            .to_lowercase();
            let mut args = en_fr_args(&a.data, reverse, root.join(&name));
            args.method = method;
            args.refine = refine;
            if reverse {
                args.prep.src_pca = pca;
            } else {
                args.prep.tgt_pca = pca;
            }
            steps.run(
                &format!("{name}: supervised word translation"),
                Some(root.join(&name)),
                || {
                    if cache.is_none() {
                        cache = Some(args.emb.load()?);
                    }
                    let (en, fr) = cache.as_ref().expect("loaded");
                    let (s, t) = if reverse { (fr, en) } else { (en, fr) };
                    let report = run_supervised(&args, s, t, device)?;
                    print_precision(
                        &format!("{name} ({} test words)", report.precision[0].queries),
                        &report.precision,
                    );
                    rows.push(DemoRow {
                        direction: dir.into(),
                        method,
                        refine,
                        pca,
                        report,
                    });
                    Ok(())
                },
            );
        }
    }
    if let Err(e) = embedlab_data::atomic::write_json_atomic(&root.join("summary.json"), &rows) {
        eprintln!("cannot write summary.json: {e}");
    }
}
