//! Exact k nearest neighbours by Euclidean distance (query by image, in
//! pixel space or in latent space), blocked so memory stays bounded.
use tch::{Kind, Tensor};

/// For each query row, the indices (and distances) of its `k` nearest rows
/// of `base`, nearest first. Inputs are flattened to rows.
pub fn knn(queries: &Tensor, base: &Tensor, k: i64) -> (Tensor, Tensor) {
    let q = queries.flatten(1, -1).to_kind(Kind::Float);
    let b = base.flatten(1, -1).to_kind(Kind::Float);
    let k = k.min(b.size()[0]);
    let bn = b.square().sum_dim_intlist(1, false, Kind::Float);
    let mut idx = vec![];
    let mut dist = vec![];
    let block = 256;
    let nq = q.size()[0];
    let mut s = 0;
    while s < nq {
        let len = block.min(nq - s);
        let qb = q.narrow(0, s, len);
        let qn = qb.square().sum_dim_intlist(1, true, Kind::Float);
        let d2 = (qn + &bn.unsqueeze(0) - qb.matmul(&b.tr()) * 2.0).clamp_min(0.0);
        let (v, i) = d2.topk(k, 1, false, true);
        idx.push(i);
        dist.push(v.sqrt());
        s += len;
    }
    (Tensor::cat(&idx, 0), Tensor::cat(&dist, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn matches_brute_force() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(0);
        let base = Tensor::randn([300, 7], (Kind::Float, Device::Cpu));
        let q = Tensor::randn([20, 7], (Kind::Float, Device::Cpu));
        let (idx, dist) = knn(&q, &base, 5);
        let bv: Vec<Vec<f32>> = (0..300)
            .map(|i| Vec::try_from(&base.get(i)).unwrap())
            .collect();
        for r in 0..20 {
            let qv: Vec<f32> = Vec::try_from(&q.get(r)).unwrap();
            let mut d: Vec<(f32, usize)> = bv
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    (
                        b.iter()
                            .zip(&qv)
                            .map(|(a, c)| (a - c).powi(2))
                            .sum::<f32>()
                            .sqrt(),
                        i,
                    )
                })
                .collect();
            d.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            for j in 0..5 {
                assert_eq!(idx.int64_value(&[r, j]) as usize, d[j as usize].1);
                assert!((dist.double_value(&[r, j]) as f32 - d[j as usize].0).abs() < 1e-4);
            }
        }
    }
}
