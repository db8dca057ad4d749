//! Hubness of a retrieval (Radovanović et al. 2010; Dinu et al. 2015): how
//! often each target appears among the top k of a set of queries — its
//! k-occurrence N_k. In a space with hubs the distribution of N_k is
//! right-skewed: a few targets are the neighbours of very many queries and
//! many are nobody's. CSLS (Conneau et al. 2018) was designed to reduce it.
use embedlab_align::{Result, Retrieval, Space};
use serde::{Deserialize, Serialize};

/// The k-occurrence distribution of the targets of one retrieval method.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hubness {
    pub retrieval: String,
    pub k: usize,
    pub queries: usize,
    pub targets: usize,
    /// Skewness of N_k over all targets (0 for a symmetric distribution;
    /// 0 when every target has the same N_k).
    pub skewness: f64,
    /// Percentage of targets in no query's top k.
    pub never_retrieved: f64,
    /// Percentage of all top-k slots taken by the most frequent 1% of the
    /// targets (at least one target).
    pub top_share: f64,
    /// The most retrieved targets, (target row, N_k), most first; ties by row.
    pub hubs: Vec<(usize, usize)>,
}

/// Skewness E[(x − μ)³] / σ³ of `counts` (population moments), 0 when σ = 0.
pub fn skewness(counts: &[usize]) -> f64 {
    let n = counts.len() as f64;
    if counts.is_empty() {
        return 0.0;
    }
    let mean = counts.iter().sum::<usize>() as f64 / n;
    let m = |p: i32| {
        counts
            .iter()
            .map(|&c| (c as f64 - mean).powi(p))
            .sum::<f64>()
            / n
    };
    let var = m(2);
    if var <= 1e-300 {
        0.0
    } else {
        m(3) / var.powf(1.5)
    }
}

/// The k-occurrence of every target row among the top `k` of `queries`
/// retrieved with `retrieval`, summarised; `hubs` most retrieved kept.
pub fn hubness(
    space: &mut Space,
    queries: &[usize],
    retrieval: Retrieval,
    k: usize,
    hubs: usize,
) -> Result<Hubness> {
    let (_, idx) = space.translate(queries, retrieval, k.max(1) as i64)?;
    let targets = space.tgt.size()[0] as usize;
    let idx = Vec::<i64>::try_from(idx.contiguous().view(-1))?;
    Ok(summarise(
        retrieval.name(),
        k,
        queries.len(),
        targets,
        &idx,
        hubs,
    ))
}

/// [`hubness`] from the retrieved target rows (`queries` × k, flattened).
pub fn summarise(
    retrieval: String,
    k: usize,
    queries: usize,
    targets: usize,
    retrieved: &[i64],
    hubs: usize,
) -> Hubness {
    let mut counts = vec![0usize; targets];
    for &t in retrieved {
        counts[t as usize] += 1;
    }
    let never = counts.iter().filter(|&&c| c == 0).count();
    let mut order: Vec<usize> = (0..targets).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let top_n = (targets / 100).max(1).min(targets);
    let slots = retrieved.len().max(1) as f64;
    let top: usize = order.iter().take(top_n).map(|&t| counts[t]).sum();
    Hubness {
        retrieval,
        k,
        queries,
        targets,
        skewness: skewness(&counts),
        never_retrieved: 100.0 * never as f64 / targets.max(1) as f64,
        top_share: 100.0 * top as f64 / slots,
        hubs: order
            .iter()
            .take(hubs)
            .filter(|&&t| counts[t] > 0)
            .map(|&t| (t, counts[t]))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn skewness_hand_values() {
        // Counts 0, 0, 0, 4: mean 1, deviations −1, −1, −1, 3;
        // m2 = (1+1+1+9)/4 = 3, m3 = (−1−1−1+27)/4 = 6, skew = 6 / 3^1.5.
        let s = skewness(&[0, 0, 0, 4]);
        assert!((s - 6.0 / 3f64.powf(1.5)).abs() < 1e-12, "{s}");
        assert_eq!(skewness(&[2, 2, 2]), 0.0);
        assert!(skewness(&[1, 2, 3]).abs() < 1e-12);
        assert!(skewness(&[4, 4, 4, 0]) < 0.0);
    }

    #[test]
    fn summary_of_a_hand_count() {
        // 3 queries, k 2, 5 targets: target 1 in every list, 3 in two, 4 once.
        let h = summarise("nn".into(), 2, 3, 5, &[1, 3, 1, 4, 3, 1], 3);
        assert_eq!(h.hubs, vec![(1, 3), (3, 2), (4, 1)]);
        assert!((h.never_retrieved - 40.0).abs() < 1e-12);
        // The top 1% of 5 targets is one target: 3 of 6 slots.
        assert!((h.top_share - 50.0).abs() < 1e-12);
        assert!((h.skewness - skewness(&[0, 3, 0, 2, 1])).abs() < 1e-12);
    }

    #[test]
    fn csls_reduces_a_planted_hub() {
        // Targets: a hub close to the mean direction of every query, plus one
        // exact copy of each query slightly perturbed. NN retrieves the hub
        // for many queries; CSLS penalises it by its mean similarity to its
        // neighbours, so every query gets its own copy.
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(5);
        let (n, d) = (60i64, 16i64);
        let base = Tensor::randn([1, d], (Kind::Float, Device::Cpu));
        let src = &base * 3.0 + Tensor::randn([n, d], (Kind::Float, Device::Cpu));
        let own = &src + Tensor::randn([n, d], (Kind::Float, Device::Cpu)) * 1.2;
        let tgt = Tensor::cat(&[base.shallow_clone(), own], 0);
        let mut space = Space::new(&src, &tgt).unwrap();
        let q: Vec<usize> = (0..n as usize).collect();
        let nn = hubness(&mut space, &q, Retrieval::Nn, 1, 5).unwrap();
        let csls = hubness(&mut space, &q, Retrieval::Csls { k: 10 }, 1, 5).unwrap();
        assert_eq!(nn.targets, 61);
        assert_eq!(nn.hubs[0].0, 0, "{nn:?}");
        assert!(nn.hubs[0].1 > 5, "{nn:?}");
        assert!(csls.hubs[0].1 < nn.hubs[0].1, "{nn:?} {csls:?}");
        assert!(csls.skewness < nn.skewness, "{nn:?} {csls:?}");
        assert!(csls.never_retrieved < nn.never_retrieved);
        // The same numbers as a brute-force count of the NN lists.
        let (_, idx) = space.translate(&q, Retrieval::Nn, 1).unwrap();
        let idx = Vec::<i64>::try_from(idx.view(-1)).unwrap();
        let mut c = vec![0usize; 61];
        for &t in &idx {
            c[t as usize] += 1;
        }
        assert!((nn.skewness - skewness(&c)).abs() < 1e-12);
    }
}
