//! Training and evaluation: sequences and the leave-one-out split from the catalogue, masking,
//! the settings of a run and where they come from (presets, a config file, flags), the training
//! loop and its parts, metrics, the evaluation report and plots.

mod adamw;
pub mod baselines;
pub mod batch;
pub mod data;
pub mod evaluate;
pub mod item_init;
mod keeper;
pub mod metrics;
mod optimiser;
mod options;
pub mod plot;
pub mod presets;
mod progress;
pub mod report;
mod run_dir;
mod sampler;
pub mod settings;
mod step;
mod trainer;

pub use item_init::ItemInit;
pub use options::{StopReason, TrainOptions, TrainReport};
pub use run_dir::{CURVE_FILE, EpochRecord, METRICS_FILE};
pub use settings::{
    DataOptions, LossWeighting, ModelOptions, ObjectiveOptions, OptimiserOptions, ScheduleOptions,
    TrainSettings,
};
pub use trainer::{train, train_on_dataset, train_with_progress};

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
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A layer of settings (a preset or a `--config` file) is not valid.
    #[error("{origin}: {message}")]
    Settings { origin: String, message: String },
    /// Nothing to train or evaluate on, or inconsistent settings.
    #[error("{0}")]
    Invalid(String),
}
