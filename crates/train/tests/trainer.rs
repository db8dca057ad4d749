//! The trainer on small models written here: a two-player GAN (WGAN-GP,
//! five critic steps per generator step) that must cover the modes of a
//! 2-D mixture, buffers that are checkpointed but never optimized, each
//! loss built after the previous update, exact resume, NaN rollback.
use embedlab_train::checkpoint;
use embedlab_train::optim::Algorithm;
use embedlab_train::Precision;
use embedlab_train::{
    train, Batch, Batches, Group, Losses, NanPolicy, OptimConfig, Progress, Reuse, RunDir,
    Selection, TrainConfig, TrainError, Trainable,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

static SEEDED: Mutex<()> = Mutex::new(());
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SEEDED.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_dir(p: &Path) -> RunDir {
    RunDir::create("test", Some(p), Reuse::Refuse, &serde_json::json!({})).unwrap()
}

// ------------------------------------------------------------ 8 Gaussians

const MODES: i64 = 8;
const RADIUS: f64 = 2.0;
const STD: f64 = 0.05;

fn centres() -> Tensor {
    let a = Tensor::arange(MODES, (Kind::Float, Device::Cpu))
        * (2.0 * std::f64::consts::PI / MODES as f64);
    Tensor::stack(&[a.cos(), a.sin()], 1) * RADIUS
}

/// Fresh draws from the mixture every epoch.
struct Mixture {
    n: i64,
}

impl Batches for Mixture {
    fn items(&self) -> usize {
        self.n as usize
    }
    fn epoch(&self, bs: i64) -> Box<dyn Iterator<Item = Batch> + '_> {
        let c = centres();
        let k = Tensor::randint(MODES, [self.n], (Kind::Int64, Device::Cpu));
        let x =
            c.index_select(0, &k) + Tensor::randn([self.n, 2], (Kind::Float, Device::Cpu)) * STD;
        let batches: Vec<Batch> = (0..self.n)
            .step_by(bs as usize)
            .map(|s| {
                let l = bs.min(self.n - s);
                Batch::new(x.narrow(0, s, l), k.narrow(0, s, l))
            })
            .collect();
        Box::new(batches.into_iter())
    }
}

fn mlp(p: nn::Path, sizes: &[i64]) -> nn::Sequential {
    let mut s = nn::seq();
    for (i, w) in sizes.windows(2).enumerate() {
        s = s.add(nn::linear(
            &p / format!("l{i}"),
            w[0],
            w[1],
            Default::default(),
        ));
        if i + 2 < sizes.len() {
            s = s.add_fn(|x| x.relu());
        }
    }
    s
}

struct Wgan {
    vs: nn::VarStore,
    gen: nn::Sequential,
    critic: nn::Sequential,
}

impl Wgan {
    fn new() -> Self {
        let vs = nn::VarStore::new(Device::Cpu);
        let gen = mlp(vs.root() / "gen", &[2, 64, 64, 2]);
        let critic = mlp(vs.root() / "critic", &[2, 64, 64, 1]);
        Self { vs, gen, critic }
    }
    fn sample(&self, n: i64) -> Tensor {
        self.gen
            .forward(&Tensor::randn([n, 2], (Kind::Float, Device::Cpu)))
    }
}

impl Trainable for Wgan {
    type Data = Mixture;
    type Error = TrainError;
    fn kind(&self) -> String {
        "wgan-gp-test".into()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::json!({"hidden": 64})
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn groups(&self) -> Vec<Group> {
        vec![
            Group::new("critic", &["critic"]),
            Group::new("gen", &["gen"]).without_data(),
        ]
    }
    fn loss(&mut self, group: &str, b: &Batch, _at: &Progress) -> Result<Losses, TrainError> {
        let n = b.n;
        Ok(if group == "critic" {
            let fake = tch::no_grad(|| self.sample(n));
            let w = self.critic.forward(&b.x).mean(Kind::Float)
                - self.critic.forward(&fake).mean(Kind::Float);
            // Gradient penalty by double backward at random interpolates.
            let t = Tensor::rand([n, 1], (Kind::Float, Device::Cpu));
            let mix: Tensor = &b.x * &t + &fake * (&t * -1.0 + 1.0);
            let xh = mix.detach().set_requires_grad(true);
            let out = self.critic.forward(&xh).sum(Kind::Float);
            let g = Tensor::run_backward(&[out], &[&xh], true, true).remove(0);
            let gp = (g.norm_scalaropt_dim(2, [1], false) - 1.0)
                .square()
                .mean(Kind::Float);
            Losses::single(-&w + &gp * 0.1)
                .part("wasserstein", &w)
                .part("penalty", &gp)
        } else {
            Losses::single(-self.critic.forward(&self.sample(n)).mean(Kind::Float))
        })
    }
    /// The sum of the generator's weights as training sees them…
    fn training_checks(&mut self, _v: &Mixture) -> Result<BTreeMap<String, f64>, TrainError> {
        Ok([("trained_sum".to_string(), gen_sum(&self.vs))].into())
    }
    /// …and as validation does (the average, when it keeps one).
    fn validate(&mut self, _v: &Mixture) -> Result<BTreeMap<String, f64>, TrainError> {
        Ok([
            (
                "modes".to_string(),
                modes_covered(&self.sample(2000)) as f64,
            ),
            ("validated_sum".to_string(), gen_sum(&self.vs)),
        ]
        .into())
    }
    fn selection(&self) -> Selection {
        Selection::Last
    }
}

/// The sum of every generator weight, in double precision.
fn gen_sum(vs: &nn::VarStore) -> f64 {
    vs.variables()
        .iter()
        .filter(|(n, _)| n.starts_with("gen"))
        .map(|(_, t)| t.sum(Kind::Double).double_value(&[]))
        .sum()
}

/// Modes holding at least 2% of the samples within 4σ… generous: 0.25.
fn modes_covered(s: &Tensor) -> usize {
    let d = s.unsqueeze(1) - centres().unsqueeze(0); // n × 8 × 2
    let dist = d
        .square()
        .sum_dim_intlist([2i64].as_slice(), false, Kind::Float)
        .sqrt();
    let (best, idx) = dist.min_dim(1, false);
    let near = best.lt(0.25);
    let n = s.size()[0];
    (0..MODES)
        .filter(|&m| {
            let hits = idx
                .eq(m)
                .logical_and(&near)
                .sum(Kind::Int64)
                .int64_value(&[]);
            hits as f64 > 0.02 * n as f64
        })
        .count()
}

fn gan_config(epochs: usize) -> TrainConfig {
    let adam = OptimConfig::adam(1e-3).with_betas(0.5, 0.9);
    TrainConfig {
        epochs,
        batch_size: 128,
        groups: [
            ("critic".to_string(), adam.clone().with_steps(5)),
            ("gen".to_string(), adam),
        ]
        .into(),
        patience: None,
        seed: 3,
        on_nan: NanPolicy::Stop,
        precision: Default::default(),
        channels_last: false,
    }
}

#[test]
fn a_two_group_gan_covers_the_modes_of_a_mixture_and_resumes_exactly() {
    let _g = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let data = Mixture { n: 32000 };
    let cfg = gan_config(6);
    tch::manual_seed(3);
    let mut m = Wgan::new();
    let run = run_dir(&d.path().join("gan"));
    let s = train(&mut m, &data, &data, &cfg, &run, false, &mut |_| {}).unwrap();
    assert_eq!(s.epochs_done, 6);
    tch::manual_seed(99);
    let covered = modes_covered(&m.sample(4000));
    assert!(covered >= 7, "the generator covers {covered} of 8 modes");
    let lines = run.metrics();
    assert_eq!(lines.len(), 6);
    assert!(lines[0]["train"]["critic"]["penalty"].as_f64().is_some());
    assert!(lines[0]["grad_norm"]["gen"].as_f64().unwrap() > 0.0);
    // A run stopped after 3 epochs and resumed to 6 ends bit-identical.
    drop(run);
    tch::manual_seed(3);
    let mut a = Wgan::new();
    let run_a = run_dir(&d.path().join("resumed"));
    train(
        &mut a,
        &data,
        &data,
        &gan_config(3),
        &run_a,
        false,
        &mut |_| {},
    )
    .unwrap();
    drop(run_a);
    tch::manual_seed(1234); // whatever the generator holds, resume re-seeds
    let mut b = Wgan::new();
    let run_b = RunDir::resume(&d.path().join("resumed"), "test").unwrap();
    let mut epochs_seen = vec![];
    train(&mut b, &data, &data, &cfg, &run_b, true, &mut |r| {
        epochs_seen.push(r.epoch)
    })
    .unwrap();
    assert_eq!(epochs_seen, (4..=6).collect::<Vec<_>>());
    for ((n, x), (_, y)) in checkpoint::variables(&m.vs)
        .iter()
        .zip(checkpoint::variables(&b.vs).iter())
    {
        assert!(x.equal(y), "{n} differs after resume");
    }
    assert_eq!(
        run_b
            .metrics()
            .iter()
            .map(|l| l["epoch"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    // Minutes of training go on across the resume (quality against time).
    let minutes: Vec<f64> = run_b
        .metrics()
        .iter()
        .map(|l| l["minutes"].as_f64().unwrap())
        .collect();
    assert!(
        minutes[0] > 0.0 && minutes.windows(2).all(|w| w[1] > w[0]),
        "{minutes:?}"
    );
    // Changed optimizer settings are refused; fewer epochs than done too.
    let mut changed = gan_config(7);
    changed.groups.get_mut("critic").unwrap().steps = 3;
    let e = train(&mut b, &data, &data, &changed, &run_b, true, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("only --epochs and --patience may change"), "{e}");
    let e = train(
        &mut b,
        &data,
        &data,
        &gan_config(4),
        &run_b,
        true,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("already has 6 epochs"), "{e}");
}

/// In bfloat16 (the products of both players in an autocast region) the
/// same GAN still covers the modes; weights, gradients and optimizer state
/// stay float32; the run differs from the float32 one (the region is real)
/// but resumes bit for bit.
#[test]
fn a_gan_trained_in_bf16_keeps_float32_state_and_resumes_exactly() {
    let _g = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let data = Mixture { n: 32000 };
    let bf16 = |epochs| TrainConfig {
        precision: Precision::Bf16,
        ..gan_config(epochs)
    };
    tch::manual_seed(3);
    let mut m = Wgan::new();
    let run = run_dir(&d.path().join("bf16"));
    train(&mut m, &data, &data, &bf16(6), &run, false, &mut |_| {}).unwrap();
    tch::manual_seed(99);
    let covered = modes_covered(&m.sample(4000));
    assert!(covered >= 7, "the generator covers {covered} of 8 modes");
    let (meta, tensors): (embedlab_train::trainer::CheckpointMeta, _) =
        checkpoint::read(&run.file(checkpoint::CHECKPOINT)).unwrap();
    assert_eq!(meta.train.precision, Precision::Bf16);
    for (name, t) in tensors.iter().filter(|(_, t)| t.is_floating_point()) {
        assert_eq!(t.kind(), Kind::Float, "{name} is {:?}", t.kind());
    }
    assert!(
        tensors.keys().any(|k| k.starts_with("opt/critic/v/")),
        "{:?}",
        tensors.keys()
    );
    // Not the float32 run: its first epoch's losses differ, a little.
    let f32_run = run_dir(&d.path().join("f32"));
    tch::manual_seed(3);
    train(
        &mut Wgan::new(),
        &data,
        &data,
        &gan_config(1),
        &f32_run,
        false,
        &mut |_| {},
    )
    .unwrap();
    let w = |r: &RunDir| {
        r.metrics()[0]["train"]["critic"]["wasserstein"]
            .as_f64()
            .unwrap()
    };
    let (a, b) = (w(&run), w(&f32_run));
    assert!(
        a != b && (a - b).abs() < 0.05 * b.abs().max(0.1),
        "bf16 {a}, f32 {b}"
    );
    // Three epochs, then three more on resume: bit-identical weights.
    tch::manual_seed(3);
    let mut first = Wgan::new();
    let path = d.path().join("resumed");
    train(
        &mut first,
        &data,
        &data,
        &bf16(3),
        &run_dir(&path),
        false,
        &mut |_| {},
    )
    .unwrap();
    let mut again = Wgan::new();
    let resumed = RunDir::resume(&path, "test").unwrap();
    train(
        &mut again,
        &data,
        &data,
        &bf16(6),
        &resumed,
        true,
        &mut |_| {},
    )
    .unwrap();
    for ((n, x), (_, y)) in checkpoint::variables(&m.vs)
        .iter()
        .zip(checkpoint::variables(&again.vs).iter())
    {
        assert!(x.equal(y), "{n} differs after resume");
    }
}

/// The generator keeps a weight average: the kept weights (best.safetensors)
/// are the average, the checkpoint holds both, the model trains on its own
/// weights, and a resumed run ends bit-identical, average included.
#[test]
fn a_weight_average_is_kept_checkpointed_and_resumed_exactly() {
    let _g = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let data = Mixture { n: 4000 };
    let with_average = |epochs| {
        let mut c = gan_config(epochs);
        let gen = c.groups.remove("gen").unwrap().with_ema(Some(0.99));
        c.groups.insert("gen".into(), gen);
        c
    };
    let fresh = |name: &str, epochs: usize, resume: bool| {
        tch::manual_seed(if resume { 777 } else { 3 });
        let mut m = Wgan::new();
        let p = d.path().join(name);
        let run = if resume {
            RunDir::resume(&p, "test").unwrap()
        } else {
            run_dir(&p)
        };
        train(
            &mut m,
            &data,
            &data,
            &with_average(epochs),
            &run,
            resume,
            &mut |_| {},
        )
        .unwrap();
        m
    };
    let whole = fresh("whole", 4, false);
    let _ = fresh("resumed", 2, false);
    let resumed = fresh("resumed", 4, true);
    for ((n, x), (_, y)) in checkpoint::variables(&whole.vs)
        .iter()
        .zip(checkpoint::variables(&resumed.vs).iter())
    {
        assert!(x.equal(y), "{n} differs after resume");
    }
    let read = |run: &str, file: &str| {
        checkpoint::read::<serde_json::Value>(&d.path().join(run).join(file))
            .unwrap()
            .1
    };
    let (best, ckpt) = (
        read("whole", "best.safetensors"),
        read("whole", "checkpoint.safetensors"),
    );
    let (best_r, ckpt_r) = (
        read("resumed", "best.safetensors"),
        read("resumed", "checkpoint.safetensors"),
    );
    let mut averaged = 0;
    for (name, t) in checkpoint::variables(&whole.vs) {
        let kept = &best[&format!("model/{name}")];
        assert!(
            kept.equal(&best_r[&format!("model/{name}")]),
            "{name}: kept weights differ after resume"
        );
        assert!(
            t.equal(&ckpt[&format!("model/{name}")]),
            "{name}: the checkpoint holds the model's own weights"
        );
        if name.starts_with("gen") {
            let avg = &ckpt[&format!("opt/gen/ema/{name}")];
            assert!(avg.equal(&ckpt_r[&format!("opt/gen/ema/{name}")]));
            assert!(
                kept.equal(avg),
                "{name}: best.safetensors holds the average"
            );
            assert!(
                !kept.equal(&t),
                "{name}: the average differs from the last weights"
            );
            averaged += 1;
        } else {
            assert!(kept.equal(&t), "{name}: the critic keeps no average");
            assert!(!ckpt.contains_key(&format!("opt/critic/ema/{name}")));
        }
    }
    assert_eq!(averaged, 6, "three layers' weights and biases");
    // The last epoch's training checks saw the generator's own weights,
    // its validation the average.
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(d.path().join("whole/metrics.jsonl"))
            .unwrap()
            .lines()
            .rfind(|l| l.contains("\"epoch\""))
            .unwrap(),
    )
    .unwrap();
    let sum_of = |prefix: &str| -> f64 {
        ckpt.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, t)| t.sum(Kind::Double).double_value(&[]))
            .sum()
    };
    let (own, average) = (sum_of("model/gen"), sum_of("opt/gen/ema/gen"));
    assert!((own - average).abs() > 1e-6, "{own} vs {average}");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    let trained = last["valid"]["trained_sum"].as_f64().unwrap();
    let validated = last["valid"]["validated_sum"].as_f64().unwrap();
    assert!(
        close(trained, own),
        "training checks saw {trained}, not the weights {own}"
    );
    assert!(
        close(validated, average),
        "validation saw {validated}, not the average {average}"
    );
}

// ------------------------------------------------------------ buffers

/// A linear model with BatchNorm statistics and a hand-kept step counter:
/// both are buffers.
struct WithBuffers {
    vs: nn::VarStore,
    bn: nn::BatchNorm,
    lin: nn::Linear,
    count: Tensor,
}

impl WithBuffers {
    fn new() -> Self {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = nn::batch_norm1d(vs.root() / "bn", 3, Default::default());
        let lin = nn::linear(vs.root() / "lin", 3, 1, Default::default());
        let count = (vs.root() / "state").zeros_no_train("steps", &[1]);
        Self { vs, bn, lin, count }
    }
}

struct Regression;
impl Batches for Regression {
    fn items(&self) -> usize {
        64
    }
    fn epoch(&self, bs: i64) -> Box<dyn Iterator<Item = Batch> + '_> {
        let x = Tensor::randn([64, 3], (Kind::Float, Device::Cpu)) * 3.0 + 5.0;
        let y = x.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
        Box::new(
            (0..64)
                .step_by(bs as usize)
                .map(move |s| Batch::new(x.narrow(0, s, bs), y.narrow(0, s, bs))),
        )
    }
}

impl Trainable for WithBuffers {
    type Data = Regression;
    type Error = TrainError;
    fn kind(&self) -> String {
        "buffers-test".into()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn groups(&self) -> Vec<Group> {
        vec![Group::new("model", &["bn", "lin"])]
    }
    fn loss(&mut self, _g: &str, b: &Batch, _at: &Progress) -> Result<Losses, TrainError> {
        let h = self.bn.forward_t(&b.x, true);
        Ok(Losses::single(
            (self.lin.forward(&h) - &b.y).square().mean(Kind::Float),
        ))
    }
    fn after_step(&mut self, _g: &str) -> Result<(), TrainError> {
        tch::no_grad(|| {
            let _ = self.count.g_add_scalar_(1.0);
        });
        Ok(())
    }
    fn validate(&mut self, _v: &Regression) -> Result<BTreeMap<String, f64>, TrainError> {
        Ok([("loss".to_string(), 0.0)].into())
    }
}

#[test]
fn buffers_are_checkpointed_and_restored_but_never_optimized() {
    let _g = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    tch::manual_seed(0);
    let mut m = WithBuffers::new();
    let run = run_dir(&d.path().join("buf"));
    let mut cfg = TrainConfig::single(3, 16, OptimConfig::adam(10.0), 0);
    cfg.groups.insert("model".into(), OptimConfig::adam(10.0));
    train(
        &mut m,
        &Regression,
        &Regression,
        &cfg,
        &run,
        false,
        &mut |_| {},
    )
    .unwrap();
    // 3 epochs × 4 steps: the counter counts them exactly (a huge Adam step
    // on it would have moved it by ±10 each time).
    assert_eq!(m.count.double_value(&[0]), 12.0);
    let mean = m.vs.variables()["bn.running_mean"].shallow_clone();
    assert!(
        mean.mean(Kind::Float).double_value(&[]) > 1.0,
        "running statistics moved towards 5"
    );
    let (meta, named): (serde_json::Value, _) =
        checkpoint::read(&run.file(checkpoint::CHECKPOINT)).unwrap();
    assert_eq!(meta["state"]["epochs_done"], 3);
    for k in [
        "model/bn.running_mean",
        "model/bn.running_var",
        "model/state.steps",
    ] {
        assert!(named.contains_key(k), "{k} checkpointed");
    }
    assert!(
        !named
            .keys()
            .any(|k| k.starts_with("opt/") && (k.contains("running") || k.contains("state.steps"))),
        "no optimizer state for buffers: {:?}",
        named
            .keys()
            .filter(|k| k.starts_with("opt/"))
            .collect::<Vec<_>>()
    );
    let fresh = WithBuffers::new();
    checkpoint::copy_into(&fresh.vs, &named, Path::new("ckpt")).unwrap();
    assert_eq!(fresh.count.double_value(&[0]), 12.0);
    assert!(fresh.vs.variables()["bn.running_mean"].equal(&mean));
}

// ------------------------------------------------------------ update order

/// Group `a` owns `a`, group `b` owns `b`; b's loss (b − a)² depends on a.
struct TwoPlayers {
    vs: nn::VarStore,
    a: Tensor,
    b: Tensor,
}

struct OneBatch;
impl Batches for OneBatch {
    fn items(&self) -> usize {
        1
    }
    fn epoch(&self, _bs: i64) -> Box<dyn Iterator<Item = Batch> + '_> {
        Box::new(std::iter::once(Batch::new(
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
            Tensor::zeros([1], (Kind::Int64, Device::Cpu)),
        )))
    }
}

impl Trainable for TwoPlayers {
    type Data = OneBatch;
    type Error = TrainError;
    fn kind(&self) -> String {
        "two-players".into()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn groups(&self) -> Vec<Group> {
        vec![
            Group::new("a", &["a"]),
            Group::new("b", &["b"]).without_data(),
        ]
    }
    fn loss(&mut self, g: &str, _b: &Batch, _at: &Progress) -> Result<Losses, TrainError> {
        Ok(Losses::single(if g == "a" {
            self.a.sum(Kind::Float)
        } else {
            (&self.b - &self.a).square().sum(Kind::Float)
        }))
    }
    fn validate(&mut self, _v: &OneBatch) -> Result<BTreeMap<String, f64>, TrainError> {
        Ok(BTreeMap::new())
    }
    fn selection(&self) -> Selection {
        Selection::Last
    }
}

/// The fused CPU Adam writes parameters in place, outside autograd's version
/// counter, so a loss whose graph was built before another group's update
/// would silently use stale values. The trainer builds each loss after the
/// preceding update: b's gradient sees the updated a.
#[test]
fn each_players_loss_is_built_after_the_previous_update() {
    let _g = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let a = vs.root().var_copy("a", &Tensor::from_slice(&[1.0f32]));
    let b = vs.root().var_copy("b", &Tensor::from_slice(&[0.95f32]));
    let mut m = TwoPlayers { vs, a, b };
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 1,
        groups: [
            ("a".into(), OptimConfig::adam(0.1)),
            ("b".into(), OptimConfig::adam(0.1)),
        ]
        .into(),
        patience: None,
        seed: 0,
        on_nan: NanPolicy::Stop,
        precision: Default::default(),
        channels_last: false,
    };
    let run = run_dir(&d.path().join("two"));
    train(&mut m, &OneBatch, &OneBatch, &cfg, &run, false, &mut |_| {}).unwrap();
    // Adam's first step moves each parameter by lr against its gradient's sign.
    // a: gradient 1 → 0.9. b: gradient 2(b − a) = 2(0.95 − 0.9) > 0 → 0.85.
    assert!((m.a.double_value(&[0]) - 0.9).abs() < 1e-6);
    assert!(
        (m.b.double_value(&[0]) - 0.85).abs() < 1e-6,
        "b = {}",
        m.b.double_value(&[0])
    );
    // What a stale graph would have done, silently: b's loss built before
    // a's in-place update still sees a = 1 and moves b the other way.
    let vs = nn::VarStore::new(Device::Cpu);
    let a = vs.root().var_copy("a", &Tensor::from_slice(&[1.0f32]));
    let b = vs.root().var_copy("b", &Tensor::from_slice(&[0.95f32]));
    let mut oa = embedlab_train::Optimizer::new(
        "a",
        vec![("a".into(), a.shallow_clone())],
        &OptimConfig::adam(0.1),
    );
    let mut ob = embedlab_train::Optimizer::new(
        "b",
        vec![("b".into(), b.shallow_clone())],
        &OptimConfig::adam(0.1),
    );
    let stale = (&b - &a).square().sum(Kind::Float);
    let mut ga = oa.gradients(&a.sum(Kind::Float)).unwrap();
    let _ = oa.step(&mut ga);
    let mut gb = ob.gradients(&stale).unwrap();
    let _ = ob.step(&mut gb);
    assert!(
        (b.double_value(&[0]) - 1.05).abs() < 1e-6,
        "stale: {}",
        b.double_value(&[0])
    );
}

// ------------------------------------------------------------ NaN

/// loss = w^power by SGD from w = 1, with `ceiling` as the model's loss
/// ceiling. w⁴: lr 1 diverges (to a NaN), lr 0.1 converges. w²: at lr 1.5
/// each step doubles |w| (the loss grows 4× a step, finite for hundreds of
/// steps), at lr 0.15 it shrinks w by 0.7.
struct Power {
    vs: nn::VarStore,
    w: Tensor,
    power: f64,
    ceiling: Option<f64>,
}

fn power(power: f64, ceiling: Option<f64>) -> Power {
    let vs = nn::VarStore::new(Device::Cpu);
    let w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f64]));
    Power {
        vs,
        w,
        power,
        ceiling,
    }
}

fn quartic() -> Power {
    power(4.0, None)
}

fn square(ceiling: Option<f64>) -> Power {
    power(2.0, ceiling)
}

struct Repeat(usize);
impl Batches for Repeat {
    fn items(&self) -> usize {
        self.0
    }
    fn epoch(&self, _bs: i64) -> Box<dyn Iterator<Item = Batch> + '_> {
        Box::new((0..self.0).map(|_| {
            Batch::new(
                Tensor::zeros([1], (Kind::Float, Device::Cpu)),
                Tensor::zeros([1], (Kind::Int64, Device::Cpu)),
            )
        }))
    }
}

impl Trainable for Power {
    type Data = Repeat;
    type Error = TrainError;
    fn kind(&self) -> String {
        format!("power-{}", self.power)
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
    fn loss(&mut self, _g: &str, _b: &Batch, _at: &Progress) -> Result<Losses, TrainError> {
        Ok(Losses::single(
            self.w.pow_tensor_scalar(self.power).sum(Kind::Double),
        ))
    }
    fn validate(&mut self, _v: &Repeat) -> Result<BTreeMap<String, f64>, TrainError> {
        let l = self
            .w
            .pow_tensor_scalar(self.power)
            .sum(Kind::Double)
            .double_value(&[]);
        Ok([("loss".to_string(), l)].into())
    }
    fn loss_ceiling(&self, group: &str) -> Option<f64> {
        assert_eq!(group, "model");
        self.ceiling
    }
}

#[test]
fn a_nan_stops_the_run_or_rolls_back_with_a_smaller_learning_rate() {
    let _g = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let mut cfg = TrainConfig::single(2, 1, OptimConfig::sgd(1.0), 0);
    let data = Repeat(20);
    let run = run_dir(&d.path().join("stop"));
    let e = train(&mut quartic(), &data, &data, &cfg, &run, false, &mut |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("`model` loss became")
            && msg.contains("epoch 1")
            && msg.contains("no epoch had finished"),
        "{msg}"
    );
    assert!(!run.file(checkpoint::CHECKPOINT).exists());
    cfg.on_nan = NanPolicy::Rollback {
        max: 3,
        lr_factor: 0.1,
    };
    let run = run_dir(&d.path().join("rollback"));
    let mut m = quartic();
    let s = train(&mut m, &data, &data, &cfg, &run, false, &mut |_| {}).unwrap();
    assert_eq!((s.epochs_done, s.rollbacks), (2, 1));
    assert!(
        m.w.double_value(&[0]).abs() < 0.5,
        "converged once the rate was smaller"
    );
    let lines = run.metrics();
    assert!(
        lines[0]["events"][0]
            .as_str()
            .unwrap()
            .contains("rolled back"),
        "{}",
        lines[0]
    );
    assert!((lines[0]["lr"]["model"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    // A rollback budget that runs out ends the run with the error.
    cfg.on_nan = NanPolicy::Rollback {
        max: 1,
        lr_factor: 0.9,
    };
    let run = run_dir(&d.path().join("exhausted"));
    assert!(train(&mut quartic(), &data, &data, &cfg, &run, false, &mut |_| {}).is_err());
}

#[test]
fn a_finite_explosion_past_the_models_ceiling_is_treated_as_a_nan() {
    let _g = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let data = Repeat(25);
    let mut cfg = TrainConfig::single(2, 1, OptimConfig::sgd(1.5), 0);
    // Without a ceiling the run "finishes": every number is finite.
    let run = run_dir(&d.path().join("none"));
    let s = train(
        &mut square(None),
        &data,
        &data,
        &cfg,
        &run,
        false,
        &mut |_| {},
    )
    .unwrap();
    let last = run.metrics()[1]["valid"]["loss"].as_f64().unwrap();
    assert!(
        s.rollbacks == 0 && last.is_finite() && last > 1e20,
        "{last}"
    );
    // With one the first ten rounds' mean (about 4⁹/10·…) is far above it:
    // the run stops there, naming the rounds, the mean and the ceiling.
    let run = run_dir(&d.path().join("stop"));
    let e = train(
        &mut square(Some(100.0)),
        &data,
        &data,
        &cfg,
        &run,
        false,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("the `model` loss (its mean over rounds 1–10) rose to")
            && e.contains("above the model's ceiling of 100")
            && e.contains("epoch 1, step 10"),
        "{e}"
    );
    assert!(!run.file(checkpoint::CHECKPOINT).exists());
    // Rolling back with a tenth of the rate converges.
    cfg.on_nan = NanPolicy::Rollback {
        max: 2,
        lr_factor: 0.1,
    };
    let run = run_dir(&d.path().join("rollback"));
    let mut m = square(Some(100.0));
    let s = train(&mut m, &data, &data, &cfg, &run, false, &mut |_| {}).unwrap();
    assert_eq!((s.epochs_done, s.rollbacks), (2, 1));
    assert!(m.w.double_value(&[0]).abs() < 1e-3);
    let ev = run.metrics()[0]["events"][0].as_str().unwrap().to_string();
    assert!(
        ev.contains("rose to") && ev.contains("ceiling of 100") && ev.contains("rolled back"),
        "{ev}"
    );
    // A healthy run under the ceiling is the run without one, bit for bit.
    let cfg = TrainConfig::single(2, 1, OptimConfig::sgd(0.15), 0);
    let (mut a, mut b) = (square(None), square(Some(100.0)));
    let ra = run_dir(&d.path().join("a"));
    let rb = run_dir(&d.path().join("b"));
    train(&mut a, &data, &data, &cfg, &ra, false, &mut |_| {}).unwrap();
    train(&mut b, &data, &data, &cfg, &rb, false, &mut |_| {}).unwrap();
    assert_eq!(a.w.double_value(&[0]), b.w.double_value(&[0]));
    assert_eq!(ra.metrics()[1]["valid"], rb.metrics()[1]["valid"]);
}

#[test]
fn groups_must_cover_every_trainable_variable_and_match_the_configuration() {
    let _g = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let data = Repeat(2);
    let mut cfg = TrainConfig::single(1, 1, OptimConfig::sgd(0.01), 0);
    cfg.groups.insert("extra".into(), OptimConfig::sgd(0.01));
    let run = run_dir(&d.path().join("a"));
    let e = train(&mut quartic(), &data, &data, &cfg, &run, false, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("no optimizer group `extra`"), "{e}");
    let mut q = quartic();
    let _ = q.vs.root().var("orphan", &[2], nn::Init::Const(0.0));
    let cfg = TrainConfig::single(1, 1, OptimConfig::sgd(0.01), 0);
    let e = train(&mut q, &data, &data, &cfg, &run, false, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("`orphan` belongs to no optimizer group"), "{e}");
    let mut bad = TrainConfig::single(0, 1, OptimConfig::sgd(0.01), 0);
    assert!(
        train(&mut quartic(), &data, &data, &bad, &run, false, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("--epochs 0")
    );
    bad.epochs = 1;
    bad.groups.get_mut("model").unwrap().algorithm = Algorithm::Sgd { momentum: 1.5 };
    assert!(
        train(&mut quartic(), &data, &data, &bad, &run, false, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("momentum")
    );
}
