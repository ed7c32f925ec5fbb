//! `pulse-loadgen`: opens many WebSocket clients against a running Pulse server
//! and reports how it held up: how many clients connected, how many the server
//! closed (per close code), how many `tick`s it delivered per second and their
//! latency (the moment a frame arrived minus the envelope `timestamp`), and how
//! many sockets got (and answered) the server's WebSocket Pings.
//!
//! It speaks only the public protocol (`docs/PROTOCOL.md`) through the crate's
//! shared `protocol` types. Point it at a server on this machine (or one you
//! own). It stops by itself after the ramp-up plus `--duration`, closing every
//! socket with a normal close (1000); Ctrl-C ends the run early and still
//! prints the report. The exit status is 1 when no client connected at all.
//!
//! Stream mode: 2,000 clients, each subscribed to 10 of 100 symbols, for 60 s
//! (start the server with the same universe, `pulse --symbols 100`):
//!
//! ```text
//! cargo run --release --features loadgen --bin pulse-loadgen -- \
//!     --url ws://127.0.0.1:3000/ws --clients 2000 --symbols 10 --universe 100 --duration 60
//! ```
//!
//! Idle mode: 19,000 sockets that only answer Pings, over 2 source addresses,
//! for 2 minutes, with the report as one JSON line:
//!
//! ```text
//! cargo run --release --features loadgen --bin pulse-loadgen -- \
//!     --mode idle --clients 19000 --source-ips 2 --duration 120 --json
//! ```
//!
//! Storm mode: 10,000 clients on 2 symbols each; once all are subscribed and
//! ticks have flowed for `--settle` seconds, the load generator closes every
//! TCP connection at once; each client reconnects on PROTOCOL.md's jittered
//! backoff (retrying 1013s the same way) and resumes with `since`; offsets
//! are checked for `--verify` seconds after the last one is back:
//!
//! ```text
//! cargo run --release --features loadgen --bin pulse-loadgen -- \
//!     --mode storm --clients 10000 --symbols 2 --source-ips 4 --connect-rate 900 --json
//! ```
//!
//! Abuse mode: stream mode's subscribers while one guest floods `status` and
//! another posts chat at `--chat-rate` (see the `abuse` module).
//!
//! Doc mode: one shared note (`doc:notes`); 100 editors, each with its own
//! yrs replica, insert a letter at a random spot twice a second while 100
//! readers only apply, until 10,000 updates are acknowledged (see the `doc`
//! module):
//!
//! ```text
//! cargo run --release --features loadgen --bin pulse-loadgen -- \
//!     --mode doc --editors 100 --readers 100 --edit-rate 2 --total-updates 10000 --duration 120 --json
//! ```
//!
//! Every client needs one file descriptor: the open-file limit is raised to
//! the hard limit at start, with a warning when that is still too low.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use pulse::protocol::{
    Channel, ClientMessage, Hello, ServerEnvelope, ServerMessage, Subscribe, SubscribeChannel,
};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use net::{Ws, CLOSE_TIMEOUT, CONNECT_TIMEOUT};

mod abuse;
mod doc;
mod net;
mod storm;
mod tasks;

/// Time between two progress lines on stderr (every scenario).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Latencies a client collects before it takes the shared histogram's lock.
const FLUSH_EVERY: usize = 256;
/// The largest latency the histogram tells apart (one hour, in microseconds).
const LATENCY_MAX_MICROS: u64 = 3_600_000_000;
/// The largest `--universe M` accepted (symbols are at most 12 characters).
const MAX_UNIVERSE: usize = 1_000_000;
/// The close code recorded when a socket ended without a close frame.
const ABNORMAL_CLOSE: u16 = 1006;
/// The close code recorded for a close frame that carried no code.
const NO_STATUS_CLOSE: u16 = 1005;

/// Opens N WebSocket clients against a Pulse server and reports connections,
/// closes by the server, delivered ticks per second and tick latency.
#[derive(Debug, Parser)]
#[command(name = "pulse-loadgen", version)]
struct Args {
    /// WebSocket URL of the server's endpoint (plain ws://; its host must
    /// resolve to an IPv4 address).
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws")]
    url: String,

    /// Number of WebSocket clients to open, one socket and one task each.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    clients: u64,

    /// Ticker subscriptions per client (stream mode). Client i takes K
    /// consecutive symbols of the universe starting at index (i*K) mod M,
    /// wrapping, so every symbol gets about the same number of subscribers.
    /// Capped at the universe's size.
    #[arg(long, value_name = "K", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    symbols: u64,

    /// The symbols to subscribe to: a comma-separated list (AAPL,MSFT) or a
    /// number M meaning SYM0..SYM{M-1}, like the server's own --symbols.
    #[arg(long, value_name = "LIST|M", default_value = "50")]
    universe: String,

    /// Seconds to measure once every client has connected (or failed to).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,

    /// What each client does after connecting.
    #[arg(long, value_enum, default_value_t = Mode::Stream)]
    mode: Mode,

    /// Spread the connections over the source addresses 127.0.0.1 ..
    /// 127.0.0.N (loopback targets only): each address allows about 28,000
    /// connections to one server port.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    source_ips: u8,

    /// New connections per second while ramping up, so that the server's
    /// accept queue is not flooded.
    #[arg(long, value_name = "R", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    connect_rate: u32,

    /// Storm mode: seconds ticks flow after every client subscribed, before
    /// the drop.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    settle: u64,

    /// Storm mode: seconds offsets are checked after the last client is back.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    verify: u64,

    /// Abuse mode: chat messages per second the chatting abuser posts (the
    /// server's --chat-rate is 5 by default).
    #[arg(long, value_name = "R", default_value_t = 5.0)]
    chat_rate: f64,

    /// Doc mode: clients that edit the document (each also reads it).
    #[arg(long, value_name = "N", default_value_t = 10)]
    editors: u64,

    /// Doc mode: clients that only subscribe to the document and apply its updates.
    #[arg(long, value_name = "N", default_value_t = 100)]
    readers: u64,

    /// Doc mode: updates per second each editor sends (the server allows 30).
    #[arg(long, value_name = "R", default_value_t = 2.0)]
    edit_rate: f64,

    /// Doc mode: stop editing after this many updates in all (and at the
    /// latest after --duration seconds).
    #[arg(long, value_name = "N")]
    total_updates: Option<u64>,

    /// Doc mode: an editor whose update was answered `rate_limited` keeps
    /// sending new ones while it waits to resend it (by default it holds
    /// them until the resend is acknowledged, so the server receives each
    /// editor's updates in order).
    #[arg(long)]
    send_past_retries: bool,

    /// Doc mode: updates one editor may have sent without an ack yet; it
    /// holds its next edits meanwhile.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: u64,

    /// Doc mode: where editors type each letter.
    #[arg(long, value_enum, default_value_t = doc::EditAt::Random)]
    edit_at: doc::EditAt,

    /// Doc mode: the document id (the channel is `doc:{ID}`).
    #[arg(long, value_name = "ID", default_value = "notes")]
    doc: String,

    /// Print the final report as one JSON object on one line instead of text.
    #[arg(long)]
    json: bool,
}

/// What a client does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    /// Send `hello {}` and one `subscribe` to K `ticker:` channels, read
    /// everything and time every `tick`.
    Stream,
    /// Send `hello {}` only, then just answer the server's Pings; the report
    /// says how many sockets are still open at the end and how many got a
    /// Ping (`pinged`, `min_pings`).
    Idle,
    /// Drop every connection at once and reconnect with backoff and resume.
    Storm,
    /// Stream mode's subscribers next to a `status` flooder and a chatter.
    Abuse,
    /// Editors and readers of one shared document (`doc:` channel).
    Doc,
}

impl Mode {
    /// The flag value naming this mode.
    fn as_str(self) -> &'static str {
        match self {
            Mode::Stream => "stream",
            Mode::Idle => "idle",
            Mode::Storm => "storm",
            Mode::Abuse => "abuse",
            Mode::Doc => "doc",
        }
    }

    /// Whether its clients subscribe to `ticker:` channels.
    fn subscribes(self) -> bool {
        self != Mode::Idle
    }
}

/// What every client task needs, worked out once from the flags.
#[derive(Debug)]
struct Plan {
    url: String,
    target: SocketAddr,
    /// How many 127.0.0.x source addresses to bind to; `None` for a target
    /// off this machine (the kernel picks the source then).
    source_ips: Option<u8>,
    mode: Mode,
    /// The universe as channel names, `ticker:{SYMBOL}`.
    channels: Vec<String>,
    /// Subscriptions per client, at most `channels.len()`.
    per_client: usize,
}

impl Plan {
    /// Checks the flags, resolves the target and builds the universe.
    async fn from_args(args: &Args) -> Result<Self, String> {
        let target = resolve_target(&args.url).await?;
        let loopback = target.ip().is_loopback();
        if !loopback && args.source_ips > 1 {
            return Err(format!(
                "--source-ips {} needs a loopback target, and {target} is not one",
                args.source_ips
            ));
        }
        let channels = parse_universe(&args.universe)?;
        let per_client = usize::try_from(args.symbols).unwrap_or(usize::MAX);
        if args.mode.subscribes() && per_client > channels.len() {
            eprintln!(
                "warning: --symbols {} is more than the {} symbols of --universe; using {}",
                args.symbols,
                channels.len(),
                channels.len()
            );
        }
        Ok(Plan {
            url: args.url.clone(),
            target,
            source_ips: loopback.then_some(args.source_ips),
            mode: args.mode,
            per_client: per_client.min(channels.len()),
            channels,
        })
    }

    /// The source address client `index` binds to: 127.0.0.1 .. 127.0.0.N in turn.
    fn source_ip(&self, index: u64) -> Option<Ipv4Addr> {
        let count = u64::from(self.source_ips?);
        let last_octet = u8::try_from(1 + index % count).unwrap_or(1);
        Some(Ipv4Addr::new(127, 0, 0, last_octet))
    }

    /// The channels client `index` subscribes to: K consecutive ones of the
    /// universe from (index*K) mod M on, wrapping.
    fn channels_for(&self, index: u64) -> Vec<SubscribeChannel> {
        let count = self.channels.len() as u64;
        let first = index.wrapping_mul(self.per_client as u64) % count;
        (0..self.per_client as u64)
            .map(|offset| SubscribeChannel {
                channel: self.channels[((first + offset) % count) as usize].clone(),
                since: None,
            })
            .collect()
    }
}

/// Checks the URL (plain `ws://` only) and resolves its host to the IPv4
/// address to connect to.
async fn resolve_target(url: &str) -> Result<SocketAddr, String> {
    let uri: Uri = url.parse().map_err(|err| format!("--url {url}: {err}"))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => {
            return Err("--url: wss:// is not supported; use the server's plain ws:// port".into())
        }
        _ => return Err(format!("--url {url}: expected ws://HOST:PORT/PATH")),
    }
    let host = uri.host().ok_or_else(|| format!("--url {url}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|err| format!("--url: cannot resolve {host}: {err}"))?;
    addrs.find(SocketAddr::is_ipv4).ok_or_else(|| {
        format!("--url: {host} has no IPv4 address (the load generator connects over IPv4)")
    })
}

/// Turns `--universe` into `ticker:` channel names: a number M gives
/// SYM0..SYM{M-1}, anything else is a comma-separated list of symbols.
fn parse_universe(spec: &str) -> Result<Vec<String>, String> {
    let spec = spec.trim();
    let symbols: Vec<String> = match spec.parse::<usize>() {
        Ok(count) if (1..=MAX_UNIVERSE).contains(&count) => {
            (0..count).map(|i| format!("SYM{i}")).collect()
        }
        Ok(count) => {
            return Err(format!(
                "--universe {count}: give between 1 and {MAX_UNIVERSE} symbols"
            ))
        }
        Err(_) => spec
            .split(',')
            .map(str::trim)
            .filter(|symbol| !symbol.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    if symbols.is_empty() {
        return Err("--universe: no symbols given".into());
    }
    symbols
        .iter()
        .map(|symbol| {
            Channel::ticker(symbol)
                .map(|channel| channel.to_string())
                .map_err(|err| format!("--universe: {err}"))
        })
        .collect()
}

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
    interrupted: AtomicBool,
    /// Cancelled when the run ends: the clients close their sockets.
    stop: CancellationToken,
    /// Tick latencies in microseconds, from the measurement window only.
    latency: Mutex<Histogram<u64>>,
}

impl Shared {
    /// Fresh counters and an empty histogram (1 µs to one hour, 3 significant digits).
    fn new() -> Self {
        Shared {
            attempts_done: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            open: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            stop: CancellationToken::new(),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
                    .expect("constant histogram bounds are valid"),
            ),
        }
    }
}

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
struct ClientOutcome {
    connected: bool,
    connect_error: Option<String>,
    /// The close code, when the server (or the network) ended the socket
    /// before the run did.
    closed_early: Option<u16>,
    /// `subscribed` answers received.
    subscribed: u64,
    /// `error` answers received, per `error.code`.
    errors: BTreeMap<&'static str, u64>,
    /// Frames that were binary or not a server envelope.
    bad_frames: u64,
    /// Ticks received while the measurement window was open.
    ticks: u64,
    /// WebSocket Pings received from the server (each answered with a Pong
    /// by tungstenite on the next read).
    pings: u64,
}

/// The outcomes of every client added up.
#[derive(Debug, Default)]
struct Tally {
    connected: u64,
    connect_errors: BTreeMap<String, u64>,
    closed_early: BTreeMap<u16, u64>,
    open_at_end: u64,
    subscribed: u64,
    errors: BTreeMap<String, u64>,
    bad_frames: u64,
    ticks: u64,
    /// Connected clients that received at least one Ping.
    pinged: u64,
    /// The fewest Pings a connected client received (`None` before the first).
    min_pings: Option<u64>,
    /// Pings received by every client together.
    pings: u64,
    /// Client tasks that did not finish in time (aborted) or panicked.
    unfinished: u64,
}

impl Tally {
    /// Adds one client's outcome.
    fn add(&mut self, outcome: ClientOutcome) {
        if let Some(err) = outcome.connect_error {
            *self.connect_errors.entry(err).or_default() += 1;
        }
        if outcome.connected {
            self.connected += 1;
            match outcome.closed_early {
                Some(code) => *self.closed_early.entry(code).or_default() += 1,
                None => self.open_at_end += 1,
            }
            self.pinged += u64::from(outcome.pings > 0);
            self.min_pings = Some(
                self.min_pings
                    .map_or(outcome.pings, |m| m.min(outcome.pings)),
            );
        }
        self.pings += outcome.pings;
        self.subscribed += outcome.subscribed;
        for (code, count) in outcome.errors {
            *self.errors.entry(code.to_owned()).or_default() += count;
        }
        self.bad_frames += outcome.bad_frames;
        self.ticks += outcome.ticks;
    }
}

/// Sends `hello {}` and, in stream mode, one `subscribe` with this client's channels.
async fn greet(ws: &mut Ws, plan: &Plan, index: u64) -> Result<(), WsError> {
    net::send_message(ws, ClientMessage::Hello(Hello::default())).await?;
    if plan.mode.subscribes() {
        let channels = plan.channels_for(index);
        net::send_message(ws, ClientMessage::Subscribe(Subscribe { channels })).await?;
    }
    Ok(())
}

/// Counts the messages of one text frame and times its ticks.
fn handle_text(
    text: &str,
    shared: &Shared,
    outcome: &mut ClientOutcome,
    samples: &mut LatencySamples,
) {
    let received_at = net::unix_micros_now();
    let Ok(envelope) = ServerEnvelope::from_json(text) else {
        outcome.bad_frames += 1;
        return;
    };
    let messages = envelope.unpack();
    shared.messages.fetch_add(messages.len() as u64, Relaxed);
    let measuring = shared.measuring.load(Relaxed);
    for message in messages {
        match message.message {
            ServerMessage::Tick(_) if measuring => {
                outcome.ticks += 1;
                samples.record(received_at - message.timestamp.unix_micros(), shared);
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
    ws: &mut Ws,
    shared: &Shared,
    outcome: &mut ClientOutcome,
    samples: &mut LatencySamples,
) {
    loop {
        let frame = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return,
            frame = ws.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => handle_text(text.as_str(), shared, outcome, samples),
            Some(Ok(Message::Binary(_))) => outcome.bad_frames += 1,
            Some(Ok(Message::Ping(_))) => outcome.pings += 1,
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map_or(NO_STATUS_CLOSE, |frame| u16::from(frame.code));
                outcome.closed_early.get_or_insert(code);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                outcome.closed_early.get_or_insert(ABNORMAL_CLOSE);
                return;
            }
        }
    }
}

/// One client from connect to close. Never panics: every failure ends up in
/// the outcome.
async fn run_client(index: u64, plan: Arc<Plan>, shared: Arc<Shared>) -> ClientOutcome {
    let mut outcome = ClientOutcome::default();
    let mut ws = match net::connect(&plan, index).await {
        Ok(ws) => ws,
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
    match greet(&mut ws, &plan, index).await {
        Ok(()) => read_until_stop(&mut ws, &shared, &mut outcome, &mut samples).await,
        Err(_) => outcome.closed_early = Some(ABNORMAL_CLOSE),
    }
    shared.open.fetch_sub(1, Relaxed);
    samples.flush(&shared);
    if outcome.closed_early.is_none() {
        net::close_normally(&mut ws).await;
    }
    outcome
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

/// On Ctrl-C, marks the run interrupted and stops it.
fn spawn_ctrl_c(shared: Arc<Shared>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            shared.interrupted.store(true, Relaxed);
            shared.stop.cancel();
        }
    });
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
    let mut tally = Tally {
        unfinished,
        ..Tally::default()
    };
    for outcome in outcomes {
        tally.add(outcome);
    }
    tally
}

/// Tick latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
struct LatencyMs {
    samples: u64,
    p50: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
}

impl LatencyMs {
    /// The percentiles of a histogram in microseconds; `None` when it is empty.
    fn from_histogram(histogram: &Histogram<u64>) -> Option<Self> {
        let ms = |micros: u64| micros as f64 / 1000.0;
        (!histogram.is_empty()).then(|| LatencyMs {
            samples: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        })
    }
}

/// The final report; the text and the JSON forms carry the same fields.
#[derive(Debug, Serialize)]
struct Report {
    mode: Mode,
    url: String,
    clients_requested: u64,
    connected: u64,
    connect_errors: u64,
    /// Connect errors per message, to tell a refused port from a full fd table.
    connect_error_kinds: BTreeMap<String, u64>,
    closed_early: u64,
    closed_early_by_code: BTreeMap<u16, u64>,
    /// Sockets still open when the run ended (the number idle mode is for).
    open_at_end: u64,
    /// Connected sockets that received (and answered) at least one server Ping.
    pinged: u64,
    /// The fewest Pings one connected socket received; 0 when any got none.
    min_pings: u64,
    /// Pings received by all sockets together.
    pings_received: u64,
    subscriptions_requested: u64,
    subscribed: u64,
    server_errors: u64,
    server_errors_by_code: BTreeMap<String, u64>,
    bad_frames: u64,
    unfinished_clients: u64,
    interrupted: bool,
    ramp_up_secs: f64,
    duration_secs: f64,
    /// Ticks received during the measurement window.
    messages_received: u64,
    messages_per_sec: f64,
    latency_ms: Option<LatencyMs>,
    /// Abuse mode: what the two abusers saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    abuse: Option<abuse::AbuseReport>,
}

impl Report {
    /// Puts the tally, the histogram and the timings together.
    fn new(
        args: &Args,
        plan: &Plan,
        tally: Tally,
        shared: &Shared,
        ramp_up: Duration,
        window: Duration,
    ) -> Self {
        let histogram = shared
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let window_secs = window.as_secs_f64();
        let subscriptions_requested = if plan.mode.subscribes() {
            tally.connected * plan.per_client as u64
        } else {
            0
        };
        Report {
            mode: plan.mode,
            url: plan.url.clone(),
            clients_requested: args.clients,
            connected: tally.connected,
            connect_errors: tally.connect_errors.values().sum(),
            connect_error_kinds: tally.connect_errors,
            closed_early: tally.closed_early.values().sum(),
            closed_early_by_code: tally.closed_early,
            open_at_end: tally.open_at_end,
            pinged: tally.pinged,
            min_pings: tally.min_pings.unwrap_or(0),
            pings_received: tally.pings,
            subscriptions_requested,
            subscribed: tally.subscribed,
            server_errors: tally.errors.values().sum(),
            server_errors_by_code: tally.errors,
            bad_frames: tally.bad_frames,
            unfinished_clients: tally.unfinished,
            interrupted: shared.interrupted.load(Relaxed),
            ramp_up_secs: ramp_up.as_secs_f64(),
            duration_secs: window_secs,
            messages_received: tally.ticks,
            messages_per_sec: if window_secs > 0.0 {
                tally.ticks as f64 / window_secs
            } else {
                0.0
            },
            latency_ms: LatencyMs::from_histogram(&histogram),
            abuse: None,
        }
    }

    /// The report as one JSON line.
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    }

    /// The report as aligned text lines.
    fn to_text(&self) -> String {
        let mut lines = vec![
            format!(
                "pulse-loadgen report ({} mode, {})",
                self.mode.as_str(),
                self.url
            ),
            format!("  clients requested   {}", self.clients_requested),
            format!("  connected           {}", self.connected),
            format!(
                "  connect errors      {}{}",
                self.connect_errors,
                breakdown(&self.connect_error_kinds)
            ),
            format!(
                "  closed early        {}{}",
                self.closed_early,
                breakdown(&self.closed_early_by_code)
            ),
            format!("  open at end         {}", self.open_at_end),
            format!(
                "  pinged              {} sockets got a Ping (at least {} each, {} in all)",
                self.pinged, self.min_pings, self.pings_received
            ),
        ];
        if self.mode.subscribes() {
            lines.push(format!(
                "  subscriptions       {} requested, {} subscribed",
                self.subscriptions_requested, self.subscribed
            ));
        }
        lines.push(format!(
            "  server errors       {}{}",
            self.server_errors,
            breakdown(&self.server_errors_by_code)
        ));
        if self.bad_frames > 0 {
            lines.push(format!("  bad frames          {}", self.bad_frames));
        }
        if self.unfinished_clients > 0 {
            lines.push(format!("  unfinished clients  {}", self.unfinished_clients));
        }
        lines.push(format!("  ramp-up             {:.2} s", self.ramp_up_secs));
        lines.push(format!(
            "  duration            {:.2} s{}",
            self.duration_secs,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        ));
        if self.mode.subscribes() {
            lines.push(format!(
                "  messages received   {} ({:.1} msgs/s)",
                self.messages_received, self.messages_per_sec
            ));
            lines.push(match &self.latency_ms {
                Some(l) => format!(
                    "  latency (ms)        p50 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3} ({} samples)",
                    l.p50, l.p99, l.p99_9, l.max, l.samples
                ),
                None => "  latency (ms)        no ticks received".to_owned(),
            });
        }
        if let Some(abuse) = &self.abuse {
            lines.push(format!(
                "  abuse               {}",
                serde_json::to_string_pretty(abuse).unwrap_or_default()
            ));
        }
        lines.join("\n")
    }
}

/// ` (key: count, key: count)` for a non-empty map, nothing for an empty one.
fn breakdown<K: std::fmt::Display>(counts: &BTreeMap<K, u64>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(key, count)| format!("{key}: {count}"))
        .collect();
    format!(" ({})", parts.join(", "))
}

/// Parses the flags, runs ramp-up, measurement and close, and prints the report.
#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match Plan::from_args(&args).await {
        Ok(plan) => Arc::new(plan),
        Err(err) => {
            eprintln!("pulse-loadgen: {err}");
            return ExitCode::from(2);
        }
    };
    let shared = Arc::new(Shared::new());
    spawn_ctrl_c(Arc::clone(&shared));
    if args.mode == Mode::Doc {
        return run_doc(&args, plan, &shared).await;
    }
    net::raise_fd_limit(args.clients);
    if args.mode == Mode::Storm {
        return run_storm(&args, plan, &shared).await;
    }
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

    let mut report = Report::new(&args, &plan, tally, &shared, ramp_up, window);
    report.abuse = abuse;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    if report.connected == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs storm mode and prints its report.
async fn run_storm(args: &Args, plan: Arc<Plan>, shared: &Shared) -> ExitCode {
    let timings = storm::StormTimings {
        settle: Duration::from_secs(args.settle),
        verify: Duration::from_secs(args.verify),
        connect_rate: args.connect_rate,
    };
    let report = storm::run(plan, args.clients, timings, shared.stop.clone()).await;
    print_report(&report, args.json);
    if report.subscribed_before_drop == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints a scenario's report: one JSON line with `--json`, else pretty JSON.
fn print_report(report: &impl Serialize, json: bool) {
    let printed = if json {
        serde_json::to_string(report)
    } else {
        serde_json::to_string_pretty(report)
    };
    println!(
        "{}",
        printed.unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    );
}

/// Checks the doc-mode flags.
fn doc_plan(args: &Args) -> Result<doc::DocPlan, String> {
    Channel::doc(&args.doc).map_err(|err| format!("--doc: {err}"))?;
    if !(args.edit_rate.is_finite() && args.edit_rate > 0.0) {
        return Err(format!(
            "--edit-rate {}: give a positive rate",
            args.edit_rate
        ));
    }
    if args.editors + args.readers == 0 {
        return Err("--editors and --readers: give at least one client".into());
    }
    Ok(doc::DocPlan {
        doc: args.doc.clone(),
        editors: args.editors,
        readers: args.readers,
        edit_rate: args.edit_rate,
        total_updates: args.total_updates,
        duration: Duration::from_secs(args.duration),
        send_past_retries: args.send_past_retries,
        max_in_flight: usize::try_from(args.max_in_flight).unwrap_or(usize::MAX),
        edit_at: args.edit_at,
        connect_rate: args.connect_rate,
    })
}

/// Runs doc mode and prints its report.
async fn run_doc(args: &Args, plan: Arc<Plan>, shared: &Shared) -> ExitCode {
    let doc_plan = match doc_plan(args) {
        Ok(doc_plan) => doc_plan,
        Err(err) => {
            eprintln!("pulse-loadgen: {err}");
            return ExitCode::from(2);
        }
    };
    net::raise_fd_limit(args.editors + args.readers + 1);
    let report = doc::run(plan, doc_plan, shared.stop.clone()).await;
    print_report(&report, args.json);
    if report.subscribed == 0 || (args.editors > 0 && report.acked == 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
