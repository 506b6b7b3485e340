//! `movierec serve [--embedded]`: the HTTP API, on the Redis queue or (embedded) with an
//! in-process queue and worker. The model and the machinery around it come from
//! [`movierec::setup`].

use std::sync::Arc;

use anyhow::Context;
use movierec::config::{
    CatalogueSettings, ModelSettings, QueueSettings, ServerSettings, WorkerSettings,
};
use movierec::http::{AppDeps, Application, CataloguePool, HttpMetrics, ModelReadiness};
use movierec::queue::{JobQueue, LiveSetStore, RedisQueue, WorkerRegistry};
use movierec::recommend::Serving;
use movierec::setup::{
    EmbeddedWorker, LocalControl, ModelChoice, ModelLoader, RedisControl, choose_model,
    configured_specs, describe_model, initial_set, redis_config,
};
use movierec::worker::{JobRunner, LiveModels, WorkerMetrics};

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
    let checkpoint_root = args.model.checkpoints.checkpoint_root.clone();
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
        if !args.embedded {
            let serving = describe_main_model(&args)?;
            tracing::info!("readiness (/health/ready) follows what the workers announce in Redis");
            let queue = RedisQueue::connect(redis_config(&args.queue))?;
            if let Err(e) = queue.ping().await {
                tracing::warn!(error = %e, "Redis is not answering yet; /health reports 503 until it does");
            }
            // Promotions are checked by loading the model here before the workers are told.
            let loader = Arc::new(ModelLoader::for_checks(&checkpoint_root));
            let control = RedisControl::new(
                LiveSetStore::new(&queue),
                WorkerRegistry::new(&queue),
                loader,
            );
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
                checkpoint_root: Some(checkpoint_root),
                control: Arc::new(control),
            };
            Application::build(&args.server, deps)
                .with_context(listen_hint)?
                .run_until_stopped()
                .await?;
            return anyhow::Ok(());
        }
        let worker_metrics = WorkerMetrics::register(&registry)?;
        let loader = Arc::new(ModelLoader::new(
            &checkpoint_root,
            &args.worker,
            Some(worker_metrics.clone()),
        )?);
        let set = {
            let (model, catalogue, loader) =
                (args.model.clone(), args.catalogue.clone(), Arc::clone(&loader));
            tokio::task::spawn_blocking(move || {
                initial_set(&model, &catalogue, &loader).map_err(anyhow::Error::from)
            })
            .await??
        };
        let serving = set.main_arm().serving.clone();
        report_readiness(&serving);
        let live = LiveModels::new(set);
        let runner = JobRunner::new(live.clone(), Some(worker_metrics));
        let embedded = EmbeddedWorker::start(runner, &args.queue, &args.worker)?;
        let deps = AppDeps {
            queue: embedded.queue(),
            catalogue: pool,
            metrics,
            model: Some(serving.model.clone()),
            readiness: ModelReadiness::Local(live.clone()),
            checkpoint_root: Some(checkpoint_root),
            control: Arc::new(LocalControl::new(live, loader)),
        };
        tracing::info!("embedded mode: API and worker in one process, no Redis");
        let served = match Application::build(&args.server, deps).with_context(listen_hint) {
            Ok(app) => app.run_until_stopped().await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        embedded.stop().await?;
        served?;
        anyhow::Ok(())
    })?;
    tracing::info!("server stopped");
    Ok(())
}

/// What the Redis workers are configured to serve mainly (the heaviest of `RECSYS_MODELS`, else
/// the model [`choose_model`] picks), read from its `config.json` without loading weights: what
/// the demo page shows.
fn describe_main_model(args: &ServeArgs) -> anyhow::Result<Serving> {
    let choice = match configured_specs(&args.model)? {
        Some(specs) => {
            let mut main = &specs[0];
            for s in &specs {
                if s.weight > main.weight {
                    main = s;
                }
            }
            ModelChoice::Checkpoint(args.model.checkpoints.checkpoint_root.join(&main.name))
        }
        None => choose_model(args.catalogue.version, &args.model)?,
    };
    Ok(describe_model(&choice, &args.catalogue)?)
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
