//! The machinery around the served models: the batching settings, the Redis queue's settings,
//! and the in-process queue with its worker for `--embedded`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::SetupError;
use crate::config::{QueueSettings, WorkerSettings};
use crate::queue::{JobQueue, MemoryQueue, RedisQueueConfig};
use crate::worker::{BatchConfig, JobRunner, run_memory_worker};

/// The batcher settings of `settings`.
pub(super) fn batch_config(settings: &WorkerSettings) -> BatchConfig {
    BatchConfig {
        max_batch: settings.batch_size.max(1),
        max_wait: Duration::from_micros(settings.batch_wait_us),
        delay: Duration::from_millis(settings.batch_delay_ms),
    }
}

/// The Redis queue configuration of `settings`; the API and the workers build it alike.
pub fn redis_config(settings: &QueueSettings) -> RedisQueueConfig {
    RedisQueueConfig {
        url: settings.redis_url.clone(),
        queue: settings.queue_name.clone(),
        cap: settings.queue_cap,
        result_ttl: Duration::from_secs(settings.result_ttl_secs.max(1)),
        result_max: settings.result_max.max(1),
        timeout: Duration::from_millis(settings.redis_timeout_ms.max(1)),
        heartbeat: Duration::from_secs(settings.heartbeat_secs.max(1)),
    }
}

/// An in-process queue and the worker that consumes it: a whole service in one process, no
/// Redis (`serve --embedded`, the demo).
pub struct EmbeddedWorker {
    queue: MemoryQueue,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EmbeddedWorker {
    /// Creates the queue and spawns its worker on the current tokio runtime.
    pub fn start(
        runner: JobRunner,
        queue: &QueueSettings,
        worker: &WorkerSettings,
    ) -> Result<Self, SetupError> {
        let memory = MemoryQueue::new(
            queue.queue_cap,
            Duration::from_secs(queue.result_ttl_secs.max(1)),
            queue.result_max.max(1),
        );
        let (stop, stopped) = watch::channel(false);
        let jobs = memory.take_receiver().ok_or(SetupError::QueueReceiver)?;
        let task = tokio::spawn(run_memory_worker(
            memory.clone(),
            jobs,
            runner,
            worker.concurrency.max(1),
            worker.max_attempts.max(1),
            stopped,
        ));
        Ok(Self {
            queue: memory,
            stop,
            task,
        })
    }

    /// The queue the API enqueues on.
    pub fn queue(&self) -> Arc<dyn JobQueue> {
        Arc::new(self.queue.clone())
    }

    /// Stops taking jobs, finishes those already accepted, and returns once the worker is done.
    pub async fn stop(self) -> Result<(), tokio::task::JoinError> {
        let _ = self.stop.send(true);
        self.task.await
    }
}
