//! Owns the read side of one socket: frames decoded into client messages, the
//! moment the peer was last heard from, and a small backlog of messages that
//! arrived while the connection was waiting on the store. Reading on while a
//! write is pending keeps heartbeats and `ping`s answered however slow the
//! disk is, and the backlog keeps every other message in its order.

use axum::extract::ws::Message;
use futures_util::{Stream, StreamExt};
use std::collections::VecDeque;
use std::pin::Pin;

use crate::protocol::{decode_client, ClientEnvelope, DecodeError};

/// The socket's read half, boxed so that the connection and its feature
/// modules need no type parameter (one allocation per connection).
pub type Frames = Pin<Box<dyn Stream<Item = Result<Message, axum::Error>> + Send>>;

/// Messages read ahead while the connection waits on the store; past this the
/// connection stops reading (TCP pushes back on the peer) until it catches up.
pub const MAX_BACKLOG: usize = 64;

/// What the peer sent, as the connection handles it.
pub enum Received {
    /// A text frame, decoded (or the `error` to answer it with).
    Message(Result<ClientEnvelope, DecodeError>),
    /// A binary frame: answered `bad_frame`.
    Binary,
    /// A Ping or Pong: proof of life, nothing to answer.
    Control,
    /// The peer closed or the stream ended.
    Gone,
    /// The stream failed (too large, broken framing, reset).
    Broken(axum::Error),
}

pub struct Inbound {
    /// From the socket (its other half is owned by the writer task).
    frames: Frames,
    /// Read ahead while waiting, handled in order before anything newer.
    backlog: VecDeque<Received>,
    /// The stream returned `None` or an error: never poll it again.
    ended: bool,
}

impl Inbound {
    pub fn new(frames: Frames) -> Self {
        Inbound {
            frames,
            backlog: VecDeque::new(),
            ended: false,
        }
    }

    /// The oldest message read ahead, if any.
    pub fn next_backlogged(&mut self) -> Option<Received> {
        self.backlog.pop_front()
    }

    /// Keeps a message for after the current one.
    pub fn defer(&mut self, received: Received) {
        self.backlog.push_back(received);
    }

    /// Whether reading ahead may go on (the backlog has room and the stream
    /// has not ended).
    pub fn may_read_ahead(&self) -> bool {
        !self.ended && self.backlog.len() < MAX_BACKLOG
    }

    /// The next frame from the socket. Pending forever once the stream ended
    /// (the `Gone` was already handed out).
    pub async fn read(&mut self) -> Received {
        if self.ended {
            return std::future::pending().await;
        }
        let received = match self.frames.next().await {
            None | Some(Ok(Message::Close(_))) => Received::Gone,
            Some(Ok(Message::Text(text))) => Received::Message(decode_client(text.as_str())),
            Some(Ok(Message::Binary(_))) => Received::Binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Received::Control,
            Some(Err(err)) => Received::Broken(err),
        };
        if matches!(received, Received::Gone | Received::Broken(_)) {
            self.ended = true;
        }
        received
    }

    /// Reads on until the peer's Close, for the closing handshake.
    pub async fn drain_until_close(&mut self) {
        while !self.ended {
            if let Received::Gone | Received::Broken(_) = self.read().await {
                return;
            }
        }
    }
}
