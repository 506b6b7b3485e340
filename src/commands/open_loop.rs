//! `movierec bench api --soak SECONDS --soak-rate R`: open-loop load through Redis. Requests
//! leave on a fixed schedule, R a second, whatever the answers: unlike closed-loop clients,
//! which slow down with the server, this keeps offering more than it can take, as a crowd (or
//! an attacker) does. The generator bounds its own requests in flight: one due while the bound
//! is out is counted as skipped, not sent, so the generator cannot grow without bound itself.
//!
//! Every accepted job is checked: a 200 carries the finished job, and each 202's job is
//! followed by id (`GET /recommend/{id}`) until it is done or failed. A job the API no longer
//! knows is lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::soak::{MemoryLog, Statuses, Watched};

/// How often the schedule is checked for requests due.
const TICK: Duration = Duration::from_millis(1);
/// Jobs followed by id at once.
const FOLLOWERS: usize = 256;
/// Pause between two looks at a followed job.
const FOLLOW_EVERY: Duration = Duration::from_millis(50);
/// Longest a followed job may take to end before it counts as unfinished.
const FOLLOW_FOR: Duration = Duration::from_secs(60);

/// The open-loop settings.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    /// Requests a second, on a fixed schedule.
    pub rate: f64,
    /// The `wait_ms` of each request.
    pub wait_ms: u64,
    /// Most requests of the schedule in flight at once.
    pub max_in_flight: usize,
}

/// What became of the scheduled requests and of the jobs they queued.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests the schedule made due.
    pub scheduled: u64,
    /// Due while `max_in_flight` were out: not sent.
    pub skipped: u64,
    /// Answers by status; 0 stands for a transport error.
    pub statuses: Statuses,
    /// 429 and 503 answers without `Retry-After`.
    pub no_retry_after: u64,
    /// 200 and 202 answers whose body was not the documented JSON.
    pub unreadable: u64,
    /// Jobs seen done: in a 200, or followed from a 202.
    pub done: u64,
    /// Jobs seen failed.
    pub failed: u64,
    /// 202 jobs followed by id.
    pub followed: u64,
    /// Followed jobs the API answered 404 for: accepted, then lost.
    pub lost: u64,
    /// Followed jobs still queued or running after [`FOLLOW_FOR`].
    pub unfinished: u64,
    /// Transport errors by kind, with the first one's message (the why of a status 0).
    pub transport: std::collections::BTreeMap<&'static str, (u64, String)>,
}

impl Tally {
    /// Answers that accepted a job (200 and 202).
    pub fn accepted(&self) -> u64 {
        [200, 202].iter().filter_map(|s| self.statuses.get(s)).sum()
    }

    /// Answers of any status.
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// What the request tasks share.
struct Shared {
    client: reqwest::Client,
    base: String,
    url: String,
    tally: Mutex<Tally>,
    followers: Arc<Semaphore>,
    answered: AtomicU64,
}

impl Shared {
    fn record(&self, f: impl FnOnce(&mut Tally)) {
        // A poisoned tally only means another task panicked; its counts still stand.
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut tally);
    }
}

/// Offers `config.rate` requests a second to `base` for `span`, printing memory every 10 s;
/// then waits for the answers and the followed jobs, and returns what became of them.
pub async fn run(
    client: &reqwest::Client,
    base: &str,
    bodies: &Arc<Vec<String>>,
    config: OpenLoop,
    span: Duration,
    watched: &Watched,
) -> Tally {
    let shared = Arc::new(Shared {
        client: client.clone(),
        base: base.to_owned(),
        url: format!("{base}/recommend?wait_ms={}", config.wait_ms),
        tally: Mutex::new(Tally::default()),
        followers: Arc::new(Semaphore::new(FOLLOWERS)),
        answered: AtomicU64::new(0),
    });
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let started = Instant::now();
    let deadline = started + span;
    let generator = async {
        let mut tasks = JoinSet::new();
        let mut issued: u64 = 0;
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticker.tick().await;
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Due by the schedule, however late the previous tick ran.
            let due = ((now - started).as_secs_f64() * config.rate) as u64;
            while issued < due {
                let body = bodies[issued as usize % bodies.len()].clone();
                issued += 1;
                match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(send(Arc::clone(&shared), body, permit));
                    }
                    Err(_) => shared.record(|t| t.skipped += 1),
                }
            }
            while tasks.try_join_next().is_some() {}
        }
        shared.record(|t| t.scheduled = issued);
        let pending = tasks.len();
        println!("schedule over: {issued} due; waiting for {pending} requests and followed jobs");
        while tasks.join_next().await.is_some() {}
    };
    let mut memory = MemoryLog::default();
    let sampler = memory.sample_until(started, deadline, watched, &shared.answered);
    futures::future::join(generator, sampler).await;
    let answered = shared.answered.load(Ordering::Relaxed);
    memory.sample(started, watched, answered).await;
    memory.print_summary();
    let mut tally = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *tally)
}

/// One request of the schedule; a 202's job is then followed until it ends.
async fn send(shared: Arc<Shared>, body: String, permit: OwnedSemaphorePermit) {
    let sent = shared
        .client
        .post(&shared.url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let (status, retry_after, json) = match sent {
        Err(e) => {
            shared.record(|t| transport_error(t, &e));
            (0, false, None)
        }
        Ok(res) => {
            let status = res.status().as_u16();
            let retry_after = res.headers().contains_key("retry-after");
            match res.bytes().await {
                // Only an accepted job's body is read: a refusal's status and header say all.
                Ok(bytes) if matches!(status, 200 | 202) => (
                    status,
                    retry_after,
                    serde_json::from_slice::<serde_json::Value>(&bytes).ok(),
                ),
                Ok(_) => (status, retry_after, None),
                Err(e) => {
                    shared.record(|t| transport_error(t, &e));
                    (0, false, None)
                }
            }
        }
    };
    drop(permit);
    shared.answered.fetch_add(1, Ordering::Relaxed);
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let job_status = field("status");
    let job_id = field("job_id");
    shared.record(|t| {
        *t.statuses.entry(status).or_default() += 1;
        if matches!(status, 429 | 503) && !retry_after {
            t.no_retry_after += 1;
        }
        match (status, job_status.as_deref()) {
            (200, Some("done")) => t.done += 1,
            (200, Some("failed")) => t.failed += 1,
            (200 | 202, _) if job_id.is_none() => t.unreadable += 1,
            (200, _) => t.unreadable += 1,
            _ => {}
        }
    });
    if status == 202
        && let Some(id) = job_id
    {
        follow(&shared, &id).await;
    }
}

/// Counts a transport error under its kind, keeping the first message of each kind.
fn transport_error(t: &mut Tally, e: &reqwest::Error) {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else if e.is_request() {
        "request"
    } else {
        "other"
    };
    let entry = t.transport.entry(kind).or_insert_with(|| {
        // The whole chain: reqwest's own message rarely says what the socket did.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        (0, message)
    });
    entry.0 += 1;
}

/// Looks at job `id` until it is done or failed, the API forgets it (lost), or
/// [`FOLLOW_FOR`] passes (unfinished).
async fn follow(shared: &Shared, id: &str) {
    // The semaphore is never closed; without a permit the job is still followed.
    let _permit = Arc::clone(&shared.followers).acquire_owned().await.ok();
    let url = format!("{}/recommend/{id}", shared.base);
    let until = Instant::now() + FOLLOW_FOR;
    let end = loop {
        let res = shared.client.get(&url).send().await;
        if let Ok(res) = res {
            let status = res.status().as_u16();
            let json = match res.bytes().await {
                Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes).ok(),
                Err(_) => None,
            };
            let state = json
                .as_ref()
                .and_then(|j| j.get("status"))
                .and_then(|v| v.as_str());
            match (status, state) {
                (200, Some("done")) => break End::Done,
                (200, Some("failed")) => break End::Failed,
                (404, _) => break End::Lost,
                _ => {}
            }
        }
        if Instant::now() > until {
            break End::Unfinished;
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    };
    shared.record(|t| {
        t.followed += 1;
        match end {
            End::Done => t.done += 1,
            End::Failed => t.failed += 1,
            End::Lost => t.lost += 1,
            End::Unfinished => t.unfinished += 1,
        }
    });
}

/// How a followed job ended.
enum End {
    Done,
    Failed,
    Lost,
    Unfinished,
}
