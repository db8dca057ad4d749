//! The floret reader on the real Finnish table (scripts/fetch-data.sh fi):
//! the vectors spaCy itself computes (bench/floret_reference.py wrote them
//! into tests/fixtures), and neighbours a Finnish reader would accept.
use embedlab_data::{EmbeddingFormat, Embeddings, LoadOptions};
use std::path::PathBuf;

fn vocab() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fi/vocab");
    assert!(
        p.join("vectors.cfg").is_file(),
        "{} missing: run scripts/fetch-data.sh fi",
        p.display()
    );
    p
}

#[derive(serde::Deserialize)]
struct Reference {
    words: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

#[test]
#[ignore = "needs data/fi (scripts/fetch-data.sh fi); run by make test"]
fn floret_vectors_equal_spacys_own() {
    let text = include_str!("fixtures/floret-fi-spacy.json");
    let r: Reference = serde_json::from_str(text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("words.txt");
    std::fs::write(&list, r.words.join("\n")).unwrap();
    let e = Embeddings::load(
        &vocab(),
        &LoadOptions {
            words: Some(list),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(e.report.format, Some(EmbeddingFormat::Floret));
    assert_eq!(e.words(), r.words);
    for (i, want) in r.vectors.iter().enumerate() {
        let got = e.row(i);
        let err = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0f32, f32::max);
        assert!(err < 1e-5, "{}: off by {err} (relative)", r.words[i]);
    }
}

/// The `k` nearest words (cosine) of `word` among the first `n`.
fn neighbours(e: &Embeddings, word: &str, k: usize) -> Vec<String> {
    let unit = |i: usize| {
        let r = e.row(i);
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        r.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let q = unit(
        e.get(word)
            .unwrap_or_else(|| panic!("{word} not in the vocabulary")),
    );
    let mut s: Vec<(f32, usize)> = (0..e.len())
        .map(|i| (unit(i).iter().zip(&q).map(|(a, b)| a * b).sum(), i))
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    s.iter()
        .map(|&(_, i)| e.word(i).to_string())
        .filter(|w| w != word)
        .take(k)
        .collect()
}

#[test]
#[ignore = "needs data/fi (scripts/fetch-data.sh fi); run by make test"]
fn finnish_vocabulary_is_in_frequency_order_with_sensible_neighbours() {
    let e = Embeddings::load(
        &vocab(),
        &LoadOptions {
            max_vocab: Some(20_000),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(e.len(), 20_000);
    assert_eq!(e.dim(), 300);
    // spaCy's frequencies: punctuation and "ja" (and) first.
    let top: Vec<&str> = e.words()[..5].iter().map(|s| s.as_str()).collect();
    assert_eq!(top, [".", ",", "ja", "on", "-"]);
    let dog = neighbours(&e, "koira", 10);
    assert!(dog.iter().any(|w| w == "kissa"), "koira: {dog:?}");
    let city = neighbours(&e, "Helsinki", 10);
    assert!(city.iter().any(|w| w == "Tampere"), "Helsinki: {city:?}");
}
