//! The course's g∘h: a small convolutional classifier trained on the image
//! set itself. Its penultimate layer h(x) is a representation (query by
//! image, linear probes and k-NN beside pixels and autoencoder codes) and
//! the feature space in which generated images are scored (Fréchet
//! distance, precision/recall, class coverage).
//!
//! Two 3×3 convolutions, 2×2 max-pooling, two more, pooling, a fully
//! connected layer of `features` units (h, after its ReLU), dropout, and
//! the class scores.
use crate::batches::Split;
use crate::capabilities::{Classify, Encode, ImageModel};
use crate::error::{ModelError, Result};
use embedlab_train::{Batch, Better, Group, Losses, Metric, Progress, Selection, Trainable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClassifierConfig {
    /// Channels of the first two convolutions (the next two have twice as many).
    pub width: i64,
    /// Size of h(x).
    pub features: i64,
    pub dropout: f64,
    pub channels: i64,
    pub height: i64,
    pub width_px: i64,
    pub classes: i64,
}

pub struct Classifier {
    pub cfg: ClassifierConfig,
    pub vs: nn::VarStore,
    convs: Vec<nn::Conv2D>,
    fc: nn::Linear,
    out: nn::Linear,
}

impl Classifier {
    pub fn new(cfg: ClassifierConfig, device: Device) -> Result<Self> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        if cfg.height % 4 != 0 || cfg.width_px % 4 != 0 {
            return bad(format!(
                "the classifier pools twice: {}×{} is not divisible by 4",
                cfg.height, cfg.width_px
            ));
        }
        if cfg.classes < 2 {
            return bad(format!(
                "a classifier needs at least 2 classes (the data has {})",
                cfg.classes
            ));
        }
        if cfg.width < 1 || cfg.features < 1 {
            return bad("the classifier's widths must be positive".into());
        }
        if !(0.0..1.0).contains(&cfg.dropout) {
            return bad(format!("dropout {} must be in [0, 1)", cfg.dropout));
        }
        let vs = nn::VarStore::new(device);
        let p = vs.root() / "net";
        let cc = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let w = cfg.width;
        let convs = vec![
            nn::conv2d(&p / "c1", cfg.channels, w, 3, cc),
            nn::conv2d(&p / "c2", w, w, 3, cc),
            nn::conv2d(&p / "c3", w, 2 * w, 3, cc),
            nn::conv2d(&p / "c4", 2 * w, 2 * w, 3, cc),
        ];
        let flat = 2 * w * (cfg.height / 4) * (cfg.width_px / 4);
        let fc = nn::linear(&p / "fc", flat, cfg.features, Default::default());
        let out = nn::linear(&p / "out", cfg.features, cfg.classes, Default::default());
        Ok(Self {
            cfg,
            vs,
            convs,
            fc,
            out,
        })
    }

    /// h(x): the penultimate layer, after its ReLU.
    pub fn features(&self, x: &Tensor) -> Tensor {
        let c = &self.convs;
        let h = c[1]
            .forward(&c[0].forward(x).relu())
            .relu()
            .max_pool2d_default(2);
        let h = c[3]
            .forward(&c[2].forward(&h).relu())
            .relu()
            .max_pool2d_default(2);
        self.fc.forward(&h.flatten(1, -1)).relu()
    }

    fn scores(&self, x: &Tensor, train: bool) -> Tensor {
        self.out
            .forward(&self.features(x).dropout(self.cfg.dropout, train))
    }

    /// Mean cross-entropy and accuracy (%) over a split.
    pub fn evaluate_split(&self, split: &Split, batch: i64) -> BTreeMap<String, f64> {
        let _g = tch::no_grad_guard();
        let (mut loss, mut right) = (0.0, 0i64);
        for (x, y) in split.batches(batch) {
            let s = self.scores(&x, false);
            loss += s.cross_entropy_for_logits(&y).double_value(&[]) * x.size()[0] as f64;
            right += s
                .argmax(1, false)
                .eq_tensor(&y)
                .sum(Kind::Int64)
                .int64_value(&[]);
        }
        let n = split.len().max(1) as f64;
        BTreeMap::from([
            ("loss".to_string(), loss / n),
            ("accuracy".to_string(), 100.0 * right as f64 / n),
        ])
    }
}

impl Trainable for Classifier {
    type Data = Split;
    type Error = ModelError;
    fn kind(&self) -> String {
        "classifier".into()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("serialisable")
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn groups(&self) -> Vec<Group> {
        vec![Group::new("model", &["net"])]
    }
    fn loss(&mut self, _group: &str, b: &Batch, _at: &Progress) -> Result<Losses> {
        // Float32 logits whatever the products ran in (bfloat16 training).
        let s = crate::layers::full_precision(self.scores(&b.x, true));
        Ok(Losses::single(s.cross_entropy_for_logits(&b.y)))
    }
    fn validate(&mut self, valid: &Split) -> Result<BTreeMap<String, f64>> {
        Ok(self.evaluate_split(valid, 1000))
    }
    fn selection(&self) -> Selection {
        Selection::Max("accuracy".into())
    }
}

impl Encode for Classifier {
    fn code_dim(&self) -> i64 {
        self.cfg.features
    }
    fn what(&self) -> String {
        format!("classifier features h(x) ({})", self.cfg.features)
    }
    fn encode(&self, x: &Tensor, _y: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.features(x))
    }
}

impl Classify for Classifier {
    fn classes(&self) -> i64 {
        self.cfg.classes
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.scores(x, false))
    }
}

impl ImageModel for Classifier {
    fn name(&self) -> String {
        "classifier".into()
    }
    fn describe(&self) -> String {
        format!(
            "conv classifier ({}-{} channels, h(x) of {}, dropout {})",
            self.cfg.width,
            2 * self.cfg.width,
            self.cfg.features,
            self.cfg.dropout
        )
    }
    fn classes(&self) -> i64 {
        self.cfg.classes
    }
    fn encoder(&self) -> Option<&dyn Encode> {
        Some(self)
    }
    fn classifier(&self) -> Option<&dyn Classify> {
        Some(self)
    }
    fn family_metrics(&self, test: &Split) -> Result<Vec<Metric>> {
        let m = self.evaluate_split(test, 1000);
        Ok(vec![
            Metric {
                name: "test accuracy".into(),
                value: m["accuracy"],
                unit: "%".into(),
                better: Better::Higher,
                note: Some(format!("{} test images", test.len())),
            },
            Metric {
                name: "test cross-entropy".into(),
                value: m["loss"],
                unit: "nats/image".into(),
                better: Better::Lower,
                note: None,
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedlab_train::Batches;

    #[test]
    fn learns_a_separable_toy_problem_and_exposes_its_features() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        tch::manual_seed(0);
        // Class 0: bright left half; class 1: bright right half; noise.
        let n = 256;
        let y = Tensor::randint(2, [n], (Kind::Int64, Device::Cpu));
        let cols = Tensor::arange(8, (Kind::Float, Device::Cpu))
            .ge(4)
            .to_kind(Kind::Float);
        let side = y.to_kind(Kind::Float).view([n, 1, 1, 1]);
        let img = (&side * cols.view([1, 1, 1, 8])
            + (-&side + 1.0) * (-cols.view([1, 1, 1, 8]) + 1.0))
            .expand([n, 1, 8, 8], false)
            * 0.7
            + Tensor::rand([n, 1, 8, 8], (Kind::Float, Device::Cpu)) * 0.3;
        let split = Split { x: img, y };
        let mut c = Classifier::new(
            ClassifierConfig {
                width: 4,
                features: 6,
                dropout: 0.2,
                channels: 1,
                height: 8,
                width_px: 8,
                classes: 2,
            },
            Device::Cpu,
        )
        .unwrap();
        let mut opt =
            tch::nn::OptimizerConfig::build(tch::nn::adam(0.9, 0.999, 0.0), c.var_store(), 1e-2)
                .unwrap();
        let at = Progress {
            epoch: 0,
            epochs: 1,
            done: 0.0,
        };
        for _ in 0..5 {
            for b in split.epoch(32) {
                let l = c.loss("model", &b, &at).unwrap();
                opt.backward_step(&l.loss);
            }
        }
        let m = c.evaluate_split(&split, 100);
        assert!(m["accuracy"] > 95.0, "{m:?}");
        assert_eq!(c.encode(&split.x, None).unwrap().size(), [n, 6]);
        assert!(Classifier::new(
            ClassifierConfig {
                classes: 1,
                ..c.cfg.clone()
            },
            Device::Cpu
        )
        .is_err());
    }
}
