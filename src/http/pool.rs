//! A fixed pool of catalogue threads for the API: rusqlite connections are not `Sync` and
//! queries block, so each of [`THREADS`] threads owns one connection and runs the queries sent
//! to it, in turn. Under load the queries queue instead of each taking a blocking thread (the
//! API reached 150 threads under `wait_ms` load when every lookup had one).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::catalogue::{Catalogue, CatalogueError};

/// Threads (and connections) running catalogue queries.
const THREADS: usize = 4;

/// A query with its reply channel, type-erased.
type Query = Box<dyn FnOnce(&Catalogue) + Send>;

/// Shared, cloneable access to one catalogue file.
#[derive(Clone)]
pub struct CataloguePool {
    path: Arc<PathBuf>,
    queries: mpsc::Sender<Query>,
}

impl CataloguePool {
    /// Opens the catalogue once per thread (so a bad file fails here) and starts the threads;
    /// they stop once every clone of the pool is dropped.
    pub fn open(path: &Path) -> Result<Self, CatalogueError> {
        let (queries, rx) = mpsc::channel::<Query>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..THREADS {
            let conn = Catalogue::open_read_only(path)?;
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("catalogue-{i}"))
                .spawn(move || serve_queries(&conn, &rx))
                .map_err(|e| CatalogueError::Threads(e.to_string()))?;
        }
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            queries,
        })
    }

    /// The catalogue file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on one of the pool's threads and waits for its answer without blocking the
    /// runtime.
    pub async fn run<T, F>(&self, f: F) -> Result<T, CatalogueError>
    where
        T: Send + 'static,
        F: FnOnce(&Catalogue) -> Result<T, CatalogueError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let query: Query = Box::new(move |conn: &Catalogue| {
            let out = catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or(Err(CatalogueError::Sqlite(rusqlite::Error::UnwindingPanic)));
            let _ = reply.send(out);
        });
        if self.queries.send(query).is_err() {
            return Err(CatalogueError::Threads(
                "every catalogue thread has stopped".into(),
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(CatalogueError::Threads(
                "a catalogue thread dropped a query".into(),
            ))
        })
    }
}

/// One pool thread: takes the next query (one thread waits on the channel at a time) and runs it.
fn serve_queries(conn: &Catalogue, rx: &Mutex<mpsc::Receiver<Query>>) {
    loop {
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match next {
            Ok(query) => query(conn),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalogue of two movies.
    fn catalogue() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let cat = Catalogue::create(&path).unwrap();
        cat.connection()
            .execute_batch(
                "INSERT INTO movies (movie_id, title, rating_count) VALUES (10, 'a', 7), (20, 'b', 0);",
            )
            .unwrap();
        (dir, path)
    }

    #[tokio::test]
    async fn many_concurrent_queries_run_on_the_fixed_threads() {
        let (_dir, path) = catalogue();
        let pool = CataloguePool::open(&path).unwrap();
        let names = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let queries = (0..200).map(|_| {
            let (pool, names) = (pool.clone(), Arc::clone(&names));
            async move {
                pool.run(move |c| {
                    let name = std::thread::current().name().map(str::to_owned);
                    names.lock().unwrap().insert(name);
                    c.movie_count()
                })
                .await
            }
        });
        let counts = futures::future::join_all(queries).await;
        assert!(counts.iter().all(|c| c.as_ref().is_ok_and(|&n| n == 2)));
        let names = names.lock().unwrap();
        assert!(names.len() <= THREADS, "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n.as_deref().is_some_and(|n| n.starts_with("catalogue-")))
        );
    }

    #[tokio::test]
    async fn a_panicking_query_does_not_take_a_thread_down() {
        let (_dir, path) = catalogue();
        let pool = CataloguePool::open(&path).unwrap();
        for _ in 0..THREADS * 2 {
            let r: Result<i64, _> = pool.run(|_| panic!("boom")).await;
            assert!(r.is_err());
        }
        assert_eq!(pool.run(|c| c.movie_count()).await.unwrap(), 2);
    }
}
