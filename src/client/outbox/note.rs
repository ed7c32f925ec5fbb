//! Owns the note's part of the outbox ([`NoteQueue`]): its edits are never
//! dropped and never paced with chat; one `doc_update` is in flight at a
//! time, and what is typed meanwhile is merged into the next one (a CRDT
//! update merges losslessly), so a burst of typing costs a message per round
//! trip, not per key.

use std::collections::VecDeque;

use super::{Due, Sent};
use crate::client::note::NOTE_DOC;
use crate::protocol::{ClientEnvelope, ClientMessage, DocUpdateRequest, StoredNote};

/// The most bytes of Yjs update one `doc_update` carries: its base64 (a
/// third more) and the envelope stay under the server's 64 KiB message limit.
pub const NOTE_UPDATE_MAX: usize = 40 * 1024;

/// How two of the note's updates become one: the note's engine's merge,
/// once it is installed (`None` before: updates then wait unmerged).
pub type Merge<'a> = Option<&'a dyn Fn(&[u8], &[u8]) -> Option<Vec<u8>>>;

/// The note's updates not acknowledged yet: the one sent under its envelope
/// id, and everything typed since, merged into as few as fit under
/// [`NOTE_UPDATE_MAX`] each, going one at a time after it. Updates are kept
/// as the base64 they travel as.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoteQueue {
    /// Envelope ids are `{base}-{count}`: unique per user across reloads.
    base: String,
    count: u64,
    flight: Option<(String, String)>,
    waiting: VecDeque<String>,
    sent: Sent,
}

impl From<StoredNote> for NoteQueue {
    /// A stored queue, nothing of it sent on this page's connection yet.
    fn from(stored: StoredNote) -> Self {
        NoteQueue {
            base: stored.base,
            count: stored.count,
            flight: stored.flight,
            waiting: stored.waiting.into(),
            sent: Sent::No,
        }
    }
}

impl NoteQueue {
    /// Adds an update: it goes now if nothing is in flight, else it is
    /// merged (with `merge`, if given) into the last one waiting while that
    /// stays small enough.
    pub(super) fn push(&mut self, update: &[u8], base: impl FnOnce() -> String, merge: Merge) {
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        if self.base.is_empty() {
            self.base = base();
        }
        let merged = merge.and_then(|merge| {
            self.waiting
                .back()
                .and_then(|last| engine.decode(last).ok())
                .filter(|last| last.len() + update.len() <= NOTE_UPDATE_MAX)
                .and_then(|last| merge(&last, update))
        });
        match merged {
            Some(merged) => {
                self.waiting.pop_back();
                self.waiting.push_back(engine.encode(merged));
            }
            None => self.waiting.push_back(engine.encode(update)),
        }
        self.promote();
    }

    /// Puts the next update waiting in flight when nothing is.
    fn promote(&mut self) {
        if self.flight.is_none() {
            if let Some(waiting) = self.waiting.pop_front() {
                self.count += 1;
                self.flight = Some((format!("{}-{}", self.base, self.count), waiting));
                self.sent = Sent::No;
            }
        }
    }

    /// Takes over another page's queue: its updates go after ours, under
    /// ids that never repeat one of its own (they may be stored already);
    /// unmerged (the note's engine may not be here yet).
    pub(super) fn adopt(&mut self, other: &NoteQueue) {
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        if self.base.is_empty() || self.base == other.base {
            self.base = other.base.clone();
            self.count = self.count.max(other.count);
        }
        for update in other.updates() {
            if let Ok(update) = engine.decode(update) {
                let base = other.base.clone();
                self.push(&update, || base, None);
            }
        }
    }

    /// Forgets everything: the server refused an update the rest may
    /// depend on (the page starts again from the server's state).
    pub(super) fn clear(&mut self) {
        self.flight = None;
        self.waiting.clear();
    }

    /// Every update held (in flight first), base64.
    pub fn updates(&self) -> impl Iterator<Item = &str> {
        self.flight
            .iter()
            .map(|(_, update)| update.as_str())
            .chain(self.waiting.iter().map(String::as_str))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.flight.is_none() && self.waiting.is_empty()
    }

    /// The envelope id of the update in flight.
    pub fn flight_id(&self) -> Option<&str> {
        self.flight.as_ref().map(|(id, _)| id.as_str())
    }

    /// Whether `id` is the envelope id of the update in flight.
    pub fn flight_is(&self, id: &str) -> bool {
        self.flight.as_ref().is_some_and(|(flight, _)| flight == id)
    }

    /// The server acknowledged or refused `id`: if it is the update in
    /// flight, it leaves and the next one goes in flight. Whether it was.
    pub(super) fn settle(&mut self, id: &str) -> bool {
        if !self.flight_is(id) {
            return false;
        }
        self.flight = None;
        self.promote();
        true
    }

    /// The server answered `rate_limited` to `id`: if it is the update in
    /// flight, it goes again from `until` on. Whether it was.
    pub(super) fn retry_later(&mut self, id: &str, until: f64) -> bool {
        if !self.flight_is(id) {
            return false;
        }
        self.sent = Sent::NotBefore(until);
        true
    }

    /// The connection is gone: the update in flight goes again on the next.
    pub(super) fn disconnected(&mut self) {
        if self.sent == Sent::InFlight {
            self.sent = Sent::No;
        }
    }

    /// The update in flight, if it may go now (outside the chat pace).
    pub(super) fn due(&mut self, now: f64) -> Due {
        let mut due = Due::default();
        let Some((id, update)) = &self.flight else {
            return due;
        };
        match self.sent {
            Sent::InFlight => return due,
            Sent::NotBefore(at) if at > now => {
                due.next_at = Some(at);
                return due;
            }
            _ => {}
        }
        let message = ClientMessage::DocUpdate(DocUpdateRequest {
            doc: NOTE_DOC.to_owned(),
            update: update.clone(),
        });
        due.send
            .push(ClientEnvelope::new(message).with_id(id.clone()));
        self.sent = Sent::InFlight;
        due
    }

    /// The queue as it is stored.
    pub(super) fn stored(&self) -> StoredNote {
        StoredNote {
            base: self.base.clone(),
            count: self.count,
            flight: self.flight.clone(),
            waiting: self.waiting.iter().cloned().collect(),
        }
    }
}
