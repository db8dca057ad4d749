//! embedlab data layer: file formats and datasets. Nothing here depends on
//! alignment, models or the CLI.
pub mod atomic;
pub mod dictionary;
pub mod embeddings;
pub mod error;
pub mod fingerprint;
pub mod imagefolder;
pub mod images;
pub mod murmur;
pub mod npy;
pub mod wordnet;

pub use dictionary::{DictFormat, Dictionary, Resolved, Split};
pub use embeddings::{EmbeddingFormat, Embeddings, LoadOptions};
pub use error::{DataError, Result};
pub use images::{load_image_dataset, load_image_dataset_sized, ImageDataset, ImageSet};
