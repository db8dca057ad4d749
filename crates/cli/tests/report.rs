//! The demo on small generated data, with one pipeline broken on purpose,
//! and the HTML report of it and of a word-translation run, loaded in
//! headless Chromium: every image decodes, every table is laid out, the
//! failure is reported, nothing is fetched from outside. A screenshot is
//! kept in target/test-artefacts/report.png.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn embedlab(args: &[&str]) -> Output {
    embedlab_testkit::run(env!("CARGO_BIN_EXE_embedlab"), args)
}

/// data/fashion-mnist: 12×12 bars of 4 classes; data/mnist: the same with
/// its test images truncated.
fn write_data(root: &Path) {
    embedlab_testkit::write_idx_dataset(&root.join("fashion-mnist"), 300, 60, 12);
    let m = root.join("mnist");
    embedlab_testkit::write_idx_dataset(&m, 300, 60, 12);
    let p = m.join("t10k-images-idx3-ubyte");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 100]).unwrap();
}

/// A small supervised word-translation run (a rotated copy, all pairs).
fn write_alignment_run(dir: &Path) -> PathBuf {
    let n = 300;
    let d = 8;
    let mut s = format!("{n} {d}\n");
    let mut t = format!("{n} {d}\n");
    let mut dict = String::new();
    for i in 0..n {
        let v: Vec<f64> = (0..d)
            .map(|j| {
                (((i * 31 + j * 17) % 97) as f64 / 97.0 - 0.5) + if j == i % d { 1.0 } else { 0.0 }
            })
            .collect();
        s += &format!(
            "w{i} {}\n",
            v.iter()
                .map(|x| format!("{x:.5}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        // Target: coordinates reversed (a permutation is orthogonal).
        t += &format!(
            "m{i} {}\n",
            v.iter()
                .rev()
                .map(|x| format!("{x:.5}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        dict += &format!("w{i} m{i}\n");
    }
    std::fs::write(dir.join("src.vec"), s).unwrap();
    std::fs::write(dir.join("tgt.vec"), t).unwrap();
    std::fs::write(dir.join("dict.txt"), dict).unwrap();
    let run = dir.join("align-run");
    let o = embedlab(&[
        "align",
        "supervised",
        "--src",
        dir.join("src.vec").to_str().unwrap(),
        "--tgt",
        dir.join("tgt.vec").to_str().unwrap(),
        "--dict",
        dir.join("dict.txt").to_str().unwrap(),
        "--method",
        "procrustes",
        "--refine",
        "2",
        "--test-size",
        "100",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    run
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| {
        for c in ["chromium", "chromium-browser"] {
            if Command::new("sh").args(["-c", &format!("command -v {c}")]).output().is_ok_and(|o| o.status.success()) {
                return c.to_string();
            }
        }
        panic!("headless Chromium is needed: run scripts/setup-chromium.sh (make test does) or set CHROMIUM");
    })
}

fn attr(dom: &str, name: &str) -> i64 {
    let key = format!("{name}=\"");
    let i = dom
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} on <body>: the check script did not run"));
    dom[i + key.len()..]
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn demo_with_a_broken_pipeline_still_reports_and_the_report_renders_in_chromium() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_data(&data);
    let demo = d.path().join("demo");
    let o = embedlab(&[
        "demo",
        "--data",
        data.to_str().unwrap(),
        "--parts",
        "images",
        "--image-epochs",
        "1",
        "--out",
        demo.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a failed step must fail the demo");
    assert!(
        err.contains("1 of 14 steps failed") && err.contains("mnist-conv-vae"),
        "{err}"
    );
    let steps: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo.join("steps.json")).unwrap()).unwrap();
    let failed: Vec<&serde_json::Value> = steps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("t10k-images-idx3-ubyte"),
        "{failed:?}"
    );
    let html = std::fs::read_to_string(demo.join("report.html")).unwrap();
    assert!(
        html.contains("1 failed") && html.contains("fashion-mnist-cvae"),
        "report of what finished"
    );
    assert!(
        html.contains("Repetitions") && html.contains("fashion-mnist-vae, fashion-mnist-vae-seed2"),
        "spread over the VAE's two seeds"
    );
    // The generative families are in the report, scored by the demo's
    // classifier, with the real floor, the training flags and the
    // memorisation check.
    for want in [
        "fashion-mnist-classifier",
        "fashion-mnist-wgan-gp",
        "fashion-mnist-cgan",
        "fashion-mnist-glow",
        "test bits/dim",
        "temperatures",
        "FD real floor",
        "confident samples",
        "confident real",
        "epochs flagged: collapse",
        "memorisation check",
    ] {
        assert!(html.contains(want), "report lacks {want}");
    }
    for bad in [
        "src=\"http",
        "href=\"http",
        "<link",
        "@import",
        "url(http",
        "<script src",
    ] {
        assert!(!html.contains(bad), "the report refers outside: {bad}");
    }
    // The report of two inputs: the demo's folder and a word-translation run.
    let align = write_alignment_run(d.path());
    let report = d.path().join("report.html");
    let o = embedlab(&[
        "report",
        demo.to_str().unwrap(),
        align.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("Word translation") && html.contains("translation examples"),
        "alignment section"
    );
    // Which words translate, as a figure beside its table, and the hubness numbers.
    assert!(
        align.join("which-words.png").is_file()
            && html.contains("P@1 of the test words by kind of source word")
            && html.contains("hubness"),
        "the which-words figure and hubness are in the alignment section"
    );
    // Headless Chromium: load, run the page's check, read the DOM back.
    let url = format!("file://{}", report.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
    ];
    let dom = Command::new(chromium())
        .args(common)
        .arg("--window-size=1400,2000")
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    let (img_ok, imgs) = (attr(&dom, "data-images-ok"), attr(&dom, "data-images"));
    let (tab_ok, tabs) = (attr(&dom, "data-tables-ok"), attr(&dom, "data-tables"));
    assert!(
        imgs >= 20 && img_ok == imgs,
        "{img_ok} of {imgs} images decoded"
    );
    assert!(
        tabs >= 5 && tab_ok == tabs,
        "{tab_ok} of {tabs} tables laid out"
    );
    // The image models' table has more columns than 1,400 px hold: it
    // scrolls within its own box, and no table sticks out of the page.
    let (wide, scrolling) = (
        attr(&dom, "data-tables-overflowing"),
        attr(&dom, "data-tables-scrolling"),
    );
    assert_eq!(wide, 0, "{wide} tables wider than the page");
    assert!(
        scrolling >= 1,
        "no table is wide enough to scroll: the check would see nothing"
    );
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artefacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let o = Command::new(chromium())
        .args(common)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,4000")
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 50_000);
}
