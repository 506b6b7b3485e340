//! Which workers are alive and what they serve, as they announce it in Redis, so that an API
//! whose workers run on other machines can tell whether it is ready.
//!
//! Each worker keeps the key `{queue}:movierec:worker:{name}` (its [`WorkerPresence`] as JSON)
//! with a time to live of a few heartbeats, refreshed every heartbeat, and lists its name in the
//! sorted set `{queue}:movierec:workers` (scored by the last refresh, so that long-gone names are
//! pruned). A worker that dies stops refreshing and its key expires on Redis' clock; a worker
//! that stops cleanly deletes it. Readers count only keys that still exist.

use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::types::now_ms;
use super::{QueueError, RedisQueue};
use crate::recommend::Serving;
use crate::registry::specs::ModelSpec;

/// Names not refreshed for this many key lifetimes leave the index.
const PRUNE_AFTER_LIFETIMES: u32 = 10;

/// What one worker says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerPresence {
    /// The worker's name (unique among the processes sharing the queue).
    pub name: String,
    /// What it serves, and why.
    pub serving: Serving,
    /// Jobs it has finished since it started, as of its last heartbeat (so an operator sees that
    /// every worker takes its share).
    #[serde(default)]
    pub jobs_done: u64,
    /// The models it serves and their weights.
    #[serde(default)]
    pub models: Vec<ModelSpec>,
    /// Why the last promotion could not be loaded here (it serves `models` meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_error: Option<String>,
}

impl WorkerPresence {
    /// False while it serves the popularity fallback nobody asked for.
    pub fn ready(&self) -> bool {
        self.serving.ready()
    }
}

/// The announcements of the workers of one Redis queue; cheap to clone.
#[derive(Clone)]
pub struct WorkerRegistry {
    queue: RedisQueue,
    index: String,
    prefix: String,
}

impl WorkerRegistry {
    /// The registry of `queue`'s workers.
    pub fn new(queue: &RedisQueue) -> Self {
        let name = &queue.config().queue;
        Self {
            queue: queue.clone(),
            index: format!("{name}:movierec:workers"),
            prefix: format!("{name}:movierec:worker:"),
        }
    }

    fn key(&self, worker: &str) -> String {
        format!("{}{worker}", self.prefix)
    }

    /// Says that `presence` is alive for `lifetime` more.
    pub async fn announce(
        &self,
        presence: &WorkerPresence,
        lifetime: Duration,
    ) -> Result<(), QueueError> {
        let json = serde_json::to_string(presence)
            .map_err(|e| QueueError::Corrupt(format!("worker presence: {e}")))?;
        let lifetime_ms = u64::try_from(lifetime.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let now = now_ms();
        let stale = now.saturating_sub(lifetime_ms.saturating_mul(PRUNE_AFTER_LIFETIMES.into()));
        let key = self.key(&presence.name);
        let index = self.index.clone();
        let name = presence.name.clone();
        let mut conn = self.queue.connection();
        self.queue
            .bounded(async move {
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&key)
                    .arg(json)
                    .arg("PX")
                    .arg(lifetime_ms)
                    .ignore()
                    .zadd(&index, &name, now)
                    .ignore()
                    .zrembyscore(&index, "-inf", stale)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// Withdraws `worker` at once (it is stopping).
    pub async fn withdraw(&self, worker: &str) -> Result<(), QueueError> {
        let key = self.key(worker);
        let index = self.index.clone();
        let name = worker.to_owned();
        let mut conn = self.queue.connection();
        self.queue
            .bounded(async move {
                redis::pipe()
                    .del(&key)
                    .ignore()
                    .zrem(&index, &name)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// The workers whose announcements have not expired, by name.
    pub async fn live(&self) -> Result<Vec<WorkerPresence>, QueueError> {
        let index = self.index.clone();
        let mut conn = self.queue.connection();
        let names: Vec<String> = self
            .queue
            .bounded(async move { conn.zrange(index, 0, -1).await })
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|n| self.key(n)).collect();
        let mut conn = self.queue.connection();
        let values: Vec<Option<String>> = self
            .queue
            .bounded(async move { redis::cmd("MGET").arg(&keys).query_async(&mut conn).await })
            .await?;
        let mut live: Vec<WorkerPresence> = values
            .into_iter()
            .flatten()
            .filter_map(|json| match serde_json::from_str(&json) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::debug!(error = %e, "unreadable worker presence; skipped");
                    None
                }
            })
            .collect();
        live.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_without_a_job_count_still_reads() {
        // What a worker of the release before the count wrote: it must not vanish from
        // readiness during a rolling upgrade.
        let old = r#"{"name":"w1","serving":{"model":{"architecture":"popularity","dataset":"ml-100k","checkpoint":"","items":3,"max_len":0},"source":"checkpoint"}}"#;
        let presence: WorkerPresence = serde_json::from_str(old).unwrap();
        assert_eq!(presence.name, "w1");
        assert_eq!(presence.jobs_done, 0);
    }
}
