//! Owns the Redis side of the inter-instance format: which
//! [`Publication`] goes out as which message, and a message read back with
//! its frames as shareable [`Utf8Bytes`]. The shapes themselves are
//! `protocol/relay.rs`'s.

use axum::extract::ws::Utf8Bytes;

use crate::protocol::relay::{self, Relayed};
use crate::protocol::{Channel, ChatMessage, DocUpdateEvent, Notification, PresenceDiff};
use crate::protocol::{ServerMessage, Tick};
use crate::server::broker::Publication;
use crate::server::frames;

pub use crate::protocol::relay::{encode_awareness, envelope, RelayError as WireError};

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

/// What to PUBLISH for `publication`.
pub fn encode(publication: &Publication) -> String {
    let message = match publication {
        Publication::Chat(message) => ServerMessage::Chat(message.clone()),
        Publication::Notification(note) => ServerMessage::Notification(note.clone()),
        Publication::Doc(event) => ServerMessage::DocUpdate(event.clone()),
        Publication::Head(channel, offset) => return relay::encode_head(channel, *offset),
        Publication::Read(channel) => return relay::encode_read(channel),
    };
    frames::encode(message).as_str().to_owned()
}

/// Reads what another instance published.
pub fn decode(payload: &[u8]) -> Result<Incoming, WireError> {
    let frame = |frame: &str| Utf8Bytes::from(frame.to_owned());
    Ok(match relay::decode(payload)? {
        Relayed::Chat(message) => Incoming::Chat(message),
        Relayed::Notification(note) => Incoming::Notification(note),
        Relayed::Doc(event) => Incoming::Doc(event),
        Relayed::Tick {
            epoch,
            tick,
            frame: text,
        } => Incoming::Tick {
            epoch,
            tick,
            frame: frame(text),
        },
        Relayed::Presence {
            epoch,
            diff,
            frame: text,
        } => Incoming::Presence {
            epoch,
            diff,
            frame: frame(text),
        },
        Relayed::Head(channel, offset) => Incoming::Head(channel, offset),
        Relayed::Awareness {
            from,
            channel,
            frame: text,
        } => Incoming::Awareness {
            from,
            channel,
            frame: frame(text),
        },
        Relayed::Read(channel) => Incoming::Read(channel),
    })
}

#[cfg(test)]
mod tests;
