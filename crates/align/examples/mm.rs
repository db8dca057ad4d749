use std::time::Instant;
use tch::{Device, Kind, Tensor};
fn t(name: &str, mut f: impl FnMut()) {
    for _ in 0..10 { f(); }
    let s = Instant::now();
    for _ in 0..200 { f(); }
    println!("{name}: {:.3} ms", s.elapsed().as_secs_f64() / 200.0 * 1e3);
}
fn main() {
    let dev = Device::Cpu;
    println!("threads {}", tch::get_num_threads());
    for k in [Kind::Float, Kind::BFloat16] {
        let a = Tensor::randn([64, 2048], (k, dev));
        let mut w = Tensor::randn([2048, 2048], (k, dev));
        let g = Tensor::randn([64, 2048], (k, dev));
        t(&format!("{k:?} a@w"), || { let _ = a.matmul(&w); });
        t(&format!("{k:?} g@wT"), || { let _ = g.matmul(&w.tr()); });
        t(&format!("{k:?} aT@g"), || { let _ = a.tr().matmul(&g); });
        if k == Kind::Float { t("addmm_", || { let _ = w.addmm_(&a.tr(), &g); }); }
    }
    let w = Tensor::randn([2048, 2048], (Kind::Float, dev));
    t("cast", || { let _ = w.to_kind(Kind::BFloat16); });
}
