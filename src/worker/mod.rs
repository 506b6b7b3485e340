//! The worker side: the [`Scorer`] a model sits behind, the dynamic [`Batcher`] that feeds it
//! from one model thread, the [`ModelSet`] of models served at once with its weighted split, the
//! job runner shared by both queues, and the loops that consume the Redis queue (apalis) and the
//! in-process queue.

mod batcher;
mod checkpoint;
mod job;
mod memory;
mod metrics;
mod model_set;
mod popularity;
mod redis;
mod wake;

pub use self::redis::{RedisWorkerConfig, run_redis_worker};
pub use batcher::{BatchConfig, Batcher};
pub use job::{JobError, JobRunner};
pub use memory::run_memory_worker;
pub use metrics::WorkerMetrics;
pub use model_set::{Arm, ChosenBy, LiveModels, ModelSet, ModelSetError, RouteError, key_point};
pub use popularity::PopularityScorer;

use crate::recommend::{ModelInfo, RecommendRequest, Recommendation};

/// Why a model could not answer a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScorerError {
    /// A request the model can never answer (not worth a retry).
    #[error("bad input: {0}")]
    BadInput(String),
    /// Anything else; the job may succeed when retried.
    #[error("model error: {0}")]
    Internal(String),
}

/// A model that answers recommendation requests in batches.
///
/// Implementations are called from one dedicated model thread, never from the async runtime, so
/// they may block and use all cores for one batch.
pub trait Scorer: Send + Sync + 'static {
    /// What answers: architecture, dataset, checkpoint.
    fn info(&self) -> ModelInfo;

    /// One recommendation per request, in order. Unknown ids must not fail the batch: they go to
    /// `unknown_ids`.
    fn recommend_batch(
        &self,
        requests: &[RecommendRequest],
    ) -> Result<Vec<Recommendation>, ScorerError>;
}
