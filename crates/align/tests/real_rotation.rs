//! Self-learning on real vectors: English GloVe against a randomly rotated,
//! noisy copy whose vocabulary is shifted (only part of the words are shared),
//! recovered with no seed dictionary from several seeds.
//!
//! Needs the offline data (`scripts/fetch-data.sh`; `make test` fetches it),
//! hence `#[ignore]` for a plain `cargo test`.
use embedlab_align::retrieval::{Retrieval, Space};
use embedlab_align::selflearn::{self_learn, SelfLearnConfig};
use embedlab_align::Normalization;
use embedlab_data::{Embeddings, LoadOptions};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn glove() -> Embeddings {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/en/glove_6B_50d_emb.npy");
    assert!(
        root.exists(),
        "{} missing: run scripts/fetch-data.sh",
        root.display()
    );
    Embeddings::load(
        &root,
        &LoadOptions {
            max_vocab: Some(7000),
            dedupe: true,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
#[ignore = "needs data/ (scripts/fetch-data.sh); run by make test"]
fn self_learning_recovers_a_rotation_of_real_vectors_with_a_shifted_vocabulary() {
    let en = glove();
    let norm: Normalization = "renorm,center,renorm".parse().unwrap();
    let all = en.tensor();
    // Source: words 0..6000; target: words 1000..7000 rotated with noise
    // (5,000 shared words, 1,000 on each side without a counterpart).
    let src = all.narrow(0, 0, 6000);
    for seed in [1i64, 2, 3] {
        tch::manual_seed(seed);
        let d = all.size()[1];
        let (q, _) = Tensor::linalg_qr(
            &Tensor::randn([d, d], (Kind::Double, Device::Cpu)),
            "reduced",
        );
        let base = all.narrow(0, 1000, 6000);
        let noise = Tensor::randn(base.size(), (Kind::Float, Device::Cpu))
            * 0.01
            * base.norm().double_value(&[])
            / (6000f64).sqrt();
        let tgt = base.matmul(&q.to_kind(Kind::Float)) + noise;
        let (x, z) = (norm.apply(&src), norm.apply(&tgt));
        let cfg = SelfLearnConfig {
            cutoff: 6000,
            patience: 5,
            ..Default::default()
        };
        let (map, _) = self_learn(&x, &z, None, &cfg, |_| {}).unwrap();
        let mut space = Space::new(&map.map_src(&x), &map.map_tgt(&z)).unwrap();
        // Test on shared words outside the most frequent 2,000: source 2000..3500 = target 1000..2500.
        let queries: Vec<usize> = (2000..3500).collect();
        let (_, idx) = space
            .translate(&queries, Retrieval::Csls { k: 10 }, 1)
            .unwrap();
        let idx = Vec::<i64>::try_from(idx.view(-1)).unwrap();
        let correct = queries
            .iter()
            .zip(&idx)
            .filter(|(&s, &t)| t as usize == s - 1000)
            .count();
        let p1 = 100.0 * correct as f64 / queries.len() as f64;
        assert!(p1 >= 95.0, "seed {seed}: P@1 {p1:.2}");
    }
}
