//! `embedlab study submit --slurm` against a real single-node Slurm
//! (Debian's slurm-wlm 22.05 and munge), installed and started by
//! scripts/slurm-local.sh and torn down after: a study of 6 tiny runs
//! submitted as one array capped at 2 tasks at once (on a node with room
//! for 4), one task preempted mid-run by `scontrol requeue`, another warned
//! by Slurm's signal (what `--signal=B:USR1@s` sends) so that it
//! checkpoints and requeues itself; every run finishes, and run by run the
//! results equal the same study run locally.
//!
//! Needs root and apt-get (as CI has) or an installed Slurm; `#[ignore]`d
//! for a plain `cargo test`, run by `make test`. When Slurm cannot be
//! started the test fails saying why; EMBEDLAB_SKIP_SLURM=1 turns that
//! into a loud skip.
use embedlab_testkit::{ok, study_results, write_idx_dataset};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn embedlab(args: &[&str], conf: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_embedlab"))
        .args(args)
        .env("SLURM_CONF", conf)
        .output()
        .unwrap()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slurm-local.sh")
}

/// Stops the daemons however the test ends.
struct Cluster(PathBuf);
impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("down").arg(&self.0).status();
    }
}

fn slurm(conf: &Path, args: &[&str]) -> String {
    let o = Command::new(args[0])
        .args(&args[1..])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Epoch lines written by the run so far.
fn epochs(study: &Path, run: &str) -> usize {
    std::fs::read_to_string(study.join("runs").join(run).join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
#[ignore = "starts a real Slurm (root and apt-get, or Slurm installed); make test runs it"]
fn a_study_as_a_slurm_array_survives_preemption_and_equals_the_local_run() {
    let d = tempfile::tempdir().unwrap();
    let cdir = d.path().join("slurm");
    let up = Command::new(script())
        .arg("up")
        .arg(&cdir)
        .env("SLURM_LOCAL_CPUS", "4")
        .output()
        .unwrap();
    let _cluster = Cluster(cdir.clone());
    if !up.status.success() {
        let why = String::from_utf8_lossy(&up.stderr);
        if std::env::var("EMBEDLAB_SKIP_SLURM").as_deref() == Ok("1") {
            eprintln!("\n!!!!!! SLURM TEST SKIPPED (EMBEDLAB_SKIP_SLURM=1): Slurm could not be started:\n{why}!!!!!!\n");
            return;
        }
        panic!("Slurm could not be started (set EMBEDLAB_SKIP_SLURM=1 to skip this test loudly):\n{why}");
    }
    let conf = cdir.join("slurm.conf");
    let data = d.path().join("data");
    write_idx_dataset(&data, 1000, 100, 12);
    let spec = d.path().join("grid.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
[study]
title = "tiny grid on slurm"
seeds = [1, 2]
slurm = {{ minutes = 10, cpus = 1, mem_mb = 1000, max_running = 2, signal_seconds = 60 }}

[grid]
model = ["vae"]
lr = [0.001, 0.002, 0.003]

[options]
data = "{}"
epochs = 30
latent = 2
hidden = 32
batch-size = 25
valid = 100
no-images = true
iwae-images = 0
"#,
            data.display()
        ),
    )
    .unwrap();
    let st = d.path().join("on-slurm");
    let (spec_s, st_s) = (spec.to_str().unwrap(), st.to_str().unwrap());

    // --dry-run prints the script and leaves nothing behind.
    let o = ok(&embedlab(
        &[
            "study",
            "submit",
            spec_s,
            "--slurm",
            "--out",
            st_s,
            "--dry-run",
        ],
        &conf,
    ));
    assert!(o.contains("#SBATCH --array=0-5%2"), "{o}");
    assert!(!st.exists(), "a dry run made the study folder");

    let o = ok(&embedlab(
        &["study", "submit", spec_s, "--slurm", "--out", st_s],
        &conf,
    ));
    let job = o
        .split("submitted slurm job ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id in: {o}"))
        .to_string();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(st.join("config.json")).unwrap()).unwrap();
    let names: Vec<String> = cfg["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 6);

    let t0 = Instant::now();
    let deadline = Duration::from_secs(600);
    let mut most_running = 0;
    let running = || {
        slurm(&conf, &["squeue", "-h", "-j", &job, "-t", "R", "-o", "%i"])
            .lines()
            .count()
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        while !f() {
            assert!(
                t0.elapsed() < deadline,
                "timed out waiting for {what}; squeue: {}",
                slurm(&conf, &["squeue", "-a"])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Task 1 warned as before its time limit: it stops, keeps its
    // checkpoint and requeues itself.
    wait("run 1's first epoch", &|| epochs(&st, &names[1]) >= 1);
    assert!(
        epochs(&st, &names[1]) < 30,
        "run 1 finished before the signal"
    );
    eprintln!(
        "run 1 at epoch {} after {:?}; squeue: {}",
        epochs(&st, &names[1]),
        t0.elapsed(),
        slurm(&conf, &["squeue", "-h", "-j", &job, "-o", "%i %T %r"])
    );
    // scancel may block for minutes once the signalled task has requeued
    // itself (it waits on a job that is gone), or answer "try again later"
    // while the step starts: it runs in the background, and is sent again
    // only if the task did not react.
    let log1 = st.join(format!("logs/slurm-{job}_1.out"));
    let warned = || std::fs::read_to_string(&log1).is_ok_and(|t| t.contains("warned by Slurm"));
    let mut senders = vec![];
    for _ in 0..5 {
        senders.push(
            Command::new("scancel")
                .args(["--batch", "--signal=USR1", &format!("{job}_1")])
                .env("SLURM_CONF", &conf)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let t = Instant::now();
        while !warned() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(200));
        }
        if warned() {
            break;
        }
    }
    assert!(
        warned(),
        "task 1 never reacted to USR1: {:?}",
        std::fs::read_to_string(&log1)
    );
    eprintln!("task 1 requeued itself after {:?}", t0.elapsed());
    // Task 0 preempted from outside: Slurm ends it (SIGTERM) and requeues it.
    wait("run 0's first epoch", &|| epochs(&st, &names[0]) >= 1);
    slurm(&conf, &["scontrol", "requeue", &format!("{job}_0")]);
    eprintln!("run 0 preempted after {:?}", t0.elapsed());

    // Requeued tasks wait for a begin time Slurm sets 2 minutes ahead;
    // the test moves it to now once both are pending again.
    let mut bumped = [false, false];
    loop {
        most_running = most_running.max(running());
        let q = slurm(&conf, &["squeue", "-h", "-j", &job, "-o", "%i %T %r"]);
        if q.trim().is_empty() {
            break;
        }
        for (k, b) in bumped.iter_mut().enumerate() {
            let id = format!("{job}_{k}");
            if !*b
                && q.lines()
                    .any(|l| l.starts_with(&format!("{id} ")) && l.contains("BeginTime"))
            {
                slurm(
                    &conf,
                    &[
                        "scontrol",
                        "update",
                        &format!("JobId={id}"),
                        "StartTime=now",
                    ],
                );
                *b = true;
            }
        }
        assert!(
            t0.elapsed() < deadline,
            "the array did not finish in {deadline:?}; squeue: {q}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("the array finished after {:?}", t0.elapsed());
    assert!(
        most_running <= 2,
        "{most_running} tasks ran at once, the cap is 2"
    );
    let log = |k: usize| {
        std::fs::read_to_string(st.join(format!("logs/slurm-{job}_{k}.out"))).unwrap_or_default()
    };
    for mut c in senders {
        let _ = c.kill();
        let _ = c.wait();
    }
    let o = ok(&embedlab(&["study", "status", st_s], &conf));
    assert!(
        o.contains("6 runs: 6 finished"),
        "{o}\ntask 0: {}\ntask 1: {}",
        log(0),
        log(1)
    );
    assert!(o.contains(&format!("slurm job {job}")), "{o}");
    assert_eq!(
        log(0).matches("study task: run 0 of 6").count(),
        2,
        "task 0 ran twice: {}",
        log(0)
    );
    assert!(log(1).contains("warned by Slurm"), "{}", log(1));
    // At least twice (a retried scancel may warn the requeued task again).
    assert!(
        log(1).matches("study task: run 1 of 6").count() >= 2,
        "{}",
        log(1)
    );
    let run1 = std::fs::read_to_string(st.join("logs").join(format!("{}.log", names[1]))).unwrap();
    assert!(run1.contains("stopped by a signal"), "{run1}");
    let attempt =
        std::fs::read_to_string(st.join("logs").join(format!("{}.json", names[0]))).unwrap();
    assert!(
        attempt.contains(&format!("slurm job {job} task 0")),
        "{attempt}"
    );

    // Nothing left to submit; and the same study run here gives the same runs.
    let o = ok(&embedlab(
        &["study", "submit", spec_s, "--slurm", "--out", st_s],
        &conf,
    ));
    assert!(o.contains("nothing to submit"), "{o}");
    let here = d.path().join("here");
    ok(&embedlab(
        &["study", "run", spec_s, "--out", here.to_str().unwrap()],
        &conf,
    ));
    assert_eq!(
        study_results(&st),
        study_results(&here),
        "Slurm and local runs differ"
    );
    let o = ok(&embedlab(&["study", "report", st_s], &conf));
    assert!(o.contains("report:"), "{o}");
}
