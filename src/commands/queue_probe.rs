//! What `movierec bench api` reads from the Redis under test: the waiting depth, sampled while
//! the load runs (does the cap hold?), and the bytes each finished job keeps (is memory bounded?).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::AsyncCommands;

/// Pause between two depth samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(1);
/// Finished jobs whose metadata is weighed for the bytes-per-job figure.
const WEIGHED_JOBS: usize = 200;

/// Samples the waiting depth of `queue` until stopped.
pub struct DepthSampler {
    stop: Arc<AtomicBool>,
    deepest: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DepthSampler {
    /// Starts sampling on the current runtime, on a connection of its own.
    pub async fn start(url: &str, queue: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let (active, scheduled) = (format!("{queue}:active"), format!("{queue}:scheduled"));
        let stop = Arc::new(AtomicBool::new(false));
        let deepest = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, deepest, samples) = (stop.clone(), deepest.clone(), samples.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let depth: redis::RedisResult<(u64, u64)> = redis::pipe()
                        .llen(&active)
                        .zcard(&scheduled)
                        .query_async(&mut conn)
                        .await;
                    if let Ok((a, s)) = depth {
                        deepest.fetch_max(a + s, Ordering::Relaxed);
                        samples.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        };
        Ok(Self {
            stop,
            deepest,
            samples,
            task,
        })
    }

    /// Stops; returns the deepest depth seen and the number of samples.
    pub async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.deepest.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

/// What the finished jobs of a queue keep in Redis.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct KeptJobs {
    /// Finished jobs still kept.
    pub jobs: u64,
    /// Bytes one of them keeps (`MEMORY USAGE`): its result and metadata keys, plus its share of
    /// the payload hash, the done set and the expiry set.
    pub bytes_per_job: f64,
}

/// Weighs the finished jobs of `queue`; `None` when none are kept.
pub async fn kept_jobs(url: &str, queue: &str) -> anyhow::Result<Option<KeptJobs>> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let expiry = format!("{queue}:movierec:expiry");
    let jobs: u64 = conn.zcard(&expiry).await?;
    if jobs == 0 {
        return Ok(None);
    }
    let ids: Vec<String> = conn.zrange(&expiry, 0, WEIGHED_JOBS as isize - 1).await?;
    let mut meta_bytes = 0u64;
    for id in &ids {
        meta_bytes += usage(&mut conn, &format!("{queue}:meta:{id}")).await?;
        meta_bytes += usage(&mut conn, &format!("{queue}:movierec:result:{id}")).await?;
    }
    let mut per_job = meta_bytes as f64 / ids.len().max(1) as f64;
    let data = format!("{queue}:data");
    let payloads: u64 = conn.hlen(&data).await?;
    let done = format!("{queue}:done");
    let done_jobs: u64 = conn.scard(&done).await?;
    for (key, count) in [(&data, payloads), (&done, done_jobs), (&expiry, jobs)] {
        if count > 0 {
            per_job += usage(&mut conn, key).await? as f64 / count as f64;
        }
    }
    Ok(Some(KeptJobs {
        jobs,
        bytes_per_job: per_job,
    }))
}

/// `MEMORY USAGE key SAMPLES 0` (every element counted); 0 for a missing key.
async fn usage(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> anyhow::Result<u64> {
    let bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(conn)
        .await?;
    Ok(bytes.unwrap_or(0))
}
