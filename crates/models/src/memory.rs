//! What a model will take in memory, worked out from its configuration
//! alone (no tensor is allocated), so that a model too large for the
//! machine can be refused before it is built.
//!
//! For each family's configuration, [`MemoryEstimate::estimate`] follows
//! the constructor's layer shapes and the training step's forward pass:
//! - [`Estimate::parameters`] is **exact**: the sum of `numel` over the
//!   variable store's `trainable_variables()` (what Adam updates), and
//!   [`Estimate::buffers`] the rest of `variables()` (BatchNorm statistics,
//!   spectral-norm vectors, Glow's permutations, actnorm flags) — the tests
//!   build every variant and compare;
//! - [`Estimate::activations_per_image`] is an upper-bound-ish count of the
//!   f32 values one training step keeps for the backward pass per image:
//!   the sum of the output sizes of every operation of the forward pass
//!   (each linear or convolution, each nonlinearity, normalisation and
//!   elementwise step of the loss counted apart) times
//!   [`ACTIVATION_FACTOR`] = 2 (autograd keeps at most every output, often
//!   an input too, and the backward pass holds gradients of similar size).
//!   For a GAN the larger of the two players' steps counts (the critic's
//!   sees a real and a generated batch, WGAN-GP's penalty another pass and
//!   its double backward); for an i-ResNet each vector–Jacobian product of
//!   the log-determinant, built with its graph, counts as one more pass
//!   through the block (its exact log-determinant as one per value). A
//!   convolution followed by a ReLU or ELU counts once (the backward pass
//!   keeps the nonlinearity's output; the convolution's is freed), once
//!   more when BatchNorm sits between (it keeps its input), and a conv
//!   GAN's layers once more for their backward workspace.
//!   Checked against peak resident memory on the CPU (libtorch's own
//!   ~150 MiB taken off; 28×28×1 and 32×32×3 images), the estimated need
//!   came out 1.5–2.1× the measured for flows (`bench flow`: Glow,
//!   RealNVP, i-ResNet), 1.2–1.6× for conv DCGAN/WGAN-GP, 1.1× for a
//!   4096-wide MLP VAE and 1.2× for the classifier (its validation pass):
//!   an upper bound, roughly, not a prediction.
//! - [`Estimate::activations_per_pair`]: values per pair of images of a
//!   batch (WAE-MMD's kernel matrices, quadratic in the batch);
//! - [`Estimate::step_values`]: values each training step allocates
//!   whatever the batch size (spectral-normalised weights W/σ, Glow's 1×1
//!   convolutions rebuilt in double precision);
//! - [`Estimate::inference_per_image`]: values per image alive at once in
//!   a pass without gradients (validation, actnorm's initialisation): the
//!   input and four times the largest layer output, plus a flow's codes and an i-ResNet block's Jacobian work;
//!   with [`Estimate::eval_batch`], the images of the family's validation
//!   batches.
use crate::autoencoder::{AeConfig, Arch, Family, Likelihood};
use crate::classifier::ClassifierConfig;
use crate::flow::{Estimator, FlowConfig, FlowKind};
use crate::gan::{GanArch, GanConfig, GanKind};
use crate::wae::{Penalty, WaeConfig, MMD_SCALES};

/// Forward-pass output values × this = values a training step keeps per
/// image (see the module's documentation).
pub const ACTIVATION_FACTOR: u64 = 2;

/// What a model takes, in values (f32 unless said otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Trainable values: exactly Σ numel of `trainable_variables()`.
    pub parameters: u64,
    /// Non-trainable variables: Σ numel of `variables()` less the parameters.
    pub buffers: u64,
    /// Values one training step keeps for backward per image of the batch.
    pub activations_per_image: u64,
    /// Values per pair of images of a training batch (batch² of them).
    pub activations_per_pair: u64,
    /// Values a training step allocates whatever the batch size.
    pub step_values: u64,
    /// Values per image of a pass without gradients.
    pub inference_per_image: u64,
    /// Images in the family's validation batches.
    pub eval_batch: u64,
}

impl Estimate {
    /// Values one training step holds beside the weights for `batch` images.
    pub fn training_values(&self, batch: u64) -> u64 {
        batch
            .saturating_mul(self.activations_per_image)
            .saturating_add(
                batch
                    .saturating_mul(batch)
                    .saturating_mul(self.activations_per_pair),
            )
            .saturating_add(self.step_values)
    }
    /// Values a pass without gradients holds for `batch` images (pairs
    /// of them too: WAE-MMD's kernel matrices).
    pub fn inference_values(&self, batch: u64) -> u64 {
        batch
            .saturating_mul(self.inference_per_image)
            .saturating_add(
                batch
                    .saturating_mul(batch)
                    .saturating_mul(self.activations_per_pair / ACTIVATION_FACTOR),
            )
    }
}

/// A model configuration whose memory can be estimated without building it.
pub trait MemoryEstimate {
    fn estimate(&self) -> Estimate;
}

/// A size from a configuration (negative ones, refused by the
/// constructors anyway, count as 0).
fn u(v: i64) -> u64 {
    v.max(0) as u64
}

/// Counts a model's variables layer by layer.
#[derive(Default)]
struct Count {
    params: u64,
    buffers: u64,
}

impl Count {
    /// A linear layer `i` → `o` with a bias (tch's and [`crate::layers::Layer`]'s).
    fn linear(&mut self, i: u64, o: u64) -> u64 {
        let n = i * o + o;
        self.params += n;
        n
    }
    /// A k × k convolution (or transposed convolution) `i` → `o` with a bias.
    fn conv(&mut self, i: u64, o: u64, k: u64) -> u64 {
        let n = i * o * k * k + o;
        self.params += n;
        n
    }
    /// Spectral normalisation's vector `u` of an `o`-output layer.
    fn sn(&mut self, on: bool, o: u64) {
        if on {
            self.buffers += o;
        }
    }
    /// BatchNorm over `c` channels: weight and bias; running mean and variance.
    fn batch_norm(&mut self, c: u64) {
        self.params += 2 * c;
        self.buffers += 2 * c;
    }
}

// ------------------------------------------------------------ autoencoders

/// The autoencoder's variables, its forward-pass output values per image
/// (reconstruction loss included, KL and sampling for a VAE) and its
/// largest output.
fn autoencoder(cfg: &AeConfig) -> (Count, u64, u64) {
    let mut n = Count::default();
    let (ch, h, w) = (u(cfg.channels), u(cfg.height), u(cfg.width));
    let d = ch * h * w;
    let c = if cfg.conditional { u(cfg.classes) } else { 0 };
    let k = u(cfg.latent);
    let code = match cfg.family {
        Family::Ae => k,
        Family::Vae => 2 * k,
    };
    let hidden: Vec<u64> = cfg.hidden.iter().map(|&x| u(x)).collect();
    let mut out = 0;
    match cfg.arch {
        Arch::Mlp => {
            // Encoder: the input (joined with the one-hot label), each
            // layer's output and its ReLU, the code.
            out += d + c;
            let mut i = d + c;
            for &o in &hidden {
                n.linear(i, o);
                out += 2 * o;
                i = o;
            }
            n.linear(i, code);
            out += code;
            // Decoder, the widths reversed.
            let mut i = k + c;
            out += k + c;
            for &o in hidden.iter().rev() {
                n.linear(i, o);
                out += 2 * o;
                i = o;
            }
            n.linear(i, d);
            out += d;
        }
        Arch::Conv => {
            let fc = hidden.first().copied().unwrap_or(0);
            let (h2, w2) = (h / 2, w / 2);
            let flat = 64 * (h / 4) * (w / 4);
            n.conv(ch, 32, 4);
            n.conv(32, 64, 4);
            n.linear(flat + c, fc);
            n.linear(fc, code);
            out += 2 * 32 * h2 * w2 + 2 * flat + c + 2 * fc + code;
            n.linear(k + c, fc);
            n.linear(fc, flat);
            n.conv(64, 32, 4);
            n.conv(32, ch, 4);
            out += k + c + 2 * fc + 2 * flat + 2 * 32 * h2 * w2 + d;
        }
    }
    if cfg.likelihood == Likelihood::Gaussian {
        n.params += d;
    }
    // The reparametrised sample and the KL (VAE), the log-likelihood's
    // elementwise steps on the pixels.
    if cfg.family == Family::Vae {
        out += 6 * k;
    }
    out += 4 * d;
    let largest = match cfg.arch {
        Arch::Mlp => hidden.iter().copied().max().unwrap_or(0),
        Arch::Conv => {
            let fc = hidden.first().copied().unwrap_or(0);
            fc.max(32 * (h / 2) * (w / 2)).max(64 * (h / 4) * (w / 4))
        }
    };
    (n, out, largest.max(d + c).max(code))
}

/// Values per image alive at once in a pass without gradients: the
/// input and four of the largest output (it, the layer's input, its
/// nonlinearity's output and a temporary).
fn no_grad(input: u64, largest: u64) -> u64 {
    input + 4 * largest
}

impl MemoryEstimate for AeConfig {
    fn estimate(&self) -> Estimate {
        let (n, out, largest) = autoencoder(self);
        let d = u(self.channels * self.height * self.width);
        Estimate {
            parameters: n.params,
            buffers: n.buffers,
            activations_per_image: ACTIVATION_FACTOR * out,
            activations_per_pair: 0,
            step_values: 0,
            inference_per_image: no_grad(d, largest),
            eval_batch: 500,
        }
    }
}

// ------------------------------------------------------------------ GANs

impl MemoryEstimate for GanConfig {
    fn estimate(&self) -> Estimate {
        let mut n = Count::default();
        let (ch, h, w) = (u(self.channels), u(self.height), u(self.width));
        let d = ch * h * w;
        let sn = matches!(self.kind, GanKind::Sngan | GanKind::Cgan);
        let c = if self.kind == GanKind::Cgan {
            u(self.classes)
        } else {
            0
        };
        let z = u(self.latent);
        let hidden: Vec<u64> = self.hidden.iter().map(|&x| u(x)).collect();
        // Output values of one generator and one discriminator pass per image.
        let (mut g_out, mut d_out) = (z + c, d);
        let disc_params;
        let feat;
        match self.arch {
            GanArch::Mlp => {
                let mut i = z + c;
                for &o in hidden.iter().rev() {
                    n.linear(i, o);
                    n.batch_norm(o);
                    // Linear, BatchNorm, ReLU.
                    g_out += 3 * o;
                    i = o;
                }
                n.linear(i, d);
                g_out += 2 * d;
                let before = n.params;
                let mut i = d;
                for &o in &hidden {
                    n.linear(i, o);
                    n.sn(sn, o);
                    // Linear, leaky ReLU.
                    d_out += 2 * o;
                    i = o;
                }
                disc_params = n.params - before;
                feat = i;
            }
            GanArch::Conv => {
                let b = hidden.first().copied().unwrap_or(0);
                let (sh, sw) = (h / 4, w / 4);
                let (h2, w2) = (h / 2, w / 2);
                n.linear(z + c, 2 * b * sh * sw);
                n.batch_norm(2 * b);
                n.conv(2 * b, b, 4);
                n.batch_norm(b);
                n.conv(b, ch, 4);
                // fc, bn0, ReLU; t1, bn1, ReLU; t2, sigmoid; and each
                // transposed convolution's backward workspace (its output).
                g_out += 3 * 2 * b * sh * sw + 4 * b * h2 * w2 + 3 * d;
                let before = n.params;
                n.conv(ch, b, 4);
                n.sn(sn, b);
                n.conv(b, 2 * b, 4);
                n.sn(sn, 2 * b);
                let bn = self.kind == GanKind::Dcgan;
                if bn {
                    n.batch_norm(2 * b);
                }
                disc_params = n.params - before - if bn { 4 * b } else { 0 };
                feat = 2 * b * sh * sw;
                // c1, leaky ReLU; c2, (bn,) leaky ReLU; each convolution's
                // backward workspace.
                d_out += 3 * b * h2 * w2 + if bn { 4 } else { 3 } * feat;
            }
        }
        let before = n.params;
        n.linear(feat, 1);
        n.sn(sn, 1);
        if self.kind == GanKind::Cgan {
            n.params += u(self.classes) * feat;
            d_out += 2 * feat;
        }
        let disc_params = disc_params + n.params - before;
        d_out += 4;
        // The critic's step: the generated batch (no graph), its scores on
        // real and generated images; WGAN-GP's penalty adds the mixed
        // images, one more pass and the graph of its gradient (double
        // backward). The generator's step: one pass through each player.
        let disc_step = d
            + 2 * d_out
            + if self.kind == GanKind::WganGp {
                2 * d + 3 * d_out
            } else {
                0
            };
        let gen_step = g_out + d_out;
        let largest = match self.arch {
            GanArch::Mlp => hidden.iter().copied().max().unwrap_or(0),
            GanArch::Conv => {
                let b = hidden.first().copied().unwrap_or(0);
                (b * (h / 2) * (w / 2)).max(2 * b * (h / 4) * (w / 4))
            }
        }
        .max(d);
        Estimate {
            parameters: n.params,
            buffers: n.buffers,
            activations_per_image: ACTIVATION_FACTOR * disc_step.max(gen_step),
            activations_per_pair: 0,
            // W/σ of every spectrally normalised layer, once per pass
            // (the critic's step makes two).
            step_values: if sn { 2 * disc_params } else { 0 },
            // Generated images are kept while they are scored.
            inference_per_image: d + no_grad(d, largest),
            eval_batch: 500,
        }
    }
}

// ------------------------------------------------------------------ WAEs

impl MemoryEstimate for WaeConfig {
    fn estimate(&self) -> Estimate {
        let ae = AeConfig {
            family: Family::Ae,
            conditional: false,
            arch: self.arch,
            hidden: self.hidden.clone(),
            latent: self.latent,
            likelihood: Likelihood::Bernoulli,
            binarize: false,
            beta: 1.0,
            warmup_epochs: 0.0,
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: self.classes,
        };
        let (mut n, ae_out, mut largest) = autoencoder(&ae);
        let k = u(self.latent);
        // The transport cost's steps on the pixels.
        let mut out = ae_out + 3 * u(self.channels * self.height * self.width);
        let mut pair = 0;
        match self.penalty {
            Penalty::Mmd => {
                // Prior draws; the three squared-distance matrices (four
                // steps each) and, per kernel scale, the kernel of each
                // (two steps each): values per pair of images.
                out += k;
                pair = 3 * 4 + MMD_SCALES.len() as u64 * 3 * 2;
            }
            Penalty::Gan => {
                let mut i = k;
                let mut critic = k;
                for &o in &self.zdisc_hidden {
                    n.linear(i, u(o));
                    critic += 2 * u(o);
                    largest = largest.max(u(o));
                    i = u(o);
                }
                n.linear(i, 1);
                critic += 4;
                // The autoencoder's step scores its codes; the critic's
                // (the codes without a graph) scores prior draws and codes.
                out = (out + critic).max(k + 2 * critic);
            }
        }
        Estimate {
            parameters: n.params,
            buffers: n.buffers,
            activations_per_image: ACTIVATION_FACTOR * out,
            activations_per_pair: ACTIVATION_FACTOR * pair,
            step_values: 0,
            inference_per_image: no_grad(u(self.channels * self.height * self.width), largest),
            eval_batch: 500,
        }
    }
}

// ------------------------------------------------------------ classifier

impl MemoryEstimate for ClassifierConfig {
    fn estimate(&self) -> Estimate {
        let mut n = Count::default();
        let (ch, h, w) = (u(self.channels), u(self.height), u(self.width_px));
        let (c, f, k) = (u(self.width), u(self.features), u(self.classes));
        n.conv(ch, c, 3);
        n.conv(c, c, 3);
        n.conv(c, 2 * c, 3);
        n.conv(2 * c, 2 * c, 3);
        let flat = 2 * c * (h / 4) * (w / 4);
        n.linear(flat, f);
        n.linear(f, k);
        // Two convolutions and their ReLUs at full size, pooling, two more
        // at half size, pooling, the features (linear, ReLU, dropout and
        // its mask), the scores and the loss.
        let hw = h * w;
        let out = ch * hw
            + 4 * c * hw
            + c * (h / 2) * (w / 2)
            + 4 * 2 * c * (h / 2) * (w / 2)
            + flat
            + 4 * f
            + 3 * k;
        Estimate {
            parameters: n.params,
            buffers: n.buffers,
            activations_per_image: ACTIVATION_FACTOR * out,
            activations_per_pair: 0,
            step_values: 0,
            inference_per_image: no_grad(ch * hw, c * hw),
            eval_batch: 1000,
        }
    }
}

// ------------------------------------------------------------------ flows

impl MemoryEstimate for FlowConfig {
    fn estimate(&self) -> Estimate {
        let mut n = Count::default();
        let [c0, h0, w0] = self.input_shape();
        let (mut c, mut h, mut w) = (u(c0), u(h0), u(w0));
        let d0 = c * h * w;
        // Layout, dequantisation and the shift or logit, each a few
        // elementwise steps on the input.
        let pre = 12 * d0;
        let mut train = pre;
        // The largest output, the largest i-ResNet block without
        // gradients, and the training step's weight-sized temporaries.
        let (mut largest, mut peak, mut step_values) = (d0, 0u64, 0u64);
        let r = &self.residual;
        for l in 0..self.levels {
            if self.squeeze {
                c *= 4;
                h /= 2;
                w /= 2;
                train += c * h * w;
            }
            let (hw, dl) = (h * w, c * h * w);
            for k in 0..self.steps {
                // Actnorm: loc and log-scale; an initialisation flag.
                n.params += 2 * c;
                n.buffers += 1;
                let mut block = 2 * dl;
                match self.kind {
                    FlowKind::Glow | FlowKind::Realnvp => {
                        let channels_mask = match self.kind {
                            FlowKind::Glow => true,
                            _ => k >= self.steps.div_ceil(2),
                        };
                        if self.kind == FlowKind::Glow {
                            // LU 1×1 convolution: L, U and log|s|; P and
                            // the signs fixed. W is rebuilt in double
                            // precision each pass (about five c × c
                            // temporaries of two f32s each).
                            n.params += 2 * c * c + c;
                            n.buffers += c * c + c;
                            step_values += 10 * c * c;
                            block += dl;
                        }
                        let (cin, cout) = if channels_mask {
                            (c / 2, c - c / 2)
                        } else {
                            (c, c)
                        };
                        let hid = u(self.hidden);
                        let per = if self.additive { 1 } else { 2 };
                        n.conv(cin, hid, 3);
                        n.conv(hid, hid, 1);
                        n.conv(hid, per * cout, 3);
                        // The network (two convolutions, each output
                        // freed once its ReLU has run: the ReLUs' outputs
                        // are what the backward pass keeps; the output
                        // layer), the mask, bounded scale, exp, product,
                        // sum and join.
                        block += 2 * hid * hw + 8 * dl;
                        if self.kind == FlowKind::Realnvp && channels_mask {
                            block += dl;
                        }
                        train += block;
                        largest = largest.max(hid * hw).max(dl);
                    }
                    FlowKind::Iresnet => {
                        let hid = u(r.hidden);
                        n.conv(c, hid, 3);
                        n.conv(hid, hid, 1);
                        n.conv(hid, c, 3);
                        // Each convolution's power-iteration vector has its input's shape.
                        n.buffers += c * hw + 2 * hid * hw;
                        step_values += c * hid * 9 + hid * hid + hid * c * 9;
                        // g: three convolutions, two ELUs (whose outputs
                        // are kept; the convolutions' are freed); y = x + g(x).
                        let g = 2 * hid * hw + dl;
                        // A vector–Jacobian product through g built with
                        // its graph: each convolution's and ELU's backward
                        // output, kept for the double backward.
                        let vjp = 4 * hid * hw + dl;
                        block += g + dl;
                        let exact = u(r.exact_max) >= dl;
                        let (logdet_train, logdet_eval) = if exact {
                            // One backward pass per value, its graph kept in
                            // training; the Jacobian (rows, then stacked).
                            (dl * vjp + 2 * dl * dl, g + vjp + 2 * dl * dl)
                        } else {
                            let terms = r.terms as u64
                                + match r.estimator {
                                    Estimator::Series => 0,
                                    // The roulette's extra terms: 2 expected, 4 allowed for.
                                    Estimator::Roulette => 4,
                                };
                            // Each vector–Jacobian product with its graph
                            // (a pass's worth) and the trace's steps.
                            (
                                r.probes as u64 * (dl + terms * (vjp + 3 * dl)),
                                g + vjp + 4 * dl,
                            )
                        };
                        train += block + logdet_train;
                        largest = largest.max(hid * hw).max(dl);
                        peak = peak.max(g + logdet_eval);
                    }
                }
            }
            if l + 1 < self.levels && self.split {
                let keep = c / 2;
                let out = c - keep;
                n.conv(keep, 2 * out, 3);
                // The prior's convolution, standardisation and log-density.
                train += 8 * out * hw;
                c = keep;
            }
        }
        // The top prior (class-conditional part included).
        n.params += 2 * c;
        if self.conditional {
            n.linear(u(self.classes), 2 * c);
        }
        train += 6 * c * h * w;
        // Without gradients: the codes kept, and the largest of the
        // pre-processing's or a block's live values, an i-ResNet block's
        // log-determinant, actnorm's double-precision statistics at
        // initialisation.
        let inference = d0 + no_grad(d0, largest).max(peak).max(6 * largest);
        Estimate {
            parameters: n.params,
            buffers: n.buffers,
            activations_per_image: ACTIVATION_FACTOR * train,
            activations_per_pair: 0,
            step_values,
            inference_per_image: inference,
            eval_batch: 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoencoder::AutoEncoder;
    use crate::classifier::Classifier;
    use crate::flow::{Flow, Layout};
    use crate::gan::Gan;
    use crate::wae::Wae;
    use embedlab_train::Trainable;
    use tch::{nn, Device};

    /// (trainable, all) values of a variable store.
    fn counted(vs: &nn::VarStore) -> (u64, u64) {
        let sum = |v: Vec<tch::Tensor>| v.iter().map(|t| t.numel() as u64).sum::<u64>();
        (
            sum(vs.trainable_variables()),
            sum(vs.variables().into_values().collect()),
        )
    }

    fn same(what: &str, e: Estimate, vs: &nn::VarStore) {
        let (p, all) = counted(vs);
        assert_eq!(e.parameters, p, "{what}: trainable parameters");
        assert_eq!(e.buffers, all - p, "{what}: buffers");
        assert!(
            e.activations_per_image > 0 && e.inference_per_image > 0,
            "{what}"
        );
    }

    fn ae(family: Family, conditional: bool, arch: Arch, shape: [i64; 3]) -> AeConfig {
        AeConfig {
            family,
            conditional,
            arch,
            hidden: vec![24, 12],
            latent: 5,
            likelihood: Likelihood::Bernoulli,
            binarize: false,
            beta: 1.0,
            warmup_epochs: 0.0,
            channels: shape[0],
            height: shape[1],
            width: shape[2],
            classes: 4,
        }
    }

    fn gan(kind: GanKind, arch: GanArch, shape: [i64; 3]) -> GanConfig {
        GanConfig {
            kind,
            arch,
            latent: 6,
            hidden: vec![10, 7],
            gp_weight: 10.0,
            channels: shape[0],
            height: shape[1],
            width: shape[2],
            classes: 3,
        }
    }

    fn wae(penalty: Penalty, arch: Arch, shape: [i64; 3]) -> WaeConfig {
        WaeConfig {
            penalty,
            arch,
            hidden: vec![20, 9],
            latent: 4,
            lambda: 1.0,
            zdisc_hidden: vec![11, 5],
            channels: shape[0],
            height: shape[1],
            width: shape[2],
            classes: 10,
        }
    }

    fn classifier(width: i64, features: i64, shape: [i64; 3]) -> ClassifierConfig {
        ClassifierConfig {
            width,
            features,
            dropout: 0.5,
            channels: shape[0],
            height: shape[1],
            width_px: shape[2],
            classes: 10,
        }
    }

    const SHAPES: [[i64; 3]; 3] = [[1, 8, 8], [1, 28, 28], [3, 32, 32]];

    #[test]
    fn memory_parameter_counts_of_autoencoders_wae_gans_and_classifiers_are_exact() {
        let _l = embedlab_testkit::seeded();
        for shape in SHAPES {
            for arch in [Arch::Mlp, Arch::Conv] {
                for family in [Family::Ae, Family::Vae] {
                    for conditional in [false, true] {
                        for likelihood in [Likelihood::Bernoulli, Likelihood::Gaussian] {
                            let mut cfg = ae(family, conditional, arch, shape);
                            cfg.likelihood = likelihood;
                            let m = AutoEncoder::new(cfg.clone(), Device::Cpu).unwrap();
                            same(&format!("{cfg:?}"), cfg.estimate(), &m.vs);
                        }
                    }
                }
                for penalty in [Penalty::Mmd, Penalty::Gan] {
                    let cfg = wae(penalty, arch, shape);
                    let m = Wae::new(cfg.clone(), Device::Cpu).unwrap();
                    same(&format!("{cfg:?}"), cfg.estimate(), m.var_store());
                }
            }
            for kind in [
                GanKind::Dcgan,
                GanKind::WganGp,
                GanKind::Sngan,
                GanKind::Cgan,
            ] {
                for arch in [GanArch::Mlp, GanArch::Conv] {
                    let cfg = gan(kind, arch, shape);
                    let m = Gan::new(cfg.clone(), Device::Cpu).unwrap();
                    same(&format!("{cfg:?}"), cfg.estimate(), &m.vs);
                }
            }
            for (width, features) in [(4, 16), (8, 5)] {
                let cfg = classifier(width, features, shape);
                let m = Classifier::new(cfg.clone(), Device::Cpu).unwrap();
                same(&format!("{cfg:?}"), cfg.estimate(), &m.vs);
            }
        }
    }

    #[test]
    fn memory_parameter_counts_of_flows_are_exact() {
        let _l = embedlab_testkit::seeded();
        for kind in [FlowKind::Glow, FlowKind::Realnvp, FlowKind::Iresnet] {
            for shape in [[1, 28, 28], [3, 32, 32], [1, 8, 8]] {
                for (levels, steps, hidden, split, additive, conditional) in [
                    (2, 2, 8, true, false, false),
                    (1, 3, 5, true, true, true),
                    (2, 1, 6, false, false, true),
                ] {
                    let mut cfg = FlowConfig::new(kind, shape, 10);
                    cfg.levels = levels;
                    cfg.steps = steps;
                    cfg.hidden = hidden;
                    cfg.residual.hidden = hidden;
                    cfg.residual.power_init = 1;
                    cfg.split = split;
                    cfg.additive = additive;
                    cfg.conditional = conditional;
                    let m = Flow::new(cfg.clone(), Device::Cpu).unwrap();
                    same(
                        &format!("{kind:?} {shape:?} {levels} levels {steps} steps"),
                        cfg.estimate(),
                        &m.vs,
                    );
                }
            }
            // The padded layout: 28×28×1 images seen as 32×32×3, 3 levels.
            let mut cfg = FlowConfig::new(kind, [1, 28, 28], 10);
            cfg.layout = Layout::Padded32x3;
            cfg.levels = 3;
            cfg.steps = 1;
            cfg.hidden = 4;
            cfg.residual.hidden = 4;
            cfg.residual.power_init = 1;
            let m = Flow::new(cfg.clone(), Device::Cpu).unwrap();
            same(&format!("{kind:?} padded"), cfg.estimate(), &m.vs);
        }
    }

    #[test]
    fn memory_activations_grow_with_image_size_and_width() {
        // Convolutional activations are per pixel: 4× the pixels, 4× the
        // values (within the few terms that do not scale).
        let ratio = |a: u64, b: u64| b as f64 / a as f64;
        let conv_ae = |s| ae(Family::Vae, false, Arch::Conv, [1, s, s]).estimate();
        let r = ratio(
            conv_ae(16).activations_per_image,
            conv_ae(32).activations_per_image,
        );
        assert!((3.5..=4.0).contains(&r), "conv VAE 16→32 pixels: ×{r}");
        let cl = |w, s| classifier(w, 64, [1, s, s]).estimate();
        let r = ratio(
            cl(16, 32).activations_per_image,
            cl(16, 64).activations_per_image,
        );
        assert!((3.5..=4.0).contains(&r), "classifier 32→64 pixels: ×{r}");
        // …and linear in the width of the convolutions.
        let r = ratio(
            cl(32, 32).activations_per_image,
            cl(64, 32).activations_per_image,
        );
        assert!((1.8..=2.0).contains(&r), "classifier width 32→64: ×{r}");
        // The classifier's parameters grow as width² (the convolutions)
        // and linearly (the fully connected layer): between ×2 and ×4.
        let r = ratio(cl(32, 32).parameters, cl(64, 32).parameters);
        assert!(
            (2.0..=4.0).contains(&r),
            "classifier width 32→64 parameters: ×{r}"
        );
        let g = |b| {
            let mut c = gan(GanKind::Dcgan, GanArch::Conv, [1, 32, 32]);
            c.hidden = vec![b];
            c.estimate()
        };
        let r = ratio(g(64).activations_per_image, g(128).activations_per_image);
        assert!((1.8..=2.0).contains(&r), "conv GAN 64→128 channels: ×{r}");
        let r = ratio(g(64).parameters, g(128).parameters);
        assert!((3.5..=4.0).contains(&r), "conv GAN 64→128 parameters: ×{r}");
        // An MLP's activations are its widths: doubling them doubles the count.
        let m = |h: i64| {
            let mut c = ae(Family::Ae, false, Arch::Mlp, [1, 4, 4]);
            c.hidden = vec![h, h];
            c.latent = 1;
            c.estimate()
        };
        let r = ratio(m(1000).activations_per_image, m(2000).activations_per_image);
        assert!((1.9..=2.0).contains(&r), "MLP 1000→2000 wide: ×{r}");
        // Flows: linear in the pixels, the steps and the coupling width.
        let f = |s, steps, hidden| {
            let mut c = FlowConfig::new(FlowKind::Glow, [1, s, s], 10);
            c.steps = steps;
            c.hidden = hidden;
            c.estimate()
        };
        let r = ratio(
            f(16, 8, 64).activations_per_image,
            f(32, 8, 64).activations_per_image,
        );
        assert!((3.9..=4.1).contains(&r), "glow 16→32 pixels: ×{r}");
        let r = ratio(
            f(32, 8, 64).activations_per_image,
            f(32, 16, 64).activations_per_image,
        );
        assert!((1.9..=2.0).contains(&r), "glow 8→16 steps: ×{r}");
        let r = ratio(
            f(32, 8, 64).activations_per_image,
            f(32, 8, 128).activations_per_image,
        );
        assert!((1.6..=2.0).contains(&r), "glow hidden 64→128: ×{r}");
        // WAE-MMD's kernel matrices are per pair of images.
        let e = wae(Penalty::Mmd, Arch::Mlp, [1, 8, 8]).estimate();
        assert!(e.activations_per_pair > 0);
        assert_eq!(
            e.training_values(20) - e.training_values(10),
            10 * e.activations_per_image + 300 * e.activations_per_pair
        );
    }

    #[test]
    fn memory_the_sizes_of_the_reported_failures_are_estimated_far_above_24_gib() {
        const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
        // Weights, gradients and Adam's moments alone.
        let weights = |e: Estimate| e.parameters as f64 * 4.0 * 4.0 / GIB;
        let mut g = gan(GanKind::Dcgan, GanArch::Mlp, [1, 28, 28]);
        g.hidden = vec![65536, 65536];
        g.latent = 4096;
        let e = g.estimate();
        assert!(e.parameters > 4_000_000_000, "{e:?}");
        assert!(weights(e) > 24.0);
        let c = classifier(1024, 65536, [1, 28, 28]).estimate();
        assert!(weights(c) > 24.0, "{c:?}");
        let mut w = wae(Penalty::Gan, Arch::Conv, [1, 28, 28]);
        w.zdisc_hidden = vec![65536, 65536, 65536];
        assert!(weights(w.estimate()) > 24.0);
        // bench flow --size 1024 --channels 64 --batch 4096: about a
        // terabyte of activations.
        let f = FlowConfig::new(FlowKind::Glow, [64, 1024, 1024], 10).estimate();
        let act = f.training_values(4096) as f64 * 4.0 / GIB;
        assert!(act > 1000.0, "{act} GiB");
    }
}
