//! The outbox's rules, one test each: order, pace, `rate_limited`, the
//! bound, another tab's outbox, the note's edits, and a reload.

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

/// The engine's merge, as the page passes it.
fn merge(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    crate::client::note::merge_updates(&[a, b]).ok()
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
    outbox.push_note(&ada.edit("a", 1).unwrap(), || "d-x".into(), Some(&merge));
    let first = note_ids(&outbox.due(0.0).send);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, "d-x-1");
    // Typed while the first is unanswered: merged, not sent yet.
    outbox.push_note(&ada.edit("ab", 2).unwrap(), || unreachable!(), Some(&merge));
    outbox.push_note(
        &ada.edit("abc", 3).unwrap(),
        || unreachable!(),
        Some(&merge),
    );
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
    theirs.push_note(
        &ada.edit("offline", 7).unwrap(),
        || "d-t".into(),
        Some(&merge),
    );
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
            outbox.push_note(&update, || "d-b".into(), Some(&merge));
        }
    }
    // And one paste of 100,000 characters at once.
    text.push_str(&"y".repeat(100_000));
    for update in ada.edits(&text, text.encode_utf16().count() as u32) {
        outbox.push_note(&update, || "d-b".into(), Some(&merge));
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

#[test]
fn pending_lists_ids_and_types_until_settled() {
    let mut outbox = Outbox::for_user("ann");
    outbox.push(chat("c1"));
    outbox.push(read("r1", &["n1"]));
    outbox.push_note(b"edit", || "d-base".into(), None);
    let pending = outbox.pending();
    assert_eq!(
        pending[..2],
        [("c1".into(), "chat_send"), ("r1".into(), "mark_read")]
    );
    assert_eq!(pending[2].1, "doc_update");
    outbox.settle("c1");
    assert_eq!(outbox.pending()[0], ("r1".into(), "mark_read"));
}
