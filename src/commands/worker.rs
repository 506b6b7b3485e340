//! `movierec worker`: an apalis worker on the Redis queue, with dynamic batching on one model
//! thread. Also home of [`load_scorer`], the one place that decides which model serves.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use movierec::catalogue::Catalogue;
use movierec::config::{CatalogueSettings, QueueSettings, WorkerSettings};
use movierec::queue::{RedisQueue, RedisQueueConfig};
use movierec::worker::{
    BatchConfig, Batcher, JobRunner, PopularityScorer, RedisWorkerConfig, Scorer, WorkerMetrics,
    run_redis_worker,
};
use tokio::sync::watch;

/// Arguments of `movierec worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub catalogue: CatalogueSettings,
    #[command(flatten)]
    pub queue: QueueSettings,
    #[command(flatten)]
    pub worker: WorkerSettings,
    /// Worker name, unique among the processes sharing the queue (default: from the pid).
    #[arg(long, env = "RECSYS_WORKER_NAME")]
    pub name: Option<String>,
    /// Serve this worker's metrics (batch sizes, job latency) at `GET /metrics` on this port.
    #[arg(long, env = "RECSYS_WORKER_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Address of the worker's metrics endpoint.
    #[arg(long, env = "RECSYS_WORKER_METRICS_HOST", default_value = "127.0.0.1")]
    pub metrics_host: String,
}

/// The model that serves recommendations.
///
/// Today: popularity from the catalogue. The checkpoint loader (`recommend::Recommender`) plugs
/// in here: load `settings.checkpoint` (or the newest checkpoint) and return it as the scorer.
pub fn load_scorer(
    catalogue: &CatalogueSettings,
    settings: &WorkerSettings,
) -> anyhow::Result<Arc<dyn Scorer>> {
    let checkpoint = settings.checkpoint.clone().or_else(|| {
        movierec::model::checkpoint::latest_checkpoint(&settings.checkpoint_root, catalogue.version)
    });
    if let Some(dir) = checkpoint {
        let model = movierec::recommend::Recommender::load(&dir)
            .with_context(|| format!("loading the checkpoint {}", dir.display()))?;
        let info = model.info();
        tracing::info!(
            checkpoint = %dir.display(),
            architecture = %info.architecture,
            movies = info.items,
            "serving a trained model"
        );
        return Ok(Arc::new(model));
    }
    tracing::warn!(
        root = %settings.checkpoint_root.display(),
        "no checkpoint for {}: serving popularity from the catalogue (run `movierec train`)",
        catalogue.version
    );
    let path = catalogue.database_path();
    let cat = Catalogue::open_read_only(&path)
        .with_context(|| format!("opening the catalogue {}", path.display()))?;
    let scorer = PopularityScorer::from_catalogue(&cat, catalogue.version.name())?;
    tracing::info!(
        movies = scorer.info().items,
        "serving the popularity model (no checkpoint)"
    );
    Ok(Arc::new(scorer))
}

/// The batcher settings of `settings`.
pub fn batch_config(settings: &WorkerSettings) -> BatchConfig {
    BatchConfig {
        max_batch: settings.batch_size.max(1),
        max_wait: Duration::from_micros(settings.batch_wait_us),
        delay: Duration::from_millis(settings.batch_delay_ms),
    }
}

/// The Redis queue configuration of `settings`.
pub fn redis_config(settings: &QueueSettings) -> RedisQueueConfig {
    RedisQueueConfig {
        url: settings.redis_url.clone(),
        queue: settings.queue_name.clone(),
        cap: settings.queue_cap,
        result_ttl: Duration::from_secs(settings.result_ttl_secs.max(1)),
        timeout: Duration::from_millis(settings.redis_timeout_ms.max(1)),
        heartbeat: Duration::from_secs(settings.heartbeat_secs.max(1)),
    }
}

/// A watch that turns true on SIGTERM or Ctrl-C.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal: finishing in-flight jobs");
        let _ = tx.send(true);
        // Keep the sender alive so receivers do not read a closed channel as a second signal.
        std::future::pending::<()>().await;
    });
    rx
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `movierec worker`.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let scorer = load_scorer(&args.catalogue, &args.worker)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let registry = prometheus::Registry::new();
        let metrics = WorkerMetrics::register(&registry)?;
        let metrics_server = match args.metrics_port {
            Some(port) => {
                let (port, server) = movierec::http::metrics::metrics_server(
                    &args.metrics_host,
                    port,
                    registry.clone(),
                )?;
                tracing::info!(port, "worker metrics at /metrics");
                let handle = server.handle();
                tokio::spawn(server);
                Some(handle)
            }
            None => None,
        };
        let batcher = Batcher::start(scorer, batch_config(&args.worker), Some(metrics.clone()))?;
        let runner = JobRunner::new(batcher, Some(metrics));
        let queue = RedisQueue::connect(redis_config(&args.queue))?;
        let name = args.name.clone().unwrap_or_else(|| {
            let tag = uuid::Uuid::new_v4().simple().to_string();
            format!("movierec-{}-{}", std::process::id(), &tag[..8])
        });
        let config = RedisWorkerConfig {
            name,
            concurrency: args.worker.concurrency.max(1),
            fetch_batch: args.worker.batch_size.max(1),
            max_attempts: args.worker.max_attempts.max(1),
        };
        run_redis_worker(queue, runner, config, shutdown_signal()).await;
        if let Some(handle) = metrics_server {
            handle.stop(true).await;
        }
        anyhow::Ok(())
    })?;
    tracing::info!("worker stopped");
    Ok(())
}
