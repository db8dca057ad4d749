//! `embedlab align unsupervised`: word translation without a seed dictionary,
//! by VecMap-style self-learning (from the similarity-structure
//! initialisation, or from identical strings) or by MUSE's adversarial
//! mapping followed by Procrustes refinement.
use super::align::{
    print_precision, read_dictionary, save_map, EmbArgs, PrepArgs, RunPrep, EVAL_KS,
    EVAL_RETRIEVALS,
};
use crate::run::RunDir;
use crate::util::{bar, parse_range, spinner};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use embedlab_align::adversarial::{
    adversarial, Adversarial, AdversarialConfig, AdversarialState, EpochLog, Precision, Progress,
    RefineLog,
};
use embedlab_align::selflearn::{identical_strings, self_learn, SelfLearnConfig, Step};
use embedlab_align::Space;
use embedlab_data::Embeddings;
use embedlab_metrics::{precision_at_k, Precision as PrecisionAtK};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};

/// Unsupervised methods.
#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UnsupervisedMethod {
    /// Stochastic CSLS self-learning (Artetxe et al. 2018), the robust one.
    SelfLearning,
    /// MUSE: adversarial map + Procrustes refinement (Conneau et al. 2018).
    Adversarial,
}

/// Where self-learning starts.
#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// No seed at all: match sorted similarity distributions (Artetxe et al. 2018).
    Structure,
    /// Words spelled the same in both vocabularies (weak supervision).
    Identical,
}

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PrecisionArg {
    /// bf16 on CUDA or CPUs with AVX512-BF16/AMX, else f32.
    Auto,
    F32,
    Bf16,
}

/// Adversarial options (defaults: MUSE's `unsupervised.py`).
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
#[command(next_help_heading = "Adversarial (--method adversarial)")]
pub struct AdversarialArgs {
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Source words per epoch (MUSE: 1000000; about 10 min an epoch on 2 CPU cores).
    #[arg(long, default_value_t = 1_000_000)]
    pub epoch_size: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: i64,
    #[arg(long, default_value_t = 5)]
    pub dis_steps: usize,
    #[arg(long, default_value_t = 2)]
    pub dis_layers: usize,
    #[arg(long, default_value_t = 2048)]
    pub dis_hidden: i64,
    #[arg(long, default_value_t = 0.1)]
    pub dis_input_dropout: f64,
    #[arg(long, default_value_t = 0.1)]
    pub dis_smooth: f64,
    /// Draw discriminator words from this many most frequent of each side.
    #[arg(long, default_value_t = 75_000)]
    pub dis_most_frequent: i64,
    #[arg(long, default_value_t = 0.1)]
    pub dis_lr: f64,
    #[arg(long, default_value_t = 0.1)]
    pub map_lr: f64,
    #[arg(long, default_value_t = 0.98)]
    pub lr_decay: f64,
    #[arg(long, default_value_t = 0.5)]
    pub lr_shrink: f64,
    /// Orthogonalisation β: W ← (1+β)W − β(WWᵀ)W after each map step.
    #[arg(long, default_value_t = 0.001)]
    pub map_beta: f64,
    /// Most frequent source words in the model-selection criterion.
    #[arg(long, default_value_t = 10_000)]
    pub criterion_words: usize,
    /// Procrustes refinement iterations after the adversarial phase.
    #[arg(long, default_value_t = 5)]
    pub refinement: usize,
    /// Number format of the discriminator's products.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    pub precision: PrecisionArg,
}

impl AdversarialArgs {
    pub fn config(&self, device: Device) -> AdversarialConfig {
        AdversarialConfig {
            epochs: self.epochs,
            epoch_size: self.epoch_size,
            batch_size: self.batch_size,
            dis_steps: self.dis_steps,
            dis_layers: self.dis_layers,
            dis_hidden: self.dis_hidden,
            dis_input_dropout: self.dis_input_dropout,
            dis_smooth: self.dis_smooth,
            dis_most_frequent: self.dis_most_frequent,
            dis_lr: self.dis_lr,
            map_lr: self.map_lr,
            lr_decay: self.lr_decay,
            lr_shrink: self.lr_shrink,
            map_beta: self.map_beta,
            criterion_words: self.criterion_words,
            refinement: self.refinement,
            precision: match self.precision {
                PrecisionArg::Auto => Precision::fastest(device),
                PrecisionArg::F32 => Precision::F32,
                PrecisionArg::Bf16 => Precision::Bf16,
            },
            ..Default::default()
        }
    }
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct UnsupervisedArgs {
    #[command(flatten)]
    pub emb: EmbArgs,
    #[arg(long, value_enum, default_value_t = UnsupervisedMethod::SelfLearning)]
    pub method: UnsupervisedMethod,
    /// Dictionary to evaluate on (MUSE text or dictd); never used for fitting.
    #[arg(long)]
    pub dict_test: Option<PathBuf>,
    /// Read --dict-test the other way round.
    #[arg(long)]
    pub invert_dict: bool,
    /// Evaluate on these source-frequency ranks of --dict-test only (e.g. 5000:6500).
    #[arg(long, value_parser = parse_range)]
    pub test_ranks: Option<(usize, usize)>,
    #[command(flatten)]
    pub prep: PrepArgs,
    /// Self-learning: where it starts.
    #[arg(long, value_enum, default_value_t = Init::Structure, help_heading = "Self-learning (--method self-learning)")]
    pub init: Init,
    /// Words of each side described by the unsupervised initialisation.
    #[arg(
        long,
        default_value_t = 4000,
        help_heading = "Self-learning (--method self-learning)"
    )]
    pub init_vocab: i64,
    /// Words of each side taking part in dictionary induction.
    #[arg(
        long,
        default_value_t = 20_000,
        help_heading = "Self-learning (--method self-learning)"
    )]
    pub cutoff: i64,
    /// Initial keep probability of stochastic dictionary induction.
    #[arg(
        long,
        default_value_t = 0.1,
        help_heading = "Self-learning (--method self-learning)"
    )]
    pub keep_prob: f64,
    /// Iterations without improvement before the keep probability doubles.
    #[arg(
        long,
        default_value_t = 50,
        help_heading = "Self-learning (--method self-learning)"
    )]
    pub patience: usize,
    /// Stop after this many iterations at most.
    #[arg(
        long,
        default_value_t = 2000,
        help_heading = "Self-learning (--method self-learning)"
    )]
    pub max_iterations: usize,
    #[command(flatten)]
    pub adv: AdversarialArgs,
    /// Continue the adversarial run in this folder from its last checkpoint
    /// (same options; --epochs may be raised).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Run folder (default runs/align-unsupervised-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Self-learning outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelfLearningReport {
    pub init: Init,
    pub seed_pairs: Option<usize>,
    pub iterations: usize,
    pub final_objective: f64,
    pub dictionary_pairs: usize,
}

/// Adversarial outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdversarialReport {
    pub precision: Precision,
    /// The best criterion (mean cosine of CSLS translations).
    pub criterion: f64,
    pub epochs: Vec<EpochLog>,
    pub refinement: Vec<RefineLog>,
    pub adversarial_seconds: f64,
    pub refinement_seconds: f64,
}

/// report.json of an unsupervised run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnsupervisedReport {
    pub method: UnsupervisedMethod,
    pub self_learning: Option<SelfLearningReport>,
    pub adversarial: Option<AdversarialReport>,
    pub test: Option<embedlab_data::dictionary::ResolveStats>,
    pub precision: Vec<PrecisionAtK>,
    /// Whole run, loading excluded.
    pub seconds: f64,
}

pub fn run_unsupervised(args: &UnsupervisedArgs, device: Device) -> Result<UnsupervisedReport> {
    let (src, tgt) = args.emb.load()?;
    let t0 = Instant::now();
    let mut run = match &args.resume {
        Some(dir) => RunDir::reopen(dir)?,
        None => RunDir::create("align-unsupervised", args.out.as_deref())?,
    };
    run.write_json("config.json", args)?;
    let (ps, pt) = args.prep.sides("renorm,center,renorm")?;
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
            "unsupervised mapping needs equal dimensions: source {} and target {} (use --src-pca/--tgt-pca)",
            x.size()[1],
            z.size()[1]
        );
    }
    let (map, self_learning, adversarial) = match args.method {
        UnsupervisedMethod::SelfLearning => {
            if args.resume.is_some() {
                bail!("--resume applies to --method adversarial only");
            }
            let (m, r) = run_self_learning(args, &src, &tgt, &x, &z, &mut run)?;
            (m, Some(r), None)
        }
        UnsupervisedMethod::Adversarial => {
            let (m, r) = run_adversarial(args, &x, &z, &mut run, device)?;
            (m, None, Some(r))
        }
    };
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
    let report = UnsupervisedReport {
        method: args.method,
        self_learning,
        adversarial,
        test,
        precision,
        seconds: t0.elapsed().as_secs_f64(),
    };
    run.write_json("report.json", &report)?;
    eprintln!("run folder: {}", run.path.display());
    Ok(report)
}

fn run_self_learning(
    args: &UnsupervisedArgs,
    src: &Embeddings,
    tgt: &Embeddings,
    x: &Tensor,
    z: &Tensor,
    run: &mut RunDir,
) -> Result<(embedlab_align::maps::Mapping, SelfLearningReport)> {
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
        max_iterations: args.max_iterations,
        ..Default::default()
    };
    let pb = spinner("self-learning");
    let mut steps: Vec<Step> = vec![];
    let mut log_error = None;
    let (map, dict) = self_learn(x, z, seed.as_deref(), &cfg, |s| {
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
    let report = SelfLearningReport {
        init: args.init,
        seed_pairs: seed.map(|s| s.len()),
        iterations: steps.len(),
        final_objective: steps.last().map(|s| s.objective).unwrap_or(f64::NAN),
        dictionary_pairs: dict.len(),
    };
    Ok((map, report))
}

const CHECKPOINT: &str = "checkpoint.safetensors";
const CHECKPOINT_STATE: &str = "checkpoint.json";

/// What a checkpoint's JSON holds: the configuration it was made with and the state.
#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    config: AdversarialConfig,
    state: AdversarialState,
}

fn save_checkpoint(run: &RunDir, cfg: &AdversarialConfig, m: &Adversarial) -> Result<()> {
    embedlab_data::atomic::write_safetensors_atomic(&run.file(CHECKPOINT), m.tensors())?;
    // The state after its tensors: a crash in between leaves an older state
    // with newer tensors, which resumes one epoch early rather than late.
    run.write_json(
        CHECKPOINT_STATE,
        &CheckpointMeta {
            config: cfg.clone(),
            state: m.state.clone(),
        },
    )?;
    save_map(
        &run.file("map.safetensors"),
        &embedlab_align::maps::Mapping {
            src: m.best_w.shallow_clone(),
            tgt: None,
        },
    )
}

fn load_checkpoint(
    dir: &Path,
    cfg: &AdversarialConfig,
    dim: i64,
    device: Device,
) -> Result<Adversarial> {
    let meta_path = dir.join(CHECKPOINT_STATE);
    let text = std::fs::read_to_string(&meta_path)
        .with_context(|| format!("--resume: cannot read {}", meta_path.display()))?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a checkpoint state", meta_path.display()))?;
    let mut saved = serde_json::to_value(&meta.config)?;
    let mut now = serde_json::to_value(cfg)?;
    for v in [&mut saved, &mut now] {
        v.as_object_mut().map(|o| o.remove("epochs"));
    }
    if saved != now {
        bail!(
            "{}: the run was made with other adversarial options than these (only --epochs may change on --resume)",
            meta_path.display()
        );
    }
    let path = dir.join(CHECKPOINT);
    let tensors = Tensor::read_safetensors(&path)
        .with_context(|| format!("{}: not a readable safetensors file", path.display()))?;
    let mut state = meta.state;
    if state.stopped && cfg.epochs > state.epochs_done {
        state.stopped = state.map_lr < cfg.min_lr;
    }
    Adversarial::from_tensors(tensors, state, cfg, dim, device)
        .with_context(|| format!("{}: does not fit this run", path.display()))
}

fn run_adversarial(
    args: &UnsupervisedArgs,
    x: &Tensor,
    z: &Tensor,
    run: &mut RunDir,
    device: Device,
) -> Result<(embedlab_align::maps::Mapping, AdversarialReport)> {
    let cfg = args.adv.config(device);
    let dim = x.size()[1];
    let mut model = match &args.resume {
        Some(dir) => {
            let m = load_checkpoint(dir, &cfg, dim, device)?;
            eprintln!(
                "resuming after epoch {} of {}",
                m.state.epochs_done, cfg.epochs
            );
            m
        }
        None => Adversarial::new(dim, &cfg, device),
    };
    eprintln!(
        "adversarial: {} epochs of {} words, discriminator {}×{} ({:?}), refinement {}",
        cfg.epochs, cfg.epoch_size, cfg.dis_layers, cfg.dis_hidden, cfg.precision, cfg.refinement
    );
    let pb = bar(cfg.epoch_size as u64, "");
    let mut failure: Option<anyhow::Error> = None;
    let result = adversarial(x, z, &mut model, &cfg, |p| {
        let r: Result<()> = (|| {
            match p {
                Progress::Batch {
                    epoch,
                    samples,
                    dis_loss,
                } => {
                    pb.set_message(format!("epoch {epoch} dis loss {dis_loss:.4}"));
                    pb.set_position(samples as u64);
                }
                Progress::Epoch(m) => {
                    let e = m.state.epochs.last().expect("an epoch was logged");
                    pb.println(format!(
                        "epoch {}: dis loss {:.4}, P(src|src) {:.3}, P(src|tgt) {:.3}, criterion {:.5}{}, lr {:.4}, {:.1} s",
                        e.epoch, e.dis_loss, e.dis_src_prob, e.dis_tgt_prob, e.criterion,
                        if e.best { " (best)" } else { "" }, e.map_lr, e.seconds
                    ));
                    pb.reset();
                    run.log(&serde_json::json!({"event": "epoch", "epoch": e}))?;
                    save_checkpoint(run, &cfg, m)?;
                }
                Progress::Refine(r) => {
                    pb.println(format!(
                        "refinement {}: {} pairs, criterion {:.5}{}",
                        r.iteration,
                        r.dictionary_pairs,
                        r.criterion,
                        if r.best { " (best)" } else { "" }
                    ));
                    run.log(&serde_json::json!({"event": "refinement", "refinement": r}))?;
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            failure.get_or_insert(e);
        }
    });
    pb.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    let r = result?;
    let report = AdversarialReport {
        precision: cfg.precision,
        criterion: r.criterion,
        epochs: r.epochs,
        refinement: r.refinement,
        adversarial_seconds: r.adversarial_seconds,
        refinement_seconds: r.refinement_seconds,
    };
    Ok((r.map, report))
}

fn evaluate(
    args: &UnsupervisedArgs,
    path: &Path,
    src: &Embeddings,
    tgt: &Embeddings,
    xs: &Tensor,
    zs: &Tensor,
    run: &mut RunDir,
) -> Result<(
    Vec<PrecisionAtK>,
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
    super::align::write_examples(run, &mut space, &pairs, src, tgt, 20, 5)?;
    Ok((out, Some(r.stats)))
}

pub fn unsupervised(args: &UnsupervisedArgs, device: Device) -> Result<()> {
    let r = run_unsupervised(args, device)?;
    if !r.precision.is_empty() {
        let name = match args.method {
            UnsupervisedMethod::SelfLearning => format!("self-learning ({:?} init)", args.init),
            UnsupervisedMethod::Adversarial => "adversarial + refinement".to_string(),
        };
        print_precision(&name.to_lowercase(), &r.precision);
    }
    Ok(())
}
