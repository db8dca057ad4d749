//! `embedlab demo`: the main job on the offline default data. For now it runs
//! supervised en→fr and fr→en word translation with each map method and
//! prints the precision tables; later capabilities join it as they land.
use super::align::{
    print_precision, run_supervised, EmbArgs, Method, SupervisedArgs, SupervisedReport,
};
use anyhow::{bail, Result};
use clap::Args;
use embedlab_data::Embeddings;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Device;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder filled by scripts/fetch-data.sh.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// Parent folder of the demo's runs.
    #[arg(long)]
    pub out: Option<PathBuf>,
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

pub fn demo(a: &DemoArgs, device: Device) -> Result<()> {
    for f in [
        "en/glove_6B_50d_emb.npy",
        "fr/vocab/key2row",
        "dict/freedict-eng-fra.index",
    ] {
        if !a.data.join(f).exists() {
            bail!(
                "{} is missing: run scripts/fetch-data.sh (or `make demo`) first",
                a.data.join(f).display()
            );
        }
    }
    let root = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "demo-{}",
            chrono::Local::now().format("%Y%m%d-%H%M%S")
        ))
    });
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
            if cache.is_none() {
                cache = Some(args.emb.load()?);
            }
            let (en, fr) = cache.as_ref().unwrap();
            let (s, t) = if reverse { (fr, en) } else { (en, fr) };
            eprintln!("== {name}");
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
        }
    }
    embedlab_data::atomic::write_json_atomic(&root.join("summary.json"), &rows)?;
    println!("\nsummary: {}", root.join("summary.json").display());
    Ok(())
}
