//! The supervised pipeline: prepare both spaces (PCA, normalisation), fit a
//! map on seed pairs, then optionally refine it by re-inducing the dictionary
//! (mutual CSLS neighbours) and refitting; pick the iteration by MUSE's
//! unsupervised criterion, never by the test set.
use crate::error::{AlignError, Result};
use crate::induce::{induce, mean_cosine, InduceConfig};
use crate::maps::{fit, MapMethod, Mapping};
use crate::normalize::Normalization;
use crate::pca::Pca;
use crate::retrieval::{Retrieval, Space};
use embedlab_data::Embeddings;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use tch::{Device, Tensor};

/// How one side is prepared before mapping: PCA first (if any), then the chain.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Prep {
    pub pca: Option<usize>,
    pub normalize: Normalization,
}

impl Prep {
    /// The prepared `[n, d]` tensor and the variance the PCA kept, if any.
    pub fn apply(&self, emb: &Embeddings, device: Device) -> Result<(Tensor, Option<f64>)> {
        let mut x = emb.tensor().to_device(device);
        let mut kept = None;
        if let Some(k) = self.pca {
            if k < emb.dim() {
                let p = Pca::fit(&x, k)?;
                kept = Some(p.explained.iter().sum());
                x = p.transform(&x);
            } else if k > emb.dim() {
                return Err(AlignError::Invalid(format!(
                    "cannot reduce {}-dimensional vectors to {k} dimensions",
                    emb.dim()
                )));
            }
        }
        Ok((self.normalize.apply(&x), kept))
    }
}

/// What to fit and how to refine it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitConfig {
    pub method: MapMethod,
    /// Refinement iterations after the fit on the seed pairs (0 = none).
    pub refine: usize,
    pub induce: InduceConfig,
    /// Keep the seed pairs in every refined dictionary (otherwise, as in MUSE,
    /// refinement uses the induced pairs alone).
    pub keep_seed: bool,
    /// Words the selection criterion averages over (MUSE: 10,000).
    pub criterion_words: usize,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            method: MapMethod::Procrustes,
            refine: 0,
            induce: InduceConfig::default(),
            keep_seed: false,
            criterion_words: 10_000,
        }
    }
}

/// One fit or refinement step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Iteration {
    pub iteration: usize,
    pub dictionary_pairs: usize,
    /// MUSE's `mean_cosine-csls_knn_10-S2T-10000` for the map of this step.
    pub criterion: f64,
    /// The score that picks the iteration (see `Select`).
    pub selection: f64,
    pub seconds: f64,
}

/// A fitted map with its history.
pub struct Fitted {
    /// The map of the selected iteration.
    pub map: Mapping,
    pub history: Vec<Iteration>,
    /// The iteration whose map `w` is.
    pub best: usize,
    /// The mapped space of `w`, with the CSLS terms already computed.
    pub space: Space,
}

/// A score for a mapped space (higher is better), e.g. precision on held-out pairs.
pub type Validate<'a> = &'a mut dyn FnMut(&mut Space) -> Result<f64>;

/// Which iteration's map `fit_supervised` returns.
pub enum Select<'a> {
    /// The best unsupervised criterion (MUSE's mean cosine).
    Criterion,
    /// The best score of a validation function.
    Validation(Validate<'a>),
    /// The last iteration.
    Last,
}

/// Fits on `seed` pairs of `x` (prepared source) and `y` (prepared target),
/// then refines; `on_step` sees each iteration as it ends; `select` says
/// which iteration's map is returned.
pub fn fit_supervised(
    x: &Tensor,
    y: &Tensor,
    seed: &[(usize, usize)],
    cfg: &FitConfig,
    mut select: Select,
    mut on_step: impl FnMut(&Iteration),
) -> Result<Fitted> {
    if seed.is_empty() {
        return Err(AlignError::Invalid(
            "the seed dictionary has no pairs in the vocabularies".into(),
        ));
    }
    let mut pairs = seed.to_vec();
    let mut best: Option<(f64, usize, Mapping, Space)> = None;
    let mut history = Vec::new();
    for it in 0..=cfg.refine {
        let t0 = std::time::Instant::now();
        let w = fit(cfg.method, x, y, &pairs)?;
        let mut space = Space::new(&w.map_src(x), &w.map_tgt(y))?;
        let criterion = mean_cosine(&mut space, Retrieval::Csls { k: 10 }, cfg.criterion_words)?;
        if !criterion.is_finite() {
            return Err(AlignError::Numeric {
                what: format!("iteration {it}"),
                msg: "the selection criterion is not finite".into(),
            });
        }
        let selection = match &mut select {
            Select::Validation(v) => v(&mut space)?,
            Select::Criterion => criterion,
            Select::Last => it as f64,
        };
        let rec = Iteration {
            iteration: it,
            dictionary_pairs: pairs.len(),
            criterion,
            selection,
            seconds: 0.0,
        };
        if it < cfg.refine {
            let mut induced = induce(&mut space, &cfg.induce)?;
            if cfg.keep_seed {
                let mut seen: HashSet<(usize, usize)> = induced.iter().copied().collect();
                induced.extend(seed.iter().filter(|p| seen.insert(**p)));
            }
            if induced.is_empty() {
                return Err(AlignError::Numeric {
                    what: format!("refinement iteration {}", it + 1),
                    msg: "the induced dictionary is empty".into(),
                });
            }
            pairs = induced;
        }
        let rec = Iteration {
            seconds: t0.elapsed().as_secs_f64(),
            ..rec
        };
        on_step(&rec);
        if best.as_ref().is_none_or(|b| selection > b.0) {
            best = Some((selection, it, w, space));
        }
        history.push(rec);
    }
    let (_, best, map, space) = best.expect("at least one iteration");
    Ok(Fitted {
        map,
        history,
        best,
        space,
    })
}
