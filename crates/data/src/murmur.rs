//! MurmurHash64A (Austin Appleby), the string hash spaCy uses for its
//! `StringStore` keys (seed 1 over the UTF-8 bytes), and floret's bucket
//! hashes (MurmurHash3_x64_128, from the `murmur3` crate).

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

/// floret's hashes of one n-gram: MurmurHash3_x64_128 of its UTF-8 bytes
/// with `seed`, cut into four 32-bit words (the low then the high half of
/// the first 64 bits, then of the second), of which the first `count` (1 to
/// 4) are used; a bucket is a hash modulo the table's rows.
pub fn floret_hashes(ngram: &str, seed: u32, count: usize) -> impl Iterator<Item = u32> {
    let (h1, h2) = murmur3_x64_128(ngram.as_bytes(), seed);
    [h1 as u32, (h1 >> 32) as u32, h2 as u32, (h2 >> 32) as u32]
        .into_iter()
        .take(count.min(4))
}

/// MurmurHash3_x64_128 of `data` as its two 64-bit halves.
pub fn murmur3_x64_128(data: &[u8], seed: u32) -> (u64, u64) {
    let mut d = data;
    let h = murmur3::murmur3_x64_128(&mut d, seed).expect("hashing bytes in memory cannot fail");
    (h as u64, (h >> 64) as u64)
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
    fn murmur3_matches_an_independent_implementation() {
        // Printed by the Python `mmh3` package (a separate C implementation):
        // mmh3.hash64(data, seed, signed=False).
        assert_eq!(murmur3_x64_128(b"", 0), (0, 0));
        assert_eq!(
            murmur3_x64_128(b"hello", 0),
            (14688674573012802306, 6565844092913065241)
        );
        assert_eq!(
            murmur3_x64_128(b"<koira>", 2166136261),
            (7723632978760936789, 18187453454080524958)
        );
        assert_eq!(
            murmur3_x64_128("<äiti>".as_bytes(), 2166136261),
            (3932357010633434486, 774013286430785473)
        );
        assert_eq!(
            murmur3_x64_128(b"The quick brown fox jumps over the lazy dog", 42),
            (8362568317626209751, 14147052128672177295)
        );
    }

    #[test]
    fn floret_takes_the_32_bit_words_in_order() {
        let (h1, h2) = (7723632978760936789u64, 18187453454080524958u64);
        let all: Vec<u32> = floret_hashes("<koira>", 2166136261, 4).collect();
        assert_eq!(
            all,
            [h1 as u32, (h1 >> 32) as u32, h2 as u32, (h2 >> 32) as u32]
        );
        let two: Vec<u32> = floret_hashes("<koira>", 2166136261, 2).collect();
        assert_eq!(two, all[..2]);
        assert_eq!(floret_hashes("x", 0, 9).count(), 4);
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
