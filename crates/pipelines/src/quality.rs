//! Sample quality after every epoch: a generator's samples scored by the
//! in-domain classifier against validation images while it trains, so that
//! a run records quality against epochs and minutes (`valid.fd`,
//! `valid.confident`, … in metrics.jsonl and the report's curves), the
//! curve a user reads to choose a budget. Written against the capabilities
//! and the trainer; it names no family.
use crate::evaluate::{draw_samples, finite_rows};
use crate::images::ClassifierRun;
use crate::Result;
use embedlab_metrics::generative::{
    confidence, coverage, frechet_distance, precision_recall, CONFIDENT,
};
use embedlab_models::batches::Split;
use embedlab_models::capabilities::{encode_all, logits_all, ImageModel};
use embedlab_models::ModelError;
use embedlab_train::{Batch, Group, Losses, Progress, Round, Selection, Trainable};
use std::collections::BTreeMap;
use tch::{nn, Tensor};

/// The fewest samples (and validation images) scored after an epoch.
pub const MIN_EPOCH_SAMPLES: i64 = 10;

/// A classifier and the features of the validation images it compares
/// samples with, computed once.
pub struct EpochQuality {
    classifier: ClassifierRun,
    real: Tensor,
    n: i64,
}

impl EpochQuality {
    /// Scores `n` samples an epoch against the first `n` validation images
    /// (fewer when the validation set is smaller).
    pub fn new(classifier: ClassifierRun, valid: &Split, n: i64) -> Result<Self> {
        let n = n.min(valid.len());
        if n < MIN_EPOCH_SAMPLES {
            crate::fail!(
                "--epoch-samples: scoring samples after every epoch needs at least {MIN_EPOCH_SAMPLES} validation images (there are {}): raise --valid or give --epoch-samples 0",
                valid.len()
            );
        }
        let _g = tch::no_grad_guard();
        let v = valid.head(n);
        let features = classifier.model.encoder().expect("a classifier encodes");
        let real = encode_all(features, &v.x, &v.y, 500)?;
        Ok(Self {
            classifier,
            real,
            n,
        })
    }

    /// The epoch's scores of `m`'s samples (an autoencoder's decoded from a
    /// Gaussian fitted to the codes of its first training images): `fd`,
    /// `precision`, `recall` (k = 3), `classes` (covered) and `confident`
    /// (%, probability ≥ 0.9), and `nonfinite` (% of samples with an
    /// infinite or NaN value, left out of the rest). None of them when the
    /// model cannot generate, or too few samples are finite to score.
    pub fn score(&self, m: &dyn ImageModel, train: &Split) -> Result<BTreeMap<String, f64>> {
        let _g = tch::no_grad_guard();
        let mut codes = || {
            let enc = m.encoder().expect("drawn only for models that encode");
            Ok(crate::analysis::training_codes(enc, train)?.0)
        };
        let mut out = BTreeMap::new();
        let Some((fake, _)) = draw_samples(m, &mut codes, self.n, 1.0, self.real.device())? else {
            return Ok(out);
        };
        let (fake, kept) = finite_rows(&fake);
        out.insert(
            "nonfinite".into(),
            100.0 * (self.n - kept) as f64 / self.n as f64,
        );
        if kept < MIN_EPOCH_SAMPLES {
            return Ok(out);
        }
        let model = &self.classifier.model;
        let features = model.encoder().expect("a classifier encodes");
        let classify = model.classifier().expect("a classifier classifies");
        let none = Tensor::zeros([kept], (tch::Kind::Int64, fake.device()));
        let ff = encode_all(features, &fake, &none, 500)?;
        let (pred, conf) = confidence(&logits_all(classify, &fake, 500)?, CONFIDENT);
        let (p, r) = precision_recall(&self.real, &ff, 3);
        out.insert("fd".into(), frechet_distance(&self.real, &ff));
        out.insert("precision".into(), 100.0 * p);
        out.insert("recall".into(), 100.0 * r);
        out.insert(
            "classes".into(),
            coverage(&pred, classify.classes()).classes_hit as f64,
        );
        out.insert("confident".into(), 100.0 * conf.rate());
        Ok(out)
    }
}

/// A model trained with its samples scored after every epoch's validation
/// (on the weights validation uses: a weight average where one is kept).
/// Everything else is the model's own.
pub struct Tracked<'a, M> {
    pub model: &'a mut M,
    pub quality: &'a EpochQuality,
    /// The training images (an autoencoder's codes are fitted to them).
    pub train: &'a Split,
}

impl<M> Trainable for Tracked<'_, M>
where
    M: Trainable<Data = Split, Error = ModelError> + ImageModel,
{
    type Data = Split;
    type Error = ModelError;
    fn kind(&self) -> String {
        self.model.kind()
    }
    fn config_json(&self) -> serde_json::Value {
        self.model.config_json()
    }
    fn var_store(&self) -> &nn::VarStore {
        self.model.var_store()
    }
    fn groups(&self) -> Vec<Group> {
        self.model.groups()
    }
    fn init_from_data(&mut self, data: &Split) -> std::result::Result<(), ModelError> {
        self.model.init_from_data(data)
    }
    fn attach_data(&mut self, data: &Split) -> std::result::Result<(), ModelError> {
        self.model.attach_data(data)
    }
    fn loss(
        &mut self,
        group: &str,
        batch: &Batch,
        at: &Progress,
    ) -> std::result::Result<Losses, ModelError> {
        self.model.loss(group, batch, at)
    }
    fn after_step(&mut self, group: &str) -> std::result::Result<(), ModelError> {
        self.model.after_step(group)
    }
    fn round(&mut self, r: &mut Round<'_>) -> std::result::Result<bool, ModelError> {
        self.model.round(r)
    }
    fn training_checks(
        &mut self,
        valid: &Split,
    ) -> std::result::Result<BTreeMap<String, f64>, ModelError> {
        self.model.training_checks(valid)
    }
    fn validate(
        &mut self,
        valid: &Split,
    ) -> std::result::Result<BTreeMap<String, f64>, ModelError> {
        let mut m = self.model.validate(valid)?;
        let scores = self
            .quality
            .score(&*self.model, self.train)
            .map_err(|e| ModelError::Invalid(format!("scoring the epoch's samples: {e}")))?;
        m.extend(scores);
        Ok(m)
    }
    fn loss_ceiling(&self, group: &str) -> Option<f64> {
        self.model.loss_ceiling(group)
    }
    fn eval_needs_grad(&self) -> bool {
        self.model.eval_needs_grad()
    }
    fn selection(&self) -> Selection {
        self.model.selection()
    }
}
