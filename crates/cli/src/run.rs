//! Run folders: `runs/<kind>-<time>/` holding `config.json`, `env.json`,
//! `metrics.jsonl` and whatever the command writes. Every file is written
//! atomically.
use anyhow::{Context, Result};
use embedlab_data::atomic::{write_atomic, write_json_atomic};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `out`, or `runs/<kind>-<timestamp>` when `out` is None.
    pub fn create(kind: &str, out: Option<&Path>) -> Result<Self> {
        let path = match out {
            Some(p) => p.to_path_buf(),
            None => {
                let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S%.3f");
                PathBuf::from("runs").join(format!("{kind}-{stamp}"))
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create run folder {}", path.display()))?;
        let run = Self { path };
        let metrics = run.file("metrics.jsonl");
        if metrics.exists() {
            std::fs::remove_file(&metrics)
                .with_context(|| format!("cannot start {} afresh", metrics.display()))?;
        }
        run.write_json("env.json", &Env::current())?;
        Ok(run)
    }

    /// Reopens an existing run folder to continue it: `metrics.jsonl` keeps
    /// its lines (less a torn last line, if a crash left one) and new ones
    /// follow them.
    pub fn reopen(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            anyhow::bail!("{}: no such run folder", path.display());
        }
        let run = Self {
            path: path.to_path_buf(),
        };
        let metrics = run.file("metrics.jsonl");
        if metrics.exists() {
            let text = std::fs::read_to_string(&metrics)
                .with_context(|| format!("cannot read {}", metrics.display()))?;
            if !text.is_empty() && !text.ends_with('\n') {
                let keep = text.rfind('\n').map_or(0, |i| i + 1);
                write_atomic(&metrics, |w: &mut dyn Write| {
                    w.write_all(&text.as_bytes()[..keep])
                })?;
            }
        }
        run.write_json("env.json", &Env::current())?;
        Ok(run)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        Ok(write_json_atomic(&self.file(name), value)?)
    }

    /// Appends one JSON line to `metrics.jsonl` (written and synced as
    /// one `write`, so a crash leaves at most a torn last line).
    pub fn log<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let mut line = serde_json::to_string(value)?;
        line.push('\n');
        let path = self.file("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .with_context(|| format!("cannot append to {}", path.display()))?;
        Ok(())
    }
}

/// What a run ran on, saved beside its config.
#[derive(Serialize)]
pub struct Env {
    pub embedlab: &'static str,
    pub tch: &'static str,
    pub libtorch_threads: i32,
    pub cuda_devices: i64,
    pub command_line: Vec<String>,
    pub started: String,
}

impl Env {
    pub fn current() -> Self {
        Self {
            embedlab: env!("CARGO_PKG_VERSION"),
            tch: "0.24",
            libtorch_threads: tch::get_num_threads(),
            cuda_devices: tch::Cuda::device_count(),
            command_line: std::env::args().collect(),
            started: chrono::Local::now().to_rfc3339(),
        }
    }
}
