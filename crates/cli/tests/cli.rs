//! End-to-end tests of the `embedlab` binary on small generated data.
use embedlab_testkit::{fails, metric, metrics_lines, report, rotated_pair, write_vec};
use std::process::{Command, Output};
use tch::{Device, Kind, Tensor};

fn embedlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embedlab"))
        .args(args)
        .output()
        .expect("run embedlab")
}

#[test]
fn supervised_procrustes_recovers_a_rotation_then_translates_and_exports() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt, dict) = rotated_pair(d.path(), 600, 16, 0.05);
    let run = d.path().join("run");
    let out = embedlab(&[
        "align",
        "supervised",
        "--src",
        src.to_str().unwrap(),
        "--tgt",
        tgt.to_str().unwrap(),
        "--dict",
        dict.to_str().unwrap(),
        "--test-size",
        "200",
        "--refine",
        "2",
        "--refine-max-rank",
        "600",
        "--out",
        run.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&run);
    assert_eq!(r["details"]["test_pairs"], 200);
    assert_eq!(r["details"]["train_pairs"], 400);
    assert!(metric(&r, "NN P@1") >= 99.0, "{r}");
    assert!(metric(&r, "CSLS P@1") >= 99.0, "{r}");
    assert_eq!(metric(&r, "test words"), 200.0);
    assert_eq!(r["details"]["iterations"].as_array().unwrap().len(), 3);
    assert!(r["tables"][0]["title"]
        .as_str()
        .unwrap()
        .contains("translation examples"));
    // Hubness of both methods over the first 600 source words (all of
    // them) and their top 10 of 600 targets. The map is a near-exact
    // rotation, so nearly every target is in its own source word's top 10.
    let hub = &r["tables"][1];
    assert!(
        hub["title"].as_str().unwrap().starts_with("Hubness"),
        "{hub}"
    );
    assert_eq!(hub["rows"].as_array().unwrap().len(), 2, "{hub}");
    for m in ["NN", "CSLS"] {
        assert!(metric(&r, &format!("{m} hubness (N_10 skewness)")).is_finite());
        let never = metric(&r, &format!("{m}: targets in no top 10"));
        assert!((0.0..2.0).contains(&never), "{m}: {never}");
    }
    let logged = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let hub_events: Vec<serde_json::Value> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "hubness")
        .collect();
    assert_eq!(hub_events.len(), 2);
    assert_eq!(hub_events[0]["hubness"]["queries"], 600);
    assert_eq!(hub_events[0]["hubness"]["k"], 10);
    // Which words translate: the 200 test words (ranks 400–599, "s400"…)
    // fall in one frequency band and one length band, whose P@1 is then the
    // run's; a MUSE text dictionary tags no part of speech.
    let which = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["title"]
                .as_str()
                .unwrap()
                .starts_with("Which words translate")
        })
        .expect("a which-words table");
    let rows = which["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{which}");
    assert_eq!(rows[0][1], "rank 0–1k");
    assert_eq!(rows[1][1], "1–4 characters");
    assert_eq!(rows[0][2], "200");
    let csls = rows[0][4].as_str().unwrap();
    let p1 = metric(&r, "CSLS P@1");
    assert!(csls.starts_with(&format!("{p1:.1} [")), "{csls} vs {p1}");
    assert!(!logged.contains("proper noun"));
    assert_eq!(logged.matches("\"event\":\"which_words\"").count(), 2);
    for f in [
        "run.json",
        "config.json",
        "env.json",
        "metrics.jsonl",
        "map.safetensors",
        "dict.train.txt",
        "dict.test.txt",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let jsonl = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(jsonl
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));

    let out = embedlab(&[
        "translate",
        "--run",
        run.to_str().unwrap(),
        "-k",
        "3",
        "s5",
        "s17",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("s5:\n   1. t5 "), "{text}");
    assert!(text.contains("s17:\n   1. t17 "), "{text}");
    let out = embedlab(&[
        "translate",
        "--run",
        run.to_str().unwrap(),
        "--reverse",
        "t9",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("t9:\n   1. s9 "));

    let out = embedlab(&[
        "translate",
        "--run",
        run.to_str().unwrap(),
        "s1",
        "nosuchword",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not in the source vocabulary: nosuchword")
    );

    let mapped = d.path().join("mapped.vec");
    let out = embedlab(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--src-out",
        mapped.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&mapped)
        .unwrap()
        .starts_with("600 16\ns0 "));
}

#[test]
fn least_squares_maps_between_different_dimensions() {
    let d = tempfile::tempdir().unwrap();
    tch::manual_seed(5);
    let (n, ds, dt) = (500, 12, 20);
    let x = Tensor::randn([n, ds], (Kind::Float, Device::Cpu));
    let a = Tensor::randn([ds, dt], (Kind::Float, Device::Cpu));
    let y = x.matmul(&a) + Tensor::randn([n, dt], (Kind::Float, Device::Cpu)) * 0.01;
    let sw: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
    let tw: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    write_vec(&d.path().join("s.vec"), &sw, &x);
    write_vec(&d.path().join("t.vec"), &tw, &y);
    let dict: String = (0..n).map(|i| format!("a{i} b{i}\n")).collect();
    std::fs::write(d.path().join("d.txt"), dict).unwrap();
    let run = d.path().join("run");
    let p = |f: &str| d.path().join(f).to_str().unwrap().to_string();
    let out = embedlab(&[
        "align",
        "supervised",
        "--src",
        &p("s.vec"),
        "--tgt",
        &p("t.vec"),
        "--dict",
        &p("d.txt"),
        "--method",
        "lstsq",
        "--train-ranks",
        "0:400",
        "--test-ranks",
        "400:500",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&run);
    assert_eq!(
        (
            r["details"]["src_dim"].as_u64(),
            r["details"]["tgt_dim"].as_u64()
        ),
        (Some(12), Some(20))
    );
    assert!(metric(&r, "NN P@1") >= 99.0, "{r}");
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt, _) = rotated_pair(d.path(), 50, 4, 0.0);
    let p = |f: &str| d.path().join(f).to_str().unwrap().to_string();
    std::fs::write(d.path().join("empty.txt"), "").unwrap();
    std::fs::write(d.path().join("other.txt"), "zzz yyy\n").unwrap();
    std::fs::write(d.path().join("broken.vec"), "2 4\ns0 1 2 3 4\ns1 1 2\n").unwrap();
    let s = src.to_str().unwrap();
    let t = tgt.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--src".into(),
                s.into(),
                "--tgt".into(),
                t.into(),
                "--dict".into(),
                p("empty.txt"),
            ],
            "empty.txt: dictionary is empty",
        ),
        (
            vec![
                "--src".into(),
                s.into(),
                "--tgt".into(),
                t.into(),
                "--dict".into(),
                p("other.txt"),
            ],
            "none of its 1 pairs",
        ),
        (
            vec![
                "--src".into(),
                p("broken.vec"),
                "--tgt".into(),
                t.into(),
                "--dict".into(),
                p("dict.txt"),
            ],
            "broken.vec:3: expected 4 values, found 2",
        ),
        (
            vec![
                "--src".into(),
                s.into(),
                "--tgt".into(),
                t.into(),
                "--dict".into(),
                p("missing.txt"),
            ],
            "missing.txt",
        ),
        (
            vec![
                "--src".into(),
                s.into(),
                "--tgt".into(),
                t.into(),
                "--dict".into(),
                p("dict.txt"),
                "--test-size".into(),
                "10".into(),
                "--tgt-pca".into(),
                "9".into(),
            ],
            "cannot reduce 4-dimensional vectors to 9",
        ),
    ];
    for (i, (args, want)) in cases.into_iter().enumerate() {
        let mut all = vec![
            "align".to_string(),
            "supervised".into(),
            "--out".into(),
            p(&format!("run{i}")),
        ];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = embedlab(&refs);
        assert!(!out.status.success(), "{want}: succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "want '{want}' in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn unsupervised_self_learning_recovers_a_permuted_rotated_copy() {
    let d = tempfile::tempdir().unwrap();
    tch::manual_seed(77);
    let (n, dim) = (400, 12);
    // Anisotropic vectors (decaying spectrum), as real embeddings are.
    let scale = Tensor::arange(dim, (Kind::Float, Device::Cpu))
        .g_add_scalar(1.0)
        .reciprocal();
    let x = Tensor::randn([n, dim], (Kind::Float, Device::Cpu)) * scale;
    let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
    let (q, _) = Tensor::linalg_qr(
        &Tensor::randn([dim, dim], (Kind::Double, Device::Cpu)),
        "reduced",
    );
    let y = x.index_select(0, &perm).matmul(&q.to_kind(Kind::Float));
    let perm = Vec::<i64>::try_from(perm).unwrap();
    let src: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    // Target row j is source row perm[j]: name it after that source word.
    let tgt: Vec<String> = perm.iter().map(|&i| format!("t{i}")).collect();
    write_vec(&d.path().join("s.vec"), &src, &x);
    write_vec(&d.path().join("t.vec"), &tgt, &y);
    let dict: String = (0..n).map(|i| format!("s{i} t{i}\n")).collect();
    std::fs::write(d.path().join("test.txt"), dict).unwrap();
    let p = |f: &str| d.path().join(f).to_str().unwrap().to_string();
    let run = d.path().join("run");
    let out = embedlab(&[
        "align",
        "unsupervised",
        "--src",
        &p("s.vec"),
        "--tgt",
        &p("t.vec"),
        "--dict-test",
        &p("test.txt"),
        "--init-vocab",
        "400",
        "--cutoff",
        "400",
        "--patience",
        "3",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&run);
    assert!(metric(&r, "CSLS P@1") >= 99.0, "{r}");
    assert!(
        r["details"]["self_learning"]["iterations"]
            .as_u64()
            .unwrap()
            > 3
    );
    // The products' number format (auto: bf16 where the CPU has it) and the
    // self-learning time are recorded.
    let sl = &r["details"]["self_learning"];
    assert!(
        ["f32", "bf16"].contains(&sl["precision"].as_str().unwrap()),
        "{sl}"
    );
    assert!(sl["seconds"].as_f64().unwrap() > 0.0, "{sl}");
    let jsonl = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(
        jsonl
            .lines()
            .filter(|l| l.contains("\"iteration\""))
            .count()
            > 3
    );
    // The saved map translates like a supervised one.
    let out = embedlab(&["translate", "--run", run.to_str().unwrap(), "-k", "1", "s7"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("s7:\n   1. t7 "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Identical strings cannot seed two vocabularies that share no word.
    let out = embedlab(&[
        "align",
        "unsupervised",
        "--src",
        &p("s.vec"),
        "--tgt",
        &p("t.vec"),
        "--init",
        "identical",
        "--out",
        &p("run2"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no word is spelled the same"));
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `align unsupervised --method adversarial` from `[src, tgt, dict]` with
/// the small settings these tests share (640 words an epoch, the criterion
/// over 300), then `extra`.
fn adversarial_args(files: [&std::path::Path; 3], extra: &[&str]) -> Vec<String> {
    let [src, tgt, dict] = files.map(|f| f.to_str().unwrap());
    let mut a = strings(&[
        "align",
        "unsupervised",
        "--method",
        "adversarial",
        "--src",
        src,
        "--tgt",
        tgt,
        "--dict-test",
        dict,
        "--epoch-size",
        "640",
        "--criterion-words",
        "300",
    ]);
    a.extend(strings(extra));
    a
}

#[test]
fn adversarial_runs_checkpoints_and_resumes_at_the_next_epoch() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt, dict) = rotated_pair(d.path(), 300, 8, 0.01);
    let run = d.path().join("run");
    let args = |epochs: &str, hidden: &str, resume: bool| -> Vec<String> {
        let place = if resume { "--resume" } else { "--out" };
        let run = run.to_str().unwrap();
        adversarial_args(
            [&src, &tgt, &dict],
            &[
                "--epochs",
                epochs,
                "--dis-hidden",
                hidden,
                "--refinement",
                "2",
                place,
                run,
            ],
        )
    };
    let call = |a: Vec<String>| embedlab(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let out = call(args("1", "16", false));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "checkpoint.safetensors",
        "best.safetensors",
        "map.safetensors",
        "report.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let r = report(&run);
    let adv = &r["details"]["adversarial"];
    assert_eq!(adv["epochs"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(adv["refinement"].as_array().unwrap().len(), 2);
    assert!(metric(&r, "criterion") > 0.0);
    // Resuming with two epochs runs the second one only.
    let resume = |extra: &[&str]| {
        let mut a = vec!["align", "unsupervised", "--resume", run.to_str().unwrap()];
        a.extend(extra);
        embedlab(&a)
    };
    let out = resume(&["--epochs", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming after epoch 1 of 2"), "{err}");
    let r = report(&run);
    let epochs: Vec<u64> = r["details"]["adversarial"]["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, vec![1, 2]);
    // metrics.jsonl: each epoch once, then this invocation's refinement.
    let lines = metrics_lines(&run);
    let epoch_lines: Vec<u64> = lines.iter().filter_map(|l| l["epoch"].as_u64()).collect();
    assert_eq!(epoch_lines, [1, 2]);
    assert_eq!(
        lines.iter().filter(|l| l["event"] == "refinement").count(),
        2
    );
    // Resuming the finished run again changes nothing and logs no epoch twice.
    let out = resume(&["--epochs", "2"]);
    assert!(out.status.success());
    let lines = metrics_lines(&run);
    assert_eq!(
        lines
            .iter()
            .filter_map(|l| l["epoch"].as_u64())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    // Other options than the run's are refused, naming them.
    let err = fails(&resume(&["--epochs", "3", "--dis-hidden", "32"]));
    assert!(
        err.contains("--dis-hidden cannot change on --resume"),
        "{err}"
    );
    // The map translates like any other run's.
    let out = embedlab(&["translate", "--run", run.to_str().unwrap(), "-k", "1", "s3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--restarts 3`: three independent runs (seeds s, s+1000, s+2000), each in
/// its own sub-folder; the map kept is the one of the highest refined
/// criterion; restart 0 is exactly the run of one restart with the same
/// seed; a resume continues each restart and ends with the same map; the
/// layouts of one and several restarts are not mixed on resume.
#[test]
fn adversarial_restarts_keep_the_best_criterion_and_resume() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt, dict) = rotated_pair(d.path(), 300, 8, 0.01);
    let args = |out: &std::path::Path, restarts: &str, epochs: &str| -> Vec<String> {
        let mut a = strings(&["--seed", "7"]);
        a.extend(adversarial_args(
            [&src, &tgt, &dict],
            &[
                "--epochs",
                epochs,
                "--dis-hidden",
                "16",
                "--refinement",
                "1",
                "--precision",
                "f32",
                "--restarts",
                restarts,
                "--out",
                out.to_str().unwrap(),
            ],
        ));
        a
    };
    let call = |a: Vec<String>| {
        let out = embedlab(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        err
    };
    let (one, three) = (d.path().join("one"), d.path().join("three"));
    call(args(&one, "1", "2"));
    let err = call(args(&three, "3", "1"));
    assert!(err.contains("restart 2 of 3 (seed 2007"), "{err}");
    for k in 0..3 {
        let part = three.join(format!("restart-{k}"));
        assert!(part.join("checkpoint.safetensors").is_file(), "{k}");
        assert!(!part.join("run.json").exists(), "a restart is not a run");
    }
    assert!(!three.join("checkpoint.safetensors").exists());
    let r = report(&three);
    let adv = &r["details"]["adversarial"];
    let restarts = adv["restarts"].as_array().unwrap();
    let seeds: Vec<i64> = restarts
        .iter()
        .map(|l| l["seed"].as_i64().unwrap())
        .collect();
    assert_eq!(seeds, [7, 1007, 2007]);
    let crit: Vec<f64> = restarts
        .iter()
        .map(|l| l["criterion"].as_f64().unwrap())
        .collect();
    let kept = adv["kept_restart"].as_u64().unwrap() as usize;
    let best = crit.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(crit[kept], best, "{crit:?}");
    assert_eq!(crit.iter().position(|&c| c == best), Some(kept));
    assert_eq!(metric(&r, "criterion"), best);
    assert_eq!(metric(&r, "restarts"), 3.0);
    assert!(r["tables"].as_array().unwrap().iter().any(|t| t["title"]
        .as_str()
        .unwrap()
        .starts_with("Adversarial restarts")));
    let resume = |dir: &std::path::Path, extra: &[&str]| {
        let mut a = vec!["align", "unsupervised", "--resume", dir.to_str().unwrap()];
        a.extend(extra);
        embedlab(&a)
    };
    // Raising the epochs on resume continues every restart.
    let out = resume(&three, &["--epochs", "2"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.matches("resuming after epoch 1 of 2").count(),
        3,
        "{err}"
    );
    let r = report(&three);
    let first = &r["details"]["adversarial"]["restarts"][0];
    let single = report(&one);
    assert_eq!(
        first["criterion"].as_f64().unwrap(),
        metric(&single, "criterion"),
        "restart 0 of seed 7 (resumed at epoch 1) is the run of seed 7"
    );
    // More restarts on resume: the finished ones are continued (nothing
    // left to train), one more is run, and the next resume keeps four.
    let out = resume(&three, &["--epochs", "2", "--restarts", "4"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("restart 3 of 4 (seed 3007"), "{err}");
    let r = report(&three);
    assert_eq!(metric(&r, "restarts"), 4.0);
    let crit: Vec<f64> = r["details"]["adversarial"]["restarts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["criterion"].as_f64().unwrap())
        .collect();
    assert_eq!(
        metric(&r, "criterion"),
        crit.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
    );
    let out = resume(&three, &["--epochs", "2"]);
    assert!(out.status.success());
    assert_eq!(metric(&report(&three), "restarts"), 4.0);
    // The layouts are not mixed: refused before anything is written.
    let before = std::fs::read(three.join("map.safetensors")).unwrap();
    let err = fails(&resume(&three, &["--epochs", "2", "--restarts", "1"]));
    assert!(err.contains("resume it with --restarts 2 or more"), "{err}");
    let err = fails(&resume(&one, &["--epochs", "2", "--restarts", "2"]));
    assert!(err.contains("resume it with --restarts 1"), "{err}");
    assert_eq!(
        std::fs::read(three.join("map.safetensors")).unwrap(),
        before
    );
    // --overwrite replaces a run of several restarts (they are not runs).
    call(
        args(&three, "2", "1")
            .into_iter()
            .chain(["--overwrite".into()])
            .collect(),
    );
    assert!(!three.join("restart-2").exists());
}

/// A run made with relative paths works from any folder, and refuses when
/// its vectors changed; an image run refuses changed images on resume.
#[test]
fn runs_remember_their_inputs_by_absolute_path_and_fingerprint() {
    let d = tempfile::tempdir().unwrap();
    rotated_pair(d.path(), 300, 8, 0.01);
    let o = Command::new(env!("CARGO_BIN_EXE_embedlab"))
        .current_dir(d.path())
        .args([
            "align",
            "supervised",
            "--src",
            "src.vec",
            "--tgt",
            "tgt.vec",
            "--dict",
            "dict.txt",
            "--test-size",
            "50",
            "--out",
            "run",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let elsewhere = tempfile::tempdir().unwrap();
    let translate = || {
        Command::new(env!("CARGO_BIN_EXE_embedlab"))
            .current_dir(elsewhere.path())
            .args([
                "translate",
                "--run",
                d.path().join("run").to_str().unwrap(),
                "-k",
                "1",
                "s5",
            ])
            .output()
            .unwrap()
    };
    let o = translate();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("s5:\n   1. t5 "));
    // The source vectors change: the old map no longer belongs to them.
    let text = std::fs::read_to_string(d.path().join("src.vec")).unwrap();
    std::fs::write(d.path().join("src.vec"), text.replacen("s0 ", "s0 9", 1)).unwrap();
    let err = fails(&translate());
    assert!(
        err.contains("src.vec") && err.contains("changed since the run was made"),
        "{err}"
    );
    // Images changed under a training run: resume refuses.
    let data = d.path().join("img");
    embedlab_testkit::write_idx_dataset(&data, 100, 20, 8);
    let run = d.path().join("vae");
    let o = embedlab(&[
        "train",
        "vae",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--latent",
        "2",
        "--valid",
        "20",
        "--iwae-k",
        "0",
        "--no-images",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    embedlab_testkit::write_idx_dataset(&data, 100, 21, 8);
    let err = fails(&embedlab(&[
        "train",
        "vae",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "2",
    ]));
    assert!(
        err.contains("img") && err.contains("changed since the run was made"),
        "{err}"
    );
}

/// `align isomorphism`: a rotated noisy copy scores as nearly isomorphic, an
/// unrelated space of the same words does not; the JSON holds what was
/// printed; bad input is named and writes nothing.
#[test]
fn isomorphism_tells_a_rotated_copy_from_an_unrelated_space() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt, dict) = rotated_pair(d.path(), 400, 16, 0.01);
    let other = d.path().join("other.vec");
    tch::manual_seed(7);
    let words: Vec<String> = (0..400).map(|i| format!("t{i}")).collect();
    let z = Tensor::randn([400, 16], (Kind::Float, Device::Cpu));
    write_vec(&other, &words, &(&z * &z * &z));
    let measure = |tgt: &std::path::Path, json: &std::path::Path| {
        let o = embedlab(&[
            "--threads",
            "1",
            "align",
            "isomorphism",
            "--src",
            src.to_str().unwrap(),
            "--tgt",
            tgt.to_str().unwrap(),
            "--dict",
            dict.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ]);
        let t = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{t}");
        assert!(
            t.contains("eigenvector similarity") && t.contains("400 translation pairs"),
            "{t}"
        );
        embedlab_testkit::json(json)["measures"].clone()
    };
    let near = measure(&tgt, &d.path().join("near.json"));
    let far = measure(&other, &d.path().join("far.json"));
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    assert!(f(&near, "relational_similarity") > 0.99, "{near}");
    assert!(f(&far, "relational_similarity").abs() < 0.1, "{far}");
    assert!(
        f(&near, "gromov_hausdorff") < 0.05 * f(&far, "gromov_hausdorff"),
        "{near} {far}"
    );
    assert!(
        near["evs"]["value"].as_f64().unwrap() < far["evs"]["value"].as_f64().unwrap(),
        "{near} {far}"
    );
    // Without a dictionary the relational similarity is left out, as null.
    let o = embedlab(&[
        "--threads",
        "1",
        "align",
        "isomorphism",
        "--src",
        src.to_str().unwrap(),
        "--tgt",
        tgt.to_str().unwrap(),
        "--json",
        d.path().join("nodict.json").to_str().unwrap(),
    ]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("needs --dict"));
    assert!(
        embedlab_testkit::json(&d.path().join("nodict.json"))["measures"]["relational_similarity"]
            .is_null()
    );
    // A dictionary none of whose words are in the vocabularies, and an
    // impossible size: named, and no JSON written.
    let bad = d.path().join("bad.txt");
    std::fs::write(&bad, "zz yy\n").unwrap();
    let j = d.path().join("refused.json");
    let e = fails(&embedlab(&[
        "align",
        "isomorphism",
        "--src",
        src.to_str().unwrap(),
        "--tgt",
        tgt.to_str().unwrap(),
        "--dict",
        bad.to_str().unwrap(),
        "--json",
        j.to_str().unwrap(),
    ]));
    assert!(
        e.contains("bad.txt") && e.contains("translation pairs"),
        "{e}"
    );
    let o = embedlab(&[
        "align",
        "isomorphism",
        "--src",
        src.to_str().unwrap(),
        "--tgt",
        tgt.to_str().unwrap(),
        "--evs-words",
        "2",
        "--json",
        j.to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(2) && e.contains("--evs-words"),
        "{e}"
    );
    assert!(!j.exists());
}

/// `bench csls`: both searches on planted translations, the bfloat16 one
/// with the f32 one's answers and values; a bad --precision is refused.
#[test]
fn bench_csls_compares_the_bf16_search_with_f32() {
    let out = embedlab(&[
        "bench",
        "csls",
        "--n",
        "1000",
        "--dim",
        "32",
        "--queries",
        "200",
        "--noise",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{r}");
    let (f, b) = (&runs[0], &runs[1]);
    assert_eq!(
        (f["precision"].as_str(), b["precision"].as_str()),
        (Some("f32"), Some("bf16"))
    );
    let p1 = f["p_at_1"].as_f64().unwrap();
    assert!(
        p1 > 20.0 && p1 < 100.0,
        "planted translations, some close calls: {p1}"
    );
    assert_eq!(b["p_at_1"].as_f64().unwrap(), p1);
    assert_eq!(b["same_top10"].as_f64().unwrap(), 1.0, "{r}");
    assert!(b["max_score_diff"].as_f64().unwrap() < 1e-5, "{r}");
    assert!(f["fraction_of_f32_peak"].as_f64().unwrap() > 0.0);
    let out = embedlab(&["bench", "csls", "--n", "1000", "--precision", "f16"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("f16"));
}

#[test]
fn the_evaluation_search_in_bf16_gives_the_f32_precision() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt, dict) = rotated_pair(d.path(), 600, 16, 0.9);
    let fit = |precision: &str| {
        let run = d.path().join(format!("run-{precision}"));
        let out = embedlab(&[
            "align",
            "supervised",
            "--src",
            src.to_str().unwrap(),
            "--tgt",
            tgt.to_str().unwrap(),
            "--dict",
            dict.to_str().unwrap(),
            "--test-size",
            "200",
            "--search-precision",
            precision,
            "--out",
            run.to_str().unwrap(),
            "--device",
            "cpu",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = embedlab_testkit::json(&run.join("config.json"));
        assert_eq!(config["search_precision"], precision, "{config}");
        report(&run)
    };
    let (a, b) = (fit("f32"), fit("bf16"));
    for m in ["NN P@1", "NN P@5", "CSLS P@1", "CSLS P@10"] {
        assert_eq!(metric(&a, m), metric(&b, m), "{m}");
    }
    // Noisy enough that the precision is not trivially 100.
    assert!(metric(&a, "CSLS P@1") < 100.0, "{a}");
    let o = embedlab(&[
        "align",
        "supervised",
        "--src",
        src.to_str().unwrap(),
        "--tgt",
        tgt.to_str().unwrap(),
        "--dict",
        dict.to_str().unwrap(),
        "--search-precision",
        "fp8",
    ]);
    // Refused by the argument parser (exit 2), naming the option and its values.
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--search-precision") && e.contains("bf16"),
        "{e}"
    );
}

/// Output piped into a reader that has gone (`embedlab … | head -1`): the
/// process ends on SIGPIPE as Unix tools do, without a panic message.
#[test]
fn a_closed_output_pipe_ends_quietly() {
    use std::os::fd::FromRawFd;
    use std::os::unix::process::ExitStatusExt;
    let mut fds = [0i32; 2];
    // SAFETY: a fresh pipe; the read end is closed at once, the write end
    // handed to the child as its standard output.
    let write_end = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        std::os::fd::OwnedFd::from_raw_fd(fds[1])
    };
    let out = Command::new(env!("CARGO_BIN_EXE_embedlab"))
        .args(["train", "vae", "--help"])
        .stdout(std::process::Stdio::from(write_end))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}
