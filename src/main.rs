//! The `movierec` command line: parses flags (with `.env` and environment fallbacks) and calls the
//! library. Nothing else lives here.

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
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    // A missing `.env` is fine: the environment and flags still apply.
    let _ = dotenvy::dotenv();
    movierec::telemetry::init();
    let cli = Cli::parse();
    match cli.command {
        Command::Dump(args) => commands::dump::run(args),
        Command::Search(args) => commands::search::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Recommend(args) => commands::recommend::run(args),
        Command::Bench(cmd) => commands::bench::run(cmd),
    }
}
