//! Errors of the catalogue: opening, migrating, reading.

use std::path::PathBuf;

/// Everything that can go wrong while building or reading a catalogue.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// No catalogue file where one was expected.
    #[error("no catalogue at {0}: run `movierec dump` first")]
    Missing(PathBuf),
    /// The SQLite layer failed.
    #[error("catalogue database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema could not be brought up to date.
    #[error("catalogue migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
}
