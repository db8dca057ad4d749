//! Linear and convolutional layers with optional spectral normalisation
//! (Miyato et al. 2018): the weight, reshaped to an out × rest matrix, is
//! divided by an estimate of its largest singular value σ from power
//! iteration. The iteration's vector `u` is a buffer of the variable store,
//! so it is checkpointed with the weights; it changes only when
//! [`Layer::power_iteration`] is called (once before each training step of
//! the model that owns the layer), so evaluation is frozen and repeatable.
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Linear,
    Conv { stride: i64, padding: i64 },
    ConvT { stride: i64, padding: i64 },
}

/// One affine layer: linear, convolution or transposed convolution.
pub struct Layer {
    pub w: Tensor,
    pub b: Tensor,
    op: Op,
    /// The power iteration's left singular vector (spectral norm only).
    u: Option<Tensor>,
}

fn uniform(p: &nn::Path, name: &str, dims: &[i64], fan_in: i64) -> Tensor {
    // libtorch's default: U(−1/√fan_in, 1/√fan_in) for weights and biases.
    let bound = 1.0 / (fan_in as f64).sqrt();
    p.var(
        name,
        dims,
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )
}

impl Layer {
    fn make(p: nn::Path, dims: &[i64], out: i64, fan_in: i64, op: Op, sn: bool) -> Self {
        let w = uniform(&p, "weight", dims, fan_in);
        let b = uniform(&p, "bias", &[out], fan_in);
        let u = sn.then(|| {
            let u = p.zeros_no_train("sn_u", &[out]);
            let _g = tch::no_grad_guard();
            let r = Tensor::randn([out], (Kind::Float, u.device()));
            let mut uu = u.shallow_clone();
            uu.copy_(&(&r / r.norm().clamp_min(1e-12)));
            u
        });
        Self { w, b, op, u }
    }
    /// `i` → `o` features.
    pub fn linear(p: nn::Path, i: i64, o: i64, sn: bool) -> Self {
        Self::make(p, &[o, i], o, i, Op::Linear, sn)
    }
    /// `i` → `o` channels, a k × k kernel.
    pub fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64, sn: bool) -> Self {
        Self::make(
            p,
            &[o, i, k, k],
            o,
            i * k * k,
            Op::Conv { stride, padding },
            sn,
        )
    }
    /// Transposed convolution, `i` → `o` channels.
    pub fn conv_t(
        p: nn::Path,
        i: i64,
        o: i64,
        k: i64,
        stride: i64,
        padding: i64,
        sn: bool,
    ) -> Self {
        // libtorch computes a transposed convolution's fan-in from dim 1.
        Self::make(
            p,
            &[i, o, k, k],
            o,
            o * k * k,
            Op::ConvT { stride, padding },
            sn,
        )
    }
    /// The weight as an out × rest matrix (the matrix whose σ is estimated).
    fn matrix(&self, w: &Tensor) -> Tensor {
        match self.op {
            Op::Linear => w.shallow_clone(),
            Op::Conv { .. } => w.flatten(1, -1),
            Op::ConvT { .. } => w.transpose(0, 1).flatten(1, -1),
        }
    }
    /// σ estimated from the stored `u`: uᵀ W v with v = Wᵀu / |Wᵀu| (u and
    /// v held constant, so gradients flow through W only).
    pub fn sigma(&self) -> Option<Tensor> {
        let u = self.u.as_ref()?;
        let m = self.matrix(&self.w);
        let v = {
            let _g = tch::no_grad_guard();
            let v = m.tr().mv(u);
            &v / v.norm().clamp_min(1e-12)
        };
        Some(u.dot(&m.mv(&v)))
    }
    /// `n` power-iteration steps, updating the stored `u` (no gradients).
    pub fn power_iteration(&self, n: usize) {
        let Some(u) = &self.u else { return };
        let _g = tch::no_grad_guard();
        let m = self.matrix(&self.w);
        let mut cur = u.copy();
        for _ in 0..n {
            let v = m.tr().mv(&cur);
            let v = &v / v.norm().clamp_min(1e-12);
            let nu = m.mv(&v);
            cur = &nu / nu.norm().clamp_min(1e-12);
        }
        let mut u = u.shallow_clone();
        u.copy_(&cur);
    }
    /// The weight used in the forward pass (W / σ with spectral norm).
    pub fn weight(&self) -> Tensor {
        match self.sigma() {
            Some(s) => &self.w / s,
            None => self.w.shallow_clone(),
        }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let w = self.weight();
        match self.op {
            Op::Linear => x.linear(&w, Some(&self.b)),
            Op::Conv { stride, padding } => x.conv2d(
                &w,
                Some(&self.b),
                [stride, stride],
                [padding, padding],
                [1, 1],
                1,
            ),
            Op::ConvT { stride, padding } => x.conv_transpose2d(
                &w,
                Some(&self.b),
                [stride, stride],
                [padding, padding],
                [0, 0],
                1,
                [1, 1],
            ),
        }
    }
}

/// Layer widths as "512-256".
pub fn widths(hidden: &[i64]) -> String {
    hidden
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

extern "C" {
    fn embedlab_leaky_relu(
        x: *const std::ffi::c_void,
        slope: f64,
        err: *mut *mut std::ffi::c_char,
    ) -> *mut std::ffi::c_void;
}

/// ATen's leaky ReLU with any slope (src/ops.cpp: tch's binding fixes it at
/// 0.01). One kernel forward and one backward, twice differentiable.
/// Composed replacements cost time on the GAN discriminators: max(x, 0.2x)
/// made a DCGAN epoch 1.45× slower (measured in PyTorch itself), PReLU's
/// double backward took 8% of a WGAN-GP profile.
pub fn leaky_relu(x: &Tensor, slope: f64) -> crate::Result<Tensor> {
    let mut err: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: `x.as_ptr()` is a live at::Tensor for the call; the shim
    // returns a new heap at::Tensor that `from_ptr` takes ownership of, or
    // null with a malloc'ed message.
    unsafe {
        let p = embedlab_leaky_relu(x.as_ptr() as *const std::ffi::c_void, slope, &mut err);
        if p.is_null() {
            let msg = std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned();
            libc_free(err as *mut std::ffi::c_void);
            return Err(crate::ModelError::Invalid(format!(
                "leaky ReLU of a {:?} tensor: {msg}",
                x.kind()
            )));
        }
        Ok(Tensor::from_ptr(p as *mut _))
    }
}

extern "C" {
    fn embedlab_vjp(
        out: *const std::ffi::c_void,
        input: *const std::ffi::c_void,
        v: *const std::ffi::c_void,
        create_graph: i32,
        err: *mut *mut std::ffi::c_char,
    ) -> *mut std::ffi::c_void;
}

/// vᵀ ∂out/∂input with `v` the gradient's seed (libtorch's grad_outputs,
/// which tch's `run_backward` lacks): v is a constant in the value, and
/// with `create_graph` the result is differentiable in v, the input and the
/// weights. The graph of `out` is kept for further products.
pub fn vjp(out: &Tensor, input: &Tensor, v: &Tensor, create_graph: bool) -> crate::Result<Tensor> {
    let mut err: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: as for `leaky_relu`: live at::Tensor pointers in, a new heap
    // at::Tensor (owned by the returned Tensor) or a malloc'ed message out.
    unsafe {
        let p = embedlab_vjp(
            out.as_ptr() as *const std::ffi::c_void,
            input.as_ptr() as *const std::ffi::c_void,
            v.as_ptr() as *const std::ffi::c_void,
            i32::from(create_graph),
            &mut err,
        );
        if p.is_null() {
            let msg = std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned();
            libc_free(err as *mut std::ffi::c_void);
            return Err(crate::ModelError::Invalid(format!(
                "vector–Jacobian product: {msg}"
            )));
        }
        Ok(Tensor::from_ptr(p as *mut _))
    }
}

extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut std::ffi::c_void);
}

/// A reduced-precision output (bfloat16 or half, from products in an
/// autocast region) in float32; any other tensor as it is (float32, or the
/// double precision of the gradient checks). What losses are built on.
pub fn full_precision(t: Tensor) -> Tensor {
    match t.kind() {
        tch::Kind::BFloat16 | tch::Kind::Half => t.to_kind(tch::Kind::Float),
        _ => t,
    }
}

/// Leaky ReLU with slope 0.2, the GAN discriminators' activation.
pub fn lrelu(x: &Tensor) -> crate::Result<Tensor> {
    leaky_relu(x, 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn sigma_converges_to_the_largest_singular_value() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let layers = [
            Layer::linear(vs.root() / "a", 7, 5, true),
            Layer::conv(vs.root() / "b", 3, 4, 3, 1, 1, true),
            Layer::conv_t(vs.root() / "c", 4, 2, 4, 2, 1, true),
        ];
        for l in &layers {
            let m = l.matrix(&l.w).to_kind(Kind::Double);
            let top = m.svd(true, false).1.double_value(&[0]);
            l.power_iteration(200);
            let s = l.sigma().unwrap().double_value(&[]);
            assert!((s - top).abs() < 1e-4 * top, "{s} vs {top}");
            // The normalised weight has spectral norm 1.
            let wn = l.matrix(&l.weight()).to_kind(Kind::Double);
            let n1 = wn.svd(true, false).1.double_value(&[0]);
            assert!((n1 - 1.0).abs() < 1e-4, "{n1}");
        }
        // u is a buffer: not trainable, but saved with the variables.
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(names.iter().any(|n| n == "a.sn_u"), "{names:?}");
        assert!(vs.trainable_variables().len() == 6);
    }

    #[test]
    fn lrelu_has_slope_one_fifth() {
        let x = Tensor::from_slice(&[-2.0f32, -0.5, 0.0, 3.0]);
        let y: Vec<f32> = Vec::try_from(&lrelu(&x).unwrap()).unwrap();
        for (a, b) in y.iter().zip([-0.4f32, -0.1, 0.0, 3.0]) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        // Its first and second derivatives (0.2 below zero, 1 above; the
        // gradient's own gradient reaches the upstream weights).
        let w = Tensor::from_slice(&[1.5f64]).set_requires_grad(true);
        let v = Tensor::from_slice(&[-2.0f64, 3.0]) * &w;
        let y = lrelu(&v).unwrap().sum(Kind::Double);
        let g = Tensor::run_backward(&[&y], &[&w], true, true)
            .pop()
            .unwrap();
        assert!((g.double_value(&[0]) - (-2.0 * 0.2 + 3.0)).abs() < 1e-12);
        let gg = Tensor::run_backward(&[g.square().sum(Kind::Double)], &[&w], false, false)
            .pop()
            .unwrap();
        assert!(
            gg.double_value(&[0]).abs() < 1e-12,
            "a piecewise-linear map: d²/dw² = 0"
        );
        // A tensor it cannot take is an error, not a crash.
        assert!(lrelu(&Tensor::from_slice(&[1i64, -2])).is_err());
    }

    #[test]
    fn layers_match_libtorch_modules_without_spectral_norm() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let c = Layer::conv(vs.root() / "c", 2, 3, 4, 2, 1, false);
        let t = Layer::conv_t(vs.root() / "t", 3, 2, 4, 2, 1, false);
        let x = Tensor::randn([2, 2, 8, 8], (Kind::Float, Device::Cpu));
        let y = c.forward(&x);
        assert_eq!(y.size(), [2, 3, 4, 4]);
        assert_eq!(t.forward(&y).size(), [2, 2, 8, 8]);
        // With σ frozen, evaluation does not move u.
        let vs2 = nn::VarStore::new(Device::Cpu);
        let l = Layer::linear(vs2.root() / "l", 4, 3, true);
        let u0 = l.u.as_ref().unwrap().copy();
        let _ = l.forward(&Tensor::randn([5, 4], (Kind::Float, Device::Cpu)));
        assert!(l.u.as_ref().unwrap().equal(&u0));
    }
}
