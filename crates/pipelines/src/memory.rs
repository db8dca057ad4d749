//! Refusing, before it is built, a model that cannot fit in memory, and
//! turning an allocation that fails anyway into an error (not a panic).
//!
//! [`check`] adds up what training will hold, from the configuration
//! alone ([`embedlab_models::memory`]), in bytes (4 a value):
//! - all along: the parameters × [`LIVE_COPIES`] = 4 (the weights, their
//!   gradients, Adam's two moments), 3 more for a flow (the NaN rollback's
//!   snapshot of the weights and moments, on by default for flows), and
//!   the buffers (BatchNorm statistics and the like) once, twice for a flow;
//! - on top, the largest of: one training step's activations on `batch`
//!   images; a validation pass on the family's validation batch (500
//!   images, the classifier's 1000); a flow's actnorm initialisation on
//!   `--init-batch` images; and the checkpoint written each epoch, which
//!   holds the weights, the moments and the buffers twice more while it is
//!   written (their bytes, then the file's): [`CHECKPOINT_COPIES`] = 6
//!   copies of the parameters. So the parameters count 4 times beside the
//!   activations, and 10 times (13 for a flow) when the checkpoint weighs
//!   more — what peak resident memory showed for a 38 M-parameter VAE.
//!
//! The sum is compared with the memory available: on the CPU,
//! `MemAvailable` of /proc/meminfo (less if a cgroup limit leaves less);
//! when that cannot be read, nothing is checked. On CUDA the device's own
//! memory is not queried (libtorch's allocator on the GPU is not checked
//! at all); only the host's share is: the checkpoint's copies of the
//! parameters (6) and buffers (2), which pass through host memory.
//! [`LIMIT_ENV`] (`EMBEDLAB_MEMORY_LIMIT`: bytes, or with a K/M/G/T suffix,
//! binary multiples) replaces the memory available, on either device.
use crate::family::ModelConfig;
use crate::{PipelineError, Result};
use embedlab_models::memory::Estimate;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::Device;

/// Copies of the parameters held all through training: the weights,
/// their gradients, Adam's two moments.
pub const LIVE_COPIES: u64 = 4;
/// More copies a flow holds: the NaN rollback's snapshot (weights, moments).
pub const ROLLBACK_COPIES: u64 = 3;
/// Copies of the parameters a checkpoint holds while it is written.
pub const CHECKPOINT_COPIES: u64 = 6;
/// Overrides the memory available (bytes, or with a K/M/G/T suffix).
pub const LIMIT_ENV: &str = "EMBEDLAB_MEMORY_LIMIT";
const BYTES: u64 = 4;

/// The memory the check compares with, and where the figure came from.
#[derive(Clone, Debug, PartialEq)]
struct Available {
    bytes: u64,
    source: String,
}

/// Refuses a model whose training would not fit in the memory available
/// (see the module's documentation); `batch`: the training batch size.
pub fn check(cfg: &ModelConfig, batch: i64, device: Device) -> Result<()> {
    let Some(avail) = available()? else {
        return Ok(());
    };
    check_against(cfg, batch, None, device.is_cuda(), &avail)
}

/// [`check`] for a data set of `images` training images: no batch — a
/// training step, a validation pass or actnorm's initialisation — holds
/// more images than there are.
pub fn check_for_images(cfg: &ModelConfig, batch: i64, images: u64, device: Device) -> Result<()> {
    let Some(avail) = available()? else {
        return Ok(());
    };
    check_against(cfg, batch, Some(images), device.is_cuda(), &avail)
}

/// [`check`] against a given amount of memory (`cuda`: the model will
/// train on a CUDA device, so only the host's share is counted).
fn check_against(
    cfg: &ModelConfig,
    batch: i64,
    images: Option<u64>,
    cuda: bool,
    avail: &Available,
) -> Result<()> {
    let cap = |n: u64| images.map_or(n, |m| n.min(m.max(1)));
    let batch = cap(batch.max(1) as u64) as i64;
    let Some(s) = cfg.memory(batch)? else {
        return Ok(());
    };
    let plan = Plan {
        batch: batch as u64,
        eval: cap(s.estimate.eval_batch),
        init: cap(cfg.init_batch()?),
        init_option: "--init-batch",
        checkpoint: true,
        rollback: cfg.default_rollbacks()? > 0,
    };
    refuse_if_over(&s, &plan, cuda, avail)
}

/// `embedlab bench`'s check of a model `s`: a data-dependent
/// initialisation and every training step on the same `batch` random
/// images, no validation, no checkpoint.
pub(crate) fn check_bench(s: &Subject, batch: i64, device: Device) -> Result<()> {
    let Some(avail) = available()? else {
        return Ok(());
    };
    check_bench_against(s, batch, device.is_cuda(), &avail)
}

fn check_bench_against(s: &Subject, batch: i64, cuda: bool, avail: &Available) -> Result<()> {
    let b = batch.max(1) as u64;
    let plan = Plan {
        batch: b,
        eval: 0,
        init: b,
        init_option: "--batch",
        checkpoint: false,
        rollback: false,
    };
    refuse_if_over(s, &plan, cuda, avail)
}

/// Runs `f` (a model's construction), turning a panic — libtorch's
/// failed allocations panic inside tch — into an error. While `f` runs,
/// the panic hook prints nothing for this thread: a hook installed once
/// wraps the one in place and calls it for every other panic, so other
/// threads (and panics outside `guard`) are reported as before.
pub fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    quiet_hook();
    QUIET.with(|q| q.set(q.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(q.get() - 1));
    match r {
        Ok(r) => r,
        Err(p) => {
            let msg = if let Some(s) = p.downcast_ref::<&str>() {
                s.to_string()
            } else if let Some(s) = p.downcast_ref::<String>() {
                s.clone()
            } else {
                "a panic without a message".to_string()
            };
            Err(PipelineError::Invalid(format!(
                "cannot build the model: {} (the memory estimate passed; the allocation failed anyway)",
                first_line(&msg)
            )))
        }
    }
}

thread_local! {
    /// Depth of [`guard`] calls on this thread.
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

fn quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(|q| q.get()) == 0 {
                previous(info);
            }
        }));
    });
}

/// A panic message's first line, at most 400 characters (libtorch's
/// messages carry a C++ backtrace).
fn first_line(msg: &str) -> String {
    let line = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if line.chars().count() > 400 {
        let cut: String = line.chars().take(400).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

// ------------------------------------------------------------ the sums

/// The passes whose activations can be the largest, and what training
/// keeps beside them.
struct Plan {
    /// Training images a step.
    batch: u64,
    /// Images of a validation batch (0: none).
    eval: u64,
    /// Images of actnorm's initialisation (0: none).
    init: u64,
    /// The option that sets them.
    init_option: &'static str,
    /// A checkpoint is written each epoch.
    checkpoint: bool,
    /// The NaN rollback keeps a snapshot (flows).
    rollback: bool,
}

/// A model's estimate with the options that drive it (a family's
/// descriptor makes it).
pub struct Subject {
    /// The model's short name.
    pub name: String,
    /// (option, value) as the command line spells them.
    pub options: Vec<(String, String)>,
    /// The options that make the parameters larger, and the activations.
    pub weight_drivers: Vec<&'static str>,
    pub activation_drivers: Vec<&'static str>,
    /// The images' size, c × h × w.
    pub shape: [i64; 3],
    pub estimate: Estimate,
}

/// What weighs most on top of the weights.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pass {
    Training(u64),
    Validation(u64),
    Initialisation(u64),
    Checkpoint,
}

/// What training would need, in bytes.
#[derive(Debug)]
struct Need {
    /// Held all along: the weights' live copies.
    live: u64,
    /// Copies of the parameters in `live`.
    live_copies: u64,
    /// The largest of what comes on top.
    peak: u64,
    pass: Pass,
}

impl Need {
    fn total(&self) -> u64 {
        self.live.saturating_add(self.peak)
    }
}

fn need(e: &Estimate, plan: &Plan, cuda: bool) -> Need {
    let (p, b) = (e.parameters, e.buffers);
    let ckpt = if plan.checkpoint {
        p.saturating_mul(CHECKPOINT_COPIES)
            .saturating_add(b.saturating_mul(2))
            .saturating_mul(BYTES)
    } else {
        0
    };
    if cuda {
        // Only the host's share: the checkpoint passes through it.
        return Need {
            live: 0,
            live_copies: 0,
            peak: ckpt,
            pass: Pass::Checkpoint,
        };
    }
    let (live_copies, buffer_copies) = if plan.rollback {
        (LIVE_COPIES + ROLLBACK_COPIES, 2)
    } else {
        (LIVE_COPIES, 1)
    };
    let live = p
        .saturating_mul(live_copies)
        .saturating_add(b.saturating_mul(buffer_copies))
        .saturating_mul(BYTES);
    let mut passes = vec![(
        e.training_values(plan.batch).saturating_mul(BYTES),
        Pass::Training(plan.batch),
    )];
    if plan.eval > 0 {
        passes.push((
            e.inference_values(plan.eval).saturating_mul(BYTES),
            Pass::Validation(plan.eval),
        ));
    }
    if plan.init > 0 {
        passes.push((
            e.inference_values(plan.init).saturating_mul(BYTES),
            Pass::Initialisation(plan.init),
        ));
    }
    passes.push((ckpt, Pass::Checkpoint));
    let (peak, pass) =
        passes
            .into_iter()
            .fold((0, Pass::Checkpoint), |a, x| if x.0 > a.0 { x } else { a });
    Need {
        live,
        live_copies,
        peak,
        pass,
    }
}

fn refuse_if_over(s: &Subject, plan: &Plan, cuda: bool, avail: &Available) -> Result<()> {
    let n = need(&s.estimate, plan, cuda);
    if n.total() <= avail.bytes {
        return Ok(());
    }
    let opts = s
        .options
        .iter()
        .map(|(o, v)| {
            if v.is_empty() {
                o.clone()
            } else {
                format!("{o} {v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let [c, h, w] = s.shape;
    let params = count(s.estimate.parameters);
    let kept = if plan.rollback {
        "the weights, their gradients, Adam's two moments and the NaN rollback's snapshot"
    } else {
        "the weights, their gradients and Adam's two moments"
    };
    let what = match n.pass {
        _ if cuda => format!(
            "in host memory, where the checkpoint holds the parameters {params} × 4 bytes × {CHECKPOINT_COPIES} copies; \
             the GPU's own memory is not checked"
        ),
        Pass::Checkpoint => format!(
            "parameters {params} × 4 bytes × {} copies: {kept}, and {CHECKPOINT_COPIES} more while a checkpoint is written",
            n.live_copies + CHECKPOINT_COPIES
        ),
        pass => {
            let (k, what) = match pass {
                Pass::Training(k) => (k, "training"),
                Pass::Validation(k) => (k, "validation"),
                Pass::Initialisation(k) => (k, "actnorm initialisation"),
                Pass::Checkpoint => (0, "checkpoint"),
            };
            format!(
                "activations of {k} {what} images, {}, + parameters {params} × 4 bytes × {} copies: {kept}",
                gib(n.peak),
                n.live_copies
            )
        }
    };
    // What to make smaller: the widths that make the parameters, when
    // they weigh more; else the batch of the pass that counts (the
    // validation batch is fixed) and the widths.
    let drivers: Vec<&str> = if cuda || n.pass == Pass::Checkpoint || n.live >= n.peak {
        s.weight_drivers.clone()
    } else {
        let batch = s.activation_drivers[0];
        let first = match n.pass {
            Pass::Training(_) => Some(batch),
            Pass::Initialisation(_) => Some(plan.init_option),
            _ => None,
        };
        let mut d: Vec<&str> = first.into_iter().collect();
        for &o in &s.activation_drivers[1..] {
            if !d.contains(&o) {
                d.push(o);
            }
        }
        d
    };
    let smaller = match drivers.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    };
    Err(PipelineError::Invalid(format!(
        "the {} model ({opts}; {h}×{w}×{c} images) would need about {} of memory ({what}), \
         more than the {} available ({}): make {smaller} smaller",
        s.name,
        gib(n.total()),
        gib(avail.bytes),
        avail.source
    )))
}

/// Bytes as "17.3 GiB" (or MiB below a GiB).
fn gib(b: u64) -> String {
    let g = b as f64 / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// A count as "1.1 G", "35.2 M", "12.3 k".
fn count(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.1} G", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1} M", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1} k", f / 1e3)
    } else {
        n.to_string()
    }
}

impl Subject {
    /// A model whose weights grow with `--hidden` and `--latent` and whose
    /// activations with `--batch-size` and `--hidden` (the autoencoders,
    /// the WAEs, the GANs); None for sizes its constructor refuses anyway
    /// (no hidden layer, no latent, a conv model of a size not divisible by 4).
    pub fn widths_and_latent(
        name: &str,
        hidden: &[i64],
        latent: i64,
        conv: bool,
        batch: i64,
        shape: [i64; 3],
        estimate: Estimate,
    ) -> Option<Self> {
        if hidden.is_empty() || latent < 1 || (conv && (shape[1] % 4 != 0 || shape[2] % 4 != 0)) {
            return None;
        }
        Some(Subject {
            name: name.into(),
            options: vec![
                ("--hidden".into(), widths(hidden)),
                ("--latent".into(), latent.to_string()),
                ("--batch-size".into(), batch.to_string()),
            ],
            weight_drivers: vec!["--hidden", "--latent"],
            activation_drivers: vec!["--batch-size", "--hidden"],
            shape,
            estimate,
        })
    }
}

/// Widths as the command line spells them (`512,256`).
pub fn widths(v: &[i64]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// ------------------------------------------------ the memory available

/// The memory available: [`LIMIT_ENV`] when set, else the kernel's
/// `MemAvailable` (and a cgroup's remaining limit, when lower); None when
/// neither can be read.
fn available() -> Result<Option<Available>> {
    if let Ok(v) = std::env::var(LIMIT_ENV) {
        let bytes = parse_size(&v).ok_or_else(|| {
            PipelineError::Invalid(format!(
                "{LIMIT_ENV}={v:?}: give the memory available in bytes, or with a K, M, G or T suffix (e.g. 16G)"
            ))
        })?;
        return Ok(Some(Available {
            bytes,
            source: LIMIT_ENV.into(),
        }));
    }
    let Some(mut bytes) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| meminfo_available(&t))
    else {
        return Ok(None);
    };
    let mut source = format!("MemAvailable in /proc/meminfo; {LIMIT_ENV} overrides it");
    if let Some(c) = cgroup_left() {
        if c < bytes {
            bytes = c;
            source = format!("left under the cgroup's memory limit; {LIMIT_ENV} overrides it");
        }
    }
    Ok(Some(Available { bytes, source }))
}

/// `MemAvailable` of a /proc/meminfo text, in bytes.
fn meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut it = line["MemAvailable:".len()..].split_whitespace();
    let v: u64 = it.next()?.parse().ok()?;
    Some(match it.next() {
        Some("kB") | None => v * 1024,
        Some(_) => return None,
    })
}

/// What the process's cgroup (v2, else v1) still allows, when it has a limit.
fn cgroup_left() -> Option<u64> {
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let (limit, used) = match read("/sys/fs/cgroup/memory.max") {
        Some(l) => (l, read("/sys/fs/cgroup/memory.current")?),
        None => (
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?,
            read("/sys/fs/cgroup/memory/memory.usage_in_bytes")?,
        ),
    };
    // v1 writes "no limit" as a huge number (and v2 as "max", unparsed).
    (limit < 1 << 60).then(|| limit.saturating_sub(used))
}

/// "1048576", "512K", "64M", "1.5G", "2T" (binary multiples; an optional
/// "B" or "iB" after the suffix).
fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("IB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'K' => (&t[..t.len() - 1], 1u64 << 10),
        'M' => (&t[..t.len() - 1], 1 << 20),
        'G' => (&t[..t.len() - 1], 1 << 30),
        'T' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let num = num.trim();
    if let Ok(v) = num.parse::<u64>() {
        return v.checked_mul(mult);
    }
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0 && v * (mult as f64) < u64::MAX as f64)
        .then_some((v * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::autoencoders::Autoencoders;
    use crate::family::classifier::Classifiers;
    use crate::family::flows::Flows;
    use crate::family::gans::Gans;
    use crate::family::waes::Waes;
    use embedlab_models::classifier::ClassifierConfig;
    use embedlab_models::flow::{FlowConfig, FlowKind};
    use embedlab_models::gan::{GanArch, GanConfig, GanKind};
    use embedlab_models::wae::{Penalty, WaeConfig};
    use embedlab_models::{AeConfig, Arch, Family, Likelihood};

    fn limit(bytes: u64) -> Available {
        Available {
            bytes,
            source: "a test's limit".into(),
        }
    }

    fn dcgan_mlp(hidden: Vec<i64>, latent: i64) -> ModelConfig {
        ModelConfig::of::<Gans>(&GanConfig {
            kind: GanKind::Dcgan,
            arch: GanArch::Mlp,
            latent,
            hidden,
            gp_weight: 10.0,
            channels: 1,
            height: 28,
            width: 28,
            classes: 10,
        })
    }

    fn vae() -> ModelConfig {
        ModelConfig::of::<Autoencoders>(&AeConfig {
            family: Family::Vae,
            conditional: false,
            arch: Arch::Mlp,
            hidden: vec![512, 256],
            latent: 20,
            likelihood: Likelihood::Bernoulli,
            binarize: true,
            beta: 1.0,
            warmup_epochs: 0.0,
            channels: 1,
            height: 28,
            width: 28,
            classes: 10,
        })
    }

    fn err(r: Result<()>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(()) => panic!("should have been refused"),
        }
    }

    #[test]
    fn memory_a_model_over_the_limit_is_refused_naming_its_options() {
        let cfg = dcgan_mlp(vec![65536, 65536], 4096);
        let msg = err(check_against(&cfg, 128, None, false, &limit(20 << 30)));
        for want in [
            "the dcgan model",
            "--hidden 65536,65536",
            "--latent 4096",
            "--batch-size 128",
            "28×28×1 images",
            "would need about",
            "GiB of memory",
            "parameters 9.0 G × 4 bytes × 10 copies",
            "6 more while a checkpoint is written",
            "more than the 20.0 GiB available (a test's limit)",
            "make --hidden or --latent smaller",
        ] {
            assert!(msg.contains(want), "no {want:?} in: {msg}");
        }
        // A small limit refuses even the default model, and says what to shrink.
        let msg = err(check_against(&vae(), 128, None, false, &limit(1 << 20)));
        assert!(
            msg.contains("the vae model (--hidden 512,256, --latent 20, --batch-size 128"),
            "{msg}"
        );
        // The batch: activations dominate, so the batch size comes first.
        let msg = err(check_against(&vae(), 1 << 20, None, false, &limit(8 << 30)));
        assert!(
            msg.contains("activations of 1048576 training images"),
            "{msg}"
        );
        assert!(
            msg.contains("make --batch-size or --hidden smaller"),
            "{msg}"
        );
        // The families' own options.
        let cl = ModelConfig::of::<Classifiers>(&ClassifierConfig {
            width: 1024,
            features: 65536,
            dropout: 0.5,
            channels: 1,
            height: 28,
            width_px: 28,
            classes: 10,
        });
        let msg = err(check_against(&cl, 128, None, false, &limit(20 << 30)));
        assert!(msg.contains("--width 1024, --features 65536"), "{msg}");
        let wae = ModelConfig::of::<Waes>(&WaeConfig {
            penalty: Penalty::Gan,
            arch: Arch::Conv,
            hidden: vec![512, 256],
            latent: 8,
            lambda: 1.0,
            zdisc_hidden: vec![65536, 65536, 65536],
            channels: 1,
            height: 28,
            width: 28,
            classes: 10,
        });
        let msg = err(check_against(&wae, 128, None, false, &limit(20 << 30)));
        assert!(msg.contains("--zdisc-hidden 65536,65536,65536"), "{msg}");
        assert!(msg.contains("--zdisc-hidden smaller"), "{msg}");
        let mut glow = FlowConfig::new(FlowKind::Glow, [1, 28, 28], 10);
        glow.hidden = 4096;
        glow.steps = 256;
        let msg = err(check_against(
            &ModelConfig::of::<Flows>(&glow),
            64,
            None,
            false,
            &limit(20 << 30),
        ));
        assert!(
            msg.contains("the glow model (--levels 2, --steps 256, --hidden 4096, --batch-size 64, --init-batch 512"),
            "{msg}"
        );
        // bench flow's own options.
        let f = FlowConfig::new(FlowKind::Glow, [64, 1024, 1024], 10);
        let s = crate::bench::flow_bench_subject(&f, 4096);
        let msg = err(check_bench_against(&s, 4096, false, &limit(20 << 30)));
        assert!(msg.contains("--size 1024, --channels 64"), "{msg}");
        assert!(msg.contains("--batch 4096"), "{msg}");
        assert!(msg.contains("make --batch, --size, --channels"), "{msg}");
        assert!(!msg.contains("--init-batch"), "{msg}");
        // On CUDA only the host's copy of the weights counts.
        assert!(check_against(&vae(), 1 << 20, None, true, &limit(1 << 30)).is_ok());
        let msg = err(check_against(&cfg, 128, None, true, &limit(20 << 30)));
        assert!(msg.contains("in host memory"), "{msg}");
        // A configuration the constructor refuses is left to it.
        let mut bad = glow;
        bad.levels = 8;
        assert!(check_against(&ModelConfig::of::<Flows>(&bad), 64, None, false, &limit(1)).is_ok());
    }

    #[test]
    fn memory_default_sized_models_pass_on_this_machine() {
        let Some(avail) = available().unwrap() else {
            eprintln!("no /proc/meminfo: nothing to check");
            return;
        };
        let glow = FlowConfig::new(FlowKind::Glow, [1, 28, 28], 10);
        let iresnet = FlowConfig::new(FlowKind::Iresnet, [1, 28, 28], 10);
        for cfg in [
            vae(),
            dcgan_mlp(vec![512, 256], 64),
            ModelConfig::of::<Flows>(&glow),
            ModelConfig::of::<Flows>(&iresnet),
        ] {
            check_against(&cfg, 128, None, false, &avail).unwrap();
            // …and need a few GiB at most.
            let s = cfg.memory(128).unwrap().unwrap();
            let plan = Plan {
                batch: 128,
                eval: s.estimate.eval_batch,
                init: 512,
                init_option: "--init-batch",
                checkpoint: true,
                rollback: true,
            };
            let n = need(&s.estimate, &plan, false);
            assert!(n.total() < 4 << 30, "{}: {n:?}", s.name);
        }
    }

    #[test]
    fn memory_guard_turns_a_panic_into_an_error() {
        let r: Result<i32> = guard(|| {
            panic!("can't allocate memory: you tried to allocate 17179869184 bytes\nat frame 0")
        });
        let msg = r.unwrap_err().to_string();
        assert_eq!(
            msg,
            "cannot build the model: can't allocate memory: you tried to allocate 17179869184 bytes \
             (the memory estimate passed; the allocation failed anyway)"
        );
        let r: Result<i32> = guard(|| panic!("{}", String::from("formatted")));
        assert!(r.unwrap_err().to_string().contains(": formatted ("));
        // Errors and values pass through.
        assert_eq!(guard(|| Ok(3)).unwrap(), 3);
        assert!(guard(|| -> Result<()> { crate::fail!("no") }).is_err());
        // A real allocation that cannot succeed: 2^62 floats.
        let r = guard(|| {
            let vs = tch::nn::VarStore::new(Device::Cpu);
            let _ = vs.root().zeros("w", &[1 << 62]);
            Ok(())
        });
        assert!(r
            .unwrap_err()
            .to_string()
            .starts_with("cannot build the model: "));
        QUIET.with(|q| assert_eq!(q.get(), 0));
    }

    #[test]
    fn memory_sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("2TiB"), Some(2 << 40));
        assert_eq!(parse_size(" 16 GB "), Some(16 << 30));
        for bad in ["", "G", "-1", "x", "1e400", "NaN"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(
            meminfo_available("MemTotal: 10 kB\nMemAvailable:   2048 kB\n"),
            Some(2 << 20)
        );
        assert_eq!(meminfo_available("MemTotal: 10 kB\n"), None);
    }

    #[test]
    fn memory_no_batch_holds_more_images_than_the_data_set_has() {
        // A full-batch request on 120 images is 120 images, not 2^20.
        let msg = err(check_against(&vae(), 1 << 20, None, false, &limit(8 << 30)));
        assert!(msg.contains("--batch-size"), "{msg}");
        assert!(check_against(&vae(), 1 << 20, Some(120), false, &limit(8 << 30)).is_ok());
    }
}
