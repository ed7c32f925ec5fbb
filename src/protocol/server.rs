//! Owns the messages the server sends (PROTOCOL.md "Server → client").

use serde::{Deserialize, Serialize};

use super::admin::AdminSnapshot;
use super::channel::Channel;
use super::client::UserStatus;
use super::codes::ErrorCode;
use super::envelope::{Empty, ServerEnvelope};
use super::time::Timestamp;

/// One server message: the envelope's `type` and `data`. Written by serde
/// (adjacently tagged); read by [`ServerMessage::from_data`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome(Welcome),
    Subscribed(Subscribed),
    Unsubscribed(Unsubscribed),
    Tick(Tick),
    PresenceDiff(PresenceDiff),
    Chat(ChatMessage),
    Notification(Notification),
    DocUpdate(DocUpdateEvent),
    /// Who is editing a document and where (1.1): relayed, never stored.
    DocAwareness(DocAwarenessEvent),
    Ack(Ack),
    Pong(Empty),
    Error(ErrorBody),
    Batch(Batch),
    /// Extension: the answer to a client `history`.
    History(HistoryPage),
    /// Extension: the `admin` channel's snapshot, once a second (boxed: it
    /// is much larger than the other messages).
    Admin(Box<AdminSnapshot>),
}

impl ServerMessage {
    /// The message of `type` `kind` whose `data` is the JSON text `data`.
    /// A kind this build does not know is an error (a batch leaves it out).
    pub fn from_data(kind: &str, data: &str) -> Result<Self, serde_json::Error> {
        use serde::de::Error;
        // One reader for every kind (what `serde_json::from_str` does per
        // type, written once): the same reading, one reader set up and
        // checked for trailing text instead of one per kind.
        let mut de = serde_json::Deserializer::from_str(data);
        let message = match kind {
            "welcome" => ServerMessage::Welcome(Deserialize::deserialize(&mut de)?),
            "subscribed" => ServerMessage::Subscribed(Deserialize::deserialize(&mut de)?),
            "unsubscribed" => ServerMessage::Unsubscribed(Deserialize::deserialize(&mut de)?),
            "tick" => ServerMessage::Tick(Deserialize::deserialize(&mut de)?),
            "presence_diff" => ServerMessage::PresenceDiff(Deserialize::deserialize(&mut de)?),
            "chat" => ServerMessage::Chat(Deserialize::deserialize(&mut de)?),
            "notification" => ServerMessage::Notification(Deserialize::deserialize(&mut de)?),
            "doc_update" => ServerMessage::DocUpdate(Deserialize::deserialize(&mut de)?),
            "doc_awareness" => ServerMessage::DocAwareness(Deserialize::deserialize(&mut de)?),
            "ack" => ServerMessage::Ack(Deserialize::deserialize(&mut de)?),
            "pong" => ServerMessage::Pong(Deserialize::deserialize(&mut de)?),
            "error" => ServerMessage::Error(Deserialize::deserialize(&mut de)?),
            "batch" => ServerMessage::Batch(Deserialize::deserialize(&mut de)?),
            "history" => ServerMessage::History(Deserialize::deserialize(&mut de)?),
            // Only an operator's page (plain JavaScript) and server-side
            // readers (tests, tools) see `admin`; the dashboard never
            // subscribes to it, so its bundle carries no decoder for it.
            #[cfg(feature = "ssr")]
            "admin" => ServerMessage::Admin(Deserialize::deserialize(&mut de)?),
            other => {
                return Err(serde_json::Error::custom(format_args!(
                    "unknown message type `{other}`"
                )))
            }
        };
        de.end()?;
        Ok(message)
    }
}

/// A user as other users see them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserRef {
    pub id: String,
    pub name: String,
}

/// `welcome`: the answer to `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub connection_id: String,
    /// `null` for an anonymous connection.
    pub user: Option<UserRef>,
    pub heartbeat_ms: u64,
    pub max_message_bytes: usize,
    /// Identifies the server's build (1.1), so a page can tell that the
    /// server was upgraded under it. Empty from a 1.0 server.
    #[serde(default)]
    pub build: String,
}

/// `subscribed`: a channel was subscribed, resumed or not. Read with its
/// snapshot decoded by the channel's kind ([`Snapshot::read`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscribed {
    /// A name, not a [`Channel`]: the `admin` channel (EXTENSIONS.md) is
    /// answered here too, and the hub never holds it.
    pub channel: String,
    pub epoch: String,
    /// The channel's latest offset.
    pub offset: u64,
    pub recovered: bool,
    /// The kind-specific snapshot; `null` when nothing is to be shown yet or
    /// when the subscription was recovered by replay.
    pub snapshot: Option<Snapshot>,
}

impl<'de> Deserialize<'de> for Subscribed {
    /// The snapshot is kept as text until the channel is known, then read as
    /// that kind's shape: no guessing by shape (serde's `untagged`, which
    /// buffers the whole snapshot and tries each shape in turn).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            channel: String,
            epoch: String,
            offset: u64,
            recovered: bool,
            snapshot: Option<Box<serde_json::value::RawValue>>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let snapshot = match raw.snapshot {
            Some(text) => {
                Some(Snapshot::read(&raw.channel, text.get()).map_err(serde::de::Error::custom)?)
            }
            None => None,
        };
        Ok(Subscribed {
            channel: raw.channel,
            epoch: raw.epoch,
            offset: raw.offset,
            recovered: raw.recovered,
            snapshot,
        })
    }
}

/// The snapshot of a `subscribed`, one shape per channel kind (PROTOCOL.md);
/// written as that shape alone, read by the channel's kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Snapshot {
    Ticker(TickerSnapshot),
    Presence(PresenceSnapshot),
    Chat(ChatSnapshot),
    Unread(UnreadSnapshot),
    Doc(DocSnapshot),
}

impl Snapshot {
    /// The snapshot of `channel` (a channel name) whose JSON text is `json`.
    /// A channel kind without snapshots (`admin`) or outside the grammar is
    /// an error, as is a shape that is not its kind's.
    pub fn read(channel: &str, json: &str) -> Result<Self, serde_json::Error> {
        let kind = channel.split_once(':').map_or(channel, |(kind, _)| kind);
        Ok(match kind {
            "ticker" => Snapshot::Ticker(serde_json::from_str(json)?),
            "presence" => Snapshot::Presence(serde_json::from_str(json)?),
            "chat" => Snapshot::Chat(serde_json::from_str(json)?),
            "user" => Snapshot::Unread(serde_json::from_str(json)?),
            "doc" => Snapshot::Doc(serde_json::from_str(json)?),
            _ => {
                return Err(serde::de::Error::custom(format_args!(
                    "channel `{channel}` has no snapshot"
                )))
            }
        })
    }
}

/// Ticker snapshot: the latest tick and up to 60 recent prices, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickerSnapshot {
    pub quote: Tick,
    pub recent: Vec<f64>,
}

/// Presence snapshot: everyone online.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceSnapshot {
    pub users: Vec<PresenceUser>,
}

/// Chat snapshot: the last 50 messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatSnapshot {
    pub messages: Vec<ChatMessage>,
}

/// `user:` snapshot: the newest unread notifications (at most 100, oldest
/// first) and how many are unread in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnreadSnapshot {
    pub unread: Vec<Notification>,
    pub total_unread: u64,
}

/// Document snapshot: the whole Yjs state as a base64 v1 update, and who is
/// editing where (a base64 y-protocols awareness update of every state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocSnapshot {
    pub state: String,
    /// 1.1; empty (no state) from a 1.0 server.
    #[serde(default)]
    pub awareness: String,
}

/// `unsubscribed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unsubscribed {
    /// A name, not a [`Channel`], for the same reason as
    /// [`Subscribed::channel`].
    pub channel: String,
}

/// `tick`: a price change of one symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub channel: Channel,
    pub offset: u64,
    pub symbol: String,
    pub price: f64,
    pub change: f64,
    pub change_pct: f64,
    pub volume: u64,
}

/// `presence_diff`: who joined, left or changed since the previous offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceDiff {
    pub channel: Channel,
    pub offset: u64,
    pub joins: Vec<PresenceUser>,
    pub leaves: Vec<PresenceUser>,
    pub updates: Vec<PresenceUser>,
}

/// A user on the presence list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUser {
    pub id: String,
    pub name: String,
    pub status: UserStatus,
    /// How many live connections (tabs) the user has.
    pub connections: u32,
}

/// `chat`: one chat message in a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub channel: Channel,
    pub offset: u64,
    pub room: String,
    pub msg_id: String,
    pub user: UserRef,
    pub text: String,
    pub sent_at: Timestamp,
}

/// `notification`: a message for one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub channel: Channel,
    pub offset: u64,
    pub notification_id: String,
    pub title: String,
    pub body: String,
    pub created_at: Timestamp,
}

/// `doc_update` from the server: an update another user made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocUpdateEvent {
    pub channel: Channel,
    pub offset: u64,
    pub doc: String,
    pub update: String,
    pub user: UserRef,
}

/// `doc_awareness` from the server: other editors' awareness states (a
/// base64 y-protocols awareness update), stamped with their identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocAwarenessEvent {
    pub channel: Channel,
    pub doc: String,
    pub update: String,
}

/// `ack`: a `chat_send` or `doc_update` was accepted (and is on disk), with
/// the channel and offset it got; a `refresh` is acked with its `id` alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl Ack {
    /// The ack of a message stored on `channel` at `offset`.
    pub fn stored(id: String, channel: Channel, offset: u64) -> Self {
        Ack {
            id,
            channel: Some(channel),
            offset: Some(offset),
        }
    }

    /// The ack of a message that stored nothing (`refresh`).
    pub fn bare(id: String) -> Self {
        Ack {
            id,
            channel: None,
            offset: None,
        }
    }
}

/// `error`: never closes the connection by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// The envelope id of the client message this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The channel as the client named it: a name, not a [`Channel`],
    /// because the error may be that the name is outside the grammar
    /// (`invalid`), or the `admin` channel (`forbidden`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            id: None,
            channel: None,
        }
    }

    pub fn with_id(mut self, id: Option<String>) -> Self {
        self.id = id;
        self
    }

    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }
}

/// `batch`: several server messages in one frame, to be unpacked in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// A message this build cannot read (a newer server's kind) is left out,
    /// so the rest of the batch still applies.
    #[serde(deserialize_with = "readable_messages")]
    pub messages: Vec<ServerEnvelope>,
}

fn readable_messages<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ServerEnvelope>, D::Error> {
    let raws = Vec::<&serde_json::value::RawValue>::deserialize(deserializer)?;
    Ok(raws
        .into_iter()
        .filter_map(|raw| ServerEnvelope::from_json_in_batch(raw.get()))
        .collect())
}

/// `history` (extension): older chat messages, oldest first; empty when
/// there are no more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub channel: Channel,
    pub messages: Vec<ChatMessage>,
}
