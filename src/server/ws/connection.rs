//! Owns one WebSocket connection: the `select!` loop over inbound frames, the
//! heartbeat, the hello deadline and shutdown, and the answers to each
//! client message. Generic over `Sink + Stream` so tests need no network.

use axum::extract::ws::{Message, Utf8Bytes};
use futures_util::{Sink, Stream, StreamExt};
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::{frames, writer};
use crate::protocol::{
    decode_client, ClientMessage, CloseCode, Empty, ErrorBody, ErrorCode, ServerMessage, Welcome,
};
use crate::server::config::Config;
use crate::server::metrics::Metrics;
use crate::server::state::AppState;

/// Frames queued for the writer before the connection counts as a slow consumer.
const OUTBOUND_CAPACITY: usize = 256;

/// What a connection needs from the server, cloned per connection.
#[derive(Clone)]
pub struct ConnectionContext {
    pub config: Arc<Config>,
    /// Cancelled when the server shuts down: the connection closes with 1001.
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
}

impl ConnectionContext {
    pub fn from_state(state: &AppState) -> Self {
        ConnectionContext {
            config: state.config.clone(),
            shutdown: state.shutdown.clone(),
            metrics: state.metrics.clone(),
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
    /// The server closes with this code and reason.
    Close(CloseCode, &'static str),
    /// The peer closed or vanished: nothing left to say.
    PeerGone,
}

/// Serves one socket until it closes; returns once the writer has flushed.
pub async fn serve_connection<S>(socket: S, context: ConnectionContext)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Send + 'static,
{
    let metrics = context.metrics.clone();
    metrics.connections_open.fetch_add(1, Relaxed);
    metrics.connections_total.fetch_add(1, Relaxed);

    let (sink, stream) = socket.split();
    let (queue, queue_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let writer = tokio::spawn(writer::run(sink, queue_rx));
    let id = uuid::Uuid::new_v4().simple().to_string();
    let span = tracing::debug_span!("conn", id = %id);
    let _enter = span.enter();
    drop(_enter);

    let mut connection = Connection {
        id,
        context,
        queue,
        phase: Phase::AwaitingHello,
    };
    let ending = connection.run(stream).await;
    if let Ending::Close(code, reason) = ending {
        tracing::debug!(code = code.code(), reason, "closing connection");
        let _ = connection.queue.send(frames::close(code, reason)).await;
    }
    let grace = connection.context.config.shutdown_grace();
    drop(connection);
    // The writer ends after the close frame or when the queue closes; a peer
    // that never reads cannot hold the task past the grace period.
    let _ = tokio::time::timeout(grace, writer).await;
    metrics.connections_open.fetch_sub(1, Relaxed);
}

struct Connection {
    id: String,
    context: ConnectionContext,
    /// To the writer task, the only owner of the socket's write half.
    queue: mpsc::Sender<Message>,
    phase: Phase,
}

impl Connection {
    async fn run<R>(&mut self, stream: R) -> Ending
    where
        R: Stream<Item = Result<Message, axum::Error>>,
    {
        let mut stream = pin!(stream);
        let heartbeat = self.context.config.heartbeat();
        let mut ping_timer = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        ping_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut silence = pin!(sleep(heartbeat * 2));
        let hello_deadline = pin!(sleep(self.context.config.hello_timeout()));
        let mut hello_deadline = hello_deadline;
        let shutdown = self.context.shutdown.clone();

        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ending::Close(CloseCode::GoingAway, "server shutting down"),
                _ = &mut hello_deadline, if matches!(self.phase, Phase::AwaitingHello) => {
                    return Ending::Close(CloseCode::Unauthorized, "no hello within the time allowed");
                }
                _ = &mut silence => return Ending::Close(CloseCode::GoingAway, "heartbeat timeout"),
                _ = ping_timer.tick() => {
                    if self.queue.send(Message::Ping(Default::default())).await.is_err() {
                        return Ending::PeerGone;
                    }
                }
                frame = stream.next() => {
                    let Some(frame) = frame else { return Ending::PeerGone };
                    silence.as_mut().reset(Instant::now() + heartbeat * 2);
                    match frame {
                        Ok(Message::Text(text)) => {
                            if let Some(ending) = self.on_text(&text).await {
                                return ending;
                            }
                        }
                        Ok(Message::Binary(_)) => {
                            let body = ErrorBody::new(ErrorCode::BadFrame, "binary frames are not accepted: send JSON in text frames");
                            self.send_error(body).await;
                        }
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
                self.send_error(err.to_body()).await;
                return None;
            }
        };
        let id = envelope.id;
        match (&self.phase, envelope.message) {
            (Phase::AwaitingHello, ClientMessage::Hello(hello)) => {
                if hello.token.is_some() {
                    let body = ErrorBody::new(ErrorCode::Unauthorized, "token login is not available on this server yet; send hello with {} for an anonymous connection");
                    self.send_error(body.with_id(id)).await;
                    return None;
                }
                self.phase = Phase::Ready;
                let welcome = Welcome {
                    connection_id: self.id.clone(),
                    user: None,
                    heartbeat_ms: self.context.config.heartbeat_ms,
                    max_message_bytes: self.context.config.max_message_bytes(),
                };
                self.send(ServerMessage::Welcome(welcome)).await;
            }
            (Phase::AwaitingHello, _) => {
                let body = ErrorBody::new(ErrorCode::HelloRequired, "send hello first");
                self.send_error(body.with_id(id)).await;
            }
            (Phase::Ready, ClientMessage::Hello(_)) => {
                let body = ErrorBody::new(
                    ErrorCode::Invalid,
                    "hello: already received on this connection",
                );
                self.send_error(body.with_id(id)).await;
            }
            (Phase::Ready, ClientMessage::Ping(Empty {})) => {
                self.send(ServerMessage::Pong(Empty {})).await;
            }
            (Phase::Ready, other) => {
                let message = format!("`{}` is not available on this server yet", other.kind());
                self.send_error(ErrorBody::new(ErrorCode::NotFound, message).with_id(id))
                    .await;
            }
        }
        None
    }

    async fn send(&self, message: ServerMessage) {
        self.context.metrics.messages_out.fetch_add(1, Relaxed);
        let _ = self
            .queue
            .send(Message::Text(frames::encode(message)))
            .await;
    }

    async fn send_error(&self, body: ErrorBody) {
        self.context.metrics.protocol_errors.fetch_add(1, Relaxed);
        self.send(ServerMessage::Error(body)).await;
    }
}

/// A read error: a message over the size limit gets 1009, anything else
/// (broken framing, invalid UTF-8, a reset) means the peer is gone or broken.
fn read_error(err: axum::Error) -> Ending {
    match err.into_inner().downcast::<tungstenite::Error>() {
        Ok(err) if matches!(*err, tungstenite::Error::Capacity(_)) => {
            Ending::Close(CloseCode::TooBig, "message larger than max_message_bytes")
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
