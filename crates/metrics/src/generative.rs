//! Metrics of generated images, computed in a feature space (embedlab uses
//! the penultimate layer of an in-domain classifier):
//! - the Fréchet distance between Gaussians fitted to real and generated
//!   features (Heusel et al. 2017), in double precision;
//! - precision and recall of samples against k-nearest-neighbour manifolds
//!   (Kynkäänniemi et al. 2019, k = 3 by default);
//! - class coverage: how many classes the classifier finds among the
//!   samples, and the KL divergence of that histogram to uniform;
//! - the confident-sample rate: the share of samples the classifier assigns
//!   to a class with probability at least 0.9, a number a person can read
//!   beside the same rate on real images (a blurred or hybrid digit is
//!   classified, but not confidently).
use tch::{Kind, Tensor};

/// Mean and covariance (unbiased) of the rows of `x`, in double precision.
pub fn mean_cov(x: &Tensor) -> (Tensor, Tensor) {
    let x = x.flatten(1, -1).to_kind(Kind::Double);
    let n = x.size()[0];
    let mu = x.mean_dim(0, false, Kind::Double);
    let c = &x - mu.unsqueeze(0);
    let cov = c.tr().matmul(&c) / ((n - 1).max(1) as f64);
    (mu, cov)
}

/// The symmetric square root of a symmetric positive semi-definite matrix
/// (negative eigenvalues from rounding clamped to 0).
fn sqrtm_psd(a: &Tensor) -> Tensor {
    let a = (a + a.tr()) * 0.5;
    let (vals, vecs) = a.linalg_eigh("L");
    let s = vals.clamp_min(0.0).sqrt();
    (&vecs * s.unsqueeze(0)).matmul(&vecs.tr())
}

/// Fréchet distance between N(mu1, c1) and N(mu2, c2):
/// |mu1 − mu2|² + tr(c1 + c2 − 2 (c1 c2)^½). The trace of (c1 c2)^½ is
/// computed as tr((c1^½ c2 c1^½)^½), a symmetric PSD matrix, so no complex
/// parts or non-symmetric square roots arise.
pub fn frechet_gaussians(mu1: &Tensor, c1: &Tensor, mu2: &Tensor, c2: &Tensor) -> f64 {
    let _g = tch::no_grad_guard();
    let mu1 = mu1.to_kind(Kind::Double);
    let mu2 = mu2.to_kind(Kind::Double);
    let c1 = c1.to_kind(Kind::Double);
    let c2 = c2.to_kind(Kind::Double);
    let r1 = sqrtm_psd(&c1);
    let m = r1.matmul(&c2).matmul(&r1);
    let (vals, _) = ((&m + m.tr()) * 0.5).linalg_eigh("L");
    let tr_sqrt = vals
        .clamp_min(0.0)
        .sqrt()
        .sum(Kind::Double)
        .double_value(&[]);
    let d = (&mu1 - &mu2).square().sum(Kind::Double).double_value(&[]);
    let t1 = c1.trace().double_value(&[]);
    let t2 = c2.trace().double_value(&[]);
    let fd = d + t1 + t2 - 2.0 * tr_sqrt;
    // `f64::max` would turn a NaN into 0, a perfect score.
    if fd.is_nan() {
        f64::NAN
    } else {
        fd.max(0.0)
    }
}

/// Fréchet distance between the feature sets `a` and `b` (rows).
pub fn frechet_distance(a: &Tensor, b: &Tensor) -> f64 {
    let _g = tch::no_grad_guard();
    let (m1, c1) = mean_cov(a);
    let (m2, c2) = mean_cov(b);
    frechet_gaussians(&m1, &c1, &m2, &c2)
}

/// Squared Euclidean distances between the rows of `a` and `b`, in double.
fn sq_dists(a: &Tensor, b: &Tensor) -> Tensor {
    let a = a.flatten(1, -1).to_kind(Kind::Double);
    let b = b.flatten(1, -1).to_kind(Kind::Double);
    let an = a.square().sum_dim_intlist(1, true, Kind::Double);
    let bn = b.square().sum_dim_intlist(1, true, Kind::Double);
    (an + bn.tr() - a.matmul(&b.tr()) * 2.0).clamp_min(0.0)
}

/// Each row's squared distance to its k-th nearest other row of the same set.
fn kth_radius(x: &Tensor, k: i64) -> Tensor {
    let n = x.size()[0];
    let mut out = vec![];
    let block = 1024;
    let mut s = 0;
    while s < n {
        let len = block.min(n - s);
        let d = sq_dists(&x.narrow(0, s, len), x);
        // The row itself is at distance 0: the k-th other is the (k+1)-th smallest.
        let (v, _) = d.topk((k + 1).min(n), 1, false, true);
        out.push(v.select(1, (k).min(n - 1)));
        s += len;
    }
    Tensor::cat(&out, 0)
}

/// The share of `queries` inside at least one ball of the k-NN manifold of
/// `support` (each support row's ball reaches its k-th nearest neighbour).
fn inside_manifold(support: &Tensor, radii: &Tensor, queries: &Tensor) -> f64 {
    let nq = queries.size()[0];
    if nq == 0 {
        return 0.0;
    }
    let mut hits = 0i64;
    let block = 1024;
    let mut s = 0;
    while s < nq {
        let len = block.min(nq - s);
        let d = sq_dists(&queries.narrow(0, s, len), support);
        let inside = d.le_tensor(&radii.unsqueeze(0)).any_dim(1, false);
        hits += inside.sum(Kind::Int64).int64_value(&[]);
        s += len;
    }
    hits as f64 / nq as f64
}

/// Precision (share of generated rows within the real manifold) and recall
/// (share of real rows within the generated manifold), both manifolds by
/// k-nearest-neighbour balls.
pub fn precision_recall(real: &Tensor, fake: &Tensor, k: i64) -> (f64, f64) {
    let _g = tch::no_grad_guard();
    let rr = kth_radius(real, k);
    let rf = kth_radius(fake, k);
    (
        inside_manifold(real, &rr, fake),
        inside_manifold(fake, &rf, real),
    )
}

/// What share of the classes the samples hit, and how far their predicted
/// class histogram is from uniform.
#[derive(Clone, Debug, PartialEq)]
pub struct Coverage {
    /// Classes predicted for at least `min_share` × (n / classes) samples.
    pub classes_hit: usize,
    pub classes: usize,
    /// KL(histogram ‖ uniform), nats: 0 for balanced samples, ln(classes)
    /// when every sample is of one class.
    pub kl_to_uniform: f64,
    pub histogram: Vec<i64>,
}

/// Coverage of predicted labels over `classes` classes. A class counts as
/// hit when it holds at least a quarter of its fair share of the samples
/// (a handful of stray predictions is not a mode).
pub fn coverage(predicted: &Tensor, classes: i64) -> Coverage {
    let p = predicted.to_kind(Kind::Int64).to_device(tch::Device::Cpu);
    let hist: Vec<i64> = Vec::try_from(&p.bincount(None::<Tensor>, classes).to_kind(Kind::Int64))
        .unwrap_or_default();
    let n: i64 = hist.iter().sum();
    let fair = n as f64 / classes as f64;
    let classes_hit = hist
        .iter()
        .filter(|&&h| h as f64 >= 0.25 * fair && h > 0)
        .count();
    let kl = hist
        .iter()
        .filter(|&&h| h > 0)
        .map(|&h| {
            let q = h as f64 / n as f64;
            q * (q * classes as f64).ln()
        })
        .sum::<f64>();
    Coverage {
        classes_hit,
        classes: classes as usize,
        kl_to_uniform: kl,
        histogram: hist,
    }
}

/// The probability a sample needs for its most probable class to count as
/// a confident classification.
pub const CONFIDENT: f64 = 0.9;

/// How confidently a classifier reads a set of images: per image, the
/// predicted class and whether softmax gives it at least `threshold`.
#[derive(Clone, Debug, PartialEq)]
pub struct Confidence {
    /// Images whose top class has probability ≥ the threshold.
    pub confident: i64,
    pub n: i64,
    /// Confident images per class (the class they are assigned to).
    pub per_class: Vec<i64>,
}

impl Confidence {
    /// The share of confident images, in [0, 1] (0 for an empty set).
    pub fn rate(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.confident as f64 / self.n as f64
        }
    }
}

/// The confidence of `logits` (rows: images, columns: `classes` classes)
/// at `threshold`, with each row's predicted class.
pub fn confidence(logits: &Tensor, threshold: f64) -> (Tensor, Confidence) {
    let _g = tch::no_grad_guard();
    let classes = logits.size()[1];
    let p = logits.to_kind(Kind::Double).softmax(1, Kind::Double);
    let (top, pred) = p.max_dim(1, false);
    let sure = top.ge(threshold);
    let sure_pred = pred.masked_select(&sure).to_device(tch::Device::Cpu);
    let per_class: Vec<i64> = Vec::try_from(
        &sure_pred
            .bincount(None::<Tensor>, classes)
            .to_kind(Kind::Int64),
    )
    .unwrap_or_default();
    let c = Confidence {
        confident: per_class.iter().sum(),
        n: logits.size()[0],
        per_class,
    };
    (pred, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn gaussian(n: i64, d: i64, shift: f64, scale: f64) -> Tensor {
        Tensor::randn([n, d], (Kind::Double, Device::Cpu)) * scale + shift
    }

    #[test]
    fn a_non_finite_feature_gives_a_nan_distance_not_zero() {
        let a = Tensor::from_slice(&[0.0f64, 1.0, 2.0, 3.0, 1.0, 0.5]).reshape([3, 2]);
        let b = Tensor::from_slice(&[0.0f64, f64::NAN, 2.0, 3.0, 1.0, 0.5]).reshape([3, 2]);
        assert!(frechet_distance(&a, &b).is_nan());
    }

    #[test]
    fn frechet_of_two_gaussians_matches_the_closed_form() {
        let _one = embedlab_testkit::seeded();
        // Diagonal covariances: FD = |Δμ|² + Σ (σ1 − σ2)².
        let mu1 = Tensor::from_slice(&[0.0f64, 1.0, -2.0]);
        let mu2 = Tensor::from_slice(&[1.0f64, 1.0, 0.0]);
        let s1 = [1.0f64, 4.0, 0.25];
        let s2 = [9.0f64, 1.0, 0.25];
        let c1 = Tensor::from_slice(&s1).diag(0);
        let c2 = Tensor::from_slice(&s2).diag(0);
        let want = 1.0
            + 4.0
            + s1.iter()
                .zip(&s2)
                .map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2))
                .sum::<f64>();
        let got = frechet_gaussians(&mu1, &c1, &mu2, &c2);
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        // A full (non-commuting) pair: against tr((c1 c2)^½) from the
        // eigenvalues of c1 c2 (real and non-negative for PSD c1, c2).
        tch::manual_seed(1);
        let a = Tensor::randn([4, 4], (Kind::Double, Device::Cpu));
        let b = Tensor::randn([4, 4], (Kind::Double, Device::Cpu));
        let c1 = a.matmul(&a.tr()) + Tensor::eye(4, (Kind::Double, Device::Cpu)) * 0.1;
        let c2 = b.matmul(&b.tr());
        let ev = c1.matmul(&c2).linalg_eigvals().real();
        let tr_sqrt = ev.clamp_min(0.0).sqrt().sum(Kind::Double).double_value(&[]);
        let z = Tensor::zeros([4], (Kind::Double, Device::Cpu));
        let want = c1.trace().double_value(&[]) + c2.trace().double_value(&[]) - 2.0 * tr_sqrt;
        let got = frechet_gaussians(&z, &c1, &z, &c2);
        assert!(
            (got - want).abs() < 1e-8 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }

    #[test]
    fn frechet_of_a_set_to_itself_is_zero_and_grows_with_a_shift() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(0);
        let a = gaussian(2000, 8, 0.0, 1.0);
        assert!(frechet_distance(&a, &a).abs() < 1e-8);
        let b = gaussian(2000, 8, 0.0, 1.0);
        let same = frechet_distance(&a, &b);
        // Two samples of one Gaussian: only the finite-sample bias (~d²/n).
        assert!(same < 0.1, "{same}");
        // The same set shifted by 1 in each of 8 dimensions: the covariances
        // are equal, so the distance is exactly |Δμ|² = 8 (an independent
        // shifted sample would add a sampling error of about ±0.2).
        let shifted = frechet_distance(&a, &(&a + 1.0));
        assert!((shifted - 8.0).abs() < 1e-6, "{shifted}");
        // And a shifted, rescaled sample of its own: |Δμ|² + d (σ1 − σ2)² = 8 + 8.
        let other = frechet_distance(&a, &gaussian(2000, 8, 1.0, 2.0));
        assert!((other - 16.0).abs() < 1.5, "{other}");
    }

    /// Brute force: for each query, is any support row within that row's
    /// k-th-neighbour distance?
    fn brute_share(support: &Tensor, queries: &Tensor, k: usize) -> f64 {
        let s: Vec<Vec<f64>> = (0..support.size()[0])
            .map(|i| Vec::try_from(&support.get(i)).unwrap())
            .collect();
        let q: Vec<Vec<f64>> = (0..queries.size()[0])
            .map(|i| Vec::try_from(&queries.get(i)).unwrap())
            .collect();
        let d = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
        let radii: Vec<f64> = s
            .iter()
            .map(|a| {
                let mut ds: Vec<f64> = s.iter().map(|b| d(a, b)).collect();
                ds.sort_by(|x, y| x.partial_cmp(y).unwrap());
                ds[k]
            })
            .collect();
        let hits = q
            .iter()
            .filter(|x| s.iter().zip(&radii).any(|(a, r)| d(x, a) <= *r))
            .count();
        hits as f64 / q.len() as f64
    }

    #[test]
    fn precision_and_recall_match_brute_force_and_see_a_collapsed_generator() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(2);
        let real = gaussian(300, 5, 0.0, 1.0);
        let fake = gaussian(200, 5, 0.5, 0.7);
        let (p, r) = precision_recall(&real, &fake, 3);
        assert!((p - brute_share(&real, &fake, 3)).abs() < 1e-12);
        assert!((r - brute_share(&fake, &real, 3)).abs() < 1e-12);
        // A generator that puts everything near one real point: precise,
        // with almost no recall.
        let one = real.get(0).unsqueeze(0) + gaussian(200, 5, 0.0, 0.01);
        let (p, r) = precision_recall(&real, &one, 3);
        assert!(p > 0.95, "{p}");
        assert!(r < 0.05, "{r}");
    }

    #[test]
    fn coverage_sees_one_class() {
        let all = Tensor::arange(1000, (Kind::Int64, Device::Cpu)).remainder(10);
        let c = coverage(&all, 10);
        assert_eq!(c.classes_hit, 10);
        assert!(c.kl_to_uniform.abs() < 1e-12);
        let one = Tensor::full([1000], 3, (Kind::Int64, Device::Cpu));
        let c = coverage(&one, 10);
        assert_eq!(c.classes_hit, 1);
        assert!((c.kl_to_uniform - 10f64.ln()).abs() < 1e-12);
        assert_eq!(c.histogram[3], 1000);
    }

    #[test]
    fn the_confident_rate_matches_a_hand_computation() {
        // softmax([ln 9.5, 0]) = (0.905, 0.095) counts; softmax([ln 8, 0])
        // = (0.889, 0.111) does not; a nearly uniform row does not; a row with
        // one large logit does, for its own class.
        let rows = [
            [9.5f64.ln(), 0.0, f64::NEG_INFINITY],
            [8f64.ln(), 0.0, f64::NEG_INFINITY],
            [0.1, 0.0, 0.0],
            [0.0, 0.0, 20.0],
            [0.0, 30.0, 0.0],
        ];
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let logits = Tensor::from_slice(&flat).reshape([5, 3]);
        let (pred, c) = confidence(&logits, CONFIDENT);
        assert_eq!(Vec::<i64>::try_from(&pred).unwrap(), [0, 0, 0, 2, 1]);
        assert_eq!(c.per_class, [1, 1, 1]);
        assert_eq!((c.confident, c.n), (3, 5));
        assert!((c.rate() - 0.6).abs() < 1e-12);
    }
}
