//! Nearest-neighbour and CSLS retrieval between two spaces, in row blocks so
//! memory stays bounded (about `BLOCK_BYTES` for the score block).
use crate::error::{AlignError, Result};
use crate::normalize::unit_rows;
use crate::precision::Precision;
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
    search(queries, base, k, None, Precision::F32, block_bytes)
}

/// Columns of the score tiles of [`search`]: a tile of `rows × TILE_COLS`
/// scores stays in the last-level cache between the product that writes it
/// and the scan that reads it. Measured on 2 Zen 4 cores (`embedlab bench
/// csls --n 50000`, three tries each): f32 2048 columns × 2048 rows 122–150
/// GFLOP/s, 4096 × 1024 104–123, 8192 × 512 97–125; bfloat16 8192 × 512
/// 222–239, 4096 × 1024 186–216, 2048 × 2048 187–218.
const TILE_COLS: i64 = 2048;
const TILE_COLS_BF16: i64 = 8192;
/// Bytes of one tile of f32 scores (at most; `block_bytes` may ask less).
const TILE_BYTES: i64 = 16 << 20;

/// Candidates a reduced-precision search keeps per row before its f32
/// re-rank: `k` plus this many. bfloat16 operands round each product term
/// by at most 2⁻⁹ relatively (a cosine by about 0.004, its bfloat16 result
/// by 0.002 more), so a true top-`k` target is missed only when 32 others
/// score within that of it.
pub const RERANK_MARGIN: i64 = 32;

/// For each row of `queries`, the `k` largest of `queries·baseᵀ − shift`
/// (`shift`: one value per row of `base`, or none): values `[nq, k]` in
/// decreasing order and their rows of `base`. Products are made in tiles
/// of query rows × base rows (at most `block_bytes` of f32 scores, and 16
/// MiB), each scanned for its best while it is in cache.
///
/// With `Precision::Bf16` the tiles are bfloat16 products, each row keeps
/// its `k + RERANK_MARGIN` best candidates, and those are scored again in
/// f32 from the f32 vectors: the values returned are the f32 ones, and the
/// top `k` is the f32 search's whenever it lies among the candidates.
pub fn search(
    queries: &Tensor,
    base: &Tensor,
    k: i64,
    shift: Option<&Tensor>,
    precision: Precision,
    block_bytes: i64,
) -> Result<(Tensor, Tensor)> {
    let (nq, d) = queries.size2()?;
    let (nb, db) = base.size2()?;
    if d != db {
        return Err(AlignError::Invalid(format!(
            "queries of dimension {d} against a base of dimension {db}"
        )));
    }
    let k = k.min(nb);
    if k < 1 {
        return Err(AlignError::Invalid(
            "a nearest-neighbour search needs a non-empty space".into(),
        ));
    }
    let dev = queries.device();
    if nq == 0 {
        let e = Tensor::zeros([0, k], (Kind::Float, dev));
        return Ok((e.shallow_clone(), e.to_kind(Kind::Int64)));
    }
    let reduced = precision != Precision::F32;
    let kc = if reduced {
        (k + RERANK_MARGIN).min(nb)
    } else {
        k
    };
    let q_kind = precision.kind();
    let qp = queries.to_kind(q_kind);
    let bp = base.to_kind(q_kind);
    let tc = match precision {
        Precision::F32 => TILE_COLS,
        Precision::Bf16 => TILE_COLS_BF16,
    }
    .min(nb);
    let bs = block_rows(tc, block_bytes.min(TILE_BYTES)).min(nq);
    // Buffers reused by every tile: no page faults from fresh allocations.
    let prod = Tensor::empty([bs, tc], (q_kind, dev));
    let shift = shift.map(|s| s.to_kind(Kind::Float).contiguous());
    let (mut vals, mut idx) = (vec![], vec![]);
    let mut i = 0;
    while i < nq {
        let len = bs.min(nq - i);
        let q = qp.narrow(0, i, len);
        // The running best of each query row over the tiles (CPU), or the
        // tiles' bests merged (other devices).
        let mut top = if dev == tch::Device::Cpu {
            Some(crate::rowtop::RowTop::new(len, kc)?)
        } else {
            None
        };
        let mut best: Option<(Tensor, Tensor)> = None;
        let mut j = 0;
        while j < nb {
            let w = tc.min(nb - j);
            // Scanned as they are: bfloat16 scores are read as f32.
            let t = if w == tc {
                q.f_mm_out(&prod.narrow(0, 0, len), &bp.narrow(0, j, w).tr())?
            } else {
                q.f_mm(&bp.narrow(0, j, w).tr())?
            };
            let sh = shift.as_ref().map(|s| s.narrow(0, j, w));
            match &mut top {
                Some(top) => top.update(&t, j, sh.as_ref())?,
                None => {
                    let (v, c) = crate::rowtop::rows_topk(&t, sh.as_ref(), kc.min(w))?;
                    let c = c + j;
                    best = Some(match best {
                        None => (v, c),
                        Some((bv, bc)) => {
                            let (v2, pos) = Tensor::cat(&[bv, v], 1).f_topk(kc, 1, true, true)?;
                            (v2, Tensor::cat(&[bc, c], 1).gather(1, &pos, false))
                        }
                    });
                }
            }
            j += w;
        }
        let (v, c) = match top {
            Some(top) => {
                let (v, c) = top.finish();
                (v.to_device(dev), c.to_device(dev))
            }
            None => best.expect("a non-empty base"),
        };
        let (v, c) = if reduced {
            // The candidates scored again in f32.
            let rows = base.index_select(0, &c.view(-1)).view([len, kc, d]);
            let mut exact = rows
                .f_bmm(&queries.narrow(0, i, len).to_kind(Kind::Float).unsqueeze(2))?
                .squeeze_dim(2);
            if let Some(s) = &shift {
                exact -= s.index_select(0, &c.view(-1)).view([len, kc]);
            }
            let (v2, pos) = exact.f_topk(k, 1, true, true)?;
            (v2, c.gather(1, &pos, false))
        } else {
            (v, c)
        };
        vals.push(v);
        idx.push(c);
        i += len;
    }
    Ok((Tensor::cat(&vals, 0), Tensor::cat(&idx, 0)))
}

/// For each row of `queries`, the mean cosine to its `k` nearest rows of
/// `base` (both already unit-length): CSLS's r term.
pub fn knn_mean_sim(
    queries: &Tensor,
    base: &Tensor,
    k: i64,
    precision: Precision,
    block_bytes: i64,
) -> Result<Tensor> {
    let (top, _) = search(queries, base, k, None, precision, block_bytes)?;
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
    /// Number format of the searches' products (default f32; bfloat16
    /// searches re-rank their candidates in f32, see [`search`]).
    pub precision: Precision,
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
            precision: Precision::F32,
            r_src: None,
            r_tgt: None,
        })
    }

    /// r_T(Wx) for every source row: mean similarity to its k nearest targets.
    pub fn r_src(&mut self, k: i64) -> Result<&Tensor> {
        if self.r_src.as_ref().map(|r| r.0) != Some(k) {
            self.r_src = Some((
                k,
                knn_mean_sim(&self.src, &self.tgt, k, self.precision, self.block_bytes)?,
            ));
        }
        Ok(&self.r_src.as_ref().unwrap().1)
    }
    /// r_S(y) for every target row: mean similarity to its k nearest mapped sources.
    pub fn r_tgt(&mut self, k: i64) -> Result<&Tensor> {
        if self.r_tgt.as_ref().map(|r| r.0) != Some(k) {
            self.r_tgt = Some((
                k,
                knn_mean_sim(&self.tgt, &self.src, k, self.precision, self.block_bytes)?,
            ));
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
                        self.precision,
                        self.block_bytes,
                    )?,
                };
                Some((rs, rt))
            }
        };
        let queries = self.src.index_select(0, &q);
        Ok(match terms {
            None => search(
                &queries,
                &self.tgt,
                topk,
                None,
                self.precision,
                self.block_bytes,
            )?,
            // 2cos − r_T − r_S ranks a row's targets as cos − r_S/2 does.
            Some((rs, rt)) => {
                let half = &rt * 0.5;
                let (v, j) = search(
                    &queries,
                    &self.tgt,
                    topk,
                    Some(&half),
                    self.precision,
                    self.block_bytes,
                )?;
                (v * 2.0 - rs.unsqueeze(1), j)
            }
        })
    }

    /// Same as `translate` in the other direction (target rows → source).
    pub fn reversed(&self) -> Space {
        Space {
            src: self.tgt.shallow_clone(),
            tgt: self.src.shallow_clone(),
            block_bytes: self.block_bytes,
            precision: self.precision,
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

    /// Tiles over several base tiles (the last one narrower), a shift, and
    /// the bfloat16 candidate search re-ranked in f32: the f32 search is
    /// the full product's top k; the bfloat16 one returns the same rows
    /// with their f32 values.
    #[test]
    fn tiled_search_and_bf16_rerank_equal_the_full_product() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(5);
        let (nq, nb, d, k) = (300, 20_000, 16, 10);
        let q = unit_rows(&Tensor::randn([nq, d], (Kind::Float, Device::Cpu)));
        let b = unit_rows(&Tensor::randn([nb, d], (Kind::Float, Device::Cpu)));
        let shift = Tensor::rand([nb], (Kind::Float, Device::Cpu)) * 0.2;
        let full = q.mm(&b.tr()) - shift.unsqueeze(0);
        let (want_v, want_i) = full.topk(k, 1, true, true);
        for block_bytes in [BLOCK_BYTES, 4 * 8192 * 7] {
            let (v, i) = search(&q, &b, k, Some(&shift), Precision::F32, block_bytes).unwrap();
            assert!(i.equal(&want_i), "f32, blocks of {block_bytes} bytes");
            assert!((&v - &want_v).abs().max().double_value(&[]) < 1e-5);
            let (v, i) = search(&q, &b, k, Some(&shift), Precision::Bf16, block_bytes).unwrap();
            assert!(i.equal(&want_i), "bf16 candidates, f32 re-rank");
            assert!((&v - &want_v).abs().max().double_value(&[]) < 1e-5);
        }
        // A bfloat16-only search (no re-rank) would not be exact here.
        let approx = q
            .to_kind(Kind::BFloat16)
            .mm(&b.to_kind(Kind::BFloat16).tr());
        let err = (approx.to_kind(Kind::Float) - q.mm(&b.tr()))
            .abs()
            .max()
            .double_value(&[]);
        assert!(err > 1e-4, "bfloat16 products differ from f32 by {err}");
        // Spaces search in the format they are given, to the same answers.
        let mut s32 = Space::new(&q, &b).unwrap();
        let mut s16 = Space::new(&q, &b).unwrap();
        s16.precision = Precision::Bf16;
        let queries: Vec<usize> = (0..nq as usize).collect();
        let (a, ia) = s32
            .translate(&queries, Retrieval::Csls { k: 10 }, 5)
            .unwrap();
        let (c, ic) = s16
            .translate(&queries, Retrieval::Csls { k: 10 }, 5)
            .unwrap();
        assert!(ia.equal(&ic));
        assert!((a - c).abs().max().double_value(&[]) < 1e-5);
        assert!(s32.r_tgt(10).unwrap().allclose(
            &s16.r_tgt(10).unwrap().shallow_clone(),
            1e-6,
            1e-6,
            false
        ));
    }
}
