//! RCSLS (Joulin et al. 2018, "Loss in Translation"): refine a map by
//! gradient descent on a relaxed CSLS loss over the training pairs, with the
//! whole vocabularies as negatives, keeping W's singular values ≤ 1.
//!
//! loss(W) = −(1/n) Σᵢ [ 2·(xᵢW)·yᵢ − (1/k) Σ_{t ∈ Nₖ(xᵢW)} (xᵢW)·zₜ − (1/k) Σ_{s ∈ Nₖ(yᵢ)} (zₛW)·yᵢ ]
//!
//! where Nₖ(xᵢW) are the k targets nearest to the mapped source and Nₖ(yᵢ)
//! the k mapped sources nearest to the target. The neighbour sets are found
//! without gradients, in blocks; the loss then only touches those rows.
use crate::error::{AlignError, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RcslsConfig {
    /// Full-batch gradient steps (Joulin et al.: 10 … 20).
    pub iterations: usize,
    /// Initial step size, halved whenever a step raises the loss.
    pub lr: f64,
    /// Neighbours in the CSLS terms.
    pub knn: i64,
    /// Only the `max_neg` most frequent words of each side serve as negatives.
    pub max_neg: i64,
}

impl Default for RcslsConfig {
    fn default() -> Self {
        Self {
            iterations: 15,
            lr: 1.0,
            knn: 10,
            max_neg: 200_000,
        }
    }
}

/// Indices `[q, k]` of the k rows of `base` with the largest dot product
/// with each row of `queries` (no gradient).
fn knn_indices(queries: &Tensor, base: &Tensor, k: i64) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    Ok(crate::retrieval::blocked_topk(queries, base, k, crate::retrieval::BLOCK_BYTES)?.1)
}

/// The RCSLS loss of `w` for pairs `(xs, ys)` with negatives `zs` (source) and `zt` (target).
fn loss(w: &Tensor, xs: &Tensor, ys: &Tensor, zs: &Tensor, zt: &Tensor, k: i64) -> Result<Tensor> {
    let n = xs.size()[0] as f64;
    let xw = xs.matmul(w);
    let (d, kk) = (zt.size()[1], k.min(zt.size()[0]));
    let nt = knn_indices(&xw.detach(), zt, kk)?; // [n, k]
    let zt_k = zt.index_select(0, &nt.view(-1)).view([-1, kk, d]);
    let f0 = (xw.unsqueeze(1) * zt_k).sum(xs.kind()) / kk as f64;
    // Nearest mapped sources of each target: search the mapped negatives.
    let ks = k.min(zs.size()[0]);
    let zsw_nograd = {
        let _g = tch::no_grad_guard();
        zs.matmul(w)
    };
    let ns = knn_indices(ys, &zsw_nograd, ks)?; // [n, k]
    let zs_k = zs.index_select(0, &ns.view(-1)).matmul(w).view([-1, ks, d]);
    let f1 = (ys.unsqueeze(1) * zs_k).sum(xs.kind()) / ks as f64;
    let f = (&xw * ys).sum(xs.kind()) * 2.0 - f0 - f1;
    Ok(-f / n)
}

/// W with its singular values clipped to at most 1.
fn project_spectral(w: &Tensor) -> Result<Tensor> {
    let (u, s, v) = w.to_kind(Kind::Double).f_svd(true, true)?;
    Ok(u.matmul(&s.clamp_max(1.0).diag_embed(0, -2, -1))
        .matmul(&v.tr())
        .to_kind(Kind::Float))
}

/// Refines `w0` (e.g. Procrustes) on training pairs of the prepared, unit-length
/// spaces `x` and `y`; returns the refined map and the loss after each step.
pub fn rcsls(
    x: &Tensor,
    y: &Tensor,
    pairs: &[(usize, usize)],
    w0: &Tensor,
    cfg: &RcslsConfig,
) -> Result<(Tensor, Vec<f64>)> {
    if pairs.is_empty() {
        return Err(AlignError::Invalid("RCSLS needs training pairs".into()));
    }
    let (xs, ys) = crate::maps::paired_rows(x, y, pairs);
    let zs = x.narrow(0, 0, x.size()[0].min(cfg.max_neg));
    let zt = y.narrow(0, 0, y.size()[0].min(cfg.max_neg));
    let mut w = w0.detach().copy();
    let mut lr = cfg.lr;
    let mut best = {
        let _g = tch::no_grad_guard();
        loss(&w, &xs, &ys, &zs, &zt, cfg.knn)?.double_value(&[])
    };
    let mut history = vec![best];
    for _ in 0..cfg.iterations {
        let wv = w.detach().set_requires_grad(true);
        let l = loss(&wv, &xs, &ys, &zs, &zt, cfg.knn)?;
        l.backward();
        let g = wv.grad();
        let cand = project_spectral(&(w.detach() - g * lr))?;
        let lc = {
            let _g = tch::no_grad_guard();
            loss(&cand, &xs, &ys, &zs, &zt, cfg.knn)?.double_value(&[])
        };
        if !lc.is_finite() {
            return Err(AlignError::Numeric {
                what: "RCSLS".into(),
                msg: "the loss became non-finite".into(),
            });
        }
        if lc < best {
            w = cand;
            best = lc;
        } else {
            lr /= 2.0; // the step overshot: keep W, try a smaller one
        }
        history.push(best);
    }
    Ok((w, history))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::procrustes;
    use crate::normalize::unit_rows;
    use tch::Device;

    #[test]
    fn gradient_matches_finite_differences() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(21);
        let opts = (Kind::Double, Device::Cpu);
        let xs = unit_rows(&Tensor::randn([20, 5], opts));
        let ys = unit_rows(&Tensor::randn([20, 5], opts));
        let zs = unit_rows(&Tensor::randn([40, 5], opts));
        let zt = unit_rows(&Tensor::randn([40, 5], opts));
        let w = Tensor::randn([5, 5], opts).set_requires_grad(true);
        let l = loss(&w, &xs, &ys, &zs, &zt, 3).unwrap();
        l.backward();
        let g = w.grad();
        let eps = 1e-6;
        for (i, j) in [(0, 0), (1, 3), (4, 2)] {
            let e = Tensor::zeros([5, 5], opts);
            let _ = e.get(i).get(j).fill_(eps);
            let _ng = tch::no_grad_guard();
            let lp = loss(&(&w.detach() + &e), &xs, &ys, &zs, &zt, 3)
                .unwrap()
                .double_value(&[]);
            let lm = loss(&(&w.detach() - &e), &xs, &ys, &zs, &zt, 3)
                .unwrap()
                .double_value(&[]);
            let fd = (lp - lm) / (2.0 * eps);
            let an = g.double_value(&[i, j]);
            assert!(
                (fd - an).abs() < 1e-5,
                "dL/dW[{i},{j}]: autograd {an}, finite difference {fd}"
            );
        }
    }

    #[test]
    fn lowers_the_loss_and_keeps_singular_values_at_most_one() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(22);
        let opts = (Kind::Float, Device::Cpu);
        let x = unit_rows(&Tensor::randn([300, 8], opts));
        let r = Tensor::linalg_qr(
            &Tensor::randn([8, 8], (Kind::Double, Device::Cpu)),
            "reduced",
        )
        .0
        .to_kind(Kind::Float);
        let y = unit_rows(&(x.matmul(&r) + Tensor::randn([300, 8], opts) * 0.3));
        let pairs: Vec<(usize, usize)> = (0..100).map(|i| (i, i)).collect();
        let si = Tensor::arange(100, (Kind::Int64, Device::Cpu));
        let w0 = procrustes(&x.index_select(0, &si), &y.index_select(0, &si)).unwrap();
        let (w, hist) = rcsls(
            &x,
            &y,
            &pairs,
            &w0,
            &RcslsConfig {
                iterations: 8,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(hist.windows(2).all(|h| h[1] <= h[0]), "{hist:?}");
        assert!(hist.last().unwrap() < &hist[0], "{hist:?}");
        let s = w.to_kind(Kind::Double).f_svd(true, true).unwrap().1;
        assert!(s.max().double_value(&[]) <= 1.0 + 1e-5);
    }
}
