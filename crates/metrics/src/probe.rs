//! Linear probe: multinomial logistic regression on fixed features —
//! how linearly separable the classes are in a representation (raw pixels
//! vs learned codes). Features are standardised with the training
//! statistics; the classifier is trained full-batch with L2 weight decay
//! by Adam (embedlab's own, as every model), seeded.
use embedlab_train::{OptimConfig, Optimizer};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ProbeResult {
    pub features: i64,
    pub train_images: i64,
    pub test_images: i64,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
}

#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub steps: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: i64,
    /// Decay the learning rate to 0 along a cosine (Adam at a constant rate
    /// keeps jittering around the optimum; with the decay and enough steps
    /// the probe reaches the convex problem's optimum, scikit-learn's).
    pub cosine: bool,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            steps: 300,
            lr: 0.05,
            weight_decay: 1e-4,
            seed: 0,
            cosine: false,
        }
    }
}

fn accuracy(logits: &Tensor, y: &Tensor) -> f64 {
    logits
        .argmax(1, false)
        .eq_tensor(y)
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[])
}

/// Fits the probe on (`x_train`, `y_train`) and scores it on both sets.
/// `x_*`: n × d features (any shape whose first dimension is n).
pub fn linear_probe(
    x_train: &Tensor,
    y_train: &Tensor,
    x_test: &Tensor,
    y_test: &Tensor,
    classes: i64,
    cfg: &ProbeConfig,
) -> ProbeResult {
    tch::manual_seed(cfg.seed);
    let xtr = x_train.flatten(1, -1).to_kind(Kind::Float);
    let xte = x_test.flatten(1, -1).to_kind(Kind::Float);
    let mean = xtr.mean_dim(0, true, Kind::Float);
    // A column constant in training (an MNIST border pixel) is scaled by
    // 1, as scikit-learn's StandardScaler does: dividing by ~0 would blow
    // up the test images' rare non-zero values there.
    let std = xtr.std_dim(0, false, true);
    let std = std.where_self(&std.gt(1e-6), &std.ones_like());
    let xtr = (&xtr - &mean) / &std;
    let xte = (&xte - &mean) / &std;
    let d = xtr.size()[1];
    let vs = nn::VarStore::new(xtr.device());
    let lin = nn::linear(vs.root(), d, classes, Default::default());
    let mut oc = OptimConfig::adam(cfg.lr);
    oc.weight_decay = cfg.weight_decay;
    let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = Optimizer::new("probe", params, &oc);
    for step in 0..cfg.steps {
        if cfg.cosine {
            let t = step as f64 / cfg.steps as f64;
            opt.lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        }
        let loss = lin.forward(&xtr).cross_entropy_for_logits(y_train);
        let mut g = opt
            .gradients(&loss)
            .expect("the probe's loss reaches its weights");
        let _ = opt.step(&mut g);
    }
    let _g = tch::no_grad_guard();
    ProbeResult {
        features: d,
        train_images: xtr.size()[0],
        test_images: xte.size()[0],
        train_accuracy: accuracy(&lin.forward(&xtr), y_train),
        test_accuracy: accuracy(&lin.forward(&xte), y_test),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn separable_classes_are_found_and_xor_is_not() {
        let _one = embedlab_testkit::seeded();
        tch::manual_seed(0);
        let n = 400;
        // Three Gaussian blobs in 5-d: linearly separable.
        let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3);
        let centres = Tensor::eye(5, (Kind::Float, Device::Cpu)).narrow(0, 0, 3) * 4.0;
        let x =
            centres.index_select(0, &y) + Tensor::randn([n, 5], (Kind::Float, Device::Cpu)) * 0.5;
        let r = linear_probe(&x, &y, &x, &y, 3, &ProbeConfig::default());
        assert!(r.test_accuracy > 0.98, "{r:?}");
        // XOR: no linear classifier beats chance by much.
        let a = Tensor::randint(2, [n], (Kind::Int64, Device::Cpu));
        let b = Tensor::randint(2, [n], (Kind::Int64, Device::Cpu));
        let x = Tensor::stack(&[&a, &b], 1).to_kind(Kind::Float) * 2.0 - 1.0
            + Tensor::randn([n, 2], (Kind::Float, Device::Cpu)) * 0.1;
        let y = a.logical_xor(&b).to_kind(Kind::Int64);
        let r = linear_probe(&x, &y, &x, &y, 2, &ProbeConfig::default());
        assert!(r.test_accuracy < 0.65, "{r:?}");
    }
}
