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
    allow_fused: bool,
}

struct FusedParams {
    b1: f32,
    b2: f32,
    step_size: f32,
    inv_sqrt_bc2: f32,
    eps: f32,
}

/// The update, element by element (written with iterators so that the
/// compiler vectorises it without bounds checks).
#[inline(always)]
fn adam_kernel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], hp: &FusedParams) {
    let (b1, b2) = (hp.b1, hp.b2);
    let (c1, c2) = (1.0 - b1, 1.0 - b2);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let mi = b1 * *m + c1 * g;
        let vi = b2 * *v + c2 * g * g;
        *m = mi;
        *v = vi;
        *p -= hp.step_size * mi / (vi.sqrt() * hp.inv_sqrt_bc2 + hp.eps);
    }
}

/// The same, compiled for AVX2 + FMA (8 floats a vector).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn adam_kernel_avx2(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    hp: &FusedParams,
) {
    adam_kernel(p, g, m, v, hp)
}

fn cpu_f32_contiguous(t: &Tensor) -> bool {
    t.device() == tch::Device::Cpu && t.kind() == tch::Kind::Float && t.is_contiguous()
}

/// Adam's update for one CPU float32 parameter in a single pass over
/// parameter, gradient and moments (libtorch's op-by-op update makes seven
/// passes and allocates two temporaries; on a 1M-parameter VAE that was 40%
/// of a training step). Returns false, doing nothing, when the tensors are
/// not contiguous CPU float32 (the caller then takes the op-by-op path).
fn fused_cpu_step(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, hp: &FusedParams) -> bool {
    if !(cpu_f32_contiguous(p)
        && cpu_f32_contiguous(g)
        && cpu_f32_contiguous(m)
        && cpu_f32_contiguous(v))
    {
        return false;
    }
    let n = p.numel();
    if g.numel() != n || m.numel() != n || v.numel() != n {
        return false;
    }
    // SAFETY: the four tensors are distinct, contiguous, CPU float32
    // buffers of n elements (checked above) that nothing else reads or
    // writes during the update: autograd is done with this step's graph and
    // the optimiser owns the moments.
    let (ps, gs, ms, vs) = unsafe {
        (
            std::slice::from_raw_parts_mut(p.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts(g.data_ptr() as *const f32, n),
            std::slice::from_raw_parts_mut(m.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts_mut(v.data_ptr() as *mut f32, n),
        )
    };
    let kernel = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { adam_kernel_avx2(p, g, m, v, hp) };
            return;
        }
        adam_kernel(p, g, m, v, hp);
    };
    const CHUNK: usize = 1 << 16;
    if n < 2 * CHUNK {
        kernel(ps, gs, ms, vs);
    } else {
        use rayon::prelude::*;
        ps.par_chunks_mut(CHUNK)
            .zip(gs.par_chunks(CHUNK))
            .zip(ms.par_chunks_mut(CHUNK))
            .zip(vs.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| kernel(p, g, m, v));
    }
    true
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
            allow_fused: true,
        }
    }

    /// Gradients of `loss` with respect to the parameters, as fresh tensors
    /// (autograd's functional interface: nothing is accumulated into
    /// `.grad`, so there is nothing to zero — like PyTorch's
    /// `zero_grad(set_to_none=True)`).
    pub fn gradients(&self, loss: &Tensor) -> Vec<Tensor> {
        let inputs: Vec<&Tensor> = self.params.iter().map(|(_, p)| p).collect();
        Tensor::run_backward(&[loss], &inputs, false, false)
    }

    /// Scales `grads` so that their joint L2 norm is at most `max` (no host
    /// synchronisation); returns the norm before clipping.
    pub fn clip_grad_norm(grads: &mut [Tensor], max: f64) -> Tensor {
        let _g = tch::no_grad_guard();
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        if norms.is_empty() {
            return Tensor::from(0.0f32);
        }
        let total = Tensor::stack(&norms, 0).norm();
        let coef = ((&total + 1e-6).reciprocal() * max).clamp_max(1.0);
        for g in grads.iter_mut() {
            let _ = g.g_mul_(&coef);
        }
        total
    }

    /// One Adam update with the given gradients (in parameter order).
    pub fn step(&mut self, grads: &[Tensor]) {
        let _g = tch::no_grad_guard();
        self.step += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2 = 1.0 - b2.powi(self.step as i32);
        // p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps), folded into one addcdiv.
        let scale = -bc1 / (self.lr * bc2.sqrt());
        let shift = -self.eps * bc1 / self.lr;
        let hp = FusedParams {
            b1: b1 as f32,
            b2: b2 as f32,
            step_size: (self.lr / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            eps: self.eps as f32,
        };
        for ((((_, p), m), v), g) in self
            .params
            .iter_mut()
            .zip(&mut self.m)
            .zip(&mut self.v)
            .zip(grads)
        {
            if !g.defined() {
                continue;
            }
            if self.allow_fused && fused_cpu_step(p, g, m, v, &hp) {
                continue;
            }
            let _ = m.lerp_(g, 1.0 - b1);
            let _ = v.g_mul_scalar_(b2).addcmul_(g, &(g * (1.0 - b2)));
            let denom = v.sqrt().multiply_scalar_(scale).g_add_scalar_(shift);
            let _ = p.addcdiv_(m, &denom);
        }
    }

    /// Use the op-by-op update even where the fused CPU kernel applies
    /// (tests compare the two).
    #[doc(hidden)]
    pub fn unfused(mut self) -> Self {
        self.allow_fused = false;
        self
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

    /// The fused CPU kernel and the op-by-op update agree on a real model
    /// (float32, a few hundred thousand parameters, several steps).
    #[test]
    fn fused_kernel_matches_the_op_by_op_update() {
        tch::manual_seed(0);
        let make = || {
            let p = Tensor::randn([300_000], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let q = Tensor::randn([17], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            (p, q)
        };
        let (p1, q1) = make();
        let (p2, q2) = (
            p1.detach().copy().set_requires_grad(true),
            q1.detach().copy().set_requires_grad(true),
        );
        let mut a = Adam::new(
            vec![
                ("p".into(), p1.shallow_clone()),
                ("q".into(), q1.shallow_clone()),
            ],
            0.01,
        );
        let mut b = Adam::new(
            vec![
                ("p".into(), p2.shallow_clone()),
                ("q".into(), q2.shallow_clone()),
            ],
            0.01,
        )
        .unfused();
        for _ in 0..5 {
            let ga =
                a.gradients(&((p1.sin() * 3.0).sum(Kind::Float) + q1.square().sum(Kind::Float)));
            let gb =
                b.gradients(&((p2.sin() * 3.0).sum(Kind::Float) + q2.square().sum(Kind::Float)));
            a.step(&ga);
            b.step(&gb);
        }
        let diff = (&p1 - &p2).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
        assert!((&q1 - &q2).abs().max().double_value(&[]) < 1e-5);
        assert!(!p1.equal(&p1.detach().zeros_like()));
    }

    /// Against Adam written out in f64 for a quadratic.
    #[test]
    fn matches_the_update_rule() {
        let p = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
        let mut opt = Adam::new(vec![("p".into(), p.shallow_clone())], 0.1);
        let (mut m, mut v, mut x) = ([0.0f64; 2], [0.0f64; 2], [1.0f64, -2.0]);
        for t in 1..=5 {
            // loss = Σ 3 x², gradient 6x.
            let g = opt.gradients(&(p.square() * 3.0).sum(Kind::Double));
            opt.step(&g);
            for i in 0..2 {
                let g = 6.0 * x[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                x[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
            }
        }
        for (i, want) in x.iter().enumerate() {
            let got = p.double_value(&[i as i64]);
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn clipping_bounds_the_norm() {
        let p = Tensor::zeros([4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let opt = Adam::new(vec![("p".into(), p.shallow_clone())], 0.1);
        let mut g =
            opt.gradients(&(&p * Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0])).sum(Kind::Float));
        let before = Adam::clip_grad_norm(&mut g, 1.0).double_value(&[]);
        assert!((before - 5.0).abs() < 1e-5);
        let after = g[0].norm().double_value(&[]);
        assert!((after - 1.0).abs() < 1e-5, "{after}");
    }
}
