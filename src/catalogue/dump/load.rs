//! Writing a catalogue: a build file next to the final one, bulk inserts in one transaction with
//! prepared statements, then the rename into place.
//!
//! The build file is configured for loading speed (`journal_mode=OFF`, `synchronous=OFF`; the
//! finished file has a rollback journal, which opening it never changes): it is nobody's
//! catalogue until the rename, and any failure deletes it. Ratings are inserted in primary-key
//! order per user (the releases list each user's ratings together), on a writer
//! thread fed by the parser.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use rusqlite::{Connection, params};
use tempfile::TempPath;

use super::DumpError;
use super::records::{LinkRow, MovieRow, RatingRow, TagRow, malformed};
use crate::catalogue::store::migrate;

/// Ratings travel to the writer thread in batches of this many rows.
const BATCH: usize = 32 * 1024;

/// Row counts of a finished load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub movies: i64,
    pub genres: i64,
    pub ratings: i64,
    pub users: i64,
    pub tags: i64,
    pub links: i64,
    /// Tags of movies the release does not list, left out.
    pub skipped_tags: i64,
    /// Links of movies the release does not list, left out.
    pub skipped_links: i64,
}

/// A catalogue being built in a temporary file beside its final path.
pub struct Build {
    conn: Connection,
    file: TempPath,
    genres: HashMap<String, i64>,
    movies: MovieCounts,
    counts: Counts,
}

impl Build {
    /// Creates `<dir>/<stem>.db.tmp-XXXXXX` with the full schema and opens the load transaction.
    pub fn create(dir: &Path, stem: &str) -> Result<Self, DumpError> {
        std::fs::create_dir_all(dir).map_err(|e| DumpError::io(dir, e))?;
        let file = tempfile::Builder::new()
            .prefix(&format!("{stem}.db.tmp-"))
            .tempfile_in(dir)
            .map_err(|e| DumpError::io(dir, e))?
            .into_temp_path();
        let mut conn = Connection::open(&file)?;
        conn.execute_batch(
            "PRAGMA page_size = 8192;
             PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -131072;
             PRAGMA foreign_keys = OFF;",
        )?;
        migrate(&mut conn)?;
        conn.execute_batch("BEGIN")?;
        Ok(Self {
            conn,
            file,
            genres: HashMap::new(),
            movies: MovieCounts::default(),
            counts: Counts::default(),
        })
    }

    /// Registers genre names with fixed ids (ml-100k's `u.genre` order), before any movie.
    pub fn preset_genres(&mut self, names: &[String]) -> Result<(), DumpError> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT INTO genres (genre_id, name) VALUES (?1, ?2)")?;
        for name in names.iter().filter(|n| super::records::is_genre(n)) {
            if !self.genres.contains_key(name) {
                let id = self.genres.len() as i64 + 1;
                stmt.execute(params![id, name])?;
                self.genres.insert(name.clone(), id);
            }
        }
        Ok(())
    }

    /// Inserts one movie with its genres; new genre names get the next id.
    pub fn movie(&mut self, file: &str, line: u64, m: MovieRow) -> Result<(), DumpError> {
        if self.movies.contains(m.movie_id) {
            return Err(malformed(
                file,
                line,
                format!("movie {} is listed twice", m.movie_id),
            ));
        }
        self.conn
            .prepare_cached("INSERT INTO movies (movie_id, title, year) VALUES (?1, ?2, ?3)")?
            .execute(params![m.movie_id, m.title, m.year])?;
        for name in m.genres {
            let id = match self.genres.get(&name) {
                Some(&id) => id,
                None => {
                    let id = self.genres.len() as i64 + 1;
                    self.conn
                        .prepare_cached("INSERT INTO genres (genre_id, name) VALUES (?1, ?2)")?
                        .execute(params![id, name])?;
                    self.genres.insert(name, id);
                    id
                }
            };
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO movie_genres (movie_id, genre_id) VALUES (?1, ?2)",
                )?
                .execute(params![m.movie_id, id])?;
        }
        self.movies.add(m.movie_id);
        self.counts.movies += 1;
        Ok(())
    }

    /// Called once all movies are in: ratings, tags and links can be checked against them.
    pub fn movies_done(&mut self) {
        self.movies.freeze();
        self.counts.genres = self.genres.len() as i64;
    }

    /// Inserts one link; links of unknown movies are counted and left out.
    pub fn link(&mut self, file: &str, line: u64, l: LinkRow) -> Result<(), DumpError> {
        if !self.movies.contains(l.movie_id) {
            self.counts.skipped_links += 1;
            return Ok(());
        }
        self.conn
            .prepare_cached("INSERT INTO links (movie_id, imdb_id, tmdb_id) VALUES (?1, ?2, ?3)")?
            .execute(params![l.movie_id, l.imdb_id, l.tmdb_id])
            .map_err(|e| malformed(file, line, format!("cannot store the link: {e}")))?;
        self.counts.links += 1;
        Ok(())
    }

    /// Inserts one tag; tags of unknown movies are counted and left out.
    pub fn tag(&mut self, t: TagRow) -> Result<(), DumpError> {
        if !self.movies.contains(t.movie_id) {
            self.counts.skipped_tags += 1;
            return Ok(());
        }
        self.conn
            .prepare_cached(
                "INSERT INTO tags (user_id, movie_id, tag, timestamp) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![t.user_id, t.movie_id, t.tag, t.timestamp])?;
        self.counts.tags += 1;
        Ok(())
    }

    /// Loads the ratings: `parse` reads the ratings file and hands each row to the sink it gets;
    /// a writer thread inserts them meanwhile. Every rating must name a listed movie.
    pub fn ratings(
        &mut self,
        file: &str,
        parse: impl FnOnce(&mut super::records::Sink<RatingRow>) -> Result<(), DumpError>,
    ) -> Result<(), DumpError> {
        let (tx, rx) = sync_channel::<Vec<Pending>>(4);
        let conn = &mut self.conn;
        let movies = &mut self.movies;
        let (parsed, written) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || write_ratings(conn, file, rx));
            let mut grouper = Grouper::new(file, movies, tx);
            let parsed = parse(&mut |line, row| grouper.push(line, row));
            let parsed = parsed.and_then(|()| grouper.finish());
            let users = grouper.users.len();
            // Dropping the grouper closes the channel, which ends the writer's loop.
            drop(grouper);
            let written = writer.join();
            (parsed.map(|()| users), written)
        });
        // The writer's error explains a parser that stopped because the writer went away.
        let rows = match written {
            Ok(result) => result?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let users = parsed?;
        self.counts.ratings = rows;
        self.counts.users = users as i64;
        Ok(())
    }

    /// Fills `rating_count`, rebuilds the search index, writes the `dataset` row, commits, and
    /// renames the file to `path`. Returns the counts.
    pub fn finish(self, version: &str, source_md5: &str, path: &Path) -> Result<Counts, DumpError> {
        {
            let mut stmt = self
                .conn
                .prepare("UPDATE movies SET rating_count = ?2 WHERE movie_id = ?1")?;
            for (id, count) in self.movies.iter_counts() {
                stmt.execute(params![id, count])?;
            }
        }
        let c = self.counts;
        crate::catalogue::search::index_titles(&self.conn)?;
        self.conn.execute(
            "INSERT INTO dataset (id, version, source_md5, movies, ratings, tags, links, users,
                                  created_at)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
            params![
                version, source_md5, c.movies, c.ratings, c.tags, c.links, c.users
            ],
        )?;
        self.conn
            // A rollback journal, not WAL: readers leave no -wal/-shm files beside it, and a
            // later dump can rename a new file over it while the API still reads the old one.
            .execute_batch("COMMIT; PRAGMA journal_mode = DELETE;")?;
        let Self { conn, file, .. } = self;
        conn.close().map_err(|(_, e)| DumpError::Sqlite(e))?;
        std::fs::File::open(&file)
            .and_then(|f| f.sync_all())
            .map_err(|e| DumpError::io(file.to_path_buf(), e))?;
        file.persist(path).map_err(|e| DumpError::Persist {
            path: path.to_path_buf(),
            source: e.error,
        })?;
        if let Some(dir) = path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            // Makes the rename durable; failing here cannot undo it, so it is not an error.
            let _ = d.sync_all();
        }
        Ok(c)
    }

    /// The build file's path (it is deleted when the build is dropped unfinished).
    pub fn path(&self) -> PathBuf {
        self.file.to_path_buf()
    }
}

/// A parsed rating and the line it came from.
type Pending = (u64, RatingRow);

/// Collects one user's consecutive ratings, sorts them into primary-key order (time, movie) and
/// sends them to the writer in batches.
struct Grouper<'a> {
    file: &'a str,
    movies: &'a mut MovieCounts,
    tx: SyncSender<Vec<Pending>>,
    user: Option<i64>,
    group: Vec<Pending>,
    batch: Vec<Pending>,
    users: HashSet<i64>,
}

impl<'a> Grouper<'a> {
    fn new(file: &'a str, movies: &'a mut MovieCounts, tx: SyncSender<Vec<Pending>>) -> Self {
        Self {
            file,
            movies,
            tx,
            user: None,
            group: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            users: HashSet::new(),
        }
    }

    fn push(&mut self, line: u64, row: RatingRow) -> Result<(), DumpError> {
        if !self.movies.count(row.movie_id) {
            return Err(malformed(
                self.file,
                line,
                format!("movie {} is not in the release's movie list", row.movie_id),
            ));
        }
        if self.user != Some(row.user_id) {
            self.flush_group()?;
            self.user = Some(row.user_id);
            self.users.insert(row.user_id);
        }
        self.group.push((line, row));
        Ok(())
    }

    fn flush_group(&mut self) -> Result<(), DumpError> {
        self.group
            .sort_unstable_by_key(|(line, r)| (r.timestamp, r.movie_id, *line));
        for pair in self.group.windows(2) {
            let ((_, a), (line, b)) = (pair[0], pair[1]);
            if (a.timestamp, a.movie_id) == (b.timestamp, b.movie_id) {
                return Err(malformed(
                    self.file,
                    line,
                    format!(
                        "user {} rates movie {} twice at time {}",
                        b.user_id, b.movie_id, b.timestamp
                    ),
                ));
            }
        }
        self.batch.append(&mut self.group);
        if self.batch.len() >= BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), DumpError> {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        // A closed channel means the writer failed; its error is the one reported.
        self.tx
            .send(batch)
            .map_err(|_| malformed(self.file, 0, "the catalogue writer stopped"))
    }

    fn finish(&mut self) -> Result<(), DumpError> {
        self.flush_group()?;
        if !self.batch.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

/// The writer thread: inserts every batch, returns the number of ratings written.
fn write_ratings(
    conn: &mut Connection,
    file: &str,
    rx: Receiver<Vec<Pending>>,
) -> Result<i64, DumpError> {
    let mut stmt = conn.prepare(
        "INSERT INTO ratings (user_id, timestamp, movie_id, rating) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut rows = 0i64;
    for batch in rx {
        for (line, r) in batch {
            stmt.execute(params![r.user_id, r.timestamp, r.movie_id, r.rating])
                .map_err(|e| malformed(file, line, format!("cannot store the rating: {e}")))?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// Which movie ids exist, and how many ratings each has: a dense table while ids are small (the
/// MovieLens case), a map otherwise.
#[derive(Debug, Default)]
struct MovieCounts {
    ids: Vec<i64>,
    dense: Vec<i64>,
    sparse: HashMap<i64, i64>,
}

/// Movie ids below this use the dense table (8 bytes per possible id).
const DENSE_LIMIT: i64 = 16 * 1024 * 1024;

impl MovieCounts {
    fn add(&mut self, id: i64) {
        self.ids.push(id);
        self.sparse.insert(id, 0);
    }

    /// Switches to the dense table when every id fits in it.
    fn freeze(&mut self) {
        let max = self.ids.iter().copied().max().unwrap_or(0);
        let min = self.ids.iter().copied().min().unwrap_or(0);
        if min >= 0 && max < DENSE_LIMIT {
            self.dense = vec![-1; max as usize + 1];
            for &id in &self.ids {
                self.dense[id as usize] = 0;
            }
            self.sparse = HashMap::new();
        }
    }

    fn contains(&self, id: i64) -> bool {
        if self.dense.is_empty() {
            self.sparse.contains_key(&id)
        } else {
            usize::try_from(id)
                .ok()
                .and_then(|i| self.dense.get(i))
                .is_some_and(|&c| c >= 0)
        }
    }

    /// Counts one rating of `id`; false when the movie is unknown.
    fn count(&mut self, id: i64) -> bool {
        if self.dense.is_empty() {
            match self.sparse.get_mut(&id) {
                Some(c) => {
                    *c += 1;
                    true
                }
                None => false,
            }
        } else {
            match usize::try_from(id).ok().and_then(|i| self.dense.get_mut(i)) {
                Some(c) if *c >= 0 => {
                    *c += 1;
                    true
                }
                _ => false,
            }
        }
    }

    /// (id, count) of every movie with at least one rating, in listing order.
    fn iter_counts(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ids.iter().filter_map(move |&id| {
            let c = if self.dense.is_empty() {
                self.sparse.get(&id).copied().unwrap_or(0)
            } else {
                self.dense[id as usize]
            };
            (c > 0).then_some((id, c))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;

    fn movie(id: i64, title: &str, genres: &[&str]) -> MovieRow {
        MovieRow {
            movie_id: id,
            title: title.to_owned(),
            year: None,
            genres: genres.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn rating(user: i64, movie: i64, ts: i64) -> RatingRow {
        RatingRow {
            user_id: user,
            movie_id: movie,
            rating: 4.0,
            timestamp: ts,
        }
    }

    #[test]
    fn a_build_lands_complete_and_a_dropped_build_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Build::create(dir.path(), "x").unwrap();
        b.movie("m", 2, movie(1, "A", &["Drama", "Comedy"]))
            .unwrap();
        b.movie("m", 3, movie(5, "B", &["Drama"])).unwrap();
        assert!(
            b.movie("m", 4, movie(5, "B", &[]))
                .unwrap_err()
                .to_string()
                .contains("m line 4")
        );
        b.movies_done();
        b.tag(TagRow {
            user_id: 1,
            movie_id: 9,
            tag: "t".into(),
            timestamp: 1,
        })
        .unwrap();
        b.ratings("r", |sink| {
            sink(2, rating(2, 5, 30))?;
            sink(3, rating(2, 1, 10))?;
            sink(4, rating(1, 1, 50))?;
            sink(5, rating(2, 5, 5))
        })
        .unwrap();
        let path = dir.path().join("x.db");
        let counts = b.finish("ml-test", "abc", &path).unwrap();
        assert_eq!(
            (counts.movies, counts.genres, counts.ratings, counts.users),
            (2, 2, 4, 2)
        );
        assert_eq!(counts.skipped_tags, 1);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.db")]);

        let cat = Catalogue::open_read_only(&path).unwrap();
        let mode: String = cat
            .connection()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(
            mode, "delete",
            "a rollback journal, which opening leaves as it is"
        );
        assert_eq!(cat.movie(5).unwrap().unwrap().rating_count, 2);
        assert_eq!(cat.info().unwrap().users, 2);
        let order: Vec<_> = cat
            .interactions(None)
            .unwrap()
            .iter()
            .map(|i| (i.user_id, i.timestamp))
            .collect();
        assert_eq!(order, vec![(1, 50), (2, 5), (2, 10), (2, 30)]);

        let mut b = Build::create(dir.path(), "x").unwrap();
        let tmp = b.path();
        assert!(tmp.exists());
        b.movie("m", 2, movie(1, "A", &[])).unwrap();
        b.movies_done();
        let err = b.ratings("r", |sink| sink(7, rating(1, 2, 1))).unwrap_err();
        assert!(err.to_string().contains("r line 7"), "{err}");
        drop(b);
        assert!(!tmp.exists());
        assert_eq!(
            Catalogue::open_read_only(&path)
                .unwrap()
                .info()
                .unwrap()
                .ratings,
            4
        );
    }

    #[test]
    fn duplicate_ratings_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Build::create(dir.path(), "x").unwrap();
        b.movie("m", 2, movie(1, "A", &[])).unwrap();
        b.movies_done();
        let err = b
            .ratings("r", |sink| {
                sink(2, rating(1, 1, 5))?;
                sink(3, rating(1, 1, 5))
            })
            .unwrap_err();
        assert!(err.to_string().contains("r line 3"), "{err}");
    }

    #[test]
    fn sparse_ids_work_too() {
        let mut m = MovieCounts::default();
        m.add(5);
        m.add(DENSE_LIMIT * 4);
        m.freeze();
        assert!(m.contains(DENSE_LIMIT * 4) && !m.contains(6));
        assert!(m.count(5) && !m.count(6));
        assert_eq!(m.iter_counts().collect::<Vec<_>>(), vec![(5, 1)]);
    }
}
