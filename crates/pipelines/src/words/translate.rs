//! Using a saved map: translate words (`embedlab translate`) and write the
//! mapped vectors (`embedlab export`).
use super::supervised::load_run;
use crate::{fail, Result};
use clap::Args;
use embedlab_align::{Retrieval, Space};
use std::path::PathBuf;
use tch::Device;

#[derive(Args, Debug)]
pub struct TranslateArgs {
    /// Run folder of `align supervised`.
    #[arg(long)]
    pub run: PathBuf,
    /// Candidates to show per word.
    #[arg(long, short, default_value_t = 10, value_parser = crate::opts::int(1, 1000))]
    pub k: i64,
    /// nn, csls (k=10) or csls<k>.
    #[arg(long, default_value = "csls")]
    pub retrieval: String,
    /// Translate target words back into the source language instead.
    #[arg(long)]
    pub reverse: bool,
    /// Words to translate.
    #[arg(required = true)]
    pub words: Vec<String>,
}

/// A word and its candidates with their scores, best first.
pub type Translation = (String, Vec<(String, f64)>);

/// The top-k candidates of each known word, and the words not in the
/// vocabulary.
pub fn translate(a: &TranslateArgs, device: Device) -> Result<(Vec<Translation>, Vec<String>)> {
    if !(1..=1000).contains(&a.k) {
        fail!("-k {} is out of range: give 1..=1000", a.k);
    }
    let retrieval: Retrieval = a.retrieval.parse()?;
    let r = load_run(&a.run, device)?;
    let (from, to) = if a.reverse {
        (&r.tgt, &r.src)
    } else {
        (&r.src, &r.tgt)
    };
    let mut space = Space::new(&r.mapped, &r.target)?;
    if a.reverse {
        space = space.reversed();
    }
    let mut unknown = vec![];
    let mut out = vec![];
    for w in &a.words {
        let key = if r.emb.lowercase {
            w.to_lowercase()
        } else {
            w.clone()
        };
        let Some(i) = from.get(&key) else {
            unknown.push(w.clone());
            continue;
        };
        let (scores, idx) = space.translate(&[i], retrieval, a.k)?;
        let cands = (0..idx.size()[1])
            .map(|j| {
                (
                    to.word(idx.int64_value(&[0, j]) as usize).to_string(),
                    scores.double_value(&[0, j]),
                )
            })
            .collect();
        out.push((w.clone(), cands));
    }
    Ok((out, unknown))
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Run folder of `align supervised`.
    #[arg(long)]
    pub run: PathBuf,
    /// Mapped source vectors (.vec).
    #[arg(long)]
    pub src_out: PathBuf,
    /// Prepared target vectors (.vec), in the same space.
    #[arg(long)]
    pub tgt_out: Option<PathBuf>,
}

pub fn export(a: &ExportArgs, device: Device) -> Result<()> {
    let r = load_run(&a.run, device)?;
    r.src.with_tensor(&r.mapped)?.save_vec(&a.src_out)?;
    eprintln!("wrote {} ({} words)", a.src_out.display(), r.src.len());
    if let Some(p) = &a.tgt_out {
        r.tgt.with_tensor(&r.target)?.save_vec(p)?;
        eprintln!("wrote {} ({} words)", p.display(), r.tgt.len());
    }
    Ok(())
}
