//! The 8-3-8 identity autoencoder of the course (Mitchell's *Machine
//! Learning*, ch. 4): eight one-hot inputs squeezed through three sigmoid
//! units and reconstructed. It rediscovers a roughly binary 3-bit code —
//! the smallest example of a learned representation.
use crate::optim::Adam;
use serde::Serialize;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

#[derive(Serialize, Clone, Debug)]
pub struct IdentityResult {
    /// The 3 hidden activations for each of the 8 inputs.
    pub codes: Vec<Vec<f64>>,
    /// The output unit with the largest activation, for each input.
    pub argmax: Vec<i64>,
    /// Inputs reconstructed (argmax output = input).
    pub correct: usize,
    pub final_loss: f64,
    pub steps: usize,
}

impl IdentityResult {
    /// The table the course prints: input, hidden values, rounded code.
    pub fn table(&self) -> String {
        let mut s = String::from("input     hidden (3 units)        code  output\n");
        for (i, c) in self.codes.iter().enumerate() {
            let mut onehot = ['0'; 8];
            onehot[i] = '1';
            let bits: String = c
                .iter()
                .map(|v| if *v >= 0.5 { '1' } else { '0' })
                .collect();
            s += &format!(
                "{}  {:.3} {:.3} {:.3}     {}   {}\n",
                onehot.iter().collect::<String>(),
                c[0],
                c[1],
                c[2],
                bits,
                self.argmax[i]
            );
        }
        s
    }
}

/// Trains the 8-3-8 network full-batch on the 8 one-hot patterns
/// (sigmoid units, binary cross-entropy, Adam).
pub fn train_identity(seed: i64, steps: usize, lr: f64) -> IdentityResult {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = nn::linear(vs.root() / "enc", 8, 3, Default::default());
    let dec = nn::linear(vs.root() / "dec", 3, 8, Default::default());
    let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = Adam::new(params, lr);
    let x = Tensor::eye(8, (Kind::Float, Device::Cpu));
    let mut last = f64::NAN;
    for _ in 0..steps {
        let h = enc.forward(&x).sigmoid();
        let loss = dec.forward(&h).binary_cross_entropy_with_logits::<Tensor>(
            &x,
            None,
            None,
            tch::Reduction::Mean,
        );
        let g = opt.gradients(&loss);
        opt.step(&g);
        last = loss.double_value(&[]);
    }
    let _g = tch::no_grad_guard();
    let h = enc.forward(&x).sigmoid();
    let out = dec.forward(&h);
    let argmax: Vec<i64> = Vec::try_from(&out.argmax(1, false)).expect("i64");
    let codes: Vec<Vec<f64>> = (0..8)
        .map(|i| Vec::<f64>::try_from(&h.get(i).to_kind(Kind::Double)).expect("f64"))
        .collect();
    IdentityResult {
        correct: argmax
            .iter()
            .enumerate()
            .filter(|(i, a)| *i as i64 == **a)
            .count(),
        codes,
        argmax,
        final_loss: last,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_distinct_code_for_each_input() {
        let r = train_identity(0, 3000, 0.05);
        assert_eq!(r.correct, 8, "{}", r.table());
        for i in 0..8 {
            for j in 0..i {
                let d: f64 = (0..3)
                    .map(|k| (r.codes[i][k] - r.codes[j][k]).powi(2))
                    .sum();
                assert!(d.sqrt() > 0.1, "codes {i} and {j} coincide\n{}", r.table());
            }
        }
        assert!(r.final_loss < 0.1, "{}", r.final_loss);
    }
}
