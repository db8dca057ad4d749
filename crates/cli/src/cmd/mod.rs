pub mod align;
pub mod autoenc;
pub mod bench;
pub mod convert;
pub mod demo;
pub mod report;
pub mod translate;
pub mod unsupervised;
