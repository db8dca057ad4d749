//! Run folders: `runs/<kind>-<time>/` holding `run.json` (what kind of run,
//! which format), `config.json`, `env.json`, `metrics.jsonl`, the
//! checkpoint and whatever the pipeline writes (`report.json`, figures).
//!
//! A run folder is locked while a process writes to it (`.lock`, an
//! advisory lock the kernel drops when the process ends, however it ends),
//! so a second run into the same folder is refused instead of mixing its
//! files with the first's. A folder that already holds anything is not
//! reused unless the caller asks: `resume` continues the run in it,
//! `Reuse::Overwrite` empties it first. Every file is written atomically;
//! temporary files a killed process left behind are removed when the
//! folder is next opened.
use crate::error::{Result, TrainError};
use embedlab_data::atomic::{write_atomic, write_json_atomic};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const RUN_FILE: &str = "run.json";
pub const METRICS: &str = "metrics.jsonl";
pub const CONFIG: &str = "config.json";
pub const LOCK: &str = ".lock";
/// The run-folder format this version writes.
pub const RUN_FORMAT: u32 = 2;

/// `run.json`: what a run folder holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// What made it: `train`, `align-supervised`, `align-unsupervised`, …
    pub kind: String,
    pub format: u32,
    pub embedlab: String,
    pub created: String,
}

/// What to do with an output folder that already holds something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reuse {
    /// Refuse, naming what is there.
    #[default]
    Refuse,
    /// Empty it first (the user asked for it).
    Overwrite,
}

pub struct RunDir {
    pub path: PathBuf,
    pub info: RunInfo,
    /// Holds the folder's lock while this value lives.
    _lock: File,
}

/// What a run was run on, saved beside its config at every start.
#[derive(Serialize)]
pub struct Env {
    pub embedlab: &'static str,
    pub libtorch_threads: i32,
    pub cuda_devices: i64,
    pub command_line: Vec<String>,
    pub started: String,
}

impl Env {
    pub fn current() -> Self {
        Self {
            embedlab: env!("CARGO_PKG_VERSION"),
            libtorch_threads: tch::get_num_threads(),
            cuda_devices: tch::Cuda::device_count(),
            command_line: std::env::args().collect(),
            started: chrono::Local::now().to_rfc3339(),
        }
    }
}

/// Takes the folder's lock, or says who holds it.
fn lock(dir: &Path) -> Result<File> {
    let p = dir.join(LOCK);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&p)
        .map_err(|e| TrainError::io(&p, e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            return Err(TrainError::Locked {
                path: dir.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(TrainError::io(&p, e)),
    }
    // Say who holds it, for the message a second process gets.
    let who = format!(
        "pid {}: {}",
        std::process::id(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let _ = f.set_len(0).and_then(|_| f.write_all(who.as_bytes()));
    Ok(f)
}

/// Removes the temporary files of writes a killed process never finished.
fn remove_temporaries(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".tmp") && e.path().is_file() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn entries_but_lock(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
    Ok(rd
        .flatten()
        .filter(|e| e.file_name() != LOCK)
        .map(|e| e.path())
        .collect())
}

/// Reads `run.json`, naming the file when it is missing or broken.
pub fn read_info(dir: &Path) -> Result<RunInfo> {
    let p = dir.join(RUN_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            TrainError::file(
                dir,
                format!("not a run folder of this embedlab (no {RUN_FILE}; runs made before run format {RUN_FORMAT} have none)"),
            )
        } else {
            TrainError::io(&p, e)
        }
    })?;
    let info: RunInfo = serde_json::from_str(&text)
        .map_err(|e| TrainError::file(&p, format!("not a run description: {e}")))?;
    if info.format != RUN_FORMAT {
        return Err(TrainError::file(
            &p,
            format!(
                "run format {} (this embedlab reads format {RUN_FORMAT})",
                info.format
            ),
        ));
    }
    Ok(info)
}

impl RunDir {
    /// Creates the run folder `out`, or `runs/<kind>-<timestamp>` when
    /// `out` is None, and locks it. An existing folder must be empty,
    /// unless `reuse` is `Overwrite`, which empties it. The run's
    /// configuration is written first and `run.json` last, so that a folder
    /// with `run.json` can always be resumed, and one without it never
    /// started.
    pub fn create<C: Serialize>(
        kind: &str,
        out: Option<&Path>,
        reuse: Reuse,
        config: &C,
    ) -> Result<Self> {
        let path = match out {
            Some(p) => p.to_path_buf(),
            None => {
                let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S%.3f");
                PathBuf::from("runs").join(format!("{kind}-{stamp}"))
            }
        };
        std::fs::create_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        let lock = lock(&path)?;
        let present = entries_but_lock(&path)?;
        if !present.is_empty() {
            match reuse {
                Reuse::Refuse => {
                    let what = match read_info(&path) {
                        Ok(i) => format!("holds a {} run", i.kind),
                        Err(_) => format!("is not empty ({} entries)", present.len()),
                    };
                    return Err(TrainError::file(
                        &path,
                        format!("{what}; continue it with --resume, choose another --out, or pass --overwrite to empty it first"),
                    ));
                }
                Reuse::Overwrite => {
                    for p in present {
                        let r = if p.is_dir() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                        r.map_err(|e| TrainError::io(&p, e))?;
                    }
                }
            }
        }
        let info = RunInfo {
            kind: kind.to_string(),
            format: RUN_FORMAT,
            embedlab: env!("CARGO_PKG_VERSION").to_string(),
            created: chrono::Local::now().to_rfc3339(),
        };
        let run = Self {
            path,
            info,
            _lock: lock,
        };
        run.write_json(CONFIG, config)?;
        run.write_json("env.json", &Env::current())?;
        run.write_json(RUN_FILE, &run.info)?;
        Ok(run)
    }

    /// Reopens the run folder `path` to continue a run of `kind`.
    pub fn resume(path: &Path, kind: &str) -> Result<Self> {
        let run = Self::open(path)?;
        if run.info.kind != kind {
            return Err(TrainError::file(
                path,
                format!("holds a {} run, not a {kind} run", run.info.kind),
            ));
        }
        run.write_json("env.json", &Env::current())?;
        Ok(run)
    }

    /// Opens an existing run folder (to evaluate or analyse it), locked
    /// while the value lives.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Err(TrainError::file(path, "no such run folder"));
        }
        let lock = lock(path)?;
        let info = read_info(path)?;
        remove_temporaries(path);
        Ok(Self {
            path: path.to_path_buf(),
            info,
            _lock: lock,
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        Ok(write_json_atomic(&self.file(name), value)?)
    }

    /// Appends one JSON line to `metrics.jsonl` (written and synced as one
    /// `write`, so a crash leaves at most a torn last line).
    pub fn log<T: Serialize>(&self, value: &T) -> Result<()> {
        let path = self.file(METRICS);
        let mut line = serde_json::to_string(value)
            .map_err(|e| TrainError::file(&path, format!("cannot serialise a line: {e}")))?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| TrainError::io(&path, e))
    }

    /// Replaces `metrics.jsonl` with these lines (atomically): a resumed
    /// run's log is made to agree with its checkpoint, each finished epoch
    /// once and nothing after it.
    pub fn rewrite_metrics<T: Serialize>(&self, lines: &[T]) -> Result<()> {
        let path = self.file(METRICS);
        let mut text = String::new();
        for l in lines {
            text += &serde_json::to_string(l)
                .map_err(|e| TrainError::file(&path, format!("cannot serialise a line: {e}")))?;
            text.push('\n');
        }
        Ok(write_atomic(&path, |w| w.write_all(text.as_bytes()))?)
    }

    /// The lines of `metrics.jsonl` that parse (a torn last line does not).
    pub fn metrics(&self) -> Vec<serde_json::Value> {
        read_metrics(&self.path)
    }
}

/// The lines of a run folder's `metrics.jsonl` that parse.
pub fn read_metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(METRICS))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_folder() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        let first =
            RunDir::create("train", Some(&out), Reuse::Refuse, &serde_json::json!({})).unwrap();
        let e = RunDir::open(&out).err().unwrap().to_string();
        assert!(e.contains("in use by another embedlab process"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        // Released with the value (and with the process, however it ends).
        let again = RunDir::resume(&out, "train").unwrap();
        assert_eq!(again.info.kind, "train");
        drop(again);
        let e = RunDir::resume(&out, "align-supervised")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("holds a train run"), "{e}");
    }

    #[test]
    fn an_occupied_folder_is_reused_only_when_asked() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        {
            let r =
                RunDir::create("train", Some(&out), Reuse::Refuse, &serde_json::json!({})).unwrap();
            std::fs::write(r.file("samples.png"), b"stale").unwrap();
        }
        let e = RunDir::create(
            "align-supervised",
            Some(&out),
            Reuse::Refuse,
            &serde_json::json!({}),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("holds a train run") && e.contains("--overwrite"),
            "{e}"
        );
        let r = RunDir::create(
            "align-supervised",
            Some(&out),
            Reuse::Overwrite,
            &serde_json::json!({}),
        )
        .unwrap();
        assert!(!r.file("samples.png").exists(), "stale files are gone");
        assert_eq!(read_info(&out).unwrap().kind, "align-supervised");
        // A folder with foreign files is not a run, and is not emptied silently either.
        let other = d.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("notes.txt"), b"mine").unwrap();
        let e = RunDir::create("train", Some(&other), Reuse::Refuse, &serde_json::json!({}))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is not empty"), "{e}");
    }

    #[test]
    fn temporaries_are_cleaned_and_metrics_rewritten() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        {
            let r =
                RunDir::create("train", Some(&out), Reuse::Refuse, &serde_json::json!({})).unwrap();
            r.log(&serde_json::json!({"epoch": 1})).unwrap();
            r.log(&serde_json::json!({"epoch": 2})).unwrap();
            std::fs::write(r.file(".checkpoint.safetensors.123.tmp"), b"half").unwrap();
        }
        let r = RunDir::open(&out).unwrap();
        assert!(!r.file(".checkpoint.safetensors.123.tmp").exists());
        assert_eq!(r.metrics().len(), 2);
        r.rewrite_metrics(&[serde_json::json!({"epoch": 1})])
            .unwrap();
        assert_eq!(r.metrics(), vec![serde_json::json!({"epoch": 1})]);
        let e = read_info(d.path()).unwrap_err().to_string();
        assert!(e.contains("not a run folder"), "{e}");
    }
}
