//! Owns turning server messages into WebSocket frames (stamped with the
//! moment they were made) and the close frames the server sends.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};

use crate::protocol::{CloseCode, ServerEnvelope, ServerMessage, Timestamp};

/// Now, as a wire timestamp.
pub fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

/// Serialises a message once, into text that can be shared by many sockets.
pub fn encode(message: ServerMessage) -> Utf8Bytes {
    ServerEnvelope::new(message, now()).to_json().into()
}

/// A close frame with a code and a short reason.
pub fn close(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.code(),
        reason: reason.into(),
    }))
}
