//! `movierec bench ...`: benchmarks that print figures.

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Model training throughput and recommend latency (see `bench_model`).
    Model(super::bench_model::ModelBenchArgs),
    /// Dump speed and peak memory (ml-latest-small and a generated ml-25m-sized release), and
    /// title search latency.
    Catalogue(super::bench_catalogue::CatalogueBenchArgs),
    /// Requests/s and end-to-end latency of `POST /recommend?wait_ms` against `serve` plus a
    /// worker on Redis and against `serve --embedded`, batching on and off.
    Api(super::bench_api::ApiBenchArgs),
}

/// Runs one benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Model(args) => super::bench_model::run(args),
        BenchCommand::Catalogue(args) => super::bench_catalogue::run(args),
        BenchCommand::Api(args) => super::bench_api::run(args),
    }
}
