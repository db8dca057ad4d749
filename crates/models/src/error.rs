use std::path::PathBuf;

/// Errors of the model layer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Data(#[from] embedlab_data::DataError),
    #[error("tensor error: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },
    #[error("training stopped: the loss became {value} at epoch {epoch}, step {step}; the last good checkpoint (epoch {last_good}) is kept")]
    NonFinite {
        epoch: usize,
        step: usize,
        value: f64,
        last_good: String,
    },
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub fn checkpoint(path: &std::path::Path, msg: impl Into<String>) -> Self {
        ModelError::Checkpoint {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}
