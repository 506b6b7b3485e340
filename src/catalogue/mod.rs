//! The MovieLens catalogue: a SQLite file per release, built by [`dump`] and read by search,
//! training and the API.

pub mod dump;
mod error;
mod movie;
mod query;
mod search;
mod store;
pub mod synthetic;

pub use error::CatalogueError;
pub use movie::{DatasetInfo, Movie};
pub use query::{MAX_QUERY_BYTES, MAX_QUERY_WORDS, fts_expression};
pub use search::SEARCH_POOL;
pub use store::{Catalogue, Interaction};
