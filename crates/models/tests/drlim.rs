//! DrLIM through the shared trainer: a separable toy problem, and a resume
//! that repeats an uninterrupted run bit for bit.
use embedlab_models::batches::Split;
use embedlab_models::drlim::{Drlim, DrlimConfig, Graph};
use embedlab_models::{Arch, Encode, ImageModel};
use embedlab_testkit::seeded as one_at_a_time;
use embedlab_train::checkpoint;
use embedlab_train::{
    train, EpochRecord, NanPolicy, OptimConfig, Reuse, RunDir, TrainConfig, Trainable,
};
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn run_dir(p: &Path) -> RunDir {
    RunDir::create("train", Some(p), Reuse::Refuse, &serde_json::json!({})).unwrap()
}

/// Two clusters of 8×8 images, a bright left half (label 0) or a bright
/// right half (label 1), with noise.
fn clusters(n: i64, seed: i64) -> Split {
    tch::manual_seed(seed);
    let y = Tensor::randint(2, [n], (Kind::Int64, Device::Cpu));
    let right = Tensor::arange(8, (Kind::Float, Device::Cpu))
        .ge(4)
        .to_kind(Kind::Float)
        .view([1, 1, 1, 8]);
    let side = y.to_kind(Kind::Float).view([n, 1, 1, 1]);
    let x = (&side * &right + (-&side + 1.0) * (-&right + 1.0)).expand([n, 1, 8, 8], false) * 0.8
        + Tensor::rand([n, 1, 8, 8], (Kind::Float, Device::Cpu)) * 0.2;
    Split { x, y }
}

fn cfg(graph: Graph, shifts: Vec<i64>) -> DrlimConfig {
    DrlimConfig {
        arch: Arch::Mlp,
        hidden: vec![16],
        dim: 2,
        margin: 1.0,
        positive_fraction: 0.5,
        graph,
        shifts,
        channels: 1,
        height: 8,
        width: 8,
        classes: 2,
    }
}

fn tcfg(epochs: usize, batch: i64, lr: f64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: batch,
        groups: [("encoder".to_string(), OptimConfig::adam(lr))].into(),
        patience: None,
        seed: 3,
        on_nan: NanPolicy::Stop,
        precision: Default::default(),
        channels_last: false,
    }
}

fn weights(m: &Drlim) -> Vec<(String, Tensor)> {
    checkpoint::variables(&m.vs)
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}

#[test]
fn drlim_separates_two_clusters_through_the_shared_trainer() {
    let _one = one_at_a_time();
    let (tr, va) = (clusters(128, 1), clusters(64, 2));
    tch::manual_seed(0);
    // A margin of 2: at initialisation the clusters are about 1 apart.
    let mut c = cfg(Graph::Labels, vec![]);
    c.margin = 2.0;
    let mut m = Drlim::new(c, Device::Cpu).unwrap();
    let before = m.evaluate_split(&va).unwrap();
    assert!(before["separated"] < 0.5, "{before:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut recs: Vec<EpochRecord> = vec![];
    let s = train(
        &mut m,
        &tr,
        &va,
        &tcfg(8, 16, 1e-2),
        &run_dir(&dir.path().join("r")),
        false,
        &mut |r| recs.push(r.clone()),
    )
    .unwrap();
    assert_eq!(s.epochs_done, 8);
    let after = m.evaluate_split(&va).unwrap();
    assert_eq!(after["separated"], 1.0, "{before:?} → {after:?}");
    assert!(after["pos_dist"] < 0.5 * m.cfg.margin, "{after:?}");
    assert!(
        after["loss"] < 0.1 * before["loss"],
        "{before:?} → {after:?}"
    );
    // The trainer's validation is the same measure on the same fixed pairs.
    let last = &recs.last().unwrap().valid;
    assert_eq!(last["loss"], after["loss"]);
    assert!(recs[0].train["encoder"].contains_key("similar"));
    // The map encodes: two dimensions, the clusters on either side.
    let z = m.encode(&va.x, None).unwrap();
    assert_eq!(z.size(), [64, 2]);
    assert_eq!(m.name(), "drlim");
    assert!(
        m.describe().contains("graph: same label"),
        "{}",
        m.describe()
    );
}

#[test]
fn drlim_resume_with_knn_graph_and_shifts_repeats_an_uninterrupted_run() {
    let _one = one_at_a_time();
    let (tr, va) = (clusters(64, 4), clusters(32, 5));
    let c = cfg(Graph::Knn { k: 3 }, vec![-1, 2]);
    let t = |epochs| tcfg(epochs, 16, 5e-3);
    // Two epochs straight.
    tch::manual_seed(0);
    let mut straight = Drlim::new(c.clone(), Device::Cpu).unwrap();
    let d1 = tempfile::tempdir().unwrap();
    train(
        &mut straight,
        &tr,
        &va,
        &t(2),
        &run_dir(d1.path()),
        false,
        &mut |_| {},
    )
    .unwrap();
    // One epoch, then a new model resumes the folder for the second.
    tch::manual_seed(0);
    let mut first = Drlim::new(c.clone(), Device::Cpu).unwrap();
    let d2 = tempfile::tempdir().unwrap();
    train(
        &mut first,
        &tr,
        &va,
        &t(1),
        &run_dir(d2.path()),
        false,
        &mut |_| {},
    )
    .unwrap();
    assert!(!weights(&first)
        .iter()
        .zip(weights(&straight))
        .all(|((_, a), (_, b))| a.equal(&b)));
    let resume = |m: &mut Drlim, data: &_| {
        let r = RunDir::resume(d2.path(), "train").unwrap();
        train(m, data, &va, &t(2), &r, true, &mut |_| {})
    };
    // Other training data than the run's is refused (the checkpoint's
    // fingerprint of the data and graph differs)…
    tch::manual_seed(77);
    let mut other = Drlim::new(c.clone(), Device::Cpu).unwrap();
    let e = resume(&mut other, &clusters(64, 6))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the one this run trained on"), "{e}");
    // …and a fresh model handed the run's own split by the trainer
    // (attach_data, on every run) continues bit for bit.
    tch::manual_seed(78);
    let mut resumed = Drlim::new(c, Device::Cpu).unwrap();
    let s = resume(&mut resumed, &tr).unwrap();
    assert_eq!(s.epochs_done, 2);
    let (a, b) = (weights(&straight), weights(&resumed));
    assert_eq!(a.len(), b.len());
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{n} differs after resume");
    }
    assert!(a.iter().any(|(n, _)| n == "graph.fingerprint"));
    // The graph is the k-NN one, symmetric, k or more neighbours each.
    let g = resumed.training_graph().unwrap();
    assert!((0..64).all(|i| g.degree(i) >= 3));
    assert_eq!(
        resumed.evaluate_split(&va).unwrap(),
        straight.evaluate_split(&va).unwrap()
    );
    assert_eq!(resumed.kind(), "drlim");
}
