//! End-to-end tests of the classifier, the GANs and the WAEs on small
//! generated image files: `train classifier`, a GAN scored with it
//! (Fréchet distance, precision/recall, coverage beside the real floor and
//! the classifier's provenance), resume, `score` of outside samples, the
//! 32×32×3 conv players on CIFAR-format files, and bad input.
use embedlab_testkit::{fails, json, metric, ok, report, write_cifar, write_idx_dataset};
use std::path::Path;
use std::process::Output;

fn embedlab(args: &[&str]) -> Output {
    embedlab_testkit::run(env!("CARGO_BIN_EXE_embedlab"), args)
}

/// Trains the small classifier of these tests; returns what it printed.
fn classifier(data: &Path, out: &Path) -> String {
    ok(&embedlab(&[
        "--seed",
        "1",
        "train",
        "classifier",
        "--data",
        data.to_str().unwrap(),
        "--width",
        "8",
        "--features",
        "16",
        "--epochs",
        "8",
        "--lr",
        "0.003",
        "--batch-size",
        "32",
        "--valid",
        "40",
        "--out",
        out.to_str().unwrap(),
    ]))
}

#[test]
fn a_classifier_scores_a_gan_and_a_wae_and_outside_samples() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 400, 200, 12);
    let cls = d.path().join("cls");
    classifier(&data, &cls);
    let r = report(&cls);
    assert!(metric(&r, "test accuracy") > 90.0, "{r}");
    // Its h(x) is compared with pixels and PCA in the shared analysis.
    assert!(metric(&r, "probe, codes") > 50.0, "{r}");
    assert!(metric(&r, "8-NN same class, codes") > 0.0, "{r}");
    assert!(cls.join("query-0.png").is_file());

    let gan = d.path().join("gan");
    let common = |model: &'static str, out: &Path, epochs: &'static str| {
        vec![
            "--seed".to_string(),
            "2".into(),
            "train".into(),
            model.into(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--arch".into(),
            "mlp".into(),
            "--hidden".into(),
            "32,16".into(),
            "--latent".into(),
            "4".into(),
            "--epochs".into(),
            epochs.into(),
            "--batch-size".into(),
            "32".into(),
            "--valid".into(),
            "40".into(),
            "--classifier".into(),
            cls.to_str().unwrap().into(),
            "--gen-samples".into(),
            "100".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let mut args = common("wgan-gp", &gan, "1");
    args.extend(["--ema".to_string(), "0.99".to_string()]);
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ok(&embedlab(&a));
    // The weight average is the generator's, never the critic's.
    let groups = &json(&gan.join("config.json"))["train"]["groups"];
    assert_eq!(groups["gen"]["ema"], 0.99, "{groups}");
    assert!(groups["disc"].get("ema").is_none(), "{groups}");
    let r = report(&gan);
    for m in [
        "FD",
        "FD real floor",
        "precision",
        "recall",
        "classes covered",
        "class KL to uniform",
        "confident samples",
        "confident real",
        "sample→train NN distance",
        "epochs flagged: collapse",
    ] {
        assert!(metric(&r, m).is_finite(), "{m}: {r}");
    }
    assert!(metric(&r, "FD") >= 0.0 && metric(&r, "FD real floor") >= 0.0);
    assert_eq!(
        metric(&r, "non-finite samples"),
        0.0,
        "a GAN's tanh output is finite"
    );
    let note = r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "FD")
        .unwrap()["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        note.contains("classifier") && note.contains("BLAKE3") && note.contains("100 samples"),
        "{note}"
    );
    // The confident-sample rate and the per-class counts in the notes: the
    // counts add up to the samples (classes covered) and to the confident
    // ones (confident samples), and the real rate is beside it.
    let note_of = |name: &str| {
        r["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["note"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let counts = |note: &str| -> i64 {
        let list = note.rsplit("per class: ").next().unwrap();
        list.split(", ")
            .map(|kv| kv.split(": ").nth(1).unwrap().parse::<i64>().unwrap())
            .sum()
    };
    assert_eq!(counts(&note_of("classes covered")), 100);
    let sure = metric(&r, "confident samples");
    assert!((0.0..=100.0).contains(&sure), "{sure}");
    assert_eq!(counts(&note_of("confident samples")) as f64, sure, "{r}");
    let real = metric(&r, "confident real");
    assert!(
        note_of("confident samples").contains(&format!("real test images: {real:.1}%")),
        "{r}"
    );
    for f in ["samples.png", "interpolations.png", "nearest-training.png"] {
        assert!(gan.join(f).is_file(), "{f} missing");
    }
    // WGAN-GP trains its critic 5 steps a generator step (in the config).
    let cfg = json(&gan.join("config.json"));
    assert_eq!(cfg["train"]["groups"]["disc"]["steps"], 5, "{cfg}");
    // Resume continues the GAN (only --epochs may change).
    ok(&embedlab(&[
        "train",
        "wgan-gp",
        "--resume",
        gan.to_str().unwrap(),
        "--epochs",
        "2",
    ]));
    assert_eq!(report(&gan)["details"]["training"]["epochs_done"], 2);
    // Every epoch, before and after the resume, scored its samples against
    // validation images (--epoch-samples, 1000 by default: all 40 here).
    assert_eq!(cfg["eval"]["epoch_samples"], 1000, "{cfg}");
    let epochs: Vec<serde_json::Value> = std::fs::read_to_string(gan.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l.get("epoch").is_some())
        .collect();
    assert_eq!(epochs.len(), 2);
    for e in &epochs {
        let v = &e["valid"];
        let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no valid.{k}: {e}"));
        assert!(f("fd") >= 0.0 && f("fd").is_finite(), "{e}");
        for k in ["confident", "precision", "recall"] {
            assert!((0.0..=100.0).contains(&f(k)), "{k}: {e}");
        }
        assert!((0.0..=10.0).contains(&f("classes")), "{e}");
        assert_eq!(f("nonfinite"), 0.0, "{e}");
        // The critic's checks are still there, beside the sample scores.
        assert!(v["d_acc"].is_number(), "{e}");
    }
    // Too few validation images to score an epoch: refused before any
    // folder is made, naming the option.
    let few = d.path().join("few");
    let mut args = common("dcgan", &few, "1");
    let at = args.iter().position(|a| a == "--valid").unwrap();
    args[at + 1] = "5".into();
    args.extend(["--epoch-samples", "5"].map(String::from));
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let e = fails(&embedlab(&a));
    assert!(
        e.contains("--epoch-samples") && e.contains("--valid"),
        "{e}"
    );
    assert!(!few.exists(), "a refused run leaves no folder");

    // A WAE encodes too: reconstruction error and its penalty are reported.
    let wae = d.path().join("wae");
    let mut args = common("wae-mmd", &wae, "2");
    args.extend(["--epoch-samples", "0"].map(String::from));
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ok(&embedlab(&a));
    assert!(
        !std::fs::read_to_string(wae.join("metrics.jsonl"))
            .unwrap()
            .contains("\"fd\""),
        "--epoch-samples 0 scores no epoch"
    );
    // Scoring every epoch draws from the generator between epochs, yet
    // training is untouched: the same weights, byte for byte.
    let scored = d.path().join("wae-scored");
    let args = common("wae-mmd", &scored, "2");
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ok(&embedlab(&a));
    assert!(std::fs::read_to_string(scored.join("metrics.jsonl"))
        .unwrap()
        .contains("\"fd\""));
    assert_eq!(
        std::fs::read(scored.join("best.safetensors")).unwrap(),
        std::fs::read(wae.join("best.safetensors")).unwrap(),
        "scoring the epochs changed training"
    );
    let r = report(&wae);
    assert!(
        metric(&r, "rec. MSE") < 0.5 && metric(&r, "MMD to prior").is_finite(),
        "{r}"
    );
    assert!(metric(&r, "FD").is_finite());

    // Outside samples: real test-like images score near the floor, noise far above.
    let npy = d.path().join("noise.npy");
    let rows = 100usize;
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, 144), }}");
    let pad = 64 - (10 + header.len() + 1) % 64;
    let header = format!("{header}{}\n", " ".repeat(pad));
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for i in 0..rows * 144 {
        bytes.extend((((i * 7919) % 101) as f32 / 100.0).to_le_bytes());
    }
    std::fs::write(&npy, &bytes).unwrap();
    let out = ok(&embedlab(&[
        "score",
        npy.to_str().unwrap(),
        "--classifier",
        cls.to_str().unwrap(),
        "--n",
        "100",
    ]));
    assert!(out.contains("FD") && out.contains("real floor"), "{out}");
    // Images of the wrong size, and a run that is not a classifier, are refused.
    // Rows of the wrong size are refused naming the file.
    let bad = d.path().join("bad.npy");
    let at = bytes.windows(10).position(|w| w == b"(100, 144)").unwrap();
    let mut b2 = bytes.clone();
    b2[at..at + 10].copy_from_slice(b"(144, 100)");
    std::fs::write(&bad, &b2).unwrap();
    let e = fails(&embedlab(&[
        "score",
        bad.to_str().unwrap(),
        "--classifier",
        cls.to_str().unwrap(),
    ]));
    assert!(e.contains("bad.npy") && e.contains("144"), "{e}");
    let e = fails(&embedlab(&[
        "score",
        npy.to_str().unwrap(),
        "--classifier",
        gan.to_str().unwrap(),
    ]));
    assert!(e.contains("not a classifier run"), "{e}");
}

#[test]
fn conv_players_train_on_cifar_format_images() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("cifar");
    write_cifar(&data, 1, 120, 40);
    let run = d.path().join("sngan");
    ok(&embedlab(&[
        "train",
        "cgan",
        "--data",
        data.to_str().unwrap(),
        "--hidden",
        "4",
        "--latent",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "20",
        "--valid",
        "20",
        "--no-images",
        "--out",
        run.to_str().unwrap(),
    ]));
    let cfg = json(&run.join("config.json"));
    assert_eq!(cfg["model"]["config"]["channels"], 3);
    assert_eq!(cfg["model"]["config"]["height"], 32);
}

#[test]
fn a_folder_of_png_images_trains_and_scores_like_any_data_set() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("pngs");
    embedlab_testkit::write_image_folder(&data, 400, 200, 12);
    let cls = d.path().join("cls");
    let err = classifier(&data, &cls);
    assert!(
        err.contains("pngs: 400 training, 200 test images of 1×12×12, 4 classes"),
        "{err}"
    );
    assert!(err.contains("600 images decoded and cached"), "{err}");
    let r = report(&cls);
    assert!(metric(&r, "test accuracy") > 90.0, "{r}");
    // A second run reads the cache, and the first run's fingerprint of the
    // folder still holds (the cache is not part of the data): the
    // classifier scores the second run's samples.
    let vae = d.path().join("vae");
    let o = embedlab(&[
        "train",
        "vae",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--latent",
        "4",
        "--batch-size",
        "32",
        "--valid",
        "40",
        "--classifier",
        cls.to_str().unwrap(),
        "--gen-samples",
        "100",
        "--out",
        vae.to_str().unwrap(),
    ]);
    let err = ok(&o);
    assert!(err.contains("read from the cache"), "{err}");
    let r = report(&vae);
    assert!(metric(&r, "FD").is_finite(), "{r}");
    assert!(metric(&r, "confident samples").is_finite(), "{r}");
    // Another size asked for: every image scaled and cropped to it, and
    // the run's evaluation reads them at that size again.
    let sized = d.path().join("sized");
    let out = ok(&embedlab(&[
        "train",
        "ae",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "8x10",
        "--epochs",
        "1",
        "--no-images",
        "--out",
        sized.to_str().unwrap(),
    ]));
    assert!(out.contains("test images of 1×8×10"), "{out}");
    assert_eq!(
        json(&sized.join("config.json"))["data"]["image_size"],
        serde_json::json!([8, 10])
    );
    let out = ok(&embedlab(&["eval", sized.to_str().unwrap()]));
    assert!(out.contains("rec. MSE"), "{out}");
    // On a data set with a size of its own, another size is refused.
    let idx = d.path().join("idx");
    write_idx_dataset(&idx, 40, 20, 12);
    let e = fails(&embedlab(&[
        "train",
        "ae",
        "--data",
        idx.to_str().unwrap(),
        "--image-size",
        "8",
        "--out",
        d.path().join("no").to_str().unwrap(),
    ]));
    assert!(
        e.contains("idx") && e.contains("applies to folders of PNG/JPEG images only"),
        "{e}"
    );
    // A broken image is named, and nothing is written.
    std::fs::write(data.join("train/class-0/zz.png"), b"not a png").unwrap();
    let bad = d.path().join("bad");
    let e = fails(&embedlab(&[
        "train",
        "ae",
        "--data",
        data.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
    ]));
    assert!(
        e.contains("zz.png") && e.contains("not a readable PNG or JPEG"),
        "{e}"
    );
    assert!(!bad.exists());
}

#[test]
fn a_bf16_channels_last_gan_records_its_precision_and_resumes_with_it_only() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 40, 12);
    let gan = d.path().join("gan");
    let (ds, out) = (data.to_str().unwrap(), gan.to_str().unwrap());
    let base = [
        "--seed",
        "1",
        "train",
        "dcgan",
        "--data",
        ds,
        "--arch",
        "conv",
        "--hidden",
        "8",
        "--latent",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--valid",
        "20",
        "--no-images",
    ];
    let mut args = base.to_vec();
    args.extend(["--precision", "bf16", "--channels-last", "--out", out]);
    ok(&embedlab(&args));
    let cfg = json(&gan.join("config.json"));
    assert_eq!(cfg["train"]["precision"], "bf16", "{cfg}");
    assert_eq!(cfg["train"]["channels_last"], true, "{cfg}");
    let r = report(&gan);
    assert!(metric(&r, "training speed") > 0.0, "{r}");
    // Resuming keeps the run's precision; asking for another is refused by
    // name and changes nothing.
    let before = std::fs::read(gan.join("checkpoint.safetensors")).unwrap();
    let e = fails(&embedlab(&[
        "train",
        "dcgan",
        "--resume",
        out,
        "--epochs",
        "2",
        "--precision",
        "f32",
    ]));
    assert!(e.contains("--precision"), "{e}");
    assert_eq!(
        std::fs::read(gan.join("checkpoint.safetensors")).unwrap(),
        before
    );
    ok(&embedlab(&[
        "train", "dcgan", "--resume", out, "--epochs", "2",
    ]));
    assert_eq!(report(&gan)["details"]["training"]["epochs_done"], 2);
    // auto is bf16 exactly where the CPU has fast bfloat16 products.
    let auto = d.path().join("auto");
    let mut args = base.to_vec();
    args.extend(["--precision", "auto", "--out", auto.to_str().unwrap()]);
    ok(&embedlab(&args));
    let want = if embedlab_train::precision::cpu_has_bf16() {
        "bf16"
    } else {
        "f32"
    };
    assert_eq!(json(&auto.join("config.json"))["train"]["precision"], want);
}
