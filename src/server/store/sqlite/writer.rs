//! Owns the store's only writer: one thread holding the read-write
//! connection, fed by a bounded queue of jobs, committing them in groups.
//!
//! A group is whatever is queued when the writer gets to it (up to
//! `MAX_GROUP` jobs): one `BEGIN IMMEDIATE`, a savepoint per job (a job that
//! fails is rolled back alone and answers its error), one `COMMIT` (one
//! fsync for the whole group). Only after that commit does each job's
//! callback run, in queue order, and its caller get the answer: whatever a
//! callback publishes is on disk, and publication keeps commit order.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::server::store::group::{answer_group, Answer, Commits, Pending};
use crate::server::store::StoreError;

/// How many jobs may wait for the writer; a caller finding it full waits
/// (asynchronously) for room, which is the back-pressure a slow disk exerts.
pub(super) const QUEUE_CAPACITY: usize = 1024;

/// The most jobs committed in one transaction: a bound on how long the first
/// job of a group waits for the last, and on how much one failed commit undoes.
pub(super) const MAX_GROUP: usize = 64;

/// One unit of work for the writer; type-erased so that jobs with different
/// results share one queue. Answered after its group (`Answer`).
pub(super) trait Job: Answer {
    /// Runs inside the group's transaction, in the job's own savepoint, and
    /// keeps its result until the group is committed.
    fn run(&mut self, db: &Connection) -> Result<(), StoreError>;
}

/// A job built from two closures: `work` (in the transaction) and `then`
/// (after the commit, producing the answer).
pub(super) struct Queued<T, W, C, R> {
    work: Option<W>,
    pending: Pending<T, C, R>,
}

impl<T, W, C, R> Queued<T, W, C, R> {
    pub(super) fn new(work: W, then: C, answer: oneshot::Sender<Result<R, StoreError>>) -> Self {
        Queued {
            work: Some(work),
            pending: Pending::new(then, answer),
        }
    }
}

impl<T, W, C, R> Job for Queued<T, W, C, R>
where
    T: Send,
    R: Send,
    W: FnOnce(&Connection) -> Result<T, StoreError> + Send,
    C: FnOnce(T) -> R + Send,
{
    fn run(&mut self, db: &Connection) -> Result<(), StoreError> {
        if let Some(work) = self.work.take() {
            self.pending.result = Some(work(db)?);
        }
        Ok(())
    }
}

impl<T, W, C, R> Answer for Queued<T, W, C, R>
where
    T: Send,
    R: Send,
    W: Send,
    C: FnOnce(T) -> R + Send,
{
    fn committed(self: Box<Self>) {
        Box::new(self.pending).committed()
    }

    fn failed(self: Box<Self>, error: StoreError) {
        Box::new(self.pending).failed(error)
    }
}

/// A job of the group being committed, and how its own part went.
type Outcome = (Box<dyn Job>, Result<(), StoreError>);

/// Starts the writer thread on `db`; the queue it returns is its only input.
pub(super) fn spawn(
    db: Connection,
    commits: Commits,
) -> Result<mpsc::Sender<Box<dyn Job>>, StoreError> {
    let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
    std::thread::Builder::new()
        .name("pulse-db-writer".into())
        .spawn(move || run(db, queue, &commits))
        .map_err(StoreError::Thread)?;
    Ok(jobs)
}

/// The writer thread: waits for a job, takes every job queued behind it (up
/// to `MAX_GROUP`), commits them as one group; ends when every `Store` handle
/// is gone and the queue is empty.
fn run(mut db: Connection, mut queue: mpsc::Receiver<Box<dyn Job>>, commits: &Commits) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.blocking_recv_many(&mut group, MAX_GROUP) > 0 {
        commit_group(&mut db, std::mem::take(&mut group), commits);
    }
}

/// Runs `group` in one transaction and answers every job of it.
fn commit_group(db: &mut Connection, group: Vec<Box<dyn Job>>, commits: &Commits) {
    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = group.into_iter().map(|job| (job, Ok(()))).collect();
    let committed = run_group(db, &mut outcomes);
    answer_group(outcomes, committed, commits, started);
}

/// The transaction of one group: every job in its savepoint, then the
/// commit. An `Err` means nothing of the group is on disk.
fn run_group(db: &mut Connection, outcomes: &mut [Outcome]) -> Result<(), String> {
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
