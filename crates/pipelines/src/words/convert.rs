//! `embedlab convert`: embeddings and dictionaries between formats.
use crate::Result;
use clap::{Args, Subcommand};
use embedlab_align::supervised::Prep;
use embedlab_align::Normalization;
use embedlab_data::{Dictionary, EmbeddingFormat, Embeddings, LoadOptions};
use std::path::PathBuf;
use tch::Device;

#[derive(Subcommand, Debug)]
pub enum ConvertCmd {
    /// Any embedding format → .vec text, optionally reduced (PCA) and normalised.
    Embeddings(ConvertEmb),
    /// MUSE or dictd dictionary → MUSE text (`src tgt` a line).
    Dict(ConvertDict),
}

#[derive(Args, Debug)]
pub struct ConvertEmb {
    pub input: PathBuf,
    pub output: PathBuf,
    #[arg(long)]
    pub format: Option<EmbeddingFormat>,
    /// Word index for .npy input.
    #[arg(long)]
    pub words: Option<PathBuf>,
    #[arg(long, value_parser = crate::opts::count(1, 100_000_000))]
    pub max_vocab: Option<usize>,
    #[arg(long)]
    pub lowercase: bool,
    /// Reduce to K dimensions with PCA.
    #[arg(long, value_parser = crate::opts::count(1, 100_000))]
    pub pca: Option<usize>,
    /// Normalisation chain applied after PCA (e.g. renorm,center,renorm).
    #[arg(long, default_value = "none")]
    pub normalize: String,
}

#[derive(Args, Debug)]
pub struct ConvertDict {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Swap the two columns.
    #[arg(long)]
    pub invert: bool,
    #[arg(long)]
    pub lowercase: bool,
}

pub fn convert(cmd: &ConvertCmd, device: Device) -> Result<()> {
    match cmd {
        ConvertCmd::Embeddings(a) => {
            let opts = LoadOptions {
                max_vocab: a.max_vocab,
                lowercase: a.lowercase,
                dedupe: true,
                format: a.format,
                words: a.words.clone(),
            };
            let e = Embeddings::load(&a.input, &opts)?;
            let prep = Prep {
                pca: a.pca,
                normalize: a.normalize.parse::<Normalization>()?,
            };
            let (x, kept) = prep.apply(&e, device)?;
            e.with_tensor(&x)?.save_vec(&a.output)?;
            eprintln!(
                "wrote {}: {} words × {}{}",
                a.output.display(),
                e.len(),
                x.size()[1],
                kept.map(|k| format!(" (PCA kept {:.1}% of the variance)", 100.0 * k))
                    .unwrap_or_default()
            );
        }
        ConvertCmd::Dict(a) => {
            let mut d = Dictionary::load(&a.input)?;
            if a.invert {
                d = d.inverted();
            }
            if a.lowercase {
                d = d.lowercased();
            }
            d.save_muse(&a.output)?;
            eprintln!("wrote {}: {} pairs", a.output.display(), d.pairs.len());
        }
    }
    Ok(())
}
