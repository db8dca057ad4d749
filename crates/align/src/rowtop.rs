//! The k largest entries of each row of a score matrix, optionally after a
//! per-column shift (CSLS's `cos − r_b/2`), in one pass over the scores.
//!
//! Self-learning reads a 20k × 20k score matrix four times an iteration
//! (CSLS's r terms and the choices, both directions). `Tensor::topk` sorts
//! partially every row, and the shift costs a pass of its own; here each row
//! is scanned in chunks whose maximum is compared with the running k-th best,
//! so only the rare chunk holding a better score is looked at element by
//! element. The scan is memory-bound and splits rows between threads.
use crate::error::{AlignError, Result};
use tch::{Device, Kind, Tensor};

/// Elements per chunk whose maximum is checked against the running k-th best.
const CHUNK: usize = 64;
/// Independent maxima per chunk (lanes the compiler may vectorise).
const LANES: usize = 16;

/// A score as stored: f32, or bfloat16 (its bits, the upper half of an f32's).
trait Score: Copy + Send + Sync {
    fn f(self) -> f32;
}

impl Score for f32 {
    #[inline(always)]
    fn f(self) -> f32 {
        self
    }
}

impl Score for u16 {
    #[inline(always)]
    fn f(self) -> f32 {
        f32::from_bits((self as u32) << 16)
    }
}

/// The largest of `c[i] − s[i]` (of `c[i]` without a shift), in `LANES`
/// independent maxima so the loop compiles to vector max instructions.
#[inline(always)]
fn chunk_max<T: Score>(c: &[T; CHUNK], s: Option<&[f32; CHUNK]>) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    for q in 0..CHUNK / LANES {
        for l in 0..LANES {
            let x = match s {
                Some(s) => c[q * LANES + l].f() - s[q * LANES + l],
                None => c[q * LANES + l].f(),
            };
            acc[l] = if x > acc[l] { x } else { acc[l] };
        }
    }
    acc.into_iter()
        .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a })
}

/// Inserts `x` (from position `j`) into the decreasing top `vals`/`idx`,
/// dropping the last; returns the new k-th best. `x` must beat the last.
#[inline]
fn insert_sorted(vals: &mut [f32], idx: &mut [i64], x: f32, j: i64) -> f32 {
    let k = vals.len();
    let mut p = k - 1;
    while p > 0 && vals[p - 1] < x {
        vals[p] = vals[p - 1];
        idx[p] = idx[p - 1];
        p -= 1;
    }
    vals[p] = x;
    idx[p] = j;
    vals[k - 1]
}

/// Continues the running decreasing top `vals`/`idx` of one row with the
/// scores `row` of columns `offset..offset + row.len()`.
fn row_continue<T: Score>(
    row: &[T],
    shift: Option<&[f32]>,
    offset: i64,
    vals: &mut [f32],
    idx: &mut [i64],
) {
    let mut thr = vals[vals.len() - 1];
    // Looks at row[from..to] element by element, inserting what beats the
    // current k-th best into the sorted top k.
    let mut scan = |from: usize, to: usize, thr: &mut f32| {
        for j in from..to {
            let x = match shift {
                Some(sh) => row[j].f() - sh[j],
                None => row[j].f(),
            };
            if x > *thr {
                *thr = insert_sorted(vals, idx, x, offset + j as i64);
            }
        }
    };
    let whole = row.len() / CHUNK * CHUNK;
    for base in (0..whole).step_by(CHUNK) {
        let c: &[T; CHUNK] = row[base..base + CHUNK].try_into().expect("a whole chunk");
        let s: Option<&[f32; CHUNK]> =
            shift.map(|s| s[base..base + CHUNK].try_into().expect("a whole chunk"));
        if chunk_max(c, s) > thr {
            scan(base, base + CHUNK, &mut thr);
        }
    }
    scan(whole, row.len(), &mut thr);
}

/// A pointer the pieces of one parallel loop share (each writes its own rows).
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: only used for disjoint writes, see `RowTop::continue_rows`.
unsafe impl<T> Sync for Shared<T> {}
unsafe impl<T> Send for Shared<T> {}
impl<T> Shared<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// The running top `k` of each of `n` rows whose scores come in tiles of
/// columns ([`RowTop::update`]): one pass over each tile while it is in
/// cache, each row compared with its own k-th best so far.
pub struct RowTop {
    n: usize,
    k: usize,
    vals: Vec<f32>,
    idx: Vec<i64>,
}

impl RowTop {
    pub fn new(n: i64, k: i64) -> Result<Self> {
        if n < 0 || k < 1 {
            return Err(AlignError::Invalid(format!("top {k} of {n} rows")));
        }
        let (n, k) = (n as usize, k as usize);
        Ok(Self {
            n,
            k,
            vals: vec![f32::NEG_INFINITY; n * k],
            idx: vec![-1; n * k],
        })
    }

    /// Scores `[n, w]` (f32 or bfloat16, CPU) of columns `offset..offset +
    /// w`, each column shifted by `shift[j]` (`[w]`) when given.
    pub fn update(&mut self, tile: &Tensor, offset: i64, shift: Option<&Tensor>) -> Result<()> {
        let (n, w) = tile.size2()?;
        let kind = tile.kind();
        if n as usize != self.n
            || tile.device() != Device::Cpu
            || !matches!(kind, Kind::Float | Kind::BFloat16)
            || shift.is_some_and(|s| s.size() != [w])
        {
            return Err(AlignError::Invalid(format!(
                "a tile of {:?} {kind:?} scores on {:?} for {} rows (shift {:?})",
                tile.size(),
                tile.device(),
                self.n,
                shift.map(|s| s.size())
            )));
        }
        let tile = tile.contiguous();
        let shift = shift.map(|s| s.to_kind(Kind::Float).contiguous());
        let w_ = w as usize;
        // SAFETY: `shift` is a contiguous f32 CPU tensor of w elements and
        // `tile` a contiguous one of n·w elements of its kind, both alive
        // (and unchanged) for the whole borrow.
        let sh = shift
            .as_ref()
            .map(|s| unsafe { std::slice::from_raw_parts(s.data_ptr() as *const f32, w_) });
        if kind == Kind::Float {
            let data =
                unsafe { std::slice::from_raw_parts(tile.data_ptr() as *const f32, self.n * w_) };
            self.continue_rows(data, w_, sh, offset);
        } else {
            let data =
                unsafe { std::slice::from_raw_parts(tile.data_ptr() as *const u16, self.n * w_) };
            self.continue_rows(data, w_, sh, offset);
        }
        Ok(())
    }

    fn continue_rows<T: Score>(&mut self, data: &[T], w: usize, sh: Option<&[f32]>, offset: i64) {
        let k = self.k;
        let (vals, idx) = (
            Shared(self.vals.as_mut_ptr()),
            Shared(self.idx.as_mut_ptr()),
        );
        // On libtorch's OpenMP team, which has just made the tile's product.
        embedlab_train::omp_pieces(self.n, 1, &|begin: usize, end: usize| {
            for r in begin..end {
                // SAFETY: the pieces are disjoint ranges of rows, so each
                // row's k slots are written by one thread only; both
                // vectors hold n·k elements and outlive the call.
                let (v, ix) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(vals.get().add(r * k), k),
                        std::slice::from_raw_parts_mut(idx.get().add(r * k), k),
                    )
                };
                row_continue(&data[r * w..(r + 1) * w], sh, offset, v, ix);
            }
        });
    }

    /// Values `[n, k]` (decreasing) and their columns.
    pub fn finish(self) -> (Tensor, Tensor) {
        let (n, k) = (self.n as i64, self.k as i64);
        (
            Tensor::from_slice(&self.vals).view([n, k]),
            Tensor::from_slice(&self.idx).view([n, k]),
        )
    }
}

/// For each row of `scores` (`[n, m]`, f32 or bfloat16 read as f32), the `k` largest of
/// `scores[i, j] − shift[j]` (no shift when `None`): values `[n, k]` in
/// decreasing order and their columns. Equal to `(scores − shift).topk(k, 1)`
/// up to the order of ties. CUDA tensors, or other kinds, go through
/// `Tensor::topk`.
pub fn rows_topk(scores: &Tensor, shift: Option<&Tensor>, k: i64) -> Result<(Tensor, Tensor)> {
    let (n, m) = scores.size2()?;
    if k < 1 || k > m {
        return Err(AlignError::Invalid(format!(
            "top {k} of rows of {m} scores"
        )));
    }
    if let Some(s) = shift {
        if s.size() != [m] {
            return Err(AlignError::Invalid(format!(
                "a shift of {:?} for rows of {m} scores",
                s.size()
            )));
        }
    }
    let kind = scores.kind();
    if scores.device() != Device::Cpu || !matches!(kind, Kind::Float | Kind::BFloat16) {
        let s = match shift {
            Some(sh) => scores - sh.unsqueeze(0),
            None => scores.shallow_clone(),
        };
        let (v, i) = s.f_topk(k, 1, true, true)?;
        return Ok((v, i));
    }
    // One tile: the whole matrix.
    let mut top = RowTop::new(n, k)?;
    top.update(scores, 0, shift)?;
    Ok(top.finish())
}

/// The `k` largest entries of each column of a score matrix streamed by row
/// blocks, each row optionally shifted by its own constant (CSLS's
/// `cos − r_a/2` seen from the other side): the column-wise counterpart of
/// [`rows_topk`], so one product serves both directions of an induction.
///
/// Each row is compared with the columns' running k-th best, a vectorised
/// test over chunks of columns; only columns where a row does better are
/// updated. Columns are split between threads.
pub struct ColumnTop {
    k: usize,
    m: usize,
    /// `[m][k]`: each column's best, decreasing.
    vals: Vec<f32>,
    idx: Vec<i64>,
    /// Each column's current k-th best.
    thr: Vec<f32>,
    /// Rows seen so far (the row index of the next block's first row).
    rows: i64,
}

impl ColumnTop {
    pub fn new(m: i64, k: i64) -> Result<Self> {
        if k < 1 || m < 1 {
            return Err(AlignError::Invalid(format!("top {k} of {m} columns")));
        }
        let (m, k) = (m as usize, k as usize);
        Ok(Self {
            k,
            m,
            vals: vec![f32::NEG_INFINITY; m * k],
            idx: vec![-1; m * k],
            thr: vec![f32::NEG_INFINITY; m],
            rows: 0,
        })
    }

    /// Takes the next rows (`block`: `[len, m]`, f32 on the CPU), shifted by
    /// `shift` (`[len]`) when given.
    pub fn update(&mut self, block: &Tensor, shift: Option<&Tensor>) -> Result<()> {
        let (len, m) = block.size2()?;
        if m as usize != self.m || block.kind() != Kind::Float || block.device() != Device::Cpu {
            return Err(AlignError::Invalid(format!(
                "a block of {m} columns ({:?}, {:?}) for {} columns of f32 on the CPU",
                block.kind(),
                block.device(),
                self.m
            )));
        }
        let shift: Option<Vec<f32>> = match shift {
            Some(s) if s.size() != [len] => {
                return Err(AlignError::Invalid(format!(
                    "a shift of {:?} for {len} rows",
                    s.size()
                )))
            }
            Some(s) => Some(Vec::<f32>::try_from(s.to_kind(Kind::Float))?),
            None => None,
        };
        let block = block.contiguous();
        let (len_, m_, k) = (len as usize, self.m, self.k);
        // SAFETY: a contiguous f32 CPU tensor of len·m elements, alive for the borrow.
        let data = unsafe { std::slice::from_raw_parts(block.data_ptr() as *const f32, len_ * m_) };
        let threads = (tch::get_num_threads().max(1) as usize).min(m_);
        // Column ranges per thread, whole chunks where possible.
        let per = m_.div_ceil(threads).div_ceil(CHUNK) * CHUNK;
        let first_row = self.rows;
        let sh = shift.as_deref();
        std::thread::scope(|scope| {
            for (((c, thr), vals), idx) in (0..m_)
                .step_by(per)
                .zip(self.thr.chunks_mut(per))
                .zip(self.vals.chunks_mut(per * k))
                .zip(self.idx.chunks_mut(per * k))
            {
                scope.spawn(move || {
                    let w = thr.len();
                    for i in 0..len_ {
                        let row = &data[i * m_ + c..i * m_ + c + w];
                        let s = sh.map_or(0.0, |s| s[i]);
                        let r = first_row + i as i64;
                        let whole = w / CHUNK * CHUNK;
                        for base in (0..whole).step_by(CHUNK) {
                            let v: &[f32; CHUNK] =
                                row[base..base + CHUNK].try_into().expect("a chunk");
                            let t: &[f32; CHUNK] =
                                thr[base..base + CHUNK].try_into().expect("a chunk");
                            let mut hit = false;
                            for (a, b) in v.iter().zip(t) {
                                hit |= a - s > *b;
                            }
                            if hit {
                                col_insert(row, s, r, base, base + CHUNK, k, thr, vals, idx);
                            }
                        }
                        col_insert(row, s, r, whole, w, k, thr, vals, idx);
                    }
                });
            }
        });
        self.rows += len;
        Ok(())
    }

    /// Values `[m, k]` (each column's best, decreasing) and their rows.
    pub fn finish(self) -> (Tensor, Tensor) {
        let (m, k) = (self.m as i64, self.k as i64);
        (
            Tensor::from_slice(&self.vals).view([m, k]),
            Tensor::from_slice(&self.idx).view([m, k]),
        )
    }
}

/// Inserts `row[j] − s` (row index `r`) into the columns `from..to` whose
/// k-th best it beats.
#[allow(clippy::too_many_arguments)]
fn col_insert(
    row: &[f32],
    s: f32,
    r: i64,
    from: usize,
    to: usize,
    k: usize,
    thr: &mut [f32],
    vals: &mut [f32],
    idx: &mut [i64],
) {
    for j in from..to {
        let x = row[j] - s;
        if x > thr[j] {
            let span = j * k..(j + 1) * k;
            thr[j] = insert_sorted(&mut vals[span.clone()], &mut idx[span], x, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_torch_topk_with_and_without_a_shift() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(11);
        // Rows longer and shorter than a chunk, k from 1 to the row length.
        for (n, m) in [(37i64, 1000i64), (5, 64), (3, 7), (200, 130)] {
            let s = Tensor::randn([n, m], (Kind::Float, Device::Cpu));
            let sh = Tensor::rand([m], (Kind::Float, Device::Cpu));
            for k in [1, 2, 10, 66, m].map(|k| k.min(m)) {
                for shift in [None, Some(&sh)] {
                    let (v, i) = rows_topk(&s, shift, k).unwrap();
                    let want = match shift {
                        Some(sh) => &s - sh.unsqueeze(0),
                        None => s.shallow_clone(),
                    };
                    let (wv, wi) = want.topk(k, 1, true, true);
                    assert!(v.allclose(&wv, 0.0, 0.0, false), "values n{n} m{m} k{k}");
                    assert!(i.equal(&wi), "columns n{n} m{m} k{k}");
                }
            }
        }
        // Scores on another device or kind take torch's path; bad sizes are refused.
        let s = Tensor::randn([4, 9], (Kind::Double, Device::Cpu));
        let (v, _) = rows_topk(&s, None, 3).unwrap();
        assert!(v.equal(&s.topk(3, 1, true, true).0));
        assert!(rows_topk(&s, None, 10).is_err());
        assert!(rows_topk(&s, Some(&Tensor::zeros([3], (Kind::Float, Device::Cpu))), 2).is_err());
    }

    #[test]
    fn column_top_streams_blocks_into_torch_topk_over_rows() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(12);
        for (n, m) in [(300i64, 1000i64), (70, 64), (9, 5), (130, 200)] {
            let s = Tensor::randn([n, m], (Kind::Float, Device::Cpu));
            let sh = Tensor::rand([n], (Kind::Float, Device::Cpu));
            for k in [1, 3, 10, 66, n].map(|k| k.min(n)) {
                for shift in [None, Some(&sh)] {
                    let mut top = ColumnTop::new(m, k).unwrap();
                    // Uneven blocks, the last one short.
                    let mut i = 0;
                    while i < n {
                        let len = (n / 3 + 1).min(n - i);
                        let b = s.narrow(0, i, len);
                        let bs = shift.map(|t| t.narrow(0, i, len));
                        top.update(&b, bs.as_ref()).unwrap();
                        i += len;
                    }
                    let (v, ix) = top.finish();
                    let want = match shift {
                        Some(t) => &s - t.unsqueeze(1),
                        None => s.shallow_clone(),
                    };
                    let (wv, wi) = want.topk(k, 0, true, true);
                    assert!(
                        v.allclose(&wv.tr(), 0.0, 0.0, false),
                        "values n{n} m{m} k{k}"
                    );
                    assert!(ix.equal(&wi.tr()), "rows n{n} m{m} k{k}");
                }
            }
        }
        let mut top = ColumnTop::new(5, 2).unwrap();
        assert!(top
            .update(&Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)), None)
            .is_err());
        assert!(top
            .update(
                &Tensor::zeros([3, 5], (Kind::Float, Device::Cpu)),
                Some(&Tensor::zeros([2], (Kind::Float, Device::Cpu)))
            )
            .is_err());
        assert!(ColumnTop::new(5, 0).is_err());
    }

    /// Tiles of columns of uneven widths, f32 and bfloat16 (read as the
    /// f32 values they stand for), with a shift: the running top equals
    /// torch's top k of the whole matrix; bad tiles are refused.
    #[test]
    fn row_top_over_column_tiles_equals_torch_topk() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(11);
        let (n, m, k) = (37, 1000, 7);
        for kind in [Kind::Float, Kind::BFloat16] {
            let scores = Tensor::randn([n, m], (Kind::Float, Device::Cpu)).to_kind(kind);
            let shift = Tensor::rand([m], (Kind::Float, Device::Cpu));
            let want = scores.to_kind(Kind::Float) - shift.unsqueeze(0);
            let (wv, _) = want.topk(k, 1, true, true);
            let mut top = RowTop::new(n, k).unwrap();
            let mut j = 0;
            for w in [1, 63, 64, 200, 672] {
                let t = scores.narrow(1, j, w);
                top.update(&t, j, Some(&shift.narrow(0, j, w))).unwrap();
                j += w;
            }
            assert_eq!(j, m);
            let (v, i) = top.finish();
            assert!(v.equal(&wv), "{kind:?}: values");
            // The columns hold those values (ties aside, bfloat16 has some).
            let got = want.gather(1, &i, false);
            assert!(got.equal(&v), "{kind:?}: columns");
        }
        let mut top = RowTop::new(3, 2).unwrap();
        let t = Tensor::zeros([4, 5], (Kind::Float, Device::Cpu));
        assert!(top.update(&t, 0, None).is_err(), "4 rows for 3");
        let t = Tensor::zeros([3, 5], (Kind::Double, Device::Cpu));
        assert!(top.update(&t, 0, None).is_err(), "f64 scores");
        let t = Tensor::zeros([3, 5], (Kind::Float, Device::Cpu));
        let sh = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        assert!(
            top.update(&t, 0, Some(&sh)).is_err(),
            "a shift of 4 for 5 columns"
        );
        assert!(RowTop::new(3, 0).is_err());
    }
}
