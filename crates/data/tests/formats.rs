//! Embedding and dictionary formats: round trips and bad input.
use embedlab_data::npy::{write_npy, Matrix};
use embedlab_data::{Dictionary, EmbeddingFormat, Embeddings, LoadOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn opts() -> LoadOptions {
    LoadOptions {
        dedupe: true,
        ..Default::default()
    }
}

#[test]
fn vec_text_reads_words_in_order_with_options() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "a.vec",
        "4 3\nThe 1 2 3\nthe 4 5 6\ncat 0.5 -1 2e-1\ndog 1 1 1\n",
    );
    let e = Embeddings::load(&p, &opts()).unwrap();
    assert_eq!(e.words(), ["The", "the", "cat", "dog"]);
    assert_eq!(e.dim(), 3);
    assert_eq!(e.row(2), [0.5, -1.0, 0.2]);
    // Lowercase + dedupe keeps the first (most frequent) casing's vector.
    let e = Embeddings::load(
        &p,
        &LoadOptions {
            lowercase: true,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(e.words(), ["the", "cat", "dog"]);
    assert_eq!(e.row(0), [1.0, 2.0, 3.0]);
    // max_vocab counts distinct words.
    let e = Embeddings::load(
        &p,
        &LoadOptions {
            lowercase: true,
            max_vocab: Some(2),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(e.words(), ["the", "cat"]);
    // Without dedupe a repeat is an error naming the line.
    let err = Embeddings::load(
        &p,
        &LoadOptions {
            lowercase: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("a.vec:3") && err.to_string().contains("repeated"),
        "{err}"
    );
}

#[test]
fn glove_text_has_no_header_and_gzip_works() {
    let d = tempfile::tempdir().unwrap();
    let text = "the 1 2\nof 3 4\nNew York 5 6\n";
    let p = write(d.path(), "g.txt", text);
    let e = Embeddings::load(&p, &opts()).unwrap();
    assert_eq!(e.words(), ["the", "of", "New York"]);
    let gz = d.path().join("g.txt.gz");
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), Default::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    let e2 = Embeddings::load(&gz, &opts()).unwrap();
    assert_eq!(e2.words(), e.words());
    assert_eq!(e2.data(), e.data());
}

#[test]
fn bad_text_files_name_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            "short.vec",
            "2 3\na 1 2 3\nb 1 2\n",
            "short.vec:3",
            "expected 3 values, found 2",
        ),
        (
            "garbled.vec",
            "2 3\na 1 2 3\nb 1 x 3\n",
            "garbled.vec:3",
            "'x' is not a number",
        ),
        ("nan.vec", "1 3\na 1 NaN 3\n", "nan.vec:2", "not finite"),
        ("header.vec", "3 x\na 1 2 3\n", "header.vec", "header"),
        ("trunc.vec", "5 2\na 1 2\nb 3 4\n", "trunc.vec", "truncated"),
        ("empty.txt", "", "empty.txt", "empty"),
    ];
    for (name, text, at, what) in cases {
        let p = write(d.path(), name, text);
        let fmt = if name.ends_with(".vec") {
            Some(EmbeddingFormat::Vec)
        } else {
            None
        };
        let err = Embeddings::load(
            &p,
            &LoadOptions {
                format: fmt,
                ..opts()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(at) && err.contains(what), "{name}: {err}");
    }
    let missing = Embeddings::load(&d.path().join("nope.vec"), &opts())
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.vec"), "{missing}");
}

#[test]
fn vec_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let e = Embeddings::new(vec!["x".into(), "y".into()], 2, vec![0.1, -2.5, 1e-7, 3.0]).unwrap();
    let p = d.path().join("o.vec");
    e.save_vec(&p).unwrap();
    let back = Embeddings::load(&p, &opts()).unwrap();
    assert_eq!(back.words(), e.words());
    assert_eq!(back.data(), e.data());
}

fn w2v_bin(words: &[(&str, [f32; 2])], announce: usize) -> Vec<u8> {
    let mut b = format!("{announce} 2\n").into_bytes();
    for (w, v) in words {
        b.extend(w.as_bytes());
        b.push(b' ');
        for x in v {
            b.extend(x.to_le_bytes());
        }
        b.push(b'\n');
    }
    b
}

#[test]
fn word2vec_binary_reads_and_rejects_truncation() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("w.bin");
    std::fs::write(
        &p,
        w2v_bin(&[("chat", [1.0, 2.0]), ("chien", [-1.0, 0.5])], 2),
    )
    .unwrap();
    let e = Embeddings::load(&p, &opts()).unwrap();
    assert_eq!(e.words(), ["chat", "chien"]);
    assert_eq!(e.row(1), [-1.0, 0.5]);
    let mut bytes = w2v_bin(&[("chat", [1.0, 2.0]), ("chien", [-1.0, 0.5])], 2);
    bytes.truncate(bytes.len() - 4);
    std::fs::write(&p, bytes).unwrap();
    let err = Embeddings::load(&p, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("w.bin") && err.contains("record 2") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn spacy_vocab_folder_takes_the_first_key_of_each_row() {
    use embedlab_data::murmur::spacy_key;
    let d = tempfile::tempdir().unwrap();
    let v = d.path().join("vocab");
    std::fs::create_dir(&v).unwrap();
    write_npy(
        &v.join("vectors"),
        &Matrix {
            rows: 2,
            cols: 2,
            data: vec![1., 2., 3., 4.],
        },
    )
    .unwrap();
    // Insertion order = frequency: "de" → row 1, "la" → row 0, then "De" aliases row 1.
    let entries = vec![
        (rmpv::Value::from(spacy_key("de")), rmpv::Value::from(1u64)),
        (rmpv::Value::from(spacy_key("la")), rmpv::Value::from(0u64)),
        (rmpv::Value::from(spacy_key("De")), rmpv::Value::from(1u64)),
    ];
    let mut buf = vec![];
    rmpv::encode::write_value(&mut buf, &rmpv::Value::Map(entries)).unwrap();
    std::fs::write(v.join("key2row"), buf).unwrap();
    std::fs::write(v.join("strings.json"), r#"["la","De","de","unused"]"#).unwrap();
    let e = Embeddings::load(d.path(), &opts()).unwrap();
    assert_eq!(e.words(), ["de", "la"]);
    assert_eq!(e.row(0), [3.0, 4.0]);
    // A corrupt key2row is named.
    std::fs::write(v.join("key2row"), [0xdfu8, 0, 0]).unwrap();
    let err = Embeddings::load(&v, &opts()).unwrap_err().to_string();
    assert!(err.contains("key2row"), "{err}");
}

#[test]
fn npy_with_parquet_or_text_index() {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;
    let d = tempfile::tempdir().unwrap();
    let npy = d.path().join("emb.npy");
    write_npy(
        &npy,
        &Matrix {
            rows: 3,
            cols: 2,
            data: vec![1., 2., 3., 4., 5., 6.],
        },
    )
    .unwrap();
    let schema = Arc::new(
        parse_message_type("message schema { REQUIRED BYTE_ARRAY index (UTF8); }").unwrap(),
    );
    let file = std::fs::File::create(d.path().join("index.parquet")).unwrap();
    let mut w =
        SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
            .unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    let vals: Vec<ByteArray> = ["the", ",", "of"]
        .iter()
        .map(|s| ByteArray::from(*s))
        .collect();
    col.typed::<ByteArrayType>()
        .write_batch(&vals, None, None)
        .unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
    let e = Embeddings::load(&npy, &opts()).unwrap();
    assert_eq!(e.words(), ["the", ",", "of"]);
    assert_eq!(e.row(2), [5.0, 6.0]);
    // A text index with the wrong number of words is an error naming it.
    let idx = write(d.path(), "words.txt", "a\nb\n");
    let err = Embeddings::load(
        &npy,
        &LoadOptions {
            words: Some(idx),
            ..opts()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("words.txt") && err.contains("2 words for the 3 rows"),
        "{err}"
    );
}

#[test]
fn muse_dictionary_parses_and_rejects_bad_lines() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "d.txt", "cat chat\ncat minou\n\ndog\tchien\n");
    let dict = Dictionary::load(&p).unwrap();
    assert_eq!(dict.pairs.len(), 3);
    assert_eq!(
        dict.inverted().pairs[2],
        ("chien".to_string(), "dog".to_string())
    );
    let p = write(d.path(), "bad.txt", "cat chat\ndog le chien\n");
    let err = Dictionary::load(&p).unwrap_err().to_string();
    assert!(
        err.contains("bad.txt:2") && err.contains("3 fields"),
        "{err}"
    );
    let p = write(d.path(), "empty.txt", "\n\n");
    let err = Dictionary::load(&p).unwrap_err().to_string();
    assert!(err.contains("empty.txt") && err.contains("empty"), "{err}");
}

use embedlab_testkit::dictd_b64 as b64;

#[test]
fn dictd_reads_entries_and_rejects_bad_offsets() {
    let d = tempfile::tempdir().unwrap();
    let entries = [
        ("00databaseinfo", "00-database-info\nabout\n"),
        ("cat", "cat /kæt/\n1. mégère, rosse\n2. chat\n"),
        ("dog", "dog /dɔg/\nchien, clébard\n"),
        ("ice cream", "ice cream\nglace\n"),
    ];
    let idx = dictd(d.path(), "x", &entries);
    let index = std::fs::read_to_string(&idx).unwrap();
    let dict = Dictionary::load(&idx).unwrap();
    let want: Vec<(String, String)> = [
        ("cat", "mégère"),
        ("cat", "rosse"),
        ("cat", "chat"),
        ("dog", "chien"),
        ("dog", "clébard"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(dict.pairs, want);
    write(d.path(), "x.index", &format!("{index}zebra\tBAAA\tB\n"));
    let err = Dictionary::load(&idx).unwrap_err().to_string();
    assert!(
        err.contains("x.index:5") && err.contains("past the end"),
        "{err}"
    );
}

/// Writes a dictd pair `stem.index` / `stem.dict.dz` holding `entries`.
fn dictd(dir: &Path, stem: &str, entries: &[(&str, &str)]) -> PathBuf {
    let mut body = String::new();
    let mut index = String::new();
    for (h, e) in entries {
        index.push_str(&format!("{h}\t{}\t{}\n", b64(body.len()), b64(e.len())));
        body.push_str(e);
    }
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join(format!("{stem}.dict.dz"))).unwrap(),
        Default::default(),
    );
    enc.write_all(body.as_bytes()).unwrap();
    enc.finish().unwrap();
    write(dir, &format!("{stem}.index"), &index)
}

#[test]
fn wikdict_glosses_are_not_translations() {
    let d = tempfile::tempdir().unwrap();
    let entry = "koira /kˈoira/ <n>\ndog, hound\nkotieläin\n";
    let wik = dictd(
        d.path(),
        "fin-eng",
        &[
            (
                "00databaseshort",
                "suomi-English FreeDict+WikDict dictionary\n",
            ),
            ("koira", entry),
            (
                "olla",
                "olla <v>\n1. be\nsisältää, vastata\n2. exist 1.\nmuodostaa\n",
            ),
        ],
    );
    let pairs: Vec<(&str, &str)> = vec![
        ("koira", "dog"),
        ("koira", "hound"),
        ("olla", "be"),
        ("olla", "exist"),
    ];
    let got = Dictionary::load(&wik).unwrap();
    let got: Vec<(&str, &str)> = got
        .pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(got, pairs);
    // The same entry in a classic FreeDict dictionary: every line is a sense.
    let plain = dictd(
        d.path(),
        "plain",
        &[
            ("00databaseshort", "Finnish-English FreeDict Dictionary\n"),
            ("koira", entry),
        ],
    );
    let got = Dictionary::load(&plain).unwrap();
    assert_eq!(got.pairs.len(), 3);
}

#[test]
fn split_by_frequency_rank_keeps_all_translations() {
    let words = |n: usize, p: &str| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    let src = Embeddings::new(words(20, "s"), 1, vec![0.0; 20]).unwrap();
    let tgt = Embeddings::new(words(20, "t"), 1, vec![0.0; 20]).unwrap();
    // Source words s0..s9 each with two translations, listed out of frequency order.
    let mut pairs = vec![];
    for i in (0..10).rev() {
        pairs.push((format!("s{i}"), format!("t{i}")));
        pairs.push((format!("s{i}"), format!("t{}", i + 10)));
    }
    pairs.push(("unknown".into(), "t1".into()));
    let r = Dictionary { pairs }.resolve(&src, &tgt);
    assert_eq!(r.stats.source_words_missing, 1);
    let s = r.split_ranges((0, 6), (6, 9)).unwrap();
    assert_eq!(s.train.len(), 12);
    assert!(s.train.iter().all(|p| p.0 < 6));
    assert_eq!(s.test.len(), 6);
    assert!(s.test.iter().all(|p| (6..9).contains(&p.0)));
    assert!(r.split_ranges((0, 6), (5, 9)).is_err());
    // Too small for MUSE's 5000+1500: the last test_size words are the test set.
    let s = r.split_default(5000, 3).unwrap();
    assert_eq!((s.train_range, s.test_range), ((0, 7), (7, 10)));
    assert!(r.split_default(5000, 10).is_err());
}

/// Rows and headers that used to be read silently wrong: each is now an
/// error naming file and line, or a counted decision in the load report.
#[test]
fn text_rows_that_do_not_fit_are_errors_or_counted_decisions() {
    let d = tempfile::tempdir().unwrap();
    let glove = |name: &str, text: &str| -> Result<Embeddings, String> {
        let p = write(d.path(), name, text);
        Embeddings::load(&p, &opts()).map_err(|e| e.to_string())
    };
    // Extra numbers are not folded into the word.
    let e = glove("extra.txt", "cat 1 2\ndog 0.4 0.5 0.6\n").unwrap_err();
    assert!(
        e.contains("extra.txt:2") && e.contains("3 values, expected 2"),
        "{e}"
    );
    // A word of several tokens is kept, and counted.
    let ok = glove("spaces.txt", "cat 1 2\n. . . 0.4 0.5\n").unwrap();
    assert_eq!(ok.words()[1], ". . .");
    assert_eq!(ok.report.words_with_spaces, 1);
    // Header count checked both ways, dimension 0 refused.
    let vec = |name: &str, text: &str| -> String {
        let p = write(d.path(), name, text);
        let o = LoadOptions {
            format: Some(EmbeddingFormat::Vec),
            ..opts()
        };
        Embeddings::load(&p, &o).unwrap_err().to_string()
    };
    assert!(
        vec("more.vec", "1 2\na 1 2\nb 3 4\n").contains("announces 1 vectors but the file has 2")
    );
    assert!(vec("dim0.vec", "1 0\na\n").contains("dimension 0"));
    // A broken header is not silently read as GloVe.
    let e = glove("broken.txt", "20000 x\na 1 2\n").unwrap_err();
    assert!(
        e.contains("broken.txt:1") && e.contains("not a dimension"),
        "{e}"
    );
    // Duplicates are skipped and counted; zero vectors counted.
    let ok = glove("dups.txt", "cat 1 2\ncat 3 4\ndog 0 0\n").unwrap();
    assert_eq!(
        (
            ok.len(),
            ok.report.duplicates_skipped,
            ok.report.zero_vectors
        ),
        (2, 1, 1)
    );
    assert!(ok
        .report
        .notes()
        .iter()
        .any(|n| n.contains("1 repeated words skipped")));
    // Without dedupe, a repeated word is an error.
    let p = write(d.path(), "dups2.txt", "cat 1 2\ncat 3 4\n");
    let e = Embeddings::load(&p, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("dups2.txt:2") && e.contains("repeated"), "{e}");
}

#[test]
fn word2vec_sizes_are_checked_against_the_file_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("w.bin");
    for header in [
        "1 4611686018427387904\n",
        "1000000000000 300\n",
        "2 1000000000000\n",
        "1 0\n",
        // No vectors announced, but a dimension of 10^10: found by the
        // long fuzzing run (it aborted on a 40 GB buffer for one record).
        "0 9999999999\n",
    ] {
        let mut b = header.as_bytes().to_vec();
        b.extend(b"chat \x00\x00\x80\x3f\x00\x00\x00\x40\n");
        std::fs::write(&p, b).unwrap();
        let e = Embeddings::load(&p, &opts()).unwrap_err().to_string();
        assert!(
            e.contains("w.bin:1") && e.contains("do not fit"),
            "{header}: {e}"
        );
    }
    // A text .vec read as binary is refused, not turned into garbage.
    std::fs::write(&p, "2 3\ncat 0.1 0.2 0.3\ndog 0.4 0.5 0.6\n").unwrap();
    let e = Embeddings::load(
        &p,
        &LoadOptions {
            format: Some(EmbeddingFormat::Word2vecBin),
            ..opts()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("text") && e.contains("--format vec"), "{e}");
}

#[test]
fn dictionaries_are_recognised_by_content_and_offsets_cannot_overflow() {
    let d = tempfile::tempdir().unwrap();
    // A MUSE text dictionary that happens to be named *.dict.
    let p = write(d.path(), "en-fr.dict", "cat chat\ndog chien\n");
    assert_eq!(Dictionary::load(&p).unwrap().pairs.len(), 2);
    // Binary junk named *.dict is neither format, and the error says so.
    std::fs::write(d.path().join("junk.dict"), [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let e = Dictionary::load(&d.path().join("junk.dict"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("neither a dictd dictionary") && e.contains("--dict-format"),
        "{e}"
    );
    // Forcing the format.
    let e = Dictionary::load_as(&p, Some(embedlab_data::DictFormat::Dictd))
        .unwrap_err()
        .to_string();
    assert!(e.contains("en-fr.index"), "{e}");
    // A dictd offset near 2^64 (base64 of usize::MAX - 1).
    std::fs::write(d.path().join("x.dict"), "cat\nchat\n").unwrap();
    let idx = write(
        d.path(),
        "x.index",
        &format!("cat\t{}\tB\n", b64(usize::MAX - 1)),
    );
    let e = Dictionary::load(&idx).unwrap_err().to_string();
    assert!(e.contains("x.index:1") && e.contains("past the end"), "{e}");
}

/// A floret folder: a `rows` x 2 table whose row r is (r, 10 r), floret
/// settings minn 2, maxn 3, two hashes, floret's default seed.
fn floret_folder(dir: &Path, rows: usize, cfg: &str) -> PathBuf {
    let v = dir.join("vocab");
    std::fs::create_dir_all(&v).unwrap();
    let data = (0..rows)
        .flat_map(|r| [r as f32, 10.0 * r as f32])
        .collect();
    write_npy(
        &v.join("vectors"),
        &Matrix {
            rows,
            cols: 2,
            data,
        },
    )
    .unwrap();
    std::fs::write(v.join("vectors.cfg"), cfg).unwrap();
    std::fs::write(v.join("key2row"), [0x80u8]).unwrap();
    v
}

const FLORET_CFG: &str = r#"{"mode":"floret","minn":2,"maxn":3,"hash_count":2,"hash_seed":2166136261,"bow":"<","eow":">","attr":65}"#;

/// spaCy's `lookups.bin`: a map of tables; `lexeme_prob` maps string keys to log-probabilities.
fn lookups(v: &Path, probs: &[(&str, f64)]) {
    use embedlab_data::murmur::spacy_key;
    let table = probs
        .iter()
        .map(|(w, p)| (rmpv::Value::from(spacy_key(w)), rmpv::Value::from(*p)))
        .collect();
    let root = rmpv::Value::Map(vec![
        (
            rmpv::Value::from("lexeme_settings"),
            rmpv::Value::Map(vec![]),
        ),
        (rmpv::Value::from("lexeme_prob"), rmpv::Value::Map(table)),
    ]);
    let mut buf = vec![];
    rmpv::encode::write_value(&mut buf, &root).unwrap();
    std::fs::write(v.join("lookups.bin"), buf).unwrap();
}

#[test]
fn floret_vectors_are_means_of_hashed_ngram_rows() {
    use embedlab_data::embeddings::floret_config;
    let d = tempfile::tempdir().unwrap();
    let v = floret_folder(d.path(), 7, FLORET_CFG);
    let cfg = floret_config(&v).unwrap().unwrap();
    // The padded word, then its 2- and 3-grams (characters, not bytes; a
    // short word repeats its padded form, as floret and spaCy do).
    assert_eq!(cfg.ngrams("ab"), ["<ab>", "<a", "ab", "b>", "<ab", "ab>"]);
    assert_eq!(cfg.ngrams("ä"), ["<ä>", "<ä", "ä>", "<ä>"]);
    // Buckets (MurmurHash3_x64_128 by the Python mmh3 package, mod 7):
    // <ab> 5 2, <a 3 6, ab 1 4, b> 2 4, <ab 1 0, ab> 5 6: mean row 39/12;
    // <ä> 1 4, <ä 2 2, ä> 1 3, <ä> 1 4: mean row 18/8.
    std::fs::write(d.path().join("words.txt"), "ab\nä\n").unwrap();
    lookups(&v, &[("ä", -1.0), ("ab", -2.0)]);
    std::fs::write(v.join("strings.json"), r#"["ab","ä"]"#).unwrap();
    let o = LoadOptions {
        words: Some(d.path().join("words.txt")),
        ..opts()
    };
    let e = Embeddings::load(d.path(), &o).unwrap();
    assert_eq!(e.report.format, Some(EmbeddingFormat::Floret));
    assert_eq!(e.words(), ["ab", "ä"]);
    assert_eq!(e.row(0), [3.25, 32.5]);
    assert_eq!(e.row(1), [2.25, 22.5]);
    // Without a word list, the vocabulary is strings.json in lookups.bin's
    // order (most probable first).
    let e = Embeddings::load(&v, &opts()).unwrap();
    assert_eq!(e.words(), ["ä", "ab"]);
    assert_eq!(e.row(1), [3.25, 32.5]);
}

#[test]
fn floret_vocabulary_order_case_and_limits() {
    let d = tempfile::tempdir().unwrap();
    let v = floret_folder(d.path(), 11, FLORET_CFG);
    // Strings without a probability are not words; ties go by the string.
    std::fs::write(
        v.join("strings.json"),
        r#"["Koira","koira","talo","kissa","ilman","", "x"]"#,
    )
    .unwrap();
    lookups(
        &v,
        &[
            ("talo", -3.0),
            ("kissa", -3.0),
            ("Koira", -1.0),
            ("koira", -2.0),
            ("", -0.5),
            ("x", f64::NAN),
        ],
    );
    let e = Embeddings::load(&v, &opts()).unwrap();
    assert_eq!(e.words(), ["Koira", "koira", "kissa", "talo"]);
    // Capitals are their own n-grams: another vector.
    assert_ne!(e.row(0), e.row(1));
    let lower = Embeddings::load(
        &v,
        &LoadOptions {
            lowercase: true,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(lower.words(), ["koira", "kissa", "talo"]);
    assert_eq!(lower.report.duplicates_skipped, 1);
    // As in every format, the lowercased word keeps its most frequent
    // casing's vector ("Koira"'s, not the string "koira"'s).
    assert_eq!(lower.row(0), e.row(0));
    let two = Embeddings::load(
        &v,
        &LoadOptions {
            max_vocab: Some(2),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(two.words(), ["Koira", "koira"]);
    // --format spacy on a floret folder reads it as floret.
    let s = Embeddings::load(
        &v,
        &LoadOptions {
            format: Some(EmbeddingFormat::Spacy),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(s.row(2), e.row(2));
}

#[test]
fn bad_floret_folders_are_named() {
    let d = tempfile::tempdir().unwrap();
    let v = floret_folder(
        d.path(),
        5,
        &FLORET_CFG.replace(r#""hash_count":2"#, r#""hash_count":7"#),
    );
    let err = Embeddings::load(&v, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("vectors.cfg") && err.contains("hash_count 7"),
        "{err}"
    );
    std::fs::write(
        v.join("vectors.cfg"),
        FLORET_CFG.replace(r#""minn":2"#, r#""minn":4"#),
    )
    .unwrap();
    let err = Embeddings::load(&v, &opts()).unwrap_err().to_string();
    assert!(err.contains("minn 4 and maxn 3"), "{err}");
    std::fs::write(v.join("vectors.cfg"), r#"{"mode":"floret","minn":2}"#).unwrap();
    let err = Embeddings::load(&v, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("vectors.cfg") && err.contains("floret settings"),
        "{err}"
    );
    std::fs::write(v.join("vectors.cfg"), FLORET_CFG).unwrap();
    // No lookups.bin and no word list: no vocabulary, and it says where to look.
    std::fs::write(v.join("strings.json"), r#"["a"]"#).unwrap();
    let err = Embeddings::load(&v, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("lookups.bin") && err.contains("word list"),
        "{err}"
    );
    std::fs::write(v.join("lookups.bin"), [0x82u8, 0xa3, b'a']).unwrap();
    let err = Embeddings::load(&v, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("lookups.bin") && err.contains("msgpack"),
        "{err}"
    );
    lookups(&v, &[("b", -1.0)]);
    let err = Embeddings::load(&v, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("strings.json") && err.contains("no vocabulary"),
        "{err}"
    );
    // A folder that is neither spaCy nor floret.
    let other = d.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let err = Embeddings::load(&other, &opts()).unwrap_err().to_string();
    assert!(err.contains("floret"), "{err}");
}
