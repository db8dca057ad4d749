//! Image data on the device, split and batched. The whole split lives in
//! one tensor; a batch is one `index_select` of a shuffled index, so no
//! per-step host copies.
use crate::error::{ModelError, Result};
use embedlab_data::{ImageDataset, ImageSet};
use embedlab_train::{Batch, Batches};
use tch::{Device, Kind, Tensor};

/// Images (n × c × h × w, float in [0, 1]) and labels (i64).
pub struct Split {
    pub x: Tensor,
    pub y: Tensor,
}

/// The indices [`Split::spread`] takes of `len` items for `n`: evenly
/// spaced, all of them when `n` ≥ `len`.
pub fn spread_indices(len: i64, n: i64) -> Vec<i64> {
    if n >= len {
        (0..len).collect()
    } else {
        (0..n).map(|i| i * len / n).collect()
    }
}

impl Split {
    pub fn from_images(set: &ImageSet, device: Device) -> Self {
        let x = Tensor::from_slice(&set.pixels)
            .reshape([
                set.n as i64,
                set.channels as i64,
                set.height as i64,
                set.width as i64,
            ])
            .to_device(device)
            .to_kind(Kind::Float)
            / 255.0;
        let y = Tensor::from_slice(&set.labels)
            .to_kind(Kind::Int64)
            .to_device(device);
        Self { x, y }
    }
    pub fn len(&self) -> i64 {
        self.x.size()[0]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The first `n` images.
    pub fn head(&self, n: i64) -> Split {
        let n = n.min(self.len());
        Split {
            x: self.x.narrow(0, 0, n),
            y: self.y.narrow(0, 0, n),
        }
    }
    /// `n` images evenly spaced through the split (all of it when n ≥ its
    /// size): a fair sample when the file is sorted by class.
    pub fn spread(&self, n: i64) -> Split {
        let len = self.len();
        if n >= len {
            return self.head(len);
        }
        let idx = Tensor::from_slice(&spread_indices(len, n)).to_device(self.x.device());
        Split {
            x: self.x.index_select(0, &idx),
            y: self.y.index_select(0, &idx),
        }
    }
    /// Image `i` alone, as a split of one.
    pub fn narrow_split(&self, i: i64) -> Split {
        Split {
            x: self.x.narrow(0, i, 1),
            y: self.y.narrow(0, i, 1),
        }
    }
    /// Index of the first image of class `c`, if any.
    pub fn first_of_class(&self, c: i64) -> Option<i64> {
        let hits = self.y.eq(c).nonzero();
        (hits.size()[0] > 0).then(|| hits.int64_value(&[0, 0]))
    }
    /// Batches in a random order (from libtorch's generator, seeded by the
    /// caller), the last one possibly smaller.
    pub fn shuffled_batches(&self, batch: i64) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
        let n = self.len();
        let perm = Tensor::randperm(n, (Kind::Int64, self.x.device()));
        (0..n).step_by(batch as usize).map(move |s| {
            let idx = perm.narrow(0, s, batch.min(n - s));
            (self.x.index_select(0, &idx), self.y.index_select(0, &idx))
        })
    }
    /// Batches in order.
    pub fn batches(&self, batch: i64) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
        let n = self.len();
        (0..n).step_by(batch as usize).map(move |s| {
            let len = batch.min(n - s);
            (self.x.narrow(0, s, len), self.y.narrow(0, s, len))
        })
    }
}

impl Batches for Split {
    fn items(&self) -> usize {
        self.len() as usize
    }
    fn epoch(&self, batch_size: i64) -> Box<dyn Iterator<Item = Batch> + '_> {
        Box::new(
            self.shuffled_batches(batch_size)
                .map(|(x, y)| Batch::new(x, y)),
        )
    }
}

/// The same full batch, `times` times an epoch (full-batch training of a
/// tiny problem, e.g. the 8-3-8 network).
pub struct FullBatch {
    pub x: Tensor,
    pub y: Tensor,
    pub times: usize,
}

impl Batches for FullBatch {
    fn items(&self) -> usize {
        self.x.size()[0] as usize * self.times
    }
    fn epoch(&self, _batch_size: i64) -> Box<dyn Iterator<Item = Batch> + '_> {
        Box::new(
            (0..self.times).map(|_| Batch::new(self.x.shallow_clone(), self.y.shallow_clone())),
        )
    }
}

pub struct Splits {
    pub train: Split,
    pub valid: Split,
    pub test: Split,
}

/// A deterministic shuffle of 0..n (SplitMix64 driving Fisher–Yates), so
/// the validation split depends on the seed alone, not on libtorch.
pub fn seeded_permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Splits a dataset: `valid` training images (chosen by `seed`) become the
/// validation set; `train_limit` caps the rest (quick runs) and
/// `test_limit` keeps that many test images, evenly spaced through the test
/// set (MNIST's first and second halves come from different writers, so
/// its first images alone would be a biased sample).
pub fn prepare(
    ds: &ImageDataset,
    valid: usize,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
    seed: u64,
    device: Device,
) -> Result<Splits> {
    if valid == 0 {
        return Err(ModelError::Invalid(format!(
            "{}: --valid must be at least 1: the validation images choose the best epoch, and test images never do",
            ds.source.display()
        )));
    }
    if valid >= ds.train.n {
        return Err(ModelError::Invalid(format!(
            "{}: validation size {valid} leaves no training images (the training set has {})",
            ds.source.display(),
            ds.train.n
        )));
    }
    let perm = seeded_permutation(ds.train.n, seed);
    let (v, t) = perm.split_at(valid);
    let t = match train_limit {
        Some(l) => &t[..l.min(t.len())],
        None => t,
    };
    Ok(Splits {
        train: Split::from_images(&ds.train.select(t), device),
        valid: Split::from_images(&ds.train.select(v), device),
        test: {
            let test = Split::from_images(&ds.test, device);
            match test_limit {
                Some(l) => test.spread(l as i64),
                None => test,
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_seeded_permutation() {
        let a = seeded_permutation(100, 7);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, seeded_permutation(100, 7));
        assert_ne!(a, seeded_permutation(100, 8));
    }

    #[test]
    fn a_test_limit_keeps_evenly_spaced_test_images() {
        let set = |n: usize| ImageSet {
            pixels: (0..n as u8).collect(),
            labels: (0..n as u8).collect(),
            n,
            channels: 1,
            height: 1,
            width: 1,
        };
        let ds = ImageDataset {
            name: "t".into(),
            train: set(20),
            test: set(10),
            classes: vec![],
            source: "t".into(),
            notes: vec![],
        };
        let labels = |l| {
            let s = prepare(&ds, 5, None, l, 1, Device::Cpu).unwrap();
            Vec::<i64>::try_from(&s.test.y).unwrap()
        };
        assert_eq!(labels(Some(4)), [0, 2, 5, 7]);
        assert_eq!(labels(Some(10)), (0..10).collect::<Vec<_>>());
        assert_eq!(labels(Some(50)), (0..10).collect::<Vec<_>>());
        assert_eq!(labels(None), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn batches_cover_every_image_once() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(0);
        let set = ImageSet {
            pixels: (0..10u8).flat_map(|i| [i, i, i, i]).collect(),
            labels: (0..10).collect(),
            n: 10,
            channels: 1,
            height: 2,
            width: 2,
        };
        let s = Split::from_images(&set, Device::Cpu);
        let mut seen: Vec<i64> = s
            .shuffled_batches(3)
            .flat_map(|(x, y)| {
                assert_eq!(x.size()[1..], [1, 2, 2]);
                // Pixels follow their labels.
                let px = (x.select(1, 0).select(1, 0).select(1, 0) * 255.0).round();
                assert_eq!(
                    Vec::<f32>::try_from(&px).unwrap(),
                    Vec::<f32>::try_from(&y.to_kind(Kind::Float)).unwrap()
                );
                Vec::<i64>::try_from(&y).unwrap()
            })
            .collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }
}
