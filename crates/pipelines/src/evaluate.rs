//! Test-set evaluation of any image model, from what it can do:
//! reconstruction error where it encodes and decodes, −log p(x) where it
//! has a density, and the family's own metrics (ELBO parts, active units).
use crate::progress::bar;
use crate::Result;
use clap::Args;
use embedlab_models::batches::Split;
use embedlab_models::capabilities::{labels_if, DensityKind, ImageModel};
use embedlab_train::{Better, Metric};
use serde::{Deserialize, Serialize};
use tch::Kind;

/// Test-set evaluation options.
#[derive(Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EvalOpts {
    /// Samples per image of a density estimator (the IWAE bound's k; 0 skips
    /// the density).
    #[arg(long, default_value_t = 1000, value_parser = crate::opts::int(0, 1_000_000))]
    pub iwae_k: i64,
    /// Test images the density averages over (the other metrics use all).
    #[arg(long, default_value_t = 500, value_parser = crate::opts::int(0, 1_000_000))]
    pub iwae_images: i64,
}

impl Default for EvalOpts {
    fn default() -> Self {
        Self {
            iwae_k: 1000,
            iwae_images: 500,
        }
    }
}

/// Test metrics, drawn with a fixed seed (binarisation, posterior samples).
/// Gradients are off except where a model's density asks for them (an
/// estimator built on vector–Jacobian products): each capability decides.
pub fn test_metrics(
    m: &dyn ImageModel,
    test: &Split,
    o: &EvalOpts,
    seed: i64,
) -> Result<Vec<Metric>> {
    tch::manual_seed(seed ^ 0x7e57);
    let mut out = m.family_metrics(test)?;
    if let (Some(enc), Some(dec)) = (m.encoder(), m.decoder()) {
        let _g = tch::no_grad_guard();
        let mut se = 0.0;
        for (x, y) in test.batches(500) {
            let ye = labels_if(enc.needs_labels(), &y);
            let yd = labels_if(dec.needs_labels(), &y);
            let rec = dec.decode(&enc.encode(&x, ye.as_ref())?, yd.as_ref())?;
            se += (rec - &x).square().sum(Kind::Double).double_value(&[]);
        }
        out.push(Metric {
            name: "rec. MSE".into(),
            value: se / test.x.numel().max(1) as f64,
            unit: "per pixel".into(),
            better: Better::Lower,
            note: Some(format!("mean reconstruction of {} test images", test.len())),
        });
    }
    if let Some(d) = m.density() {
        if o.iwae_k > 0 && o.iwae_images > 0 {
            let n = o.iwae_images.min(test.len());
            let pb = bar(n as u64, format!("test NLL, {} samples an image", o.iwae_k));
            let chunk = 10;
            let mut total = 0.0;
            let mut s = 0;
            while s < n {
                let len = chunk.min(n - s);
                let y = test.y.narrow(0, s, len);
                let yy = labels_if(d.needs_labels(), &y);
                total += d
                    .nll(&test.x.narrow(0, s, len), yy.as_ref(), o.iwae_k)?
                    .sum(Kind::Double)
                    .double_value(&[]);
                s += len;
                pb.inc(len as u64);
            }
            pb.finish_and_clear();
            let how = match d.density_kind(o.iwae_k) {
                DensityKind::Exact => "exact".to_string(),
                DensityKind::UpperBound(h) => format!("upper bound: {h}"),
            };
            let of = if d.needs_labels() {
                "−log p(x|y)"
            } else {
                "−log p(x)"
            };
            out.push(Metric {
                name: "test NLL".into(),
                value: total / n as f64,
                unit: "nats/image".into(),
                better: Better::Lower,
                note: Some(format!("{of}, {how}, first {n} test images")),
            });
        }
    }
    Ok(out)
}
