//! `embedlab study`: a grid of tiny runs from a TOML spec, run two at a
//! time in worker processes and in this process, gives the same results
//! run by run; finished runs are skipped, an interrupted one is resumed to
//! the same result; bad specs are refused naming the key, changing nothing.
use embedlab_testkit::{fails, ok, study_results, write_idx_dataset};
use std::path::Path;

fn embedlab(args: &[&str]) -> std::process::Output {
    embedlab_testkit::run(env!("CARGO_BIN_EXE_embedlab"), args)
}

/// `embedlab study run FILE --jobs J --out DIR`, which must succeed; its output.
fn study_run(file: &Path, jobs: usize, out: &Path) -> String {
    ok(&embedlab(&[
        "study",
        "run",
        file.to_str().unwrap(),
        "--jobs",
        &jobs.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]))
}

fn spec(data: &Path, extra: &str) -> String {
    format!(
        r#"
[study]
title = "tiny grid"
seeds = [1, 2]

[grid]
model = ["vae", "ae"]
lr = [0.001, 0.003]

[options]
data = "{}"
epochs = 2
latent = 2
hidden = 16
batch-size = 50
valid = 40
no-images = true
iwae-images = 0

[report]
curves = ["valid.loss"]
thresholds = [{{ curve = "valid.loss", below = 1e9 }}]
{extra}"#,
        data.display()
    )
}

#[test]
fn a_study_runs_its_grid_skips_finished_runs_resumes_and_reports() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 50, 12);
    let file = d.path().join("tiny.toml");
    std::fs::write(&file, spec(&data, "")).unwrap();
    let two = d.path().join("two");
    let one = d.path().join("one");
    let o = study_run(&file, 2, &two);
    assert!(o.contains("8 runs: 8 finished"), "{o}");
    // Two workers ran them.
    for k in 0..2 {
        let log = std::fs::read_to_string(two.join(format!("logs/worker-{k}.log"))).unwrap();
        assert!(log.contains("finished, 0 failed"), "worker {k}: {log}");
    }
    study_run(&file, 1, &one);
    let r2 = study_results(&two);
    assert_eq!(r2.len(), 8);
    assert_eq!(r2[0].0, "ae-lr0.001-seed1");
    assert_eq!(
        r2,
        study_results(&one),
        "two workers and one process give the same runs"
    );
    // Run again: nothing to do, nothing rewritten.
    let attempt = two.join("logs/vae-lr0.003-seed2.json");
    let before = std::fs::read_to_string(&attempt).unwrap();
    let o = study_run(&file, 2, &two);
    assert!(o.contains("8 runs: 8 finished"), "{o}");
    assert_eq!(before, std::fs::read_to_string(&attempt).unwrap());
    // A run whose report is missing (stopped after training) is
    // interrupted: resumed, not restarted, to the same result.
    let run = two.join("runs/vae-lr0.003-seed2");
    std::fs::remove_file(run.join("report.json")).unwrap();
    let o = ok(&embedlab(&["study", "status", two.to_str().unwrap()]));
    assert!(o.contains("interrupted vae-lr0.003-seed2"), "{o}");
    study_run(&file, 1, &two);
    assert_eq!(r2, study_results(&two));
    assert_ne!(
        before,
        std::fs::read_to_string(&attempt).unwrap(),
        "it ran again"
    );
    // The aggregate: one row per cell, 2/2 finished, the curves drawn.
    let o = ok(&embedlab(&["study", "report", one.to_str().unwrap()]));
    assert!(o.contains("vae-lr0.001 | 2/2 | 0/2"), "{o}");
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(one.join("report.json")).unwrap()).unwrap();
    let cells = rep["details"]["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    let vae = cells.iter().find(|c| c["cell"] == "vae-lr0.001").unwrap();
    let elbo: Vec<f64> = study_results(&one)
        .iter()
        .filter(|(n, _)| n.starts_with("vae-lr0.001-"))
        .map(|(_, m)| m.iter().find(|(k, _)| k == "test ELBO").unwrap().1)
        .collect();
    let mean = elbo.iter().sum::<f64>() / 2.0;
    assert!((vae["metrics"]["test ELBO"]["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    assert_eq!(
        vae["thresholds"][0][1], 2,
        "both runs reached the threshold"
    );
    // Each curve against epochs and against training minutes.
    assert!(one.join("curve-valid_loss.png").is_file());
    assert!(one.join("curve-valid_loss-minutes.png").is_file());
    assert!(
        rep["figures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["caption"]
                .as_str()
                .unwrap()
                .contains("against training minutes")),
        "{}",
        rep["figures"]
    );
    let html = std::fs::read_to_string(one.join("report.html")).unwrap();
    assert!(html.contains("tiny grid") && html.contains("vae-lr0.001-seed2"));
    // --metrics picks the columns; an unknown one is refused, nothing written.
    let before = std::fs::read_to_string(one.join("report.json")).unwrap();
    let e = fails(&embedlab(&[
        "study",
        "report",
        one.to_str().unwrap(),
        "--metrics",
        "test ELBO,test ELBOW",
    ]));
    assert!(
        e.contains("--metrics") && e.contains("\"test ELBOW\""),
        "{e}"
    );
    assert_eq!(
        before,
        std::fs::read_to_string(one.join("report.json")).unwrap()
    );
    // So is a curve no run logged (--curves replaces the spec's).
    let e = fails(&embedlab(&[
        "study",
        "report",
        one.to_str().unwrap(),
        "--curves",
        "valid.los",
    ]));
    assert!(e.contains("--curves") && e.contains("\"valid.los\""), "{e}");
    assert_eq!(
        before,
        std::fs::read_to_string(one.join("report.json")).unwrap()
    );
    let o = ok(&embedlab(&[
        "study",
        "report",
        one.to_str().unwrap(),
        "--metrics",
        "test ELBO",
        "--curves",
        "valid.rec",
    ]));
    assert!(one.join("curve-valid_rec-minutes.png").is_file());
    let head = o.lines().next().unwrap();
    assert!(
        head.ends_with("| test ELBO | time to valid.loss ≤ 1000000000"),
        "{head}"
    );
    // The cluster projection: 8 tasks, each with its peak memory; the wall
    // time on 4 one-task nodes is at most that on 1, and at least the
    // longest task.
    let a: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(one.join("logs/vae-lr0.001-seed1.json")).unwrap(),
    )
    .unwrap();
    let peak = a["peak_rss_mib"].as_f64().unwrap();
    assert!(peak > 50.0 && peak < 100_000.0, "{a}");
    let o = ok(&embedlab(&[
        "study",
        "project",
        one.to_str().unwrap(),
        "--scale",
        "10",
        "--nodes",
        "1,4",
        "--cpus-per-node",
        "1",
    ]));
    assert!(
        o.contains("8 of 8 runs finished") && o.contains("8 array tasks"),
        "{o}"
    );
    assert!(o.contains("| vae | 4 |") && o.contains("| ae | 4 |"), "{o}");
    assert!(
        o.contains("MiB |") && o.contains("submit with: --cpus"),
        "{o}"
    );
}

#[test]
fn bad_study_specs_are_refused_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 60, 20, 12);
    let cases = [
        (
            "[model.vae.options]\nwidht = 3\n",
            "[model.vae.options] widht",
        ),
        ("[model.gan]\noptions = { hidden = 3 }\n", "[model.gan]"),
        (
            "[model.vae.grid]\nbeta = []\n",
            "[model.vae.grid] beta: an empty list",
        ),
        (
            "[model.vae.options]\nepochs = -3\n",
            "[model.vae.options] epochs",
        ),
        (
            "[model.vae.options]\nout = \"x\"\n",
            "[model.vae.options] out",
        ),
    ];
    for (extra, want) in cases {
        let file = d.path().join("bad.toml");
        std::fs::write(&file, spec(&data, extra)).unwrap();
        let out = d.path().join("s");
        let e = fails(&embedlab(&[
            "study",
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]));
        assert!(e.contains(want) && e.contains("bad.toml"), "{want}: {e}");
        assert!(!out.exists(), "a refused study writes nothing");
    }
    let file = d.path().join("typo.toml");
    std::fs::write(&file, "[study]\nseeds = [1]\n[grdi]\nlr = [1]\n").unwrap();
    let e = fails(&embedlab(&["study", "run", file.to_str().unwrap()]));
    assert!(e.contains("typo.toml") && e.contains("grdi"), "{e}");
    // A study folder made from another spec is not mixed with this one.
    let file = d.path().join("a.toml");
    std::fs::write(
        &file,
        spec(&data, "")
            .replace("epochs = 2", "epochs = 1")
            .replace("seeds = [1, 2]", "seeds = [1]")
            .replace("lr = [0.001, 0.003]", "lr = [0.001]"),
    )
    .unwrap();
    let out = d.path().join("a");
    study_run(&file, 1, &out);
    std::fs::write(
        &file,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("lr = [0.001]", "lr = [0.01]"),
    )
    .unwrap();
    let e = fails(&embedlab(&[
        "study",
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("another spec") && e.contains("[grid]"), "{e}");
}

/// A `study run --jobs 2` killed with SIGKILL while its workers train
/// (both of them die with it): the next `study run` finds no run left
/// "running", resumes the interrupted ones and ends, run by run, with the
/// results of the study run without a kill.
#[test]
fn a_killed_study_run_resumes_to_the_same_results() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 400, 50, 12);
    let file = d.path().join("tiny.toml");
    let text = spec(&data, "").replace("epochs = 2", "epochs = 12");
    std::fs::write(&file, text).unwrap();
    let reference = d.path().join("reference");
    study_run(&file, 2, &reference);
    let killed = d.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_embedlab"))
        .args(["study", "run", file.to_str().unwrap(), "--jobs", "2"])
        .arg("--out")
        .arg(&killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some run has finished an epoch and another is under way.
    let t0 = Instant::now();
    let epochs_done = |run: &Path| {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .map(|s| s.lines().filter(|l| l.contains("\"epoch\"")).count())
            .unwrap_or(0)
    };
    loop {
        let runs: Vec<_> = std::fs::read_dir(killed.join("runs"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let mid = runs
            .iter()
            .filter(|r| !r.join("report.json").exists() && epochs_done(r) >= 2)
            .count();
        if mid >= 1 && runs.len() >= 2 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no run got under way"
        );
        assert!(child.try_wait().unwrap().is_none(), "it finished first");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The workers die with it (their claims are released).
    let t0 = Instant::now();
    loop {
        let o = ok(&embedlab(&["study", "status", killed.to_str().unwrap()]));
        if !o.lines().any(|l| l.trim_start().starts_with("running ")) {
            assert!(o.contains("interrupted"), "{o}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "a worker outlived the killed study run:\n{o}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = study_run(&file, 2, &killed);
    assert!(o.contains("8 runs: 8 finished"), "{o}");
    assert_eq!(study_results(&reference), study_results(&killed));
    // A worker's run records the worker's libtorch threads, as a run of
    // `embedlab --threads 1 train …` would.
    let env: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(killed.join("runs/vae-lr0.001-seed1/env.json")).unwrap(),
    )
    .unwrap();
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        env["libtorch_threads"].as_i64().unwrap() as usize,
        (cores / 2).max(1),
        "{env}"
    );
}
