//! embedlab models. Every family trains through the one loop in [`train`]
//! and saves the one checkpoint format of [`checkpoint`].
//! - [`autoencoder`]: AE, VAE, conditional AE/VAE (MLP or conv).
//! - [`identity`]: the 8-3-8 identity autoencoder.
//! - [`latent`]: codes → images: samples, interpolations, traversals.
pub mod autoencoder;
pub mod batches;
pub mod checkpoint;
pub mod error;
pub mod identity;
pub mod latent;
pub mod likelihood;
pub mod optim;
pub mod train;

pub use autoencoder::{AeConfig, Arch, AutoEncoder, Family, Likelihood};
pub use error::{ModelError, Result};
