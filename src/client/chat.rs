//! The pure chat reducer: a room's lines as the log shows them, merging what
//! the server confirmed (ordered by offset) with what this page is still
//! sending (pending, or failed with a reason), bounded, with the rule that
//! keeps at most one request for older messages in flight. No IO, no clock.
//!
//! Every line keeps its `key` for its whole life (a pending line that becomes
//! the server's copy keeps the envelope id), so a keyed view never rebuilds
//! a line, and never reads it out again, when only its state changes.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::protocol::{ChatMessage, Timestamp, UserRef};

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
    pub fn time(&self) -> String {
        self.sent_at
            .map(|at| at.as_datetime().format("%H:%M").to_string())
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

    /// Takes this page's acked line waiting for the copy at `offset`.
    fn take_acked(&mut self, offset: u64) -> Option<Arc<ChatLine>> {
        let at = self
            .unsent
            .iter()
            .position(|line| line.offset == Some(offset))?;
        Some(self.unsent.remove(at))
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

/// This page starts sending `text` under envelope id `id` (again, for a
/// retry: the line keeps its place and key).
pub fn pending(log: &mut ChatLog, id: &str, user: &UserRef, text: &str) {
    if let Some(line) = log.unsent.iter_mut().find(|line| line.key == id) {
        let line = Arc::make_mut(line);
        line.state = LineState::Pending;
        text.clone_into(&mut line.text);
        return;
    }
    log.unsent.push(Arc::new(ChatLine {
        key: id.to_owned(),
        offset: None,
        user: user.clone(),
        text: text.to_owned(),
        sent_at: None,
        state: LineState::Pending,
    }));
}

/// The server acknowledged `id` at `offset`. If the copy was delivered
/// already (shown, or older than what is shown) the pending line goes;
/// otherwise it waits for the copy, which will take its place.
pub fn acked(log: &mut ChatLog, id: &str, offset: u64) {
    let Some(at) = log.unsent.iter().position(|line| line.key == id) else {
        return;
    };
    if offset <= log.covered {
        log.unsent.remove(at);
    } else {
        Arc::make_mut(&mut log.unsent[at]).offset = Some(offset);
    }
}

/// Sending `id` failed for `reason`; whether a line was ours to fail.
pub fn failed(log: &mut ChatLog, id: &str, reason: &str) -> bool {
    match log.unsent.iter_mut().find(|line| line.key == id) {
        Some(line) => {
            Arc::make_mut(line).state = LineState::Failed(reason.to_owned());
            true
        }
        None => false,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> UserRef {
        UserRef {
            id: "ann".into(),
            name: "Ann".into(),
        }
    }

    fn message(offset: u64) -> ChatMessage {
        ChatMessage {
            channel: "chat:general".into(),
            offset,
            room: "general".into(),
            msg_id: format!("m{offset}"),
            user: ann(),
            text: format!("text {offset}"),
            sent_at: Timestamp::parse("2026-11-25T17:30:05Z").unwrap(),
        }
    }

    fn messages(offsets: impl IntoIterator<Item = u64>) -> Vec<ChatMessage> {
        offsets.into_iter().map(message).collect()
    }

    /// One thing that happens to a log.
    enum Step {
        /// A `subscribed` snapshot of these offsets, covering up to the second.
        Snapshot(&'static [u64], u64),
        Live(u64),
        Pending(&'static str),
        Ack(&'static str, u64),
        Fail(&'static str),
        Older(&'static [u64]),
    }
    use Step::*;

    fn run(steps: &[Step]) -> ChatLog {
        let mut log = ChatLog::default();
        for step in steps {
            match step {
                Snapshot(offsets, latest) => {
                    replace(&mut log, &messages(offsets.iter().copied()), *latest)
                }
                Live(offset) => received(&mut log, &message(*offset)),
                Pending(id) => pending(&mut log, id, &ann(), "mine"),
                Ack(id, offset) => acked(&mut log, id, *offset),
                Fail(id) => {
                    failed(&mut log, id, "rate limited");
                }
                Older(offsets) => older(&mut log, &messages(offsets.iter().copied())),
            }
        }
        log
    }

    /// `key@offset` then `?` for pending or `!` for failed.
    fn shown(log: &ChatLog) -> Vec<String> {
        log.iter()
            .map(|line| {
                let offset = line.offset.map_or("-".into(), |o| o.to_string());
                let state = match line.state {
                    LineState::Sent => "",
                    LineState::Pending => "?",
                    LineState::Failed(_) => "!",
                };
                format!("{}@{offset}{state}", line.key)
            })
            .collect()
    }

    #[test]
    fn every_rule_of_the_log_in_one_table() {
        let cases: &[(&str, &[Step], &[&str])] = &[
            (
                "confirmed lines are in offset order",
                &[Live(2), Live(1), Live(3)],
                &["m1@1", "m2@2", "m3@3"],
            ),
            (
                "an offset shows once",
                &[Live(1), Live(2), Live(1), Snapshot(&[1, 2], 2), Live(2)],
                &["m1@1", "m2@2"],
            ),
            (
                "pending lines follow the confirmed ones",
                &[Pending("c-1"), Live(2), Live(1)],
                &["m1@1", "m2@2", "c-1@-?"],
            ),
            (
                "the copy first, then the ack: the pending line goes",
                &[Pending("c-1"), Live(7), Ack("c-1", 7)],
                &["m7@7"],
            ),
            (
                "the ack first: the line waits for its copy",
                &[Pending("c-1"), Ack("c-1", 7)],
                &["c-1@7?"],
            ),
            (
                "the ack first, then the copy, which keeps the line's key",
                &[Pending("c-1"), Ack("c-1", 7), Live(6), Live(7)],
                &["m6@6", "c-1@7"],
            ),
            (
                "a refused line fails",
                &[Pending("c-1"), Fail("c-1")],
                &["c-1@-!"],
            ),
            (
                "a retry keeps the line's place and key",
                &[Pending("c-1"), Pending("c-2"), Fail("c-1"), Pending("c-1")],
                &["c-1@-?", "c-2@-?"],
            ),
            (
                "confirmed lines cannot fail",
                &[Live(1), Fail("m1")],
                &["m1@1"],
            ),
            (
                "a snapshot keeps lines still being sent",
                &[Live(1), Pending("c-1"), Snapshot(&[5, 6], 6)],
                &["m5@5", "m6@6", "c-1@-?"],
            ),
            (
                "acked before a snapshot holding it: the snapshot's copy takes the key",
                &[Pending("c-1"), Ack("c-1", 6), Snapshot(&[5, 6], 6)],
                &["m5@5", "c-1@6"],
            ),
            (
                "acked before a snapshot newer than it: dropped, history has it",
                &[Pending("c-1"), Ack("c-1", 3), Snapshot(&[5, 6], 6)],
                &["m5@5", "m6@6"],
            ),
            (
                "acked before a snapshot, covered by its offset",
                &[Pending("c-1"), Ack("c-1", 7), Snapshot(&[5, 6], 7)],
                &["m5@5", "m6@6"],
            ),
            (
                "acked beyond the snapshot: the copy still comes",
                &[Pending("c-1"), Ack("c-1", 8), Snapshot(&[5, 6], 6)],
                &["m5@5", "m6@6", "c-1@8?"],
            ),
            (
                "... and settles when it does",
                &[
                    Pending("c-1"),
                    Ack("c-1", 8),
                    Snapshot(&[5, 6], 6),
                    Live(7),
                    Live(8),
                ],
                &["m5@5", "m6@6", "m7@7", "c-1@8"],
            ),
            (
                "acked after a snapshot, older than it: settled at once",
                &[Snapshot(&[5, 6], 6), Pending("c-1"), Ack("c-1", 4)],
                &["m5@5", "m6@6"],
            ),
            (
                "an empty room's snapshot",
                &[Pending("c-1"), Ack("c-1", 1), Snapshot(&[], 0)],
                &["c-1@1?"],
            ),
            (
                "older pages go first, without duplicates",
                &[Snapshot(&[5, 6], 6), Older(&[3, 4, 5])],
                &["m3@3", "m4@4", "m5@5", "m6@6"],
            ),
            (
                "older pages keep pending lines last",
                &[Snapshot(&[5, 6], 6), Pending("c-1"), Older(&[4])],
                &["m4@4", "m5@5", "m6@6", "c-1@-?"],
            ),
            (
                "a page that would leave a gap is dropped",
                &[Snapshot(&[50, 51], 51), Older(&[10, 11])],
                &["m50@50", "m51@51"],
            ),
            (
                "a page that overlaps is merged",
                &[Snapshot(&[50, 51], 51), Older(&[48, 49, 50])],
                &["m48@48", "m49@49", "m50@50", "m51@51"],
            ),
        ];
        for (name, steps, expected) in cases {
            assert_eq!(shown(&run(steps)), *expected, "{name}");
        }
    }

    #[test]
    fn lines_can_be_forgotten_and_taken_in_the_order_shown() {
        let mut log = run(&[Live(2), Pending("c-1"), Pending("c-2"), Live(1)]);
        log.retain(|line| line.key != "c-1" && line.key != "m2");
        let keys: Vec<String> = log.into_iter().map(|line| line.key).collect();
        assert_eq!(keys, ["m1", "c-2"]);
    }

    #[test]
    fn a_line_is_found_by_its_key_whatever_its_state() {
        let log = run(&[Pending("c-1"), Ack("c-1", 2), Live(1), Live(2)]);
        let line = log.line("c-1").unwrap();
        assert_eq!(line.state, LineState::Sent);
        assert_eq!(line.time(), "17:30");
        assert_eq!(log.line("m1").unwrap().offset, Some(1));
        assert!(log.line("c-2").is_none());
    }

    #[test]
    fn the_log_keeps_the_newest_lines_up_to_its_bound() {
        // (confirmed lines received, scrolled up, lines kept, oldest kept)
        let cases = [
            (MAX_LINES, false, MAX_LINES, 1),
            (MAX_LINES + 1, false, MAX_LINES, 2),
            (MAX_LINES + 1, true, MAX_LINES + 1, 1),
            (MAX_LINES_SCROLLED_UP, true, MAX_LINES_SCROLLED_UP, 1),
            (MAX_LINES_SCROLLED_UP + 1, true, MAX_LINES_SCROLLED_UP, 2),
        ];
        for (count, scrolled_up, kept, oldest) in cases {
            let mut log = ChatLog::default();
            log.follow(!scrolled_up);
            pending(&mut log, "c-1", &ann(), "mine");
            for offset in 1..=count as u64 {
                received(&mut log, &message(offset));
            }
            assert_eq!(
                log.len(),
                kept + 1,
                "{count} lines, scrolled up: {scrolled_up}"
            );
            assert_eq!(log.oldest(), Some(oldest));
            assert_eq!(
                log.iter().last().unwrap().key,
                "c-1",
                "pending lines are never trimmed"
            );
            assert_eq!(log.may_have_older(), oldest > 1);
        }
    }

    #[test]
    fn coming_back_to_the_bottom_trims_what_scrolling_up_kept() {
        let mut log = ChatLog::default();
        assert!(!log.follow(false));
        for offset in 1..=(MAX_LINES + 10) as u64 {
            received(&mut log, &message(offset));
        }
        assert_eq!(log.len(), MAX_LINES + 10);
        assert!(log.follow(true), "trimmed");
        assert_eq!(log.len(), MAX_LINES);
        assert_eq!(log.oldest(), Some(11));
        assert!(!log.follow(true), "nothing more to trim");
    }

    #[test]
    fn trimming_keeps_older_history_loadable() {
        let mut log = ChatLog::default();
        replace(&mut log, &messages(1..=3), 3);
        let before = log.older_request();
        assert_eq!(before, None, "offset 1 is shown: nothing older");
        for offset in 4..=(MAX_LINES + 3) as u64 {
            received(&mut log, &message(offset));
        }
        assert_eq!(log.oldest(), Some(4));
        assert_eq!(log.older_request(), Some(4));
        log.history_requested(4);
        older(&mut log, &messages(1..=3));
        assert_eq!(
            log.oldest(),
            Some(1),
            "a page the reader asked for is not trimmed"
        );
        assert_eq!(log.len(), MAX_LINES + 3);
    }

    #[test]
    fn at_most_one_history_request_is_in_flight() {
        // An empty log and a log that starts at offset 1 ask for nothing.
        assert_eq!(ChatLog::default().older_request(), None);
        assert_eq!(run(&[Snapshot(&[1, 2], 2)]).older_request(), None);

        let mut log = run(&[Snapshot(&[5, 6], 6)]);
        assert_eq!(log.older_request(), Some(5));
        log.history_requested(5);
        assert_eq!(log.older_request(), None, "one request in flight");
        assert!(log.may_have_older(), "the control stays offered");
        older(&mut log, &messages(3..=4));
        assert_eq!(log.older_request(), Some(3), "the answer clears it");
        log.history_requested(3);
        log.resubscribed();
        assert_eq!(log.older_request(), Some(3), "a resubscribe clears it");
        log.history_requested(3);
        replace(&mut log, &messages(7..=8), 8);
        assert_eq!(log.older_request(), Some(7), "a new snapshot clears it");
        log.history_requested(7);
        // Offsets need not start at 1 (a page may be empty): then nothing older.
        older(&mut log, &[]);
        assert!(!log.may_have_older());
        assert_eq!(log.older_request(), None);
        replace(&mut log, &messages(7..=8), 8);
        assert_eq!(log.older_request(), Some(7), "a snapshot forgets that");
    }

    #[test]
    fn an_empty_page_for_another_request_does_not_end_history() {
        let mut log = run(&[Snapshot(&[5, 6], 6)]);
        log.history_requested(5);
        log.resubscribed();
        older(&mut log, &[]);
        assert!(log.may_have_older());
    }
}
