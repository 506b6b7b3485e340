//! The `movierec` command line: parses flags (with `.env` and environment fallbacks) and calls the
//! library. Nothing else lives here.

mod allocator;
mod candle_threads;
mod commands;

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use movierec::config::WorkerSettings;
use movierec::telemetry::LogFormat;

use commands::failure;
use commands::flags::{typed, typed_of, uses_old_dataset_flag};

/// movierec: a sequential movie recommender over MovieLens.
#[derive(Debug, Parser)]
#[command(name = "movierec", version, about, long_about = None)]
struct Cli {
    /// Log lines on stderr: `json`, `plain`, or `auto` (JSON when stderr is not a terminal).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "RECSYS_LOG_FORMAT",
        default_value = "auto"
    )]
    log_format: LogFormat,
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
    /// Print the folder of an extracted MovieLens release (`MOVIELENS_DATA`, the shared folder
    /// beside the checkout, else a download into the cache), as the tests find it.
    Locate(commands::locate::LocateArgs),
    /// The model registry: the checkpoints of the checkpoint root as named models.
    Models(commands::models::ModelsArgs),
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

fn main() -> ExitCode {
    let candle_pool_off = candle_threads::run_elementwise_ops_inline();
    // A missing `.env` is fine: the environment and flags still apply. A malformed one is not.
    if let Err(e) = movierec::setup::load_env_file() {
        return fail(&e.into());
    }
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Only training and its benchmark gain from keeping freed pages; a long-running service
    // must give memory back after a burst.
    let trains = matches!(
        cli.command,
        Command::Train(_) | Command::Bench(commands::bench::BenchCommand::Model(_))
    );
    let purging_left = trains && !allocator::keep_freed_pages();
    movierec::telemetry::init(cli.log_format);
    if purging_left {
        tracing::debug!("mimalloc's option layout not recognised: purging left as it is");
    }
    if !candle_pool_off {
        tracing::debug!("CANDLE_NUM_THREADS is set: candle's element-wise pool left as it is");
    }
    if uses_old_dataset_flag(std::env::args_os()) {
        tracing::warn!(
            "`--version` for the release is now `--dataset`; the old name goes in the next release"
        );
    }
    let Some((_, sub)) = matches.subcommand() else {
        return fail(&anyhow::anyhow!("no command given: see `movierec --help`"));
    };
    match run(cli.command, sub) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn run(command: Command, matches: &ArgMatches) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Dump(mut args) => {
            args.dataset_typed = typed(matches, "version");
            commands::dump::run(args)
        }
        Command::Search(args) => commands::search::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Recommend(args) => commands::recommend::run(args),
        Command::Serve(mut args) => {
            args.worker_flags_typed = typed_of::<WorkerSettings>(matches);
            commands::serve::run(args)
        }
        Command::Worker(args) => commands::worker::run(args),
        Command::Bench(cmd) => commands::bench::run(cmd),
        Command::Health(args) => commands::health::run(args),
        Command::Locate(args) => commands::locate::run(args),
        Command::Models(args) => commands::models::run(args),
    }
}

/// Prints the error once, with its causes, and gives the failing exit status.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("{}", failure::render(err));
    ExitCode::FAILURE
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
