//! TensorBoard event files, read back by TensorBoard's own event reader
//! (the Python `tensorboard` package that `scripts/setup.sh` installs into
//! `.venv`): every epoch of `metrics.jsonl` once as scalars, also after a
//! resume, and the run's image grids as images.
use embedlab_testkit::{metrics_lines, ok, write_idx_dataset};
use std::path::{Path, PathBuf};
use std::process::Command;

fn embedlab(args: &[&str]) -> std::process::Output {
    embedlab_testkit::run(env!("CARGO_BIN_EXE_embedlab"), args)
}

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup.sh (it installs the tensorboard package this test reads the files with)",
        p.display()
    );
    p
}

/// What TensorBoard's EventAccumulator reads from a run folder: scalars by
/// tag as (step, value) lists, images by tag as (step, width, height).
fn read_back(run: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
try:
    from tensorboard.backend.event_processing import event_accumulator as ea
except ImportError as e:
    sys.exit(f"the tensorboard package is not installed ({e}): run scripts/setup.sh")
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
acc.Reload()
tags = acc.Tags()
out = {"scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
       "images": {t: [[e.step, e.width, e.height, len(e.encoded_image_string)] for e in acc.Images(t)]
                  for t in tags["images"]}}
print(json.dumps(out))
"#;
    let out = Command::new(python())
        .args(["-c", script, run.to_str().unwrap()])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "TensorBoard's reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the reader's JSON")
}

#[test]
fn tensorboard_reads_every_epoch_once_and_the_sample_grids() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 50, 12);
    let run = d.path().join("run");
    ok(&embedlab(&[
        "--seed",
        "1",
        "train",
        "vae",
        "--epochs",
        "2",
        "--data",
        data.to_str().unwrap(),
        "--latent",
        "2",
        "--hidden",
        "32",
        "--batch-size",
        "50",
        "--valid",
        "40",
        "--out",
        run.to_str().unwrap(),
    ]));
    // Continued to 3 epochs: the log (and the events) hold each epoch once.
    ok(&embedlab(&[
        "--seed",
        "1",
        "train",
        "vae",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "3",
    ]));
    let events: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("tfevents"))
        .collect();
    assert!(!events.is_empty(), "no event file in {}", run.display());
    let tb = read_back(&run);
    let lines = metrics_lines(&run);
    let epochs: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("epoch").is_some()).collect();
    assert_eq!(epochs.len(), 3);
    let loss = tb["scalars"]["valid/loss"].as_array().expect("valid/loss");
    assert_eq!(loss.len(), 3, "each epoch once: {loss:?}");
    for (e, l) in epochs.iter().zip(loss) {
        assert_eq!(l[0], e["epoch"], "step is the epoch");
        let logged = e["valid"]["loss"].as_f64().unwrap();
        let read = l[1].as_f64().unwrap();
        assert!(
            (read - logged).abs() <= 1e-6 * logged.abs().max(1.0),
            "epoch {}: TensorBoard {read}, metrics.jsonl {logged}",
            e["epoch"]
        );
    }
    for tag in [
        "train/model/loss",
        "lr/model",
        "grad_norm/model",
        "items_per_second",
    ] {
        let s = tb["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("{tag}: {tb}"));
        assert_eq!(s.len(), 3, "{tag}");
    }
    // The sample grid at the last epoch, its size that of the PNG.
    let png = std::fs::read(run.join("samples.png")).unwrap();
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as u64;
    let samples = tb["images"]["samples"].as_array().expect("samples image");
    let last = samples.last().unwrap();
    assert_eq!(last[0], 3);
    assert_eq!(last[1].as_u64().unwrap(), be(16));
    assert_eq!(last[2].as_u64().unwrap(), be(20));
    assert_eq!(last[3].as_u64().unwrap(), png.len() as u64);
    assert!(
        tb["images"]["reconstructions"].is_array(),
        "{}",
        tb["images"]
    );
}

#[test]
fn tensorboard_gets_self_learning_iterations_as_steps() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt, dict) = embedlab_testkit::rotated_pair(d.path(), 400, 8, 0.02);
    let run = d.path().join("sl");
    ok(&embedlab(&[
        "align",
        "unsupervised",
        "--src",
        src.to_str().unwrap(),
        "--tgt",
        tgt.to_str().unwrap(),
        "--dict-test",
        dict.to_str().unwrap(),
        "--init-vocab",
        "400",
        "--cutoff",
        "400",
        "--patience",
        "3",
        "--out",
        run.to_str().unwrap(),
        "--device",
        "cpu",
    ]));
    let iterations: Vec<_> = metrics_lines(&run)
        .into_iter()
        .filter(|l| l["event"] == "iteration")
        .collect();
    assert!(!iterations.is_empty());
    let tb = read_back(&run);
    let objective = tb["scalars"]["iteration/objective"]
        .as_array()
        .unwrap_or_else(|| panic!("{tb}"));
    assert_eq!(objective.len(), iterations.len());
    for (l, e) in iterations.iter().zip(objective) {
        assert_eq!(e[0], l["iteration"]);
        let (a, b) = (e[1].as_f64().unwrap(), l["objective"].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
    }
}
