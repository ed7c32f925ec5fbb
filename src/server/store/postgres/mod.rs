//! Owns the PostgreSQL backend (`--database-url postgres://…`): a bounded
//! pool of connections that replaces broken ones by itself, the versioned
//! schema (`migrations.rs`), and every read and write of persisted channels
//! (`chat.rs`, `notifications.rs`, `docs.rs`), with the promises SQLite's
//! backend keeps.
//!
//! Writes go to one writer task per instance (`writer.rs`), which commits
//! whatever is queued as one transaction and runs each write's callback
//! after that commit, in queue order: what an instance publishes keeps its
//! commit order, as with SQLite. Several instances may write to one
//! database: a channel's next offset comes from its row in `channels`
//! (`channels.rs`), incremented in the transaction (no gap: a rolled-back
//! transaction takes its increment with it), and `(user, envelope id)` is a
//! primary key. A channel gets its row with its first write, in the
//! database's epoch, so a load writes nothing.
//! Reads take a pooled connection of their own and never wait for writes.
//!
//! When the database goes away, a write waits at most for the pool's
//! timeouts and then fails (never a false success); the pool connects again
//! when it is back, with no restart.

mod channels;
mod chat;
mod docs;
mod migrations;
mod notifications;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use super::group::{Commits, Jobs, Queued};
use super::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use futures_util::future::BoxFuture;
use writer::Job;
/// For tests that hold the writers' lock from another session.
#[cfg(test)]
pub(super) use writer::WRITE_LOCK;

/// Connections one instance holds for reads at most; the writer has a pool
/// of its own, of one connection, so reads can never starve writes.
const READ_POOL_SIZE: usize = 8;
const WRITER_POOL_SIZE: usize = 1;

/// How long a write or read waits for a connection (a free one, or a new
/// one while the database is unreachable) before it fails.
const CONNECTION_WAIT: Duration = Duration::from_secs(5);

/// The most one group of writes (or one read) may take, start to end,
/// before it is given up and its connection discarded: a database that
/// hangs (a frozen host, a half-open socket) answers `internal`, not never.
pub(super) const WORK_LIMIT: Duration = Duration::from_secs(15);

/// Server-side limits of every session: a statement or a lock wait longer
/// than 10 s fails, and a session idle inside a transaction for 15 s (its
/// instance froze while holding the writers' lock) is ended, which frees
/// the lock for the other instances.
const SESSION_OPTIONS: &str = "-c statement_timeout=10000 -c lock_timeout=10000 \
     -c idle_in_transaction_session_timeout=15000";

/// Dead peers are noticed within about this long (TCP keepalive and user
/// timeout), not after the kernel's two hours.
const DEAD_PEER: Duration = Duration::from_secs(10);

/// A transaction body: borrows the transaction for as long as it runs.
pub(super) type Work<T> =
    Box<dyn for<'a> FnOnce(&'a Transaction<'a>) -> BoxFuture<'a, Result<T, StoreError>> + Send>;

/// A handle to the database; cheap to clone. The writer task ends when the
/// last handle is dropped, after the jobs already queued.
#[derive(Clone)]
pub(super) struct Postgres {
    /// Connections for reads (`read`); the writer has its own.
    pool: Pool,
    /// Into the writer task (`writer::run`).
    jobs: Jobs<dyn Job>,
    /// Transactions the writer has committed.
    commits: Commits,
    /// The database's epoch (`pulse_epoch`): a channel's until its first
    /// write, which stores it in the channel's row.
    epoch: Arc<str>,
}

impl Postgres {
    /// Builds the pool for `url`, migrates the schema (under the migration
    /// lock, so one instance of several does it) and starts the writer.
    pub(super) async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut config = parse_url(url)?;
        let options = match config.get_options() {
            Some(theirs) => format!("{SESSION_OPTIONS} {theirs}"),
            None => SESSION_OPTIONS.to_owned(),
        };
        config
            .options(&options)
            .connect_timeout(CONNECTION_WAIT)
            .keepalives(true)
            .keepalives_idle(DEAD_PEER)
            .tcp_user_timeout(DEAD_PEER);
        let pool = pool_of(config.clone(), READ_POOL_SIZE)?;
        let writer_pool = pool_of(config, WRITER_POOL_SIZE)?;
        migrations::migrate(&writer_pool, migrations::latest_version()).await?;
        let epoch = migrations::epoch(&writer_pool).await?;
        let commits = Commits::default();
        let jobs = writer::spawn(writer_pool, commits.clone());
        Ok(Postgres {
            pool,
            jobs,
            commits,
            epoch,
        })
    }

    /// Queues `work` for the writer and waits for its answer: `work` runs in
    /// the writer's transaction (in its own savepoint), and `then` turns its
    /// result into the answer after the commit, in queue order.
    async fn write<T, R, C>(&self, work: Work<T>, then: C) -> Result<R, StoreError>
    where
        T: Send + 'static,
        R: Send + 'static,
        C: FnOnce(T) -> R + Send + 'static,
    {
        self.jobs
            .write(|answer| -> Box<dyn Job> { Box::new(Queued::new(work, then, answer)) })
            .await
    }

    /// Runs `work` in a read-only transaction on a pooled connection of its
    /// own (one snapshot for everything it reads).
    async fn read<T>(&self, work: Work<T>) -> Result<T, StoreError> {
        let mut client = self.pool.get().await?;
        let read = async {
            let transaction = client
                .build_transaction()
                .read_only(true)
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .start()
                .await?;
            let result = work(&transaction).await?;
            transaction.commit().await?;
            Ok(result)
        };
        match tokio::time::timeout(WORK_LIMIT, read).await {
            Ok(result) => result,
            Err(_) => {
                // Mid-transaction and unanswered: never back into the pool.
                drop(deadpool_postgres::Object::take(client));
                Err(StoreError::TimedOut)
            }
        }
    }

    /// One `SELECT 1` on a pooled connection, timed from sending it to its
    /// answer (the admin view's round-trip time; taking the connection from
    /// the pool is not counted). Bounded by the reads' limit.
    pub(super) async fn round_trip(&self) -> Result<std::time::Duration, StoreError> {
        let client = self.pool.get().await?;
        let started = std::time::Instant::now();
        match tokio::time::timeout(WORK_LIMIT, client.simple_query("SELECT 1")).await {
            Ok(answer) => {
                answer?;
                Ok(started.elapsed())
            }
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(StoreError::TimedOut)
            }
        }
    }

    /// How many transactions the writer has committed since `connect`.
    pub(super) fn commits(&self) -> u64 {
        self.commits.count.get()
    }

    /// The writer's commit count and durations (`/metrics`).
    pub(super) fn commit_metrics(&self) -> &Commits {
        &self.commits
    }
}

/// The connection settings in `url` (`postgres://user:password@host/db`).
fn parse_url(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    url.parse()
        .map_err(|err: tokio_postgres::Error| StoreError::Url(err.to_string()))
}

/// A pool of at most `size` connections to `config`.
fn pool_of(config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        // A connection whose socket closed (the server restarted) is
        // replaced when it is next taken from the pool.
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(CONNECTION_WAIT))
        .create_timeout(Some(CONNECTION_WAIT))
        .recycle_timeout(Some(CONNECTION_WAIT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|err| StoreError::Url(err.to_string()))
}

/// An offset as PostgreSQL stores it (`BIGINT`).
fn to_db(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

/// An offset read back from a `BIGINT` column.
fn from_db(offset: i64) -> u64 {
    u64::try_from(offset).unwrap_or(0)
}

/// For tests of an upgrade: the database at `url` brought to schema
/// `version` only, then `sql` run on it (the data an older Pulse stored).
#[cfg(test)]
pub(super) async fn at_version(url: &str, version: usize, sql: &str) -> Result<(), StoreError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let pool = pool_of(parse_url(url)?, 1)?;
    migrations::migrate(&pool, version).await?;
    client.batch_execute(sql).await?;
    Ok(())
}

/// For tests: the schema version of the database at `url`, and the latest.
#[cfg(test)]
pub(super) async fn schema_version(url: &str) -> Result<(usize, usize), StoreError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let version: i32 = client
        .query_one("SELECT version FROM pulse_schema", &[])
        .await?
        .get(0);
    Ok((version as usize, migrations::latest_version()))
}

#[cfg(test)]
mod tests;
