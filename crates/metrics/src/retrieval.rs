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

/// Precision@k for every k in `ks`, over the source words of `test` pairs.
pub fn precision_at_k(
    space: &mut Space,
    test: &[(usize, usize)],
    retrieval: Retrieval,
    ks: &[usize],
) -> Result<Precision> {
    let gold = group_by_source(test);
    let queries: Vec<usize> = gold.keys().copied().collect();
    let kmax = ks.iter().copied().max().unwrap_or(1).max(1) as i64;
    let (_, idx) = space.translate(&queries, retrieval, kmax)?;
    let w = idx.size().get(1).copied().unwrap_or(0) as usize;
    let idx = Vec::<i64>::try_from(idx.contiguous().view(-1))?;
    let mut hits: BTreeMap<usize, usize> = ks.iter().map(|&k| (k, 0)).collect();
    for (qi, q) in queries.iter().enumerate() {
        let golds = &gold[q];
        // The first rank (0-based) at which a gold translation appears.
        let first = (0..w).find(|&r| golds.contains(&(idx[qi * w + r] as usize)));
        if let Some(r) = first {
            for (&k, h) in hits.iter_mut() {
                if r < k {
                    *h += 1;
                }
            }
        }
    }
    let n = queries.len().max(1) as f64;
    Ok(Precision {
        retrieval: retrieval.name(),
        at: hits
            .into_iter()
            .map(|(k, h)| (k, 100.0 * h as f64 / n))
            .collect(),
        queries: queries.len(),
    })
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
    }
}
