//! The `embedlab` binary (see the `embedlab_cli` library).
fn main() -> anyhow::Result<()> {
    // Output piped into `head` and closed: end quietly, as Unix tools do,
    // instead of panicking on the failed write (Rust ignores SIGPIPE).
    // SAFETY: restores the default action of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    embedlab_cli::run()
}
