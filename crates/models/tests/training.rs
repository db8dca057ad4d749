//! The autoencoders through the shared trainer, and the 8-3-8 network, on
//! tiny seeded problems.
use embedlab_models::batches::{Split, Splits};
use embedlab_models::identity::{IdentityConfig, IdentityNet};
use embedlab_models::{AeConfig, Arch, AutoEncoder, Family, Likelihood, ModelError};
use embedlab_testkit::seeded as one_at_a_time;
use embedlab_train::checkpoint::{self, BEST};
use embedlab_train::trainer::load_best;
use embedlab_train::{
    train, Batch, EpochRecord, Group, Losses, OptimConfig, Progress, Reuse, RunDir, TrainConfig,
    TrainError, Trainable,
};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn run_dir(p: &Path) -> RunDir {
    RunDir::create("train", Some(p), Reuse::Refuse, &serde_json::json!({})).unwrap()
}

fn cfg(family: Family, arch: Arch, conditional: bool) -> AeConfig {
    AeConfig {
        family,
        conditional,
        arch,
        hidden: vec![32, 16],
        latent: 2,
        likelihood: Likelihood::Bernoulli,
        binarize: true,
        beta: 1.0,
        warmup_epochs: 0.0,
        channels: 1,
        height: 8,
        width: 8,
        classes: 4,
    }
}

/// Four prototype 8×8 images (bars), noisy copies labelled by prototype.
fn toy(n: i64, seed: i64) -> Split {
    tch::manual_seed(seed);
    let protos = Tensor::zeros([4, 1, 8, 8], (Kind::Float, Device::Cpu));
    for k in 0..4 {
        let _ = protos.get(k).get(0).narrow(0, 2 * k, 2).fill_(0.95);
        let _ = protos.get(k).get(0).narrow(1, 2 * k, 2).fill_(0.9);
    }
    let y = Tensor::randint(4, [n], (Kind::Int64, Device::Cpu));
    let x = (protos.index_select(0, &y)
        + Tensor::rand([n, 1, 8, 8], (Kind::Float, Device::Cpu)) * 0.1)
        .clamp(0.0, 1.0);
    Split { x, y }
}

fn splits() -> Splits {
    Splits {
        train: toy(512, 1),
        valid: toy(128, 2),
        test: toy(128, 3),
    }
}

fn tcfg(epochs: usize) -> TrainConfig {
    TrainConfig::single(
        epochs,
        32,
        OptimConfig::adam(3e-3).with_clip(Some(100.0)),
        5,
    )
}

fn params(m: &AutoEncoder) -> Vec<(String, Tensor)> {
    checkpoint::variables(&m.vs)
}

#[test]
fn gradient_check_vae_double_precision() {
    let _one = one_at_a_time();
    tch::manual_seed(0);
    let mut c = cfg(Family::Vae, Arch::Mlp, true);
    c.hidden = vec![6];
    c.height = 4;
    c.width = 4;
    let mut m = AutoEncoder::new(c, Device::Cpu).unwrap();
    m.vs.double();
    let x = Tensor::rand([3, 1, 4, 4], (Kind::Double, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 2, 3]);
    let loss = |m: &AutoEncoder| {
        tch::manual_seed(42); // the same reparameterisation noise every call
        m.objective(&x, Some(&y), 0.7).unwrap().loss
    };
    let l = loss(&m);
    l.backward();
    let mut checked = 0;
    for (name, p) in params(&m) {
        let g = p.grad().flatten(0, -1);
        let flat = p.detach().flatten(0, -1);
        for i in [0, flat.size()[0] / 2, flat.size()[0] - 1] {
            let orig = flat.double_value(&[i]);
            let h = 1e-6;
            let set = |v: f64| {
                let _g = tch::no_grad_guard();
                let _ = flat.get(i).fill_(v);
            };
            set(orig + h);
            let up = loss(&m).double_value(&[]);
            set(orig - h);
            let down = loss(&m).double_value(&[]);
            set(orig);
            let num = (up - down) / (2.0 * h);
            let ana = g.double_value(&[i]);
            assert!(
                (num - ana).abs() <= 1e-6 * (1.0 + ana.abs()),
                "{name}[{i}]: numeric {num} vs backprop {ana}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 12);
}

#[test]
fn seeded_two_epochs_lower_the_loss_and_repeat_exactly() {
    let _one = one_at_a_time();
    let data = splits();
    let mut finals = vec![];
    for _ in 0..2 {
        tch::manual_seed(0);
        let mut m = AutoEncoder::new(cfg(Family::Vae, Arch::Conv, false), Device::Cpu).unwrap();
        tch::manual_seed(9);
        let before = m.validate(&data.valid).unwrap()["loss"];
        let dir = tempfile::tempdir().unwrap();
        let mut recs: Vec<EpochRecord> = vec![];
        let run = run_dir(&dir.path().join("r"));
        let s = train(
            &mut m,
            &data.train,
            &data.valid,
            &tcfg(2),
            &run,
            false,
            &mut |r| recs.push(r.clone()),
        )
        .unwrap();
        assert_eq!(s.epochs_done, 2);
        assert_eq!(recs.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
        let (v1, v2) = (recs[0].valid["loss"], recs[1].valid["loss"]);
        assert!(v1 < before && v2 < v1, "valid −ELBO {before} → {v1} → {v2}");
        assert!(recs[1].train["model"]["kl"] > 0.0 && recs[1].valid["elbo"] < 0.0);
        assert!(recs[1].grad_norm["model"] > 0.0);
        finals.push(
            params(&m)
                .into_iter()
                .map(|(_, t)| t.detach().copy())
                .collect::<Vec<_>>(),
        );
    }
    for (a, b) in finals[0].iter().zip(&finals[1]) {
        assert!(a.equal(b), "the same seed must give the same weights");
    }
}

#[test]
fn checkpoint_round_trip_gives_identical_outputs() {
    let _one = one_at_a_time();
    let data = splits();
    tch::manual_seed(0);
    let mut m = AutoEncoder::new(cfg(Family::Ae, Arch::Mlp, true), Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = run_dir(dir.path());
    train(
        &mut m,
        &data.train,
        &data.valid,
        &tcfg(1),
        &run,
        false,
        &mut |_| {},
    )
    .unwrap();
    tch::manual_seed(123);
    let fresh = AutoEncoder::new(cfg(Family::Ae, Arch::Mlp, true), Device::Cpu).unwrap();
    let x = &data.test.x;
    let y = &data.test.y;
    let out = |m: &AutoEncoder| {
        m.decode_mean(&m.embed(x, Some(y)).unwrap(), Some(y))
            .unwrap()
    };
    assert!(!out(&m).equal(&out(&fresh)));
    load_best(&fresh.vs, dir.path(), "cae", &fresh.config_json()).unwrap();
    assert!(out(&m).equal(&out(&fresh)));
    // Another configuration is refused, naming the file.
    let mut other = cfg(Family::Ae, Arch::Mlp, true);
    other.latent = 3;
    let o = AutoEncoder::new(other, Device::Cpu).unwrap();
    let e = load_best(&o.vs, dir.path(), "cae", &o.config_json())
        .unwrap_err()
        .to_string();
    assert!(e.contains(BEST) && e.contains("another model"), "{e}");
}

#[test]
fn resume_continues_at_the_next_epoch_and_matches_an_uninterrupted_run() {
    let _one = one_at_a_time();
    let data = splits();
    let run = |epochs_first: usize, resume_to: Option<usize>| {
        tch::manual_seed(0);
        let mut m = AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, true), Device::Cpu).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let r = run_dir(dir.path());
        train(
            &mut m,
            &data.train,
            &data.valid,
            &tcfg(epochs_first),
            &r,
            false,
            &mut |_| {},
        )
        .unwrap();
        drop(r);
        let mut resumed = vec![];
        if let Some(total) = resume_to {
            // A new process: a fresh model, state from the folder.
            tch::manual_seed(77);
            let mut m2 = AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, true), Device::Cpu).unwrap();
            let r = RunDir::resume(dir.path(), "train").unwrap();
            let s = train(
                &mut m2,
                &data.train,
                &data.valid,
                &tcfg(total),
                &r,
                true,
                &mut |r| resumed.push(r.epoch),
            )
            .unwrap();
            assert_eq!(s.epochs_done, total);
            return (params(&m2), resumed, dir);
        }
        (params(&m), resumed, dir)
    };
    let (straight, _, _) = run(3, None);
    let (resumed, epochs, dir) = run(1, Some(3));
    assert_eq!(epochs, [2, 3]);
    for ((n, a), (_, b)) in straight.iter().zip(&resumed) {
        assert!(a.equal(b), "{n} differs after resume");
    }
    // A changed learning rate is refused, and so is another model.
    let mut m = AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, true), Device::Cpu).unwrap();
    let mut c = tcfg(4);
    c.groups.get_mut("model").unwrap().lr = 1.0;
    let r = RunDir::resume(dir.path(), "train").unwrap();
    let e = train(&mut m, &data.train, &data.valid, &c, &r, true, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("checkpoint.safetensors") && e.contains("only --epochs"),
        "{e}"
    );
    let mut other = cfg(Family::Vae, Arch::Mlp, true);
    other.hidden = vec![16, 8];
    let mut m = AutoEncoder::new(other, Device::Cpu).unwrap();
    let e = train(
        &mut m,
        &data.train,
        &data.valid,
        &tcfg(4),
        &r,
        true,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("another model"), "{e}");
}

/// Wraps a model so that its loss turns NaN in the second epoch.
struct Poisoned(AutoEncoder);

impl Trainable for Poisoned {
    type Data = Split;
    type Error = ModelError;
    fn kind(&self) -> String {
        self.0.kind()
    }
    fn config_json(&self) -> serde_json::Value {
        self.0.config_json()
    }
    fn var_store(&self) -> &tch::nn::VarStore {
        &self.0.vs
    }
    fn groups(&self) -> Vec<Group> {
        self.0.groups()
    }
    fn loss(&mut self, g: &str, b: &Batch, at: &Progress) -> Result<Losses, ModelError> {
        let mut l = self.0.loss(g, b, at)?;
        if at.done >= 1.3 {
            l.loss *= f64::NAN;
        }
        Ok(l)
    }
    fn validate(&mut self, s: &Split) -> Result<BTreeMap<String, f64>, ModelError> {
        self.0.validate(s)
    }
}

#[test]
fn nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint() {
    let _one = one_at_a_time();
    let data = splits();
    tch::manual_seed(0);
    let mut m =
        Poisoned(AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, false), Device::Cpu).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let r = run_dir(dir.path());
    let e = train(
        &mut m,
        &data.train,
        &data.valid,
        &tcfg(3),
        &r,
        false,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, ModelError::Train(TrainError::NonFinite { epoch: 2, .. })),
        "{e}"
    );
    assert!(
        e.to_string().contains("last good checkpoint (epoch 1)"),
        "{e}"
    );
    let (meta, _): (serde_json::Value, _) =
        checkpoint::read(&dir.path().join(checkpoint::CHECKPOINT)).unwrap();
    assert_eq!(meta["state"]["epochs_done"], 1);
    let fresh = AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, false), Device::Cpu).unwrap();
    load_best(&fresh.vs, dir.path(), "vae", &fresh.config_json()).unwrap();
    for (_, p) in params(&fresh) {
        assert!(p.isfinite().all().int64_value(&[]) == 1);
    }
    assert_eq!(r.metrics().len(), 1, "one epoch logged");
}

#[test]
fn the_8_3_8_network_learns_a_distinct_code_for_each_input() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(0);
    let mut m = IdentityNet::new(IdentityConfig::default(), Device::Cpu).unwrap();
    let data = m.data(100);
    let cfg = TrainConfig::single(30, 8, OptimConfig::adam(0.05), 0);
    let r = RunDir::create(
        "identity",
        Some(dir.path()),
        Reuse::Refuse,
        &serde_json::json!({}),
    )
    .unwrap();
    train(&mut m, &data, &data, &cfg, &r, false, &mut |_| {}).unwrap();
    let res = m.result().unwrap();
    assert_eq!(res.correct, 8, "{}", res.table());
    for i in 0..8 {
        for j in 0..i {
            let d: f64 = (0..3)
                .map(|k| (res.codes[i][k] - res.codes[j][k]).powi(2))
                .sum();
            assert!(
                d.sqrt() > 0.1,
                "codes {i} and {j} coincide\n{}",
                res.table()
            );
        }
    }
    assert!(res.final_loss < 0.1, "{}", res.final_loss);
}

#[test]
fn iwae_single_sample_by_hand_and_many_samples_bound_the_elbo() {
    let _one = one_at_a_time();
    tch::manual_seed(1);
    let m = AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, false), Device::Cpu).unwrap();
    let x = Tensor::rand([2, 1, 8, 8], (Kind::Float, Device::Cpu)).round();
    let _g = tch::no_grad_guard();
    // k = 1: log p(x|z) + log p(z) − log q(z|x) at the one draw, by hand.
    tch::manual_seed(5);
    let got = m
        .iwae(&x.narrow(0, 0, 1), None, 1, 1)
        .unwrap()
        .double_value(&[0]);
    tch::manual_seed(5);
    let (mu, lv) = m.encode_params(&x.narrow(0, 0, 1), None).unwrap();
    let lv = lv.unwrap();
    let eps = Tensor::randn([1, 2], (Kind::Float, Device::Cpu));
    let z = &mu + (&lv * 0.5).exp() * &eps;
    let ll = m
        .log_likelihood(&x.narrow(0, 0, 1), &z, None)
        .unwrap()
        .double_value(&[0]);
    let two_pi = 2.0 * std::f64::consts::PI;
    let (mut lp, mut lq) = (0.0, 0.0);
    for j in 0..2 {
        let (zj, mj, vj) = (
            z.double_value(&[0, j]),
            mu.double_value(&[0, j]),
            lv.double_value(&[0, j]).exp(),
        );
        lp += -0.5 * (two_pi.ln() + zj * zj);
        lq += -0.5 * ((two_pi * vj).ln() + (zj - mj).powi(2) / vj);
    }
    let want = ll + lp - lq;
    assert!((got - want).abs() < 1e-3, "{got} vs {want}");
    // k = 2000 lies above the mean one-sample ELBO (Jensen; the gap is
    // E KL(q(z|x) ‖ p(z|x)) ≥ 0), image by image.
    let iw = m.iwae(&x, None, 2000, 500).unwrap();
    let xs = x.repeat([2000, 1, 1, 1]);
    let e = m
        .elbo(&xs, None)
        .unwrap()
        .0
        .reshape([2000, 2])
        .mean_dim(0, false, Kind::Double);
    for i in 0..2 {
        assert!(
            iw.double_value(&[i]) >= e.double_value(&[i]) - 0.3,
            "{iw:?} {e:?}"
        );
    }
}
