//! Which words translate: P@1 of an alignment run's test words, with a 95%
//! interval, by the source word's frequency band, length, part of speech,
//! proper-noun status and English semantic class, and the P@1 of the test
//! set without its proper nouns (which Kementchedjhieva et al. 2019 showed
//! inflate the margins between methods). Every alignment run reports it.
use super::supervised::EVAL_RETRIEVALS;
use crate::Result;
use clap::Args;
use embedlab_align::Space;
use embedlab_data::dictionary::{read_dictd_headwords, Headword};
use embedlab_data::wordnet::WordNet;
use embedlab_data::Embeddings;
use embedlab_metrics::{first_gold_ranks, rates_by_group, GroupRate};
use embedlab_train::{Better, Report, RunDir, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the word classes come from (shared by every alignment command).
#[derive(Args, Debug, Clone, Serialize, Deserialize, Default)]
#[command(next_help_heading = "Which words translate")]
pub struct WordClassArgs {
    /// A FreeDict/JMdict dictd dictionary whose headwords tag the source
    /// words with part of speech and proper-noun status (default: the test
    /// dictionary, when it is dictd and read as it is).
    #[arg(long)]
    #[serde(default)]
    pub word_tags: Option<PathBuf>,
    /// WordNet's database folder (index.noun, data.noun, …; `scripts/fetch-data.sh
    /// wordnet` puts it in data/wordnet) for English source words' part of
    /// speech and semantic class.
    #[arg(long)]
    #[serde(default)]
    pub wordnet: Option<PathBuf>,
}

/// Groups smaller than this are pooled in the semantic-class breakdown.
pub const MIN_CLASS: usize = 20;

/// Source-frequency bands (row ranks; rows are in frequency order).
const FREQ: [(usize, &str); 6] = [
    (1_000, "rank 0–1k"),
    (5_000, "rank 1k–5k"),
    (10_000, "rank 5k–10k"),
    (20_000, "rank 10k–20k"),
    (50_000, "rank 20k–50k"),
    (usize::MAX, "rank 50k+"),
];
/// Upper bounds are exclusive, as for the ranks.
const LENGTHS: [(usize, &str); 4] = [
    (5, "1–4 characters"),
    (8, "5–7 characters"),
    (11, "8–10 characters"),
    (usize::MAX, "11+ characters"),
];
const POS_ORDER: [&str; 7] = [
    "noun",
    "verb",
    "adjective",
    "adverb",
    "proper noun",
    "other",
    "untagged",
];

/// One retrieval method's breakdowns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WhichWords {
    pub retrieval: String,
    /// (attribute, its groups) in a fixed order.
    pub breakdowns: Vec<(String, Vec<GroupRate>)>,
    /// P@1 over the test words that are not proper nouns, when tagged.
    pub without_proper_nouns: Option<GroupRate>,
}

fn band(v: usize, bands: &[(usize, &'static str)]) -> &'static str {
    bands
        .iter()
        .find(|(hi, _)| v < *hi || *hi == usize::MAX)
        .map(|b| b.1)
        .unwrap_or("?")
}

/// Where the headword tags come from, if anywhere: `--word-tags`, else the
/// test dictionary when it is a dictd file not read inverted.
pub fn tag_source(
    args: &WordClassArgs,
    test_dict: Option<&Path>,
    inverted: bool,
) -> Option<PathBuf> {
    if let Some(p) = &args.word_tags {
        return Some(p.clone());
    }
    let p = test_dict?;
    let dictd = p.extension().is_some_and(|e| e == "index" || e == "dz")
        || p.with_extension("index").exists();
    (dictd && !inverted).then(|| p.to_path_buf())
}

/// The breakdowns of `test` in `space` for every evaluation method; logged.
pub fn which_words(
    run: &RunDir,
    args: &WordClassArgs,
    tags_from: Option<&Path>,
    space: &mut Space,
    test: &[(usize, usize)],
    src: &Embeddings,
) -> Result<Vec<WhichWords>> {
    let tags: Option<BTreeMap<String, Headword>> = match tags_from {
        Some(p) => Some(read_dictd_headwords(p)?),
        None => None,
    };
    let wn = match &args.wordnet {
        Some(d) => Some(WordNet::load(d)?),
        None => None,
    };
    let mut out = vec![];
    for r in EVAL_RETRIEVALS {
        let ranks = first_gold_ranks(space, test, r, 1)?;
        let words: Vec<(&str, bool)> = ranks
            .iter()
            .map(|&(q, first)| (src.word(q), first.is_some()))
            .collect();
        let hits = |f: &dyn Fn(usize, &str) -> &'static str| -> Vec<(&'static str, bool)> {
            ranks
                .iter()
                .zip(&words)
                .map(|(&(q, _), &(w, h))| (f(q, w), h))
                .collect()
        };
        let freq_order: Vec<&str> = FREQ.iter().map(|b| b.1).collect();
        let len_order: Vec<&str> = LENGTHS.iter().map(|b| b.1).collect();
        let mut breakdowns = vec![
            (
                "source frequency".to_string(),
                rates_by_group(hits(&|q, _| band(q, &FREQ)), &freq_order),
            ),
            (
                "word length".to_string(),
                rates_by_group(hits(&|_, w| band(w.chars().count(), &LENGTHS)), &len_order),
            ),
        ];
        let mut without_proper_nouns = None;
        if let Some(t) = &tags {
            let info = |w: &str| t.get(&w.to_lowercase()).copied();
            let proper = hits(&|_, w| match info(w) {
                Some(h) if h.proper => "proper noun",
                Some(_) => "common word",
                None => "not a headword",
            });
            breakdowns.push((
                "proper nouns (dictionary)".to_string(),
                rates_by_group(
                    proper.iter().copied(),
                    &["common word", "proper noun", "not a headword"],
                ),
            ));
            without_proper_nouns = rates_by_group(
                proper.iter().map(|&(g, h)| {
                    (
                        if g == "proper noun" {
                            "proper noun"
                        } else {
                            "without proper nouns"
                        },
                        h,
                    )
                }),
                &["without proper nouns"],
            )
            .into_iter()
            .find(|g| g.group == "without proper nouns");
            breakdowns.push((
                "part of speech (dictionary)".to_string(),
                rates_by_group(
                    hits(&|_, w| info(w).and_then(|h| h.pos).unwrap_or("untagged")),
                    &POS_ORDER,
                ),
            ));
        }
        if let Some(wn) = &wn {
            breakdowns.push((
                "part of speech (WordNet)".to_string(),
                rates_by_group(
                    hits(&|_, w| wn.get(w).map(|s| s.pos).unwrap_or("not in WordNet")),
                    &["noun", "verb", "adjective", "adverb", "not in WordNet"],
                ),
            ));
            let classes = hits(&|_, w| wn.get(w).map(|s| s.class).unwrap_or("not in WordNet"));
            let mut size: BTreeMap<&str, usize> = BTreeMap::new();
            for (c, _) in &classes {
                *size.entry(c).or_default() += 1;
            }
            let pooled = format!("other classes (fewer than {MIN_CLASS} words each)");
            let mut rates = rates_by_group(
                classes.iter().map(|&(c, h)| {
                    (
                        if size[c] < MIN_CLASS {
                            pooled.as_str()
                        } else {
                            c
                        },
                        h,
                    )
                }),
                &[],
            );
            // Largest groups first, the pooled and unknown ones last.
            rates.sort_by_key(|g| {
                (
                    g.group == pooled || g.group == "not in WordNet",
                    std::cmp::Reverse(g.words),
                )
            });
            breakdowns.push(("semantic class (WordNet)".to_string(), rates));
        }
        let w = WhichWords {
            retrieval: r.name(),
            breakdowns,
            without_proper_nouns,
        };
        run.log(&serde_json::json!({"event": "which_words", "which_words": w}))?;
        out.push(w);
    }
    Ok(out)
}

fn cell(g: &GroupRate) -> String {
    format!("{:.1} [{:.1}, {:.1}]", g.rate, g.low, g.high)
}

/// The report's table, figure (`which-words.png` in the run folder) and
/// metrics: one row per group, a column (a colour) per method.
pub fn add_to_report(r: &mut Report, which: &[WhichWords], run: &RunDir) -> Result<()> {
    let Some(first) = which.first() else {
        return Ok(());
    };
    let mut rows = vec![];
    for (a, (attr, groups)) in first.breakdowns.iter().enumerate() {
        for (i, g) in groups.iter().enumerate() {
            let mut row = vec![attr.clone(), g.group.clone(), g.words.to_string()];
            for w in which {
                row.push(w.breakdowns[a].1.get(i).map(cell).unwrap_or_default());
            }
            rows.push(row);
        }
    }
    for w in which {
        let name = if w.retrieval.starts_with("csls") {
            "CSLS"
        } else {
            "NN"
        };
        if let Some(g) = &w.without_proper_nouns {
            r.metric(
                &format!("{name} P@1 without proper nouns"),
                g.rate,
                "%",
                Better::Higher,
            )
            .with_note(format!("{} test words that are not proper nouns", g.words));
        }
    }
    let mut columns: Vec<String> = ["attribute", "group", "test words"]
        .map(String::from)
        .to_vec();
    columns.extend(
        which
            .iter()
            .map(|w| format!("{} P@1 % [95% interval]", w.retrieval.to_uppercase())),
    );
    r.tables.push(Table {
        title: "Which words translate: P@1 of the test words by kind of source word (Wilson 95% intervals)".into(),
        columns,
        rows,
        highlight: vec![],
        open: false,
    });
    let mut rows = vec![];
    for (a, (attr, groups)) in first.breakdowns.iter().enumerate() {
        for (i, g) in groups.iter().enumerate() {
            if g.words == 0 {
                continue;
            }
            rows.push(embedlab_reports::intervals::IntervalRow {
                label: format!("{attr}: {} ({})", g.group, g.words),
                values: which
                    .iter()
                    .map(|w| w.breakdowns[a].1.get(i).map(|g| (g.rate, g.low, g.high)))
                    .collect(),
            });
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let series: Vec<String> = which.iter().map(|w| w.retrieval.to_uppercase()).collect();
    let file = "which-words.png";
    embedlab_reports::intervals::save_intervals(
        &run.file(file),
        "Which words translate: P@1 by kind of source word",
        &series,
        &rows,
    )?;
    r.figures.push(embedlab_train::Figure {
        file: file.into(),
        caption: format!(
            "P@1 of the test words by kind of source word ({}), 95% Wilson intervals; the number of test words in brackets",
            series.join(", ")
        ),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_have_exclusive_upper_bounds() {
        assert_eq!(band(0, &FREQ), "rank 0–1k");
        assert_eq!(band(999, &FREQ), "rank 0–1k");
        assert_eq!(band(1000, &FREQ), "rank 1k–5k");
        assert_eq!(band(10_000_000, &FREQ), "rank 50k+");
        assert_eq!(band(4, &LENGTHS), "1–4 characters");
        assert_eq!(band(5, &LENGTHS), "5–7 characters");
        assert_eq!(band(10, &LENGTHS), "8–10 characters");
        assert_eq!(band(11, &LENGTHS), "11+ characters");
    }

    #[test]
    fn tags_come_from_a_dictd_test_dictionary_read_as_it_is() {
        let none = WordClassArgs::default();
        let d = Path::new("x/freedict-eng-fra.index");
        assert_eq!(tag_source(&none, Some(d), false).as_deref(), Some(d));
        assert_eq!(tag_source(&none, Some(d), true), None);
        assert_eq!(
            tag_source(&none, Some(Path::new("x/test.txt")), false),
            None
        );
        let given = WordClassArgs {
            word_tags: Some("t.index".into()),
            wordnet: None,
        };
        assert_eq!(
            tag_source(&given, None, true),
            Some(PathBuf::from("t.index"))
        );
    }
}
