//! Progress on the terminal (indicatif) and small parsing helpers.
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// A spinner for a step of unknown length; finish it with `finish_and_clear`.
pub fn spinner(msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("template"));
    pb.set_message(msg.into());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A bar over `n` steps.
pub fn bar(n: u64, msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new(n);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} [{elapsed}<{eta}]")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(msg.into());
    pb
}

/// A training run on the terminal: a bar an epoch with the running loss,
/// then `line` for each finished epoch; notes (resuming, rollbacks) as
/// lines of their own.
pub struct Terminal<'a> {
    bar: Option<ProgressBar>,
    line: &'a mut dyn FnMut(&embedlab_train::EpochRecord),
}

impl<'a> Terminal<'a> {
    pub fn new(line: &'a mut dyn FnMut(&embedlab_train::EpochRecord)) -> Self {
        Self { bar: None, line }
    }
}

impl embedlab_train::trainer::Observer for Terminal<'_> {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, batches: usize) {
        let bar = ProgressBar::new(batches as u64).with_style(
            ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
            )
            .expect("template"),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
        self.bar = Some(bar);
    }
    fn advanced(&mut self, batches: usize, status: Option<&str>) {
        if let Some(b) = &self.bar {
            b.inc(batches as u64);
            if let Some(s) = status {
                b.set_message(s.to_string());
            }
        }
    }
    fn epoch_ended(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
    fn epoch_finished(&mut self, r: &embedlab_train::EpochRecord) {
        (self.line)(r)
    }
    fn note(&mut self, msg: &str) {
        eprintln!("{msg}");
    }
}

/// Peak resident memory of this process (VmHWM), in bytes, where Linux tells.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Parses `a:b` into a half-open range.
pub fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not a range like 0:5000"))?;
    let a: usize = a
        .trim()
        .parse()
        .map_err(|_| format!("'{a}' is not a number"))?;
    let b: usize = b
        .trim()
        .parse()
        .map_err(|_| format!("'{b}' is not a number"))?;
    if b <= a {
        return Err(format!("range {s} is empty"));
    }
    Ok((a, b))
}

/// Shows what opening a run folder did that the user must know (what an
/// `--overwrite` removed, outputs sent elsewhere for a read-only run): the
/// train crate records these, the pipelines print them.
pub fn show_notes(run: &embedlab_train::RunDir) {
    for n in run.notes() {
        eprintln!("{n}");
    }
}
