//! Owns the WAL checkpoints: copying committed pages from the write-ahead log
//! into the database file. SQLite does it by default inside the commit that
//! fills the log past 1,000 pages, which then waits for the copy and a second
//! fsync, and so does every ack behind it. Here the writer's connection has
//! automatic checkpoints off, and a thread of its own runs a `PASSIVE`
//! checkpoint (never blocking the writer or a reader) twice a second.

use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::server::store::StoreError;

/// How often the log is copied into the file.
const EVERY: Duration = Duration::from_millis(500);

/// The checkpointing thread; when this is dropped it runs one last
/// checkpoint and ends (not waited for: the log is durable either way, and
/// SQLite checkpoints it when the last connection closes).
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

/// Turns off automatic checkpoints on the writer's `connection`.
pub(super) fn leave_to_the_checkpointer(connection: &Connection) -> Result<(), StoreError> {
    connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(())
}

/// Starts checkpointing the file at `path` on a thread of its own.
pub(super) fn spawn(path: &Path) -> Result<Checkpointer, StoreError> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("pulse-db-checkpoint".into())
        .spawn(move || loop {
            let last = match stopped.recv_timeout(EVERY) {
                Err(RecvTimeoutError::Timeout) => false,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            };
            let done = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            if let Err(err) = done {
                tracing::warn!(%err, "WAL checkpoint failed; the next one tries again");
            }
            if last {
                break;
            }
        })
        .map_err(StoreError::Thread)?;
    Ok(Checkpointer { _stop: stop })
}
