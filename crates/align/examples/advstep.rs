use embedlab_align::adversarial::{Discriminator, Precision};
use std::time::Instant;
use tch::{Device, Kind, Tensor};
fn main() {
    tch::manual_seed(0);
    let dev = Device::Cpu;
    let mut d = Discriminator::new(50, std::env::var("H").map(|h| h.parse().unwrap()).unwrap_or(2048), 2, 0.1, dev);
    let x = Tensor::randn([64, 50], (Kind::Float, dev));
    let y = Tensor::rand([64], (Kind::Float, dev));
    let xm = Tensor::randn([32, 50], (Kind::Float, dev));
    let ym = Tensor::rand([32], (Kind::Float, dev));
    for p in [std::env::var("P").map(|v| if v == "f32" { Precision::F32 } else { Precision::Bf16 }).unwrap_or(Precision::Bf16)] {
        for _ in 0..20 { d.train_step(&x, &y, 1e-6, p); }
        let t = Instant::now();
        for _ in 0..200 { d.train_step(&x, &y, 1e-6, p); }
        let a = t.elapsed().as_secs_f64() / 200.0 * 1e3;
        let t = Instant::now();
        for _ in 0..200 { d.input_grad(&xm, &ym, 64, p); }
        let b = t.elapsed().as_secs_f64() / 200.0 * 1e3;
        println!("{p:?}: dis step {a:.2} ms, map grad {b:.2} ms, iteration {:.1} ms", 5.0 * a + b);
    }
}
