//! The in-process queue of the embedded mode: a tokio channel to the worker and a map of job
//! states, with the same cap and result expiry (by time and by count) as the Redis queue. The cap
//! is checked and the job counted under one lock, so concurrent callers cannot overshoot it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use super::{JobId, JobOutput, JobQueue, JobState, JobStatus, QueueError, RecommendJob, Route};
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
    /// Finished jobs, oldest first (may name jobs already swept).
    finished: VecDeque<JobId>,
    waiting: u64,
    last_sweep: Instant,
}

struct Inner {
    state: Mutex<State>,
    tx: mpsc::UnboundedSender<MemoryJob>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<MemoryJob>>>,
    cap: u64,
    ttl: Duration,
    max_results: usize,
}

/// An in-process [`JobQueue`]; clones share the same queue.
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

impl MemoryQueue {
    /// A queue that holds at most `cap` waiting jobs and forgets results `ttl` after they finish,
    /// or sooner when more than `max_results` have finished (the oldest go first).
    pub fn new(cap: u64, ttl: Duration, max_results: u64) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    jobs: HashMap::new(),
                    finished: VecDeque::new(),
                    waiting: 0,
                    last_sweep: Instant::now(),
                }),
                tx,
                rx: Mutex::new(Some(rx)),
                cap,
                ttl,
                max_results: usize::try_from(max_results.max(1)).unwrap_or(usize::MAX),
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
        let state = &mut *state;
        if let Some(entry) = state.jobs.get_mut(id) {
            entry.status = JobStatus::ended(outcome);
            if entry.finished_at.is_none() {
                state.finished.push_back(id.clone());
            }
            entry.finished_at = Some(Instant::now());
            entry.watch.send_replace(entry.status.state);
        }
        while state.finished.len() > self.inner.max_results {
            if let Some(old) = state.finished.pop_front() {
                state.jobs.remove(&old);
            }
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
        let jobs = &state.jobs;
        state.finished.retain(|id| jobs.contains_key(id));
    }

    fn enqueue_now(&self, request: RecommendRequest, route: Route) -> Result<JobId, QueueError> {
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
            job: RecommendJob::new(request, route),
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
        self.status_at(id, Instant::now())
    }

    /// The status as it reads at `now` (a parameter, so tests need not sleep through a TTL).
    fn status_at(&self, id: &JobId, now: Instant) -> Option<JobStatus> {
        let state = self.lock();
        let entry = state.jobs.get(id)?;
        if entry
            .finished_at
            .is_some_and(|t| now.saturating_duration_since(t) >= self.inner.ttl)
        {
            return None;
        }
        Some(entry.status.clone())
    }
}

impl JobQueue for MemoryQueue {
    fn enqueue(
        &self,
        request: RecommendRequest,
        route: Route,
    ) -> BoxFuture<'_, Result<JobId, QueueError>> {
        let res = self.enqueue_now(request, route);
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
    use crate::worker::ChosenBy;

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
                precision: crate::model::Precision::F32,
            },
            chosen_by: ChosenBy::Split,
        }
    }

    #[tokio::test]
    async fn lifecycle_and_cap() {
        let q = MemoryQueue::new(2, Duration::from_secs(60), 100);
        let mut rx = q.take_receiver().unwrap();
        assert!(q.take_receiver().is_none());
        let a = q.enqueue(req(), Route::default()).await.unwrap();
        let _b = q.enqueue(req(), Route::default()).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), 2);
        assert!(matches!(
            q.enqueue(req(), Route::default()).await,
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
        let q = MemoryQueue::new(10, Duration::from_secs(60), 100);
        let _rx = q.take_receiver();
        let a = q.enqueue(req(), Route::default()).await.unwrap();
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
    async fn results_expire_after_their_ttl() {
        let q = MemoryQueue::new(10, Duration::from_secs(60), 100);
        let _rx = q.take_receiver();
        let a = q.enqueue(req(), Route::default()).await.unwrap();
        q.mark_running(&a);
        q.finish(&a, Err("bad".into()));
        assert_eq!(q.status(&a).await.unwrap().unwrap().state, JobState::Failed);
        let later = Instant::now() + Duration::from_secs(59);
        assert!(q.status_at(&a, later).is_some());
        let past = Instant::now() + Duration::from_secs(61);
        assert!(q.status_at(&a, past).is_none());
    }

    #[tokio::test]
    async fn only_the_newest_results_are_kept() {
        let q = MemoryQueue::new(10, Duration::from_secs(60), 3);
        let _rx = q.take_receiver();
        let mut ids = Vec::new();
        for _ in 0..5 {
            let id = q.enqueue(req(), Route::default()).await.unwrap();
            q.mark_running(&id);
            q.finish(&id, Ok(output()));
            ids.push(id);
        }
        let kept: Vec<bool> = ids.iter().map(|id| q.status_now(id).is_some()).collect();
        assert_eq!(kept, [false, false, true, true, true]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_cannot_overshoot_the_cap() {
        let q = MemoryQueue::new(5, Duration::from_secs(60), 100);
        let _rx = q.take_receiver();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    let mut admitted = 0;
                    for _ in 0..4 {
                        if q.enqueue(req(), Route::default()).await.is_ok() {
                            admitted += 1;
                        }
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += t.await.unwrap();
        }
        assert_eq!(admitted, 5);
        assert_eq!(q.depth().await.unwrap(), 5);
    }
}
