use std::path::{Path, PathBuf};

/// Errors of the data layer. Every variant names the file it concerns, and
/// parse errors also name the 1-based line (or record) where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {msg}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    #[error("{}: {what} is empty", path.display())]
    Empty { path: PathBuf, what: String },
    #[error("{0}")]
    Invalid(String),
    #[error("tensor error: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn parse(path: &Path, line: usize, msg: impl Into<String>) -> Self {
        DataError::Parse {
            path: path.to_path_buf(),
            line,
            msg: msg.into(),
        }
    }
    pub fn format(path: &Path, msg: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}
