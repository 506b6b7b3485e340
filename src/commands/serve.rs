//! `movierec serve [--embedded]`: the HTTP API, on the Redis queue or (embedded) with an
//! in-process queue and worker. The model and the machinery around it come from
//! [`movierec::setup`].

use std::sync::Arc;

use anyhow::Context;
use movierec::config::{
    CatalogueSettings, ModelSettings, QueueSettings, ServerSettings, WorkerSettings,
};
use movierec::http::{AppDeps, Application, CataloguePool, HttpMetrics, ModelReadiness};
use movierec::queue::{JobQueue, RedisQueue, WorkerRegistry};
use movierec::recommend::Serving;
use movierec::setup::{
    EmbeddedWorker, ModelChoice, choose_model, describe_model, load_model, redis_config,
    start_runner,
};
use movierec::worker::WorkerMetrics;

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
    pub model: ModelSettings,
    /// Run a worker in this process with an in-process queue: no Redis needed.
    #[arg(long)]
    pub embedded: bool,
    #[command(flatten, next_help_heading = "Embedded worker (only with --embedded)")]
    pub worker: WorkerSettings,
    /// The embedded worker's flags that were typed on the command line.
    #[arg(skip)]
    pub worker_flags_typed: Vec<String>,
}

/// Runs `movierec serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if !args.embedded && !args.worker_flags_typed.is_empty() {
        anyhow::bail!(
            "the embedded worker's flags ({}) do nothing without --embedded: add --embedded, or \
             give them to `movierec worker`",
            args.worker_flags_typed.join(", ")
        );
    }
    let pool = CataloguePool::open(&args.catalogue.database_path())?;
    let choice = choose_model(args.catalogue.version, &args.model)?;
    let served_checkpoint = match &choice {
        ModelChoice::Checkpoint(dir) => Some(dir.clone()),
        ModelChoice::Popularity(_) => None,
    };
    let checkpoint_root = Some(args.model.checkpoints.checkpoint_root.clone());
    let (loaded, serving) = if args.embedded {
        let loaded = load_model(&choice, &args.catalogue)?;
        let serving = loaded.serving.clone();
        (Some(loaded), serving)
    } else {
        (None, describe_model(&choice, &args.catalogue)?)
    };
    if args.embedded {
        report_readiness(&serving);
    } else {
        tracing::info!("readiness (/health/ready) follows what the workers announce in Redis");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let registry = prometheus::Registry::new();
        let metrics = HttpMetrics::register(registry.clone())?;
        let listen = format!("{}:{}", args.server.host, args.server.port);
        let listen_hint = || {
            format!(
                "cannot listen on {listen} (is another process on that port? choose another with \
                 --port or RECSYS_PORT)"
            )
        };
        match loaded {
            None => {
                let queue = RedisQueue::connect(redis_config(&args.queue))?;
                if let Err(e) = queue.ping().await {
                    tracing::warn!(error = %e, "Redis is not answering yet; /health reports 503 until it does");
                }
                // What the workers serve, and so readiness, they announce in Redis themselves.
                let readiness = ModelReadiness::Workers {
                    registry: Box::new(WorkerRegistry::new(&queue)),
                    allow_fallback: args.model.allow_popularity_fallback,
                };
                let deps = AppDeps {
                    queue: Arc::new(queue),
                    catalogue: pool,
                    metrics,
                    model: Some(serving.model),
                    readiness,
                    checkpoint_root,
                    served_checkpoint,
                };
                Application::build(&args.server, deps)
                    .with_context(listen_hint)?
                    .run_until_stopped()
                    .await?;
            }
            Some(loaded) => {
                let worker_metrics = WorkerMetrics::register(&registry)?;
                let runner = start_runner(loaded.scorer, &args.worker, Some(worker_metrics))?;
                let embedded = EmbeddedWorker::start(runner, &args.queue, &args.worker)?;
                let deps = AppDeps {
                    queue: embedded.queue(),
                    catalogue: pool,
                    metrics,
                    model: Some(serving.model.clone()),
                    readiness: ModelReadiness::Local(serving),
                    checkpoint_root,
                    served_checkpoint,
                };
                tracing::info!("embedded mode: API and worker in one process, no Redis");
                let served = match Application::build(&args.server, deps).with_context(listen_hint)
                {
                    Ok(app) => app.run_until_stopped().await.map_err(anyhow::Error::from),
                    Err(e) => Err(e),
                };
                embedded.stop().await?;
                served?;
            }
        }
        anyhow::Ok(())
    })?;
    tracing::info!("server stopped");
    Ok(())
}

/// Logs what is served; a popularity fallback nobody asked for is a warning, once more here
/// because it makes the service not ready.
fn report_readiness(serving: &Serving) {
    if serving.ready() {
        tracing::info!(
            architecture = %serving.model.architecture,
            checkpoint = %serving.model.checkpoint,
            source = ?serving.source,
            "serving"
        );
    } else {
        tracing::warn!(
            architecture = %serving.model.architecture,
            source = ?serving.source,
            "not ready: popularity stands in for a missing checkpoint"
        );
    }
}
