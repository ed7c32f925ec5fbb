//! Owns the reconnect storm: N clients subscribe to `ticker:` channels, then the
//! load generator closes every TCP connection itself at the same instant, and
//! each client reconnects on PROTOCOL.md's jittered backoff schedule (the
//! crate's own [`Backoff`](pulse::client::backoff::Backoff)) and resumes every channel with `since`
//! `{offset, epoch}`. The report says how long until all were back and
//! resumed, and checks the resume instead of trusting it: a client counts as
//! resumed without a gap only when every channel answered `recovered: true`
//! and every tick afterwards carried exactly the next offset, up to at least
//! the offset `subscribed` announced.
//!
//! Here: the run's phases (ramp-up, settle, drop, reconnect, checks). One
//! client is in `client.rs`, the offset checks of one channel in
//! `channel.rs`, the report in `report.rs`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::net;
use crate::plan::Plan;
use crate::tasks::{self, wait_until, PROGRESS_EVERY};
use client::run_client;
use report::Percentiles;
pub use report::StormReport;

mod channel;
mod client;
mod report;

/// How long after the drop the storm may take before the run gives up on
/// the clients still away. The server keeps 300 ticks per symbol (150 s at
/// 2 ticks/s), so later resumes could not recover anyway.
const STORM_DEADLINE: Duration = Duration::from_secs(120);

/// The storm's timings, from the flags.
#[derive(Debug, Clone, Copy)]
pub struct StormTimings {
    /// Ticks flow this long between the last first subscription and the drop.
    pub settle: Duration,
    /// Offsets are checked this long after the last client resumed.
    pub verify: Duration,
    /// New connections per second while ramping up.
    pub connect_rate: u32,
}

/// What the client tasks and the main task share.
struct StormShared {
    /// Clients whose first subscription is complete.
    subscribed: AtomicU64,
    /// Clients that gave up before the drop.
    failed_first: AtomicU64,
    /// Clients back and resumed after the drop.
    resumed: AtomicU64,
    /// Clients that gave up after the drop.
    gave_up: AtomicU64,
    /// Cancelled at the drop: every client closes its TCP connection.
    drop_now: CancellationToken,
    /// The instant of the drop, set before `drop_now` is cancelled.
    dropped_at: OnceLock<Instant>,
    /// Cancelled at the end of the run (or when the ramp-up times out).
    stop: CancellationToken,
}

/// Prints the storm's counters to stderr every [`PROGRESS_EVERY`].
fn spawn_progress(shared: Arc<StormShared>, clients: u64, started: Instant) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PROGRESS_EVERY);
        loop {
            interval.tick().await;
            eprintln!(
                "[{:>4}s] storm: subscribed {}/{clients}, back {}, gave up {}",
                started.elapsed().as_secs(),
                shared.subscribed.load(Relaxed),
                shared.resumed.load(Relaxed),
                shared.gave_up.load(Relaxed) + shared.failed_first.load(Relaxed),
            );
        }
    })
}

/// Runs the whole storm: ramp-up, settle, drop, reconnect, checks.
pub async fn run(
    plan: Arc<Plan>,
    clients: u64,
    timings: StormTimings,
    interrupted: CancellationToken,
) -> StormReport {
    let shared = Arc::new(StormShared {
        subscribed: AtomicU64::new(0),
        failed_first: AtomicU64::new(0),
        resumed: AtomicU64::new(0),
        gave_up: AtomicU64::new(0),
        drop_now: CancellationToken::new(),
        dropped_at: OnceLock::new(),
        stop: interrupted,
    });
    let started = Instant::now();
    let progress = spawn_progress(Arc::clone(&shared), clients, started);
    let stop = shared.stop.clone();
    let handles = tasks::launch_paced(clients, timings.connect_rate, &stop, |index| {
        tokio::spawn(run_client(index, Arc::clone(&plan), Arc::clone(&shared)))
    })
    .await;
    wait_until(&stop, STORM_DEADLINE, || {
        shared.subscribed.load(Relaxed) + shared.failed_first.load(Relaxed) >= clients
    })
    .await;
    tokio::select! {
        () = shared.stop.cancelled() => {}
        () = tokio::time::sleep(timings.settle) => {}
    }
    let ramp_up = started.elapsed();
    let dropped_at = Instant::now();
    let _ = shared.dropped_at.set(dropped_at);
    shared.drop_now.cancel();
    let subscribed = shared.subscribed.load(Relaxed);
    wait_until(&stop, STORM_DEADLINE, || {
        shared.resumed.load(Relaxed) + shared.gave_up.load(Relaxed) >= subscribed
    })
    .await;
    let all_back = (shared.resumed.load(Relaxed) >= subscribed).then(|| dropped_at.elapsed());
    tokio::select! {
        () = shared.stop.cancelled() => {}
        () = tokio::time::sleep(timings.verify) => {}
    }
    let duration = dropped_at.elapsed();
    shared.stop.cancel();

    let mut report = StormReport {
        clients_requested: clients,
        channels_per_client: plan.per_client,
        ramp_up_secs: ramp_up.as_secs_f64(),
        duration_secs: duration.as_secs_f64(),
        verify_secs: timings.verify.as_secs_f64(),
        ..StormReport::default()
    };
    let grace = net::CLOSE_TIMEOUT + Duration::from_secs(2);
    let (outcomes, unfinished) = tasks::join_within(handles, grace).await;
    report.unfinished_clients = unfinished;
    let mut back_times = Vec::new();
    for outcome in outcomes {
        back_times.extend(outcome.resumed_after);
        report.add(outcome);
    }
    progress.abort();
    report.all_back_secs = all_back.map(|d| d.as_secs_f64());
    report.back_ms = Percentiles::of(back_times);
    report
}
