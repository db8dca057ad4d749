use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// A spinner for a step of unknown length; finish it with `done`.
pub fn spinner(msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").unwrap());
    pb.set_message(msg.into());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A bar over `n` steps.
pub fn bar(n: u64, msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new(n);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} [{elapsed}<{eta}]")
            .unwrap()
            .progress_chars("=> "),
    );
    pb.set_message(msg.into());
    pb
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

/// Makes glibc's malloc keep large freed blocks for reuse. libtorch
/// allocates its temporaries afresh on every operation; by default glibc
/// serves blocks over 128 KiB with `mmap` and returns them on `free`, so a
/// training step touching a few 2048×2048 matrices pays for zeroing fresh
/// pages every time (the adversarial discriminator step ran 20–25% slower).
/// Freed blocks of up to 32 MiB (glibc's limit) now stay in the heap.
pub fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; called once at start-up.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
