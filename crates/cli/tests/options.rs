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
    ("flow-check", "image", "0", "the first test image"),
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
