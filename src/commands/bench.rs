//! `movierec bench ...`: benchmarks that print figures.

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {}

/// Runs one benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {}
}
