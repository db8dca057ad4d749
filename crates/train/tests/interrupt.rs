//! A stop asked for during an epoch (what a signal handler does) ends
//! training after the current round with `TrainError::Interrupted`, keeps
//! the last finished epoch's checkpoint and log, and the resumed run ends
//! bit-identical to one never interrupted. Its own test binary: the flag
//! is process-wide.
use embedlab_train::{
    interrupt, train, Batch, Batches, Group, Losses, OptimConfig, Progress, Reuse, RunDir,
    TrainConfig, TrainError, Trainable,
};
use std::cell::Cell;
use std::collections::BTreeMap;
use tch::{nn, Device, Kind, Tensor};

/// Noisy targets drawn from libtorch's generator (seeded per epoch by the
/// trainer); asks for a stop when it hands out batch `at.1` of epoch `at.0`.
struct Noisy {
    epoch: Cell<usize>,
    stop_at: Option<(usize, usize)>,
}

impl Batches for Noisy {
    fn items(&self) -> usize {
        20 * 8
    }
    fn epoch(&self, bs: i64) -> Box<dyn Iterator<Item = Batch> + '_> {
        let e = self.epoch.get();
        self.epoch.set(e + 1);
        Box::new((0..20).map(move |k| {
            if self.stop_at == Some((e, k)) {
                interrupt::request_stop();
            }
            Batch::new(
                Tensor::randn([bs, 3], (Kind::Float, Device::Cpu)) + 2.0,
                Tensor::zeros([bs], (Kind::Int64, Device::Cpu)),
            )
        }))
    }
}

struct Mean {
    vs: nn::VarStore,
    w: Tensor,
}

impl Trainable for Mean {
    type Data = Noisy;
    type Error = TrainError;
    fn kind(&self) -> String {
        "mean".into()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn groups(&self) -> Vec<Group> {
        vec![Group::new("model", &["w"])]
    }
    fn loss(&mut self, _g: &str, b: &Batch, _at: &Progress) -> Result<Losses, TrainError> {
        Ok(Losses::single((&b.x - &self.w).square().mean(Kind::Float)))
    }
    fn validate(&mut self, _v: &Noisy) -> Result<BTreeMap<String, f64>, TrainError> {
        Ok([(
            "loss".to_string(),
            self.w.sum(Kind::Double).double_value(&[]),
        )]
        .into())
    }
}

fn mean() -> Mean {
    let vs = nn::VarStore::new(Device::Cpu);
    let w = vs
        .root()
        .var_copy("w", &Tensor::zeros([3], (Kind::Float, Device::Cpu)));
    Mean { vs, w }
}

fn data(stop_at: Option<(usize, usize)>) -> Noisy {
    Noisy {
        epoch: Cell::new(0),
        stop_at,
    }
}

#[test]
fn a_stop_during_an_epoch_keeps_the_last_checkpoint_and_resumes_bit_for_bit() {
    let d = tempfile::tempdir().unwrap();
    let cfg = TrainConfig::single(4, 8, OptimConfig::sgd(0.05), 7);
    let valid = data(None);
    let whole = RunDir::create("t", Some(&d.path().join("whole")), Reuse::Refuse, &0).unwrap();
    let mut a = mean();
    train(
        &mut a,
        &data(None),
        &valid,
        &cfg,
        &whole,
        false,
        &mut |_| {},
    )
    .unwrap();
    assert!(!interrupt::stop_requested());

    let p = d.path().join("stopped");
    let run = RunDir::create("t", Some(&p), Reuse::Refuse, &0).unwrap();
    let mut b = mean();
    // Asked during the third epoch (index 2), at its sixth batch.
    let e = train(
        &mut b,
        &data(Some((2, 5))),
        &valid,
        &cfg,
        &run,
        false,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, TrainError::Interrupted { epoch: 3, .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("checkpoint after epoch 2"), "{msg}");
    assert_eq!(
        run.metrics().len(),
        2,
        "the log holds the finished epochs only"
    );
    drop(run);

    interrupt::clear_stop();
    let run = RunDir::resume(&p, "t").unwrap();
    let mut c = mean();
    let mut seen = vec![];
    train(&mut c, &data(None), &valid, &cfg, &run, true, &mut |r| {
        seen.push(r.epoch)
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![3, 4],
        "the interrupted epoch is repeated, then the rest"
    );
    assert!(a.w.equal(&c.w), "{:?} vs {:?}", a.w, c.w);
    assert!(!a.w.equal(&mean().w), "training moved w");
    assert_eq!(whole.metrics().len(), run.metrics().len());
    // A stop asked before an epoch starts stops it there too.
    interrupt::request_stop();
    let p2 = d.path().join("before");
    let run = RunDir::create("t", Some(&p2), Reuse::Refuse, &0).unwrap();
    let e = train(
        &mut mean(),
        &data(None),
        &valid,
        &cfg,
        &run,
        false,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("no epoch had finished"), "{e}");
    interrupt::clear_stop();
}
