//! `movierec recommend`.

/// Arguments of `movierec recommend`.
#[derive(Debug, clap::Args)]
pub struct RecommendArgs {}

/// Runs `movierec recommend`.
pub fn run(_args: RecommendArgs) -> anyhow::Result<()> {
    anyhow::bail!("`movierec recommend` is not available yet")
}
