//! Owns the messages a client sends (PROTOCOL.md "Client → server").

use serde::{Deserialize, Serialize};

use super::envelope::Empty;

/// One client message: the envelope's `type` and `data`. Written by serde
/// (adjacently tagged); read by `decode_client`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ClientMessage {
    Hello(Hello),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    ChatSend(ChatSend),
    Status(StatusUpdate),
    DocUpdate(DocUpdateRequest),
    Ping(Empty),
    /// Extension: marks notifications read (see docs/EXTENSIONS.md).
    MarkRead(MarkRead),
    /// Extension: asks for older chat messages (see docs/EXTENSIONS.md).
    History(HistoryRequest),
    /// A fresh token for the same user, before the current one expires (1.1).
    Refresh(Refresh),
    /// Who is editing a document and where (1.1).
    DocAwareness(DocAwarenessRequest),
}

impl ClientMessage {
    /// The `type` this message has on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Hello(_) => "hello",
            ClientMessage::Subscribe(_) => "subscribe",
            ClientMessage::Unsubscribe(_) => "unsubscribe",
            ClientMessage::ChatSend(_) => "chat_send",
            ClientMessage::Status(_) => "status",
            ClientMessage::DocUpdate(_) => "doc_update",
            ClientMessage::Ping(_) => "ping",
            ClientMessage::MarkRead(_) => "mark_read",
            ClientMessage::History(_) => "history",
            ClientMessage::Refresh(_) => "refresh",
            ClientMessage::DocAwareness(_) => "doc_awareness",
        }
    }
}

/// `hello`: `{"token": "<JWT>"}`, or `{}` for an anonymous connection.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Hello {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `subscribe`: several channels at once, each with an optional resume point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    pub channels: Vec<SubscribeChannel>,
}

/// One channel of a `subscribe`. The name stays a string here so that a bad
/// name is answered with an `error` (`invalid`, naming the channel and the
/// envelope `id`) for that channel alone, and so that `admin`, which is not
/// a [`super::Channel`], can be asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeChannel {
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Since>,
}

/// The last `{offset, epoch}` a client saw on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    pub offset: u64,
    pub epoch: String,
}

/// `unsubscribe`: channel names, strings for the same reasons as
/// [`SubscribeChannel::channel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unsubscribe {
    pub channels: Vec<String>,
}

/// `chat_send`: a message for a room (sent with an envelope `id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatSend {
    pub room: String,
    pub text: String,
}

/// `status`: the user's presence status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub status: UserStatus,
}

/// A user's presence status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    #[default]
    Online,
    Away,
}

/// `doc_update` from a client: a base64 Yjs v1 update for a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocUpdateRequest {
    pub doc: String,
    pub update: String,
}

/// `mark_read` (extension): notifications of the user's own `user:` channel
/// to mark read; answered by `ack` with the channel's latest offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkRead {
    pub notification_ids: Vec<String>,
}

/// `history` (extension): up to `limit` (default 50, at most 100) messages of
/// a chat channel before offset `before`; answered by a server `history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// A name, not a [`super::Channel`]: a bad one is answered `invalid`
    /// with the envelope `id` and the name, not as an undecodable message.
    pub channel: String,
    pub before: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `refresh`: a new token for the connection's own user (same `sub`), so an
/// open connection outlives its first token; answered `ack` when it has an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refresh {
    pub token: String,
}

/// `doc_awareness` from a client: a base64 y-protocols awareness update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocAwarenessRequest {
    pub doc: String,
    pub update: String,
}
