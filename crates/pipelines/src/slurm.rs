//! A study as one Slurm job array: the batch script (`--array=…%M`, one
//! task per unfinished run, the task id selecting the run by its place in
//! the study), its submission with `sbatch`, and what a task does when
//! Slurm warns it (`--signal=B:USR1@s`): stop after the current round,
//! keep the last epoch's checkpoint and requeue itself with
//! `scontrol requeue`, so the requeued task resumes the run.
//!
//! The tasks run the same binary on the same study folder as
//! `study run`: the folder must be on a file system every node sees, and
//! a task claims its run with the same file lock a local worker takes.
use crate::study::{self, StudyConfig, LOGS};
use crate::{PipelineError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The study folder's sub-folder of batch scripts and submissions.
pub const SLURM: &str = "slurm";
/// One line per submission: job id, script, tasks.
pub const JOBS: &str = "jobs.jsonl";

/// Per-task resources: the spec's `[study.slurm]`, each overridable on the
/// command line, with defaults for what neither gives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub minutes: u32,
    pub cpus: u32,
    pub mem_mb: u32,
    pub partition: Option<String>,
    pub max_running: Option<u32>,
    pub signal_seconds: u32,
}

impl Resources {
    pub const DEFAULT_MINUTES: u32 = 60;
    pub const DEFAULT_CPUS: u32 = 2;
    pub const DEFAULT_MEM_MB: u32 = 4096;
    pub const DEFAULT_SIGNAL_SECONDS: u32 = 120;

    /// `over` (the command line) over `spec` over the defaults; refuses
    /// values Slurm would take but that cannot work, naming the option.
    pub fn resolve(spec: &study::SlurmSpec, over: &study::SlurmSpec) -> Result<Self> {
        let r = Self {
            minutes: over
                .minutes
                .or(spec.minutes)
                .unwrap_or(Self::DEFAULT_MINUTES),
            cpus: over.cpus.or(spec.cpus).unwrap_or(Self::DEFAULT_CPUS),
            mem_mb: over.mem_mb.or(spec.mem_mb).unwrap_or(Self::DEFAULT_MEM_MB),
            partition: over.partition.clone().or_else(|| spec.partition.clone()),
            max_running: over.max_running.or(spec.max_running),
            signal_seconds: over
                .signal_seconds
                .or(spec.signal_seconds)
                .unwrap_or(Self::DEFAULT_SIGNAL_SECONDS),
        };
        let bad = |what: &str, why: String| {
            Err(PipelineError::Invalid(format!(
                "{what} (--{} or [study.slurm] {}): {why}",
                what.replace('_', "-"),
                what
            )))
        };
        if r.minutes == 0 {
            return bad("minutes", "a task needs at least 1 minute".into());
        }
        if r.cpus == 0 {
            return bad("cpus", "a task needs at least 1 core".into());
        }
        if r.mem_mb < 64 {
            return bad(
                "mem_mb",
                format!("{} MiB is too little for libtorch", r.mem_mb),
            );
        }
        if r.max_running == Some(0) {
            return bad(
                "max_running",
                "0 would never run a task; leave it out for no cap".into(),
            );
        }
        if u64::from(r.signal_seconds) >= u64::from(r.minutes) * 60 {
            return bad(
                "signal_seconds",
                format!(
                    "{} s before the end of a {}-minute task is before it starts",
                    r.signal_seconds, r.minutes
                ),
            );
        }
        if let Some(p) = &r.partition {
            if p.is_empty()
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.,".contains(c))
            {
                return bad("partition", format!("{p:?} is not a partition name"));
            }
        }
        Ok(r)
    }
}

/// Slurm's `--array` value for these task ids: ranges of consecutive ids,
/// and `%M` to cap how many run at once.
pub fn array_spec(ids: &[usize], max_running: Option<u32>) -> String {
    let mut parts: Vec<String> = vec![];
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    let mut s = parts.join(",");
    if let Some(m) = max_running {
        s += &format!("%{m}");
    }
    s
}

/// The task ids (places in the study) of the runs a submission runs: the
/// ones not finished, not failed unless `retry_failed`, not running.
pub fn pending_ids(dir: &Path, cfg: &StudyConfig, retry_failed: bool) -> Vec<usize> {
    cfg.runs
        .iter()
        .enumerate()
        .filter(|(_, r)| match study::state(dir, &r.name) {
            study::State::Finished | study::State::Running(_) => false,
            study::State::Failed(_) => retry_failed,
            _ => true,
        })
        .map(|(i, _)| i)
        .collect()
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-.,:=+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A job name Slurm shows: `embedlab-<folder name>`.
fn job_name(dir: &Path) -> String {
    let n: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("embedlab-{n}")
}

/// Seconds a warned task waits for its run to stop before it requeues
/// itself anyway (Slurm then ends it, and the run resumes from its last
/// checkpoint): half the warning.
pub fn grace_seconds(res: &Resources) -> u32 {
    (res.signal_seconds / 2).max(1)
}

/// The batch script of one job array over `ids`. The script `exec`s
/// embedlab, so the batch shell *is* embedlab and receives Slurm's
/// `B:USR1` warning itself.
pub fn script(
    dir: &Path,
    cfg: &StudyConfig,
    exe: &Path,
    res: &Resources,
    ids: &[usize],
    retry_failed: bool,
) -> String {
    let out = dir.join(LOGS).join("slurm-%A_%a.out");
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "# embedlab study {}: {} of its {} runs as one job array (made by `embedlab study submit --slurm`)\n",
        dir.display(),
        ids.len(),
        cfg.runs.len()
    );
    let mut opt = |k: &str, v: String| s += &format!("#SBATCH --{k}={v}\n");
    opt("job-name", job_name(dir));
    opt("array", array_spec(ids, res.max_running));
    opt("ntasks", "1".into());
    opt("cpus-per-task", res.cpus.to_string());
    opt("mem", format!("{}M", res.mem_mb));
    opt("time", res.minutes.to_string());
    if let Some(p) = &res.partition {
        opt("partition", p.clone());
    }
    opt("signal", format!("B:USR1@{}", res.signal_seconds));
    opt("output", quote(&out.display().to_string()));
    opt("open-mode", "append".into());
    opt("chdir", quote(&cfg.cwd.display().to_string()));
    s += "#SBATCH --requeue\n";
    s += &format!(
        "# task i runs the study's run number i (runs in the order of `embedlab study status`);\n# USR1 {} s before the time limit: embedlab stops after its current step, keeps the\n# last epoch's checkpoint and requeues this task, which then resumes the run.\n",
        res.signal_seconds
    );
    s += &format!(
        "exec {} --threads \"${{SLURM_CPUS_PER_TASK:-1}}\" study task {} --grace-seconds {}{}\n",
        quote(&exe.display().to_string()),
        quote(&dir.display().to_string()),
        grace_seconds(res),
        if retry_failed { " --retry-failed" } else { "" }
    );
    s
}

/// One submission, as `slurm/jobs.jsonl` records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Submission {
    pub job: String,
    pub script: PathBuf,
    pub array: String,
    pub runs: usize,
    pub submitted: String,
}

/// The study's submissions so far.
pub fn submissions(dir: &Path) -> Vec<Submission> {
    std::fs::read_to_string(dir.join(SLURM).join(JOBS))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Writes the script under `slurm/`, submits it with `sbatch --parsable`
/// and records the job; returns the submission.
pub fn submit(dir: &Path, text: &str, array: &str, runs: usize) -> Result<Submission> {
    let folder = dir.join(SLURM);
    std::fs::create_dir_all(&folder).map_err(|e| PipelineError::file(&folder, e.to_string()))?;
    let n = submissions(dir).len() + 1;
    let script = folder.join(format!("array-{n}.sh"));
    embedlab_data::atomic::write_atomic(&script, |w| {
        std::io::Write::write_all(w, text.as_bytes())
    })?;
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(&script)
        .output()
        .map_err(|e| PipelineError::Invalid(format!("sbatch {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(PipelineError::file(
            &script,
            format!(
                "sbatch refused it ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job = stdout
        .trim()
        .split(';')
        .next()
        .filter(|j| !j.is_empty() && j.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| {
            PipelineError::Invalid(format!(
                "sbatch --parsable printed {:?}, not a job id",
                stdout.trim()
            ))
        })?
        .to_string();
    let sub = Submission {
        job,
        script,
        array: array.to_string(),
        runs,
        submitted: chrono::Local::now().to_rfc3339(),
    };
    let jobs = folder.join(JOBS);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&jobs)
        .map_err(|e| PipelineError::file(&jobs, e.to_string()))?;
    let line = serde_json::to_string(&sub)? + "\n";
    std::io::Write::write_all(&mut f, line.as_bytes())
        .map_err(|e| PipelineError::file(&jobs, e.to_string()))?;
    Ok(sub)
}

/// The array task id this process runs as (`SLURM_ARRAY_TASK_ID`), checked
/// against the study's runs.
pub fn task_run(cfg: &StudyConfig) -> Result<&study::PlannedRun> {
    let v = std::env::var("SLURM_ARRAY_TASK_ID").map_err(|_| {
        PipelineError::Invalid(
            "SLURM_ARRAY_TASK_ID is not set: `study task` is what a Slurm array task runs; here, use `study run`".into(),
        )
    })?;
    let i: usize = v.trim().parse().map_err(|_| {
        PipelineError::Invalid(format!("SLURM_ARRAY_TASK_ID={v:?} is not a task id"))
    })?;
    cfg.runs.get(i).ok_or_else(|| {
        PipelineError::Invalid(format!(
            "SLURM_ARRAY_TASK_ID={i}, but the study has {} runs (0–{})",
            cfg.runs.len(),
            cfg.runs.len().saturating_sub(1)
        ))
    })
}

/// Puts this array task back in Slurm's queue (`scontrol requeue
/// <job>_<task>`); Slurm then ends this instance and starts it again later.
pub fn requeue_self() -> Result<String> {
    let id = match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
    ) {
        (Ok(j), Ok(t)) => format!("{j}_{t}"),
        _ => std::env::var("SLURM_JOB_ID").map_err(|_| {
            PipelineError::Invalid("not a Slurm job (no SLURM_JOB_ID): nothing to requeue".into())
        })?,
    };
    let out = std::process::Command::new("scontrol")
        .args(["requeue", &id])
        .output()
        .map_err(|e| PipelineError::Invalid(format!("scontrol requeue {id}: {e}")))?;
    if !out.status.success() {
        return Err(PipelineError::Invalid(format!(
            "scontrol requeue {id} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_ranges_compress_consecutive_ids_and_carry_the_cap() {
        assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
        assert_eq!(array_spec(&[0, 2, 3, 4, 7], None), "0,2-4,7");
        assert_eq!(array_spec(&[5], Some(1)), "5%1");
    }

    #[test]
    fn resources_take_the_command_line_over_the_spec_and_refuse_what_cannot_run() {
        let spec = study::SlurmSpec {
            minutes: Some(30),
            cpus: Some(4),
            ..Default::default()
        };
        let over = study::SlurmSpec {
            cpus: Some(1),
            max_running: Some(3),
            ..Default::default()
        };
        let r = Resources::resolve(&spec, &over).unwrap();
        assert_eq!((r.minutes, r.cpus, r.max_running), (30, 1, Some(3)));
        assert_eq!(r.mem_mb, Resources::DEFAULT_MEM_MB);
        let late = study::SlurmSpec {
            minutes: Some(1),
            signal_seconds: Some(60),
            ..Default::default()
        };
        let e = Resources::resolve(&late, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("signal_seconds") && e.contains("--signal-seconds"),
            "{e}"
        );
        let zero = study::SlurmSpec {
            max_running: Some(0),
            ..Default::default()
        };
        let e = Resources::resolve(&zero, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-running"), "{e}");
    }

    #[test]
    fn the_script_execs_embedlab_as_the_batch_shell_with_the_warning_signal() {
        let cfg = StudyConfig {
            spec: toml::from_str("[grid]\nmodel = [\"ae\"]").unwrap(),
            spec_file: "s.toml".into(),
            cwd: "/home/me/my work".into(),
            runs: vec![],
        };
        let res = Resources::resolve(&Default::default(), &Default::default()).unwrap();
        let s = script(
            Path::new("/shared/st"),
            &cfg,
            Path::new("/opt/embedlab"),
            &res,
            &[0, 1, 4],
            false,
        );
        assert!(s.contains("#SBATCH --array=0-1,4\n"), "{s}");
        assert!(s.contains("#SBATCH --signal=B:USR1@120\n"), "{s}");
        assert!(s.contains("#SBATCH --chdir='/home/me/my work'\n"), "{s}");
        assert!(s.contains("#SBATCH --requeue\n"), "{s}");
        assert!(
            s.contains("exec /opt/embedlab --threads \"${SLURM_CPUS_PER_TASK:-1}\" study task /shared/st --grace-seconds 60\n"),
            "{s}"
        );
    }
}
