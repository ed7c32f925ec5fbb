//! Owns the page's outbox: messages the server has not acknowledged yet
//! (chat, status, read marks), kept in order with their envelope ids and
//! replayed after every reconnect, so the server's idempotency makes each
//! take effect exactly once. Bounded: past the bound the oldest is dropped
//! (and the page says so). Pure; the browser stores it across reloads.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

use crate::protocol::{ClientEnvelope, ClientMessage};

/// The most messages waiting at once.
pub const OUTBOX_CAPACITY: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outbox {
    entries: VecDeque<ClientEnvelope>,
}

impl Outbox {
    /// Queues `envelope`; returns the oldest one dropped to make room. A
    /// `status` replaces one still queued (only the latest matters).
    pub fn push(&mut self, envelope: ClientEnvelope) -> Option<ClientEnvelope> {
        if let ClientMessage::Status(_) = envelope.message {
            self.entries
                .retain(|e| !matches!(e.message, ClientMessage::Status(_)));
        }
        self.entries.push_back(envelope);
        if self.entries.len() > OUTBOX_CAPACITY {
            self.entries.pop_front()
        } else {
            None
        }
    }

    /// The server acknowledged or refused envelope `id`: it is settled.
    pub fn settle(&mut self, id: &str) {
        self.entries.retain(|e| e.id.as_deref() != Some(id));
    }

    /// Everything to send after a reconnect, in order. Messages the server
    /// never acknowledges (no `id`) leave the outbox now.
    pub fn replay(&mut self) -> Vec<ClientEnvelope> {
        let all: Vec<ClientEnvelope> = self.entries.iter().cloned().collect();
        self.entries.retain(|e| e.id.is_some());
        all
    }

    pub fn iter(&self) -> impl Iterator<Item = &ClientEnvelope> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ChatSend, StatusUpdate, UserStatus};

    fn chat(id: &str) -> ClientEnvelope {
        ClientEnvelope::new(ClientMessage::ChatSend(ChatSend {
            room: "general".into(),
            text: id.into(),
        }))
        .with_id(id)
    }

    fn status(status: UserStatus) -> ClientEnvelope {
        ClientEnvelope::new(ClientMessage::Status(StatusUpdate { status }))
    }

    fn ids(envelopes: &[ClientEnvelope]) -> Vec<Option<&str>> {
        envelopes.iter().map(|e| e.id.as_deref()).collect()
    }

    #[test]
    fn messages_replay_in_order_until_settled() {
        let mut outbox = Outbox::default();
        outbox.push(chat("a"));
        outbox.push(chat("b"));
        assert_eq!(ids(&outbox.replay()), [Some("a"), Some("b")]);
        assert_eq!(
            ids(&outbox.replay()),
            [Some("a"), Some("b")],
            "unacked ones replay again"
        );
        outbox.settle("a");
        assert_eq!(ids(&outbox.replay()), [Some("b")]);
    }

    #[test]
    fn only_the_latest_status_is_kept_and_it_is_sent_once() {
        let mut outbox = Outbox::default();
        outbox.push(status(UserStatus::Away));
        outbox.push(chat("a"));
        outbox.push(status(UserStatus::Online));
        let replayed = outbox.replay();
        assert_eq!(replayed.len(), 2);
        assert!(
            matches!(&replayed[1].message, ClientMessage::Status(s) if s.status == UserStatus::Online)
        );
        assert_eq!(outbox.len(), 1, "status needs no ack");
    }

    #[test]
    fn past_the_bound_the_oldest_is_dropped() {
        let mut outbox = Outbox::default();
        for n in 0..OUTBOX_CAPACITY {
            assert!(outbox.push(chat(&n.to_string())).is_none());
        }
        let dropped = outbox.push(chat("one too many")).expect("the oldest goes");
        assert_eq!(dropped.id.as_deref(), Some("0"));
        assert_eq!(outbox.len(), OUTBOX_CAPACITY);
    }

    #[test]
    fn it_survives_a_reload_as_json() {
        let mut outbox = Outbox::default();
        outbox.push(chat("a"));
        let stored = serde_json::to_string(&outbox).unwrap();
        assert_eq!(serde_json::from_str::<Outbox>(&stored).unwrap(), outbox);
    }
}
