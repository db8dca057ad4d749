//! embedlab's model families. Each trains through the one trainer of
//! `embedlab-train` (it implements [`embedlab_train::Trainable`]) and is
//! analysed through the capabilities of [`capabilities`] (encode, decode,
//! sample, log-density), never by its concrete type.
//! - [`autoencoder`]: AE, VAE, conditional AE/VAE (MLP or conv).
//! - [`identity`]: the 8-3-8 identity autoencoder.
//! - [`capabilities`]: the traits, and pixels and PCA as representations.
//! - [`latent`]: codes → images: fitted-Gaussian samples, interpolations, traversals.
pub mod autoencoder;
pub mod batches;
pub mod capabilities;
pub mod error;
pub mod identity;
pub mod latent;
pub mod likelihood;

pub use autoencoder::{AeConfig, Arch, AutoEncoder, Family, Likelihood};
pub use capabilities::{
    Decode, Density, DensityKind, Encode, ImageModel, Pca, Pixels, Prior, Sample,
};
pub use error::{ModelError, Result};
