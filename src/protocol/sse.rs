//! The HTTP fallback's own wire shapes (docs/EXTENSIONS.md, "HTTP fallback
//! transport"): how one Server-Sent Event is written, the `session` event that
//! opens a stream, the `close` event that ends one (the WebSocket close frame's
//! twin) and the `Last-Event-ID` that resumes one; `read.rs` reads a stream
//! back on a client's side. Everything else on the fallback is the
//! WebSocket's envelopes, byte for byte.

pub mod read;

use serde::{Deserialize, Serialize};

/// The `event:` name of the first event of every stream.
pub const SESSION_EVENT: &str = "session";
/// The `event:` name of the last event of a stream the server ends.
pub const CLOSE_EVENT: &str = "close";
/// The comment line the server sends as a heartbeat.
pub const HEARTBEAT_COMMENT: &str = ": heartbeat\n\n";

/// `event: session`: which session this stream serves, and whether it is the
/// one `Last-Event-ID` named (`resumed`), so nothing need be sent again, or a
/// new one that starts with `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SseSession {
    pub session: String,
    pub resumed: bool,
    /// The bytes one POSTed line may hold (a WebSocket frame's limit).
    pub max_message_bytes: usize,
}

/// `event: close`: what the WebSocket says in its close frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SseClose {
    pub code: u16,
    pub reason: String,
}

/// The `id:` of an event: the session and the event's number in it.
pub fn event_id(session: &str, seq: u64) -> String {
    format!("{session}:{seq}")
}

/// A `Last-Event-ID` read back: the session and the last event number seen.
pub fn parse_event_id(id: &str) -> Option<(&str, u64)> {
    let (session, seq) = id.trim().rsplit_once(':')?;
    Some((session, seq.parse().ok()?))
}

/// One event as it goes on the wire: `id:` (if any), `event:` (if not the
/// default `message`), one `data:` line per line of `data`, a blank line.
pub fn event_text(id: Option<&str>, event: Option<&str>, data: &str) -> String {
    let mut text = String::with_capacity(data.len() + 128);
    if let Some(id) = id {
        text.push_str("id: ");
        text.push_str(id);
        text.push('\n');
    }
    if let Some(event) = event {
        text.push_str("event: ");
        text.push_str(event);
        text.push('\n');
    }
    for line in data.split('\n') {
        text.push_str("data: ");
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    text
}

impl SseSession {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a session event serialises")
    }
}

impl SseClose {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a close event serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_reads_back() {
        let id = event_id("s1.abc.def", 42);
        assert_eq!(parse_event_id(&id), Some(("s1.abc.def", 42)));
        assert_eq!(parse_event_id("no-number"), None);
        assert_eq!(parse_event_id("s:x"), None);
    }

    #[test]
    fn data_with_newlines_becomes_several_data_lines() {
        let text = event_text(Some("s:1"), Some("close"), "a\nb");
        assert_eq!(text, "id: s:1\nevent: close\ndata: a\ndata: b\n\n");
    }
}
