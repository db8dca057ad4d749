//! Adam (Kingma & Ba) with its state exposed, so that a checkpoint holds
//! the moments and `--resume` continues exactly where a run stopped.
//! Same update and defaults as `torch.optim.Adam`.
use tch::Tensor;

pub struct Adam {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// Steps taken (the bias corrections depend on it).
    pub step: i64,
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    /// Adam over named parameters (the names key the saved state).
    pub fn new(params: Vec<(String, Tensor)>, lr: f64) -> Self {
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Self {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            step: 0,
            params,
            m,
            v,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Scales the gradients so that their joint L2 norm is at most `max`
    /// (no host synchronisation); returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max: f64) -> Tensor {
        let _g = tch::no_grad_guard();
        let norms: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .map(|g| g.norm())
            .collect();
        if norms.is_empty() {
            return Tensor::from(0.0f32);
        }
        let total = Tensor::stack(&norms, 0).norm();
        let coef = ((&total + 1e-6).reciprocal() * max).clamp_max(1.0);
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.g_mul_(&coef);
            }
        }
        total
    }

    pub fn step(&mut self) {
        let _g = tch::no_grad_guard();
        self.step += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2 = 1.0 - b2.powi(self.step as i32);
        // p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps), folded into one addcdiv.
        let scale = -bc1 / (self.lr * bc2.sqrt());
        let shift = -self.eps * bc1 / self.lr;
        for (((_, p), m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = m.lerp_(&g, 1.0 - b1);
            let _ = v.g_mul_scalar_(b2).addcmul_(&g, &(&g * (1.0 - b2)));
            let denom = v.sqrt().multiply_scalar_(scale).g_add_scalar_(shift);
            let _ = p.addcdiv_(m, &denom);
        }
    }

    /// The optimiser's state as named tensors (`adam/m/<param>`, …).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("adam/step".to_string(), Tensor::from_slice(&[self.step]))];
        for (((n, _), m), v) in self.params.iter().zip(&self.m).zip(&self.v) {
            out.push((format!("adam/m/{n}"), m.shallow_clone()));
            out.push((format!("adam/v/{n}"), v.shallow_clone()));
        }
        out
    }

    /// Restores a state saved by [`Adam::state`]; returns the names missing.
    pub fn load_state(&mut self, named: &std::collections::HashMap<String, Tensor>) -> Vec<String> {
        let _g = tch::no_grad_guard();
        let mut missing = vec![];
        match named.get("adam/step") {
            Some(t) => self.step = t.int64_value(&[0]),
            None => missing.push("adam/step".into()),
        }
        for (((n, _), m), v) in self.params.iter().zip(&mut self.m).zip(&mut self.v) {
            for (key, dst) in [
                (format!("adam/m/{n}"), &mut *m),
                (format!("adam/v/{n}"), &mut *v),
            ] {
                match named.get(&key) {
                    Some(t) if t.size() == dst.size() => dst.copy_(t),
                    _ => missing.push(key),
                }
            }
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Against Adam written out in f64 for a quadratic.
    #[test]
    fn matches_the_update_rule() {
        let p = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
        let mut opt = Adam::new(vec![("p".into(), p.shallow_clone())], 0.1);
        let (mut m, mut v, mut x) = ([0.0f64; 2], [0.0f64; 2], [1.0f64, -2.0]);
        for t in 1..=5 {
            opt.zero_grad();
            // loss = Σ 3 x², gradient 6x.
            (p.square() * 3.0).sum(Kind::Double).backward();
            opt.step();
            for i in 0..2 {
                let g = 6.0 * x[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                x[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
            }
        }
        for i in 0..2 {
            let got = p.double_value(&[i as i64]);
            assert!((got - x[i]).abs() < 1e-12, "{got} vs {}", x[i]);
        }
    }

    #[test]
    fn clipping_bounds_the_norm() {
        let p = Tensor::zeros([4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = Adam::new(vec![("p".into(), p.shallow_clone())], 0.1);
        (&p * Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0]))
            .sum(Kind::Float)
            .backward();
        let before = opt.clip_grad_norm(1.0).double_value(&[]);
        assert!((before - 5.0).abs() < 1e-5);
        let after = p.grad().norm().double_value(&[]);
        assert!((after - 1.0).abs() < 1e-5, "{after}");
    }
}
