//! What the API asks of the model side, whether the models run in its own process or on Redis
//! workers elsewhere: which models are live, and promoting one.

use futures::future::BoxFuture;
use serde::Serialize;

use super::specs::{ModelSpec, SpecError};
use crate::queue::QueueError;

/// What is served now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveView {
    /// Every live model with its weight (from the first worker that serves it).
    pub models: Vec<ModelSpec>,
    /// Promotions that could not be loaded, by where they failed; the models above still serve.
    pub errors: Vec<String>,
}

/// Why a promotion was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The name or weight is not valid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No such model: not live, and no checkpoint of that name.
    #[error("{0}")]
    Unknown(String),
    /// The model does not load.
    #[error("{0}")]
    Load(String),
    /// Redis did not take it.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The model side as the API sees it.
pub trait ModelControl: Send + Sync + 'static {
    /// The live models and the promotions that failed.
    fn live(&self) -> BoxFuture<'_, Result<LiveView, QueueError>>;

    /// Gives `name` the share `weight` (0 to 1) of the traffic, the others keeping their
    /// proportions in the rest; answers the new set once it is loaded (here) or announced
    /// (to the Redis workers).
    fn promote(
        &self,
        name: String,
        weight: f64,
    ) -> BoxFuture<'_, Result<Vec<ModelSpec>, PromoteError>>;
}
