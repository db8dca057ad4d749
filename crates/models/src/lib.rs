//! embedlab's model families. Each trains through the one trainer of
//! `embedlab-train` (it implements [`embedlab_train::Trainable`]) and is
//! analysed through the capabilities of [`capabilities`] (encode, decode,
//! sample, log-density), never by its concrete type.
//! - [`autoencoder`]: AE, VAE, conditional AE/VAE (MLP or conv).
//! - [`wae`]: Wasserstein autoencoders (MMD and latent-GAN penalties).
//! - [`gan`]: DCGAN, WGAN-GP, SN-GAN, conditional GAN (MLP or conv).
//! - [`classifier`]: the in-domain conv classifier g∘h (h(x) as a representation
//!   and the generative metrics' feature space).
//! - [`flow`]: normalizing flows — Glow, RealNVP, i-ResNet — from shared blocks.
//! - [`drlim`]: DrLIM, a low-dimensional map learnt from neighbour pairs
//!   (contrastive loss, k-NN / label / grid graphs, known shifts).
//! - [`layers`]: layers with optional spectral normalisation.
//! - [`identity`]: the 8-3-8 identity autoencoder.
//! - [`capabilities`]: the traits, and pixels and PCA as representations.
//! - [`latent`]: codes → images: fitted-Gaussian samples, interpolations, traversals.
pub mod autoencoder;
pub mod batches;
pub mod capabilities;
pub mod classifier;
pub mod drlim;
pub mod error;
pub mod flow;
pub mod gan;
pub mod identity;
pub mod latent;
pub mod layers;
pub mod likelihood;
pub mod memory;
pub mod wae;

pub use autoencoder::{AeConfig, Arch, AutoEncoder, Family, Likelihood};
pub use capabilities::{
    Classify, Decode, Density, DensityKind, Encode, ImageModel, Pca, Pixels, Prior, Sample,
};
pub use error::{ModelError, Result};
