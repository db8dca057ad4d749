//! Supervised word translation: fit, refine, evaluate and save a map
//! (`embedlab align supervised`), and what every word-translation run shares:
//! where the vectors come from, how both sides are prepared, the
//! dictionaries, translation examples, the saved map and its report.
use crate::progress::{bar, parse_range, spinner};
use crate::{fail, Context, Result};
use clap::Args;
use embedlab_align::induce::{Build, InduceConfig};
use embedlab_align::maps::Mapping;
use embedlab_align::supervised::{fit_supervised, FitConfig, Iteration, Prep, Select};
use embedlab_align::{MapMethod, Normalization, Retrieval, Space};
use embedlab_data::fingerprint::{fingerprint, Fingerprint};
use embedlab_data::{DictFormat, Dictionary, EmbeddingFormat, Embeddings, LoadOptions};
use embedlab_metrics::{hubness, precision_at_k, Hubness, Precision};
use embedlab_train::{Better, Report, Table};
use embedlab_train::{Reuse, RunDir};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};

/// Where one side's vectors come from.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct EmbArgs {
    /// Source embeddings (.vec, GloVe .txt, word2vec .bin, spaCy vocab/
    /// folder, .npy); required (a resumed run reads its own).
    #[arg(long, default_value = "", hide_default_value = true, value_parser = any_path)]
    pub src: PathBuf,
    /// Target embeddings (same formats); required.
    #[arg(long, default_value = "", hide_default_value = true, value_parser = any_path)]
    pub tgt: PathBuf,
    /// Force the source format (vec, glove, bin, spacy, floret, npy).
    #[arg(long)]
    pub src_format: Option<EmbeddingFormat>,
    #[arg(long)]
    pub tgt_format: Option<EmbeddingFormat>,
    /// Word index of a source .npy (default: the .parquet beside it), or the
    /// vocabulary of a floret table, one word a line, most frequent first
    /// (default: its lookups.bin frequencies).
    #[arg(long)]
    pub src_words: Option<PathBuf>,
    #[arg(long)]
    pub tgt_words: Option<PathBuf>,
    /// Keep the N most frequent source words (MUSE: 200000).
    #[arg(long, default_value_t = 200_000, value_parser = crate::opts::count(1, 100_000_000))]
    pub src_max_vocab: usize,
    #[arg(long, default_value_t = 200_000, value_parser = crate::opts::count(1, 100_000_000))]
    pub tgt_max_vocab: usize,
    /// Lowercase words of both sides and the dictionaries (most frequent casing wins).
    #[arg(long)]
    pub lowercase: bool,
}

/// A path, the empty one included (meaning "not given": the pipelines say
/// which option is missing when it is needed).
fn any_path(s: &str) -> std::result::Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

impl EmbArgs {
    /// The files both sides are read from (what `--overwrite` must not remove).
    pub fn inputs(&self) -> Vec<&std::path::Path> {
        [
            Some(&self.src),
            Some(&self.tgt),
            self.src_words.as_ref(),
            self.tgt_words.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| p.as_path())
        .collect()
    }

    /// Both sides with the defaults (200k words, as they are).
    pub fn new(src: PathBuf, tgt: PathBuf) -> Self {
        Self {
            src,
            tgt,
            src_format: None,
            tgt_format: None,
            src_words: None,
            tgt_words: None,
            src_max_vocab: 200_000,
            tgt_max_vocab: 200_000,
            lowercase: false,
        }
    }
    /// The same with every path made absolute, so that a run folder's
    /// configuration works from any current folder.
    pub fn absolute(&self) -> Self {
        use embedlab_data::fingerprint::absolute;
        Self {
            src: absolute(&self.src),
            tgt: absolute(&self.tgt),
            src_words: self.src_words.as_deref().map(absolute),
            tgt_words: self.tgt_words.as_deref().map(absolute),
            ..self.clone()
        }
    }

    /// Fingerprints of every file loading reads.
    pub fn fingerprints(&self) -> Result<Vec<Fingerprint>> {
        let mut out = vec![];
        for (p, o) in [
            (
                &self.src,
                self.opts(self.src_format, &self.src_words, self.src_max_vocab),
            ),
            (
                &self.tgt,
                self.opts(self.tgt_format, &self.tgt_words, self.tgt_max_vocab),
            ),
        ] {
            for f in Embeddings::input_files(p, &o)? {
                out.push(fingerprint(&f)?);
            }
        }
        Ok(out)
    }

    fn opts(
        &self,
        fmt: Option<EmbeddingFormat>,
        words: &Option<PathBuf>,
        max: usize,
    ) -> LoadOptions {
        LoadOptions {
            max_vocab: Some(max),
            lowercase: self.lowercase,
            dedupe: true,
            format: fmt,
            words: words.clone(),
        }
    }
    pub fn load(&self) -> Result<(Embeddings, Embeddings)> {
        for (flag, p) in [("--src", &self.src), ("--tgt", &self.tgt)] {
            if p.as_os_str().is_empty() {
                fail!(
                    "{flag} is required: the {} embeddings to map",
                    if flag == "--src" { "source" } else { "target" }
                );
            }
        }
        let load = |p: &Path, o: LoadOptions| -> Result<Embeddings> {
            let pb = spinner(format!("loading {}", p.display()));
            let t = Instant::now();
            let e = Embeddings::load(p, &o)?;
            pb.finish_and_clear();
            eprintln!(
                "loaded {}: {} words × {} in {:.2}s",
                p.display(),
                e.len(),
                e.dim(),
                t.elapsed().as_secs_f64()
            );
            for n in e.report.notes() {
                eprintln!("  {}: {n}", p.display());
            }
            Ok(e)
        };
        let s = load(
            &self.src,
            self.opts(self.src_format, &self.src_words, self.src_max_vocab),
        )?;
        let t = load(
            &self.tgt,
            self.opts(self.tgt_format, &self.tgt_words, self.tgt_max_vocab),
        )?;
        Ok((s, t))
    }
}

/// Map methods offered on the command line.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Least squares (Mikolov et al. 2013); default normalisation: none.
    Lstsq,
    /// Xing et al. 2015: unit-length vectors and an orthogonal map.
    Xing,
    /// Orthogonal Procrustes; default normalisation renorm,center,renorm.
    Procrustes,
    /// Procrustes refined by RCSLS (Joulin et al. 2018); default normalisation renorm,center,renorm.
    Rcsls,
    /// Artetxe et al. 2018 multi-step framework (whiten, orthogonal map,
    /// re-weight by √σ, de-whiten; maps both sides); default normalisation renorm,center,renorm.
    Multistep,
}

impl Method {
    pub fn map(self) -> MapMethod {
        match self {
            Method::Lstsq => MapMethod::LeastSquares,
            Method::Xing | Method::Procrustes => MapMethod::Procrustes,
            Method::Rcsls => MapMethod::Rcsls,
            Method::Multistep => MapMethod::Multistep {
                reweight: 0.5,
                dewhiten: true,
            },
        }
    }
    pub fn default_normalize(self) -> &'static str {
        match self {
            Method::Lstsq => "none",
            Method::Xing => "renorm",
            Method::Procrustes | Method::Rcsls | Method::Multistep => "renorm,center,renorm",
        }
    }
}

/// Everything `align supervised` is run with; saved as the run's config.json.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct SupervisedArgs {
    #[command(flatten)]
    pub emb: EmbArgs,
    /// Seed dictionary: MUSE text (`src tgt` a line) or FreeDict dictd (.index).
    /// Without --dict-test it is split into train and test by source frequency.
    #[arg(long)]
    pub dict: PathBuf,
    /// Number format of the evaluation's nearest-neighbour and CSLS search:
    /// f32, or bf16 candidates (k + 32) re-ranked in f32 (2.2x faster at
    /// 200k words with the same P@1: docs/word-translation.md); auto: bf16
    /// where the CPU or GPU has it.
    #[arg(long, value_enum, default_value_t = super::unsupervised::PrecisionArg::F32)]
    #[serde(default = "super::unsupervised::exact_search")]
    pub search_precision: super::unsupervised::PrecisionArg,
    /// Separate test dictionary (then all of --dict trains).
    #[arg(long)]
    pub dict_test: Option<PathBuf>,
    /// Read the dictionaries the other way round (target→source files).
    #[arg(long)]
    pub invert_dict: bool,
    /// Dictionary format (muse, dictd); default: recognised by content.
    #[arg(long)]
    #[serde(default)]
    pub dict_format: Option<DictFormat>,
    /// Train on these source-frequency ranks of the dictionary (e.g. 0:5000).
    #[arg(long, value_parser = parse_range)]
    pub train_ranks: Option<(usize, usize)>,
    /// Test on these ranks (e.g. 5000:6500); both ranges or neither.
    #[arg(long, value_parser = parse_range)]
    pub test_ranks: Option<(usize, usize)>,
    /// Test words when splitting automatically (MUSE: 1500 after the first 5000).
    #[arg(long, default_value_t = 1500, value_parser = crate::opts::count(1, 100_000_000))]
    pub test_size: usize,
    #[arg(long, value_enum, default_value_t = Method::Procrustes)]
    pub method: Method,
    #[command(flatten)]
    pub prep: PrepArgs,
    /// Refinement iterations: re-induce the dictionary (mutual CSLS neighbours) and refit.
    #[arg(long, default_value_t = 0, value_parser = crate::opts::count(0, 1000))]
    pub refine: usize,
    /// Words of each side taking part in induction (MUSE: 15000).
    #[arg(long, default_value_t = 15_000, value_parser = crate::opts::count(2, 100_000_000))]
    pub refine_max_rank: usize,
    /// Induce over the whole vocabularies and then drop pairs beyond
    /// --refine-max-rank (MUSE's way) instead of searching only the top words.
    #[arg(long)]
    pub induce_full_vocabulary: bool,
    /// Hold out this fraction of the training source words (every n-th by
    /// frequency), pick the number of refinement iterations by CSLS P@1 on
    /// them (the fewest within one standard error of the best), then refit
    /// on all training pairs; 0 picks by MUSE's unsupervised mean-cosine
    /// criterion instead.
    /// Only used with --refine.
    #[arg(long, default_value_t = 0.1, value_parser = crate::opts::below_half)]
    pub validation: f64,
    /// Keep the seed pairs in each refined dictionary.
    #[arg(long)]
    pub keep_seed: bool,
    #[command(flatten)]
    #[serde(default)]
    pub classes: super::which::WordClassArgs,
    /// Run folder (default runs/align-supervised-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Empty --out first if it already holds something.
    #[arg(long)]
    #[serde(default)]
    pub overwrite: bool,
}

/// The kind of run `align supervised` writes.
pub const KIND: &str = "align-supervised";

pub fn reuse(overwrite: bool) -> Reuse {
    if overwrite {
        Reuse::Overwrite
    } else {
        Reuse::Refuse
    }
}

/// How both sides are prepared before mapping (shared by every aligner).
#[derive(Args, Debug, Clone, Serialize, Deserialize, Default)]
pub struct PrepArgs {
    /// Normalisation chain for both sides, e.g. renorm,center,renorm or none
    /// (default: the method's).
    #[arg(long)]
    pub normalize: Option<String>,
    /// Reduce the source to K dimensions with PCA (before normalising).
    #[arg(long, value_parser = crate::opts::count(1, 100_000))]
    pub src_pca: Option<usize>,
    #[arg(long, value_parser = crate::opts::count(1, 100_000))]
    pub tgt_pca: Option<usize>,
}

impl PrepArgs {
    /// The normalisation chain, `default` when none was given.
    pub fn normalization(&self, default: &str) -> Result<Normalization> {
        Ok(self.normalize.as_deref().unwrap_or(default).parse()?)
    }
    /// Source and target preparations.
    pub fn sides(&self, default: &str) -> Result<(Prep, Prep)> {
        let n = self.normalization(default)?;
        Ok((
            Prep {
                pca: self.src_pca,
                normalize: n.clone(),
            },
            Prep {
                pca: self.tgt_pca,
                normalize: n,
            },
        ))
    }
}

impl SupervisedArgs {
    /// The same with every input path absolute.
    pub fn absolute(&self) -> Self {
        use embedlab_data::fingerprint::absolute;
        Self {
            emb: self.emb.absolute(),
            dict: absolute(&self.dict),
            dict_test: self.dict_test.as_deref().map(absolute),
            ..self.clone()
        }
    }
    pub fn normalization(&self) -> Result<Normalization> {
        self.prep.normalization(self.method.default_normalize())
    }
    pub fn prep(&self) -> Result<(Prep, Prep)> {
        self.prep.sides(self.method.default_normalize())
    }
    fn dictionary(&self, path: &Path) -> Result<Dictionary> {
        read_dictionary(path, self.dict_format, self.invert_dict, self.emb.lowercase)
    }
}

/// Reads a dictionary (MUSE or dictd), optionally swapped and lowercased.
pub fn read_dictionary(
    path: &Path,
    format: Option<DictFormat>,
    invert: bool,
    lowercase: bool,
) -> Result<Dictionary> {
    let mut d = Dictionary::load_as(path, format)?;
    if invert {
        d = d.inverted();
    }
    if lowercase {
        d = d.lowercased();
    }
    Ok(d)
}

/// What a supervised run reports (report.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisedReport {
    pub method: Method,
    pub normalize: String,
    pub src_words: usize,
    pub tgt_words: usize,
    pub src_dim: usize,
    pub tgt_dim: usize,
    pub pca_variance_kept: (Option<f64>, Option<f64>),
    pub train_pairs: usize,
    pub train_source_words: usize,
    pub validation_source_words: usize,
    pub test_pairs: usize,
    pub dictionary: embedlab_data::dictionary::ResolveStats,
    pub test_dictionary: Option<embedlab_data::dictionary::ResolveStats>,
    pub ranks: Option<((usize, usize), (usize, usize))>,
    pub iterations: Vec<Iteration>,
    pub selected_iteration: usize,
    pub precision: Vec<Precision>,
    pub seconds: Timings,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub prepare: f64,
    pub fit: f64,
    pub evaluate: f64,
    pub total_after_load: f64,
}

/// (source row, target row) pairs.
type Pairs = Vec<(usize, usize)>;

/// Builds train/test pairs from the arguments.
fn pairs(
    args: &SupervisedArgs,
    src: &Embeddings,
    tgt: &Embeddings,
) -> Result<(Pairs, Pairs, SupervisedReportDict)> {
    let dict = args.dictionary(&args.dict)?;
    let resolved = dict.resolve(src, tgt);
    if resolved.pairs.is_empty() {
        fail!(
            "{}: none of its {} pairs has both words in the vocabularies (try --lowercase or --invert-dict)",
            args.dict.display(),
            dict.pairs.len()
        );
    }
    match &args.dict_test {
        Some(tp) => {
            let test = args.dictionary(tp)?.resolve(src, tgt);
            if test.pairs.is_empty() {
                fail!(
                    "{}: no test pair has both words in the vocabularies",
                    tp.display()
                );
            }
            let stats = (resolved.stats.clone(), Some(test.stats.clone()), None);
            Ok((resolved.pairs, test.pairs, stats))
        }
        None => {
            let split = match (args.train_ranks, args.test_ranks) {
                (Some(a), Some(b)) => resolved.split_ranges(a, b)?,
                (None, None) => resolved.split_default(5000, args.test_size)?,
                _ => fail!("give both --train-ranks and --test-ranks, or neither"),
            };
            let stats = (
                resolved.stats.clone(),
                None,
                Some((split.train_range, split.test_range)),
            );
            Ok((split.train, split.test, stats))
        }
    }
}

type SupervisedReportDict = (
    embedlab_data::dictionary::ResolveStats,
    Option<embedlab_data::dictionary::ResolveStats>,
    Option<((usize, usize), (usize, usize))>,
);

/// Splits off every n-th training source word (by frequency) for validation.
fn hold_out(train: &[(usize, usize)], fraction: f64) -> Result<(Pairs, Pairs)> {
    if !(0.0..0.5).contains(&fraction) {
        fail!("--validation must be in [0, 0.5), got {fraction}");
    }
    if fraction == 0.0 {
        return Ok((train.to_vec(), vec![]));
    }
    let mut words: Vec<usize> = train.iter().map(|p| p.0).collect();
    words.sort_unstable();
    words.dedup();
    let every = (1.0 / fraction).round().max(2.0) as usize;
    let held: std::collections::HashSet<usize> = words
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == every - 1)
        .map(|(_, &w)| w)
        .collect();
    if held.is_empty() {
        fail!(
            "--validation {fraction}: too few training words ({}) to hold any out",
            words.len()
        );
    }
    Ok(train.iter().partition(|p| !held.contains(&p.0)))
}

/// The methods every evaluation reports.
pub const EVAL_RETRIEVALS: [Retrieval; 2] = [Retrieval::Nn, Retrieval::Csls { k: 10 }];
pub const EVAL_KS: [usize; 3] = [1, 5, 10];
/// Hubness is measured on the top 10 targets of the most frequent 10,000
/// source words (rows are in frequency order), with every method above.
pub const HUB_K: usize = 10;
pub const HUB_QUERIES: usize = 10_000;
const HUB_SHOWN: usize = 10;

/// One retrieval method's hubness, with the words of its worst hubs.
pub type HubRow = (Hubness, Vec<(String, usize)>);

/// The hubness of each evaluation method in `space`, with the words of the
/// most retrieved targets; logged to the run's metrics.
pub fn hubness_rows(run: &RunDir, space: &mut Space, tgt: &Embeddings) -> Result<Vec<HubRow>> {
    let queries: Vec<usize> = (0..(space.src.size()[0] as usize).min(HUB_QUERIES)).collect();
    let mut out = vec![];
    for r in EVAL_RETRIEVALS {
        let h = hubness(space, &queries, r, HUB_K, HUB_SHOWN)?;
        run.log(&serde_json::json!({"event": "hubness", "hubness": h}))?;
        let words = h
            .hubs
            .iter()
            .map(|&(t, c)| (tgt.word(t).to_string(), c))
            .collect();
        out.push((h, words));
    }
    Ok(out)
}

/// Runs the whole supervised pipeline on loaded embeddings and writes the run folder.
pub fn run_supervised(
    args: &SupervisedArgs,
    src: &Embeddings,
    tgt: &Embeddings,
    device: Device,
) -> Result<SupervisedReport> {
    let t_all = Instant::now();
    let args = &args.absolute();
    let mut inputs = args.emb.inputs();
    inputs.push(&args.dict);
    inputs.extend(args.dict_test.as_deref());
    let run = RunDir::create_with_inputs(
        KIND,
        args.out.as_deref(),
        reuse(args.overwrite),
        args,
        &inputs,
    )?;
    crate::progress::show_notes(&run);
    let (train, test, (dstats, tstats, ranks)) = pairs(args, src, tgt)?;
    let word_pairs = |p: &[(usize, usize)]| Dictionary {
        pairs: p
            .iter()
            .map(|&(s, t)| (src.word(s).to_string(), tgt.word(t).to_string()))
            .collect(),
    };
    word_pairs(&train).save_muse(&run.file("dict.train.txt"))?;
    word_pairs(&test).save_muse(&run.file("dict.test.txt"))?;
    let train_words = train
        .iter()
        .map(|p| p.0)
        .collect::<std::collections::HashSet<_>>()
        .len();
    for (name, st) in [
        ("dictionary", Some(&dstats)),
        ("test dictionary", tstats.as_ref()),
    ] {
        if let Some(st) = st {
            eprintln!(
                "{name}: {} of {} pairs found ({} of {} source words); {} source and {} target words not in the vocabularies",
                st.pairs_found,
                st.pairs_in_file,
                st.source_words_found,
                st.source_words_in_file,
                st.source_words_missing,
                st.target_words_missing
            );
        }
    }
    eprintln!(
        "dictionary: {} train pairs ({} source words), {} test pairs ({} source words)",
        train.len(),
        train_words,
        test.len(),
        test.iter()
            .map(|p| p.0)
            .collect::<std::collections::HashSet<_>>()
            .len()
    );

    let (train, valid) = if args.refine > 0 {
        hold_out(&train, args.validation)?
    } else {
        (train, vec![])
    };
    let t = Instant::now();
    let (ps, pt) = args.prep()?;
    RunPrep::write(&run, &args.emb, &ps, &pt)?;
    let (x, kept_s) = ps.apply(src, device)?;
    let (y, kept_t) = pt.apply(tgt, device)?;
    let prepare = t.elapsed().as_secs_f64();
    if args.method.map() == MapMethod::Procrustes && x.size()[1] != y.size()[1] {
        eprintln!(
            "note: source has {} dimensions and target {}: the orthogonal map is semi-orthogonal",
            x.size()[1],
            y.size()[1]
        );
    }

    let t = Instant::now();
    let cfg = FitConfig {
        method: args.method.map(),
        refine: args.refine,
        induce: InduceConfig {
            retrieval: Retrieval::Csls { k: 10 },
            build: Build::Mutual,
            max_rank: args.refine_max_rank,
            full_vocabulary: args.induce_full_vocabulary,
        },
        keep_seed: args.keep_seed,
        criterion_words: 10_000,
    };
    let pb = bar(
        args.refine as u64 + 1,
        format!("fit {:?}", args.method).to_lowercase(),
    );
    let mut validate = |space: &mut embedlab_align::Space| -> embedlab_align::Result<f64> {
        Ok(precision_at_k(space, &valid, Retrieval::Csls { k: 10 }, &[1])?.at[&1])
    };
    let select = if valid.is_empty() {
        Select::Criterion
    } else {
        Select::Validation(&mut validate)
    };
    let mut steps = vec![];
    let mut fitted = fit_supervised(&x, &y, &train, &cfg, select, |it| {
        pb.inc(1);
        pb.set_message(format!("selection {:.4}", it.selection));
        steps.push(it.clone());
    })?;
    if !valid.is_empty() {
        // One-standard-error rule: the fewest iterations whose validation P@1
        // is within one standard error of the best (the validation set is small).
        let n = valid
            .iter()
            .map(|p| p.0)
            .collect::<std::collections::HashSet<_>>()
            .len() as f64;
        let top = steps.iter().map(|s| s.selection).fold(f64::MIN, f64::max);
        let se = 100.0 * ((top / 100.0) * (1.0 - top / 100.0) / n).sqrt();
        let chosen = steps
            .iter()
            .position(|s| s.selection >= top - se)
            .unwrap_or(fitted.best);
        // The number of iterations is chosen; refit it on all the training pairs.
        let all: Vec<(usize, usize)> = train.iter().chain(&valid).copied().collect();
        let cfg = FitConfig {
            refine: chosen,
            ..cfg.clone()
        };
        pb.set_message(format!(
            "refit {} iteration(s) on train+validation",
            chosen + 1
        ));
        fitted = fit_supervised(&x, &y, &all, &cfg, Select::Last, |_| {})?;
        fitted.best = chosen;
    }
    pb.finish_and_clear();
    for s in &steps {
        run.log(
            &serde_json::json!({"event": "iteration", "iteration": s.iteration,
            "dictionary_pairs": s.dictionary_pairs, "criterion": s.criterion,
            "selection": s.selection, "seconds": s.seconds}),
        )?;
    }
    let fit_s = t.elapsed().as_secs_f64();
    save_map(&run.file("map.safetensors"), &fitted.map)?;
    let iterations = steps;
    let selected_iteration = fitted.best;

    let t = Instant::now();
    let pb = spinner("evaluating (NN and CSLS)");
    let mut space = fitted.space;
    space.precision = args.search_precision.resolve(space.src.device());
    let mut precision = vec![];
    for r in EVAL_RETRIEVALS {
        let p = precision_at_k(&mut space, &test, r, &EVAL_KS)?;
        run.log(&serde_json::json!({"event": "precision", "retrieval": p.retrieval, "at": p.at, "queries": p.queries}))?;
        precision.push(p);
    }
    let examples = write_examples(&run, &mut space, &test, src, tgt, 20, 5)?;
    let hubs = hubness_rows(&run, &mut space, tgt)?;
    let test_dict = args.dict_test.as_deref().unwrap_or(&args.dict);
    let tags = super::which::tag_source(&args.classes, Some(test_dict), args.invert_dict);
    let which =
        super::which::which_words(&run, &args.classes, tags.as_deref(), &mut space, &test, src)?;
    pb.finish_and_clear();
    let evaluate = t.elapsed().as_secs_f64();

    let report = SupervisedReport {
        method: args.method,
        normalize: args.normalization()?.to_string(),
        src_words: src.len(),
        tgt_words: tgt.len(),
        src_dim: x.size()[1] as usize,
        tgt_dim: y.size()[1] as usize,
        pca_variance_kept: (kept_s, kept_t),
        train_pairs: train.len() + valid.len(),
        train_source_words: train_words,
        validation_source_words: valid
            .iter()
            .map(|p| p.0)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        test_pairs: test.len(),
        dictionary: dstats,
        test_dictionary: tstats,
        ranks,
        iterations,
        selected_iteration,
        precision,
        seconds: Timings {
            prepare,
            fit: fit_s,
            evaluate,
            total_after_load: t_all.elapsed().as_secs_f64(),
        },
    };
    let refine = if args.refine > 0 {
        format!(" + {} refinements", args.refine)
    } else {
        String::new()
    };
    let mut r = word_report(
        KIND,
        format!(
            "{:?}{refine}: {} → {} ({})",
            args.method,
            file_name(&args.emb.src),
            file_name(&args.emb.tgt),
            file_name(&args.dict)
        )
        .to_lowercase(),
        &report.precision,
        &examples,
        &hubs,
        serde_json::to_value(&report)?,
    );
    super::which::add_to_report(&mut r, &which, &run)?;
    r.metric(
        "train pairs",
        report.train_pairs as f64,
        "",
        Better::Neither,
    );
    r.metric("fit time", report.seconds.fit, "s", Better::Lower);
    if args.refine > 0 {
        r.curve(
            "selection",
            "held-out CSLS P@1 (selection)",
            "iteration",
            "%",
        );
        r.curve("criterion", "mean-cosine criterion", "iteration", "");
    }
    run.write_report(&r)?;
    eprintln!("run folder: {}", run.path.display());
    Ok(report)
}

/// A file's name, for titles.
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| p.display().to_string())
}

/// The metrics' name of a retrieval method.
fn method_name(retrieval: &str) -> &'static str {
    if retrieval.starts_with("csls") {
        "CSLS"
    } else {
        "NN"
    }
}

/// The report every word-translation run writes: precision@k with NN and
/// CSLS, the translation examples as a table, and each method's hubness.
pub fn word_report(
    kind: &str,
    title: String,
    precision: &[Precision],
    examples: &[Example],
    hubs: &[HubRow],
    details: serde_json::Value,
) -> Report {
    let mut r = Report::new(kind, super::SECTION, title);
    for p in precision {
        let name = method_name(&p.retrieval);
        for k in EVAL_KS {
            if let Some(v) = p.at.get(&k) {
                r.metric(&format!("{name} P@{k}"), *v, "%", Better::Higher)
                    .with_note(format!("{} test source words", p.queries));
            }
        }
    }
    if let Some(p) = precision.first() {
        r.metric("test words", p.queries as f64, "", Better::Neither);
    }
    if !examples.is_empty() {
        let mut highlight = vec![];
        let rows = examples
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut row = vec![e.word.clone(), e.gold.join(", ")];
                for (j, (w, s)) in e.candidates.iter().enumerate() {
                    if e.gold.contains(w) {
                        highlight.push((i, j + 2));
                    }
                    row.push(format!("{w} ({s:.3})"));
                }
                row
            })
            .collect();
        let k = examples
            .iter()
            .map(|e| e.candidates.len())
            .max()
            .unwrap_or(0);
        let mut columns = vec!["source word".to_string(), "gold translations".to_string()];
        columns.extend((1..=k).map(|i| format!("CSLS #{i}")));
        r.tables.push(Table {
            title: format!(
                "{} translation examples (CSLS top-{k} with scores; correct ones highlighted)",
                examples.len()
            ),
            columns,
            rows,
            highlight,
            open: false,
        });
    }
    if let Some((h0, _)) = hubs.first() {
        let mut rows = vec![];
        for (h, words) in hubs {
            let name = method_name(&h.retrieval);
            let note = format!(
                "k-occurrence of {} targets in the top {} of the first {} source words",
                h.targets, h.k, h.queries
            );
            r.metric(
                &format!("{name} hubness (N_{} skewness)", h.k),
                h.skewness,
                "",
                Better::Lower,
            )
            .with_note(note);
            r.metric(
                &format!("{name}: targets in no top {}", h.k),
                h.never_retrieved,
                "%",
                Better::Neither,
            );
            let worst = words
                .iter()
                .map(|(w, c)| format!("{w} ({c})"))
                .collect::<Vec<_>>()
                .join(", ");
            rows.push(vec![
                name.to_string(),
                format!("{:.2}", h.skewness),
                format!("{:.1}", h.never_retrieved),
                format!("{:.1}", h.top_share),
                worst,
            ]);
        }
        r.tables.push(Table {
            title: format!(
                "Hubness: how often each of the {} targets is among the top {} of the first {} source words (N_{}); a right-skewed N_{} means hubs",
                h0.targets, h0.k, h0.queries, h0.k, h0.k
            ),
            columns: [
                "retrieval",
                "skewness of N_k",
                "targets in no top k %",
                "top-k slots taken by the top 1% of targets %",
                "most retrieved targets (N_k)",
            ]
            .map(String::from)
            .to_vec(),
            rows,
            highlight: vec![],
            open: false,
        });
    }
    r.details = details;
    r
}

/// One translation example of `examples.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub word: String,
    /// Every accepted translation in the test dictionary.
    pub gold: Vec<String>,
    /// Top-k CSLS candidates with their scores, best first.
    pub candidates: Vec<(String, f64)>,
    pub correct_at_1: bool,
}

/// Writes `examples.json`: `n` test source words, evenly spread over the
/// test dictionary, with their top-`k` CSLS translations and gold words.
pub fn write_examples(
    run: &RunDir,
    space: &mut Space,
    test: &[(usize, usize)],
    src: &Embeddings,
    tgt: &Embeddings,
    n: usize,
    k: i64,
) -> Result<Vec<Example>> {
    let mut words: Vec<usize> = vec![];
    let mut gold: std::collections::HashMap<usize, Vec<usize>> = Default::default();
    for &(s, t) in test {
        let g = gold.entry(s).or_default();
        if g.is_empty() {
            words.push(s);
        }
        g.push(t);
    }
    let step = (words.len() / n.max(1)).max(1);
    let chosen: Vec<usize> = words.iter().step_by(step).take(n).copied().collect();
    let mut out = vec![];
    if !chosen.is_empty() {
        let (scores, idx) = space.translate(&chosen, Retrieval::Csls { k: 10 }, k)?;
        for (r, &w) in chosen.iter().enumerate() {
            let r = r as i64;
            let cands: Vec<(String, f64)> = (0..idx.size()[1])
                .map(|j| {
                    (
                        tgt.word(idx.int64_value(&[r, j]) as usize).to_string(),
                        scores.double_value(&[r, j]),
                    )
                })
                .collect();
            let g = &gold[&w];
            out.push(Example {
                word: src.word(w).to_string(),
                correct_at_1: g.contains(&(idx.int64_value(&[r, 0]) as usize)),
                gold: g.iter().map(|&t| tgt.word(t).to_string()).collect(),
                candidates: cands,
            });
        }
    }
    run.write_json("examples.json", &out)?;
    Ok(out)
}

/// Saves the map atomically as safetensors: `W` (source side) and, for
/// two-sided maps, `W_tgt`.
pub fn save_map(path: &Path, m: &Mapping) -> Result<()> {
    let mut named = vec![("W".to_string(), m.src.shallow_clone())];
    if let Some(t) = &m.tgt {
        named.push(("W_tgt".to_string(), t.shallow_clone()));
    }
    Ok(embedlab_data::atomic::write_safetensors_atomic(
        path, named,
    )?)
}

/// Loads a map saved by `save_map`.
pub fn load_map(path: &Path, device: Device) -> Result<Mapping> {
    let tensors = Tensor::read_safetensors(path)
        .context(|| format!("{}: not a readable safetensors file", path.display()))?;
    let mut src = None;
    let mut tgt = None;
    for (n, t) in tensors {
        match n.as_str() {
            "W" => src = Some(t.to_device(device)),
            "W_tgt" => tgt = Some(t.to_device(device)),
            _ => {}
        }
    }
    let src = src.context(|| format!("{}: no tensor named W", path.display()))?;
    Ok(Mapping { src, tgt })
}

/// A precision table, as text.
pub fn precision_table(title: &str, ps: &[Precision]) -> String {
    let mut s = format!("{title}\n");
    s += &format!(
        "  {:<8} {:>7} {:>7} {:>7}  queries\n",
        "method", "P@1", "P@5", "P@10"
    );
    for p in ps {
        s += &format!(
            "  {:<8} {:>7.2} {:>7.2} {:>7.2}  {}\n",
            p.retrieval,
            p.at.get(&1).copied().unwrap_or(f64::NAN),
            p.at.get(&5).copied().unwrap_or(f64::NAN),
            p.at.get(&10).copied().unwrap_or(f64::NAN),
            p.queries
        );
    }
    s
}

/// How a run prepared its two sides: saved as `prep.json` by every `align`
/// command so that `translate` and `export` can rebuild the mapped spaces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPrep {
    pub emb: EmbArgs,
    pub src: Prep,
    pub tgt: Prep,
    /// What the vectors were read from (runs made before fingerprints have none).
    #[serde(default)]
    pub inputs: Vec<Fingerprint>,
}

impl RunPrep {
    /// Writes `prep.json`: both sides' preparation and the fingerprints of
    /// what they are read from.
    pub fn write(run: &RunDir, emb: &EmbArgs, src: &Prep, tgt: &Prep) -> Result<()> {
        run.write_json(
            "prep.json",
            &RunPrep {
                emb: emb.clone(),
                src: src.clone(),
                tgt: tgt.clone(),
                inputs: emb.fingerprints()?,
            },
        )?;
        Ok(())
    }

    /// Reads a run's `prep.json`.
    pub fn read(path: &Path) -> Result<RunPrep> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::PipelineError::file(path, format!("cannot read: {e}")))?;
        serde_json::from_str(&text)
            .map_err(|e| crate::PipelineError::file(path, format!("not a run's preparation: {e}")))
    }

    /// Checks that the run's input files are still what they were.
    pub fn check_inputs(&self) -> Result<()> {
        for f in &self.inputs {
            f.check()?;
        }
        Ok(())
    }
}

/// A run folder's pieces, for `translate` and `export`.
pub struct LoadedRun {
    pub emb: EmbArgs,
    pub src: Embeddings,
    pub tgt: Embeddings,
    pub mapped: Tensor,
    pub target: Tensor,
}

pub fn load_run(dir: &Path, device: Device) -> Result<LoadedRun> {
    let cfg = dir.join("prep.json");
    let prep: RunPrep = if cfg.exists() {
        RunPrep::read(&cfg)?
    } else {
        // Runs made before prep.json existed: rebuild it from the supervised config.
        let old = dir.join("config.json");
        let text = std::fs::read_to_string(&old).context(|| {
            format!(
                "{}: not an align run folder (no prep.json or config.json)",
                dir.display()
            )
        })?;
        let args: SupervisedArgs = serde_json::from_str(&text)
            .context(|| format!("{}: not an align run config", old.display()))?;
        let (src, tgt) = args.prep()?;
        RunPrep {
            emb: args.emb,
            src,
            tgt,
            inputs: vec![],
        }
    };
    prep.check_inputs()?;
    let (args, ps, pt) = (prep.emb, prep.src, prep.tgt);
    let map_path = dir.join("map.safetensors");
    let map = load_map(&map_path, device)?;
    let (src, tgt) = args.load()?;
    let (x, _) = ps.apply(&src, device)?;
    let (y, _) = pt.apply(&tgt, device)?;
    map.check_dims(x.size()[1], y.size()[1])
        .context(|| format!("{} (embeddings changed?)", map_path.display()))?;
    Ok(LoadedRun {
        mapped: map.map_src(&x),
        target: map.map_tgt(&y),
        emb: args,
        src,
        tgt,
    })
}
