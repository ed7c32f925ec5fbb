//! Owns the stream, idle and abuse runs: N clients ramp up at a paced rate,
//! say `hello` (and in stream and abuse modes subscribe to their share of the
//! universe), then read and time every `tick` for `--duration` seconds while
//! the progress line ticks on stderr; abuse mode adds its two abusers for the
//! measurement window. Ends with every socket closed normally and the
//! outcomes added up into a [`Report`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::args::{Args, Mode};
use crate::net::{CLOSE_TIMEOUT, CONNECT_TIMEOUT};
use crate::plan::Plan;
use crate::tasks::{self, PROGRESS_EVERY};
use crate::{abuse, latency};
use client::{run_client, ClientOutcome};
pub use report::Report;
use report::Tally;

mod client;
mod report;

/// What the client tasks and the main task share.
struct Shared {
    /// Clients that have connected or failed to.
    attempts_done: AtomicU64,
    /// Clients whose handshake succeeded.
    connected: AtomicU64,
    /// Sockets open right now.
    open: AtomicU64,
    /// Server messages received so far (batches unpacked), for the progress lines.
    messages: AtomicU64,
    /// Whether the measurement window is open.
    measuring: AtomicBool,
    /// Whether Ctrl-C ended the run.
    interrupted: Arc<AtomicBool>,
    /// Cancelled when the run ends: the clients close their sockets.
    stop: CancellationToken,
    /// Tick latencies in microseconds, from the measurement window only.
    latency: Mutex<Histogram<u64>>,
}

impl Shared {
    /// Fresh counters and an empty histogram; `stop` ends the run and
    /// `interrupted` says whether Ctrl-C did.
    fn new(stop: CancellationToken, interrupted: Arc<AtomicBool>) -> Self {
        Shared {
            attempts_done: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            open: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            interrupted,
            stop,
            latency: Mutex::new(latency::histogram()),
        }
    }
}

/// Runs ramp-up, measurement (with the abusers in abuse mode) and close, and
/// returns the report.
pub async fn run(
    args: &Args,
    plan: Arc<Plan>,
    stop: CancellationToken,
    interrupted: Arc<AtomicBool>,
) -> Report {
    let shared = Arc::new(Shared::new(stop, interrupted));
    let started = Instant::now();
    let progress = spawn_progress(Arc::clone(&shared), args.clients, started);
    let launcher = tokio::spawn(launch_clients(
        Arc::clone(&plan),
        Arc::clone(&shared),
        args.clients,
        args.connect_rate,
    ));

    let ramp_limit = Duration::from_secs_f64(args.clients as f64 / f64::from(args.connect_rate))
        + CONNECT_TIMEOUT
        + Duration::from_secs(1);
    wait_for_ramp_up(&shared, args.clients, ramp_limit).await;
    let ramp_up = started.elapsed();
    let abusers = (args.mode == Mode::Abuse)
        .then(|| abuse::Abusers::start(&plan, args.chat_rate, shared.stop.child_token()));
    let window = measure(&shared, Duration::from_secs(args.duration)).await;
    let abuse = match abusers {
        Some(abusers) => Some(abusers.finish(window).await),
        None => None,
    };
    shared.stop.cancel();

    let handles = launcher.await.unwrap_or_default();
    let tally = collect(
        handles,
        CONNECT_TIMEOUT + CLOSE_TIMEOUT + Duration::from_secs(2),
    )
    .await;
    progress.abort();

    let mut report = Report::new(args, &plan, tally, &shared, ramp_up, window);
    report.abuse = abuse;
    report
}

/// Starts one task per client, `rate` per second, until all are started or
/// the run stops.
async fn launch_clients(
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    clients: u64,
    rate: u32,
) -> Vec<JoinHandle<ClientOutcome>> {
    let stop = shared.stop.clone();
    tasks::launch_paced(clients, rate, &stop, |index| {
        tokio::spawn(run_client(index, Arc::clone(&plan), Arc::clone(&shared)))
    })
    .await
}

/// Waits until every client has connected or failed, at most `limit` (or
/// until the run is stopped).
async fn wait_for_ramp_up(shared: &Shared, clients: u64, limit: Duration) {
    tasks::wait_until(&shared.stop, limit, || {
        shared.attempts_done.load(Relaxed) >= clients
    })
    .await;
}

/// Keeps the measurement window open for `duration` (or until Ctrl-C) and
/// returns how long it really was open.
async fn measure(shared: &Shared, duration: Duration) -> Duration {
    let opened = Instant::now();
    shared.measuring.store(true, Relaxed);
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = shared.stop.cancelled() => {}
    }
    shared.measuring.store(false, Relaxed);
    opened.elapsed()
}

/// Prints a line to stderr every [`PROGRESS_EVERY`]: the phase, clients
/// connected and open, and server messages per second since the last line.
fn spawn_progress(shared: Arc<Shared>, clients: u64, started: Instant) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PROGRESS_EVERY);
        interval.tick().await; // the first tick is immediate
        let (mut last_at, mut last_count) = (Instant::now(), 0);
        loop {
            interval.tick().await;
            let (now, count) = (Instant::now(), shared.messages.load(Relaxed));
            let per_sec = (count - last_count) as f64 / now.duration_since(last_at).as_secs_f64();
            let phase = if shared.stop.is_cancelled() {
                "closing"
            } else if shared.measuring.load(Relaxed) {
                "measuring"
            } else {
                "ramping up"
            };
            eprintln!(
                "[{:>4}s] {phase}: connected {}/{clients}, open {}, {per_sec:.0} msgs/s",
                started.elapsed().as_secs(),
                shared.connected.load(Relaxed),
                shared.open.load(Relaxed),
            );
            (last_at, last_count) = (now, count);
        }
    })
}

/// Waits for every client task (each closes its socket within
/// [`CLOSE_TIMEOUT`]) and adds up their outcomes; a task still running after
/// `grace` is aborted and counted as unfinished.
async fn collect(handles: Vec<JoinHandle<ClientOutcome>>, grace: Duration) -> Tally {
    let (outcomes, unfinished) = tasks::join_within(handles, grace).await;
    let mut tally = Tally::default();
    tally.unfinished = unfinished;
    for outcome in outcomes {
        tally.add(outcome);
    }
    tally
}
