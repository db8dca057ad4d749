//! Linear maps from a source space to a target space: `mapped = X @ W`.
use crate::error::{AlignError, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How to fit `W` from paired rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MapMethod {
    /// Least squares (Mikolov et al. 2013): min ||XW − Y||², any shapes.
    LeastSquares,
    /// Orthogonal Procrustes (Xing et al. 2015; Smith et al. 2017):
    /// W = UVᵀ from the SVD of XᵀY, semi-orthogonal when dimensions differ.
    Procrustes,
}

impl std::str::FromStr for MapMethod {
    type Err = AlignError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "lstsq" | "least-squares" | "mikolov" => Ok(Self::LeastSquares),
            "procrustes" | "orthogonal" => Ok(Self::Procrustes),
            _ => Err(AlignError::Invalid(format!(
                "unknown map '{s}' (lstsq, procrustes)"
            ))),
        }
    }
}

fn check_pairs(x: &Tensor, y: &Tensor) -> Result<()> {
    let (n, _) = x.size2()?;
    let (m, _) = y.size2()?;
    if n != m {
        return Err(AlignError::Invalid(format!(
            "{n} source rows but {m} target rows"
        )));
    }
    if n == 0 {
        return Err(AlignError::Invalid("no training pairs".into()));
    }
    Ok(())
}

fn check_finite(w: Tensor, what: &str) -> Result<Tensor> {
    if w.isfinite().all().int64_value(&[]) == 0 {
        return Err(AlignError::Numeric {
            what: what.into(),
            msg: "the fitted map has non-finite entries".into(),
        });
    }
    Ok(w)
}

/// Least squares `W = argmin ||XW − Y||² + ridge·||W||²` (solved in f64).
pub fn least_squares(x: &Tensor, y: &Tensor, ridge: f64) -> Result<Tensor> {
    check_pairs(x, y)?;
    let (x, y) = (x.to_kind(Kind::Double), y.to_kind(Kind::Double));
    let d = x.size()[1];
    let mut xtx = x.tr().matmul(&x);
    if ridge > 0.0 {
        xtx += Tensor::eye(d, (Kind::Double, x.device())) * ridge;
    }
    // lstsq tolerates a rank-deficient XᵀX (fewer pairs than dimensions).
    let driver = if x.device().is_cuda() {
        "gels"
    } else {
        "gelsd"
    };
    let (w, _, _, _) = xtx.f_linalg_lstsq(&x.tr().matmul(&y), None::<f64>, driver)?;
    check_finite(w.to_kind(Kind::Float), "least squares")
}

/// Orthogonal Procrustes: `W = UVᵀ` where `XᵀY = UΣVᵀ` (thin SVD, in f64).
pub fn procrustes(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    check_pairs(x, y)?;
    let m = x
        .to_kind(Kind::Double)
        .tr()
        .matmul(&y.to_kind(Kind::Double));
    // torch.svd (reduced): M = U diag(S) Vᵀ.
    let (u, _s, v) = m.f_svd(true, true)?;
    check_finite(u.matmul(&v.tr()).to_kind(Kind::Float), "procrustes")
}

/// Fits `W` with `method` on rows `pairs` of `x` (source) and `y` (target).
pub fn fit(method: MapMethod, x: &Tensor, y: &Tensor, pairs: &[(usize, usize)]) -> Result<Tensor> {
    let dev = x.device();
    let si =
        Tensor::from_slice(&pairs.iter().map(|p| p.0 as i64).collect::<Vec<_>>()).to_device(dev);
    let ti =
        Tensor::from_slice(&pairs.iter().map(|p| p.1 as i64).collect::<Vec<_>>()).to_device(dev);
    let (xs, ys) = (x.index_select(0, &si), y.index_select(0, &ti));
    match method {
        MapMethod::LeastSquares => least_squares(&xs, &ys, 0.0),
        MapMethod::Procrustes => procrustes(&xs, &ys),
    }
}

/// Re-orthogonalises `W` in place of an update: `W ← (1+β)W − β(WWᵀ)W` (MUSE).
pub fn orthogonalize_step(w: &Tensor, beta: f64) -> Tensor {
    w * (1.0 + beta) - w.matmul(&w.tr()).matmul(w) * beta
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn random_rotation(d: i64) -> Tensor {
        let a = Tensor::randn([d, d], (Kind::Double, Device::Cpu));
        let (q, _r) = Tensor::linalg_qr(&a, "reduced");
        q.to_kind(Kind::Float)
    }

    #[test]
    fn procrustes_recovers_a_known_rotation_exactly() {
        tch::manual_seed(7);
        let d = 40;
        let x = Tensor::randn([300, d], (Kind::Float, Device::Cpu));
        let r = random_rotation(d);
        let y = x.matmul(&r);
        let w = procrustes(&x, &y).unwrap();
        let err = (&w - &r).abs().max().double_value(&[]);
        assert!(err < 1e-4, "max |W - R| = {err}");
        // W is orthogonal.
        let i = w.tr().matmul(&w) - Tensor::eye(d, (Kind::Float, Device::Cpu));
        assert!(i.abs().max().double_value(&[]) < 1e-4);
    }

    #[test]
    fn semi_orthogonal_when_dimensions_differ() {
        tch::manual_seed(8);
        let x = Tensor::randn([200, 20], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([200, 30], (Kind::Float, Device::Cpu));
        let w = procrustes(&x, &y).unwrap();
        assert_eq!(w.size(), vec![20, 30]);
        let i = w.matmul(&w.tr()) - Tensor::eye(20, (Kind::Float, Device::Cpu));
        assert!(i.abs().max().double_value(&[]) < 1e-4);
    }

    #[test]
    fn least_squares_recovers_a_known_linear_map() {
        tch::manual_seed(9);
        let x = Tensor::randn([500, 10], (Kind::Float, Device::Cpu));
        let a = Tensor::randn([10, 25], (Kind::Float, Device::Cpu));
        let y = x.matmul(&a);
        let w = least_squares(&x, &y, 0.0).unwrap();
        assert!((&w - &a).abs().max().double_value(&[]) < 1e-3);
    }

    #[test]
    fn orthogonalize_step_pulls_towards_orthogonal() {
        tch::manual_seed(10);
        let r = random_rotation(16);
        let w = &r + Tensor::randn([16, 16], (Kind::Float, Device::Cpu)) * 0.01;
        let dev = |w: &Tensor| {
            (w.matmul(&w.tr()) - Tensor::eye(16, (Kind::Float, Device::Cpu)))
                .abs()
                .max()
                .double_value(&[])
        };
        let mut w2 = w.shallow_clone();
        for _ in 0..5 {
            w2 = orthogonalize_step(&w2, 0.01);
        }
        assert!(dev(&w2) < dev(&w));
    }

    #[test]
    fn mismatched_pairs_are_rejected() {
        let x = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
        assert!(procrustes(&x, &y).is_err());
    }
}
