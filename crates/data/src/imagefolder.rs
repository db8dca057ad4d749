//! Folders of PNG and JPEG images in class sub-folders, the convention of
//! torchvision's `ImageFolder` (how CIFAR-10 PNGs, Kaggle dumps and a
//! user's own photos come):
//!
//! ```text
//! DIR/train/<class>/*.png|jpg   DIR/test/<class>/…   (or DIR/val/<class>/…)
//! DIR/<class>/*.png|jpg         (no split: every fifth image of a class, in name order, is the test set)
//! ```
//!
//! The rules, each said in the dataset's notes when it applies:
//! - classes are the class folders' names in sorted order (label 0 is the
//!   first); a class folder without an image is an error, and so is a test
//!   class the training set lacks; hidden entries are skipped, and only the
//!   files directly in a class folder are read;
//! - a file is an image by its extension (`.png`, `.jpg`, `.jpeg`, any case),
//!   decoded by its content; one that does not decode is an error naming it;
//!   other files are skipped and counted;
//! - channels: 1 when every image is grayscale, else 3 (a grayscale image is
//!   repeated over the three channels; alpha is dropped; 16-bit samples are
//!   reduced to 8 bits);
//! - size: the one asked for (`--image-size`), else the most common
//!   height × width of all images (ties: the larger area); an image of
//!   another size is scaled, keeping its aspect ratio (bilinear), until it
//!   covers that size, then centre-cropped to it;
//! - the test images are ordered by turns, one of each class (in name
//!   order within a class) before the next of any: the first n test images
//!   then hold every class in proportion, as the generative metrics, which
//!   read the first n, need;
//! - the decoded images are kept in a cache outside the folder (see
//!   [`cache_root`]: `~/.cache/embedlab/images/`, one file per folder,
//!   named by its absolute path's hash), keyed by every image's name, size
//!   and modification time: a second load reads no image file, and a
//!   changed, added or removed image rebuilds it. The image folder itself
//!   is never written (it may be read-only, or shared); without a writable
//!   cache the images are decoded every time (noted).
use crate::atomic::write_atomic;
use crate::error::{DataError, Result};
use crate::images::{ImageDataset, ImageSet, MAX_SIDE};
use image::{DynamicImage, ImageDecoder, ImageReader};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The environment variable naming the folder of decoded-image caches.
pub const CACHE_ENV: &str = "EMBEDLAB_IMAGE_CACHE";

/// The folder of decoded-image caches: `$EMBEDLAB_IMAGE_CACHE`, else
/// `$XDG_CACHE_HOME/embedlab/images`, else `$HOME/.cache/embedlab/images`
/// (None when none is set). The unit tests use a folder under the system's
/// temporary folder.
pub fn cache_root() -> Option<PathBuf> {
    if cfg!(test) {
        return Some(std::env::temp_dir().join("embedlab-test-image-cache"));
    }
    let set = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    set(CACHE_ENV)
        .or_else(|| set("XDG_CACHE_HOME").map(|c| c.join("embedlab/images")))
        .or_else(|| set("HOME").map(|h| h.join(".cache/embedlab/images")))
}

/// The cache file of the image folder `dir` (None without a cache root).
pub fn cache_file(dir: &Path) -> Option<PathBuf> {
    let abs = crate::fingerprint::absolute(dir);
    let h = blake3::hash(abs.as_os_str().as_encoded_bytes()).to_hex();
    cache_root().map(|r| r.join(format!("{}.cache", &h[..32])))
}
const MAGIC: &[u8; 16] = b"EMBEDLAB-IMAGES\n";
/// Bumped whenever the decoding rules change, so that old caches rebuild.
const RULES: u32 = 1;
/// Labels are bytes.
const MAX_CLASSES: usize = 256;

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn is_image_name(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg"))
}

/// The visible entries of `dir`, sorted by name.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| !is_hidden(p))
        .collect();
    v.sort();
    Ok(v)
}

fn subfolders(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(entries(dir)?.into_iter().filter(|p| p.is_dir()).collect())
}

fn split_folder(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_dir())
}

/// Whether `dir` looks like an image folder: a `train/` folder of class
/// folders, or class folders of its own holding at least one image file.
pub fn is_image_folder(dir: &Path) -> bool {
    if split_folder(dir, &["train"]).is_some() {
        return true;
    }
    subfolders(dir).is_ok_and(|classes| {
        classes
            .iter()
            .any(|c| entries(c).is_ok_and(|fs| fs.iter().any(|f| is_image_name(f))))
    })
}

/// One image file and its label.
struct Item {
    path: PathBuf,
    label: u8,
}

/// The images of each class folder of `root`, labelled by `classes` (the
/// training classes, or None to take `root`'s own), and the count of files
/// skipped for their extension.
fn list(root: &Path, classes: Option<&[String]>) -> Result<(Vec<String>, Vec<Item>, usize)> {
    let folders = subfolders(root)?;
    if folders.is_empty() {
        return Err(DataError::format(
            root,
            "no class folders: expected one sub-folder of images a class",
        ));
    }
    let names: Vec<String> = folders
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    let classes: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => names.clone(),
    };
    if classes.len() > MAX_CLASSES {
        return Err(DataError::format(
            root,
            format!(
                "{} class folders: at most {MAX_CLASSES} classes are supported",
                classes.len()
            ),
        ));
    }
    let mut items = vec![];
    let mut skipped = 0;
    for (folder, name) in folders.iter().zip(&names) {
        let Some(label) = classes.iter().position(|c| c == name) else {
            return Err(DataError::format(
                folder,
                format!(
                    "class '{name}' is not one of the training set's {} classes",
                    classes.len()
                ),
            ));
        };
        let files = entries(folder)?;
        let before = items.len();
        for f in files.into_iter().filter(|f| !f.is_dir()) {
            if is_image_name(&f) {
                items.push(Item {
                    path: f,
                    label: label as u8,
                });
            } else {
                skipped += 1;
            }
        }
        if items.len() == before {
            return Err(DataError::format(
                folder,
                format!("class '{name}' holds no PNG or JPEG image"),
            ));
        }
    }
    Ok((classes, items, skipped))
}

/// The key of the cache: the rules and every image's name, size and
/// modification time.
fn cache_key(root: &Path, items: &[&Item], size: Option<(usize, usize)>) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update(&RULES.to_le_bytes());
    if let Some((a, b)) = size {
        h.update(format!("size {a}x{b}").as_bytes());
    }
    for it in items {
        let m = std::fs::metadata(&it.path).map_err(|e| DataError::io(&it.path, e))?;
        let rel = it.path.strip_prefix(root).unwrap_or(&it.path);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(&[0, it.label]);
        h.update(&m.len().to_le_bytes());
        let t = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        h.update(&t.to_le_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

/// What an image's header says.
struct Header {
    width: u32,
    height: u32,
    gray: bool,
    deep: bool,
}

fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
    let mut r = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let mut limits = image::Limits::default();
    // A larger image is named, not decoded.
    limits.max_image_width = Some(MAX_SIDE as u32);
    limits.max_image_height = Some(MAX_SIDE as u32);
    r.limits(limits);
    Ok(r)
}

fn not_an_image(path: &Path, e: image::ImageError) -> DataError {
    DataError::format(path, format!("not a readable PNG or JPEG image: {e}"))
}

fn header(path: &Path) -> Result<Header> {
    let d = reader(path)?
        .into_decoder()
        .map_err(|e| not_an_image(path, e))?;
    let (width, height) = d.dimensions();
    let c = d.color_type();
    Ok(Header {
        width,
        height,
        gray: !c.has_color(),
        deep: c.bytes_per_pixel() / c.channel_count() as u8 > 1,
    })
}

/// Decodes one image into channel-major bytes of `channels` × `h` × `w`.
fn decode(path: &Path, channels: usize, h: u32, w: u32) -> Result<Vec<u8>> {
    let img = reader(path)?.decode().map_err(|e| not_an_image(path, e))?;
    let img = fit(img, h, w);
    Ok(if channels == 1 {
        img.to_luma8().into_raw()
    } else {
        let rgb = img.to_rgb8();
        let hw = (h * w) as usize;
        let mut out = vec![0u8; 3 * hw];
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * hw + i] = px.0[c];
            }
        }
        out
    })
}

/// Scales `img` (aspect kept, bilinear) until it covers `h` × `w`, then
/// centre-crops it to that size; an image of that size is left as it is.
fn fit(img: DynamicImage, h: u32, w: u32) -> DynamicImage {
    if (img.height(), img.width()) == (h, w) {
        return img;
    }
    let s = (h as f64 / img.height() as f64).max(w as f64 / img.width() as f64);
    let nh = ((img.height() as f64 * s).round() as u32).max(h);
    let nw = ((img.width() as f64 * s).round() as u32).max(w);
    let scaled = if (nh, nw) == (img.height(), img.width()) {
        img
    } else {
        img.resize_exact(nw, nh, image::imageops::FilterType::Triangle)
    };
    scaled.crop_imm((nw - w) / 2, (nh - h) / 2, w, h)
}

#[derive(Serialize, Deserialize)]
struct CacheHead {
    rules: u32,
    key: String,
    name: String,
    classes: Vec<String>,
    notes: Vec<String>,
    channels: usize,
    height: usize,
    width: usize,
    train: usize,
    test: usize,
}

fn write_cache(path: &Path, key: &str, ds: &ImageDataset) -> Result<()> {
    let head = CacheHead {
        rules: RULES,
        key: key.into(),
        name: ds.name.clone(),
        classes: ds.classes.clone(),
        notes: ds.notes.clone(),
        channels: ds.train.channels,
        height: ds.train.height,
        width: ds.train.width,
        train: ds.train.n,
        test: ds.test.n,
    };
    let json = serde_json::to_vec(&head)
        .map_err(|e| DataError::format(path, format!("cannot serialise: {e}")))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    write_atomic(path, |w| {
        w.write_all(MAGIC)?;
        w.write_all(&(json.len() as u64).to_le_bytes())?;
        w.write_all(&json)?;
        for set in [&ds.train, &ds.test] {
            w.write_all(&set.pixels)?;
            w.write_all(&set.labels)?;
        }
        Ok(())
    })
}

/// The cached dataset when the cache exists and was made from these very
/// files under these rules; None otherwise (a corrupt cache is rebuilt).
fn read_cache(path: &Path, key: &str, source: &Path) -> Option<ImageDataset> {
    let file = std::fs::File::open(path).ok()?;
    let file_len = file.metadata().ok()?.len();
    let mut f = std::io::BufReader::new(file);
    let mut magic = [0u8; 16];
    f.read_exact(&mut magic).ok()?;
    if &magic != MAGIC {
        return None;
    }
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > file_len {
        return None;
    }
    let mut json = vec![0u8; len as usize];
    f.read_exact(&mut json).ok()?;
    let head: CacheHead = serde_json::from_slice(&json).ok()?;
    if head.rules != RULES || head.key != key {
        return None;
    }
    // The file is exactly its header and the sizes it announces (a
    // truncated or padded cache is not trusted), checked before anything
    // of that size is allocated.
    let dim = head.channels * head.height * head.width;
    let body = (head.train.checked_add(head.test)?).checked_mul(dim.checked_add(1)?)?;
    if (MAGIC.len() as u64 + 8 + len).checked_add(body as u64)? != file_len {
        return None;
    }
    let mut set = |n: usize| -> Option<ImageSet> {
        let mut pixels = vec![0u8; n * dim];
        f.read_exact(&mut pixels).ok()?;
        let mut labels = vec![0u8; n];
        f.read_exact(&mut labels).ok()?;
        Some(ImageSet {
            pixels,
            labels,
            n,
            channels: head.channels,
            height: head.height,
            width: head.width,
        })
    };
    let train = set(head.train)?;
    let test = set(head.test)?;
    let mut notes = head.notes;
    notes.push(format!(
        "decoded images read from the cache {}",
        path.display()
    ));
    Some(ImageDataset {
        name: head.name,
        train,
        test,
        classes: head.classes,
        source: source.to_path_buf(),
        notes,
    })
}

/// `items` reordered by turns over the classes: the first of each class,
/// then the second of each, and so on (a class that runs out is skipped).
fn by_turns(items: Vec<Item>, classes: usize) -> Vec<Item> {
    let mut queues: Vec<std::collections::VecDeque<Item>> =
        (0..classes).map(|_| Default::default()).collect();
    let n = items.len();
    for it in items {
        queues[it.label as usize].push_back(it);
    }
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        for q in &mut queues {
            out.extend(q.pop_front());
        }
    }
    out
}

/// Reads an image folder (see the module's rules), every image at `size`
/// (height, width) when it is given, else at the most common size.
pub fn read_image_folder(dir: &Path, size: Option<(usize, usize)>) -> Result<ImageDataset> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string());
    let mut notes = vec![];
    let (classes, train_items, test_items, skipped) = match split_folder(dir, &["train"]) {
        Some(train_dir) => {
            let (classes, train, s1) = list(&train_dir, None)?;
            let Some(test_dir) = split_folder(dir, &["test", "val"]) else {
                return Err(DataError::format(
                    dir,
                    "a train/ folder without a test/ (or val/) folder beside it",
                ));
            };
            let (_, test, s2) = list(&test_dir, Some(&classes))?;
            (classes, train, test, s1 + s2)
        }
        None => {
            let (classes, all, s) = list(dir, None)?;
            // Every fifth image of each class, in name order, is held out.
            let mut seen = vec![0usize; classes.len()];
            let (mut train, mut test) = (vec![], vec![]);
            for it in all {
                let k = &mut seen[it.label as usize];
                if *k % 5 == 4 {
                    test.push(it);
                } else {
                    train.push(it);
                }
                *k += 1;
            }
            if test.is_empty() {
                return Err(DataError::format(
                    dir,
                    "no class has 5 images, so no test split can be held out: add more images or a train/ and test/ folder",
                ));
            }
            notes.push(format!(
                "no train/ and test/ folders: every fifth image of each class (in name order) is the test set ({} of {})",
                test.len(),
                test.len() + train.len()
            ));
            (classes, train, test, s)
        }
    };
    let test_items = by_turns(test_items, classes.len());
    if skipped > 0 {
        notes.push(format!(
            "{skipped} files in the class folders are not .png/.jpg/.jpeg and were skipped"
        ));
    }
    let all: Vec<&Item> = train_items.iter().chain(&test_items).collect();
    let key = cache_key(dir, &all, size)?;
    let cache = cache_file(dir);
    if let Some(ds) = cache.as_ref().and_then(|c| read_cache(c, &key, dir)) {
        return Ok(ds);
    }
    let heads: Vec<Header> = all
        .par_iter()
        .map(|it| header(&it.path))
        .collect::<Result<_>>()?;
    let channels = if heads.iter().all(|h| h.gray) { 1 } else { 3 };
    let mut sizes: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for h in &heads {
        *sizes.entry((h.height, h.width)).or_default() += 1;
    }
    let (height, width, why) = match size {
        Some((h, w)) => {
            if !(1..=MAX_SIDE).contains(&h) || !(1..=MAX_SIDE).contains(&w) {
                return Err(DataError::Invalid(format!(
                    "image size {h}×{w}: each side must be 1 to {MAX_SIDE}"
                )));
            }
            (h as u32, w as u32, "the size asked for")
        }
        None => {
            let (&(h, w), _) = sizes
                .iter()
                .max_by_key(|(&(h, w), &n)| (n, h as u64 * w as u64))
                .expect("at least one image");
            (h, w, "the most common size")
        }
    };
    let others = all.len() - sizes.get(&(height, width)).copied().unwrap_or(0);
    if others > 0 {
        notes.push(format!(
            "{others} of {} images are not {height}×{width} ({why}): scaled, aspect kept (bilinear), to cover {height}×{width} and centre-cropped",
            all.len()
        ));
    }
    let gray = heads.iter().filter(|h| h.gray).count();
    if channels == 3 && gray > 0 {
        notes.push(format!(
            "{gray} grayscale images among colour ones: repeated over the 3 channels"
        ));
    }
    let deep = heads.iter().filter(|h| h.deep).count();
    if deep > 0 {
        notes.push(format!(
            "{deep} images with 16-bit samples reduced to 8 bits"
        ));
    }
    let pixels: Vec<Vec<u8>> = all
        .par_iter()
        .map(|it| decode(&it.path, channels, height, width))
        .collect::<Result<_>>()?;
    let set = |range: std::ops::Range<usize>| ImageSet {
        pixels: pixels[range.clone()].concat(),
        labels: all[range.clone()].iter().map(|it| it.label).collect(),
        n: range.len(),
        channels,
        height: height as usize,
        width: width as usize,
    };
    let n_train = train_items.len();
    let mut ds = ImageDataset {
        name,
        train: set(0..n_train),
        test: set(n_train..all.len()),
        classes,
        source: dir.to_path_buf(),
        notes,
    };
    let written = match &cache {
        Some(c) => write_cache(c, &key, &ds).map(|()| c),
        None => Err(DataError::Invalid(format!(
            "no cache folder: set {CACHE_ENV}, XDG_CACHE_HOME or HOME"
        ))),
    };
    match written {
        Ok(c) => ds.notes.push(format!(
            "{} images decoded and cached in {}",
            all.len(),
            c.display()
        )),
        Err(e) => ds.notes.push(format!(
            "{} images decoded; not cached ({e}): they will be decoded again next time",
            all.len()
        )),
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageBuffer, Luma, RgbImage};

    fn gray(path: &Path, h: u32, w: u32, f: impl Fn(u32, u32) -> u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        GrayImage::from_fn(w, h, |x, y| Luma([f(y, x)]))
            .save(path)
            .unwrap();
    }

    /// train/{cat,ant}/ and test/{ant,cat}/: 3 and 2 grayscale 5×6 images a
    /// class whose pixels encode (class, index, position).
    fn tree(root: &Path) {
        for (split, n) in [("train", 3u32), ("test", 2)] {
            for (c, class) in ["ant", "cat"].iter().enumerate() {
                for i in 0..n {
                    let v = |y: u32, x: u32| (c as u32 * 100 + i * 10 + y * 6 + x) as u8;
                    gray(
                        &root.join(split).join(class).join(format!("{i}.png")),
                        5,
                        6,
                        v,
                    );
                }
            }
        }
    }

    #[test]
    fn train_and_test_folders_are_read_exactly_in_sorted_class_order() {
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        std::fs::write(d.path().join("train/ant/README.txt"), "not an image").unwrap();
        std::fs::write(d.path().join("train/cat/.DS_Store"), "hidden").unwrap();
        assert!(is_image_folder(d.path()));
        let ds = crate::load_image_dataset(d.path()).unwrap();
        assert_eq!(ds.classes, ["ant", "cat"]);
        assert_eq!((ds.train.n, ds.test.n), (6, 4));
        assert_eq!(
            (ds.train.channels, ds.train.height, ds.train.width),
            (1, 5, 6)
        );
        assert_eq!(ds.train.labels, [0, 0, 0, 1, 1, 1]);
        // The test images by turns over the classes.
        assert_eq!(ds.test.labels, [0, 1, 0, 1]);
        // train/cat/1.png, pixel (y 2, x 3): 100 + 10 + 15.
        let dim = 30;
        assert_eq!(ds.train.pixels[4 * dim + 2 * 6 + 3], 125);
        assert_eq!(ds.test.pixels[dim], 100, "test/cat/0.png is second");
        assert_eq!(ds.test.pixels[3 * dim], 110);
        assert!(
            ds.notes
                .iter()
                .any(|n| n.contains("1 files") && n.contains("skipped")),
            "{:?}",
            ds.notes
        );
    }

    #[test]
    fn colour_among_grayscale_gives_three_channels_in_channel_major_order() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for i in 0..5 {
            gray(&r.join(format!("g/{i}.png")), 2, 2, |y, x| {
                (y * 2 + x + 10 * i) as u8
            });
        }
        std::fs::create_dir_all(r.join("c")).unwrap();
        RgbImage::from_fn(2, 2, |x, y| image::Rgb([(y * 2 + x) as u8, 50, 200]))
            .save(r.join("c/0.png"))
            .unwrap();
        for i in 1..5 {
            RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3]))
                .save(r.join(format!("c/{i}.png")))
                .unwrap();
        }
        let ds = read_image_folder(r, None).unwrap();
        assert_eq!(ds.train.channels, 3);
        // c/0.png is the first training image of class 0 ("c").
        assert_eq!(
            &ds.train.pixels[..12],
            [0, 1, 2, 3, 50, 50, 50, 50, 200, 200, 200, 200]
        );
        // g/0.png, the first image of class 1: its gray repeated 3 times.
        let g0 = 4 * 12;
        assert_eq!(
            &ds.train.pixels[g0..g0 + 12],
            [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]
        );
        assert!(
            ds.notes.iter().any(|n| n.contains("5 grayscale images")),
            "{:?}",
            ds.notes
        );
        // Held out: the fifth of each class.
        assert_eq!((ds.train.n, ds.test.n), (8, 2));
        assert_eq!(ds.test.labels, [0, 1]);
        assert_eq!(&ds.test.pixels[12..16], [40, 41, 42, 43]);
    }

    #[test]
    fn other_sizes_are_scaled_to_cover_and_centre_cropped() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for i in 0..4 {
            gray(&r.join(format!("train/a/{i}.png")), 4, 4, |_, _| 7);
            gray(&r.join(format!("test/a/{i}.png")), 4, 4, |_, _| 7);
        }
        // 8 high, 4 wide: covers 4×4 unscaled; the middle rows 2–5 are kept.
        gray(&r.join("train/a/tall.png"), 8, 4, |y, _| {
            if y < 4 {
                0
            } else {
                255
            }
        });
        // 8×8 of one value: scaled to 4×4, the value stays.
        gray(&r.join("train/a/big.png"), 8, 8, |_, _| 200);
        let ds = read_image_folder(r, None).unwrap();
        assert_eq!((ds.train.height, ds.train.width), (4, 4));
        // Sorted names: 0 1 2 3 big tall.
        let img = |k: usize| &ds.train.pixels[k * 16..(k + 1) * 16];
        assert!(img(4).iter().all(|&v| v == 200), "{:?}", img(4));
        assert_eq!(img(5)[..8], [0; 8]);
        assert_eq!(img(5)[8..], [255; 8]);
        assert!(
            ds.notes
                .iter()
                .any(|n| n.starts_with("2 of 10 images are not 4×4")),
            "{:?}",
            ds.notes
        );
    }

    #[test]
    fn an_asked_size_applies_to_every_image_and_keys_the_cache() {
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        let native = read_image_folder(d.path(), None).unwrap();
        let small = read_image_folder(d.path(), Some((3, 4))).unwrap();
        assert_eq!((small.train.height, small.train.width), (3, 4));
        assert_eq!(small.train.pixels.len(), 6 * 12);
        assert!(
            small
                .notes
                .iter()
                .any(|n| n.starts_with("10 of 10 images are not 3×4 (the size asked for)")),
            "{:?}",
            small.notes
        );
        // Not the native size's cache, and back at the native size not the small one's.
        assert!(!small
            .notes
            .iter()
            .any(|n| n.contains("read from the cache")));
        let again = read_image_folder(d.path(), None).unwrap();
        assert_eq!(again.train.pixels, native.train.pixels);
        let e = read_image_folder(d.path(), Some((0, 4)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("each side must be 1 to 4096"), "{e}");
    }

    #[test]
    fn bad_files_empty_classes_and_unknown_test_classes_are_named() {
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        let bad = d.path().join("train/cat/broken.png");
        std::fs::write(&bad, b"\x89PNG but then nothing").unwrap();
        let e = read_image_folder(d.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("broken.png") && e.contains("not a readable"),
            "{e}"
        );
        std::fs::remove_file(&bad).unwrap();

        std::fs::create_dir_all(d.path().join("train/dog")).unwrap();
        std::fs::write(d.path().join("train/dog/notes.txt"), "x").unwrap();
        let e = read_image_folder(d.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("train/dog") && e.contains("holds no PNG or JPEG"),
            "{e}"
        );
        std::fs::remove_dir_all(d.path().join("train/dog")).unwrap();

        gray(&d.path().join("test/emu/0.png"), 5, 6, |_, _| 1);
        let e = read_image_folder(d.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("test/emu") && e.contains("not one of the training set's 2 classes"),
            "{e}"
        );
        std::fs::remove_dir_all(d.path().join("test/emu")).unwrap();

        std::fs::remove_dir_all(d.path().join("test")).unwrap();
        let e = read_image_folder(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("without a test/"), "{e}");

        let few = tempfile::tempdir().unwrap();
        gray(&few.path().join("a/0.png"), 2, 2, |_, _| 1);
        let e = read_image_folder(few.path(), None).unwrap_err().to_string();
        assert!(e.contains("no class has 5 images"), "{e}");
    }

    #[test]
    fn jpeg_and_16_bit_png_are_decoded() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for i in 0..5 {
            gray(&r.join(format!("j/{i}.jpg")), 8, 8, |_, _| 100);
        }
        std::fs::create_dir_all(r.join("p")).unwrap();
        for i in 0..5 {
            ImageBuffer::<Luma<u16>, Vec<u16>>::from_pixel(8, 8, Luma([65535]))
                .save(r.join(format!("p/{i}.png")))
                .unwrap();
        }
        let ds = read_image_folder(r, None).unwrap();
        assert_eq!(ds.train.channels, 1);
        let (jpeg, png) = (&ds.train.pixels[..64], &ds.train.pixels[4 * 64..5 * 64]);
        assert!(jpeg.iter().all(|&v| v.abs_diff(100) <= 3), "{jpeg:?}");
        assert!(png.iter().all(|&v| v == 255), "{png:?}");
        assert!(
            ds.notes.iter().any(|n| n.contains("5 images with 16-bit")),
            "{:?}",
            ds.notes
        );
    }

    #[test]
    fn the_cache_is_read_back_and_rebuilt_when_an_image_changes() {
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        let first = read_image_folder(d.path(), None).unwrap();
        let c = cache_file(d.path()).unwrap();
        assert!(c.is_file());
        assert!(
            !std::fs::read_dir(d.path())
                .unwrap()
                .any(|e| e.unwrap().path().is_file()),
            "nothing is written into the image folder"
        );
        assert!(first.notes.iter().any(|n| n.contains("decoded and cached")));
        let again = read_image_folder(d.path(), None).unwrap();
        assert!(again
            .notes
            .iter()
            .any(|n| n.contains("read from the cache")));
        assert_eq!(again.train.pixels, first.train.pixels);
        assert_eq!(again.test.pixels, first.test.pixels);
        assert_eq!(
            (again.classes, again.test.labels),
            (first.classes, first.test.labels)
        );
        // A changed image (new content, a later time): decoded again.
        let p = d.path().join("train/ant/0.png");
        gray(&p, 5, 6, |_, _| 99);
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let changed = read_image_folder(d.path(), None).unwrap();
        assert!(!changed
            .notes
            .iter()
            .any(|n| n.contains("read from the cache")));
        assert_eq!(changed.train.pixels[0], 99);
        // A truncated cache is not trusted: rebuilt.
        let b = std::fs::read(&c).unwrap();
        std::fs::write(&c, &b[..b.len() - 3]).unwrap();
        let rebuilt = read_image_folder(d.path(), None).unwrap();
        assert!(rebuilt
            .notes
            .iter()
            .any(|n| n.contains("decoded and cached")));
        assert_eq!(rebuilt.train.pixels, changed.train.pixels);
    }
}
