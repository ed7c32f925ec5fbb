//! The log's rules: one table of every step (snapshots, live messages, this
//! page's lines, history pages), then the bound, keys and history requests.

use super::*;

fn ann() -> UserRef {
    UserRef {
        id: "ann".into(),
        name: "Ann".into(),
    }
}

fn message(offset: u64) -> ChatMessage {
    ChatMessage {
        channel: "chat:general".parse().unwrap(),
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

#[test]
fn a_line_shows_its_time_as_hours_and_minutes_in_utc() {
    let at = |text: &str| {
        let mut message = message(1);
        message.sent_at = Timestamp::parse(text).unwrap();
        ChatLine::from_message(&message).time()
    };
    assert_eq!(at("2026-11-25T07:05:59.999999Z"), "07:05");
    assert_eq!(at("2026-11-25T00:00:00Z"), "00:00");
    assert_eq!(at("2026-11-25T23:59:00+02:00"), "21:59");
    let mut pending = ChatLine::from_message(&message(1));
    pending.sent_at = None;
    assert_eq!(pending.time(), "");
}
