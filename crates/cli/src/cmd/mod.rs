pub mod align;
pub mod bench;
pub mod convert;
pub mod demo;
pub mod translate;
pub mod unsupervised;
