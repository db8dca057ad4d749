//! Principal component analysis, for reducing one side's dimension.
use crate::error::{AlignError, Result};
use tch::{Kind, Tensor};

/// A fitted PCA: `transform(x) = (x - mean) @ components`.
#[derive(Debug)]
pub struct Pca {
    pub mean: Tensor,
    /// `[d, k]`, columns ordered by decreasing variance.
    pub components: Tensor,
    /// Fraction of the total variance each kept component explains.
    pub explained: Vec<f64>,
}

impl Pca {
    /// Fits `k` components on the rows of `x` (eigen-decomposition of the covariance, in f64).
    pub fn fit(x: &Tensor, k: usize) -> Result<Self> {
        let (n, d) = x.size2()?;
        if k == 0 || k as i64 > d {
            return Err(AlignError::Invalid(format!(
                "PCA to {k} dimensions of {d}-dimensional vectors"
            )));
        }
        if n < 2 {
            return Err(AlignError::Invalid("PCA needs at least two vectors".into()));
        }
        let x64 = x.to_kind(Kind::Double);
        let mean = x64.mean_dim([0i64].as_slice(), true, Kind::Double);
        let xc = &x64 - &mean;
        let cov = xc.tr().matmul(&xc) / (n - 1) as f64;
        let (evals, evecs) = cov.linalg_eigh("L");
        // eigh returns ascending eigenvalues.
        let order = evals.argsort(0, true);
        let evals = evals.index_select(0, &order);
        let evecs = evecs.index_select(1, &order);
        let total = evals.sum(Kind::Double).double_value(&[]);
        let explained = (0..k as i64)
            .map(|i| evals.double_value(&[i]) / total)
            .collect();
        Ok(Self {
            mean: mean.to_kind(Kind::Float),
            components: evecs
                .narrow(1, 0, k as i64)
                .to_kind(Kind::Float)
                .contiguous(),
            explained,
        })
    }
    pub fn transform(&self, x: &Tensor) -> Tensor {
        (x - &self.mean).matmul(&self.components)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_low_rank_subspace() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(1);
        let opts = (Kind::Float, tch::Device::Cpu);
        // 3-D data embedded in 10-D plus tiny noise: 3 components explain ~everything.
        let z = Tensor::randn([500, 3], opts) * Tensor::from_slice(&[5f32, 3., 2.]);
        let basis = Tensor::randn([3, 10], opts);
        let x = z.matmul(&basis) + Tensor::randn([500, 10], opts) * 1e-3;
        let p = Pca::fit(&x, 3).unwrap();
        let s: f64 = p.explained.iter().sum();
        assert!(s > 0.9999, "explained {s}");
        assert!(p.explained[0] >= p.explained[1] && p.explained[1] >= p.explained[2]);
        let back = p.transform(&x).matmul(&p.components.tr()) + &p.mean;
        assert!((back - &x).abs().max().double_value(&[]) < 1e-2);
        assert!(Pca::fit(&x, 11).is_err());
    }
}
