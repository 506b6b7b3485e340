//! Settings shared by the subcommands: read from `.env` (dotenvy), the environment and CLI flags.
//!
//! Every setting is a clap flag with an environment fallback; `.env_org` documents them all.

use std::fmt;
use std::path::PathBuf;

/// The MovieLens releases that `movierec dump` knows how to read.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum MovieLensVersion {
    #[value(name = "ml-latest-small")]
    #[serde(rename = "ml-latest-small")]
    LatestSmall,
    #[value(name = "ml-latest")]
    #[serde(rename = "ml-latest")]
    Latest,
    #[value(name = "ml-100k")]
    #[serde(rename = "ml-100k")]
    Ml100k,
    #[value(name = "ml-1m")]
    #[serde(rename = "ml-1m")]
    Ml1m,
    #[value(name = "ml-10m")]
    #[serde(rename = "ml-10m")]
    Ml10m,
    #[value(name = "ml-20m")]
    #[serde(rename = "ml-20m")]
    Ml20m,
    #[value(name = "ml-25m")]
    #[serde(rename = "ml-25m")]
    Ml25m,
    #[value(name = "ml-32m")]
    #[serde(rename = "ml-32m")]
    Ml32m,
}

impl MovieLensVersion {
    /// Every known release, in the order the CLI lists them.
    pub const ALL: [MovieLensVersion; 8] = [
        Self::LatestSmall,
        Self::Latest,
        Self::Ml100k,
        Self::Ml1m,
        Self::Ml10m,
        Self::Ml20m,
        Self::Ml25m,
        Self::Ml32m,
    ];

    /// The name GroupLens publishes the release under, e.g. `ml-latest-small`.
    pub fn name(self) -> &'static str {
        match self {
            Self::LatestSmall => "ml-latest-small",
            Self::Latest => "ml-latest",
            Self::Ml100k => "ml-100k",
            Self::Ml1m => "ml-1m",
            Self::Ml10m => "ml-10m",
            Self::Ml20m => "ml-20m",
            Self::Ml25m => "ml-25m",
            Self::Ml32m => "ml-32m",
        }
    }
}

impl fmt::Display for MovieLensVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MovieLensVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                format!(
                    "unknown MovieLens version `{s}` (known: {})",
                    known.join(", ")
                )
            })
    }
}

/// Which catalogue to open: the release name and the folder of catalogue files.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogueSettings {
    /// MovieLens release the catalogue holds.
    #[arg(
        long = "version",
        env = "MOVIELENS_VERSION",
        default_value = "ml-latest-small"
    )]
    pub version: MovieLensVersion,
    /// Folder of the SQLite catalogues, one `<version>.db` per release.
    #[arg(long, env = "DATABASE_ROOT", default_value = "resources/db")]
    pub database_root: PathBuf,
}

impl CatalogueSettings {
    /// The catalogue file of the configured release: `DATABASE_ROOT/<version>.db`.
    pub fn database_path(&self) -> PathBuf {
        self.database_root.join(format!("{}.db", self.version))
    }
}

/// Where releases come from and where their zips are cached.
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadSettings {
    /// Folder where downloaded zips are cached.
    #[arg(long, env = "DATASET_ROOT", default_value = "resources/datasets")]
    pub dataset_root: PathBuf,
    /// Base URL the release zips are downloaded from (`<base>/<version>.zip`).
    #[arg(
        long,
        env = "MOVIELENS_BASE_URL",
        default_value = "https://files.grouplens.org/datasets/movielens"
    )]
    pub movielens_base_url: String,
}

/// Where checkpoints live.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckpointSettings {
    /// Folder under which training writes one checkpoint directory per run.
    #[arg(long, env = "CHECKPOINT_ROOT", default_value = "resources/checkpoints")]
    pub checkpoint_root: PathBuf,
}
