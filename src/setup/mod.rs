//! Building a serving process from its settings, shared by `serve`, `serve --embedded`,
//! `worker` and `demo`:
//! - [`model`]: which model serves ([`choose_model`]: the checkpoint given, else the newest of
//!   the release, else popularity) and loading it ([`load_model`]), with what it serves and
//!   whether that makes the service ready ([`Serving`](crate::recommend::Serving));
//! - [`live`]: the set of models served at once (`RECSYS_MODELS`), each on its own batcher;
//! - [`control`]: what is live and promoting a model, in this process or through Redis, and
//!   the Redis worker's side of a promotion;
//! - [`runner`]: the Redis queue's settings, and the in-process queue with its worker;
//! - [`env_file`]: the `.env` file, whose malformed lines are errors.
//!
//! The commands only parse flags and call these.

pub mod control;
pub mod env_file;
pub mod live;
pub mod model;
pub mod runner;

use std::path::PathBuf;

pub use control::{LocalControl, RedisControl, follow_promotions};
pub use env_file::{EnvFileError, load_env_file};
pub use live::{ModelLoader, configured_specs, initial_set};
pub use model::{
    LoadedModel, ModelChoice, choose_model, describe_model, find_checkpoint, load_checkpoint,
    load_model,
};
pub use runner::{EmbeddedWorker, redis_config};

use crate::catalogue::CatalogueError;
use crate::model::ModelError;
use crate::recommend::RecommendError;
use crate::registry::specs::SpecError;
use crate::worker::ModelSetError;

/// Why a serving process could not be set up. Each message ends with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The directory given as a checkpoint has no `config.json`.
    #[error(
        "{} is not a checkpoint (no config.json in it): pass a directory that `movierec train` \
         wrote; training writes one per run under CHECKPOINT_ROOT",
        .dir.display()
    )]
    NotACheckpoint { dir: PathBuf },
    /// The checkpoint's configuration could not be read.
    #[error(
        "cannot read the checkpoint {} (train it again, or pass another one)",
        .dir.display()
    )]
    CheckpointConfig {
        dir: PathBuf,
        #[source]
        source: ModelError,
    },
    /// The checkpoint's weights could not be loaded.
    #[error(
        "cannot load the checkpoint {} (train it again, or pass another one)",
        .dir.display()
    )]
    Checkpoint {
        dir: PathBuf,
        #[source]
        source: RecommendError,
    },
    /// The catalogue (for popularity) could not be read.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// The in-process queue had no receiver left for its worker (a bug, not a setting).
    #[error("the in-process queue's receiver was already taken: report this as a bug")]
    QueueReceiver,
    /// `RECSYS_MODELS` (or a promotion) is malformed.
    #[error("RECSYS_MODELS: {0}")]
    Models(#[from] SpecError),
    /// The models named do not make a set.
    #[error("RECSYS_MODELS: {0}")]
    ModelSet(#[from] ModelSetError),
    /// A model name that is no checkpoint under the root.
    #[error(
        "no model `{name}` under {}: `movierec models list` shows the names",
        .root.display()
    )]
    UnknownModel { name: String, root: PathBuf },
    /// Both `--checkpoint` and `--models` were given.
    #[error("give either --checkpoint (RECSYS_CHECKPOINT) or --models (RECSYS_MODELS), not both")]
    ModelsAndCheckpoint,
    /// The model thread could not be started.
    /// The precision asked for cannot run here.
    #[error("RECSYS_PRECISION: {0}")]
    Precision(#[source] ModelError),
    #[error("cannot start the model thread (is the process out of threads or memory?)")]
    ModelThread(#[source] std::io::Error),
}
