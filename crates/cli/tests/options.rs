//! Every numeric option of every subcommand, given 0, a negative number,
//! NaN, infinity and absurdly large values, is refused where it is parsed
//! with an error naming the option and its range — or has a documented
//! meaning (listed below, each with what it means), and those run.
use clap::CommandFactory;
use embedlab_cli::Cli;
use embedlab_testkit::{ok, write_idx_dataset};
use std::any::TypeId;

const BAD: [&str; 7] = [
    "0",
    "-1",
    "NaN",
    "inf",
    "1e300",
    "99999999999999999999",
    "x",
];

/// Values that are accepted on purpose: (subcommand path, option, value, meaning).
const DOCUMENTED: &[(&str, &str, &str, &str)] = &[
    ("*", "seed", "0", "any integer is a seed"),
    ("*", "seed", "-1", "any integer is a seed"),
    ("train *", "iwae-k", "0", "skips the test density"),
    ("train *", "iwae-images", "0", "skips the test density"),
    (
        "train *",
        "epoch-samples",
        "0",
        "no samples scored after each epoch",
    ),
    ("eval", "iwae-k", "0", "skips the test density"),
    ("eval", "iwae-images", "0", "skips the test density"),
    ("train *", "beta", "0", "a VAE without its KL term"),
    ("train *", "warmup", "0", "no KL warm-up"),
    ("align supervised", "refine", "0", "no refinement"),
    (
        "align supervised",
        "validation",
        "0",
        "choose refinement iterations by the unsupervised criterion",
    ),
    (
        "align unsupervised",
        "dis-layers",
        "0",
        "a linear discriminator",
    ),
    (
        "align unsupervised",
        "threshold",
        "0",
        "any objective gain, even none, resets the patience",
    ),
    (
        "align unsupervised",
        "dis-input-dropout",
        "0",
        "no input dropout",
    ),
    (
        "align unsupervised",
        "dis-smooth",
        "0",
        "no label smoothing",
    ),
    (
        "align unsupervised",
        "map-beta",
        "0",
        "no orthogonalisation",
    ),
    (
        "align unsupervised",
        "refinement",
        "0",
        "no Procrustes refinement",
    ),
    (
        "train *",
        "lambda",
        "0",
        "a WAE without its penalty: a plain autoencoder",
    ),
    (
        "train *",
        "gp-weight",
        "0",
        "a Wasserstein critic without the gradient penalty",
    ),
    (
        "train *",
        "beta1",
        "0",
        "Adam without momentum (as several GAN recipes use)",
    ),
    ("train *", "dropout", "0", "no dropout in the classifier"),
    (
        "train *",
        "nan-rollbacks",
        "0",
        "stop at a NaN, keeping the last good checkpoint",
    ),
    (
        "train *",
        "exact-max",
        "0",
        "i-ResNet: never the exact log-determinant",
    ),
    (
        "train *",
        "alpha",
        "0",
        "the plain logit (the uniform model's closed form)",
    ),
    (
        "bench flow",
        "exact-max",
        "0",
        "never the exact log-determinant",
    ),
    ("bench flow", "alpha", "0", "the plain logit"),
    (
        "bench csls",
        "noise",
        "0",
        "targets are exact copies of the sources (P@1 100%)",
    ),
    ("flow-check", "image", "0", "the first test image"),
    (
        "train *",
        "shifts",
        "-1",
        "DrLIM: a shift of one pixel to the left",
    ),
    ("data shifted", "shifts", "0", "the unshifted image"),
    (
        "data shifted",
        "shifts",
        "-1",
        "a shift of one pixel to the left",
    ),
    ("data variations", "index", "0", "the first training image"),
    ("data variations", "noise", "0", "no pixel noise"),
    ("latent samples", "temperature", "0", "the prior's mode"),
    ("latent traverse", "index", "0", "the first test image"),
    ("latent query", "index", "0", "the first test image"),
    ("latent interpolate", "from", "0", "the first test image"),
    ("latent interpolate", "to", "0", "the first test image"),
];

fn numeric(a: &clap::Arg) -> bool {
    let id = a.get_value_parser().type_id();
    [
        TypeId::of::<i64>(),
        TypeId::of::<i32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<f64>(),
        TypeId::of::<f32>(),
    ]
    .iter()
    .any(|t| id == *t)
}

/// Every leaf subcommand with its path.
fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
    let subs: Vec<&clap::Command> = cmd.get_subcommands().collect();
    if subs.is_empty() {
        out.push((path.clone(), cmd.clone()));
    }
    for s in subs {
        let mut p = path.clone();
        p.push(s.get_name().to_string());
        leaves(s, p, out);
    }
}

fn documented(path: &str, long: &str, value: &str) -> bool {
    DOCUMENTED.iter().any(|(p, o, v, _)| {
        let path_ok = *p == "*"
            || *p == path
            || (p.ends_with(" *") && path.starts_with(p.trim_end_matches('*')));
        path_ok && *o == long && *v == value
    })
}

#[test]
fn every_numeric_option_refuses_nonsense_or_has_a_documented_meaning() {
    let root = Cli::command();
    let globals: Vec<clap::Arg> = root.get_arguments().cloned().collect();
    let mut all = vec![];
    leaves(&root, vec![], &mut all);
    let (mut tried, mut refused, mut accepted) = (0, 0, vec![]);
    for (path, leaf) in &all {
        // Placeholders for what the subcommand requires.
        let mut base: Vec<String> = vec!["embedlab".into()];
        base.extend(path.iter().cloned());
        for a in leaf.get_arguments().filter(|a| a.is_required_set()) {
            let v = if numeric(a) { "1" } else { "x" };
            match a.get_long() {
                Some(l) => base.push(format!("--{l}={v}")),
                None => base.push(v.into()),
            }
        }
        let args: Vec<clap::Arg> = leaf
            .get_arguments()
            .chain(globals.iter())
            .filter(|a| numeric(a) && a.get_long().is_some())
            .cloned()
            .collect();
        for a in args {
            let long = a.get_long().unwrap();
            for v in BAD {
                let mut argv = base.clone();
                argv.retain(|x| !x.starts_with(&format!("--{long}=")));
                argv.push(format!("--{long}={v}"));
                tried += 1;
                match Cli::command().try_get_matches_from(&argv) {
                    Err(e) => {
                        let msg = e.to_string();
                        assert!(
                            msg.contains(&format!("--{long}")),
                            "{argv:?}: the error does not name the option:\n{msg}"
                        );
                        refused += 1;
                    }
                    Ok(_) => {
                        let p = path.join(" ");
                        assert!(
                            documented(&p, long, v),
                            "`embedlab {p} --{long}={v}` is accepted without a documented meaning"
                        );
                        accepted.push(format!("{p} --{long}={v}"));
                    }
                }
            }
        }
    }
    assert!(tried > 500, "only {tried} cases: the walk missed options");
    assert!(refused > tried * 9 / 10, "{refused} of {tried} refused");
    eprintln!(
        "{tried} option values tried: {refused} refused, {} accepted as documented",
        accepted.len()
    );
}

#[test]
fn documented_zero_values_run() {
    let bin = env!("CARGO_BIN_EXE_embedlab");
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 120, 30, 8);
    let run = d.path().join("vae");
    ok(&embedlab_testkit::run(
        bin,
        &[
            "--seed=-1",
            "train",
            "vae",
            "--data",
            data.to_str().unwrap(),
            "--epochs=1",
            "--hidden=16",
            "--latent=2",
            "--iwae-k=0",
            "--iwae-images=0",
            "--beta=0",
            "--warmup=0",
            "--valid=20",
            "--out",
            run.to_str().unwrap(),
        ],
    ));
    // The flows' zeros: stop at a NaN, the plain logit, no exact
    // log-determinant; flow-check on image 0; samples at the prior's mode.
    let glow = d.path().join("glow");
    ok(&embedlab_testkit::run(
        bin,
        &[
            "train",
            "iresnet",
            "--data",
            data.to_str().unwrap(),
            "--epochs=1",
            "--steps=1",
            "--hidden=4",
            "--init-batch=16",
            "--nan-rollbacks=0",
            "--preprocess=logit",
            "--alpha=0",
            "--exact-max=0",
            "--iwae-k=0",
            "--no-images",
            "--valid=20",
            "--out",
            glow.to_str().unwrap(),
        ],
    ));
    ok(&embedlab_testkit::run(
        bin,
        &[
            "flow-check",
            glow.to_str().unwrap(),
            "--image=0",
            "--draws=2",
        ],
    ));
    ok(&embedlab_testkit::run(
        bin,
        &[
            "latent",
            "samples",
            glow.to_str().unwrap(),
            "--temperature=0",
            "--n=4",
        ],
    ));
    ok(&embedlab_testkit::run(
        bin,
        &[
            "latent",
            "traverse",
            run.to_str().unwrap(),
            "--index=0",
            "--dims=1",
            "--steps=2",
        ],
    ));
    let (src, tgt, dict) = embedlab_testkit::rotated_pair(d.path(), 200, 6, 0.01);
    ok(&embedlab_testkit::run(
        bin,
        &[
            "align",
            "unsupervised",
            "--method=adversarial",
            "--src",
            src.to_str().unwrap(),
            "--tgt",
            tgt.to_str().unwrap(),
            "--dict-test",
            dict.to_str().unwrap(),
            "--epochs=1",
            "--epoch-size=320",
            "--dis-layers=0",
            "--dis-input-dropout=0",
            "--dis-smooth=0",
            "--map-beta=0",
            "--refinement=0",
            "--criterion-words=100",
            "--out",
            d.path().join("adv").to_str().unwrap(),
        ],
    ));
}

/// Runs `embedlab` with `EMBEDLAB_MEMORY_LIMIT` set (or left as it is).
fn run_with_limit(bin: &str, limit: Option<&str>, args: &[String]) -> std::process::Output {
    let mut c = std::process::Command::new(bin);
    c.args(["--threads", "1"]).args(args);
    match limit {
        Some(l) => c.env("EMBEDLAB_MEMORY_LIMIT", l),
        None => c.env_remove("EMBEDLAB_MEMORY_LIMIT"),
    };
    c.output().expect("run embedlab")
}

/// Every numeric size option of the image families, at the largest value
/// its parser accepts, builds a model that cannot fit: the command is
/// refused before anything is built or trained, with the memory estimate
/// (not a panic inside tch's allocation). Options that are not too large
/// alone at their maximum (--latent, --features, --steps, --levels) go
/// with others at sizes that fit alone — checked: without the option at
/// its maximum the same command passes the memory check (a training run
/// then stops at an impossible --valid, after the check and the model's
/// construction; a bench runs one step) — so the option at its maximum is
/// what tips the estimate over the limit. The limit is 4 GiB, set with
/// EMBEDLAB_MEMORY_LIMIT, so that what is refused does not depend on the
/// machine; one case runs against the machine's own memory.
#[test]
fn size_options_at_their_largest_are_refused_with_the_memory_estimate() {
    let bin = env!("CARGO_BIN_EXE_embedlab");
    let d = tempfile::tempdir().unwrap();
    let small = d.path().join("small");
    write_idx_dataset(&small, 120, 30, 8);
    // 256×256 images: the only size 8 levels of squeezes divide.
    let large = d.path().join("large");
    write_idx_dataset(&large, 8, 4, 256);
    let (small, large) = (small.to_str().unwrap(), large.to_str().unwrap());
    // (command, data, the option at its maximum, its maximum, the other options).
    let cases: &[(&str, &str, &str, &str, &[&str])] = &[
        ("train vae", small, "hidden", "65536,65536", &["--arch=mlp"]),
        (
            "train vae",
            small,
            "latent",
            "4096",
            &["--arch=mlp", "--hidden=65536"],
        ),
        (
            "train ae",
            small,
            "latent",
            "4096",
            &["--arch=conv", "--hidden=65536"],
        ),
        (
            "train cvae",
            small,
            "hidden",
            "65536,65536",
            &["--arch=mlp"],
        ),
        ("train dcgan", small, "hidden", "65536", &[]),
        (
            "train dcgan",
            small,
            "hidden",
            "65536,65536",
            &["--arch=mlp", "--latent=4096"],
        ),
        (
            "train sngan",
            small,
            "latent",
            "4096",
            &["--arch=mlp", "--hidden=65536"],
        ),
        ("train wgan-gp", small, "hidden", "65536", &[]),
        (
            "train wae-mmd",
            small,
            "latent",
            "4096",
            &["--arch=mlp", "--hidden=65536"],
        ),
        ("train wae-gan", small, "zdisc-hidden", "65536,65536", &[]),
        (
            "train wae-gan",
            small,
            "hidden",
            "65536,65536",
            &["--arch=mlp"],
        ),
        (
            "train classifier",
            small,
            "width",
            "1024",
            &["--features=65536"],
        ),
        (
            "train classifier",
            small,
            "features",
            "65536",
            &["--width=1024"],
        ),
        // --batch-size at its largest is not here: `train` counts the
        // training batch as at most the training images, so on this data it
        // fits, and it is run below as a passing case.
        ("train glow", small, "hidden", "4096", &[]),
        ("train glow", small, "steps", "256", &["--hidden=1024"]),
        ("train realnvp", small, "steps", "256", &["--hidden=1024"]),
        ("train iresnet", small, "hidden", "4096", &[]),
        (
            "train glow",
            large,
            "levels",
            "8",
            // Small enough that a validation batch of these images fits.
            &[
                "--no-split",
                "--hidden=8",
                "--batch-size=1",
                "--init-batch=2",
            ],
        ),
        (
            "train glow",
            small,
            "init-batch",
            "100000",
            &["--hidden=1024"],
        ),
        ("bench flow", "", "size", "1024", &[]),
        ("bench flow", "", "batch", "4096", &[]),
        ("bench flow", "", "channels", "64", &["--batch=256"]),
        ("bench flow", "", "hidden", "4096", &[]),
        (
            "bench flow",
            "",
            "steps",
            "256",
            &["--hidden=1024", "--batch=2"],
        ),
        (
            "bench flow",
            "",
            "levels",
            "8",
            &["--size=256", "--no-split", "--batch=1"],
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (i, (cmd, data, opt, max, rest)) in cases.iter().enumerate() {
        let mut argv: Vec<String> = cmd.split(' ').map(String::from).collect();
        if !data.is_empty() {
            argv.push(format!("--data={data}"));
            argv.push(format!(
                "--out={}",
                d.path().join(format!("run{i}")).display()
            ));
        }
        argv.extend(rest.iter().map(|s| s.to_string()));
        argv.push(format!("--{opt}={max}"));
        // The value is the largest the option's parser takes.
        let parse = |a: &[String]| {
            let mut full = vec!["embedlab".to_string()];
            full.extend(a.iter().cloned());
            Cli::command().try_get_matches_from(full)
        };
        parse(&argv).unwrap_or_else(|e| panic!("{argv:?} is refused by the parser: {e}"));
        let last: i64 = max.rsplit(',').next().unwrap().parse().unwrap();
        let mut over = argv.clone();
        over.pop();
        over.push(format!("--{opt}={}", last + 1));
        assert!(
            parse(&over).is_err(),
            "{over:?}: --{opt} takes more than {last}, update the case"
        );
        let t = std::time::Instant::now();
        let o = run_with_limit(bin, Some("4G"), &argv);
        let secs = t.elapsed().as_secs_f64();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let what = format!("embedlab {}", argv.join(" "));
        assert_eq!(
            o.status.code(),
            Some(1),
            "{what}: exit {:?}\n{err}",
            o.status.code()
        );
        assert!(!err.contains("panicked"), "{what}: a panic\n{err}");
        for want in [
            "would need about ",
            " GiB of memory (",
            "more than the 4.0 GiB available (EMBEDLAB_MEMORY_LIMIT)",
        ] {
            assert!(err.contains(want), "{what}: no {want:?} in\n{err}");
        }
        let named = format!("--{opt} {max}");
        assert!(
            err.contains(&named),
            "{what}: {named:?} is not named in\n{err}"
        );
        assert!(secs < 30.0, "{what}: refused after {secs:.1} s");
        if !data.is_empty() {
            assert!(
                !d.path().join(format!("run{i}")).exists(),
                "{what}: a refused run left its folder"
            );
        }
        seen.insert(format!("{cmd} --{opt}"));
        if rest.is_empty() {
            continue;
        }
        // The others alone fit: the memory check passes.
        let mut alone = argv.clone();
        alone.pop();
        alone.push(if data.is_empty() {
            "--iterations=1".into()
        } else {
            "--valid=100000000".into()
        });
        let o = run_with_limit(bin, Some("4G"), &alone);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let what = format!("embedlab {}", alone.join(" "));
        assert!(!err.contains("would need about"), "{what}: refused\n{err}");
        assert!(!err.contains("panicked"), "{what}: a panic\n{err}");
        if data.is_empty() {
            assert!(o.status.success(), "{what}:\n{err}");
        } else {
            assert!(
                err.contains("leaves no training images"),
                "{what}: not stopped by --valid\n{err}"
            );
        }
    }
    // Every size option of every image family is covered.
    for want in [
        "hidden",
        "latent",
        "zdisc-hidden",
        "width",
        "features",
        "steps",
        "levels",
        "init-batch",
    ] {
        assert!(
            seen.iter().any(|s| s.ends_with(&format!(" --{want}"))),
            "no case for --{want}"
        );
    }
    // --batch-size at its largest: the training batch is counted as at
    // most the training images, so on 120 images it passes the check (the run then
    // stops at the impossible --valid, after the check and the build).
    for family in ["cgan", "classifier", "iresnet"] {
        let argv: Vec<String> = [
            "train",
            family,
            "--batch-size=1048576",
            "--valid=100000",
            &format!("--data={small}"),
            &format!("--out={}", d.path().join("full-batch").display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = run_with_limit(bin, Some("4G"), &argv);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(
            !err.contains("would need about") && !err.contains("panicked"),
            "{family}: {err}"
        );
        assert!(err.contains("leaves no training images"), "{family}: {err}");
    }
    // Against the machine's own memory: 9 G parameters fit nowhere a test runs.
    let argv: Vec<String> = [
        "train",
        "dcgan",
        "--arch=mlp",
        "--hidden=65536,65536",
        "--latent=4096",
        &format!("--data={small}"),
        &format!("--out={}", d.path().join("own").display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let o = run_with_limit(bin, None, &argv);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("would need about") && err.contains("MemAvailable in /proc/meminfo"),
        "{err}"
    );
}

/// `embedlab train`'s subcommands are the families' registry, in its
/// order, and the 8-3-8 network: a family added to the registry is
/// trainable with no other CLI change.
#[test]
fn train_subcommands_come_from_the_registry() {
    let cmd = Cli::command();
    let train = cmd.find_subcommand("train").expect("a train subcommand");
    let got: Vec<&str> = train.get_subcommands().map(|c| c.get_name()).collect();
    let mut want: Vec<&str> = embedlab_pipelines::family::models()
        .map(|m| m.name)
        .collect();
    want.push("identity");
    assert_eq!(got, want);
    for m in embedlab_pipelines::family::models() {
        let sub = train.find_subcommand(m.name).unwrap();
        assert_eq!(
            sub.get_about().map(|a| a.to_string()).as_deref(),
            Some(m.about)
        );
    }
}
