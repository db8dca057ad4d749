//! `embedlab study`: run a grid of runs from a TOML spec, see where it
//! stands, and report it (the logic is `embedlab_pipelines::study`).
use anyhow::Result;
use clap::{Args, CommandFactory, Subcommand};
use embedlab_pipelines::slurm;
use embedlab_pipelines::study::{self, ArgProblem, RunFailure, Study};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum StudyCmd {
    /// Run a study's runs on this machine, N at a time: finished runs are
    /// skipped, interrupted ones resumed.
    Run(RunArgs),
    /// Where a study's runs stand (read from its folders; changes nothing).
    Status {
        /// The study folder.
        dir: PathBuf,
    },
    /// Aggregate a study: per cell, outcomes and metric spreads, in the
    /// study folder's report.json and report.html (it can be made while
    /// the study runs).
    Report {
        dir: PathBuf,
        /// The metrics to aggregate, in this order, instead of the spec's
        /// `[report] metrics` (comma-separated report metric names).
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
        /// The series of the runs' metrics.jsonl to draw per cell, against
        /// epochs and training minutes, instead of the spec's `[report]
        /// curves` (comma-separated, e.g. valid.fd,valid.confident).
        #[arg(long, value_delimiter = ',')]
        curves: Vec<String>,
    },
    /// What the study would cost as a Slurm array at a larger budget, from
    /// what its finished runs cost here: tasks, per-task time and peak
    /// memory, wall time on N nodes (reads the folder; changes nothing).
    Project(ProjectArgs),
    /// Submit a study's unfinished runs to Slurm as one job array
    /// (`--slurm`), or run them here as `study run` does (without it).
    Submit(SubmitArgs),
    /// One Slurm array task: runs the study's run number
    /// $SLURM_ARRAY_TASK_ID; on SIGUSR1 (Slurm's warning before the time
    /// limit) it stops after the current step, keeps the last epoch's
    /// checkpoint and requeues itself.
    #[command(hide = true)]
    Task {
        dir: PathBuf,
        /// Seconds to wait, once warned, for the run to stop before
        /// requeueing anyway.
        #[arg(long, default_value_t = 60, value_parser = embedlab_pipelines::opts::count(1, 86_400))]
        grace_seconds: usize,
        #[arg(long)]
        retry_failed: bool,
    },
    /// One worker of `study run --jobs N` (runs the study's runs one after
    /// another in this process until none is left).
    #[command(hide = true)]
    Work {
        dir: PathBuf,
        #[arg(long)]
        retry_failed: bool,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The study file (TOML; see docs/studies.md).
    pub spec: PathBuf,
    /// The study folder (default studies/<spec name>); run again with the
    /// same spec to continue it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Runs at once (each in a worker process with cores/N libtorch
    /// threads); 1 runs them in this process.
    #[arg(long, default_value_t = 1, value_parser = embedlab_pipelines::opts::count(1, 256))]
    pub jobs: usize,
    /// Run failed runs again too.
    #[arg(long)]
    pub retry_failed: bool,
}

#[derive(Args, Debug)]
pub struct ProjectArgs {
    /// The study folder.
    pub dir: PathBuf,
    /// The budget as a multiple of the measured one: each run's training
    /// time is multiplied by it, its loading and scoring kept.
    #[arg(long, default_value_t = 10.0, value_parser = embedlab_pipelines::opts::scale)]
    pub scale: f64,
    /// Node counts to project the wall time for.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 16, 64], value_parser = embedlab_pipelines::opts::count(1, 100_000))]
    pub nodes: Vec<usize>,
    /// Cores of one node (each task takes the cores its run had here).
    #[arg(long, default_value_t = 32, value_parser = embedlab_pipelines::opts::count(1, 100_000))]
    pub cpus_per_node: usize,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The study file (TOML; see docs/studies.md).
    pub spec: PathBuf,
    /// The study folder (default studies/<spec name>); on a cluster it
    /// must be on a file system every node sees.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Submit with sbatch: one array task per unfinished run.
    #[arg(long)]
    pub slurm: bool,
    /// Print the batch script; write and submit nothing.
    #[arg(long, requires = "slurm")]
    pub dry_run: bool,
    /// Wall time of one task, in minutes (default: [study.slurm] minutes, else 60).
    #[arg(long, requires = "slurm", value_parser = embedlab_pipelines::opts::count(1, 525_600))]
    pub minutes: Option<usize>,
    /// Cores of one task (default: [study.slurm] cpus, else 2).
    #[arg(long, requires = "slurm", value_parser = embedlab_pipelines::opts::count(1, 4096))]
    pub cpus: Option<usize>,
    /// Memory of one task in MiB (default: [study.slurm] mem_mb, else 4096).
    #[arg(long, requires = "slurm", value_parser = embedlab_pipelines::opts::count(64, 16_777_216))]
    pub mem_mb: Option<usize>,
    /// The Slurm partition (default: [study.slurm] partition, else the cluster's default).
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// Array tasks running at once (`--array=…%M`; default: [study.slurm] max_running, else no cap).
    #[arg(long, requires = "slurm", value_parser = embedlab_pipelines::opts::count(1, 100_000))]
    pub max_running: Option<usize>,
    /// Seconds before the time limit at which Slurm warns a task (SIGUSR1)
    /// to checkpoint and requeue itself (default: [study.slurm] signal_seconds, else 120).
    #[arg(long, requires = "slurm", value_parser = embedlab_pipelines::opts::count(0, 86_400))]
    pub signal_seconds: Option<usize>,
    /// Without --slurm: runs at once on this machine, as `study run --jobs`.
    #[arg(long, default_value_t = 1, conflicts_with = "slurm", value_parser = embedlab_pipelines::opts::count(1, 256))]
    pub jobs: usize,
    /// Run failed runs again too.
    #[arg(long)]
    pub retry_failed: bool,
}

/// Parses one run's command line as `embedlab` would.
fn check(args: &[String]) -> std::result::Result<(), ArgProblem> {
    let argv = std::iter::once("embedlab".to_string()).chain(args.iter().cloned());
    match crate::Cli::command().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => Err(ArgProblem {
            argument: match e.get(clap::error::ContextKind::InvalidArg) {
                Some(clap::error::ContextValue::String(s)) => Some(s.clone()),
                _ => None,
            },
            message: e.to_string().replace("error: ", ""),
        }),
    }
}

/// Runs one command line in this process; with `log`, its output goes
/// there (appended) instead of to the terminal.
fn exec(args: &[String], log: Option<&Path>) -> std::result::Result<(), RunFailure> {
    let argv = std::iter::once("embedlab".to_string()).chain(args.iter().cloned());
    let matches = crate::Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| RunFailure {
            message: e.to_string(),
            non_finite: false,
        })?;
    let _redirect = match log {
        Some(p) => Some(Redirect::to(p).map_err(|e| RunFailure {
            message: format!("{}: {e}", p.display()),
            non_finite: false,
        })?),
        None => None,
    };
    crate::dispatch(&matches).map_err(|e| {
        let non_finite = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<embedlab_train::TrainError>(),
                Some(embedlab_train::TrainError::NonFinite { .. })
            ) || matches!(
                c.downcast_ref::<embedlab_pipelines::PipelineError>(),
                Some(embedlab_pipelines::PipelineError::Train(
                    embedlab_train::TrainError::NonFinite { .. }
                ))
            )
        });
        if log.is_some() {
            eprintln!("Error: {e:#}");
        }
        RunFailure {
            message: format!("{e:#}"),
            non_finite,
        }
    })
}

/// Standard output and error sent to a file while it lives.
struct Redirect {
    saved: [i32; 2],
}

impl Redirect {
    fn to(p: &Path) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        // SAFETY: dup/dup2 on the process's own descriptors 1 and 2.
        unsafe {
            let saved = [libc::dup(1), libc::dup(2)];
            libc::dup2(f.as_raw_fd(), 1);
            libc::dup2(f.as_raw_fd(), 2);
            Ok(Self { saved })
        }
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: restores the descriptors saved in `to`.
        unsafe {
            libc::dup2(self.saved[0], 1);
            libc::dup2(self.saved[1], 2);
            libc::close(self.saved[0]);
            libc::close(self.saved[1]);
        }
    }
}

fn status_line(dir: &Path, cfg: &study::StudyConfig) -> String {
    let c = study::counts(dir, cfg);
    let parts: Vec<String> = ["finished", "running", "interrupted", "failed", "pending"]
        .iter()
        .filter_map(|w| c.get(w).map(|n| format!("{n} {w}")))
        .collect();
    format!("{} runs: {}", cfg.runs.len(), parts.join(", "))
}

pub fn study(c: &StudyCmd) -> Result<()> {
    match c {
        StudyCmd::Run(a) => run(a),
        StudyCmd::Status { dir } => {
            let cfg = study::read_config(dir)?;
            println!("{}: {}", dir.display(), status_line(dir, &cfg));
            for j in slurm::submissions(dir) {
                println!(
                    "  slurm job {} (array {}, {} runs, submitted {})",
                    j.job, j.array, j.runs, j.submitted
                );
            }
            for r in &cfg.runs {
                let s = study::state(dir, &r.name);
                let more = match &s {
                    study::State::Running(h) => format!("  ({h})"),
                    study::State::Failed(e) => format!("  ({})", e.lines().next().unwrap_or("")),
                    _ => String::new(),
                };
                println!("  {:<11} {}{more}", s.word(), r.name);
            }
            Ok(())
        }
        StudyCmd::Report {
            dir,
            metrics,
            curves,
        } => {
            let mut cfg = study::read_config(dir)?;
            if !curves.is_empty() {
                for c in curves {
                    if !study::has_series(dir, &cfg, c) {
                        anyhow::bail!(
                            "--curves: no run of {} has logged {c:?} in its metrics.jsonl",
                            dir.display()
                        );
                    }
                }
                cfg.spec.report.curves = curves.clone();
            }
            if !metrics.is_empty() {
                // Checked before anything is written.
                let have = study::metric_names(dir, &cfg);
                for m in metrics {
                    if !have.contains(m) {
                        anyhow::bail!(
                            "--metrics: no finished run of {} has a metric {m:?} (theirs: {})",
                            dir.display(),
                            have.iter().cloned().collect::<Vec<_>>().join(", ")
                        );
                    }
                }
                cfg.spec.report.metrics = metrics.clone();
            }
            let rep = study::report(dir, &cfg)?;
            let html = dir.join("report.html");
            embedlab_reports::html::write_report(
                &html,
                &[dir.clone(), dir.join(study::RUNS)],
                &rep.title,
            )?;
            if let Some(t) = rep.tables.first() {
                println!("{}", t.columns.join(" | "));
                for r in &t.rows {
                    println!("{}", r.join(" | "));
                }
            }
            println!("report: {}", html.display());
            Ok(())
        }
        StudyCmd::Submit(a) => submit(a),
        StudyCmd::Project(a) => project(a),
        StudyCmd::Task {
            dir,
            grace_seconds,
            retry_failed,
        } => task(dir, *grace_seconds, *retry_failed),
        StudyCmd::Work { dir, retry_failed } => {
            let dir = &std::path::absolute(dir)?;
            let cfg = study::read_config(dir)?;
            std::env::set_current_dir(&cfg.cwd)?;
            let exec_logged = |a: &[String], log: &Path| exec(a, Some(log));
            let w = study::work(dir, &cfg, None, *retry_failed, &exec_logged, &|| false)?;
            println!("{} finished, {} failed", w.finished.len(), w.failed.len());
            Ok(())
        }
    }
}

fn study_dir(spec: &Path, out: &Option<PathBuf>) -> PathBuf {
    out.clone()
        .unwrap_or_else(|| PathBuf::from("studies").join(spec.file_stem().unwrap_or_default()))
}

fn submit(a: &SubmitArgs) -> Result<()> {
    if !a.slurm {
        return run(&RunArgs {
            spec: a.spec.clone(),
            out: a.out.clone(),
            jobs: a.jobs,
            retry_failed: a.retry_failed,
        });
    }
    let (spec, runs) = study::plan(&a.spec, &check)?;
    let n = |v: Option<usize>| v.map(|v| v as u32);
    let over = study::SlurmSpec {
        minutes: n(a.minutes),
        cpus: n(a.cpus),
        mem_mb: n(a.mem_mb),
        partition: a.partition.clone(),
        max_running: n(a.max_running),
        signal_seconds: n(a.signal_seconds),
    };
    let res = slurm::Resources::resolve(&spec.study.slurm, &over)?;
    if !a.dry_run && !on_path("sbatch") {
        anyhow::bail!(
            "sbatch is not on PATH: --slurm submits with Slurm's sbatch (install a Slurm client, or leave out --slurm to run the study here)"
        );
    }
    let dir = study_dir(&a.spec, &a.out);
    let exe = std::env::current_exe()?;
    // A dry run of a new study makes no folder; an existing one is opened
    // (so a different spec is refused, as `study run` refuses it).
    let (dir, cfg, _held) = if a.dry_run && !dir.join(embedlab_train::run::RUN_FILE).exists() {
        let dir = std::path::absolute(&dir)?;
        (dir, study::StudyConfig::new(&a.spec, spec, runs)?, None)
    } else {
        let s = Study::create_or_open(&dir, &a.spec, spec, runs)?;
        (std::path::absolute(&dir)?, s.config.clone(), Some(s))
    };
    let ids = slurm::pending_ids(&dir, &cfg, a.retry_failed);
    if ids.is_empty() {
        println!(
            "study {}: nothing to submit ({})",
            dir.display(),
            status_line(&dir, &cfg)
        );
        return Ok(());
    }
    let text = slurm::script(&dir, &cfg, &exe, &res, &ids, a.retry_failed);
    let array = slurm::array_spec(&ids, res.max_running);
    if a.dry_run {
        print!("{text}");
        eprintln!(
            "(dry run: {} array tasks; nothing written, nothing submitted)",
            ids.len()
        );
        return Ok(());
    }
    let sub = slurm::submit(&dir, &text, &array, ids.len())?;
    println!(
        "submitted slurm job {} (array {array}: {} of {} runs; script {})",
        sub.job,
        ids.len(),
        cfg.runs.len(),
        sub.script.display()
    );
    println!(
        "watch: embedlab study status {}   (squeue -j {}); then: embedlab study report {}",
        dir.display(),
        sub.job,
        dir.display()
    );
    Ok(())
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.join(prog))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// One Slurm array task (see [`StudyCmd::Task`]).
fn task(dir: &Path, grace_seconds: usize, retry_failed: bool) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = std::path::absolute(dir)?;
    let cfg = study::read_config(&dir)?;
    std::env::set_current_dir(&cfg.cwd)?;
    let run = slurm::task_run(&cfg)?.clone();
    // SIGTERM (scancel, a requeue by someone else, the time limit) and
    // SIGUSR1 (the warning) both stop the run after its current step;
    // only the warning requeues.
    let stop = embedlab_train::interrupt::stop_flag();
    let warned = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, warned.clone())?;
    let requeued = Arc::new(AtomicBool::new(false));
    {
        // If the run does not stop in time (a long evaluation), requeue
        // anyway: Slurm ends this instance and the run resumes from its
        // last checkpoint.
        let (warned, requeued, dir, name) = (
            warned.clone(),
            requeued.clone(),
            dir.clone(),
            run.name.clone(),
        );
        std::thread::spawn(move || {
            while !warned.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_secs(grace_seconds as u64));
            if study::state(&dir, &name) != study::State::Finished
                && !requeued.swap(true, Ordering::SeqCst)
            {
                match slurm::requeue_self() {
                    Ok(id) => eprintln!("study task: {name} did not stop within {grace_seconds} s of the warning; requeued {id}"),
                    Err(e) => eprintln!("study task: {e:#}"),
                }
            }
        });
    }
    println!(
        "study task: run {} of {}: {} ({})",
        cfg.runs
            .iter()
            .position(|r| r.name == run.name)
            .unwrap_or(0),
        cfg.runs.len(),
        run.name,
        study::worker_name()
    );
    let exec_logged = |a: &[String], log: &Path| exec(a, Some(log));
    let w = study::work(
        &dir,
        &cfg,
        Some(&run.name),
        retry_failed,
        &exec_logged,
        &embedlab_train::interrupt::stop_requested,
    )?;
    let state = study::state(&dir, &run.name);
    if warned.load(Ordering::SeqCst) && state != study::State::Finished {
        if !requeued.swap(true, Ordering::SeqCst) {
            let id = slurm::requeue_self()?;
            println!(
                "study task: warned by Slurm; {} stopped with its last epoch's checkpoint kept; requeued {id}: it resumes when the task starts again",
                run.name
            );
        }
        return Ok(());
    }
    if stop.load(Ordering::SeqCst) && state != study::State::Finished {
        anyhow::bail!(
            "{}: stopped by SIGTERM; the run is interrupted and resumes when its task runs again",
            run.name
        );
    }
    if !w.failed.is_empty() {
        anyhow::bail!(
            "{} failed: see {}",
            run.name,
            study::log_file(&dir, &run.name).display()
        );
    }
    println!("study task: {} is {}", run.name, state.word());
    Ok(())
}

fn run(a: &RunArgs) -> Result<()> {
    let (spec, runs) = study::plan(&a.spec, &check)?;
    let dir = study_dir(&a.spec, &a.out);
    let s = Study::create_or_open(&dir, &a.spec, spec, runs)?;
    let dir = std::path::absolute(&dir)?;
    println!("study {}: {}", dir.display(), status_line(&dir, &s.config));
    if a.jobs == 1 {
        let exec_here = |args: &[String], _log: &Path| {
            eprintln!("\n== {}", args.join(" "));
            exec(args, None)
        };
        let w = study::work(&dir, &s.config, None, a.retry_failed, &exec_here, &|| false)?;
        for f in &w.failed {
            eprintln!("!! {f} failed (study status {} says why)", dir.display());
        }
    } else {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / a.jobs).max(1);
        let exe = std::env::current_exe()?;
        let mut children = vec![];
        for k in 0..a.jobs {
            let log = dir.join(study::LOGS).join(format!("worker-{k}.log"));
            let f = std::fs::File::create(&log)?;
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["--threads", &threads.to_string(), "study", "work"])
                .arg(&dir)
                .stdin(std::process::Stdio::null())
                .stdout(f.try_clone()?)
                .stderr(f);
            if a.retry_failed {
                cmd.arg("--retry-failed");
            }
            // A worker dies with this process (its run resumes next time).
            // SAFETY: prctl in the child before exec.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            children.push(cmd.spawn()?);
            // Workers claim runs in order: a moment apart, each takes its own.
            std::thread::sleep(Duration::from_millis(200));
        }
        let bar = indicatif::ProgressBar::new(s.config.runs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} finished  {msg}")
                .expect("a valid template"),
        );
        loop {
            let done = children
                .iter_mut()
                .all(|c| matches!(c.try_wait(), Ok(Some(_))));
            let c = study::counts(&dir, &s.config);
            bar.set_position(*c.get("finished").unwrap_or(&0) as u64);
            bar.set_message(status_line(&dir, &s.config));
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bar.finish_and_clear();
    }
    println!("study {}: {}", dir.display(), status_line(&dir, &s.config));
    println!("next: embedlab study report {}", dir.display());
    Ok(())
}

fn hms(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn project(a: &ProjectArgs) -> Result<()> {
    use embedlab_pipelines::projection::{by_model, makespan, tasks};
    let cfg = study::read_config(&a.dir)?;
    let t = tasks(&a.dir, &cfg);
    if t.is_empty() {
        anyhow::bail!(
            "{}: no finished run to measure (study status says where its runs stand)",
            a.dir.display()
        );
    }
    let threads = t.iter().filter_map(|t| t.threads).max().unwrap_or(1).max(1) as usize;
    println!(
        "{}: {} of {} runs finished here ({} libtorch thread(s) a run); at {}× their training budget:",
        a.dir.display(),
        t.len(),
        cfg.runs.len(),
        threads,
        a.scale
    );
    println!(
        "| model | tasks | time a task here, mean (max) | at {}×, mean (max) | peak memory |",
        a.scale
    );
    println!("|---|---|---|---|---|");
    let costs = by_model(&t, a.scale);
    for c in &costs {
        println!(
            "| {} | {} | {} ({}) | {} ({}) | {} |",
            c.model,
            c.tasks,
            hms(c.seconds_mean),
            hms(c.seconds_max),
            hms(c.scaled_mean),
            hms(c.scaled_max),
            c.peak_rss_mib.map_or("–".into(), |m| format!("{m:.0} MiB"))
        );
    }
    // The runs not finished here cost what the mean finished run of their
    // model costs (or the overall mean).
    let mean_all = t.iter().map(|x| x.scaled(a.scale)).sum::<f64>() / t.len() as f64;
    let times: Vec<f64> = cfg
        .runs
        .iter()
        .map(|r| match t.iter().find(|x| x.run == r.name) {
            Some(x) => x.scaled(a.scale),
            None => costs
                .iter()
                .find(|c| Some(&c.model) == r.model.as_ref())
                .map_or(mean_all, |c| c.scaled_mean),
        })
        .collect();
    let total: f64 = times.iter().sum();
    let slots = (a.cpus_per_node / threads).max(1);
    println!(
        "{} array tasks, {} task-hours at {}× ({} core-hours); {} tasks a node of {} cores:",
        times.len(),
        format_args!("{:.1}", total / 3600.0),
        a.scale,
        format_args!("{:.1}", total * threads as f64 / 3600.0),
        slots,
        a.cpus_per_node
    );
    for n in &a.nodes {
        println!("  {n:>5} node(s): {}", hms(makespan(&times, n * slots)));
    }
    let longest = times.iter().copied().fold(0.0, f64::max);
    let mem = t.iter().filter_map(|x| x.peak_rss_mib).fold(0.0, f64::max);
    println!(
        "submit with: --cpus {threads} --minutes {} --mem-mb {} (the longest task + 25%, the largest peak + 50%)",
        ((longest * 1.25) / 60.0).ceil().max(1.0) as u64,
        if mem > 0.0 { (mem * 1.5).ceil() as u64 } else { 4096 }
    );
    Ok(())
}
