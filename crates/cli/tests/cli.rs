//! End-to-end tests of the `embedlab` binary on small generated data.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::{Device, Kind, Tensor};

fn embedlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embedlab"))
        .args(args)
        .output()
        .expect("run embedlab")
}

fn write_vec(path: &Path, words: &[String], t: &Tensor) {
    let (n, d) = t.size2().unwrap();
    let mut s = format!("{n} {d}\n");
    for (i, w) in words.iter().enumerate() {
        let row = Vec::<f32>::try_from(t.get(i as i64)).unwrap();
        s.push_str(w);
        for v in row {
            s.push_str(&format!(" {v}"));
        }
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// Source vectors, a rotated + noisy target copy, and a dictionary of all pairs.
fn rotated_pair(dir: &Path, n: i64, d: i64, noise: f64) -> (PathBuf, PathBuf, PathBuf) {
    tch::manual_seed(42);
    let x = Tensor::randn([n, d], (Kind::Float, Device::Cpu));
    let (q, _) = Tensor::linalg_qr(
        &Tensor::randn([d, d], (Kind::Double, Device::Cpu)),
        "reduced",
    );
    let y = x.matmul(&q.to_kind(Kind::Float))
        + Tensor::randn([n, d], (Kind::Float, Device::Cpu)) * noise;
    let src: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let tgt: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let (a, b, c) = (
        dir.join("src.vec"),
        dir.join("tgt.vec"),
        dir.join("dict.txt"),
    );
    write_vec(&a, &src, &x);
    write_vec(&b, &tgt, &y);
    let dict: String = (0..n).map(|i| format!("s{i} t{i}\n")).collect();
    std::fs::write(&c, dict).unwrap();
    (a, b, c)
}

fn report(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap()
}

fn p_at_1(r: &serde_json::Value, retrieval: &str) -> f64 {
    r["precision"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["retrieval"] == retrieval)
        .unwrap()["at"]["1"]
        .as_f64()
        .unwrap()
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
    assert_eq!(r["test_pairs"], 200);
    assert_eq!(r["train_pairs"], 400);
    assert!(p_at_1(&r, "nn") >= 99.0, "{r}");
    assert!(p_at_1(&r, "csls10") >= 99.0, "{r}");
    assert_eq!(r["iterations"].as_array().unwrap().len(), 3);
    for f in [
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
        (r["src_dim"].as_u64(), r["tgt_dim"].as_u64()),
        (Some(12), Some(20))
    );
    assert!(p_at_1(&r, "nn") >= 99.0, "{r}");
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
    for (args, want) in cases {
        let mut all = vec![
            "align".to_string(),
            "supervised".into(),
            "--out".into(),
            p("run"),
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
    assert!(p_at_1(&r, "csls10") >= 99.0, "{r}");
    assert!(r["self_learning"]["iterations"].as_u64().unwrap() > 3);
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

#[test]
fn adversarial_runs_checkpoints_and_resumes_at_the_next_epoch() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt, dict) = rotated_pair(d.path(), 300, 8, 0.01);
    let run = d.path().join("run");
    let args = |epochs: &str, hidden: &str, resume: bool| -> Vec<String> {
        let mut a: Vec<String> = [
            "align",
            "unsupervised",
            "--method",
            "adversarial",
            "--src",
            src.to_str().unwrap(),
            "--tgt",
            tgt.to_str().unwrap(),
            "--dict-test",
            dict.to_str().unwrap(),
            "--epochs",
            epochs,
            "--epoch-size",
            "640",
            "--dis-hidden",
            hidden,
            "--refinement",
            "2",
            "--criterion-words",
            "300",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(if resume { "--resume" } else { "--out" }.into());
        a.push(run.to_str().unwrap().into());
        a
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
        "checkpoint.json",
        "map.safetensors",
        "report.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let r = report(&run);
    assert_eq!(
        r["adversarial"]["epochs"].as_array().unwrap().len(),
        1,
        "{r}"
    );
    assert_eq!(r["adversarial"]["refinement"].as_array().unwrap().len(), 2);
    assert!(r["adversarial"]["criterion"].as_f64().unwrap() > 0.0);
    let jsonl = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(jsonl.contains("\"event\":\"epoch\""), "{jsonl}");
    // Resuming with two epochs runs the second one only.
    let out = call(args("2", "16", true));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming after epoch 1 of 2"), "{err}");
    let r = report(&run);
    let epochs: Vec<u64> = r["adversarial"]["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, vec![0, 1]);
    // metrics.jsonl keeps the first run's lines and adds the second epoch's.
    let jsonl = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let epoch_lines: Vec<&str> = jsonl
        .lines()
        .filter(|l| l.contains("\"event\":\"epoch\""))
        .collect();
    assert_eq!(epoch_lines.len(), 2, "{jsonl}");
    // Other options than the checkpoint's are refused, naming the file.
    let out = call(args("3", "32", true));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("checkpoint.json") && err.contains("other adversarial options"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // The map translates like any other run's.
    let out = embedlab(&["translate", "--run", run.to_str().unwrap(), "-k", "1", "s3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
