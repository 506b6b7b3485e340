//! `movierec recommend`.

use std::path::PathBuf;

use movierec::model::PrecisionChoice;
use movierec::recommend::RecommendRequest;
use movierec::setup::load_checkpoint;

/// Arguments of `movierec recommend`.
#[derive(Debug, clap::Args)]
pub struct RecommendArgs {
    /// Checkpoint directory (one that `movierec train` wrote).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The history, MovieLens ids oldest first, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub sequence: Vec<i64>,
    /// Movies never to recommend, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub avoid: Vec<i64>,
    /// How many movies.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Print JSON instead of a list.
    #[arg(long)]
    pub json: bool,
    /// What the network's dense layers compute in.
    #[arg(long, env = "RECSYS_PRECISION", value_enum, default_value_t = PrecisionChoice::Auto)]
    pub precision: PrecisionChoice,
}

/// Runs `movierec recommend`.
pub fn run(args: RecommendArgs) -> anyhow::Result<()> {
    let recommender = load_checkpoint(&args.checkpoint, args.precision.resolve()?)?;
    let answer = recommender.recommend(&RecommendRequest {
        sequence: args.sequence,
        avoided: args.avoid,
        k: args.k,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    if !answer.unknown_ids.is_empty() {
        eprintln!("unknown ids skipped: {:?}", answer.unknown_ids);
    }
    if answer.fallback {
        eprintln!("no known movie in the sequence: most popular movies instead");
    }
    for (rank, item) in answer.items.iter().enumerate() {
        println!("{:>3}. {:>7}  {:.4}", rank + 1, item.movie_id, item.score);
    }
    Ok(())
}
