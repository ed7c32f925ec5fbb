//! Owns the reconnect storm: N clients subscribe to `ticker:` channels, then the
//! load generator closes every TCP connection itself at the same instant, and
//! each client reconnects on PROTOCOL.md's jittered backoff schedule (the
//! crate's own [`Backoff`]) and resumes every channel with `since`
//! `{offset, epoch}`. The report says how long until all were back and
//! resumed, and checks the resume instead of trusting it: a client counts as
//! resumed without a gap only when every channel answered `recovered: true`
//! and every tick afterwards carried exactly the next offset, up to at least
//! the offset `subscribed` announced.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pulse::client::backoff::Backoff;
use pulse::protocol::{
    ClientMessage, CloseCode, Hello, ServerEnvelope, ServerMessage, Since, Subscribe,
    SubscribeChannel, Subscribed, Tick,
};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::net::{self, Ws};
use crate::tasks::{self, wait_until};
use crate::{Plan, PROGRESS_EVERY};

/// Connection attempts one client makes per phase (first connect, then after
/// the drop) before it gives up: with the schedule capped at 30 s, ten
/// attempts span at most about three minutes.
const MAX_ATTEMPTS: u32 = 10;
/// How long a client waits for all its `subscribed` answers once connected.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
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

/// One channel as one client sees it.
#[derive(Debug)]
struct ChannelView {
    name: String,
    epoch: Option<String>,
    /// The last offset seen (from `subscribed` or a tick).
    last: Option<u64>,
    /// The latest offset the resume's `subscribed` announced.
    resume_target: Option<u64>,
    recovered: Option<bool>,
    /// Ticks after the resume whose offset skipped some.
    gaps: u64,
    /// Offsets skipped in total after the resume.
    missing: u64,
    /// Of those, skips inside the replay (offsets up to `resume_target`),
    /// which the protocol forbids on a recovered channel; skips past it are
    /// live ticks the server conflated for a slow reader, which it allows.
    replay_gaps: u64,
    replay_missing: u64,
    /// Ticks after the resume whose offset was not new.
    duplicates: u64,
    /// Offset jumps before the drop (conflation would show here).
    gaps_before: u64,
}

impl ChannelView {
    fn new(name: String) -> Self {
        ChannelView {
            name,
            epoch: None,
            last: None,
            resume_target: None,
            recovered: None,
            gaps: 0,
            missing: 0,
            replay_gaps: 0,
            replay_missing: 0,
            duplicates: 0,
            gaps_before: 0,
        }
    }

    /// Takes a `subscribed` answer. On a resume that recovered, `last` stays
    /// the `since` offset so that the replay is checked from its first tick.
    fn on_subscribed(&mut self, answer: &Subscribed, resuming: bool) {
        if resuming {
            self.recovered = Some(answer.recovered);
            self.resume_target = Some(answer.offset);
            if answer.recovered && self.epoch.as_deref() == Some(answer.epoch.as_str()) {
                return;
            }
        }
        self.epoch = Some(answer.epoch.clone());
        self.last = Some(answer.offset);
    }

    fn on_tick(&mut self, tick: &Tick, resumed: bool) {
        let Some(last) = self.last else {
            self.last = Some(tick.offset);
            return;
        };
        if tick.offset <= last {
            if resumed {
                self.duplicates += 1;
            }
            return;
        }
        if tick.offset > last + 1 {
            if resumed {
                self.gaps += 1;
                self.missing += tick.offset - last - 1;
                if let Some(target) = self.resume_target.filter(|&target| last < target) {
                    self.replay_gaps += 1;
                    self.replay_missing += (tick.offset - 1).min(target) - last;
                }
            } else {
                self.gaps_before += 1;
            }
        }
        self.last = Some(tick.offset);
    }

    fn since(&self) -> Option<Since> {
        Some(Since {
            offset: self.last?,
            epoch: self.epoch.clone()?,
        })
    }

    /// Recovered, no gap, no duplicate, and the replay reached the offset
    /// the server announced.
    fn resumed_without_gap(&self) -> bool {
        self.replay_complete() && self.gaps == 0
    }

    /// Recovered, and the replay delivered every offset from `since` up to
    /// the one the server announced, none twice; live ticks after it may
    /// have been conflated.
    fn replay_complete(&self) -> bool {
        self.recovered == Some(true)
            && self.replay_gaps == 0
            && self.duplicates == 0
            && match (self.last, self.resume_target) {
                (Some(last), Some(target)) => last >= target,
                _ => false,
            }
    }
}

/// What happened to one client.
#[derive(Debug, Default)]
struct StormOutcome {
    subscribed_first: bool,
    resumed_after: Option<Duration>,
    channels: Vec<ChannelView>,
    /// Attempts after the drop (the successful one included).
    attempts: u64,
    refused_first: u64,
    refused_storm: u64,
    /// Failures other than 1013, per kind.
    errors: BTreeMap<String, u64>,
    /// The server closed the socket before the drop.
    closed_before_drop: Option<u16>,
    /// The server closed the socket after the resume.
    closed_after_resume: Option<u16>,
    ticks_after_resume: u64,
}

/// Why one connection attempt did not end subscribed.
enum Failure {
    /// Closed with 1013 (try again later).
    Refused,
    Other(String),
}

/// Connects, says `hello {}`, subscribes to the client's channels (with
/// `since` when resuming) and reads until every channel is answered.
async fn attempt(
    plan: &Plan,
    index: u64,
    views: &mut [ChannelView],
    resuming: bool,
    ticks: &mut u64,
) -> Result<Ws, Failure> {
    let mut ws = net::connect(plan, index).await.map_err(Failure::Other)?;
    let channels = views
        .iter()
        .map(|view| SubscribeChannel {
            channel: view.name.clone(),
            since: if resuming { view.since() } else { None },
        })
        .collect();
    let greeted = async {
        net::send_message(&mut ws, ClientMessage::Hello(Hello::default())).await?;
        net::send_message(&mut ws, ClientMessage::Subscribe(Subscribe { channels })).await
    };
    if let Err(err) = greeted.await {
        return Err(Failure::Other(format!("send: {err}")));
    }
    let mut answered = 0;
    let deadline = tokio::time::Instant::now() + SUBSCRIBE_TIMEOUT;
    while answered < views.len() {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await;
        match frame {
            Err(_) => return Err(Failure::Other("no subscribed in time".into())),
            Ok(Some(Ok(Message::Text(text)))) => {
                answered += handle_text(text.as_str(), views, resuming, false, ticks);
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map_or(crate::NO_STATUS_CLOSE, |f| u16::from(f.code));
                return Err(if code == CloseCode::TryAgainLater.code() {
                    Failure::Refused
                } else {
                    Failure::Other(format!("closed {code}"))
                });
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(err))) => return Err(Failure::Other(format!("read: {err}"))),
            Ok(None) => return Err(Failure::Other("closed without a frame".into())),
        }
    }
    Ok(ws)
}

/// Takes one text frame; returns how many `subscribed` (or per-channel
/// `error`) answers it held.
fn handle_text(
    text: &str,
    views: &mut [ChannelView],
    resuming: bool,
    resumed: bool,
    ticks: &mut u64,
) -> usize {
    let Ok(envelope) = ServerEnvelope::from_json(text) else {
        return 0;
    };
    let mut answers = 0;
    for message in envelope.unpack() {
        match message.message {
            ServerMessage::Subscribed(answer) => {
                answers += 1;
                if let Some(view) = views.iter_mut().find(|v| v.name == answer.channel) {
                    view.on_subscribed(&answer, resuming);
                }
            }
            ServerMessage::Error(_) => answers += 1,
            ServerMessage::Tick(tick) => {
                if resuming || resumed {
                    *ticks += 1;
                }
                if let Some(view) = views.iter_mut().find(|v| v.name == tick.channel) {
                    view.on_tick(&tick, resuming || resumed);
                }
            }
            _ => {}
        }
    }
    answers
}

/// Tries to connect and subscribe, backing off per PROTOCOL.md between
/// attempts, at most [`MAX_ATTEMPTS`] times and never past `deadline` or the
/// run's stop. The first attempt of a resume waits a first delay too, as the
/// web client does after a close.
async fn connect_with_backoff(
    plan: &Plan,
    index: u64,
    shared: &StormShared,
    outcome: &mut StormOutcome,
    resuming: bool,
    deadline: Instant,
) -> Option<Ws> {
    let mut backoff = Backoff::default();
    for number in 0..MAX_ATTEMPTS {
        if number > 0 || resuming {
            let delay = Duration::from_millis(u64::from(backoff.next_delay_ms(rand::random())));
            if Instant::now() + delay > deadline {
                return None;
            }
            tokio::select! {
                () = shared.stop.cancelled() => return None,
                () = tokio::time::sleep(delay) => {}
            }
        }
        if resuming {
            outcome.attempts += 1;
        }
        let mut ticks = 0;
        match attempt(plan, index, &mut outcome.channels, resuming, &mut ticks).await {
            Ok(ws) => {
                outcome.ticks_after_resume += ticks;
                return Some(ws);
            }
            Err(Failure::Refused) if resuming => outcome.refused_storm += 1,
            Err(Failure::Refused) => outcome.refused_first += 1,
            Err(Failure::Other(kind)) => *outcome.errors.entry(kind).or_default() += 1,
        }
    }
    None
}

/// Reads until `until` is cancelled, checking offsets; a socket the server
/// ends first returns its close code.
async fn read_until(
    ws: &mut Ws,
    until: &CancellationToken,
    views: &mut [ChannelView],
    resumed: bool,
    ticks: &mut u64,
) -> Option<u16> {
    loop {
        let frame = tokio::select! {
            biased;
            () = until.cancelled() => return None,
            frame = ws.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                handle_text(text.as_str(), views, false, resumed, ticks);
            }
            Some(Ok(Message::Close(frame))) => {
                return Some(frame.map_or(crate::NO_STATUS_CLOSE, |f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Some(crate::ABNORMAL_CLOSE),
        }
    }
}

/// One client through the whole storm. Never panics; every failure ends up
/// in the outcome.
async fn run_client(index: u64, plan: Arc<Plan>, shared: Arc<StormShared>) -> StormOutcome {
    let mut outcome = StormOutcome {
        channels: plan
            .channels_for(index)
            .into_iter()
            .map(|c| ChannelView::new(c.channel))
            .collect(),
        ..StormOutcome::default()
    };
    let first_deadline = Instant::now() + STORM_DEADLINE;
    let Some(mut ws) =
        connect_with_backoff(&plan, index, &shared, &mut outcome, false, first_deadline).await
    else {
        shared.failed_first.fetch_add(1, Relaxed);
        return outcome;
    };
    outcome.subscribed_first = true;
    shared.subscribed.fetch_add(1, Relaxed);
    let mut ignored = 0;
    outcome.closed_before_drop = read_until(
        &mut ws,
        &shared.drop_now,
        &mut outcome.channels,
        false,
        &mut ignored,
    )
    .await;
    // The drop: the TCP connection closes with no WebSocket close, as when
    // a proxy or a network path fails under every client at once.
    drop(ws);
    if outcome.closed_before_drop.is_some() {
        // Closed by the server before the drop: wait for the drop all the same.
        shared.drop_now.cancelled().await;
    }
    let Some(&dropped_at) = shared.dropped_at.get() else {
        return outcome;
    };
    let deadline = dropped_at + STORM_DEADLINE;
    let Some(mut ws) =
        connect_with_backoff(&plan, index, &shared, &mut outcome, true, deadline).await
    else {
        shared.gave_up.fetch_add(1, Relaxed);
        return outcome;
    };
    outcome.resumed_after = Some(dropped_at.elapsed());
    shared.resumed.fetch_add(1, Relaxed);
    let mut ticks = 0;
    outcome.closed_after_resume = read_until(
        &mut ws,
        &shared.stop,
        &mut outcome.channels,
        true,
        &mut ticks,
    )
    .await;
    outcome.ticks_after_resume += ticks;
    if outcome.closed_after_resume.is_none() {
        net::close_normally(&mut ws).await;
    }
    outcome
}

/// Millisecond percentiles of the reconnect times.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut values: Vec<Duration>) -> Option<Self> {
        values.sort_unstable();
        let at = |q: f64| {
            let index = ((values.len() as f64 - 1.0) * q).round() as usize;
            values[index].as_secs_f64() * 1000.0
        };
        (!values.is_empty()).then(|| Percentiles {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// The storm's report.
#[derive(Debug, Default, Serialize)]
pub struct StormReport {
    pub clients_requested: u64,
    pub channels_per_client: usize,
    /// Clients subscribed before the drop.
    pub subscribed_before_drop: u64,
    pub failed_before_drop: u64,
    /// Sockets the server closed before the drop, per code.
    pub closed_before_drop_by_code: BTreeMap<u16, u64>,
    /// Clients the load generator dropped.
    pub dropped: u64,
    /// Clients back and resubscribed (every channel answered).
    pub back: u64,
    pub gave_up: u64,
    /// From the drop until the last client was back and resubscribed; `None`
    /// when some never came back.
    pub all_back_secs: Option<f64>,
    /// Each client's time from the drop until it was back and resubscribed.
    pub back_ms: Option<Percentiles>,
    /// Clients whose every channel recovered and whose offsets afterwards
    /// had no gap and no repeat, up to the announced offset at least.
    pub resumed_without_gap: u64,
    /// Clients whose every channel recovered with a complete replay (no
    /// skipped or repeated offset up to the announced one); live ticks
    /// after it may have been conflated, as the protocol allows for tickers.
    pub resumed_with_complete_replay: u64,
    pub clients_with_recovered_false: u64,
    pub channels_recovered_true: u64,
    pub channels_recovered_false: u64,
    /// Channels with a gap after a `recovered: true`, and offsets missed.
    pub channels_with_gap: u64,
    pub offsets_missing: u64,
    /// Of those, gaps inside the replay (a broken resume), and offsets missed there.
    pub channels_with_replay_gap: u64,
    pub offsets_missing_in_replay: u64,
    pub duplicate_ticks: u64,
    /// Offset jumps seen before the drop (conflation), for comparison.
    pub gaps_before_drop: u64,
    /// 1013 answers before the drop (ramp-up) and during the storm.
    pub refused_1013_ramp_up: u64,
    pub refused_1013_storm: u64,
    /// Connection attempts after the drop, and those beyond each client's first.
    pub attempts_storm: u64,
    pub retries_storm: u64,
    /// Failures other than 1013, per kind (both phases).
    pub errors: BTreeMap<String, u64>,
    /// Sockets the server closed after the resume, per code.
    pub closed_after_resume_by_code: BTreeMap<u16, u64>,
    pub ticks_after_resume: u64,
    pub unfinished_clients: u64,
    /// From the start until the drop (for the CPU window of bench/bench.py).
    pub ramp_up_secs: f64,
    /// From the drop to the end of the checks.
    pub duration_secs: f64,
    pub verify_secs: f64,
}

impl StormReport {
    fn add(&mut self, outcome: StormOutcome) {
        if outcome.subscribed_first {
            self.subscribed_before_drop += 1;
            self.dropped += 1;
        } else {
            self.failed_before_drop += 1;
        }
        if let Some(code) = outcome.closed_before_drop {
            *self.closed_before_drop_by_code.entry(code).or_default() += 1;
        }
        if let Some(code) = outcome.closed_after_resume {
            *self.closed_after_resume_by_code.entry(code).or_default() += 1;
        }
        if outcome.resumed_after.is_some() {
            self.back += 1;
            let channels = &outcome.channels;
            if channels.iter().all(ChannelView::resumed_without_gap) {
                self.resumed_without_gap += 1;
            }
            if channels.iter().all(ChannelView::replay_complete) {
                self.resumed_with_complete_replay += 1;
            }
            if channels.iter().any(|c| c.recovered == Some(false)) {
                self.clients_with_recovered_false += 1;
            }
            for channel in channels {
                match channel.recovered {
                    Some(true) => self.channels_recovered_true += 1,
                    Some(false) => self.channels_recovered_false += 1,
                    None => {}
                }
                if channel.recovered == Some(true) && channel.gaps > 0 {
                    self.channels_with_gap += 1;
                }
                if channel.recovered == Some(true) && channel.replay_gaps > 0 {
                    self.channels_with_replay_gap += 1;
                }
            }
        } else if outcome.subscribed_first {
            self.gave_up += 1;
        }
        for channel in &outcome.channels {
            self.offsets_missing += channel.missing;
            self.offsets_missing_in_replay += channel.replay_missing;
            self.duplicate_ticks += channel.duplicates;
            self.gaps_before_drop += channel.gaps_before;
        }
        self.refused_1013_ramp_up += outcome.refused_first;
        self.refused_1013_storm += outcome.refused_storm;
        self.attempts_storm += outcome.attempts;
        self.retries_storm += outcome.attempts.saturating_sub(1);
        for (kind, count) in outcome.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        self.ticks_after_resume += outcome.ticks_after_resume;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribed(offset: u64, epoch: &str, recovered: bool) -> Subscribed {
        Subscribed {
            channel: "ticker:SYM0".into(),
            epoch: epoch.into(),
            offset,
            recovered,
            snapshot: None,
        }
    }

    fn tick(offset: u64) -> Tick {
        Tick {
            channel: "ticker:SYM0".into(),
            offset,
            symbol: "SYM0".into(),
            price: 1.0,
            change: 0.0,
            change_pct: 0.0,
            volume: 1,
        }
    }

    /// A view that saw offsets up to 10 of epoch e1 before the drop.
    fn view_at_ten() -> ChannelView {
        let mut view = ChannelView::new("ticker:SYM0".into());
        view.on_subscribed(&subscribed(8, "e1", false), false);
        view.on_tick(&tick(9), false);
        view.on_tick(&tick(10), false);
        view
    }

    #[test]
    fn a_recovered_resume_with_every_offset_counts_as_no_gap() {
        let mut view = view_at_ten();
        assert_eq!(view.since().map(|s| s.offset), Some(10));
        view.on_subscribed(&subscribed(12, "e1", true), true);
        for offset in 11..=14 {
            view.on_tick(&tick(offset), true);
        }
        assert!(view.resumed_without_gap());
    }

    #[test]
    fn a_skipped_offset_after_a_recovered_resume_is_a_gap() {
        let mut view = view_at_ten();
        view.on_subscribed(&subscribed(12, "e1", true), true);
        view.on_tick(&tick(11), true);
        view.on_tick(&tick(13), true);
        assert!(!view.resumed_without_gap());
        assert!(!view.replay_complete());
        assert_eq!((view.gaps, view.missing), (1, 1));
        assert_eq!((view.replay_gaps, view.replay_missing), (1, 1));
    }

    #[test]
    fn a_live_tick_conflated_after_a_complete_replay_is_not_a_replay_gap() {
        let mut view = view_at_ten();
        view.on_subscribed(&subscribed(12, "e1", true), true);
        for offset in [11, 12, 15] {
            view.on_tick(&tick(offset), true);
        }
        assert!(view.replay_complete());
        assert!(!view.resumed_without_gap());
        assert_eq!((view.gaps, view.missing, view.replay_gaps), (1, 2, 0));
    }

    #[test]
    fn a_replay_that_stops_short_of_the_announced_offset_is_not_a_clean_resume() {
        let mut view = view_at_ten();
        view.on_subscribed(&subscribed(12, "e1", true), true);
        view.on_tick(&tick(11), true);
        assert!(!view.resumed_without_gap());
    }

    #[test]
    fn a_repeated_offset_or_recovered_false_is_not_a_clean_resume() {
        let mut repeated = view_at_ten();
        repeated.on_subscribed(&subscribed(11, "e1", true), true);
        repeated.on_tick(&tick(11), true);
        repeated.on_tick(&tick(11), true);
        assert_eq!(repeated.duplicates, 1);
        assert!(!repeated.resumed_without_gap());

        let mut fresh = view_at_ten();
        fresh.on_subscribed(&subscribed(400, "e1", false), true);
        fresh.on_tick(&tick(401), true);
        assert_eq!(fresh.last, Some(401));
        assert!(!fresh.resumed_without_gap());
    }
}
