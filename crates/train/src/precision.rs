//! Number formats: float32, or bfloat16 products on float32 weights.
//!
//! [`Precision`] is the alignment layer's format of its large matrix
//! products and the trainer's format of a model's training steps. With
//! [`Precision::Bf16`] the trainer builds each step's loss inside an
//! [`Autocast`] region: libtorch runs convolutions and matrix products in
//! bfloat16 on float32 weights (the weights, their gradients and the
//! optimizer state stay float32: the master copy), and the ops on its
//! float32 list (for the CPU: most losses and linear algebra, not
//! log-softmax) in float32. Models keep what must be exact — a flow's
//! log-determinants, a loss's reductions — in float32 by casting a layer's
//! output back (`Tensor::to_kind`) where it enters them.
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Number format of matrix products and convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    #[default]
    F32,
    /// bfloat16 operands, float32 results where they matter (weights and
    /// updates, losses, what the model keeps in float32).
    Bf16,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    /// bfloat16 where the hardware has fast bfloat16 products (a CUDA
    /// device, or an x86 CPU with AVX512-BF16 or AMX), float32 elsewhere.
    pub fn fastest(device: Device) -> Self {
        if device.is_cuda() || cpu_has_bf16() {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }
}

/// Whether this CPU has fast bfloat16 products (AVX512-BF16 or AMX).
pub fn cpu_has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("flags"))
                .take(1)
                .any(|l| {
                    l.split_whitespace()
                        .any(|f| f == "avx512_bf16" || f == "amx_bf16")
                })
        })
        .unwrap_or(false)
}

extern "C" {
    fn embedlab_autocast_enter(
        cuda: i32,
        enabled: i32,
        prev_dtype: *mut i32,
        err: *mut *mut std::ffi::c_char,
    ) -> i32;
    fn embedlab_autocast_exit(cuda: i32, was: i32, prev_dtype: i32);
    fn embedlab_autocast_enabled(cuda: i32) -> i32;
    fn embedlab_channels_last(
        x: *const std::ffi::c_void,
        err: *mut *mut std::ffi::c_char,
    ) -> *mut std::ffi::c_void;
    fn free(p: *mut std::ffi::c_void);
}

/// The message a shim call left in `err` (malloc'ed), freed.
///
/// # Safety
/// `err` is a NUL-terminated string from `strdup`, not used afterwards.
unsafe fn take_message(err: *mut std::ffi::c_char) -> String {
    let m = std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned();
    free(err as *mut std::ffi::c_void);
    m
}

/// A bfloat16 autocast region on one device, for the life of the value
/// (libtorch's state is per thread: the region covers what this thread
/// runs). Regions nest; leaving the outermost one drops the cached
/// bfloat16 copies of the weights.
pub struct Autocast {
    cuda: i32,
    was: i32,
    prev_dtype: i32,
}

impl Autocast {
    /// Enters a region on `device` when `precision` is bfloat16; None (no
    /// region) for float32.
    pub fn enter(precision: Precision, device: Device) -> crate::Result<Option<Self>> {
        if precision == Precision::F32 {
            return Ok(None);
        }
        Self::region(device, true).map(Some)
    }

    /// A float32 region inside a bfloat16 one (a flow's own linear maps,
    /// whose log-determinants must match them exactly); None outside one.
    pub fn suspend(device: Device) -> Option<Self> {
        if !Self::active(device) {
            return None;
        }
        Self::region(device, false).ok()
    }

    fn region(device: Device, enabled: bool) -> crate::Result<Self> {
        let cuda = i32::from(device.is_cuda());
        let mut prev_dtype = 0i32;
        let mut err: *mut std::ffi::c_char = std::ptr::null_mut();
        // SAFETY: the shim writes `prev_dtype` and, on failure, a malloc'ed
        // message into `err`, which is freed here.
        let was =
            unsafe { embedlab_autocast_enter(cuda, i32::from(enabled), &mut prev_dtype, &mut err) };
        if was < 0 {
            // SAFETY: the shim set `err` on failure.
            let msg = unsafe { take_message(err) };
            return Err(crate::TrainError::Invalid(format!(
                "bfloat16 autocast on {device:?}: {msg}"
            )));
        }
        Ok(Self {
            cuda,
            was,
            prev_dtype,
        })
    }

    /// Whether a region is active on `device` in this thread.
    pub fn active(device: Device) -> bool {
        // SAFETY: reads libtorch's thread-local state.
        unsafe { embedlab_autocast_enabled(i32::from(device.is_cuda())) != 0 }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: pairs with the enter call that made this value.
        unsafe { embedlab_autocast_exit(self.cuda, self.was, self.prev_dtype) }
    }
}

/// `x` in the channels-last memory format when it is 4-dimensional (the
/// same values and shape, the channels stored innermost: the layout of
/// oneDNN's fast convolutions, which a convolution follows when its
/// weight or input has it); other tensors as they are.
pub fn channels_last(x: &Tensor) -> crate::Result<Tensor> {
    if x.dim() != 4 {
        return Ok(x.shallow_clone());
    }
    let mut err: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: `x.as_ptr()` is a live at::Tensor for the call; the shim
    // returns a new heap at::Tensor that `from_ptr` owns, or null with a
    // malloc'ed message, freed here.
    unsafe {
        let p = embedlab_channels_last(x.as_ptr() as *const std::ffi::c_void, &mut err);
        if p.is_null() {
            let msg = take_message(err);
            return Err(crate::TrainError::Invalid(format!(
                "channels-last copy of a {:?} tensor: {msg}",
                x.size()
            )));
        }
        Ok(Tensor::from_ptr(p as *mut _))
    }
}

/// Every 4-dimensional variable of `vs` (convolution weights) restored in
/// the channels-last format, in place: the same variables, values and
/// names; checkpoints are written contiguous in the usual order, so the
/// files do not change.
pub fn variables_channels_last(vs: &tch::nn::VarStore) -> crate::Result<()> {
    let _g = tch::no_grad_guard();
    for (_, mut v) in vs.variables() {
        if v.dim() == 4 {
            let cl = channels_last(&v)?;
            v.set_data(&cl);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `x` is stored channels-last (and not also plainly contiguous).
    fn is_channels_last(x: &Tensor) -> bool {
        let s = x.size();
        x.dim() == 4 && s[1] > 1 && x.stride() == [s[1] * s[2] * s[3], 1, s[3] * s[1], s[1]]
    }

    #[test]
    fn a_region_runs_products_in_bf16_keeps_weights_f32_and_ends() {
        let w = Tensor::randn([8, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let x = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        assert!(!Autocast::active(Device::Cpu));
        let (y, l) = {
            let _a = Autocast::enter(Precision::Bf16, Device::Cpu).unwrap();
            assert!(Autocast::active(Device::Cpu));
            let y = x.matmul(&w);
            // The cross-entropy with logits is on libtorch's float32 list
            // for the CPU (log-softmax is not).
            let l = y.binary_cross_entropy_with_logits::<Tensor>(
                &y.detach().sigmoid().to_kind(Kind::Float),
                None,
                None,
                tch::Reduction::Mean,
            );
            assert_eq!(y.log_softmax(1, None::<Kind>).kind(), Kind::BFloat16);
            (y, l)
        };
        assert!(!Autocast::active(Device::Cpu));
        assert_eq!(y.kind(), Kind::BFloat16);
        assert_eq!(l.kind(), Kind::Float);
        // The product is the float32 one to bfloat16's precision.
        let exact = x.matmul(&w);
        let err = (y.to_kind(Kind::Float) - &exact)
            .abs()
            .max()
            .double_value(&[]);
        let scale = exact.abs().max().double_value(&[]);
        assert!(err <= scale * 2f64.powi(-7), "{err} vs {scale}");
        // The gradient reaches the float32 weight as float32.
        l.backward();
        assert_eq!(w.grad().kind(), Kind::Float);
        // Float32 enters no region; regions nest.
        assert!(Autocast::enter(Precision::F32, Device::Cpu)
            .unwrap()
            .is_none());
        let outer = Autocast::enter(Precision::Bf16, Device::Cpu).unwrap();
        {
            let _inner = Autocast::enter(Precision::Bf16, Device::Cpu).unwrap();
        }
        assert!(Autocast::active(Device::Cpu));
        // A suspended stretch computes in float32, then bfloat16 resumes.
        {
            let _off = Autocast::suspend(Device::Cpu).unwrap();
            assert_eq!(x.matmul(&w).kind(), Kind::Float);
        }
        assert_eq!(x.matmul(&w).kind(), Kind::BFloat16);
        drop(outer);
        assert!(!Autocast::active(Device::Cpu));
        assert!(Autocast::suspend(Device::Cpu).is_none());
    }

    #[test]
    fn channels_last_keeps_values_and_a_variable_stays_itself() {
        let x = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let cl = channels_last(&x).unwrap();
        assert!(is_channels_last(&cl) && !is_channels_last(&x));
        assert!(cl.equal(&x));
        assert_eq!(cl.stride(), [60, 1, 15, 3]);
        // Not 4-D: as it is.
        let v = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        assert_eq!(channels_last(&v).unwrap().stride(), v.stride());
        // A variable converted in place: same values, shared by the
        // handles taken before (an optimizer's), still trainable.
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let w = vs.root().randn("w", &[4, 3, 2, 2], 0.0, 1.0);
        let before = w.copy();
        variables_channels_last(&vs).unwrap();
        assert!(is_channels_last(&w) && w.equal(&before) && w.requires_grad());
        let y = Tensor::randn([1, 3, 5, 5], (Kind::Float, Device::Cpu)).conv2d(
            &w,
            None::<Tensor>,
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        );
        assert!(is_channels_last(&y), "{:?}", y.stride());
    }
}
