//! `movierec dump`.

use std::path::PathBuf;

use anyhow::Context;
use movierec::catalogue::dump::{DumpOptions, dump, release_of_source};
use movierec::config::{CatalogueSettings, DownloadSettings};

/// Arguments of `movierec dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub catalogue: CatalogueSettings,
    #[command(flatten)]
    pub download: DownloadSettings,
    /// Read this local zip or extracted folder instead of downloading the release. The release
    /// is recognised from its files; `--dataset`, when typed, must match them.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Whether `--dataset` was typed (not read from the environment or a default).
    #[arg(skip)]
    pub dataset_typed: bool,
}

/// Runs `movierec dump` and prints a summary.
pub fn run(args: DumpArgs) -> anyhow::Result<()> {
    // The files decide over a release from `.env` or the default; a typed one is checked by
    // the dump itself.
    let version = match &args.source {
        Some(source) if !args.dataset_typed => {
            let found = release_of_source(source, args.catalogue.version)?;
            if found != args.catalogue.version {
                tracing::info!(
                    source = %source.display(),
                    "the files hold {found}: dumping {found}, not the configured {}",
                    args.catalogue.version
                );
            }
            found
        }
        _ => args.catalogue.version,
    };
    let opts = DumpOptions {
        version,
        source: args.source,
        database_root: args.catalogue.database_root,
        dataset_root: args.download.dataset_root,
        base_url: args.download.movielens_base_url,
    };
    let report = dump(&opts).with_context(|| format!("dump of {} failed", opts.version))?;
    let c = report.counts;
    println!("catalogue {}", report.path.display());
    println!(
        "  release  {} from {}",
        report.version,
        report.source.display()
    );
    println!("  md5      {}", report.md5);
    println!("  movies   {}", c.movies);
    println!("  genres   {}", c.genres);
    println!("  ratings  {}", c.ratings);
    println!("  users    {}", c.users);
    println!("  tags     {}", c.tags);
    println!("  links    {}", c.links);
    if c.skipped_tags + c.skipped_links > 0 {
        println!(
            "  skipped  {} tags and {} links of unlisted movies",
            c.skipped_tags, c.skipped_links
        );
    }
    println!("  seconds  {:.2}", report.seconds);
    Ok(())
}
