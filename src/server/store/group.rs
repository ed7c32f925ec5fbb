//! Owns what both backends' writers share about a group of jobs committed
//! together: each job's answer, kept back until its group's commit, and
//! answering the whole group once the commit went one way or the other.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::StoreError;

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

/// A job's result between its run and its group's commit, the callback
/// that turns it into the answer, and the caller waiting for that answer.
pub(super) struct Pending<T, C, R> {
    pub(super) result: Option<T>,
    then: C,
    answer: oneshot::Sender<Result<R, StoreError>>,
}

impl<T, C, R> Pending<T, C, R> {
    pub(super) fn new(then: C, answer: oneshot::Sender<Result<R, StoreError>>) -> Self {
        Pending {
            result: None,
            then,
            answer,
        }
    }
}

impl<T, C, R> Answer for Pending<T, C, R>
where
    T: Send,
    R: Send,
    C: FnOnce(T) -> R + Send,
{
    fn committed(self: Box<Self>) {
        let Pending {
            result,
            then,
            answer,
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

/// Answers every job of a group, in queue order: after a commit, each job
/// that succeeded gets its callback run (a panicking callback loses only its
/// own answer) and each that failed its error; when the group was not
/// committed (`Err(reason)`), every job fails, with its own error if it had
/// one.
pub(super) fn answer_group<J: Answer + ?Sized>(
    outcomes: Vec<(Box<J>, Result<(), StoreError>)>,
    committed: Result<(), String>,
    commits: &Commits,
    started: Instant,
) {
    match committed {
        Ok(()) => {
            commits.seconds.observe(started.elapsed().as_secs_f64());
            commits.count.inc();
            for (job, outcome) in outcomes {
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
            for (job, outcome) in outcomes {
                let err = outcome
                    .err()
                    .unwrap_or_else(|| StoreError::NotCommitted(reason.clone()));
                job.failed(err);
            }
        }
    }
}
