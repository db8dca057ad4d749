//! The optimizer of one parameter group: Adam (PyTorch's `Adam`, or `AdamW`
//! with decoupled weight decay) or SGD with momentum, with its state exposed
//! by name so that a checkpoint holds it and `--resume` continues exactly.
//!
//! On the CPU, Adam's update of a float32 parameter is one fused pass over
//! parameter, gradient and moments (libtorch's op-by-op update makes seven
//! passes and allocates two temporaries; on a 1M-parameter VAE that was 40%
//! of a training step), which also measures the gradient norm on the way.
//! Large parameters are split over libtorch's own OpenMP threads (src/omp.c),
//! never over a second thread pool, and the pass flushes denormals.
use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// Which update rule, with its own settings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Algorithm {
    /// Kingma & Ba; `decoupled` weight decay makes it AdamW (Loshchilov &
    /// Hutter), otherwise weight decay is an L2 term added to the gradient
    /// (PyTorch's `Adam(weight_decay=…)`).
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        #[serde(default)]
        decoupled: bool,
    },
    /// Plain SGD (momentum 0) or heavy-ball momentum (PyTorch's `SGD`).
    Sgd { momentum: f64 },
}

/// How the learning rate moves from epoch to epoch.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Cosine decay from the base rate to 0 over the run.
    Cosine,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        every: usize,
        gamma: f64,
    },
    /// MUSE's: multiply by `decay` after every epoch (not below `min_lr`),
    /// by `shrink` whenever the selection metric is worse than the best so
    /// far (from the second time on), and stop training once the rate is
    /// below `min_lr`.
    Plateau {
        decay: f64,
        shrink: f64,
        min_lr: f64,
    },
}

/// Settings of one optimizer group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OptimConfig {
    pub algorithm: Algorithm,
    pub lr: f64,
    pub schedule: Schedule,
    /// The learning rate rises linearly from 0 over this many epochs
    /// (fractional; 0: no warm-up).
    #[serde(default)]
    pub warmup_epochs: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip the group's joint gradient L2 norm to this.
    #[serde(default)]
    pub clip_norm: Option<f64>,
    /// Steps this group takes in each round (a critic's 5 per generator step).
    pub steps: usize,
    /// Keep an exponential moving average of the group's parameters with
    /// this decay (e.g. 0.999), used for validation and for the weights a
    /// run keeps (best.safetensors: sampling and evaluation); see
    /// [`Optimizer::swap_average`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
}

impl OptimConfig {
    /// Adam with PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8), one step a round.
    pub fn adam(lr: f64) -> Self {
        Self {
            algorithm: Algorithm::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                decoupled: false,
            },
            lr,
            schedule: Schedule::Constant,
            warmup_epochs: 0.0,
            weight_decay: 0.0,
            clip_norm: None,
            steps: 1,
            ema: None,
        }
    }
    /// Plain SGD, one step a round.
    pub fn sgd(lr: f64) -> Self {
        Self {
            algorithm: Algorithm::Sgd { momentum: 0.0 },
            ..Self::adam(lr)
        }
    }
    pub fn with_betas(mut self, b1: f64, b2: f64) -> Self {
        if let Algorithm::Adam { beta1, beta2, .. } = &mut self.algorithm {
            *beta1 = b1;
            *beta2 = b2;
        }
        self
    }
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }
    pub fn with_schedule(mut self, s: Schedule) -> Self {
        self.schedule = s;
        self
    }
    pub fn with_clip(mut self, c: Option<f64>) -> Self {
        self.clip_norm = c;
        self
    }
    pub fn with_ema(mut self, decay: Option<f64>) -> Self {
        self.ema = decay;
        self
    }

    /// Checks every number; `what` names the group in the message.
    pub fn check(&self, what: &str) -> Result<()> {
        let bad = |m: String| Err(TrainError::Invalid(format!("{what}: {m}")));
        let finite_pos = |v: f64| v.is_finite() && v > 0.0;
        if !finite_pos(self.lr) {
            return bad(format!(
                "learning rate {} must be a positive number",
                self.lr
            ));
        }
        if self.steps < 1 || self.steps > 1000 {
            return bad(format!(
                "steps per round {} must be in 1..=1000",
                self.steps
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight decay {} must be ≥ 0", self.weight_decay));
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return bad(format!("warm-up {} epochs must be ≥ 0", self.warmup_epochs));
        }
        if let Some(d) = self.ema {
            if !(d > 0.0 && d < 1.0) {
                return bad(format!(
                    "weight-average decay {d} must be in (0, 1), e.g. 0.999 (leave it out for no average)"
                ));
            }
        }
        if let Some(c) = self.clip_norm {
            if !finite_pos(c) {
                return bad(format!(
                    "gradient clipping norm {c} must be a positive number (leave it out for no clipping)"
                ));
            }
        }
        match self.algorithm {
            Algorithm::Adam {
                beta1, beta2, eps, ..
            } => {
                if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
                    return bad(format!("Adam betas ({beta1}, {beta2}) must be in [0, 1)"));
                }
                if !finite_pos(eps) {
                    return bad(format!("Adam epsilon {eps} must be positive"));
                }
            }
            Algorithm::Sgd { momentum } => {
                if !(0.0..1.0).contains(&momentum) {
                    return bad(format!("SGD momentum {momentum} must be in [0, 1)"));
                }
            }
        }
        match self.schedule {
            Schedule::Constant | Schedule::Cosine => {}
            Schedule::Step { every, gamma } => {
                if every < 1 {
                    return bad("the step schedule needs at least 1 epoch between decays".into());
                }
                if !finite_pos(gamma) || gamma > 1.0 {
                    return bad(format!("step decay factor {gamma} must be in (0, 1]"));
                }
            }
            Schedule::Plateau {
                decay,
                shrink,
                min_lr,
            } => {
                if !finite_pos(decay) || decay > 1.0 || !finite_pos(shrink) || shrink > 1.0 {
                    return bad(format!(
                        "plateau decay {decay} and shrink {shrink} must be in (0, 1]"
                    ));
                }
                if !(min_lr.is_finite() && min_lr >= 0.0) {
                    return bad(format!("minimum learning rate {min_lr} must be ≥ 0"));
                }
            }
        }
        Ok(())
    }

    /// The scheduled rate for `epoch` (0-based) of `epochs`, for the
    /// stateless schedules; `Plateau` keeps its rate in the trainer's state.
    pub fn scheduled_lr(&self, epoch: usize, epochs: usize) -> f64 {
        match self.schedule {
            Schedule::Constant | Schedule::Plateau { .. } => self.lr,
            Schedule::Cosine => {
                let t = epoch as f64 / epochs.max(1) as f64;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Step { every, gamma } => self.lr * gamma.powi((epoch / every.max(1)) as i32),
        }
    }

    /// The warm-up factor at fractional epoch `progress`.
    pub fn warmup_factor(&self, progress: f64) -> f64 {
        if self.warmup_epochs > 0.0 {
            ((progress + 1e-12) / self.warmup_epochs).min(1.0)
        } else {
            1.0
        }
    }
}

/// The optimizer of one named group of parameters.
pub struct Optimizer {
    pub group: String,
    pub cfg: OptimConfig,
    /// The rate of the next step (the trainer sets it from the schedule).
    pub lr: f64,
    /// Steps taken (Adam's bias corrections depend on it).
    pub step: i64,
    params: Vec<(String, Tensor)>,
    /// Per parameter: Adam's two moments, or SGD's momentum buffer.
    slots: Vec<Vec<Tensor>>,
    /// Per parameter, its moving average (empty without `cfg.ema`).
    average: Vec<Tensor>,
    allow_fused: bool,
}

struct FusedAdam {
    b1: f32,
    b2: f32,
    step_size: f32,
    inv_sqrt_bc2: f32,
    eps: f32,
    /// L2 weight decay added to the gradient.
    l2: f32,
    /// Decoupled weight decay: p ← p·(1 − lr·wd) first.
    shrink: f32,
}

/// One element's update; returns g² (of the raw gradient).
#[inline(always)]
fn adam_element(p: &mut f32, g: f32, m: &mut f32, v: &mut f32, hp: &FusedAdam) -> f32 {
    let sq = g * g;
    let pv = *p * hp.shrink;
    let g = g + hp.l2 * pv;
    let mi = hp.b1 * *m + (1.0 - hp.b1) * g;
    let vi = hp.b2 * *v + (1.0 - hp.b2) * g * g;
    *m = mi;
    *v = vi;
    *p = pv - hp.step_size * mi / (vi.sqrt() * hp.inv_sqrt_bc2 + hp.eps);
    sq
}

/// Elements a block of the kernel updates side by side (two AVX-512 or
/// four AVX2 vectors): Σ g² is kept lane by lane, so that the reduction
/// does not serialise the loop (a float sum cannot be reordered by the
/// compiler, and a single running sum would keep the loop scalar).
const LANES: usize = 32;

/// The update over slices; returns Σ g² of the raw gradient.
#[inline(always)]
fn adam_kernel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], hp: &FusedAdam) -> f64 {
    let n = p.len().min(g.len()).min(m.len()).min(v.len());
    let whole = n / LANES * LANES;
    let mut acc = [0.0f32; LANES];
    let mut total = 0.0f64;
    for (((pc, gc), mc), vc) in p[..whole]
        .chunks_exact_mut(LANES)
        .zip(g[..whole].chunks_exact(LANES))
        .zip(m[..whole].chunks_exact_mut(LANES))
        .zip(v[..whole].chunks_exact_mut(LANES))
    {
        for j in 0..LANES {
            acc[j] += adam_element(&mut pc[j], gc[j], &mut mc[j], &mut vc[j], hp);
        }
    }
    // Lanes summed in f64 (each lane holds at most n/32 terms: plenty for
    // a norm that is logged).
    total += acc.iter().map(|&a| a as f64).sum::<f64>();
    for i in whole..n {
        total += adam_element(&mut p[i], g[i], &mut m[i], &mut v[i], hp) as f64;
    }
    total
}

/// The same, compiled for AVX-512 (16 floats a vector).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn adam_kernel_avx512(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    hp: &FusedAdam,
) -> f64 {
    adam_kernel(p, g, m, v, hp)
}

/// The same, compiled for AVX2 + FMA (8 floats a vector).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn adam_kernel_avx2(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    hp: &FusedAdam,
) -> f64 {
    adam_kernel(p, g, m, v, hp)
}

fn cpu_f32_contiguous(t: &Tensor) -> bool {
    t.device() == tch::Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()
}

mod omp {
    use std::ffi::c_void;
    pub type PieceFn = extern "C" fn(*mut c_void, i64, i64) -> f64;
    extern "C" {
        /// Runs `f` on one contiguous piece of [0, n) per thread of
        /// libtorch's OpenMP team (src/omp.c); returns the sum of results.
        pub fn embedlab_omp_pieces(n: i64, align: i64, f: PieceFn, ctx: *mut c_void) -> f64;
    }
}

/// Runs `f(begin, end)` on one contiguous piece of `0..n` per thread of
/// libtorch's own OpenMP team (piece boundaries a multiple of `align`), so
/// work written in Rust between libtorch's operations does not fight
/// libtorch's idle, spinning workers for the cores; in the calling thread
/// alone when one thread would do.
pub fn omp_pieces<F: Fn(usize, usize) + Sync>(n: usize, align: usize, f: &F) {
    extern "C" fn piece<F: Fn(usize, usize) + Sync>(
        ctx: *mut std::ffi::c_void,
        begin: i64,
        end: i64,
    ) -> f64 {
        // SAFETY: `ctx` is the `&F` of `omp_pieces`, alive for the whole
        // call of `embedlab_omp_pieces`; `F: Sync`, so calling it from
        // several threads at once is allowed.
        let f = unsafe { &*(ctx as *const F) };
        f(begin as usize, end as usize);
        0.0
    }
    // SAFETY: the shim calls `piece::<F>` with `ctx` on disjoint pieces of
    // 0..n and returns once every piece is done.
    unsafe {
        omp::embedlab_omp_pieces(
            n as i64,
            align.max(1) as i64,
            piece::<F>,
            f as *const F as *mut std::ffi::c_void,
        );
    }
}

/// Parameters smaller than this are updated on the calling thread alone.
const PARALLEL_MIN: usize = 1 << 16;

/// One fused update's buffers, shared by the pieces that run it.
struct AdamJob<'a> {
    p: *mut f32,
    g: *const f32,
    m: *mut f32,
    v: *mut f32,
    hp: &'a FusedAdam,
}

/// Flush-to-zero and denormals-are-zero for the current thread, for the
/// life of the value. Gradients of weights that barely move make Adam's
/// second moments denormal as training goes on; arithmetic on denormals
/// takes a slow path on x86 (measured: the Adam step of a Fashion-MNIST
/// VAE went from 1.4 to 4.9 s an epoch over six epochs). Flushing them
/// changes updates by less than 1e-30 of the learning rate.
struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl FlushDenormals {
    fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: reading and writing MXCSR only changes this thread's
            // floating-point modes; the old value is restored on drop.
            #[allow(deprecated)]
            let saved = unsafe { std::arch::x86_64::_mm_getcsr() };
            #[allow(deprecated)]
            unsafe {
                std::arch::x86_64::_mm_setcsr(saved | 0x8040)
            };
            Self { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self {}
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: restores the mode read in `new`.
        #[allow(deprecated)]
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.saved)
        };
    }
}

fn run_kernel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], hp: &FusedAdam) -> f64 {
    let _ftz = FlushDenormals::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (and so AVX2 and FMA).
            return unsafe { adam_kernel_avx512(p, g, m, v, hp) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { adam_kernel_avx2(p, g, m, v, hp) };
        }
    }
    adam_kernel(p, g, m, v, hp)
}

extern "C" fn adam_piece(ctx: *mut std::ffi::c_void, begin: i64, end: i64) -> f64 {
    // SAFETY: `ctx` is the AdamJob of `fused_cpu_adam`, alive for the whole
    // call of `embedlab_omp_pieces`; the pieces are disjoint ranges of
    // buffers of at least `end` elements, so no two threads touch the same
    // element.
    unsafe {
        let job = &*(ctx as *const AdamJob);
        let (b, len) = (begin as usize, (end - begin) as usize);
        run_kernel(
            std::slice::from_raw_parts_mut(job.p.add(b), len),
            std::slice::from_raw_parts(job.g.add(b), len),
            std::slice::from_raw_parts_mut(job.m.add(b), len),
            std::slice::from_raw_parts_mut(job.v.add(b), len),
            job.hp,
        )
    }
}

/// Adam's update of one CPU float32 parameter in one pass, on libtorch's
/// OpenMP threads for large parameters; returns Σ g², or None, doing
/// nothing, when the tensors are not contiguous CPU float32 (the caller
/// then takes the op-by-op path).
fn fused_cpu_adam(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, hp: &FusedAdam) -> Option<f64> {
    if !(cpu_f32_contiguous(p)
        && cpu_f32_contiguous(g)
        && cpu_f32_contiguous(m)
        && cpu_f32_contiguous(v))
    {
        return None;
    }
    let n = p.numel();
    if g.numel() != n || m.numel() != n || v.numel() != n {
        return None;
    }
    let job = AdamJob {
        p: p.data_ptr() as *mut f32,
        g: g.data_ptr() as *const f32,
        m: m.data_ptr() as *mut f32,
        v: v.data_ptr() as *mut f32,
        hp,
    };
    // SAFETY: the four tensors are distinct, contiguous, CPU float32
    // buffers of n elements (checked above) that nothing else reads or
    // writes during the update: autograd is done with this step's graph
    // (gradients are fresh tensors from `gradients`) and the optimizer owns
    // the moments.
    if n < PARALLEL_MIN {
        return Some(adam_piece(&job as *const AdamJob as *mut _, 0, n as i64));
    }
    Some(unsafe {
        omp::embedlab_omp_pieces(
            n as i64,
            1024,
            adam_piece,
            &job as *const AdamJob as *mut std::ffi::c_void,
        )
    })
}

impl Optimizer {
    /// An optimizer over named parameters (the names key the saved state).
    pub fn new(group: &str, params: Vec<(String, Tensor)>, cfg: &OptimConfig) -> Self {
        let slots = params
            .iter()
            .map(|(_, p)| match cfg.algorithm {
                Algorithm::Adam { .. } => vec![p.zeros_like(), p.zeros_like()],
                Algorithm::Sgd { momentum } if momentum > 0.0 => vec![p.zeros_like()],
                Algorithm::Sgd { .. } => vec![],
            })
            .collect();
        let average = match cfg.ema {
            Some(_) => params.iter().map(|(_, p)| p.detach().copy()).collect(),
            None => vec![],
        };
        Self {
            group: group.to_string(),
            cfg: cfg.clone(),
            lr: cfg.lr,
            step: 0,
            params,
            slots,
            average,
            allow_fused: true,
        }
    }

    /// The decay of the moving average at step `t` (1-based): the
    /// configured decay, or less early on — min(d, (1 + t) / (10 + t)), the
    /// warm-up of TensorFlow's `ExponentialMovingAverage(num_updates=…)`,
    /// so that a short run's average is not dominated by its first steps.
    pub fn average_decay(d: f64, t: i64) -> f64 {
        d.min((1 + t) as f64 / (10 + t) as f64)
    }

    /// After a step: the average starts at the weights after the first
    /// step, then a ← d_t · a + (1 − d_t) · θ.
    fn update_average(&mut self) {
        let Some(d) = self.cfg.ema else { return };
        let _g = tch::no_grad_guard();
        let d = Self::average_decay(d, self.step);
        for ((_, p), a) in self.params.iter().zip(&mut self.average) {
            if self.step == 1 {
                a.copy_(p);
            } else {
                let _ = a.lerp_(p, 1.0 - d);
            }
        }
    }

    /// Whether the group keeps a moving average that holds at least one step.
    pub fn has_average(&self) -> bool {
        self.cfg.ema.is_some() && self.step > 0
    }

    /// Exchanges the parameters' values with their moving averages (in
    /// place: the model's variables hold the average after one call, and
    /// their own values again after a second). Does nothing for a group
    /// without an average or before its first step.
    pub fn swap_average(&mut self) {
        if !self.has_average() {
            return;
        }
        let _g = tch::no_grad_guard();
        for ((_, p), a) in self.params.iter_mut().zip(&mut self.average) {
            let keep = p.detach().copy();
            p.copy_(a);
            a.copy_(&keep);
        }
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Gradients of `loss` with respect to the group's parameters, as fresh
    /// tensors (autograd's functional interface: nothing is accumulated into
    /// `.grad`, so there is nothing to zero, and the other groups'
    /// parameters receive nothing). A parameter the loss does not reach
    /// gets an undefined tensor and is left alone by [`Self::step`].
    pub fn gradients(&self, loss: &Tensor) -> Result<Vec<Tensor>> {
        let inputs: Vec<&Tensor> = self.params.iter().map(|(_, p)| p).collect();
        Tensor::f_run_backward(&[loss], &inputs, false, false).map_err(|e| {
            TrainError::Invalid(format!(
                "group `{}`: cannot differentiate the loss: {e}",
                self.group
            ))
        })
    }

    /// The gradients' joint L2 norm (no host synchronisation).
    pub fn grad_norm(grads: &[Tensor]) -> Tensor {
        let _g = tch::no_grad_guard();
        let norms: Vec<Tensor> = grads
            .iter()
            .filter(|g| g.defined())
            .map(|g| g.norm().to_kind(Kind::Double))
            .collect();
        if norms.is_empty() {
            return Tensor::from(0.0f64);
        }
        Tensor::stack(&norms, 0).norm()
    }

    /// Scales `grads` so that their joint L2 norm is at most `max` (no host
    /// synchronisation); returns the norm before clipping.
    pub fn clip_grad_norm(grads: &mut [Tensor], max: f64) -> Tensor {
        let total = Self::grad_norm(grads);
        let _g = tch::no_grad_guard();
        let coef = ((&total + 1e-6).reciprocal() * max).clamp_max(1.0);
        for g in grads.iter_mut().filter(|g| g.defined()) {
            let _ = g.g_mul_(&coef.to_kind(g.kind()));
        }
        total
    }

    /// One update with `grads` (in parameter order), clipped first when the
    /// group clips. Returns the gradient norm before clipping, as a scalar
    /// tensor (read it when convenient: reading synchronises).
    pub fn step(&mut self, grads: &mut [Tensor]) -> Tensor {
        let norm = self.cfg.clip_norm.map(|c| Self::clip_grad_norm(grads, c));
        let _g = tch::no_grad_guard();
        self.step += 1;
        let (lr, wd) = (self.lr, self.cfg.weight_decay);
        let mut fused_sq = 0.0f64;
        let mut fused_all = true;
        match self.cfg.algorithm {
            Algorithm::Adam {
                beta1: b1,
                beta2: b2,
                eps,
                decoupled,
            } => {
                let bc1 = 1.0 - b1.powi(self.step as i32);
                let bc2 = 1.0 - b2.powi(self.step as i32);
                let hp = FusedAdam {
                    b1: b1 as f32,
                    b2: b2 as f32,
                    step_size: (lr / bc1) as f32,
                    inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
                    eps: eps as f32,
                    l2: if decoupled { 0.0 } else { wd as f32 },
                    shrink: if decoupled {
                        (1.0 - lr * wd) as f32
                    } else {
                        1.0
                    },
                };
                // p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps), folded into one addcdiv.
                let scale = -bc1 / (lr * bc2.sqrt());
                let shift = -eps * bc1 / lr;
                for (((_, p), s), g) in self
                    .params
                    .iter_mut()
                    .zip(&mut self.slots)
                    .zip(grads.iter())
                {
                    if !g.defined() {
                        continue;
                    }
                    let (m, v) = (&s[0], &s[1]);
                    if self.allow_fused {
                        if let Some(sq) = fused_cpu_adam(p, g, m, v, &hp) {
                            fused_sq += sq;
                            continue;
                        }
                    }
                    fused_all = false;
                    if decoupled && wd > 0.0 {
                        let _ = p.g_mul_scalar_(1.0 - lr * wd);
                    }
                    let g = if !decoupled && wd > 0.0 {
                        g + &*p * wd
                    } else {
                        g.shallow_clone()
                    };
                    let (mut m, mut v) = (m.shallow_clone(), v.shallow_clone());
                    let _ = m.lerp_(&g, 1.0 - b1);
                    let _ = v.g_mul_scalar_(b2).addcmul_(&g, &(&g * (1.0 - b2)));
                    let denom = v.sqrt().multiply_scalar_(scale).g_add_scalar_(shift);
                    let _ = p.addcdiv_(&m, &denom);
                }
            }
            Algorithm::Sgd { momentum } => {
                fused_all = false;
                for (((_, p), s), g) in self
                    .params
                    .iter_mut()
                    .zip(&mut self.slots)
                    .zip(grads.iter())
                {
                    if !g.defined() {
                        continue;
                    }
                    let mut d = if wd > 0.0 {
                        g + &*p * wd
                    } else {
                        g.shallow_clone()
                    };
                    if momentum > 0.0 {
                        let buf = &mut s[0];
                        if self.step == 1 {
                            buf.copy_(&d);
                        } else {
                            let _ = buf.g_mul_scalar_(momentum).g_add_(&d);
                        }
                        d = buf.shallow_clone();
                    }
                    let _ = p.g_add_(&(d * (-lr)));
                }
            }
        }
        self.update_average();
        match norm {
            Some(n) => n,
            None if fused_all => Tensor::from(fused_sq.sqrt()),
            None => Self::grad_norm(grads),
        }
    }

    /// Use the op-by-op update even where the fused CPU kernel applies
    /// (tests compare the two).
    #[doc(hidden)]
    pub fn unfused(mut self) -> Self {
        self.allow_fused = false;
        self
    }

    fn slot_names(&self) -> &'static [&'static str] {
        match self.cfg.algorithm {
            Algorithm::Adam { .. } => &["m", "v"],
            Algorithm::Sgd { momentum } if momentum > 0.0 => &["momentum"],
            Algorithm::Sgd { .. } => &[],
        }
    }

    /// The optimizer's state as named tensors (`opt/<group>/step`,
    /// `opt/<group>/m/<param>`, …).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let g = &self.group;
        let mut out = vec![(format!("opt/{g}/step"), Tensor::from_slice(&[self.step]))];
        let names = self.slot_names();
        for ((n, _), s) in self.params.iter().zip(&self.slots) {
            for (slot, t) in names.iter().zip(s) {
                out.push((format!("opt/{g}/{slot}/{n}"), t.shallow_clone()));
            }
        }
        for ((n, _), a) in self.params.iter().zip(&self.average) {
            out.push((format!("opt/{g}/ema/{n}"), a.shallow_clone()));
        }
        out
    }

    /// Restores a state saved by [`Self::state`]; returns the names missing
    /// or of the wrong shape.
    pub fn load_state(&mut self, named: &HashMap<String, Tensor>) -> Vec<String> {
        let _g = tch::no_grad_guard();
        let g = self.group.clone();
        let mut missing = vec![];
        match named.get(&format!("opt/{g}/step")) {
            Some(t) => self.step = t.int64_value(&[0]),
            None => missing.push(format!("opt/{g}/step")),
        }
        let names = self.slot_names();
        for ((n, _), s) in self.params.iter().zip(&mut self.slots) {
            for (slot, dst) in names.iter().zip(s.iter_mut()) {
                let key = format!("opt/{g}/{slot}/{n}");
                match named.get(&key) {
                    Some(t) if t.size() == dst.size() => dst.copy_(t),
                    _ => missing.push(key),
                }
            }
        }
        for ((n, _), dst) in self.params.iter().zip(&mut self.average) {
            let key = format!("opt/{g}/ema/{n}");
            match named.get(&key) {
                Some(t) if t.size() == dst.size() => dst.copy_(t),
                _ => missing.push(key),
            }
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn named(ts: &[&Tensor]) -> Vec<(String, Tensor)> {
        ts.iter()
            .enumerate()
            .map(|(i, t)| (format!("p{i}"), t.shallow_clone()))
            .collect()
    }

    /// The fused CPU kernel and the op-by-op update agree on a large
    /// parameter (float32, several steps), with and without weight decay.
    #[test]
    fn fused_kernel_matches_the_op_by_op_update() {
        let _one = embedlab_testkit::seeded();
        for (wd, decoupled) in [(0.0, false), (0.01, false), (0.01, true)] {
            tch::manual_seed(0);
            let p1 = Tensor::randn([300_000], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let q1 = Tensor::randn([17], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let p2 = p1.detach().copy().set_requires_grad(true);
            let q2 = q1.detach().copy().set_requires_grad(true);
            let mut cfg = OptimConfig::adam(0.01);
            cfg.weight_decay = wd;
            if let Algorithm::Adam { decoupled: d, .. } = &mut cfg.algorithm {
                *d = decoupled;
            }
            let mut a = Optimizer::new("g", named(&[&p1, &q1]), &cfg);
            let mut b = Optimizer::new("g", named(&[&p2, &q2]), &cfg).unfused();
            for _ in 0..5 {
                let la = (p1.sin() * 3.0).sum(Kind::Float) + q1.square().sum(Kind::Float);
                let lb = (p2.sin() * 3.0).sum(Kind::Float) + q2.square().sum(Kind::Float);
                let mut ga = a.gradients(&la).unwrap();
                let mut gb = b.gradients(&lb).unwrap();
                let na = a.step(&mut ga).double_value(&[]);
                let nb = b.step(&mut gb).double_value(&[]);
                assert!((na - nb).abs() < 1e-3 * nb, "gradient norms {na} vs {nb}");
            }
            let diff = (&p1 - &p2).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "wd {wd} decoupled {decoupled}: {diff}");
            assert!((&q1 - &q2).abs().max().double_value(&[]) < 1e-5);
        }
    }

    /// Against Adam written out in f64 for a quadratic, with L2 decay.
    #[test]
    fn adam_matches_the_update_rule() {
        let p = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
        let mut cfg = OptimConfig::adam(0.1);
        cfg.weight_decay = 0.05;
        let mut opt = Optimizer::new("g", vec![("p".into(), p.shallow_clone())], &cfg);
        let (mut m, mut v, mut x) = ([0.0f64; 2], [0.0f64; 2], [1.0f64, -2.0]);
        for t in 1..=5 {
            // loss = Σ 3 x², gradient 6x (+ 0.05 x from the decay).
            let mut g = opt
                .gradients(&(&p.square() * 3.0).sum(Kind::Double))
                .unwrap();
            let _ = opt.step(&mut g);
            for i in 0..2 {
                let g = 6.0 * x[i] + 0.05 * x[i];
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

    /// SGD with momentum against PyTorch's rule (the buffer starts as the
    /// first gradient).
    #[test]
    fn sgd_momentum_matches_the_update_rule() {
        let p = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
        let mut cfg = OptimConfig::sgd(0.1);
        cfg.algorithm = Algorithm::Sgd { momentum: 0.9 };
        let mut opt = Optimizer::new("g", vec![("p".into(), p.shallow_clone())], &cfg);
        let (mut b, mut x) = ([0.0f64; 2], [1.0f64, -2.0]);
        for t in 1..=4 {
            let mut g = opt.gradients(&p.square().sum(Kind::Double)).unwrap();
            let _ = opt.step(&mut g);
            for i in 0..2 {
                let g = 2.0 * x[i];
                b[i] = if t == 1 { g } else { 0.9 * b[i] + g };
                x[i] -= 0.1 * b[i];
            }
        }
        for (i, want) in x.iter().enumerate() {
            assert!((p.double_value(&[i as i64]) - want).abs() < 1e-12);
        }
    }

    #[test]
    fn clipping_bounds_the_norm_and_step_reports_it() {
        let p = Tensor::zeros([4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let opt = Optimizer::new(
            "g",
            vec![("p".into(), p.shallow_clone())],
            &OptimConfig::adam(0.1),
        );
        let loss = (&p * Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0])).sum(Kind::Float);
        let mut g = opt.gradients(&loss).unwrap();
        let before = Optimizer::clip_grad_norm(&mut g, 1.0).double_value(&[]);
        assert!((before - 5.0).abs() < 1e-5);
        let after = g[0].norm().double_value(&[]);
        assert!((after - 1.0).abs() < 1e-5, "{after}");
    }

    #[test]
    fn state_round_trips_and_names_what_is_missing() {
        let p = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut a = Optimizer::new(
            "critic",
            vec![("w".into(), p.shallow_clone())],
            &OptimConfig::adam(0.1),
        );
        let mut g = a.gradients(&p.square().sum(Kind::Float)).unwrap();
        let _ = a.step(&mut g);
        let saved: HashMap<String, Tensor> =
            a.state().into_iter().map(|(n, t)| (n, t.copy())).collect();
        assert!(saved.contains_key("opt/critic/m/w") && saved.contains_key("opt/critic/step"));
        let mut b = Optimizer::new(
            "critic",
            vec![("w".into(), p.shallow_clone())],
            &OptimConfig::adam(0.1),
        );
        assert!(b.load_state(&saved).is_empty());
        assert_eq!(b.step, 1);
        let mut c = Optimizer::new(
            "generator",
            vec![("w".into(), p.shallow_clone())],
            &OptimConfig::adam(0.1),
        );
        let missing = c.load_state(&saved);
        assert!(
            missing.contains(&"opt/generator/m/w".to_string()),
            "{missing:?}"
        );
    }

    /// SGD on sum(p) moves p by −lr a step (θ_t = θ_0 − t·lr): the average
    /// against the rule written out, its state saved and restored, and the
    /// swap exchanging values both ways.
    #[test]
    fn the_weight_average_follows_its_rule_and_is_saved_and_swapped() {
        let p = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
        let cfg = OptimConfig::sgd(0.1).with_ema(Some(0.5));
        let mut opt = Optimizer::new("g", vec![("p".into(), p.shallow_clone())], &cfg);
        assert!(!opt.has_average());
        let theta = |t: i64| [1.0 - 0.1 * t as f64, -2.0 - 0.1 * t as f64];
        let mut want = [0.0f64; 2];
        for t in 1..=6i64 {
            let mut g = opt.gradients(&p.sum(Kind::Double)).unwrap();
            let _ = opt.step(&mut g);
            let d = 0.5f64.min((1 + t) as f64 / (10 + t) as f64);
            for (w, th) in want.iter_mut().zip(theta(t)) {
                *w = if t == 1 { th } else { d * *w + (1.0 - d) * th };
            }
            let got: Vec<f64> = Vec::try_from(&opt.average[0]).unwrap();
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "step {t}: {got:?} vs {want:?}");
            }
        }
        assert_eq!(Optimizer::average_decay(0.999, 1), 2.0 / 11.0);
        assert_eq!(Optimizer::average_decay(0.999, 100_000), 0.999);
        // Saved and restored with the rest of the state.
        let saved: HashMap<String, Tensor> = opt
            .state()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        assert!(saved.contains_key("opt/g/ema/p"));
        let q = Tensor::zeros([2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let mut back = Optimizer::new("g", vec![("p".into(), q.shallow_clone())], &cfg);
        assert!(back.load_state(&saved).is_empty());
        assert!(back.average[0].equal(&opt.average[0]));
        let no_average: HashMap<String, Tensor> = opt
            .state()
            .into_iter()
            .filter(|(n, _)| n != "opt/g/ema/p")
            .collect();
        let mut c = Optimizer::new("g", vec![("p".into(), q.shallow_clone())], &cfg);
        assert_eq!(c.load_state(&no_average), ["opt/g/ema/p"]);
        // The swap: the variables hold the average, then their own values.
        let own: Vec<f64> = Vec::try_from(&p.detach()).unwrap();
        let average = opt.average[0].copy();
        opt.swap_average();
        assert!(p.detach().equal(&average));
        opt.swap_average();
        assert_eq!(Vec::<f64>::try_from(&p.detach()).unwrap(), own);
        // Out of range is refused by name.
        let e = OptimConfig::adam(1e-3)
            .with_ema(Some(1.0))
            .check("generator")
            .unwrap_err()
            .to_string();
        assert!(e.contains("generator: weight-average decay 1"), "{e}");
    }

    #[test]
    fn impossible_settings_are_refused_by_name() {
        let mut c = OptimConfig::adam(0.0);
        assert!(c
            .check("critic")
            .unwrap_err()
            .to_string()
            .contains("critic: learning rate 0"));
        c.lr = 1e-3;
        c.clip_norm = Some(0.0);
        assert!(c.check("g").unwrap_err().to_string().contains("clipping"));
        c.clip_norm = None;
        c.steps = 0;
        assert!(c.check("g").is_err());
        c.steps = 1;
        c.lr = f64::NAN;
        assert!(c.check("g").is_err());
        assert!(OptimConfig::adam(1e-3)
            .with_betas(1.0, 0.9)
            .check("g")
            .is_err());
    }
}
