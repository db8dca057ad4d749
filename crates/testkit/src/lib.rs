//! embedlab's shared test kit (a dev-dependency of the other crates' unit and
//! integration tests): tiny generated datasets in every image format, word
//! vectors with a known map between them, a runner for the `embedlab`
//! binary, and readers of run folders.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

/// libtorch's generator is global: tests that seed it take this lock so
/// that they run one at a time within a test binary.
pub fn seeded() -> MutexGuard<'static, ()> {
    static SEEDED: Mutex<()> = Mutex::new(());
    SEEDED.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------- images

/// An IDX file's bytes (unsigned bytes, the given dimensions).
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// `n` images of `size`×`size` of four classes (a bright bar in one of four
/// places, with noise), class `i % 4`, as (pixels, labels). Deterministic.
pub fn bars(n: u32, size: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f64 / 1000.0
    };
    let band = (size / 4).max(1);
    let mut px = Vec::with_capacity(n as usize * size * size);
    let mut lab = Vec::with_capacity(n as usize);
    for i in 0..n {
        let c = (i % 4) as usize;
        lab.push(c as u8);
        for r in 0..size {
            for col in 0..size {
                let on = (r / band == c) || (col / band == c && r % 2 == 0);
                let v = if on { 0.85 + 0.15 * rnd() } else { 0.1 * rnd() };
                px.push((v * 255.0) as u8);
            }
        }
    }
    (px, lab)
}

/// An MNIST-format IDX folder of bars: `n_train` training and `n_test`
/// test images of `size`×`size`.
pub fn write_idx_dataset(dir: &Path, n_train: u32, n_test: u32, size: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (stem, n, seed) in [("train", n_train, 1), ("t10k", n_test, 2)] {
        let (px, lab) = bars(n, size, seed);
        let s = size as u32;
        std::fs::write(
            dir.join(format!("{stem}-images-idx3-ubyte")),
            idx_bytes(&[n, s, s], &px),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{stem}-labels-idx1-ubyte")),
            idx_bytes(&[n], &lab),
        )
        .unwrap();
    }
}

/// An image folder of grayscale PNG bars: `train/class-<c>/<i>.png` and
/// `test/class-<c>/<i>.png`, 4 classes, `size`×`size` pixels.
pub fn write_image_folder(dir: &Path, n_train: u32, n_test: u32, size: usize) {
    for (split, n, seed) in [("train", n_train, 1), ("test", n_test, 2)] {
        let (px, lab) = bars(n, size, seed);
        for i in 0..n as usize {
            let folder = dir.join(split).join(format!("class-{}", lab[i]));
            std::fs::create_dir_all(&folder).unwrap();
            let img = image::GrayImage::from_raw(
                size as u32,
                size as u32,
                px[i * size * size..(i + 1) * size * size].to_vec(),
            )
            .unwrap();
            img.save(folder.join(format!("{i:05}.png"))).unwrap();
        }
    }
}

/// CIFAR-10 binary batches of 32×32×3 bars (colour by class):
/// `data_batch_1..=batches` of `per_batch` records and `test_batch`.
pub fn write_cifar(dir: &Path, batches: usize, per_batch: u32, test: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let record = |i: u32| -> Vec<u8> {
        let (px, lab) = bars(1, 32, i as u64 + 7);
        let c = (i % 4) as usize;
        let mut r = vec![lab[0].max(c as u8)];
        for ch in 0..3 {
            for p in &px {
                r.push(if ch == c % 3 { *p } else { p / 3 });
            }
        }
        r
    };
    for b in 1..=batches {
        let bytes: Vec<u8> = (0..per_batch)
            .flat_map(|i| record(i + 1000 * b as u32))
            .collect();
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    let bytes: Vec<u8> = (0..test).flat_map(record).collect();
    std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
}

/// A gzipped image CSV (label first, no header) of `n` bars of 28×28.
pub fn write_image_csv(path: &Path, n: u32) {
    let (px, lab) = bars(n, 28, 3);
    let mut text = String::new();
    for i in 0..n as usize {
        text += &lab[i].to_string();
        for p in &px[i * 784..(i + 1) * 784] {
            text += &format!(",{p}");
        }
        text.push('\n');
    }
    gzip(path, text.as_bytes());
}

pub fn gzip(path: &Path, bytes: &[u8]) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

// ---------------------------------------------------------------- words

/// A number in dictd's base64 (offsets and lengths of a `.index` file).
pub fn dictd_b64(mut v: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = vec![];
    loop {
        s.push(A[v % 64]);
        v /= 64;
        if v == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}

/// Writes `t` (n × d) as a fastText `.vec` file with these words.
pub fn write_vec(path: &Path, words: &[String], t: &Tensor) {
    let (n, d) = t.size2().unwrap();
    let mut s = format!("{n} {d}\n");
    for (i, w) in words.iter().enumerate() {
        let row = Vec::<f32>::try_from(t.get(i as i64)).unwrap();
        s.push_str(w);
        for v in row {
            s.push_str(&format!(" {v}"));
        }
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// Source vectors `s<i>`, a randomly rotated, noisy target copy `t<i>`,
/// and a MUSE dictionary of every pair: (src.vec, tgt.vec, dict.txt).
pub fn rotated_pair(dir: &Path, n: i64, d: i64, noise: f64) -> (PathBuf, PathBuf, PathBuf) {
    let _g = seeded();
    tch::manual_seed(42);
    let x = Tensor::randn([n, d], (Kind::Float, Device::Cpu));
    let (q, _) = Tensor::linalg_qr(
        &Tensor::randn([d, d], (Kind::Double, Device::Cpu)),
        "reduced",
    );
    let y = x.matmul(&q.to_kind(Kind::Float))
        + Tensor::randn([n, d], (Kind::Float, Device::Cpu)) * noise;
    let src: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let tgt: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let (a, b, c) = (
        dir.join("src.vec"),
        dir.join("tgt.vec"),
        dir.join("dict.txt"),
    );
    write_vec(&a, &src, &x);
    write_vec(&b, &tgt, &y);
    let dict: String = (0..n).map(|i| format!("s{i} t{i}\n")).collect();
    std::fs::write(&c, dict).unwrap();
    (a, b, c)
}

// ---------------------------------------------------------------- the CLI

/// Runs the `embedlab` binary `bin` (a test's `env!("CARGO_BIN_EXE_embedlab")`)
/// with one libtorch thread.
pub fn run(bin: &str, args: &[&str]) -> Output {
    run_in(bin, Path::new("."), args)
}

/// [`run`] with `dir` as the working directory (where a command without
/// `--out` puts its run folder).
pub fn run_in(bin: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .current_dir(dir)
        // Decoded image folders are cached under the temporary folder, not
        // the user's ~/.cache (each test's folder has its own cache file).
        .env(
            "EMBEDLAB_IMAGE_CACHE",
            std::env::temp_dir().join("embedlab-test-image-cache"),
        )
        .args(["--threads", "1"])
        .args(args)
        .output()
        .expect("run embedlab")
}

/// Asserts that the run succeeded; returns stdout and stderr together.
pub fn ok(o: &Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    format!("{out}{err}")
}

/// Asserts that the run failed cleanly (an error, not a panic or a signal);
/// returns its stderr.
pub fn fails(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success(),
        "should have failed:\n{}{err}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit code {:?} (a panic or a signal?):\n{err}",
        o.status.code()
    );
    assert!(!err.contains("panicked"), "a panic:\n{err}");
    err
}

// ---------------------------------------------------------------- run folders

pub fn json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A run's `report.json`.
pub fn report(run: &Path) -> serde_json::Value {
    json(&run.join("report.json"))
}

/// The value of the metric `name` in a run's report.
pub fn metric(report: &serde_json::Value, name: &str) -> f64 {
    report["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {}", report["metrics"]))["value"]
        .as_f64()
        .unwrap()
}

/// The lines of a run's `metrics.jsonl`.
pub fn metrics_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `cargo metadata` as the rust-version check runs it: offline, and for the
/// host platform only, so that it needs no crate a build on this machine
/// never downloads (the platform crates of Android, Windows, macOS in
/// Cargo.lock). Run in `root` with `cargo_home` as CARGO_HOME when given.
pub fn cargo_metadata(root: &Path, cargo_home: Option<&Path>) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        })
        .expect("rustc -vV names the host");
    let mut c = Command::new(cargo);
    c.args([
        "metadata",
        "--format-version",
        "1",
        "--offline",
        "--filter-platform",
        &host,
    ])
    .current_dir(root);
    if let Some(h) = cargo_home {
        c.env("CARGO_HOME", h);
    }
    c.output().expect("run cargo metadata")
}

/// Each finished run of a study folder with its metrics from
/// `report.json` (not its timings), by run name: what must be equal however
/// the study was run (in one process, by workers, as Slurm tasks).
pub fn study_results(study: &Path) -> Vec<(String, Vec<(String, f64)>)> {
    let mut names: Vec<_> = std::fs::read_dir(study.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let r: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(study.join("runs").join(&n).join("report.json")).unwrap(),
            )
            .unwrap();
            let m = r["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| {
                    let name = m["name"].as_str().unwrap();
                    !name.starts_with("training") && name != "epochs"
                })
                .map(|m| {
                    (
                        m["name"].as_str().unwrap().to_string(),
                        m["value"].as_f64().unwrap(),
                    )
                })
                .collect();
            (n, m)
        })
        .collect()
}
