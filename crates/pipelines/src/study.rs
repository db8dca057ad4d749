//! Studies: a grid of runs (models × option values × seeds) described in a
//! TOML file, run in one study folder — on this machine a few at a time, or
//! as the tasks of a Slurm job array — and aggregated into one report.
//!
//! A study folder is a run folder of kind `study` (locked, with its spec as
//! `config.json` and a copy as `study.toml`); its runs are ordinary run
//! folders under `runs/`, each made by the ordinary `embedlab` command the
//! spec names, so anything that reads a run (report, eval, TensorBoard)
//! reads a study's runs. Which runs are done is read from the folders, never
//! kept in a separate list: a run with `report.json` is finished, one with
//! `run.json` but no report was interrupted (it is resumed), a run whose
//! claim (`claims/<run>`) is locked is running, and `logs/<run>.json` says
//! how its last attempt ended.
use crate::{PipelineError, Result};
use embedlab_train::report::REPORT;
use embedlab_train::run::{claim, claimed, Reuse, RunDir, CONFIG, METRICS, RUN_FILE};
use embedlab_train::{Better, Report};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const KIND: &str = "study";
pub const SECTION: &str = "Studies";
/// The spec's text, as given.
pub const SPEC_COPY: &str = "study.toml";
pub const RUNS: &str = "runs";
pub const CLAIMS: &str = "claims";
pub const LOGS: &str = "logs";
/// At most this many runs in one study.
pub const MAX_RUNS: usize = 100_000;
/// Options a study sets itself for each run.
const RESERVED: [&str; 5] = ["out", "resume", "overwrite", "seed", "help"];
/// The commands a study can run: each makes a run folder with `--out`,
/// `--overwrite` and continues one with `--resume`.
const COMMANDS: [&str; 2] = ["train", "align unsupervised"];

/// A study file.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub study: Header,
    /// Option name → the values to try; every combination is run.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Options of every run.
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
    /// Per model (`train`'s subcommand): options and grid axes replacing
    /// the shared ones.
    #[serde(default)]
    pub model: BTreeMap<String, ModelTable>,
    #[serde(default)]
    pub report: ReportSpec,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Header {
    #[serde(default)]
    pub title: Option<String>,
    /// The embedlab command each run is: `train` (the `model` option names
    /// its subcommand) or `align unsupervised`.
    #[serde(default = "default_command")]
    pub command: String,
    /// Every cell of the grid is run once per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<i64>,
    /// Slurm resources of one array task (options of `study submit`
    /// override them).
    #[serde(default)]
    pub slurm: SlurmSpec,
}

impl Default for Header {
    fn default() -> Self {
        Self {
            title: None,
            command: default_command(),
            seeds: default_seeds(),
            slurm: SlurmSpec::default(),
        }
    }
}

fn default_command() -> String {
    "train".into()
}
fn default_seeds() -> Vec<i64> {
    vec![0]
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SlurmSpec {
    /// Minutes of wall time per task.
    pub minutes: Option<u32>,
    /// CPU cores per task.
    pub cpus: Option<u32>,
    /// Memory per task, in MiB.
    pub mem_mb: Option<u32>,
    pub partition: Option<String>,
    /// Array tasks running at once (`--array=0-N%M`).
    pub max_running: Option<u32>,
    /// Seconds before the time limit at which Slurm signals a task to save
    /// and requeue itself.
    pub signal_seconds: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelTable {
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// The runs' report metrics aggregated per cell (default: every metric
    /// that has a better direction).
    #[serde(default)]
    pub metrics: Vec<String>,
    /// `metrics.jsonl` series drawn per cell (mean over seeds), e.g.
    /// `valid.bpd`, `grad_norm.model`.
    #[serde(default)]
    pub curves: Vec<String>,
    /// Training time until a series first crosses a value.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// A `metrics.jsonl` series (`valid.bpd`).
    pub curve: String,
    pub below: Option<f64>,
    pub above: Option<f64>,
}

impl Threshold {
    fn label(&self) -> String {
        match (self.below, self.above) {
            (Some(b), _) => format!("{} ≤ {b}", self.curve),
            (_, Some(a)) => format!("{} ≥ {a}", self.curve),
            _ => self.curve.clone(),
        }
    }
    fn reached(&self, v: f64) -> bool {
        match (self.below, self.above) {
            (Some(b), _) => v <= b,
            (_, Some(a)) => v >= a,
            _ => false,
        }
    }
}

/// One run of a study: its folder name, its cell (the name without the
/// seed), the values that make it, and its command line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PlannedRun {
    pub name: String,
    pub cell: String,
    pub model: Option<String>,
    pub seed: i64,
    /// The grid values of this run (option → value as given).
    pub values: BTreeMap<String, String>,
    /// The command line (without the program name) of a fresh start; the
    /// study adds `--out`, `--overwrite`.
    pub args: Vec<String>,
}

/// What a study folder's `config.json` holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StudyConfig {
    pub spec: Spec,
    /// The spec file it was made from.
    pub spec_file: PathBuf,
    /// The folder relative paths of the options are read from (every run
    /// and every Slurm task starts there).
    pub cwd: PathBuf,
    pub runs: Vec<PlannedRun>,
}

impl StudyConfig {
    /// The configuration a study folder made here from `spec_file` holds.
    pub fn new(spec_file: &Path, spec: Spec, runs: Vec<PlannedRun>) -> Result<Self> {
        let cwd = std::env::current_dir()
            .map_err(|e| PipelineError::file(Path::new("."), e.to_string()))?;
        Ok(StudyConfig {
            spec,
            spec_file: embedlab_data::fingerprint::absolute(spec_file),
            cwd,
            runs,
        })
    }

    /// The run of this name.
    pub fn run(&self, name: &str) -> Result<&PlannedRun> {
        self.runs.iter().find(|r| r.name == name).ok_or_else(|| {
            PipelineError::Invalid(format!(
                "the study has no run {name:?} (its runs: {} …)",
                self.runs
                    .iter()
                    .take(3)
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

/// Why a study's command line is refused: the message, and the argument
/// it names (`--foo`) when the parser said which.
pub struct ArgProblem {
    pub message: String,
    pub argument: Option<String>,
}

/// Reads and checks a study file; `check` parses one run's command line
/// the way `embedlab` would (so an unknown option or a bad value is found
/// before anything runs), and every error names the spec's key.
pub fn plan(
    file: &Path,
    check: &dyn Fn(&[String]) -> std::result::Result<(), ArgProblem>,
) -> Result<(Spec, Vec<PlannedRun>)> {
    let text =
        std::fs::read_to_string(file).map_err(|e| PipelineError::file(file, e.to_string()))?;
    let spec: Spec = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!("line {}: ", text[..s.start].lines().count().max(1)))
            .unwrap_or_default();
        PipelineError::file(file, format!("{line}{}", e.message()))
    })?;
    let runs = expand(&spec).map_err(|m| PipelineError::file(file, m))?;
    for r in &runs {
        let mut argv = vec!["--seed".to_string(), r.seed.to_string()];
        argv.extend(r.args.iter().cloned());
        if let Err(p) = check(&argv) {
            let key = p
                .argument
                .as_deref()
                .and_then(|a| a.split(['=', ' ']).next())
                .and_then(|a| a.strip_prefix("--"))
                .and_then(|a| key_of(&spec, r.model.as_deref(), a));
            let msg = p.message.trim().lines().next().unwrap_or("").to_string();
            return Err(PipelineError::file(
                file,
                match key {
                    Some(k) => format!("{k}: {msg} (in run {})", r.name),
                    None => format!("run {} ({}): {msg}", r.name, r.args.join(" ")),
                },
            ));
        }
    }
    Ok((spec, runs))
}

/// The table and key an option of a run comes from.
fn key_of(spec: &Spec, model: Option<&str>, opt: &str) -> Option<String> {
    if let Some(m) = model.and_then(|m| spec.model.get(m).map(|t| (m, t))) {
        if m.1.grid.contains_key(opt) {
            return Some(format!("[model.{}.grid] {opt}", m.0));
        }
        if m.1.options.contains_key(opt) {
            return Some(format!("[model.{}.options] {opt}", m.0));
        }
    }
    if spec.grid.contains_key(opt) {
        return Some(format!("[grid] {opt}"));
    }
    if spec.options.contains_key(opt) {
        return Some(format!("[options] {opt}"));
    }
    None
}

/// Every run of the spec, in order: seed by seed, then model by model, then
/// the grid's combinations (so the first runs cover every cell once).
pub fn expand(spec: &Spec) -> std::result::Result<Vec<PlannedRun>, String> {
    let command: Vec<String> = spec
        .study
        .command
        .split_whitespace()
        .map(String::from)
        .collect();
    if !COMMANDS.contains(&command.join(" ").as_str()) {
        return Err(format!(
            "[study] command: {:?} is not a command a study runs (one of: {})",
            spec.study.command,
            COMMANDS.join(", ")
        ));
    }
    if spec.study.seeds.is_empty() {
        return Err("[study] seeds: an empty list gives no runs".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &spec.study.seeds {
        if !seen.insert(s) {
            return Err(format!("[study] seeds: {s} is listed twice"));
        }
    }
    let tables = [("grid", &spec.grid)]
        .into_iter()
        .chain(spec.model.iter().map(|(m, t)| (m.as_str(), &t.grid)));
    for (where_, grid) in tables {
        let at = |k: &str| {
            if where_ == "grid" {
                format!("[grid] {k}")
            } else {
                format!("[model.{where_}.grid] {k}")
            }
        };
        for (k, vals) in grid {
            if vals.is_empty() {
                return Err(format!("{}: an empty list gives no runs", at(k)));
            }
            let mut names = std::collections::BTreeSet::new();
            for v in vals {
                if !names.insert(value_name(k, v)?) {
                    return Err(format!("{}: {v} is listed twice", at(k)));
                }
            }
        }
    }
    for (where_, opts) in [("options", &spec.options)]
        .into_iter()
        .chain(spec.model.iter().map(|(m, t)| (m.as_str(), &t.options)))
    {
        for k in opts.keys() {
            if where_ != "options" && k == "model" {
                return Err(format!(
                    "[model.{where_}.options] model: a model's table cannot change its model"
                ));
            }
        }
    }
    let train = command == ["train"];
    let models: Vec<Option<String>> = match (spec.grid.get("model"), spec.options.get("model")) {
        (Some(_), Some(_)) => {
            return Err("model: given both in [grid] and in [options]".into())
        }
        (Some(v), None) => v.iter().map(|v| Some(plain(v))).collect(),
        (None, Some(v)) => vec![Some(plain(v))],
        (None, None) if train => {
            return Err("model: `train` needs the model to train ([options] model = \"vae\", or a list in [grid])".into())
        }
        (None, None) => vec![None],
    };
    if !train && models.iter().any(|m| m.is_some()) {
        return Err(format!(
            "model: only `train` runs take a model (the command is {:?})",
            spec.study.command
        ));
    }
    for m in spec.model.keys() {
        if !models.iter().any(|x| x.as_deref() == Some(m)) {
            return Err(format!(
                "[model.{m}]: {m} is not a model of the study (its models: {})",
                models
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for (k, at) in spec
        .grid
        .keys()
        .map(|k| (k, "[grid]".to_string()))
        .chain(spec.options.keys().map(|k| (k, "[options]".to_string())))
        .chain(spec.model.iter().flat_map(|(m, t)| {
            t.grid
                .keys()
                .map(move |k| (k, format!("[model.{m}.grid]")))
                .chain(
                    t.options
                        .keys()
                        .map(move |k| (k, format!("[model.{m}.options]"))),
                )
        }))
    {
        if RESERVED.contains(&k.as_str()) {
            return Err(format!(
                "{at} {k}: the study sets --{k} itself (seeds: [study] seeds; run folders: under the study folder)"
            ));
        }
    }
    // The size before building anything.
    let mut total = 0usize;
    for m in &models {
        let mut n = spec.study.seeds.len();
        for vals in axes(spec, m.as_deref()).values() {
            n = n.saturating_mul(vals.len());
        }
        total = total.saturating_add(n);
    }
    if total > MAX_RUNS {
        return Err(format!(
            "[grid]: {total} runs, more than a study takes ({MAX_RUNS})"
        ));
    }
    let mut runs = vec![];
    let mut names = std::collections::BTreeSet::new();
    for &seed in &spec.study.seeds {
        for m in &models {
            let ax = axes(spec, m.as_deref());
            let keys: Vec<&String> = ax.keys().collect();
            let mut idx = vec![0usize; keys.len()];
            loop {
                let mut opts: BTreeMap<String, toml::Value> = spec.options.clone();
                opts.remove("model");
                if let Some(t) = m.as_ref().and_then(|m| spec.model.get(m)) {
                    opts.extend(t.options.clone());
                }
                let mut values = BTreeMap::new();
                let mut parts: Vec<String> = m.iter().cloned().collect();
                for (i, k) in keys.iter().enumerate() {
                    let v = &ax[*k][idx[i]];
                    opts.insert((*k).clone(), v.clone());
                    values.insert((*k).clone(), plain(v));
                    if ax[*k].len() > 1 {
                        parts.push(value_name(k, v)?);
                    }
                }
                let cell = if parts.is_empty() {
                    "all".to_string()
                } else {
                    parts.join("-")
                };
                let name = format!("{cell}-seed{seed}");
                if !names.insert(name.clone()) {
                    return Err(format!("two runs would be named {name}: give the grid values that differ in their names"));
                }
                let mut args = command.clone();
                args.extend(m.iter().cloned());
                for (k, v) in &opts {
                    match v {
                        toml::Value::Boolean(true) => args.push(format!("--{k}")),
                        toml::Value::Boolean(false) => {}
                        toml::Value::Table(_) | toml::Value::Datetime(_) => {
                            return Err(format!(
                                "{}: {v} is not an option value (give a number, a string, true/false or a list)",
                                key_of(spec, m.as_deref(), k).unwrap_or_else(|| k.clone())
                            ))
                        }
                        // One word, so that a negative value stays a value.
                        v => args.push(format!("--{k}={}", plain(v))),
                    }
                }
                runs.push(PlannedRun {
                    name,
                    cell,
                    model: m.clone(),
                    seed,
                    values,
                    args,
                });
                // The next combination (the last key fastest).
                let mut done = true;
                let mut i = keys.len();
                while i > 0 {
                    i -= 1;
                    idx[i] += 1;
                    if idx[i] < ax[keys[i]].len() {
                        done = false;
                        break;
                    }
                    idx[i] = 0;
                }
                if done {
                    break;
                }
            }
        }
    }
    Ok(runs)
}

/// The grid axes of one model: the shared ones, replaced or joined by the
/// model's own.
fn axes(spec: &Spec, model: Option<&str>) -> BTreeMap<String, Vec<toml::Value>> {
    let mut ax: BTreeMap<String, Vec<toml::Value>> = spec.grid.clone();
    ax.remove("model");
    if let Some(t) = model.and_then(|m| spec.model.get(m)) {
        for k in t.options.keys() {
            ax.remove(k);
        }
        ax.extend(t.grid.clone());
    }
    ax
}

/// A value as the command line gives it.
fn plain(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(plain).collect::<Vec<_>>().join(","),
        v => v.to_string(),
    }
}

/// A grid value as a part of a run's name: the option and the value, with
/// only letters, digits, `.` and `_` (`lr0.003`, `data-fashion-mnist`).
fn value_name(k: &str, v: &toml::Value) -> std::result::Result<String, String> {
    let raw = match v {
        toml::Value::Boolean(b) => return Ok(format!("{k}-{}", if *b { "on" } else { "off" })),
        toml::Value::String(s) => Path::new(s)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| s.clone()),
        v => plain(v),
    };
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        return Err(format!("[grid] {k}: an empty value"));
    }
    let key: String = k.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    Ok(if matches!(v, toml::Value::String(_)) {
        format!("{key}_{clean}")
    } else {
        format!("{key}{clean}")
    })
}

/// A study folder, opened (and locked) for `study run` or `study report`.
pub struct Study {
    pub dir: RunDir,
    pub config: StudyConfig,
}

impl Study {
    /// Makes the study folder for `spec_file`'s runs, or reopens it when it
    /// was made from the same spec; a different spec is refused, naming
    /// what changed.
    pub fn create_or_open(
        dir: &Path,
        spec_file: &Path,
        spec: Spec,
        runs: Vec<PlannedRun>,
    ) -> Result<Self> {
        let config = StudyConfig::new(spec_file, spec, runs)?;
        if dir.join(RUN_FILE).is_file() {
            let old = Self::open(dir)?;
            if old.config.spec != config.spec {
                let a = serde_json::to_value(&old.config.spec)?;
                let b = serde_json::to_value(&config.spec)?;
                let changed: Vec<String> = ["study", "grid", "options", "model", "report"]
                    .iter()
                    .filter(|k| a[**k] != b[**k])
                    .map(|k| format!("[{k}]"))
                    .collect();
                return Err(PipelineError::file(
                    dir,
                    format!(
                        "holds a study made from another spec ({} differ from {}): give the study another folder (--out), or run that spec",
                        changed.join(", "),
                        spec_file.display()
                    ),
                ));
            }
            if old.config.cwd != config.cwd {
                return Err(PipelineError::file(
                    dir,
                    format!(
                        "the study's runs read their relative paths from {}: run it from there",
                        old.config.cwd.display()
                    ),
                ));
            }
            return Ok(old);
        }
        let run = RunDir::create(KIND, Some(dir), Reuse::Refuse, &config)?;
        for sub in [RUNS, CLAIMS, LOGS] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| PipelineError::file(&p, e.to_string()))?;
        }
        let text =
            std::fs::read(spec_file).map_err(|e| PipelineError::file(spec_file, e.to_string()))?;
        embedlab_data::atomic::write_atomic(&dir.join(SPEC_COPY), |w| {
            std::io::Write::write_all(w, &text)
        })?;
        Ok(Self { dir: run, config })
    }

    /// Opens an existing study folder, locked.
    pub fn open(dir: &Path) -> Result<Self> {
        let run = RunDir::resume(dir, KIND)?;
        let config = read_config(dir)?;
        Ok(Self { dir: run, config })
    }
}

/// A study's configuration, read without locking it (workers and Slurm
/// tasks read it while `study run` holds the folder).
pub fn read_config(dir: &Path) -> Result<StudyConfig> {
    let info = embedlab_train::run::read_info(dir)?;
    if info.kind != KIND {
        return Err(PipelineError::file(
            dir,
            format!("holds a {} run, not a study", info.kind),
        ));
    }
    let p = dir.join(CONFIG);
    let text = std::fs::read_to_string(&p).map_err(|e| PipelineError::file(&p, e.to_string()))?;
    serde_json::from_str(&text)
        .map_err(|e| PipelineError::file(&p, format!("not a study's configuration: {e}")))
}

/// Where a run of a study stands.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Pending,
    /// Its claim is held (by the holder named).
    Running(String),
    /// Started, not finished, not running: it is resumed.
    Interrupted,
    Finished,
    /// The last attempt failed (the error).
    Failed(String),
}

impl State {
    pub fn word(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running(_) => "running",
            State::Interrupted => "interrupted",
            State::Finished => "finished",
            State::Failed(_) => "failed",
        }
    }
}

/// How a run's last attempt ended (`logs/<run>.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Attempt {
    /// "finished" or "failed".
    pub status: String,
    pub error: Option<String>,
    /// The failure was a loss or metric that became NaN or infinite, or a
    /// loss above the model's ceiling.
    #[serde(default)]
    pub non_finite: bool,
    pub seconds: f64,
    pub ended: String,
    /// Where it ran (host, Slurm job and task).
    pub worker: String,
    /// The process's peak resident memory during the run (MiB; Linux's
    /// VmHWM, reset before the run), what a Slurm task of it needs.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
}

/// Resets this process's peak resident memory (Linux: `clear_refs` 5), so
/// that [`peak_rss_mib`] measures what follows; false where it cannot.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// This process's peak resident memory since start or the last reset, MiB.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run_dir(study: &Path, run: &str) -> PathBuf {
    study.join(RUNS).join(run)
}
fn claim_file(study: &Path, run: &str) -> PathBuf {
    study.join(CLAIMS).join(run)
}
fn attempt_file(study: &Path, run: &str) -> PathBuf {
    study.join(LOGS).join(format!("{run}.json"))
}
/// The output of a run's attempts (when they do not go to a terminal).
pub fn log_file(study: &Path, run: &str) -> PathBuf {
    study.join(LOGS).join(format!("{run}.log"))
}

pub fn attempt(study: &Path, run: &str) -> Option<Attempt> {
    let text = std::fs::read_to_string(attempt_file(study, run)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Where the run `run` of the study in `study` stands, read from its folders.
pub fn state(study: &Path, run: &str) -> State {
    if let Some(h) = claimed(&claim_file(study, run)) {
        return State::Running(h);
    }
    let d = run_dir(study, run);
    if d.join(REPORT).is_file() && d.join(RUN_FILE).is_file() {
        return State::Finished;
    }
    if let Some(a) = attempt(study, run).filter(|a| a.status == "failed") {
        return State::Failed(a.error.unwrap_or_default());
    }
    if d.join(RUN_FILE).is_file() {
        State::Interrupted
    } else {
        State::Pending
    }
}

/// Counts of the states of a study's runs.
pub fn counts(study: &Path, cfg: &StudyConfig) -> BTreeMap<&'static str, usize> {
    let mut c = BTreeMap::new();
    for r in &cfg.runs {
        *c.entry(state(study, &r.name).word()).or_insert(0) += 1;
    }
    c
}

/// Why a run's attempt failed, as the command said.
pub struct RunFailure {
    pub message: String,
    pub non_finite: bool,
}

/// Runs one command line in this process (`embedlab`'s own dispatch).
pub type Exec<'a> = dyn Fn(&[String], &Path) -> std::result::Result<(), RunFailure> + 'a;

/// The command line that continues or starts the run `r` now.
pub fn command_line(study: &Path, cfg: &StudyConfig, r: &PlannedRun) -> Vec<String> {
    let d = run_dir(study, &r.name);
    let command: Vec<String> = cfg
        .spec
        .study
        .command
        .split_whitespace()
        .map(String::from)
        .collect();
    if d.join(RUN_FILE).is_file() {
        // The run keeps its options (and seed) from its folder.
        let mut a = command;
        a.extend(r.model.iter().cloned());
        a.push("--resume".into());
        a.push(d.display().to_string());
        a
    } else {
        let mut a = vec!["--seed".to_string(), r.seed.to_string()];
        a.extend(r.args.iter().cloned());
        a.push("--out".into());
        a.push(d.display().to_string());
        // A folder left without run.json never started: start it again.
        a.push("--overwrite".into());
        a
    }
}

/// What a worker did.
#[derive(Default, Debug)]
pub struct WorkSummary {
    pub finished: Vec<String>,
    pub failed: Vec<String>,
}

/// The name a worker gives itself in attempts: host, and Slurm's job and
/// task when it runs as an array task.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let mut w = format!("{host} pid {}", std::process::id());
    if let (Ok(j), Ok(t)) = (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
    ) {
        w += &format!(" slurm job {j} task {t}");
    }
    w
}

/// Runs the study's runs that are not finished (nor failed, unless
/// `retry_failed`), one after another in this process, skipping those
/// another worker holds; `only` restricts it to one run (a Slurm task).
/// `stop` is polled between runs (a signal asked the worker to stop).
pub fn work(
    study: &Path,
    cfg: &StudyConfig,
    only: Option<&str>,
    retry_failed: bool,
    exec: &Exec,
    stop: &dyn Fn() -> bool,
) -> Result<WorkSummary> {
    let mut out = WorkSummary::default();
    for r in &cfg.runs {
        if only.is_some_and(|o| o != r.name) {
            continue;
        }
        if stop() {
            break;
        }
        match state(study, &r.name) {
            State::Finished | State::Running(_) => continue,
            State::Failed(_) if !retry_failed => continue,
            _ => {}
        }
        let Some(_claim) = claim(&claim_file(study, &r.name))? else {
            continue; // taken by another worker since
        };
        // Checked again under the claim: another worker may have finished it.
        if state(study, &r.name) == State::Finished {
            continue;
        }
        // The last attempt's record goes: a run killed from now on reads
        // as interrupted (resumed), not as that attempt's failure.
        let record = attempt_file(study, &r.name);
        if record.exists() {
            std::fs::remove_file(&record)
                .map_err(|e| PipelineError::file(&record, e.to_string()))?;
        }
        let args = command_line(study, cfg, r);
        let reset = reset_peak_rss();
        let t0 = std::time::Instant::now();
        let res = exec(&args, &log_file(study, &r.name));
        let ok = res.is_ok();
        let (error, non_finite) = match res {
            Ok(()) => (None, false),
            Err(f) => (Some(f.message), f.non_finite),
        };
        // A run stopped by a signal is interrupted, not failed: it resumes.
        if !ok && stop() {
            break;
        }
        let a = Attempt {
            status: if ok { "finished" } else { "failed" }.into(),
            error,
            non_finite,
            seconds: t0.elapsed().as_secs_f64(),
            ended: chrono::Local::now().to_rfc3339(),
            worker: worker_name(),
            peak_rss_mib: if reset { peak_rss_mib() } else { None },
        };
        embedlab_data::atomic::write_json_atomic(&attempt_file(study, &r.name), &a)?;
        if ok {
            out.finished.push(r.name.clone());
        } else {
            out.failed.push(r.name.clone());
        }
    }
    Ok(out)
}

/// A metric's spread over a cell's runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(v: &[f64]) -> Option<Self> {
        let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let (mean, sd, min, max) = embedlab_reports::html::spread(&v);
        Some(Self {
            n: v.len(),
            mean,
            sd,
            min,
            max,
        })
    }
    fn show(&self, unit: &str) -> String {
        let u = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        if self.n == 1 {
            format!("{}{u}", num(self.mean))
        } else {
            format!(
                "{} ± {} ({}–{}){u}",
                num(self.mean),
                num(self.sd),
                num(self.min),
                num(self.max)
            )
        }
    }
}

fn num(v: f64) -> String {
    embedlab_reports::html::fmt_value(v)
}

/// One cell of a study: its runs' outcomes and metrics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Cell {
    pub cell: String,
    pub model: Option<String>,
    pub values: BTreeMap<String, String>,
    pub runs: usize,
    pub finished: usize,
    pub failed: usize,
    /// Stopped by a NaN or infinite loss or metric.
    pub non_finite: usize,
    /// Flagged `diverged` at some epoch.
    pub diverged: usize,
    /// Flagged `collapse` at some epoch.
    pub collapsed: usize,
    /// Rolled back after a NaN at least once.
    pub rolled_back: usize,
    pub metrics: BTreeMap<String, Spread>,
    pub units: BTreeMap<String, String>,
    /// Per threshold: the runs that reached it, and the training seconds
    /// they took.
    pub thresholds: Vec<(String, usize, Option<Spread>)>,
}

/// The numbers at the dotted path `key` of each epoch line of a run's
/// `metrics.jsonl`: (epoch, cumulative training seconds, value).
fn series(dir: &Path, key: &str) -> Vec<(f64, f64, f64)> {
    let Ok(text) = std::fs::read_to_string(dir.join(METRICS)) else {
        return vec![];
    };
    let mut t = 0.0;
    let mut out = vec![];
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(epoch) = v["epoch"].as_f64() else {
            continue;
        };
        t += v["seconds"].as_f64().unwrap_or(0.0);
        let mut x = &v;
        for p in key.split('.') {
            x = &x[p];
        }
        if let Some(y) = x.as_f64() {
            out.push((epoch, t, y));
        }
    }
    out
}

/// Aggregates the study's runs per cell.
pub fn aggregate(study: &Path, cfg: &StudyConfig) -> Vec<Cell> {
    let mut cells: Vec<Cell> = vec![];
    for r in &cfg.runs {
        let i = match cells.iter().position(|c| c.cell == r.cell) {
            Some(i) => i,
            None => {
                let mut values = r.values.clone();
                values.remove("model");
                cells.push(Cell {
                    cell: r.cell.clone(),
                    model: r.model.clone(),
                    values,
                    runs: 0,
                    finished: 0,
                    failed: 0,
                    non_finite: 0,
                    diverged: 0,
                    collapsed: 0,
                    rolled_back: 0,
                    metrics: BTreeMap::new(),
                    units: BTreeMap::new(),
                    thresholds: vec![],
                });
                cells.len() - 1
            }
        };
        cells[i].runs += 1;
    }
    // Values per cell and metric, then spreads.
    let mut vals: Vec<BTreeMap<String, Vec<f64>>> = vec![BTreeMap::new(); cells.len()];
    let mut times: Vec<Vec<(usize, Vec<f64>)>> =
        vec![vec![(0, vec![]); cfg.spec.report.thresholds.len()]; cells.len()];
    for r in &cfg.runs {
        let i = cells
            .iter()
            .position(|c| c.cell == r.cell)
            .expect("made above");
        let c = &mut cells[i];
        let d = run_dir(study, &r.name);
        match state(study, &r.name) {
            State::Finished => c.finished += 1,
            State::Failed(_) => {
                c.failed += 1;
                if attempt(study, &r.name).is_some_and(|a| a.non_finite) {
                    c.non_finite += 1;
                }
            }
            _ => {}
        }
        for (j, th) in cfg.spec.report.thresholds.iter().enumerate() {
            if let Some(p) = series(&d, &th.curve).iter().find(|p| th.reached(p.2)) {
                times[i][j].0 += 1;
                times[i][j].1.push(p.1);
            }
        }
        let Some(rep) = read_report(&d) else {
            continue;
        };
        if rep.value("epochs flagged: diverged").unwrap_or(0.0) > 0.0 {
            c.diverged += 1;
        }
        if rep.value("epochs flagged: collapse").unwrap_or(0.0) > 0.0 {
            c.collapsed += 1;
        }
        if rep.details["training"]["rollbacks"].as_u64().unwrap_or(0) > 0 {
            c.rolled_back += 1;
        }
        for m in &rep.metrics {
            let wanted = if cfg.spec.report.metrics.is_empty() {
                // The flags are counted in their own columns.
                m.better != Better::Neither && !m.name.starts_with("epochs flagged")
            } else {
                cfg.spec.report.metrics.contains(&m.name)
            };
            if wanted {
                vals[i].entry(m.name.clone()).or_default().push(m.value);
                c.units.insert(m.name.clone(), m.unit.clone());
            }
        }
    }
    for (i, c) in cells.iter_mut().enumerate() {
        c.metrics = vals[i]
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), Spread::of(v)?)))
            .collect();
        c.thresholds = cfg
            .spec
            .report
            .thresholds
            .iter()
            .zip(&times[i])
            .map(|(th, (n, t))| (th.label(), *n, Spread::of(t)))
            .collect();
    }
    cells
}

/// The metric names of the study's finished runs' reports.
pub fn metric_names(dir: &Path, cfg: &StudyConfig) -> std::collections::BTreeSet<String> {
    cfg.runs
        .iter()
        .filter_map(|r| read_report(&run_dir(dir, &r.name)))
        .flat_map(|rep| rep.metrics.into_iter().map(|m| m.name))
        .collect()
}

/// Whether some run of the study has logged the series `key` (e.g.
/// `valid.fd`) in its metrics.jsonl.
pub fn has_series(dir: &Path, cfg: &StudyConfig, key: &str) -> bool {
    cfg.runs
        .iter()
        .any(|r| !series(&run_dir(dir, &r.name), key).is_empty())
}

pub(crate) fn read_report(dir: &Path) -> Option<Report> {
    let text = std::fs::read_to_string(dir.join(REPORT)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The study's own report: the cell table (outcomes, metric spreads,
/// thresholds) and the curves drawn per cell; written as the study folder's
/// `report.json` (with the cells in its details), so that the HTML report
/// of the study folder shows it above the runs.
///
/// It takes the folder's report lock (`claims/.report`), not the study's
/// own, so that it can be made while `study run` or Slurm tasks work in
/// the folder: it reads the runs as they stand and writes only its own
/// files, each atomically.
pub fn report(dir: &Path, cfg: &StudyConfig) -> Result<Report> {
    let lock = dir.join(CLAIMS).join(".report");
    let Some(_lock) = claim(&lock)? else {
        return Err(PipelineError::file(
            dir,
            format!(
                "another `study report` is writing it ({})",
                claimed(&lock).unwrap_or_default()
            ),
        ));
    };
    let cells = aggregate(dir, cfg);
    let c = counts(dir, cfg);
    let title = cfg.spec.study.title.clone().unwrap_or_else(|| {
        format!(
            "study {}",
            cfg.spec_file
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        )
    });
    let mut rep = Report::new(KIND, SECTION, title);
    rep.metric("runs", cfg.runs.len() as f64, "", Better::Neither);
    for w in ["finished", "failed", "interrupted", "running", "pending"] {
        rep.metric(w, *c.get(w).unwrap_or(&0) as f64, "", Better::Neither);
    }
    let metric_names: Vec<String> = {
        let mut v: Vec<String> = vec![];
        for cell in &cells {
            for k in cell.metrics.keys() {
                if !v.contains(k) {
                    v.push(k.clone());
                }
            }
        }
        if !cfg.spec.report.metrics.is_empty() {
            v.sort_by_key(|k| cfg.spec.report.metrics.iter().position(|m| m == k));
        }
        v
    };
    let mut columns: Vec<String> = [
        "cell",
        "finished",
        "failed",
        "NaN",
        "diverged",
        "collapsed",
        "rolled back",
    ]
    .map(String::from)
    .to_vec();
    columns.extend(metric_names.iter().cloned());
    columns.extend(
        cfg.spec
            .report
            .thresholds
            .iter()
            .map(|t| format!("time to {}", t.label())),
    );
    let share = |k: usize, n: usize| format!("{k}/{n}");
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|cell| {
            let mut row = vec![
                cell.cell.clone(),
                share(cell.finished, cell.runs),
                share(cell.failed, cell.runs),
                share(cell.non_finite, cell.runs),
                share(cell.diverged, cell.runs),
                share(cell.collapsed, cell.runs),
                share(cell.rolled_back, cell.runs),
            ];
            for m in &metric_names {
                row.push(
                    cell.metrics
                        .get(m)
                        .map(|s| s.show(cell.units.get(m).map(|u| u.as_str()).unwrap_or("")))
                        .unwrap_or_else(|| "–".into()),
                );
            }
            for (_, n, t) in &cell.thresholds {
                row.push(match t {
                    Some(t) => format!("{n}/{}: {}", cell.runs, t.show("s")),
                    None => format!("0/{}", cell.runs),
                });
            }
            row
        })
        .collect();
    rep.tables.push(embedlab_train::Table {
        title: format!(
            "Per cell ({} seeds each): runs finished, failed, stopped by a NaN (or a loss above the model's ceiling), flagged diverged or collapsed, rolled back; metrics as mean ± sd (min–max) over finished runs; training seconds to each threshold",
            cfg.spec.study.seeds.len()
        ),
        columns,
        rows,
        highlight: vec![],
        open: true,
    });
    let mut curves: Vec<String> = cfg.spec.report.curves.clone();
    for t in &cfg.spec.report.thresholds {
        if !curves.contains(&t.curve) {
            curves.push(t.curve.clone());
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    for key in &curves {
        // Per cell, epoch by epoch: the runs' training minutes so far and
        // their values.
        let mut per_cell = vec![];
        for cell in &cells {
            let mut by_epoch: BTreeMap<u64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
            for r in cfg.runs.iter().filter(|r| r.cell == cell.cell) {
                for (e, t, y) in series(&run_dir(dir, &r.name), key) {
                    let (ts, ys) = by_epoch.entry(e as u64).or_default();
                    ts.push(t / 60.0);
                    ys.push(y);
                }
            }
            if !by_epoch.is_empty() {
                per_cell.push((cell.cell.clone(), by_epoch));
            }
        }
        if per_cell.is_empty() {
            continue;
        }
        // The same means against epochs, and against the mean training
        // minutes the runs took to get there (what a budget buys).
        for (x, suffix, what, by_minutes) in [
            ("epoch", "", "per epoch", false),
            (
                "training minutes",
                "-minutes",
                "against training minutes",
                true,
            ),
        ] {
            let lines: Vec<_> = per_cell
                .iter()
                .map(|(name, by_epoch)| embedlab_reports::plot::Series {
                    name: name.clone(),
                    points: by_epoch
                        .iter()
                        .map(|(e, (ts, ys))| {
                            let at = if by_minutes { mean(ts) } else { *e as f64 };
                            (at, mean(ys))
                        })
                        .collect(),
                })
                .collect();
            let png = embedlab_reports::plot::line_chart_png(
                &lines,
                &format!("{key}, mean over seeds"),
                x,
                key,
            )?;
            let file = format!("curve-{}{suffix}.png", key.replace(['.', '/'], "_"));
            embedlab_data::atomic::write_atomic(&dir.join(&file), |w| {
                std::io::Write::write_all(w, &png)
            })?;
            rep.figure(
                file,
                format!("{key} {what}, each cell's mean over its finished and running runs"),
            );
        }
    }
    rep.details = serde_json::json!({ "cells": cells, "spec": cfg.spec });
    embedlab_data::atomic::write_json_atomic(&dir.join(REPORT), &rep)?;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_memory_of_a_run_is_what_it_touched_after_the_reset() {
        // After a reset the peak is about the current size ...
        assert!(reset_peak_rss());
        let start = peak_rss_mib().unwrap();
        // ... 300 MiB touched and freed raise it by that much (other
        // tests' threads can only raise it further) ...
        let big = vec![1u8; 300 << 20];
        assert_eq!(
            big.iter().step_by(4096).map(|&b| b as usize).sum::<usize>(),
            (300 << 20) / 4096
        );
        drop(big);
        let peak = peak_rss_mib().unwrap();
        assert!(peak >= start + 290.0, "{start} → {peak}");
        // ... and the next reset forgets them.
        assert!(reset_peak_rss());
        let after = peak_rss_mib().unwrap();
        assert!(after < peak - 200.0, "{peak} → {after}");
    }
}
