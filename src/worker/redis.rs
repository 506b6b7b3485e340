//! The apalis worker that consumes the Redis queue.
//!
//! - Wake-ups come from Redis pub/sub (the API announces every push) and from finished jobs;
//!   [`WakeStrategy`] makes sure no wake-up is used up by a fetch that began before it, so the
//!   steady state never waits for a timer. A 1 s interval remains as a safety net for scheduled
//!   retries and re-queued orphans, which nobody announces.
//! - A finished job's result is written by the handler itself ([`RedisQueue::finish`]: compact,
//!   under its own key, announced to waiting callers in the same step), not left to apalis'
//!   record, which is written only when apalis' loop next runs. apalis keeps only a tiny value.
//! - Bad input is aborted (apalis marks it `Killed`, no retry); a transient model error is
//!   retried by apalis with backoff until `max_attempts`, then aborted with its error.
//! - A backend error (Redis outage) stops the apalis worker; this loop starts a fresh one, under
//!   a new name, once Redis answers again.
//! - On shutdown the worker stops fetching, finishes its in-flight jobs and acknowledges them.
//! - Every heartbeat, and at once after a promotion, it announces what it serves in the
//!   [`WorkerRegistry`] (so the API can say whether the service is ready and which models are
//!   live), and withdraws that when it stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use apalis::prelude::{
    AbortError, Attempt, BackendExt, BoxDynError, Data, TaskId, WorkerBuilder, WorkerBuilderExt,
};
use apalis_redis::RedisStorage;
use futures::StreamExt;
use futures::channel::mpsc;
use tokio::sync::{Notify, watch};

use super::wake::{CountedConnection, WakeStrategy};
use super::{JobError, JobRunner, LiveModels};
use crate::queue::{JobOutput, RecommendJob, RedisQueue, WorkerPresence, WorkerRegistry};

/// Heartbeats an announcement outlives its last refresh (as apalis presumes a worker dead after
/// three missed heartbeats).
const PRESENCE_HEARTBEATS: u32 = 3;

/// Safety-net poll for jobs that arrive without a pub/sub message (retries, orphans).
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// How a Redis worker process runs.
#[derive(Debug, Clone)]
pub struct RedisWorkerConfig {
    /// Worker name, unique among the processes sharing the queue.
    pub name: String,
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// Jobs fetched from Redis per round trip.
    pub fetch_batch: usize,
    /// Attempts a job with a transient error gets before it fails for good.
    pub max_attempts: u32,
}

#[derive(Clone)]
struct HandlerCtx {
    runner: JobRunner,
    /// Notified when a job finishes, so apalis' loop is woken to record it.
    finished: Arc<Notify>,
    queue: RedisQueue,
    max_attempts: u32,
    /// Jobs finished for good (done, bad input, or out of attempts), announced every heartbeat.
    jobs_done: Arc<AtomicU64>,
}

async fn handle(
    job: RecommendJob,
    attempt: Attempt,
    id: TaskId,
    ctx: Data<Arc<HandlerCtx>>,
) -> Result<(), BoxDynError> {
    let outcome = ctx.runner.run(&job).await;
    let last_try = attempt.current() >= ctx.max_attempts.max(1) as usize;
    let answer = match outcome {
        Ok(out) => Ok(Ok(out)),
        Err(JobError::BadInput(e)) => Err(AbortError::new(e)),
        Err(JobError::Transient(e)) if last_try => Err(AbortError::new(format!(
            "{e} (gave up after {} attempts)",
            attempt.current()
        ))),
        Err(JobError::Transient(e)) => {
            tracing::warn!(job = %id, attempt = attempt.current(), error = %e, "job failed; apalis will retry");
            Ok(Err(e))
        }
    };
    let result = match answer {
        // Final: stored and announced here; apalis records only that it is over.
        Ok(Ok(out)) => {
            finish(&ctx, &id, &Ok(out)).await?;
            Ok(())
        }
        Err(abort) => {
            finish(&ctx, &id, &Err(abort.to_string())).await?;
            Err(abort.into())
        }
        // Not final: apalis schedules the retry.
        Ok(Err(e)) => Err(e.into()),
    };
    // Last, so that apalis' record of this job is queued when its loop is woken for it.
    ctx.finished.notify_one();
    result
}

/// Stores a final outcome and wakes its waiting callers; a failure to store it becomes a
/// transient error, so apalis runs the job again rather than lose its result.
async fn finish(
    ctx: &HandlerCtx,
    id: &TaskId,
    outcome: &Result<JobOutput, String>,
) -> Result<(), BoxDynError> {
    let stored = match outcome {
        Ok(out) => Ok(out.clone()),
        Err(e) => Err(e.strip_prefix("AbortError: ").unwrap_or(e).to_owned()),
    };
    match ctx.queue.finish(&id.to_string(), &stored).await {
        Ok(_) => {
            ctx.jobs_done.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            ctx.finished.notify_one();
            tracing::warn!(job = %id, error = %e, "could not store the result; apalis will retry");
            Err(format!("could not store the result: {e}").into())
        }
    }
}

/// Runs the worker until `shutdown` turns true (or its sender drops), restarting it after
/// backend errors. Finishes in-flight jobs before it returns.
pub async fn run_redis_worker(
    queue: RedisQueue,
    runner: JobRunner,
    config: RedisWorkerConfig,
    shutdown: watch::Receiver<bool>,
) {
    let purge = tokio::spawn(purge_loop(queue.clone(), shutdown.clone()));
    let jobs_done = Arc::new(AtomicU64::new(0));
    let presence = tokio::spawn(presence_loop(
        WorkerRegistry::new(&queue),
        config.name.clone(),
        runner.live().clone(),
        jobs_done.clone(),
        queue.config().heartbeat,
        shutdown.clone(),
    ));
    let ctx = Arc::new(HandlerCtx {
        runner,
        finished: Arc::new(Notify::new()),
        queue: queue.clone(),
        max_attempts: config.max_attempts,
        jobs_done,
    });
    let mut generation = 0usize;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let name = format!("{}-{generation}", config.name);
        let apalis_cfg = queue.config().apalis_config(config.fetch_batch);
        let wake = wakeups(
            queue.client().clone(),
            queue.config().available_channel(),
            ctx.finished.clone(),
        );
        let conn = CountedConnection::new(queue.connection());
        let strategy = WakeStrategy::new(wake, conn.counts());
        let storage = RedisStorage::<RecommendJob, _>::new(conn)
            .with_config(apalis_cfg)
            .poll_with_strategy(strategy);
        let worker = WorkerBuilder::new(name.as_str())
            .backend(storage)
            .concurrency(config.concurrency.max(1))
            .data(ctx.clone())
            .build(handle);
        let mut stop = shutdown.clone();
        let signal = async move {
            let _ = stop.wait_for(|s| *s).await;
            Ok::<(), std::io::Error>(())
        };
        tracing::info!(worker = %name, concurrency = config.concurrency, "worker started");
        match worker.run_until(signal).await {
            Ok(()) => break,
            Err(e) if *shutdown.borrow() => {
                tracing::warn!(worker = %name, error = %e, "worker stopped with an error");
                break;
            }
            Err(e) => {
                tracing::warn!(worker = %name, error = %e, "worker failed; restarting in 1 s");
                let mut stop = shutdown.clone();
                let _ = tokio::time::timeout(Duration::from_secs(1), stop.wait_for(|s| *s)).await;
                generation += 1;
            }
        }
    }
    purge.abort();
    // The presence loop withdraws the announcement once the shutdown begins; give it the time of
    // one Redis call to do so.
    let _ = tokio::time::timeout(queue.config().timeout, presence).await;
    tracing::info!("worker drained");
}

/// What this worker serves now, as it announces it.
fn presence(name: &str, live: &LiveModels, jobs_done: &AtomicU64) -> WorkerPresence {
    let set = live.current();
    WorkerPresence {
        name: name.to_owned(),
        serving: set.main_arm().serving.clone(),
        jobs_done: jobs_done.load(Ordering::Relaxed),
        models: set.specs(),
        model_error: live.error(),
    }
}

/// Announces what this worker serves every `heartbeat`, and at once after a promotion, until
/// shutdown, then withdraws it, so that the API stops counting this worker as soon as it stops
/// taking jobs.
async fn presence_loop(
    registry: WorkerRegistry,
    name: String,
    live: LiveModels,
    jobs_done: Arc<AtomicU64>,
    heartbeat: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let lifetime = heartbeat * PRESENCE_HEARTBEATS;
    let mut failing = false;
    loop {
        let presence = presence(&name, &live, &jobs_done);
        match registry.announce(&presence, lifetime).await {
            Ok(()) if failing => {
                tracing::info!("worker presence announced again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot announce this worker; the API will count it as gone");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            () = live.changed() => {},
            () = tokio::time::sleep(heartbeat) => {},
        }
    }
    if let Err(e) = registry.withdraw(&name).await {
        tracing::debug!(error = %e, "could not withdraw the worker's presence; it expires");
    }
}

/// Purges expired results now and then.
async fn purge_loop(queue: RedisQueue, mut shutdown: watch::Receiver<bool>) {
    let every =
        (queue.config().result_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        match queue.purge_expired(1000).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "expired results purged"),
            Err(e) => tracing::debug!(error = %e, "purge failed"),
        }
        if tokio::time::timeout(every, shutdown.wait_for(|s| *s))
            .await
            .is_ok()
        {
            return;
        }
    }
}

/// A stream that yields whenever apalis announces a new job, a job finishes (apalis must write
/// its record), after each (re)subscription (announcements may have been missed), and every
/// [`FALLBACK_POLL`] (scheduled retries and re-queued orphans are not announced).
fn wakeups(client: redis::Client, channel: String, finished: Arc<Notify>) -> mpsc::Receiver<()> {
    let (mut tx, rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FALLBACK_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let pubsub =
                match tokio::time::timeout(Duration::from_secs(1), client.get_async_pubsub()).await
                {
                    Ok(Ok(mut p)) => match p.subscribe(&channel).await {
                        Ok(()) => Some(p),
                        Err(_) => None,
                    },
                    _ => None,
                };
            match pubsub {
                Some(p) => {
                    if !poke(&mut tx) {
                        return;
                    }
                    let mut messages = p.into_on_message();
                    loop {
                        tokio::select! {
                            m = messages.next() => if m.is_none() { break },
                            () = finished.notified() => {},
                            _ = tick.tick() => {},
                        }
                        if !poke(&mut tx) {
                            return;
                        }
                    }
                }
                None => {
                    tick.tick().await;
                    if !poke(&mut tx) {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Signals the worker; false once it has gone. A full channel already holds a wake-up that the
/// worker has not taken yet, which serves this one too.
fn poke(tx: &mut mpsc::Sender<()>) -> bool {
    match tx.try_send(()) {
        Ok(()) => true,
        Err(e) => !e.is_disconnected(),
    }
}
