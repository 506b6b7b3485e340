//! The MovieLens catalogue: a SQLite file per release, built by [`dump`] and read by search,
//! training, the popularity model and the API. Every SQL statement of the crate and the rule
//! that names a catalogue file ([`catalogue_path`]) live here.

pub mod dump;
mod error;
mod listing;
mod movie;
mod paths;
mod query;
mod search;
mod store;
pub mod synthetic;

pub use error::CatalogueError;
pub use movie::{DatasetInfo, Movie};
pub use paths::{DEFAULT_DATABASE_ROOT, catalogue_path, dump_command, release_of};
pub use query::{MAX_QUERY_BYTES, MAX_QUERY_WORDS, fts_expression};
pub use search::SEARCH_POOL;
pub use store::{Catalogue, Interaction};
