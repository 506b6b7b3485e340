//! The MovieLens catalogue: a SQLite file per release, built by [`dump`](crate::catalogue) and read
//! by search, training and the API.

mod error;
mod store;

pub use error::CatalogueError;
pub use store::{Catalogue, Interaction};
