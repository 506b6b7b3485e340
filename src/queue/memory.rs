//! The in-process queue of the embedded mode: a tokio channel to the worker and a map of job
//! states, with the same cap and result expiry as the Redis queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use super::{JobId, JobOutput, JobQueue, JobState, JobStatus, QueueError, RecommendJob};
use crate::recommend::RecommendRequest;

/// A job handed to the in-process worker.
#[derive(Debug)]
pub struct MemoryJob {
    pub id: JobId,
    pub job: RecommendJob,
}

struct Entry {
    status: JobStatus,
    finished_at: Option<Instant>,
    watch: watch::Sender<JobState>,
}

struct State {
    jobs: HashMap<JobId, Entry>,
    waiting: u64,
    last_sweep: Instant,
}

struct Inner {
    state: Mutex<State>,
    tx: mpsc::UnboundedSender<MemoryJob>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<MemoryJob>>>,
    cap: u64,
    ttl: Duration,
}

/// An in-process [`JobQueue`]; clones share the same queue.
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

impl MemoryQueue {
    /// A queue that holds at most `cap` waiting jobs and forgets results `ttl` after they finish.
    pub fn new(cap: u64, ttl: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    jobs: HashMap::new(),
                    waiting: 0,
                    last_sweep: Instant::now(),
                }),
                tx,
                rx: Mutex::new(Some(rx)),
                cap,
                ttl,
            }),
        }
    }

    /// The receiving end for the worker; `None` once taken (there is one consumer).
    pub fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<MemoryJob>> {
        self.inner.rx.lock().ok().and_then(|mut rx| rx.take())
    }

    /// Marks a job as held by a worker.
    pub fn mark_running(&self, id: &JobId) {
        let mut state = self.lock();
        state.waiting = state.waiting.saturating_sub(1);
        if let Some(entry) = state.jobs.get_mut(id) {
            entry.status = JobStatus::bare(JobState::Running);
            entry.watch.send_replace(JobState::Running);
        }
    }

    /// Stores a job's outcome and wakes whoever waits on it.
    pub fn finish(&self, id: &JobId, outcome: Result<JobOutput, String>) {
        let mut state = self.lock();
        if let Some(entry) = state.jobs.get_mut(id) {
            entry.status = match outcome {
                Ok(out) => JobStatus {
                    state: JobState::Done,
                    result: Some(out),
                    error: None,
                },
                Err(e) => JobStatus {
                    state: JobState::Failed,
                    result: None,
                    error: Some(e),
                },
            };
            entry.finished_at = Some(Instant::now());
            entry.watch.send_replace(entry.status.state);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sweep(&self, state: &mut State) {
        let now = Instant::now();
        if now.duration_since(state.last_sweep) < Duration::from_secs(1) {
            return;
        }
        state.last_sweep = now;
        let ttl = self.inner.ttl;
        state
            .jobs
            .retain(|_, e| e.finished_at.is_none_or(|t| now.duration_since(t) < ttl));
    }

    fn enqueue_now(&self, request: RecommendRequest) -> Result<JobId, QueueError> {
        let id = JobId::mint();
        {
            let mut state = self.lock();
            self.sweep(&mut state);
            if state.waiting >= self.inner.cap {
                return Err(QueueError::Full {
                    depth: state.waiting,
                    retry_after: Duration::from_secs(1),
                });
            }
            let (watch, _) = watch::channel(JobState::Queued);
            state.jobs.insert(
                id.clone(),
                Entry {
                    status: JobStatus::bare(JobState::Queued),
                    finished_at: None,
                    watch,
                },
            );
            state.waiting += 1;
        }
        let job = MemoryJob {
            id: id.clone(),
            job: RecommendJob::new(request),
        };
        if self.inner.tx.send(job).is_err() {
            let mut state = self.lock();
            state.jobs.remove(&id);
            state.waiting = state.waiting.saturating_sub(1);
            return Err(QueueError::Unavailable(
                "the in-process worker has stopped".into(),
            ));
        }
        Ok(id)
    }

    fn status_now(&self, id: &JobId) -> Option<JobStatus> {
        let state = self.lock();
        let entry = state.jobs.get(id)?;
        if entry
            .finished_at
            .is_some_and(|t| t.elapsed() >= self.inner.ttl)
        {
            return None;
        }
        Some(entry.status.clone())
    }
}

impl JobQueue for MemoryQueue {
    fn enqueue(&self, request: RecommendRequest) -> BoxFuture<'_, Result<JobId, QueueError>> {
        let res = self.enqueue_now(request);
        async move { res }.boxed()
    }

    fn status<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<Option<JobStatus>, QueueError>> {
        let res = self.status_now(id);
        async move { Ok(res) }.boxed()
    }

    fn wait<'a>(
        &'a self,
        id: &'a JobId,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<JobStatus>, QueueError>> {
        async move {
            let rx = {
                let state = self.lock();
                match state.jobs.get(id) {
                    Some(e) => e.watch.subscribe(),
                    None => return Ok(None),
                }
            };
            let mut rx = rx;
            let _ = tokio::time::timeout(timeout, rx.wait_for(|s| s.is_terminal())).await;
            Ok(self.status_now(id))
        }
        .boxed()
    }

    fn depth(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        let depth = self.lock().waiting;
        async move { Ok(depth) }.boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), QueueError>> {
        let alive = !self.inner.tx.is_closed();
        async move {
            if alive {
                Ok(())
            } else {
                Err(QueueError::Unavailable(
                    "the in-process worker has stopped".into(),
                ))
            }
        }
        .boxed()
    }

    fn backend_name(&self) -> &'static str {
        "in-process"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::{ModelInfo, Recommendation};

    fn req() -> RecommendRequest {
        RecommendRequest {
            sequence: vec![1, 2],
            avoided: vec![],
            k: 3,
        }
    }

    fn output() -> JobOutput {
        JobOutput {
            recommendation: Recommendation {
                items: vec![],
                unknown_ids: vec![],
                fallback: true,
            },
            model: ModelInfo {
                architecture: "popularity".into(),
                dataset: "t".into(),
                checkpoint: String::new(),
                items: 0,
                max_len: 0,
            },
        }
    }

    #[tokio::test]
    async fn lifecycle_and_cap() {
        let q = MemoryQueue::new(2, Duration::from_secs(60));
        let mut rx = q.take_receiver().unwrap();
        assert!(q.take_receiver().is_none());
        let a = q.enqueue(req()).await.unwrap();
        let _b = q.enqueue(req()).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), 2);
        assert!(matches!(
            q.enqueue(req()).await,
            Err(QueueError::Full { depth: 2, .. })
        ));
        let got = rx.recv().await.unwrap();
        assert_eq!(got.id, a);
        q.mark_running(&a);
        assert_eq!(q.depth().await.unwrap(), 1);
        assert_eq!(
            q.status(&a).await.unwrap().unwrap().state,
            JobState::Running
        );
        let waiter = {
            let q = q.clone();
            let a = a.clone();
            tokio::spawn(async move { q.wait(&a, Duration::from_secs(5)).await })
        };
        q.finish(&a, Ok(output()));
        let seen = waiter.await.unwrap().unwrap().unwrap();
        assert_eq!(seen.state, JobState::Done);
        assert_eq!(seen.result, Some(output()));
        assert!(q.status(&JobId::mint()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn wait_times_out_on_a_queued_job() {
        let q = MemoryQueue::new(10, Duration::from_secs(60));
        let _rx = q.take_receiver();
        let a = q.enqueue(req()).await.unwrap();
        let t = Instant::now();
        let seen = q
            .wait(&a, Duration::from_millis(50))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.state, JobState::Queued);
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn results_expire() {
        let q = MemoryQueue::new(10, Duration::from_millis(20));
        let _rx = q.take_receiver();
        let a = q.enqueue(req()).await.unwrap();
        q.mark_running(&a);
        q.finish(&a, Err("bad".into()));
        assert_eq!(q.status(&a).await.unwrap().unwrap().state, JobState::Failed);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(q.status(&a).await.unwrap().is_none());
    }
}
