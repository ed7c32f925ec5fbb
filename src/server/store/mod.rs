//! Owns the durable data: chat rooms, users' notification channels and
//! shared documents, in one of two databases chosen at start. SQLite
//! (`sqlite/`, the file at `--db`) is the default and needs nothing
//! installed; PostgreSQL (`postgres/`, `--database-url postgres://…`) is for
//! several instances sharing the data. The rest of the server sees only
//! [`Store`] and the types of `model.rs`, never which one runs.
//!
//! Both keep the same promises: a write's callback (the hub's publication)
//! and its caller's answer come only after its commit, in commit order; a
//! persisted channel's offsets are assigned in the transaction, without gap
//! or double; `(user, envelope id)` is stored once; a message's mentions are
//! in its transaction. A store that fails answers an error (mapped to
//! `internal` for clients) and never a false success.

mod group;
mod model;
mod postgres;
mod sqlite;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::path::Path;
use std::sync::Arc;

pub use model::{
    mentions, Appended, ChatDraft, DocAppended, DocDraft, StoredChat, StoredDoc, StoredInbox,
    Unread, UNREAD_SNAPSHOT,
};

use crate::protocol::{Channel, ChatMessage, DocUpdateEvent, Notification, Timestamp, UserRef};

/// Why the store failed; shown to operators, mapped to `internal` for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection to PostgreSQL could be had in time (it is down, or
    /// every pooled connection is busy).
    #[error("PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("bad --database-url: {0}")]
    Url(String),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("the database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot start the database writer thread: {0}")]
    Thread(std::io::Error),
    /// Something stored is not what the code can read back.
    #[error("stored data is malformed: {0}")]
    Malformed(String),
    /// The writer stopped, or dropped this job without an answer (its
    /// after-commit callback panicked).
    #[error("the database writer is gone")]
    WriterGone,
    /// The database did not answer within the time a write or read may
    /// take; its connection was discarded.
    #[error("the database did not answer in time")]
    TimedOut,
    /// The job panicked inside the writer; only its own savepoint was undone.
    #[error("a database job panicked")]
    Panicked,
    /// The job ran, but the group it was committed with was not (or, on
    /// PostgreSQL, its `COMMIT` went unanswered: then it may be on disk, and
    /// a resend finds it).
    #[error("the group of writes was not committed: {0}")]
    NotCommitted(Arc<str>),
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Documents read back whole since the start (`pulse_doc_loads_total`):
    /// each one is a rebuild, so operators see a document reloaded too often.
    doc_loads: Counter,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// Runs the same call on whichever backend this store has.
macro_rules! either {
    ($store:expr, $db:ident => $call:expr) => {
        match &$store.backend {
            Backend::Sqlite($db) => $call,
            Backend::Postgres($db) => $call,
        }
    };
}

impl Store {
    /// The SQLite file at `path` (created, with its folder, if needed),
    /// migrated.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Store::over(Backend::Sqlite(sqlite::Sqlite::open(path)?)))
    }

    /// PostgreSQL at `url` (`postgres://user:password@host:port/database`),
    /// migrated by whichever instance takes the migration lock first.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Store::over(Backend::Postgres(
            postgres::Postgres::connect(url).await?,
        )))
    }

    fn over(backend: Backend) -> Self {
        Store {
            backend,
            doc_loads: Counter::default(),
        }
    }

    /// The store the flags ask for: PostgreSQL when `database_url` is set,
    /// else the SQLite file at `db`.
    pub async fn from_flags(db: &Path, database_url: Option<&str>) -> Result<Self, StoreError> {
        match database_url {
            Some(url) => Store::connect(url).await,
            None => Store::open(db),
        }
    }

    /// Which database runs, for the log: `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The database's round-trip time now (a `SELECT 1`), for the admin
    /// view; `None` for SQLite (no network between) or when it failed.
    pub async fn round_trip(&self) -> Option<std::time::Duration> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(db) => db.round_trip().await.ok(),
        }
    }

    /// How many transactions the writer has committed since the start.
    pub fn commits(&self) -> u64 {
        either!(self, db => db.commits())
    }

    /// What `/metrics` shows of the store: commits, their duration and
    /// documents loaded whole (clones sharing the store's values).
    pub fn metrics(&self) -> (Counter, Histogram, Counter) {
        let commits = either!(self, db => db.commit_metrics());
        (
            commits.count.clone(),
            commits.seconds.clone(),
            self.doc_loads.clone(),
        )
    }

    /// How many times a document was read back whole since the start.
    pub fn doc_loads(&self) -> u64 {
        self.doc_loads.get()
    }

    /// A chat channel's epoch, latest offset and newest `keep` messages,
    /// handed to `then` after everything queued before it is committed and
    /// before anything queued after it is published: nothing committed
    /// around the load is missed or published twice.
    pub async fn load_chat<R, F>(
        &self,
        channel: String,
        keep: usize,
        then: F,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(StoredChat) -> R + Send + 'static,
    {
        either!(self, db => db.load_chat(channel, keep, then).await)
    }

    /// Up to `limit` messages of `channel` before `offset`, oldest first.
    pub async fn chat_before(
        &self,
        channel: String,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        either!(self, db => db.chat_before(channel, offset, limit).await)
    }

    /// Where `user_id`'s message (or update) with envelope id `client_id`
    /// was stored, if it was.
    pub async fn sent(
        &self,
        user_id: String,
        client_id: String,
    ) -> Result<Option<(Channel, u64)>, StoreError> {
        either!(self, db => db.sent(user_id, client_id).await)
    }

    /// Appends the draft to its room with the next offset, with its
    /// mentions' notifications, in one transaction, unless this user already
    /// sent this `client_id`; `on_commit` gets what was stored, after the
    /// commit, in commit order.
    pub async fn append_chat<F>(
        &self,
        draft: ChatDraft,
        on_commit: F,
    ) -> Result<Appended, StoreError>
    where
        F: FnOnce(&Appended, &[Notification]) + Send + 'static,
    {
        either!(self, db => db.append_chat(draft, on_commit).await)
    }

    /// A document's epoch, latest offset, newest `keep` updates and the
    /// document itself, read in one snapshot (its compacted state and the
    /// rows after it, so a compaction is seen whole or not at all) and
    /// rebuilt on the blocking pool. A load is a read: it never waits for the
    /// writer, nor on PostgreSQL for the writers' cluster-wide lock. What is
    /// committed after its snapshot is the caller's to add (the hub keeps
    /// what is published while a document loads: `Hub::load_doc`).
    pub async fn load_doc(&self, doc_id: String, keep: usize) -> Result<StoredDoc, StoreError> {
        self.doc_loads.inc();
        either!(self, db => db.load_doc(doc_id, keep).await)
    }

    /// Up to `limit` stored updates of document `doc_id` after `offset`,
    /// oldest first (to fill a gap): a read, never a writer job.
    pub async fn doc_updates_after(
        &self,
        doc_id: String,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<DocUpdateEvent>, StoreError> {
        either!(self, db => db.doc_updates_after(doc_id, offset, limit).await)
    }

    /// Appends an update to its document's log with the next offset, unless
    /// this user already sent this `client_id`.
    pub async fn append_doc<F>(
        &self,
        draft: DocDraft,
        on_commit: F,
    ) -> Result<DocAppended, StoreError>
    where
        F: FnOnce(&DocAppended) + Send + 'static,
    {
        either!(self, db => db.append_doc(draft, on_commit).await)
    }

    /// Folds document `doc_id`'s log up to `upto` into its stored state and
    /// deletes the rows no resume needs; returns the offset now compacted.
    pub async fn compact_doc(&self, doc_id: String, upto: u64) -> Result<u64, StoreError> {
        either!(self, db => db.compact_doc(doc_id, upto).await)
    }

    /// How many update rows document `doc_id` keeps.
    pub async fn doc_rows(&self, doc_id: String) -> Result<u64, StoreError> {
        either!(self, db => db.doc_rows(doc_id).await)
    }

    /// Remembers an identified user (so mentions can find them).
    pub async fn remember_user(&self, user: UserRef, now: Timestamp) -> Result<(), StoreError> {
        either!(self, db => db.remember_user(user, now).await)
    }

    /// Stores a notification for `user_id` with the next offset of its
    /// channel; `on_commit` runs after the commit, in commit order.
    pub async fn append_notification<F>(
        &self,
        user_id: String,
        title: String,
        body: String,
        created_at: Timestamp,
        on_commit: F,
    ) -> Result<Notification, StoreError>
    where
        F: FnOnce(&Notification) + Send + 'static,
    {
        either!(self, db => db.append_notification(user_id, title, body, created_at, on_commit).await)
    }

    /// A user's notification channel, handed to `then` as
    /// [`Store::load_chat`] does.
    pub async fn load_inbox<R, F>(
        &self,
        user_id: String,
        keep: usize,
        then: F,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(StoredInbox) -> R + Send + 'static,
    {
        either!(self, db => db.load_inbox(user_id, keep, then).await)
    }

    /// Marks these notifications of `user_id` read; `on_commit` gets the ids
    /// that were unread and the user's [`Unread`] after the change.
    pub async fn mark_read<F>(
        &self,
        user_id: String,
        ids: Vec<String>,
        on_commit: F,
    ) -> Result<Vec<String>, StoreError>
    where
        F: FnOnce(&[String], Unread) + Send + 'static,
    {
        either!(self, db => db.mark_read(user_id, ids, on_commit).await)
    }
}

/// Test-only tools: holding SQLite's writer busy on purpose.
#[cfg(test)]
pub mod testing {
    pub use super::sqlite::testing::Held;

    /// Occupies the writer of a SQLite store; returns once it is held.
    pub async fn hold_writer(store: &super::Store) -> Held {
        match &store.backend {
            super::Backend::Sqlite(db) => super::sqlite::testing::hold_writer(db).await,
            super::Backend::Postgres(_) => panic!("hold_writer holds SQLite's writer only"),
        }
    }
}

#[cfg(test)]
mod tests;
