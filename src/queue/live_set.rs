//! The promoted set of models, kept in Redis so that every worker, on any machine, serves it:
//! the key `{queue}:movierec:models` holds the set as JSON (it outlives restarts: a worker that
//! starts later serves it too), and every change is announced on `{queue}:movierec:models:changed`
//! so the workers switch at once.

use redis::AsyncCommands;

use super::{QueueError, RedisQueue};
use crate::registry::specs::{self, ModelSpec};

/// The promoted set of one Redis queue; cheap to clone.
#[derive(Clone)]
pub struct LiveSetStore {
    queue: RedisQueue,
    key: String,
    channel: String,
}

impl LiveSetStore {
    /// The store of `queue`.
    pub fn new(queue: &RedisQueue) -> Self {
        let name = &queue.config().queue;
        Self {
            queue: queue.clone(),
            key: format!("{name}:movierec:models"),
            channel: format!("{name}:movierec:models:changed"),
        }
    }

    /// Where changes are announced.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// A client for the subscription.
    pub fn client(&self) -> &redis::Client {
        self.queue.client()
    }

    /// The promoted set; `None` when nothing was ever promoted.
    pub async fn read(&self) -> Result<Option<Vec<ModelSpec>>, QueueError> {
        let key = self.key.clone();
        let mut conn = self.queue.connection();
        let raw: Option<String> = self
            .queue
            .bounded(async move { conn.get(key).await })
            .await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let set: Vec<ModelSpec> = serde_json::from_str(&raw)
            .map_err(|e| QueueError::Corrupt(format!("promoted models: {e}")))?;
        specs::check_set(&set).map_err(|e| QueueError::Corrupt(format!("promoted models: {e}")))?;
        Ok(Some(set))
    }

    /// Stores `set` as the promoted one and announces it, in one step.
    pub async fn publish(&self, set: &[ModelSpec]) -> Result<(), QueueError> {
        let json = serde_json::to_string(set)
            .map_err(|e| QueueError::Corrupt(format!("promoted models: {e}")))?;
        let key = self.key.clone();
        let channel = self.channel.clone();
        let mut conn = self.queue.connection();
        self.queue
            .bounded(async move {
                redis::pipe()
                    .atomic()
                    .set(&key, &json)
                    .ignore()
                    .publish(&channel, &json)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }
}
