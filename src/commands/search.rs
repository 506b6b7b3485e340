//! `movierec search`.

/// Arguments of `movierec search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {}

/// Runs `movierec search`.
pub fn run(_args: SearchArgs) -> anyhow::Result<()> {
    anyhow::bail!("`movierec search` is not available yet")
}
