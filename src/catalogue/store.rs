//! Opening a catalogue file, applying the migrations under `migrations/`, and the reads that
//! training needs.

use std::path::Path;
use std::sync::LazyLock;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations, SchemaVersion};

use super::{CatalogueError, catalogue_path};
use crate::config::MovieLensVersion;

/// The schema, one entry per file under `migrations/`, applied in order.
const MIGRATION_FILES: [&str; 3] = [
    include_str!("../../migrations/0001_catalogue.sql"),
    include_str!("../../migrations/0002_search_rank.sql"),
    include_str!("../../migrations/0003_search_prefix_1.sql"),
];

static MIGRATIONS: LazyLock<Migrations<'static>> =
    LazyLock::new(|| Migrations::new(MIGRATION_FILES.iter().map(|sql| M::up(sql)).collect()));

/// How long a connection waits for a lock held by another one.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens `path` with `flags`, waiting up to `BUSY_TIMEOUT` for a lock held by another connection
/// (a migration) from the first read on.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, CatalogueError> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Applies every migration to `conn` (a fresh build file of the dump).
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), CatalogueError> {
    MIGRATIONS.to_latest(conn)?;
    Ok(())
}

/// Refuses a catalogue whose schema is newer than the migrations this program knows.
fn refuse_newer(conn: &Connection, path: &Path) -> Result<(), CatalogueError> {
    if let SchemaVersion::Outside(found) = MIGRATIONS.current_version(conn)? {
        return Err(CatalogueError::Newer {
            path: path.to_path_buf(),
            found: found.get(),
            supported: MIGRATION_FILES.len(),
        });
    }
    Ok(())
}

/// One rating, read as an implicit interaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    pub user_id: i64,
    pub movie_id: i64,
    pub rating: f32,
    pub timestamp: i64,
}

/// An open catalogue.
pub struct Catalogue {
    conn: Connection,
}

impl Catalogue {
    /// Opens an existing catalogue and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, CatalogueError> {
        if !path.is_file() {
            return Err(CatalogueError::Missing(path.to_path_buf()));
        }
        let conn = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        refuse_newer(&conn, path)?;
        Self::configure(conn)
    }

    /// Opens the catalogue of `release` under `root` (see [`catalogue_path`]) read-write.
    pub fn open_release(root: &Path, release: MovieLensVersion) -> Result<Self, CatalogueError> {
        Self::open(&catalogue_path(root, release))
    }

    /// Opens the catalogue of `release` under `root` (see [`catalogue_path`]) for reading only.
    pub fn open_release_read_only(
        root: &Path,
        release: MovieLensVersion,
    ) -> Result<Self, CatalogueError> {
        Self::open_read_only(&catalogue_path(root, release))
    }

    /// Opens an existing catalogue for reading only (search, the API). The schema must already be
    /// up to date; nothing is written.
    pub fn open_read_only(path: &Path) -> Result<Self, CatalogueError> {
        if !path.is_file() {
            return Err(CatalogueError::Missing(path.to_path_buf()));
        }
        let conn = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        refuse_newer(&conn, path)?;
        let pending = MIGRATIONS.pending_migrations(&conn)?;
        if pending != 0 {
            return Err(CatalogueError::Outdated {
                path: path.to_path_buf(),
                pending,
            });
        }
        Ok(Self { conn })
    }

    /// Creates a new, empty catalogue at `path` (which must not exist) with the full schema.
    pub fn create(path: &Path) -> Result<Self, CatalogueError> {
        let conn = connect(path, OpenFlags::default())?;
        Self::configure(conn)
    }

    /// Settings of a read-write connection, then the migrations. The journal mode is left as the
    /// file has it (a rollback journal since the dump): changing it needs the file to itself, and
    /// SQLite refuses that at once, without waiting, while another process opens it.
    fn configure(mut conn: Connection) -> Result<Self, CatalogueError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        MIGRATIONS.to_latest(&mut conn)?;
        Ok(Self { conn })
    }

    /// The underlying connection, for the modules of the catalogue.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Every rating with `rating >= min_rating` (all of them when `None`), ordered by user, then
    /// (timestamp, movie id) ascending.
    pub fn interactions(
        &self,
        min_rating: Option<f32>,
    ) -> Result<Vec<Interaction>, CatalogueError> {
        let mut stmt = self.conn.prepare(
            "SELECT user_id, movie_id, rating, timestamp FROM ratings
             WHERE rating >= ?1 ORDER BY user_id, timestamp, movie_id",
        )?;
        let min = f64::from(min_rating.unwrap_or(f32::NEG_INFINITY));
        let rows = stmt.query_map([min], |row| {
            Ok(Interaction {
                user_id: row.get(0)?,
                movie_id: row.get(1)?,
                rating: row.get::<_, f64>(2)? as f32,
                timestamp: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(MIGRATIONS.validate().is_ok());
    }

    #[test]
    fn a_catalogue_of_the_first_schema_is_migrated_and_searchable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let mut conn = Connection::open(&path).unwrap();
        MIGRATIONS.to_version(&mut conn, 1).unwrap();
        conn.execute_batch(
            "INSERT INTO movies (movie_id, title, rating_count) VALUES
               (10, 'Terminator, The (1984)', 5), (20, 'Terminal, The (2004)', 9);
             INSERT INTO movies_fts (movies_fts) VALUES ('rebuild');",
        )
        .unwrap();
        drop(conn);
        assert!(matches!(
            Catalogue::open_read_only(&path),
            Err(CatalogueError::Outdated { pending: 2, .. })
        ));
        let cat = Catalogue::open(&path).unwrap();
        let found = |text: &str| -> Vec<i64> {
            let movies = cat.search(text, 10).unwrap();
            movies.iter().map(|m| m.movie_id).collect()
        };
        assert_eq!(found("termin"), vec![20, 10]);
        assert_eq!(found("terminal t"), vec![20]);
        // Migration 0003: a one-character prefix index serves that last word.
        let fts: String = cat
            .connection()
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'movies_fts'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(fts.contains("prefix = '1 2 3'"), "{fts}");
        drop(cat);
        assert!(Catalogue::open_read_only(&path).is_ok());
    }

    #[test]
    fn a_catalogue_of_a_newer_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        drop(Catalogue::create(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        for result in [Catalogue::open(&path), Catalogue::open_read_only(&path)] {
            match result {
                Err(CatalogueError::Newer {
                    found, supported, ..
                }) => assert_eq!((found, supported), (99, MIGRATION_FILES.len())),
                Err(other) => panic!("unexpected error: {other}"),
                Ok(_) => panic!("a newer catalogue was opened"),
            }
        }
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 99);
    }

    /// Two `movierec train` runs started together on a fresh catalogue failed with "database is
    /// locked": both tried to switch its journal mode to WAL at once.
    #[test]
    fn processes_opening_a_catalogue_at_once_all_succeed_and_leave_its_journal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let cat = Catalogue::create(&path).unwrap();
        cat.connection()
            .execute_batch(
                "INSERT INTO movies (movie_id, title) VALUES (1, 'a');
                 INSERT INTO ratings (user_id, timestamp, movie_id, rating) VALUES (7, 1, 1, 4.0);",
            )
            .unwrap();
        drop(cat);
        for _ in 0..20 {
            let start = std::sync::Barrier::new(8);
            let opened: Vec<Result<usize, String>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            let cat = Catalogue::open(&path).map_err(|e| e.to_string())?;
                            cat.interactions(None)
                                .map(|rows| rows.len())
                                .map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(opened.iter().all(|r| r == &Ok(1)), "{opened:?}");
        }
        let cat = Catalogue::open(&path).unwrap();
        let mode: String = cat
            .connection()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        drop(cat);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("t.db")]);
    }

    #[test]
    fn interactions_are_in_time_order_with_ties_by_movie() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalogue::create(&dir.path().join("t.db")).unwrap();
        let c = cat.connection();
        c.execute_batch(
            "INSERT INTO movies (movie_id, title) VALUES (1, 'a'), (2, 'b'), (3, 'c');
             INSERT INTO ratings (user_id, timestamp, movie_id, rating) VALUES
               (7, 20, 1, 4.0), (7, 10, 3, 2.0), (7, 10, 2, 5.0), (5, 30, 1, 1.0);",
        )
        .unwrap();
        let got: Vec<(i64, i64)> = cat
            .interactions(None)
            .unwrap()
            .iter()
            .map(|i| (i.user_id, i.movie_id))
            .collect();
        assert_eq!(got, vec![(5, 1), (7, 2), (7, 3), (7, 1)]);
        let liked = cat.interactions(Some(4.0)).unwrap();
        assert_eq!(liked.len(), 2);
    }
}
