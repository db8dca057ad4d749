//! `embedlab align unsupervised`: word translation without a seed dictionary,
//! by VecMap-style self-learning (from the similarity-structure
//! initialisation, or from identical strings) or by MUSE's adversarial
//! mapping followed by Procrustes refinement.
use super::supervised::{
    file_name, read_dictionary, reuse, save_map, word_report, write_examples, EmbArgs, PrepArgs,
    RunPrep, EVAL_KS, EVAL_RETRIEVALS,
};
use crate::progress::{parse_range, spinner};
use crate::{fail, Result};
use clap::{Args, ValueEnum};
use embedlab_align::adversarial::{
    adversarial, AdversarialConfig, AdversarialResult, Event, Precision,
};
use embedlab_align::selflearn::{identical_strings, self_learn, SelfLearnConfig, Step};
use embedlab_align::Space;
use embedlab_data::Embeddings;
use embedlab_metrics::{precision_at_k, Precision as PrecisionAtK};
use embedlab_train::{Better, RunDir};
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

pub use crate::opts::PrecisionArg;

/// The default of `--search-precision` (and of run folders made before it).
pub use crate::opts::f32_precision as exact_search;

/// Adversarial options (defaults: MUSE's `unsupervised.py`).
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
#[command(next_help_heading = "Adversarial (--method adversarial)")]
pub struct AdversarialArgs {
    #[arg(long, default_value_t = AdversarialConfig::default().epochs, value_parser = crate::opts::count(1, 1_000_000))]
    pub epochs: usize,
    /// Source words per epoch (MUSE: 1000000; about 10 min an epoch on 2 CPU cores).
    #[arg(long, default_value_t = AdversarialConfig::default().epoch_size, value_parser = crate::opts::count(1, 1_000_000_000))]
    pub epoch_size: usize,
    #[arg(long, default_value_t = AdversarialConfig::default().batch_size, value_parser = crate::opts::int(1, 1 << 20))]
    pub batch_size: i64,
    #[arg(long, default_value_t = AdversarialConfig::default().dis_steps, value_parser = crate::opts::count(1, 100))]
    pub dis_steps: usize,
    #[arg(long, default_value_t = AdversarialConfig::default().dis_layers, value_parser = crate::opts::count(0, 16))]
    pub dis_layers: usize,
    #[arg(long, default_value_t = AdversarialConfig::default().dis_hidden, value_parser = crate::opts::int(1, 65_536))]
    pub dis_hidden: i64,
    #[arg(long, default_value_t = AdversarialConfig::default().dis_input_dropout, value_parser = crate::opts::below_one)]
    pub dis_input_dropout: f64,
    #[arg(long, default_value_t = AdversarialConfig::default().dis_smooth, value_parser = crate::opts::below_half)]
    pub dis_smooth: f64,
    /// Draw discriminator words from this many most frequent of each side.
    #[arg(long, default_value_t = AdversarialConfig::default().dis_most_frequent, value_parser = crate::opts::int(1, 100_000_000))]
    pub dis_most_frequent: i64,
    #[arg(long, default_value_t = AdversarialConfig::default().dis_lr, value_parser = crate::opts::rate)]
    pub dis_lr: f64,
    #[arg(long, default_value_t = AdversarialConfig::default().map_lr, value_parser = crate::opts::rate)]
    pub map_lr: f64,
    #[arg(long, default_value_t = AdversarialConfig::default().lr_decay, value_parser = crate::opts::fraction)]
    pub lr_decay: f64,
    #[arg(long, default_value_t = AdversarialConfig::default().lr_shrink, value_parser = crate::opts::fraction)]
    pub lr_shrink: f64,
    /// Orthogonalisation β: W ← (1+β)W − β(WWᵀ)W after each map step.
    #[arg(long, default_value_t = AdversarialConfig::default().map_beta, value_parser = crate::opts::below_half)]
    pub map_beta: f64,
    /// Most frequent source words in the model-selection criterion.
    #[arg(long, default_value_t = AdversarialConfig::default().criterion_words, value_parser = crate::opts::count(1, 100_000_000))]
    pub criterion_words: usize,
    /// Procrustes refinement iterations after the adversarial phase.
    #[arg(long, default_value_t = AdversarialConfig::default().refinement, value_parser = crate::opts::count(0, 1000))]
    pub refinement: usize,
    /// Independent restarts (adversarial phase + refinement, restart k
    /// seeded --seed + 1000·k, each in the sub-folder restart-<k>); the map
    /// kept is the one of the highest refined criterion — chosen without
    /// any dictionary. Costs that many runs' time.
    #[arg(long, default_value_t = AdversarialConfig::default().restarts, value_parser = crate::opts::count(1, 1000))]
    #[serde(default = "one")]
    pub restarts: usize,
    /// Number format of the large matrix products: the discriminator's
    /// (adversarial) and the similarity scores' (self-learning; the scores
    /// themselves are compared in f32).
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    pub precision: PrecisionArg,
}

impl Default for AdversarialArgs {
    fn default() -> Self {
        let c = AdversarialConfig::default();
        Self {
            epochs: c.epochs,
            epoch_size: c.epoch_size,
            batch_size: c.batch_size,
            dis_steps: c.dis_steps,
            dis_layers: c.dis_layers,
            dis_hidden: c.dis_hidden,
            dis_input_dropout: c.dis_input_dropout,
            dis_smooth: c.dis_smooth,
            dis_most_frequent: c.dis_most_frequent,
            dis_lr: c.dis_lr,
            map_lr: c.map_lr,
            lr_decay: c.lr_decay,
            lr_shrink: c.lr_shrink,
            map_beta: c.map_beta,
            criterion_words: c.criterion_words,
            refinement: c.refinement,
            restarts: c.restarts,
            precision: PrecisionArg::Auto,
        }
    }
}

impl AdversarialArgs {
    /// `--precision` resolved for `device`.
    pub fn precision(&self, device: Device) -> Precision {
        self.precision.resolve(device)
    }

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
            precision: self.precision(device),
            restarts: self.restarts,
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
    /// Number format of the evaluation's nearest-neighbour and CSLS search:
    /// f32, or bf16 candidates (k + 32) re-ranked in f32 (2.2x faster at
    /// 200k words with the same P@1: docs/word-translation.md); auto: bf16
    /// where the CPU or GPU has it.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    #[serde(default = "exact_search")]
    pub search_precision: PrecisionArg,
    /// Read --dict-test the other way round.
    #[arg(long)]
    pub invert_dict: bool,
    /// Dictionary format (muse, dictd); default: recognised by content.
    #[arg(long)]
    #[serde(default)]
    pub dict_format: Option<embedlab_data::DictFormat>,
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
        value_parser = crate::opts::int(2, 100_000),
        help_heading = "Self-learning (--method self-learning)"
    )]
    pub init_vocab: i64,
    /// Words of each side taking part in dictionary induction.
    #[arg(
        long,
        default_value_t = 20_000,
        value_parser = crate::opts::int(2, 100_000_000),
        help_heading = "Self-learning (--method self-learning)"
    )]
    pub cutoff: i64,
    /// Initial keep probability of stochastic dictionary induction.
    #[arg(
        long,
        default_value_t = 0.1,
        value_parser = crate::opts::fraction,
        help_heading = "Self-learning (--method self-learning)"
    )]
    pub keep_prob: f64,
    /// Iterations without improvement before the keep probability doubles
    /// (VecMap: 50, with --threshold 1e-6: about 7 times the iterations for
    /// the same accuracy).
    #[arg(
        long,
        default_value_t = SelfLearnConfig::default().patience,
        value_parser = crate::opts::count(1, 1_000_000),
        help_heading = "Self-learning (--method self-learning)"
    )]
    pub patience: usize,
    /// Objective gain (mean best cosine) that counts as an improvement and
    /// resets --patience; 0: any gain, even none.
    #[arg(
        long,
        default_value_t = SelfLearnConfig::default().threshold,
        value_parser = crate::opts::below_one,
        help_heading = "Self-learning (--method self-learning)"
    )]
    #[serde(default = "threshold_before_the_option")]
    pub threshold: f64,
    /// Stop after this many iterations at most.
    #[arg(
        long,
        default_value_t = 2000,
        value_parser = crate::opts::count(1, 1_000_000),
        help_heading = "Self-learning (--method self-learning)"
    )]
    pub max_iterations: usize,
    #[command(flatten)]
    pub adv: AdversarialArgs,
    #[command(flatten)]
    #[serde(default)]
    pub classes: super::which::WordClassArgs,
    /// Continue the adversarial run in this folder from its last checkpoint
    /// (same options; --epochs may be raised).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Run folder (default runs/align-unsupervised-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Empty --out first if it already holds something.
    #[arg(long)]
    #[serde(default)]
    pub overwrite: bool,
    /// The seed the run was made with (the global --seed; a resumed run
    /// keeps its own).
    #[arg(skip)]
    #[serde(default)]
    pub seed: Option<i64>,
}

fn one() -> usize {
    1
}

/// What runs made before `--threshold` existed used (VecMap's).
fn threshold_before_the_option() -> f64 {
    1e-6
}

/// The kind of run `align unsupervised` writes.
pub const KIND: &str = "align-unsupervised";

impl UnsupervisedArgs {
    /// Self-learning with every default, from `src` to `tgt`.
    pub fn new(src: PathBuf, tgt: PathBuf) -> Self {
        Self {
            emb: EmbArgs::new(src, tgt),
            method: UnsupervisedMethod::SelfLearning,
            dict_test: None,
            search_precision: exact_search(),
            invert_dict: false,
            dict_format: None,
            test_ranks: None,
            prep: PrepArgs::default(),
            init: Init::Structure,
            init_vocab: 4000,
            cutoff: 20_000,
            keep_prob: 0.1,
            patience: SelfLearnConfig::default().patience,
            threshold: SelfLearnConfig::default().threshold,
            max_iterations: 2000,
            adv: AdversarialArgs::default(),
            classes: Default::default(),
            resume: None,
            out: None,
            overwrite: false,
            seed: None,
        }
    }
}

/// Self-learning outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelfLearningReport {
    pub init: Init,
    pub seed_pairs: Option<usize>,
    pub iterations: usize,
    pub final_objective: f64,
    pub dictionary_pairs: usize,
    /// Seconds from the initialisation to the final map.
    #[serde(default)]
    pub seconds: f64,
    /// Number format of the similarity products.
    #[serde(default)]
    pub precision: Option<Precision>,
}

/// What an unsupervised run reports (the details of its report.json).
#[derive(Debug, Serialize, Deserialize)]
pub struct UnsupervisedReport {
    pub method: UnsupervisedMethod,
    pub self_learning: Option<SelfLearningReport>,
    pub adversarial: Option<AdversarialResult>,
    pub test: Option<embedlab_data::dictionary::ResolveStats>,
    pub precision: Vec<PrecisionAtK>,
    /// Whole run, loading excluded.
    pub seconds: f64,
}

pub fn run_unsupervised(
    args: &UnsupervisedArgs,
    seed: i64,
    device: Device,
) -> Result<UnsupervisedReport> {
    if args.resume.is_some() && args.method != UnsupervisedMethod::Adversarial {
        fail!("--resume applies to --method adversarial only");
    }
    let adv_cfg = args.adv.config(device);
    adv_cfg.check()?;
    let seed = args.seed.unwrap_or(seed);
    let absolute = UnsupervisedArgs {
        emb: args.emb.absolute(),
        dict_test: args
            .dict_test
            .as_deref()
            .map(embedlab_data::fingerprint::absolute),
        seed: Some(seed),
        ..args.clone()
    };
    let args = &absolute;
    if let Some(dir) = &args.resume {
        // The vectors must be those the checkpoint was trained on (a run
        // killed before it wrote prep.json has nothing to compare yet).
        let p = dir.join("prep.json");
        if p.is_file() {
            RunPrep::read(&p)?.check_inputs()?;
        }
        // One restart trains in the run folder, several in sub-folders.
        let several = dir
            .join(embedlab_align::adversarial::restart_folder(0))
            .is_dir();
        let one = dir.join(embedlab_train::checkpoint::CHECKPOINT).is_file();
        if (several && args.adv.restarts == 1) || (one && args.adv.restarts > 1) {
            fail!(
                "{}: the run was made with {} restarts; resume it with {}",
                dir.display(),
                if several {
                    "several"
                } else {
                    "one restart, not several"
                },
                if several {
                    "--restarts 2 or more"
                } else {
                    "--restarts 1"
                }
            );
        }
    }
    let (src, tgt) = args.emb.load()?;
    let t0 = Instant::now();
    let run = match &args.resume {
        Some(dir) => {
            let r = RunDir::resume(dir, KIND)?;
            r.record_env()?;
            // What the run is continued with (--epochs, --restarts) is what
            // the next resume starts from.
            r.write_json(embedlab_train::run::CONFIG, args)?;
            r
        }
        None => {
            let mut inputs = args.emb.inputs();
            inputs.extend(args.dict_test.as_deref());
            RunDir::create_with_inputs(
                KIND,
                args.out.as_deref(),
                reuse(args.overwrite),
                args,
                &inputs,
            )?
        }
    };
    crate::progress::show_notes(&run);
    let (ps, pt) = args.prep.sides("renorm,center,renorm")?;
    RunPrep::write(&run, &args.emb, &ps, &pt)?;
    let (x, _) = ps.apply(&src, device)?;
    let (z, _) = pt.apply(&tgt, device)?;
    if x.size()[1] != z.size()[1] {
        fail!(
            "unsupervised mapping needs equal dimensions: source {} and target {} (use --src-pca/--tgt-pca)",
            x.size()[1],
            z.size()[1]
        );
    }
    let (map, self_learning, adversarial) = match args.method {
        UnsupervisedMethod::SelfLearning => {
            let (m, r) = run_self_learning(args, &src, &tgt, &x, &z, &run)?;
            (m, Some(r), None)
        }
        UnsupervisedMethod::Adversarial => {
            let mut r = run_adversarial(&adv_cfg, seed, &x, &z, &run, args.resume.is_some())?;
            (r.map.take().expect("a map"), None, Some(r))
        }
    };
    save_map(&run.file("map.safetensors"), &map)?;
    // One mapped space for the evaluation and the hubness (which share its
    // CSLS terms).
    let mut space = Space::new(&map.map_src(&x), &map.map_tgt(&z))?;
    space.precision = args.search_precision.resolve(x.device());
    let (precision, test, examples, which) = match &args.dict_test {
        None => (vec![], None, vec![], vec![]),
        Some(p) => evaluate(args, p, &src, &tgt, &mut space, &run)?,
    };
    let hubs = super::supervised::hubness_rows(&run, &mut space, &tgt)?;
    let report = UnsupervisedReport {
        method: args.method,
        self_learning,
        adversarial,
        test,
        precision,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let how = match args.method {
        UnsupervisedMethod::SelfLearning => format!("self-learning ({:?} start)", args.init),
        UnsupervisedMethod::Adversarial => "adversarial + refinement".to_string(),
    };
    let mut r = word_report(
        KIND,
        format!(
            "{} without a dictionary: {} → {}",
            how.to_lowercase(),
            file_name(&args.emb.src),
            file_name(&args.emb.tgt)
        ),
        &report.precision,
        &examples,
        &hubs,
        serde_json::to_value(&report)?,
    );
    super::which::add_to_report(&mut r, &which, &run)?;
    if let Some(a) = &report.adversarial {
        r.metric("criterion", a.criterion, "", Better::Higher)
            .with_note("MUSE's mean cosine of CSLS translations of the top source words");
        r.metric(
            "adversarial time",
            a.adversarial_seconds,
            "s",
            Better::Lower,
        );
        if a.restarts.is_empty() {
            r.curve("valid.criterion", "mean-cosine criterion", "epoch", "");
            r.curve("train.dis.loss", "discriminator loss", "epoch", "");
        } else {
            r.metric("restarts", a.restarts.len() as f64, "", Better::Neither);
            r.tables.push(restart_table(a));
        }
    }
    if let Some(s) = &report.self_learning {
        r.metric("iterations", s.iterations as f64, "", Better::Neither);
        r.metric("self-learning time", s.seconds, "s", Better::Lower);
        r.curve("objective", "self-learning objective", "iteration", "");
        r.curve(
            "dictionary_pairs",
            "induced dictionary pairs",
            "iteration",
            "",
        );
    }
    r.metric("time", report.seconds, "s", Better::Lower);
    run.write_report(&r)?;
    eprintln!("run folder: {}", run.path.display());
    Ok(report)
}

fn run_self_learning(
    args: &UnsupervisedArgs,
    src: &Embeddings,
    tgt: &Embeddings,
    x: &Tensor,
    z: &Tensor,
    run: &RunDir,
) -> Result<(embedlab_align::maps::Mapping, SelfLearningReport)> {
    let seed = match args.init {
        Init::Structure => None,
        Init::Identical => {
            let s = identical_strings(src.words(), tgt.words());
            eprintln!("identical strings: {} seed pairs", s.len());
            if s.is_empty() {
                fail!("no word is spelled the same in both vocabularies: use --init structure");
            }
            Some(s)
        }
    };
    let cfg = SelfLearnConfig {
        init_vocab: args.init_vocab,
        cutoff: args.cutoff,
        keep_prob: args.keep_prob,
        patience: args.patience,
        threshold: args.threshold,
        max_iterations: args.max_iterations,
        precision: args.adv.precision(x.device()),
        ..Default::default()
    };
    let pb = spinner("self-learning");
    let started = Instant::now();
    let mut steps: Vec<Step> = vec![];
    let mut log_error = None;
    let (map, dict) = self_learn(x, z, seed.as_deref(), &cfg, |s| {
        pb.set_message(format!(
            "self-learning: iteration {} keep {:.2} objective {:.4} pairs {}",
            s.iteration, s.keep_prob, s.objective, s.dictionary_pairs
        ));
        // Logged as it happens, so a long run can be followed in metrics.jsonl.
        let line = serde_json::json!({"event": "iteration", "iteration": s.iteration, "keep_prob": s.keep_prob,
            "objective": s.objective, "dictionary_pairs": s.dictionary_pairs,
            "seconds": started.elapsed().as_secs_f64()});
        if let Err(e) = run.log(&line) {
            log_error.get_or_insert(e);
        }
        steps.push(s.clone());
    })?;
    pb.finish_and_clear();
    if let Some(e) = log_error {
        return Err(e.into());
    }
    let report = SelfLearningReport {
        init: args.init,
        seed_pairs: seed.map(|s| s.len()),
        iterations: steps.len(),
        final_objective: steps.last().map(|s| s.objective).unwrap_or(f64::NAN),
        dictionary_pairs: dict.len(),
        seconds: started.elapsed().as_secs_f64(),
        precision: Some(cfg.precision),
    };
    Ok((map, report))
}

fn run_adversarial(
    cfg: &AdversarialConfig,
    seed: i64,
    x: &Tensor,
    z: &Tensor,
    run: &RunDir,
    resume: bool,
) -> Result<AdversarialResult> {
    eprintln!(
        "adversarial: {} epochs of {} words, discriminator {}×{} ({:?}), refinement {}{}",
        cfg.epochs,
        cfg.epoch_size,
        cfg.dis_layers,
        cfg.dis_hidden,
        cfg.precision,
        cfg.refinement,
        if cfg.restarts > 1 {
            format!(", {} restarts", cfg.restarts)
        } else {
            String::new()
        }
    );
    if cfg.restarts > 1 {
        // Each restart's epochs are logged in its own folder; the run's log
        // holds the refinements and restarts of this invocation.
        run.rewrite_metrics::<serde_json::Value>(&[])?;
    }
    let mut refine_error = None;
    let mut restart = 0;
    let r = adversarial(
        x,
        z,
        cfg,
        seed,
        run,
        resume,
        &mut |ev| {
            match ev {
            Event::Epoch(e) => eprintln!(
                "epoch {}: dis loss {:.4}, P(src|src) {:.3}, P(src|tgt) {:.3}, criterion {:.5}{}, lr {:.4}, {:.1} s",
                e.epoch, e.dis_loss, e.dis_src_prob, e.dis_tgt_prob, e.criterion,
                if e.best { " (best)" } else { "" }, e.map_lr, e.seconds
            ),
            Event::Refine(r) => {
                eprintln!(
                "refinement {}: {} pairs, criterion {:.5}{}",
                r.iteration,
                r.dictionary_pairs,
                r.criterion,
                if r.best { " (best)" } else { "" }
            );
                if let Err(e) = run.log(&serde_json::json!({"event": "refinement", "restart": restart, "refinement": r})) {
                    refine_error.get_or_insert(e);
                }
            }
            Event::Restart(k, n, seed) => {
                restart = k;
                eprintln!("restart {k} of {n} (seed {seed}, in {}/)", embedlab_align::adversarial::restart_folder(k));
            }
            Event::Restarted(l) => {
                eprintln!(
                    "restart {}: criterion {:.5} after the adversarial phase, {:.5} after refinement",
                    l.restart, l.adversarial_criterion, l.criterion
                );
                if let Err(e) = run.log(&serde_json::json!({"event": "restart", "restart": l})) {
                    refine_error.get_or_insert(e);
                }
            }
        }
        },
        &mut crate::progress::Terminal::new(&mut |_| {}),
    )?;
    if let Some(e) = refine_error {
        return Err(e.into());
    }
    if let Some(why) = &r.stopped {
        eprintln!("the adversarial phase stopped early: {why}");
    }
    if !r.restarts.is_empty() {
        eprintln!(
            "kept restart {} (criterion {:.5})",
            r.kept_restart, r.criterion
        );
    }
    Ok(r)
}

/// The restarts of an adversarial run, the kept one marked.
fn restart_table(a: &AdversarialResult) -> embedlab_train::Table {
    let rows: Vec<Vec<String>> = a
        .restarts
        .iter()
        .map(|l| {
            vec![
                l.restart.to_string(),
                l.seed.to_string(),
                format!("{:.4}", l.adversarial_criterion),
                format!("{:.4}", l.criterion),
                format!("{:.0}", l.adversarial_seconds + l.refinement_seconds),
                if l.restart == a.kept_restart {
                    "kept"
                } else {
                    ""
                }
                .to_string(),
            ]
        })
        .collect();
    embedlab_train::Table {
        title: "Adversarial restarts: the map kept has the highest refined criterion".into(),
        columns: [
            "restart",
            "seed",
            "criterion after the adversarial phase",
            "criterion after refinement",
            "seconds",
            "",
        ]
        .map(String::from)
        .to_vec(),
        highlight: vec![(a.kept_restart, 3)],
        rows,
        open: true,
    }
}

/// Precision, the test dictionary's coverage, examples and the which-words
/// breakdowns of one evaluation.
type Evaluation = (
    Vec<PrecisionAtK>,
    Option<embedlab_data::dictionary::ResolveStats>,
    Vec<super::supervised::Example>,
    Vec<super::which::WhichWords>,
);

fn evaluate(
    args: &UnsupervisedArgs,
    path: &Path,
    src: &Embeddings,
    tgt: &Embeddings,
    space: &mut Space,
    run: &RunDir,
) -> Result<Evaluation> {
    let r = read_dictionary(path, args.dict_format, args.invert_dict, args.emb.lowercase)?
        .resolve(src, tgt);
    let pairs = match args.test_ranks {
        Some(rk) => r.in_ranks(rk),
        None => r.pairs.clone(),
    };
    if pairs.is_empty() {
        fail!(
            "{}: no test pair has both words in the vocabularies",
            path.display()
        );
    }
    let mut out = vec![];
    for m in EVAL_RETRIEVALS {
        let p = precision_at_k(space, &pairs, m, &EVAL_KS)?;
        run.log(&serde_json::json!({"event": "precision", "retrieval": p.retrieval, "at": p.at, "queries": p.queries}))?;
        out.push(p);
    }
    let examples = write_examples(run, space, &pairs, src, tgt, 20, 5)?;
    let tags = super::which::tag_source(&args.classes, Some(path), args.invert_dict);
    let which = super::which::which_words(run, &args.classes, tags.as_deref(), space, &pairs, src)?;
    Ok((out, Some(r.stats), examples, which))
}
