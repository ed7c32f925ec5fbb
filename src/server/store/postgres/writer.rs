//! Owns the PostgreSQL backend's writer: one task per instance, fed by a
//! bounded queue of jobs, committing them in groups.
//!
//! A group is whatever is queued when the writer gets to it (up to
//! `MAX_GROUP` jobs): one transaction on a pooled connection, a savepoint
//! per job (a job that fails is rolled back alone and answers its error),
//! one `COMMIT`. Only after that commit does each job's callback run, in
//! queue order, and its caller get the answer (the queue, the group and its
//! answers are `store/group.rs`'s, as for SQLite). If the connection fails
//! (the database went away), the whole group answers an error: nothing of
//! it is acknowledged, whether or not the server got to commit it, and an
//! idempotent resend finds out which.
//!
//! Every group first takes one transaction-scoped advisory lock, shared by
//! all instances: groups of different instances never interleave, so two
//! groups that touch the same channels in opposite orders cannot deadlock,
//! and each commits whole or not at all. One group at a time is what SQLite
//! allows too; group commit is what makes it carry the load.

use std::panic::AssertUnwindSafe;

use deadpool_postgres::{Pool, Transaction};
use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::mpsc;

use super::{Work, WORK_LIMIT};
use crate::server::store::group::{self, Answer, Commits, Group, Jobs, Outcome, Queued};
use crate::server::store::StoreError;

/// The advisory lock every group holds until its commit ("pulse" + 1).
pub(in crate::server::store) const WRITE_LOCK: i64 = 0x7075_6c73_6501;

/// One unit of work for the writer; type-erased so that jobs with different
/// results share one queue. Answered after its group (`Answer`).
pub(super) trait Job: Answer {
    /// Runs inside the group's transaction, in the job's own savepoint, and
    /// keeps its result until the group is committed.
    fn run<'a>(&'a mut self, db: &'a Transaction<'a>) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<T, C, R> Job for Queued<Work<T>, T, C, R>
where
    T: Send,
    R: Send,
    C: FnOnce(T) -> R + Send,
{
    fn run<'a>(&'a mut self, db: &'a Transaction<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        let work = self.take_work();
        Box::pin(async move {
            if let Some(work) = work {
                let result = work(db).await?;
                self.keep(result);
            }
            Ok(())
        })
    }
}

/// Starts the writer task; the queue it returns is its only input.
pub(super) fn spawn(pool: Pool, commits: Commits) -> Jobs<dyn Job> {
    let (jobs, queue) = group::queue();
    tokio::spawn(run(pool, queue, commits));
    jobs
}

/// The writer: commits one group after another; ends when every handle is
/// gone and the queue is empty.
async fn run(pool: Pool, mut queue: mpsc::Receiver<Box<dyn Job>>, commits: Commits) {
    while let Some(mut group) = Group::next(&mut queue).await {
        let committed = run_group(&pool, group.outcomes())
            .await
            .map_err(|err| err.to_string());
        group.answer(committed, &commits);
    }
}

/// The transaction of one group: the lock, every job in its savepoint, then
/// the commit. An `Err` means nothing of the group may be acknowledged.
async fn run_group(pool: &Pool, outcomes: &mut [Outcome<dyn Job>]) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    match tokio::time::timeout(WORK_LIMIT, run_on(&mut client, outcomes)).await {
        Ok(done) => done,
        Err(_) => {
            // Mid-transaction and unanswered: never back into the pool.
            drop(deadpool_postgres::Object::take(client));
            Err(StoreError::TimedOut)
        }
    }
}

/// The group's transaction on `client`.
async fn run_on(
    client: &mut deadpool_postgres::Object,
    outcomes: &mut [Outcome<dyn Job>],
) -> Result<(), StoreError> {
    let mut transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await?;
    for (job, outcome) in outcomes.iter_mut() {
        let savepoint = transaction.savepoint("job").await?;
        let ran = AssertUnwindSafe(job.run(&savepoint))
            .catch_unwind()
            .await
            .unwrap_or(Err(StoreError::Panicked));
        match ran {
            Ok(()) => savepoint.commit().await?,
            // If the connection itself failed, this fails too, and with it
            // the group.
            Err(_) => savepoint.rollback().await?,
        }
        *outcome = ran;
    }
    transaction.commit().await?;
    Ok(())
}
