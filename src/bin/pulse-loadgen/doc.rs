//! Owns the shared-note run (`--mode doc`, issue 12): `--editors` identified
//! clients each keep a yrs replica of one document (`doc:{--doc}`) and, at
//! `--edit-rate` per second each, insert one letter at a random spot of their
//! own replica and send the update as a `doc_update` with a fresh envelope id;
//! `--readers` more clients only subscribe. Every client applies every
//! `doc_update` it receives to its replica (an editor skips its own copy,
//! which yrs would ignore anyway). A `rate_limited` answer is sent again with
//! the same id after [`RETRY_AFTER`], and the editor types nothing new until
//! it is acknowledged, so the server receives each editor's updates in order
//! (`--send-past-retries` keeps typing, which the server then receives out
//! of order).
//!
//! An editor has at most `--max-in-flight` updates unacknowledged (it holds
//! further edits meanwhile, so that a slow server gets a bounded backlog). `--edit-at cursor` types after the editor's
//! previous letter (a Yjs relative position), as a person does, instead of
//! at a random spot each time.
//!
//! Editing starts once every client is subscribed and stops after
//! `--total-updates` fresh updates (or `--duration` seconds, or when the
//! server first answers `too_large`: the document is full); the run then
//! waits for the last acks and for every open client to receive every
//! acknowledged offset. Measured:
//! - acknowledged updates per second (the ack comes after the update is on disk);
//! - update-to-peer latency: an editor notes when it first sent each envelope
//!   id; its `ack` maps the update's offset to that moment, and every other
//!   client of this process looks the offset up when the `doc_update` with it
//!   arrives (a receipt that comes before the sender read its ack waits for it);
//! - the sender's send-to-ack time;
//! - the offsets every client saw (gaps, repeats) and whether every replica
//!   ended with the text of a fresh subscriber's snapshot, whose decoded size
//!   is the document's state size.
//!
//! The server's CPU and memory are not read here: `bench/bench.py` samples
//! them over `ramp_up_secs` .. `ramp_up_secs + duration_secs` of this report.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures_util::StreamExt;
use pulse::protocol::{
    Ack, Channel, ClientEnvelope, ClientMessage, DocUpdateEvent, DocUpdateRequest, ErrorBody,
    ErrorCode, Hello, ServerEnvelope, ServerMessage, Subscribe, SubscribeChannel, Subscribed,
};
use pulse::server::hub::{encode_state, text_of};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use yrs::StickyIndex;

use crate::net::{self, Ws, CONNECT_TIMEOUT};
use replica::{micros_between, Replica, ReplicaError, TextPrint};
use timeline::Timeline;

mod replica;
mod timeline;
use crate::tasks::{self, wait_until};
use crate::{LatencyMs, Plan, ABNORMAL_CLOSE, NO_STATUS_CLOSE, PROGRESS_EVERY};

/// How long a client waits for its `subscribed` once connected.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `rate_limited` (or `internal`) update waits before it is sent
/// again with the same id: a few of the server's 30-a-second tokens.
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// How often one update is sent before the editor gives it up.
const MAX_TRIES: u32 = 50;
/// How long the run waits, after editing stopped, for the last acks and for
/// every client to receive every acknowledged update.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Client indexes (source addresses) of the final subscriber, past every
/// editor's and reader's.
const FINAL_INDEX_BASE: u64 = 1 << 40;

/// The run's shape, from the flags.
#[derive(Debug, Clone)]
pub struct DocPlan {
    /// The document id (`doc:{doc}`).
    pub doc: String,
    pub editors: u64,
    pub readers: u64,
    /// Fresh updates per second per editor.
    pub edit_rate: f64,
    /// Editing stops after this many fresh updates (all editors together).
    pub total_updates: Option<u64>,
    /// Editing stops after this long in any case.
    pub duration: Duration,
    /// Keep sending fresh updates while a refused one waits for its resend.
    pub send_past_retries: bool,
    /// Updates one editor may have sent and not seen acknowledged.
    pub max_in_flight: usize,
    /// Where editors type.
    pub edit_at: EditAt,
    /// New connections per second while ramping up.
    pub connect_rate: u32,
}

impl DocPlan {
    fn clients(&self) -> u64 {
        self.editors + self.readers
    }

    fn channel(&self) -> String {
        Channel::Doc(self.doc.clone()).to_string()
    }
}

/// Where an editor types each letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EditAt {
    /// At a random spot of its replica, every time (the worst case for the
    /// document's size: no two letters merge into one Yjs item).
    Random,
    /// Right after its previous letter, like someone typing (from a random
    /// first spot); runs of letters merge into one Yjs item.
    Cursor,
}

/// Why a client could not join the document, or the final snapshot failed.
#[derive(Debug, thiserror::Error)]
enum JoinError {
    #[error("login: {0}")]
    Login(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("send: {0}")]
    Send(#[from] WsError),
    #[error("closed {0} before subscribed")]
    Closed(u16),
    #[error("no subscribed within {} s", SUBSCRIBE_TIMEOUT.as_secs())]
    Timeout,
    #[error("subscribe answered {0}")]
    Refused(&'static str),
    #[error("subscribed without a document snapshot")]
    NoSnapshot,
    #[error("snapshot: {0}")]
    Snapshot(#[from] ReplicaError),
}

impl JoinError {
    /// The report's key for this kind of failure (the details vary per client).
    fn kind(&self) -> String {
        match self {
            JoinError::Login(why) | JoinError::Connect(why) => why.clone(),
            other => other.to_string(),
        }
    }
}

/// Where one client stands, for the drain: the last offset it received and
/// whether its socket is still open.
#[derive(Default)]
struct Position {
    last: AtomicU64,
    open: AtomicBool,
}

/// What the client tasks and the main task share.
struct DocShared {
    /// Clients subscribed, and clients that could not join.
    subscribed: AtomicU64,
    failed: AtomicU64,
    /// Cancelled when editing starts (every client subscribed).
    editing: CancellationToken,
    /// Cancelled when editing stops: no fresh update is sent after it.
    stop_editing: CancellationToken,
    /// Cancelled at the end: every client closes its socket.
    stop: CancellationToken,
    /// Fresh updates reserved (at most `--total-updates`), sent, acked,
    /// refused by the server (not retried) and given up after [`MAX_TRIES`].
    reserved: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    abandoned: AtomicU64,
    /// Sends of an update again after `rate_limited` or `internal`.
    resends: AtomicU64,
    /// The highest offset acknowledged, and when the last ack arrived
    /// (microseconds after editing started).
    max_acked: AtomicU64,
    last_ack_micros: AtomicU64,
    /// `doc_update`s received by all clients together.
    received: AtomicU64,
    /// Editors that stopped because an update of theirs was refused for good.
    editors_stopped: AtomicU64,
    /// Updates acknowledged when the first `too_large` arrived.
    full_at_acked: OnceLock<u64>,
    positions: Vec<Position>,
    timeline: Mutex<Timeline>,
    /// When editing started (set before `editing` is cancelled).
    started: OnceLock<Instant>,
    total: Option<u64>,
}

impl DocShared {
    /// Fresh counters for `clients` clients; `stop` ends the run.
    fn new(clients: u64, total: Option<u64>, stop: CancellationToken) -> Self {
        DocShared {
            subscribed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            editing: CancellationToken::new(),
            stop_editing: CancellationToken::new(),
            stop,
            reserved: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            max_acked: AtomicU64::new(0),
            last_ack_micros: AtomicU64::new(0),
            received: AtomicU64::new(0),
            editors_stopped: AtomicU64::new(0),
            full_at_acked: OnceLock::new(),
            positions: (0..clients).map(|_| Position::default()).collect(),
            timeline: Mutex::new(Timeline::new()),
            started: OnceLock::new(),
            total,
        }
    }

    fn timeline(&self) -> MutexGuard<'_, Timeline> {
        self.timeline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves one fresh update; false once `--total-updates` are reserved.
    fn reserve(&self) -> bool {
        let reserved = self.reserved.fetch_add(1, Relaxed);
        match self.total {
            Some(total) if reserved >= total => {
                self.reserved.fetch_sub(1, Relaxed);
                false
            }
            _ => true,
        }
    }

    /// Updates sent and not settled yet (acked, refused or abandoned).
    fn in_flight(&self) -> u64 {
        let settled =
            self.acked.load(Relaxed) + self.refused.load(Relaxed) + self.abandoned.load(Relaxed);
        self.sent.load(Relaxed).saturating_sub(settled)
    }

    /// Open clients that have not received every acknowledged offset yet.
    fn lagging(&self) -> usize {
        let target = self.max_acked.load(Relaxed);
        self.positions
            .iter()
            .filter(|p| p.open.load(Relaxed) && p.last.load(Relaxed) < target)
            .count()
    }
}

/// An update an editor sent and has no ack for yet.
struct Pending {
    update: String,
    first_sent: Instant,
    tries: u32,
    /// Refused once (`rate_limited`, `internal`): waiting for a resend's ack.
    refused: bool,
}

/// What an editor sends and waits for; readers have none.
struct Editing {
    rng: StdRng,
    /// Envelope ids are `{run}-{index}-{n}`: unique per user across runs
    /// against one server (the server keeps ids for idempotency).
    id_prefix: String,
    next_id: u64,
    period: Duration,
    /// Whether fresh updates go out while a refused one waits, and how many
    /// may be unacknowledged (see `DocPlan`).
    send_past_retries: bool,
    max_in_flight: usize,
    edit_at: EditAt,
    /// Right after the last letter (cursor mode types there next).
    cursor: Option<StickyIndex>,
    /// An update was refused for good (`too_large`, `invalid`): the replica
    /// now holds an edit the server does not, so this editor stops.
    stopped: bool,
    pending: HashMap<String, Pending>,
    /// Ids to send again, oldest first, with the moment each is due.
    retries: VecDeque<(tokio::time::Instant, String)>,
}

/// What happened to one client.
#[derive(Debug, Default)]
struct DocOutcome {
    join_error: Option<String>,
    /// The close code when the server (or the network) ended the socket first.
    closed_early: Option<u16>,
    /// `error` answers, per code.
    errors: BTreeMap<&'static str, u64>,
    rate_limited: u64,
    received: u64,
    gaps: u64,
    repeats: u64,
    /// `doc_update`s the replica could not apply, and frames that were not
    /// server envelopes.
    bad_updates: u64,
    bad_frames: u64,
    /// Acks of ids this editor had no pending update for.
    stray_acks: u64,
    /// Edits skipped: a refused update or `--max-in-flight` were unacknowledged.
    edits_held: u64,
    /// This editor's updates the server refused for good (its replica holds
    /// them, the server does not).
    refused: u64,
    text: Option<TextPrint>,
}

/// One client's connection and replica after it joined.
struct Member {
    ws: Ws,
    replica: Replica,
    /// The guest name: an editor's own copies carry it.
    name: String,
}

/// Logs in as `name`, connects as client `index`, says `hello` with the
/// token and subscribes to the document; applies the snapshot.
async fn join(
    plan: &Plan,
    doc: &DocPlan,
    index: u64,
    name: String,
    client_id: Option<u64>,
) -> Result<(Member, Duration), JoinError> {
    let token = net::guest_login(plan.target, &name)
        .await
        .map_err(JoinError::Login)?;
    let mut ws = net::connect(plan, index)
        .await
        .map_err(JoinError::Connect)?;
    let hello = ClientMessage::Hello(Hello { token: Some(token) });
    net::send_message(&mut ws, hello).await?;
    let channel = doc.channel();
    let subscribe = ClientMessage::Subscribe(Subscribe {
        channels: vec![SubscribeChannel {
            channel: channel.clone(),
            since: None,
        }],
    });
    let asked = Instant::now();
    net::send_message(&mut ws, subscribe).await?;
    let deadline = tokio::time::Instant::now() + SUBSCRIBE_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| JoinError::Timeout)?;
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Err(JoinError::Closed(
                    frame.map_or(NO_STATUS_CLOSE, |f| u16::from(f.code)),
                ))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(JoinError::Closed(ABNORMAL_CLOSE)),
        };
        let Ok(envelope) = ServerEnvelope::from_json(text.as_str()) else {
            continue;
        };
        for message in envelope.unpack() {
            match message.message {
                ServerMessage::Subscribed(answer) if answer.channel == channel => {
                    let took = asked.elapsed();
                    let replica = snapshot_replica(&answer, client_id)?;
                    let member = Member { ws, replica, name };
                    return Ok((member, took));
                }
                ServerMessage::Error(body) if body.channel.as_deref() == Some(&channel) => {
                    return Err(JoinError::Refused(body.code.as_str()))
                }
                _ => {}
            }
        }
    }
}

/// A replica holding a `subscribed` answer's document snapshot.
fn snapshot_replica(answer: &Subscribed, client_id: Option<u64>) -> Result<Replica, JoinError> {
    let Some(pulse::protocol::Snapshot::Doc(snapshot)) = &answer.snapshot else {
        return Err(JoinError::NoSnapshot);
    };
    let mut replica = Replica::new(client_id);
    replica.apply_base64(&snapshot.state)?;
    replica.last_offset = answer.offset;
    Ok(replica)
}

/// Sends one update with its envelope id.
async fn send_update(ws: &mut Ws, doc: &str, id: &str, update: &str) -> Result<(), WsError> {
    let message = ClientMessage::DocUpdate(DocUpdateRequest {
        doc: doc.to_owned(),
        update: update.to_owned(),
    });
    net::send(ws, ClientEnvelope::new(message).with_id(id)).await
}

impl Editing {
    /// Types a letter and sends its update as a fresh envelope id.
    async fn send_fresh(
        &mut self,
        member: &mut Member,
        doc: &str,
        shared: &DocShared,
    ) -> Result<(), WsError> {
        let at = match (self.edit_at, &self.cursor) {
            (EditAt::Cursor, Some(cursor)) => member.replica.cursor_index(cursor),
            _ => None,
        };
        let (update, typed_at) = member.replica.type_letter(at, &mut self.rng);
        if self.edit_at == EditAt::Cursor {
            self.cursor = member.replica.cursor_after(typed_at);
        }
        let update = BASE64.encode(update);
        self.next_id += 1;
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        let first_sent = Instant::now();
        send_update(&mut member.ws, doc, &id, &update).await?;
        shared.sent.fetch_add(1, Relaxed);
        self.pending.insert(
            id,
            Pending {
                update,
                first_sent,
                tries: 1,
                refused: false,
            },
        );
        Ok(())
    }

    /// Sends again every retry that is due.
    async fn send_due_retries(
        &mut self,
        ws: &mut Ws,
        doc: &str,
        shared: &DocShared,
    ) -> Result<(), WsError> {
        let now = tokio::time::Instant::now();
        while let Some((due, _)) = self.retries.front() {
            if *due > now {
                break;
            }
            let Some((_, id)) = self.retries.pop_front() else {
                break;
            };
            let Some(pending) = self.pending.get_mut(&id) else {
                continue;
            };
            pending.tries += 1;
            shared.resends.fetch_add(1, Relaxed);
            send_update(ws, doc, &id, &pending.update).await?;
        }
        Ok(())
    }

    /// The server acknowledged `ack`: the timeline learns its offset.
    fn on_ack(&mut self, ack: Ack, shared: &DocShared, outcome: &mut DocOutcome) {
        let (Some(pending), Some(offset)) = (self.pending.remove(&ack.id), ack.offset) else {
            outcome.stray_acks += 1;
            return;
        };
        let now = Instant::now();
        shared.timeline().acked(offset, pending.first_sent, now);
        shared.acked.fetch_add(1, Relaxed);
        shared.max_acked.fetch_max(offset, Relaxed);
        if let Some(started) = shared.started.get() {
            shared
                .last_ack_micros
                .fetch_max(micros_between(*started, now), Relaxed);
        }
    }

    /// An error that names one of this editor's pending ids: `rate_limited`
    /// and `internal` are sent again after [`RETRY_AFTER`] (at most
    /// [`MAX_TRIES`] times), anything else drops the update. True when the
    /// update was dropped (the replica holds an edit the server does not).
    fn on_error(&mut self, body: &ErrorBody, shared: &DocShared) -> bool {
        let Some(id) = body.id.as_deref() else {
            return false;
        };
        let Some(pending) = self.pending.get_mut(id) else {
            return false;
        };
        let retry = matches!(body.code, ErrorCode::RateLimited | ErrorCode::Internal);
        if retry && pending.tries < MAX_TRIES {
            pending.refused = true;
            let due = tokio::time::Instant::now() + RETRY_AFTER;
            self.retries.push_back((due, id.to_owned()));
            false
        } else {
            self.pending.remove(id);
            if !self.stopped {
                self.stopped = true;
                shared.editors_stopped.fetch_add(1, Relaxed);
            }
            if retry {
                shared.abandoned.fetch_add(1, Relaxed);
            } else {
                shared.refused.fetch_add(1, Relaxed);
            }
            if body.code == ErrorCode::TooLarge {
                // The document is full: nobody's edits fit any more.
                let acked = shared.acked.load(Relaxed);
                let _ = shared.full_at_acked.set(acked);
                shared.stop_editing.cancel();
            }
            true
        }
    }

    /// Whether the next fresh update has to wait: `max_in_flight` are
    /// unacknowledged, or a refused one is (unless `send_past_retries`).
    fn held(&self) -> bool {
        self.pending.len() >= self.max_in_flight
            || (!self.send_past_retries && self.pending.values().any(|pending| pending.refused))
    }

    /// When the next retry is due, if any.
    fn next_retry(&self) -> Option<tokio::time::Instant> {
        self.retries.front().map(|(due, _)| *due)
    }
}

/// Takes one text frame: applies `doc_update`s, times peers' updates, and
/// hands acks and errors to the editor. Returns false on a frame that is
/// not a server envelope.
fn handle_text(
    text: &str,
    index: usize,
    member: &mut Member,
    editing: Option<&mut Editing>,
    shared: &DocShared,
    outcome: &mut DocOutcome,
) -> bool {
    let received_at = Instant::now();
    let Ok(envelope) = ServerEnvelope::from_json(text) else {
        return false;
    };
    let mut editing = editing;
    for message in envelope.unpack() {
        match message.message {
            ServerMessage::DocUpdate(event) => {
                on_doc_update(event, received_at, index, member, shared, outcome);
            }
            ServerMessage::Ack(ack) => {
                if let Some(editing) = editing.as_deref_mut() {
                    editing.on_ack(ack, shared, outcome);
                } else {
                    outcome.stray_acks += 1;
                }
            }
            ServerMessage::Error(body) => {
                *outcome.errors.entry(body.code.as_str()).or_default() += 1;
                if body.code == ErrorCode::RateLimited {
                    outcome.rate_limited += 1;
                }
                if let Some(editing) = editing.as_deref_mut() {
                    outcome.refused += u64::from(editing.on_error(&body, shared));
                }
            }
            _ => {}
        }
    }
    true
}

/// One `doc_update`: checks its offset, times it unless it is the client's
/// own, and applies it.
fn on_doc_update(
    event: DocUpdateEvent,
    received_at: Instant,
    index: usize,
    member: &mut Member,
    shared: &DocShared,
    outcome: &mut DocOutcome,
) {
    outcome.received += 1;
    shared.received.fetch_add(1, Relaxed);
    if !member.replica.observe(event.offset) {
        return;
    }
    if let Some(position) = shared.positions.get(index) {
        position.last.store(event.offset, Relaxed);
    }
    // An editor's own copy: already in its replica.
    if event.user.name == member.name {
        return;
    }
    shared.timeline().received(event.offset, received_at);
    if member.replica.apply_base64(&event.update).is_err() {
        outcome.bad_updates += 1;
    }
}

/// The moment of an editor's next fresh update: a fixed schedule, which
/// skips ahead rather than bursting when the client fell behind it.
fn next_edit_after(previous: tokio::time::Instant, period: Duration) -> tokio::time::Instant {
    let next = previous + period;
    let now = tokio::time::Instant::now();
    if next + period < now {
        now
    } else {
        next
    }
}

/// Reads, applies and (for an editor) edits until the run stops or the
/// socket ends; a socket that ends first leaves its close code in `outcome`.
async fn take_part(
    index: usize,
    member: &mut Member,
    mut editing: Option<Editing>,
    doc: &DocPlan,
    shared: &DocShared,
    outcome: &mut DocOutcome,
) {
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
    let mut edit_timer = pin!(tokio::time::sleep_until(far()));
    let mut retry_timer = pin!(tokio::time::sleep_until(far()));
    let mut started = false;
    let mut editing_over = editing.is_none();
    loop {
        let frame = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return,
            () = shared.editing.cancelled(), if !started && !editing_over => {
                started = true;
                if let Some(editing) = &mut editing {
                    // A random phase, so that the editors do not send together.
                    let phase = editing.period.mul_f64(editing.rng.random::<f64>());
                    edit_timer.as_mut().reset(tokio::time::Instant::now() + phase);
                }
                continue;
            }
            () = shared.stop_editing.cancelled(), if !editing_over => {
                editing_over = true;
                continue;
            }
            () = &mut edit_timer, if started && !editing_over => {
                let Some(editing) = &mut editing else { continue };
                let deadline = edit_timer.deadline();
                edit_timer.as_mut().reset(next_edit_after(deadline, editing.period));
                if editing.stopped {
                    editing_over = true;
                    continue;
                }
                if editing.held() {
                    outcome.edits_held += 1;
                    continue;
                }
                if !shared.reserve() {
                    editing_over = true;
                    continue;
                }
                if editing.send_fresh(member, &doc.doc, shared).await.is_err() {
                    outcome.closed_early.get_or_insert(ABNORMAL_CLOSE);
                    return;
                }
                continue;
            }
            () = &mut retry_timer => {
                if let Some(editing) = &mut editing {
                    if editing.send_due_retries(&mut member.ws, &doc.doc, shared).await.is_err() {
                        outcome.closed_early.get_or_insert(ABNORMAL_CLOSE);
                        return;
                    }
                    retry_timer.as_mut().reset(editing.next_retry().unwrap_or_else(far));
                } else {
                    retry_timer.as_mut().reset(far());
                }
                continue;
            }
            frame = member.ws.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                let ok = handle_text(
                    text.as_str(),
                    index,
                    member,
                    editing.as_mut(),
                    shared,
                    outcome,
                );
                outcome.bad_frames += u64::from(!ok);
                if let Some(due) = editing.as_ref().and_then(Editing::next_retry) {
                    if due < retry_timer.deadline() {
                        retry_timer.as_mut().reset(due);
                    }
                }
            }
            Some(Ok(Message::Binary(_))) => outcome.bad_frames += 1,
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

/// One client from login to close. Never panics: every failure ends up in
/// the outcome. Client `index` is an editor when below `--editors`.
async fn run_client(
    index: u64,
    client_id: Option<u64>,
    run_id: u32,
    plan: Arc<Plan>,
    doc: Arc<DocPlan>,
    shared: Arc<DocShared>,
) -> DocOutcome {
    let editor = index < doc.editors;
    let mut outcome = DocOutcome::default();
    let name = if editor {
        format!("bench-editor-{index}")
    } else {
        format!("bench-reader-{index}")
    };
    let mut member = match join(&plan, &doc, index, name, client_id).await {
        Ok((member, _)) => member,
        Err(err) => {
            outcome.join_error = Some(err.kind());
            shared.failed.fetch_add(1, Relaxed);
            return outcome;
        }
    };
    let slot = usize::try_from(index).unwrap_or(usize::MAX);
    if let Some(position) = shared.positions.get(slot) {
        position.last.store(member.replica.last_offset, Relaxed);
        position.open.store(true, Relaxed);
    }
    shared.subscribed.fetch_add(1, Relaxed);
    let editing = editor.then(|| Editing {
        rng: StdRng::seed_from_u64(u64::from(run_id) << 32 | index),
        id_prefix: format!("{run_id:08x}-{index}"),
        next_id: 0,
        period: Duration::from_secs_f64(1.0 / doc.edit_rate),
        send_past_retries: doc.send_past_retries,
        max_in_flight: doc.max_in_flight,
        edit_at: doc.edit_at,
        cursor: None,
        stopped: false,
        pending: HashMap::new(),
        retries: VecDeque::new(),
    });
    take_part(slot, &mut member, editing, &doc, &shared, &mut outcome).await;
    if let Some(position) = shared.positions.get(slot) {
        position.open.store(false, Relaxed);
    }
    outcome.gaps = member.replica.gaps;
    outcome.repeats = member.replica.repeats;
    outcome.text = Some(member.replica.fingerprint());
    if outcome.closed_early.is_none() {
        net::close_normally(&mut member.ws).await;
    }
    outcome
}

/// The document as a client that subscribes after the run sees it.
#[derive(Debug, Serialize)]
pub struct FinalSnapshot {
    /// The channel's latest offset.
    pub offset: u64,
    /// The encoded Yjs state (the snapshot's `state`, decoded from base64).
    pub state_bytes: usize,
    /// The same on the wire, as base64.
    pub state_base64_bytes: usize,
    /// The characters of the document's text.
    pub text_chars: usize,
    /// From sending `subscribe` to the `subscribed` answer.
    pub subscribe_ms: f64,
    /// Why it failed, if it did (the other fields are then 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    #[serde(skip)]
    text: Option<TextPrint>,
}

impl FinalSnapshot {
    fn failed(why: String) -> Self {
        FinalSnapshot {
            offset: 0,
            state_bytes: 0,
            state_base64_bytes: 0,
            text_chars: 0,
            subscribe_ms: 0.0,
            failed: Some(why),
            text: None,
        }
    }
}

/// Subscribes a fresh client and reads the document's snapshot.
async fn final_snapshot(plan: &Plan, doc: &DocPlan, run_id: u32) -> FinalSnapshot {
    let name = format!("bench-final-{run_id:08x}");
    let (mut member, took) = match join(plan, doc, FINAL_INDEX_BASE, name, None).await {
        Ok(joined) => joined,
        Err(err) => return FinalSnapshot::failed(err.to_string()),
    };
    let state = encode_state(&member.replica.doc);
    let text = text_of(&member.replica.doc);
    net::close_normally(&mut member.ws).await;
    FinalSnapshot {
        offset: member.replica.last_offset,
        state_bytes: state.len(),
        state_base64_bytes: BASE64.encode(&state).len(),
        text_chars: text.chars().count(),
        subscribe_ms: took.as_secs_f64() * 1000.0,
        failed: None,
        text: Some(TextPrint::of(&text)),
    }
}

/// The run's report (one JSON line with `--json`).
#[derive(Debug, Default, Serialize)]
pub struct DocReport {
    pub mode: &'static str,
    pub url: String,
    pub channel: String,
    pub editors: u64,
    pub readers: u64,
    /// Fresh updates per second per editor, and all editors together.
    pub edit_rate: f64,
    pub offered_per_sec: f64,
    pub total_updates: Option<u64>,
    pub subscribed: u64,
    pub join_errors: u64,
    pub join_error_kinds: BTreeMap<String, u64>,
    /// From the start until editing began (every client subscribed).
    pub ramp_up_secs: f64,
    /// From the start of editing until the last ack.
    pub edit_secs: f64,
    /// From the start of editing until every client had every update (or
    /// the drain gave up): the window bench/bench.py reads CPU over.
    pub duration_secs: f64,
    /// Whether every update was settled and every open client caught up.
    pub drained: bool,
    /// Fresh updates sent, sends of one again, acked, refused (dropped on an
    /// error other than `rate_limited`/`internal`) and given up.
    pub updates_sent: u64,
    pub resends: u64,
    pub acked: u64,
    pub refused: u64,
    pub abandoned: u64,
    /// Acknowledged updates per second of editing.
    pub acked_per_sec: f64,
    pub rate_limited: u64,
    /// Edits skipped: a refused update, or `--max-in-flight` updates, waited
    /// for their acks.
    pub edits_held: u64,
    pub send_past_retries: bool,
    pub max_in_flight: usize,
    pub edit_at: Option<EditAt>,
    /// Editors that stopped after an update of theirs was refused for good.
    pub editors_stopped: u64,
    /// Updates acknowledged when the server first answered `too_large`
    /// (the document reached its 1 MiB).
    pub full_at_acked: Option<u64>,
    pub server_errors_by_code: BTreeMap<String, u64>,
    /// Send to each peer's receipt of the `doc_update` (other editors and readers).
    pub update_to_peer_ms: Option<LatencyMs>,
    /// Send to the sender's `ack` (the update is on disk).
    pub ack_ms: Option<LatencyMs>,
    /// `doc_update`s received by all clients together (own copies included).
    pub received: u64,
    pub received_per_sec: f64,
    /// Receipts of offsets no editor of this run acknowledged.
    pub unmatched_receipts: u64,
    pub offset_gaps: u64,
    pub offset_repeats: u64,
    pub bad_updates: u64,
    pub bad_frames: u64,
    pub stray_acks: u64,
    pub closed_early: u64,
    pub closed_early_by_code: BTreeMap<u16, u64>,
    pub unfinished_clients: u64,
    /// A fresh subscriber's view after the run.
    pub final_snapshot: Option<FinalSnapshot>,
    /// Replicas whose text equals the final snapshot's, and those that differ
    /// (of these, editors whose own edits the server refused are expected
    /// to: they hold letters the document never took).
    pub replicas_converged: u64,
    pub replicas_diverged: u64,
    pub diverged_with_refused_edits: u64,
    pub interrupted: bool,
}

impl DocReport {
    fn add(&mut self, outcome: DocOutcome) {
        if let Some(kind) = outcome.join_error {
            *self.join_error_kinds.entry(kind).or_default() += 1;
            self.join_errors += 1;
            return;
        }
        if let Some(code) = outcome.closed_early {
            self.closed_early += 1;
            *self.closed_early_by_code.entry(code).or_default() += 1;
        }
        for (code, count) in outcome.errors {
            *self
                .server_errors_by_code
                .entry(code.to_owned())
                .or_default() += count;
        }
        self.rate_limited += outcome.rate_limited;
        self.offset_gaps += outcome.gaps;
        self.offset_repeats += outcome.repeats;
        self.bad_updates += outcome.bad_updates;
        self.bad_frames += outcome.bad_frames;
        self.stray_acks += outcome.stray_acks;
        self.edits_held += outcome.edits_held;
        let expected = self.final_snapshot.as_ref().and_then(|s| s.text);
        match (outcome.text, expected) {
            (Some(text), Some(expected)) if text == expected => self.replicas_converged += 1,
            (Some(_), _) => {
                self.replicas_diverged += 1;
                self.diverged_with_refused_edits += u64::from(outcome.refused > 0);
            }
            (None, _) => {}
        }
    }
}

/// Distinct random 32-bit Yjs client ids, one per editor (a browser's Yjs
/// draws its client id the same way).
fn editor_client_ids(editors: u64, rng: &mut StdRng) -> Vec<u64> {
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    while (ids.len() as u64) < editors {
        let id = u64::from(rng.random::<u32>());
        if seen.insert(id) {
            ids.push(id);
        }
    }
    ids
}

/// Prints the counters to stderr every [`PROGRESS_EVERY`].
fn spawn_progress(shared: Arc<DocShared>, clients: u64, started: Instant) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PROGRESS_EVERY);
        interval.tick().await;
        let (mut last_at, mut last_acked, mut last_received) = (Instant::now(), 0, 0);
        loop {
            interval.tick().await;
            let now = Instant::now();
            let (acked, received) = (shared.acked.load(Relaxed), shared.received.load(Relaxed));
            let secs = now.duration_since(last_at).as_secs_f64();
            eprintln!(
                "[{:>4}s] doc: subscribed {}/{clients}, acked {acked} ({:.0}/s), \
                 received {:.0}/s, in flight {}, lagging {}",
                started.elapsed().as_secs(),
                shared.subscribed.load(Relaxed),
                (acked - last_acked) as f64 / secs,
                (received - last_received) as f64 / secs,
                shared.in_flight(),
                shared.lagging(),
            );
            (last_at, last_acked, last_received) = (now, acked, received);
        }
    })
}

/// Runs the whole shared-note scenario and returns its report.
pub async fn run(plan: Arc<Plan>, doc: DocPlan, interrupted: CancellationToken) -> DocReport {
    let doc = Arc::new(doc);
    let clients = doc.clients();
    let run_id: u32 = rand::random();
    let mut rng = StdRng::seed_from_u64(u64::from(run_id));
    let client_ids = editor_client_ids(doc.editors, &mut rng);
    let shared = Arc::new(DocShared::new(clients, doc.total_updates, interrupted));
    let started = Instant::now();
    let progress = spawn_progress(Arc::clone(&shared), clients, started);

    let stop = shared.stop.clone();
    let handles = tasks::launch_paced(clients, doc.connect_rate, &stop, |index| {
        let client_id = usize::try_from(index)
            .ok()
            .and_then(|i| client_ids.get(i))
            .copied();
        tokio::spawn(run_client(
            index,
            client_id,
            run_id,
            Arc::clone(&plan),
            Arc::clone(&doc),
            Arc::clone(&shared),
        ))
    })
    .await;
    let ramp_limit = Duration::from_secs_f64(clients as f64 / f64::from(doc.connect_rate))
        + CONNECT_TIMEOUT * 2
        + SUBSCRIBE_TIMEOUT;
    wait_until(&shared.stop, ramp_limit, || {
        shared.subscribed.load(Relaxed) + shared.failed.load(Relaxed) >= clients
    })
    .await;

    let ramp_up = started.elapsed();
    let editing_from = Instant::now();
    let _ = shared.started.set(editing_from);
    shared.editing.cancel();
    let editors = (0..doc.editors)
        .filter_map(|index| shared.positions.get(usize::try_from(index).ok()?))
        .filter(|position| position.open.load(Relaxed))
        .count() as u64;
    wait_until(&shared.stop, doc.duration, || {
        let all_stopped = shared.editors_stopped.load(Relaxed) >= editors;
        all_stopped
            || shared
                .total
                .is_some_and(|total| shared.reserved.load(Relaxed) >= total)
    })
    .await;
    shared.stop_editing.cancel();
    let drained = || shared.in_flight() == 0 && shared.lagging() == 0;
    wait_until(&shared.stop, DRAIN_LIMIT, drained).await;
    let drained_in_time = drained();
    let window = editing_from.elapsed();
    let final_snapshot = if shared.stop.is_cancelled() {
        None
    } else {
        Some(final_snapshot(&plan, &doc, run_id).await)
    };
    let was_interrupted = shared.stop.is_cancelled();
    shared.stop.cancel();

    let edit_secs = shared.last_ack_micros.load(Relaxed) as f64 / 1e6;
    let acked = shared.acked.load(Relaxed);
    let received = shared.received.load(Relaxed);
    let mut report = DocReport {
        mode: "doc",
        url: plan.url.clone(),
        channel: doc.channel(),
        editors: doc.editors,
        readers: doc.readers,
        edit_rate: doc.edit_rate,
        offered_per_sec: doc.edit_rate * doc.editors as f64,
        total_updates: doc.total_updates,
        send_past_retries: doc.send_past_retries,
        max_in_flight: doc.max_in_flight,
        edit_at: Some(doc.edit_at),
        editors_stopped: shared.editors_stopped.load(Relaxed),
        full_at_acked: shared.full_at_acked.get().copied(),
        subscribed: shared.subscribed.load(Relaxed),
        ramp_up_secs: ramp_up.as_secs_f64(),
        edit_secs,
        duration_secs: window.as_secs_f64(),
        drained: drained_in_time,
        updates_sent: shared.sent.load(Relaxed),
        resends: shared.resends.load(Relaxed),
        acked,
        refused: shared.refused.load(Relaxed),
        abandoned: shared.abandoned.load(Relaxed),
        acked_per_sec: if edit_secs > 0.0 {
            acked as f64 / edit_secs
        } else {
            0.0
        },
        received,
        received_per_sec: received as f64 / window.as_secs_f64().max(1e-9),
        final_snapshot,
        interrupted: was_interrupted,
        ..DocReport::default()
    };
    {
        let timeline = shared.timeline();
        report.update_to_peer_ms = LatencyMs::from_histogram(&timeline.to_peer);
        report.ack_ms = LatencyMs::from_histogram(&timeline.to_ack);
        report.unmatched_receipts = timeline.unmatched();
    }
    let grace = net::CLOSE_TIMEOUT + Duration::from_secs(2);
    let (outcomes, unfinished) = tasks::join_within(handles, grace).await;
    report.unfinished_clients = unfinished;
    for outcome in outcomes {
        report.add(outcome);
    }
    progress.abort();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_caps_reservations() {
        let shared = DocShared::new(0, Some(2), CancellationToken::new());
        assert!(shared.reserve());
        assert!(shared.reserve());
        assert!(!shared.reserve());
        assert_eq!(shared.reserved.load(Relaxed), 2);
    }
}
