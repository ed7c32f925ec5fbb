//! Owns one storm client: it connects and subscribes (backing off per
//! PROTOCOL.md and retrying 1013s), reads and checks offsets until the drop,
//! lets its TCP connection go with no close frame, then reconnects and
//! resumes every channel with `since`, and checks the offsets after it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pulse::client::backoff::Backoff;
use pulse::protocol::{
    ClientMessage, CloseCode, Hello, ServerEnvelope, ServerMessage, Subscribe, SubscribeChannel,
};
use tokio_util::sync::CancellationToken;

use super::channel::ChannelView;
use super::{StormShared, STORM_DEADLINE};
use crate::frames::{self, Incoming};
use crate::net::{self, Ws};
use crate::plan::Plan;

/// Connection attempts one client makes per phase (first connect, then after
/// the drop) before it gives up: with the schedule capped at 30 s, ten
/// attempts span at most about three minutes.
const MAX_ATTEMPTS: u32 = 10;
/// How long a client waits for all its `subscribed` answers once connected.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to one client.
#[derive(Debug, Default)]
pub struct StormOutcome {
    pub subscribed_first: bool,
    pub resumed_after: Option<Duration>,
    pub channels: Vec<ChannelView>,
    /// Attempts after the drop (the successful one included).
    pub attempts: u64,
    pub refused_first: u64,
    pub refused_storm: u64,
    /// Failures other than 1013, per kind.
    pub errors: BTreeMap<String, u64>,
    /// The server closed the socket before the drop.
    pub closed_before_drop: Option<u16>,
    /// The server closed the socket after the resume.
    pub closed_after_resume: Option<u16>,
    pub ticks_after_resume: u64,
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
        let incoming = tokio::time::timeout_at(deadline, frames::next(&mut ws)).await;
        match incoming {
            Err(_) => return Err(Failure::Other("no subscribed in time".into())),
            Ok(Incoming::Messages(_, messages)) => {
                answered += on_messages(messages, views, resuming, false, ticks);
            }
            Ok(Incoming::Closed(code)) => {
                return Err(if code == CloseCode::TryAgainLater.code() {
                    Failure::Refused
                } else {
                    Failure::Other(format!("closed {code}"))
                });
            }
            Ok(Incoming::Ended(Some(err))) => return Err(Failure::Other(format!("read: {err}"))),
            Ok(Incoming::Ended(None)) => {
                return Err(Failure::Other("closed without a frame".into()))
            }
            Ok(Incoming::Unreadable | Incoming::Binary | Incoming::Ping | Incoming::Other) => {}
        }
    }
    Ok(ws)
}

/// Takes one text frame's messages; returns how many `subscribed` (or
/// per-channel `error`) answers it held.
fn on_messages(
    messages: Vec<ServerEnvelope>,
    views: &mut [ChannelView],
    resuming: bool,
    resumed: bool,
    ticks: &mut u64,
) -> usize {
    let mut answers = 0;
    for message in messages {
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
                if let Some(view) = views.iter_mut().find(|v| tick.channel == v.name.as_str()) {
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
        let incoming = tokio::select! {
            biased;
            () = until.cancelled() => return None,
            incoming = frames::next(ws) => incoming,
        };
        if let Incoming::Messages(_, messages) = incoming {
            on_messages(messages, views, false, resumed, ticks);
        } else if let Some(code) = incoming.close_code() {
            return Some(code);
        }
    }
}

/// One client through the whole storm. Never panics; every failure ends up
/// in the outcome.
pub async fn run_client(index: u64, plan: Arc<Plan>, shared: Arc<StormShared>) -> StormOutcome {
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
