//! `embedlab report RUN...`: the HTML report of any run folders.
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run folders, or folders holding runs (e.g. a demo's folder).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Where to write the report.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    #[arg(long, default_value = "embedlab report")]
    pub title: String,
}

pub fn report(a: &ReportArgs) -> Result<()> {
    embedlab_reports::html::write_report(&a.out, &a.runs, &a.title)?;
    println!("report: {}", a.out.display());
    Ok(())
}
