//! Word embeddings: a vocabulary in frequency order plus a dense matrix, and
//! readers/writers for the usual formats.
//!
//! Formats: fastText/MUSE `.vec` text (header `n d`), GloVe text (no header),
//! word2vec binary, a spaCy `vocab/` folder, a floret table (a spaCy `vocab/`
//! whose `vectors.cfg` says `"mode": "floret"`: hashed character n-grams, a
//! word's vector computed from its n-grams), and a `.npy` matrix with a word
//! index (parquet or one word a line). Text files may be gzipped.
use crate::atomic::write_atomic;
use crate::error::{DataError, Result};
use crate::murmur::{floret_hashes, spacy_key};
use crate::npy::{parse_npy, read_npy, Matrix};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// On-disk embedding formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbeddingFormat {
    /// fastText / MUSE / word2vec text: header line `n d`, then `word v1 .. vd`.
    Vec,
    /// GloVe text: `word v1 .. vd` lines with no header.
    Glove,
    /// word2vec binary (`n d\n`, then `word ` + d little-endian f32 each).
    Word2vecBin,
    /// spaCy `vocab/` folder (`vectors`, `key2row`, `strings.json`).
    Spacy,
    /// floret table: a spaCy `vocab/` folder in floret mode (`vectors` holds
    /// hashed n-gram buckets, `vectors.cfg` the n-gram settings); the
    /// vocabulary is `strings.json` in the order of `lookups.bin`'s
    /// `lexeme_prob`, or a word list given as the index.
    Floret,
    /// `.npy` matrix + word index (parquet string column or a text file).
    Npy,
}

impl std::str::FromStr for EmbeddingFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "vec" | "fasttext" | "muse" => Self::Vec,
            "glove" => Self::Glove,
            "word2vec-bin" | "bin" => Self::Word2vecBin,
            "spacy" => Self::Spacy,
            "floret" => Self::Floret,
            "npy" => Self::Npy,
            _ => {
                return Err(format!(
                    "unknown embedding format '{s}' (vec, glove, bin, spacy, floret, npy)"
                ))
            }
        })
    }
}

/// How to load a set of embeddings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadOptions {
    /// Keep at most this many (distinct) words, the most frequent first.
    pub max_vocab: Option<usize>,
    /// Lowercase words; with `dedupe` the most frequent casing wins.
    pub lowercase: bool,
    /// Skip repeated words (keeping the first) instead of failing.
    pub dedupe: bool,
    /// Force a format instead of guessing from the path.
    pub format: Option<EmbeddingFormat>,
    /// Word index for `.npy` matrices (default: the only `.parquet` beside
    /// it), or the vocabulary of a floret table in frequency order (default:
    /// its own `lookups.bin` frequencies).
    pub words: Option<PathBuf>,
}

/// What loading decided about a file's rows: every decision that is not an
/// error is counted here, and the pipelines print it and keep it in the
/// run's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    /// The format read (given, or recognised from the path and content).
    pub format: Option<EmbeddingFormat>,
    /// Rows read before `max_vocab` stopped the reading.
    pub rows_read: usize,
    /// Later occurrences of a word (or of a lowercased form) skipped; the
    /// first, most frequent one is kept.
    pub duplicates_skipped: usize,
    /// Words of several tokens (GloVe 840B has a few, e.g. `. . .`), kept as
    /// one word with spaces.
    pub words_with_spaces: usize,
    /// All-zero vectors (no direction: normalisation leaves them zero).
    pub zero_vectors: usize,
    /// Empty words skipped (a spaCy string table or a word index may hold one).
    pub empty_words_skipped: usize,
}

impl LoadReport {
    /// One sentence per decision taken, for the user.
    pub fn notes(&self) -> Vec<String> {
        let mut v = vec![];
        if self.duplicates_skipped > 0 {
            v.push(format!(
                "{} repeated words skipped (the first, most frequent kept)",
                self.duplicates_skipped
            ));
        }
        if self.words_with_spaces > 0 {
            v.push(format!(
                "{} words contain spaces (kept as one word)",
                self.words_with_spaces
            ));
        }
        if self.zero_vectors > 0 {
            v.push(format!(
                "{} all-zero vectors kept (they have no direction)",
                self.zero_vectors
            ));
        }
        if self.empty_words_skipped > 0 {
            v.push(format!("{} empty words skipped", self.empty_words_skipped));
        }
        v
    }
}

/// A vocabulary (most frequent first) with one `dim`-sized row per word.
#[derive(Debug, Clone)]
pub struct Embeddings {
    words: Vec<String>,
    index: HashMap<String, usize>,
    dim: usize,
    data: Vec<f32>,
    /// What loading decided (empty for embeddings built in memory).
    pub report: LoadReport,
}

impl Embeddings {
    /// Builds embeddings from words and row-major data, checking the shapes.
    pub fn new(words: Vec<String>, dim: usize, data: Vec<f32>) -> Result<Self> {
        if dim == 0 || data.len() != words.len() * dim {
            return Err(DataError::Invalid(format!(
                "{} words of dimension {dim} need {} values, got {}",
                words.len(),
                words.len() * dim,
                data.len()
            )));
        }
        let mut index = HashMap::with_capacity(words.len());
        for (i, w) in words.iter().enumerate() {
            if index.insert(w.clone(), i).is_some() {
                return Err(DataError::Invalid(format!("word '{w}' appears twice")));
            }
        }
        Ok(Self {
            words,
            index,
            dim,
            data,
            report: LoadReport::default(),
        })
    }
    pub fn len(&self) -> usize {
        self.words.len()
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn words(&self) -> &[String] {
        &self.words
    }
    pub fn word(&self, i: usize) -> &str {
        &self.words[i]
    }
    pub fn get(&self, word: &str) -> Option<usize> {
        self.index.get(word).copied()
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// The vectors as an `[n, dim]` f32 tensor on the CPU.
    pub fn tensor(&self) -> tch::Tensor {
        tch::Tensor::from_slice(&self.data).view([self.len() as i64, self.dim as i64])
    }
    /// The same words with new vectors (e.g. after a map), from a `[n, d]` tensor.
    pub fn with_tensor(&self, t: &tch::Tensor) -> Result<Self> {
        let size = t.size();
        if size.len() != 2 || size[0] as usize != self.len() {
            return Err(DataError::Invalid(format!(
                "tensor of shape {size:?} does not fit {} words",
                self.len()
            )));
        }
        let t = t
            .to_kind(tch::Kind::Float)
            .to_device(tch::Device::Cpu)
            .contiguous();
        let data = Vec::<f32>::try_from(t.view(-1))?;
        Ok(Self {
            words: self.words.clone(),
            index: self.index.clone(),
            dim: size[1] as usize,
            data,
            report: self.report.clone(),
        })
    }
    /// The first `n` words.
    pub fn truncate(mut self, n: usize) -> Self {
        if n < self.len() {
            for w in self.words.drain(n..) {
                self.index.remove(&w);
            }
            self.data.truncate(n * self.dim);
        }
        self
    }

    /// Loads embeddings, guessing the format from the path unless `opts.format` says.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let format = match opts.format {
            Some(f) => f,
            None => guess_format(path)?,
        };
        let mut b = Builder::new(path, opts);
        b.report.format = Some(format);
        match format {
            EmbeddingFormat::Vec | EmbeddingFormat::Glove => {
                read_text(path, format == EmbeddingFormat::Vec, &mut b)?
            }
            EmbeddingFormat::Word2vecBin => read_word2vec_bin(path, &mut b)?,
            EmbeddingFormat::Spacy => read_spacy(path, &mut b)?,
            EmbeddingFormat::Floret => read_floret(path, opts.words.as_deref(), &mut b)?,
            EmbeddingFormat::Npy => read_npy_index(path, opts.words.as_deref(), &mut b)?,
        }
        b.finish()
    }

    /// The files (or folder) that loading `path` with `opts` reads: what a
    /// run fingerprints to know its inputs did not change.
    pub fn input_files(path: &Path, opts: &LoadOptions) -> Result<Vec<PathBuf>> {
        let format = match opts.format {
            Some(f) => f,
            None => guess_format(path)?,
        };
        Ok(match format {
            EmbeddingFormat::Npy => vec![
                path.to_path_buf(),
                match &opts.words {
                    Some(w) => w.clone(),
                    None => find_index(path)?,
                },
            ],
            EmbeddingFormat::Floret => {
                let mut v = vec![path.to_path_buf()];
                v.extend(opts.words.clone());
                v
            }
            _ => vec![path.to_path_buf()],
        })
    }

    /// Writes `.vec` text (header `n d`), atomically.
    pub fn save_vec(&self, path: &Path) -> Result<()> {
        let lines: Vec<String> = (0..self.len())
            .into_par_iter()
            .map(|i| {
                let mut s = String::with_capacity(self.dim * 10 + self.words[i].len());
                s.push_str(&self.words[i]);
                for v in self.row(i) {
                    s.push(' ');
                    s.push_str(&format!("{v}"));
                }
                s.push('\n');
                s
            })
            .collect();
        write_atomic(path, |w: &mut dyn Write| {
            writeln!(w, "{} {}", self.len(), self.dim)?;
            for l in &lines {
                w.write_all(l.as_bytes())?;
            }
            Ok(())
        })
    }
}

fn guess_format(path: &Path) -> Result<EmbeddingFormat> {
    if path.is_dir() {
        if floret_config(&spacy_dir(path))?.is_some() {
            return Ok(EmbeddingFormat::Floret);
        }
        if path.join("key2row").exists() || path.join("vocab").join("key2row").exists() {
            return Ok(EmbeddingFormat::Spacy);
        }
        return Err(DataError::format(
            path,
            "a folder, but not a spaCy vocab/ (no key2row) nor a floret table (no vectors.cfg in floret mode)",
        ));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_lowercase();
    if name.ends_with(".npy") {
        return Ok(EmbeddingFormat::Npy);
    }
    if name.ends_with(".bin") {
        return Ok(EmbeddingFormat::Word2vecBin);
    }
    // Text: a `count dim` first line means .vec; a word and numbers, GloVe.
    let first = first_line(path)?;
    if first.contains('\0') || std::str::from_utf8(first.as_bytes()).is_err() {
        return Err(DataError::format(
            path,
            "not a text embedding file (binary bytes on line 1); for word2vec binary pass --format bin",
        ));
    }
    let toks: Vec<&str> = first.split_whitespace().collect();
    if toks.len() == 2 && toks.iter().all(|t| t.parse::<usize>().is_ok()) {
        return Ok(EmbeddingFormat::Vec);
    }
    if toks.len() == 2 && toks[0].parse::<usize>().is_ok() && toks[1].parse::<f32>().is_err() {
        return Err(DataError::parse(
            path,
            1,
            format!(
                "looks like a .vec header 'count dim', but '{}' is not a dimension (force the format with --format vec or glove)",
                toks[1]
            ),
        ));
    }
    Ok(EmbeddingFormat::Glove)
}

fn open_text(path: &Path) -> Result<Box<dyn Read>> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

/// The first line (at most 64 KiB of it), lossily decoded.
fn first_line(path: &Path) -> Result<String> {
    let mut r = open_text(path)?.take(1 << 16);
    let mut buf = Vec::new();
    r.read_to_end(&mut buf)
        .map_err(|e| DataError::io(path, e))?;
    let end = buf.iter().position(|&c| c == b'\n').unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).to_string())
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_text(path)?
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    Ok(bytes)
}

/// Collects words in file order, applying lowercase / dedupe / max_vocab.
struct Builder<'a> {
    path: &'a Path,
    opts: &'a LoadOptions,
    words: Vec<String>,
    index: HashMap<String, usize>,
    data: Vec<f32>,
    dim: usize,
    report: LoadReport,
}

impl<'a> Builder<'a> {
    fn new(path: &'a Path, opts: &'a LoadOptions) -> Self {
        Self {
            path,
            opts,
            words: vec![],
            index: HashMap::new(),
            data: vec![],
            dim: 0,
            report: LoadReport::default(),
        }
    }
    fn full(&self) -> bool {
        self.opts.max_vocab.is_some_and(|m| self.words.len() >= m)
    }
    /// Adds one word; `line` is where it came from, for errors.
    fn push(&mut self, word: &str, v: &[f32], line: usize) -> Result<()> {
        if self.dim == 0 {
            self.dim = v.len();
        } else if v.len() != self.dim {
            return Err(DataError::parse(
                self.path,
                line,
                format!("expected {} values, found {}", self.dim, v.len()),
            ));
        }
        if let Some(bad) = v.iter().position(|x| !x.is_finite()) {
            return Err(DataError::parse(
                self.path,
                line,
                format!("value {} of '{word}' is not finite", bad + 1),
            ));
        }
        if self.full() {
            return Ok(());
        }
        self.report.rows_read += 1;
        if word.is_empty() {
            return Err(DataError::parse(self.path, line, "empty word"));
        }
        let word = if self.opts.lowercase {
            word.to_lowercase()
        } else {
            word.to_string()
        };
        if self.index.contains_key(&word) {
            if self.opts.dedupe {
                self.report.duplicates_skipped += 1;
                return Ok(());
            }
            return Err(DataError::parse(
                self.path,
                line,
                format!("word '{word}' repeated"),
            ));
        }
        if v.iter().all(|&x| x == 0.0) {
            self.report.zero_vectors += 1;
        }
        if word.contains(' ') {
            self.report.words_with_spaces += 1;
        }
        self.index.insert(word.clone(), self.words.len());
        self.words.push(word);
        self.data.extend_from_slice(v);
        Ok(())
    }
    fn finish(self) -> Result<Embeddings> {
        if self.words.is_empty() {
            return Err(DataError::Empty {
                path: self.path.to_path_buf(),
                what: "vocabulary".into(),
            });
        }
        if self.report.zero_vectors == self.words.len() {
            return Err(DataError::format(
                self.path,
                format!("all {} vectors are zero: nothing to map", self.words.len()),
            ));
        }
        Ok(Embeddings {
            words: self.words,
            index: self.index,
            dim: self.dim,
            data: self.data,
            report: self.report,
        })
    }
}

/// The largest vector dimension accepted.
const MAX_DIM: usize = 1_000_000;

fn parse_line(line: &[u8], dim: Option<usize>) -> std::result::Result<(String, Vec<f32>), String> {
    let text = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_string())?;
    let text = text.trim_end_matches(['\r', '\n', ' ', '\t']);
    let toks: Vec<&str> = text.split([' ', '\t']).filter(|t| !t.is_empty()).collect();
    if toks.len() < 2 {
        return Err("a word and its values expected".into());
    }
    // A word may itself contain spaces (GloVe 840B): the last `dim` tokens
    // are values. But a number where the word should end means a row with
    // more values than the others, not a word with spaces.
    let nv = match dim {
        Some(d) if toks.len() > d.saturating_add(1) => {
            if toks[toks.len() - d - 1].parse::<f32>().is_ok() {
                return Err(format!(
                    "{} values, expected {d} (a row with extra numbers)",
                    toks.len() - 1
                ));
            }
            d
        }
        _ => toks.len() - 1,
    };
    let word = toks[..toks.len() - nv].join(" ");
    let mut v = Vec::with_capacity(nv);
    for t in &toks[toks.len() - nv..] {
        v.push(
            t.parse::<f32>()
                .map_err(|_| format!("'{t}' is not a number"))?,
        );
    }
    Ok((word, v))
}

fn read_text(path: &Path, header: bool, b: &mut Builder) -> Result<()> {
    let bytes = read_all(path)?;
    let mut lines: Vec<&[u8]> = bytes.split(|&c| c == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "file".into(),
        });
    }
    let mut start = 0;
    let mut announced = None;
    let mut dim = None;
    if header {
        let h = String::from_utf8_lossy(lines[0]);
        let nums: Vec<usize> = h
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        if nums.len() != 2 || h.split_whitespace().count() != 2 {
            return Err(DataError::parse(
                path,
                1,
                format!("header must be 'count dim', got '{}'", h.trim()),
            ));
        }
        if nums[1] == 0 || nums[1] > MAX_DIM {
            return Err(DataError::parse(
                path,
                1,
                format!(
                    "header announces dimension {}: expected 1 to {MAX_DIM}",
                    nums[1]
                ),
            ));
        }
        announced = Some(nums[0]);
        dim = Some(nums[1]);
        start = 1;
    }
    if dim.is_none() {
        // GloVe: the first line fixes the dimension for the rest.
        let (_, v) = parse_line(lines[0], None).map_err(|m| DataError::parse(path, 1, m))?;
        dim = Some(v.len());
    }
    const CHUNK: usize = 16_384;
    let mut at = start;
    while at < lines.len() && !b.full() {
        let end = (at + CHUNK).min(lines.len());
        let parsed: Vec<_> = lines[at..end]
            .par_iter()
            .map(|l| parse_line(l, dim))
            .collect();
        for (k, p) in parsed.into_iter().enumerate() {
            let line_no = at + k + 1;
            let (w, v) = p.map_err(|m| DataError::parse(path, line_no, m))?;
            b.push(&w, &v, line_no)?;
        }
        at = end;
    }
    if let Some(n) = announced {
        let have = lines.len() - start;
        if have != n {
            return Err(DataError::format(
                path,
                format!(
                    "header announces {n} vectors but the file has {have}{}",
                    if have < n { " (truncated?)" } else { "" }
                ),
            ));
        }
    }
    Ok(())
}

fn read_word2vec_bin(path: &Path, b: &mut Builder) -> Result<()> {
    let bytes = read_all(path)?;
    let nl = bytes
        .iter()
        .position(|&c| c == b'\n')
        .ok_or_else(|| DataError::format(path, "no header line"))?;
    let h = String::from_utf8_lossy(&bytes[..nl]).to_string();
    let nums: Vec<usize> = h
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    if nums.len() != 2 {
        return Err(DataError::parse(
            path,
            1,
            format!("header must be 'count dim', got '{}'", h.trim()),
        ));
    }
    let (n, d) = (nums[0], nums[1]);
    // Every record holds at least a one-byte word, a space and 4·d bytes:
    // the header must fit the file before anything is allocated — also when
    // it announces no vectors at all (one record's buffer is still made).
    let fits = d
        .checked_mul(4)
        .and_then(|r| r.checked_add(2))
        .and_then(|r| r.checked_mul(n.max(1)))
        .is_some_and(|m| d > 0 && d <= MAX_DIM && m < bytes.len() - nl);
    if !fits {
        return Err(DataError::parse(
            path,
            1,
            format!(
                "header announces {n} vectors of {d} values, which do not fit the {} bytes of the file",
                bytes.len()
            ),
        ));
    }
    let mut pos = nl + 1;
    let mut v = vec![0f32; d];
    for rec in 0..n {
        if b.full() {
            break;
        }
        while pos < bytes.len() && (bytes[pos] == b'\n' || bytes[pos] == b' ') {
            pos += 1;
        }
        let sp = bytes[pos..]
            .iter()
            .position(|&c| c == b' ')
            .ok_or_else(|| {
                DataError::format(path, format!("record {}: truncated (no word)", rec + 1))
            })?;
        let word = std::str::from_utf8(&bytes[pos..pos + sp])
            .map_err(|_| DataError::format(path, format!("record {}: word is not UTF-8", rec + 1)))?
            .to_string();
        pos += sp + 1;
        if rec == 0 && looks_like_text(&bytes[pos..(pos + 4 * d).min(bytes.len())]) {
            return Err(DataError::format(
                path,
                "the values after the first word are text, not binary floats: a text .vec file? (use --format vec)",
            ));
        }
        if pos + 4 * d > bytes.len() {
            return Err(DataError::format(
                path,
                format!(
                    "record {} ('{word}'): truncated, {d} values announced",
                    rec + 1
                ),
            ));
        }
        for (j, x) in v.iter_mut().enumerate() {
            *x = f32::from_le_bytes(bytes[pos + 4 * j..pos + 4 * j + 4].try_into().unwrap());
        }
        pos += 4 * d;
        b.push(&word, &v, rec + 1)?;
    }
    Ok(())
}

/// Whether bytes read as little-endian floats are in fact decimal text.
fn looks_like_text(b: &[u8]) -> bool {
    b.len() >= 8
        && b.iter().all(|c| {
            c.is_ascii_digit()
                || matches!(
                    c,
                    b'.' | b'-' | b'+' | b'e' | b'E' | b' ' | b'\n' | b'\r' | b'\t'
                )
        })
}

/// A spaCy model's vectors folder: `path` itself or its `vocab/`.
fn spacy_dir(path: &Path) -> PathBuf {
    if path.join("vectors").exists() || !path.join("vocab").is_dir() {
        path.to_path_buf()
    } else {
        path.join("vocab")
    }
}

/// floret's n-gram settings (spaCy's `vectors.cfg` in floret mode).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FloretConfig {
    pub minn: usize,
    pub maxn: usize,
    pub hash_count: usize,
    pub hash_seed: u32,
    pub bow: String,
    pub eow: String,
}

impl FloretConfig {
    /// The padded word's character n-grams, in floret's order: the whole
    /// padded word, then every n-gram of `minn` characters, of `minn + 1`,
    /// … up to `maxn` (characters, not bytes).
    pub fn ngrams(&self, word: &str) -> Vec<String> {
        let padded: Vec<char> = self
            .bow
            .chars()
            .chain(word.chars())
            .chain(self.eow.chars())
            .collect();
        let mut v = vec![padded.iter().collect::<String>()];
        for n in self.minn..=self.maxn {
            if n > padded.len() {
                break;
            }
            for start in 0..=padded.len() - n {
                v.push(padded[start..start + n].iter().collect());
            }
        }
        v
    }

    /// The word's vector: the mean of the table rows its n-grams hash to
    /// (`hash_count` buckets each).
    pub fn vector(&self, word: &str, table: &[f32], rows: usize, dim: usize) -> Vec<f32> {
        let mut v = vec![0f32; dim];
        let mut n = 0usize;
        for g in self.ngrams(word) {
            for h in floret_hashes(&g, self.hash_seed, self.hash_count) {
                let r = h as usize % rows;
                for (a, x) in v.iter_mut().zip(&table[r * dim..(r + 1) * dim]) {
                    *a += x;
                }
                n += 1;
            }
        }
        let inv = 1.0 / n.max(1) as f32;
        v.iter_mut().for_each(|a| *a *= inv);
        v
    }
}

/// The folder's floret settings, or `None` when it is not in floret mode
/// (no `vectors.cfg`, or another mode). A floret `vectors.cfg` with
/// impossible settings is an error naming the file.
pub fn floret_config(dir: &Path) -> Result<Option<FloretConfig>> {
    let p = dir.join("vectors.cfg");
    let Ok(text) = std::fs::read(&p) else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| DataError::format(&p, format!("not JSON: {e}")))?;
    if v.get("mode").and_then(|m| m.as_str()) != Some("floret") {
        return Ok(None);
    }
    let cfg: FloretConfig = serde_json::from_value(v)
        .map_err(|e| DataError::format(&p, format!("floret settings: {e}")))?;
    if cfg.minn == 0 || cfg.maxn < cfg.minn {
        return Err(DataError::format(
            &p,
            format!(
                "n-gram sizes minn {} and maxn {}: need 1 <= minn <= maxn",
                cfg.minn, cfg.maxn
            ),
        ));
    }
    if !(1..=4).contains(&cfg.hash_count) {
        return Err(DataError::format(
            &p,
            format!("hash_count {} (floret uses 1 to 4)", cfg.hash_count),
        ));
    }
    Ok(Some(cfg))
}

/// One word a line (a `.txt`, `\r\n` tolerated) or a parquet string column.
fn read_word_list(index: &Path) -> Result<Vec<String>> {
    if index.extension().is_some_and(|e| e == "parquet") {
        return read_parquet_words(index);
    }
    let text = std::fs::read_to_string(index).map_err(|e| DataError::io(index, e))?;
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect())
}

/// The strings of `strings.json` that `lookups.bin`'s `lexeme_prob` table
/// gives a probability, most probable first (ties by the string): spaCy's
/// own frequency order for a floret model's vocabulary.
fn floret_vocabulary(dir: &Path) -> Result<Vec<String>> {
    let lp = dir.join("lookups.bin");
    let raw = std::fs::read(&lp).map_err(|e| {
        DataError::format(
            &lp,
            format!("cannot read it ({e}): a floret table's vocabulary comes from lookups.bin, or pass a word list"),
        )
    })?;
    let value = rmpv::decode::read_value(&mut raw.as_slice())
        .map_err(|e| DataError::format(&lp, format!("not a msgpack map: {e}")))?;
    let table = value
        .as_map()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.as_str() == Some("lexeme_prob"))
                .map(|(_, t)| t)
        })
        .and_then(|t| t.as_map())
        .ok_or_else(|| {
            DataError::format(
                &lp,
                "no lexeme_prob table (a map of word keys to log-probabilities)",
            )
        })?;
    let mut prob: HashMap<u64, f64> = HashMap::with_capacity(table.len());
    for (i, (k, p)) in table.iter().enumerate() {
        let (Some(k), Some(p)) = (k.as_u64(), p.as_f64()) else {
            return Err(DataError::format(
                &lp,
                format!(
                    "lexeme_prob entry {}: key and probability must be numbers",
                    i + 1
                ),
            ));
        };
        prob.insert(k, p);
    }
    let sp = dir.join("strings.json");
    let text = std::fs::read(&sp).map_err(|e| DataError::io(&sp, e))?;
    let strings: Vec<String> = serde_json::from_slice(&text)
        .map_err(|e| DataError::format(&sp, format!("not a JSON list of strings: {e}")))?;
    let mut ranked: Vec<(f64, String)> = strings
        .into_par_iter()
        .filter_map(|s| prob.get(&spacy_key(&s)).map(|&p| (p, s)))
        .filter(|(p, s)| !s.is_empty() && p.is_finite())
        .collect();
    ranked.par_sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    if ranked.is_empty() {
        return Err(DataError::format(
            &sp,
            "no string here has a probability in lookups.bin: no vocabulary",
        ));
    }
    Ok(ranked.into_iter().map(|(_, s)| s).collect())
}

fn read_floret(path: &Path, words: Option<&Path>, b: &mut Builder) -> Result<()> {
    let dir = spacy_dir(path);
    let cfg = floret_config(&dir)?.ok_or_else(|| {
        DataError::format(
            &dir.join("vectors.cfg"),
            "missing, or not in floret mode: not a floret table",
        )
    })?;
    let table = read_npy(&dir.join("vectors"))?;
    if table.rows == 0 || table.cols == 0 {
        return Err(DataError::format(
            &dir.join("vectors"),
            format!("a {} x {} table: no buckets", table.rows, table.cols),
        ));
    }
    // Each word's vector is that of the word as written: with --lowercase,
    // as for every format, a lowercased word keeps its most frequent
    // casing's vector (`Lontoo`'s n-grams for `lontoo`; the lowercase
    // string's own n-grams give proper nouns vectors the table hardly
    // trained).
    let vocab = match words {
        Some(p) => read_word_list(p)?,
        None => floret_vocabulary(&dir)?,
    };
    // Vectors are computed a block of words at a time, until max_vocab is reached.
    const BLOCK: usize = 4096;
    for (bi, block) in vocab.chunks(BLOCK).enumerate() {
        let vecs: Vec<Vec<f32>> = block
            .par_iter()
            .map(|w| cfg.vector(w, &table.data, table.rows, table.cols))
            .collect();
        for (j, (w, v)) in block.iter().zip(&vecs).enumerate() {
            if w.is_empty() {
                b.report.empty_words_skipped += 1;
                continue;
            }
            b.push(w, v, bi * BLOCK + j + 1)?;
            if b.full() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn read_spacy(path: &Path, b: &mut Builder) -> Result<()> {
    let dir = spacy_dir(path);
    if floret_config(&dir)?.is_some() {
        return read_floret(path, b.opts.words.as_deref(), b);
    }
    let vectors = read_npy(&dir.join("vectors"))?;
    let k2r_path = dir.join("key2row");
    let raw = std::fs::read(&k2r_path).map_err(|e| DataError::io(&k2r_path, e))?;
    let value = rmpv::decode::read_value(&mut raw.as_slice())
        .map_err(|e| DataError::format(&k2r_path, format!("not a msgpack map: {e}")))?;
    let map = value
        .as_map()
        .ok_or_else(|| DataError::format(&k2r_path, "msgpack value is not a map"))?;
    let strings_path = dir.join("strings.json");
    let text = std::fs::read(&strings_path).map_err(|e| DataError::io(&strings_path, e))?;
    let strings: Vec<String> = serde_json::from_slice(&text).map_err(|e| {
        DataError::format(&strings_path, format!("not a JSON list of strings: {e}"))
    })?;
    let by_key: HashMap<u64, &str> = strings
        .par_iter()
        .map(|s| (spacy_key(s), s.as_str()))
        .collect();
    // Insertion order is frequency order; a row's word is the first key that names it.
    let mut seen = vec![false; vectors.rows];
    let mut missing = 0usize;
    for (i, (k, r)) in map.iter().enumerate() {
        let (Some(key), Some(row)) = (k.as_u64(), r.as_u64()) else {
            return Err(DataError::format(
                &k2r_path,
                format!("entry {}: key and row must be integers", i + 1),
            ));
        };
        let row = row as usize;
        if row >= vectors.rows {
            return Err(DataError::format(
                &k2r_path,
                format!(
                    "entry {}: row {row} outside the {} vectors",
                    i + 1,
                    vectors.rows
                ),
            ));
        }
        if seen[row] {
            continue;
        }
        let Some(word) = by_key.get(&key) else {
            missing += 1;
            continue;
        };
        if word.is_empty() {
            b.report.empty_words_skipped += 1;
            continue;
        }
        seen[row] = true;
        b.push(
            word,
            &vectors.data[row * vectors.cols..(row + 1) * vectors.cols],
            i + 1,
        )?;
        if b.full() {
            break;
        }
    }
    if b.words.is_empty() && missing > 0 {
        return Err(DataError::format(
            &strings_path,
            "no key of key2row is the hash of a string here",
        ));
    }
    Ok(())
}

/// The `.parquet` (or `.txt`) word index beside a `.npy` file.
fn find_index(npy: &Path) -> Result<PathBuf> {
    let dir = npy.parent().unwrap_or(Path::new("."));
    let stem_txt = npy.with_extension("txt");
    if stem_txt.exists() {
        return Ok(stem_txt);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(DataError::format(
            npy,
            "no word index: pass one (a .parquet or .txt beside it)",
        )),
        _ => Err(DataError::format(
            npy,
            "several .parquet files beside it: pass the word index",
        )),
    }
}

/// Reads the first string column of a parquet file.
pub fn read_parquet_words(path: &Path) -> Result<Vec<String>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = SerializedFileReader::new(f)
        .map_err(|e| DataError::format(path, format!("not a readable parquet file: {e}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| DataError::format(path, format!("cannot read rows: {e}")))?;
    let mut words = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| DataError::format(path, format!("row {}: {e}", i + 1)))?;
        let w = row.get_string(0).map_err(|e| {
            DataError::format(
                path,
                format!("row {}: first column is not a string: {e}", i + 1),
            )
        })?;
        words.push(w.clone());
    }
    Ok(words)
}

fn read_npy_index(path: &Path, words: Option<&Path>, b: &mut Builder) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let m: Matrix = parse_npy(path, &bytes)?;
    let index = match words {
        Some(p) => p.to_path_buf(),
        None => find_index(path)?,
    };
    let words = read_word_list(&index)?;
    if words.len() != m.rows {
        return Err(DataError::format(
            &index,
            format!(
                "{} words for the {} rows of {}",
                words.len(),
                m.rows,
                path.display()
            ),
        ));
    }
    for (i, w) in words.iter().enumerate() {
        if w.is_empty() {
            b.report.empty_words_skipped += 1;
            continue;
        }
        b.push(w, &m.data[i * m.cols..(i + 1) * m.cols], i + 1)?;
        if b.full() {
            break;
        }
    }
    Ok(())
}
