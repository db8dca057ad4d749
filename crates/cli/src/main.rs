//! The `embedlab` binary (see the `embedlab_cli` library).
fn main() -> anyhow::Result<()> {
    embedlab_cli::run()
}
