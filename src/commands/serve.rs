//! `movierec serve [--embedded]`: the HTTP API, on the Redis queue or (embedded) with an
//! in-process queue and worker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use movierec::config::{CatalogueSettings, QueueSettings, ServerSettings, WorkerSettings};
use movierec::http::{AppDeps, Application, CataloguePool, HttpMetrics};
use movierec::queue::{JobQueue, MemoryQueue, RedisQueue};
use movierec::worker::{Batcher, JobRunner, WorkerMetrics, run_memory_worker};
use tokio::sync::watch;

use super::worker::{batch_config, load_scorer, redis_config};

/// Arguments of `movierec serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub catalogue: CatalogueSettings,
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub queue: QueueSettings,
    #[command(flatten)]
    pub worker: WorkerSettings,
    /// Run a worker in this process with an in-process queue: no Redis needed.
    #[arg(long)]
    pub embedded: bool,
}

/// Runs `movierec serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let path = args.catalogue.database_path();
    let pool = CataloguePool::open(&path)
        .with_context(|| format!("opening the catalogue {}", path.display()))?;
    let scorer = if args.embedded {
        Some(load_scorer(&args.catalogue, &args.worker)?)
    } else {
        None
    };
    let model = match &scorer {
        Some(scorer) => Some(scorer.info()),
        None => served_model_info(&args),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let registry = prometheus::Registry::new();
        let metrics = HttpMetrics::register(registry.clone())?;
        match scorer {
            None => {
                let queue = RedisQueue::connect(redis_config(&args.queue))?;
                if let Err(e) = queue.ping().await {
                    tracing::warn!(error = %e, "Redis is not answering yet; /health reports 503 until it does");
                }
                let deps = AppDeps {
                    queue: Arc::new(queue),
                    catalogue: pool,
                    metrics,
                    model,
                };
                Application::build(&args.server, deps)?
                    .run_until_stopped()
                    .await?;
            }
            Some(scorer) => {
                let worker_metrics = WorkerMetrics::register(&registry)?;
                let batcher =
                    Batcher::start(scorer, batch_config(&args.worker), Some(worker_metrics.clone()))?;
                let runner = JobRunner::new(batcher, Some(worker_metrics));
                let queue = MemoryQueue::new(
                    args.queue.queue_cap,
                    Duration::from_secs(args.queue.result_ttl_secs.max(1)),
                );
                let jobs = queue
                    .take_receiver()
                    .context("the in-process queue has no receiver")?;
                let (stop, stopped) = watch::channel(false);
                let worker = tokio::spawn(run_memory_worker(
                    queue.clone(),
                    jobs,
                    runner,
                    args.worker.concurrency.max(1),
                    args.worker.max_attempts.max(1),
                    stopped,
                ));
                let deps = AppDeps {
                    queue: Arc::new(queue),
                    catalogue: pool,
                    metrics,
                    model,
                };
                tracing::info!("embedded mode: API and worker in one process, no Redis");
                let served = Application::build(&args.server, deps)?
                    .run_until_stopped()
                    .await;
                let _ = stop.send(true);
                worker.await?;
                served?;
            }
        }
        anyhow::Ok(())
    })?;
    tracing::info!("server stopped");
    Ok(())
}

/// What the workers serve, read from the checkpoint's `config.json` only (the API process never
/// loads weights). `None` when there is no checkpoint: the workers then serve popularity.
fn served_model_info(args: &ServeArgs) -> Option<movierec::recommend::ModelInfo> {
    let dir = args.worker.checkpoint.clone().or_else(|| {
        movierec::model::checkpoint::latest_checkpoint(
            &args.worker.checkpoint_root,
            args.catalogue.version,
        )
    })?;
    match movierec::model::checkpoint::CheckpointConfig::read(&dir) {
        Ok(cfg) => Some(movierec::recommend::model_info(&cfg, &dir)),
        Err(e) => {
            tracing::warn!(checkpoint = %dir.display(), error = %e, "cannot read the checkpoint config");
            None
        }
    }
}
