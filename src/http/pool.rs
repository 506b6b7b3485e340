//! A small pool of catalogue connections for the API: rusqlite connections are not `Sync`, so
//! each query borrows one on a blocking thread and gives it back.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::catalogue::{Catalogue, CatalogueError};

/// Idle connections kept for reuse, and the most queries run at once: the rest wait their turn
/// instead of each holding a blocking thread (hundreds under load) and a connection.
const MAX_IDLE: usize = 8;

/// Shared, cloneable access to one catalogue file.
#[derive(Clone)]
pub struct CataloguePool {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Catalogue>>>,
    running: Arc<tokio::sync::Semaphore>,
}

impl CataloguePool {
    /// Opens the catalogue once to check it, and keeps that connection.
    pub fn open(path: &Path) -> Result<Self, CatalogueError> {
        let first = Catalogue::open_read_only(path)?;
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            idle: Arc::new(Mutex::new(vec![first])),
            running: Arc::new(tokio::sync::Semaphore::new(MAX_IDLE)),
        })
    }

    /// The catalogue file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with a connection on tokio's blocking pool, at most [`MAX_IDLE`] at once.
    pub async fn run<T, F>(&self, f: F) -> Result<T, CatalogueError>
    where
        T: Send + 'static,
        F: FnOnce(&Catalogue) -> Result<T, CatalogueError> + Send + 'static,
    {
        let pool = self.clone();
        // The semaphore is never closed, so this always gets a permit.
        let permit = Arc::clone(&self.running).acquire_owned().await.ok();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match pool.take() {
                Some(c) => c,
                None => Catalogue::open_read_only(&pool.path)?,
            };
            let out = f(&conn);
            pool.give_back(conn);
            out
        })
        .await
        .unwrap_or(Err(CatalogueError::Sqlite(rusqlite::Error::UnwindingPanic)))
    }

    fn take(&self) -> Option<Catalogue> {
        self.idle.lock().ok().and_then(|mut v| v.pop())
    }

    fn give_back(&self, conn: Catalogue) {
        if let Ok(mut v) = self.idle.lock()
            && v.len() < MAX_IDLE
        {
            v.push(conn);
        }
    }
}
