//! `movierec bench api --soak SECONDS`: sustained load through Redis, with the resident memory
//! of the API, the worker and Redis printed every [`EVERY`] (does it plateau?), and every answer
//! counted by status (only 200, 202 and 429 are allowed under overload).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pause between two memory readings.
const EVERY: Duration = Duration::from_secs(10);

/// Where the memory of the three processes is read.
pub struct Watched {
    pub api_pid: u32,
    pub worker_pid: u32,
    /// The private Redis' pid; `None` for a given Redis (then `INFO memory` is read).
    pub redis_pid: Option<u32>,
    pub redis_url: String,
}

/// Answers by HTTP status; 0 stands for a transport error.
pub type Statuses = BTreeMap<u16, u64>;

/// Loads `url` with `clients` closed-loop clients for `span`, printing memory every [`EVERY`];
/// returns the answers by status.
pub async fn run(
    client: &reqwest::Client,
    url: &str,
    bodies: &Arc<Vec<String>>,
    clients: usize,
    span: Duration,
    watched: &Watched,
) -> Statuses {
    let started = Instant::now();
    let deadline = started + span;
    println!(
        "{:>6} {:>10} {:>12} {:>13} {:>11} {:>10}",
        "t s", "api MiB", "api threads", "worker MiB", "redis MiB", "answers"
    );
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = futures::future::join_all((0..clients).map(|c| {
        let (client, url, bodies) = (client.clone(), url.to_owned(), Arc::clone(bodies));
        let answered = Arc::clone(&answered);
        async move {
            let mut statuses = Statuses::new();
            let mut i = c * bodies.len() / clients.max(1);
            while Instant::now() < deadline {
                let body = bodies[i % bodies.len()].clone();
                i += 1;
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let status = match sent {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        if status == 429 {
                            // As a well-behaved client would: wait as told (bounded).
                            let wait = res
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse::<u64>().ok())
                                .unwrap_or(1)
                                .min(5);
                            let _ = res.bytes().await;
                            tokio::time::sleep(Duration::from_secs(wait)).await;
                        } else if res.bytes().await.is_err() {
                            *statuses.entry(0).or_default() += 1;
                            continue;
                        }
                        status
                    }
                    Err(_) => 0,
                };
                *statuses.entry(status).or_default() += 1;
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            statuses
        }
    }));
    let sampler = async {
        loop {
            print_memory(
                started,
                watched,
                answered.load(std::sync::atomic::Ordering::Relaxed),
            )
            .await;
            if Instant::now() + EVERY > deadline {
                break;
            }
            tokio::time::sleep(EVERY).await;
        }
    };
    let (per_client, ()) = futures::future::join(load, sampler).await;
    print_memory(
        started,
        watched,
        answered.load(std::sync::atomic::Ordering::Relaxed),
    )
    .await;
    let mut statuses = Statuses::new();
    for s in per_client {
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    statuses
}

async fn print_memory(started: Instant, watched: &Watched, answered: u64) {
    let mib = |kib: Option<u64>| match kib {
        Some(k) => format!("{:.1}", k as f64 / 1024.0),
        None => "?".into(),
    };
    let redis = match watched.redis_pid {
        Some(pid) => rss_kib(pid),
        None => redis_rss_kib(&watched.redis_url).await,
    };
    let threads =
        status_field(watched.api_pid, "Threads:").map_or_else(|| "?".into(), |t| t.to_string());
    println!(
        "{:>6.0} {:>10} {:>12} {:>13} {:>11} {:>10}",
        started.elapsed().as_secs_f64(),
        mib(rss_kib(watched.api_pid)),
        threads,
        mib(rss_kib(watched.worker_pid)),
        mib(redis),
        answered
    );
}

/// `VmRSS` of a process, in KiB (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// A numeric field of `/proc/<pid>/status` (units dropped).
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Redis' `used_memory_rss`, in KiB.
async fn redis_rss_kib(url: &str) -> Option<u64> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory_rss:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|b| b / 1024)
}
