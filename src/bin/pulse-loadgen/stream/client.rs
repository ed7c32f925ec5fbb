//! Owns one stream, idle or abuse-run subscriber from connect to close: it
//! says `hello` (and subscribes to its channels), counts what the server
//! sends, times every `tick` of the measurement window against the
//! envelope's `timestamp`, counts the Pings tungstenite answers, and records
//! how its socket ended. Over a WebSocket or the HTTP fallback ([`Conn`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError};

use pulse::protocol::{
    ClientEnvelope, ClientMessage, Hello, ServerEnvelope, ServerMessage, Subscribe,
};
use tokio_tungstenite::tungstenite::Error as WsError;

use super::Shared;
use crate::args::Transport;
use crate::frames::{self, Incoming, Received, ABNORMAL_CLOSE};
use crate::net::{self, Ws};
use crate::plan::Plan;
use crate::sse::SseConn;

/// One client's connection, by transport.
enum Conn {
    Ws(Box<Ws>),
    Sse(Box<SseConn>),
}

impl Conn {
    async fn open(plan: &Plan, index: u64) -> Result<Self, String> {
        let opening = async {
            match plan.transport {
                Transport::Websocket => net::connect(plan, index)
                    .await
                    .map(|ws| Conn::Ws(Box::new(ws))),
                Transport::Sse => SseConn::open(plan, index)
                    .await
                    .map(|sse| Conn::Sse(Box::new(sse))),
            }
        };
        tokio::time::timeout(net::CONNECT_TIMEOUT, opening)
            .await
            .unwrap_or_else(|_| Err("no handshake in time".into()))
    }

    /// Sends `messages` (over the fallback: in one POST).
    async fn send(&mut self, messages: Vec<ClientMessage>) -> Result<(), WsError> {
        match self {
            Conn::Ws(ws) => {
                for message in messages {
                    net::send_message(ws.as_mut(), message).await?;
                }
                Ok(())
            }
            Conn::Sse(sse) => {
                let lines: Vec<String> = messages
                    .into_iter()
                    .map(|message| ClientEnvelope::new(message).to_json())
                    .collect();
                sse.post(&lines)
                    .await
                    .map_err(|err| WsError::Io(std::io::Error::other(err)))
            }
        }
    }

    async fn next(&mut self) -> Incoming {
        match self {
            Conn::Ws(ws) => frames::next(ws.as_mut()).await,
            Conn::Sse(sse) => frames::incoming(sse.next().await),
        }
    }

    /// Ends the connection: a normal close, or (fallback) dropping the stream.
    async fn close(self) {
        if let Conn::Ws(mut ws) = self {
            net::close_normally(ws.as_mut()).await;
        }
    }
}

/// Latencies a client collects before it takes the shared histogram's lock.
const FLUSH_EVERY: usize = 256;

/// A client's latencies waiting to go into the shared histogram, so that the
/// lock is taken once per [`FLUSH_EVERY`] ticks instead of once per tick (and
/// no 190 KiB histogram is kept per client).
#[derive(Default)]
struct LatencySamples(Vec<u64>);

impl LatencySamples {
    /// Keeps one latency (negative ones, from clock steps, count as 0).
    fn record(&mut self, micros: i64, shared: &Shared) {
        self.0.push(u64::try_from(micros).unwrap_or(0));
        if self.0.len() >= FLUSH_EVERY {
            self.flush(shared);
        }
    }

    /// Moves the kept latencies into the shared histogram.
    fn flush(&mut self, shared: &Shared) {
        if self.0.is_empty() {
            return;
        }
        let mut histogram = shared
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for micros in self.0.drain(..) {
            histogram.saturating_record(micros);
        }
    }
}

/// What happened to one client.
#[derive(Debug, Default)]
pub struct ClientOutcome {
    pub connected: bool,
    pub connect_error: Option<String>,
    /// The close code, when the server (or the network) ended the socket
    /// before the run did.
    pub closed_early: Option<u16>,
    /// `subscribed` answers received.
    pub subscribed: u64,
    /// `error` answers received, per `error.code`.
    pub errors: BTreeMap<&'static str, u64>,
    /// Frames that were binary or not a server envelope.
    pub bad_frames: u64,
    /// Ticks received while the measurement window was open.
    pub ticks: u64,
    /// WebSocket Pings received from the server (each answered with a Pong
    /// by tungstenite on the next read).
    pub pings: u64,
}

/// Sends `hello {}` and, in stream mode, one `subscribe` with this client's channels.
async fn greet(conn: &mut Conn, plan: &Plan, index: u64) -> Result<(), WsError> {
    let mut messages = vec![ClientMessage::Hello(Hello::default())];
    if plan.mode.subscribes() {
        let channels = plan.channels_for(index);
        messages.push(ClientMessage::Subscribe(Subscribe { channels }));
    }
    conn.send(messages).await
}

/// Counts the messages of one text frame and times its ticks.
fn on_messages(
    received: Received,
    messages: Vec<ServerEnvelope>,
    shared: &Shared,
    outcome: &mut ClientOutcome,
    samples: &mut LatencySamples,
) {
    shared.messages.fetch_add(messages.len() as u64, Relaxed);
    let measuring = shared.measuring.load(Relaxed);
    for message in messages {
        match message.message {
            ServerMessage::Tick(_) if measuring => {
                outcome.ticks += 1;
                samples.record(
                    received.unix_micros - message.timestamp.unix_micros(),
                    shared,
                );
            }
            ServerMessage::Subscribed(_) => outcome.subscribed += 1,
            ServerMessage::Error(body) => {
                *outcome.errors.entry(body.code.as_str()).or_default() += 1
            }
            _ => {}
        }
    }
}

/// Reads frames until the run stops or the socket ends; a socket that ends
/// first leaves its close code in `outcome.closed_early`. Pings are counted
/// and answered by tungstenite (its Pong goes out on the next poll, at once).
async fn read_until_stop(
    conn: &mut Conn,
    shared: &Shared,
    outcome: &mut ClientOutcome,
    samples: &mut LatencySamples,
) {
    loop {
        let incoming = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return,
            incoming = conn.next() => incoming,
        };
        match incoming {
            Incoming::Messages(received, messages) => {
                on_messages(received, messages, shared, outcome, samples)
            }
            Incoming::Unreadable | Incoming::Binary => outcome.bad_frames += 1,
            Incoming::Ping => outcome.pings += 1,
            Incoming::Closed(code) => {
                // The stream ends after a close frame: read until it does.
                outcome.closed_early.get_or_insert(code);
            }
            Incoming::Other => {}
            Incoming::Ended(_) => {
                outcome.closed_early.get_or_insert(ABNORMAL_CLOSE);
                return;
            }
        }
    }
}

/// One client from connect to close. Never panics: every failure ends up in
/// the outcome.
pub async fn run_client(index: u64, plan: Arc<Plan>, shared: Arc<Shared>) -> ClientOutcome {
    let mut outcome = ClientOutcome::default();
    let mut conn = match Conn::open(&plan, index).await {
        Ok(conn) => conn,
        Err(err) => {
            outcome.connect_error = Some(err);
            shared.attempts_done.fetch_add(1, Relaxed);
            return outcome;
        }
    };
    outcome.connected = true;
    shared.connected.fetch_add(1, Relaxed);
    shared.open.fetch_add(1, Relaxed);
    shared.attempts_done.fetch_add(1, Relaxed);

    let mut samples = LatencySamples::default();
    match greet(&mut conn, &plan, index).await {
        Ok(()) => read_until_stop(&mut conn, &shared, &mut outcome, &mut samples).await,
        Err(_) => outcome.closed_early = Some(ABNORMAL_CLOSE),
    }
    shared.open.fetch_sub(1, Relaxed);
    samples.flush(&shared);
    if outcome.closed_early.is_none() {
        conn.close().await;
    }
    outcome
}
