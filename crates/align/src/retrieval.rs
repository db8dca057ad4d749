//! Nearest-neighbour and CSLS retrieval between two spaces, in row blocks so
//! memory stays bounded (about `BLOCK_BYTES` for the score block).
use crate::error::{AlignError, Result};
use crate::normalize::unit_rows;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Bytes one block of similarity scores may take.
pub const BLOCK_BYTES: i64 = 256 << 20;

/// Retrieval criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retrieval {
    /// Cosine nearest neighbour.
    Nn,
    /// Cross-domain similarity local scaling (Conneau et al. 2018) with `k` neighbours.
    Csls { k: i64 },
}

impl Retrieval {
    pub fn name(&self) -> String {
        match self {
            Retrieval::Nn => "nn".into(),
            Retrieval::Csls { k } => format!("csls{k}"),
        }
    }
}

impl std::str::FromStr for Retrieval {
    type Err = AlignError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "nn" => Ok(Self::Nn),
            "csls" => Ok(Self::Csls { k: 10 }),
            _ => match s
                .strip_prefix("csls")
                .and_then(|k| k.trim_start_matches(['_', '-', ':']).parse().ok())
            {
                Some(k) if k > 0 => Ok(Self::Csls { k }),
                _ => Err(AlignError::Invalid(format!(
                    "unknown retrieval '{s}' (nn, csls, csls<k>)"
                ))),
            },
        }
    }
}

/// Rows per block so that `rows × n` f32 scores fit in `BLOCK_BYTES`.
pub fn block_rows(n: i64, block_bytes: i64) -> i64 {
    (block_bytes / 4 / n.max(1)).clamp(1, 8192)
}

/// For each row of `queries`, the `k` largest dot products with rows of
/// `base` (values and indices, `[nq, k]`, in decreasing order), in blocks.
pub fn blocked_topk(
    queries: &Tensor,
    base: &Tensor,
    k: i64,
    block_bytes: i64,
) -> Result<(Tensor, Tensor)> {
    let (nq, _) = queries.size2()?;
    let (nb, _) = base.size2()?;
    let k = k.min(nb);
    if k < 1 {
        return Err(AlignError::Invalid(
            "a nearest-neighbour search needs a non-empty space".into(),
        ));
    }
    let bs = block_rows(nb, block_bytes).min(nq.max(1));
    let bt = base.tr();
    // One score buffer reused by every block: no page faults from fresh
    // multi-megabyte allocations in the loop.
    let buf = Tensor::empty([bs, nb], (queries.kind(), queries.device()));
    let (mut vals, mut idx) = (vec![], vec![]);
    let mut i = 0;
    while i < nq {
        let len = bs.min(nq - i);
        let s = buf.narrow(0, 0, len);
        let _ = queries.narrow(0, i, len).f_mm_out(&s, &bt)?;
        let (v, j) = s.topk(k, 1, true, true);
        vals.push(v);
        idx.push(j);
        i += len;
    }
    Ok((Tensor::cat(&vals, 0), Tensor::cat(&idx, 0)))
}

/// For each row of `queries`, the mean cosine to its `k` nearest rows of
/// `base` (both already unit-length): CSLS's r term.
pub fn knn_mean_sim(queries: &Tensor, base: &Tensor, k: i64, block_bytes: i64) -> Result<Tensor> {
    let (top, _) = blocked_topk(queries, base, k, block_bytes)?;
    Ok(top.mean_dim([1i64].as_slice(), false, Kind::Float))
}

/// Two unit-normalised spaces with lazily computed CSLS terms.
pub struct Space {
    /// Mapped source vectors, unit length: `[ns, d]`.
    pub src: Tensor,
    /// Target vectors, unit length: `[nt, d]`.
    pub tgt: Tensor,
    /// Bytes a block of scores may take (default `BLOCK_BYTES`).
    pub block_bytes: i64,
    r_src: Option<(i64, Tensor)>,
    r_tgt: Option<(i64, Tensor)>,
}

impl Space {
    /// `src` (already mapped) and `tgt` must have the same dimension.
    pub fn new(src: &Tensor, tgt: &Tensor) -> Result<Self> {
        let (_, ds) = src.size2()?;
        let (_, dt) = tgt.size2()?;
        if ds != dt {
            return Err(AlignError::Invalid(format!(
                "mapped source has dimension {ds}, target {dt}"
            )));
        }
        Ok(Self {
            src: unit_rows(src),
            tgt: unit_rows(tgt),
            block_bytes: BLOCK_BYTES,
            r_src: None,
            r_tgt: None,
        })
    }

    /// r_T(Wx) for every source row: mean similarity to its k nearest targets.
    pub fn r_src(&mut self, k: i64) -> Result<&Tensor> {
        if self.r_src.as_ref().map(|r| r.0) != Some(k) {
            self.r_src = Some((k, knn_mean_sim(&self.src, &self.tgt, k, self.block_bytes)?));
        }
        Ok(&self.r_src.as_ref().unwrap().1)
    }
    /// r_S(y) for every target row: mean similarity to its k nearest mapped sources.
    pub fn r_tgt(&mut self, k: i64) -> Result<&Tensor> {
        if self.r_tgt.as_ref().map(|r| r.0) != Some(k) {
            self.r_tgt = Some((k, knn_mean_sim(&self.tgt, &self.src, k, self.block_bytes)?));
        }
        Ok(&self.r_tgt.as_ref().unwrap().1)
    }

    /// The `topk` best targets for each source row in `queries`, by `method`:
    /// (scores `[q, topk]`, indices `[q, topk]`). CSLS scores are
    /// `2cos(Wx, y) − r_T(Wx) − r_S(y)`.
    pub fn translate(
        &mut self,
        queries: &[usize],
        method: Retrieval,
        topk: i64,
    ) -> Result<(Tensor, Tensor)> {
        let ns = self.src.size()[0] as usize;
        if let Some(&bad) = queries.iter().find(|&&q| q >= ns) {
            return Err(AlignError::Invalid(format!(
                "source row {bad} outside the {ns} source words"
            )));
        }
        let dev = self.src.device();
        let q = Tensor::from_slice(&queries.iter().map(|&i| i as i64).collect::<Vec<_>>())
            .to_device(dev);
        let nt = self.tgt.size()[0];
        let topk = topk.min(nt);
        let terms = match method {
            Retrieval::Nn => None,
            Retrieval::Csls { k } => {
                let rt = self.r_tgt(k)?.shallow_clone();
                // r_T only for the queries unless all of it is already known.
                let rs = match &self.r_src {
                    Some((kk, r)) if *kk == k => r.index_select(0, &q),
                    _ => knn_mean_sim(
                        &self.src.index_select(0, &q),
                        &self.tgt,
                        k,
                        self.block_bytes,
                    )?,
                };
                Some((rs, rt))
            }
        };
        let tt = self.tgt.tr();
        let nq = q.size()[0];
        let bs = block_rows(nt, self.block_bytes).min(nq.max(1));
        let buf = Tensor::empty([bs, nt], (self.src.kind(), dev));
        let (mut scores, mut idx) = (vec![], vec![]);
        let mut i = 0;
        while i < nq {
            let len = bs.min(nq - i);
            let qi = q.narrow(0, i, len);
            let mut s = buf.narrow(0, 0, len);
            let _ = self.src.index_select(0, &qi).f_mm_out(&s, &tt)?;
            if let Some((rs, rt)) = &terms {
                let _ = s.f_mul_scalar_(2.0)?;
                let _ = s.f_sub_(&rs.narrow(0, i, len).unsqueeze(1))?;
                let _ = s.f_sub_(&rt.unsqueeze(0))?;
            }
            let (v, j) = s.topk(topk, 1, true, true);
            scores.push(v);
            idx.push(j);
            i += len;
        }
        if scores.is_empty() {
            let e = Tensor::zeros([0, topk], (Kind::Float, dev));
            return Ok((e.shallow_clone(), e.to_kind(Kind::Int64)));
        }
        Ok((Tensor::cat(&scores, 0), Tensor::cat(&idx, 0)))
    }

    /// Same as `translate` in the other direction (target rows → source).
    pub fn reversed(&self) -> Space {
        Space {
            src: self.tgt.shallow_clone(),
            tgt: self.src.shallow_clone(),
            block_bytes: self.block_bytes,
            r_src: self.r_tgt.as_ref().map(|(k, t)| (*k, t.shallow_clone())),
            r_tgt: self.r_src.as_ref().map(|(k, t)| (*k, t.shallow_clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Brute-force CSLS on plain Rust vectors.
    fn brute_csls(src: &[Vec<f32>], tgt: &[Vec<f32>], k: usize) -> Vec<Vec<f32>> {
        let unit = |v: &Vec<f32>| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let s: Vec<_> = src.iter().map(unit).collect();
        let t: Vec<_> = tgt.iter().map(unit).collect();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let r = |a: &[f32], others: &[Vec<f32>]| {
            let mut sims: Vec<f32> = others.iter().map(|o| dot(a, o)).collect();
            sims.sort_by(|x, y| y.partial_cmp(x).unwrap());
            sims[..k].iter().sum::<f32>() / k as f32
        };
        s.iter()
            .map(|x| {
                t.iter()
                    .map(|y| 2.0 * dot(x, y) - r(x, &t) - r(y, &s))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn csls_equals_brute_force() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(3);
        let (ns, nt, d, k) = (37, 29, 6, 5);
        let src = Tensor::randn([ns, d], (Kind::Float, Device::Cpu));
        let tgt = Tensor::randn([nt, d], (Kind::Float, Device::Cpu));
        let rows = |t: &Tensor| -> Vec<Vec<f32>> {
            (0..t.size()[0])
                .map(|i| Vec::<f32>::try_from(t.get(i)).unwrap())
                .collect()
        };
        let want = brute_csls(&rows(&src), &rows(&tgt), k as usize);
        let mut space = Space::new(&src, &tgt).unwrap();
        let queries: Vec<usize> = (0..ns as usize).collect();
        let (scores, idx) = space
            .translate(&queries, Retrieval::Csls { k }, nt)
            .unwrap();
        for (q, wq) in want.iter().enumerate() {
            for r in 0..nt {
                let j = idx.int64_value(&[q as i64, r]) as usize;
                let got = scores.double_value(&[q as i64, r]) as f32;
                assert!((got - wq[j]).abs() < 1e-5, "q{q} t{j}: {got} vs {}", wq[j]);
            }
            // The best by CSLS is the brute-force argmax.
            let best = (0..nt as usize)
                .max_by(|&a, &b| wq[a].partial_cmp(&wq[b]).unwrap())
                .unwrap();
            assert_eq!(idx.int64_value(&[q as i64, 0]) as usize, best);
        }
    }

    #[test]
    fn nn_finds_identical_vectors_and_blocks_agree() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(4);
        let x = Tensor::randn([3000, 8], (Kind::Float, Device::Cpu));
        let perm = Tensor::randperm(3000, (Kind::Int64, Device::Cpu));
        let y = x.index_select(0, &perm);
        let mut space = Space::new(&x, &y).unwrap();
        let queries: Vec<usize> = (0..3000).collect();
        let (_, idx) = space.translate(&queries, Retrieval::Nn, 1).unwrap();
        // Row i of x is row j of y where perm[j] = i.
        let inv = perm.argsort(0, false);
        assert!(idx.squeeze_dim(1).equal(&inv));
        // Tiny blocks (a few rows each) give the same CSLS answers as one block.
        let (s1, i1) = space
            .translate(&queries, Retrieval::Csls { k: 10 }, 3)
            .unwrap();
        let mut small = Space::new(&x, &y).unwrap();
        small.block_bytes = 4 * 3000 * 7;
        let (s2, i2) = small
            .translate(&queries, Retrieval::Csls { k: 10 }, 3)
            .unwrap();
        assert!(i1.equal(&i2));
        assert!((s1 - s2).abs().max().double_value(&[]) < 1e-5);
        assert_eq!(
            "csls".parse::<Retrieval>().unwrap(),
            Retrieval::Csls { k: 10 }
        );
        assert_eq!(
            "csls5".parse::<Retrieval>().unwrap(),
            Retrieval::Csls { k: 5 }
        );
        assert!("knn".parse::<Retrieval>().is_err());
    }
}
