//! `movierec health`: asks a running API for `/health`; exits 0 when it answers 200. The
//! container image uses it as its HEALTHCHECK, so it needs no curl.

use std::time::Duration;

use anyhow::{Context, bail};

/// Arguments of `movierec health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Port of the API to check, on the loopback interface.
    #[arg(long, env = "RECSYS_PORT", default_value_t = 8000)]
    port: u16,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    timeout_secs: u64,
}

/// Runs `movierec health`.
pub fn run(args: HealthArgs) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{}/health", args.port);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()
        .context("building the HTTP client")?;
    let response = client
        .get(&url)
        .send()
        .with_context(|| format!("no answer from {url}"))?;
    let status = response.status();
    let body = response.text().unwrap_or_default();
    println!("{body}");
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}
