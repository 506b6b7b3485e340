//! The Redis queue: jobs pushed in apalis-redis' layout (so `movierec worker` consumes them with
//! an apalis worker) by a Lua script that checks the cap in the same step; statuses read back
//! from the task metadata apalis keeps; results stored by the worker under a key of their own
//! (compact, with Redis' own time to live) and announced on a channel in the same step, so a
//! waiting caller wakes as soon as the job finishes; finished jobs dropped after their time to
//! live or beyond a count, oldest first.
//!
//! Waking cannot lose a result: a caller registers its waiter before it reads the status, a
//! notification that comes before it sleeps is kept, and the listener wakes every waiter to
//! re-read after each (re)subscription, which covers announcements made while it was not
//! subscribed. A slow safety-net re-read ([`WAIT_SAFETY_NET`]) only guards against a broken
//! listener; the counts in [`WaitCounts`] tell which path woke each wait.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use apalis_redis::Config;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Notify;

use super::types::now_ms;
use super::{JobId, JobOutput, JobQueue, JobState, JobStatus, QueueError, RecommendJob, Route};
use crate::recommend::RecommendRequest;

/// apalis retries a failed task at most this many times before it declares it dead (hard-coded
/// in its Lua script).
const APALIS_MAX_ATTEMPTS: u32 = 25;

/// How long a waiter sleeps without a notification before it re-reads the status anyway: a
/// safety net for a broken listener, not the path a result normally takes.
pub const WAIT_SAFETY_NET: Duration = Duration::from_secs(1);

/// Admits a job only while fewer than the cap wait: the check and the push in one step.
const ENQUEUE_SCRIPT: &str = include_str!("lua/enqueue.lua");

/// Drops the jobs whose results have expired.
const PURGE_SCRIPT: &str = concat!(
    include_str!("lua/forget.lua"),
    include_str!("lua/purge.lua")
);

/// Schedules a finished job's expiry and drops the oldest finished jobs beyond the count bound.
const FINISH_SCRIPT: &str = concat!(
    include_str!("lua/forget.lua"),
    include_str!("lua/finish.lua")
);

/// Where and how the Redis queue runs.
#[derive(Debug, Clone)]
pub struct RedisQueueConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// apalis queue name; the API and the workers must agree on it.
    pub queue: String,
    /// Most jobs allowed to wait; beyond it `enqueue` answers [`QueueError::Full`].
    pub cap: u64,
    /// How long finished results stay readable.
    pub result_ttl: Duration,
    /// Most finished results kept; beyond it the oldest are dropped first.
    pub result_max: u64,
    /// Bound on every Redis round trip.
    pub timeout: Duration,
    /// Worker heartbeat interval; a worker silent for three of them is presumed dead and its jobs
    /// go back to the queue.
    pub heartbeat: Duration,
}

impl RedisQueueConfig {
    /// The apalis configuration for this queue.
    pub fn apalis_config(&self, batch_size: usize) -> Config {
        Config::default()
            .queue(&self.queue)
            .heartbeat_interval(self.heartbeat)
            .missed_heartbeats(3)
            .batch_size(batch_size.max(1))
            .emit_events(true)
    }

    /// The pub/sub channel apalis publishes on when a job is pushed or released.
    pub fn available_channel(&self) -> String {
        format!("tasks:{}:active:available", self.queue)
    }

    /// The pub/sub channel a worker announces finished jobs on (with their result written).
    pub fn finished_channel(&self) -> String {
        format!("{}:movierec:finished", self.queue)
    }

    /// Where a finished job's result is kept: this prefix and the job id.
    pub fn result_prefix(&self) -> String {
        format!("{}:movierec:result:", self.queue)
    }
}

/// How the waits of one queue were woken: by a notification, or by the safety net. In a
/// healthy steady state the second stays at zero.
#[derive(Debug, Default)]
pub struct WaitCounts {
    /// Wake-ups by a notification (a finished job, or a re-check after a subscription).
    pub notified: AtomicU64,
    /// Wake-ups by [`WAIT_SAFETY_NET`] with no notification.
    pub safety_net: AtomicU64,
}

/// Runs between a waiter's status read and its sleep (tests use it to finish a job exactly
/// there).
pub type WaitHook = Arc<dyn Fn(&JobId) -> BoxFuture<'static, ()> + Send + Sync>;

type Waiters = Mutex<HashMap<String, Arc<Notify>>>;

/// The Lua scripts, compiled (hashed) once per queue.
struct Scripts {
    enqueue: redis::Script,
    purge: redis::Script,
    finish: redis::Script,
}

/// A [`JobQueue`] on Redis; cheap to clone.
#[derive(Clone)]
pub struct RedisQueue {
    cfg: RedisQueueConfig,
    apalis: Config,
    client: redis::Client,
    conn: ConnectionManager,
    waiters: Arc<Waiters>,
    expiry_key: String,
    scripts: Arc<Scripts>,
    counts: Arc<WaitCounts>,
    wait_hook: Option<WaitHook>,
}

impl RedisQueue {
    /// Connects lazily (a Redis that is down at start-up is reported by [`JobQueue::ping`], not
    /// here) and starts the listener that wakes waiters when jobs finish. Needs a tokio runtime.
    pub fn connect(cfg: RedisQueueConfig) -> Result<Self, QueueError> {
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| QueueError::Unavailable(format!("bad REDIS_URL: {e}")))?;
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_cfg)
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        let apalis = cfg.apalis_config(1);
        let waiters: Arc<Waiters> = Arc::default();
        let expiry_key = format!("{}:movierec:expiry", cfg.queue);
        // apalis announces the jobs it kills itself (a payload it cannot decode) on the dead
        // channel; every other finished job is announced by the worker's finish script.
        tokio::spawn(listen_for_finished(
            client.clone(),
            vec![
                cfg.finished_channel(),
                format!("tasks:{}", apalis.dead_jobs_set()),
            ],
            Arc::downgrade(&waiters),
        ));
        Ok(Self {
            cfg,
            apalis,
            client,
            conn,
            waiters,
            expiry_key,
            scripts: Arc::new(Scripts {
                enqueue: redis::Script::new(ENQUEUE_SCRIPT),
                purge: redis::Script::new(PURGE_SCRIPT),
                finish: redis::Script::new(FINISH_SCRIPT),
            }),
            counts: Arc::default(),
            wait_hook: None,
        })
    }

    /// How this queue's waits were woken so far.
    pub fn wait_counts(&self) -> &WaitCounts {
        &self.counts
    }

    /// Sets the hook run between a waiter's status read and its sleep (for tests).
    #[doc(hidden)]
    pub fn set_wait_hook(&mut self, hook: WaitHook) {
        self.wait_hook = Some(hook);
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &RedisQueueConfig {
        &self.cfg
    }

    /// A client for extra connections (the worker's pub/sub wake-ups).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The shared connection (apalis storages of workers use it too).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Records that `id` finished with `outcome` (its result, or why it failed for good): stores
    /// the result under its own key with the result time to live, announces it to waiting
    /// callers, and drops the oldest finished jobs beyond [`RedisQueueConfig::result_max`];
    /// returns how many went. The worker calls it before it hands the job back to apalis.
    pub async fn finish(
        &self,
        id: &str,
        outcome: &Result<JobOutput, String>,
    ) -> Result<u64, QueueError> {
        let value = super::stored::encode(outcome)?;
        let ttl = duration_ms(self.cfg.result_ttl).max(1);
        let mut conn = self.conn.clone();
        let keys = self.forget_keys();
        let meta = self.apalis.job_meta_hash();
        let max = self.cfg.result_max.max(1);
        let channel = self.cfg.finished_channel();
        let results = self.cfg.result_prefix();
        let script = Arc::clone(&self.scripts);
        let id = id.to_owned();
        self.bounded(async move {
            let mut inv = script.finish.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            inv.arg(id)
                .arg(now_ms())
                .arg(ttl)
                .arg(max)
                .arg(meta)
                .arg(value)
                .arg(channel)
                .arg(results);
            inv.invoke_async::<u64>(&mut conn).await
        })
        .await
    }

    /// Deletes up to `limit` jobs whose results have expired; returns how many.
    pub async fn purge_expired(&self, limit: usize) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let meta = self.apalis.job_meta_hash();
        let keys = self.forget_keys();
        let results = self.cfg.result_prefix();
        let script = Arc::clone(&self.scripts);
        self.bounded(async move {
            let mut inv = script.purge.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            inv.arg(now).arg(limit).arg(meta).arg(results);
            inv.invoke_async::<u64>(&mut conn).await
        })
        .await
    }

    /// The keys `lua/forget.lua` expects, in its order.
    fn forget_keys(&self) -> [String; 4] {
        [
            self.expiry_key.clone(),
            self.apalis.job_data_hash(),
            self.apalis.done_jobs_set(),
            self.apalis.dead_jobs_set(),
        ]
    }

    /// Runs one Redis call within the configured timeout.
    pub(super) async fn bounded<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, QueueError> {
        match tokio::time::timeout(self.cfg.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(QueueError::Unavailable(e.to_string())),
            Err(_) => Err(QueueError::Unavailable(format!(
                "Redis did not answer within {:?}",
                self.cfg.timeout
            ))),
        }
    }

    async fn read_status(&self, id: &JobId) -> Result<Option<JobStatus>, QueueError> {
        let meta_key = format!("{}:{}", self.apalis.job_meta_hash(), id.as_str());
        let result_key = format!("{}{}", self.cfg.result_prefix(), id.as_str());
        let mut conn = self.conn.clone();
        // In one step: read apart, a job finishing and purged between the two reads would look
        // unknown.
        let (meta, result): (HashMap<String, String>, Option<String>) = self
            .bounded(async move {
                redis::pipe()
                    .atomic()
                    .hgetall(meta_key)
                    .get(result_key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if let Some(raw) = result {
            return status_from_result(&raw).map(Some);
        }
        if meta.is_empty() {
            return Ok(None);
        }
        let status = meta.get("status").map(String::as_str);
        let ttl = self.cfg.result_ttl.as_secs();
        if let Some(done_at) = meta.get("done_at").and_then(|d| d.parse::<u64>().ok())
            && done_at.saturating_add(ttl) < now_ms() / 1000
            && matches!(status, Some("Done" | "Killed"))
        {
            return Ok(None);
        }
        if status == Some("Done") {
            // Done without a result key: its result has expired or was dropped beyond the
            // count, unless a worker of the previous release kept it in the metadata.
            return Ok(status_from_meta(&meta)
                .ok()
                .filter(|s| s.state == JobState::Done && s.result.is_some()));
        }
        status_from_meta(&meta).map(Some)
    }

    fn waiter(&self, id: &JobId) -> Arc<Notify> {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.as_str().to_owned()).or_default().clone()
    }

    fn forget_waiter(&self, id: &JobId) {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id.as_str());
    }
}

/// A duration in whole milliseconds, saturating.
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Turns a result stored by [`RedisQueue::finish`] into a job status.
fn status_from_result(raw: &str) -> Result<JobStatus, QueueError> {
    Ok(JobStatus::ended(super::stored::decode(raw)?))
}

/// Turns apalis' task metadata into a job status.
fn status_from_meta(meta: &HashMap<String, String>) -> Result<JobStatus, QueueError> {
    let attempts: u32 = meta
        .get("attempts")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let outcome = meta
        .get("result")
        .map(|raw| {
            serde_json::from_str::<Result<serde_json::Value, String>>(raw)
                .map_err(|e| QueueError::Corrupt(format!("job result: {e}")))
        })
        .transpose()?;
    let last_error = match &outcome {
        Some(Err(e)) => Some(clean_error(e)),
        _ => None,
    };
    let status = match meta.get("status").map(String::as_str) {
        Some("Done") => match outcome {
            Some(Ok(value)) => {
                let out: JobOutput = serde_json::from_value(value)
                    .map_err(|e| QueueError::Corrupt(format!("job output: {e}")))?;
                JobStatus {
                    state: JobState::Done,
                    result: Some(out),
                    error: None,
                }
            }
            _ => JobStatus {
                state: JobState::Failed,
                result: None,
                error: Some(last_error.unwrap_or_else(|| "the job stored no result".into())),
            },
        },
        Some("Killed") => JobStatus {
            state: JobState::Failed,
            result: None,
            error: Some(last_error.unwrap_or_else(|| "the job was aborted".into())),
        },
        Some("Failed") if attempts >= APALIS_MAX_ATTEMPTS => JobStatus {
            state: JobState::Failed,
            result: None,
            error: last_error,
        },
        // A failed attempt waits for its retry.
        Some("Failed") | Some("Pending") | Some("Queued") | None => JobStatus {
            state: JobState::Queued,
            result: None,
            error: last_error,
        },
        Some("Running") => JobStatus {
            state: JobState::Running,
            result: None,
            error: last_error,
        },
        Some(other) => return Err(QueueError::Corrupt(format!("unknown job status {other}"))),
    };
    Ok(status)
}

/// apalis prefixes abort errors; callers only need the reason.
fn clean_error(e: &str) -> String {
    e.strip_prefix("AbortError: ").unwrap_or(e).to_owned()
}

/// Subscribes to the channels apalis publishes finished job ids on and wakes their waiters;
/// reconnects after an outage, and stops once the queue is dropped.
async fn listen_for_finished(client: redis::Client, channels: Vec<String>, waiters: Weak<Waiters>) {
    loop {
        if waiters.strong_count() == 0 {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                let mut ok = true;
                for ch in &channels {
                    if pubsub.subscribe(ch).await.is_err() {
                        ok = false;
                    }
                }
                if ok {
                    // Anything announced while no subscription stood is not coming: every
                    // current waiter re-reads its status once.
                    if let Some(waiters) = waiters.upgrade() {
                        let map = waiters.lock().unwrap_or_else(|p| p.into_inner());
                        for n in map.values() {
                            n.notify_one();
                        }
                    }
                    let mut messages = pubsub.on_message();
                    loop {
                        let next =
                            tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
                        let Some(waiters) = waiters.upgrade() else {
                            return;
                        };
                        match next {
                            Ok(Some(msg)) => {
                                if let Ok(id) = msg.get_payload::<String>() {
                                    let map = waiters.lock().unwrap_or_else(|p| p.into_inner());
                                    if let Some(n) = map.get(&id) {
                                        n.notify_one();
                                    }
                                }
                            }
                            Ok(None) => break,
                            Err(_) => {}
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "pub/sub connection failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl JobQueue for RedisQueue {
    fn enqueue(
        &self,
        request: RecommendRequest,
        route: Route,
    ) -> BoxFuture<'_, Result<JobId, QueueError>> {
        async move {
            let id = JobId::mint();
            let data = serde_json::to_vec(&RecommendJob::new(request, route))
                .map_err(|e| QueueError::Corrupt(format!("job payload: {e}")))?;
            let mut conn = self.conn.clone();
            let script = Arc::clone(&self.scripts);
            let keys = [
                self.apalis.job_data_hash(),
                self.apalis.active_jobs_list(),
                self.apalis.scheduled_jobs_set(),
            ];
            let meta = self.apalis.job_meta_hash();
            let channel = self.cfg.available_channel();
            let cap = self.cfg.cap;
            let task_id = id.to_string();
            let (admitted, depth): (u8, u64) = self
                .bounded(async move {
                    let mut inv = script.enqueue.prepare_invoke();
                    for k in &keys {
                        inv.key(k);
                    }
                    // apalis schedules every push for "now" (whole seconds) and files it in the
                    // scheduled set; workers promote it when they fetch. The announcement wakes
                    // idle workers at once instead of at their next poll.
                    inv.arg(cap)
                        .arg(task_id)
                        .arg(data)
                        .arg(meta)
                        .arg(APALIS_MAX_ATTEMPTS)
                        .arg(now_ms() / 1000)
                        .arg(channel);
                    inv.invoke_async(&mut conn).await
                })
                .await?;
            if admitted == 0 {
                return Err(QueueError::Full {
                    depth,
                    retry_after: Duration::from_secs(1),
                });
            }
            Ok(id)
        }
        .boxed()
    }

    fn status<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<Option<JobStatus>, QueueError>> {
        self.read_status(id).boxed()
    }

    fn wait<'a>(
        &'a self,
        id: &'a JobId,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<JobStatus>, QueueError>> {
        async move {
            let deadline = tokio::time::Instant::now() + timeout;
            // Registered before the first read: a notification from then on is kept until the
            // wait below takes it, so a job finishing between the read and the sleep still wakes
            // it.
            let notify = self.waiter(id);
            let result = loop {
                let status = match self.read_status(id).await {
                    Ok(s) => s,
                    Err(e) => break Err(e),
                };
                let finished = status.as_ref().is_none_or(|s| s.state.is_terminal());
                let now = tokio::time::Instant::now();
                if finished || now >= deadline {
                    break Ok(status);
                }
                if let Some(hook) = &self.wait_hook {
                    hook(id).await;
                }
                let nap = (deadline - now).min(WAIT_SAFETY_NET);
                match tokio::time::timeout(nap, notify.notified()).await {
                    Ok(()) => {
                        self.counts.notified.fetch_add(1, Ordering::Relaxed);
                    }
                    // Cut short by the caller's deadline, not by the safety net.
                    Err(_) if nap < WAIT_SAFETY_NET => {}
                    Err(_) => {
                        self.counts.safety_net.fetch_add(1, Ordering::Relaxed);
                    }
                }
            };
            self.forget_waiter(id);
            result
        }
        .boxed()
    }

    fn depth(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        async move {
            // Pushed jobs wait in the scheduled set until a worker promotes them to the active
            // list; both count as waiting.
            let mut conn = self.conn.clone();
            let active = self.apalis.active_jobs_list();
            let scheduled = self.apalis.scheduled_jobs_set();
            let (a, s): (u64, u64) = self
                .bounded(async move {
                    redis::pipe()
                        .llen(active)
                        .zcard(scheduled)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            Ok(a + s)
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), QueueError>> {
        async move {
            let mut conn = self.conn.clone();
            let pong: String = self
                .bounded(async move { redis::cmd("PING").query_async(&mut conn).await })
                .await?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(QueueError::Unavailable(format!("PING answered {pong}")))
            }
        }
        .boxed()
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn statuses_map_from_apalis_metadata() {
        let queued = status_from_meta(&meta(&[("status", "Pending"), ("attempts", "0")])).unwrap();
        assert_eq!(queued.state, JobState::Queued);
        let running = status_from_meta(&meta(&[("status", "Running")])).unwrap();
        assert_eq!(running.state, JobState::Running);
        let killed = status_from_meta(&meta(&[
            ("status", "Killed"),
            ("result", r#"{"Err":"AbortError: k must be at least 1"}"#),
        ]))
        .unwrap();
        assert_eq!(killed.state, JobState::Failed);
        assert_eq!(killed.error.as_deref(), Some("k must be at least 1"));
        let retrying = status_from_meta(&meta(&[
            ("status", "Failed"),
            ("attempts", "1"),
            ("result", r#"{"Err":"model busy"}"#),
        ]))
        .unwrap();
        assert_eq!(retrying.state, JobState::Queued);
        assert_eq!(retrying.error.as_deref(), Some("model busy"));
        let done = status_from_meta(&meta(&[
            ("status", "Done"),
            (
                "result",
                r#"{"Ok":{"items":[{"movie_id":5,"score":2.0}],"unknown_ids":[],"fallback":false,
                   "model":{"architecture":"a","dataset":"d","checkpoint":"c","items":1,"max_len":2}}}"#,
            ),
        ]))
        .unwrap();
        assert_eq!(done.state, JobState::Done);
        assert_eq!(done.result.unwrap().recommendation.items[0].movie_id, 5);
        assert!(status_from_meta(&meta(&[("status", "Weird")])).is_err());
    }
}
