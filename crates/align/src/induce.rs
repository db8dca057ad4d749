//! Dictionary induction from a mapping (MUSE's `dico_builder`): each frequent
//! source word's best target and each frequent target word's best source, by
//! NN or CSLS; keep the mutual pairs (or either direction's, or the union).
use crate::error::Result;
use crate::retrieval::{Retrieval, Space};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use tch::{Kind, Tensor};

/// Which directions make the induced dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Build {
    S2t,
    T2s,
    /// Mutual nearest neighbours (`S2T&T2S`).
    Mutual,
    /// Union (`S2T|T2S`).
    Union,
}

/// Induction settings (defaults: MUSE's refinement settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InduceConfig {
    pub retrieval: Retrieval,
    pub build: Build,
    /// Only the `max_rank` most frequent words of each side take part.
    pub max_rank: usize,
    /// `true` (MUSE): neighbours and CSLS terms are searched in the whole
    /// vocabularies, then pairs outside the top `max_rank` are dropped.
    /// `false` (VecMap, default): the search itself is confined to the top
    /// `max_rank` words of each side, several times cheaper on large vocabularies.
    pub full_vocabulary: bool,
}

impl Default for InduceConfig {
    fn default() -> Self {
        Self {
            retrieval: Retrieval::Csls { k: 10 },
            build: Build::Mutual,
            max_rank: 15_000,
            full_vocabulary: false,
        }
    }
}

/// Best target (rank < max_rank) for each of the first `max_rank` rows, with
/// the margin to the runner-up (MUSE orders pairs by that confidence).
fn one_direction(space: &mut Space, cfg: &InduceConfig) -> Result<Vec<(usize, usize, f32)>> {
    let ns = space.src.size()[0] as usize;
    let nt = space.tgt.size()[0] as usize;
    let q: Vec<usize> = (0..ns.min(cfg.max_rank)).collect();
    let (scores, idx) = space.translate(&q, cfg.retrieval, 2.min(nt as i64))?;
    let scores = Vec::<f32>::try_from(scores.contiguous().view(-1))?;
    let idx = Vec::<i64>::try_from(idx.contiguous().view(-1))?;
    let w = if nt >= 2 { 2 } else { 1 };
    let mut out = Vec::with_capacity(q.len());
    for (i, &s) in q.iter().enumerate() {
        let t = idx[i * w] as usize;
        if t >= cfg.max_rank {
            continue;
        }
        let margin = if w == 2 {
            scores[i * w] - scores[i * w + 1]
        } else {
            0.0
        };
        out.push((s, t, margin));
    }
    Ok(out)
}

/// Induces (source row, target row) pairs, most confident first.
pub fn induce(space: &mut Space, cfg: &InduceConfig) -> Result<Vec<(usize, usize)>> {
    if !cfg.full_vocabulary {
        let ns = space.src.size()[0].min(cfg.max_rank as i64);
        let nt = space.tgt.size()[0].min(cfg.max_rank as i64);
        if ns < space.src.size()[0] || nt < space.tgt.size()[0] {
            let mut top = Space::new(&space.src.narrow(0, 0, ns), &space.tgt.narrow(0, 0, nt))?;
            top.block_bytes = space.block_bytes;
            return induce(&mut top, cfg);
        }
    }
    let s2t = match cfg.build {
        Build::T2s => vec![],
        _ => one_direction(space, cfg)?,
    };
    let t2s: Vec<(usize, usize, f32)> = match cfg.build {
        Build::S2t => vec![],
        _ => {
            let mut rev = space.reversed();
            one_direction(&mut rev, cfg)?
                .into_iter()
                .map(|(t, s, m)| (s, t, m))
                .collect()
        }
    };
    let mut pairs: Vec<(usize, usize, f32)> = match cfg.build {
        Build::S2t => s2t,
        Build::T2s => t2s,
        Build::Mutual => {
            let back: HashSet<(usize, usize)> = t2s.iter().map(|p| (p.0, p.1)).collect();
            s2t.into_iter()
                .filter(|p| back.contains(&(p.0, p.1)))
                .collect()
        }
        Build::Union => {
            let mut seen = HashSet::new();
            s2t.into_iter()
                .chain(t2s)
                .filter(|p| seen.insert((p.0, p.1)))
                .collect()
        }
    };
    pairs.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal));
    Ok(pairs.into_iter().map(|p| (p.0, p.1)).collect())
}

/// MUSE's unsupervised model-selection criterion: the mean cosine between the
/// `max_words` most frequent source words and their S2T translations under
/// `retrieval` (`mean_cosine-csls_knn_10-S2T-10000`).
pub fn mean_cosine(space: &mut Space, retrieval: Retrieval, max_words: usize) -> Result<f64> {
    let cfg = InduceConfig {
        retrieval,
        build: Build::S2t,
        max_rank: usize::MAX,
        full_vocabulary: true,
    };
    let ns = space.src.size()[0] as usize;
    let q: Vec<usize> = (0..ns.min(max_words)).collect();
    let (_, idx) = space.translate(&q, cfg.retrieval, 1)?;
    let dev = space.src.device();
    let qi = Tensor::from_slice(&q.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(dev);
    let s = space.src.index_select(0, &qi);
    let t = space.tgt.index_select(0, &idx.squeeze_dim(1));
    Ok((s * t)
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn mutual_pairs_of_a_permuted_copy_are_the_permutation() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(5);
        let n = 400;
        let x = Tensor::randn([n, 16], (Kind::Float, Device::Cpu));
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let y = x.index_select(0, &perm);
        let inv = Vec::<i64>::try_from(perm.argsort(0, false)).unwrap();
        let mut space = Space::new(&x, &y).unwrap();
        let cfg = InduceConfig {
            max_rank: n as usize,
            ..Default::default()
        };
        let pairs = induce(&mut space, &cfg).unwrap();
        assert_eq!(pairs.len(), n as usize);
        for (s, t) in pairs {
            assert_eq!(inv[s] as usize, t);
        }
        // Ranks above max_rank are left out on both sides, in both modes.
        for full_vocabulary in [false, true] {
            let cfg = InduceConfig {
                max_rank: 100,
                full_vocabulary,
                ..Default::default()
            };
            let pairs = induce(&mut space, &cfg).unwrap();
            assert!(!pairs.is_empty());
            assert!(pairs.iter().all(|&(s, t)| s < 100 && t < 100));
            // The whole-vocabulary search only keeps true pairs; the confined
            // one may pair a word whose partner lies outside the top 100.
            if full_vocabulary {
                assert!(pairs.iter().all(|&(s, t)| inv[s] as usize == t));
            }
        }
        let mc = mean_cosine(&mut space, Retrieval::Csls { k: 10 }, 1000).unwrap();
        assert!((mc - 1.0).abs() < 1e-5, "{mc}");
    }
}
