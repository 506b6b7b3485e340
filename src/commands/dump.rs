//! `movierec dump`.

/// Arguments of `movierec dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {}

/// Runs `movierec dump`.
pub fn run(_args: DumpArgs) -> anyhow::Result<()> {
    anyhow::bail!("`movierec dump` is not available yet")
}
