//! The 8-3-8 identity autoencoder of the course (Mitchell's *Machine
//! Learning*, ch. 4): eight one-hot inputs squeezed through three sigmoid
//! units and reconstructed. It rediscovers a roughly binary 3-bit code —
//! the smallest example of a learned representation. It trains through the
//! shared trainer (full batch, Adam), like every other family.
use crate::batches::FullBatch;
use crate::error::{ModelError, Result};
use embedlab_train::{Batch, Group, Losses, Progress, Selection, Trainable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// The network's shape (fixed by the exercise, recorded with checkpoints).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IdentityConfig {
    pub inputs: i64,
    pub hidden: i64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            inputs: 8,
            hidden: 3,
        }
    }
}

pub struct IdentityNet {
    pub cfg: IdentityConfig,
    pub vs: nn::VarStore,
    enc: nn::Linear,
    dec: nn::Linear,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct IdentityResult {
    /// The hidden activations for each input.
    pub codes: Vec<Vec<f64>>,
    /// The output unit with the largest activation, for each input.
    pub argmax: Vec<i64>,
    /// Inputs reconstructed (argmax output = input).
    pub correct: usize,
    pub final_loss: f64,
}

impl IdentityNet {
    pub fn new(cfg: IdentityConfig, device: Device) -> Result<Self> {
        if cfg.inputs < 2 || cfg.hidden < 1 {
            return Err(ModelError::Invalid(format!(
                "the identity network needs ≥ 2 inputs and ≥ 1 hidden unit, got {}-{}-{}",
                cfg.inputs, cfg.hidden, cfg.inputs
            )));
        }
        let vs = nn::VarStore::new(device);
        let enc = nn::linear(
            vs.root() / "enc",
            cfg.inputs,
            cfg.hidden,
            Default::default(),
        );
        let dec = nn::linear(
            vs.root() / "dec",
            cfg.hidden,
            cfg.inputs,
            Default::default(),
        );
        Ok(Self { cfg, vs, enc, dec })
    }

    /// The one-hot patterns, repeated `times` an epoch.
    pub fn data(&self, times: usize) -> FullBatch {
        let d = self.vs.device();
        FullBatch {
            x: Tensor::eye(self.cfg.inputs, (Kind::Float, d)),
            y: Tensor::arange(self.cfg.inputs, (Kind::Int64, d)),
            times,
        }
    }

    fn hidden(&self, x: &Tensor) -> Tensor {
        self.enc.forward(x).sigmoid()
    }

    fn bce(&self, x: &Tensor) -> Tensor {
        self.dec
            .forward(&self.hidden(x))
            .binary_cross_entropy_with_logits::<Tensor>(x, None, None, tch::Reduction::Mean)
    }

    /// Codes, reconstructions and the final loss.
    pub fn result(&self) -> Result<IdentityResult> {
        let _g = tch::no_grad_guard();
        let x = Tensor::eye(self.cfg.inputs, (Kind::Float, self.vs.device()));
        let h = self.hidden(&x);
        let argmax: Vec<i64> = Vec::try_from(&self.dec.forward(&h).argmax(1, false))?;
        let codes: Vec<Vec<f64>> = (0..self.cfg.inputs)
            .map(|i| Vec::<f64>::try_from(&h.get(i).to_kind(Kind::Double)))
            .collect::<std::result::Result<_, _>>()?;
        Ok(IdentityResult {
            correct: argmax
                .iter()
                .enumerate()
                .filter(|(i, a)| *i as i64 == **a)
                .count(),
            codes,
            argmax,
            final_loss: self.bce(&x).double_value(&[]),
        })
    }
}

impl IdentityResult {
    /// The table the course prints: input, hidden values, rounded code.
    pub fn table(&self) -> String {
        let n = self.codes.len();
        let mut s = format!(
            "{:<w$}  hidden units                code  output\n",
            "input",
            w = n
        );
        for (i, c) in self.codes.iter().enumerate() {
            let onehot: String = (0..n).map(|j| if j == i { '1' } else { '0' }).collect();
            s += &format!(
                "{onehot}  {}  {}   {}\n",
                c.iter()
                    .map(|v| format!("{v:.3}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                self.bits(i),
                self.argmax[i]
            );
        }
        s
    }
    /// Input `i`'s code rounded to bits.
    pub fn bits(&self, i: usize) -> String {
        self.codes[i]
            .iter()
            .map(|v| if *v >= 0.5 { '1' } else { '0' })
            .collect()
    }
}

impl Trainable for IdentityNet {
    type Data = FullBatch;
    type Error = ModelError;
    fn kind(&self) -> String {
        "identity".into()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("serialisable")
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn groups(&self) -> Vec<Group> {
        vec![Group::new("model", &["enc", "dec"])]
    }
    fn loss(&mut self, _g: &str, b: &Batch, _at: &Progress) -> Result<Losses> {
        Ok(Losses::single(self.bce(&b.x)))
    }
    fn validate(&mut self, _valid: &FullBatch) -> Result<BTreeMap<String, f64>> {
        let r = self.result()?;
        Ok([
            ("loss".to_string(), r.final_loss),
            ("correct".to_string(), r.correct as f64),
        ]
        .into())
    }
    fn selection(&self) -> Selection {
        Selection::Last
    }
}
