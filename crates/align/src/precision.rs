//! The number format of the alignment layer's large matrix products.
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

/// Number format of matrix products: the adversarial discriminator's, and
/// self-learning's similarity scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    F32,
    /// bfloat16 operands, float32 results where they matter (the
    /// discriminator's weights and updates, the map's gradient, the
    /// similarity scores compared by self-learning).
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

fn cpu_has_bf16() -> bool {
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
