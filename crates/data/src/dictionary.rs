//! Bilingual dictionaries: MUSE text (`src tgt` a line) and FreeDict dictd
//! (`.index` + `.dict.dz`), resolution against two vocabularies, and MUSE-style
//! train/test splits by source-word frequency rank.
use crate::atomic::write_atomic;
use crate::embeddings::Embeddings;
use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Word pairs in file order; one source word may have several translations.
#[derive(Debug, Clone, PartialEq)]
pub struct Dictionary {
    pub pairs: Vec<(String, String)>,
}

/// Dictionary file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DictFormat {
    /// MUSE text: `source target` a line.
    Muse,
    /// FreeDict dictd: `<stem>.index` + `<stem>.dict.dz` (or `.dict`).
    Dictd,
}

impl std::str::FromStr for DictFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "muse" | "text" => Ok(Self::Muse),
            "dictd" | "freedict" => Ok(Self::Dictd),
            _ => Err(format!("unknown dictionary format '{s}' (muse, dictd)")),
        }
    }
}

/// The path without a dictd suffix.
fn dictd_stem(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.strip_suffix(".index")
        .or_else(|| s.strip_suffix(".dict.dz"))
        .or_else(|| s.strip_suffix(".dict"))
        .unwrap_or(&s)
        .to_string()
}

impl Dictionary {
    /// Reads a dictionary, recognising its format by content: a `.index`
    /// file, or any file with a `<stem>.index` beside it, is dictd; other
    /// files are MUSE text. When neither reading works, the error says what
    /// was tried.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_as(path, None)
    }

    /// Reads a dictionary in the given format, or recognises it (`None`).
    pub fn load_as(path: &Path, format: Option<DictFormat>) -> Result<Self> {
        match format {
            Some(DictFormat::Muse) => return Self::read_muse(path),
            Some(DictFormat::Dictd) => return Self::read_dictd(path),
            None => {}
        }
        let name = path.to_string_lossy();
        let index = PathBuf::from(format!("{}.index", dictd_stem(path)));
        if name.ends_with(".index") || index.is_file() {
            return Self::read_dictd(path);
        }
        match Self::read_muse(path) {
            Ok(d) => Ok(d),
            Err(e @ (DataError::Io { .. } | DataError::Empty { .. })) => Err(e),
            Err(e) if name.ends_with(".dict") || name.ends_with(".dict.dz") => {
                Err(DataError::format(
                    path,
                    format!(
                        "neither a dictd dictionary (no {} beside it) nor a MUSE text dictionary ({e}); force one with --dict-format muse|dictd",
                        index.display()
                    ),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// MUSE format: two whitespace-separated words a line; blank lines skipped.
    pub fn read_muse(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            DataError::format(
                path,
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            )
        })?;
        let mut pairs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let toks: Vec<&str> = line.split_whitespace().collect();
            match toks.len() {
                0 => continue,
                2 => pairs.push((toks[0].to_string(), toks[1].to_string())),
                n => {
                    return Err(DataError::parse(
                        path,
                        i + 1,
                        format!(
                            "expected 'source target', found {n} fields: '{}'",
                            line.trim()
                        ),
                    ))
                }
            }
        }
        if pairs.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
                what: "dictionary".into(),
            });
        }
        Ok(Self { pairs })
    }

    /// FreeDict dictd: `path` may name the `.index`, the `.dict.dz`/`.dict`, or share their stem.
    /// Keeps single-word headwords and single-word translations.
    pub fn read_dictd(path: &Path) -> Result<Self> {
        let mut pairs = Vec::new();
        let index = for_each_dictd_entry(path, |head, entry, wikdict| {
            for t in dictd_translations(entry, wikdict) {
                pairs.push((head.to_string(), t));
            }
        })?;
        if pairs.is_empty() {
            return Err(DataError::Empty {
                path: index,
                what: "dictionary".into(),
            });
        }
        let mut seen = HashSet::new();
        pairs.retain(|p| seen.insert(p.clone()));
        Ok(Self { pairs })
    }

    /// Target→source pairs.
    pub fn inverted(&self) -> Self {
        Self {
            pairs: self
                .pairs
                .iter()
                .map(|(a, b)| (b.clone(), a.clone()))
                .collect(),
        }
    }

    /// Lowercased pairs, repeats removed.
    pub fn lowercased(&self) -> Self {
        let mut seen = HashSet::new();
        let pairs = self
            .pairs
            .iter()
            .map(|(a, b)| (a.to_lowercase(), b.to_lowercase()))
            .filter(|p| seen.insert(p.clone()))
            .collect();
        Self { pairs }
    }

    /// Union with another dictionary, keeping this one's order first.
    pub fn merged(&self, other: &Self) -> Self {
        let mut seen: HashSet<(String, String)> = self.pairs.iter().cloned().collect();
        let mut pairs = self.pairs.clone();
        pairs.extend(
            other
                .pairs
                .iter()
                .filter(|p| seen.insert((*p).clone()))
                .cloned(),
        );
        Self { pairs }
    }

    /// Writes MUSE format atomically.
    pub fn save_muse(&self, path: &Path) -> Result<()> {
        write_atomic(path, |w: &mut dyn Write| {
            for (a, b) in &self.pairs {
                writeln!(w, "{a} {b}")?;
            }
            Ok(())
        })
    }

    /// Looks the pairs up in two vocabularies.
    pub fn resolve(&self, src: &Embeddings, tgt: &Embeddings) -> Resolved {
        let mut pairs = Vec::new();
        let (mut missing_src, mut missing_tgt) = (HashSet::new(), HashSet::new());
        let mut seen = HashSet::new();
        for (a, b) in &self.pairs {
            match (src.get(a), tgt.get(b)) {
                (Some(i), Some(j)) => {
                    if seen.insert((i, j)) {
                        pairs.push((i, j))
                    }
                }
                (None, _) => {
                    missing_src.insert(a.as_str());
                }
                (Some(_), None) => {
                    missing_tgt.insert(b.as_str());
                }
            }
        }
        let src_words: HashSet<&str> = self.pairs.iter().map(|p| p.0.as_str()).collect();
        let found: HashSet<usize> = pairs.iter().map(|p| p.0).collect();
        Resolved {
            stats: ResolveStats {
                pairs_in_file: self.pairs.len(),
                source_words_in_file: src_words.len(),
                pairs_found: pairs.len(),
                source_words_found: found.len(),
                source_words_missing: missing_src.len(),
                target_words_missing: missing_tgt.len(),
            },
            pairs,
        }
    }
}

/// Calls `f(headword, entry text)` for each single-word entry of a dictd
/// dictionary; returns the index file's path.
/// Calls `f(headword, entry, wikdict)` for each single-word headword;
/// `wikdict` says the dictionary is a FreeDict+WikDict one (its short name
/// says so), whose senses each carry a gloss line.
fn for_each_dictd_entry(path: &Path, mut f: impl FnMut(&str, &str, bool)) -> Result<PathBuf> {
    let stem = dictd_stem(path);
    let index = PathBuf::from(format!("{stem}.index"));
    let dz = PathBuf::from(format!("{stem}.dict.dz"));
    let plain = PathBuf::from(format!("{stem}.dict"));
    let body = if dz.exists() {
        let file = std::fs::File::open(&dz).map_err(|e| DataError::io(&dz, e))?;
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(file)
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(&dz, format!("corrupt dictzip data: {e}")))?;
        out
    } else {
        std::fs::read(&plain).map_err(|e| DataError::io(&plain, e))?
    };
    let idx = std::fs::read_to_string(&index).map_err(|e| DataError::io(&index, e))?;
    let wikdict = idx
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let short = c.len() >= 3 && matches!(c[0], "00databaseshort" | "00-database-short");
            if !short {
                return None;
            }
            Some((b64(c[1])?, b64(c[2])?))
        })
        .next()
        .and_then(|(o, l)| body.get(o..o.checked_add(l)?))
        .is_some_and(|b| String::from_utf8_lossy(b).contains("WikDict"));
    for (i, line) in idx.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 {
            return Err(DataError::parse(
                &index,
                i + 1,
                "expected 'headword<TAB>offset<TAB>length'",
            ));
        }
        let head = cols[0].trim();
        if head.starts_with("00database") || head.starts_with("00-database") {
            continue;
        }
        let (off, len) = match (b64(cols[1]), b64(cols[2])) {
            (Some(o), Some(l)) => (o, l),
            _ => {
                return Err(DataError::parse(
                    &index,
                    i + 1,
                    "offset/length are not dictd base64",
                ))
            }
        };
        if off.checked_add(len).is_none_or(|end| end > body.len()) {
            return Err(DataError::parse(
                &index,
                i + 1,
                format!(
                    "entry '{head}' points past the end of the dictionary data ({} bytes)",
                    body.len()
                ),
            ));
        }
        if head.contains(' ') || head.is_empty() {
            continue;
        }
        f(
            head,
            &String::from_utf8_lossy(&body[off..off + len]),
            wikdict,
        );
    }
    Ok(index)
}

/// What a dictionary says of a headword besides its translations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headword {
    /// The part of speech of its first tagged entry: noun, verb, adjective,
    /// adverb, proper noun or other.
    pub pos: Option<&'static str>,
    /// Every entry of the word is a proper noun: tagged `<pn>`, or (in a
    /// script with case) written with a capital first letter.
    pub proper: bool,
}

/// The part of speech a FreeDict tag (`n`, `vt`, `adj`, `pn`, …) or a
/// JMdict description (`noun (common) (futsuumeishi)`, `Ichidan verb`, …) names.
pub fn pos_of_tag(tag: &str) -> Option<&'static str> {
    let t = tag.trim().to_lowercase();
    Some(match t.as_str() {
        "" => return None,
        "n" | "noun" => "noun",
        "pn" | "proper noun" => "proper noun",
        "v" | "vt" | "vi" | "verb" => "verb",
        "adj" | "adjective" => "adjective",
        "adv" | "adverb" => "adverb",
        _ if t.contains("proper") => "proper noun",
        _ if t.starts_with("pronoun") => "other",
        _ if t.contains("adjectiv") || t.starts_with("adjective") => "adjective",
        _ if t.contains("adverb") => "adverb",
        _ if t.contains("verb") => "verb",
        _ if t.contains("noun") => "noun",
        _ => "other",
    })
}

/// The tags of an entry: `<…>` on its first line (FreeDict), else the first
/// parenthesised description opening one of the next lines (JMdict).
fn entry_tags(entry: &str) -> Vec<String> {
    let mut lines = entry.lines();
    let first = lines.next().unwrap_or("");
    let mut tags = vec![];
    let mut rest = first;
    while let Some(a) = rest.find('<') {
        let Some(b) = rest[a..].find('>') else { break };
        tags.push(rest[a + 1..a + b].to_string());
        rest = &rest[a + b + 1..];
    }
    if tags.is_empty() {
        for l in lines.take(3) {
            let mut l = l.trim();
            if let Some((num, r)) = l.split_once(". ") {
                if !num.is_empty() && num.bytes().all(|c| c.is_ascii_digit()) {
                    l = r.trim();
                }
            }
            if let Some(inner) = l.strip_prefix('(') {
                tags.push(inner.split(['(', ')']).next().unwrap_or("").to_string());
                break;
            }
        }
    }
    tags
}

/// Each headword's part of speech and proper-noun status, keyed by the
/// headword lowercased.
pub fn read_dictd_headwords(path: &Path) -> Result<BTreeMap<String, Headword>> {
    let mut out: BTreeMap<String, Headword> = BTreeMap::new();
    for_each_dictd_entry(path, |head, entry, _| {
        let tags = entry_tags(entry);
        let pos = tags.iter().find_map(|t| pos_of_tag(t));
        // dictd indexes are lowercased: the entry's first line keeps the case.
        let written = entry
            .split_whitespace()
            .next()
            .filter(|w| w.to_lowercase() == head.to_lowercase())
            .unwrap_or(head);
        let capital = written.chars().next().is_some_and(char::is_uppercase);
        let proper = pos == Some("proper noun") || (capital && pos.is_none_or(|p| p == "noun"));
        let h = out
            .entry(head.to_lowercase())
            .or_insert(Headword { pos, proper });
        h.proper &= proper;
        if h.pos.is_none() {
            h.pos = pos;
        }
    })?;
    Ok(out)
}

/// Decodes dictd's base64 numbers (alphabet A–Z a–z 0–9 + /, most significant first).
fn b64(s: &str) -> Option<usize> {
    let mut v: usize = 0;
    for c in s.bytes() {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as usize;
        v = v.checked_mul(64)?.checked_add(d)?;
    }
    (!s.is_empty()).then_some(v)
}

/// The line's sense number (`3.` or `3. …`) removed, when it has one.
fn sense_number(line: &str) -> Option<&str> {
    let l = line.trim();
    let (num, rest) = l.split_once('.')?;
    (!num.is_empty()
        && num.bytes().all(|c| c.is_ascii_digit())
        && (rest.is_empty() || rest.starts_with(' ')))
    .then(|| rest.trim())
}

/// Single-word translations from a FreeDict entry: line 1 is the headword
/// (with pronunciation and part of speech), later lines are senses, optionally
/// numbered `1.`, each a comma/semicolon-separated list. In a WikDict
/// dictionary each sense line is followed by a gloss in the source language
/// (`koira <n>` / `dog, hound` / `Canidae-heimon … eläin`): only the first
/// line and the numbered ones are translations, and a sense's trailing
/// cross-reference number (`talo 2.`) is dropped.
fn dictd_translations(entry: &str, wikdict: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (k, line) in entry.lines().skip(1).enumerate() {
        let numbered = sense_number(line);
        if wikdict && k > 0 && numbered.is_none() {
            continue;
        }
        let mut l = numbered.unwrap_or(line.trim());
        if wikdict {
            if let Some((rest, last)) = l.rsplit_once(' ') {
                if sense_number(last) == Some("") {
                    l = rest;
                }
            }
        }
        // Drop parenthesised notes.
        let mut clean = String::with_capacity(l.len());
        let mut depth = 0;
        for ch in l.chars() {
            match ch {
                '(' | '[' | '<' => depth += 1,
                ')' | ']' | '>' => depth = (depth - 1).max(0),
                _ if depth == 0 => clean.push(ch),
                _ => {}
            }
        }
        for t in clean.split([',', ';']) {
            let t = t.trim();
            if !t.is_empty() && !t.contains(char::is_whitespace) && !t.contains("...") {
                out.push(t.to_string());
            }
        }
    }
    out
}

/// What of a dictionary two vocabularies cover.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResolveStats {
    pub pairs_in_file: usize,
    pub source_words_in_file: usize,
    pub pairs_found: usize,
    pub source_words_found: usize,
    pub source_words_missing: usize,
    pub target_words_missing: usize,
}

/// A dictionary as (source row, target row) pairs.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub pairs: Vec<(usize, usize)>,
    pub stats: ResolveStats,
}

/// Train and test pairs split by source-word frequency rank.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Vec<(usize, usize)>,
    pub test: Vec<(usize, usize)>,
    /// Rank ranges (over the dictionary's found source words) actually used.
    pub train_range: (usize, usize),
    pub test_range: (usize, usize),
}

impl Resolved {
    /// Source rows in frequency order (lower row = more frequent).
    pub fn source_words(&self) -> Vec<usize> {
        let mut s: Vec<usize> = self
            .pairs
            .iter()
            .map(|p| p.0)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        s.sort_unstable();
        s
    }

    /// The pairs whose source word's frequency rank (among this dictionary's
    /// source words) lies in `ranks`, sorted.
    pub fn in_ranks(&self, ranks: (usize, usize)) -> Vec<(usize, usize)> {
        let words = self.source_words();
        let lo = ranks.0.min(words.len());
        let hi = ranks.1.min(words.len());
        let set: HashSet<usize> = words[lo..hi].iter().copied().collect();
        let mut v: Vec<_> = self
            .pairs
            .iter()
            .filter(|p| set.contains(&p.0))
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// MUSE-style split: the source words sorted by frequency; train takes ranks
    /// `train`, test takes ranks `test` (disjoint); each keeps all translations.
    pub fn split_ranges(&self, train: (usize, usize), test: (usize, usize)) -> Result<Split> {
        if train.0 < test.1 && test.0 < train.1 {
            return Err(DataError::Invalid(format!(
                "train ranks {train:?} overlap test ranks {test:?}"
            )));
        }
        let words = self.source_words();
        let (tr, te) = (self.in_ranks(train), self.in_ranks(test));
        if tr.is_empty() {
            return Err(DataError::Invalid(format!(
                "no training pairs: the dictionary has {} usable source words, train ranks are {train:?}",
                words.len()
            )));
        }
        if te.is_empty() {
            return Err(DataError::Invalid(format!(
                "no test pairs: the dictionary has {} usable source words, test ranks are {test:?}",
                words.len()
            )));
        }
        let clip = |r: (usize, usize)| (r.0.min(words.len()), r.1.min(words.len()));
        Ok(Split {
            train: tr,
            test: te,
            train_range: clip(train),
            test_range: clip(test),
        })
    }

    /// MUSE's default (train 0–5000, test 5000–6500) where the dictionary is
    /// large enough; otherwise the last `test_size` source words are the test set.
    pub fn split_default(&self, train_max: usize, test_size: usize) -> Result<Split> {
        let n = self.source_words().len();
        if n <= test_size {
            return Err(DataError::Invalid(format!(
                "only {n} source words of the dictionary are in both vocabularies; a test set of {test_size} leaves none to train on"
            )));
        }
        if n >= train_max + test_size {
            self.split_ranges((0, train_max), (train_max, train_max + test_size))
        } else {
            self.split_ranges((0, n - test_size), (n - test_size, n))
        }
    }
}

/// Groups pairs by source row: source → all gold targets.
pub fn group_by_source(pairs: &[(usize, usize)]) -> BTreeMap<usize, Vec<usize>> {
    let mut m: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(s, t) in pairs {
        m.entry(s).or_default().push(t);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headwords_carry_their_part_of_speech_and_proper_noun_status() {
        let entries = [
            ("abaisser", "abaisser /abɛse/ <v>\n1. abase\n"),
            ("Adam", "Adam /ædəm/\nAdam\n"),
            ("adam", "adam\n1. (noun) a drug\n"),
            ("Paris", "Paris <pn>\nパリ\n"),
            ("Lent", "Lent <n>\ncarême\n"),
            ("lebanon", "Lebanon /lebənən/\nLiban\n"),
            (
                "あどけない",
                "あどけない /x/\n(adjective (keiyoushi))\ninnocent\n",
            ),
            ("あの人", "あの人 /x/\n1. (pronoun)\nhe, she\n"),
            (
                "たべる",
                "たべる\n1. (Ichidan verb)\n (transitive verb)\nto eat\n",
            ),
            ("two words", "two words <n>\nx\n"),
        ];
        let d = tempfile::tempdir().unwrap();
        let (mut body, mut index) = (String::new(), String::new());
        for (h, e) in entries {
            let off = body.len();
            body += e;
            index += &format!(
                "{h}\t{}\t{}\n",
                embedlab_testkit::dictd_b64(off),
                embedlab_testkit::dictd_b64(e.len())
            );
        }
        std::fs::write(d.path().join("t.dict"), body).unwrap();
        std::fs::write(d.path().join("t.index"), index).unwrap();
        let h = read_dictd_headwords(&d.path().join("t.index")).unwrap();
        let get = |w: &str| h[w];
        assert_eq!(
            get("abaisser"),
            Headword {
                pos: Some("verb"),
                proper: false
            }
        );
        // Adam the name and adam the drug share a key: not only a proper noun.
        assert_eq!(
            get("adam"),
            Headword {
                pos: Some("noun"),
                proper: false
            }
        );
        assert_eq!(
            get("paris"),
            Headword {
                pos: Some("proper noun"),
                proper: true
            }
        );
        assert_eq!(
            get("lent"),
            Headword {
                pos: Some("noun"),
                proper: true
            }
        );
        assert_eq!(get("あどけない").pos, Some("adjective"));
        assert_eq!(get("あの人").pos, Some("other"));
        assert_eq!(get("たべる").pos, Some("verb"));
        assert!(!get("たべる").proper);
        assert!(!h.contains_key("two words"));
    }

    #[test]
    fn dictd_base64_and_entries() {
        assert_eq!(b64("A"), Some(0));
        assert_eq!(b64("BA"), Some(64));
        assert_eq!(b64("b"), Some(27));
        assert_eq!(b64("a-b"), None);
        let e = "run /rʌn/\n1. fonctionner\n2. fuite (de gaz)\n3. s'élancer, se précipiter\n";
        assert_eq!(
            dictd_translations(e, false),
            vec!["fonctionner", "fuite", "s'élancer"]
        );
        // WikDict: a gloss after each sense, in the source language.
        let w = "koira /kˈoira/ <n>\ndog, hound\nCanidae-heimon eläin, kotieläin\n";
        assert_eq!(dictd_translations(w, true), vec!["dog", "hound"]);
        assert_eq!(
            dictd_translations(w, false),
            vec!["dog", "hound", "kotieläin"]
        );
        let w = "house /haʊs/ <n>\n1. huone\nastrology: one of, the divisions\n2. kamari, talo\ndebating chamber\n7. koti 2.\nhuman abode\n 3.\narchetypal, structure\n";
        assert_eq!(
            dictd_translations(w, true),
            vec!["huone", "kamari", "talo", "koti"]
        );
    }
}
