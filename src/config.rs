//! Settings shared by the subcommands: read from `.env` (dotenvy), the environment and CLI flags.
//!
//! Every setting is a clap flag with an environment fallback; `.env_org` documents them all.

use std::fmt;
use std::path::PathBuf;

use crate::catalogue::{DEFAULT_DATABASE_ROOT, catalogue_path};
use crate::model::PrecisionChoice;

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
    /// MovieLens release (dataset) to work on. `--version` is its old name, accepted until the
    /// next release.
    #[arg(
        long = "dataset",
        alias = "version",
        value_name = "DATASET",
        env = "MOVIELENS_VERSION",
        default_value = "ml-latest-small"
    )]
    pub version: MovieLensVersion,
    /// Folder of the SQLite catalogues, one `<dataset>.db` per release.
    #[arg(long, env = "DATABASE_ROOT", default_value = DEFAULT_DATABASE_ROOT)]
    pub database_root: PathBuf,
}

impl CatalogueSettings {
    /// The catalogue file of the configured release (see [`catalogue_path`]).
    pub fn database_path(&self) -> PathBuf {
        catalogue_path(&self.database_root, self.version)
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
    /// Folder of the checkpoints: training writes one directory per run there, and serving
    /// picks the newest of the release from it.
    #[arg(long, env = "CHECKPOINT_ROOT", default_value = "resources/checkpoints")]
    pub checkpoint_root: PathBuf,
}

/// Which model serves: the checkpoint given, else the newest of the release, else popularity.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelSettings {
    /// Checkpoint directory to serve (default: the newest checkpoint of the release under
    /// `CHECKPOINT_ROOT`).
    #[arg(long, env = "RECSYS_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,
    /// Serve several models at once with traffic weights, named as `movierec models list`
    /// shows them: `name:weight,name:weight` (a name alone weighs 1). Requests may name one;
    /// the rest are split by weight. Replaces --checkpoint. A set promoted through Redis
    /// (`movierec models promote`) wins over this on the Redis workers.
    #[arg(long, env = "RECSYS_MODELS", conflicts_with = "checkpoint")]
    pub models: Option<String>,
    #[command(flatten)]
    pub checkpoints: CheckpointSettings,
    /// With no checkpoint of the release, serve popularity from the catalogue and count that as
    /// ready. Without this flag popularity still answers, but readiness stays false and a
    /// warning is logged.
    #[arg(long, env = "RECSYS_ALLOW_POPULARITY_FALLBACK")]
    pub allow_popularity_fallback: bool,
}

/// A secret that never shows in logs or `Debug` output. Never empty or blank: parsing refuses
/// those, so a `RECSYS_SECRET=` left empty stops the program instead of silently switching auth
/// off (unset means no auth).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's bytes, for a constant-time comparison and for deriving the session key.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(
                "RECSYS_SECRET (--secret) is set but empty or blank, which would lock \
                        everyone out or let everyone in: set it to a long random value (e.g. \
                        `openssl rand -hex 32`), or unset it to serve without auth"
                    .into(),
            );
        }
        Ok(Self(s.to_owned()))
    }
}

/// Default of [`ServerSettings::session_ttl_secs`]: 12 hours.
pub const DEFAULT_SESSION_TTL_SECS: u64 = 12 * 3600;

/// Default of [`ServerSettings::max_k`].
pub const DEFAULT_MAX_K: usize = 100;

/// Default of [`ServerSettings::max_sequence`].
pub const DEFAULT_MAX_SEQUENCE: usize = 200;

/// Default of [`ServerSettings::max_search_limit`].
pub const DEFAULT_MAX_SEARCH_LIMIT: usize = 100;

/// The HTTP API: where it listens, what it accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerSettings {
    /// Address the API listens on.
    #[arg(long, env = "RECSYS_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port the API listens on (0 picks a free one).
    #[arg(long, env = "RECSYS_PORT", default_value_t = 8000)]
    pub port: u16,
    /// When set, everything but the page, sign-in, static files, health, metrics and the OpenAPI
    /// document needs `Authorization: Bearer <secret>` or the session cookie that signing in
    /// with it sets. Empty or blank is an error; unset means no auth.
    #[arg(long, env = "RECSYS_SECRET", hide_env_values = true)]
    pub secret: Option<Secret>,
    /// Seconds a sign-in stays valid (the session cookie's signed expiry).
    #[arg(long, env = "RECSYS_SESSION_TTL_SECS", default_value_t = DEFAULT_SESSION_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub session_ttl_secs: u64,
    /// Mark the session cookie `Secure` (browsers then send it over HTTPS only). Set it when a
    /// TLS proxy fronts the API; the API itself speaks plain HTTP.
    #[arg(long, env = "RECSYS_SECURE_COOKIE")]
    pub secure_cookie: bool,
    /// Largest k a request may ask for.
    #[arg(long, env = "RECSYS_MAX_K", default_value_t = DEFAULT_MAX_K)]
    pub max_k: usize,
    /// Longest sequence a request may send.
    #[arg(long, env = "RECSYS_MAX_SEQUENCE", default_value_t = DEFAULT_MAX_SEQUENCE)]
    pub max_sequence: usize,
    /// Largest `limit` of a movie search.
    #[arg(long, env = "RECSYS_MAX_SEARCH_LIMIT", default_value_t = DEFAULT_MAX_SEARCH_LIMIT)]
    pub max_search_limit: usize,
    /// Milliseconds a client has to send a request's head, and again its body; a slower one
    /// gets 408 and its connection is closed, so stalled uploads cannot pile up.
    #[arg(long, env = "RECSYS_REQUEST_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// Seconds an idle keep-alive connection stays open (0: one request per connection).
    #[arg(long, env = "RECSYS_KEEP_ALIVE_SECS", default_value_t = 5)]
    pub keep_alive_secs: u64,
    /// Milliseconds a closing connection gets to shut down cleanly before it is dropped.
    #[arg(long, env = "RECSYS_DISCONNECT_TIMEOUT_MS", default_value_t = 1000)]
    pub disconnect_timeout_ms: u64,
    /// Most connections served at once (all worker threads together). A reserve above it (a
    /// tenth, at least 16) is still accepted, and its requests answer 503 with `Retry-After`
    /// (health probes excepted); beyond that new ones wait in the listen backlog until one
    /// closes. Kept under the open-file limit, which start-up raises to its hard maximum.
    #[arg(long, env = "RECSYS_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Most `POST /recommend` requests this process handles at once, from enqueue to answer;
    /// one more is answered 429 with `Retry-After` at once, without touching the queue.
    #[arg(long, env = "RECSYS_MAX_PENDING", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pending: u64,
    /// Connections the kernel may queue while none can be accepted (the listen backlog).
    #[arg(long, env = "RECSYS_BACKLOG", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub backlog: u32,
}

impl ServerSettings {
    /// The secret to require, if any.
    pub fn required_secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }
}

/// The job queue shared by the API and the workers.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueSettings {
    /// Redis the API and the workers share.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Name of the apalis queue (API and workers must agree).
    #[arg(long, env = "RECSYS_QUEUE", default_value = "movierec:recommend")]
    pub queue_name: String,
    /// Most jobs allowed to wait; beyond it the API answers 429.
    #[arg(long, env = "RECSYS_QUEUE_CAP", default_value_t = 10_000)]
    pub queue_cap: u64,
    /// Seconds a finished job's result stays readable.
    #[arg(long, env = "RECSYS_RESULT_TTL_SECS", default_value_t = 3600)]
    pub result_ttl_secs: u64,
    /// Most finished results kept (the oldest go first): bounds the queue's memory whatever
    /// the traffic.
    #[arg(long, env = "RECSYS_RESULT_MAX", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub result_max: u64,
    /// Milliseconds any Redis call may take before the API answers 503.
    #[arg(long, env = "RECSYS_REDIS_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_timeout_ms: u64,
    /// Seconds between worker heartbeats; a worker silent for 3 is presumed dead and its jobs
    /// return to the queue.
    #[arg(long, env = "RECSYS_HEARTBEAT_SECS", default_value_t = 5)]
    pub heartbeat_secs: u64,
}

/// The worker: concurrency, batching, retries. What it serves is [`ModelSettings`].
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerSettings {
    /// Jobs in flight per worker process.
    #[arg(long, env = "RECSYS_WORKER_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Most requests in one forward pass (1 turns batching off).
    #[arg(long, env = "RECSYS_BATCH_SIZE", default_value_t = 64)]
    pub batch_size: usize,
    /// Microseconds a batch waits for more requests once the model is free; 0 (measured best:
    /// see the README) scores whatever queued while the model was busy, at once.
    #[arg(long, env = "RECSYS_BATCH_WAIT_US", default_value_t = 0)]
    pub batch_wait_us: u64,
    /// Attempts a job with a transient model error gets before it fails for good.
    #[arg(long, env = "RECSYS_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// Extra milliseconds before each batch; stands in for a slow model when testing shutdown
    /// and load. Leave at 0.
    #[arg(long, env = "RECSYS_BATCH_DELAY_MS", default_value_t = 0, hide = true)]
    pub batch_delay_ms: u64,
    /// What the dense layers and the scores compute in: `auto` (bf16 where the CPU has AVX-512
    /// BF16, else f32), `f32`, or `bf16` (refused on a CPU without it). Answers name it.
    #[arg(long, env = "RECSYS_PRECISION", value_enum, default_value_t = PrecisionChoice::Auto)]
    pub precision: PrecisionChoice,
}
