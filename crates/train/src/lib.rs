//! embedlab's training core, shared by every model family:
//! - [`trainer`]: the one trainer (named optimizer groups, rounds, seeds,
//!   validation, best-epoch selection, NaN policy, resume);
//! - [`optim`]: Adam and SGD of one group, with their state by name;
//! - [`checkpoint`]: the one checkpoint format (one atomic safetensors file
//!   with its description inside);
//! - [`run`]: run folders (locked, self-describing, never silently reused);
//! - [`report`]: the `report.json` shape every kind of run writes;
//! - [`tensorboard`]: TensorBoard event files mirroring each run's log;
//! - [`interrupt`]: a stop asked for by a signal (checkpoint kept, resumable);
//! - [`precision`]: float32 or bfloat16 products (the trainer's autocast).
pub mod checkpoint;
pub mod error;
pub mod interrupt;
pub mod optim;
pub mod precision;
pub mod report;
pub mod run;
pub mod tensorboard;
pub mod trainer;

pub use error::{Result, TrainError};
pub use optim::{omp_pieces, Algorithm, OptimConfig, Optimizer, Schedule};
pub use precision::{Autocast, Precision};
pub use report::{Better, Curve, Figure, Metric, Report, Table};
pub use run::{Reuse, RunDir, RunInfo};
pub use trainer::{
    train, train_observed, Batch, Batches, EpochRecord, Group, Losses, NanPolicy, Observer,
    OnEpoch, Progress, Round, Selection, TrainConfig, TrainState, TrainSummary, Trainable,
};
