//! Owns the page's outbox: the messages of one user that the server has not
//! acknowledged yet (`chat_send` and `mark_read`, each with its envelope id),
//! kept in order and sent again after every reconnect, so the server's
//! idempotency makes each take effect exactly once.
//!
//! Rules:
//! - An outbox belongs to one user ([`Outbox::owner`]); the page never sends
//!   it on a connection welcomed as anyone else, and drops it on sign-out.
//! - `status` never goes in: only the current status matters, and the page
//!   sends it after every `welcome`.
//! - Sending is paced below the server's chat rate ([`PACE_BURST`] at once,
//!   then [`PACE_PER_SEC`] a second: `pace.rs`), in order, so a replay of a
//!   long queue does not run into `rate_limited`.
//! - `rate_limited` means "later": the entry stays and goes out again after
//!   [`RETRY_AFTER_MS`] (the pace waits too). It never fails a message.
//! - Bounded: past [`OUTBOX_CAPACITY`] the oldest is dropped (the page says so).
//! - The note's edits ([`NoteQueue`], `note.rs`) are never dropped and never
//!   paced with chat: one `doc_update` is in flight at a time, and what is
//!   typed meanwhile is merged into the next one.
//!
//! Pure: time comes in as an argument; the browser stores the outbox across
//! reloads under a key of its user and tab (see `browser.rs`), in the form
//! `protocol::StoredOutbox` owns.

mod note;
mod pace;

use std::collections::VecDeque;

use crate::protocol::{ClientEnvelope, ClientMessage, StoredEntry, StoredOutbox};
pub use note::{Merge, NoteQueue, NOTE_UPDATE_MAX};
use pace::Pace;

/// The most messages waiting at once.
pub const OUTBOX_CAPACITY: usize = 100;
/// How many messages go out at once before the pace applies (the server
/// allows bursts of 10 chat messages).
pub const PACE_BURST: f64 = 8.0;
/// Messages per second after the burst (the server allows 5 by default).
pub const PACE_PER_SEC: f64 = 4.0;
/// How long a message answered `rate_limited` waits before it goes again.
pub const RETRY_AFTER_MS: f64 = 1_000.0;

/// Where an entry is on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Sent {
    /// Not sent on this connection; may go from `not_before` on.
    #[default]
    No,
    /// Rate limited: may go again from this moment on.
    NotBefore(f64),
    /// Sent, waiting for its `ack` or `error`.
    InFlight,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    envelope: ClientEnvelope,
    sent: Sent,
}

/// What may be sent now, and when to ask again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Due {
    pub send: Vec<ClientEnvelope>,
    /// When more may go (`None`: nothing waits, or only answers are awaited).
    pub next_at: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outbox {
    /// The id of the user whose messages these are.
    owner: Option<String>,
    entries: VecDeque<Entry>,
    pace: Pace,
    /// The note's edits not acknowledged yet.
    note: NoteQueue,
}

impl From<StoredOutbox> for Outbox {
    /// An outbox read back from storage (`protocol::StoredOutbox`): nothing
    /// of it sent on this page's connection yet, the pace full.
    fn from(stored: StoredOutbox) -> Self {
        Outbox {
            owner: stored.owner,
            entries: stored
                .entries
                .into_iter()
                .map(|entry| Entry {
                    envelope: entry.envelope,
                    sent: Sent::No,
                })
                .collect(),
            pace: Pace::default(),
            note: stored.note.into(),
        }
    }
}

impl Outbox {
    /// An empty outbox for user `owner`.
    pub fn for_user(owner: &str) -> Self {
        Outbox {
            owner: Some(owner.to_owned()),
            ..Outbox::default()
        }
    }

    /// Whose messages these are.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Queues `envelope` (it must have an id; one with the id of a queued
    /// entry replaces it, as a retry does); returns the oldest one dropped to
    /// make room.
    pub fn push(&mut self, envelope: ClientEnvelope) -> Option<ClientEnvelope> {
        debug_assert!(envelope.id.is_some(), "only answered messages are queued");
        debug_assert!(!matches!(envelope.message, ClientMessage::Status(_)));
        self.entries.retain(|e| e.envelope.id != envelope.id);
        self.entries.push_back(Entry {
            envelope,
            sent: Sent::No,
        });
        if self.entries.len() > OUTBOX_CAPACITY {
            self.entries.pop_front().map(|e| e.envelope)
        } else {
            None
        }
    }

    /// Queues an update of the note; `base` makes the envelope ids' stem the
    /// first time (random per outbox); `merge` joins it to the one waiting.
    pub fn push_note(&mut self, update: &[u8], base: impl FnOnce() -> String, merge: Merge) {
        self.note.push(update, base, merge);
    }

    /// The note's updates not acknowledged yet.
    pub fn note(&self) -> &NoteQueue {
        &self.note
    }

    /// Drops the note's updates (refused: the page starts again from the
    /// server's state).
    pub fn clear_note(&mut self) {
        self.note.clear();
    }

    /// The server acknowledged or refused envelope `id`: it leaves.
    pub fn settle(&mut self, id: &str) -> Option<ClientEnvelope> {
        if self.note.settle(id) {
            return None;
        }
        let at = self
            .entries
            .iter()
            .position(|e| e.envelope.id.as_deref() == Some(id))?;
        self.entries.remove(at).map(|e| e.envelope)
    }

    /// The server answered `rate_limited` to `id`: it goes again later.
    /// Whether `id` was queued.
    pub fn retry_later(&mut self, id: &str, now: f64) -> bool {
        let until = now + RETRY_AFTER_MS;
        if self.note.retry_later(id, until) {
            return true;
        }
        let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.envelope.id.as_deref() == Some(id))
        else {
            return false;
        };
        entry.sent = Sent::NotBefore(until);
        self.pace.pause_until(until);
        true
    }

    /// The connection is gone: everything unanswered goes again on the next.
    pub fn disconnected(&mut self) {
        for entry in &mut self.entries {
            if entry.sent == Sent::InFlight {
                entry.sent = Sent::No;
            }
        }
        self.note.disconnected();
    }

    /// What to send now, in order and at the pace; entries it returns are
    /// in flight until settled, retried or disconnected.
    pub fn due(&mut self, now: f64) -> Due {
        let mut due = self.note.due(now);
        for entry in &mut self.entries {
            let ready = match entry.sent {
                Sent::InFlight => continue,
                Sent::No => true,
                Sent::NotBefore(at) => at <= now,
            };
            if !ready {
                // In order: nothing overtakes a message that must wait.
                if let Sent::NotBefore(at) = entry.sent {
                    due.next_at = Some(at);
                }
                break;
            }
            if !self.pace.take(now) {
                due.next_at = Some(self.pace.next_at());
                break;
            }
            entry.sent = Sent::InFlight;
            due.send.push(entry.envelope.clone());
        }
        due
    }

    /// Takes in what another tab of the same user left unsent (entries
    /// already queued here are kept once).
    pub fn merge(&mut self, other: Outbox) {
        if other.owner != self.owner {
            return;
        }
        self.note.adopt(&other.note);
        for entry in other.entries {
            if !self
                .entries
                .iter()
                .any(|e| e.envelope.id == entry.envelope.id)
            {
                self.push(entry.envelope);
            }
        }
    }

    /// The notifications marked read by messages still queued.
    pub fn pending_reads(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter_map(|e| match &e.envelope.message {
                ClientMessage::MarkRead(read) => Some(read.notification_ids.iter()),
                _ => None,
            })
            .flatten()
            .map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ClientEnvelope> {
        self.entries.iter().map(|e| &e.envelope)
    }

    /// What waits for an answer, as the inspector shows it: each envelope's
    /// id and type, the note's edit in flight last.
    pub fn pending(&self) -> Vec<(String, &'static str)> {
        let mut pending: Vec<(String, &'static str)> = self
            .iter()
            .map(|e| (e.id.clone().unwrap_or_default(), e.message.kind()))
            .collect();
        if let Some(id) = self.note.flight_id() {
            pending.push((id.to_owned(), "doc_update"));
        }
        pending
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.note.is_empty()
    }

    /// The outbox as it is stored (`protocol::StoredOutbox`: its JSON is
    /// the protocol's).
    pub fn stored(&self) -> StoredOutbox {
        StoredOutbox {
            owner: self.owner.clone(),
            entries: self
                .entries
                .iter()
                .map(|entry| StoredEntry {
                    envelope: entry.envelope.clone(),
                })
                .collect(),
            note: self.note.stored(),
        }
    }
}

#[cfg(test)]
mod tests;
