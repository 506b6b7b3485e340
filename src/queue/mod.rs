//! The recommendation job queue: job and result types, the [`JobQueue`] trait the HTTP layer and
//! the workers share, and its two backends: Redis through apalis-redis ([`RedisQueue`]) and an
//! in-process queue for the embedded mode ([`MemoryQueue`]); the [`WorkerRegistry`] where
//! Redis workers announce what they serve; and the promoted set of models ([`LiveSetStore`]).

mod live_set;
mod memory;
mod redis;
mod stored;
mod types;
mod workers;

use std::time::Duration;

use futures::future::BoxFuture;

pub use self::redis::{RedisQueue, RedisQueueConfig, WAIT_SAFETY_NET, WaitCounts, WaitHook};
pub use live_set::LiveSetStore;
pub use memory::{MemoryJob, MemoryQueue};
pub use types::{JobId, JobOutput, JobState, JobStatus, RecommendJob, Route};
pub use workers::{WorkerPresence, WorkerRegistry};

use crate::recommend::RecommendRequest;

/// Why the queue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds its configured maximum of waiting jobs; retry later.
    #[error("the queue is full ({depth} jobs waiting); retry in {retry_after:?}")]
    Full { depth: u64, retry_after: Duration },
    /// The backend (Redis) did not answer in time or refused the connection.
    #[error("the job queue is unavailable: {0}")]
    Unavailable(String),
    /// A stored job or result could not be decoded.
    #[error("corrupt job data: {0}")]
    Corrupt(String),
}

/// A queue of recommendation jobs, whatever holds them.
///
/// The HTTP layer only talks to this trait, so the Redis and in-process backends serve the same
/// contract. Every method is bounded in time: a dead backend answers
/// [`QueueError::Unavailable`], never a hang.
pub trait JobQueue: Send + Sync + 'static {
    /// Mints a job id, stores the job and makes it visible to workers.
    fn enqueue(
        &self,
        request: RecommendRequest,
        route: Route,
    ) -> BoxFuture<'_, Result<JobId, QueueError>>;

    /// The job's state; `None` when the id is unknown or its result has expired.
    fn status<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<Option<JobStatus>, QueueError>>;

    /// Waits until the job is done or failed, or `timeout` passes; returns the last status seen.
    fn wait<'a>(
        &'a self,
        id: &'a JobId,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<JobStatus>, QueueError>>;

    /// Number of jobs waiting for a worker.
    fn depth(&self) -> BoxFuture<'_, Result<u64, QueueError>>;

    /// Checks that the backend answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Short name of the backend for health reports: `redis` or `in-process`.
    fn backend_name(&self) -> &'static str;
}
