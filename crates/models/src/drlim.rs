//! DrLIM (Hadsell, Chopra & LeCun 2006, "Dimensionality Reduction by
//! Learning an Invariant Mapping"): a map G from images to a few dimensions
//! (2 or 3, to be looked at) trained on pairs only. A pair is *similar*
//! when its images are neighbours in a graph given beforehand, *dissimilar*
//! otherwise; the contrastive loss (the paper's eq. 4), with D = |G(x₁) −
//! G(x₂)|₂ and Y = 0 for similar, 1 for dissimilar pairs,
//!
//! L = (1 − Y)·½·D² + Y·½·max(0, m − D)²,
//!
//! pulls neighbours together and pushes the others apart until they are
//! the margin m away, no further. No metric in pixel space is needed, only
//! the neighbour lists, and the map applies to images it never saw.
//!
//! **The graph** ([`Graph`]) is one of: same label ([`Graph::Labels`]);
//! the k nearest images in pixel space, made symmetric ([`Graph::Knn`],
//! the paper's MNIST experiments; brute force, ties broken by index); or a
//! grid of cells given by the labels ([`Graph::Grid`], the paper's airplane
//! seen at azimuths × elevations under several lightings: the images of a
//! cell and of its four neighbouring cells, rows wrapping around when
//! circular).
//!
//! **Known transformations** (`shifts`): each side of a pair is seen under
//! a horizontal shift drawn uniformly from {0} ∪ shifts (zero fill, no
//! wrap); a positive pair may then join an image with itself under two
//! shifts (j = i is allowed only when there are shifts), so the map learns
//! to ignore them — the paper's MNIST-shift experiment, its graph the k-NN
//! of the unshifted images.
//!
//! **Pairs**: every image of a batch is an anchor; with probability
//! `positive_fraction` its partner is drawn uniformly from its neighbours
//! (from itself too with shifts), otherwise uniformly from the rest of the
//! split. An anchor without neighbours gets a negative, one without
//! non-neighbours a positive. Draws map a uniform rank onto the sorted
//! candidate lists (no rejection loop: a fixed number of random numbers
//! per batch, exact uniformity). Training draws them from libtorch's
//! generator, which the trainer seeds per epoch and restores on resume;
//! validation pairs come from a fixed SplitMix64 stream seeded by a
//! constant ([`VALIDATION_SEED`]): the same pairs every epoch, and the
//! training generator untouched.
//!
//! **Where the partners come from.** A [`Batch`] holds images and labels,
//! not indices, and partners are drawn from the whole split; so the model
//! keeps (shallow copies of) the training split and its graph, handed to
//! it by [`Drlim::attach`]. The trainer calls `init_from_data` — which
//! attaches — on a fresh run only: **before resuming, call
//! [`Drlim::attach`] with the run's training split** (the loss refuses to
//! run otherwise, saying so). Anchors are found in the split by a hash of
//! their pixels (exact; identical images count as the first of them). The
//! graph is not saved in the checkpoint (its size depends on the data,
//! and the checkpoint's shapes are fixed by the configuration): it is a
//! pure function of the split, recomputed on attach. What the checkpoint
//! holds is a buffer `graph.fingerprint` (image count, a hash of the
//! images and labels, a hash of the graph), written at the fresh run's
//! initialisation and compared at the first step after a resume, so a
//! resume with other data, or a graph that came out otherwise, is refused
//! instead of silently diverging from the uninterrupted run. (A trainer
//! hook called on every run, fresh or resumed, with the training data
//! would make the manual attach unnecessary.) The validation split's graph
//! is built the first time it is seen and cached by its hash.
//!
//! **The encoder** is an MLP (Linear + ReLU per hidden width, then Linear
//! to `dim`) or the project's conv encoder — the autoencoders': 4×4
//! stride-2 convolutions to 32 and 64 channels, a fully connected layer
//! of `hidden[0]` units, then Linear to `dim` — so its codes compare with
//! the autoencoders' on the same architecture. The output is not
//! normalised. Cost of the k-NN graph: n² pixel distances in double
//! precision (chunked to 64 MiB), once per split.
use crate::autoencoder::Arch;
use crate::batches::Split;
use crate::capabilities::{Encode, ImageModel};
use crate::error::{ModelError, Result};
use crate::memory::{Estimate, MemoryEstimate, ACTIVATION_FACTOR};
use embedlab_train::{Batch, Better, Group, Losses, Metric, Progress, Selection, Trainable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// The seed of the validation pairs' SplitMix64 stream.
pub const VALIDATION_SEED: u64 = 0xD71A_2006;

/// Which images are neighbours (similar pairs).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Graph {
    /// Images of the same label.
    Labels,
    /// i ~ j when j is among the k nearest images of i in pixel space
    /// (Euclidean, ties broken by index) or i among j's.
    Knn { k: usize },
    /// The label is a cell r·cols + c; neighbours are the other images of
    /// the cell and those of the cells one step away in r or in c, rows
    /// wrapping around when `circular_rows` (an azimuth).
    Grid {
        rows: i64,
        cols: i64,
        circular_rows: bool,
    },
}

fn default_positive_fraction() -> f64 {
    0.5
}

/// Everything that fixes a DrLIM model's shape and loss.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DrlimConfig {
    pub arch: Arch,
    /// MLP hidden widths (may be empty: a linear map), or the conv
    /// encoder's fully connected layer (first entry).
    pub hidden: Vec<i64>,
    /// Output dimension of the map.
    pub dim: i64,
    /// The margin m: dissimilar pairs farther apart than m cost nothing.
    pub margin: f64,
    /// Share of pairs that are similar.
    #[serde(default = "default_positive_fraction")]
    pub positive_fraction: f64,
    pub graph: Graph,
    /// Horizontal shifts in pixels (positive: to the right) each side of a
    /// pair may be seen under, besides none.
    #[serde(default)]
    pub shifts: Vec<i64>,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub classes: i64,
}

impl DrlimConfig {
    /// The recommended defaults: a 2-D map, margin 1 (the map's unit: with
    /// an unnormalised output, margin c·m gives the same map scaled by c),
    /// half the pairs similar, the paper's 5-NN graph in pixel space, no
    /// shifts; MLP 256-128, or the conv encoder with a 128-unit layer.
    pub fn new(arch: Arch, shape: [i64; 3], classes: i64) -> Self {
        Self {
            arch,
            hidden: match arch {
                Arch::Mlp => vec![256, 128],
                Arch::Conv => vec![128],
            },
            dim: 2,
            margin: 1.0,
            positive_fraction: 0.5,
            graph: Graph::Knn { k: 5 },
            shifts: vec![],
            channels: shape[0],
            height: shape[1],
            width: shape[2],
            classes,
        }
    }

    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        if self.channels < 1 || self.height < 1 || self.width < 1 {
            return bad(format!(
                "image shape {}×{}×{} must be positive",
                self.channels, self.height, self.width
            ));
        }
        if self.dim < 1 {
            return bad(format!("the map's dimension {} must be ≥ 1", self.dim));
        }
        if !(self.margin.is_finite() && self.margin > 0.0) {
            return bad(format!("the margin {} must be > 0", self.margin));
        }
        if !(0.0..=1.0).contains(&self.positive_fraction) {
            return bad(format!(
                "the share of similar pairs {} must be in [0, 1]",
                self.positive_fraction
            ));
        }
        if self.hidden.iter().any(|&h| h < 1) {
            return bad(format!("hidden widths {:?} must be positive", self.hidden));
        }
        if self.arch == Arch::Conv {
            if self.hidden.is_empty() {
                return bad("the conv encoder needs the width of its fully connected layer".into());
            }
            if self.height % 4 != 0 || self.width % 4 != 0 {
                return bad(format!(
                    "the conv encoder halves the image twice: {}×{} is not divisible by 4",
                    self.height, self.width
                ));
            }
        }
        let mut seen = self.shifts.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != self.shifts.len()
            || self.shifts.iter().any(|&s| s == 0 || s.abs() >= self.width)
        {
            return bad(format!(
                "shifts {:?} must be distinct, non-zero and smaller than the width {} in size",
                self.shifts, self.width
            ));
        }
        match self.graph {
            Graph::Labels => {}
            Graph::Knn { k } => {
                if k < 1 {
                    return bad("the k-NN graph needs k ≥ 1".into());
                }
            }
            Graph::Grid { rows, cols, .. } => {
                if rows < 1 || cols < 1 {
                    return bad(format!("a {rows}×{cols} grid needs positive sizes"));
                }
            }
        }
        Ok(())
    }

    fn input_dim(&self) -> i64 {
        self.channels * self.height * self.width
    }

    /// "MLP 256-128", "linear" or "conv, fc 128".
    pub fn arch_label(&self) -> String {
        match self.arch {
            Arch::Mlp if self.hidden.is_empty() => "linear".into(),
            Arch::Mlp => format!("MLP {}", crate::layers::widths(&self.hidden)),
            Arch::Conv => format!("conv, fc {}", self.hidden[0]),
        }
    }

    /// "5-NN in pixels", "same label", "grid 18×9, rows circular".
    pub fn graph_label(&self) -> String {
        match self.graph {
            Graph::Labels => "same label".into(),
            Graph::Knn { k } => format!("{k}-NN in pixels"),
            Graph::Grid {
                rows,
                cols,
                circular_rows,
            } => format!(
                "grid {rows}×{cols}{}",
                if circular_rows { ", rows circular" } else { "" }
            ),
        }
    }

    /// "shifts −6,−3,3,6" or "no shifts".
    pub fn shifts_label(&self) -> String {
        if self.shifts.is_empty() {
            return "no shifts".into();
        }
        let s: Vec<String> = self
            .shifts
            .iter()
            .map(|&s| {
                if s < 0 {
                    format!("−{}", -s)
                } else {
                    s.to_string()
                }
            })
            .collect();
        format!("shifts {}", s.join(","))
    }
}

/// Exactly the number of trainable values of the model `cfg` builds.
pub fn parameter_count(cfg: &DrlimConfig) -> i64 {
    let lin = |i: i64, o: i64| i * o + o;
    let conv = |i: i64, o: i64, k: i64| i * o * k * k + o;
    match cfg.arch {
        Arch::Mlp => {
            let mut w = cfg.input_dim();
            let mut p = 0;
            for &h in &cfg.hidden {
                p += lin(w, h);
                w = h;
            }
            p + lin(w, cfg.dim)
        }
        Arch::Conv => {
            let fc = cfg.hidden.first().copied().unwrap_or(0);
            let flat = 64 * (cfg.height / 4) * (cfg.width / 4);
            conv(cfg.channels, 32, 4) + conv(32, 64, 4) + lin(flat, fc) + lin(fc, cfg.dim)
        }
    }
}

/// The values of the fingerprint buffer.
const FINGERPRINT: i64 = 3;

/// As [`crate::memory`] counts the other families: exact parameters and
/// buffers; per image of a batch, a pair (the image, its partner, both
/// shifted, through the encoder) and the loss's steps.
impl MemoryEstimate for DrlimConfig {
    fn estimate(&self) -> Estimate {
        let u = |v: i64| v.max(0) as u64;
        let d = u(self.input_dim());
        let k = u(self.dim);
        let (enc_out, largest) = match self.arch {
            Arch::Mlp => {
                let h: u64 = self.hidden.iter().map(|&h| 2 * u(h)).sum();
                let big = self.hidden.iter().map(|&h| u(h)).max().unwrap_or(0);
                (d + h + k, big.max(d))
            }
            Arch::Conv => {
                let fc = u(self.hidden.first().copied().unwrap_or(0));
                let (h2, w2) = (u(self.height / 2), u(self.width / 2));
                let flat = 64 * u(self.height / 4) * u(self.width / 4);
                (
                    2 * 32 * h2 * w2 + 2 * flat + 2 * fc + k,
                    (32 * h2 * w2).max(flat).max(fc).max(d),
                )
            }
        };
        Estimate {
            parameters: u(parameter_count(self)),
            buffers: FINGERPRINT as u64,
            // Two images per pair (partner gathered, both shifted), the
            // encoder on each, the distance and the two loss terms.
            activations_per_image: ACTIVATION_FACTOR * (2 * (2 * d + enc_out) + 3 * k + 8),
            activations_per_pair: 0,
            step_values: 0,
            inference_per_image: 2 * (d + 4 * largest),
            eval_batch: 500,
        }
    }
}

// ------------------------------------------------------------------ loss

/// Per pair: the similar term (1 − Y)·½·D², the dissimilar term
/// Y·½·max(0, m − D)² and D. `dissimilar` is Y (bool or 0/1, any kind).
///
/// The similar term is taken from D² directly (no root). For the
/// dissimilar one, D = √(D²) where D² > 0 and 0 where D² = 0 — the root
/// is taken of 1 there, so the gradient is 0 instead of 0·∞ = NaN (at
/// D = 0 no direction is preferred). No epsilon shifts any D > 0.
pub fn contrastive_terms(
    a: &Tensor,
    b: &Tensor,
    dissimilar: &Tensor,
    margin: f64,
) -> (Tensor, Tensor, Tensor) {
    let kind = a.kind();
    let y = dissimilar.to_kind(kind).to_device(a.device());
    let sq = (a - b).square().sum_dim_intlist(1, false, kind);
    let nonzero = sq.gt(0.0);
    let safe = sq.where_self(&nonzero, &sq.ones_like());
    let d = safe.sqrt().where_self(&nonzero, &sq.zeros_like());
    let similar = &sq * (-&y + 1.0) * 0.5;
    let apart = (-&d + margin).clamp_min(0.0).square() * &y * 0.5;
    (similar, apart, d)
}

/// The contrastive loss averaged over the pairs (rows of `a` and `b`).
pub fn contrastive_loss(a: &Tensor, b: &Tensor, dissimilar: &Tensor, margin: f64) -> Tensor {
    let (s, d, _) = contrastive_terms(a, b, dissimilar, margin);
    (s + d).mean(a.kind())
}

// ---------------------------------------------------------------- shifts

/// Each image (row of `x`, n × c × h × w) shifted horizontally by its
/// entry of `shifts` (positive: to the right), zero fill, no wrap.
pub fn shift_images(x: &Tensor, shifts: &[i64]) -> Tensor {
    let size = x.size();
    assert_eq!(size[0] as usize, shifts.len(), "one shift per image");
    if shifts.iter().all(|&s| s == 0) {
        return x.shallow_clone();
    }
    let w = size[3];
    let mut out = x.copy();
    let mut values: Vec<i64> = shifts.iter().copied().filter(|&s| s != 0).collect();
    values.sort_unstable();
    values.dedup();
    for s in values {
        let rows: Vec<i64> = (0..shifts.len() as i64)
            .filter(|&i| shifts[i as usize] == s)
            .collect();
        let idx = Tensor::from_slice(&rows).to_device(x.device());
        let xs = x.index_select(0, &idx);
        let shifted = if s.abs() >= w {
            xs.zeros_like()
        } else {
            let mut pad = xs.size();
            pad[3] = s.abs();
            let zeros = Tensor::zeros(pad.as_slice(), (xs.kind(), xs.device()));
            if s > 0 {
                Tensor::cat(&[zeros, xs.narrow(3, 0, w - s)], 3)
            } else {
                Tensor::cat(&[xs.narrow(3, -s, w + s), zeros], 3)
            }
        };
        let _ = out.index_copy_(0, &idx, &shifted);
    }
    out
}

// ----------------------------------------------------------------- graph

#[derive(Clone, Debug, PartialEq)]
enum Repr {
    /// N(i): the members of the classes adjacent to i's (its own among
    /// them), less i.
    Classes {
        class_of: Vec<usize>,
        /// Sorted image indices of each class.
        members: Vec<Vec<i64>>,
        /// Sorted adjacent classes of each class, itself included.
        adjacent: Vec<Vec<usize>>,
        /// Σ of the adjacent classes' sizes.
        reach: Vec<usize>,
    },
    /// Explicit sorted lists, i not in its own.
    Lists(Vec<Vec<i64>>),
}

/// The neighbour graph of one split (symmetric, no self-loops).
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    n: usize,
    repr: Repr,
}

fn classes_repr(class_of: Vec<usize>, adjacent: Vec<Vec<usize>>) -> Neighbours {
    let mut members = vec![vec![]; adjacent.len()];
    for (i, &c) in class_of.iter().enumerate() {
        members[c].push(i as i64);
    }
    let reach = adjacent
        .iter()
        .map(|a| a.iter().map(|&c| members[c].len()).sum())
        .collect();
    Neighbours {
        n: class_of.len(),
        repr: Repr::Classes {
            class_of,
            members,
            adjacent,
            reach,
        },
    }
}

impl Neighbours {
    /// Same label.
    pub fn labels(y: &[i64]) -> Self {
        let mut distinct: Vec<i64> = y.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let class_of = y
            .iter()
            .map(|l| distinct.binary_search(l).expect("a label of the list"))
            .collect();
        let adjacent = (0..distinct.len()).map(|c| vec![c]).collect();
        classes_repr(class_of, adjacent)
    }

    /// Labels as cells r·cols + c of a rows × cols grid: the same cell and
    /// the cells one step away in r (wrapping when `circular_rows`) or c.
    pub fn grid(y: &[i64], rows: i64, cols: i64, circular_rows: bool) -> Result<Self> {
        if rows < 1 || cols < 1 {
            return Err(ModelError::Invalid(format!(
                "a {rows}×{cols} grid needs positive sizes"
            )));
        }
        let cells = rows * cols;
        if let Some(l) = y.iter().find(|&&l| l < 0 || l >= cells) {
            return Err(ModelError::Invalid(format!(
                "label {l} is not a cell of the {rows}×{cols} grid (0..{cells})"
            )));
        }
        let adjacent = (0..cells)
            .map(|cell| {
                let (r, c) = (cell / cols, cell % cols);
                let mut a = vec![cell];
                for dr in [-1, 1] {
                    let rr = r + dr;
                    if (0..rows).contains(&rr) {
                        a.push(rr * cols + c);
                    } else if circular_rows {
                        a.push(rr.rem_euclid(rows) * cols + c);
                    }
                }
                for dc in [-1, 1] {
                    if (0..cols).contains(&(c + dc)) {
                        a.push(r * cols + c + dc);
                    }
                }
                let mut a: Vec<usize> = a.into_iter().map(|v| v as usize).collect();
                a.sort_unstable();
                a.dedup();
                a
            })
            .collect();
        Ok(classes_repr(
            y.iter().map(|&l| l as usize).collect(),
            adjacent,
        ))
    }

    /// The symmetric k-NN graph of the rows of `x` (any shape n × …):
    /// Euclidean distances by brute force in double precision, the k
    /// nearest of each image (itself excluded) ties broken by the smaller
    /// index, then i ~ j when either is among the other's k nearest.
    pub fn knn(x: &Tensor, k: usize) -> Self {
        let _g = tch::no_grad_guard();
        let n = x.size()[0];
        let mut lists: Vec<Vec<i64>> = vec![vec![]; n as usize];
        let kk = (k as i64).min(n - 1);
        if kk >= 1 {
            let flat = x.flatten(1, -1).to_kind(Kind::Double);
            let sq = flat.square().sum_dim_intlist(1, false, Kind::Double);
            // 8 Mi doubles of distances per chunk of rows.
            let chunk = ((8i64 << 20) / n).max(1);
            let mut s = 0;
            while s < n {
                let len = chunk.min(n - s);
                let rows = flat.narrow(0, s, len);
                let dist = (sq.narrow(0, s, len).unsqueeze(1) + sq.unsqueeze(0)
                    - rows.matmul(&flat.tr()) * 2.0)
                    .clamp_min(0.0);
                let own = Tensor::arange_start(s, s + len, (Kind::Int64, x.device())).unsqueeze(1);
                let inf = Tensor::full([len, 1], f64::INFINITY, (Kind::Double, x.device()));
                let dist = dist.scatter(1, &own, &inf);
                // Everything within the k-th smallest distance: ties at
                // the boundary are all candidates, then sorted by index.
                let (kth, _) = dist.kthvalue(kk, 1, true);
                let mask = dist.le_tensor(&kth);
                let at: Vec<i64> =
                    Vec::try_from(mask.nonzero().flatten(0, -1).to_device(Device::Cpu))
                        .expect("indices");
                let vals: Vec<f64> =
                    Vec::try_from(dist.masked_select(&mask).to_device(Device::Cpu))
                        .expect("values");
                let mut cand: Vec<Vec<(f64, i64)>> = vec![vec![]; len as usize];
                for (p, v) in at.chunks(2).zip(vals) {
                    cand[p[0] as usize].push((v, p[1]));
                }
                for (r, mut c) in cand.into_iter().enumerate() {
                    c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    let i = s + r as i64;
                    for &(_, j) in c.iter().take(kk as usize) {
                        lists[i as usize].push(j);
                        lists[j as usize].push(i);
                    }
                }
                s += len;
            }
        }
        for l in &mut lists {
            l.sort_unstable();
            l.dedup();
        }
        Self {
            n: n as usize,
            repr: Repr::Lists(lists),
        }
    }

    /// The graph `graph` defines on a split.
    pub fn build(graph: &Graph, split: &Split) -> Result<Self> {
        let labels = || -> Result<Vec<i64>> {
            Ok(Vec::try_from(
                split
                    .y
                    .to_kind(Kind::Int64)
                    .flatten(0, -1)
                    .to_device(Device::Cpu),
            )?)
        };
        match *graph {
            Graph::Labels => Ok(Self::labels(&labels()?)),
            Graph::Knn { k } => Ok(Self::knn(&split.x, k)),
            Graph::Grid {
                rows,
                cols,
                circular_rows,
            } => Self::grid(&labels()?, rows, cols, circular_rows),
        }
    }

    /// Images in the split.
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether j is a neighbour of i (never i itself).
    pub fn contains(&self, i: usize, j: usize) -> bool {
        if i == j {
            return false;
        }
        match &self.repr {
            Repr::Classes {
                class_of, adjacent, ..
            } => adjacent[class_of[i]].binary_search(&class_of[j]).is_ok(),
            Repr::Lists(l) => l[i].binary_search(&(j as i64)).is_ok(),
        }
    }

    /// The neighbours of i, sorted.
    pub fn of(&self, i: usize) -> Vec<i64> {
        match &self.repr {
            Repr::Classes {
                class_of,
                members,
                adjacent,
                ..
            } => {
                let mut v: Vec<i64> = adjacent[class_of[i]]
                    .iter()
                    .flat_map(|&c| members[c].iter().copied())
                    .filter(|&j| j != i as i64)
                    .collect();
                v.sort_unstable();
                v
            }
            Repr::Lists(l) => l[i].clone(),
        }
    }

    pub fn degree(&self, i: usize) -> usize {
        match &self.repr {
            Repr::Classes {
                class_of, reach, ..
            } => reach[class_of[i]] - 1,
            Repr::Lists(l) => l[i].len(),
        }
    }

    /// Candidates of a similar partner of i: N(i), with i itself when
    /// `with_self`.
    fn positive_count(&self, i: usize, with_self: bool) -> usize {
        self.degree(i) + usize::from(with_self)
    }

    fn negative_count(&self, i: usize) -> usize {
        self.n - self.degree(i) - 1
    }

    /// The r-th similar candidate of i (r < positive_count).
    fn positive(&self, i: usize, r: usize, with_self: bool) -> i64 {
        let me = i as i64;
        match &self.repr {
            Repr::Classes {
                class_of,
                members,
                adjacent,
                ..
            } => {
                let own = class_of[i];
                let mut r = r;
                for &c in &adjacent[own] {
                    let m = &members[c];
                    if c == own && !with_self {
                        if r < m.len() - 1 {
                            let p = m.binary_search(&me).expect("i is in its class");
                            return if r < p { m[r] } else { m[r + 1] };
                        }
                        r -= m.len() - 1;
                    } else {
                        if r < m.len() {
                            return m[r];
                        }
                        r -= m.len();
                    }
                }
                unreachable!("rank beyond the similar candidates")
            }
            Repr::Lists(l) => {
                let l = &l[i];
                if !with_self {
                    return l[r];
                }
                let p = l.partition_point(|&j| j < me);
                match r.cmp(&p) {
                    std::cmp::Ordering::Less => l[r],
                    std::cmp::Ordering::Equal => me,
                    std::cmp::Ordering::Greater => l[r - 1],
                }
            }
        }
    }

    /// The r-th image that is neither i nor a neighbour of i.
    fn negative(&self, i: usize, r: usize) -> i64 {
        match &self.repr {
            Repr::Classes {
                class_of,
                members,
                adjacent,
                ..
            } => {
                let near = &adjacent[class_of[i]];
                let mut r = r;
                for (c, m) in members.iter().enumerate() {
                    if near.binary_search(&c).is_ok() {
                        continue;
                    }
                    if r < m.len() {
                        return m[r];
                    }
                    r -= m.len();
                }
                unreachable!("rank beyond the dissimilar candidates")
            }
            Repr::Lists(l) => {
                let me = i as i64;
                let l = &l[i];
                let p = l.partition_point(|&j| j < me);
                let excluded = l[..p]
                    .iter()
                    .chain(std::iter::once(&me))
                    .chain(l[p..].iter());
                let mut cand = r as i64;
                for &e in excluded {
                    if e <= cand {
                        cand += 1;
                    } else {
                        break;
                    }
                }
                cand
            }
        }
    }

    /// A hash of the graph (for the checkpoint's fingerprint).
    pub fn digest(&self) -> u64 {
        let mut h = Hasher::new(self.n as u64);
        match &self.repr {
            Repr::Classes {
                class_of, adjacent, ..
            } => {
                h.add(1);
                for &c in class_of {
                    h.add(c as u64);
                }
                for a in adjacent {
                    h.add(u64::MAX);
                    for &c in a {
                        h.add(c as u64);
                    }
                }
            }
            Repr::Lists(l) => {
                h.add(2);
                for a in l {
                    h.add(u64::MAX);
                    for &j in a {
                        h.add(j as u64);
                    }
                }
            }
        }
        h.finish()
    }
}

// ----------------------------------------------------------------- pairs

/// Pairs of images of one split: (a[p] shifted by shift_a[p], b[p] shifted
/// by shift_b[p]), dissimilar or not.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Pairs {
    pub a: Vec<i64>,
    pub b: Vec<i64>,
    pub shift_a: Vec<i64>,
    pub shift_b: Vec<i64>,
    pub dissimilar: Vec<bool>,
}

impl Pairs {
    pub fn len(&self) -> usize {
        self.a.len()
    }
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }
}

/// ⌊u·n⌋ for u in [0, 1), kept below n.
fn rank(u: f64, n: usize) -> usize {
    ((u * n as f64) as usize).min(n.saturating_sub(1))
}

/// A partner for each anchor from four uniform numbers in [0, 1) per
/// anchor (similar or not, which candidate, the shift of each side): see
/// the module's documentation for the rules.
pub fn draw_pairs(
    nb: &Neighbours,
    anchors: &[i64],
    positive_fraction: f64,
    shifts: &[i64],
    u: &[[f64; 4]],
) -> Pairs {
    assert_eq!(anchors.len(), u.len(), "four numbers per anchor");
    let with_self = !shifts.is_empty();
    let transforms: Vec<i64> = std::iter::once(0).chain(shifts.iter().copied()).collect();
    let mut p = Pairs::default();
    for (&a, u) in anchors.iter().zip(u) {
        let i = a as usize;
        let (npos, nneg) = (nb.positive_count(i, with_self), nb.negative_count(i));
        let similar = if u[0] < positive_fraction {
            npos > 0 || nneg == 0
        } else {
            nneg == 0
        };
        let b = match (similar, npos) {
            (true, 0) => a, // nothing else in the split: a trivial pair
            (true, npos) => nb.positive(i, rank(u[1], npos), with_self),
            (false, _) => nb.negative(i, rank(u[1], nneg)),
        };
        p.a.push(a);
        p.b.push(b);
        p.shift_a.push(transforms[rank(u[2], transforms.len())]);
        p.shift_b.push(transforms[rank(u[3], transforms.len())]);
        p.dissimilar.push(!similar);
    }
    p
}

/// [`draw_pairs`] with the numbers from libtorch's generator (CPU, double
/// precision): what a training step draws.
pub fn sample_pairs(
    nb: &Neighbours,
    anchors: &[i64],
    positive_fraction: f64,
    shifts: &[i64],
) -> Pairs {
    let n = anchors.len() as i64;
    let u: Vec<f64> = if n == 0 {
        vec![]
    } else {
        Vec::try_from(Tensor::rand([n * 4], (Kind::Double, Device::Cpu))).expect("doubles")
    };
    let u: Vec<[f64; 4]> = u.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
    draw_pairs(nb, anchors, positive_fraction, shifts, &u)
}

/// SplitMix64: the validation pairs' numbers.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    /// Uniform in [0, 1), 53 bits.
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Every image of the split once as an anchor, partners and shifts drawn
/// from SplitMix64 seeded with `seed`: the same pairs for the same split.
pub fn fixed_pairs(nb: &Neighbours, positive_fraction: f64, shifts: &[i64], seed: u64) -> Pairs {
    let mut g = SplitMix(seed);
    let anchors: Vec<i64> = (0..nb.len() as i64).collect();
    let u: Vec<[f64; 4]> = anchors
        .iter()
        .map(|_| [g.uniform(), g.uniform(), g.uniform(), g.uniform()])
        .collect();
    draw_pairs(nb, &anchors, positive_fraction, shifts, &u)
}

// ---------------------------------------------------------------- hashes

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Hasher(u64);

impl Hasher {
    fn new(seed: u64) -> Self {
        Self(mix(seed ^ 0x243f_6a88_85a3_08d3))
    }
    fn add(&mut self, v: u64) {
        self.0 = mix(self.0.rotate_left(23) ^ v);
    }
    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// A hash of each image's exact values (rows of `x`), read to the host a
/// chunk at a time.
fn image_hashes(x: &Tensor) -> Result<Vec<u64>> {
    let n = x.size()[0];
    if n == 0 {
        return Ok(vec![]);
    }
    let flat = x.flatten(1, -1);
    let d = flat.size()[1].max(1);
    let chunk = ((1i64 << 20) / d).max(1);
    let mut out = Vec::with_capacity(n as usize);
    let mut s = 0;
    while s < n {
        let len = chunk.min(n - s);
        // f32 → f64 is exact, so equal hashes come from equal values.
        let v: Vec<f64> = Vec::try_from(
            flat.narrow(0, s, len)
                .to_device(Device::Cpu)
                .to_kind(Kind::Double)
                .flatten(0, -1),
        )?;
        for row in v.chunks(d as usize) {
            let mut h = Hasher::new(d as u64);
            for x in row {
                h.add(x.to_bits());
            }
            out.push(h.finish());
        }
        s += len;
    }
    Ok(out)
}

/// The images and labels of a split, hashed: (per-image hashes, the
/// split's hash).
fn split_hash(split: &Split) -> Result<(Vec<u64>, u64)> {
    let per = image_hashes(&split.x)?;
    let y: Vec<i64> = Vec::try_from(
        split
            .y
            .to_kind(Kind::Int64)
            .flatten(0, -1)
            .to_device(Device::Cpu),
    )?;
    let mut h = Hasher::new(per.len() as u64);
    for v in &per {
        h.add(*v);
    }
    for l in y {
        h.add(l as u64);
    }
    for s in split.x.size() {
        h.add(s as u64);
    }
    Ok((per, h.finish()))
}

// ----------------------------------------------------------------- model

enum Encoder {
    Mlp(Vec<nn::Linear>, nn::Linear),
    Conv(Box<(nn::Conv2D, nn::Conv2D, nn::Linear, nn::Linear)>),
}

/// The training split as the model keeps it.
struct Attached {
    split: Split,
    graph: Neighbours,
    /// Image hash → the indices of the images with that hash.
    index: HashMap<u64, Vec<i64>>,
    /// n, the split's hash, the graph's hash (the checkpoint's fingerprint).
    fingerprint: [i64; 3],
    /// Whether the fingerprint was compared with the variable store's.
    checked: bool,
}

/// An evaluation split with its graph and fixed pairs.
struct Prepared {
    hash: u64,
    pairs: Pairs,
}

pub struct Drlim {
    pub cfg: DrlimConfig,
    pub vs: nn::VarStore,
    enc: Encoder,
    /// The buffer `graph.fingerprint` (i64 × 3; zeros until initialised).
    fingerprint: Tensor,
    train: Option<Attached>,
    valid: Option<Prepared>,
}

fn shallow(s: &Split) -> Split {
    Split {
        x: s.x.shallow_clone(),
        y: s.y.shallow_clone(),
    }
}

impl Drlim {
    pub fn new(cfg: DrlimConfig, device: Device) -> Result<Self> {
        cfg.check()?;
        let vs = nn::VarStore::new(device);
        let e = vs.root() / "enc";
        let enc = match cfg.arch {
            Arch::Mlp => {
                let mut layers = vec![];
                let mut w = cfg.input_dim();
                for (i, &h) in cfg.hidden.iter().enumerate() {
                    layers.push(nn::linear(&e / format!("l{i}"), w, h, Default::default()));
                    w = h;
                }
                Encoder::Mlp(
                    layers,
                    nn::linear(&e / "out", w, cfg.dim, Default::default()),
                )
            }
            Arch::Conv => {
                let cc = nn::ConvConfig {
                    stride: 2,
                    padding: 1,
                    ..Default::default()
                };
                let h = cfg.hidden[0];
                let flat = 64 * (cfg.height / 4) * (cfg.width / 4);
                Encoder::Conv(Box::new((
                    nn::conv2d(&e / "c1", cfg.channels, 32, 4, cc),
                    nn::conv2d(&e / "c2", 32, 64, 4, cc),
                    nn::linear(&e / "fc", flat, h, Default::default()),
                    nn::linear(&e / "out", h, cfg.dim, Default::default()),
                )))
            }
        };
        let fingerprint = (vs.root() / "graph").add(
            "fingerprint",
            Tensor::zeros([FINGERPRINT], (Kind::Int64, device)),
            false,
        );
        Ok(Self {
            cfg,
            vs,
            enc,
            fingerprint,
            train: None,
            valid: None,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// G(x): images n × c × h × w (or n × d) → n × dim.
    pub fn map(&self, x: &Tensor) -> Tensor {
        let n = x.size()[0];
        match &self.enc {
            Encoder::Mlp(layers, out) => {
                let mut h = x.reshape([n, -1]);
                for l in layers {
                    h = l.forward(&h).relu();
                }
                out.forward(&h)
            }
            Encoder::Conv(layers) => {
                let (c1, c2, fc, out) = &**layers;
                let img = x.reshape([n, self.cfg.channels, self.cfg.height, self.cfg.width]);
                let h = c2.forward(&c1.forward(&img).relu()).relu().flatten(1, -1);
                out.forward(&fc.forward(&h).relu())
            }
        }
    }

    /// Gives the model the training split its pairs are drawn from (kept as
    /// shallow copies) and builds its graph. The trainer does it through
    /// `init_from_data` on a fresh run; call it before resuming one.
    /// Attaching the split already attached costs a hash of its images.
    pub fn attach(&mut self, train: &Split) -> Result<()> {
        let (per, hash) = split_hash(train)?;
        if let Some(t) = &self.train {
            if t.fingerprint[1] == hash as i64 && t.fingerprint[0] == train.len() {
                return Ok(());
            }
        }
        let graph = Neighbours::build(&self.cfg.graph, train)?;
        let mut index: HashMap<u64, Vec<i64>> = HashMap::new();
        for (i, h) in per.into_iter().enumerate() {
            index.entry(h).or_default().push(i as i64);
        }
        let fingerprint = [train.len(), hash as i64, graph.digest() as i64];
        self.train = Some(Attached {
            split: shallow(train),
            graph,
            index,
            fingerprint,
            checked: false,
        });
        Ok(())
    }

    /// The graph of the attached training split.
    pub fn training_graph(&self) -> Option<&Neighbours> {
        self.train.as_ref().map(|t| &t.graph)
    }

    /// The attached split, its fingerprint compared with (or, never set,
    /// written to) the variable store's.
    fn attached(&mut self) -> Result<&Attached> {
        let t = self.train.as_mut().ok_or_else(|| {
            ModelError::Invalid(
                "DrLIM draws each anchor's partners from the whole training split, and this model \
                 has none: the trainer hands it over (Trainable::attach_data); outside the trainer, \
                 call Drlim::attach with the training split first"
                    .into(),
            )
        })?;
        if !t.checked {
            let saved: Vec<i64> = Vec::try_from(self.fingerprint.to_device(Device::Cpu))?;
            if saved.iter().all(|&v| v == 0) {
                let _g = tch::no_grad_guard();
                let now = Tensor::from_slice(&t.fingerprint).to_device(self.fingerprint.device());
                self.fingerprint.shallow_clone().copy_(&now);
            } else if saved != t.fingerprint {
                return Err(ModelError::Invalid(format!(
                    "the attached training split is not the one this run trained on: its \
                     fingerprint (images, data hash, graph hash) is {:?}, the checkpoint's {saved:?}",
                    t.fingerprint
                )));
            }
            t.checked = true;
        }
        Ok(self.train.as_ref().expect("attached"))
    }

    /// The indices of a batch's images in the attached split.
    fn find(t: &Attached, x: &Tensor) -> Result<Vec<i64>> {
        let hashes = image_hashes(x)?;
        hashes
            .iter()
            .enumerate()
            .map(|(r, h)| {
                let missing = || {
                    ModelError::Invalid(format!(
                        "image {r} of the batch is not in the attached training split"
                    ))
                };
                match t.index.get(h).map(|v| v.as_slice()) {
                    Some([i]) => Ok(*i),
                    Some(many) => {
                        let row = x.get(r as i64);
                        many.iter()
                            .copied()
                            .find(|&i| t.split.x.get(i).equal(&row))
                            .ok_or_else(missing)
                    }
                    None => Err(missing()),
                }
            })
            .collect()
    }

    /// The pairs' images, shifted: (a sides, b sides).
    fn pair_images(split: &Split, p: &Pairs, from: usize, len: usize) -> (Tensor, Tensor) {
        let dev = split.x.device();
        let idx = |v: &[i64]| Tensor::from_slice(&v[from..from + len]).to_device(dev);
        let xa = split.x.index_select(0, &idx(&p.a));
        let xb = split.x.index_select(0, &idx(&p.b));
        (
            shift_images(&xa, &p.shift_a[from..from + len]),
            shift_images(&xb, &p.shift_b[from..from + len]),
        )
    }

    /// G of both sides in one pass.
    fn map_pair(&self, xa: &Tensor, xb: &Tensor) -> (Tensor, Tensor) {
        let n = xa.size()[0];
        let z = self.map(&Tensor::cat(&[xa, xb], 0));
        (z.narrow(0, 0, n), z.narrow(0, n, n))
    }

    fn prepare(&self, split: &Split) -> Result<Prepared> {
        let (_, hash) = split_hash(split)?;
        let graph = Neighbours::build(&self.cfg.graph, split)?;
        Ok(Prepared {
            hash,
            pairs: fixed_pairs(
                &graph,
                self.cfg.positive_fraction,
                &self.cfg.shifts,
                VALIDATION_SEED,
            ),
        })
    }

    fn metrics(&self, split: &Split, p: &Prepared, batch: usize) -> Result<BTreeMap<String, f64>> {
        let _g = tch::no_grad_guard();
        let n = p.pairs.len();
        if n == 0 {
            return Err(ModelError::Invalid(
                "DrLIM cannot be evaluated on an empty split".into(),
            ));
        }
        let (mut loss, mut pos, mut neg, mut npos, mut nneg, mut sep) =
            (0.0, 0.0, 0.0, 0usize, 0usize, 0usize);
        let mut s = 0;
        while s < n {
            let len = batch.min(n - s);
            let (xa, xb) = Self::pair_images(split, &p.pairs, s, len);
            let (za, zb) = self.map_pair(&xa, &xb);
            let y = Tensor::from_slice(&p.pairs.dissimilar[s..s + len]);
            let (sim, dis, d) = contrastive_terms(&za, &zb, &y, self.cfg.margin);
            let terms: Vec<f64> =
                Vec::try_from((sim + dis).to_kind(Kind::Double).to_device(Device::Cpu))?;
            let dist: Vec<f64> = Vec::try_from(d.to_kind(Kind::Double).to_device(Device::Cpu))?;
            loss += terms.iter().sum::<f64>();
            for (q, &dv) in dist.iter().enumerate() {
                if p.pairs.dissimilar[s + q] {
                    neg += dv;
                    nneg += 1;
                    sep += usize::from(dv >= self.cfg.margin);
                } else {
                    pos += dv;
                    npos += 1;
                }
            }
            s += len;
        }
        let mean = |v: f64, k: usize| if k > 0 { v / k as f64 } else { f64::NAN };
        Ok(BTreeMap::from([
            ("loss".to_string(), loss / n as f64),
            ("pos_dist".to_string(), mean(pos, npos)),
            ("neg_dist".to_string(), mean(neg, nneg)),
            ("separated".to_string(), mean(sep as f64, nneg)),
        ]))
    }

    /// On a split's fixed pairs (its own graph; every image once as an
    /// anchor, partners from [`VALIDATION_SEED`]): `loss` (mean contrastive
    /// loss), `pos_dist` and `neg_dist` (mean D of similar and dissimilar
    /// pairs) and `separated` (share of dissimilar pairs at least the
    /// margin apart; NaN without any).
    pub fn evaluate_split(&self, split: &Split) -> Result<BTreeMap<String, f64>> {
        self.metrics(split, &self.prepare(split)?, 500)
    }
}

impl Trainable for Drlim {
    type Data = Split;
    type Error = ModelError;
    fn kind(&self) -> String {
        "drlim".into()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("serialisable")
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn groups(&self) -> Vec<Group> {
        vec![Group::new("encoder", &["enc"])]
    }
    /// Attaches the training split and records its fingerprint.
    fn attach_data(&mut self, data: &Split) -> Result<()> {
        self.attach(data)
    }
    fn init_from_data(&mut self, data: &Split) -> Result<()> {
        self.attach(data)?;
        let t = self.train.as_mut().expect("attached");
        let _g = tch::no_grad_guard();
        let now = Tensor::from_slice(&t.fingerprint).to_device(self.fingerprint.device());
        self.fingerprint.shallow_clone().copy_(&now);
        t.checked = true;
        Ok(())
    }
    fn loss(&mut self, _group: &str, b: &Batch, _at: &Progress) -> Result<Losses> {
        let (pf, margin) = (self.cfg.positive_fraction, self.cfg.margin);
        let shifts = self.cfg.shifts.clone();
        let t = self.attached()?;
        let anchors = Self::find(t, &b.x)?;
        let pairs = sample_pairs(&t.graph, &anchors, pf, &shifts);
        let dev = t.split.x.device();
        let partners = t
            .split
            .x
            .index_select(0, &Tensor::from_slice(&pairs.b).to_device(dev));
        let xa = shift_images(&b.x, &pairs.shift_a);
        let xb = shift_images(&partners, &pairs.shift_b);
        let (za, zb) = self.map_pair(&xa, &xb);
        let y = Tensor::from_slice(&pairs.dissimilar);
        let (sim, dis, _) = contrastive_terms(&za, &zb, &y, margin);
        let (sim, dis) = (sim.mean(Kind::Float), dis.mean(Kind::Float));
        Ok(Losses::single(&sim + &dis)
            .part("similar", &sim)
            .part("dissimilar", &dis))
    }
    /// The validation split's fixed pairs (graph and pairs built once and
    /// cached by the split's hash).
    fn validate(&mut self, valid: &Split) -> Result<BTreeMap<String, f64>> {
        let (_, hash) = split_hash(valid)?;
        let p = match self.valid.take() {
            Some(p) if p.hash == hash => p,
            _ => self.prepare(valid)?,
        };
        let m = self.metrics(valid, &p, 500);
        self.valid = Some(p);
        m
    }
    fn selection(&self) -> Selection {
        Selection::Min("loss".into())
    }
}

impl Encode for Drlim {
    fn code_dim(&self) -> i64 {
        self.cfg.dim
    }
    fn what(&self) -> String {
        format!("DrLIM map ({}-D)", self.cfg.dim)
    }
    fn encode(&self, x: &Tensor, _y: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.map(x))
    }
}

impl ImageModel for Drlim {
    fn name(&self) -> String {
        "drlim".into()
    }
    fn describe(&self) -> String {
        let c = &self.cfg;
        format!(
            "DrLIM ({}, {}-D map, margin {}, graph: {}, {}{})",
            c.arch_label(),
            c.dim,
            c.margin,
            c.graph_label(),
            c.shifts_label(),
            if c.positive_fraction != 0.5 {
                format!(", {}% similar pairs", 100.0 * c.positive_fraction)
            } else {
                String::new()
            }
        )
    }
    fn classes(&self) -> i64 {
        self.cfg.classes
    }
    fn encoder(&self) -> Option<&dyn Encode> {
        Some(self)
    }
    /// The contrastive loss and the pair distances on the test split's own
    /// graph and fixed pairs.
    fn family_metrics(&self, test: &Split) -> Result<Vec<Metric>> {
        let m = self.evaluate_split(test)?;
        let note = Some(format!(
            "{} test pairs, graph: {} of the test images",
            test.len(),
            self.cfg.graph_label()
        ));
        Ok(vec![
            Metric {
                name: "test contrastive loss".into(),
                value: m["loss"],
                unit: "per pair".into(),
                better: Better::Lower,
                note,
            },
            Metric {
                name: "similar-pair distance".into(),
                value: m["pos_dist"],
                unit: format!("margin {}", self.cfg.margin),
                better: Better::Lower,
                note: None,
            },
            Metric {
                name: "dissimilar-pair distance".into(),
                value: m["neg_dist"],
                unit: format!("margin {}", self.cfg.margin),
                better: Better::Neither,
                note: None,
            },
            Metric {
                name: "dissimilar pairs beyond the margin".into(),
                value: 100.0 * m["separated"],
                unit: "%".into(),
                better: Better::Higher,
                note: None,
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn contrastive_loss_and_its_gradient_match_a_hand_computation() {
        let m = 2.0;
        // (a, b, dissimilar): per-pair loss and d/da by hand.
        //  1. similar, D = 5: ½·25 = 12.5, d/da = a − b.
        //  2. dissimilar, D = 1 < m: ½(2 − 1)² = 0.5, d/da = −(m − D)(a − b)/D.
        //  3. dissimilar, D = 3 ≥ m: 0, no gradient.
        //  4. dissimilar, D = 0: ½m² = 2, gradient 0 (finite).
        //  5. similar, D = 2.5: 3.125.
        let a = [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [2.0, 2.0], [-1.0, 0.5]];
        let b = [[3.0, 4.0], [1.0, 2.0], [3.0, 0.0], [2.0, 2.0], [0.5, -1.5]];
        let y = [false, true, true, true, false];
        let per = [12.5, 0.5, 0.0, 2.0, 3.125];
        let grad_a = [
            [-3.0, -4.0],
            [0.0, 1.0],
            [0.0, 0.0],
            [0.0, 0.0],
            [-1.5, 2.0],
        ];
        for kind in [Kind::Double, Kind::Float] {
            let t = |v: &[[f64; 2]; 5]| {
                Tensor::from_slice(&v.concat())
                    .view([5, 2])
                    .to_kind(kind)
                    .set_requires_grad(true)
            };
            let (ta, tb) = (t(&a), t(&b));
            let l = contrastive_loss(&ta, &tb, &Tensor::from_slice(&y), m);
            let want = per.iter().sum::<f64>() / 5.0;
            assert!(close(l.double_value(&[]), want, 1e-6), "{kind:?}: {l:?}");
            let g = Tensor::run_backward(&[&l], &[&ta, &tb], false, false);
            for p in 0..5 {
                for c in 0..2 {
                    let ga = g[0].double_value(&[p, c]);
                    let gb = g[1].double_value(&[p, c]);
                    assert!(
                        close(ga, grad_a[p as usize][c as usize] / 5.0, 1e-6),
                        "{kind:?} pair {p}: {ga}"
                    );
                    assert!(
                        close(gb, -grad_a[p as usize][c as usize] / 5.0, 1e-6),
                        "{kind:?} pair {p}: {gb}"
                    );
                }
            }
        }
        // The per-pair terms and distances.
        let (ta, tb) = (
            Tensor::from_slice(&a.concat()).view([5, 2]),
            Tensor::from_slice(&b.concat()).view([5, 2]),
        );
        let (s, d, dist) = contrastive_terms(&ta, &tb, &Tensor::from_slice(&y), m);
        let total: Vec<f64> = Vec::try_from(s + d).unwrap();
        let dist: Vec<f64> = Vec::try_from(dist).unwrap();
        for p in 0..5 {
            assert!(close(total[p], per[p], 1e-12), "{total:?}");
        }
        assert_eq!(dist, [5.0, 1.0, 3.0, 0.0, 2.5]);
    }

    #[test]
    fn grid_neighbours_by_hand_with_and_without_wrapping() {
        // A 3×4 grid, one image per cell (image i in cell i), and image 12
        // a second one in cell 0.
        let mut y: Vec<i64> = (0..12).collect();
        y.push(0);
        let g = Neighbours::grid(&y, 3, 4, true).unwrap();
        assert_eq!(g.of(0), [1, 4, 8, 12]);
        assert_eq!(g.of(12), [0, 1, 4, 8]);
        assert_eq!(g.of(5), [1, 4, 6, 9]);
        assert_eq!(g.of(11), [3, 7, 10]);
        assert_eq!(g.of(4), [0, 5, 8, 12]);
        let g = Neighbours::grid(&y, 3, 4, false).unwrap();
        assert_eq!(g.of(0), [1, 4, 12]);
        assert_eq!(g.of(11), [7, 10]);
        assert_eq!(g.of(8), [4, 9]);
        assert!(g.contains(0, 12) && g.contains(12, 0) && !g.contains(0, 0) && !g.contains(0, 8));
        // Two rows, circular: the row above and below are the same row.
        let g = Neighbours::grid(&[0, 1, 2, 3], 2, 2, true).unwrap();
        assert_eq!(g.of(0), [1, 2]);
        assert!(Neighbours::grid(&[12], 3, 4, true).is_err());
    }

    #[test]
    fn knn_graph_matches_brute_force_and_breaks_ties_by_index() {
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(11);
        let (n, k) = (40usize, 3usize);
        let x = Tensor::rand([n as i64, 1, 3, 4], (Kind::Float, Device::Cpu));
        let g = Neighbours::knn(&x, k);
        let rows: Vec<Vec<f64>> = (0..n as i64)
            .map(|i| Vec::try_from(x.get(i).flatten(0, -1).to_kind(Kind::Double)).unwrap())
            .collect();
        let mut want: Vec<Vec<i64>> = vec![vec![]; n];
        for i in 0..n {
            let mut d: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let s: f64 = rows[i]
                        .iter()
                        .zip(&rows[j])
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum();
                    (s, j)
                })
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for &(_, j) in &d[..k] {
                want[i].push(j as i64);
                want[j].push(i as i64);
            }
        }
        for (i, w) in want.iter_mut().enumerate() {
            w.sort_unstable();
            w.dedup();
            assert_eq!(&g.of(i), w, "image {i}");
            for &j in w.iter() {
                assert!(g.contains(j as usize, i), "symmetric");
            }
        }
        // Points 0, 1, 2, 3 on a line, k = 1: 1 and 2 each have two nearest
        // at distance 1, and take the smaller index.
        let line = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0]).view([4, 1, 1, 1]);
        let g = Neighbours::knn(&line, 1);
        assert_eq!(
            (0..4).map(|i| g.of(i)).collect::<Vec<_>>(),
            [vec![1], vec![0, 2], vec![1, 3], vec![2]]
        );
        // k ≥ n − 1: everyone is a neighbour.
        let g = Neighbours::knn(&line, 10);
        assert_eq!(g.of(2), [0, 1, 3]);
    }

    /// Checks the pairs' rules and returns the share of similar pairs.
    fn check_pairs(nb: &Neighbours, p: &Pairs, shifts: &[i64]) -> f64 {
        let mut pos = 0;
        for q in 0..p.len() {
            let (i, j) = (p.a[q] as usize, p.b[q] as usize);
            if p.dissimilar[q] {
                assert!(i != j && !nb.contains(i, j), "negative {i}–{j}");
            } else {
                pos += 1;
                assert!(
                    nb.contains(i, j) || (i == j && !shifts.is_empty()),
                    "positive {i}–{j}"
                );
            }
            for s in [p.shift_a[q], p.shift_b[q]] {
                assert!(s == 0 || shifts.contains(&s));
            }
        }
        pos as f64 / p.len() as f64
    }

    #[test]
    fn pair_sampling_keeps_the_share_of_positives_and_the_graph() {
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(5);
        let n = 30;
        let y: Vec<i64> = (0..n).map(|i| i % 3).collect();
        let x = Tensor::rand([n, 1, 2, 3], (Kind::Float, Device::Cpu));
        let graphs = [
            Neighbours::labels(&y),
            Neighbours::knn(&x, 2),
            Neighbours::grid(&(0..n).map(|i| i % 12).collect::<Vec<_>>(), 3, 4, true).unwrap(),
        ];
        let anchors: Vec<i64> = (0..600 * n).map(|i| i % n).collect();
        for nb in &graphs {
            for (pf, shifts) in [(0.5, vec![]), (0.3, vec![-1, 2])] {
                let p = sample_pairs(nb, &anchors, pf, &shifts);
                let share = check_pairs(nb, &p, &shifts);
                let se = (pf * (1.0 - pf) / anchors.len() as f64).sqrt();
                assert!((share - pf).abs() < 3.0 * se, "{share} vs {pf} ± {se}");
                // Every neighbour and every non-neighbour of anchor 0 is
                // drawn: the ranks cover the candidate lists.
                let mut seen = std::collections::BTreeSet::new();
                for q in 0..p.len() {
                    if p.a[q] == 0 {
                        seen.insert(p.b[q]);
                    }
                }
                let mut every: Vec<i64> = (0..n).collect();
                if shifts.is_empty() {
                    every.retain(|&j| j != 0);
                }
                assert_eq!(seen.into_iter().collect::<Vec<_>>(), every);
                // Both shifts sides take every transformation.
                if !shifts.is_empty() {
                    for s in [-1, 0, 2] {
                        assert!(p.shift_a.contains(&s) && p.shift_b.contains(&s));
                    }
                }
            }
        }
        // An anchor alone in its class gets a negative; with nothing but
        // neighbours, a positive.
        let lone = Neighbours::labels(&[0, 1, 1]);
        let p = sample_pairs(&lone, &[0; 50], 1.0, &[]);
        assert!(p.dissimilar.iter().all(|&d| d));
        let all = Neighbours::labels(&[4, 4, 4]);
        let p = sample_pairs(&all, &[0; 50], 0.0, &[]);
        assert!(p.dissimilar.iter().all(|&d| !d));
        check_pairs(&all, &p, &[]);
        // The validation pairs are a function of the split alone.
        let a = fixed_pairs(&graphs[1], 0.5, &[1], VALIDATION_SEED);
        tch::manual_seed(99);
        assert_eq!(a, fixed_pairs(&graphs[1], 0.5, &[1], VALIDATION_SEED));
        assert_eq!(a.a, (0..n).collect::<Vec<_>>());
        check_pairs(&graphs[1], &a, &[1]);
    }

    #[test]
    fn shifts_roll_the_image_with_zero_fill() {
        let x = Tensor::from_slice(&[1.0f32, 2., 3., 4., 5., 6., 7., 8.]).view([1, 1, 2, 4]);
        let x3 = Tensor::cat(&[&x, &(&x * 10.0), &(&x * 100.0)], 0);
        let out = shift_images(&x3, &[1, -2, 0]);
        let rows = |i: i64| Vec::<f32>::try_from(out.get(i).flatten(0, -1)).unwrap();
        assert_eq!(rows(0), [0., 1., 2., 3., 0., 5., 6., 7.]);
        assert_eq!(rows(1), [30., 40., 0., 0., 70., 80., 0., 0.]);
        assert_eq!(rows(2), [100., 200., 300., 400., 500., 600., 700., 800.]);
        // The input is left alone.
        assert_eq!(
            Vec::<f32>::try_from(x3.get(0).flatten(0, -1)).unwrap()[0],
            1.0
        );
    }

    #[test]
    fn parameter_count_from_the_config_is_exact() {
        let _l = embedlab_testkit::seeded();
        for shape in [[1, 8, 8], [1, 28, 28], [3, 32, 32]] {
            for (arch, hidden) in [
                (Arch::Mlp, vec![20, 7]),
                (Arch::Mlp, vec![]),
                (Arch::Conv, vec![16]),
            ] {
                let mut cfg = DrlimConfig::new(arch, shape, 10);
                cfg.hidden = hidden;
                cfg.dim = 3;
                let m = Drlim::new(cfg.clone(), Device::Cpu).unwrap();
                let trainable: i64 =
                    m.vs.trainable_variables()
                        .iter()
                        .map(|t| t.numel() as i64)
                        .sum();
                let all: i64 = m.vs.variables().values().map(|t| t.numel() as i64).sum();
                assert_eq!(parameter_count(&cfg), trainable, "{cfg:?}");
                let e = cfg.estimate();
                assert_eq!(e.parameters as i64, trainable);
                assert_eq!(e.buffers as i64, all - trainable);
                assert!(e.activations_per_image > 0 && e.inference_per_image > 0);
                let x = Tensor::rand(
                    [2, shape[0], shape[1], shape[2]],
                    (Kind::Float, Device::Cpu),
                );
                assert_eq!(m.encode(&x, None).unwrap().size(), [2, 3]);
            }
        }
    }

    #[test]
    fn config_checks_serde_and_description() {
        let mut c = DrlimConfig::new(Arch::Conv, [1, 28, 28], 10);
        c.shifts = vec![-6, -3, 3, 6];
        let m = Drlim::new(c.clone(), Device::Cpu).unwrap();
        assert_eq!(
            m.describe(),
            "DrLIM (conv, fc 128, 2-D map, margin 1, graph: 5-NN in pixels, shifts −6,−3,3,6)"
        );
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["graph"], serde_json::json!({"kind": "knn", "k": 5}));
        let back: DrlimConfig = serde_json::from_value(j).unwrap();
        assert_eq!(back, c);
        // Defaults: half the pairs similar, no shifts.
        let mut j = serde_json::to_value(&c).unwrap();
        j.as_object_mut().unwrap().remove("positive_fraction");
        j.as_object_mut().unwrap().remove("shifts");
        j["graph"] =
            serde_json::json!({"kind": "grid", "rows": 18, "cols": 9, "circular_rows": true});
        let d: DrlimConfig = serde_json::from_value(j).unwrap();
        assert_eq!((d.positive_fraction, d.shifts.len()), (0.5, 0));
        for bad in [
            DrlimConfig {
                shifts: vec![0],
                ..c.clone()
            },
            DrlimConfig {
                shifts: vec![3, 3],
                ..c.clone()
            },
            DrlimConfig {
                shifts: vec![28],
                ..c.clone()
            },
            DrlimConfig {
                margin: 0.0,
                ..c.clone()
            },
            DrlimConfig {
                positive_fraction: 1.5,
                ..c.clone()
            },
            DrlimConfig {
                height: 30,
                ..c.clone()
            },
            DrlimConfig {
                graph: Graph::Knn { k: 0 },
                ..c.clone()
            },
        ] {
            assert!(Drlim::new(bad.clone(), Device::Cpu).is_err(), "{bad:?}");
        }
    }
}
