//! embedlab alignment layer: normalisation, PCA, linear maps (least squares,
//! Procrustes), NN/CSLS retrieval, dictionary induction and refinement.
//! Depends on the data layer, and on the training core for the adversarial
//! phase (one trainer, one checkpoint format).
pub mod adversarial;
pub mod error;
pub mod induce;
pub mod maps;
pub mod normalize;
pub mod pca;
pub mod precision;
pub mod rcsls;
pub mod retrieval;
pub mod rowtop;
pub mod selflearn;
pub mod supervised;

pub use error::{AlignError, Result};
pub use maps::MapMethod;
pub use normalize::Normalization;
pub use retrieval::{Retrieval, Space};
