//! MurmurHash64A (Austin Appleby), the string hash spaCy uses for its
//! `StringStore` keys (seed 1 over the UTF-8 bytes).

/// MurmurHash64A of `data` with `seed`.
pub fn murmurhash64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let len = data.len();
    let mut h: u64 = seed ^ (len as u64).wrapping_mul(M);
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= (b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// spaCy's key for a string.
pub fn spacy_key(s: &str) -> u64 {
    murmurhash64a(s.as_bytes(), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_depends_only_on_seed() {
        // With no data the hash is the finaliser applied to the seed.
        assert_ne!(murmurhash64a(b"", 1), murmurhash64a(b"", 2));
    }

    #[test]
    fn tail_bytes_change_the_hash() {
        assert_ne!(spacy_key("chien"), spacy_key("chiens"));
        assert_ne!(spacy_key("abcdefgh"), spacy_key("abcdefgh1"));
    }
}

#[cfg(test)]
mod spacy_known_keys {
    use super::spacy_key;

    #[test]
    fn matches_keys_printed_in_spacy_documentation() {
        // spaCy's docs show nlp.vocab.strings["coffee"] and ["apple"].
        assert_eq!(spacy_key("coffee"), 3197928453018144401);
        assert_eq!(spacy_key("apple"), 8566208034543834098);
    }
}
