//! `embedlab align unsupervised`: word translation without a seed dictionary
//! (self-learning from the similarity-structure initialisation, or from
//! identical strings).
use super::align::{
    print_precision, read_dictionary, save_map, EmbArgs, RunPrep, EVAL_KS, EVAL_RETRIEVALS,
};
use crate::run::RunDir;
use crate::util::{parse_range, spinner};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use embedlab_align::selflearn::{identical_strings, self_learn, SelfLearnConfig, Step};
use embedlab_align::supervised::Prep;
use embedlab_align::{Normalization, Space};
use embedlab_data::Embeddings;
use embedlab_metrics::{precision_at_k, Precision};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;
use tch::Device;

/// Where self-learning starts.
#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// No seed at all: match sorted similarity distributions (Artetxe et al. 2018).
    Structure,
    /// Words spelled the same in both vocabularies (weak supervision).
    Identical,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct UnsupervisedArgs {
    #[command(flatten)]
    pub emb: EmbArgs,
    #[arg(long, value_enum, default_value_t = Init::Structure)]
    pub init: Init,
    /// Dictionary to evaluate on (MUSE text or dictd); never used for fitting.
    #[arg(long)]
    pub dict_test: Option<PathBuf>,
    /// Read --dict-test the other way round.
    #[arg(long)]
    pub invert_dict: bool,
    /// Evaluate on these source-frequency ranks of --dict-test only (e.g. 5000:6500).
    #[arg(long, value_parser = parse_range)]
    pub test_ranks: Option<(usize, usize)>,
    #[arg(long, default_value = "renorm,center,renorm")]
    pub normalize: String,
    #[arg(long)]
    pub src_pca: Option<usize>,
    #[arg(long)]
    pub tgt_pca: Option<usize>,
    /// Words of each side described by the unsupervised initialisation.
    #[arg(long, default_value_t = 4000)]
    pub init_vocab: i64,
    /// Words of each side taking part in dictionary induction.
    #[arg(long, default_value_t = 20_000)]
    pub cutoff: i64,
    /// Initial keep probability of stochastic dictionary induction.
    #[arg(long, default_value_t = 0.1)]
    pub keep_prob: f64,
    /// Iterations without improvement before the keep probability doubles.
    #[arg(long, default_value_t = 50)]
    pub patience: usize,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnsupervisedReport {
    pub init: Init,
    pub seed_pairs: Option<usize>,
    pub iterations: usize,
    pub final_objective: f64,
    pub dictionary_pairs: usize,
    pub test: Option<embedlab_data::dictionary::ResolveStats>,
    pub precision: Vec<Precision>,
    pub seconds: f64,
}

pub fn run_unsupervised(args: &UnsupervisedArgs, device: Device) -> Result<UnsupervisedReport> {
    let (src, tgt) = args.emb.load()?;
    let t0 = Instant::now();
    let mut run = RunDir::create("align-unsupervised", args.out.as_deref())?;
    run.write_json("config.json", args)?;
    let norm: Normalization = args.normalize.parse()?;
    let ps = Prep {
        pca: args.src_pca,
        normalize: norm.clone(),
    };
    let pt = Prep {
        pca: args.tgt_pca,
        normalize: norm,
    };
    run.write_json(
        "prep.json",
        &RunPrep {
            emb: args.emb.clone(),
            src: ps.clone(),
            tgt: pt.clone(),
        },
    )?;
    let (x, _) = ps.apply(&src, device)?;
    let (z, _) = pt.apply(&tgt, device)?;
    if x.size()[1] != z.size()[1] {
        bail!(
            "self-learning needs equal dimensions: source {} and target {} (use --src-pca/--tgt-pca)",
            x.size()[1],
            z.size()[1]
        );
    }
    let seed = match args.init {
        Init::Structure => None,
        Init::Identical => {
            let s = identical_strings(src.words(), tgt.words());
            eprintln!("identical strings: {} seed pairs", s.len());
            if s.is_empty() {
                bail!("no word is spelled the same in both vocabularies: use --init structure");
            }
            Some(s)
        }
    };
    let cfg = SelfLearnConfig {
        init_vocab: args.init_vocab,
        cutoff: args.cutoff,
        keep_prob: args.keep_prob,
        patience: args.patience,
        ..Default::default()
    };
    let pb = spinner("self-learning");
    let mut steps: Vec<Step> = vec![];
    let mut log_error = None;
    let (map, dict) = self_learn(&x, &z, seed.as_deref(), &cfg, |s| {
        pb.set_message(format!(
            "self-learning: iteration {} keep {:.2} objective {:.4} pairs {}",
            s.iteration, s.keep_prob, s.objective, s.dictionary_pairs
        ));
        // Logged as it happens, so a long run can be followed in metrics.jsonl.
        let line = serde_json::json!({"event": "iteration", "iteration": s.iteration, "keep_prob": s.keep_prob,
            "objective": s.objective, "dictionary_pairs": s.dictionary_pairs});
        if let Err(e) = run.log(&line) {
            log_error.get_or_insert(e);
        }
        steps.push(s.clone());
    })?;
    pb.finish_and_clear();
    if let Some(e) = log_error {
        return Err(e);
    }
    save_map(&run.file("map.safetensors"), &map)?;
    let (precision, test) = match &args.dict_test {
        None => (vec![], None),
        Some(p) => evaluate(
            args,
            p,
            &src,
            &tgt,
            &map.map_src(&x),
            &map.map_tgt(&z),
            &mut run,
        )?,
    };
    let last = steps.last().map(|s| s.objective).unwrap_or(f64::NAN);
    let report = UnsupervisedReport {
        init: args.init,
        seed_pairs: seed.map(|s| s.len()),
        iterations: steps.len(),
        final_objective: last,
        dictionary_pairs: dict.len(),
        test,
        precision,
        seconds: t0.elapsed().as_secs_f64(),
    };
    run.write_json("report.json", &report)?;
    eprintln!("run folder: {}", run.path.display());
    Ok(report)
}

fn evaluate(
    args: &UnsupervisedArgs,
    path: &std::path::Path,
    src: &Embeddings,
    tgt: &Embeddings,
    xs: &tch::Tensor,
    zs: &tch::Tensor,
    run: &mut RunDir,
) -> Result<(
    Vec<Precision>,
    Option<embedlab_data::dictionary::ResolveStats>,
)> {
    let r = read_dictionary(path, args.invert_dict, args.emb.lowercase)?.resolve(src, tgt);
    let pairs = match args.test_ranks {
        Some(rk) => r.in_ranks(rk),
        None => r.pairs.clone(),
    };
    if pairs.is_empty() {
        bail!(
            "{}: no test pair has both words in the vocabularies",
            path.display()
        );
    }
    let mut space = Space::new(xs, zs)?;
    let mut out = vec![];
    for m in EVAL_RETRIEVALS {
        let p = precision_at_k(&mut space, &pairs, m, &EVAL_KS)?;
        run.log(&serde_json::json!({"event": "precision", "retrieval": p.retrieval, "at": p.at, "queries": p.queries}))?;
        out.push(p);
    }
    Ok((out, Some(r.stats)))
}

pub fn unsupervised(args: &UnsupervisedArgs, device: Device) -> Result<()> {
    let r = run_unsupervised(args, device)?;
    if !r.precision.is_empty() {
        print_precision(
            &format!("self-learning ({:?} init)", args.init).to_lowercase(),
            &r.precision,
        );
    }
    Ok(())
}
