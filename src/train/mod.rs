//! Training and evaluation: sequences and the leave-one-out split from the catalogue, masking,
//! the training loop with early stopping, metrics, the evaluation report and plots.

pub mod batch;
pub mod data;
pub mod evaluate;
pub mod item_init;
pub mod metrics;
mod options;
pub mod plot;
pub mod report;
mod trainer;

pub use item_init::ItemInit;
pub use options::{LossWeighting, TrainOptions, TrainReport};
pub use trainer::{EpochRecord, train, train_on_dataset, train_with_progress};

use std::path::PathBuf;

/// Everything that can go wrong while training or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The catalogue could not be read.
    #[error(transparent)]
    Catalogue(#[from] crate::catalogue::CatalogueError),
    /// The model or a checkpoint failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Nothing to train or evaluate on, or inconsistent settings.
    #[error("{0}")]
    Invalid(String),
}
