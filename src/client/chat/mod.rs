//! The pure chat reducer: a room's lines as the log shows them, merging what
//! the server confirmed (ordered by offset) with what this page is still
//! sending (pending, or failed with a reason), bounded, with the rule that
//! keeps at most one request for older messages in flight. No IO, no clock.
//!
//! Every line keeps its `key` for its whole life (a pending line that becomes
//! the server's copy keeps the envelope id), so a keyed view never rebuilds
//! a line, and never reads it out again, when only its state changes.
//!
//! This file holds the log and its confirmed lines (snapshots, live
//! messages, the bound); `pending.rs` this page's lines, `history.rs` older
//! pages and their one request in flight.

mod history;
mod pending;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::protocol::{ChatMessage, Timestamp, UserRef};
pub use history::older;
pub use pending::{acked, failed, pending};

/// Confirmed lines a log keeps while its reader follows the newest ones: a
/// new message beyond this drops the oldest line ("load older" fetches it
/// again).
pub const MAX_LINES: usize = 500;

/// Confirmed lines a log keeps at most while its reader is scrolled up, so
/// the lines being read are not trimmed away under them, yet a tab left
/// scrolled up in a busy room still stays bounded.
pub const MAX_LINES_SCROLLED_UP: usize = 2_000;

/// Where a line is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LineState {
    /// On the server (it has an offset).
    Sent,
    /// Sent by this page, not acknowledged yet.
    Pending,
    /// Refused or not sent; the reason is shown with a retry.
    Failed(String),
}

/// One line of the chat log.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatLine {
    /// Stable for the line's life: the server's `msg_id`, or this page's
    /// envelope id for a line this page wrote (also once it is confirmed).
    pub key: String,
    /// The server's offset: known when confirmed, or once acked.
    pub offset: Option<u64>,
    pub user: UserRef,
    pub text: String,
    pub sent_at: Option<Timestamp>,
    pub state: LineState,
}

impl ChatLine {
    pub fn from_message(message: &ChatMessage) -> Self {
        ChatLine {
            key: message.msg_id.clone(),
            offset: Some(message.offset),
            user: message.user.clone(),
            text: message.text.clone(),
            sent_at: Some(message.sent_at),
            state: LineState::Sent,
        }
    }

    /// `HH:MM` (UTC, so the server and the browser render the same text).
    /// Written from the hour and minute: chrono's `format` would bring its
    /// whole strftime interpreter into the bundle for these five characters.
    pub fn time(&self) -> String {
        use chrono::Timelike;
        self.sent_at
            .map(|at| {
                let at = at.as_datetime();
                format!("{:02}:{:02}", at.hour(), at.minute())
            })
            .unwrap_or_default()
    }

    fn offset_key(&self) -> u64 {
        self.offset.unwrap_or_default()
    }
}

/// One room's log. Lines are shared (`Arc`), so handing the view the list
/// after a message copies pointers, not texts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatLog {
    /// Confirmed lines, by strictly increasing offset.
    sent: VecDeque<Arc<ChatLine>>,
    /// This page's lines not confirmed yet, in the order written (shown
    /// after the confirmed ones). A pending line knows its offset once acked
    /// and joins `sent` when the server's copy is seen.
    unsent: Vec<Arc<ChatLine>>,
    /// Every offset up to this one was delivered to this log (by a snapshot
    /// or live), whether or not it is still shown.
    covered: u64,
    /// The `before` of the `history` request in flight, if one is.
    history_in_flight: Option<u64>,
    /// An empty `history` page answered for the oldest line: nothing older.
    start_reached: bool,
    /// The reader is scrolled up (the view says so): trim less.
    scrolled_up: bool,
}

impl ChatLog {
    /// The lines in the order shown: confirmed by offset, then this page's.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ChatLine>> {
        self.sent.iter().chain(&self.unsent)
    }

    pub fn len(&self) -> usize {
        self.sent.len() + self.unsent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The line with `key` as it is now.
    pub fn line(&self, key: &str) -> Option<&Arc<ChatLine>> {
        // This page's lines first (few); a confirmed one is most likely new.
        self.unsent
            .iter()
            .chain(self.sent.iter().rev())
            .find(|line| line.key == key)
    }

    /// Whether the reader follows the newest lines; returns whether lines
    /// were trimmed (the reader came back to the bottom of a long log).
    pub fn follow(&mut self, following: bool) -> bool {
        self.scrolled_up = !following;
        self.trim()
    }

    /// Keeps only the lines `keep` accepts (e.g. forgets the lines of
    /// messages that will never be sent); the order stays.
    pub fn retain(&mut self, mut keep: impl FnMut(&ChatLine) -> bool) {
        self.sent.retain(|line| keep(line));
        self.unsent.retain(|line| keep(line));
    }

    /// Drops the oldest confirmed lines beyond the bound.
    fn trim(&mut self) -> bool {
        let bound = if self.scrolled_up {
            MAX_LINES_SCROLLED_UP
        } else {
            MAX_LINES
        };
        let excess = self.sent.len().saturating_sub(bound);
        if excess == 0 {
            return false;
        }
        self.sent.drain(..excess);
        // What was trimmed is older than the oldest line now: loadable again.
        self.start_reached = false;
        true
    }

    /// Puts the server's copy in offset order, under the key of this page's
    /// line for it if there is one; a copy already shown is kept as it is.
    fn confirm(&mut self, message: &ChatMessage) {
        let mut line = ChatLine::from_message(message);
        if let Some(mine) = self.take_acked(message.offset) {
            line.key.clone_from(&mine.key);
        }
        let offset = message.offset;
        // Live messages are the newest: the common case appends.
        if self
            .sent
            .back()
            .is_none_or(|last| last.offset_key() < offset)
        {
            self.sent.push_back(Arc::new(line));
            return;
        }
        if let Err(at) = self.sent.binary_search_by_key(&offset, |l| l.offset_key()) {
            self.sent.insert(at, Arc::new(line));
        }
    }
}

/// The lines in the order shown, owned.
impl IntoIterator for ChatLog {
    type Item = ChatLine;
    type IntoIter = std::iter::Map<
        std::iter::Chain<
            std::collections::vec_deque::IntoIter<Arc<ChatLine>>,
            std::vec::IntoIter<Arc<ChatLine>>,
        >,
        fn(Arc<ChatLine>) -> ChatLine,
    >;

    fn into_iter(self) -> Self::IntoIter {
        let owned: fn(Arc<ChatLine>) -> ChatLine = Arc::unwrap_or_clone;
        self.sent.into_iter().chain(self.unsent).map(owned)
    }
}

/// Replaces the log with a snapshot that covers every offset up to
/// `latest`. This page's lines still being sent stay; an acked one whose
/// offset the snapshot covers settles: the snapshot's copy takes its key,
/// or, when the message is older than the snapshot, it is dropped (history
/// has it).
pub fn replace(log: &mut ChatLog, snapshot: &[ChatMessage], latest: u64) {
    let covered = snapshot.last().map_or(latest, |m| m.offset.max(latest));
    log.sent.clear();
    log.unsent.retain(|line| {
        line.offset
            .is_none_or(|offset| offset > covered || snapshot.iter().any(|m| m.offset == offset))
    });
    for message in snapshot {
        log.confirm(message);
    }
    log.covered = covered;
    log.history_in_flight = None;
    log.start_reached = false;
    log.trim();
}

/// A live message from the server. If it is one of ours already acked, it
/// takes the pending line's place and key.
pub fn received(log: &mut ChatLog, message: &ChatMessage) {
    log.covered = log.covered.max(message.offset);
    log.confirm(message);
    log.trim();
}

#[cfg(test)]
mod tests;
