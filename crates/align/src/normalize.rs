//! Embedding normalisations and their chains (`renorm,center,renorm`).
use crate::error::{AlignError, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// One normalisation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormStep {
    /// Scale each vector to unit length (`unit`, `renorm`).
    Unit,
    /// Subtract the mean vector (`center`).
    Center,
    /// Standardise each dimension to zero mean and unit variance (`unitdim`).
    UnitDim,
}

/// A chain of steps applied left to right; empty means none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Normalization(pub Vec<NormStep>);

impl std::str::FromStr for Normalization {
    type Err = AlignError;
    fn from_str(s: &str) -> Result<Self> {
        let mut steps = Vec::new();
        for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            steps.push(match t {
                "unit" | "renorm" => NormStep::Unit,
                "center" | "centre" => NormStep::Center,
                "unitdim" => NormStep::UnitDim,
                "none" => continue,
                _ => {
                    return Err(AlignError::Invalid(format!(
                        "unknown normalisation '{t}' (unit|renorm, center, unitdim, none)"
                    )))
                }
            });
        }
        Ok(Self(steps))
    }
}

impl std::fmt::Display for Normalization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return write!(f, "none");
        }
        let names: Vec<&str> = self
            .0
            .iter()
            .map(|s| match s {
                NormStep::Unit => "renorm",
                NormStep::Center => "center",
                NormStep::UnitDim => "unitdim",
            })
            .collect();
        write!(f, "{}", names.join(","))
    }
}

/// Rows scaled to unit length (zero rows stay zero).
pub fn unit_rows(x: &Tensor) -> Tensor {
    let n = x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    x / n
}

impl Normalization {
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let mut x = x.shallow_clone();
        for s in &self.0 {
            x = match s {
                NormStep::Unit => unit_rows(&x),
                NormStep::Center => &x - x.mean_dim([0i64].as_slice(), true, Kind::Float),
                NormStep::UnitDim => {
                    let mean = x.mean_dim([0i64].as_slice(), true, Kind::Float);
                    let sd = x.std_dim([0i64].as_slice(), true, true).clamp_min(1e-12);
                    (&x - mean) / sd
                }
            };
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_parses_and_applies() {
        let _one = embedlab_testkit::seeded();
        let n: Normalization = "renorm,center,renorm".parse().unwrap();
        assert_eq!(n.0, vec![NormStep::Unit, NormStep::Center, NormStep::Unit]);
        assert_eq!(n.to_string(), "renorm,center,renorm");
        assert!("bogus".parse::<Normalization>().is_err());
        tch::manual_seed(0);
        let x = Tensor::randn([50, 8], (Kind::Float, tch::Device::Cpu)) + 3.0;
        let y = n.apply(&x);
        let norms = y.norm_scalaropt_dim(2, [1], false);
        assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
        let c: Normalization = "center".parse().unwrap();
        let m = c.apply(&x).mean_dim([0i64].as_slice(), false, Kind::Float);
        assert!(m.abs().max().double_value(&[]) < 1e-5);
    }
}
