//! Owns the log's older history: where it continues, the rule that keeps at
//! most one `history` request in flight, and a page of older messages put
//! before the lines shown (or dropped when it would leave a gap).

use super::ChatLog;
use crate::protocol::ChatMessage;

impl ChatLog {
    /// The oldest confirmed offset shown (where older history continues).
    pub fn oldest(&self) -> Option<u64> {
        self.sent.front().and_then(|line| line.offset)
    }

    /// Whether older messages may exist on the server (offsets start at 1).
    pub fn may_have_older(&self) -> bool {
        !self.start_reached && self.oldest().is_some_and(|oldest| oldest > 1)
    }

    /// The `before` of a `history` request to send now: `None` while one is
    /// in flight or when nothing older exists.
    pub fn older_request(&self) -> Option<u64> {
        match self.history_in_flight {
            Some(_) => None,
            None if self.may_have_older() => self.oldest(),
            None => None,
        }
    }

    /// A `history` request for messages before `before` went out.
    pub fn history_requested(&mut self, before: u64) {
        self.history_in_flight = Some(before);
    }

    /// The room was (re)subscribed: a request sent on an earlier socket will
    /// never be answered, so another may go out.
    pub fn resubscribed(&mut self) {
        self.history_in_flight = None;
    }
}

/// A `history` page (oldest first): the messages before the oldest shown go
/// before the rest, without duplicates. A page that would leave a gap (the
/// log changed under the request) is dropped; an empty answer to the
/// request for the oldest line means nothing older exists.
pub fn older(log: &mut ChatLog, page: &[ChatMessage]) {
    let asked = log.history_in_flight.take();
    let oldest = log.oldest();
    let Some(newest) = page.last() else {
        if asked.is_some() && asked == oldest {
            log.start_reached = true;
        }
        return;
    };
    if oldest.is_some_and(|oldest| newest.offset + 1 < oldest) {
        return;
    }
    // Newest first, so each one older than the log lands at its front.
    for message in page.iter().rev() {
        log.confirm(message);
    }
}
