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
/// `env.json`: the machine, libtorch and build a run was made with.
pub const ENV_FILE: &str = "env.json";
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
    /// Where this process writes: the run folder itself, or, for a run
    /// folder this process may not write (a colleague's, a read-only
    /// mount), a folder elsewhere that read-only commands write into.
    out: PathBuf,
    /// Holds the folder's lock while this value lives (None: opened read
    /// only, nothing written into it).
    _lock: Option<File>,
    /// What opening the folder did that the user must be told (files an
    /// --overwrite removed, outputs sent elsewhere); the caller shows them.
    notes: Vec<String>,
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

/// Who holds a lock, as its holder wrote in the lock file.
fn holder(lock_file: &Path) -> Option<String> {
    std::fs::read_to_string(lock_file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Takes the exclusive lock of the file `path` (created if missing) without
/// waiting: None while another process holds it. The lock lasts as long as
/// the returned file (a study's claim on one of its runs).
pub fn claim(path: &Path) -> Result<Option<File>> {
    match lock_file(path, path) {
        Ok(f) => Ok(Some(f)),
        Err(TrainError::Locked { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Who holds the lock of the file `path`, when someone does (found without
/// creating or changing anything).
pub fn claimed(path: &Path) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    match f.try_lock_shared() {
        Err(std::fs::TryLockError::WouldBlock) => {
            Some(holder(path).unwrap_or_else(|| "another process".into()))
        }
        _ => None,
    }
}

/// Takes the folder's lock, or says who holds it.
fn lock(dir: &Path) -> Result<File> {
    lock_file(&dir.join(LOCK), dir)
}

/// Takes the lock of the file `p` (for `what`), or says who holds it.
fn lock_file(p: &Path, what: &Path) -> Result<File> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(p)
        .map_err(|e| TrainError::io(p, e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(TrainError::Locked {
                path: what.to_path_buf(),
                holder: holder(p),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(TrainError::io(p, e)),
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

/// The error a second process gets while another holds `dir`'s lock,
/// found without creating or changing anything (for checks made before
/// this process takes the lock itself).
fn busy(dir: &Path) -> Option<TrainError> {
    let p = dir.join(LOCK);
    let f = std::fs::File::open(&p).ok()?;
    match f.try_lock_shared() {
        Err(std::fs::TryLockError::WouldBlock) => Some(TrainError::Locked {
            path: dir.to_path_buf(),
            holder: holder(&p),
        }),
        _ => None,
    }
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

/// Whether this process can create files in `dir` (tried, not guessed from
/// permission bits: root, ACLs and read-only mounts all answer truly).
fn writable(dir: &Path) -> bool {
    tempfile::Builder::new()
        .prefix(".embedlab-probe")
        .tempfile_in(dir)
        .is_ok()
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

/// What `--overwrite` may remove from `path` before a new `kind` run is
/// made there, or why it must not: only an embedlab run folder of the same
/// kind is ever emptied — not a symbolic link (never followed out), not the
/// current folder or one above it, not a folder holding another run, not a
/// folder holding one of the new run's own inputs, not a folder without
/// `run.json`. Returns the entries it would remove (none: nothing there).
pub fn check_overwrite(path: &Path, kind: &str, inputs: &[&Path]) -> Result<Vec<PathBuf>> {
    let refuse = |why: String| {
        Err(TrainError::file(
            path,
            format!("--overwrite refused: {why}; nothing was removed"),
        ))
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(TrainError::io(path, e)),
    };
    if meta.file_type().is_symlink() {
        return refuse("it is a symbolic link, and --overwrite never follows a link out of the folder it names".into());
    }
    if !meta.is_dir() {
        return refuse("it is a file, not a run folder".into());
    }
    let canon = path.canonicalize().map_err(|e| TrainError::io(path, e))?;
    if let Ok(cwd) = std::env::current_dir().and_then(|c| c.canonicalize()) {
        if cwd.starts_with(&canon) {
            return refuse("it is the current folder or holds it".into());
        }
    }
    let present = entries_but_lock(path)?;
    if present.is_empty() {
        return Ok(vec![]);
    }
    let info = match read_info(path) {
        Ok(i) => i,
        Err(_) if never_started(&present) => return Ok(present),
        Err(_) => {
            return refuse(format!(
                "it is not an embedlab run folder (no readable {RUN_FILE}), and --overwrite only replaces run folders; it holds {}",
                names(&present)
            ))
        }
    };
    if info.kind != kind {
        return refuse(format!(
            "it holds a {} run, and --overwrite replaces only a {kind} run",
            info.kind
        ));
    }
    if let Some(inner) = nested_run(path)? {
        return refuse(format!("it holds another run folder, {}", inner.display()));
    }
    for input in inputs {
        if let Ok(c) = input.canonicalize() {
            if c.starts_with(&canon) {
                return refuse(format!(
                    "it holds {}, an input of the new run",
                    input.display()
                ));
            }
        }
    }
    Ok(present)
}

/// Whether `present` is what [`RunDir::create`] leaves when it is stopped
/// before `run.json` is written: the configuration, the environment, and the
/// temporary files of those writes — a run that never started, which
/// `--overwrite` may replace whatever kind it was to be.
fn never_started(present: &[PathBuf]) -> bool {
    const FIRST: [&str; 2] = [CONFIG, ENV_FILE];
    present.iter().all(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().to_string());
        let Some(name) = name.filter(|_| p.is_file()) else {
            return false;
        };
        FIRST.contains(&name.as_str())
            || FIRST.iter().any(|f| {
                name.strip_prefix('.')
                    .and_then(|r| r.strip_prefix(f))
                    .and_then(|r| r.strip_prefix('.'))
                    .and_then(|r| r.strip_suffix(".tmp"))
                    .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            })
    })
}

/// A run folder below `dir` (not `dir` itself), found without following links.
fn nested_run(dir: &Path) -> Result<Option<PathBuf>> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| TrainError::io(&d, e))?;
        for e in rd.flatten() {
            let ft = e
                .file_type()
                .map_err(|err| TrainError::io(&e.path(), err))?;
            if ft.is_dir() {
                if e.path().join(RUN_FILE).exists() {
                    return Ok(Some(e.path()));
                }
                stack.push(e.path());
            }
        }
    }
    Ok(None)
}

fn names(paths: &[PathBuf]) -> String {
    let mut n: Vec<String> = paths
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .collect();
    n.sort();
    let more = n.len().saturating_sub(8);
    n.truncate(8);
    let mut s = n.join(", ");
    if more > 0 {
        s += &format!(" and {more} more");
    }
    format!("{} entries ({s})", paths.len())
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
        Self::create_with_inputs(kind, out, reuse, config, &[])
    }

    /// [`RunDir::create`] for a run that reads `inputs` (its data, a
    /// classifier run): `--overwrite` never removes a folder holding one.
    /// Every refusal comes before anything is written.
    pub fn create_with_inputs<C: Serialize>(
        kind: &str,
        out: Option<&Path>,
        reuse: Reuse,
        config: &C,
        inputs: &[&Path],
    ) -> Result<Self> {
        let path = match out {
            Some(p) => p.to_path_buf(),
            None => {
                let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S%.3f");
                PathBuf::from("runs").join(format!("{kind}-{stamp}"))
            }
        };
        Self::check_target(&path, kind, reuse, inputs)?;
        std::fs::create_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        let lock = lock(&path)?;
        // Checked again under the lock: what is there now is what goes.
        let remove = Self::target_entries(&path, kind, reuse, inputs)?;
        let mut notes = vec![];
        if !remove.is_empty() {
            notes.push(format!(
                "--overwrite: removing the {kind} run in {}: {}",
                path.display(),
                names(&remove)
            ));
            for p in remove {
                let ft = std::fs::symlink_metadata(&p).map_err(|e| TrainError::io(&p, e))?;
                let r = if ft.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(|e| TrainError::io(&p, e))?;
            }
        }
        let info = RunInfo {
            kind: kind.to_string(),
            format: RUN_FORMAT,
            embedlab: env!("CARGO_PKG_VERSION").to_string(),
            created: chrono::Local::now().to_rfc3339(),
        };
        let run = Self {
            out: path.clone(),
            path,
            info,
            _lock: Some(lock),
            notes,
        };
        run.write_json(CONFIG, config)?;
        run.write_json(ENV_FILE, &Env::current())?;
        run.write_json(RUN_FILE, &run.info)?;
        Ok(run)
    }

    /// Refuses an output folder that is a file or holds something (unless
    /// overwriting it is allowed); returns what overwriting removes.
    pub fn check_target(
        path: &Path,
        kind: &str,
        reuse: Reuse,
        inputs: &[&Path],
    ) -> Result<Vec<PathBuf>> {
        if let Some(e) = busy(path) {
            return Err(e);
        }
        Self::target_entries(path, kind, reuse, inputs)
    }

    /// [`RunDir::check_target`] without the lock test (for the holder).
    fn target_entries(
        path: &Path,
        kind: &str,
        reuse: Reuse,
        inputs: &[&Path],
    ) -> Result<Vec<PathBuf>> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(TrainError::io(path, e)),
            Ok(m) if !m.is_dir() && !m.file_type().is_symlink() => {
                return Err(TrainError::file(
                    path,
                    "is a file, not a folder: choose another --out",
                ))
            }
            Ok(_) => {}
        }
        match reuse {
            Reuse::Overwrite => check_overwrite(path, kind, inputs),
            Reuse::Refuse => {
                if !path.is_dir() {
                    return Err(TrainError::file(
                        path,
                        "is a link to something that is not a folder: choose another --out",
                    ));
                }
                let present = entries_but_lock(path)?;
                if present.is_empty() {
                    return Ok(vec![]);
                }
                let what = match read_info(path) {
                    Ok(i) => format!("holds a {} run", i.kind),
                    Err(_) => format!("is not empty ({} entries)", present.len()),
                };
                Err(TrainError::file(
                    path,
                    format!("{what}; continue it with --resume, choose another --out, or pass --overwrite to empty it first"),
                ))
            }
        }
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
        if run.read_only() {
            return Err(TrainError::file(
                path,
                "is read-only for this user: a run cannot be continued in it (copy it to continue it)",
            ));
        }
        Ok(run)
    }

    /// Saves what this invocation runs on (`env.json`); a resumed run calls
    /// it once its checks have passed, so a refused resume changes nothing.
    pub fn record_env(&self) -> Result<()> {
        self.write_json(ENV_FILE, &Env::current())
    }

    /// Opens an existing run folder (to evaluate or analyse it), locked
    /// while the value lives. A folder this process may not write (another
    /// user's run, a read-only mount) opens read only: nothing is written
    /// into it, and what the command writes goes to [`RunDir::out_dir`], a
    /// folder of the same name under `embedlab-outputs/` here (or under
    /// the temporary folder when this folder is not writable either).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Err(TrainError::file(path, "no such run folder"));
        }
        let lock = match lock(path) {
            Ok(l) => Some(l),
            Err(TrainError::File { .. }) if !writable(path) => None,
            Err(e) => return Err(e),
        };
        let info = read_info(path)?;
        let mut notes = vec![];
        let out = match lock {
            Some(_) => {
                remove_temporaries(path);
                path.to_path_buf()
            }
            None => {
                let name = path
                    .canonicalize()
                    .ok()
                    .and_then(|c| c.file_name().map(|n| n.to_owned()))
                    .unwrap_or_else(|| "run".into());
                let here = PathBuf::from("embedlab-outputs").join(&name);
                let out = if std::fs::create_dir_all(&here).is_ok() && writable(&here) {
                    here
                } else {
                    let t = std::env::temp_dir().join("embedlab-outputs").join(&name);
                    std::fs::create_dir_all(&t).map_err(|e| TrainError::io(&t, e))?;
                    t
                };
                notes.push(format!(
                    "{} is read-only for this user: opened without writing into it; this command's outputs go to {}",
                    path.display(),
                    out.display()
                ));
                out
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            info,
            out,
            _lock: lock,
            notes,
        })
    }

    /// A sub-folder `name` of this run for one part of it (one restart's
    /// trainer files: checkpoint, best weights, epoch log), created if
    /// missing. It has no `run.json` of its own — it is not a run, so
    /// `--overwrite` of this run removes it with the rest — and it is
    /// covered by this run's lock (the returned value holds a handle of it).
    pub fn part(&self, name: &str) -> Result<Self> {
        let path = self.path.join(name);
        let lock = match &self._lock {
            Some(f) => f.try_clone().map_err(|e| TrainError::io(&self.path, e))?,
            None => {
                return Err(TrainError::file(
                    &self.path,
                    "is read-only for this user: a run cannot be continued in it (copy it to continue it)",
                ))
            }
        };
        std::fs::create_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        Ok(Self {
            out: path.clone(),
            path,
            info: self.info.clone(),
            _lock: Some(lock),
            notes: vec![],
        })
    }

    /// What opening the folder did that the user must be told: files an
    /// `--overwrite` removed, outputs sent elsewhere for a read-only run.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Whether this process writes into the run folder itself.
    pub fn read_only(&self) -> bool {
        self._lock.is_none()
    }

    /// Where this process's outputs go (the run folder unless it is read only).
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    /// A file of the run folder (to read).
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Where an output file of this process goes.
    pub fn out_file(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        Ok(write_json_atomic(&self.out_file(name), value)?)
    }

    /// Writes `report.json` and adds its figures (PNG grids, charts) to the
    /// folder's TensorBoard events as images, at the last step logged.
    pub fn write_report(&self, report: &crate::report::Report) -> Result<()> {
        self.write_json(crate::report::REPORT, report)?;
        let step = self
            .metrics()
            .iter()
            .filter_map(|l| crate::tensorboard::scalars_of(l).0)
            .max()
            .unwrap_or(0);
        let images: Vec<(String, PathBuf)> = report
            .figures
            .iter()
            .filter(|f| f.file.ends_with(".png"))
            .map(|f| {
                let tag = f.file.trim_end_matches(".png").to_string();
                (tag, self.out_file(&f.file))
            })
            .collect();
        crate::tensorboard::add_images(&self.out, step, &images)
    }

    /// Appends one JSON line to `metrics.jsonl` (written and synced as one
    /// `write`, so a crash leaves at most a torn last line).
    /// The line is also an event of the folder's TensorBoard file
    /// ([`crate::tensorboard`]).
    pub fn log<T: Serialize>(&self, value: &T) -> Result<()> {
        let path = self.out_file(METRICS);
        let bad =
            |e: serde_json::Error| TrainError::file(&path, format!("cannot serialise a line: {e}"));
        // The line keeps its fields' order; the event reads them by name.
        let mut line = serde_json::to_string(value).map_err(bad)?;
        let value = serde_json::to_value(value).map_err(bad)?;
        line.push('\n');
        let position = std::fs::read(&path)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| TrainError::io(&path, e))?;
        crate::tensorboard::append(&self.out, &value, position)
    }

    /// Replaces `metrics.jsonl` with these lines (atomically): a resumed
    /// run's log is made to agree with its checkpoint, each finished epoch
    /// once and nothing after it. The TensorBoard file is rewritten too.
    pub fn rewrite_metrics<T: Serialize>(&self, lines: &[T]) -> Result<()> {
        let path = self.out_file(METRICS);
        let bad =
            |e: serde_json::Error| TrainError::file(&path, format!("cannot serialise a line: {e}"));
        let mut text = String::new();
        let mut values = Vec::with_capacity(lines.len());
        for l in lines {
            text += &serde_json::to_string(l).map_err(bad)?;
            text.push('\n');
            values.push(serde_json::to_value(l).map_err(bad)?);
        }
        write_atomic(&path, |w| w.write_all(text.as_bytes()))?;
        crate::tensorboard::rewrite(&self.out, &values)
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
        // Another kind of run is not replaced.
        let e = RunDir::create(
            "align-supervised",
            Some(&out),
            Reuse::Overwrite,
            &serde_json::json!({}),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("replaces only a align-supervised run"), "{e}");
        assert!(out.join("samples.png").exists(), "nothing was removed");
        let r = RunDir::create(
            "train",
            Some(&out),
            Reuse::Overwrite,
            &serde_json::json!({}),
        )
        .unwrap();
        assert!(!r.file("samples.png").exists(), "stale files are gone");
        assert_eq!(read_info(&out).unwrap().kind, "train");
        drop(r);
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

    fn make_run(p: &Path) {
        drop(RunDir::create("train", Some(p), Reuse::Refuse, &serde_json::json!({})).unwrap());
        std::fs::write(p.join("best.safetensors"), b"weights").unwrap();
    }

    fn refused(p: &Path, inputs: &[&Path]) -> String {
        RunDir::create_with_inputs(
            "train",
            Some(p),
            Reuse::Overwrite,
            &serde_json::json!({}),
            inputs,
        )
        .err()
        .expect("refused")
        .to_string()
    }

    #[test]
    fn overwrite_removes_only_a_run_folder_of_its_kind() {
        let d = tempfile::tempdir().unwrap();
        // A user's folder: refused, untouched, no lock left in it.
        let u = d.path().join("u");
        std::fs::create_dir(&u).unwrap();
        std::fs::write(u.join("thesis.tex"), b"precious").unwrap();
        let e = refused(&u, &[]);
        assert!(
            e.contains("not an embedlab run folder") && e.contains("thesis.tex"),
            "{e}"
        );
        let e = RunDir::create("train", Some(&u), Reuse::Refuse, &serde_json::json!({}))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is not empty"), "{e}");
        let left: Vec<_> = std::fs::read_dir(&u)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("thesis.tex")],
            "a refusal writes nothing"
        );
        // A run stopped before run.json (its config, env and a half-written
        // temporary): it never started, and --overwrite replaces it; a user
        // file beside those leftovers makes it a user's folder again.
        let unborn = d.path().join("unborn");
        std::fs::create_dir(&unborn).unwrap();
        std::fs::write(unborn.join(CONFIG), b"{}").unwrap();
        std::fs::write(unborn.join(".env.json.9874.tmp"), b"{\"ha").unwrap();
        let r = RunDir::create("vae", Some(&unborn), Reuse::Overwrite, &1).unwrap();
        assert!(r.file(RUN_FILE).is_file() && !unborn.join(".env.json.9874.tmp").exists());
        drop(r);
        std::fs::remove_file(unborn.join(RUN_FILE)).unwrap();
        std::fs::write(unborn.join(".notes.txt.1.tmp"), b"mine").unwrap();
        let e = refused(&unborn, &[]);
        assert!(e.contains("not an embedlab run folder"), "{e}");
        // A symbolic link to a run: never followed.
        let run = d.path().join("run");
        make_run(&run);
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&run, &link).unwrap();
        let e = refused(&link, &[]);
        assert!(e.contains("symbolic link"), "{e}");
        assert!(run.join("best.safetensors").exists());
        // A run holding another run.
        let outer = d.path().join("outer");
        make_run(&outer);
        make_run(&outer.join("deep/inner"));
        let e = refused(&outer, &[]);
        assert!(
            e.contains("another run folder") && e.contains("inner"),
            "{e}"
        );
        assert!(outer.join("deep/inner/best.safetensors").exists());
        // A run holding the new run's own input.
        let withdata = d.path().join("withdata");
        make_run(&withdata);
        std::fs::create_dir(withdata.join("images")).unwrap();
        let e = refused(&withdata, &[&withdata.join("images")]);
        assert!(e.contains("an input of the new run"), "{e}");
        let e = refused(&withdata, &[&withdata]);
        assert!(e.contains("an input of the new run"), "{e}");
        // A file given as the folder, with or without --overwrite.
        let f = d.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(refused(&f, &[]).contains("is a file"));
        let e = RunDir::create("train", Some(&f), Reuse::Refuse, &serde_json::json!({}))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is a file, not a folder"), "{e}");
        // The run itself is replaced.
        let r = RunDir::create_with_inputs(
            "train",
            Some(&run),
            Reuse::Overwrite,
            &serde_json::json!({}),
            &[],
        )
        .unwrap();
        assert!(!r.file("best.safetensors").exists());
    }
}
