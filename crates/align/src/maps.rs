//! Linear maps from a source space to a target space: `mapped = X @ W`.
use crate::error::{AlignError, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How to fit `W` from paired rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MapMethod {
    /// Least squares (Mikolov et al. 2013): min ||XW − Y||², any shapes.
    LeastSquares,
    /// Orthogonal Procrustes (Xing et al. 2015; Smith et al. 2017):
    /// W = UVᵀ from the SVD of XᵀY, semi-orthogonal when dimensions differ.
    Procrustes,
    /// Procrustes, then RCSLS gradient steps (Joulin et al. 2018) with the
    /// whole vocabularies as negatives.
    Rcsls,
    /// Artetxe et al. (2018, AAAI) multi-step framework: whiten both sides on
    /// the dictionary, map orthogonally, re-weight by the singular values
    /// (power `reweight` on each side), optionally de-whiten. Maps both sides.
    Multistep { reweight: f64, dewhiten: bool },
}

/// A fitted map: `mapped source = X @ src`, `mapped target = Y @ tgt` (identity when `None`).
#[derive(Debug)]
pub struct Mapping {
    pub src: Tensor,
    pub tgt: Option<Tensor>,
}

impl Mapping {
    pub fn map_src(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.src)
    }
    pub fn map_tgt(&self, y: &Tensor) -> Tensor {
        match &self.tgt {
            Some(t) => y.matmul(t),
            None => y.shallow_clone(),
        }
    }
    /// Checks the map fits `dx`-dimensional sources and `dy`-dimensional targets.
    pub fn check_dims(&self, dx: i64, dy: i64) -> Result<()> {
        let s = self.src.size();
        let (want_t, out_t) = match &self.tgt {
            Some(t) => (t.size()[0], t.size()[1]),
            None => (dy, dy),
        };
        if s[0] != dx || want_t != dy || s[1] != out_t {
            return Err(AlignError::Invalid(format!(
                "the map takes {}→{} (source) and {want_t}→{out_t} (target), the vectors have {dx} and {dy} dimensions",
                s[0], s[1]
            )));
        }
        Ok(())
    }
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
    let (n, d) = (x.size()[0], x.size()[1]);
    if ridge == 0.0 && n < d {
        return Err(AlignError::Invalid(format!(
            "least squares from {n} pairs in {d} dimensions is underdetermined (infinitely many maps fit): give at least {d} training pairs, or use an orthogonal method"
        )));
    }
    let mut xtx = x.tr().matmul(&x);
    if ridge > 0.0 {
        xtx += Tensor::eye(d, (Kind::Double, x.device())) * ridge;
    }
    // lstsq tolerates a rank-deficient XᵀX (repeated or collinear pairs).
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

/// `(MᵀM)^(-1/2)` for the rows of `m` (f64), as in VecMap's whitening.
fn whitening(m: &Tensor) -> Result<Tensor> {
    let (n, d) = m.size2()?;
    if n < d {
        return Err(AlignError::Numeric {
            what: "whitening".into(),
            msg: format!("{n} dictionary pairs cannot whiten {d} dimensions (need at least {d})"),
        });
    }
    let (_u, s, v) = m.to_kind(Kind::Double).f_svd(true, true)?;
    if s.min().double_value(&[]) <= 1e-10 * s.max().double_value(&[]) {
        return Err(AlignError::Numeric {
            what: "whitening".into(),
            msg: "the dictionary vectors do not span their space (fewer pairs than dimensions?)"
                .into(),
        });
    }
    Ok(v.matmul(&s.reciprocal().diag_embed(0, -2, -1))
        .matmul(&v.tr()))
}

/// The multi-step map (Artetxe et al. 2018) from paired rows `xs`, `ys`.
pub fn multistep(xs: &Tensor, ys: &Tensor, reweight: f64, dewhiten: bool) -> Result<Mapping> {
    check_pairs(xs, ys)?;
    let (xs, ys) = (xs.to_kind(Kind::Double), ys.to_kind(Kind::Double));
    let (wx1, wz1) = (whitening(&xs)?, whitening(&ys)?);
    let m = xs.matmul(&wx1).tr().matmul(&ys.matmul(&wz1));
    let (wx2, s, wz2) = m.f_svd(true, true)?; // m = wx2 diag(s) wz2ᵀ
    let sw = s.pow_tensor_scalar(reweight).diag_embed(0, -2, -1);
    let mut mx = wx1.matmul(&wx2).matmul(&sw);
    let mut mz = wz1.matmul(&wz2).matmul(&sw);
    if dewhiten {
        mx = mx.matmul(&wx2.tr().matmul(&wx1.inverse()).matmul(&wx2));
        mz = mz.matmul(&wz2.tr().matmul(&wz1.inverse()).matmul(&wz2));
    }
    Ok(Mapping {
        src: check_finite(mx.to_kind(Kind::Float), "multistep (source)")?,
        tgt: Some(check_finite(mz.to_kind(Kind::Float), "multistep (target)")?),
    })
}

/// The rows of `x` and `y` named by `pairs`, as two aligned matrices.
pub fn paired_rows(x: &Tensor, y: &Tensor, pairs: &[(usize, usize)]) -> (Tensor, Tensor) {
    let index = |f: fn(&(usize, usize)) -> usize| {
        Tensor::from_slice(&pairs.iter().map(|p| f(p) as i64).collect::<Vec<_>>())
            .to_device(x.device())
    };
    (
        x.index_select(0, &index(|p| p.0)),
        y.index_select(0, &index(|p| p.1)),
    )
}

/// Fits a map with `method` on rows `pairs` of `x` (source) and `y` (target).
pub fn fit(method: MapMethod, x: &Tensor, y: &Tensor, pairs: &[(usize, usize)]) -> Result<Mapping> {
    let (xs, ys) = paired_rows(x, y, pairs);
    let one = |w| Ok(Mapping { src: w, tgt: None });
    match method {
        MapMethod::LeastSquares => one(least_squares(&xs, &ys, 0.0)?),
        MapMethod::Procrustes => one(procrustes(&xs, &ys)?),
        MapMethod::Rcsls => {
            let w0 = procrustes(&xs, &ys)?;
            let cfg = crate::rcsls::RcslsConfig::default();
            one(crate::rcsls::rcsls(x, y, pairs, &w0, &cfg)?.0)
        }
        MapMethod::Multistep { reweight, dewhiten } => multistep(&xs, &ys, reweight, dewhiten),
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
        let _one = embedlab_testkit::seeded();
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
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(8);
        let x = Tensor::randn([200, 20], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([200, 30], (Kind::Float, Device::Cpu));
        let w = procrustes(&x, &y).unwrap();
        assert_eq!(w.size(), vec![20, 30]);
        let i = w.matmul(&w.tr()) - Tensor::eye(20, (Kind::Float, Device::Cpu));
        assert!(i.abs().max().double_value(&[]) < 1e-4);
    }

    #[test]
    fn least_squares_refuses_fewer_pairs_than_dimensions() {
        let _one = embedlab_testkit::seeded();
        let x = Tensor::randn([5, 10], (Kind::Float, Device::Cpu));
        let e = least_squares(&x, &x, 0.0).unwrap_err().to_string();
        assert!(e.contains("5 pairs in 10 dimensions"), "{e}");
    }

    #[test]
    fn least_squares_recovers_a_known_linear_map() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(9);
        let x = Tensor::randn([500, 10], (Kind::Float, Device::Cpu));
        let a = Tensor::randn([10, 25], (Kind::Float, Device::Cpu));
        let y = x.matmul(&a);
        let w = least_squares(&x, &y, 0.0).unwrap();
        assert!((&w - &a).abs().max().double_value(&[]) < 1e-3);
    }

    #[test]
    fn orthogonalize_step_pulls_towards_orthogonal() {
        let _one = embedlab_testkit::seeded();
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
    fn multistep_without_reweighting_is_procrustes_between_whitened_spaces() {
        let _one = embedlab_testkit::seeded();
        // With an exact rotation, whitening both sides and mapping recovers
        // pairs exactly; with reweight 0 and de-whitening the composite maps
        // send paired rows onto each other.
        tch::manual_seed(12);
        let x = Tensor::randn([400, 10], (Kind::Float, Device::Cpu));
        let r = random_rotation(10);
        let y = x.matmul(&r);
        for (reweight, dewhiten) in [(0.0, true), (0.5, true), (0.5, false)] {
            let m = multistep(&x, &y, reweight, dewhiten).unwrap();
            let err = (m.map_src(&x) - m.map_tgt(&y))
                .abs()
                .max()
                .double_value(&[]);
            assert!(err < 1e-3, "reweight {reweight} dewhiten {dewhiten}: {err}");
        }
        // Fewer pairs than dimensions cannot be whitened.
        let few = multistep(&x.narrow(0, 0, 5), &y.narrow(0, 0, 5), 0.5, true);
        assert!(few.unwrap_err().to_string().contains("whitening"));
    }

    #[test]
    fn mismatched_pairs_are_rejected() {
        let x = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
        assert!(procrustes(&x, &y).is_err());
    }
}
