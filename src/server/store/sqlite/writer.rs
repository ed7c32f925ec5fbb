//! Owns the store's only writer: one thread holding the read-write
//! connection, fed by a bounded queue of jobs, committing them in groups.
//!
//! A group is whatever is queued when the writer gets to it (up to
//! `MAX_GROUP` jobs): one `BEGIN IMMEDIATE`, a savepoint per job (a job that
//! fails is rolled back alone and answers its error), one `COMMIT` (one
//! fsync for the whole group). Only after that commit does each job's
//! callback run, in queue order, and its caller get the answer: whatever a
//! callback publishes is on disk, and publication keeps commit order. The
//! queue, the group and its answers are `store/group.rs`'s; the thread and
//! the transaction are this file's.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::mpsc;

use crate::server::store::group::{self, Answer, Commits, Group, Jobs, Outcome, Queued};
use crate::server::store::StoreError;

/// One unit of work for the writer; type-erased so that jobs with different
/// results share one queue. Answered after its group (`Answer`).
pub(super) trait Job: Answer {
    /// Runs inside the group's transaction, in the job's own savepoint, and
    /// keeps its result until the group is committed.
    fn run(&mut self, db: &Connection) -> Result<(), StoreError>;
}

impl<T, W, C, R> Job for Queued<W, T, C, R>
where
    T: Send,
    R: Send,
    W: FnOnce(&Connection) -> Result<T, StoreError> + Send,
    C: FnOnce(T) -> R + Send,
{
    fn run(&mut self, db: &Connection) -> Result<(), StoreError> {
        if let Some(work) = self.take_work() {
            let result = work(db)?;
            self.keep(result);
        }
        Ok(())
    }
}

/// Starts the writer thread on `db`; the queue it returns is its only input.
pub(super) fn spawn(db: Connection, commits: Commits) -> Result<Jobs<dyn Job>, StoreError> {
    let (jobs, queue) = group::queue();
    std::thread::Builder::new()
        .name("pulse-db-writer".into())
        .spawn(move || run(db, queue, &commits))
        .map_err(StoreError::Thread)?;
    Ok(jobs)
}

/// The writer thread: commits one group after another; ends when every
/// `Store` handle is gone and the queue is empty.
fn run(mut db: Connection, mut queue: mpsc::Receiver<Box<dyn Job>>, commits: &Commits) {
    while let Some(mut group) = Group::next_blocking(&mut queue) {
        let committed = run_group(&mut db, group.outcomes());
        group.answer(committed, commits);
    }
}

/// The transaction of one group: every job in its savepoint, then the
/// commit. An `Err` means nothing of the group is on disk.
fn run_group(db: &mut Connection, outcomes: &mut [Outcome<dyn Job>]) -> Result<(), String> {
    let mut transaction = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|err| err.to_string())?;
    for (job, outcome) in outcomes.iter_mut() {
        *outcome = run_job(&mut transaction, job.as_mut());
        // Some errors (a full disk, an I/O error) make SQLite roll back the
        // whole transaction; the jobs before this one are gone with it.
        if transaction.is_autocommit() {
            return Err("SQLite rolled the transaction back".into());
        }
    }
    transaction.commit().map_err(|err| err.to_string())
}

/// One job in its own savepoint: kept when it succeeds, rolled back (and
/// only it) when it fails or panics.
fn run_job(transaction: &mut Transaction<'_>, job: &mut dyn Job) -> Result<(), StoreError> {
    let savepoint = transaction.savepoint()?;
    let ran =
        catch_unwind(AssertUnwindSafe(|| job.run(&savepoint))).unwrap_or(Err(StoreError::Panicked));
    if ran.is_ok() {
        savepoint.commit()?;
    }
    // Otherwise dropping the savepoint rolls back to it and releases it.
    ran
}
