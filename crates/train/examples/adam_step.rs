//! Times embedlab's Adam step on the parameter shapes of the MLP VAE of
//! the speed benchmark (784-512-256-(2×20), mirrored; 1.08 M floats):
//! `cargo run --release -p embedlab-train --example adam_step`; PyTorch's
//! Adam on the same shapes: `.venv/bin/python bench/adam_step.py`.
use embedlab_train::{OptimConfig, Optimizer};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    tch::manual_seed(0);
    let shapes: [&[i64]; 12] = [
        &[512, 784],
        &[512],
        &[256, 512],
        &[256],
        &[40, 256],
        &[40],
        &[256, 20],
        &[256],
        &[512, 256],
        &[512],
        &[784, 512],
        &[784],
    ];
    let params: Vec<(String, Tensor)> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                format!("p{i:02}"),
                Tensor::randn(*s, (Kind::Float, Device::Cpu)).set_requires_grad(true),
            )
        })
        .collect();
    let n: i64 = params.iter().map(|(_, t)| t.numel() as i64).sum();
    let mut opt = Optimizer::new(
        "model",
        params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect(),
        &OptimConfig::adam(1e-3),
    );
    let grads: Vec<Tensor> = params
        .iter()
        .map(|(_, t)| Tensor::randn(t.size(), (Kind::Float, Device::Cpu)))
        .collect();
    let steps = 300;
    for round in 0..3 {
        let t = Instant::now();
        for _ in 0..steps {
            let mut g: Vec<Tensor> = grads.iter().map(|g| g.shallow_clone()).collect();
            let _ = opt.step(&mut g);
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
        println!(
            "round {round}: {n} parameters, {ms:.3} ms a step ({:.2} GB/s)",
            28.0 * n as f64 / (ms * 1e6)
        );
    }
}
