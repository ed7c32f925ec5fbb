//! Owns the store's read-only connections: a small pool used from tokio's
//! blocking pool. In WAL mode a reader sees the last commit and never waits
//! for the writer, so history pages and lookups stay fast while writes queue.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::server::store::StoreError;

pub(super) struct Readers {
    path: PathBuf,
    /// Connections not in use. Locked only to take or give back one, never
    /// across a query.
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection, so a reader beyond the pool's size waits
    /// asynchronously instead of holding a blocking thread.
    permits: Arc<Semaphore>,
}

impl Readers {
    /// Opens `count` read-only connections to the (already migrated) file.
    pub(super) fn open(path: &Path, count: usize) -> Result<Self, StoreError> {
        let idle = (0..count)
            .map(|_| connect(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Readers {
            path: path.to_owned(),
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(count)),
        })
    }

    /// Runs `work` on a free connection on the blocking pool.
    pub(super) async fn read<T, F>(self: &Arc<Self>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // The semaphore is never closed, so acquiring only ever waits.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::WriterGone)?;
        let readers = self.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the connection is back, even if the caller is gone.
            let _permit = permit;
            let connection = match readers.take() {
                Some(connection) => connection,
                // A read that panicked lost its connection: replace it.
                None => connect(&readers.path)?,
            };
            let result = work(&connection);
            readers.give_back(connection);
            result
        })
        .await?
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn give_back(&self, connection: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(connection);
    }
}

/// A connection that can only read (`SQLITE_OPEN_READ_ONLY` plus
/// `query_only`), so a read path can never write behind the writer's back.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    connection.pragma_update(None, "query_only", "ON")?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(connection)
}
