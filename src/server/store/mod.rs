//! Owns the SQLite file (`--db`): versioned migrations, and every read and
//! write of persisted channels (chat rooms). One connection behind a mutex;
//! every call runs on tokio's blocking pool, never on the async workers.
//! A write is committed (WAL, `synchronous=FULL`) before the call returns,
//! so whoever sends an `ack` after it knows the message is on disk.

mod chat;
mod migrations;
mod notifications;

use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use chat::{Appended, StoredChat};
pub use notifications::{StoredInbox, Unread, UNREAD_SNAPSHOT};

/// Why the store failed; shown to operators, mapped to `internal` for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("the database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    connection: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating it and its folder if needed) and migrates the file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|source| StoreError::Folder {
                path: folder.display().to_string(),
                source,
            })?;
        }
        let mut connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrate(&mut connection)?;
        Ok(Store {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` with the connection on the blocking pool.
    async fn with<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut connection)
        })
        .await?
    }
}

#[cfg(test)]
mod tests;
