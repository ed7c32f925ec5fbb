//! Owns turning server messages into text frames: stamped with the moment
//! they were made, serialised once, shareable by every socket; `batch` frames
//! of several messages; and the close frames the server sends.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};

use crate::protocol::{ServerEnvelope, ServerMessage, Timestamp};

/// Now, as a wire timestamp.
pub fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

/// Serialises a message once, into text that can be shared by many sockets.
pub fn encode(message: ServerMessage) -> Utf8Bytes {
    ServerEnvelope::new(message, now()).to_json().into()
}

/// A close frame with a code and a short reason.
pub fn close_code(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Packs already-serialised messages into one `batch` frame, in order,
/// without parsing them again.
pub fn batch(messages: &[Utf8Bytes]) -> Utf8Bytes {
    crate::protocol::batch_json(messages.iter().map(Utf8Bytes::as_str), &now()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Empty, Unsubscribed};

    #[test]
    fn a_batch_parses_back_into_its_messages_in_order() {
        let pong = encode(ServerMessage::Pong(Empty {}));
        let unsubscribed = encode(ServerMessage::Unsubscribed(Unsubscribed {
            channel: "ticker:AAPL".into(),
        }));
        let batch = batch(&[pong.clone(), unsubscribed.clone()]);
        let unpacked = ServerEnvelope::from_json(&batch).unwrap().unpack();
        let expected: Vec<ServerEnvelope> = [pong, unsubscribed]
            .iter()
            .map(|m| ServerEnvelope::from_json(m).unwrap())
            .collect();
        assert_eq!(unpacked, expected);
    }
}
