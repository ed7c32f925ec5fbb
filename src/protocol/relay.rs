//! Owns the inter-instance format: what one instance PUBLISHes on a
//! channel's Redis channel and how the others read it back. Redis itself
//! (which channel, when) is `server/broker/redis/`'s business.
//!
//! - a chat message, notification or document update: its
//!   [`ServerEnvelope`] frame, as the publisher's subscribers got it;
//! - a tick or a presence diff: `{"epoch", "frame"}`, built here
//!   ([`encode_sequenced`]) with marks for the epoch and the offset, which
//!   the Lua scripts that number it fill in and nothing else
//!   (`broker/redis/ticker.rs`, `broker/redis/presence/stream.rs`);
//! - `{"head": {"channel", "offset"}}`: a channel's committed head, for
//!   whoever lacks it to catch up from the store;
//! - `{"awareness": <doc_awareness frame>, "from": instance}`;
//! - `{"read": {"channel"}}`: notifications of a channel were marked read.
//!
//! And what instances keep in Redis for presence: a connection in its
//! instance's hash ([`PresenceEntry`]) and a user on the shown list.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{
    Channel, ChatMessage, DocUpdateEvent, Notification, PresenceDiff, PresenceUser, ServerEnvelope,
    ServerMessage, Tick, UserRef, UserStatus,
};

/// Stands for the epoch in [`encode_sequenced`]'s message until the Lua
/// script that numbers it knows the epoch (which it writes in its place).
/// Nothing a Lua pattern treats specially, and no JSON escape.
pub const EPOCH_MARK: &str = "PULSE_EPOCH_MARK";

/// One identified connection as its instance keeps it in Redis (its hash
/// of connections, read by the presence leader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEntry {
    pub user: UserRef,
    pub status: UserStatus,
}

impl PresenceEntry {
    /// The hash field's value.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A hash field's value read back; `None` if it is not one.
    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// A user on the presence leader's shown list, as kept in Redis.
pub fn encode_shown(user: &PresenceUser) -> String {
    serde_json::to_string(user).unwrap_or_default()
}

/// A user of the shown list read back; `None` if it is not one.
pub fn decode_shown(text: &str) -> Option<PresenceUser> {
    serde_json::from_str(text).ok()
}

/// What a Lua script PUBLISHes for a tick or a presence diff it numbered:
/// `{"epoch", "frame"}`. Built with `epoch` [`EPOCH_MARK`] and the frame's
/// offset a mark, the script writing the two in; [`decode`] reads it.
pub fn encode_sequenced(epoch: &str, frame: &str) -> String {
    // `frame` is a frame this server encoded: JSON already.
    format!(
        r#"{{"epoch":{},"frame":{frame}}}"#,
        serde_json::Value::from(epoch)
    )
}

/// One message another instance published, read; the frames it carries
/// are borrowed from the payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Relayed<'a> {
    Chat(ChatMessage),
    Notification(Notification),
    Doc(DocUpdateEvent),
    Tick {
        epoch: String,
        tick: Tick,
        frame: &'a str,
    },
    Presence {
        epoch: String,
        diff: PresenceDiff,
        frame: &'a str,
    },
    Head(Channel, u64),
    Awareness {
        from: String,
        channel: Channel,
        frame: &'a str,
    },
    Read(Channel),
}

/// Why a published message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("not the JSON of an inter-instance message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a frame of an inter-instance message: {0}")]
    Frame(String),
    #[error("a frame of a kind no instance publishes")]
    Unexpected,
}

#[derive(Serialize, Deserialize)]
struct Hint {
    head: Head,
}

#[derive(Serialize, Deserialize)]
struct Head {
    channel: Channel,
    offset: u64,
}

#[derive(Serialize, Deserialize)]
struct ReadHint {
    read: ReadOf,
}

#[derive(Serialize, Deserialize)]
struct ReadOf {
    channel: Channel,
}

#[derive(Deserialize)]
struct Carried<'a> {
    #[serde(borrow)]
    awareness: &'a RawValue,
    from: String,
}

#[derive(Deserialize)]
struct Sequenced<'a> {
    epoch: String,
    #[serde(borrow)]
    frame: &'a RawValue,
}

/// What to PUBLISH to tell the others `channel`'s committed head.
pub fn encode_head(channel: &Channel, offset: u64) -> String {
    let head = Head {
        channel: channel.clone(),
        offset,
    };
    serde_json::to_string(&Hint { head }).unwrap_or_default()
}

/// What to PUBLISH to tell the others `channel`'s notifications were read.
pub fn encode_read(channel: &Channel) -> String {
    let read = ReadOf {
        channel: channel.clone(),
    };
    serde_json::to_string(&ReadHint { read }).unwrap_or_default()
}

/// What to PUBLISH for an awareness frame this instance's editor sent.
pub fn encode_awareness(frame: &str, instance: &str) -> String {
    // `frame` is a frame this server encoded: JSON already.
    format!(
        r#"{{"awareness":{frame},"from":{}}}"#,
        serde_json::Value::from(instance)
    )
}

/// Reads what another instance published.
pub fn decode(payload: &[u8]) -> Result<Relayed<'_>, RelayError> {
    let text = std::str::from_utf8(payload).map_err(|_| RelayError::NotUtf8)?;
    if text.starts_with("{\"head\"") {
        let Hint { head } = serde_json::from_str(text)?;
        return Ok(Relayed::Head(head.channel, head.offset));
    }
    if text.starts_with("{\"read\"") {
        let ReadHint { read } = serde_json::from_str(text)?;
        return Ok(Relayed::Read(read.channel));
    }
    if text.starts_with("{\"awareness\"") {
        let carried: Carried = serde_json::from_str(text)?;
        let frame = carried.awareness.get();
        let ServerMessage::DocAwareness(event) = envelope(frame)?.message else {
            return Err(RelayError::Unexpected);
        };
        return Ok(Relayed::Awareness {
            from: carried.from,
            channel: event.channel,
            frame,
        });
    }
    if text.starts_with("{\"epoch\"") {
        let sequenced: Sequenced = serde_json::from_str(text)?;
        let frame = sequenced.frame.get();
        let epoch = sequenced.epoch;
        return match envelope(frame)?.message {
            ServerMessage::Tick(tick) => Ok(Relayed::Tick { epoch, tick, frame }),
            ServerMessage::PresenceDiff(diff) => Ok(Relayed::Presence { epoch, diff, frame }),
            _ => Err(RelayError::Unexpected),
        };
    }
    match envelope(text)?.message {
        ServerMessage::Chat(message) => Ok(Relayed::Chat(message)),
        ServerMessage::Notification(note) => Ok(Relayed::Notification(note)),
        ServerMessage::DocUpdate(event) => Ok(Relayed::Doc(event)),
        _ => Err(RelayError::Unexpected),
    }
}

/// The message a frame kept in a Redis history carries (a tick's, a
/// presence diff's).
pub fn envelope(frame: &str) -> Result<ServerEnvelope, RelayError> {
    ServerEnvelope::from_json(frame).map_err(|err| RelayError::Frame(err.to_string()))
}

#[cfg(test)]
mod tests;
