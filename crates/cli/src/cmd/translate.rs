//! `embedlab translate` and `embedlab export`: use a saved map.
use super::align::load_run;
use anyhow::{bail, Result};
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
    #[arg(long, short, default_value_t = 10)]
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

pub fn translate(a: &TranslateArgs, device: Device) -> Result<()> {
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
        println!("{w}:");
        for j in 0..idx.size()[1] {
            let t = idx.int64_value(&[0, j]) as usize;
            println!(
                "  {:>2}. {:<24} {:.4}",
                j + 1,
                to.word(t),
                scores.double_value(&[0, j])
            );
        }
    }
    if !unknown.is_empty() {
        bail!(
            "not in the {} vocabulary: {}",
            if a.reverse { "target" } else { "source" },
            unknown.join(", ")
        );
    }
    Ok(())
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
