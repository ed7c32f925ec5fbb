//! Owns one WebSocket connection: the `select!` loop over inbound frames, the
//! heartbeat, the hello deadline, slow-consumer overflow and shutdown, and the
//! answers to each client message. Generic over `Sink + Stream` so tests need
//! no network.

use axum::extract::ws::{Message, Utf8Bytes};
use futures_util::{Sink, Stream, StreamExt};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use super::rate::{TokenBucket, STATUS_BURST, STATUS_RATE};
use super::registration::Registration;
use super::writer;
use crate::protocol::{
    decode_client, Ack, Channel, ChatSend, ClientMessage, CloseCode, Empty, ErrorBody, ErrorCode,
    Hello, MarkRead, Refresh, ServerMessage, StatusUpdate, Subscribe, Unsubscribe, Unsubscribed,
    UserRef, Welcome,
};
use crate::protocol::{HistoryPage, HistoryRequest};
use crate::server::auth::{Auth, AuthError};
use crate::server::config::Config;
use crate::server::frames;
use crate::server::hub::{Hub, SubscribeError, SubscriberId, CHAT_HISTORY, INBOX_HISTORY};
use crate::server::metrics::Metrics;
use crate::server::state::AppState;
use crate::server::store::{mentions, Appended, ChatDraft, Store};

/// How long the server waits for a peer to answer its close frame.
const CLOSE_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(2);

/// Chat messages a connection may send in a burst.
const CHAT_BURST: f64 = 10.0;
/// The longest chat message, in characters after trimming.
pub const MAX_CHAT_CHARS: usize = 2000;

/// The most channels one connection may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// Numbers connections within this process (the hub's subscriber ids).
static NEXT_SUBSCRIBER: AtomicU64 = AtomicU64::new(1);

/// The build this server reports in `welcome.build`.
pub const BUILD: &str = env!("CARGO_PKG_VERSION");

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
}

impl ConnectionContext {
    pub fn from_state(state: &AppState) -> Self {
        ConnectionContext {
            config: state.config.clone(),
            shutdown: state.shutdown.clone(),
            metrics: state.metrics.clone(),
            hub: state.hub.clone(),
            auth: state.auth.clone(),
            store: state.store.clone(),
        }
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
    let (sink, mut stream) = socket.split();
    let outbox = Outbox::new(context.config.max_outbox_bytes);
    let writer = tokio::spawn(writer::run(sink, outbox.clone(), metrics.clone()));
    let context_chat_rate = context.config.chat_rate;
    let subscriber = NEXT_SUBSCRIBER.fetch_add(1, Relaxed);
    let mut connection = Connection {
        id: uuid::Uuid::new_v4().simple().to_string(),
        registration: Registration::new(
            context.hub.clone(),
            metrics.clone(),
            outbox.clone(),
            subscriber,
        ),
        subscriber,
        context,
        outbox: outbox.clone(),
        phase: Phase::AwaitingHello,
        user: None,
        valid_until: None,
        chat_bucket: TokenBucket::new(context_chat_rate, CHAT_BURST, Instant::now().into_std()),
        status_bucket: TokenBucket::new(STATUS_RATE, STATUS_BURST, Instant::now().into_std()),
    };
    let ending = connection.run(&mut stream).await;
    connection.registration.release();
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
    let closing_handshake = async {
        // When the server closed, read on until the peer's Close (RFC 6455
        // closing handshake): dropping the socket while the peer still sends
        // (a Pong, a message) makes the kernel reset the connection, and a
        // reset discards the close frame the peer has not read yet.
        if !matches!(ending, Ending::PeerGone) {
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(grace.min(CLOSE_HANDSHAKE), closing_handshake).await;
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
    phase: Phase,
    /// What this connection registered in the hub; released however it ends.
    registration: Registration,
    /// Who this connection speaks for; `None` for an anonymous connection.
    user: Option<UserRef>,
    /// When the connection's token expires (closed with 4001 then, unless a
    /// `refresh` moved it); `None` for an anonymous connection.
    valid_until: Option<std::time::SystemTime>,
    /// Limits how fast this connection may send chat messages.
    chat_bucket: TokenBucket,
    /// Limits how fast this connection may change its presence status.
    status_bucket: TokenBucket,
}

impl Connection {
    async fn run<R>(&mut self, stream: &mut R) -> Ending
    where
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let heartbeat = self.context.config.heartbeat();
        let mut ping_timer = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        ping_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut silence = pin!(sleep(heartbeat * 2));
        let mut hello_deadline = pin!(sleep(self.context.config.hello_timeout()));
        // Re-armed whenever `valid_until` changes (hello, refresh).
        let mut expiry = pin!(sleep(heartbeat));
        let mut armed_for = None;
        let shutdown = self.context.shutdown.clone();
        let outbox = self.outbox.clone();

        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ending::Close(CloseCode::GoingAway, "server shutting down"),
                _ = outbox.overflowed() => {
                    self.context.metrics.slow_consumers.fetch_add(1, Relaxed);
                    return Ending::CloseNow(CloseCode::SlowConsumer, "slow consumer: resume from your offsets");
                }
                _ = &mut hello_deadline, if matches!(self.phase, Phase::AwaitingHello) => {
                    return Ending::Close(CloseCode::Unauthorized, "no hello within the time allowed");
                }
                _ = &mut silence => return Ending::CloseNow(CloseCode::GoingAway, "heartbeat timeout"),
                _ = &mut expiry, if armed_for.is_some() => {
                    return Ending::Close(CloseCode::Unauthorized, "token expired");
                }
                _ = ping_timer.tick() => self.outbox.ping(),
                frame = stream.next() => {
                    let Some(frame) = frame else { return Ending::PeerGone };
                    silence.as_mut().reset(Instant::now() + heartbeat * 2);
                    match frame {
                        Ok(Message::Text(text)) => {
                            if let Some(ending) = self.on_text(&text).await {
                                return ending;
                            }
                            if armed_for != self.valid_until {
                                armed_for = self.valid_until;
                                if let Some(until) = armed_for {
                                    expiry.as_mut().reset(deadline(until));
                                }
                            }
                        }
                        Ok(Message::Binary(_)) => self.send_error(ErrorBody::new(
                            ErrorCode::BadFrame,
                            "binary frames are not accepted: send JSON in text frames",
                        )),
                        Ok(Message::Ping(_) | Message::Pong(_)) => {}
                        Ok(Message::Close(_)) => return Ending::PeerGone,
                        Err(err) => return read_error(err),
                    }
                }
            }
        }
    }

    /// Answers one text frame; `Some` ends the connection.
    async fn on_text(&mut self, text: &Utf8Bytes) -> Option<Ending> {
        self.context.metrics.messages_in.fetch_add(1, Relaxed);
        let envelope = match decode_client(text.as_str()) {
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
            (Phase::Ready, ClientMessage::ChatSend(send)) => self.chat_send(send, id).await,
            (Phase::Ready, ClientMessage::MarkRead(read)) => self.mark_read(read, id).await,
            (Phase::Ready, ClientMessage::Refresh(refresh)) => self.refresh(refresh, id),
            (Phase::Ready, ClientMessage::History(request)) => self.history(request, id).await,
            (Phase::Ready, ClientMessage::Unsubscribe(unsubscribe)) => {
                self.unsubscribe(unsubscribe, id)
            }
            (Phase::Ready, ClientMessage::Status(StatusUpdate { status })) => match &self.user {
                Some(_) if !self.status_bucket.try_take(Instant::now().into_std()) => {
                    let message =
                        format!("status: at most {STATUS_RATE} per second; wait a moment");
                    self.send_error(ErrorBody::new(ErrorCode::RateLimited, message).with_id(id));
                }
                Some(user) => self
                    .context
                    .hub
                    .presence_status(&user.id, self.subscriber, status),
                None => self.send_error(
                    ErrorBody::new(
                        ErrorCode::Unauthorized,
                        "status: anonymous connections have no presence; send hello with a token",
                    )
                    .with_id(id),
                ),
            },
            (Phase::Ready, other) => {
                let message = format!("`{}` is not available on this server yet", other.kind());
                self.send_error(ErrorBody::new(ErrorCode::NotFound, message).with_id(id));
            }
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
                    let remembered = self
                        .context
                        .store
                        .remember_user(user.clone(), frames::now())
                        .await;
                    if let Err(err) = remembered {
                        tracing::error!(%err, "cannot remember a user");
                    }
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

    /// `refresh`: a new token for the same user moves the connection's
    /// expiry; a bad one changes nothing (the connection keeps its old token).
    fn refresh(&mut self, refresh: Refresh, id: Option<String>) {
        let refused =
            |message: String| ErrorBody::new(ErrorCode::Unauthorized, message).with_id(id.clone());
        let Some(user) = &self.user else {
            return self.send_error(refused(
                "refresh: an anonymous connection has no token to refresh".into(),
            ));
        };
        match self.context.auth.verify_until(&refresh.token) {
            Ok(verified) if verified.user.id == user.id => {
                self.valid_until = Some(verified.valid_until);
                if let Some(id) = id {
                    self.send(ServerMessage::Ack(Ack::bare(id)));
                }
            }
            Ok(_) => self.send_error(refused(
                "refresh: the token is for another user; the connection keeps its own".into(),
            )),
            Err(err) => self.send_error(refused(format!(
                "refresh: {err}; the connection keeps its old token"
            ))),
        }
    }

    /// Who may subscribe to what: tickers are public, presence needs an
    /// identified connection.
    fn may_subscribe(&self, channel: &Channel) -> Result<(), ErrorBody> {
        match channel {
            Channel::Presence | Channel::Chat(_) | Channel::User(_) if self.user.is_none() => {
                Err(ErrorBody::new(
                    ErrorCode::Unauthorized,
                    format!(
                        "{channel}: only identified users may subscribe; send hello with a token"
                    ),
                ))
            }
            Channel::User(id) if self.user.as_ref().is_some_and(|u| &u.id != id) => {
                Err(ErrorBody::new(
                    ErrorCode::Forbidden,
                    format!("{channel}: only that user may subscribe"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// One `subscribed` or `error` per channel, in order.
    async fn subscribe(&mut self, subscribe: Subscribe, id: Option<String>) {
        for entry in subscribe.channels {
            let error = |code, message: String| {
                ErrorBody::new(code, message)
                    .with_id(id.clone())
                    .with_channel(entry.channel.clone())
            };
            let channel: Channel = match entry.channel.parse() {
                Ok(channel) => channel,
                Err(err) => {
                    self.send_error(error(ErrorCode::Invalid, format!("channel: {err}")));
                    continue;
                }
            };
            if let Err(body) = self.may_subscribe(&channel) {
                self.send_error(body.with_id(id.clone()).with_channel(entry.channel.clone()));
                continue;
            }
            let subscriptions = &self.registration.subscriptions;
            if !subscriptions.contains(&channel) && subscriptions.len() >= MAX_SUBSCRIPTIONS {
                let message = format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection");
                self.send_error(error(ErrorCode::TooLarge, message));
                continue;
            }
            // A persisted channel may be dropped from memory between its
            // load and the subscribe (its last subscriber left): load again.
            let mut attempts = 0;
            let subscribed = loop {
                attempts += 1;
                if let Err(err) = self.install(&channel).await {
                    break Err(err);
                }
                let hub = &self.context.hub;
                match hub.subscribe(
                    self.subscriber,
                    &self.outbox,
                    &channel,
                    entry.since.as_ref(),
                ) {
                    Err(SubscribeError::NotLoaded) if attempts < 3 => continue,
                    done => break Ok(done),
                }
            };
            let subscribed = match subscribed {
                Ok(subscribed) => subscribed,
                Err(err) => {
                    tracing::error!(%err, %channel, "cannot load a channel");
                    let message = format!("{channel}: its history could not be loaded; try again");
                    self.send_error(error(ErrorCode::Internal, message));
                    continue;
                }
            };
            match subscribed {
                Ok(()) => {
                    self.registration.subscriptions.insert(channel);
                }
                Err(err @ (SubscribeError::NotAvailable | SubscribeError::NotLoaded)) => {
                    let message = format!("{channel}: {err}");
                    self.send_error(error(ErrorCode::NotFound, message));
                }
                // The outbox overflowed: the select loop closes with 4008.
                Err(SubscribeError::Closing) => return,
            }
        }
    }

    /// Loads a persisted channel into the hub on first use.
    async fn install(&self, channel: &Channel) -> Result<(), crate::server::store::StoreError> {
        if self.context.hub.has(channel) {
            return Ok(());
        }
        let hub = self.context.hub.clone();
        let installed = channel.clone();
        let store = &self.context.store;
        match channel {
            Channel::Chat(_) => {
                store
                    .load_chat(channel.to_string(), CHAT_HISTORY, move |stored| {
                        hub.install_chat(&installed, stored)
                    })
                    .await
            }
            Channel::User(id) => {
                store
                    .load_inbox(id.clone(), INBOX_HISTORY, move |stored| {
                        hub.install_inbox(&installed, stored)
                    })
                    .await
            }
            _ => Ok(()),
        }
    }

    /// `mark_read` (extension): marks notifications of one's own channel read;
    /// answered by `ack` with the channel's latest offset.
    async fn mark_read(&mut self, read: MarkRead, id: Option<String>) {
        let Some(user) = self.user.clone() else {
            let body = ErrorBody::new(
                ErrorCode::Unauthorized,
                "mark_read: only identified users have notifications",
            );
            return self.send_error(body.with_id(id));
        };
        let channel = Channel::User(user.id.clone());
        let name = channel.to_string();
        let hub = self.context.hub.clone();
        let in_memory = name.clone();
        let done = self
            .context
            .store
            .mark_read(user.id, read.notification_ids, move |_, unread| {
                hub.inbox_read(&in_memory, unread)
            })
            .await;
        match done {
            Ok(_) => {
                let offset = self.context.hub.latest(&channel);
                self.send(ServerMessage::Ack(Ack::stored(
                    id.unwrap_or_default(),
                    name,
                    offset,
                )));
            }
            Err(err) => {
                tracing::error!(%err, "cannot mark notifications read");
                let body = ErrorBody::new(ErrorCode::Internal, "mark_read: not saved; try again");
                self.send_error(body.with_id(id));
            }
        }
    }

    /// `history` (extension): older messages of a chat channel, from disk.
    async fn history(&mut self, request: HistoryRequest, id: Option<String>) {
        let channel = match request.channel.parse::<Channel>() {
            Ok(channel @ Channel::Chat(_)) => channel,
            _ => {
                let body = ErrorBody::new(
                    ErrorCode::Invalid,
                    "channel: history is kept for chat: channels",
                );
                return self.send_error(body.with_id(id).with_channel(request.channel));
            }
        };
        if let Err(body) = self.may_subscribe(&channel) {
            return self.send_error(body.with_id(id).with_channel(request.channel));
        }
        let limit = request.limit.unwrap_or(50).clamp(1, 100) as usize;
        match self
            .context
            .store
            .chat_before(request.channel.clone(), request.before, limit)
            .await
        {
            Ok(messages) => self.send(ServerMessage::History(HistoryPage {
                channel: request.channel,
                messages,
            })),
            Err(err) => {
                tracing::error!(%err, "cannot read chat history");
                let body =
                    ErrorBody::new(ErrorCode::Internal, "history: could not be read; try again");
                self.send_error(body.with_id(id));
            }
        }
    }

    /// `chat_send`: validated, stored (exactly once per envelope id), published
    /// to the room in commit order, then acknowledged.
    async fn chat_send(&mut self, send: ChatSend, id: Option<String>) {
        let fail = |code, message: &str| ErrorBody::new(code, message).with_id(id.clone());
        let Some(user) = self.user.clone() else {
            return self.send_error(fail(
                ErrorCode::Unauthorized,
                "chat_send: only identified users may chat; send hello with a token",
            ));
        };
        let Some(client_id) = id.clone() else {
            return self.send_error(fail(
                ErrorCode::Invalid,
                "id: chat_send needs an envelope id (its idempotency key)",
            ));
        };
        if let Err(err) = Channel::chat(&send.room) {
            return self.send_error(fail(ErrorCode::Invalid, &format!("room: {err}")));
        }
        let text = send.text.trim();
        if text.is_empty() {
            return self.send_error(fail(ErrorCode::Invalid, "text: must not be empty"));
        }
        if text.chars().count() > MAX_CHAT_CHARS {
            return self.send_error(fail(ErrorCode::TooLarge, "text: at most 2000 characters"));
        }
        if !self.chat_bucket.try_take(Instant::now().into_std()) {
            // A resend of a message already stored is acked again, whatever
            // the rate (PROTOCOL 1.1 Limits): only new messages are limited.
            let stored = self
                .context
                .store
                .sent(user.id.clone(), client_id.clone())
                .await;
            if let Ok(Some((channel, offset))) = stored {
                return self.send(ServerMessage::Ack(Ack::stored(client_id, channel, offset)));
            }
            self.context.metrics.rate_limited.fetch_add(1, Relaxed);
            let message = format!(
                "chat_send: at most {} messages per second; wait a moment",
                self.context.config.chat_rate
            );
            return self.send_error(fail(ErrorCode::RateLimited, &message));
        }
        let hub = self.context.hub.clone();
        // The message and its mentions' notifications are one transaction.
        let draft = ChatDraft {
            room: send.room,
            user,
            client_id: client_id.clone(),
            text: text.to_owned(),
            sent_at: frames::now(),
            mentioned: mentions(text),
        };
        let stored = self
            .context
            .store
            .append_chat(draft, move |appended, notified| {
                if let Appended::New(message) = appended {
                    hub.publish_chat(message);
                }
                for notification in notified {
                    hub.publish_notification(notification);
                }
            })
            .await;
        match stored {
            Ok(appended) => {
                let (channel, offset) = appended.channel_offset();
                self.send(ServerMessage::Ack(Ack::stored(
                    client_id,
                    channel.to_owned(),
                    offset,
                )));
            }
            Err(err) => {
                tracing::error!(%err, "cannot store a chat message");
                self.send_error(fail(
                    ErrorCode::Internal,
                    "chat_send: the message could not be stored; send it again",
                ));
            }
        }
    }

    /// One `unsubscribed` per channel; unsubscribing twice is harmless.
    fn unsubscribe(&mut self, unsubscribe: Unsubscribe, id: Option<String>) {
        for name in unsubscribe.channels {
            match name.parse::<Channel>() {
                Ok(channel) => {
                    self.context.hub.unsubscribe(self.subscriber, &channel);
                    self.outbox.forget_channel(&name);
                    self.registration.subscriptions.remove(&channel);
                    self.send(ServerMessage::Unsubscribed(Unsubscribed { channel: name }));
                }
                Err(err) => {
                    let body = ErrorBody::new(ErrorCode::Invalid, format!("channel: {err}"));
                    self.send_error(body.with_id(id.clone()).with_channel(name));
                }
            }
        }
    }

    /// Queues a message; an overflow is noticed by the select loop.
    fn send(&self, message: ServerMessage) {
        let _ = self.outbox.push(frames::encode(message));
    }

    fn send_error(&self, body: ErrorBody) {
        self.context.metrics.protocol_errors.fetch_add(1, Relaxed);
        self.send(ServerMessage::Error(body));
    }
}

/// The tokio instant at which the wall-clock moment `until` arrives (now, if
/// it has passed; a century on if it is further than `Instant` can count).
fn deadline(until: std::time::SystemTime) -> Instant {
    let left = until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let now = Instant::now();
    now.checked_add(left)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(100 * 365 * 86_400)))
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
mod tests {
    //! Connections driven through in-memory sockets: no network, exact control
    //! over how fast the "client" reads.

    use super::*;
    use crate::protocol::{ServerEnvelope, ServerMessage};
    use crate::server::hub::Quote;
    use clap::Parser;
    use futures::channel::mpsc;
    use futures::{SinkExt, StreamExt};
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A socket whose inbound frames come from the test and whose outbound
    /// frames go into a channel of `capacity`: when the test stops reading,
    /// the server's writer blocks, as on a client that stopped reading.
    struct TestSocket {
        inbound: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
        outbound: mpsc::Sender<Message>,
    }

    /// A frame that makes the test socket panic when the connection reads
    /// it, as a bug anywhere in the connection's task would.
    const PANIC: &str = "panic in the connection task";

    impl Stream for TestSocket {
        type Item = Result<Message, axum::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let next = self.inbound.poll_next_unpin(cx);
            if let Poll::Ready(Some(Ok(Message::Text(text)))) = &next {
                assert_ne!(text.as_str(), PANIC, "the test asked for a panic");
            }
            next
        }
    }

    impl Sink<Message> for TestSocket {
        type Error = mpsc::SendError;
        fn poll_ready(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outbound.poll_ready_unpin(cx)
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.outbound.start_send_unpin(item)
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outbound.poll_flush_unpin(cx)
        }
        fn poll_close(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outbound.poll_close_unpin(cx)
        }
    }

    struct TestClient {
        to_server: mpsc::UnboundedSender<Result<Message, axum::Error>>,
        from_server: mpsc::Receiver<Message>,
    }

    impl TestClient {
        fn send(&self, json: &str) {
            self.to_server
                .unbounded_send(Ok(Message::Text(json.into())))
                .unwrap();
        }

        /// The next server messages of one frame (batches unpacked).
        async fn recv(&mut self) -> Vec<ServerMessage> {
            loop {
                match self.from_server.next().await.expect("socket open") {
                    Message::Text(text) => {
                        let envelope = ServerEnvelope::from_json(&text).unwrap();
                        return envelope.unpack().into_iter().map(|e| e.message).collect();
                    }
                    Message::Ping(_) => continue,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    fn context() -> ConnectionContext {
        context_with(&[])
    }

    /// A context whose config has these flags besides `--tick-rate 0`; its
    /// tokens live 60 s.
    fn context_with(flags: &[&str]) -> ConnectionContext {
        let metrics = Arc::new(Metrics::default());
        let mut args = vec!["pulse", "--tick-rate", "0"];
        args.extend_from_slice(flags);
        ConnectionContext {
            config: Arc::new(Config::parse_from(args)),
            shutdown: CancellationToken::new(),
            hub: Hub::new(metrics.clone(), std::time::Duration::from_secs(5)),
            auth: Arc::new(Auth::new(b"test", std::time::Duration::from_secs(60))),
            store: Store::open(
                &std::env::temp_dir()
                    .join(format!("pulse-conn-{}.db", uuid::Uuid::new_v4().simple())),
            )
            .unwrap(),
            metrics,
        }
    }

    fn connect(context: &ConnectionContext, capacity: usize) -> TestClient {
        let (to_server, inbound) = mpsc::unbounded();
        let (outbound, from_server) = mpsc::channel(capacity);
        tokio::spawn(serve_connection(
            TestSocket { inbound, outbound },
            context.clone(),
        ));
        TestClient {
            to_server,
            from_server,
        }
    }

    fn quote(symbol: &str, n: u64) -> Quote {
        Quote {
            symbol: symbol.into(),
            price: n as f64,
            change: 0.0,
            change_pct: 0.0,
            volume: n,
        }
    }

    const SUBSCRIBE: &str = r#"{"type":"subscribe","data":{"channels":[{"channel":"ticker:AAA"},{"channel":"ticker:BBB"}]}}"#;

    /// A client that stops reading holds at most one queued tick per symbol,
    /// while a client that reads gets every tick, gap-free, and the publisher
    /// never waits for either.
    #[tokio::test]
    async fn a_stalled_reader_is_conflated_while_a_reader_gets_every_tick() {
        let context = context();
        let mut stalled = connect(&context, 1);
        let mut reader = connect(&context, 1024);
        for client in [&stalled, &reader] {
            client.send(r#"{"type":"hello","data":{}}"#);
            client.send(SUBSCRIBE);
        }
        let mut answers = Vec::new();
        while answers.len() < 3 {
            answers.extend(reader.recv().await);
        }
        // The stalled client reads its answers, then stops reading.
        let mut stalled_answers = Vec::new();
        while stalled_answers.len() < 3 {
            stalled_answers.extend(stalled.recv().await);
        }

        let rounds = 5_000;
        let mut next = [1u64, 1u64];
        for n in 1..=rounds {
            context.hub.publish_tick(quote("AAA", n));
            context.hub.publish_tick(quote("BBB", n));
            // Read as we go so the reader is never behind by more than a round.
            while next.iter().any(|&offset| offset <= n) {
                for message in reader.recv().await {
                    let ServerMessage::Tick(tick) = message else {
                        panic!("{message:?}")
                    };
                    let slot = usize::from(tick.symbol == "BBB");
                    assert_eq!(tick.offset, next[slot], "gap-free and in order");
                    next[slot] += 1;
                }
            }
        }
        let conflated = context.metrics.ticks_conflated.load(Relaxed);
        assert!(
            conflated >= 2 * rounds - 10,
            "only {conflated} ticks conflated"
        );

        // What the stalled client finally reads is a handful of frames ending
        // with the latest tick of each symbol, not 10,000 ticks.
        let mut late = Vec::new();
        while let Ok(Some(frame)) = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            stalled.from_server.next(),
        )
        .await
        {
            if let Message::Text(text) = frame {
                late.extend(ServerEnvelope::from_json(&text).unwrap().unpack());
            }
        }
        assert!(late.len() <= 6, "{} messages were queued", late.len());
        let last_offsets: Vec<u64> = late
            .iter()
            .filter_map(|e| match &e.message {
                ServerMessage::Tick(tick) => Some(tick.offset),
                _ => None,
            })
            .collect();
        assert!(
            last_offsets.iter().filter(|&&o| o == rounds).count() == 2,
            "{last_offsets:?}"
        );
    }

    fn user(name: &str) -> UserRef {
        UserRef {
            id: format!("guest:{}", name.to_lowercase()),
            name: name.into(),
        }
    }

    fn hello_with(token: &str) -> String {
        format!(r#"{{"type":"hello","data":{{"token":"{token}"}}}}"#)
    }

    /// Reads until the server's close frame; returns its code and reason.
    async fn close_of(client: &mut TestClient) -> (u16, String) {
        while let Some(frame) = client.from_server.next().await {
            if let Message::Close(frame) = frame {
                let frame = frame.expect("a close frame with a code");
                return (frame.code, frame.reason.to_string());
            }
        }
        panic!("the socket ended without a close frame");
    }

    /// PROTOCOL 1.1: an open connection whose token expires is closed with
    /// 4001 (here 60 s plus the 5 s leeway), on paused time.
    #[tokio::test(start_paused = true)]
    async fn an_open_connection_is_closed_with_4001_when_its_token_expires() {
        let context = context_with(&["--heartbeat-ms", "300000"]);
        let token = context.auth.mint(&user("Exp"));
        let mut client = connect(&context, 64);
        client.send(&hello_with(&token));
        assert!(matches!(client.recv().await[0], ServerMessage::Welcome(_)));
        let opened = Instant::now();
        assert_eq!(close_of(&mut client).await, (4001, "token expired".into()));
        let lived = opened.elapsed();
        assert!(
            lived >= std::time::Duration::from_secs(59)
                && lived <= std::time::Duration::from_secs(66),
            "{lived:?}"
        );
    }

    /// `refresh` with a new token of the same user moves the expiry and is
    /// acked; one for another user or a forged one is refused and changes
    /// nothing.
    #[tokio::test(start_paused = true)]
    async fn refresh_extends_an_open_connection_and_bad_tokens_change_nothing() {
        let context = context_with(&["--heartbeat-ms", "300000"]);
        let me = user("Ref");
        let mut client = connect(&context, 64);
        client.send(&hello_with(&context.auth.mint(&me)));
        client.recv().await;

        let someone_else = context.auth.mint(&user("Other"));
        client.send(&format!(
            r#"{{"type":"refresh","data":{{"token":"{someone_else}"}},"id":"r-0"}}"#
        ));
        let [ServerMessage::Error(error)] = &client.recv().await[..] else {
            panic!("expected an error")
        };
        assert_eq!(
            (error.code, error.id.as_deref()),
            (ErrorCode::Unauthorized, Some("r-0"))
        );
        client.send(r#"{"type":"refresh","data":{"token":"not.a.token"}}"#);
        let [ServerMessage::Error(error)] = &client.recv().await[..] else {
            panic!("expected an error")
        };
        assert_eq!(error.code, ErrorCode::Unauthorized);

        let longer = Auth::new(b"test", std::time::Duration::from_secs(600)).mint(&me);
        client.send(&format!(
            r#"{{"type":"refresh","data":{{"token":"{longer}"}},"id":"r-1"}}"#
        ));
        assert_eq!(
            client.recv().await,
            [ServerMessage::Ack(Ack::bare("r-1".into()))]
        );
        // Long past the first token's expiry, the connection still answers.
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        client.send(r#"{"type":"ping","data":{}}"#);
        assert_eq!(client.recv().await, [ServerMessage::Pong(Empty {})]);
        // And the new token's expiry closes it in the end.
        assert_eq!(close_of(&mut client).await, (4001, "token expired".into()));
    }

    /// However a connection's task ends, a panic included, it leaves nothing
    /// behind: no subscription in the hub, no place in the connection count,
    /// and its user leaves presence after the grace.
    #[tokio::test(start_paused = true)]
    async fn a_connection_task_that_panics_leaves_nothing_behind() {
        let context = context_with(&["--heartbeat-ms", "300000"]);
        let mut client = connect(&context, 64);
        client.send(&hello_with(&context.auth.mint(&user("Pat"))));
        client.recv().await;
        client.send(SUBSCRIBE);
        let mut answers = Vec::new();
        while answers.len() < 2 {
            answers.extend(client.recv().await);
        }
        let aaa = Channel::Ticker("AAA".into());
        assert_eq!(context.hub.subscriber_count(&aaa), 1);
        assert_eq!(context.metrics.connections_open.load(Relaxed), 1);
        assert_eq!(context.hub.presence_users().len(), 1);

        client.send(PANIC);
        assert_eq!(close_of(&mut client).await.0, 1011);
        assert_eq!(context.hub.subscriber_count(&aaa), 0);
        assert_eq!(context.metrics.connections_open.load(Relaxed), 0);
        tokio::time::sleep(context.config.presence_grace() * 2).await;
        assert!(context.hub.presence_users().is_empty());
    }

    /// A message other than a tick is never dropped: a client that falls
    /// more than the outbox budget behind is closed with 4008 instead.
    #[tokio::test]
    async fn a_reader_too_far_behind_on_replies_is_closed_with_4008() {
        let context = context();
        let mut client = connect(&context, 1);
        client.send(r#"{"type":"hello","data":{}}"#);
        client.recv().await;
        // About 40 bytes per pong: 1 MiB of budget is some 26,000 of them.
        for _ in 0..40_000 {
            client.send(r#"{"type":"ping","data":{}}"#);
        }
        let mut close = None;
        while let Some(frame) = client.from_server.next().await {
            if let Message::Close(frame) = frame {
                close = frame;
                break;
            }
        }
        assert_eq!(close.map(|f| f.code), Some(4008));
        assert_eq!(context.metrics.slow_consumers.load(Relaxed), 1);
    }
}
