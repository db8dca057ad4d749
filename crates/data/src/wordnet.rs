//! English parts of speech and semantic classes from WordNet 3.0's database
//! files (`index.{noun,verb,adj,adv}`, `data.*`; Debian `wordnet-base`).
//! A word's part of speech is the one with the most senses (ties: noun,
//! verb, adjective, adverb), its semantic class the lexicographer file of
//! that part of speech's first (most frequent) sense, e.g. `noun.animal`.
use crate::error::{DataError, Result};
use std::collections::HashMap;
use std::path::Path;

/// The 45 lexicographer files, by number (WordNet's `lexnames`).
pub const LEXNAMES: [&str; 45] = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
];

/// Parts of speech in the order that breaks ties.
const POS: [(&str, &str); 4] = [
    ("noun", "noun"),
    ("verb", "verb"),
    ("adj", "adjective"),
    ("adv", "adverb"),
];

/// What WordNet says of one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub pos: &'static str,
    pub class: &'static str,
    /// Senses in that part of speech.
    pub senses: usize,
}

/// Every lemma of the four parts of speech.
#[derive(Debug, Clone, Default)]
pub struct WordNet {
    words: HashMap<String, Sense>,
}

impl WordNet {
    /// Reads `dir/index.*` and `dir/data.*`.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut words: HashMap<String, Sense> = HashMap::new();
        for (file, pos) in POS {
            let index_path = dir.join(format!("index.{file}"));
            let data_path = dir.join(format!("data.{file}"));
            let index =
                std::fs::read_to_string(&index_path).map_err(|e| DataError::io(&index_path, e))?;
            let data = std::fs::read(&data_path).map_err(|e| DataError::io(&data_path, e))?;
            for (i, line) in index.lines().enumerate() {
                // The licence header lines start with two spaces.
                if line.starts_with(' ') || line.is_empty() {
                    continue;
                }
                let bad = |what: &str| DataError::parse(&index_path, i + 1, what.to_string());
                let f: Vec<&str> = line.split_whitespace().collect();
                // lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt offset...
                if f.len() < 6 {
                    return Err(bad("expected 'lemma pos synset_cnt p_cnt ... offsets'"));
                }
                let senses: usize = f[2]
                    .parse()
                    .map_err(|_| bad("synset_cnt is not a number"))?;
                let p_cnt: usize = f[3].parse().map_err(|_| bad("p_cnt is not a number"))?;
                let first = 4 + p_cnt + 2;
                let Some(offset) = f.get(first) else {
                    return Err(bad("no synset offset"));
                };
                let offset: usize = offset
                    .parse()
                    .map_err(|_| bad("synset offset is not a number"))?;
                // data line: offset lex_filenum ss_type ...
                let class = data
                    .get(offset..)
                    .and_then(|rest| {
                        let mut it = rest.splitn(3, |&b| b == b' ');
                        let off = it.next()?;
                        let lex = it.next()?;
                        (std::str::from_utf8(off).ok()?.parse::<usize>().ok()? == offset)
                            .then(|| std::str::from_utf8(lex).ok()?.parse::<usize>().ok())
                            .flatten()
                    })
                    .and_then(|n| LEXNAMES.get(n).copied())
                    .ok_or_else(|| {
                        bad(&format!(
                            "synset {offset} is not the start of a line of {} with a lexicographer file",
                            data_path.display()
                        ))
                    })?;
                let lemma = f[0].replace('_', " ");
                let s = Sense { pos, class, senses };
                words
                    .entry(lemma)
                    .and_modify(|old| {
                        if senses > old.senses {
                            *old = s
                        }
                    })
                    .or_insert(s);
            }
        }
        if words.is_empty() {
            return Err(DataError::Empty {
                path: dir.join("index.noun"),
                what: "WordNet index".into(),
            });
        }
        Ok(Self { words })
    }

    /// The word's sense, looked up lowercased.
    pub fn get(&self, word: &str) -> Option<Sense> {
        self.words
            .get(word)
            .or_else(|| self.words.get(&word.to_lowercase()))
            .copied()
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data file whose lines start at known offsets; returns (text, offsets).
    fn data(lines: &[(usize, &str)]) -> (String, Vec<usize>) {
        let mut s = String::from("  1 licence header\n");
        let mut offs = vec![];
        for (lex, rest) in lines {
            let off = s.len();
            offs.push(off);
            s += &format!("{off:08} {lex:02} {rest}\n");
        }
        (s, offs)
    }

    #[test]
    fn most_senses_wins_and_the_first_sense_names_the_class() {
        let d = tempfile::tempdir().unwrap();
        let (noun, no) = data(&[
            (5, "n 01 dog 0 000 | a dog"),
            (18, "n 01 dog 0 000 | a cad"),
        ]);
        let (verb, vo) = data(&[(38, "v 01 dog 0 000 | to chase")]);
        let (adj, ao) = data(&[(0, "s 01 quick 0 000 | fast")]);
        std::fs::write(d.path().join("data.noun"), &noun).unwrap();
        std::fs::write(d.path().join("data.verb"), &verb).unwrap();
        std::fs::write(d.path().join("data.adj"), &adj).unwrap();
        std::fs::write(d.path().join("data.adv"), "").unwrap();
        std::fs::write(
            d.path().join("index.noun"),
            format!(
                "  1 header\ndog n 2 1 @ 2 1 {:08} {:08}\nice_cream n 1 0 1 0 {:08}\n",
                no[0], no[1], no[1]
            ),
        )
        .unwrap();
        std::fs::write(
            d.path().join("index.verb"),
            format!("dog v 1 0 1 0 {:08}\n", vo[0]),
        )
        .unwrap();
        std::fs::write(
            d.path().join("index.adj"),
            format!("quick a 1 0 1 0 {:08}\n", ao[0]),
        )
        .unwrap();
        std::fs::write(d.path().join("index.adv"), "").unwrap();
        let wn = WordNet::load(d.path()).unwrap();
        assert_eq!(
            wn.get("Dog"),
            Some(Sense {
                pos: "noun",
                class: "noun.animal",
                senses: 2
            })
        );
        assert_eq!(wn.get("ice cream").unwrap().class, "noun.person");
        assert_eq!(wn.get("quick").unwrap().pos, "adjective");
        assert_eq!(wn.get("quick").unwrap().class, "adj.all");
        assert_eq!(wn.get("cat"), None);
        // An offset that is not a line start is named with the index line.
        std::fs::write(d.path().join("index.adj"), "quick a 1 0 1 0 00000003\n").unwrap();
        let e = WordNet::load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("index.adj") && e.contains("1") && e.contains("synset 3"),
            "{e}"
        );
        std::fs::remove_file(d.path().join("data.verb")).unwrap();
        let e = WordNet::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("data.verb"), "{e}");
    }

    #[test]
    #[ignore = "needs data/wordnet (scripts/fetch-data.sh wordnet); run by make test"]
    fn the_real_wordnet_knows_common_words() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/wordnet");
        let wn = WordNet::load(&dir).unwrap();
        assert!(wn.len() > 140_000, "{}", wn.len());
        assert_eq!(wn.get("dog").unwrap().class, "noun.animal");
        assert_eq!(wn.get("apple").unwrap().class, "noun.food");
        assert_eq!(wn.get("run").unwrap().pos, "verb");
        assert_eq!(wn.get("teacher").unwrap().class, "noun.person");
        assert_eq!(wn.get("quickly").unwrap().pos, "adverb");
    }
}
