//! How far two embedding spaces are from isomorphic — the assumption every
//! unsupervised mapping method makes. Three measures, as Søgaard et al.
//! (2018) and Vulić et al. (2020, "Are all good word vector spaces
//! isomorphic?") define and compute them:
//!
//! - **Eigenvector similarity** (EVS, lower = more alike): the Laplacian
//!   spectra of the two spaces' nearest-neighbour graphs (each word joined to
//!   its nearest other word by cosine, undirected, unweighted), compared over
//!   the k largest eigenvalues, k the smallest count holding 90% of either
//!   spectrum's sum: Σᵢ (λᵢ − μᵢ)². It needs no alignment of the words.
//! - **Relational similarity** (higher = more alike): on translation pairs
//!   (sᵢ, tᵢ), the Pearson correlation between cos(sᵢ, sⱼ) and cos(tᵢ, tⱼ)
//!   over all i < j.
//! - **Gromov–Hausdorff estimate** (lower = more alike): the bottleneck
//!   distance between the 0-dimensional persistence diagrams of the two
//!   spaces' Rips filtrations (Chazal et al. 2009 bound the GH distance
//!   below by half of it; Patra et al. 2019 use it as the estimate). With
//!   every point born at 0, a diagram is the lengths of the minimum
//!   spanning tree's edges, so both are exact here.
//!
//! The functions take the rows as given; the reference protocol first scales
//! rows to unit length, centres them and scales again (`renorm,center,renorm`),
//! which the caller applies.
use embedlab_align::{AlignError, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Rows a block of the similarity matrix holds at a time.
const BLOCK: i64 = 2048;

fn check_rows(x: &Tensor, what: &str, min: i64) -> Result<(i64, i64)> {
    let s = x.size();
    if s.len() != 2 || s[0] < min {
        return Err(AlignError::Invalid(format!(
            "{what}: needs a matrix of at least {min} rows, got shape {s:?}"
        )));
    }
    Ok((s[0], s[1]))
}

/// Each row's nearest other row by dot product (cosine for unit rows).
pub fn nearest_other(x: &Tensor) -> Result<Vec<usize>> {
    let (n, _) = check_rows(x, "nearest-neighbour graph", 2)?;
    let x = x.to_kind(Kind::Float);
    let mut out = Vec::with_capacity(n as usize);
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        let mut sim = x.narrow(0, start, len).matmul(&x.tr());
        let rows = Tensor::arange(len, (Kind::Int64, x.device()));
        let cols = &rows + start;
        let _ = sim.index_put_(
            &[Some(rows), Some(cols)],
            &Tensor::from(f32::NEG_INFINITY).to_device(x.device()),
            false,
        );
        let idx: Vec<i64> = Vec::try_from(sim.argmax(1, false).to_device(Device::Cpu))?;
        out.extend(idx.into_iter().map(|i| i as usize));
        start += len;
    }
    Ok(out)
}

/// The Laplacian spectrum (descending) of the undirected graph joining each
/// row to its nearest other row, and the graph's component sizes.
pub fn nn_graph_spectrum(x: &Tensor) -> Result<(Vec<f64>, Vec<usize>)> {
    let nn = nearest_other(x)?;
    let n = nn.len();
    let mut edges: Vec<(usize, usize)> = nn
        .iter()
        .enumerate()
        .map(|(i, &j)| (i.min(j), i.max(j)))
        .collect();
    edges.sort_unstable();
    edges.dedup();
    // Components by union-find; the Laplacian is block-diagonal over them.
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for &(a, b) in &edges {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra] = rb;
        }
    }
    let mut members: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        let r = find(&mut parent, i);
        members.entry(r).or_default().push(i);
    }
    let mut local = vec![0usize; n];
    let mut comp_of = vec![0usize; n];
    let comps: Vec<Vec<usize>> = members.into_values().collect();
    for (c, m) in comps.iter().enumerate() {
        for (k, &i) in m.iter().enumerate() {
            local[i] = k;
            comp_of[i] = c;
        }
    }
    let mut lap: Vec<Vec<f64>> = comps.iter().map(|m| vec![0.0; m.len() * m.len()]).collect();
    for &(a, b) in &edges {
        let c = comp_of[a];
        let m = comps[c].len();
        let (i, j) = (local[a], local[b]);
        let l = &mut lap[c];
        l[i * m + i] += 1.0;
        l[j * m + j] += 1.0;
        l[i * m + j] -= 1.0;
        l[j * m + i] -= 1.0;
    }
    let mut spectrum = Vec::with_capacity(n);
    for (c, l) in lap.into_iter().enumerate() {
        let m = comps[c].len();
        match m {
            1 => spectrum.push(0.0),
            2 => spectrum.extend([0.0, 2.0]),
            _ => {
                let t = Tensor::from_slice(&l).reshape([m as i64, m as i64]);
                let ev: Vec<f64> = Vec::try_from(t.linalg_eigvalsh("L"))?;
                spectrum.extend(ev.into_iter().map(|v| v.max(0.0)));
            }
        }
    }
    spectrum.sort_unstable_by(|a, b| b.total_cmp(a));
    let mut sizes: Vec<usize> = comps.iter().map(Vec::len).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    Ok((spectrum, sizes))
}

/// The smallest k whose first k values hold `energy` of the sum (all of
/// them when the sum is 0); for the k largest, `desc` sorted descending.
pub fn select_k(desc: &[f64], energy: f64) -> usize {
    let total: f64 = desc.iter().sum();
    if total <= 0.0 {
        return desc.len();
    }
    let mut run = 0.0;
    for (i, v) in desc.iter().enumerate() {
        run += v;
        if run / total >= energy {
            return i + 1;
        }
    }
    desc.len()
}

/// Eigenvector similarity of two spaces and what it was computed from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evs {
    pub value: f64,
    /// Eigenvalues compared.
    pub k: usize,
    pub words: usize,
    /// Number of components and the largest one's size, per side.
    pub components: (usize, usize),
    pub largest_component: (usize, usize),
    /// The same comparison over the spectra in ascending order, as the
    /// reference script of Vulić et al. (2020, `evs_script.py`) computes it:
    /// the k smallest eigenvalues, k the smallest count holding 90% of the
    /// sum from that end — every eigenvalue but the largest few, the hubs'.
    pub ascending: f64,
    pub k_ascending: usize,
}

/// Eigenvector similarity (Søgaard et al. 2018) of the rows of `x` and `y`.
pub fn eigenvector_similarity(x: &Tensor, y: &Tensor) -> Result<Evs> {
    let (sx, cx) = nn_graph_spectrum(x)?;
    let (sy, cy) = nn_graph_spectrum(y)?;
    // Σ (λᵢ − μᵢ)² over the first k of two spectra in the given order.
    let compare = |a: &[f64], b: &[f64]| {
        let k = select_k(a, 0.9).min(select_k(b, 0.9));
        let v: f64 = a.iter().zip(b).take(k).map(|(a, b)| (a - b).powi(2)).sum();
        (v, k)
    };
    let (value, k) = compare(&sx, &sy);
    let rev = |s: &[f64]| s.iter().rev().copied().collect::<Vec<f64>>();
    let (ascending, k_ascending) = compare(&rev(&sx), &rev(&sy));
    Ok(Evs {
        ascending,
        k_ascending,
        value,
        k,
        words: sx.len().min(sy.len()),
        components: (cx.len(), cy.len()),
        largest_component: (cx[0], cy[0]),
    })
}

/// Pearson correlation of two equally long series (0 when either is constant).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// The dot products of every pair i < j of rows, row-major.
fn upper_products(x: &Tensor) -> Result<Vec<f64>> {
    let n = x.size()[0];
    let g = x
        .to_kind(Kind::Double)
        .matmul(&x.to_kind(Kind::Double).tr());
    let mask = Tensor::ones([n, n], (Kind::Bool, x.device())).triu(1);
    Ok(Vec::try_from(
        g.masked_select(&mask).to_device(Device::Cpu),
    )?)
}

/// Relational similarity (Vulić et al. 2020): row i of `x` translates as
/// row i of `y`.
pub fn relational_similarity(x: &Tensor, y: &Tensor) -> Result<f64> {
    let (n, _) = check_rows(x, "relational similarity (source pairs)", 3)?;
    let (m, _) = check_rows(y, "relational similarity (target pairs)", 3)?;
    if n != m {
        return Err(AlignError::Invalid(format!(
            "relational similarity: {n} source rows against {m} target rows"
        )));
    }
    Ok(pearson(&upper_products(x)?, &upper_products(y)?))
}

/// Euclidean distances between all rows, row-major (n × n).
fn distances(x: &Tensor) -> Result<Vec<f32>> {
    let x = x.to_kind(Kind::Float);
    let sq = (&x * &x).sum_dim_intlist(1, true, Kind::Float);
    let d2 = (&sq + sq.tr() - x.matmul(&x.tr()) * 2.0).clamp_min(0.0);
    Ok(Vec::try_from(
        d2.sqrt().flatten(0, 1).to_device(Device::Cpu),
    )?)
}

/// The death times of the 0-dimensional persistence diagram of the Rips
/// filtration of the rows (Euclidean distance): the minimum spanning tree's
/// edge lengths (Prim), ascending. n rows give n − 1 deaths; the one
/// component that never dies is left out (both diagrams have it).
pub fn rips_h0_deaths(x: &Tensor) -> Result<Vec<f64>> {
    let (n, _) = check_rows(x, "persistence diagram", 2)?;
    let n = n as usize;
    let d = distances(x)?;
    let mut best = vec![f32::INFINITY; n];
    let mut done = vec![false; n];
    let mut deaths = Vec::with_capacity(n - 1);
    let mut cur = 0usize;
    done[0] = true;
    for _ in 1..n {
        let row = &d[cur * n..(cur + 1) * n];
        let mut next = usize::MAX;
        let mut next_d = f32::INFINITY;
        for j in 0..n {
            if done[j] {
                continue;
            }
            if row[j] < best[j] {
                best[j] = row[j];
            }
            if best[j] < next_d || next == usize::MAX {
                next_d = best[j];
                next = j;
            }
        }
        done[next] = true;
        deaths.push(next_d as f64);
        cur = next;
    }
    deaths.sort_unstable_by(f64::total_cmp);
    Ok(deaths)
}

/// Bottleneck distance between two persistence diagrams whose points are all
/// born at 0, given by their death times (any order). A point (0, a) matched
/// to (0, b) costs |a − b|, one left unmatched costs its distance a/2 to the
/// diagonal. An optimal matching pairs the sorted deaths without crossings,
/// so a dynamic programme over the two sorted lists finds it exactly.
pub fn bottleneck_born_at_zero(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    let nb = b.len();
    // prev[j]: best over the first i deaths of a and j of b.
    let mut prev = vec![0.0f64; nb + 1];
    for j in 1..=nb {
        prev[j] = prev[j - 1].max(b[j - 1] / 2.0);
    }
    let mut cur = vec![0.0f64; nb + 1];
    for &ai in &a {
        cur[0] = prev[0].max(ai / 2.0);
        for j in 1..=nb {
            let bj = b[j - 1];
            let skip_a = prev[j].max(ai / 2.0);
            let skip_b = cur[j - 1].max(bj / 2.0);
            let pair = prev[j - 1].max((ai - bj).abs());
            cur[j] = skip_a.min(skip_b).min(pair);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[nb]
}

/// The Gromov–Hausdorff estimate of Patra et al. (2019): the bottleneck
/// distance between the two spaces' 0-dimensional Rips persistence diagrams.
pub fn gromov_hausdorff_estimate(x: &Tensor, y: &Tensor) -> Result<f64> {
    Ok(bottleneck_born_at_zero(
        &rips_h0_deaths(x)?,
        &rips_h0_deaths(y)?,
    ))
}

/// The three measures for one pair of spaces, with the sizes they used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Isomorphism {
    pub evs: Evs,
    /// Most frequent words of each side in the Gromov–Hausdorff estimate.
    pub gh_words: usize,
    pub gromov_hausdorff: f64,
    /// Translation pairs in the relational similarity.
    pub rsim_pairs: usize,
    pub relational_similarity: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedlab_testkit::seeded;

    fn unit_circle(angles: &[f64]) -> Tensor {
        let v: Vec<f32> = angles
            .iter()
            .flat_map(|a| [a.cos() as f32, a.sin() as f32])
            .collect();
        Tensor::from_slice(&v).reshape([angles.len() as i64, 2])
    }

    fn random_rotation(d: i64) -> Tensor {
        let (q, _) = Tensor::linalg_qr(
            &Tensor::randn([d, d], (Kind::Float, Device::Cpu)),
            "reduced",
        );
        q
    }

    #[test]
    fn the_spectrum_of_a_path_and_of_a_pair() {
        // Angles 0, 0.1, 0.25: 0↔1 are mutual neighbours, 2's is 1: the path
        // P3, Laplacian spectrum {3, 1, 0}. Plus a far pair: {2, 0}.
        let x = unit_circle(&[0.0, 0.1, 0.25, 3.0, 3.05]);
        let (s, sizes) = nn_graph_spectrum(&x).unwrap();
        let want = [3.0, 2.0, 1.0, 0.0, 0.0];
        for (a, b) in s.iter().zip(want) {
            assert!((a - b).abs() < 1e-9, "{s:?}");
        }
        assert_eq!(sizes, vec![3, 2]);
        assert_eq!(select_k(&s, 0.9), 3); // 3 + 2 + 1 = 6 of 6
        assert_eq!(select_k(&[5.0, 4.0, 1.0], 0.9), 2);
        assert_eq!(select_k(&[0.0, 0.0], 0.9), 2);
    }

    #[test]
    fn isometric_spaces_score_as_isomorphic_and_random_ones_do_not() {
        let _g = seeded();
        tch::manual_seed(3);
        let x = embedlab_align::normalize::unit_rows(&Tensor::randn(
            [300, 20],
            (Kind::Float, Device::Cpu),
        ));
        let y = x.matmul(&random_rotation(20));
        let evs = eigenvector_similarity(&x, &y).unwrap();
        assert!(evs.value < 1e-6 && evs.ascending < 1e-6, "{evs:?}");
        assert!((relational_similarity(&x, &y).unwrap() - 1.0).abs() < 1e-6);
        assert!(gromov_hausdorff_estimate(&x, &y).unwrap() < 1e-4);
        // An unrelated space of another shape: all three see it.
        let z = Tensor::randn([300, 20], (Kind::Float, Device::Cpu));
        let z = embedlab_align::normalize::unit_rows(&(&z * &z * &z));
        let evs = eigenvector_similarity(&x, &z).unwrap();
        assert!(evs.value > 1.0 && evs.ascending > 0.1, "{evs:?}");
        assert!(relational_similarity(&x, &z).unwrap().abs() < 0.05);
        assert!(gromov_hausdorff_estimate(&x, &z).unwrap() > 0.01);
        // Permuting the rows changes nothing but the relational similarity,
        // which needs the pairs aligned.
        let perm = Tensor::randperm(300, (Kind::Int64, Device::Cpu));
        let yp = y.index_select(0, &perm);
        assert!(eigenvector_similarity(&x, &yp).unwrap().value < 1e-6);
        assert!(gromov_hausdorff_estimate(&x, &yp).unwrap() < 1e-4);
        assert!(relational_similarity(&x, &yp).unwrap().abs() < 0.05);
    }

    #[test]
    fn rips_deaths_are_the_minimum_spanning_tree_edges() {
        // Points 0, 1, 3 and 7 on a line: the tree joins neighbours.
        let x = Tensor::from_slice(&[0.0f32, 1.0, 3.0, 7.0]).reshape([4, 1]);
        let d = rips_h0_deaths(&x).unwrap();
        assert_eq!(d, vec![1.0, 2.0, 4.0]);
        // Against Kruskal over all edges, on random points.
        let _g = seeded();
        tch::manual_seed(5);
        let x = Tensor::randn([40, 3], (Kind::Float, Device::Cpu));
        let v: Vec<f32> = Vec::try_from(x.flatten(0, 1)).unwrap();
        let p = |i: usize| &v[i * 3..i * 3 + 3];
        let mut e = Vec::new();
        for i in 0..40 {
            for j in i + 1..40 {
                let d: f32 = p(i).iter().zip(p(j)).map(|(a, b)| (a - b).powi(2)).sum();
                e.push((d.sqrt() as f64, i, j));
            }
        }
        e.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut comp: Vec<usize> = (0..40).collect();
        let mut want = Vec::new();
        for (d, i, j) in e {
            let (ci, cj) = (comp[i], comp[j]);
            if ci != cj {
                want.push(d);
                for c in comp.iter_mut() {
                    if *c == cj {
                        *c = ci;
                    }
                }
            }
        }
        let got = rips_h0_deaths(&x).unwrap();
        assert_eq!(got.len(), 39);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    /// Every partial matching of two small diagrams, by brute force.
    fn bottleneck_brute(a: &[f64], b: &[f64]) -> f64 {
        fn go(a: &[f64], b: &[f64], used: &mut Vec<bool>, i: usize, worst: f64, best: &mut f64) {
            if worst >= *best {
                return;
            }
            if i == a.len() {
                let rest = b
                    .iter()
                    .zip(used.iter())
                    .filter(|(_, &u)| !u)
                    .map(|(x, _)| x / 2.0)
                    .fold(0.0, f64::max);
                *best = best.min(worst.max(rest));
                return;
            }
            go(a, b, used, i + 1, worst.max(a[i] / 2.0), best);
            for j in 0..b.len() {
                if !used[j] {
                    used[j] = true;
                    go(a, b, used, i + 1, worst.max((a[i] - b[j]).abs()), best);
                    used[j] = false;
                }
            }
        }
        let mut best = f64::INFINITY;
        go(a, b, &mut vec![false; b.len()], 0, 0.0, &mut best);
        best
    }

    #[test]
    fn the_bottleneck_programme_matches_brute_force() {
        assert_eq!(bottleneck_born_at_zero(&[], &[]), 0.0);
        assert_eq!(bottleneck_born_at_zero(&[4.0], &[]), 2.0);
        assert_eq!(bottleneck_born_at_zero(&[1.0, 5.0], &[5.5]), 0.5);
        // Crossing would be worse: 1→2 and 3→4 cost 1; 1→4, 3→2 cost 3.
        assert_eq!(bottleneck_born_at_zero(&[3.0, 1.0], &[2.0, 4.0]), 1.0);
        let mut state = 12345u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 1000) as f64 / 100.0
        };
        for _ in 0..300 {
            let na = (rnd() as usize) % 5;
            let nb = (rnd() as usize) % 5;
            let a: Vec<f64> = (0..na).map(|_| rnd()).collect();
            let b: Vec<f64> = (0..nb).map(|_| rnd()).collect();
            let (dp, bf) = (bottleneck_born_at_zero(&a, &b), bottleneck_brute(&a, &b));
            assert!((dp - bf).abs() < 1e-12, "{a:?} {b:?}: {dp} vs {bf}");
        }
    }

    #[test]
    fn bad_shapes_are_named() {
        let one = Tensor::zeros([1, 3], (Kind::Float, Device::Cpu));
        let e = nn_graph_spectrum(&one).unwrap_err().to_string();
        assert!(
            e.contains("nearest-neighbour graph") && e.contains("at least 2"),
            "{e}"
        );
        let a = Tensor::zeros([5, 3], (Kind::Float, Device::Cpu));
        let b = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        let e = relational_similarity(&a, &b).unwrap_err().to_string();
        assert!(e.contains("5 source rows against 4"), "{e}");
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), 0.0);
    }
}
