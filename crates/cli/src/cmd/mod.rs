//! Argument parsing and printing, one module per group of subcommands.
pub mod images;
pub mod report;
pub mod study;
pub mod words;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// The options given on the command line (not defaults) of the innermost
/// subcommand reached by `path`, e.g. `["train", "vae"]`.
pub fn given(cmd: &Command, matches: &ArgMatches, path: &[&str]) -> Vec<String> {
    let (mut m, mut c) = (matches, cmd);
    for p in path {
        match (m.subcommand_matches(p), c.find_subcommand(p)) {
            (Some(sm), Some(sc)) => {
                m = sm;
                c = sc;
            }
            _ => return vec![],
        }
    }
    // Arguments only (a flattened struct also names an argument group).
    c.get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| m.value_source(id) == Some(ValueSource::CommandLine))
        .map(str::to_string)
        .collect()
}

/// Refuses, on `--resume`, any option but those a resumed run may change:
/// the run keeps the options it was made with (its config.json).
pub fn check_resume_options(given: &[String], may_change: &[&str]) -> anyhow::Result<()> {
    let fixed: Vec<String> = given
        .iter()
        .filter(|g| {
            !may_change.contains(&g.as_str())
                && !matches!(g.as_str(), "resume" | "seed" | "device" | "threads")
        })
        .map(|g| format!("--{}", g.replace('_', "-")))
        .collect();
    if !fixed.is_empty() {
        anyhow::bail!(
            "{} cannot change on --resume: a resumed run keeps the options it was made with (see its config.json); only {} may change",
            fixed.join(", "),
            may_change
                .iter()
                .map(|m| format!("--{}", m.replace('_', "-")))
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    Ok(())
}
