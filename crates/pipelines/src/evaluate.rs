//! Test-set evaluation of any image model, from what it can do:
//! reconstruction error where it encodes and decodes, −log p(x) where it
//! has a density, and the family's own metrics (ELBO parts, active units).
use crate::progress::bar;
use crate::Result;
use clap::Args;
use embedlab_metrics::generative::{
    confidence, coverage, frechet_distance, precision_recall, Confidence, CONFIDENT,
};
use embedlab_models::batches::Split;
use embedlab_models::capabilities::{encode_all, logits_all, Classify, Encode};
use embedlab_models::capabilities::{labels_if, DensityKind, ImageModel};
use embedlab_models::latent::fitted_samples;
use embedlab_train::{Better, Metric};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::{Kind, Tensor};

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
    /// A classifier run (`embedlab train classifier` on the same images)
    /// whose features h(x) score generated images: Fréchet distance,
    /// precision/recall and class coverage, beside the real-data floor.
    #[arg(long)]
    #[serde(default)]
    pub classifier: Option<PathBuf>,
    /// Generated images scored, and real test images in each of the two
    /// real sets (fewer when the test set holds under twice as many).
    #[arg(long, default_value_t = 5000, value_parser = crate::opts::int(100, 1_000_000))]
    #[serde(default = "default_gen_samples")]
    pub gen_samples: i64,
    /// Samples scored after every epoch of training (`train
    /// --epoch-samples`; `eval` has no epochs, so no such option).
    #[arg(skip = DEFAULT_EPOCH_SAMPLES)]
    #[serde(default)]
    pub epoch_samples: i64,
}

/// Samples scored after every epoch when a classifier is given (runs made
/// before the option read 0: none).
pub const DEFAULT_EPOCH_SAMPLES: i64 = 1000;

fn default_gen_samples() -> i64 {
    5000
}

impl Default for EvalOpts {
    fn default() -> Self {
        Self {
            iwae_k: 1000,
            iwae_images: 500,
            classifier: None,
            gen_samples: default_gen_samples(),
            epoch_samples: DEFAULT_EPOCH_SAMPLES,
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
                DensityKind::Estimate(h) => format!("estimate: {h}"),
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

/// A trained classifier that scores generated images in its feature space.
pub struct Scorer<'a> {
    pub features: &'a dyn Encode,
    pub classify: &'a dyn Classify,
    /// Which run it is, for every metric's note: its folder, its weights'
    /// BLAKE3 and its test accuracy.
    pub provenance: String,
}

/// `n` images drawn from a model: its own samples, or decoded from a
/// Gaussian fitted to its codes when the codes follow no prior (an AE).
/// Labels, for conditional models, cycle through the classes. `codes`
/// gives the training codes when they are needed. `temperature` scales the
/// latent standard deviation of a model's own sampler (1: the model's own).
/// None when the model cannot generate.
pub fn draw_samples(
    m: &dyn ImageModel,
    codes: &mut dyn FnMut() -> Result<Tensor>,
    n: i64,
    temperature: f64,
    device: tch::Device,
) -> Result<Option<(Tensor, &'static str)>> {
    let labels = Tensor::arange(n, (Kind::Int64, device)).remainder(m.classes().max(1));
    let chunk = 500;
    let mut out = vec![];
    let how = if let Some(s) = m.sampler() {
        let mut done = 0;
        while done < n {
            let len = chunk.min(n - done);
            let y = labels_if(s.needs_labels(), &labels.narrow(0, done, len));
            out.push(s.sample(len, y.as_ref(), temperature)?);
            done += len;
        }
        "samples from the model"
    } else if let (Some(_), Some(dec)) = (m.encoder(), m.decoder()) {
        let c = codes()?;
        let _g = tch::no_grad_guard();
        let mut done = 0;
        while done < n {
            let len = chunk.min(n - done);
            let y = labels_if(dec.needs_labels(), &labels.narrow(0, done, len));
            out.push(fitted_samples(dec, &c, len, y.as_ref())?);
            done += len;
        }
        "samples decoded from a Gaussian fitted to the training codes"
    } else {
        return Ok(None);
    };
    Ok(Some((Tensor::cat(&out, 0), how)))
}

/// The rows of `x` whose values are all finite, and how many they are.
pub fn finite_rows(x: &Tensor) -> (Tensor, i64) {
    let keep = x
        .flatten(1, -1)
        .isfinite()
        .all_dim(1, false)
        .nonzero()
        .squeeze_dim(1);
    let n = keep.size()[0];
    (x.index_select(0, &keep), n)
}

/// Fréchet distance, precision/recall (k = 3) and class coverage of `fake`
/// against the first n test images in the scorer's features, each beside
/// the same metric between two disjoint real sets of n test images (the
/// floor a perfect generator would reach). n = min(`n`, half the test set).
pub fn generative_metrics(
    fake: &Tensor,
    test: &Split,
    scorer: &Scorer,
    n: i64,
) -> Result<Vec<Metric>> {
    let n = n.min(test.len() / 2).min(fake.size()[0]);
    if n < 10 {
        crate::fail!(
            "the generative metrics need at least 20 test images and 10 samples (have {} and {})",
            test.len(),
            fake.size()[0]
        );
    }
    let _g = tch::no_grad_guard();
    let fake = fake.narrow(0, 0, n).to_device(test.x.device());
    // Samples with a value that is not finite (a flow's inverse that
    // overflowed) are no image: counted, and left out of the scores, which
    // would otherwise turn NaN (and a NaN Fréchet distance read as 0).
    let (fake, kept) = finite_rows(&fake);
    let bad = n - kept;
    if kept < 10 {
        // A result, not an error: a flow whose inverse overflows everywhere
        // has finished training, and the study counts what it produced.
        return Ok(vec![Metric {
            name: "non-finite samples".into(),
            value: 100.0 * bad as f64 / n as f64,
            unit: "%".into(),
            better: Better::Lower,
            note: Some(format!(
                "{bad} of {n} samples with an infinite or NaN value: fewer than 10 finite, so no other score"
            )),
        }]);
    }
    let left_out = if bad > 0 {
        format!("; {bad} of {n} samples not finite, left out")
    } else {
        String::new()
    };
    let (a, b) = (test.x.narrow(0, 0, n), test.x.narrow(0, n, n));
    let none = test.y.narrow(0, 0, n);
    let feats = |x: &Tensor| encode_all(scorer.features, x, &none, 500);
    let (fa, fb, ff) = (feats(&a)?, feats(&b)?, feats(&fake)?);
    let classes = scorer.classify.classes();
    // Predicted classes and the confident-sample counts.
    let read = |x: &Tensor| -> Result<(Tensor, Confidence)> {
        Ok(confidence(&logits_all(scorer.classify, x, 500)?, CONFIDENT))
    };
    let ((lf, sf), (lb, sb)) = (read(&fake)?, read(&b)?);
    let (cf, cb) = (coverage(&lf, classes), coverage(&lb, classes));
    let (p, r) = precision_recall(&fa, &ff, 3);
    let (pb, rb) = precision_recall(&fa, &fb, 3);
    let fd = frechet_distance(&fa, &ff);
    let floor = frechet_distance(&fa, &fb);
    let how = format!(
        "{kept} samples vs test images 1–{n}; real floor: test images {}–{} vs 1–{n}{left_out}; {}",
        n + 1,
        2 * n,
        scorer.provenance
    );
    let metric = |name: &str, value: f64, unit: &str, better: Better, note: String| Metric {
        name: name.into(),
        value,
        unit: unit.into(),
        better,
        note: Some(note),
    };
    Ok(vec![
        metric(
            "non-finite samples",
            100.0 * bad as f64 / n as f64,
            "%",
            Better::Lower,
            format!("{bad} of {n} samples with an infinite or NaN value"),
        ),
        metric(
            "FD",
            fd,
            "",
            Better::Lower,
            format!("Fréchet distance in classifier features; {how}"),
        ),
        metric(
            "FD real floor",
            floor,
            "",
            Better::Neither,
            format!("two disjoint real sets of {n}"),
        ),
        metric(
            "precision",
            100.0 * p,
            "%",
            Better::Higher,
            format!("k = 3 (real floor {:.1}%)", 100.0 * pb),
        ),
        metric(
            "recall",
            100.0 * r,
            "%",
            Better::Higher,
            format!("k = 3 (real floor {:.1}%)", 100.0 * rb),
        ),
        metric(
            "classes covered",
            cf.classes_hit as f64,
            &format!("of {}", cf.classes),
            Better::Higher,
            format!(
                "predicted for ≥ ¼ of a fair share of {kept} samples (real: {}); samples per class: {}",
                cb.classes_hit,
                per_class(&cf.histogram)
            ),
        ),
        metric(
            "confident samples",
            100.0 * sf.rate(),
            "%",
            Better::Higher,
            format!(
                "{} of {kept} samples classified with probability ≥ {CONFIDENT} (real test images: {:.1}%); per class: {}",
                sf.confident,
                100.0 * sb.rate(),
                per_class(&sf.per_class)
            ),
        ),
        metric(
            "confident real",
            100.0 * sb.rate(),
            "%",
            Better::Neither,
            format!(
                "{} of {n} test images ({}–{}) classified with probability ≥ {CONFIDENT}",
                sb.confident,
                n + 1,
                2 * n
            ),
        ),
        metric(
            "class KL to uniform",
            cf.kl_to_uniform,
            "nats",
            Better::Lower,
            format!("predicted-label histogram (real: {:.3})", cb.kl_to_uniform),
        ),
    ])
}

/// "0: 12, 1: 40, …": a count per class, for a metric's note.
fn per_class(counts: &[i64]) -> String {
    counts
        .iter()
        .enumerate()
        .map(|(c, k)| format!("{c}: {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_a_non_finite_value_are_left_out() {
        let x = Tensor::from_slice(&[0.5f32, 0.1, f32::NAN, 0.2, 0.3, 0.4, f32::INFINITY, 0.0])
            .reshape([4, 1, 1, 2]);
        let (kept, n) = finite_rows(&x);
        assert_eq!(n, 2);
        assert_eq!(kept.size(), [2, 1, 1, 2]);
        assert_eq!(
            Vec::<f32>::try_from(kept.flatten(0, -1)).unwrap(),
            [0.5, 0.1, 0.3, 0.4]
        );
    }

    /// A sampler whose every sample overflowed has still finished: its
    /// score says so (100% non-finite) instead of failing the run.
    #[test]
    fn samples_that_are_all_non_finite_are_a_score_not_an_error() {
        use embedlab_models::classifier::{Classifier, ClassifierConfig};
        tch::manual_seed(0);
        let c = Classifier::new(
            ClassifierConfig {
                width: 4,
                features: 8,
                dropout: 0.0,
                channels: 1,
                height: 8,
                width_px: 8,
                classes: 3,
            },
            tch::Device::Cpu,
        )
        .unwrap();
        let scorer = Scorer {
            features: &c,
            classify: &c,
            provenance: "untrained".into(),
        };
        let test = Split {
            x: Tensor::rand([40, 1, 8, 8], (Kind::Float, tch::Device::Cpu)),
            y: Tensor::arange(40, (Kind::Int64, tch::Device::Cpu)).remainder(3),
        };
        let fake = Tensor::rand([20, 1, 8, 8], (Kind::Float, tch::Device::Cpu));
        let _ = fake.narrow(0, 0, 15).fill_(f64::NAN);
        let m = generative_metrics(&fake, &test, &scorer, 20).unwrap();
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].name, "non-finite samples");
        assert_eq!(m[0].value, 75.0);
        // With 10 finite samples, all the scores are there.
        let _ = fake.narrow(0, 0, 10).fill_(0.5);
        let m = generative_metrics(&fake, &test, &scorer, 20).unwrap();
        assert_eq!(m[0].value, 25.0);
        assert!(m.iter().any(|x| x.name == "FD" && x.value.is_finite()));
    }
}
