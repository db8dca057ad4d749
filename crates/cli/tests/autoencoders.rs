//! End-to-end tests of `embedlab train / eval / latent` on small generated
//! MNIST-format IDX files.
use std::path::Path;
use std::process::{Command, Output};

fn embedlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embedlab"))
        .args(["--threads", "1"])
        .args(args)
        .output()
        .expect("run embedlab")
}

fn ok(o: &Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    format!("{out}{err}")
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// 12×12 images of four classes (a bar in one of four places), with noise.
fn write_dataset(dir: &Path, n_train: u32, n_test: u32) {
    let mut state = 12345u64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f64 / 1000.0
    };
    for (stem, n) in [("train", n_train), ("t10k", n_test)] {
        let mut px = vec![];
        let mut lab = vec![];
        for i in 0..n {
            let c = (i % 4) as usize;
            lab.push(c as u8);
            for r in 0..12 {
                for col in 0..12 {
                    let on = (r / 3 == c) || (col / 3 == c && r % 2 == 0);
                    let v = if on { 0.85 + 0.15 * rnd() } else { 0.1 * rnd() };
                    px.push((v * 255.0) as u8);
                }
            }
        }
        std::fs::write(
            dir.join(format!("{stem}-images-idx3-ubyte")),
            idx(&[n, 12, 12], &px),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{stem}-labels-idx1-ubyte")),
            idx(&[n], &lab),
        )
        .unwrap();
    }
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn train_vae_writes_a_run_and_resume_continues() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_dataset(&data, 400, 100);
    let run = d.path().join("run");
    let common = [
        "--data",
        data.to_str().unwrap(),
        "--latent",
        "4",
        "--hidden",
        "64,32",
        "--batch-size",
        "32",
        "--iwae-k",
        "50",
        "--iwae-images",
        "20",
        "--valid",
        "40",
    ];
    let mut args = vec![
        "--seed",
        "3",
        "train",
        "cvae",
        "--epochs",
        "2",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend(common);
    let out = ok(&embedlab(&args));
    assert!(
        out.contains("ELBO") && out.contains("IWAE, k = 50"),
        "{out}"
    );
    for f in [
        "config.json",
        "env.json",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "checkpoint.json",
        "best.safetensors",
        "report.json",
        "samples.png",
        "reconstructions.png",
        "class-samples.png",
        "interpolations.png",
        "traversal.png",
        "latent-pca.png",
        "query-0.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let r = json(&run.join("report.json"));
    let nll = r["test"]["nll_iwae"].as_f64().unwrap();
    let elbo = r["test"]["elbo"].as_f64().unwrap();
    assert!(nll > 0.0 && elbo < 0.0, "{r}");
    assert!(
        r["probe"]["codes"]["test_accuracy"].as_f64().unwrap() > 0.5,
        "{r}"
    );
    // Resume to 3 epochs: only epoch 3 runs, the log keeps 1 and 2.
    let out = ok(&embedlab(&[
        "--seed",
        "3",
        "train",
        "cvae",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "3",
        "--iwae-k",
        "0",
        "--no-images",
    ]));
    assert!(
        out.contains("epoch   3") && !out.contains("epoch   2"),
        "{out}"
    );
    let epochs: Vec<i64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(epochs, [1, 2, 3]);
    // Resuming as another model is refused.
    let o = embedlab(&["train", "vae", "--resume", run.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds a cvae run, not a vae"));
    // The latent tools on the finished run.
    let out = ok(&embedlab(&[
        "latent",
        "probe",
        run.to_str().unwrap(),
        "--train-images",
        "200",
    ]));
    assert!(
        out.contains("raw pixels") && run.join("probe.json").is_file(),
        "{out}"
    );
    let out = ok(&embedlab(&[
        "latent",
        "query",
        run.to_str().unwrap(),
        "--index",
        "5",
        "--k",
        "4",
        "--queries",
        "50",
    ]));
    assert!(
        out.contains("same-class neighbours") && run.join("query-5.png").is_file(),
        "{out}"
    );
    ok(&embedlab(&[
        "latent",
        "map",
        run.to_str().unwrap(),
        "--method",
        "pca",
    ]));
    ok(&embedlab(&[
        "latent",
        "interpolate",
        run.to_str().unwrap(),
        "--from",
        "0",
        "--to",
        "3",
        "--steps",
        "6",
    ]));
    let out = ok(&embedlab(&[
        "eval",
        run.to_str().unwrap(),
        "--iwae-k",
        "20",
        "--iwae-images",
        "10",
    ]));
    assert!(
        out.contains("k = 20") && run.join("eval-k20.json").is_file(),
        "{out}"
    );
    let o = embedlab(&[
        "latent",
        "interpolate",
        run.to_str().unwrap(),
        "--from",
        "0",
        "--to",
        "100000",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("test image 100000 does not exist"));
}

#[test]
fn ae_samples_from_a_fitted_gaussian_and_gaussian_decoder_trains() {
    let d = tempfile::tempdir().unwrap();
    write_dataset(d.path(), 200, 40);
    let run = d.path().join("ae");
    let out = ok(&embedlab(&[
        "train",
        "ae",
        "--data",
        d.path().to_str().unwrap(),
        "--arch",
        "conv",
        "--latent",
        "3",
        "--hidden",
        "32",
        "--epochs",
        "1",
        "--likelihood",
        "gaussian",
        "--out",
        run.to_str().unwrap(),
    ]));
    assert!(
        out.contains("MSE per pixel") && !out.contains("ELBO"),
        "{out}"
    );
    assert!(run.join("samples.png").is_file());
}

#[test]
fn corrupt_data_and_identity_network() {
    let d = tempfile::tempdir().unwrap();
    write_dataset(d.path(), 20, 8);
    let p = d.path().join("t10k-images-idx3-ubyte");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 7]).unwrap();
    let o = embedlab(&[
        "train",
        "vae",
        "--data",
        d.path().to_str().unwrap(),
        "--out",
        d.path().join("r").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("t10k-images-idx3-ubyte") && err.contains("truncated"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = ok(&embedlab(&[
        "train",
        "identity",
        "--out",
        d.path().join("id").to_str().unwrap(),
    ]));
    assert!(out.contains("8/8 inputs reconstructed"), "{out}");
    assert!(out.contains("10000000"), "{out}");
}

#[test]
fn cifar_batches_train_a_conv_vae_with_colour_grids() {
    let d = tempfile::tempdir().unwrap();
    // Two training batches and a test batch of 32×32 RGB images: class c is
    // a colour (red, green, blue, grey) with noise.
    let mut state = 7u32;
    let mut write = |name: &str, n: usize| {
        let mut b = Vec::new();
        for i in 0..n {
            let c = i % 4;
            b.push(c as u8);
            for ch in 0..3 {
                for _ in 0..1024 {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let noise = (state >> 27) as u8;
                    let on = c == 3 || ch == c;
                    b.push(if on { 200 + noise } else { noise });
                }
            }
        }
        std::fs::write(d.path().join(name), b).unwrap();
    };
    write("data_batch_1.bin", 48);
    write("data_batch_2.bin", 48);
    write("test_batch.bin", 24);
    let run = d.path().join("run");
    let out = ok(&embedlab(&[
        "train",
        "vae",
        "--data",
        d.path().to_str().unwrap(),
        "--arch",
        "conv",
        "--likelihood",
        "gaussian",
        "--latent",
        "4",
        "--hidden",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--valid",
        "16",
        "--iwae-k",
        "20",
        "--iwae-images",
        "4",
        "--out",
        run.to_str().unwrap(),
    ]));
    assert!(
        out.contains("96 training, 24 test images of 3×32×32"),
        "{out}"
    );
    let img = image_size(&run.join("samples.png"));
    // 10 columns of 64-pixel (2× scaled) images with 2-pixel gutters.
    assert_eq!(img.0, 10 * 64 + 11 * 2);
    let r = json(&run.join("report.json"));
    assert!(r["test"]["nll_iwae"].as_f64().unwrap().is_finite(), "{r}");
    // A truncated batch is refused by name.
    let p = d.path().join("data_batch_2.bin");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 1]).unwrap();
    let o = embedlab(&["train", "vae", "--data", d.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("data_batch_2.bin") && err.contains("truncated"),
        "{err}"
    );
}

/// Width and height from a PNG header.
fn image_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[1..4], b"PNG");
    (
        u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
        u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
    )
}
