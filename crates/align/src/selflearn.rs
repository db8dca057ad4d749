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
use crate::precision::Precision;
use crate::rowtop::{rows_topk, ColumnTop};
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
    /// Iterations without improvement before `keep_prob` doubles (and, at 1,
    /// stop). VecMap's 50 (with threshold 1e-6) makes about 260 iterations;
    /// 3 with 1e-3 makes about 38 to the same accuracy (bench/vecmap.sh).
    pub patience: usize,
    /// Minimum objective gain that counts as an improvement.
    pub threshold: f64,
    /// Hard limit on iterations.
    pub max_iterations: usize,
    /// Number format of the similarity products (scores are compared in f32).
    #[serde(default = "f32_products")]
    pub precision: Precision,
}

fn f32_products() -> Precision {
    Precision::F32
}

impl Default for SelfLearnConfig {
    fn default() -> Self {
        Self {
            init_vocab: 4000,
            cutoff: 20_000,
            csls_k: 10,
            keep_prob: 0.1,
            patience: 3,
            threshold: 1e-3,
            max_iterations: 2000,
            precision: Precision::F32,
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

/// Score-block size for self-learning (rows of scores made and scanned at
/// once): large blocks keep the products efficient.
const SELF_LEARN_BLOCK_BYTES: i64 = 256 << 20;

/// The score matrix is kept whole (one product an iteration for both
/// directions, where VecMap makes four) when it fits in this many bytes;
/// larger vocabularies recompute it block by block (two products).
const STORE_BYTES: i64 = 4 << 30;

/// Probability, at most, that stochastic induction has to settle for its
/// last candidate because every better one was dropped.
const CANDIDATE_TAIL: f64 = 1e-3;

/// Candidates kept per word for stochastic induction with keep probability
/// `keep`: enough that all of them are dropped with probability at most
/// `CANDIDATE_TAIL`.
fn candidates(keep: f64, n: i64) -> i64 {
    if keep >= 1.0 {
        return 1;
    }
    let m = (CANDIDATE_TAIL.ln() / (1.0 - keep).ln()).ceil();
    (m as i64).clamp(1, 256).min(n)
}

/// The similarity scores of one direction (rows of `a` against rows of `b`),
/// in row blocks of f32.
struct Scores {
    a: Tensor,
    bt: Tensor,
    rows: i64,
    /// The whole score matrix, reused from one iteration to the next.
    store: Option<Tensor>,
    /// The product of one block in the products' kind (`[rows, nb]`).
    buf: Tensor,
}

impl Scores {
    fn new(a: &Tensor, b: &Tensor, kind: Kind, work: &mut Workspace) -> Self {
        let (na, nb) = (a.size()[0], b.size()[0]);
        let rows = crate::retrieval::block_rows(nb, SELF_LEARN_BLOCK_BYTES).min(na.max(1));
        Self {
            a: a.to_kind(kind),
            bt: b.to_kind(kind).tr(),
            rows,
            store: work.scores(na, nb, a.device()),
            buf: work.product(rows, nb, kind, a.device()),
        }
    }

    fn product(&self, i: i64, len: i64, out: Option<Tensor>) -> Result<Tensor> {
        let a = self.a.narrow(0, i, len);
        Ok(match out {
            // f32 products go straight into the store.
            Some(o) if a.kind() == Kind::Float => a.f_mm_out(&o, &self.bt)?,
            Some(mut o) => {
                o.f_copy_(&a.f_mm_out(&self.buf.narrow(0, 0, len), &self.bt)?)?;
                o
            }
            None => a
                .f_mm_out(&self.buf.narrow(0, 0, len), &self.bt)?
                .to_kind(Kind::Float),
        })
    }

    /// Fills the store (if any), then hands each f32 block to `f`.
    fn fill(&self, mut f: impl FnMut(i64, &Tensor) -> Result<()>) -> Result<()> {
        let na = self.a.size()[0];
        let mut i = 0;
        while i < na {
            let len = self.rows.min(na - i);
            let out = self.store.as_ref().map(|s| s.narrow(0, i, len));
            let s = self.product(i, len, out)?;
            f(i, &s)?;
            i += len;
        }
        Ok(())
    }

    /// Hands each block to `f` again (from the store, or recomputed).
    fn again(&self, mut f: impl FnMut(i64, Tensor) -> Result<()>) -> Result<()> {
        let na = self.a.size()[0];
        let mut i = 0;
        while i < na {
            let len = self.rows.min(na - i);
            let s = match &self.store {
                Some(s) => s.narrow(0, i, len),
                None => self.product(i, len, None)?,
            };
            f(i, s)?;
            i += len;
        }
        Ok(())
    }
}

/// Buffers kept across self-learning iterations (no page faults from fresh
/// gigabyte-sized allocations every iteration).
struct Workspace {
    /// Bytes the stored score matrix may take.
    limit: i64,
    scores: Option<Tensor>,
    product: Option<Tensor>,
}

impl Default for Workspace {
    fn default() -> Self {
        Self {
            limit: STORE_BYTES,
            scores: None,
            product: None,
        }
    }
}

/// `slot`'s tensor if it has this shape and kind, else a new one there.
fn reuse(slot: &mut Option<Tensor>, shape: [i64; 2], kind: Kind, device: tch::Device) -> Tensor {
    if !slot
        .as_ref()
        .is_some_and(|t| t.size() == shape && t.kind() == kind)
    {
        *slot = Some(Tensor::empty(shape, (kind, device)));
    }
    slot.as_ref().expect("just made").shallow_clone()
}

impl Workspace {
    /// The whole score matrix, when it fits in `limit`.
    fn scores(&mut self, nx: i64, nz: i64, device: tch::Device) -> Option<Tensor> {
        if nx * nz * 4 > self.limit {
            self.scores = None;
            return None;
        }
        Some(reuse(&mut self.scores, [nx, nz], Kind::Float, device))
    }

    fn product(&mut self, rows: i64, nz: i64, kind: Kind, device: tch::Device) -> Tensor {
        reuse(&mut self.product, [rows, nz], kind, device)
    }
}

/// For each row of candidates `idx` (`[n, m]`, best first), the first kept
/// when each is kept with probability `keep`: its rank is geometric,
/// ⌊ln u / ln(1 − keep)⌋ for u uniform, so no random mask over the scores is
/// drawn. `m` is `candidates(keep, ·)`, so the last is taken only when all
/// better ones were dropped (probability at most `CANDIDATE_TAIL`).
fn first_kept(idx: &Tensor, keep: f64) -> Tensor {
    let (n, m) = (idx.size()[0], idx.size()[1]);
    if m == 1 {
        return idx.select(1, 0);
    }
    let u = Tensor::rand([n], (Kind::Double, idx.device()));
    let rank = (u.log() / (1.0 - keep).ln())
        .floor()
        .clamp(0.0, (m - 1) as f64)
        .to_kind(Kind::Int64);
    idx.gather(1, &rank.unsqueeze(1), false).squeeze_dim(1)
}

/// For each row of `scores` (a block): its CSLS choice among the columns
/// (`r_other`: each column's mean similarity to its `k` nearest rows), each
/// score kept with probability `keep`.
fn choose(scores: &Tensor, r_other: &Tensor, keep: f64) -> Result<Tensor> {
    // CSLS up to the query's own constant: cos − r_b/2.
    let m = candidates(keep, scores.size()[1]);
    let (_, idx) = rows_topk(scores, Some(&(r_other * 0.5)), m)?;
    Ok(first_kept(&idx, keep))
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
    induce_csls(
        &xs,
        &zs,
        cfg.csls_k,
        1.0,
        cfg.precision,
        &mut Workspace::default(),
    )
    .map(|(pairs, _)| pairs)
}

/// Forward and backward CSLS pairs between `x` and `z` (both unit rows),
/// each similarity kept with probability `keep`; returns the union of pairs
/// and the objective (the mean over both directions of each word's best
/// similarity). Products are made in `precision`; scores are compared in f32.
fn induce_csls(
    x: &Tensor,
    z: &Tensor,
    k: i64,
    keep: f64,
    precision: Precision,
    work: &mut Workspace,
) -> Result<(Vec<(usize, usize)>, f64)> {
    let (nx, nz) = (x.size()[0], z.size()[0]);
    let k = k.min(nx).min(nz).max(1);
    let scores = Scores::new(x, z, precision.kind(), work);
    // Pass 1: each word's mean similarity to its k nearest on the other side
    // (CSLS's r) and its best similarity (the objective): rows of the scores
    // for the source words, columns for the target words.
    let (mut rx, mut bx) = (vec![], vec![]);
    let mut cols = ColumnTop::new(nz, k)?;
    scores.fill(|_, b| {
        let (top, _) = rows_topk(b, None, k)?;
        rx.push(top.mean_dim([1i64].as_slice(), false, Kind::Float));
        bx.push(top.select(1, 0));
        cols.update(b, None)
    })?;
    let (rx, bx) = (Tensor::cat(&rx, 0), Tensor::cat(&bx, 0));
    let (top, _) = cols.finish();
    let rz = top.mean_dim([1i64].as_slice(), false, Kind::Float);
    let bz = top.select(1, 0);
    let objective =
        (bx.mean(Kind::Double).double_value(&[]) + bz.mean(Kind::Double).double_value(&[])) / 2.0;
    if !objective.is_finite() {
        return Err(AlignError::Numeric {
            what: "self-learning".into(),
            msg: "similarity scores are not finite".into(),
        });
    }
    // Pass 2: each word's choice on the other side, CSLS up to the query's
    // constant (cos − r_other/2): by rows for the source words, by columns
    // (each row shifted by its own r/2) for the target words.
    let m = candidates(keep, nz.min(nx));
    let mut to_z = vec![];
    let mut back = ColumnTop::new(nz, m)?;
    let half_rx = &rx * 0.5;
    scores.again(|i, b| {
        to_z.push(choose(&b, &rz, keep)?);
        back.update(&b, Some(&half_rx.narrow(0, i, b.size()[0])))
    })?;
    let to_z = Vec::<i64>::try_from(Tensor::cat(&to_z, 0))?;
    let to_x = Vec::<i64>::try_from(first_kept(&back.finish().1, keep))?;
    let mut pairs = Vec::with_capacity((nx + nz) as usize);
    pairs.extend(to_z.iter().enumerate().map(|(p, &q)| (p, q as usize)));
    pairs.extend(to_x.iter().enumerate().map(|(q, &p)| (p as usize, q)));
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
    let (xc, zc) = (x.narrow(0, 0, nx), unit_rows(&z.narrow(0, 0, nz)));
    let mut work = Workspace::default();
    let mut keep = cfg.keep_prob;
    let mut best = f64::NEG_INFINITY;
    let mut last_improvement = 0;
    for it in 0..cfg.max_iterations {
        let (xd, zd) = paired_rows(x, z, &dict);
        let w = procrustes(&xd, &zd)?;
        let (pairs, objective) = induce_csls(
            &unit_rows(&xc.matmul(&w)),
            &zc,
            cfg.csls_k,
            keep,
            cfg.precision,
            &mut work,
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

    /// CSLS choices by brute force: the whole score matrix at once.
    fn csls_reference(x: &Tensor, z: &Tensor, k: i64) -> (Vec<(usize, usize)>, f64) {
        let s = x.matmul(&z.tr());
        let rx = s.topk(k, 1, true, true).0.mean_dim(1, false, Kind::Float);
        let rz = s.topk(k, 0, true, true).0.mean_dim(0, false, Kind::Float);
        let c = &s * 2.0 - rx.unsqueeze(1) - rz.unsqueeze(0);
        let f = Vec::<i64>::try_from(c.argmax(1, false)).unwrap();
        let b = Vec::<i64>::try_from(c.argmax(0, false)).unwrap();
        let mut pairs: Vec<(usize, usize)> = f
            .iter()
            .enumerate()
            .map(|(i, &j)| (i, j as usize))
            .collect();
        pairs.extend(b.iter().enumerate().map(|(j, &i)| (i as usize, j)));
        let obj = (s.amax(1, false).mean(Kind::Double).double_value(&[])
            + s.amax(0, false).mean(Kind::Double).double_value(&[]))
            / 2.0;
        (pairs, obj)
    }

    #[test]
    fn deterministic_induction_is_csls_in_both_directions_stored_or_recomputed() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(7);
        let (nx, nz) = (700, 500);
        let x = unit_rows(&Tensor::randn([nx, 24], (Kind::Float, Device::Cpu)));
        let z = unit_rows(&Tensor::randn([nz, 24], (Kind::Float, Device::Cpu)));
        let (want, obj) = csls_reference(&x, &z, 10);
        // Stored, recomputed (no room), and the blocked scans over several blocks.
        for limit in [STORE_BYTES, 0] {
            let mut work = Workspace {
                limit,
                ..Default::default()
            };
            for _ in 0..2 {
                let (got, o) = induce_csls(&x, &z, 10, 1.0, Precision::F32, &mut work).unwrap();
                assert_eq!(got, want, "limit {limit}");
                assert!((o - obj).abs() < 1e-6, "{o} vs {obj}");
            }
            assert_eq!(work.scores.is_some(), limit > 0);
        }
        // bf16 products: the same choices for nearly every word.
        let (got, o) =
            induce_csls(&x, &z, 10, 1.0, Precision::Bf16, &mut Workspace::default()).unwrap();
        let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        assert!(
            same as f64 >= 0.9 * want.len() as f64,
            "{same} of {}",
            want.len()
        );
        assert!((o - obj).abs() < 5e-3, "{o} vs {obj}");
    }

    #[test]
    fn stochastic_choice_takes_the_first_kept_candidate() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(3);
        // Every row scores column j as −j: the j-th best is column j, and
        // with keep probability p the first kept is j with probability
        // p(1 − p)^j.
        let (n, cols, keep) = (40_000i64, 300i64, 0.25);
        let row = Tensor::arange(cols, (Kind::Float, Device::Cpu)).neg();
        let s = row.unsqueeze(0).expand([n, cols], false).contiguous();
        let picks = Vec::<i64>::try_from(
            choose(&s, &Tensor::zeros([cols], (Kind::Float, Device::Cpu)), keep).unwrap(),
        )
        .unwrap();
        let m = candidates(keep, cols);
        assert!((1.0 - keep).powi(m as i32) <= CANDIDATE_TAIL);
        for j in 0..6 {
            let want = keep * (1.0 - keep).powi(j as i32);
            let got = picks.iter().filter(|&&p| p == j).count() as f64 / n as f64;
            let sd = (want * (1.0 - want) / n as f64).sqrt();
            assert!((got - want).abs() < 5.0 * sd, "rank {j}: {got} vs {want}");
        }
        assert!(picks.iter().all(|&p| p < m));
        // Keep 1: the plain CSLS argmax.
        assert_eq!(candidates(1.0, cols), 1);
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
