//! GANs, WAEs and the classifier through the shared trainer on a tiny
//! seeded problem: bit-exact resume with spectral-norm and BatchNorm state,
//! checkpoint round trips, a conditional GAN that learns its classes, and
//! the generative metrics of a generator that only copies one class.
use embedlab_metrics::generative::{coverage, frechet_distance, precision_recall};
use embedlab_models::batches::Split;
use embedlab_models::capabilities::{encode_all, Classify, Sample};
use embedlab_models::classifier::{Classifier, ClassifierConfig};
use embedlab_models::gan::{Gan, GanArch, GanConfig, GanKind};
use embedlab_models::wae::{Penalty, Wae, WaeConfig};
use embedlab_models::{Arch, ModelError};
use embedlab_testkit::seeded as one_at_a_time;
use embedlab_train::checkpoint;
use embedlab_train::trainer::load_best;
use embedlab_train::{train, OptimConfig, Reuse, RunDir, TrainConfig, Trainable};
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn run_dir(p: &Path) -> RunDir {
    RunDir::create("train", Some(p), Reuse::Refuse, &serde_json::json!({})).unwrap()
}

/// Four prototype 8×8 images (a bar each), noisy copies labelled by prototype.
fn protos() -> Tensor {
    let p = Tensor::zeros([4, 1, 8, 8], (Kind::Float, Device::Cpu));
    for k in 0..4 {
        let _ = p.get(k).get(0).narrow(0, 2 * k, 2).fill_(0.95);
        let _ = p.get(k).get(0).narrow(1, 2 * k, 2).fill_(0.9);
    }
    p
}

fn toy(n: i64, seed: i64) -> Split {
    tch::manual_seed(seed);
    let y = Tensor::randint(4, [n], (Kind::Int64, Device::Cpu));
    let x = (protos().index_select(0, &y)
        + Tensor::rand([n, 1, 8, 8], (Kind::Float, Device::Cpu)) * 0.1)
        .clamp(0.0, 1.0);
    Split { x, y }
}

fn gan_cfg(kind: GanKind, arch: GanArch) -> GanConfig {
    GanConfig {
        kind,
        arch,
        latent: 4,
        hidden: match arch {
            GanArch::Conv => vec![4],
            GanArch::Mlp => vec![64, 32],
        },
        gp_weight: 10.0,
        channels: 1,
        height: 8,
        width: 8,
        classes: 4,
    }
}

fn wae_cfg(penalty: Penalty) -> WaeConfig {
    WaeConfig {
        penalty,
        arch: Arch::Mlp,
        hidden: vec![32],
        latent: 2,
        lambda: 10.0,
        zdisc_hidden: vec![16],
        channels: 1,
        height: 8,
        width: 8,
        classes: 4,
    }
}

/// Each of the model's groups gets Adam (the GANs' own betas and steps).
fn tcfg<M: Trainable>(m: &M, epochs: usize, gan: Option<&GanConfig>) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        groups: m
            .groups()
            .into_iter()
            .map(|g| {
                // The papers' settings (as the GAN family's descriptor gives
                // them): betas (0.5, 0.9) and 5 critic steps for WGAN-GP,
                // (0.5, 0.999) otherwise.
                let o = match gan {
                    Some(c) if c.kind == GanKind::WganGp => {
                        let o = OptimConfig::adam(1e-3).with_betas(0.5, 0.9);
                        if g.name == "disc" {
                            o.with_steps(5)
                        } else {
                            o
                        }
                    }
                    Some(_) => OptimConfig::adam(1e-3).with_betas(0.5, 0.999),
                    None => OptimConfig::adam(1e-3),
                };
                (g.name, o)
            })
            .collect(),
        patience: None,
        seed: 5,
        on_nan: Default::default(),
        precision: Default::default(),
        channels_last: false,
    }
}

/// Trains `epochs` in one go, or `first` then a resume in a fresh model up
/// to `epochs`; returns every variable (parameters and buffers).
fn straight_or_resumed<M, F>(
    make: F,
    epochs: usize,
    first: Option<usize>,
    gan: Option<&GanConfig>,
) -> Vec<(String, Tensor)>
where
    M: Trainable<Data = Split, Error = ModelError>,
    F: Fn() -> M,
{
    let (train_set, valid) = (toy(256, 1), toy(64, 2));
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(0);
    let mut m = make();
    let r = run_dir(dir.path());
    let e0 = first.unwrap_or(epochs);
    let tc = tcfg(&m, e0, gan);
    train(&mut m, &train_set, &valid, &tc, &r, false, &mut |_| {}).unwrap();
    drop(r);
    if first.is_none() {
        return checkpoint::variables(m.var_store());
    }
    tch::manual_seed(99);
    let mut m2 = make();
    let r = RunDir::resume(dir.path(), "train").unwrap();
    let tc = tcfg(&m2, epochs, gan);
    train(&mut m2, &train_set, &valid, &tc, &r, true, &mut |_| {}).unwrap();
    checkpoint::variables(m2.var_store())
}

fn assert_same(a: &[(String, Tensor)], b: &[(String, Tensor)], what: &str) {
    assert_eq!(a.len(), b.len());
    for ((n, x), (_, y)) in a.iter().zip(b) {
        assert!(x.equal(y), "{what}: {n} differs after resume");
    }
}

#[test]
fn gans_and_waes_resume_bit_exact_with_spectral_norm_and_batchnorm_state() {
    let _one = one_at_a_time();
    for (kind, arch) in [
        (GanKind::Cgan, GanArch::Conv),
        (GanKind::Dcgan, GanArch::Conv),
        (GanKind::WganGp, GanArch::Mlp),
    ] {
        let c = gan_cfg(kind, arch);
        let make = || Gan::new(c.clone(), Device::Cpu).unwrap();
        let a = straight_or_resumed(make, 3, None, Some(&c));
        let b = straight_or_resumed(make, 3, Some(1), Some(&c));
        let names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
        if kind == GanKind::Cgan {
            assert!(names.iter().any(|n| n.ends_with("sn_u")), "{names:?}");
        }
        if kind == GanKind::Dcgan {
            assert!(
                names.iter().any(|n| n.ends_with("running_mean")),
                "{names:?}"
            );
        }
        assert_same(&a, &b, &format!("{kind:?}"));
    }
    for p in [Penalty::Mmd, Penalty::Gan] {
        let make = || Wae::new(wae_cfg(p), Device::Cpu).unwrap();
        let a = straight_or_resumed(make, 3, None, None);
        let b = straight_or_resumed(make, 3, Some(1), None);
        assert_same(&a, &b, &format!("WAE {p:?}"));
    }
}

#[test]
fn spectral_norm_state_survives_a_checkpoint_round_trip() {
    let _one = one_at_a_time();
    let c = gan_cfg(GanKind::Sngan, GanArch::Conv);
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(0);
    let mut m = Gan::new(c.clone(), Device::Cpu).unwrap();
    let r = run_dir(dir.path());
    let tc = tcfg(&m, 2, Some(&c));
    train(
        &mut m,
        &toy(256, 1),
        &toy(64, 2),
        &tc,
        &r,
        false,
        &mut |_| {},
    )
    .unwrap();
    tch::manual_seed(42);
    let fresh = Gan::new(c.clone(), Device::Cpu).unwrap();
    let u = |g: &Gan| -> Vec<Tensor> {
        checkpoint::variables(&g.vs)
            .into_iter()
            .filter(|(n, _)| n.ends_with("sn_u"))
            .map(|(_, t)| t)
            .collect()
    };
    assert_eq!(u(&m).len(), 3);
    assert!(u(&m).iter().zip(u(&fresh)).any(|(a, b)| !a.equal(&b)));
    load_best(&fresh.vs, dir.path(), &fresh.kind(), &fresh.config_json()).unwrap();
    for (a, b) in u(&m).iter().zip(u(&fresh)) {
        assert!(a.equal(&b), "power-iteration vector not restored");
    }
    // Evaluation is frozen: the same noise gives the same images, and
    // sampling leaves u alone.
    tch::manual_seed(3);
    let s1 = m.sample(8, None, 1.0).unwrap();
    tch::manual_seed(3);
    let s2 = fresh.sample(8, None, 1.0).unwrap();
    assert!(s1.equal(&s2));
    for (a, b) in u(&m).iter().zip(u(&fresh)) {
        assert!(a.equal(&b));
    }
}

#[test]
fn a_conditional_gan_draws_the_class_it_is_asked_for() {
    let _one = one_at_a_time();
    let mut c = gan_cfg(GanKind::Cgan, GanArch::Mlp);
    c.hidden = vec![128, 128];
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(0);
    let mut m = Gan::new(c.clone(), Device::Cpu).unwrap();
    let r = run_dir(dir.path());
    let mut t = tcfg(&m, 60, Some(&c));
    for o in t.groups.values_mut() {
        o.lr = 2e-3;
    }
    train(
        &mut m,
        &toy(512, 1),
        &toy(64, 2),
        &t,
        &r,
        false,
        &mut |_| {},
    )
    .unwrap();
    tch::manual_seed(4);
    let y = Tensor::arange(4, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(50, 0, None);
    let s = m.sample(200, Some(&y), 1.0).unwrap();
    // Each sample's nearest prototype is the class it was drawn for.
    let d = Tensor::cdist(&s.flatten(1, -1), &protos().flatten(1, -1), 2.0, None);
    let right = d
        .argmin(1, false)
        .eq_tensor(&y)
        .to_kind(Kind::Double)
        .mean(Kind::Double);
    let acc = right.double_value(&[]);
    assert!(acc > 0.9, "{acc}");
}

#[test]
fn metrics_expose_a_generator_that_only_copies_one_class() {
    let _one = one_at_a_time();
    // A classifier of the four bars, trained through the shared trainer.
    let cfg = ClassifierConfig {
        width: 4,
        features: 16,
        dropout: 0.0,
        channels: 1,
        height: 8,
        width_px: 8,
        classes: 4,
    };
    tch::manual_seed(0);
    let mut clf = Classifier::new(cfg, Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = run_dir(dir.path());
    let (train_set, test) = (toy(512, 1), toy(800, 3));
    let tc = tcfg(&clf, 5, None);
    train(
        &mut clf,
        &train_set,
        &toy(64, 2),
        &tc,
        &r,
        false,
        &mut |_| {},
    )
    .unwrap();
    let acc = clf.evaluate_split(&test, 200)["accuracy"];
    assert!(acc > 99.0, "{acc}");
    let feats = |x: &Tensor| encode_all(&clf, x, &test.y.narrow(0, 0, x.size()[0]), 100).unwrap();
    let (a, b) = (test.x.narrow(0, 0, 400), test.x.narrow(0, 400, 400));
    // The "generator": noisy copies of class-0 training images only.
    let zeros = train_set.y.eq(0).nonzero().squeeze_dim(1);
    let one = train_set
        .x
        .index_select(0, &zeros)
        .narrow(0, 0, 100)
        .repeat([4, 1, 1, 1]);
    let (fa, fb, fo) = (feats(&a), feats(&b), feats(&one));
    let (p, rec) = precision_recall(&fa, &fo, 3);
    let (pf, rf) = precision_recall(&fa, &fb, 3);
    assert!(p > 0.9 && pf > 0.9, "precision {p} (real {pf})");
    assert!(rec < 0.4 && rf > 0.9, "recall {rec} (real {rf})");
    let cov = coverage(&clf.logits(&one).unwrap().argmax(1, false), 4);
    assert_eq!(cov.classes_hit, 1);
    assert!(
        (cov.kl_to_uniform - 4f64.ln()).abs() < 0.05,
        "{}",
        cov.kl_to_uniform
    );
    let fd_one = frechet_distance(&fa, &fo);
    let floor = frechet_distance(&fa, &fb);
    assert!(fd_one > 10.0 * floor.max(1e-6), "{fd_one} vs floor {floor}");
}
