//! Normalizing flows: every block and every whole model inverts, every
//! log-determinant equals a brute-force Jacobian's (central differences
//! in double precision), the bits/dim accounting has its closed forms
//! (the identity flow with a Gaussian prior; the uniform model's exactly
//! 8), actnorm standardises, a trained 2-D flow's density integrates to 1,
//! the 1×1 convolution's parameters all get gradients, the residual blocks
//! are contractive and their estimator converges, and training resumes bit
//! for bit and survives a NaN by rolling back.
use embedlab_models::batches::Split;
use embedlab_models::capabilities::{Decode, Encode, Sample};
use embedlab_models::flow::blocks::{
    ActNorm, Bijection, Coupling, Ctx, InvConv, Mask, Reverse, Squeeze,
};
use embedlab_models::flow::iresnet::{Estimator, Residual, ResidualConfig};
use embedlab_models::flow::{BaseDist, Flow, FlowConfig, FlowKind, Layout};
use embedlab_testkit::seeded as one_at_a_time;
use embedlab_train::{train, NanPolicy, OptimConfig, Reuse, RunDir, TrainConfig, Trainable};
use std::path::Path;
use tch::nn::OptimizerConfig;
use tch::{nn, Device, Kind, Tensor};

const CPU: Device = Device::Cpu;

/// Moves every trainable variable by N(0, s²), so no block is the identity.
fn perturb(vs: &nn::VarStore, s: f64) {
    let _g = tch::no_grad_guard();
    for v in vs.trainable_variables() {
        let r = v.randn_like() * s;
        let _ = v.shallow_clone().g_add_(&r);
    }
}

fn residual_cfg() -> ResidualConfig {
    ResidualConfig {
        hidden: 8,
        exact_max: 0,
        ..Default::default()
    }
}

/// One of each block on c × 4 × 4 inputs, randomised.
fn blocks(vs: &nn::VarStore, c: i64) -> Vec<Box<dyn Bijection>> {
    let r = vs.root();
    let b: Vec<Box<dyn Bijection>> = vec![
        Box::new(ActNorm::new(&r / "an", c)),
        Box::new(InvConv::new(&r / "ic", c).unwrap()),
        Box::new(Coupling::new(&r / "ca", c, 8, Mask::Channels, false, 2.0).unwrap()),
        Box::new(Coupling::new(&r / "cd", c, 8, Mask::Channels, true, 2.0).unwrap()),
        Box::new(
            Coupling::new(
                &r / "cb",
                c,
                8,
                Mask::Checkerboard { parity: true },
                false,
                2.0,
            )
            .unwrap(),
        ),
        Box::new(
            Coupling::new(
                &r / "cc",
                c,
                8,
                Mask::Checkerboard { parity: false },
                true,
                2.0,
            )
            .unwrap(),
        ),
        Box::new(Squeeze),
        Box::new(Reverse),
        Box::new(Residual::new(&r / "res", c, (4, 4), &residual_cfg()).unwrap()),
    ];
    perturb(vs, 0.3);
    b
}

/// The Jacobian of x ↦ f(x) for one input by central differences (double).
fn fd_logdet(f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor) -> f64 {
    let d = x.numel() as i64;
    let h = 1e-5;
    let mut cols = vec![];
    for i in 0..d {
        let e = Tensor::zeros([d], (Kind::Double, CPU));
        let _ = e.get(i).fill_(h);
        let e = e.reshape(x.size());
        let c = (f(&(x + &e)) - f(&(x - &e))) / (2.0 * h);
        cols.push(c.reshape([d]));
    }
    let j = Tensor::stack(&cols, 1);
    Tensor::linalg_slogdet(&j).1.double_value(&[])
}

#[test]
fn every_block_inverts_and_its_log_determinant_is_the_jacobians() {
    let _l = one_at_a_time();
    tch::manual_seed(1);
    let vs = nn::VarStore::new(CPU);
    let bs = blocks(&vs, 2);
    let x = Tensor::randn([3, 2, 4, 4], (Kind::Float, CPU));
    for b in &bs {
        b.before_step();
        let (y, _) = b.forward(&x, Ctx::default()).unwrap();
        let back = b.inverse(&y).unwrap();
        let err = (back - &x).abs().max().double_value(&[]);
        assert!(err < 1e-4, "{}: round trip error {err}", b.label());
        assert!(
            y.size() != x.size() || (&y - &x).abs().max().double_value(&[]) > 1e-3,
            "{} is the identity: the test would prove nothing",
            b.label()
        );
    }
    // Log-determinants against central differences in double precision.
    let mut vsd = nn::VarStore::new(CPU);
    let bs = blocks(&vsd, 2);
    vsd.double();
    let x = Tensor::randn([1, 2, 4, 4], (Kind::Double, CPU));
    for b in &bs {
        let exact = Ctx {
            train: false,
            exact: true,
        };
        let (_, ld) = b.forward(&x, exact).unwrap();
        let f = |z: &Tensor| {
            let _g = tch::no_grad_guard();
            b.forward(z, Ctx::default()).unwrap().0
        };
        let want = fd_logdet(&f, &x);
        let got = ld.double_value(&[0]);
        assert!(
            (got - want).abs() < 1e-6 * (1.0 + want.abs()),
            "{}: log-det {got} vs brute force {want}",
            b.label()
        );
    }
}

fn tiny(kind: FlowKind) -> FlowConfig {
    let mut c = FlowConfig::new(kind, [1, 8, 8], 4);
    c.steps = 2;
    c.hidden = 8;
    c.residual = ResidualConfig {
        hidden: 8,
        exact_max: 0,
        terms: 8,
        ..Default::default()
    };
    c.init_batch = 16;
    c
}

fn images(n: i64) -> Tensor {
    (Tensor::rand([n, 1, 8, 8], (Kind::Float, CPU)) * 255.0).round() / 255.0
}

#[test]
fn every_model_inverts_and_samples_in_range() {
    let _l = one_at_a_time();
    for kind in [FlowKind::Glow, FlowKind::Realnvp, FlowKind::Iresnet] {
        for layout in [Layout::Native, Layout::Padded32x3] {
            tch::manual_seed(2);
            let mut cfg = tiny(kind);
            cfg.layout = layout;
            if layout == Layout::Padded32x3 {
                cfg.height = 28;
                cfg.width = 28;
                cfg.levels = 1;
            }
            let f = Flow::new(cfg.clone(), CPU).unwrap();
            let x = (Tensor::rand([4, 1, cfg.height, cfg.width], (Kind::Float, CPU)) * 255.0)
                .round()
                / 255.0;
            f.initialise(&x, None).unwrap();
            perturb(&f.vs, 0.05);
            let (err, _, _) = f.inverse_error(&x, None).unwrap();
            assert!(err < 1e-4, "{kind:?} {layout:?}: inverse error {err}");
            // Through the capabilities: codes of D values, decoded back to
            // the images (bins' middles: within half a grey level).
            let z = f.encode(&x, None).unwrap();
            assert_eq!(z.size(), [4, cfg.dims()]);
            let back = f.decode(&z, None).unwrap();
            assert_eq!(back.size(), x.size());
            let e = (back - &x).abs().max().double_value(&[]);
            assert!(
                e < 1.0 / 255.0,
                "{kind:?} {layout:?}: decode(encode(x)) off by {e}"
            );
            let s = f.sample(3, None, 0.7).unwrap();
            assert_eq!(s.size(), [3, 1, cfg.height, cfg.width]);
            assert!(s.min().double_value(&[]) >= 0.0 && s.max().double_value(&[]) <= 1.0);
        }
    }
}

#[test]
fn bits_per_dim_have_their_closed_forms() {
    let _l = one_at_a_time();
    tch::manual_seed(3);
    // At initialisation (actnorm not yet set) a Glow is a rotation (the 1×1
    // convolutions start orthogonal, the couplings as the identity, the
    // priors at N(0, I)), and a RealNVP is the identity: with the bins'
    // middles, log p is the standard normal's of h = x − ½.
    let x = images(5);
    let d = 64.0;
    let h = ((&x * 255.0).round() + 0.5) / 256.0 - 0.5;
    let want: Vec<f64> = (0..5)
        .map(|i| {
            let ss = h.get(i).square().sum(Kind::Double).double_value(&[]);
            (0.5 * (ss + d * (2.0 * std::f64::consts::PI).ln()) + d * 256f64.ln())
                / (d * std::f64::consts::LN_2)
        })
        .collect();
    for kind in [FlowKind::Glow, FlowKind::Realnvp] {
        let mut cfg = tiny(kind);
        cfg.logit = None;
        cfg.dequantize = false;
        let f = Flow::new(cfg, CPU).unwrap();
        let nll = f.nll_images(&x, None, Ctx::default()).unwrap();
        let bpd: Vec<f64> = Vec::try_from(f.bits_per_dim(&nll).to_kind(Kind::Double)).unwrap();
        for (g, w) in bpd.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{kind:?}: {g} vs closed form {w}");
        }
    }
    // The uniform model: the identity flow after the logit (α = 0) with a
    // logistic base is uniform on [0, 1]^D, so every image costs exactly 8
    // bits a value, whatever the dequantisation noise.
    let mut cfg = tiny(FlowKind::Realnvp);
    cfg.logit = Some(0.0);
    cfg.base = BaseDist::Logistic;
    let f = Flow::new(cfg, CPU).unwrap();
    let bpd = f.bits_per_dim(&f.nll_images(&x, None, Ctx::default()).unwrap());
    let worst = (bpd - 8.0).abs().max().double_value(&[]);
    assert!(worst < 1e-4, "uniform model off 8 bits/dim by {worst}");
}

#[test]
fn actnorm_standardises_and_refuses_a_constant_channel() {
    let _l = one_at_a_time();
    tch::manual_seed(4);
    let vs = nn::VarStore::new(CPU);
    let a = ActNorm::new(vs.root() / "a", 3);
    let x = Tensor::randn([64, 3, 5, 5], (Kind::Float, CPU))
        * Tensor::from_slice(&[0.1f32, 3.0, 20.0]).reshape([1, 3, 1, 1])
        + Tensor::from_slice(&[5.0f32, -2.0, 0.0]).reshape([1, 3, 1, 1]);
    a.init_from(&x).unwrap();
    assert!(a.is_initialised());
    let (y, _) = a.forward(&x, Ctx::default()).unwrap();
    let m = y.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Double);
    let v = y
        .to_kind(Kind::Double)
        .var_dim([0i64, 2, 3].as_slice(), false, false);
    for c in 0..3 {
        assert!(m.double_value(&[c]).abs() < 1e-5, "mean {m:?}");
        assert!((v.double_value(&[c]) - 1.0).abs() < 1e-4, "variance {v:?}");
    }
    // A second call leaves it alone (the flag is in the checkpoint).
    a.init_from(&(x * 7.0)).unwrap();
    let (y2, _) = a.forward(&y, Ctx::default()).unwrap();
    assert!(y2.size() == y.size());
    let b = ActNorm::new(vs.root() / "b", 2);
    let c = Tensor::randn([8, 2, 3, 3], (Kind::Float, CPU));
    let _ = c.narrow(1, 1, 1).fill_(0.25);
    let e = b.init_from(&c).unwrap_err().to_string();
    assert!(
        e.contains("channel 1 is constant") && e.contains("`b`"),
        "{e}"
    );
    assert!(!b.is_initialised());
}

#[test]
fn every_lu_parameter_of_the_1x1_convolution_gets_a_gradient() {
    let _l = one_at_a_time();
    tch::manual_seed(5);
    let vs = nn::VarStore::new(CPU);
    let ic = InvConv::new(vs.root() / "ic", 4).unwrap();
    let x = Tensor::randn([6, 4, 3, 3], (Kind::Float, CPU));
    let (y, ld) = ic.forward(&x, Ctx::default()).unwrap();
    (y.square().sum(Kind::Float) * 0.5 - ld.sum(Kind::Float)).backward();
    let vars = vs.variables();
    let nz = |name: &str| vars[name].grad().abs();
    let low = nz("ic.lower").tril(-1);
    let up = nz("ic.upper").triu(1);
    let ls = nz("ic.log_s");
    assert!(
        low.tril(-1).ne(0.0).sum(Kind::Int64).int64_value(&[]) == 6,
        "{low:?}"
    );
    assert!(up.ne(0.0).sum(Kind::Int64).int64_value(&[]) == 6, "{up:?}");
    assert!(ls.ne(0.0).sum(Kind::Int64).int64_value(&[]) == 4, "{ls:?}");
    // The fixed parts are buffers, never trained.
    let trainable = vs.trainable_variables().len();
    assert_eq!(trainable, 3);
}

/// Points in the plane as 2 × 1 × 1 "images": two Gaussian blobs.
fn blobs(n: i64) -> Tensor {
    let c = Tensor::randint(2, [n, 1], (Kind::Float, CPU)) * 2.0 - 1.0;
    let x =
        Tensor::randn([n, 2], (Kind::Float, CPU)) * 0.3 + c * Tensor::from_slice(&[1.0f32, 0.5]);
    x.reshape([n, 2, 1, 1])
}

fn toy_flow(kind: FlowKind) -> Flow {
    let mut cfg = FlowConfig::new(kind, [2, 1, 1], 1);
    cfg.squeeze = false;
    cfg.levels = 1;
    cfg.steps = 4;
    cfg.hidden = 32;
    cfg.logit = None;
    cfg.dequantize = false;
    cfg.residual = ResidualConfig {
        hidden: 32,
        ..Default::default()
    };
    Flow::new(cfg, CPU).unwrap()
}

#[test]
fn a_trained_2d_density_integrates_to_one() {
    let _l = one_at_a_time();
    for kind in [FlowKind::Glow, FlowKind::Iresnet] {
        tch::manual_seed(6);
        let f = toy_flow(kind);
        let logp = |h: &Tensor, ctx: Ctx| f.forward_codes(h, None, ctx, false).unwrap().1;
        {
            let _g = tch::no_grad_guard();
            let _ = f
                .forward_codes(&blobs(256), None, Ctx::default(), true)
                .unwrap();
        }
        let mut opt = nn::Adam::default().build(&f.vs, 3e-3).unwrap();
        let test = blobs(2000);
        let before = -logp(&test, Ctx::default())
            .mean(Kind::Double)
            .double_value(&[]);
        for _ in 0..300 {
            for (_, b) in f.blocks() {
                b.before_step();
            }
            let loss = -logp(
                &blobs(128),
                Ctx {
                    train: true,
                    exact: false,
                },
            )
            .mean(Kind::Float);
            opt.backward_step(&loss);
        }
        let after = -logp(&test, Ctx::default())
            .mean(Kind::Double)
            .double_value(&[]);
        assert!(
            after < before - 0.5,
            "{kind:?} did not learn: {before} → {after}"
        );
        // ∫ p over [−4, 4]² on a 160 × 160 grid.
        let g = 160;
        let t = Tensor::linspace(-4.0, 4.0, g, (Kind::Float, CPU));
        let gx = t.reshape([g, 1]).expand([g, g], true).reshape([-1]);
        let gy = t.reshape([1, g]).expand([g, g], true).reshape([-1]);
        let pts = Tensor::stack(&[gx, gy], 1).reshape([-1, 2, 1, 1]);
        let cell = (8.0 / (g - 1) as f64).powi(2);
        let p = logp(&pts, Ctx::default()).to_kind(Kind::Double).exp();
        let mass = p.sum(Kind::Double).double_value(&[]) * cell;
        assert!((mass - 1.0).abs() < 0.02, "{kind:?}: ∫p = {mass}");
    }
}

#[test]
fn residual_blocks_are_contractive_and_their_estimators_converge() {
    let _l = one_at_a_time();
    tch::manual_seed(7);
    let vs = nn::VarStore::new(CPU);
    let cfg = ResidualConfig {
        hidden: 8,
        coeff: 0.7,
        exact_max: 0,
        terms: 30,
        ..Default::default()
    };
    let r = Residual::new(vs.root() / "r", 2, (4, 4), &cfg).unwrap();
    {
        // Larger weights, so the soft scaling is what holds σ down.
        let _g = tch::no_grad_guard();
        for c in &r.convs {
            let _ = c.w.shallow_clone().g_mul_scalar_(5.0);
            c.power_iteration(100);
        }
    }
    for c in &r.convs {
        let top = c
            .dense()
            .to_kind(Kind::Double)
            .svd(true, false)
            .1
            .double_value(&[0]);
        assert!(top <= 0.7 * 1.001, "operator norm {top} above c = 0.7");
        assert!(top > 0.69, "soft scaling should bring σ to c: {top}");
    }
    let x = Tensor::randn([1, 2, 4, 4], (Kind::Float, CPU));
    let exact = r
        .forward(
            &x,
            Ctx {
                train: false,
                exact: true,
            },
        )
        .unwrap()
        .1
        .double_value(&[0]);
    let mut r = r;
    let est = |r: &Residual| r.forward(&x, Ctx::default()).unwrap().1.double_value(&[0]);
    // Hutchinson with one probe: unbiased, with a spread; with 400 probes
    // the estimate closes in on the exact value.
    tch::manual_seed(8);
    let single: Vec<f64> = (0..100).map(|_| est(&r)).collect();
    let mean = single.iter().sum::<f64>() / 100.0;
    let sd = (single.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 99.0).sqrt();
    assert!(sd > 1e-4, "a random estimator with no spread: {single:?}");
    assert!(
        (mean - exact).abs() < 4.0 * sd / 10.0,
        "series mean {mean} vs exact {exact} (sd {sd})"
    );
    r.cfg.probes = 400;
    let many = est(&r);
    assert!(
        (many - exact).abs() < 4.0 * sd / 20.0,
        "400 probes: {many} vs exact {exact} (one probe's sd {sd})"
    );
    // Training builds the graph of the same value (the products' seeds are
    // constants, not differentiated through), and its gradient in the
    // weights is the exact log-determinant's (30 terms: the tail is tiny).
    r.cfg.probes = 200;
    let train = Ctx {
        train: true,
        exact: false,
    };
    tch::manual_seed(9);
    let (_, lt) = r.forward(&x, train).unwrap();
    tch::manual_seed(9);
    let le = r.forward(&x, Ctx::default()).unwrap().1.double_value(&[0]);
    assert!((lt.double_value(&[0]) - le).abs() < 1e-5, "{lt:?} vs {le}");
    let w = &r.convs[0].w;
    let g_est = Tensor::run_backward(&[lt.sum(Kind::Float)], &[w], false, false)
        .pop()
        .unwrap();
    let (_, lx) = r
        .forward(
            &x,
            Ctx {
                train: true,
                exact: true,
            },
        )
        .unwrap();
    let g_ex = Tensor::run_backward(&[lx.sum(Kind::Float)], &[w], false, false)
        .pop()
        .unwrap();
    let rel = ((&g_est - &g_ex).norm().double_value(&[])) / g_ex.norm().double_value(&[]);
    assert!(
        rel < 0.2,
        "estimated log-det gradient {rel} off the exact one's"
    );
    // The Russian roulette (2 exact terms, then geometric): unbiased.
    r.cfg.probes = 1;
    r.cfg.terms = 2;
    r.cfg.estimator = Estimator::Roulette;
    let rr: Vec<f64> = (0..400).map(|_| est(&r)).collect();
    let rm = rr.iter().sum::<f64>() / 400.0;
    let rsd = (rr.iter().map(|v| (v - rm).powi(2)).sum::<f64>() / 399.0).sqrt();
    assert!(
        (rm - exact).abs() < 4.0 * rsd / 20.0,
        "roulette mean {rm} vs exact {exact} (sd {rsd})"
    );
    // The fixed-point inverse reports its iterations and final change.
    let (y, _) = r.forward(&x, Ctx::default()).unwrap();
    let back = r.inverse(&y).unwrap();
    let (it, change) = r.last_inverse();
    assert!(
        it > 1 && it < 100 && change < 1e-6,
        "{it} iterations, change {change}"
    );
    assert!((back - &x).abs().max().double_value(&[]) < 1e-5);
}

fn run_dir(p: &Path) -> RunDir {
    RunDir::create("train", Some(p), Reuse::Refuse, &serde_json::json!({})).unwrap()
}

fn tcfg(epochs: usize, lr: f64, on_nan: NanPolicy) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        groups: [("model".to_string(), OptimConfig::adam(lr))].into(),
        patience: None,
        seed: 11,
        on_nan,
        precision: Default::default(),
        channels_last: false,
    }
}

fn data(n: i64, seed: i64) -> Split {
    tch::manual_seed(seed);
    // Bars on 8 × 8 with noise, on the 256-level grid.
    let y = Tensor::randint(4, [n], (Kind::Int64, CPU));
    let x = Tensor::zeros([n, 1, 8, 8], (Kind::Float, CPU));
    for i in 0..n {
        let k = y.int64_value(&[i]);
        let _ = x.get(i).get(0).narrow(0, 2 * k, 2).fill_(0.9);
    }
    let x = ((x + Tensor::rand([n, 1, 8, 8], (Kind::Float, CPU)) * 0.1).clamp(0.0, 1.0) * 255.0)
        .round()
        / 255.0;
    Split { x, y }
}

#[test]
fn training_resumes_bit_for_bit_keeping_actnorm_and_power_iteration_state() {
    let _l = one_at_a_time();
    let (tr, va) = (data(64, 1), data(32, 2));
    for kind in [FlowKind::Glow, FlowKind::Iresnet] {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        tch::manual_seed(9);
        let mut m = Flow::new(tiny(kind), CPU).unwrap();
        train(
            &mut m,
            &tr,
            &va,
            &tcfg(2, 1e-3, NanPolicy::Stop),
            &run_dir(&a),
            false,
            &mut |_| {},
        )
        .unwrap();
        tch::manual_seed(9);
        let mut m2 = Flow::new(tiny(kind), CPU).unwrap();
        train(
            &mut m2,
            &tr,
            &va,
            &tcfg(1, 1e-3, NanPolicy::Stop),
            &run_dir(&b),
            false,
            &mut |_| {},
        )
        .unwrap();
        tch::manual_seed(99);
        let mut m3 = Flow::new(tiny(kind), CPU).unwrap();
        let rb = RunDir::resume(&b, "train").unwrap();
        train(
            &mut m3,
            &tr,
            &va,
            &tcfg(2, 1e-3, NanPolicy::Stop),
            &rb,
            true,
            &mut |_| {},
        )
        .unwrap();
        let v1 = m.var_store().variables();
        let v3 = m3.var_store().variables();
        for (k, t) in &v1 {
            assert!(t.equal(&v3[k]), "{kind:?}: {k} differs after resume");
        }
        assert!(v1.keys().any(|k| k.ends_with("initialised")));
        if kind == FlowKind::Iresnet {
            assert!(v1.keys().any(|k| k.ends_with("sn_u")));
        }
    }
}

#[test]
fn a_nan_rolls_back_with_a_smaller_learning_rate() {
    let _l = one_at_a_time();
    let (tr, va) = (data(64, 1), data(32, 2));
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(9);
    let mut m = Flow::new(tiny(FlowKind::Glow), CPU).unwrap();
    // A learning rate of 50 blows the scales up within an epoch.
    let s = train(
        &mut m,
        &tr,
        &va,
        &tcfg(
            2,
            50.0,
            NanPolicy::Rollback {
                max: 8,
                lr_factor: 0.1,
            },
        ),
        &run_dir(&dir.path().join("r")),
        false,
        &mut |_| {},
    )
    .unwrap();
    assert!(s.rollbacks >= 1, "no rollback happened");
    assert!(s.best_value.unwrap().is_finite());
    let log = std::fs::read_to_string(dir.path().join("r").join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| !l.trim().is_empty()).count(), 2);
}

#[test]
fn every_flow_starts_far_below_the_ceiling_the_trainer_enforces() {
    // The trainer treats a training mean above the flow's ceiling as a
    // NaN; a healthy start must never reach it. Each kind's defaults,
    // both layouts, initialised from 28 × 28 images of sparse strokes.
    let _l = one_at_a_time();
    tch::manual_seed(5);
    let x = (Tensor::rand([64, 1, 28, 28], (Kind::Float, CPU)) - 0.8).clamp_min(0.0) * 5.0;
    let x = (x.clamp_max(1.0) * 255.0).round() / 255.0;
    for kind in [FlowKind::Glow, FlowKind::Realnvp, FlowKind::Iresnet] {
        for layout in [Layout::Native, Layout::Padded32x3] {
            let mut cfg = FlowConfig::new(kind, [1, 28, 28], 10);
            cfg.layout = layout;
            cfg.init_batch = 64;
            let f = Flow::new(cfg, CPU).unwrap();
            f.initialise(&x, None).unwrap();
            let bpd = tch::no_grad(|| {
                let nll = f.nll_images(&x, None, Ctx::default()).unwrap();
                f.bits_per_dim(&nll).mean(Kind::Double).double_value(&[])
            });
            eprintln!("{kind:?} {layout:?}: {bpd:.2} bits/dim at initialisation");
            let ceiling = f.loss_ceiling("model").unwrap();
            assert_eq!(ceiling, embedlab_models::flow::DIVERGED_BPD);
            assert!(
                bpd.is_finite() && bpd < ceiling * 0.75,
                "{kind:?} {layout:?}: {bpd} bits/dim at initialisation against a ceiling of {ceiling}"
            );
        }
    }
}

#[test]
fn in_a_bf16_region_a_flows_density_stays_float32_and_close() {
    // bfloat16 training: the coupling networks' and priors' products run
    // in bfloat16, what enters the log-determinant and the density in
    // float32 (the 1×1 convolution and i-ResNet's blocks entirely).
    let _l = one_at_a_time();
    let x = images(32);
    for kind in [FlowKind::Glow, FlowKind::Realnvp, FlowKind::Iresnet] {
        tch::manual_seed(5);
        let f = Flow::new(tiny(kind), CPU).unwrap();
        f.initialise(&x, None).unwrap();
        perturb(f.var_store(), 0.05);
        let bpd = |cast: bool| {
            let _a = embedlab_train::Autocast::enter(
                if cast {
                    embedlab_train::Precision::Bf16
                } else {
                    embedlab_train::Precision::F32
                },
                CPU,
            )
            .unwrap();
            tch::manual_seed(8);
            let nll = tch::no_grad(|| f.nll_images(&x, None, Ctx::default()).unwrap());
            assert_eq!(nll.kind(), Kind::Float, "{kind:?}");
            f.bits_per_dim(&nll).mean(Kind::Double).double_value(&[])
        };
        let (exact, cast) = (bpd(false), bpd(true));
        let gap = (exact - cast).abs();
        assert!(
            gap < 0.02,
            "{kind:?}: {exact} bits/dim in f32, {cast} in bf16"
        );
        if kind == FlowKind::Iresnet {
            // Its blocks run in float32; only the split priors' products
            // are bfloat16.
            assert!(gap < 1e-3, "i-ResNet: {exact} in f32, {cast} in bf16");
        } else {
            assert!(gap > 0.0, "{kind:?}: the region changed nothing");
        }
    }
    // The 1×1 convolution is the float32 map inside a region too.
    let vs = nn::VarStore::new(CPU);
    let ic = InvConv::new(&vs.root() / "ic", 4).unwrap();
    perturb(&vs, 0.3);
    let h = Tensor::randn([2, 4, 4, 4], (Kind::Float, CPU));
    let plain = ic.forward(&h, Ctx::default()).unwrap().0;
    let _a = embedlab_train::Autocast::enter(embedlab_train::Precision::Bf16, CPU).unwrap();
    let inside = ic.forward(&h, Ctx::default()).unwrap().0;
    assert!(inside.kind() == Kind::Float && inside.equal(&plain));
}

#[test]
fn a_class_conditional_prior_prefers_the_true_label() {
    let _l = one_at_a_time();
    let tr = data(256, 3);
    tch::manual_seed(12);
    let mut cfg = tiny(FlowKind::Glow);
    cfg.conditional = true;
    let f = Flow::new(cfg, CPU).unwrap();
    f.initialise(&tr.x, Some(&tr.y)).unwrap();
    // Without labels it refuses, naming what is missing.
    let e = f
        .nll_images(&tr.x, None, Ctx::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("labels"), "{e}");
    let mut opt = nn::Adam::default().build(&f.vs, 3e-3).unwrap();
    let train = Ctx {
        train: true,
        exact: false,
    };
    for i in 0..60 {
        let idx = Tensor::arange_start((i % 8) * 32, (i % 8) * 32 + 32, (Kind::Int64, CPU));
        let x = tr.x.index_select(0, &idx);
        let y = tr.y.index_select(0, &idx);
        let loss = f.nll_images(&x, Some(&y), train).unwrap().mean(Kind::Float);
        opt.backward_step(&loss);
    }
    let te = data(128, 4);
    let _g = tch::no_grad_guard();
    let right = f.nll_images(&te.x, Some(&te.y), Ctx::default()).unwrap();
    let wrong_y = (&te.y + 1).remainder(4);
    let wrong = f.nll_images(&te.x, Some(&wrong_y), Ctx::default()).unwrap();
    let better = right
        .lt_tensor(&wrong)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    assert!(
        better > 0.9,
        "the true label is the likelier one for only {better} of the images"
    );
    // Class-conditional samples have the asked shape.
    let s = f
        .sample(4, Some(&Tensor::from_slice(&[0i64, 1, 2, 3])), 0.7)
        .unwrap();
    assert_eq!(s.size(), [4, 1, 8, 8]);
}
