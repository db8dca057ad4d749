//! The classes of data loss and late or silent failure found by the
//! hostile-user pass over the image families (issue 20), each as the
//! command a user typed: `--overwrite` on folders that are not its run, a
//! refused resume that changed the config, a resume without a checkpoint,
//! `--classifier` checked after training or on other images, an exploding
//! flow finishing silently, `eval --on` of a GAN, `.npy` layouts `score`
//! takes, misleading messages, and read-only run folders.
use embedlab_testkit::{fails, idx_bytes, ok, report, write_idx_dataset};
use std::path::Path;
use std::process::Output;

fn embedlab(args: &[&str]) -> Output {
    embedlab_testkit::run(env!("CARGO_BIN_EXE_embedlab"), args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny MLP GAN run: 1 epoch of a few hundred 8×8 images.
fn gan_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "--seed",
        "1",
        "train",
        "dcgan",
        "--data",
        data,
        "--arch",
        "mlp",
        "--hidden",
        "16",
        "--latent",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--valid",
        "20",
        "--no-images",
        "--out",
        out,
    ]
}

/// A 2-step, 8-wide Glow on `data` into `out`, with `extra` options.
fn small_glow(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut a = vec![
        "--seed",
        "1",
        "train",
        "glow",
        "--data",
        s(data),
        "--steps",
        "2",
        "--hidden",
        "8",
        "--init-batch",
        "64",
        "--batch-size",
        "32",
        "--valid",
        "40",
        "--no-images",
        "--out",
        s(out),
    ];
    a.extend_from_slice(extra);
    embedlab(&a)
}

fn classifier(data: &Path, out: &Path) {
    ok(&embedlab(&[
        "--seed",
        "1",
        "train",
        "classifier",
        "--data",
        s(data),
        "--width",
        "4",
        "--features",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--valid",
        "20",
        "--no-images",
        "--out",
        s(out),
    ]));
}

/// Every file under `dir` with a hash of its bytes (but the lock file,
/// whose text names the last process that held the folder).
fn snapshot(dir: &Path) -> Vec<(String, u64)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != ".lock") {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).unwrap().hash(&mut h);
                out.push((p.display().to_string(), h.finish()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn overwrite_replaces_only_its_own_kind_of_run_folder() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 40, 8);
    let ds = s(&data);
    // A user's folder.
    let u = d.path().join("u");
    std::fs::create_dir(&u).unwrap();
    std::fs::write(u.join("thesis.tex"), "precious").unwrap();
    let mut a = gan_args(ds, s(&u));
    a.push("--overwrite");
    let e = fails(&embedlab(&a));
    assert!(
        e.contains("not an embedlab run folder") && e.contains("thesis.tex"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(u.join("thesis.tex")).unwrap(),
        "precious"
    );
    assert_eq!(
        std::fs::read_dir(&u).unwrap().count(),
        1,
        "nothing added to u"
    );
    // The data folder itself.
    let before = snapshot(&data);
    let mut a = gan_args(ds, ds);
    a.push("--overwrite");
    let e = fails(&embedlab(&a));
    assert!(e.contains("--overwrite refused"), "{e}");
    assert_eq!(snapshot(&data), before, "the data folder is untouched");
    // A run, then the current folder inside it (--out .).
    let run = d.path().join("run");
    ok(&embedlab(&gan_args(ds, s(&run))));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_embedlab"))
        .args(["--threads", "1"])
        .args(gan_args(ds, "."))
        .arg("--overwrite")
        .current_dir(&run)
        .output()
        .unwrap();
    let e = fails(&o);
    assert!(e.contains("current folder"), "{e}");
    assert!(run.join("best.safetensors").is_file());
    // A symbolic link to the run.
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&run, &link).unwrap();
    let mut a = gan_args(ds, s(&link));
    a.push("--overwrite");
    let e = fails(&embedlab(&a));
    assert!(e.contains("symbolic link"), "{e}");
    assert!(run.join("best.safetensors").is_file());
    // A folder holding another run in a subfolder.
    let outer = d.path().join("outer");
    ok(&embedlab(&gan_args(ds, s(&outer))));
    ok(&embedlab(&gan_args(ds, s(&outer.join("kept")))));
    let mut a = gan_args(ds, s(&outer));
    a.push("--overwrite");
    let e = fails(&embedlab(&a));
    assert!(
        e.contains("another run folder") && e.contains("kept"),
        "{e}"
    );
    assert!(outer.join("kept/best.safetensors").is_file());
    // The run itself is replaced, and the command says what it removed.
    let mut a = gan_args(ds, s(&run));
    a.push("--overwrite");
    let out = ok(&embedlab(&a));
    assert!(
        out.contains("--overwrite: removing the train run") && out.contains("best.safetensors"),
        "{out}"
    );
    // --out naming a regular file.
    let f = d.path().join("file.txt");
    std::fs::write(&f, "x").unwrap();
    let e = fails(&embedlab(&gan_args(ds, s(&f))));
    assert!(e.contains("is a file, not a folder"), "{e}");
    assert!(!e.contains("os error 17"), "{e}");
}

#[test]
fn a_refused_resume_changes_nothing_and_a_missing_checkpoint_is_named() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 40, 8);
    let run = d.path().join("run");
    let mut a = gan_args(s(&data), s(&run));
    let at = a.iter().position(|x| *x == "--epochs").unwrap();
    a[at + 1] = "2";
    ok(&embedlab(&a));
    let before = snapshot(&run);
    let e = fails(&embedlab(&[
        "train",
        "dcgan",
        "--resume",
        s(&run),
        "--epochs",
        "1",
    ]));
    assert!(
        e.contains("already has 2 epochs") && e.contains("nothing was changed"),
        "{e}"
    );
    assert_eq!(snapshot(&run), before, "a refused resume changes nothing");
    // A plain resume of the finished run still works (nothing to train).
    ok(&embedlab(&["train", "dcgan", "--resume", s(&run)]));
    // Without its checkpoint the run is not started over.
    std::fs::remove_file(run.join("checkpoint.safetensors")).unwrap();
    let before = snapshot(&run);
    let e = fails(&embedlab(&["train", "dcgan", "--resume", s(&run)]));
    assert!(
        e.contains("checkpoint.safetensors") && e.contains("missing"),
        "{e}"
    );
    assert_eq!(snapshot(&run), before, "best weights and metrics kept");
}

#[test]
fn the_classifier_is_checked_before_training_and_against_the_data() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 40, 8);
    let cls = d.path().join("cls");
    classifier(&data, &cls);
    let ds = s(&data);
    let with = |c: &Path, out: &Path| {
        let mut a = gan_args(ds, s(out));
        a.extend(["--classifier", s(c)]);
        a.iter().map(|x| x.to_string()).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| embedlab(&a.iter().map(|x| x.as_str()).collect::<Vec<_>>());
    // Each refusal comes before an epoch, and leaves no run folder.
    let gan = d.path().join("gan");
    ok(&embedlab(&gan_args(ds, s(&gan))));
    let corrupt = d.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    for f in ["run.json", "config.json", "best.safetensors"] {
        std::fs::copy(cls.join(f), corrupt.join(f)).unwrap();
    }
    let b = std::fs::read(corrupt.join("best.safetensors")).unwrap();
    std::fs::write(corrupt.join("best.safetensors"), &b[..b.len() / 2]).unwrap();
    let big = d.path().join("big");
    write_idx_dataset(&big, 200, 40, 12);
    let cls12 = d.path().join("cls12");
    classifier(&big, &cls12);
    for (c, why) in [
        (d.path().join("nowhere"), "config.json"),
        (gan.clone(), "not a classifier run"),
        (corrupt.clone(), "best.safetensors"),
        (cls12.clone(), "12×12"),
    ] {
        let out = d.path().join("refused");
        let e = fails(&run(with(&c, &out)));
        assert!(e.contains(why), "{}: {e}", c.display());
        assert!(!e.contains("epoch   1"), "refused only after training: {e}");
        assert!(!out.exists(), "a refused run leaves no folder");
    }
    // A classifier of another data set with as many classes: loud warning,
    // in the notes too; with another number of classes: refused.
    let other = d.path().join("other");
    write_idx_dataset(&other, 240, 40, 8);
    let cls_other = d.path().join("cls-other");
    classifier(&other, &cls_other);
    let warned = d.path().join("warned");
    let out = ok(&run(with(&cls_other, &warned)));
    assert!(
        out.contains("WARNING") && out.contains("not on these images"),
        "{out}"
    );
    assert!(report(&warned).to_string().contains("not on these images"));
    let three = d.path().join("three");
    std::fs::create_dir(&three).unwrap();
    for (stem, n, seed) in [("train", 200u32, 1u64), ("t10k", 40, 2)] {
        let (px, _) = embedlab_testkit::bars(n, 8, seed);
        let lab: Vec<u8> = (0..n).map(|i| (i % 12) as u8).collect();
        std::fs::write(
            three.join(format!("{stem}-images-idx3-ubyte")),
            idx_bytes(&[n, 8, 8], &px),
        )
        .unwrap();
        std::fs::write(
            three.join(format!("{stem}-labels-idx1-ubyte")),
            idx_bytes(&[n], &lab),
        )
        .unwrap();
    }
    let r3 = d.path().join("r3");
    let mut a = gan_args(s(&three), s(&r3));
    a.extend(["--classifier", s(&cls)]);
    let e = fails(&embedlab(&a));
    assert!(
        e.contains("knows 10 classes") && e.contains("has 12"),
        "{e}"
    );
    // --classifier where nothing is generated.
    let e = fails(&embedlab(&[
        "train",
        "classifier",
        "--data",
        ds,
        "--width",
        "4",
        "--features",
        "8",
        "--epochs",
        "1",
        "--valid",
        "20",
        "--classifier",
        s(&cls),
        "--out",
        s(&d.path().join("c2")),
    ]));
    assert!(e.contains("generates none"), "{e}");
    let e = fails(&embedlab(&["eval", s(&cls), "--classifier", s(&cls)]));
    assert!(e.contains("generates none"), "{e}");
}

#[test]
fn an_exploding_flow_is_rolled_back_or_stopped_and_eval_on_says_what_it_measures() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 40, 8);
    // At a rate of 0.25 the training loss leaves the flow's ceiling of 16
    // bits/dim, every number finite: without rollbacks the run stops,
    // saying so and writing no weights.
    let stopped = d.path().join("stopped");
    let e = fails(&small_glow(
        &data,
        &stopped,
        &["--epochs", "2", "--lr", "0.25", "--nan-rollbacks", "0"],
    ));
    assert!(
        e.contains("above the model's ceiling of 16") && e.contains("at epoch 1"),
        "{e}"
    );
    assert!(!stopped.join("best.safetensors").exists());
    // With the default rollbacks it goes back with smaller rates, says
    // so, and finishes; the report counts the rollbacks.
    let glow = d.path().join("glow");
    let out = ok(&small_glow(
        &data,
        &glow,
        &["--epochs", "2", "--iwae-images", "10", "--lr", "0.5"],
    ));
    assert!(
        out.contains("above the model's ceiling of 16") && out.contains("rolled back"),
        "{out}"
    );
    let r = report(&glow);
    let rollbacks = r["details"]["training"]["rollbacks"].as_u64().unwrap();
    assert!(rollbacks >= 1, "{r}");
    // eval --on the run's own data says so; another set is labelled as such.
    let o = ok(&embedlab(&["eval", s(&glow), "--on", s(&data)]));
    assert!(o.contains("the run's own test set"), "{o}");
    let other = d.path().join("other");
    write_idx_dataset(&other, 100, 30, 8);
    let o = ok(&embedlab(&["eval", s(&glow), "--on", s(&other)]));
    assert!(o.contains("not the training set's"), "{o}");
    // A GAN has nothing to measure on given images.
    let gan = d.path().join("gan");
    ok(&embedlab(&gan_args(s(&data), s(&gan))));
    let e = fails(&embedlab(&["eval", s(&gan), "--on", s(&data)]));
    assert!(e.contains("no metric of given images"), "{e}");
    assert!(!gan.join("eval-on-data.json").exists());
}

#[test]
fn score_takes_the_usual_array_layouts() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 60, 8);
    let cls = d.path().join("cls");
    classifier(&data, &cls);
    let (px, _) = embedlab_testkit::bars(20, 8, 5);
    let vals: Vec<u8> = px
        .iter()
        .flat_map(|v| (*v as f32 / 255.0).to_le_bytes())
        .collect();
    for (shape, ok_) in [
        ("(20, 64)", true),
        ("(20, 1, 8, 8)", true),
        ("(20, 8, 8)", true),
        ("(20, 2, 4, 8)", false),
    ] {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(&vals);
        let p = d.path().join("s.npy");
        std::fs::write(&p, &b).unwrap();
        let o = embedlab(&["score", s(&p), "--classifier", s(&cls), "--n", "10"]);
        if ok_ {
            let t = ok(&o);
            assert!(t.contains("Fréchet"), "{shape}: {t}");
        } else {
            let e = fails(&o);
            assert!(
                e.contains("(20, 2, 4, 8)") && e.contains("(n, 1, 8, 8)"),
                "{e}"
            );
        }
    }
}

#[test]
fn messages_say_what_is_wrong() {
    let d = tempfile::tempdir().unwrap();
    // One training image: the data set is named, not --valid.
    let one = d.path().join("one");
    write_idx_dataset(&one, 1, 10, 8);
    let r1 = d.path().join("r1");
    let e = fails(&embedlab(&[
        "train",
        "dcgan",
        "--data",
        s(&one),
        "--arch",
        "mlp",
        "--epochs",
        "1",
        "--out",
        s(&r1),
    ]));
    assert!(
        e.contains("1 training image") && !e.contains("--valid must"),
        "{e}"
    );
    // Unsigned options given -1 or 1e300 say the range.
    for bad in ["-1", "1e300"] {
        let e = fails_usage(&embedlab(&["train", "dcgan", &format!("--epochs={bad}")]));
        assert!(
            e.contains("1..=1000000") && !e.contains("invalid digit"),
            "{bad}: {e}"
        );
    }
    // A run stopped by a NaN in its first epoch has no weights: said so.
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 40, 8);
    let nan = d.path().join("nan");
    let _ = small_glow(
        &data,
        &nan,
        &["--epochs", "1", "--lr", "10", "--nan-rollbacks", "0"],
    );
    // (Whether or not it got past its first epoch, without best weights
    // the run is one that never finished one.)
    std::fs::remove_file(nan.join("best.safetensors")).ok();
    let e = fails(&embedlab(&["eval", s(&nan)]));
    assert!(
        e.contains("never finished an epoch") && !e.contains("No such file"),
        "{e}"
    );
}

/// clap's usage errors exit with 2.
fn fails_usage(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{err}");
    err
}

/// A colleague's run: another user opens it read only; evaluation and the
/// latent tools work and write their outputs elsewhere.
#[test]
fn a_read_only_run_can_be_evaluated_and_inspected() {
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("SKIPPED: needs root to run a command as another user (nobody)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 40, 8);
    let run = d.path().join("run");
    ok(&embedlab(&[
        "--seed",
        "1",
        "train",
        "vae",
        "--data",
        s(&data),
        "--hidden",
        "16",
        "--latent",
        "2",
        "--epochs",
        "1",
        "--valid",
        "20",
        "--iwae-images",
        "5",
        "--iwae-k",
        "5",
        "--no-images",
        "--out",
        s(&run),
    ]));
    let before = snapshot(&run);
    let work = d.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_embedlab"))
            .args(["--threads", "1"])
            .args(args)
            .current_dir(&work)
            .env("HOME", &work)
            .output()
            .expect("setpriv")
    };
    let o = as_nobody(&["eval", s(&run), "--iwae-k", "5", "--iwae-images", "5"]);
    let t = ok(&o);
    assert!(
        t.contains("read-only") && t.contains("embedlab-outputs"),
        "{t}"
    );
    let o = as_nobody(&["latent", "samples", s(&run), "--n", "4"]);
    ok(&o);
    assert_eq!(snapshot(&run), before, "nothing written into the run");
    let outs = work.join("embedlab-outputs/run");
    let written: Vec<String> = std::fs::read_dir(&outs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        written.iter().any(|f| f.ends_with(".png"))
            && written.iter().any(|f| f.starts_with("eval-")),
        "{written:?}"
    );
    let e = fails(&as_nobody(&["train", "vae", "--resume", s(&run)]));
    assert!(e.contains("read-only"), "{e}");
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Word runs: `--overwrite` keeps the new run's own inputs too.
#[test]
fn overwrite_keeps_an_alignment_runs_own_inputs() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt, dict) = embedlab_testkit::rotated_pair(d.path(), 100, 4, 0.0);
    let run = d.path().join("w");
    let align = |dict: &Path| {
        embedlab(&[
            "align",
            "supervised",
            "--src",
            s(&src),
            "--tgt",
            s(&tgt),
            "--dict",
            s(dict),
            "--test-size",
            "20",
            "--out",
            s(&run),
            "--overwrite",
        ])
    };
    ok(&align(&dict));
    let kept = run.join("my-dict.txt");
    std::fs::copy(&dict, &kept).unwrap();
    let e = fails(&align(&kept));
    assert!(e.contains("an input of the new run"), "{e}");
    assert!(kept.is_file() && run.join("map.safetensors").is_file());
    // Without its input inside, the run is replaced.
    std::fs::remove_file(&kept).unwrap();
    ok(&align(&dict));
}
