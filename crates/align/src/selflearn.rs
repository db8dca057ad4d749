//! Fully unsupervised self-learning (Artetxe et al. 2018, ACL: "A robust
//! self-learning method for fully unsupervised cross-lingual mappings of word
//! embeddings"), the VecMap family:
//!
//! 1. Initial dictionary without any seed: each word of the `init_vocab` most
//!    frequent is described by its sorted row of the square root of the
//!    vocabulary's similarity matrix — a description that does not depend on
//!    the coordinate system — and the two languages' descriptions are matched
//!    with CSLS.
//! 2. Self-learning: alternate an orthogonal map fitted on the dictionary and
//!    a new dictionary induced among the `cutoff` most frequent words with
//!    CSLS, in both directions, where each similarity is kept with
//!    probability `keep_prob` (stochastic dictionary induction). `keep_prob`
//!    doubles whenever the objective stalls for `patience` iterations.
//! 3. A final multi-step map (whitening, re-weighting, de-whitening) on the
//!    last dictionary.
//!
//! A seed dictionary (e.g. identical strings) may replace step 1.
use crate::error::{AlignError, Result};
use crate::maps::{multistep, paired_rows, procrustes, Mapping};
use crate::normalize::{unit_rows, Normalization};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelfLearnConfig {
    /// Words of each side described in the unsupervised initialisation.
    pub init_vocab: i64,
    /// Words of each side taking part in dictionary induction.
    pub cutoff: i64,
    /// CSLS neighbourhood.
    pub csls_k: i64,
    /// Initial probability of keeping a similarity in induction.
    pub keep_prob: f64,
    /// Iterations without improvement before `keep_prob` doubles (and, at 1, stop).
    pub patience: usize,
    /// Minimum objective gain that counts as an improvement.
    pub threshold: f64,
    /// Hard limit on iterations.
    pub max_iterations: usize,
}

impl Default for SelfLearnConfig {
    fn default() -> Self {
        Self {
            init_vocab: 4000,
            cutoff: 20_000,
            csls_k: 10,
            keep_prob: 0.1,
            patience: 50,
            threshold: 1e-6,
            max_iterations: 2000,
        }
    }
}

/// One self-learning iteration, for logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub iteration: usize,
    pub keep_prob: f64,
    /// Mean over both directions of each word's best cosine similarity.
    pub objective: f64,
    pub dictionary_pairs: usize,
}

/// Score-block size for self-learning. Its loop allocates several
/// block-sized temporaries per block (scores, random mask, CSLS scores); kept
/// under glibc's 32 MiB mmap threshold they are recycled by malloc instead of
/// being mapped and faulted in afresh every time.
const SELF_LEARN_BLOCK_BYTES: i64 = 16 << 20;

/// Mean of the k largest values of each row of `a @ bᵀ`, in row blocks.
fn topk_mean(a: &Tensor, b: &Tensor, k: i64) -> Result<Tensor> {
    crate::retrieval::knn_mean_sim(a, b, k, SELF_LEARN_BLOCK_BYTES)
}

/// The sorted square-root similarity description of the first `n` rows.
fn sorted_sqrt_similarity(x: &Tensor, n: i64) -> Result<Tensor> {
    let x = x.narrow(0, 0, n).to_kind(Kind::Double);
    let (u, s, _v) = x.f_svd(true, true)?;
    let sim = (&u * s.unsqueeze(0)).matmul(&u.tr()); // (XXᵀ)^(1/2)
    let (sorted, _) = sim.sort(1, false);
    let norm: Normalization = "renorm,center,renorm".parse()?;
    Ok(norm.apply(&sorted.to_kind(Kind::Float)))
}

/// The unsupervised initial dictionary (both directions, CSLS).
pub fn initial_dictionary(
    x: &Tensor,
    z: &Tensor,
    cfg: &SelfLearnConfig,
) -> Result<Vec<(usize, usize)>> {
    let n = cfg.init_vocab.min(x.size()[0]).min(z.size()[0]);
    if n < 2 {
        return Err(AlignError::Invalid(
            "the unsupervised initialisation needs at least two words a side".into(),
        ));
    }
    let xs = sorted_sqrt_similarity(x, n)?;
    let zs = sorted_sqrt_similarity(z, n)?;
    induce_csls(&xs, &zs, cfg.csls_k, 1.0).map(|(pairs, _)| pairs)
}

/// Forward and backward CSLS pairs between `x` and `z` (both unit rows),
/// each similarity kept with probability `keep`; returns the union of pairs and the objective.
fn induce_csls(x: &Tensor, z: &Tensor, k: i64, keep: f64) -> Result<(Vec<(usize, usize)>, f64)> {
    let (nx, nz) = (x.size()[0], z.size()[0]);
    let k = k.min(nx).min(nz).max(1);
    let rx = topk_mean(x, z, k)?; // r for each source word
    let rz = topk_mean(z, x, k)?; // r for each target word
    let mut pairs = Vec::with_capacity((nx + nz) as usize);
    let mut objective = 0.0;
    for (a, b, rb, fwd) in [(x, z, &rz, true), (z, x, &rx, false)] {
        let na = a.size()[0];
        let bs = crate::retrieval::block_rows(b.size()[0], SELF_LEARN_BLOCK_BYTES).min(na);
        let mut i = 0;
        let mut best_all = Vec::with_capacity(na as usize);
        let mut arg_all = Vec::with_capacity(na as usize);
        while i < na {
            let len = bs.min(na - i);
            let s = a.narrow(0, i, len).matmul(&b.tr());
            // The objective: the best plain similarity of each word.
            best_all.push(s.amax([1i64].as_slice(), false));
            // CSLS up to the query's constant: cos − r_b/2.
            let mut c = s - rb.unsqueeze(0) * 0.5;
            if keep < 1.0 {
                // Stochastic induction (as VecMap): each score is zeroed with probability 1 − keep.
                let mask = Tensor::rand_like(&c).ge(1.0 - keep);
                c *= mask;
            }
            arg_all.push(c.argmax(1, false));
            i += len;
        }
        let v = Tensor::cat(&best_all, 0);
        let j = Vec::<i64>::try_from(Tensor::cat(&arg_all, 0))?;
        objective += v.mean(Kind::Float).double_value(&[]) / 2.0;
        for (p, &q) in j.iter().enumerate() {
            pairs.push(if fwd {
                (p, q as usize)
            } else {
                (q as usize, p)
            });
        }
    }
    Ok((pairs, objective))
}

/// Runs self-learning from `seed` (or the unsupervised initialisation when
/// `None`) on prepared (unit-length, centred) spaces; `on_step` sees each
/// iteration. Returns the final multi-step map and the last dictionary.
pub fn self_learn(
    x: &Tensor,
    z: &Tensor,
    seed: Option<&[(usize, usize)]>,
    cfg: &SelfLearnConfig,
    mut on_step: impl FnMut(&Step),
) -> Result<(Mapping, Vec<(usize, usize)>)> {
    let mut dict = match seed {
        Some(s) if !s.is_empty() => s.to_vec(),
        Some(_) => return Err(AlignError::Invalid("the seed dictionary is empty".into())),
        None => initial_dictionary(x, z, cfg)?,
    };
    let nx = cfg.cutoff.min(x.size()[0]);
    let nz = cfg.cutoff.min(z.size()[0]);
    let (xc, zc) = (x.narrow(0, 0, nx), z.narrow(0, 0, nz));
    let mut keep = cfg.keep_prob;
    let mut best = f64::NEG_INFINITY;
    let mut last_improvement = 0;
    for it in 0..cfg.max_iterations {
        let (xd, zd) = paired_rows(x, z, &dict);
        let w = procrustes(&xd, &zd)?;
        let (pairs, objective) = induce_csls(
            &unit_rows(&xc.matmul(&w)),
            &unit_rows(&zc),
            cfg.csls_k,
            keep,
        )?;
        if !objective.is_finite() {
            return Err(AlignError::Numeric {
                what: format!("self-learning iteration {it}"),
                msg: "objective is not finite".into(),
            });
        }
        if objective - best >= cfg.threshold {
            best = objective;
            last_improvement = it;
        }
        dict = pairs;
        on_step(&Step {
            iteration: it,
            keep_prob: keep,
            objective,
            dictionary_pairs: dict.len(),
        });
        if it - last_improvement > cfg.patience {
            if keep >= 1.0 {
                break;
            }
            keep = (keep * 2.0).min(1.0);
            last_improvement = it;
        }
    }
    let (xd, zd) = paired_rows(x, z, &dict);
    let map = multistep(&xd, &zd, 0.5, true)?;
    Ok((map, dict))
}

/// Seed pairs of words spelled the same in both vocabularies ("identical strings").
pub fn identical_strings(src: &[String], tgt: &[String]) -> Vec<(usize, usize)> {
    let index: std::collections::HashMap<&str, usize> = tgt
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i))
        .collect();
    src.iter()
        .enumerate()
        .filter_map(|(i, w)| index.get(w.as_str()).map(|&j| (i, j)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Anisotropic vectors (a decaying spectrum, like real embeddings).
    fn structured(n: i64, d: i64) -> Tensor {
        let scale = Tensor::arange(d, (Kind::Float, Device::Cpu))
            .g_add_scalar(1.0)
            .reciprocal();
        Tensor::randn([n, d], (Kind::Float, Device::Cpu)) * scale
    }

    #[test]
    fn recovers_a_permuted_rotated_copy_without_any_seed() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(31);
        let (n, d) = (400, 12);
        let norm: Normalization = "renorm,center,renorm".parse().unwrap();
        let x = norm.apply(&structured(n, d));
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let r = Tensor::linalg_qr(
            &Tensor::randn([d, d], (Kind::Double, Device::Cpu)),
            "reduced",
        )
        .0
        .to_kind(Kind::Float);
        let z = x.index_select(0, &perm).matmul(&r);
        let inv = Vec::<i64>::try_from(perm.argsort(0, false)).unwrap();
        let cfg = SelfLearnConfig {
            init_vocab: n,
            cutoff: n,
            patience: 3,
            ..Default::default()
        };
        let init = initial_dictionary(&x, &z, &cfg).unwrap();
        let right = init.iter().filter(|&&(s, t)| inv[s] as usize == t).count();
        assert!(
            right * 2 > init.len(),
            "initial dictionary: {right} of {} right",
            init.len()
        );
        let mut steps = 0;
        let (map, _dict) = self_learn(&x, &z, None, &cfg, |_| steps += 1).unwrap();
        assert!(steps > 3);
        let mut space = crate::retrieval::Space::new(&map.map_src(&x), &map.map_tgt(&z)).unwrap();
        let q: Vec<usize> = (0..n as usize).collect();
        let (_, idx) = space
            .translate(&q, crate::retrieval::Retrieval::Csls { k: 10 }, 1)
            .unwrap();
        let idx = Vec::<i64>::try_from(idx.view(-1)).unwrap();
        let correct = q.iter().filter(|&&s| idx[s] == inv[s]).count();
        assert!(correct as f64 >= 0.99 * n as f64, "{correct} of {n}");
    }

    #[test]
    fn identical_strings_pairs_equal_words() {
        let s: Vec<String> = ["paris", "the", "2010"]
            .iter()
            .map(|w| w.to_string())
            .collect();
        let t: Vec<String> = ["le", "2010", "paris"]
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(identical_strings(&s, &t), vec![(0, 2), (2, 1)]);
    }
}
