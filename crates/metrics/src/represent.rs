//! Metrics of a representation benchmark: how well a feature space (raw
//! pixels, an autoencoder's codes, a classifier's penultimate layer)
//! organises the classes, without training anything on it (retrieval,
//! clustering, distances, k-NN) or with a linear probe on few labels.
//!
//! Features are n × d float tensors (any shape whose first dimension is n
//! is flattened to rows), labels 1-D integer tensors of length n. All
//! distances are Euclidean. Everything is exact and brute force over the
//! given sets: the n × n (or n × m) distance matrix is never held whole but
//! computed a block of rows at a time, about 16 MB of doubles a block
//! matrix (on 10,000 × 128 the process peaks at 380 MB resident, libtorch
//! included). Distances are computed in double
//! precision (‖a‖² + ‖b‖² − 2 a·b, clamped at 0) except in [`knn_accuracy`],
//! which reuses [`crate::neighbours::knn`] (float32).
//!
//! Randomness ([`kmeans`], [`few_label_probe`]'s draw) comes from a
//! SplitMix64 generator seeded by the caller, so results are reproducible
//! for a seed and independent of libtorch's global generator (the probe
//! itself seeds libtorch with `ProbeConfig::seed`).
use crate::neighbours::knn;
use crate::probe::{linear_probe, ProbeConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// At most this many elements in one block × n matrix (16 MB of doubles).
const BLOCK_ELEMS: i64 = 1 << 21;
/// Lloyd iterations of one k-means run at most.
pub const KMEANS_MAX_ITER: usize = 300;

fn rows_per_block(n: i64, block_elems: i64) -> i64 {
    (block_elems / n.max(1)).max(1)
}

/// The rows of `x` as an n × d double matrix.
fn rows(x: &Tensor) -> Tensor {
    let x = if x.dim() == 1 {
        x.unsqueeze(1)
    } else {
        x.shallow_clone()
    };
    x.flatten(1, -1).to_kind(Kind::Double)
}

/// `y` as a 1-D Int64 tensor of length `n`, on `device`.
fn label_rows(y: &Tensor, n: i64, device: Device, what: &str) -> Tensor {
    let y = y.flatten(0, -1).to_kind(Kind::Int64).to_device(device);
    assert_eq!(
        y.size()[0],
        n,
        "{what}: {} labels for {n} rows",
        y.size()[0]
    );
    y
}

fn to_vec_i64(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.flatten(0, -1).to_kind(Kind::Int64).to_device(Device::Cpu))
        .expect("an Int64 tensor converts to Vec<i64>")
}

fn to_vec_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(
        t.flatten(0, -1)
            .to_kind(Kind::Double)
            .to_device(Device::Cpu),
    )
    .expect("a Double tensor converts to Vec<f64>")
}

/// Squared distances (clamped at 0) between the rows of `q` and of `x`,
/// given their squared norms `qn` and `xn` (1-D).
fn sq_dists(q: &Tensor, qn: &Tensor, x: &Tensor, xn: &Tensor) -> Tensor {
    (qn.unsqueeze(1) + xn.unsqueeze(0) - q.matmul(&x.tr()) * 2.0).clamp_min(0.0)
}

fn sq_norms(x: &Tensor) -> Tensor {
    x.square().sum_dim_intlist(1, false, Kind::Double)
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, well-mixed, seedable
/// generator; plenty for sampling initial centres and label subsets.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (Lemire's multiply-shift; bias < n / 2⁶⁴).
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Uniform in [0, 1), 53 random bits.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

// ---------------------------------------------------------------------------
// Retrieval

/// Query-by-example retrieval scores of a labelled set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Retrieval {
    /// Mean over all queries of (items among the k nearest others with the
    /// query's label) / k.
    pub precision_at_k: f64,
    /// Mean average precision over the queries that have at least one other
    /// item of their class.
    pub map: f64,
    /// The k used: the requested one, at most n − 1.
    pub k: i64,
}

/// Retrieval within one labelled set (query by image): every item in turn
/// queries all the *other* items, ranked by Euclidean distance, ties by
/// index (the lower index first). An item is relevant to a query when it
/// has the query's label.
///
/// - precision@k of a query = |relevant among ranks 1..=k| / k, with k
///   capped at n − 1; `precision_at_k` is its mean over all n queries.
/// - average precision of a query with R ≥ 1 relevant items at ranks
///   r₁ < … < r_R of the full ranking: AP = (1/R) Σ_j precision@r_j, where
///   precision@r_j = j / r_j. `map` is the mean of AP over the queries with
///   R ≥ 1 (a query alone in its class has no relevant item and no AP; it
///   still counts in precision@k, with 0). 0 when no query has R ≥ 1.
///
/// Exact: each block of queries sorts its full row of distances (stable
/// sort, so ties keep index order). O(n² (d + log n)) time.
pub fn retrieval(features: &Tensor, labels: &Tensor, k: i64) -> Retrieval {
    retrieval_blocked(features, labels, k, BLOCK_ELEMS)
}

fn retrieval_blocked(features: &Tensor, labels: &Tensor, k: i64, block_elems: i64) -> Retrieval {
    let _g = tch::no_grad_guard();
    let x = rows(features);
    let n = x.size()[0];
    assert!(n >= 2, "retrieval needs at least 2 items, got {n}");
    assert!(k >= 1, "retrieval: k = {k} must be ≥ 1");
    let dev = x.device();
    let y = label_rows(labels, n, dev, "retrieval");
    let k = k.min(n - 1);
    let xn = sq_norms(&x);
    // Ranks 1..=n−1 of the other items.
    let ranks = Tensor::arange_start(1, n, (Kind::Double, dev));
    let block = rows_per_block(n, block_elems);
    let (mut p_sum, mut ap_sum, mut ap_queries) = (0.0f64, 0.0f64, 0i64);
    let mut s = 0;
    while s < n {
        let len = block.min(n - s);
        let mut d2 = sq_dists(&x.narrow(0, s, len), &xn.narrow(0, s, len), &x, &xn);
        // The query itself goes first (every distance is ≥ 0) and is dropped.
        let own = Tensor::arange_start(s, s + len, (Kind::Int64, dev)).unsqueeze(1);
        let _ = d2.scatter_value_(1, &own, -1.0);
        let (_, order) = d2.sort_stable(true, 1, false);
        drop(d2);
        let order = order.narrow(1, 1, n - 1);
        let rel = y
            .take(&order)
            .eq_tensor(&y.narrow(0, s, len).unsqueeze(1))
            .to_kind(Kind::Double);
        drop(order);
        p_sum += rel.narrow(1, 0, k).sum(Kind::Double).double_value(&[]) / k as f64;
        let r = rel.sum_dim_intlist(1, false, Kind::Double);
        let ap_num =
            (rel.cumsum(1, Kind::Double) / &ranks * &rel).sum_dim_intlist(1, false, Kind::Double);
        // ap_num is 0 where R = 0, so those rows add nothing.
        ap_sum += (ap_num / r.clamp_min(1.0))
            .sum(Kind::Double)
            .double_value(&[]);
        ap_queries += r.gt(0.0).sum(Kind::Int64).int64_value(&[]);
        s += len;
    }
    Retrieval {
        precision_at_k: p_sum / n as f64,
        map: if ap_queries > 0 {
            ap_sum / ap_queries as f64
        } else {
            0.0
        },
        k,
    }
}

// ---------------------------------------------------------------------------
// Distances

/// How the classes sit in the feature space.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DistanceProperties {
    /// Mean distance over all pairs of distinct items with the same label
    /// (NaN when no class has two items).
    pub within: f64,
    /// Mean distance over all pairs of items with different labels (NaN
    /// when there is one class).
    pub between: f64,
    /// within / between: below 1 when classes are tighter than the space.
    pub ratio: f64,
    /// Share of items whose nearest other item (ties: the lower index) has
    /// another label: the leave-one-out error of the 1-NN classifier.
    pub nn_other_class: f64,
}

/// Within- and between-class mean distances and the 1-NN leave-one-out
/// error, exact over all n (n − 1) / 2 pairs (distinct items: an item is
/// never paired with itself, duplicates of it are). Pairs are unordered
/// (each ordered pair is counted twice, which leaves the means unchanged).
pub fn distance_properties(features: &Tensor, labels: &Tensor) -> DistanceProperties {
    distance_properties_blocked(features, labels, BLOCK_ELEMS)
}

fn distance_properties_blocked(
    features: &Tensor,
    labels: &Tensor,
    block_elems: i64,
) -> DistanceProperties {
    let _g = tch::no_grad_guard();
    let x = rows(features);
    let n = x.size()[0];
    assert!(
        n >= 2,
        "distance_properties needs at least 2 items, got {n}"
    );
    let dev = x.device();
    let y = label_rows(labels, n, dev, "distance_properties");
    let xn = sq_norms(&x);
    let block = rows_per_block(n, block_elems);
    let (mut w_sum, mut w_cnt, mut all_sum, mut nn_other) = (0.0f64, 0i64, 0.0f64, 0i64);
    let mut s = 0;
    while s < n {
        let len = block.min(n - s);
        let mut d2 = sq_dists(&x.narrow(0, s, len), &xn.narrow(0, s, len), &x, &xn);
        // An item is at distance 0 from itself (the expansion leaves
        // rounding there, which the square root would magnify).
        let own = Tensor::arange_start(s, s + len, (Kind::Int64, dev)).unsqueeze(1);
        let _ = d2.scatter_value_(1, &own, 0.0);
        let d = d2.sqrt();
        let yq = y.narrow(0, s, len);
        // Same label, the item itself included (it adds 0 to the sum).
        let same = y.unsqueeze(0).eq_tensor(&yq.unsqueeze(1));
        all_sum += d.sum(Kind::Double).double_value(&[]);
        w_sum += d
            .where_scalarother(&same, 0.0)
            .sum(Kind::Double)
            .double_value(&[]);
        w_cnt += same.sum(Kind::Int64).int64_value(&[]) - len;
        drop(d);
        // argmin returns the first minimum: ties go to the lower index.
        let _ = d2.scatter_value_(1, &own, f64::INFINITY);
        let nn = d2.argmin(1, false);
        nn_other += y.take(&nn).ne_tensor(&yq).sum(Kind::Int64).int64_value(&[]);
        s += len;
    }
    let b_cnt = n * (n - 1) - w_cnt;
    let b_sum = all_sum - w_sum;
    let mean = |s: f64, c: i64| if c > 0 { s / c as f64 } else { f64::NAN };
    let (within, between) = (mean(w_sum, w_cnt), mean(b_sum, b_cnt));
    DistanceProperties {
        within,
        between,
        ratio: within / between,
        nn_other_class: nn_other as f64 / n as f64,
    }
}

// ---------------------------------------------------------------------------
// Clustering

/// One k-means solution.
#[derive(Debug)]
pub struct KMeans {
    /// n cluster indices in 0..k (Int64, on the features' device).
    pub labels: Tensor,
    /// k × d centres (double), the means of their clusters.
    pub centres: Tensor,
    /// Σ over items of the squared distance to the assigned centre.
    pub inertia: f64,
    /// Lloyd iterations of the retained run.
    pub iterations: usize,
}

/// k-means: k-means++ seeding (Arthur & Vassilvitskii 2007: the first
/// centre uniform, each next one an item drawn with probability ∝ its
/// squared distance to the nearest centre so far), then Lloyd iterations
/// (assign every item to the nearest centre, ties to the lower centre
/// index; move every centre to its cluster's mean) until the assignment no
/// longer changes, at most [`KMEANS_MAX_ITER`] iterations. A cluster left
/// empty gets, as its new centre, the item farthest from its own centre
/// (the next farthest for the next empty cluster). Of `restarts`
/// independent runs (≥ 1), the one with the lowest inertia is kept (the
/// first among equals). Deterministic for a seed.
pub fn kmeans_fit(features: &Tensor, k: i64, seed: u64, restarts: usize) -> KMeans {
    let _g = tch::no_grad_guard();
    let x = rows(features);
    let n = x.size()[0];
    assert!(
        k >= 1 && k <= n,
        "kmeans: k = {k} must be in 1..={n} (the number of items)"
    );
    assert!(restarts >= 1, "kmeans needs at least one run");
    let xn = sq_norms(&x);
    let mut rng = SplitMix64::new(seed);
    let mut best: Option<KMeans> = None;
    for _ in 0..restarts {
        let init = kmeans_pp(&x, k as usize, &mut rng);
        let run = lloyd(&x, &xn, init, KMEANS_MAX_ITER);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.expect("at least one run")
}

/// The cluster labels of [`kmeans_fit`] (n, Int64).
pub fn kmeans(features: &Tensor, k: i64, seed: u64, restarts: usize) -> Tensor {
    kmeans_fit(features, k, seed, restarts).labels
}

fn sq_dists_to_row(x: &Tensor, i: usize) -> Vec<f64> {
    to_vec_f64(
        &(x - x.get(i as i64).unsqueeze(0))
            .square()
            .sum_dim_intlist(1, false, Kind::Double),
    )
}

fn kmeans_pp(x: &Tensor, k: usize, rng: &mut SplitMix64) -> Tensor {
    let n = x.size()[0] as usize;
    let first = rng.below(n);
    let mut chosen = vec![first as i64];
    let mut mind2 = sq_dists_to_row(x, first);
    while chosen.len() < k {
        let total: f64 = mind2.iter().sum();
        let next = if total > 0.0 {
            let u = rng.unit() * total;
            let (mut acc, mut pick, mut last) = (0.0, None, 0);
            for (i, &w) in mind2.iter().enumerate() {
                if w > 0.0 {
                    acc += w;
                    last = i;
                    if acc > u {
                        pick = Some(i);
                        break;
                    }
                }
            }
            pick.unwrap_or(last)
        } else {
            // Every item sits on a centre already: any item will do.
            rng.below(n)
        };
        chosen.push(next as i64);
        for (m, v) in mind2.iter_mut().zip(sq_dists_to_row(x, next)) {
            if v < *m {
                *m = v;
            }
        }
    }
    let idx = Tensor::from_slice(&chosen).to_device(x.device());
    x.index_select(0, &idx)
}

/// Nearest centre of every row (ties: the lower index) and the squared
/// distance to it, a block of rows at a time.
fn assign(x: &Tensor, xn: &Tensor, c: &Tensor) -> (Tensor, Tensor) {
    let n = x.size()[0];
    let cn = sq_norms(c);
    let block = rows_per_block(c.size()[0], BLOCK_ELEMS);
    let (mut labels, mut d2s) = (vec![], vec![]);
    let mut s = 0;
    while s < n {
        let len = block.min(n - s);
        let d2 = sq_dists(&x.narrow(0, s, len), &xn.narrow(0, s, len), c, &cn);
        let l = d2.argmin(1, false);
        d2s.push(d2.gather(1, &l.unsqueeze(1), false).squeeze_dim(1));
        labels.push(l);
        s += len;
    }
    (Tensor::cat(&labels, 0), Tensor::cat(&d2s, 0))
}

/// Cluster means; empty clusters re-seeded on the items farthest from
/// their centres.
fn update_centres(x: &Tensor, labels: &Tensor, mind2: &Tensor, k: i64) -> Tensor {
    let dev = x.device();
    let counts = labels.bincount(None::<Tensor>, k);
    let sums = Tensor::zeros([k, x.size()[1]], (Kind::Double, dev)).index_add(0, labels, x);
    let centres = sums / counts.clamp_min(1).to_kind(Kind::Double).unsqueeze(1);
    let empty: Vec<i64> = to_vec_i64(&counts)
        .iter()
        .enumerate()
        .filter(|(_, &c)| c == 0)
        .map(|(j, _)| j as i64)
        .collect();
    if empty.is_empty() {
        return centres;
    }
    let (_, far) = mind2.sort_stable(true, 0, true);
    let far = far.narrow(0, 0, empty.len() as i64);
    let idx = Tensor::from_slice(&empty).to_device(dev);
    centres.index_copy(0, &idx, &x.index_select(0, &far))
}

fn lloyd(x: &Tensor, xn: &Tensor, init: Tensor, max_iter: usize) -> KMeans {
    let k = init.size()[0];
    let mut centres = init;
    let (mut labels, mut mind2) = assign(x, xn, &centres);
    let mut iterations = 0;
    for it in 0..max_iter {
        iterations = it + 1;
        centres = update_centres(x, &labels, &mind2, k);
        let (l, m) = assign(x, xn, &centres);
        let converged = l.equal(&labels);
        labels = l;
        mind2 = m;
        if converged {
            break;
        }
    }
    KMeans {
        inertia: mind2.sum(Kind::Double).double_value(&[]),
        labels,
        centres,
        iterations,
    }
}

/// The contingency table of two labelings: (row sums, column sums, the
/// non-zero cells, n).
fn contingency(a: &Tensor, b: &Tensor) -> (Vec<u64>, Vec<u64>, Vec<u64>, u64) {
    let (a, b) = (to_vec_i64(a), to_vec_i64(b));
    assert_eq!(
        a.len(),
        b.len(),
        "the two labelings have {} and {} items",
        a.len(),
        b.len()
    );
    let mut cells: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    let mut rows: BTreeMap<i64, u64> = BTreeMap::new();
    let mut cols: BTreeMap<i64, u64> = BTreeMap::new();
    for (&u, &v) in a.iter().zip(&b) {
        *cells.entry((u, v)).or_default() += 1;
        *rows.entry(u).or_default() += 1;
        *cols.entry(v).or_default() += 1;
    }
    (
        rows.into_values().collect(),
        cols.into_values().collect(),
        cells.into_values().collect(),
        a.len() as u64,
    )
}

fn entropy(counts: &[u64], n: u64) -> f64 {
    let n = n as f64;
    counts
        .iter()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// Normalised mutual information of two labelings (label values are
/// arbitrary integers), with the arithmetic-mean normalisation of
/// scikit-learn's default `normalized_mutual_info_score`:
/// NMI = I(A; B) / ((H(A) + H(B)) / 2), where, with n_ij the contingency
/// counts, a_i and b_j its row and column sums,
/// I = Σ_ij (n_ij / n) ln(n n_ij / (a_i b_j)) and H(A) = −Σ_i (a_i/n) ln(a_i/n).
/// As scikit-learn: 1 when both labelings have a single cluster (or no
/// items), 0 when I = 0 otherwise. Symmetric, invariant to renaming labels.
pub fn nmi(a: &Tensor, b: &Tensor) -> f64 {
    let (ra, cb, cells, n) = contingency(a, b);
    if ra.len() == cb.len() && ra.len() <= 1 {
        return 1.0;
    }
    // I = H(A) + H(B) − H(A, B), the same sum regrouped.
    let (ha, hb) = (entropy(&ra, n), entropy(&cb, n));
    let mi = (ha + hb - entropy(&cells, n)).max(0.0);
    if mi <= 0.0 {
        return 0.0;
    }
    mi / ((ha + hb) / 2.0)
}

fn pairs(c: u64) -> i128 {
    let c = c as i128;
    c * (c - 1) / 2
}

/// Adjusted Rand index (Hubert & Arabie 1985) of two labelings:
/// ARI = (Σ_ij C(n_ij, 2) − E) / ((Σ_i C(a_i, 2) + Σ_j C(b_j, 2)) / 2 − E),
/// E = Σ_i C(a_i, 2) Σ_j C(b_j, 2) / C(n, 2), with n_ij, a_i, b_j as in
/// [`nmi`]. 1 for identical partitions (up to renaming), about 0 for
/// independent ones, can be negative. Computed in exact integer
/// arithmetic up to the final division; 1 when the denominator is 0 (both
/// labelings all singletons or one cluster, or fewer than 2 items), as
/// scikit-learn's `adjusted_rand_score`.
pub fn ari(a: &Tensor, b: &Tensor) -> f64 {
    let (ra, cb, cells, n) = contingency(a, b);
    let index: i128 = cells.iter().map(|&c| pairs(c)).sum();
    let sa: i128 = ra.iter().map(|&c| pairs(c)).sum();
    let sb: i128 = cb.iter().map(|&c| pairs(c)).sum();
    let total = pairs(n);
    // Multiplied through by 2 · C(n, 2).
    let num = 2 * (total * index - sa * sb);
    let den = total * (sa + sb) - 2 * sa * sb;
    if den == 0 {
        return 1.0;
    }
    num as f64 / den as f64
}

// ---------------------------------------------------------------------------
// Classifiers on the features

/// The training items [`few_label_probe`] uses: for every label (in
/// increasing order), `per_class` of its items drawn uniformly without
/// replacement with a SplitMix64 generator seeded by `seed` (all of them
/// when the class has at most `per_class`), returned in increasing index
/// order. Public so that a benchmark can export the same subset.
pub fn few_label_indices(labels: &Tensor, per_class: usize, seed: u64) -> Vec<i64> {
    let y = to_vec_i64(labels);
    let mut by_class: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (i, &l) in y.iter().enumerate() {
        by_class.entry(l).or_default().push(i as i64);
    }
    let mut rng = SplitMix64::new(seed);
    let mut out = vec![];
    for (_, mut items) in by_class {
        let m = per_class.min(items.len());
        // Partial Fisher–Yates: the first m places get a uniform m-subset.
        for j in 0..m {
            let r = j + rng.below(items.len() - j);
            items.swap(j, r);
        }
        out.extend_from_slice(&items[..m]);
    }
    out.sort_unstable();
    out
}

/// Test accuracy (in [0, 1]) of [`crate::probe::linear_probe`] (with `cfg`)
/// trained on `per_class` labelled training items of each class, drawn by
/// [`few_label_indices`] with `seed` (all items of a class with at most
/// `per_class`). The probe's standardisation statistics come from that
/// subset, as its training set. Classes: 1 + the largest label of either
/// set.
pub fn few_label_probe(
    train_x: &Tensor,
    train_y: &Tensor,
    test_x: &Tensor,
    test_y: &Tensor,
    per_class: usize,
    seed: u64,
    cfg: &ProbeConfig,
) -> f64 {
    assert!(per_class >= 1, "few_label_probe: per_class must be ≥ 1");
    let dev = train_x.device();
    let ytr = label_rows(train_y, train_x.size()[0], dev, "few_label_probe (train)");
    let yte = label_rows(
        test_y,
        test_x.size()[0],
        test_x.device(),
        "few_label_probe (test)",
    );
    let chosen = few_label_indices(&ytr, per_class, seed);
    let idx = Tensor::from_slice(&chosen).to_device(dev);
    let classes = 1 + ytr.max().int64_value(&[]).max(if yte.numel() > 0 {
        yte.max().int64_value(&[])
    } else {
        0
    });
    linear_probe(
        &train_x.index_select(0, &idx),
        &ytr.index_select(0, &idx),
        test_x,
        &yte,
        classes,
        cfg,
    )
    .test_accuracy
}

/// The k-NN vote over labels ranked nearest first: the most frequent label;
/// among equally frequent ones, the one that appears first in the ranking
/// (i.e. nearest).
fn vote(ranked: &[i64]) -> i64 {
    let mut best = ranked[0];
    let mut best_count = 0;
    for (i, &l) in ranked.iter().enumerate() {
        if ranked[..i].contains(&l) {
            continue;
        }
        let c = ranked[i..].iter().filter(|&&m| m == l).count();
        if c > best_count {
            best = l;
            best_count = c;
        }
    }
    best
}

/// k-nearest-neighbour classification accuracy (in [0, 1]) of the test
/// items against the training items: each test item gets the majority label
/// of its `k` nearest training items (Euclidean, by
/// [`crate::neighbours::knn`], float32; k capped at the training set size);
/// a tie in the vote goes to the tied label that is nearest (appears first
/// in the ranking). Note that scikit-learn's `KNeighborsClassifier` breaks
/// such ties toward the smallest label instead.
pub fn knn_accuracy(
    train_x: &Tensor,
    train_y: &Tensor,
    test_x: &Tensor,
    test_y: &Tensor,
    k: i64,
) -> f64 {
    let _g = tch::no_grad_guard();
    assert!(k >= 1, "knn_accuracy: k = {k} must be ≥ 1");
    let (ntr, nte) = (train_x.size()[0], test_x.size()[0]);
    assert!(ntr >= 1 && nte >= 1, "knn_accuracy: empty set");
    let ytr = label_rows(train_y, ntr, train_x.device(), "knn_accuracy (train)");
    let truth = to_vec_i64(&label_rows(test_y, nte, Device::Cpu, "knn_accuracy (test)"));
    let (idx, _) = knn(test_x, train_x, k);
    let kk = idx.size()[1] as usize;
    let ranked = to_vec_i64(&ytr.take(&idx.to_device(ytr.device())));
    let correct = ranked
        .chunks(kk)
        .zip(&truth)
        .filter(|(row, &t)| vote(row) == t)
        .count();
    correct as f64 / nte as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    fn t1(v: &[i64]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn col(v: &[f32]) -> Tensor {
        Tensor::from_slice(v).unsqueeze(1)
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    fn matrix(x: &Tensor) -> Vec<Vec<f64>> {
        let x = rows(x);
        let d = x.size()[1] as usize;
        to_vec_f64(&x).chunks(d).map(|r| r.to_vec()).collect()
    }

    fn dist(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(u, v)| (u - v) * (u - v))
            .sum::<f64>()
            .sqrt()
    }

    /// Random features and labels in `c` classes, plus one singleton class.
    fn random_set(n: i64, d: i64, c: i64, seed: i64) -> (Tensor, Tensor) {
        tch::manual_seed(seed);
        let y = Tensor::randint(c, [n], (Kind::Int64, Device::Cpu));
        let _ = y.get(0).fill_(c + 7);
        let x = Tensor::randn([n, d], CPU) + y.to_kind(Kind::Float).unsqueeze(1).remainder(3.0);
        (x, y)
    }

    fn brute_retrieval(x: &Tensor, y: &Tensor, k: usize) -> (f64, f64) {
        let x = matrix(x);
        let y = to_vec_i64(y);
        let n = x.len();
        let (mut p, mut ap_sum, mut ap_n) = (0.0, 0.0, 0);
        for q in 0..n {
            let mut others: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != q)
                .map(|j| (dist(&x[q], &x[j]), j))
                .collect();
            others.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
            let rel: Vec<bool> = others.iter().map(|&(_, j)| y[j] == y[q]).collect();
            p += rel[..k].iter().filter(|&&r| r).count() as f64 / k as f64;
            let (mut hits, mut s) = (0, 0.0);
            for (r, &is) in rel.iter().enumerate() {
                if is {
                    hits += 1;
                    s += hits as f64 / (r + 1) as f64;
                }
            }
            if hits > 0 {
                ap_sum += s / hits as f64;
                ap_n += 1;
            }
        }
        (p / n as f64, ap_sum / ap_n as f64)
    }

    #[test]
    fn retrieval_hand_example_with_a_tie() {
        // Points 0, 1, 3, 6 on a line, labels a a b b. Query 3 sees 1 (a,
        // at 2), then 0 and 6 both at 3: the tie goes to index 0 (a), so
        // its relevant item is at rank 3: AP 1/3 (1/2 with the tie the
        // other way). The other three queries have their class-mate first:
        // AP 1. mAP = (1 + 1 + 1/3 + 1) / 4 = 5/6.
        // p@1 = (1 + 1 + 0 + 1) / 4; p@2 = (1/2 + 1/2 + 0 + 1/2) / 4.
        let x = col(&[0.0, 1.0, 3.0, 6.0]);
        let y = t1(&[0, 0, 1, 1]);
        let r = retrieval(&x, &y, 1);
        assert!(close(r.precision_at_k, 0.75, 1e-12), "{r:?}");
        assert!(close(r.map, 5.0 / 6.0, 1e-12), "{r:?}");
        let r = retrieval(&x, &y, 2);
        assert!(close(r.precision_at_k, 0.375, 1e-12), "{r:?}");
        // k beyond n − 1 is capped: p@3 = 1/3 for every query.
        let r = retrieval(&x, &y, 10);
        assert_eq!(r.k, 3);
        assert!(close(r.precision_at_k, 1.0 / 3.0, 1e-12), "{r:?}");
        // A query alone in its class has no AP: labels a a b c → only the
        // two a's count, each with its mate at rank 1.
        let r = retrieval(&x, &t1(&[0, 0, 1, 2]), 1);
        assert!(close(r.map, 1.0, 1e-12), "{r:?}");
        assert!(close(r.precision_at_k, 0.5, 1e-12), "{r:?}");
    }

    #[test]
    fn retrieval_matches_brute_force() {
        let _one = embedlab_testkit::seeded();
        let (x, y) = random_set(300, 6, 4, 1);
        for k in [1usize, 5, 40] {
            let r = retrieval(&x, &y, k as i64);
            let (p, map) = brute_retrieval(&x, &y, k);
            assert!(close(r.precision_at_k, p, 1e-12), "k {k}: {r:?} vs {p}");
            assert!(close(r.map, map, 1e-12), "k {k}: {r:?} vs {map}");
        }
        // Blocks of 7 rows and of 1 row (the blocking must not matter), on
        // a duplicate-heavy set where many distances tie exactly.
        let x = Tensor::randint(3, [120, 2], CPU);
        let y = Tensor::randint(3, [120], (Kind::Int64, Device::Cpu));
        let (p, map) = brute_retrieval(&x, &y, 7);
        for block_elems in [BLOCK_ELEMS, 7 * 120, 1] {
            let r = retrieval_blocked(&x, &y, 7, block_elems);
            assert!(close(r.precision_at_k, p, 1e-12), "{r:?} vs {p}");
            assert!(close(r.map, map, 1e-12), "{r:?} vs {map}");
        }
    }

    #[test]
    fn distance_properties_match_brute_force() {
        let _one = embedlab_testkit::seeded();
        let (x, y) = random_set(250, 5, 3, 2);
        let r = distance_properties(&x, &y);
        let blocked = distance_properties_blocked(&x, &y, 13 * 250);
        assert!(close(blocked.within, r.within, 1e-12) && close(blocked.between, r.between, 1e-12));
        assert_eq!(blocked.nn_other_class, r.nn_other_class);
        let xv = matrix(&x);
        let yv = to_vec_i64(&y);
        let n = xv.len();
        let (mut ws, mut wc, mut bs, mut bc, mut other) = (0.0, 0, 0.0, 0, 0);
        for i in 0..n {
            let mut nn = (f64::INFINITY, 0);
            for j in 0..n {
                if i == j {
                    continue;
                }
                let d = dist(&xv[i], &xv[j]);
                if d < nn.0 {
                    nn = (d, j);
                }
                if j > i {
                    if yv[i] == yv[j] {
                        ws += d;
                        wc += 1;
                    } else {
                        bs += d;
                        bc += 1;
                    }
                }
            }
            if yv[nn.1] != yv[i] {
                other += 1;
            }
        }
        let (w, b) = (ws / wc as f64, bs / bc as f64);
        assert!(close(r.within, w, 1e-9), "{r:?} vs {w}");
        assert!(close(r.between, b, 1e-9), "{r:?} vs {b}");
        assert!(close(r.ratio, w / b, 1e-9), "{r:?}");
        assert!(
            close(r.nn_other_class, other as f64 / n as f64, 1e-12),
            "{r:?}"
        );
        // By hand: 0, 1, 3, 6 labelled a a b b. Within: |0−1| = 1, |3−6| = 3
        // → 2. Between: 3, 6, 2, 5 → 4. Nearest others: 0→1 (a), 1→0 (a),
        // 3→1 (a ≠ b), 6→3 (b): one of four.
        let r = distance_properties(&col(&[0.0, 1.0, 3.0, 6.0]), &t1(&[0, 0, 1, 1]));
        assert!(close(r.within, 2.0, 1e-12), "{r:?}");
        assert!(close(r.between, 4.0, 1e-12), "{r:?}");
        assert!(close(r.ratio, 0.5, 1e-12), "{r:?}");
        assert!(close(r.nn_other_class, 0.25, 1e-12), "{r:?}");
        // Ties go to the lower index: 1 is at 1 from both 0 (a) and 2 (b).
        let r = distance_properties(&col(&[0.0, 1.0, 2.0]), &t1(&[0, 1, 1]));
        // 0→1 (b ≠ a), 1→0 (a ≠ b), 2→1 (b): 2 of 3.
        assert!(close(r.nn_other_class, 2.0 / 3.0, 1e-12), "{r:?}");
    }

    #[test]
    fn nmi_and_ari_known_values() {
        let a = t1(&[0, 0, 0, 1, 1, 1]);
        let b = t1(&[0, 0, 1, 1, 2, 2]);
        // Contingency [[2, 1, 0], [0, 1, 2]], n = 6.
        // ARI: Σ C(n_ij,2) = 2, Σ C(a_i,2) = 6, Σ C(b_j,2) = 3, C(6,2) = 15,
        // E = 6·3/15 = 1.2, ARI = (2 − 1.2) / (4.5 − 1.2) = 8/33.
        assert!(close(ari(&a, &b), 8.0 / 33.0, 1e-12), "{}", ari(&a, &b));
        assert!(close(ari(&a, &b), 0.242_424_242_424_242_4, 1e-12));
        // NMI: the 2-cells give (1/3) ln(6·2/(3·2)) each, the 1-cells 0:
        // I = (2/3) ln 2; H(a) = ln 2, H(b) = ln 3;
        // NMI = (2/3) ln 2 / ((ln 2 + ln 3) / 2) = 0.515803742979…
        // (scikit-learn 1.9: 0.5158037429793889; not 0.51668).
        let want = (2.0 / 3.0) * 2f64.ln() / ((2f64.ln() + 3f64.ln()) / 2.0);
        assert!(close(nmi(&a, &b), want, 1e-12), "{}", nmi(&a, &b));
        assert!(close(nmi(&a, &b), 0.515_803_742_979_388_9, 1e-12));
        assert!(close(nmi(&b, &a), want, 1e-12));
        // Second example (scikit-learn: ARI 0.475, NMI 0.7471790950662619):
        // cells 2, 2, 1, 2 → Σ = 3; rows 2, 2, 3 → 5; cols 3, 2, 2 → 5;
        // C(7,2) = 21: ARI = (3 − 25/21) / (5 − 25/21) = 0.475.
        let c = t1(&[0, 0, 1, 1, 2, 2, 2]);
        let d = t1(&[1, 1, 0, 0, 0, 2, 2]);
        assert!(close(ari(&c, &d), 0.475, 1e-12), "{}", ari(&c, &d));
        assert!(close(nmi(&c, &d), 0.747_179_095_066_261_9, 1e-12));
        // Identical and renamed labelings.
        for (u, v) in [(&a, &a), (&b, &t1(&[7, 7, -3, -3, 5, 5]))] {
            assert!(close(ari(u, v), 1.0, 1e-12));
            assert!(close(nmi(u, v), 1.0, 1e-12));
        }
        // One cluster against several: no information.
        let one = t1(&[4; 6]);
        assert_eq!(nmi(&one, &b), 0.0);
        assert_eq!(ari(&one, &b), 0.0);
        assert_eq!(nmi(&one, &one), 1.0);
        assert_eq!(ari(&one, &one), 1.0);
        // All singletons on both sides: identical partitions.
        let s = t1(&[0, 1, 2, 3]);
        assert_eq!(ari(&s, &t1(&[3, 2, 1, 0])), 1.0);
        assert!(close(nmi(&s, &t1(&[3, 2, 1, 0])), 1.0, 1e-12));
    }

    #[test]
    fn kmeans_recovers_blobs_deterministically() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(3);
        let n = 600;
        let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(4);
        let centres = Tensor::eye(6, CPU).narrow(0, 0, 4) * 10.0;
        let x = centres.index_select(0, &y) + Tensor::randn([n, 6], CPU);
        let fit = kmeans_fit(&x, 4, 11, 5);
        assert!(close(ari(&fit.labels, &y), 1.0, 1e-12), "{fit:?}");
        assert!(fit.iterations < KMEANS_MAX_ITER);
        let again = kmeans(&x, 4, 11, 5);
        assert!(again.equal(&fit.labels));
        // The inertia is that of the labels and centres returned.
        let xd = rows(&x);
        let inertia = (xd - fit.centres.index_select(0, &fit.labels))
            .square()
            .sum(Kind::Double)
            .double_value(&[]);
        assert!(close(fit.inertia, inertia, 1e-9));
        // Best of several runs is never worse than the first run alone.
        let single = kmeans_fit(&x, 4, 11, 1);
        assert!(fit.inertia <= single.inertia + 1e-9);
        // Overlapping blobs in 2-d, k = 8: a restart can only help, and a
        // different seed gives a valid clustering too.
        let x = Tensor::randn([400, 2], CPU);
        let one = kmeans_fit(&x, 8, 5, 1);
        let best = kmeans_fit(&x, 8, 5, 6);
        assert!(
            best.inertia <= one.inertia + 1e-9,
            "{} {}",
            best.inertia,
            one.inertia
        );
        let l = kmeans(&x, 8, 6, 2);
        assert_eq!(l.size(), [400]);
        assert!(l.min().int64_value(&[]) >= 0 && l.max().int64_value(&[]) < 8);
    }

    #[test]
    fn kmeans_survives_duplicates_and_empty_clusters() {
        let _one = embedlab_testkit::seeded();
        // Three distinct points, k = 5: clusters must run empty; the run
        // ends and every label is valid. k = n works too.
        let x = Tensor::from_slice(&[0f32, 0., 0., 1., 1., 1., 5., 5., 5., 5.]).view([10, 1]);
        let fit = kmeans_fit(&x, 5, 1, 2);
        assert!(fit.iterations <= KMEANS_MAX_ITER);
        assert!(fit.inertia.abs() < 1e-12, "{fit:?}");
        let l = to_vec_i64(&fit.labels);
        assert!(l.iter().all(|&c| (0..5).contains(&c)));
        let fit = kmeans_fit(&x, 3, 1, 3);
        let truth = t1(&[0, 0, 0, 1, 1, 1, 2, 2, 2, 2]);
        assert_eq!(ari(&fit.labels, &truth), 1.0, "{fit:?}");
        let l = kmeans(&Tensor::randn([7, 3], CPU), 7, 0, 1);
        assert_eq!(ari(&l, &t1(&[0, 1, 2, 3, 4, 5, 6])), 1.0);
    }

    #[test]
    fn few_label_draws_are_seeded_and_per_class() {
        let y = t1(&[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0, 0]);
        let a = few_label_indices(&y, 2, 9);
        assert_eq!(a, few_label_indices(&y, 2, 9));
        assert_eq!(a.len(), 6);
        let yv = to_vec_i64(&y);
        for c in 0..3 {
            assert_eq!(a.iter().filter(|&&i| yv[i as usize] == c).count(), 2);
        }
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        // Some seed draws a different subset; all items when per_class is large.
        assert!((0..20).any(|s| few_label_indices(&y, 2, s) != a));
        assert_eq!(few_label_indices(&y, 100, 0), (0..12).collect::<Vec<i64>>());
    }

    #[test]
    fn few_label_probe_learns_from_few_labels() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(4);
        let gen = |n: i64| {
            let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3);
            let c = Tensor::eye(8, CPU).narrow(0, 0, 3) * 4.0;
            (c.index_select(0, &y) + Tensor::randn([n, 8], CPU) * 0.5, y)
        };
        let (xtr, ytr) = gen(600);
        let (xte, yte) = gen(300);
        let cfg = ProbeConfig::default();
        let acc = few_label_probe(&xtr, &ytr, &xte, &yte, 5, 1, &cfg);
        // 15 labelled items in 8-d: well above chance (1/3), if not perfect.
        assert!(acc > 0.8, "{acc}");
        assert_eq!(acc, few_label_probe(&xtr, &ytr, &xte, &yte, 5, 1, &cfg));
        // per_class ≥ the class sizes: the probe on the full training set.
        let all = few_label_probe(&xtr, &ytr, &xte, &yte, 1000, 1, &cfg);
        let full = linear_probe(&xtr, &ytr, &xte, &yte, 3, &cfg).test_accuracy;
        assert_eq!(all, full);
    }

    #[test]
    fn knn_vote_and_ties() {
        assert_eq!(vote(&[2, 1, 1, 2]), 2);
        assert_eq!(vote(&[1, 2, 2, 1]), 1);
        assert_eq!(vote(&[3, 1, 2, 2]), 2);
        assert_eq!(vote(&[3, 1, 2]), 3);
        assert_eq!(vote(&[5]), 5);
        // Train on a line: 0 (label 2), 1 (1), 2 (1), 3 (2).
        let xtr = col(&[0.0, 1.0, 2.0, 3.0]);
        let ytr = t1(&[2, 1, 1, 2]);
        // k = 4 from −0.5: ranking 2, 1, 1, 2 → tie → 2 (the nearest), where
        // the smallest-label rule would say 1. From 1.4: 1, 1, 2, 2 → 1.
        let xte = col(&[-0.5, 1.4]);
        assert_eq!(knn_accuracy(&xtr, &ytr, &xte, &t1(&[2, 1]), 4), 1.0);
        assert_eq!(knn_accuracy(&xtr, &ytr, &xte, &t1(&[1, 1]), 4), 0.5);
        // k = 3 from −0.5: 2, 1, 1 → 1.
        assert_eq!(knn_accuracy(&xtr, &ytr, &xte, &t1(&[1, 1]), 3), 1.0);
        // k larger than the training set is capped.
        assert_eq!(knn_accuracy(&xtr, &ytr, &xte, &t1(&[2, 1]), 50), 1.0);
    }

    #[test]
    fn knn_accuracy_matches_brute_force() {
        let _one = embedlab_testkit::seeded();
        let (xtr, ytr) = random_set(400, 5, 4, 5);
        let (xte, yte) = random_set(150, 5, 4, 6);
        let tr = matrix(&xtr);
        let te = matrix(&xte);
        let (ytrv, ytev) = (to_vec_i64(&ytr), to_vec_i64(&yte));
        for k in [1usize, 4, 9] {
            let mut correct = 0;
            for (q, &t) in te.iter().zip(&ytev) {
                let mut d: Vec<(f64, usize)> = tr
                    .iter()
                    .enumerate()
                    .map(|(j, b)| (dist(q, b), j))
                    .collect();
                d.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
                let ranked: Vec<i64> = d[..k].iter().map(|&(_, j)| ytrv[j]).collect();
                if vote(&ranked) == t {
                    correct += 1;
                }
            }
            let acc = knn_accuracy(&xtr, &ytr, &xte, &yte, k as i64);
            assert!(
                close(acc, correct as f64 / te.len() as f64, 1e-12),
                "k {k}: {acc}"
            );
        }
    }
}
