//! `movierec bench api`: a load generator against `serve` plus one `worker` on Redis, and
//! against `serve --embedded`, with batching on and off, at several concurrencies.
//!
//! Every request is `POST /recommend?wait_ms=10000` with a real history: a window of 5 to 50
//! consecutive movies (`--min-history`, `--max-history`) cut from a catalogue user's ratings (in
//! time order). Latency is measured
//! end to end, from sending the request to reading the answer with its result.
//!
//! In Redis mode it also reports what the queue holds: with `--sample-depth`, the deepest
//! waiting depth seen during each measurement (against `--queue-cap`), and after each one the
//! bytes a finished job keeps in Redis.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use movierec::catalogue::Catalogue;
use movierec::config::CatalogueSettings;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::child::KillOnDrop;
use super::queue_probe;
use super::stats::percentile;

/// Which deployment is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `movierec serve` and one `movierec worker`, sharing a Redis.
    Redis,
    /// `movierec serve --embedded`: one process, in-process queue.
    Embedded,
}

/// Arguments of `movierec bench api`.
#[derive(Debug, clap::Args)]
pub struct ApiBenchArgs {
    #[command(flatten)]
    pub catalogue: CatalogueSettings,
    /// Checkpoint the workers serve; unset: the newest one for the release (else popularity).
    #[arg(long, env = "RECSYS_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,
    /// Deployments to measure.
    #[arg(long, value_delimiter = ',', default_values = ["redis", "embedded"])]
    pub modes: Vec<Mode>,
    /// Requests in flight at once, one measurement each.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 32, 128])]
    pub concurrency: Vec<usize>,
    /// Seconds measured at each concurrency, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of unmeasured load before each measurement.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    /// Batching settings to measure: true (on) and/or false (off).
    #[arg(long, value_delimiter = ',', default_values_t = [true, false])]
    pub batching: Vec<bool>,
    /// Batch size with batching on (batching off is a batch size of 1).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Redis for the `redis` mode; unset: a private `redis-server` on a free loopback port.
    /// A given Redis only gets keys under a fresh queue name; nothing is flushed.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Movies asked for per request.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Seed of the request sampler.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Shortest history a request sends.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub min_history: u64,
    /// Longest history a request sends (200 = a full window of the models' default length).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max_history: u64,
    /// `RECSYS_QUEUE_CAP` of the measured services; a 429 counts as rejected, not as an error.
    #[arg(long, default_value_t = 100_000)]
    pub queue_cap: u64,
    /// In Redis mode, sample the waiting depth every millisecond during each measurement and
    /// print the deepest seen (try `--concurrency 256 --queue-cap 200`).
    #[arg(long)]
    pub sample_depth: bool,
    /// Instead of the measurements: load `serve` and a worker on Redis for this many seconds
    /// with twice the largest `--concurrency` in clients, print the resident memory of the API,
    /// the worker and Redis every 10 s, and count the answers by status (see `--soak-rate` for
    /// an open loop instead of clients).
    #[arg(long)]
    pub soak: Option<f64>,
    /// With `--soak`: instead of closed-loop clients, offer this many requests a second on a
    /// fixed schedule whatever the answers (open loop), and follow every accepted job to its end.
    #[arg(long, requires = "soak", value_parser = positive_rate)]
    pub soak_rate: Option<f64>,
    /// With `--soak`: an open loop at this multiple of the peak, which the same services
    /// measure first (closed loop at the largest `--concurrency` for `--seconds`), in this run.
    #[arg(long, requires = "soak", conflicts_with = "soak_rate", value_parser = positive_rate)]
    pub soak_factor: Option<f64>,
    /// With `--soak-rate`: the `wait_ms` of each request, up to the API's 10000 (jobs that
    /// outlast it answer 202 and are followed by id).
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(0..=movierec::http::MAX_WAIT_MS))]
    pub soak_wait_ms: u64,
    /// With `--soak-rate`: most requests in flight; one due beyond it is counted as skipped.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub soak_max_in_flight: u64,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// A `--soak-rate`: a finite number of requests a second above zero.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s} is not a rate above 0")),
    }
}

/// One measurement.
#[derive(Debug, Serialize)]
struct Row {
    mode: Mode,
    batching: bool,
    concurrency: usize,
    requests: usize,
    /// 429 answers (queue full).
    rejected: usize,
    errors: usize,
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Deepest waiting depth seen (Redis mode with `--sample-depth`).
    max_depth: Option<u64>,
    /// What finished jobs keep in Redis after the measurement (Redis mode).
    kept: Option<queue_probe::KeptJobs>,
}

/// Requests in the pool the load generator cycles through.
const POOL: usize = 20_000;
/// Longest the soak's client keeps a connection idle, well below the services' keep-alive (5 s,
/// `RECSYS_KEEP_ALIVE_SECS`). Past the server's, a request sent on a connection the server is
/// closing is lost in transit ("connection closed before message completed": HTTP/1.1's
/// keep-alive race, and the client does not resend a POST); a 300 s open-loop soak at the
/// default idle timeout lost 288 of 1.69 million requests so.
const CLIENT_IDLE: Duration = Duration::from_secs(2);
/// Longest the services may take to come up.
const STARTUP: Duration = Duration::from_secs(120);

/// Runs the benchmark and prints one line per measurement.
pub fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    if args.concurrency.contains(&0) {
        bail!("--concurrency values must be at least 1");
    }
    if args.min_history > args.max_history {
        bail!(
            "--min-history {} is above --max-history {}",
            args.min_history,
            args.max_history
        );
    }
    let bodies = Arc::new(request_pool(&args)?);
    println!(
        "{} requests sampled from {}: histories of {}..={} movies, k = {}",
        bodies.len(),
        args.catalogue.database_path().display(),
        args.min_history,
        args.max_history,
        args.k
    );
    if let Some(seconds) = args.soak {
        // The soak's generator offers twice what the services take on the same cores: on one
        // thread it cannot keep its schedule while they run.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return soak(&args, &runtime, &bodies, seconds);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    let mut redis = None;
    println!(
        "{:<9} {:<8} {:>11} {:>9} {:>8} {:>7} {:>10} {:>9} {:>9}",
        "mode",
        "batching",
        "concurrency",
        "requests",
        "rejected",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms"
    );
    for &mode in &args.modes {
        let redis_url = match (mode, &args.redis_url) {
            (Mode::Embedded, _) => None,
            (Mode::Redis, Some(url)) => Some(url.clone()),
            (Mode::Redis, None) => {
                if redis.is_none() {
                    redis = Some(PrivateRedis::start()?);
                }
                redis.as_ref().map(PrivateRedis::url)
            }
        };
        for &batching in &args.batching {
            let batch_size = if batching { args.batch_size.max(2) } else { 1 };
            let services = Services::start(&args, mode, batch_size, redis_url.as_deref())?;
            let base = services.base.clone();
            let queue = services.queue.clone();
            let auth = services.authorization()?;
            let measured: anyhow::Result<()> = runtime.block_on(async {
                let client = reqwest::Client::builder()
                    .default_headers(auth)
                    .timeout(Duration::from_secs(30))
                    .pool_max_idle_per_host(1024)
                    .build()?;
                wait_until_serving(&client, &base, &bodies[0]).await?;
                for &concurrency in &args.concurrency {
                    let warmup = Duration::from_secs_f64(args.warmup_seconds.max(0.0));
                    load(&client, &base, &bodies, concurrency, warmup).await;
                    let span = Duration::from_secs_f64(args.seconds.max(0.1));
                    let sampler = match (&redis_url, args.sample_depth) {
                        (Some(url), true) => {
                            Some(queue_probe::DepthSampler::start(url, &queue).await?)
                        }
                        _ => None,
                    };
                    let sample = load(&client, &base, &bodies, concurrency, span).await;
                    println!("  latency ms: {}", histogram(&sample.latencies_ms));
                    let mut row = sample.row(mode, batching, concurrency);
                    if let Some(sampler) = sampler {
                        let (deepest, samples) = sampler.finish().await;
                        row.max_depth = Some(deepest);
                        println!(
                            "  waiting depth: max {deepest} in {samples} samples (cap {})",
                            args.queue_cap
                        );
                    }
                    if let Some(url) = &redis_url {
                        row.kept = queue_probe::kept_jobs(url, &queue).await?;
                        if let Some(kept) = row.kept {
                            println!(
                                "  redis keeps {} finished jobs, {:.0} bytes each",
                                kept.jobs, kept.bytes_per_job
                            );
                        }
                    }
                    println!(
                        "{:<9} {:<8} {:>11} {:>9} {:>8} {:>7} {:>10.0} {:>9.2} {:>9.2}",
                        format!("{mode:?}").to_lowercase(),
                        if batching { "on" } else { "off" },
                        row.concurrency,
                        row.requests,
                        row.rejected,
                        row.errors,
                        row.requests_per_sec,
                        row.p50_ms,
                        row.p99_ms
                    );
                    rows.push(row);
                }
                Ok(())
            });
            drop(services);
            measured?;
        }
    }
    if let Some(path) = &args.output {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `--soak`: sustained load through Redis; fails unless every answer is 200, 202 or 429.
fn soak(
    args: &ApiBenchArgs,
    runtime: &tokio::runtime::Runtime,
    bodies: &Arc<Vec<String>>,
    seconds: f64,
) -> anyhow::Result<()> {
    let private = match &args.redis_url {
        Some(_) => None,
        None => Some(PrivateRedis::start()?),
    };
    let redis_url = match (&args.redis_url, &private) {
        (Some(url), _) => url.clone(),
        (None, Some(p)) => p.url(),
        (None, None) => bail!("no Redis to soak against"),
    };
    let batching = args.batching.first().copied().unwrap_or(true);
    let batch_size = if batching { args.batch_size.max(2) } else { 1 };
    let services = Services::start(args, Mode::Redis, batch_size, Some(&redis_url))?;
    let clients = 2 * args.concurrency.iter().copied().max().unwrap_or(128);
    let watched = super::soak::Watched {
        api_pid: services.pid(0)?,
        worker_pid: services.pid(1)?,
        redis_pid: private.as_ref().map(|p| p._proc.0.id()),
        redis_url,
    };
    let auth = services.authorization()?;
    let span = Duration::from_secs_f64(seconds.max(1.0));
    let client = reqwest::Client::builder()
        .default_headers(auth)
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(clients.max(args.soak_max_in_flight as usize))
        .pool_idle_timeout(CLIENT_IDLE)
        .build()?;
    runtime.block_on(wait_until_serving(&client, &services.base, &bodies[0]))?;
    let soak_rate = match args.soak_factor {
        Some(factor) => Some(factor * measure_peak(args, runtime, &client, &services.base, bodies)),
        None => args.soak_rate,
    };
    println!("load average before: {}", super::soak::load_average());
    if let Some(rate) = soak_rate {
        let config = super::open_loop::OpenLoop {
            rate,
            wait_ms: args.soak_wait_ms,
            max_in_flight: usize::try_from(args.soak_max_in_flight).unwrap_or(usize::MAX),
        };
        println!(
            "soak: open loop at {rate:.0} req/s for {seconds} s (wait_ms {}, at most {} in flight), \
             queue cap {}, batching {}",
            config.wait_ms,
            config.max_in_flight,
            args.queue_cap,
            if batching { "on" } else { "off" }
        );
        let tally = runtime.block_on(super::open_loop::run(
            &client,
            &services.base,
            bodies,
            config,
            span,
            &watched,
        ));
        println!("load average after: {}", super::soak::load_average());
        return report_open_loop(&tally, seconds);
    }
    println!(
        "soak: {clients} clients for {seconds} s, queue cap {}, batching {}",
        args.queue_cap,
        if batching { "on" } else { "off" }
    );
    let url = format!("{}/recommend?wait_ms=10000", services.base);
    let statuses = runtime.block_on(super::soak::run(
        &client, &url, bodies, clients, span, &watched,
    ));
    println!("load average after: {}", super::soak::load_average());
    let answers: u64 = statuses.values().sum();
    println!(
        "answers: {answers} ({:.0}/s); {}",
        answers as f64 / seconds,
        describe(&statuses)
    );
    let bad = unexpected(&statuses);
    if bad > 0 {
        bail!("{bad} answers were neither 200, 202 nor 429");
    }
    Ok(())
}

/// The peak of `base` (closed loop at the largest `--concurrency` for `--seconds`, after the
/// warm-up), printed; what `--soak-factor` multiplies.
fn measure_peak(
    args: &ApiBenchArgs,
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    base: &str,
    bodies: &Arc<Vec<String>>,
) -> f64 {
    let concurrency = args.concurrency.iter().copied().max().unwrap_or(128);
    let warmup = Duration::from_secs_f64(args.warmup_seconds.max(0.0));
    let span = Duration::from_secs_f64(args.seconds.max(0.1));
    let sample = runtime.block_on(async {
        load(client, base, bodies, concurrency, warmup).await;
        load(client, base, bodies, concurrency, span).await
    });
    let row = sample.row(Mode::Redis, true, concurrency);
    println!(
        "peak: {:.0} req/s (closed loop, concurrency {concurrency}, {:.0} s; p50 {:.2} ms, p99 {:.2} ms, {} errors, {} rejected)",
        row.requests_per_sec,
        span.as_secs_f64(),
        row.p50_ms,
        row.p99_ms,
        row.errors,
        row.rejected
    );
    row.requests_per_sec
}

/// Answers by status, in words.
fn describe(statuses: &super::soak::Statuses) -> String {
    statuses
        .iter()
        .map(|(s, n)| match s {
            0 => format!("transport errors {n}"),
            s => format!("{s}: {n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Answers other than 200, 202 and 429 (transport errors included).
fn unexpected(statuses: &super::soak::Statuses) -> u64 {
    statuses
        .iter()
        .filter(|(s, _)| !matches!(s, 200 | 202 | 429))
        .map(|(_, n)| n)
        .sum()
}

/// Prints an open-loop soak's figures; fails on an answer other than 200, 202 and 429, a 429
/// without `Retry-After`, or an accepted job that did not end.
fn report_open_loop(t: &super::open_loop::Tally, seconds: f64) -> anyhow::Result<()> {
    let rate = |n: u64| n as f64 / seconds.max(1e-9);
    println!(
        "offered: {} requests ({:.0}/s); sent {} ({:.0}/s), skipped at the in-flight bound {}",
        t.scheduled,
        rate(t.scheduled),
        t.scheduled - t.skipped,
        rate(t.scheduled - t.skipped),
        t.skipped
    );
    println!(
        "answers: {} ({:.0}/s); {}; accepted {} ({:.0}/s)",
        t.answered(),
        rate(t.answered()),
        describe(&t.statuses),
        t.accepted(),
        rate(t.accepted())
    );
    println!(
        "accepted jobs: done {}, failed {}, followed from 202 {}, lost {}, unfinished {}; \
         unreadable answers {}; 429/503 without Retry-After {}",
        t.done, t.failed, t.followed, t.lost, t.unfinished, t.unreadable, t.no_retry_after
    );
    for (kind, (n, first)) in &t.transport {
        println!("transport errors, {kind}: {n} (the first: {first})");
    }
    let bad = unexpected(&t.statuses);
    if bad > 0 {
        bail!("{bad} answers were neither 200, 202 nor 429");
    }
    if t.no_retry_after > 0 {
        bail!("{} refusals came without Retry-After", t.no_retry_after);
    }
    let ended = t.done + t.failed;
    if t.lost > 0 || t.unfinished > 0 || t.unreadable > 0 || ended != t.accepted() {
        bail!(
            "of {} accepted jobs {ended} ended: {} lost, {} unfinished, {} unreadable",
            t.accepted(),
            t.lost,
            t.unfinished,
            t.unreadable
        );
    }
    Ok(())
}

/// Request bodies: windows of real users' histories, in time order.
fn request_pool(args: &ApiBenchArgs) -> anyhow::Result<Vec<String>> {
    let path = args.catalogue.database_path();
    let catalogue = Catalogue::open_read_only(&path)
        .with_context(|| format!("opening the catalogue {}", path.display()))?;
    let mut users: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in catalogue.interactions(None)? {
        users.entry(r.user_id).or_default().push(r.movie_id);
    }
    let (shortest, longest) = (args.min_history as usize, args.max_history as usize);
    let histories: Vec<Vec<i64>> = users
        .into_values()
        .filter(|h| h.len() >= shortest)
        .collect();
    if histories.is_empty() {
        bail!(
            "{} has no user with {shortest} ratings (lower --min-history)",
            path.display()
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    Ok((0..POOL)
        .map(|_| {
            let h = &histories[rng.random_range(0..histories.len())];
            let len = rng.random_range(shortest..=longest.min(h.len()));
            let start = rng.random_range(0..=h.len() - len);
            serde_json::json!({"sequence": &h[start..start + len], "k": args.k}).to_string()
        })
        .collect())
}

/// Shares of the latencies in fixed buckets: a tail made by a timer shows as a bump at its
/// period.
fn histogram(latencies_ms: &[f64]) -> String {
    const EDGES: [f64; 8] = [1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, f64::INFINITY];
    let total = latencies_ms.len().max(1) as f64;
    let mut lower = 0.0;
    EDGES
        .iter()
        .map(|&upper| {
            let n = latencies_ms
                .iter()
                .filter(|&&l| l >= lower && l < upper)
                .count();
            let label = if upper.is_infinite() {
                format!(">={lower}")
            } else {
                format!("<{upper}")
            };
            lower = upper;
            format!("{label} {:.2}%", 100.0 * n as f64 / total)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Latencies and failures of one load run.
struct Sample {
    latencies_ms: Vec<f64>,
    rejected: usize,
    errors: usize,
    elapsed: Duration,
}

impl Sample {
    fn row(mut self, mode: Mode, batching: bool, concurrency: usize) -> Row {
        self.latencies_ms.sort_by(f64::total_cmp);
        Row {
            mode,
            batching,
            concurrency,
            requests: self.latencies_ms.len(),
            rejected: self.rejected,
            errors: self.errors,
            requests_per_sec: self.latencies_ms.len() as f64 / self.elapsed.as_secs_f64(),
            p50_ms: percentile(&self.latencies_ms, 0.5),
            p99_ms: percentile(&self.latencies_ms, 0.99),
            max_depth: None,
            kept: None,
        }
    }
}

/// `concurrency` closed-loop clients, each sending its next request as soon as the previous one
/// is answered, for `span`. Only `200` answers (a finished job) count as successes; a `429`
/// (queue full) counts as rejected.
async fn load(
    client: &reqwest::Client,
    base: &str,
    bodies: &Arc<Vec<String>>,
    concurrency: usize,
    span: Duration,
) -> Sample {
    let url = format!("{base}/recommend?wait_ms=10000");
    let started = Instant::now();
    let deadline = started + span;
    let tasks = (0..concurrency).map(|c| {
        let client = client.clone();
        let url = url.clone();
        let bodies = Arc::clone(bodies);
        async move {
            let mut latencies = Vec::new();
            let mut rejected = 0;
            let mut errors = 0;
            let mut i = c * bodies.len() / concurrency;
            while Instant::now() < deadline {
                let body = bodies[i % bodies.len()].clone();
                i += 1;
                let t0 = Instant::now();
                let status = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        res.bytes().await.is_ok().then_some(status)
                    }
                    Err(_) => None,
                };
                match status {
                    Some(200) => latencies.push(t0.elapsed().as_secs_f64() * 1000.0),
                    Some(429) => rejected += 1,
                    _ => errors += 1,
                }
            }
            (latencies, rejected, errors)
        }
    });
    let results = futures::future::join_all(tasks).await;
    let elapsed = started.elapsed();
    let mut sample = Sample {
        latencies_ms: Vec::new(),
        rejected: 0,
        errors: 0,
        elapsed,
    };
    for (l, r, e) in results {
        sample.latencies_ms.extend(l);
        sample.rejected += r;
        sample.errors += e;
    }
    sample
}

/// Waits until a request is answered with a finished job (the worker is up and serving).
async fn wait_until_serving(
    client: &reqwest::Client,
    base: &str,
    body: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let res = client
            .post(format!("{base}/recommend?wait_ms=2000"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        if let Ok(res) = res
            && res.status().as_u16() == 200
        {
            return Ok(());
        }
        if started.elapsed() > STARTUP {
            bail!("{base} did not answer a recommendation within {STARTUP:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The measured processes: `serve` (plus a `worker` in Redis mode).
struct Services {
    base: String,
    /// The queue name the services share (fresh for each start).
    queue: String,
    /// Their `RECSYS_SECRET` (random for each start): the API is measured with auth on.
    secret: String,
    _procs: Vec<KillOnDrop>,
}

impl Services {
    fn start(
        args: &ApiBenchArgs,
        mode: Mode,
        batch_size: usize,
        redis_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the movierec binary")?;
        let port = free_port()?;
        let queue = format!("movierec:bench:{}", uuid::Uuid::new_v4());
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let command = |sub: &[&str]| {
            let mut cmd = Command::new(&exe);
            cmd.args(sub)
                .env("MOVIELENS_VERSION", args.catalogue.version.name())
                .env("DATABASE_ROOT", &args.catalogue.database_root)
                .env("RECSYS_HOST", "127.0.0.1")
                .env("RECSYS_PORT", port.to_string())
                .env("RECSYS_SECRET", &secret)
                .env("RECSYS_QUEUE", &queue)
                .env("RECSYS_QUEUE_CAP", args.queue_cap.to_string())
                .env("RECSYS_BATCH_SIZE", batch_size.to_string())
                .env("RUST_LOG", "warn")
                .env_remove("RECSYS_WORKER_METRICS_PORT")
                .env_remove("RECSYS_BATCH_DELAY_MS")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            if let Some(ck) = &args.checkpoint {
                cmd.env("RECSYS_CHECKPOINT", ck);
            }
            if let Some(url) = redis_url {
                cmd.env("REDIS_URL", url);
            }
            cmd
        };
        let mut procs = Vec::new();
        match mode {
            Mode::Embedded => {
                procs.push(KillOnDrop(command(&["serve", "--embedded"]).spawn()?));
            }
            Mode::Redis => {
                procs.push(KillOnDrop(command(&["serve"]).spawn()?));
                procs.push(KillOnDrop(command(&["worker"]).spawn()?));
            }
        }
        Ok(Self {
            base: format!("http://127.0.0.1:{port}"),
            queue,
            secret,
            _procs: procs,
        })
    }

    /// The pid of the `i`-th process started (0: the API, 1: the worker).
    fn pid(&self, i: usize) -> anyhow::Result<u32> {
        Ok(self
            ._procs
            .get(i)
            .context("no such process in this deployment")?
            .0
            .id())
    }

    /// The header every request of the load sends.
    fn authorization(&self) -> anyhow::Result<reqwest::header::HeaderMap> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", self.secret).parse()?,
        );
        Ok(headers)
    }
}

/// A `redis-server` of the benchmark's own, without persistence, on a free loopback port.
struct PrivateRedis {
    port: u16,
    _proc: KillOnDrop,
}

impl PrivateRedis {
    fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (install it, or pass --redis-url)")?;
        let server = Self {
            port,
            _proc: KillOnDrop(child),
        };
        let client = redis::Client::open(server.url())?;
        let started = Instant::now();
        loop {
            let pong = client
                .get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return Ok(server);
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("redis-server on port {port} did not answer PING");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}
