use embedlab_align::{Result, Retrieval, Space};
use embedlab_data::dictionary::group_by_source;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Precision@k of one retrieval method on one test dictionary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Precision {
    pub retrieval: String,
    /// k → percentage of test source words with a gold translation in their top k.
    pub at: BTreeMap<usize, f64>,
    /// Test source words evaluated (each with all its gold translations).
    pub queries: usize,
}

/// For each test source word (ascending), the 0-based rank of its first gold
/// translation among its top `kmax` retrieved targets, or `None`.
pub fn first_gold_ranks(
    space: &mut Space,
    test: &[(usize, usize)],
    retrieval: Retrieval,
    kmax: usize,
) -> Result<Vec<(usize, Option<usize>)>> {
    let gold = group_by_source(test);
    let queries: Vec<usize> = gold.keys().copied().collect();
    let (_, idx) = space.translate(&queries, retrieval, kmax.max(1) as i64)?;
    let w = idx.size().get(1).copied().unwrap_or(0) as usize;
    let idx = Vec::<i64>::try_from(idx.contiguous().view(-1))?;
    Ok(queries
        .iter()
        .enumerate()
        .map(|(qi, q)| {
            let golds = &gold[q];
            (
                *q,
                (0..w).find(|&r| golds.contains(&(idx[qi * w + r] as usize))),
            )
        })
        .collect())
}

/// Precision@k for every k in `ks`, over the source words of `test` pairs.
pub fn precision_at_k(
    space: &mut Space,
    test: &[(usize, usize)],
    retrieval: Retrieval,
    ks: &[usize],
) -> Result<Precision> {
    let kmax = ks.iter().copied().max().unwrap_or(1).max(1);
    let ranks = first_gold_ranks(space, test, retrieval, kmax)?;
    let mut hits: BTreeMap<usize, usize> = ks.iter().map(|&k| (k, 0)).collect();
    for (_, first) in &ranks {
        if let Some(r) = first {
            for (&k, h) in hits.iter_mut() {
                if *r < k {
                    *h += 1;
                }
            }
        }
    }
    let n = ranks.len().max(1) as f64;
    Ok(Precision {
        retrieval: retrieval.name(),
        at: hits
            .into_iter()
            .map(|(k, h)| (k, 100.0 * h as f64 / n))
            .collect(),
        queries: ranks.len(),
    })
}

/// The share of hits in one group of test words, with a 95% interval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupRate {
    pub group: String,
    pub words: usize,
    pub hits: usize,
    /// Percentages: the rate and its Wilson score interval.
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// Wilson's score interval for `hits` of `n` at normal quantile `z`, as
/// fractions; (0, 1) for n = 0.
pub fn wilson(hits: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, hits as f64 / n as f64);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Hit rates per group, groups in `order` first (those with no word left
/// out), then any others alphabetically.
pub fn rates_by_group<'a>(
    items: impl IntoIterator<Item = (&'a str, bool)>,
    order: &[&str],
) -> Vec<GroupRate> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (g, hit) in items {
        let c = counts.entry(g).or_default();
        c.0 += 1;
        c.1 += hit as usize;
    }
    let mut keys: Vec<&str> = order
        .iter()
        .copied()
        .filter(|g| counts.contains_key(g))
        .collect();
    keys.extend(counts.keys().copied().filter(|g| !order.contains(g)));
    keys.into_iter()
        .map(|g| {
            let (n, h) = counts[g];
            let (lo, hi) = wilson(h, n, 1.959964);
            GroupRate {
                group: g.to_string(),
                words: n,
                hits: h,
                rate: 100.0 * h as f64 / n as f64,
                low: 100.0 * lo,
                high: 100.0 * hi,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn precision_matches_a_hand_count() {
        let _one = embedlab_testkit::seeded();
        // Target i is source i rotated slightly; source 3's gold is wrong on purpose.
        tch::manual_seed(11);
        let x = Tensor::randn([50, 12], (Kind::Float, Device::Cpu));
        let y = &x + Tensor::randn([50, 12], (Kind::Float, Device::Cpu)) * 0.01;
        let mut space = Space::new(&x, &y).unwrap();
        let test = vec![(0, 0), (1, 1), (2, 7), (2, 2), (3, 9)];
        let p = precision_at_k(&mut space, &test, Retrieval::Nn, &[1, 5]).unwrap();
        assert_eq!(p.queries, 4);
        assert_eq!(p.at[&1], 75.0);
        // Source 3's rank of target 9 decides P@5: brute-force it.
        let sims: Vec<f64> = (0..50)
            .map(|j| {
                let (a, b) = (x.get(3), y.get(j));
                (a.dot(&b) / (a.norm() * b.norm())).double_value(&[])
            })
            .collect();
        let rank9 = sims.iter().filter(|&&s| s > sims[9]).count();
        assert_eq!(p.at[&5], if rank9 < 5 { 100.0 } else { 75.0 });
        let ranks = first_gold_ranks(&mut space, &test, Retrieval::Nn, 5).unwrap();
        assert_eq!(ranks[..3], [(0, Some(0)), (1, Some(0)), (2, Some(0))]);
        assert_eq!(ranks[3].1, (rank9 < 5).then_some(rank9));
    }

    #[test]
    fn wilson_intervals_match_published_values_and_groups_keep_their_order() {
        // Wilson (1927) / Newcombe (1998) example: 81 of 263, 95%: 0.2553–0.3662.
        let (lo, hi) = wilson(81, 263, 1.959964);
        assert!(
            (lo - 0.2553).abs() < 1e-4 && (hi - 0.3662).abs() < 1e-4,
            "{lo} {hi}"
        );
        // 0 of 10: [0, 0.2775]; all of 10: [0.7225, 1].
        let (lo, hi) = wilson(0, 10, 1.959964);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-4);
        let (lo, hi) = wilson(10, 10, 1.959964);
        assert!((lo - 0.7225).abs() < 1e-4 && (hi - 1.0).abs() < 1e-12);
        let g = rates_by_group(
            [
                ("b", true),
                ("a", false),
                ("c", true),
                ("b", false),
                ("z", true),
            ],
            &["c", "b", "missing"],
        );
        let names: Vec<&str> = g.iter().map(|r| r.group.as_str()).collect();
        assert_eq!(names, ["c", "b", "a", "z"]);
        assert_eq!((g[1].words, g[1].hits, g[1].rate), (2, 1, 50.0));
    }
}
