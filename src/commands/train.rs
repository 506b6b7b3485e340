//! `movierec train`.

/// Arguments of `movierec train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {}

/// Runs `movierec train`.
pub fn run(_args: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("`movierec train` is not available yet")
}
