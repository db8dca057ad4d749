//! The training loop and checkpoints on tiny seeded problems.
use embedlab_models::autoencoder::Losses;
use embedlab_models::batches::{Split, Splits};
use embedlab_models::checkpoint;
use embedlab_models::train::{train, EpochRecord, Schedule, TrainConfig, Trainable};
use embedlab_models::{AeConfig, Arch, AutoEncoder, Family, Likelihood, ModelError};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// libtorch's generator is global: tests that seed it run one at a time.
static SEEDED: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SEEDED.lock().unwrap_or_else(|e| e.into_inner())
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
    TrainConfig {
        epochs,
        batch_size: 32,
        lr: 3e-3,
        schedule: Schedule::Constant,
        clip_norm: Some(100.0),
        patience: None,
        seed: 5,
    }
}

fn params(m: &AutoEncoder) -> Vec<(String, Tensor)> {
    m.named_parameters()
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
        m.loss(&x, Some(&y), 0.7).unwrap().loss
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
        let m = AutoEncoder::new(cfg(Family::Vae, Arch::Conv, false), Device::Cpu).unwrap();
        tch::manual_seed(9);
        let before = m.evaluate(&data.valid).unwrap()["loss"];
        let dir = tempfile::tempdir().unwrap();
        let mut recs: Vec<EpochRecord> = vec![];
        let s = train(&m, &data, &tcfg(2), dir.path(), false, &mut |r| {
            recs.push(r.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(s.epochs_done, 2);
        assert_eq!(recs.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
        let (v1, v2) = (recs[0].valid["loss"], recs[1].valid["loss"]);
        assert!(v1 < before && v2 < v1, "valid −ELBO {before} → {v1} → {v2}");
        assert!(recs[1].train["kl"] > 0.0 && recs[1].valid["elbo"] < 0.0);
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
    let m = AutoEncoder::new(cfg(Family::Ae, Arch::Mlp, true), Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    train(&m, &data, &tcfg(1), dir.path(), false, &mut |_| Ok(())).unwrap();
    tch::manual_seed(123);
    let fresh = AutoEncoder::new(cfg(Family::Ae, Arch::Mlp, true), Device::Cpu).unwrap();
    let x = &data.test.x;
    let y = &data.test.y;
    let out = |m: &AutoEncoder| {
        m.decode_mean(&m.embed(x, Some(y)).unwrap(), Some(y))
            .unwrap()
    };
    assert!(!out(&m).equal(&out(&fresh)));
    checkpoint::load_weights(&fresh.vs, &dir.path().join(checkpoint::BEST)).unwrap();
    assert!(out(&m).equal(&out(&fresh)));
    // Another shape is refused, naming the file and the tensor.
    let mut other = cfg(Family::Ae, Arch::Mlp, true);
    other.latent = 3;
    let o = AutoEncoder::new(other, Device::Cpu).unwrap();
    let e = checkpoint::load_weights(&o.vs, &dir.path().join(checkpoint::BEST))
        .unwrap_err()
        .to_string();
    assert!(e.contains("best.safetensors") && e.contains("shape"), "{e}");
}

#[test]
fn resume_continues_at_the_next_epoch_and_matches_an_uninterrupted_run() {
    let _one = one_at_a_time();
    let data = splits();
    let run = |epochs_first: usize, resume_to: Option<usize>| {
        tch::manual_seed(0);
        let m = AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, true), Device::Cpu).unwrap();
        let dir = tempfile::tempdir().unwrap();
        train(
            &m,
            &data,
            &tcfg(epochs_first),
            dir.path(),
            false,
            &mut |_| Ok(()),
        )
        .unwrap();
        let mut resumed = vec![];
        if let Some(total) = resume_to {
            // A new process: a fresh model, state from the folder.
            tch::manual_seed(77);
            let m2 = AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, true), Device::Cpu).unwrap();
            let s = train(&m2, &data, &tcfg(total), dir.path(), true, &mut |r| {
                resumed.push(r.epoch);
                Ok(())
            })
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
    // A changed learning rate is refused.
    let m = AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, true), Device::Cpu).unwrap();
    let mut c = tcfg(4);
    c.lr = 1.0;
    let e = train(&m, &data, &c, dir.path(), true, &mut |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("checkpoint.json") && e.contains("only --epochs"),
        "{e}"
    );
}

/// Wraps a model so that its loss turns NaN in the second epoch.
struct Poisoned(AutoEncoder);

impl Trainable for Poisoned {
    fn var_store(&self) -> &tch::nn::VarStore {
        &self.0.vs
    }
    fn config_json(&self) -> serde_json::Value {
        self.0.config_json()
    }
    fn batch_loss(&self, x: &Tensor, y: &Tensor, done: f64) -> embedlab_models::Result<Losses> {
        let mut l = self.0.batch_loss(x, y, done)?;
        if done >= 1.3 {
            l.loss *= f64::NAN;
        }
        Ok(l)
    }
    fn evaluate(&self, s: &Split) -> embedlab_models::Result<BTreeMap<String, f64>> {
        self.0.evaluate(s)
    }
}

#[test]
fn nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint() {
    let _one = one_at_a_time();
    let data = splits();
    tch::manual_seed(0);
    let m = Poisoned(AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, false), Device::Cpu).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let e = train(&m, &data, &tcfg(3), dir.path(), false, &mut |_| Ok(())).unwrap_err();
    assert!(matches!(e, ModelError::NonFinite { epoch: 2, .. }), "{e}");
    assert!(
        e.to_string().contains("last good checkpoint (epoch 1"),
        "{e}"
    );
    let (meta, _) = checkpoint::load(dir.path()).unwrap();
    assert_eq!(meta.epochs_done, 1);
    let fresh = AutoEncoder::new(cfg(Family::Vae, Arch::Mlp, false), Device::Cpu).unwrap();
    checkpoint::load_weights(&fresh.vs, &dir.path().join(checkpoint::BEST)).unwrap();
    for (_, p) in params(&fresh) {
        assert!(p.isfinite().all().int64_value(&[]) == 1);
    }
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
    let (mu, lv) = m.encode(&x.narrow(0, 0, 1), None).unwrap();
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
