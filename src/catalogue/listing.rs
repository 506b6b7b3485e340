//! Whole-table reads of the catalogue: what the popularity model ranks, what a health probe
//! counts, and the titles a benchmark draws its queries from.

use rusqlite::types::FromSql;

use super::{Catalogue, CatalogueError};

impl Catalogue {
    /// Every movie's `(movie_id, rating_count)`, by id: the counts the popularity model ranks.
    pub fn rating_counts(&self) -> Result<Vec<(i64, i64)>, CatalogueError> {
        self.pairs("SELECT movie_id, rating_count FROM movies ORDER BY movie_id")
    }

    /// Every movie's `(title, rating_count)`, by id.
    pub fn titles(&self) -> Result<Vec<(String, i64)>, CatalogueError> {
        self.pairs("SELECT title, rating_count FROM movies ORDER BY movie_id")
    }

    /// The rows of a two-column query.
    fn pairs<A: FromSql, B: FromSql>(&self, sql: &str) -> Result<Vec<(A, B)>, CatalogueError> {
        let mut stmt = self.connection().prepare_cached(sql)?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many movies the catalogue holds (cheap: a health probe runs it).
    pub fn movie_count(&self) -> Result<i64, CatalogueError> {
        Ok(self
            .connection()
            .query_row("SELECT count(*) FROM movies", [], |row| row.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use crate::catalogue::Catalogue;

    #[test]
    fn counts_and_titles_come_back_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalogue::create(&dir.path().join("t.db")).unwrap();
        assert_eq!(cat.movie_count().unwrap(), 0);
        cat.connection()
            .execute_batch(
                "INSERT INTO movies (movie_id, title, rating_count) VALUES
                   (30, 'c', 1), (10, 'a', 7), (20, 'b', 0);",
            )
            .unwrap();
        assert_eq!(cat.movie_count().unwrap(), 3);
        assert_eq!(
            cat.rating_counts().unwrap(),
            vec![(10, 7), (20, 0), (30, 1)]
        );
        let titles: Vec<String> = cat.titles().unwrap().into_iter().map(|t| t.0).collect();
        assert_eq!(titles, vec!["a", "b", "c"]);
    }
}
