//! `movierec models list`: the checkpoints under the checkpoint root, newest first, with their
//! type, release and the metrics recorded for them, and which ones the Redis workers serve with
//! what weight. `movierec models promote`: makes one live on every Redis worker.

use std::sync::Arc;

use movierec::config::{CheckpointSettings, MovieLensVersion, QueueSettings};
use movierec::queue::{LiveSetStore, RedisQueue, WorkerRegistry};
use movierec::registry::control::{LiveView, ModelControl};
use movierec::registry::{self, ModelEntry};
use movierec::setup::{ModelLoader, RedisControl, redis_config};
use serde::Serialize;

/// Arguments of `movierec models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// What `movierec models` does.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Every checkpoint of the checkpoint root, newest first, and which ones the Redis workers
    /// serve with what weight (when Redis answers).
    List {
        #[command(flatten)]
        checkpoints: CheckpointSettings,
        #[command(flatten)]
        queue: QueueSettings,
        /// Only this release's.
        #[arg(long)]
        dataset: Option<MovieLensVersion>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a model live on every worker of the Redis queue: it is loaded here first (a model
    /// that does not load is not promoted), then stored in Redis and announced; each worker
    /// loads it and switches, finishing the batches it started on the old set. A worker that
    /// cannot load it keeps its models and reports the error in `GET /models`. For
    /// `serve --embedded`, use `POST /models/promote`.
    Promote {
        /// The model, as `movierec models list` names it.
        name: String,
        /// Its share of the traffic, 0 to 1: 1 makes it the only model; less keeps the others
        /// in proportion in the rest; 0 serves it only to requests that name it.
        #[arg(long, default_value_t = 1.0)]
        weight: f64,
        #[command(flatten)]
        checkpoints: CheckpointSettings,
        #[command(flatten)]
        queue: QueueSettings,
    },
}

/// One model as `models list --json` prints it.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    entry: ModelEntry,
    /// Whether a worker serves it; `null` when Redis did not answer.
    live: Option<bool>,
    /// Its share of the split's traffic; `null` when Redis did not answer.
    weight: Option<f64>,
}

/// The Redis side of the queue of `queue`, over the checkpoints of `checkpoints`.
fn redis_control(
    checkpoints: &CheckpointSettings,
    queue: &QueueSettings,
) -> anyhow::Result<RedisControl> {
    let queue = RedisQueue::connect(redis_config(queue))?;
    Ok(RedisControl::new(
        LiveSetStore::new(&queue),
        WorkerRegistry::new(&queue),
        Arc::new(ModelLoader::for_checks(&checkpoints.checkpoint_root)),
    ))
}

/// What the workers serve, or why that is unknown.
fn live_view(checkpoints: &CheckpointSettings, queue: &QueueSettings) -> Result<LiveView, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let control = redis_control(checkpoints, queue).map_err(|e| format!("{e:#}"))?;
        control.live().await.map_err(|e| e.to_string())
    })
}

/// Promotes `name` to `weight` through Redis and prints the new set.
fn promote(
    name: String,
    weight: f64,
    checkpoints: &CheckpointSettings,
    queue: &QueueSettings,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let set = redis_control(checkpoints, queue)?
            .promote(name, weight)
            .await?;
        println!("promoted; the workers now serve:");
        for spec in set {
            println!("  {:<44} weight {:.3}", spec.name, spec.weight);
        }
        anyhow::Ok(())
    })
}

/// Prints the registry, with what the workers serve when Redis answers.
fn list(
    checkpoints: &CheckpointSettings,
    queue: &QueueSettings,
    dataset: Option<MovieLensVersion>,
    json: bool,
) -> anyhow::Result<()> {
    let entries = registry::list(&checkpoints.checkpoint_root, dataset);
    let live = live_view(checkpoints, queue);
    let total: f64 = live
        .as_ref()
        .map(|l| l.models.iter().map(|m| m.weight).sum())
        .unwrap_or(0.0);
    let listed: Vec<Listed> = entries
        .into_iter()
        .map(|entry| {
            let spec = live
                .as_ref()
                .ok()
                .map(|l| l.models.iter().find(|m| m.name == entry.name));
            Listed {
                live: spec.map(|s| s.is_some()),
                weight: spec.map(|s| match s {
                    Some(s) if total > 0.0 => s.weight / total,
                    _ => 0.0,
                }),
                entry,
            }
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    if listed.is_empty() {
        println!(
            "no checkpoints under {}: train one with `movierec train`",
            checkpoints.checkpoint_root.display()
        );
        return Ok(());
    }
    let metric = |m: Option<f64>| m.map_or_else(|| "—".to_string(), |v| format!("{v:.4}"));
    println!(
        "{:<44} {:<11} {:<16} {:>12} {:>11} {:>10} {:>7}",
        "name", "model", "dataset", "created", "valid NDCG", "test NDCG", "weight"
    );
    for l in &listed {
        let e = &l.entry;
        let weight = match (l.live, l.weight) {
            (Some(true), Some(w)) => format!("{w:.3}"),
            (Some(false), _) => "—".to_string(),
            _ => "?".to_string(),
        };
        println!(
            "{:<44} {:<11} {:<16} {:>12} {:>11} {:>10} {:>7}",
            e.name,
            e.architecture,
            e.dataset.name(),
            e.created_at,
            metric(e.valid_ndcg10),
            metric(e.test_ndcg10),
            weight
        );
    }
    match &live {
        Ok(view) => {
            for error in &view.errors {
                println!("promotion refused: {error}");
            }
        }
        Err(e) => println!(
            "weights unknown (Redis at {} did not answer: {e})",
            queue.redis_url
        ),
    }
    Ok(())
}

/// Runs `movierec models`.
pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    match args.command {
        ModelsCommand::List {
            checkpoints,
            queue,
            dataset,
            json,
        } => list(&checkpoints, &queue, dataset, json),
        ModelsCommand::Promote {
            name,
            weight,
            checkpoints,
            queue,
        } => promote(name, weight, &checkpoints, &queue),
    }
}
