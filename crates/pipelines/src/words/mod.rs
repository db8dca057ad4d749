//! Word translation with word embeddings.
pub mod convert;
pub mod isomorphism;
pub mod supervised;
pub mod translate;
pub mod unsupervised;
pub mod which;

/// The report section of every word-translation run.
pub const SECTION: &str = "Word translation";
