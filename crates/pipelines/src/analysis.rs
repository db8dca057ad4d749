//! What can be learned about a trained image model, written once against
//! its capabilities: samples (its own, or from a Gaussian fitted to its
//! codes), class-conditional rows, reconstructions, interpolations (with
//! the pixel cross-fade), traversals, 2-D maps of its codes, query by
//! image, linear probes and k-NN — each where the model can do what it
//! needs, with raw pixels and PCA as the baselines every representation is
//! compared with.
use crate::evaluate::draw_samples;
use crate::progress::spinner;
use crate::{PipelineError, Result};
use clap::{Args, ValueEnum};
use embedlab_metrics::neighbours::knn;
use embedlab_metrics::probe::{linear_probe, ProbeConfig};
use embedlab_models::batches::{Split, Splits};
use embedlab_models::capabilities::{
    encode_all, labels_if, Encode, ImageModel, Pca, Pixels, Prior,
};
use embedlab_models::latent::{
    by_activity, crossfade, fitted_samples, interpolate, interpolate_codes, traverse,
};
use embedlab_reports::grid::{save_grid, GridStyle};
use embedlab_reports::projection::{pca_2d, tsne_2d};
use embedlab_reports::scatter::save_scatter;
use embedlab_train::{Better, Figure, Metric};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// What the standard analysis after training draws.
#[derive(Args, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct AnalysisOpts {
    /// Skip the image grids, maps, query and probes after training.
    #[arg(long)]
    pub no_images: bool,
    /// Also draw a t-SNE map of the codes (PCA always).
    #[arg(long)]
    pub tsne: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMethod {
    Pca,
    Tsne,
}

/// At most this many training images are encoded for the tools that need
/// training codes (fitted-Gaussian samples, query, probe).
pub const CODE_LIMIT: i64 = 10_000;

/// The temperatures of the sample grid of models with a density.
pub const TEMPERATURES: [f64; 5] = [0.0, 0.5, 0.7, 0.85, 1.0];

/// Same-class statistics of query by image in one representation.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct QueryStats {
    pub representation: String,
    pub queries: i64,
    pub k: i64,
    /// Share of the k nearest training images that have the query's label.
    pub same_class: f64,
}

/// The codes of (at most [`CODE_LIMIT`]) training images, and those
/// images: what fitted-Gaussian samples, query and probes work from.
pub fn training_codes(enc: &dyn Encode, train: &Split) -> Result<(Tensor, Split)> {
    let tr = train.head(CODE_LIMIT);
    let codes = encode_all(enc, &tr.x, &tr.y, 1000)?;
    Ok((codes, tr))
}

/// A trained model with its data, for the tools.
pub struct Analysis<'a> {
    dir: &'a Path,
    model: &'a dyn ImageModel,
    splits: &'a Splits,
    classes: &'a [String],
    seed: i64,
    codes: std::cell::OnceCell<(Tensor, Split)>,
}

fn range_check(what: &str, v: i64, lo: i64, hi: i64) -> Result<()> {
    if v < lo || v > hi {
        return Err(PipelineError::Invalid(format!(
            "{what} {v} is out of range: give {lo}..={hi}"
        )));
    }
    Ok(())
}

impl<'a> Analysis<'a> {
    pub fn new(
        dir: &'a Path,
        model: &'a dyn ImageModel,
        splits: &'a Splits,
        classes: &'a [String],
        seed: i64,
    ) -> Self {
        Self {
            dir,
            model,
            splits,
            classes,
            seed,
            codes: Default::default(),
        }
    }

    fn save(&self, name: &str, images: &Tensor, columns: i64) -> Result<()> {
        let h = self.splits.test.x.size()[2];
        let style = GridStyle {
            columns,
            scale: if h <= 32 { 2 } else { 1 },
            pad: 2,
        };
        save_grid(&self.dir.join(name), images, &style)?;
        Ok(())
    }

    fn encoder(&self, what: &str) -> Result<&'a dyn Encode> {
        self.model.encoder().ok_or_else(|| {
            PipelineError::Invalid(format!(
                "{what} needs a model that encodes; a {} does not",
                self.model.name()
            ))
        })
    }

    fn test_image(&self, index: i64) -> Result<()> {
        range_check("test image", index, 0, self.splits.test.len() - 1)
    }

    /// Codes of (at most 10,000) training images, and those images.
    pub fn train_codes(&self) -> Result<&(Tensor, Split)> {
        if let Some(c) = self.codes.get() {
            return Ok(c);
        }
        let enc = self.encoder("training codes")?;
        let codes = training_codes(enc, &self.splits.train)?;
        Ok(self.codes.get_or_init(|| codes))
    }

    /// Every figure and metric that applies to the model.
    pub fn standard(&self, opts: &AnalysisOpts) -> Result<(Vec<Figure>, Vec<Metric>)> {
        let sp = spinner("drawing samples, reconstructions, interpolations, maps");
        let mut figs = vec![];
        let mut metrics = vec![];
        if let Some(f) = self.samples(100, 1.0)? {
            figs.push(f);
        }
        if self.model.density().is_some() {
            if let Some(f) = self.temperatures(&TEMPERATURES, 10)? {
                figs.push(f);
            }
        }
        if let Some(f) = self.class_samples(10)? {
            figs.push(f);
        }
        if let Some((f, m)) = self.nearest_training(20)? {
            figs.push(f);
            metrics.extend(m);
        }
        if let Some(f) = self.reconstructions(30)? {
            figs.push(f);
        }
        let t = &self.splits.test;
        let pairs: Vec<(i64, i64)> = (0..4)
            .filter_map(|i| Some((t.first_of_class(2 * i)?, t.first_of_class(2 * i + 1)?)))
            .collect();
        let pairs = if pairs.is_empty() {
            vec![(0, 1.min(t.len() - 1))]
        } else {
            pairs
        };
        if let Some(f) = self.interpolations(&pairs, 10)? {
            figs.push(f);
        }
        if let Some(f) = self.traversal(0, 8, 3.0, 10)? {
            figs.push(f);
        }
        if self.model.encoder().is_some() {
            figs.push(self.map(MapMethod::Pca, 2000)?);
            if opts.tsne {
                figs.push(self.map(MapMethod::Tsne, 2000)?);
            }
            sp.set_message("query by image, k-NN and linear probes");
            let (stats, fig) = self.query(0, 8, 1000)?;
            figs.push(fig);
            for s in stats {
                metrics.push(Metric {
                    name: format!("8-NN same class, {}", s.representation),
                    value: 100.0 * s.same_class,
                    unit: "%".into(),
                    better: Better::Higher,
                    note: Some(format!(
                        "{} test queries among {} training images",
                        s.queries,
                        CODE_LIMIT.min(self.splits.train.len())
                    )),
                });
            }
            metrics.extend(self.probe(CODE_LIMIT)?);
        }
        sp.finish_and_clear();
        Ok((figs, metrics))
    }

    /// The representations compared with the model's: raw pixels and PCA
    /// with as many components as the model's code.
    fn baselines(&self, k: i64) -> Result<Vec<(String, Box<dyn Encode>)>> {
        let tr = self.splits.train.head(CODE_LIMIT);
        let d = tr.x.flatten(1, -1).size()[1];
        let mut v: Vec<(String, Box<dyn Encode>)> =
            vec![("pixels".into(), Box::new(Pixels { dim: d }))];
        if k < d {
            v.push((format!("PCA-{k}"), Box::new(Pca::fit(&tr.x, k)?)));
        }
        Ok(v)
    }

    /// Samples: the model's own, or decoded from a Gaussian fitted to its
    /// training codes when its codes follow no prior; a temperature other
    /// than 1 scales the latent standard deviation of a model's own sampler.
    pub fn samples(&self, n: i64, temperature: f64) -> Result<Option<Figure>> {
        range_check("--n", n, 1, 10_000)?;
        tch::manual_seed(self.seed ^ 0x5a);
        // A temperature other than 1 needs the model's own sampler (a
        // Gaussian fitted to an AE's codes has no temperature of its own).
        if temperature != 1.0 && self.model.sampler().is_none() {
            return Ok(None);
        }
        let mut codes = || Ok(self.train_codes()?.0.shallow_clone());
        let Some((imgs, how)) = draw_samples(
            self.model,
            &mut codes,
            n,
            temperature,
            self.splits.test.x.device(),
        )?
        else {
            return Ok(None);
        };
        let (file, caption) = if temperature == 1.0 {
            ("samples.png".to_string(), how.to_string())
        } else {
            (
                format!("samples-t{temperature}.png"),
                format!("{how} at temperature {temperature}"),
            )
        };
        self.save(&file, &imgs, 10)?;
        Ok(Some(Figure { file, caption }))
    }

    /// One row of `per_row` samples a temperature, the same noise scaled
    /// in every row (temperature 0 is the prior's mode).
    pub fn temperatures(&self, temps: &[f64], per_row: i64) -> Result<Option<Figure>> {
        let Some(s) = self.model.sampler() else {
            return Ok(None);
        };
        let dev = self.splits.test.x.device();
        let y = Tensor::arange(per_row, (Kind::Int64, dev)).remainder(self.model.classes().max(1));
        let y = labels_if(s.needs_labels(), &y);
        let mut rows = vec![];
        for &t in temps {
            tch::manual_seed(self.seed ^ 0x7e);
            rows.push(s.sample(per_row, y.as_ref(), t)?);
        }
        self.save("temperatures.png", &Tensor::cat(&rows, 0), per_row)?;
        Ok(Some(Figure {
            file: "temperatures.png".into(),
            caption: format!(
                "samples at temperatures {} (one row each, the same noise scaled)",
                temps
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }))
    }

    /// The memorisation check: `n` samples (top row of each pair) and the
    /// training image nearest to each in pixels (row under it), with the
    /// mean nearest-training distance of samples beside that of test
    /// images (a model that copies its training images brings the first
    /// far below the second).
    pub fn nearest_training(&self, n: i64) -> Result<Option<(Figure, Vec<Metric>)>> {
        range_check("--n", n, 1, 10_000)?;
        tch::manual_seed(self.seed ^ 0x5d);
        let mut codes = || Ok(self.train_codes()?.0.shallow_clone());
        let Some((fake, _)) = draw_samples(
            self.model,
            &mut codes,
            500.max(n),
            1.0,
            self.splits.test.x.device(),
        )?
        else {
            return Ok(None);
        };
        let _g = tch::no_grad_guard();
        let train = &self.splits.train.x;
        let (idx, dist) = knn(&fake, train, 1);
        let test = self.splits.test.head(500);
        let (_, tdist) = knn(&test.x, train, 1);
        let mut rows = vec![];
        for s in (0..n).step_by(10) {
            let len = 10.min(n - s);
            rows.push(fake.narrow(0, s, len));
            rows.push(train.index_select(0, &idx.narrow(0, s, len).squeeze_dim(1)));
        }
        self.save("nearest-training.png", &Tensor::cat(&rows, 0), 10)?;
        let mean = |t: &Tensor| t.mean(Kind::Double).double_value(&[]);
        let (df, dt) = (mean(&dist), mean(&tdist));
        let metric = Metric {
            name: "sample→train NN distance".into(),
            value: df / dt.max(1e-12),
            unit: "× test's".into(),
            better: Better::Neither,
            note: Some(format!(
                "mean pixel distance of {} samples to their nearest training image ({df:.3}) over that of {} test images ({dt:.3}); well below 1 means copying",
                fake.size()[0],
                test.len()
            )),
        };
        Ok(Some((
            Figure {
                file: "nearest-training.png".into(),
                caption: "memorisation check: samples (odd rows) and the nearest training image to each (even rows)".into(),
            },
            vec![metric],
        )))
    }

    /// Rows of `per_class` samples, one row a class (conditional models).
    pub fn class_samples(&self, per_class: i64) -> Result<Option<Figure>> {
        range_check("--per-class", per_class, 1, 1000)?;
        tch::manual_seed(self.seed ^ 0x5b);
        let c = self.model.classes();
        let y = Tensor::arange(c, (Kind::Int64, self.splits.test.x.device()))
            .repeat_interleave_self_int(per_class, 0, None);
        let imgs = match (self.model.sampler(), self.model.decoder()) {
            (Some(s), _) if s.needs_labels() => s.sample(c * per_class, Some(&y), 1.0)?,
            (None, Some(dec)) if dec.needs_labels() && dec.prior() == Prior::Codes => {
                let codes = &self.train_codes()?.0;
                fitted_samples(dec, codes, c * per_class, Some(&y))?
            }
            _ => return Ok(None),
        };
        self.save("class-samples.png", &imgs, per_class)?;
        Ok(Some(Figure {
            file: "class-samples.png".into(),
            caption: "class-conditional samples, one row a class".into(),
        }))
    }

    /// Test images and their reconstructions, alternating rows of 10.
    pub fn reconstructions(&self, n: i64) -> Result<Option<Figure>> {
        range_check("--n", n, 1, 10_000)?;
        let (Some(enc), Some(dec)) = (self.model.encoder(), self.model.decoder()) else {
            return Ok(None);
        };
        let _g = tch::no_grad_guard();
        let t = self.splits.test.spread(n);
        let ye = labels_if(enc.needs_labels(), &t.y);
        let yd = labels_if(dec.needs_labels(), &t.y);
        let rec = dec.decode(&enc.encode(&t.x, ye.as_ref())?, yd.as_ref())?;
        let mut rows = vec![];
        for s in (0..t.len()).step_by(10) {
            let len = 10.min(t.len() - s);
            rows.push(t.x.narrow(0, s, len));
            rows.push(rec.narrow(0, s, len));
        }
        self.save("reconstructions.png", &Tensor::cat(&rows, 0), 10)?;
        Ok(Some(Figure {
            file: "reconstructions.png".into(),
            caption: "test images (odd rows) and their reconstructions (even rows)".into(),
        }))
    }

    /// For each pair of test images, the latent interpolation and under it
    /// the pixel cross-fade; a model that decodes but does not encode
    /// interpolates between random points of its prior instead.
    pub fn interpolations(&self, pairs: &[(i64, i64)], steps: i64) -> Result<Option<Figure>> {
        range_check("--steps", steps, 2, 100)?;
        let t = &self.splits.test;
        let Some(dec) = self.model.decoder() else {
            return Ok(None);
        };
        let mut rows = vec![];
        let caption = if let Some(enc) = self.model.encoder() {
            for &(i, j) in pairs {
                self.test_image(i)?;
                self.test_image(j)?;
                let (a, b) = (t.x.get(i), t.x.get(j));
                let lab = t.y.narrow(0, i, 1);
                let le = labels_if(enc.needs_labels() || dec.needs_labels(), &lab);
                rows.push(interpolate(enc, dec, &a, &b, le.as_ref(), steps)?);
                rows.push(crossfade(&a, &b, steps));
            }
            "latent interpolations between test images, each with the pixel cross-fade under it"
        } else if dec.prior() == Prior::StandardNormal {
            tch::manual_seed(self.seed ^ 0x5c);
            for &(i, _) in pairs {
                let k = dec.latent_dim();
                let za = Tensor::randn([1, k], (Kind::Float, t.x.device()));
                let zb = Tensor::randn([1, k], (Kind::Float, t.x.device()));
                let lab = labels_if(dec.needs_labels(), &t.y.narrow(0, i, 1));
                rows.push(interpolate_codes(dec, &za, &zb, lab.as_ref(), steps)?);
            }
            "interpolations between random points of the prior"
        } else {
            return Ok(None);
        };
        self.save("interpolations.png", &Tensor::cat(&rows, 0), steps)?;
        Ok(Some(Figure {
            file: "interpolations.png".into(),
            caption: caption.into(),
        }))
    }

    /// Traversals of the `dims` most active latent dimensions around test
    /// image `index`'s code, ±`range` standard deviations of the prior (or
    /// of the codes, when the codes follow no prior).
    pub fn traversal(
        &self,
        index: i64,
        dims: i64,
        range: f64,
        steps: i64,
    ) -> Result<Option<Figure>> {
        self.test_image(index)?;
        range_check("--dims", dims, 1, 64)?;
        range_check("--steps", steps, 2, 50)?;
        if !(range.is_finite() && range > 0.0 && range <= 100.0) {
            return Err(PipelineError::Invalid(format!(
                "--range {range} is out of range: give a number in (0, 100]"
            )));
        }
        let (Some(enc), Some(dec)) = (self.model.encoder(), self.model.decoder()) else {
            return Ok(None);
        };
        let t = &self.splits.test;
        let lab = t.y.narrow(0, index, 1);
        let base = enc
            .encode(
                &t.x.narrow(0, index, 1),
                labels_if(enc.needs_labels(), &lab).as_ref(),
            )?
            .detach();
        let k = dec.latent_dim();
        // The most active dimensions first: a VAE leaves some unused.
        let spread = t.spread(2000);
        let order = by_activity(&encode_all(enc, &spread.x, &spread.y, 1000)?);
        let dims: Vec<i64> = order.into_iter().take(dims.min(k) as usize).collect();
        let (centre, scale) = match dec.prior() {
            Prior::StandardNormal => (
                Tensor::zeros([k], (Kind::Float, base.device())),
                Tensor::ones([k], (Kind::Float, base.device())),
            ),
            Prior::Codes => {
                let (c, _) = self.train_codes()?;
                (c.mean_dim(0, false, Kind::Float), c.std_dim(0, true, false))
            }
        };
        let ld = labels_if(dec.needs_labels(), &lab);
        let mut rows = vec![];
        for &d in &dims {
            let (c, s) = (centre.double_value(&[d]), scale.double_value(&[d]));
            let values: Vec<f64> = (0..steps)
                .map(|i| c + s * range * (2.0 * i as f64 / (steps - 1) as f64 - 1.0))
                .collect();
            rows.push(traverse(dec, &base, &[d], &values, ld.as_ref())?);
        }
        self.save("traversal.png", &Tensor::cat(&rows, 0), steps)?;
        Ok(Some(Figure {
            file: "traversal.png".into(),
            caption: format!(
                "traversals of the {} most active latent dimensions (one a row, −{range}σ … +{range}σ)",
                dims.len()
            ),
        }))
    }

    /// A 2-D map of `n` test codes coloured by class.
    pub fn map(&self, method: MapMethod, n: i64) -> Result<Figure> {
        range_check("--images", n, 3, 20_000)?;
        let enc = self.encoder("a map of the codes")?;
        let t = self.splits.test.spread(n);
        let codes = encode_all(enc, &t.x, &t.y, 1000)?;
        let labels: Vec<u8> = Vec::<i64>::try_from(&t.y.to_device(Device::Cpu))?
            .into_iter()
            .map(|v| v as u8)
            .collect();
        let (pts, name, what) = match method {
            MapMethod::Pca => (
                pca_2d(&codes)?,
                "latent-pca.png",
                "first two principal components".to_string(),
            ),
            MapMethod::Tsne => {
                // Perplexity 30, or less where there are too few points for it.
                let perplexity = 30f32.min((t.len() as f32 - 2.0) / 3.0).max(1.0);
                (
                    tsne_2d(&codes, perplexity, 1000)?,
                    "latent-tsne.png",
                    format!("t-SNE (perplexity {perplexity:.0})"),
                )
            }
        };
        save_scatter(
            &self.dir.join(name),
            &pts,
            &labels,
            self.classes,
            &format!("{} — {what}, {} test images", enc.what(), t.len()),
        )?;
        Ok(Figure {
            file: name.into(),
            caption: format!("{} of {} test images, {what}", enc.what(), t.len()),
        })
    }

    /// Query by image: the k nearest training images to test image
    /// `index` in the model's code space (top row) and in pixel space
    /// (bottom row), and the share of same-class neighbours over `queries`
    /// test images for the model, pixels and PCA.
    pub fn query(&self, index: i64, k: i64, queries: i64) -> Result<(Vec<QueryStats>, Figure)> {
        self.test_image(index)?;
        range_check("-k", k, 1, 100)?;
        range_check("--queries", queries, 1, 10_000)?;
        let enc = self.encoder("query by image")?;
        let (codes, tr) = self.train_codes()?;
        let t = &self.splits.test;
        let q = t.spread(queries);
        let same = |idx: &Tensor| -> f64 {
            let lab = tr.y.index_select(0, &idx.flatten(0, -1)).reshape([-1, k]);
            lab.eq_tensor(&q.y.unsqueeze(1))
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[])
        };
        let mut stats = vec![];
        let (li, _) = knn(&encode_all(enc, &q.x, &q.y, 1000)?, codes, k);
        stats.push(QueryStats {
            representation: "codes".into(),
            queries: q.len(),
            k,
            same_class: same(&li),
        });
        for (name, b) in self.baselines(enc.code_dim())? {
            let (bi, _) = knn(
                &encode_all(b.as_ref(), &q.x, &q.y, 1000)?,
                &encode_all(b.as_ref(), &tr.x, &tr.y, 1000)?,
                k,
            );
            stats.push(QueryStats {
                representation: name,
                queries: q.len(),
                k,
                same_class: same(&bi),
            });
        }
        let one = t.narrow_split(index);
        let (li1, _) = knn(&encode_all(enc, &one.x, &one.y, 1)?, codes, k);
        let (pi1, _) = knn(&one.x, &tr.x, k);
        let row = |idx: &Tensor| {
            Tensor::cat(
                &[one.x.shallow_clone(), tr.x.index_select(0, &idx.get(0))],
                0,
            )
        };
        let img = Tensor::cat(&[row(&li1), row(&pi1)], 0);
        let name = format!("query-{index}.png");
        self.save(&name, &img, k + 1)?;
        Ok((
            stats,
            Figure {
                file: name,
                caption: format!(
                    "query by image {index}: the {k} nearest training images in the model's code space (top) and in pixel space (bottom)"
                ),
            },
        ))
    }

    /// Logistic regression on the codes, on raw pixels and on PCA with as
    /// many components (training images up to `limit`, scored on the whole
    /// test set), as test accuracies (%).
    pub fn probe(&self, limit: i64) -> Result<Vec<Metric>> {
        range_check("--train-images", limit, 10, 1_000_000)?;
        let enc = self.encoder("a linear probe")?;
        let own;
        let (ctr, tr) = if limit == CODE_LIMIT {
            let (c, t) = self.train_codes()?;
            (c, t)
        } else {
            let t = self.splits.train.head(limit);
            own = (encode_all(enc, &t.x, &t.y, 1000)?, t);
            (&own.0, &own.1)
        };
        let te = &self.splits.test;
        let c = self.classes.len() as i64;
        let cfg = ProbeConfig {
            seed: self.seed,
            ..Default::default()
        };
        let note = format!(
            "logistic regression on {} training images, {} test images",
            tr.len(),
            te.len()
        );
        let mut out = vec![];
        let codes = linear_probe(
            ctr,
            &tr.y,
            &encode_all(enc, &te.x, &te.y, 1000)?,
            &te.y,
            c,
            &cfg,
        );
        out.push(("codes".to_string(), codes.test_accuracy));
        for (name, b) in self.baselines(enc.code_dim())? {
            let r = linear_probe(
                &encode_all(b.as_ref(), &tr.x, &tr.y, 1000)?,
                &tr.y,
                &encode_all(b.as_ref(), &te.x, &te.y, 1000)?,
                &te.y,
                c,
                &cfg,
            );
            out.push((name, r.test_accuracy));
        }
        Ok(out
            .into_iter()
            .map(|(name, acc)| Metric {
                name: format!("probe, {name}"),
                value: 100.0 * acc,
                unit: "%".into(),
                better: Better::Higher,
                note: Some(note.clone()),
            })
            .collect())
    }
}
