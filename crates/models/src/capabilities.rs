//! What a trained image model can do, as small traits: encode images to a
//! representation, decode codes to images, sample images, give a
//! log-density. Analysis and evaluation are written against these, never
//! against a family, so each family gets every tool that applies to it: a
//! GAN samples and interpolates, a flow does all four, a classifier
//! encodes. Raw pixels and PCA encode too, so they sit in the same
//! comparisons as the learned representations.
use crate::batches::Split;
use crate::error::{ModelError, Result};
use embedlab_train::Metric;
use tch::{Kind, Tensor};

/// Images → an n × k representation.
pub trait Encode {
    /// k.
    fn code_dim(&self) -> i64;
    /// Whether `encode` needs the images' labels (conditional models).
    fn needs_labels(&self) -> bool {
        false
    }
    /// What the representation is ("VAE posterior means", "raw pixels").
    fn what(&self) -> String;
    /// `x`: n × c × h × w in [0, 1]; `y`: labels (i64) when needed.
    fn encode(&self, x: &Tensor, y: Option<&Tensor>) -> Result<Tensor>;
}

/// How a decoder's latent space is meant to be sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prior {
    /// N(0, I): VAEs, GANs, flows.
    StandardNormal,
    /// None: the codes' own distribution is what there is (a plain AE).
    Codes,
}

/// Codes → images.
pub trait Decode {
    fn latent_dim(&self) -> i64;
    fn needs_labels(&self) -> bool {
        false
    }
    fn prior(&self) -> Prior;
    /// Mean images, n × c × h × w in [0, 1].
    fn decode(&self, z: &Tensor, y: Option<&Tensor>) -> Result<Tensor>;
}

/// Draws images.
pub trait Sample {
    fn needs_labels(&self) -> bool {
        false
    }
    /// `n` images (of the classes `y` when the model is conditional); the
    /// temperature scales the latent standard deviation (1: the model's own).
    fn sample(&self, n: i64, y: Option<&Tensor>, temperature: f64) -> Result<Tensor>;
}

/// Whether a density value is exact or a bound.
#[derive(Clone, Debug, PartialEq)]
pub enum DensityKind {
    Exact,
    /// An upper bound on −log p(x) (e.g. the IWAE bound), with how it was estimated.
    UpperBound(String),
    /// A stochastic estimate (e.g. a power series with a trace estimator),
    /// with how it was obtained.
    Estimate(String),
}

/// −log p(x) (or −log p(x | y) for a conditional model), nats per image.
pub trait Density {
    fn needs_labels(&self) -> bool {
        false
    }
    /// How the value is obtained with `samples` (ignored by exact densities).
    fn density_kind(&self, samples: i64) -> DensityKind;
    /// Per image; `samples` is the estimator's sample count where it has one.
    fn nll(&self, x: &Tensor, y: Option<&Tensor>, samples: i64) -> Result<Tensor>;
}

/// Images → class scores (a classifier; also the feature extractor of the
/// generative metrics through its [`Encode`]).
pub trait Classify {
    fn classes(&self) -> i64;
    /// Logits, n × classes.
    fn logits(&self, x: &Tensor) -> Result<Tensor>;
}

/// A trained image model, seen through what it can do.
pub trait ImageModel {
    /// The short name of its kind (`vae`).
    fn name(&self) -> String;
    /// One line on its configuration.
    fn describe(&self) -> String;
    /// The number of classes it was built for.
    fn classes(&self) -> i64;
    /// The encoder whose codes the decoder (if any) takes back to images.
    fn encoder(&self) -> Option<&dyn Encode> {
        None
    }
    /// A representation of images for the representation benchmark: the
    /// encoder's code, or features that are no decoder's input (a GAN's
    /// discriminator).
    fn representation(&self) -> Option<&dyn Encode> {
        self.encoder()
    }
    fn decoder(&self) -> Option<&dyn Decode> {
        None
    }
    fn sampler(&self) -> Option<&dyn Sample> {
        None
    }
    fn density(&self) -> Option<&dyn Density> {
        None
    }
    fn classifier(&self) -> Option<&dyn Classify> {
        None
    }
    /// Test metrics only this family defines (ELBO parts, active units),
    /// beside the generic ones the evaluation computes from the capabilities.
    fn family_metrics(&self, _test: &Split) -> Result<Vec<Metric>> {
        Ok(vec![])
    }
}

/// Labels for an encoder or decoder that needs them.
pub fn labels_if(needed: bool, y: &Tensor) -> Option<Tensor> {
    needed.then(|| y.shallow_clone())
}

/// The codes of a whole image set, `batch` images at a time, without gradients.
pub fn encode_all(enc: &dyn Encode, x: &Tensor, y: &Tensor, batch: i64) -> Result<Tensor> {
    let _g = tch::no_grad_guard();
    let n = x.size()[0];
    let mut out = vec![];
    let mut s = 0;
    while s < n {
        let len = batch.min(n - s);
        let yb = y.narrow(0, s, len);
        out.push(enc.encode(
            &x.narrow(0, s, len),
            labels_if(enc.needs_labels(), &yb).as_ref(),
        )?);
        s += len;
    }
    if out.is_empty() {
        return Ok(Tensor::zeros(
            [0, enc.code_dim()],
            (Kind::Float, x.device()),
        ));
    }
    Ok(Tensor::cat(&out, 0))
}

/// The logits of every image of `x`, `batch` images at a time, without
/// gradients (n × classes).
pub fn logits_all(c: &dyn Classify, x: &Tensor, batch: i64) -> Result<Tensor> {
    let _g = tch::no_grad_guard();
    let n = x.size()[0];
    let mut out = vec![];
    let mut s = 0;
    while s < n {
        let len = batch.min(n - s);
        out.push(c.logits(&x.narrow(0, s, len))?);
        s += len;
    }
    if out.is_empty() {
        return Ok(Tensor::zeros([0, c.classes()], (Kind::Float, x.device())));
    }
    Ok(Tensor::cat(&out, 0))
}

/// Raw pixels as a representation (the baseline every learned one is
/// compared with).
pub struct Pixels {
    pub dim: i64,
}

impl Encode for Pixels {
    fn code_dim(&self) -> i64 {
        self.dim
    }
    fn what(&self) -> String {
        format!("raw pixels ({})", self.dim)
    }
    fn encode(&self, x: &Tensor, _y: Option<&Tensor>) -> Result<Tensor> {
        Ok(x.flatten(1, -1).to_kind(Kind::Float))
    }
}

/// The first k principal components of the pixels, fitted on training
/// images: the linear baseline of a learned k-dimensional code.
pub struct Pca {
    mean: Tensor,
    /// d × k, orthonormal columns, by decreasing variance.
    components: Tensor,
    /// Share of the pixel variance the k components keep.
    pub variance_kept: f64,
}

impl Pca {
    pub fn fit(x: &Tensor, k: i64) -> Result<Self> {
        let _g = tch::no_grad_guard();
        let x = x.flatten(1, -1).to_kind(Kind::Double);
        let (n, d) = (x.size()[0], x.size()[1]);
        if k < 1 || k > d || n < 2 {
            return Err(ModelError::Invalid(format!(
                "PCA with {k} components of {d}-dimensional data needs 1 ≤ k ≤ {d} and at least 2 images (got {n})"
            )));
        }
        let mean = x.mean_dim(0, true, Kind::Double);
        let c = &x - &mean;
        let cov = c.tr().matmul(&c) / (n - 1) as f64;
        let (vals, vecs) = cov.linalg_eigh("L");
        // eigh sorts ascending: take the last k, largest first.
        let idx = Tensor::arange_start_step(d - 1, d - 1 - k, -1, (Kind::Int64, x.device()));
        let components = vecs.index_select(1, &idx);
        let total = vals.sum(Kind::Double).double_value(&[]);
        let kept = vals
            .index_select(0, &idx)
            .sum(Kind::Double)
            .double_value(&[]);
        Ok(Self {
            mean: mean.to_kind(Kind::Float),
            components: components.to_kind(Kind::Float),
            variance_kept: if total > 0.0 { kept / total } else { 0.0 },
        })
    }
}

impl Encode for Pca {
    fn code_dim(&self) -> i64 {
        self.components.size()[1]
    }
    fn what(&self) -> String {
        format!(
            "PCA of the pixels ({} components, {:.1}% of the variance)",
            self.code_dim(),
            100.0 * self.variance_kept
        )
    }
    fn encode(&self, x: &Tensor, _y: Option<&Tensor>) -> Result<Tensor> {
        Ok((x.flatten(1, -1).to_kind(Kind::Float) - &self.mean).matmul(&self.components))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn pca_finds_the_plane_the_data_lie_in() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(0);
        // Points in a random 2-D plane of 6-D space, plus a little noise.
        let basis = Tensor::randn([2, 6], (Kind::Float, Device::Cpu));
        let x = Tensor::randn([500, 2], (Kind::Float, Device::Cpu)).matmul(&basis)
            + Tensor::randn([500, 6], (Kind::Float, Device::Cpu)) * 0.01;
        let p = Pca::fit(&x, 2).unwrap();
        assert!(p.variance_kept > 0.999, "{}", p.variance_kept);
        let z = p.encode(&x, None).unwrap();
        // Distances in the plane are kept.
        let d_in = (x.get(0) - x.get(1)).norm().double_value(&[]);
        let d_out = (z.get(0) - z.get(1)).norm().double_value(&[]);
        assert!((d_in - d_out).abs() < 0.05 * d_in, "{d_in} vs {d_out}");
        assert!(Pca::fit(&x, 7).is_err());
    }

    #[test]
    fn encode_all_equals_one_pass() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        let x = Tensor::rand([7, 1, 2, 2], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([7], (Kind::Int64, Device::Cpu));
        let p = Pixels { dim: 4 };
        let a = encode_all(&p, &x, &y, 3).unwrap();
        assert!(a.equal(&x.flatten(1, -1)));
    }

    #[test]
    fn logits_all_equals_one_pass() {
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(0);
        let c = crate::classifier::Classifier::new(
            crate::classifier::ClassifierConfig {
                width: 4,
                features: 8,
                dropout: 0.5,
                channels: 1,
                height: 8,
                width_px: 8,
                classes: 3,
            },
            Device::Cpu,
        )
        .unwrap();
        let x = Tensor::rand([7, 1, 8, 8], (Kind::Float, Device::Cpu));
        let a = logits_all(&c, &x, 3).unwrap();
        assert_eq!(a.size(), [7, 3]);
        assert!(a.allclose(&c.logits(&x).unwrap(), 1e-5, 1e-6, false));
        assert_eq!(
            logits_all(&c, &x.narrow(0, 0, 0), 3).unwrap().size(),
            [0, 3]
        );
    }
}
