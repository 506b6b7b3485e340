//! `movierec locate`: prints the folder of an extracted MovieLens release, found the way the
//! tests and benchmarks find it, so that scripts (deploy/smoke.sh) use the same one place.

use movierec::catalogue::dump::locate::Locator;
use movierec::config::MovieLensVersion;

/// Arguments of `movierec locate`.
#[derive(Debug, clap::Args)]
pub struct LocateArgs {
    /// The release whose folder is wanted.
    #[arg(long, default_value = "ml-latest-small")]
    pub dataset: MovieLensVersion,
}

/// Runs `movierec locate`: `MOVIELENS_DATA`, else the shared data folder beside the checkout,
/// else the download cache (downloading the release, md5-checked, unless `MOVIELENS_OFFLINE`).
pub fn run(args: LocateArgs) -> anyhow::Result<()> {
    let folder = Locator::from_env().release(args.dataset)?;
    println!("{}", folder.display());
    Ok(())
}
