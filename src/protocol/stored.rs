//! Owns what the page keeps in `localStorage` between its lives: the outbox
//! of one user and tab (`pulse_outbox:{user}:{tab}`, EXTENSIONS.md), as JSON.
//! A later version of the page reads what an earlier one stored (a reload
//! onto a new build), so fields are only ever added, with a default; an
//! entry holds a client envelope exactly as it goes on the wire.

use serde::{Deserialize, Serialize};

use super::client::ClientMessage;
use super::envelope::ClientEnvelope;

/// One user's unacknowledged messages, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredOutbox {
    /// The id of the user whose messages these are.
    pub owner: Option<String>,
    /// `chat_send` and `mark_read` envelopes, oldest first.
    pub entries: Vec<StoredEntry>,
    /// The note's edits (absent in outboxes stored before the note).
    #[serde(default)]
    pub note: StoredNote,
}

/// One queued message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEntry {
    #[serde(deserialize_with = "queued_envelope")]
    pub envelope: ClientEnvelope,
}

/// The note's updates not acknowledged yet, base64 as they travel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredNote {
    /// Envelope ids are `{base}-{count}`.
    pub base: String,
    pub count: u64,
    /// The update sent under its envelope id: `[id, update]`.
    pub flight: Option<(String, String)>,
    /// What was typed since, in order.
    pub waiting: Vec<String>,
}

impl StoredOutbox {
    /// Reads an outbox back; an error says why it is unreadable (the page
    /// then starts without it).
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    /// The outbox as it is stored.
    pub fn to_json(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|err| err.to_string())
    }
}

/// Reads back a stored entry's envelope: only the kinds an outbox holds
/// (`chat_send`, `mark_read`), each read by serde alone. The protocol's full
/// client decoder (every kind, errors naming the field) is the server's; in
/// the page it was 25 KB of the wasm bundle.
fn queued_envelope<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<ClientEnvelope, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    struct Stored {
        #[serde(rename = "type")]
        kind: String,
        data: Box<serde_json::value::RawValue>,
        #[serde(default)]
        id: Option<String>,
    }
    let stored = Stored::deserialize(deserializer)?;
    // One reader for both kinds (what `serde_json::from_str` does per type).
    let mut data = serde_json::Deserializer::from_str(stored.data.get());
    let message = match stored.kind.as_str() {
        "chat_send" => Deserialize::deserialize(&mut data).map(ClientMessage::ChatSend),
        "mark_read" => Deserialize::deserialize(&mut data).map(ClientMessage::MarkRead),
        other => return Err(D::Error::custom(format_args!("`{other}` is never queued"))),
    }
    .and_then(|message| data.end().map(|()| message))
    .map_err(D::Error::custom)?;
    Ok(ClientEnvelope {
        message,
        timestamp: None,
        id: stored.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ChatSend, MarkRead};

    /// What the page stored before this module owned the form (an outbox of
    /// 2026-12 with a chat line, a read mark, one note update in flight and
    /// one waiting), byte for byte.
    const STORED: &str = r#"{"owner":"ann","entries":[{"envelope":{"type":"chat_send","data":{"room":"general","text":"c0"},"id":"c0"}},{"envelope":{"type":"mark_read","data":{"notification_ids":["n1","n2"]},"id":"r1"}}],"note":{"base":"d-t","count":1,"flight":["d-t-1","AAA="],"waiting":["AAE="]}}"#;

    #[test]
    fn an_outbox_stored_by_an_earlier_page_reads_back_and_is_stored_the_same() {
        let outbox = StoredOutbox::from_json(STORED).unwrap();
        assert_eq!(outbox.owner.as_deref(), Some("ann"));
        let messages: Vec<_> = outbox.entries.iter().map(|e| &e.envelope).collect();
        assert_eq!(
            messages,
            [
                &ClientEnvelope::new(ClientMessage::ChatSend(ChatSend {
                    room: "general".into(),
                    text: "c0".into(),
                }))
                .with_id("c0"),
                &ClientEnvelope::new(ClientMessage::MarkRead(MarkRead {
                    notification_ids: vec!["n1".into(), "n2".into()],
                }))
                .with_id("r1"),
            ]
        );
        assert_eq!(
            outbox.note.flight,
            Some(("d-t-1".to_owned(), "AAA=".to_owned()))
        );
        assert_eq!(outbox.note.waiting, ["AAE="]);
        assert_eq!(outbox.to_json().unwrap(), STORED);
    }

    #[test]
    fn an_outbox_from_before_the_note_reads_back_with_no_edits() {
        let json = r#"{"owner":"ann","entries":[{"envelope":{"type":"chat_send","data":{"room":"general","text":"hi"},"id":"c0"}}]}"#;
        let outbox = StoredOutbox::from_json(json).unwrap();
        assert_eq!(outbox.entries.len(), 1);
        assert_eq!(outbox.note, StoredNote::default());
    }

    #[test]
    fn a_kind_an_outbox_never_holds_makes_it_unreadable() {
        let json = r#"{"owner":"ann","entries":[{"envelope":{"type":"status","data":{"status":"away"},"id":"s"}}]}"#;
        let err = StoredOutbox::from_json(json).unwrap_err();
        assert!(err.contains("`status` is never queued"), "{err}");
    }
}
