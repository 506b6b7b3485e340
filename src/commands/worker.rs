//! `movierec worker`: an apalis worker on the Redis queue, with dynamic batching on one model
//! thread. The model and the machinery around it come from [`movierec::setup`].

use std::sync::Arc;

use movierec::config::{CatalogueSettings, ModelSettings, QueueSettings, WorkerSettings};
use movierec::queue::{LiveSetStore, RedisQueue};
use movierec::registry::specs;
use movierec::setup::{ModelLoader, follow_promotions, initial_set, redis_config};
use movierec::worker::{
    JobRunner, LiveModels, ModelSet, RedisWorkerConfig, WorkerMetrics, run_redis_worker,
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
    pub model: ModelSettings,
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

/// A watch that turns true on SIGTERM or Ctrl-C.
fn shutdown_signal() -> watch::Receiver<bool> {
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

/// The set a worker starts with: the one promoted through Redis when there is one and it loads,
/// else the configured one (`RECSYS_MODELS`, else the newest checkpoint).
async fn starting_set(
    store: &LiveSetStore,
    args: &WorkerArgs,
    loader: &Arc<ModelLoader>,
) -> anyhow::Result<ModelSet> {
    match store.read().await {
        Ok(Some(promoted)) => {
            let task_loader = Arc::clone(loader);
            let task_set = promoted.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                task_loader
                    .load(&task_set, None)
                    .map_err(anyhow::Error::from)
            })
            .await?;
            match loaded {
                Ok(set) => {
                    tracing::info!(
                        models = %specs::Display(&promoted),
                        "serving the set promoted through Redis (it wins over RECSYS_MODELS)"
                    );
                    return Ok(set);
                }
                Err(e) => tracing::error!(
                    models = %specs::Display(&promoted),
                    error = format!("{e:#}"),
                    "the promoted set does not load here; serving the configured one"
                ),
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(
            error = %e,
            "cannot read the promoted set from Redis; serving the configured one"
        ),
    }
    let loader = Arc::clone(loader);
    let model = args.model.clone();
    let catalogue = args.catalogue.clone();
    tokio::task::spawn_blocking(move || {
        initial_set(&model, &catalogue, &loader).map_err(anyhow::Error::from)
    })
    .await?
}

/// Runs `movierec worker`.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
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
        let queue = RedisQueue::connect(redis_config(&args.queue))?;
        let store = LiveSetStore::new(&queue);
        let loader = Arc::new(ModelLoader::new(
            &args.model.checkpoints.checkpoint_root,
            &args.worker,
            Some(metrics.clone()),
        )?);
        let live = LiveModels::new(starting_set(&store, &args, &loader).await?);
        let runner = JobRunner::new(live.clone(), Some(metrics));
        let shutdown = shutdown_signal();
        let follower = tokio::spawn(follow_promotions(store, live, loader, shutdown.clone()));
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
        run_redis_worker(queue, runner, config, shutdown).await;
        follower.abort();
        if let Some(handle) = metrics_server {
            handle.stop(true).await;
        }
        anyhow::Ok(())
    })?;
    tracing::info!("worker stopped");
    Ok(())
}
