//! 2-D projections of codes: PCA (exact, via SVD) and t-SNE (Barnes–Hut,
//! the `bhtsne` crate), started from the scaled PCA layout so that a run
//! does not depend on a hidden random initialisation.
use crate::{ReportError, Result};
use tch::{Kind, Tensor};

/// The first two principal components' coordinates, n × 2 (f32 rows).
pub fn pca_2d(x: &Tensor) -> Result<Vec<[f32; 2]>> {
    let x = x
        .flatten(1, -1)
        .to_kind(Kind::Double)
        .to_device(tch::Device::Cpu);
    let n = x.size()[0];
    if n < 2 {
        return Err(ReportError::Invalid(format!(
            "{n} points: a 2-D map needs at least 2"
        )));
    }
    let c = &x - x.mean_dim(0, true, Kind::Double);
    // c = U diag(S) Vᵀ; the coordinates are c V[:, :2].
    let (_, _, v) = c.svd(true, true);
    let k = v.size()[1].min(2);
    let mut p = c.matmul(&v.narrow(1, 0, k));
    if k < 2 {
        p = Tensor::cat(&[p.shallow_clone(), p.zeros_like()], 1);
    }
    rows(&p)
}

fn rows(p: &Tensor) -> Result<Vec<[f32; 2]>> {
    let v: Vec<f32> = Vec::try_from(&p.to_kind(Kind::Float).contiguous().flatten(0, -1))
        .map_err(|e: tch::TchError| ReportError::Invalid(e.to_string()))?;
    Ok(v.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
}

/// t-SNE to 2-D (Barnes–Hut, θ = 0.5), perplexity as given.
pub fn tsne_2d(x: &Tensor, perplexity: f32, epochs: usize) -> Result<Vec<[f32; 2]>> {
    let flat = x
        .flatten(1, -1)
        .to_kind(Kind::Float)
        .to_device(tch::Device::Cpu)
        .contiguous();
    let n = flat.size()[0] as usize;
    let d = flat.size()[1] as usize;
    if (n as f32) < 3.0 * perplexity + 2.0 {
        return Err(ReportError::Invalid(format!(
            "{n} points are too few for perplexity {perplexity} (need > 3·perplexity + 1)"
        )));
    }
    let data: Vec<f32> = Vec::try_from(&flat.flatten(0, -1))
        .map_err(|e: tch::TchError| ReportError::Invalid(e.to_string()))?;
    let points: Vec<&[f32]> = data.chunks_exact(d).collect();
    // PCA start scaled to a standard deviation of 1e-4, as scikit-learn does.
    let init = pca_2d(&flat)?;
    let sd = (init.iter().map(|p| (p[0] as f64).powi(2)).sum::<f64>() / n as f64)
        .sqrt()
        .max(1e-12);
    let init: Vec<f32> = init
        .iter()
        .flat_map(|p| {
            [
                (p[0] as f64 / sd * 1e-4) as f32,
                (p[1] as f64 / sd * 1e-4) as f32,
            ]
        })
        .collect();
    let mut t: bhtsne::tSNE<f32, &[f32]> = bhtsne::tSNE::new(&points);
    t.perplexity(perplexity)
        .epochs(epochs)
        .initial_embedding(init)
        .barnes_hut(0.5, |a, b| {
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt()
        });
    let e = t.embedding();
    Ok(e.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn pca_finds_the_plane_of_the_data() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(0);
        // Points on a plane in 6-d: the 2-D map keeps all distances.
        let basis = Tensor::linalg_qr(
            &Tensor::randn([6, 2], (Kind::Double, Device::Cpu)),
            "reduced",
        )
        .0
        .tr();
        let c = Tensor::randn([50, 2], (Kind::Double, Device::Cpu));
        let x = c.matmul(&basis);
        let p = pca_2d(&x).unwrap();
        let dist =
            |a: [f64; 2], b: [f64; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
        for (i, j) in [(0, 1), (3, 17), (20, 49)] {
            let orig = (x.get(i) - x.get(j)).norm().double_value(&[]);
            let got = dist(
                p[i as usize].map(|v| v as f64),
                p[j as usize].map(|v| v as f64),
            );
            assert!((orig - got).abs() < 1e-4, "{orig} vs {got}");
        }
    }

    #[test]
    fn tsne_keeps_clusters_apart() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(1);
        // Three tight clusters in 10-d.
        let centres = Tensor::randn([3, 10], (Kind::Float, Device::Cpu)) * 10.0;
        let y = Tensor::arange(90, (Kind::Int64, Device::Cpu)).remainder(3);
        let x =
            centres.index_select(0, &y) + Tensor::randn([90, 10], (Kind::Float, Device::Cpu)) * 0.3;
        let e = tsne_2d(&x, 10.0, 500).unwrap();
        let lab: Vec<i64> = Vec::try_from(&y).unwrap();
        // Every point's nearest neighbour in the map is of its cluster.
        for i in 0..90 {
            let nn = (0..90)
                .filter(|&j| j != i)
                .min_by(|&a, &b| {
                    let d = |j: usize| (e[i][0] - e[j][0]).powi(2) + (e[i][1] - e[j][1]).powi(2);
                    d(a).partial_cmp(&d(b)).unwrap()
                })
                .unwrap();
            assert_eq!(lab[i], lab[nn], "point {i}");
        }
        assert!(tsne_2d(&x.narrow(0, 0, 10), 10.0, 10).is_err());
    }
}
