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
    let mut memory = MemoryLog::default();
    let sampler = memory.sample_until(started, deadline, watched, &answered);
    let (per_client, ()) = futures::future::join(load, sampler).await;
    memory
        .sample(
            started,
            watched,
            answered.load(std::sync::atomic::Ordering::Relaxed),
        )
        .await;
    memory.print_summary();
    let mut statuses = Statuses::new();
    for s in per_client {
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    statuses
}

/// Resident memory of the three processes at one time, in KiB (`None`: could not be read).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    pub api: Option<u64>,
    pub worker: Option<u64>,
    pub redis: Option<u64>,
}

/// The readings of a soak: the first, the largest of each process, and the last, so a plateau
/// (or growth) shows in three figures per process.
#[derive(Debug, Default)]
pub struct MemoryLog {
    first: Option<Reading>,
    peak: Reading,
    last: Option<Reading>,
}

impl MemoryLog {
    /// Reads, prints and records the memory of the three processes, with `answered` so far.
    pub async fn sample(&mut self, started: Instant, watched: &Watched, answered: u64) {
        let reading = Reading {
            api: rss_kib(watched.api_pid),
            worker: rss_kib(watched.worker_pid),
            redis: match watched.redis_pid {
                Some(pid) => rss_kib(pid),
                None => redis_rss_kib(&watched.redis_url).await,
            },
        };
        let threads =
            status_field(watched.api_pid, "Threads:").map_or_else(|| "?".into(), |t| t.to_string());
        println!(
            "{:>6.0} {:>10} {:>12} {:>13} {:>11} {:>10}",
            started.elapsed().as_secs_f64(),
            mib(reading.api),
            threads,
            mib(reading.worker),
            mib(reading.redis),
            answered
        );
        self.first.get_or_insert(reading);
        let max = |a: Option<u64>, b: Option<u64>| a.max(b);
        self.peak = Reading {
            api: max(self.peak.api, reading.api),
            worker: max(self.peak.worker, reading.worker),
            redis: max(self.peak.redis, reading.redis),
        };
        self.last = Some(reading);
    }

    /// Samples every [`EVERY`] until `deadline` (the last sample is the caller's).
    pub async fn sample_until(
        &mut self,
        started: Instant,
        deadline: Instant,
        watched: &Watched,
        answered: &std::sync::atomic::AtomicU64,
    ) {
        println!(
            "{:>6} {:>10} {:>12} {:>13} {:>11} {:>10}",
            "t s", "api MiB", "api threads", "worker MiB", "redis MiB", "answers"
        );
        loop {
            let n = answered.load(std::sync::atomic::Ordering::Relaxed);
            self.sample(started, watched, n).await;
            if Instant::now() + EVERY > deadline {
                break;
            }
            tokio::time::sleep(EVERY).await;
        }
    }

    /// Prints start, peak and end per process.
    pub fn print_summary(&self) {
        let first = self.first.unwrap_or_default();
        let last = self.last.unwrap_or_default();
        for (name, f, p, l) in [
            ("api", first.api, self.peak.api, last.api),
            ("worker", first.worker, self.peak.worker, last.worker),
            ("redis", first.redis, self.peak.redis, last.redis),
        ] {
            println!(
                "RSS {name}: start {} MiB, peak {} MiB, end {} MiB",
                mib(f),
                mib(p),
                mib(l)
            );
        }
    }
}

fn mib(kib: Option<u64>) -> String {
    match kib {
        Some(k) => format!("{:.1}", k as f64 / 1024.0),
        None => "?".into(),
    }
}

/// The machine's load averages (1, 5 and 15 minutes), from `/proc/loadavg`: a soak's figures
/// depend on what else runs.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            let fields: Vec<&str> = l.split_whitespace().take(3).collect();
            (fields.len() == 3).then(|| fields.join(" "))
        })
        .unwrap_or_else(|| "?".into())
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
