//! Owns the task plumbing every scenario shares: starting one task per
//! client at a paced rate, polling shared counters until a condition holds,
//! joining the client tasks within a grace period, and the pace of the
//! progress lines.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Time between two progress lines on stderr (every scenario).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often a waiting main task checks the counters.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Starts `count` tasks with `start(index)`, `rate` per second (task `index`
/// is due `index / rate` seconds in), until all are started or `stop` is
/// cancelled.
pub async fn launch_paced<T>(
    count: u64,
    rate: u32,
    stop: &CancellationToken,
    mut start: impl FnMut(u64) -> JoinHandle<T>,
) -> Vec<JoinHandle<T>> {
    let launched = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for index in 0..count {
        let due = launched + Duration::from_secs_f64(index as f64 / f64::from(rate));
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(due) => {}
        }
        handles.push(start(index));
    }
    handles
}

/// Waits until `done()` holds, `limit` passes or `stop` is cancelled.
pub async fn wait_until(stop: &CancellationToken, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline && !stop.is_cancelled() {
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Waits for every task, at most until `grace` from now; a task still
/// running then is aborted. Returns what the finished ones returned and how
/// many did not finish (aborted, or panicked).
pub async fn join_within<T>(handles: Vec<JoinHandle<T>>, grace: Duration) -> (Vec<T>, u64) {
    let deadline = tokio::time::Instant::now() + grace;
    let (mut finished, mut unfinished) = (Vec::with_capacity(handles.len()), 0);
    for mut handle in handles {
        match tokio::time::timeout_at(deadline, &mut handle).await {
            Ok(Ok(outcome)) => finished.push(outcome),
            Ok(Err(_)) => unfinished += 1,
            Err(_) => {
                handle.abort();
                unfinished += 1;
            }
        }
    }
    (finished, unfinished)
}
