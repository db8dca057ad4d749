//! The kill harness: training and adversarial alignment are killed with
//! SIGKILL at random instants — half of the kills the moment a temporary
//! file appears, that is inside a checkpoint or report write — and resumed
//! until they finish. Every run must end bit-identical to an uninterrupted
//! one, with each epoch in `metrics.jsonl` exactly once and no temporary
//! file left behind.
//!
//! `KILLS` (default 50 a pipeline) sets how many kills each pipeline takes.
use embedlab_testkit::{metrics_lines, rotated_pair, write_idx_dataset};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_embedlab")
}

fn spawn(args: &[String]) -> Child {
    Command::new(bin())
        .args(["--threads", "1"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start embedlab")
}

struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1_000_000) as f64 / 1_000_000.0
    }
}

/// Temporary files of checkpoint, best-weight and map writes.
fn checkpoint_writes(dir: &Path) -> bool {
    temporaries(dir)
        .iter()
        .any(|p| p.to_string_lossy().contains(".safetensors."))
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `start` (then `resume` once the run folder says what it is),
/// killing it `kills` times in all; a run that finishes before its share of
/// kills is started again from nothing. Returns (kills inside a write,
/// fresh starts); the last run finished.
fn run_with_kills(
    out: &Path,
    start: &[String],
    resume: &[String],
    kills: usize,
    typical: Duration,
    rng: &mut Rng,
) -> (usize, usize) {
    let (mut done, mut in_write, mut restarts) = (0, 0, 0);
    loop {
        // A folder without run.json never started: start it again, emptied.
        let args: Vec<String> = if out.join("run.json").is_file() {
            resume.to_vec()
        } else {
            let mut a = start.to_vec();
            a.push("--overwrite".into());
            a
        };
        let mut child = spawn(&args);
        if done < kills {
            // Half the kills at a random instant, half inside a checkpoint
            // (or best-weights, or map) write.
            let at_write = rng.unit() < 0.5;
            let started = Instant::now();
            let deadline = started + typical.mul_f64(0.05 + 1.1 * rng.unit());
            let mut killed = false;
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                let now = Instant::now();
                if at_write && checkpoint_writes(out) {
                    child.kill().unwrap();
                    in_write += 1;
                    killed = true;
                    break;
                }
                if !at_write && now >= deadline {
                    child.kill().unwrap();
                    killed = true;
                    break;
                }
                if now > started + typical * 3 {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            if killed {
                let _ = child.wait();
                done += 1;
                continue;
            }
        }
        let o = child.wait_with_output().unwrap();
        if o.status.success() {
            if done >= kills {
                return (in_write, restarts);
            }
            std::fs::remove_dir_all(out).unwrap();
            restarts += 1;
            continue;
        }
        panic!(
            "{}: {:?} failed after {done} kills:\n{}",
            out.display(),
            args,
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// The tensors of a checkpoint file, by name, as bytes.
fn tensors(p: &Path) -> HashMap<String, Vec<u8>> {
    let (_, named): (serde_json::Value, _) = embedlab_train::checkpoint::read(p).unwrap();
    named
        .into_iter()
        .map(|(n, t)| {
            let t = t.contiguous();
            let mut b = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
            t.copy_data_u8(&mut b, t.numel());
            (n, b)
        })
        .collect()
}

/// Tensors by name, as bytes.
type Tensors = HashMap<String, Vec<u8>>;

/// What must agree: every tensor of the checkpoint and of the best weights,
/// and each epoch's losses.
fn outcome(run: &Path) -> (Tensors, Tensors, Vec<String>) {
    let lines = metrics_lines(run);
    let epochs: Vec<String> = lines
        .iter()
        .filter(|l| l.get("epoch").is_some())
        .map(|l| format!("{} {} {}", l["epoch"], l["train"], l["valid"]))
        .collect();
    (
        tensors(&run.join("checkpoint.safetensors")),
        tensors(&run.join("best.safetensors")),
        epochs,
    )
}

fn check(name: &str, reference: &Path, killed: &Path, epochs: usize) {
    let (a, b) = (outcome(reference), outcome(killed));
    assert_eq!(
        a.0.keys().len(),
        b.0.keys().len(),
        "{name}: checkpoint tensors"
    );
    for (k, v) in &a.0 {
        assert!(
            b.0.get(k) == Some(v),
            "{name}: checkpoint tensor {k} differs"
        );
    }
    assert!(a.1 == b.1, "{name}: best weights differ");
    assert_eq!(a.2, b.2, "{name}: epoch records differ");
    let logged: Vec<u64> = metrics_lines(killed)
        .iter()
        .filter_map(|l| l["epoch"].as_u64())
        .collect();
    assert_eq!(
        logged,
        (1..=epochs as u64).collect::<Vec<_>>(),
        "{name}: each epoch once"
    );
    assert!(temporaries(killed).is_empty(), "{name}: temporaries left");
    assert!(killed.join("report.json").is_file(), "{name}: finished");
}

fn kills() -> usize {
    std::env::var("KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
}

fn timed(args: &[String]) -> Duration {
    let t = Instant::now();
    let o = spawn(args).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    t.elapsed()
}

/// Runs `args(reference)` once uninterrupted, then `args(killed)` under
/// the kills (resumed with `resume`), and compares the two; returns both
/// folders.
fn scenario(
    name: &str,
    dir: &Path,
    args: &dyn Fn(&Path) -> Vec<String>,
    resume: &[&str],
    epochs: usize,
    seed: u64,
) -> (PathBuf, PathBuf) {
    let reference = dir.join("reference");
    let typical = timed(&args(&reference));
    let out = dir.join("killed");
    let mut resume = strings(resume);
    resume.push(out.display().to_string());
    let mut rng = Rng(seed);
    let (in_write, restarts) =
        run_with_kills(&out, &args(&out), &resume, kills(), typical, &mut rng);
    eprintln!(
        "{name}: {} kills, {in_write} inside a checkpoint write, {restarts} fresh starts; a run takes {:.1} s",
        kills(),
        typical.as_secs_f64()
    );
    check(name, &reference, &out, epochs);
    (reference, out)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn training_killed_at_random_resumes_to_the_same_run() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 600, 60, 8);
    let args = |out: &Path| {
        strings(&[
            "--seed",
            "4",
            "train",
            "vae",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "6",
            "--hidden",
            "512,256",
            "--latent",
            "4",
            "--batch-size",
            "32",
            "--valid",
            "60",
            "--iwae-k",
            "20",
            "--iwae-images",
            "10",
            "--no-images",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    scenario(
        "training",
        d.path(),
        &args,
        &["train", "vae", "--resume"],
        6,
        0x5eed_1234,
    );
}

#[test]
fn adversarial_alignment_killed_at_random_resumes_to_the_same_run() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt, dict) = rotated_pair(d.path(), 400, 8, 0.01);
    let args = |out: &Path| {
        strings(&[
            "--seed",
            "2",
            "align",
            "unsupervised",
            "--method",
            "adversarial",
            "--src",
            src.to_str().unwrap(),
            "--tgt",
            tgt.to_str().unwrap(),
            "--dict-test",
            dict.to_str().unwrap(),
            "--epochs",
            "5",
            "--epoch-size",
            "6400",
            "--dis-hidden",
            "256",
            "--refinement",
            "1",
            "--criterion-words",
            "300",
            "--precision",
            "f32",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let (reference, killed) = scenario(
        "adversarial",
        d.path(),
        &args,
        &["align", "unsupervised", "--resume"],
        5,
        0xad5e_7711,
    );
    assert_eq!(
        std::fs::read(reference.join("map.safetensors")).unwrap(),
        std::fs::read(killed.join("map.safetensors")).unwrap(),
        "the final maps differ"
    );
}

/// One family of each new kind — a GAN (WGAN-GP: critic steps, gradient
/// penalty), a WAE (MMD) and a flow (Glow: actnorm's data initialisation)
/// — killed at random and resumed, each to the same checkpoint, best
/// weights and epoch records as its uninterrupted run (KILLS_NEW kills
/// each, default 8; the VAE case above takes KILLS).
#[test]
fn a_gan_a_wae_and_a_flow_killed_at_random_resume_to_the_same_run() {
    let kills_new: usize = std::env::var("KILLS_NEW")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 400, 60, 8);
    let families: [(&str, &[&str]); 3] = [
        (
            "wgan-gp",
            &["--arch", "mlp", "--hidden", "64,32", "--latent", "4"],
        ),
        (
            "wae-mmd",
            &["--arch", "mlp", "--hidden", "64,32", "--latent", "4"],
        ),
        (
            "glow",
            &[
                "--steps",
                "2",
                "--hidden",
                "8",
                "--init-batch",
                "64",
                "--iwae-images",
                "10",
            ],
        ),
    ];
    for (i, (family, extra)) in families.iter().enumerate() {
        let dir = d.path().join(family);
        std::fs::create_dir(&dir).unwrap();
        let args = |out: &Path| {
            let mut a = strings(&[
                "--seed",
                "3",
                "train",
                family,
                "--data",
                data.to_str().unwrap(),
                "--epochs",
                "4",
                "--batch-size",
                "32",
                "--valid",
                "40",
                "--no-images",
                "--out",
                out.to_str().unwrap(),
            ]);
            a.extend(strings(extra));
            a
        };
        let reference = dir.join("reference");
        let typical = timed(&args(&reference));
        let out = dir.join("killed");
        let mut resume = strings(&["train", family, "--resume"]);
        resume.push(out.display().to_string());
        let mut rng = Rng(0x7e57_0000 + i as u64);
        let (in_write, restarts) =
            run_with_kills(&out, &args(&out), &resume, kills_new, typical, &mut rng);
        eprintln!(
            "{family}: {kills_new} kills, {in_write} inside a checkpoint write, {restarts} fresh starts; a run takes {:.1} s",
            typical.as_secs_f64()
        );
        check(family, &reference, &out, 4);
    }
}
