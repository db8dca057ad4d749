//! `embedlab study`: run a grid of runs from a TOML spec, see where it
//! stands, and report it (the logic is `embedlab_pipelines::study`).
use anyhow::Result;
use clap::{Args, CommandFactory, Subcommand};
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
    /// study folder's report.json and report.html.
    Report { dir: PathBuf },
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
        StudyCmd::Report { dir } => {
            let s = Study::open(dir)?;
            let rep = study::report(&s)?;
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

fn run(a: &RunArgs) -> Result<()> {
    let (spec, runs) = study::plan(&a.spec, &check)?;
    let dir = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("studies").join(a.spec.file_stem().unwrap_or_default()));
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
