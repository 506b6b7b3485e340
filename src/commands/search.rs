//! `movierec search`.

use movierec::catalogue::Catalogue;
use movierec::config::CatalogueSettings;

/// Arguments of `movierec search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub catalogue: CatalogueSettings,
    /// Words of the title; the last one matches as a prefix.
    pub text: String,
    /// At most this many results.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Print the movies as a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `movierec search` and prints the results as a table, best first.
pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let catalogue = Catalogue::open_read_only(&args.catalogue.database_path())?;
    let movies = catalogue.search(&args.text, args.limit)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&movies)?);
        return Ok(());
    }
    if movies.is_empty() {
        println!("no title matches {:?}", args.text);
        return Ok(());
    }
    println!(
        "{:>8}  {:>7}  {:<60}  genres",
        "movie_id", "ratings", "title"
    );
    for m in &movies {
        println!(
            "{:>8}  {:>7}  {:<60}  {}",
            m.movie_id,
            m.rating_count,
            m.title,
            m.genres.join("|")
        );
    }
    Ok(())
}
