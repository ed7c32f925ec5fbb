//! Owns the writer plumbing both backends share: the bounded queue into a
//! writer and a caller's wait for its answer, taking a group of jobs off
//! that queue, each job's result kept until its group's commit, and
//! answering the whole group once the commit went one way or the other
//! (callbacks in queue order). What runs a group — SQLite's thread on its
//! file, PostgreSQL's task on a pooled connection — is the backend's
//! (`sqlite/writer.rs`, `postgres/writer.rs`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// How many jobs may wait for a writer; a caller finding the queue full
/// waits (asynchronously) for room, which is the back-pressure a slow
/// database exerts.
pub(super) const QUEUE_CAPACITY: usize = 1024;

/// The most jobs committed in one transaction: a bound on how long the first
/// job of a group waits for the last, and on how much one failed commit undoes.
pub(super) const MAX_GROUP: usize = 64;

/// What a writer counts of its commits (`pulse_store_commits_total` and
/// `pulse_store_commit_seconds`); cheap to clone, the clones share the values.
#[derive(Debug, Clone)]
pub struct Commits {
    /// Groups committed (one transaction, one fsync each).
    pub count: Counter,
    /// Time from a group's first statement to its commit done.
    pub seconds: Histogram,
}

impl Default for Commits {
    fn default() -> Self {
        Commits {
            count: Counter::default(),
            // 100 µs to ~3 s.
            seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
        }
    }
}

/// How a job of a group is answered once the group is over.
pub(super) trait Answer: Send {
    /// After the commit: runs the job's callback and answers its caller.
    fn committed(self: Box<Self>);
    /// Answers `error`: the job itself, or its group, failed.
    fn failed(self: Box<Self>, error: StoreError);
}

/// A job as queued: its transaction body `work` (whose shape is the
/// backend's: each backend's `Job::run` runs it), its result between its run
/// and its group's commit, the callback `then` that turns that result into
/// the answer, and the caller waiting for the answer.
pub(super) struct Queued<W, T, C, R> {
    work: Option<W>,
    result: Option<T>,
    then: C,
    answer: oneshot::Sender<Result<R, StoreError>>,
}

impl<W, T, C, R> Queued<W, T, C, R> {
    pub(super) fn new(work: W, then: C, answer: oneshot::Sender<Result<R, StoreError>>) -> Self {
        Queued {
            work: Some(work),
            result: None,
            then,
            answer,
        }
    }

    /// The transaction body, the first time (a job runs once).
    pub(super) fn take_work(&mut self) -> Option<W> {
        self.work.take()
    }

    /// Keeps what the body returned until the group is committed.
    pub(super) fn keep(&mut self, result: T) {
        self.result = Some(result);
    }
}

impl<W, T, C, R> Answer for Queued<W, T, C, R>
where
    W: Send,
    T: Send,
    R: Send,
    C: FnOnce(T) -> R + Send,
{
    fn committed(self: Box<Self>) {
        let Queued {
            result,
            then,
            answer,
            ..
        } = *self;
        // The job ran before any commit, so its result is there.
        let answered = result.map(then).ok_or(StoreError::WriterGone);
        // The caller may have gone (its connection closed): the write stands.
        let _ = answer.send(answered);
    }

    fn failed(self: Box<Self>, error: StoreError) {
        let _ = self.answer.send(Err(error));
    }
}

/// The way into a writer: its bounded queue of jobs (`J`, the backend's
/// `dyn Job`); cheap to clone. The writer ends when every clone is gone,
/// after the jobs already queued.
pub(super) struct Jobs<J: ?Sized> {
    /// Into the writer (`Group::next` / `Group::next_blocking`).
    queue: mpsc::Sender<Box<J>>,
}

impl<J: ?Sized> Clone for Jobs<J> {
    fn clone(&self) -> Self {
        Jobs {
            queue: self.queue.clone(),
        }
    }
}

/// A writer's queue: the handle callers write through, and the receiver its
/// writer takes groups from.
pub(super) fn queue<J: ?Sized>() -> (Jobs<J>, mpsc::Receiver<Box<J>>) {
    let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
    (Jobs { queue }, jobs)
}

impl<J: ?Sized> Jobs<J> {
    /// Queues the job `job` builds around the sender of its answer (waiting,
    /// asynchronously, while the queue is full) and waits for that answer,
    /// which comes after the job's group is over.
    pub(super) async fn write<R: Send + 'static>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<R, StoreError>>) -> Box<J>,
    ) -> Result<R, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(job(answer))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        // Unit tests run on a paused clock (`start_paused`), and a
        // current-thread runtime that sees nothing to do jumps that clock to
        // its next timer: it cannot see a writer thread (or a database)
        // working, so every write would fire heartbeat and hello deadlines
        // early. A blocking task is something tokio's test clock waits for.
        // Production awaits the answer directly and holds no thread.
        #[cfg(test)]
        let answered = tokio::task::spawn_blocking(move || answered.blocking_recv()).await?;
        #[cfg(not(test))]
        let answered = answered.await;
        answered.map_err(|_| StoreError::WriterGone)?
    }

    /// How many jobs wait in the queue now.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// A job of a group, and how its own part went.
pub(super) type Outcome<J> = (Box<J>, Result<(), StoreError>);

/// The jobs a writer took off its queue to commit together, in queue order.
pub(super) struct Group<J: ?Sized> {
    outcomes: Vec<Outcome<J>>,
    /// When the writer took it: the start of `pulse_store_commit_seconds`.
    started: Instant,
}

impl<J: ?Sized + Answer> Group<J> {
    /// Waits for a job and takes every job queued behind it (up to
    /// `MAX_GROUP`), blocking the thread (SQLite's writer has one of its
    /// own); `None` once every [`Jobs`] handle is gone and the queue is empty.
    pub(super) fn next_blocking(queue: &mut mpsc::Receiver<Box<J>>) -> Option<Self> {
        let mut jobs = Vec::with_capacity(MAX_GROUP);
        (queue.blocking_recv_many(&mut jobs, MAX_GROUP) > 0).then(|| Group::of(jobs))
    }

    /// [`Group::next_blocking`] for a writer that is a task.
    pub(super) async fn next(queue: &mut mpsc::Receiver<Box<J>>) -> Option<Self> {
        let mut jobs = Vec::with_capacity(MAX_GROUP);
        (queue.recv_many(&mut jobs, MAX_GROUP).await > 0).then(|| Group::of(jobs))
    }

    fn of(jobs: Vec<Box<J>>) -> Self {
        Group {
            outcomes: jobs.into_iter().map(|job| (job, Ok(()))).collect(),
            started: Instant::now(),
        }
    }

    /// Each job, and where its writer puts how the job's own part went.
    pub(super) fn outcomes(&mut self) -> &mut [Outcome<J>] {
        &mut self.outcomes
    }

    /// Answers every job, in queue order: after a commit, each job that
    /// succeeded gets its callback run (a panicking callback loses only its
    /// own answer) and each that failed its error; when the group was not
    /// committed (`Err(reason)`), every job fails, with its own error if it
    /// had one.
    pub(super) fn answer(self, committed: Result<(), String>, commits: &Commits) {
        match committed {
            Ok(()) => {
                commits
                    .seconds
                    .observe(self.started.elapsed().as_secs_f64());
                commits.count.inc();
                for (job, outcome) in self.outcomes {
                    match outcome {
                        Ok(()) => {
                            if catch_unwind(AssertUnwindSafe(|| job.committed())).is_err() {
                                tracing::error!("a store callback panicked after its commit");
                            }
                        }
                        Err(err) => job.failed(err),
                    }
                }
            }
            Err(reason) => {
                tracing::error!(%reason, "a group of writes was not committed");
                let reason: Arc<str> = reason.into();
                for (job, outcome) in self.outcomes {
                    let err = outcome
                        .err()
                        .unwrap_or_else(|| StoreError::NotCommitted(reason.clone()));
                    job.failed(err);
                }
            }
        }
    }
}
