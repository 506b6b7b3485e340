//! `movierec models list`: the checkpoints under the checkpoint root, newest first, with their
//! type, release and the metrics recorded when they were trained.

use movierec::config::{CheckpointSettings, MovieLensVersion};
use movierec::registry;

/// Arguments of `movierec models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// What `movierec models` does.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Every checkpoint of the checkpoint root, newest first.
    List {
        #[command(flatten)]
        checkpoints: CheckpointSettings,
        /// Only this release's.
        #[arg(long)]
        dataset: Option<MovieLensVersion>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `movierec models`.
pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    match args.command {
        ModelsCommand::List {
            checkpoints,
            dataset,
            json,
        } => {
            let entries = registry::list(&checkpoints.checkpoint_root, dataset);
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(());
            }
            if entries.is_empty() {
                println!(
                    "no checkpoints under {}: train one with `movierec train`",
                    checkpoints.checkpoint_root.display()
                );
                return Ok(());
            }
            let metric = |m: Option<f64>| m.map_or_else(|| "—".to_string(), |v| format!("{v:.4}"));
            println!(
                "{:<44} {:<11} {:<16} {:>12} {:>11} {:>10}",
                "name", "model", "dataset", "created", "valid NDCG", "test NDCG"
            );
            for e in entries {
                println!(
                    "{:<44} {:<11} {:<16} {:>12} {:>11} {:>10}",
                    e.name,
                    e.architecture,
                    e.dataset.name(),
                    e.created_at,
                    metric(e.valid_ndcg10),
                    metric(e.test_ndcg10)
                );
            }
            Ok(())
        }
    }
}
