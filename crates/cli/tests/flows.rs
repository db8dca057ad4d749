//! End-to-end tests of the flows on small generated image files: `train
//! glow|realnvp|iresnet` (bits/dim with its convention, the temperature
//! grid, NaN rollback on by default), `latent samples --temperature`,
//! `flow-check` (round trip and log-determinants against the brute-force
//! Jacobian; the residual blocks' Lipschitz constants), `eval --on` another
//! image set, and bad input.
use embedlab_testkit::{fails, json, metric, ok, report, run_in, write_idx_dataset};
use std::path::Path;
use std::process::Output;

fn embedlab(args: &[&str]) -> Output {
    embedlab_testkit::run(env!("CARGO_BIN_EXE_embedlab"), args)
}

fn train(kind: &str, data: &Path, out: &Path, extra: &[&str]) -> String {
    let mut a = vec![
        "--seed",
        "1",
        "train",
        kind,
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "2",
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
        "--iwae-images",
        "20",
        "--out",
        out.to_str().unwrap(),
    ];
    a.extend_from_slice(extra);
    ok(&embedlab(&a))
}

#[test]
fn glow_trains_samples_at_temperatures_and_passes_its_checks() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 300, 100, 8);
    let run = d.path().join("glow");
    let out = train("glow", &data, &run, &[]);
    assert!(out.contains("test bits/dim"), "{out}");
    let r = report(&run);
    let bpd = metric(&r, "test bits/dim");
    // Better than the uniform model's 8 bits, on 8×8 bars.
    assert!(bpd > 0.0 && bpd < 8.0, "{bpd}");
    let note = r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "test bits/dim")
        .unwrap()["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        note.contains("native 8×8×1 (64 values), 256 bins"),
        "{note}"
    );
    assert!(metric(&r, "inverse error (max)") < 1e-4);
    assert!(metric(&r, "rec. MSE") < 1e-4);
    assert!(run.join("temperatures.png").is_file());
    // Flows roll back on a NaN unless told otherwise.
    let cfg = json(&run.join("config.json"));
    assert_eq!(cfg["train"]["on_nan"]["rollback"]["max"], 3, "{cfg}");
    assert!(cfg["model"]["config"]["kind"] == "glow");

    let o = ok(&embedlab(&[
        "latent",
        "samples",
        run.to_str().unwrap(),
        "--n",
        "20",
        "--temperature",
        "0.5",
    ]));
    assert!(run.join("samples-t0.5.png").is_file(), "{o}");

    let o = ok(&embedlab(&[
        "flow-check",
        run.to_str().unwrap(),
        "--image",
        "3",
    ]));
    assert!(o.contains("brute force"), "{o}");
    let c = json(&run.join("flow-check.json"));
    let blocks = c["blocks"].as_array().unwrap();
    // 2 levels × (squeeze + 2 × (actnorm, 1×1 conv, coupling)).
    assert_eq!(blocks.len(), 14, "{c}");
    for b in blocks {
        let (ld, bf) = (
            b["logdet"].as_f64().unwrap(),
            b["brute_force"].as_f64().unwrap(),
        );
        assert!((ld - bf).abs() < 1e-6 * (1.0 + bf.abs()), "{b}");
        assert!(b["round_trip"].as_f64().unwrap() < 1e-9, "{b}");
    }

    // Another image set of the same size: its test images' bits/dim.
    let other = d.path().join("other");
    write_idx_dataset(&other, 50, 60, 8);
    let o = ok(&embedlab(&[
        "eval",
        run.to_str().unwrap(),
        "--on",
        other.to_str().unwrap(),
        "--iwae-k",
        "0",
    ]));
    assert!(o.contains("test bits/dim"), "{o}");
    let name = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|n| n.starts_with("eval-on-"));
    assert!(name.is_some(), "no eval-on-… file");
    // A set of another size is refused, naming it.
    let big = d.path().join("big");
    write_idx_dataset(&big, 20, 20, 12);
    let e = fails(&embedlab(&[
        "eval",
        run.to_str().unwrap(),
        "--on",
        big.to_str().unwrap(),
    ]));
    assert!(e.contains("big") && e.contains("12×12"), "{e}");
}

#[test]
fn iresnet_is_contractive_and_its_estimate_has_a_stated_spread() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 60, 8);
    let run = d.path().join("ires");
    train(
        "iresnet",
        &data,
        &run,
        &["--coeff", "0.8", "--exact-max", "0", "--eval-repeats", "2"],
    );
    let r = report(&run);
    assert!(
        metric(&r, "test bits/dim sd") > 0.0,
        "a random estimate with no spread"
    );
    assert!(metric(&r, "inverse error (max)") < 1e-4);
    ok(&embedlab(&[
        "flow-check",
        run.to_str().unwrap(),
        "--draws",
        "30",
    ]));
    let c = json(&run.join("flow-check.json"));
    let mut residual = 0;
    for b in c["blocks"].as_array().unwrap() {
        let layers = b["layers"].as_array().unwrap();
        if layers.is_empty() {
            continue;
        }
        residual += 1;
        for l in layers {
            let (t, e) = (
                l["sigma_true"].as_f64().unwrap(),
                l["sigma_estimate"].as_f64().unwrap(),
            );
            // The soft scaling holds each convolution at or below c (the
            // power iteration's estimate trails the true value a little).
            assert!(t <= 0.8 * 1.05, "{l}");
            assert!((t - e).abs() < 0.05, "{l}");
        }
        assert!(b["jacobian_sigma"].as_f64().unwrap() < 1.0, "{b}");
        // The estimate within a few of its standard deviations (5 terms:
        // the truncation's bias is small at these Lipschitz constants).
        let (ld, bf, sd) = (
            b["logdet"].as_f64().unwrap(),
            b["brute_force"].as_f64().unwrap(),
            b["logdet_sd"].as_f64().unwrap(),
        );
        assert!(
            (ld - bf).abs() < 5.0 * sd / 30f64.sqrt() + 0.05 * bf.abs() + 1e-3,
            "{b}"
        );
    }
    assert_eq!(residual, 4);
}

#[test]
fn bad_flow_options_are_refused_naming_them() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 60, 20, 8);
    let s = data.to_str().unwrap();
    // Refused when the model is built, before the run's folder (none given:
    // runs/train-<time> in the working directory) exists.
    let cwd = d.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let bin = env!("CARGO_BIN_EXE_embedlab");
    let e = fails(&run_in(
        bin,
        &cwd,
        &["train", "glow", "--data", s, "--levels", "4"],
    ));
    assert!(e.contains("divisible by 16"), "{e}");
    // Out-of-range values are refused by the parser (usage errors, exit 2).
    for (kind, opt, v) in [("iresnet", "--coeff", "1"), ("realnvp", "--alpha", "0.5")] {
        let o = run_in(bin, &cwd, &["train", kind, "--data", s, opt, v]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(e.contains(opt) && !e.contains("panicked"), "{e}");
    }
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "a refused run left a folder"
    );
    let e = fails(&embedlab(&["flow-check", d.path().to_str().unwrap()]));
    assert!(!e.is_empty());
}
