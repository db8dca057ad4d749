//! Log-densities and divergences, one value per row (summed over the
//! remaining dimensions), in nats.
use tch::{Kind, Tensor};

const LOG_2PI: f64 = 1.837_877_066_409_345_5;

fn flat(t: &Tensor) -> Tensor {
    t.flatten(1, -1)
}

/// Sum over every dimension but the first, in the input's precision.
pub fn row_sum(t: &Tensor) -> Tensor {
    flat(t).sum_dim_intlist(1, false, None::<Kind>)
}

/// KL(N(mu, exp(logvar)) ‖ N(0, I)), analytic, per row.
pub fn kl_std_normal(mu: &Tensor, logvar: &Tensor) -> Tensor {
    row_sum(&(logvar.exp() + mu.square() - 1 - logvar)) * 0.5
}

/// log Bernoulli(x; sigmoid(logits)) per row; x may be grey levels in [0, 1]
/// (then this is the negative binary cross-entropy).
pub fn bernoulli_log_prob(logits: &Tensor, x: &Tensor) -> Tensor {
    -row_sum(&logits.binary_cross_entropy_with_logits::<Tensor>(
        x,
        None,
        None,
        tch::Reduction::None,
    ))
}

/// log N(x; mean, exp(logvar)) per row (diagonal covariance; `logvar`
/// broadcasts).
pub fn gaussian_log_prob(x: &Tensor, mean: &Tensor, logvar: &Tensor) -> Tensor {
    let d = flat(&(x - mean));
    let lv = flat(&logvar.expand_as(x));
    row_sum(&((d.square() * (-&lv).exp() + lv + LOG_2PI) * -0.5))
}

/// log N(z; 0, I) per row.
pub fn std_normal_log_prob(z: &Tensor) -> Tensor {
    row_sum(&((z.square() + LOG_2PI) * -0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{a} vs {b}");
    }

    #[test]
    fn kl_matches_closed_form_and_monte_carlo() {
        // libtorch's generator is global: one seeded test at a time.
        let _l = embedlab_testkit::seeded();
        // One dimension by hand: KL(N(m, s²)‖N(0,1)) = (s² + m² − 1 − ln s²)/2.
        let mu = Tensor::from_slice(&[0.7f64, -1.2]).reshape([1, 2]);
        let lv = Tensor::from_slice(&[-0.5f64, 0.3]).reshape([1, 2]);
        let by_hand: f64 = [(0.7f64, -0.5f64), (-1.2, 0.3)]
            .iter()
            .map(|&(m, l)| (l.exp() + m * m - 1.0 - l) / 2.0)
            .sum();
        close(kl_std_normal(&mu, &lv).double_value(&[0]), by_hand, 1e-12);
        // Monte Carlo: E_q[log q − log p].
        tch::manual_seed(3);
        let n = 400_000;
        let eps = Tensor::randn([n, 2], (Kind::Double, tch::Device::Cpu));
        let z = &mu + (&lv * 0.5).exp() * &eps;
        let logq = gaussian_log_prob(&z, &mu, &lv);
        let logp = std_normal_log_prob(&z);
        let mc = (logq - logp).mean(Kind::Double).double_value(&[]);
        close(mc, by_hand, 0.01);
    }

    #[test]
    fn bernoulli_matches_brute_force() {
        let logits = Tensor::from_slice(&[2.0f64, -1.0, 0.5, -3.0]).reshape([2, 2]);
        let x = Tensor::from_slice(&[1.0f64, 0.0, 0.3, 1.0]).reshape([2, 2]);
        let got = bernoulli_log_prob(&logits, &x);
        let p = |l: f64| 1.0 / (1.0 + (-l).exp());
        let row = |l: [f64; 2], x: [f64; 2]| -> f64 {
            (0..2)
                .map(|i| x[i] * p(l[i]).ln() + (1.0 - x[i]) * (1.0 - p(l[i])).ln())
                .sum()
        };
        close(got.double_value(&[0]), row([2.0, -1.0], [1.0, 0.0]), 1e-12);
        close(got.double_value(&[1]), row([0.5, -3.0], [0.3, 1.0]), 1e-12);
    }

    #[test]
    fn gaussian_matches_brute_force() {
        let x = Tensor::from_slice(&[0.2f64, -0.4, 1.5]).reshape([1, 3]);
        let m = Tensor::from_slice(&[0.0f64, 0.1, 1.0]).reshape([1, 3]);
        let lv = Tensor::from_slice(&[0.0f64, -1.0, 0.5]);
        let mut want = 0.0;
        for (xi, (mi, li)) in [0.2f64, -0.4, 1.5]
            .iter()
            .zip([0.0f64, 0.1, 1.0].iter().zip([0.0f64, -1.0, 0.5]))
        {
            let var = li.exp();
            want += -0.5 * ((2.0 * std::f64::consts::PI * var).ln() + (xi - mi).powi(2) / var);
        }
        close(
            gaussian_log_prob(&x, &m, &lv).double_value(&[0]),
            want,
            1e-12,
        );
        let z = Tensor::from_slice(&[0.3f64, -2.0]).reshape([1, 2]);
        let want = -(2.0 * std::f64::consts::PI).ln() - (0.09 + 4.0) / 2.0;
        close(std_normal_log_prob(&z).double_value(&[0]), want, 1e-12);
    }
}
