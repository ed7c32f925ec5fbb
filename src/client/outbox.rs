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
//!   then [`PACE_PER_SEC`] a second), in order, so a replay of a long queue
//!   does not run into `rate_limited`.
//! - `rate_limited` means "later": the entry stays and goes out again after
//!   [`RETRY_AFTER_MS`] (the pace waits too). It never fails a message.
//! - Bounded: past [`OUTBOX_CAPACITY`] the oldest is dropped (the page says so).
//! - The note's edits ([`NoteQueue`]) are never dropped and never paced with
//!   chat: one `doc_update` is in flight at a time, and what is typed
//!   meanwhile is merged into the next one (a CRDT update merges losslessly),
//!   so a burst of typing costs a message per round trip, not per key.
//!
//! Pure: time comes in as an argument; the browser stores the outbox across
//! reloads under a key of its user and tab (see `browser.rs`).

use std::collections::VecDeque;

use super::note::{merge_updates, NOTE_DOC};
use crate::protocol::{
    ClientEnvelope, ClientMessage, DocUpdateRequest, StoredEntry, StoredNote, StoredOutbox,
};

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

/// A token bucket slightly slower than the server's.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pace {
    tokens: f64,
    at: f64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            tokens: PACE_BURST,
            at: f64::MIN,
        }
    }
}

impl Pace {
    fn refill(&mut self, now: f64) {
        if now > self.at {
            let gained = (now - self.at) * PACE_PER_SEC / 1_000.0;
            self.tokens = (self.tokens + gained).min(PACE_BURST);
            self.at = now;
        }
    }

    fn take(&mut self, now: f64) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next message may go (after [`Pace::take`] said no).
    fn next_at(&self) -> f64 {
        self.at + (1.0 - self.tokens).max(0.0) * 1_000.0 / PACE_PER_SEC
    }

    /// The server said "too fast": nothing goes before `until`.
    fn pause_until(&mut self, until: f64) {
        self.tokens = 0.0;
        self.at = self.at.max(until);
    }
}

/// What may be sent now, and when to ask again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Due {
    pub send: Vec<ClientEnvelope>,
    /// When more may go (`None`: nothing waits, or only answers are awaited).
    pub next_at: Option<f64>,
}

/// The most bytes of Yjs update one `doc_update` carries: its base64 (a
/// third more) and the envelope stay under the server's 64 KiB message limit.
pub const NOTE_UPDATE_MAX: usize = 40 * 1024;

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
    /// merged into the last one waiting while that stays small enough.
    fn push(&mut self, update: &[u8], base: impl FnOnce() -> String) {
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        if self.base.is_empty() {
            self.base = base();
        }
        let merged = self
            .waiting
            .back()
            .and_then(|last| engine.decode(last).ok())
            .filter(|last| last.len() + update.len() <= NOTE_UPDATE_MAX)
            .and_then(|last| merge_updates(&[&last, update]).ok());
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
    /// ids that never repeat one of its own (they may be stored already).
    fn adopt(&mut self, other: &NoteQueue) {
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        if self.base.is_empty() || self.base == other.base {
            self.base = other.base.clone();
            self.count = self.count.max(other.count);
        }
        for update in other.updates() {
            if let Ok(update) = engine.decode(update) {
                let base = other.base.clone();
                self.push(&update, || base);
            }
        }
    }

    /// Forgets everything: the server refused an update the rest may
    /// depend on (the page starts again from the server's state).
    fn clear(&mut self) {
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

    fn is_empty(&self) -> bool {
        self.flight.is_none() && self.waiting.is_empty()
    }

    /// Whether `id` is the envelope id of the update in flight.
    pub fn flight_is(&self, id: &str) -> bool {
        self.flight.as_ref().is_some_and(|(flight, _)| flight == id)
    }

    /// The queue as it is stored.
    fn stored(&self) -> StoredNote {
        StoredNote {
            base: self.base.clone(),
            count: self.count,
            flight: self.flight.clone(),
            waiting: self.waiting.iter().cloned().collect(),
        }
    }
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
    /// first time (random per outbox).
    pub fn push_note(&mut self, update: &[u8], base: impl FnOnce() -> String) {
        self.note.push(update, base);
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
        if self.note.flight_is(id) {
            self.note.flight = None;
            self.note.promote();
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
        if self.note.flight_is(id) {
            self.note.sent = Sent::NotBefore(until);
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
        if self.note.sent == Sent::InFlight {
            self.note.sent = Sent::No;
        }
    }

    /// What to send now, in order and at the pace; entries it returns are
    /// in flight until settled, retried or disconnected.
    pub fn due(&mut self, now: f64) -> Due {
        let mut due = self.note_due(now);
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

    /// The note's update in flight, if it may go now (outside the chat pace).
    fn note_due(&mut self, now: f64) -> Due {
        let mut due = Due::default();
        let Some((id, update)) = &self.note.flight else {
            return due;
        };
        match self.note.sent {
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
        self.note.sent = Sent::InFlight;
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
mod tests {
    use super::*;
    use crate::protocol::{ChatSend, MarkRead};

    fn chat(id: &str) -> ClientEnvelope {
        ClientEnvelope::new(ClientMessage::ChatSend(ChatSend {
            room: "general".into(),
            text: id.into(),
        }))
        .with_id(id)
    }

    fn read(id: &str, notifications: &[&str]) -> ClientEnvelope {
        ClientEnvelope::new(ClientMessage::MarkRead(MarkRead {
            notification_ids: notifications.iter().map(|n| n.to_string()).collect(),
        }))
        .with_id(id)
    }

    fn ids(envelopes: &[ClientEnvelope]) -> Vec<&str> {
        envelopes.iter().filter_map(|e| e.id.as_deref()).collect()
    }

    fn queued(count: usize) -> Outbox {
        let mut outbox = Outbox::for_user("ann");
        for n in 0..count {
            outbox.push(chat(&format!("c{n}")));
        }
        outbox
    }

    #[test]
    fn messages_go_once_per_connection_in_order_until_settled() {
        let mut outbox = queued(2);
        assert_eq!(ids(&outbox.due(0.0).send), ["c0", "c1"]);
        assert!(outbox.due(10.0).send.is_empty(), "in flight: not again");
        outbox.settle("c0");
        outbox.disconnected();
        assert_eq!(ids(&outbox.due(20_000.0).send), ["c1"], "unacked: again");
        outbox.settle("c1");
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_long_queue_goes_at_the_pace_not_all_at_once() {
        // 30 messages queued offline: 8 at once, then 4 a second.
        let mut outbox = queued(30);
        let first = outbox.due(0.0);
        assert_eq!(first.send.len(), PACE_BURST as usize);
        assert_eq!(first.next_at, Some(250.0));
        let (mut sent, mut next, mut now) = (first.send.len(), first.next_at, 0.0);
        while let Some(at) = next {
            now = at;
            let due = outbox.due(now);
            sent += due.send.len();
            next = due.next_at;
            assert!(now < 10_000.0, "stuck at {sent}");
        }
        assert_eq!(sent, 30);
        // The whole queue at 4/s after the burst: 22 more in 5.5 s.
        assert!((5_000.0..=6_000.0).contains(&now), "done at {now}");
    }

    #[test]
    fn rate_limited_means_later_never_failed_and_nothing_overtakes() {
        let mut outbox = queued(3);
        assert_eq!(outbox.due(0.0).send.len(), 3);
        assert!(outbox.retry_later("c1", 100.0));
        assert!(!outbox.retry_later("unknown", 100.0));
        outbox.settle("c0");
        outbox.push(chat("c3"));
        let due = outbox.due(200.0);
        assert!(due.send.is_empty(), "c3 waits behind c1: {due:?}");
        assert_eq!(due.next_at, Some(1_100.0));
        let due = outbox.due(1_100.0);
        assert!(due.send.is_empty(), "the pace waits too");
        let due = outbox.due(1_400.0);
        assert_eq!(ids(&due.send), ["c1"]);
        assert_eq!(outbox.len(), 3, "c1, c2 (in flight) and c3 stay queued");
    }

    #[test]
    fn a_retry_under_the_same_id_replaces_the_entry() {
        let mut outbox = queued(2);
        outbox.push(chat("c0"));
        assert_eq!(ids(&outbox.due(0.0).send), ["c1", "c0"]);
    }

    #[test]
    fn past_the_bound_the_oldest_is_dropped() {
        let mut outbox = queued(OUTBOX_CAPACITY);
        let dropped = outbox.push(chat("one too many")).expect("the oldest goes");
        assert_eq!(dropped.id.as_deref(), Some("c0"));
        assert_eq!(outbox.len(), OUTBOX_CAPACITY);
    }

    #[test]
    fn another_tabs_outbox_merges_only_for_the_same_user() {
        let mut mine = queued(1);
        let mut theirs = Outbox::for_user("ann");
        theirs.push(chat("c0"));
        theirs.push(chat("t1"));
        mine.merge(theirs);
        assert_eq!(ids(&mine.due(0.0).send), ["c0", "t1"]);
        let mut bob = Outbox::for_user("bob");
        bob.push(chat("b1"));
        mine.merge(bob);
        assert_eq!(mine.len(), 2, "never sent as another identity");
    }

    fn note_ids(envelopes: &[ClientEnvelope]) -> Vec<(String, String)> {
        envelopes
            .iter()
            .filter_map(|e| match &e.message {
                ClientMessage::DocUpdate(update) => Some((e.id.clone()?, update.update.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn note_edits_go_one_at_a_time_and_what_is_typed_meanwhile_is_merged() {
        use crate::client::note::Note;
        let mut ada = Note::new(1);
        let mut outbox = Outbox::for_user("ann");
        outbox.push_note(&ada.edit("a", 1).unwrap(), || "d-x".into());
        let first = note_ids(&outbox.due(0.0).send);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, "d-x-1");
        // Typed while the first is unanswered: merged, not sent yet.
        outbox.push_note(&ada.edit("ab", 2).unwrap(), || unreachable!());
        outbox.push_note(&ada.edit("abc", 3).unwrap(), || unreachable!());
        assert!(outbox.due(1.0).send.is_empty());
        outbox.settle("d-x-1");
        let second = note_ids(&outbox.due(2.0).send);
        assert_eq!(second.len(), 1, "one message for two keys");
        assert_eq!(second[0].0, "d-x-2");
        // Unanswered when the connection drops: the same id goes again.
        outbox.disconnected();
        assert_eq!(note_ids(&outbox.due(3.0).send), second);
        // Too fast: later, never dropped.
        assert!(outbox.retry_later("d-x-2", 3.0));
        assert!(outbox.due(4.0).send.is_empty());
        assert_eq!(note_ids(&outbox.due(3.0 + RETRY_AFTER_MS).send), second);
        // The merged updates make the whole text on another replica.
        let mut bob = Note::new(2);
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        for (_, update) in first.iter().chain(&second) {
            bob.apply_remote(&engine.decode(update).unwrap()).unwrap();
        }
        assert_eq!(bob.text(), "abc");
        outbox.settle("d-x-2");
        assert!(outbox.is_empty());
    }

    #[test]
    fn note_edits_survive_a_reload_and_another_tabs_are_taken_over() {
        use crate::client::note::Note;
        let mut ada = Note::new(1);
        let mut theirs = Outbox::for_user("ann");
        theirs.push_note(&ada.edit("offline", 7).unwrap(), || "d-t".into());
        theirs.due(0.0);
        let stored = theirs.stored().to_json().unwrap();
        let theirs = Outbox::from(StoredOutbox::from_json(&stored).unwrap());
        assert_eq!(theirs.note().updates().count(), 1);
        let mut mine = Outbox::for_user("ann");
        mine.merge(theirs);
        let sent = note_ids(&mine.due(0.0).send);
        assert_eq!(sent.len(), 1, "taken over and sent");
        // Under a new id: "d-t-1" may be stored already (another edit).
        assert_eq!(sent[0].0, "d-t-2");
    }

    #[test]
    fn a_large_burst_of_note_edits_goes_in_updates_under_the_message_limit() {
        use crate::client::note::Note;
        let mut ada = Note::new(1);
        let mut outbox = Outbox::for_user("ann");
        let mut text = String::new();
        for _ in 0..30 {
            text.push_str(&"x".repeat(4_000));
            for update in ada.edits(&text, text.encode_utf16().count() as u32) {
                outbox.push_note(&update, || "d-b".into());
            }
        }
        // And one paste of 100,000 characters at once.
        text.push_str(&"y".repeat(100_000));
        for update in ada.edits(&text, text.encode_utf16().count() as u32) {
            outbox.push_note(&update, || "d-b".into());
        }
        let (mut sent, mut bob) = (0, Note::new(2));
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        while let [(id, update)] = &note_ids(&outbox.due(0.0).send)[..] {
            assert!(update.len() < 60_000, "{} bytes of base64", update.len());
            bob.apply_remote(&engine.decode(update).unwrap()).unwrap();
            outbox.settle(id);
            sent += 1;
        }
        assert!(outbox.is_empty());
        assert!(sent > 5, "split into several: {sent}");
        assert_eq!(bob.text(), text);
    }

    #[test]
    fn queued_read_marks_are_known_and_survive_a_reload_as_json() {
        let mut outbox = queued(1);
        outbox.push(read("r1", &["n1", "n2"]));
        assert_eq!(outbox.pending_reads().collect::<Vec<_>>(), ["n1", "n2"]);
        outbox.due(0.0);
        let stored = outbox.stored().to_json().unwrap();
        let mut back = Outbox::from(StoredOutbox::from_json(&stored).unwrap());
        assert_eq!(back.owner(), Some("ann"));
        assert_eq!(
            ids(&back.due(0.0).send),
            ["c0", "r1"],
            "not in flight after a reload"
        );
    }
}
