//! How well a representation follows known factors of variation (the
//! digit and the shift of a shifted digit, the angle and the shift of a
//! rotated and shifted object): features in (n × d float tensors, any shape
//! whose first dimension is n is flattened to rows), one value per item of
//! one factor (`&[f64]`) in, an `f64` out.
//!
//! - [`nn_same_factor`]: the share of items whose nearest other item shares
//!   the factor's value (a categorical factor: digit, shift step);
//! - [`linear_readout_r2`]: the share of the factor's variance that a
//!   least-squares linear read-out of the features explains (in-sample),
//!   for a circular factor through (cos θ, sin θ);
//! - [`circular_linear_correlation`] (Mardia's circular-linear r) and
//!   [`best_circular_coordinate`]: which single coordinate follows an angle.
//!
//! Everything is computed in double precision on the CPU (the matrices
//! are n × (d + 1) with small d); the nearest neighbours reuse
//! [`crate::represent::distance_properties`], exact and blocked.
use crate::represent::distance_properties;
use tch::{Device, Kind, Tensor};

/// The rows of `x` as an n × d double matrix on the CPU.
fn rows(x: &Tensor) -> Tensor {
    let x = if x.dim() == 1 {
        x.unsqueeze(1)
    } else {
        x.shallow_clone()
    };
    x.flatten(1, -1)
        .to_device(Device::Cpu)
        .to_kind(Kind::Double)
}

fn to_vec_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(
        t.flatten(0, -1)
            .to_kind(Kind::Double)
            .to_device(Device::Cpu),
    )
    .expect("a Double tensor converts to Vec<f64>")
}

fn check_len(what: &str, n: i64, values: usize) {
    assert_eq!(
        n as usize, values,
        "{what}: {values} factor values for {n} feature rows"
    );
}

/// Share of items whose nearest *other* item (Euclidean distance in the
/// features, ties to the lower index) has the same value of the factor:
/// 1 when the map groups the items by this factor, about Σ_v p_v² (the
/// chance that two random items agree) when it ignores it. For
/// categorical factors (digit, shift in whole pixels, a cell of a grid):
/// values are compared exactly (−0 equals 0). Exact and blocked: the
/// 1-NN leave-one-out error of [`distance_properties`] with the distinct
/// values as labels. Panics on fewer than 2 items, a length mismatch or a
/// non-finite value.
pub fn nn_same_factor(features: &Tensor, values: &[f64]) -> f64 {
    let n = features.size()[0];
    check_len("nn_same_factor", n, values.len());
    assert!(
        values.iter().all(|v| v.is_finite()),
        "nn_same_factor: non-finite factor value"
    );
    // −0 + 0 = +0: one value, one code.
    let mut distinct: Vec<f64> = values.iter().map(|v| v + 0.0).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    let codes: Vec<i64> = values
        .iter()
        .map(|v| {
            distinct
                .binary_search_by(|d| d.total_cmp(&(v + 0.0)))
                .expect("a value of the list") as i64
        })
        .collect();
    let labels = Tensor::from_slice(&codes);
    let other = distance_properties(features, &labels).nn_other_class;
    // nn_other_class = count / n: recover the count, so that the share is
    // exactly (n − count) / n.
    let count = (other * n as f64).round();
    (n as f64 - count) / n as f64
}

/// In-sample R² of the least-squares fit of `y` (n) on the columns of `x`
/// (n × d) and an intercept: 1 − SS_res / SS_tot. The fit projects the
/// centred target on the span of the centred features (a thin SVD, the
/// directions with singular values below n·ε·s_max dropped), so constant
/// or collinear features are harmless. NaN when `y` is constant.
fn r2_on(x: &Tensor, y: &[f64]) -> f64 {
    let n = y.len();
    let mean = y.iter().sum::<f64>() / n as f64;
    let yc: Vec<f64> = y.iter().map(|v| v - mean).collect();
    let ss_tot: f64 = yc.iter().map(|v| v * v).sum();
    if ss_tot <= 0.0 || !ss_tot.is_finite() {
        return f64::NAN;
    }
    let xc = x - x.mean_dim(0, true, Kind::Double);
    let (u, s, _) = xc.svd(true, true);
    let sv = to_vec_f64(&s);
    let smax = sv.iter().copied().fold(0.0, f64::max);
    let tol = smax * n.max(sv.len()) as f64 * f64::EPSILON;
    let keep = sv.iter().filter(|&&v| v > tol).count() as i64;
    if keep == 0 {
        // All features constant: the intercept alone, nothing explained.
        return 0.0;
    }
    let uk = u.narrow(1, 0, keep);
    let yt = Tensor::from_slice(&yc).unsqueeze(1);
    let fitted = uk.matmul(&uk.tr().matmul(&yt));
    let ss_res = (yt - fitted).square().sum(Kind::Double).double_value(&[]);
    (1.0 - ss_res / ss_tot).clamp(0.0, 1.0)
}

/// The share of a factor's variance that a least-squares linear read-out
/// of the features (with an intercept) explains: R² = 1 − SS_res / SS_tot,
/// **in-sample** (fitted and scored on the same items — with n ≫ d, as
/// here with d ≤ 16, the optimism is about d / n; a random factor scores
/// about d / n, not 0).
///
/// With `circular_period = Some(p)` the factor is an angle θ = 2π·value/p
/// (e.g. degrees with p = 360): the read-out predicts cos θ and sin θ, and
/// the result is the mean of the two R² values — a ring in the map, at any
/// radius, centre or orientation, gives 1; a linear read-out of the raw
/// angle could not (it jumps at the seam).
///
/// Computed in double on the CPU (thin SVD of the centred n × d features;
/// rank-deficient features are fine). Clamped to [0, 1] against rounding.
/// NaN when the target (or, circularly, cos θ or sin θ) is constant.
/// Panics on fewer than 2 items, a length mismatch, a non-finite value or a
/// period that is not positive and finite.
pub fn linear_readout_r2(features: &Tensor, values: &[f64], circular_period: Option<f64>) -> f64 {
    let _g = tch::no_grad_guard();
    let x = rows(features);
    let n = x.size()[0];
    check_len("linear_readout_r2", n, values.len());
    assert!(n >= 2, "linear_readout_r2 needs at least 2 items, got {n}");
    assert!(
        values.iter().all(|v| v.is_finite()),
        "linear_readout_r2: non-finite factor value"
    );
    match circular_period {
        None => r2_on(&x, values),
        Some(p) => {
            assert!(
                p.is_finite() && p > 0.0,
                "linear_readout_r2: circular period {p} must be positive"
            );
            let theta: Vec<f64> = values
                .iter()
                .map(|v| std::f64::consts::TAU * v / p)
                .collect();
            let c: Vec<f64> = theta.iter().map(|t| t.cos()).collect();
            let s: Vec<f64> = theta.iter().map(|t| t.sin()).collect();
            (r2_on(&x, &c) + r2_on(&x, &s)) / 2.0
        }
    }
}

/// Pearson correlation of `a` and `b`; None when either is constant.
fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (u, v) = (x - ma, y - mb);
        sab += u * v;
        saa += u * u;
        sbb += v * v;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return None;
    }
    Some((sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0))
}

/// Mardia's circular-linear correlation between angles θ (radians) and a
/// linear variable x:
///
/// r = sqrt((r_xc² + r_xs² − 2 r_xc r_xs r_cs) / (1 − r_cs²)),
///
/// with r_xc = corr(x, cos θ), r_xs = corr(x, sin θ), r_cs = corr(cos θ,
/// sin θ) (Pearson). r² is the R² of the least-squares fit
/// x ≈ a + b cos θ + c sin θ, so r is in [0, 1]: 1 when x is exactly a
/// cosine wave of θ at any phase (x = cos θ, x = sin(θ + φ)), near 0 when x
/// ignores θ (about sqrt(2/n) for independent noise).
///
/// Degenerate cases: 0 when x is constant (it follows nothing); when cos θ
/// and sin θ are collinear (|r_cs| = 1, or one of them constant, e.g. only
/// two opposite angles) the fit has one regressor and r = |corr| with the
/// one that varies; NaN when both are constant (a single angle). Panics on
/// fewer than 2 items or a length mismatch.
pub fn circular_linear_correlation(angle_rad: &[f64], x: &[f64]) -> f64 {
    assert_eq!(
        angle_rad.len(),
        x.len(),
        "circular_linear_correlation: {} angles for {} values",
        angle_rad.len(),
        x.len()
    );
    assert!(
        x.len() >= 2,
        "circular_linear_correlation needs at least 2 items, got {}",
        x.len()
    );
    let c: Vec<f64> = angle_rad.iter().map(|t| t.cos()).collect();
    let s: Vec<f64> = angle_rad.iter().map(|t| t.sin()).collect();
    if x.iter().all(|v| *v == x[0]) {
        return 0.0;
    }
    // cos θ and sin θ lie in [−1, 1]: one whose spread is rounding only
    // (sin 0 against sin π = 1.2e-16) is constant.
    let varies = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|u| (u - m) * (u - m)).sum::<f64>() / v.len() as f64 > 1e-18
    };
    let rxc = pearson(x, &c).filter(|_| varies(&c));
    let rxs = pearson(x, &s).filter(|_| varies(&s));
    let (rxc, rxs) = match (rxc, rxs) {
        (None, None) => return f64::NAN,
        (Some(r), None) | (None, Some(r)) => return r.abs(),
        (Some(a), Some(b)) => (a, b),
    };
    let rcs = pearson(&c, &s).expect("both vary");
    let den = 1.0 - rcs * rcs;
    if den < 1e-12 {
        return rxc.abs();
    }
    ((rxc * rxc + rxs * rxs - 2.0 * rxc * rxs * rcs) / den)
        .clamp(0.0, 1.0)
        .sqrt()
}

/// The coordinate of the features (a column of the n × d rows) with the
/// highest [`circular_linear_correlation`] with the angles (radians), and
/// that correlation; ties to the lower coordinate, NaN correlations never
/// chosen over a number ((0, NaN) when every one is NaN). Panics on a
/// length mismatch or fewer than 2 items.
pub fn best_circular_coordinate(features: &Tensor, angles_rad: &[f64]) -> (usize, f64) {
    let _g = tch::no_grad_guard();
    let x = rows(features);
    let (n, d) = (x.size()[0], x.size()[1]);
    check_len("best_circular_coordinate", n, angles_rad.len());
    let cols = x.tr().contiguous();
    let mut best = (0usize, f64::NAN);
    for j in 0..d {
        let r = circular_linear_correlation(angles_rad, &to_vec_f64(&cols.get(j)));
        if !r.is_nan() && (best.1.is_nan() || r > best.1) {
            best = (j as usize, r);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::{PI, TAU};

    /// A deterministic uniform [0, 1) stream (SplitMix64).
    fn uniform(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    /// An n × d float tensor from column vectors.
    fn matrix(cols: &[Vec<f64>]) -> Tensor {
        let n = cols[0].len();
        let flat: Vec<f32> = (0..n)
            .flat_map(|i| cols.iter().map(move |c| c[i] as f32))
            .collect();
        Tensor::from_slice(&flat).view([n as i64, cols.len() as i64])
    }

    /// R² by the normal equations with an intercept, solved by Gaussian
    /// elimination with partial pivoting (full-rank designs only).
    #[allow(clippy::needless_range_loop)]
    fn r2_brute(cols: &[Vec<f64>], y: &[f64]) -> f64 {
        let n = y.len();
        let p = cols.len() + 1;
        let row = |i: usize| -> Vec<f64> {
            let mut r = vec![1.0];
            r.extend(cols.iter().map(|c| c[i]));
            r
        };
        let mut a = vec![vec![0.0; p + 1]; p];
        for i in 0..n {
            let r = row(i);
            for j in 0..p {
                for k in 0..p {
                    a[j][k] += r[j] * r[k];
                }
                a[j][p] += r[j] * y[i];
            }
        }
        for c in 0..p {
            let piv = (c..p)
                .max_by(|&u, &v| a[u][c].abs().total_cmp(&a[v][c].abs()))
                .unwrap();
            a.swap(c, piv);
            for r in 0..p {
                if r != c {
                    let f = a[r][c] / a[c][c];
                    for k in c..=p {
                        a[r][k] -= f * a[c][k];
                    }
                }
            }
        }
        let beta: Vec<f64> = (0..p).map(|j| a[j][p] / a[j][j]).collect();
        let mean = y.iter().sum::<f64>() / n as f64;
        let (mut res, mut tot) = (0.0, 0.0);
        for i in 0..n {
            let f: f64 = row(i).iter().zip(&beta).map(|(u, b)| u * b).sum();
            res += (y[i] - f).powi(2);
            tot += (y[i] - mean).powi(2);
        }
        1.0 - res / tot
    }

    #[test]
    fn r2_of_linear_random_and_brute_force() {
        let n = 400;
        let (a, b, c) = (uniform(1, n), uniform(2, n), uniform(3, n));
        // Exactly linear (up to float32 features): 1.
        let y: Vec<f64> = (0..n).map(|i| 3.0 * a[i] - 2.0 * b[i] + 0.5).collect();
        let x = matrix(&[a.clone(), b.clone(), c.clone()]);
        let r2 = linear_readout_r2(&x, &y, None);
        assert!((r2 - 1.0).abs() < 1e-6, "{r2}");
        // A random factor on 3 dimensions: about 3 / n.
        let noise = uniform(4, n);
        let r2 = linear_readout_r2(&x, &noise, None);
        assert!(r2 < 0.05, "{r2}");
        // Against the normal equations, on the float32-rounded features.
        let f32s = |v: &Vec<f64>| v.iter().map(|&u| u as f32 as f64).collect::<Vec<_>>();
        let cols = [f32s(&a), f32s(&b), f32s(&c)];
        let noisy: Vec<f64> = (0..n).map(|i| a[i] + noise[i]).collect();
        for target in [&noise, &noisy] {
            let want = r2_brute(&cols, target);
            let got = linear_readout_r2(&x, target, None);
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        // A duplicated and a constant column change nothing.
        let ones = vec![7.0; n];
        let x2 = matrix(&[a.clone(), b.clone(), c.clone(), a.clone(), ones]);
        let got = linear_readout_r2(&x2, &noisy, None);
        assert!((got - r2_brute(&cols, &noisy)).abs() < 1e-9, "{got}");
        // One dimension by hand: y = x on 0, 1, 2 except the middle 2 → 4:
        // the fit is the least-squares line; R² = r² = 0.75.
        let x = matrix(&[vec![0.0, 1.0, 2.0]]);
        let r2 = linear_readout_r2(&x, &[0.0, 2.0, 2.0], None);
        assert!((r2 - 0.75).abs() < 1e-12, "{r2}");
        // A constant factor has no variance to explain.
        assert!(linear_readout_r2(&x, &[1.0, 1.0, 1.0], None).is_nan());
    }

    #[test]
    fn ring_gives_circular_r2_one() {
        let n = 360;
        let deg: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let th: Vec<f64> = deg.iter().map(|d| d.to_radians()).collect();
        // A ring of radius 3 about (1, −2), tilted into 3-D, plus a noise
        // coordinate.
        let junk = uniform(5, n);
        let x = matrix(&[
            th.iter().map(|t| 3.0 * t.cos() + 1.0).collect(),
            th.iter().map(|t| 2.0 * t.sin() - 2.0).collect(),
            th.iter().map(|t| t.cos() + t.sin()).collect(),
            junk.clone(),
        ]);
        let r2 = linear_readout_r2(&x, &deg, Some(360.0));
        assert!((r2 - 1.0).abs() < 1e-6, "{r2}");
        // The raw angle read linearly is far from 1: the seam.
        let lin = linear_readout_r2(&x, &deg, None);
        assert!(lin < 0.9, "{lin}");
        // The same angles in other units, other period.
        let turns: Vec<f64> = deg.iter().map(|d| d / 360.0).collect();
        let r2t = linear_readout_r2(&x, &turns, Some(1.0));
        assert!((r2t - r2).abs() < 1e-9);
        // Features that ignore the angle.
        let r2 = linear_readout_r2(&matrix(&[junk]), &deg, Some(360.0));
        assert!(r2 < 0.05, "{r2}");
        // Only cos θ present (a line through the ring): R²(cos) = 1,
        // R²(sin) = 0 → ½.
        let x = matrix(&[th.iter().map(|t| t.cos()).collect()]);
        let r2 = linear_readout_r2(&x, &deg, Some(360.0));
        assert!((r2 - 0.5).abs() < 1e-6, "{r2}");
    }

    #[test]
    fn circular_linear_correlation_hand_examples() {
        let n = 2000;
        let th: Vec<f64> = uniform(6, n).iter().map(|u| u * TAU).collect();
        let cos: Vec<f64> = th.iter().map(|t| t.cos()).collect();
        assert!((circular_linear_correlation(&th, &cos) - 1.0).abs() < 1e-12);
        // Any phase, scale and offset.
        let wave: Vec<f64> = th.iter().map(|t| 5.0 - 2.0 * (t + 1.0).sin()).collect();
        assert!((circular_linear_correlation(&th, &wave) - 1.0).abs() < 1e-12);
        // Independent noise: about sqrt(2 / n) = 0.03.
        let noise = uniform(7, n);
        let r = circular_linear_correlation(&th, &noise);
        assert!(r < 0.1, "{r}");
        // r² is the R² of x on (cos θ, sin θ).
        let mixed: Vec<f64> = (0..n).map(|i| cos[i] + 2.0 * noise[i]).collect();
        let r = circular_linear_correlation(&th, &mixed);
        let sin: Vec<f64> = th.iter().map(|t| t.sin()).collect();
        let want = r2_brute(&[cos.clone(), sin], &mixed);
        assert!((r * r - want).abs() < 1e-9, "{r} {want}");
        assert!(r > 0.2 && r < 0.9, "{r}");
        // Four angles by hand: θ = 0, π/2, π, 3π/2 and x = 1, 0, 0, 0.
        // Centred x: u = (3, −1, −1, −1)/4; cos = (1, 0, −1, 0), sin =
        // (0, 1, 0, −1), both centred, r_cs = 0. Σ u·cos = 1, Σu² = 3/4,
        // Σcos² = 2 → r_xc = 1/sqrt(1.5); Σ u·sin = 0 → r_xs = 0; so
        // r = sqrt(2/3).
        let th4 = [0.0, PI / 2.0, PI, 3.0 * PI / 2.0];
        let r = circular_linear_correlation(&th4, &[1.0, 0.0, 0.0, 0.0]);
        assert!((r - (2.0f64 / 3.0).sqrt()).abs() < 1e-12, "{r}");
        // Degenerate: constant x → 0; two opposite angles (sin constant)
        // → |corr with cos|; one angle → NaN.
        assert_eq!(circular_linear_correlation(&th4, &[2.0; 4]), 0.0);
        let r = circular_linear_correlation(&[0.0, PI, 0.0, PI], &[1.0, 0.0, 1.0, 0.5]);
        let want = pearson(&[1.0, 0.0, 1.0, 0.5], &[1.0, -1.0, 1.0, -1.0]).unwrap();
        assert!((r - want.abs()).abs() < 1e-9, "{r} {want}");
        assert!(circular_linear_correlation(&[1.0; 3], &[1.0, 2.0, 3.0]).is_nan());
    }

    #[test]
    fn best_circular_coordinate_picks_the_wave() {
        let n = 500;
        let th: Vec<f64> = uniform(8, n).iter().map(|u| u * TAU).collect();
        let x = matrix(&[
            uniform(9, n),
            th.iter().map(|t| (t - 0.3).cos() * 4.0).collect(),
            uniform(10, n),
            vec![1.0; n],
        ]);
        let (j, r) = best_circular_coordinate(&x, &th);
        assert_eq!(j, 1);
        assert!((r - 1.0).abs() < 1e-6, "{r}");
        // Ties go to the lower coordinate.
        let c: Vec<f64> = th.iter().map(|t| t.sin()).collect();
        let (j, _) = best_circular_coordinate(&matrix(&[uniform(11, n), c.clone(), c]), &th);
        assert_eq!(j, 1);
    }

    #[test]
    fn nn_same_factor_hand_example() {
        // 0, 1, 3, 6 with values a a b b: nearest others 0→1 (a), 1→0 (a),
        // 3→1 (a ≠ b), 6→3 (b): 3 of 4 agree.
        let x = matrix(&[vec![0.0, 1.0, 3.0, 6.0]]);
        assert_eq!(nn_same_factor(&x, &[-6.0, -6.0, 3.0, 3.0]), 0.75);
        // Ties to the lower index: 1 is at 1 from 0 (value 0) and from 2
        // (value 1); 0→1 (≠), 1→0 (≠), 2→1 (=): 1 of 3. −0 equals 0.
        let x = matrix(&[vec![0.0, 1.0, 2.0]]);
        assert_eq!(nn_same_factor(&x, &[-0.0, 1.0, 1.0]), 1.0 / 3.0);
        assert_eq!(nn_same_factor(&x, &[0.0, -0.0, 0.0]), 1.0);
        // Two factors of one 2-D grid: columns spaced 1, rows 10 apart: every
        // nearest neighbour is in the same row, none in the same column.
        let (mut xs, mut ys, mut row, mut col) = (vec![], vec![], vec![], vec![]);
        for r in 0..3 {
            for c in 0..4 {
                xs.push(c as f64);
                ys.push(10.0 * r as f64);
                row.push(r as f64);
                col.push(c as f64 * 0.5);
            }
        }
        let x = matrix(&[xs, ys]);
        assert_eq!(nn_same_factor(&x, &row), 1.0);
        assert_eq!(nn_same_factor(&x, &col), 0.0);
    }
}
