//! `embedlab align isomorphism`: how far two embedding spaces are from
//! isomorphic, by the three measures of Vulić et al. (2020) with their
//! sizes — eigenvector similarity of the 10,000 most frequent words'
//! nearest-neighbour graphs, the Gromov–Hausdorff estimate on the 5,000 most
//! frequent, and the relational similarity of 1,000 translation pairs — after
//! their `renorm,center,renorm`. The unsupervised methods assume this
//! isomorphism; these are the numbers that say whether a pair has it.
use super::supervised::{read_dictionary, EmbArgs};
use crate::{fail, Result};
use clap::Args;
use embedlab_align::Normalization;
use embedlab_data::{DictFormat, Embeddings};
use embedlab_metrics::isomorphism::{
    eigenvector_similarity, gromov_hausdorff_estimate, relational_similarity, Isomorphism,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct IsomorphismArgs {
    #[command(flatten)]
    pub emb: EmbArgs,
    /// Translation pairs for the relational similarity (MUSE text or dictd);
    /// without it that measure is left out.
    #[arg(long)]
    pub dict: Option<PathBuf>,
    /// Read --dict the other way round (a target→source file).
    #[arg(long)]
    pub invert_dict: bool,
    /// Dictionary format (muse, dictd); default: recognised by content.
    #[arg(long)]
    pub dict_format: Option<DictFormat>,
    /// Normalisation chain of both sides before measuring.
    #[arg(long, default_value = "renorm,center,renorm")]
    pub normalize: String,
    /// Most frequent words of each side in the nearest-neighbour graphs.
    #[arg(long, default_value_t = 10_000, value_parser = crate::opts::count(3, 50_000))]
    pub evs_words: usize,
    /// Most frequent words of each side in the Gromov–Hausdorff estimate.
    #[arg(long, default_value_t = 5_000, value_parser = crate::opts::count(3, 30_000))]
    pub gh_words: usize,
    /// Translation pairs (most frequent source words first, one each) in the
    /// relational similarity.
    #[arg(long, default_value_t = 1_000, value_parser = crate::opts::count(3, 20_000))]
    pub rsim_pairs: usize,
    /// Also write the result as JSON here (atomically).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What `align isomorphism` measures, with the inputs named.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsomorphismReport {
    pub src: String,
    pub tgt: String,
    pub normalize: String,
    pub measures: Isomorphism,
    /// Relational similarity left out (no --dict): NaN in `measures`.
    pub without_dictionary: bool,
    pub seconds: f64,
}

/// The first `n` rows of a side, normalised.
fn head(e: &Embeddings, n: usize, norm: &Normalization) -> Tensor {
    let n = n.min(e.len()) as i64;
    norm.apply(&e.tensor().narrow(0, 0, n).to_kind(Kind::Float))
}

/// One pair per source word, most frequent source words first, each
/// source's most frequent translation whose target is not taken yet.
fn one_to_one(pairs: &[(usize, usize)], n: usize) -> Vec<(usize, usize)> {
    let mut sorted = pairs.to_vec();
    sorted.sort_unstable();
    let (mut src, mut tgt) = (HashSet::new(), HashSet::new());
    let mut out = Vec::new();
    for (s, t) in sorted {
        if out.len() == n {
            break;
        }
        if !src.contains(&s) && tgt.insert(t) {
            src.insert(s);
            out.push((s, t));
        }
    }
    out
}

pub fn isomorphism(
    a: &IsomorphismArgs,
    src: &Embeddings,
    tgt: &Embeddings,
) -> Result<IsomorphismReport> {
    let t0 = Instant::now();
    let norm: Normalization = a.normalize.parse()?;
    let dict = match &a.dict {
        Some(p) => Some(read_dictionary(
            p,
            a.dict_format,
            a.invert_dict,
            a.emb.lowercase,
        )?),
        None => None,
    };
    let (rsim, rsim_pairs) = match &dict {
        Some(d) => {
            let r = d.resolve(src, tgt);
            let pairs = one_to_one(&r.pairs, a.rsim_pairs);
            if pairs.len() < 3 {
                fail!(
                    "{}: only {} translation pairs have both words in the vocabularies (the relational similarity needs 3)",
                    a.dict.as_ref().unwrap().display(),
                    pairs.len()
                );
            }
            let rows = |side: &Embeddings, pick: &dyn Fn(&(usize, usize)) -> usize| {
                let idx: Vec<i64> = pairs.iter().map(|p| pick(p) as i64).collect();
                norm.apply(&side.tensor().to_kind(Kind::Float))
                    .index_select(0, &Tensor::from_slice(&idx).to_device(Device::Cpu))
            };
            let r = relational_similarity(&rows(src, &|p| p.0), &rows(tgt, &|p| p.1))?;
            (r, pairs.len())
        }
        None => (f64::NAN, 0),
    };
    let evs = eigenvector_similarity(
        &head(src, a.evs_words, &norm),
        &head(tgt, a.evs_words, &norm),
    )?;
    let gh =
        gromov_hausdorff_estimate(&head(src, a.gh_words, &norm), &head(tgt, a.gh_words, &norm))?;
    let report = IsomorphismReport {
        src: a.emb.src.display().to_string(),
        tgt: a.emb.tgt.display().to_string(),
        normalize: a.normalize.clone(),
        measures: Isomorphism {
            evs,
            gh_words: a.gh_words.min(src.len()).min(tgt.len()),
            gromov_hausdorff: gh,
            rsim_pairs,
            relational_similarity: rsim,
        },
        without_dictionary: dict.is_none(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    if let Some(p) = &a.json {
        // NaN is not JSON: the measure left out is written as null.
        let mut v = serde_json::to_value(&report)?;
        if report.without_dictionary {
            v["measures"]["relational_similarity"] = serde_json::Value::Null;
        }
        embedlab_data::atomic::write_json_atomic(p, &v)?;
    }
    Ok(report)
}

/// The measures as a text table.
pub fn table(r: &IsomorphismReport) -> String {
    let m = &r.measures;
    let mut s = format!(
        "isomorphism of {} and {} ({}):\n",
        r.src, r.tgt, r.normalize
    );
    s += &format!(
        "  eigenvector similarity  {:>10.2}  (lower: more alike; {} words a side, {} eigenvalues; graph components {} / {}, largest {} / {})\n",
        m.evs.value, m.evs.words, m.evs.k, m.evs.components.0, m.evs.components.1,
        m.evs.largest_component.0, m.evs.largest_component.1
    );
    s += &format!(
        "  the same, ascending     {:>10.2}  (the {} smallest eigenvalues, as Vulić et al.'s script orders them)\n",
        m.evs.ascending, m.evs.k_ascending
    );
    s += &format!(
        "  Gromov-Hausdorff        {:>10.4}  (lower: more alike; {} words a side)\n",
        m.gromov_hausdorff, m.gh_words
    );
    if r.without_dictionary {
        s += "  relational similarity         -     (needs --dict)\n";
    } else {
        s += &format!(
            "  relational similarity   {:>10.4}  (higher: more alike; {} translation pairs)\n",
            m.relational_similarity, m.rsim_pairs
        );
    }
    s
}
