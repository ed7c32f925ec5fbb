//! Owns one connection, over a WebSocket or the HTTP fallback's socket
//! (`server/sse/`; see [`Transport`]): the `select!` loop over inbound frames, the
//! heartbeat, the hello and token deadlines, slow-consumer overflow and
//! shutdown; `hello` and the dispatch of every other message to its feature
//! module (`subscribe`, `chat`, `doc`, `notifications`, `presence`, `identity`), the
//! way mini-redis gives each command a file. Generic over `Sink + Stream` so
//! tests need no network.

mod chat;
mod doc;
mod identity;
mod inbound;
mod notifications;
mod presence;
mod registration;
mod resend;
mod subscribe;

use axum::extract::ws::Message;
use futures_util::{Sink, Stream, StreamExt};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::{sleep, Instant, Interval, Sleep};
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use super::rate::{TokenBucket, STATUS_BURST, STATUS_RATE};
use super::writer;
use crate::protocol::{
    ClientEnvelope, ClientMessage, CloseCode, DecodeError, Empty, ErrorBody, ErrorCode, Hello,
    ServerMessage, UserRef, Welcome,
};
use crate::server::admin::Admin;
use crate::server::auth::{Auth, AuthError};
use crate::server::config::Config;
use crate::server::frames;
use crate::server::hub::{Hub, SubscriberId};
use crate::server::metrics::Metrics;
use crate::server::state::AppState;
use crate::server::store::Store;
use inbound::{Inbound, Received};
use registration::Registration;

/// How long the server waits for a peer to answer its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Chat messages a connection may send in a burst.
const CHAT_BURST: f64 = 10.0;

/// Numbers connections within this process (the hub's subscriber ids).
static NEXT_SUBSCRIBER: AtomicU64 = AtomicU64::new(1);

/// The build this server reports in `welcome.build` (its bundle's too).
pub const BUILD: &str = crate::build_id::BUILD_ID;

/// What a connection needs from the server, cloned per connection.
#[derive(Clone)]
pub struct ConnectionContext {
    pub config: Arc<Config>,
    /// Cancelled when the server shuts down: the connection closes with 1001.
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
    pub hub: Hub,
    pub auth: Arc<Auth>,
    pub store: Store,
    /// The census this connection counts in, and the `admin` channel.
    pub admin: Admin,
    /// Whether the socket was opened with a valid admin session cookie
    /// (only then may it subscribe to `admin`).
    pub admin_session: bool,
    /// Whether the socket came over TLS ended in this server (the `tls`
    /// label of `pulse_connections_by_transport`).
    pub tls: bool,
    /// How the peer reached us: the socket under [`serve_connection`] is a
    /// WebSocket or the HTTP fallback's (`server/sse/`).
    pub transport: Transport,
}

/// The transports one connection task serves: they differ only in the
/// socket handed to [`serve_connection`], never in the features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    /// Server-Sent Events down, POSTs up (`server/sse/`).
    Sse,
}

impl Transport {
    /// The `pulse_connections_by_transport` gauge this transport counts in.
    /// `tls`: whether TLS ended in this server.
    fn gauge(self, metrics: &Metrics, tls: bool) -> &prometheus_client::metrics::gauge::Gauge {
        match self {
            Transport::WebSocket => metrics.websocket_connections(tls),
            Transport::Sse => metrics.sse_connections(tls),
        }
    }
}

impl ConnectionContext {
    pub fn from_state(state: &AppState, transport: Transport) -> Self {
        ConnectionContext {
            transport,
            config: state.config.clone(),
            shutdown: state.shutdown.clone(),
            metrics: state.metrics.clone(),
            hub: state.hub.clone(),
            auth: state.auth.clone(),
            store: state.store.clone(),
            admin: state.admin.clone(),
            admin_session: false,
            tls: false,
        }
    }

    /// The context of a connection opened by this request: may it watch
    /// `admin` (the request carried a valid admin session), and did TLS end
    /// in this server (`http::Secure`).
    pub fn for_request(
        state: &AppState,
        transport: Transport,
        headers: &axum::http::HeaderMap,
        extensions: &axum::http::Extensions,
    ) -> Self {
        let mut context = ConnectionContext::from_state(state, transport);
        context.admin_session = crate::server::admin::is_admin(state, headers);
        context.tls = crate::server::http::Secure::of(extensions);
        context
    }
}

/// Where the connection is in its life.
enum Phase {
    /// Only `hello` is accepted.
    AwaitingHello,
    /// `welcome` was sent.
    Ready,
}

/// Why the loop ended; decides the close frame, if any.
enum Ending {
    /// Close with this code after the frames already queued.
    Close(CloseCode, &'static str),
    /// Close with this code at once, dropping what is queued.
    CloseNow(CloseCode, &'static str),
    /// The peer closed or vanished: nothing left to say.
    PeerGone,
}

/// Serves one socket until it closes; returns once the writer has finished.
pub async fn serve_connection<S>(socket: S, context: ConnectionContext)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Send + 'static,
{
    let metrics = context.metrics.clone();
    let (sink, stream) = socket.split();
    let outbox = Outbox::new(context.config.max_outbox_bytes);
    // Not in the connection's span: the writer logs nothing, and entering
    // a span on each of its polls (once per frame written) cost CPU per
    // delivered message whenever logs are on at `info`.
    let writer = tokio::spawn(writer::run(
        sink,
        outbox.clone(),
        metrics.clone(),
        context.config.write_delay(),
    ));
    let subscriber = NEXT_SUBSCRIBER.fetch_add(1, Relaxed);
    let heartbeat = context.config.heartbeat();
    let now = Instant::now();
    let mut ping = tokio::time::interval_at(now + heartbeat, heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::Span::current().record("connection", id.as_str());
    let registration = Registration::new(
        context.hub.clone(),
        metrics.clone(),
        outbox.clone(),
        (subscriber, &id),
        context.admin.clone(),
        context.transport.gauge(&metrics, context.tls).clone(),
    );
    let mut connection = Connection {
        id,
        registration,
        subscriber,
        chat_bucket: TokenBucket::new(context.config.chat_rate, CHAT_BURST, now.into_std()),
        doc_bucket: TokenBucket::new(doc::DOC_RATE, doc::DOC_BURST, now.into_std()),
        awareness_pace: Default::default(),
        status_bucket: TokenBucket::new(STATUS_RATE, STATUS_BURST, now.into_std()),
        context,
        outbox: outbox.clone(),
        inbound: Inbound::new(Box::pin(stream)),
        ping,
        silence: Box::pin(sleep(heartbeat * 2)),
        phase: Phase::AwaitingHello,
        user: None,
        valid_until: None,
    };
    let ending = connection.run().await;
    connection.registration.release();
    match ending {
        Ending::Close(code, _) | Ending::CloseNow(code, _) => {
            metrics.closed(&code.code().to_string())
        }
        Ending::PeerGone => metrics.closed("peer"),
    }
    match ending {
        Ending::Close(code, reason) => {
            tracing::debug!(code = code.code(), reason, "closing connection");
            outbox.close_after_queued(code.code(), reason);
        }
        Ending::CloseNow(code, reason) => {
            tracing::debug!(code = code.code(), reason, "closing connection at once");
            outbox.close_now(code.code(), reason);
        }
        Ending::PeerGone => outbox.close_now(CloseCode::Normal.code(), ""),
    }
    // The writer ends after the close frame; a peer that never reads cannot
    // hold the task past the grace period.
    let grace = connection.context.config.shutdown_grace();
    let abort = writer.abort_handle();
    if !matches!(ending, Ending::PeerGone) {
        // When the server closed, read on until the peer's Close (RFC 6455
        // closing handshake): dropping the socket while the peer still sends
        // (a Pong, a message) makes the kernel reset the connection, and a
        // reset discards the close frame the peer has not read yet.
        let handshake = connection.inbound.drain_until_close();
        let _ = tokio::time::timeout(grace.min(CLOSE_HANDSHAKE), handshake).await;
    }
    if tokio::time::timeout(grace, writer).await.is_err() {
        abort.abort();
    }
    // Dropping `connection` drops its registration: the gauge goes down.
}

struct Connection {
    /// The public connection id (`welcome.connection_id`).
    id: String,
    /// This connection's id within the hub.
    subscriber: SubscriberId,
    context: ConnectionContext,
    /// To the writer task, the only writer of the socket; the hub pushes here too.
    outbox: Arc<Outbox>,
    /// From the socket's read half (the peer is at the other end).
    inbound: Inbound,
    /// When to send the next WebSocket Ping (through the outbox).
    ping: Interval,
    /// Fires when the peer has been silent for two heartbeats.
    silence: Pin<Box<Sleep>>,
    phase: Phase,
    /// What this connection registered in the hub; released however it ends.
    registration: Registration,
    /// Who this connection speaks for; `None` for an anonymous connection.
    user: Option<UserRef>,
    /// When the connection's token expires (closed with 4001 then, unless a
    /// `refresh` moved it); `None` for an anonymous connection.
    valid_until: Option<SystemTime>,
    /// Limits how fast this connection may send chat messages.
    chat_bucket: TokenBucket,
    /// Limits how fast this connection may change its presence status.
    status_bucket: TokenBucket,
    /// Limits how fast this connection may send document updates.
    doc_bucket: TokenBucket,
    /// Paces this connection's awareness relays (at most 10 a second, the
    /// latest always relayed in the end).
    awareness_pace: doc::AwarenessPace,
}

impl Connection {
    async fn run(&mut self) -> Ending {
        let mut hello_deadline = pin!(sleep(self.context.config.hello_timeout()));
        // Re-armed whenever `valid_until` changes (hello, refresh).
        let mut expiry = pin!(sleep(self.context.config.heartbeat()));
        let mut armed_for = None;
        let shutdown = self.context.shutdown.clone();
        let outbox = self.outbox.clone();

        loop {
            if armed_for != self.valid_until {
                armed_for = self.valid_until;
                if let Some(until) = armed_for {
                    expiry.as_mut().reset(deadline(until));
                }
            }
            let received = match self.inbound.next_backlogged() {
                Some(received) => received,
                None => tokio::select! {
                    _ = shutdown.cancelled() => return Ending::Close(CloseCode::GoingAway, "server shutting down"),
                    _ = outbox.overflowed() => {
                        self.context.metrics.slow_consumers.inc();
                        return Ending::CloseNow(CloseCode::SlowConsumer, "slow consumer: resume from your offsets");
                    }
                    _ = &mut hello_deadline, if matches!(self.phase, Phase::AwaitingHello) => {
                        return Ending::Close(CloseCode::Unauthorized, "no hello within the time allowed");
                    }
                    _ = &mut self.silence => return Ending::CloseNow(CloseCode::GoingAway, "heartbeat timeout"),
                    _ = &mut expiry, if armed_for.is_some() => {
                        return Ending::Close(CloseCode::Unauthorized, "token expired");
                    }
                    _ = self.ping.tick() => {
                        self.outbox.ping();
                        continue;
                    }
                    received = self.inbound.read() => {
                        self.heard();
                        received
                    }
                },
            };
            match received {
                Received::Message(decoded) => {
                    // Boxed: answering a message (a store call, a hub call)
                    // needs a large future for a moment; inline, every idle
                    // connection's task would carry its size for its whole life.
                    if let Some(ending) = Box::pin(self.on_message(decoded)).await {
                        return ending;
                    }
                }
                Received::Binary => self.send_error(ErrorBody::new(
                    ErrorCode::BadFrame,
                    "binary frames are not accepted: send JSON in text frames",
                )),
                Received::Control => {}
                Received::Gone => return Ending::PeerGone,
                Received::Broken(err) => return read_error(err),
            }
        }
    }

    /// The peer said something: it is alive for two more heartbeats.
    fn heard(&mut self) {
        let silence = self.context.config.heartbeat() * 2;
        self.silence.as_mut().reset(Instant::now() + silence);
    }

    /// Runs `work` (a store call) to completion while still reading the
    /// socket: Pings and `ping`s are answered at once, everything else is
    /// kept, in order, for after `work`. So a slow disk never makes a healthy
    /// client miss its heartbeat.
    async fn wait<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = pin!(work);
        loop {
            let may_read = self.inbound.may_read_ahead();
            tokio::select! {
                biased;
                done = &mut work => return done,
                _ = self.ping.tick() => self.outbox.ping(),
                received = self.inbound.read(), if may_read => {
                    self.heard();
                    match received {
                        Received::Message(Ok(ClientEnvelope {
                            message: ClientMessage::Ping(Empty {}),
                            ..
                        })) if matches!(self.phase, Phase::Ready) => {
                            self.context.metrics.messages_in.inc();
                            self.send(ServerMessage::Pong(Empty {}));
                        }
                        Received::Control => {}
                        other => self.inbound.defer(other),
                    }
                }
            }
        }
    }

    /// Answers one client message; `Some` ends the connection.
    async fn on_message(&mut self, decoded: Result<ClientEnvelope, DecodeError>) -> Option<Ending> {
        self.context.metrics.messages_in.inc();
        let envelope = match decoded {
            Ok(envelope) => envelope,
            Err(err) => {
                self.send_error(err.to_body());
                return None;
            }
        };
        let id = envelope.id;
        match (&self.phase, envelope.message) {
            (Phase::AwaitingHello, ClientMessage::Hello(hello)) => return self.hello(hello).await,
            (Phase::AwaitingHello, _) => {
                let body = ErrorBody::new(ErrorCode::HelloRequired, "send hello first");
                self.send_error(body.with_id(id));
            }
            (Phase::Ready, ClientMessage::Hello(_)) => {
                let body = ErrorBody::new(
                    ErrorCode::Invalid,
                    "hello: already received on this connection",
                );
                self.send_error(body.with_id(id));
            }
            (Phase::Ready, ClientMessage::Ping(Empty {})) => {
                self.send(ServerMessage::Pong(Empty {}))
            }
            (Phase::Ready, ClientMessage::Subscribe(subscribe)) => {
                self.subscribe(subscribe, id).await
            }
            (Phase::Ready, ClientMessage::Unsubscribe(unsubscribe)) => {
                self.unsubscribe(unsubscribe, id)
            }
            (Phase::Ready, ClientMessage::ChatSend(send)) => self.chat_send(send, id).await,
            (Phase::Ready, ClientMessage::History(request)) => self.history(request, id).await,
            (Phase::Ready, ClientMessage::MarkRead(read)) => self.mark_read(read, id).await,
            (Phase::Ready, ClientMessage::Status(update)) => self.status(update, id),
            (Phase::Ready, ClientMessage::Refresh(refresh)) => self.refresh(refresh, id),
            (Phase::Ready, ClientMessage::DocUpdate(update)) => self.doc_update(update, id).await,
            (Phase::Ready, ClientMessage::DocAwareness(update)) => self.doc_awareness(update, id),
        }
        None
    }

    /// `hello`: anonymous, or identified by a token (a bad one closes with 4001).
    async fn hello(&mut self, hello: Hello) -> Option<Ending> {
        if let Some(token) = hello.token {
            match self.context.auth.verify_until(&token) {
                Ok(verified) => {
                    let user = verified.user;
                    self.valid_until = Some(verified.valid_until);
                    self.registration.join_presence(&user);
                    // Remembered so that `@name` mentions can reach this user
                    // later; a failure here costs only that.
                    let store = self.context.store.clone();
                    let remembered = user.clone();
                    let remembered = self
                        .wait(async move { store.remember_user(remembered, frames::now()).await })
                        .await;
                    if let Err(err) = remembered {
                        tracing::error!(%err, "cannot remember a user");
                    }
                    tracing::Span::current().record("user", user.id.as_str());
                    self.user = Some(user);
                }
                Err(err) => {
                    tracing::debug!(%err, "refused token");
                    let reason = match err {
                        AuthError::Expired => "token expired",
                        _ => "invalid token",
                    };
                    return Some(Ending::Close(CloseCode::Unauthorized, reason));
                }
            }
        }
        self.phase = Phase::Ready;
        self.send(ServerMessage::Welcome(Welcome {
            connection_id: self.id.clone(),
            user: self.user.clone(),
            heartbeat_ms: self.context.config.heartbeat_ms,
            max_message_bytes: self.context.config.max_message_bytes(),
            build: BUILD.to_owned(),
        }));
        None
    }

    /// Queues a message; an overflow is noticed by the select loop.
    fn send(&self, message: ServerMessage) {
        let _ = self.outbox.push(frames::encode(message));
    }

    fn send_error(&self, body: ErrorBody) {
        self.context.metrics.error_sent(body.code);
        self.send(ServerMessage::Error(body));
    }
}

/// The tokio instant at which the wall-clock moment `until` arrives (now, if
/// it has passed; a century on if it is further than `Instant` can count).
fn deadline(until: SystemTime) -> Instant {
    let left = until.duration_since(SystemTime::now()).unwrap_or_default();
    let now = Instant::now();
    now.checked_add(left)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// A read error: a message over the size limit gets 1009, anything else
/// (broken framing, invalid UTF-8, a reset) means the peer is gone or broken.
fn read_error(err: axum::Error) -> Ending {
    match err.into_inner().downcast::<tungstenite::Error>() {
        Ok(err) if matches!(*err, tungstenite::Error::Capacity(_)) => {
            Ending::CloseNow(CloseCode::TooBig, "message larger than max_message_bytes")
        }
        Ok(err) => {
            tracing::debug!(%err, "read error");
            Ending::PeerGone
        }
        Err(err) => {
            tracing::debug!(%err, "read error");
            Ending::PeerGone
        }
    }
}

#[cfg(test)]
mod tests;
