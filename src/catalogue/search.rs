//! Reads of the catalogue that the CLI, the API and the demo page share: title search, movies by
//! id and the dataset metadata.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Row, params};

use super::movie::{DatasetInfo, Movie};
use super::query::fts_expression;
use super::{Catalogue, CatalogueError};

/// Columns of [`Movie`], read by [`movie_from_row`]; bind the movie id as `?1`-style parameters.
const MOVIE_COLUMNS: &str = "m.movie_id, m.title, m.year, m.rating_count, l.imdb_id, l.tmdb_id,
    (SELECT group_concat(name, char(31)) FROM (
        SELECT g.name AS name FROM movie_genres mg JOIN genres g ON g.genre_id = mg.genre_id
        WHERE mg.movie_id = m.movie_id ORDER BY g.name))";

/// Separator of the genre names inside the aggregated column (ASCII unit separator).
const GENRE_SEPARATOR: char = '\u{1f}';

fn movie_from_row(row: &Row<'_>) -> rusqlite::Result<Movie> {
    let genres: Option<String> = row.get(6)?;
    Ok(Movie {
        movie_id: row.get(0)?,
        title: row.get(1)?,
        year: row.get(2)?,
        rating_count: row.get(3)?,
        imdb_id: row.get(4)?,
        tmdb_id: row.get(5)?,
        genres: genres
            .map(|g| g.split(GENRE_SEPARATOR).map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

/// How many of the most rated matches of a search are ranked by relevance.
pub const SEARCH_POOL: i64 = 512;

/// Ranks the movies by popularity (`search_rank`: rating_count descending, then movie id) and
/// rebuilds the title search index keyed by that rank. Run after every bulk load.
pub(crate) fn index_titles(conn: &rusqlite::Connection) -> Result<(), CatalogueError> {
    conn.execute_batch(
        "UPDATE movies SET search_rank = NULL;
         UPDATE movies SET search_rank = ranked.rank
         FROM (SELECT movie_id, row_number() OVER (ORDER BY rating_count DESC, movie_id) AS rank
               FROM movies) AS ranked
         WHERE movies.movie_id = ranked.movie_id;
         INSERT INTO movies_fts (movies_fts) VALUES ('rebuild');",
    )?;
    Ok(())
}

impl Catalogue {
    /// Movies whose title matches `text`, best first: by FTS5 bm25 relevance, then by number of
    /// ratings (descending), then by id. At most `limit` movies.
    ///
    /// Only the [`SEARCH_POOL`] most rated matches are ranked: when a text matches more titles
    /// than that (a two-letter prefix on a large release), a less rated match is left out even
    /// where bm25 would rank it higher. Below that many matches the order is exact.
    ///
    /// Any text is safe: it is split into words that are quoted for FTS5, the last word matches
    /// as a prefix, case and diacritics do not matter, and a leading article is ignored when
    /// more words follow. Text without any word gives an empty result.
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<Movie>, CatalogueError> {
        let Some(expr) = fts_expression(text) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // FTS5 yields matches in key order, which is popularity order (`search_rank`), so the
        // inner LIMIT stops the scan and bm25 runs on at most SEARCH_POOL rows.
        let mut stmt = self.connection().prepare_cached(
            "SELECT m.movie_id FROM (
                 SELECT rowid AS search_rank, bm25(movies_fts) AS score FROM movies_fts
                 WHERE movies_fts MATCH ?1 ORDER BY rowid LIMIT ?2
             ) AS f JOIN movies m ON m.search_rank = f.search_rank
             ORDER BY f.score, f.search_rank
             LIMIT ?3",
        )?;
        let ids = stmt
            .query_map(params![expr, SEARCH_POOL, limit], |row| {
                row.get::<_, i64>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_id = self.movies_by_ids(&ids)?;
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// The movie with MovieLens id `movie_id`, if the catalogue has it.
    pub fn movie(&self, movie_id: i64) -> Result<Option<Movie>, CatalogueError> {
        let mut stmt = self.connection().prepare_cached(&format!(
            "SELECT {MOVIE_COLUMNS} FROM movies m LEFT JOIN links l ON l.movie_id = m.movie_id
             WHERE m.movie_id = ?1"
        ))?;
        Ok(stmt.query_row([movie_id], movie_from_row).optional()?)
    }

    /// The movies among `ids` that the catalogue has, keyed by id (unknown ids are left out).
    /// One statement over the list: one read transaction, so one file lock and one journal
    /// check per call rather than one per id (a recommendation joins ten titles per answer).
    pub fn movies_by_ids(&self, ids: &[i64]) -> Result<HashMap<i64, Movie>, CatalogueError> {
        let mut out = HashMap::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(out);
        }
        let mut stmt = self.connection().prepare_cached(&format!(
            "SELECT {MOVIE_COLUMNS} FROM movies m LEFT JOIN links l ON l.movie_id = m.movie_id
             WHERE m.movie_id IN (SELECT value FROM json_each(?1))"
        ))?;
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        for movie in stmt.query_map([format!("[{list}]")], movie_from_row)? {
            let movie = movie?;
            out.insert(movie.movie_id, movie);
        }
        Ok(out)
    }

    /// The metadata of the release this catalogue holds.
    pub fn info(&self) -> Result<DatasetInfo, CatalogueError> {
        let info = self
            .connection()
            .query_row(
                "SELECT version, source_md5, movies, ratings, tags, links, users, created_at
                 FROM dataset WHERE id = 1",
                [],
                |row| {
                    Ok(DatasetInfo {
                        version: row.get(0)?,
                        source_md5: row.get(1)?,
                        movies: row.get(2)?,
                        ratings: row.get(3)?,
                        tags: row.get(4)?,
                        links: row.get(5)?,
                        users: row.get(6)?,
                        created_at: row.get(7)?,
                    })
                },
            )
            .optional()?;
        info.ok_or(CatalogueError::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, Catalogue) {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalogue::create(&dir.path().join("t.db")).unwrap();
        cat.connection()
            .execute_batch(
                "INSERT INTO movies (movie_id, title, year, rating_count) VALUES
                   (1, 'Matrix, The (1999)', 1999, 50),
                   (2, 'Matrix Reloaded, The (2003)', 2003, 30),
                   (3, 'Terminator, The (1984)', 1984, 20),
                   (4, 'Terminal, The (2004)', 2004, 25),
                   (5, 'Misérables, Les (1995)', 1995, 3),
                   (6, 'Babylon 5', NULL, 1);
                 INSERT INTO genres (genre_id, name) VALUES (1, 'Sci-Fi'), (2, 'Action');
                 INSERT INTO movie_genres VALUES (1, 1), (1, 2);
                 INSERT INTO links VALUES (1, '0133093', 603);",
            )
            .unwrap();
        index_titles(cat.connection()).unwrap();
        (dir, cat)
    }

    fn ids(movies: &[Movie]) -> Vec<i64> {
        movies.iter().map(|m| m.movie_id).collect()
    }

    #[test]
    fn equal_relevance_is_broken_by_popularity() {
        let (_dir, cat) = fixture();
        // Both titles have three tokens, so bm25 ties and rating_count decides.
        assert_eq!(ids(&cat.search("termin", 10).unwrap()), vec![4, 3]);
        assert_eq!(ids(&cat.search("terminat", 10).unwrap()), vec![3]);
    }

    #[test]
    fn articles_case_and_accents_do_not_matter() {
        let (_dir, cat) = fixture();
        assert_eq!(ids(&cat.search("the matrix", 10).unwrap()), vec![1, 2]);
        assert_eq!(ids(&cat.search("MATRIX", 1).unwrap()), vec![1]);
        assert_eq!(ids(&cat.search("miserables", 10).unwrap()), vec![5]);
        assert_eq!(ids(&cat.search("babylon", 10).unwrap()), vec![6]);
    }

    #[test]
    fn a_one_letter_last_word_is_a_prefix() {
        let (_dir, cat) = fixture();
        assert_eq!(ids(&cat.search("matrix r", 10).unwrap()), vec![2]);
        let mut m = ids(&cat.search("m", 10).unwrap());
        m.sort_unstable();
        assert_eq!(m, vec![1, 2, 5]);
        assert!(cat.search("matrix q", 10).unwrap().is_empty());
    }

    #[test]
    fn movies_carry_genres_and_links() {
        let (_dir, cat) = fixture();
        let m = cat.movie(1).unwrap().unwrap();
        assert_eq!(m.genres, vec!["Action", "Sci-Fi"]);
        assert_eq!(m.imdb_id.as_deref(), Some("0133093"));
        assert_eq!(m.tmdb_id, Some(603));
        assert_eq!(m.year, Some(1999));
        let b = cat.movie(6).unwrap().unwrap();
        assert!(b.genres.is_empty());
        assert_eq!((b.year, b.imdb_id, b.tmdb_id), (None, None, None));
        assert!(cat.movie(99).unwrap().is_none());
        let found = cat.movies_by_ids(&[6, 1, 99, 1]).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[&6].title, "Babylon 5");
    }

    #[test]
    fn hostile_text_never_errors() {
        let (_dir, cat) = fixture();
        let long = "x".repeat(10_000);
        for text in [
            "\"",
            "*",
            "-",
            "AND",
            "NEAR(",
            "()",
            "🎬",
            "",
            "matrix\"",
            "OR NOT",
            "\"matrix\" AND",
            long.as_str(),
        ] {
            cat.search(text, 10).unwrap();
        }
        assert_eq!(
            ids(&cat.search("\"matrix\" AND", 10).unwrap()),
            Vec::<i64>::new()
        );
        assert_eq!(ids(&cat.search("matrix)", 10).unwrap()), vec![1, 2]);
        assert!(cat.search("matrix", 0).unwrap().is_empty());
    }

    /// A catalogue of `n` titles "Alpha Beta <i>" rated i times, plus "Alpha (2000)" rated
    /// `short_count` times: the short title is the most relevant match for "alpha".
    fn pool_fixture(n: i64, short_count: i64) -> (tempfile::TempDir, Catalogue) {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalogue::create(&dir.path().join("t.db")).unwrap();
        let c = cat.connection();
        let mut insert = c
            .prepare("INSERT INTO movies (movie_id, title, rating_count) VALUES (?1, ?2, ?3)")
            .unwrap();
        for i in 1..=n {
            insert
                .execute(params![i, format!("Alpha Beta {i}"), i])
                .unwrap();
        }
        insert
            .execute(params![n + 1, "Alpha (2000)", short_count])
            .unwrap();
        drop(insert);
        index_titles(cat.connection()).unwrap();
        (dir, cat)
    }

    /// The order of the whole match set: bm25, then rating count, then id.
    fn exact_order(cat: &Catalogue, text: &str, limit: i64) -> Vec<i64> {
        let expr = fts_expression(text).unwrap();
        let mut stmt = cat
            .connection()
            .prepare(
                "SELECT m.movie_id FROM movies_fts f JOIN movies m ON m.search_rank = f.rowid
                 WHERE movies_fts MATCH ?1
                 ORDER BY bm25(movies_fts), m.rating_count DESC, m.movie_id LIMIT ?2",
            )
            .unwrap();
        stmt.query_map(params![expr, limit], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn below_the_pool_the_order_is_exact() {
        let (_dir, cat) = pool_fixture(SEARCH_POOL - 1, 0);
        for text in ["alpha", "al", "alpha beta", "beta 1", "alpha beta 4"] {
            let got = ids(&cat.search(text, 20).unwrap());
            assert!(!got.is_empty(), "{text}");
            assert_eq!(got, exact_order(&cat, text, 20), "{text}");
        }
        // The least rated but shortest title is the most relevant "alpha".
        assert_eq!(ids(&cat.search("alpha", 1).unwrap()), vec![SEARCH_POOL]);
    }

    #[test]
    fn beyond_the_pool_relevance_is_ranked_among_the_most_rated() {
        let (_dir, cat) = pool_fixture(SEARCH_POOL + 100, 0);
        let got = ids(&cat.search("alpha", 10).unwrap());
        // The short title is rated least, so outside the pool: the most rated matches come
        // back, ties broken by popularity.
        let most_rated: Vec<i64> = (0..10).map(|i| SEARCH_POOL + 100 - i).collect();
        assert_eq!(got, most_rated);
        // Rated enough to be in the pool, it ranks first again.
        let (_dir, cat) = pool_fixture(SEARCH_POOL + 100, 1_000);
        assert_eq!(
            ids(&cat.search("alpha", 1).unwrap()),
            vec![SEARCH_POOL + 101]
        );
        // A narrow query is exact whatever the size.
        assert_eq!(ids(&cat.search("beta 7", 3).unwrap()), vec![79, 78, 77]);
        assert_eq!(exact_order(&cat, "beta 7", 3), vec![79, 78, 77]);
    }

    #[test]
    fn info_of_a_catalogue_without_dataset_row_is_an_error() {
        let (_dir, cat) = fixture();
        assert!(matches!(cat.info(), Err(CatalogueError::Empty)));
    }
}
