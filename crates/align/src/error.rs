/// Errors of the alignment layer.
#[derive(Debug, thiserror::Error)]
pub enum AlignError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {msg}")]
    Numeric { what: String, msg: String },
    #[error(transparent)]
    Data(#[from] embedlab_data::DataError),
    #[error("tensor error: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Train(embedlab_train::TrainError),
}

pub type Result<T> = std::result::Result<T, AlignError>;
