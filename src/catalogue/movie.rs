//! The plain records a catalogue hands out: a movie with its genres and links, and the metadata of
//! the release it was built from.

use serde::{Deserialize, Serialize};

/// One movie of the catalogue, as the search, the API and the demo page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Movie {
    /// The MovieLens id.
    pub movie_id: i64,
    /// The title as published, e.g. `Matrix, The (1999)`.
    pub title: String,
    /// The year from the title's trailing `(YYYY)`, when there is one.
    pub year: Option<i32>,
    /// Genre names, sorted by name; empty when the release lists none.
    pub genres: Vec<String>,
    /// IMDb id as published (digits, leading zeros kept), where the release has links.
    pub imdb_id: Option<String>,
    /// TMDb id, where the release has one.
    pub tmdb_id: Option<i64>,
    /// Number of ratings of this movie in the release: its popularity.
    pub rating_count: i64,
}

/// The `dataset` row: which release a catalogue holds and how big it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Release name, e.g. `ml-latest-small`.
    pub version: String,
    /// md5 of the source zip, or of the data files of a folder source.
    pub source_md5: String,
    /// Number of movies.
    pub movies: i64,
    /// Number of ratings.
    pub ratings: i64,
    /// Number of tags (0 where the release has none).
    pub tags: i64,
    /// Number of links (0 where the release has none).
    pub links: i64,
    /// Number of distinct users with at least one rating.
    pub users: i64,
    /// When the catalogue was built, RFC 3339 in UTC.
    pub created_at: String,
}
