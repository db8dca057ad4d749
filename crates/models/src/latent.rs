//! From codes to images, for any model that decodes: samples from a
//! Gaussian fitted to codes, interpolations and traversals of single latent
//! dimensions, and the activity of each dimension.
use crate::capabilities::{Decode, Encode};
use crate::error::{ModelError, Result};
use tch::{Kind, Tensor};

/// A Gaussian fitted to codes (mean and Cholesky factor of the
/// covariance): how a plain AE can be sampled at all.
pub struct GaussianFit {
    pub mean: Tensor,
    pub chol: Tensor,
}

impl GaussianFit {
    pub fn fit(codes: &Tensor) -> Result<Self> {
        let n = codes.size()[0];
        if n < 2 {
            return Err(ModelError::Invalid(
                "fitting a Gaussian needs ≥ 2 codes".into(),
            ));
        }
        let c = codes.to_kind(Kind::Double);
        let mean = c.mean_dim(0, true, Kind::Double);
        let d = &c - &mean;
        let k = codes.size()[1];
        let cov = d.tr().matmul(&d) / (n - 1) as f64
            + Tensor::eye(k, (Kind::Double, codes.device())) * 1e-6;
        let chol = cov.linalg_cholesky(false);
        Ok(Self { mean, chol })
    }
    pub fn sample(&self, n: i64) -> Tensor {
        let k = self.mean.size()[1];
        let e = Tensor::randn([n, k], (Kind::Double, self.mean.device()));
        (&self.mean + e.matmul(&self.chol.tr())).to_kind(Kind::Float)
    }
}

/// Images decoded from a Gaussian fitted to `codes` (how a decoder whose
/// codes follow no prior, a plain AE, can be sampled at all); `labels`
/// condition a conditional decoder.
pub fn fitted_samples(
    dec: &dyn Decode,
    codes: &Tensor,
    n: i64,
    labels: Option<&Tensor>,
) -> Result<Tensor> {
    let _g = tch::no_grad_guard();
    let z = GaussianFit::fit(codes)?.sample(n);
    dec.decode(&z, labels)
}

/// Linear interpolation between the codes of two images, `steps` images
/// from a to b (the label of `a` conditions a conditional model).
pub fn interpolate(
    enc: &dyn Encode,
    dec: &dyn Decode,
    a: &Tensor,
    b: &Tensor,
    label: Option<&Tensor>,
    steps: i64,
) -> Result<Tensor> {
    let _g = tch::no_grad_guard();
    let za = enc.encode(&a.unsqueeze(0), label)?;
    let zb = enc.encode(&b.unsqueeze(0), label)?;
    interpolate_codes(dec, &za, &zb, label, steps)
}

/// Images decoded along the line from code `za` to `zb` (1 × k each).
pub fn interpolate_codes(
    dec: &dyn Decode,
    za: &Tensor,
    zb: &Tensor,
    label: Option<&Tensor>,
    steps: i64,
) -> Result<Tensor> {
    let _g = tch::no_grad_guard();
    let t = Tensor::linspace(0.0, 1.0, steps, (Kind::Float, za.device())).unsqueeze(1);
    let z = za * (1.0 - &t) + zb * &t;
    let lab = label.map(|l| l.expand([steps], false));
    dec.decode(&z, lab.as_ref())
}

/// The same interpolation in pixel space (a cross-fade), for comparison.
pub fn crossfade(a: &Tensor, b: &Tensor, steps: i64) -> Tensor {
    let t = Tensor::linspace(0.0, 1.0, steps, (Kind::Float, a.device())).reshape([steps, 1, 1, 1]);
    a.unsqueeze(0) * (1.0 - &t) + b.unsqueeze(0) * &t
}

/// Traversals: row i varies latent dimension `dims[i]` of `base` over
/// `values`, the others fixed. Returns len(dims) · len(values) images.
pub fn traverse(
    dec: &dyn Decode,
    base: &Tensor,
    dims: &[i64],
    values: &[f64],
    label: Option<&Tensor>,
) -> Result<Tensor> {
    let _g = tch::no_grad_guard();
    let k = dec.latent_dim();
    let mut zs = vec![];
    for &d in dims {
        if d < 0 || d >= k {
            return Err(ModelError::Invalid(format!(
                "latent dimension {d} does not exist (the code has {k})"
            )));
        }
        for &v in values {
            let z = base.reshape([1, -1]).copy();
            let _ = z.get(0).get(d).fill_(v);
            zs.push(z);
        }
    }
    if zs.is_empty() {
        return Err(ModelError::Invalid(
            "a traversal needs at least one dimension and one value".into(),
        ));
    }
    let z = Tensor::cat(&zs, 0);
    let lab = label.map(|l| l.expand([z.size()[0]], false));
    dec.decode(&z, lab.as_ref())
}

/// Variance of each code dimension across images (for a VAE, of the
/// posterior means: Burda et al.'s unit activity). Dimensions the model
/// ignores have (near) zero activity.
pub fn activity(codes: &Tensor) -> Vec<f64> {
    let v = codes.to_kind(Kind::Double).var_dim(0, true, false);
    Vec::<f64>::try_from(&v.to_device(tch::Device::Cpu)).unwrap_or_default()
}

/// Dimensions in order of decreasing activity.
pub fn by_activity(codes: &Tensor) -> Vec<i64> {
    let a = activity(codes);
    let mut idx: Vec<i64> = (0..a.len() as i64).collect();
    idx.sort_by(|&i, &j| a[j as usize].total_cmp(&a[i as usize]));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_fit_recovers_mean_and_covariance() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(0);
        let a = Tensor::from_slice(&[2.0f64, 0.0, 1.0, 0.5]).reshape([2, 2]);
        let codes = (Tensor::randn([20000, 2], (Kind::Double, tch::Device::Cpu)).matmul(&a.tr())
            + Tensor::from_slice(&[1.0f64, -3.0]))
        .to_kind(Kind::Float);
        let g = GaussianFit::fit(&codes).unwrap();
        let s = g.sample(20000).to_kind(Kind::Double);
        let m = s.mean_dim(0, false, Kind::Double);
        assert!(
            (m.double_value(&[0]) - 1.0).abs() < 0.1 && (m.double_value(&[1]) + 3.0).abs() < 0.1
        );
        let d = &s - m;
        let cov = d.tr().matmul(&d) / 19999.0;
        let want = a.matmul(&a.tr());
        let err = (cov - want).abs().max().double_value(&[]);
        assert!(err < 0.15, "{err}");
    }

    #[test]
    fn activity_ranks_the_dimensions_by_spread() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(0);
        let scales = Tensor::from_slice(&[0.01f32, 2.0, 0.5]);
        let codes = Tensor::randn([5000, 3], (Kind::Float, tch::Device::Cpu)) * scales;
        assert_eq!(by_activity(&codes), [1, 2, 0]);
        let a = activity(&codes);
        assert!((a[1] - 4.0).abs() < 0.3 && a[0] < 0.01, "{a:?}");
    }

    #[test]
    fn crossfade_ends_at_both_images() {
        let a = Tensor::zeros([1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let b = Tensor::ones([1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let c = crossfade(&a, &b, 5);
        assert!(c.get(0).equal(&a) && c.get(4).equal(&b));
        assert!((c.get(2).mean(Kind::Float).double_value(&[]) - 0.5).abs() < 1e-6);
    }
}
