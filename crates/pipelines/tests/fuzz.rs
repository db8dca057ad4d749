//! A fuzzing harness for every reader: embeddings in every format (.vec,
//! GloVe text, word2vec binary, .npy with its word index, spaCy vocab
//! folders), dictionaries (MUSE, dictd), images (IDX, CIFAR-10, CSV),
//! checkpoints and run files (run.json, config.json, report.json,
//! metrics.jsonl, steps.json, through the HTML report).
//!
//! Each case is a valid file mutated at random (bit flips, interesting
//! bytes and integers written over header fields, truncation, insertion,
//! deletion and duplication of ranges, numbers in text replaced by huge,
//! negative or non-finite ones) or plain random bytes. A reader may accept
//! or refuse a case; it must not panic, abort, take long, or allocate far
//! beyond the input's size (a counting allocator watches every case).
//!
//! Bounded for CI: `FUZZ_SECONDS` (default 40, over all targets), seed
//! `FUZZ_SEED` (default 1). A failing input is saved under
//! `target/fuzz-failures/`.
use embedlab_data::{
    load_image_dataset, DictFormat, Dictionary, EmbeddingFormat, Embeddings, LoadOptions,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ------------------------------------------------------------ allocation watch

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let c = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(c, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new > l.size() {
                let c = CURRENT.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(c, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// ------------------------------------------------------------ randomness

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
    1 << 40,
];
const TOKENS: [&str; 9] = [
    "99999999999999999999",
    "18446744073709551615",
    "4611686018427387904",
    "-1",
    "NaN",
    "inf",
    "1e308",
    "0",
    "",
];

/// One random mutation of `b`.
fn mutate(r: &mut Rng, b: &mut Vec<u8>) {
    let n = b.len();
    match r.below(9) {
        0 if n > 0 => {
            let i = r.below(n);
            b[i] ^= 1 << r.below(8);
        }
        1 if n > 0 => {
            let i = r.below(n);
            b[i] = INTERESTING[r.below(INTERESTING.len())] as u8;
        }
        2 if n >= 4 => {
            // An interesting integer over a (header) field, either endianness.
            let v = INTERESTING[r.below(INTERESTING.len())];
            let w = [4usize, 8][r.below(2)].min(n);
            let i = r.below(n - w + 1);
            let bytes = if r.below(2) == 0 {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            b[i..i + w].copy_from_slice(&bytes[..w]);
        }
        3 => b.truncate(r.below(n + 1)),
        4 => {
            let i = r.below(n + 1);
            let k = 1 + r.below(16);
            let ins: Vec<u8> = (0..k).map(|_| r.next() as u8).collect();
            b.splice(i..i, ins);
        }
        5 if n > 0 => {
            let i = r.below(n);
            let k = r.below((n - i).min(64)) + 1;
            b.drain(i..i + k);
        }
        6 if n > 0 => {
            let i = r.below(n);
            let k = r.below((n - i).min(256)) + 1;
            let dup = b[i..i + k].to_vec();
            let j = r.below(n + 1);
            b.splice(j..j, dup);
        }
        7 => {
            // A number in text replaced by a token.
            let starts: Vec<usize> = (0..n)
                .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()))
                .collect();
            if let Some(&s) = starts.get(r.below(starts.len().max(1))) {
                let mut e = s;
                while e < n && (b[e].is_ascii_digit() || b[e] == b'.') {
                    e += 1;
                }
                let t = TOKENS[r.below(TOKENS.len())].as_bytes().to_vec();
                b.splice(s..e, t);
            }
        }
        _ => {
            let k = r.below(64);
            *b = (0..k).map(|_| r.next() as u8).collect();
        }
    }
}

// ------------------------------------------------------------ seeds

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn npy(rows: usize, cols: usize) -> Vec<u8> {
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}\n");
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    for i in 0..rows * cols {
        b.extend(((i as f32) * 0.25 - 1.0).to_le_bytes());
    }
    b
}

fn w2v() -> Vec<u8> {
    let mut b = b"3 2\n".to_vec();
    for (w, v) in [
        ("cat", [1.0f32, 2.0]),
        ("dog", [-1.0, 0.5]),
        ("eel", [0.0, 3.0]),
    ] {
        b.extend(w.as_bytes());
        b.push(b' ');
        for x in v {
            b.extend(x.to_le_bytes());
        }
        b.push(b'\n');
    }
    b
}

fn msgpack_map(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut b = vec![0x80 | pairs.len() as u8];
    for &(k, v) in pairs {
        b.push(0xcf);
        b.extend(k.to_be_bytes());
        b.push(0xcf);
        b.extend(v.to_be_bytes());
    }
    b
}

use embedlab_testkit::dictd_b64 as b64;

fn dictd() -> (Vec<u8>, Vec<u8>) {
    let entries = [
        ("cat", "cat /kat/\n1. chat\n2. matou\n"),
        ("dog", "dog\nchien, clébard\n"),
    ];
    let (mut body, mut index) = (String::new(), String::new());
    for (h, e) in entries {
        index += &format!("{h}\t{}\t{}\n", b64(body.len()), b64(e.len()));
        body += e;
    }
    (index.into_bytes(), gz(body.as_bytes()))
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    embedlab_testkit::idx_bytes(dims, data)
}

/// One reader under test: the files it reads (seeds), and how to read them.
struct Target {
    name: &'static str,
    /// (file name, seed bytes) written into a fresh folder; one is mutated per case.
    files: Vec<(&'static str, Vec<u8>)>,
    read: Box<dyn Fn(&Path)>,
}

fn targets() -> Vec<Target> {
    let opts = |f: Option<EmbeddingFormat>| LoadOptions {
        dedupe: true,
        format: f,
        max_vocab: Some(100),
        ..Default::default()
    };
    let (px, lab) = embedlab_testkit::bars(6, 4, 1);
    let cifar: Vec<u8> = (0..3u8)
        .flat_map(|i| {
            std::iter::once(i).chain((0..3072).map(move |j| (j as u8).wrapping_mul(i + 1)))
        })
        .collect();
    let config = serde_json::json!({"model": {"family": "autoencoder", "config": {}}, "train": {}, "data": {"path": "x"}});
    let report = serde_json::json!({"format": 2, "kind": "train", "section": "Image models", "title": "t",
        "metrics": [{"name": "test NLL", "value": 1.5, "unit": "nats", "better": "lower"}],
        "figures": [{"file": "samples.png", "caption": "c"}], "tables": [{"title": "t", "columns": ["a"], "rows": [["1"]], "highlight": [[0, 0]]}],
        "curves": [{"key": "valid.loss", "label": "l", "x": "epoch"}]});
    let run_json =
        serde_json::json!({"kind": "train", "format": 2, "embedlab": "0.1.0", "created": "now"});
    let metrics =
        "{\"epoch\":1,\"valid\":{\"loss\":3.0}}\n{\"epoch\":2,\"valid\":{\"loss\":2.0}}\n";
    let steps = serde_json::json!([{"name": "a", "status": "ok", "seconds": 1.0, "error": null, "run": null}]);
    let ckpt = {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.safetensors");
        let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
        embedlab_train::checkpoint::write(
            &p,
            &serde_json::json!({"format": 2, "kind": "vae"}),
            &[("model/w".to_string(), t)],
        )
        .unwrap();
        std::fs::read(&p).unwrap()
    };
    let (index, body) = dictd();
    let families = family_configs();
    let cls_cfg = families
        .iter()
        .find(|(n, _)| *n == "classifier")
        .map(|(_, c)| c.clone())
        .unwrap();
    let mut out = vec![
        Target {
            name: "vec",
            files: vec![("e.vec", b"3 2\ncat 1 2\ndog -1 0.5\neel 0 3e-1\n".to_vec())],
            read: Box::new(move |d| {
                let _ = Embeddings::load(&d.join("e.vec"), &opts(None));
            }),
        },
        Target {
            name: "glove",
            files: vec![("g.txt", b"cat 1 2\ndog -1 0.5\n. . . 0 3\n".to_vec())],
            read: Box::new(move |d| {
                let _ = Embeddings::load(&d.join("g.txt"), &opts(None));
                let _ =
                    Embeddings::load(&d.join("g.txt"), &opts(Some(EmbeddingFormat::Word2vecBin)));
            }),
        },
        Target {
            name: "word2vec",
            files: vec![("w.bin", w2v())],
            read: Box::new(move |d| {
                let _ = Embeddings::load(&d.join("w.bin"), &opts(None));
            }),
        },
        Target {
            name: "npy",
            files: vec![("m.npy", npy(3, 2)), ("m.txt", b"cat\ndog\neel\n".to_vec())],
            read: Box::new(move |d| {
                let _ = Embeddings::load(&d.join("m.npy"), &opts(None));
            }),
        },
        Target {
            name: "spacy",
            files: vec![
                ("vectors", npy(2, 3)),
                (
                    "key2row",
                    msgpack_map(&[
                        (embedlab_data::murmur::spacy_key("cat"), 0),
                        (embedlab_data::murmur::spacy_key("dog"), 1),
                    ]),
                ),
                ("strings.json", b"[\"cat\", \"dog\"]".to_vec()),
            ],
            read: Box::new(move |d| {
                let _ = Embeddings::load(d, &opts(None));
            }),
        },
        Target {
            name: "muse",
            files: vec![("d.txt", b"cat chat\ndog chien\ndog clebard\n".to_vec())],
            read: Box::new(|d| {
                let _ = Dictionary::load(&d.join("d.txt"));
                let _ = Dictionary::load_as(&d.join("d.txt"), Some(DictFormat::Dictd));
            }),
        },
        Target {
            name: "dictd",
            files: vec![("x.index", index), ("x.dict.dz", body)],
            read: Box::new(|d| {
                let _ = Dictionary::load(&d.join("x.index"));
            }),
        },
        Target {
            name: "idx",
            files: vec![
                ("train-images-idx3-ubyte", idx(&[6, 4, 4], &px)),
                ("train-labels-idx1-ubyte", idx(&[6], &lab)),
                ("t10k-images-idx3-ubyte.gz", gz(&idx(&[6, 4, 4], &px))),
                ("t10k-labels-idx1-ubyte", idx(&[6], &lab)),
            ],
            read: Box::new(|d| {
                let _ = load_image_dataset(d);
            }),
        },
        Target {
            name: "cifar",
            files: vec![
                ("data_batch_1.bin", cifar.clone()),
                ("test_batch.bin", cifar),
            ],
            read: Box::new(|d| {
                let _ = load_image_dataset(d);
            }),
        },
        Target {
            name: "csv",
            files: vec![(
                "i.csv",
                b"label,a,b,c,d\n1,0,255,12,13\n2,3,4,5,6\n0,1,1,1,1\n3,0.5,0,0,0\n4,9,9,9,9\n"
                    .to_vec(),
            )],
            read: Box::new(|d| {
                let _ = load_image_dataset(&d.join("i.csv"));
            }),
        },
        Target {
            name: "checkpoint",
            files: vec![("c.safetensors", ckpt.clone())],
            read: Box::new(|d| {
                let _ =
                    embedlab_train::checkpoint::read::<serde_json::Value>(&d.join("c.safetensors"));
                let _ = embedlab_train::checkpoint::read::<embedlab_train::trainer::CheckpointMeta>(
                    &d.join("c.safetensors"),
                );
            }),
        },
        Target {
            name: "run-files",
            files: vec![
                ("run.json", serde_json::to_vec(&run_json).unwrap()),
                ("config.json", serde_json::to_vec(&config).unwrap()),
                ("report.json", serde_json::to_vec(&report).unwrap()),
                ("metrics.jsonl", metrics.as_bytes().to_vec()),
                ("steps.json", serde_json::to_vec(&steps).unwrap()),
            ],
            read: Box::new(|d| {
                let _ = embedlab_train::run::read_info(d);
                let _ = embedlab_pipelines::images::RunConfig::read(d);
                let _ = embedlab_reports::html::build_report(&[d.to_path_buf()], "fuzz");
            }),
        },
        Target {
            name: "score-npy",
            files: vec![("s.npy", npy_nd(&[2, 1, 2, 2]))],
            read: Box::new(|d| {
                let _ = embedlab_data::npy::read_npy_array(&d.join("s.npy"));
            }),
        },
        Target {
            // A classifier run's files: its configuration is built into a
            // model (after the memory check) before its weights are read.
            name: "classifier-run",
            files: vec![
                ("run.json", serde_json::to_vec(&run_json).unwrap()),
                ("config.json", cls_cfg),
                ("best.safetensors", ckpt.clone()),
            ],
            read: Box::new(|d| {
                let _ = embedlab_pipelines::images::ClassifierRun::load(d, tch::Device::Cpu);
            }),
        },
    ];
    // Every family's run folder: run.json, config.json, metrics.jsonl and a
    // checkpoint, through the config reader, the resume check and the report.
    for (name, cfg) in families {
        out.push(Target {
            name,
            files: vec![
                ("run.json", serde_json::to_vec(&run_json).unwrap()),
                ("config.json", cfg),
                ("metrics.jsonl", metrics.as_bytes().to_vec()),
                ("checkpoint.safetensors", ckpt.clone()),
            ],
            read: Box::new(|d| {
                let _ = embedlab_pipelines::images::RunConfig::read(d);
                let _ = embedlab_train::trainer::resume_point(d);
                let _ = embedlab_reports::html::build_report(&[d.to_path_buf()], "fuzz");
            }),
        });
    }
    out
}

/// A float32 .npy of the given shape.
fn npy_nd(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let h = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}\n",
        dims.join(", ")
    );
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    for i in 0..shape.iter().product::<usize>() {
        b.extend((i as f32 / 10.0).to_le_bytes());
    }
    b
}

/// The `config.json` of a run of every model but the autoencoders (whose
/// runs the corpus holds already), as `train` writes it, for 4×4 images.
fn family_configs() -> Vec<(&'static str, Vec<u8>)> {
    use embedlab_pipelines::images::*;
    let d = tempfile::tempdir().unwrap();
    let (px, lab) = embedlab_testkit::bars(6, 4, 1);
    for stem in ["train", "t10k"] {
        std::fs::write(
            d.path().join(format!("{stem}-images-idx3-ubyte")),
            idx(&[6, 4, 4], &px),
        )
        .unwrap();
        std::fs::write(
            d.path().join(format!("{stem}-labels-idx1-ubyte")),
            idx(&[6], &lab),
        )
        .unwrap();
    }
    let ds = embedlab_data::load_image_dataset(d.path()).unwrap();
    // Every model of the registry (the ones the CLI trains), with its
    // family's default options.
    let models: Vec<(&'static str, ModelConfig)> = embedlab_pipelines::family::models()
        .filter(|m| !matches!(m.name, "ae" | "vae" | "cae" | "cvae"))
        .map(|m| {
            let spec = ModelSpec::defaults(m.name).unwrap();
            (m.name, spec.config(&ds).unwrap())
        })
        .collect();
    models
        .into_iter()
        .map(|(name, model)| {
            let cfg = RunConfig {
                model,
                train: embedlab_train::TrainConfig::single(
                    2,
                    32,
                    embedlab_train::OptimConfig::adam(1e-3),
                    1,
                ),
                data: DataConfig {
                    path: d.path().to_path_buf(),
                    fingerprint: None,
                    name: "bars".into(),
                    valid: 2,
                    train_limit: None,
                    test_limit: None,
                    image_size: None,
                    train_images: 4,
                    valid_images: 2,
                    test_images: 6,
                },
                eval: Default::default(),
                analysis: Default::default(),
            };
            (name, serde_json::to_vec_pretty(&cfg).unwrap())
        })
        .collect()
}

#[test]
fn every_reader_survives_mutated_and_random_input() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    tch::set_num_threads(1);
    let targets = targets();
    let budget = Duration::from_secs(seconds) / targets.len() as u32;
    let failures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut report = vec![];
    let mut problems = vec![];
    for (ti, t) in targets.iter().enumerate() {
        let mut rng = Rng(seed.wrapping_mul(1_000_003).wrapping_add(ti as u64));
        let start = Instant::now();
        let mut cases = 0u64;
        let mut slowest = Duration::ZERO;
        while start.elapsed() < budget {
            let dir = tempfile::tempdir().unwrap();
            let which = rng.below(t.files.len());
            let mut input = 0usize;
            let mut mutated = vec![];
            for (i, (name, seedbytes)) in t.files.iter().enumerate() {
                let mut b = seedbytes.clone();
                if i == which {
                    for _ in 0..1 + rng.below(4) {
                        mutate(&mut rng, &mut b);
                    }
                    mutated = b.clone();
                }
                input += b.len();
                std::fs::write(dir.path().join(name), &b).unwrap();
            }
            let base = CURRENT.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            let t0 = Instant::now();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.read)(dir.path())));
            let took = t0.elapsed();
            let grew = PEAK.load(Ordering::Relaxed).saturating_sub(base);
            slowest = slowest.max(took);
            cases += 1;
            let limit = (64 << 20) + 2000 * input;
            let problem = if r.is_err() {
                Some("panicked")
            } else if grew > limit {
                Some("allocated far beyond its input")
            } else if took > Duration::from_secs(10) {
                Some("took over 10 s")
            } else {
                None
            };
            if let Some(p) = problem {
                std::fs::create_dir_all(&failures).unwrap();
                let f = failures.join(format!("{}-{}-{cases}.bin", t.name, t.files[which].0));
                std::fs::write(&f, &mutated).unwrap();
                problems.push(format!(
                    "{}: {p} ({} bytes allocated, {:.2} s) on {}",
                    t.name,
                    grew,
                    took.as_secs_f64(),
                    f.display()
                ));
            }
        }
        report.push(format!(
            "{:<11} {cases:>7} cases, slowest {:.3} s",
            t.name,
            slowest.as_secs_f64()
        ));
    }
    std::panic::set_hook(quiet);
    eprintln!(
        "fuzz (seed {seed}, {seconds} s):\n  {}",
        report.join("\n  ")
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
