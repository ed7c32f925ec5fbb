//! Owns the inter-instance format: what one instance PUBLISHes on a
//! channel's Redis channel (`keys.rs`) and how the others read it back.
//!
//! - a chat message, notification or document update: its `ServerEnvelope`
//!   frame, as this instance's subscribers got it;
//! - a tick or a presence diff: `{"epoch", "frame"}`, written by the Lua
//!   scripts that gave it its offset (`ticker.rs`, `presence/stream.rs`);
//! - `{"head": {"channel", "offset"}}`: a channel's committed head, for
//!   whoever lacks it to catch up from the store;
//! - `{"awareness": <doc_awareness frame>, "from": instance}`;
//! - `{"read": {"channel"}}`: notifications of a channel were marked read.

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::{
    Channel, ChatMessage, DocUpdateEvent, Notification, PresenceDiff, ServerEnvelope,
    ServerMessage, Tick,
};
use crate::server::broker::Publication;
use crate::server::frames;

/// One message another instance published, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Chat(ChatMessage),
    Notification(Notification),
    Doc(DocUpdateEvent),
    Tick {
        epoch: String,
        tick: Tick,
        frame: Utf8Bytes,
    },
    Presence {
        epoch: String,
        diff: PresenceDiff,
        frame: Utf8Bytes,
    },
    Head(Channel, u64),
    Awareness {
        from: String,
        channel: Channel,
        frame: Utf8Bytes,
    },
    Read(Channel),
}

/// Why a published message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("not the JSON of an inter-instance message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a frame of an inter-instance message: {0}")]
    Frame(String),
    #[error("an unknown channel: {0}")]
    Channel(String),
    #[error("a frame of a kind no instance publishes")]
    Unexpected,
}

#[derive(Serialize, Deserialize)]
struct Hint {
    head: Head,
}

#[derive(Serialize, Deserialize)]
struct Head {
    channel: String,
    offset: u64,
}

#[derive(Serialize, Deserialize)]
struct ReadHint {
    read: ReadOf,
}

#[derive(Serialize, Deserialize)]
struct ReadOf {
    channel: String,
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

/// What to PUBLISH for `publication`.
pub fn encode(publication: &Publication) -> String {
    let message = match publication {
        Publication::Chat(message) => ServerMessage::Chat(message.clone()),
        Publication::Notification(note) => ServerMessage::Notification(note.clone()),
        Publication::Doc(event) => ServerMessage::DocUpdate(event.clone()),
        Publication::Head(channel, offset) => {
            let head = Head {
                channel: channel.to_string(),
                offset: *offset,
            };
            return serde_json::to_string(&Hint { head }).unwrap_or_default();
        }
        Publication::Read(channel) => {
            let read = ReadOf {
                channel: channel.to_string(),
            };
            return serde_json::to_string(&ReadHint { read }).unwrap_or_default();
        }
    };
    frames::encode(message).as_str().to_owned()
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
pub fn decode(payload: &[u8]) -> Result<Incoming, WireError> {
    let text = std::str::from_utf8(payload).map_err(|_| WireError::NotUtf8)?;
    if text.starts_with("{\"head\"") {
        let Hint { head } = serde_json::from_str(text)?;
        return Ok(Incoming::Head(channel(&head.channel)?, head.offset));
    }
    if text.starts_with("{\"read\"") {
        let ReadHint { read } = serde_json::from_str(text)?;
        return Ok(Incoming::Read(channel(&read.channel)?));
    }
    if text.starts_with("{\"awareness\"") {
        let carried: Carried = serde_json::from_str(text)?;
        let frame = carried.awareness.get();
        let ServerMessage::DocAwareness(event) = envelope(frame)?.message else {
            return Err(WireError::Unexpected);
        };
        return Ok(Incoming::Awareness {
            from: carried.from,
            channel: channel(&event.channel)?,
            frame: Utf8Bytes::from(frame.to_owned()),
        });
    }
    if text.starts_with("{\"epoch\"") {
        let sequenced: Sequenced = serde_json::from_str(text)?;
        let frame = sequenced.frame.get();
        let epoch = sequenced.epoch;
        return match envelope(frame)?.message {
            ServerMessage::Tick(tick) => Ok(Incoming::Tick {
                epoch,
                tick,
                frame: Utf8Bytes::from(frame.to_owned()),
            }),
            ServerMessage::PresenceDiff(diff) => Ok(Incoming::Presence {
                epoch,
                diff,
                frame: Utf8Bytes::from(frame.to_owned()),
            }),
            _ => Err(WireError::Unexpected),
        };
    }
    match envelope(text)?.message {
        ServerMessage::Chat(message) => Ok(Incoming::Chat(message)),
        ServerMessage::Notification(note) => Ok(Incoming::Notification(note)),
        ServerMessage::DocUpdate(event) => Ok(Incoming::Doc(event)),
        _ => Err(WireError::Unexpected),
    }
}

/// The message a frame kept in a Redis history carries (a tick's, a
/// presence diff's).
pub fn envelope(frame: &str) -> Result<ServerEnvelope, WireError> {
    ServerEnvelope::from_json(frame).map_err(|err| WireError::Frame(err.to_string()))
}

fn channel(name: &str) -> Result<Channel, WireError> {
    name.parse()
        .map_err(|_| WireError::Channel(name.to_owned()))
}

#[cfg(test)]
mod tests;
