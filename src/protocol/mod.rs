//! The wire protocol of `../shared/PROTOCOL.md` as Rust types, shared by the
//! server and the browser client so that protocol drift is a compile error.
//!
//! This module depends on serde (and serde_json, chrono) only and is the one
//! place that knows JSON. Every frame is an [`Envelope`] holding one message:
//! [`ClientMessage`] from clients, [`ServerMessage`] from the server.
//! [`decode_client`] turns a text frame into a message or a [`DecodeError`]
//! whose [`ErrorCode`] is the `error.code` the server answers with.
//! [`relay`] holds what instances publish to each other, [`forward`] the
//! fallback POSTs they hand each other.

pub mod admin;
mod awareness;
mod channel;
mod client;
mod codes;
mod envelope;
pub mod forward;
mod http;
pub mod relay;
mod server;
pub mod sse;
mod stored;
mod time;

pub use awareness::{Cursor, EditorState, EditorUser};
pub use channel::{Channel, ChannelError};
pub use client::{
    ChatSend, ClientMessage, DocAwarenessRequest, DocUpdateRequest, Hello, HistoryRequest,
    MarkRead, Refresh, Since, StatusUpdate, Subscribe, SubscribeChannel, Unsubscribe, UserStatus,
};
pub use codes::{CloseCode, ErrorCode};
pub use envelope::{batch_json, decode_client, ClientEnvelope, DecodeError, Empty, ServerEnvelope};
pub use http::{
    check_guest_name, decode_body, ApiErrorBody, ApiErrorResponse, LoginRequest, LoginResponse,
    NotifyRequest, NotifyResponse, PresenceResponse, PublishData, PublishRequest, PublishResponse,
    GUEST_ID_PREFIX,
};
pub use server::{
    Ack, Batch, ChatMessage, ChatSnapshot, DocAwarenessEvent, DocSnapshot, DocUpdateEvent,
    ErrorBody, HistoryPage, Notification, PresenceDiff, PresenceSnapshot, PresenceUser,
    ServerMessage, Snapshot, Subscribed, Tick, TickerSnapshot, UnreadSnapshot, Unsubscribed,
    UserRef, Welcome,
};
pub use stored::{StoredEntry, StoredNote, StoredOutbox};
pub use time::Timestamp;

/// Seconds between server WebSocket Pings unless configured otherwise.
pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// The largest client message the server accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 65_536;
/// The longest envelope `id` a client may choose.
pub const MAX_ID_CHARS: usize = 64;
/// How long a connection may stay without `hello` before it is closed with 4001.
pub const HELLO_TIMEOUT_MS: u64 = 10_000;

#[cfg(test)]
mod tests;
