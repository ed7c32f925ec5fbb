//! Owns the SQLite backend (`--db`, the default): the file's versioned
//! migrations, and every read and write of persisted channels (chat rooms,
//! users' notification channels, shared documents) in it.
//!
//! Writes go to one writer thread (`writer.rs`) through a bounded queue; it
//! commits them in groups, one transaction and one fsync per group, and runs
//! each write's callback (the hub's publication) only after that commit, in
//! queue order. Reads go to a small pool of read-only connections
//! (`readers.rs`) on tokio's blocking pool: in WAL mode they run beside the
//! writer, so a read never waits behind a write. No async task ever blocks
//! on the database: it awaits a queue slot, an answer or a blocking task.
//! The write-ahead log is copied into the file by a thread of its own
//! (`checkpoint.rs`), never inside a commit.

mod channels;
mod chat;
mod checkpoint;
mod docs;
mod mentions;
mod migrations;
mod notifications;
mod readers;
mod writer;

use super::group::{Commits, Jobs, Queued};
use super::StoreError;
use readers::Readers;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use writer::Job;

/// How many read-only connections serve reads at once; more readers wait
/// (asynchronously) for one to be free.
const READ_CONNECTIONS: usize = 4;

/// A handle to the database; cheap to clone. The writer thread ends when the
/// last handle is dropped, after the jobs already queued.
#[derive(Clone)]
pub struct Sqlite {
    /// Into the writer thread (`writer::run`), the only user of the
    /// read-write connection.
    jobs: Jobs<dyn Job>,
    /// Read-only connections, used from the blocking pool.
    readers: Arc<Readers>,
    /// Transactions the writer committed (each one fsync), for tests and
    /// operators: fewer than writes means group commit is at work.
    commits: Commits,
    /// Copies the write-ahead log into the file, off the commit path; stops
    /// with the last handle.
    _checkpointer: Arc<checkpoint::Checkpointer>,
}

impl Sqlite {
    /// Opens (creating it and its folder if needed) and migrates the file,
    /// then starts the writer thread and opens the read connections.
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
        checkpoint::leave_to_the_checkpointer(&connection)?;
        migrations::migrate(&mut connection)?;
        // Readers open after the migrations, so they never see an old schema.
        let readers = Arc::new(Readers::open(path, READ_CONNECTIONS)?);
        let commits = Commits::default();
        let jobs = writer::spawn(connection, commits.clone())?;
        let checkpointer = Arc::new(checkpoint::spawn(path)?);
        Ok(Sqlite {
            jobs,
            readers,
            commits,
            _checkpointer: checkpointer,
        })
    }

    /// Queues `work` for the writer and waits for its answer: `work` runs in
    /// the writer's transaction (in its own savepoint), and `then` turns its
    /// result into the answer after the commit, in queue order, still on the
    /// writer thread. A full queue waits here, asynchronously.
    async fn write<T, R, W, C>(&self, work: W, then: C) -> Result<R, StoreError>
    where
        T: Send + 'static,
        R: Send + 'static,
        W: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        C: FnOnce(T) -> R + Send + 'static,
    {
        self.jobs
            .write(|answer| -> Box<dyn Job> { Box::new(Queued::new(work, then, answer)) })
            .await
    }

    /// Runs `work` on a read-only connection on the blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.readers.read(work).await
    }

    /// How many transactions the writer has committed since `open`.
    pub fn commits(&self) -> u64 {
        self.commits.count.get()
    }

    /// The writer's commit count and durations (`/metrics`).
    pub(super) fn commit_metrics(&self) -> &Commits {
        &self.commits
    }
}

/// For tests of an upgrade: the file at `path` brought to schema `version`
/// only, then `sql` run on it (the data an older Pulse stored).
#[cfg(test)]
pub(super) fn at_version(path: &Path, version: usize, sql: &str) -> Result<(), StoreError> {
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder");
    let mut connection = Connection::open(path)?;
    migrations::migrate_to(&mut connection, version)?;
    connection.execute_batch(sql)?;
    Ok(())
}

/// For tests: the schema version of the file at `path`, and the latest.
#[cfg(test)]
pub(super) fn schema_version(path: &Path) -> Result<(usize, usize), StoreError> {
    let connection = Connection::open(path)?;
    let version = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    Ok((version, migrations::latest_version()))
}

#[cfg(test)]
pub(super) mod testing;
#[cfg(test)]
mod tests;
