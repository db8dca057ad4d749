//! The adversarial phase through the shared trainer: a run stopped after an
//! epoch and resumed in a new model ends bit-identical to an uninterrupted
//! one. (Its own test binary: libtorch's generator is global, and other
//! tests drawing from it at the same time would break the comparison.)
use embedlab_align::adversarial::{Adversarial, AdversarialConfig};
use tch::{Device, Kind, Tensor};

fn spaces() -> (Tensor, Tensor) {
    let x = Tensor::randn([300, 6], (Kind::Float, Device::Cpu));
    let (q, _) = Tensor::linalg_qr(
        &Tensor::randn([6, 6], (Kind::Float, Device::Cpu)),
        "reduced",
    );
    (x.shallow_clone(), x.matmul(&q))
}

fn small() -> AdversarialConfig {
    AdversarialConfig {
        epochs: 3,
        epoch_size: 2000,
        dis_hidden: 16,
        criterion_words: 200,
        refinement: 1,
        ..Default::default()
    }
}

/// Two epochs, or one and a resume from the checkpoint in a new model:
/// the same map and discriminator, bit for bit, and the same log.
#[test]
fn resume_repeats_an_uninterrupted_run_exactly() {
    use embedlab_train::{train, Reuse, RunDir};
    let d = tempfile::tempdir().unwrap();
    tch::manual_seed(43);
    let (x, z) = spaces();
    let cfg = small();
    let run_for = |epochs: usize, dir: &std::path::Path, resume: bool| {
        tch::manual_seed(7);
        let mut m = Adversarial::new(&x, &z, &cfg).unwrap();
        let draws = m.draws(cfg.epoch_size, cfg.dis_steps);
        let mut c = cfg.training(11);
        c.epochs = epochs;
        let run = if resume {
            RunDir::resume(dir, "align-unsupervised").unwrap()
        } else {
            RunDir::create(
                "align-unsupervised",
                Some(dir),
                Reuse::Refuse,
                &serde_json::json!({}),
            )
            .unwrap()
        };
        train(&mut m, &draws, &draws, &c, &run, resume, &mut |_| {}).unwrap();
        (m, run.metrics())
    };
    let (a, log_a) = run_for(2, &d.path().join("a"), false);
    let _ = run_for(1, &d.path().join("b"), false);
    let (b, log_b) = run_for(2, &d.path().join("b"), true);
    assert!(a.w.equal(&b.w), "the map differs after resume");
    for (p, q) in a.dis.weights.iter().zip(&b.dis.weights) {
        assert!(p.equal(q));
    }
    let crit = |l: &[serde_json::Value]| -> Vec<f64> {
        l.iter()
            .map(|r| r["valid"]["criterion"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(crit(&log_a), crit(&log_b));
    // W stays orthogonal (β keeps it near the orthogonal matrices).
    let wtw = a.w.tr().matmul(&a.w);
    let dev = (wtw - Tensor::eye(6, (Kind::Float, Device::Cpu)))
        .abs()
        .max()
        .double_value(&[]);
    assert!(dev < 0.1, "‖WᵀW − I‖∞ = {dev}");
}
