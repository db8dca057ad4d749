//! Data sets of controlled variations, for DrLIM's invariance experiments
//! (Hadsell, Chopra & LeCun 2006), written as MNIST-format IDX folders with
//! the factors of every image beside them in `factors.json`:
//!
//! - [`shifted`]: every source image once per horizontal shift (zero fill,
//!   no wrap), labelled by its class — does a map group by digit or by
//!   shift?
//! - [`variations`]: one source image under two factors, rotated through
//!   `angles` angles (circular) × shifted through `shifts` steps (linear),
//!   labelled by the cell `a·shifts + s` so that `embedlab train drlim
//!   --graph grid --grid {angles}x{shifts} --circular-rows` applies, with
//!   noisy copies of each cell.
//!
//! The folders hold uncompressed `train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte` (read back by
//! [`embedlab_data::load_image_dataset`]) and `factors.json`:
//!
//! ```text
//! {
//!   "names": ["angle", "shift"],
//!   "circular": [true, false],
//!   "periods": [360.0, 0.0],
//!   "train": [
//!     [0.0, -4.0],
//!     …one row per training image, one value per factor
//!   ],
//!   "test": [
//!     …one row per test image
//!   ]
//! }
//! ```
//!
//! `periods[i]` is the period of a circular factor (360 for degrees) and 0
//! for a linear or categorical one. Rows follow the images of the IDX files
//! in order. A folder is written under a temporary name beside `out` and
//! renamed into place when complete; an existing non-empty `out` is
//! refused.
use crate::{fail, PipelineError, Result};
use embedlab_data::atomic::write_atomic;
use embedlab_data::images::read_idx;
use embedlab_data::{load_image_dataset, ImageSet};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The factors file's name in a data folder.
pub const FACTORS_FILE: &str = "factors.json";

/// The most cells (labels) of [`variations`]: IDX labels are unsigned bytes,
/// 0–255.
pub const MAX_CELLS: usize = 256;

/// Known factors of variation of every image of a data folder
/// (`factors.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Factors {
    /// The factors' names, e.g. `["digit", "shift"]`.
    pub names: Vec<String>,
    /// Whether each factor is circular (an angle).
    pub circular: Vec<bool>,
    /// Each circular factor's period (360 for degrees); 0 for the others.
    pub periods: Vec<f64>,
    /// Per test image (in the order of the IDX file), one value per factor.
    pub test: Vec<Vec<f64>>,
    /// Per training image, one value per factor.
    pub train: Vec<Vec<f64>>,
}

impl Factors {
    /// The values of factor `name` over the training images (`test =
    /// false`) or the test images.
    pub fn column(&self, name: &str, test: bool) -> Option<Vec<f64>> {
        let j = self.names.iter().position(|n| n == name)?;
        let rows = if test { &self.test } else { &self.train };
        Some(rows.iter().map(|r| r[j]).collect())
    }

    /// Why these factors do not describe `n_train` training and `n_test`
    /// test images, if they do not.
    fn check(&self, n_train: usize, n_test: usize) -> std::result::Result<(), String> {
        let k = self.names.len();
        if k == 0 {
            return Err("no factors named (`names` is empty)".into());
        }
        if self.circular.len() != k || self.periods.len() != k {
            return Err(format!(
                "{k} names, {} `circular` flags and {} periods: one of each per factor",
                self.circular.len(),
                self.periods.len()
            ));
        }
        for (i, n) in self.names.iter().enumerate() {
            if n.trim().is_empty() {
                return Err(format!("factor {} has an empty name", i + 1));
            }
            if self.names[..i].contains(n) {
                return Err(format!("factor `{n}` is named twice"));
            }
            let p = self.periods[i];
            if self.circular[i] && !(p.is_finite() && p > 0.0) {
                return Err(format!(
                    "circular factor `{n}` has period {p}: a positive number is needed"
                ));
            }
            if !p.is_finite() {
                return Err(format!("factor `{n}` has period {p}"));
            }
        }
        for (what, rows, n, file) in [
            ("training", &self.train, n_train, "train-labels-idx1-ubyte"),
            ("test", &self.test, n_test, "t10k-labels-idx1-ubyte"),
        ] {
            if rows.len() != n {
                return Err(format!(
                    "{} {what} rows for the {n} {what} images of {file}",
                    rows.len()
                ));
            }
            for (r, row) in rows.iter().enumerate() {
                if row.len() != k {
                    return Err(format!(
                        "{what} row {}: {} values for {k} factors",
                        r + 1,
                        row.len()
                    ));
                }
                if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                    return Err(format!(
                        "{what} row {}, factor `{}`: {} is not a finite number",
                        r + 1,
                        self.names[j],
                        row[j]
                    ));
                }
            }
        }
        Ok(())
    }

    /// The file's text: the header fields on a line each, one line per row.
    fn to_text(&self) -> Result<String> {
        let mut s = String::from("{\n");
        s += &format!("  \"names\": {},\n", j(&self.names)?);
        s += &format!("  \"circular\": {},\n", j(&self.circular)?);
        s += &format!("  \"periods\": {},\n", j(&self.periods)?);
        for (key, rows, last) in [("train", &self.train, false), ("test", &self.test, true)] {
            s += &format!("  \"{key}\": [");
            for (i, r) in rows.iter().enumerate() {
                s += if i == 0 { "\n    " } else { ",\n    " };
                s += &j(r)?;
            }
            s += if rows.is_empty() { "]" } else { "\n  ]" };
            s += if last { "\n" } else { ",\n" };
        }
        s += "}\n";
        Ok(s)
    }
}

/// A value as compact JSON.
fn j<T: Serialize + ?Sized>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

/// What a generator wrote.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Training images.
    pub train: usize,
    /// Test images.
    pub test: usize,
    /// Distinct labels the images may carry: the source's classes for
    /// [`shifted`], the cells for [`variations`] (the loader names at least
    /// 10 classes whatever the labels).
    pub classes: usize,
    /// The folder written.
    pub path: PathBuf,
}

fn find_labels(dir: &Path, stem: &str) -> Option<PathBuf> {
    [
        format!("{stem}-labels-idx1-ubyte"),
        format!("{stem}-labels.idx1-ubyte"),
    ]
    .iter()
    .flat_map(|n| [dir.join(n), dir.join(format!("{n}.gz"))])
    .find(|p| p.is_file())
}

/// The factors of the images of the IDX folder `data_dir`, read from its
/// `factors.json`: None when there is no such file; an error naming the
/// file and the reason when it is unreadable, not JSON of the expected
/// shape, or does not fit the images (a row count other than the IDX label
/// files', a row of the wrong length, a non-finite value, a circular factor
/// without a positive period).
pub fn read_factors(data_dir: &Path) -> Result<Option<Factors>> {
    let path = data_dir.join(FACTORS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PipelineError::file(&path, format!("cannot read: {e}"))),
    };
    let f: Factors = serde_json::from_str(&text).map_err(|e| {
        PipelineError::file(
            &path,
            format!(
                "not a factors file (JSON with `names`, `circular`, `periods`, `train`, `test`): {e}"
            ),
        )
    })?;
    let mut counts = [0usize; 2];
    for (c, stem) in counts.iter_mut().zip(["train", "t10k"]) {
        let labels = find_labels(data_dir, stem).ok_or_else(|| {
            PipelineError::file(
                &path,
                format!("no {stem}-labels-idx1-ubyte[.gz] beside it to count the images"),
            )
        })?;
        *c = read_idx(&labels)?.0[0];
    }
    f.check(counts[0], counts[1])
        .map_err(|m| PipelineError::file(&path, m))?;
    Ok(Some(f))
}

// ---------------------------------------------------------------------------
// Image transforms

/// `img` (channels × h × w) shifted right by `s` whole pixels (left when
/// negative), vacated columns black, nothing wrapped around.
fn shift_whole(img: &[u8], channels: usize, h: usize, w: usize, s: i64) -> Vec<u8> {
    let mut out = vec![0u8; img.len()];
    for row in 0..channels * h {
        let base = row * w;
        for x in 0..w {
            let from = x as i64 - s;
            if (0..w as i64).contains(&from) {
                out[base + x] = img[base + from as usize];
            }
        }
    }
    out
}

/// `img` (channels × h × w) rotated by `deg` degrees counter-clockwise (as
/// seen, rows running down) about its centre ((w − 1)/2, (h − 1)/2), then
/// shifted right by `shift` pixels, in one bilinear resampling (grey
/// levels as reals; outside the source is black). Each output pixel p
/// takes the source at R(−deg)·(p − shift − centre) + centre.
fn rotate_shift(img: &[u8], channels: usize, h: usize, w: usize, deg: f64, shift: f64) -> Vec<f64> {
    let (sin, cos) = deg.to_radians().sin_cos();
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    // Coordinates within rounding of a pixel centre are that centre, so
    // quarter turns and whole shifts copy pixels exactly.
    let snap = |v: f64| {
        let r = v.round();
        if (v - r).abs() < 1e-9 {
            r
        } else {
            v
        }
    };
    let mut out = vec![0.0; img.len()];
    for ch in 0..channels {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        let at = |x: i64, y: i64| -> f64 {
            if (0..w as i64).contains(&x) && (0..h as i64).contains(&y) {
                plane[y as usize * w + x as usize] as f64
            } else {
                0.0
            }
        };
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f64 - shift - cx, y as f64 - cy);
                let sx = snap(cx + dx * cos - dy * sin);
                let sy = snap(cy + dx * sin + dy * cos);
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let (x0, y0) = (x0 as i64, y0 as i64);
                let v = (1.0 - fy) * ((1.0 - fx) * at(x0, y0) + fx * at(x0 + 1, y0))
                    + fy * ((1.0 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
                out[ch * h * w + y * w + x] = v;
            }
        }
    }
    out
}

fn to_byte(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// SplitMix64 (Steele, Lea & Flood 2014), with Gaussian draws by
/// Box–Muller: seeded pixel noise independent of libtorch's generator.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

// ---------------------------------------------------------------------------
// Writing

/// Fails unless `out` can take a new folder: absent or an empty folder.
fn check_out(out: &Path) -> Result<()> {
    if out.file_name().is_none() {
        fail!("{}: give a folder to create", out.display());
    }
    if out.is_file() {
        fail!("{} is a file: give a new folder", out.display());
    }
    if out.is_dir() {
        let mut entries =
            std::fs::read_dir(out).map_err(|e| PipelineError::file(out, e.to_string()))?;
        if entries.next().is_some() {
            fail!(
                "{} exists and is not empty: give a new folder, or remove it first",
                out.display()
            );
        }
    }
    Ok(())
}

/// The loader names a folder's classes after Fashion-MNIST when its name
/// says `fashion`, and then refuses labels from 10 on.
fn check_loadable_name(out: &Path, top_label: usize) -> Result<()> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.contains("fashion") && top_label >= 10 {
        fail!(
            "{}: a folder whose name contains `fashion` is read with the 10 Fashion-MNIST classes, \
             and these images have labels up to {top_label}: choose another name",
            out.display()
        );
    }
    Ok(())
}

fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    let mut head = vec![0u8, 0, 8, dims.len() as u8];
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| {
            PipelineError::file(
                path,
                format!("dimension {d} exceeds an IDX header's 32 bits"),
            )
        })?;
        head.extend_from_slice(&d.to_be_bytes());
    }
    write_atomic(path, |w| {
        w.write_all(&head)?;
        w.write_all(data)
    })?;
    Ok(())
}

fn write_set(dir: &Path, stem: &str, set: &ImageSet) -> Result<()> {
    let dims = if set.channels == 1 {
        vec![set.n, set.height, set.width]
    } else {
        vec![set.n, set.channels, set.height, set.width]
    };
    write_idx(
        &dir.join(format!("{stem}-images-idx3-ubyte")),
        &dims,
        &set.pixels,
    )?;
    write_idx(
        &dir.join(format!("{stem}-labels-idx1-ubyte")),
        &[set.n],
        &set.labels,
    )
}

/// Writes the IDX folder and its factors under a temporary name beside
/// `out`, then renames it to `out`.
fn write_folder(
    out: &Path,
    train: &ImageSet,
    test: &ImageSet,
    factors: &Factors,
    classes: usize,
) -> Result<Summary> {
    check_out(out)?;
    factors
        .check(train.n, test.n)
        .map_err(|m| PipelineError::Invalid(format!("internal: factors do not fit: {m}")))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| PipelineError::file(&parent, e.to_string()))?;
    let name = out.file_name().expect("checked").to_string_lossy();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| PipelineError::file(&tmp, e.to_string()))?;
    }
    let res = (|| -> Result<()> {
        std::fs::create_dir(&tmp).map_err(|e| PipelineError::file(&tmp, e.to_string()))?;
        write_set(&tmp, "train", train)?;
        write_set(&tmp, "t10k", test)?;
        let text = factors.to_text()?;
        write_atomic(&tmp.join(FACTORS_FILE), |w| w.write_all(text.as_bytes()))?;
        check_out(out)?;
        if out.is_dir() {
            std::fs::remove_dir(out).map_err(|e| PipelineError::file(out, e.to_string()))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| {
            PipelineError::file(out, format!("cannot move the new folder into place: {e}"))
        })?;
        if let Ok(d) = std::fs::File::open(&parent) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(Summary {
        train: train.n,
        test: test.n,
        classes,
        path: out.to_path_buf(),
    })
}

// ---------------------------------------------------------------------------
// Generators

/// Every image of `src` (an image data set [`load_image_dataset`] reads;
/// the first `train_limit` training and `test_limit` test images when
/// given) once per horizontal shift of `shifts` pixels (positive: to the
/// right; vacated columns black, nothing wraps around), labelled by its
/// class, written as an IDX folder `out`.
///
/// Order: source-major — image `i·shifts.len() + j` is source image `i`
/// shifted by `shifts[j]`. `factors.json` has the factors `["digit",
/// "shift"]` (`"class"` instead of `"digit"` when the source's classes are
/// not the digits 0–9), neither circular (periods 0): the source label and
/// the shift in pixels.
///
/// Refused: no shifts, a shift given twice, a shift as wide as the image,
/// a zero limit, an `out` that exists and is not empty.
pub fn shifted(
    src: &Path,
    out: &Path,
    shifts: &[i64],
    train_limit: Option<usize>,
    test_limit: Option<usize>,
) -> Result<Summary> {
    if shifts.is_empty() {
        fail!("no shifts given");
    }
    for (i, s) in shifts.iter().enumerate() {
        if shifts[..i].contains(s) {
            fail!("shift {s} is given twice");
        }
    }
    if train_limit == Some(0) || test_limit == Some(0) {
        fail!("a limit of 0 images leaves nothing to write");
    }
    check_out(out)?;
    let ds = load_image_dataset(src)?;
    let w = ds.train.width;
    if let Some(s) = shifts.iter().find(|s| s.unsigned_abs() as usize >= w) {
        fail!("a shift of {s} pixels leaves nothing of {w}-pixel-wide images");
    }
    let top = ds
        .train
        .labels
        .iter()
        .chain(&ds.test.labels)
        .copied()
        .max()
        .unwrap_or(0);
    check_loadable_name(out, top as usize)?;
    let digits = ds.classes.len() == 10
        && ds
            .classes
            .iter()
            .enumerate()
            .all(|(i, c)| *c == i.to_string());
    let mut factors = Factors {
        names: vec![
            if digits { "digit" } else { "class" }.into(),
            "shift".into(),
        ],
        circular: vec![false, false],
        periods: vec![0.0, 0.0],
        test: vec![],
        train: vec![],
    };
    let mut sets = vec![];
    for (set, limit, rows) in [
        (&ds.train, train_limit, &mut factors.train),
        (&ds.test, test_limit, &mut factors.test),
    ] {
        let n = limit.map_or(set.n, |l| l.min(set.n));
        let d = set.dim();
        let total = n * shifts.len();
        let mut pixels = Vec::with_capacity(total * d);
        let mut labels = Vec::with_capacity(total);
        for i in 0..n {
            let img = &set.pixels[i * d..(i + 1) * d];
            for &s in shifts {
                pixels.extend(shift_whole(img, set.channels, set.height, w, s));
                labels.push(set.labels[i]);
                rows.push(vec![set.labels[i] as f64, s as f64]);
            }
        }
        sets.push(ImageSet {
            pixels,
            labels,
            n: total,
            channels: set.channels,
            height: set.height,
            width: w,
        });
    }
    write_folder(out, &sets[0], &sets[1], &factors, ds.classes.len())
}

/// The shift in pixels of step `j` of `shifts`: evenly from −max_shift to
/// max_shift.
fn shift_of(j: usize, shifts: usize, max_shift: f64) -> f64 {
    max_shift * (2.0 * j as f64 / (shifts - 1) as f64 - 1.0)
}

/// Training image `index` of `src` under two controlled factors, written
/// as an IDX folder `out`: rotated counter-clockwise about its centre by
/// `360·a/angles` degrees (a = 0..angles; circular) and then shifted right
/// by `max_shift·(2s/(shifts − 1) − 1)` pixels (s = 0..shifts; linear), in
/// one bilinear resampling (black outside the image).
///
/// Each of the `angles × shifts` cells is labelled `a·shifts + s` (so
/// `embedlab train drlim --graph grid --grid {angles}x{shifts}
/// --circular-rows` applies) and appears `copies` times in the training
/// set, each copy with its own Gaussian pixel noise of standard deviation
/// `noise` grey levels (0–255, rounded and clamped), and once in the test
/// set with noise drawn from another seed. Order: cell-major — training
/// image `cell·copies + k` is copy k of the cell, test image `cell` the
/// cell. `factors.json`: `["angle" (degrees, circular, period 360),
/// "shift" (pixels, linear)]`.
///
/// Refused: fewer than 2 angles or shifts, more than [`MAX_CELLS`] cells,
/// an `index` beyond the source's training images, no copies, a negative
/// or non-finite noise, a `max_shift` not in (0, width), an `out` that
/// exists and is not empty, or one whose name contains `fashion` with more
/// than 10 cells (the loader would read it as Fashion-MNIST's 10 classes).
#[allow(clippy::too_many_arguments)]
pub fn variations(
    src: &Path,
    out: &Path,
    index: usize,
    angles: usize,
    shifts: usize,
    max_shift: f64,
    copies: usize,
    noise: f64,
    seed: u64,
) -> Result<Summary> {
    if angles < 2 || shifts < 2 {
        fail!("{angles} angles × {shifts} shifts: at least 2 of each are needed");
    }
    let cells = angles
        .checked_mul(shifts)
        .filter(|&c| c <= MAX_CELLS)
        .ok_or_else(|| {
            PipelineError::Invalid(format!(
                "{angles} angles × {shifts} shifts make more than {MAX_CELLS} cells: IDX labels are bytes (0–255)"
            ))
        })?;
    if copies == 0 {
        fail!("copies must be at least 1");
    }
    if !(noise.is_finite() && noise >= 0.0) {
        fail!("pixel noise {noise}: a standard deviation ≥ 0 is needed");
    }
    check_out(out)?;
    check_loadable_name(out, cells - 1)?;
    let ds = load_image_dataset(src)?;
    let set = &ds.train;
    if index >= set.n {
        fail!(
            "image {index} asked for, {} has {} training images (0..{})",
            src.display(),
            set.n,
            set.n
        );
    }
    let (c, h, w) = (set.channels, set.height, set.width);
    if !(max_shift.is_finite() && max_shift > 0.0 && max_shift < w as f64) {
        fail!("max shift {max_shift}: give a number of pixels in (0, {w})");
    }
    let total = cells
        .checked_mul(copies)
        .filter(|&t| t <= u32::MAX as usize)
        .ok_or_else(|| {
            PipelineError::Invalid(format!("{cells} cells × {copies} copies: too many images"))
        })?;
    let d = set.dim();
    let img = &set.pixels[index * d..(index + 1) * d];
    let mut train_rng = Rng(seed);
    let mut test_rng = Rng(seed ^ 0x7E57_5EED_D1A6_2006);
    let noisy = |clean: &[f64], rng: &mut Rng| -> Vec<u8> {
        clean
            .iter()
            .map(|&v| {
                to_byte(if noise > 0.0 {
                    v + noise * rng.normal()
                } else {
                    v
                })
            })
            .collect::<Vec<u8>>()
    };
    let mut train = ImageSet {
        pixels: Vec::with_capacity(total * d),
        labels: Vec::with_capacity(total),
        n: total,
        channels: c,
        height: h,
        width: w,
    };
    let mut test = ImageSet {
        pixels: Vec::with_capacity(cells * d),
        labels: Vec::with_capacity(cells),
        n: cells,
        ..train.clone()
    };
    let mut factors = Factors {
        names: vec!["angle".into(), "shift".into()],
        circular: vec![true, false],
        periods: vec![360.0, 0.0],
        test: vec![],
        train: vec![],
    };
    for a in 0..angles {
        let deg = 360.0 * a as f64 / angles as f64;
        for s in 0..shifts {
            let px = shift_of(s, shifts, max_shift);
            let cell = (a * shifts + s) as u8;
            let clean = rotate_shift(img, c, h, w, deg, px);
            for _ in 0..copies {
                train.pixels.extend(noisy(&clean, &mut train_rng));
                train.labels.push(cell);
                factors.train.push(vec![deg, px]);
            }
            test.pixels.extend(noisy(&clean, &mut test_rng));
            test.labels.push(cell);
            factors.test.push(vec![deg, px]);
        }
    }
    write_folder(out, &train, &test, &factors, cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedlab_testkit::{idx_bytes, write_idx_dataset};

    /// An IDX folder of the given h × w training and test images (labels
    /// i % 10).
    fn write_images(dir: &Path, h: usize, w: usize, train: &[Vec<u8>], test: &[Vec<u8>]) {
        std::fs::create_dir_all(dir).unwrap();
        for (stem, imgs) in [("train", train), ("t10k", test)] {
            let n = imgs.len() as u32;
            let px: Vec<u8> = imgs.concat();
            let lab: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            std::fs::write(
                dir.join(format!("{stem}-images-idx3-ubyte")),
                idx_bytes(&[n, h as u32, w as u32], &px),
            )
            .unwrap();
            std::fs::write(
                dir.join(format!("{stem}-labels-idx1-ubyte")),
                idx_bytes(&[n], &lab),
            )
            .unwrap();
        }
    }

    fn dot(h: usize, w: usize, y: usize, x: usize, v: u8) -> Vec<u8> {
        let mut img = vec![0u8; h * w];
        img[y * w + x] = v;
        img
    }

    #[test]
    fn shift_moves_a_pixel_exactly_with_zero_fill() {
        let (h, w) = (5, 7);
        let img = dot(h, w, 2, 3, 200);
        for s in -3i64..=3 {
            let out = shift_whole(&img, 1, h, w, s);
            assert_eq!(out, dot(h, w, 2, (3 + s) as usize, 200), "shift {s}");
            // The bilinear path agrees on whole shifts.
            let out2: Vec<u8> = rotate_shift(&img, 1, h, w, 0.0, s as f64)
                .into_iter()
                .map(to_byte)
                .collect();
            assert_eq!(out2, out, "shift {s}");
        }
        // Off the edge: gone, nothing wraps around.
        assert!(shift_whole(&img, 1, h, w, 4).iter().all(|&v| v == 0));
        let full = vec![9u8; h * w];
        let out = shift_whole(&full, 1, h, w, -2);
        for y in 0..h {
            assert_eq!(&out[y * w..(y + 1) * w], &[9, 9, 9, 9, 9, 0, 0]);
        }
        // A half-pixel shift splits the pixel between two columns.
        let half = rotate_shift(&img, 1, h, w, 0.0, 0.5);
        assert_eq!((half[2 * w + 3], half[2 * w + 4]), (100.0, 100.0));
        assert_eq!(half.iter().sum::<f64>(), 200.0);
    }

    #[test]
    fn quarter_turn_matches_the_hand_rotated_image() {
        // An asymmetric 6 × 6 image: a ramp plus an L in a corner.
        let n = 6;
        let mut img: Vec<u8> = (0..n * n).map(|i| (i * 7 % 256) as u8).collect();
        img[1] = 255;
        img[2] = 255;
        img[n + 1] = 255;
        // Counter-clockwise as seen: out[y][x] = src[x][n − 1 − y].
        let mut want = vec![0u8; n * n];
        for y in 0..n {
            for x in 0..n {
                want[y * n + x] = img[x * n + (n - 1 - y)];
            }
        }
        let got = rotate_shift(&img, 1, n, n, 90.0, 0.0);
        for y in 1..n - 1 {
            for x in 1..n - 1 {
                let (g, e) = (got[y * n + x], want[y * n + x] as f64);
                assert!((g - e).abs() <= 1.0, "({y}, {x}): {g} vs {e}");
            }
        }
        // Four quarter turns give the image back; 180° is the reversal.
        let r180: Vec<u8> = rotate_shift(&img, 1, n, n, 180.0, 0.0)
            .into_iter()
            .map(to_byte)
            .collect();
        let rev: Vec<u8> = img.iter().rev().copied().collect();
        assert_eq!(r180, rev);
        let r360: Vec<u8> = rotate_shift(&img, 1, n, n, 360.0, 0.0)
            .into_iter()
            .map(to_byte)
            .collect();
        assert_eq!(r360, img);
        // A top-right pixel turns to the top-left.
        let corner = dot(n, n, 0, n - 1, 50);
        let t: Vec<u8> = rotate_shift(&corner, 1, n, n, 90.0, 0.0)
            .into_iter()
            .map(to_byte)
            .collect();
        assert_eq!(t, dot(n, n, 0, 0, 50));
    }

    #[test]
    fn shifted_folder_layout_and_factors() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        write_idx_dataset(&src, 7, 4, 8);
        let out = d.path().join("shifted");
        let sum = shifted(&src, &out, &[-2, 0, 3], Some(5), None).unwrap();
        assert_eq!(
            sum,
            Summary {
                train: 15,
                test: 12,
                classes: 10,
                path: out.clone()
            }
        );
        let ds = load_image_dataset(&out).unwrap();
        let srcds = load_image_dataset(&src).unwrap();
        assert_eq!((ds.train.n, ds.test.n), (15, 12));
        let f = read_factors(&out).unwrap().unwrap();
        assert_eq!(f.names, ["digit", "shift"]);
        assert_eq!(f.circular, [false, false]);
        for i in 0..5 {
            for (j, &s) in [-2i64, 0, 3].iter().enumerate() {
                let k = i * 3 + j;
                assert_eq!(ds.train.labels[k], srcds.train.labels[i]);
                assert_eq!(f.train[k], vec![srcds.train.labels[i] as f64, s as f64]);
                let img = &srcds.train.pixels[i * 64..(i + 1) * 64];
                assert_eq!(
                    &ds.train.pixels[k * 64..(k + 1) * 64],
                    &shift_whole(img, 1, 8, 8, s)[..]
                );
            }
        }
        assert_eq!(f.column("shift", true).unwrap()[..3], [-2.0, 0.0, 3.0]);
        // No leftovers beside it; a second run into the folder is refused.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let e = shifted(&src, &out, &[1], None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not empty"), "{e}");
        // An empty folder is fine.
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(shifted(&src, &empty, &[1], None, Some(2)).unwrap().test, 2);
        for (shifts, want) in [
            (&[][..], "no shifts"),
            (&[1, 1][..], "twice"),
            (&[8][..], "nothing of 8-pixel"),
        ] {
            let e = shifted(&src, &d.path().join("x"), shifts, None, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
        assert!(!d.path().join("x").exists());
    }

    #[test]
    fn variations_cells_copies_noise_and_factors() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let (h, w) = (9, 9);
        let imgs: Vec<Vec<u8>> = (0..3).map(|i| dot(h, w, 2, 4 + i, 255)).collect();
        write_images(&src, h, w, &imgs, &imgs[..1]);
        let out = d.path().join("var");
        let (angles, shifts, copies) = (4, 3, 2);
        let sum = variations(&src, &out, 1, angles, shifts, 2.0, copies, 3.0, 7).unwrap();
        assert_eq!(
            sum,
            Summary {
                train: 24,
                test: 12,
                classes: 12,
                path: out.clone()
            }
        );
        let ds = load_image_dataset(&out).unwrap();
        assert_eq!((ds.train.n, ds.test.n, ds.classes.len()), (24, 12, 12));
        let f = read_factors(&out).unwrap().unwrap();
        assert_eq!(f.names, ["angle", "shift"]);
        assert_eq!(
            (f.circular.clone(), f.periods.clone()),
            (vec![true, false], vec![360.0, 0.0])
        );
        let mut cell = 0;
        for a in 0..angles {
            for s in 0..shifts {
                let want = vec![90.0 * a as f64, [-2.0, 0.0, 2.0][s]];
                assert_eq!(ds.test.labels[cell], cell as u8);
                assert_eq!(f.test[cell], want);
                for k in 0..copies {
                    assert_eq!(ds.train.labels[cell * copies + k], cell as u8);
                    assert_eq!(f.train[cell * copies + k], want);
                }
                cell += 1;
            }
        }
        // Image 1 has its dot at (2, 5); angle 0, shift +2 → (2, 7) under
        // noise of sd 3: the brightest pixel of each copy.
        let cell = 2;
        for img in [
            &ds.train.pixels[(cell * copies) * 81..(cell * copies + 1) * 81],
            &ds.test.pixels[cell * 81..(cell + 1) * 81],
        ] {
            let top = (0..81).max_by_key(|&i| img[i]).unwrap();
            assert_eq!(top, 2 * 9 + 7);
        }
        // Copies differ (noise), the test copy too; the seed repeats them.
        let px = &ds.train.pixels;
        assert_ne!(px[..81], px[81..162]);
        assert_ne!(px[..81], ds.test.pixels[..81]);
        let again = d.path().join("again");
        variations(&src, &again, 1, angles, shifts, 2.0, copies, 3.0, 7).unwrap();
        let ds2 = load_image_dataset(&again).unwrap();
        assert_eq!(ds2.train.pixels, ds.train.pixels);
        assert_eq!(ds2.test.pixels, ds.test.pixels);
        // Without noise, copies equal the clean cell.
        let clean = d.path().join("clean");
        variations(&src, &clean, 0, 2, 2, 1.0, 3, 0.0, 0).unwrap();
        let ds3 = load_image_dataset(&clean).unwrap();
        assert_eq!(ds3.train.pixels[..81], ds3.train.pixels[162..243]);
        assert_eq!(ds3.train.pixels[..81], ds3.test.pixels[..81]);
        // 180°, shift +1 (cell 3): the dot at (2, 4) turns to (6, 4), then (6, 5).
        let t = &ds3.test.pixels[3 * 81..4 * 81];
        assert_eq!(t[6 * 9 + 5], 255);
        assert_eq!(t.iter().map(|&v| v as u32).sum::<u32>(), 255);
    }

    #[test]
    fn variations_refusals() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        write_idx_dataset(&src, 3, 2, 8);
        let o = d.path().join("o");
        let cases: Vec<(Result<Summary>, &str)> = vec![
            (variations(&src, &o, 0, 1, 9, 2.0, 1, 1.0, 0), "at least 2"),
            (variations(&src, &o, 0, 18, 1, 2.0, 1, 1.0, 0), "at least 2"),
            (
                variations(&src, &o, 3, 4, 4, 2.0, 1, 1.0, 0),
                "3 training images",
            ),
            (
                variations(&src, &o, 0, 18, 15, 2.0, 1, 1.0, 0),
                "more than 256 cells",
            ),
            (variations(&src, &o, 0, 4, 4, 2.0, 0, 1.0, 0), "copies"),
            (variations(&src, &o, 0, 4, 4, 2.0, 1, -1.0, 0), "noise"),
            (
                variations(&src, &o, 0, 4, 4, f64::NAN, 1, 1.0, 0),
                "max shift",
            ),
            (variations(&src, &o, 0, 4, 4, 8.0, 1, 1.0, 0), "max shift"),
            (
                variations(&src, &d.path().join("my-fashion"), 0, 4, 4, 2.0, 1, 1.0, 0),
                "fashion",
            ),
        ];
        for (r, want) in cases {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(!o.exists());
        // 256 cells fit the labels (16 × 16); a non-empty folder is refused.
        let big = d.path().join("big");
        assert_eq!(
            variations(&src, &big, 0, 16, 16, 2.0, 1, 0.0, 0)
                .unwrap()
                .classes,
            256
        );
        assert_eq!(load_image_dataset(&big).unwrap().classes.len(), 256);
        let e = variations(&src, &big, 0, 2, 2, 2.0, 1, 0.0, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not empty"), "{e}");
    }

    #[test]
    fn factors_round_trip_and_corrupt_files_named() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        write_idx_dataset(&src, 2, 1, 6);
        // No factors.json: None.
        assert_eq!(read_factors(&src).unwrap(), None);
        let out = d.path().join("s");
        shifted(&src, &out, &[-1, 1], None, None).unwrap();
        let f = read_factors(&out).unwrap().unwrap();
        assert_eq!((f.train.len(), f.test.len()), (4, 2));
        let path = out.join(FACTORS_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(serde_json::from_str::<Factors>(&text).unwrap(), f);
        assert!(
            text.starts_with("{\n  \"names\": [\"digit\",\"shift\"],\n"),
            "{text}"
        );
        assert_eq!(f.to_text().unwrap(), text);
        // Fractional values survive the trip exactly.
        let mut g = f.clone();
        g.train[0][1] = 0.1 + 0.2;
        g.circular[1] = true;
        g.periods[1] = 2.5;
        std::fs::write(&path, g.to_text().unwrap()).unwrap();
        assert_eq!(read_factors(&out).unwrap().unwrap(), g);
        let bad = |edit: &dyn Fn(&mut Factors)| {
            let mut g = f.clone();
            edit(&mut g);
            g.to_text().unwrap()
        };
        let cases: Vec<(String, &str)> = vec![
            ("{ not json".into(), "not a factors file"),
            ("{\"names\": [\"a\"]}".into(), "not a factors file"),
            (text.replacen("-1.0", "1e999", 1), "number out of range"),
            (text.replacen("-1.0", "NaN", 1), "not a factors file"),
            (
                bad(&|g| {
                    g.train.pop();
                }),
                "3 training rows for the 4 training images",
            ),
            (
                bad(&|g| g.test.push(vec![0.0, 0.0])),
                "3 test rows for the 2 test images",
            ),
            (
                bad(&|g| g.train[2].push(1.0)),
                "training row 3: 3 values for 2 factors",
            ),
            (
                bad(&|g| {
                    g.periods.pop();
                }),
                "one of each per factor",
            ),
            (
                bad(&|g| g.circular[0] = true),
                "circular factor `digit` has period 0",
            ),
            (bad(&|g| g.names[1] = "digit".into()), "named twice"),
        ];
        for (content, want) in cases {
            std::fs::write(&path, &content).unwrap();
            let e = read_factors(&out).unwrap_err().to_string();
            assert!(
                e.contains("factors.json") && e.contains(want),
                "{want}: {e}"
            );
        }
        // A non-finite value that reached the struct is named with its row.
        let mut g = f.clone();
        g.test[1][0] = f64::INFINITY;
        let e = g.check(4, 2).unwrap_err();
        assert!(e.contains("test row 2, factor `digit`"), "{e}");
        // Unreadable as text.
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        let e = read_factors(&out).unwrap_err().to_string();
        assert!(
            e.contains("factors.json") && e.contains("cannot read"),
            "{e}"
        );
    }
}
