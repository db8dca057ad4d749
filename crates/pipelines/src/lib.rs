//! embedlab's pipelines: everything the command line runs, as a library.
//! The CLI parses arguments into the option structs defined here and prints
//! what the pipelines return; the demo calls the same pipelines in-process.
//! - [`family`]: one descriptor per model family, and their registry;
//! - [`images`]: train, evaluate and analyse image models ([`evaluate`],
//!   [`analysis`]), load runs back;
//! - [`identity`]: the 8-3-8 network;
//! - [`words`]: supervised and unsupervised word translation, translate and
//!   export with a saved map, format conversion;
//! - [`study`], [`slurm`]: grids of runs, here or as a Slurm job array;
//! - [`steps`]: run many pipelines as recorded steps, each failure kept to itself;
//! - [`demo`]: the main job on the offline default data;
//! - [`bench`]: CSLS and loading at scale.
pub mod analysis;
pub mod bench;
pub mod demo;
pub mod evaluate;
pub mod family;
pub mod flows;
pub mod identity;
pub mod images;
pub mod memory;
pub mod opts;
pub mod progress;
pub mod projection;
pub mod quality;
pub mod represent;
pub mod slurm;
pub mod steps;
pub mod study;
pub mod variations;
pub mod words;

use std::fmt::Display;
use std::path::{Path, PathBuf};

/// Errors of the pipelines: every lower layer's, and the pipelines' own.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Data(#[from] embedlab_data::DataError),
    #[error(transparent)]
    Train(#[from] embedlab_train::TrainError),
    #[error(transparent)]
    Align(#[from] embedlab_align::AlignError),
    #[error(transparent)]
    Model(#[from] embedlab_models::ModelError),
    #[error(transparent)]
    Report(#[from] embedlab_reports::ReportError),
    #[error("tensor error: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Invalid(String),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, PipelineError>;

impl PipelineError {
    pub fn file(path: &Path, msg: impl Into<String>) -> Self {
        PipelineError::File {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// `anyhow`-style context for the pipelines' own error type.
pub trait Context<T> {
    /// On failure, the message `what()` followed by the cause.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| PipelineError::Invalid(format!("{}: {e}", what())))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| PipelineError::Invalid(what()))
    }
}

/// Returns early with a [`PipelineError::Invalid`] built like `format!`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::PipelineError::Invalid(format!($($arg)*)))
    };
}
