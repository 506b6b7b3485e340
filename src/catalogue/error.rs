//! Errors of the catalogue: opening, migrating, reading.

use std::path::PathBuf;

use super::paths::dump_command;

/// Everything that can go wrong while building or reading a catalogue.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// No catalogue file where one was expected; the message names the dump that builds it.
    #[error("no catalogue at {}: run `{}` first", .0.display(), dump_command(.0))]
    Missing(PathBuf),
    /// The catalogue file has no `dataset` row: it was not built by `movierec dump`.
    #[error("the catalogue holds no dataset: run `movierec dump` first")]
    Empty,
    /// A read-only open found a schema older than this program's.
    #[error(
        "catalogue {} lacks {pending} schema migration(s): run `{}` again",
        .path.display(),
        dump_command(.path)
    )]
    Outdated { path: PathBuf, pending: i32 },
    /// The catalogue was written by a newer movierec, with schema migrations this one lacks.
    #[error(
        "catalogue {} has schema version {found}, newer than this program's {supported}: \
         upgrade movierec or run `{}` again with this one",
        .path.display(),
        dump_command(.path)
    )]
    Newer {
        path: PathBuf,
        found: usize,
        supported: usize,
    },
    /// The SQLite layer failed.
    #[error("catalogue database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema could not be brought up to date.
    #[error("catalogue migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// The API's catalogue threads could not start, or one stopped answering.
    #[error("catalogue threads unavailable: {0}")]
    Threads(String),
}
