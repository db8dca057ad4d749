//! End-to-end tests of `embedlab train / eval / latent` on small generated
//! image files (the test kit's bars, in IDX and CIFAR formats).
use embedlab_testkit::{
    fails, json, metric, metrics_lines, ok, report, write_cifar, write_idx_dataset,
};
use std::path::Path;
use std::process::Output;

fn embedlab(args: &[&str]) -> Output {
    embedlab_testkit::run(env!("CARGO_BIN_EXE_embedlab"), args)
}

#[test]
fn train_cvae_writes_a_run_and_resume_continues() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 400, 100, 12);
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
        out.contains("test ELBO") && out.contains("IWAE bound, k = 50"),
        "{out}"
    );
    for f in [
        "run.json",
        "config.json",
        "env.json",
        "metrics.jsonl",
        "checkpoint.safetensors",
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
    assert_eq!(json(&run.join("run.json"))["kind"], "train");
    let r = report(&run);
    assert_eq!(r["section"], "Image models");
    let nll = metric(&r, "test NLL");
    let elbo = metric(&r, "test ELBO");
    assert!(nll > 0.0 && elbo < 0.0, "{r}");
    assert!(metric(&r, "probe, codes") > 50.0, "{r}");
    assert!(metric(&r, "probe, pixels") > 50.0, "{r}");
    assert!(metric(&r, "8-NN same class, PCA-4") > 0.0, "{r}");
    let figures: Vec<&str> = r["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert!(figures.contains(&"class-samples.png") && figures.contains(&"query-0.png"));
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
    ]));
    assert!(
        out.contains("epoch   3") && !out.contains("epoch   2"),
        "{out}"
    );
    let epochs: Vec<i64> = metrics_lines(&run)
        .iter()
        .map(|l| l["epoch"].as_i64().unwrap())
        .collect();
    assert_eq!(epochs, [1, 2, 3]);
    // Resuming as another model, or with other options, is refused.
    let e = fails(&embedlab(&[
        "train",
        "vae",
        "--resume",
        run.to_str().unwrap(),
    ]));
    assert!(e.contains("holds a cvae run, not a vae run"), "{e}");
    let e = fails(&embedlab(&[
        "train",
        "cvae",
        "--resume",
        run.to_str().unwrap(),
        "--hidden",
        "8",
        "--epochs",
        "4",
    ]));
    assert!(e.contains("--hidden cannot change on --resume"), "{e}");
    let e = fails(&embedlab(&[
        "train",
        "cvae",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "2",
    ]));
    assert!(e.contains("already has 3 epochs"), "{e}");
    // The latent tools on the finished run.
    let out = ok(&embedlab(&[
        "latent",
        "probe",
        run.to_str().unwrap(),
        "--train-images",
        "200",
    ]));
    assert!(
        out.contains("probe, pixels") && run.join("probe.json").is_file(),
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
        out.contains("k = 20") && run.join("eval-k20-n10.json").is_file(),
        "{out}"
    );
    let e = fails(&embedlab(&[
        "latent",
        "interpolate",
        run.to_str().unwrap(),
        "--from",
        "0",
        "--to",
        "100000",
    ]));
    assert!(e.contains("test image 100000 is out of range"), "{e}");
}

#[test]
fn ae_samples_from_a_fitted_gaussian_and_gaussian_decoder_trains() {
    let d = tempfile::tempdir().unwrap();
    write_idx_dataset(d.path(), 200, 40, 12);
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
        out.contains("rec. MSE") && !out.contains("ELBO") && !out.contains("test NLL"),
        "{out}"
    );
    assert!(run.join("samples.png").is_file());
    let r = report(&run);
    let caption = r["figures"][0]["caption"].as_str().unwrap();
    assert!(
        caption.contains("Gaussian fitted to the training codes"),
        "{caption}"
    );
}

#[test]
fn corrupt_data_and_identity_network() {
    let d = tempfile::tempdir().unwrap();
    write_idx_dataset(d.path(), 20, 8, 12);
    let p = d.path().join("t10k-images-idx3-ubyte");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 7]).unwrap();
    let err = fails(&embedlab(&[
        "train",
        "vae",
        "--data",
        d.path().to_str().unwrap(),
        "--out",
        d.path().join("r").to_str().unwrap(),
    ]));
    assert!(
        err.contains("t10k-images-idx3-ubyte") && err.contains("truncated"),
        "{err}"
    );
    let id = d.path().join("id");
    let out = ok(&embedlab(&[
        "train",
        "identity",
        "--out",
        id.to_str().unwrap(),
    ]));
    assert!(out.contains("8/8 inputs reconstructed"), "{out}");
    assert!(out.contains("10000000"), "{out}");
    let r = report(&id);
    assert_eq!(metric(&r, "inputs reconstructed"), 8.0);
    assert_eq!(metrics_lines(&id).len(), 30, "30 epochs of 100 steps");
}

#[test]
fn cifar_batches_train_a_conv_vae_with_colour_grids() {
    let d = tempfile::tempdir().unwrap();
    write_cifar(d.path(), 2, 48, 24);
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
    assert!(metric(&report(&run), "test NLL").is_finite());
    // A truncated batch is refused by name.
    let p = d.path().join("data_batch_2.bin");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 1]).unwrap();
    let err = fails(&embedlab(&[
        "train",
        "vae",
        "--data",
        d.path().to_str().unwrap(),
    ]));
    assert!(
        err.contains("data_batch_2.bin") && err.contains("truncated"),
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

/// Two runs into one folder at once: the second is refused, naming the
/// first; so is a resume or an alignment into it while it runs.
#[test]
fn a_second_run_into_a_busy_folder_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write_idx_dataset(d.path(), 2000, 40, 12);
    let run = d.path().join("run");
    let args = [
        "--threads",
        "1",
        "train",
        "vae",
        "--data",
        d.path().to_str().unwrap(),
        // Killed below: as many epochs as it takes for the other commands
        // to run while it holds the folder (50 finished first on a loaded
        // machine).
        "--epochs",
        "100000",
        "--hidden",
        "256",
        "--no-images",
        "--iwae-k",
        "0",
        "--out",
        run.to_str().unwrap(),
    ];
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_embedlab"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !run.join("run.json").is_file() {
        assert!(t.elapsed().as_secs() < 60, "the first run did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (src, tgt, dict) = embedlab_testkit::rotated_pair(d.path(), 100, 4, 0.0);
    let second = embedlab(&args[2..]);
    let resume = embedlab(&["train", "vae", "--resume", run.to_str().unwrap()]);
    // A supervised alignment into the training run's folder.
    let align_into_run = |extra: &[&str]| {
        let mut a = vec![
            "align",
            "supervised",
            "--src",
            src.to_str().unwrap(),
            "--tgt",
            tgt.to_str().unwrap(),
            "--dict",
            dict.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        embedlab(&a)
    };
    let align = align_into_run(&["--test-size", "20"]);
    first.kill().unwrap();
    let _ = first.wait();
    for (what, o) in [
        ("second run", second),
        ("resume", resume),
        ("alignment", align),
    ] {
        let e = fails(&o);
        assert!(
            e.contains("in use by another embedlab process") && e.contains("pid"),
            "{what}: {e}"
        );
    }
    assert!(!run.join("map.safetensors").exists());
    // Once the first is gone, the folder is a training run: alignment into
    // it is refused as reuse, resume continues it.
    let e = fails(&align_into_run(&[]));
    assert!(
        e.contains("holds a train run") && e.contains("--overwrite"),
        "{e}"
    );
}

/// DrLIM trains through the registry like every family; `represent`
/// scores its codes beside pixels, PCA and a random projection (and a
/// linear AE's code and a GAN discriminator's features), pools two seeds of
/// one model into one row, and refuses a run trained on other images before
/// writing anything.
#[test]
fn drlim_trains_and_represent_scores_it_beside_the_baselines() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 200, 60, 12);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let train = |seed: &str, out: &Path, extra: &[&str]| {
        let mut a = vec![
            "--seed",
            seed,
            "train",
            "drlim",
            "--data",
            &s(&data),
            "--hidden",
            "32",
            "--epochs",
            "3",
            "--batch-size",
            "32",
            "--no-images",
            "--out",
            &s(out),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        a.extend(extra.iter().map(|x| x.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&embedlab(&a))
    };
    let (r0, r1) = (d.path().join("drlim-s0"), d.path().join("drlim-s1"));
    let out = train("0", &r0, &["--graph", "labels", "--shifts", "-2,2"]);
    assert!(out.contains("graph: same label, shifts −2,2"), "{out}");
    train("1", &r1, &["--graph", "labels", "--shifts", "-2,2"]);
    let (lin, gan) = (d.path().join("linear-ae"), d.path().join("dcgan"));
    let data_s = s(&data);
    for (out, model) in [
        (&lin, &["ae", "--linear", "--latent", "4"][..]),
        (&gan, &["dcgan", "--arch", "mlp", "--hidden", "16"][..]),
    ] {
        let o = s(out);
        let mut a = vec!["train"];
        a.extend_from_slice(model);
        a.extend([
            "--data",
            &data_s,
            "--epochs",
            "1",
            "--iwae-k",
            "0",
            "--no-images",
            "--out",
            &o,
        ]);
        ok(&embedlab(&a));
    }
    let rep = d.path().join("rep");
    let args = |runs: &[&Path]| {
        let mut a = vec![
            "represent".to_string(),
            "--data".into(),
            s(&data),
            "--labels".into(),
            "2,5".into(),
            "--draws".into(),
            "2".into(),
            // Quick probes: the bars are separable long before 2,000 steps.
            "--probe-steps".into(),
            "200".into(),
            "--out".into(),
            s(&rep),
        ];
        for r in runs {
            a.extend(["--run".to_string(), s(r)]);
        }
        a
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        embedlab(&a)
    };
    let out = ok(&run(args(&[&r0, &r1, &lin, &gan])));
    for want in [
        "pixels",
        "pca",
        "random",
        "drlim (2 seeds)",
        "linear-ae",
        "dcgan",
        "probe, 5/class %",
        "within/between",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    let r = report(&rep);
    assert_eq!(r["tables"][0]["rows"].as_array().unwrap().len(), 6);
    let bench = json(&rep.join("represent.json"));
    let row = |name: &str| {
        bench["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"].as_str().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in {bench}"))
            .clone()
    };
    let drlim = row("drlim");
    assert_eq!(drlim["scores"].as_array().unwrap().len(), 2);
    assert_eq!(drlim["scores"][0]["dim"], 2);
    assert_eq!(row("linear-ae")["scores"][0]["dim"], 4);
    let dcgan = row("dcgan");
    assert_eq!(dcgan["scores"][0]["dim"], 16);
    assert!(
        dcgan["what"]
            .as_str()
            .unwrap()
            .contains("discriminator's features"),
        "{dcgan}"
    );
    // The bars are separable: pixels' k-NN gets them all right.
    assert!(
        bench["rows"][0]["scores"][0]["knn"].as_f64().unwrap() > 95.0,
        "{bench}"
    );
    assert!(rep.join("map-drlim.png").exists());
    // A run of other images is refused before anything is written.
    let other = d.path().join("other");
    write_idx_dataset(&other, 180, 60, 12);
    let r2 = d.path().join("drlim-other");
    let mut a = vec!["train", "drlim", "--data"];
    let od = s(&other);
    let o2 = s(&r2);
    a.extend([
        od.as_str(),
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--no-images",
        "--out",
        o2.as_str(),
    ]);
    ok(&embedlab(&a));
    let rep2 = d.path().join("rep2");
    let mut a = args(&[&r0, &r2]);
    let at = a.iter().position(|x| *x == s(&rep)).unwrap();
    a[at] = s(&rep2);
    let e = fails(&run(a));
    assert!(e.contains("drlim-other") && e.contains("not on"), "{e}");
    assert!(!rep2.exists());
}
