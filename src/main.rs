//! The `movierec` command line: parses flags (with `.env` and environment fallbacks) and calls the
//! library. Nothing else lives here.

mod allocator;
mod candle_threads;
mod commands;

use clap::{Parser, Subcommand};

/// movierec: a sequential movie recommender over MovieLens.
#[derive(Debug, Parser)]
#[command(name = "movierec", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One command to try it: dump ml-latest-small and train when missing, then serve the page.
    Demo(commands::demo::DemoArgs),
    /// Download (or read) a MovieLens release and load it into the SQLite catalogue.
    Dump(commands::dump::DumpArgs),
    /// Search the catalogue's titles.
    Search(commands::search::SearchArgs),
    /// Train a model on the catalogue's ratings and write a checkpoint.
    Train(commands::train::TrainArgs),
    /// Evaluate checkpoints and baselines with leave-one-out, full ranking.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Recommend the next movies for a sequence, from a checkpoint.
    Recommend(commands::recommend::RecommendArgs),
    /// Checks a running API's `/health` (exit 0 when healthy); the container HEALTHCHECK.
    Health(commands::health::HealthArgs),
    /// Serve the HTTP API (on Redis, or `--embedded` with an in-process worker).
    Serve(commands::serve::ServeArgs),
    /// Consume recommendation jobs from Redis.
    Worker(commands::worker::WorkerArgs),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    let purging_off = allocator::keep_freed_pages();
    let candle_pool_off = candle_threads::run_elementwise_ops_inline();
    // A missing `.env` is fine: the environment and flags still apply.
    let _ = dotenvy::dotenv();
    movierec::telemetry::init();
    if !purging_off {
        tracing::debug!("mimalloc's option layout not recognised: purging left as it is");
    }
    if !candle_pool_off {
        tracing::debug!("CANDLE_NUM_THREADS is set: candle's element-wise pool left as it is");
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Dump(args) => commands::dump::run(args),
        Command::Search(args) => commands::search::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Recommend(args) => commands::recommend::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Worker(args) => commands::worker::run(args),
        Command::Bench(cmd) => commands::bench::run(cmd),
        Command::Health(args) => commands::health::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks every subcommand's flags for clashes (names, env vars) only when it is
    /// built, so a clash would otherwise surface as a panic at run time.
    #[test]
    fn every_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
