//! `movierec evaluate`.

/// Arguments of `movierec evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {}

/// Runs `movierec evaluate`.
pub fn run(_args: EvaluateArgs) -> anyhow::Result<()> {
    anyhow::bail!("`movierec evaluate` is not available yet")
}
