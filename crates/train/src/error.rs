use std::path::{Path, PathBuf};

/// Errors of the training core.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] embedlab_data::DataError),
    #[error("tensor error: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    /// A loss or metric became NaN or infinite, or a loss rose above the
    /// model's ceiling (`ceiling`: a finite explosion).
    #[error("training stopped: {what} {} at epoch {epoch}, step {step}; {kept}", became(*.value, *.ceiling))]
    NonFinite {
        what: String,
        epoch: usize,
        step: usize,
        value: f64,
        ceiling: Option<f64>,
        kept: String,
    },
    /// A stop was asked for ([`crate::interrupt`]) during an epoch.
    #[error("training stopped by a signal during epoch {epoch}; {kept}")]
    Interrupted { epoch: usize, kept: String },
    #[error("{}: in use by another embedlab process{}; wait for it to finish or choose another folder", path.display(), holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Locked {
        path: PathBuf,
        holder: Option<String>,
    },
}

/// What happened to a value: `became NaN`, or `rose to 5.1e5 (above the
/// model's ceiling of 16)`.
pub(crate) fn became(value: f64, ceiling: Option<f64>) -> String {
    match ceiling {
        Some(c) => format!("rose to {value:.4e} (above the model's ceiling of {c})"),
        None => format!("became {value}"),
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    pub fn file(path: &Path, msg: impl Into<String>) -> Self {
        TrainError::File {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        TrainError::File {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }
    }
}
