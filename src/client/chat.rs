//! The pure chat reducer: a room's lines as the log shows them, merging what
//! the server confirmed (ordered by offset) with what this page is still
//! sending (pending, or failed with a reason). No IO, no clock.

use crate::protocol::{ChatMessage, Timestamp, UserRef};

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
    /// The server's `msg_id`, or this page's envelope id while pending.
    pub key: String,
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
}

/// Confirmed lines first, by offset; then this page's unconfirmed ones.
fn settle(lines: &mut [ChatLine]) {
    lines.sort_by_key(|line| match (&line.state, line.offset) {
        (LineState::Sent, Some(offset)) => (0, offset),
        _ => (1, 0),
    });
}

/// Replaces the log with a snapshot, keeping lines still being sent.
pub fn replace(lines: &mut Vec<ChatLine>, snapshot: &[ChatMessage]) {
    lines.retain(|line| line.state != LineState::Sent);
    lines.extend(snapshot.iter().map(ChatLine::from_message));
    settle(lines);
}

/// A message from the server. If it is one of ours already acknowledged
/// (same offset), it takes the pending line's place.
pub fn received(lines: &mut Vec<ChatLine>, message: &ChatMessage) {
    lines.retain(|line| line.offset != Some(message.offset));
    lines.push(ChatLine::from_message(message));
    settle(lines);
}

/// This page starts sending `text` under envelope id `id`.
pub fn pending(lines: &mut Vec<ChatLine>, id: &str, user: &UserRef, text: &str) {
    lines.retain(|line| line.key != id);
    lines.push(ChatLine {
        key: id.to_owned(),
        offset: None,
        user: user.clone(),
        text: text.to_owned(),
        sent_at: None,
        state: LineState::Pending,
    });
}

/// The server acknowledged `id` at `offset`: the message itself either
/// arrived already (the pending line goes) or will replace the line.
pub fn acked(lines: &mut Vec<ChatLine>, id: &str, offset: u64) {
    let delivered = lines
        .iter()
        .any(|l| l.state == LineState::Sent && l.offset == Some(offset));
    if delivered {
        lines.retain(|line| line.key != id);
    } else if let Some(line) = lines.iter_mut().find(|line| line.key == id) {
        line.offset = Some(offset);
    }
}

/// Sending `id` failed for `reason`; whether a line was ours to fail.
pub fn failed(lines: &mut [ChatLine], id: &str, reason: &str) -> bool {
    match lines
        .iter_mut()
        .find(|line| line.key == id && line.state != LineState::Sent)
    {
        Some(line) => {
            line.state = LineState::Failed(reason.to_owned());
            true
        }
        None => false,
    }
}

/// Older messages loaded on scroll, put before the rest (no duplicates).
pub fn older(lines: &mut Vec<ChatLine>, messages: &[ChatMessage]) {
    for message in messages {
        if !lines.iter().any(|line| line.offset == Some(message.offset)) {
            lines.push(ChatLine::from_message(message));
        }
    }
    settle(lines);
}

/// The oldest offset shown (where older history continues from).
pub fn oldest(lines: &[ChatLine]) -> Option<u64> {
    lines.iter().filter_map(|line| line.offset).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(offset: u64, text: &str) -> ChatMessage {
        ChatMessage {
            channel: "chat:general".into(),
            offset,
            room: "general".into(),
            msg_id: format!("m{offset}"),
            user: UserRef {
                id: "ann".into(),
                name: "Ann".into(),
            },
            text: text.into(),
            sent_at: Timestamp::parse("2026-11-25T17:30:05Z").unwrap(),
        }
    }

    fn texts(lines: &[ChatLine]) -> Vec<(&str, &LineState)> {
        lines.iter().map(|l| (l.text.as_str(), &l.state)).collect()
    }

    #[test]
    fn a_pending_line_becomes_the_message_whichever_comes_first() {
        let ann = UserRef {
            id: "ann".into(),
            name: "Ann".into(),
        };
        // The message first, then the ack.
        let mut lines = Vec::new();
        pending(&mut lines, "c-1", &ann, "hi");
        received(&mut lines, &message(1, "hi"));
        acked(&mut lines, "c-1", 1);
        assert_eq!(texts(&lines), [("hi", &LineState::Sent)]);
        // The ack first, then the message.
        let mut lines = Vec::new();
        pending(&mut lines, "c-2", &ann, "yo");
        acked(&mut lines, "c-2", 7);
        assert_eq!(lines[0].state, LineState::Pending);
        received(&mut lines, &message(7, "yo"));
        assert_eq!(texts(&lines), [("yo", &LineState::Sent)]);
    }

    #[test]
    fn confirmed_lines_are_in_offset_order_before_pending_ones() {
        let ann = UserRef {
            id: "ann".into(),
            name: "Ann".into(),
        };
        let mut lines = Vec::new();
        pending(&mut lines, "c-9", &ann, "mine");
        received(&mut lines, &message(2, "two"));
        received(&mut lines, &message(1, "one"));
        received(&mut lines, &message(2, "two"));
        assert_eq!(
            lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["one", "two", "mine"]
        );
        assert!(failed(&mut lines, "c-9", "rate limited"));
        assert_eq!(lines[2].state, LineState::Failed("rate limited".into()));
        assert!(!failed(&mut lines, "m1", "x"), "sent lines cannot fail");
    }

    #[test]
    fn snapshots_and_older_pages_merge_without_duplicates() {
        let ann = UserRef {
            id: "ann".into(),
            name: "Ann".into(),
        };
        let mut lines = Vec::new();
        pending(&mut lines, "c-1", &ann, "still sending");
        replace(&mut lines, &[message(5, "five"), message(6, "six")]);
        assert_eq!(lines.len(), 3);
        assert_eq!(oldest(&lines), Some(5));
        older(&mut lines, &[message(4, "four"), message(5, "five")]);
        assert_eq!(
            lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["four", "five", "six", "still sending"]
        );
        assert_eq!(lines[0].time(), "17:30");
    }
}
