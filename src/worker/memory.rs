//! The in-process worker of the embedded mode: takes jobs from the [`MemoryQueue`] channel, runs
//! up to `concurrency` of them at once through the batcher, and drains what is left on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::{JobError, JobRunner};
use crate::queue::{MemoryJob, MemoryQueue};

/// Consumes `jobs` until `shutdown` turns true (or its sender drops); then finishes every job
/// already accepted and returns.
pub async fn run_memory_worker(
    queue: MemoryQueue,
    mut jobs: mpsc::UnboundedReceiver<MemoryJob>,
    runner: JobRunner,
    concurrency: usize,
    max_attempts: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut running = JoinSet::new();
    let mut closing = *shutdown.borrow();
    if closing {
        jobs.close();
    }
    loop {
        tokio::select! {
            changed = shutdown.changed(), if !closing => {
                if changed.is_err() || *shutdown.borrow() {
                    closing = true;
                    jobs.close();
                }
            }
            next = jobs.recv() => {
                let Some(job) = next else { break };
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let queue = queue.clone();
                let runner = runner.clone();
                running.spawn(async move {
                    queue.mark_running(&job.id);
                    let outcome = run_with_retries(&runner, &job, max_attempts).await;
                    queue.finish(&job.id, outcome);
                    drop(permit);
                });
                // Reap finished tasks so the set stays small.
                while running.try_join_next().is_some() {}
            }
        }
    }
    while running.join_next().await.is_some() {}
    tracing::info!("in-process worker drained");
}

async fn run_with_retries(
    runner: &JobRunner,
    job: &MemoryJob,
    max_attempts: u32,
) -> Result<crate::queue::JobOutput, String> {
    let mut attempt = 1;
    loop {
        match runner.run(&job.job).await {
            Ok(out) => return Ok(out),
            Err(JobError::BadInput(e)) => return Err(e),
            Err(JobError::Transient(e)) if attempt >= max_attempts.max(1) => {
                return Err(format!("{e} (gave up after {attempt} attempts)"));
            }
            Err(JobError::Transient(e)) => {
                tracing::warn!(job = %job.id, attempt, error = %e, "job failed; retrying");
                tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                attempt += 1;
            }
        }
    }
}
